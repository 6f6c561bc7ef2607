#!/usr/bin/env python3
"""Drives the demo of scripts/run.sh --demo: a handful of void cases on the Atlas simulator,
webhooks that get lost, duplicated, reordered and forged, and a table of what voidrecon makes of
them, printed until every case is reconciled. Standard library only."""

import argparse
import http.client
import json
import shutil
import subprocess
import sys
import time

# (void code, lifecycle, what happens); order numbers are made unique per run.
CASES = [
    ("0001", [0, 1, 3, 2], "deposit, voided"),
    ("0002", [0, 1, 5], "card, completed"),
    ("0003", [0, 1, 3, 4], "deposit, rejected by the airline"),
    ("0004", [0, 1, 6], "card, withdrawn"),
    ("0005", [0, 1, 3, 2], "deposit, voided"),
]
NAMES = {0: "ATLAS_PROCESSING", 1: "AIRLINE_PROCESSING", 2: "VOIDED", 3: "AIRLINE_VOIDING",
         4: "REJECTED", 5: "COMPLETED", 6: "WITHDREW"}


def call(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers=dict(headers or {}, **{"Content-Type": "application/json"}))
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def psql(url, sql):
    exe = shutil.which("psql") or "psql"
    out = subprocess.run([exe, "-X", "-At", "-F", "\t", "-d", url, "-c", sql],
                         capture_output=True, text=True, timeout=10)
    return [line.split("\t") for line in out.stdout.splitlines() if line]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--service-port", type=int, required=True)
    ap.add_argument("--sim-port", type=int, required=True)
    ap.add_argument("--admin-token", required=True)
    ap.add_argument("--database-url", required=True)
    args = ap.parse_args()

    call(args.sim_port, "POST", "/_sim/faults", {
        "latency_ms": [20, 200], "error_rate": 0.1, "rate_limit_rate": 0.05, "retry_after": 1,
        "webhook": {"loss": 0.3, "dup": 0.3, "reorder_ms": [0, 2500], "forge_rate": 0.4}})
    prefix = time.strftime("DEMO%Y%m%d%H%M%S")
    cases = [("%s%s" % (prefix, n), "%s-%s" % (prefix[4:10], n), p, what) for n, p, what in CASES]
    specs = [{"orderNo": o, "voidCode": v, "path": p, "step_ms": 4000} for o, v, p, _ in cases]
    call(args.sim_port, "POST", "/_sim/cases", {"cases": specs})
    for order, code, _, what in cases:
        status, reply = call(args.service_port, "POST", "/v1/cases",
                             {"orderNo": order, "voidCode": code},
                             {"Authorization": "Bearer " + args.admin_token})
        print("demo: registered %s %s (%s): HTTP %d %s" % (order, code, what, status,
                                                           reply.get("outcome")), flush=True)
    print("demo: Atlas moves each case one step every 4 s; 30% of its webhooks are lost,"
          " others duplicated, reordered or forged; the poller finds the truth.", flush=True)
    started = time.monotonic()
    while time.monotonic() - started < 180:
        time.sleep(2)
        rows = psql(args.database_url,
                    "select order_no, void_code, status, confirmed, reconciled_at is not null,"
                    " coalesce(followup_reason, '-'), polls"
                    " from voidrecon.void_cases where order_no like '%s%%' order by 1" % prefix)
        print("\ndemo: t=%3ds  %-20s %-12s %-19s %-9s %-10s %-9s %s" % (
            time.monotonic() - started, "order", "void", "status", "confirmed", "reconciled",
            "followup", "polls"), flush=True)
        for r in rows:
            print("demo:        %-20s %-12s %-19s %-9s %-10s %-9s %s" % (
                r[0], r[1], "%s %s" % (r[2], NAMES.get(int(r[2]), "?")),
                "yes" if r[3] == "t" else "no", "yes" if r[4] == "t" else "no", r[5], r[6]),
                flush=True)
        if len(rows) == len(cases) and all(r[4] == "t" for r in rows):
            break
    for kind, order, text in psql(args.database_url,
                                  "select kind, order_no, coalesce(payload->>'message', '')"
                                  " from voidrecon.alerts where order_no like '%s%%'"
                                  " order by id" % prefix):
        print("demo: alert %s for %s: %s" % (kind, order, text), flush=True)
    print("\ndemo: every case is reconciled. The service keeps running: try\n"
          "  curl -s localhost:%d/readyz\n"
          "  psql '%s' -c 'table voidrecon.followups'\n"
          "Ctrl-C stops it." % (args.service_port, args.database_url), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
