/* Tiny test harness: asserts that print both sides, and a runner over named tests. */
#ifndef VR_CHECK_H
#define VR_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int check_failures;

#define CHECK_FAIL_(fmt, ...)                                                                      \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: " fmt "\n", __FILE__, __LINE__, __VA_ARGS__);                      \
        check_failures++;                                                                          \
        return;                                                                                    \
    } while (0)

#define ASSERT_TRUE(e)                                                                             \
    do {                                                                                           \
        if (!(e))                                                                                  \
            CHECK_FAIL_("expected true: %s", #e);                                                  \
    } while (0)
#define ASSERT_EQ(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_)                                                                              \
            CHECK_FAIL_("%s == %s: %lld != %lld", #a, #b, a_, b_);                                 \
    } while (0)
#define ASSERT_NE(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ == b_)                                                                              \
            CHECK_FAIL_("%s != %s: both %lld", #a, #b, a_);                                        \
    } while (0)
#define ASSERT_STR_EQ(a, b)                                                                        \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                                       \
            CHECK_FAIL_("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",                  \
                        b_ ? b_ : "(null)");                                                       \
    } while (0)
#define ASSERT_CONTAINS(hay, needle)                                                               \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (h_ == NULL || strstr(h_, n_) == NULL)                                                  \
            CHECK_FAIL_("\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_);                 \
    } while (0)

struct check_case {
    const char *name;
    void (*fn)(void);
};

/* The file rel under tests/data, NUL-terminated (caller frees); *len gets its length. Exits
 * the test when it cannot be read. */
char *check_slurp(const char *rel, size_t *len);

/* Runs every case (or only argv[1] when given) and returns the process exit status. */
int check_run(const struct check_case *cases, size_t n, int argc, char **argv);

#define CHECK_MAIN(...)                                                                            \
    int check_failures;                                                                            \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        static const struct check_case cases_[] = {__VA_ARGS__};                                   \
        return check_run(cases_, sizeof(cases_) / sizeof(cases_[0]), argc, argv);                  \
    }
#define CASE(fn)                                                                                   \
    {                                                                                              \
#fn, fn                                                                                    \
    }

#endif
