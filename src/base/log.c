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

/* One character of a JSON string into out (room for 7 bytes); returns the bytes written. */
static size_t escape_one(unsigned char c, char *out)
{
    if (c == '"' || c == '\\') {
        out[0] = '\\';
        out[1] = (char)c;
        return 2;
    }
    if (c < 0x20)
        return (size_t)snprintf(out, 7, "\\u%04x", c);
    out[0] = (char)c;
    return 1;
}

size_t log_json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;

    if (cap < 3) { /* not even "" fits */
        if (cap > 0)
            out[0] = '\0';
        return 0;
    }
    out[n++] = '"';
    /* Room stays for the longest escape, the closing quote and the NUL. */
    for (const unsigned char *p = (const unsigned char *)s; *p && n + 8 < cap; p++)
        n += escape_one(*p, out + n);
    out[n++] = '"';
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
    (void)clock_gettime(CLOCK_REALTIME, &now);
    (void)gmtime_r(&now.tv_sec, &tm);
    (void)strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    log_json_escape(esc, sizeof(esc), msg);
    /* One fprintf per line keeps lines whole even with several writers on one pipe. */
    fprintf(stderr, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"event\":\"%s\",\"msg\":%s}\n", ts,
            now.tv_nsec / 1000000L, level_names[level], event, esc);
}
