/* The service manager's notifications, over libsystemd's sd_notify (a no-op without
 * $NOTIFY_SOCKET). */
#include "sdnotify.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "log.h"

/* A status is one line for systemctl status; longer ones are cut. */
#define STATUS_BYTES 256

static void notify(const char *state, const char *fmt, va_list ap) VR_PRINTF(2, 0);

static void notify(const char *state, const char *fmt, va_list ap)
{
    char status[STATUS_BYTES];
    int rc;

    (void)vsnprintf(status, sizeof(status), fmt, ap);
    status[strcspn(status, "\n")] = '\0';
    /* 0: no $NOTIFY_SOCKET, nobody to tell. The variable stays set: later states go there too. */
    rc = sd_notifyf(0, "%s\nSTATUS=%s", state, status);
    if (rc < 0)
        log_warn("sd_notify_failed", "telling the service manager %s: %s", state, strerror(-rc));
}

void sdnotify_ready(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    notify("READY=1", fmt, ap);
    va_end(ap);
}

void sdnotify_stopping(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    notify("STOPPING=1", fmt, ap);
    va_end(ap);
}
