/* Growable byte buffers with a cap set at creation, for everything whose size comes from
 * outside or from a loop: request heads and bodies, answers of remote services, expositions. */
#ifndef VR_BUF_H
#define VR_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "common.h"

struct buf {
    char *data; /* NULL until the first byte; then always NUL-terminated */
    size_t len;
    size_t cap; /* bytes allocated */
    size_t max; /* the most len may ever reach */
};

/* An empty buffer that refuses to grow past max bytes; nothing is allocated yet. */
void buf_init(struct buf *b, size_t max);

/* Appends n bytes of data (borrowed). 0, or VR_ETOOBIG when len would pass max; nothing is
 * appended then. */
int buf_add(struct buf *b, const void *data, size_t n) VR_MUSTCHECK;

/* Appends printf-formatted text; 0, or VR_ETOOBIG (nothing appended) past max. */
int buf_addf(struct buf *b, const char *fmt, ...) VR_PRINTF(2, 3) VR_MUSTCHECK;
int buf_vaddf(struct buf *b, const char *fmt, va_list ap) VR_PRINTF(2, 0) VR_MUSTCHECK;

/* Drops the first n bytes (at most len), keeping the rest and the allocation. */
void buf_drop_front(struct buf *b, size_t n);

/* Empties the buffer and keeps its allocation for reuse. */
void buf_clear(struct buf *b);

/* Hands the contents over as a NUL-terminated string ("" when empty; caller frees with free())
 * and leaves the buffer empty, with nothing allocated. */
char *buf_take(struct buf *b);

/* Frees the contents; the buffer is empty and may be reused with the same max. */
void buf_free(struct buf *b);

#endif
