/* libcurl multi on libuv: one uv_poll_t per socket curl asks for, one uv_timer_t for curl's
 * timeout, results delivered after curl has returned. */
#include "httpc.h"

#include <assert.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <uv.h>

#include "buf.h"
#include "utf8.h"

#define DEFAULT_TIMEOUT_MS         10000
#define DEFAULT_CONNECT_TIMEOUT_MS 3000
#define DEFAULT_MAX_RESPONSE_BYTES ((size_t)4 << 20)

struct httpc_req {
    struct httpc *c;
    struct httpc_req *prev, *next;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    struct buf resp;
    bool too_big;
    httpc_cb cb;
    void *arg;
    char curl_err[CURL_ERROR_SIZE];
};

/* One socket curl wants watched; freed in its close callback only. */
struct sock_ctx {
    uv_poll_t poll;
    struct httpc *c;
    curl_socket_t fd;
};

struct httpc {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    uint64_t timeout_ms;
    uint64_t connect_timeout_ms;
    size_t max_response_bytes;
    char *user_agent;
    struct httpc_req *reqs; /* in flight */
    unsigned handles_open;
    bool closing;
    void (*done_cb)(void *arg);
    void *done_arg;
};

static void check_multi_info(struct httpc *c);

/* ---- requests ----------------------------------------------------------------------------- */

static void req_free(struct httpc_req *r)
{
    if (r->easy != NULL)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->body);
    buf_free(&r->resp);
    free(r);
}

static void req_unlink(struct httpc_req *r)
{
    struct httpc *c = r->c;

    if (r->prev)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void req_finish(struct httpc_req *r, CURLcode result)
{
    struct httpc_response rep;
    curl_off_t retry_after = 0;

    memset(&rep, 0, sizeof(rep));
    rep.body = r->resp.data ? r->resp.data : "";
    rep.body_len = r->resp.len;
    rep.retry_after_s = -1;
    if (result == CURLE_OK) {
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &rep.http_status);
        if (curl_easy_getinfo(r->easy, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK &&
            retry_after > 0)
            rep.retry_after_s = retry_after > LONG_MAX ? LONG_MAX : (long)retry_after;
    } else if (r->too_big) {
        rep.status = VR_ETOOBIG;
        snprintf(rep.error, sizeof(rep.error), "answer larger than %zu bytes",
                 r->c->max_response_bytes);
    } else {
        const char *why = r->curl_err[0] ? r->curl_err : curl_easy_strerror(result);

        rep.status = result == CURLE_OPERATION_TIMEDOUT ? VR_ETIMEDOUT : VR_EIO;
        snprintf(rep.error, sizeof(rep.error), "%s%.*s",
                 result == CURLE_OPERATION_TIMEDOUT ? "timed out: " : "",
                 (int)utf8_cut(why, strlen(why), 200), why);
    }
    r->cb(&rep, r->arg);
}

static void req_fail_closed(struct httpc_req *r)
{
    struct httpc_response rep;

    memset(&rep, 0, sizeof(rep));
    rep.status = VR_ECLOSED;
    rep.body = "";
    rep.retry_after_s = -1;
    snprintf(rep.error, sizeof(rep.error), "client closed");
    r->cb(&rep, r->arg);
}

/* ---- curl's socket and timer callbacks ---------------------------------------------------- */

/* One handle fewer; after httpc_close, the last one frees the client and says so. */
static void handle_gone(struct httpc *c)
{
    void (*done_cb)(void *arg) = c->done_cb;
    void *done_arg = c->done_arg;

    if (--c->handles_open > 0 || !c->closing)
        return;
    free(c->user_agent);
    free(c);
    if (done_cb != NULL)
        done_cb(done_arg);
}

static void handle_closed(uv_handle_t *h)
{
    handle_gone(h->data);
}

static void sock_closed(uv_handle_t *h)
{
    struct sock_ctx *s = container_of((uv_poll_t *)h, struct sock_ctx, poll);
    struct httpc *c = s->c;

    free(s);
    handle_gone(c);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sock_ctx *s = container_of(h, struct sock_ctx, poll);
    struct httpc *c = s->c;
    int flags = 0, running;

    /* An error on the socket must reach curl, or the transfer would wait for its timeout. */
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(c->multi, s->fd, flags, &running);
    check_multi_info(c);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct httpc *c = userp;
    struct sock_ctx *s = socketp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, sock_closed);
            curl_multi_assign(c->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        /* While closing, curl may ask to watch cached connections one last time. */
        if (c->closing)
            return 0;
        s = xcalloc(1, sizeof(*s));
        s->c = c;
        s->fd = fd;
        if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        c->handles_open++;
        curl_multi_assign(c->multi, fd, s);
    }
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    return uv_poll_start(&s->poll, events, on_poll) == 0 ? 0 : -1;
}

static void on_timeout(uv_timer_t *t)
{
    struct httpc *c = t->data;
    int running;

    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi_info(c);
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct httpc *c = userp;

    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* Runs outside of curl's calls, so a callback may start the next request at once. */
static void check_multi_info(struct httpc *c)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        struct httpc_req *r = NULL;
        CURLcode result;
        CURL *easy;

        if (msg->msg != CURLMSG_DONE)
            continue;
        easy = msg->easy_handle;
        result = msg->data.result; /* msg is invalid after the handle is removed */
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
        curl_multi_remove_handle(c->multi, easy);
        req_unlink(r);
        req_finish(r, result);
        req_free(r);
    }
}

static size_t on_write(char *data, size_t size, size_t n, void *userp)
{
    struct httpc_req *r = userp;
    size_t len = size * n;

    if (buf_add(&r->resp, data, len) != 0) {
        r->too_big = true;
        return 0; /* curl then fails the transfer with CURLE_WRITE_ERROR */
    }
    return len;
}

/* ---- public API --------------------------------------------------------------------------- */

struct httpc *httpc_new(uv_loop_t *loop, const struct httpc_config *cfg)
{
    struct httpc *c = xcalloc(1, sizeof(*c));

    c->loop = loop;
    c->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->connect_timeout_ms =
        cfg->connect_timeout_ms ? cfg->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    if (c->connect_timeout_ms > c->timeout_ms)
        c->connect_timeout_ms = c->timeout_ms;
    c->max_response_bytes =
        cfg->max_response_bytes ? cfg->max_response_bytes : DEFAULT_MAX_RESPONSE_BYTES;
    c->user_agent = xstrdup(cfg->user_agent ? cfg->user_agent : "voidrecon/" VOIDRECON_VERSION);
    c->multi = curl_multi_init();
    if (c->multi == NULL)
        vr_panic("curl_multi_init failed"); /* only when memory runs out */
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->handles_open = 1;
    return c;
}

void httpc_post(struct httpc *c, const char *url, const char *const *headers, const char *body,
                size_t len, httpc_cb cb, void *arg)
{
    struct httpc_req *r = xcalloc(1, sizeof(*r));

    assert(!c->closing);
    r->c = c;
    r->cb = cb;
    r->arg = arg;
    r->body = xstrndup(body, len);
    buf_init(&r->resp, c->max_response_bytes);
    /* No "Expect: 100-continue" round trip for small bodies. */
    r->headers = curl_slist_append(NULL, "Expect:");
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        r->headers = curl_slist_append(r->headers, headers[i]);
    r->easy = curl_easy_init();
    if (r->easy == NULL || r->headers == NULL)
        vr_panic("libcurl could not make a request"); /* only when memory runs out */
    curl_easy_setopt(r->easy, CURLOPT_URL, url);
    curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(r->easy, CURLOPT_ACCEPT_ENCODING, "gzip");
    curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->easy, CURLOPT_USERAGENT, c->user_agent);
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->curl_err);
    curl_easy_setopt(r->easy, CURLOPT_PRIVATE, (char *)r);
    r->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = r;
    c->reqs = r;
    /* Only registers the transfer and arms the timer: the work starts from the loop. */
    if (curl_multi_add_handle(c->multi, r->easy) != CURLM_OK)
        vr_panic("curl_multi_add_handle failed"); /* a new handle on a live multi */
}

void httpc_close(struct httpc *c, void (*done_cb)(void *arg), void *arg)
{
    struct httpc_req *r, *next;

    c->closing = true;
    c->done_cb = done_cb;
    c->done_arg = arg;
    /* Callbacks may not start requests now (httpc_post asserts), so the list stays as it is. */
    for (r = c->reqs; r != NULL; r = next) {
        next = r->next;
        curl_multi_remove_handle(c->multi, r->easy);
        req_fail_closed(r);
        req_free(r);
    }
    c->reqs = NULL;
    /* Cleanup fires the socket callbacks (REMOVE) for cached connections; the timer closes
     * after it, since curl may still touch it until then. */
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    uv_close((uv_handle_t *)&c->timer, handle_closed);
}
