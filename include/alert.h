/* Alert messages as receivers get them, without any I/O: the JSON body with its one-line
 * human text, and the Standard Webhooks signature over it. */
#ifndef VR_ALERT_H
#define VR_ALERT_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "store.h"

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
