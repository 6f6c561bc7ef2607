/* What people and their tools ask for: listings, one case, acknowledgements. One statement
 * each, answered as one JSON document that PostgreSQL builds; the API sends it as it is and the
 * CLI prints it as a table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

/* The fields of a case as the API and the CLI show them; r is the row's alias. */
#define CASE_JSON(r)                                                                               \
    "json_build_object('order_no', " r ".order_no, 'void_code', " r ".void_code,"                  \
    " 'status', " r ".status, 'status_name', voidrecon.void_status_name(" r ".status),"            \
    " 'is_open', " r ".is_open, 'confirmed', " r ".confirmed,"                                     \
    " 'reconciled_at', " r ".reconciled_at, 'message', " r ".message,"                             \
    " 'needs_followup', " r ".needs_followup, 'followup_reason', " r ".followup_reason,"           \
    " 'followup_acked_at', " r ".followup_acked_at,"                                               \
    " 'followup_acked_by', " r ".followup_acked_by,"                                               \
    " 'followup_ack_note', " r ".followup_ack_note,"                                               \
    " 'cancel_reason', " r ".cancel_reason, 'void_method', " r ".void_method,"                     \
    " 'created_at', " r ".created_at, 'updated_at', " r ".updated_at,"                             \
    " 'last_seen_at', " r ".last_seen_at, 'next_poll_at', " r ".next_poll_at,"                     \
    " 'polls', " r ".polls, 'poll_failures', " r ".poll_failures,"                                 \
    " 'last_poll_error', " r ".last_poll_error, 'cid', " r ".cid,"                                 \
    " 'followups', " FOLLOWUPS_JSON(r) ")"

/* The open follow-up reasons of the case r, most urgent first. */
#define FOLLOWUPS_JSON(r)                                                                          \
    "(SELECT coalesce(json_agg(json_build_object('reason', f.reason, 'raised_at', f.raised_at,"    \
    "                                            'alert_id', f.alert_id)"                          \
    "                          ORDER BY voidrecon.followup_rank(f.reason)), '[]'::json)"           \
    "   FROM voidrecon.case_followups f"                                                           \
    "  WHERE f.order_no = " r ".order_no AND f.void_code = " r ".void_code)"

/* Keyset pagination: the cursor is the last row's key as hex-encoded JSON, so it survives any
 * text in the key and any URL. */
static const char sql_cases_list[] =
    "WITH page AS ("
    "  SELECT * FROM voidrecon.void_cases c"
    "   WHERE ($1::text = 'all' OR ($1 = 'open' AND c.is_open)"
    "          OR ($1 = 'followup' AND c.needs_followup) OR ($1 = 'rejected' AND c.status = 4))"
    "     AND ($3::text IS NULL OR (c.order_no, c.void_code) >"
    "          ((convert_from(decode($3, 'hex'), 'UTF8')::json ->> 0),"
    "           (convert_from(decode($3, 'hex'), 'UTF8')::json ->> 1)))"
    "   ORDER BY c.order_no, c.void_code LIMIT $2::int"
    ")"
    "SELECT json_build_object("
    "  'cases', coalesce(json_agg(" CASE_JSON(
        "page") " ORDER BY page.order_no, page.void_code),"
                "                    '[]'::json),"
                "  'next_cursor', CASE WHEN count(*) = $2::int THEN "
                "encode(convert_to(json_build_array("
                "      (array_agg(page.order_no ORDER BY page.order_no DESC, page.void_code "
                "DESC))[1],"
                "      (array_agg(page.void_code ORDER BY page.order_no DESC, page.void_code "
                "DESC))[1]"
                "    )::text, 'UTF8'), 'hex') END)::text"
                "  FROM page";

static const char sql_case_show[] = "SELECT json_build_object('case', " CASE_JSON(
    "c") ","
         "  'history', (SELECT coalesce(json_agg(json_build_object("
         "        'id', e.id, 'at', e.at, 'source', e.source, 'reported_status', e.reported_status,"
         "        'from_status', e.from_status, 'to_status', e.to_status, 'outcome', e.outcome,"
         "        'delivery_id', e.delivery_id, 'message', e.message) ORDER BY e.id), '[]'::json)"
         "      FROM voidrecon.void_case_events e"
         "     WHERE e.order_no = c.order_no AND e.void_code = c.void_code),"
         "  'alerts', (SELECT coalesce(json_agg(json_build_object("
         "        'id', a.id, 'kind', a.kind, 'created_at', a.created_at,"
         "        'delivered_at', a.delivered_at, 'attempts', a.attempts) ORDER BY a.id), "
         "'[]'::json)"
         "      FROM voidrecon.alerts a WHERE a.order_no = c.order_no AND a.void_code = "
         "c.void_code),"
         "  'acknowledgements', (SELECT coalesce(json_agg(json_build_object("
         "        'at', k.at, 'reason', k.reason, 'acked_by', k.acked_by, 'note', k.note)"
         "        ORDER BY k.id), '[]'::json)"
         "      FROM voidrecon.acknowledgements k"
         "     WHERE k.subject = 'void_case' AND k.order_no = c.order_no"
         "       AND k.void_code = c.void_code))::text"
         "  FROM voidrecon.void_cases c WHERE c.order_no = $1::text AND c.void_code = $2::text";

/* Acknowledges one open reason ($5) or all of them (NULL); one acknowledgements row each. The
 * case's row lock orders this against every writer of its follow-ups, and each of them moves
 * its version: when the locked row's version is not the one this statement's snapshot holds,
 * a writer committed in between, nothing is written and the caller runs it again. rest is what
 * stays open, read before the delete. */
static const char sql_case_ack[] =
    "WITH lk AS ("
    "  SELECT c.version FROM voidrecon.void_cases c"
    "   WHERE c.order_no = $1::text AND c.void_code = $2::text FOR UPDATE"
    "), fresh AS ("
    "  SELECT 1 FROM lk WHERE lk.version = (SELECT c.version FROM voidrecon.void_cases c"
    "                                       WHERE c.order_no = $1::text AND c.void_code = $2::text)"
    "), del AS ("
    "  DELETE FROM voidrecon.case_followups f"
    "   WHERE f.order_no = $1::text AND f.void_code = $2::text"
    "     AND ($5::text IS NULL OR f.reason = $5::text) AND EXISTS (SELECT 1 FROM fresh)"
    "  RETURNING f.reason, f.alert_id"
    "), rest AS ("
    "  SELECT f.reason, f.raised_at, f.alert_id FROM voidrecon.case_followups f"
    "   WHERE f.order_no = $1::text AND f.void_code = $2::text"
    "     AND f.reason NOT IN (SELECT reason FROM del)"
    "), upd AS ("
    "  UPDATE voidrecon.void_cases AS c"
    "     SET needs_followup = EXISTS (SELECT 1 FROM rest),"
    "         followup_reason = coalesce((SELECT reason FROM rest"
    "                                      ORDER BY voidrecon.followup_rank(reason) LIMIT 1),"
    "                                    c.followup_reason),"
    "         followup_acked_at = now(), followup_acked_by = $3::text,"
    "         followup_ack_note = $4::text, updated_at = now(), version = c.version + 1"
    "   WHERE c.order_no = $1::text AND c.void_code = $2::text AND EXISTS (SELECT 1 FROM del)"
    "  RETURNING c.*"
    "), ack AS ("
    "  INSERT INTO voidrecon.acknowledgements (subject, order_no, void_code, reason, acked_by,"
    "                                          note)"
    "  SELECT 'void_case', $1::text, $2::text, del.reason, $3::text, $4::text FROM del"
    "  RETURNING id"
    "), res AS ("
    "  INSERT INTO voidrecon.alerts (kind, order_no, void_code, payload, resolves_alert_id)"
    "  SELECT r.kind, $1::text, $2::text, jsonb_build_object("
    "             'kind', r.kind, 'order_no', $1::text, 'void_code', $2::text, 'resolved', true,"
    "             'resolved_by', 'acknowledged', 'followup_reason', del.reason,"
    "             'acked_by', $3::text, 'note', $4::text, 'status', upd.status,"
    "             'status_name', voidrecon.void_status_name(upd.status),"
    "             'resolves_alert_id', r.id, 'raised_at', now()),"
    "         r.id"
    "    FROM del JOIN voidrecon.alerts AS r ON r.id = del.alert_id CROSS JOIN upd"
    "   WHERE NOT EXISTS (SELECT 1 FROM voidrecon.alerts x WHERE x.resolves_alert_id = r.id)"
    "   ORDER BY voidrecon.followup_rank(del.reason)"
    "  ON CONFLICT (resolves_alert_id) WHERE resolves_alert_id IS NOT NULL DO NOTHING"
    ")"
    "SELECT (SELECT json_build_object("
    "            'case', json_build_object('order_no', upd.order_no, 'void_code', upd.void_code,"
    "                'status', upd.status, 'status_name', voidrecon.void_status_name(upd.status),"
    "                'needs_followup', upd.needs_followup,"
    "                'followup_reason', upd.followup_reason,"
    "                'followup_acked_at', upd.followup_acked_at,"
    "                'followup_acked_by', upd.followup_acked_by,"
    "                'followup_ack_note', upd.followup_ack_note,"
    "                'followups', (SELECT coalesce(json_agg(json_build_object("
    "                        'reason', reason, 'raised_at', raised_at, 'alert_id', alert_id)"
    "                        ORDER BY voidrecon.followup_rank(reason)), '[]'::json) FROM rest)),"
    "            'acknowledged', (SELECT json_agg(reason ORDER BY voidrecon.followup_rank(reason))"
    "                               FROM del))::text FROM upd),"
    "       EXISTS (SELECT 1 FROM lk), EXISTS (SELECT 1 FROM fresh),"
    "       (SELECT string_agg(f.reason, ', ' ORDER BY voidrecon.followup_rank(f.reason))"
    "          FROM voidrecon.case_followups f"
    "         WHERE f.order_no = $1::text AND f.void_code = $2::text)";

static const char sql_alerts_list[] =
    "WITH page AS ("
    "  SELECT * FROM voidrecon.alerts a"
    "   WHERE ($1::text = 'all' OR ($1 = 'pending' AND a.delivered_at IS NULL)"
    "          OR ($1 = 'delivered' AND a.delivered_at IS NOT NULL))"
    "     AND ($3::bigint IS NULL OR a.id < $3::bigint)"
    "   ORDER BY a.id DESC LIMIT $2::int"
    ")"
    "SELECT json_build_object('alerts', coalesce(json_agg(json_build_object("
    "    'id', id, 'kind', kind, 'order_no', order_no, 'void_code', void_code,"
    "    'created_at', created_at, 'delivered_at', delivered_at, 'attempts', attempts,"
    "    'last_attempt_at', last_attempt_at, 'last_error', last_error,"
    "    'next_attempt_at', CASE WHEN delivered_at IS NULL THEN next_attempt_at END,"
    "    'payload', payload) ORDER BY id DESC), '[]'::json),"
    "  'next_cursor', CASE WHEN count(*) = $2::int THEN min(id)::text END)::text"
    "  FROM page";

/* The fields of an order cancellation; r is the row's alias. */
#define CANCELLATION_JSON(r)                                                                       \
    "json_build_object('id', " r ".id, 'provider', " r ".provider, 'order_ref', " r ".order_ref,"  \
    " 'error_code', " r ".error_code, 'error_message', " r ".error_message,"                       \
    " 'order_status', " r ".order_status, 'details', " r ".details,"                               \
    " 'verified', " r ".verified, 'received_at', " r ".received_at,"                               \
    " 'delivery_id', " r ".delivery_id, 'needs_followup', " r ".needs_followup,"                   \
    " 'followup_acked_at', " r ".followup_acked_at,"                                               \
    " 'followup_acked_by', " r ".followup_acked_by,"                                               \
    " 'followup_ack_note', " r ".followup_ack_note)"

static const char sql_cancellations_list[] =
    "WITH page AS ("
    "  SELECT * FROM voidrecon.order_cancellations o"
    "   WHERE ($3::text = 'all' OR ($3 = 'open' AND o.needs_followup)"
    "          OR ($3 = 'acked' AND NOT o.needs_followup))"
    "     AND ($2::bigint IS NULL OR o.id < $2::bigint)"
    "   ORDER BY o.id DESC LIMIT $1::int"
    ")"
    "SELECT json_build_object('cancellations', coalesce(json_agg(" CANCELLATION_JSON(
        "page") " ORDER BY page.id DESC), '[]'::json),"
                "  'next_cursor', CASE WHEN count(*) = $1::int THEN min(page.id)::text END)::text"
                "  FROM page";

static const char sql_cancellation_show[] =
    "SELECT json_build_object('cancellation', " CANCELLATION_JSON(
        "o") ","
             "  'acknowledgements', (SELECT coalesce(json_agg(json_build_object("
             "        'at', k.at, 'reason', k.reason, 'acked_by', k.acked_by, 'note', k.note)"
             "        ORDER BY k.id), '[]'::json)"
             "      FROM voidrecon.acknowledgements k"
             "     WHERE k.subject = 'order_cancellation' AND k.order_no = o.order_ref"
             "       AND k.provider = o.provider))::text"
             "  FROM voidrecon.order_cancellations o WHERE o.id = $1::bigint";

/* The row lock of the UPDATE orders two acknowledgements: the second finds nothing to do. */
static const char sql_cancellation_ack[] =
    "WITH upd AS ("
    "  UPDATE voidrecon.order_cancellations AS o"
    "     SET needs_followup = false, followup_acked_at = now(), followup_acked_by = $2::text,"
    "         followup_ack_note = $3::text"
    "   WHERE o.id = $1::bigint AND o.needs_followup"
    "  RETURNING o.*"
    "), ack AS ("
    "  INSERT INTO voidrecon.acknowledgements (subject, order_no, provider, reason, acked_by,"
    "                                          note)"
    "  SELECT 'order_cancellation', upd.order_ref, upd.provider, 'cancelled', $2::text, $3::text"
    "    FROM upd"
    "  RETURNING id"
    "), res AS ("
    "  INSERT INTO voidrecon.alerts (kind, order_no, payload, resolves_alert_id)"
    "  SELECT 'order_cancelled', upd.order_ref, jsonb_build_object("
    "             'kind', 'order_cancelled', 'order_no', upd.order_ref,"
    "             'provider', upd.provider, 'cancellation_id', upd.id, 'resolved', true,"
    "             'resolved_by', 'acknowledged', 'acked_by', $2::text, 'note', $3::text,"
    "             'resolves_alert_id', upd.alert_id, 'raised_at', now()),"
    "         upd.alert_id"
    "    FROM upd WHERE upd.alert_id IS NOT NULL"
    "  ON CONFLICT (resolves_alert_id) WHERE resolves_alert_id IS NOT NULL DO NOTHING"
    ")"
    "SELECT (SELECT json_build_object('cancellation', " CANCELLATION_JSON(
        "upd") ")::text FROM upd),"
               "       EXISTS (SELECT 1 FROM voidrecon.order_cancellations WHERE id = $1::bigint)";

/* A case acknowledgement that met a concurrent writer is run again (ACK_AGAIN), up to this
 * many times. */
#define ACK_MAX_ATTEMPTS 8
#define ACK_AGAIN        1

enum json_kind {
    JSON_READ,      /* NULL answer: nothing found */
    JSON_CASE_ACK,  /* sql_case_ack's four columns */
    JSON_CANCEL_ACK /* sql_cancellation_ack's two columns */
};

struct json_op {
    struct store *st;
    store_json_cb cb;
    void *arg;
    enum json_kind kind;
    const char *what;    /* the operation, for error text */
    const char *missing; /* what VR_ENOENT says */
    /* acknowledgements of a case, run again after a concurrent writer: borrowed strings */
    const char *params[5];
    const char *reason;
    int attempts;
};

bool store_case_state_valid(const char *state)
{
    return strcmp(state, "open") == 0 || strcmp(state, "followup") == 0 ||
           strcmp(state, "rejected") == 0 || strcmp(state, "all") == 0;
}

bool store_alert_state_valid(const char *state)
{
    return strcmp(state, "pending") == 0 || strcmp(state, "delivered") == 0 ||
           strcmp(state, "all") == 0;
}

bool store_cancellation_state_valid(const char *state)
{
    return strcmp(state, "open") == 0 || strcmp(state, "acked") == 0 || strcmp(state, "all") == 0;
}

bool store_followup_reason_valid(const char *reason)
{
    return voidcase_followup_bit(reason) != 0;
}

static void answered(struct db_session *s, PGresult *res, int status, void *arg);

/* Why an acknowledgement found nothing to acknowledge; ACK_AGAIN: run it again. */
static int ack_refusal(struct json_op *op, struct store_row *row, char *err, size_t cap)
{
    if (!store_row_bool(row, 1)) {
        snprintf(err, cap, "%s", op->missing);
        return VR_ENOENT;
    }
    if (op->kind == JSON_CANCEL_ACK) {
        snprintf(err, cap, "the cancellation was acknowledged already");
        return VR_ESTATE;
    }
    if (!store_row_bool(row, 2))
        return ACK_AGAIN;
    if (op->reason != NULL && !store_row_null(row, 3))
        snprintf(err, cap, "the case has no open follow-up \"%s\" (open: %s)", op->reason,
                 store_row_text(row, 3));
    else
        snprintf(err, cap, "the case has no follow-up waiting to be acknowledged");
    return VR_ESTATE;
}

static void answered(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct json_op *op = arg;
    char err[STORE_ERROR_BYTES] = "";
    const char *json = NULL, *state;
    struct store_row row;

    (void)s;
    store_row_init(&row, res, 0);
    if (status == VR_EDB && (state = PQresultErrorField(res, PG_DIAG_SQLSTATE)) != NULL &&
        strncmp(state, "22", 2) == 0) {
        /* A cursor that does not decode is the only data error these statements can meet. */
        snprintf(err, sizeof(err), "a cursor voidrecon did not give out");
        status = VR_EINVAL;
    } else if (status != 0) {
        status = db_classify(res, status, op->what, err, sizeof(err));
    } else if (PQntuples(res) == 0 || store_row_null(&row, 0)) {
        status = VR_ENOENT;
        snprintf(err, sizeof(err), "%s", op->missing);
        if (op->kind != JSON_READ && PQntuples(res) > 0)
            status = ack_refusal(op, &row, err, sizeof(err));
    } else {
        json = store_row_text(&row, 0);
    }
    if (status == ACK_AGAIN && ++op->attempts < ACK_MAX_ATTEMPTS) {
        db_query(op->st->db, sql_case_ack, 5, op->params, NULL, answered, op);
        return;
    }
    if (status == ACK_AGAIN) {
        snprintf(err, sizeof(err), "%s: the case kept changing; gave up after %d attempts",
                 op->what, op->attempts);
        status = VR_EUNAVAIL;
    }
    op->cb(status, json, err, op->arg);
    free(op);
}

static struct json_op *op_new(struct store *st, enum json_kind kind, const char *what,
                              const char *missing, store_json_cb cb, void *arg)
{
    struct json_op *op = xcalloc(1, sizeof(*op));

    op->st = st;
    op->cb = cb;
    op->arg = arg;
    op->kind = kind;
    op->what = what;
    op->missing = missing;
    return op;
}

static void run(struct store *st, const char *sql, int n, const char *const *params,
                const char *what, const char *missing, store_json_cb cb, void *arg)
{
    db_query(st->db, sql, n, params, NULL, answered, op_new(st, JSON_READ, what, missing, cb, arg));
}

static const char *limit_text(unsigned limit, char *out, size_t cap)
{
    if (limit == 0)
        limit = STORE_DEFAULT_LIMIT;
    return store_u64_text(limit > STORE_MAX_LIMIT ? STORE_MAX_LIMIT : limit, out, cap);
}

void store_cases_list(struct store *st, const char *state, unsigned limit, const char *cursor,
                      store_json_cb cb, void *arg)
{
    char lim[24];
    const char *params[3] = {state, limit_text(limit, lim, sizeof(lim)), cursor};

    run(st, sql_cases_list, 3, params, "listing cases", "", cb, arg);
}

void store_case_show(struct store *st, const char *order_no, const char *void_code,
                     store_json_cb cb, void *arg)
{
    const char *params[2] = {order_no, void_code};

    run(st, sql_case_show, 2, params, "showing a case", "no such void case", cb, arg);
}

void store_case_ack(struct store *st, const char *order_no, const char *void_code,
                    const char *reason, const char *by, const char *note, store_json_cb cb,
                    void *arg)
{
    struct json_op *op =
        op_new(st, JSON_CASE_ACK, "acknowledging a follow-up", "no such void case", cb, arg);

    op->params[0] = order_no;
    op->params[1] = void_code;
    op->params[2] = by;
    op->params[3] = note;
    op->params[4] = reason;
    op->reason = reason;
    db_query(st->db, sql_case_ack, 5, op->params, NULL, answered, op);
}

void store_alerts_list(struct store *st, const char *state, unsigned limit, const char *cursor,
                       store_json_cb cb, void *arg)
{
    char lim[24];
    const char *params[3] = {state, limit_text(limit, lim, sizeof(lim)), cursor};

    run(st, sql_alerts_list, 3, params, "listing alerts", "", cb, arg);
}

void store_cancellations_list(struct store *st, const char *state, unsigned limit,
                              const char *cursor, store_json_cb cb, void *arg)
{
    char lim[24];
    const char *params[3] = {limit_text(limit, lim, sizeof(lim)), cursor, state};

    run(st, sql_cancellations_list, 3, params, "listing order cancellations", "", cb, arg);
}

void store_cancellation_show(struct store *st, int64_t id, store_json_cb cb, void *arg)
{
    char idt[24];
    const char *params[1] = {store_i64_text(id, idt, sizeof(idt))};

    run(st, sql_cancellation_show, 1, params, "showing an order cancellation",
        "no such order cancellation", cb, arg);
}

void store_cancellation_ack(struct store *st, int64_t id, const char *by, const char *note,
                            store_json_cb cb, void *arg)
{
    char idt[24];
    const char *params[3] = {store_i64_text(id, idt, sizeof(idt)), by, note};

    db_query(st->db, sql_cancellation_ack, 3, params, NULL, answered,
             op_new(st, JSON_CANCEL_ACK, "acknowledging an order cancellation",
                    "no such order cancellation", cb, arg));
}
