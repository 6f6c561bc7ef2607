/* Atlas API client over httpc: queryVoidOrders.do requests that never block the loop, their
 * answers read into replies. Rate and concurrency are the caller's business. */
#ifndef VR_ATLAS_CLIENT_H
#define VR_ATLAS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "atlas.h"
#include "common.h"

struct atlas_client_config {
    const char *base_url;        /* "https://sandbox.atriptech.com"; copied */
    const char *client_id;       /* x-atlas-client-id; copied, never logged */
    const char *client_secret;   /* x-atlas-client-secret; copied, never logged */
    uint64_t timeout_ms;         /* one request, connect to last byte (10000) */
    uint64_t connect_timeout_ms; /* connect alone (3000, at most timeout_ms) */
    size_t max_response_bytes;   /* after decompression (4 MiB); more fails the request */
};

/* What one query came to. status: 0 with order filled; VR_EREMOTE for an HTTP status other
 * than 200 (http_status, and retry_after_ms for 429) or an envelope status other than 0
 * (atlas_status); VR_ENOENT when the answer has no item for the voidCode; VR_EPARSE for a
 * malformed answer; VR_ETIMEDOUT; VR_EIO for a transport failure; VR_ECLOSED when the client
 * was closed first. error is a one-line description without secrets. */
struct atlas_reply {
    int status;
    long http_status;        /* 0 when no answer came */
    int atlas_status;        /* the envelope's status when there was one */
    uint64_t retry_after_ms; /* 429: how long Atlas asked to wait (0: not said) */
    struct atlas_void_order order;
    char error[256];
};

/* reply is borrowed for the duration of the call. */
typedef void (*atlas_client_cb)(const struct atlas_reply *reply, void *arg);

struct atlas_client;

/* Creates a client on loop. base_url is an http(s) URL, client_id and client_secret one line
 * each (config_validate checks them). Caller ends it with atlas_client_close. Needs
 * curl_global_init first. Accept-Encoding: gzip is always sent (httpc), since Atlas may
 * compress. */
struct atlas_client *atlas_client_new(uv_loop_t *loop, const struct atlas_client_config *cfg);

/* Starts POST {base_url}/queryVoidOrders.do for one case; cb runs once, from the loop, never
 * from inside this call. order_no and void_code are copied. Not after atlas_client_close. */
void atlas_client_query(struct atlas_client *c, const char *order_no, const char *void_code,
                        atlas_client_cb cb, void *arg);

/* Fails the requests under way with VR_ECLOSED (their callbacks run inside this call),
 * releases every connection, frees the client once every handle is closed and then calls
 * done_cb(arg) (NULL: none) from the loop. */
void atlas_client_close(struct atlas_client *c, void (*done_cb)(void *arg), void *arg);

#endif
