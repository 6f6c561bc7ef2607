"""Integration-test harness: fresh databases, the service under test, raw sockets, a small runner.

A test module defines functions named test_* and ends with::

    if __name__ == "__main__":
        run()

They run in the order they are written. A test that takes a parameter named ``db`` gets a fresh
database cloned from voidrecon_template; ``svc`` gets a started service on that database. Both
are cleaned up afterwards, and so is every Db or Service a test makes itself.

Under ctest the environment comes from tests/CMakeLists.txt. By hand::

    scripts/testdb.sh start /tmp/vrt build/voidrecon
    VR_TEST_PG_DIR=/tmp/vrt VOIDRECON_BIN=build/voidrecon python3 tests/integration/test_x.py [test_name ...]
    scripts/testdb.sh stop /tmp/vrt

Standard library only.
"""

import atexit
import contextlib
import glob
import http.client
import inspect
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

__all__ = [
    "Db", "DbError", "Service", "ServiceError", "Cluster", "own_cluster", "raw", "free_port",
    "eq", "run", "source_dir", "psql_bin", "wait_until",
]

# psql output: fields end at \x1f, rows at NUL (which text values can never contain), and a
# marker that no test writes stands for NULL.
_FIELD_SEP = "\x1f"
_NULL_MARK = "\x1eNULL\x1e"

_HERE = os.path.dirname(os.path.abspath(__file__))
_live_services = []  # started and not yet stopped or killed
_all_services = []  # made since the current test began
_live_dbs = []


def source_dir():
    """The repository root."""
    return os.environ.get("VR_SOURCE_DIR") or os.path.dirname(os.path.dirname(_HERE))


def _voidrecon_bin():
    path = os.environ.get("VOIDRECON_BIN")
    if not path:
        raise RuntimeError("VOIDRECON_BIN is not set (the voidrecon binary under test)")
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


def _fixture_env():
    """KEY=VALUE lines of $VR_TEST_PG_DIR/env, written by scripts/testdb.sh."""
    pg_dir = os.environ.get("VR_TEST_PG_DIR")
    if not pg_dir:
        raise RuntimeError("VR_TEST_PG_DIR is not set; run under ctest, or see harness.py's "
                           "docstring for running by hand")
    env = {}
    with open(os.path.join(pg_dir, "env"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                env[key] = value
    return env


def _child_env(extra=None):
    """Our environment without any VOIDRECON_* setting, plus extra (a None value removes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIDRECON_")}
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=10, what="condition", every=0.02):
    """Calls pred until it returns something true, and returns that; fails after timeout s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(every)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


def eq(actual, expected, what=""):
    """assert actual == expected, naming both sides."""
    if actual != expected:
        raise AssertionError("%sexpected %r, got %r" % (what + ": " if what else "", expected, actual))


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
    env = _child_env({"PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "vr-test-harness"})
    proc = subprocess.run(args, input=sql.encode(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise DbError("psql failed (exit %d) on %s: %s\nSQL: %s" % (
            proc.returncode, url, proc.stderr.decode(errors="replace").strip(), sql.strip()))
    out = proc.stdout.decode()
    # Every row ends with NUL, so the last piece is always empty.
    return [[None if f == _NULL_MARK else f for f in rec.split(_FIELD_SEP)]
            for rec in out.split("\0")[:-1]]


class Db:
    """A database of its own, cloned from the migrated template of the test cluster.

    Db() creates it; drop() (or the runner, after the test) removes it."""

    def __init__(self, name=None, url_base=None, template=None):
        env = None
        if url_base is None or template is None:
            env = _fixture_env()
        self.url_base = url_base or env["VR_TEST_PG_URL_BASE"]
        template = template or env.get("VR_TEST_PG_TEMPLATE", "voidrecon_template")
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
        _live_dbs.append(self)

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
        if self in _live_dbs:
            _live_dbs.remove(self)
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


class Service:
    """`$VOIDRECON_BIN serve` on 127.0.0.1:<free port>, stdout and stderr captured to a file.

    db: a Db (or give database_url); env: extra VOIDRECON_* settings (None removes one)."""

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
        self.env = _child_env(settings)
        fd, self.log_path = tempfile.mkstemp(prefix="vr-service-", suffix=".log")
        os.close(fd)
        self.proc = None
        self.returncode = None
        _all_services.append(self)
        if start:
            self.start(timeout=timeout)

    def start(self, timeout=10):
        """Starts (or restarts) the service; returns once it accepts connections."""
        if self.running():
            raise ServiceError("already running")
        offset = os.path.getsize(self.log_path)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([_voidrecon_bin(), "serve"] + self.args, env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.returncode = None
        if self not in _live_services:
            _live_services.append(self)
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                if _LISTENING.search(f.read()):
                    return self
            rc = self.proc.poll()
            if rc is not None:
                self.returncode = rc
                raise ServiceError("voidrecon serve exited with %s before listening\n%s"
                                   % (_describe_exit(rc), self.log_tail()))
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
                               % (_describe_exit(self.returncode), self.log_tail()))
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
        if self in _live_services:
            _live_services.remove(self)

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
        if isinstance(predicate, str):
            event = predicate
            predicate = lambda line: line.get("event") == event  # noqa: E731
        deadline = time.monotonic() + timeout
        while True:
            for line in self.logs():
                if predicate(line):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError("no matching log line within %ss\n%s" % (timeout, self.log_tail()))
            time.sleep(0.05)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.stop()
        else:
            self.kill()


def _describe_exit(rc):
    if rc is not None and rc < 0:
        try:
            return "signal %s" % signal.Signals(-rc).name
        except ValueError:
            return "signal %d" % -rc
    return "status %s" % rc


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
                              stderr=subprocess.PIPE, env=_child_env(), timeout=120)
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
        proc = subprocess.run([_voidrecon_bin(), "migrate"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=120,
                              env=_child_env({"VOIDRECON_DATABASE_URL": self.url}))
        if proc.returncode != 0:
            raise RuntimeError("voidrecon migrate failed (%s):\n%s" % (
                _describe_exit(proc.returncode), proc.stdout.decode(errors="replace")))

    def query(self, sql, *params):
        return self.db.query(sql, *params)


@contextlib.contextmanager
def own_cluster(migrate=True):
    """A started Cluster with a (by default migrated) voidrecon database; destroyed on exit."""
    cluster = Cluster()
    try:
        cluster.start()
        if migrate:
            cluster.migrate()
        yield cluster
    finally:
        for svc in list(_live_services):
            if svc.db is not None and svc.db.url_base == cluster.url_base:
                svc.kill()
        cluster.destroy()


# ---------------------------------------------------------------------------------------------
# The runner


def _kill_leftovers():
    for svc in list(_live_services):
        svc.kill()


atexit.register(_kill_leftovers)


def _call(fn):
    """Calls fn with the fixtures its parameters name."""
    names = list(inspect.signature(fn).parameters)
    for name in names:
        if name not in ("db", "svc", "service"):
            raise TypeError("%s: unknown fixture %r (use db, svc)" % (fn.__name__, name))
    db = Db() if names else None
    kwargs = {}
    for name in names:
        kwargs[name] = db if name == "db" else Service(db)
    fn(**kwargs)


def run(module=None):
    """Runs the test_* functions of module (default: __main__) in source order; exits 1 when
    one failed. Names on the command line select tests."""
    mod = module or sys.modules["__main__"]
    tests = [f for n, f in vars(mod).items()
             if n.startswith("test_") and inspect.isfunction(f) and f.__module__ == mod.__name__]
    tests.sort(key=lambda f: f.__code__.co_firstlineno)
    wanted = sys.argv[1:]
    if wanted:
        unknown = set(wanted) - {f.__name__ for f in tests}
        if unknown:
            print("no such test: %s" % ", ".join(sorted(unknown)), flush=True)
            sys.exit(1)
        tests = [f for f in tests if f.__name__ in wanted]
    passed = failed = 0
    for fn in tests:
        started = time.monotonic()
        first = len(_all_services)
        error = None
        try:
            _call(fn)
        except Exception as e:  # noqa: BLE001 - every failure is reported the same way
            error = e
        made = _all_services[first:]
        # A service the test left running is stopped here: a dirty exit fails the test too.
        for svc in made:
            if svc.running():
                try:
                    svc.stop()
                except Exception as e:  # noqa: BLE001
                    error = error or e
        for db in list(_live_dbs):
            try:
                db.drop()
            except Exception as e:  # noqa: BLE001
                print("warning: could not drop %s: %s" % (db.name, e), flush=True)
        took = time.monotonic() - started
        if error is None:
            passed += 1
            print("ok   %s (%.2fs)" % (fn.__name__, took), flush=True)
            for svc in made:
                svc.remove_log()
            continue
        failed += 1
        message = str(error).split("\n", 1)[0] or type(error).__name__
        print("FAIL %s (%.2fs): %s" % (fn.__name__, took, message), flush=True)
        detail = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        print("    " + detail.rstrip().replace("\n", "\n    "), flush=True)
        for svc in made:
            if svc.log_path not in detail:
                print("    " + svc.log_tail().replace("\n", "\n    "), flush=True)
    del _all_services[:]
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed else 0)
