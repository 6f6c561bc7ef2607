"""HTTP/1.1 at the edges, over real sockets to a running service: split reads, pipelining,
chunked bodies, Expect: 100-continue, every limit and its status, slow and idle clients."""

import json
import socket
import time

import pytest

from utils import (Service, complete_response, eq, error_of, post_bytes, recv_to_close, recv_until,
                   responses, wait_until)

VOID = b'{"type":"order.void","data":{"orderNo":"H1","voidCode":"V1","voidStatus":0}}'
LATER = b'{"type":"order.void","data":{"orderNo":"H2","voidCode":"V1","voidStatus":0}}'


def test_request_split_into_single_bytes_is_served(svc):
    req = post_bytes(VOID, extra=b"Connection: close\r\n")
    got = responses(svc.raw([req[i:i + 1] for i in range(len(req))], delay=0.001))
    eq([r[0] for r in got], [200])
    eq(svc.db.scalar("select count(*) from voidrecon.void_cases"), "1")


def test_pipelined_requests_are_answered_in_order(svc):
    reqs = b"".join([
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        post_bytes(VOID),
        b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n",
        post_bytes(b"{broken"),
        b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ])
    got = responses(svc.raw(reqs))
    eq([r[0] for r in got], [200, 200, 404, 400, 200])
    eq(json.loads(got[1][2])["outcome"], "applied")
    eq([r[1]["connection"] for r in got], ["keep-alive"] * 4 + ["close"])


def test_keep_alive_serves_many_requests_on_one_connection(svc):
    with svc.connect() as s:
        for i in range(20):
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            data = recv_until(s, lambda d: d.endswith(b'{"status":"ok"}'),
                              what="answer %d on the kept-alive connection" % (i + 1))
            eq(responses(data)[0][0], 200)


def test_chunked_body_with_extensions_and_trailers(svc):
    body = VOID
    chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7])
                      for i in range(0, len(body), 7))
    req = (b"POST /webhooks/atlas HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks +
           b"0\r\nX-Trailer: yes\r\n\r\n")
    got = responses(svc.raw(req))
    eq(got[0][0], 200)
    eq(svc.db.scalar("select convert_from(body, 'UTF8') from voidrecon.deliveries"), body.decode())


def test_expect_100_continue(svc):
    head = (b"POST /webhooks/atlas HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(VOID))
    with svc.connect() as s:
        s.sendall(head)
        interim = recv_until(s, lambda d: b"\r\n\r\n" in d, what="the interim answer")
        eq(interim, b"HTTP/1.1 100 Continue\r\n\r\n", "the interim answer comes before the body")
        s.sendall(VOID)
        data = recv_to_close(s, what="the answer to the body")
    eq(responses(data)[0][0], 200)
    bad = svc.raw(b"POST /webhooks/atlas HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\n"
                  b"Content-Length: 2\r\n\r\n{}")
    eq(responses(bad)[0][0], 417)


LIMITS = {"VOIDRECON_MAX_BODY_BYTES": "1000", "VOIDRECON_MAX_HEADER_BYTES": "2048"}
CHUNK = b"100\r\n" + b"x" * 256 + b"\r\n"


# what is sent; the status and why; the error code and a part of its message, the Connection
# header (None: not checked)
@pytest.mark.parametrize("sent, status, why, code, message_part, connection", [
    pytest.param(post_bytes(b"{" + b" " * 1000 + b"}"), 413, "", "body_too_large", "1000",
                 "close", id="body"),
    pytest.param(b"POST /webhooks/atlas HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + CHUNK * 5 + b"0\r\n\r\n", 413, "a chunked body is capped as it arrives",
                 None, None, None, id="chunked-body"),
    pytest.param(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n", 431,
                 "", "headers_too_large", None, None, id="headers"),
    pytest.param(b"POST /webhooks/atlas HTTP/1.1\r\nHost: t\r\n\r\n", 411, "", "length_required",
                 None, None, id="no-length"),
    pytest.param(b"\x16\x03\x01\x02\x00garbage\r\n\r\n", 400, "", "bad_request", None, None,
                 id="garbage"),
    pytest.param(b"GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n", 505, "", None, None, None,
                 id="http-2"),
    pytest.param(b"POST /webhooks/atlas HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
                 "Content-Length with chunked is refused (request smuggling)", None, None, None,
                 id="length-and-chunked"),
])
def test_limits_have_their_statuses(db, sent, status, why, code, message_part, connection):
    with Service(db, env=LIMITS) as svc:
        r = responses(svc.raw(sent))[0]
        eq(r[0], status, why)
        if code is not None:
            eq(error_of(r)["code"], code)
        if message_part is not None:
            assert message_part in error_of(r)["message"]
        if connection is not None:
            eq(r[1]["connection"], connection)
        # The service is still fine.
        eq(svc.get("/healthz")[0], 200)
    eq(db.scalar("select count(*) from voidrecon.deliveries"), "0",
       "requests refused by the HTTP layer never reach the store")


def test_http_1_0_closes_after_the_response(svc):
    got = svc.raw(b"GET /healthz HTTP/1.0\r\n\r\n", read_timeout=3)
    r = responses(got)[0]
    eq((r[0], r[1]["connection"]), (200, "close"))


def test_head_request_has_no_body(svc):
    got = responses(svc.raw(b"HEAD /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
    eq(got[0][0], 200)
    eq(got[0][2], b"")
    assert int(got[0][1]["content-length"]) > 0


TIMEOUTS = {"VOIDRECON_HEADER_TIMEOUT_MS": "300", "VOIDRECON_IDLE_TIMEOUT_MS": "400"}


# the pieces sent, delay s apart; why; the error code and the most seconds the answer may take
# (None: not checked)
@pytest.mark.parametrize("pieces, delay, why, code, within_s", [
    pytest.param([b"GET /healthz HTTP/1.1\r\n", b"Host: t\r\n"], 0.05, "", "request_timeout", 2,
                 id="head-never-ends"),
    pytest.param([b"G", b"E", b"T", b" ", b"/", b"h", b"e", b"a", b"l"], 0.08,
                 "one byte at a time does not extend the deadline", None, 2, id="byte-by-byte"),
    pytest.param([b"POST /webhooks/atlas HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n",
                  b"{"], 0.05, "a body that never completes", None, None, id="body-never-ends"),
])
def test_slow_client_gets_408(db, pieces, delay, why, code, within_s):
    with Service(db, env=TIMEOUTS) as svc:
        started = time.monotonic()
        got = svc.raw(pieces, delay=delay, read_timeout=3)
        took = time.monotonic() - started
        r = responses(got)[0]
        eq(r[0], 408, why)
        if code is not None:
            eq(error_of(r)["code"], code)
        if within_s is not None:
            assert took < within_s, took


def test_idle_connection_is_closed(db):
    with Service(db, env=TIMEOUTS) as svc:
        with svc.connect(timeout=3) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            first = recv_until(s, complete_response, timeout=3, what="the answer")
            eq(responses(first)[0][0], 200)
            started = time.monotonic()
            eq(recv_to_close(s, timeout=3, what="the idle keep-alive connection to be closed"),
               b"", "the idle keep-alive connection is closed")
            idle = time.monotonic() - started
            assert 0.2 < idle < 2, idle

        # A connection that never sends anything is closed without an answer.
        eq(svc.raw(b"", read_timeout=3), b"")


def test_connections_over_the_limit_get_503(db):
    with Service(db, env={"VOIDRECON_MAX_CONNECTIONS": "2"}) as svc:
        held = [svc.connect() for _ in range(2)]
        try:
            # Answered on each, kept alive: both count against the limit.
            for s in held:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                eq(responses(recv_until(s, complete_response))[0][0], 200)
            r = responses(svc.raw(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"))[0]
            eq(r[0], 503)
            eq(r[1]["retry-after"], "1")
            eq(error_of(r)["code"], "overloaded")
        finally:
            for s in held:
                s.close()
        wait_until(lambda: svc.get("/healthz")[0] == 200, timeout=5,
                   what="served again once connections are free")


def test_client_that_disconnects_mid_request_does_not_hurt(svc):
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", svc.port)) as s:
            s.sendall(post_bytes(VOID)[:-10])
    with socket.create_connection(("127.0.0.1", svc.port)) as s:
        s.sendall(post_bytes(VOID))  # complete, then gone before the answer
    wait_until(lambda: svc.db.scalar("select count(*) from voidrecon.deliveries") != "0",
               what="the complete request to be stored")
    eq(svc.get("/healthz")[0], 200)
    # A later request answered after all those connections ended: none of the cut ones was
    # stored in the meantime.
    eq(svc.post_json("/webhooks/atlas", LATER)[0], 200)
    eq(svc.db.query("select convert_from(body, 'UTF8') from voidrecon.deliveries order by id"),
       [[VOID.decode()], [LATER.decode()]],
       "the complete request was stored even though its client left")

