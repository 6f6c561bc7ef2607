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
    char error[STORE_ERROR_BYTES];
};

struct store_op *store_op_new(struct store *st, const struct store_delivery *d, store_done_cb cb,
                              void *arg);

/* Releases the session, calls back with status (result.error set from op->error on failure)
 * and frees op. */
void store_op_finish(struct store_op *op, int status);

/* A failed statement: sorts status with db_classify into op->error, then finishes. */
void store_op_fail(struct store_op *op, const PGresult *res, int status, const char *what);

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
