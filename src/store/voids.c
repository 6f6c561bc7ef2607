/* Void reports through the state machine, as the writer (writer.c) runs them in batches: the
 * cases of a batch are read in one statement, each report is decided in C (voidcase_decide) in
 * arrival order, reports of one case chained in memory, and each is written by one statement
 * that only succeeds if the case's version is still the one decided on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "common.h"
#include "store_int.h"

static const char sql_case_select[] =
    "SELECT order_no, void_code, status, confirmed,"
    "       (SELECT string_agg(f.reason, ',') FROM voidrecon.case_followups f"
    "         WHERE f.order_no = c.order_no AND f.void_code = c.void_code),"
    "       version, lease_token"
    "  FROM voidrecon.void_cases c WHERE order_no = $1::text AND void_code = $2::text";

/* The cases of a batch, $1 a JSON array of [order_no, void_code], read as one snapshot. */
static const char sql_cases_select[] =
    "SELECT order_no, void_code, status, confirmed,"
    "       (SELECT string_agg(f.reason, ',') FROM voidrecon.case_followups f"
    "         WHERE f.order_no = c.order_no AND f.void_code = c.void_code),"
    "       version, lease_token"
    "  FROM voidrecon.void_cases c"
    " WHERE (order_no, void_code) IN (SELECT * FROM voidrecon.batch_keys($1::jsonb))";

/* Locks them, in key order so that two batches that share cases never wait on each other in a
 * circle. Only locks: a statement that waited for a lock sees the row as committed since, but
 * anything else it reads (the follow-ups) as of its start; the read comes after, in a statement
 * of its own. */
static const char sql_cases_lock[] =
    "SELECT 1 FROM voidrecon.void_cases c"
    " WHERE (order_no, void_code) IN (SELECT * FROM voidrecon.batch_keys($1::jsonb))"
    " ORDER BY order_no, void_code"
    "   FOR UPDATE OF c";

/* Writes void reports of distinct cases, $1 a JSON array of objects whose fields are the
 * columns of voidrecon.void_reports (migration 0012; all of them strings or null, body in
 * base64). A report whose
 * seen_version is null inserts a new case; otherwise its case is updated only if its version is
 * still seen_version (and, for a poll, its lease token still lease_token). A report whose case
 * did not take the write is missing from the answer: another writer won, read again.
 * Deliveries and alerts draw their ids first (w), so that each row of the answer says which
 * ones its report wrote; foreign keys are checked at the statement's end. has_details says the
 * report carries an Atlas answer whose details are kept. The event keeps whether the case is
 * reconciled afterwards: the change feed's trigger (migration 0008) announces the moment it
 * becomes so. A report that leaves its case reconciled resolves, once, the alerts of the
 * case's open follow-ups whose cause the reconciliation ends: stuck (the case is closed),
 * poll_failing (a poll answered), rejected when the confirmed status is not REJECTED. The
 * follow-ups themselves stay open until a person acknowledges them. */
static const char sql_voids_write[] =
    "WITH i AS ("
    "  SELECT * FROM voidrecon.void_reports($1::jsonb)"
    "), ins AS ("
    "  INSERT INTO voidrecon.void_cases (order_no, void_code, status, confirmed, reconciled_at,"
    "                                    message, needs_followup, followup_reason, next_poll_at,"
    "                                    cid)"
    "  SELECT order_no, void_code, to_status, confirmed, CASE WHEN reconciled THEN now() END,"
    "         message, followup IS NOT NULL, followup,"
    "         CASE poll_mode WHEN 'at' THEN now() + poll_delay_ms * interval '1 millisecond' END,"
    "         cid"
    "    FROM i WHERE seen_version IS NULL ORDER BY ord"
    "  ON CONFLICT DO NOTHING"
    "  RETURNING order_no, void_code"
    "), upd AS ("
    "  UPDATE voidrecon.void_cases AS v"
    "     SET status = i.to_status, confirmed = i.confirmed,"
    "         reconciled_at = CASE WHEN NOT i.reconciled THEN NULL"
    "                              WHEN v.reconciled_at IS NOT NULL AND v.status = i.to_status"
    "                              THEN v.reconciled_at ELSE now() END,"
    "         message = CASE WHEN i.outcome IN ('applied', 'duplicate')"
    "                        THEN coalesce(i.message, v.message) ELSE v.message END,"
    "         needs_followup = v.needs_followup OR i.followup IS NOT NULL,"
    "         followup_reason = CASE WHEN i.followup IS NULL THEN v.followup_reason"
    "             ELSE voidrecon.followup_top(v.needs_followup, v.followup_reason, i.followup) END,"
    "         followup_acked_at = CASE WHEN i.followup IS NULL THEN v.followup_acked_at END,"
    "         next_poll_at = CASE i.poll_mode WHEN 'keep' THEN v.next_poll_at WHEN 'never' THEN "
    "NULL"
    "                        ELSE now() + i.poll_delay_ms * interval '1 millisecond' END,"
    "         updated_at = CASE WHEN i.changed THEN now() ELSE v.updated_at END,"
    "         last_seen_at = now(),"
    "         version = v.version + CASE WHEN i.changed THEN 1 ELSE 0 END,"
    "         polls = v.polls + CASE WHEN i.lease_token IS NULL THEN 0 ELSE 1 END,"
    "         poll_failures = CASE WHEN i.lease_token IS NULL THEN v.poll_failures ELSE 0 END,"
    "         last_polled_at = CASE WHEN i.lease_token IS NULL THEN v.last_polled_at"
    "                          ELSE now() END,"
    "         last_poll_error = CASE WHEN i.lease_token IS NULL THEN v.last_poll_error END,"
    "         lease_token = CASE WHEN i.lease_token IS NULL THEN v.lease_token END,"
    "         lease_until = CASE WHEN i.lease_token IS NULL THEN v.lease_until END,"
    "         cancel_reason = CASE WHEN i.has_details THEN i.cancel_reason ELSE v.cancel_reason "
    "END,"
    "         void_method = CASE WHEN i.has_details THEN i.void_method ELSE v.void_method END,"
    "         expected_confirmation_date = CASE WHEN i.has_details"
    "             THEN to_date(i.confirmation_date, 'YYYYMMDD')"
    "             ELSE v.expected_confirmation_date END,"
    "         expected_refund_date = CASE WHEN i.has_details"
    "             THEN to_date(i.refund_date, 'YYYYMMDD') ELSE v.expected_refund_date END,"
    "         atlas_void_order = CASE WHEN i.has_details THEN i.details::jsonb"
    "                            ELSE v.atlas_void_order END,"
    "         cid = coalesce(v.cid, i.cid)"
    "    FROM i"
    "   WHERE v.order_no = i.order_no AND v.void_code = i.void_code"
    "     AND v.version = i.seen_version"
    "     AND (i.lease_token IS NULL OR v.lease_token = i.lease_token)"
    "  RETURNING v.order_no, v.void_code"
    "), w AS ("
    "  SELECT i.*,"
    "         CASE WHEN i.provider IS NOT NULL"
    "              THEN nextval(pg_get_serial_sequence('voidrecon.deliveries', 'id')) END AS did,"
    "         CASE WHEN i.alert_kind IS NOT NULL"
    "              THEN nextval(pg_get_serial_sequence('voidrecon.alerts', 'id')) END AS aid"
    "    FROM i"
    "   WHERE (i.order_no, i.void_code) IN (SELECT order_no, void_code FROM ins"
    "                                       UNION ALL SELECT order_no, void_code FROM upd)"
    "   ORDER BY i.ord"
    "), d AS ("
    "  INSERT INTO voidrecon.deliveries (id, provider, event_type, remote_addr, body, outcome,"
    "                                   reason, body_length, body_sha256, headers, replay_of, cid)"
    "  SELECT did, provider, event_type, remote_addr, b.body, outcome, reason,"
    "         octet_length(b.body), sha256(b.body), headers::jsonb, replay_of, cid"
    "    FROM w CROSS JOIN LATERAL (SELECT decode(w.body, 'base64') AS body) AS b"
    "   WHERE did IS NOT NULL ORDER BY ord"
    "), e AS ("
    "  INSERT INTO voidrecon.void_case_events (order_no, void_code, source, reported_status,"
    "                                          from_status, to_status, outcome, delivery_id,"
    "                                          message, reconciled, in_feed)"
    "  SELECT order_no, void_code, source, reported, from_status, to_status, outcome, did,"
    "         message, reconciled, in_feed"
    "    FROM w ORDER BY ord"
    "), a AS ("
    "  INSERT INTO voidrecon.alerts (id, kind, order_no, void_code, payload)"
    "  SELECT aid, alert_kind, order_no, void_code, jsonb_build_object("
    "             'kind', alert_kind, 'order_no', order_no, 'void_code', void_code,"
    "             'status', to_status::int, 'status_name', status_name, 'message', message,"
    "             'source', source, 'followup_reason', followup,"
    "             'cancel_reason', CASE WHEN has_details THEN cancel_reason END, 'raised_at', "
    "now())"
    "    FROM w WHERE aid IS NOT NULL ORDER BY ord"
    "), f AS ("
    "  INSERT INTO voidrecon.case_followups (order_no, void_code, reason, alert_id, delivery_id)"
    "  SELECT order_no, void_code, followup, aid, did FROM w WHERE followup IS NOT NULL"
    "   ORDER BY ord"
    "  ON CONFLICT DO NOTHING"
    "), r AS ("
    "  INSERT INTO voidrecon.alerts (kind, order_no, void_code, payload, resolves_alert_id)"
    "  SELECT ra.kind, w.order_no, w.void_code, jsonb_build_object("
    "             'kind', ra.kind, 'order_no', w.order_no, 'void_code', w.void_code,"
    "             'resolved', true, 'resolved_by', 'reconciled', 'followup_reason', cf.reason,"
    "             'status', w.to_status::int, 'status_name', w.status_name, 'source', w.source,"
    "             'resolves_alert_id', ra.id, 'raised_at', now()),"
    "         ra.id"
    "    FROM w JOIN voidrecon.case_followups AS cf"
    "           ON cf.order_no = w.order_no AND cf.void_code = w.void_code"
    "         JOIN voidrecon.alerts AS ra ON ra.id = cf.alert_id"
    "   WHERE w.reconciled"
    "     AND (cf.reason IN ('stuck', 'poll_failing') OR (cf.reason = 'rejected' AND w.to_status "
    "<> 4))"
    "     AND NOT EXISTS (SELECT 1 FROM voidrecon.alerts AS x WHERE x.resolves_alert_id = ra.id)"
    "   ORDER BY w.ord, voidrecon.followup_rank(cf.reason)"
    "  ON CONFLICT (resolves_alert_id) WHERE resolves_alert_id IS NOT NULL DO NOTHING"
    ")"
    "SELECT ord, did, aid FROM w";

/* The fields of a report's object in sql_voids_write's $1: the columns of
 * voidrecon.void_reports, in the same order. */
enum void_param {
    VP_ORDER_NO,
    VP_VOID_CODE,
    VP_PROVIDER, /* NULL writes no delivery */
    VP_EVENT_TYPE,
    VP_REMOTE_ADDR,
    VP_BODY, /* the raw body, base64 */
    VP_OUTCOME,
    VP_REASON, /* why a report was not applied */
    VP_SOURCE,
    VP_REPORTED,
    VP_FROM_STATUS, /* NULL for a new case */
    VP_TO_STATUS,
    VP_CONFIRMED,
    VP_MESSAGE,
    VP_FOLLOWUP,   /* a follow-up reason to raise (not pending yet), or NULL */
    VP_ALERT_KIND, /* the alert to raise, or NULL */
    VP_POLL_MODE,  /* keep, never or at */
    VP_POLL_DELAY_MS,
    VP_SEEN_VERSION, /* the version read; NULL inserts a new case */
    VP_CHANGED,      /* the case's own fields change (its version moves) */
    VP_RECONCILED,
    VP_STATUS_NAME,   /* for the alert's payload */
    VP_LEASE_TOKEN,   /* polls only */
    VP_CANCEL_REASON, /* the details of a poll's answer, to VP_DETAILS_JSON */
    VP_VOID_METHOD,
    VP_CONFIRMATION_DATE,
    VP_REFUND_DATE,
    VP_DETAILS_JSON,
    VP_HAS_DETAILS, /* the details are to be kept */
    VP_HEADERS,     /* the delivery's kept headers */
    VP_REPLAY_OF,   /* the delivery it replays, or NULL */
    VP_CID,         /* the sender's account; a case keeps its first */
    VP_IN_FEED,     /* the report is news for the change feed */
    VP_COUNT
};

static const char *const vp_names[VP_COUNT] = {
    "order_no",     "void_code",
    "provider",     "event_type",
    "remote_addr",  "body",
    "outcome",      "reason",
    "source",       "reported",
    "from_status",  "to_status",
    "confirmed",    "message",
    "followup",     "alert_kind",
    "poll_mode",    "poll_delay_ms",
    "seen_version", "changed",
    "reconciled",   "status_name",
    "lease_token",  "cancel_reason",
    "void_method",  "confirmation_date",
    "refund_date",  "details",
    "has_details",  "headers",
    "replay_of",    "cid",
    "in_feed",
};

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

/* The case's own fields change with the decision (its version moves). */
static bool case_changes(const struct voidcase_state *cur, const struct voidcase_decision *dec)
{
    return !cur->exists || dec->to_status != cur->status || dec->confirmed != cur->confirmed ||
           dec->followup_reason != NULL;
}

/* Adds field i of a report's object: a string, or null. */
static void field_add(cJSON *o, enum void_param i, const char *v)
{
    cJSON_AddItemToObject(o, vp_names[i], v != NULL ? cJSON_CreateString(v) : cJSON_CreateNull());
}

static const char *bool_text(bool b)
{
    return b ? "true" : "false";
}

/* The body as base64, in out (caller frees), or NULL without a delivery. */
static char *body_base64(const struct store_delivery *d)
{
    unsigned char *out;

    if (d == NULL)
        return NULL;
    out = xmalloc(4 * ((d->body_len + 2) / 3) + 1);
    EVP_EncodeBlock(out, (const unsigned char *)d->body, (int)d->body_len);
    return (char *)out;
}

/* One report's object of sql_voids_write's $1. */
static cJSON *report_json(const struct store_op *op, int ord)
{
    const struct store_void_report *rep = op->rep;
    const struct store_delivery *d = op->d;
    const struct voidcase_state *cur = &op->cur;
    const struct voidcase_decision *dec = &op->dec;
    /* An answer superseded by a newer change may be older news: its details are not kept. */
    const struct store_void_details *det = dec->outcome == VOIDCASE_STALE ? NULL : rep->details;
    cJSON *o = cJSON_CreateObject();
    struct void_numbers n;
    uint64_t delay_ms;
    const char *mode = poll_mode(op->st, rep, dec->poll, &delay_ms);
    char *body = body_base64(d);

    explain(rep, cur, dec, n.reason, sizeof(n.reason));
    cJSON_AddNumberToObject(o, "ord", ord);
    field_add(o, VP_ORDER_NO, rep->order_no);
    field_add(o, VP_VOID_CODE, rep->void_code);
    field_add(o, VP_PROVIDER, d ? d->provider : NULL);
    field_add(o, VP_EVENT_TYPE, d ? d->event_type : NULL);
    field_add(o, VP_REMOTE_ADDR, d ? d->remote_addr : NULL);
    field_add(o, VP_BODY, body);
    field_add(o, VP_OUTCOME, op->result.outcome);
    field_add(o, VP_REASON, n.reason[0] ? n.reason : NULL);
    field_add(o, VP_SOURCE, voidcase_source_name(rep->source));
    field_add(o, VP_REPORTED, store_i64_text(rep->status, n.reported, sizeof(n.reported)));
    field_add(o, VP_FROM_STATUS,
              cur->exists ? store_i64_text(cur->status, n.from, sizeof(n.from)) : NULL);
    field_add(o, VP_TO_STATUS, store_i64_text(dec->to_status, n.to, sizeof(n.to)));
    field_add(o, VP_CONFIRMED, bool_text(dec->confirmed));
    field_add(o, VP_MESSAGE, rep->message);
    field_add(o, VP_FOLLOWUP, dec->followup_reason);
    field_add(o, VP_ALERT_KIND, dec->alert_kind);
    field_add(o, VP_POLL_MODE, mode);
    field_add(o, VP_POLL_DELAY_MS, store_u64_text(delay_ms, n.delay, sizeof(n.delay)));
    field_add(o, VP_SEEN_VERSION,
              cur->exists ? store_i64_text(op->version, n.version, sizeof(n.version)) : NULL);
    field_add(o, VP_CHANGED, bool_text(case_changes(cur, dec)));
    field_add(o, VP_RECONCILED, bool_text(voidcase_is_reconciled(dec->to_status, dec->confirmed)));
    field_add(o, VP_STATUS_NAME, voidcase_status_name(dec->to_status));
    field_add(o, VP_LEASE_TOKEN,
              rep->source == VOIDCASE_SOURCE_POLL
                  ? store_i64_text(rep->lease_token, n.lease, sizeof(n.lease))
                  : NULL);
    field_add(o, VP_CANCEL_REASON, det ? det->cancel_reason : NULL);
    field_add(o, VP_VOID_METHOD, det ? det->void_method : NULL);
    field_add(o, VP_CONFIRMATION_DATE, det ? det->expected_confirmation_date : NULL);
    field_add(o, VP_REFUND_DATE, det ? det->expected_refund_date : NULL);
    field_add(o, VP_DETAILS_JSON, det ? det->raw_json : NULL);
    field_add(o, VP_HAS_DETAILS, bool_text(det != NULL));
    field_add(o, VP_HEADERS, d ? d->headers : NULL);
    field_add(o, VP_REPLAY_OF, d ? store_delivery_replay_of(d, n.replay, sizeof(n.replay)) : NULL);
    field_add(o, VP_CID, d ? d->cid : NULL);
    field_add(o, VP_IN_FEED, bool_text(is_news(cur, dec)));
    free(body);
    return o;
}

void store_voids_send(struct store_op *const *ops, size_t n, struct db_session *s, db_result_cb cb,
                      void *arg)
{
    cJSON *all = cJSON_CreateArray();
    char *text;

    for (size_t i = 0; i < n; i++) {
        ops[i]->written = false;
        cJSON_AddItemToArray(all, report_json(ops[i], (int)i));
    }
    text = vr_json_print(all);
    cJSON_Delete(all);
    db_session_prepared(s, STMT_VOIDS_WRITE, sql_voids_write, 1, (const char *const *)&text, NULL,
                        cb, arg);
    free(text);
}

int store_voids_read(struct store_op *const *ops, size_t n, const PGresult *res)
{
    int rows = PQntuples(res);

    for (int r = 0; r < rows; r++) {
        struct store_row row;
        int ord;

        store_row_init(&row, res, r);
        ord = store_row_int(&row, 0);
        if (store_row_check(&row, "applying void reports", ops[0]->error, sizeof(ops[0]->error)) !=
                0 ||
            ord < 0 || (size_t)ord >= n) {
            if (ops[0]->error[0] == '\0')
                snprintf(ops[0]->error, sizeof(ops[0]->error),
                         "applying void reports: the answer names report %d of %zu", ord, n);
            return VR_EDB;
        }
        ops[ord]->written = true;
        ops[ord]->result.delivery_id = store_row_i64(&row, 1);
        ops[ord]->result.alert_id = store_row_i64(&row, 2);
        if (store_row_check(&row, "applying a void report", ops[ord]->error,
                            sizeof(ops[ord]->error)) != 0)
            return VR_EDB;
    }
    /* A report whose case another writer changed after it was read is not in the answer. */
    return (size_t)rows == n ? 0 : STORE_CHANGED;
}

bool store_void_same(const struct store_op *a, const struct store_op *b)
{
    return a->kind == ITEM_VOID && b->kind == ITEM_VOID &&
           strcmp(a->rep->order_no, b->rep->order_no) == 0 &&
           strcmp(a->rep->void_code, b->rep->void_code) == 0;
}

/* The keys of n void reports as sql_cases_select's $1 (caller frees). */
static char *keys_json(struct store_op **voids, size_t n)
{
    cJSON *keys = cJSON_CreateArray();
    char *text;

    for (size_t i = 0; i < n; i++) {
        cJSON *k = cJSON_CreateArray();

        cJSON_AddItemToArray(k, cJSON_CreateString(voids[i]->rep->order_no));
        cJSON_AddItemToArray(k, cJSON_CreateString(voids[i]->rep->void_code));
        cJSON_AddItemToArray(keys, k);
    }
    text = vr_json_print(keys);
    cJSON_Delete(keys);
    return text;
}

void store_voids_lock(struct db_session *s, struct store_op **voids, size_t n, db_result_cb cb,
                      void *arg)
{
    char *text = keys_json(voids, n);

    db_session_prepared(s, STMT_CASES_LOCK, sql_cases_lock, 1, (const char *const *)&text, NULL, cb,
                        arg);
    free(text);
}

void store_voids_select(struct db_session *s, struct store_op **voids, size_t n, db_result_cb cb,
                        void *arg)
{
    char *text;

    if (n == 1) {
        const char *params[2] = {voids[0]->rep->order_no, voids[0]->rep->void_code};

        db_session_prepared(s, STMT_CASE_SELECT, sql_case_select, 2, params, NULL, cb, arg);
        return;
    }
    text = keys_json(voids, n);
    db_session_prepared(s, STMT_CASES_SELECT, sql_cases_select, 1, (const char *const *)&text, NULL,
                        cb, arg);
    free(text);
}

/* The case as rows (store_voids_select) hold it: 0, or VR_EDB with op->error set. */
static int case_from_rows(struct store_op *op, const PGresult *rows)
{
    struct store_row row;

    memset(&op->cur, 0, sizeof(op->cur));
    op->version = op->lease = 0;
    for (int r = 0; r < PQntuples(rows); r++) {
        const char *o = PQgetvalue(rows, r, 0), *v = PQgetvalue(rows, r, 1);

        if (strcmp(o, op->rep->order_no) != 0 || strcmp(v, op->rep->void_code) != 0)
            continue;
        store_row_init(&row, rows, r);
        op->cur.exists = true;
        op->cur.status = store_row_int(&row, 2);
        op->cur.confirmed = store_row_bool(&row, 3);
        op->cur.pending = voidcase_followups_parse(store_row_text(&row, 4));
        op->version = store_row_i64(&row, 5);
        op->lease = store_row_i64(&row, 6);
        return store_row_check(&row, "reading a void case", op->error, sizeof(op->error));
    }
    return 0;
}

/* The case as an earlier report of the batch leaves it. */
static void case_after(struct store_op *op, const struct store_op *prev)
{
    const struct voidcase_decision *dec = &prev->dec;

    op->cur.exists = true;
    op->cur.status = dec->to_status;
    op->cur.confirmed = dec->confirmed;
    op->cur.pending = prev->cur.pending;
    if (dec->followup_reason != NULL)
        op->cur.pending |= voidcase_followup_bit(dec->followup_reason);
    /* A new case starts at version 1; a poll's answer gives its lease back. */
    op->version = !prev->cur.exists ? 1 : prev->version + (case_changes(&prev->cur, dec) ? 1 : 0);
    op->lease = prev->rep->source == VOIDCASE_SOURCE_POLL ? 0 : prev->lease;
}

int store_void_decide(struct store_op *op, struct store_op *const *earlier, size_t n_earlier,
                      const PGresult *rows)
{
    const struct store_void_report *rep = op->rep;
    const struct store_op *prev = NULL;

    for (size_t i = n_earlier; i > 0 && prev == NULL; i--) {
        if (store_void_same(earlier[i - 1], op))
            prev = earlier[i - 1];
    }
    if (prev != NULL)
        case_after(op, prev);
    else if (case_from_rows(op, rows) != 0)
        return VR_EDB;
    if (rep->source == VOIDCASE_SOURCE_POLL && (!op->cur.exists || op->lease != rep->lease_token)) {
        /* The lease expired and another process took the case: its answer counts, not ours. */
        snprintf(op->error, sizeof(op->error), "the poll's lease was taken over");
        return VR_ESTATE;
    }
    if (voidcase_decide(&op->cur, rep->status, rep->source,
                        rep->source == VOIDCASE_SOURCE_POLL && rep->seen_version != op->version,
                        &op->dec) != 0) {
        snprintf(op->error, sizeof(op->error),
                 "applying a void report: status %d or stored %d is not a void status", rep->status,
                 op->cur.status);
        return VR_EDB;
    }
    op->result.outcome = voidcase_outcome_name(op->dec.outcome);
    op->result.created = !op->cur.exists;
    op->result.to_status = op->dec.to_status;
    return 0;
}

void store_apply_void(struct store *st, const struct store_delivery *d,
                      const struct store_void_report *rep, store_done_cb cb, void *arg)
{
    struct store_op *op = store_op_new(st, d, cb, arg);

    op->kind = ITEM_VOID;
    op->rep = rep;
    store_write(op);
}
