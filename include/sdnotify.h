/* Tells the service manager how serve stands (systemd's Type=notify, through $NOTIFY_SOCKET):
 * ready, stopping, and a one-line status. Without $NOTIFY_SOCKET every call does nothing. */
#ifndef VR_SDNOTIFY_H
#define VR_SDNOTIFY_H

#include "common.h"

/* READY=1 with STATUS= the formatted line: serve takes requests. Logs a failure to send. */
void sdnotify_ready(const char *fmt, ...) VR_PRINTF(1, 2);

/* STOPPING=1 with STATUS= the formatted line: serve has begun to shut down. */
void sdnotify_stopping(const char *fmt, ...) VR_PRINTF(1, 2);

#endif
