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

/* A payload whose message is n copies of piece (at most 8 KiB in all), as JSON text. */
static void long_message(char *out, size_t cap, const char *head, const char *piece, int n)
{
    size_t len = (size_t)snprintf(out, cap, "{%s\"message\":\"", head);

    for (int i = 0; i < n && len + strlen(piece) + 3 < cap; i++, len += strlen(piece))
        memcpy(out + len, piece, strlen(piece));
    memcpy(out + len, "\"}", 3);
}

/* Every text of a Slack message is within Slack's section limits, escaped, and UTF-8. */
static void alert_slack_message_keeps_to_the_section_limits(void)
{
    static char payload[8192];
    struct alert_row a = {.id = 7,
                          .kind = "void_rejected",
                          .order_no = "O<1>&",
                          .void_code = "V",
                          .payload = payload,
                          .created_at = "2026-12-01T00:00:00.000Z"};
    const cJSON *blocks, *head, *fields, *f;
    char *body;
    cJSON *j;

    long_message(payload, sizeof(payload),
                 "\"status\":4,\"status_name\":\"REJECTED\",\"followup_reason\":\"rejected\",",
                 "<\xe4\xb8\xad&", 1500);
    body = alert_slack_body(&a);
    j = cJSON_Parse(body);
    ASSERT_TRUE(j != NULL);
    ASSERT_TRUE(strchr(cJSON_GetObjectItem(j, "text")->valuestring, '<') == NULL);
    ASSERT_CONTAINS(cJSON_GetObjectItem(j, "text")->valuestring, "order O&lt;1&gt;&amp;, void V");
    blocks = cJSON_GetObjectItem(j, "blocks");
    ASSERT_EQ(cJSON_GetArraySize(blocks), 2);
    head = cJSON_GetObjectItem(cJSON_GetArrayItem(blocks, 0), "text");
    ASSERT_TRUE(strlen(cJSON_GetObjectItem(head, "text")->valuestring) <= 3000);
    fields = cJSON_GetObjectItem(cJSON_GetArrayItem(blocks, 1), "fields");
    ASSERT_TRUE(cJSON_GetArraySize(fields) >= 6 && cJSON_GetArraySize(fields) <= 10);
    cJSON_ArrayForEach(f, fields)
    {
        const char *t = cJSON_GetObjectItem(f, "text")->valuestring;

        ASSERT_STR_EQ(cJSON_GetObjectItem(f, "type")->valuestring, "mrkdwn");
        ASSERT_TRUE(strlen(t) <= 2000);
        ASSERT_TRUE(utf8_text_ok(t, strlen(t)));
        ASSERT_TRUE(strchr(t, '<') == NULL && strchr(t, '>') == NULL);
    }
    cJSON_Delete(j);
    free(body);
}

/* A trigger and the alert that resolves it share one dedup_key; the resolve carries nothing
 * else but the routing key. */
static void alert_pagerduty_resolve_shares_the_dedup_key(void)
{
    struct alert_row raise = {.id = 41,
                              .kind = "void_stuck",
                              .order_no = "O",
                              .void_code = "V",
                              .payload = "{\"followup_reason\":\"stuck\",\"status\":1}",
                              .created_at = "2026-12-01T00:00:00.000Z"};
    struct alert_row end = {.id = 57,
                            .kind = "void_stuck",
                            .order_no = "O",
                            .void_code = "V",
                            .payload = "{\"resolved\":true,\"resolved_by\":\"reconciled\"}",
                            .created_at = "2026-12-01T00:10:00.000Z",
                            .resolves_id = 41};
    char *t = alert_pagerduty_body(&raise, "KEY", "host-1");
    char *r = alert_pagerduty_body(&end, "KEY", "host-1");
    cJSON *tj = cJSON_Parse(t), *rj = cJSON_Parse(r);
    const cJSON *p = cJSON_GetObjectItem(tj, "payload");

    ASSERT_STR_EQ(cJSON_GetObjectItem(tj, "event_action")->valuestring, "trigger");
    ASSERT_STR_EQ(cJSON_GetObjectItem(rj, "event_action")->valuestring, "resolve");
    ASSERT_STR_EQ(cJSON_GetObjectItem(tj, "dedup_key")->valuestring, "voidrecon:void_stuck:41");
    ASSERT_STR_EQ(cJSON_GetObjectItem(rj, "dedup_key")->valuestring, "voidrecon:void_stuck:41");
    ASSERT_STR_EQ(cJSON_GetObjectItem(rj, "routing_key")->valuestring, "KEY");
    ASSERT_EQ(cJSON_GetArraySize(rj), 3);
    ASSERT_STR_EQ(cJSON_GetObjectItem(p, "severity")->valuestring, "warning");
    ASSERT_STR_EQ(cJSON_GetObjectItem(p, "source")->valuestring, "host-1");
    ASSERT_STR_EQ(cJSON_GetObjectItem(p, "timestamp")->valuestring, "2026-12-01T00:00:00.000Z");
    ASSERT_EQ(cJSON_GetObjectItem(cJSON_GetObjectItem(p, "custom_details"), "status")->valueint, 1);
    cJSON_Delete(tj);
    cJSON_Delete(rj);
    free(t);
    free(r);
}

/* payload.summary holds 1024 characters: a longer message is cut before, between
 * characters. */
static void alert_pagerduty_summary_fits_its_limit(void)
{
    static char payload[8192];
    struct alert_row a = {.id = 1,
                          .kind = "void_rejected",
                          .order_no = "O",
                          .void_code = "V",
                          .payload = payload,
                          .created_at = "t"};
    char *body;
    cJSON *j;
    const char *summary;

    long_message(payload, sizeof(payload), "", "\xe4\xb8\xad", 2000);
    body = alert_pagerduty_body(&a, "KEY", "h");
    j = cJSON_Parse(body);
    summary = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "payload"), "summary")->valuestring;
    ASSERT_TRUE(strlen(summary) <= 1023);
    ASSERT_TRUE(utf8_text_ok(summary, strlen(summary)));
    cJSON_Delete(j);
    free(body);
}

static void alert_formats_parse_by_name(void)
{
    enum alert_format f = ALERT_FORMAT_STANDARD;

    ASSERT_EQ(alert_format_parse("pagerduty", &f), 0);
    ASSERT_EQ(f, ALERT_FORMAT_PAGERDUTY);
    ASSERT_EQ(alert_format_parse("slack", &f), 0);
    ASSERT_EQ(f, ALERT_FORMAT_SLACK);
    ASSERT_EQ(alert_format_parse("Slack", &f), VR_EINVAL);
    ASSERT_EQ(alert_format_parse("", &f), VR_EINVAL);
}

CHECK_MAIN(CASE(alert_signature_matches_the_standard_webhooks_vector),
           CASE(alert_signature_changes_with_every_input),
           CASE(alert_keys_are_decoded_as_the_libraries_do),
           CASE(alert_body_carries_the_payload_and_a_line_of_text),
           CASE(alert_text_fits_every_kind), CASE(alert_text_is_cut_between_characters),
           CASE(alert_slack_message_keeps_to_the_section_limits),
           CASE(alert_pagerduty_resolve_shares_the_dedup_key),
           CASE(alert_pagerduty_summary_fits_its_limit), CASE(alert_formats_parse_by_name))
