/* Alert delivery: leases due alerts from the outbox, POSTs each (signed the Standard Webhooks
 * way when a secret is set) and marks it delivered on any 2xx, or backs off and retries. */
#ifndef VR_NOTIFIER_H
#define VR_NOTIFIER_H

#include <stdint.h>

#include <uv.h>

#include "common.h"
#include "httpc.h"
#include "store.h"

/* Zero fields take the defaults in parentheses. */
struct notifier_config {
    const char *url;       /* receiver; copied */
    const char *secret;    /* "" or NULL: unsigned; "whsec_..." or a raw key; copied */
    uint64_t tick_ms;      /* how often to look for due alerts (250) */
    uint64_t retry_ms;     /* first retry after a failure, doubling after (5000) */
    uint64_t retry_max_ms; /* cap of the backoff (3600000) */
    uint64_t lease_ms;     /* how long one attempt holds an alert (60000) */
    unsigned concurrency;  /* deliveries in flight (4) */
};

struct notifier;

/* Creates and starts delivery on loop through http (borrowed, as st; both must outlive it).
 * Returns 0, or VR_EINVAL when the secret is a whsec_ value that is not base64. */
int notifier_new(struct notifier **out, uv_loop_t *loop, struct store *st, struct httpc *http,
                 const struct notifier_config *cfg) VR_MUSTCHECK;

/* Stops leasing; results in hand are recorded, then done_cb(arg) runs from the loop. Attempts
 * still waiting for the receiver end when the caller closes http (their leases expire). */
void notifier_stop(struct notifier *n, void (*done_cb)(void *arg), void *arg);

/* Frees a stopped notifier; accepts NULL. */
void notifier_free(struct notifier *n);

#endif
