/* Masking: every password, sslpassword, secret and token of a connection string or URL, and
 * the userinfo of every URL, is hidden in both libpq forms; what tells where a URL points stays. */
#include "check.h"
#include "common.h"
#include "mask.h"

struct vector {
    const char *in;
    const char *want;
};

static const struct vector conninfos[] = {
    /* URIs: userinfo, and password parameters of the query, percent-encoded or not. */
    {"postgresql://app:s3cret@db:5432/vr", "postgresql://***@db:5432/vr"},
    {"postgresql://app@db/x?password=s3cret", "postgresql://***@db/x?password=***"},
    {"postgres://db/x?sslmode=require&password=s3cret&application_name=a",
     "postgres://db/x?sslmode=require&password=***&application_name=a"},
    {"postgresql://db/x?password=s3%2Fcr%26et", "postgresql://db/x?password=***"},
    {"postgresql://db/x?%70assword=s3cret&PASSWORD=s3cret",
     "postgresql://db/x?%70assword=***&PASSWORD=***"},
    {"postgresql://db/x?sslpassword=k3y&password=s3cret",
     "postgresql://db/x?sslpassword=***&password=***"},
    {"postgresql://u:p%40ss@h1:5432,h2:5433/x", "postgresql://***@h1:5432,h2:5433/x"},
    /* A password holding both a '/' and a '?' before its '@'. */
    {"postgresql://u:p/x?y@db/app", "postgresql://***@db/app"},
    {"postgresql://u:pa/ss@db/x", "postgresql://***@db/x"},
    {"postgresql://u:pa?ss@db/x", "postgresql://***@db/x"},
    {"postgresql://db/x?password", "postgresql://db/x?password"},
    {"postgresql:///x?host=/run/pg", "postgresql:///x?host=/run/pg"},
    {"postgresql://app@db/x?password=s3%ZZcret", "postgresql://***@db/x?password=***"},
    /* key=value: every secret key, quoted values with escapes, blanks around '='. */
    {"host=db password=s3cret user=app", "host=db password=*** user=app"},
    {"host=db sslpassword=k3y password=s3cret", "host=db sslpassword=*** password=***"},
    {"host=db password='s 3\\'cret' user=app", "host=db password=*** user=app"},
    {"host=db password = s3cret user=app", "host=db password = *** user=app"},
    {"host=db password=s\\ 3cret user=app", "host=db password=*** user=app"},
    {"password=  s3cret", "password=  ***"},
    {"host=db password='s3cret", "host=db password=***"},
    {"dbname=x\tpassword=s3cret\nuser=app", "dbname=x\tpassword=***\nuser=app"},
    {"host='d b' application_name='it\\'s'", "host='d b' application_name='it\\'s'"},
    {"host=db user=app", "host=db user=app"},
    /* What libpq cannot read is hidden from there on: it may be a password without its key. */
    {"host=db sslpassword=k3y s3cret", "host=db sslpassword=*** ***"},
    /* A URL as a value is masked like any URL. */
    {"dbname='postgresql://u:s3cret@db/x' host=h", "dbname='postgresql://***@db/x' host=h"},
    /* Not a URI to libpq, but a URL to whoever reads the log: masked all the same. */
    {"  postgresql://u:s3cret@db/x", "  postgresql://***@db/x"},
    {"u:s3cret@db/x", "***@db/x"},
    /* A bare database name holds no secret. */
    {"voidrecon", "voidrecon"},
    {"", ""},
};

static const struct vector urls[] = {
    {"https://user:pw@host/path", "https://***@host/path"},
    {"https://user@host:8443/path?x=1", "https://***@host:8443/path?x=1"},
    {"http://127.0.0.1:9/hook", "http://127.0.0.1:9/hook"},
    {"https://host/cb?token=abc&x=1&client_secret=def",
     "https://host/cb?token=***&x=1&client_secret=***"},
    {"https://host/cb?access_token=abc#frag", "https://host/cb?access_token=***"},
    {"https://u:p@ss@host/", "https://***@host/"},
    {"HTTPS://U:P@HOST", "HTTPS://***@HOST"},
    {"not a url", "not a url"},
};

static void mask_hides_secrets_of_connection_strings(void)
{
    char out[512];

    for (size_t i = 0; i < ARRAY_SIZE(conninfos); i++) {
        mask_conninfo(conninfos[i].in, out, sizeof(out));
        ASSERT_STR_EQ(out, conninfos[i].want);
    }
}

static void mask_hides_userinfo_and_secret_parameters_of_urls(void)
{
    char out[512];

    for (size_t i = 0; i < ARRAY_SIZE(urls); i++) {
        mask_url(urls[i].in, out, sizeof(out));
        ASSERT_STR_EQ(out, urls[i].want);
    }
}

static void mask_never_shows_a_secret_even_when_cut(void)
{
    char out[24];

    /* The cut falls inside where the secret was: what is left of it is the mask, not the
     * secret's first bytes. */
    mask_conninfo("host=db password=s3cret-and-more", out, sizeof(out));
    ASSERT_TRUE(strstr(out, "s3") == NULL);
    ASSERT_TRUE(strlen(out) < sizeof(out));
    mask_url("https://averylongusername:pw@h", out, 8);
    ASSERT_STR_EQ(out, "https:/");
    mask_url("https://u:pw@h", out, 1);
    ASSERT_STR_EQ(out, "");
}

static void mask_names_secret_settings(void)
{
    static const char *secret[] = {"ADMIN_TOKEN",         "ALERT_SECRET", "XSOLLA_SECRET",
                                   "ATLAS_WEBHOOK_TOKEN", "sslpassword",  "password",
                                   "client_secret",       "token",        "PASSWD"};
    static const char *plain[] = {"LISTEN", "DATABASE_URL", "TOKENS_MAX", "host", "sslkey", ""};

    for (size_t i = 0; i < ARRAY_SIZE(secret); i++)
        ASSERT_TRUE(mask_name_is_secret(secret[i], strlen(secret[i])));
    for (size_t i = 0; i < ARRAY_SIZE(plain); i++)
        ASSERT_TRUE(!mask_name_is_secret(plain[i], strlen(plain[i])));
}

static void mask_hides_quoted_parts_of_library_messages(void)
{
    char out[256];

    mask_quoted("invalid percent-encoded token: \"s3%ZZcret\"", out, sizeof(out));
    ASSERT_STR_EQ(out, "invalid percent-encoded token: \"***\"");
    mask_quoted("missing \"=\" after \"s3cret\" in connection info string", out, sizeof(out));
    ASSERT_STR_EQ(out, "missing \"***\" after \"***\" in connection info string");
    mask_quoted("unterminated \"s3cret", out, sizeof(out));
    ASSERT_STR_EQ(out, "unterminated \"***\"");
    mask_quoted("Connection refused", out, sizeof(out));
    ASSERT_STR_EQ(out, "Connection refused");
}

CHECK_MAIN(CASE(mask_hides_secrets_of_connection_strings),
           CASE(mask_hides_userinfo_and_secret_parameters_of_urls),
           CASE(mask_never_shows_a_secret_even_when_cut), CASE(mask_names_secret_settings),
           CASE(mask_hides_quoted_parts_of_library_messages))
