/* UTF-8 at the edges: what untrusted text must be before PostgreSQL keeps it (valid UTF-8, no
 * NUL), and cutting text to a size without splitting a character. */
#ifndef VR_UTF8_H
#define VR_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* The offset of the first byte of s[0..len) that is NUL or not part of a well-formed UTF-8
 * sequence (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF); len when every
 * byte is fine. */
size_t utf8_bad_offset(const char *s, size_t len);

/* utf8_bad_offset(s, len) == len. */
bool utf8_text_ok(const char *s, size_t len);

/* The longest prefix of s[0..len) of at most max bytes that does not end inside a multi-byte
 * sequence. Input that is not UTF-8 is cut at max, never further back than one sequence. */
size_t utf8_cut(const char *s, size_t len, size_t max);

/* NUL-terminates the string in buf (at most size-1 bytes of text, size > 0) on a character
 * boundary: for text that snprintf may have cut at the end of buf. */
void utf8_trim(char *buf, size_t size);

/* Copies at most dstlen-1 bytes of src[0..srclen) into dst (dstlen > 0) as text that is always
 * valid UTF-8: each NUL, control character and byte outside a well-formed sequence becomes '?'.
 * For quoting untrusted values in messages. Returns the bytes written, without the NUL. */
size_t utf8_copy_clean(char *dst, size_t dstlen, const char *src, size_t srclen);

#endif
