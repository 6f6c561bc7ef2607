/* HTTP client on libcurl's multi-socket interface driven by libuv: POST requests that never
 * block the loop, with timeouts and a cap on the answer's size. */
#ifndef VR_HTTPC_H
#define VR_HTTPC_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common.h"

/* Zero fields take the defaults in parentheses. */
struct httpc_config {
    uint64_t timeout_ms;         /* one request, connect to last byte (10000) */
    uint64_t connect_timeout_ms; /* connect alone (3000, at most timeout_ms) */
    size_t max_response_bytes;   /* after decompression (4 MiB); more fails the request */
    const char *user_agent;      /* copied; NULL: "voidrecon/<version>" */
};

/* How one request ended. status: 0 when an HTTP answer came (any http_status); VR_ETIMEDOUT;
 * VR_ETOOBIG when the answer exceeded max_response_bytes; VR_EIO for other transport failures;
 * VR_ECLOSED when the client was closed first. */
struct httpc_response {
    int status;
    long http_status; /* 0 when no answer came */
    const char *body; /* NUL-terminated ("" when none), borrowed for the callback */
    size_t body_len;
    long retry_after_s; /* Retry-After of the answer, or -1 */
    char error[256];    /* one line, no secrets, when status is not 0 */
};

/* r is borrowed for the duration of the call. */
typedef void (*httpc_cb)(const struct httpc_response *r, void *arg);

struct httpc;

/* Creates a client on loop. Needs curl_global_init first. Caller ends it with httpc_close. */
struct httpc *httpc_new(uv_loop_t *loop, const struct httpc_config *cfg);

/* POSTs len bytes of body to url (http or https; redirects are not followed) with headers, a
 * NULL-terminated list of "Name: value" lines. url, headers and body are copied. gzip answers
 * are accepted and decompressed. cb runs once, from the loop, never from inside this call.
 * Not after httpc_close. */
void httpc_post(struct httpc *c, const char *url, const char *const *headers, const char *body,
                size_t len, httpc_cb cb, void *arg);

/* Fails the requests under way with VR_ECLOSED (their callbacks run inside this call),
 * releases every connection, and once every handle is closed frees the client and calls
 * done_cb(arg) (NULL: none) from the loop. */
void httpc_close(struct httpc *c, void (*done_cb)(void *arg), void *arg);

#endif
