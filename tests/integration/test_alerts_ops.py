"""People in the loop: signed alert delivery to a real receiver (retries, a hanging receiver,
restarts, two processes), the /v1 operations API, the CLI, and /metrics."""

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import time

from utils import Service, eq, metrics_of, voidrecon_bin, wait_until

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "atlas")
ADMIN = "ops-token-7"
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef01234567").decode()
AUTH = {"Authorization": "Bearer " + ADMIN}


def verify(headers, body, secret=SECRET, tolerance=300):
    """Standard Webhooks verification, written from the specification, not from voidrecon."""
    key = base64.b64decode(secret[len("whsec_"):])
    msg_id, ts = headers["webhook-id"], headers["webhook-timestamp"]
    assert abs(time.time() - int(ts)) <= tolerance, "timestamp outside the tolerance"
    want = base64.b64encode(hmac.new(key, b"%s.%s.%s" % (msg_id.encode(), ts.encode(), body),
                                     hashlib.sha256).digest())
    sigs = [s.split(",", 1)[1].encode() for s in headers["webhook-signature"].split()
            if s.startswith("v1,")]
    return any(hmac.compare_digest(want, s) for s in sigs)


def rejected(order, code="V1"):
    return {"cid": "C", "type": "order.void", "status": -1,
            "data": {"orderNo": order, "voidCode": code, "voidStatus": 4,
                     "message": "Automatic void processing failed after 10 retries."}}


def alert_env(receiver, **extra):
    env = {"VOIDRECON_ALERT_URL": receiver.url, "VOIDRECON_ALERT_SECRET": SECRET,
           "VOIDRECON_ALERT_TICK_MS": "50", "VOIDRECON_ADMIN_TOKEN": ADMIN}
    env.update(extra)
    return env


def cli(db, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIDRECON_")}
    env["VOIDRECON_DATABASE_URL"] = db.url
    return subprocess.run([voidrecon_bin()] + list(args), env=env,
                          capture_output=True, text=True, timeout=30)


def deliver_a_later_alert(svc, db, receiver, order):
    """Raises an alert for a new rejected case and waits until the receiver has it; returns
    its id. Once a later alert arrived, an earlier one sent twice would have arrived too."""
    eq(svc.post_json("/webhooks/atlas", rejected(order))[0], 200)
    alert_id = db.scalar("select id from voidrecon.alerts where order_no = :'p1'", order)
    wait_until(lambda: receiver.ok_deliveries(alert_id), what="the later alert (%s)" % order)
    return alert_id


# ---- delivery ------------------------------------------------------------------------------


def test_rejected_void_reaches_the_receiver_signed_within_a_second_then_is_acknowledged(
        db, receiver):
    with Service(db, env=alert_env(receiver)) as svc:
        with open(os.path.join(DATA, "void_retry_failure.json"), "rb") as f:
            sent = time.time()
            eq(svc.post_json("/webhooks/atlas", f.read())[0], 200)
        got = wait_until(receiver.ok_deliveries, timeout=2, what="the alert")[0]
        took = got["at"] - sent
        print("alert delivered %.0f ms after the webhook was posted" % (took * 1000))
        assert took < 1.0, "delivered after %.3f s" % took
        assert verify(got["headers"], got["body"]), "signature does not verify"
        assert not verify(got["headers"], got["body"] + b" "), "a changed body must not verify"
        eq(got["headers"]["content-type"], "application/json")
        alert_id = db.scalar("select id from voidrecon.alerts")
        eq(got["headers"]["webhook-id"], alert_id)
        body = json.loads(got["body"])
        eq((body["kind"], body["type"], body["order_no"], body["void_code"], body["status"]),
           ("void_rejected", "voidrecon.void_rejected", "TESTA20250512100600259",
            "202505-0012", 4))
        eq(body["text"], "[voidrecon] Void REJECTED: order TESTA20250512100600259, void "
                         "202505-0012: Automatic void processing failed after 10 retries.")
        eq(body["followup_reason"], "rejected")
        wait_until(lambda: db.scalar("select delivered_at is not null from voidrecon.alerts")
                 == "t", what="delivered_at")
        eq(db.scalar("select attempts from voidrecon.alerts"), "1")
        later_id = deliver_a_later_alert(svc, db, receiver, "LATER1")
        eq([g["headers"]["webhook-id"] for g in receiver.got], [alert_id, later_id],
           "delivered once")
    p = cli(db, "cases", "list", "--state", "followup")
    eq(p.returncode, 0, p.stderr)
    assert re.search(r"TESTA20250512100600259\s+202505-0012\s+4\s+REJECTED\s+no\s+yes\s+"
                     r"rejected", p.stdout), p.stdout
    p = cli(db, "cases", "ack", "TESTA20250512100600259", "202505-0012", "--by", "ana",
            "--note", "rebooked by phone")
    eq((p.returncode, p.stdout.strip()),
       (0, "TESTA20250512100600259 202505-0012: follow-up (rejected) acknowledged by ana"))
    p = cli(db, "cases", "list", "--state", "followup")
    assert "TESTA20250512100600259" not in p.stdout, p.stdout
    eq(db.query("select subject, reason, acked_by, note from voidrecon.acknowledgements"),
       [["void_case", "rejected", "ana", "rebooked by phone"]])
    eq(db.query("select order_no from voidrecon.followups"), [["LATER1"]],
       "only the later case still waits")


def test_delivery_retries_through_failures_and_a_hanging_receiver(db, receiver):
    receiver.answer_with("fail", "fail", "hang", "ok")
    env = alert_env(receiver, VOIDRECON_ALERT_TIMEOUT_MS="400", VOIDRECON_ALERT_RETRY_MS="100")
    with Service(db, env=env) as svc:
        svc.post_json("/webhooks/atlas", rejected("RETRY1"))
        wait_until(lambda: db.scalar("select delivered_at is not null from voidrecon.alerts")
                 == "t", timeout=15, what="delivery after retries")
        eq([g["answer"] for g in receiver.got], ["fail", "fail", "hang", "ok"])
        eq({g["headers"]["webhook-id"] for g in receiver.got},
           {db.scalar("select id from voidrecon.alerts")}, "the same webhook-id on every attempt")
        assert all(verify(g["headers"], g["body"]) for g in receiver.got)
        eq(db.scalar("select attempts from voidrecon.alerts"), "4")
        gaps = [b["at"] - a["at"] for a, b in zip(receiver.got, receiver.got[1:])]
        assert gaps[1] > gaps[0] * 1.2, "the backoff grows: %r" % gaps
        failed = [line for line in svc.logs() if line["event"] == "alert_delivery_failed"]
        eq(len(failed), 3)
        assert "HTTP 500" in failed[0]["msg"] and "timed out" in failed[2]["msg"], failed


def test_an_alert_is_never_lost_across_a_restart(db, receiver):
    receiver.answer_with(*["fail"] * 1000)
    # The kill may catch an attempt in flight: its lease (twice the timeout plus 5 s) must
    # expire before the restarted service sends the alert again, well within the wait below.
    env = alert_env(receiver, VOIDRECON_ALERT_RETRY_MS="50", VOIDRECON_ALERT_RETRY_MAX_MS="200",
                    VOIDRECON_ALERT_TIMEOUT_MS="1000")
    svc = Service(db, env=env)
    svc.post_json("/webhooks/atlas", rejected("RESTART1"))
    wait_until(lambda: len(receiver.got) >= 2, what="failing attempts")
    svc.kill()
    eq(db.scalar("select delivered_at from voidrecon.alerts"), None)
    receiver.answer_with()
    svc.start()
    alert_id = db.scalar("select id from voidrecon.alerts")
    wait_until(receiver.ok_deliveries, timeout=15, what="delivery after the restart")
    later_id = deliver_a_later_alert(svc, db, receiver, "RESTART2")
    eq([g["headers"]["webhook-id"] for g in receiver.ok_deliveries()], [alert_id, later_id])
    svc.stop()
    eq(db.scalar("select delivered_at is not null from voidrecon.alerts where id = :'p1'",
                 alert_id), "t")


def test_two_processes_deliver_each_alert_once(db, receiver):
    env = alert_env(receiver, VOIDRECON_ALERT_CONCURRENCY="2")
    a, b = Service(db, env=env), Service(db, env=env)
    for i in range(30):
        (a if i % 2 else b).post_json("/webhooks/atlas", rejected("TWO%02d" % i))
    wait_until(lambda: db.scalar("select count(*) from voidrecon.alerts"
                               " where delivered_at is null") == "0", what="all delivered")
    # Two later alerts delivered prove the processes went on past the point where they would
    # have sent one of the first 30 again.
    a.post_json("/webhooks/atlas", rejected("LATER_A"))
    b.post_json("/webhooks/atlas", rejected("LATER_B"))
    wait_until(lambda: db.scalar("select count(*) from voidrecon.alerts"
                               " where delivered_at is null") == "0", what="the later alerts")
    ids = [g["headers"]["webhook-id"] for g in receiver.got]
    eq(len(ids), 32)
    eq(len(set(ids)), 32, "no alert delivered twice")
    senders = {p: sum(1 for line in p.logs() if line["event"] == "alert_delivered")
               for p in (a, b)}
    eq(sum(senders.values()), 32)
    a.stop()
    b.stop()


# ---- the operations API ----------------------------------------------------------------------


def test_operations_api(db):
    with Service(db, env={"VOIDRECON_ADMIN_TOKEN": ADMIN}) as svc:
        eq(svc.get("/v1/cases")[0], 401)
        eq(svc.get("/v1/cases", headers={"Authorization": "Bearer wrong"})[0], 403)
        for i, s in enumerate([0, 1, 3, 4, 2, 4, 0]):
            svc.post_json("/webhooks/atlas", {"type": "order.void", "data": {
                "orderNo": "API%d" % i, "voidCode": "V", "voidStatus": s}})
        svc.post_json("/webhooks/atlas", {"type": "order.cancelled",
                                          "data": {"orderNo": "CXL1", "errorCode": "604"}})

        def get(path):
            status, _, body = svc.get(path, headers=AUTH)
            eq(status, 200, path)
            return json.loads(body)

        seen, cursor, pages = [], None, 0
        while True:
            page = get("/v1/cases?state=all&limit=3" + ("&cursor=" + cursor if cursor else ""))
            seen += [(c["order_no"], c["void_code"]) for c in page["cases"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        eq(seen, [("API%d" % i, "V") for i in range(7)], "every case once, in key order")
        eq(pages, 3)
        eq([c["order_no"] for c in get("/v1/cases")["cases"]], ["API0", "API1", "API2", "API6"],
           "open by default")
        eq([c["order_no"] for c in get("/v1/cases?state=rejected")["cases"]], ["API3", "API5"])
        eq([c["order_no"] for c in get("/v1/cases?state=followup")["cases"]], ["API3", "API5"])
        shown = get("/v1/cases/API3/V")
        eq(shown["case"]["status_name"], "REJECTED")
        eq([h["outcome"] for h in shown["history"]], ["applied"])
        eq([a["kind"] for a in shown["alerts"]], ["void_rejected"])
        status, _, body = svc.post_json("/v1/cases/API3/V/ack", {"by": "li", "note": "refunded"},
                                        headers=AUTH)
        eq(status, 200)
        eq(json.loads(body)["case"]["followup_acked_by"], "li")
        eq([c["order_no"] for c in get("/v1/cases?state=followup")["cases"]], ["API5"])
        eq(get("/v1/cases/API3/V")["acknowledgements"][0]["note"], "refunded")
        status, _, body = svc.post_json("/v1/cases/API3/V/ack", {"by": "li"}, headers=AUTH)
        eq((status, json.loads(body)["error"]["code"]), (409, "no_followup"))
        status, _, body = svc.post_json("/v1/cases/NOPE/V/ack", {"by": "li"}, headers=AUTH)
        eq(status, 404)
        status, _, body = svc.post_json("/v1/cases/API5/V/ack", {"note": "x"}, headers=AUTH)
        eq((status, json.loads(body)["error"]["message"]),
           (400, "by: expected the name of who acknowledges"))
        eq(svc.get("/v1/cases/NOPE/V", headers=AUTH)[0], 404)
        eq(svc.get("/v1/cases?state=weird", headers=AUTH)[0], 400)
        eq(svc.get("/v1/cases?limit=0", headers=AUTH)[0], 400)
        eq(svc.get("/v1/cases?cursor=nothex", headers=AUTH)[0], 400)
        alerts = get("/v1/alerts?state=pending")["alerts"]
        # The acknowledgement of API3 resolved its alert with an alert of the same kind.
        eq(sorted((a["kind"], a["payload"].get("resolved", False)) for a in alerts),
           [("order_cancelled", False), ("void_rejected", False), ("void_rejected", False),
            ("void_rejected", True)])
        eq({a["delivered_at"] for a in alerts}, {None})
        eq(get("/v1/alerts?limit=2")["next_cursor"] is not None, True)
        cancellations = get("/v1/cancellations")["cancellations"]
        eq([(c["provider"], c["order_ref"], c["error_code"]) for c in cancellations],
           [("atlas", "CXL1", "604")])
        # The CLI prints what the API answers.
        p = cli(db, "cases", "list", "--state", "all", "--limit", "3", "--json")
        eq(json.loads(p.stdout), get("/v1/cases?state=all&limit=3"))
        p = cli(db, "cases", "show", "API5", "V", "--json")
        eq(json.loads(p.stdout), get("/v1/cases/API5/V"))
        p = cli(db, "alerts", "list", "--state", "pending")
        eq(p.returncode, 0, p.stderr)
        assert p.stdout.splitlines()[0].split() == ["ID", "KIND", "ORDER_NO", "VOID_CODE",
                                                    "RAISED", "DELIVERED", "ATTEMPTS",
                                                    "LAST_ERROR"], p.stdout
        eq(len(p.stdout.splitlines()), 5)
        p = cli(db, "cases", "show", "API5", "V")
        assert "status_name        REJECTED" in p.stdout and "History:" in p.stdout, p.stdout
        p = cli(db, "cases", "show", "NOPE", "V")
        eq(p.returncode, 1)
        assert "no such void case" in p.stderr
        p = cli(db, "cases", "list", "--state", "weird")
        eq(p.returncode, 2)


# ---- metrics --------------------------------------------------------------------------------


def test_metrics_move_with_the_work(db):
    # The counts are read in the background (never per scrape): read them often here.
    svc = Service(db, env={"VOIDRECON_GAUGE_REFRESH_MS": "100"})
    before = wait_until(lambda: (lambda m: m if "voidrecon_open_cases" in m else None)(
        metrics_of(svc)), 10, "the first reading of the counts")
    eq(before["voidrecon_database_up"], 1)
    eq(before["voidrecon_open_cases"], 0)
    svc.post_json("/webhooks/atlas", {"type": "order.void", "data": {
        "orderNo": "M1", "voidCode": "V", "voidStatus": 0}})
    svc.post_json("/webhooks/atlas", {"type": "order.void", "data": {
        "orderNo": "M1", "voidCode": "V", "voidStatus": 0}})
    svc.post_json("/webhooks/atlas", rejected("M2"))
    svc.post_json("/webhooks/atlas", b"{broken")
    after = metrics_of(svc)
    key = 'voidrecon_webhooks_received_total{provider="atlas",outcome="%s"}'
    eq(after[key % "applied"] - before[key % "applied"], 2)
    eq(after[key % "duplicate"] - before[key % "duplicate"], 1)
    eq(after[key % "rejected"] - before[key % "rejected"], 1)
    tkey = 'voidrecon_transitions_total{source="webhook",outcome="%s"}'
    eq(after[tkey % "applied"] - before[tkey % "applied"], 2)
    hkey = 'voidrecon_http_request_duration_seconds_count{handler="webhooks_atlas"}'
    eq(after[hkey] - before[hkey], 4)
    eq(after['voidrecon_http_requests_total{handler="webhooks_atlas",code="4xx"}'], 1)
    counts = ("voidrecon_open_cases", "voidrecon_followup_cases", "voidrecon_alert_backlog")
    wait_until(lambda: [metrics_of(svc)[k] for k in counts] == [1, 1, 1], 10,
               "the counts read again")
    buckets = [v for k, v in after.items()
               if k.startswith('voidrecon_http_request_duration_seconds_bucket{handler="webhooks_atlas"')]
    eq(buckets, sorted(buckets), "cumulative buckets")

