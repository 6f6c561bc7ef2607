/* Fuzz target for the HTTP server's whole request path: the input goes in over a real loopback
 * connection, in input-chosen pieces, to httpd on its own loop, whose handler answers at once,
 * late (from a timer), with an error, without a body or with a large one; the answers are read
 * until the server closes or a bound passes. Every iteration starts and ends the server, and
 * its loop must then close with nothing left open. */
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "common.h"
#include "httpd.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One input never runs longer than this, whatever the server waits for. */
#define RUN_MAX_MS 300
/* Server timeouts are short so that a client that stops sending costs milliseconds. */
#define TIMEOUT_MIN_MS   5
#define LARGE_BODY_BYTES (48 * 1024)

/* Input layout: byte 0 seeds the piece sizes, byte 1 picks the client's behaviour and the
 * handler's answers, byte 2 the server's limits; the rest is what the client sends. */
enum {
    FLAG_HALF_CLOSE = 1 << 0, /* shut the write side down once everything is sent */
    FLAG_ABORT_EARLY = 1 << 1 /* close as soon as the first answer byte arrives */
};
#define INPUT_PREFIX_BYTES 3

struct run {
    uv_loop_t loop;
    struct httpd *h;
    uv_tcp_t client;
    uv_connect_t connect;
    uv_shutdown_t shutdown;
    uv_timer_t bound;
    uv_idle_t pump; /* writes one piece per loop turn, so the server reads in pieces too */
    const uint8_t *in;
    size_t len, off;
    uint32_t seed;
    uint8_t flags, answer_mode;
    size_t max_body_bytes;
    unsigned handled;
    char head[9]; /* first bytes of what the server wrote */
    size_t got;
    bool finishing, server_done;
};

struct late {
    uv_timer_t timer;
    struct httpd_request *req;
    int status;
};

static char large_body[LARGE_BODY_BYTES];

static void finish(struct run *r);

static void observe(const char *path, int status, double seconds)
{
    if (path == NULL || status < 100 || status > 599 || seconds < 0)
        abort();
}

static void answer_echo(struct httpd_request *req, int status)
{
    char body[160];
    size_t len;
    int n;

    (void)httpd_request_body(req, &len);
    n = snprintf(body, sizeof(body), "%.16s %.64s %zu %.32s\n", httpd_request_method(req),
                 httpd_request_path(req), len, httpd_request_remote_addr(req));
    httpd_respond(req, status, "text/plain", "X-Echo: 1\r\n", body,
                  n < 0                      ? 0
                  : (size_t)n < sizeof(body) ? (size_t)n
                                             : sizeof(body) - 1);
}

static void late_closed(uv_handle_t *t)
{
    free(container_of((uv_timer_t *)t, struct late, timer));
}

static void late_fire(uv_timer_t *t)
{
    struct late *l = container_of(t, struct late, timer);

    answer_echo(l->req, l->status);
    uv_close((uv_handle_t *)t, late_closed);
}

static void check_request(const struct run *r, const struct httpd_request *req)
{
    size_t len = 0;
    const char *body = httpd_request_body(req, &len);

    if (httpd_request_method(req) == NULL || httpd_request_path(req) == NULL ||
        httpd_request_query(req) == NULL || httpd_request_remote_addr(req) == NULL ||
        httpd_request_peer(req) == NULL || body == NULL)
        abort();
    if (len > r->max_body_bytes || body[len] != '\0')
        abort();
}

static void handler(struct httpd_request *req, void *arg)
{
    struct run *r = arg;
    struct late *l;

    check_request(r, req);
    switch ((r->answer_mode + r->handled++) % 6) {
    case 0:
        answer_echo(req, 200);
        return;
    case 1:
        httpd_respond_error(req, r->handled % 2 ? 400 : 503, "bad_request", "no \"thanks\"",
                            r->handled % 2 ? NULL : "Retry-After: 1\r\n");
        return;
    case 2:
    case 3:
        l = xcalloc(1, sizeof(*l));
        l->req = req;
        l->status = r->handled % 3 ? 200 : 202;
        uv_timer_init(&r->loop, &l->timer);
        uv_timer_start(&l->timer, late_fire, r->handled % 3, 0);
        return;
    case 4:
        httpd_respond(req, 204, NULL, "X-Empty: yes\r\n", NULL, 0);
        return;
    default:
        httpd_respond(req, 200, "application/octet-stream", NULL, large_body, sizeof(large_body));
        return;
    }
}

/* Refuses every path that starts with "/r" from its head: its body is never read. */
static bool admit(struct httpd_request *head, void *arg)
{
    struct run *r = arg;

    check_request(r, head);
    if (strncmp(httpd_request_path(head), "/r", 2) != 0)
        return true;
    httpd_respond_error(head, 403, "forbidden", "refused from the head", NULL);
    return false;
}

static size_t next_piece(struct run *r)
{
    if (r->seed == 1)
        return r->len - r->off; /* seed byte 0: everything at once */
    r->seed = r->seed * 1103515245u + 12345u;
    return 1 + (r->seed >> 16) % 211;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status;
}

static void pump(uv_idle_t *idle)
{
    struct run *r = container_of(idle, struct run, pump);
    size_t piece = next_piece(r);
    uv_buf_t buf;
    int n;

    if (piece > r->len - r->off)
        piece = r->len - r->off;
    buf = uv_buf_init((char *)r->in + r->off, (unsigned)piece);
    n = piece ? uv_try_write((uv_stream_t *)&r->client, &buf, 1) : 0;
    if (n > 0)
        r->off += (size_t)n;
    else if (n < 0 && n != UV_EAGAIN)
        r->off = r->len; /* the server closed: nothing more can be sent */
    if (r->off < r->len)
        return;
    uv_idle_stop(idle);
    if ((r->flags & FLAG_HALF_CLOSE) &&
        uv_shutdown(&r->shutdown, (uv_stream_t *)&r->client, on_shutdown) != 0)
        finish(r);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    static char readbuf[64 * 1024];

    (void)handle;
    (void)suggested;
    *buf = uv_buf_init(readbuf, sizeof(readbuf));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct run *r = container_of((uv_tcp_t *)stream, struct run, client);

    if (nread < 0) {
        finish(r);
        return;
    }
    for (ssize_t i = 0; i < nread && r->got < sizeof(r->head); i++)
        r->head[r->got++] = buf->base[i];
    /* Whatever the input, the server only ever writes HTTP/1.1 responses. */
    if (r->got > 0 && memcmp(r->head, "HTTP/1.1 ", r->got) != 0)
        abort();
    if (nread > 0 && (r->flags & FLAG_ABORT_EARLY))
        finish(r);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct run *r = container_of(req, struct run, connect);

    if (status < 0 || r->finishing) {
        finish(r);
        return;
    }
    uv_read_start((uv_stream_t *)&r->client, on_alloc, on_read);
    uv_idle_start(&r->pump, pump);
}

static void on_bound(uv_timer_t *t)
{
    finish(container_of(t, struct run, bound));
}

static void server_closed(void *arg)
{
    ((struct run *)arg)->server_done = true;
}

/* Ends the input: the client goes, then the server; the loop then runs until all is closed. */
static void finish(struct run *r)
{
    if (r->finishing)
        return;
    r->finishing = true;
    uv_close((uv_handle_t *)&r->pump, NULL);
    uv_close((uv_handle_t *)&r->bound, NULL);
    uv_close((uv_handle_t *)&r->client, NULL);
    httpd_close(r->h, server_closed, r);
}

static void run_config(struct httpd_config *cfg, uint8_t limits)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "127.0.0.1";
    cfg->port = 0;
    cfg->max_header_bytes = limits & 1 ? 96 + (size_t)(limits >> 1) * 16 : 0;
    cfg->max_body_bytes = limits & 2 ? (size_t)(limits >> 2) * 8 : 0;
    if (cfg->max_body_bytes == 0)
        cfg->max_body_bytes = 1 << 20;
    cfg->header_timeout_ms = TIMEOUT_MIN_MS + (limits >> 4);
    cfg->idle_timeout_ms = TIMEOUT_MIN_MS + (limits & 15);
    cfg->body_timeout_ms = TIMEOUT_MIN_MS + (limits >> 5);
    cfg->max_connections = 4;
    /* Sometimes a budget small enough that bodies meet it. */
    cfg->max_buffered_bytes = limits & 4 ? 64 + (size_t)(limits >> 3) * 64 : 0;
    cfg->admit_cb = admit;
    cfg->observe_cb = observe;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    struct run r;
    struct httpd_config cfg;
    struct sockaddr_in addr;
    char err[256];

    if (!ready) {
        /* A write to a connection the server closed must fail, not end the process. */
        (void)signal(SIGPIPE, SIG_IGN);
        log_set_level(LOG_ERROR);
        memset(large_body, 'b', sizeof(large_body));
        ready = true;
    }
    if (size < INPUT_PREFIX_BYTES)
        return 0;
    memset(&r, 0, sizeof(r));
    r.seed = data[0] + 1u;
    r.flags = data[1];
    r.answer_mode = (uint8_t)(data[1] >> 2);
    r.in = data + INPUT_PREFIX_BYTES;
    r.len = size - INPUT_PREFIX_BYTES;
    run_config(&cfg, data[2]);
    r.max_body_bytes = cfg.max_body_bytes;
    if (uv_loop_init(&r.loop) != 0)
        abort();
    if (httpd_new(&r.h, &r.loop, &cfg, handler, &r, err, sizeof(err)) != 0) {
        fprintf(stderr, "httpd_fuzz: %s\n", err);
        abort(); /* the loopback port is the fuzzer's own: this is the harness failing */
    }
    uv_tcp_init(&r.loop, &r.client);
    uv_idle_init(&r.loop, &r.pump);
    uv_timer_init(&r.loop, &r.bound);
    uv_timer_start(&r.bound, on_bound, RUN_MAX_MS, 0);
    uv_ip4_addr("127.0.0.1", httpd_port(r.h), &addr);
    if (uv_tcp_connect(&r.connect, &r.client, (const struct sockaddr *)&addr, on_connect) != 0)
        finish(&r);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    /* The server must have closed every handle it had and freed itself. */
    if (!r.server_done || uv_loop_close(&r.loop) != 0)
        abort();
    return 0;
}
