/* One delivery through its provider's checks into the store, without HTTP: the signature over
 * the raw body, the Content-Type, the provider's parse, then the state machine or the
 * cancellation, and the delivery kept with its outcome. The same code serves a webhook
 * received over HTTP (intake) and a stored delivery run again (replay, from /v1 and the CLI).
 * Logs what it decides (webhook, webhook_rejected, webhook_bad_signature, webhook_not_stored);
 * answering is the caller's. */
#ifndef VR_WEBHOOK_H
#define VR_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "provider.h"
#include "store.h"

/* A provider's endpoint and its settings. */
struct webhook_route {
    const struct provider *p;
    char *token;           /* required path token; "" none */
    const struct acl *acl; /* borrowed; NULL or empty: any source */
    char *secret;          /* signing secret; "" none */
    bool alerts;           /* order_cancelled alerts for its cancellations */
};

/* Every provider's route, in provider_all's order. */
struct webhook_routes {
    struct webhook_route *routes;
    size_t n;
};

/* Routes from the providers' settings: tokens and secrets copied, allowlists borrowed (they
 * must outlive the routes). Caller frees with webhook_routes_free. */
struct webhook_routes *webhook_routes_new(const struct config_provider *providers, size_t n);

/* Wipes the secrets and frees; accepts NULL. */
void webhook_routes_free(struct webhook_routes *rs);

/* The route of the provider named name (len bytes), or NULL. */
const struct webhook_route *webhook_routes_find(const struct webhook_routes *rs, const char *name,
                                                size_t len);

/* One delivery to run; everything borrowed until the callback. */
struct webhook_input {
    const char *remote_addr; /* textual peer address, as received */
    const char *body;        /* the raw body, len bytes */
    size_t len;
    provider_header_fn header; /* request headers, looked up on header_arg */
    const void *header_arg;
    /* A replay: the delivery it runs again. Its Content-Type is not kept, so it is not checked
     * (it was, or the body was refused and kept for this); 0 for a request received. */
    int64_t replay_of;
};

enum webhook_verdict {
    WEBHOOK_STORED,     /* its effects and the delivery committed: res says how */
    WEBHOOK_REJECTED,   /* refused (signature, Content-Type, body): kept as rejected */
    WEBHOOK_NOT_STORED, /* the database refused or was away: failure says which */
};

struct webhook_result {
    enum webhook_verdict verdict;
    /* REJECTED and NOT_STORED: how the provider answers it (PROVIDER_UNAVAILABLE while the
     * database is away, PROVIDER_INTERNAL when it refused for good) and why, in one line. */
    enum provider_failure failure;
    const char *message;
    /* The delivery row written (0: none could be): the stored one, the rejected one, or for
     * NOT_STORED/PROVIDER_INTERNAL the one kept as failed. */
    int64_t delivery_id;
    const struct store_result *res; /* STORED: the store's answer; NULL otherwise */
    const char *provider;
    const struct provider_event *ev; /* what the body said (kind, type) */
};

/* r and what it points at are borrowed for the call. */
typedef void (*webhook_done_cb)(const struct webhook_result *r, void *arg);

/* Runs in through route and the store; cb runs once, from the loop. */
void webhook_process(struct store *st, const struct webhook_route *route,
                     const struct webhook_input *in, webhook_done_cb cb, void *arg);

#endif
