/* The change feed: the events that changed a case, read in feed order with a cursor
 * (voidrecon.case_feed of migration 0008), and a listener of NOTIFY voidrecon_cases on a connection
 * of its own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

/* A listener that lost its connection, or could not get one, tries again after this. */
#define LISTEN_RETRY_MS 1000

/* case_feed lists only events whose transaction is older than every running one, in
 * (tx, id) order, so the page's last event is the cursor to pass back. */
static const char sql_events_list[] =
    "WITH page AS (SELECT * FROM voidrecon.case_feed($1::bigint, $2::int))"
    "SELECT json_build_object("
    "  'events', coalesce(json_agg(json_build_object("
    "      'id', id, 'order_no', order_no, 'void_code', void_code, 'source', source,"
    "      'reported_status', reported_status, 'from_status', from_status,"
    "      'to_status', to_status, 'status_name', voidrecon.void_status_name(to_status),"
    "      'outcome', outcome, 'reconciled', reconciled, 'delivery_id', delivery_id,"
    "      'message', message, 'at', at) ORDER BY tx, id), '[]'::json),"
    "  'next_after', coalesce((array_agg(id ORDER BY tx DESC, id DESC))[1], $1::bigint),"
    "  'more', count(*) = $2::int)::text,"
    "  $1::bigint = 0 OR EXISTS (SELECT 1 FROM voidrecon.void_case_events WHERE id = $1::bigint)"
    "  FROM page";

static const char sql_listen[] = "LISTEN voidrecon_cases";

/* ---- reading -------------------------------------------------------------------------------- */

struct feed_op {
    store_json_cb cb;
    void *arg;
    int64_t after;
};

static void events_read(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct feed_op *op = arg;
    char err[STORE_ERROR_BYTES] = "";
    const char *json = NULL;
    struct store_row row;

    (void)s;
    if (status != 0) {
        status = db_classify(res, status, "reading the change feed", err, sizeof(err));
    } else {
        store_row_init(&row, res, 0);
        json = store_row_text(&row, 0);
        bool known = store_row_bool(&row, 1);
        status = store_row_check(&row, "reading the change feed", err, sizeof(err));
        if (status == 0 && (json == NULL || !known)) {
            snprintf(err, sizeof(err), "reading the change feed: no event %lld",
                     (long long)op->after);
            status = VR_ENOENT;
            json = NULL;
        }
    }
    op->cb(status, json, err, op->arg);
    free(op);
}

void store_events_list(struct store *st, int64_t after, unsigned limit, store_json_cb cb, void *arg)
{
    struct feed_op *op = xcalloc(1, sizeof(*op));
    char a[24], lim[24];
    const char *params[2] = {store_i64_text(after, a, sizeof(a)), NULL};

    if (limit == 0)
        limit = STORE_DEFAULT_LIMIT;
    params[1] = store_u64_text(limit > STORE_MAX_LIMIT ? STORE_MAX_LIMIT : limit, lim, sizeof(lim));
    op->cb = cb;
    op->arg = arg;
    op->after = after;
    db_query(st->db, sql_events_list, 2, params, NULL, events_read, op);
}

/* ---- listening ------------------------------------------------------------------------------ */

struct store_listen {
    struct db *db;
    struct db_session *s; /* held while listening (or while LISTEN is under way) */
    uv_timer_t retry;
    store_listen_cb cb;
    void *arg;
    bool closing;
    int open; /* the timer and the pool, until both have closed */
    void (*done_cb)(void *arg);
    void *done_arg;
    char err[STORE_ERROR_BYTES];
};

static void listen_start(struct store_listen *l);

static void on_retry(uv_timer_t *t)
{
    listen_start(container_of(t, struct store_listen, retry));
}

/* Gives the connection back (it reconnects), says why, and tries again later. */
static void listen_failed(struct store_listen *l)
{
    if (l->s != NULL) {
        db_release(l->s);
        l->s = NULL;
    }
    if (l->closing)
        return;
    uv_timer_start(&l->retry, on_retry, LISTEN_RETRY_MS, 0);
    l->cb(VR_EUNAVAIL, NULL, l->err, l->arg);
}

static void notified(struct db_session *s, const char *channel, const char *payload, void *arg)
{
    struct store_listen *l = arg;

    (void)s;
    if (channel == NULL) {
        snprintf(l->err, sizeof(l->err), "listening for case changes: the connection was lost");
        listen_failed(l);
        return;
    }
    if (!l->closing && strcmp(channel, "voidrecon_cases") == 0)
        l->cb(0, payload, "", l->arg);
}

static void listening(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct store_listen *l = arg;

    if (status != 0) {
        (void)db_classify(res, status, "listening for case changes", l->err, sizeof(l->err));
        listen_failed(l);
        return;
    }
    db_session_watch(s, notified, l);
    /* Whatever was announced before this moment went by unheard: the reader reads now. */
    l->cb(0, NULL, "", l->arg);
}

static void listen_acquired(struct db_session *s, int status, void *arg)
{
    struct store_listen *l = arg;

    if (status != 0) {
        (void)db_classify(NULL, status, "listening for case changes", l->err, sizeof(l->err));
        listen_failed(l);
        return;
    }
    l->s = s;
    db_session_query(s, sql_listen, 0, NULL, NULL, listening, l);
}

static void listen_start(struct store_listen *l)
{
    if (!l->closing)
        db_acquire(l->db, listen_acquired, l);
}

int store_listen_cases(struct store *st, store_listen_cb cb, void *arg)
{
    struct store_listen *l;

    if (st->listen != NULL)
        return VR_ESTATE;
    l = xcalloc(1, sizeof(*l));
    if (db_new(&l->db, st->loop,
               &(struct db_config){
                   .conninfo = st->conninfo,
                   .pool_size = 1,
                   .query_timeout_ms = st->timeout_ms,
                   .acquire_timeout_ms = st->timeout_ms,
                   .max_waiters = 1,
                   .read_write = true, /* a standby delivers no notifications */
               }) != 0) {
        free(l);
        return VR_EINVAL;
    }
    uv_timer_init(st->loop, &l->retry);
    l->open = 2;
    l->cb = cb;
    l->arg = arg;
    st->listen = l;
    listen_start(l);
    return 0;
}

static void listen_part_closed(struct store_listen *l)
{
    void (*done_cb)(void *arg) = l->done_cb;
    void *done_arg = l->done_arg;

    if (--l->open > 0)
        return;
    free(l);
    done_cb(done_arg);
}

static void retry_closed(uv_handle_t *h)
{
    listen_part_closed(container_of((uv_timer_t *)h, struct store_listen, retry));
}

static void pool_closed(void *arg)
{
    listen_part_closed(arg);
}

void store_listen_close(struct store_listen *l, void (*done_cb)(void *arg), void *arg)
{
    l->closing = true;
    l->done_cb = done_cb;
    l->done_arg = arg;
    uv_close((uv_handle_t *)&l->retry, retry_closed);
    /* Closing first: the released connection then closes instead of reconnecting. */
    db_close(l->db, pool_closed, l);
    if (l->s != NULL) {
        db_release(l->s);
        l->s = NULL;
    }
}
