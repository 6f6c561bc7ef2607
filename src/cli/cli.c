/* The command line: the commands, their help, their options, and the settings among them. */
#include "cli.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_int.h"
#include "log.h"
#include "migrate.h"
#include "provider.h"
#include "store.h"

static const char usage_text[] =
    "usage: voidrecon COMMAND [--setting=VALUE ...]\n"
    "\n"
    "Keeps airline void cases true: receives Atlas order.void webhooks, keeps each case's\n"
    "state in PostgreSQL, polls Atlas until every case is reconciled, and records order\n"
    "cancellations.\n"
    "\n"
    "Commands:\n"
    "  serve          run the HTTP service and the poller in the foreground\n"
    "                 (SIGINT/SIGTERM stop it cleanly)\n"
    "  migrate        apply pending database migrations, then exit; --status lists\n"
    "                 them, --dry-run shows what would run (both change nothing)\n"
    "  cases          add, list, show or acknowledge void cases\n"
    "  cancellations  list, show or acknowledge order cancellations\n"
    "  alerts         list alerts and their delivery state\n"
    "  events         the change feed of the cases, from a cursor; --follow keeps\n"
    "                 printing it\n"
    "  deliveries     list, show or replay received webhooks\n"
    "  prune          remove what retention allows (old deliveries, unchanged\n"
    "                 history), then exit\n"
    "  version        print the version\n"
    "  help           print this help; 'voidrecon COMMAND --help' describes one\n"
    "                 command\n";

/* The endpoints' list is written between these two, from provider_all. */
static const char serve_help_head[] = "usage: voidrecon serve [--setting=VALUE ...]\n"
                                      "\n"
                                      "Runs the service in the foreground: the webhook endpoints\n"
                                      "POST ";
static const char serve_help_tail[] =
    ",\nthe /v1 operations API, GET /healthz, /readyz and /metrics; the poller of\n"
    "queryVoidOrders.do when VOIDRECON_ATLAS_BASE_URL is set, and alert delivery when\n"
    "VOIDRECON_ALERT_URL is.\n"
    "Refuses to start on a database whose schema is behind (run 'voidrecon migrate';\n"
    "'voidrecon migrate --status' lists what is pending).\n"
    "Log lines are JSON objects on stderr.\n";

static const char migrate_help[] =
    "usage: voidrecon migrate [--status | --dry-run] [--database-url=URL]\n"
    "\n"
    "Applies the migrations built into this binary that the database lacks, one transaction\n"
    "each, under an advisory lock so that concurrent runs wait for each other; exits 0, or 1\n"
    "when one fails (it is rolled back; those before it stay applied).\n"
    "  --status   lists every migration this binary knows and every one the database\n"
    "             records: version, state (applied, with when; pending; or unknown: recorded\n"
    "             by a newer voidrecon), name; then one line saying what to do.\n"
    "  --dry-run  prints each pending migration's name and SQL, in the order migrate would\n"
    "             apply them, and applies nothing.\n"
    "Both only read, in one read-only transaction without a lock: safe while the service\n"
    "runs. Their exit status: 0 the schema is current; 3 migrations are pending; 4 the\n"
    "database records migrations this binary does not know (its schema is newer: run a\n"
    "newer voidrecon); 1 the database could not be read; 2 bad arguments.\n";

static const char version_help[] = "usage: voidrecon version\n\nPrints the version.\n";

static const char cases_help[] =
    "usage: voidrecon cases add ORDER_NO VOID_CODE [--status N] [--json]\n"
    "       voidrecon cases list [--state open|followup|rejected|all] [--limit N] [--cursor C]\n"
    "                            [--json]\n"
    "       voidrecon cases show ORDER_NO VOID_CODE [--json]\n"
    "       voidrecon cases ack ORDER_NO VOID_CODE --by NAME [--reason R] [--note TEXT]\n"
    "                           [--json]\n"
    "\n"
    "Work straight on the database (VOIDRECON_DATABASE_URL or --database-url); no running\n"
    "server is needed.\n"
    "  add   registers a void case right after void.do, so that it is polled even if no\n"
    "        webhook ever arrives (as POST /v1/cases); a known case is left as it is.\n"
    "        --status N gives the voidStatus void.do answered (default 0).\n"
    "  list  cases by state (default open), 50 a page; --cursor continues a listing.\n"
    "  show  one case with its history, alerts and acknowledgements.\n"
    "  ack   acknowledges the case's open follow-up reason R (rejected, conflict,\n"
    "        poll_failing or stuck), or every open one without --reason: each leaves the\n"
    "        follow-up list, and who and why are recorded. A reason raised again later\n"
    "        is a new follow-up with a new alert.\n"
    "Tables by default; --json prints what the /v1 API answers.\n";

static const char cancellations_help[] =
    "usage: voidrecon cancellations list [--state open|acked|all] [--limit N] [--cursor C]\n"
    "                                    [--json]\n"
    "       voidrecon cancellations show ID [--json]\n"
    "       voidrecon cancellations ack ID --by NAME [--note TEXT] [--json]\n"
    "\n"
    "Order cancellations that providers reported, straight from the database.\n"
    "  list  newest first (default all; open: waiting for a person), 50 a page.\n"
    "  show  one cancellation with what the provider said and its acknowledgement.\n"
    "  ack   acknowledges it: it leaves the follow-up list, and who and why are recorded.\n"
    "Tables by default; --json prints what the /v1 API answers.\n";

static const char deliveries_help[] =
    "usage: voidrecon deliveries list [--provider NAME] [--outcome OUTCOME] [--limit N]\n"
    "                                 [--cursor C] [--json]\n"
    "       voidrecon deliveries show ID [--json]\n"
    "       voidrecon deliveries replay ID... [--json]\n"
    "\n"
    "Work straight on the database (VOIDRECON_DATABASE_URL or --database-url); no running\n"
    "server is needed.\n"
    "  list    received webhooks newest first, 50 a page, by provider and outcome (applied,\n"
    "          duplicate, stale, conflict, ignored, rejected, failed).\n"
    "  show    one delivery: its body (text, or base64 when it is not UTF-8), the headers\n"
    "          kept for its signature, and the case events or cancellation it produced.\n"
    "  replay  runs each stored body again through this voidrecon's code, as\n"
    "          POST /v1/deliveries/ID/replay does: signature checked with today's secret\n"
    "          (VOIDRECON_<PROVIDER>_SECRET) over the kept headers, today's allowlist against\n"
    "          the stored address, then the state machine; a new delivery with replay_of set.\n"
    "          A delivery kept only as a prefix cannot be replayed.\n"
    "Tables by default; --json prints what the /v1 API answers (replay: one line per ID).\n";

static const char alerts_help[] =
    "usage: voidrecon alerts list [--state pending|delivered|all] [--limit N] [--cursor C]\n"
    "                             [--json]\n"
    "\n"
    "Lists alerts newest first with their delivery state, straight from the database.\n";

static const char prune_help[] =
    "usage: voidrecon prune [--json] [--setting=VALUE ...]\n"
    "\n"
    "Removes, straight on the database, what serve's retention removes on its timer, batch\n"
    "after batch to the end, and prints how many rows it removed from each table:\n"
    "deliveries older than VOIDRECON_DELIVERY_RETENTION_MS (except those a follow-up waiting\n"
    "for a person refers to), and history rows that changed nothing (duplicate, stale) older\n"
    "than VOIDRECON_EVENT_RETENTION_MS. Cases, their status changes, alerts and\n"
    "acknowledgements are never removed. Each batch takes the prune lock that serve takes, so\n"
    "it runs safely beside any number of voidrecon processes (for cron).\n"
    "Exits 1 when a batch fails or another process keeps the lock past the lock timeout.\n";

static const char events_help[] =
    "usage: voidrecon events [--after ID] [--limit N] [--follow [--poll-ms MS]] [--json]\n"
    "\n"
    "Lists the change feed (the events that created a case, changed its status or made it\n"
    "reconciled; what NOTIFY voidrecon_cases announces) in feed order after the event\n"
    "ID (default 0: from the start), 50 a page, as GET /v1/events does; pass the id of the\n"
    "last event you processed and nothing is skipped or repeated. --follow keeps printing\n"
    "each new event as one line (a JSON object with --json) until interrupted: it listens on\n"
    "voidrecon_cases and reads from the last event printed at each notification (again\n"
    "shortly while the event announced is not readable yet), and every --poll-ms (default\n"
    "1000) in case a notification went missing.\n";

/* ---- settings ------------------------------------------------------------------------------- */

/* The settings from the environment and the flags among argv; 0, or 2 after saying why. */
static int load_settings(struct config *cfg, int argc, char **argv)
{
    char err[512];

    if (config_load(cfg, argc, argv, err, sizeof(err)) != 0) {
        log_error("config_invalid", "%s", err);
        return 2;
    }
    log_set_level(cfg->log_level);
    return 0;
}

/* ---- serve, migrate, version ---------------------------------------------------------------- */

static void serve_help(FILE *f)
{
    fputs(serve_help_head, f);
    for (size_t i = 0; i < provider_count; i++)
        fprintf(f, "%s/webhooks/%s",
                i == 0                   ? ""
                : i + 1 < provider_count ? ", "
                                         : " and ",
                provider_all[i]->name);
    fputs(serve_help_tail, f);
}

static int cmd_serve(int argc, char **argv, cli_serve_fn serve)
{
    struct config cfg;
    int rc = load_settings(&cfg, argc, argv);

    if (rc == 0) {
        config_log(&cfg);
        rc = serve(&cfg);
    }
    config_cleanup(&cfg);
    return rc;
}

/* migrate --status and --dry-run exit with these (1 failure, 2 usage as every command). */
enum { MIGRATE_EXIT_CURRENT = 0, MIGRATE_EXIT_PENDING = 3, MIGRATE_EXIT_NEWER = 4 };

static int migrate_exit(const struct migrate_status *st)
{
    if (st->nunknown > 0)
        return MIGRATE_EXIT_NEWER;
    return st->npending > 0 ? MIGRATE_EXIT_PENDING : MIGRATE_EXIT_CURRENT;
}

/* The closing line of --status and --dry-run: where the schema stands and what to do. */
static void migrate_verdict(const struct migrate_status *st, const char *lead, FILE *out)
{
    if (st->nunknown > 0)
        fprintf(out,
                "%sthe database is NEWER than this binary: it records %zu migration(s) this "
                "voidrecon does not know (schema at version %d, this binary knows up to %d). "
                "Do not run this voidrecon against it; use one at least as new.\n",
                lead, st->nunknown, st->db_version, st->binary_version);
    else if (st->npending > 0)
        fprintf(out,
                "%sschema at version %d, this binary needs %d: %zu migration(s) pending; run "
                "'voidrecon migrate' ('voidrecon migrate --dry-run' shows their SQL).\n",
                lead, st->db_version, st->binary_version, st->npending);
    else
        fprintf(out, "%sschema at version %d: current.\n", lead, st->db_version);
}

static void migrate_print_status(const struct migrate_status *st, FILE *out)
{
    fprintf(out, "%7s  %-8s %-21s %s\n", "VERSION", "STATE", "APPLIED AT", "NAME");
    for (size_t i = 0; i < st->nentries; i++) {
        const struct migrate_entry *e = &st->entries[i];
        const char *state = e->known == NULL ? "unknown" : e->applied ? "applied" : "pending";

        fprintf(out, "%7d  %-8s %-21s %s%s\n", e->version, state,
                e->applied_at[0] ? e->applied_at : "-", e->name,
                e->known == NULL ? "  (not in this binary: recorded by a newer voidrecon)" : "");
    }
    migrate_verdict(st, "", out);
}

static void migrate_print_dry_run(const struct migrate_status *st, FILE *out)
{
    for (size_t i = 0; i < st->nentries; i++) {
        const struct migrate_entry *e = &st->entries[i];

        if (e->known == NULL || e->applied)
            continue;
        fprintf(out, "-- migration %s (version %d), in one transaction:\n%s", e->name, e->version,
                e->known->sql);
        if (e->known->sql[0] != '\0' && e->known->sql[strlen(e->known->sql) - 1] != '\n')
            fputc('\n', out);
    }
    fprintf(out, "-- dry run: nothing was applied.\n");
    migrate_verdict(st, "-- ", out);
}

/* --status or --dry-run: reads, prints, and exits as migrate_exit says. */
static int migrate_report(const struct config *cfg, bool dry_run, FILE *out)
{
    struct migrate_status st;
    char err[1024];
    int rc;

    if (migrate_status_read(cfg->database_url, &st, err, sizeof(err)) != 0) {
        log_error("migrate_status_failed", "%s", err);
        migrate_status_free(&st);
        return 1;
    }
    if (dry_run)
        migrate_print_dry_run(&st, out);
    else
        migrate_print_status(&st, out);
    rc = migrate_exit(&st);
    migrate_status_free(&st);
    return rc;
}

static int migrate_apply(const struct config *cfg)
{
    char err[1024];
    int applied = 0, version = 0;

    if (migrate_run(cfg->database_url, &applied, &version, err, sizeof(err)) != 0) {
        log_error("migrate_failed", "%s", err);
        return 1;
    }
    log_info("migrated", "applied %d migration(s); schema at version %d", applied, version);
    if (version > migrate_latest_version())
        log_warn("schema_newer",
                 "the database is newer than this binary (schema %d, this binary knows up to "
                 "%d): 'voidrecon migrate --status' lists what it does not know",
                 version, migrate_latest_version());
    return 0;
}

static int cmd_migrate(int argc, char **argv, cli_serve_fn serve)
{
    struct config cfg = {0};
    char **rest = xcalloc((size_t)argc + 1, sizeof(*rest));
    bool status = false, dry_run = false;
    int nrest = 0, rc;

    (void)serve;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--status") == 0)
            status = true;
        else if (strcmp(argv[i], "--dry-run") == 0)
            dry_run = true;
        else
            rest[nrest++] = argv[i];
    }
    if (status && dry_run) {
        log_error("usage", "--status and --dry-run: give one of them");
        rc = 2;
    } else if ((rc = load_settings(&cfg, nrest, rest)) == 0) {
        rc = status || dry_run ? migrate_report(&cfg, dry_run, stdout) : migrate_apply(&cfg);
    }
    free(rest);
    config_cleanup(&cfg);
    return rc;
}

static int cmd_version(int argc, char **argv, cli_serve_fn serve)
{
    (void)argc;
    (void)argv;
    (void)serve;
    printf("voidrecon %s\n", VOIDRECON_VERSION);
    return 0;
}

/* ---- cases and alerts ----------------------------------------------------------------------- */

/* Arguments that are not options a command takes at most (deliveries replay ID...). */
#define MAX_POSITIONAL 64

/* A command's own options; the other --flags are settings (config_load). */
struct cmd_opts {
    bool json, follow;
    int64_t after;
    unsigned poll_ms;
    const char *state, *cursor, *by, *note, *reason;
    unsigned limit;
    int status;
    const char *provider, *outcome;
    const char *pos[MAX_POSITIONAL];
    int npos;
    char **flags;
    int nflags;
};

static const char *const valued_opts[] = {"state",   "cursor", "by",     "note",
                                          "limit",   "status", "reason", "provider",
                                          "outcome", "after",  "poll-ms"};
/* --after: an event id, a whole number; 0, or 2 after saying what is wrong. */
static int after_opt(struct cmd_opts *o, const char *v)
{
    char *end;

    errno = 0;
    o->after = strtoll(v, &end, 10);
    if (*v < '0' || *v > '9' || *end != '\0' || errno != 0) {
        log_error("usage", "--after: \"%s\" is not an event id (a whole number, 0 or more)", v);
        return 2;
    }
    return 0;
}

/* --limit (1..STORE_MAX_LIMIT) or --status (0..6); 0, or 2 after saying what is wrong. */
static int number_opt(struct cmd_opts *o, const char *name, size_t n, const char *v)
{
    bool status = strncmp(name, "status", n) == 0;
    long lo = status ? 0 : 1, hi = status ? 6 : STORE_MAX_LIMIT;
    char *end;
    long num = strtol(v, &end, 10);

    if (*v == '\0' || *end != '\0' || num < lo || num > hi) {
        log_error("usage", "--%.*s: \"%s\" is not a number from %ld to %ld", (int)n, name, v, lo,
                  hi);
        return 2;
    }
    if (status)
        o->status = (int)num;
    else
        o->limit = (unsigned)num;
    return 0;
}

/* --poll-ms: 1 ms to an hour; 0, or 2 after saying what is wrong. */
static int poll_opt(struct cmd_opts *o, const char *v)
{
    char *end;
    long ms = strtol(v, &end, 10);

    if (*v < '0' || *v > '9' || *end != '\0' || ms < 1 || ms > 3600000) {
        log_error("usage", "--poll-ms: \"%s\" is not a number of milliseconds from 1 to 3600000",
                  v);
        return 2;
    }
    o->poll_ms = (unsigned)ms;
    return 0;
}

/* One option of the command: name (n bytes, without "--") and its value. */
static int own_opt(struct cmd_opts *o, const char *name, size_t n, const char *v)
{
    if (strncmp(name, "state", n) == 0)
        o->state = v;
    else if (strncmp(name, "cursor", n) == 0)
        o->cursor = v;
    else if (strncmp(name, "by", n) == 0)
        o->by = v;
    else if (strncmp(name, "note", n) == 0)
        o->note = v;
    else if (strncmp(name, "reason", n) == 0)
        o->reason = v;
    else if (strncmp(name, "provider", n) == 0)
        o->provider = v;
    else if (strncmp(name, "outcome", n) == 0)
        o->outcome = v;
    else if (strncmp(name, "after", n) == 0)
        return after_opt(o, v);
    else if (strncmp(name, "poll-ms", n) == 0)
        return poll_opt(o, v);
    else
        return number_opt(o, name, n, v);
    return 0;
}

static bool is_own(const char *name, size_t n)
{
    for (size_t k = 0; k < ARRAY_SIZE(valued_opts); k++) {
        if (strlen(valued_opts[k]) == n && strncmp(name, valued_opts[k], n) == 0)
            return true;
    }
    return false;
}

/* The options without a value; true when a is one. */
static bool flag_opt(struct cmd_opts *o, const char *a)
{
    if (strcmp(a, "--json") == 0)
        o->json = true;
    else if (strcmp(a, "--follow") == 0)
        o->follow = true;
    else
        return false;
    return true;
}

/* Takes argv[*i] (and its value, moving *i on); 0, or 2 after saying what is wrong. */
static int take_arg(struct cmd_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *eq = strchr(a, '='), *v;
    size_t n;

    if (flag_opt(o, a))
        return 0;
    if (strncmp(a, "--", 2) != 0) {
        if (o->npos == (int)ARRAY_SIZE(o->pos)) {
            log_error("usage", "unexpected argument \"%s\"", a);
            return 2;
        }
        o->pos[o->npos++] = a;
        return 0;
    }
    n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
    if (!is_own(a + 2, n)) {
        /* A setting: config_load reads it, with its value if it comes apart. */
        o->flags[o->nflags++] = argv[*i];
        if (eq == NULL && *i + 1 < argc)
            o->flags[o->nflags++] = argv[++*i];
        return 0;
    }
    v = eq != NULL ? eq + 1 : *i + 1 < argc ? argv[++*i] : NULL;
    if (v == NULL) {
        log_error("usage", "%s needs a value", a);
        return 2;
    }
    return own_opt(o, a + 2, n, v);
}

/* Returns 0, or 2 after saying what is wrong. o->flags is the caller's to free either way. */
static int cmd_opts_parse(int argc, char **argv, struct cmd_opts *o)
{
    int rc = 0;

    memset(o, 0, sizeof(*o));
    o->flags = xcalloc((size_t)argc + 1, sizeof(*o->flags));
    for (int i = 0; i < argc && rc == 0; i++)
        rc = take_arg(o, argc, argv, &i);
    return rc;
}

/* The settings among the flags; a command prints its result, so the pool's connection chatter
 * is hidden unless VOIDRECON_LOG_LEVEL asks for it. */
static int command_settings(struct cmd_opts *o, struct config *cfg)
{
    if (load_settings(cfg, o->nflags, o->flags) != 0)
        return 2;
    if (getenv("VOIDRECON_LOG_LEVEL") == NULL && cfg->log_level < LOG_WARN)
        log_set_level(LOG_WARN);
    return 0;
}

static bool is_sub(const char *sub, const char *name)
{
    return strcmp(sub, name) == 0;
}

/* One way to call a command: its subcommand (NULL: the command takes none) and how many
 * arguments follow it. */
struct form {
    const char *sub;
    int min_args, max_args;
};

static bool fits(const struct cmd_opts *o, const struct form *f)
{
    int args = o->npos - (f->sub != NULL);

    if (f->sub != NULL && (o->npos == 0 || !is_sub(o->pos[0], f->sub)))
        return false;
    return args >= f->min_args && args <= f->max_args;
}

/* The commands on the store: parses the options, checks the arguments against forms (the
 * help on stderr and 2 when they fit none), reads the settings, then run. */
static int store_command(int argc, char **argv, const char *help, const struct form *forms,
                         size_t nforms,
                         int (*run)(const struct cmd_opts *o, const struct config *cfg))
{
    struct cmd_opts o;
    struct config cfg = {0};
    bool ok = false;
    int rc;

    if ((rc = cmd_opts_parse(argc, argv, &o)) != 0)
        goto out;
    for (size_t i = 0; i < nforms && !ok; i++)
        ok = fits(&o, &forms[i]);
    if (!ok) {
        fputs(help, stderr);
        rc = 2;
        goto out;
    }
    if ((rc = command_settings(&o, &cfg)) == 0)
        rc = run(&o, &cfg);
out:
    free(o.flags);
    config_cleanup(&cfg);
    return rc;
}

static int cases_run(const struct cmd_opts *o, const struct config *cfg)
{
    const char *sub = o->pos[0];

    if (is_sub(sub, "add"))
        return cli_cases_add(cfg, o->pos[1], o->pos[2], o->status, o->json, stdout);
    if (is_sub(sub, "list"))
        return cli_cases_list(cfg, o->state ? o->state : "open", o->limit, o->cursor, o->json,
                              stdout);
    if (is_sub(sub, "show"))
        return cli_cases_show(cfg, o->pos[1], o->pos[2], o->json, stdout);
    return cli_cases_ack(cfg, o->pos[1], o->pos[2], o->reason, o->by, o->note, o->json, stdout);
}

static int cmd_cases(int argc, char **argv, cli_serve_fn serve)
{
    static const struct form forms[] = {
        {"add", 2, 2}, {"list", 0, 0}, {"show", 2, 2}, {"ack", 2, 2}};

    (void)serve;
    return store_command(argc, argv, cases_help, forms, ARRAY_SIZE(forms), cases_run);
}

static int cancellations_run(const struct cmd_opts *o, const struct config *cfg)
{
    const char *sub = o->pos[0];

    if (is_sub(sub, "list"))
        return cli_cancellations_list(cfg, o->state ? o->state : "all", o->limit, o->cursor,
                                      o->json, stdout);
    if (is_sub(sub, "show"))
        return cli_cancellations_show(cfg, o->pos[1], o->json, stdout);
    return cli_cancellations_ack(cfg, o->pos[1], o->by, o->note, o->json, stdout);
}

static int cmd_cancellations(int argc, char **argv, cli_serve_fn serve)
{
    static const struct form forms[] = {{"list", 0, 0}, {"show", 1, 1}, {"ack", 1, 1}};

    (void)serve;
    return store_command(argc, argv, cancellations_help, forms, ARRAY_SIZE(forms),
                         cancellations_run);
}

static int deliveries_run(const struct cmd_opts *o, const struct config *cfg)
{
    const char *sub = o->pos[0];

    if (is_sub(sub, "list"))
        return cli_deliveries_list(cfg, o->provider, o->outcome, o->limit, o->cursor, o->json,
                                   stdout);
    if (is_sub(sub, "show"))
        return cli_deliveries_show(cfg, o->pos[1], o->json, stdout);
    return cli_deliveries_replay(cfg, o->pos + 1, o->npos - 1, o->json, stdout);
}

static int cmd_deliveries(int argc, char **argv, cli_serve_fn serve)
{
    static const struct form forms[] = {
        {"list", 0, 0}, {"show", 1, 1}, {"replay", 1, MAX_POSITIONAL - 1}};

    (void)serve;
    return store_command(argc, argv, deliveries_help, forms, ARRAY_SIZE(forms), deliveries_run);
}

static int alerts_run(const struct cmd_opts *o, const struct config *cfg)
{
    return cli_alerts_list(cfg, o->state ? o->state : "all", o->limit, o->cursor, o->json, stdout);
}

static int cmd_alerts(int argc, char **argv, cli_serve_fn serve)
{
    static const struct form forms[] = {{"list", 0, 0}};

    (void)serve;
    return store_command(argc, argv, alerts_help, forms, ARRAY_SIZE(forms), alerts_run);
}

static int prune_run(const struct cmd_opts *o, const struct config *cfg)
{
    return cli_prune(cfg, o->json, stdout);
}

static int cmd_prune(int argc, char **argv, cli_serve_fn serve)
{
    static const struct form forms[] = {{NULL, 0, 0}};

    (void)serve;
    return store_command(argc, argv, prune_help, forms, ARRAY_SIZE(forms), prune_run);
}

static int events_run(const struct cmd_opts *o, const struct config *cfg)
{
    return cli_events(cfg,
                      &(struct cli_events_opts){.after = o->after,
                                                .limit = o->limit,
                                                .follow = o->follow,
                                                .poll_ms = o->poll_ms,
                                                .json = o->json},
                      stdout);
}

static int cmd_events(int argc, char **argv, cli_serve_fn serve)
{
    static const struct form forms[] = {{NULL, 0, 0}};

    (void)serve;
    return store_command(argc, argv, events_help, forms, ARRAY_SIZE(forms), events_run);
}

/* ---- dispatch ------------------------------------------------------------------------------- */

struct command {
    const char *name;
    const char *alias;  /* NULL: none */
    const char *help;   /* NULL: serve_help */
    bool settings_help; /* --help also lists the settings */
    int (*run)(int argc, char **argv, cli_serve_fn serve);
};

static const struct command commands[] = {
    {"serve", NULL, NULL, true, cmd_serve},
    {"migrate", NULL, migrate_help, true, cmd_migrate},
    {"cases", NULL, cases_help, false, cmd_cases},
    {"cancellations", NULL, cancellations_help, false, cmd_cancellations},
    {"alerts", NULL, alerts_help, false, cmd_alerts},
    {"deliveries", NULL, deliveries_help, false, cmd_deliveries},
    {"events", NULL, events_help, false, cmd_events},
    {"prune", NULL, prune_help, true, cmd_prune},
    {"version", "--version", version_help, false, cmd_version},
};

static bool wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    }
    return false;
}

int cli_main(int argc, char **argv, cli_serve_fn serve)
{
    const char *name = argc > 1 ? argv[1] : NULL;

    if (name == NULL || strcmp(name, "help") == 0 || strcmp(name, "--help") == 0 ||
        strcmp(name, "-h") == 0) {
        fputs(usage_text, name ? stdout : stderr);
        return name ? 0 : 2;
    }
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
        const struct command *c = &commands[i];

        if (strcmp(name, c->name) != 0 && (c->alias == NULL || strcmp(name, c->alias) != 0))
            continue;
        if (wants_help(argc - 2, argv + 2)) {
            if (c->help != NULL)
                fputs(c->help, stdout);
            else
                serve_help(stdout);
            if (c->settings_help)
                config_print_help(stdout);
            return 0;
        }
        return c->run(argc - 2, argv + 2, serve);
    }
    fprintf(stderr, "voidrecon: unknown command \"%s\"\n\n%s", name, usage_text);
    return 2;
}
