/* Incremental request parsing: splits, pipelining, chunked bodies, caps and error statuses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "httpreq.h"

/* Feeds the whole string and steps until a request is ready, an error occurs or input runs out;
 * HEADERS_READY is stepped over. */
static enum httpreq_event feed_all(struct httpreq *p, const char *s, size_t len)
{
    enum httpreq_event ev;

    if (httpreq_feed(p, s, len) != 0)
        return HTTPREQ_ERROR;
    do {
        ev = httpreq_step(p);
    } while (ev == HTTPREQ_HEADERS_READY);
    return ev;
}

static enum httpreq_event feed_str(struct httpreq *p, const char *s)
{
    return feed_all(p, s, strlen(s));
}

static const char simple_post[] = "POST /api/v1/cases?limit=10&x=%20 HTTP/1.1\r\n"
                                  "Host: example\r\n"
                                  "X-Empty:\r\n"
                                  "Content-Type: application/json\r\n"
                                  "X-Padded:   spaced value  \r\n"
                                  "Content-Length: 11\r\n"
                                  "\r\n"
                                  "{\"a\":\"bc\"}\n";

static void httpreq_parses_request_split_at_every_byte_boundary(void)
{
    size_t len = strlen(simple_post);

    for (size_t split = 0; split <= len; split++) {
        struct httpreq *p = httpreq_new(NULL);
        struct httpreq_request *r;
        enum httpreq_event ev;

        ev = feed_all(p, simple_post, split);
        if (split < len) {
            ASSERT_EQ(ev, HTTPREQ_NEED_MORE);
            ev = feed_all(p, simple_post + split, len - split);
        }
        ASSERT_EQ(ev, HTTPREQ_REQUEST_READY);
        r = httpreq_take(p);
        ASSERT_TRUE(r != NULL);
        ASSERT_STR_EQ(r->method, "POST");
        ASSERT_STR_EQ(r->target, "/api/v1/cases?limit=10&x=%20");
        ASSERT_STR_EQ(r->path, "/api/v1/cases");
        ASSERT_STR_EQ(r->query, "limit=10&x=%20");
        ASSERT_EQ(r->header_count, 5);
        ASSERT_STR_EQ(httpreq_request_header(r, "x-empty"), "");
        ASSERT_STR_EQ(httpreq_request_header(r, "X-PADDED"), "spaced value");
        ASSERT_EQ(r->body_len, 11);
        ASSERT_STR_EQ(r->body, "{\"a\":\"bc\"}\n");
        ASSERT_TRUE(r->keep_alive);
        ASSERT_EQ(r->http_major, 1);
        ASSERT_EQ(r->http_minor, 1);
        ASSERT_EQ(httpreq_pending_bytes(p), 0);
        httpreq_request_free(r);
        ASSERT_EQ(httpreq_step(p), HTTPREQ_NEED_MORE);
        ASSERT_EQ(httpreq_phase(p), HTTPREQ_PHASE_IDLE);
        httpreq_free(p);
    }
}

static void httpreq_parses_one_byte_at_a_time(void)
{
    struct httpreq *p = httpreq_new(NULL);
    struct httpreq_request *r = NULL;
    size_t len = strlen(simple_post);

    for (size_t i = 0; i < len; i++) {
        enum httpreq_event ev = feed_all(p, simple_post + i, 1);

        if (i + 1 < len)
            ASSERT_EQ(ev, HTTPREQ_NEED_MORE);
        else
            ASSERT_EQ(ev, HTTPREQ_REQUEST_READY);
    }
    r = httpreq_take(p);
    ASSERT_TRUE(r != NULL);
    ASSERT_STR_EQ(r->body, "{\"a\":\"bc\"}\n");
    httpreq_request_free(r);
    httpreq_free(p);
}

static void httpreq_yields_pipelined_requests_in_order(void)
{
    static const char three[] = "GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
                                "POST /two HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                                "GET /three?q=1 HTTP/1.1\r\nConnection: close\r\n\r\n";
    static const char *paths[] = {"/one", "/two", "/three"};
    struct httpreq *p = httpreq_new(NULL);

    ASSERT_EQ(httpreq_feed(p, three, strlen(three)), 0);
    for (size_t i = 0; i < 3; i++) {
        enum httpreq_event ev;
        struct httpreq_request *r;

        do {
            ev = httpreq_step(p);
        } while (ev == HTTPREQ_HEADERS_READY);
        ASSERT_EQ(ev, HTTPREQ_REQUEST_READY);
        r = httpreq_take(p);
        ASSERT_STR_EQ(r->path, paths[i]);
        if (i == 0)
            ASSERT_TRUE(httpreq_pending_bytes(p) > 0);
        if (i == 1)
            ASSERT_STR_EQ(r->body, "abc");
        ASSERT_EQ(r->keep_alive, i < 2);
        httpreq_request_free(r);
    }
    ASSERT_EQ(httpreq_step(p), HTTPREQ_NEED_MORE);
    ASSERT_EQ(httpreq_phase(p), HTTPREQ_PHASE_DONE);
    httpreq_free(p);
}

static void httpreq_discards_untaken_request_on_next_step(void)
{
    static const char two[] = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    struct httpreq *p = httpreq_new(NULL);
    struct httpreq_request *r;

    ASSERT_EQ(feed_str(p, two), HTTPREQ_REQUEST_READY);
    ASSERT_EQ(httpreq_step(p), HTTPREQ_HEADERS_READY);
    ASSERT_EQ(httpreq_step(p), HTTPREQ_REQUEST_READY);
    r = httpreq_take(p);
    ASSERT_STR_EQ(r->path, "/b");
    ASSERT_TRUE(httpreq_take(p) == NULL);
    httpreq_request_free(r);
    httpreq_free(p);
}

static void httpreq_reassembles_chunked_body(void)
{
    static const char req[] = "PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "5\r\nhello\r\n"
                              "1;ext=1\r\n,\r\n"
                              "6\r\n world\r\n"
                              "0\r\nX-Trailer: t\r\n\r\n";
    size_t len = strlen(req);

    for (size_t split = 0; split <= len; split++) {
        struct httpreq *p = httpreq_new(NULL);
        struct httpreq_request *r;

        if (feed_all(p, req, split) != HTTPREQ_REQUEST_READY)
            ASSERT_EQ(feed_all(p, req + split, len - split), HTTPREQ_REQUEST_READY);
        r = httpreq_take(p);
        ASSERT_EQ(r->body_len, 12);
        ASSERT_STR_EQ(r->body, "hello, world");
        ASSERT_TRUE(httpreq_request_header(r, "X-Trailer") == NULL);
        httpreq_request_free(r);
        httpreq_free(p);
    }
}

static void httpreq_rejects_chunked_body_over_limit_with_413(void)
{
    struct httpreq_limits lim = {.max_body_bytes = 8};
    struct httpreq *p = httpreq_new(&lim);

    ASSERT_EQ(feed_str(p, "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "5\r\nhello\r\n"),
              HTTPREQ_NEED_MORE);
    ASSERT_EQ(feed_str(p, "5\r\nworld\r\n0\r\n\r\n"), HTTPREQ_ERROR);
    ASSERT_EQ(httpreq_error_status(p), 413);
    ASSERT_CONTAINS(httpreq_error_message(p), "exceeds");
    /* Errors are sticky. */
    ASSERT_EQ(httpreq_step(p), HTTPREQ_ERROR);
    httpreq_free(p);
}

static void httpreq_rejects_content_length_over_limit_at_headers(void)
{
    struct httpreq_limits lim = {.max_body_bytes = 100};
    struct httpreq *p = httpreq_new(&lim);

    /* No body byte is sent: the decision is made from the head alone. */
    ASSERT_EQ(feed_str(p, "POST /x HTTP/1.1\r\nContent-Length: 101\r\n"
                          "Expect: 100-continue\r\n\r\n"),
              HTTPREQ_ERROR);
    ASSERT_EQ(httpreq_error_status(p), 413);
    ASSERT_CONTAINS(httpreq_error_message(p), "101");
    httpreq_free(p);
}

static void httpreq_accepts_body_exactly_at_limit(void)
{
    struct httpreq_limits lim = {.max_body_bytes = 4};
    struct httpreq *p = httpreq_new(&lim);
    struct httpreq_request *r;

    ASSERT_EQ(feed_str(p, "POST /x HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"),
              HTTPREQ_REQUEST_READY);
    r = httpreq_take(p);
    ASSERT_STR_EQ(r->body, "abcd");
    httpreq_request_free(r);
    httpreq_free(p);
}

static void httpreq_rejects_header_block_over_16k_with_431(void)
{
    struct httpreq *p = httpreq_new(NULL);
    char *big = malloc(20000);
    size_t n = 0;

    n += (size_t)snprintf(big, 20000, "GET / HTTP/1.1\r\n");
    while (n < 17000)
        n += (size_t)snprintf(big + n, 20000 - n, "X-Filler-%zu: %s\r\n", n,
                              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    /* The head is never finished: the cap must trigger without the final empty line. */
    ASSERT_EQ(feed_all(p, big, n), HTTPREQ_ERROR);
    ASSERT_EQ(httpreq_error_status(p), 431);
    free(big);
    httpreq_free(p);
}

static void httpreq_rejects_head_over_limit_fed_in_pieces(void)
{
    struct httpreq_limits lim = {.max_header_bytes = 64};
    struct httpreq *p = httpreq_new(&lim);
    enum httpreq_event ev = HTTPREQ_NEED_MORE;

    ASSERT_EQ(feed_str(p, "GET / HTTP/1.1\r\nX-Long: "), HTTPREQ_NEED_MORE);
    for (int i = 0; i < 100 && ev == HTTPREQ_NEED_MORE; i++)
        ev = feed_str(p, "a");
    ASSERT_EQ(ev, HTTPREQ_ERROR);
    ASSERT_EQ(httpreq_error_status(p), 431);
    httpreq_free(p);
}

static void httpreq_accepts_head_just_under_limit(void)
{
    static const char req[] = "GET / HTTP/1.1\r\nA: b\r\n\r\n";
    struct httpreq_limits lim = {.max_header_bytes = sizeof(req) - 1};
    struct httpreq *p = httpreq_new(&lim);
    struct httpreq_request *r;

    ASSERT_EQ(feed_str(p, req), HTTPREQ_REQUEST_READY);
    r = httpreq_take(p);
    ASSERT_STR_EQ(httpreq_request_header(r, "a"), "b");
    httpreq_request_free(r);
    httpreq_free(p);
}

static void httpreq_rejects_garbage_with_400(void)
{
    static const char *inputs[] = {
        "\x01\x02garbage\r\n\r\n",
        "GET / HTTP/1.1\r\nNoColonHere\r\n\r\n",

        "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET /\x7f HTTP/1.1\r\n\r\n",
    };

    for (size_t i = 0; i < ARRAY_SIZE(inputs); i++) {
        struct httpreq *p = httpreq_new(NULL);

        if (feed_str(p, inputs[i]) != HTTPREQ_ERROR || httpreq_error_status(p) != 400)
            fprintf(stderr, "input %zu was not rejected with 400\n", i);
        ASSERT_EQ(httpreq_error_status(p), 400);
        ASSERT_CONTAINS(httpreq_error_message(p), "malformed request: ");
        httpreq_free(p);
    }
}

static void httpreq_rejects_post_without_length_with_411(void)
{
    static const char *methods[] = {"POST", "PUT", "PATCH"};

    for (size_t i = 0; i < ARRAY_SIZE(methods); i++) {
        struct httpreq *p = httpreq_new(NULL);
        char req[128];

        snprintf(req, sizeof(req), "%s /x HTTP/1.1\r\nHost: h\r\n\r\n", methods[i]);
        ASSERT_EQ(feed_str(p, req), HTTPREQ_ERROR);
        ASSERT_EQ(httpreq_error_status(p), 411);
        ASSERT_CONTAINS(httpreq_error_message(p), methods[i]);
        httpreq_free(p);
    }
}

static void httpreq_allows_get_and_delete_without_length(void)
{
    struct httpreq *p = httpreq_new(NULL);
    struct httpreq_request *r;

    ASSERT_EQ(feed_str(p, "DELETE /x HTTP/1.1\r\n\r\n"), HTTPREQ_REQUEST_READY);
    r = httpreq_take(p);
    ASSERT_STR_EQ(r->method, "DELETE");
    ASSERT_EQ(r->body_len, 0);
    ASSERT_STR_EQ(r->body, "");
    httpreq_request_free(r);
    httpreq_free(p);
}

static void httpreq_flags_expect_100_continue_at_headers(void)
{
    struct httpreq *p = httpreq_new(NULL);
    const struct httpreq_request *cur;
    struct httpreq_request *r;

    ASSERT_EQ(httpreq_feed(p,
                           "POST /u HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n",
                           strlen("POST /u HTTP/1.1\r\nExpect: 100-Continue\r\n"
                                  "Content-Length: 2\r\n\r\n")),
              0);
    ASSERT_EQ(httpreq_step(p), HTTPREQ_HEADERS_READY);
    ASSERT_EQ(httpreq_phase(p), HTTPREQ_PHASE_BODY);
    cur = httpreq_current(p);
    ASSERT_TRUE(cur != NULL);
    ASSERT_TRUE(cur->expect_continue);
    ASSERT_STR_EQ(cur->path, "/u");
    ASSERT_EQ(httpreq_step(p), HTTPREQ_NEED_MORE);
    ASSERT_EQ(feed_str(p, "ok"), HTTPREQ_REQUEST_READY);
    r = httpreq_take(p);
    ASSERT_TRUE(r->expect_continue);
    ASSERT_STR_EQ(r->body, "ok");
    httpreq_request_free(r);
    httpreq_free(p);
}

static void httpreq_rejects_unknown_expectation_with_417(void)
{
    struct httpreq *p = httpreq_new(NULL);

    ASSERT_EQ(feed_str(p, "POST /u HTTP/1.1\r\nExpect: teapot\r\nContent-Length: 2\r\n\r\n"),
              HTTPREQ_ERROR);
    ASSERT_EQ(httpreq_error_status(p), 417);
    httpreq_free(p);
}

static void httpreq_looks_up_headers_case_insensitively(void)
{
    struct httpreq *p = httpreq_new(NULL);
    struct httpreq_request *r;

    ASSERT_EQ(feed_str(p, "GET / HTTP/1.1\r\nX-Api-Key: k1\r\nx-api-key: k2\r\n"
                          "AUTHORIZATION: Bearer t\r\n\r\n"),
              HTTPREQ_REQUEST_READY);
    r = httpreq_take(p);
    ASSERT_STR_EQ(httpreq_request_header(r, "x-API-key"), "k1");
    ASSERT_STR_EQ(httpreq_request_header(r, "Authorization"), "Bearer t");
    ASSERT_TRUE(httpreq_request_header(r, "Cookie") == NULL);
    httpreq_request_free(r);
    httpreq_free(p);
}

static void httpreq_decides_keep_alive_by_version_and_connection(void)
{
    static const struct {
        const char *req;
        int keep_alive;
    } cases[] = {
        {"GET / HTTP/1.1\r\n\r\n", 1},
        {"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 0},
        {"GET / HTTP/1.0\r\n\r\n", 0},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1},
        {"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 0},
    };

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct httpreq *p = httpreq_new(NULL);
        struct httpreq_request *r;

        ASSERT_EQ(feed_str(p, cases[i].req), HTTPREQ_REQUEST_READY);
        r = httpreq_take(p);
        ASSERT_EQ(r->keep_alive, cases[i].keep_alive);
        httpreq_request_free(r);
        /* After a closing request, later bytes are ignored. */
        if (!cases[i].keep_alive)
            ASSERT_EQ(feed_str(p, "GET /more HTTP/1.1\r\n\r\n"), HTTPREQ_NEED_MORE);
        httpreq_free(p);
    }
}

static void httpreq_rejects_unsupported_versions(void)
{
    static const char *inputs[] = {
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.2\r\n\r\n",
        "GET / HTTP/0.9\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    };

    for (size_t i = 0; i < ARRAY_SIZE(inputs); i++) {
        struct httpreq *p = httpreq_new(NULL);
        int status;

        ASSERT_EQ(feed_str(p, inputs[i]), HTTPREQ_ERROR);
        status = httpreq_error_status(p);
        ASSERT_TRUE(status == 505 || status == 400);
        httpreq_free(p);
    }
}

static void httpreq_refuses_input_beyond_pending_cap(void)
{
    struct httpreq_limits lim = {.max_pending_bytes = 16};
    struct httpreq *p = httpreq_new(&lim);

    ASSERT_EQ(httpreq_feed(p, "0123456789", 10), 0);
    ASSERT_EQ(httpreq_feed(p, "0123456789", 10), VR_ETOOBIG);
    ASSERT_EQ(httpreq_pending_bytes(p), 10);
    httpreq_free(p);
}

static void httpreq_reports_phases(void)
{
    struct httpreq *p = httpreq_new(NULL);

    ASSERT_EQ(httpreq_phase(p), HTTPREQ_PHASE_IDLE);
    ASSERT_EQ(feed_str(p, "GE"), HTTPREQ_NEED_MORE);
    ASSERT_EQ(httpreq_phase(p), HTTPREQ_PHASE_HEAD);
    ASSERT_EQ(feed_str(p, "T / HTTP/1.1\r\nContent-Length: 2\r\n\r\na"), HTTPREQ_NEED_MORE);
    ASSERT_EQ(httpreq_phase(p), HTTPREQ_PHASE_BODY);
    ASSERT_EQ(feed_str(p, "b"), HTTPREQ_REQUEST_READY);
    ASSERT_EQ(httpreq_phase(p), HTTPREQ_PHASE_DONE);
    httpreq_request_free(httpreq_take(p));
    ASSERT_EQ(httpreq_step(p), HTTPREQ_NEED_MORE);
    ASSERT_EQ(httpreq_phase(p), HTTPREQ_PHASE_IDLE);
    httpreq_free(p);
}

static void httpreq_knows_reason_phrases(void)
{
    ASSERT_STR_EQ(httpreq_reason_phrase(200), "OK");
    ASSERT_STR_EQ(httpreq_reason_phrase(431), "Request Header Fields Too Large");
    ASSERT_STR_EQ(httpreq_reason_phrase(999), "Unknown");
}

CHECK_MAIN(CASE(httpreq_parses_request_split_at_every_byte_boundary),
           CASE(httpreq_parses_one_byte_at_a_time),
           CASE(httpreq_yields_pipelined_requests_in_order),
           CASE(httpreq_discards_untaken_request_on_next_step),
           CASE(httpreq_reassembles_chunked_body),
           CASE(httpreq_rejects_chunked_body_over_limit_with_413),
           CASE(httpreq_rejects_content_length_over_limit_at_headers),
           CASE(httpreq_accepts_body_exactly_at_limit),
           CASE(httpreq_rejects_header_block_over_16k_with_431),
           CASE(httpreq_rejects_head_over_limit_fed_in_pieces),
           CASE(httpreq_accepts_head_just_under_limit), CASE(httpreq_rejects_garbage_with_400),
           CASE(httpreq_rejects_post_without_length_with_411),
           CASE(httpreq_allows_get_and_delete_without_length),
           CASE(httpreq_flags_expect_100_continue_at_headers),
           CASE(httpreq_rejects_unknown_expectation_with_417),
           CASE(httpreq_looks_up_headers_case_insensitively),
           CASE(httpreq_decides_keep_alive_by_version_and_connection),
           CASE(httpreq_rejects_unsupported_versions),
           CASE(httpreq_refuses_input_beyond_pending_cap), CASE(httpreq_reports_phases),
           CASE(httpreq_knows_reason_phrases))
