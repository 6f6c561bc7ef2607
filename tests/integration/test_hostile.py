"""A hostile client against a running service and a real PostgreSQL: bytes PostgreSQL would
refuse in every kept field, large unauthenticated bodies, refusals decided before the body,
slow and idle clients, deep and odd JSON, a header flood, the buffered-bytes budget."""

import hashlib
import json
import resource
import socket
import time

import pytest

from utils import (Service, complete_response, eq, error_of, post_bytes, recv_to_close, recv_until,
                   responses, wait_until)

XSOLLA_SECRET = "xsolla-project-secret"
POISON = "@@POISON@@"
BAD_BYTES = {
    "invalid-utf8": b'"\xff\xfe"',
    "nul": b'"A\\u0000B"',
    "cut-character": b'"\xe4\xb8"',
}

ATLAS_VOID = {"type": "order.void", "data": {"orderNo": "P1", "voidCode": "V1", "voidStatus": 1,
                                             "message": "pending"}}
ATLAS_CANCELLED = {"type": "order.cancelled", "data": {"orderNo": "P2", "orderStatus": -3,
                                                       "errorCode": "604",
                                                       "errorMessage": "declined"}}
XSOLLA_CANCELED = {"notification_type": "order_canceled", "items": [],
                   "order": {"id": 7, "mode": "default", "currency": "USD", "amount": "20",
                             "status": "canceled", "invoice_id": "1054"},
                   "user": {"external_id": "u1"}}
XENDBRIDGE_CANCELED = {"CheckSum": "ABC", "Data": {"OrderId": "o-1", "OrderReference": "XB_1",
                                                   "OrderStatus": 2, "InitiatedBy": 0}}

# (provider, template, the path of the field as the error names it)
KEPT_FIELDS = [
    ("atlas", ATLAS_VOID, "type"),
    ("atlas", ATLAS_VOID, "data.orderNo"),
    ("atlas", ATLAS_VOID, "data.voidCode"),
    ("atlas", ATLAS_VOID, "data.message"),
    ("atlas", ATLAS_CANCELLED, "data.orderNo"),
    ("atlas", ATLAS_CANCELLED, "data.errorCode"),
    ("atlas", ATLAS_CANCELLED, "data.errorMessage"),
    ("xsolla", XSOLLA_CANCELED, "notification_type"),
    ("xsolla", XSOLLA_CANCELED, "order.status"),
    ("xsolla", XSOLLA_CANCELED, "order.amount"),
    ("xsolla", XSOLLA_CANCELED, "order.currency"),
    ("xsolla", XSOLLA_CANCELED, "order.invoice_id"),
    ("xsolla", XSOLLA_CANCELED, "order.mode"),
    ("xsolla", XSOLLA_CANCELED, "user.external_id"),
    ("xendbridge", XENDBRIDGE_CANCELED, "CheckSum"),
    ("xendbridge", XENDBRIDGE_CANCELED, "Data.OrderId"),
    ("xendbridge", XENDBRIDGE_CANCELED, "Data.OrderReference"),
]

PROVIDER_ENV = {"VOIDRECON_XSOLLA_SECRET": XSOLLA_SECRET}


def with_poison(template, path, bad):
    """The template as JSON bytes with the field at path replaced by the raw bytes bad."""
    doc = json.loads(json.dumps(template))
    node = doc
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = POISON
    return json.dumps(doc).encode().replace(b'"' + POISON.encode() + b'"', bad)


def headers_for(provider, body):
    h = {"Content-Type": "application/json"}
    if provider == "xsolla":
        h["Authorization"] = "Signature " + hashlib.sha1(body + XSOLLA_SECRET.encode()).hexdigest()
    return h


def stored_deliveries(db):
    return db.query("select provider, outcome, reason, encode(body, 'hex'), body_length,"
                    " encode(body_sha256, 'hex') from voidrecon.deliveries order by id")


def nothing_else_changed(db):
    eq(db.query("select (select count(*) from voidrecon.void_cases),"
                " (select count(*) from voidrecon.order_cancellations),"
                " (select count(*) from voidrecon.alerts)"), [["0", "0", "0"]],
       "no case, cancellation or alert comes of a refused delivery")


@pytest.mark.parametrize("bad", sorted(BAD_BYTES))
@pytest.mark.parametrize("provider, template, field", KEPT_FIELDS,
                         ids=["%s:%s:%s" % (p, t.get("type", t.get("notification_type", "")), f)
                              for p, t, f in KEPT_FIELDS])
def test_text_postgresql_would_refuse_is_a_400_naming_the_field(db, provider, template, field,
                                                                 bad):
    body = with_poison(template, field, BAD_BYTES[bad])
    with Service(db, env=PROVIDER_ENV) as svc:
        status, _, reply = svc.request("POST", "/webhooks/" + provider, body=body,
                                       headers=headers_for(provider, body))
        eq(status, 400, "a field PostgreSQL cannot keep is the sender's error, not a 500")
        message = json.loads(reply)["error"]["message"]
        assert message.startswith(field + ":"), message
    rows = stored_deliveries(db)
    eq(len(rows), 1, "the refused delivery is kept for audit")
    eq(rows[0][:2], [provider, "rejected"])
    assert rows[0][2].startswith(field + ":"), rows[0][2]
    eq(bytes.fromhex(rows[0][3]), body, "the body is kept byte for byte")
    eq((rows[0][4], rows[0][5]), (str(len(body)), hashlib.sha256(body).hexdigest()))
    nothing_else_changed(db)


def test_json_that_one_reader_sees_otherwise_is_refused(db):
    """Duplicate keys (PostgreSQL's jsonb keeps the last, the parser the first), nesting past
    any sane depth, and numbers outside what a status can be."""
    cases = [
        (b'{"type":"order.void","data":{"orderNo":"D1","orderNo":"D2","voidCode":"V1",'
         b'"voidStatus":1}}', "data.orderNo: duplicate key"),
        (b'{"type":"order.void","type":"other","data":{}}', "type: duplicate key"),
        (b"[" * 10000 + b"]" * 10000, "body: not valid JSON"),
        (b'{"type":"order.void","data":' + b'{"a":' * 10000 + b"1" + b"}" * 10001,
         "body: not valid JSON"),
        (b'{"type":"order.void","data":{"orderNo":"N1","voidCode":"V1","voidStatus":1e999}}',
         "data.voidStatus: expected an integer"),
        (b'{"type":"order.void","data":{"orderNo":"N1","voidCode":"V1","voidStatus":2.5}}',
         "data.voidStatus: expected an integer"),
    ]
    with Service(db) as svc:
        for body, want in cases:
            status, _, reply = svc.post_json("/webhooks/atlas", body)
            eq(status, 400, repr(body[:60]))
            message = json.loads(reply)["error"]["message"]
            assert message.startswith(want), (message, want)
        # -0 is zero in JSON: a pending case, not an error.
        status, _, reply = svc.post_json(
            "/webhooks/atlas",
            b'{"type":"order.void","data":{"orderNo":"Z1","voidCode":"V1","voidStatus":-0}}')
        eq((status, json.loads(reply)["outcome"]), (200, "applied"))
    eq(db.query("select order_no, status from voidrecon.void_cases"), [["Z1", "0"]])
    eq(db.scalar("select count(*) from voidrecon.deliveries where outcome = 'rejected'"),
       str(len(cases)))


def big_body():
    return b'{"type":"order.void","pad":"' + b"x" * (1024 * 1024 - 40) + b'"}'


def test_an_unauthenticated_megabyte_keeps_4_kib_its_length_and_its_hash(db):
    body = big_body()
    with Service(db, env=PROVIDER_ENV) as svc:
        bad = dict(headers_for("xsolla", body), Authorization="Signature " + "0" * 40)
        eq(svc.request("POST", "/webhooks/xsolla", body=body, headers=bad)[0], 400)
        eq(svc.post_json("/webhooks/atlas", body[:-2] + b'}')[0], 400, "not JSON, unsigned")
    rows = stored_deliveries(db)
    eq([r[:2] for r in rows], [["xsolla", "rejected"], ["atlas", "rejected"]])
    for row, sent in zip(rows, (body, body[:-2] + b'}')):
        eq(len(bytes.fromhex(row[3])), 4096, "only a prefix of an unauthenticated body")
        eq(bytes.fromhex(row[3]), sent[:4096])
        eq((row[4], row[5]), (str(len(sent)), hashlib.sha256(sent).hexdigest()))
    eq(db.scalar("select sum(pg_column_size(body)) < 10000 from voidrecon.deliveries"), "t")


def test_a_signed_megabyte_is_kept_whole(db):
    body = b'{"notification_type":"user_validation","pad":"' + b"x" * (1024 * 1024 - 60) + b'"}'
    with Service(db, env=PROVIDER_ENV) as svc:
        eq(svc.request("POST", "/webhooks/xsolla", body=body,
                       headers=headers_for("xsolla", body))[0], 204)
    eq(db.query("select outcome, octet_length(body), body_length, encode(body_sha256, 'hex')"
                " from voidrecon.deliveries"),
       [["ignored", str(len(body)), str(len(body)), hashlib.sha256(body).hexdigest()]])


def expect_continue_request(path, length, extra=b""):
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\n" + extra + b"Content-Length: " + str(length).encode()
            + b"\r\n\r\n")


@pytest.mark.parametrize("path, extra, status", [
    ("/webhooks/atlas/wrong-token", b"", 404),
    ("/no/such/endpoint", b"", 404),
    ("/webhooks/atlas/s3cret-token", b"", None),
    ("/v1/cases/P1/V1/ack", b"", 401),
    ("/v1/cases/P1/V1/ack", b"Authorization: Bearer wrong\r\n", 403),
    ("/webhooks/atlas/s3cret-token", b"", 413),
], ids=["wrong-token", "unknown-path", "right-token", "no-bearer", "wrong-bearer", "too-large"])
def test_refused_at_the_head_without_100_continue_or_reading_the_body(db, path, extra, status):
    env = {"VOIDRECON_ATLAS_WEBHOOK_TOKEN": "s3cret-token", "VOIDRECON_ADMIN_TOKEN": "adm1n"}
    length = 2 * 1024 * 1024 if status == 413 else 1024 * 1024
    with Service(db, env=env) as svc:
        with svc.connect(timeout=5) as s:
            s.sendall(expect_continue_request(path, length, extra))
            if status is None:
                got = recv_until(s, lambda d: b"\r\n\r\n" in d, what="the interim answer")
                eq(responses(got)[0][0], 100, "an admitted request is asked for its body")
                return
            got = recv_to_close(s, timeout=5, what="the refusal and the close")
        r = responses(got)
        eq([x[0] for x in r], [status], "one final answer, no 100 Continue")
        eq(r[0][1]["connection"], "close", "the unread body cannot be skipped: the connection ends")
    eq(db.scalar("select count(*) from voidrecon.deliveries"), "0")


def test_allowlist_is_checked_before_the_token(db):
    env = {"VOIDRECON_ATLAS_WEBHOOK_TOKEN": "s3cret-token",
           "VOIDRECON_ATLAS_ALLOWED_CIDRS": "10.0.0.0/8"}
    with Service(db, env=env) as svc:
        right = svc.post_json("/webhooks/atlas/s3cret-token", b"{}")
        wrong = svc.post_json("/webhooks/atlas/guess", b"{}")
        get = svc.get("/webhooks/atlas/guess")
    eq([right[0], wrong[0], get[0]], [403, 403, 403],
       "an outsider cannot tell a right token from a wrong one")


def test_dribbled_head_and_body_are_closed_at_their_deadlines(db):
    env = {"VOIDRECON_HEADER_TIMEOUT_MS": "1500"}
    body = json.dumps(ATLAS_VOID).encode()
    req = post_bytes(body)
    head, body_part = req[:req.index(b"\r\n\r\n") + 4], req[req.index(b"\r\n\r\n") + 4:]
    with Service(db, env=env) as svc:
        for what, prefix in (("head", b""), ("body", head)):
            with svc.connect(timeout=5) as s:
                s.sendall(prefix)
                started = time.monotonic()
                rest = body_part if what == "body" else head
                got = b""
                for i in range(len(rest)):
                    try:
                        s.sendall(rest[i:i + 1])
                    except (BrokenPipeError, ConnectionResetError):
                        break
                    s.settimeout(0.5)
                    try:
                        chunk = s.recv(65536)
                    except socket.timeout:
                        continue
                    got += chunk
                    if not chunk or complete_response(got):
                        break
                took = time.monotonic() - started
                if complete_response(got):
                    got += recv_to_close(s, timeout=3)
            eq(responses(got)[0][0], 408, "a %s sent a byte every half second" % what)
            assert 1.2 < took < 3, (what, took)
        eq(svc.post_json("/webhooks/atlas", body)[0], 200)


def test_2000_idle_connections_then_a_webhook_is_served(db):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # 2,000 client sockets here; the service (which inherits the limit) holds up to 1,024.
    want = 2300 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if want < 2300:
        pytest.skip("needs 2300 descriptors, the hard limit is %d" % hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    idle = []
    try:
        with Service(db, env={"VOIDRECON_IDLE_TIMEOUT_MS": "60000"}) as svc:
            for _ in range(2000):
                idle.append(socket.create_connection(("127.0.0.1", svc.port), timeout=5))
            # Over the connection limit a newcomer gets a 503 or an immediate close, never a hang.
            started = time.monotonic()
            got = svc.raw(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", read_timeout=5)
            assert time.monotonic() - started < 4, "the newcomer waited"
            assert got == b"" or responses(got)[0][0] == 503, got[:100]
            assert svc.running(), "2,000 idle connections did not take the service down"
            for s in idle:
                s.close()
            idle = []
            wait_until(lambda: svc.get("/healthz")[0] == 200, timeout=15,
                       what="served once the idle connections are gone")
            eq(svc.post_json("/webhooks/atlas", json.dumps(ATLAS_VOID).encode())[0], 200)
    finally:
        for s in idle:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_header_flood_is_431_and_harmless(db):
    flood = b"".join(b"X-F%d: %s\r\n" % (i, b"y" * 20) for i in range(5000))
    with Service(db) as svc:
        got = svc.raw(b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + flood + b"\r\n", read_timeout=5)
        eq(responses(got)[0][0], 431)
        many = b"".join(b"X-%d: 1\r\n" % i for i in range(1200))
        got = svc.raw(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + many
                      + b"\r\n", read_timeout=5)
        eq(responses(got)[0][0], 200, "many small headers within the limit are fine")


def test_buffered_bytes_over_the_budget_get_503(db):
    env = {"VOIDRECON_MAX_BUFFERED_BYTES": str(1024 * 1024), "VOIDRECON_MAX_BODY_BYTES": "900000"}
    body = json.dumps(ATLAS_VOID).encode()
    with Service(db, env=env) as svc:
        first = svc.connect(timeout=5)
        try:
            # 700 KB of a declared 800 KB body is held, waiting for the rest.
            first.sendall(b"POST /webhooks/atlas HTTP/1.1\r\nHost: t\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 800000\r\n\r\n"
                          + b" " * 700000)
            time.sleep(0.3)
            second = svc.raw(b"POST /webhooks/atlas HTTP/1.1\r\nHost: t\r\n"
                             b"Content-Type: application/json\r\nContent-Length: 500000\r\n\r\n",
                             read_timeout=5)
            r = responses(second)[0]
            eq(r[0], 503, "no memory for more")
            assert int(r[1]["retry-after"]) >= 1, r[1]
            eq(error_of(r)["code"], "overloaded")
        finally:
            first.close()
        wait_until(lambda: svc.post_json("/webhooks/atlas", body)[0] == 200, timeout=10,
                   what="served again once the held body is gone")


def test_a_delivery_the_database_refuses_is_kept_as_failed(db):
    """Effects the database refuses for good (here a trigger standing for any such refusal)
    leave the delivery on record as failed, with the reason, and answer 500."""
    db.query("create function vr_test_refuse() returns trigger language plpgsql as $$"
             " begin if new.order_no = 'REFUSED' then raise exception 'refused by a trigger';"
             " end if; return new; end $$;"
             " create trigger vr_test_refuse before insert on voidrecon.void_cases"
             " for each row execute function vr_test_refuse()")
    refused = json.dumps({"type": "order.void", "data": {"orderNo": "REFUSED", "voidCode": "V1",
                                                         "voidStatus": 1}}).encode()
    with Service(db) as svc:
        eq(svc.post_json("/webhooks/atlas", refused)[0], 500)
        eq(svc.post_json("/webhooks/atlas", json.dumps(ATLAS_VOID).encode())[0], 200,
           "the next delivery is not held up")
    rows = db.query("select outcome, reason, convert_from(body, 'UTF8') from voidrecon.deliveries"
                    " order by id")
    eq([r[0] for r in rows], ["failed", "applied"])
    assert "refused by a trigger" in rows[0][1], rows[0][1]
    eq(rows[0][2].encode(), refused, "kept whole")
    eq(db.query("select order_no from voidrecon.void_cases"), [["P1"]])
