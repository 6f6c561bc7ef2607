"""Convergence: 1,000 simulated void cases with random documented lifecycles, 30% of webhooks
lost, duplicates, reordering and forged closings. In the end every case equals the simulator's
truth and is reconciled, and every rejected case has exactly one void_rejected alert."""

import http.client
import json
import random
import time

from utils import ADMIN_TOKEN as ADMIN, eq

CASES = 1000
DEADLINE_S = 240

SETTINGS = {
    "VOIDRECON_POLL_TICK_MS": "20",
    "VOIDRECON_POLL_FIRST_MS": "300",
    "VOIDRECON_POLL_CONFIRM_MS": "100",
    "VOIDRECON_POLL_MAX_INTERVAL_MS": "1500",
    "VOIDRECON_POLL_CONCURRENCY": "32",
    "VOIDRECON_POLL_MAX_RPS": "2000",
    "VOIDRECON_DB_POOL_SIZE": "8",
}


def register_all(svc, cases):
    """What an order system does right after each void.do: one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=30)
    try:
        for c in cases:
            body = json.dumps({"orderNo": c["orderNo"], "voidCode": c["voidCode"]})
            conn.request("POST", "/v1/cases", body=body,
                         headers={"Content-Type": "application/json",
                                  "Authorization": "Bearer " + ADMIN})
            resp = conn.getresponse()
            resp.read()
            assert resp.status in (200, 201), resp.status
    finally:
        conn.close()


def mismatches(rig, truth):
    rows = rig.db.query("select order_no, void_code, status, reconciled_at is not null"
                        " from voidrecon.void_cases")
    got = {(r[0], r[1]): (int(r[2]), r[3] == "t") for r in rows}
    return [(k, got.get(k), v) for k, v in truth.items() if got.get(k) != (v, True)]


def test_a_thousand_cases_converge_to_the_truth(db, make_rig):
    rng = random.Random(20261129)
    cases = []
    for i in range(CASES):
        path = rng.choice([[0, 1, 3, 2], [0, 1, 3, 4], [0, 1, 5], [0, 1, 4], [0, 1, 6],
                           [0, 1, 3, 2], [0, 1, 5]])
        cases.append({"orderNo": "CONV%05d" % i, "voidCode": "2026%02d-%04d" % (i % 12 + 1, i),
                      "path": path,
                      "step_ms": [rng.randint(100, 1500) for _ in range(len(path) - 1)]})
    rig = make_rig(env=SETTINGS)
    rig.faults(latency_ms=[1, 25], error_rate=0.02, rate_limit_rate=0.002, retry_after=1,
               malformed_rate=0.01, gzip_rate=0.5,
               webhook={"loss": 0.3, "dup": 0.2, "reorder_ms": [0, 800], "forge_rate": 0.1})
    started = time.monotonic()
    rig.sim.add_cases(cases)
    register_all(rig.svc, cases)
    lifecycles_end = max(started + sum(c["step_ms"]) / 1000.0 for c in cases)
    deadline = started + DEADLINE_S
    while True:
        snapshot = rig.sim.truth()
        truth = {(t["orderNo"], t["voidCode"]): t["status"] for t in snapshot}
        unsettled = sum(1 for t in snapshot if not t["settled"])
        left = mismatches(rig, truth)
        if (not unsettled and not left) or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    converged = time.monotonic()
    # Matching the truth proves nothing while the simulator may still move a case.
    assert not unsettled, ("%d of %d simulated cases had not settled %d s after they started"
                           % (unsettled, CASES, DEADLINE_S))
    assert not left, "%d cases not converged, e.g. %r" % (len(left), left[:5])
    stats = dict(rig.sim.stats)
    rejected = {k for k, s in truth.items() if s == 4}
    got = rig.db.query("select order_no, void_code, count(*) from voidrecon.alerts"
                       " where kind = 'void_rejected' group by 1, 2")
    per_case = {(r[0], r[1]): int(r[2]) for r in got}
    eq({k: per_case.get(k, 0) for k in rejected}, {k: 1 for k in rejected},
       "one void_rejected alert per rejected case")
    eq(set(per_case) - rejected, set(), "no rejection alert for a case that was not rejected")
    eq(rig.db.scalar("select count(*) from voidrecon.void_cases where not confirmed"), "0")
    eq(rig.db.scalar("select count(*) from voidrecon.deliveries"),
       str(stats["webhooks_sent"]), "every webhook delivered is kept")
    forged_conflicts = rig.db.scalar("select count(*) from voidrecon.void_case_events"
                                     " where outcome = 'conflict'")
    polls_failed = rig.db.scalar("select count(*) from voidrecon.void_case_events"
                                 " where source = 'poll' and outcome = 'stale'")
    print("convergence: %d cases (%d rejected) reconciled %.1f s after they started,"
          " %.1f s after the last lifecycle ended" % (
              CASES, len(rejected), converged - started, converged - lifecycles_end))
    print("convergence: %d Atlas requests (%.1f per case); webhooks sent %d, lost %d,"
          " duplicated %d, forged %d; conflicts recorded %s; superseded poll answers %s" % (
              stats["queries"], stats["queries"] / CASES, stats["webhooks_sent"],
              stats["webhooks_lost"], stats["webhooks_duplicated"],
              stats["webhooks_forged"], forged_conflicts, polls_failed))

