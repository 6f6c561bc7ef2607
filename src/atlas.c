/* Atlas webhook bodies: strict where a field drives state, lenient where it is only kept. */
#include "atlas.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

static int fail(char *err, size_t errlen, const char *fmt, ...) VR_PRINTF(3, 4);

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return VR_EPARSE;
}

/* A required, non-empty string of bounded length. */
static int get_key(const cJSON *obj, const char *name, const char *path, char **out, char *err,
                   size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

    if (v == NULL || cJSON_IsNull(v))
        return fail(err, errlen, "%s: missing", path);
    if (!cJSON_IsString(v))
        return fail(err, errlen, "%s: expected a string", path);
    if (v->valuestring[0] == '\0')
        return fail(err, errlen, "%s: empty", path);
    if (strlen(v->valuestring) > ATLAS_MAX_KEY_BYTES)
        return fail(err, errlen, "%s: longer than 128 bytes", path);
    *out = xstrdup(v->valuestring);
    return 0;
}

/* An optional string; the error code is documented as a string but numbers are kept too,
 * since losing a cancellation over its type would be worse than storing "604". */
static int get_text(const cJSON *obj, const char *name, const char *path, bool numbers_ok,
                    char **out, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    char num[32];

    if (v == NULL || cJSON_IsNull(v))
        return 0;
    if (cJSON_IsString(v)) {
        *out = xstrdup(v->valuestring);
        return 0;
    }
    if (numbers_ok && cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) &&
        fabs(v->valuedouble) < 1e15) {
        snprintf(num, sizeof(num), "%.0f", v->valuedouble);
        *out = xstrdup(num);
        return 0;
    }
    return fail(err, errlen, "%s: expected a string", path);
}

static int get_int(const cJSON *obj, const char *name, const char *path, int lo, int hi,
                   bool *present, int *out, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (v == NULL || cJSON_IsNull(v)) {
        if (present != NULL)
            return 0;
        return fail(err, errlen, "%s: missing", path);
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return fail(err, errlen, "%s: expected an integer from %d to %d", path, lo, hi);
    *out = (int)v->valuedouble;
    if (present != NULL)
        *present = true;
    return 0;
}

static int parse_void(const cJSON *data, struct atlas_event *ev, char *err, size_t errlen)
{
    int r;

    if ((r = get_key(data, "orderNo", "data.orderNo", &ev->order_no, err, errlen)) ||
        (r = get_key(data, "voidCode", "data.voidCode", &ev->void_code, err, errlen)) ||
        (r = get_int(data, "voidStatus", "data.voidStatus", 0, 6, NULL, &ev->void_status, err,
                     errlen)) ||
        (r = get_text(data, "message", "data.message", false, &ev->message, err, errlen)))
        return r;
    return 0;
}

/* The two documents disagree on the names: errorCode/errorMessage in the sample,
 * ticketErrorCode/ticketErrorMessage in the schema. Either is accepted. */
static int parse_cancelled(const cJSON *data, struct atlas_event *ev, char *err, size_t errlen)
{
    int r;

    if ((r = get_key(data, "orderNo", "data.orderNo", &ev->order_no, err, errlen)) ||
        (r = get_int(data, "orderStatus", "data.orderStatus", -1000, 1000, &ev->has_order_status,
                     &ev->order_status, err, errlen)) ||
        (r = get_text(data, "errorCode", "data.errorCode", true, &ev->error_code, err, errlen)) ||
        (r = get_text(data, "errorMessage", "data.errorMessage", false, &ev->error_message, err,
                      errlen)))
        return r;
    if (ev->error_code == NULL &&
        (r = get_text(data, "ticketErrorCode", "data.ticketErrorCode", true, &ev->error_code, err,
                      errlen)))
        return r;
    if (ev->error_message == NULL &&
        (r = get_text(data, "ticketErrorMessage", "data.ticketErrorMessage", false,
                      &ev->error_message, err, errlen)))
        return r;
    return 0;
}

int atlas_event_parse(const char *body, size_t len, struct atlas_event *ev, char *err,
                      size_t errlen)
{
    cJSON *root = NULL;
    const cJSON *type, *data;
    const char *end = NULL;
    int r = VR_EPARSE;

    memset(ev, 0, sizeof(*ev));
    root = cJSON_ParseWithLengthOpts(body, len, &end, false);
    if (root == NULL) {
        snprintf(err, errlen, "body: not valid JSON (near byte %td)",
                 end != NULL ? end - body : (ptrdiff_t)0);
        goto out;
    }
    while (end < body + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (end != body + len) {
        snprintf(err, errlen, "body: unexpected data after the JSON value (at byte %td)",
                 end - body);
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        r = fail(err, errlen, "%s: expected a JSON object", "body");
        goto out;
    }
    type = cJSON_GetObjectItemCaseSensitive(root, "type");
    if (type == NULL || cJSON_IsNull(type)) {
        r = fail(err, errlen, "%s: missing", "type");
        goto out;
    }
    if (!cJSON_IsString(type) || type->valuestring[0] == '\0' ||
        strlen(type->valuestring) > ATLAS_MAX_TYPE_BYTES) {
        r = fail(err, errlen, "%s: expected a non-empty string of at most 64 bytes", "type");
        goto out;
    }
    snprintf(ev->type, sizeof(ev->type), "%s", type->valuestring);
    if (strcmp(ev->type, "order.void") == 0)
        ev->kind = ATLAS_EVENT_VOID;
    else if (strcmp(ev->type, "order.cancelled") == 0)
        ev->kind = ATLAS_EVENT_CANCELLED;
    else {
        ev->kind = ATLAS_EVENT_OTHER;
        r = 0;
        goto out;
    }
    data = cJSON_GetObjectItemCaseSensitive(root, "data");
    if (data == NULL || cJSON_IsNull(data)) {
        r = fail(err, errlen, "%s: missing", "data");
        goto out;
    }
    if (!cJSON_IsObject(data)) {
        r = fail(err, errlen, "%s: expected a JSON object", "data");
        goto out;
    }
    r = ev->kind == ATLAS_EVENT_VOID ? parse_void(data, ev, err, errlen)
                                     : parse_cancelled(data, ev, err, errlen);
out:
    cJSON_Delete(root);
    if (r != 0) {
        char type_copy[sizeof(ev->type)];
        memcpy(type_copy, ev->type, sizeof(type_copy));
        atlas_event_cleanup(ev);
        memcpy(ev->type, type_copy, sizeof(type_copy));
    }
    return r;
}

void atlas_event_cleanup(struct atlas_event *ev)
{
    free(ev->order_no);
    free(ev->void_code);
    free(ev->message);
    free(ev->error_code);
    free(ev->error_message);
    memset(ev, 0, sizeof(*ev));
}
