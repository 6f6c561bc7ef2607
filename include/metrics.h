/* What this process has done, counted, and rendered in the Prometheus text format (0.0.4).
 * Counters live in the process: each voidrecon process reports its own. */
#ifndef VR_METRICS_H
#define VR_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"

/* A webhook and what became of it: provider atlas, xsolla or xendbridge; outcome one of the
 * deliveries outcomes, or "failed" when it could not be stored. */
void metrics_webhook(const char *provider, const char *outcome);

/* One HTTP request, by the path it asked for (reduced to its handler) and its answer. */
void metrics_http(const char *path, int status, double seconds);

/* A void report through the state machine: source webhook, poll or api; outcome applied,
 * duplicate, stale or conflict. */
void metrics_transition(const char *source, const char *outcome);

/* A poll of Atlas: result ok (answer applied), failed, or lease_lost. */
void metrics_poll(const char *result);

/* An alert delivery attempt. */
void metrics_alert_delivery(bool delivered);

/* Readings taken from the database at scrape time. */
struct metrics_gauges {
    bool db_up;
    bool have_counts; /* the counts below were read */
    int64_t open_cases;
    int64_t followup_cases;
    int64_t alert_backlog;
};

/* The whole exposition; caller frees with free(). */
char *metrics_render(const struct metrics_gauges *g);

#endif
