/* Alert bodies for receivers with a shape of their own: Slack incoming webhooks (Block Kit) and
 * the PagerDuty Events API v2. Pure: no I/O. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "alert.h"

/* Slack's documented limits: a section's text 3000 characters, at most 10 fields of 2000
 * characters each. Counted here in bytes, which are never fewer than characters. */
#define SLACK_SECTION_BYTES 3000
#define SLACK_FIELD_BYTES   2000
#define SLACK_FIELDS_MAX    10
/* "…", the sign that a value was cut. */
#define ELLIPSIS "\xE2\x80\xA6"

int alert_format_parse(const char *name, enum alert_format *out)
{
    static const char *const names[] = {"standard", "slack", "pagerduty"};

    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (enum alert_format)i;
            return 0;
        }
    }
    return VR_EINVAL;
}

void alert_dedup_key(const struct alert_row *a, char *out, size_t cap)
{
    snprintf(out, cap, "voidrecon:%s:%" PRId64, a->kind,
             a->resolves_id != 0 ? a->resolves_id : a->id);
}

static const char *text_field(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

    return cJSON_IsString(v) && v->valuestring[0] != '\0' ? v->valuestring : NULL;
}

/* Bytes of the UTF-8 sequence that starts with c (1 for anything that does not start one). */
static size_t seq_len(unsigned char c)
{
    if (c >= 0xF0 && c <= 0xF4)
        return 4;
    if (c >= 0xE0)
        return c <= 0xEF ? 3 : 1;
    return c >= 0xC2 ? 2 : 1;
}

static const char *entity(char c)
{
    return c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;" : NULL;
}

/* Appends in to out (len bytes so far, room for max and a NUL) with &, < and > as Slack's
 * entities, whole characters only; a cut ends with "…". Returns the new length. */
static size_t slack_append(char *out, size_t len, size_t max, const char *in)
{
    size_t n = strlen(in), need = 0, room;

    for (size_t i = 0; i < n; i++)
        need += entity(in[i]) ? strlen(entity(in[i])) : 1;
    /* When it does not fit, the ellipsis takes its room first. */
    room = len + need <= max || max < sizeof(ELLIPSIS) ? max : max - (sizeof(ELLIPSIS) - 1);
    for (size_t i = 0; i < n;) {
        const char *ent = entity(in[i]);
        size_t step = ent ? 1 : seq_len((unsigned char)in[i]);
        size_t add;

        if (i + step > n)
            step = n - i; /* a broken sequence at the end is kept as it is */
        add = ent ? strlen(ent) : step;
        if (len + add > room) {
            if (len + sizeof(ELLIPSIS) - 1 <= max) {
                memcpy(out + len, ELLIPSIS, sizeof(ELLIPSIS) - 1);
                len += sizeof(ELLIPSIS) - 1;
            }
            break;
        }
        memcpy(out + len, ent ? ent : in + i, add);
        len += add;
        i += step;
    }
    out[len] = '\0';
    return len;
}

/* A mrkdwn text object of "*label*\nvalue" (label NULL: value alone), at most max bytes. */
static cJSON *mrkdwn(const char *label, const char *value, size_t max)
{
    cJSON *o = cJSON_CreateObject();
    char *text = xmalloc(max + 1);
    size_t len = 0;

    text[0] = '\0';
    if (label != NULL) {
        len = slack_append(text, len, max, "*");
        len = slack_append(text, len, max, label);
        len = slack_append(text, len, max, "*\n");
    }
    slack_append(text, len, max, value);
    cJSON_AddStringToObject(o, "type", "mrkdwn");
    cJSON_AddStringToObject(o, "text", text);
    free(text);
    return o;
}

static void field_add(cJSON *fields, const char *label, const char *value)
{
    if (value != NULL && value[0] != '\0' && cJSON_GetArraySize(fields) < SLACK_FIELDS_MAX)
        cJSON_AddItemToArray(fields, mrkdwn(label, value, SLACK_FIELD_BYTES));
}

/* The status as "NAME (n)", when the payload has one. */
static const char *status_text(const cJSON *p, char *out, size_t cap)
{
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(p, "status");
    const char *name = text_field(p, "status_name");

    if (cJSON_IsNumber(st))
        snprintf(out, cap, "%s (%d)", name ? name : "status", st->valueint);
    else
        snprintf(out, cap, "%s", name ? name : "");
    return out;
}

/* The case's fields, most telling first; at most SLACK_FIELDS_MAX of those present. */
static cJSON *slack_fields(const struct alert_row *a, const cJSON *p)
{
    cJSON *fields = cJSON_CreateArray();
    const char *reason = text_field(p, "followup_reason");
    const char *message = text_field(p, "cancel_reason");
    char status[96], ids[64];

    if (reason == NULL)
        reason = text_field(p, "cause") ? text_field(p, "cause") : text_field(p, "reason");
    if (message == NULL)
        message =
            text_field(p, "message") ? text_field(p, "message") : text_field(p, "error_message");
    field_add(fields, "Order", a->order_no);
    field_add(fields, "Void code", a->void_code);
    field_add(fields, "Provider", text_field(p, "provider"));
    field_add(fields, "Status", status_text(p, status, sizeof(status)));
    field_add(fields, "Reason", reason);
    field_add(fields, "Message", message);
    field_add(fields, "Acknowledged by", text_field(p, "acked_by"));
    field_add(fields, alert_is_resolve(a) ? "Resolved at" : "Raised at", a->created_at);
    field_add(fields, "Kind", a->kind);
    if (a->resolves_id != 0)
        snprintf(ids, sizeof(ids), "%" PRId64 " (resolves %" PRId64 ")", a->id, a->resolves_id);
    else
        snprintf(ids, sizeof(ids), "%" PRId64, a->id);
    field_add(fields, "Alert", ids);
    return fields;
}

char *alert_slack_body(const struct alert_row *a)
{
    cJSON *p = cJSON_Parse(a->payload ? a->payload : "{}");
    cJSON *body = cJSON_CreateObject(), *blocks, *section;
    char text[ALERT_TEXT_BYTES];
    char *escaped = xmalloc(SLACK_SECTION_BYTES + 1);
    char *s;

    alert_summary(a, text, sizeof(text));
    slack_append(escaped, 0, SLACK_SECTION_BYTES, text);
    /* text is what notifications and clients without blocks show. */
    cJSON_AddStringToObject(body, "text", escaped);
    blocks = cJSON_AddArrayToObject(body, "blocks");
    section = cJSON_CreateObject();
    cJSON_AddStringToObject(section, "type", "section");
    cJSON_AddItemToObject(section, "text", mrkdwn(NULL, text, SLACK_SECTION_BYTES));
    cJSON_AddItemToArray(blocks, section);
    section = cJSON_CreateObject();
    cJSON_AddStringToObject(section, "type", "section");
    cJSON_AddItemToObject(section, "fields", slack_fields(a, cJSON_IsObject(p) ? p : NULL));
    cJSON_AddItemToArray(blocks, section);
    s = vr_json_print(body);
    cJSON_Delete(body);
    cJSON_Delete(p);
    free(escaped);
    return s;
}

/* PagerDuty's severity of each kind: critical when no case is checked at all, error when a
 * person must act on a customer's money, warning for one case that waits or for degraded
 * news. */
static const char *severity_of(const char *kind)
{
    if (strcmp(kind, "atlas_failing") == 0)
        return "critical";
    if (strcmp(kind, "void_rejected") == 0 || strcmp(kind, "void_conflict") == 0)
        return "error";
    return "warning";
}

static const char *component_of(const struct alert_row *a, const cJSON *p)
{
    if (strcmp(a->kind, "atlas_failing") == 0 || strcmp(a->kind, "webhooks_silent") == 0)
        return "atlas";
    if (strcmp(a->kind, "order_cancelled") == 0)
        return text_field(p, "provider") ? text_field(p, "provider") : "order_cancellations";
    return "void_cases";
}

/* What the trigger carries besides its identity: the alert's own fields and its payload. */
static cJSON *pagerduty_payload(const struct alert_row *a, const char *source)
{
    cJSON *p = cJSON_Parse(a->payload ? a->payload : "{}");
    cJSON *out = cJSON_CreateObject(), *details;
    char text[ALERT_TEXT_BYTES];
    const cJSON *item;

    if (!cJSON_IsObject(p)) {
        cJSON_Delete(p);
        p = cJSON_CreateObject();
    }
    alert_summary(a, text, sizeof(text));
    cJSON_AddStringToObject(out, "summary", text);
    cJSON_AddStringToObject(out, "source", source != NULL && source[0] ? source : "voidrecon");
    cJSON_AddStringToObject(out, "severity", severity_of(a->kind));
    if (a->created_at != NULL && a->created_at[0] != '\0')
        cJSON_AddStringToObject(out, "timestamp", a->created_at);
    cJSON_AddStringToObject(out, "component", component_of(a, p));
    cJSON_AddStringToObject(out, "group", "voidrecon");
    cJSON_AddStringToObject(out, "class", a->kind);
    details = cJSON_AddObjectToObject(out, "custom_details");
    cJSON_AddNumberToObject(details, "alert_id", (double)a->id);
    if (a->order_no)
        cJSON_AddStringToObject(details, "order_no", a->order_no);
    if (a->void_code)
        cJSON_AddStringToObject(details, "void_code", a->void_code);
    cJSON_ArrayForEach(item, p)
    {
        if (cJSON_GetObjectItemCaseSensitive(details, item->string) == NULL)
            cJSON_AddItemToObject(details, item->string, cJSON_Duplicate(item, true));
    }
    cJSON_Delete(p);
    return out;
}

char *alert_pagerduty_body(const struct alert_row *a, const char *routing_key, const char *source)
{
    cJSON *body = cJSON_CreateObject();
    bool resolve = alert_is_resolve(a);
    char key[128];
    char *s;

    alert_dedup_key(a, key, sizeof(key));
    cJSON_AddStringToObject(body, "routing_key", routing_key ? routing_key : "");
    cJSON_AddStringToObject(body, "event_action", resolve ? "resolve" : "trigger");
    cJSON_AddStringToObject(body, "dedup_key", key);
    if (!resolve) {
        cJSON_AddStringToObject(body, "client", "voidrecon");
        cJSON_AddItemToObject(body, "payload", pagerduty_payload(a, source));
    }
    s = vr_json_print(body);
    cJSON_Delete(body);
    return s;
}

char *alert_render(const struct alert_row *a, enum alert_format format, const char *routing_key,
                   const char *source)
{
    switch (format) {
    case ALERT_FORMAT_SLACK:
        return alert_slack_body(a);
    case ALERT_FORMAT_PAGERDUTY:
        return alert_pagerduty_body(a, routing_key, source);
    case ALERT_FORMAT_STANDARD:
        break;
    }
    return alert_body(a);
}
