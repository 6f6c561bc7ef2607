/* One table declares every setting: its variable, type, default, bounds and meaning. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl.h"
#include "alert.h"

#define PREFIX "VOIDRECON_"

enum config_type { CT_STRING, CT_SECRET, CT_UINT };

struct config_entry {
    const char *name; /* without PREFIX */
    enum config_type type;
    size_t offset;
    const char *def;
    uint64_t min, max; /* CT_UINT */
    const char *help;
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
#define DAY_MS 86400000ull

static const struct config_entry entries[] = {
    K("DATABASE_URL", database_url, "libpq connection string or URI (empty: PG* variables)"),
    S("LISTEN", listen, "127.0.0.1:8080", "host:port of the HTTP listener"),
    S("LOG_LEVEL", log_level_name, "info", "debug, info, warn or error"),
    U("MAX_BODY_BYTES", max_body_bytes, "1048576", 1, 64ull << 20, "largest request body"),
    U("MAX_HEADER_BYTES", max_header_bytes, "16384", 1024, 1 << 20,
      "largest request line plus headers"),
    U("HEADER_TIMEOUT_MS", header_timeout_ms, "10000", 10, DAY_MS,
      "time a client has to send a request's head, and then its body"),
    U("IDLE_TIMEOUT_MS", idle_timeout_ms, "60000", 10, DAY_MS,
      "idle keep-alive connections are closed after this"),
    U("MAX_CONNECTIONS", max_connections, "1024", 1, 100000, "open client connections"),
    U("DB_POOL_SIZE", db_pool_size, "4", 1, 256, "PostgreSQL connections kept open"),
    U("DB_TIMEOUT_MS", db_timeout_ms, "10000", 100, DAY_MS,
      "longest database statement, and longest wait for a free connection"),
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
#define PROVIDER_ENTRIES(NAME, i, label)                                                           \
    K(NAME "_WEBHOOK_TOKEN", providers[i].webhook_token,                                           \
      "required path token: /webhooks/" label "/<token> (unset: none)"),                           \
        S(NAME "_ALLOWED_CIDRS", providers[i].allowed_cidrs, "",                                   \
          "source addresses allowed to post " label                                                \
          " webhooks, CIDRs separated by commas (unset: all)"),                                    \
        S(NAME "_ALERTS", providers[i].alerts, "on",                                               \
          "order_cancelled alerts for " label " cancellations: on or off")
    PROVIDER_ENTRIES("ATLAS", 0, "atlas"),
    PROVIDER_ENTRIES("XSOLLA", 1, "xsolla"),
    K("XSOLLA_SECRET", providers[1].secret,
      "Xsolla project secret key (unset: /webhooks/xsolla answers 503)"),
    PROVIDER_ENTRIES("XENDBRIDGE", 2, "xendbridge"),
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
    K("ALERT_URL", alert_url, "alert receiver (unset: outbox and NOTIFY only)"),
    K("ALERT_SECRET", alert_secret,
      "Standard Webhooks signing secret, whsec_<base64> (unset: alerts are not signed)"),
    U("ALERT_TIMEOUT_MS", alert_timeout_ms, "15000", 10, DAY_MS, "one delivery attempt"),
    U("ALERT_TICK_MS", alert_tick_ms, "250", 1, DAY_MS, "how often to look for alerts to send"),
    U("ALERT_RETRY_MS", alert_retry_ms, "5000", 1, DAY_MS,
      "first retry after a failed delivery; doubles with each failure"),
    U("ALERT_RETRY_MAX_MS", alert_retry_max_ms, "3600000", 1, 30 * DAY_MS,
      "cap of the delivery backoff"),
    U("ALERT_CONCURRENCY", alert_concurrency, "4", 1, 1024, "deliveries in flight"),
};

static int set_value(struct config *cfg, const struct config_entry *e, const char *value, char *err,
                     size_t errlen)
{
    char *field = (char *)cfg + e->offset;

    if (e->type == CT_UINT) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0' || !isdigit((unsigned char)value[0]) ||
            v < e->min || v > e->max) {
            snprintf(err, errlen, PREFIX "%s: \"%s\" is not a whole number from %llu to %llu",
                     e->name, value, (unsigned long long)e->min, (unsigned long long)e->max);
            return VR_EINVAL;
        }
        *(uint64_t *)(void *)field = v;
        return 0;
    }
    free(*(char **)(void *)field);
    *(char **)(void *)field = xstrdup(value);
    return 0;
}

void config_init(struct config *cfg)
{
    char err[256];

    static const char *const names[] = {"atlas", "xsolla", "xendbridge"};

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < ARRAY_SIZE(cfg->providers); i++)
        cfg->providers[i].name = names[i];
    for (size_t i = 0; i < ARRAY_SIZE(entries); i++) {
        if (set_value(cfg, &entries[i], entries[i].def, err, sizeof(err)) != 0)
            vr_panic("%s", err); /* a default outside its own bounds */
    }
}

extern char **environ;

static const struct config_entry *entry_named(const char *name, size_t len)
{
    for (size_t i = 0; i < ARRAY_SIZE(entries); i++) {
        if (strlen(entries[i].name) == len && strncmp(entries[i].name, name, len) == 0)
            return &entries[i];
    }
    return NULL;
}

int config_load_env(struct config *cfg, char *err, size_t errlen)
{
    char name[128];
    int r;

    /* A misspelt variable would otherwise be ignored without a word. */
    for (char **e = environ; *e != NULL; e++) {
        const char *eq = strchr(*e, '=');
        size_t plen = sizeof(PREFIX) - 1;

        if (eq == NULL || strncmp(*e, PREFIX, plen) != 0 ||
            entry_named(*e + plen, (size_t)(eq - *e) - plen) != NULL)
            continue;
        log_warn("config_unknown", "%.*s is not a voidrecon setting; ignored", (int)(eq - *e), *e);
    }

    for (size_t i = 0; i < ARRAY_SIZE(entries); i++) {
        snprintf(name, sizeof(name), PREFIX "%s", entries[i].name);
        const char *v = getenv(name);
        if (v != NULL && (r = set_value(cfg, &entries[i], v, err, errlen)) != 0)
            return r;
    }
    return 0;
}

int config_set_flag(struct config *cfg, const char *flag, const char *value, char *err,
                    size_t errlen)
{
    const struct config_entry *e;
    char want[128];
    size_t n = 0;

    for (const char *p = flag; *p && n + 1 < sizeof(want); p++)
        want[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    want[n] = '\0';
    e = entry_named(want, n);
    return e != NULL ? set_value(cfg, e, value, err, errlen) : VR_ENOENT;
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

int config_validate(struct config *cfg, char *err, size_t errlen)
{
    struct acl *acl = NULL;
    char acl_err[200];
    int r;

    if ((r = parse_listen(cfg, err, errlen)) != 0)
        return r;
    if (log_level_parse(cfg->log_level_name, &cfg->log_level) != 0) {
        snprintf(err, errlen, PREFIX "LOG_LEVEL: \"%s\" is not debug, info, warn or error",
                 cfg->log_level_name);
        return VR_EINVAL;
    }
    for (size_t i = 0; i < ARRAY_SIZE(cfg->providers); i++) {
        struct config_provider *p = &cfg->providers[i];
        char upper[16];

        snprintf(upper, sizeof(upper), "%s", p->name);
        for (char *c = upper; *c; c++)
            *c = (char)toupper((unsigned char)*c);
        if (acl_parse(p->allowed_cidrs, &acl, acl_err, sizeof(acl_err)) != 0) {
            snprintf(err, errlen, PREFIX "%s_ALLOWED_CIDRS: %s", upper, acl_err);
            return VR_EINVAL;
        }
        acl_free(acl);
        if (strspn(p->webhook_token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                     "0123456789-_.~") != strlen(p->webhook_token)) {
            snprintf(err, errlen,
                     PREFIX "%s_WEBHOOK_TOKEN: only letters, digits and -_.~ may appear in a "
                            "path token",
                     upper);
            return VR_EINVAL;
        }
        if (strcmp(p->alerts, "on") != 0 && strcmp(p->alerts, "off") != 0) {
            snprintf(err, errlen, PREFIX "%s_ALERTS: \"%s\" is not on or off", upper, p->alerts);
            return VR_EINVAL;
        }
        p->alerts_on = strcmp(p->alerts, "on") == 0;
    }
    if (cfg->atlas_base_url[0] != '\0') {
        if (strncmp(cfg->atlas_base_url, "http://", 7) != 0 &&
            strncmp(cfg->atlas_base_url, "https://", 8) != 0) {
            snprintf(err, errlen, PREFIX "ATLAS_BASE_URL: \"%s\" is not an http(s) URL",
                     cfg->atlas_base_url);
            return VR_EINVAL;
        }
        if (cfg->atlas_client_id[0] == '\0' || cfg->atlas_client_secret[0] == '\0') {
            snprintf(err, errlen,
                     PREFIX "ATLAS_CLIENT_ID and " PREFIX "ATLAS_CLIENT_SECRET: both must be "
                            "set when " PREFIX "ATLAS_BASE_URL is");
            return VR_EINVAL;
        }
    }
    if (cfg->alert_url[0] != '\0' && strncmp(cfg->alert_url, "http://", 7) != 0 &&
        strncmp(cfg->alert_url, "https://", 8) != 0) {
        snprintf(err, errlen, PREFIX "ALERT_URL: \"%s\" is not an http(s) URL", cfg->alert_url);
        return VR_EINVAL;
    }
    if (cfg->alert_secret[0] != '\0') {
        unsigned char *key = NULL;
        size_t len;

        if (alert_key_parse(cfg->alert_secret, &key, &len) != 0) {
            snprintf(err, errlen, PREFIX "ALERT_SECRET: a whsec_ secret must be base64");
            return VR_EINVAL;
        }
        free(key);
    }
    if (strpbrk(cfg->atlas_client_id, "\r\n") || strpbrk(cfg->atlas_client_secret, "\r\n")) {
        snprintf(err, errlen, PREFIX "ATLAS_CLIENT_ID/_SECRET: must be one line");
        return VR_EINVAL;
    }
    return 0;
}

void config_mask_url(const char *url, char *out, size_t outlen)
{
    const char *scheme = strstr(url, "://");
    const char *pw;

    snprintf(out, outlen, "%s", url);
    if (scheme != NULL) {
        const char *at = strchr(scheme + 3, '@');
        const char *colon = strchr(scheme + 3, ':');
        if (at != NULL && colon != NULL && colon < at)
            snprintf(out, outlen, "%.*s:***%s", (int)(colon - url), url, at);
        return;
    }
    /* key=value form: hide the value of password=..., quoted or not. */
    if ((pw = strstr(url, "password")) != NULL) {
        const char *v = pw + 8;
        while (*v == ' ')
            v++;
        if (*v != '=')
            return;
        v++;
        while (*v == ' ')
            v++;
        const char *e = v;
        if (*e == '\'') {
            for (e++; *e && *e != '\''; e++)
                if (*e == '\\' && e[1])
                    e++;
            if (*e)
                e++;
        } else {
            while (*e && *e != ' ')
                e++;
        }
        snprintf(out, outlen, "%.*s***%s", (int)(v - url), url, e);
    }
}

void config_log(const struct config *cfg)
{
    char line[4096], masked[1024];
    size_t n = 0;

    for (size_t i = 0; i < ARRAY_SIZE(entries) && n < sizeof(line); i++) {
        const struct config_entry *e = &entries[i];
        const char *field = (const char *)cfg + e->offset;
        if (e->type == CT_UINT) {
            n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s=%llu", n ? " " : "", e->name,
                                  (unsigned long long)*(const uint64_t *)(const void *)field);
            continue;
        }
        const char *v = *(char *const *)(const void *)field;
        if (e->type == CT_SECRET && v[0] != '\0') {
            if (e->offset == offsetof(struct config, database_url)) {
                config_mask_url(v, masked, sizeof(masked));
                v = masked;
            } else if (e->offset == offsetof(struct config, alert_url)) {
                /* Chat tools put their secret in the path: show only where alerts go. */
                const char *host = strstr(v, "://");
                size_t keep = host ? strcspn(host + 3, "/?#") + (size_t)(host + 3 - v) : 0;

                snprintf(masked, sizeof(masked), "%.*s/***", (int)keep, v);
                v = masked;
            } else {
                v = "***";
            }
        }
        n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s=%s", n ? " " : "", e->name,
                              v[0] ? v : "(unset)");
    }
    log_info("config", "%s", line);
}

void config_print_help(FILE *f)
{
    fprintf(f, "Environment (flags --name-in-lower-case=VALUE override them):\n");
    for (size_t i = 0; i < ARRAY_SIZE(entries); i++) {
        const struct config_entry *e = &entries[i];
        fprintf(f, "  " PREFIX "%-22s %s", e->name, e->help);
        if (e->def[0] != '\0' && e->type != CT_SECRET)
            fprintf(f, " [%s]", e->def);
        fputc('\n', f);
    }
}

void config_cleanup(struct config *cfg)
{
    for (size_t i = 0; i < ARRAY_SIZE(entries); i++) {
        if (entries[i].type != CT_UINT)
            free(*(char **)(void *)((char *)cfg + entries[i].offset));
    }
    free(cfg->listen_host);
    memset(cfg, 0, sizeof(*cfg));
}

const struct config_provider *config_provider_find(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(cfg->providers); i++) {
        if (strcmp(cfg->providers[i].name, name) == 0)
            return &cfg->providers[i];
    }
    return NULL;
}
