/* Hiding secrets in what is logged or printed: connection strings, URLs, the names of settings
 * and the messages of libraries that quote pieces of a connection string. */
#ifndef VR_MASK_H
#define VR_MASK_H

#include <stdbool.h>
#include <stddef.h>

/* What every hidden part becomes. */
#define MASK_HIDDEN "***"

/* Copies the URL in into out (cap > 0 bytes, always NUL-terminated, cut when longer) with its
 * userinfo ("user:password@", or "user@") replaced by "***@" and the value of every query
 * parameter whose name, percent-decoded, is secret (mask_name_is_secret) replaced by "***".
 * Everything between "://" and the last '@' before the query counts as userinfo, so a password
 * holding an unencoded '/' or ':' is hidden too. Text that is not a URL gets the query rule only.
 */
void mask_url(const char *in, char *out, size_t cap);

/* Copies a libpq connection string into out as mask_url does: a URI
 * (postgresql://user:password@host/db?password=...) gets mask_url; a key=value string gets the
 * value of every secret key replaced by "***", whether quoted ('...' with backslash escapes) or
 * not, and a URL in any other value masked by mask_url. From a piece libpq could not read as
 * key=value on, everything is hidden. A string without '=' is a database name, kept. */
void mask_conninfo(const char *in, char *out, size_t cap);

/* true when a setting or parameter named name[0..len) holds a secret: ignoring case, it ends in
 * "password", "passwd", "secret" or "token" (VOIDRECON_ADMIN_TOKEN, sslpassword, client_secret). */
bool mask_name_is_secret(const char *name, size_t len);

/* Copies a library's message into out (as mask_url) with every double-quoted part replaced by
 * "***": libpq's complaints about a connection string quote the piece they could not read,
 * which may be the password. */
void mask_quoted(const char *in, char *out, size_t cap);

#endif
