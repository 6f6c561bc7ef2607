/* Configuration from VOIDRECON_* variables and command-line flags, validated at start. Every
 * setting is declared once, in config.c's tables; each webhook provider of provider_all gets
 * its VOIDRECON_<NAME>_* settings from there. */
#ifndef VR_CONFIG_H
#define VR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "acl.h"
#include "alert.h"
#include "common.h"
#include "log.h"
#include "provider.h"

/* The settings every webhook provider has (VOIDRECON_<NAME>_*), one per entry of provider_all
 * and in its order. */
struct config_provider {
    const struct provider *provider;
    char *webhook_token; /* required path token of /webhooks/<name>/<token>; "" none */
    char *allowed_cidrs; /* source addresses allowed; "" any */
    char *alerts;        /* "on" or "off": order_cancelled alerts for its cancellations */
    char *secret;        /* its signing secret ("" none); only providers that sign have one */
    /* Parsed by config_validate. */
    bool alerts_on;
    struct acl *acl; /* never NULL after config_validate; empty: any source */
};

struct config {
    char *database_url; /* libpq conninfo or URI; "" means libpq's own defaults (PG* variables) */
    char *listen;       /* host:port as given */
    char *listen_host;  /* parsed from listen */
    int listen_port;
    char *log_level_name;
    enum log_level log_level;
    uint64_t max_body_bytes;
    uint64_t max_header_bytes;
    uint64_t header_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t max_connections;
    uint64_t max_buffered_bytes;
    uint64_t db_pool_size;
    uint64_t write_batch;
    uint64_t write_concurrency;
    uint64_t db_timeout_ms;
    uint64_t gauge_refresh_ms;
    uint64_t shutdown_timeout_ms;
    char *admin_token;
    char *atlas_base_url;
    char *atlas_client_id;
    char *atlas_client_secret;
    uint64_t atlas_timeout_ms;
    uint64_t atlas_connect_timeout_ms;
    uint64_t poll_tick_ms;
    uint64_t poll_first_ms;
    uint64_t poll_max_interval_ms;
    uint64_t poll_confirm_ms;
    uint64_t poll_retry_ms;
    uint64_t poll_concurrency;
    uint64_t poll_max_rps;
    uint64_t poll_failures_alert;
    uint64_t stuck_after_ms;
    uint64_t atlas_circuit_cases;
    uint64_t atlas_probe_max_ms;
    uint64_t atlas_silence_ms;
    uint64_t atlas_silence_poll_changes;
    char *alert_url;
    char *alert_secret;
    char *alert_format_name; /* standard, slack or pagerduty */
    char *alert_routing_key;
    uint64_t alert_timeout_ms;
    uint64_t alert_tick_ms;
    uint64_t alert_retry_ms;
    uint64_t alert_retry_max_ms;
    uint64_t alert_concurrency;
    /* Retention (0: kept). */
    uint64_t delivery_retention_ms;
    uint64_t event_retention_ms;
    uint64_t prune_interval_ms;
    uint64_t prune_batch;
    struct config_provider *providers; /* provider_count of them */
    size_t nproviders;
    /* Parsed from alert_secret by config_validate; NULL when no secret is set. */
    unsigned char *alert_key;
    size_t alert_key_len;
    /* Parsed from alert_format_name by config_validate. */
    enum alert_format alert_format;
    /* Where each setting's value came from (enum config_source), by its place in the
     * documented order; what config_log says of each secret. */
    unsigned char *sources;
    /* Behind a proxy: whose word on the client is taken, and whether they speak the PROXY
     * protocol ("on" or "off"). Parsed by config_validate: trusted_acl is never NULL after it
     * (empty: no proxy trusted). */
    char *trusted_proxies;
    char *proxy_protocol;
    struct acl *trusted_acl;
    bool proxy_protocol_on;
};

/* Where a setting's value came from: its default, VOIDRECON_<NAME>, the file that
 * VOIDRECON_<NAME>_FILE names, the systemd credential <name> in $CREDENTIALS_DIRECTORY, or a
 * flag. Only secret settings can come from a file or a credential. */
enum config_source {
    CONFIG_SOURCE_DEFAULT,
    CONFIG_SOURCE_ENV,
    CONFIG_SOURCE_FILE,
    CONFIG_SOURCE_CREDENTIAL,
    CONFIG_SOURCE_FLAG
};

/* The largest secret file (VOIDRECON_<NAME>_FILE or a credential) that is read. */
#define CONFIG_SECRET_FILE_MAX_BYTES 65536

/* Sets every field to its default. Caller frees with config_cleanup. */
void config_init(struct config *cfg);

/* The whole of it: config_init, every VOIDRECON_* variable, then the flags of argv
 * ("--name=value" or "--name value", see config_set_flag), then config_validate. 0, or
 * VR_EINVAL with one line in err naming the variable or flag. Caller frees with
 * config_cleanup either way. */
int config_load(struct config *cfg, int argc, char **argv, char *err, size_t errlen) VR_MUSTCHECK;

/* Reads every VOIDRECON_* variable of the environment, and each secret setting from the one
 * place that holds it: VOIDRECON_<NAME>, the file VOIDRECON_<NAME>_FILE names, or the systemd
 * credential <name> (lower case) in $CREDENTIALS_DIRECTORY; two of them for one secret is an
 * error, as is a _FILE value that is not an absolute path (not shown: it may be the secret), a
 * secret file that is not a regular file, and a $CREDENTIALS_DIRECTORY that is not a directory.
 * Warns of a secret file that every user may read. Returns 0, or VR_EINVAL with a message
 * naming the variable (and the file; never its content) in err. */
int config_load_env(struct config *cfg, char *err, size_t errlen) VR_MUSTCHECK;

/* Applies one flag: name is the variable's name without the prefix, in lower case with dashes
 * ("max-body-bytes" for VOIDRECON_MAX_BODY_BYTES). Returns 0, VR_ENOENT for an unknown name,
 * or VR_EINVAL with a message in err. */
int config_set_flag(struct config *cfg, const char *name, const char *value, char *err,
                    size_t errlen) VR_MUSTCHECK;

/* Checks the values and their combination (after all sources are read) and keeps what it
 * parsed (listen address, log level, allowlists, the alert key); 0 or VR_EINVAL with err. Call
 * it once. */
int config_validate(struct config *cfg, char *err, size_t errlen) VR_MUSTCHECK;

/* Logs the effective configuration, secrets masked. */
void config_log(const struct config *cfg);

/* Writes the list of variables, defaults and meanings to f (for --help). */
void config_print_help(FILE *f);

void config_cleanup(struct config *cfg);

#endif
