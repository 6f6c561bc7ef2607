#!/usr/bin/env python3
"""A credential outage of Atlas, sped up: what voidrecon asks of Atlas and which alerts it
raises while every query is answered with status 900, for this build and an older one, in
the same run.

usage: scripts/bench/outage.py [--cases N] [--hours H] [--scale S] [--new BIN] [--old BIN]
                               [--old-commit REV]

For each binary: a PostgreSQL of its own (--fast) in a temporary folder, migrated by that
binary; N open void cases (default 1000) inserted with their first poll spread over the first
poll interval; the Atlas simulator (tests/atlas_sim.py) answering every query with status 900
(credentials refused); voidrecon serve with the default settings, every interval divided by S
(default 60: one hour takes one minute) and the poll rate multiplied by S. After H hours
(default 1) of outage, scaled, Atlas answers again; the recovery is watched until every case
was polled well (or 10 scaled minutes passed). Prints, per binary: the Atlas queries made
during the outage, the alerts raised during it by kind, the cases flagged for follow-up and
those whose failure count moved; then the queries and the time (in unscaled terms) it took
after the recovery until every case was polled, and the alerts raised then.

--new defaults to build/voidrecon (built by scripts/build.sh); --old to a build of
--old-commit, exported with git archive into a temporary folder (default: the commit before migrations/0007
was added, i.e. the code before the circuit). Takes about (H x 60 / S + 1) minutes per binary
plus the old build. Standard library only.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import atlas_sim  # noqa: E402

HOUR_MS = 3600 * 1000
CREDENTIALS = [900, "The current API requires specific permissions, yet authentication "
                    "information is missing for this request"]
# The defaults of the settings that are times, before scaling (README, Running it).
DEFAULT_MS = {
    "VOIDRECON_POLL_TICK_MS": 1000,
    "VOIDRECON_POLL_FIRST_MS": 300000,
    "VOIDRECON_POLL_MAX_INTERVAL_MS": 3600000,
    "VOIDRECON_POLL_CONFIRM_MS": 5000,
    "VOIDRECON_POLL_RETRY_MS": 10000,
    "VOIDRECON_ATLAS_PROBE_MAX_MS": 300000,
    "VOIDRECON_ATLAS_SILENCE_MS": 21600000,
    "VOIDRECON_STUCK_AFTER_MS": 86400000,
    "VOIDRECON_ALERT_TICK_MS": 250,
}


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, **kw).stdout


def psql(url, sql):
    return run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql]).strip()


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_old(commit, work):
    """voidrecon built from commit's tree, exported (git archive) into a folder under work."""
    tree = os.path.join(work, "old-tree")
    os.makedirs(tree)
    archive = subprocess.Popen(["git", "-C", ROOT, "archive", commit], stdout=subprocess.PIPE)
    run(["tar", "-x", "-C", tree], stdin=archive.stdout)
    if archive.wait() != 0:
        sys.exit("outage.py: git archive %s failed" % commit)
    run([os.path.join(tree, "scripts", "build.sh"), os.path.join(work, "old-build"),
         "-DCMAKE_BUILD_TYPE=RelWithDebInfo"], stderr=subprocess.STDOUT)
    return os.path.join(work, "old-build", "voidrecon")


def default_old_commit():
    added = run(["git", "-C", ROOT, "log", "--diff-filter=A", "--format=%H", "--",
                 "migrations/0007_atlas_incidents.sql"]).split()
    if not added:
        sys.exit("outage.py: migrations/0007_atlas_incidents.sql is not in this history; "
                 "give --old or --old-commit")
    return added[-1] + "^"


def settings(scale):
    env = {k: str(max(1, v // scale)) for k, v in DEFAULT_MS.items()}
    env["VOIDRECON_POLL_MAX_RPS"] = str(10 * scale)
    env["VOIDRECON_LOG_LEVEL"] = "warn"
    return env


def counts(url, since, until):
    rows = psql(url, "select kind, count(*) from voidrecon.alerts where created_at >= '%s'"
                     " and created_at < '%s' group by 1 order by 1" % (since, until))
    return dict((r.split("|")[0], int(r.split("|")[1])) for r in rows.splitlines() if r)


def one_run(label, binary, args, work):
    """The outage and the recovery against one binary; returns its figures."""
    pg_dir = os.path.join(work, "pg-" + label)
    url = run([os.path.join(ROOT, "scripts", "pg.sh"), "start", pg_dir, "--fast"],
              stderr=subprocess.DEVNULL).strip().splitlines()[-1]
    env = dict(os.environ, VOIDRECON_DATABASE_URL=url)
    run([binary, "migrate"], env=env, stderr=subprocess.DEVNULL)
    first_ms = DEFAULT_MS["VOIDRECON_POLL_FIRST_MS"] // args.scale
    psql(url, "insert into voidrecon.void_cases (order_no, void_code, status, next_poll_at)"
              " select 'OUT' || g, 'V1', 1, now() + random() * %d * interval '1 millisecond'"
              " from generate_series(1, %d) g" % (first_ms, args.cases))
    sim, server = atlas_sim.start(client_id="bench-id", client_secret="bench-secret")
    sim.add_cases([{"orderNo": "OUT%d" % g, "voidCode": "V1", "path": [1]}
                   for g in range(1, args.cases + 1)])
    with sim.lock:
        sim.faults["envelope_error"] = CREDENTIALS
    port = free_port()
    env.update(settings(args.scale))
    env.update({"VOIDRECON_LISTEN": "127.0.0.1:%d" % port,
                "VOIDRECON_ATLAS_BASE_URL": "http://127.0.0.1:%d" % server.server_address[1],
                "VOIDRECON_ATLAS_CLIENT_ID": "bench-id",
                "VOIDRECON_ATLAS_CLIENT_SECRET": "bench-secret"})
    log = open(os.path.join(work, label + ".log"), "w")
    start = psql(url, "select now()")
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    try:
        time.sleep(args.hours * 3600.0 / args.scale)
        with sim.lock:
            outage_queries = len(sim.log)
            sim.faults["envelope_error"] = None
        recovered = psql(url, "select now()")
        t0 = time.monotonic()
        followups = int(psql(url, "select count(*) from voidrecon.void_cases"
                                  " where needs_followup"))
        moved = int(psql(url, "select count(*) from voidrecon.void_cases"
                              " where poll_failures > 0"))
        # At most one scaled hour: the longest poll interval.
        while time.monotonic() - t0 < 3600.0 / args.scale + 5:
            if psql(url, "select count(*) from voidrecon.void_cases where polls = 0") == "0":
                break
            time.sleep(0.1)
        took_s = time.monotonic() - t0
        done = psql(url, "select now() + interval '1 second'")
        with sim.lock:
            recovery_queries = len(sim.log) - outage_queries
        return {
            "label": label,
            "queries_outage": outage_queries,
            "alerts_outage": counts(url, start, recovered),
            "followups": followups,
            "failures_moved": moved,
            "recovery_unscaled_s": took_s * args.scale,
            "all_polled": psql(url, "select count(*) from voidrecon.void_cases"
                                    " where polls = 0") == "0",
            "queries_recovery": recovery_queries,
            "alerts_recovery": counts(url, recovered, done),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        server.shutdown()
        server.server_close()
        run([os.path.join(ROOT, "scripts", "pg.sh"), "destroy", pg_dir],
            stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--scale", type=int, default=60)
    ap.add_argument("--new", default=os.path.join(ROOT, "build", "voidrecon"))
    ap.add_argument("--old")
    ap.add_argument("--old-commit")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="vrbench-outage.")
    try:
        if not os.path.exists(args.new):
            run([os.path.join(ROOT, "scripts", "build.sh"), os.path.dirname(args.new),
                 "-DCMAKE_BUILD_TYPE=RelWithDebInfo"], stderr=subprocess.STDOUT)
        old = args.old or build_old(args.old_commit or default_old_commit(), work)
        results = [one_run("before", old, args, work), one_run("after", args.new, args, work)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("A %g h credential outage (Atlas answers 900), %d open cases, sped up %dx:"
          % (args.hours, args.cases, args.scale))
    fmt = "  %-34s %14s %14s"
    print(fmt % ("", "before", "after"))
    rows = [
        ("Atlas queries during the outage", "queries_outage"),
        ("alerts during the outage", "alerts_outage"),
        ("cases flagged at the outage's end", "followups"),
        ("cases with failures counted then", "failures_moved"),
        ("queries until every case polled", "queries_recovery"),
        ("time until then (unscaled s)", "recovery_unscaled_s"),
        ("alerts during the recovery", "alerts_recovery"),
    ]
    for title, key in rows:
        vals = []
        for r in results:
            v = r[key]
            if isinstance(v, dict):
                v = ", ".join("%s %d" % kv for kv in sorted(v.items())) or "none"
            elif isinstance(v, float):
                v = "%.0f" % v
            vals.append(str(v))
        print(fmt % (title, vals[0], vals[1]))
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
