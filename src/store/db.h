/* Asynchronous PostgreSQL connection pool on a libuv loop: sessions, queries, reconnects.
 * Private to the store: nothing outside src/store/ sees libpq. */
#ifndef VR_DB_H
#define VR_DB_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <uv.h>

#include "common.h"

struct db;
/* Exclusive use of one pooled connection (e.g. for a transaction) between acquire and release. */
struct db_session;

/* Zero in any field selects its default. */
struct db_config {
    const char *conninfo;        /* libpq conninfo string or URI; copied, never logged */
    unsigned pool_size;          /* connections kept open; default 4 */
    uint64_t connect_timeout_ms; /* connect + session setup; default 5000 */
    uint64_t reconnect_min_ms;   /* reconnect backoff starts here; default 250 */
    uint64_t reconnect_max_ms;   /* and doubles up to here, with jitter; default 5000 */
    uint64_t query_timeout_ms;   /* server statement_timeout set on connect; default 10000 */
    unsigned max_waiters;        /* bound on queued db_acquire calls; default 1024 */
    uint64_t acquire_timeout_ms; /* how long a queued db_acquire waits; default 5000 */
    uint64_t lock_timeout_ms;    /* server lock_timeout set on connect; default half of
                                    query_timeout_ms, so a lock wait fails as transient first */
    /* Insist on a writable primary: target_session_attrs=read-write is added unless conninfo
     * or PGTARGETSESSIONATTRS sets it, and a read-only refusal (SQLSTATE 25006) recycles every
     * connection. Off for a connection that only reads (health checks). */
    bool read_write;
};

/* What the pool knows without asking the server. */
struct db_state {
    bool starting;  /* no connection attempt has finished yet */
    bool up;        /* at least one connection is established */
    bool read_only; /* a write was refused as read-only, or db_set_read_only said so, since
                       the last connection known to be writable */
    unsigned live;
    unsigned waiting;
    char reason[200]; /* why the last connection was lost or refused ("" when none); no
                         conninfo in it */
};

/* Status 0 with s != NULL, or s == NULL and VR_EUNAVAIL (every connection is down, or the wait
 * queue is full: fails at once, never queues), VR_ETIMEDOUT (waited acquire_timeout_ms) or
 * VR_ECLOSED (db_close was called). Always called from the loop, never from db_acquire itself. */
typedef void (*db_acquire_cb)(struct db_session *s, int status, void *arg);

/* Status 0: res is the statement's result (PGRES_COMMAND_OK or PGRES_TUPLES_OK).
 * VR_EDB: the server reported an error; res is that error result (PQresultErrorField works).
 * VR_EUNAVAIL: the connection was lost (or the client-side watchdog fired); res is NULL.
 * VR_ECLOSED: the query was issued after db_close; VR_EINVAL: bad arguments; res is NULL.
 * res is borrowed: the pool PQclear()s it when the callback returns. */
typedef void (*db_result_cb)(struct db_session *s, PGresult *res, int status, void *arg);

/* Creates a pool on loop and starts connecting every connection in the background; returns at
 * once with 0, or VR_EINVAL when conninfo is missing or unparsable. cfg and its strings are
 * copied. Caller ends it with db_close. Every session gets statement_timeout, lock_timeout,
 * synchronous_commit=on (an acknowledged webhook must survive a crash) and TCP keepalives
 * (unless conninfo sets them). Host names in conninfo are resolved by libpq synchronously:
 * use IP addresses (hostaddr) or sockets to never block. */
int db_new(struct db **out, uv_loop_t *loop, const struct db_config *cfg) VR_MUSTCHECK;

/* Fails queued and future acquires with VR_ECLOSED, lets queries in flight finish (their
 * callbacks run), closes each connection once its session is released (queries on a held
 * session now fail with VR_ECLOSED), frees the pool once every handle is closed and then calls
 * done_cb(arg) (NULL: none). */
void db_close(struct db *db, void (*done_cb)(void *arg), void *arg);

/* Borrows an idle connection, queueing FIFO for up to acquire_timeout_ms when all are busy. */
void db_acquire(struct db *db, db_acquire_cb cb, void *arg);

/* Sends one statement with parameters (NULL entries are SQL NULL) and text results; cb runs
 * once. lengths NULL: every parameter is text; otherwise lengths[i] >= 0 sends params[i] as
 * binary (for bytea) of that many bytes and lengths[i] < 0 as text. sql, params and lengths are
 * borrowed for the duration of the call only. One query at a time per session: issue the next
 * from the callback. */
void db_session_query(struct db_session *s, const char *sql, int nparams, const char *const *params,
                      const int *lengths, db_result_cb cb, void *arg);

/* Like db_session_query, but sql is prepared once per connection, under the number stmt
 * (below 64, chosen by the caller, always with the same sql), on its first use there, and
 * executed by name from then on: the server parses and plans it once, not per call. sql must
 * outlive the pool. If the server has lost it (SQLSTATE 26000: DISCARD ALL, or a pooler in
 * transaction mode), the call fails as transient and the connection prepares again. */
void db_session_prepared(struct db_session *s, unsigned stmt, const char *sql, int nparams,
                         const char *const *params, const int *lengths, db_result_cb cb, void *arg);

/* A notification arrived on a watched session's connection (channel and payload borrowed for
 * the call), or, with channel NULL, the connection was lost: the session stays held until the
 * caller releases it. The callback may release the session. */
typedef void (*db_notify_cb)(struct db_session *s, const char *channel, const char *payload,
                             void *arg);

/* Watches a held session between queries, for a LISTEN on it: every notification that arrives
 * (those already received included, delivered from the loop) and the connection's loss go to
 * cb. Released, the connection is closed and made anew rather than pooled, so that no LISTEN
 * outlives its session. */
void db_session_watch(struct db_session *s, db_notify_cb cb, void *arg);

/* Returns the session's connection to the pool. A connection left inside a transaction is
 * rolled back by the pool first; a broken one reconnects in the background. Releasing with a
 * query in flight cancels its callback (it will not run). s is invalid afterwards. */
void db_release(struct db_session *s);

/* Acquire + one query + release. sql, params and lengths (as for db_session_query) are
 * copied. cb gets s == NULL; acquire failures arrive as its status with res == NULL. */
void db_query(struct db *db, const char *sql, int nparams, const char *const *params,
              const int *lengths, db_result_cb cb, void *arg);

/* Fills out from the pool's state; never blocks, never queries. */
void db_state(const struct db *db, struct db_state *out);

/* Tells the pool the server is (read_only) or is again (!read_only) refusing writes, e.g. from
 * a health check on another connection. read_only recycles every connection (idle ones now,
 * held ones when released): after a failover they all point at the old primary. */
void db_set_read_only(struct db *db, bool read_only);

/* Sorts a failed query's status for the caller's answer: VR_EUNAVAIL when a retry may cure it
 * (connection lost or closed, timeouts and cancellations, server shutdown, lack of resources,
 * lock and serialization failures, a read-only server), VR_EDB otherwise; other statuses pass
 * through. Writes one line into err: what (the operation), then the server's message and SQLSTATE,
 * or why no connection could be had. Logs nothing: the caller decides. */
int db_classify(const PGresult *res, int status, const char *what, char *err, size_t errlen);

#endif
