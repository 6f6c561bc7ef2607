/* Polling's side of the store: leasing due cases, recording failed polls, flagging cases that
 * stay open too long. */
#include <stdlib.h>

#include "store_int.h"

/* SKIP LOCKED lets several processes lease at once without waiting for each other; a lease
 * that outlives its process expires at lease_until. */
static const char sql_lease_due[] =
    "WITH due AS ("
    "  SELECT order_no, void_code FROM voidrecon.void_cases"
    "   WHERE next_poll_at <= now() AND (lease_until IS NULL OR lease_until < now())"
    "   ORDER BY next_poll_at"
    "   LIMIT $1::int"
    "   FOR UPDATE SKIP LOCKED"
    ")"
    "UPDATE voidrecon.void_cases AS v"
    "   SET lease_token = nextval('voidrecon.poll_lease_seq'),"
    "       lease_until = now() + $2::bigint * interval '1 millisecond'"
    "  FROM due WHERE v.order_no = due.order_no AND v.void_code = due.void_code"
    " RETURNING v.order_no, v.void_code, v.version, v.lease_token, v.polls, v.poll_failures";

/* $5 is the failure count that raises poll_failing: reached once per run of failures, and
 * raised (with its alert) only when it is not waiting for a person already. The case's row
 * lock orders this against an acknowledgement; pre reads the set before it. */
static const char sql_poll_failed[] =
    "WITH pre AS ("
    "  SELECT v.poll_failures + 1 = $5::int AND NOT EXISTS ("
    "             SELECT 1 FROM voidrecon.case_followups f"
    "              WHERE f.order_no = v.order_no AND f.void_code = v.void_code"
    "                AND f.reason = 'poll_failing') AS raise"
    "    FROM voidrecon.void_cases v"
    "   WHERE v.order_no = $1::text AND v.void_code = $2::text AND v.lease_token = $6::bigint"
    "), upd AS ("
    "  UPDATE voidrecon.void_cases AS v"
    "     SET poll_failures = v.poll_failures + 1, last_polled_at = now(),"
    "         last_poll_error = $3::text, lease_token = NULL, lease_until = NULL,"
    "         next_poll_at = CASE WHEN v.next_poll_at IS NULL THEN NULL"
    "                        ELSE now() + $4::bigint * interval '1 millisecond' END,"
    "         needs_followup = v.needs_followup OR pre.raise,"
    "         followup_reason = CASE WHEN pre.raise THEN voidrecon.followup_top("
    "                               v.needs_followup, v.followup_reason, 'poll_failing')"
    "                           ELSE v.followup_reason END,"
    "         followup_acked_at = CASE WHEN pre.raise THEN NULL ELSE v.followup_acked_at END,"
    "         updated_at = CASE WHEN pre.raise THEN now() ELSE v.updated_at END,"
    "         version = v.version + CASE WHEN pre.raise THEN 1 ELSE 0 END"
    "    FROM pre"
    "   WHERE v.order_no = $1::text AND v.void_code = $2::text AND v.lease_token = $6::bigint"
    "  RETURNING v.poll_failures, v.status, pre.raise"
    "), a AS ("
    "  INSERT INTO voidrecon.alerts (kind, order_no, void_code, payload)"
    "  SELECT 'void_poll_failing', $1::text, $2::text, jsonb_build_object("
    "             'kind', 'void_poll_failing', 'order_no', $1::text, 'void_code', $2::text,"
    "             'status', upd.status, 'poll_failures', upd.poll_failures,"
    "             'message', $3::text, 'followup_reason', 'poll_failing', 'raised_at', now())"
    "    FROM upd WHERE upd.raise"
    "  RETURNING id"
    "), f AS ("
    "  INSERT INTO voidrecon.case_followups (order_no, void_code, reason, alert_id)"
    "  SELECT $1::text, $2::text, 'poll_failing', (SELECT id FROM a) FROM upd WHERE upd.raise"
    "  ON CONFLICT DO NOTHING"
    ")"
    "SELECT upd.poll_failures, (SELECT id FROM a) FROM upd";

/* The case keeps its failure count and error: the wait was asked for by Atlas, not caused by
 * the case. A schedule already later than the wait stays. */
static const char sql_poll_deferred[] =
    "WITH upd AS ("
    "  UPDATE voidrecon.void_cases AS v"
    "     SET lease_token = NULL, lease_until = NULL,"
    "         next_poll_at = CASE WHEN v.next_poll_at IS NULL THEN NULL"
    "                        ELSE greatest(v.next_poll_at,"
    "                                      now() + $3::bigint * interval '1 millisecond') END"
    "   WHERE v.order_no = $1::text AND v.void_code = $2::text AND v.lease_token = $4::bigint"
    "  RETURNING 1"
    ")"
    "SELECT count(*) FROM upd";

/* A stuck case changes its follow-up, so its version moves like any other flag's would. */
static const char sql_flag_stuck[] =
    "WITH s AS ("
    "  UPDATE voidrecon.void_cases AS v"
    "     SET needs_followup = true,"
    "         followup_reason = voidrecon.followup_top(v.needs_followup, v.followup_reason,"
    "                                                  'stuck'),"
    "         followup_acked_at = NULL, stuck_flagged_at = now(), updated_at = now(),"
    "         version = v.version + 1"
    "   WHERE (v.order_no, v.void_code) IN ("
    "           SELECT order_no, void_code FROM voidrecon.void_cases"
    "            WHERE is_open AND stuck_flagged_at IS NULL"
    "              AND created_at <= now() - $1::bigint * interval '1 millisecond'"
    "            ORDER BY created_at LIMIT $2::int FOR UPDATE SKIP LOCKED)"
    "     AND v.is_open AND v.stuck_flagged_at IS NULL"
    "  RETURNING v.order_no, v.void_code, v.status, v.created_at"
    "), a AS ("
    "  INSERT INTO voidrecon.alerts (kind, order_no, void_code, payload)"
    "  SELECT 'void_stuck', s.order_no, s.void_code, jsonb_build_object("
    "             'kind', 'void_stuck', 'order_no', s.order_no, 'void_code', s.void_code,"
    "             'status', s.status, 'open_since', s.created_at,"
    "             'followup_reason', 'stuck', 'raised_at', now())"
    "    FROM s"
    "  RETURNING id, order_no, void_code"
    "), f AS ("
    "  INSERT INTO voidrecon.case_followups (order_no, void_code, reason, alert_id)"
    "  SELECT a.order_no, a.void_code, 'stuck', a.id FROM a"
    "  ON CONFLICT DO NOTHING"
    ")"
    "SELECT count(*) FROM a";

struct lease_op {
    store_lease_cb cb;
    void *arg;
};

static void leased(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct lease_op *op = arg;
    char err[STORE_ERROR_BYTES] = "";
    struct store_lease *leases = NULL;
    size_t n = 0;

    (void)s;
    if (status != 0) {
        status = db_classify(res, status, "leasing due cases", err, sizeof(err));
        goto out;
    }
    n = (size_t)PQntuples(res);
    leases = xcalloc(n, sizeof(*leases));
    for (size_t i = 0; i < n && status == 0; i++) {
        struct store_row row;

        store_row_init(&row, res, (int)i);
        leases[i].order_no = store_row_text(&row, 0);
        leases[i].void_code = store_row_text(&row, 1);
        leases[i].version = store_row_i64(&row, 2);
        leases[i].lease_token = store_row_i64(&row, 3);
        leases[i].polls = store_row_int(&row, 4);
        leases[i].poll_failures = store_row_int(&row, 5);
        status = store_row_check(&row, "leasing due cases", err, sizeof(err));
    }
out:
    op->cb(status, err, status == 0 ? leases : NULL, status == 0 ? n : 0, op->arg);
    free(leases);
    free(op);
}

void store_lease_due(struct store *st, unsigned max, uint64_t lease_ms, store_lease_cb cb,
                     void *arg)
{
    struct lease_op *op = xcalloc(1, sizeof(*op));
    char limit[24], ms[24];
    const char *params[2] = {store_u64_text(max, limit, sizeof(limit)),
                             store_u64_text(lease_ms, ms, sizeof(ms))};

    op->cb = cb;
    op->arg = arg;
    db_query(st->db, sql_lease_due, 2, params, NULL, leased, op);
}

static void poll_failure_written(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct store_op *op = arg;
    struct store_row row;

    (void)s;
    if (status != 0) {
        store_op_fail(op, res, status, "recording a failed poll");
        return;
    }
    if (PQntuples(res) == 0) {
        snprintf(op->error, sizeof(op->error), "the poll's lease was taken over");
        store_op_finish(op, VR_ESTATE);
        return;
    }
    store_row_init(&row, res, 0);
    op->result.outcome = "failed";
    op->result.alert_id = store_row_i64(&row, 1);
    store_op_finish(op,
                    store_row_check(&row, "recording a failed poll", op->error, sizeof(op->error)));
}

void store_poll_failed(struct store *st, const char *order_no, const char *void_code,
                       int64_t lease_token, const char *error, uint64_t retry_ms,
                       unsigned failures_alert, store_done_cb cb, void *arg)
{
    struct store_op *op = store_op_new(st, NULL, cb, arg);
    char delay[24], threshold[24], lease[24];
    const char *params[6] = {order_no,
                             void_code,
                             error,
                             store_u64_text(retry_ms, delay, sizeof(delay)),
                             store_u64_text(failures_alert, threshold, sizeof(threshold)),
                             store_i64_text(lease_token, lease, sizeof(lease))};

    db_query(st->db, sql_poll_failed, 6, params, NULL, poll_failure_written, op);
}

void store_poll_deferred(struct store *st, const char *order_no, const char *void_code,
                         int64_t lease_token, uint64_t delay_ms, store_count_cb cb, void *arg)
{
    char delay[24], lease[24];
    const char *params[4] = {order_no, void_code, store_u64_text(delay_ms, delay, sizeof(delay)),
                             store_i64_text(lease_token, lease, sizeof(lease))};

    store_run_count(st, sql_poll_deferred, 4, params, "deferring a poll", cb, arg);
}

void store_flag_stuck(struct store *st, uint64_t stuck_after_ms, unsigned max, store_count_cb cb,
                      void *arg)
{
    char ms[24], limit[24];
    const char *params[2] = {store_u64_text(stuck_after_ms, ms, sizeof(ms)),
                             store_u64_text(max, limit, sizeof(limit))};

    store_run_count(st, sql_flag_stuck, 2, params, "flagging stuck cases", cb, arg);
}
