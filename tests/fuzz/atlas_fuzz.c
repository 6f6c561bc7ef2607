/* Fuzz target for Atlas webhook bodies: any bytes give a valid event or an error naming a field,
 * never a crash, a leak or an event that breaks its own invariants. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "atlas.h"
#include "voidcase.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct atlas_event ev;
    char err[256];

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
            strlen(ev.void_code) > ATLAS_MAX_KEY_BYTES ||
            !voidcase_status_is_valid(ev.void_status))
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
