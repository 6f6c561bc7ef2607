/* HTTP/1.1 server on libuv: listener, keep-alive connections, timeouts, ordered responses. */
#ifndef VR_HTTPD_H
#define VR_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "acl.h"
#include "common.h"

struct httpd;
struct httpd_request; /* one request handed to the handler; opaque, see the accessors */

/* Zero fields take the defaults in parentheses. */
struct httpd_config {
    const char *host;           /* numeric IPv4/IPv6 address to bind ("127.0.0.1"); borrowed */
    int port;                   /* 0: an ephemeral port, see httpd_port() */
    size_t max_header_bytes;    /* request line + headers (16 KiB); over it: 431 */
    size_t max_body_bytes;      /* request body (1 MiB); over it: 413 */
    uint64_t header_timeout_ms; /* for a request head to arrive, counted from the connection's
                                   start or the first byte of a later request (10 s); 408 */
    uint64_t idle_timeout_ms;   /* keep-alive connection waiting for its next request (60 s) */
    unsigned max_connections;   /* open connections; more get 503 with Retry-After (1024) */
    uint64_t body_timeout_ms;   /* for the body once the head is in (header_timeout_ms); 408 */
    /* Request bytes all connections may hold at once: input not yet parsed, bodies being read
     * or handled, and bodies declared by admitted requests still arriving (64 MiB). A request
     * that would pass it gets 503 with Retry-After. */
    size_t max_buffered_bytes;
    /* Called when a request's head is complete, before any of its body is read or a
     * "100 Continue" is sent. Returns true to admit the request (its body is read and it goes
     * to the handler), or false after answering it at once with httpd_respond or
     * httpd_respond_error; the body is then never read and the connection is closed after the
     * answer. httpd_request_body gives "" here. NULL: every request is admitted. */
    bool (*admit_cb)(struct httpd_request *head, void *arg);
    /* Called with every answer a handler gives: the request's path, the status, and the
     * seconds from the request's arrival to its answer. NULL: not called. */
    void (*observe_cb)(const char *path, int status, double seconds);
    /* Proxies whose word on the client is taken; borrowed, must outlive the server. NULL or
     * empty: none, and the TCP peer is the client. From a peer in it, a request's client is
     * what its X-Forwarded-For says (see forwarded_client); a malformed one gets 400. */
    const struct acl *trusted_proxies;
    /* A connection from a trusted proxy must open with a PROXY protocol header (v1 or v2)
     * within header_timeout_ms; its source replaces the peer, and X-Forwarded-For then counts
     * only if that source is itself trusted. A missing or bad header is logged and the
     * connection closed. Connections from other peers are served without one. */
    bool proxy_protocol;
};

/* Called once per admitted request, in order per connection. The handler must eventually call
 * httpd_respond or httpd_respond_error exactly once for req, now or later from the loop. */
typedef void (*httpd_handler_cb)(struct httpd_request *req, void *arg);

/* Called by httpd_close once every handle is closed and the server freed. */
typedef void (*httpd_done_cb)(void *arg);

/* Binds, listens and starts accepting on loop. cfg is copied (host too); arg is borrowed and
 * passed to handler. On success *out is set; the caller ends it with httpd_close. Returns
 * VR_EINVAL for a host that is not a numeric address or a port out of range, VR_EIO when
 * binding or listening fails, with a message in err (the caller logs); on failure the half-made
 * server closes its handle and frees itself the next time the loop runs. */
int httpd_new(struct httpd **out, uv_loop_t *loop, const struct httpd_config *cfg,
              httpd_handler_cb handler, void *arg, char *err, size_t errlen) VR_MUSTCHECK;

/* The port actually bound (useful with port 0). */
int httpd_port(const struct httpd *h);

/* Request accessors. Strings are borrowed from req and valid until it is responded to. */
const char *httpd_request_method(const struct httpd_request *req); /* "GET", "POST", ... */
const char *httpd_request_path(const struct httpd_request *req);   /* target without query */
const char *httpd_request_query(const struct httpd_request *req);  /* after '?', or "" */
/* Case-insensitive; the first value, or NULL when absent. */
const char *httpd_request_header(const struct httpd_request *req, const char *name);
/* The decoded body, NUL-terminated ("" when none); *len gets its length if len is not NULL. */
const char *httpd_request_body(const struct httpd_request *req, size_t *len);
/* The request's client: the TCP peer, or the address trusted proxies give for it (see
 * trusted_proxies and proxy_protocol), decided before admit_cb. Textual ("127.0.0.1", "::1";
 * IPv4-mapped IPv6 as IPv4) and as a socket address. */
const char *httpd_request_remote_addr(const struct httpd_request *req);
const struct sockaddr *httpd_request_peer(const struct httpd_request *req);

/* Sends the response and frees req (which must not be used afterwards). content_type may be
 * NULL (no Content-Type header); extra_headers is NULL or "Name: value\r\n" lines; body (len
 * bytes) is copied. Content-Length and Connection are always written (no body and no
 * Content-Length for 1xx/204/304; no body for HEAD). A malformed status or header text is
 * logged and replaced by a 500. If the client has gone, the response is dropped. */
void httpd_respond(struct httpd_request *req, int status, const char *content_type,
                   const char *extra_headers, const char *body, size_t len);

/* httpd_respond with the JSON body {"error":{"code":code,"message":message}}; strings are
 * borrowed and JSON-escaped. */
void httpd_respond_error(struct httpd_request *req, int status, const char *code,
                         const char *message, const char *extra_headers);

/* Stops accepting at once. Idle and half-received connections are closed; requests in flight
 * get their response written, then their connection is closed. Once every handle is closed the
 * server frees itself and done_cb(arg) runs (NULL: none; from the loop, never from inside
 * httpd_close). Call it at most once. */
void httpd_close(struct httpd *h, httpd_done_cb done_cb, void *arg);

#endif
