"""Loops people close: a case waits for a person for several reasons at once, each raised and
alerted once and acknowledged on its own; order cancellations are acknowledged through /v1
and the CLI."""

import json
import os
import subprocess

from utils import (ADMIN_TOKEN as ADMIN, Service, eq, metrics_of, source_dir, voidrecon_bin,
                   wait_until)

AUTH = {"Authorization": "Bearer " + ADMIN}


def cli(db, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIDRECON_")}
    env["VOIDRECON_DATABASE_URL"] = db.url
    return subprocess.run([voidrecon_bin()] + list(args), env=env,
                          capture_output=True, text=True, timeout=30)


def open_reasons(db, order, code):
    return [r[0] for r in db.query(
        "select reason from voidrecon.followups where subject = 'void_case'"
        " and order_no = :'p1' and void_code = :'p2' order by voidrecon.followup_rank(reason)",
        order, code)]


def flags(db, order, code):
    return db.query("select needs_followup, followup_reason from voidrecon.void_cases"
                    " where order_no = :'p1' and void_code = :'p2'", order, code)[0]


def ack(svc, path, body):
    status, _, reply = svc.request("POST", path, body=json.dumps(body).encode(),
                                   headers=dict(AUTH, **{"Content-Type": "application/json"}))
    return status, json.loads(reply)


def test_three_reasons_are_kept_and_acknowledged_one_by_one(db, make_rig):
    # Atlas does not know the case: every poll fails; the case stays open past the stuck
    # threshold; then a webhook says the void was rejected.
    env = {"VOIDRECON_POLL_FAILURES_ALERT": "2", "VOIDRECON_STUCK_AFTER_MS": "400",
           "VOIDRECON_GAUGE_REFRESH_MS": "100"}
    rig = make_rig(env=env, webhooks=False)
    rig.register("THREE", "V1")
    rig.wait(lambda: set(open_reasons(db, "THREE", "V1")) == {"poll_failing", "stuck"},
             what="poll_failing and stuck both open")
    eq(rig.svc.post_json("/webhooks/atlas", {"type": "order.void", "data": {
        "orderNo": "THREE", "voidCode": "V1", "voidStatus": 4}})[0], 200)
    eq(open_reasons(db, "THREE", "V1"), ["rejected", "poll_failing", "stuck"])
    eq(flags(db, "THREE", "V1"), ["t", "rejected"], "the most urgent reason for old readers")
    eq(db.query("select kind from voidrecon.alerts order by kind"),
       [["void_poll_failing"], ["void_rejected"], ["void_stuck"]], "one alert per reason")

    def by_reason():
        m = metrics_of(rig.svc)
        return [m.get('voidrecon_followups{reason="%s"}' % r)
                for r in ("rejected", "conflict", "poll_failing", "stuck")]
    rig.wait(lambda: by_reason() == [1, 0, 1, 1], what="/metrics counting each open reason")
    eq(metrics_of(rig.svc)["voidrecon_followup_cases"], 1, "one case waiting")

    # One reason acknowledged: the others stay, and a failing poll does not raise it again
    # within the same run of failures.
    failures = rig.case("THREE", "V1")["failures"]
    st, reply = ack(rig.svc, "/v1/cases/THREE/V1/ack", {"by": "ana", "reason": "poll_failing"})
    eq((st, reply["acknowledged"]), (200, ["poll_failing"]))
    eq([f["reason"] for f in reply["case"]["followups"]], ["rejected", "stuck"])
    eq((reply["case"]["needs_followup"], reply["case"]["followup_reason"]), (True, "rejected"))
    rig.wait(lambda: rig.case("THREE", "V1")["failures"] >= failures + 2, what="two more polls")
    eq(open_reasons(db, "THREE", "V1"), ["rejected", "stuck"])
    st, reply = ack(rig.svc, "/v1/cases/THREE/V1/ack", {"by": "ana", "reason": "poll_failing"})
    eq((st, reply["error"]["message"]),
       (409, 'the case has no open follow-up "poll_failing" (open: rejected, stuck)'))

    p = cli(db, "cases", "ack", "THREE", "V1", "--by", "bo", "--reason", "stuck",
            "--note", "Atlas ticket raised")
    eq((p.returncode, p.stdout.strip()),
       (0, "THREE V1: follow-up (stuck) acknowledged by bo; still open: rejected"), p.stderr)
    eq(open_reasons(db, "THREE", "V1"), ["rejected"])
    eq(flags(db, "THREE", "V1"), ["t", "rejected"])

    st, reply = ack(rig.svc, "/v1/cases/THREE/V1/ack", {"by": "cy"})
    eq((st, reply["acknowledged"], reply["case"]["needs_followup"]), (200, ["rejected"], False))
    eq(open_reasons(db, "THREE", "V1"), [])
    eq(flags(db, "THREE", "V1")[0], "f")
    eq(db.query("select reason, acked_by, note from voidrecon.acknowledgements order by id"),
       [["poll_failing", "ana", None], ["stuck", "bo", "Atlas ticket raised"],
        ["rejected", "cy", None]])
    st, reply = ack(rig.svc, "/v1/cases/THREE/V1/ack", {"by": "cy"})
    eq((st, reply["error"]["message"]),
       (409, "the case has no follow-up waiting to be acknowledged"))


def test_a_reason_raised_again_after_its_acknowledgement_alerts_again(db):
    with Service(db, env={"VOIDRECON_ADMIN_TOKEN": ADMIN}) as svc:
        def void(status):
            eq(svc.post_json("/webhooks/atlas", {"type": "order.void", "data": {
                "orderNo": "AGAIN", "voidCode": "V1", "voidStatus": status}})[0], 200)

        void(2)
        void(5)  # a second closed status contradicts the first: conflict
        void(6)  # again, while the conflict is open: no second alert
        eq(open_reasons(db, "AGAIN", "V1"), ["conflict"])
        eq(db.scalar("select count(*) from voidrecon.alerts where kind = 'void_conflict'"), "1")
        eq(ack(svc, "/v1/cases/AGAIN/V1/ack", {"by": "ana"})[0], 200)
        void(5)
        eq(open_reasons(db, "AGAIN", "V1"), ["conflict"])
        # Two raised, and the acknowledgement's resolve of the first (migration 0013).
        eq(db.query("select resolves_alert_id is null, count(*) from voidrecon.alerts"
                    " where kind = 'void_conflict' group by 1 order by 1"),
           [["f", "1"], ["t", "2"]])
        show = json.loads(svc.get("/v1/cases/AGAIN/V1", headers=AUTH)[2])
        eq([f["reason"] for f in show["case"]["followups"]], ["conflict"])
        eq(show["case"]["followups"][0]["alert_id"],
           int(db.scalar("select max(id) from voidrecon.alerts where resolves_alert_id is null")))


def test_bad_acknowledgements_are_refused_with_the_field_named(db):
    with Service(db, env={"VOIDRECON_ADMIN_TOKEN": ADMIN}) as svc:
        eq(svc.post_json("/webhooks/atlas", {"type": "order.void", "data": {
            "orderNo": "BAD", "voidCode": "V1", "voidStatus": 4}})[0], 200)
        st, reply = ack(svc, "/v1/cases/BAD/V1/ack", {"by": "ana", "reason": "bored"})
        eq((st, reply["error"]["message"]),
           (400, "reason: expected one of rejected, conflict, poll_failing, stuck"))
        st, reply = ack(svc, "/v1/cases/NONE/V1/ack", {"by": "ana"})
        eq((st, reply["error"]["message"]), (404, "no such void case"))
    p = cli(db, "cases", "ack", "BAD", "V1", "--by", "ana", "--reason", "bored")
    eq(p.returncode, 2)
    assert '--reason: \\"bored\\" is not rejected' in p.stderr, p.stderr
    eq(open_reasons(db, "BAD", "V1"), ["rejected"], "nothing acknowledged")


def xendbridge_cancel(svc, ref):
    with open(os.path.join(source_dir(), "tests", "data", "xendbridge",
                           "order_canceled.json"), "rb") as f:
        body = json.loads(f.read())
    body["Data"]["OrderReference"] = ref
    status, _, reply = svc.request("POST", "/webhooks/xendbridge", body=json.dumps(body).encode(),
                                   headers={"Content-Type": "application/json"})
    eq(status, 200, reply)


def test_cancellations_are_acknowledged_through_the_api_and_the_cli(db):
    with Service(db, env={"VOIDRECON_ADMIN_TOKEN": ADMIN}) as svc:
        xendbridge_cancel(svc, "XB_ONE")
        xendbridge_cancel(svc, "XB_TWO")
        ids = dict(db.query("select order_ref, id from voidrecon.order_cancellations"))
        eq(db.query("select order_no, cancellation_id::text from voidrecon.followups"
                    " where subject = 'order_cancellation' order by 1"),
           [["XB_ONE", ids["XB_ONE"]], ["XB_TWO", ids["XB_TWO"]]])

        st, reply = ack(svc, "/v1/cancellations/%s/ack" % ids["XB_ONE"],
                        {"by": "ana", "note": "refunded by hand"})
        eq(st, 200, reply)
        c = reply["cancellation"]
        eq((c["order_ref"], c["needs_followup"], c["followup_acked_by"], c["followup_ack_note"]),
           ("XB_ONE", False, "ana", "refunded by hand"))
        st, reply = ack(svc, "/v1/cancellations/%s/ack" % ids["XB_ONE"], {"by": "ana"})
        eq((st, reply["error"]["message"]), (409, "the cancellation was acknowledged already"))
        st, reply = ack(svc, "/v1/cancellations/999/ack", {"by": "ana"})
        eq((st, reply["error"]["message"]), (404, "no such order cancellation"))
        st, reply = ack(svc, "/v1/cancellations/%s/ack" % ids["XB_TWO"],
                        {"by": "ana", "reason": "rejected"})
        eq(st, 400)
        st, _, body = svc.get("/v1/cancellations?state=open", headers=AUTH)
        eq([c["order_ref"] for c in json.loads(body)["cancellations"]], ["XB_TWO"])
        st, _, body = svc.get("/v1/cancellations?state=later", headers=AUTH)
        eq((st, json.loads(body)["error"]["message"]), (400, "state must be open, acked or all"))
        st, _, body = svc.get("/v1/cancellations/%s" % ids["XB_ONE"], headers=AUTH)
        shown = json.loads(body)
        eq([(k["reason"], k["acked_by"], k["note"]) for k in shown["acknowledgements"]],
           [("cancelled", "ana", "refunded by hand")])

    p = cli(db, "cancellations", "list", "--state", "open")
    eq(p.returncode, 0, p.stderr)
    assert "XB_TWO" in p.stdout and "XB_ONE" not in p.stdout, p.stdout
    p = cli(db, "cancellations", "ack", ids["XB_TWO"], "--by", "bo", "--note", "ok")
    eq((p.returncode, p.stdout.strip()),
       (0, "cancellation %s (xendbridge XB_TWO) acknowledged by bo" % ids["XB_TWO"]), p.stderr)
    p = cli(db, "cancellations", "ack", ids["XB_TWO"], "--by", "bo")
    eq(p.returncode, 1)
    assert "acknowledged already" in p.stderr, p.stderr
    p = cli(db, "cancellations", "show", ids["XB_TWO"])
    eq(p.returncode, 0, p.stderr)
    assert "followup_acked_by  bo" in p.stdout, p.stdout
    eq(db.scalar("select count(*) from voidrecon.followups"
                 " where subject = 'order_cancellation'"), "0")
    eq(db.query("select subject, order_no, provider, reason, acked_by from"
                " voidrecon.acknowledgements order by id"),
       [["order_cancellation", "XB_ONE", "xendbridge", "cancelled", "ana"],
        ["order_cancellation", "XB_TWO", "xendbridge", "cancelled", "bo"]])
