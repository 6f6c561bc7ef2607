/* Fuzz target for forwarded: PROXY headers (byte 0 even) and X-Forwarded-For lines (odd)
 * must be decided within their bounds, consistently, and never misbehave. */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "forwarded.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_proxy(const uint8_t *data, size_t size)
{
    struct forwarded_proxy pp;
    enum forwarded_proxy_result full, part;
    char err[160] = "";

    /* It must decide within its bound. */
    if (size >= FORWARDED_PROXY_MAX_BYTES &&
        forwarded_proxy_parse(data, FORWARDED_PROXY_MAX_BYTES, &pp, err, sizeof(err)) ==
            FORWARDED_PROXY_NEED_MORE)
        abort();
    full = forwarded_proxy_parse(data, size, &pp, err, sizeof(err));
    if (full == FORWARDED_PROXY_BAD && err[0] == '\0')
        abort();
    if (full == FORWARDED_PROXY_DONE) {
        if (pp.version != 1 && pp.version != 2)
            abort();
        if (pp.version == 1 && (pp.header_bytes > size || pp.header_bytes > 107))
            abort();
        if (pp.version == 2 && pp.header_bytes < 16)
            abort();
        if (!pp.keep_peer && pp.source.ss_family != AF_INET && pp.source.ss_family != AF_INET6)
            abort();
    }
    /* A prefix is never further along than the whole: once decided, more bytes agree. */
    for (size_t i = 0; i < size && i <= FORWARDED_PROXY_MAX_BYTES; i++) {
        part = forwarded_proxy_parse(data, i, &pp, err, sizeof(err));
        if (part != FORWARDED_PROXY_NEED_MORE && part != full)
            abort();
    }
}

static void fuzz_xff(const uint8_t *data, size_t size)
{
    static struct acl *trusted;
    struct httpreq_header h[4];
    struct sockaddr_in peer;
    struct sockaddr_storage client;
    char *copy = malloc(size + 1), *p = copy, err[160] = "";
    size_t n = 0;
    int r;

    if (trusted == NULL && acl_parse("10.0.0.0/8, ::1, 127.0.0.0/8", &trusted, err, 160) != 0)
        abort();
    if (copy == NULL)
        abort();
    memcpy(copy, data, size);
    copy[size] = '\0';
    /* NUL bytes separate header lines (a header value never holds one). */
    while (n < ARRAY_SIZE(h) && p <= copy + size) {
        h[n].name = (char *)(n % 2 ? "x-forwarded-for" : "X-Forwarded-For");
        h[n].value = p;
        n++;
        p += strlen(p) + 1;
    }
    memset(&peer, 0, sizeof(peer));
    peer.sin_family = AF_INET;
    peer.sin_addr.s_addr = htonl(0x0a000001);
    r = forwarded_client((struct sockaddr *)&peer, trusted, h, n, &client, err, sizeof(err));
    if (r != 0 && (r != VR_EPARSE || strstr(err, "X-Forwarded-For") == NULL))
        abort();
    if (client.ss_family != AF_INET && client.ss_family != AF_INET6)
        abort();
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] % 2 == 0)
        fuzz_proxy(data + 1, size - 1);
    else
        fuzz_xff(data + 1, size - 1);
    return 0;
}
