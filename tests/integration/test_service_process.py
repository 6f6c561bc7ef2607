"""The service as a process: database outages and recovery, kill -9, clean shutdown with a
request in flight, migrations, configuration errors, help, and what never reaches the log."""

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from utils import (PsqlSession, Service, eq, join_all, recv_to_close, source_dir, voidrecon_bin,
                   wait_until)

PATH = "/webhooks/atlas"


def void(order, code, status):
    return {"type": "order.void", "status": -1,
            "data": {"orderNo": order, "voidCode": code, "voidStatus": status}}


def voidrecon(*args, env=None, timeout=30):
    merged = {k: v for k, v in os.environ.items() if not k.startswith("VOIDRECON_")}
    merged.update(env or {})
    return subprocess.run([voidrecon_bin()] + list(args), env=merged,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout)


class Sender(threading.Thread):
    """Posts a new case per request until stopped; remembers every answer."""

    def __init__(self, svc, prefix):
        super().__init__(daemon=True)
        self.svc, self.prefix = svc, prefix
        self.answers = []  # (order, status, retry_after)
        self.stop = threading.Event()

    def run(self):
        i = 0
        while not self.stop.is_set():
            order = "%s%05d" % (self.prefix, i)
            i += 1
            try:
                status, hdrs, _ = self.svc.post_json(PATH, void(order, "V", 1), timeout=15)
                self.answers.append((order, status, hdrs.get("retry-after")))
            except OSError:
                self.answers.append((order, None, None))
                time.sleep(0.02)
            time.sleep(0.01)

    def acked(self):
        return {o for o, s, _ in self.answers if s == 200}


def stored_orders(db_or_cluster):
    return {r[0] for r in db_or_cluster.query("select order_no from voidrecon.void_cases")}


def test_database_outage_gives_503_then_recovers_with_nothing_acknowledged_lost(own_cluster):
    svc = Service(own_cluster.db, env={"VOIDRECON_DB_TIMEOUT_MS": "2000"})
    sender = Sender(svc, "OUT")
    sender.start()
    time.sleep(1.0)
    own_cluster.stop()
    time.sleep(0.5)
    status, hdrs, body = svc.get("/readyz")
    eq(status, 503, "not ready while the database is down")
    eq(json.loads(body)["error"]["code"], "unavailable")
    eq(svc.get("/healthz")[0], 200, "alive while the database is down")
    time.sleep(1.0)
    outage_end = len(sender.answers)
    own_cluster.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(s == 200 for _, s, _ in sender.answers[outage_end:]):
            break
        time.sleep(0.1)
    time.sleep(0.5)
    sender.stop.set()
    join_all([sender], 20, "the sender")
    during = [a for a in sender.answers[:outage_end] if a[1] == 503]
    assert during, "some requests were refused during the outage: %r" % sender.answers[-20:]
    eq({ra for _, _, ra in during}, {"5"}, "503 carries Retry-After")
    assert any(s == 200 for _, s, _ in sender.answers[outage_end:]), "recovered by itself"
    eq(svc.get("/readyz")[0], 200)
    assert svc.running(), "no crash"
    missing = sender.acked() - stored_orders(own_cluster)
    eq(missing, set(), "every acknowledged webhook is in the database")
    unexpected = {s for _, s, _ in sender.answers} - {200, 503}
    eq(unexpected, set(), "only 200 and 503 answers")
    svc.stop()
    assert "db_down" in svc.log_text() and "db_up" in svc.log_text()


def test_kill_9_loses_nothing_acknowledged(db):
    svc = Service(db)
    sender = Sender(svc, "K9")
    sender.start()
    time.sleep(1.0)
    svc.kill()
    time.sleep(0.3)
    sender.stop.set()
    join_all([sender], 20, "the sender")
    acked = sender.acked()
    assert len(acked) > 10, len(acked)
    eq(acked - stored_orders(db), set(), "acknowledged before the kill, stored after it")
    svc.start()
    eq(svc.post_json(PATH, void("K9AFTER", "V", 0))[0], 200)


def test_sigterm_finishes_the_request_in_flight_then_exits_cleanly(svc):
    eq(svc.post_json(PATH, void("INFLIGHT", "V", 0))[0], 200)
    # Hold the case's row so the next report waits inside its database write.
    with PsqlSession(svc.db.url) as locker:
        locker.send("BEGIN;\nSELECT 1 FROM voidrecon.void_cases FOR UPDATE;\nSELECT 'locked';\n")
        locker.line_with("locked")
        result = {}

        def send():
            result["answer"] = svc.post_json(PATH, void("INFLIGHT", "V", 1), timeout=30)

        t = threading.Thread(target=send)
        t.start()
        idle = svc.connect()
        wait_until(lambda: svc.db.scalar(
            "select count(*) from pg_stat_activity where datname = current_database()"
            " and wait_event_type = 'Lock'") == "1", what="the report to wait for the row lock")
        svc.proc.send_signal(signal.SIGTERM)
        svc.wait_log("stopping")
        eq(recv_to_close(idle, what="the idle connection to be closed"), b"",
           "idle connections are closed at once")
        idle.close()
        try:
            socket.create_connection(("127.0.0.1", svc.port), timeout=1).close()
            raise AssertionError("still accepting connections while stopping")
        except OSError:
            pass
        # Past the steps that come right before exiting; the answer below proves it waited.
        assert svc.running(), "still running while a request is in flight"
        locker.send("COMMIT;\n")
        locker.finish()
        join_all([t], 20, "the request in flight")
        status, hdrs, body = result["answer"]
        eq(status, 200)
        eq(hdrs["connection"], "close")
        eq(json.loads(body)["outcome"], "applied")
        svc.proc.wait(10)
        eq(svc.stop(), 0, "exits by itself, cleanly, once the request is answered")
    eq(svc.db.scalar("select status from voidrecon.void_cases where order_no = 'INFLIGHT'"), "1")
    assert "stopped" in [line.get("event") for line in svc.logs()]


def test_serve_refuses_a_database_that_is_behind_until_migrated(pg):
    with pg.new_db(template="template0") as db:
        env = {"VOIDRECON_DATABASE_URL": db.url, "VOIDRECON_LISTEN": "127.0.0.1:0"}
        p = voidrecon("serve", env=env)
        eq(p.returncode, 1)
        assert "run voidrecon migrate" in p.stderr, p.stderr
        p = voidrecon("migrate", env={"VOIDRECON_DATABASE_URL": db.url})
        eq(p.returncode, 0, p.stderr)
        with Service(db) as svc:
            eq(svc.get("/readyz")[0], 200)


def test_migrate_runs_once_even_when_started_twice_at_once(pg):
    with pg.new_db(template="template0") as db:
        env = {"VOIDRECON_DATABASE_URL": db.url}
        procs = [subprocess.Popen([voidrecon_bin(), "migrate"],
                                  env=dict(os.environ, **env), stderr=subprocess.PIPE, text=True)
                 for _ in range(3)]
        errs = [p.communicate(timeout=60)[1] for p in procs]
        eq([p.returncode for p in procs], [0, 0, 0], "\n".join(errs))
        files = sorted(f for f in os.listdir(os.path.join(source_dir(), "migrations"))
                       if f.endswith(".sql"))
        latest = int(files[-1].split("_")[0])
        eq(db.scalar("select count(*) from voidrecon.schema_migrations"), str(len(files)))
        applied = sorted(json.loads(line)["msg"] for e in errs for line in e.splitlines()
                         if '"migrated"' in line)
        eq(applied, ["applied 0 migration(s); schema at version %d" % latest] * 2 +
           ["applied %d migration(s); schema at version %d" % (len(files), latest)])
        missing = db.scalar(
            "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'voidrecon' and c.relkind in ('r', 'v')"
            " and obj_description(c.oid, 'pg_class') is null")
        eq(missing, "0", "every table and view has a comment")
        missing = db.scalar(
            "select count(*) from information_schema.columns col"
            " join pg_class c on c.relname = col.table_name"
            " join pg_namespace n on n.oid = c.relnamespace and n.nspname = col.table_schema"
            " where col.table_schema = 'voidrecon' and c.relkind = 'r'"
            " and col_description(c.oid, col.ordinal_position) is null")
        eq(missing, "0", "every column has a comment")


def test_schema_found_behind_after_a_late_start_refuses_webhooks_until_migrated(own_cluster):
    """Started while the database is away, the service cannot check the schema at start: once
    the database answers with a schema behind this voidrecon, webhooks get 503 until it is
    migrated, without a restart."""
    latest = own_cluster.db.scalar("select max(version) from voidrecon.schema_migrations")
    own_cluster.db.query("delete from voidrecon.schema_migrations where version = :'p1'", latest)
    own_cluster.stop()
    with Service(own_cluster.db) as svc:
        svc.wait_log("db_unreachable_at_start")
        own_cluster.start()
        svc.wait_log("schema_behind", timeout=15)

        def refused():
            status, _, body = svc.post_json(PATH, void("LATE", "V", 0))
            return status == 503 and "schema is behind" in json.loads(body)["error"]["message"]
        wait_until(refused, timeout=10, what="webhooks refused while the schema is behind")
        own_cluster.db.query("insert into voidrecon.schema_migrations (version, name)"
                             " values (:'p1', 'put back')", latest)
        wait_until(lambda: svc.post_json(PATH, void("LATE", "V", 0))[0] == 200, timeout=15,
                   what="webhooks taken once the schema is current")
    eq(own_cluster.db.scalar("select count(*) from voidrecon.void_cases"), "1")


def test_unreachable_database_at_start_answers_503():
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    dead = "postgresql://postgres@127.0.0.1:%d/none" % port.getsockname()[1]
    port.close()
    with Service(database_url=dead) as svc:
        status, hdrs, body = svc.post_json(PATH, void("DOWN", "V", 0))
        eq(status, 503)
        eq(hdrs["retry-after"], "5")
        eq(json.loads(body)["error"]["code"], "unavailable")
        eq(svc.get("/readyz")[0], 503)
        eq(svc.get("/healthz")[0], 200)
        line = svc.wait_log("db_unreachable_at_start")
        eq(line["level"], "warn")


@pytest.mark.parametrize("env, args, name", [
    ({"VOIDRECON_MAX_BODY_BYTES": "lots"}, [], "VOIDRECON_MAX_BODY_BYTES"),
    ({"VOIDRECON_MAX_BODY_BYTES": "0"}, [], "VOIDRECON_MAX_BODY_BYTES"),
    ({"VOIDRECON_LISTEN": "localhost"}, [], "VOIDRECON_LISTEN"),
    ({"VOIDRECON_LOG_LEVEL": "loud"}, [], "VOIDRECON_LOG_LEVEL"),
    ({"VOIDRECON_ATLAS_ALLOWED_CIDRS": "10.0.0.0/33"}, [], "VOIDRECON_ATLAS_ALLOWED_CIDRS"),
    ({"VOIDRECON_ATLAS_WEBHOOK_TOKEN": "a/b"}, [], "VOIDRECON_ATLAS_WEBHOOK_TOKEN"),
    ({}, ["--no-such-setting=1"], "--no-such-setting"),
    ({}, ["--idle-timeout-ms=-5"], "VOIDRECON_IDLE_TIMEOUT_MS"),
], ids=["body-lots", "body-0", "listen-name", "log-level", "cidr-33", "token-slash",
        "unknown-flag", "negative-flag"])
def test_invalid_configuration_names_the_variable(env, args, name):
    p = voidrecon("serve", *args, env=env)
    eq(p.returncode, 2, "%r %r" % (env, args))
    line = json.loads(p.stderr.strip().splitlines()[-1])
    eq(line["level"], "error")
    assert name in line["msg"], (name, line)


def test_misspelt_variable_is_named_in_a_warning(db):
    with Service(db, env={"VOIDRECON_LISTN": "127.0.0.1:1"}) as svc:
        line = svc.wait_log("config_unknown")
        eq(line["level"], "warn")
        assert "VOIDRECON_LISTN" in line["msg"], line


def test_flags_override_the_environment(db):
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
    svc = Service(db, env={"VOIDRECON_LISTEN": "127.0.0.1:1"},
                  args=["--listen=127.0.0.1:%d" % free], port=free)
    eq(svc.get("/healthz")[0], 200)
    svc.stop()


def test_listen_failure_is_reported(db):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        p = voidrecon("serve", env={"VOIDRECON_DATABASE_URL": db.url,
                                    "VOIDRECON_LISTEN": "127.0.0.1:%d" % busy.getsockname()[1]})
    finally:
        busy.close()
    eq(p.returncode, 1)
    assert "VOIDRECON_LISTEN" in p.stderr and "address already in use" in p.stderr, p.stderr


def test_help_and_version():
    p = voidrecon("--help")
    eq(p.returncode, 0)
    for word in ("serve", "migrate", "version"):
        assert word in p.stdout
    p = voidrecon("version")
    eq(p.returncode, 0)
    assert p.stdout.startswith("voidrecon "), p.stdout
    p = voidrecon("frobnicate")
    eq(p.returncode, 2)
    assert "unknown command" in p.stderr


@pytest.mark.parametrize("cmd", ["serve", "migrate"])
def test_command_help_names_the_settings(cmd):
    p = voidrecon(cmd, "--help")
    eq(p.returncode, 0)
    assert "VOIDRECON_DATABASE_URL" in p.stdout and "VOIDRECON_MAX_BODY_BYTES" in p.stdout


def test_logs_are_json_and_never_hold_secrets(db):
    secrets = {"VOIDRECON_ATLAS_WEBHOOK_TOKEN": "tok-9f8e7d", "VOIDRECON_ADMIN_TOKEN": "adm-1a2b3c",
               "VOIDRECON_ATLAS_CLIENT_SECRET": "cls-4d5e6f",
               "VOIDRECON_ALERT_SECRET": "whsec_c2VjcmV0LWtleS1mb3ItYWxlcnRz"}
    env = dict(secrets, VOIDRECON_ATLAS_BASE_URL="http://127.0.0.1:9/", VOIDRECON_ATLAS_CLIENT_ID="id",
               VOIDRECON_ALERT_URL="http://127.0.0.1:9/services/T0/B0/path-secret-8x")
    url = db.url.replace("postgres@", "postgres:pw-3m4n5o@")
    with Service(db, database_url=url, env=env) as svc:
        svc.post_json(PATH + "/tok-9f8e7d", void("SEC", "V", 0))
        svc.post_json(PATH + "/wrong", void("SEC", "V", 1))
        svc.post_json(PATH + "/tok-9f8e7d", b"{not json")
    text = svc.log_text()
    for value in list(secrets.values()) + ["pw-3m4n5o", "path-secret-8x"]:
        assert value not in text, value
    assert "***" in text
    for line in text.splitlines():
        obj = json.loads(line)
        assert {"ts", "level", "event", "msg"} <= set(obj), line
    assert "not json" not in text, "raw bodies are not logged"

