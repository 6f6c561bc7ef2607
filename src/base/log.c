/* JSON log lines on stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum log_level log_current_level = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *s, enum log_level *out)
{
    for (size_t i = 0; i < ARRAY_SIZE(level_names); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return VR_EINVAL;
}

void log_set_level(enum log_level level)
{
    log_current_level = level;
}

size_t log_json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;

    if (cap == 0)
        return 0;
#define PUT(c)                                                                                     \
    do {                                                                                           \
        if (n + 1 >= cap)                                                                          \
            goto out;                                                                              \
        out[n++] = (c);                                                                            \
    } while (0)
    PUT('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        /* Reserve room for the longest escape and the closing quote. */
        if (n + 8 >= cap)
            break;
        if (*p == '"' || *p == '\\') {
            PUT('\\');
            PUT((char)*p);
        } else if (*p < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", *p);
        } else {
            PUT((char)*p);
        }
    }
    PUT('"');
#undef PUT
out:
    out[n] = '\0';
    return n;
}

void log_write(enum log_level level, const char *event, const char *fmt, ...)
{
    char msg[2048];
    char esc[4200];
    char ts[40];
    struct timespec now;
    struct tm tm;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    log_json_escape(esc, sizeof(esc), msg);
    /* One fprintf per line keeps lines whole even with several writers on one pipe. */
    fprintf(stderr, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"event\":\"%s\",\"msg\":%s}\n", ts,
            now.tv_nsec / 1000000L, level_names[level], event, esc);
}
