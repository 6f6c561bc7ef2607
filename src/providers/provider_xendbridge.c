/* XendBridge: {"CheckSum" (or "Checksum"), "Data"} with PascalCase keys and no event type; the kind
 * is read from Data's shape. How CheckSum is computed is not published, so it is kept, not checked,
 * and the cancellations are marked unverified: the path token and allowlist are the guards. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "provider_int.h"

#define MAX_CHECKSUM_BYTES 1024
/* OrderStatus Cancelled = 2 (Submitted 1 ... Completed 7; other values are kept as given). */
#define ORDER_STATUS_CANCELLED 2

static int parse_order_status(const cJSON *data, const char *checksum, struct provider_event *ev,
                              char *err, size_t errlen)
{
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(data, "OrderReference");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(data, "OrderId");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(data, "OrderStatus");
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(data, "InitiatedBy");
    cJSON *details;
    char num[32];

    if (ref == NULL)
        return provider_fail(err, errlen, "Data.OrderReference", "missing");
    if (!cJSON_IsString(ref) || ref->valuestring[0] == '\0' ||
        strlen(ref->valuestring) > PROVIDER_MAX_REF_BYTES)
        return provider_fail(err, errlen, "Data.OrderReference",
                             "expected a string of 1 to 128 bytes");
    if (id != NULL && !cJSON_IsNull(id) && !cJSON_IsString(id))
        return provider_fail(err, errlen, "Data.OrderId", "expected a string");
    if (!cJSON_IsNumber(status) || status->valuedouble != floor(status->valuedouble) ||
        fabs(status->valuedouble) > 1e9)
        return provider_fail(err, errlen, "Data.OrderStatus", "expected an integer");
    snprintf(num, sizeof(num), "%.0f", status->valuedouble);
    if (status->valuedouble != ORDER_STATUS_CANCELLED) {
        ev->type = xstrdup("order_status");
        ev->kind = PROVIDER_EVENT_OTHER;
        return 0;
    }
    details = cJSON_CreateObject();
    if (cJSON_IsString(id))
        cJSON_AddStringToObject(details, "order_id", cJSON_GetStringValue(id));
    cJSON_AddNumberToObject(details, "order_status", status->valuedouble);
    /* InitiatedBy is in the sample but not the field table: its meaning is unpublished. */
    cJSON_AddItemToObject(details, "initiated_by",
                          by != NULL ? cJSON_Duplicate(by, true) : cJSON_CreateNull());
    cJSON_AddStringToObject(details, "checksum", checksum);
    cJSON_AddBoolToObject(details, "checksum_verified", false);
    ev->type = xstrdup("order_canceled");
    ev->kind = PROVIDER_EVENT_CANCELLATION;
    ev->order_ref = xstrdup(ref->valuestring);
    ev->order_status = xstrdup(num);
    ev->details = vr_json_print(details);
    cJSON_Delete(details);
    return 0;
}

static int xendbridge_parse(const char *body, size_t len, struct provider_event *ev, char *err,
                            size_t errlen)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *sum, *table_sum, *data;
    int r = 0;

    memset(ev, 0, sizeof(*ev));
    if (root == NULL)
        return provider_fail(err, errlen, "body", "not valid JSON");
    /* The field table spells the key Checksum, the published sample CheckSum: either is
     * taken, but not both, which would leave it open which one was meant. */
    sum = cJSON_GetObjectItemCaseSensitive(root, "CheckSum");
    table_sum = cJSON_GetObjectItemCaseSensitive(root, "Checksum");
    data = cJSON_GetObjectItemCaseSensitive(root, "Data");
    if (!cJSON_IsObject(root))
        r = provider_fail(err, errlen, "body", "expected a JSON object {\"CheckSum\", \"Data\"}");
    else if (sum != NULL && table_sum != NULL)
        r = provider_fail(err, errlen, "CheckSum", "given twice, as CheckSum and as Checksum");
    else if ((sum = sum != NULL ? sum : table_sum) == NULL)
        r = provider_fail(err, errlen, "CheckSum", "missing (nor Checksum)");
    else if (!cJSON_IsString(sum) || strlen(sum->valuestring) > MAX_CHECKSUM_BYTES)
        r = provider_fail(err, errlen, "CheckSum", "expected a string of at most 1024 bytes");
    else if (data == NULL)
        r = provider_fail(err, errlen, "Data", "missing");
    else if (!cJSON_IsObject(data))
        r = provider_fail(err, errlen, "Data", "expected a JSON object");
    else if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(data, "OrderDetails")))
        ev->type = xstrdup("order_payment_confirmation");
    else if (cJSON_GetObjectItemCaseSensitive(data, "P2POrderStatus") != NULL)
        ev->type = xstrdup("order_matched");
    else if (cJSON_GetObjectItemCaseSensitive(data, "OrderStatus") != NULL)
        r = parse_order_status(data, sum->valuestring, ev, err, errlen);
    else
        r = provider_fail(
            err, errlen, "Data",
            "not a documented XendBridge notification (no OrderStatus, OrderDetails or "
            "P2POrderStatus)");
    if (r == 0 && ev->details == NULL)
        ev->kind = PROVIDER_EVENT_OTHER;
    cJSON_Delete(root);
    if (r != 0)
        provider_event_cleanup(ev);
    return r;
}

static void xendbridge_success(const char *outcome, long long delivery_id,
                               struct provider_reply *out)
{
    out->status = 200;
    out->content_type = "application/json";
    snprintf(out->body, sizeof(out->body),
             "{\"status\":\"OK\",\"outcome\":\"%s\",\"delivery_id\":%lld}", outcome, delivery_id);
}

const struct provider provider_xendbridge = {
    .name = "xendbridge",
    .needs_secret = false,
    .verifies_senders = false,
    .verify = NULL,
    .parse = xendbridge_parse,
    .success = xendbridge_success,
    .failure = provider_json_failure,
};
