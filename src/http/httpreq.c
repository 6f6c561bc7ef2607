/* Incremental HTTP/1.1 request parser: llhttp does the parsing, this file adds caps and order. */
#include "httpreq.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>

#include "buf.h"

struct httpreq {
    llhttp_t parser;
    struct httpreq_limits limits;

    /* Unparsed input is in.data[in_off, in.len). */
    struct buf in;
    size_t in_off;

    /* Stream offsets (bytes parsed since creation) so callbacks can tell how far into the
     * current request's head they are, even when it arrived over many reads. */
    uint64_t consumed;
    uint64_t msg_start;
    const char *exec_base;
    uint64_t exec_abs;

    bool in_message;
    bool headers_done;
    bool paused_headers;
    bool ready;
    bool closed;

    struct httpreq_request *cur;
    size_t header_slots;
    struct buf url;
    struct buf field;
    struct buf value;
    struct buf body;
    size_t trailer_bytes;
    size_t ext_bytes;

    int err_status;
    char err_msg[200];
};

static struct httpreq *from_parser(llhttp_t *parser)
{
    return (struct httpreq *)parser->data;
}

static int fail(struct httpreq *p, int status, const char *fmt, ...) VR_PRINTF(3, 4);

static int fail(struct httpreq *p, int status, const char *fmt, ...)
{
    va_list ap;

    if (p->err_status == 0) {
        p->err_status = status;
        va_start(ap, fmt);
        vsnprintf(p->err_msg, sizeof(p->err_msg), fmt, ap);
        va_end(ap);
    }
    return HPE_USER;
}

static uint64_t stream_offset(const struct httpreq *p, const char *at)
{
    return p->exec_abs + (uint64_t)(at - p->exec_base);
}

static int head_check(struct httpreq *p, const char *at, size_t len)
{
    if (stream_offset(p, at + len) - p->msg_start > p->limits.max_header_bytes)
        return fail(p, 431, "request head exceeds %zu bytes", p->limits.max_header_bytes);
    return 0;
}

/* Trailers are parsed by llhttp but not kept; they still must not be endless. */
static int trailer_check(struct httpreq *p, size_t len)
{
    p->trailer_bytes += len;
    if (p->trailer_bytes > p->limits.max_header_bytes)
        return fail(p, 431, "request trailers exceed %zu bytes", p->limits.max_header_bytes);
    return 0;
}

static void request_reset_bufs(struct httpreq *p)
{
    buf_free(&p->url);
    buf_free(&p->field);
    buf_free(&p->value);
    buf_free(&p->body);
    p->trailer_bytes = 0;
    p->ext_bytes = 0;
}

static int on_message_begin(llhttp_t *parser)
{
    struct httpreq *p = from_parser(parser);

    httpreq_request_free(p->cur);
    p->cur = xcalloc(1, sizeof(*p->cur));
    p->header_slots = 0;
    request_reset_bufs(p);
    p->in_message = true;
    p->headers_done = false;
    return 0;
}

static int on_method(llhttp_t *parser, const char *at, size_t len)
{
    return head_check(from_parser(parser), at, len);
}

static int on_version(llhttp_t *parser, const char *at, size_t len)
{
    return head_check(from_parser(parser), at, len);
}

static int on_url(llhttp_t *parser, const char *at, size_t len)
{
    struct httpreq *p = from_parser(parser);
    int rc = head_check(p, at, len);

    if (rc == 0 && buf_add(&p->url, at, len) != 0)
        rc = fail(p, 431, "request target exceeds %zu bytes", p->limits.max_header_bytes);
    return rc;
}

static int on_header_field(llhttp_t *parser, const char *at, size_t len)
{
    struct httpreq *p = from_parser(parser);
    int rc;

    if (p->headers_done)
        return trailer_check(p, len);
    rc = head_check(p, at, len);
    if (rc == 0 && buf_add(&p->field, at, len) != 0)
        rc = fail(p, 431, "header name exceeds %zu bytes", p->limits.max_header_bytes);
    return rc;
}

static int on_header_value(llhttp_t *parser, const char *at, size_t len)
{
    struct httpreq *p = from_parser(parser);
    int rc;

    if (p->headers_done)
        return trailer_check(p, len);
    rc = head_check(p, at, len);
    if (rc == 0 && buf_add(&p->value, at, len) != 0)
        rc = fail(p, 431, "header value exceeds %zu bytes", p->limits.max_header_bytes);
    return rc;
}

static int on_header_value_complete(llhttp_t *parser)
{
    struct httpreq *p = from_parser(parser);
    struct httpreq_request *r = p->cur;
    struct httpreq_header *h;
    size_t vlen = p->value.len;

    if (p->headers_done) {
        buf_free(&p->field);
        buf_free(&p->value);
        return 0;
    }
    if (r->header_count == p->header_slots) {
        p->header_slots = p->header_slots ? p->header_slots * 2 : 8;
        r->headers = xrealloc(r->headers, p->header_slots * sizeof(*r->headers));
    }
    /* Optional whitespace around a value is not part of it (RFC 9110 5.5). */
    while (vlen > 0 && (p->value.data[vlen - 1] == ' ' || p->value.data[vlen - 1] == '\t'))
        vlen--;
    h = &r->headers[r->header_count++];
    h->name = buf_take(&p->field);
    h->value = p->value.data ? xstrndup(p->value.data, vlen) : xstrdup("");
    buf_free(&p->value);
    return 0;
}

static void split_target(struct httpreq_request *r)
{
    const char *q = strchr(r->target, '?');

    if (q) {
        r->path = xstrndup(r->target, (size_t)(q - r->target));
        r->query = xstrdup(q + 1);
    } else {
        r->path = xstrdup(r->target);
        r->query = xstrdup("");
    }
}

static bool method_needs_length(const char *method)
{
    return strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
           strcmp(method, "PATCH") == 0;
}

static int on_headers_complete(llhttp_t *parser)
{
    struct httpreq *p = from_parser(parser);
    struct httpreq_request *r = p->cur;
    const char *expect;

    p->headers_done = true;
    r->method = llhttp_method_name((llhttp_method_t)llhttp_get_method(parser));
    r->target = buf_take(&p->url);
    split_target(r);
    r->http_major = llhttp_get_http_major(parser);
    r->http_minor = llhttp_get_http_minor(parser);
    if (r->http_major != 1) {
        fail(p, 505, "HTTP version %d.%d is not supported", r->http_major, r->http_minor);
        return -1;
    }

    expect = httpreq_request_header(r, "Expect");
    if (expect) {
        if (strcasecmp(expect, "100-continue") != 0) {
            fail(p, 417, "unsupported expectation in Expect header");
            return -1;
        }
        r->expect_continue = true;
    }

    /* As far as the head tells; settled when the message completes. */
    r->keep_alive = llhttp_should_keep_alive(parser) && !llhttp_get_upgrade(parser);
    r->content_length = 0;
    if (parser->flags & F_CHUNKED) {
        /* The running total is checked in on_body. */
        r->content_length = -1;
    } else if (parser->flags & F_CONTENT_LENGTH) {
        if (parser->content_length > p->limits.max_body_bytes) {
            fail(p, 413, "request body of %llu bytes exceeds the limit of %zu bytes",
                 (unsigned long long)parser->content_length, p->limits.max_body_bytes);
            return -1;
        }
        r->content_length = (long long)parser->content_length;
    } else if (method_needs_length(r->method)) {
        fail(p, 411, "%s request needs Content-Length or chunked encoding", r->method);
        return -1;
    }
    /* Pause so the caller can answer Expect: 100-continue and switch to the body timeout. */
    p->paused_headers = true;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *parser, const char *at, size_t len)
{
    struct httpreq *p = from_parser(parser);

    if (buf_add(&p->body, at, len) != 0)
        return fail(p, 413, "request body exceeds the limit of %zu bytes",
                    p->limits.max_body_bytes);
    return 0;
}

/* Chunk extensions are ignored, but a body made only of extensions must still end. */
static int on_chunk_extension(llhttp_t *parser, const char *at, size_t len)
{
    struct httpreq *p = from_parser(parser);

    (void)at;
    p->ext_bytes += len;
    if (p->ext_bytes > p->limits.max_header_bytes)
        return fail(p, 400, "chunk extensions exceed %zu bytes", p->limits.max_header_bytes);
    return 0;
}

static int on_message_complete(llhttp_t *parser)
{
    struct httpreq *p = from_parser(parser);
    struct httpreq_request *r = p->cur;

    /* Upgrades (including CONNECT) are not supported: answer as plain HTTP, then close. */
    r->keep_alive = llhttp_should_keep_alive(parser) && !llhttp_get_upgrade(parser);
    r->body_len = p->body.len;
    r->body = buf_take(&p->body);
    p->ready = true;
    /* Stop here so later pipelined bytes wait until the caller has taken this request. */
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_method = on_method,
    .on_url = on_url,
    .on_version = on_version,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_chunk_extension_name = on_chunk_extension,
    .on_chunk_extension_value = on_chunk_extension,
    .on_message_complete = on_message_complete,
};

struct httpreq *httpreq_new(const struct httpreq_limits *limits)
{
    struct httpreq *p = xcalloc(1, sizeof(*p));

    if (limits)
        p->limits = *limits;
    if (p->limits.max_header_bytes == 0)
        p->limits.max_header_bytes = HTTPREQ_DEFAULT_MAX_HEADER_BYTES;
    if (p->limits.max_body_bytes == 0)
        p->limits.max_body_bytes = HTTPREQ_DEFAULT_MAX_BODY_BYTES;
    if (p->limits.max_pending_bytes == 0)
        p->limits.max_pending_bytes =
            p->limits.max_header_bytes + p->limits.max_body_bytes + HTTPREQ_PENDING_SLACK_BYTES;
    buf_init(&p->url, p->limits.max_header_bytes);
    buf_init(&p->field, p->limits.max_header_bytes);
    buf_init(&p->value, p->limits.max_header_bytes);
    buf_init(&p->body, p->limits.max_body_bytes);
    buf_init(&p->in, p->limits.max_pending_bytes);
    llhttp_init(&p->parser, HTTP_REQUEST, &settings);
    p->parser.data = p;
    return p;
}

void httpreq_free(struct httpreq *p)
{
    if (p == NULL)
        return;
    request_reset_bufs(p);
    httpreq_request_free(p->cur);
    buf_free(&p->in);
    free(p);
}

int httpreq_feed(struct httpreq *p, const char *data, size_t len)
{
    buf_drop_front(&p->in, p->in_off);
    p->in_off = 0;
    return buf_add(&p->in, data, len);
}

static void consume(struct httpreq *p, size_t n)
{
    p->in_off += n;
    p->consumed += n;
    if (p->in_off == p->in.len) {
        p->in_off = 0;
        buf_clear(&p->in);
    }
}

static enum httpreq_event parse_error(struct httpreq *p, llhttp_errno_t err)
{
    if (p->err_status != 0)
        return HTTPREQ_ERROR;
    switch (err) {
    case HPE_INVALID_VERSION:
        p->err_status = 505;
        snprintf(p->err_msg, sizeof(p->err_msg), "unsupported HTTP version: %s",
                 llhttp_get_error_reason(&p->parser));
        break;
    case HPE_PAUSED_H2_UPGRADE:
        p->err_status = 505;
        snprintf(p->err_msg, sizeof(p->err_msg), "HTTP/2 is not supported");
        break;
    default:
        p->err_status = 400;
        snprintf(p->err_msg, sizeof(p->err_msg), "malformed request: %s",
                 llhttp_get_error_reason(&p->parser));
        break;
    }
    return HTTPREQ_ERROR;
}

enum httpreq_event httpreq_step(struct httpreq *p)
{
    const char *base;
    size_t n;
    llhttp_errno_t err;
    bool resumed_head;

    if (p->err_status != 0)
        return HTTPREQ_ERROR;
    if (p->ready) {
        bool keep_alive = p->cur ? p->cur->keep_alive : !p->closed;

        httpreq_request_free(p->cur);
        p->cur = NULL;
        p->ready = false;
        p->in_message = false;
        p->headers_done = false;
        p->msg_start = p->consumed;
        if (!keep_alive)
            p->closed = true;
        else
            llhttp_resume(&p->parser);
    }
    if (p->closed) {
        p->in_off = 0;
        buf_clear(&p->in);
        return HTTPREQ_NEED_MORE;
    }
    /* Resuming after the head must run llhttp even without input: a request without a body
     * completes right there. */
    resumed_head = p->paused_headers;
    if (p->paused_headers) {
        p->paused_headers = false;
        llhttp_resume(&p->parser);
    }

    n = p->in.len - p->in_off;
    base = n > 0 ? p->in.data + p->in_off : "";
    if (n == 0 && !resumed_head)
        return HTTPREQ_NEED_MORE;
    p->exec_base = base;
    p->exec_abs = p->consumed;
    err = llhttp_execute(&p->parser, base, n);
    switch (err) {
    case HPE_OK:
        consume(p, n);
        if (!p->headers_done && p->consumed - p->msg_start > p->limits.max_header_bytes) {
            fail(p, 431, "request head exceeds %zu bytes", p->limits.max_header_bytes);
            return HTTPREQ_ERROR;
        }
        return HTTPREQ_NEED_MORE;
    case HPE_PAUSED:
        consume(p, (size_t)(llhttp_get_error_pos(&p->parser) - base));
        if (p->ready)
            return HTTPREQ_REQUEST_READY;
        if (p->paused_headers)
            return HTTPREQ_HEADERS_READY;
        fail(p, 400, "malformed request: parser paused unexpectedly");
        return HTTPREQ_ERROR;
    default:
        return parse_error(p, err);
    }
}

const struct httpreq_request *httpreq_current(const struct httpreq *p)
{
    if (p->err_status != 0 || !p->in_message || !p->headers_done)
        return NULL;
    return p->cur;
}

struct httpreq_request *httpreq_take(struct httpreq *p)
{
    struct httpreq_request *r;

    if (!p->ready || p->cur == NULL)
        return NULL;
    r = p->cur;
    p->cur = NULL;
    /* Remember the connection's fate for the next step. */
    if (!r->keep_alive)
        p->closed = true;
    return r;
}

int httpreq_error_status(const struct httpreq *p)
{
    return p->err_status;
}

const char *httpreq_error_message(const struct httpreq *p)
{
    return p->err_msg;
}

size_t httpreq_pending_bytes(const struct httpreq *p)
{
    return p->in.len - p->in_off;
}

size_t httpreq_held_bytes(const struct httpreq *p)
{
    return p->in.len + p->body.len;
}

enum httpreq_phase httpreq_phase(const struct httpreq *p)
{
    if (p->err_status != 0 || p->closed || p->ready)
        return HTTPREQ_PHASE_DONE;
    if (p->in_message && p->headers_done)
        return HTTPREQ_PHASE_BODY;
    if (p->in_message || p->consumed > p->msg_start)
        return HTTPREQ_PHASE_HEAD;
    return HTTPREQ_PHASE_IDLE;
}

const char *httpreq_request_header(const struct httpreq_request *r, const char *name)
{
    for (size_t i = 0; i < r->header_count; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    }
    return NULL;
}

void httpreq_request_free(struct httpreq_request *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->header_count; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r->target);
    free(r->path);
    free(r->query);
    free(r->body);
    free(r);
}

const char *httpreq_reason_phrase(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 425:
        return "Too Early";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}
