/* Leases due cases, polls Atlas within the database's token bucket and a concurrency cap,
 * applies answers as source "poll", backs off on a case's own failures, opens the circuit on
 * failures that are everyone's, and sweeps for stuck cases and silent webhooks. */
#include "poller.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "atlas.h"
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
#define DEFAULT_CIRCUIT_CASES   3
#define DEFAULT_PROBE_MAX_MS    300000
/* The stuck sweep is one indexed statement; once a second is plenty for a 24 h threshold. */
#define SWEEP_EVERY_MS  1000
#define SWEEP_MAX_CASES 1000
/* A 429 without retryAfter still pauses polling this long (within the cap). */
#define RATE_LIMIT_PAUSE_MS 1000
/* Failures held for the circuit wait at least this long for another process's opening. */
#define HOLD_GRACE_MS 250
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
    bool failed_for_good; /* the case's last failure was one no retry changes */
    bool probe;           /* leased as the open circuit's probe */
    bool for_good;        /* this failure is one no retry changes */
    struct poll_job *next_held;
    enum atlas_failure failure;
    int atlas_status;
    long http_status;
    char error[ERROR_BYTES];
    struct atlas_void_order answer;
    struct store_void_details details;
    struct store_void_report rep;
};

/* The circuit as this process knows it. Failures that are everyone's are held (their leases
 * kept, their counts untouched) until the next answer tells whose they were: a good answer or
 * a case's own failure means they were the cases' own, and they are counted; circuit_cases of
 * them in a row, distinct cases (rate-limit pauses count too), open the circuit, and they are
 * given back uncounted. Held too long, or with nothing else asked, they are counted. */
struct circuit {
    struct poll_job *held; /* a list through next_held */
    unsigned held_n;
    unsigned rate_limited; /* rate-limit pauses in a row, no good answer between, each set off
                              by another case than the one before */
    char *rate_limited_by; /* "order\nvoid" of the case that set off the last one */
    uint64_t held_since;
    bool open;           /* as last known: opened here, or seen by a lease */
    bool busy;           /* an open or a close is under way */
    bool close_after;    /* a good answer came while the open was under way */
    unsigned generation; /* moves when an open or close ends: older lease views are stale */
    int64_t since_s;
};

struct poller {
    uv_loop_t *loop;
    struct store *st;
    struct atlas_client *client;
    struct poller_config cfg;
    uv_timer_t tick;
    uint64_t paused_until;
    uint64_t swept_at;
    uint64_t rng;
    unsigned in_flight;
    uint64_t lease_started_at; /* of the lease under way */
    uint64_t empty_lease_at;   /* when the last lease that found no case due started */
    struct circuit circuit;
    bool leasing;
    bool more_due; /* the last lease took all it asked for: more cases may be due */
    bool sweeping;
    bool checking_silence;
    bool silent;
    bool stopping;
    bool client_open;
    void (*done_cb)(void *arg);
    void *done_arg;
};

static void poller_maybe_done(struct poller *p);
static void on_tick(uv_timer_t *t);

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
    /* A slot is free and more may be due: lease now rather than at the next tick, so that
     * polling runs at POLL_MAX_RPS, not at POLL_CONCURRENCY cases a tick. */
    if (p->more_due && !p->stopping && !uv_is_closing((uv_handle_t *)&p->tick))
        uv_timer_start(&p->tick, on_tick, 0, p->cfg.tick_ms);
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
        poll_failure_record(j, j->for_good ? j->p->cfg.max_interval_ms
                                           : grow(j->p, j->p->cfg.retry_ms, j->poll_failures));
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

/* The failure count at which this failure flags the case poll_failing: at once for one no retry
 * changes, at failures_alert for the others; 0 (never) when the run is flagged already. */
static unsigned alert_threshold(const struct poll_job *j, unsigned failures_alert)
{
    if (j->failed_for_good || (unsigned)j->poll_failures >= failures_alert)
        return 0;
    return j->for_good ? (unsigned)j->poll_failures + 1 : failures_alert;
}

static void poll_failure_record(struct poll_job *j, uint64_t delay)
{
    struct poller *p = j->p;

    store_poll_failed(p->st, j->order_no, j->void_code, j->lease_token, j->error, delay,
                      alert_threshold(j, p->cfg.failures_alert), j->for_good, failure_stored, j);
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

/* Gives the case back, untouched but for its schedule, until the pause ends (at once while the
 * circuit is open: the lease keeps it to the probes then). */
static void job_defer(struct poll_job *j)
{
    struct poller *p = j->p;
    uint64_t now = uv_now(p->loop);

    store_poll_deferred(p->st, j->order_no, j->void_code, j->lease_token,
                        p->paused_until > now ? p->paused_until - now : 0, deferred, j);
}

/* Atlas asked every poll to wait asked_ms (0: it did not say how long). The wait is capped at
 * the longest poll interval: a header of 10^8 seconds must not stop polling for years. False
 * when a pause as long was on already (answers to requests sent before it). */
static bool pause_all(struct poller *p, uint64_t asked_ms, const struct poll_job *j)
{
    uint64_t pause = asked_ms ? asked_ms : RATE_LIMIT_PAUSE_MS;
    uint64_t now = uv_now(p->loop);
    char why[96];

    if (pause > p->cfg.max_interval_ms)
        pause = p->cfg.max_interval_ms;
    if (now + pause <= p->paused_until)
        return false;
    p->paused_until = now + pause;
    if (j->http_status == 429)
        snprintf(why, sizeof(why), "rate limited by Atlas (HTTP 429)");
    else
        snprintf(why, sizeof(why), "rate limited by Atlas (status %d)", j->atlas_status);
    log_warn("poller_paused",
             "%s: no poll for %" PRIu64 " ms (asked for %" PRIu64 " ms, capped at %" PRIu64 " ms)",
             why, pause, asked_ms, p->cfg.max_interval_ms);
    if (p->cfg.pause_cb != NULL)
        p->cfg.pause_cb(p->paused_until, why, p->cfg.pause_arg);
    return true;
}

/* ---- the circuit -------------------------------------------------------------------------- */

static void circuit_tell(struct poller *p)
{
    if (p->cfg.incident_cb != NULL)
        p->cfg.incident_cb("atlas_failing", p->circuit.open,
                           p->circuit.open ? p->circuit.since_s : 0, p->cfg.pause_arg);
}

/* Counts every held failure on its case (count), or gives every case back uncounted. */
static void circuit_release(struct poller *p, bool count)
{
    struct poll_job *j = p->circuit.held;

    p->circuit.held = NULL;
    p->circuit.held_n = 0;
    while (j != NULL) {
        struct poll_job *next = j->next_held;

        j->next_held = NULL;
        if (count) {
            metrics_poll("failed");
            poll_failure_record(j, grow(p, p->cfg.retry_ms, j->poll_failures));
        } else {
            metrics_poll("deferred");
            job_defer(j);
        }
        j = next;
    }
}

static void circuit_closed(int status, const char *error, int64_t alert_id, void *arg)
{
    struct poller *p = arg;

    p->circuit.busy = false;
    p->circuit.generation++;
    if (status != 0) {
        log_at(status == VR_EUNAVAIL ? LOG_DEBUG : LOG_WARN, "atlas_circuit_close_failed", "%s",
               error);
    } else {
        p->circuit.open = false;
        if (alert_id != 0)
            log_info("atlas_circuit_closed", "Atlas answers again: polling resumes; alert %" PRId64,
                     alert_id);
        circuit_tell(p);
    }
    poller_maybe_done(p);
}

static void circuit_close(struct poller *p)
{
    if (p->circuit.busy) {
        p->circuit.close_after = true;
        return;
    }
    p->circuit.busy = true;
    store_circuit_close(p->st, circuit_closed, p);
}

/* Atlas answered this case about the case itself: whatever is held was the cases' own, and an
 * open circuit closes. */
static void circuit_answered(struct poller *p, const struct poll_job *j)
{
    p->circuit.rate_limited = 0;
    if (p->circuit.held_n > 0)
        circuit_release(p, true);
    if (p->circuit.open || j->probe)
        circuit_close(p);
}

static void circuit_opened(int status, const char *error, int64_t alert_id, void *arg)
{
    struct poller *p = arg;

    p->circuit.busy = false;
    p->circuit.generation++;
    if (status != 0) {
        /* Nothing shared was written: the next run of failures tries again. */
        log_at(status == VR_EUNAVAIL ? LOG_DEBUG : LOG_WARN, "atlas_circuit_open_failed", "%s",
               error);
        p->circuit.open = false;
    } else if (alert_id != 0) {
        log_warn("atlas_circuit_open", "polling paused but for probes; alert %" PRId64, alert_id);
    }
    if (status == 0 && p->circuit.since_s == 0)
        p->circuit.since_s = (int64_t)time(NULL);
    circuit_tell(p);
    if (p->circuit.close_after) {
        p->circuit.close_after = false;
        circuit_close(p);
    }
    poller_maybe_done(p);
}

/* Opens the circuit once circuit_cases cases in a row failed for everyone; j is the last. */
static void circuit_consider(struct poller *p, const struct poll_job *j)
{
    unsigned cases = p->circuit.held_n + p->circuit.rate_limited;

    if (cases < p->cfg.circuit_cases || p->circuit.open || p->circuit.busy)
        return;
    log_warn("atlas_failing", "%u cases in a row: %s (%s); polling pauses but for probes", cases,
             j->error, atlas_failure_name(j->failure));
    p->circuit.open = true;
    p->circuit.busy = true;
    p->circuit.since_s = 0;
    p->circuit.rate_limited = 0;
    store_circuit_open(p->st,
                       &(struct store_circuit_cause){
                           .cause = atlas_failure_name(j->failure),
                           .message = j->error,
                           .atlas_status = j->http_status == 200 ? j->atlas_status : 0,
                           .http_status = j->http_status,
                           .cases = cases,
                           .probe_ms = p->cfg.retry_ms,
                       },
                       circuit_opened, p);
    circuit_release(p, false);
}

static void circuit_hold(struct poller *p, struct poll_job *j)
{
    if (p->circuit.held_n == 0)
        p->circuit.held_since = uv_now(p->loop);
    j->next_held = p->circuit.held;
    p->circuit.held = j;
    p->circuit.held_n++;
    circuit_consider(p, j);
}

/* A new rate-limit pause counts for the circuit when another case than the last one set it
 * off: one case refused again and again is no outage. */
static void circuit_rate_limited(struct poller *p, const struct poll_job *j)
{
    size_t n = strlen(j->order_no) + strlen(j->void_code) + 2;
    char *key = xmalloc(n);

    snprintf(key, n, "%s\n%s", j->order_no, j->void_code);
    if (p->circuit.rate_limited_by == NULL || strcmp(key, p->circuit.rate_limited_by) != 0) {
        p->circuit.rate_limited++;
        circuit_consider(p, j);
    }
    free(p->circuit.rate_limited_by);
    p->circuit.rate_limited_by = key;
}

/* Held failures are counted when no other answer can come to say they were everyone's: none
 * is on its way and a lease found no other case due, taken late enough to have seen a circuit
 * that another process opened meanwhile; or they waited half a lease. */
static void circuit_tick(struct poller *p, uint64_t now)
{
    uint64_t grace = 4 * p->cfg.tick_ms > HOLD_GRACE_MS ? 4 * p->cfg.tick_ms : HOLD_GRACE_MS;
    bool alone = p->in_flight == p->circuit.held_n && !p->leasing &&
                 p->empty_lease_at >= p->circuit.held_since + grace;

    if (p->circuit.held_n > 0 && (alone || now - p->circuit.held_since >= p->cfg.lease_ms / 2))
        circuit_release(p, true);
}

/* ---- answers, continued ------------------------------------------------------------------- */

/* A failure that is everyone's: held for the circuit, or given back while it is open; a rate
 * limit pauses every poll as well, and each new pause counts for the circuit. */
static void failed_for_everyone(struct poller *p, struct poll_job *j, uint64_t retry_after_ms)
{
    if (j->failure == ATLAS_FAILURE_RATE_LIMIT) {
        metrics_poll("rate_limited");
        if (pause_all(p, retry_after_ms, j) && !p->circuit.open)
            circuit_rate_limited(p, j);
        job_defer(j);
        return;
    }
    if (p->circuit.open) {
        metrics_poll("deferred");
        job_defer(j);
        return;
    }
    log_debug("poll_held", "order=%s void=%s: %s", j->order_no, j->void_code, j->error);
    circuit_hold(p, j);
}

/* A failure that is the case's own: backed off, or flagged at once when no retry changes it. */
static void failed_for_the_case(struct poller *p, struct poll_job *j)
{
    uint64_t delay = grow(p, p->cfg.retry_ms, j->poll_failures);

    circuit_answered(p, j);
    j->for_good = j->failure == ATLAS_FAILURE_PERMANENT;
    if (j->for_good)
        delay = p->cfg.max_interval_ms;
    metrics_poll("failed");
    log_warn("poll_failed", "order=%s void=%s: %s; %sretry in %" PRIu64 " ms", j->order_no,
             j->void_code, j->error, j->for_good ? "no retry changes this: " : "", delay);
    poll_failure_record(j, delay);
}

static void answer_failed(struct poll_job *j, const struct atlas_reply *reply)
{
    j->failure = atlas_failure_of(reply->status, reply->http_status, reply->atlas_status);
    j->atlas_status = reply->atlas_status;
    j->http_status = reply->http_status;
    utf8_copy_clean(j->error, sizeof(j->error), reply->error, strlen(reply->error));
    if (atlas_failure_is_global(j->failure))
        failed_for_everyone(j->p, j, reply->retry_after_ms);
    else
        failed_for_the_case(j->p, j);
}

static void answered(const struct atlas_reply *reply, void *arg)
{
    struct poll_job *j = arg;

    if (reply->status == VR_ECLOSED) {
        job_done(j); /* shutting down: the lease expires and another poll takes the case */
    } else if (reply->status == 0) {
        circuit_answered(j->p, j);
        answer_apply(j, &reply->order);
    } else {
        answer_failed(j, reply);
    }
}

/* ---- leasing and sweeping ----------------------------------------------------------------- */

/* What a lease saw of the circuit stands unless this process opened or closed it since. */
static void circuit_seen(struct poller *p, const struct store_lease_batch *b, unsigned generation)
{
    if (p->circuit.busy || generation != p->circuit.generation)
        return;
    if (b->circuit_open != p->circuit.open ||
        (b->circuit_open && b->circuit_since_s != p->circuit.since_s)) {
        if (b->circuit_open != p->circuit.open)
            log_info(b->circuit_open ? "atlas_circuit_seen_open" : "atlas_circuit_seen_closed",
                     "the Atlas circuit is %s (by another process)",
                     b->circuit_open ? "open" : "closed");
        p->circuit.open = b->circuit_open;
        p->circuit.since_s = b->circuit_since_s;
        circuit_tell(p);
    }
    if (p->circuit.open && p->circuit.held_n > 0)
        circuit_release(p, false); /* they were everyone's: another process said so */
}

struct lease_req {
    struct poller *p;
    unsigned generation;
    unsigned max;
};

static void job_start(struct poller *p, const struct store_lease *l, bool probe)
{
    struct poll_job *j = xcalloc(1, sizeof(*j));

    j->p = p;
    j->order_no = xstrdup(l->order_no);
    j->void_code = xstrdup(l->void_code);
    j->version = l->version;
    j->lease_token = l->lease_token;
    j->polls = l->polls;
    j->poll_failures = l->poll_failures;
    j->failed_for_good = l->failed_for_good;
    j->probe = probe;
    p->in_flight++;
    if (p->stopping) {
        job_done(j); /* the lease expires; the next process to run polls the case */
        return;
    }
    if (uv_now(p->loop) < p->paused_until) {
        /* A rate limit came back while this lease was being taken: give the case back until
         * the pause ends (a pause can outlast the lease). */
        job_defer(j);
        return;
    }
    atlas_client_query(p->client, j->order_no, j->void_code, answered, j);
}

static void leased(int status, const char *error, const struct store_lease_batch *b, void *arg)
{
    struct lease_req *req = arg;
    struct poller *p = req->p;

    p->leasing = false;
    p->more_due = status == 0 && b->n > 0 && b->n == req->max;
    if (status != 0) {
        /* Unreachable is said once, by the store going down; anything else every time. */
        log_at(status == VR_EUNAVAIL ? LOG_DEBUG : LOG_WARN, "poll_lease_failed", "%s", error);
    } else {
        circuit_seen(p, b, req->generation);
        if (b->n == 0 && !b->circuit_open)
            p->empty_lease_at = p->lease_started_at;
        for (size_t i = 0; i < b->n; i++)
            job_start(p, &b->leases[i], b->probe);
    }
    free(req);
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

static void silence_seen(struct poller *p, const struct store_silence *s)
{
    if (s->raised_alert != 0)
        log_warn("webhooks_silent",
                 "Atlas webhooks look silent: check the webhook URL registered in Atlas; "
                 "alert %" PRId64,
                 s->raised_alert);
    if (s->resolved_alert != 0)
        log_info("webhooks_heard", "an Atlas webhook arrived: alert %" PRId64, s->resolved_alert);
    if (s->silent == p->silent && s->raised_alert == 0 && s->resolved_alert == 0)
        return;
    p->silent = s->silent;
    if (p->cfg.incident_cb != NULL)
        p->cfg.incident_cb("webhooks_silent", s->silent, s->since_s, p->cfg.pause_arg);
}

static void silence_checked(int status, const char *error, const struct store_silence *s, void *arg)
{
    struct poller *p = arg;

    p->checking_silence = false;
    if (status != 0)
        log_at(status == VR_EUNAVAIL ? LOG_DEBUG : LOG_WARN, "silence_check_failed", "%s", error);
    else
        silence_seen(p, s);
    poller_maybe_done(p);
}

/* The stuck sweep and the silence check: one indexed statement each, once a second. */
static void sweep(struct poller *p, uint64_t now)
{
    if (now - p->swept_at < SWEEP_EVERY_MS)
        return;
    p->swept_at = now;
    if (!p->sweeping) {
        p->sweeping = true;
        store_flag_stuck(p->st, p->cfg.stuck_after_ms, SWEEP_MAX_CASES, swept, p);
    }
    if (!p->checking_silence && (p->cfg.silence_ms > 0 || p->cfg.silence_changes > 0)) {
        p->checking_silence = true;
        store_check_silence(p->st, p->cfg.silence_ms, p->cfg.silence_changes, silence_checked, p);
    }
}

static void on_tick(uv_timer_t *t)
{
    struct poller *p = t->data;
    uint64_t now = uv_now(p->loop);
    unsigned busy = p->in_flight - p->circuit.held_n;
    struct lease_req *req;

    sweep(p, now);
    circuit_tick(p, now);
    if (p->client == NULL || now < p->paused_until || p->leasing || busy >= p->cfg.concurrency)
        return;
    p->leasing = true;
    p->lease_started_at = now;
    req = xcalloc(1, sizeof(*req));
    req->p = p;
    req->generation = p->circuit.generation;
    req->max = p->cfg.concurrency - busy;
    store_lease_due(p->st,
                    &(struct store_lease_rules){
                        .max = req->max,
                        .lease_ms = p->cfg.lease_ms,
                        .max_rps = p->cfg.max_rps,
                        .probe_ms = p->cfg.retry_ms,
                        .probe_max_ms = p->cfg.probe_max_ms,
                    },
                    leased, req);
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

/* The silence settings have none: 0 turns a test off. */
static void circuit_defaults(struct poller_config *cfg)
{
    VR_DEFAULT(cfg->circuit_cases, DEFAULT_CIRCUIT_CASES);
    VR_DEFAULT(cfg->probe_max_ms, DEFAULT_PROBE_MAX_MS);
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
    circuit_defaults(&p->cfg);
    p->rng = uv_hrtime() | 1;
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

    free(p->circuit.rate_limited_by);
    free(p);
    if (done_cb != NULL)
        done_cb(done_arg);
}

/* Closing ends once nothing is in flight and the Atlas client is gone. */
static void poller_maybe_done(struct poller *p)
{
    if (!p->stopping || p->in_flight > 0 || p->leasing || p->sweeping || p->checking_silence ||
        p->circuit.busy || p->client_open || uv_is_closing((uv_handle_t *)&p->tick))
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
    /* Held failures are dropped uncounted: their leases expire and the cases are polled again. */
    while (p->circuit.held != NULL) {
        struct poll_job *j = p->circuit.held;

        p->circuit.held = j->next_held;
        p->circuit.held_n--;
        job_done(j);
    }
    /* A poll still waiting for Atlas is not worth a slow shutdown: it ends here as
     * VR_ECLOSED, its lease expires and it is made again. Answers in hand are still applied. */
    if (p->client != NULL)
        atlas_client_close(p->client, client_closed, p);
    poller_maybe_done(p);
}
