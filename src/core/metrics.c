/* Fixed label sets, so the exposition cannot grow with what clients send; the providers' come
 * from provider_all. */
#include "metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "provider.h"

static const char *const webhook_outcomes[] = {"applied", "duplicate", "stale", "conflict",
                                               "ignored", "rejected",  "failed"};
/* The handlers after one "webhooks_<name>" per provider. */
static const char *const handlers[] = {"api", "healthz", "readyz", "metrics", "other"};
static const char *const sources[] = {"webhook", "poll", "api"};
static const char *const transition_outcomes[] = {"applied", "duplicate", "stale", "conflict"};
static const char *const poll_results[] = {"ok", "failed", "rate_limited", "lease_lost",
                                           "deferred"};
/* Seconds; from a fast health check to a request that waited for a slow database. */
static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,    1,     2.5,  5,     10};

#define NPROV PROVIDER_MAX
#define NWOUT ARRAY_SIZE(webhook_outcomes)
#define NHAND (NPROV + ARRAY_SIZE(handlers))
#define NSRC  ARRAY_SIZE(sources)
#define NTOUT ARRAY_SIZE(transition_outcomes)
#define NPOLL ARRAY_SIZE(poll_results)
#define NBUCK ARRAY_SIZE(buckets)

static struct {
    uint64_t webhooks[NPROV][NWOUT];
    uint64_t requests[NHAND][6]; /* by status class 1xx..5xx; [0] unused */
    uint64_t duration_buckets[NHAND][NBUCK];
    uint64_t duration_count[NHAND];
    double duration_sum[NHAND];
    uint64_t transitions[NSRC][NTOUT];
    uint64_t polls[NPOLL];
    uint64_t alerts_delivered;
    uint64_t alerts_failed;
    uint64_t pruned[2]; /* by pruned_tables[] */
} m;

/* The tables retention prunes, as voidrecon_pruned_rows_total labels them. */
static const char *const pruned_tables[] = {"deliveries", "void_case_events"};

static int index_of(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], name) == 0)
            return (int)i;
    }
    return -1;
}

static int provider_index(const char *name, size_t len)
{
    const struct provider *p = provider_find(name, len);

    for (size_t i = 0; p != NULL && i < provider_count; i++) {
        if (provider_all[i] == p)
            return (int)i;
    }
    return -1;
}

void metrics_webhook(const char *provider, const char *outcome)
{
    int p = provider_index(provider, strlen(provider));
    int o = index_of(webhook_outcomes, NWOUT, outcome);

    if (p >= 0 && o >= 0)
        m.webhooks[p][o]++;
}

/* A provider's endpoint is its handler, token or not; the others are named by their path. */
static size_t handler_of(const char *path)
{
    static const char webhooks[] = "/webhooks/";
    enum { H_API, H_HEALTHZ, H_READYZ, H_METRICS, H_OTHER }; /* the order of handlers[] */
    int p;

    if (strncmp(path, webhooks, sizeof(webhooks) - 1) == 0) {
        const char *name = path + sizeof(webhooks) - 1;

        if ((p = provider_index(name, strcspn(name, "/"))) >= 0)
            return (size_t)p;
        return NPROV + H_OTHER;
    }
    if (strncmp(path, "/v1", 3) == 0 && (path[3] == '\0' || path[3] == '/'))
        return NPROV + H_API;
    if (strcmp(path, "/healthz") == 0)
        return NPROV + H_HEALTHZ;
    if (strcmp(path, "/readyz") == 0)
        return NPROV + H_READYZ;
    if (strcmp(path, "/metrics") == 0)
        return NPROV + H_METRICS;
    return NPROV + H_OTHER;
}

/* The label of handler h; buf holds "webhooks_<name>" for a provider's. */
static const char *handler_name(size_t h, char *buf, size_t cap)
{
    if (h >= NPROV)
        return handlers[h - NPROV];
    snprintf(buf, cap, "webhooks_%s", provider_all[h]->name);
    return buf;
}

void metrics_http(const char *path, int status, double seconds)
{
    size_t h = handler_of(path);

    if (status >= 100 && status < 600)
        m.requests[h][status / 100]++;
    for (size_t b = 0; b < NBUCK; b++) {
        if (seconds <= buckets[b])
            m.duration_buckets[h][b]++;
    }
    m.duration_count[h]++;
    m.duration_sum[h] += seconds;
}

void metrics_transition(const char *source, const char *outcome)
{
    int s = index_of(sources, NSRC, source), o = index_of(transition_outcomes, NTOUT, outcome);

    if (s >= 0 && o >= 0)
        m.transitions[s][o]++;
}

void metrics_poll(const char *result)
{
    int r = index_of(poll_results, NPOLL, result);

    if (r >= 0)
        m.polls[r]++;
}

void metrics_alert_delivery(bool delivered)
{
    if (delivered)
        m.alerts_delivered++;
    else
        m.alerts_failed++;
}

void metrics_pruned(const char *table, uint64_t rows)
{
    int t = index_of(pruned_tables, ARRAY_SIZE(pruned_tables), table);

    if (t >= 0)
        m.pruned[t] += rows;
}

/* ---- rendering ---------------------------------------------------------------------------- */

/* The label sets are fixed, so the exposition has a known size; past this it is a bug. */
#define METRICS_MAX_BYTES ((size_t)1 << 20)

static void put(struct buf *o, const char *fmt, ...) VR_PRINTF(2, 3);

static void put(struct buf *o, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = buf_vaddf(o, fmt, ap);
    va_end(ap);
    if (r != 0)
        vr_panic("the metrics exposition outgrew %zu bytes", METRICS_MAX_BYTES);
}

static void family(struct buf *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_webhooks(struct buf *o)
{
    family(o, "voidrecon_webhooks_received_total", "counter",
           "Webhooks received, by provider and what became of them.");
    for (size_t p = 0; p < provider_count; p++)
        for (size_t w = 0; w < NWOUT; w++)
            put(o,
                "voidrecon_webhooks_received_total{provider=\"%s\",outcome=\"%s\"} %" PRIu64 "\n",
                provider_all[p]->name, webhook_outcomes[w], m.webhooks[p][w]);
}

static void render_http(struct buf *o)
{
    char name[64];
    const char *hn;

    family(o, "voidrecon_http_requests_total", "counter",
           "HTTP requests answered, by handler and status class.");
    for (size_t h = 0; h < NHAND; h++)
        for (int c = 1; c <= 5; c++)
            if (m.requests[h][c] > 0)
                put(o, "voidrecon_http_requests_total{handler=\"%s\",code=\"%dxx\"} %" PRIu64 "\n",
                    handler_name(h, name, sizeof(name)), c, m.requests[h][c]);

    family(o, "voidrecon_http_request_duration_seconds", "histogram",
           "Time from a request's arrival to its answer, by handler.");
    for (size_t h = 0; h < NHAND; h++) {
        if (h >= provider_count && h < NPROV)
            continue; /* room for providers not in provider_all */
        hn = handler_name(h, name, sizeof(name));
        for (size_t b = 0; b < NBUCK; b++)
            put(o,
                "voidrecon_http_request_duration_seconds_bucket{handler=\"%s\",le=\"%g\"} %" PRIu64
                "\n",
                hn, buckets[b], m.duration_buckets[h][b]);
        put(o,
            "voidrecon_http_request_duration_seconds_bucket{handler=\"%s\",le=\"+Inf\"} %" PRIu64
            "\n",
            hn, m.duration_count[h]);
        put(o, "voidrecon_http_request_duration_seconds_sum{handler=\"%s\"} %.6f\n", hn,
            m.duration_sum[h]);
        put(o, "voidrecon_http_request_duration_seconds_count{handler=\"%s\"} %" PRIu64 "\n", hn,
            m.duration_count[h]);
    }
}

static void render_pruned(struct buf *o)
{
    family(o, "voidrecon_pruned_rows_total", "counter",
           "Rows removed by retention in this process, by table.");
    for (size_t t = 0; t < ARRAY_SIZE(pruned_tables); t++)
        put(o, "voidrecon_pruned_rows_total{table=\"%s\"} %" PRIu64 "\n", pruned_tables[t],
            m.pruned[t]);
}

/* The incidents shared by every process, as this one last saw them. */
static void render_incidents(struct buf *o, const struct metrics_gauges *g)
{
    family(o, "voidrecon_atlas_circuit_open", "gauge",
           "1 while Atlas fails for every case and polling is paused but for probes "
           "(atlas_failing), else 0.");
    put(o, "voidrecon_atlas_circuit_open %d\n", g->circuit_open ? 1 : 0);
    family(o, "voidrecon_atlas_circuit_open_since_seconds", "gauge",
           "When the open circuit opened, Unix time; 0 while closed.");
    put(o, "voidrecon_atlas_circuit_open_since_seconds %" PRId64 "\n",
        g->circuit_open ? g->circuit_since_s : 0);
    family(o, "voidrecon_webhooks_silent", "gauge",
           "1 while Atlas webhooks look silent (webhooks_silent), else 0.");
    put(o, "voidrecon_webhooks_silent %d\n", g->webhooks_silent ? 1 : 0);
    family(o, "voidrecon_webhooks_silent_since_seconds", "gauge",
           "When the silence was raised, Unix time; 0 while webhooks arrive.");
    put(o, "voidrecon_webhooks_silent_since_seconds %" PRId64 "\n",
        g->webhooks_silent ? g->silent_since_s : 0);
}

/* The writer's group commit: a queue that stays long means the database cannot keep up. */
static void render_writer(struct buf *o, const struct metrics_gauges *g)
{
    family(o, "voidrecon_write_queue", "gauge",
           "Writes (webhooks, poll answers) waiting for a batch of the group commit.");
    put(o, "voidrecon_write_queue %" PRIu64 "\n", g->write_queued);
    family(o, "voidrecon_write_in_flight", "gauge",
           "Writes in batches under way, not yet committed.");
    put(o, "voidrecon_write_in_flight %" PRIu64 "\n", g->write_in_flight);
    family(o, "voidrecon_write_batches_total", "counter",
           "Batches of writes committed, each one transaction or one statement.");
    put(o, "voidrecon_write_batches_total %" PRIu64 "\n", g->write_batches);
    family(o, "voidrecon_write_batch_items_total", "counter",
           "Writes in the committed batches (divided by the batches: their mean size).");
    put(o, "voidrecon_write_batch_items_total %" PRIu64 "\n", g->write_batch_items);
}

/* How long the oldest of a backlog has waited: a count alone cannot tell a queue that moves
 * from one that is stuck. */
static void render_ages(struct buf *o, const struct metrics_gauges *g)
{
    family(o, "voidrecon_alert_oldest_undelivered_seconds", "gauge",
           "Age of the oldest alert not delivered yet, 0 when none is.");
    put(o, "voidrecon_alert_oldest_undelivered_seconds %.3f\n", g->alert_oldest_s);
    family(o, "voidrecon_followup_oldest_seconds", "gauge",
           "How long the oldest follow-up (a case's open reason, or an order cancellation) has "
           "waited for a person, 0 when none.");
    put(o, "voidrecon_followup_oldest_seconds %.3f\n", g->followup_oldest_s);
}

char *metrics_render(const struct metrics_gauges *g)
{
    struct buf o;

    buf_init(&o, METRICS_MAX_BYTES);
    family(&o, "voidrecon_build_info", "gauge", "The running version.");
    put(&o, "voidrecon_build_info{version=\"%s\"} 1\n", VOIDRECON_VERSION);
    render_webhooks(&o);
    render_http(&o);

    family(&o, "voidrecon_transitions_total", "counter",
           "Void reports through the state machine, by source and outcome.");
    for (size_t s = 0; s < NSRC; s++)
        for (size_t t = 0; t < NTOUT; t++)
            put(&o, "voidrecon_transitions_total{source=\"%s\",outcome=\"%s\"} %" PRIu64 "\n",
                sources[s], transition_outcomes[t], m.transitions[s][t]);

    family(&o, "voidrecon_polls_total", "counter", "Polls of queryVoidOrders.do, by result.");
    for (size_t r = 0; r < NPOLL; r++)
        put(&o, "voidrecon_polls_total{result=\"%s\"} %" PRIu64 "\n", poll_results[r], m.polls[r]);

    family(&o, "voidrecon_alert_deliveries_total", "counter",
           "Alert delivery attempts, by result.");
    put(&o, "voidrecon_alert_deliveries_total{result=\"delivered\"} %" PRIu64 "\n",
        m.alerts_delivered);
    put(&o, "voidrecon_alert_deliveries_total{result=\"failed\"} %" PRIu64 "\n", m.alerts_failed);

    render_pruned(&o);

    family(&o, "voidrecon_database_up", "gauge",
           "1 while the pool holds an established database connection, else 0.");
    put(&o, "voidrecon_database_up %d\n", g->db_up ? 1 : 0);
    family(&o, "voidrecon_database_read_only", "gauge",
           "1 while the database refuses writes (a standby, or read-only), else 0.");
    put(&o, "voidrecon_database_read_only %d\n", g->db_read_only ? 1 : 0);
    family(&o, "voidrecon_poller_paused", "gauge",
           "1 while Atlas has asked the poller to wait (HTTP 429), else 0.");
    put(&o, "voidrecon_poller_paused %d\n", g->poller_paused ? 1 : 0);
    render_incidents(&o, g);
    render_writer(&o, g);
    if (g->have_counts) {
        family(&o, "voidrecon_open_cases", "gauge", "Void cases whose status is open.");
        put(&o, "voidrecon_open_cases %" PRId64 "\n", g->open_cases);
        family(&o, "voidrecon_followup_cases", "gauge", "Void cases waiting for a person.");
        put(&o, "voidrecon_followup_cases %" PRId64 "\n", g->followup_cases);
        family(&o, "voidrecon_followups", "gauge",
               "Open follow-up reasons of void cases, by reason (a case may have several).");
        for (unsigned i = 0; i < VOIDCASE_FOLLOWUP_COUNT; i++)
            put(&o, "voidrecon_followups{reason=\"%s\"} %" PRId64 "\n", voidcase_followup_name(i),
                g->followups[i]);
        family(&o, "voidrecon_alert_backlog", "gauge", "Alerts not delivered yet.");
        put(&o, "voidrecon_alert_backlog %" PRId64 "\n", g->alert_backlog);
        family(&o, "voidrecon_poll_lag_seconds", "gauge",
               "Age of the oldest poll that is due, 0 when none is.");
        put(&o, "voidrecon_poll_lag_seconds %.3f\n", g->poll_lag_s);
        render_ages(&o, g);
        family(&o, "voidrecon_gauges_age_seconds", "gauge",
               "Time since the counts above were read from the database.");
        put(&o, "voidrecon_gauges_age_seconds %.3f\n", g->gauges_age_s);
    }
    return buf_take(&o);
}
