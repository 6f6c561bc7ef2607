/* voidrecon: command line and wiring. config -> log -> loop -> modules -> uv_run -> teardown. */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <uv.h>

#include "acl.h"
#include "api.h"
#include "atlas_client.h"
#include "cli.h"
#include "common.h"
#include "config.h"
#include "httpc.h"
#include "httpd.h"
#include "intake.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "notifier.h"
#include "poller.h"
#include "provider.h"
#include "store.h"

static const char usage_text[] =
    "usage: voidrecon COMMAND [--setting=VALUE ...]\n"
    "\n"
    "Keeps airline void cases true: receives Atlas order.void webhooks, keeps each case's\n"
    "state in PostgreSQL, polls Atlas until every case is reconciled, and records order\n"
    "cancellations.\n"
    "\n"
    "Commands:\n"
    "  serve     run the HTTP service and the poller in the foreground (SIGINT/SIGTERM stop\n"
    "            it cleanly)\n"
    "  migrate   apply pending database migrations, then exit\n"
    "  cases     add, list, show or acknowledge void cases (voidrecon cases --help)\n"
    "  alerts    list alerts and their delivery state\n"
    "  version   print the version\n"
    "  help      print this help; 'voidrecon COMMAND --help' describes one command\n";

static const char serve_help[] =
    "usage: voidrecon serve [--setting=VALUE ...]\n"
    "\n"
    "Runs the service in the foreground: POST /webhooks/atlas, /webhooks/xsolla and\n"
    "/webhooks/xendbridge, the /v1 operations API,\n"
    "GET /healthz, /readyz and /metrics; the poller of queryVoidOrders.do when\n"
    "VOIDRECON_ATLAS_BASE_URL is set, and alert delivery when VOIDRECON_ALERT_URL is.\n"
    "Refuses to start on a database whose schema is behind (run 'voidrecon migrate').\n"
    "Log lines are JSON objects on stderr.\n";

static const char migrate_help[] =
    "usage: voidrecon migrate [--database-url=URL]\n"
    "\n"
    "Applies the migrations built into this binary that the database lacks, one transaction\n"
    "each, under an advisory lock so that concurrent runs wait for each other.\n";

static const char version_help[] = "usage: voidrecon version\n\nPrints the version.\n";

static const char cases_help[] =
    "usage: voidrecon cases add ORDER_NO VOID_CODE [--status N] [--json]\n"
    "       voidrecon cases list [--state open|followup|rejected|all] [--limit N] [--cursor C]\n"
    "                            [--json]\n"
    "       voidrecon cases show ORDER_NO VOID_CODE [--json]\n"
    "       voidrecon cases ack ORDER_NO VOID_CODE --by NAME [--note TEXT] [--json]\n"
    "\n"
    "Work straight on the database (VOIDRECON_DATABASE_URL or --database-url); no running\n"
    "server is needed.\n"
    "  add   registers a void case right after void.do, so that it is polled even if no\n"
    "        webhook ever arrives (as POST /v1/cases); a known case is left as it is.\n"
    "        --status N gives the voidStatus void.do answered (default 0).\n"
    "  list  cases by state (default open), 50 a page; --cursor continues a listing.\n"
    "  show  one case with its history, alerts and acknowledgements.\n"
    "  ack   acknowledges the case's follow-up: it leaves the follow-up list, and who and\n"
    "        why are recorded.\n"
    "Tables by default; --json prints what the /v1 API answers.\n";

static const char alerts_help[] =
    "usage: voidrecon alerts list [--state pending|delivered|all] [--limit N] [--cursor C]\n"
    "                             [--json]\n"
    "\n"
    "Lists alerts newest first with their delivery state, straight from the database.\n";

struct app {
    uv_loop_t loop;
    struct config cfg;
    struct store *st;
    struct intake *in;
    struct httpd *http;
    struct api *api;
    struct atlas_client *atlas;
    struct poller *poller;
    struct httpc *alert_http;
    struct notifier *notifier;
    uv_signal_t sigint, sigterm;
    uv_timer_t shutdown_timer;
    bool stopping;
    unsigned stops_pending; /* httpd and poller, before the Atlas client and the pool close */
};

/* ---- configuration from the environment and flags ----------------------------------------- */

static bool wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    }
    return false;
}

/* Reads VOIDRECON_* then flags (--name=value or --name value); returns 0 or 2 (usage). */
static int load_config(struct config *cfg, int argc, char **argv)
{
    char err[512];
    int r;

    config_init(cfg);
    if (config_load_env(cfg, err, sizeof(err)) != 0)
        goto bad;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i], *eq, *value;
        char name[64];

        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, sizeof(err), "unexpected argument \"%s\"", arg);
            goto bad;
        }
        eq = strchr(arg, '=');
        if (eq != NULL) {
            snprintf(name, sizeof(name), "%.*s", (int)(eq - arg - 2), arg + 2);
            value = eq + 1;
        } else {
            snprintf(name, sizeof(name), "%s", arg + 2);
            if (i + 1 >= argc) {
                snprintf(err, sizeof(err), "--%s needs a value", name);
                goto bad;
            }
            value = argv[++i];
        }
        r = config_set_flag(cfg, name, value, err, sizeof(err));
        if (r == VR_ENOENT) {
            snprintf(err, sizeof(err), "unknown option --%s (see voidrecon serve --help)", name);
            goto bad;
        }
        if (r != 0)
            goto bad;
    }
    if (config_validate(cfg, err, sizeof(err)) != 0)
        goto bad;
    log_set_level(cfg->log_level);
    return 0;
bad:
    log_error("config_invalid", "%s", err);
    return 2;
}

/* ---- migrate ------------------------------------------------------------------------------ */

static int cmd_migrate(int argc, char **argv)
{
    struct config cfg;
    char err[1024];
    int applied = 0, version = 0, rc = 1;

    if (wants_help(argc, argv)) {
        fputs(migrate_help, stdout);
        config_print_help(stdout);
        return 0;
    }
    if (load_config(&cfg, argc, argv) != 0) {
        config_cleanup(&cfg);
        return 2;
    }
    if (migrate_run(cfg.database_url, &applied, &version, err, sizeof(err)) != 0) {
        log_error("migrate_failed", "%s", err);
        goto out;
    }
    log_info("migrated", "applied %d migration(s); schema at version %d", applied, version);
    rc = 0;
out:
    config_cleanup(&cfg);
    return rc;
}

/* ---- serve -------------------------------------------------------------------------------- */

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void store_closed(void *arg)
{
    struct app *app = arg;

    intake_close(app->in);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    uv_close((uv_handle_t *)&app->shutdown_timer, NULL);
}

/* Requests in flight are answered, polls ended, Atlas connections closed: nothing needs the
 * database any more. */
static void part_stopped(void *arg)
{
    struct app *app = arg;

    if (--app->stops_pending == 0)
        store_close(app->st, store_closed, app);
}

static void on_shutdown_timeout(uv_timer_t *t)
{
    struct app *app = t->data;

    log_error("shutdown_timeout", "requests still in flight after %llu ms; exiting",
              (unsigned long long)app->cfg.shutdown_timeout_ms);
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
    log_info("stopping", "signal %d: no new connections; finishing requests in flight", signum);
    uv_timer_start(&app->shutdown_timer, on_shutdown_timeout, app->cfg.shutdown_timeout_ms, 0);
    app->stops_pending = 2 + (app->atlas != NULL) + 2 * (app->notifier != NULL);
    httpd_stop(app->http, part_stopped, app);
    poller_stop(app->poller, part_stopped, app);
    if (app->notifier != NULL)
        notifier_stop(app->notifier, part_stopped, app);
    /* A poll or delivery still waiting for its peer is not worth a slow shutdown: its lease
     * expires and it is made again. Answers already in hand are still recorded. */
    if (app->atlas != NULL)
        atlas_client_close(app->atlas, part_stopped, app);
    if (app->alert_http != NULL)
        httpc_close(app->alert_http, part_stopped, app);
}

/* Creates the pool, the store, the endpoints, the listener and the signal handlers on
 * app->loop. Returns 0, or 1 after closing what it made (the loop then runs empty). */
static int app_start(struct app *app, bool schema_current)
{
    char err[512];
    const char *host = app->cfg.listen_host;
    bool v6 = strchr(host, ':') != NULL;

    if (store_new(&app->st, &app->loop,
                  &(struct store_config){
                      .conninfo = app->cfg.database_url,
                      .pool_size = (unsigned)app->cfg.db_pool_size,
                      .timeout_ms = app->cfg.db_timeout_ms,
                      .poll_first_ms = app->cfg.poll_first_ms,
                      .poll_confirm_ms = app->cfg.poll_confirm_ms,
                  },
                  err, sizeof(err)) != 0) {
        log_error("config_invalid", "VOIDRECON_DATABASE_URL: %s", err);
        return 1;
    }
    app->api = api_new(app->st, app->cfg.admin_token);
    app->in = intake_new(&app->loop, app->st,
                         &(struct intake_config){
                             .providers = app->cfg.providers,
                             .nproviders = app->cfg.nproviders,
                             .api = app->api,
                             .schema_current = schema_current,
                         });
    if (httpd_start(&app->http, &app->loop,
                    &(struct httpd_config){
                        .host = host,
                        .port = app->cfg.listen_port,
                        .max_header_bytes = app->cfg.max_header_bytes,
                        .max_body_bytes = app->cfg.max_body_bytes,
                        .header_timeout_ms = app->cfg.header_timeout_ms,
                        .idle_timeout_ms = app->cfg.idle_timeout_ms,
                        .max_connections = (unsigned)app->cfg.max_connections,
                        .observe_cb = metrics_http,
                    },
                    intake_handle, app->in, err, sizeof(err)) != 0) {
        log_error("listen_failed", "VOIDRECON_LISTEN: %s", err);
        intake_close(app->in);
        store_close(app->st, NULL, NULL);
        app->st = NULL;
        uv_run(&app->loop, UV_RUN_DEFAULT);
        return 1;
    }
    if (app->cfg.atlas_base_url[0] != '\0') {
        if (atlas_client_new(&app->atlas, &app->loop,
                             &(struct atlas_client_config){
                                 .base_url = app->cfg.atlas_base_url,
                                 .client_id = app->cfg.atlas_client_id,
                                 .client_secret = app->cfg.atlas_client_secret,
                                 .timeout_ms = app->cfg.atlas_timeout_ms,
                                 .connect_timeout_ms = app->cfg.atlas_connect_timeout_ms,
                             },
                             err, sizeof(err)) != 0)
            abort(); /* config_validate has checked what atlas_client_new refuses */
        log_info("poller_on",
                 "polling %s/queryVoidOrders.do: every %llu ms, %llu in flight, "
                 "%llu per second",
                 app->cfg.atlas_base_url, (unsigned long long)app->cfg.poll_tick_ms,
                 (unsigned long long)app->cfg.poll_concurrency,
                 (unsigned long long)app->cfg.poll_max_rps);
    } else {
        log_warn("poller_off", "VOIDRECON_ATLAS_BASE_URL is not set: cases are not polled, "
                               "so closings reported by webhooks stay unconfirmed");
    }
    if (app->cfg.alert_url[0] != '\0') {
        app->alert_http = httpc_new(&app->loop, &(struct httpc_config){
                                                    .timeout_ms = app->cfg.alert_timeout_ms,
                                                });
        if (notifier_new(&app->notifier, &app->loop, app->st, app->alert_http,
                         &(struct notifier_config){
                             .url = app->cfg.alert_url,
                             .secret = app->cfg.alert_secret,
                             .tick_ms = app->cfg.alert_tick_ms,
                             .retry_ms = app->cfg.alert_retry_ms,
                             .retry_max_ms = app->cfg.alert_retry_max_ms,
                             .lease_ms = 2 * app->cfg.alert_timeout_ms + 5000,
                             .concurrency = (unsigned)app->cfg.alert_concurrency,
                         }) != 0)
            abort(); /* config_validate has checked the secret */
        log_info("alerts_on", "delivering alerts to the VOIDRECON_ALERT_URL receiver, %s",
                 app->cfg.alert_secret[0] ? "signed" : "unsigned");
    } else {
        log_info("alerts_off", "VOIDRECON_ALERT_URL is not set: alerts stay in the outbox "
                               "(voidrecon.alerts, NOTIFY voidrecon_alerts)");
    }
    app->poller = poller_new(&app->loop, app->st, app->atlas,
                             &(struct poller_config){
                                 .tick_ms = app->cfg.poll_tick_ms,
                                 .first_ms = app->cfg.poll_first_ms,
                                 .max_interval_ms = app->cfg.poll_max_interval_ms,
                                 .retry_ms = app->cfg.poll_retry_ms,
                                 .lease_ms = 2 * app->cfg.atlas_timeout_ms + 5000,
                                 .stuck_after_ms = app->cfg.stuck_after_ms,
                                 .concurrency = (unsigned)app->cfg.poll_concurrency,
                                 .max_rps = (unsigned)app->cfg.poll_max_rps,
                                 .failures_alert = (unsigned)app->cfg.poll_failures_alert,
                             });
    uv_signal_init(&app->loop, &app->sigint);
    uv_signal_init(&app->loop, &app->sigterm);
    uv_timer_init(&app->loop, &app->shutdown_timer);
    uv_unref((uv_handle_t *)&app->shutdown_timer);
    app->sigint.data = app->sigterm.data = app->shutdown_timer.data = app;
    uv_signal_start(&app->sigint, on_signal, SIGINT);
    uv_signal_start(&app->sigterm, on_signal, SIGTERM);
    log_info("listening", "listening on http://%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "",
             httpd_port(app->http));
    return 0;
}

static int cmd_serve(int argc, char **argv)
{
    struct app app;
    bool schema_current;
    int rc;

    if (wants_help(argc, argv)) {
        fputs(serve_help, stdout);
        config_print_help(stdout);
        return 0;
    }
    memset(&app, 0, sizeof(app));
    if (load_config(&app.cfg, argc, argv) != 0) {
        config_cleanup(&app.cfg);
        return 2;
    }
    config_log(&app.cfg);
    rc = migrate_check_startup(app.cfg.database_url, &schema_current) == 0 ? 0 : 1;
    if (rc == 0) {
        uv_loop_init(&app.loop);
        rc = app_start(&app, schema_current);
        if (rc == 0) {
            uv_run(&app.loop, UV_RUN_DEFAULT);
            log_info("stopped", "all connections closed");
        }
        httpd_free(app.http);
        poller_free(app.poller);
        atlas_client_free(app.atlas);
        notifier_free(app.notifier);
        httpc_free(app.alert_http);
        intake_free(app.in);
        api_free(app.api);
        if (uv_loop_close(&app.loop) != 0) {
            /* A handle left open is a bug; close what remains so the loop can be released. */
            log_error("loop_not_empty", "handles left open at exit");
            uv_walk(&app.loop, close_walk_cb, NULL);
            uv_run(&app.loop, UV_RUN_DEFAULT);
            uv_loop_close(&app.loop);
            rc = 1;
        }
    }
    config_cleanup(&app.cfg);
    return rc;
}

/* ---- cases and alerts --------------------------------------------------------------------- */

/* A command's own options; the other --flags are settings (load_config). */
struct cmd_opts {
    bool json;
    const char *state, *cursor, *by, *note;
    unsigned limit;
    int status;
    const char *pos[4];
    int npos;
    char **flags;
    int nflags;
};

static const char *const valued_opts[] = {"state", "cursor", "by", "note", "limit", "status"};

/* Returns 0, or 2 after saying what is wrong. */
static int cmd_opts_parse(int argc, char **argv, struct cmd_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->flags = xcalloc((size_t)argc + 1, sizeof(*o->flags));
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *eq, *v = NULL;
        size_t n;
        bool mine = false;

        if (strcmp(a, "--json") == 0) {
            o->json = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            if (o->npos == (int)ARRAY_SIZE(o->pos)) {
                log_error("usage", "unexpected argument \"%s\"", a);
                return 2;
            }
            o->pos[o->npos++] = a;
            continue;
        }
        eq = strchr(a, '=');
        n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        for (size_t k = 0; k < ARRAY_SIZE(valued_opts); k++)
            mine = mine || (strlen(valued_opts[k]) == n && strncmp(a + 2, valued_opts[k], n) == 0);
        if (!mine) {
            o->flags[o->nflags++] = argv[i];
            if (eq == NULL && i + 1 < argc)
                o->flags[o->nflags++] = argv[++i];
            continue;
        }
        if (eq != NULL)
            v = eq + 1;
        else if (i + 1 < argc)
            v = argv[++i];
        if (v == NULL) {
            log_error("usage", "%s needs a value", a);
            return 2;
        }
        if (strncmp(a + 2, "state", n) == 0) {
            o->state = v;
        } else if (strncmp(a + 2, "cursor", n) == 0) {
            o->cursor = v;
        } else if (strncmp(a + 2, "by", n) == 0) {
            o->by = v;
        } else if (strncmp(a + 2, "note", n) == 0) {
            o->note = v;
        } else {
            char *end;
            long num = strtol(v, &end, 10);
            bool status = strncmp(a + 2, "status", n) == 0;

            if (*v == '\0' || *end != '\0' || num < (status ? 0 : 1) ||
                num > (status ? 6 : STORE_MAX_LIMIT)) {
                log_error("usage", "--%.*s: \"%s\" is not a number from %d to %d", (int)n, a + 2, v,
                          status ? 0 : 1, status ? 6 : STORE_MAX_LIMIT);
                return 2;
            }
            if (status)
                o->status = (int)num;
            else
                o->limit = (unsigned)num;
        }
    }
    return 0;
}

/* Loads the settings among the flags; a command prints its result, so the pool's connection
 * chatter is hidden unless VOIDRECON_LOG_LEVEL asks for it. */
static int cmd_config(struct cmd_opts *o, struct config *cfg)
{
    if (load_config(cfg, o->nflags, o->flags) != 0)
        return 2;
    if (getenv("VOIDRECON_LOG_LEVEL") == NULL && cfg->log_level < LOG_WARN)
        log_set_level(LOG_WARN);
    return 0;
}

static int cmd_cases(int argc, char **argv)
{
    struct cmd_opts o;
    struct config cfg;
    const char *sub;
    int rc = 2;

    config_init(&cfg);
    if (wants_help(argc, argv)) {
        fputs(cases_help, stdout);
        rc = 0;
        goto out_help;
    }
    if (cmd_opts_parse(argc, argv, &o) != 0)
        goto out;
    sub = o.npos > 0 ? o.pos[0] : "";
    if ((strcmp(sub, "add") == 0 || strcmp(sub, "show") == 0 || strcmp(sub, "ack") == 0)
            ? o.npos != 3
            : (strcmp(sub, "list") != 0 || o.npos != 1)) {
        fputs(cases_help, stderr);
        goto out;
    }
    config_cleanup(&cfg);
    if ((rc = cmd_config(&o, &cfg)) != 0)
        goto out;
    if (strcmp(sub, "add") == 0)
        rc = cli_cases_add(&cfg, o.pos[1], o.pos[2], o.status, o.json, stdout);
    else if (strcmp(sub, "list") == 0)
        rc = cli_cases_list(&cfg, o.state ? o.state : "open", o.limit, o.cursor, o.json, stdout);
    else if (strcmp(sub, "show") == 0)
        rc = cli_cases_show(&cfg, o.pos[1], o.pos[2], o.json, stdout);
    else
        rc = cli_cases_ack(&cfg, o.pos[1], o.pos[2], o.by, o.note, o.json, stdout);
out:
    free(o.flags);
out_help:
    config_cleanup(&cfg);
    return rc;
}

static int cmd_alerts(int argc, char **argv)
{
    struct cmd_opts o;
    struct config cfg;
    int rc = 2;

    config_init(&cfg);
    if (wants_help(argc, argv)) {
        fputs(alerts_help, stdout);
        rc = 0;
        goto out_help;
    }
    if (cmd_opts_parse(argc, argv, &o) != 0)
        goto out;
    if (o.npos != 1 || strcmp(o.pos[0], "list") != 0) {
        fputs(alerts_help, stderr);
        goto out;
    }
    config_cleanup(&cfg);
    if ((rc = cmd_config(&o, &cfg)) == 0)
        rc = cli_alerts_list(&cfg, o.state ? o.state : "all", o.limit, o.cursor, o.json, stdout);
out:
    free(o.flags);
out_help:
    config_cleanup(&cfg);
    return rc;
}

/* ---- entry -------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : NULL;

    vr_init();
    /* Writes to a closed socket must fail with EPIPE, not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    /* Before any thread exists: libcurl's resolver threads and OpenSSL need it. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "voidrecon: libcurl failed to initialise\n");
        return 1;
    }
    atexit(curl_global_cleanup);
    if (cmd == NULL || strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 ||
        strcmp(cmd, "-h") == 0) {
        fputs(usage_text, cmd ? stdout : stderr);
        return cmd ? 0 : 2;
    }
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 2, argv + 2);
    if (strcmp(cmd, "migrate") == 0)
        return cmd_migrate(argc - 2, argv + 2);
    if (strcmp(cmd, "cases") == 0)
        return cmd_cases(argc - 2, argv + 2);
    if (strcmp(cmd, "alerts") == 0)
        return cmd_alerts(argc - 2, argv + 2);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        if (wants_help(argc - 2, argv + 2)) {
            fputs(version_help, stdout);
            return 0;
        }
        printf("voidrecon %s\n", VOIDRECON_VERSION);
        return 0;
    }
    fprintf(stderr, "voidrecon: unknown command \"%s\"\n\n%s", cmd, usage_text);
    return 2;
}
