/* Alert bodies and Standard Webhooks signatures. */
#include "alert.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "utf8.h"

#define WHSEC_PREFIX "whsec_"

static const char *str(const cJSON *obj, const char *name, const char *fallback)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

    return cJSON_IsString(v) && v->valuestring[0] != '\0' ? v->valuestring : fallback;
}

static bool resolved(const cJSON *p)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "resolved"));
}

/* The incidents: one line when one opens, one when it closes. */
static void incident_text(const struct alert_row *a, const cJSON *p, char *out, size_t cap)
{
    const cJSON *dur = cJSON_GetObjectItemCaseSensitive(p, "duration_s");
    double s = cJSON_IsNumber(dur) ? dur->valuedouble : 0;

    if (strcmp(a->kind, "atlas_failing") == 0 && resolved(p))
        snprintf(out, cap,
                 "[voidrecon] RESOLVED: Atlas answers polls again after %.0f s (%s): polling "
                 "resumed",
                 s, str(p, "cause", "?"));
    else if (strcmp(a->kind, "atlas_failing") == 0)
        snprintf(out, cap,
                 "[voidrecon] Atlas FAILING for every case (%s): %s; polling paused, Atlas "
                 "probed until it answers",
                 str(p, "cause", "?"), str(p, "message", "?"));
    else if (resolved(p))
        snprintf(out, cap, "[voidrecon] RESOLVED: Atlas webhooks arrive again (silent for %.0f s)",
                 s);
    else
        snprintf(out, cap,
                 "[voidrecon] Atlas webhooks SILENT: %s; check the webhook URL registered in "
                 "Atlas",
                 str(p, "message", "?"));
}

/* The end of a case's or a cancellation's alert: who or what ended it. */
static void resolved_text(const struct alert_row *a, const cJSON *p, char *out, size_t cap)
{
    const char *order = a->order_no ? a->order_no : "?";
    const char *note = str(p, "note", NULL);
    char what[512];

    if (strcmp(a->kind, "order_cancelled") == 0)
        snprintf(what, sizeof(what), "order %s cancelled by %s", order, str(p, "provider", "?"));
    else
        snprintf(what, sizeof(what), "order %s, void %s: follow-up %s", order,
                 a->void_code ? a->void_code : "?", str(p, "followup_reason", a->kind));
    if (strcmp(str(p, "resolved_by", ""), "reconciled") == 0)
        snprintf(out, cap, "[voidrecon] RESOLVED: %s: the case reconciled at %s", what,
                 str(p, "status_name", "?"));
    else
        snprintf(out, cap, "[voidrecon] RESOLVED: %s acknowledged by %s%s%s", what,
                 str(p, "acked_by", "?"), note ? ": " : "", note ? note : "");
}

/* One line per kind: what happened, to what, and what it says. */
static void text_of(const struct alert_row *a, const cJSON *p, char *out, size_t cap)
{
    const char *order = a->order_no ? a->order_no : "?";
    const char *code = a->void_code ? a->void_code : "?";
    const cJSON *failures = cJSON_GetObjectItemCaseSensitive(p, "poll_failures");

    if (resolved(p) && strcmp(a->kind, "atlas_failing") != 0 &&
        strcmp(a->kind, "webhooks_silent") != 0)
        resolved_text(a, p, out, cap);
    else if (strcmp(a->kind, "void_rejected") == 0)
        snprintf(out, cap, "[voidrecon] Void REJECTED: order %s, void %s: %s", order, code,
                 str(p, "cancel_reason", str(p, "message", "no reason given")));
    else if (strcmp(a->kind, "void_conflict") == 0)
        snprintf(out, cap,
                 "[voidrecon] Void conflict: order %s, void %s: reports disagree (case at %s); "
                 "check it in Atlas",
                 order, code, str(p, "status_name", "?"));
    else if (strcmp(a->kind, "void_stuck") == 0)
        snprintf(out, cap, "[voidrecon] Void stuck: order %s, void %s still open since %s", order,
                 code, str(p, "open_since", "?"));
    else if (strcmp(a->kind, "void_poll_failing") == 0)
        snprintf(out, cap,
                 "[voidrecon] Polling Atlas fails: order %s, void %s: %d failures in a row: %s",
                 order, code, cJSON_IsNumber(failures) ? failures->valueint : 0,
                 str(p, "message", "?"));
    else if (strcmp(a->kind, "order_cancelled") == 0)
        snprintf(out, cap, "[voidrecon] Order cancelled by %s: order %s: %s%s%s",
                 str(p, "provider", "?"), order, str(p, "error_code", ""),
                 str(p, "error_code", NULL) ? " " : "", str(p, "error_message", "no reason given"));
    else if (strcmp(a->kind, "atlas_failing") == 0 || strcmp(a->kind, "webhooks_silent") == 0)
        incident_text(a, p, out, cap);
    else
        snprintf(out, cap, "[voidrecon] %s: order %s, void %s", a->kind, order, code);
}

/* The alert's payload as an object (an empty one when it is not); caller frees. */
static cJSON *payload_of(const struct alert_row *a)
{
    cJSON *payload = cJSON_Parse(a->payload ? a->payload : "{}");

    if (!cJSON_IsObject(payload)) {
        cJSON_Delete(payload);
        payload = cJSON_CreateObject();
    }
    return payload;
}

/* text_of, cut between characters when long. cap is at most ALERT_TEXT_BYTES. */
static void summary_of(const struct alert_row *a, const cJSON *p, char *out, size_t cap)
{
    text_of(a, p, out, cap);
    utf8_trim(out, cap);
}

void alert_summary(const struct alert_row *a, char *out, size_t cap)
{
    cJSON *payload = payload_of(a);

    summary_of(a, payload, out, cap);
    cJSON_Delete(payload);
}

bool alert_is_resolve(const struct alert_row *a)
{
    cJSON *payload;
    bool yes;

    if (a->resolves_id != 0)
        return true;
    payload = payload_of(a);
    yes = resolved(payload);
    cJSON_Delete(payload);
    return yes;
}

char *alert_body(const struct alert_row *a)
{
    cJSON *payload = payload_of(a);
    cJSON *body = cJSON_CreateObject();
    const cJSON *item;
    char type[96], text[ALERT_TEXT_BYTES];
    char *s;

    snprintf(type, sizeof(type), "voidrecon.%s", a->kind);
    summary_of(a, payload, text, sizeof(text));
    cJSON_AddStringToObject(body, "type", type);
    cJSON_AddStringToObject(body, "timestamp", a->created_at ? a->created_at : "");
    cJSON_AddNumberToObject(body, "id", (double)a->id);
    cJSON_AddStringToObject(body, "kind", a->kind);
    cJSON_AddStringToObject(body, "text", text);
    if (a->order_no)
        cJSON_AddStringToObject(body, "order_no", a->order_no);
    if (a->void_code)
        cJSON_AddStringToObject(body, "void_code", a->void_code);
    cJSON_ArrayForEach(item, payload)
    {
        if (cJSON_GetObjectItemCaseSensitive(body, item->string) == NULL)
            cJSON_AddItemToObject(body, item->string, cJSON_Duplicate(item, true));
    }
    cJSON_AddStringToObject(body, "created_at", a->created_at ? a->created_at : "");
    s = vr_json_print(body);
    cJSON_Delete(body);
    cJSON_Delete(payload);
    return s;
}

/* Standard base64 characters only: EVP_DecodeBlock alone would skip blanks around them. */
static bool is_base64(const char *s)
{
    for (; *s != '\0'; s++) {
        if (!isalnum((unsigned char)*s) && *s != '+' && *s != '/' && *s != '=')
            return false;
    }
    return true;
}

int alert_key_parse(const char *secret, unsigned char **key, size_t *len)
{
    size_t n, padded, pad = 0;
    unsigned char *out;
    char *in;
    int got;

    *key = NULL;
    *len = 0;
    if (strncmp(secret, WHSEC_PREFIX, sizeof(WHSEC_PREFIX) - 1) != 0) {
        *len = strlen(secret);
        *key = (unsigned char *)xstrndup(secret, *len);
        return 0;
    }
    secret += sizeof(WHSEC_PREFIX) - 1;
    n = strlen(secret);
    if (n == 0 || !is_base64(secret))
        return VR_EINVAL;
    /* The reference libraries accept unpadded secrets: pad to a multiple of four. */
    padded = (n + 3) / 4 * 4;
    in = xcalloc(padded + 1, 1);
    memcpy(in, secret, n);
    memset(in + n, '=', padded - n);
    for (size_t i = padded; i > 0 && in[i - 1] == '='; i--)
        pad++;
    out = xmalloc(padded / 4 * 3 + 1);
    got = EVP_DecodeBlock(out, (const unsigned char *)in, (int)padded);
    free(in);
    if (got < 0 || (size_t)got < pad || pad > 2 || (size_t)got - pad == 0) {
        free(out);
        return VR_EINVAL;
    }
    *key = out;
    *len = (size_t)got - pad;
    return 0;
}

void alert_sign(const unsigned char *key, size_t keylen, const char *msg_id, int64_t timestamp,
                const char *body, size_t len, char *out, size_t cap)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    size_t maclen = 0, hlen;
    EVP_MAC_CTX *ctx = NULL;
    EVP_MAC *hmac;
    char head[96];

    /* Signed content: "{id}.{timestamp}.{body}", the body exactly as sent. */
    hlen = (size_t)snprintf(head, sizeof(head), "%s.%" PRId64 ".", msg_id, timestamp);
    hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (hmac != NULL)
        ctx = EVP_MAC_CTX_new(hmac);
    if (ctx == NULL || !EVP_MAC_init(ctx, key, keylen, params) ||
        !EVP_MAC_update(ctx, (const unsigned char *)head, hlen) ||
        !EVP_MAC_update(ctx, (const unsigned char *)body, len) ||
        !EVP_MAC_final(ctx, mac, &maclen, sizeof(mac)))
        vr_panic("HMAC-SHA256 failed"); /* it is always there: only memory can run out */
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(hmac);
    EVP_EncodeBlock(b64, mac, (int)maclen);
    snprintf(out, cap, "v1,%s", (const char *)b64);
}
