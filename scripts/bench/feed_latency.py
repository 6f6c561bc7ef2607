#!/usr/bin/env python3
"""Measures the change feed's delays: case changes committed through voidrecon serve (POST
/v1/cases, then order.void webhooks moving each case 0 -> 1 -> 3 -> 2), and for each change

  notify  from its COMMIT (pg_xact_commit_timestamp of the event row) to the NOTIFY
          voidrecon_cases being received by a listener that does nothing else;
  feed    from its COMMIT to the event being printed by `voidrecon events --follow --json`
          (LISTEN, then a read of the feed from the last event at each notification).

Prints the median, p90, p99 and max of each in ms. Needs track_commit_timestamp = on (feed.sh
sets it). Standard library only: libpq is reached through ctypes.

usage: feed_latency.py URL PORT TOKEN VOIDRECON_BIN CASES WORKERS
"""

import ctypes
import ctypes.util
import http.client
import json
import os
import select
import subprocess
import sys
import threading
import time

URL, PORT, TOKEN, BIN = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
CASES, WORKERS = int(sys.argv[5]), int(sys.argv[6])
RUN = "R%d" % int(time.time() * 1000)  # order numbers of this run

pq = ctypes.CDLL(ctypes.util.find_library("pq") or "libpq.so.5")
pq.PQconnectdb.restype = ctypes.c_void_p
pq.PQconnectdb.argtypes = [ctypes.c_char_p]
pq.PQstatus.argtypes = [ctypes.c_void_p]
pq.PQerrorMessage.restype = ctypes.c_char_p
pq.PQerrorMessage.argtypes = [ctypes.c_void_p]
pq.PQexec.restype = ctypes.c_void_p
pq.PQexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
pq.PQresultStatus.argtypes = [ctypes.c_void_p]
pq.PQntuples.argtypes = [ctypes.c_void_p]
pq.PQgetvalue.restype = ctypes.c_char_p
pq.PQgetvalue.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
pq.PQclear.argtypes = [ctypes.c_void_p]
pq.PQsocket.argtypes = [ctypes.c_void_p]
pq.PQconsumeInput.argtypes = [ctypes.c_void_p]


class PGnotify(ctypes.Structure):
    _fields_ = [("relname", ctypes.c_char_p), ("be_pid", ctypes.c_int),
                ("extra", ctypes.c_char_p)]


pq.PQnotifies.restype = ctypes.POINTER(PGnotify)
pq.PQnotifies.argtypes = [ctypes.c_void_p]
pq.PQfreemem.argtypes = [ctypes.c_void_p]
pq.PQfinish.argtypes = [ctypes.c_void_p]


def connect():
    conn = pq.PQconnectdb(URL.encode())
    if pq.PQstatus(conn) != 0:
        sys.exit("cannot connect: %s" % pq.PQerrorMessage(conn).decode())
    return conn


def rows(conn, sql):
    res = pq.PQexec(conn, sql.encode())
    if pq.PQresultStatus(res) not in (1, 2):  # PGRES_COMMAND_OK, PGRES_TUPLES_OK
        sys.exit("query failed: %s" % pq.PQerrorMessage(conn).decode())
    out = [[pq.PQgetvalue(res, r, 0).decode(), pq.PQgetvalue(res, r, 1).decode()]
           for r in range(pq.PQntuples(res))] if pq.PQresultStatus(res) == 2 else []
    pq.PQclear(res)
    return out


heard = {}  # event id -> wall-clock time the NOTIFY was received
printed = {}  # event id -> wall-clock time `voidrecon events --follow` printed it
stop = threading.Event()


def listener(conn):
    fd = pq.PQsocket(conn)
    while not stop.is_set():
        if not select.select([fd], [], [], 0.2)[0]:
            continue
        now = time.time()
        pq.PQconsumeInput(conn)
        while True:
            n = pq.PQnotifies(conn)
            if not n:
                break
            heard[json.loads(n.contents.extra)["event_id"]] = now
            pq.PQfreemem(n)


def follower(proc):
    for line in proc.stdout:
        printed[json.loads(line)["id"]] = time.time()


def worker(cases):
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    auth = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
    for order in cases:
        conn.request("POST", "/v1/cases", json.dumps({"orderNo": order, "voidCode": "V1"}), auth)
        resp = conn.getresponse()
        resp.read()
        assert resp.status in (200, 201), resp.status
        for status in (1, 3, 2):
            body = {"type": "order.void",
                    "data": {"orderNo": order, "voidCode": "V1", "voidStatus": status}}
            conn.request("POST", "/webhooks/atlas", json.dumps(body),
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200, resp.status


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def main():
    conn = connect()
    on = rows(conn, "SELECT current_setting('track_commit_timestamp'), 1")[0][0]
    if on != "on":
        sys.exit("track_commit_timestamp is %s: feed.sh turns it on" % on)
    start = rows(conn, "SELECT coalesce(max(id), 0), 1 FROM voidrecon.void_case_events")[0][0]
    rows(conn, "LISTEN voidrecon_cases")
    env = dict(os.environ, VOIDRECON_DATABASE_URL=URL)
    proc = subprocess.Popen([BIN, "events", "--follow", "--json", "--after", start],
                            stdout=subprocess.PIPE, text=True, env=env)
    threads = [threading.Thread(target=listener, args=(conn,), daemon=True),
               threading.Thread(target=follower, args=(proc,), daemon=True)]
    for t in threads:
        t.start()
    time.sleep(1)  # the follower listens
    names = ["%s-%d" % (RUN, i) for i in range(CASES)]
    workers = [threading.Thread(target=worker, args=(names[i::WORKERS],))
               for i in range(WORKERS)]
    began = time.time()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    took = time.time() - began
    expected = CASES * 4
    deadline = time.time() + 30
    while (len(heard) < expected or len(printed) < expected) and time.time() < deadline:
        time.sleep(0.05)
    stop.set()
    proc.terminate()
    proc.wait(10)
    reader = connect()
    committed = {int(i): float(t) for i, t in rows(
        reader, "SELECT id, extract(epoch FROM pg_xact_commit_timestamp(xmin))"
                " FROM voidrecon.void_case_events WHERE id > %d AND order_no LIKE '%s-%%'"
                % (int(start), RUN))}
    print("%d changes in %.1f s over %d connections (%.0f a second); heard %d, printed %d"
          % (len(committed), took, WORKERS, len(committed) / took, len(heard), len(printed)))
    for name, got in (("notify", heard), ("feed", printed)):
        ms = [(got[i] - t) * 1000 for i, t in committed.items() if i in got]
        if not ms:
            print("%-7s nothing received" % name)
            continue
        print("%-7s median %6.2f ms  p90 %6.2f ms  p99 %6.2f ms  max %6.2f ms  (%d of %d)"
              % (name, pct(ms, 50), pct(ms, 90), pct(ms, 99), max(ms), len(ms), len(committed)))


if __name__ == "__main__":
    main()
