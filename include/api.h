/* The /v1 operations API for order systems and operators, behind a bearer token: register a
 * case, list and show cases, acknowledge a follow-up, list alerts and order cancellations, list
 * and show deliveries and replay one. */
#ifndef VR_API_H
#define VR_API_H

#include <stdbool.h>

#include "common.h"
#include "httpd.h"
#include "store.h"
#include "webhook.h"

struct api;

/* admin_token "" or NULL disables the API (every /v1 request gets 404 saying so); copied. st is
 * borrowed and must outlive the API. */
struct api *api_new(struct store *st, const char *admin_token);

/* The providers' routes that POST /v1/deliveries/{id}/replay runs deliveries through (borrowed;
 * they must outlive the API). Until set, replays are not served. */
void api_set_routes(struct api *a, const struct webhook_routes *routes);

/* The answer to a registered case, as POST /v1/cases gives it:
 * {"order_no","void_code","created","outcome","status"}. Caller frees with free(). */
char *api_registration_json(const char *order_no, const char *void_code,
                            const struct store_result *res);

/* From the head of a request whose path is /v1 or starts with /v1/: false, with the request
 * answered, when the API is disabled or the bearer token is missing or wrong. */
bool api_admit(const struct api *a, struct httpd_request *req);

/* Serves a request api_admit admitted. */
void api_handle(struct api *a, struct httpd_request *req);

void api_free(struct api *a);

#endif
