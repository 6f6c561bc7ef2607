/* Health readings kept in memory for /metrics and /readyz, refreshed by a timer on the store's
 * health connection: a scrape costs no query, whatever its rate. */
#include "health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "log.h"
#include "metrics.h"
#include "utf8.h"

#define DEFAULT_REFRESH_MS 15000
/* Writability is checked at least this often whatever the refresh: readiness must notice a
 * failover even when no write comes to find it. */
#define MAX_CHECK_MS 5000
#define ERROR_BYTES  256
#define WHY_BYTES    160

struct health {
    uv_loop_t *loop;
    struct store *st;
    struct health_config cfg;
    uv_timer_t timer;
    bool reading;
    bool closing;
    bool timer_open;
    /* The last check (writability and schema version). */
    bool checked;  /* a check has answered, well or not */
    bool check_ok; /* the last one answered well */
    uint64_t checked_at;
    int schema_version; /* of the last check that answered, if have_version */
    bool have_version;
    bool read_only;
    char check_error[ERROR_BYTES];
    /* The last counts. */
    bool have_gauges;
    uint64_t gauges_at;
    struct store_health gauges;
    /* The poller's pause. */
    uint64_t paused_until;
    char paused_why[WHY_BYTES];
    /* The incidents, as the poller last saw them. */
    bool circuit_open;
    int64_t circuit_since_s;
    bool webhooks_silent;
    int64_t silent_since_s;
    void (*done_cb)(void *arg);
    void *done_arg;
};

static void health_maybe_done(struct health *h);

/* ---- readings ----------------------------------------------------------------------------- */

/* Says when the schema falls behind this voidrecon, and when it is current again. */
static void schema_seen(struct health *h, int version)
{
    bool behind = version < h->cfg.schema_needed;
    bool was_behind = h->have_version && h->schema_version < h->cfg.schema_needed;

    if (behind && !was_behind)
        log_error("schema_behind",
                  "database schema is at version %d, this voidrecon needs %d: run voidrecon "
                  "migrate",
                  version, h->cfg.schema_needed);
    else if (!behind && was_behind)
        log_info("schema_current", "database schema is at version %d", version);
    h->schema_version = version;
    h->have_version = true;
}

static void health_read(int status, const char *error, const struct store_health *sh, void *arg)
{
    struct health *h = arg;
    uint64_t now = uv_now(h->loop);

    h->reading = false;
    h->checked = true;
    h->checked_at = now;
    if (status != 0) {
        /* Said once per run of failures; readiness and the body say it meanwhile. */
        if (h->check_ok || h->check_error[0] == '\0')
            log_warn("health_check_failed", "%s", error);
        h->check_ok = false;
        snprintf(h->check_error, sizeof(h->check_error), "%s", error);
        utf8_trim(h->check_error, sizeof(h->check_error));
    } else {
        if (!h->check_ok && h->check_error[0] != '\0')
            log_info("health_check_ok", "the database answers the health check again");
        h->check_ok = true;
        h->check_error[0] = '\0';
        schema_seen(h, sh->schema_version);
        h->read_only = sh->read_only;
        /* The old counts stay, and voidrecon_gauges_age_seconds shows how old they are. */
        if (sh->gauges_failed)
            log_warn("gauges_failed", "%s", error);
        if (sh->have_gauges) {
            h->gauges = *sh;
            h->gauges_at = now;
            h->have_gauges = true;
        }
    }
    health_maybe_done(h);
}

static void on_timer(uv_timer_t *t)
{
    struct health *h = t->data;
    uint64_t now = uv_now(h->loop);
    bool gauges;

    if (h->reading || h->closing)
        return;
    gauges = !h->have_gauges || now - h->gauges_at >= h->cfg.refresh_ms;
    h->reading = true;
    store_read_health(h->st, gauges, health_read, h);
}

void health_poller_paused(struct health *h, uint64_t until_ms, const char *why)
{
    h->paused_until = until_ms;
    snprintf(h->paused_why, sizeof(h->paused_why), "%s", why ? why : "");
    utf8_trim(h->paused_why, sizeof(h->paused_why));
}

void health_incident(struct health *h, const char *kind, bool open, int64_t since_s)
{
    if (strcmp(kind, "atlas_failing") == 0) {
        h->circuit_open = open;
        h->circuit_since_s = open ? since_s : 0;
    } else if (strcmp(kind, "webhooks_silent") == 0) {
        h->webhooks_silent = open;
        h->silent_since_s = open ? since_s : 0;
    }
}

static uint64_t pause_left_ms(const struct health *h)
{
    uint64_t now = uv_now(h->loop);

    return h->paused_until > now ? h->paused_until - now : 0;
}

bool health_schema_behind(const struct health *h)
{
    return h->have_version && h->schema_version < h->cfg.schema_needed;
}

/* ---- answers ------------------------------------------------------------------------------ */

char *health_metrics(struct health *h)
{
    struct store_pool_state ps;
    struct store_writer_state ws;
    struct metrics_gauges g = {0};

    store_pool_state(h->st, &ps);
    store_writer_state(h->st, &ws);
    g.write_queued = ws.queued;
    g.write_in_flight = ws.in_flight_items;
    g.write_batches = ws.batches;
    g.write_batch_items = ws.items;
    g.db_up = ps.up;
    g.db_read_only = ps.read_only || (h->check_ok && h->read_only);
    g.poller_paused = pause_left_ms(h) > 0;
    g.circuit_open = h->circuit_open;
    g.circuit_since_s = h->circuit_since_s;
    g.webhooks_silent = h->webhooks_silent;
    g.silent_since_s = h->silent_since_s;
    if (h->have_gauges) {
        g.have_counts = true;
        g.open_cases = h->gauges.open_cases;
        g.followup_cases = h->gauges.followup_cases;
        memcpy(g.followups, h->gauges.followups, sizeof(g.followups));
        g.alert_backlog = h->gauges.alert_backlog;
        g.poll_lag_s = (double)h->gauges.poll_lag_ms / 1000.0;
        g.alert_oldest_s = (double)h->gauges.alert_oldest_ms / 1000.0;
        g.followup_oldest_s = (double)h->gauges.followup_oldest_ms / 1000.0;
        g.gauges_age_s = (double)(uv_now(h->loop) - h->gauges_at) / 1000.0;
    }
    return metrics_render(&g);
}

/* Why the service cannot take webhooks now, into why; false when it can. */
static bool not_ready_reason(const struct health *h, const struct store_pool_state *ps, char *why,
                             size_t cap)
{
    int version = h->check_ok ? h->schema_version : -1;

    /* The database's own words (host, user) go to the log, not to an unauthenticated body. */
    if (!ps->up)
        snprintf(why, cap, "no database connection%s",
                 ps->starting ? ": connecting" : " (the log says why)");
    else if (ps->read_only || (h->check_ok && h->read_only))
        snprintf(why, cap,
                 "the database refuses writes (read-only or a standby): waiting for a "
                 "writable primary");
    else if (version >= 0 && version < h->cfg.schema_needed)
        snprintf(why, cap,
                 "database schema is at version %d, this voidrecon needs %d: run voidrecon "
                 "migrate",
                 version, h->cfg.schema_needed);
    else if (version < 0 && !h->cfg.schema_current)
        snprintf(why, cap, "database schema not checked yet");
    else
        return false;
    utf8_trim(why, cap);
    return true;
}

static cJSON *database_json(const struct health *h, const struct store_pool_state *ps)
{
    cJSON *d = cJSON_CreateObject();

    cJSON_AddBoolToObject(d, "up", ps->up);
    cJSON_AddBoolToObject(d, "read_only", ps->read_only || (h->check_ok && h->read_only));
    if (h->checked)
        cJSON_AddNumberToObject(d, "checked_ms_ago", (double)(uv_now(h->loop) - h->checked_at));
    else
        cJSON_AddNullToObject(d, "checked_ms_ago");
    if (h->checked)
        cJSON_AddBoolToObject(d, "check_ok", h->check_ok);
    return d;
}

static cJSON *poller_json(const struct health *h)
{
    cJSON *p = cJSON_CreateObject();
    uint64_t left = pause_left_ms(h);

    cJSON_AddBoolToObject(p, "paused", left > 0);
    cJSON_AddNumberToObject(p, "resume_in_ms", (double)left);
    if (left > 0)
        cJSON_AddStringToObject(p, "reason", h->paused_why);
    /* Incidents concern every case but leave the service ready for webhooks. */
    cJSON_AddBoolToObject(p, "circuit_open", h->circuit_open);
    cJSON_AddBoolToObject(p, "webhooks_silent", h->webhooks_silent);
    return p;
}

enum health_readiness health_ready(struct health *h, char **body)
{
    struct store_pool_state ps;
    char why[320];
    bool bad;
    cJSON *o, *e;

    *body = NULL;
    store_pool_state(h->st, &ps);
    if (ps.starting)
        return HEALTH_UNKNOWN;
    bad = not_ready_reason(h, &ps, why, sizeof(why));
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", bad ? "not_ready" : "ready");
    if (bad) {
        cJSON_AddStringToObject(o, "reason", why);
        e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "code", "unavailable");
        cJSON_AddStringToObject(e, "message", why);
    }
    if (h->check_ok)
        cJSON_AddNumberToObject(o, "schema_version", h->schema_version);
    cJSON_AddItemToObject(o, "database", database_json(h, &ps));
    cJSON_AddItemToObject(o, "poller", poller_json(h));
    *body = vr_json_print(o);
    cJSON_Delete(o);
    return bad ? HEALTH_NOT_READY : HEALTH_READY;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

struct health *health_new(uv_loop_t *loop, struct store *st, const struct health_config *cfg)
{
    struct health *h = xcalloc(1, sizeof(*h));

    h->loop = loop;
    h->st = st;
    h->cfg = *cfg;
    VR_DEFAULT(h->cfg.refresh_ms, DEFAULT_REFRESH_MS);
    VR_DEFAULT(h->cfg.check_ms,
               h->cfg.refresh_ms < MAX_CHECK_MS ? h->cfg.refresh_ms : MAX_CHECK_MS);
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    h->timer_open = true;
    uv_timer_start(&h->timer, on_timer, 0, h->cfg.check_ms);
    return h;
}

static void health_maybe_done(struct health *h)
{
    void (*done_cb)(void *arg) = h->done_cb;
    void *done_arg = h->done_arg;

    if (!h->closing || h->reading || h->timer_open)
        return;
    free(h);
    if (done_cb != NULL)
        done_cb(done_arg);
}

static void timer_closed(uv_handle_t *handle)
{
    struct health *h = handle->data;

    h->timer_open = false;
    health_maybe_done(h);
}

void health_close(struct health *h, void (*done_cb)(void *arg), void *arg)
{
    h->closing = true;
    h->done_cb = done_cb;
    h->done_arg = arg;
    uv_close((uv_handle_t *)&h->timer, timer_closed);
}
