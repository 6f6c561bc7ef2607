/* The HTTP server on a real loop and loopback sockets, with a handler that answers late:
 * order of pipelined answers, stop with a request in flight, bad handler output. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "httpd.h"
#include "log.h"

struct late {
    uv_timer_t timer;
    struct httpd_request *req;
    char body[64];
};

struct fixture {
    uv_loop_t loop;
    struct httpd *h;
    int port;
    bool stop_on_request; /* call httpd_close as soon as a request arrives */
    bool stopped;
    unsigned handled;
    unsigned refused; /* by admit, from the head */
};

static void late_closed(uv_handle_t *t)
{
    free(container_of((uv_timer_t *)t, struct late, timer));
}

static void late_fire(uv_timer_t *t)
{
    struct late *l = container_of(t, struct late, timer);

    httpd_respond(l->req, 200, "text/plain", NULL, l->body, strlen(l->body));
    uv_close((uv_handle_t *)t, late_closed);
}

static void stopped(void *arg)
{
    ((struct fixture *)arg)->stopped = true;
}

/* /slow/N answers "slow N" after 150 ms, /fast/N answers "fast N" at once, /bad answers with
 * a header line that would split the response. */
static void handler(struct httpd_request *req, void *arg)
{
    struct fixture *f = arg;
    const char *path = httpd_request_path(req);
    char body[64];

    f->handled++;
    if (f->stop_on_request && f->handled == 1)
        httpd_close(f->h, stopped, f);
    if (strncmp(path, "/slow/", 6) == 0) {
        struct late *l = xcalloc(1, sizeof(*l));
        l->req = req;
        snprintf(l->body, sizeof(l->body), "slow %s", path + 6);
        uv_timer_init(&f->loop, &l->timer);
        uv_timer_start(&l->timer, late_fire, 150, 0);
        return;
    }
    if (strcmp(path, "/bad") == 0) {
        httpd_respond(req, 200, "text/plain", "X-Ok: 1\r\nInjected\r\n", "x", 1);
        return;
    }
    snprintf(body, sizeof(body), "fast %s", path + 6);
    httpd_respond(req, 200, "text/plain", NULL, body, strlen(body));
}

/* /no/... is refused from its head, with what the server knows of it then. */
static bool admit(struct httpd_request *head, void *arg)
{
    struct fixture *f = arg;
    size_t len = 1;
    char body[96];

    if (strncmp(httpd_request_path(head), "/no/", 4) != 0)
        return true;
    f->refused++;
    snprintf(body, sizeof(body), "refused %s body=\"%s\"", httpd_request_path(head) + 4,
             httpd_request_body(head, &len));
    if (len != 0)
        return true; /* the body is never there yet: fail the test by serving it */
    httpd_respond(head, 403, "text/plain", NULL, body, strlen(body));
    return false;
}

struct client {
    int port;
    const char *send;
    char got[8192];
    size_t len;
};

/* Sends everything, then reads until the server closes. */
static void *client_main(void *arg)
{
    struct client *c = arg;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ssize_t n;

    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return NULL;
    }
    if (write(fd, c->send, strlen(c->send)) < 0) {
        close(fd);
        return NULL;
    }
    while (c->len < sizeof(c->got) - 1 &&
           (n = read(fd, c->got + c->len, sizeof(c->got) - 1 - c->len)) > 0)
        c->len += (size_t)n;
    c->got[c->len] = '\0';
    close(fd);
    return NULL;
}

static int fixture_start(struct fixture *f)
{
    char err[200];

    memset(f, 0, sizeof(*f));
    uv_loop_init(&f->loop);
    if (httpd_new(&f->h, &f->loop, &(struct httpd_config){.host = "127.0.0.1", .admit_cb = admit},
                  handler, f, err, sizeof(err)) != 0) {
        fprintf(stderr, "httpd_new: %s\n", err);
        return -1;
    }
    f->port = httpd_port(f->h);
    return 0;
}

/* Runs the loop until the client thread is done, then stops the server and drains the loop. */
static void run_client(struct fixture *f, struct client *c)
{
    pthread_t t;

    c->port = f->port;
    pthread_create(&t, NULL, client_main, c);
    while (pthread_tryjoin_np(t, NULL) != 0)
        uv_run(&f->loop, UV_RUN_NOWAIT), usleep(1000);
}

static int fixture_finish(struct fixture *f)
{
    if (!f->stopped && !f->stop_on_request)
        httpd_close(f->h, stopped, f);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    return uv_loop_close(&f->loop);
}

static void httpd_answers_pipelined_requests_in_order_when_handlers_finish_late(void)
{
    struct fixture f;
    struct client c = {.send = "GET /slow/1 HTTP/1.1\r\nHost: t\r\n\r\n"
                               "GET /fast/2 HTTP/1.1\r\nHost: t\r\n\r\n"
                               "GET /slow/3 HTTP/1.1\r\nHost: t\r\n\r\n"
                               "GET /fast/4 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"};
    const char *p1, *p2, *p3, *p4;

    ASSERT_EQ(fixture_start(&f), 0);
    run_client(&f, &c);
    p1 = strstr(c.got, "slow 1");
    p2 = strstr(c.got, "fast 2");
    p3 = strstr(c.got, "slow 3");
    p4 = strstr(c.got, "fast 4");
    ASSERT_TRUE(p1 && p2 && p3 && p4);
    ASSERT_TRUE(p1 < p2 && p2 < p3 && p3 < p4);
    ASSERT_EQ(f.handled, 4);
    ASSERT_EQ(fixture_finish(&f), 0);
}

static void httpd_close_answers_the_request_in_flight_then_closes(void)
{
    struct fixture f;
    struct client c = {.send = "GET /slow/9 HTTP/1.1\r\nHost: t\r\n\r\n"
                               "GET /fast/10 HTTP/1.1\r\nHost: t\r\n\r\n"};

    ASSERT_EQ(fixture_start(&f), 0);
    f.stop_on_request = true;
    run_client(&f, &c);
    ASSERT_CONTAINS(c.got, "HTTP/1.1 200 OK");
    ASSERT_CONTAINS(c.got, "Connection: close");
    ASSERT_CONTAINS(c.got, "slow 9");
    ASSERT_TRUE(strstr(c.got, "fast 10") == NULL); /* stopping: no further request is taken */
    ASSERT_EQ(f.handled, 1);
    ASSERT_EQ(fixture_finish(&f), 0);
    ASSERT_TRUE(f.stopped);
}

static void httpd_replaces_a_response_with_broken_headers_by_500(void)
{
    struct fixture f;
    struct client c = {.send = "GET /bad HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"};

    ASSERT_EQ(fixture_start(&f), 0);
    run_client(&f, &c);
    ASSERT_CONTAINS(c.got, "HTTP/1.1 500 Internal Server Error");
    ASSERT_TRUE(strstr(c.got, "Injected") == NULL);
    ASSERT_EQ(fixture_finish(&f), 0);
}

static unsigned count_of(const char *hay, const char *needle)
{
    unsigned n = 0;

    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* A refusal from the head: without a body the connection goes on; with one, no 100 Continue,
 * the body is never read, and the connection ends with the answer. */
static void httpd_admit_refuses_from_the_head(void)
{
    struct fixture f;
    struct client c = {.send = "GET /no/1 HTTP/1.1\r\nHost: t\r\n\r\n"
                               "GET /fast/2 HTTP/1.1\r\nHost: t\r\n\r\n"
                               "POST /no/3 HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                               "Content-Length: 10\r\n\r\n"};
    const char *p1, *p2, *p3;

    ASSERT_EQ(fixture_start(&f), 0);
    run_client(&f, &c);
    p1 = strstr(c.got, "refused 1 body=\"\"");
    p2 = strstr(c.got, "fast 2");
    p3 = strstr(c.got, "refused 3");
    ASSERT_TRUE(p1 && p2 && p3 && p1 < p2 && p2 < p3);
    ASSERT_TRUE(strstr(c.got, "100 Continue") == NULL);
    ASSERT_EQ(count_of(c.got, "Connection: keep-alive"), 2);
    ASSERT_CONTAINS(p2, "Connection: close"); /* the third answer's */
    ASSERT_EQ(f.refused, 2);
    ASSERT_EQ(f.handled, 1); /* the handler saw only what was admitted */
    ASSERT_EQ(fixture_finish(&f), 0);
}

static void httpd_refuses_a_host_that_is_not_an_address(void)
{
    uv_loop_t loop;
    struct httpd *h = NULL;
    char err[200] = "";

    uv_loop_init(&loop);
    ASSERT_EQ(httpd_new(&h, &loop, &(struct httpd_config){.host = "localhost"}, handler, NULL, err,
                        sizeof(err)),
              VR_EINVAL);
    ASSERT_TRUE(h == NULL);
    ASSERT_CONTAINS(err, "localhost");
    ASSERT_EQ(uv_loop_close(&loop), 0);
}

CHECK_MAIN(CASE(httpd_answers_pipelined_requests_in_order_when_handlers_finish_late),
           CASE(httpd_close_answers_the_request_in_flight_then_closes),
           CASE(httpd_replaces_a_response_with_broken_headers_by_500),
           CASE(httpd_refuses_a_host_that_is_not_an_address),
           CASE(httpd_admit_refuses_from_the_head))
