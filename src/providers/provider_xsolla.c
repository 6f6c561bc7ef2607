/* Xsolla: Authorization: Signature <hex SHA-1(body || project secret)>, 204 on success, 400
 * {"error":{"code":"INVALID_SIGNATURE"|"INVALID_PARAMETER",...}} for bad requests, 500 for
 * temporary errors so that Xsolla retries. order_canceled becomes a cancellation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "provider_int.h"

#define SIGNATURE_PREFIX "Signature "

/* The one header xsolla_verify reads: kept with each delivery for replays. */
static const char *const verify_headers[] = {"Authorization", NULL};
#define SHA1_HEX_BYTES 40

static int xsolla_verify(const char *secret, provider_header_fn header, const void *req,
                         const char *body, size_t len, char *err, size_t errlen)
{
    const char *auth = header(req, "Authorization");
    unsigned char md[EVP_MAX_MD_SIZE];
    char want[2 * EVP_MAX_MD_SIZE + 1];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx;
    const char *given;

    if (auth == NULL) {
        snprintf(err, errlen, "Authorization: missing (expected \"Signature <sha1 hex>\")");
        return VR_EAUTH;
    }
    /* Exactly as Xsolla's own library accepts it: one space, 40 lowercase hex digits. */
    given = auth + sizeof(SIGNATURE_PREFIX) - 1;
    if (strncmp(auth, SIGNATURE_PREFIX, sizeof(SIGNATURE_PREFIX) - 1) != 0 ||
        strlen(given) != SHA1_HEX_BYTES || strspn(given, "0123456789abcdef") != SHA1_HEX_BYTES) {
        snprintf(err, errlen, "Authorization: expected \"Signature\" and 40 lowercase hex digits");
        return VR_EAUTH;
    }
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) ||
        !EVP_DigestUpdate(ctx, body, len) || !EVP_DigestUpdate(ctx, secret, strlen(secret)) ||
        !EVP_DigestFinal_ex(ctx, md, &mdlen))
        vr_panic("SHA-1 failed"); /* it is always there: only memory can run out */
    EVP_MD_CTX_free(ctx);
    for (unsigned int i = 0; i < mdlen; i++)
        snprintf(want + (size_t)2 * i, 3, "%02x", md[i]);
    if (CRYPTO_memcmp(want, given, SHA1_HEX_BYTES) != 0) {
        snprintf(err, errlen, "Authorization: the signature does not match the body");
        return VR_EAUTH;
    }
    return 0;
}

/* An optional string (null allowed) copied into obj under name; a mistyped one fails. */
static int keep_string(const cJSON *from, const char *key, const char *path, cJSON *to,
                       const char *name, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(from, key);

    if (v == NULL || cJSON_IsNull(v)) {
        cJSON_AddNullToObject(to, name);
        return 0;
    }
    if (!cJSON_IsString(v))
        return provider_fail(err, errlen, path, "expected a string");
    cJSON_AddStringToObject(to, name, v->valuestring);
    return 0;
}

/* Version 2 adds is_free, is_bonus and is_bundle_content to the items. */
static int items_version(const cJSON *items)
{
    const cJSON *item;

    cJSON_ArrayForEach(item, items)
    {
        if (cJSON_GetObjectItemCaseSensitive(item, "is_free") ||
            cJSON_GetObjectItemCaseSensitive(item, "is_bonus") ||
            cJSON_GetObjectItemCaseSensitive(item, "is_bundle_content"))
            return 2;
    }
    return 1;
}

static int parse_canceled(const cJSON *root, struct provider_event *ev, char *err, size_t errlen)
{
    const cJSON *order = cJSON_GetObjectItemCaseSensitive(root, "order");
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(root, "user");
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(root, "items");
    const cJSON *id, *status;
    cJSON *details;
    char ref[32];
    int r = 0;

    if (!cJSON_IsObject(order))
        return provider_fail(err, errlen, "order", order ? "expected an object" : "missing");
    id = cJSON_GetObjectItemCaseSensitive(order, "id");
    if (id == NULL)
        return provider_fail(err, errlen, "order.id", "missing");
    if (!cJSON_IsNumber(id) || id->valuedouble != floor(id->valuedouble) || id->valuedouble < 0 ||
        id->valuedouble > 9007199254740991.0)
        return provider_fail(err, errlen, "order.id", "expected a non-negative integer");
    if (!cJSON_IsObject(user))
        return provider_fail(err, errlen, "user", user ? "expected an object" : "missing");
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(user, "external_id")))
        return provider_fail(err, errlen, "user.external_id",
                             cJSON_GetObjectItemCaseSensitive(user, "external_id")
                                 ? "expected a string"
                                 : "missing");
    if (!cJSON_IsArray(items))
        return provider_fail(err, errlen, "items", items ? "expected an array" : "missing");
    status = cJSON_GetObjectItemCaseSensitive(order, "status");
    if (status != NULL && !cJSON_IsNull(status) && !cJSON_IsString(status))
        return provider_fail(err, errlen, "order.status", "expected a string");

    details = cJSON_CreateObject();
    cJSON_AddNumberToObject(details, "order_id", id->valuedouble);
    if ((r = keep_string(order, "status", "order.status", details, "status", err, errlen)) ||
        (r = keep_string(order, "amount", "order.amount", details, "amount", err, errlen)) ||
        (r = keep_string(order, "currency", "order.currency", details, "currency", err, errlen)) ||
        (r = keep_string(order, "invoice_id", "order.invoice_id", details, "invoice_id", err,
                         errlen)) ||
        (r = keep_string(order, "mode", "order.mode", details, "mode", err, errlen)) ||
        (r = keep_string(user, "external_id", "user.external_id", details, "user_external_id", err,
                         errlen))) {
        cJSON_Delete(details);
        return r;
    }
    cJSON_AddNumberToObject(details, "items", cJSON_GetArraySize(items));
    cJSON_AddNumberToObject(details, "webhook_version", items_version(items));
    snprintf(ref, sizeof(ref), "%.0f", id->valuedouble);
    ev->kind = PROVIDER_EVENT_CANCELLATION;
    ev->order_ref = xstrdup(ref);
    ev->order_status = cJSON_IsString(status) ? xstrdup(cJSON_GetStringValue(status)) : NULL;
    ev->details = vr_json_print(details);
    cJSON_Delete(details);
    return 0;
}

static int xsolla_parse(const char *body, size_t len, struct provider_event *ev, char *err,
                        size_t errlen)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *type;
    const char *text = NULL;
    int r = 0;

    memset(ev, 0, sizeof(*ev));
    if (root == NULL)
        return provider_fail(err, errlen, "body", "not valid JSON");
    type = cJSON_GetObjectItemCaseSensitive(root, "notification_type");
    if (!cJSON_IsObject(root))
        r = provider_fail(err, errlen, "body", "expected a JSON object");
    else if (type == NULL)
        r = provider_fail(err, errlen, "notification_type", "missing");
    else if ((text = cJSON_GetStringValue(type)) == NULL || text[0] == '\0' ||
             strlen(text) > PROVIDER_MAX_TYPE_BYTES)
        r = provider_fail(err, errlen, "notification_type", "expected a string of 1 to 64 bytes");
    if (r == 0) {
        ev->type = xstrdup(text);
        if (strcmp(ev->type, "order_canceled") == 0)
            r = parse_canceled(root, ev, err, errlen);
        else
            ev->kind = PROVIDER_EVENT_OTHER;
    }
    cJSON_Delete(root);
    if (r != 0) {
        char *t = ev->type;

        ev->type = NULL;
        provider_event_cleanup(ev);
        ev->type = t;
    }
    return r;
}

static void xsolla_success(const char *outcome, long long delivery_id, struct provider_reply *out)
{
    (void)outcome;
    (void)delivery_id;
    out->status = 204; /* Xsolla: "204 with no message body in case of a successful response" */
}

static void xsolla_failure(enum provider_failure f, const char *message, struct provider_reply *out)
{
    switch (f) {
    case PROVIDER_BAD_SIGNATURE:
        out->status = 400;
        provider_error_body(out, "INVALID_SIGNATURE", message);
        return;
    case PROVIDER_BAD_MEDIA_TYPE:
    case PROVIDER_BAD_BODY:
        out->status = 400;
        provider_error_body(out, "INVALID_PARAMETER", message);
        return;
    case PROVIDER_UNAVAILABLE:
    case PROVIDER_INTERNAL:
        /* Xsolla documents 5xx for temporary errors: it sends the notification again. */
        out->status = 500;
        provider_error_body(out, "SERVER_ERROR", message);
        return;
    case PROVIDER_NOT_CONFIGURED:
        out->status = 503;
        provider_error_body(out, "SERVER_ERROR", message);
        return;
    }
}

const struct provider provider_xsolla = {
    .name = "xsolla",
    .needs_secret = true,
    .secret_help = "Xsolla project secret key (unset: /webhooks/xsolla answers 503)",
    .verifies_senders = true,
    .verify = xsolla_verify,
    .verify_headers = verify_headers,
    .parse = xsolla_parse,
    .success = xsolla_success,
    .failure = xsolla_failure,
};
