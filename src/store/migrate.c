/* Applies the embedded migrations, one transaction each, under an advisory lock; checks the
 * schema a server is about to use. Both over one short blocking connection, before any loop. */
#include "migrate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "log.h"
#include "mask.h"
#include "store_int.h"

/* Seconds a start-up connection may take. */
#define CONNECT_TIMEOUT_S "5"

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
static const char sql_has_table[] =
    "SELECT (to_regclass('voidrecon.schema_migrations') IS NOT NULL)::int";

/* The number that starts a file name; the embedding script only takes numbered files. */
static int version_of(const struct migration *m)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(m->name, &end, 10);
    if (errno != 0 || end == m->name || *end != '_' || v <= 0 || v > 1000000)
        vr_panic("migration %s: its name does not start with a version number", m->name);
    return (int)v;
}

int migrate_latest_version(void)
{
    return migrate_embedded_count ? version_of(&migrate_embedded[migrate_embedded_count - 1]) : 0;
}

/* The first line of a libpq message. */
static void first_line(char *out, size_t cap, const char *what, const char *msg)
{
    snprintf(out, cap, "%s: %s", what, msg);
    out[strcspn(out, "\n")] = '\0';
}

/* Server notices (e.g. "schema already exists, skipping") would break the JSON log stream. */
static void notice_to_log(void *arg, const char *msg)
{
    char line[256];

    (void)arg;
    first_line(line, sizeof(line), "notice", msg);
    log_debug("db_notice", "%s", line);
}

/* 0 when libpq can read conninfo; else VR_EINVAL with the reason in err. libpq's reason
 * quotes the piece it could not read, which may be a password: every quoted part is masked. */
static int check_conninfo(const char *conninfo, char *err, size_t errlen)
{
    char *why = NULL, masked[256];
    PQconninfoOption *opts;

    /* As PQconnectdbParams reads its expanded dbname: a bare name is a database name. */
    if (strchr(conninfo, '=') == NULL && strncmp(conninfo, "postgresql://", 13) != 0 &&
        strncmp(conninfo, "postgres://", 11) != 0)
        return 0;
    opts = PQconninfoParse(conninfo, &why);
    if (opts != NULL) {
        PQconninfoFree(opts);
        return 0;
    }
    mask_quoted(why ? why : "out of memory", masked, sizeof(masked));
    PQfreemem(why);
    first_line(err, errlen, "not a valid connection string or URI", masked);
    return VR_EINVAL;
}

/* A blocking connection, or NULL with the reason in err (never the connection string). */
static PGconn *connect_blocking(const char *conninfo, char *err, size_t errlen)
{
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *values[] = {conninfo, CONNECT_TIMEOUT_S, "voidrecon", NULL};
    PGconn *conn;

    if (check_conninfo(conninfo, err, errlen) != 0)
        return NULL;
    conn = PQconnectdbParams(keys, values, 1);

    if (conn != NULL && PQstatus(conn) == CONNECTION_OK) {
        PQsetNoticeProcessor(conn, notice_to_log, NULL);
        return conn;
    }
    first_line(err, errlen, "cannot connect to the database",
               conn ? PQerrorMessage(conn) : "out of memory");
    PQfinish(conn);
    return NULL;
}

/* Runs sql (which may hold several statements) and checks it succeeded. */
static int run(PGconn *conn, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int r = 0;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        first_line(err, errlen, what, PQresultErrorMessage(res));
        r = VR_EDB;
    }
    PQclear(res);
    return r;
}

/* The one number of a one-row, one-column answer. */
static int read_int(PGconn *conn, const char *sql, int *out, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, sql);
    struct store_row row;
    int r = 0;

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        first_line(err, errlen, "reading the schema version", PQresultErrorMessage(res));
        r = VR_EDB;
    } else {
        store_row_init(&row, res, 0);
        *out = store_row_int(&row, 0);
        r = store_row_check(&row, "reading the schema version", err, errlen);
    }
    PQclear(res);
    return r;
}

/* The applied version (0 for a database without voidrecon's schema). */
static int read_version(PGconn *conn, int *version, char *err, size_t errlen)
{
    int has_table = 0, r;

    *version = 0;
    if ((r = read_int(conn, sql_has_table, &has_table, err, errlen)) != 0)
        return r;
    if (has_table)
        return read_int(conn, store_sql_schema_version, version, err, errlen);
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
        first_line(err, errlen, m->name, PQresultErrorMessage(res));
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

static int apply_pending(PGconn *conn, int *applied, char *err, size_t errlen)
{
    int version = 0, r;

    if ((r = run(conn, sql_lock, "taking the migration lock", err, errlen)) != 0)
        return r;
    /* Under the lock, so that two concurrent runs do not both apply the same file. */
    if ((r = run(conn, sql_bootstrap, "creating voidrecon.schema_migrations", err, errlen)) != 0)
        goto out;
    if ((r = read_int(conn, store_sql_schema_version, &version, err, errlen)) != 0)
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

int migrate_run(const char *conninfo, int *applied, int *version, char *err, size_t errlen)
{
    PGconn *conn = connect_blocking(conninfo, err, errlen);
    int r;

    *applied = *version = 0;
    if (conn == NULL)
        return VR_EUNAVAIL;
    r = apply_pending(conn, applied, err, errlen);
    if (r == 0)
        r = read_version(conn, version, err, errlen);
    PQfinish(conn);
    return r;
}

/* ---- status: what is applied, pending, or newer than this binary -------------------------- */

static const char sql_recorded[] =
    "SELECT version, name,"
    "       to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
    "  FROM voidrecon.schema_migrations ORDER BY version";

static struct migrate_entry *status_add(struct migrate_status *st, int version, const char *name)
{
    struct migrate_entry *e;

    st->entries = xrealloc(st->entries, (st->nentries + 1) * sizeof(*st->entries));
    e = &st->entries[st->nentries++];
    memset(e, 0, sizeof(*e));
    e->version = version;
    e->name = name;
    return e;
}

/* Merges the binary's migrations with the recorded rows of res (both in version order). */
static int status_merge(struct migrate_status *st, PGresult *res, char *err, size_t errlen)
{
    int nrows = res ? PQntuples(res) : 0, row = 0;
    size_t k = 0;

    while (k < migrate_embedded_count || row < nrows) {
        const struct migration *m = k < migrate_embedded_count ? &migrate_embedded[k] : NULL;
        struct store_row r;
        int version = 0;
        const char *name = NULL, *at = NULL;
        struct migrate_entry *e;

        if (row < nrows) {
            store_row_init(&r, res, row);
            version = store_row_int(&r, 0);
            name = store_row_text(&r, 1);
            at = store_row_text(&r, 2);
            if (store_row_check(&r, "reading voidrecon.schema_migrations", err, errlen) != 0)
                return VR_EDB;
        }
        if (m != NULL && (row >= nrows || version_of(m) <= version)) {
            e = status_add(st, version_of(m), m->name);
            e->known = m;
            k++;
            if (row < nrows && version_of(m) == version) {
                e->applied = true;
                snprintf(e->applied_at, sizeof(e->applied_at), "%s", at ? at : "");
                row++;
            } else {
                st->npending++;
            }
            continue;
        }
        e = status_add(st, version, name);
        e->applied = true;
        snprintf(e->applied_at, sizeof(e->applied_at), "%s", at ? at : "");
        st->nunknown++;
        row++;
    }
    return 0;
}

/* The recorded rows (NULL in *res when there is no voidrecon schema), in a read-only
 * transaction. */
static int status_query(PGconn *conn, PGresult **res, char *err, size_t errlen)
{
    int has_table = 0, r;

    *res = NULL;
    if ((r = run(conn, "BEGIN READ ONLY", "reading the migrations", err, errlen)) != 0)
        return r;
    if ((r = read_int(conn, sql_has_table, &has_table, err, errlen)) == 0 && has_table) {
        *res = PQexec(conn, sql_recorded);
        if (PQresultStatus(*res) != PGRES_TUPLES_OK) {
            first_line(err, errlen, "reading voidrecon.schema_migrations",
                       PQresultErrorMessage(*res));
            PQclear(*res);
            *res = NULL;
            r = VR_EDB;
        }
    }
    PQclear(PQexec(conn, "ROLLBACK"));
    return r;
}

int migrate_status_read(const char *conninfo, struct migrate_status *out, char *err, size_t errlen)
{
    PGconn *conn;
    PGresult *res = NULL;
    int r;

    memset(out, 0, sizeof(*out));
    out->binary_version = migrate_latest_version();
    if ((conn = connect_blocking(conninfo, err, errlen)) == NULL)
        return VR_EUNAVAIL;
    r = status_query(conn, &res, err, errlen);
    PQfinish(conn);
    if (r == 0)
        r = status_merge(out, res, err, errlen);
    /* The names point into res: keep copies that outlive it. */
    for (size_t i = 0; i < out->nentries; i++) {
        struct migrate_entry *e = &out->entries[i];

        if (e->applied)
            out->db_version = e->version > out->db_version ? e->version : out->db_version;
        if (e->known == NULL)
            e->name = xstrdup(e->name ? e->name : "");
    }
    PQclear(res);
    return r;
}

void migrate_status_free(struct migrate_status *st)
{
    for (size_t i = 0; i < st->nentries; i++) {
        if (st->entries[i].known == NULL)
            free((char *)st->entries[i].name);
    }
    free(st->entries);
    memset(st, 0, sizeof(*st));
}

int migrate_check_startup(const char *conninfo, bool *current)
{
    char err[512];
    PGconn *conn = connect_blocking(conninfo, err, sizeof(err));
    int version = 0, r;

    *current = false;
    if (conn == NULL) {
        log_warn("db_unreachable_at_start",
                 "starting anyway: webhooks get 503 until the database is reachable (%s)", err);
        return 0;
    }
    r = read_version(conn, &version, err, sizeof(err));
    PQfinish(conn);
    if (r != 0) {
        log_warn("schema_check_failed", "%s", err);
        return 0;
    }
    if (version < migrate_latest_version()) {
        log_error("schema_behind",
                  "database schema is at version %d, this voidrecon needs %d: run voidrecon "
                  "migrate ('voidrecon migrate --status' lists what is pending)",
                  version, migrate_latest_version());
        return VR_EBEHIND;
    }
    *current = true;
    return 0;
}
