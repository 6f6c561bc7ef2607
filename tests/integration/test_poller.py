"""The poller against the Atlas simulator and a real PostgreSQL: confirmation, correction of
forged closings, registration without webhooks, retries through failures and 429, poll_failing
and stuck follow-ups, the race rule, and two processes sharing the work."""

import json
import os
import subprocess

from utils import ADMIN_TOKEN as ADMIN, Service, eq, voidrecon_bin


def alerts(db, kind):
    return db.query("select order_no, void_code, payload from voidrecon.alerts"
                    " where kind = :'p1' order by id", kind)


def test_webhook_closing_is_confirmed_by_a_poll(db, make_rig):
    rig = make_rig(webhooks=False)
    rig.sim.add_cases([{"orderNo": "CONF", "voidCode": "V1", "path": [2]}])
    eq(rig.svc.post_json("/webhooks/atlas", {"type": "order.void", "data": {
        "orderNo": "CONF", "voidCode": "V1", "voidStatus": 2}})[0], 200)
    c = rig.wait(lambda: (lambda c: c if c["reconciled"] else None)(rig.case("CONF", "V1")),
                 what="reconciliation")
    eq((c["status"], c["confirmed"], c["unscheduled"], c["failures"]), (2, True, True, 0))
    eq(c["method"], "CashBackToOriginalPayment")
    eq(c["confirmation_date"], "2026-12-01")
    eq(c["item"]["voidFareAmount"]["estimatedRefundAmount"], 165.48)
    eq(db.query("select source, outcome from voidrecon.void_case_events order by id"),
       [["webhook", "applied"], ["poll", "duplicate"]])
    polls = rig.polls_of("CONF")
    # A case registered now reconciles only after Atlas closes it 600 ms later, longer than
    # the longest poll interval (400 ms): once it has, CONF would have been polled again.
    rig.sim.add_cases([{"orderNo": "LATER", "voidCode": "V1", "path": [0, 2], "step_ms": 600}])
    rig.register("LATER", "V1")
    rig.wait(lambda: rig.case("LATER", "V1")["reconciled"], what="the later case reconciled")
    eq(rig.polls_of("CONF"), polls, "a reconciled case is never polled again")


def test_forged_closing_is_corrected_by_the_poll(db, make_rig):
    rig = make_rig(webhooks=False)
    rig.sim.add_cases([{"orderNo": "FORGE", "voidCode": "V1", "path": [1, 3], "step_ms": 60000}])
    rig.register("FORGE", "V1", 1)
    rig.svc.post_json("/webhooks/atlas", {"type": "order.void", "data": {
        "orderNo": "FORGE", "voidCode": "V1", "voidStatus": 5}})
    c = rig.wait(lambda: (lambda c: c if c["confirmed"] else None)(rig.case("FORGE", "V1")),
                 what="a confirming poll")
    eq((c["status"], c["reconciled"], c["unscheduled"]), (1, False, False),
       "the poll's open status wins over the forged closing; still polled")
    eq([r[0] for r in db.query("select source || ':' || outcome || ':' || to_status"
                               " from voidrecon.void_case_events order by id")][:3],
       ["api:applied:1", "webhook:applied:5", "poll:applied:1"])


def test_registered_cases_reconcile_without_any_webhook(db, make_rig):
    rig = make_rig(webhooks=False)
    rig.sim.add_cases([
        {"orderNo": "REG", "voidCode": "OK", "path": [0, 1, 3, 2], "step_ms": 150},
        {"orderNo": "REG", "voidCode": "NO", "path": [0, 1, 4], "step_ms": 150},
    ])
    eq(rig.register("REG", "OK")["created"], True)
    eq(rig.register("REG", "OK")["created"], False, "registering twice is harmless")
    rig.register("REG", "NO")
    rig.wait(lambda: all(rig.case("REG", c)["reconciled"] for c in ("OK", "NO")),
             what="both cases reconciled")
    eq(rig.case("REG", "OK")["status"], 2)
    rejected = rig.case("REG", "NO")
    eq((rejected["status"], rejected["followup"], rejected["reason"]), (4, True, "rejected"))
    eq(rejected["cancel_reason"], "Rejected by the airline")
    got = alerts(db, "void_rejected")
    eq([(a[0], a[1]) for a in got], [("REG", "NO")])
    payload = json.loads(got[0][2])
    eq((payload["source"], payload["cancel_reason"]), ("poll", "Rejected by the airline"))


def test_transient_failures_and_rate_limits_are_retried_until_reconciled(db, make_rig):
    rig = make_rig(webhooks=False)
    rig.faults(error_rate=0.3, rate_limit_rate=0.2, retry_after=1, malformed_rate=0.15,
               missing_rate=0.1, gzip_rate=0.5, latency_ms=[0, 30])
    cases = [{"orderNo": "FLAKY%02d" % i, "voidCode": "V", "path": [0, 1, 2],
              "step_ms": 100} for i in range(10)]
    rig.sim.add_cases(cases)
    for c in cases:
        rig.register(c["orderNo"], "V")
    rig.wait(lambda: all(rig.case(c["orderNo"], "V")["reconciled"] for c in cases),
             timeout=60, what="all flaky cases reconciled")
    log = rig.sim.log
    kinds = {e["http"] for e in log}
    assert {200, 429, 503} <= kinds, kinds
    eq(db.scalar("select count(*) from voidrecon.void_cases where poll_failures > 0"), "0",
       "a good answer resets the failure count")
    # A 429 pauses every poll for retryAfter, capped at the longest poll interval (1 s asked,
    # 400 ms here): nothing is sent in that time. Requests already on their way when the 429
    # left may still arrive just after it.
    limited = [e["end"] for e in log if e["http"] == 429]
    for t in limited:
        early = [e for e in log if t + 0.15 < e["start"] < t + 0.35]
        eq(early, [], "requests within the capped retryAfter of a 429")
    assert rig.svc.wait_log(lambda l: l["event"] == "poller_paused" and "429" in l["msg"])


def test_wrong_credentials_end_poll_failing_with_one_alert(db, make_rig):
    env = {"VOIDRECON_POLL_FAILURES_ALERT": "3", "VOIDRECON_POLL_RETRY_MS": "20",
           "VOIDRECON_POLL_MAX_INTERVAL_MS": "60"}
    rig = make_rig(env=env, secret="wrong-secret", webhooks=False)
    rig.sim.add_cases([{"orderNo": "AUTH", "voidCode": "V1", "path": [1]}])
    rig.register("AUTH", "V1")
    rig.wait(lambda: rig.case("AUTH", "V1")["failures"] >= 6, what="six failed polls")
    c = rig.case("AUTH", "V1")
    eq((c["followup"], c["reason"]), (True, "poll_failing"))
    assert "Atlas status 900" in c["error"], c["error"]
    got = alerts(db, "void_poll_failing")
    eq(len(got), 1, "one alert for a run of failures")
    eq(json.loads(got[0][2])["poll_failures"], 3)
    assert "wrong-secret" not in rig.svc.log_text()


def test_persistent_server_errors_end_poll_failing(db, make_rig):
    env = {"VOIDRECON_POLL_FAILURES_ALERT": "4", "VOIDRECON_POLL_MAX_INTERVAL_MS": "60"}
    rig = make_rig(env=env, webhooks=False)
    rig.faults(error_rate=1.0, error_status=502)
    rig.sim.add_cases([{"orderNo": "DOWN", "voidCode": "V1", "path": [1]}])
    rig.register("DOWN", "V1")
    rig.wait(lambda: rig.case("DOWN", "V1")["reason"] == "poll_failing", what="poll_failing")
    eq(rig.case("DOWN", "V1")["error"], "HTTP 502 from Atlas")
    eq(len(alerts(db, "void_poll_failing")), 1)
    rig.faults(error_rate=0.0)
    rig.wait(lambda: rig.case("DOWN", "V1")["failures"] == 0, what="recovery")


def test_case_open_too_long_is_flagged_stuck_once(db, make_rig):
    rig = make_rig(env={"VOIDRECON_STUCK_AFTER_MS": "300"}, webhooks=False)
    rig.sim.add_cases([{"orderNo": "STUCK", "voidCode": "V1", "path": [1]}])
    rig.register("STUCK", "V1")
    rig.wait(lambda: rig.case("STUCK", "V1")["reason"] == "stuck", what="stuck flag")
    # A case registered now is flagged by a later sweep, which would flag STUCK again.
    rig.sim.add_cases([{"orderNo": "STUCK2", "voidCode": "V1", "path": [1]}])
    rig.register("STUCK2", "V1")
    rig.wait(lambda: rig.case("STUCK2", "V1")["reason"] == "stuck", what="the later case flagged")
    eq([a[0] for a in alerts(db, "void_stuck")], ["STUCK", "STUCK2"], "flagged once")
    eq(db.query("select order_no from voidrecon.followups where reason = 'stuck' order by 1"),
       [["STUCK"], ["STUCK2"]])


def test_a_poll_answer_never_overwrites_a_newer_change(db, make_rig):
    env = {"VOIDRECON_POLL_FIRST_MS": "0"}
    rig = make_rig(env=env, webhooks=False)
    rig.faults(latency_ms=[600, 600])
    rig.sim.add_cases([{"orderNo": "RACE", "voidCode": "V1", "path": [1, 3], "step_ms": 200}])
    rig.register("RACE", "V1", 1)
    # Once the first poll reached Atlas, its answer (status 1) is 0.6 s away.
    rig.wait(lambda: rig.sim.stats["queries"] >= 1, what="the first poll to reach Atlas")
    rig.svc.post_json("/webhooks/atlas", {"type": "order.void", "data": {
        "orderNo": "RACE", "voidCode": "V1", "voidStatus": 3}})
    rig.wait(lambda: db.scalar("select count(*) from voidrecon.void_case_events where"
                               " source = 'poll' and outcome = 'stale'") == "1",
             what="the superseded answer recorded as stale")
    c = rig.wait(lambda: (lambda c: c if c["confirmed"] else None)(rig.case("RACE", "V1")),
                 what="a fresh poll")
    eq(c["status"], 3, "the newer change stands and is confirmed")
    eq(db.query("select source, outcome, reported_status, to_status"
                " from voidrecon.void_case_events order by id")[:3],
       [["api", "applied", "1", "1"], ["webhook", "applied", "3", "3"],
        ["poll", "stale", "1", "3"]])


def test_two_processes_never_poll_one_case_at_once(db, make_rig):
    rig = make_rig(services=2, webhooks=False)
    rig.faults(latency_ms=[5, 60])
    cases = [{"orderNo": "TWO%03d" % i, "voidCode": "V", "path": [0, 1, 3, 2],
              "step_ms": 200} for i in range(60)]
    rig.sim.add_cases(cases)
    for c in cases:
        rig.register(c["orderNo"], "V")
    rig.wait(lambda: db.scalar("select count(*) from voidrecon.void_cases"
                               " where reconciled_at is not null") == "60",
             timeout=60, what="all 60 reconciled")
    by_case = {}
    for e in rig.sim.log:
        by_case.setdefault(e["orderNo"], []).append((e["start"], e["end"]))
    overlaps = []
    for order, spans in by_case.items():
        spans.sort()
        for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
            if s2 < e1:
                overlaps.append((order, s1, e1, s2))
    eq(overlaps, [], "overlapping polls of one case")
    served = [sum(1 for line in s.logs() if line["event"] == "poll_applied")
              for s in rig.services]
    assert all(n > 0 for n in served), "both processes polled: %r" % served


def test_cases_add_on_the_command_line(db):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIDRECON_")}
    env["VOIDRECON_DATABASE_URL"] = db.url
    cmd = [voidrecon_bin(), "cases", "add", "CLI1", "V9"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    eq(p.returncode, 0, p.stderr)
    eq(p.stdout, "CLI1 V9: applied (registered), status 0 ATLAS_PROCESSING\n")
    eq(p.stderr, "", "a command prints no log chatter")
    p = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, timeout=30)
    eq(json.loads(p.stdout), {"order_no": "CLI1", "void_code": "V9", "created": False,
                              "outcome": "duplicate", "status": 0})
    eq(db.scalar("select source from voidrecon.void_case_events where order_no = 'CLI1'"
                 " order by id limit 1"), "api")
    eq(db.scalar("select next_poll_at > now() from voidrecon.void_cases where order_no = 'CLI1'"),
       "t", "scheduled for its first poll")
    p = subprocess.run(cmd[:3] + ["ONLY"], env=env, capture_output=True, text=True, timeout=30)
    eq(p.returncode, 2)
    assert "usage: voidrecon cases add" in p.stderr


def test_v1_requires_the_bearer_token(db):
    with Service(db) as svc:
        st, _, body = svc.post_json("/v1/cases", {"orderNo": "A", "voidCode": "B"})
        eq((st, json.loads(body)["error"]["code"]), (404, "api_disabled"))
    with Service(db, env={"VOIDRECON_ADMIN_TOKEN": ADMIN}) as svc:
        st, hdrs, _ = svc.post_json("/v1/cases", {"orderNo": "A", "voidCode": "B"})
        eq((st, hdrs["www-authenticate"]), (401, 'Bearer realm="voidrecon"'))
        st, _, _ = svc.post_json("/v1/cases", {"orderNo": "A", "voidCode": "B"},
                                 headers={"Authorization": "Bearer nope"})
        eq(st, 403)
        st, _, body = svc.post_json("/v1/cases", {"orderNo": "A"},
                                    headers={"Authorization": "Bearer " + ADMIN})
        eq((st, json.loads(body)["error"]["message"]), (400, "voidCode: missing"))
        st, hdrs, _ = svc.request("PUT", "/v1/cases", headers={"Authorization": "Bearer " + ADMIN})
        eq((st, hdrs["allow"]), (405, "GET, HEAD, POST"))
    eq(db.scalar("select count(*) from voidrecon.void_cases"), "0")



def test_free_slots_lease_again_without_waiting_for_the_tick(db, make_rig):
    """With more cases due than POLL_CONCURRENCY, a slot that frees up leases the next case at
    once: a tick of 2 s and 2 slots poll 20 due cases within seconds, not in 20 s (2 a tick);
    the bound leaves a loaded machine room and still fails the poller that waits for its tick."""
    rig = make_rig(webhooks=False, env={"VOIDRECON_POLL_TICK_MS": "2000",
                                        "VOIDRECON_POLL_CONCURRENCY": "2",
                                        "VOIDRECON_POLL_FIRST_MS": "1"})
    orders = ["SLOT%02d" % i for i in range(20)]
    rig.sim.add_cases([{"orderNo": o, "voidCode": "V", "path": [1]} for o in orders])
    for o in orders:
        rig.register(o, "V")
    rig.wait(lambda: all(rig.polls_of(o) >= 1 for o in orders), timeout=10,
             what="every due case polled")
