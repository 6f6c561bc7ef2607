/* Alert delivery: leases due alerts from the outbox, POSTs each in the receiver's format (signed
 * the Standard Webhooks way when a secret is set) and marks it delivered on any 2xx, or backs
 * off and retries; a PagerDuty 400 (an event it will never take) is kept failed, not retried. */
#ifndef VR_NOTIFIER_H
#define VR_NOTIFIER_H

#include <stdint.h>

#include <uv.h>

#include "alert.h"
#include "common.h"
#include "store.h"

/* Zero fields take the defaults in parentheses. */
struct notifier_config {
    const char *url;          /* receiver; copied */
    const unsigned char *key; /* signing key (alert_key_parse), keylen bytes; NULL: unsigned;
                                 copied */
    size_t keylen;
    enum alert_format format; /* the body receivers expect */
    const char *routing_key;  /* PagerDuty's integration key (pagerduty format); copied */
    uint64_t timeout_ms;      /* one delivery attempt (15000) */
    uint64_t tick_ms;         /* how often to look for due alerts (250) */
    uint64_t retry_ms;        /* first retry after a failure, doubling after (5000) */
    uint64_t retry_max_ms;    /* cap of the backoff (3600000) */
    uint64_t lease_ms;        /* how long one attempt holds an alert (60000) */
    unsigned concurrency;     /* deliveries in flight (4) */
};

struct notifier;

/* Creates and starts delivery on loop, with its own HTTP client. st is borrowed and must
 * outlive it. Caller ends it with notifier_close. */
struct notifier *notifier_new(uv_loop_t *loop, struct store *st, const struct notifier_config *cfg);

/* Stops leasing and closes the HTTP client: attempts still waiting for the receiver end there
 * (their leases expire and the alerts go out again), results in hand are recorded. Then the
 * notifier frees itself and done_cb(arg) (NULL: none) runs from the loop. */
void notifier_close(struct notifier *n, void (*done_cb)(void *arg), void *arg);

#endif
