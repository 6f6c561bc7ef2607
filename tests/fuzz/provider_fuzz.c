/* Fuzz target for the provider tables: any bytes, through every provider's parser and every
 * signature check, give an event or an error naming the problem, never a crash. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "provider.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool storable(const char *s)
{
    return s == NULL || utf8_text_ok(s, strlen(s));
}

static const char *header(const void *req, const char *name)
{
    (void)name;
    return req;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    char auth[64] = "Signature ";

    for (size_t i = 0; i < provider_count; i++) {
        const struct provider *p = provider_all[i];
        struct provider_event ev;
        char err[256] = "";

        if (provider_parse(p, body, size, &ev, err, sizeof(err)) == 0) {
            if (ev.type == NULL || (ev.kind == PROVIDER_EVENT_CANCELLATION && ev.order_ref == NULL))
                abort();
            /* Whatever is accepted can be stored: text PostgreSQL takes. */
            if (!storable(ev.type) || !storable(ev.order_no) || !storable(ev.void_code) ||
                !storable(ev.message) || !storable(ev.order_ref) || !storable(ev.error_code) ||
                !storable(ev.error_message) || !storable(ev.order_status) || !storable(ev.details))
                abort();
        } else if (err[0] == '\0') {
            abort();
        }
        provider_event_cleanup(&ev);
    }
    /* The first 40 bytes as a signature of the rest. */
    for (size_t i = 0; size > 40 && i < provider_count; i++) {
        const struct provider *p = provider_all[i];
        char err[256] = "";

        memcpy(auth + 10, data, 40);
        auth[50] = '\0';
        if (p->verify != NULL && strlen(auth) == 50 &&
            p->verify("secret", header, auth, body + 40, size - 40, err, sizeof(err)) != 0 &&
            err[0] == '\0')
            abort();
    }
    return 0;
}
