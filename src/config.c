/* Every setting in one place: its variable, type, default, bounds and meaning. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alert.h"
#include "buf.h"
#include "mask.h"

#define PREFIX "VOIDRECON_"

enum config_type { CT_STRING, CT_SECRET, CT_UINT };

struct config_entry {
    const char *name; /* without PREFIX; for a provider's, without PREFIX and its NAME_ */
    enum config_type type;
    size_t offset; /* in struct config, or in struct config_provider for a provider's */
    const char *def;
    uint64_t min, max; /* CT_UINT */
    const char *help;  /* for a provider's: a format taking its name; NULL: its secret_help */
};

#define S(name, field, def, help)                                                                  \
    {                                                                                              \
        name, CT_STRING, offsetof(struct config, field), def, 0, 0, help                           \
    }
#define K(name, field, help)                                                                       \
    {                                                                                              \
        name, CT_SECRET, offsetof(struct config, field), "", 0, 0, help                            \
    }
#define U(name, field, def, lo, hi, help)                                                          \
    {                                                                                              \
        name, CT_UINT, offsetof(struct config, field), def, lo, hi, help                           \
    }
#define P(name, type, field, def, help)                                                            \
    {                                                                                              \
        name, type, offsetof(struct config_provider, field), def, 0, 0, help                       \
    }
#define DAY_MS 86400000ULL

static const struct config_entry globals[] = {
    K("DATABASE_URL", database_url, "libpq connection string or URI (empty: PG* variables)"),
    S("LISTEN", listen, "127.0.0.1:8080", "host:port of the HTTP listener"),
    S("LOG_LEVEL", log_level_name, "info", "debug, info, warn or error"),
    U("MAX_BODY_BYTES", max_body_bytes, "1048576", 1, 64ULL << 20, "largest request body"),
    U("MAX_HEADER_BYTES", max_header_bytes, "16384", 1024, 1 << 20,
      "largest request line plus headers"),
    U("HEADER_TIMEOUT_MS", header_timeout_ms, "10000", 10, DAY_MS,
      "time a client has to send a request's head, and then its body"),
    U("IDLE_TIMEOUT_MS", idle_timeout_ms, "60000", 10, DAY_MS,
      "idle keep-alive connections are closed after this"),
    U("MAX_CONNECTIONS", max_connections, "1024", 1, 100000, "open client connections"),
    U("MAX_BUFFERED_BYTES", max_buffered_bytes, "67108864", 1024, 64ULL << 30,
      "request bytes all connections may hold at once; past it, 503 with Retry-After"),
    S("TRUSTED_PROXIES", trusted_proxies, "",
      "proxies (CIDRs, commas) whose X-Forwarded-For or PROXY header names the client "
      "(unset: none, the TCP peer is the client)"),
    S("PROXY_PROTOCOL", proxy_protocol, "off",
      "on: connections from TRUSTED_PROXIES must open with a PROXY protocol v1 or v2 header"),
    U("DB_POOL_SIZE", db_pool_size, "4", 1, 256,
      "PostgreSQL connections kept open for the work (plus one for health readings)"),
    U("WRITE_BATCH", write_batch, "128", 1, 1024,
      "webhooks written in one transaction at most (group commit; 1: each alone)"),
    U("WRITE_CONCURRENCY", write_concurrency, "2", 1, 256,
      "batches of writes under way at once, each on a connection of the pool; at most "
      "DB_POOL_SIZE - 1, so that polling, alerts and /v1 keep one"),
    U("DB_TIMEOUT_MS", db_timeout_ms, "10000", 100, DAY_MS,
      "longest database statement, and longest wait for a free connection"),
    U("GAUGE_REFRESH_MS", gauge_refresh_ms, "15000", 100, DAY_MS,
      "how often the counts of /metrics are read, in the background on a connection of their "
      "own (never per scrape)"),
    U("SHUTDOWN_TIMEOUT_MS", shutdown_timeout_ms, "10000", 0, DAY_MS,
      "on SIGINT/SIGTERM, how long requests in flight may take to finish"),
    K("ADMIN_TOKEN", admin_token, "bearer token of the /v1 API (unset: /v1 disabled)"),
    S("ATLAS_BASE_URL", atlas_base_url, "",
      "Atlas API base URL, e.g. https://sandbox.atriptech.com (unset: no polling)"),
    K("ATLAS_CLIENT_ID", atlas_client_id, "x-atlas-client-id for polling"),
    K("ATLAS_CLIENT_SECRET", atlas_client_secret, "x-atlas-client-secret for polling"),
    U("ATLAS_TIMEOUT_MS", atlas_timeout_ms, "10000", 10, DAY_MS,
      "one Atlas request, connect to last byte"),
    U("ATLAS_CONNECT_TIMEOUT_MS", atlas_connect_timeout_ms, "3000", 10, DAY_MS,
      "connecting to Atlas (at most ATLAS_TIMEOUT_MS)"),
    /* The settings of each provider go here, in provider_all's order. */
    {NULL, CT_STRING, 0, NULL, 0, 0, NULL},
    U("POLL_TICK_MS", poll_tick_ms, "1000", 1, DAY_MS, "how often the poller looks for due cases"),
    U("POLL_FIRST_MS", poll_first_ms, "300000", 0, 30 * DAY_MS,
      "first poll after a case appears, and the start of the growing interval"),
    U("POLL_MAX_INTERVAL_MS", poll_max_interval_ms, "3600000", 1, 30 * DAY_MS,
      "cap of the growing interval between polls, and of the error backoff"),
    U("POLL_CONFIRM_MS", poll_confirm_ms, "5000", 0, 30 * DAY_MS,
      "delay of the poll that confirms a closing reported by a webhook"),
    U("POLL_RETRY_MS", poll_retry_ms, "10000", 1, 30 * DAY_MS,
      "first retry after a failed poll; doubles with each failure in a row"),
    U("POLL_CONCURRENCY", poll_concurrency, "8", 1, 1024, "Atlas requests in flight"),
    U("POLL_MAX_RPS", poll_max_rps, "10", 1, 100000, "Atlas requests started per second"),
    U("POLL_FAILURES_ALERT", poll_failures_alert, "10", 1, 1000000,
      "failed polls in a row that flag poll_failing"),
    U("STUCK_AFTER_MS", stuck_after_ms, "86400000", 1, 365 * DAY_MS,
      "age at which a still-open case is flagged stuck"),
    U("ATLAS_CIRCUIT_CASES", atlas_circuit_cases, "3", 1, 1000000,
      "cases in a row whose polls fail for everyone (credentials, system or server error, "
      "unreachable, rate limit) that open the circuit (one alert; polls paused, probed)"),
    U("ATLAS_PROBE_MAX_MS", atlas_probe_max_ms, "300000", 1, 30 * DAY_MS,
      "cap of the probe interval while the circuit is open (it starts at POLL_RETRY_MS and "
      "doubles)"),
    U("ATLAS_SILENCE_MS", atlas_silence_ms, "21600000", 0, 365 * DAY_MS,
      "no Atlas webhook for this long while cases are open raises webhooks_silent (0: off)"),
    U("ATLAS_SILENCE_POLL_CHANGES", atlas_silence_poll_changes, "20", 0, 1000000,
      "status changes found by polls since the last Atlas webhook that raise webhooks_silent "
      "(0: off)"),
    K("ALERT_URL", alert_url, "alert receiver (unset: outbox and NOTIFY only)"),
    K("ALERT_SECRET", alert_secret,
      "Standard Webhooks signing secret, whsec_<base64> (unset: alerts are not signed)"),
    S("ALERT_FORMAT", alert_format_name, "standard",
      "body of each alert: standard (JSON with a text line), slack (incoming webhook) or "
      "pagerduty (Events API v2)"),
    K("ALERT_ROUTING_KEY", alert_routing_key,
      "PagerDuty integration key (routing_key), required with ALERT_FORMAT=pagerduty"),
    U("ALERT_TIMEOUT_MS", alert_timeout_ms, "15000", 10, DAY_MS, "one delivery attempt"),
    U("ALERT_TICK_MS", alert_tick_ms, "250", 1, DAY_MS, "how often to look for alerts to send"),
    U("ALERT_RETRY_MS", alert_retry_ms, "5000", 1, DAY_MS,
      "first retry after a failed delivery; doubles with each failure"),
    U("ALERT_RETRY_MAX_MS", alert_retry_max_ms, "3600000", 1, 30 * DAY_MS,
      "cap of the delivery backoff"),
    U("ALERT_CONCURRENCY", alert_concurrency, "4", 1, 1024, "deliveries in flight"),
    /* Retention: what serve and voidrecon prune remove, how often and how much at a time. */
    U("DELIVERY_RETENTION_MS", delivery_retention_ms, "7776000000", 0, 36500 * DAY_MS,
      "age at which deliveries (raw bodies) are pruned, unless a follow-up waiting for a person "
      "refers to them (0: kept for ever)"),
    U("EVENT_RETENTION_MS", event_retention_ms, "0", 0, 36500 * DAY_MS,
      "age at which history rows that changed nothing (duplicate, stale) are pruned (0: kept)"),
    U("PRUNE_INTERVAL_MS", prune_interval_ms, "3600000", 0, 30 * DAY_MS,
      "how often serve prunes, one process at a time across the database (0: never, for "
      "voidrecon prune from cron)"),
    U("PRUNE_BATCH", prune_batch, "1000", 1, 100000,
      "rows removed per batch, each batch a short transaction of its own"),
};

/* Each provider's VOIDRECON_<NAME>_*; SECRET only for providers that sign with one. */
static const struct config_entry per_provider[] = {
    P("WEBHOOK_TOKEN", CT_SECRET, webhook_token, "",
      "required path token: /webhooks/%s/<token> (unset: none)"),
    P("ALLOWED_CIDRS", CT_STRING, allowed_cidrs, "",
      "source addresses allowed to post %s webhooks, CIDRs separated by commas (unset: all)"),
    P("ALERTS", CT_STRING, alerts, "on", "order_cancelled alerts for %s cancellations: on or off"),
    P("SECRET", CT_SECRET, secret, "", NULL),
};

/* One setting as this configuration has it: its name, where its value lives, its help. */
struct slot {
    const struct config_entry *e;
    size_t index;  /* in the documented order: its place in cfg->sources */
    char name[64]; /* without PREFIX */
    char help[200];
    void *field;
};

/* tmpl with its "%s", if any, replaced by name. */
static void fill_name(char *out, size_t cap, const char *tmpl, const char *name)
{
    const char *at = strstr(tmpl, "%s");

    if (at == NULL)
        snprintf(out, cap, "%s", tmpl);
    else
        snprintf(out, cap, "%.*s%s%s", (int)(at - tmpl), tmpl, name, at + 2);
}

static bool applies(const struct config_entry *e, const struct provider *p)
{
    return e->offset != offsetof(struct config_provider, secret) || p->needs_secret;
}

static void global_slot(struct config *cfg, const struct config_entry *e, struct slot *s)
{
    memset(s, 0, sizeof(*s));
    s->e = e;
    snprintf(s->name, sizeof(s->name), "%s", e->name);
    snprintf(s->help, sizeof(s->help), "%s", e->help);
    s->field = (char *)cfg + e->offset;
}

static void provider_slot(struct config_provider *p, const struct config_entry *e, struct slot *s)
{
    const char *name = p->provider->name;
    size_t n;

    memset(s, 0, sizeof(*s));
    s->e = e;
    n = (size_t)snprintf(s->name, sizeof(s->name), "%s_%s", name, e->name);
    for (size_t c = 0; c < n && c < sizeof(s->name); c++)
        s->name[c] = (char)toupper((unsigned char)s->name[c]);
    fill_name(s->help, sizeof(s->help), e->help ? e->help : p->provider->secret_help, name);
    s->field = (char *)p + e->offset;
}

/* The i-th setting in the documented order into s; false past the last. */
static bool slot_at(struct config *cfg, size_t i, struct slot *s)
{
    const size_t index = i;

    for (size_t g = 0; g < ARRAY_SIZE(globals); g++) {
        if (globals[g].name != NULL) {
            if (i-- == 0) {
                global_slot(cfg, &globals[g], s);
                s->index = index;
                return true;
            }
            continue;
        }
        for (size_t k = 0; k < cfg->nproviders; k++) {
            for (size_t j = 0; j < ARRAY_SIZE(per_provider); j++) {
                if (applies(&per_provider[j], cfg->providers[k].provider) && i-- == 0) {
                    provider_slot(&cfg->providers[k], &per_provider[j], s);
                    s->index = index;
                    return true;
                }
            }
        }
    }
    return false;
}

/* The setting named name (len bytes, without PREFIX) into s; false when there is none. */
static bool find_slot(struct config *cfg, const char *name, size_t len, struct slot *s)
{
    for (size_t i = 0; slot_at(cfg, i, s); i++) {
        if (strlen(s->name) == len && strncmp(s->name, name, len) == 0)
            return true;
    }
    return false;
}

static int set_value(const struct slot *s, const char *value, char *err, size_t errlen)
{
    const struct config_entry *e = s->e;

    if (e->type == CT_UINT) {
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0' || !isdigit((unsigned char)value[0]) ||
            v < e->min || v > e->max) {
            snprintf(err, errlen, PREFIX "%s: \"%s\" is not a whole number from %llu to %llu",
                     s->name, value, (unsigned long long)e->min, (unsigned long long)e->max);
            return VR_EINVAL;
        }
        *(uint64_t *)s->field = v;
        return 0;
    }
    free(*(char **)s->field);
    *(char **)s->field = xstrdup(value);
    return 0;
}

void config_init(struct config *cfg)
{
    struct slot s;
    char err[256];
    size_t n;

    memset(cfg, 0, sizeof(*cfg));
    cfg->nproviders = provider_count;
    cfg->providers = xcalloc(provider_count, sizeof(*cfg->providers));
    for (size_t i = 0; i < provider_count; i++)
        cfg->providers[i].provider = provider_all[i];
    for (n = 0; slot_at(cfg, n, &s); n++) {
        if (set_value(&s, s.e->def, err, sizeof(err)) != 0)
            vr_panic("%s", err); /* a default outside its own bounds */
    }
    cfg->sources = xcalloc(n, 1); /* CONFIG_SOURCE_DEFAULT each */
}

/* ---- secrets from files and systemd credentials --------------------------------------------- */

/* The value of variable name, NULL when it is unset or empty (an empty one counts as unset, as
 * it always has for a secret: "" is each one's default). */
static const char *nonempty_env(const char *name)
{
    const char *v = getenv(name);

    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* Reads fd to its end into buf (cap bytes); *len gets how many, which is cap when there was
 * more. 0, or an errno value. */
static int read_all(int fd, char *buf, size_t cap, size_t *len)
{
    ssize_t n;

    *len = 0;
    while (*len < cap) {
        n = read(fd, buf + *len, cap - *len);
        if (n == 0)
            break;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        *len += (size_t)n;
    }
    return 0;
}

/* The secret in path for the setting var, less one trailing newline (LF or CRLF), into *out
 * (caller frees). what names the source in messages (the _FILE variable, or the credential);
 * they name the file, never its content. Warns when every user may read it. */
static int read_secret_file(const char *what, const char *path, char **out, char *err,
                            size_t errlen)
{
    const size_t cap = CONFIG_SECRET_FILE_MAX_BYTES + 1; /* one more tells a larger file */
    /* O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever, before fstat
     * could tell what it is; it changes nothing for the regular file that is then read. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY), e = 0;
    char *data = NULL;
    struct stat st;
    size_t len = 0;

    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: cannot read %s: %s", what, path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) { /* a FIFO or a terminal would block the start on read */
        snprintf(err, errlen, "%s: %s is not a regular file", what, path);
        goto fail;
    }
    if ((e = read_all(fd, data = xmalloc(cap), cap, &len)) != 0) {
        snprintf(err, errlen, "%s: cannot read %s: %s", what, path, strerror(e));
        goto fail;
    }
    if (len == cap) {
        snprintf(err, errlen, "%s: %s is larger than %d bytes", what, path,
                 CONFIG_SECRET_FILE_MAX_BYTES);
        goto fail;
    }
    if (len > 0 && data[len - 1] == '\n')
        len -= len > 1 && data[len - 2] == '\r' ? 2 : 1;
    if (len == 0 || memchr(data, '\0', len) != NULL) {
        snprintf(err, errlen, "%s: %s %s", what, path,
                 len == 0 ? "is empty" : "holds a NUL byte: a secret is text");
        goto fail;
    }
    if (st.st_mode & S_IROTH)
        log_warn("secret_file_readable",
                 "%s: %s can be read by every user of the machine; make it readable by the "
                 "service only (chmod o-r)",
                 what, path);
    data[len] = '\0';
    *out = data;
    close(fd);
    return 0;
fail:
    if (data != NULL)
        memset(data, 0, cap);
    free(data);
    if (fd >= 0)
        close(fd);
    return VR_EINVAL;
}

/* Where one secret can come from, each NULL when it does not: its variable's value, the path
 * of its _FILE variable, and the path of its credential. */
struct secret_places {
    char var[96], file_var[104], credential[64], credential_path[PATH_MAX];
    const char *value, *file, *cred;
};

/* $CREDENTIALS_DIRECTORY into *dir, NULL when it is unset or empty. Checked once, so that a
 * wrong one is told as such rather than as a problem with each secret in turn. */
static int credentials_dir(const char **dir, char *err, size_t errlen)
{
    struct stat st;

    *dir = nonempty_env("CREDENTIALS_DIRECTORY");
    if (*dir == NULL)
        return 0;
    if (stat(*dir, &st) != 0) {
        snprintf(err, errlen, "CREDENTIALS_DIRECTORY: cannot use %s: %s", *dir, strerror(errno));
        return VR_EINVAL;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "CREDENTIALS_DIRECTORY: %s is not a directory", *dir);
        return VR_EINVAL;
    }
    return 0;
}

/* Fills where for the setting s, given the credentials directory dir (NULL: none). A
 * credential counts when stat finds it, is absent when there is no such file, and any other
 * error looking for it stops the start. */
static int secret_places(const struct slot *s, const char *dir, struct secret_places *w, char *err,
                         size_t errlen)
{
    struct stat st;
    size_t n;
    int e;

    memset(w, 0, sizeof(*w));
    snprintf(w->var, sizeof(w->var), PREFIX "%s", s->name);
    snprintf(w->file_var, sizeof(w->file_var), "%s_FILE", w->var);
    n = (size_t)snprintf(w->credential, sizeof(w->credential), "%s", s->name);
    for (size_t c = 0; c < n && c < sizeof(w->credential); c++)
        w->credential[c] = (char)tolower((unsigned char)w->credential[c]);
    w->value = nonempty_env(w->var);
    w->file = nonempty_env(w->file_var);
    if (dir == NULL)
        return 0;
    if ((size_t)snprintf(w->credential_path, sizeof(w->credential_path), "%s/%s", dir,
                         w->credential) >= sizeof(w->credential_path)) {
        snprintf(err, errlen, "CREDENTIALS_DIRECTORY: %s is too long a path", dir);
        return VR_EINVAL;
    }
    if (stat(w->credential_path, &st) == 0) {
        w->cred = w->credential_path;
        return 0;
    }
    if ((e = errno) == ENOENT)
        return 0;
    snprintf(err, errlen, "%s: cannot look at the credential %s: %s", w->var, w->credential_path,
             strerror(e));
    return VR_EINVAL;
}

/* A secret from two places is refused rather than ranked: after a rotation done in one place,
 * a stale copy left in the other would otherwise win without a word. */
static int secret_ambiguous(const struct secret_places *w, char *err, size_t errlen)
{
    const char *names[3];
    char cred[128];
    int n = 0;

    snprintf(cred, sizeof(cred), "the credential %s in $CREDENTIALS_DIRECTORY", w->credential);
    if (w->value != NULL)
        names[n++] = w->var;
    if (w->file != NULL)
        names[n++] = w->file_var;
    if (w->cred != NULL)
        names[n++] = cred;
    if (n < 2)
        return 0;
    snprintf(err, errlen, "%s: set by %s%s%s and %s; keep one of them", w->var, names[0],
             n == 3 ? ", " : "", n == 3 ? names[1] : "", names[n - 1]);
    return VR_EINVAL;
}

/* One secret setting, from whichever single place holds it. */
static int load_secret(struct config *cfg, const struct slot *s, const char *creds_dir, char *err,
                       size_t errlen)
{
    struct secret_places w;
    char what[192], *value = NULL;
    int r;

    if ((r = secret_places(s, creds_dir, &w, err, errlen)) != 0)
        return r;
    if (w.file != NULL && w.file[0] != '/') { /* a secret pasted here must not reach the log */
        snprintf(err, errlen,
                 "%s: not an absolute path (its value is not shown: it may be the secret itself)",
                 w.file_var);
        return VR_EINVAL;
    }
    if ((r = secret_ambiguous(&w, err, errlen)) != 0)
        return r;
    if (w.value != NULL) {
        cfg->sources[s->index] = CONFIG_SOURCE_ENV;
        return set_value(s, w.value, err, errlen);
    }
    if (w.file == NULL && w.cred == NULL)
        return 0;
    if (w.file != NULL)
        snprintf(what, sizeof(what), "%s", w.file_var);
    else
        snprintf(what, sizeof(what), "%s (credential %s)", w.var, w.credential);
    if ((r = read_secret_file(what, w.file ? w.file : w.cred, &value, err, errlen)) != 0)
        return r;
    cfg->sources[s->index] = w.file ? CONFIG_SOURCE_FILE : CONFIG_SOURCE_CREDENTIAL;
    free(*(char **)s->field);
    *(char **)s->field = value; /* a string setting: set_value would only copy it */
    return 0;
}

/* true when name (len bytes, without PREFIX) is a secret setting's _FILE variable. */
static bool is_secret_file_var(struct config *cfg, const char *name, size_t len)
{
    static const char suffix[] = "_FILE";
    const size_t slen = sizeof(suffix) - 1;
    struct slot s;

    return len > slen && memcmp(name + len - slen, suffix, slen) == 0 &&
           find_slot(cfg, name, len - slen, &s) && s.e->type == CT_SECRET;
}

int config_load_env(struct config *cfg, char *err, size_t errlen)
{
    const size_t plen = sizeof(PREFIX) - 1;
    const char *creds_dir;
    char name[128];
    struct slot s;
    int r;

    /* A misspelt variable would otherwise be ignored without a word. */
    for (char **e = environ; *e != NULL; e++) {
        const char *eq = strchr(*e, '=');

        if (eq != NULL && strncmp(*e, PREFIX, plen) == 0 &&
            !find_slot(cfg, *e + plen, (size_t)(eq - *e) - plen, &s) &&
            !is_secret_file_var(cfg, *e + plen, (size_t)(eq - *e) - plen))
            log_warn("config_unknown",
                     "%.*s is not a voidrecon setting (only secret settings have a _FILE "
                     "variable); ignored",
                     (int)(eq - *e), *e);
    }
    if ((r = credentials_dir(&creds_dir, err, errlen)) != 0)
        return r;
    for (size_t i = 0; slot_at(cfg, i, &s); i++) {
        const char *v;

        if (s.e->type == CT_SECRET) {
            if ((r = load_secret(cfg, &s, creds_dir, err, errlen)) != 0)
                return r;
            continue;
        }
        snprintf(name, sizeof(name), PREFIX "%s", s.name);
        if ((v = getenv(name)) != NULL && (r = set_value(&s, v, err, errlen)) != 0)
            return r;
        if (v != NULL)
            cfg->sources[s.index] = CONFIG_SOURCE_ENV;
    }
    return 0;
}

int config_set_flag(struct config *cfg, const char *name, const char *value, char *err,
                    size_t errlen)
{
    char want[128];
    size_t n = 0;
    struct slot s;

    for (const char *p = name; *p && n + 1 < sizeof(want); p++)
        want[n++] = (char)(*p == '-' ? '_' : toupper((unsigned char)*p));
    want[n] = '\0';
    if (!find_slot(cfg, want, n, &s))
        return VR_ENOENT;
    if (cfg->sources != NULL)
        cfg->sources[s.index] = CONFIG_SOURCE_FLAG;
    return set_value(&s, value, err, errlen);
}

/* Applies the flags of argv: "--name=value" or "--name value". */
static int load_flags(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i], *eq, *value;
        char name[64];
        int r;

        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument \"%s\"", arg);
            return VR_EINVAL;
        }
        eq = strchr(arg, '=');
        if (eq != NULL) {
            snprintf(name, sizeof(name), "%.*s", (int)(eq - arg - 2), arg + 2);
            value = eq + 1;
        } else {
            snprintf(name, sizeof(name), "%s", arg + 2);
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--%s needs a value", name);
                return VR_EINVAL;
            }
            value = argv[++i];
        }
        r = config_set_flag(cfg, name, value, err, errlen);
        if (r == VR_ENOENT)
            snprintf(err, errlen, "unknown option --%s (see voidrecon serve --help)", name);
        if (r != 0)
            return VR_EINVAL;
    }
    return 0;
}

int config_load(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    int r;

    config_init(cfg);
    if ((r = config_load_env(cfg, err, errlen)) != 0 ||
        (r = load_flags(cfg, argc, argv, err, errlen)) != 0)
        return r;
    return config_validate(cfg, err, errlen);
}

static int parse_listen(struct config *cfg, char *err, size_t errlen)
{
    const char *colon = strrchr(cfg->listen, ':');
    const char *host = cfg->listen;
    size_t hostlen;
    char *end;
    long port;

    if (colon == NULL)
        goto bad;
    hostlen = (size_t)(colon - host);
    if (hostlen >= 2 && host[0] == '[' && host[hostlen - 1] == ']') {
        host++;
        hostlen -= 2;
    }
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (hostlen == 0 || errno != 0 || end == colon + 1 || *end != '\0' || port < 0 || port > 65535)
        goto bad;
    free(cfg->listen_host);
    cfg->listen_host = xstrndup(host, hostlen);
    cfg->listen_port = (int)port;
    return 0;
bad:
    snprintf(err, errlen, PREFIX "LISTEN: \"%s\" is not host:port (e.g. 127.0.0.1:8080)",
             cfg->listen);
    return VR_EINVAL;
}

static bool is_path_token(const char *s)
{
    for (; *s != '\0'; s++) {
        if (!isalnum((unsigned char)*s) && strchr("-_.~", *s) == NULL)
            return false;
    }
    return true;
}

static bool is_http_url(const char *s)
{
    return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

/* An on/off setting's value into *on; false when it is neither. */
static bool parse_on_off(const char *value, bool *on)
{
    *on = strcmp(value, "on") == 0;
    return *on || strcmp(value, "off") == 0;
}

static int validate_provider(struct config_provider *p, char *err, size_t errlen)
{
    char upper[32], acl_err[200];
    size_t n = (size_t)snprintf(upper, sizeof(upper), "%s", p->provider->name);

    for (size_t i = 0; i < n && i < sizeof(upper); i++)
        upper[i] = (char)toupper((unsigned char)upper[i]);
    if (acl_parse(p->allowed_cidrs, &p->acl, acl_err, sizeof(acl_err)) != 0) {
        snprintf(err, errlen, PREFIX "%s_ALLOWED_CIDRS: %s", upper, acl_err);
        return VR_EINVAL;
    }
    if (!is_path_token(p->webhook_token)) {
        snprintf(err, errlen,
                 PREFIX "%s_WEBHOOK_TOKEN: only letters, digits and -_.~ may appear in a "
                        "path token",
                 upper);
        return VR_EINVAL;
    }
    if (!parse_on_off(p->alerts, &p->alerts_on)) {
        snprintf(err, errlen, PREFIX "%s_ALERTS: \"%s\" is not on or off", upper, p->alerts);
        return VR_EINVAL;
    }
    return 0;
}

/* The format and what it needs; the routing key is never quoted. */
static int validate_alert_format(struct config *cfg, char *err, size_t errlen)
{
    if (alert_format_parse(cfg->alert_format_name, &cfg->alert_format) != 0) {
        snprintf(err, errlen, PREFIX "ALERT_FORMAT: \"%s\" is not standard, slack or pagerduty",
                 cfg->alert_format_name);
        return VR_EINVAL;
    }
    if (cfg->alert_format == ALERT_FORMAT_PAGERDUTY && cfg->alert_routing_key[0] == '\0') {
        snprintf(err, errlen,
                 PREFIX "ALERT_ROUTING_KEY: required with " PREFIX "ALERT_FORMAT=pagerduty (the "
                        "integration key of a PagerDuty Events API v2 integration)");
        return VR_EINVAL;
    }
    if (strpbrk(cfg->alert_routing_key, "\r\n") != NULL) {
        snprintf(err, errlen, PREFIX "ALERT_ROUTING_KEY: must be one line");
        return VR_EINVAL;
    }
    return 0;
}

static int validate_proxies(struct config *cfg, char *err, size_t errlen)
{
    char acl_err[200];

    if (acl_parse(cfg->trusted_proxies, &cfg->trusted_acl, acl_err, sizeof(acl_err)) != 0) {
        snprintf(err, errlen, PREFIX "TRUSTED_PROXIES: %s", acl_err);
        return VR_EINVAL;
    }
    if (!parse_on_off(cfg->proxy_protocol, &cfg->proxy_protocol_on)) {
        snprintf(err, errlen, PREFIX "PROXY_PROTOCOL: \"%s\" is not on or off",
                 cfg->proxy_protocol);
        return VR_EINVAL;
    }
    /* On with nobody trusted would change nothing: say so rather than seem to work. */
    if (cfg->proxy_protocol_on && acl_count(cfg->trusted_acl) == 0) {
        snprintf(err, errlen,
                 PREFIX "PROXY_PROTOCOL: on needs " PREFIX "TRUSTED_PROXIES, the proxies that "
                        "send the header");
        return VR_EINVAL;
    }
    return 0;
}

int config_validate(struct config *cfg, char *err, size_t errlen)
{
    char shown_url[512];
    int r;

    if ((r = parse_listen(cfg, err, errlen)) != 0)
        return r;
    if (log_level_parse(cfg->log_level_name, &cfg->log_level) != 0) {
        snprintf(err, errlen, PREFIX "LOG_LEVEL: \"%s\" is not debug, info, warn or error",
                 cfg->log_level_name);
        return VR_EINVAL;
    }
    for (size_t i = 0; i < cfg->nproviders; i++) {
        if ((r = validate_provider(&cfg->providers[i], err, errlen)) != 0)
            return r;
    }
    if ((r = validate_proxies(cfg, err, errlen)) != 0)
        return r;
    if (cfg->atlas_base_url[0] != '\0') {
        if (!is_http_url(cfg->atlas_base_url)) {
            mask_url(cfg->atlas_base_url, shown_url, sizeof(shown_url));
            snprintf(err, errlen, PREFIX "ATLAS_BASE_URL: \"%s\" is not an http(s) URL", shown_url);
            return VR_EINVAL;
        }
        if (cfg->atlas_client_id[0] == '\0' || cfg->atlas_client_secret[0] == '\0') {
            snprintf(err, errlen,
                     PREFIX "ATLAS_CLIENT_ID and " PREFIX "ATLAS_CLIENT_SECRET: both must "
                            "be set when " PREFIX "ATLAS_BASE_URL is");
            return VR_EINVAL;
        }
    }
    if (cfg->alert_url[0] != '\0' && !is_http_url(cfg->alert_url)) {
        mask_url(cfg->alert_url, shown_url, sizeof(shown_url));
        snprintf(err, errlen, PREFIX "ALERT_URL: \"%s\" is not an http(s) URL", shown_url);
        return VR_EINVAL;
    }
    if (cfg->alert_secret[0] != '\0' &&
        alert_key_parse(cfg->alert_secret, &cfg->alert_key, &cfg->alert_key_len) != 0) {
        snprintf(err, errlen, PREFIX "ALERT_SECRET: a whsec_ secret must be base64");
        return VR_EINVAL;
    }
    if ((r = validate_alert_format(cfg, err, errlen)) != 0)
        return r;
    /* Below it, a body the server takes could never be admitted: 503 for ever. */
    if (cfg->max_buffered_bytes < cfg->max_body_bytes + cfg->max_header_bytes) {
        snprintf(err, errlen,
                 PREFIX "MAX_BUFFERED_BYTES: %" PRIu64 " is less than one largest request (" PREFIX
                        "MAX_BODY_BYTES + " PREFIX "MAX_HEADER_BYTES = %" PRIu64 ")",
                 cfg->max_buffered_bytes, cfg->max_body_bytes + cfg->max_header_bytes);
        return VR_EINVAL;
    }
    if (strpbrk(cfg->atlas_client_id, "\r\n") || strpbrk(cfg->atlas_client_secret, "\r\n")) {
        snprintf(err, errlen, PREFIX "ATLAS_CLIENT_ID/_SECRET: must be one line");
        return VR_EINVAL;
    }
    return 0;
}

/* What the log shows of a string setting: secrets masked, and of a URL what tells where it
 * points. Any setting named like a secret is hidden whatever its declared type. */
static const char *shown(const struct slot *s, const struct config *cfg, char *masked, size_t cap)
{
    const char *v = *(char *const *)s->field;

    if (v[0] == '\0')
        return v;
    if (s->field == (const void *)&cfg->database_url) {
        mask_conninfo(v, masked, cap);
        return masked;
    }
    if (s->field == (const void *)&cfg->alert_url) {
        /* Chat tools put their secret in the path: show only where alerts go. The userinfo
         * is masked first, so that the cut after the host cannot fall inside a password. */
        char url[1024];
        const char *host;
        size_t keep;

        mask_url(v, url, sizeof(url));
        host = strstr(url, "://");
        keep = host ? strcspn(host + 3, "/?#") + (size_t)(host + 3 - url) : 0;
        snprintf(masked, cap, "%.*s/" MASK_HIDDEN, (int)keep, url);
        return masked;
    }
    if (s->e->type == CT_SECRET || mask_name_is_secret(s->name, strlen(s->name)))
        return MASK_HIDDEN;
    mask_url(v, masked, cap);
    return masked;
}

/* Where a set secret came from, as config_log writes it after the masked value: "(file)". */
static const char *secret_source(const struct config *cfg, const struct slot *s)
{
    static const char *const names[] = {"", "(env)", "(file)", "(credential)", "(flag)"};
    unsigned src = cfg->sources != NULL ? cfg->sources[s->index] : CONFIG_SOURCE_DEFAULT;

    if (s->e->type != CT_SECRET || src >= ARRAY_SIZE(names))
        return "";
    return names[src];
}

void config_log(const struct config *cfg)
{
    struct buf line;
    char masked[1024];
    struct slot s;

    buf_init(&line, 16384);
    /* slot_at only hands out where values are; nothing here writes through it. */
    for (size_t i = 0; slot_at((struct config *)cfg, i, &s); i++) {
        const char *sep = line.len ? " " : "";
        int r;

        if (s.e->type == CT_UINT) {
            r = buf_addf(&line, "%s%s=%llu", sep, s.name,
                         (unsigned long long)*(const uint64_t *)s.field);
        } else {
            const char *v = shown(&s, cfg, masked, sizeof(masked));

            r = buf_addf(&line, "%s%s=%s%s", sep, s.name, v[0] ? v : "(unset)",
                         v[0] ? secret_source(cfg, &s) : "");
        }
        if (r != 0)
            break; /* the rest would not fit one log line anyway */
    }
    log_info("config", "%s", line.data ? line.data : "");
    buf_free(&line);
}

/* How the secret settings can be kept out of the environment, naming each of them. */
static void config_print_secret_help(FILE *f, struct config *cfg)
{
    struct slot s;
    int col = 2;

    fprintf(f, "\nSecret settings:\n ");
    for (size_t i = 0; slot_at(cfg, i, &s); i++) {
        if (s.e->type != CT_SECRET)
            continue;
        if (col + (int)strlen(s.name) + 2 > 90) {
            fprintf(f, "\n ");
            col = 2;
        }
        col += fprintf(f, " %s", s.name);
    }
    fprintf(f,
            "\n"
            "Each can be read from a file instead: " PREFIX "<NAME>_FILE=/path (its content,\n"
            "less one trailing newline; at most %d bytes), or from the systemd credential\n"
            "named <name> in lower case (LoadCredential=admin_token:/etc/voidrecon/admin_token\n"
            "is read from $CREDENTIALS_DIRECTORY/admin_token). A secret given in two of these\n"
            "places (variable, _FILE, credential) is refused. A flag overrides the value, but the\n"
            "variable, its _FILE and the credential are still read and checked first: a conflict\n"
            "or an unreadable file stops the start even then. A file that every user may read is\n"
            "warned of (secret_file_readable).\n",
            CONFIG_SECRET_FILE_MAX_BYTES);
}

void config_print_help(FILE *f)
{
    struct config cfg;
    struct slot s;

    config_init(&cfg);
    fprintf(f, "Environment (flags --name-in-lower-case=VALUE override them):\n");
    for (size_t i = 0; slot_at(&cfg, i, &s); i++) {
        fprintf(f, "  " PREFIX "%-22s %s", s.name, s.help);
        if (s.e->def[0] != '\0' && s.e->type != CT_SECRET)
            fprintf(f, " [%s]", s.e->def);
        fputc('\n', f);
    }
    config_print_secret_help(f, &cfg);
    config_cleanup(&cfg);
}

void config_cleanup(struct config *cfg)
{
    struct slot s;

    for (size_t i = 0; cfg->providers != NULL && slot_at(cfg, i, &s); i++) {
        if (s.e->type != CT_UINT)
            free(*(char **)s.field);
    }
    for (size_t i = 0; cfg->providers != NULL && i < cfg->nproviders; i++)
        acl_free(cfg->providers[i].acl);
    acl_free(cfg->trusted_acl);
    free(cfg->providers);
    free(cfg->sources);
    free(cfg->listen_host);
    if (cfg->alert_key != NULL)
        memset(cfg->alert_key, 0, cfg->alert_key_len);
    free(cfg->alert_key);
    memset(cfg, 0, sizeof(*cfg));
}
