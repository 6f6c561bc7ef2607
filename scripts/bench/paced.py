#!/usr/bin/env python3
"""An open-loop load generator: requests at a fixed rate, whatever the answers do.

Request i is due at start + i / RATE. Its latency is counted from that moment to its whole
answer, so time spent waiting for a free connection (the server falling behind) is counted
too, never hidden: a closed-loop tool that waits for an answer before the next request sends
less when the server slows down, and measures only the requests it managed to send.

usage: paced.py URL RATE SECONDS [--connections N] [--body-kind new|same|none] [--run-id ID]

GET when the body kind is none, else POST of an Atlas order.void: new, a new case every
request; same, every request for one case. Prints one line of key=value figures: sent, ok
(2xx), bad, late (requests that started more than 1 ms after they were due), p50/p90/p99/p999
and max in ms, and the rate achieved.
"""

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


def body_for(kind, run_id, i):
    if kind == "none":
        return None
    order = "P%s-%d" % (run_id, i) if kind == "new" else "PSAME-%s" % run_id
    return json.dumps({"cid": "BENCH", "type": "order.void", "status": -1,
                       "data": {"orderNo": order, "voidCode": "V1", "voidStatus": 0,
                                "message": "bench"}}).encode()


def request_bytes(host, path, body):
    if body is None:
        return ("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)).encode()
    return ("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (path, host, len(body))).encode() + body


async def read_answer(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


class Connection:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer


async def run(args):
    u = urlsplit(args.url)
    host, port, path = u.hostname, u.port or 80, u.path or "/"
    free = asyncio.Queue()
    for _ in range(args.connections):
        r, w = await asyncio.open_connection(host, port)
        free.put_nowait(Connection(r, w))
    total = int(args.rate * args.seconds)
    latencies, statuses = [], {"ok": 0, "bad": 0}
    late = 0
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05

    async def one(i, due):
        nonlocal late
        conn = await free.get()
        if loop.time() - due > 0.001:
            late += 1
        try:
            conn.writer.write(request_bytes(u.netloc, path, body_for(args.body_kind, args.run_id, i)))
            status = await asyncio.wait_for(read_answer(conn.reader), timeout=30)
            statuses["ok" if 200 <= status < 300 else "bad"] += 1
            free.put_nowait(conn)
        except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            statuses["bad"] += 1
            conn.writer.close()
            r, w = await asyncio.open_connection(host, port)
            free.put_nowait(Connection(r, w))
        latencies.append(loop.time() - due)

    tasks = []
    for i in range(total):
        due = start + i / args.rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i, due)))
    await asyncio.gather(*tasks)
    took = loop.time() - start
    while not free.empty():
        free.get_nowait().writer.close()
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(p / 100.0 * len(latencies)))] * 1000

    print("sent=%d ok=%d bad=%d late=%d p50=%.2f p90=%.2f p99=%.2f p999=%.2f max=%.2f rate=%.1f"
          % (total, statuses["ok"], statuses["bad"], late, pct(50), pct(90), pct(99), pct(99.9),
             latencies[-1] * 1000, total / took))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("rate", type=float)
    ap.add_argument("seconds", type=float)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--body-kind", choices=("new", "same", "none"), default="new")
    ap.add_argument("--run-id", default=str(int(time.time())))
    args = ap.parse_args()
    if args.rate <= 0 or args.seconds <= 0 or args.connections < 1:
        sys.exit("paced.py: RATE, SECONDS and --connections must be positive")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
