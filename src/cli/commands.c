/* The commands on the store: a private loop and a one-connection store running the same
 * functions as the API to completion; results printed as tables or JSON. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "api.h"
#include "atlas.h"
#include "cli_int.h"
#include "log.h"
#include "provider.h"
#include "pruner.h"
#include "replay.h"
#include "store.h"
#include "webhook.h"

struct cli {
    uv_loop_t loop;
    struct store *st;
    bool done;
    int status;
    char *json;
    char error[256];
    struct store_result res;
};

static int cli_open(struct cli *c, const struct config *cfg)
{
    char err[256];

    memset(c, 0, sizeof(*c));
    uv_loop_init(&c->loop);
    if (store_new(&c->st, &c->loop,
                  &(struct store_config){.conninfo = cfg->database_url,
                                         .pool_size = 1,
                                         .timeout_ms = cfg->db_timeout_ms,
                                         .poll_first_ms = cfg->poll_first_ms,
                                         .poll_confirm_ms = cfg->poll_confirm_ms},
                  err, sizeof(err)) != 0) {
        log_error("config_invalid", "VOIDRECON_DATABASE_URL: %s", err);
        (void)uv_loop_close(&c->loop);
        return 2;
    }
    return 0;
}

/* Runs the loop until the operation is done, then closes everything. */
static void cli_finish(struct cli *c)
{
    while (!c->done && uv_run(&c->loop, UV_RUN_ONCE) != 0)
        ;
    if (!c->done) {
        c->status = VR_EUNAVAIL;
        snprintf(c->error, sizeof(c->error), "the operation never finished");
    }
    store_close(c->st, NULL, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&c->loop);
}

static void json_done(int status, const char *json, const char *error, void *arg)
{
    struct cli *c = arg;

    c->status = status;
    c->json = json != NULL ? xstrdup(json) : NULL;
    snprintf(c->error, sizeof(c->error), "%s", error);
    c->done = true;
}

static void applied(int status, const struct store_result *res, void *arg)
{
    struct cli *c = arg;

    c->status = status;
    c->done = true;
    c->res = *res;
    c->res.error = NULL;
    snprintf(c->error, sizeof(c->error), "%s", res->error);
}

/* Says why an operation failed; returns the exit status. */
static int failed(const struct cli *c, const char *what)
{
    switch (c->status) {
    case VR_ENOENT:
        log_error("not_found", "%s: %s", what, c->error);
        break;
    case VR_ESTATE:
        log_error("no_followup", "%s: %s", what, c->error);
        break;
    case VR_EINVAL:
        log_error("invalid_cursor", "%s: --cursor is not one voidrecon gave out", what);
        break;
    default:
        log_error("failed", "%s: %s", what, c->error);
        break;
    }
    return 1;
}

/* ---- tables ------------------------------------------------------------------------------- */

/* A field as table text: strings as they are, times shortened to the second, null as "-". */
static void cell(const cJSON *obj, const char *name, char *out, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

    if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        /* 2026-11-29T21:08:34.296103+00:00 -> 2026-11-29 21:08:34 */
        if (strlen(s) >= 19 && s[4] == '-' && s[10] == 'T')
            snprintf(out, cap, "%.10s %.8s", s, s + 11);
        else
            snprintf(out, cap, "%s", s);
    } else if (cJSON_IsBool(v)) {
        snprintf(out, cap, "%s", cJSON_IsTrue(v) ? "yes" : "no");
    } else if (cJSON_IsNumber(v)) {
        snprintf(out, cap, "%.0f", v->valuedouble);
    } else {
        snprintf(out, cap, "-");
    }
    /* One line per row, whatever a message holds. */
    for (char *p = out; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
}

#define CELL_BYTES 96

/* Prints the rows of array with one column per field (names, headers: n each). */
static void table(FILE *out, const cJSON *array, const char *const *names,
                  const char *const *headers, size_t n)
{
    size_t rows = (size_t)cJSON_GetArraySize(array), w[16] = {0};
    char(*cells)[CELL_BYTES] = xcalloc(rows * n + 1, CELL_BYTES);
    const cJSON *item;
    size_t r = 0;

    for (size_t i = 0; i < n; i++)
        w[i] = strlen(headers[i]);
    cJSON_ArrayForEach(item, array)
    {
        for (size_t i = 0; i < n; i++) {
            cell(item, names[i], cells[r * n + i], CELL_BYTES);
            if (strlen(cells[r * n + i]) > w[i])
                w[i] = strlen(cells[r * n + i]);
        }
        r++;
    }
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%-*s%s", i + 1 < n ? (int)w[i] : 0, headers[i], i + 1 < n ? "  " : "\n");
    for (r = 0; r < rows; r++)
        for (size_t i = 0; i < n; i++)
            fprintf(out, "%-*s%s", i + 1 < n ? (int)w[i] : 0, cells[r * n + i],
                    i + 1 < n ? "  " : "\n");
    free(cells);
}

static void more(FILE *out, const cJSON *doc, const char *noun)
{
    const cJSON *next = cJSON_GetObjectItemCaseSensitive(doc, "next_cursor");

    if (cJSON_IsString(next))
        fprintf(out, "(more %s: add --cursor %s)\n", noun, next->valuestring);
}

static const char *const case_names[] = {"order_no",        "void_code", "status",
                                         "status_name",     "confirmed", "needs_followup",
                                         "followup_reason", "updated_at"};
static const char *const case_headers[] = {"ORDER_NO",  "VOID_CODE", "ST",     "STATUS",
                                           "CONFIRMED", "FOLLOWUP",  "REASON", "UPDATED"};

/* The items of a JSON array joined with ", ": strings, or the field of objects when field is
 * not NULL; "-" when none. */
static void join_items(const cJSON *array, const char *field, char *out, size_t cap)
{
    const cJSON *item;
    size_t used = 0;
    char v[CELL_BYTES];

    snprintf(out, cap, "-");
    cJSON_ArrayForEach(item, array)
    {
        int n;

        if (field != NULL)
            cell(item, field, v, sizeof(v));
        else
            snprintf(v, sizeof(v), "%s", cJSON_IsString(item) ? item->valuestring : "?");
        n = snprintf(out + used, cap - used, "%s%s", used ? ", " : "", v);
        if (n < 0 || (size_t)n >= cap - used)
            break;
        used += (size_t)n;
    }
}

static void print_case(FILE *out, const cJSON *c)
{
    static const char *const fields[] = {
        "order_no",          "void_code",         "status_name",       "status",
        "is_open",           "confirmed",         "reconciled_at",     "message",
        "cancel_reason",     "void_method",       "needs_followup",    "followup_reason",
        "followup_acked_at", "followup_acked_by", "followup_ack_note", "created_at",
        "updated_at",        "last_seen_at",      "next_poll_at",      "polls",
        "poll_failures",     "last_poll_error",
    };
    char v[CELL_BYTES * 4];

    for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
        cell(c, fields[i], v, sizeof(v));
        fprintf(out, "%-18s %s\n", fields[i], v);
    }
    join_items(cJSON_GetObjectItemCaseSensitive(c, "followups"), "reason", v, sizeof(v));
    fprintf(out, "%-18s %s\n", "open_followups", v);
}

/* ---- commands ----------------------------------------------------------------------------- */

int cli_cases_add(const struct config *cfg, const char *order_no, const char *void_code, int status,
                  bool json, FILE *out)
{
    struct store_void_report rep = {
        .order_no = order_no,
        .void_code = void_code,
        .status = status,
        .source = VOIDCASE_SOURCE_API,
    };
    struct cli c;
    int rc;

    if (order_no[0] == '\0' || void_code[0] == '\0' || strlen(order_no) > ATLAS_MAX_KEY_BYTES ||
        strlen(void_code) > ATLAS_MAX_KEY_BYTES) {
        log_error("usage", "ORDER_NO and VOID_CODE must be 1 to %d bytes", ATLAS_MAX_KEY_BYTES);
        return 2;
    }
    if ((rc = cli_open(&c, cfg)) != 0)
        return rc;
    store_apply_void(c.st, NULL, &rep, applied, &c);
    cli_finish(&c);
    if (c.status != 0)
        return failed(&c, "cases add");
    if (json) {
        char *s = api_registration_json(order_no, void_code, &c.res);

        fprintf(out, "%s\n", s);
        free(s);
    } else {
        fprintf(out, "%s %s: %s (%s), status %d %s\n", order_no, void_code, c.res.outcome,
                c.res.created ? "registered" : "already known", c.res.to_status,
                voidcase_status_name(c.res.to_status));
    }
    return 0;
}

/* Runs a JSON-answering operation and hands the parsed document to print (unless json). */
static int run_json(struct cli *c, const char *what, bool json, FILE *out,
                    void (*print)(FILE *out, const cJSON *doc))
{
    cJSON *doc;

    cli_finish(c);
    if (c->status != 0)
        return failed(c, what);
    if (json) {
        fprintf(out, "%s\n", c->json);
    } else if ((doc = cJSON_Parse(c->json)) != NULL) {
        print(out, doc);
        cJSON_Delete(doc);
    }
    free(c->json);
    return 0;
}

/* A listing by state (cases, alerts, cancellations): checks the state, then lists. */
struct listing {
    const char *what;
    bool (*state_valid)(const char *state);
    const char *states; /* the valid states, for the usage error */
    void (*list)(struct store *st, const char *state, unsigned limit, const char *cursor,
                 store_json_cb cb, void *arg);
    void (*print)(FILE *out, const cJSON *doc);
};

static int run_listing(const struct config *cfg, const struct listing *l, const char *state,
                       unsigned limit, const char *cursor, bool json, FILE *out)
{
    struct cli c;
    int rc;

    if (!l->state_valid(state)) {
        log_error("usage", "--state: \"%s\" is not %s", state, l->states);
        return 2;
    }
    if ((rc = cli_open(&c, cfg)) != 0)
        return rc;
    l->list(c.st, state, limit, cursor, json_done, &c);
    return run_json(&c, l->what, json, out, l->print);
}

static void print_cases(FILE *out, const cJSON *doc)
{
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(doc, "cases");

    table(out, cases, case_names, case_headers, ARRAY_SIZE(case_names));
    more(out, doc, "cases");
}

int cli_cases_list(const struct config *cfg, const char *state, unsigned limit, const char *cursor,
                   bool json, FILE *out)
{
    static const struct listing l = {"cases list", store_case_state_valid,
                                     "open, followup, rejected or all", store_cases_list,
                                     print_cases};

    return run_listing(cfg, &l, state, limit, cursor, json, out);
}

static void print_show(FILE *out, const cJSON *doc)
{
    static const char *const h_names[] = {"at",        "source",  "reported_status", "from_status",
                                          "to_status", "outcome", "message"};
    static const char *const h_headers[] = {"AT", "SOURCE",  "REPORTED", "FROM",
                                            "TO", "OUTCOME", "MESSAGE"};
    static const char *const a_names[] = {"id", "kind", "created_at", "delivered_at", "attempts"};
    static const char *const a_headers[] = {"ID", "KIND", "RAISED", "DELIVERED", "ATTEMPTS"};
    static const char *const k_names[] = {"at", "reason", "acked_by", "note"};
    static const char *const k_headers[] = {"AT", "REASON", "BY", "NOTE"};

    print_case(out, cJSON_GetObjectItemCaseSensitive(doc, "case"));
    fprintf(out, "\nHistory:\n");
    table(out, cJSON_GetObjectItemCaseSensitive(doc, "history"), h_names, h_headers,
          ARRAY_SIZE(h_names));
    fprintf(out, "\nAlerts:\n");
    table(out, cJSON_GetObjectItemCaseSensitive(doc, "alerts"), a_names, a_headers,
          ARRAY_SIZE(a_names));
    fprintf(out, "\nAcknowledgements:\n");
    table(out, cJSON_GetObjectItemCaseSensitive(doc, "acknowledgements"), k_names, k_headers,
          ARRAY_SIZE(k_names));
}

int cli_cases_show(const struct config *cfg, const char *order_no, const char *void_code, bool json,
                   FILE *out)
{
    struct cli c;
    int rc;

    if ((rc = cli_open(&c, cfg)) != 0)
        return rc;
    store_case_show(c.st, order_no, void_code, json_done, &c);
    return run_json(&c, "cases show", json, out, print_show);
}

static void print_acked(FILE *out, const cJSON *doc)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(doc, "case");
    char order[CELL_BYTES], code[CELL_BYTES], by[CELL_BYTES], acked[CELL_BYTES];
    char still[CELL_BYTES];

    cell(c, "order_no", order, sizeof(order));
    cell(c, "void_code", code, sizeof(code));
    cell(c, "followup_acked_by", by, sizeof(by));
    join_items(cJSON_GetObjectItemCaseSensitive(doc, "acknowledged"), NULL, acked, sizeof(acked));
    join_items(cJSON_GetObjectItemCaseSensitive(c, "followups"), "reason", still, sizeof(still));
    fprintf(out, "%s %s: follow-up (%s) acknowledged by %s%s%s\n", order, code, acked, by,
            strcmp(still, "-") != 0 ? "; still open: " : "", strcmp(still, "-") != 0 ? still : "");
}

int cli_cases_ack(const struct config *cfg, const char *order_no, const char *void_code,
                  const char *reason, const char *by, const char *note, bool json, FILE *out)
{
    struct cli c;
    int rc;

    if (by == NULL || by[0] == '\0') {
        log_error("usage", "--by NAME is required: who acknowledges the follow-up");
        return 2;
    }
    if (reason != NULL && !store_followup_reason_valid(reason)) {
        log_error("usage", "--reason: \"%s\" is not rejected, conflict, poll_failing or stuck",
                  reason);
        return 2;
    }
    if ((rc = cli_open(&c, cfg)) != 0)
        return rc;
    store_case_ack(c.st, order_no, void_code, reason, by, note, json_done, &c);
    return run_json(&c, "cases ack", json, out, print_acked);
}

static void print_alerts(FILE *out, const cJSON *doc)
{
    static const char *const names[] = {"id",         "kind",         "order_no", "void_code",
                                        "created_at", "delivered_at", "attempts", "last_error"};
    static const char *const headers[] = {"ID",     "KIND",      "ORDER_NO", "VOID_CODE",
                                          "RAISED", "DELIVERED", "ATTEMPTS", "LAST_ERROR"};

    table(out, cJSON_GetObjectItemCaseSensitive(doc, "alerts"), names, headers, ARRAY_SIZE(names));
    more(out, doc, "alerts");
}

int cli_alerts_list(const struct config *cfg, const char *state, unsigned limit, const char *cursor,
                    bool json, FILE *out)
{
    static const struct listing l = {"alerts list", store_alert_state_valid,
                                     "pending, delivered or all", store_alerts_list, print_alerts};

    return run_listing(cfg, &l, state, limit, cursor, json, out);
}

/* A positive id (of a delivery, a cancellation) given on the command line; 0 when it is not
 * one. */
static int64_t id_arg(const char *s)
{
    char *end = NULL;
    long long v;

    if (s == NULL || *s < '0' || *s > '9')
        return 0;
    errno = 0;
    v = strtoll(s, &end, 10);
    return errno == 0 && *end == '\0' && v > 0 ? (int64_t)v : 0;
}

/* id_arg, saying so when the argument ID is not the id of a what ("delivery", ...). */
static int64_t id_or_usage(const char *s, const char *what)
{
    int64_t id = id_arg(s);

    if (id == 0)
        log_error("usage", "ID: \"%s\" is not a %s id (a positive number)", s, what);
    return id;
}

/* ---- order cancellations ------------------------------------------------------------------ */

static const char *const cancellation_names[] = {
    "id",           "provider",       "order_ref",         "error_code",
    "order_status", "needs_followup", "followup_acked_by", "received_at"};
static const char *const cancellation_headers[] = {"ID",     "PROVIDER", "ORDER_REF", "CODE",
                                                   "STATUS", "FOLLOWUP", "ACKED_BY",  "RECEIVED"};

static void print_cancellations(FILE *out, const cJSON *doc)
{
    table(out, cJSON_GetObjectItemCaseSensitive(doc, "cancellations"), cancellation_names,
          cancellation_headers, ARRAY_SIZE(cancellation_names));
    more(out, doc, "cancellations");
}

int cli_cancellations_list(const struct config *cfg, const char *state, unsigned limit,
                           const char *cursor, bool json, FILE *out)
{
    static const struct listing l = {"cancellations list", store_cancellation_state_valid,
                                     "open, acked or all", store_cancellations_list,
                                     print_cancellations};

    return run_listing(cfg, &l, state, limit, cursor, json, out);
}

static void print_cancellation(FILE *out, const cJSON *doc)
{
    static const char *const fields[] = {
        "id",
        "provider",
        "order_ref",
        "error_code",
        "error_message",
        "order_status",
        "verified",
        "received_at",
        "delivery_id",
        "needs_followup",
        "followup_acked_at",
        "followup_acked_by",
        "followup_ack_note",
    };
    static const char *const k_names[] = {"at", "reason", "acked_by", "note"};
    static const char *const k_headers[] = {"AT", "REASON", "BY", "NOTE"};
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(doc, "cancellation");
    char v[CELL_BYTES * 4];

    for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
        cell(o, fields[i], v, sizeof(v));
        fprintf(out, "%-18s %s\n", fields[i], v);
    }
    fprintf(out, "\nAcknowledgements:\n");
    table(out, cJSON_GetObjectItemCaseSensitive(doc, "acknowledgements"), k_names, k_headers,
          ARRAY_SIZE(k_names));
}

int cli_cancellations_show(const struct config *cfg, const char *id, bool json, FILE *out)
{
    int64_t n = id_or_usage(id, "cancellation");
    struct cli c;
    int rc;

    if (n == 0)
        return 2;
    if ((rc = cli_open(&c, cfg)) != 0)
        return rc;
    store_cancellation_show(c.st, n, json_done, &c);
    return run_json(&c, "cancellations show", json, out, print_cancellation);
}

static void print_cancellation_acked(FILE *out, const cJSON *doc)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(doc, "cancellation");
    char id[CELL_BYTES], provider[CELL_BYTES], ref[CELL_BYTES], by[CELL_BYTES];

    cell(o, "id", id, sizeof(id));
    cell(o, "provider", provider, sizeof(provider));
    cell(o, "order_ref", ref, sizeof(ref));
    cell(o, "followup_acked_by", by, sizeof(by));
    fprintf(out, "cancellation %s (%s %s) acknowledged by %s\n", id, provider, ref, by);
}

int cli_cancellations_ack(const struct config *cfg, const char *id, const char *by,
                          const char *note, bool json, FILE *out)
{
    int64_t n = id_or_usage(id, "cancellation");
    struct cli c;
    int rc;

    if (n == 0)
        return 2;
    if (by == NULL || by[0] == '\0') {
        log_error("usage", "--by NAME is required: who acknowledges the cancellation");
        return 2;
    }
    if ((rc = cli_open(&c, cfg)) != 0)
        return rc;
    store_cancellation_ack(c.st, n, by, note, json_done, &c);
    return run_json(&c, "cancellations ack", json, out, print_cancellation_acked);
}

/* ---- prune -------------------------------------------------------------------------------- */

struct prune_wait {
    struct cli *c;
    struct pruner_totals totals;
};

static void pruned(int status, const char *error, const struct pruner_totals *t, void *arg)
{
    struct prune_wait *w = arg;

    w->totals = *t;
    w->c->status = status;
    snprintf(w->c->error, sizeof(w->c->error), "%s", error);
    w->c->done = true;
}

/* "removed N" or why nothing was looked at. */
static void prune_line(FILE *out, const char *table, int64_t n, uint64_t age_ms)
{
    if (age_ms == 0)
        fprintf(out, "%-17s kept (retention 0)\n", table);
    else
        fprintf(out, "%-17s %" PRId64 " removed (older than %" PRIu64 " ms)\n", table, n, age_ms);
}

int cli_prune(const struct config *cfg, bool json, FILE *out)
{
    struct prune_wait w = {0};
    struct cli c;
    int rc;

    if ((rc = cli_open(&c, cfg)) != 0)
        return rc;
    w.c = &c;
    pruner_run_once(c.st,
                    &(struct pruner_config){.delivery_retention_ms = cfg->delivery_retention_ms,
                                            .event_retention_ms = cfg->event_retention_ms,
                                            .batch = (unsigned)cfg->prune_batch},
                    pruned, &w);
    cli_finish(&c);
    if (c.status == 0 && w.totals.busy) {
        log_error("prune_busy",
                  "another voidrecon process held the prune lock for longer than the lock "
                  "timeout (half of VOIDRECON_DB_TIMEOUT_MS); removed %" PRId64
                  " deliveries and %" PRId64 " history rows before",
                  w.totals.deliveries, w.totals.events);
        return 1;
    }
    if (c.status != 0)
        return failed(&c, "prune");
    if (json) {
        fprintf(out,
                "{\"deliveries\":%" PRId64 ",\"void_case_events\":%" PRId64
                ",\"batches\":%u,\"took_ms\":%" PRIu64 "}\n",
                w.totals.deliveries, w.totals.events, w.totals.batches, w.totals.took_ms);
        return 0;
    }
    prune_line(out, "deliveries", w.totals.deliveries, cfg->delivery_retention_ms);
    prune_line(out, "void_case_events", w.totals.events, cfg->event_retention_ms);
    return 0;
}

/* ---- deliveries --------------------------------------------------------------------------- */

static void print_deliveries(FILE *out, const cJSON *doc)
{
    static const char *const names[] = {"id",      "provider",    "event_type",
                                        "outcome", "received_at", "remote_addr",
                                        "cid",     "replay_of",   "reason"};
    static const char *const headers[] = {"ID",   "PROVIDER", "TYPE",      "OUTCOME", "RECEIVED",
                                          "FROM", "CID",      "REPLAY_OF", "REASON"};

    table(out, cJSON_GetObjectItemCaseSensitive(doc, "deliveries"), names, headers,
          ARRAY_SIZE(names));
    more(out, doc, "deliveries");
}

int cli_deliveries_list(const struct config *cfg, const char *provider, const char *outcome,
                        unsigned limit, const char *cursor, bool json, FILE *out)
{
    int64_t before = 0;
    struct cli c;
    int rc;

    if (provider != NULL && provider_find(provider, strlen(provider)) == NULL) {
        log_error("usage", "--provider: \"%s\" is not the name of a provider", provider);
        return 2;
    }
    if (outcome != NULL && !store_delivery_outcome_valid(outcome)) {
        log_error("usage",
                  "--outcome: \"%s\" is not applied, duplicate, stale, conflict, ignored, "
                  "rejected or failed",
                  outcome);
        return 2;
    }
    if (cursor != NULL && (before = id_arg(cursor)) == 0) {
        log_error("usage", "--cursor: \"%s\" is not one voidrecon gave out", cursor);
        return 2;
    }
    if ((rc = cli_open(&c, cfg)) != 0)
        return rc;
    store_deliveries_list(c.st, provider, outcome, limit, before, json_done, &c);
    return run_json(&c, "deliveries list", json, out, print_deliveries);
}

static void print_delivery(FILE *out, const cJSON *doc)
{
    static const char *const fields[] = {
        "id",
        "provider",
        "event_type",
        "received_at",
        "remote_addr",
        "cid",
        "outcome",
        "reason",
        "replay_of",
        "body_length",
        "body_complete",
        "body_sha256",
        "body_encoding",
    };
    static const char *const e_names[] = {"at",          "order_no",  "void_code", "source",
                                          "from_status", "to_status", "outcome"};
    static const char *const e_headers[] = {"AT",   "ORDER_NO", "VOID_CODE", "SOURCE",
                                            "FROM", "TO",       "OUTCOME"};
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(doc, "delivery");
    const cJSON *canc = cJSON_GetObjectItemCaseSensitive(doc, "cancellation");
    char v[CELL_BYTES * 4], *text;

    for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
        cell(d, fields[i], v, sizeof(v));
        fprintf(out, "%-14s %s\n", fields[i], v);
    }
    text = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(d, "headers"));
    fprintf(out, "%-14s %s\n", "headers", text != NULL ? text : "-");
    free(text);
    fprintf(out, "\nBody:\n%s\n",
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "body")));
    fprintf(out, "\nCase events:\n");
    table(out, cJSON_GetObjectItemCaseSensitive(doc, "case_events"), e_names, e_headers,
          ARRAY_SIZE(e_names));
    if (cJSON_IsObject(canc)) {
        char ref[CELL_BYTES], when[CELL_BYTES];

        cell(canc, "order_ref", ref, sizeof(ref));
        cell(canc, "received_at", when, sizeof(when));
        fprintf(out, "\nCancellation: order %s, recorded %s\n", ref, when);
    }
}

/* Finishes a delivery's JSON operation: like run_json, but a missing one is a delivery. */
static int finish_delivery_json(struct cli *c, const char *what, bool json, FILE *out,
                                void (*print)(FILE *out, const cJSON *doc))
{
    cJSON *doc;

    cli_finish(c);
    if (c->status == VR_ENOENT) {
        log_error("not_found", "%s: no such delivery", what);
        return 1;
    }
    if (c->status != 0)
        return failed(c, what);
    if (json) {
        fprintf(out, "%s\n", c->json);
    } else if ((doc = cJSON_Parse(c->json)) != NULL) {
        print(out, doc);
        cJSON_Delete(doc);
    }
    free(c->json);
    return 0;
}

int cli_deliveries_show(const struct config *cfg, const char *id, bool json, FILE *out)
{
    int64_t n = id_or_usage(id, "delivery");
    struct cli c;
    int rc;

    if (n == 0)
        return 2;
    if ((rc = cli_open(&c, cfg)) != 0)
        return rc;
    store_delivery_show(c.st, n, json_done, &c);
    return finish_delivery_json(&c, "deliveries show", json, out, print_delivery);
}

static void replay_done(const struct replay_result *r, void *arg)
{
    struct cli *c = arg;

    c->status = r->status;
    c->done = true;
    if (r->status == 0)
        c->json = replay_result_json(r);
    else
        snprintf(c->error, sizeof(c->error), "%s", r->message);
}

/* One replay's answer: its JSON line, or a line of text; says why it failed on stderr. */
static int replay_report(struct cli *c, const char *id, bool json, FILE *out)
{
    cJSON *doc;

    if (c->status != 0) {
        log_error(c->status == VR_ENOENT ? "not_found" : "not_replayed", "deliveries replay %s: %s",
                  id, c->status == VR_ENOENT ? "no such delivery" : c->error);
        return 1;
    }
    if (json) {
        fprintf(out, "%s\n", c->json);
    } else if ((doc = cJSON_Parse(c->json)) != NULL) {
        char delivery[CELL_BYTES], outcome[CELL_BYTES], reason[CELL_BYTES];

        cell(doc, "delivery_id", delivery, sizeof(delivery));
        cell(doc, "outcome", outcome, sizeof(outcome));
        cell(doc, "reason", reason, sizeof(reason));
        fprintf(out, "delivery %s (replay of %s): %s%s%s\n", delivery, id, outcome,
                strcmp(reason, "-") != 0 ? ": " : "", strcmp(reason, "-") != 0 ? reason : "");
        cJSON_Delete(doc);
    }
    free(c->json);
    c->json = NULL;
    return 0;
}

int cli_deliveries_replay(const struct config *cfg, const char *const *ids, int n, bool json,
                          FILE *out)
{
    struct webhook_routes *routes;
    struct cli c;
    int rc = 0;

    for (int i = 0; i < n; i++)
        if (id_or_usage(ids[i], "delivery") == 0)
            return 2;
    if ((rc = cli_open(&c, cfg)) != 0)
        return rc;
    routes = webhook_routes_new(cfg->providers, cfg->nproviders);
    for (int i = 0; i < n; i++) {
        c.done = false;
        replay_delivery(c.st, routes, id_arg(ids[i]), replay_done, &c);
        while (!c.done && uv_run(&c.loop, UV_RUN_ONCE) != 0)
            ;
        if (!c.done) {
            c.status = VR_EUNAVAIL;
            snprintf(c.error, sizeof(c.error), "the replay never finished");
        }
        if (replay_report(&c, ids[i], json, out) != 0)
            rc = 1;
    }
    c.done = true;
    cli_finish(&c);
    webhook_routes_free(routes);
    return rc;
}

/* ---- the change feed ---------------------------------------------------------------------- */

/* How often a follower reads by default even without a notification: an event becomes readable only
 * once every older transaction has ended, which announces nothing when that transaction wrote no
 * event; and a notification sent while the listener reconnects is lost. */
#define FOLLOW_READ_MS 1000

static const char *const event_names[] = {"id",      "at",          "order_no",  "void_code",
                                          "source",  "from_status", "to_status", "status_name",
                                          "outcome", "reconciled"};
static const char *const event_headers[] = {"ID",   "AT", "ORDER_NO", "VOID_CODE", "SOURCE",
                                            "FROM", "TO", "STATUS",   "OUTCOME",   "RECONCILED"};

static void print_events(FILE *out, const cJSON *doc)
{
    const cJSON *next = cJSON_GetObjectItemCaseSensitive(doc, "next_after");

    table(out, cJSON_GetObjectItemCaseSensitive(doc, "events"), event_names, event_headers,
          ARRAY_SIZE(event_names));
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "more")) && cJSON_IsNumber(next))
        fprintf(out, "(more events: add --after %.0f)\n", next->valuedouble);
}

/* An announced event can be unreadable for a moment (a transaction older than its own is still
 * running): the follower reads again after this, doubling up to --poll-ms, until it has it. */
#define FOLLOW_SOON_MS 10

/* The ids printed last, so that an announcement of one already printed costs no reads. */
#define FOLLOW_RECENT 64

struct follower {
    struct cli c;
    uv_timer_t tick, soon;
    uv_signal_t sigint, sigterm;
    int64_t after;
    unsigned limit;
    uint64_t poll_ms;
    bool json;
    FILE *out;
    bool reading, again, stopping, warned, listen_warned;
    int64_t unseen; /* an announced event not printed yet; 0: none */
    uint64_t soon_ms;
    int64_t recent[FOLLOW_RECENT];
    unsigned n_recent;
    int rc;
};

/* One event as one line: a JSON object, or the table's cells. */
static void follow_print(struct follower *f, const cJSON *event)
{
    char v[CELL_BYTES];

    if (f->json) {
        char *s = cJSON_PrintUnformatted(event);

        fprintf(f->out, "%s\n", s);
        cJSON_free(s);
        return;
    }
    for (size_t i = 0; i < ARRAY_SIZE(event_names); i++) {
        cell(event, event_names[i], v, sizeof(v));
        fprintf(f->out, "%s%s", v, i + 1 < ARRAY_SIZE(event_names) ? "  " : "\n");
    }
}

static void follow_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void follow_stop(struct follower *f, int rc)
{
    if (f->stopping)
        return;
    f->stopping = true;
    f->rc = rc;
    uv_close((uv_handle_t *)&f->tick, follow_handle_closed);
    uv_close((uv_handle_t *)&f->soon, follow_handle_closed);
    uv_close((uv_handle_t *)&f->sigint, follow_handle_closed);
    uv_close((uv_handle_t *)&f->sigterm, follow_handle_closed);
    store_close(f->c.st, NULL, NULL);
}

static void follow_read(struct follower *f);

static void follow_soon(uv_timer_t *t)
{
    follow_read(container_of(t, struct follower, soon));
}

/* Remembers the event a notification announced, unless it was printed already. */
static void follow_announced(struct follower *f, const char *payload)
{
    cJSON *note = cJSON_Parse(payload);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(note, "event_id");
    unsigned n = f->n_recent < FOLLOW_RECENT ? f->n_recent : FOLLOW_RECENT;
    bool printed = false;

    for (unsigned i = 0; cJSON_IsNumber(id) && i < n; i++)
        printed = printed || f->recent[i] == (int64_t)id->valuedouble;
    if (cJSON_IsNumber(id) && !printed) {
        f->unseen = (int64_t)id->valuedouble;
        f->soon_ms = FOLLOW_SOON_MS;
    }
    cJSON_Delete(note);
}

/* Prints a page; returns whether more pages wait. */
static bool follow_page(struct follower *f, const char *json)
{
    cJSON *doc = cJSON_Parse(json);
    const cJSON *event, *next = cJSON_GetObjectItemCaseSensitive(doc, "next_after");
    bool more = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "more"));

    cJSON_ArrayForEach(event, cJSON_GetObjectItemCaseSensitive(doc, "events"))
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(event, "id");

        follow_print(f, event);
        if (!cJSON_IsNumber(id))
            continue;
        f->recent[f->n_recent++ % FOLLOW_RECENT] = (int64_t)id->valuedouble;
        if ((int64_t)id->valuedouble == f->unseen)
            f->unseen = 0;
    }
    if (cJSON_IsNumber(next))
        f->after = (int64_t)next->valuedouble;
    (void)fflush(f->out);
    cJSON_Delete(doc);
    return more;
}

static void follow_got(int status, const char *json, const char *error, void *arg)
{
    struct follower *f = arg;

    f->reading = false;
    if (f->stopping)
        return;
    if (status == VR_ENOENT) {
        log_error("no_such_event", "events --after %lld: no event has this id",
                  (long long)f->after);
        follow_stop(f, 1);
        return;
    }
    if (status != 0) {
        /* Said once per outage; the next tick tries again. */
        if (!f->warned)
            log_warn("events_unavailable", "%s; trying again", error);
        f->warned = true;
        return;
    }
    f->warned = false;
    if (follow_page(f, json) || f->again) {
        f->again = false;
        follow_read(f);
    } else if (f->unseen != 0 && f->soon_ms <= f->poll_ms) {
        /* Past poll_ms the periodic reads take over. */
        uv_timer_start(&f->soon, follow_soon, f->soon_ms, 0);
        f->soon_ms *= 2;
    }
}

static void follow_read(struct follower *f)
{
    if (f->stopping)
        return;
    if (f->reading) {
        f->again = true; /* what was announced may have committed after this read began */
        return;
    }
    f->reading = true;
    store_events_list(f->c.st, f->after, f->limit, follow_got, f);
}

static void follow_heard(int status, const char *payload, const char *error, void *arg)
{
    struct follower *f = arg;

    if (status != 0) {
        /* Said once per outage: it retries every second. */
        if (!f->listen_warned)
            log_warn("listen_failed", "%s; trying again", error);
        f->listen_warned = true;
        return;
    }
    if (payload == NULL)
        f->listen_warned = false;
    else
        follow_announced(f, payload);
    follow_read(f);
}

static void follow_tick(uv_timer_t *t)
{
    follow_read(container_of(t, struct follower, tick));
}

static void follow_signal(uv_signal_t *h, int signum)
{
    struct follower *f = h->data;

    (void)signum;
    follow_stop(f, 0);
}

static int follow(const struct config *cfg, const struct cli_events_opts *o, FILE *out)
{
    struct follower f = {.after = o->after,
                         .limit = o->limit,
                         .poll_ms = o->poll_ms ? o->poll_ms : FOLLOW_READ_MS,
                         .json = o->json,
                         .out = out};
    int rc;

    if ((rc = cli_open(&f.c, cfg)) != 0)
        return rc;
    uv_timer_init(&f.c.loop, &f.tick);
    uv_timer_init(&f.c.loop, &f.soon);
    uv_signal_init(&f.c.loop, &f.sigint);
    uv_signal_init(&f.c.loop, &f.sigterm);
    f.sigint.data = f.sigterm.data = &f;
    uv_signal_start(&f.sigint, follow_signal, SIGINT);
    uv_signal_start(&f.sigterm, follow_signal, SIGTERM);
    if (store_listen_cases(f.c.st, follow_heard, &f) != 0) {
        log_error("failed", "events --follow: cannot listen for case changes");
        follow_stop(&f, 1);
    } else {
        /* The first read catches up at once; the listener's start reads again. */
        uv_timer_start(&f.tick, follow_tick, 0, f.poll_ms);
    }
    uv_run(&f.c.loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&f.c.loop);
    return f.rc;
}

int cli_events(const struct config *cfg, const struct cli_events_opts *o, FILE *out)
{
    struct cli c;
    cJSON *doc;
    int rc;

    if (o->follow)
        return follow(cfg, o, out);
    if ((rc = cli_open(&c, cfg)) != 0)
        return rc;
    store_events_list(c.st, o->after, o->limit, json_done, &c);
    cli_finish(&c);
    if (c.status == VR_ENOENT) {
        log_error("no_such_event", "events --after %lld: no event has this id",
                  (long long)o->after);
        return 1;
    }
    if (c.status != 0)
        return failed(&c, "events");
    if (o->json) {
        fprintf(out, "%s\n", c.json);
    } else if ((doc = cJSON_Parse(c.json)) != NULL) {
        print_events(out, doc);
        cJSON_Delete(doc);
    }
    free(c.json);
    return 0;
}
