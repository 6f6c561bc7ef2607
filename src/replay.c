/* Replay: load a stored delivery, check that it can run again today, then hand it to the same
 * webhook_process as a request received. */
#include "replay.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "acl.h"
#include "common.h"

struct replay {
    struct store *st;
    const struct webhook_routes *routes;
    replay_done_cb cb;
    void *arg;
    int64_t id;
    char *body; /* copied: the store lends it only for its callback */
    size_t len;
    char *remote_addr;
    cJSON *headers; /* the kept headers; an empty object when none were */
    struct replay_result result;
    char message[256];
};

static void replay_finish(struct replay *r)
{
    r->result.replay_of = r->id;
    r->cb(&r->result, r->arg);
    free(r->body);
    free(r->remote_addr);
    cJSON_Delete(r->headers);
    free(r);
}

static void refuse(struct replay *r, const char *code)
{
    r->result.status = VR_ESTATE;
    r->result.code = code;
    r->result.message = r->message;
    replay_finish(r);
}

/* The kept headers stand in for the request's; their names are kept in lower case. */
static const char *kept_header(const void *arg, const char *name)
{
    const cJSON *v = cJSON_GetObjectItem((const cJSON *)arg, name); /* any case */

    return cJSON_GetStringValue(v);
}

static void processed(const struct webhook_result *w, void *arg)
{
    struct replay *r = arg;

    r->result.delivery_id = w->delivery_id;
    switch (w->verdict) {
    case WEBHOOK_STORED:
        r->result.outcome = w->res->outcome;
        r->result.alert_id = w->res->alert_id;
        break;
    case WEBHOOK_REJECTED:
        r->result.outcome = "rejected";
        r->result.reason = w->message;
        break;
    case WEBHOOK_NOT_STORED:
        if (w->failure == PROVIDER_UNAVAILABLE) {
            r->result.status = VR_EUNAVAIL;
            r->result.message = w->message;
        } else {
            r->result.outcome = "failed";
            r->result.reason = w->message;
        }
        break;
    }
    replay_finish(r);
}

/* Would today's allowlist of route admit the stored address? */
static bool source_allowed(const struct webhook_route *route, const char *addr)
{
    struct sockaddr_storage ss;

    if (route->acl == NULL || acl_count(route->acl) == 0)
        return true;
    if (addr == NULL)
        return false;
    memset(&ss, 0, sizeof(ss));
    if (uv_ip4_addr(addr, 0, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(addr, 0, (struct sockaddr_in6 *)&ss) != 0)
        return false;
    return acl_allows(route->acl, (const struct sockaddr *)&ss);
}

/* Why route cannot run the delivery today (r->message set, the code returned), or NULL. */
static const char *cannot_run(struct replay *r, const struct webhook_route *route,
                              const struct store_stored_delivery *d)
{
    if (route == NULL) {
        snprintf(r->message, sizeof(r->message),
                 "delivery %" PRId64
                 " came to provider \"%s\", which this voidrecon does not serve",
                 d->id, d->provider);
        return "unknown_provider";
    }
    if (d->body_len < d->whole_len) {
        snprintf(r->message, sizeof(r->message),
                 "delivery %" PRId64 " kept only %zu of %" PRIu64
                 " bytes of its body (its sender was not authenticated): it cannot be replayed",
                 d->id, d->body_len, d->whole_len);
        return "body_incomplete";
    }
    if (route->p->needs_secret && route->secret[0] == '\0') {
        snprintf(r->message, sizeof(r->message),
                 "provider %s is not configured: its signing secret is not set", route->p->name);
        return "not_configured";
    }
    if (!source_allowed(route, d->remote_addr)) {
        snprintf(r->message, sizeof(r->message),
                 "delivery %" PRId64 " came from %s, which the %s allowlist does not admit today",
                 d->id, d->remote_addr ? d->remote_addr : "an unknown address", route->p->name);
        return "source_not_allowed";
    }
    return NULL;
}

static void loaded(int status, const char *error, const struct store_stored_delivery *d, void *arg)
{
    struct replay *r = arg;
    const struct webhook_route *route;
    struct webhook_input in;
    const char *code;

    if (status != 0) {
        r->result.status = status;
        snprintf(r->message, sizeof(r->message), "%s", error);
        r->result.message = r->message;
        replay_finish(r);
        return;
    }
    route = webhook_routes_find(r->routes, d->provider, strlen(d->provider));
    if ((code = cannot_run(r, route, d)) != NULL) {
        refuse(r, code);
        return;
    }
    r->body = xmalloc(d->body_len + 1);
    memcpy(r->body, d->body, d->body_len);
    r->len = d->body_len;
    r->remote_addr = d->remote_addr ? xstrdup(d->remote_addr) : NULL;
    r->headers = d->headers ? cJSON_Parse(d->headers) : NULL;
    if (!cJSON_IsObject(r->headers)) {
        cJSON_Delete(r->headers);
        r->headers = cJSON_CreateObject();
    }
    memset(&in, 0, sizeof(in));
    in.remote_addr = r->remote_addr;
    in.body = r->body;
    in.len = r->len;
    in.header = kept_header;
    in.header_arg = r->headers;
    in.replay_of = r->id;
    webhook_process(r->st, route, &in, processed, r);
}

void replay_delivery(struct store *st, const struct webhook_routes *routes, int64_t id,
                     replay_done_cb cb, void *arg)
{
    struct replay *r = xcalloc(1, sizeof(*r));

    r->st = st;
    r->routes = routes;
    r->cb = cb;
    r->arg = arg;
    r->id = id;
    store_delivery_load(st, id, loaded, r);
}

char *replay_result_json(const struct replay_result *r)
{
    cJSON *obj = cJSON_CreateObject();
    char *s;

    cJSON_AddNumberToObject(obj, "replay_of", (double)r->replay_of);
    if (r->delivery_id > 0)
        cJSON_AddNumberToObject(obj, "delivery_id", (double)r->delivery_id);
    else
        cJSON_AddNullToObject(obj, "delivery_id");
    cJSON_AddStringToObject(obj, "outcome", r->outcome);
    if (r->reason != NULL)
        cJSON_AddStringToObject(obj, "reason", r->reason);
    else
        cJSON_AddNullToObject(obj, "reason");
    if (r->alert_id > 0)
        cJSON_AddNumberToObject(obj, "alert_id", (double)r->alert_id);
    else
        cJSON_AddNullToObject(obj, "alert_id");
    s = vr_json_print(obj);
    cJSON_Delete(obj);
    return s;
}
