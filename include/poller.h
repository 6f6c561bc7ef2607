/* The reconciliation loop: a repeating timer that leases due cases, asks Atlas about each with
 * bounded concurrency and a rate shared by every process, and applies every answer through the
 * state machine. Failures that are a case's own back off (or flag the case at once when no
 * retry changes them); failures that are everyone's, seen for several cases in a row, open a
 * circuit shared by every process: polling pauses but for probes, cases keep their counts, and
 * one atlas_failing alert is raised, one more when Atlas answers again. It also flags cases
 * that stay open too long, and raises webhooks_silent when Atlas's webhooks stop coming. */
#ifndef VR_POLLER_H
#define VR_POLLER_H

#include <stdbool.h>
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
    unsigned circuit_cases;   /* distinct cases in a row failing for everyone (credentials,
                                 system or server errors, unreachable, rate limits) that open
                                 the circuit (3) */
    uint64_t probe_max_ms;    /* cap of the probe interval while it is open (300000); the
                                 first probe comes retry_ms after the opening */
    uint64_t silence_ms;      /* no Atlas webhook for this long while cases are open raises
                                 webhooks_silent; 0: off */
    unsigned silence_changes; /* status changes found by polls since the last Atlas webhook
                                 that raise it; 0: off */
    /* Called when Atlas makes every poll wait (a 429): no poll starts before until_ms (loop
     * time, uv_now); why is one line, borrowed for the call. NULL: nobody is told. */
    void (*pause_cb)(uint64_t until_ms, const char *why, void *arg);
    void *pause_arg;
    /* Called with what the poller learns of an incident: kind "atlas_failing" or
     * "webhooks_silent", open or not, since when (Unix time, 0 when closed). NULL: nobody is
     * told. The arg is pause_arg. */
    void (*incident_cb)(const char *kind, bool open, int64_t since_s, void *arg);
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
