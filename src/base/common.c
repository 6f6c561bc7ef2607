/* Error strings, allocation wrappers, and the one way to give up. */
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "log.h"

const char *vr_strerror(int code)
{
    switch (code) {
    case VR_OK:
        return "success";
#define XX(name, s)                                                                                \
    case VR_##name:                                                                                \
        return s;
        VR_ERRNO_MAP(XX)
#undef XX
    default:
        return "unknown error";
    }
}

void vr_init(void)
{
    static cJSON_Hooks hooks = {.malloc_fn = xmalloc, .free_fn = free};

    cJSON_InitHooks(&hooks);
}

char *vr_json_print(const cJSON *item)
{
    char *s = cJSON_PrintUnformatted(item);

    if (s == NULL)
        vr_panic("cJSON could not print an item it built");
    return s;
}

void vr_panic(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_write(LOG_ERROR, "panic", "%s", msg);
    abort();
}

static void oom(size_t n)
{
    /* Nothing sensible can continue without memory; a supervisor restarts us. */
    vr_panic("out of memory allocating %zu bytes", n);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (p == NULL)
        oom(count * n);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

uint64_t vr_rand(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ULL;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

uint64_t vr_backoff(uint64_t base, int n, uint64_t cap, uint64_t *rng)
{
    uint64_t v = base ? base : 1;

    for (int i = 0; i < n && v < cap; i++)
        v *= 2;
    if (v > cap)
        v = cap;
    return v - (v / 5 ? vr_rand(rng) % (v / 5 + 1) : 0);
}
