/* Retention: removes old deliveries and the history rows that changed nothing, in batches
 * (each a short transaction under an advisory lock, so one process at a time prunes, whatever
 * their number), either on a timer inside serve or once to the end (voidrecon prune). Cases,
 * their status changes, alerts and acknowledgements are never pruned. */
#ifndef VR_PRUNER_H
#define VR_PRUNER_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "common.h"
#include "store.h"

/* Zero fields take the defaults in parentheses. */
struct pruner_config {
    uint64_t delivery_retention_ms; /* age of the deliveries pruned; 0: kept */
    uint64_t event_retention_ms;    /* age of the unchanged history rows pruned; 0: kept */
    uint64_t interval_ms;           /* between two runs in serve (3600000) */
    unsigned batch;                 /* rows per batch (1000) */
};

/* What one run removed. */
struct pruner_totals {
    int64_t deliveries;
    int64_t events;
    unsigned batches;
    bool busy; /* stopped because another process held the prune lock */
    uint64_t took_ms;
};

struct pruner;

/* Starts pruning on loop over st (borrowed; it must outlive the pruner): a first run shortly
 * after start (after at most a minute), then one every interval_ms. Each run goes batch after
 * batch until nothing is left, a batch fails (logged; the next run tries again) or another
 * process holds the lock; a run that removed something is logged. Caller ends it with
 * pruner_close. */
struct pruner *pruner_new(uv_loop_t *loop, struct store *st, const struct pruner_config *cfg);

/* Stops the timer; a batch under way finishes first. Then frees p and calls done_cb(arg) (NULL:
 * none) from the loop. */
void pruner_close(struct pruner *p, void (*done_cb)(void *arg), void *arg);

/* status 0, or the failed batch's (error says why); totals count what was removed before. */
typedef void (*pruner_done_cb)(int status, const char *error, const struct pruner_totals *totals,
                               void *arg);

/* One run to the end, for voidrecon prune: every batch waits for the prune lock up to the
 * session's lock_timeout (totals->busy when it never came). cb runs once, from the loop. */
void pruner_run_once(struct store *st, const struct pruner_config *cfg, pruner_done_cb cb,
                     void *arg);

#endif
