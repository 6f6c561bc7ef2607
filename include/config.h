/* Configuration from VOIDRECON_* variables and command-line flags, validated at start. */
#ifndef VR_CONFIG_H
#define VR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common.h"
#include "log.h"

/* The settings every webhook provider has (VOIDRECON_<PROVIDER>_*). */
struct config_provider {
    const char *name;    /* "atlas", "xsolla", "xendbridge"; static */
    char *webhook_token; /* required path token of /webhooks/<name>/<token>; "" none */
    char *allowed_cidrs; /* source addresses allowed; "" any */
    char *alerts;        /* "on" or "off": order_cancelled alerts for its cancellations */
    bool alerts_on;      /* parsed from alerts */
    char *secret;        /* its signing secret ("" none); only providers that sign have one */
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
    uint64_t db_pool_size;
    uint64_t db_timeout_ms;
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
    char *alert_url;
    char *alert_secret;
    uint64_t alert_timeout_ms;
    uint64_t alert_tick_ms;
    uint64_t alert_retry_ms;
    uint64_t alert_retry_max_ms;
    uint64_t alert_concurrency;
    struct config_provider providers[3]; /* atlas, xsolla, xendbridge */
};

/* Sets every field to its default. Caller frees with config_cleanup. */
void config_init(struct config *cfg);

/* Reads every VOIDRECON_* variable of the environment. Returns 0, or VR_EINVAL with a message
 * naming the variable in err. */
int config_load_env(struct config *cfg, char *err, size_t errlen) VR_MUSTCHECK;

/* Applies one flag: name is the variable's name without the prefix, in lower case with dashes
 * ("max-body-bytes" for VOIDRECON_MAX_BODY_BYTES). Returns 0, VR_ENOENT for an unknown name,
 * or VR_EINVAL with a message in err. */
int config_set_flag(struct config *cfg, const char *name, const char *value, char *err,
                    size_t errlen) VR_MUSTCHECK;

/* Checks the combination of values (after all sources are read); 0 or VR_EINVAL with err. */
int config_validate(struct config *cfg, char *err, size_t errlen) VR_MUSTCHECK;

/* Logs the effective configuration, secrets masked. */
void config_log(const struct config *cfg);

/* Writes the list of variables, defaults and meanings to f (for --help). */
void config_print_help(FILE *f);

void config_cleanup(struct config *cfg);

/* The settings of provider name, or NULL for an unknown name. */
const struct config_provider *config_provider_find(const struct config *cfg, const char *name);

/* Copies url into out with any password replaced by "***" (URI user:pass@ or password=). */
void config_mask_url(const char *url, char *out, size_t outlen);

#endif
