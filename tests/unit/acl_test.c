/* Allowlists: parsing and membership. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "acl.h"
#include "check.h"

static struct sockaddr_storage addr(const char *text)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, text, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
        ss.ss_family = AF_INET;
    else if (inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
        ss.ss_family = AF_INET6;
    return ss;
}

static bool allows(const struct acl *acl, const char *text)
{
    struct sockaddr_storage ss = addr(text);
    return acl_allows(acl, (struct sockaddr *)&ss);
}

static void acl_matches_v4_and_v6_blocks(void)
{
    struct acl *acl = NULL;
    char err[128];

    ASSERT_EQ(
        acl_parse("10.0.0.0/8, 192.168.1.7 2001:db8::/32,127.0.0.1/32", &acl, err, sizeof(err)), 0);
    ASSERT_EQ(acl_count(acl), 4);
    ASSERT_TRUE(allows(acl, "10.200.3.4"));
    ASSERT_TRUE(!allows(acl, "11.0.0.1"));
    ASSERT_TRUE(allows(acl, "192.168.1.7"));
    ASSERT_TRUE(!allows(acl, "192.168.1.8"));
    ASSERT_TRUE(allows(acl, "2001:db8:1::5"));
    ASSERT_TRUE(!allows(acl, "2001:db9::1"));
    ASSERT_TRUE(allows(acl, "::ffff:10.1.2.3"));
    ASSERT_TRUE(allows(acl, "127.0.0.1"));
    acl_free(acl);
}

static void acl_prefix_boundaries_are_exact(void)
{
    struct acl *acl = NULL;
    char err[128];

    ASSERT_EQ(acl_parse("172.16.0.0/12", &acl, err, sizeof(err)), 0);
    ASSERT_TRUE(allows(acl, "172.31.255.255"));
    ASSERT_TRUE(!allows(acl, "172.32.0.0"));
    ASSERT_TRUE(!allows(acl, "172.15.255.255"));
    acl_free(acl);
    ASSERT_EQ(acl_parse("0.0.0.0/0", &acl, err, sizeof(err)), 0);
    ASSERT_TRUE(allows(acl, "8.8.8.8"));
    ASSERT_TRUE(!allows(acl, "::1"));
    acl_free(acl);
}

static void acl_rejects_bad_entries_by_name(void)
{
    static const char *const bad[] = {"10.0.0.0/33", "banana",     "10.0.0.0/",
                                      "::1/129",     "1.2.3.4/-1", "10.0.0.0/8x"};
    struct acl *acl = NULL;
    char err[128];

    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        ASSERT_EQ(acl_parse(bad[i], &acl, err, sizeof(err)), VR_EINVAL);
        ASSERT_CONTAINS(err, bad[i]);
        ASSERT_TRUE(acl == NULL);
    }
}

CHECK_MAIN(CASE(acl_matches_v4_and_v6_blocks), CASE(acl_prefix_boundaries_are_exact),
           CASE(acl_rejects_bad_entries_by_name))
