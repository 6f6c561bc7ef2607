/* The provider list and what the providers share. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "provider_int.h"

/* The one list of providers: a new one is its file, src/providers/provider_<name>.c exporting
 * provider_<name>, and one more line here. */
#define PROVIDER_LIST(X)                                                                           \
    X(atlas)                                                                                       \
    X(xsolla)                                                                                      \
    X(xendbridge)

#define PROVIDER_DECLARE(name) extern const struct provider provider_##name;
#define PROVIDER_ENTRY(name)   &provider_##name,
PROVIDER_LIST(PROVIDER_DECLARE)
const struct provider *const provider_all[] = {PROVIDER_LIST(PROVIDER_ENTRY)};
const size_t provider_count = ARRAY_SIZE(provider_all);
_Static_assert(ARRAY_SIZE(provider_all) <= PROVIDER_MAX, "raise PROVIDER_MAX");

const struct provider *provider_find(const char *name, size_t len)
{
    for (size_t i = 0; i < provider_count; i++) {
        if (strlen(provider_all[i]->name) == len && memcmp(provider_all[i]->name, name, len) == 0)
            return provider_all[i];
    }
    return NULL;
}

int provider_parse(const struct provider *p, const char *body, size_t len,
                   struct provider_event *ev, char *err, size_t errlen)
{
    cJSON *root;
    int r;

    memset(ev, 0, sizeof(*ev));
    if ((r = provider_check_text(body, len, err, errlen)) != 0)
        return r;
    /* Not JSON: the provider's own parser says so in its words. */
    if ((root = cJSON_ParseWithLength(body, len)) != NULL) {
        r = provider_check_keys(root, err, errlen);
        cJSON_Delete(root);
        if (r != 0)
            return r;
    }
    return p->parse(body, len, ev, err, errlen);
}

int provider_fail(char *err, size_t errlen, const char *field, const char *what)
{
    snprintf(err, errlen, "%s: %s", field, what);
    return VR_EPARSE;
}

void provider_event_cleanup(struct provider_event *ev)
{
    free(ev->type);
    free(ev->cid);
    free(ev->order_no);
    free(ev->void_code);
    free(ev->message);
    free(ev->order_ref);
    free(ev->error_code);
    free(ev->error_message);
    free(ev->order_status);
    free(ev->details);
    memset(ev, 0, sizeof(*ev));
}

void provider_error_body(struct provider_reply *out, const char *code, const char *message)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(root, "error");

    cJSON_AddStringToObject(err, "code", code);
    cJSON_AddStringToObject(err, "message", message);
    /* The body buffer is bounded; a message that does not fit is cut, never the JSON. */
    if (!cJSON_PrintPreallocated(root, out->body, (int)sizeof(out->body), false)) {
        cJSON_SetValuestring(cJSON_GetObjectItem(err, "message"), "(message too long)");
        if (!cJSON_PrintPreallocated(root, out->body, (int)sizeof(out->body), false))
            snprintf(out->body, sizeof(out->body), "{\"error\":{\"code\":\"error\"}}");
    }
    cJSON_Delete(root);
    out->content_type = "application/json";
}

void provider_json_failure(enum provider_failure f, const char *message, struct provider_reply *out)
{
    switch (f) {
    case PROVIDER_BAD_MEDIA_TYPE:
        out->status = 415;
        provider_error_body(out, "unsupported_media_type", message);
        return;
    case PROVIDER_BAD_SIGNATURE:
    case PROVIDER_BAD_BODY:
        out->status = 400;
        provider_error_body(out, "invalid_payload", message);
        return;
    case PROVIDER_UNAVAILABLE:
    case PROVIDER_NOT_CONFIGURED:
        out->status = 503;
        out->extra_headers = "Retry-After: 5\r\n";
        provider_error_body(out, "unavailable", message);
        return;
    case PROVIDER_INTERNAL:
        out->status = 500;
        provider_error_body(out, "internal", message);
        return;
    }
}
