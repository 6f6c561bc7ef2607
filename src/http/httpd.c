/* HTTP/1.1 server on libuv: one request at a time per connection (so pipelined responses
 * leave in order), timeouts per phase, lingering close after the last response. */
#include "httpd.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "buf.h"
#include "forwarded.h"
#include "httpreq.h"
#include "log.h"

#define HTTPD_READ_BUF_BYTES (64 * 1024)
#define HTTPD_BACKLOG        511
/* After the last response, unread input is drained this long so that closing does not reset
 * the connection (and destroy the response) while the client is still sending. */
#define HTTPD_LINGER_MS 2000
/* Connections over max_connections still get a 503, up to this many at once; past it they are
 * closed at once. */
#define HTTPD_REJECT_SLACK  64
#define HTTPD_RETRY_AFTER_S 1
/* A response's status line and the headers httpd writes; content types are short constants. */
#define HTTPD_MAX_HEAD_BYTES             1024
#define HTTPD_DEFAULT_MAX_BUFFERED_BYTES ((size_t)64 * 1024 * 1024)

enum conn_timer { TIMER_NONE, TIMER_HEAD, TIMER_BODY, TIMER_IDLE, TIMER_WRITE, TIMER_LINGER };

/* Where a connection stands with its PROXY protocol header. */
enum conn_proxy {
    PROXY_NONE, /* none expected, or already read */
    PROXY_WAIT, /* the header is still to come */
    PROXY_SKIP, /* decided; its TLVs (proxy_skip bytes) still to pass */
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    struct httpd *h;
    struct conn *prev, *next;
    struct httpreq *parser;
    struct httpd_request *inflight; /* handed to the handler, not yet responded to */
    enum conn_timer timer_kind;
    unsigned handles_open;
    unsigned writes;        /* uv_write requests not yet completed */
    unsigned long requests; /* requests handed to the handler so far */
    size_t reserved;        /* body bytes declared by the admitted request still arriving */
    size_t charge;          /* this connection's part of h->held_bytes */
    bool reading;
    bool response_pending; /* the response to the last request is still being written */
    bool close_after_write;
    bool peer_eof;
    bool lingering;
    bool closing;
    bool rejected;     /* over the connection limit: one 503, then close */
    bool discard_next; /* the request being parsed was refused from its head: drop it */
    enum conn_proxy proxy;
    size_t proxy_len;  /* bytes in proxy_buf */
    size_t proxy_skip; /* PROXY_SKIP: header bytes still to discard */
    unsigned char proxy_buf[FORWARDED_PROXY_MAX_BYTES];
    /* The connection's source: the TCP peer, or what its PROXY header said. */
    struct sockaddr_storage origin;
    char origin_addr[64];
    /* The client of the current request (origin, or what trusted proxies say); logs use it. */
    struct sockaddr_storage peer;
    char addr[64];
};

struct httpd_request {
    struct conn *c;
    struct httpreq_request *r; /* owned, or the parser's while head_only */
    uint64_t arrived_ns;       /* for observe_cb */
    bool head_only;            /* given to admit_cb: no body, r borrowed */
};

struct httpd {
    uv_loop_t *loop;
    uv_tcp_t listener;
    struct httpd_config cfg;
    char *host;
    httpd_handler_cb handler;
    void *arg;
    struct conn *conns;
    unsigned n_served;    /* connections counted against max_connections */
    unsigned n_rejecting; /* connections getting a 503 */
    size_t held_bytes;    /* request bytes held by every connection, see max_buffered_bytes */
    bool stopping;
    bool listener_open;
    httpd_done_cb done_cb;
    void *done_arg;
    char readbuf[HTTPD_READ_BUF_BYTES];
};

struct write_req {
    uv_write_t req;
    struct conn *c;
    bool response; /* a final response (not a 100 Continue) */
    size_t len;
    char data[];
};

static void conn_advance(struct conn *c);
static void conn_close(struct conn *c);
static void conn_read_start(struct conn *c);
static void conn_on_timer(uv_timer_t *t);

/* ---- connection bookkeeping --------------------------------------------------------------- */

/* The last handle of a closing server is gone: free it, then say so. */
static void httpd_maybe_done(struct httpd *h)
{
    httpd_done_cb cb = h->done_cb;
    void *arg = h->done_arg;

    if (!h->stopping || h->listener_open || h->conns != NULL)
        return;
    free(h->host);
    free(h);
    if (cb != NULL)
        cb(arg);
}

static void conn_handle_closed(uv_handle_t *handle)
{
    struct conn *c = handle->data;
    struct httpd *h = c->h;

    if (--c->handles_open > 0)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->rejected)
        h->n_rejecting--;
    else
        h->n_served--;
    h->held_bytes -= c->charge;
    httpreq_free(c->parser);
    free(c);
    httpd_maybe_done(h);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    if (c->inflight != NULL) {
        /* The handler still owns a request on this connection: close once it responds. */
        c->close_after_write = true;
        return;
    }
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static uint64_t timer_ms(const struct conn *c, enum conn_timer kind)
{
    const struct httpd_config *cfg = &c->h->cfg;

    switch (kind) {
    case TIMER_HEAD:
        return cfg->header_timeout_ms;
    case TIMER_BODY:
        return cfg->body_timeout_ms;
    case TIMER_IDLE:
    case TIMER_WRITE:
        return cfg->idle_timeout_ms;
    case TIMER_LINGER:
        return HTTPD_LINGER_MS;
    case TIMER_NONE:
        break;
    }
    return 0;
}

/* Starts the timer of kind unless it already runs: a deadline is not pushed back by each read,
 * or a client sending one byte at a time would never time out. */
static void conn_timer_set(struct conn *c, enum conn_timer kind)
{
    if (c->closing || kind == c->timer_kind)
        return;
    c->timer_kind = kind;
    if (kind == TIMER_NONE)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, conn_on_timer, timer_ms(c, kind), 0);
}

/* ---- memory ------------------------------------------------------------------------------- */

/* Brings h->held_bytes up to date with what c holds now: its parser's input and body and the
 * body of its request in flight, or what its admitted request declared, whichever is more. */
static void conn_account(struct conn *c)
{
    size_t held = c->parser != NULL ? httpreq_held_bytes(c->parser) : 0;

    if (c->inflight != NULL)
        held += c->inflight->r->body_len;
    if (held < c->reserved)
        held = c->reserved;
    c->h->held_bytes = c->h->held_bytes - c->charge + held;
    c->charge = held;
}

/* Every connection together holds more than the budget, and c more than it was admitted
 * with: c is the one asking for memory that is not there. */
static bool conn_over_budget(const struct conn *c)
{
    return c->h->held_bytes > c->h->cfg.max_buffered_bytes && c->charge > c->reserved;
}

/* ---- writing ------------------------------------------------------------------------------ */

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;

    if (status < 0 || c->peer_eof) {
        conn_close(c);
        return;
    }
    c->lingering = true;
    conn_timer_set(c, TIMER_LINGER);
    conn_read_start(c); /* the client's close ends the linger early */
}

static void conn_linger(struct conn *c)
{
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
        conn_close(c);
}

/* The connection's source is the current request's client: between requests, and when what
 * trusted proxies said of it was refused. */
static void conn_client_reset(struct conn *c)
{
    c->peer = c->origin;
    memcpy(c->addr, c->origin_addr, sizeof(c->addr));
}

static void on_write(uv_write_t *req, int status)
{
    struct write_req *w = container_of(req, struct write_req, req);
    struct conn *c = w->c;
    bool response = w->response;

    free(w);
    c->writes--;
    if (c->closing)
        return;
    if (status < 0) {
        log_debug("http_write_failed", "peer=%s %s", c->addr, uv_strerror(status));
        c->close_after_write = false;
        c->response_pending = false;
        conn_close(c);
        return;
    }
    if (!response)
        return;
    c->response_pending = false;
    conn_client_reset(c); /* until the next head says otherwise */
    if (c->close_after_write) {
        conn_timer_set(c, TIMER_NONE);
        conn_linger(c);
        return;
    }
    if (c->h->stopping) {
        conn_close(c);
        return;
    }
    conn_advance(c);
}

/* Queues len bytes (copied). A response stops the connection from taking the next request
 * until it is written. */
static void conn_write(struct conn *c, const char *data, size_t len, bool response)
{
    struct write_req *w = xmalloc(sizeof(*w) + len);
    uv_buf_t buf;

    w->c = c;
    w->response = response;
    w->len = len;
    memcpy(w->data, data, len);
    buf = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write) != 0) {
        free(w);
        c->response_pending = false;
        conn_close(c);
        return;
    }
    c->writes++;
    if (response) {
        c->response_pending = true;
        conn_timer_set(c, TIMER_WRITE);
    }
}

/* Header text from a handler must be whole "Name: value\r\n" lines, nothing else. */
static bool headers_ok(const char *s)
{
    const char *p = s;

    while (*p) {
        const char *eol = strstr(p, "\r\n");
        const char *colon;

        if (eol == NULL || eol == p)
            return false;
        colon = memchr(p, ':', (size_t)(eol - p));
        if (colon == NULL || colon == p)
            return false;
        for (const char *q = p; q < eol; q++) {
            if (*q == '\r' || *q == '\n')
                return false;
        }
        p = eol + 2;
    }
    return true;
}

static bool token_ok(const char *s)
{
    return strpbrk(s, "\r\n") == NULL;
}

static bool body_allowed(int status)
{
    return !(status < 200 || status == 204 || status == 304);
}

/* Builds and queues a whole response; the connection closes after it when keep_alive is off. */
static void conn_send_response(struct conn *c, int status, const char *content_type,
                               const char *extra_headers, const char *body, size_t len,
                               bool keep_alive, bool head)
{
    size_t extra = extra_headers != NULL ? strlen(extra_headers) : 0;
    struct buf out;

    if (!body_allowed(status))
        len = 0;
    buf_init(&out, HTTPD_MAX_HEAD_BYTES + extra + len);
    /* Content-Length is the body's even for HEAD, which then sends no body. */
    if (buf_addf(&out, "HTTP/1.1 %d %s\r\n", status, httpreq_reason_phrase(status)) != 0 ||
        (content_type != NULL && buf_addf(&out, "Content-Type: %s\r\n", content_type) != 0) ||
        (body_allowed(status) && buf_addf(&out, "Content-Length: %zu\r\n", len) != 0) ||
        buf_addf(&out, "Connection: %s\r\n", keep_alive ? "keep-alive" : "close") != 0 ||
        buf_add(&out, extra_headers, extra) != 0 || buf_add(&out, "\r\n", 2) != 0 ||
        buf_add(&out, body, head ? 0 : len) != 0)
        vr_panic("response head over %d bytes", HTTPD_MAX_HEAD_BYTES); /* short constants only */
    c->close_after_write = !keep_alive;
    conn_write(c, out.data, out.len, true);
    buf_free(&out);
}

static char *error_json(const char *code, const char *message)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(root, "error");
    char *s;

    cJSON_AddStringToObject(err, "code", code);
    cJSON_AddStringToObject(err, "message", message);
    s = vr_json_print(root);
    cJSON_Delete(root);
    return s;
}

static const char *error_code_for(int status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 408:
        return "request_timeout";
    case 411:
        return "length_required";
    case 413:
        return "body_too_large";
    case 417:
        return "expectation_failed";
    case 431:
        return "headers_too_large";
    case 503:
        return "overloaded";
    case 505:
        return "http_version_not_supported";
    default:
        return "error";
    }
}

/* A protocol-level error: answered, then the connection is closed. */
static void conn_fail(struct conn *c, int status, const char *message)
{
    char *body = error_json(error_code_for(status), message);
    char extra[64] = "";

    log_info("http_error", "peer=%s status=%d %s", c->addr, status, message);
    if (status == 503)
        snprintf(extra, sizeof(extra), "Retry-After: %d\r\n", HTTPD_RETRY_AFTER_S);
    conn_send_response(c, status, "application/json", extra, body, strlen(body), false, false);
    free(body);
}

/* ---- reading ------------------------------------------------------------------------------ */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = handle->data;

    (void)suggested;
    /* One buffer serves every connection: each read is copied into its parser at once. */
    *buf = uv_buf_init(c->h->readbuf, sizeof(c->h->readbuf));
}

static void conn_read_stop(struct conn *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* Hands len bytes of request input to the parser; false after failing the connection. */
static bool conn_feed(struct conn *c, const char *data, size_t len)
{
    if (len > 0 && httpreq_feed(c->parser, data, len) != 0) {
        /* Reading stops while a request is handled, so this takes a misbehaving client. */
        conn_read_stop(c);
        conn_fail(c, 431, "too much unparsed input");
        return false;
    }
    return true;
}

/* The PROXY header has been decided: its source, unless it keeps the peer, is the
 * connection's from now on. */
static void conn_proxy_apply(struct conn *c, const struct forwarded_proxy *pp)
{
    if (pp->keep_peer) {
        log_debug("proxy_header", "peer=%s v%d: the proxy's own connection", c->origin_addr,
                  pp->version);
        return;
    }
    c->origin = pp->source;
    c->peer = pp->source;
    forwarded_addr_name((const struct sockaddr *)&c->origin, c->addr, sizeof(c->addr));
    log_debug("proxy_header", "peer=%s v%d: client %s", c->origin_addr, pp->version, c->addr);
    memcpy(c->origin_addr, c->addr, sizeof(c->addr));
}

/* Takes the PROXY header off the front of the input: *data and *len are moved past what it
 * used (what follows is HTTP). Returns false once the connection is being closed. */
static bool conn_proxy_input(struct conn *c, const char **data, size_t *len)
{
    struct forwarded_proxy pp;
    size_t take;
    char err[128];

    if (c->proxy == PROXY_WAIT) {
        take = sizeof(c->proxy_buf) - c->proxy_len;
        take = take < *len ? take : *len;
        memcpy(c->proxy_buf + c->proxy_len, *data, take);
        c->proxy_len += take;
        *data += take;
        *len -= take;
        switch (forwarded_proxy_parse(c->proxy_buf, c->proxy_len, &pp, err, sizeof(err))) {
        case FORWARDED_PROXY_NEED_MORE:
            if (*len == 0)
                return true;
            /* proxy_buf full and still undecided: the parser broke its bound. */
            snprintf(err, sizeof(err), "undecided after %zu bytes", c->proxy_len);
            /* fall through */
        case FORWARDED_PROXY_BAD:
            log_warn("proxy_header_refused", "peer=%s: %s", c->origin_addr, err);
            conn_read_stop(c);
            conn_close(c);
            return false;
        case FORWARDED_PROXY_DONE:
            break;
        }
        conn_proxy_apply(c, &pp);
        c->proxy = PROXY_SKIP;
        if (pp.header_bytes <= c->proxy_len) {
            /* What came after the header in the same reads is the start of a request. */
            if (!conn_feed(c, (const char *)c->proxy_buf + pp.header_bytes,
                           c->proxy_len - pp.header_bytes))
                return false;
            c->proxy_skip = 0;
        } else {
            c->proxy_skip = pp.header_bytes - c->proxy_len;
        }
    }
    take = c->proxy_skip < *len ? c->proxy_skip : *len;
    c->proxy_skip -= take;
    *data += take;
    *len -= take;
    if (c->proxy_skip == 0)
        c->proxy = PROXY_NONE;
    return true;
}

/* The client's end of the stream (nread UV_EOF) or a read error. */
static void conn_read_ended(struct conn *c, ssize_t nread)
{
    conn_read_stop(c);
    if (c->proxy != PROXY_NONE)
        log_info("proxy_header_missing", "peer=%s: connection ended before its PROXY header",
                 c->origin_addr);
    if (nread != UV_EOF) {
        log_debug("http_read_failed", "peer=%s %s", c->addr, uv_strerror((int)nread));
        c->close_after_write = false;
        if (c->writes == 0)
            conn_close(c);
        else
            c->close_after_write = true;
        return;
    }
    c->peer_eof = true;
    if (c->lingering || (!c->response_pending && c->inflight == NULL))
        conn_close(c);
    /* Otherwise a half-closed client still gets its response, then the close. */
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = stream->data;
    const char *data = c->h->readbuf;
    size_t len = nread > 0 ? (size_t)nread : 0;

    (void)buf;
    if (nread == 0)
        return;
    if (nread < 0) {
        conn_read_ended(c, nread);
        return;
    }
    if (c->lingering || c->rejected)
        return;
    if (c->proxy != PROXY_NONE && !conn_proxy_input(c, &data, &len))
        return;
    if (!conn_feed(c, data, len))
        return;
    conn_account(c);
    if (conn_over_budget(c)) {
        conn_read_stop(c);
        conn_fail(c, 503, "too many request bytes held; retry later");
        return;
    }
    conn_advance(c);
}

static void conn_read_start(struct conn *c)
{
    if (c->reading || c->peer_eof || c->closing)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
    else
        conn_close(c);
}

static void conn_dispatch(struct conn *c, struct httpreq_request *r)
{
    struct httpd_request *req = xcalloc(1, sizeof(*req));

    req->c = c;
    req->r = r;
    req->arrived_ns = uv_hrtime();
    c->inflight = req;
    c->reserved = 0;
    conn_account(c);
    c->requests++;
    conn_read_stop(c);
    conn_timer_set(c, TIMER_NONE);
    c->h->handler(req, c->h->arg);
}

/* The client of the request whose head is r, from the connection's origin and what trusted
 * proxies say; false once a malformed X-Forwarded-For has been answered with 400. */
static bool conn_client(struct conn *c, const struct httpreq_request *r)
{
    char err[160];

    if (forwarded_client((const struct sockaddr *)&c->origin, c->h->cfg.trusted_proxies, r->headers,
                         r->header_count, &c->peer, err, sizeof(err)) != 0) {
        conn_client_reset(c);
        conn_read_stop(c);
        conn_fail(c, 400, err);
        return false;
    }
    forwarded_addr_name((const struct sockaddr *)&c->peer, c->addr, sizeof(c->addr));
    return true;
}

/* Decides on a request whose head is complete, before its body: its client, the memory
 * budget, then admit_cb. Returns false when the request has been answered: its body will not
 * be read. */
static bool conn_admit(struct conn *c)
{
    const struct httpreq_request *r = httpreq_current(c->parser);
    struct httpd *h = c->h;
    size_t need = r->content_length > 0 ? (size_t)r->content_length : 0;
    struct httpd_request head;

    if (!conn_client(c, r))
        return false;
    if (need < c->charge)
        need = c->charge;
    if (h->held_bytes - c->charge + need > h->cfg.max_buffered_bytes) {
        conn_read_stop(c);
        conn_fail(c, 503, "too many request bytes held; retry later");
        return false;
    }
    if (h->cfg.admit_cb != NULL) {
        memset(&head, 0, sizeof(head));
        head.c = c;
        head.r = (struct httpreq_request *)r; /* borrowed: httpd_respond leaves it alone */
        head.arrived_ns = uv_hrtime();
        head.head_only = true;
        if (!h->cfg.admit_cb(&head, h->arg)) {
            conn_read_stop(c);
            if (!c->response_pending && !c->closing)
                conn_fail(c, 500, "request refused without an answer");
            return false;
        }
    }
    c->reserved = need;
    conn_account(c);
    if (r->expect_continue && httpreq_pending_bytes(c->parser) == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        conn_write(c, cont, sizeof(cont) - 1, false);
    }
    return true;
}

/* Parses what has arrived and hands out the next request, as long as none is in flight. */
static void conn_advance(struct conn *c)
{
    for (;;) {
        enum httpreq_event ev;

        if (c->closing || c->inflight != NULL || c->response_pending || c->close_after_write)
            return;
        ev = httpreq_step(c->parser);
        conn_account(c);
        switch (ev) {
        case HTTPREQ_NEED_MORE:
            if (c->peer_eof) {
                conn_close(c); /* the client stopped sending mid-request, or after the last */
                return;
            }
            switch (httpreq_phase(c->parser)) {
            case HTTPREQ_PHASE_IDLE:
                conn_timer_set(c, c->requests == 0 ? TIMER_HEAD : TIMER_IDLE);
                break;
            case HTTPREQ_PHASE_HEAD:
                conn_timer_set(c, TIMER_HEAD);
                break;
            case HTTPREQ_PHASE_BODY:
                conn_timer_set(c, TIMER_BODY);
                break;
            case HTTPREQ_PHASE_DONE:
                conn_close(c);
                return;
            }
            conn_read_start(c);
            return;
        case HTTPREQ_HEADERS_READY:
            conn_timer_set(c, TIMER_BODY);
            if (!conn_admit(c))
                return;
            break;
        case HTTPREQ_REQUEST_READY:
            if (c->discard_next) {
                c->discard_next = false;
                c->requests++; /* the next wait is a keep-alive one */
                httpreq_request_free(httpreq_take(c->parser));
                break;
            }
            conn_dispatch(c, httpreq_take(c->parser));
            return;
        case HTTPREQ_ERROR:
            conn_read_stop(c);
            conn_fail(c, httpreq_error_status(c->parser), httpreq_error_message(c->parser));
            return;
        }
    }
}

static void conn_on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    enum conn_timer kind = c->timer_kind;

    c->timer_kind = TIMER_NONE;
    switch (kind) {
    case TIMER_HEAD:
    case TIMER_BODY:
        if (c->proxy != PROXY_NONE) {
            log_warn("proxy_header_refused", "peer=%s: no whole PROXY header within %llu ms",
                     c->origin_addr, (unsigned long long)c->h->cfg.header_timeout_ms);
            conn_close(c);
            return;
        }
        if (httpreq_phase(c->parser) == HTTPREQ_PHASE_IDLE) {
            conn_close(c); /* opened and never used: nothing to answer */
            return;
        }
        conn_read_stop(c);
        conn_fail(c, 408,
                  kind == TIMER_HEAD ? "request head not received in time"
                                     : "request body not received in time");
        return;
    case TIMER_IDLE:
    case TIMER_WRITE:
    case TIMER_LINGER:
        conn_close(c);
        return;
    case TIMER_NONE:
        return;
    }
}

/* ---- accepting ---------------------------------------------------------------------------- */

/* The TCP peer, a v4-mapped one as the IPv4 address it is; "unknown" when it cannot be had. */
static void peer_name(struct conn *c)
{
    int len = sizeof(c->peer);

    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &len) != 0)
        memset(&c->peer, 0, sizeof(c->peer));
    forwarded_addr_unmap(&c->peer);
    forwarded_addr_name((const struct sockaddr *)&c->peer, c->addr, sizeof(c->addr));
}

static void on_connection(uv_stream_t *server, int status)
{
    struct httpd *h = server->data;
    struct conn *c;

    if (status < 0) {
        log_warn("http_accept_failed", "%s", uv_strerror(status));
        return;
    }
    c = xcalloc(1, sizeof(*c));
    c->h = h;
    uv_tcp_init(h->loop, &c->tcp);
    uv_timer_init(h->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    c->next = h->conns;
    if (h->conns)
        h->conns->prev = c;
    h->conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        h->n_served++;
        conn_close(c);
        return;
    }
    peer_name(c);
    c->origin = c->peer;
    memcpy(c->origin_addr, c->addr, sizeof(c->addr));
    uv_tcp_nodelay(&c->tcp, 1);
    if (h->n_served >= h->cfg.max_connections) {
        c->rejected = true;
        h->n_rejecting++;
        if (h->n_rejecting > HTTPD_REJECT_SLACK) {
            conn_close(c);
            return;
        }
        conn_timer_set(c, TIMER_WRITE);
        conn_read_start(c);
        conn_fail(c, 503, "too many connections; retry later");
        return;
    }
    h->n_served++;
    if (h->cfg.proxy_protocol && acl_allows(h->cfg.trusted_proxies, (struct sockaddr *)&c->peer))
        c->proxy = PROXY_WAIT;
    c->parser = httpreq_new(&(struct httpreq_limits){
        .max_header_bytes = h->cfg.max_header_bytes,
        .max_body_bytes = h->cfg.max_body_bytes,
    });
    conn_advance(c);
}

/* ---- public API --------------------------------------------------------------------------- */

static void listener_closed(uv_handle_t *handle)
{
    struct httpd *h = handle->data;

    h->listener_open = false;
    httpd_maybe_done(h);
}

static void failed_listener_closed(uv_handle_t *handle)
{
    struct httpd *h = handle->data;

    free(h->host);
    free(h);
}

static void config_defaults(struct httpd_config *cfg)
{
    VR_DEFAULT(cfg->max_header_bytes, HTTPREQ_DEFAULT_MAX_HEADER_BYTES);
    VR_DEFAULT(cfg->max_body_bytes, HTTPREQ_DEFAULT_MAX_BODY_BYTES);
    VR_DEFAULT(cfg->header_timeout_ms, 10000);
    VR_DEFAULT(cfg->idle_timeout_ms, 60000);
    VR_DEFAULT(cfg->max_connections, 1024);
    VR_DEFAULT(cfg->body_timeout_ms, cfg->header_timeout_ms);
    VR_DEFAULT(cfg->max_buffered_bytes, HTTPD_DEFAULT_MAX_BUFFERED_BYTES);
}

int httpd_new(struct httpd **out, uv_loop_t *loop, const struct httpd_config *cfg,
              httpd_handler_cb handler, void *arg, char *err, size_t errlen)
{
    struct sockaddr_storage addr;
    struct httpd *h;
    int r;

    *out = NULL;
    if (cfg->host == NULL || cfg->port < 0 || cfg->port > 65535 ||
        (uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&addr) != 0 &&
         uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&addr) != 0)) {
        snprintf(err, errlen, "\"%s\" port %d is not a numeric IP address and port",
                 cfg->host ? cfg->host : "", cfg->port);
        return VR_EINVAL;
    }
    h = xcalloc(1, sizeof(*h));
    h->loop = loop;
    h->cfg = *cfg;
    h->host = xstrdup(cfg->host);
    h->cfg.host = h->host;
    h->handler = handler;
    h->arg = arg;
    config_defaults(&h->cfg);
    uv_tcp_init(loop, &h->listener);
    h->listener.data = h;
    h->listener_open = true;
    if ((r = uv_tcp_bind(&h->listener, (const struct sockaddr *)&addr, 0)) != 0 ||
        (r = uv_listen((uv_stream_t *)&h->listener, HTTPD_BACKLOG, on_connection)) != 0) {
        snprintf(err, errlen, "cannot listen on %s port %d: %s", cfg->host, cfg->port,
                 uv_strerror(r));
        uv_close((uv_handle_t *)&h->listener, failed_listener_closed);
        return VR_EIO;
    }
    *out = h;
    return 0;
}

int httpd_port(const struct httpd *h)
{
    struct sockaddr_storage addr;
    int len = sizeof(addr);

    if (uv_tcp_getsockname(&h->listener, (struct sockaddr *)&addr, &len) != 0)
        return -1;
    if (addr.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&addr)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
}

const char *httpd_request_method(const struct httpd_request *req)
{
    return req->r->method;
}

const char *httpd_request_path(const struct httpd_request *req)
{
    return req->r->path;
}

const char *httpd_request_query(const struct httpd_request *req)
{
    return req->r->query;
}

const char *httpd_request_header(const struct httpd_request *req, const char *name)
{
    return httpreq_request_header(req->r, name);
}

const char *httpd_request_body(const struct httpd_request *req, size_t *len)
{
    if (len != NULL)
        *len = req->head_only ? 0 : req->r->body_len;
    return req->head_only ? "" : req->r->body;
}

const char *httpd_request_remote_addr(const struct httpd_request *req)
{
    return req->c->addr;
}

const struct sockaddr *httpd_request_peer(const struct httpd_request *req)
{
    return (const struct sockaddr *)&req->c->peer;
}

void httpd_respond(struct httpd_request *req, int status, const char *content_type,
                   const char *extra_headers, const char *body, size_t len)
{
    struct conn *c = req->c;
    bool keep_alive, head;

    if (status < 200 || status > 599 || (content_type != NULL && !token_ok(content_type)) ||
        (extra_headers != NULL && !headers_ok(extra_headers))) {
        log_error("http_bad_response", "handler produced an invalid response (status %d)", status);
        status = 500;
        content_type = "application/json";
        extra_headers = NULL;
        body = "{\"error\":{\"code\":\"internal\",\"message\":\"internal error\"}}";
        len = strlen(body);
    }
    if (c->h->cfg.observe_cb != NULL)
        c->h->cfg.observe_cb(req->r->path, status, (double)(uv_hrtime() - req->arrived_ns) / 1e9);
    /* A request refused from its head with a body leaves that body unread on the wire:
     * nothing after it on this connection can be found, so the connection ends with the
     * answer. Without a body the connection goes on once the request is dropped. */
    keep_alive = req->r->keep_alive && (!req->head_only || req->r->content_length == 0) &&
                 !c->h->stopping && !c->peer_eof && !c->close_after_write;
    if (req->head_only && keep_alive)
        c->discard_next = true;
    head = strcmp(req->r->method, "HEAD") == 0;
    if (!req->head_only) {
        httpreq_request_free(req->r);
        free(req);
        c->inflight = NULL;
        conn_account(c);
    }
    if (c->closing)
        return;
    conn_send_response(c, status, content_type, extra_headers, body, len, keep_alive, head);
}

void httpd_respond_error(struct httpd_request *req, int status, const char *code,
                         const char *message, const char *extra_headers)
{
    char *body = error_json(code, message);

    httpd_respond(req, status, "application/json", extra_headers, body, strlen(body));
    free(body);
}

void httpd_close(struct httpd *h, httpd_done_cb done_cb, void *arg)
{
    struct conn *c, *next;

    h->stopping = true;
    h->done_cb = done_cb;
    h->done_arg = arg;
    uv_close((uv_handle_t *)&h->listener, listener_closed);
    for (c = h->conns; c != NULL; c = next) {
        next = c->next;
        /* A request in flight is answered first (its response says Connection: close). */
        if (c->inflight == NULL && !c->response_pending)
            conn_close(c);
    }
}
