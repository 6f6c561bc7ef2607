#!/usr/bin/env python3
"""A stand-in for the Atlas API, for tests and the demo: scripted void cases whose status moves
over time, queryVoidOrders.do answered in the documented shape, injectable faults, and order.void
webhooks sent with loss, duplication, reordering and forged closings.

Run it:  python3 tests/atlas_sim.py --port 9099 --webhook-url http://127.0.0.1:8080/webhooks/atlas
         (--nodelay: answers without the ~40 ms that Nagle's algorithm adds on a reused connection)

Control it over HTTP (JSON in and out):
  POST /_sim/cases   {"cases":[{"orderNo","voidCode","path":[0,1,3,2],"step_ms":300}]}
                     step_ms: one number, or one per step; the first status holds from creation
  GET  /_sim/cases   the truth now: [{"orderNo","voidCode","status","final","settled"}]
  POST /_sim/faults  any of: latency_ms [lo, hi], error_rate, error_status, rate_limit_rate,
                     rate_limit_count (the next N answers are 429), retry_after (the
                     body's retryAfter; null: none), retry_after_header (a Retry-After header
                     on 429s; null: none), envelope_error ([status, msg]: every query gets
                     that envelope; null: none), malformed_rate, missing_rate, gzip_rate,
                     unknown_order ("empty" | "801"), case_envelope ({orderNo: [status, msg]}:
                     that order's queries get that envelope), case_missing ([orderNo, ...]: answers
                     for those orders leave the case out), and webhook: {loss, dup, reorder_ms
                     [lo, hi], forge_rate, forge_rejections}
  GET  /_sim/log     every query: [{"orderNo","voidCode","start","end","http","status"}]
  GET  /_sim/stats   counters: queries, webhooks sent, lost, duplicated, forged
  GET  /_sim/rate    queries started in each second since the first: {"per_second": [n, ...]}
Standard library only.
"""

import argparse
import gzip
import heapq
import http.client
import json
import random
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OPEN = (0, 1, 3)
CLOSED = (2, 4, 5, 6)
MESSAGES = {
    0: "Void request received.",
    1: "Void submitted to the airline.",
    2: "Void successful and confirmed by the airline.",
    3: "The airline is voiding the ticket.",
    4: "Automatic void processing failed after 10 retries.",
    5: "Void fulfilment completed.",
    6: "Void withdrawn.",
}


def documented_path(rng, deposit=None):
    """A lifecycle along the documented paths: deposit 0->1->3->2 or ->4; card 0->1->5, ->4
    or ->6."""
    if deposit is None:
        deposit = rng.random() < 0.5
    if deposit:
        return [0, 1, 3, rng.choice([2, 2, 2, 4])]
    return [0, 1, rng.choice([5, 5, 4, 6])]


class Case:
    def __init__(self, order_no, void_code, path, steps_ms, born):
        self.order_no, self.void_code, self.path = order_no, void_code, list(path)
        self.starts = [born]
        for ms in steps_ms[:len(path) - 1]:
            self.starts.append(self.starts[-1] + ms / 1000.0)

    def status(self, now):
        s = self.path[0]
        for st, at in zip(self.path, self.starts):
            if at <= now:
                s = st
        return s

    def settled(self, now):
        return now >= self.starts[-1]

    def item(self, now):
        s = self.status(now)
        return {
            "orderNo": self.order_no, "voidCode": self.void_code,
            "expectedConfirmationDate": "20261201", "expectedRefundDate": None,
            "voidTickets": [{"lastName": "ZHAO", "firstName": "YIER", "ticketNo": "S87579"}],
            "voidFareAmount": {"currency": "USD", "originalFareAmount": 165.48,
                               "estimatedRefundAmount": 165.48},
            "voidPostTicketingServiceAmounts": [],
            "serviceFee": {"currency": "USD", "transactionFee": 3},
            "voidStatus": s,
            "cancelReason": "Rejected by the airline" if s == 4 else None,
            "voidOfferId": "q_" + self.void_code,
            "voidMethod": "CashBackToOriginalPayment",
        }


class Sim:
    def __init__(self, client_id, client_secret, webhook_url, seed, senders=8):
        self.client_id, self.client_secret = client_id, client_secret
        self.webhook_url = webhook_url
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.cases = {}
        self.by_order = {}
        self.log = []
        self.stats = {"queries": 0, "webhooks_sent": 0, "webhooks_lost": 0,
                      "webhooks_duplicated": 0, "webhooks_forged": 0, "webhook_errors": 0}
        self.faults = {"latency_ms": [0, 0], "error_rate": 0.0, "error_status": 503,
                       "rate_limit_rate": 0.0, "rate_limit_count": 0, "retry_after": 1,
                       "retry_after_header": None, "envelope_error": None, "malformed_rate": 0.0,
                       "missing_rate": 0.0, "gzip_rate": 0.0, "unknown_order": "empty",
                       "case_envelope": {}, "case_missing": [],
                       "webhook": {"loss": 0.0, "dup": 0.0, "reorder_ms": [0, 0],
                                   "forge_rate": 0.0, "forge_rejections": False}}
        self.queue = []  # (due, seq, payload)
        self.seq = 0
        self.cond = threading.Condition(self.lock)
        for _ in range(senders):
            threading.Thread(target=self._sender, daemon=True).start()

    # -- scripted cases and their webhooks ----------------------------------------------------

    def add_cases(self, specs):
        now = time.monotonic()
        with self.lock:
            for spec in specs:
                path = spec.get("path") or documented_path(self.rng)
                steps = spec.get("step_ms", 300)
                steps = steps if isinstance(steps, list) else [steps] * (len(path) - 1)
                case = Case(spec["orderNo"], spec["voidCode"], path, steps, now)
                self.cases[(case.order_no, case.void_code)] = case
                self.by_order.setdefault(case.order_no, []).append(case)
                self._schedule_webhooks(case)
            self.cond.notify_all()

    def _push(self, due, status, case):
        payload = {"cid": "SIM", "type": "order.void", "status": -1,
                   "data": {"orderNo": case.order_no, "voidCode": case.void_code,
                            "voidStatus": status, "message": MESSAGES[status]}}
        self.seq += 1
        heapq.heappush(self.queue, (due, self.seq, payload))

    def _schedule_webhooks(self, case):
        if not self.webhook_url:
            return
        w = self.faults["webhook"]
        lo, hi = w["reorder_ms"]
        for status, at in zip(case.path, case.starts):
            if self.rng.random() < w["loss"]:
                self.stats["webhooks_lost"] += 1
                continue
            self._push(at + self.rng.uniform(lo, hi) / 1000.0, status, case)
            if self.rng.random() < w["dup"]:
                self.stats["webhooks_duplicated"] += 1
                self._push(at + self.rng.uniform(lo, hi) / 1000.0, status, case)
        if self.rng.random() < w["forge_rate"]:
            final = case.path[-1]
            choices = [s for s in CLOSED if s != final and (w["forge_rejections"] or s != 4)]
            self.stats["webhooks_forged"] += 1
            when = self.rng.uniform(case.starts[0], case.starts[-1] + hi / 1000.0 + 0.2)
            self._push(when, self.rng.choice(choices), case)

    def _sender(self):
        conn = None
        url = None
        while True:
            with self.cond:
                while not self.queue or self.queue[0][0] > time.monotonic():
                    wait = self.queue[0][0] - time.monotonic() if self.queue else None
                    self.cond.wait(wait)
                _, _, payload = heapq.heappop(self.queue)
                target = self.webhook_url
            body = json.dumps(payload).encode()
            for attempt in range(2):
                try:
                    if conn is None or url != target:
                        url = target
                        u = urllib.parse.urlsplit(url)
                        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
                    conn.request("POST", urllib.parse.urlsplit(url).path, body=body,
                                 headers={"Content-Type": "application/json"})
                    conn.getresponse().read()
                    with self.lock:
                        self.stats["webhooks_sent"] += 1
                    break
                except (OSError, http.client.HTTPException):
                    conn = None
                    if attempt == 1:
                        with self.lock:
                            self.stats["webhook_errors"] += 1

    # -- queryVoidOrders.do -------------------------------------------------------------------

    def query(self, headers, raw):
        """Returns (http_status, extra_headers, body bytes, logged status)."""
        f = self.faults
        with self.lock:
            self.stats["queries"] += 1
            roll = [self.rng.random() for _ in range(5)]
            latency = self.rng.uniform(*f["latency_ms"]) / 1000.0
        # The answer reflects the moment the request arrived; latency delays its delivery, as
        # a slow network or a slow Atlas would.
        answered_at = time.monotonic()
        if latency:
            time.sleep(latency)
        if (headers.get("x-atlas-client-id") != self.client_id
                or headers.get("x-atlas-client-secret") != self.client_secret):
            return 200, {}, self._envelope(900, "The current API requires specific permissions, "
                                           "yet authentication information is missing for this "
                                           "request"), 900
        with self.lock:
            limited = roll[0] < f["rate_limit_rate"] or f["rate_limit_count"] > 0
            if f["rate_limit_count"] > 0:
                f["rate_limit_count"] -= 1
        if limited:
            body = {"code": 429, "message": "Rate limit exceeded. Please retry after the current "
                    "window resets", "limitType": "VOID_QPS", "limit": 1}
            if f["retry_after"] is not None:
                body["retryAfter"] = f["retry_after"]
            extra = {}
            if f["retry_after_header"] is not None:
                extra["Retry-After"] = str(f["retry_after_header"])
            return 429, extra, json.dumps(body).encode(), 429
        if f["envelope_error"] is not None:
            status, msg = f["envelope_error"]
            return 200, {}, self._envelope(status, msg), status
        order_of = self._order_of(raw)
        if order_of in f["case_envelope"]:
            status, msg = f["case_envelope"][order_of]
            return 200, {}, self._envelope(status, msg), status
        if roll[1] < f["error_rate"]:
            return f["error_status"], {}, b"<html>upstream error</html>", f["error_status"]
        try:
            req = json.loads(raw)
            order_no = req["orderNo"]
            void_code = req.get("voidCode")
            assert isinstance(order_no, str) and order_no
        except (ValueError, KeyError, TypeError, AssertionError):
            return 200, {}, self._envelope(100, "Missing required request data"), 100
        if roll[2] < f["malformed_rate"]:
            return 200, {}, b'{"voidOrders": [{"orderNo": ', 0
        now = answered_at
        with self.lock:
            cases = [c for c in self.by_order.get(order_no, [])
                     if void_code is None or c.void_code == void_code]
            items = [c.item(now) for c in cases]
        if not cases and f["unknown_order"] == "801":
            return 200, {}, self._envelope(801, "No voidable orders found."), 801
        if roll[3] < f["missing_rate"] or order_no in f["case_missing"]:
            items = []
        body = json.dumps({"voidOrders": items, "status": 0, "msg": None}).encode()
        extra = {}
        if "gzip" in headers.get("accept-encoding", "") and roll[4] < f["gzip_rate"]:
            body = gzip.compress(body)
            extra["Content-Encoding"] = "gzip"
        return 200, extra, body, items[0]["voidStatus"] if items else -1

    @staticmethod
    def _order_of(raw):
        try:
            return json.loads(raw).get("orderNo")
        except (ValueError, AttributeError):
            return None

    def per_second(self):
        """Queries started in each whole second since the first one."""
        with self.lock:
            starts = sorted(e["start"] for e in self.log)
        if not starts:
            return []
        counts = [0] * (int(starts[-1] - starts[0]) + 1)
        for t in starts:
            counts[int(t - starts[0])] += 1
        return counts

    @staticmethod
    def _envelope(status, msg):
        return json.dumps({"status": status, "msg": msg}).encode()

    def truth(self):
        now = time.monotonic()
        with self.lock:
            return [{"orderNo": c.order_no, "voidCode": c.void_code, "status": c.status(now),
                     "final": c.path[-1], "settled": c.settled(now)}
                    for c in self.cases.values()]


def make_handler(sim, nodelay=False):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # An answer goes out in two writes (headers, then body): with Nagle's algorithm on, the
        # second waits for the client's delayed ACK, about 40 ms on every reused connection.
        disable_nagle_algorithm = nodelay

        def log_message(self, *args):
            pass

        def _body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _send(self, status, body, extra=None, ctype="application/json"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, obj, status=200):
            self._send(status, json.dumps(obj).encode())

        def do_POST(self):
            raw = self._body()
            path = urllib.parse.urlsplit(self.path).path
            if path.endswith("/queryVoidOrders.do"):
                start = time.time()
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra, body, logged = sim.query(headers, raw)
                try:
                    req = json.loads(raw)
                except ValueError:
                    req = {}
                with sim.lock:
                    sim.log.append({"orderNo": req.get("orderNo"), "voidCode": req.get("voidCode"),
                                    "start": start, "end": time.time(), "http": status,
                                    "status": logged})
                self._send(status, body, extra)
            elif path == "/_sim/cases":
                sim.add_cases(json.loads(raw)["cases"])
                self._json({"ok": True})
            elif path == "/_sim/faults":
                changes = json.loads(raw)
                with sim.lock:
                    hook = changes.pop("webhook", {})
                    sim.faults.update(changes)
                    sim.faults["webhook"].update(hook)
                self._json(sim.faults)
            else:
                self._json({"error": "no such path"}, 404)

        def do_GET(self):
            path = urllib.parse.urlsplit(self.path).path
            if path == "/_sim/cases":
                self._json(sim.truth())
            elif path == "/_sim/log":
                with sim.lock:
                    self._json(list(sim.log))
            elif path == "/_sim/stats":
                with sim.lock:
                    self._json(dict(sim.stats))
            elif path == "/_sim/rate":
                self._json({"per_second": sim.per_second()})
            else:
                self._json({"error": "no such path"}, 404)

    return Handler


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A client that gave up (a timeout, a shutdown) is not the simulator's fault.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def start(port=0, client_id="sim-id", client_secret="sim-secret", webhook_url=None, seed=1,
          nodelay=False):
    """Starts a simulator in this process; returns (sim, server). server.shutdown() stops it."""
    sim = Sim(client_id, client_secret, webhook_url, seed)
    server = SimServer(("127.0.0.1", port), make_handler(sim, nodelay))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return sim, server


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=9099)
    ap.add_argument("--client-id", default="sim-id")
    ap.add_argument("--client-secret", default="sim-secret")
    ap.add_argument("--webhook-url", default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--nodelay", action="store_true",
                    help="answer with TCP_NODELAY: without it, each answer on a reused "
                         "connection waits about 40 ms for the client's delayed ACK")
    args = ap.parse_args()
    sim, server = start(args.port, args.client_id, args.client_secret, args.webhook_url, args.seed,
                        args.nodelay)
    print(json.dumps({"event": "atlas_sim_listening", "port": server.server_address[1]}),
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()
        return 0


if __name__ == "__main__":
    sys.exit(main())
