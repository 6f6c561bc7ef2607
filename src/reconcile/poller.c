/* Leases due cases, polls Atlas within a token bucket and a concurrency cap, applies answers as
 * source "poll", backs off on failures, and sweeps for stuck cases. */
#include "poller.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "utf8.h"

#define DEFAULT_TICK_MS         1000
#define DEFAULT_MAX_INTERVAL_MS 3600000
#define DEFAULT_RETRY_MS        10000
#define DEFAULT_LEASE_MS        25000
#define DEFAULT_STUCK_AFTER_MS  86400000
#define DEFAULT_CONCURRENCY     8
#define DEFAULT_MAX_RPS         10
#define DEFAULT_FAILURES_ALERT  10
/* The stuck sweep is one indexed statement; once a second is plenty for a 24 h threshold. */
#define SWEEP_EVERY_MS  1000
#define SWEEP_MAX_CASES 1000
/* A 429 without retryAfter still pauses polling this long (within the cap). */
#define RATE_LIMIT_PAUSE_MS 1000
/* What is kept of a free-text field of an answer (cancelReason, voidMethod). */
#define ATLAS_TEXT_BYTES 1024
#define ERROR_BYTES      256

struct poll_job {
    struct poller *p;
    char *order_no;
    char *void_code;
    int64_t version;
    int64_t lease_token;
    int polls;
    int poll_failures;
    bool fallback; /* the failure is recorded with a plain text, the first try having failed */
    char error[ERROR_BYTES];
    struct atlas_void_order answer;
    struct store_void_details details;
    struct store_void_report rep;
};

struct poller {
    uv_loop_t *loop;
    struct store *st;
    struct atlas_client *client;
    struct poller_config cfg;
    uv_timer_t tick;
    double tokens;
    uint64_t refilled_at;
    uint64_t paused_until;
    uint64_t swept_at;
    uint64_t rng;
    unsigned in_flight;
    bool leasing;
    bool sweeping;
    bool stopping;
    bool client_open;
    void (*done_cb)(void *arg);
    void *done_arg;
};

static void poller_maybe_done(struct poller *p);

static uint64_t grow(struct poller *p, uint64_t base, int n)
{
    return vr_backoff(base, n, p->cfg.max_interval_ms, &p->rng);
}

static void job_free(struct poll_job *j)
{
    free(j->order_no);
    free(j->void_code);
    atlas_void_order_cleanup(&j->answer);
    free(j);
}

static void job_done(struct poll_job *j)
{
    struct poller *p = j->p;

    job_free(j);
    p->in_flight--;
    poller_maybe_done(p);
}

/* ---- answers ------------------------------------------------------------------------------ */

static void poll_failure_record(struct poll_job *j, uint64_t delay);

static void applied(int status, const struct store_result *res, void *arg)
{
    struct poll_job *j = arg;

    if (status == VR_EDB) {
        /* Retrying blind would fail the same way at every lease: count it instead, so that
         * the case backs off and ends poll_failing like any other failing poll. */
        char clean[ERROR_BYTES - 40];

        utf8_copy_clean(clean, sizeof(clean), res->error, strlen(res->error));
        snprintf(j->error, sizeof(j->error), "the answer could not be stored: %s", clean);
        metrics_poll("failed");
        log_warn("poll_not_stored", "order=%s void=%s: %s", j->order_no, j->void_code, j->error);
        poll_failure_record(j, grow(j->p, j->p->cfg.retry_ms, j->poll_failures));
        return;
    }
    if (status == 0 || status == VR_ESTATE)
        metrics_poll(status == 0 ? "ok" : "lease_lost");
    if (status == 0)
        metrics_transition("poll", res->outcome);
    if (status == 0 && strcmp(res->outcome, "duplicate") != 0)
        log_info("poll_applied", "order=%s void=%s status=%d outcome=%s alert=%" PRId64,
                 j->order_no, j->void_code, j->rep.status, res->outcome, res->alert_id);
    else if (status == VR_ESTATE)
        log_debug("poll_lease_lost", "order=%s void=%s: answer dropped", j->order_no, j->void_code);
    else if (status != 0)
        log_warn("poll_not_stored", "order=%s void=%s: %s", j->order_no, j->void_code, res->error);
    job_done(j);
}

static void failure_stored(int status, const struct store_result *res, void *arg)
{
    struct poll_job *j = arg;

    if (status == VR_EDB && !j->fallback) {
        /* Whatever the text held, this one can be written. */
        log_warn("poll_failure_not_stored", "order=%s void=%s: %s; recording it without its text",
                 j->order_no, j->void_code, res->error);
        j->fallback = true;
        snprintf(j->error, sizeof(j->error), "poll failed; its error text could not be stored");
        poll_failure_record(j, grow(j->p, j->p->cfg.retry_ms, j->poll_failures));
        return;
    }
    if (status == 0 && res->alert_id != 0)
        log_warn("poll_failing", "order=%s void=%s: %d polls failed in a row; alert %" PRId64,
                 j->order_no, j->void_code, j->poll_failures + 1, res->alert_id);
    else if (status != 0 && status != VR_ESTATE)
        log_warn("poll_failure_not_stored", "order=%s void=%s: %s", j->order_no, j->void_code,
                 res->error);
    job_done(j);
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? xstrdup(s) : NULL;
}

/* A copy of text from Atlas that PostgreSQL will take: valid UTF-8 without NUL (bad bytes
 * become '?'), at most max bytes, cut on a character. NULL stays NULL. */
static char *atlas_text(const char *s, size_t max)
{
    size_t len, n;
    char *out;

    if (s == NULL)
        return NULL;
    len = strlen(s);
    if (utf8_text_ok(s, len))
        return xstrndup(s, utf8_cut(s, len, max));
    n = len < max ? len : max;
    out = xmalloc(n + 1);
    utf8_copy_clean(out, n + 1, s, len);
    return out;
}

static void poll_failure_record(struct poll_job *j, uint64_t delay)
{
    struct poller *p = j->p;

    store_poll_failed(p->st, j->order_no, j->void_code, j->lease_token, j->error, delay,
                      p->cfg.failures_alert, failure_stored, j);
}

/* Applies a good answer as source "poll"; the reply is borrowed, so the job keeps its own copy
 * of what the store will write. */
static void answer_apply(struct poll_job *j, const struct atlas_void_order *o)
{
    struct poller *p = j->p;

    j->answer.void_status = o->void_status;
    j->answer.cancel_reason = atlas_text(o->cancel_reason, ATLAS_TEXT_BYTES);
    j->answer.void_method = atlas_text(o->void_method, ATLAS_TEXT_BYTES);
    j->answer.expected_confirmation_date = dup_or_null(o->expected_confirmation_date);
    j->answer.expected_refund_date = dup_or_null(o->expected_refund_date);
    /* The whole item, cleaned, never cut: bounded by the answer's size limit. Replacing a bad
     * byte with '?' inside a JSON string keeps the JSON valid. */
    j->answer.item_json = atlas_text(o->item_json, SIZE_MAX - 1);
    j->details = (struct store_void_details){
        .cancel_reason = j->answer.cancel_reason,
        .void_method = j->answer.void_method,
        .expected_confirmation_date = j->answer.expected_confirmation_date,
        .expected_refund_date = j->answer.expected_refund_date,
        .raw_json = j->answer.item_json,
    };
    j->rep = (struct store_void_report){
        .order_no = j->order_no,
        .void_code = j->void_code,
        .status = o->void_status,
        .message = j->answer.cancel_reason,
        .source = VOIDCASE_SOURCE_POLL,
        .seen_version = j->version,
        .lease_token = j->lease_token,
        /* A first poll at once (first_ms 0) still does not make every later one so. */
        .next_poll_ms =
            grow(p, p->cfg.first_ms > p->cfg.tick_ms ? p->cfg.first_ms : p->cfg.tick_ms, j->polls),
        .details = &j->details,
    };
    store_apply_void(p->st, NULL, &j->rep, applied, j);
}

static void deferred(int status, const char *error, int64_t count, void *arg)
{
    struct poll_job *j = arg;

    (void)count; /* 0: the lease was lost; whoever holds it now polls the case */
    if (status != 0)
        log_at(status == VR_EUNAVAIL ? LOG_DEBUG : LOG_WARN, "poll_defer_failed",
               "order=%s void=%s: %s", j->order_no, j->void_code, error);
    job_done(j);
}

/* Gives the case back, untouched but for its schedule, until the pause ends. */
static void job_defer(struct poll_job *j)
{
    struct poller *p = j->p;
    uint64_t now = uv_now(p->loop);

    store_poll_deferred(p->st, j->order_no, j->void_code, j->lease_token,
                        p->paused_until > now ? p->paused_until - now : 0, deferred, j);
}

/* Atlas asked every poll to wait asked_ms (0: it did not say how long). The wait is capped at
 * the longest poll interval: a header of 10^8 seconds must not stop polling for years. */
static void pause_all(struct poller *p, uint64_t asked_ms)
{
    uint64_t pause = asked_ms ? asked_ms : RATE_LIMIT_PAUSE_MS;
    uint64_t now = uv_now(p->loop);
    char why[96];

    if (pause > p->cfg.max_interval_ms)
        pause = p->cfg.max_interval_ms;
    if (now + pause <= p->paused_until)
        return;
    p->paused_until = now + pause;
    snprintf(why, sizeof(why), "rate limited by Atlas (HTTP 429)");
    log_warn("poller_paused",
             "Atlas answered 429: no poll for %" PRIu64 " ms (asked for %" PRIu64
             " ms, capped at %" PRIu64 " ms)",
             pause, asked_ms, p->cfg.max_interval_ms);
    if (p->cfg.pause_cb != NULL)
        p->cfg.pause_cb(p->paused_until, why, p->cfg.pause_arg);
}

/* Records a failed poll and when to try again; a 429 pauses every poll instead: the limit is
 * the client's, not the case's. */
static void answer_failed(struct poll_job *j, const struct atlas_reply *reply)
{
    struct poller *p = j->p;
    uint64_t delay = grow(p, p->cfg.retry_ms, j->poll_failures);

    if (reply->http_status == 429) {
        pause_all(p, reply->retry_after_ms);
        metrics_poll("rate_limited");
        job_defer(j);
        return;
    }
    metrics_poll("failed");
    utf8_copy_clean(j->error, sizeof(j->error), reply->error, strlen(reply->error));
    log_warn("poll_failed", "order=%s void=%s: %s; retry in %" PRIu64 " ms", j->order_no,
             j->void_code, j->error, delay);
    poll_failure_record(j, delay);
}

static void answered(const struct atlas_reply *reply, void *arg)
{
    struct poll_job *j = arg;

    if (reply->status == VR_ECLOSED)
        job_done(j); /* shutting down: the lease expires and another poll takes the case */
    else if (reply->status == 0)
        answer_apply(j, &reply->order);
    else
        answer_failed(j, reply);
}

/* ---- leasing and sweeping ----------------------------------------------------------------- */

static void leased(int status, const char *error, const struct store_lease *leases, size_t n,
                   void *arg)
{
    struct poller *p = arg;

    p->leasing = false;
    if (status != 0) {
        /* Unreachable is said once, by the store going down; anything else every time. */
        log_at(status == VR_EUNAVAIL ? LOG_DEBUG : LOG_WARN, "poll_lease_failed", "%s", error);
        poller_maybe_done(p);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct poll_job *j = xcalloc(1, sizeof(*j));

        j->p = p;
        j->order_no = xstrdup(leases[i].order_no);
        j->void_code = xstrdup(leases[i].void_code);
        j->version = leases[i].version;
        j->lease_token = leases[i].lease_token;
        j->polls = leases[i].polls;
        j->poll_failures = leases[i].poll_failures;
        p->tokens -= 1;
        p->in_flight++;
        if (p->stopping) {
            job_done(j); /* the lease expires; the next process to run polls the case */
            continue;
        }
        if (uv_now(p->loop) < p->paused_until) {
            /* A 429 came back while this lease was being taken: give the case back until the
             * pause ends (a pause can outlast the lease). */
            job_defer(j);
            continue;
        }
        atlas_client_query(p->client, j->order_no, j->void_code, answered, j);
    }
    poller_maybe_done(p);
}

static void swept(int status, const char *error, int64_t count, void *arg)
{
    struct poller *p = arg;

    p->sweeping = false;
    if (status != 0)
        log_at(status == VR_EUNAVAIL ? LOG_DEBUG : LOG_WARN, "stuck_sweep_failed", "%s", error);
    else if (count > 0)
        log_warn("void_stuck",
                 "%" PRId64 " case(s) open for more than %" PRIu64 " ms flagged stuck", count,
                 p->cfg.stuck_after_ms);
    poller_maybe_done(p);
}

static void on_tick(uv_timer_t *t)
{
    struct poller *p = t->data;
    uint64_t now = uv_now(p->loop);
    double budget;

    p->tokens += (double)(now - p->refilled_at) * p->cfg.max_rps / 1000.0;
    if (p->tokens > p->cfg.max_rps)
        p->tokens = p->cfg.max_rps; /* bursts of at most one second's worth */
    p->refilled_at = now;
    if (!p->sweeping && now - p->swept_at >= SWEEP_EVERY_MS) {
        p->sweeping = true;
        p->swept_at = now;
        store_flag_stuck(p->st, p->cfg.stuck_after_ms, SWEEP_MAX_CASES, swept, p);
    }
    if (p->client == NULL || now < p->paused_until)
        return;
    if (p->leasing)
        return;
    budget = p->cfg.concurrency - p->in_flight;
    if (budget > p->tokens)
        budget = p->tokens;
    if (budget < 1)
        return;
    p->leasing = true;
    store_lease_due(p->st, (unsigned)budget, p->cfg.lease_ms, leased, p);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static void config_defaults(struct poller_config *cfg)
{
    VR_DEFAULT(cfg->tick_ms, DEFAULT_TICK_MS);
    VR_DEFAULT(cfg->max_interval_ms, DEFAULT_MAX_INTERVAL_MS);
    VR_DEFAULT(cfg->retry_ms, DEFAULT_RETRY_MS);
    VR_DEFAULT(cfg->lease_ms, DEFAULT_LEASE_MS);
    VR_DEFAULT(cfg->stuck_after_ms, DEFAULT_STUCK_AFTER_MS);
    VR_DEFAULT(cfg->concurrency, DEFAULT_CONCURRENCY);
    VR_DEFAULT(cfg->max_rps, DEFAULT_MAX_RPS);
    VR_DEFAULT(cfg->failures_alert, DEFAULT_FAILURES_ALERT);
}

struct poller *poller_new(uv_loop_t *loop, struct store *st, const struct poller_config *cfg)
{
    struct poller *p = xcalloc(1, sizeof(*p));

    p->loop = loop;
    p->st = st;
    p->cfg = *cfg;
    if (cfg->atlas.base_url != NULL && cfg->atlas.base_url[0] != '\0') {
        p->client = atlas_client_new(loop, &cfg->atlas);
        p->client_open = true;
    }
    p->cfg.atlas = (struct atlas_client_config){0}; /* its strings are the caller's */
    config_defaults(&p->cfg);
    p->rng = uv_hrtime() | 1;
    p->refilled_at = uv_now(loop);
    p->tokens = p->cfg.max_rps < p->cfg.concurrency ? p->cfg.max_rps : p->cfg.concurrency;
    uv_timer_init(loop, &p->tick);
    p->tick.data = p;
    uv_timer_start(&p->tick, on_tick, 0, p->cfg.tick_ms);
    return p;
}

static void tick_closed(uv_handle_t *h)
{
    struct poller *p = h->data;
    void (*done_cb)(void *arg) = p->done_cb;
    void *done_arg = p->done_arg;

    free(p);
    if (done_cb != NULL)
        done_cb(done_arg);
}

/* Closing ends once nothing is in flight and the Atlas client is gone. */
static void poller_maybe_done(struct poller *p)
{
    if (!p->stopping || p->in_flight > 0 || p->leasing || p->sweeping || p->client_open ||
        uv_is_closing((uv_handle_t *)&p->tick))
        return;
    uv_close((uv_handle_t *)&p->tick, tick_closed);
}

static void client_closed(void *arg)
{
    struct poller *p = arg;

    p->client = NULL;
    p->client_open = false;
    poller_maybe_done(p);
}

void poller_close(struct poller *p, void (*done_cb)(void *arg), void *arg)
{
    p->stopping = true;
    p->done_cb = done_cb;
    p->done_arg = arg;
    uv_timer_stop(&p->tick);
    /* A poll still waiting for Atlas is not worth a slow shutdown: it ends here as
     * VR_ECLOSED, its lease expires and it is made again. Answers in hand are still applied. */
    if (p->client != NULL)
        atlas_client_close(p->client, client_closed, p);
    poller_maybe_done(p);
}
