/* Polling's side of the store: leasing due cases, recording failed polls, flagging cases that
 * stay open too long. */
#include <stdlib.h>

#include "store_int.h"

/* SKIP LOCKED lets several processes lease at once without waiting for each other; a lease
 * that outlives its process expires at lease_until. The token bucket's row is locked first, so
 * that leases of every process together keep to $3 per second (one second's worth at most in a
 * burst); FOR UPDATE reads its latest version even after waiting for another process's lease.
 * While an atlas_failing incident is open, one probe at a time is leased, when due, and the
 * next one moves away: from $4 ms doubling up to $5 ms. One row always comes back, carrying the
 * circuit's state; its case fields are NULL when nothing was leased. */
static const char sql_lease_due[] =
    "WITH b AS ("
    "  SELECT tokens, refilled_at FROM voidrecon.poll_budget WHERE id FOR UPDATE"
    "), inc AS ("
    "  SELECT id, next_probe_at, probes, opened_at FROM voidrecon.incidents"
    "   WHERE kind = 'atlas_failing' AND closed_at IS NULL FOR UPDATE"
    "), avail AS ("
    "  SELECT least($3::float8, b.tokens + $3::float8 * greatest(0, extract(epoch FROM"
    "                                                  now() - b.refilled_at)))::float8 AS t"
    "    FROM b"
    "), lim AS ("
    "  SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM inc) THEN least($1::int, floor(a.t)::int)"
    "              WHEN (SELECT next_probe_at <= now() FROM inc) THEN least(1, floor(a.t)::int)"
    "              ELSE 0 END AS n"
    "    FROM avail a"
    "), due AS ("
    "  SELECT order_no, void_code FROM voidrecon.void_cases"
    "   WHERE next_poll_at <= now() AND (lease_until IS NULL OR lease_until < now())"
    "   ORDER BY next_poll_at"
    "   LIMIT (SELECT greatest(n, 0) FROM lim)"
    "   FOR UPDATE SKIP LOCKED"
    "), leased AS ("
    "  UPDATE voidrecon.void_cases AS v"
    "     SET lease_token = nextval('voidrecon.poll_lease_seq'),"
    "         lease_until = now() + $2::bigint * interval '1 millisecond'"
    "    FROM due WHERE v.order_no = due.order_no AND v.void_code = due.void_code"
    "  RETURNING v.order_no, v.void_code, v.version, v.lease_token, v.polls, v.poll_failures,"
    "            v.poll_failures > 0 AND v.last_poll_for_good AS for_good"
    "), spent AS ("
    "  UPDATE voidrecon.poll_budget AS pb"
    "     SET tokens = (SELECT t FROM avail) - (SELECT count(*) FROM leased),"
    "         refilled_at = greatest(pb.refilled_at, now())"
    "   WHERE pb.id"
    "  RETURNING 1"
    "), probe AS ("
    "  UPDATE voidrecon.incidents AS i"
    "     SET probes = i.probes + 1,"
    "         next_probe_at = now() + least($5::bigint, $4::bigint * (2 ^ least(i.probes, 30))"
    "                                                   ::bigint) * interval '1 millisecond'"
    "   WHERE i.id = (SELECT id FROM inc) AND EXISTS (SELECT 1 FROM leased)"
    "  RETURNING 1"
    ")"
    "SELECT l.order_no, l.void_code, l.version, l.lease_token, l.polls, l.poll_failures,"
    "       l.for_good, EXISTS (SELECT 1 FROM inc), EXISTS (SELECT 1 FROM probe),"
    "       (SELECT extract(epoch FROM opened_at)::bigint FROM inc),"
    "       (SELECT count(*) FROM spent)"
    "  FROM (SELECT 1) AS one LEFT JOIN leased AS l ON true";

/* $5 is the failure count that raises poll_failing (0: none): reached once per run of
 * failures, and raised (with its alert) only when it is not waiting for a person already. $7
 * marks a failure no retry changes. The case's row lock orders this against an
 * acknowledgement; pre reads the set before it. */
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
    "         last_poll_for_good = $7::boolean,"
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
    struct store_lease_batch batch = {0};
    int rows = 0;

    (void)s;
    if (status != 0) {
        status = db_classify(res, status, "leasing due cases", err, sizeof(err));
        goto out;
    }
    rows = PQntuples(res);
    leases = xcalloc((size_t)rows + 1, sizeof(*leases));
    for (int i = 0; i < rows && status == 0; i++) {
        struct store_row row;
        struct store_lease *l = &leases[batch.n];

        store_row_init(&row, res, i);
        batch.circuit_open = store_row_bool(&row, 7);
        batch.probe = batch.probe || store_row_bool(&row, 8);
        batch.circuit_since_s = store_row_i64(&row, 9);
        if (!store_row_null(&row, 0)) {
            l->order_no = store_row_text(&row, 0);
            l->void_code = store_row_text(&row, 1);
            l->version = store_row_i64(&row, 2);
            l->lease_token = store_row_i64(&row, 3);
            l->polls = store_row_int(&row, 4);
            l->poll_failures = store_row_int(&row, 5);
            l->failed_for_good = store_row_bool(&row, 6);
            batch.n++;
        }
        status = store_row_check(&row, "leasing due cases", err, sizeof(err));
    }
    batch.leases = leases;
out:
    op->cb(status, err, status == 0 ? &batch : NULL, op->arg);
    free(leases);
    free(op);
}

void store_lease_due(struct store *st, const struct store_lease_rules *r, store_lease_cb cb,
                     void *arg)
{
    struct lease_op *op = xcalloc(1, sizeof(*op));
    char limit[24], ms[24], rps[24], probe[24], probe_max[24];
    const char *params[5] = {store_u64_text(r->max, limit, sizeof(limit)),
                             store_u64_text(r->lease_ms, ms, sizeof(ms)),
                             store_u64_text(r->max_rps, rps, sizeof(rps)),
                             store_u64_text(r->probe_ms, probe, sizeof(probe)),
                             store_u64_text(r->probe_max_ms, probe_max, sizeof(probe_max))};

    op->cb = cb;
    op->arg = arg;
    db_query(st->db, sql_lease_due, 5, params, NULL, leased, op);
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
                       unsigned failures_alert, bool for_good, store_done_cb cb, void *arg)
{
    struct store_op *op = store_op_new(st, NULL, cb, arg);
    char delay[24], threshold[24], lease[24];
    const char *params[7] = {order_no,
                             void_code,
                             error,
                             store_u64_text(retry_ms, delay, sizeof(delay)),
                             store_u64_text(failures_alert, threshold, sizeof(threshold)),
                             store_i64_text(lease_token, lease, sizeof(lease)),
                             for_good ? "true" : "false"};

    db_query(st->db, sql_poll_failed, 7, params, NULL, poll_failure_written, op);
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
