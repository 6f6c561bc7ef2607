"""scripts/wait-http.sh, with which scripts/run.sh --demo waits for the Atlas simulator and the
service before using them: it returns once the URL answers, and fails, saying why, within its
bound when nothing answers, when a listener never replies, or when the process it waits on has
exited."""

import http.server
import os
import socket
import subprocess
import threading
import time

from utils import eq, free_port, source_dir

WAIT = os.path.join(source_dir(), "scripts", "wait-http.sh")


def run_wait(url, seconds, *rest):
    start = time.monotonic()
    p = subprocess.run([WAIT, url, str(seconds)] + list(rest), capture_output=True, text=True,
                       timeout=seconds + 20)
    return p, time.monotonic() - start


class Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_waits_until_a_late_server_answers():
    port = free_port()
    servers = []

    def late():
        time.sleep(1.5)
        srv = http.server.HTTPServer(("127.0.0.1", port), Quiet)
        servers.append(srv)
        srv.serve_forever(poll_interval=0.05)

    t = threading.Thread(target=late, daemon=True)
    t.start()
    try:
        p, took = run_wait("http://127.0.0.1:%d/_sim/stats" % port, 20, str(os.getpid()),
                           "the Atlas simulator")
        eq(p.returncode, 0, p.stderr)
        assert took >= 1.0, "answered before the server was there (%.2fs)" % took
    finally:
        if servers:
            servers[0].shutdown()
            servers[0].server_close()


def test_gives_up_within_its_bound_when_nothing_answers():
    port = free_port()
    p, took = run_wait("http://127.0.0.1:%d/healthz" % port, 1, str(os.getpid()), "the service")
    eq(p.returncode, 1)
    assert "the service did not answer within 1s" in p.stderr, p.stderr
    assert took < 6, took


def test_a_listener_that_never_replies_does_not_hold_it():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        p, took = run_wait("http://127.0.0.1:%d/" % s.getsockname()[1], 2)
    eq(p.returncode, 1)
    assert took < 8, took


def test_stops_at_once_when_the_process_waited_on_has_exited():
    gone = subprocess.Popen(["true"])
    gone.wait()
    p, took = run_wait("http://127.0.0.1:%d/" % free_port(), 30, str(gone.pid),
                       "the Atlas simulator")
    eq(p.returncode, 1)
    assert "the Atlas simulator exited before it answered" in p.stderr, p.stderr
    assert took < 5, took


def test_run_sh_waits_for_the_simulator_before_starting_the_service():
    with open(os.path.join(source_dir(), "scripts", "run.sh")) as f:
        text = f.read()
    wait_sim = text.index('wait-http.sh" "http://127.0.0.1:$sim_port/_sim/stats"')
    eq(wait_sim < text.index('setsid "$bin" serve'), True,
       "the simulator answers before the service (and its poller) starts")
    assert 'wait-http.sh" "http://$listen/healthz"' in text
