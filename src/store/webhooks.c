/* Webhooks that touch no void case: plain deliveries (ignored or rejected) and order
 * cancellations, one statement each, written in the writer's batches (writer.c). */
#include <stdio.h>
#include <string.h>

#include "store_int.h"

static const char sql_delivery[] =
    "INSERT INTO voidrecon.deliveries (provider, event_type, remote_addr, body, outcome, reason,"
    "                                  body_length, body_sha256, headers, replay_of, cid)"
    " VALUES ($1::text, $2::text, $3::text, $4::bytea, $5::text, $6::text,"
    "         COALESCE($7::bigint, octet_length($4::bytea)), COALESCE($8::bytea, "
    "sha256($4::bytea)), $9::jsonb, $10::bigint, $11::text)"
    " RETURNING id";

/* The cancellation and its delivery point at each other's rows, so the delivery id is drawn
 * first, and so is its alert's (which its acknowledgement resolves) when one is due and the
 * order is new; a repeat of a known order inserts nothing but the delivery, as a duplicate. */
static const char sql_cancellation[] =
    "WITH n AS ("
    "  SELECT nextval(pg_get_serial_sequence('voidrecon.deliveries', 'id')) AS id,"
    "         CASE WHEN $9::boolean AND NOT EXISTS ("
    "                  SELECT 1 FROM voidrecon.order_cancellations"
    "                   WHERE provider = $1::text AND order_ref = $5::text)"
    "              THEN nextval(pg_get_serial_sequence('voidrecon.alerts', 'id')) END AS aid"
    "), oc AS ("
    "  INSERT INTO voidrecon.order_cancellations (provider, order_ref, error_code, error_message,"
    "                                             order_status, delivery_id, details, verified,"
    "                                             alert_id)"
    "  SELECT $1::text, $5::text, $6::text, $7::text, $8::text, n.id, $10::jsonb, $11::boolean,"
    "         n.aid"
    "    FROM n"
    "  ON CONFLICT (provider, order_ref) DO NOTHING"
    "  RETURNING id, alert_id"
    "), d AS ("
    "  INSERT INTO voidrecon.deliveries (id, provider, event_type, remote_addr, body, outcome,"
    "                                   body_length, body_sha256, headers, replay_of, cid)"
    "  SELECT n.id, $1::text, $2::text, $3::text, $4::bytea,"
    "         CASE WHEN EXISTS (SELECT 1 FROM oc) THEN 'applied' ELSE 'duplicate' END,"
    "         octet_length($4::bytea), sha256($4::bytea), $12::jsonb, $13::bigint, $14::text"
    "    FROM n"
    "  RETURNING id, outcome"
    "), a AS ("
    "  INSERT INTO voidrecon.alerts (id, kind, order_no, payload)"
    "  SELECT oc.alert_id, 'order_cancelled', $5::text, jsonb_build_object("
    "             'kind', 'order_cancelled', 'provider', $1::text, 'order_no', $5::text,"
    "             'error_code', $6::text, 'error_message', $7::text, 'order_status', $8::text,"
    "             'details', $10::jsonb, 'verified', $11::boolean, 'raised_at', now())"
    "    FROM oc WHERE oc.alert_id IS NOT NULL"
    "  RETURNING id"
    ")"
    "SELECT d.id, d.outcome, (SELECT id FROM a) FROM d";

int store_delivery_read(struct store_op *op, const PGresult *res)
{
    struct store_row row;

    store_row_init(&row, res, 0);
    op->result.delivery_id = store_row_i64(&row, 0);
    op->result.outcome = op->outcome;
    return store_row_check(&row, "storing a delivery", op->error, sizeof(op->error));
}

void store_delivery_send(struct store_op *op, struct db_session *s, db_result_cb cb, void *arg)
{
    const struct store_delivery *d = op->d;
    char whole_len[24], replay_of[24];
    const char *params[11] = {d->provider,
                              d->event_type,
                              d->remote_addr,
                              d->body,
                              op->outcome,
                              op->reason,
                              d->whole_len > 0 ? whole_len : NULL,
                              d->whole_len > 0 ? (const char *)d->whole_sha256 : NULL,
                              d->headers,
                              store_delivery_replay_of(d, replay_of, sizeof(replay_of)),
                              d->cid};
    int lengths[11] = {-1, -1, -1, (int)d->body_len, -1, -1, -1, d->whole_len > 0 ? 32 : -1,
                       -1, -1, -1};

    snprintf(whole_len, sizeof(whole_len), "%zu", d->whole_len);
    db_session_prepared(s, STMT_DELIVERY, sql_delivery, 11, params, lengths, cb, arg);
}

void store_record_delivery(struct store *st, const struct store_delivery *d, const char *outcome,
                           const char *reason, store_done_cb cb, void *arg)
{
    struct store_op *op = store_op_new(st, d, cb, arg);

    op->kind = ITEM_DELIVERY;
    op->outcome = outcome;
    op->reason = reason;
    store_write(op);
}

int store_cancellation_read(struct store_op *op, const PGresult *res)
{
    struct store_row row;
    const char *outcome;

    store_row_init(&row, res, 0);
    op->result.delivery_id = store_row_i64(&row, 0);
    outcome = store_row_text(&row, 1);
    op->result.outcome =
        outcome != NULL && strcmp(outcome, "applied") == 0 ? "applied" : "duplicate";
    op->result.alert_id = store_row_i64(&row, 2);
    return store_row_check(&row, "storing an order cancellation", op->error, sizeof(op->error));
}

void store_cancellation_send(struct store_op *op, struct db_session *s, db_result_cb cb, void *arg)
{
    const struct store_delivery *d = op->d;
    const struct store_cancellation *c = op->canc;
    char replay_of[24];
    const char *params[14] = {d->provider,
                              d->event_type,
                              d->remote_addr,
                              d->body,
                              c->order_ref,
                              c->error_code,
                              c->error_message,
                              c->order_status,
                              c->alert ? "true" : "false",
                              c->details,
                              c->verified ? "true" : "false",
                              d->headers,
                              store_delivery_replay_of(d, replay_of, sizeof(replay_of)),
                              d->cid};
    int lengths[14] = {-1, -1, -1, (int)d->body_len, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};

    db_session_prepared(s, STMT_CANCELLATION, sql_cancellation, 14, params, lengths, cb, arg);
}

void store_record_cancellation(struct store *st, const struct store_delivery *d,
                               const struct store_cancellation *c, store_done_cb cb, void *arg)
{
    struct store_op *op = store_op_new(st, d, cb, arg);

    op->kind = ITEM_CANCELLATION;
    op->canc = c;
    store_write(op);
}
