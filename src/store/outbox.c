/* The alert outbox's delivery side: leasing due alerts, and recording each attempt's result.
 * Alerts themselves are inserted by the statements that raise them (voids.c, webhooks.c,
 * polling.c), in the same transaction as their cause. */
#include <stdlib.h>

#include "store_int.h"

static const char sql_lease[] =
    "WITH due AS ("
    "  SELECT c.id FROM voidrecon.alerts AS c"
    "   WHERE c.delivered_at IS NULL AND c.next_attempt_at <= now()"
    "     AND (c.lease_until IS NULL OR c.lease_until < now())"
    "     AND (c.resolves_alert_id IS NULL OR EXISTS ("
    "           SELECT 1 FROM voidrecon.alerts AS r"
    "            WHERE r.id = c.resolves_alert_id AND r.delivered_at IS NOT NULL))"
    "   ORDER BY c.next_attempt_at, c.id LIMIT $1::int FOR UPDATE OF c SKIP LOCKED"
    ")"
    "UPDATE voidrecon.alerts AS a"
    "   SET lease_token = nextval('voidrecon.alert_lease_seq'),"
    "       lease_until = now() + $2::bigint * interval '1 millisecond',"
    "       attempts = a.attempts + 1, last_attempt_at = now()"
    "  FROM due WHERE a.id = due.id"
    " RETURNING a.id, a.kind, a.order_no, a.void_code, a.payload::text,"
    "           to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    "           a.lease_token, a.attempts, a.resolves_alert_id";

/* Both count the rows they changed: none means another process took the lease over. */
static const char sql_delivered[] =
    "WITH u AS ("
    "  UPDATE voidrecon.alerts SET delivered_at = now(), last_error = NULL, lease_token = NULL,"
    "         lease_until = NULL"
    "   WHERE id = $1::bigint AND lease_token = $2::bigint"
    "  RETURNING 1"
    ")"
    "SELECT count(*) FROM u";

static const char sql_failed[] =
    "WITH u AS ("
    "  UPDATE voidrecon.alerts SET last_error = $3::text, lease_token = NULL, lease_until = NULL,"
    "         next_attempt_at = now() + $4::bigint * interval '1 millisecond'"
    "   WHERE id = $1::bigint AND lease_token = $2::bigint"
    "  RETURNING 1"
    ")"
    "SELECT count(*) FROM u";

struct alerts_op {
    store_alerts_cb cb;
    void *arg;
};

static void alerts_leased(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct alerts_op *op = arg;
    char err[STORE_ERROR_BYTES] = "";
    struct store_alert_lease *leases = NULL;
    size_t n = 0;

    (void)s;
    if (status != 0) {
        status = db_classify(res, status, "leasing alerts", err, sizeof(err));
        goto out;
    }
    n = (size_t)PQntuples(res);
    leases = xcalloc(n, sizeof(*leases));
    for (size_t i = 0; i < n && status == 0; i++) {
        struct store_alert_lease *l = &leases[i];
        struct store_row row;

        store_row_init(&row, res, (int)i);
        l->alert.id = store_row_i64(&row, 0);
        l->alert.kind = store_row_text(&row, 1);
        l->alert.order_no = store_row_text(&row, 2);
        l->alert.void_code = store_row_text(&row, 3);
        l->alert.payload = store_row_text(&row, 4);
        l->alert.created_at = store_row_text(&row, 5);
        l->lease_token = store_row_i64(&row, 6);
        l->attempts = store_row_int(&row, 7);
        l->alert.resolves_id = store_row_i64(&row, 8);
        status = store_row_check(&row, "leasing alerts", err, sizeof(err));
    }
out:
    op->cb(status, err, status == 0 ? leases : NULL, status == 0 ? n : 0, op->arg);
    free(leases);
    free(op);
}

void store_alerts_lease(struct store *st, unsigned max, uint64_t lease_ms, store_alerts_cb cb,
                        void *arg)
{
    struct alerts_op *op = xcalloc(1, sizeof(*op));
    char limit[24], ms[24];
    const char *params[2] = {store_u64_text(max, limit, sizeof(limit)),
                             store_u64_text(lease_ms, ms, sizeof(ms))};

    op->cb = cb;
    op->arg = arg;
    db_query(st->db, sql_lease, 2, params, NULL, alerts_leased, op);
}

void store_alert_delivered(struct store *st, int64_t id, int64_t lease_token, store_count_cb cb,
                           void *arg)
{
    char ids[24], lease[24];
    const char *params[2] = {store_i64_text(id, ids, sizeof(ids)),
                             store_i64_text(lease_token, lease, sizeof(lease))};

    store_run_count(st, sql_delivered, 2, params, "recording a delivered alert", cb, arg);
}

void store_alert_failed(struct store *st, int64_t id, int64_t lease_token, const char *error,
                        uint64_t retry_ms, store_count_cb cb, void *arg)
{
    char ids[24], lease[24], delay[24];
    const char *params[4] = {store_i64_text(id, ids, sizeof(ids)),
                             store_i64_text(lease_token, lease, sizeof(lease)), error,
                             store_u64_text(retry_ms, delay, sizeof(delay))};

    store_run_count(st, sql_failed, 4, params, "recording a failed alert delivery", cb, arg);
}
