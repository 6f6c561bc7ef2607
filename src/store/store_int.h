/* Shared by the files of the store: the struct, the scaffolding of an operation, the checked
 * decoders of result fields. */
#ifndef VR_STORE_INT_H
#define VR_STORE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "db.h"
#include "store.h"

#define STORE_ERROR_BYTES 256

struct store_listen;
struct store_batch;

/* Statements prepared once per connection (db_session_prepared), by number. */
enum store_stmt {
    STMT_CASE_SELECT,  /* voids.c: one case */
    STMT_CASES_SELECT, /* voids.c: the cases of a batch */
    STMT_CASES_LOCK,   /* voids.c: the cases of a batch, locked */
    STMT_VOIDS_WRITE,  /* voids.c */
    STMT_DELIVERY,     /* webhooks.c */
    STMT_CANCELLATION, /* webhooks.c */
};

/* What the writer does with an operation it batches (writer.c). */
enum store_item { ITEM_VOID, ITEM_DELIVERY, ITEM_CANCELLATION };

struct store {
    uv_loop_t *loop;
    char *conninfo; /* for connections made later (the change feed's listener) */
    uint64_t timeout_ms;
    struct db *db;
    struct db *health_db;        /* NULL: health readings use db */
    struct store_listen *listen; /* NULL: none (store_listen_cases) */
    uint64_t poll_first_ms;
    uint64_t poll_confirm_ms;
    void (*done_cb)(void *arg);
    void *done_arg;
    /* The writer (writer.c): operations waiting for a batch, in arrival order, and the
     * batches under way. */
    struct store_op *queue_head, *queue_tail;
    size_t queued;
    struct store_batch *batches;
    unsigned in_flight;
    bool acquiring; /* a batch is waiting for its connection */
    unsigned write_batch;
    unsigned write_concurrency;
    uint64_t batches_done, batch_items;
};

/* Stops the listener, releases its connection and closes its pool, frees it, then calls
 * done_cb(arg) (feed.c). */
void store_listen_close(struct store_listen *l, void (*done_cb)(void *arg), void *arg);

/* SQL that returns the applied schema version as one row, one column (migrate.c and health). */
extern const char store_sql_schema_version[];

/* An operation answered through a store_done_cb. */
struct store_op {
    struct store *st;
    const struct store_delivery *d;
    store_done_cb cb;
    void *arg;
    struct db_session *s; /* held by operations of several statements */
    int attempts;
    struct store_result result;
    const struct store_void_report *rep; /* void reports */
    const char *outcome;                 /* plain deliveries */
    const char *reason;                  /* plain deliveries: NULL allowed */
    const struct store_cancellation *canc;
    /* The writer's: its kind, its place in the queue, and for a void report the case as the
     * report found it (in the database or after the batch's earlier reports) and the
     * decision taken on it. */
    enum store_item kind;
    struct store_op *next;
    struct voidcase_state cur;
    int64_t version, lease;
    struct voidcase_decision dec;
    bool written; /* its statement wrote it (store_voids_read) */
    char error[STORE_ERROR_BYTES];
};

struct store_op *store_op_new(struct store *st, const struct store_delivery *d, store_done_cb cb,
                              void *arg);

/* Releases the session, calls back with status (result.error set from op->error on failure)
 * and frees op. */
void store_op_finish(struct store_op *op, int status);

/* A failed statement: sorts status with db_classify into op->error, then finishes. */
void store_op_fail(struct store_op *op, const PGresult *res, int status, const char *what);

/* Queues a write (void report, delivery or cancellation) for the writer's next batch. */
void store_write(struct store_op *op);

/* ---- void reports and deliveries, as the writer runs them ---------------------------------- */

/* Locks the cases of n void reports in key order (in a transaction; the answer has nothing to
 * read), and reads them, as one snapshot: in a transaction, after locking them. */
void store_voids_lock(struct db_session *s, struct store_op **voids, size_t n, db_result_cb cb,
                      void *arg);
void store_voids_select(struct db_session *s, struct store_op **voids, size_t n, db_result_cb cb,
                        void *arg);

/* Decides each report in order on the rows store_voids_select read, chaining reports of the
 * same case: 0, or the status of a report that cannot be written (VR_ESTATE: the poll's lease
 * was taken over; VR_EDB: a stored status is not a void status), error in op->error. */
int store_void_decide(struct store_op *op, struct store_op *const *earlier, size_t n_earlier,
                      const PGresult *rows);

/* Each kind's statement sent on s (its answer goes to cb), and that answer read into
 * op->result: 0, or VR_EDB (op->error says why). Void reports of distinct cases are written by
 * one statement for n of them; its answer may also be STORE_CHANGED: a case changed after it
 * was read (error of the first report on VR_EDB). */
#define STORE_CHANGED 1
void store_voids_send(struct store_op *const *ops, size_t n, struct db_session *s, db_result_cb cb,
                      void *arg);
int store_voids_read(struct store_op *const *ops, size_t n, const PGresult *res);
void store_delivery_send(struct store_op *op, struct db_session *s, db_result_cb cb, void *arg);
int store_delivery_read(struct store_op *op, const PGresult *res);
void store_cancellation_send(struct store_op *op, struct db_session *s, db_result_cb cb, void *arg);
int store_cancellation_read(struct store_op *op, const PGresult *res);

/* The same case. */
bool store_void_same(const struct store_op *a, const struct store_op *b);

/* Typed reads of one row; the first field that does not decode is remembered and later reads
 * return zero values, so a caller checks once, with store_row_check, after reading. */
struct store_row {
    const PGresult *res;
    int row;
    int bad_col; /* -1 while every field decoded */
};

void store_row_init(struct store_row *r, const PGresult *res, int row);
bool store_row_null(const struct store_row *r, int col);
int64_t store_row_i64(struct store_row *r, int col);      /* NULL reads as 0 */
int store_row_int(struct store_row *r, int col);          /* NULL reads as 0; must fit an int */
bool store_row_bool(struct store_row *r, int col);        /* NULL reads as false */
const char *store_row_text(struct store_row *r, int col); /* NULL reads as NULL */

/* 0, or VR_EDB with err naming what was read and the field that did not decode. */
int store_row_check(const struct store_row *r, const char *what, char *err, size_t errlen);

/* Runs one statement whose answer is one row with a count in its first column; cb gets the
 * count. sql and params are borrowed for the call only; what, naming the operation in error
 * text, must be a static string. */
void store_run_count(struct store *st, const char *sql, int nparams, const char *const *params,
                     const char *what, store_count_cb cb, void *arg);

/* d->replay_of as a statement parameter: its decimal text in out, or NULL when it is 0. */
const char *store_delivery_replay_of(const struct store_delivery *d, char *out, size_t cap);

/* Decimal text of v in out (24 bytes are enough), for statement parameters. */
const char *store_i64_text(int64_t v, char *out, size_t cap);
const char *store_u64_text(uint64_t v, char *out, size_t cap);

#endif
