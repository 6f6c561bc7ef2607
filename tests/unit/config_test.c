/* Configuration: defaults, validation messages that name the variable, masking. */
#include <stdlib.h>

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

static void config_masks_database_passwords(void)
{
    char out[256];

    config_mask_url("postgresql://app:s3cret@db:5432/vr", out, sizeof(out));
    ASSERT_STR_EQ(out, "postgresql://app:***@db:5432/vr");
    config_mask_url("host=db password=s3cret user=app", out, sizeof(out));
    ASSERT_STR_EQ(out, "host=db password=*** user=app");
    config_mask_url("host=db password='s 3\\'cret' user=app", out, sizeof(out));
    ASSERT_STR_EQ(out, "host=db password=*** user=app");
    config_mask_url("postgresql://app@db/vr", out, sizeof(out));
    ASSERT_STR_EQ(out, "postgresql://app@db/vr");
}

CHECK_MAIN(CASE(config_defaults_match_the_design),
           CASE(config_reads_environment_and_flags_override), CASE(config_errors_name_the_variable),
           CASE(config_masks_database_passwords))
