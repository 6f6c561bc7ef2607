/* One delivery through its provider's checks into the store: the code a webhook received and a
 * replayed delivery share. Nothing here knows HTTP: the caller gives the body, the remote
 * address and a header lookup, and answers from the result. */
#include "webhook.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "acl.h"
#include "log.h"
#include "utf8.h"

/* Of a rejected body nothing vouched for, the bytes kept for the audit. */
#define REJECTED_BODY_KEEP_BYTES 4096
/* Longest kept header value; a longer one is cut (verification saw it whole). */
#define HEADER_KEEP_BYTES 1024

/* One delivery on its way to the database. */
struct webhook {
    struct store *st;
    const struct webhook_route *route;
    webhook_done_cb cb;
    void *arg;
    struct store_delivery d;
    struct provider_event ev;
    struct store_void_report rep;
    struct store_cancellation canc;
    struct webhook_result result;
    char *headers; /* JSON object of the kept headers */
    char error[256];
    unsigned char sha256[32]; /* of the whole body, when only a prefix is kept */
};

/* ---- routes ------------------------------------------------------------------------------- */

struct webhook_routes *webhook_routes_new(const struct config_provider *providers, size_t n)
{
    struct webhook_routes *rs = xcalloc(1, sizeof(*rs));

    rs->n = n;
    rs->routes = xcalloc(n + 1, sizeof(*rs->routes));
    for (size_t i = 0; i < n; i++) {
        const struct config_provider *cp = &providers[i];
        struct webhook_route *r = &rs->routes[i];

        r->p = cp->provider;
        r->token = xstrdup(cp->webhook_token ? cp->webhook_token : "");
        r->acl = cp->acl;
        r->secret = xstrdup(cp->secret ? cp->secret : "");
        r->alerts = cp->alerts_on;
    }
    return rs;
}

void webhook_routes_free(struct webhook_routes *rs)
{
    if (rs == NULL)
        return;
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->routes[i].token);
        memset(rs->routes[i].secret, 0, strlen(rs->routes[i].secret));
        free(rs->routes[i].secret);
    }
    free(rs->routes);
    free(rs);
}

const struct webhook_route *webhook_routes_find(const struct webhook_routes *rs, const char *name,
                                                size_t len)
{
    for (size_t i = 0; i < rs->n; i++) {
        const struct webhook_route *r = &rs->routes[i];

        if (strlen(r->p->name) == len && strncmp(name, r->p->name, len) == 0)
            return r;
    }
    return NULL;
}

/* ---- the delivery ------------------------------------------------------------------------- */

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

/* The headers the provider's verification reads, and no other, as a JSON object of lower-case
 * names: what a replay needs to check the signature again. */
static char *kept_headers(const struct provider *p, const struct webhook_input *in)
{
    cJSON *obj = cJSON_CreateObject();
    char name[64], value[HEADER_KEEP_BYTES + 1];
    char *s;

    for (const char *const *h = p->verify_headers; h != NULL && *h != NULL; h++) {
        const char *v = in->header(in->header_arg, *h);
        size_t i;

        if (v == NULL)
            continue;
        for (i = 0; (*h)[i] != '\0' && i + 1 < sizeof(name); i++)
            name[i] = (char)tolower((unsigned char)(*h)[i]);
        name[i] = '\0';
        utf8_copy_clean(value, sizeof(value), v, strlen(v));
        cJSON_AddStringToObject(obj, name, value);
    }
    s = vr_json_print(obj);
    cJSON_Delete(obj);
    return s;
}

static void finish(struct webhook *w)
{
    w->result.provider = w->d.provider;
    w->result.ev = &w->ev;
    w->cb(&w->result, w->arg);
    provider_event_cleanup(&w->ev);
    free(w->headers);
    free(w);
}

static void failed_stored(int status, const struct store_result *res, void *arg)
{
    struct webhook *w = arg;

    if (status != 0)
        log_warn("webhook_failure_not_stored", "provider=%s peer=%s: %s", w->d.provider,
                 w->d.remote_addr, res->error);
    w->result.delivery_id = status == 0 ? res->delivery_id : 0;
    w->result.verdict = WEBHOOK_NOT_STORED;
    w->result.failure = PROVIDER_INTERNAL;
    w->result.message = "the delivery could not be stored";
    finish(w);
}

/* The database refused the delivery's effects for good (a retry as such would not cure it):
 * the delivery is kept as failed with the reason, so that it does not vanish from sight, and
 * answered as an internal error, so that its sender may send it again once the cause is
 * fixed. While the database is away, nothing can be kept: unavailable, retry later. */
static void webhook_not_stored(struct webhook *w, int status, const char *error)
{
    bool transient = status == VR_EUNAVAIL;

    log_at(transient ? LOG_WARN : LOG_ERROR, "webhook_not_stored",
           "provider=%s type=%s peer=%s replay_of=%" PRId64 ": %s", w->d.provider,
           w->d.event_type ? w->d.event_type : "-", w->d.remote_addr, w->d.replay_of, error);
    if (transient) {
        w->result.verdict = WEBHOOK_NOT_STORED;
        w->result.failure = PROVIDER_UNAVAILABLE;
        w->result.message = "database unavailable; retry later";
        finish(w);
        return;
    }
    utf8_copy_clean(w->error, sizeof(w->error), error, strlen(error));
    store_record_delivery(w->st, &w->d, "failed", w->error, failed_stored, w);
}

static void webhook_log(const struct webhook *w, const struct store_result *res)
{
    const struct provider_event *ev = &w->ev;
    const char *order = ev->order_no ? ev->order_no : ev->order_ref ? ev->order_ref : "-";

    log_info("webhook",
             "provider=%s type=%s outcome=%s delivery=%" PRId64 " order=%s void=%s status=%d "
             "alert=%" PRId64 " peer=%s replay_of=%" PRId64,
             w->d.provider, w->d.event_type ? w->d.event_type : "-", res->outcome, res->delivery_id,
             order, ev->void_code ? ev->void_code : "-",
             ev->kind == PROVIDER_EVENT_VOID ? ev->void_status : -1, res->alert_id,
             w->d.remote_addr, w->d.replay_of);
}

static void webhook_stored(int status, const struct store_result *res, void *arg)
{
    struct webhook *w = arg;

    if (status != 0) {
        webhook_not_stored(w, status, res->error);
        return;
    }
    webhook_log(w, res);
    w->result.verdict = WEBHOOK_STORED;
    w->result.delivery_id = res->delivery_id;
    w->result.res = res;
    finish(w);
}

/* A bad request is refused whether or not its audit row could be written: the sender must fix
 * it, retrying would not help. */
static void rejected_stored(int status, const struct store_result *res, void *arg)
{
    struct webhook *w = arg;

    log_info("webhook_rejected",
             "provider=%s peer=%s delivery=%" PRId64 " replay_of=%" PRId64 ": %s", w->d.provider,
             w->d.remote_addr, status == 0 ? res->delivery_id : 0, w->d.replay_of, w->error);
    if (status != 0)
        log_warn("webhook_rejected_not_stored", "provider=%s peer=%s: %s", w->d.provider,
                 w->d.remote_addr, res->error);
    w->result.verdict = WEBHOOK_REJECTED;
    w->result.delivery_id = status == 0 ? res->delivery_id : 0;
    w->result.message = w->error;
    finish(w);
}

/* Keeps the delivery as rejected with w->error as its reason. Of a body nothing vouched for
 * (no good signature, no path token, no allowlist), only a prefix is kept, with the whole
 * length and hash, so that refused requests cannot fill the disk. */
static void webhook_reject(struct webhook *w, enum provider_failure f)
{
    const struct webhook_route *r = w->route;
    bool authenticated = (r->p->verify != NULL && f != PROVIDER_BAD_SIGNATURE) ||
                         r->token[0] != '\0' || (r->acl != NULL && acl_count(r->acl) > 0);

    w->result.failure = f;
    w->d.event_type = w->ev.type;
    if (!authenticated && w->d.body_len > REJECTED_BODY_KEEP_BYTES) {
        EVP_Digest(w->d.body, w->d.body_len, w->sha256, NULL, EVP_sha256(), NULL);
        w->d.whole_len = w->d.body_len;
        w->d.whole_sha256 = w->sha256;
        w->d.body_len = REJECTED_BODY_KEEP_BYTES;
    }
    store_record_delivery(w->st, &w->d, "rejected", w->error, rejected_stored, w);
}

static void webhook_store(struct webhook *w)
{
    w->d.event_type = w->ev.type;
    w->d.cid = w->ev.cid;
    switch (w->ev.kind) {
    case PROVIDER_EVENT_VOID:
        w->rep.order_no = w->ev.order_no;
        w->rep.void_code = w->ev.void_code;
        w->rep.status = w->ev.void_status;
        w->rep.message = w->ev.message;
        w->rep.source = VOIDCASE_SOURCE_WEBHOOK;
        store_apply_void(w->st, &w->d, &w->rep, webhook_stored, w);
        return;
    case PROVIDER_EVENT_CANCELLATION:
        w->canc.order_ref = w->ev.order_ref;
        w->canc.error_code = w->ev.error_code;
        w->canc.error_message = w->ev.error_message;
        w->canc.order_status = w->ev.order_status;
        w->canc.details = w->ev.details;
        w->canc.verified = w->route->p->verifies_senders;
        w->canc.alert = w->route->alerts;
        store_record_cancellation(w->st, &w->d, &w->canc, webhook_stored, w);
        return;
    case PROVIDER_EVENT_OTHER:
        store_record_delivery(w->st, &w->d, "ignored", NULL, webhook_stored, w);
        return;
    }
}

/* The Content-Type of a request received: 0, or VR_EPARSE with w->error saying what is wrong. */
static int check_media_type(struct webhook *w, const struct webhook_input *in)
{
    const char *ct = in->header(in->header_arg, "Content-Type");
    char quoted[64]; /* the Content-Type as text any reader can take */

    if (is_json_media_type(ct))
        return 0;
    if (ct == NULL) {
        snprintf(w->error, sizeof(w->error), "Content-Type: missing, expected application/json");
    } else {
        utf8_copy_clean(quoted, sizeof(quoted), ct, strlen(ct));
        snprintf(w->error, sizeof(w->error), "Content-Type: expected application/json, got \"%s\"",
                 quoted);
    }
    return VR_EPARSE;
}

void webhook_process(struct store *st, const struct webhook_route *route,
                     const struct webhook_input *in, webhook_done_cb cb, void *arg)
{
    const struct provider *p = route->p;
    struct webhook *w = xcalloc(1, sizeof(*w));

    w->st = st;
    w->route = route;
    w->cb = cb;
    w->arg = arg;
    w->headers = kept_headers(p, in);
    w->d.provider = p->name;
    w->d.remote_addr = in->remote_addr;
    w->d.body = in->body;
    w->d.body_len = in->len;
    w->d.headers = w->headers;
    w->d.replay_of = in->replay_of;
    /* The signature covers the raw bytes: it is checked before anything reads them. */
    if (p->verify != NULL && p->verify(route->secret, in->header, in->header_arg, in->body, in->len,
                                       w->error, sizeof(w->error)) != 0) {
        log_warn("webhook_bad_signature", "provider=%s peer=%s replay_of=%" PRId64 ": %s", p->name,
                 w->d.remote_addr, in->replay_of, w->error);
        webhook_reject(w, PROVIDER_BAD_SIGNATURE);
        return;
    }
    if (in->replay_of == 0 && check_media_type(w, in) != 0) {
        webhook_reject(w, PROVIDER_BAD_MEDIA_TYPE);
        return;
    }
    if (provider_parse(p, in->body, in->len, &w->ev, w->error, sizeof(w->error)) != 0) {
        webhook_reject(w, PROVIDER_BAD_BODY);
        return;
    }
    webhook_store(w);
}
