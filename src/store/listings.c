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
    " 'last_poll_error', " r ".last_poll_error, 'cid', " r ".cid)"

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

/* The acknowledgement changes the follow-up, so the case's version moves like any flag's. */
static const char sql_case_ack[] =
    "WITH upd AS ("
    "  UPDATE voidrecon.void_cases AS c"
    "     SET needs_followup = false, followup_acked_at = now(), followup_acked_by = $3::text,"
    "         followup_ack_note = $4::text, updated_at = now(), version = c.version + 1"
    "   WHERE c.order_no = $1::text AND c.void_code = $2::text AND c.needs_followup"
    "  RETURNING c.*"
    "), ack AS ("
    "  INSERT INTO voidrecon.acknowledgements (subject, order_no, void_code, reason, acked_by,"
    "                                          note)"
    "  SELECT 'void_case', upd.order_no, upd.void_code, upd.followup_reason, $3::text, $4::text"
    "    FROM upd"
    "  RETURNING id"
    ")"
    "SELECT (SELECT json_build_object('case', " CASE_JSON(
        "upd") ")::text FROM upd),"
               "       EXISTS (SELECT 1 FROM voidrecon.void_cases"
               "                WHERE order_no = $1::text AND void_code = $2::text)";

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

static const char sql_cancellations_list[] =
    "WITH page AS ("
    "  SELECT * FROM voidrecon.order_cancellations o"
    "   WHERE $2::bigint IS NULL OR o.id < $2::bigint"
    "   ORDER BY o.id DESC LIMIT $1::int"
    ")"
    "SELECT json_build_object('cancellations', coalesce(json_agg(json_build_object("
    "    'id', id, 'provider', provider, 'order_ref', order_ref, 'error_code', error_code,"
    "    'error_message', error_message, 'order_status', order_status,"
    "    'received_at', received_at, 'delivery_id', delivery_id,"
    "    'needs_followup', needs_followup, 'followup_acked_at', followup_acked_at,"
    "    'followup_acked_by', followup_acked_by) ORDER BY id DESC), '[]'::json),"
    "  'next_cursor', CASE WHEN count(*) = $1::int THEN min(id)::text END)::text"
    "  FROM page";

struct json_op {
    store_json_cb cb;
    void *arg;
    const char *what;
    bool ack;
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
        snprintf(err, sizeof(err), "%s: a cursor voidrecon did not give out", op->what);
        status = VR_EINVAL;
    } else if (status != 0) {
        status = db_classify(res, status, op->what, err, sizeof(err));
    } else if (PQntuples(res) == 0 || store_row_null(&row, 0)) {
        /* Only an acknowledgement answers NULL for a case that exists: it has no follow-up. */
        status = op->ack && PQntuples(res) > 0 && store_row_bool(&row, 1) ? VR_ESTATE : VR_ENOENT;
        snprintf(err, sizeof(err), "%s: %s", op->what,
                 status == VR_ESTATE ? "the case has no follow-up waiting to be acknowledged"
                                     : "no such void case");
    } else {
        json = store_row_text(&row, 0);
    }
    op->cb(status, json, err, op->arg);
    free(op);
}

static void run(struct store *st, const char *sql, int n, const char *const *params,
                const char *what, bool ack, store_json_cb cb, void *arg)
{
    struct json_op *op = xcalloc(1, sizeof(*op));

    op->cb = cb;
    op->arg = arg;
    op->what = what;
    op->ack = ack;
    db_query(st->db, sql, n, params, NULL, answered, op);
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

    run(st, sql_cases_list, 3, params, "listing cases", false, cb, arg);
}

void store_case_show(struct store *st, const char *order_no, const char *void_code,
                     store_json_cb cb, void *arg)
{
    const char *params[2] = {order_no, void_code};

    run(st, sql_case_show, 2, params, "showing a case", false, cb, arg);
}

void store_case_ack(struct store *st, const char *order_no, const char *void_code, const char *by,
                    const char *note, store_json_cb cb, void *arg)
{
    const char *params[4] = {order_no, void_code, by, note};

    run(st, sql_case_ack, 4, params, "acknowledging a follow-up", true, cb, arg);
}

void store_alerts_list(struct store *st, const char *state, unsigned limit, const char *cursor,
                       store_json_cb cb, void *arg)
{
    char lim[24];
    const char *params[3] = {state, limit_text(limit, lim, sizeof(lim)), cursor};

    run(st, sql_alerts_list, 3, params, "listing alerts", false, cb, arg);
}

void store_cancellations_list(struct store *st, unsigned limit, const char *cursor,
                              store_json_cb cb, void *arg)
{
    char lim[24];
    const char *params[2] = {limit_text(limit, lim, sizeof(lim)), cursor};

    run(st, sql_cancellations_list, 2, params, "listing order cancellations", false, cb, arg);
}
