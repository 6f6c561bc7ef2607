/* The webhook providers behind one interface: each provider is one source file exporting one
 * table that says how a request is authenticated, how its body becomes the product's events,
 * and how success and each kind of failure are answered. No I/O: intake does that.
 *
 * provider_all is the only list of providers: their endpoints (POST /webhooks/<name>), their
 * VOIDRECON_<NAME>_* settings, their allowlists and their metric labels all come from it.
 * Adding a provider is one file in src/providers/ and one line in provider_all. */
#ifndef VR_PROVIDER_H
#define VR_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"

enum provider_event_kind {
    PROVIDER_EVENT_VOID,         /* a void case's status (Atlas order.void) */
    PROVIDER_EVENT_CANCELLATION, /* an order cancelled by the provider */
    PROVIDER_EVENT_OTHER         /* stored and acknowledged, nothing more */
};

/* What a body says, in the product's terms. Every string is owned (provider_event_cleanup). */
struct provider_event {
    enum provider_event_kind kind;
    char *type; /* the provider's event type, e.g. "order.void", "order_canceled" */
    char *cid;  /* the sender's account as the body names it (Atlas cid), may be NULL */
    /* PROVIDER_EVENT_VOID */
    char *order_no;
    char *void_code;
    int void_status;
    char *message;
    /* PROVIDER_EVENT_CANCELLATION */
    char *order_ref;     /* the provider's order reference */
    char *error_code;    /* may be NULL */
    char *error_message; /* may be NULL */
    char *order_status;  /* the provider's order status as text, may be NULL */
    char *details;       /* JSON object of the other facts kept with the cancellation, or NULL */
};

/* The kinds of failure a provider answers in its own way. */
enum provider_failure {
    PROVIDER_BAD_SIGNATURE,  /* the request is not signed with the configured secret */
    PROVIDER_BAD_MEDIA_TYPE, /* Content-Type is not JSON */
    PROVIDER_BAD_BODY,       /* the body is not what the provider documents */
    PROVIDER_UNAVAILABLE,    /* the database is unreachable: the sender should retry */
    PROVIDER_INTERNAL,       /* an unexpected error (logged) */
    PROVIDER_NOT_CONFIGURED, /* the provider's secret is not set */
};

/* An answer: status, Content-Type (NULL: none), extra header lines (NULL: none), body. */
struct provider_reply {
    int status;
    const char *content_type;
    const char *extra_headers;
    char body[512];
};

/* Looks up a request header (case-insensitive); NULL when absent. */
typedef const char *(*provider_header_fn)(const void *req, const char *name);

struct provider {
    const char *name; /* "xsolla": POST /webhooks/xsolla, VOIDRECON_XSOLLA_* settings */
    /* The provider signs its requests with a shared secret (VOIDRECON_<NAME>_SECRET, described
     * by secret_help); without one the endpoint is not configured. */
    bool needs_secret;
    const char *secret_help;
    /* The cancellations it reports were authenticated by a signature voidrecon checked. */
    bool verifies_senders;
    /* Checks the signature over the raw body before it is parsed; NULL when the provider signs
     * nothing voidrecon can check. 0, or VR_EAUTH with the reason in err. */
    int (*verify)(const char *secret, provider_header_fn header, const void *req, const char *body,
                  size_t len, char *err, size_t errlen);
    /* Every request header verify reads, NULL-terminated (NULL: none). These, and no other
     * header, are kept with the delivery, so that a replay can check the signature again. */
    const char *const *verify_headers;
    /* Parses a body; 0 with ev filled, or VR_EPARSE with err naming the field. */
    int (*parse)(const char *body, size_t len, struct provider_event *ev, char *err, size_t errlen);
    /* The answer to a stored delivery (outcome as in voidrecon.deliveries). */
    void (*success)(const char *outcome, long long delivery_id, struct provider_reply *out);
    /* The answer to a failure; message names the problem. */
    void (*failure)(enum provider_failure f, const char *message, struct provider_reply *out);
};

/* The most providers provider_all may hold (metrics keep a fixed room for each). */
#define PROVIDER_MAX 16

/* Every provider, in the order their endpoints and settings are listed. */
extern const struct provider *const provider_all[];
extern const size_t provider_count;

/* The provider of that name, or NULL. */
const struct provider *provider_find(const char *name, size_t len);

/* The checks every body passes before p->parse: its strings are UTF-8 without NUL, no object
 * names a key twice; then p->parse. 0 with ev filled, or VR_EPARSE with err naming the field
 * (ev->type may then be set, for the audit). Free ev with provider_event_cleanup either way. */
int provider_parse(const struct provider *p, const char *body, size_t len,
                   struct provider_event *ev, char *err, size_t errlen) VR_MUSTCHECK;

/* Frees what a parse allocated; accepts a zeroed event. */
void provider_event_cleanup(struct provider_event *ev);

#endif
