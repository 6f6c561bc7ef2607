/* HTTP routing and the webhook endpoints of every provider. Every answer to a webhook comes
 * after the store has committed (or failed), so a 2xx always means the effects are durable. */
#include "intake.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "api.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "provider.h"
#include "utf8.h"

#define WEBHOOKS_PREFIX    "/webhooks/"
#define RETRY_AFTER_HEADER "Retry-After: 5\r\n"
#define JSON               "application/json"
/* Of a rejected body nothing vouched for, the bytes kept for the audit. */
#define REJECTED_BODY_KEEP_BYTES 4096

/* A provider's endpoint and its settings. */
struct route {
    const struct provider *p;
    char *token;
    const struct acl *acl;
    char *secret;
    bool alerts;
};

struct intake {
    struct store *st;
    struct health *health;
    struct route *routes;
    size_t nroutes;
    struct api *api;
};

/* One webhook on its way to the database. */
struct webhook {
    struct intake *in;
    const struct route *route;
    struct httpd_request *req;
    struct store_delivery d;
    struct provider_event ev;
    struct store_void_report rep;
    struct store_cancellation canc;
    enum provider_failure failure; /* of a rejected request */
    char error[256];
    unsigned char sha256[32]; /* of the whole body, when only a prefix is kept */
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

/* "application/json", any case, optionally followed by parameters such as charset. */
static bool is_json_media_type(const char *ct)
{
    static const char want[] = "application/json";
    size_t n = sizeof(want) - 1;

    if (ct == NULL)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, want, n) != 0)
        return false;
    ct += n;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
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

static void answer_failure(struct httpd_request *req, const struct route *route,
                           enum provider_failure f, const char *message)
{
    struct provider_reply r;

    memset(&r, 0, sizeof(r));
    route->p->failure(f, message, &r);
    respond_reply(req, &r);
}

static void webhook_free(struct webhook *w)
{
    provider_event_cleanup(&w->ev);
    free(w);
}

static void failed_stored(int status, const struct store_result *res, void *arg)
{
    struct webhook *w = arg;

    if (status != 0)
        log_warn("webhook_failure_not_stored", "provider=%s peer=%s: %s", w->d.provider,
                 w->d.remote_addr, res->error);
    answer_failure(w->req, w->route, PROVIDER_INTERNAL, "the delivery could not be stored");
    webhook_free(w);
}

/* The database refused the delivery's effects for good (a retry as such would not cure it):
 * the delivery is kept as failed with the reason, so that it does not vanish from sight, and
 * answered 500, so that its sender may send it again once the cause is fixed. While the
 * database is away, nothing can be kept: 503, retry later. */
static void webhook_not_stored(struct webhook *w, int status, const char *error)
{
    bool transient = status == VR_EUNAVAIL;

    log_at(transient ? LOG_WARN : LOG_ERROR, "webhook_not_stored",
           "provider=%s type=%s peer=%s: %s", w->d.provider,
           w->d.event_type ? w->d.event_type : "-", w->d.remote_addr, error);
    if (transient) {
        answer_failure(w->req, w->route, PROVIDER_UNAVAILABLE, "database unavailable; retry later");
        webhook_free(w);
        return;
    }
    utf8_copy_clean(w->error, sizeof(w->error), error, strlen(error));
    store_record_delivery(w->in->st, &w->d, "failed", w->error, failed_stored, w);
}

static void webhook_log(const struct webhook *w, const struct store_result *res)
{
    const struct provider_event *ev = &w->ev;
    const char *order = ev->order_no ? ev->order_no : ev->order_ref ? ev->order_ref : "-";

    log_info("webhook",
             "provider=%s type=%s outcome=%s delivery=%" PRId64 " order=%s void=%s status=%d "
             "alert=%" PRId64 " peer=%s",
             w->d.provider, w->d.event_type ? w->d.event_type : "-", res->outcome, res->delivery_id,
             order, ev->void_code ? ev->void_code : "-",
             ev->kind == PROVIDER_EVENT_VOID ? ev->void_status : -1, res->alert_id,
             w->d.remote_addr);
}

static void webhook_stored(int status, const struct store_result *res, void *arg)
{
    struct webhook *w = arg;
    struct provider_reply r;

    metrics_webhook(w->d.provider, status == 0 ? res->outcome : "failed");
    if (status != 0) {
        webhook_not_stored(w, status, res->error);
        return;
    }
    if (w->ev.kind == PROVIDER_EVENT_VOID)
        metrics_transition("webhook", res->outcome);
    webhook_log(w, res);
    memset(&r, 0, sizeof(r));
    w->route->p->success(res->outcome, (long long)res->delivery_id, &r);
    respond_reply(w->req, &r);
    webhook_free(w);
}

/* A bad request is answered 4xx whether or not its audit row could be written: the sender
 * must fix it, retrying would not help. */
static void rejected_stored(int status, const struct store_result *res, void *arg)
{
    struct webhook *w = arg;

    metrics_webhook(w->d.provider, "rejected");
    log_info("webhook_rejected", "provider=%s peer=%s delivery=%" PRId64 ": %s", w->d.provider,
             w->d.remote_addr, status == 0 ? res->delivery_id : 0, w->error);
    if (status != 0)
        log_warn("webhook_rejected_not_stored", "provider=%s peer=%s: %s", w->d.provider,
                 w->d.remote_addr, res->error);
    answer_failure(w->req, w->route, w->failure, w->error);
    webhook_free(w);
}

/* Keeps the delivery as rejected with w->error as its reason, then answers. Of a body nothing
 * vouched for (no good signature, no path token, no allowlist), only a prefix is kept, with
 * the whole length and hash, so that refused requests cannot fill the disk. */
static void webhook_reject(struct webhook *w, enum provider_failure f)
{
    const struct route *r = w->route;
    bool authenticated = (r->p->verify != NULL && f != PROVIDER_BAD_SIGNATURE) ||
                         r->token[0] != '\0' || (r->acl != NULL && acl_count(r->acl) > 0);

    w->failure = f;
    w->d.event_type = w->ev.type;
    if (!authenticated && w->d.body_len > REJECTED_BODY_KEEP_BYTES) {
        EVP_Digest(w->d.body, w->d.body_len, w->sha256, NULL, EVP_sha256(), NULL);
        w->d.whole_len = w->d.body_len;
        w->d.whole_sha256 = w->sha256;
        w->d.body_len = REJECTED_BODY_KEEP_BYTES;
    }
    store_record_delivery(w->in->st, &w->d, "rejected", w->error, rejected_stored, w);
}

static void webhook_store(struct webhook *w)
{
    struct store *st = w->in->st;

    w->d.event_type = w->ev.type;
    switch (w->ev.kind) {
    case PROVIDER_EVENT_VOID:
        w->rep.order_no = w->ev.order_no;
        w->rep.void_code = w->ev.void_code;
        w->rep.status = w->ev.void_status;
        w->rep.message = w->ev.message;
        w->rep.source = VOIDCASE_SOURCE_WEBHOOK;
        store_apply_void(st, &w->d, &w->rep, webhook_stored, w);
        return;
    case PROVIDER_EVENT_CANCELLATION:
        w->canc.order_ref = w->ev.order_ref;
        w->canc.error_code = w->ev.error_code;
        w->canc.error_message = w->ev.error_message;
        w->canc.order_status = w->ev.order_status;
        w->canc.details = w->ev.details;
        w->canc.verified = w->route->p->verifies_senders;
        w->canc.alert = w->route->alerts;
        store_record_cancellation(st, &w->d, &w->canc, webhook_stored, w);
        return;
    case PROVIDER_EVENT_OTHER:
        store_record_delivery(st, &w->d, "ignored", NULL, webhook_stored, w);
        return;
    }
}

static void webhook(struct intake *in, const struct route *route, struct httpd_request *req)
{
    const struct provider *p = route->p;
    size_t len;
    const char *body = httpd_request_body(req, &len);
    const char *ct = httpd_request_header(req, "Content-Type");
    char quoted[64]; /* the Content-Type as text any reader can take */
    struct webhook *w;

    w = xcalloc(1, sizeof(*w));
    w->in = in;
    w->route = route;
    w->req = req;
    w->d.provider = p->name;
    w->d.remote_addr = httpd_request_remote_addr(req);
    w->d.body = body;
    w->d.body_len = len;
    /* The signature covers the raw bytes: it is checked before anything reads them. */
    if (p->verify != NULL &&
        p->verify(route->secret, header_of, req, body, len, w->error, sizeof(w->error)) != 0) {
        log_warn("webhook_bad_signature", "provider=%s peer=%s: %s", p->name, w->d.remote_addr,
                 w->error);
        webhook_reject(w, PROVIDER_BAD_SIGNATURE);
        return;
    }
    if (!is_json_media_type(ct)) {
        if (ct == NULL) {
            snprintf(w->error, sizeof(w->error),
                     "Content-Type: missing, expected application/json");
        } else {
            utf8_copy_clean(quoted, sizeof(quoted), ct, strlen(ct));
            snprintf(w->error, sizeof(w->error),
                     "Content-Type: expected application/json, got \"%s\"", quoted);
        }
        webhook_reject(w, PROVIDER_BAD_MEDIA_TYPE);
        return;
    }
    if (provider_parse(p, body, len, &w->ev, w->error, sizeof(w->error)) != 0) {
        webhook_reject(w, PROVIDER_BAD_BODY);
        return;
    }
    webhook_store(w);
}

/* ---- routing ------------------------------------------------------------------------------ */

/* Where a path leads. */
enum target { TARGET_NONE, TARGET_WEBHOOK, TARGET_API, TARGET_METRICS, TARGET_HEALTH };

/* The target of path; for a webhook, its route and what follows /webhooks/<name> in *rest
 * ("" or "/<token>"). */
static enum target target_of(const struct intake *in, const char *path, const struct route **route,
                             const char **rest)
{
    if (strncmp(path, WEBHOOKS_PREFIX, sizeof(WEBHOOKS_PREFIX) - 1) == 0) {
        const char *name = path + sizeof(WEBHOOKS_PREFIX) - 1;
        size_t n = strcspn(name, "/");

        for (size_t i = 0; i < in->nroutes; i++) {
            const struct route *r = &in->routes[i];

            if (strlen(r->p->name) == n && strncmp(name, r->p->name, n) == 0) {
                *route = r;
                *rest = name + n;
                return TARGET_WEBHOOK;
            }
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
static bool webhook_admit(const struct route *route, struct httpd_request *req, const char *rest)
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
    const struct route *route = NULL;
    const char *rest = "";

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
    const struct route *route = NULL;
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
    in->nroutes = cfg->nproviders;
    in->routes = xcalloc(cfg->nproviders + 1, sizeof(*in->routes));
    for (size_t i = 0; i < cfg->nproviders; i++) {
        const struct config_provider *cp = &cfg->providers[i];

        in->routes[i].p = cp->provider;
        in->routes[i].token = xstrdup(cp->webhook_token ? cp->webhook_token : "");
        in->routes[i].acl = cp->acl;
        in->routes[i].secret = xstrdup(cp->secret ? cp->secret : "");
        in->routes[i].alerts = cp->alerts_on;
    }
    in->api = api_new(st, cfg->admin_token);
    return in;
}

void intake_close(struct intake *in, void (*done_cb)(void *arg), void *arg)
{
    for (size_t i = 0; i < in->nroutes; i++) {
        free(in->routes[i].token);
        memset(in->routes[i].secret, 0, strlen(in->routes[i].secret));
        free(in->routes[i].secret);
    }
    free(in->routes);
    api_free(in->api);
    free(in);
    if (done_cb != NULL)
        done_cb(arg);
}
