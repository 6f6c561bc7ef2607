/* PostgreSQL connection pool driven by libuv: non-blocking libpq on one uv_poll_t per socket. */
#include "db.h"

#include <assert.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <uv.h>

#include "log.h"

/* set_config() instead of SET because SET takes no bind parameters. synchronous_commit is
 * pinned because a 2xx promises the webhook survives kill -9 of the server too: a role or
 * database default of off must not quietly weaken that. */
static const char sql_setup[] = "SELECT set_config('statement_timeout', $1, false),"
                                " set_config('lock_timeout', $2, false),"
                                " set_config('synchronous_commit', 'on', false),"
                                " set_config('application_name', 'voidrecon', false)";
static const char sql_rollback[] = "ROLLBACK";

#define DB_DEFAULT_POOL_SIZE     4U
#define DB_DEFAULT_CONNECT_MS    5000U
#define DB_DEFAULT_RECONNECT_MIN 250U
#define DB_DEFAULT_RECONNECT_MAX 5000U
#define DB_DEFAULT_QUERY_MS      10000U
#define DB_DEFAULT_MAX_WAITERS   1024U
#define DB_DEFAULT_ACQUIRE_MS    5000U
#define DB_MAX_POOL_SIZE         1024U
#define DB_MAX_PARAMS            65535
#define DB_MAX_PREPARED          64U
#define DB_REASON_BYTES          200
#define DB_MAX_KEYWORDS          8

enum conn_state {
    CONN_DOWN,       /* no PGconn; the timer is the reconnect backoff */
    CONN_CONNECTING, /* PQconnectPoll in progress; the timer is the connect timeout */
    CONN_SETUP,      /* running sql_setup; the timer is still the connect timeout */
    CONN_READY,      /* idle in the pool; no timer */
    CONN_BUSY,       /* held by a session; the timer is the query watchdog or a deferral */
    CONN_ROLLBACK,   /* released inside a transaction, running sql_rollback */
    CONN_CLOSED,     /* db_close: timer closing or closed */
};

/* QUERY_PREPARE: a statement is being prepared; its execution (q.exec) is sent next. */
enum query_kind { QUERY_USER, QUERY_SETUP, QUERY_ROLLBACK, QUERY_PREPARE };

/* Copies of a statement's parameters, for a statement sent later than its call. */
struct db_params {
    int n;
    char **values;
    int *lengths; /* NULL: all text */
};

/* The execution of a prepared statement, waiting for its preparation to finish. */
struct db_exec {
    unsigned stmt;
    struct db_params p;
};

enum db_health { HEALTH_STARTING, HEALTH_UP, HEALTH_DOWN };

/* Heap-allocated so it can outlive a connection attempt: freed in its close callback only. */
struct db_poll {
    uv_poll_t handle;
    struct db_conn *conn;
    int fd; /* our duplicate of libpq's socket, so libpq may close its own while we still poll */
    dev_t dev;
    ino_t ino;
    int events;
};

struct db_session {
    struct db_conn *conn;
};

struct db_query {
    int active;
    enum query_kind kind;
    db_result_cb cb;
    void *arg;
    PGresult *res;        /* result kept so far; the first error wins */
    int deferred;         /* non-zero: no I/O, deliver this status from the timer */
    int cancelled;        /* released while in flight: drop the result, then release */
    struct db_exec *exec; /* QUERY_PREPARE: what runs once the statement is prepared */
};

struct db_conn {
    struct db *db;
    unsigned index;
    enum conn_state state;
    PGconn *pg;
    struct db_poll *poll;
    uv_timer_t timer;
    uint64_t backoff_ms;
    int live;          /* established, counted in db->n_live */
    int failed_once;   /* an attempt failed since start: lets STARTING turn into DOWN */
    int flushing;      /* PQflush returned 1: wait for writable too */
    int recycle;       /* reconnect instead of going back to the pool (read-only, fatal error) */
    uint64_t prepared; /* bit n: statement n is prepared on this PGconn (db_session_prepared) */
    db_notify_cb notify_cb; /* db_session_watch: notifications and loss, while held */
    void *notify_arg;
    struct db_session session;
    struct db_query q;
};

struct db_waiter {
    struct db_waiter *next;
    db_acquire_cb cb;
    void *arg;
    uint64_t deadline_ms;
    int status;
};

struct db_wqueue {
    struct db_waiter *head, *tail;
    unsigned n;
};

struct db {
    uv_loop_t *loop;
    struct db_config cfg;
    char *conninfo;
    char timeout_param[24];
    char lock_param[24];
    /* PQconnectStartParams: our defaults first, then conninfo as an expanded dbname, so that
     * whatever the user wrote wins. */
    const char *keywords[DB_MAX_KEYWORDS];
    const char *values[DB_MAX_KEYWORDS];
    bool insist_rw; /* target_session_attrs makes every new connection writable */
    bool read_only;
    char reason[DB_REASON_BYTES]; /* why the last connection was lost or refused */
    struct db_conn *conns;
    struct db_wqueue waiting; /* FIFO, all with the same timeout, so the head expires first */
    struct db_wqueue done;    /* decided outcomes waiting to be delivered from the loop */
    uv_timer_t kick_timer;    /* 0 ms: runs db_dispatch outside of API calls */
    uv_timer_t wait_timer;    /* acquire timeout of the head waiter */
    unsigned n_live;
    enum db_health health;
    uint64_t rng;
    int closing;
    int timers_closing;
    unsigned n_conns_open; /* conn timers not yet closed */
    unsigned n_polls;      /* poll handles not yet closed */
    unsigned n_timers_open;
    void (*done_cb)(void *arg);
    void *done_arg;
};

static void conn_on_timer(uv_timer_t *t);
static void conn_break(struct db_conn *c, const char *why);
static void conn_release_now(struct db_conn *c);
static void db_dispatch(struct db *db);
static void db_maybe_finish_close(struct db *db);

/* ---- small helpers ---------------------------------------------------------------------- */

static void wq_push(struct db_wqueue *q, struct db_waiter *w)
{
    w->next = NULL;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    q->n++;
}

static struct db_waiter *wq_pop(struct db_wqueue *q)
{
    struct db_waiter *w = q->head;

    if (w == NULL)
        return NULL;
    q->head = w->next;
    if (q->head == NULL)
        q->tail = NULL;
    q->n--;
    return w;
}

static void params_copy(struct db_params *p, int n, const char *const *values, const int *lengths)
{
    p->n = n;
    p->values = n > 0 ? xcalloc((size_t)n, sizeof(*p->values)) : NULL;
    p->lengths = lengths != NULL && n > 0 ? xcalloc((size_t)n, sizeof(*p->lengths)) : NULL;
    for (int i = 0; i < n; i++) {
        if (values[i] == NULL)
            p->values[i] = NULL;
        else if (lengths != NULL && lengths[i] >= 0)
            p->values[i] = xstrndup(values[i], (size_t)lengths[i]);
        else
            p->values[i] = xstrdup(values[i]);
        if (p->lengths != NULL)
            p->lengths[i] = lengths[i];
    }
}

static void params_free(struct db_params *p)
{
    for (int i = 0; i < p->n; i++)
        free(p->values[i]);
    free(p->values);
    free(p->lengths);
    memset(p, 0, sizeof(*p));
}

/* Forgets the session's query, and the execution it was to run next, if any. */
static void query_clear(struct db_conn *c)
{
    if (c->q.exec != NULL) {
        params_free(&c->q.exec->p);
        free(c->q.exec);
    }
    memset(&c->q, 0, sizeof(c->q));
}

/* The first line of a libpq message, without the "connection to server at ... failed: " prefix:
 * that prefix carries host and port, and nothing from the conninfo is logged. */
static void reason_copy(char *out, size_t cap, const char *msg)
{
    const char *line = msg ? msg : "";
    const char *p, *end;
    size_t n;

    end = strchr(line, '\n');
    if (end == NULL)
        end = line + strlen(line);
    for (p = line; (p = strstr(p, "failed: ")) != NULL && p < end; p += 8)
        line = p + 8;
    n = (size_t)(end - line);
    if (n >= cap)
        n = cap - 1;
    memcpy(out, line, n);
    out[n] = '\0';
    if (n == 0)
        snprintf(out, cap, "unknown error");
}

static void notice_cb(void *arg, const char *msg)
{
    struct db_conn *c = arg;
    char reason[DB_REASON_BYTES];

    /* The default processor prints to stderr, which would break the JSON log stream. */
    reason_copy(reason, sizeof(reason), msg);
    log_debug("db_notice", "conn=%u %s", c->index, reason);
}

static int result_is_error(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR;
}

/* ---- pool-level dispatch ---------------------------------------------------------------- */

static void db_on_kick(uv_timer_t *t)
{
    db_dispatch(container_of(t, struct db, kick_timer));
}

/* Defers work to the loop so that no user callback ever runs inside an API call. */
static void db_kick(struct db *db)
{
    if (!db->timers_closing)
        uv_timer_start(&db->kick_timer, db_on_kick, 0, 0);
}

static void db_on_wait_timer(uv_timer_t *t);

static void db_wait_timer_update(struct db *db)
{
    uint64_t now, delay;

    if (db->timers_closing)
        return;
    if (db->waiting.head == NULL) {
        uv_timer_stop(&db->wait_timer);
        return;
    }
    now = uv_now(db->loop);
    delay = db->waiting.head->deadline_ms > now ? db->waiting.head->deadline_ms - now : 0;
    uv_timer_start(&db->wait_timer, db_on_wait_timer, delay, 0);
}

/* Moves every queued waiter to the delivery queue with status. */
static void db_fail_waiters(struct db *db, int status)
{
    struct db_waiter *w;
    bool moved = false;

    while ((w = wq_pop(&db->waiting)) != NULL) {
        w->status = status;
        wq_push(&db->done, w);
        moved = true;
    }
    /* Only when there is something to deliver: db_dispatch calls this on every turn. */
    if (moved)
        db_kick(db);
}

static void db_on_wait_timer(uv_timer_t *t)
{
    struct db *db = container_of(t, struct db, wait_timer);
    uint64_t now = uv_now(db->loop);
    struct db_waiter *w;

    while (db->waiting.head != NULL && db->waiting.head->deadline_ms <= now) {
        w = wq_pop(&db->waiting);
        w->status = VR_ETIMEDOUT;
        wq_push(&db->done, w);
    }
    db_dispatch(db);
}

static struct db_conn *db_find_ready(struct db *db)
{
    for (unsigned i = 0; i < db->cfg.pool_size; i++) {
        if (db->conns[i].state == CONN_READY)
            return &db->conns[i];
    }
    return NULL;
}

/* Hands idle connections to waiters and delivers decided outcomes. Only the work present on
 * entry is done, so a callback that re-acquires at once cannot starve the loop. */
static void db_dispatch(struct db *db)
{
    struct db_waiter *w, *list;
    unsigned budget = db->waiting.n;
    struct db_conn *c;

    if (db->closing)
        db_fail_waiters(db, VR_ECLOSED);
    else if (db->health == HEALTH_DOWN)
        db_fail_waiters(db, VR_EUNAVAIL);

    while (budget-- > 0 && db->waiting.head != NULL && !db->closing &&
           (c = db_find_ready(db)) != NULL) {
        db_acquire_cb cb;
        void *arg;

        w = wq_pop(&db->waiting);
        cb = w->cb;
        arg = w->arg;
        free(w);
        c->state = CONN_BUSY;
        cb(&c->session, 0, arg);
    }

    list = db->done.head;
    db->done.head = db->done.tail = NULL;
    db->done.n = 0;
    while ((w = list) != NULL) {
        db_acquire_cb cb = w->cb;
        void *arg = w->arg;
        int status = w->status;

        list = w->next;
        free(w);
        cb(NULL, status, arg);
    }
    if (db->done.head != NULL)
        db_kick(db);
    db_wait_timer_update(db);
    db_maybe_finish_close(db);
}

static void db_set_down(struct db *db, const char *reason)
{
    if (db->health == HEALTH_DOWN)
        return;
    db->health = HEALTH_DOWN;
    log_warn("db_down", "no database connection: %s", reason);
    db_fail_waiters(db, VR_EUNAVAIL);
}

/* ---- polling ---------------------------------------------------------------------------- */

static void poll_close_cb(uv_handle_t *h)
{
    struct db_poll *p = container_of(h, struct db_poll, handle);
    struct db *db = p->conn->db;

    close(p->fd);
    free(p);
    db->n_polls--;
    db_maybe_finish_close(db);
}

/* Must run before libpq closes or replaces the socket: libuv must not poll a closed fd. */
static void conn_poll_close(struct db_conn *c)
{
    if (c->poll == NULL)
        return;
    uv_poll_stop(&c->poll->handle);
    uv_close((uv_handle_t *)&c->poll->handle, poll_close_cb);
    c->poll = NULL;
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Polls libpq's current socket for events. With check_socket, first compares the socket's
 * identity (not its number: a new socket often reuses the old number) with the polled one,
 * since PQconnectPoll may replace it (multi-host, SSL/GSS retries). Returns 0 or VR_EIO. */
static int conn_poll_arm(struct db_conn *c, int events, int check_socket)
{
    int fd = PQsocket(c->pg);
    struct db_poll *p;
    struct stat st;
    int dup_fd;

    if (fd < 0)
        return VR_EIO;
    if (c->poll != NULL && check_socket) {
        if (fstat(fd, &st) != 0)
            return VR_EIO;
        if (st.st_dev != c->poll->dev || st.st_ino != c->poll->ino)
            conn_poll_close(c);
    }
    if (c->poll == NULL) {
        if (fstat(fd, &st) != 0)
            return VR_EIO;
        dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (dup_fd < 0)
            return VR_EIO;
        p = xcalloc(1, sizeof(*p));
        if (uv_poll_init_socket(c->db->loop, &p->handle, dup_fd) != 0) {
            /* Not registered with the loop yet, so plain free is correct here. */
            close(dup_fd);
            free(p);
            return VR_EIO;
        }
        p->conn = c;
        p->fd = dup_fd;
        p->dev = st.st_dev;
        p->ino = st.st_ino;
        c->poll = p;
        c->db->n_polls++;
    }
    p = c->poll;
    if (p->events != events) {
        if (uv_poll_start(&p->handle, events, on_poll) != 0)
            return VR_EIO;
        p->events = events;
    }
    return 0;
}

/* Pushes libpq's output buffer; keeps watching writable while it is not empty. */
static int conn_flush_arm(struct db_conn *c, int check_socket)
{
    int r = PQflush(c->pg);

    if (r < 0)
        return VR_EIO;
    c->flushing = r == 1;
    return conn_poll_arm(c, UV_READABLE | (c->flushing ? UV_WRITABLE : 0), check_socket);
}

static void stmt_name(unsigned stmt, char *out, size_t cap)
{
    snprintf(out, cap, "vr_%u", stmt);
}

/* Sends sql, or with sql NULL the statement prepared as stmt. lengths NULL: every parameter is
 * text; otherwise lengths[i] >= 0 sends params[i] as binary of that length (bytea) and
 * lengths[i] < 0 as text. */
static int conn_send_stmt(struct db_conn *c, const char *sql, unsigned stmt, int nparams,
                          const char *const *params, const int *lengths, int check_socket)
{
    int *formats = NULL;
    char name[16];
    int ok;

    if (lengths != NULL) {
        formats = xcalloc((size_t)nparams, sizeof(*formats));
        for (int i = 0; i < nparams; i++)
            formats[i] = lengths[i] >= 0;
    }
    if (sql != NULL) {
        ok = PQsendQueryParams(c->pg, sql, nparams, NULL, params, lengths, formats, 0);
    } else {
        stmt_name(stmt, name, sizeof(name));
        ok = PQsendQueryPrepared(c->pg, name, nparams, params, lengths, formats, 0);
    }
    free(formats);
    if (!ok)
        return VR_EIO;
    return conn_flush_arm(c, check_socket);
}

static int conn_send(struct db_conn *c, const char *sql, int nparams, const char *const *params,
                     const int *lengths, int check_socket)
{
    return conn_send_stmt(c, sql, 0, nparams, params, lengths, check_socket);
}

static void conn_query_begin(struct db_conn *c, enum query_kind kind, db_result_cb cb, void *arg)
{
    query_clear(c);
    c->q.active = 1;
    c->q.kind = kind;
    c->q.cb = cb;
    c->q.arg = arg;
}

static uint64_t conn_watchdog_ms(const struct db_conn *c)
{
    /* The server cancels at statement_timeout; past this margin the peer is presumed gone. */
    return c->db->cfg.query_timeout_ms + c->db->cfg.connect_timeout_ms;
}

/* ---- connection lifecycle --------------------------------------------------------------- */

/* Forgets the PGconn: stop polling first, then let libpq close its socket. */
static void conn_drop(struct db_conn *c, const char *reason)
{
    struct db *db = c->db;

    uv_timer_stop(&c->timer);
    conn_poll_close(c);
    if (c->pg != NULL) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    c->flushing = 0;
    if (c->q.res != NULL) {
        PQclear(c->q.res);
        c->q.res = NULL;
    }
    if (c->live) {
        c->live = 0;
        db->n_live--;
        if (db->n_live == 0 && !db->closing)
            db_set_down(db, reason);
    }
}

static void conn_timer_close_cb(uv_handle_t *h)
{
    struct db_conn *c = container_of((uv_timer_t *)h, struct db_conn, timer);
    struct db *db = c->db;

    db->n_conns_open--;
    db_maybe_finish_close(db);
}

static void conn_close_final(struct db_conn *c)
{
    if (c->state == CONN_CLOSED)
        return;
    conn_drop(c, "closing");
    query_clear(c);
    c->notify_cb = NULL;
    c->state = CONN_CLOSED;
    uv_close((uv_handle_t *)&c->timer, conn_timer_close_cb);
}

/* Schedules the next connect attempt with exponential backoff and "equal jitter". */
static void conn_retry(struct db_conn *c)
{
    struct db *db = c->db;
    uint64_t base, delay;

    if (db->closing) {
        conn_close_final(c);
        return;
    }
    query_clear(c);
    c->state = CONN_DOWN;
    if (c->backoff_ms == 0)
        base = db->cfg.reconnect_min_ms;
    else
        base = c->backoff_ms * 2 > db->cfg.reconnect_max_ms ? db->cfg.reconnect_max_ms
                                                            : c->backoff_ms * 2;
    c->backoff_ms = base;
    delay = base / 2 + vr_rand(&db->rng) % (base / 2 + 1);
    log_debug("db_conn_retry", "conn=%u in_ms=%llu", c->index, (unsigned long long)delay);
    uv_timer_start(&c->timer, conn_on_timer, delay, 0);
}

static void conn_lost_idle(struct db_conn *c, const char *why);

static void conn_idle(struct db_conn *c)
{
    if (c->recycle) {
        c->state = CONN_READY;
        conn_lost_idle(c, "recycled after a read-only or fatal error");
        return;
    }
    c->state = CONN_READY;
    db_kick(c->db);
}

static void conn_established(struct db_conn *c)
{
    struct db *db = c->db;

    uv_timer_stop(&c->timer);
    c->backoff_ms = 0;
    c->live = 1;
    db->n_live++;
    db->reason[0] = '\0';
    if (db->insist_rw)
        db->read_only = false; /* libpq checked that this session is writable */
    log_debug("db_conn_ready", "conn=%u", c->index);
    if (db->health != HEALTH_UP) {
        db->health = HEALTH_UP;
        log_info("db_up", "database connection established");
    }
    conn_idle(c);
}

/* Runs the user's callback last: it may release, query again or close the pool. */
static void conn_deliver(struct db_conn *c, PGresult *res, int status)
{
    db_result_cb cb = c->q.cb;
    void *arg = c->q.arg;
    int cancelled = c->q.cancelled;

    query_clear(c);
    if (c->state != CONN_CLOSED)
        uv_timer_stop(&c->timer);
    if (!cancelled)
        cb(&c->session, res, status, arg);
    PQclear(res);
    if (cancelled)
        conn_release_now(c);
    else if (c->state == CONN_BUSY && c->notify_cb != NULL && !c->q.active)
        uv_timer_start(&c->timer, conn_on_timer, 0, 0); /* what came with the answer */
}

/* Hands what LISTEN brought to the watcher, between queries. The callback may release the
 * session, after which the connection is no longer its own. */
static void conn_notifies(struct db_conn *c)
{
    PGnotify *n;

    while (c->state == CONN_BUSY && c->notify_cb != NULL && !c->q.active && c->pg != NULL &&
           (n = PQnotifies(c->pg)) != NULL) {
        c->notify_cb(&c->session, n->relname, n->extra, c->notify_arg);
        PQfreemem(n);
    }
}

/* Drops the connection; reason_out (DB_REASON_BYTES) gets why, copied first: why often points
 * into the PGconn that conn_drop frees. */
static void conn_lose(struct db_conn *c, const char *why, char *reason_out)
{
    reason_copy(reason_out, DB_REASON_BYTES, why);
    memcpy(c->db->reason, reason_out, DB_REASON_BYTES);
    log_debug("db_conn_lost", "conn=%u reason=%s", c->index, reason_out);
    conn_drop(c, reason_out);
}

/* A connection no session holds broke: drop it and connect again later. */
static void conn_lost_idle(struct db_conn *c, const char *why)
{
    char reason[DB_REASON_BYTES];

    conn_lose(c, why, reason);
    conn_retry(c);
}

static void conn_break(struct db_conn *c, const char *why)
{
    char reason[DB_REASON_BYTES];
    enum conn_state st = c->state;

    conn_lose(c, why, reason);
    switch (st) {
    case CONN_CONNECTING:
    case CONN_SETUP: {
        struct db *db = c->db;
        unsigned failed = 0;

        c->failed_once = 1;
        for (unsigned i = 0; i < db->cfg.pool_size; i++)
            failed += db->conns[i].failed_once;
        if (db->health == HEALTH_STARTING && db->n_live == 0 && failed == db->cfg.pool_size)
            db_set_down(db, reason);
        conn_retry(c);
        break;
    }
    case CONN_READY:
    case CONN_ROLLBACK:
        conn_retry(c);
        break;
    case CONN_BUSY:
        /* The session stays held; its next query fails, release reconnects. */
        if (c->q.active && !c->q.deferred)
            conn_deliver(c, NULL, VR_EUNAVAIL);
        else if (!c->q.active && c->notify_cb != NULL)
            c->notify_cb(&c->session, NULL, NULL, c->notify_arg);
        break;
    default:
        break;
    }
}

static void conn_connect_start(struct db_conn *c)
{
    c->state = CONN_CONNECTING;
    c->recycle = 0;
    c->prepared = 0;
    c->pg = PQconnectStartParams(c->db->keywords, c->db->values, 1);
    if (c->pg == NULL) {
        conn_break(c, "out of memory");
        return;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_break(c, PQerrorMessage(c->pg));
        return;
    }
    PQsetNoticeProcessor(c->pg, notice_cb, c);
    uv_timer_start(&c->timer, conn_on_timer, c->db->cfg.connect_timeout_ms, 0);
    /* libpq: behave as if PQconnectPoll had just returned PGRES_POLLING_WRITING. */
    if (conn_poll_arm(c, UV_WRITABLE, 1) != 0)
        conn_break(c, "cannot poll the connection socket");
}

static void conn_connect_step(struct db_conn *c)
{
    const char *sp[2];

    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        if (conn_poll_arm(c, UV_READABLE, 1) != 0)
            conn_break(c, "cannot poll the connection socket");
        return;
    case PGRES_POLLING_WRITING:
        if (conn_poll_arm(c, UV_WRITABLE, 1) != 0)
            conn_break(c, "cannot poll the connection socket");
        return;
    case PGRES_POLLING_OK:
        break;
    default:
        conn_break(c, PQerrorMessage(c->pg));
        return;
    }
    if (PQsetnonblocking(c->pg, 1) != 0) {
        conn_break(c, PQerrorMessage(c->pg));
        return;
    }
    /* Not ready (and not counted as live) until the session settings are in place. */
    c->state = CONN_SETUP;
    conn_query_begin(c, QUERY_SETUP, NULL, NULL);
    sp[0] = c->db->timeout_param;
    sp[1] = c->db->lock_param;
    if (conn_send(c, sql_setup, 2, sp, NULL, 1) != 0)
        conn_break(c, PQerrorMessage(c->pg));
}

/* SQLSTATE classes after which the connection is not worth keeping: connection exceptions,
 * the server shutting down or the session terminated, and a read-only server (a failover left
 * us on a standby, or writes were switched off): reconnecting finds the writable primary. */
static bool state_recycles(const char *state)
{
    return strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
           strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0 ||
           strcmp(state, "25006") == 0;
}

static bool error_is(const PGresult *res, const char *sqlstate)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    return state != NULL && strcmp(state, sqlstate) == 0;
}

static void conn_check_error(struct db_conn *c, const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    /* Our prepared statements are gone (DISCARD ALL, or a pooler that moved the session to
     * another server connection): prepare them again on their next use. */
    if (state != NULL && strcmp(state, "26000") == 0)
        c->prepared = 0;
    if (state == NULL || !state_recycles(state))
        return;
    c->recycle = 1;
    if (strcmp(state, "25006") == 0 && c->db->cfg.read_write)
        db_set_read_only(c->db, true);
}

/* The statement of q.exec is now prepared: send its execution as the session's query. */
static void conn_exec_prepared(struct db_conn *c)
{
    struct db_exec *e = c->q.exec;

    c->prepared |= UINT64_C(1) << e->stmt;
    c->q.exec = NULL;
    c->q.kind = QUERY_USER;
    if (conn_send_stmt(c, NULL, e->stmt, e->p.n, (const char *const *)e->p.values, e->p.lengths,
                       0) != 0) {
        params_free(&e->p);
        free(e);
        conn_break(c, PQerrorMessage(c->pg));
        return;
    }
    params_free(&e->p);
    free(e);
}

/* The statement finished (PQgetResult returned NULL). */
static void conn_query_done(struct db_conn *c)
{
    PGresult *res = c->q.res;
    int status;

    c->q.res = NULL;
    if (PQstatus(c->pg) == CONNECTION_BAD || res == NULL) {
        /* A FATAL error (e.g. admin shutdown) then EOF: the connection is gone, not the query. */
        PQclear(res);
        conn_break(c, PQerrorMessage(c->pg));
        return;
    }
    status = result_is_error(res) ? VR_EDB : 0;
    switch (c->q.kind) {
    case QUERY_SETUP:
        query_clear(c);
        if (status != 0) {
            char reason[DB_REASON_BYTES];

            reason_copy(reason, sizeof(reason), PQresultErrorMessage(res));
            PQclear(res);
            conn_break(c, reason);
            return;
        }
        PQclear(res);
        conn_established(c);
        return;
    case QUERY_ROLLBACK:
        query_clear(c);
        PQclear(res);
        if (status != 0 || PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
            conn_break(c, "rollback on release failed");
            return;
        }
        uv_timer_stop(&c->timer);
        conn_idle(c);
        return;
    case QUERY_PREPARE:
        /* 42P05: the server still had it (some were lost, not all): it is prepared. */
        if (status == 0 || error_is(res, "42P05")) {
            PQclear(res);
            conn_exec_prepared(c);
            return;
        }
        /* The preparation's error is the statement's. */
        conn_check_error(c, res);
        conn_deliver(c, res, status);
        return;
    case QUERY_USER:
        if (status != 0)
            conn_check_error(c, res);
        conn_deliver(c, res, status);
        return;
    }
}

/* Socket ready while connected: read what arrived, write what is pending, collect results. */
static void conn_io(struct db_conn *c)
{
    PGresult *res;

    if (!PQconsumeInput(c->pg)) {
        conn_break(c, PQerrorMessage(c->pg));
        return;
    }
    if (c->flushing && conn_flush_arm(c, 0) != 0) {
        conn_break(c, PQerrorMessage(c->pg));
        return;
    }
    if (c->q.active && !c->q.deferred) {
        while (!PQisBusy(c->pg)) {
            ExecStatusType st;

            res = PQgetResult(c->pg);
            if (res == NULL) {
                conn_query_done(c);
                return;
            }
            st = PQresultStatus(res);
            if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
                PQclear(res);
                conn_break(c, "COPY is not supported");
                return;
            }
            if (c->q.res == NULL) {
                c->q.res = res;
            } else if (result_is_error(c->q.res)) {
                PQclear(res);
            } else {
                PQclear(c->q.res);
                c->q.res = res;
            }
        }
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_break(c, PQerrorMessage(c->pg));
        return;
    }
    conn_notifies(c);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct db_poll *p = container_of(h, struct db_poll, handle);
    struct db_conn *c = p->conn;

    (void)events;
    if (c->poll != p)
        return;
    if (status < 0) {
        /* libuv has already stopped the handle; waiting would hang forever. A refused connect
         * shows up here too: libpq has the better reason. */
        if (c->state == CONN_CONNECTING && PQconnectPoll(c->pg) == PGRES_POLLING_FAILED)
            conn_break(c, PQerrorMessage(c->pg));
        else
            conn_break(c, uv_strerror(status));
        return;
    }
    switch (c->state) {
    case CONN_CONNECTING:
        conn_connect_step(c);
        break;
    case CONN_SETUP:
    case CONN_READY:
    case CONN_BUSY:
    case CONN_ROLLBACK:
        conn_io(c);
        break;
    default:
        break;
    }
}

static void conn_on_timer(uv_timer_t *t)
{
    struct db_conn *c = container_of(t, struct db_conn, timer);

    switch (c->state) {
    case CONN_DOWN:
        conn_connect_start(c);
        break;
    case CONN_CONNECTING:
    case CONN_SETUP:
        conn_break(c, "connect timed out");
        break;
    case CONN_BUSY:
    case CONN_ROLLBACK:
        if (c->q.active && c->q.deferred)
            conn_deliver(c, NULL, c->q.deferred);
        else if (c->q.active)
            conn_break(c, "query watchdog expired");
        else
            conn_notifies(c);
        break;
    default:
        break;
    }
}

/* Returns a held connection to the pool (the session's query, if any, is done). */
static void conn_release_now(struct db_conn *c)
{
    const char *why;

    if (c->db->closing) {
        conn_close_final(c);
        return;
    }
    if (c->pg == NULL) {
        conn_retry(c);
        return;
    }
    if (c->recycle) {
        /* Dropping the connection also ends any transaction left open on it. */
        c->state = CONN_ROLLBACK;
        query_clear(c);
        conn_lost_idle(c, "recycled after a read-only or fatal error");
        return;
    }
    switch (PQtransactionStatus(c->pg)) {
    case PQTRANS_IDLE:
        conn_idle(c);
        return;
    case PQTRANS_INTRANS:
    case PQTRANS_INERROR:
        c->state = CONN_ROLLBACK;
        conn_query_begin(c, QUERY_ROLLBACK, NULL, NULL);
        if (conn_send(c, sql_rollback, 0, NULL, NULL, 0) != 0) {
            conn_lost_idle(c, PQerrorMessage(c->pg));
            return;
        }
        uv_timer_start(&c->timer, conn_on_timer, conn_watchdog_ms(c), 0);
        return;
    default:
        why = "connection in an unknown transaction state";
        break;
    }
    c->state = CONN_ROLLBACK;
    query_clear(c);
    conn_lost_idle(c, why);
}

/* ---- closing ---------------------------------------------------------------------------- */

static void db_timer_close_cb(uv_handle_t *h)
{
    struct db *db = h->data;
    void (*done_cb)(void *arg) = db->done_cb;
    void *done_arg = db->done_arg;

    if (--db->n_timers_open > 0)
        return;
    free(db->conns);
    free(db->conninfo);
    free(db);
    if (done_cb != NULL)
        done_cb(done_arg);
}

/* The pool's own timers close last: they deliver the final VR_ECLOSED outcomes. */
static void db_maybe_finish_close(struct db *db)
{
    if (!db->closing || db->timers_closing)
        return;
    if (db->n_conns_open != 0 || db->n_polls != 0 || db->done.head != NULL ||
        db->waiting.head != NULL)
        return;
    db->timers_closing = 1;
    uv_close((uv_handle_t *)&db->kick_timer, db_timer_close_cb);
    uv_close((uv_handle_t *)&db->wait_timer, db_timer_close_cb);
}

/* ---- public API ------------------------------------------------------------------------- */

/* 0 when cfg can make a pool. */
static int config_check(const struct db_config *cfg)
{
    PQconninfoOption *opts;
    char *err = NULL;

    if (cfg == NULL || cfg->conninfo == NULL)
        return VR_EINVAL;
    /* Parse errors can quote the conninfo (password included): never show err. */
    opts = PQconninfoParse(cfg->conninfo, &err);
    if (err != NULL)
        PQfreemem(err);
    if (opts == NULL)
        return VR_EINVAL;
    PQconninfoFree(opts);
    if (cfg->pool_size > DB_MAX_POOL_SIZE || cfg->query_timeout_ms > INT32_MAX ||
        cfg->lock_timeout_ms > INT32_MAX)
        return VR_EINVAL;
    return 0;
}

static void config_defaults(struct db_config *cfg)
{
    VR_DEFAULT(cfg->pool_size, DB_DEFAULT_POOL_SIZE);
    VR_DEFAULT(cfg->connect_timeout_ms, DB_DEFAULT_CONNECT_MS);
    VR_DEFAULT(cfg->reconnect_min_ms, DB_DEFAULT_RECONNECT_MIN);
    VR_DEFAULT(cfg->reconnect_max_ms, DB_DEFAULT_RECONNECT_MAX);
    VR_DEFAULT(cfg->query_timeout_ms, DB_DEFAULT_QUERY_MS);
    VR_DEFAULT(cfg->max_waiters, DB_DEFAULT_MAX_WAITERS);
    VR_DEFAULT(cfg->acquire_timeout_ms, DB_DEFAULT_ACQUIRE_MS);
    if (cfg->reconnect_max_ms < cfg->reconnect_min_ms)
        cfg->reconnect_max_ms = cfg->reconnect_min_ms;
}

/* The value conninfo, or else the environment, gives keyword; NULL when neither does. The
 * returned string lives in opts. */
static const char *conninfo_value(PQconninfoOption *opts, const char *keyword, const char *env)
{
    const char *v;

    for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++) {
        if (strcmp(o->keyword, keyword) == 0 && o->val != NULL && o->val[0] != '\0')
            return o->val;
    }
    v = getenv(env);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* Our defaults, then the user's conninfo: libpq keeps the last value of a repeated keyword. */
static void db_keywords(struct db *db)
{
    PQconninfoOption *opts = PQconninfoParse(db->conninfo, NULL);
    const char *tsa = conninfo_value(opts, "target_session_attrs", "PGTARGETSESSIONATTRS");
    size_t n = 0;

#define KW(k, v) (db->keywords[n] = (k), db->values[n] = (v), n++)
    if (db->cfg.read_write && tsa == NULL)
        KW("target_session_attrs", "read-write");
    db->insist_rw = db->cfg.read_write &&
                    (tsa == NULL || strcmp(tsa, "read-write") == 0 || strcmp(tsa, "primary") == 0);
    /* A peer that vanishes without a FIN (a failed-over host, a cut cable) is noticed in
     * about a minute instead of the kernel's two hours. */
    KW("keepalives", "1");
    KW("keepalives_idle", "30");
    KW("keepalives_interval", "10");
    KW("keepalives_count", "3");
    KW("dbname", db->conninfo);
#undef KW
    db->keywords[n] = db->values[n] = NULL;
    PQconninfoFree(opts);
}

int db_new(struct db **out, uv_loop_t *loop, const struct db_config *cfg)
{
    struct db *db;

    *out = NULL;
    if (loop == NULL || config_check(cfg) != 0)
        return VR_EINVAL;
    db = xcalloc(1, sizeof(*db));
    db->loop = loop;
    db->cfg = *cfg;
    db->conninfo = xstrdup(cfg->conninfo);
    db->cfg.conninfo = NULL;
    config_defaults(&db->cfg);
    if (db->cfg.lock_timeout_ms == 0)
        db->cfg.lock_timeout_ms =
            db->cfg.query_timeout_ms / 2 > 0 ? db->cfg.query_timeout_ms / 2 : 1;
    snprintf(db->timeout_param, sizeof(db->timeout_param), "%llu",
             (unsigned long long)db->cfg.query_timeout_ms);
    snprintf(db->lock_param, sizeof(db->lock_param), "%llu",
             (unsigned long long)db->cfg.lock_timeout_ms);
    db_keywords(db);
    db->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)db;
    if (db->rng == 0)
        db->rng = 0x9e3779b97f4a7c15ULL;
    db->health = HEALTH_STARTING;

    uv_timer_init(loop, &db->kick_timer);
    uv_timer_init(loop, &db->wait_timer);
    db->kick_timer.data = db;
    db->wait_timer.data = db;
    db->n_timers_open = 2;

    db->conns = xcalloc(db->cfg.pool_size, sizeof(*db->conns));
    for (unsigned i = 0; i < db->cfg.pool_size; i++) {
        struct db_conn *c = &db->conns[i];

        c->db = db;
        c->index = i;
        c->session.conn = c;
        c->state = CONN_DOWN;
        uv_timer_init(loop, &c->timer);
        db->n_conns_open++;
    }
    for (unsigned i = 0; i < db->cfg.pool_size; i++)
        conn_connect_start(&db->conns[i]);
    *out = db;
    return 0;
}

void db_close(struct db *db, void (*done_cb)(void *arg), void *arg)
{
    if (db->closing)
        return;
    db->closing = 1;
    db->done_cb = done_cb;
    db->done_arg = arg;
    db_fail_waiters(db, VR_ECLOSED);
    for (unsigned i = 0; i < db->cfg.pool_size; i++) {
        if (db->conns[i].state != CONN_BUSY)
            conn_close_final(&db->conns[i]);
    }
    log_info("db_closing", "closing the database pool");
    db_maybe_finish_close(db);
}

void db_state(const struct db *db, struct db_state *out)
{
    memset(out, 0, sizeof(*out));
    out->starting = db->health == HEALTH_STARTING && db->n_live == 0;
    out->up = db->health == HEALTH_UP && db->n_live > 0;
    out->read_only = db->read_only;
    out->live = db->n_live;
    out->waiting = db->waiting.n;
    snprintf(out->reason, sizeof(out->reason), "%s", db->reason);
}

void db_set_read_only(struct db *db, bool read_only)
{
    if (!read_only || db->closing) {
        db->read_only = read_only && !db->closing;
        return;
    }
    /* Once is enough: each busy connection that meets 25006 is recycled by itself, and
     * without read-write in target_session_attrs a reconnect would land on the same server. */
    if (db->read_only || !db->insist_rw) {
        db->read_only = true;
        return;
    }
    log_warn("db_read_only",
             "the database refuses writes: reconnecting to find a writable primary");
    db->read_only = true;
    for (unsigned i = 0; i < db->cfg.pool_size; i++) {
        struct db_conn *c = &db->conns[i];

        if (c->state == CONN_READY)
            conn_lost_idle(c, "the database is read-only");
        else if (c->state == CONN_BUSY || c->state == CONN_ROLLBACK)
            c->recycle = 1;
    }
}

void db_acquire(struct db *db, db_acquire_cb cb, void *arg)
{
    struct db_waiter *w;

    if (db->timers_closing) {
        /* Past the point where anything can be deferred; the pool is all but gone. */
        cb(NULL, VR_ECLOSED, arg);
        return;
    }
    w = xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    if (db->closing) {
        w->status = VR_ECLOSED;
    } else if (db->health == HEALTH_DOWN || db->waiting.n >= db->cfg.max_waiters) {
        w->status = VR_EUNAVAIL;
    } else {
        w->deadline_ms = uv_now(db->loop) + db->cfg.acquire_timeout_ms;
        wq_push(&db->waiting, w);
        if (db->waiting.n == 1)
            db_wait_timer_update(db);
        db_kick(db);
        return;
    }
    wq_push(&db->done, w);
    db_kick(db);
}

/* A session's statement was sent (status 0), or not: VR_EIO drops the connection, and the
 * failure is delivered from the loop. */
static void session_sent(struct db_conn *c, int status)
{
    if (status == VR_EIO) {
        char reason[DB_REASON_BYTES];

        reason_copy(reason, sizeof(reason), PQerrorMessage(c->pg));
        conn_drop(c, reason);
        status = VR_EUNAVAIL;
    }
    if (status != 0) {
        c->q.deferred = status;
        uv_timer_start(&c->timer, conn_on_timer, 0, 0);
        return;
    }
    uv_timer_start(&c->timer, conn_on_timer, conn_watchdog_ms(c), 0);
}

void db_session_query(struct db_session *s, const char *sql, int nparams, const char *const *params,
                      const int *lengths, db_result_cb cb, void *arg)
{
    struct db_conn *c = s->conn;
    int status = 0;

    assert(c->state == CONN_BUSY && !c->q.active);
    conn_query_begin(c, QUERY_USER, cb, arg);
    if (c->db->closing) {
        status = VR_ECLOSED;
    } else if (sql == NULL || nparams < 0 || nparams > DB_MAX_PARAMS ||
               (nparams > 0 && params == NULL)) {
        status = VR_EINVAL;
    } else if (c->pg == NULL) {
        status = VR_EUNAVAIL;
    } else if (conn_send(c, sql, nparams, params, lengths, 0) != 0) {
        status = VR_EIO;
    }
    session_sent(c, status);
}

void db_session_prepared(struct db_session *s, unsigned stmt, const char *sql, int nparams,
                         const char *const *params, const int *lengths, db_result_cb cb, void *arg)
{
    struct db_conn *c = s->conn;
    char name[16];
    int status = 0;

    assert(c->state == CONN_BUSY && !c->q.active);
    conn_query_begin(c, QUERY_USER, cb, arg);
    if (c->db->closing) {
        status = VR_ECLOSED;
    } else if (sql == NULL || stmt >= DB_MAX_PREPARED || nparams < 0 || nparams > DB_MAX_PARAMS ||
               (nparams > 0 && params == NULL)) {
        status = VR_EINVAL;
    } else if (c->pg == NULL) {
        status = VR_EUNAVAIL;
    } else if (c->prepared & (UINT64_C(1) << stmt)) {
        if (conn_send_stmt(c, NULL, stmt, nparams, params, lengths, 0) != 0)
            status = VR_EIO;
    } else {
        /* Prepared on first use, so that a pool works before the schema exists (migrate). */
        c->q.kind = QUERY_PREPARE;
        c->q.exec = xcalloc(1, sizeof(*c->q.exec));
        c->q.exec->stmt = stmt;
        params_copy(&c->q.exec->p, nparams, params, lengths);
        stmt_name(stmt, name, sizeof(name));
        if (!PQsendPrepare(c->pg, name, sql, nparams, NULL) || conn_flush_arm(c, 0) != 0)
            status = VR_EIO;
    }
    session_sent(c, status);
}

void db_session_watch(struct db_session *s, db_notify_cb cb, void *arg)
{
    struct db_conn *c = s->conn;

    assert(c->state == CONN_BUSY);
    c->notify_cb = cb;
    c->notify_arg = arg;
    if (!c->q.active)
        uv_timer_start(&c->timer, conn_on_timer, 0, 0);
}

void db_release(struct db_session *s)
{
    struct db_conn *c = s->conn;

    assert(c->state == CONN_BUSY && !c->q.cancelled);
    if (c->notify_cb != NULL) {
        /* Its LISTEN must not follow the connection into other hands. */
        c->notify_cb = NULL;
        c->notify_arg = NULL;
        c->recycle = 1;
    }
    if (c->q.active) {
        if (!c->q.deferred) {
            c->q.cancelled = 1;
            return;
        }
        uv_timer_stop(&c->timer);
        query_clear(c);
    }
    conn_release_now(c);
}

/* ---- acquire + query + release ---------------------------------------------------------- */

struct db_oneshot {
    struct db *db;
    db_result_cb cb;
    void *arg;
    char *sql;
    struct db_params p;
};

static void oneshot_free(struct db_oneshot *o)
{
    params_free(&o->p);
    free(o->sql);
    free(o);
}

static void oneshot_done(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct db_oneshot *o = arg;

    o->cb(NULL, res, status, o->arg);
    db_release(s);
    oneshot_free(o);
}

static void oneshot_acquired(struct db_session *s, int status, void *arg)
{
    struct db_oneshot *o = arg;

    if (status != 0) {
        o->cb(NULL, NULL, status, o->arg);
        oneshot_free(o);
        return;
    }
    db_session_query(s, o->sql, o->p.n, (const char *const *)o->p.values, o->p.lengths,
                     oneshot_done, o);
}

void db_query(struct db *db, const char *sql, int nparams, const char *const *params,
              const int *lengths, db_result_cb cb, void *arg)
{
    struct db_oneshot *o = xcalloc(1, sizeof(*o));

    o->db = db;
    o->cb = cb;
    o->arg = arg;
    /* Invalid arguments travel on and come back as VR_EINVAL from db_session_query. */
    if (nparams >= 0 && nparams <= DB_MAX_PARAMS && (nparams == 0 || params != NULL)) {
        o->sql = sql != NULL ? xstrdup(sql) : NULL;
        params_copy(&o->p, nparams, params, lengths);
    }
    db_acquire(db, oneshot_acquired, o);
}

/* ---- errors --------------------------------------------------------------------------- */

/* Failures that a retry may cure become VR_EUNAVAIL: connection loss, timeouts and
 * cancellations, server shutdown, lack of resources, lock and serialization failures, and a
 * prepared statement the server lost (it is prepared again next time). */
int db_classify(const PGresult *res, int status, const char *what, char *err, size_t errlen)
{
    const char *state, *msg;

    if (status != VR_EDB) {
        snprintf(err, errlen, "%s: %s", what,
                 status == VR_ETIMEDOUT  ? "no database connection came free in time"
                 : status == VR_ECLOSED  ? "the database pool is closing"
                 : status == VR_EUNAVAIL ? "database unavailable"
                                         : vr_strerror(status));
        return status == VR_ECLOSED || status == VR_ETIMEDOUT ? VR_EUNAVAIL : status;
    }
    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (state == NULL)
        state = "";
    snprintf(err, errlen, "%s: %s (SQLSTATE %s)", what, msg ? msg : "unknown error", state);
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "57", 2) == 0 ||
        strncmp(state, "53", 2) == 0 || strncmp(state, "40", 2) == 0 ||
        strcmp(state, "55P03") == 0 || strcmp(state, "25006") == 0 || strcmp(state, "26000") == 0)
        return VR_EUNAVAIL;
    return VR_EDB;
}
