"""Helpers of the integration tests: databases cloned from the migrated template, the service
under test, raw sockets and pipes read with a bound, clusters of a test's own, the Atlas
simulator rig and an alert receiver. conftest.py turns them into fixtures and cleans up after
each test. Standard library only.
"""

import atexit
import contextlib
import glob
import http.client
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_HERE))
import atlas_sim  # noqa: E402  (tests/atlas_sim.py, also run on its own by scripts/run.sh --demo)

# psql output: fields end at \x1f, rows at NUL (which text values can never contain), and a
# marker that no test writes stands for NULL.
_FIELD_SEP = "\x1f"
_NULL_MARK = "\x1eNULL\x1e"


def source_dir():
    """The repository root."""
    return os.environ.get("VR_SOURCE_DIR") or os.path.dirname(os.path.dirname(_HERE))


def voidrecon_bin():
    """The binary under test: $VOIDRECON_BIN, else build-test/voidrecon of this repository."""
    path = os.environ.get("VOIDRECON_BIN") or os.path.join(source_dir(), "build-test", "voidrecon")
    if not os.access(path, os.X_OK):
        raise RuntimeError("no voidrecon binary at %s: build it (scripts/test.sh does) or set "
                           "VOIDRECON_BIN" % path)
    return path


def psql_bin():
    """The psql client: on PATH, or the newest in /usr/lib/postgresql."""
    path = shutil.which("psql")
    if path:
        return path
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        raise RuntimeError("psql not found (scripts/setup.sh installs it)")
    return found[-1]


def child_env(extra=None):
    """Our environment without any VOIDRECON_* setting, plus extra (a None value removes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIDRECON_")}
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


_PORTS_GIVEN = set()


def free_port():
    """A TCP port on 127.0.0.1 that nothing uses right now, below the kernel's ephemeral range:
    a port from that range could become the local port of any client socket (a test holding
    2,000 connections takes 2,000 of them) before the service binds it."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    low = 10000 if ephemeral_low > 12000 else 1024
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(low, ephemeral_low)
        if port in _PORTS_GIVEN:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PORTS_GIVEN.add(port)
        return port
    raise AssertionError("no free TCP port below %d" % ephemeral_low)


def wait_until(pred, timeout=10, what="condition", every=0.02):
    """Calls pred until it returns something true, and returns that; fails after timeout s."""
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(every)


def eq(actual, expected, what=""):
    """assert actual == expected, naming both sides."""
    __tracebackhide__ = True
    if actual != expected:
        raise AssertionError("%sexpected %r, got %r" % (what + ": " if what else "", expected,
                                                         actual))


def join_all(threads, timeout=30, what="threads"):
    """Joins threads within timeout seconds in all; fails naming what when one is still alive."""
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t for t in threads if t.is_alive()]
    if alive:
        raise AssertionError("%d of %d %s still running after %ss" % (len(alive), len(threads),
                                                                       what, timeout))


# ---------------------------------------------------------------------------------------------
# What each test made, so that conftest.py cleans up after it


class Tracker:
    """Services and databases made since the current test began, and every started service."""

    def __init__(self):
        self.services = []  # made since the current test began
        self.dbs = []  # made since the current test began and not dropped yet
        self.live = []  # started and not yet stopped or killed, whichever test made them

    def begin(self):
        self.services = []
        self.dbs = []

    def stop_services(self, services=None):
        """Stops each service (default: the current test's) that was not stopped or killed
        yet; returns the messages of those that did not exit cleanly (status 0 on SIGTERM):
        a sanitizer report, a crash, a hang, an exit of their own with a non-zero status."""
        errors = []
        for svc in list(self.services if services is None else services):
            if svc in self.live:
                try:
                    svc.stop()
                except ServiceError as e:
                    errors.append(str(e))
        return errors

    def drop_dbs(self):
        """Drops the current test's databases; returns the messages of those that failed."""
        errors = []
        for db in list(self.dbs):
            try:
                db.drop()
            except DbError as e:
                errors.append("could not drop %s: %s" % (db.name, e))
        return errors

    def kill_leftovers(self):
        for svc in list(self.live):
            svc.kill()


TRACK = Tracker()
atexit.register(TRACK.kill_leftovers)


# ---------------------------------------------------------------------------------------------
# Databases


class DbError(Exception):
    """psql failed; the message holds its stderr."""


def _param_text(value):
    if value is None:
        raise TypeError("NULL cannot be passed as a psql variable; write NULL in the SQL")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (bytes, bytearray)):
        return "\\x" + bytes(value).hex()  # bytea hex input: use :'p1'::bytea
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def psql(url, sql, *params, timeout=60):
    """Runs sql on url; returns the rows as lists of strings (None for NULL).

    Parameters become psql variables p1, p2, ...: write them as :'p1' (a quoted literal, safe
    for any text) or :"p1" (a quoted identifier) in the SQL."""
    args = [psql_bin(), "-X", "-q", "-At", "-F", _FIELD_SEP, "-0", "-P", "null=" + _NULL_MARK,
            "-v", "ON_ERROR_STOP=1", "-d", url, "-f", "-"]
    for i, value in enumerate(params, 1):
        args += ["-v", "p%d=%s" % (i, _param_text(value))]
    env = child_env({"PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "vr-test"})
    proc = subprocess.run(args, input=sql.encode(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise DbError("psql failed (exit %d) on %s: %s\nSQL: %s" % (
            proc.returncode, url, proc.stderr.decode(errors="replace").strip(), sql.strip()))
    out = proc.stdout.decode()
    # Every row ends with NUL, so the last piece is always empty.
    return [[None if f == _NULL_MARK else f for f in rec.split(_FIELD_SEP)]
            for rec in out.split("\0")[:-1]]


class TestCluster:
    """The suite's cluster, started by scripts/testdb.sh: its URL without a database, and the
    migrated template that every test database is cloned from."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, pg_dir):
        env = {}
        with open(os.path.join(pg_dir, "env"), encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    key, value = line.split("=", 1)
                    env[key] = value
        self.dir = pg_dir
        self.url_base = env["VR_TEST_PG_URL_BASE"]
        self.template = env.get("VR_TEST_PG_TEMPLATE", "voidrecon_template")

    def new_db(self, template=None):
        """A new database cloned from template (default: the migrated one); dropped after the
        test that made it."""
        return Db(self.url_base, template or self.template)


class Db:
    """A database of its own on a cluster, cloned from a template; drop() removes it, and so
    does the cleanup after the test that made it."""

    def __init__(self, url_base, template, name=None):
        self.url_base = url_base
        self.name = name or "vrt_%d_%s" % (os.getpid(), uuid.uuid4().hex[:10])
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self.name):
            raise ValueError("database name %r: use [a-z0-9_], at most 63" % self.name)
        self.url = "%s/%s" % (self.url_base, self.name)
        self._owned = True
        # Copying fails while anyone is connected to the template; testdb.sh forbids that,
        # but a hand-run session may still be there for a moment.
        for attempt in range(10):
            try:
                psql(self.url_base + "/postgres",
                     'create database "%s" template "%s"' % (self.name, template))
                break
            except DbError as e:
                if "being accessed by other users" not in str(e) or attempt == 9:
                    raise
                time.sleep(0.3)
        TRACK.dbs.append(self)

    @classmethod
    def existing(cls, url):
        """A Db for a database that exists already; drop() leaves it alone."""
        self = cls.__new__(cls)
        self.url = url
        self.url_base, _, self.name = url.rpartition("/")
        self._owned = False
        return self

    def query(self, sql, *params):
        """Rows of sql as lists of strings (None for NULL); params are :'p1', :'p2', ..."""
        return psql(self.url, sql, *params)

    def scalar(self, sql, *params):
        """The first column of the first row, or None when there is no row."""
        rows = self.query(sql, *params)
        return rows[0][0] if rows else None

    def drop(self):
        if not self._owned:
            return
        if self in TRACK.dbs:
            TRACK.dbs.remove(self)
        psql(self.url_base + "/postgres", 'drop database if exists "%s" with (force)' % self.name)
        self._owned = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.drop()

    def __repr__(self):
        return "Db(%s)" % self.url


# ---------------------------------------------------------------------------------------------
# The service


class ServiceError(Exception):
    """The service failed to start or to stop as expected; the message ends with its log."""


_LISTENING = re.compile(rb'"event"\s*:\s*"listening"')


def describe_exit(rc):
    if rc is not None and rc < 0:
        try:
            return "signal %s" % signal.Signals(-rc).name
        except ValueError:
            return "signal %d" % -rc
    return "status %s" % rc


class Service:
    """`$VOIDRECON_BIN serve` on 127.0.0.1:<free port>, stdout and stderr captured to a file.

    db: a Db (or give database_url); env: extra VOIDRECON_* settings (None removes one).
    A service the test leaves running is stopped after it, and anything but a clean exit then
    fails the test."""

    def __init__(self, db=None, env=None, args=(), port=None, database_url=None, start=True,
                 timeout=10):
        if database_url is None:
            if db is None:
                raise ValueError("Service needs db or database_url")
            database_url = db.url
        self.db = db
        self.port = port or free_port()
        self.args = list(args)
        settings = {"VOIDRECON_DATABASE_URL": database_url,
                    "VOIDRECON_LISTEN": "127.0.0.1:%d" % self.port}
        settings.update(env or {})
        self.env = child_env(settings)
        fd, self.log_path = tempfile.mkstemp(prefix="vr-service-", suffix=".log")
        os.close(fd)
        self.proc = None
        self.returncode = None
        TRACK.services.append(self)
        if start:
            self.start(timeout=timeout)

    def start(self, timeout=10):
        """Starts (or restarts) the service; returns once it accepts connections."""
        if self.running():
            raise ServiceError("already running")
        offset = os.path.getsize(self.log_path)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([voidrecon_bin(), "serve"] + self.args, env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.returncode = None
        if self not in TRACK.live:
            TRACK.live.append(self)
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                if _LISTENING.search(f.read()):
                    return self
            rc = self.proc.poll()
            if rc is not None:
                self.returncode = rc
                self._forget()
                raise ServiceError("voidrecon serve exited with %s before listening\n%s"
                                   % (describe_exit(rc), self.log_tail()))
            if self._healthz_answers():
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise ServiceError("voidrecon serve not listening after %ss\n%s"
                                   % (timeout, self.log_tail()))
            time.sleep(0.05)

    def _healthz_answers(self):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            try:
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                return True
            finally:
                conn.close()
        except (OSError, http.client.HTTPException):
            return False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10, check=True):
        """SIGTERM, then wait; returns the exit status. With check, anything but a clean exit 0
        (a sanitizer report, a crash, a hang) raises."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.returncode = self.proc.returncode
                self._forget()
                raise ServiceError("voidrecon serve still running %ss after SIGTERM\n%s"
                                   % (timeout, self.log_tail()))
        self.returncode = self.proc.returncode
        self._forget()
        if check and self.returncode != 0:
            raise ServiceError("voidrecon serve exited with %s\n%s"
                               % (describe_exit(self.returncode), self.log_tail()))
        return self.returncode

    def kill(self):
        """SIGKILL, then wait; returns the exit status."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
            self.returncode = self.proc.returncode
        self._forget()
        return self.returncode

    def _forget(self):
        if self in TRACK.live:
            TRACK.live.remove(self)

    def request(self, method, path, body=None, headers=None, timeout=10):
        """One HTTP/1.1 request on a new connection; returns (status, headers with lower-case
        names, body bytes)."""
        if isinstance(body, str):
            body = body.encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def get(self, path, headers=None, timeout=10):
        return self.request("GET", path, headers=headers, timeout=timeout)

    def post_json(self, path, obj, headers=None, timeout=10):
        """POST obj as JSON (bytes and str are sent as they are)."""
        body = obj if isinstance(obj, (bytes, bytearray, str)) else json.dumps(obj).encode()
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        return self.request("POST", path, body=body, headers=hdrs, timeout=timeout)

    def raw(self, data, read_timeout=2.0, **kw):
        """raw() against this service."""
        return raw(self.port, data, read_timeout, **kw)

    def connect(self, timeout=5):
        """A new TCP connection to the service whose reads and writes time out after timeout s."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        s.settimeout(timeout)
        return s

    def remove_log(self):
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def log_tail(self, lines=100):
        text = self.log_text().splitlines()
        head = "--- log of voidrecon serve (%s)%s ---" % (
            self.log_path, ", last %d lines" % lines if len(text) > lines else "")
        return "\n".join([head] + text[-lines:] + ["--- end of log ---"])

    def logs(self):
        """The JSON log lines parsed into dicts; other lines are skipped."""
        out = []
        for line in self.log_text().splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def wait_log(self, predicate, timeout=5):
        """Waits for a log line: predicate is an event name or a function of the parsed line.
        Returns the line."""
        __tracebackhide__ = True
        if isinstance(predicate, str):
            event = predicate
            predicate = lambda line: line.get("event") == event  # noqa: E731
        deadline = time.monotonic() + timeout
        while True:
            for line in self.logs():
                if predicate(line):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError("no matching log line within %ss\n%s"
                                     % (timeout, self.log_tail()))
            time.sleep(0.05)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.stop()
        else:
            self.kill()


# ---------------------------------------------------------------------------------------------
# Sockets and pipes: every read has a bound, and a stream that ends early fails the test


def raw(port, data, read_timeout=2.0, host="127.0.0.1", delay=0.0, half_close=False):
    """Sends raw bytes and returns every byte that came back before the server closed the
    connection or read_timeout seconds passed.

    data: bytes, or a list of bytes sent delay seconds apart (a slow client). half_close
    shuts our sending side after the last piece."""
    parts = [bytes(data)] if isinstance(data, (bytes, bytearray)) else [bytes(p) for p in data]
    got = []
    with socket.create_connection((host, port), timeout=5) as s:
        try:
            for i, part in enumerate(parts):
                if i and delay:
                    time.sleep(delay)
                s.sendall(part)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before it has read everything
        deadline = time.monotonic() + read_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            got.append(chunk)
    return b"".join(got)


def _recv_loop(sock, done, timeout, what, closed_ok):
    """Reads from sock until done(data) holds, or, with closed_ok, until the peer closes;
    returns what was read. The deadline passing, or an early close, fails the test."""
    deadline = time.monotonic() + timeout
    data = b""
    while not done(data):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("%s after %ss waiting for %s; got %r" % (
                "the connection was still open" if closed_ok else "timed out", timeout, what,
                data[-300:]))
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            if closed_ok:
                return data
            raise AssertionError("the connection was closed while waiting for %s; got %r"
                                 % (what, data[-300:]))
        data += chunk
    return data


def recv_until(sock, done, timeout=5, what="the answer"):
    """Reads from sock until done(data) holds for everything read so far, and returns it.
    The peer closing the connection first, or timeout seconds passing, fails the test."""
    __tracebackhide__ = True
    return _recv_loop(sock, done, timeout, what, closed_ok=False)


def recv_to_close(sock, timeout=5, what="the end of the answer"):
    """Reads from sock until the peer closes the connection, and returns what came; the
    connection staying open for timeout seconds fails the test."""
    __tracebackhide__ = True
    return _recv_loop(sock, lambda data: False, timeout, what, closed_ok=True)


def complete_response(data):
    """True when data holds at least one whole HTTP/1.1 response with a Content-Length body
    (or none)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
    return len(rest) >= (int(m.group(1)) if m else 0)


def responses(data):
    """Splits raw bytes into [(status, {header: value}, body)]; interim 1xx included."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError("incomplete response: %r" % data[:200])
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        assert lines[0].startswith("HTTP/1.1 "), lines[0]
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        out.append((status, hdrs, rest[:n]))
        data = rest[n:]
    return out


def post_bytes(body, path="/webhooks/atlas", extra=b""):
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            + extra + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def error_of(resp):
    return json.loads(resp[2])["error"]


def metrics_of(svc):
    """GET /metrics of svc: {"name{labels}": value} of every sample."""
    status, hdrs, body = svc.get("/metrics")
    eq(status, 200)
    assert hdrs["content-type"].startswith("text/plain; version=0.0.4"), hdrs
    values = {}
    for line in body.decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        values[name] = float(value)
    return values


class PipeReader:
    """A child's output pipe read straight from its descriptor with a bound on every wait."""

    def __init__(self, pipe, name="the child"):
        self.fd = pipe.fileno()
        self.name = name
        self.buf = b""
        self.eof = False

    def _fill(self, deadline, what):
        __tracebackhide__ = True
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([self.fd], [], [], left)[0]:
            raise AssertionError("timed out waiting for %s from %s; it said %r"
                                 % (what, self.name, self.buf[-500:]))
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.eof = True
        self.buf += chunk

    def line_with(self, text, timeout=10):
        """Consumes output up to and including the first line that contains text; returns
        that line. The output ending first fails the test."""
        __tracebackhide__ = True
        deadline = time.monotonic() + timeout
        want = text.encode()
        while True:
            start = 0
            while True:
                end = self.buf.find(b"\n", start)
                if end < 0:
                    break
                line = self.buf[start:end]
                if want in line:
                    self.buf = self.buf[end + 1:]
                    return line.decode(errors="replace")
                start = end + 1
            if self.eof:
                raise AssertionError("%s ended its output before a line with %r; it said %r"
                                     % (self.name, text, self.buf[-500:]))
            self._fill(deadline, "a line with %r" % text)

    def read_to_end(self, timeout=10):
        """Everything left until the child closes its output."""
        __tracebackhide__ = True
        deadline = time.monotonic() + timeout
        while not self.eof:
            self._fill(deadline, "the end of its output")
        out, self.buf = self.buf, b""
        return out.decode(errors="replace")


class PsqlSession:
    """An interactive psql on url, for LISTEN and for holding locks; its output is read with a
    bound on every wait. Leaving the with block ends it (killed if it does not exit)."""

    def __init__(self, url):
        self.proc = subprocess.Popen([psql_bin(), "-X", "-q", "-d", url], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=child_env())
        self.out = PipeReader(self.proc.stdout, "psql")

    def send(self, sql):
        self.proc.stdin.write(sql.encode())
        self.proc.stdin.flush()

    def line_with(self, text, timeout=10):
        """Waits for a line of output that contains text (see PipeReader.line_with)."""
        __tracebackhide__ = True
        return self.out.line_with(text, timeout)

    def finish(self, timeout=10):
        """Closes psql's input, so that it exits, and returns the rest of its output."""
        __tracebackhide__ = True
        self.proc.stdin.close()
        out = self.out.read_to_end(timeout)
        close_child(self.proc, timeout)
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        close_child(self.proc)


def close_child(proc, timeout=10):
    """Closes the child's input and waits for it to exit; after timeout seconds it is killed
    and the test fails."""
    __tracebackhide__ = True
    if proc.stdin is not None and not proc.stdin.closed:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("%s still running %ss after its input was closed"
                             % (proc.args[0], timeout))


# ---------------------------------------------------------------------------------------------
# A cluster of a test's own, for tests that stop and start PostgreSQL


class Cluster:
    """A separate throwaway cluster run by scripts/pg.sh --fast; its port stays the same
    across stop() and start(), so a service keeps its URL."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="vrpg-own-")
        self.port = None
        self.url = None
        self.url_base = None
        self.db = None

    def _pg(self, *args):
        pg_sh = os.path.join(source_dir(), "scripts", "pg.sh")
        proc = subprocess.run([pg_sh] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=child_env(), timeout=120)
        if proc.returncode != 0:
            raise RuntimeError("pg.sh %s failed (exit %d): %s" % (
                " ".join(args), proc.returncode, proc.stderr.decode(errors="replace")))
        return proc.stdout.decode().strip()

    def start(self):
        args = ["start", self.dir, "--fast"] + ([str(self.port)] if self.port else [])
        self.url = self._pg(*args).splitlines()[-1]
        self.url_base = self.url.rpartition("/")[0]
        self.port = int(self.url_base.rpartition(":")[2])
        self.db = Db.existing(self.url)
        return self

    def stop(self):
        self._pg("stop", self.dir)

    def destroy(self):
        self._pg("destroy", self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)

    def migrate(self):
        """`$VOIDRECON_BIN migrate` on this cluster's voidrecon database."""
        proc = subprocess.run([voidrecon_bin(), "migrate"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=120,
                              env=child_env({"VOIDRECON_DATABASE_URL": self.url}))
        if proc.returncode != 0:
            raise RuntimeError("voidrecon migrate failed (%s):\n%s" % (
                describe_exit(proc.returncode), proc.stdout.decode(errors="replace")))

    def query(self, sql, *params):
        return self.db.query(sql, *params)

    def services(self):
        """The running services whose database is on this cluster."""
        return [s for s in TRACK.live if s.db is not None and s.db.url_base == self.url_base]


# ---------------------------------------------------------------------------------------------
# The Atlas simulator (tests/atlas_sim.py) and services set up to poll it with short timings


SIM_CLIENT_ID = "sim-id"
SIM_CLIENT_SECRET = "sim-secret"
ADMIN_TOKEN = "adm-token-1"
FAST_POLLING = {
    "VOIDRECON_POLL_TICK_MS": "20",
    "VOIDRECON_POLL_FIRST_MS": "100",
    "VOIDRECON_POLL_CONFIRM_MS": "50",
    "VOIDRECON_POLL_MAX_INTERVAL_MS": "400",
    "VOIDRECON_POLL_RETRY_MS": "50",
    "VOIDRECON_POLL_CONCURRENCY": "16",
    "VOIDRECON_POLL_MAX_RPS": "1000",
    "VOIDRECON_ATLAS_TIMEOUT_MS": "2000",
    "VOIDRECON_ADMIN_TOKEN": ADMIN_TOKEN,
}


def start_atlas_sim():
    """A simulator serving in this process; returns (sim, server). sim.base_url is its URL;
    server.shutdown() and server.server_close() stop it."""
    sim, server = atlas_sim.start(client_id=SIM_CLIENT_ID, client_secret=SIM_CLIENT_SECRET)
    sim.base_url = "http://127.0.0.1:%d" % server.server_address[1]
    return sim, server


class Rig:
    """A simulator and services on one database, polling it with FAST_POLLING timings (env
    overrides them); secret is the client secret the services send. With webhooks, the
    simulator sends its webhooks to the first service."""

    def __init__(self, db, sim, env=None, secret=SIM_CLIENT_SECRET, webhooks=True, services=1):
        self.sim = sim
        self.db = db
        settings = dict(FAST_POLLING)
        settings.update({
            "VOIDRECON_ATLAS_BASE_URL": sim.base_url,
            "VOIDRECON_ATLAS_CLIENT_ID": SIM_CLIENT_ID,
            "VOIDRECON_ATLAS_CLIENT_SECRET": secret,
        })
        settings.update(env or {})
        self.services = [Service(db, env=settings) for _ in range(services)]
        self.svc = self.services[0]
        if webhooks:
            self.sim.webhook_url = "http://127.0.0.1:%d/webhooks/atlas" % self.svc.port

    def faults(self, **kw):
        with self.sim.lock:
            hook = kw.pop("webhook", {})
            self.sim.faults.update(kw)
            self.sim.faults["webhook"].update(hook)

    def register(self, order, code, status=None):
        body = {"orderNo": order, "voidCode": code}
        if status is not None:
            body["voidStatus"] = status
        st, _, reply = self.svc.post_json("/v1/cases", body,
                                          headers={"Authorization": "Bearer " + ADMIN_TOKEN})
        assert st in (200, 201), (st, reply)
        return json.loads(reply)

    def case(self, order, code):
        rows = self.db.query(
            "select status, confirmed, reconciled_at is not null, next_poll_at is null,"
            " needs_followup, followup_reason, poll_failures, last_poll_error, cancel_reason,"
            " void_method, expected_confirmation_date, atlas_void_order"
            " from voidrecon.void_cases where order_no = :'p1' and void_code = :'p2'",
            order, code)
        if not rows:
            return None
        r = rows[0]
        return {"status": int(r[0]), "confirmed": r[1] == "t", "reconciled": r[2] == "t",
                "unscheduled": r[3] == "t", "followup": r[4] == "t", "reason": r[5],
                "failures": int(r[6]), "error": r[7], "cancel_reason": r[8], "method": r[9],
                "confirmation_date": r[10], "item": json.loads(r[11]) if r[11] else None}

    def polls_of(self, order):
        """How many queries of order the simulator has answered."""
        with self.sim.lock:
            return sum(1 for e in self.sim.log if e["orderNo"] == order)

    def wait(self, pred, timeout=20, what="condition"):
        return wait_until(pred, timeout, what, every=0.05)


# ---------------------------------------------------------------------------------------------
# An alert receiver


class Receiver:
    """An alert receiver: answers each POST with the next step of its plan ("ok", "fail",
    "hang", an HTTP status such as 429, or a (status, body) pair), then "ok"; keeps every
    request's headers and body.
    ok_status is the status of "ok" (200; PagerDuty answers 202)."""

    def __init__(self, ok_status=200):
        self.ok_status = ok_status
        self.plan = []
        self.got = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    step = outer.plan.pop(0) if outer.plan else "ok"
                    outer.got.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                      "body": body, "at": time.time(), "answer": step})
                if step == "hang":
                    time.sleep(3)
                    return
                said = b""
                if isinstance(step, tuple):
                    status, said = step
                elif isinstance(step, int):
                    status = step
                else:
                    status = outer.ok_status if step == "ok" else 500
                self.send_response(status)
                self.send_header("Content-Length", str(len(said)))
                self.end_headers()
                self.wfile.write(said)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d/hooks/voidrecon" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer_with(self, *steps):
        """The answers to the next requests, in order; every later one is "ok"."""
        with self.lock:
            self.plan = list(steps)

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def ok_deliveries(self, webhook_id=None):
        """The requests answered 2xx (of one alert id when given)."""
        with self.lock:
            return [g for g in self.got if g["answer"] == "ok"
                    and (webhook_id is None or g["headers"]["webhook-id"] == webhook_id)]
