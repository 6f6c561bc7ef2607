/* HTTP routing and the webhook endpoints of every provider. Every answer to a webhook comes
 * after the store has committed (or failed), so a 2xx always means the effects are durable. */
#include "intake.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "api.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "provider.h"
#include "webhook.h"

#define WEBHOOKS_PREFIX    "/webhooks/"
#define RETRY_AFTER_HEADER "Retry-After: 5\r\n"
#define JSON               "application/json"

struct intake {
    struct store *st;
    struct health *health;
    struct webhook_routes *routes;
    struct api *api;
};

/* ---- small helpers ------------------------------------------------------------------------ */

static void respond_json(struct httpd_request *req, int status, const char *body)
{
    httpd_respond(req, status, JSON, NULL, body, strlen(body));
}

static void respond_unavailable(struct httpd_request *req, const char *message)
{
    httpd_respond_error(req, 503, "unavailable", message, RETRY_AFTER_HEADER);
}

/* Compares in time that depends only on the lengths, so a token cannot be guessed byte by
 * byte from response times. */
static bool token_equal(const char *given, size_t given_len, const char *want)
{
    size_t want_len = strlen(want);

    if (given_len != want_len)
        return false;
    return CRYPTO_memcmp(given, want, want_len) == 0;
}

/* ---- health and readiness ----------------------------------------------------------------- */

static void ready_checked(int status, const char *error, int version, void *arg)
{
    struct httpd_request *req = arg;
    char body[160];

    (void)error;
    if (status != 0) {
        respond_unavailable(req, "database unreachable");
        return;
    }
    if (version < migrate_latest_version()) {
        snprintf(body, sizeof(body),
                 "database schema is at version %d, this voidrecon needs %d: run voidrecon "
                 "migrate",
                 version, migrate_latest_version());
        respond_unavailable(req, body);
        return;
    }
    snprintf(body, sizeof(body), "{\"status\":\"ready\",\"schema_version\":%d}", version);
    respond_json(req, 200, body);
}

/* From memory: a scrape or a probe never takes a database connection from the webhooks. */
static void answer_ready(struct intake *in, struct httpd_request *req)
{
    char *body = NULL;

    switch (health_ready(in->health, &body)) {
    case HEALTH_READY:
        respond_json(req, 200, body);
        break;
    case HEALTH_NOT_READY:
        httpd_respond(req, 503, JSON, RETRY_AFTER_HEADER, body, strlen(body));
        break;
    case HEALTH_UNKNOWN:
        /* Only while the pool makes its first connections: wait for one, once. */
        store_schema_version(in->st, ready_checked, req);
        break;
    }
    free(body);
}

static void answer_metrics(struct intake *in, struct httpd_request *req)
{
    char *text = health_metrics(in->health);

    httpd_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, text, strlen(text));
    free(text);
}

/* ---- webhooks ----------------------------------------------------------------------------- */

static const char *header_of(const void *req, const char *name)
{
    return httpd_request_header((const struct httpd_request *)req, name);
}

static void respond_reply(struct httpd_request *req, const struct provider_reply *r)
{
    httpd_respond(req, r->status, r->content_type, r->extra_headers, r->body, strlen(r->body));
}

static void answer_failure(struct httpd_request *req, const struct webhook_route *route,
                           enum provider_failure f, const char *message)
{
    struct provider_reply r;

    memset(&r, 0, sizeof(r));
    route->p->failure(f, message, &r);
    respond_reply(req, &r);
}

/* The answer to a delivery, in its provider's terms, after the store has decided. */
static void webhook_done(const struct webhook_result *r, void *arg)
{
    struct httpd_request *req = arg;
    const struct provider *p = provider_find(r->provider, strlen(r->provider));
    struct provider_reply reply;

    memset(&reply, 0, sizeof(reply));
    switch (r->verdict) {
    case WEBHOOK_STORED:
        metrics_webhook(r->provider, r->res->outcome);
        if (r->ev->kind == PROVIDER_EVENT_VOID)
            metrics_transition("webhook", r->res->outcome);
        p->success(r->res->outcome, (long long)r->delivery_id, &reply);
        break;
    case WEBHOOK_REJECTED:
        metrics_webhook(r->provider, "rejected");
        p->failure(r->failure, r->message, &reply);
        break;
    case WEBHOOK_NOT_STORED:
        metrics_webhook(r->provider, "failed");
        p->failure(r->failure, r->message, &reply);
        break;
    }
    respond_reply(req, &reply);
}

static void webhook(struct intake *in, const struct webhook_route *route, struct httpd_request *req)
{
    struct webhook_input input;

    memset(&input, 0, sizeof(input));
    input.remote_addr = httpd_request_remote_addr(req);
    input.body = httpd_request_body(req, &input.len);
    input.header = header_of;
    input.header_arg = req;
    webhook_process(in->st, route, &input, webhook_done, req);
}

/* ---- routing ------------------------------------------------------------------------------ */

/* Where a path leads. */
enum target { TARGET_NONE, TARGET_WEBHOOK, TARGET_API, TARGET_METRICS, TARGET_HEALTH };

/* The target of path; for a webhook, its route and what follows /webhooks/<name> in *rest
 * ("" or "/<token>"). */
static enum target target_of(const struct intake *in, const char *path,
                             const struct webhook_route **route, const char **rest)
{
    if (strncmp(path, WEBHOOKS_PREFIX, sizeof(WEBHOOKS_PREFIX) - 1) == 0) {
        const char *name = path + sizeof(WEBHOOKS_PREFIX) - 1;
        size_t n = strcspn(name, "/");
        const struct webhook_route *r = webhook_routes_find(in->routes, name, n);

        if (r != NULL) {
            *route = r;
            *rest = name + n;
            return TARGET_WEBHOOK;
        }
        return TARGET_NONE;
    }
    if (strncmp(path, "/v1", 3) == 0 && (path[3] == '\0' || path[3] == '/'))
        return TARGET_API;
    if (strcmp(path, "/metrics") == 0)
        return TARGET_METRICS;
    if (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0)
        return TARGET_HEALTH;
    return TARGET_NONE;
}

static bool method_is(struct httpd_request *req, const char *m)
{
    return strcmp(httpd_request_method(req), m) == 0;
}

static bool not_found(struct httpd_request *req)
{
    httpd_respond_error(req, 404, "not_found", "no such endpoint", NULL);
    return false;
}

/* Who may post to a webhook route, decided from the head: the source address first, so that
 * an outsider learns nothing about the token, then the token, the method and the route's own
 * configuration. */
static bool webhook_admit(const struct webhook_route *route, struct httpd_request *req,
                          const char *rest)
{
    char msg[96];

    if (route->acl != NULL && acl_count(route->acl) > 0 &&
        !acl_allows(route->acl, httpd_request_peer(req))) {
        log_warn("webhook_forbidden", "provider=%s peer=%s: source address not allowed",
                 route->p->name, httpd_request_remote_addr(req));
        snprintf(msg, sizeof(msg), "source address %s is not allowed",
                 httpd_request_remote_addr(req));
        httpd_respond_error(req, 403, "forbidden", msg, NULL);
        return false;
    }
    if (route->token[0] != '\0') {
        if (rest[0] != '/' || !token_equal(rest + 1, strlen(rest + 1), route->token)) {
            log_warn("webhook_bad_token", "provider=%s peer=%s: missing or wrong path token",
                     route->p->name, httpd_request_remote_addr(req));
            return not_found(req);
        }
    } else if (rest[0] != '\0') {
        return not_found(req);
    }
    if (!method_is(req, "POST")) {
        httpd_respond_error(req, 405, "method_not_allowed", "use POST", "Allow: POST\r\n");
        return false;
    }
    if (route->p->needs_secret && route->secret[0] == '\0') {
        answer_failure(req, route, PROVIDER_NOT_CONFIGURED,
                       "this endpoint is not configured: its signing secret is not set");
        return false;
    }
    return true;
}

/* A segment "." or "..": a proxy that routes on the normalised path but passes the raw one
 * would otherwise reach a route it does not publish (/webhooks/../v1). No route has one. */
static bool has_dot_segment(const char *path)
{
    for (const char *seg = path; *seg != '\0';) {
        size_t n;

        seg += *seg == '/';
        n = strcspn(seg, "/");
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return true;
        seg += n;
    }
    return false;
}

static bool get_or_head(struct httpd_request *req)
{
    if (method_is(req, "GET") || method_is(req, "HEAD"))
        return true;
    httpd_respond_error(req, 405, "method_not_allowed", "use GET", "Allow: GET, HEAD\r\n");
    return false;
}

bool intake_admit(struct httpd_request *req, void *arg)
{
    struct intake *in = arg;
    const struct webhook_route *route = NULL;
    const char *rest = "";

    if (has_dot_segment(httpd_request_path(req))) {
        httpd_respond_error(req, 400, "bad_request", "the request path has a dot segment (. or ..)",
                            NULL);
        return false;
    }
    switch (target_of(in, httpd_request_path(req), &route, &rest)) {
    case TARGET_WEBHOOK:
        return webhook_admit(route, req, rest);
    case TARGET_API:
        return api_admit(in->api, req);
    case TARGET_METRICS:
    case TARGET_HEALTH:
        return get_or_head(req);
    case TARGET_NONE:
        break;
    }
    return not_found(req);
}

void intake_handle(struct httpd_request *req, void *arg)
{
    struct intake *in = arg;
    const char *path = httpd_request_path(req);
    const struct webhook_route *route = NULL;
    const char *rest = "";

    switch (target_of(in, path, &route, &rest)) {
    case TARGET_WEBHOOK:
        if (health_schema_behind(in->health)) {
            answer_failure(req, route, PROVIDER_UNAVAILABLE,
                           "database schema is behind: run voidrecon migrate");
            return;
        }
        webhook(in, route, req);
        return;
    case TARGET_API:
        api_handle(in->api, req);
        return;
    case TARGET_METRICS:
        answer_metrics(in, req);
        return;
    case TARGET_HEALTH:
        if (path[1] == 'h')
            respond_json(req, 200, "{\"status\":\"ok\"}");
        else
            answer_ready(in, req);
        return;
    case TARGET_NONE:
        break;
    }
    not_found(req);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

struct intake *intake_new(struct store *st, const struct intake_config *cfg)
{
    struct intake *in = xcalloc(1, sizeof(*in));

    in->st = st;
    in->health = cfg->health;
    in->routes = webhook_routes_new(cfg->providers, cfg->nproviders);
    in->api = api_new(st, cfg->admin_token);
    api_set_routes(in->api, in->routes);
    return in;
}

void intake_close(struct intake *in, void (*done_cb)(void *arg), void *arg)
{
    webhook_routes_free(in->routes);
    api_free(in->api);
    free(in);
    if (done_cb != NULL)
        done_cb(arg);
}
