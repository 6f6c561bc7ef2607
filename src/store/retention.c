/* Retention's side of the store: one prune batch, a short transaction of its own under an
 * advisory lock, so that one process at a time prunes and no batch holds row locks for long. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

static const char sql_begin[] = "BEGIN";
static const char sql_commit[] = "COMMIT";
static const char sql_try_lock[] = "SELECT pg_try_advisory_xact_lock(" STORE_PRUNE_LOCK_KEY ")";
/* Waits up to the session's lock_timeout, then fails with SQLSTATE 55P03. */
static const char sql_wait_lock[] = "SELECT pg_advisory_xact_lock(" STORE_PRUNE_LOCK_KEY "), true";

/* The batch reads max deliveries past the cursor, oldest first, and deletes those no waiting
 * follow-up refers to; the cursor moves past all it read, so the kept ones are read once a run.
 * ORDER BY (received_at, id) walks deliveries_received_at_idx (an incremental sort breaks the
 * ties). SKIP LOCKED: a delivery another transaction holds (a reference being added) is left
 * for the next run rather than waited for. The foreign keys set the referring rows' delivery_id
 * to NULL (through their delivery_id indexes). */
static const char sql_prune_deliveries[] =
    "WITH cur AS ("
    "  SELECT coalesce(timestamptz 'epoch' + $3::bigint * interval '1 microsecond',"
    "                  '-infinity'::timestamptz) AS at"
    "), scan AS ("
    "  SELECT d.id, d.received_at FROM voidrecon.deliveries d, cur"
    "   WHERE d.received_at < now() - $1::bigint * interval '1 millisecond'"
    "     AND d.received_at >= cur.at AND (d.received_at, d.id) > (cur.at, $4::bigint)"
    "   ORDER BY d.received_at, d.id LIMIT $2::int"
    "), victim AS ("
    "  SELECT d.id FROM voidrecon.deliveries d JOIN scan ON scan.id = d.id"
    "   WHERE NOT EXISTS (SELECT 1 FROM voidrecon.void_case_events e"
    "                       JOIN voidrecon.void_cases c"
    "                         ON c.order_no = e.order_no AND c.void_code = e.void_code"
    "                      WHERE e.delivery_id = d.id AND c.needs_followup)"
    "     AND NOT EXISTS (SELECT 1 FROM voidrecon.order_cancellations o"
    "                      WHERE o.delivery_id = d.id AND o.needs_followup)"
    "   FOR UPDATE OF d SKIP LOCKED"
    "), gone AS ("
    "  DELETE FROM voidrecon.deliveries d USING victim WHERE d.id = victim.id RETURNING d.id"
    "), last AS ("
    "  SELECT received_at, id FROM scan ORDER BY received_at DESC, id DESC LIMIT 1"
    ")"
    "SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM scan),"
    "       (SELECT (extract(epoch FROM received_at - timestamptz 'epoch') * 1000000)::bigint"
    "          FROM last),"
    "       (SELECT id FROM last)";

/* Every row read is deleted, so no cursor: void_case_events_no_change_idx holds only these
 * rows, oldest first, and its predicate is repeated here word for word so that it is used. */
static const char sql_prune_events[] =
    "WITH victim AS ("
    "  SELECT id FROM voidrecon.void_case_events"
    "   WHERE from_status = to_status AND outcome IN ('duplicate', 'stale')"
    "     AND NOT voidrecon.event_in_feed(in_feed, from_status, to_status)"
    "     AND at < now() - $1::bigint * interval '1 millisecond'"
    "   ORDER BY at, id LIMIT $2::int"
    "), gone AS ("
    "  DELETE FROM voidrecon.void_case_events e USING victim WHERE e.id = victim.id RETURNING 1"
    ")"
    "SELECT count(*), count(*), NULL::bigint, NULL::bigint FROM gone";

struct prune_op {
    struct store *st;
    enum store_prune_kind kind;
    uint64_t older_than_ms;
    unsigned max;
    bool wait;
    struct store_prune_cursor *cur;
    store_prune_cb cb;
    void *arg;
    struct db_session *s;
    struct store_prune_result res;
    char error[STORE_ERROR_BYTES];
};

static const char *what_of(const struct prune_op *op)
{
    return op->kind == STORE_PRUNE_DELIVERIES ? "pruning deliveries" : "pruning history rows";
}

/* Releases the session (rolling back a transaction left open), calls back and frees op. */
static void prune_finish(struct prune_op *op, int status)
{
    if (op->s != NULL)
        db_release(op->s);
    op->cb(status, status != 0 ? op->error : "", &op->res, op->arg);
    free(op);
}

static void prune_fail(struct prune_op *op, const PGresult *res, int status)
{
    prune_finish(op, db_classify(res, status, what_of(op), op->error, sizeof(op->error)));
}

static void committed(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct prune_op *op = arg;

    (void)s;
    if (status != 0) {
        op->res.removed = 0;
        prune_fail(op, res, status);
        return;
    }
    prune_finish(op, 0);
}

static void pruned(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct prune_op *op = arg;
    struct store_row row;
    int64_t read, at_us, id;
    bool have_last;

    if (status != 0) {
        prune_fail(op, res, status);
        return;
    }
    store_row_init(&row, res, 0);
    op->res.removed = store_row_i64(&row, 0);
    read = store_row_i64(&row, 1);
    have_last = !store_row_null(&row, 2);
    at_us = store_row_i64(&row, 2);
    id = store_row_i64(&row, 3);
    if ((status = store_row_check(&row, what_of(op), op->error, sizeof(op->error))) != 0) {
        op->res.removed = 0;
        prune_finish(op, status);
        return;
    }
    op->res.more = read >= (int64_t)op->max;
    if (have_last) {
        op->cur->started = true;
        op->cur->at_us = at_us;
        op->cur->id = id;
    }
    db_session_query(s, sql_commit, 0, NULL, NULL, committed, op);
}

static void run_batch(struct prune_op *op)
{
    char ms[24], limit[24], at[24], id[24];
    const char *params[4] = {store_u64_text(op->older_than_ms, ms, sizeof(ms)),
                             store_u64_text(op->max, limit, sizeof(limit)), NULL, NULL};

    if (op->kind == STORE_PRUNE_EVENTS) {
        db_session_query(op->s, sql_prune_events, 2, params, NULL, pruned, op);
        return;
    }
    params[2] = op->cur->started ? store_i64_text(op->cur->at_us, at, sizeof(at)) : NULL;
    params[3] = store_i64_text(op->cur->started ? op->cur->id : 0, id, sizeof(id));
    db_session_query(op->s, sql_prune_deliveries, 4, params, NULL, pruned, op);
}

static void locked(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct prune_op *op = arg;
    const char *state;
    struct store_row row;
    bool got;

    (void)s;
    if (status == VR_EDB && op->wait && (state = PQresultErrorField(res, PG_DIAG_SQLSTATE)) &&
        strcmp(state, "55P03") == 0) {
        op->res.busy = true; /* lock_timeout: another process kept the lock all that time */
        prune_finish(op, 0);
        return;
    }
    if (status != 0) {
        prune_fail(op, res, status);
        return;
    }
    store_row_init(&row, res, 0);
    got = store_row_bool(&row, op->wait ? 1 : 0);
    if ((status = store_row_check(&row, "taking the prune lock", op->error, sizeof(op->error))) !=
        0) {
        prune_finish(op, status);
        return;
    }
    if (!got) {
        op->res.busy = true;
        prune_finish(op, 0);
        return;
    }
    run_batch(op);
}

static void begun(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct prune_op *op = arg;

    if (status != 0) {
        prune_fail(op, res, status);
        return;
    }
    db_session_query(s, op->wait ? sql_wait_lock : sql_try_lock, 0, NULL, NULL, locked, op);
}

static void acquired(struct db_session *s, int status, void *arg)
{
    struct prune_op *op = arg;

    if (status != 0) {
        prune_fail(op, NULL, status);
        return;
    }
    op->s = s;
    db_session_query(s, sql_begin, 0, NULL, NULL, begun, op);
}

void store_prune_batch(struct store *st, enum store_prune_kind kind, uint64_t older_than_ms,
                       unsigned max, bool wait, struct store_prune_cursor *cur, store_prune_cb cb,
                       void *arg)
{
    struct prune_op *op = xcalloc(1, sizeof(*op));

    op->st = st;
    op->kind = kind;
    op->older_than_ms = older_than_ms;
    op->max = max;
    op->wait = wait;
    op->cur = cur;
    op->cb = cb;
    op->arg = arg;
    db_acquire(st->db, acquired, op);
}
