/* Atlas: unsigned webhooks (path token and allowlist are the guards), every event type on one
 * URL, JSON answers, 503 with Retry-After while the database is away. */
#include <stdio.h>
#include <string.h>

#include "atlas.h"
#include "provider_int.h"

static int atlas_parse(const char *body, size_t len, struct provider_event *ev, char *err,
                       size_t errlen)
{
    struct atlas_event a;
    char num[16];
    int r;

    memset(ev, 0, sizeof(*ev));
    r = atlas_event_parse(body, len, &a, err, errlen);
    if (a.type[0] != '\0')
        ev->type = xstrdup(a.type); /* kept for the audit even when the body is refused */
    if (r != 0)
        return r;
    ev->cid = a.cid;
    a.cid = NULL;
    switch (a.kind) {
    case ATLAS_EVENT_VOID:
        ev->kind = PROVIDER_EVENT_VOID;
        ev->order_no = a.order_no;
        ev->void_code = a.void_code;
        ev->void_status = a.void_status;
        ev->message = a.message;
        a.order_no = a.void_code = a.message = NULL;
        break;
    case ATLAS_EVENT_CANCELLED:
        ev->kind = PROVIDER_EVENT_CANCELLATION;
        ev->order_ref = a.order_no;
        ev->error_code = a.error_code;
        ev->error_message = a.error_message;
        a.order_no = a.error_code = a.error_message = NULL;
        if (a.has_order_status) {
            snprintf(num, sizeof(num), "%d", a.order_status);
            ev->order_status = xstrdup(num);
        }
        break;
    case ATLAS_EVENT_OTHER:
        ev->kind = PROVIDER_EVENT_OTHER;
        break;
    }
    atlas_event_cleanup(&a);
    return 0;
}

static void atlas_success(const char *outcome, long long delivery_id, struct provider_reply *out)
{
    out->status = 200;
    out->content_type = "application/json";
    snprintf(out->body, sizeof(out->body), "{\"outcome\":\"%s\",\"delivery_id\":%lld}", outcome,
             delivery_id);
}

const struct provider provider_atlas = {
    .name = "atlas",
    .needs_secret = false,
    .verifies_senders = false,
    .verify = NULL,
    .parse = atlas_parse,
    .success = atlas_success,
    .failure = provider_json_failure,
};
