/* Error strings and allocation wrappers. */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void oom(size_t n)
{
    /* Nothing sensible can continue without memory; a supervisor restarts us. */
    fprintf(stderr, "{\"level\":\"error\",\"msg\":\"out of memory allocating %zu bytes\"}\n", n);
    abort();
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
