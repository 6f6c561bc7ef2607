/* What /metrics and /readyz report, kept in memory: a background timer reads the database on
 * the store's health connection (whether it takes writes and the schema version every
 * check_ms, the counts every refresh_ms), the pool's state is read as it is, and the poller
 * reports its pauses. Answering a scrape never touches the database, so scrapes cannot take a
 * connection that a webhook waits for. */
#ifndef VR_HEALTH_H
#define VR_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common.h"
#include "store.h"

/* Zero fields take the defaults in parentheses. */
struct health_config {
    uint64_t refresh_ms; /* how often the counts are read (15000) */
    uint64_t check_ms;   /* how often writability and schema are checked (min(refresh, 5000)) */
    int schema_needed;   /* the schema version this voidrecon needs */
    bool schema_current; /* start-up found the schema current */
};

struct health;

/* Starts the readings on loop over st (borrowed; it must outlive the health). Caller ends it
 * with health_close. */
struct health *health_new(uv_loop_t *loop, struct store *st, const struct health_config *cfg);

/* The poller's pause: no poll starts before until_ms (loop time, uv_now); why is one line,
 * copied. A later call replaces the pause. */
void health_poller_paused(struct health *h, uint64_t until_ms, const char *why);

/* An incident shared by every process, as the poller saw it: kind "atlas_failing" or
 * "webhooks_silent", open or not, since when (Unix time). For /metrics and /readyz. */
void health_incident(struct health *h, const char *kind, bool open, int64_t since_s);

/* The last check that answered found the schema older than this voidrecon needs (false while
 * none has answered): webhooks cannot be stored until it is migrated. */
bool health_schema_behind(const struct health *h);

/* The Prometheus exposition from memory; caller frees with free(). */
char *health_metrics(struct health *h);

enum health_readiness { HEALTH_READY, HEALTH_NOT_READY, HEALTH_UNKNOWN };

/* Readiness from memory. *body gets its JSON (caller frees with free()): status ("ready" or
 * "not_ready"), reason and error {code, message} when not ready, schema_version, database
 * {up, read_only, checked_ms_ago, check_error} and poller {paused, resume_in_ms, reason}.
 * HEALTH_UNKNOWN (and *body NULL) while the pool has not finished its first connection
 * attempt: the caller may ask the database once instead. */
enum health_readiness health_ready(struct health *h, char **body);

/* Stops the timer; once it is closed and a reading under way has answered, frees h and calls
 * done_cb(arg) (NULL: none) from the loop. */
void health_close(struct health *h, void (*done_cb)(void *arg), void *arg);

#endif
