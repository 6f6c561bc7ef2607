/* X-Forwarded-For and PROXY protocol headers: who the client is when a trusted proxy says. */
#include "forwarded.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define XFF_NAME "X-Forwarded-For"

/* ---- addresses ---------------------------------------------------------------------------- */

void forwarded_addr_unmap(struct sockaddr_storage *ss)
{
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)ss;
    struct sockaddr_in v4;

    if (ss->ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr))
        return;
    memset(&v4, 0, sizeof(v4));
    v4.sin_family = AF_INET;
    v4.sin_port = a6->sin6_port;
    memcpy(&v4.sin_addr, a6->sin6_addr.s6_addr + 12, 4);
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, &v4, sizeof(v4));
}

void forwarded_addr_name(const struct sockaddr *sa, char *out, size_t cap)
{
    const void *bytes = NULL;

    if (sa->sa_family == AF_INET)
        bytes = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6)
        bytes = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    if (bytes == NULL || inet_ntop(sa->sa_family, bytes, out, (socklen_t)cap) == NULL)
        snprintf(out, cap, "unknown");
}

static void addr_copy(struct sockaddr_storage *dst, const struct sockaddr *src)
{
    memset(dst, 0, sizeof(*dst));
    if (src->sa_family == AF_INET)
        memcpy(dst, src, sizeof(struct sockaddr_in));
    else if (src->sa_family == AF_INET6)
        memcpy(dst, src, sizeof(struct sockaddr_in6));
    else
        dst->ss_family = src->sa_family;
}

/* text (len bytes, not NUL-terminated) as an address into ss; false when it is none. */
static bool addr_parse(const char *text, size_t len, struct sockaddr_storage *ss)
{
    char host[FORWARDED_MAX_ELEMENT_BYTES + 1];
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;

    if (len >= 2 && text[0] == '[' && text[len - 1] == ']') {
        text++;
        len -= 2;
        if (len >= sizeof(host))
            return false;
        memcpy(host, text, len);
        host[len] = '\0';
        memset(ss, 0, sizeof(*ss));
        v6->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, host, &v6->sin6_addr) != 1)
            return false;
        forwarded_addr_unmap(ss);
        return true;
    }
    if (len >= sizeof(host))
        return false;
    memcpy(host, text, len);
    host[len] = '\0';
    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        return true;
    }
    v6->sin6_family = AF_INET6;
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) != 1)
        return false;
    forwarded_addr_unmap(ss);
    return true;
}

/* ---- X-Forwarded-For ---------------------------------------------------------------------- */

static bool is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* The walk from the right: how many trusted proxies it passed, and the last address read. */
struct walk {
    const struct acl *trusted;
    struct sockaddr_storage last;
    size_t read;
    size_t proxies;
};

/* Reads one element, the walk's next step. 1: an address that is not a trusted proxy (the
 * client), 0: a trusted proxy or an empty element (walk on), VR_EPARSE with err. */
static int walk_element(struct walk *w, const char *start, const char *end, char *err,
                        size_t errlen)
{
    size_t len;

    while (start < end && is_ows(*start))
        start++;
    while (end > start && is_ows(end[-1]))
        end--;
    len = (size_t)(end - start);
    if (len == 0)
        return 0;
    if (len > FORWARDED_MAX_ELEMENT_BYTES) {
        snprintf(err, errlen, XFF_NAME " has an element of more than %d bytes",
                 FORWARDED_MAX_ELEMENT_BYTES);
        return VR_EPARSE;
    }
    if (!addr_parse(start, len, &w->last)) {
        /* Only printable bytes of a bounded element go into the message. */
        char shown[FORWARDED_MAX_ELEMENT_BYTES + 1];

        for (size_t i = 0; i < len; i++) {
            unsigned char ch = (unsigned char)start[i];

            shown[i] = start[i];
            if (ch < 0x20 || ch >= 0x7f || ch == '"')
                shown[i] = '?';
        }
        shown[len] = '\0';
        snprintf(err, errlen, XFF_NAME ": \"%s\" is not an IP address", shown);
        return VR_EPARSE;
    }
    w->read++;
    if (!acl_allows(w->trusted, (const struct sockaddr *)&w->last))
        return 1;
    if (++w->proxies > FORWARDED_MAX_HOPS) {
        snprintf(err, errlen, XFF_NAME " lists more than %d trusted proxies", FORWARDED_MAX_HOPS);
        return VR_EPARSE;
    }
    return 0;
}

/* Walks one header line's elements from its right end; empty list elements are skipped, as
 * HTTP lists allow them. What lies left of the client is never read. 1, 0 or VR_EPARSE as
 * walk_element. */
static int walk_line(struct walk *w, const char *value, char *err, size_t errlen)
{
    const char *end = value + strlen(value);

    for (;;) {
        const char *start = end;
        int r;

        while (start > value && start[-1] != ',')
            start--;
        if ((r = walk_element(w, start, end, err, errlen)) != 0)
            return r;
        if (start == value)
            return 0;
        end = start - 1; /* the comma */
    }
}

int forwarded_client(const struct sockaddr *peer, const struct acl *trusted,
                     const struct httpreq_header *headers, size_t count,
                     struct sockaddr_storage *client, char *err, size_t errlen)
{
    struct walk w = {.trusted = trusted};
    int r;

    addr_copy(client, peer);
    forwarded_addr_unmap(client);
    if (acl_count(trusted) == 0 || !acl_allows(trusted, peer))
        return 0;
    for (size_t i = count; i-- > 0;) {
        if (strcasecmp(headers[i].name, XFF_NAME) != 0)
            continue;
        if ((r = walk_line(&w, headers[i].value, err, errlen)) < 0)
            return r;
        if (r == 1)
            break;
    }
    /* The client, or, when every address is a trusted proxy, the left-most of them. */
    if (w.read > 0)
        *client = w.last;
    return 0;
}

/* ---- PROXY protocol ----------------------------------------------------------------------- */

static const unsigned char v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                         0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
static const char v1_sig[] = "PROXY ";

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

static enum forwarded_proxy_result bad(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return FORWARDED_PROXY_BAD;
}

/* One decimal port of a v1 header: 1 to 5 digits, at most 65535. */
static bool v1_port(const char *s, size_t len, uint16_t *port)
{
    unsigned long v = 0;

    if (len == 0 || len > 5)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

/* The fields of "PROXY TCP4 src dst sport dport" (line without CRLF, NUL-terminated). */
static enum forwarded_proxy_result v1_fields(const char *line, struct forwarded_proxy *out,
                                             char *err, size_t errlen)
{
    const char *f[6];
    size_t flen[6], n = 0;
    const char *p = line;
    struct sockaddr_storage dst;
    uint16_t sport, dport;
    int family;

    /* Exactly one space between fields, as the protocol writes them. */
    while (n < 6) {
        const char *sp = strchr(p, ' ');

        f[n] = p;
        flen[n] = sp != NULL ? (size_t)(sp - p) : strlen(p);
        n++;
        if (sp == NULL)
            break;
        p = sp + 1;
    }
    if (n >= 2 && flen[1] == 7 && strncmp(f[1], "UNKNOWN", 7) == 0) {
        out->keep_peer = true; /* whatever follows UNKNOWN is ignored */
        return FORWARDED_PROXY_DONE;
    }
    if (n != 6 || strchr(f[5], ' ') != NULL)
        return bad(err, errlen, "PROXY v1 header: not \"PROXY TCP4|TCP6 src dst sport dport\"");
    if (flen[1] == 4 && strncmp(f[1], "TCP4", 4) == 0)
        family = AF_INET;
    else if (flen[1] == 4 && strncmp(f[1], "TCP6", 4) == 0)
        family = AF_INET6;
    else
        return bad(err, errlen, "PROXY v1 header: protocol is not TCP4, TCP6 or UNKNOWN");
    /* TCP4 takes dotted quads, TCP6 IPv6 text (an IPv4-mapped one comes out as IPv4). */
    for (int i = 2; i <= 3; i++) {
        if ((family == AF_INET) != (memchr(f[i], ':', flen[i]) == NULL) ||
            memchr(f[i], '[', flen[i]) != NULL ||
            !addr_parse(f[i], flen[i], i == 2 ? &out->source : &dst))
            return bad(err, errlen,
                       "PROXY v1 header: an address is not one of the protocol's family");
    }
    if (!v1_port(f[4], flen[4], &sport) || !v1_port(f[5], flen[5], &dport))
        return bad(err, errlen, "PROXY v1 header: a port is not a number from 0 to 65535");
    if (out->source.ss_family == AF_INET)
        ((struct sockaddr_in *)&out->source)->sin_port = htons(sport);
    else
        ((struct sockaddr_in6 *)&out->source)->sin6_port = htons(sport);
    return FORWARDED_PROXY_DONE;
}

static enum forwarded_proxy_result v1_parse(const unsigned char *data, size_t len,
                                            struct forwarded_proxy *out, char *err, size_t errlen)
{
    char line[FORWARDED_PROXY_V1_MAX_BYTES];
    size_t scan = min_size(len, FORWARDED_PROXY_V1_MAX_BYTES);
    size_t end;

    for (end = 0; end < scan; end++) {
        if (data[end] == '\r' || data[end] == '\n')
            break;
        if (data[end] < 0x20 || data[end] > 0x7e)
            return bad(err, errlen, "PROXY v1 header: a byte that is not printable ASCII");
    }
    if (end == scan) {
        if (scan == FORWARDED_PROXY_V1_MAX_BYTES)
            return bad(err, errlen, "PROXY v1 header: no CRLF within 107 bytes");
        return FORWARDED_PROXY_NEED_MORE;
    }
    if (data[end] != '\r')
        return bad(err, errlen, "PROXY v1 header: a line ending that is not CRLF");
    if (end + 2 > FORWARDED_PROXY_V1_MAX_BYTES)
        return bad(err, errlen, "PROXY v1 header: no CRLF within 107 bytes");
    if (end + 1 == len)
        return FORWARDED_PROXY_NEED_MORE;
    if (data[end + 1] != '\n')
        return bad(err, errlen, "PROXY v1 header: a line ending that is not CRLF");
    memcpy(line, data, end);
    line[end] = '\0';
    out->version = 1;
    out->header_bytes = end + 2;
    return v1_fields(line, out, err, errlen);
}

static enum forwarded_proxy_result v2_parse(const unsigned char *data, size_t len,
                                            struct forwarded_proxy *out, char *err, size_t errlen)
{
    size_t addr_len, need;
    unsigned family, transport;

    if (len < 16)
        return FORWARDED_PROXY_NEED_MORE;
    if ((data[12] >> 4) != 2)
        return bad(err, errlen, "PROXY v2 header: version is not 2");
    if ((data[12] & 0x0f) > 1)
        return bad(err, errlen, "PROXY v2 header: command is not LOCAL or PROXY");
    addr_len = ((size_t)data[14] << 8) | data[15];
    family = data[13] >> 4;
    transport = data[13] & 0x0f;
    out->version = 2;
    out->header_bytes = 16 + addr_len;
    if (family > 3 || transport > 2)
        return bad(err, errlen, "PROXY v2 header: unknown address family or transport");
    /* LOCAL: the proxy's own connection (a health check); UNSPEC and UNIX carry no IP. */
    if ((data[12] & 0x0f) == 0 || family == 0 || family == 3) {
        out->keep_peer = true;
        return FORWARDED_PROXY_DONE;
    }
    if (transport != 1)
        return bad(err, errlen, "PROXY v2 header: transport is not a stream");
    need = family == 1 ? 12 : 36;
    if (addr_len < need)
        return bad(err, errlen, "PROXY v2 header: address block shorter than its family's");
    if (len < 16 + need)
        return FORWARDED_PROXY_NEED_MORE;
    memset(&out->source, 0, sizeof(out->source));
    if (family == 1) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)&out->source;

        v4->sin_family = AF_INET;
        memcpy(&v4->sin_addr, data + 16, 4);
        memcpy(&v4->sin_port, data + 24, 2); /* both in network order */
    } else {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->source;

        v6->sin6_family = AF_INET6;
        memcpy(&v6->sin6_addr, data + 16, 16);
        memcpy(&v6->sin6_port, data + 48, 2);
        forwarded_addr_unmap(&out->source);
    }
    return FORWARDED_PROXY_DONE;
}

enum forwarded_proxy_result forwarded_proxy_parse(const unsigned char *data, size_t len,
                                                  struct forwarded_proxy *out, char *err,
                                                  size_t errlen)
{
    size_t n;

    memset(out, 0, sizeof(*out));
    if (len == 0)
        return FORWARDED_PROXY_NEED_MORE;
    if (data[0] == (unsigned char)v1_sig[0]) {
        n = min_size(len, sizeof(v1_sig) - 1);
        if (memcmp(data, v1_sig, n) != 0)
            return bad(err, errlen, "no PROXY header: the connection must start with one");
        if (len < sizeof(v1_sig) - 1)
            return FORWARDED_PROXY_NEED_MORE;
        return v1_parse(data, len, out, err, errlen);
    }
    n = min_size(len, sizeof(v2_sig));
    if (memcmp(data, v2_sig, n) != 0)
        return bad(err, errlen, "no PROXY header: the connection must start with one");
    return v2_parse(data, len, out, err, errlen);
}
