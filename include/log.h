/* JSON log lines on stderr: one object per line, never secrets or raw bodies. */
#ifndef VR_LOG_H
#define VR_LOG_H

#include "common.h"

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

extern enum log_level log_current_level;

/* Parses "debug", "info", "warn" or "error"; returns 0 or VR_EINVAL. */
int log_level_parse(const char *s, enum log_level *out) VR_MUSTCHECK;
void log_set_level(enum log_level level);

/* Writes {"ts","level","event","msg"} with msg formatted by fmt; event is a short stable tag. */
void log_write(enum log_level level, const char *event, const char *fmt, ...) VR_PRINTF(3, 4);

/* Appends s to out as a JSON string literal (with quotes), writing at most cap bytes and
 * always NUL-terminating; returns the bytes written (excluding NUL). */
size_t log_json_escape(char *out, size_t cap, const char *s);

/* The level test comes first so that disabled lines do not evaluate their arguments. */
#define log_at(level, event, ...)                                                                  \
    do {                                                                                           \
        if ((level) >= log_current_level)                                                          \
            log_write((level), (event), __VA_ARGS__);                                              \
    } while (0)
#define log_debug(event, ...) log_at(LOG_DEBUG, event, __VA_ARGS__)
#define log_info(event, ...)  log_at(LOG_INFO, event, __VA_ARGS__)
#define log_warn(event, ...)  log_at(LOG_WARN, event, __VA_ARGS__)
#define log_error(event, ...) log_at(LOG_ERROR, event, __VA_ARGS__)

#endif
