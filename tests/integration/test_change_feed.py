"""The change feed for order systems: NOTIFY voidrecon_cases for every status change and every
reconciliation, in the transaction of the change; the case history read in order with a
cursor (GET /v1/events, voidrecon events, voidrecon.case_feed) so that a reader that was away
catches up exactly, also when transactions commit in another order than their event ids.

The feed lists an event once every transaction older than its own has ended, in any database
of the cluster: so this file runs on a cluster of its own, where the other test files'
transactions cannot hold its events back while they run."""

import glob
import json
import os
import re
import select
import signal
import subprocess
import time

import pytest

from utils import (ADMIN_TOKEN as ADMIN, TRACK, Cluster, Db, PipeReader, PsqlSession, Service,
                   child_env, eq, source_dir, voidrecon_bin, wait_until)

AUTH = {"Authorization": "Bearer " + ADMIN}
NOTE = re.compile(r'Asynchronous notification "voidrecon_cases" with payload "(.*)" received')


@pytest.fixture(scope="module")
def quiet_cluster():
    """A started cluster of this file's own with a migrated database voidrecon."""
    cluster = Cluster()
    try:
        cluster.start()
        cluster.migrate()
        yield cluster
    finally:
        TRACK.stop_services(cluster.services())
        cluster.destroy()


@pytest.fixture
def db(quiet_cluster):
    """A fresh database cloned from the quiet cluster's migrated one (dropped after the test)."""
    return Db(quiet_cluster.url_base, "voidrecon")


def service(db):
    return Service(db, env={"VOIDRECON_ADMIN_TOKEN": ADMIN})


def register(svc, order, code="V1", status=None):
    body = {"orderNo": order, "voidCode": code}
    if status is not None:
        body["voidStatus"] = status
    st, _, reply = svc.post_json("/v1/cases", body, headers=AUTH)
    assert st in (200, 201), (st, reply)
    return json.loads(reply)


def webhook(svc, order, status, code="V1"):
    st, _, reply = svc.post_json("/webhooks/atlas", {"type": "order.void", "data": {
        "orderNo": order, "voidCode": code, "voidStatus": status}})
    eq(st, 200, reply.decode(errors="replace"))
    return json.loads(reply)


def feed(svc, after=None, limit=None):
    """One page of GET /v1/events."""
    q = "&".join("%s=%s" % (k, v) for k, v in (("after", after), ("limit", limit))
                 if v is not None)
    st, _, body = svc.get("/v1/events" + ("?" + q if q else ""), headers=AUTH)
    eq(st, 200, body.decode(errors="replace"))
    return json.loads(body)


def catch_up(svc, after, limit=2):
    """Reads pages from after until the feed has nothing more; returns (events, last id)."""
    got = []
    for _ in range(1000):
        doc = feed(svc, after, limit)
        got += doc["events"]
        eq(doc["next_after"], doc["events"][-1]["id"] if doc["events"] else after, "next_after")
        after = doc["next_after"]
        if not doc["more"]:
            return got, after
    raise AssertionError("the feed never ended")


def all_event_ids(db):
    """The ids of the events in the feed: those that created a case or changed it."""
    return [int(r[0]) for r in db.query(
        "select id from voidrecon.void_case_events"
        " where voidrecon.event_in_feed(in_feed, from_status, to_status) order by id")]


def notes_of(out):
    return [json.loads(n) for n in NOTE.findall(out)]


def listen(session):
    session.send("LISTEN voidrecon_cases;\nSELECT 'listening';\n")
    session.line_with("listening")


def test_each_status_change_and_the_reconciliation_are_notified(db, make_rig):
    rig = make_rig(webhooks=False)
    rig.sim.add_cases([{"orderNo": "FIN", "voidCode": "V1", "path": [2]}])
    with PsqlSession(db.url) as listener:
        listen(listener)
        eq(webhook(rig.svc, "FIN", 2)["outcome"], "applied")
        eq(webhook(rig.svc, "FIN", 2)["outcome"], "duplicate")
        rig.wait(lambda: rig.case("FIN", "V1")["reconciled"], what="the poll's confirmation")
        # Once reconciled, a repeated webhook is a duplicate again: no news.
        eq(webhook(rig.svc, "FIN", 2)["outcome"], "duplicate")
        listener.send("SELECT 'done';\n")
        out = listener.finish()
    events = db.query("select id, source, outcome, to_status, reconciled"
                      " from voidrecon.void_case_events order by id")
    eq([e[1:] for e in events], [["webhook", "applied", "2", "f"],
                                 ["webhook", "duplicate", "2", "f"],
                                 ["poll", "duplicate", "2", "t"],
                                 ["webhook", "duplicate", "2", "t"]])
    notes = notes_of(out)
    eq(notes, [
        {"event_id": int(events[0][0]), "order_no": "FIN", "void_code": "V1", "status": 2,
         "reconciled": False},
        {"event_id": int(events[2][0]), "order_no": "FIN", "void_code": "V1", "status": 2,
         "reconciled": True},
    ], "psql said:\n" + out)


def test_only_status_changes_are_notified(db):
    svc = service(db)
    with PsqlSession(db.url) as listener:
        listen(listener)
        register(svc, "NEW")             # created: NULL -> 0
        register(svc, "NEW")             # duplicate: nothing
        webhook(svc, "NEW", 1)           # 0 -> 1
        webhook(svc, "NEW", 0)           # stale: nothing
        webhook(svc, "NEW", 4)           # 1 -> 4 (rejected: an alert too, on its own channel)
        listener.send("SELECT 'done';\n")
        out = listener.finish()
    notes = notes_of(out)
    eq([(n["order_no"], n["status"], n["reconciled"]) for n in notes],
       [("NEW", 0, False), ("NEW", 1, False), ("NEW", 4, False)], "psql said:\n" + out)
    ids = [int(r[0]) for r in db.query("select id from voidrecon.void_case_events"
                                       " where from_status is distinct from to_status order by id")]
    eq([n["event_id"] for n in notes], ids)
    eq(sorted(notes[0]), ["event_id", "order_no", "reconciled", "status", "void_code"])


def test_a_listener_that_was_away_catches_up_from_its_last_id(db):
    svc = service(db)
    with PsqlSession(db.url) as listener:
        listen(listener)
        for i in range(3):
            register(svc, "A%d" % i)
        listener.send("SELECT 'done';\n")
        out = listener.finish()
    eq(len(notes_of(out)), 3)
    seen, last = catch_up(svc, 0)
    eq(len(seen), 3)
    # Away: these notifications reach nobody.
    for i in range(4):
        register(svc, "B%d" % i)
        webhook(svc, "B%d" % i, 1)
    webhook(svc, "A0", 2)
    with PsqlSession(db.url) as listener:
        listen(listener)
        register(svc, "C0")
        listener.send("SELECT 'done';\n")
        out = listener.finish()
    eq([n["order_no"] for n in notes_of(out)], ["C0"], "only what came after LISTEN")
    more, last = catch_up(svc, last)
    ids = [e["id"] for e in seen + more]
    eq(sorted(ids), all_event_ids(db), "nothing missing")
    eq(len(set(ids)), len(ids), "nothing twice")
    eq(last, ids[-1])
    eq(catch_up(svc, last), ([], last), "nothing after the last")


HELD_INSERT = ("INSERT INTO voidrecon.void_case_events (order_no, void_code, source,"
               " reported_status, from_status, to_status, outcome, in_feed)"
               " VALUES ('%s', 'V1', 'api', 0, NULL, 0, 'applied', true);\n")


def held_case_ids(db, order):
    return db.query("select id, tx::text from voidrecon.void_case_events"
                    " where order_no = :'p1' order by id", order)


def test_an_event_committed_after_a_higher_id_is_not_skipped(db):
    """A holds a lower event id in an open transaction (older than B's) while B commits a
    higher one: the reader must not pass A's id by."""
    svc = service(db)
    register(svc, "HA")
    register(svc, "HB")
    seen, last = catch_up(svc, 0)
    with PsqlSession(db.url) as a:
        a.send("BEGIN;\n" + HELD_INSERT % "HA" + "SELECT 'a-held';\n")
        a.line_with("a-held")
        db.query(HELD_INSERT % "HB")
        early, last = catch_up(svc, last)
        eq(early, [], "B's event waits for the older transaction A")
        a.send("COMMIT;\nSELECT 'a-done';\n")
        a.line_with("a-done")
    (a_id, a_tx), = held_case_ids(db, "HA")[1:]
    (b_id, b_tx), = held_case_ids(db, "HB")[1:]
    assert int(a_id) < int(b_id) and int(a_tx) < int(b_tx), (a_id, a_tx, b_id, b_tx)
    more, last = catch_up(svc, last)
    eq([e["id"] for e in more], [int(a_id), int(b_id)])
    eq(sorted(e["id"] for e in seen + more), all_event_ids(db))


def test_an_event_of_a_newer_transaction_with_a_lower_id_is_not_skipped(db):
    """B's transaction is older but takes its event id after A's: B commits first, and A's
    lower id, committed later, must still be read after B's."""
    svc = service(db)
    register(svc, "HA")
    register(svc, "HB")
    seen, last = catch_up(svc, 0)
    with PsqlSession(db.url) as b, PsqlSession(db.url) as a:
        b.send("BEGIN;\nSELECT 'b-' || pg_current_xact_id();\n")
        b.line_with("b-")
        a.send("BEGIN;\n" + HELD_INSERT % "HA" + "SELECT 'a-held';\n")
        a.line_with("a-held")
        b.send(HELD_INSERT % "HB" + "COMMIT;\nSELECT 'b-done';\n")
        b.line_with("b-done")
        early, last = catch_up(svc, last)
        a.send("COMMIT;\nSELECT 'a-done';\n")
        a.line_with("a-done")
    (a_id, a_tx), = held_case_ids(db, "HA")[1:]
    (b_id, b_tx), = held_case_ids(db, "HB")[1:]
    assert int(a_id) < int(b_id) and int(a_tx) > int(b_tx), (a_id, a_tx, b_id, b_tx)
    more, last = catch_up(svc, last)
    ids = [e["id"] for e in seen + early + more]
    eq(sorted(ids), all_event_ids(db), "nothing skipped")
    eq(len(set(ids)), len(ids), "nothing twice")


def test_events_api_pages_and_refuses_bad_input(db):
    svc = service(db)
    for i in range(5):
        register(svc, "P%d" % i)
    doc = feed(svc)
    eq([e["order_no"] for e in doc["events"]], ["P%d" % i for i in range(5)])
    eq(doc["more"], False)
    first = doc["events"][0]
    eq(sorted(first), ["at", "delivery_id", "from_status", "id", "message", "order_no",
                       "outcome", "reconciled", "reported_status", "source", "status_name",
                       "to_status", "void_code"])
    eq((first["from_status"], first["to_status"], first["status_name"], first["outcome"],
        first["source"], first["reconciled"]), (None, 0, "ATLAS_PROCESSING", "applied", "api",
                                                 False))
    page = feed(svc, 0, 2)
    eq((len(page["events"]), page["more"], page["next_after"]),
       (2, True, page["events"][1]["id"]))
    page = feed(svc, page["next_after"], 2)
    eq([e["order_no"] for e in page["events"]], ["P2", "P3"])
    page = feed(svc, page["next_after"], 2)
    eq(([e["order_no"] for e in page["events"]], page["more"]), (["P4"], False))
    page = feed(svc, page["next_after"], 2)
    eq((page["events"], page["more"], page["next_after"]), ([], False, doc["events"][4]["id"]))
    for query, name in [("after=-1", "after"), ("after=x", "after"), ("after=", "after"),
                        ("after=1e3", "after"), ("after=99999999999999999999", "after"),
                        ("limit=0", "limit"), ("limit=501", "limit"), ("limit=ten", "limit"),
                        ("after=999999", "after")]:
        st, _, body = svc.get("/v1/events?" + query, headers=AUTH)
        err = json.loads(body)["error"]
        eq(st, 400, query)
        assert err["message"].startswith(name + ":"), (query, err)
    eq(svc.get("/v1/events")[0], 401)
    st, hdrs, _ = svc.request("POST", "/v1/events", headers=AUTH)
    eq((st, hdrs["allow"]), (405, "GET, HEAD"))


def test_the_feed_query_is_served_by_its_index(db):
    db.query("insert into voidrecon.void_cases (order_no, void_code, status) values ('IX', 'V1', 0);"
             "insert into voidrecon.void_case_events (order_no, void_code, source,"
             " reported_status, from_status, to_status, outcome, in_feed)"
             " select 'IX', 'V1', 'poll', 0, 0, 1, 'applied', true"
             " from generate_series(1, 20000);"
             "analyze voidrecon.void_case_events")
    mid = int(db.scalar("select id from voidrecon.void_case_events order by id offset 10000"
                        " limit 1"))
    for after in (0, mid):
        plan = json.loads(db.scalar("explain (format json) select * from voidrecon.case_feed("
                                    ":'p1', 50)", after))
        nodes, todo = [], [plan[0]["Plan"]]
        while todo:
            n = todo.pop()
            nodes.append(n)
            todo += n.get("Plans", [])
        scans = [(n["Node Type"], n.get("Index Name")) for n in nodes
                 if n.get("Relation Name") == "void_case_events"]
        assert ("Index Scan", "void_case_events_feed_idx") in scans, plan
        assert all(t != "Seq Scan" for t, _ in scans), plan
    svc = service(db)
    eq([e["id"] for e in feed(svc, mid, 3)["events"]], [mid + 1, mid + 2, mid + 3])


def cli(db, *args, timeout=30):
    return subprocess.run([voidrecon_bin(), "events"] + list(args), capture_output=True,
                          text=True, timeout=timeout,
                          env=child_env({"VOIDRECON_DATABASE_URL": db.url}))


def test_cli_events_after(db):
    svc = service(db)
    for i in range(3):
        register(svc, "E%d" % i)
    ids = all_event_ids(db)
    p = cli(db, "--after", str(ids[0]), "--json")
    eq(p.returncode, 0, p.stderr)
    doc = json.loads(p.stdout)
    eq([e["id"] for e in doc["events"]], ids[1:])
    eq(doc["next_after"], ids[2])
    p = cli(db, "--after", str(ids[0]), "--limit", "1")
    eq(p.returncode, 0, p.stderr)
    lines = p.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "AT", "ORDER_NO"], p.stdout
    eq(lines[1].split()[0], str(ids[1]))
    assert "E1" in lines[1], p.stdout
    eq(lines[-1], "(more events: add --after %d)" % ids[1])
    p = cli(db, "--after", "nope")
    eq(p.returncode, 2)
    assert "--after" in p.stderr, p.stderr
    p = cli(db, "--after", "999999")
    eq(p.returncode, 1)
    assert "--after" in p.stderr, p.stderr


def follower(db, *args):
    return subprocess.Popen([voidrecon_bin(), "events", "--follow"] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=child_env({"VOIDRECON_DATABASE_URL": db.url}))


def test_cli_events_follow_prints_new_events_until_interrupted(db):
    svc = service(db)
    register(svc, "F0")
    # Reading on its own only once an hour: what it prints next, a notification made it read.
    proc = follower(db, "--json", "--poll-ms", "3600000")
    try:
        out = PipeReader(proc.stdout, "voidrecon events --follow")
        first = json.loads(out.line_with('"F0"'))
        eq((first["order_no"], first["to_status"]), ("F0", 0))
        register(svc, "F1")
        webhook(svc, "F1", 2)
        got = [json.loads(out.line_with('"F1"')) for _ in range(2)]
        eq([(e["from_status"], e["to_status"]) for e in got], [(None, 0), (0, 2)])
        proc.send_signal(signal.SIGINT)
        eq(proc.wait(10), 0)
        eq(out.read_to_end(), "", "nothing twice")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    eq(proc.stderr.read().decode(), "", "no chatter")


def test_cli_follow_table_lines(db):
    svc = service(db)
    proc = follower(db)
    try:
        out = PipeReader(proc.stdout, "voidrecon events --follow")
        wait_until(lambda: db.scalar("select count(*) from pg_stat_activity"
                                     " where query ilike 'listen%'") == "1",
                   what="the follower to listen")
        register(svc, "T0")
        line = out.line_with("T0")
        assert "ATLAS_PROCESSING" in line and "applied" in line, line
        proc.send_signal(signal.SIGTERM)
        eq(proc.wait(10), 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def listeners(db):
    return db.query("select pid from pg_stat_activity where datname = current_database()"
                    " and query ilike 'listen%'")


def test_cli_follow_listens_again_after_losing_its_connection(db):
    svc = service(db)
    proc = follower(db, "--json", "--poll-ms", "3600000")
    try:
        out = PipeReader(proc.stdout, "voidrecon events --follow")
        (pid,), = wait_until(lambda: listeners(db), what="the follower to listen")
        db.query("select pg_terminate_backend(:'p1')", pid)
        register(svc, "K0")
        # Unheard, and no reading on its own for an hour: it reads when it listens again.
        eq(json.loads(out.line_with('"K0"'))["order_no"], "K0")
        wait_until(lambda: listeners(db) and listeners(db) != [[pid]],
                   what="the follower to listen again")
        register(svc, "K1")
        out.line_with('"K1"')
        proc.send_signal(signal.SIGINT)
        eq(proc.wait(10), 0)
        eq(out.read_to_end(), "", "nothing twice")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read().decode()
    eq(err.count('"listen_failed"'), 1, err)


def test_cli_follow_reads_until_an_announced_event_is_readable(db):
    """An event becomes readable only when every older transaction has ended: announced while
    one runs, the follower reads again until it has it (no reading of its own for an hour)."""
    svc = service(db)
    proc = follower(db, "--json", "--poll-ms", "3600000")
    try:
        out = PipeReader(proc.stdout, "voidrecon events --follow")
        wait_until(lambda: listeners(db), what="the follower to listen")
        with PsqlSession(db.url) as older, PsqlSession(db.url) as listener:
            listen(listener)
            older.send("BEGIN;\nSELECT 'older-' || pg_current_xact_id();\n")
            older.line_with("older-")
            register(svc, "W0")
            listener.send("SELECT 'done';\n")
            eq([n["order_no"] for n in notes_of(listener.finish())], ["W0"])
            time.sleep(0.3)  # the read the notification caused, and a few more
            eq(select.select([proc.stdout], [], [], 0)[0], [],
               "nothing is readable while the older transaction runs")
            older.send("COMMIT;\nSELECT 'older-done';\n")
            older.line_with("older-done")
        eq(json.loads(out.line_with('"W0"'))["order_no"], "W0")
        proc.send_signal(signal.SIGTERM)
        eq(proc.wait(10), 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_follow_prints_unannounced_events_from_its_own_reads(db):
    """An event whose notification never came (here: written with the trigger off) is read
    all the same."""
    svc = service(db)
    register(svc, "D0")
    proc = follower(db, "--json", "--poll-ms", "200")
    try:
        out = PipeReader(proc.stdout, "voidrecon events --follow")
        eq(json.loads(out.line_with('"D0"'))["outcome"], "applied")
        db.query("set session_replication_role = replica;" + HELD_INSERT % "D1")
        eq(json.loads(out.line_with('"D1"'))["outcome"], "applied")
        proc.send_signal(signal.SIGTERM)
        eq(proc.wait(10), 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_upgrade_rewrites_no_table_and_older_events_come_first(quiet_cluster):
    db = Db(quiet_cluster.url_base, "template0")
    db.query("create schema voidrecon; create table voidrecon.schema_migrations"
             " (version integer primary key, name text not null,"
             " applied_at timestamptz not null default now())")
    for path in sorted(glob.glob(os.path.join(source_dir(), "migrations", "*.sql"))):
        name = os.path.basename(path)
        if int(name.split("_")[0]) >= 8:
            continue
        with open(path, encoding="utf-8") as f:
            db.query("begin;\n" + f.read() + "\n;insert into voidrecon.schema_migrations"
                     " (version, name) values (:'p1', :'p2');\ncommit;", int(name[:4]), name)
    db.query("insert into voidrecon.void_cases (order_no, void_code, status)"
             " values ('OLD', 'V1', 2);"
             "insert into voidrecon.void_case_events (order_no, void_code, source,"
             " reported_status, to_status, outcome)"
             " select 'OLD', 'V1', 'webhook', 2, 2, 'applied' from generate_series(1, 3)")
    before = db.scalar("select pg_relation_filenode('voidrecon.void_case_events')")
    p = subprocess.run([voidrecon_bin(), "migrate"], capture_output=True, text=True, timeout=60,
                       env=child_env({"VOIDRECON_DATABASE_URL": db.url}))
    eq(p.returncode, 0, p.stderr)
    eq(db.scalar("select pg_relation_filenode('voidrecon.void_case_events')"), before,
       "void_case_events was not rewritten")
    eq(db.query("select tx::text, reconciled from voidrecon.void_case_events"),
       [["0", None]] * 3)
    svc = service(db)
    register(svc, "NEW")
    got, _ = catch_up(svc, 0, limit=10)
    eq([(e["order_no"], e["reconciled"]) for e in got],
       [("OLD", None)] * 3 + [("NEW", False)])
