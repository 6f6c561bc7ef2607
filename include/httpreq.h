/* Incremental HTTP/1.1 request parsing over llhttp: bytes in, capped complete requests out. */
#ifndef VR_HTTPREQ_H
#define VR_HTTPREQ_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"

#define HTTPREQ_DEFAULT_MAX_HEADER_BYTES ((size_t)16 * 1024)
#define HTTPREQ_DEFAULT_MAX_BODY_BYTES   ((size_t)1024 * 1024)
/* Slack above max_header_bytes + max_body_bytes for the default pending-input cap: one read. */
#define HTTPREQ_PENDING_SLACK_BYTES ((size_t)64 * 1024)

struct httpreq_limits {
    size_t max_header_bytes;  /* request line + headers (and, separately, trailers); 0: default;
                                 over it the request fails with 431 */
    size_t max_body_bytes;    /* decoded body; 0: default; over it the request fails with 413 */
    size_t max_pending_bytes; /* unparsed input httpreq_feed may hold; 0: header + body + slack */
};

struct httpreq_header {
    char *name;  /* as received (case preserved) */
    char *value; /* as received, without surrounding whitespace */
};

/* One parsed request. Every string is NUL-terminated and never NULL. */
struct httpreq_request {
    const char *method; /* static string: "GET", "POST", ... */
    char *target;       /* request target as received: path plus optional "?query" */
    char *path;         /* target up to the first '?' */
    char *query;        /* after the first '?', or "" */
    struct httpreq_header *headers;
    size_t header_count;
    char *body; /* decoded (de-chunked) body, NUL-terminated; "" when there is none */
    size_t body_len;
    long long content_length; /* declared by Content-Length; 0 when there is no body at all,
                                 -1 when it is chunked (its length is not known ahead) */
    int http_major;
    int http_minor;
    bool keep_alive;      /* the connection may carry another request after this one */
    bool expect_continue; /* "Expect: 100-continue" was present (and accepted) */
};

enum httpreq_event {
    HTTPREQ_NEED_MORE = 0, /* every fed byte is parsed; feed more */
    HTTPREQ_HEADERS_READY, /* the head of the current request is complete (see httpreq_current) */
    HTTPREQ_REQUEST_READY, /* a complete request is waiting for httpreq_take */
    HTTPREQ_ERROR,         /* the stream is unusable: see httpreq_error_status/_message */
};

enum httpreq_phase {
    HTTPREQ_PHASE_IDLE = 0, /* no byte of the next request parsed yet */
    HTTPREQ_PHASE_HEAD,     /* inside a request line or headers */
    HTTPREQ_PHASE_BODY,     /* head complete, body still arriving */
    HTTPREQ_PHASE_DONE,     /* a request is ready, the stream is closed, or an error occurred */
};

struct httpreq;

/* Creates a parser for one connection; limits may be NULL (defaults). Caller frees with
 * httpreq_free(). */
struct httpreq *httpreq_new(const struct httpreq_limits *limits);

/* Frees p and anything it still holds (including an untaken request); accepts NULL. */
void httpreq_free(struct httpreq *p);

/* Copies len bytes of input into p (data is borrowed). Nothing is parsed until httpreq_step.
 * Returns 0, or VR_ETOOBIG when the unparsed input would exceed max_pending_bytes (nothing is
 * copied then). */
int httpreq_feed(struct httpreq *p, const char *data, size_t len) VR_MUSTCHECK;

/* Parses buffered input until something happens. After HTTPREQ_REQUEST_READY parsing stays
 * paused, with later bytes buffered, until the next call; a request not taken by then is
 * discarded. HTTPREQ_ERROR is sticky. After a request whose keep_alive is false, the stream is
 * finished: further input is discarded and HTTPREQ_NEED_MORE returned. */
enum httpreq_event httpreq_step(struct httpreq *p);

/* The request being parsed, valid after HTTPREQ_HEADERS_READY (body not yet there) until the
 * next httpreq_step; NULL otherwise. Borrowed from p. */
const struct httpreq_request *httpreq_current(const struct httpreq *p);

/* After HTTPREQ_REQUEST_READY: hands over the complete request (caller frees with
 * httpreq_request_free()). Returns NULL if no request is ready. */
struct httpreq_request *httpreq_take(struct httpreq *p);

/* The HTTP status for the error (400, 411, 413, 417, 431, 505), or 0 when there is none. */
int httpreq_error_status(const struct httpreq *p);

/* A human-readable reason for the error naming the problem (static or owned by p; "" if none). */
const char *httpreq_error_message(const struct httpreq *p);

/* Bytes fed but not yet parsed. */
size_t httpreq_pending_bytes(const struct httpreq *p);

/* Bytes of input and of the current body p holds: what a connection costs in memory beyond
 * its fixed parts (a request taken with httpreq_take is no longer counted). */
size_t httpreq_held_bytes(const struct httpreq *p);

/* Where the parser stands in the current request (for choosing which timeout applies). */
enum httpreq_phase httpreq_phase(const struct httpreq *p);

/* Case-insensitive header lookup; the first value with that name, or NULL. Borrowed from r. */
const char *httpreq_request_header(const struct httpreq_request *r, const char *name);

/* Frees a request from httpreq_take; accepts NULL. */
void httpreq_request_free(struct httpreq_request *r);

/* The standard reason phrase for status ("Not Found"), or "Unknown" (static). */
const char *httpreq_reason_phrase(int status);

#endif
