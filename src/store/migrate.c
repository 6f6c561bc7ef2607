/* Applies the embedded migrations, one transaction each, under an advisory lock. */
#include "migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Any constant works as long as nothing else in the database uses it: "voidrecn" in ASCII. */
#define MIGRATE_LOCK_KEY "8534995104349385326"

static const char sql_bootstrap[] =
    "CREATE SCHEMA IF NOT EXISTS voidrecon;"
    "CREATE TABLE IF NOT EXISTS voidrecon.schema_migrations ("
    " version integer PRIMARY KEY,"
    " name text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now());"
    "COMMENT ON TABLE voidrecon.schema_migrations IS"
    " 'Migrations applied by voidrecon migrate, one row per file of migrations/.';"
    "COMMENT ON COLUMN voidrecon.schema_migrations.version IS"
    " 'The number that starts the migration''s file name.';"
    "COMMENT ON COLUMN voidrecon.schema_migrations.name IS 'The migration''s file name.';"
    "COMMENT ON COLUMN voidrecon.schema_migrations.applied_at IS 'When it was applied.';";
static const char sql_lock[] = "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")";
static const char sql_unlock[] = "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")";
static const char sql_record[] =
    "INSERT INTO voidrecon.schema_migrations (version, name) VALUES ($1, $2)";
const char migrate_sql_version[] =
    "SELECT coalesce((SELECT max(version) FROM voidrecon.schema_migrations), 0)";
static const char sql_has_table[] = "SELECT to_regclass('voidrecon.schema_migrations') IS NOT NULL";

static int version_of(const struct migration *m)
{
    return (int)strtol(m->name, NULL, 10);
}

int migrate_latest_version(void)
{
    return migrate_embedded_count ? version_of(&migrate_embedded[migrate_embedded_count - 1]) : 0;
}

/* Runs sql (which may hold several statements) and checks it succeeded. */
static int run(PGconn *conn, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int r = 0;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "%s: %s", what, PQresultErrorMessage(res));
        r = VR_EDB;
    }
    PQclear(res);
    return r;
}

static int read_int(PGconn *conn, const char *sql, int *out, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, sql);
    int r = 0;

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        snprintf(err, errlen, "reading the schema version: %s", PQresultErrorMessage(res));
        r = VR_EDB;
    } else {
        const char *v = PQgetvalue(res, 0, 0);
        *out = strcmp(v, "t") == 0 ? 1 : strcmp(v, "f") == 0 ? 0 : (int)strtol(v, NULL, 10);
    }
    PQclear(res);
    return r;
}

int migrate_check(PGconn *conn, int *version, char *err, size_t errlen)
{
    int has_table = 0, r;

    *version = 0;
    if ((r = read_int(conn, sql_has_table, &has_table, err, errlen)) != 0)
        return r;
    if (has_table && (r = read_int(conn, migrate_sql_version, version, err, errlen)) != 0)
        return r;
    if (*version < migrate_latest_version()) {
        snprintf(err, errlen,
                 "database schema is at version %d, this voidrecon needs %d: run voidrecon "
                 "migrate",
                 *version, migrate_latest_version());
        return VR_EBEHIND;
    }
    return 0;
}

static int apply_one(PGconn *conn, const struct migration *m, char *err, size_t errlen)
{
    char version[16];
    const char *params[2] = {version, m->name};
    PGresult *res;
    int r;

    snprintf(version, sizeof(version), "%d", version_of(m));
    if ((r = run(conn, "BEGIN", m->name, err, errlen)) != 0)
        return r;
    if ((r = run(conn, m->sql, m->name, err, errlen)) != 0)
        goto fail;
    res = PQexecParams(conn, sql_record, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        snprintf(err, errlen, "%s: recording it: %s", m->name, PQresultErrorMessage(res));
        PQclear(res);
        r = VR_EDB;
        goto fail;
    }
    PQclear(res);
    return run(conn, "COMMIT", m->name, err, errlen);
fail:
    PQclear(PQexec(conn, "ROLLBACK"));
    return r;
}

int migrate_apply(PGconn *conn, int *applied, char *err, size_t errlen)
{
    int version = 0, r;

    *applied = 0;
    if ((r = run(conn, sql_lock, "taking the migration lock", err, errlen)) != 0)
        return r;
    /* Under the lock, so that two concurrent runs do not both apply the same file. */
    if ((r = run(conn, sql_bootstrap, "creating voidrecon.schema_migrations", err, errlen)) != 0)
        goto out;
    if ((r = read_int(conn, migrate_sql_version, &version, err, errlen)) != 0)
        goto out;
    for (size_t i = 0; i < migrate_embedded_count; i++) {
        const struct migration *m = &migrate_embedded[i];
        if (version_of(m) <= version)
            continue;
        if ((r = apply_one(conn, m, err, errlen)) != 0)
            goto out;
        log_info("migration_applied", "applied migration %s", m->name);
        (*applied)++;
    }
out:
    PQclear(PQexec(conn, sql_unlock));
    return r;
}
