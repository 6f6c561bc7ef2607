"""voidrecon migrate --status and --dry-run on databases at an older version, at the current
one, and newer than the binary: what they list, their exit status, that they change nothing
and take no lock; and serve's refusal pointing at them."""

import glob
import os
import subprocess
import time

import pytest

from utils import Db, PsqlSession, Service, child_env, eq, source_dir, voidrecon_bin

# The advisory lock migrate takes (src/store/migrate.c, MIGRATE_LOCK_KEY).
MIGRATE_LOCK = 8534995104349385326
CURRENT, PENDING, NEWER = 0, 3, 4


def migration_files():
    return sorted(glob.glob(os.path.join(source_dir(), "migrations", "*.sql")))


def latest():
    return int(os.path.basename(migration_files()[-1])[:4])


def db_at(pg, version):
    """A new database whose schema is at version, migrated the way migrate does it."""
    db = Db(pg.url_base, "template0")
    db.query("create schema voidrecon; create table voidrecon.schema_migrations"
             " (version integer primary key, name text not null,"
             " applied_at timestamptz not null default now())")
    for path in migration_files():
        name = os.path.basename(path)
        if int(name[:4]) > version:
            break
        with open(path, encoding="utf-8") as f:
            db.query("begin;\n" + f.read() + "\n;insert into voidrecon.schema_migrations"
                     " (version, name) values (:'p1', :'p2');\ncommit;", int(name[:4]), name)
    return db


def migrate(db, *args, timeout=30):
    return subprocess.run([voidrecon_bin(), "migrate"] + list(args), capture_output=True,
                          text=True, timeout=timeout,
                          env=child_env({"VOIDRECON_DATABASE_URL": db.url}))


def rows(out):
    """The table of --status as (version, state, applied at, name) tuples."""
    lines = out.splitlines()
    eq(lines[0].split(), ["VERSION", "STATE", "APPLIED", "AT", "NAME"])
    got = []
    for line in lines[1:]:
        parts = line.split()
        if not parts or not parts[0].isdigit():
            break
        got.append((int(parts[0]), parts[1], parts[2], parts[3]))
    return got


def recorded(db):
    return [int(v) for (v,) in db.query("select version from voidrecon.schema_migrations"
                                        " order by version")]


def test_status_lists_applied_and_pending_and_exits_3_until_migrated(pg):
    with db_at(pg, 10) as db:
        p = migrate(db, "--status")
        eq(p.returncode, PENDING, p.stderr)
        names = [os.path.basename(f) for f in migration_files()]
        got = rows(p.stdout)
        eq([(v, s, n) for v, s, _, n in got],
           [(int(n[:4]), "applied" if int(n[:4]) <= 10 else "pending", n) for n in names])
        for v, state, at, _ in got:
            if state == "applied":
                assert at.startswith(time.strftime("%Y-", time.gmtime())) and at.endswith("Z"), at
            else:
                eq(at, "-")
        last = p.stdout.strip().splitlines()[-1]
        assert "version 10" in last and "%d migration(s) pending" % (latest() - 10) in last, last
        assert "voidrecon migrate" in last, last
        eq(recorded(db), list(range(1, 11)), "--status applied nothing")
        eq(migrate(db).returncode, 0)
        p = migrate(db, "--status")
        eq(p.returncode, CURRENT, p.stdout + p.stderr)
        eq({s for _, s, _, _ in rows(p.stdout)}, {"applied"})
        assert "schema at version %d: current" % latest() in p.stdout, p.stdout


def test_dry_run_prints_each_pending_migration_and_applies_none(pg):
    with db_at(pg, 6) as db:
        p = migrate(db, "--dry-run")
        eq(p.returncode, PENDING, p.stderr)
        pending = [f for f in migration_files() if int(os.path.basename(f)[:4]) > 6]
        at = -1
        for path in pending:
            name = os.path.basename(path)
            with open(path, encoding="utf-8") as f:
                sql = f.read()
            head = "-- migration %s (version %d)" % (name, int(name[:4]))
            assert head in p.stdout, head
            assert p.stdout.index(head) > at, "in the order migrate applies them"
            at = p.stdout.index(head)
            assert sql.strip() in p.stdout, "the whole SQL of " + name
        assert "0006_" not in p.stdout, "an applied migration is not shown"
        assert "nothing was applied" in p.stdout
        eq(recorded(db), list(range(1, 7)), "the recorded version is unchanged")
        eq(db.scalar("select to_regclass('voidrecon.incidents') is null"), "t",
           "the table migration 7 creates does not exist")
        eq(migrate(db).returncode, 0)
        eq(db.scalar("select to_regclass('voidrecon.incidents') is null"), "f")
        p = migrate(db, "--dry-run")
        eq(p.returncode, CURRENT, p.stdout)
        assert "-- migration" not in p.stdout and "current" in p.stdout, p.stdout


def test_a_database_without_a_schema_is_all_pending_and_left_untouched(pg):
    with Db(pg.url_base, "template0") as db:
        p = migrate(db, "--status")
        eq(p.returncode, PENDING, p.stderr)
        eq({s for _, s, _, _ in rows(p.stdout)}, {"pending"})
        eq(migrate(db, "--dry-run").returncode, PENDING)
        eq(db.scalar("select count(*) from pg_namespace where nspname = 'voidrecon'"), "0",
           "not even the migrations table was created")


def test_a_database_newer_than_the_binary_is_said_plainly_and_exits_4(pg):
    future = "%04d_from_the_future.sql" % (latest() + 1)
    with db_at(pg, latest()) as db:
        db.query("insert into voidrecon.schema_migrations (version, name) values (:'p1', :'p2')",
                 latest() + 1, future)
        p = migrate(db, "--status")
        eq(p.returncode, NEWER, p.stdout + p.stderr)
        row = [r for r in rows(p.stdout) if r[0] == latest() + 1]
        eq([(r[1], r[3]) for r in row], [("unknown", future)])
        line = [l for l in p.stdout.splitlines() if future in l][0]
        assert "not in this binary" in line, line
        assert "NEWER than this binary" in p.stdout, p.stdout
        p = migrate(db, "--dry-run")
        eq(p.returncode, NEWER, p.stdout)
        assert "NEWER than this binary" in p.stdout and "-- migration" not in p.stdout, p.stdout
        eq(recorded(db)[-1], latest() + 1)


def test_status_and_dry_run_take_no_lock_and_run_beside_the_service(pg):
    """While another migrate holds the lock and a service runs, both answer at once."""
    with db_at(pg, latest()) as db, Service(db) as svc, PsqlSession(db.url) as holder:
        holder.send("select 'held', pg_advisory_lock(%d);\n" % MIGRATE_LOCK)
        holder.line_with("held")
        for args in (["--status"], ["--dry-run"]):
            p = migrate(db, *args, timeout=10)
            eq(p.returncode, CURRENT, p.stdout + p.stderr)
        eq(svc.get("/readyz")[0], 200)
        holder.finish()


def test_serve_refusing_an_old_schema_names_migrate_status(pg):
    with db_at(pg, latest() - 1) as db:
        p = subprocess.run([voidrecon_bin(), "serve"], capture_output=True, text=True, timeout=30,
                           env=child_env({"VOIDRECON_DATABASE_URL": db.url,
                                          "VOIDRECON_LISTEN": "127.0.0.1:0"}))
        eq(p.returncode, 1)
        assert "voidrecon migrate --status" in p.stderr, p.stderr


@pytest.mark.parametrize("args, says", [(["--status", "--dry-run"], "give one of them"),
                                        (["--status", "extra"], "unexpected argument")])
def test_bad_arguments_exit_2(pg, args, says):
    with db_at(pg, latest()) as db:
        p = migrate(db, *args)
        eq(p.returncode, 2)
        assert says in p.stderr, p.stderr


def test_help_names_the_flags_and_exit_statuses():
    p = subprocess.run([voidrecon_bin(), "migrate", "--help"], capture_output=True, text=True,
                       timeout=30, env=child_env())
    eq(p.returncode, 0)
    for text in ("--status", "--dry-run", "3 migrations are pending", "4 the"):
        assert text in p.stdout, text
    p = subprocess.run([voidrecon_bin(), "--help"], capture_output=True, text=True, timeout=30,
                       env=child_env())
    assert "--status" in p.stdout and "--dry-run" in p.stdout, p.stdout
