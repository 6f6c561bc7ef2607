"""Alerts in the receiver's own shape (VOIDRECON_ALERT_FORMAT): the standard JSON, a Slack
incoming-webhook message, a PagerDuty Events API v2 event; and the resolve alert that follows
each raised alert once a person acknowledges it or the case reconciles, sharing its identity.

The field lists and limits asserted here are the receivers' documented ones: Slack's section
block (text up to 3000 characters; at most 10 fields of up to 2000 characters; &, < and >
escaped as entities) and PagerDuty's enqueue event (routing_key, event_action trigger or
resolve, dedup_key up to 255 characters, payload.summary up to 1024 characters, source,
severity one of critical/error/warning/info, timestamp; 202 accepted, 400 not to be retried as is,
429 and 5xx to be retried)."""

import base64
import datetime
import hashlib
import hmac
import json
import time

import pytest

from utils import ADMIN_TOKEN, Receiver, Service, ServiceError, eq, wait_until

SECRET = "whsec_" + base64.b64encode(b"formats-secret-0123456789ab").decode()
ROUTING_KEY = "R0UT1NGKEY0f2b9c4e7a1d3e5f7a9b1c"
AUTH = {"Authorization": "Bearer " + ADMIN_TOKEN, "Content-Type": "application/json"}
SEVERITIES = {"critical", "error", "warning", "info"}


@pytest.fixture
def pd_receiver():
    """A receiver that answers the way PagerDuty's enqueue does: 202."""
    rx = Receiver(ok_status=202)
    yield rx
    rx.close()


def verify(headers, body):
    """Standard Webhooks verification, from the specification."""
    key = base64.b64decode(SECRET[len("whsec_"):])
    msg = b"%s.%s.%s" % (headers["webhook-id"].encode(), headers["webhook-timestamp"].encode(),
                         body)
    want = base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest())
    return any(hmac.compare_digest(want, s.split(",", 1)[1].encode())
               for s in headers["webhook-signature"].split() if s.startswith("v1,"))


def env_for(receiver, fmt=None, **extra):
    env = {"VOIDRECON_ALERT_URL": receiver.url, "VOIDRECON_ALERT_SECRET": SECRET,
           "VOIDRECON_ALERT_TICK_MS": "50", "VOIDRECON_ADMIN_TOKEN": ADMIN_TOKEN}
    if fmt is not None:
        env["VOIDRECON_ALERT_FORMAT"] = fmt
    if fmt == "pagerduty":
        env["VOIDRECON_ALERT_ROUTING_KEY"] = ROUTING_KEY
    env.update(extra)
    return env


def void(svc, order, status, message=None, code="V1"):
    data = {"orderNo": order, "voidCode": code, "voidStatus": status}
    if message is not None:
        data["message"] = message
    st, _, reply = svc.post_json("/webhooks/atlas", {"cid": "C", "type": "order.void",
                                                     "status": -1, "data": data})
    eq(st, 200, reply)


def ack(svc, path, body):
    st, _, reply = svc.request("POST", path, body=json.dumps(body).encode(), headers=AUTH)
    eq(st, 200, reply)
    return json.loads(reply)


def bodies(receiver):
    """The JSON bodies the receiver accepted, in arrival order, each checked as it came."""
    out = []
    for g in receiver.ok_deliveries():
        assert verify(g["headers"], g["body"]), "signature does not verify"
        eq(g["headers"]["content-type"], "application/json")
        out.append(json.loads(g["body"].decode("utf-8")))  # strict: valid UTF-8 or it fails
    return out


def wait_bodies(receiver, n, what, timeout=10):
    return wait_until(lambda: (lambda b: b if len(b) >= n else None)(bodies(receiver)),
                      timeout=timeout, what=what)


def is_iso8601(text):
    datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return True


# ---- standard ---------------------------------------------------------------------------------


def test_standard_alert_then_its_resolve_after_an_acknowledgement(db, receiver):
    with Service(db, env=env_for(receiver)) as svc:
        void(svc, "STD1", 4, "Automatic void processing failed after 10 retries.")
        raised = wait_bodies(receiver, 1, "the alert")[0]
        eq((raised["kind"], raised["type"], raised["order_no"], raised["void_code"],
            raised["status"], raised["followup_reason"]),
           ("void_rejected", "voidrecon.void_rejected", "STD1", "V1", 4, "rejected"))
        assert "resolved" not in raised, raised
        ack(svc, "/v1/cases/STD1/V1/ack", {"by": "ana", "note": "refund RF-1"})
        resolve = wait_bodies(receiver, 2, "the resolve alert")[1]
    eq((resolve["kind"], resolve["type"], resolve["order_no"], resolve["void_code"],
        resolve["resolved"], resolve["resolved_by"], resolve["acked_by"],
        resolve["resolves_alert_id"]),
       ("void_rejected", "voidrecon.void_rejected", "STD1", "V1", True, "acknowledged", "ana",
        raised["id"]))
    eq(resolve["text"], "[voidrecon] RESOLVED: order STD1, void V1: follow-up rejected "
                        "acknowledged by ana: refund RF-1")
    eq(db.query("select resolves_alert_id::text from voidrecon.alerts order by id"),
       [[None], [str(raised["id"])]])


# ---- slack ------------------------------------------------------------------------------------


def slack_texts(msg):
    """Every text object of a Slack message, checked against the section block's limits."""
    eq(sorted(msg), ["blocks", "text"])
    assert isinstance(msg["text"], str) and msg["text"], msg
    head, fields = msg["blocks"]
    eq((head["type"], head["text"]["type"]), ("section", "mrkdwn"))
    assert len(head["text"]["text"]) <= 3000
    eq(fields["type"], "section")
    assert 1 <= len(fields["fields"]) <= 10, fields
    for f in fields["fields"]:
        eq(f["type"], "mrkdwn")
        assert len(f["text"]) <= 2000, len(f["text"])
    return [msg["text"], head["text"]["text"]] + [f["text"] for f in fields["fields"]]


def test_slack_message_within_the_block_limits_escaped_and_resolved(db, receiver):
    # 1500 two-byte characters and Slack's three control characters: longer than a field holds.
    message = "<b>Refused</b> & " + "é" * 1500 + " end"
    with Service(db, env=env_for(receiver, "slack")) as svc:
        void(svc, "SLK&1", 4, message)
        msg = wait_bodies(receiver, 1, "the Slack message")[0]
        texts = slack_texts(msg)
        for t in texts:
            assert "<" not in t and ">" not in t, t
            assert "&" not in t.replace("&amp;", "").replace("&lt;", "").replace("&gt;", ""), t
        assert msg["text"].startswith("[voidrecon] Void REJECTED: order SLK&amp;1, void V1: "
                                      "&lt;b&gt;Refused&lt;/b&gt; &amp; éé"), msg["text"]
        fields = {f["text"].split("\n", 1)[0]: f["text"].split("\n", 1)[1]
                  for f in msg["blocks"][1]["fields"]}
        eq((fields["*Order*"], fields["*Void code*"], fields["*Status*"], fields["*Reason*"],
            fields["*Kind*"]), ("SLK&amp;1", "V1", "REJECTED (4)", "rejected", "void_rejected"))
        assert fields["*Message*"].startswith("&lt;b&gt;Refused&lt;/b&gt; &amp; é")
        assert fields["*Message*"].endswith("é…"), "cut between characters, and said so"
        assert is_iso8601(fields["*Raised at*"])

        ack(svc, "/v1/cases/SLK&1/V1/ack".replace("&", "%26"), {"by": "bo"})
        resolved = wait_bodies(receiver, 2, "the resolved message")[1]
    slack_texts(resolved)
    eq(resolved["text"], "[voidrecon] RESOLVED: order SLK&amp;1, void V1: follow-up rejected "
                         "acknowledged by bo")
    fields = {f["text"].split("\n", 1)[0]: f["text"].split("\n", 1)[1]
              for f in resolved["blocks"][1]["fields"]}
    eq(fields["*Acknowledged by*"], "bo")
    assert "*Resolved at*" in fields, fields


# ---- pagerduty --------------------------------------------------------------------------------


def check_event(event):
    """One Events API v2 event, against the documented fields."""
    eq(event["routing_key"], ROUTING_KEY)
    assert isinstance(event["dedup_key"], str) and 0 < len(event["dedup_key"]) <= 255, event
    if event["event_action"] == "resolve":
        eq(sorted(event), ["dedup_key", "event_action", "routing_key"])
        return event
    eq(event["event_action"], "trigger")
    p = event["payload"]
    assert isinstance(p["summary"], str) and 0 < len(p["summary"]) <= 1024, p["summary"]
    assert isinstance(p["source"], str) and p["source"], p
    assert p["severity"] in SEVERITIES, p
    assert is_iso8601(p["timestamp"])
    assert isinstance(p["custom_details"], dict), p
    for k in ("component", "group", "class"):
        assert isinstance(p[k], str) and p[k], (k, p)
    return event


def events(receiver, n, what, timeout=10):
    return [check_event(e) for e in wait_bodies(receiver, n, what, timeout)]


def test_pagerduty_trigger_and_its_resolve_after_an_acknowledgement(db, pd_receiver):
    with Service(db, env=env_for(pd_receiver, "pagerduty")) as svc:
        void(svc, "PD1", 4, "x" * 3000)
        trigger = events(pd_receiver, 1, "the trigger")[0]
        p = trigger["payload"]
        eq((p["severity"], p["class"], p["component"]), ("error", "void_rejected", "void_cases"))
        assert p["summary"].startswith("[voidrecon] Void REJECTED: order PD1, void V1: xxx")
        eq(len(p["summary"].encode()), 1023, "the long message cut to PagerDuty's limit")
        d = p["custom_details"]
        eq((d["order_no"], d["void_code"], d["status"], d["status_name"], d["followup_reason"]),
           ("PD1", "V1", 4, "REJECTED", "rejected"))
        ack(svc, "/v1/cases/PD1/V1/ack", {"by": "ana"})
        resolve = events(pd_receiver, 2, "the resolve")[1]
        eq(resolve["event_action"], "resolve")
        eq(resolve["dedup_key"], trigger["dedup_key"])
        assert ROUTING_KEY not in svc.log_text(), "the routing key is never logged"


def test_pagerduty_resolves_when_the_case_reconciles_and_only_once(db, make_rig, pd_receiver):
    # Both cases stay open past the stuck threshold, then Atlas closes them. RECON's stuck
    # alert is resolved by the reconciliation; ACKED's by its acknowledgement, before.
    env = env_for(pd_receiver, "pagerduty", VOIDRECON_STUCK_AFTER_MS="300")
    rig = make_rig(env=env, webhooks=False)
    rig.sim.add_cases([{"orderNo": "RECON", "voidCode": "V1", "path": [1, 2], "step_ms": 2500},
                       {"orderNo": "ACKED", "voidCode": "V1", "path": [1, 2], "step_ms": 2500}])
    rig.register("RECON", "V1")
    rig.register("ACKED", "V1")
    triggers = events(pd_receiver, 2, "two stuck triggers")
    by_order = {t["payload"]["custom_details"]["order_no"]: t for t in triggers}
    eq(sorted(by_order), ["ACKED", "RECON"])
    for t in triggers:
        eq((t["payload"]["class"], t["payload"]["severity"]), ("void_stuck", "warning"))
    reply = ack(rig.svc, "/v1/cases/ACKED/V1/ack", {"by": "ana"})
    eq(reply["case"]["status"], 1, "acknowledged while the case is still open")
    rig.wait(lambda: rig.case("RECON", "V1")["reconciled"] and rig.case("ACKED", "V1")[
        "reconciled"], what="both cases reconciled")
    got = events(pd_receiver, 4, "two resolves")
    resolves = [e for e in got if e["event_action"] == "resolve"]
    eq(sorted(r["dedup_key"] for r in resolves),
       sorted(t["dedup_key"] for t in triggers), "one resolve per trigger, same dedup_key")
    eq(len(got), 4, "nothing else")
    # The reconciliation is written with any resolve it raises: ACKED's acknowledgement
    # resolved it already, its reconciliation resolves nothing again.
    eq(db.query("select a.order_no, count(*)::text, min(r.payload->>'resolved_by')"
                " from voidrecon.alerts a join voidrecon.alerts r on r.resolves_alert_id = a.id"
                " group by 1 order by 1"),
       [["ACKED", "1", "acknowledged"], ["RECON", "1", "reconciled"]])
    eq(db.query("select order_no, reason from voidrecon.followups order by 1"),
       [["RECON", "stuck"]], "the follow-up itself waits for a person")


def test_a_rejection_that_atlas_overrules_is_resolved_and_a_confirmed_one_is_not(
        db, make_rig, pd_receiver):
    # Webhooks say both voids were rejected; Atlas's polls say one completed after all.
    rig = make_rig(env=env_for(pd_receiver, "pagerduty"), webhooks=False)
    rig.sim.add_cases([{"orderNo": "OVER", "voidCode": "V1", "path": [5]},
                       {"orderNo": "SURE", "voidCode": "V1", "path": [4]}])
    void(rig.svc, "OVER", 4)
    void(rig.svc, "SURE", 4)
    rig.wait(lambda: rig.case("OVER", "V1")["reconciled"] and rig.case("SURE", "V1")[
        "reconciled"], what="both cases reconciled")
    got = events(pd_receiver, 3, "two triggers and a resolve")
    by_key = {}
    for e in got:
        by_key.setdefault(e["dedup_key"], []).append(e)
    over = [v for v in by_key.values()
            if v[0]["payload"]["custom_details"]["order_no"] == "OVER"][0]
    eq([e["event_action"] for e in over], ["trigger", "resolve"])
    eq(len(got), 3, "SURE's rejection stands: no resolve")
    eq(db.query("select order_no from voidrecon.alerts where resolves_alert_id is not null"),
       [["OVER"]])


def test_pagerduty_resolves_an_acknowledged_cancellation(db, pd_receiver):
    with Service(db, env=env_for(pd_receiver, "pagerduty")) as svc:
        st, _, reply = svc.post_json("/webhooks/atlas", {
            "cid": "C", "type": "order.cancelled", "status": -1,
            "data": {"orderNo": "CXL1", "orderStatus": -3, "errorCode": "604",
                     "errorMessage": "Ticketing declined"}})
        eq(st, 200, reply)
        trigger = events(pd_receiver, 1, "the cancellation's trigger")[0]
        p = trigger["payload"]
        eq((p["class"], p["component"], p["severity"]), ("order_cancelled", "atlas", "warning"))
        eq((p["custom_details"]["order_no"], p["custom_details"]["error_code"]), ("CXL1", "604"))
        cid = db.scalar("select id from voidrecon.order_cancellations")
        ack(svc, "/v1/cancellations/%s/ack" % cid, {"by": "ana", "note": "refunded"})
        resolve = events(pd_receiver, 2, "the cancellation's resolve")[1]
    eq((resolve["event_action"], resolve["dedup_key"]), ("resolve", trigger["dedup_key"]))


def test_pagerduty_a_reason_raised_again_after_its_acknowledgement_is_a_new_incident(
        db, pd_receiver):
    with Service(db, env=env_for(pd_receiver, "pagerduty")) as svc:
        void(svc, "AGAIN", 2)
        void(svc, "AGAIN", 5)  # contradicts the first closing: conflict
        first = events(pd_receiver, 1, "the first conflict")[0]
        eq(first["payload"]["class"], "void_conflict")
        ack(svc, "/v1/cases/AGAIN/V1/ack", {"by": "ana"})
        events(pd_receiver, 2, "its resolve")
        void(svc, "AGAIN", 5)  # the same conflict again
        third = events(pd_receiver, 3, "the second conflict")[2]
        ack(svc, "/v1/cases/AGAIN/V1/ack", {"by": "bo"})
        got = events(pd_receiver, 4, "its resolve")
    eq([(e["event_action"], e["dedup_key"]) for e in got],
       [("trigger", first["dedup_key"]), ("resolve", first["dedup_key"]),
        ("trigger", third["dedup_key"]), ("resolve", third["dedup_key"])])
    assert first["dedup_key"] != third["dedup_key"], "a new incident, not the closed one"


def test_pagerduty_400_waits_the_longest_backoff_and_429_is_retried(db, pd_receiver):
    # A 400 also answers a wrong routing key: every alert would be refused until the key is
    # fixed, so a refused alert is tried again, at the longest backoff, never given up.
    pd_receiver.answer_with(400, 429)
    env = env_for(pd_receiver, "pagerduty", VOIDRECON_ALERT_RETRY_MS="50",
                  VOIDRECON_ALERT_RETRY_MAX_MS="4000")
    with Service(db, env=env) as svc:
        void(svc, "BAD1", 4)
        wait_until(lambda: len(pd_receiver.got) == 1, what="the refused attempt")
        refused_at = pd_receiver.got[0]["at"]
        void(svc, "LATE1", 4)
        wait_until(lambda: len(pd_receiver.ok_deliveries()) == 1,
                   what="the later alert, after a 429")
        eq([g["answer"] for g in pd_receiver.got], [400, 429, "ok"])
        bad = db.query("select delivered_at, attempts, last_error,"
                       " extract(epoch from next_attempt_at - last_attempt_at)::int"
                       " from voidrecon.alerts where order_no = 'BAD1'")[0]
        eq(bad[:2], [None, "1"], "not delivered yet, one attempt")
        assert "HTTP 400" in bad[2], bad
        eq(bad[3], "4", "the longest backoff, not the first")
        pending = json.loads(svc.get("/v1/alerts?state=pending", headers=AUTH)[2])["alerts"]
        eq([(a["order_no"], a["last_error"] is not None) for a in pending], [("BAD1", True)],
           "visible to people")
        refused = svc.wait_log("alert_refused")
        eq(refused["level"], "warn")
        wait_until(lambda: len(pd_receiver.ok_deliveries()) == 2, timeout=15,
                   what="the refused alert, tried again")
        assert pd_receiver.got[-1]["at"] - refused_at >= 3.5, "sent again before the backoff"
        eq(db.query("select attempts from voidrecon.alerts where order_no = 'BAD1'"), [["2"]])
        assert ROUTING_KEY not in svc.log_text()


def test_pagerduty_refusal_that_quotes_the_routing_key_keeps_it_out(db, pd_receiver):
    # Wherever the receiver's answer quotes the key, even across the cut of the kept text.
    said = b'{"status":"invalid event","message":"Event object is invalid","errors":["' + \
        b"x" * 64 + b" routing key " + ROUTING_KEY.encode() + b' is not known"]}'
    pd_receiver.answer_with((400, said))
    env = env_for(pd_receiver, "pagerduty", VOIDRECON_ALERT_RETRY_MAX_MS="600000")
    with Service(db, env=env) as svc:
        void(svc, "QUOTE1", 4)
        wait_until(lambda: db.query("select last_error from voidrecon.alerts"
                                    " where order_no = 'QUOTE1' and last_error is not null"),
                   what="the refusal recorded")
        svc.wait_log("alert_refused")
        err = db.query("select last_error from voidrecon.alerts where order_no = 'QUOTE1'")[0][0]
        assert "HTTP 400" in err, err
        for text in (err, svc.log_text()):
            assert ROUTING_KEY[:8] not in text, "a piece of the routing key is kept"


def test_a_resolve_waits_for_the_alert_it_resolves(db, pd_receiver):
    # The trigger fails once and waits its backoff; the acknowledgement's resolve, written
    # meanwhile, must not reach PagerDuty first: a resolve with no open incident is dropped,
    # and the late trigger would open one that nothing closes.
    pd_receiver.answer_with("fail")
    env = env_for(pd_receiver, "pagerduty", VOIDRECON_ALERT_RETRY_MS="2000")
    with Service(db, env=env) as svc:
        void(svc, "ORDER1", 4)
        wait_until(lambda: len(pd_receiver.got) == 1, what="the failed trigger")
        ack(svc, "/v1/cases/ORDER1/V1/ack", {"by": "ana"})
        got = events(pd_receiver, 2, "the trigger and its resolve")
    eq([e["event_action"] for e in got], ["trigger", "resolve"])
    eq(got[0]["dedup_key"], got[1]["dedup_key"])


# ---- configuration ----------------------------------------------------------------------------


def refused_start(db, env):
    """Starts serve with env, which must refuse to start (status 2); returns its error line."""
    svc = Service(db, env=env, start=False)
    with pytest.raises(ServiceError):
        svc.start()
    eq(svc.returncode, 2)
    return [line for line in svc.logs() if line["level"] == "error"][-1]["msg"]


def test_pagerduty_without_a_routing_key_refuses_to_start(db, pd_receiver):
    env = env_for(pd_receiver, "pagerduty")
    del env["VOIDRECON_ALERT_ROUTING_KEY"]
    msg = refused_start(db, env)
    assert msg.startswith("VOIDRECON_ALERT_ROUTING_KEY: required with "
                          "VOIDRECON_ALERT_FORMAT=pagerduty"), msg
    eq(refused_start(db, env_for(pd_receiver, "chat")),
       'VOIDRECON_ALERT_FORMAT: "chat" is not standard, slack or pagerduty')

    with Service(db, env=env_for(pd_receiver, "pagerduty")) as svc:
        config = svc.wait_log("config")
        assert "ALERT_ROUTING_KEY=" in config["msg"], config
        assert "ALERT_FORMAT=pagerduty" in config["msg"], config
    assert ROUTING_KEY not in svc.log_text(), "the routing key is never logged"
