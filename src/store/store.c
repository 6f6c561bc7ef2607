/* Writes deliveries, void-case transitions, cancellations and alerts. A void report reads the
 * case, decides in C (voidcase_decide) and writes everything in one statement that only
 * succeeds if the case's version is still the one read; otherwise it reads again. */
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

/* Retries of a void report that lost a race with another writer of the same case. */
#define STORE_MAX_ATTEMPTS 8

static const char sql_delivery[] =
    "INSERT INTO voidrecon.deliveries (provider, event_type, remote_addr, body, outcome, reason)"
    " VALUES ($1::text, $2::text, $3::text, $4::bytea, $5::text, $6::text) RETURNING id";

static const char sql_case_select[] =
    "SELECT status, confirmed, CASE WHEN needs_followup THEN followup_reason END, version,"
    "       lease_token"
    "  FROM voidrecon.void_cases WHERE order_no = $1::text AND void_code = $2::text";

/* $19 NULL inserts a new case, otherwise the case is updated only if its version is still $19
 * (and, for a poll, its lease token still $23). No row back means another writer won: read
 * again. Deliveries and events reference rows written in the same statement; foreign keys are
 * checked at its end. $29 says the report carries an Atlas answer whose details are kept. */
static const char sql_void_write[] =
    "WITH ins AS ("
    "  INSERT INTO voidrecon.void_cases (order_no, void_code, status, confirmed, reconciled_at,"
    "                                    message, needs_followup, followup_reason, next_poll_at)"
    "  SELECT $1::text, $2::text, $12::smallint, $13::boolean,"
    "         CASE WHEN $21::boolean THEN now() END, $14::text, $15::text IS NOT NULL, $15::text,"
    "         CASE $17::text WHEN 'at' THEN now() + $18::bigint * interval '1 millisecond' END"
    "   WHERE $19::bigint IS NULL"
    "  ON CONFLICT DO NOTHING"
    "  RETURNING 1"
    "), upd AS ("
    "  UPDATE voidrecon.void_cases AS v"
    "     SET status = $12::smallint, confirmed = $13::boolean,"
    "         reconciled_at = CASE WHEN NOT $21::boolean THEN NULL"
    "                              WHEN v.reconciled_at IS NOT NULL AND v.status = $12::smallint"
    "                              THEN v.reconciled_at ELSE now() END,"
    "         message = CASE WHEN $7::text IN ('applied', 'duplicate')"
    "                        THEN coalesce($14::text, v.message) ELSE v.message END,"
    "         needs_followup = v.needs_followup OR $15::text IS NOT NULL,"
    "         followup_reason = coalesce($15::text, v.followup_reason),"
    "         followup_acked_at = CASE WHEN $15::text IS NULL THEN v.followup_acked_at END,"
    "         next_poll_at = CASE $17::text WHEN 'keep' THEN v.next_poll_at WHEN 'never' THEN NULL"
    "                        ELSE now() + $18::bigint * interval '1 millisecond' END,"
    "         updated_at = CASE WHEN $20::boolean THEN now() ELSE v.updated_at END,"
    "         last_seen_at = now(),"
    "         version = v.version + CASE WHEN $20::boolean THEN 1 ELSE 0 END,"
    "         polls = v.polls + CASE WHEN $23::bigint IS NULL THEN 0 ELSE 1 END,"
    "         poll_failures = CASE WHEN $23::bigint IS NULL THEN v.poll_failures ELSE 0 END,"
    "         last_polled_at = CASE WHEN $23::bigint IS NULL THEN v.last_polled_at ELSE now() END,"
    "         last_poll_error = CASE WHEN $23::bigint IS NULL THEN v.last_poll_error END,"
    "         lease_token = CASE WHEN $23::bigint IS NULL THEN v.lease_token END,"
    "         lease_until = CASE WHEN $23::bigint IS NULL THEN v.lease_until END,"
    "         cancel_reason = CASE WHEN $29::boolean THEN $24::text ELSE v.cancel_reason END,"
    "         void_method = CASE WHEN $29::boolean THEN $25::text ELSE v.void_method END,"
    "         expected_confirmation_date = CASE WHEN $29::boolean"
    "             THEN to_date($26::text, 'YYYYMMDD') ELSE v.expected_confirmation_date END,"
    "         expected_refund_date = CASE WHEN $29::boolean"
    "             THEN to_date($27::text, 'YYYYMMDD') ELSE v.expected_refund_date END,"
    "         atlas_void_order = CASE WHEN $29::boolean THEN $28::jsonb"
    "                            ELSE v.atlas_void_order END"
    "   WHERE v.order_no = $1::text AND v.void_code = $2::text AND v.version = $19::bigint"
    "     AND ($23::bigint IS NULL OR v.lease_token = $23::bigint)"
    "  RETURNING 1"
    "), c AS ("
    "  SELECT 1 FROM ins UNION ALL SELECT 1 FROM upd"
    "), d AS ("
    "  INSERT INTO voidrecon.deliveries (provider, event_type, remote_addr, body, outcome, reason)"
    "  SELECT $3::text, $4::text, $5::text, $6::bytea, $7::text, $8::text"
    "    FROM c WHERE $3::text IS NOT NULL"
    "  RETURNING id"
    "), e AS ("
    "  INSERT INTO voidrecon.void_case_events (order_no, void_code, source, reported_status,"
    "                                          from_status, to_status, outcome, delivery_id,"
    "                                          message)"
    "  SELECT $1::text, $2::text, $9::text, $10::smallint, $11::smallint, $12::smallint,"
    "         $7::text, (SELECT id FROM d), $14::text FROM c"
    "  RETURNING id"
    "), a AS ("
    "  INSERT INTO voidrecon.alerts (kind, order_no, void_code, payload)"
    "  SELECT $16::text, $1::text, $2::text, jsonb_build_object("
    "             'kind', $16::text, 'order_no', $1::text, 'void_code', $2::text,"
    "             'status', $12::int, 'status_name', $22::text, 'message', $14::text,"
    "             'source', $9::text, 'followup_reason', $15::text,"
    "             'cancel_reason', CASE WHEN $29::boolean THEN $24::text END, 'raised_at', now())"
    "    FROM c WHERE $16::text IS NOT NULL"
    "  RETURNING id"
    ")"
    "SELECT (SELECT id FROM d), (SELECT id FROM a), (SELECT id FROM e) FROM c";

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

/* $5 is the failure count that raises the alert: reached once per run of failures. */
static const char sql_poll_failed[] =
    "WITH upd AS ("
    "  UPDATE voidrecon.void_cases AS v"
    "     SET poll_failures = v.poll_failures + 1, last_polled_at = now(),"
    "         last_poll_error = $3::text, lease_token = NULL, lease_until = NULL,"
    "         next_poll_at = CASE WHEN v.next_poll_at IS NULL THEN NULL"
    "                        ELSE now() + $4::bigint * interval '1 millisecond' END,"
    "         needs_followup = v.needs_followup OR v.poll_failures + 1 = $5::int,"
    "         followup_reason = CASE WHEN v.poll_failures + 1 = $5::int THEN 'poll_failing'"
    "                           ELSE v.followup_reason END,"
    "         followup_acked_at = CASE WHEN v.poll_failures + 1 = $5::int THEN NULL"
    "                             ELSE v.followup_acked_at END,"
    "         updated_at = CASE WHEN v.poll_failures + 1 = $5::int THEN now()"
    "                      ELSE v.updated_at END,"
    "         version = v.version + CASE WHEN v.poll_failures + 1 = $5::int THEN 1 ELSE 0 END"
    "   WHERE v.order_no = $1::text AND v.void_code = $2::text AND v.lease_token = $6::bigint"
    "  RETURNING v.poll_failures, v.status"
    "), a AS ("
    "  INSERT INTO voidrecon.alerts (kind, order_no, void_code, payload)"
    "  SELECT 'void_poll_failing', $1::text, $2::text, jsonb_build_object("
    "             'kind', 'void_poll_failing', 'order_no', $1::text, 'void_code', $2::text,"
    "             'status', upd.status, 'poll_failures', upd.poll_failures,"
    "             'message', $3::text, 'followup_reason', 'poll_failing', 'raised_at', now())"
    "    FROM upd WHERE upd.poll_failures = $5::int"
    "  RETURNING id"
    ")"
    "SELECT upd.poll_failures, (SELECT id FROM a) FROM upd";

/* A stuck case changes its follow-up, so its version moves like any other flag's would. */
static const char sql_flag_stuck[] =
    "WITH s AS ("
    "  UPDATE voidrecon.void_cases AS v"
    "     SET needs_followup = true, followup_reason = 'stuck', followup_acked_at = NULL,"
    "         stuck_flagged_at = now(), updated_at = now(), version = v.version + 1"
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
    "  RETURNING id"
    ")"
    "SELECT count(*) FROM a";

/* The cancellation and its delivery point at each other's rows, so the delivery id is drawn
 * first; a repeat of a known order inserts nothing but the delivery, as a duplicate. */
static const char sql_cancellation[] =
    "WITH n AS ("
    "  SELECT nextval(pg_get_serial_sequence('voidrecon.deliveries', 'id')) AS id"
    "), oc AS ("
    "  INSERT INTO voidrecon.order_cancellations (provider, order_ref, error_code, error_message,"
    "                                             order_status, delivery_id, details, verified)"
    "  SELECT $1::text, $5::text, $6::text, $7::text, $8::text, n.id, $10::jsonb, $11::boolean"
    "    FROM n"
    "  ON CONFLICT (provider, order_ref) DO NOTHING"
    "  RETURNING id"
    "), d AS ("
    "  INSERT INTO voidrecon.deliveries (id, provider, event_type, remote_addr, body, outcome)"
    "  SELECT n.id, $1::text, $2::text, $3::text, $4::bytea,"
    "         CASE WHEN EXISTS (SELECT 1 FROM oc) THEN 'applied' ELSE 'duplicate' END"
    "    FROM n"
    "  RETURNING id, outcome"
    "), a AS ("
    "  INSERT INTO voidrecon.alerts (kind, order_no, payload)"
    "  SELECT 'order_cancelled', $5::text, jsonb_build_object("
    "             'kind', 'order_cancelled', 'provider', $1::text, 'order_no', $5::text,"
    "             'error_code', $6::text, 'error_message', $7::text, 'order_status', $8::text,"
    "             'details', $10::jsonb, 'verified', $11::boolean, 'raised_at', now())"
    "    FROM oc WHERE $9::boolean"
    "  RETURNING id"
    ")"
    "SELECT d.id, d.outcome, (SELECT id FROM a) FROM d";

struct store {
    struct db *db;
    struct store_config cfg;
};

/* One operation in progress. */
struct store_op {
    struct store *st;
    const struct store_delivery *d;
    const struct store_void_report *rep;
    store_done_cb cb;
    void *arg;
    struct db_session *s;
    int attempts;
    struct store_result result;
    const char *outcome; /* record_delivery */
    const char *reason;
};

struct store *store_new(struct db *db, const struct store_config *cfg)
{
    struct store *st = xcalloc(1, sizeof(*st));

    st->db = db;
    st->cfg = *cfg;
    return st;
}

void store_free(struct store *st)
{
    free(st);
}

static void op_finish(struct store_op *op, int status)
{
    if (op->s != NULL)
        db_release(op->s);
    op->cb(status, status == 0 ? &op->result : NULL, op->arg);
    free(op);
}

static int64_t field_i64(const PGresult *res, int col)
{
    if (PQgetisnull(res, 0, col))
        return 0;
    return strtoll(PQgetvalue(res, 0, col), NULL, 10);
}

static struct store_op *op_new(struct store *st, const struct store_delivery *d, store_done_cb cb,
                               void *arg)
{
    struct store_op *op = xcalloc(1, sizeof(*op));

    op->st = st;
    op->d = d;
    op->cb = cb;
    op->arg = arg;
    return op;
}

/* ---- plain deliveries --------------------------------------------------------------------- */

static void delivery_written(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct store_op *op = arg;

    (void)s;
    if (status != 0) {
        op_finish(op, db_classify(res, status, "storing a delivery"));
        return;
    }
    op->result.delivery_id = field_i64(res, 0);
    op->result.outcome = op->outcome;
    op_finish(op, 0);
}

void store_record_delivery(struct store *st, const struct store_delivery *d, const char *outcome,
                           const char *reason, store_done_cb cb, void *arg)
{
    struct store_op *op = op_new(st, d, cb, arg);
    const char *params[6] = {d->provider, d->event_type, d->remote_addr, d->body, outcome, reason};
    int lengths[6] = {-1, -1, -1, (int)d->body_len, -1, -1};

    op->outcome = outcome;
    db_query(st->db, sql_delivery, 6, params, lengths, delivery_written, op);
}

/* ---- void reports ------------------------------------------------------------------------- */

static void void_select(struct store_op *op);

static void void_written(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct store_op *op = arg;

    (void)s;
    if (status != 0) {
        op_finish(op, db_classify(res, status, "applying a void report"));
        return;
    }
    if (PQntuples(res) == 0) {
        /* Another writer changed the case between our read and our write. */
        if (++op->attempts < STORE_MAX_ATTEMPTS) {
            log_debug("store_retry", "order=%s void=%s: changed meanwhile, attempt %d",
                      op->rep->order_no, op->rep->void_code, op->attempts + 1);
            void_select(op);
            return;
        }
        log_warn("store_contention", "order=%s void=%s: gave up after %d attempts",
                 op->rep->order_no, op->rep->void_code, op->attempts);
        op_finish(op, VR_EUNAVAIL);
        return;
    }
    op->result.delivery_id = field_i64(res, 0);
    op->result.alert_id = field_i64(res, 1);
    metrics_transition(voidcase_source_name(op->rep->source), op->result.outcome);
    op_finish(op, 0);
}

static const char *poll_mode(const struct store *st, const struct store_void_report *rep,
                             enum voidcase_poll poll, uint64_t *delay_ms)
{
    *delay_ms = 0;
    switch (poll) {
    case VOIDCASE_POLL_KEEP:
        return "keep";
    case VOIDCASE_POLL_NEVER:
        return "never";
    case VOIDCASE_POLL_FIRST:
        *delay_ms = st->cfg.poll_first_ms;
        return "at";
    case VOIDCASE_POLL_CONFIRM:
        *delay_ms = st->cfg.poll_confirm_ms;
        return "at";
    case VOIDCASE_POLL_NEXT:
        *delay_ms = rep->next_poll_ms;
        return "at";
    case VOIDCASE_POLL_NOW:
        return "at";
    }
    return "keep";
}

/* Why a report was not applied, for the delivery's reason column. */
static void explain(const struct store_void_report *rep, const struct voidcase_state *cur,
                    const struct voidcase_decision *dec, char *out, size_t cap)
{
    out[0] = '\0';
    if (dec->outcome == VOIDCASE_STALE || dec->outcome == VOIDCASE_CONFLICT)
        snprintf(out, cap, "case was at %d (%s)%s", cur->status, voidcase_status_name(cur->status),
                 rep->source == VOIDCASE_SOURCE_POLL && dec->outcome == VOIDCASE_STALE
                     ? "; it changed while the poll was out"
                     : "");
}

static void void_decided(struct store_op *op, const struct voidcase_state *cur, int64_t version,
                         const struct voidcase_decision *dec)
{
    const struct store_void_report *rep = op->rep;
    const struct store_delivery *d = op->d;
    /* An answer superseded by a newer change may be older news: its details are not kept. */
    const struct atlas_void_order *ans = dec->outcome == VOIDCASE_STALE ? NULL : rep->answer;
    char reported[8], from[8], to[8], delay[24], ver[24], lease[24], reason[160];
    const char *mode;
    uint64_t delay_ms;
    bool changed, reconciled;
    int lengths[29];

    mode = poll_mode(op->st, rep, dec->poll, &delay_ms);
    changed = !cur->exists || dec->to_status != cur->status || dec->confirmed != cur->confirmed ||
              dec->followup_reason != NULL;
    reconciled = voidcase_is_reconciled(dec->to_status, dec->confirmed);
    snprintf(reported, sizeof(reported), "%d", rep->status);
    snprintf(from, sizeof(from), "%d", cur->status);
    snprintf(to, sizeof(to), "%d", dec->to_status);
    snprintf(delay, sizeof(delay), "%" PRIu64, delay_ms);
    snprintf(ver, sizeof(ver), "%" PRId64, version);
    snprintf(lease, sizeof(lease), "%" PRId64, rep->lease_token);
    explain(rep, cur, dec, reason, sizeof(reason));
    op->result.outcome = voidcase_outcome_name(dec->outcome);
    op->result.created = !cur->exists;
    op->result.to_status = dec->to_status;

    const char *params[29] = {
        rep->order_no,
        rep->void_code,
        d ? d->provider : NULL,
        d ? d->event_type : NULL,
        d ? d->remote_addr : NULL,
        d ? d->body : NULL,
        op->result.outcome,
        reason[0] ? reason : NULL,
        voidcase_source_name(rep->source),
        reported,
        cur->exists ? from : NULL,
        to,
        dec->confirmed ? "true" : "false",
        rep->message,
        dec->followup_reason,
        dec->alert_kind,
        mode,
        delay,
        cur->exists ? ver : NULL,
        changed ? "true" : "false",
        reconciled ? "true" : "false",
        voidcase_status_name(dec->to_status),
        rep->source == VOIDCASE_SOURCE_POLL ? lease : NULL,
        ans ? ans->cancel_reason : NULL,
        ans ? ans->void_method : NULL,
        ans ? ans->expected_confirmation_date : NULL,
        ans ? ans->expected_refund_date : NULL,
        ans ? ans->item_json : NULL,
        ans ? "true" : "false",
    };
    for (size_t i = 0; i < ARRAY_SIZE(lengths); i++)
        lengths[i] = -1;
    lengths[5] = d ? (int)d->body_len : -1;
    db_session_query(op->s, sql_void_write, 29, params, lengths, void_written, op);
}

static void void_selected(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct store_op *op = arg;
    const struct store_void_report *rep = op->rep;
    struct voidcase_state cur = {0};
    struct voidcase_decision dec;
    char pending[32] = "";
    int64_t version = 0, lease = 0;
    bool superseded;

    (void)s;
    if (status != 0) {
        op_finish(op, db_classify(res, status, "reading a void case"));
        return;
    }
    if (PQntuples(res) == 1) {
        cur.exists = true;
        cur.status = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
        cur.confirmed = PQgetvalue(res, 0, 1)[0] == 't';
        if (!PQgetisnull(res, 0, 2)) {
            snprintf(pending, sizeof(pending), "%s", PQgetvalue(res, 0, 2));
            cur.followup_reason = pending;
        }
        version = field_i64(res, 3);
        lease = field_i64(res, 4);
    }
    if (rep->source == VOIDCASE_SOURCE_POLL && (!cur.exists || lease != rep->lease_token)) {
        /* The lease expired and another process took the case: its answer counts, not ours. */
        op_finish(op, VR_ESTATE);
        return;
    }
    superseded = rep->source == VOIDCASE_SOURCE_POLL && rep->seen_version != version;
    if (voidcase_decide(&cur, rep->status, rep->source, superseded, &dec) != 0) {
        log_error("store_bad_status", "order=%s void=%s: status %d or stored %d is invalid",
                  rep->order_no, rep->void_code, rep->status, cur.status);
        op_finish(op, VR_EDB);
        return;
    }
    void_decided(op, &cur, version, &dec);
}

static void void_select(struct store_op *op)
{
    const char *params[2] = {op->rep->order_no, op->rep->void_code};

    db_session_query(op->s, sql_case_select, 2, params, NULL, void_selected, op);
}

static void void_acquired(struct db_session *s, int status, void *arg)
{
    struct store_op *op = arg;

    if (status != 0) {
        op_finish(op, db_classify(NULL, status, "acquiring a connection"));
        return;
    }
    op->s = s;
    void_select(op);
}

void store_apply_void(struct store *st, const struct store_delivery *d,
                      const struct store_void_report *rep, store_done_cb cb, void *arg)
{
    struct store_op *op = op_new(st, d, cb, arg);

    op->rep = rep;
    db_acquire(st->db, void_acquired, op);
}

/* ---- polling ------------------------------------------------------------------------------ */

struct lease_op {
    store_lease_cb cb;
    void *arg;
};

static void leased(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct lease_op *op = arg;
    struct store_lease *leases = NULL;
    size_t n = 0;

    (void)s;
    if (status != 0) {
        op->cb(db_classify(res, status, "leasing due cases"), NULL, 0, op->arg);
        free(op);
        return;
    }
    n = (size_t)PQntuples(res);
    if (n > 0)
        leases = xcalloc(n, sizeof(*leases));
    for (size_t i = 0; i < n; i++) {
        leases[i].order_no = PQgetvalue(res, (int)i, 0);
        leases[i].void_code = PQgetvalue(res, (int)i, 1);
        leases[i].version = strtoll(PQgetvalue(res, (int)i, 2), NULL, 10);
        leases[i].lease_token = strtoll(PQgetvalue(res, (int)i, 3), NULL, 10);
        leases[i].polls = (int)strtol(PQgetvalue(res, (int)i, 4), NULL, 10);
        leases[i].poll_failures = (int)strtol(PQgetvalue(res, (int)i, 5), NULL, 10);
    }
    op->cb(0, leases, n, op->arg);
    free(leases);
    free(op);
}

void store_lease_due(struct store *st, unsigned max, uint64_t lease_ms, store_lease_cb cb,
                     void *arg)
{
    struct lease_op *op = xcalloc(1, sizeof(*op));
    char limit[16], ms[24];
    const char *params[2] = {limit, ms};

    op->cb = cb;
    op->arg = arg;
    snprintf(limit, sizeof(limit), "%u", max);
    snprintf(ms, sizeof(ms), "%" PRIu64, lease_ms);
    db_query(st->db, sql_lease_due, 2, params, NULL, leased, op);
}

static void poll_failure_written(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct store_op *op = arg;

    (void)s;
    if (status != 0) {
        op_finish(op, db_classify(res, status, "recording a failed poll"));
        return;
    }
    if (PQntuples(res) == 0) {
        op_finish(op, VR_ESTATE); /* the lease was taken over */
        return;
    }
    op->result.outcome = "failed";
    op->result.alert_id = field_i64(res, 1);
    op_finish(op, 0);
}

void store_poll_failed(struct store *st, const char *order_no, const char *void_code,
                       int64_t lease_token, const char *error, uint64_t retry_ms,
                       unsigned failures_alert, store_done_cb cb, void *arg)
{
    struct store_op *op = op_new(st, NULL, cb, arg);
    char delay[24], threshold[16], lease[24];
    const char *params[6] = {order_no, void_code, error, delay, threshold, lease};

    snprintf(delay, sizeof(delay), "%" PRIu64, retry_ms);
    snprintf(threshold, sizeof(threshold), "%u", failures_alert);
    snprintf(lease, sizeof(lease), "%" PRId64, lease_token);
    db_query(st->db, sql_poll_failed, 6, params, NULL, poll_failure_written, op);
}

struct count_op {
    store_count_cb cb;
    void *arg;
};

static void counted(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct count_op *op = arg;

    (void)s;
    if (status != 0)
        op->cb(db_classify(res, status, "flagging stuck cases"), 0, op->arg);
    else
        op->cb(0, field_i64(res, 0), op->arg);
    free(op);
}

void store_flag_stuck(struct store *st, uint64_t stuck_after_ms, unsigned max, store_count_cb cb,
                      void *arg)
{
    struct count_op *op = xcalloc(1, sizeof(*op));
    char ms[24], limit[16];
    const char *params[2] = {ms, limit};

    op->cb = cb;
    op->arg = arg;
    snprintf(ms, sizeof(ms), "%" PRIu64, stuck_after_ms);
    snprintf(limit, sizeof(limit), "%u", max);
    db_query(st->db, sql_flag_stuck, 2, params, NULL, counted, op);
}

/* ---- cancellations ------------------------------------------------------------------------ */

static void cancellation_written(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct store_op *op = arg;

    (void)s;
    if (status != 0) {
        op_finish(op, db_classify(res, status, "storing an order cancellation"));
        return;
    }
    op->result.delivery_id = field_i64(res, 0);
    op->result.outcome = strcmp(PQgetvalue(res, 0, 1), "applied") == 0 ? "applied" : "duplicate";
    op->result.alert_id = field_i64(res, 2);
    op_finish(op, 0);
}

void store_record_cancellation(struct store *st, const struct store_delivery *d,
                               const struct store_cancellation *c, store_done_cb cb, void *arg)
{
    struct store_op *op = op_new(st, d, cb, arg);
    const char *params[11] = {d->provider,
                              d->event_type,
                              d->remote_addr,
                              d->body,
                              c->order_ref,
                              c->error_code,
                              c->error_message,
                              c->order_status,
                              c->alert ? "true" : "false",
                              c->details,
                              c->verified ? "true" : "false"};
    int lengths[11] = {-1, -1, -1, (int)d->body_len, -1, -1, -1, -1, -1, -1, -1};

    db_query(st->db, sql_cancellation, 11, params, lengths, cancellation_written, op);
}
