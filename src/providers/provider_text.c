/* What every provider's body must be before any field of it is kept: JSON whose strings are
 * UTF-8 without NUL (PostgreSQL stores no other text), and whose objects name each key once
 * (PostgreSQL's jsonb keeps the last of two, the parser the first: a reader of the stored body
 * would see another value than the one applied). Failures name the field by its path. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "provider_int.h"
#include "utf8.h"

#define PATH_MAX_BYTES  96 /* the longest field path a message shows */
#define KEY_SHOWN_BYTES 40 /* of each key in it */
#define DEPTH_TRACKED   16 /* containers deeper than this are named by their ancestor */

/* The path of the field being read: "data.orderNo". */
struct path {
    char text[PATH_MAX_BYTES];
    size_t len;
};

/* Cuts the path back to its first at bytes, then appends ".key". */
static void path_set_key(struct path *p, size_t at, const char *key, size_t len)
{
    size_t room;

    p->len = at;
    if (at > 0 && at + 1 < sizeof(p->text))
        p->text[p->len++] = '.';
    room = sizeof(p->text) - 1 - p->len;
    len = utf8_cut(key, len, room < KEY_SHOWN_BYTES ? room : KEY_SHOWN_BYTES);
    memcpy(p->text + p->len, key, len);
    p->len += len;
    p->text[p->len] = '\0';
}

static void path_cut(struct path *p, size_t at)
{
    p->len = at;
    p->text[at] = '\0';
}

static const char *path_name(const struct path *p)
{
    return p->len > 0 ? p->text : "body";
}

/* The end of the string whose opening quote is at body[i], and whether it holds \u0000. */
static size_t string_end(const char *body, size_t len, size_t i, bool *nul)
{
    size_t j = i + 1;

    *nul = false;
    while (j < len && body[j] != '"') {
        if (body[j] == '\\' && j + 1 < len) {
            if (body[j + 1] == 'u' && j + 6 <= len && memcmp(body + j + 2, "0000", 4) == 0)
                *nul = true;
            j++;
        }
        j++;
    }
    return j;
}

static bool followed_by_colon(const char *body, size_t len, size_t j)
{
    while (j < len && (body[j] == ' ' || body[j] == '\t' || body[j] == '\r' || body[j] == '\n'))
        j++;
    return j < len && body[j] == ':';
}

/* The string whose opening quote is body[i]: 0 with its key set in p (at base) when it is a
 * key, else VR_EPARSE when it is not storable text. *end gets its closing quote. */
static int check_string(const char *body, size_t len, size_t i, struct path *p, size_t base,
                        bool track, size_t *end, char *err, size_t errlen)
{
    bool nul, ok;

    *end = string_end(body, len, i, &nul);
    ok = utf8_text_ok(body + i + 1, *end - i - 1) && !nul;
    if (followed_by_colon(body, len, *end + 1)) {
        if (!ok)
            return provider_fail(err, errlen, path_name(p),
                                 nul ? "a key holds U+0000" : "a key is not valid UTF-8");
        if (track)
            path_set_key(p, base, body + i + 1, *end - i - 1);
        return 0;
    }
    if (!ok)
        return provider_fail(err, errlen, path_name(p),
                             nul ? "holds U+0000 (NUL), which cannot be stored"
                                 : "not valid UTF-8 text");
    return 0;
}

int provider_check_text(const char *body, size_t len, char *err, size_t errlen)
{
    struct path p;
    size_t depth = 0;               /* containers open */
    size_t base[DEPTH_TRACKED + 1]; /* path length where each open container began */
    int r;

    memset(&p, 0, sizeof(p));
    base[0] = 0;
    for (size_t i = 0; i < len; i++) {
        bool track = depth <= DEPTH_TRACKED;

        if (body[i] == '{' || body[i] == '[') {
            if (++depth <= DEPTH_TRACKED)
                base[depth] = p.len;
        } else if (body[i] == '}' || body[i] == ']') {
            if (depth > 0 && track)
                path_cut(&p, base[depth]);
            if (depth > 0)
                depth--;
        } else if (body[i] == '"') {
            if ((r = check_string(body, len, i, &p, track ? base[depth] : 0, track, &i, err,
                                  errlen)) != 0)
                return r;
        }
    }
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys of one object, each once; path names the object. */
static int object_keys_once(const cJSON *obj, struct path *p, char *err, size_t errlen)
{
    size_t n = 0, i = 0;
    const cJSON *child;
    const char **names;
    int r = 0;

    cJSON_ArrayForEach(child, obj) n++;
    names = xcalloc(n + 1, sizeof(*names));
    cJSON_ArrayForEach(child, obj) names[i++] = child->string != NULL ? child->string : "";
    qsort(names, n, sizeof(*names), name_cmp);
    for (i = 1; i < n && r == 0; i++) {
        if (strcmp(names[i - 1], names[i]) == 0) {
            path_set_key(p, p->len, names[i], strlen(names[i]));
            r = provider_fail(err, errlen, path_name(p), "duplicate key");
        }
    }
    free(names);
    return r;
}

/* Depth first without recursion: next[d] is the next member to visit at depth d, at[d] the
 * path length of the container it belongs to. cJSON refuses input nested deeper than
 * CJSON_NESTING_LIMIT, which bounds d. */
int provider_check_keys(const cJSON *root, char *err, size_t errlen)
{
    const cJSON **next = xcalloc(CJSON_NESTING_LIMIT + 2, sizeof(const cJSON *));
    size_t *at = xcalloc(CJSON_NESTING_LIMIT + 2, sizeof(*at));
    struct path p;
    size_t d = 0;
    int r = 0;

    memset(&p, 0, sizeof(p));
    if (cJSON_IsObject(root))
        r = object_keys_once(root, &p, err, errlen);
    next[0] = (cJSON_IsObject(root) || cJSON_IsArray(root)) ? root->child : NULL;
    while (r == 0) {
        const cJSON *c = next[d];

        if (c == NULL) {
            if (d == 0)
                break;
            d--;
            continue;
        }
        next[d] = c->next;
        if ((!cJSON_IsObject(c) && !cJSON_IsArray(c)) || d + 1 > CJSON_NESTING_LIMIT)
            continue;
        path_cut(&p, at[d]);
        if (c->string != NULL)
            path_set_key(&p, at[d], c->string, strlen(c->string));
        if (cJSON_IsObject(c) && (r = object_keys_once(c, &p, err, errlen)) != 0)
            break;
        d++;
        at[d] = p.len;
        next[d] = c->child;
    }
    free(next);
    free(at);
    return r;
}
