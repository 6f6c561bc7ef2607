/* UTF-8 at the edges: which bytes PostgreSQL would refuse, and cuts that never split a
 * character. */
#include "check.h"
#include "utf8.h"

struct vector {
    const char *bytes;
    size_t len;
    size_t bad_at; /* expected utf8_bad_offset */
};

#define V(s, at)                                                                                   \
    {                                                                                              \
        s, sizeof(s) - 1, at                                                                       \
    }

static void utf8_finds_the_first_byte_postgresql_would_refuse(void)
{
    static const struct vector vectors[] = {
        V("", 0),
        V("plain ascii", 11),
        V("\xe4\xb8\xad\xe6\x96\x87", 6), /* two CJK characters */
        V("\xf0\x9f\x98\x80!", 5),        /* U+1F600 */
        V("A\0B", 1),                     /* NUL */
        V("\xff\xfe", 0),                 /* never in UTF-8 */
        V("ok\x80", 2),                   /* lone continuation byte */
        V("\xc0\xaf", 0),                 /* overlong '/' */
        V("\xe0\x80\xaf", 0),             /* overlong, three bytes */
        V("\xed\xa0\x80", 0),             /* surrogate U+D800 */
        V("\xf4\x90\x80\x80", 0),         /* past U+10FFFF */
        V("ab\xe4\xb8", 2),               /* cut inside a character */
        V("\xe4\xb8"
          "A",
          0), /* lead byte then ASCII */
    };

    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        const struct vector *v = &vectors[i];

        ASSERT_EQ(utf8_bad_offset(v->bytes, v->len), v->bad_at);
        ASSERT_EQ(utf8_text_ok(v->bytes, v->len), v->bad_at == v->len);
    }
}

static void utf8_cut_never_splits_a_character(void)
{
    const char *s = "a\xe4\xb8\xad\xf0\x9f\x98\x80z"; /* 1 + 3 + 4 + 1 bytes */
    static const size_t want[] = {0, 1, 1, 1, 4, 4, 4, 4, 8, 9, 9};

    for (size_t max = 0; max < sizeof(want) / sizeof(want[0]); max++)
        ASSERT_EQ(utf8_cut(s, 9, max), want[max]);
    /* Not UTF-8: cut where asked. */
    ASSERT_EQ(utf8_cut("\x80\x80\x80\x80\x80", 5, 3), 3);
}

/* What snprintf leaves when its output is cut at the end of a 6-byte buffer. */
static void utf8_trim_drops_a_character_cut_at_the_end(void)
{
    char buf[6];

    memcpy(buf, "ab\xe4\xb8\xad\xe6", 6); /* "ab", one CJK character, one byte of the next */
    utf8_trim(buf, sizeof(buf));
    ASSERT_STR_EQ(buf, "ab\xe4\xb8\xad");
    memcpy(buf, "abc\xe4\xb8", 6);
    utf8_trim(buf, sizeof(buf));
    ASSERT_STR_EQ(buf, "abc");
    memcpy(buf, "abcde", 6);
    utf8_trim(buf, sizeof(buf));
    ASSERT_STR_EQ(buf, "abcde");
}

static void utf8_copy_clean_makes_untrusted_bytes_quotable(void)
{
    char out[16];

    ASSERT_EQ(utf8_copy_clean(out, sizeof(out), "a\xff\0b\n\xe4\xb8\xad", 8), 8);
    ASSERT_STR_EQ(out, "a??b?\xe4\xb8\xad");
    ASSERT_TRUE(utf8_text_ok(out, strlen(out)));
    /* The last character does not fit whole: it is left out, not cut. */
    ASSERT_EQ(utf8_copy_clean(out, 4, "ab\xe4\xb8\xad", 5), 2);
    ASSERT_STR_EQ(out, "ab");
}

CHECK_MAIN(CASE(utf8_finds_the_first_byte_postgresql_would_refuse),
           CASE(utf8_cut_never_splits_a_character),
           CASE(utf8_trim_drops_a_character_cut_at_the_end),
           CASE(utf8_copy_clean_makes_untrusted_bytes_quotable))
