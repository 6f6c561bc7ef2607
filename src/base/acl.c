/* CIDR allowlists. */
#include "acl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct acl_block {
    int family;
    unsigned char addr[16];
    unsigned prefix;
};

struct acl {
    struct acl_block *blocks;
    size_t count;
};

static int parse_block(const char *text, struct acl_block *b)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(text, '/');
    size_t hostlen = slash ? (size_t)(slash - text) : strlen(text);
    unsigned max;

    if (hostlen == 0 || hostlen >= sizeof(host))
        return VR_EINVAL;
    memcpy(host, text, hostlen);
    host[hostlen] = '\0';
    if (inet_pton(AF_INET, host, b->addr) == 1) {
        b->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, host, b->addr) == 1) {
        b->family = AF_INET6;
        max = 128;
    } else {
        return VR_EINVAL;
    }
    b->prefix = max;
    if (slash != NULL) {
        char *end;
        errno = 0;
        long v = strtol(slash + 1, &end, 10);
        if (errno != 0 || end == slash + 1 || *end != '\0' || v < 0 || v > (long)max)
            return VR_EINVAL;
        b->prefix = (unsigned)v;
    }
    return 0;
}

int acl_parse(const char *list, struct acl **out, char *err, size_t errlen)
{
    struct acl *acl = xcalloc(1, sizeof(*acl));
    char *copy = xstrdup(list), *save = NULL;
    int r = 0;

    for (char *tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
        acl->blocks = xrealloc(acl->blocks, (acl->count + 1) * sizeof(*acl->blocks));
        if (parse_block(tok, &acl->blocks[acl->count]) != 0) {
            snprintf(err, errlen, "\"%s\" is not an IP address or CIDR block", tok);
            r = VR_EINVAL;
            goto out;
        }
        acl->count++;
    }
out:
    free(copy);
    if (r != 0) {
        acl_free(acl);
        acl = NULL;
    }
    *out = acl;
    return r;
}

static bool prefix_equal(const unsigned char *a, const unsigned char *b, unsigned bits)
{
    unsigned bytes = bits / 8, rest = bits % 8;

    if (memcmp(a, b, bytes) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xffU << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

bool acl_allows(const struct acl *acl, const struct sockaddr *addr)
{
    unsigned char bytes[16];
    int family;

    if (acl == NULL || addr == NULL)
        return false;
    if (addr->sa_family == AF_INET) {
        family = AF_INET;
        memcpy(bytes, &((const struct sockaddr_in *)(const void *)addr)->sin_addr, 4);
    } else if (addr->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            family = AF_INET;
            memcpy(bytes, a6->s6_addr + 12, 4);
        } else {
            family = AF_INET6;
            memcpy(bytes, a6->s6_addr, 16);
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < acl->count; i++) {
        if (acl->blocks[i].family == family &&
            prefix_equal(acl->blocks[i].addr, bytes, acl->blocks[i].prefix))
            return true;
    }
    return false;
}

size_t acl_count(const struct acl *acl)
{
    return acl ? acl->count : 0;
}

void acl_free(struct acl *acl)
{
    if (acl == NULL)
        return;
    free(acl->blocks);
    free(acl);
}
