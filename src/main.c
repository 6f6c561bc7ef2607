/* voidrecon: wiring. The command line goes to cli; serve starts the service's parts in order on
 * one loop, runs it, and on SIGINT or SIGTERM stops them one at a time, last started first. */
#include <assert.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <uv.h>

#include "cli.h"
#include "common.h"
#include "config.h"
#include "health.h"
#include "httpd.h"
#include "intake.h"
#include "log.h"
#include "mask.h"
#include "metrics.h"
#include "migrate.h"
#include "notifier.h"
#include "poller.h"
#include "pruner.h"
#include "sdnotify.h"
#include "store.h"

/* A started part of the service; close ends it, it frees itself, then calls done_cb. */
struct part {
    const char *name;
    void *x;
    void (*close)(void *x, void (*done_cb)(void *arg), void *arg);
};

#define MAX_PARTS 10

struct app {
    uv_loop_t loop;
    const struct config *cfg;
    struct part parts[MAX_PARTS]; /* in the order they started */
    size_t nparts;
    struct store *st;
    struct health *health;
    struct intake *in;
    uv_signal_t sigint, sigterm;
    uv_timer_t shutdown_timer;
    bool stopping;
    char listening[80]; /* the listener's URL, for the service manager's status */
};

/* Each part's close, with the one signature the list keeps. */
#define CLOSER(module)                                                                             \
    static void module##_closer(void *x, void (*done_cb)(void *arg), void *arg)                    \
    {                                                                                              \
        module##_close(x, done_cb, arg);                                                           \
    }
CLOSER(store)
CLOSER(health)
CLOSER(intake)
CLOSER(poller)
CLOSER(notifier)
CLOSER(pruner)
CLOSER(httpd)

static void add_part(struct app *app, const char *name, void *x,
                     void (*close)(void *x, void (*done_cb)(void *arg), void *arg))
{
    assert(app->nparts < MAX_PARTS);
    app->parts[app->nparts++] = (struct part){name, x, close};
}

/* ---- stopping ------------------------------------------------------------------------------- */

/* Closes the last part still open, and again from its done callback; then the app's own
 * handles, after which the loop has nothing left. */
static void stop_next(void *arg)
{
    struct app *app = arg;
    struct part *p;

    if (app->nparts == 0) {
        uv_close((uv_handle_t *)&app->sigint, NULL);
        uv_close((uv_handle_t *)&app->sigterm, NULL);
        uv_close((uv_handle_t *)&app->shutdown_timer, NULL);
        return;
    }
    p = &app->parts[--app->nparts];
    log_debug("part_closing", "closing the %s", p->name);
    p->close(p->x, stop_next, app);
}

static void on_shutdown_timeout(uv_timer_t *t)
{
    struct app *app = t->data;

    log_error("shutdown_timeout", "requests still in flight after %llu ms; exiting",
              (unsigned long long)app->cfg->shutdown_timeout_ms);
    exit(1);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct app *app = s->data;

    if (app->stopping) {
        log_warn("shutdown_forced", "second signal %d: exiting at once", signum);
        exit(1);
    }
    app->stopping = true;
    sdnotify_stopping("stopping: finishing requests in flight");
    log_info("stopping", "signal %d: no new connections; finishing requests in flight", signum);
    uv_timer_start(&app->shutdown_timer, on_shutdown_timeout, app->cfg->shutdown_timeout_ms, 0);
    stop_next(app);
}

/* ---- starting ------------------------------------------------------------------------------- */

/* The health connection's statement timeout: a refresh never outlives the next one, and a
 * slow count never outlives the work's own timeout, nor half the shutdown timeout (the
 * stop waits for a reading under way); at least a second. */
static uint64_t health_timeout_ms(const struct config *cfg)
{
    uint64_t t =
        cfg->gauge_refresh_ms < cfg->db_timeout_ms ? cfg->gauge_refresh_ms : cfg->db_timeout_ms;

    if (cfg->shutdown_timeout_ms > 0 && t > cfg->shutdown_timeout_ms / 2)
        t = cfg->shutdown_timeout_ms / 2;
    return t < 1000 ? 1000 : t;
}

static int start_store(struct app *app)
{
    const struct config *cfg = app->cfg;
    char err[256];

    if (store_new(&app->st, &app->loop,
                  &(struct store_config){
                      .conninfo = cfg->database_url,
                      .pool_size = (unsigned)cfg->db_pool_size,
                      .write_batch = (unsigned)cfg->write_batch,
                      .write_concurrency = (unsigned)cfg->write_concurrency,
                      .timeout_ms = cfg->db_timeout_ms,
                      .poll_first_ms = cfg->poll_first_ms,
                      .poll_confirm_ms = cfg->poll_confirm_ms,
                      .health_timeout_ms = health_timeout_ms(cfg),
                  },
                  err, sizeof(err)) != 0) {
        log_error("config_invalid", "VOIDRECON_DATABASE_URL: %s", err);
        return 1;
    }
    add_part(app, "store", app->st, store_closer);
    return 0;
}

static void start_health(struct app *app, bool schema_current)
{
    app->health = health_new(&app->loop, app->st,
                             &(struct health_config){
                                 .refresh_ms = app->cfg->gauge_refresh_ms,
                                 .schema_needed = migrate_latest_version(),
                                 .schema_current = schema_current,
                             });
    add_part(app, "health readings", app->health, health_closer);
}

static void start_intake(struct app *app)
{
    app->in = intake_new(app->st, &(struct intake_config){
                                      .providers = app->cfg->providers,
                                      .nproviders = app->cfg->nproviders,
                                      .admin_token = app->cfg->admin_token,
                                      .health = app->health,
                                  });
    add_part(app, "intake", app->in, intake_closer);
}

static void poller_paused(uint64_t until_ms, const char *why, void *arg)
{
    health_poller_paused(arg, until_ms, why);
}

static void poller_incident(const char *kind, bool open, int64_t since_s, void *arg)
{
    health_incident(arg, kind, open, since_s);
}

static void start_poller(struct app *app)
{
    const struct config *cfg = app->cfg;
    struct poller *p = poller_new(&app->loop, app->st,
                                  &(struct poller_config){
                                      .tick_ms = cfg->poll_tick_ms,
                                      .first_ms = cfg->poll_first_ms,
                                      .max_interval_ms = cfg->poll_max_interval_ms,
                                      .retry_ms = cfg->poll_retry_ms,
                                      .lease_ms = 2 * cfg->atlas_timeout_ms + 5000,
                                      .stuck_after_ms = cfg->stuck_after_ms,
                                      .concurrency = (unsigned)cfg->poll_concurrency,
                                      .max_rps = (unsigned)cfg->poll_max_rps,
                                      .failures_alert = (unsigned)cfg->poll_failures_alert,
                                      .pause_cb = poller_paused,
                                      .pause_arg = app->health,
                                      .incident_cb = poller_incident,
                                      .circuit_cases = (unsigned)cfg->atlas_circuit_cases,
                                      .probe_max_ms = cfg->atlas_probe_max_ms,
                                      .silence_ms = cfg->atlas_silence_ms,
                                      .silence_changes = (unsigned)cfg->atlas_silence_poll_changes,
                                      .atlas =
                                          {
                                              .base_url = cfg->atlas_base_url,
                                              .client_id = cfg->atlas_client_id,
                                              .client_secret = cfg->atlas_client_secret,
                                              .timeout_ms = cfg->atlas_timeout_ms,
                                              .connect_timeout_ms = cfg->atlas_connect_timeout_ms,
                                          },
                                  });

    add_part(app, "poller", p, poller_closer);
    if (cfg->atlas_base_url[0] != '\0') {
        char url[512];

        mask_url(cfg->atlas_base_url, url, sizeof(url));
        log_info("poller_on",
                 "polling %s/queryVoidOrders.do: every %llu ms, %llu in flight, %llu per second",
                 url, (unsigned long long)cfg->poll_tick_ms,
                 (unsigned long long)cfg->poll_concurrency, (unsigned long long)cfg->poll_max_rps);
    } else {
        log_warn("poller_off", "VOIDRECON_ATLAS_BASE_URL is not set: cases are not polled, "
                               "so closings reported by webhooks stay unconfirmed");
    }
}

static void start_notifier(struct app *app)
{
    const struct config *cfg = app->cfg;

    if (cfg->alert_url[0] == '\0') {
        log_info("alerts_off", "VOIDRECON_ALERT_URL is not set: alerts stay in the outbox "
                               "(voidrecon.alerts, NOTIFY voidrecon_alerts)");
        return;
    }
    add_part(app, "notifier",
             notifier_new(&app->loop, app->st,
                          &(struct notifier_config){
                              .url = cfg->alert_url,
                              .key = cfg->alert_key,
                              .keylen = cfg->alert_key_len,
                              .format = cfg->alert_format,
                              .routing_key = cfg->alert_routing_key,
                              .timeout_ms = cfg->alert_timeout_ms,
                              .tick_ms = cfg->alert_tick_ms,
                              .retry_ms = cfg->alert_retry_ms,
                              .retry_max_ms = cfg->alert_retry_max_ms,
                              .lease_ms = 2 * cfg->alert_timeout_ms + 5000,
                              .concurrency = (unsigned)cfg->alert_concurrency,
                          }),
             notifier_closer);
    log_info("alerts_on", "delivering alerts to the VOIDRECON_ALERT_URL receiver, %s, as %s",
             cfg->alert_key != NULL ? "signed" : "unsigned", cfg->alert_format_name);
}

static void start_pruner(struct app *app)
{
    const struct config *cfg = app->cfg;

    if (cfg->delivery_retention_ms == 0 && cfg->event_retention_ms == 0) {
        log_info("retention_off", "VOIDRECON_DELIVERY_RETENTION_MS and "
                                  "VOIDRECON_EVENT_RETENTION_MS are 0: nothing is pruned");
        return;
    }
    if (cfg->prune_interval_ms == 0) {
        log_info("retention_off", "VOIDRECON_PRUNE_INTERVAL_MS is 0: serve does not prune "
                                  "(voidrecon prune does)");
        return;
    }
    add_part(app, "pruner",
             pruner_new(&app->loop, app->st,
                        &(struct pruner_config){
                            .delivery_retention_ms = cfg->delivery_retention_ms,
                            .event_retention_ms = cfg->event_retention_ms,
                            .interval_ms = cfg->prune_interval_ms,
                            .batch = (unsigned)cfg->prune_batch,
                        }),
             pruner_closer);
}

/* Last, so that requests come in only once everything that answers them runs. */
static int start_http(struct app *app)
{
    const struct config *cfg = app->cfg;
    const char *host = cfg->listen_host;
    bool v6 = strchr(host, ':') != NULL;
    struct httpd *http;
    char err[512];

    if (httpd_new(&http, &app->loop,
                  &(struct httpd_config){
                      .host = host,
                      .port = cfg->listen_port,
                      .max_header_bytes = cfg->max_header_bytes,
                      .max_body_bytes = cfg->max_body_bytes,
                      .header_timeout_ms = cfg->header_timeout_ms,
                      .idle_timeout_ms = cfg->idle_timeout_ms,
                      .max_connections = (unsigned)cfg->max_connections,
                      .max_buffered_bytes = (size_t)cfg->max_buffered_bytes,
                      .admit_cb = intake_admit,
                      .observe_cb = metrics_http,
                      .trusted_proxies = cfg->trusted_acl,
                      .proxy_protocol = cfg->proxy_protocol_on,
                  },
                  intake_handle, app->in, err, sizeof(err)) != 0) {
        log_error("listen_failed", "VOIDRECON_LISTEN: %s", err);
        return 1;
    }
    add_part(app, "HTTP server", http, httpd_closer);
    snprintf(app->listening, sizeof(app->listening), "http://%s%s%s:%d", v6 ? "[" : "", host,
             v6 ? "]" : "", httpd_port(http));
    log_info("listening", "listening on %s", app->listening);
    return 0;
}

/* ---- telling the service manager ------------------------------------------------------------ */

/* Ready once the database has answered (or failed to) the check /readyz makes before its first
 * reading: from then on /healthz and /readyz say how the service stands. The database's own
 * words stay in the log: the status is readable by every local user. */
static void ready_checked(int status, const char *error, int version, void *arg)
{
    struct app *app = arg;

    (void)error;
    if (app->stopping)
        return;
    if (status != 0)
        sdnotify_ready("listening on %s; database unreachable: not ready until it answers",
                       app->listening);
    else if (version < migrate_latest_version())
        sdnotify_ready("listening on %s; database schema %d is behind %d: run voidrecon migrate",
                       app->listening, version, migrate_latest_version());
    else
        sdnotify_ready("ready: listening on %s; database schema %d", app->listening, version);
}

/* Starts every part; 1 when one could not start (those started are to be stopped). */
static int app_start(struct app *app, bool schema_current)
{
    uv_signal_init(&app->loop, &app->sigint);
    uv_signal_init(&app->loop, &app->sigterm);
    uv_timer_init(&app->loop, &app->shutdown_timer);
    uv_unref((uv_handle_t *)&app->shutdown_timer);
    app->sigint.data = app->sigterm.data = app->shutdown_timer.data = app;
    if (start_store(app) != 0)
        return 1;
    start_health(app, schema_current);
    start_intake(app);
    start_poller(app);
    start_notifier(app);
    start_pruner(app);
    if (start_http(app) != 0)
        return 1;
    uv_signal_start(&app->sigint, on_signal, SIGINT);
    uv_signal_start(&app->sigterm, on_signal, SIGTERM);
    store_schema_version(app->st, ready_checked, app);
    return 0;
}

static int serve(const struct config *cfg)
{
    struct app app;
    bool schema_current;
    int rc;

    if (migrate_check_startup(cfg->database_url, &schema_current) != 0)
        return 1;
    memset(&app, 0, sizeof(app));
    app.cfg = cfg;
    uv_loop_init(&app.loop);
    rc = app_start(&app, schema_current);
    if (rc != 0)
        stop_next(&app);
    uv_run(&app.loop, UV_RUN_DEFAULT);
    if (rc == 0)
        log_info("stopped", "all connections closed");
    if (uv_loop_close(&app.loop) != 0) {
        log_error("loop_not_empty", "handles left open at exit"); /* a part did not close */
        return 1;
    }
    return rc;
}

int main(int argc, char **argv)
{
    vr_init();
    /* Writes to a closed socket must fail with EPIPE, not kill the process. */
    (void)signal(SIGPIPE, SIG_IGN);
    /* Before any thread exists: libcurl's resolver threads and OpenSSL need it. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "voidrecon: libcurl failed to initialise\n");
        return 1;
    }
    (void)atexit(curl_global_cleanup);
    return cli_main(argc, argv, serve);
}
