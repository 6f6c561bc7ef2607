/* Migrations without a database: what a connection string libpq cannot read gets as a message.
 * libpq quotes the piece it could not read, which may be the password; the message must not. */
#include "check.h"
#include "common.h"
#include "migrate.h"

static void migrate_never_quotes_a_secret_of_a_bad_connection_string(void)
{
    static const char *const bad[][2] = {
        {"postgresql://app@127.0.0.1:1/x?password=s3%ZZcret", "s3"},
        {"postgresql://app:p%ZZw@127.0.0.1:1/x", "p%ZZw"},
        {"host=127.0.0.1 port=1 sslpassword=k3y s3cret", "s3cret"},
        {"host=127.0.0.1 port=1 password='s3cret", "s3cret"},
    };

    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        char err[512] = "";
        int applied = -1, version = -1;

        ASSERT_NE(migrate_run(bad[i][0], &applied, &version, err, sizeof(err)), 0);
        ASSERT_CONTAINS(err, "connection string");
        if (strstr(err, bad[i][1]) != NULL)
            CHECK_FAIL_("\"%s\" shows \"%s\"", err, bad[i][1]);
    }
}

CHECK_MAIN(CASE(migrate_never_quotes_a_secret_of_a_bad_connection_string))
