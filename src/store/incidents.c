/* Incidents that concern every case at once: the poll circuit (atlas_failing) and the silence
 * of Atlas webhooks (webhooks_silent). Each opens and closes in one statement with its alert;
 * the unique index on the open incident of a kind lets only one process open it, and the row
 * lock lets only one close it, so each alert is raised once whatever the number of processes.
 * An alert's id is drawn only when the statement will insert it: ids keep no gaps per check. */
#include <stdlib.h>

#include "store_int.h"

static const char sql_circuit_open[] =
    "WITH n AS ("
    "  SELECT nextval(pg_get_serial_sequence('voidrecon.alerts', 'id')) AS id"
    "   WHERE NOT EXISTS (SELECT 1 FROM voidrecon.incidents"
    "                      WHERE kind = 'atlas_failing' AND closed_at IS NULL)"
    "), ins AS ("
    "  INSERT INTO voidrecon.incidents (kind, cause, detail, next_probe_at, alert_id)"
    "  SELECT 'atlas_failing', $1::text, $2::text,"
    "         now() + $6::bigint * interval '1 millisecond', n.id"
    "    FROM n"
    "  ON CONFLICT (kind) WHERE closed_at IS NULL DO NOTHING"
    "  RETURNING id, opened_at, alert_id"
    "), a AS ("
    "  INSERT INTO voidrecon.alerts (id, kind, payload)"
    "  SELECT ins.alert_id, 'atlas_failing', jsonb_build_object("
    "             'kind', 'atlas_failing', 'resolved', false, 'incident_id', ins.id,"
    "             'cause', $1::text, 'message', $2::text, 'atlas_status', $3::int,"
    "             'http_status', $4::int, 'cases', $5::int, 'opened_at', ins.opened_at,"
    "             'raised_at', now())"
    "    FROM ins"
    "  RETURNING id"
    ")"
    "SELECT coalesce((SELECT id FROM a), 0)";

static const char sql_circuit_close[] =
    "WITH n AS ("
    "  SELECT nextval(pg_get_serial_sequence('voidrecon.alerts', 'id')) AS id, i.id AS incident"
    "    FROM voidrecon.incidents AS i"
    "   WHERE i.kind = 'atlas_failing' AND i.closed_at IS NULL"
    "), c AS ("
    "  UPDATE voidrecon.incidents AS i SET closed_at = now(), resolve_alert_id = n.id"
    "    FROM n WHERE i.id = n.incident AND i.closed_at IS NULL"
    "  RETURNING i.id, i.cause, i.detail, i.opened_at, i.closed_at, i.probes, i.resolve_alert_id,"
    "            i.alert_id"
    "), a AS ("
    "  INSERT INTO voidrecon.alerts (id, kind, payload, resolves_alert_id)"
    "  SELECT c.resolve_alert_id, 'atlas_failing', jsonb_build_object("
    "             'kind', 'atlas_failing', 'resolved', true, 'incident_id', c.id,"
    "             'cause', c.cause, 'message', c.detail, 'opened_at', c.opened_at,"
    "             'closed_at', c.closed_at,"
    "             'duration_s', round(extract(epoch FROM c.closed_at - c.opened_at), 3),"
    "             'probes', c.probes, 'raised_at', now()), c.alert_id"
    "    FROM c"
    "  RETURNING id"
    ")"
    "SELECT coalesce((SELECT id FROM a), 0)";

/* $1: quiet_ms (0: off), $2: poll_changes (0: off). The last Atlas webhook leaves out refused
 * ones (a forger must not keep the alarm quiet) and replays (an operator's, not Atlas's). A
 * poll-found change is a poll event applied or in conflict (a poll answer that equals the case is a
 * duplicate). */
static const char sql_silence[] =
    "WITH last AS ("
    "  SELECT max(received_at) AS at FROM voidrecon.deliveries"
    "   WHERE provider = 'atlas' AND outcome <> 'rejected' AND replay_of IS NULL"
    "), oldest AS ("
    "  SELECT min(created_at) AS at FROM voidrecon.void_cases WHERE is_open"
    "), inc AS ("
    "  SELECT id, opened_at FROM voidrecon.incidents"
    "   WHERE kind = 'webhooks_silent' AND closed_at IS NULL"
    "), unreported AS ("
    "  SELECT count(*)::int AS n FROM ("
    "    SELECT 1 FROM voidrecon.void_case_events AS e"
    "     WHERE e.source = 'poll' AND e.outcome IN ('applied', 'conflict')"
    "       AND ((SELECT at FROM last) IS NULL OR e.at > (SELECT at FROM last))"
    "     LIMIT greatest($2::int, 0)) AS x"
    "), verdict AS ("
    "  SELECT CASE WHEN $1::bigint > 0 AND o.at IS NOT NULL"
    "               AND greatest(o.at, coalesce(l.at, o.at))"
    "                   <= now() - $1::bigint * interval '1 millisecond' THEN 'no_webhook'"
    "              WHEN $2::int > 0 AND u.n >= $2::int THEN 'unreported_changes' END AS reason,"
    "         l.at AS last_at, u.n"
    "    FROM oldest AS o, last AS l, unreported AS u"
    "), nopen AS ("
    "  SELECT nextval(pg_get_serial_sequence('voidrecon.alerts', 'id')) AS id, v.*"
    "    FROM verdict AS v WHERE v.reason IS NOT NULL AND NOT EXISTS (SELECT 1 FROM inc)"
    "), opened AS ("
    "  INSERT INTO voidrecon.incidents (kind, cause, detail, alert_id)"
    "  SELECT 'webhooks_silent', reason,"
    "         CASE reason WHEN 'no_webhook' THEN 'no Atlas webhook since '"
    "                          || coalesce(to_char(last_at AT TIME ZONE 'UTC',"
    "                                              'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    "                                      'ever')"
    "              ELSE n || ' status changes found by polls since the last Atlas webhook' END,"
    "         id"
    "    FROM nopen"
    "  ON CONFLICT (kind) WHERE closed_at IS NULL DO NOTHING"
    "  RETURNING id, cause, detail, opened_at, alert_id"
    "), a_open AS ("
    "  INSERT INTO voidrecon.alerts (id, kind, payload)"
    "  SELECT o.alert_id, 'webhooks_silent', jsonb_build_object("
    "             'kind', 'webhooks_silent', 'resolved', false, 'incident_id', o.id,"
    "             'reason', o.cause, 'message', o.detail, 'last_webhook_at', nopen.last_at,"
    "             'silence_ms', $1::bigint, 'unreported_changes', nopen.n,"
    "             'opened_at', o.opened_at, 'raised_at', now())"
    "    FROM opened AS o, nopen"
    "  RETURNING id"
    "), nclose AS ("
    "  SELECT nextval(pg_get_serial_sequence('voidrecon.alerts', 'id')) AS id, inc.id AS incident"
    "    FROM inc, last WHERE last.at > inc.opened_at"
    "), closed AS ("
    "  UPDATE voidrecon.incidents AS i SET closed_at = now(), resolve_alert_id = nclose.id"
    "    FROM nclose WHERE i.id = nclose.incident AND i.closed_at IS NULL"
    "  RETURNING i.id, i.cause, i.opened_at, i.closed_at, i.resolve_alert_id, i.alert_id"
    "), a_close AS ("
    "  INSERT INTO voidrecon.alerts (id, kind, payload, resolves_alert_id)"
    "  SELECT c.resolve_alert_id, 'webhooks_silent', jsonb_build_object("
    "             'kind', 'webhooks_silent', 'resolved', true, 'incident_id', c.id,"
    "             'reason', c.cause, 'last_webhook_at', (SELECT at FROM last),"
    "             'opened_at', c.opened_at, 'closed_at', c.closed_at,"
    "             'duration_s', round(extract(epoch FROM c.closed_at - c.opened_at), 3),"
    "             'raised_at', now()), c.alert_id"
    "    FROM closed AS c"
    "  RETURNING id"
    ")"
    "SELECT coalesce((SELECT id FROM a_open), 0), coalesce((SELECT id FROM a_close), 0),"
    "       CASE WHEN EXISTS (SELECT 1 FROM closed) THEN 0"
    "            ELSE coalesce((SELECT extract(epoch FROM opened_at)::bigint FROM opened),"
    "                          (SELECT extract(epoch FROM opened_at)::bigint FROM inc), 0) END";

void store_circuit_open(struct store *st, const struct store_circuit_cause *c, store_count_cb cb,
                        void *arg)
{
    char atlas[24], http[24], cases[24], probe[24];
    const char *params[6] = {
        c->cause,
        c->message,
        c->atlas_status != 0 ? store_i64_text(c->atlas_status, atlas, sizeof(atlas)) : NULL,
        c->http_status != 0 ? store_i64_text(c->http_status, http, sizeof(http)) : NULL,
        store_u64_text(c->cases, cases, sizeof(cases)),
        store_u64_text(c->probe_ms, probe, sizeof(probe))};

    store_run_count(st, sql_circuit_open, 6, params, "opening the Atlas circuit", cb, arg);
}

void store_circuit_close(struct store *st, store_count_cb cb, void *arg)
{
    store_run_count(st, sql_circuit_close, 0, NULL, "closing the Atlas circuit", cb, arg);
}

struct silence_op {
    store_silence_cb cb;
    void *arg;
};

static void silence_checked(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct silence_op *op = arg;
    char err[STORE_ERROR_BYTES] = "";
    struct store_silence out = {0};

    (void)s;
    if (status != 0) {
        status = db_classify(res, status, "checking the silence of webhooks", err, sizeof(err));
    } else {
        struct store_row row;

        store_row_init(&row, res, 0);
        out.raised_alert = store_row_i64(&row, 0);
        out.resolved_alert = store_row_i64(&row, 1);
        out.since_s = store_row_i64(&row, 2);
        out.silent = out.since_s != 0;
        status = store_row_check(&row, "checking the silence of webhooks", err, sizeof(err));
    }
    op->cb(status, err, status == 0 ? &out : NULL, op->arg);
    free(op);
}

void store_check_silence(struct store *st, uint64_t quiet_ms, unsigned poll_changes,
                         store_silence_cb cb, void *arg)
{
    struct silence_op *op = xcalloc(1, sizeof(*op));
    char quiet[24], changes[24];
    const char *params[2] = {store_u64_text(quiet_ms, quiet, sizeof(quiet)),
                             store_u64_text(poll_changes, changes, sizeof(changes))};

    op->cb = cb;
    op->arg = arg;
    db_query(st->db, sql_silence, 2, params, NULL, silence_checked, op);
}
