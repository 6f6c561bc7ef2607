/* The reconciliation loop: a repeating timer that leases due cases, asks Atlas about each with
 * bounded concurrency and rate, and applies every answer through the state machine; it also
 * flags cases that stay open too long. */
#ifndef VR_POLLER_H
#define VR_POLLER_H

#include <stdint.h>

#include <uv.h>

#include "atlas_client.h"
#include "common.h"
#include "store.h"

/* Zero fields take the defaults in parentheses. */
struct poller_config {
    uint64_t tick_ms;         /* how often to look for due cases (1000) */
    uint64_t first_ms;        /* base of the growing interval between polls of an open case
                                 (never below tick_ms) */
    uint64_t max_interval_ms; /* cap of that interval, of the error backoff and of any pause
                                 Atlas asks for (3600000) */
    uint64_t retry_ms;        /* first retry after a failed poll, doubling after (10000) */
    uint64_t lease_ms;        /* how long a leased case stays ours (2 x request timeout + 5 s) */
    uint64_t stuck_after_ms;  /* a case open this long is flagged stuck (86400000) */
    unsigned concurrency;     /* requests in flight (8) */
    unsigned max_rps;         /* requests started per second (10) */
    unsigned failures_alert;  /* failed polls in a row that flag poll_failing (10) */
    /* Called when Atlas makes every poll wait (a 429): no poll starts before until_ms (loop
     * time, uv_now); why is one line, borrowed for the call. NULL: nobody is told. */
    void (*pause_cb)(uint64_t until_ms, const char *why, void *arg);
    void *pause_arg;
    /* The Atlas API; base_url NULL or "": no polling (Atlas not configured), only the stuck
     * sweep. Copied. */
    struct atlas_client_config atlas;
};

struct poller;

/* Creates and starts the poller on loop, with its own Atlas client. st is borrowed and must
 * outlive it. Caller ends it with poller_close. */
struct poller *poller_new(uv_loop_t *loop, struct store *st, const struct poller_config *cfg);

/* Stops leasing and closes the Atlas client: requests still waiting for Atlas end there
 * (their leases expire and the cases are polled again), answers already in hand are applied.
 * Then the poller frees itself and done_cb(arg) (NULL: none) runs from the loop. */
void poller_close(struct poller *p, void (*done_cb)(void *arg), void *arg);

#endif
