/* Fuzz target for httpreq: arbitrary bytes, fed in input-chosen pieces, must never misbehave. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "httpreq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_request(const struct httpreq_request *r, const struct httpreq_limits *lim)
{
    size_t plen;

    if (r->method == NULL || r->target == NULL || r->path == NULL || r->query == NULL ||
        r->body == NULL)
        abort();
    if (r->body_len > lim->max_body_bytes || r->body[r->body_len] != '\0')
        abort();
    plen = strlen(r->path);
    if (strncmp(r->target, r->path, plen) != 0)
        abort();
    if (r->target[plen] == '?' ? strcmp(r->target + plen + 1, r->query) != 0
                               : (r->target[plen] != '\0' || r->query[0] != '\0'))
        abort();
    if (r->http_major != 1)
        abort();
    for (size_t i = 0; i < r->header_count; i++) {
        if (httpreq_request_header(r, r->headers[i].name) == NULL)
            abort();
    }
}

static int drain(struct httpreq *p, const struct httpreq_limits *lim)
{
    for (;;) {
        enum httpreq_event ev = httpreq_step(p);
        struct httpreq_request *r;
        int status;

        switch (ev) {
        case HTTPREQ_NEED_MORE:
            return 0;
        case HTTPREQ_HEADERS_READY:
            if (httpreq_current(p) == NULL)
                abort();
            break;
        case HTTPREQ_REQUEST_READY:
            r = httpreq_take(p);
            if (r == NULL)
                abort();
            check_request(r, lim);
            httpreq_request_free(r);
            break;
        case HTTPREQ_ERROR:
            status = httpreq_error_status(p);
            if (status != 400 && status != 411 && status != 413 && status != 417 && status != 431 &&
                status != 505)
                abort();
            if (httpreq_error_message(p)[0] == '\0')
                abort();
            return -1;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct httpreq_limits lim = {0};
    struct httpreq *p;
    uint32_t seed;
    size_t off = 2;

    if (size < 2)
        return 0;
    /* Byte 0 seeds the piece sizes, byte 1 picks the limits. */
    seed = data[0] + 1u;
    if (data[1] & 1) {
        lim.max_header_bytes = 64 + (size_t)(data[1] >> 1) * 4;
        lim.max_body_bytes = (size_t)(data[1] >> 1);
    }
    if (lim.max_header_bytes == 0)
        lim.max_header_bytes = HTTPREQ_DEFAULT_MAX_HEADER_BYTES;
    if (lim.max_body_bytes == 0)
        lim.max_body_bytes = HTTPREQ_DEFAULT_MAX_BODY_BYTES;
    lim.max_pending_bytes = (size_t)1 << 20;
    p = httpreq_new(&lim);
    while (off < size) {
        size_t piece;

        seed = seed * 1103515245u + 12345u;
        piece = 1 + (seed >> 16) % 97;
        if (piece > size - off)
            piece = size - off;
        if (httpreq_feed(p, (const char *)data + off, piece) != 0)
            abort(); /* every piece is parsed before the next, so the cap never bites */
        off += piece;
        if (drain(p, &lim) < 0)
            break;
    }
    httpreq_free(p);
    return 0;
}
