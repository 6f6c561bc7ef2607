/* A stored delivery run again through today's code, as a new delivery with replay_of set: the
 * same provider parse, signature check (with today's secret, over the kept headers), state
 * machine and cancellation as a webhook received (webhook_process). Today's source allowlist
 * is checked against the stored remote address; the path token is not stored, and the caller
 * (the /v1 bearer, or the CLI's database access) stands in for it. The Content-Type is not
 * kept and not checked. A delivery kept only as a prefix cannot be replayed. */
#ifndef VR_REPLAY_H
#define VR_REPLAY_H

#include <stdint.h>

#include "store.h"
#include "webhook.h"

struct replay_result {
    /* 0: the delivery ran (outcome says how); VR_ENOENT: no such delivery; VR_ESTATE: it
     * cannot be replayed (code and message say why); VR_EUNAVAIL, VR_EDB: the database. */
    int status;
    const char *code;    /* VR_ESTATE: body_incomplete, source_not_allowed, not_configured,
                            unknown_provider */
    const char *message; /* status != 0: one line, without secrets */
    int64_t replay_of;
    int64_t delivery_id; /* the new delivery; 0 when none could be written */
    const char *outcome; /* applied, duplicate, stale, conflict, ignored, rejected or failed */
    const char *reason;  /* rejected, failed: why; else NULL */
    int64_t alert_id;    /* 0: none raised */
};

/* r and its strings are borrowed for the call. */
typedef void (*replay_done_cb)(const struct replay_result *r, void *arg);

/* Replays delivery id over routes (borrowed until cb, which runs once, from the loop). */
void replay_delivery(struct store *st, const struct webhook_routes *routes, int64_t id,
                     replay_done_cb cb, void *arg);

/* {"replay_of", "delivery_id", "outcome", "reason", "alert_id"} of a replay that ran. Caller
 * frees with free(). */
char *replay_result_json(const struct replay_result *r);

#endif
