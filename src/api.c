/* /v1: bearer-token check, then the routes. */
#include "api.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "atlas.h"
#include "log.h"

#define JSON "application/json"

struct api {
    struct store *st;
    char *token;
};

struct registration {
    struct httpd_request *req;
    struct atlas_case_ref ref;
    struct store_void_report rep;
};

struct api *api_new(struct store *st, const char *admin_token)
{
    struct api *a = xcalloc(1, sizeof(*a));

    a->st = st;
    a->token = xstrdup(admin_token ? admin_token : "");
    return a;
}

void api_free(struct api *a)
{
    if (a == NULL)
        return;
    free(a->token);
    free(a);
}

/* "Bearer <token>", compared in time that depends only on the lengths. */
static int check_token(const struct api *a, struct httpd_request *req)
{
    const char *h = httpd_request_header(req, "Authorization");
    size_t want = strlen(a->token);

    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
        httpd_respond_error(req, 401, "unauthorized", "Authorization: Bearer <token> required",
                            "WWW-Authenticate: Bearer realm=\"voidrecon\"\r\n");
        return -1;
    }
    h += 7;
    while (*h == ' ')
        h++;
    if (strlen(h) != want || CRYPTO_memcmp(h, a->token, want) != 0) {
        log_warn("api_forbidden", "peer=%s: wrong bearer token", httpd_request_remote_addr(req));
        httpd_respond_error(req, 403, "forbidden", "wrong bearer token", NULL);
        return -1;
    }
    return 0;
}

static void respond_object(struct httpd_request *req, int status, cJSON *obj)
{
    char *body = cJSON_PrintUnformatted(obj);

    if (body == NULL)
        abort(); /* cJSON fails only when out of memory */
    httpd_respond(req, status, JSON, NULL, body, strlen(body));
    cJSON_free(body);
    cJSON_Delete(obj);
}

static void registered(int status, const struct store_result *res, void *arg)
{
    struct registration *r = arg;
    cJSON *obj;

    if (status == VR_EUNAVAIL) {
        httpd_respond_error(r->req, 503, "unavailable", "database unavailable; retry later",
                            "Retry-After: 5\r\n");
    } else if (status != 0) {
        httpd_respond_error(r->req, 500, "internal", "the case could not be registered", NULL);
    } else {
        log_info("case_registered", "order=%s void=%s outcome=%s status=%d", r->ref.order_no,
                 r->ref.void_code, res->outcome, res->to_status);
        obj = cJSON_CreateObject();
        cJSON_AddStringToObject(obj, "order_no", r->ref.order_no);
        cJSON_AddStringToObject(obj, "void_code", r->ref.void_code);
        cJSON_AddBoolToObject(obj, "created", res->created);
        cJSON_AddStringToObject(obj, "outcome", res->outcome);
        cJSON_AddNumberToObject(obj, "status", res->to_status);
        respond_object(r->req, res->created ? 201 : 200, obj);
    }
    atlas_case_ref_cleanup(&r->ref);
    free(r);
}

/* POST /v1/cases: the order system names a case right after its void.do; a hint like a
 * webhook (source "api"), so registering twice, or after Atlas moved on, changes nothing. */
static void register_case(struct api *a, struct httpd_request *req)
{
    struct registration *r = xcalloc(1, sizeof(*r));
    char err[256];
    size_t len;
    const char *body = httpd_request_body(req, &len);

    if (atlas_case_ref_parse(body, len, &r->ref, err, sizeof(err)) != 0) {
        httpd_respond_error(req, 400, "invalid_payload", err, NULL);
        free(r);
        return;
    }
    r->req = req;
    r->rep = (struct store_void_report){
        .order_no = r->ref.order_no,
        .void_code = r->ref.void_code,
        .status = r->ref.void_status,
        .source = VOIDCASE_SOURCE_API,
    };
    store_apply_void(a->st, NULL, &r->rep, registered, r);
}

void api_handle(struct api *a, struct httpd_request *req)
{
    const char *path = httpd_request_path(req);

    if (a->token[0] == '\0') {
        httpd_respond_error(req, 404, "api_disabled",
                            "the /v1 API is disabled: set VOIDRECON_ADMIN_TOKEN", NULL);
        return;
    }
    if (check_token(a, req) != 0)
        return;
    if (strcmp(path, "/v1/cases") == 0) {
        if (strcmp(httpd_request_method(req), "POST") != 0) {
            httpd_respond_error(req, 405, "method_not_allowed", "use POST", "Allow: POST\r\n");
            return;
        }
        register_case(a, req);
        return;
    }
    httpd_respond_error(req, 404, "not_found", "no such endpoint", NULL);
}
