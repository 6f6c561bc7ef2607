/* CLI operations: a private loop, a one-connection pool and the store, run to completion. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "atlas.h"
#include "db.h"
#include "log.h"
#include "store.h"

struct cli_run {
    int status;
    bool done;
    struct store_result res;
};

static void applied(int status, const struct store_result *res, void *arg)
{
    struct cli_run *run = arg;

    run->status = status;
    run->done = true;
    if (status == 0)
        run->res = *res;
}

int cli_cases_add(const struct config *cfg, const char *order_no, const char *void_code, int status,
                  bool json, FILE *out)
{
    struct store_void_report rep = {
        .order_no = order_no,
        .void_code = void_code,
        .status = status,
        .source = VOIDCASE_SOURCE_API,
    };
    struct cli_run run = {0};
    struct store *st = NULL;
    struct db *db = NULL;
    uv_loop_t loop;
    int rc = 1;

    if (order_no[0] == '\0' || void_code[0] == '\0' || strlen(order_no) > ATLAS_MAX_KEY_BYTES ||
        strlen(void_code) > ATLAS_MAX_KEY_BYTES) {
        log_error("cases_add_invalid", "ORDER_NO and VOID_CODE must be 1 to %d bytes",
                  ATLAS_MAX_KEY_BYTES);
        return 2;
    }
    uv_loop_init(&loop);
    if (db_new(&db, &loop,
               &(struct db_config){.conninfo = cfg->database_url,
                                   .pool_size = 1,
                                   .query_timeout_ms = cfg->db_timeout_ms,
                                   .acquire_timeout_ms = cfg->db_timeout_ms}) != 0) {
        log_error("config_invalid", "VOIDRECON_DATABASE_URL: not a valid connection string");
        uv_loop_close(&loop);
        return 2;
    }
    st = store_new(db, &(struct store_config){.poll_first_ms = cfg->poll_first_ms,
                                              .poll_confirm_ms = cfg->poll_confirm_ms});
    store_apply_void(st, NULL, &rep, applied, &run);
    while (!run.done && uv_run(&loop, UV_RUN_ONCE) != 0)
        ;
    db_close(db, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    store_free(st);
    db_free(db);
    uv_loop_close(&loop);

    if (!run.done || run.status != 0) {
        log_error("cases_add_failed", "order=%s void=%s: %s", order_no, void_code,
                  vr_strerror(run.done ? run.status : VR_EUNAVAIL));
        return rc;
    }
    if (json) {
        cJSON *obj = cJSON_CreateObject();
        char *s;

        cJSON_AddStringToObject(obj, "order_no", order_no);
        cJSON_AddStringToObject(obj, "void_code", void_code);
        cJSON_AddBoolToObject(obj, "created", run.res.created);
        cJSON_AddStringToObject(obj, "outcome", run.res.outcome);
        cJSON_AddNumberToObject(obj, "status", run.res.to_status);
        s = cJSON_PrintUnformatted(obj);
        fprintf(out, "%s\n", s);
        cJSON_free(s);
        cJSON_Delete(obj);
    } else {
        fprintf(out, "%s %s: %s (%s), status %d %s\n", order_no, void_code, run.res.outcome,
                run.res.created ? "registered" : "already known", run.res.to_status,
                voidcase_status_name(run.res.to_status));
    }
    return 0;
}
