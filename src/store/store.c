/* The store's lifecycle over its connection pool, what every operation shares (finishing with
 * an error line, checked decoding of result fields), and the health readings. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

#define STORE_DEFAULT_TIMEOUT_MS        10000
#define STORE_DEFAULT_WRITE_BATCH       128U
#define STORE_DEFAULT_WRITE_CONCURRENCY 2U

const char store_sql_schema_version[] =
    "SELECT coalesce((SELECT max(version) FROM voidrecon.schema_migrations), 0)";

/* A standby is in recovery; a primary can still refuse writes (default_transaction_read_only). */
static const char sql_probe[] =
    "SELECT coalesce((SELECT max(version) FROM voidrecon.schema_migrations), 0),"
    "       pg_is_in_recovery() OR current_setting('transaction_read_only')::boolean";

/* Partial indexes keep these cheap (void_cases_open_idx, void_cases_followup_idx,
 * alerts_due_idx, void_cases_next_poll_at_idx), but the open count still visits every open
 * case: which is why it runs on its own connection, once per refresh, never per scrape. */
static const char sql_gauges[] =
    "SELECT (SELECT count(*) FROM voidrecon.void_cases WHERE is_open),"
    "       (SELECT count(*) FROM voidrecon.void_cases WHERE needs_followup),"
    "       (SELECT count(*) FROM voidrecon.alerts WHERE delivered_at IS NULL),"
    "       (SELECT (coalesce(greatest(extract(epoch FROM now() - min(next_poll_at)), 0), 0)"
    "                * 1000)::bigint"
    "          FROM voidrecon.void_cases WHERE next_poll_at IS NOT NULL),"
    "       f.rejected, f.conflict, f.poll_failing, f.stuck,"
    /* The ages that tell a backlog which moves from one which is stuck; 0 when none. */
    "       (SELECT (coalesce(extract(epoch FROM now() - min(created_at)), 0) * 1000)::bigint"
    "          FROM voidrecon.alerts WHERE delivered_at IS NULL),"
    "       (coalesce(extract(epoch FROM now() - least("
    "           (SELECT min(raised_at) FROM voidrecon.case_followups),"
    "           (SELECT min(received_at) FROM voidrecon.order_cancellations"
    "             WHERE needs_followup))), 0) * 1000)::bigint"
    "  FROM (SELECT count(*) FILTER (WHERE reason = 'rejected') AS rejected,"
    "               count(*) FILTER (WHERE reason = 'conflict') AS conflict,"
    "               count(*) FILTER (WHERE reason = 'poll_failing') AS poll_failing,"
    "               count(*) FILTER (WHERE reason = 'stuck') AS stuck"
    "          FROM voidrecon.case_followups) AS f";

/* ---- lifecycle ------------------------------------------------------------------------------ */

int store_new(struct store **out, uv_loop_t *loop, const struct store_config *cfg, char *err,
              size_t errlen)
{
    struct store *st = xcalloc(1, sizeof(*st));
    uint64_t timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : STORE_DEFAULT_TIMEOUT_MS;
    unsigned pool;

    *out = NULL;
    if (db_new(&st->db, loop,
               &(struct db_config){
                   .conninfo = cfg->conninfo,
                   .pool_size = cfg->pool_size,
                   .query_timeout_ms = timeout_ms,
                   .acquire_timeout_ms = timeout_ms,
                   .read_write = true,
               }) != 0) {
        snprintf(err, errlen, "not a valid connection string or URI");
        free(st);
        return VR_EINVAL;
    }
    if (cfg->health_timeout_ms > 0 && db_new(&st->health_db, loop,
                                             &(struct db_config){
                                                 .conninfo = cfg->conninfo,
                                                 .pool_size = 1,
                                                 .query_timeout_ms = cfg->health_timeout_ms,
                                                 .acquire_timeout_ms = cfg->health_timeout_ms,
                                                 .max_waiters = 4,
                                                 .read_write = true,
                                             }) != 0) {
        /* Unreachable: the same conninfo was just accepted. */
        snprintf(err, errlen, "not a valid connection string or URI");
        db_close(st->db, NULL, NULL);
        free(st);
        return VR_EINVAL;
    }
    st->loop = loop;
    st->conninfo = xstrdup(cfg->conninfo);
    st->timeout_ms = timeout_ms;
    st->poll_first_ms = cfg->poll_first_ms;
    st->poll_confirm_ms = cfg->poll_confirm_ms;
    st->write_batch = cfg->write_batch > 0 ? cfg->write_batch : STORE_DEFAULT_WRITE_BATCH;
    st->write_concurrency =
        cfg->write_concurrency > 0 ? cfg->write_concurrency : STORE_DEFAULT_WRITE_CONCURRENCY;
    /* One connection stays for the rest of the work (leases, alerts, /v1). */
    pool = cfg->pool_size > 0 ? cfg->pool_size : 4;
    if (st->write_concurrency > (pool > 1 ? pool - 1 : 1))
        st->write_concurrency = pool > 1 ? pool - 1 : 1;
    *out = st;
    return 0;
}

static void pool_closed(void *arg)
{
    struct store *st = arg;
    void (*done_cb)(void *arg) = st->done_cb;
    void *done_arg = st->done_arg;

    free(st->conninfo);
    free(st);
    if (done_cb != NULL)
        done_cb(done_arg);
}

static void health_pool_closed(void *arg)
{
    struct store *st = arg;

    st->health_db = NULL;
    db_close(st->db, pool_closed, st);
}

static void close_pools(struct store *st)
{
    if (st->health_db != NULL)
        db_close(st->health_db, health_pool_closed, st);
    else
        db_close(st->db, pool_closed, st);
}

static void listener_closed(void *arg)
{
    struct store *st = arg;

    st->listen = NULL;
    close_pools(st);
}

void store_close(struct store *st, void (*done_cb)(void *arg), void *arg)
{
    st->done_cb = done_cb;
    st->done_arg = arg;
    if (st->listen != NULL)
        store_listen_close(st->listen, listener_closed, st);
    else
        close_pools(st);
}

/* ---- operations ----------------------------------------------------------------------------- */

struct store_op *store_op_new(struct store *st, const struct store_delivery *d, store_done_cb cb,
                              void *arg)
{
    struct store_op *op = xcalloc(1, sizeof(*op));

    op->st = st;
    op->d = d;
    op->cb = cb;
    op->arg = arg;
    return op;
}

void store_op_finish(struct store_op *op, int status)
{
    if (op->s != NULL)
        db_release(op->s);
    op->result.error = status != 0 ? op->error : "";
    op->cb(status, &op->result, op->arg);
    free(op);
}

void store_op_fail(struct store_op *op, const PGresult *res, int status, const char *what)
{
    store_op_finish(op, db_classify(res, status, what, op->error, sizeof(op->error)));
}

/* ---- decoding ------------------------------------------------------------------------------- */

void store_row_init(struct store_row *r, const PGresult *res, int row)
{
    r->res = res;
    r->row = row;
    r->bad_col = -1;
}

bool store_row_null(const struct store_row *r, int col)
{
    return PQgetisnull(r->res, r->row, col) != 0;
}

/* The field's text; NULL when it is NULL, when an earlier field did not decode, or when the
 * answer has no such field (which counts as not decoding). */
static const char *field(struct store_row *r, int col)
{
    if (r->bad_col >= 0)
        return NULL;
    if (r->row >= PQntuples(r->res) || col >= PQnfields(r->res)) {
        r->bad_col = col;
        return NULL;
    }
    if (PQgetisnull(r->res, r->row, col))
        return NULL;
    return PQgetvalue(r->res, r->row, col);
}

int64_t store_row_i64(struct store_row *r, int col)
{
    const char *s = field(r, col);
    char *end;
    long long v;

    if (s == NULL)
        return 0;
    errno = 0;
    v = strtoll(s, &end, 10);
    /* Exactly what PostgreSQL writes: an optional minus, digits, nothing around them. */
    if (errno != 0 || end == s || *end != '\0' || !isdigit((unsigned char)s[s[0] == '-'])) {
        r->bad_col = col;
        return 0;
    }
    return v;
}

int store_row_int(struct store_row *r, int col)
{
    int64_t v = store_row_i64(r, col);

    if (v < INT32_MIN || v > INT32_MAX) {
        r->bad_col = col;
        return 0;
    }
    return (int)v;
}

bool store_row_bool(struct store_row *r, int col)
{
    const char *s = field(r, col);

    if (s == NULL)
        return false;
    if (strcmp(s, "t") != 0 && strcmp(s, "f") != 0)
        r->bad_col = col;
    return strcmp(s, "t") == 0;
}

const char *store_row_text(struct store_row *r, int col)
{
    return field(r, col);
}

int store_row_check(const struct store_row *r, const char *what, char *err, size_t errlen)
{
    if (r->bad_col < 0)
        return 0;
    snprintf(err, errlen, "%s: column %d of the answer is not what voidrecon expects", what,
             r->bad_col + 1);
    return VR_EDB;
}

const char *store_i64_text(int64_t v, char *out, size_t cap)
{
    snprintf(out, cap, "%" PRId64, v);
    return out;
}

const char *store_delivery_replay_of(const struct store_delivery *d, char *out, size_t cap)
{
    return d->replay_of > 0 ? store_i64_text(d->replay_of, out, cap) : NULL;
}

const char *store_u64_text(uint64_t v, char *out, size_t cap)
{
    snprintf(out, cap, "%" PRIu64, v);
    return out;
}

struct count_op {
    store_count_cb cb;
    void *arg;
    const char *what;
};

static void counted(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct count_op *op = arg;
    char err[STORE_ERROR_BYTES] = "";
    int64_t count = 0;

    (void)s;
    if (status != 0) {
        status = db_classify(res, status, op->what, err, sizeof(err));
    } else {
        struct store_row row;

        store_row_init(&row, res, 0);
        count = store_row_i64(&row, 0);
        status = store_row_check(&row, op->what, err, sizeof(err));
    }
    op->cb(status, err, count, op->arg);
    free(op);
}

void store_run_count(struct store *st, const char *sql, int nparams, const char *const *params,
                     const char *what, store_count_cb cb, void *arg)
{
    struct count_op *op = xcalloc(1, sizeof(*op));

    op->cb = cb;
    op->arg = arg;
    op->what = what;
    db_query(st->db, sql, nparams, params, NULL, counted, op);
}

/* ---- health --------------------------------------------------------------------------------- */

struct reading {
    struct store *st;
    store_health_cb health_cb;
    store_version_cb version_cb;
    void *arg;
    bool gauges;
    struct db_session *s;
    struct store_health h;
    char err[STORE_ERROR_BYTES];
};

static struct reading *reading_new(struct store *st, store_health_cb hcb, store_version_cb vcb,
                                   void *arg)
{
    struct reading *rd = xcalloc(1, sizeof(*rd));

    rd->st = st;
    rd->health_cb = hcb;
    rd->version_cb = vcb;
    rd->arg = arg;
    return rd;
}

void store_pool_state(const struct store *st, struct store_pool_state *out)
{
    struct db_state ds;

    db_state(st->db, &ds);
    memset(out, 0, sizeof(*out));
    out->starting = ds.starting;
    out->up = ds.up;
    out->read_only = ds.read_only;
    snprintf(out->reason, sizeof(out->reason), "%s", ds.reason);
}

static void health_done(struct reading *rd, int status)
{
    if (rd->s != NULL)
        db_release(rd->s);
    rd->health_cb(status, rd->err, status == 0 ? &rd->h : NULL, rd->arg);
    free(rd);
}

static void gauges_read(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct reading *rd = arg;
    struct store_row row;

    (void)s;
    if (status != 0) {
        /* The check itself went well: it stands, the counts are what failed. */
        (void)db_classify(res, status, "reading the gauges", rd->err, sizeof(rd->err));
        rd->h.gauges_failed = true;
        health_done(rd, 0);
        return;
    }
    store_row_init(&row, res, 0);
    rd->h.open_cases = store_row_i64(&row, 0);
    rd->h.followup_cases = store_row_i64(&row, 1);
    rd->h.alert_backlog = store_row_i64(&row, 2);
    rd->h.poll_lag_ms = store_row_i64(&row, 3);
    for (int i = 0; i < VOIDCASE_FOLLOWUP_COUNT; i++)
        rd->h.followups[i] = store_row_i64(&row, 4 + i);
    rd->h.alert_oldest_ms = store_row_i64(&row, 4 + VOIDCASE_FOLLOWUP_COUNT);
    rd->h.followup_oldest_ms = store_row_i64(&row, 5 + VOIDCASE_FOLLOWUP_COUNT);
    rd->h.have_gauges = store_row_check(&row, "reading the gauges", rd->err, sizeof(rd->err)) == 0;
    rd->h.gauges_failed = !rd->h.have_gauges;
    health_done(rd, 0);
}

static void probed(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct reading *rd = arg;
    struct store_row row;

    if (status != 0) {
        health_done(rd,
                    db_classify(res, status, "checking the database", rd->err, sizeof(rd->err)));
        return;
    }
    store_row_init(&row, res, 0);
    rd->h.schema_version = store_row_int(&row, 0);
    rd->h.read_only = store_row_bool(&row, 1);
    status = store_row_check(&row, "checking the database", rd->err, sizeof(rd->err));
    if (status != 0) {
        health_done(rd, status);
        return;
    }
    /* Seen from another connection: the pool's own would learn it only from a failed write.
     * The health connection reconnects too, or it would keep looking at a demoted server
     * while the pool has found the new primary. */
    db_set_read_only(rd->st->db, rd->h.read_only);
    if (rd->h.read_only && rd->st->health_db != NULL)
        db_set_read_only(rd->st->health_db, true);
    if (!rd->gauges) {
        health_done(rd, 0);
        return;
    }
    db_session_query(s, sql_gauges, 0, NULL, NULL, gauges_read, rd);
}

static void health_acquired(struct db_session *s, int status, void *arg)
{
    struct reading *rd = arg;

    if (status != 0) {
        health_done(rd,
                    db_classify(NULL, status, "checking the database", rd->err, sizeof(rd->err)));
        return;
    }
    rd->s = s;
    db_session_query(s, sql_probe, 0, NULL, NULL, probed, rd);
}

void store_read_health(struct store *st, bool gauges, store_health_cb cb, void *arg)
{
    struct reading *rd = reading_new(st, cb, NULL, arg);

    rd->gauges = gauges;
    db_acquire(st->health_db != NULL ? st->health_db : st->db, health_acquired, rd);
}

static void version_read(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct reading *rd = arg;
    char err[STORE_ERROR_BYTES] = "";
    struct store_row row;
    int version = 0;

    (void)s;
    if (status != 0) {
        status = db_classify(res, status, "reading the schema version", err, sizeof(err));
    } else {
        store_row_init(&row, res, 0);
        version = store_row_int(&row, 0);
        status = store_row_check(&row, "reading the schema version", err, sizeof(err));
    }
    rd->version_cb(status, err, version, rd->arg);
    free(rd);
}

void store_schema_version(struct store *st, store_version_cb cb, void *arg)
{
    db_query(st->db, store_sql_schema_version, 0, NULL, NULL, version_read,
             reading_new(st, NULL, cb, arg));
}
