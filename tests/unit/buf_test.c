/* Capped buffers: growth up to the cap and never past it, formatted appends, dropping a prefix,
 * handing the contents over. */
#include "buf.h"
#include "check.h"

static void buf_grows_up_to_its_cap_and_refuses_more(void)
{
    struct buf b;
    char chunk[100];

    memset(chunk, 'x', sizeof(chunk));
    buf_init(&b, 250);
    ASSERT_EQ(buf_add(&b, chunk, 100), 0);
    ASSERT_EQ(buf_add(&b, chunk, 100), 0);
    ASSERT_EQ(buf_add(&b, chunk, 100), VR_ETOOBIG);
    ASSERT_EQ(b.len, 200);
    ASSERT_EQ(buf_add(&b, chunk, 50), 0);
    ASSERT_EQ(b.len, 250);
    ASSERT_TRUE(b.cap <= 251);
    ASSERT_EQ(buf_add(&b, chunk, 1), VR_ETOOBIG);
    ASSERT_EQ(b.data[250], '\0');
    buf_free(&b);
    ASSERT_TRUE(b.data == NULL);
}

static void buf_formats_and_refuses_what_does_not_fit(void)
{
    struct buf b;

    buf_init(&b, 16);
    ASSERT_EQ(buf_addf(&b, "%s=%d;", "a", 12), 0);
    ASSERT_EQ(buf_addf(&b, "%s", "0123456789abcdef"), VR_ETOOBIG);
    ASSERT_STR_EQ(b.data, "a=12;");
    ASSERT_EQ(buf_addf(&b, "%05d", 7), 0);
    ASSERT_STR_EQ(b.data, "a=12;00007");
    buf_free(&b);
}

static void buf_drops_a_prefix_and_hands_over_the_rest(void)
{
    struct buf b;
    char *s;

    buf_init(&b, 64);
    ASSERT_EQ(buf_add(&b, "GET / HTTP/1.1\r\n", 16), 0);
    buf_drop_front(&b, 4);
    ASSERT_STR_EQ(b.data, "/ HTTP/1.1\r\n");
    buf_drop_front(&b, 1000);
    ASSERT_EQ(b.len, 0);
    ASSERT_STR_EQ(b.data, "");
    ASSERT_EQ(buf_add(&b, "abc", 3), 0);
    s = buf_take(&b);
    ASSERT_STR_EQ(s, "abc");
    ASSERT_TRUE(b.data == NULL && b.len == 0);
    free(s);
    s = buf_take(&b);
    ASSERT_STR_EQ(s, "");
    free(s);
}

CHECK_MAIN(CASE(buf_grows_up_to_its_cap_and_refuses_more),
           CASE(buf_formats_and_refuses_what_does_not_fit),
           CASE(buf_drops_a_prefix_and_hands_over_the_rest))
