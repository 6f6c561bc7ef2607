/* Deliveries as people read them (the listing, one delivery with its body and effects) and as
 * a replay loads them. One statement each; listings are JSON documents PostgreSQL builds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

/* Newest first by keyset on id; provider and outcome filters are served by the (provider, id)
 * and (outcome, id) indexes, the rest by the primary key. The statement is planned with its
 * parameters, so a NULL filter drops out of the plan. */
static const char sql_deliveries_list[] =
    "WITH page AS ("
    "  SELECT d.id, d.provider, d.event_type, d.received_at, d.remote_addr, d.outcome, d.reason,"
    "         coalesce(d.body_length, octet_length(d.body)) AS body_length,"
    "         octet_length(d.body) AS body_kept, d.replay_of, d.cid"
    "    FROM voidrecon.deliveries d"
    "   WHERE ($1::text IS NULL OR d.provider = $1::text)"
    "     AND ($2::text IS NULL OR d.outcome = $2::text)"
    "     AND ($4::bigint IS NULL OR d.id < $4::bigint)"
    "   ORDER BY d.id DESC LIMIT $3::int"
    ")"
    "SELECT json_build_object('deliveries', coalesce(json_agg(json_build_object("
    "    'id', id, 'provider', provider, 'event_type', event_type, 'received_at', received_at,"
    "    'remote_addr', remote_addr, 'outcome', outcome, 'reason', reason,"
    "    'body_length', body_length, 'body_complete', body_kept = body_length,"
    "    'replay_of', replay_of, 'cid', cid) ORDER BY id DESC), '[]'::json),"
    "  'next_cursor', CASE WHEN count(*) = $3::int THEN min(id)::text END)::text"
    "  FROM page";

static const char sql_delivery_show[] =
    "SELECT json_build_object("
    "  'delivery', json_build_object("
    "    'id', d.id, 'provider', d.provider, 'event_type', d.event_type,"
    "    'received_at', d.received_at, 'remote_addr', d.remote_addr, 'outcome', d.outcome,"
    "    'reason', d.reason, 'cid', d.cid, 'replay_of', d.replay_of,"
    "    'replays', (SELECT coalesce(json_agg(r.id ORDER BY r.id), '[]'::json)"
    "                  FROM voidrecon.deliveries r WHERE r.replay_of = d.id),"
    "    'body_length', coalesce(d.body_length, octet_length(d.body)),"
    "    'body_complete', octet_length(d.body) = coalesce(d.body_length, octet_length(d.body)),"
    "    'body_sha256', encode(coalesce(d.body_sha256, sha256(d.body)), 'hex'),"
    "    'body_encoding', CASE WHEN t.text IS NULL THEN 'base64' ELSE 'text' END,"
    "    'body', coalesce(t.text, translate(encode(d.body, 'base64'), E'\\n', '')),"
    "    'headers', d.headers),"
    "  'case_events', (SELECT coalesce(json_agg(json_build_object("
    "        'id', e.id, 'order_no', e.order_no, 'void_code', e.void_code, 'at', e.at,"
    "        'source', e.source, 'reported_status', e.reported_status,"
    "        'from_status', e.from_status, 'to_status', e.to_status, 'outcome', e.outcome,"
    "        'message', e.message) ORDER BY e.id), '[]'::json)"
    "      FROM voidrecon.void_case_events e WHERE e.delivery_id = d.id),"
    "  'cancellation', (SELECT json_build_object("
    "        'id', o.id, 'provider', o.provider, 'order_ref', o.order_ref,"
    "        'error_code', o.error_code, 'error_message', o.error_message,"
    "        'order_status', o.order_status, 'received_at', o.received_at,"
    "        'delivery_id', o.delivery_id, 'verified', o.verified,"
    "        'needs_followup', o.needs_followup, 'details', o.details)"
    "      FROM voidrecon.order_cancellations o WHERE o.delivery_id = d.id))::text"
    "  FROM voidrecon.deliveries d"
    "  CROSS JOIN LATERAL (SELECT voidrecon.utf8_or_null(d.body) AS text) t"
    " WHERE d.id = $1::bigint";

static const char sql_delivery_load[] =
    "SELECT id, provider, remote_addr, body, coalesce(body_length, octet_length(body)),"
    "       headers::text"
    "  FROM voidrecon.deliveries WHERE id = $1::bigint";

bool store_delivery_outcome_valid(const char *outcome)
{
    static const char *const outcomes[] = {"applied", "duplicate", "stale", "conflict",
                                           "ignored", "rejected",  "failed"};

    for (size_t i = 0; i < ARRAY_SIZE(outcomes); i++) {
        if (strcmp(outcome, outcomes[i]) == 0)
            return true;
    }
    return false;
}

struct json_op {
    store_json_cb cb;
    void *arg;
    const char *what;
};

static void answered(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct json_op *op = arg;
    char err[STORE_ERROR_BYTES] = "";
    const char *json = NULL;
    struct store_row row;

    (void)s;
    store_row_init(&row, res, 0);
    if (status != 0) {
        status = db_classify(res, status, op->what, err, sizeof(err));
    } else if (PQntuples(res) == 0 || store_row_null(&row, 0)) {
        status = VR_ENOENT;
        snprintf(err, sizeof(err), "%s: no such delivery", op->what);
    } else {
        json = store_row_text(&row, 0);
    }
    op->cb(status, json, err, op->arg);
    free(op);
}

static void run(struct store *st, const char *sql, int n, const char *const *params,
                const char *what, store_json_cb cb, void *arg)
{
    struct json_op *op = xcalloc(1, sizeof(*op));

    op->cb = cb;
    op->arg = arg;
    op->what = what;
    db_query(st->db, sql, n, params, NULL, answered, op);
}

void store_deliveries_list(struct store *st, const char *provider, const char *outcome,
                           unsigned limit, int64_t before_id, store_json_cb cb, void *arg)
{
    char lim[24], before[24];
    const char *params[4] = {provider, outcome,
                             store_u64_text(limit == 0                ? STORE_DEFAULT_LIMIT
                                            : limit > STORE_MAX_LIMIT ? STORE_MAX_LIMIT
                                                                      : limit,
                                            lim, sizeof(lim)),
                             before_id > 0 ? store_i64_text(before_id, before, sizeof(before))
                                           : NULL};

    run(st, sql_deliveries_list, 4, params, "listing deliveries", cb, arg);
}

void store_delivery_show(struct store *st, int64_t id, store_json_cb cb, void *arg)
{
    char num[24];
    const char *params[1] = {store_i64_text(id, num, sizeof(num))};

    run(st, sql_delivery_show, 1, params, "showing a delivery", cb, arg);
}

struct load_op {
    store_delivery_cb cb;
    void *arg;
};

static void loaded(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct load_op *op = arg;
    struct store_stored_delivery d;
    char err[STORE_ERROR_BYTES] = "";
    unsigned char *body = NULL;
    struct store_row row;
    size_t len = 0;

    (void)s;
    memset(&d, 0, sizeof(d));
    store_row_init(&row, res, 0);
    if (status != 0) {
        status = db_classify(res, status, "loading a delivery", err, sizeof(err));
    } else if (PQntuples(res) == 0) {
        status = VR_ENOENT;
        snprintf(err, sizeof(err), "loading a delivery: no such delivery");
    } else {
        d.id = store_row_i64(&row, 0);
        d.provider = store_row_text(&row, 1);
        d.remote_addr = store_row_text(&row, 2);
        d.whole_len = (uint64_t)store_row_i64(&row, 4);
        d.headers = store_row_text(&row, 5);
        status = store_row_check(&row, "loading a delivery", err, sizeof(err));
        /* Text results: the body comes escaped as bytea text. */
        if (status == 0 &&
            (body = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 3), &len)) == NULL)
            vr_panic("out of memory");
        d.body = (const char *)body;
        d.body_len = len;
    }
    op->cb(status, err, status == 0 ? &d : NULL, op->arg);
    PQfreemem(body);
    free(op);
}

void store_delivery_load(struct store *st, int64_t id, store_delivery_cb cb, void *arg)
{
    struct load_op *op = xcalloc(1, sizeof(*op));
    char num[24];
    const char *params[1] = {store_i64_text(id, num, sizeof(num))};

    op->cb = cb;
    op->arg = arg;
    db_query(st->db, sql_delivery_load, 1, params, NULL, loaded, op);
}
