"""The harness itself: databases from the template, parameters, raw sockets, own clusters."""

import socket
import threading

from harness import Db, DbError, eq, own_cluster, raw, run

AWKWARD = "it's \"quoted\"\nsecond line \\ back\\slash :'p2' $1 ; drop table t; -- é ✓"


def test_database_is_cloned_from_the_migrated_template(db):
    eq(db.scalar("select count(*) from pg_namespace where nspname = 'voidrecon'"), "1")
    eq(db.scalar("select current_database()"), db.name)


def test_parameters_survive_quotes_newlines_and_psql_syntax(db):
    db.query("create table t (id int primary key, body text not null)")
    db.query("insert into t values (:'p1', :'p2')", 1, AWKWARD)
    eq(db.query("select id, body from t"), [["1", AWKWARD]])
    eq(db.scalar("select id from t where body = :'p1'", AWKWARD), "1")
    eq(db.scalar("select count(*) from t"), "1", "the injection attempt stayed a literal")


def test_rows_nulls_and_empty_strings(db):
    eq(db.query("select 1 where false"), [])
    eq(db.query("select null::text, '', 'a' union all select 'x', 'y', null order by 1 nulls first"),
       [[None, "", "a"], ["x", "y", None]])
    eq(db.scalar("select 1 where false"), None)
    eq(db.scalar("select ''"), "")


def test_bytes_and_json_parameters(db):
    eq(db.scalar("select encode(:'p1'::bytea, 'hex')", b"ab\x01"), "616201")
    eq(db.scalar("select (:'p1'::jsonb)->>'k'", {"k": "v'\n"}), "v'\n")


def test_sql_error_raises_with_the_message(db):
    try:
        db.query("select * from no_such_table")
    except DbError as e:
        assert "no_such_table" in str(e), str(e)
    else:
        raise AssertionError("no DbError")


def test_each_db_is_separate_and_drop_removes_it():
    a, b = Db(), Db()
    try:
        a.query("create table only_here (x int)")
        eq(b.scalar("select to_regclass('only_here') is null"), "t")
    finally:
        b.drop()
    eq(a.scalar("select count(*) from pg_database where datname = :'p1'", b.name), "0")
    a.drop()


def test_raw_returns_what_the_peer_sent_until_close():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def echo_once():
            conn, _ = listener.accept()
            with conn:
                data = b""
                while not data.endswith(b"\r\n\r\n"):
                    data += conn.recv(100)
                conn.sendall(b"echo:" + data)

        t = threading.Thread(target=echo_once)
        t.start()
        got = raw(listener.getsockname()[1], [b"GET / HTTP/1.1\r\n", b"\r\n"], delay=0.05)
        t.join()
    eq(got, b"echo:GET / HTTP/1.1\r\n\r\n")


def test_own_cluster_survives_stop_and_start():
    with own_cluster() as cluster:
        eq(cluster.query("select count(*) from pg_namespace where nspname = 'voidrecon'"), [["1"]])
        cluster.query("create table kept (x text)")
        cluster.query("insert into kept values (:'p1')", "before restart")
        port = cluster.port
        cluster.stop()
        try:
            cluster.query("select 1")
        except DbError:
            pass
        else:
            raise AssertionError("query answered while the cluster was stopped")
        cluster.start()
        eq(cluster.port, port)
        eq(cluster.query("select x from kept"), [["before restart"]])


if __name__ == "__main__":
    run()
