/* Masking of secrets before they reach a log line or a message. Each function writes what it
 * keeps into a capped output and writes the mask instead of a secret, never the secret and
 * then a cut: a short output loses its end, never shows a secret's first bytes. */
#include "mask.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "common.h"

struct out {
    char *p;
    size_t cap; /* > 0 */
    size_t len;
};

static void out_init(struct out *o, char *p, size_t cap)
{
    o->p = p;
    o->cap = cap;
    o->len = 0;
    p[0] = '\0';
}

static void put(struct out *o, const char *s, size_t n)
{
    size_t room = o->cap - 1 - o->len;

    if (n > room)
        n = room;
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void put_str(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* The offset of the first byte of s[from..n) in set, or n. */
static size_t find_any(const char *s, size_t from, size_t n, const char *set)
{
    while (from < n && strchr(set, s[from]) == NULL)
        from++;
    return from;
}

/* The offset just after "scheme://" at the start of s[0..n) (RFC 3986 scheme), or 0. */
static size_t scheme_end(const char *s, size_t n)
{
    size_t i = 0;

    if (n == 0 || !isalpha((unsigned char)s[0]))
        return 0;
    while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
        i++;
    if (n - i >= 3 && memcmp(s + i, "://", 3) == 0)
        return i + 3;
    return 0;
}

/* The last '@' of s[from..end), or SIZE_MAX. */
static size_t last_at(const char *s, size_t from, size_t end)
{
    for (size_t i = end; i > from; i--) {
        if (s[i - 1] == '@')
            return i - 1;
    }
    return SIZE_MAX;
}

/* The '@' that ends the userinfo of the authority starting at auth, or SIZE_MAX. A password
 * may hold an unencoded '/', '?' or '#' (libpq and curl refuse or misread it, and their
 * messages then quote it): the furthest '@' before either kind of end is taken, and when
 * there is none, the last '@' of all (a password holding both kinds; an '@' later in a path
 * or query then hides more than the userinfo, the safe mistake). */
static size_t userinfo_end(const char *s, size_t auth, size_t n)
{
    size_t by_query = last_at(s, auth, find_any(s, auth, n, "?#"));
    size_t by_path = last_at(s, auth, find_any(s, auth, n, "/"));

    if (by_query == SIZE_MAX && by_path == SIZE_MAX)
        return last_at(s, auth, n);
    if (by_query == SIZE_MAX)
        return by_path;
    if (by_path == SIZE_MAX)
        return by_query;
    return by_query > by_path ? by_query : by_path;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Whether the query parameter name s[0..n), percent-decoded as libpq decodes it, is secret.
 * A name too long to decode here is taken as secret: hiding a value is the safe mistake. */
static bool param_is_secret(const char *s, size_t n)
{
    char name[128];
    size_t len = 0;

    for (size_t i = 0; i < n; i++) {
        int hi = i + 2 < n ? hex_value(s[i + 1]) : -1;
        int lo = i + 2 < n ? hex_value(s[i + 2]) : -1;

        if (len == sizeof(name))
            return true;
        if (s[i] == '%' && hi >= 0 && lo >= 0) {
            name[len++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            name[len++] = s[i];
        }
    }
    return mask_name_is_secret(name, len);
}

/* A query (after its '?'): name=value pairs separated by '&'. A secret value runs to the next
 * '&', fragment included, so a '#' inside a password cannot end it early. */
static void put_query(struct out *o, const char *s, size_t n)
{
    size_t i = 0;

    while (i <= n) {
        size_t end = find_any(s, i, n, "&");
        size_t eq = find_any(s, i, end, "=");

        if (eq < end && param_is_secret(s + i, eq - i)) {
            put(o, s + i, eq + 1 - i);
            put_str(o, MASK_HIDDEN);
        } else {
            put(o, s + i, end - i);
        }
        if (end < n)
            put(o, "&", 1);
        i = end + 1;
    }
}

/* Text without a scheme still has its userinfo masked ("user:pw@host/db"): libpq would take
 * it for a database name, but its error message, and a reader of the log, would not. */
static void put_url(struct out *o, const char *s, size_t n)
{
    size_t start = scheme_end(s, n), query;
    size_t at = userinfo_end(s, start, n);

    put(o, s, start);
    if (at != SIZE_MAX) {
        put_str(o, MASK_HIDDEN "@");
        start = at + 1;
    }
    query = find_any(s, start, n, "?");
    put(o, s + start, query - start);
    if (query < n) {
        put(o, "?", 1);
        put_query(o, s + query + 1, n - query - 1);
    }
}

void mask_url(const char *in, char *out, size_t cap)
{
    struct out o;

    out_init(&o, out, cap);
    put_url(&o, in, strlen(in));
}

/* The end of the key=value value at v, as libpq reads it: '...' with backslash escapes, or up
 * to the next blank with backslash escapes. An unterminated quote runs to the end. */
static const char *kv_value_end(const char *v)
{
    if (*v != '\'') {
        while (*v && !isspace((unsigned char)*v))
            v += (*v == '\\' && v[1]) ? 2 : 1;
        return v;
    }
    for (v++; *v && *v != '\''; v++) {
        if (*v == '\\' && v[1])
            v++;
    }
    return *v ? v + 1 : v;
}

/* A value that is not secret: kept, but a URL inside it is masked like any URL. */
static void put_kv_value(struct out *o, const char *v, const char *end)
{
    if (*v == '\'') {
        bool closed = end - v >= 2 && end[-1] == '\'';

        put(o, "'", 1);
        put_url(o, v + 1, (size_t)(end - v - 1 - (closed ? 1 : 0)));
        if (closed)
            put(o, "'", 1);
        return;
    }
    put_url(o, v, (size_t)(end - v));
}

static const char *skip_space(const char *p)
{
    while (isspace((unsigned char)*p))
        p++;
    return p;
}

static void put_kv(struct out *o, const char *p)
{
    while (*p) {
        const char *key = p, *eq, *v;
        size_t keylen;

        if (isspace((unsigned char)*p)) {
            put(o, p++, 1);
            continue;
        }
        while (*p && *p != '=' && !isspace((unsigned char)*p))
            p++;
        keylen = (size_t)(p - key);
        eq = skip_space(p);
        if (*eq != '=') {
            /* libpq stops here ("missing "=" after ..."): this may be a lone password. */
            put_str(o, MASK_HIDDEN);
            return;
        }
        v = skip_space(eq + 1);
        put(o, key, (size_t)(v - key));
        p = kv_value_end(v);
        if (mask_name_is_secret(key, keylen))
            put_str(o, MASK_HIDDEN);
        else
            put_kv_value(o, v, p);
    }
}

void mask_conninfo(const char *in, char *out, size_t cap)
{
    struct out o;
    size_t n = strlen(in);

    const char *s = skip_space(in);

    out_init(&o, out, cap);
    /* libpq reads " postgresql://..." as key=value and refuses it, quoting it: still a URL. */
    if (scheme_end(s, n - (size_t)(s - in)) > 0) {
        put(&o, in, (size_t)(s - in));
        put_url(&o, s, n - (size_t)(s - in));
    } else if (strchr(in, '=') == NULL) {
        put_url(&o, in, n);
    } else {
        put_kv(&o, in);
    }
}

bool mask_name_is_secret(const char *name, size_t len)
{
    static const char *const suffixes[] = {"password", "passwd", "secret", "token"};

    for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
        size_t n = strlen(suffixes[i]);

        if (len >= n && strncasecmp(name + len - n, suffixes[i], n) == 0)
            return true;
    }
    return false;
}

void mask_quoted(const char *in, char *out, size_t cap)
{
    struct out o;
    const char *q;

    out_init(&o, out, cap);
    while ((q = strchr(in, '"')) != NULL) {
        const char *close = strchr(q + 1, '"');

        put(&o, in, (size_t)(q - in));
        put_str(&o, "\"" MASK_HIDDEN "\"");
        if (close == NULL)
            return;
        in = close + 1;
    }
    put_str(&o, in);
}
