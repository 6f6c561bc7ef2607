/* Atlas bodies: strict where a field drives state, lenient where it is only kept. */
#include "atlas.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "utf8.h"

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
    if (ev->error_code == NULL && (r = get_text(data, "ticketErrorCode", "data.ticketErrorCode",
                                                true, &ev->error_code, err, errlen)))
        return r;
    if (ev->error_message == NULL &&
        (r = get_text(data, "ticketErrorMessage", "data.ticketErrorMessage", false,
                      &ev->error_message, err, errlen)))
        return r;
    return 0;
}

static cJSON *parse_whole(const char *body, size_t len, char *err, size_t errlen);

int atlas_event_parse(const char *body, size_t len, struct atlas_event *ev, char *err,
                      size_t errlen)
{
    cJSON *root = NULL;
    const cJSON *type, *data;
    int r = VR_EPARSE;

    memset(ev, 0, sizeof(*ev));
    if ((root = parse_whole(body, len, err, errlen)) == NULL)
        goto out;
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
    /* Only kept, never acted on: a number is kept as its text, like errorCode; a cid that is
     * neither, or too long, is not kept (the raw body still has it) rather than lose the
     * report it came with. */
    if (get_text(root, "cid", "cid", true, &ev->cid, err, errlen) != 0 ||
        (ev->cid != NULL && strlen(ev->cid) > ATLAS_MAX_KEY_BYTES)) {
        free(ev->cid);
        ev->cid = NULL;
        err[0] = '\0';
    }
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
    free(ev->cid);
    free(ev->order_no);
    free(ev->void_code);
    free(ev->message);
    free(ev->error_code);
    free(ev->error_message);
    memset(ev, 0, sizeof(*ev));
}

/* ---- queryVoidOrders.do ------------------------------------------------------------------- */

char *atlas_query_body(const char *order_no, const char *void_code)
{
    cJSON *root = cJSON_CreateObject();
    char *s;

    cJSON_AddStringToObject(root, "orderNo", order_no);
    cJSON_AddStringToObject(root, "voidCode", void_code);
    s = vr_json_print(root);
    cJSON_Delete(root);
    return s;
}

/* Parses a whole body as one JSON value; NULL with a message in err otherwise. */
static cJSON *parse_whole(const char *body, size_t len, char *err, size_t errlen)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, false);

    if (root == NULL) {
        snprintf(err, errlen, "body: not valid JSON (near byte %td)",
                 end != NULL ? end - body : (ptrdiff_t)0);
        return NULL;
    }
    while (end < body + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (end != body + len) {
        snprintf(err, errlen, "body: unexpected data after the JSON value (at byte %td)",
                 end - body);
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* A documented yyyyMMdd date that exists in the calendar, or NULL: anything else stays only
 * in item_json, since the database would refuse it as a date. */
static char *date8(const cJSON *obj, const char *name)
{
    static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    const char *s;
    int y, m, d;

    if (!cJSON_IsString(v) || strlen(v->valuestring) != 8 ||
        strspn(v->valuestring, "0123456789") != 8)
        return NULL;
    s = v->valuestring;
    y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    m = (s[4] - '0') * 10 + (s[5] - '0');
    d = (s[6] - '0') * 10 + (s[7] - '0');
    if (y < 1 || m < 1 || m > 12 || d < 1 || d > days[m - 1])
        return NULL;
    if (m == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
        return NULL;
    return xstrdup(s);
}

static int parse_item(const cJSON *item, size_t index, struct atlas_void_order *out, char *err,
                      size_t errlen)
{
    char path[64];
    int r;

    snprintf(path, sizeof(path), "voidOrders[%zu].voidStatus", index);
    if ((r = get_int(item, "voidStatus", path, 0, 6, NULL, &out->void_status, err, errlen)))
        return r;
    snprintf(path, sizeof(path), "voidOrders[%zu].cancelReason", index);
    if ((r = get_text(item, "cancelReason", path, false, &out->cancel_reason, err, errlen)))
        return r;
    snprintf(path, sizeof(path), "voidOrders[%zu].voidMethod", index);
    if ((r = get_text(item, "voidMethod", path, false, &out->void_method, err, errlen)))
        return r;
    out->expected_confirmation_date = date8(item, "expectedConfirmationDate");
    out->expected_refund_date = date8(item, "expectedRefundDate");
    out->item_json = vr_json_print(item);
    return 0;
}

int atlas_query_parse(const char *body, size_t len, const char *void_code,
                      struct atlas_void_order *out, int *atlas_status, char *err, size_t errlen)
{
    const cJSON *orders, *item, *msg;
    cJSON *root;
    size_t index = 0;
    int r = VR_EPARSE;

    memset(out, 0, sizeof(*out));
    *atlas_status = 0;
    if ((root = parse_whole(body, len, err, errlen)) == NULL)
        return VR_EPARSE;
    if (!cJSON_IsObject(root)) {
        r = fail(err, errlen, "%s: expected a JSON object", "body");
        goto out;
    }
    if ((r = get_int(root, "status", "status", INT32_MIN, INT32_MAX, NULL, atlas_status, err,
                     errlen)))
        goto out;
    if (*atlas_status != 0) {
        /* Atlas asks that only status be used by programs; msg is for people. */
        char text[ATLAS_MSG_BYTES + 1];
        const char *m;

        msg = cJSON_GetObjectItemCaseSensitive(root, "msg");
        m = cJSON_IsString(msg) ? msg->valuestring : "(no msg)";
        /* Cut on a character and cleaned: err ends up in PostgreSQL, which refuses invalid
         * UTF-8, and a byte cut through a Chinese msg made exactly that. */
        utf8_copy_clean(text, sizeof(text), m, strlen(m));
        snprintf(err, errlen, "Atlas status %d: %s", *atlas_status, text);
        utf8_trim(err, errlen);
        r = VR_EREMOTE;
        goto out;
    }
    orders = cJSON_GetObjectItemCaseSensitive(root, "voidOrders");
    if (!cJSON_IsArray(orders)) {
        r = fail(err, errlen, "voidOrders: %s", orders == NULL ? "missing" : "expected an array");
        goto out;
    }
    cJSON_ArrayForEach(item, orders)
    {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(item, "voidCode");

        if (cJSON_IsObject(item) && cJSON_IsString(code) &&
            strcmp(code->valuestring, void_code) == 0) {
            r = parse_item(item, index, out, err, errlen);
            goto out;
        }
        index++;
    }
    snprintf(err, errlen, "voidOrders: no item with voidCode %.*s (%zu items)",
             (int)utf8_cut(void_code, strlen(void_code), 64), void_code, index);
    r = VR_ENOENT;
out:
    cJSON_Delete(root);
    if (r != 0)
        atlas_void_order_cleanup(out);
    return r;
}

long atlas_retry_after_parse(const char *body, size_t len)
{
    char err[64];
    cJSON *root = parse_whole(body, len, err, sizeof(err));
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "retryAfter");
    long s = -1;

    /* Any wait, however long, is kept (capped here so that it fits): deciding how long to
     * actually wait is the caller's business. */
    if (cJSON_IsNumber(v) && v->valuedouble >= 0)
        s = v->valuedouble < (double)ATLAS_RETRY_AFTER_MAX_S ? (long)ceil(v->valuedouble)
                                                             : ATLAS_RETRY_AFTER_MAX_S;
    cJSON_Delete(root);
    return s;
}

/* ---- failures ----------------------------------------------------------------------------- */

/* The documented codes (queryVoidOrders.do's list, and the general ones) that say something
 * about every request rather than about the case asked for. */
static enum atlas_failure failure_of_status(int atlas_status)
{
    switch (atlas_status) {
    case 801: /* no voidable order under that number */
    case 824: /* not the main ticket order number */
        return ATLAS_FAILURE_PERMANENT;
    case 900: /* unauthorized: credentials or account status */
    case 902: /* access denied: permission or account scope */
        return ATLAS_FAILURE_CREDENTIALS;
    case 901: /* illegal request data: the body is the same for every case */
        return ATLAS_FAILURE_REFUSED;
    case 905: /* "Submission is too frequent, please try again later." */
        return ATLAS_FAILURE_RATE_LIMIT;
    case 9999: /* system error */
    case -1:   /* common error, the fallback */
        return ATLAS_FAILURE_SYSTEM;
    default:
        return ATLAS_FAILURE_CASE;
    }
}

enum atlas_failure atlas_failure_of(int status, long http_status, int atlas_status)
{
    if (status == VR_ENOENT)
        return ATLAS_FAILURE_PERMANENT;
    if (status == VR_EIO || status == VR_ETIMEDOUT)
        return http_status == 0 ? ATLAS_FAILURE_UNREACHABLE : ATLAS_FAILURE_CASE;
    if (status != VR_EREMOTE)
        return ATLAS_FAILURE_CASE;
    if (http_status == 429)
        return ATLAS_FAILURE_RATE_LIMIT;
    if (http_status >= 500 && http_status < 600)
        return ATLAS_FAILURE_SERVER;
    if (http_status == 200)
        return failure_of_status(atlas_status);
    return ATLAS_FAILURE_CASE;
}

bool atlas_failure_is_global(enum atlas_failure f)
{
    return f != ATLAS_FAILURE_CASE && f != ATLAS_FAILURE_PERMANENT;
}

const char *atlas_failure_name(enum atlas_failure f)
{
    static const char *const names[] = {"case",         "permanent",       "rate_limited",
                                        "credentials",  "request_refused", "system_error",
                                        "server_error", "unreachable"};

    return (unsigned)f < ARRAY_SIZE(names) ? names[f] : "case";
}

void atlas_void_order_cleanup(struct atlas_void_order *o)
{
    free(o->cancel_reason);
    free(o->void_method);
    free(o->expected_confirmation_date);
    free(o->expected_refund_date);
    free(o->item_json);
    memset(o, 0, sizeof(*o));
}

/* ---- case references ---------------------------------------------------------------------- */

int atlas_case_ref_parse(const char *body, size_t len, struct atlas_case_ref *out, char *err,
                         size_t errlen)
{
    bool has_status = false;
    cJSON *root;
    int r;

    memset(out, 0, sizeof(*out));
    if ((root = parse_whole(body, len, err, errlen)) == NULL)
        return VR_EPARSE;
    if (!cJSON_IsObject(root))
        r = fail(err, errlen, "%s: expected a JSON object", "body");
    else if ((r = get_key(root, "orderNo", "orderNo", &out->order_no, err, errlen)) == 0 &&
             (r = get_key(root, "voidCode", "voidCode", &out->void_code, err, errlen)) == 0)
        r = get_int(root, "voidStatus", "voidStatus", 0, 6, &has_status, &out->void_status, err,
                    errlen);
    cJSON_Delete(root);
    if (r != 0)
        atlas_case_ref_cleanup(out);
    return r;
}

void atlas_case_ref_cleanup(struct atlas_case_ref *ref)
{
    free(ref->order_no);
    free(ref->void_code);
    memset(ref, 0, sizeof(*ref));
}
