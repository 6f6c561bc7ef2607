/* Alert bodies and their Standard Webhooks signatures, against the specification's vector. */
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "alert.h"
#include "check.h"
#include "utf8.h"

static void sign_with(const char *secret, const char *id, int64_t ts, const char *body, char *out,
                      size_t cap)
{
    unsigned char *key = NULL;
    size_t len = 0;

    if (alert_key_parse(secret, &key, &len) != 0) {
        snprintf(out, cap, "(bad secret)");
        return;
    }
    alert_sign(key, len, id, ts, body, strlen(body), out, cap);
    free(key);
}

static void alert_signature_matches_the_standard_webhooks_vector(void)
{
    char sig[128];

    sign_with("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
              "{\"test\": 2432232314}", sig, sizeof(sig));
    ASSERT_STR_EQ(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

static void alert_signature_changes_with_every_input(void)
{
    static const char secret[] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    char base[128], other[128];

    sign_with(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, "{\"test\": 2432232314}", base,
              sizeof(base));
    sign_with(secret, "msg_p5jXN8AQM9LWM0D4loKWxJel", 1614265330, "{\"test\": 2432232314}", other,
              sizeof(other));
    ASSERT_TRUE(strcmp(base, other) != 0);
    sign_with(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, "{\"test\": 2432232314}", other,
              sizeof(other));
    ASSERT_TRUE(strcmp(base, other) != 0);
    sign_with(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, "{\"test\": 2432232315}", other,
              sizeof(other));
    ASSERT_TRUE(strcmp(base, other) != 0);
    sign_with("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSx", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
              "{\"test\": 2432232314}", other, sizeof(other));
    ASSERT_TRUE(strcmp(base, other) != 0);
}

static void alert_keys_are_decoded_as_the_libraries_do(void)
{
    unsigned char *key = NULL;
    size_t len = 0;

    ASSERT_EQ(alert_key_parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &key, &len), 0);
    ASSERT_EQ(len, 24);
    free(key);
    ASSERT_EQ(alert_key_parse("whsec_QUJD", &key, &len), 0); /* "ABC" */
    ASSERT_EQ(len, 3);
    ASSERT_TRUE(memcmp(key, "ABC", 3) == 0);
    free(key);
    ASSERT_EQ(alert_key_parse("whsec_QUI", &key, &len), 0); /* "AB", padding left out */
    ASSERT_EQ(len, 2);
    ASSERT_TRUE(memcmp(key, "AB", 2) == 0);
    free(key);
    ASSERT_EQ(alert_key_parse("whsec_not base64!", &key, &len), VR_EINVAL);
    ASSERT_EQ(alert_key_parse("whsec_", &key, &len), VR_EINVAL);
    ASSERT_EQ(alert_key_parse("plain-secret", &key, &len), 0);
    ASSERT_EQ(len, 12);
    ASSERT_TRUE(memcmp(key, "plain-secret", 12) == 0);
    free(key);
}

static void alert_body_carries_the_payload_and_a_line_of_text(void)
{
    struct alert_row a = {
        .id = 42,
        .kind = "void_rejected",
        .order_no = "TESTA20250512100600259",
        .void_code = "202505-0012",
        .payload = "{\"status\":4,\"status_name\":\"REJECTED\",\"message\":\"Automatic void "
                   "processing failed after 10 retries.\",\"cancel_reason\":null,"
                   "\"followup_reason\":\"rejected\",\"id\":999}",
        .created_at = "2026-11-29T20:00:00Z",
    };
    char *body = alert_body(&a);
    cJSON *j = cJSON_Parse(body);

    ASSERT_TRUE(j != NULL);
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "type")->valuestring, "voidrecon.void_rejected");
    ASSERT_EQ(cJSON_GetObjectItem(j, "id")->valueint, 42); /* the payload cannot override it */
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "kind")->valuestring, "void_rejected");
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "order_no")->valuestring, "TESTA20250512100600259");
    ASSERT_EQ(cJSON_GetObjectItem(j, "status")->valueint, 4);
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "timestamp")->valuestring, "2026-11-29T20:00:00Z");
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "text")->valuestring,
                  "[voidrecon] Void REJECTED: order TESTA20250512100600259, void 202505-0012: "
                  "Automatic void processing failed after 10 retries.");
    cJSON_Delete(j);
    free(body);
}

static void alert_text_fits_every_kind(void)
{
    static const char *const cases[][3] = {
        {"void_conflict", "{\"status_name\":\"VOIDED\"}",
         "Void conflict: order O, void V: reports disagree (case at VOIDED)"},
        {"void_stuck", "{\"open_since\":\"2026-11-28T10:00:00Z\"}",
         "Void stuck: order O, void V still open since 2026-11-28T10:00:00Z"},
        {"void_poll_failing", "{\"poll_failures\":10,\"message\":\"HTTP 502 from Atlas\"}",
         "Polling Atlas fails: order O, void V: 10 failures in a row: HTTP 502 from Atlas"},
        {"order_cancelled",
         "{\"provider\":\"atlas\",\"error_code\":\"604\",\"error_message\":\"Payment declined\"}",
         "Order cancelled by atlas: order O: 604 Payment declined"},
        {"void_rejected", "not json", "Void REJECTED: order O, void V: no reason given"},
        {"atlas_failing",
         "{\"resolved\":false,\"cause\":\"credentials\",\"message\":\"Atlas status 900: "
         "Unauthorized\"}",
         "Atlas FAILING for every case (credentials): Atlas status 900: Unauthorized; polling "
         "paused"},
        {"atlas_failing", "{\"resolved\":true,\"cause\":\"credentials\",\"duration_s\":3600}",
         "RESOLVED: Atlas answers polls again after 3600 s (credentials): polling resumed"},
        {"webhooks_silent",
         "{\"resolved\":false,\"message\":\"no Atlas webhook since 2026-12-01T10:00:00Z\"}",
         "Atlas webhooks SILENT: no Atlas webhook since 2026-12-01T10:00:00Z; check the webhook "
         "URL registered in Atlas"},
        {"webhooks_silent", "{\"resolved\":true,\"duration_s\":60}",
         "RESOLVED: Atlas webhooks arrive again (silent for 60 s)"},
    };

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct alert_row a = {.id = 1,
                              .kind = cases[i][0],
                              .order_no = "O",
                              .void_code = "V",
                              .payload = cases[i][1],
                              .created_at = "t"};
        char *body = alert_body(&a);

        ASSERT_CONTAINS(body, cases[i][2]);
        free(body);
    }
}

/* A long message of multi-byte characters is cut between characters, not inside one: a strict
 * receiver refuses text that is not UTF-8, and the alert would be retried forever. */
static void alert_text_is_cut_between_characters(void)
{
    char payload[4096] = "{\"message\":\"";
    struct alert_row a = {.id = 1,
                          .kind = "void_rejected",
                          .order_no = "O",
                          .void_code = "V",
                          .payload = payload,
                          .created_at = "t"};
    const cJSON *text;
    char *body;
    cJSON *j;
    size_t n = strlen(payload);

    for (int i = 0; i < 500; i++, n += 3)
        memcpy(payload + n, "\xe4\xb8\xad", 3); /* 1,500 bytes of one CJK character */
    memcpy(payload + n, "\"}", 3);
    body = alert_body(&a);
    j = cJSON_Parse(body);
    ASSERT_TRUE(j != NULL);
    text = cJSON_GetObjectItem(j, "text");
    ASSERT_TRUE(cJSON_IsString(text));
    ASSERT_TRUE(strlen(text->valuestring) < 1024);
    ASSERT_TRUE(utf8_text_ok(text->valuestring, strlen(text->valuestring)));
    cJSON_Delete(j);
    free(body);
}

CHECK_MAIN(CASE(alert_signature_matches_the_standard_webhooks_vector),
           CASE(alert_signature_changes_with_every_input),
           CASE(alert_keys_are_decoded_as_the_libraries_do),
           CASE(alert_body_carries_the_payload_and_a_line_of_text),
           CASE(alert_text_fits_every_kind), CASE(alert_text_is_cut_between_characters))
