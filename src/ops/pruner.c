/* Retention runs: deliveries first, then unchanged history rows, batch after batch, each batch
 * asked for only when the last one has committed, so pruning holds at most one connection and
 * every webhook waiting for one is served between two batches. */
#include "pruner.h"

#include <inttypes.h>
#include <stdlib.h>

#include "log.h"
#include "metrics.h"

#define DEFAULT_INTERVAL_MS 3600000
#define DEFAULT_BATCH       1000
/* A process that restarts more often than the interval still prunes. */
#define MAX_FIRST_DELAY_MS 60000

struct run {
    struct store *st;
    struct pruner_config cfg;
    bool wait;
    bool stopping; /* end the run after the batch under way */
    enum store_prune_kind kind;
    struct store_prune_cursor cur;
    struct pruner_totals totals;
    uint64_t started_ns;
    uint64_t batch_ns; /* when the batch under way was asked for */
    pruner_done_cb cb;
    void *arg;
};

struct pruner {
    uv_loop_t *loop;
    struct store *st;
    struct pruner_config cfg;
    uv_timer_t timer;
    struct run run;
    bool running;
    bool closing;
    void (*done_cb)(void *arg);
    void *done_arg;
};

static const char *table_of(enum store_prune_kind kind)
{
    return kind == STORE_PRUNE_DELIVERIES ? "deliveries" : "void_case_events";
}

static void run_end(struct run *r, int status, const char *error)
{
    r->totals.took_ms = (uv_hrtime() - r->started_ns) / 1000000;
    r->cb(status, error, &r->totals, r->arg);
}

static void run_batch(struct run *r);

static void batch_done(int status, const char *error, const struct store_prune_result *res,
                       void *arg)
{
    struct run *r = arg;

    r->totals.batches++;
    log_debug("prune_batch", "table=%s removed=%" PRId64 " ms=%.1f%s", table_of(r->kind),
              res->removed, (double)(uv_hrtime() - r->batch_ns) / 1e6, res->busy ? " busy" : "");
    if (res->removed > 0) {
        metrics_pruned(table_of(r->kind), (uint64_t)res->removed);
        if (r->kind == STORE_PRUNE_DELIVERIES)
            r->totals.deliveries += res->removed;
        else
            r->totals.events += res->removed;
    }
    if (status != 0 || res->busy || r->stopping) {
        r->totals.busy = res->busy;
        run_end(r, status, error);
        return;
    }
    if (!res->more) {
        if (r->kind == STORE_PRUNE_EVENTS) {
            run_end(r, 0, "");
            return;
        }
        r->kind = STORE_PRUNE_EVENTS;
    }
    run_batch(r);
}

/* The next batch of the run's table, moving on to the next table while this one keeps all. */
static void run_batch(struct run *r)
{
    uint64_t age = r->kind == STORE_PRUNE_DELIVERIES ? r->cfg.delivery_retention_ms
                                                     : r->cfg.event_retention_ms;

    if (age == 0 && r->kind == STORE_PRUNE_DELIVERIES) {
        r->kind = STORE_PRUNE_EVENTS;
        age = r->cfg.event_retention_ms;
    }
    if (age == 0) {
        run_end(r, 0, "");
        return;
    }
    r->batch_ns = uv_hrtime();
    store_prune_batch(r->st, r->kind, age, r->cfg.batch, r->wait, &r->cur, batch_done, r);
}

static void run_start(struct run *r, struct store *st, const struct pruner_config *cfg, bool wait,
                      pruner_done_cb cb, void *arg)
{
    *r = (struct run){.st = st, .cfg = *cfg, .wait = wait, .cb = cb, .arg = arg};
    VR_DEFAULT(r->cfg.batch, DEFAULT_BATCH);
    r->kind = STORE_PRUNE_DELIVERIES;
    r->started_ns = uv_hrtime();
    run_batch(r);
}

/* ---- serve ---------------------------------------------------------------------------------- */

static void pruner_maybe_done(struct pruner *p);

static void run_ended(int status, const char *error, const struct pruner_totals *t, void *arg)
{
    struct pruner *p = arg;

    p->running = false;
    if (status != 0)
        log_warn("prune_failed",
                 "%s; removed %" PRId64 " deliveries and %" PRId64
                 " unchanged history rows before it; the next run tries again",
                 error, t->deliveries, t->events);
    else if (t->deliveries > 0 || t->events > 0)
        log_info("pruned",
                 "removed %" PRId64 " deliveries and %" PRId64
                 " unchanged history rows in %u batches, %" PRIu64 " ms%s",
                 t->deliveries, t->events, t->batches, t->took_ms,
                 t->busy ? "; another voidrecon process is pruning the rest" : "");
    else if (t->busy)
        log_debug("prune_busy", "another voidrecon process is pruning");
    else
        log_debug("prune_nothing", "nothing to prune");
    pruner_maybe_done(p);
}

static void on_timer(uv_timer_t *t)
{
    struct pruner *p = t->data;

    if (p->running || p->closing)
        return;
    p->running = true;
    run_start(&p->run, p->st, &p->cfg, false, run_ended, p);
}

struct pruner *pruner_new(uv_loop_t *loop, struct store *st, const struct pruner_config *cfg)
{
    struct pruner *p = xcalloc(1, sizeof(*p));
    uint64_t first;

    p->loop = loop;
    p->st = st;
    p->cfg = *cfg;
    VR_DEFAULT(p->cfg.interval_ms, DEFAULT_INTERVAL_MS);
    first = p->cfg.interval_ms < MAX_FIRST_DELAY_MS ? p->cfg.interval_ms : MAX_FIRST_DELAY_MS;
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, on_timer, first, p->cfg.interval_ms);
    return p;
}

static void timer_closed(uv_handle_t *h)
{
    struct pruner *p = h->data;
    void (*done_cb)(void *arg) = p->done_cb;
    void *done_arg = p->done_arg;

    free(p);
    if (done_cb != NULL)
        done_cb(done_arg);
}

static void pruner_maybe_done(struct pruner *p)
{
    if (!p->closing || p->running || uv_is_closing((uv_handle_t *)&p->timer))
        return;
    uv_close((uv_handle_t *)&p->timer, timer_closed);
}

void pruner_close(struct pruner *p, void (*done_cb)(void *arg), void *arg)
{
    p->closing = true;
    p->run.stopping = true;
    p->done_cb = done_cb;
    p->done_arg = arg;
    uv_timer_stop(&p->timer);
    pruner_maybe_done(p);
}

/* ---- once ----------------------------------------------------------------------------------- */

struct once {
    struct run run;
    pruner_done_cb cb;
    void *arg;
};

static void once_ended(int status, const char *error, const struct pruner_totals *t, void *arg)
{
    struct once *o = arg;

    o->cb(status, error, t, o->arg);
    free(o);
}

void pruner_run_once(struct store *st, const struct pruner_config *cfg, pruner_done_cb cb,
                     void *arg)
{
    struct once *o = xcalloc(1, sizeof(*o));

    o->cb = cb;
    o->arg = arg;
    run_start(&o->run, st, cfg, true, once_ended, o);
}
