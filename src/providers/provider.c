/* The provider list and what the providers share. */
#include "provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

const struct provider *const provider_all[] = {&provider_atlas, &provider_xsolla,
                                               &provider_xendbridge};
const size_t provider_count = ARRAY_SIZE(provider_all);

void provider_event_cleanup(struct provider_event *ev)
{
    free(ev->type);
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
