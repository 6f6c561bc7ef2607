/* queryVoidOrders.do over httpc: the request Atlas documents, and its answer read as a reply. */
#include "atlas_client.h"

#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpc.h"
#include "utf8.h"

#define QUERY_PATH   "queryVoidOrders.do"
#define HEADER_LINES 4

struct atlas_client {
    struct httpc *http;
    char *url;
    char *headers[HEADER_LINES + 1]; /* the id and secret lines are never logged */
    void (*done_cb)(void *arg);
    void *done_arg;
};

struct atlas_req {
    char *void_code;
    atlas_client_cb cb;
    void *arg;
};

static void answered(const struct httpc_response *r, void *arg)
{
    struct atlas_req *q = arg;
    struct atlas_reply rep;

    memset(&rep, 0, sizeof(rep));
    rep.http_status = r->http_status;
    if (r->status != 0) {
        /* A transport failure; an oversized answer counts as a malformed one. */
        rep.status = r->status == VR_ETOOBIG ? VR_EPARSE : r->status;
        snprintf(rep.error, sizeof(rep.error), "%s", r->error);
        utf8_trim(rep.error, sizeof(rep.error));
    } else if (r->http_status == 200) {
        rep.status = atlas_query_parse(r->body, r->body_len, q->void_code, &rep.order,
                                       &rep.atlas_status, rep.error, sizeof(rep.error));
    } else if (r->http_status == 429) {
        long s = atlas_retry_after_parse(r->body, r->body_len);

        if (s < 0)
            s = r->retry_after_s;
        rep.status = VR_EREMOTE;
        /* Saturates instead of wrapping: a header can say anything. */
        rep.retry_after_ms = s <= 0                            ? 0
                             : (uint64_t)s > UINT64_MAX / 1000 ? UINT64_MAX
                                                               : (uint64_t)s * 1000;
        snprintf(rep.error, sizeof(rep.error), "HTTP 429: rate limited, retry after %ld s",
                 s > 0 ? s : 0);
    } else {
        rep.status = VR_EREMOTE;
        snprintf(rep.error, sizeof(rep.error), "HTTP %ld from Atlas", r->http_status);
    }
    q->cb(&rep, q->arg);
    atlas_void_order_cleanup(&rep.order);
    free(q->void_code);
    free(q);
}

static char *header_line(const char *name, const char *value)
{
    size_t n = strlen(name) + strlen(value) + 1;
    char *s = xmalloc(n);

    snprintf(s, n, "%s%s", name, value);
    return s;
}

struct atlas_client *atlas_client_new(uv_loop_t *loop, const struct atlas_client_config *cfg)
{
    struct atlas_client *c = xcalloc(1, sizeof(*c));
    size_t n = strlen(cfg->base_url);

    /* One line each, or a header could be split: config_validate sees to it. */
    assert(strpbrk(cfg->client_id, "\r\n") == NULL && strpbrk(cfg->client_secret, "\r\n") == NULL);
    c->url = xmalloc(n + sizeof(QUERY_PATH) + 1);
    snprintf(c->url, n + sizeof(QUERY_PATH) + 1, "%s%s" QUERY_PATH, cfg->base_url,
             n > 0 && cfg->base_url[n - 1] == '/' ? "" : "/");
    c->headers[0] = xstrdup("Content-Type: application/json");
    c->headers[1] = xstrdup("Accept: application/json");
    c->headers[2] = header_line("x-atlas-client-id: ", cfg->client_id);
    c->headers[3] = header_line("x-atlas-client-secret: ", cfg->client_secret);
    c->http = httpc_new(loop, &(struct httpc_config){
                                  .timeout_ms = cfg->timeout_ms,
                                  .connect_timeout_ms = cfg->connect_timeout_ms,
                                  .max_response_bytes = cfg->max_response_bytes,
                              });
    return c;
}

void atlas_client_query(struct atlas_client *c, const char *order_no, const char *void_code,
                        atlas_client_cb cb, void *arg)
{
    struct atlas_req *q = xcalloc(1, sizeof(*q));
    char *body = atlas_query_body(order_no, void_code);

    q->void_code = xstrdup(void_code);
    q->cb = cb;
    q->arg = arg;
    httpc_post(c->http, c->url, (const char *const *)c->headers, body, strlen(body), answered, q);
    free(body);
}

static void http_closed(void *arg)
{
    struct atlas_client *c = arg;
    void (*done_cb)(void *arg) = c->done_cb;
    void *done_arg = c->done_arg;

    for (size_t i = 0; i < HEADER_LINES; i++) {
        if (c->headers[i] != NULL)
            memset(c->headers[i], 0, strlen(c->headers[i])); /* the secret's line too */
        free(c->headers[i]);
    }
    free(c->url);
    free(c);
    if (done_cb != NULL)
        done_cb(done_arg);
}

void atlas_client_close(struct atlas_client *c, void (*done_cb)(void *arg), void *arg)
{
    c->done_cb = done_cb;
    c->done_arg = arg;
    httpc_close(c->http, http_closed, c);
}
