/* Atlas webhook bodies: parse and validate, without any I/O. */
#ifndef VR_ATLAS_H
#define VR_ATLAS_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"

/* Longest accepted orderNo / voidCode; Atlas's are about 22 and 11 characters. */
#define ATLAS_MAX_KEY_BYTES 128
/* Longest event type we keep; anything longer is rejected. */
#define ATLAS_MAX_TYPE_BYTES 64

enum atlas_event_kind {
    ATLAS_EVENT_VOID,      /* order.void: drives a void case */
    ATLAS_EVENT_CANCELLED, /* order.cancelled: an order cancellation */
    ATLAS_EVENT_OTHER      /* any other type: stored and acknowledged */
};

struct atlas_event {
    enum atlas_event_kind kind;
    char type[ATLAS_MAX_TYPE_BYTES + 1];
    char *order_no;      /* order.void and order.cancelled */
    char *void_code;     /* order.void */
    int void_status;     /* order.void, 0..6 */
    char *message;       /* order.void data.message, NULL when absent or null */
    char *error_code;    /* order.cancelled errorCode or ticketErrorCode, may be NULL */
    char *error_message; /* order.cancelled errorMessage or ticketErrorMessage, may be NULL */
    bool has_order_status;
    int order_status; /* order.cancelled data.orderStatus when present (-3 = cancelled) */
};

/* Parses an Atlas webhook body (borrowed, len bytes). On success fills ev, whose strings the
 * caller frees with atlas_event_cleanup. On failure returns VR_EPARSE and writes a message
 * naming the offending field into err (errlen bytes); ev then holds nothing to free, but the
 * event type is kept in ev->type when it could be read. */
int atlas_event_parse(const char *body, size_t len, struct atlas_event *ev, char *err,
                      size_t errlen) VR_MUSTCHECK;

/* Frees what atlas_event_parse allocated; accepts a zeroed event. */
void atlas_event_cleanup(struct atlas_event *ev);

#endif
