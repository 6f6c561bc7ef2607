"""serve tells its service manager how it stands (systemd's Type=notify, sd_notify): READY=1
once it listens and the database has answered, so that /healthz and /readyz answer at that
moment; STOPPING=1 as soon as SIGTERM begins the shutdown; a STATUS= line with each. The
manager's socket here is a datagram socket the test binds and names in NOTIFY_SOCKET."""

import http.client
import os
import shutil
import signal
import socket
import tempfile
import time

import pytest

from utils import Service, eq


class NotifySocket:
    """A bound AF_UNIX datagram socket: what serve sends to $NOTIFY_SOCKET."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="vr-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def wait_for(self, field, timeout=10):
        """The first message holding the line field (e.g. READY=1), as {key: value}; fails after
        timeout s, naming what came."""
        __tracebackhide__ = True
        deadline = time.monotonic() + timeout
        while True:
            for msg in self.messages:
                if field in msg.split("\n"):
                    return dict(line.split("=", 1) for line in msg.split("\n") if "=" in line)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s within %ss; received %r" % (field, timeout,
                                                                       self.messages))
            self.sock.settimeout(left)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify():
    ns = NotifySocket()
    yield ns
    ns.close()


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_ready_when_it_answers_and_stopping_on_sigterm(db, notify):
    svc = Service(db, env={"NOTIFY_SOCKET": notify.path}, start=False)
    svc.start()
    ready = notify.wait_for("READY=1")
    # At the moment of READY=1 the probes a manager or a proxy would use answer.
    eq(get(svc.port, "/healthz")[0], 200, "/healthz at READY=1")
    status, body = get(svc.port, "/readyz")
    eq(status, 200, "/readyz at READY=1: %r" % body)
    assert ready["STATUS"].startswith("ready: listening on http://127.0.0.1:%d" % svc.port), ready
    assert "STOPPING=1" not in "\n".join(notify.messages), notify.messages

    svc.proc.send_signal(signal.SIGTERM)
    stopping = notify.wait_for("STOPPING=1")
    assert stopping["STATUS"].startswith("stopping"), stopping
    svc.proc.wait(15)  # a second SIGTERM (svc.stop's) would make it exit at once
    eq(svc.stop(), 0, "exit status after SIGTERM")
    eq(sum(m.split("\n").count("READY=1") for m in notify.messages), 1, "READY=1 messages")


def test_ready_says_so_when_the_database_does_not_answer(notify):
    """A database down at start (serve only warns, and answers 503 until it is back) must not
    keep the manager waiting for READY=1 until its start timeout: ready, with a status that
    says the database is unreachable, and /readyz says not ready."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = "postgresql://postgres@127.0.0.1:%d/none" % closed.getsockname()[1]
        svc = Service(database_url=dead, start=False,
                      env={"NOTIFY_SOCKET": notify.path, "VOIDRECON_DB_TIMEOUT_MS": "1000"})
        svc.start()
        ready = notify.wait_for("READY=1")
        assert "database unreachable" in ready["STATUS"], ready
        eq(get(svc.port, "/readyz")[0], 503, "/readyz with the database down")
        eq(svc.stop(), 0, "exit status after SIGTERM")


def test_no_notify_socket_changes_nothing(db):
    """Without NOTIFY_SOCKET (a run by hand, the tests) serve runs and stops as before."""
    svc = Service(db, env={"NOTIFY_SOCKET": None})
    eq(get(svc.port, "/readyz")[0], 200, "/readyz")
    eq(svc.stop(), 0, "exit status after SIGTERM")
