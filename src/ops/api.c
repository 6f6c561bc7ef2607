/* /v1: bearer-token check, then the routes. */
#include "api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/crypto.h>

#include "atlas.h"
#include "log.h"
#include "metrics.h"
#include "provider.h"
#include "replay.h"

#define JSON "application/json"

#define MAX_BY_BYTES   200
#define MAX_NOTE_BYTES 2000

struct api {
    struct store *st;
    char *token;
    const struct webhook_routes *routes; /* for replays; NULL: none */
};

/* A request answered by an ops query; its strings are owned here until the answer. */
struct query {
    struct httpd_request *req;
    char *a, *b, *c, *d, *e;
};

struct registration {
    struct httpd_request *req;
    struct atlas_case_ref ref;
    struct store_void_report rep;
};

struct api *api_new(struct store *st, const char *admin_token)
{
    struct api *a = xcalloc(1, sizeof(*a));

    a->st = st;
    a->token = xstrdup(admin_token ? admin_token : "");
    return a;
}

void api_free(struct api *a)
{
    if (a == NULL)
        return;
    free(a->token);
    free(a);
}

/* "Bearer <token>", compared in time that depends only on the lengths. */
static int check_token(const struct api *a, struct httpd_request *req)
{
    const char *h = httpd_request_header(req, "Authorization");
    size_t want = strlen(a->token);

    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
        httpd_respond_error(req, 401, "unauthorized", "Authorization: Bearer <token> required",
                            "WWW-Authenticate: Bearer realm=\"voidrecon\"\r\n");
        return -1;
    }
    h += 7;
    while (*h == ' ')
        h++;
    if (strlen(h) != want || CRYPTO_memcmp(h, a->token, want) != 0) {
        log_warn("api_forbidden", "peer=%s: wrong bearer token", httpd_request_remote_addr(req));
        httpd_respond_error(req, 403, "forbidden", "wrong bearer token", NULL);
        return -1;
    }
    return 0;
}

char *api_registration_json(const char *order_no, const char *void_code,
                            const struct store_result *res)
{
    cJSON *obj = cJSON_CreateObject();
    char *s;

    cJSON_AddStringToObject(obj, "order_no", order_no);
    cJSON_AddStringToObject(obj, "void_code", void_code);
    cJSON_AddBoolToObject(obj, "created", res->created);
    cJSON_AddStringToObject(obj, "outcome", res->outcome);
    cJSON_AddNumberToObject(obj, "status", res->to_status);
    s = vr_json_print(obj);
    cJSON_Delete(obj);
    return s;
}

static void registered(int status, const struct store_result *res, void *arg)
{
    struct registration *r = arg;
    char *body;

    if (status == VR_EUNAVAIL) {
        log_warn("case_not_registered", "order=%s void=%s: %s", r->ref.order_no, r->ref.void_code,
                 res->error);
        httpd_respond_error(r->req, 503, "unavailable", "database unavailable; retry later",
                            "Retry-After: 5\r\n");
    } else if (status != 0) {
        log_error("case_not_registered", "order=%s void=%s: %s", r->ref.order_no, r->ref.void_code,
                  res->error);
        httpd_respond_error(r->req, 500, "internal", "the case could not be registered", NULL);
    } else {
        metrics_transition("api", res->outcome);
        log_info("case_registered", "order=%s void=%s outcome=%s status=%d", r->ref.order_no,
                 r->ref.void_code, res->outcome, res->to_status);
        body = api_registration_json(r->ref.order_no, r->ref.void_code, res);
        httpd_respond(r->req, res->created ? 201 : 200, JSON, NULL, body, strlen(body));
        free(body);
    }
    atlas_case_ref_cleanup(&r->ref);
    free(r);
}

/* POST /v1/cases: the order system names a case right after its void.do; a hint like a
 * webhook (source "api"), so registering twice, or after Atlas moved on, changes nothing. */
static void register_case(struct api *a, struct httpd_request *req)
{
    struct registration *r = xcalloc(1, sizeof(*r));
    char err[256];
    size_t len;
    const char *body = httpd_request_body(req, &len);

    if (atlas_case_ref_parse(body, len, &r->ref, err, sizeof(err)) != 0) {
        httpd_respond_error(req, 400, "invalid_payload", err, NULL);
        free(r);
        return;
    }
    r->req = req;
    r->rep = (struct store_void_report){
        .order_no = r->ref.order_no,
        .void_code = r->ref.void_code,
        .status = r->ref.void_status,
        .source = VOIDCASE_SOURCE_API,
    };
    store_apply_void(a->st, NULL, &r->rep, registered, r);
}

/* ---- queries ------------------------------------------------------------------------------ */

static void query_free(struct query *q)
{
    free(q->a);
    free(q->b);
    free(q->c);
    free(q->d);
    free(q->e);
    free(q);
}

static void queried(int status, const char *json, const char *error, void *arg)
{
    struct query *q = arg;

    switch (status) {
    case 0:
        httpd_respond(q->req, 200, JSON, NULL, json, strlen(json));
        break;
    case VR_ENOENT:
        httpd_respond_error(q->req, 404, "not_found", error, NULL);
        break;
    case VR_ESTATE:
        httpd_respond_error(q->req, 409, "no_followup", error, NULL);
        break;
    case VR_EINVAL:
        httpd_respond_error(q->req, 400, "invalid_cursor", "cursor: not one this API gave out",
                            NULL);
        break;
    case VR_EUNAVAIL:
        log_warn("api_unavailable", "%s", error);
        httpd_respond_error(q->req, 503, "unavailable", "database unavailable; retry later",
                            "Retry-After: 5\r\n");
        break;
    default:
        log_error("api_failed", "%s", error);
        httpd_respond_error(q->req, 500, "internal", "the query failed", NULL);
        break;
    }
    query_free(q);
}

/* The decoded value of name in a query string ("a=1&b=2"), or NULL when absent; sets *bad when
 * the value does not decode to text. Caller frees. */
static char *query_param(const char *query, const char *name, bool *bad)
{
    size_t n = strlen(name);

    for (const char *p = query; p != NULL && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        size_t len = strcspn(p, "&");
        int out = 0;
        char *v, *copy;

        if (len <= n || strncmp(p, name, n) != 0 || p[n] != '=')
            continue;
        /* curl ignores its handle argument here since 7.82. */
        v = curl_easy_unescape(NULL, p + n + 1, (int)(len - n - 1), &out);
        if (v == NULL || (size_t)out != strlen(v)) {
            curl_free(v);
            *bad = true;
            return NULL;
        }
        copy = xstrdup(v);
        curl_free(v);
        return copy;
    }
    return NULL;
}

/* limit=N (1..STORE_MAX_LIMIT) and cursor=...; answers 400 itself and returns -1 when bad. */
static int paging(struct httpd_request *req, unsigned *limit, char **cursor)
{
    bool bad = false;
    char *lim = query_param(httpd_request_query(req), "limit", &bad);
    char *end = NULL;
    long n = 0;

    *limit = 0;
    *cursor = query_param(httpd_request_query(req), "cursor", &bad);
    if (lim != NULL) {
        n = strtol(lim, &end, 10);
        bad = bad || *lim == '\0' || *end != '\0' || n < 1 || n > STORE_MAX_LIMIT;
        *limit = (unsigned)n;
    }
    free(lim);
    if (*cursor != NULL && (strlen(*cursor) > 4096 || (*cursor)[0] == '\0'))
        bad = true;
    if (bad) {
        free(*cursor);
        *cursor = NULL;
        httpd_respond_error(req, 400, "invalid_query",
                            "limit must be 1 to 500 and cursor one this API gave out", NULL);
        return -1;
    }
    return 0;
}

static struct query *query_new(struct httpd_request *req)
{
    struct query *q = xcalloc(1, sizeof(*q));

    q->req = req;
    return q;
}

static void list(struct api *a, struct httpd_request *req, const char *what)
{
    bool bad = false;
    char *state = query_param(httpd_request_query(req), "state", &bad);
    bool cases = strcmp(what, "cases") == 0, alerts = strcmp(what, "alerts") == 0;
    struct query *q;
    unsigned limit;
    char *cursor;

    if (state == NULL)
        state = xstrdup(cases ? "open" : "all");
    if (bad || (cases && !store_case_state_valid(state)) ||
        (alerts && !store_alert_state_valid(state)) ||
        (!cases && !alerts && !store_cancellation_state_valid(state))) {
        httpd_respond_error(req, 400, "invalid_query",
                            cases    ? "state must be open, followup, rejected or all"
                            : alerts ? "state must be pending, delivered or all"
                                     : "state must be open, acked or all",
                            NULL);
        free(state);
        return;
    }
    if (paging(req, &limit, &cursor) != 0) {
        free(state);
        return;
    }
    q = query_new(req);
    q->a = state;
    q->b = cursor;
    if (strcmp(what, "cases") == 0)
        store_cases_list(a->st, q->a, limit, q->b, queried, q);
    else if (strcmp(what, "alerts") == 0)
        store_alerts_list(a->st, q->a, limit, q->b, queried, q);
    else
        store_cancellations_list(a->st, q->a, limit, q->b, queried, q);
}

/* An acknowledgement's body: {"by": "name", "note": "text"?, "reason": "stuck"?} (reason only
 * when with_reason). NULL, or what is wrong with it; *by, *note and *reason are the caller's. */
static const char *ack_body(struct httpd_request *req, bool with_reason, char **by, char **note,
                            char **reason)
{
    size_t len;
    const char *body = httpd_request_body(req, &len);
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "by");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "note");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "reason");
    const char *err = NULL;

    *by = *note = *reason = NULL;
    if (!cJSON_IsObject(root))
        err = "body: expected a JSON object {\"by\": ..., \"note\": ...}";
    else if (!cJSON_IsString(b) || b->valuestring[0] == '\0')
        err = "by: expected the name of who acknowledges";
    else if (strlen(b->valuestring) > MAX_BY_BYTES)
        err = "by: longer than 200 bytes";
    else if (n != NULL && !cJSON_IsNull(n) && !cJSON_IsString(n))
        err = "note: expected a string";
    else if (cJSON_IsString(n) && strlen(cJSON_GetStringValue(n)) > MAX_NOTE_BYTES)
        err = "note: longer than 2000 bytes";
    else if (with_reason && r != NULL && !cJSON_IsNull(r) &&
             !(cJSON_IsString(r) && store_followup_reason_valid(r->valuestring)))
        err = "reason: expected one of rejected, conflict, poll_failing, stuck";
    else if (!with_reason && r != NULL && !cJSON_IsNull(r))
        err = "reason: an order cancellation has only one follow-up";
    if (err == NULL) {
        *by = xstrdup(b->valuestring);
        const char *nv = cJSON_GetStringValue(n), *rv = cJSON_GetStringValue(r);

        *note = nv != NULL ? xstrdup(nv) : NULL;
        *reason = rv != NULL ? xstrdup(rv) : NULL;
    }
    cJSON_Delete(root);
    return err;
}

/* POST /v1/cases/{orderNo}/{voidCode}/ack */
static void acknowledge(struct api *a, struct httpd_request *req, char *order, char *code)
{
    struct query *q = query_new(req);
    const char *err = ack_body(req, true, &q->c, &q->d, &q->e);

    q->a = order;
    q->b = code;
    if (err != NULL) {
        httpd_respond_error(req, 400, "invalid_payload", err, NULL);
        query_free(q);
        return;
    }
    log_info("followup_ack", "order=%s void=%s reason=%s by=%s", q->a, q->b, q->e ? q->e : "(all)",
             q->c);
    store_case_ack(a->st, q->a, q->b, q->e, q->c, q->d, queried, q);
}

/* Decodes one path segment; NULL when empty, too long or not text. */
static char *segment(const char *s, size_t len)
{
    int out = 0;
    char *v, *copy;

    if (len == 0 || len > (size_t)3 * ATLAS_MAX_KEY_BYTES)
        return NULL;
    v = curl_easy_unescape(NULL, s, (int)len, &out);
    if (v == NULL || (size_t)out != strlen(v) || out == 0 || out > ATLAS_MAX_KEY_BYTES) {
        curl_free(v);
        return NULL;
    }
    copy = xstrdup(v);
    curl_free(v);
    return copy;
}

/* /v1/cases/{orderNo}/{voidCode}[/ack] */
static void one_case(struct api *a, struct httpd_request *req, const char *rest)
{
    const char *method = httpd_request_method(req);
    size_t l1 = strcspn(rest, "/"), l2;
    const char *tail;
    char *order, *code;

    l2 = rest[l1] == '/' ? strcspn(rest + l1 + 1, "/") : 0;
    tail = rest[l1] == '/' ? rest + l1 + 1 + l2 : "";
    order = segment(rest, l1);
    code = l2 ? segment(rest + l1 + 1, l2) : NULL;
    if (order == NULL || code == NULL || (strcmp(tail, "") != 0 && strcmp(tail, "/ack") != 0)) {
        free(order);
        free(code);
        httpd_respond_error(req, 404, "not_found", "no such endpoint", NULL);
        return;
    }
    if (strcmp(tail, "/ack") == 0) {
        if (strcmp(method, "POST") != 0) {
            free(order);
            free(code);
            httpd_respond_error(req, 405, "method_not_allowed", "use POST", "Allow: POST\r\n");
            return;
        }
        acknowledge(a, req, order, code);
        return;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        free(order);
        free(code);
        httpd_respond_error(req, 405, "method_not_allowed", "use GET", "Allow: GET, HEAD\r\n");
        return;
    }
    struct query *q = query_new(req);
    q->a = order;
    q->b = code;
    store_case_show(a->st, q->a, q->b, queried, q);
}

/* A positive decimal int64 and nothing else. */
static bool parse_id(const char *s, size_t len, int64_t *out)
{
    int64_t v = 0;

    if (len == 0 || len > 18)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return v > 0;
}

/* /v1/cancellations/{id}[/ack] */
static void one_cancellation(struct api *a, struct httpd_request *req, const char *rest)
{
    const char *method = httpd_request_method(req);
    size_t n = strcspn(rest, "/");
    bool ack = strcmp(rest + n, "/ack") == 0;
    struct query *q;
    const char *err;
    int64_t id = 0;

    if (!parse_id(rest, n, &id) || (rest[n] != '\0' && !ack)) {
        httpd_respond_error(req, 404, "not_found", "no such endpoint", NULL);
        return;
    }
    if (ack != (strcmp(method, "POST") == 0) ||
        (!ack && strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)) {
        httpd_respond_error(req, 405, "method_not_allowed", ack ? "use POST" : "use GET",
                            ack ? "Allow: POST\r\n" : "Allow: GET, HEAD\r\n");
        return;
    }
    q = query_new(req);
    if (!ack) {
        store_cancellation_show(a->st, id, queried, q);
        return;
    }
    if ((err = ack_body(req, false, &q->c, &q->d, &q->e)) != NULL) {
        httpd_respond_error(req, 400, "invalid_payload", err, NULL);
        query_free(q);
        return;
    }
    log_info("cancellation_ack", "id=%" PRId64 " by=%s", id, q->c);
    store_cancellation_ack(a->st, id, q->c, q->d, queried, q);
}

/* ---- deliveries ----------------------------------------------------------------------------- */

void api_set_routes(struct api *a, const struct webhook_routes *routes)
{
    a->routes = routes;
}

static void bad_query(struct httpd_request *req, const char *message)
{
    httpd_respond_error(req, 400, "invalid_query", message, NULL);
}

static void deliveries_answered(int status, const char *json, const char *error, void *arg)
{
    struct query *q = arg;

    if (status == VR_ENOENT) {
        httpd_respond_error(q->req, 404, "not_found", "no such delivery", NULL);
        query_free(q);
        return;
    }
    queried(status, json, error, q);
}

/* 400 naming the providers there are (provider_all is the one list). */
static void bad_provider_query(struct httpd_request *req)
{
    char msg[256];
    size_t used = (size_t)snprintf(msg, sizeof(msg), "provider: must be");

    for (size_t i = 0; i < provider_count && used < sizeof(msg); i++)
        used += (size_t)snprintf(msg + used, sizeof(msg) - used, "%s %s",
                                 i == 0                   ? ""
                                 : i + 1 < provider_count ? ","
                                                          : " or",
                                 provider_all[i]->name);
    bad_query(req, msg);
}

/* The filters of GET /v1/deliveries; answers 400 naming the parameter and returns -1 when one
 * is bad. */
static int delivery_filters(struct httpd_request *req, struct query *q, unsigned *limit,
                            int64_t *before)
{
    const char *query = httpd_request_query(req);
    bool bad_provider = false, bad_outcome = false, bad_limit = false, bad_cursor = false;
    char *lim = query_param(query, "limit", &bad_limit);
    char *cursor = query_param(query, "cursor", &bad_cursor);
    long n = 0;
    char *end = NULL;

    q->a = query_param(query, "provider", &bad_provider);
    q->b = query_param(query, "outcome", &bad_outcome);
    if (lim != NULL) {
        n = strtol(lim, &end, 10);
        bad_limit = bad_limit || *lim == '\0' || *end != '\0' || n < 1 || n > STORE_MAX_LIMIT;
        *limit = (unsigned)n;
    }
    bad_cursor = bad_cursor || (cursor != NULL && !parse_id(cursor, strlen(cursor), before));
    free(lim);
    free(cursor);
    if (bad_provider || (q->a != NULL && provider_find(q->a, strlen(q->a)) == NULL))
        bad_provider_query(req);
    else if (bad_outcome || (q->b != NULL && !store_delivery_outcome_valid(q->b)))
        bad_query(req, "outcome: must be applied, duplicate, stale, conflict, ignored, "
                       "rejected or failed");
    else if (bad_limit)
        bad_query(req, "limit: must be a number from 1 to 500");
    else if (bad_cursor)
        bad_query(req, "cursor: not one this API gave out");
    else
        return 0;
    return -1;
}

static void deliveries_list(struct api *a, struct httpd_request *req)
{
    struct query *q = query_new(req);
    unsigned limit = 0;
    int64_t before = 0;

    if (delivery_filters(req, q, &limit, &before) != 0) {
        query_free(q);
        return;
    }
    store_deliveries_list(a->st, q->a, q->b, limit, before, deliveries_answered, q);
}

static void replayed(const struct replay_result *r, void *arg)
{
    struct httpd_request *req = arg;
    char *body;

    switch (r->status) {
    case 0:
        log_info("delivery_replayed", "delivery=%" PRId64 " replay=%" PRId64 " outcome=%s",
                 r->replay_of, r->delivery_id, r->outcome);
        body = replay_result_json(r);
        httpd_respond(req, 200, JSON, NULL, body, strlen(body));
        free(body);
        return;
    case VR_ENOENT:
        httpd_respond_error(req, 404, "not_found", "no such delivery", NULL);
        return;
    case VR_ESTATE:
        httpd_respond_error(req, 409, r->code, r->message, NULL);
        return;
    case VR_EUNAVAIL:
        log_warn("api_unavailable", "%s", r->message);
        httpd_respond_error(req, 503, "unavailable", "database unavailable; retry later",
                            "Retry-After: 5\r\n");
        return;
    default:
        log_error("api_failed", "%s", r->message);
        httpd_respond_error(req, 500, "internal", "the replay failed", NULL);
        return;
    }
}

/* /v1/deliveries/{id}[/replay] */
static void one_delivery(struct api *a, struct httpd_request *req, const char *rest)
{
    const char *method = httpd_request_method(req);
    size_t n = strcspn(rest, "/");
    bool replay = strcmp(rest + n, "/replay") == 0;
    struct query *q;
    int64_t id = 0;

    if (rest[n] != '\0' && !replay) {
        httpd_respond_error(req, 404, "not_found", "no such endpoint", NULL);
        return;
    }
    if (replay ? strcmp(method, "POST") != 0
               : strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        httpd_respond_error(req, 405, "method_not_allowed", replay ? "use POST" : "use GET",
                            replay ? "Allow: POST\r\n" : "Allow: GET, HEAD\r\n");
        return;
    }
    if (!parse_id(rest, n, &id)) {
        bad_query(req, "id: expected a delivery id (a positive integer)");
        return;
    }
    if (replay && a->routes == NULL) {
        httpd_respond_error(req, 404, "not_found", "replays are not served here", NULL);
        return;
    }
    if (replay) {
        log_info("delivery_replay", "delivery=%" PRId64 " peer=%s", id,
                 httpd_request_remote_addr(req));
        replay_delivery(a->st, a->routes, id, replayed, req);
        return;
    }
    q = query_new(req);
    store_delivery_show(a->st, id, deliveries_answered, q);
}

/* GET /v1/deliveries, GET /v1/deliveries/{id}, POST /v1/deliveries/{id}/replay; false when
 * path is none of them. */
static bool deliveries_route(struct api *a, struct httpd_request *req, const char *path)
{
    const char *method = httpd_request_method(req);

    if (strcmp(path, "/v1/deliveries") == 0) {
        if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
            deliveries_list(a, req);
        else
            httpd_respond_error(req, 405, "method_not_allowed", "use GET", "Allow: GET, HEAD\r\n");
        return true;
    }
    if (strncmp(path, "/v1/deliveries/", 15) == 0) {
        one_delivery(a, req, path + 15);
        return true;
    }
    return false;
}

/* ---- the change feed ---------------------------------------------------------------------- */

static void events_answered(int status, const char *json, const char *error, void *arg)
{
    struct query *q = arg;

    if (status != VR_ENOENT) {
        queried(status, json, error, arg);
        return;
    }
    httpd_respond_error(q->req, 400, "invalid_query",
                        "after: no event has this id; pass the id of the last event this feed "
                        "gave you, or 0",
                        NULL);
    query_free(q);
}

/* A whole number from lo to hi, digits only; false when text is anything else. */
static bool whole_number(const char *text, long long lo, long long hi, long long *out)
{
    char *end;

    if (text[0] < '0' || text[0] > '9' || strlen(text) > 19)
        return false;
    errno = 0;
    *out = strtoll(text, &end, 10);
    return errno == 0 && *end == '\0' && *out >= lo && *out <= hi;
}

/* GET /v1/events?after=ID&limit=N: the change feed after the event ID. */
static void events(struct api *a, struct httpd_request *req)
{
    bool bad_after = false, bad_limit = false;
    char *after = query_param(httpd_request_query(req), "after", &bad_after);
    char *limit = query_param(httpd_request_query(req), "limit", &bad_limit);
    long long after_id = 0, n = 0;
    const char *err = NULL;

    if (bad_after || (after != NULL && !whole_number(after, 0, INT64_MAX, &after_id)))
        err = "after: expected the id of the last event read, a whole number (0: from the start)";
    else if (bad_limit || (limit != NULL && !whole_number(limit, 1, STORE_MAX_LIMIT, &n)))
        err = "limit: expected a number from 1 to 500";
    free(after);
    free(limit);
    if (err != NULL) {
        httpd_respond_error(req, 400, "invalid_query", err, NULL);
        return;
    }
    store_events_list(a->st, (int64_t)after_id, (unsigned)n, events_answered, query_new(req));
}

bool api_admit(const struct api *a, struct httpd_request *req)
{
    if (a->token[0] == '\0') {
        httpd_respond_error(req, 404, "api_disabled",
                            "the /v1 API is disabled: set VOIDRECON_ADMIN_TOKEN", NULL);
        return false;
    }
    return check_token(a, req) == 0;
}

void api_handle(struct api *a, struct httpd_request *req)
{
    const char *path = httpd_request_path(req);
    const char *method = httpd_request_method(req);
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (strcmp(path, "/v1/cases") == 0) {
        if (strcmp(method, "POST") == 0)
            register_case(a, req);
        else if (get)
            list(a, req, "cases");
        else
            httpd_respond_error(req, 405, "method_not_allowed", "use GET or POST",
                                "Allow: GET, HEAD, POST\r\n");
        return;
    }
    if (strncmp(path, "/v1/cases/", 10) == 0) {
        one_case(a, req, path + 10);
        return;
    }
    if (strncmp(path, "/v1/cancellations/", 18) == 0) {
        one_cancellation(a, req, path + 18);
        return;
    }
    if (strcmp(path, "/v1/events") == 0) {
        if (get)
            events(a, req);
        else
            httpd_respond_error(req, 405, "method_not_allowed", "use GET", "Allow: GET, HEAD\r\n");
        return;
    }
    if (strcmp(path, "/v1/alerts") == 0 || strcmp(path, "/v1/cancellations") == 0) {
        if (get)
            list(a, req, path + 4);
        else
            httpd_respond_error(req, 405, "method_not_allowed", "use GET", "Allow: GET, HEAD\r\n");
        return;
    }
    if (deliveries_route(a, req, path))
        return;
    httpd_respond_error(req, 404, "not_found", "no such endpoint", NULL);
}
