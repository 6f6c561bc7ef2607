/* Fuzz target for the Atlas bodies voidrecon reads (webhooks, queryVoidOrders.do answers, case
 * registrations): any bytes give a valid result or an error naming the problem, never a crash,
 * a leak or a result that breaks its own invariants. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "atlas.h"
#include "voidcase.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_query(const char *body, size_t size)
{
    struct atlas_void_order o;
    struct atlas_case_ref ref;
    char err[256] = "";
    int st, r;

    r = atlas_query_parse(body, size, "V1", &o, &st, err, sizeof(err));
    if (r == 0) {
        if (!voidcase_status_is_valid(o.void_status) || o.item_json == NULL || st != 0)
            abort();
        if (o.expected_confirmation_date != NULL && strlen(o.expected_confirmation_date) != 8)
            abort();
        atlas_void_order_cleanup(&o);
    } else if ((r != VR_EPARSE && r != VR_ENOENT && r != VR_EREMOTE) || err[0] == '\0' ||
               o.item_json != NULL) {
        abort();
    }
    err[0] = '\0';
    if (atlas_case_ref_parse(body, size, &ref, err, sizeof(err)) == 0) {
        if (ref.order_no == NULL || ref.void_code == NULL ||
            !voidcase_status_is_valid(ref.void_status))
            abort();
        atlas_case_ref_cleanup(&ref);
    } else if (err[0] == '\0') {
        abort();
    }
    (void)atlas_retry_after_parse(body, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct atlas_event ev;
    char err[256];

    check_query((const char *)data, size);

    err[0] = '\0';
    if (atlas_event_parse((const char *)data, size, &ev, err, sizeof(err)) != 0) {
        /* Every rejection says what was wrong, since it goes back to the sender. */
        if (err[0] == '\0' || strlen(err) >= sizeof(err))
            abort();
        return 0;
    }
    if (ev.type[0] == '\0')
        abort();
    switch (ev.kind) {
    case ATLAS_EVENT_VOID:
        if (ev.order_no == NULL || ev.void_code == NULL || ev.order_no[0] == '\0' ||
            ev.void_code[0] == '\0' || strlen(ev.order_no) > ATLAS_MAX_KEY_BYTES ||
            strlen(ev.void_code) > ATLAS_MAX_KEY_BYTES || !voidcase_status_is_valid(ev.void_status))
            abort();
        break;
    case ATLAS_EVENT_CANCELLED:
        if (ev.order_no == NULL || ev.order_no[0] == '\0')
            abort();
        break;
    case ATLAS_EVENT_OTHER:
        if (ev.order_no != NULL || strcmp(ev.type, "order.void") == 0 ||
            strcmp(ev.type, "order.cancelled") == 0)
            abort();
        break;
    }
    atlas_event_cleanup(&ev);
    return 0;
}
