/* What only the providers share: the product's own failure answers, the JSON error body, how
 * a parse failure names its field, and the limits on what a provider's body may hold. */
#ifndef VR_PROVIDER_INT_H
#define VR_PROVIDER_INT_H

#include <stddef.h>

#include "provider.h"

/* Longest event type kept; longer ones are refused. */
#define PROVIDER_MAX_TYPE_BYTES 64
/* Longest order reference kept; longer ones are refused. */
#define PROVIDER_MAX_REF_BYTES 128

struct cJSON;

/* 0 when every string in the JSON text body[0..len) is UTF-8 without NUL (escaped as \u0000
 * or raw), or VR_EPARSE with err naming the field ("data.orderNo: not valid UTF-8 text").
 * Looks at strings only: whether the text is JSON is the parser's to say. */
int provider_check_text(const char *body, size_t len, char *err, size_t errlen);

/* 0 when no object in the tree names a key twice, or VR_EPARSE with err naming it
 * ("data.orderNo: duplicate key"). */
int provider_check_keys(const struct cJSON *root, char *err, size_t errlen);

/* Writes "field: what" into err and returns VR_EPARSE, for parsers' one-line failures. */
int provider_fail(char *err, size_t errlen, const char *field, const char *what);

/* The product's own answers, for providers that document none: 415 unsupported_media_type,
 * 400 invalid_payload, 503 unavailable with Retry-After, 500 internal. */
void provider_json_failure(enum provider_failure f, const char *message,
                           struct provider_reply *out);

/* {"error":{"code":code,"message":message}} into out, cut to fit but always valid JSON. */
void provider_error_body(struct provider_reply *out, const char *code, const char *message);

#endif
