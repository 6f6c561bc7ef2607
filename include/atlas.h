/* Atlas bodies without any I/O: webhooks in, queryVoidOrders.do requests out and answers in. */
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
    char *cid;           /* the client id (the account the webhook came from), NULL when absent */
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

/* A void case named by the order system: {"orderNo", "voidCode", "voidStatus"?}. */
struct atlas_case_ref {
    char *order_no;
    char *void_code;
    int void_status; /* 0 (ATLAS_PROCESSING) when not given, as right after void.do */
};

/* Parses a case reference (borrowed body). 0, or VR_EPARSE with err naming the field; free
 * with atlas_case_ref_cleanup. */
int atlas_case_ref_parse(const char *body, size_t len, struct atlas_case_ref *out, char *err,
                         size_t errlen) VR_MUSTCHECK;
void atlas_case_ref_cleanup(struct atlas_case_ref *ref);

/* The voidOrders item of a queryVoidOrders.do answer for one void case. */
struct atlas_void_order {
    int void_status;                  /* 0..6 */
    char *cancel_reason;              /* NULL when absent or null */
    char *void_method;                /* CashBackToOriginalPayment, Voucher; NULL when absent */
    char *expected_confirmation_date; /* "yyyyMMdd"; NULL when absent or not 8 digits */
    char *expected_refund_date;       /* likewise */
    char *item_json;                  /* the whole item as compact JSON, never NULL */
};

/* The JSON body of queryVoidOrders.do for one case (borrowed strings). Caller frees. */
char *atlas_query_body(const char *order_no, const char *void_code);

/* Parses a queryVoidOrders.do answer (HTTP 200) and picks the item of void_code. Returns 0
 * with *out filled (free with atlas_void_order_cleanup); VR_EREMOTE when the envelope status
 * is not 0 (*atlas_status gets it, err its msg: valid UTF-8, at most ATLAS_MSG_BYTES of it);
 * VR_ENOENT when no item has that voidCode; VR_EPARSE when the body is not the documented shape.
 * err names the problem in every case. */
int atlas_query_parse(const char *body, size_t len, const char *void_code,
                      struct atlas_void_order *out, int *atlas_status, char *err,
                      size_t errlen) VR_MUSTCHECK;

/* The longest wait atlas_retry_after_parse reports (ten years); longer ones read as this. */
#define ATLAS_RETRY_AFTER_MAX_S 315360000L
/* How much of an error envelope's msg goes into the error text, in bytes, cut on a character. */
#define ATLAS_MSG_BYTES 160

/* retryAfter (seconds, rounded up, at most ATLAS_RETRY_AFTER_MAX_S) of a rate-limit answer
 * ({"code":429,...,"retryAfter":1}), or -1 when there is none. */
long atlas_retry_after_parse(const char *body, size_t len);

/* What a failed queryVoidOrders.do says, and so what the poller does about it. */
enum atlas_failure {
    ATLAS_FAILURE_CASE,        /* about this case, may pass (other codes, a malformed answer):
                                  retried with a growing backoff */
    ATLAS_FAILURE_PERMANENT,   /* about this case, no retry will change it (801, 824, an answer
                                  without the case): flagged at once */
    ATLAS_FAILURE_RATE_LIMIT,  /* HTTP 429, status 905: every poll waits */
    ATLAS_FAILURE_CREDENTIALS, /* status 900, 902: the client's id, secret or account */
    ATLAS_FAILURE_REFUSED,     /* status 901: the request itself, the same for every case */
    ATLAS_FAILURE_SYSTEM,      /* status 9999, -1: Atlas's own error */
    ATLAS_FAILURE_SERVER,      /* HTTP 5xx */
    ATLAS_FAILURE_UNREACHABLE  /* no answer: refused, reset, timed out */
};

/* The kind of failure of a query that did not succeed: status is the reply's (VR_EREMOTE,
 * VR_ENOENT, VR_EPARSE, VR_ETIMEDOUT, VR_EIO), http_status 0 when no answer came, atlas_status
 * the envelope's when the HTTP status was 200. */
enum atlas_failure atlas_failure_of(int status, long http_status, int atlas_status);

/* True for the kinds that are not the case's own: Atlas fails this way for every case. */
bool atlas_failure_is_global(enum atlas_failure f);

/* A short name of the kind: case, permanent, rate_limited, credentials, request_refused,
 * system_error, server_error, unreachable. Static. */
const char *atlas_failure_name(enum atlas_failure f);

/* Frees what atlas_query_parse allocated; accepts a zeroed item. */
void atlas_void_order_cleanup(struct atlas_void_order *o);

#endif
