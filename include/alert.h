/* Alert messages as receivers get them, without any I/O: the JSON body with its one-line
 * human text, and the Standard Webhooks signature over it. */
#ifndef VR_ALERT_H
#define VR_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "store.h"

/* The longest one-line summary of an alert, in bytes with its NUL: PagerDuty takes 1024
 * characters of payload.summary, so no summary is ever cut there. */
#define ALERT_TEXT_BYTES 1024

/* What receivers expect (VOIDRECON_ALERT_FORMAT). */
enum alert_format {
    ALERT_FORMAT_STANDARD,  /* alert_body: one JSON shape with a text line */
    ALERT_FORMAT_SLACK,     /* alert_slack_body: an incoming-webhook message */
    ALERT_FORMAT_PAGERDUTY, /* alert_pagerduty_body: an Events API v2 event */
};

/* "standard", "slack" or "pagerduty" into *out; VR_EINVAL for anything else. */
int alert_format_parse(const char *name, enum alert_format *out) VR_MUSTCHECK;

/* The one line that says what a is about (alert_body's text) into out, at most cap - 1 bytes
 * (cap <= ALERT_TEXT_BYTES), cut between characters. */
void alert_summary(const struct alert_row *a, char *out, size_t cap);

/* True for an alert that ends another one (a->resolves_id, or "resolved": true). */
bool alert_is_resolve(const struct alert_row *a);

/* The identity an alert shares with its resolve, "voidrecon:<kind>:<id of the raising
 * alert>", into out (at least 64 bytes): PagerDuty's dedup_key. */
void alert_dedup_key(const struct alert_row *a, char *out, size_t cap);

/* A Slack incoming-webhook message for a: "text" (the summary, also the notification's
 * fallback) and Block Kit "blocks" (a section with the summary, a section with at most 10
 * fields), within Slack's limits and with &, < and > escaped. Caller frees with free(). */
char *alert_slack_body(const struct alert_row *a);

/* A PagerDuty Events API v2 event for a: "trigger" with its payload (summary, source,
 * severity, timestamp, component, group, class, custom_details), or "resolve" for a resolve
 * alert, both with alert_dedup_key. routing_key and source are borrowed. Caller frees. */
char *alert_pagerduty_body(const struct alert_row *a, const char *routing_key, const char *source);

/* The body of a in format: one of the three above. Caller frees. */
char *alert_render(const struct alert_row *a, enum alert_format format, const char *routing_key,
                   const char *source);

/* The body POSTed for a: the payload's fields, plus id, kind, type ("voidrecon.<kind>"),
 * timestamp (created_at) and text, one line a chat tool can show as it is. Caller frees with
 * free(). A payload that is not a JSON object is replaced by an empty one. */
char *alert_body(const struct alert_row *a);

/* The signing key of a secret: "whsec_<base64>" is decoded as Standard Webhooks prescribes
 * (padding optional); any other value is used as it is. Returns 0 with *key (caller frees)
 * and *len, or VR_EINVAL when a whsec_ secret is not base64 or is empty. */
int alert_key_parse(const char *secret, unsigned char **key, size_t *len) VR_MUSTCHECK;

/* The webhook-signature header value "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>" into
 * out (at least 64 bytes). */
void alert_sign(const unsigned char *key, size_t keylen, const char *msg_id, int64_t timestamp,
                const char *body, size_t len, char *out, size_t cap);

#endif
