/* Configuration: defaults, validation messages that name the variable, and a start-up log
 * and messages that never show a secret. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "config.h"

static void config_defaults_match_the_design(void)
{
    struct config cfg;
    char err[256];

    config_init(&cfg);
    ASSERT_EQ(config_validate(&cfg, err, sizeof(err)), 0);
    ASSERT_STR_EQ(cfg.listen_host, "127.0.0.1");
    ASSERT_EQ(cfg.listen_port, 8080);
    ASSERT_EQ(cfg.max_body_bytes, 1048576);
    ASSERT_EQ(cfg.max_header_bytes, 16384);
    ASSERT_EQ(cfg.header_timeout_ms, 10000);
    ASSERT_EQ(cfg.idle_timeout_ms, 60000);
    ASSERT_EQ(cfg.poll_first_ms, 300000);
    ASSERT_EQ(cfg.poll_confirm_ms, 5000);
    ASSERT_EQ(cfg.log_level, LOG_INFO);
    config_cleanup(&cfg);
}

static void config_reads_environment_and_flags_override(void)
{
    struct config cfg;
    char err[256];

    config_init(&cfg);
    setenv("VOIDRECON_MAX_BODY_BYTES", "2048", 1);
    setenv("VOIDRECON_LISTEN", "[::1]:9000", 1);
    ASSERT_EQ(config_load_env(&cfg, err, sizeof(err)), 0);
    ASSERT_EQ(config_set_flag(&cfg, "max-body-bytes", "4096", err, sizeof(err)), 0);
    ASSERT_EQ(config_set_flag(&cfg, "no-such-flag", "1", err, sizeof(err)), VR_ENOENT);
    ASSERT_EQ(config_validate(&cfg, err, sizeof(err)), 0);
    ASSERT_EQ(cfg.max_body_bytes, 4096);
    ASSERT_STR_EQ(cfg.listen_host, "::1");
    ASSERT_EQ(cfg.listen_port, 9000);
    unsetenv("VOIDRECON_MAX_BODY_BYTES");
    unsetenv("VOIDRECON_LISTEN");
    config_cleanup(&cfg);
}

static void config_errors_name_the_variable(void)
{
    static const char *const bad[][2] = {
        {"VOIDRECON_MAX_BODY_BYTES", "lots"},
        {"VOIDRECON_IDLE_TIMEOUT_MS", "-5"},
        {"VOIDRECON_MAX_CONNECTIONS", "0"},
        {"VOIDRECON_HEADER_TIMEOUT_MS", "10s"},
        {"VOIDRECON_LISTEN", "8080"},
        {"VOIDRECON_LOG_LEVEL", "loud"},
        {"VOIDRECON_ATLAS_ALLOWED_CIDRS", "10.0.0.0/99"},
        {"VOIDRECON_ATLAS_WEBHOOK_TOKEN", "a/b"},
        /* Less than one largest request: such a body could never be admitted. */
        {"VOIDRECON_MAX_BUFFERED_BYTES", "1048576"},
    };
    char err[256];

    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct config cfg;
        config_init(&cfg);
        setenv(bad[i][0], bad[i][1], 1);
        err[0] = '\0';
        int r = config_load_env(&cfg, err, sizeof(err));
        if (r == 0)
            r = config_validate(&cfg, err, sizeof(err));
        unsetenv(bad[i][0]);
        config_cleanup(&cfg);
        ASSERT_EQ(r, VR_EINVAL);
        ASSERT_CONTAINS(err, bad[i][0]);
    }
}

/* What config_log writes to stderr for one environment; caller frees. */
static char *logged_config(const char *const (*env)[2], size_t n)
{
    struct config cfg;
    char err[256];
    FILE *tmp = tmpfile();
    int saved = dup(STDERR_FILENO);
    long len;
    char *text;

    if (tmp == NULL || saved < 0)
        abort();
    for (size_t i = 0; i < n; i++)
        setenv(env[i][0], env[i][1], 1);
    config_init(&cfg);
    if (config_load_env(&cfg, err, sizeof(err)) != 0 ||
        config_validate(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "config: %s\n", err);
        abort();
    }
    fflush(stderr);
    dup2(fileno(tmp), STDERR_FILENO);
    config_log(&cfg);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    config_cleanup(&cfg);
    for (size_t i = 0; i < n; i++)
        unsetenv(env[i][0]);
    len = ftell(tmp);
    text = calloc(1, (size_t)len + 1);
    rewind(tmp);
    if (text == NULL || fread(text, 1, (size_t)len, tmp) != (size_t)len)
        abort();
    fclose(tmp);
    return text;
}

static void config_log_hides_every_secret(void)
{
    static const char *const uri[][2] = {
        {"VOIDRECON_DATABASE_URL", "postgresql://app@db/x?password=s3cret"},
        {"VOIDRECON_ALERT_URL", "https://alertuser:alertpw@hooks.example/services/T0/B0/xyz"},
        {"VOIDRECON_ATLAS_BASE_URL", "https://atlasuser:atlaspw@atlas.example"},
        {"VOIDRECON_ATLAS_CLIENT_ID", "clientid"},
        {"VOIDRECON_ATLAS_CLIENT_SECRET", "clientsecret"},
        {"VOIDRECON_ADMIN_TOKEN", "admintoken"},
        {"VOIDRECON_ATLAS_WEBHOOK_TOKEN", "hooktoken"},
        {"VOIDRECON_XSOLLA_SECRET", "xsollasecret"},
    };
    static const char *const kv[][2] = {
        {"VOIDRECON_DATABASE_URL", "host=db sslpassword=k3y password=s3cret user=app"},
    };
    static const char *const leaks[] = {"s3cret",     "alertuser", "alertpw",      "xyz",
                                        "atlasuser",  "atlaspw",   "clientid",     "clientsecret",
                                        "admintoken", "hooktoken", "xsollasecret", "k3y"};
    char *text = logged_config(uri, ARRAY_SIZE(uri));

    for (size_t i = 0; i < ARRAY_SIZE(leaks); i++) {
        if (strstr(text, leaks[i]) != NULL) {
            fprintf(stderr, "%s", text);
            free(text);
            CHECK_FAIL_("config_log shows \"%s\"", leaks[i]);
        }
    }
    ASSERT_CONTAINS(text, "DATABASE_URL=postgresql://***@db/x?password=***");
    ASSERT_CONTAINS(text, "ALERT_URL=https://***@hooks.example/***");
    ASSERT_CONTAINS(text, "ATLAS_BASE_URL=https://***@atlas.example");
    free(text);
    text = logged_config(kv, ARRAY_SIZE(kv));
    ASSERT_CONTAINS(text, "DATABASE_URL=host=db sslpassword=*** password=*** user=app");
    free(text);
}

static void config_errors_never_quote_a_url_secret(void)
{
    struct config cfg;
    char err[256];

    config_init(&cfg);
    setenv("VOIDRECON_ALERT_URL", "ftp://alertuser:alertpw@host/", 1);
    ASSERT_EQ(config_load_env(&cfg, err, sizeof(err)), 0);
    unsetenv("VOIDRECON_ALERT_URL");
    ASSERT_EQ(config_validate(&cfg, err, sizeof(err)), VR_EINVAL);
    config_cleanup(&cfg);
    ASSERT_CONTAINS(err, "VOIDRECON_ALERT_URL");
    ASSERT_TRUE(strstr(err, "alertpw") == NULL && strstr(err, "alertuser") == NULL);
}

CHECK_MAIN(CASE(config_defaults_match_the_design),
           CASE(config_reads_environment_and_flags_override), CASE(config_errors_name_the_variable),
           CASE(config_log_hides_every_secret), CASE(config_errors_never_quote_a_url_secret))
