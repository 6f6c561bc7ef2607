"""Atlas failing for every case, and Atlas going quiet: one atlas_failing alert for an outage
(credentials refused, server errors, no Atlas at all), and one when it ends, however many cases
are open and however many processes poll, cases left untouched meanwhile; per-case answers that no retry will change flagged at once; a poll rate
that holds for every process together; and the webhooks_silent alarm."""

import json
import time

import atlas_sim
from utils import (ADMIN_TOKEN, FAST_POLLING, SIM_CLIENT_ID, SIM_CLIENT_SECRET, Service, eq,
                   free_port, metrics_of, wait_until)

# Short circuit timings: probes from 50 ms doubling up to 300 ms.
OUTAGE_ENV = {"VOIDRECON_POLL_FAILURES_ALERT": "3", "VOIDRECON_ATLAS_PROBE_MAX_MS": "300"}
CREDENTIALS = [900, "The current API requires specific permissions, yet authentication "
                    "information is missing for this request"]


def alerts(db, kind):
    return [json.loads(r[0]) for r in db.query(
        "select payload from voidrecon.alerts where kind = :'p1' order by id", kind)]


def register_open_cases(rig, prefix, n):
    cases = [{"orderNo": "%s%03d" % (prefix, i), "voidCode": "V", "path": [1]} for i in range(n)]
    rig.sim.add_cases(cases)
    for c in cases:
        rig.register(c["orderNo"], "V")
    return cases


def queries(rig):
    with rig.sim.lock:
        return len(rig.sim.log)


def test_credential_outage_raises_one_alert_and_leaves_cases_alone(db, make_rig):
    rig = make_rig(env=OUTAGE_ENV, webhooks=False, services=2)
    rig.faults(envelope_error=CREDENTIALS)
    register_open_cases(rig, "OUT", 50)
    got = rig.wait(lambda: alerts(db, "atlas_failing"), what="an atlas_failing alert")
    opened = got[0]
    eq((opened["resolved"], opened["cause"], opened["atlas_status"]), (False, "credentials", 900))
    assert "Atlas status 900" in opened["message"], opened
    # While it is open, Atlas is only probed: a few queries, not one per case and retry.
    at_open = queries(rig)
    rig.wait(lambda: int(db.scalar("select probes from voidrecon.incidents"
                                   " where closed_at is null")) >= 3, what="three probes")
    assert queries(rig) - at_open < 40, (at_open, queries(rig))
    eq(len(alerts(db, "atlas_failing")), 1, "one alert for the outage, from either process")
    eq(alerts(db, "void_poll_failing"), [], "no case is said to fail")
    eq(db.scalar("select count(*) from voidrecon.void_cases where poll_failures > 0"
                 " or needs_followup"), "0", "no case's failure count moved")
    m = metrics_of(rig.services[1])
    eq(m["voidrecon_atlas_circuit_open"], 1.0)
    assert m["voidrecon_atlas_circuit_open_since_seconds"] > time.time() - 60, m
    st, _, ready = rig.services[1].get("/readyz")
    eq((st, json.loads(ready)["poller"]["circuit_open"]), (200, True),
       "ready for webhooks, the outage said")

    rig.faults(envelope_error=None)
    rig.wait(lambda: len(alerts(db, "atlas_failing")) == 2, what="the resolve alert")
    resolved = alerts(db, "atlas_failing")[1]
    eq((resolved["resolved"], resolved["cause"]), (True, "credentials"))
    eq(db.query("select r.resolves_alert_id = i.alert_id from voidrecon.incidents i"
                " join voidrecon.alerts r on r.id = i.resolve_alert_id"), [["t"]],
       "the resolve names the alert it ends (one dedup_key for PagerDuty)")
    rig.wait(lambda: db.scalar("select count(*) from voidrecon.void_cases where polls > 0")
             == "50", timeout=30, what="every case polled again")
    eq(len(alerts(db, "atlas_failing")), 2, "one resolve alert")
    eq(alerts(db, "void_poll_failing"), [])
    eq(db.scalar("select count(*) from voidrecon.incidents where closed_at is null"
                 " and kind = 'atlas_failing'"), "0")
    rig.wait(lambda: all(metrics_of(s)["voidrecon_atlas_circuit_open"] == 0.0
                         for s in rig.services), what="the circuit gauge back at 0")


def test_server_errors_for_every_case_open_the_circuit_too(db, make_rig):
    rig = make_rig(env=OUTAGE_ENV, webhooks=False)
    rig.faults(error_rate=1.0, error_status=503)
    register_open_cases(rig, "DOWN", 10)
    got = rig.wait(lambda: alerts(db, "atlas_failing"), what="an atlas_failing alert")
    eq((got[0]["cause"], got[0]["http_status"]), ("server_error", 503))
    rig.faults(error_rate=0.0)
    rig.wait(lambda: len(alerts(db, "atlas_failing")) == 2, what="the resolve alert")
    eq(alerts(db, "void_poll_failing"), [])
    eq(db.scalar("select count(*) from voidrecon.void_cases where poll_failures > 0"), "0")


def test_answers_no_retry_changes_flag_the_case_at_once(db, make_rig):
    rig = make_rig(env={"VOIDRECON_POLL_MAX_INTERVAL_MS": "2000"}, webhooks=False)
    register_open_cases(rig, "FINE", 5)
    rig.sim.add_cases([{"orderNo": "GONE", "voidCode": "V", "path": [1]},
                       {"orderNo": "WRONG", "voidCode": "V", "path": [1]}])
    rig.faults(case_envelope={"WRONG": [824, "Wrong order number"]}, case_missing=["GONE"])
    rig.register("GONE", "V")
    rig.register("WRONG", "V")
    rig.sim.add_cases([{"orderNo": "NOPE", "voidCode": "V", "path": [1]}])
    rig.faults(case_envelope={"WRONG": [824, "Wrong order number"],
                              "NOPE": [801, "No voidable orders found."]})
    rig.register("NOPE", "V")
    for order in ("GONE", "WRONG", "NOPE"):
        c = rig.wait(lambda: (lambda c: c if c["reason"] == "poll_failing" else None)(
            rig.case(order, "V")), what="%s flagged" % order)
        eq((c["failures"], c["followup"]), (1, True), order + ": flagged at its first failure")
    got = {a["order_no"]: a for a in alerts(db, "void_poll_failing")}
    eq(sorted(got), ["GONE", "NOPE", "WRONG"])
    assert "Atlas status 801" in got["NOPE"]["message"], got["NOPE"]
    # Still polled, slowly: at the longest poll interval (2 s here), not the retry interval.
    gap = float(db.scalar("select extract(epoch from next_poll_at - last_polled_at)"
                          " from voidrecon.void_cases where order_no = 'NOPE'"))
    assert 1.5 < gap <= 2.1, gap
    eq(alerts(db, "atlas_failing"), [], "a case's own answer is no outage")
    eq(db.scalar("select count(*) from voidrecon.void_cases where order_no like 'FINE%'"
                 " and poll_failures = 0 and polls > 0"), "5")


def test_two_processes_keep_one_poll_rate_together(db, make_rig):
    rps = 20
    env = {"VOIDRECON_POLL_MAX_RPS": str(rps), "VOIDRECON_POLL_MAX_INTERVAL_MS": "100",
           "VOIDRECON_POLL_FIRST_MS": "0"}
    rig = make_rig(env=env, webhooks=False, services=2)
    register_open_cases(rig, "RATE", 120)
    rig.wait(lambda: len(rig.sim.per_second()) >= 5, timeout=30, what="five seconds of polls")
    per_second = rig.sim.per_second()[:5]
    print("queries per second, two processes at %d per second together: %r" % (rps, per_second))
    # The bucket holds one second's worth: the first second may see twice the rate.
    assert sum(per_second[1:4]) <= 3 * rps + 6, per_second
    assert sum(per_second[1:4]) >= 3 * rps * 0.7, per_second
    served = [sum(1 for line in s.logs() if line["event"] == "poll_applied")
              for s in rig.services]
    assert all(n > 0 for n in served), "both processes polled: %r" % served


def test_silent_webhooks_raise_one_alarm_that_a_webhook_resolves(db, make_rig):
    rig = make_rig(env={"VOIDRECON_ATLAS_SILENCE_MS": "1500"}, webhooks=False, services=2)
    register_open_cases(rig, "QUIET", 3)
    eq(rig.svc.post_json("/webhooks/atlas", {"type": "order.void", "data": {
        "orderNo": "QUIET000", "voidCode": "V", "voidStatus": 1}})[0], 200)
    got = rig.wait(lambda: alerts(db, "webhooks_silent"), what="the silence alarm")
    eq((got[0]["resolved"], got[0]["reason"]), (False, "no_webhook"))
    eq(metrics_of(rig.svc)["voidrecon_webhooks_silent"], 1.0)
    # An operator replaying an old Atlas delivery is not Atlas speaking again.
    first = db.scalar("select min(id) from voidrecon.deliveries")
    st, _, reply = rig.svc.request("POST", "/v1/deliveries/%s/replay" % first,
                                   headers={"Authorization": "Bearer " + ADMIN_TOKEN})
    eq((st, json.loads(reply)["outcome"]), (200, "duplicate"))
    time.sleep(1.5)  # the silence is checked every second, by each process
    eq(len(alerts(db, "webhooks_silent")), 1, "raised once, from either process")
    eq(rig.svc.post_json("/webhooks/atlas", {"type": "order.void", "data": {
        "orderNo": "QUIET000", "voidCode": "V", "voidStatus": 3}})[0], 200)
    rig.wait(lambda: len(alerts(db, "webhooks_silent")) == 2, what="the resolve alert")
    eq(alerts(db, "webhooks_silent")[1]["resolved"], True)
    eq(db.query("select r.resolves_alert_id = i.alert_id from voidrecon.incidents i"
                " join voidrecon.alerts r on r.id = i.resolve_alert_id"), [["t"]],
       "the resolve names the alert it ends")
    eq(db.scalar("select closed_at >= (select max(received_at) from voidrecon.deliveries"
                 " where replay_of is null) from voidrecon.incidents"
                 " where kind = 'webhooks_silent'"), "t", "closed by the webhook, not the replay")
    rig.wait(lambda: metrics_of(rig.svc)["voidrecon_webhooks_silent"] == 0.0,
             what="the silence gauge back at 0")


def test_changes_only_polls_find_raise_the_silence_alarm(db, make_rig):
    env = {"VOIDRECON_ATLAS_SILENCE_MS": "600000", "VOIDRECON_ATLAS_SILENCE_POLL_CHANGES": "3"}
    rig = make_rig(env=env, webhooks=False)
    cases = [{"orderNo": "MOVE%d" % i, "voidCode": "V", "path": [0, 1], "step_ms": 50}
             for i in range(4)]
    rig.sim.add_cases(cases)
    for c in cases:
        rig.register(c["orderNo"], "V", 0)
    got = rig.wait(lambda: alerts(db, "webhooks_silent"), what="the silence alarm")
    eq((got[0]["reason"], got[0]["unreported_changes"]), ("unreported_changes", 3))
    eq(rig.svc.post_json("/webhooks/atlas", {"type": "order.void", "data": {
        "orderNo": "MOVE0", "voidCode": "V", "voidStatus": 1}})[0], 200)
    rig.wait(lambda: len(alerts(db, "webhooks_silent")) == 2, what="the resolve alert")


def test_an_unreachable_atlas_opens_the_circuit_until_it_answers(db):
    port = free_port()
    env = dict(FAST_POLLING, **OUTAGE_ENV)
    env.update({"VOIDRECON_ATLAS_BASE_URL": "http://127.0.0.1:%d" % port,
                "VOIDRECON_ATLAS_CLIENT_ID": SIM_CLIENT_ID,
                "VOIDRECON_ATLAS_CLIENT_SECRET": SIM_CLIENT_SECRET})
    svc = Service(db, env=env)
    for i in range(10):
        st, _, _ = svc.post_json("/v1/cases", {"orderNo": "NET%d" % i, "voidCode": "V"},
                                 headers={"Authorization": "Bearer " + ADMIN_TOKEN})
        eq(st, 201)
    got = wait_until(lambda: alerts(db, "atlas_failing"), timeout=20,
                     what="an atlas_failing alert")
    eq(got[0]["cause"], "unreachable")
    # Atlas comes up where it was expected.
    sim, server = atlas_sim.start(port=port, client_id=SIM_CLIENT_ID,
                                  client_secret=SIM_CLIENT_SECRET)
    try:
        sim.add_cases([{"orderNo": "NET%d" % i, "voidCode": "V", "path": [1]}
                       for i in range(10)])
        wait_until(lambda: len(alerts(db, "atlas_failing")) == 2, timeout=20,
                   what="the resolve alert")
        wait_until(lambda: db.scalar("select count(*) from voidrecon.void_cases"
                                     " where polls > 0") == "10", timeout=20,
                   what="every case polled")
        eq(alerts(db, "void_poll_failing"), [])
        eq(db.scalar("select count(*) from voidrecon.void_cases where poll_failures > 0"), "0")
    finally:
        svc.stop()
        server.shutdown()
        server.server_close()
