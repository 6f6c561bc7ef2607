/* The outbox relay: lease, POST, mark delivered or schedule the retry. At least once: an
 * attempt whose answer is lost is made again with the same webhook-id. */
#include "notifier.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alert.h"
#include "log.h"
#include "metrics.h"

#define DEFAULT_TICK_MS      250
#define DEFAULT_RETRY_MS     5000
#define DEFAULT_RETRY_MAX_MS 3600000
#define DEFAULT_LEASE_MS     60000
#define DEFAULT_CONCURRENCY  4

static const char sql_lease[] =
    "WITH due AS ("
    "  SELECT id FROM voidrecon.alerts"
    "   WHERE delivered_at IS NULL AND next_attempt_at <= now()"
    "     AND (lease_until IS NULL OR lease_until < now())"
    "   ORDER BY next_attempt_at, id LIMIT $1::int FOR UPDATE SKIP LOCKED"
    ")"
    "UPDATE voidrecon.alerts AS a"
    "   SET lease_token = nextval('voidrecon.alert_lease_seq'),"
    "       lease_until = now() + $2::bigint * interval '1 millisecond',"
    "       attempts = a.attempts + 1, last_attempt_at = now()"
    "  FROM due WHERE a.id = due.id"
    " RETURNING a.id, a.kind, a.order_no, a.void_code, a.payload::text,"
    "           to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    "           a.lease_token, a.attempts";

static const char sql_delivered[] =
    "UPDATE voidrecon.alerts SET delivered_at = now(), last_error = NULL, lease_token = NULL,"
    "       lease_until = NULL"
    " WHERE id = $1::bigint AND lease_token = $2::bigint";

static const char sql_failed[] =
    "UPDATE voidrecon.alerts SET last_error = $3::text, lease_token = NULL, lease_until = NULL,"
    "       next_attempt_at = now() + $4::bigint * interval '1 millisecond'"
    " WHERE id = $1::bigint AND lease_token = $2::bigint";

struct delivery {
    struct notifier *n;
    int64_t id;
    int64_t lease_token;
    int attempts;
    char *kind;
    char error[256];
};

struct notifier {
    uv_loop_t *loop;
    struct db *db;
    struct httpc *http;
    struct notifier_config cfg;
    char *url;
    unsigned char *key;
    size_t keylen;
    uv_timer_t tick;
    uint64_t rng;
    unsigned in_flight;
    bool leasing;
    bool stopping;
    void (*done_cb)(void *arg);
    void *done_arg;
};

static void notifier_maybe_done(struct notifier *n);

static void delivery_done(struct delivery *d)
{
    struct notifier *n = d->n;

    free(d->kind);
    free(d);
    n->in_flight--;
    notifier_maybe_done(n);
}

static void recorded(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct delivery *d = arg;

    (void)s;
    if (status != 0)
        log_warn("alert_not_recorded", "alert=%" PRId64 ": %s%s%s", d->id, vr_strerror(status),
                 res ? ": " : "", res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : "");
    else if (strcmp(PQcmdTuples(res), "0") == 0)
        log_warn("alert_lease_lost", "alert=%" PRId64 ": another process took it over", d->id);
    delivery_done(d);
}

static void answered(const struct httpc_response *r, void *arg)
{
    struct delivery *d = arg;
    struct notifier *n = d->n;
    char id[24], lease[24], delay[24];
    uint64_t wait;

    if (r->status == VR_ECLOSED) {
        delivery_done(d); /* stopping: the lease expires and the alert goes out again */
        return;
    }
    snprintf(id, sizeof(id), "%" PRId64, d->id);
    snprintf(lease, sizeof(lease), "%" PRId64, d->lease_token);
    if (r->status == 0 && r->http_status >= 200 && r->http_status < 300) {
        const char *params[2] = {id, lease};

        metrics_alert_delivery(true);
        log_info("alert_delivered", "alert=%" PRId64 " kind=%s attempt=%d status=%ld", d->id,
                 d->kind, d->attempts, r->http_status);
        db_query(n->db, sql_delivered, 2, params, NULL, recorded, d);
        return;
    }
    if (r->status != 0)
        snprintf(d->error, sizeof(d->error), "%s", r->error);
    else
        snprintf(d->error, sizeof(d->error), "HTTP %ld from the alert receiver", r->http_status);
    metrics_alert_delivery(false);
    wait = vr_backoff(n->cfg.retry_ms, d->attempts - 1, n->cfg.retry_max_ms, &n->rng);
    if (r->retry_after_s > 0 && (uint64_t)r->retry_after_s * 1000 > wait)
        wait = (uint64_t)r->retry_after_s * 1000;
    snprintf(delay, sizeof(delay), "%" PRIu64, wait);
    log_warn("alert_delivery_failed", "alert=%" PRId64 " kind=%s attempt=%d: %s; retry in %s ms",
             d->id, d->kind, d->attempts, d->error, delay);
    const char *params[4] = {id, lease, d->error, delay};
    db_query(n->db, sql_failed, 4, params, NULL, recorded, d);
}

static void deliver(struct notifier *n, PGresult *res, int row)
{
    struct delivery *d = xcalloc(1, sizeof(*d));
    struct alert a = {
        .id = strtoll(PQgetvalue(res, row, 0), NULL, 10),
        .kind = PQgetvalue(res, row, 1),
        .order_no = PQgetisnull(res, row, 2) ? NULL : PQgetvalue(res, row, 2),
        .void_code = PQgetisnull(res, row, 3) ? NULL : PQgetvalue(res, row, 3),
        .payload = PQgetvalue(res, row, 4),
        .created_at = PQgetvalue(res, row, 5),
    };
    char h_id[48], h_ts[48], h_sig[160], msg_id[24];
    const char *headers[5] = {"Content-Type: application/json", h_id, h_ts, NULL, NULL};
    int64_t ts = (int64_t)time(NULL);
    char *body = alert_body(&a);

    d->n = n;
    d->id = a.id;
    d->kind = xstrdup(a.kind);
    d->lease_token = strtoll(PQgetvalue(res, row, 6), NULL, 10);
    d->attempts = (int)strtol(PQgetvalue(res, row, 7), NULL, 10);
    /* webhook-id stays the same across attempts: receivers deduplicate on it. */
    snprintf(msg_id, sizeof(msg_id), "%" PRId64, a.id);
    snprintf(h_id, sizeof(h_id), "webhook-id: %s", msg_id);
    snprintf(h_ts, sizeof(h_ts), "webhook-timestamp: %" PRId64, ts);
    if (n->key != NULL) {
        char sig[128];

        alert_sign(n->key, n->keylen, msg_id, ts, body, strlen(body), sig, sizeof(sig));
        snprintf(h_sig, sizeof(h_sig), "webhook-signature: %s", sig);
        headers[3] = h_sig;
    }
    n->in_flight++;
    httpc_post(n->http, n->url, headers, body, strlen(body), answered, d);
    free(body);
}

static void leased(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct notifier *n = arg;

    (void)s;
    n->leasing = false;
    if (status != 0) {
        log_debug("alert_lease_failed", "%s", vr_strerror(status));
    } else {
        for (int i = 0; i < PQntuples(res); i++) {
            if (n->stopping) {
                break; /* the leases expire; the alerts go out after the restart */
            }
            deliver(n, res, i);
        }
    }
    notifier_maybe_done(n);
}

static void on_tick(uv_timer_t *t)
{
    struct notifier *n = t->data;
    char limit[16], lease[24];
    const char *params[2] = {limit, lease};

    if (n->leasing || n->stopping || n->in_flight >= n->cfg.concurrency)
        return;
    snprintf(limit, sizeof(limit), "%u", n->cfg.concurrency - n->in_flight);
    snprintf(lease, sizeof(lease), "%" PRIu64, n->cfg.lease_ms);
    n->leasing = true;
    db_query(n->db, sql_lease, 2, params, NULL, leased, n);
}

int notifier_new(struct notifier **out, uv_loop_t *loop, struct db *db, struct httpc *http,
                 const struct notifier_config *cfg)
{
    struct notifier *n = xcalloc(1, sizeof(*n));

    *out = NULL;
    n->cfg = *cfg;
    if (cfg->secret != NULL && cfg->secret[0] != '\0' &&
        alert_key_parse(cfg->secret, &n->key, &n->keylen) != 0) {
        free(n);
        return VR_EINVAL;
    }
    n->loop = loop;
    n->db = db;
    n->http = http;
    n->url = xstrdup(cfg->url);
    n->cfg.url = n->cfg.secret = NULL;
    VR_DEFAULT(n->cfg.tick_ms, DEFAULT_TICK_MS);
    VR_DEFAULT(n->cfg.retry_ms, DEFAULT_RETRY_MS);
    VR_DEFAULT(n->cfg.retry_max_ms, DEFAULT_RETRY_MAX_MS);
    VR_DEFAULT(n->cfg.lease_ms, DEFAULT_LEASE_MS);
    VR_DEFAULT(n->cfg.concurrency, DEFAULT_CONCURRENCY);
    n->rng = uv_hrtime() | 1;
    uv_timer_init(loop, &n->tick);
    n->tick.data = n;
    uv_timer_start(&n->tick, on_tick, 0, n->cfg.tick_ms);
    *out = n;
    return 0;
}

static void tick_closed(uv_handle_t *h)
{
    struct notifier *n = h->data;

    n->done_cb(n->done_arg);
}

static void notifier_maybe_done(struct notifier *n)
{
    if (!n->stopping || n->in_flight > 0 || n->leasing || n->done_cb == NULL ||
        uv_is_closing((uv_handle_t *)&n->tick))
        return;
    uv_close((uv_handle_t *)&n->tick, tick_closed);
}

void notifier_stop(struct notifier *n, void (*done_cb)(void *arg), void *arg)
{
    n->stopping = true;
    n->done_cb = done_cb;
    n->done_arg = arg;
    uv_timer_stop(&n->tick);
    notifier_maybe_done(n);
}

void notifier_free(struct notifier *n)
{
    if (n == NULL)
        return;
    if (n->key != NULL)
        memset(n->key, 0, n->keylen);
    free(n->key);
    free(n->url);
    free(n);
}
