/* Client addresses behind trusted proxies: X-Forwarded-For and PROXY protocol headers. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "check.h"
#include "forwarded.h"

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

static struct acl *trusted(const char *list)
{
    struct acl *acl = NULL;
    char err[128];

    if (acl_parse(list, &acl, err, sizeof(err)) != 0) {
        fprintf(stderr, "bad test list %s: %s\n", list, err);
        abort();
    }
    return acl;
}

/* The client forwarded_client finds for peer and up to three header lines, as text, or
 * "ERR: <message>". */
static const char *client_of(const char *peer, const struct acl *acl, const char *const *lines,
                             size_t n)
{
    static char out[256];
    struct httpreq_header h[4];
    struct sockaddr_storage p = addr(peer), client;
    char err[200];
    size_t count = 0;

    h[count++] = (struct httpreq_header){.name = "Host", .value = "example.org"};
    for (size_t i = 0; i < n; i++)
        h[count++] =
            (struct httpreq_header){.name = (char *)(i % 2 ? "x-forwarded-for" : "X-Forwarded-For"),
                                    .value = (char *)lines[i]};
    if (forwarded_client((struct sockaddr *)&p, acl, h, count, &client, err, sizeof(err)) != 0) {
        snprintf(out, sizeof(out), "ERR: %s", err);
        return out;
    }
    forwarded_addr_name((struct sockaddr *)&client, out, sizeof(out));
    return out;
}

#define XFF(peer, acl, ...)                                                                        \
    client_of(peer, acl, (const char *const[]){__VA_ARGS__},                                       \
              sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

static void xff_from_a_trusted_proxy_names_the_rightmost_untrusted_address(void)
{
    struct acl *acl = trusted("10.0.0.0/8, 127.0.0.1/32, fd00::/8");

    ASSERT_STR_EQ(XFF("127.0.0.1", acl, "203.0.113.7"), "203.0.113.7");
    /* The client's own claim on the left is never believed past an untrusted hop. */
    ASSERT_STR_EQ(XFF("127.0.0.1", acl, "1.1.1.1, 203.0.113.7, 10.1.1.1"), "203.0.113.7");
    ASSERT_STR_EQ(XFF("10.9.9.9", acl, " 2001:db8::5 ,fd00::1"), "2001:db8::5");
    ASSERT_STR_EQ(XFF("10.9.9.9", acl, "[2001:db8::6]"), "2001:db8::6");
    ASSERT_STR_EQ(XFF("10.9.9.9", acl, "::ffff:198.51.100.2"), "198.51.100.2");
    /* Empty list elements are allowed by HTTP and skipped. */
    ASSERT_STR_EQ(XFF("10.9.9.9", acl, ", 198.51.100.3,,"), "198.51.100.3");
    acl_free(acl);
}

static void xff_lines_count_as_one_list_in_order(void)
{
    struct acl *acl = trusted("127.0.0.1/32, 10.0.0.0/8");

    ASSERT_STR_EQ(XFF("127.0.0.1", acl, "198.51.100.1", "10.0.0.2"), "198.51.100.1");
    ASSERT_STR_EQ(XFF("127.0.0.1", acl, "10.0.0.2", "198.51.100.1, 10.0.0.3"), "198.51.100.1");
    ASSERT_STR_EQ(XFF("127.0.0.1", acl, "198.51.100.1", "198.51.100.2", "10.0.0.4"),
                  "198.51.100.2");
    acl_free(acl);
}

static void xff_of_trusted_proxies_only_names_the_leftmost(void)
{
    struct acl *acl = trusted("10.0.0.0/8");

    ASSERT_STR_EQ(XFF("10.0.0.1", acl, "10.0.0.7, 10.0.0.8", "10.0.0.9"), "10.0.0.7");
    acl_free(acl);
}

static void xff_is_ignored_unless_the_peer_is_trusted(void)
{
    struct acl *acl = trusted("10.0.0.0/8");
    struct acl *none = trusted("");

    ASSERT_STR_EQ(XFF("192.0.2.1", acl, "198.51.100.1"), "192.0.2.1");
    /* Not even parsed: garbage from an outsider is no error. */
    ASSERT_STR_EQ(XFF("192.0.2.1", acl, "not an address"), "192.0.2.1");
    ASSERT_STR_EQ(XFF("10.0.0.1", none, "198.51.100.1"), "10.0.0.1");
    ASSERT_STR_EQ(XFF("10.0.0.1", NULL, "198.51.100.1"), "10.0.0.1");
    ASSERT_STR_EQ(client_of("10.0.0.1", acl, NULL, 0), "10.0.0.1");
    ASSERT_STR_EQ(XFF("10.0.0.1", acl, " , "), "10.0.0.1");
    acl_free(acl);
    acl_free(none);
}

static void xff_malformed_from_a_trusted_proxy_is_refused_naming_the_header(void)
{
    struct acl *acl = trusted("10.0.0.0/8");
    char many[1024] = "", longone[128];
    size_t n = 0;

    ASSERT_STR_EQ(XFF("10.0.0.1", acl, "198.51.100.1, unknown"),
                  "ERR: X-Forwarded-For: \"unknown\" is not an IP address");
    /* Behind a trusted proxy that appends what it saw, what the sender wrote on the left is
     * never read: the walk stops at the first address that is not a trusted proxy. */
    ASSERT_STR_EQ(XFF("10.0.0.1", acl, "unknown, 198.51.100.1"), "198.51.100.1");
    ASSERT_STR_EQ(XFF("10.0.0.1", acl, "unknown", "198.51.100.1:443, 198.51.100.7"),
                  "198.51.100.7");
    ASSERT_STR_EQ(XFF("10.0.0.1", acl, "unknown, 10.0.0.9"),
                  "ERR: X-Forwarded-For: \"unknown\" is not an IP address");
    ASSERT_CONTAINS(XFF("10.0.0.1", acl, "198.51.100.1:443"), "is not an IP address");
    ASSERT_CONTAINS(XFF("10.0.0.1", acl, "198.51.100.1 198.51.100.2"), "is not an IP address");
    ASSERT_CONTAINS(XFF("10.0.0.1", acl, "[198.51.100.1"), "is not an IP address");
    ASSERT_CONTAINS(XFF("10.0.0.1", acl, "\"a\x01\""), "\"?a??\" is not an IP address");
    memset(longone, '1', 60);
    longone[60] = '\0';
    ASSERT_STR_EQ(XFF("10.0.0.1", acl, longone),
                  "ERR: X-Forwarded-For has an element of more than 48 bytes");
    for (int i = 0; i < FORWARDED_MAX_HOPS; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "%s10.0.2.%d", i ? "," : "", i);
    ASSERT_STR_EQ(XFF("10.0.0.1", acl, many), "10.0.2.0");
    ASSERT_STR_EQ(XFF("10.0.0.1", acl, "192.0.2.1", many), "192.0.2.1");
    ASSERT_STR_EQ(XFF("10.0.0.1", acl, "192.0.2.1", many, "10.0.2.200"),
                  "ERR: X-Forwarded-For lists more than 32 trusted proxies");
    /* A long list of senders' addresses costs nothing past the first untrusted one. */
    ASSERT_STR_EQ(XFF("10.0.0.1", acl, "192.0.2.5", many, "192.0.2.200"), "192.0.2.200");
    acl_free(acl);
}

/* ---- PROXY protocol ----------------------------------------------------------------------- */

static const unsigned char sig2[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                       0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* Parses data whole, and checks that every proper prefix of it asks for more. */
static enum forwarded_proxy_result proxy(const void *data, size_t len, size_t decided_at,
                                         struct forwarded_proxy *out, char *err, size_t errlen)
{
    for (size_t i = 0; i < decided_at; i++) {
        if (forwarded_proxy_parse(data, i, out, err, errlen) != FORWARDED_PROXY_NEED_MORE) {
            fprintf(stderr, "prefix of %zu bytes did not ask for more\n", i);
            return FORWARDED_PROXY_BAD;
        }
    }
    return forwarded_proxy_parse(data, len, out, err, errlen);
}

static const char *source_of(const struct forwarded_proxy *pp)
{
    static char out[80];
    char name[64];
    unsigned port = pp->source.ss_family == AF_INET
                        ? ntohs(((const struct sockaddr_in *)&pp->source)->sin_port)
                        : ntohs(((const struct sockaddr_in6 *)&pp->source)->sin6_port);

    forwarded_addr_name((const struct sockaddr *)&pp->source, name, sizeof(name));
    snprintf(out, sizeof(out), "%s port %u", name, port);
    return out;
}

static void proxy_v1_gives_the_source_and_its_length(void)
{
    static const char tcp4[] = "PROXY TCP4 198.51.100.22 203.0.113.7 35646 443\r\nGET / HTTP/1.1";
    static const char tcp6[] = "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n";
    static const char longest[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe "
                                  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    static const char unknown[] = "PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 65535 65535\r\n";
    struct forwarded_proxy pp;
    char err[128];
    size_t hdr4 = strlen("PROXY TCP4 198.51.100.22 203.0.113.7 35646 443\r\n");

    ASSERT_EQ(proxy(tcp4, sizeof(tcp4) - 1, hdr4, &pp, err, sizeof(err)), FORWARDED_PROXY_DONE);
    ASSERT_EQ(pp.header_bytes, hdr4);
    ASSERT_EQ(pp.version, 1);
    ASSERT_TRUE(!pp.keep_peer);
    ASSERT_STR_EQ(source_of(&pp), "198.51.100.22 port 35646");
    ASSERT_EQ(proxy(tcp6, sizeof(tcp6) - 1, sizeof(tcp6) - 1, &pp, err, sizeof(err)),
              FORWARDED_PROXY_DONE);
    ASSERT_STR_EQ(source_of(&pp), "2001:db8::1 port 1");
    /* The longest a v1 header gets is within the bytes a caller must keep. */
    ASSERT_TRUE(sizeof(longest) - 1 <= FORWARDED_PROXY_MAX_BYTES);
    ASSERT_EQ(proxy(longest, sizeof(longest) - 1, sizeof(longest) - 1, &pp, err, sizeof(err)),
              FORWARDED_PROXY_DONE);
    ASSERT_STR_EQ(source_of(&pp), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe port 65535");
    ASSERT_EQ(proxy(unknown, sizeof(unknown) - 1, sizeof(unknown) - 1, &pp, err, sizeof(err)),
              FORWARDED_PROXY_DONE);
    ASSERT_TRUE(pp.keep_peer);
    ASSERT_EQ(pp.header_bytes, sizeof(unknown) - 1);
    ASSERT_EQ(forwarded_proxy_parse((const unsigned char *)"PROXY UNKNOWN\r\n", 15, &pp, err,
                                    sizeof(err)),
              FORWARDED_PROXY_DONE);
    ASSERT_TRUE(pp.keep_peer);
}

static void proxy_v1_malformed_is_refused_with_a_reason(void)
{
    static const struct {
        const char *in, *why;
    } bad[] = {
        {"GET / HTTP/1.1\r\n", "no PROXY header"},
        {"PROXZ", "no PROXY header"},
        {"PROXY TCP4 198.51.100.22 203.0.113.7 35646\r\n", "not \"PROXY TCP4"},
        {"PROXY TCP4  198.51.100.22 203.0.113.7 1 2\r\n", "not \"PROXY TCP4"},
        {"PROXY TCP4 198.51.100.22 203.0.113.7 1 2 3\r\n", "not \"PROXY TCP4"},
        {"PROXY UDP4 198.51.100.22 203.0.113.7 1 2\r\n", "not TCP4, TCP6 or UNKNOWN"},
        {"PROXY TCP4 2001:db8::1 203.0.113.7 1 2\r\n", "not one of the protocol's family"},
        {"PROXY TCP6 198.51.100.22 2001:db8::1 1 2\r\n", "not one of the protocol's family"},
        {"PROXY TCP4 198.51.100.256 203.0.113.7 1 2\r\n", "not one of the protocol's family"},
        {"PROXY TCP4 198.51.100.22 203.0.113.7 65536 2\r\n", "a port"},
        {"PROXY TCP4 198.51.100.22 203.0.113.7 -1 2\r\n", "a port"},
        {"PROXY TCP4 198.51.100.22 203.0.113.7 1 2\n", "not CRLF"},
        {"PROXY TCP4 198.51.100.22 203.0.113.7 1 2\rX", "not CRLF"},
        {"PROXY TCP4 198.51.100.22\t203.0.113.7 1 2\r\n", "printable"},
    };
    struct forwarded_proxy pp;
    char err[128], longline[200];

    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        ASSERT_EQ(forwarded_proxy_parse((const unsigned char *)bad[i].in, strlen(bad[i].in), &pp,
                                        err, sizeof(err)),
                  FORWARDED_PROXY_BAD);
        ASSERT_CONTAINS(err, bad[i].why);
    }
    /* A line that would end past 107 bytes is refused without waiting for more. */
    memcpy(longline, "PROXY UNKNOWN ", 14);
    memset(longline + 14, 'x', sizeof(longline) - 14);
    ASSERT_EQ(forwarded_proxy_parse((const unsigned char *)longline, FORWARDED_PROXY_V1_MAX_BYTES,
                                    &pp, err, sizeof(err)),
              FORWARDED_PROXY_BAD);
    ASSERT_CONTAINS(err, "no CRLF within 107 bytes");
    memcpy(longline + 105, "\r\n", 2);
    ASSERT_EQ(forwarded_proxy_parse((const unsigned char *)longline, 107, &pp, err, sizeof(err)),
              FORWARDED_PROXY_DONE);
    memcpy(longline + 105, "x\r\n", 3);
    ASSERT_EQ(forwarded_proxy_parse((const unsigned char *)longline, 108, &pp, err, sizeof(err)),
              FORWARDED_PROXY_BAD);
    /* Its CR as the 107th byte: decided now, not by waiting for an LF that would be too late. */
    ASSERT_EQ(forwarded_proxy_parse((const unsigned char *)longline, 107, &pp, err, sizeof(err)),
              FORWARDED_PROXY_BAD);
    ASSERT_CONTAINS(err, "no CRLF within 107 bytes");
}

/* A v2 header: command, family/transport, address block of addr_len, then tlv_len more. */
static size_t v2(unsigned char *out, unsigned cmd, unsigned fam, const void *addrs,
                 size_t addrs_len, size_t tlv_len)
{
    size_t len = addrs_len + tlv_len;

    memcpy(out, sig2, 12);
    out[12] = (unsigned char)(0x20 | cmd);
    out[13] = (unsigned char)fam;
    out[14] = (unsigned char)(len >> 8);
    out[15] = (unsigned char)(len & 0xff);
    if (addrs_len > 0)
        memcpy(out + 16, addrs, addrs_len);
    return 16 + addrs_len;
}

static void proxy_v2_gives_the_source_and_skips_tlvs(void)
{
    static const unsigned char in4[12] = {198, 51, 100, 22, 203, 0, 113, 7, 0x8b, 0x3e, 1, 187};
    unsigned char in6[36] = {0x20, 0x01, 0x0d, 0xb8, [15] = 5, [32] = 0, [33] = 80};
    unsigned char buf[128];
    struct forwarded_proxy pp;
    char err[128];
    size_t n;

    n = v2(buf, 1, 0x11, in4, sizeof(in4), 0);
    ASSERT_EQ(proxy(buf, n, n, &pp, err, sizeof(err)), FORWARDED_PROXY_DONE);
    ASSERT_EQ(pp.version, 2);
    ASSERT_EQ(pp.header_bytes, 28);
    ASSERT_STR_EQ(source_of(&pp), "198.51.100.22 port 35646");
    n = v2(buf, 1, 0x21, in6, sizeof(in6), 300);
    ASSERT_EQ(proxy(buf, n, n, &pp, err, sizeof(err)), FORWARDED_PROXY_DONE);
    ASSERT_EQ(pp.header_bytes, 16 + 36 + 300); /* the TLVs are the caller's to skip */
    ASSERT_STR_EQ(source_of(&pp), "2001:db8::5 port 80");
    /* LOCAL (a health check), UNSPEC and UNIX keep the peer, whatever the block holds. */
    n = v2(buf, 0, 0x11, in4, sizeof(in4), 0);
    ASSERT_EQ(proxy(buf, n, 16, &pp, err, sizeof(err)), FORWARDED_PROXY_DONE);
    ASSERT_TRUE(pp.keep_peer);
    n = v2(buf, 1, 0x00, NULL, 0, 0);
    ASSERT_EQ(proxy(buf, n, 16, &pp, err, sizeof(err)), FORWARDED_PROXY_DONE);
    ASSERT_TRUE(pp.keep_peer);
    ASSERT_EQ(pp.header_bytes, 16);
}

static void proxy_v2_malformed_is_refused_with_a_reason(void)
{
    static const unsigned char in4[12] = {198, 51, 100, 22, 203, 0, 113, 7, 0, 1, 0, 2};
    unsigned char buf[64];
    struct forwarded_proxy pp;
    char err[128];
    size_t n;

    n = v2(buf, 1, 0x11, in4, sizeof(in4), 0);
    buf[12] = 0x11; /* version 1 in a v2 header */
    ASSERT_EQ(forwarded_proxy_parse(buf, n, &pp, err, sizeof(err)), FORWARDED_PROXY_BAD);
    ASSERT_CONTAINS(err, "version is not 2");
    n = v2(buf, 2, 0x11, in4, sizeof(in4), 0);
    ASSERT_EQ(forwarded_proxy_parse(buf, n, &pp, err, sizeof(err)), FORWARDED_PROXY_BAD);
    ASSERT_CONTAINS(err, "command");
    n = v2(buf, 1, 0x12, in4, sizeof(in4), 0);
    ASSERT_EQ(forwarded_proxy_parse(buf, n, &pp, err, sizeof(err)), FORWARDED_PROXY_BAD);
    ASSERT_CONTAINS(err, "not a stream");
    n = v2(buf, 1, 0x21, in4, sizeof(in4), 0); /* IPv6 in a block too short for it */
    ASSERT_EQ(forwarded_proxy_parse(buf, n, &pp, err, sizeof(err)), FORWARDED_PROXY_BAD);
    ASSERT_CONTAINS(err, "shorter");
    n = v2(buf, 1, 0x41, in4, sizeof(in4), 0);
    ASSERT_EQ(forwarded_proxy_parse(buf, n, &pp, err, sizeof(err)), FORWARDED_PROXY_BAD);
    ASSERT_CONTAINS(err, "unknown address family");
    memcpy(buf, sig2, 12);
    buf[6] = 'X';
    ASSERT_EQ(forwarded_proxy_parse(buf, 7, &pp, err, sizeof(err)), FORWARDED_PROXY_BAD);
    ASSERT_CONTAINS(err, "no PROXY header");
}

CHECK_MAIN(CASE(xff_from_a_trusted_proxy_names_the_rightmost_untrusted_address),
           CASE(xff_lines_count_as_one_list_in_order),
           CASE(xff_of_trusted_proxies_only_names_the_leftmost),
           CASE(xff_is_ignored_unless_the_peer_is_trusted),
           CASE(xff_malformed_from_a_trusted_proxy_is_refused_naming_the_header),
           CASE(proxy_v1_gives_the_source_and_its_length),
           CASE(proxy_v1_malformed_is_refused_with_a_reason),
           CASE(proxy_v2_gives_the_source_and_skips_tlvs),
           CASE(proxy_v2_malformed_is_refused_with_a_reason))
