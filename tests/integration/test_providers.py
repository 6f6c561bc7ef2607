"""Xsolla and XendBridge webhooks through a running service into a real PostgreSQL: success,
duplicate, bad signature, malformed body, the database down; the rows and alerts that result."""

import hashlib
import json
import os
import re

import pytest

from utils import Service, eq, source_dir

DATA = os.path.join(source_dir(), "tests", "data")
SECRET = "xsolla-project-secret"


def sample(rel):
    with open(os.path.join(DATA, rel), "rb") as f:
        return f.read()


def signed(body, secret=SECRET):
    return {"Content-Type": "application/json",
            "Authorization": "Signature " + hashlib.sha1(body + secret.encode()).hexdigest()}


def xsolla(svc, body, headers=None, path="/webhooks/xsolla"):
    status, hdrs, reply = svc.request("POST", path, body=body,
                                      headers=signed(body) if headers is None else headers)
    return status, hdrs, json.loads(reply) if reply else None


def cancellations(db):
    return db.query("select provider, order_ref, order_status, verified, needs_followup,"
                    " details::text from voidrecon.order_cancellations order by id")


def deliveries(db):
    return db.query("select provider, event_type, outcome, reason from voidrecon.deliveries"
                    " order by id")


def alerts(db):
    return db.query("select kind, order_no, payload->>'provider' from voidrecon.alerts order by id")


XSOLLA_ENV = {"VOIDRECON_XSOLLA_SECRET": SECRET}


def test_xsolla_order_canceled_is_recorded_once_and_answered_204(db):
    with Service(db, env=XSOLLA_ENV) as svc:
        body = sample("xsolla/order_canceled.json")
        status, hdrs, reply = xsolla(svc, body)
        eq((status, reply), (204, None))
        assert "content-length" not in hdrs or hdrs["content-length"] == "0"
        eq(xsolla(svc, body)[0], 204, "a repeated notification gets the same answer")
        eq(xsolla(svc, sample("xsolla/order_canceled_v2.json"))[0], 204)
    rows = cancellations(db)
    eq([r[:5] for r in rows], [["xsolla", "1", "canceled", "t", "t"],
                               ["xsolla", "602310", "canceled", "t", "t"]])
    details = json.loads(rows[0][5])
    eq({k: details[k] for k in ("order_id", "amount", "currency", "invoice_id",
                                "user_external_id", "webhook_version")},
       {"order_id": 1, "amount": "2000", "currency": "USD", "invoice_id": "1054",
        "user_external_id": "id_xsolla_user", "webhook_version": 1})
    eq(json.loads(rows[1][5])["webhook_version"], 2)
    eq([d[:3] for d in deliveries(db)], [["xsolla", "order_canceled", "applied"],
                                        ["xsolla", "order_canceled", "duplicate"],
                                        ["xsolla", "order_canceled", "applied"]])
    eq(alerts(db), [["order_cancelled", "1", "xsolla"], ["order_cancelled", "602310", "xsolla"]],
       "one alert per cancellation, none for the repeat")
    eq(db.scalar("select count(*) from voidrecon.followups where reason = 'cancelled_by_xsolla'"),
       "2")


def text_is(actual, want, what):
    """want: the exact text, or a compiled pattern that must be found in it."""
    if isinstance(want, re.Pattern):
        assert want.search(actual), "%s: %r does not match %r" % (what, actual, want.pattern)
    else:
        eq(actual, want, what)


XSOLLA_BODY = sample("xsolla/order_canceled.json")
GOOD = signed(XSOLLA_BODY)["Authorization"]
JSON = {"Content-Type": "application/json"}
ORDER_WITHOUT_ID = json.dumps({"notification_type": "order_canceled", "order": {}}).encode()
NOT_JSON_TYPE = b'{"notification_type":"payment"}'


# body, headers, the error's code and message (None: not checked), the kept delivery's reason
@pytest.mark.parametrize("body, headers, code, message, reason", [
    pytest.param(XSOLLA_BODY, JSON, "INVALID_SIGNATURE", None,
                 re.compile("^Authorization: missing"), id="no-signature"),
    pytest.param(XSOLLA_BODY, dict(JSON, Authorization=GOOD[:-1] + "0"), "INVALID_SIGNATURE",
                 None, "Authorization: the signature does not match the body", id="last-digit"),
    pytest.param(XSOLLA_BODY, dict(JSON, Authorization=GOOD.upper()), "INVALID_SIGNATURE", None,
                 None, id="upper-case"),
    pytest.param(XSOLLA_BODY, dict(JSON, Authorization=GOOD[:-2]), "INVALID_SIGNATURE", None,
                 None, id="truncated"),
    pytest.param(XSOLLA_BODY, signed(XSOLLA_BODY, "another-secret"), "INVALID_SIGNATURE", None,
                 None, id="another-secret"),
    pytest.param(XSOLLA_BODY + b" ", dict(JSON, Authorization=GOOD), "INVALID_SIGNATURE", None,
                 None, id="body-changed-by-a-byte"),
    pytest.param(b"{not json", signed(b"{not json"), "INVALID_PARAMETER",
                 re.compile("not valid JSON"), None, id="signed-but-malformed"),
    pytest.param(ORDER_WITHOUT_ID, signed(ORDER_WITHOUT_ID), None, "order.id: missing", None,
                 id="order-without-id"),
    pytest.param(NOT_JSON_TYPE, dict(signed(NOT_JSON_TYPE), **{"Content-Type": "text/plain"}),
                 "INVALID_PARAMETER", None, None, id="text-plain"),
])
def test_xsolla_refuses_bad_signatures_before_reading_the_body(db, body, headers, code, message,
                                                               reason):
    with Service(db, env=XSOLLA_ENV) as svc:
        status, _, reply = xsolla(svc, body, headers)
        eq(status, 400, "status")
        if code is not None:
            eq(reply["error"]["code"], code, "error code")
        if message is not None:
            text_is(reply["error"]["message"], message, "error message")
        assert SECRET not in svc.log_text()
    eq(cancellations(db), [], "nothing recorded")
    eq(alerts(db), [])
    got = deliveries(db)
    eq([d[2] for d in got], ["rejected"], "every refused request is kept for audit")
    if reason is not None:
        text_is(got[0][3], reason, "reason kept")


def test_xsolla_other_notifications_are_stored_and_answered_204(db):
    with Service(db, env=XSOLLA_ENV) as svc:
        for body in (sample("xsolla/schema_sample.json"),
                     b'{"notification_type":"user_validation","user":{"id":"42"}}'):
            eq(xsolla(svc, body)[0], 204)
    eq([d[:3] for d in deliveries(db)], [["xsolla", "string", "ignored"],
                                        ["xsolla", "user_validation", "ignored"]])
    eq(cancellations(db), [])


def test_xsolla_without_a_secret_answers_503(svc):
    status, _, reply = xsolla(svc, sample("xsolla/order_canceled.json"))
    eq((status, reply["error"]["code"]), (503, "SERVER_ERROR"))
    assert "secret is not set" in reply["error"]["message"]
    eq(deliveries(svc.db), [])


def test_xendbridge_seed_sample_and_the_other_notifications(db):
    with Service(db) as svc:
        def post(rel_or_body):
            body = sample(rel_or_body) if isinstance(rel_or_body, str) else rel_or_body
            status, _, reply = svc.request("POST", "/webhooks/xendbridge", body=body,
                                           headers={"Content-Type": "application/json"})
            return status, json.loads(reply)

        eq(post("xendbridge/order_canceled.json"), (200, {"status": "OK", "outcome": "applied",
                                                          "delivery_id": 1}))
        eq(post("xendbridge/order_canceled.json")[1]["outcome"], "duplicate")
        eq(post("xendbridge/order_payment_confirmation.json")[1]["outcome"], "ignored")
        eq(post("xendbridge/order_matched.json")[1]["outcome"], "ignored")
        odd = json.dumps({"CheckSum": "AB", "Data": {"OrderId": "x", "OrderReference": "XB_9",
                                                     "OrderStatus": 11, "InitiatedBy": 3}})
        eq(post(odd.encode())[1]["outcome"], "ignored", "an undocumented status is kept")
        status, reply = post(b'{"CheckSum":"AB","Data":{"OrderStatus":2}}')
        eq((status, reply["error"]["message"]), (400, "Data.OrderReference: missing"))
    rows = cancellations(db)
    eq([r[:5] for r in rows], [["xendbridge", "XB_0cb80c382cd343ae9600cf6b177be55a", "2", "f",
                                "t"]])
    details = json.loads(rows[0][5])
    eq(details["order_id"], "844059b7-88ea-4b73-daca-08d9eb0f6c4a")
    eq(details["initiated_by"], 0)
    eq(details["checksum_verified"], False)
    assert details["checksum"].startswith("7423ACC55801F2ED"), details
    eq([d[1:3] for d in deliveries(db)],
       [["order_canceled", "applied"], ["order_canceled", "duplicate"],
        ["order_payment_confirmation", "ignored"], ["order_matched", "ignored"],
        ["order_status", "ignored"], [None, "rejected"]])
    eq(alerts(db), [["order_cancelled", "XB_0cb80c382cd343ae9600cf6b177be55a", "xendbridge"]])


def test_every_provider_has_its_token_allowlist_and_alert_switch(db):
    env = {"VOIDRECON_XENDBRIDGE_WEBHOOK_TOKEN": "xb-token", "VOIDRECON_XENDBRIDGE_ALERTS": "off",
           "VOIDRECON_XSOLLA_SECRET": SECRET, "VOIDRECON_XSOLLA_ALLOWED_CIDRS": "185.30.20.0/24"}
    with Service(db, env=env) as svc:
        body = sample("xendbridge/order_canceled.json")
        hdrs = {"Content-Type": "application/json"}
        eq(svc.request("POST", "/webhooks/xendbridge", body=body, headers=hdrs)[0], 404)
        eq(svc.request("POST", "/webhooks/xendbridge/wrong", body=body, headers=hdrs)[0], 404)
        eq(svc.request("POST", "/webhooks/xendbridge/xb-token", body=body, headers=hdrs)[0], 200)
        eq(xsolla(svc, sample("xsolla/order_canceled.json"))[0], 403)
        eq(svc.request("POST", "/webhooks/nobody", body=body, headers=hdrs)[0], 404)
        assert "xb-token" not in svc.log_text()
    eq([r[:2] for r in cancellations(db)],
       [["xendbridge", "XB_0cb80c382cd343ae9600cf6b177be55a"]])
    eq(alerts(db), [], "VOIDRECON_XENDBRIDGE_ALERTS=off: flagged for follow-up, no alert")
    eq(db.scalar("select needs_followup from voidrecon.order_cancellations"), "t")


def test_database_down_gives_each_provider_its_retry_answer(own_cluster):
    svc = Service(own_cluster.db, env=XSOLLA_ENV)
    own_cluster.stop()
    status, _, reply = xsolla(svc, sample("xsolla/order_canceled.json"))
    eq((status, reply["error"]["code"]), (500, "SERVER_ERROR"), "Xsolla retries on 5xx")
    status, hdrs, _ = svc.request("POST", "/webhooks/xendbridge",
                                  body=sample("xendbridge/order_canceled.json"),
                                  headers={"Content-Type": "application/json"})
    eq((status, hdrs.get("retry-after")), (503, "5"))
    own_cluster.start()
    svc.stop()
    svc.start()
    eq(xsolla(svc, sample("xsolla/order_canceled.json"))[0], 204)
    svc.stop()
    eq([r[:2] for r in cancellations(own_cluster.db)], [["xsolla", "1"]])

