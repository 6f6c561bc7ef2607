/* Shared basics: error codes, allocation that aborts on exhaustion, container_of. */
#ifndef VR_COMMON_H
#define VR_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define VR_MUSTCHECK    __attribute__((warn_unused_result))
#define VR_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Every fallible function returns 0 or one of these negative codes. */
#define VR_ERRNO_MAP(XX)                                                                           \
    XX(EINVAL, "invalid argument")                                                                 \
    XX(ENOMEM, "out of memory")                                                                    \
    XX(EIO, "input/output error")                                                                  \
    XX(ENOENT, "not found")                                                                        \
    XX(ETOOBIG, "too large")                                                                       \
    XX(ETIMEDOUT, "timed out")                                                                     \
    XX(EPARSE, "malformed input")                                                                  \
    XX(EDB, "database error")                                                                      \
    XX(EUNAVAIL, "database unavailable")                                                           \
    XX(EBEHIND, "database schema is behind: run voidrecon migrate")                                \
    XX(ECLOSED, "connection closed")                                                               \
    XX(EREMOTE, "the remote service reported an error")                                            \
    XX(EAUTH, "not signed by the expected sender")                                                 \
    XX(ESTATE, "operation not valid in the current state")

enum vr_errno {
    VR_OK = 0,
#define XX(name, s) VR_##name,
    VR_ERRNO_BASE = -1000, /* the codes count up from here */
    VR_ERRNO_MAP(XX)
#undef XX
};

/* A static, human-readable description of code (never NULL). */
const char *vr_strerror(int code);

/* Process-wide set-up that every binary runs first: cJSON allocates through xmalloc. */
void vr_init(void);

struct cJSON;

/* cJSON_PrintUnformatted for an item the caller built: never NULL, since cJSON fails only when
 * memory runs out and xmalloc has already given up then. Caller frees with free(). */
char *vr_json_print(const struct cJSON *item);

/* For broken invariants and exhausted memory only, never for bad input: logs one error line
 * saying what broke, then aborts. */
void vr_panic(const char *fmt, ...) VR_PRINTF(1, 2) __attribute__((noreturn));

/* Allocators that abort the process when memory is exhausted. */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
/* Caller frees with free(). */
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* The next number of a xorshift64 sequence kept in *state (never 0): for jitter, not for
 * anything that must be unpredictable. */
uint64_t vr_rand(uint64_t *state);

/* base doubled n times and capped at cap, then lowered by up to a fifth at random, so that
 * work that failed or started together does not stay in step. */
uint64_t vr_backoff(uint64_t base, int n, uint64_t cap, uint64_t *rng);

/* For configuration structs where zero means "the default". */
#define VR_DEFAULT(lvalue, value)                                                                  \
    do {                                                                                           \
        if ((lvalue) == 0)                                                                         \
            (lvalue) = (value);                                                                    \
    } while (0)

#endif
