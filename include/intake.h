/* The HTTP endpoints: webhooks of every provider in, /v1, health, readiness and metrics out.
 * Routes a request, checks who sent it, parses the body through its provider's table and
 * answers only after the store has committed its effects. */
#ifndef VR_INTAKE_H
#define VR_INTAKE_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"
#include "config.h"
#include "health.h"
#include "httpd.h"
#include "store.h"

struct intake_config {
    /* Each provider's endpoint, POST /webhooks/<name>[/<token>], and its settings (tokens and
     * secrets are copied, allowlists borrowed and must outlive the intake). */
    const struct config_provider *providers;
    size_t nproviders;
    const char *admin_token; /* bearer token of /v1; "" or NULL: /v1 disabled; copied */
    /* What /metrics and /readyz report, and whether the schema is behind (then webhooks get
     * 503); borrowed, must outlive the intake. */
    struct health *health;
};

struct intake;

/* Creates the endpoints over st (borrowed; it must outlive the intake). Caller ends it with
 * intake_close once no request is in flight (after httpd_close). */
struct intake *intake_new(struct store *st, const struct intake_config *cfg);

/* The httpd admit_cb; arg is the struct intake. Decides from a request's head alone whether
 * its body is worth reading: the route, then for a webhook the source address, path token,
 * method and configuration, for /v1 the bearer token, for the rest the method. */
bool intake_admit(struct httpd_request *head, void *arg);

/* The httpd handler; arg is the struct intake. Takes only what intake_admit admitted. */
void intake_handle(struct httpd_request *req, void *arg);

/* Frees the intake (it holds no handle and nothing in flight once httpd is closed), then calls
 * done_cb(arg) (NULL: none) at once. */
void intake_close(struct intake *in, void (*done_cb)(void *arg), void *arg);

#endif
