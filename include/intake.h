/* The HTTP endpoints: webhooks of every provider in, /v1, health, readiness and metrics out.
 * Routes a request, checks who sent it, parses the body through its provider's table and
 * answers only after the store has committed its effects. */
#ifndef VR_INTAKE_H
#define VR_INTAKE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "api.h"
#include "common.h"
#include "config.h"
#include "httpd.h"
#include "provider.h"
#include "store.h"

struct intake_config {
    /* Each provider's endpoint, POST /webhooks/<name>[/<token>], and its settings (tokens and
     * secrets are copied, allowlists borrowed and must outlive the intake). */
    const struct config_provider *providers;
    size_t nproviders;
    struct api *api;            /* serves /v1; borrowed */
    bool schema_current;        /* start-up found the schema current */
    uint64_t schema_recheck_ms; /* while not known current, how often to look (5000) */
};

struct intake;

/* Creates the endpoints over st (borrowed; it must outlive the intake). Caller stops it with
 * intake_close, which closes its timer; free with intake_free after the loop ran. */
struct intake *intake_new(uv_loop_t *loop, struct store *st, const struct intake_config *cfg);

/* The httpd handler; arg is the struct intake. */
void intake_handle(struct httpd_request *req, void *arg);

/* Stops the schema re-check timer (its handle closes on the next loop turn). */
void intake_close(struct intake *in);

/* Frees an intake after intake_close and a loop turn; accepts NULL. */
void intake_free(struct intake *in);

#endif
