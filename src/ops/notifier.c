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
#include "httpc.h"
#include "log.h"
#include "metrics.h"
#include "utf8.h"

#define DEFAULT_TICK_MS      250
#define DEFAULT_RETRY_MS     5000
#define DEFAULT_RETRY_MAX_MS 3600000
#define DEFAULT_LEASE_MS     60000
#define DEFAULT_CONCURRENCY  4

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
    struct store *st;
    struct httpc *http;
    struct notifier_config cfg;
    char *url;
    char *routing_key;
    char source[256]; /* this host's name: PagerDuty's payload.source */
    unsigned char *key;
    size_t keylen;
    uv_timer_t tick;
    uint64_t rng;
    unsigned in_flight;
    bool leasing;
    bool stopping;
    bool http_open;
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

static void recorded(int status, const char *error, int64_t count, void *arg)
{
    struct delivery *d = arg;

    if (status != 0)
        log_warn("alert_not_recorded", "alert=%" PRId64 ": %s", d->id, error);
    else if (count == 0)
        log_warn("alert_lease_lost", "alert=%" PRId64 ": another process took it over", d->id);
    delivery_done(d);
}

/* PagerDuty answers 400 to an event it will not take as it is: a malformed event, or a wrong
 * routing key, which refuses every alert until someone fixes it. 429 and 5xx are retried like
 * any other failure. */
static bool refused_as_is(const struct notifier *n, const struct httpc_response *r)
{
    return r->status == 0 && n->cfg.format == ALERT_FORMAT_PAGERDUTY && r->http_status == 400;
}

/* Why a failed attempt failed, into d->error. A refusal keeps what the receiver said, unless it
 * quotes the routing key anywhere. */
static void failure_text(struct delivery *d, const struct httpc_response *r, bool refused)
{
    const struct notifier *n = d->n;
    size_t keylen = strlen(n->routing_key);
    char said[160] = "";

    if (r->status != 0) {
        snprintf(d->error, sizeof(d->error), "%s", r->error);
        return;
    }
    if (!refused) {
        snprintf(d->error, sizeof(d->error), "HTTP %ld from the alert receiver", r->http_status);
        return;
    }
    if (keylen == 0 || memmem(r->body, r->body_len, n->routing_key, keylen) == NULL)
        utf8_copy_clean(said, sizeof(said), r->body, r->body_len);
    snprintf(d->error, sizeof(d->error),
             "HTTP 400 from the alert receiver: it refuses the event%s%s", said[0] ? ": " : "",
             said);
}

static void answered(const struct httpc_response *r, void *arg)
{
    struct delivery *d = arg;
    struct notifier *n = d->n;
    bool refused = refused_as_is(n, r);
    uint64_t wait;

    if (r->status == VR_ECLOSED) {
        delivery_done(d); /* stopping: the lease expires and the alert goes out again */
        return;
    }
    if (r->status == 0 && r->http_status >= 200 && r->http_status < 300) {
        metrics_alert_delivery(true);
        log_info("alert_delivered", "alert=%" PRId64 " kind=%s attempt=%d status=%ld", d->id,
                 d->kind, d->attempts, r->http_status);
        store_alert_delivered(n->st, d->id, d->lease_token, recorded, d);
        return;
    }
    failure_text(d, r, refused);
    metrics_alert_delivery(false);
    /* A refusal is kept undelivered and visible (last_error, the backlog) and tried again only
     * at the longest backoff: never given up, since its cause may be a setting fixed later. */
    wait = n->cfg.retry_max_ms;
    if (!refused) {
        wait = vr_backoff(n->cfg.retry_ms, d->attempts - 1, n->cfg.retry_max_ms, &n->rng);
        if (r->retry_after_s > 0 && (uint64_t)r->retry_after_s * 1000 > wait)
            wait = (uint64_t)r->retry_after_s * 1000;
    }
    log_warn(refused ? "alert_refused" : "alert_delivery_failed",
             "alert=%" PRId64 " kind=%s attempt=%d: %s; retry in %" PRIu64 " ms", d->id, d->kind,
             d->attempts, d->error, wait);
    store_alert_failed(n->st, d->id, d->lease_token, d->error, wait, recorded, d);
}

static void deliver(struct notifier *n, const struct store_alert_lease *l)
{
    struct delivery *d = xcalloc(1, sizeof(*d));
    char h_id[48], h_ts[48], h_sig[160], msg_id[24];
    const char *headers[5] = {"Content-Type: application/json", h_id, h_ts, NULL, NULL};
    int64_t ts = (int64_t)time(NULL);
    char *body = alert_render(&l->alert, n->cfg.format, n->routing_key, n->source);

    d->n = n;
    d->id = l->alert.id;
    d->kind = xstrdup(l->alert.kind);
    d->lease_token = l->lease_token;
    d->attempts = l->attempts;
    /* webhook-id stays the same across attempts: receivers deduplicate on it. */
    snprintf(msg_id, sizeof(msg_id), "%" PRId64, d->id);
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

static void leased(int status, const char *error, const struct store_alert_lease *leases,
                   size_t count, void *arg)
{
    struct notifier *n = arg;

    n->leasing = false;
    if (status != 0)
        /* Unreachable is said once, by the store going down; anything else every time. */
        log_at(status == VR_EUNAVAIL ? LOG_DEBUG : LOG_WARN, "alert_lease_failed", "%s", error);
    for (size_t i = 0; i < count && !n->stopping; i++)
        deliver(n, &leases[i]); /* when stopping, the leases expire and the alerts go out later */
    notifier_maybe_done(n);
}

static void on_tick(uv_timer_t *t)
{
    struct notifier *n = t->data;
    if (n->leasing || n->stopping || n->in_flight >= n->cfg.concurrency)
        return;
    n->leasing = true;
    store_alerts_lease(n->st, n->cfg.concurrency - n->in_flight, n->cfg.lease_ms, leased, n);
}

/* This host's name, the source PagerDuty shows; "voidrecon" when it has none. */
static void host_name(char *out, size_t cap)
{
    size_t len = cap;

    if (uv_os_gethostname(out, &len) != 0 || out[0] == '\0')
        snprintf(out, cap, "voidrecon");
}

struct notifier *notifier_new(uv_loop_t *loop, struct store *st, const struct notifier_config *cfg)
{
    struct notifier *n = xcalloc(1, sizeof(*n));

    n->cfg = *cfg;
    n->loop = loop;
    n->st = st;
    n->http = httpc_new(loop, &(struct httpc_config){.timeout_ms = cfg->timeout_ms});
    n->http_open = true;
    n->url = xstrdup(cfg->url);
    n->routing_key = xstrdup(cfg->routing_key ? cfg->routing_key : "");
    n->cfg.routing_key = NULL;
    host_name(n->source, sizeof(n->source));
    if (cfg->key != NULL) {
        n->key = xmalloc(cfg->keylen);
        memcpy(n->key, cfg->key, cfg->keylen);
        n->keylen = cfg->keylen;
    }
    n->cfg.url = NULL;
    n->cfg.key = NULL;
    VR_DEFAULT(n->cfg.tick_ms, DEFAULT_TICK_MS);
    VR_DEFAULT(n->cfg.retry_ms, DEFAULT_RETRY_MS);
    VR_DEFAULT(n->cfg.retry_max_ms, DEFAULT_RETRY_MAX_MS);
    VR_DEFAULT(n->cfg.lease_ms, DEFAULT_LEASE_MS);
    VR_DEFAULT(n->cfg.concurrency, DEFAULT_CONCURRENCY);
    n->rng = uv_hrtime() | 1;
    uv_timer_init(loop, &n->tick);
    n->tick.data = n;
    uv_timer_start(&n->tick, on_tick, 0, n->cfg.tick_ms);
    return n;
}

static void tick_closed(uv_handle_t *h)
{
    struct notifier *n = h->data;
    void (*done_cb)(void *arg) = n->done_cb;
    void *done_arg = n->done_arg;

    if (n->key != NULL)
        memset(n->key, 0, n->keylen);
    free(n->key);
    memset(n->routing_key, 0, strlen(n->routing_key));
    free(n->routing_key);
    free(n->url);
    free(n);
    if (done_cb != NULL)
        done_cb(done_arg);
}

/* Closing ends once nothing is in flight and the HTTP client is gone. */
static void notifier_maybe_done(struct notifier *n)
{
    if (!n->stopping || n->in_flight > 0 || n->leasing || n->http_open ||
        uv_is_closing((uv_handle_t *)&n->tick))
        return;
    uv_close((uv_handle_t *)&n->tick, tick_closed);
}

static void http_closed(void *arg)
{
    struct notifier *n = arg;

    n->http = NULL;
    n->http_open = false;
    notifier_maybe_done(n);
}

void notifier_close(struct notifier *n, void (*done_cb)(void *arg), void *arg)
{
    n->stopping = true;
    n->done_cb = done_cb;
    n->done_arg = arg;
    uv_timer_stop(&n->tick);
    /* A delivery still waiting for its receiver is not worth a slow shutdown: it ends here as
     * VR_ECLOSED, its lease expires and it is made again. Results in hand are recorded. */
    httpc_close(n->http, http_closed, n);
    notifier_maybe_done(n);
}
