/* What this process has done, counted, and rendered in the Prometheus text format (0.0.4).
 * Counters live in the process: each voidrecon process reports its own. */
#ifndef VR_METRICS_H
#define VR_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "voidcase.h"

/* A webhook and what became of it: provider atlas, xsolla or xendbridge; outcome one of the
 * deliveries outcomes, or "failed" when it could not be stored. */
void metrics_webhook(const char *provider, const char *outcome);

/* One HTTP request, by the path it asked for (reduced to its handler) and its answer. */
void metrics_http(const char *path, int status, double seconds);

/* A void report through the state machine: source webhook, poll or api; outcome applied,
 * duplicate, stale or conflict. */
void metrics_transition(const char *source, const char *outcome);

/* A poll of Atlas: result ok (answer applied), failed, rate_limited (a 429 or status 905: the
 * poller pauses, the case is not failed), lease_lost, or deferred (a failure that is everyone's:
 * given back uncounted to the open circuit). */
void metrics_poll(const char *result);

/* An alert delivery attempt. */
void metrics_alert_delivery(bool delivered);

/* Rows removed by retention: table "deliveries" or "void_case_events". */
void metrics_pruned(const char *table, uint64_t rows);

/* State read from memory at scrape time: the pool's, the poller's, and the last background
 * reading of the database (never a query per scrape). */
struct metrics_gauges {
    bool db_up;         /* the pool holds an established connection */
    bool db_read_only;  /* the database refuses writes */
    bool poller_paused; /* Atlas asked the poller to wait */
    bool circuit_open;  /* atlas_failing is open */
    int64_t circuit_since_s;
    bool webhooks_silent; /* webhooks_silent is open */
    int64_t silent_since_s;
    /* The writer's (group commit): writes waiting for a batch, writes in batches under way,
     * batches written and the writes in them. */
    uint64_t write_queued;
    uint64_t write_in_flight;
    uint64_t write_batches;
    uint64_t write_batch_items;
    bool have_counts; /* the counts below were read at least once */
    int64_t open_cases;
    int64_t followup_cases;
    int64_t followups[VOIDCASE_FOLLOWUP_COUNT]; /* open follow-ups by reason */
    int64_t alert_backlog;
    double poll_lag_s;   /* age of the oldest due poll */
    double gauges_age_s; /* since the counts were read */

    /* Read with the counts: how long the oldest of each backlog has waited, 0 when none. */
    double alert_oldest_s;    /* the oldest undelivered alert */
    double followup_oldest_s; /* the oldest follow-up: a case's reason, or a cancellation */
};

/* The whole exposition; caller frees with free(). */
char *metrics_render(const struct metrics_gauges *g);

#endif
