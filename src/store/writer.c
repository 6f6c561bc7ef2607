/* The writer: group commit. Void reports, deliveries and cancellations wait in one queue; a
 * batch takes what is queued when it gets its connection (never waiting for more), reads the
 * cases of its void reports in one statement, decides every report in arrival order, writes
 * each run of reports of distinct cases with one statement and every other item with its own,
 * and commits once; then every item is answered. A batch that one statement writes needs no
 * transaction: the statement is atomic by itself.
 *
 * Reports of a case in a batch under way stay queued until that batch ends, so that no two
 * batches of this process write the same case and each case's reports keep their order. An
 * item the database refuses fails alone: the batch is rolled back and runs again without it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_int.h"

/* Runs of a batch that lost a race with another process writing one of its cases. */
#define WRITER_MAX_ATTEMPTS 8
/* Body bytes a batch holds at most (one larger body still makes a batch of its own). */
#define WRITER_BATCH_BYTES ((size_t)8 << 20)

static const char sql_begin[] = "BEGIN";
static const char sql_commit[] = "COMMIT";
static const char sql_rollback[] = "ROLLBACK";

struct store_batch {
    struct store *st;
    struct store_batch *next; /* st->batches */
    struct db_session *s;
    struct store_op **items; /* in arrival order */
    struct store_op **voids; /* scratch: the void reports among items */
    size_t nv;
    size_t n;
    size_t at;  /* the item whose statement runs next */
    size_t run; /* how many items from at on that statement writes */
    int attempts;
    bool solo; /* an item was refused: one statement per item, to find it */
    bool tx;   /* more than one statement: they share one transaction */
};

static void writer_kick(struct store *st);
static void batch_begin(struct store_batch *b);

static const char *item_what(const struct store_op *op)
{
    switch (op->kind) {
    case ITEM_VOID:
        return "applying a void report";
    case ITEM_DELIVERY:
        return "storing a delivery";
    case ITEM_CANCELLATION:
        return "storing an order cancellation";
    }
    return "writing";
}

/* Sends the statement of the b->run items from b->at on (several only for void reports). */
static void items_send(struct store_batch *b, db_result_cb cb)
{
    struct store_op *op = b->items[b->at];

    switch (op->kind) {
    case ITEM_VOID:
        store_voids_send(&b->items[b->at], b->run, b->s, cb, b);
        return;
    case ITEM_DELIVERY:
        store_delivery_send(op, b->s, cb, b);
        return;
    case ITEM_CANCELLATION:
        store_cancellation_send(op, b->s, cb, b);
        return;
    }
}

static int items_read(struct store_batch *b, const PGresult *res)
{
    struct store_op *op = b->items[b->at];

    switch (op->kind) {
    case ITEM_VOID:
        return store_voids_read(&b->items[b->at], b->run, res);
    case ITEM_DELIVERY:
        return store_delivery_read(op, res);
    case ITEM_CANCELLATION:
        return store_cancellation_read(op, res);
    }
    return VR_EINVAL;
}

/* ---- the queue ------------------------------------------------------------------------------ */

void store_write(struct store_op *op)
{
    struct store *st = op->st;

    op->next = NULL;
    if (st->queue_tail != NULL)
        st->queue_tail->next = op;
    else
        st->queue_head = op;
    st->queue_tail = op;
    st->queued++;
    writer_kick(st);
}

/* A report of a case that another batch under way writes. */
static bool held(const struct store *st, const struct store_batch *self, const struct store_op *op)
{
    if (op->kind != ITEM_VOID)
        return false;
    for (const struct store_batch *b = st->batches; b != NULL; b = b->next) {
        if (b == self)
            continue;
        for (size_t i = 0; i < b->n; i++) {
            if (store_void_same(b->items[i], op))
                return true;
        }
    }
    return false;
}

/* Moves what is queued into b, in order, up to the bounds; reports held by other batches stay
 * queued (and so do later reports of their cases, which are held too). */
static void batch_take(struct store_batch *b)
{
    struct store *st = b->st;
    struct store_op **link = &st->queue_head, *prev = NULL;
    size_t bytes = 0;

    while (*link != NULL && b->n < st->write_batch) {
        struct store_op *op = *link;
        size_t len = op->d != NULL ? op->d->body_len : 0;

        if (b->n > 0 && bytes + len > WRITER_BATCH_BYTES)
            break;
        if (held(st, b, op)) {
            prev = op;
            link = &op->next;
            continue;
        }
        *link = op->next;
        if (st->queue_tail == op)
            st->queue_tail = prev;
        st->queued--;
        op->next = NULL;
        b->items[b->n++] = op;
        bytes += len;
    }
}

/* ---- ending a batch ------------------------------------------------------------------------- */

/* Gives the connection back and takes b off the list, so that its cases are free again before
 * any item is answered (an answer may queue more writes). */
static void batch_detach(struct store_batch *b)
{
    struct store *st = b->st;

    if (b->s != NULL) {
        db_release(b->s);
        b->s = NULL;
    }
    for (struct store_batch **p = &st->batches; *p != NULL; p = &(*p)->next) {
        if (*p == b) {
            *p = b->next;
            break;
        }
    }
    st->in_flight--;
}

static void batch_free(struct store_batch *b)
{
    free(b->items);
    free(b->voids);
    free(b);
}

/* Frees b, then starts the next batch if one is due. */
static void st_kick_free(struct store_batch *b)
{
    struct store *st = b->st;

    batch_free(b);
    writer_kick(st);
}

/* Every item answered: 0 with what its statement returned, or status with res's error. */
static void batch_finish(struct store_batch *b, const PGresult *res, int status, const char *what)
{
    batch_detach(b);
    if (status == 0 && b->n > 0) {
        b->st->batches_done++;
        b->st->batch_items += b->n;
    }
    for (size_t i = 0; i < b->n; i++) {
        struct store_op *op = b->items[i];

        if (status == 0)
            store_op_finish(op, 0);
        else
            store_op_finish(op, db_classify(res, status, what != NULL ? what : item_what(op),
                                            op->error, sizeof(op->error)));
    }
    st_kick_free(b);
}

/* Every item answered with status, its error already in its own error. */
static void batch_answer(struct store_batch *b, int status)
{
    batch_detach(b);
    for (size_t i = 0; i < b->n; i++)
        store_op_finish(b->items[i], status);
    st_kick_free(b);
}

/* Every item answered with status, the error of the first item at b->at in each's error. */
static void batch_finish_all(struct store_batch *b, int status)
{
    const char *error = b->items[b->at]->error;

    for (size_t i = 0; i < b->n; i++) {
        if (b->items[i]->error != error)
            snprintf(b->items[i]->error, sizeof(b->items[i]->error), "%s", error);
    }
    batch_answer(b, status);
}

/* Answers the items a statement outside a transaction wrote, and drops them. */
static void batch_answer_written(struct store_batch *b)
{
    size_t kept = 0;

    for (size_t i = 0; i < b->n; i++) {
        struct store_op *op = b->items[i];

        if (op->written) {
            b->st->batch_items++;
            store_op_finish(op, 0);
        } else {
            b->items[kept++] = op;
        }
    }
    b->n = kept;
}

/* Answers item i alone with status (its error already in op->error) and drops it. */
static void batch_drop(struct store_batch *b, size_t i, int status)
{
    struct store_op *op = b->items[i];

    memmove(&b->items[i], &b->items[i + 1], (b->n - i - 1) * sizeof(struct store_op *));
    b->n--;
    store_op_finish(op, status);
}

/* ---- running a batch ------------------------------------------------------------------------ */

static void batch_rolled_back(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct store_batch *b = arg;

    (void)s;
    if (status != 0) {
        batch_finish(b, res, status, "rolling back a batch");
        return;
    }
    batch_begin(b);
}

/* Runs the batch again from the start: its transaction, if any, rolled back first. */
static void batch_again(struct store_batch *b)
{
    if (b->n == 0) {
        batch_finish(b, NULL, 0, NULL);
        return;
    }
    if (b->tx)
        db_session_query(b->s, sql_rollback, 0, NULL, NULL, batch_rolled_back, b);
    else
        batch_begin(b);
}

static void batch_committed(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct store_batch *b = arg;

    (void)s;
    batch_finish(b, res, status, status != 0 ? "committing a batch of writes" : NULL);
}

static void batch_write(struct store_batch *b);

/* Lock waits that end in a deadlock or a serialization failure: running again cures them. */
static bool race_lost(const PGresult *res)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    return state != NULL && (strcmp(state, "40P01") == 0 || strcmp(state, "40001") == 0);
}

static void batch_retry(struct store_batch *b)
{
    if (++b->attempts >= WRITER_MAX_ATTEMPTS) {
        for (size_t i = 0; i < b->n; i++)
            snprintf(b->items[i]->error, sizeof(b->items[i]->error),
                     "%s: its case kept changing; gave up after %d attempts",
                     item_what(b->items[i]), b->attempts);
        batch_answer(b, VR_EUNAVAIL);
        return;
    }
    log_debug("store_retry", "a case of a batch of %zu changed meanwhile: attempt %d", b->n,
              b->attempts + 1);
    batch_again(b);
}

/* The statement of items at..at+run-1 failed for good (VR_EDB, its error in the first item's
 * error) in a batch of several: one item is dropped and answered, or a run of several is written
 * again report by report to find the one at fault. */
static void batch_refused(struct store_batch *b, int status)
{
    if (b->run > 1) {
        b->solo = true;
    } else {
        batch_drop(b, b->at, status);
    }
    batch_again(b);
}

static void batch_written(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct store_batch *b = arg;
    struct store_op *op = b->items[b->at];
    int r;

    (void)s;
    if (status == 0) {
        r = items_read(b, res);
        if (r == 0) {
            b->at += b->run;
            batch_write(b);
        } else if (r == STORE_CHANGED) {
            /* Another process wrote a case meanwhile. Outside a transaction, the reports
             * whose cases took the write are done; the others run again. */
            if (!b->tx)
                batch_answer_written(b);
            batch_retry(b);
        } else if (b->n == 1 || !b->tx) {
            /* Written and committed, but its answer unreadable: never write it again. */
            batch_finish_all(b, r);
        } else {
            batch_refused(b, r);
        }
        return;
    }
    if (race_lost(res)) {
        batch_retry(b);
        return;
    }
    r = db_classify(res, status, item_what(op), op->error, sizeof(op->error));
    if (r == VR_EDB && b->n > 1) {
        /* Refused for good: an item's own fault; the others run again without it. */
        batch_refused(b, r);
        return;
    }
    batch_finish(b, res, status, NULL);
}

/* How many void reports from the one at from on, of distinct cases, one statement writes. */
static size_t run_length(const struct store_batch *b, size_t from)
{
    size_t m = 1;

    if (b->solo)
        return 1;
    while (from + m < b->n && b->items[from + m]->kind == ITEM_VOID) {
        for (size_t k = from; k < from + m; k++) {
            if (store_void_same(b->items[k], b->items[from + m]))
                return m;
        }
        m++;
    }
    return m;
}

static void batch_write(struct store_batch *b)
{
    if (b->at == b->n) {
        if (b->tx)
            db_session_query(b->s, sql_commit, 0, NULL, NULL, batch_committed, b);
        else
            batch_finish(b, NULL, 0, NULL);
        return;
    }
    b->run = b->items[b->at]->kind == ITEM_VOID ? run_length(b, b->at) : 1;
    items_send(b, batch_written);
}

/* Decides every void report in order; those that cannot be written are answered now. */
static void batch_selected(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct store_batch *b = arg;
    size_t kept = 0;

    (void)s;
    if (status != 0) {
        batch_finish(b, res, status, "reading void cases");
        return;
    }
    for (size_t i = 0; i < b->n; i++) {
        struct store_op *op = b->items[i];
        int r = op->kind == ITEM_VOID ? store_void_decide(op, b->items, kept, res) : 0;

        if (r != 0)
            store_op_finish(op, r);
        else
            b->items[kept++] = op;
    }
    b->n = kept;
    b->at = 0;
    batch_write(b);
}

/* The cases are locked: read them now, as committed by whoever held them. */
static void batch_locked(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct store_batch *b = arg;

    (void)s;
    if (status != 0 && race_lost(res)) {
        batch_retry(b);
        return;
    }
    if (status != 0) {
        batch_finish(b, res, status, "locking void cases");
        return;
    }
    store_voids_select(b->s, b->voids, b->nv, batch_selected, b);
}

static void batch_select(struct store_batch *b)
{
    b->nv = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (b->items[i]->kind == ITEM_VOID)
            b->voids[b->nv++] = b->items[i];
    }
    if (b->nv == 0) {
        b->at = 0;
        batch_write(b);
    } else if (b->tx) {
        store_voids_lock(b->s, b->voids, b->nv, batch_locked, b);
    } else {
        store_voids_select(b->s, b->voids, b->nv, batch_selected, b);
    }
}

static void batch_begun(struct db_session *s, PGresult *res, int status, void *arg)
{
    struct store_batch *b = arg;

    (void)s;
    if (status != 0) {
        batch_finish(b, res, status, "beginning a batch of writes");
        return;
    }
    batch_select(b);
}

static void batch_begin(struct store_batch *b)
{
    /* Several statements share a transaction; one statement that writes every item (void
     * reports of distinct cases, none to isolate) is atomic by itself: two round trips fewer. */
    b->tx = b->n > 1 && (b->items[0]->kind != ITEM_VOID || run_length(b, 0) < b->n);
    if (b->tx)
        db_session_query(b->s, sql_begin, 0, NULL, NULL, batch_begun, b);
    else
        batch_select(b);
}

static void batch_acquired(struct db_session *s, int status, void *arg)
{
    struct store_batch *b = arg;
    struct store *st = b->st;

    st->acquiring = false;
    b->s = s;
    batch_take(b);
    if (b->n == 0) {
        /* Everything queued waits for a batch under way, which kicks the writer when done. */
        batch_detach(b);
        batch_free(b);
        return;
    }
    if (status != 0) {
        batch_finish(b, NULL, status, NULL);
        return;
    }
    writer_kick(st);
    batch_begin(b);
}

/* Starts a batch when something is queued, no batch is waiting for a connection, and fewer
 * than write_concurrency are under way. */
static void writer_kick(struct store *st)
{
    struct store_batch *b;

    if (st->acquiring || st->queued == 0 || st->in_flight >= st->write_concurrency)
        return;
    b = xcalloc(1, sizeof(*b));
    b->st = st;
    b->items = xcalloc(st->write_batch, sizeof(struct store_op *));
    b->voids = xcalloc(st->write_batch, sizeof(struct store_op *));
    b->next = st->batches;
    st->batches = b;
    st->in_flight++;
    st->acquiring = true;
    db_acquire(st->db, batch_acquired, b);
}

void store_writer_state(const struct store *st, struct store_writer_state *out)
{
    out->queued = st->queued;
    out->in_flight = st->in_flight;
    out->in_flight_items = 0;
    for (const struct store_batch *b = st->batches; b != NULL; b = b->next)
        out->in_flight_items += b->n;
    out->batches = st->batches_done;
    out->items = st->batch_items;
}
