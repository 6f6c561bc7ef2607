/* The /v1 operations API for order systems and operators, behind a bearer token: register a
 * case, list and show cases, acknowledge a follow-up, list alerts and order cancellations. */
#ifndef VR_API_H
#define VR_API_H

#include "common.h"
#include "httpd.h"
#include "store.h"

struct api;

/* admin_token "" or NULL disables the API (every /v1 request gets 404 saying so); copied. st is
 * borrowed and must outlive the API. */
struct api *api_new(struct store *st, const char *admin_token);

/* Answers one request whose path is /v1 or starts with /v1/. */
void api_handle(struct api *a, struct httpd_request *req);

void api_free(struct api *a);

#endif
