/* Void reports through the state machine. A report reads the case, decides in C
 * (voidcase_decide) and writes everything in one statement that only succeeds if the case's
 * version is still the one read; otherwise it reads again. */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "store_int.h"

/* Retries of a void report that lost a race with another writer of the same case. */
#define STORE_MAX_ATTEMPTS 8

static const char sql_case_select[] =
    "SELECT status, confirmed,"
    "       (SELECT string_agg(f.reason, ',') FROM voidrecon.case_followups f"
    "         WHERE f.order_no = c.order_no AND f.void_code = c.void_code),"
    "       version, lease_token"
    "  FROM voidrecon.void_cases c WHERE order_no = $1::text AND void_code = $2::text";

/* $19 NULL inserts a new case, otherwise the case is updated only if its version is still $19
 * (and, for a poll, its lease token still $23). No row back means another writer won: read
 * again. Deliveries and events reference rows written in the same statement; foreign keys are
 * checked at its end. $29 says the report carries an Atlas answer whose details are kept. The
 * event keeps whether the case is reconciled afterwards ($21): the change feed's trigger
 * (migration 0008) announces the moment it becomes so. */
static const char sql_void_write[] =
    "WITH ins AS ("
    "  INSERT INTO voidrecon.void_cases (order_no, void_code, status, confirmed, reconciled_at,"
    "                                    message, needs_followup, followup_reason, next_poll_at,"
    "                                    cid)"
    "  SELECT $1::text, $2::text, $12::smallint, $13::boolean,"
    "         CASE WHEN $21::boolean THEN now() END, $14::text, $15::text IS NOT NULL, $15::text,"
    "         CASE $17::text WHEN 'at' THEN now() + $18::bigint * interval '1 millisecond' END,"
    "         $32::text"
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
    "         followup_reason = CASE WHEN $15::text IS NULL THEN v.followup_reason"
    "             ELSE voidrecon.followup_top(v.needs_followup, v.followup_reason, $15::text) END,"
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
    "                            ELSE v.atlas_void_order END,"
    "         cid = coalesce(v.cid, $32::text)"
    "   WHERE v.order_no = $1::text AND v.void_code = $2::text AND v.version = $19::bigint"
    "     AND ($23::bigint IS NULL OR v.lease_token = $23::bigint)"
    "  RETURNING 1"
    "), c AS ("
    "  SELECT 1 FROM ins UNION ALL SELECT 1 FROM upd"
    "), d AS ("
    "  INSERT INTO voidrecon.deliveries (provider, event_type, remote_addr, body, outcome, reason,"
    "                                   body_length, body_sha256, headers, replay_of, cid)"
    "  SELECT $3::text, $4::text, $5::text, $6::bytea, $7::text, $8::text,"
    "         octet_length($6::bytea), sha256($6::bytea), $30::jsonb, $31::bigint, $32::text"
    "    FROM c WHERE $3::text IS NOT NULL"
    "  RETURNING id"
    "), e AS ("
    "  INSERT INTO voidrecon.void_case_events (order_no, void_code, source, reported_status,"
    "                                          from_status, to_status, outcome, delivery_id,"
    "                                          message, reconciled, in_feed)"
    "  SELECT $1::text, $2::text, $9::text, $10::smallint, $11::smallint, $12::smallint,"
    "         $7::text, (SELECT id FROM d), $14::text, $21::boolean, $33::boolean FROM c"
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
    "), f AS ("
    "  INSERT INTO voidrecon.case_followups (order_no, void_code, reason, alert_id, delivery_id)"
    "  SELECT $1::text, $2::text, $15::text, (SELECT id FROM a), (SELECT id FROM d)"
    "    FROM c WHERE $15::text IS NOT NULL"
    "  ON CONFLICT DO NOTHING"
    ")"
    "SELECT (SELECT id FROM d), (SELECT id FROM a), (SELECT id FROM e) FROM c";

/* The parameters of sql_void_write by name; each comment is the $n the statement uses. */
enum void_param {
    VP_ORDER_NO,          /* $1 */
    VP_VOID_CODE,         /* $2 */
    VP_PROVIDER,          /* $3: NULL writes no delivery */
    VP_EVENT_TYPE,        /* $4 */
    VP_REMOTE_ADDR,       /* $5 */
    VP_BODY,              /* $6: binary, the raw body */
    VP_OUTCOME,           /* $7 */
    VP_REASON,            /* $8: why a report was not applied */
    VP_SOURCE,            /* $9 */
    VP_REPORTED,          /* $10 */
    VP_FROM_STATUS,       /* $11: NULL for a new case */
    VP_TO_STATUS,         /* $12 */
    VP_CONFIRMED,         /* $13 */
    VP_MESSAGE,           /* $14 */
    VP_FOLLOWUP,          /* $15: a follow-up reason to raise (not pending yet), or NULL */
    VP_ALERT_KIND,        /* $16: the alert to raise, or NULL */
    VP_POLL_MODE,         /* $17: keep, never or at */
    VP_POLL_DELAY_MS,     /* $18: with at */
    VP_SEEN_VERSION,      /* $19: the version read; NULL inserts a new case */
    VP_CHANGED,           /* $20: the case's own fields change (its version moves) */
    VP_RECONCILED,        /* $21 */
    VP_STATUS_NAME,       /* $22: for the alert's payload */
    VP_LEASE_TOKEN,       /* $23: polls only */
    VP_CANCEL_REASON,     /* $24: the details of a poll's answer, $24 to $28 */
    VP_VOID_METHOD,       /* $25 */
    VP_CONFIRMATION_DATE, /* $26 */
    VP_REFUND_DATE,       /* $27 */
    VP_DETAILS_JSON,      /* $28 */
    VP_HAS_DETAILS,       /* $29: $24 to $28 are to be kept */
    VP_HEADERS,           /* $30: the delivery's kept headers */
    VP_REPLAY_OF,         /* $31: the delivery it replays, or NULL */
    VP_CID,               /* $32: the sender's account; a case keeps its first */
    VP_IN_FEED,           /* $33: the report is news for the change feed */
    VP_COUNT
};

static void void_select(struct store_op *op);

static void void_written(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct store_op *op = arg;
    struct store_row row;

    (void)s;
    if (status != 0) {
        store_op_fail(op, res, status, "applying a void report");
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
        snprintf(op->error, sizeof(op->error),
                 "applying a void report: the case kept changing; gave up after %d attempts",
                 op->attempts);
        store_op_finish(op, VR_EUNAVAIL);
        return;
    }
    store_row_init(&row, res, 0);
    op->result.delivery_id = store_row_i64(&row, 0);
    op->result.alert_id = store_row_i64(&row, 1);
    store_op_finish(op,
                    store_row_check(&row, "applying a void report", op->error, sizeof(op->error)));
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
        *delay_ms = st->poll_first_ms;
        return "at";
    case VOIDCASE_POLL_CONFIRM:
        *delay_ms = st->poll_confirm_ms;
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

/* Text of the parameters that are numbers and flags. */
struct void_numbers {
    char reported[8], from[8], to[8], delay[24], version[24], lease[24], reason[160], replay[24];
};

/* News for an order system, in the change feed: a new case, another status, or the poll that
 * confirms a closing (the void is finished for good). */
static bool is_news(const struct voidcase_state *cur, const struct voidcase_decision *dec)
{
    return !cur->exists || dec->to_status != cur->status ||
           (voidcase_is_reconciled(dec->to_status, dec->confirmed) &&
            !voidcase_is_reconciled(cur->status, cur->confirmed));
}

static void void_decided(struct store_op *op, const struct voidcase_state *cur, int64_t version,
                         const struct voidcase_decision *dec)
{
    const struct store_void_report *rep = op->rep;
    const struct store_delivery *d = op->d;
    /* An answer superseded by a newer change may be older news: its details are not kept. */
    const struct store_void_details *det = dec->outcome == VOIDCASE_STALE ? NULL : rep->details;
    bool changed = !cur->exists || dec->to_status != cur->status ||
                   dec->confirmed != cur->confirmed || dec->followup_reason != NULL;
    bool reconciled = voidcase_is_reconciled(dec->to_status, dec->confirmed);
    bool in_feed = is_news(cur, dec);
    struct void_numbers n;
    int lengths[VP_COUNT];
    uint64_t delay_ms;
    const char *mode = poll_mode(op->st, rep, dec->poll, &delay_ms);

    explain(rep, cur, dec, n.reason, sizeof(n.reason));
    op->result.outcome = voidcase_outcome_name(dec->outcome);
    op->result.created = !cur->exists;
    op->result.to_status = dec->to_status;

    const char *params[VP_COUNT] = {
        [VP_ORDER_NO] = rep->order_no,
        [VP_VOID_CODE] = rep->void_code,
        [VP_PROVIDER] = d ? d->provider : NULL,
        [VP_EVENT_TYPE] = d ? d->event_type : NULL,
        [VP_REMOTE_ADDR] = d ? d->remote_addr : NULL,
        [VP_BODY] = d ? d->body : NULL,
        [VP_OUTCOME] = op->result.outcome,
        [VP_REASON] = n.reason[0] ? n.reason : NULL,
        [VP_SOURCE] = voidcase_source_name(rep->source),
        [VP_REPORTED] = store_i64_text(rep->status, n.reported, sizeof(n.reported)),
        [VP_FROM_STATUS] = cur->exists ? store_i64_text(cur->status, n.from, sizeof(n.from)) : NULL,
        [VP_TO_STATUS] = store_i64_text(dec->to_status, n.to, sizeof(n.to)),
        [VP_CONFIRMED] = dec->confirmed ? "true" : "false",
        [VP_MESSAGE] = rep->message,
        [VP_FOLLOWUP] = dec->followup_reason,
        [VP_ALERT_KIND] = dec->alert_kind,
        [VP_POLL_MODE] = mode,
        [VP_POLL_DELAY_MS] = store_u64_text(delay_ms, n.delay, sizeof(n.delay)),
        [VP_SEEN_VERSION] =
            cur->exists ? store_i64_text(version, n.version, sizeof(n.version)) : NULL,
        [VP_CHANGED] = changed ? "true" : "false",
        [VP_RECONCILED] = reconciled ? "true" : "false",
        [VP_STATUS_NAME] = voidcase_status_name(dec->to_status),
        [VP_LEASE_TOKEN] = rep->source == VOIDCASE_SOURCE_POLL
                               ? store_i64_text(rep->lease_token, n.lease, sizeof(n.lease))
                               : NULL,
        [VP_CANCEL_REASON] = det ? det->cancel_reason : NULL,
        [VP_VOID_METHOD] = det ? det->void_method : NULL,
        [VP_CONFIRMATION_DATE] = det ? det->expected_confirmation_date : NULL,
        [VP_REFUND_DATE] = det ? det->expected_refund_date : NULL,
        [VP_DETAILS_JSON] = det ? det->raw_json : NULL,
        [VP_HAS_DETAILS] = det ? "true" : "false",
        [VP_HEADERS] = d ? d->headers : NULL,
        [VP_REPLAY_OF] = d ? store_delivery_replay_of(d, n.replay, sizeof(n.replay)) : NULL,
        [VP_CID] = d ? d->cid : NULL,
        [VP_IN_FEED] = in_feed ? "true" : "false",
    };
    for (size_t i = 0; i < VP_COUNT; i++)
        lengths[i] = -1;
    lengths[VP_BODY] = d ? (int)d->body_len : -1;
    db_session_query(op->s, sql_void_write, VP_COUNT, params, lengths, void_written, op);
}

static void void_selected(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct store_op *op = arg;
    const struct store_void_report *rep = op->rep;
    struct voidcase_state cur = {0};
    struct voidcase_decision dec;
    struct store_row row;
    int64_t version = 0, lease = 0;

    (void)s;
    if (status != 0) {
        store_op_fail(op, res, status, "reading a void case");
        return;
    }
    if (PQntuples(res) == 1) {
        store_row_init(&row, res, 0);
        cur.exists = true;
        cur.status = store_row_int(&row, 0);
        cur.confirmed = store_row_bool(&row, 1);
        cur.pending = voidcase_followups_parse(store_row_text(&row, 2));
        version = store_row_i64(&row, 3);
        lease = store_row_i64(&row, 4);
        if (store_row_check(&row, "reading a void case", op->error, sizeof(op->error)) != 0) {
            store_op_finish(op, VR_EDB);
            return;
        }
    }
    if (rep->source == VOIDCASE_SOURCE_POLL && (!cur.exists || lease != rep->lease_token)) {
        /* The lease expired and another process took the case: its answer counts, not ours. */
        snprintf(op->error, sizeof(op->error), "the poll's lease was taken over");
        store_op_finish(op, VR_ESTATE);
        return;
    }
    if (voidcase_decide(&cur, rep->status, rep->source,
                        rep->source == VOIDCASE_SOURCE_POLL && rep->seen_version != version,
                        &dec) != 0) {
        snprintf(op->error, sizeof(op->error),
                 "applying a void report: status %d or stored %d is not a void status", rep->status,
                 cur.status);
        store_op_finish(op, VR_EDB);
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
        store_op_fail(op, NULL, status, "applying a void report");
        return;
    }
    op->s = s;
    void_select(op);
}

void store_apply_void(struct store *st, const struct store_delivery *d,
                      const struct store_void_report *rep, store_done_cb cb, void *arg)
{
    struct store_op *op = store_op_new(st, d, cb, arg);

    op->rep = rep;
    db_acquire(st->db, void_acquired, op);
}
