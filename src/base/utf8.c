/* UTF-8 validation and boundary-safe cutting. PostgreSQL refuses text that is not UTF-8 or
 * holds a NUL (SQLSTATE 22021), so every string from outside is checked, and every cut made to
 * fit a column or a message lands between characters. */
#include "utf8.h"

#include <string.h>

/* The length of the well-formed sequence at s[0..len), or 0 if there is none (NUL included). */
static size_t seq_len(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t n;

    if (c == 0)
        return 0;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    /* The second byte's range rules out overlong forms, surrogates and values past U+10FFFF. */
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (len < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    }
    return n;
}

size_t utf8_bad_offset(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        size_t n = seq_len(u + i, len - i);

        if (n == 0)
            return i;
        i += n;
    }
    return len;
}

bool utf8_text_ok(const char *s, size_t len)
{
    return utf8_bad_offset(s, len) == len;
}

size_t utf8_cut(const char *s, size_t len, size_t max)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = max;

    if (len <= max)
        return len;
    /* u[max] is the first byte left out: if it continues a character, that character goes. */
    while (i > 0 && max - i < 3 && (u[i] & 0xC0) == 0x80)
        i--;
    return (u[i] & 0xC0) == 0xC0 ? i : max;
}

void utf8_trim(char *buf, size_t size)
{
    size_t len = strnlen(buf, size - 1);

    buf[len] = '\0';
    /* A sequence cut by the writer ends the text without being whole: drop it. */
    for (size_t back = 1; back <= 3 && back <= len; back++) {
        unsigned char c = (unsigned char)buf[len - back];

        if ((c & 0xC0) == 0x80)
            continue;
        if (c >= 0xC0 && seq_len((const unsigned char *)buf + len - back, back) == 0)
            buf[len - back] = '\0';
        break;
    }
}

size_t utf8_copy_clean(char *dst, size_t dstlen, const char *src, size_t srclen)
{
    const unsigned char *u = (const unsigned char *)src;
    size_t i = 0, o = 0;

    while (i < srclen) {
        size_t n = seq_len(u + i, srclen - i);

        if (n == 1 && (u[i] < 0x20 || u[i] == 0x7F))
            n = 0;
        if (o + (n == 0 ? 1 : n) > dstlen - 1)
            break;
        if (n == 0) {
            dst[o++] = '?';
            i++;
        } else {
            memcpy(dst + o, src + i, n);
            o += n;
            i += n;
        }
    }
    dst[o] = '\0';
    return o;
}
