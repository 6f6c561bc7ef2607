/* The providers' tables: Xsolla signature vectors, every documented sample parsed into the
 * product's events, broken bodies answered with each provider's own status and code. */
#include <stdlib.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "provider.h"

/* A provider of provider_all by name. */
static const struct provider *named(const char *name)
{
    const struct provider *p = provider_find(name, strlen(name));

    if (p == NULL) {
        fprintf(stderr, "no provider %s\n", name);
        exit(2);
    }
    return p;
}

/* A request's headers for verify: name/value pairs, NULL-terminated. */
static const char *header(const void *req, const char *name)
{
    const char *const *h = req;

    for (; h[0] != NULL; h += 2) {
        if (strcasecmp(h[0], name) == 0)
            return h[1];
    }
    return NULL;
}

static void xsolla_signature_vectors(void)
{
    static const char body[] = "{\"notification_type\":\"order_canceled\"}";
    static const char good[] = "Signature 14a56e9eda1ef63c954b73e9c347c1e6920339d5";
    static const struct {
        const char *name, *value, *body;
        int ok;
    } cases[] = {
        {"Authorization", good, body, 1},
        {"authorization", good, body, 1}, /* header names are case-insensitive */
        {NULL, NULL, body, 0},            /* missing */
        {"Authorization", "Signature 14a56e9eda1ef63c954b73e9c347c1e6920339d6", body, 0},
        {"Authorization", "Signature 14A56E9EDA1EF63C954B73E9C347C1E6920339D5", body, 0},
        {"Authorization", "signature 14a56e9eda1ef63c954b73e9c347c1e6920339d5", body, 0},
        {"Authorization", "Signature 14a56e9eda1ef63c954b73e9c347c1e6920339d", body, 0},
        {"Authorization", "Signature  14a56e9eda1ef63c954b73e9c347c1e6920339d5", body, 0},
        {"Authorization", "Bearer 14a56e9eda1ef63c954b73e9c347c1e6920339d5", body, 0},
        {"Authorization", good, "{\"notification_type\":\"order_canceleD\"}", 0},
        {"Authorization", good, "{\"notification_type\":\"order_canceled\"} ", 0},
    };

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const char *headers[] = {cases[i].name, cases[i].value, NULL, NULL};
        char err[256] = "";
        int r = named("xsolla")->verify("test_secret_key", header,
                                        cases[i].name ? (const void *)headers
                                                      : (const void *)(headers + 2),
                                        cases[i].body, strlen(cases[i].body), err, sizeof(err));

        ASSERT_TRUE(r == 0 || r == VR_EAUTH);
        if ((r == 0) != cases[i].ok)
            fprintf(stderr, "case %zu: %s\n", i, err);
        ASSERT_EQ(r == 0, cases[i].ok);
        if (!cases[i].ok)
            ASSERT_CONTAINS(err, "Authorization");
    }
    /* The same request under another secret. */
    {
        const char *headers[] = {"Authorization", good, NULL, NULL};
        char err[256];

        ASSERT_EQ(named("xsolla")->verify("other_secret", header, headers, body, strlen(body), err,
                                          sizeof(err)),
                  VR_EAUTH);
    }
}

static void parse_file(const struct provider *p, const char *rel, struct provider_event *ev)
{
    size_t len;
    char *body = check_slurp(rel, &len);
    char err[256] = "";

    if (p->parse(body, len, ev, err, sizeof(err)) != 0)
        fprintf(stderr, "%s: %s\n", rel, err);
    free(body);
}

static const char *detail(const struct provider_event *ev, const char *name, char *out, size_t n)
{
    cJSON *d = cJSON_Parse(ev->details ? ev->details : "{}");
    const cJSON *v = cJSON_GetObjectItem(d, name);
    char *s = v ? cJSON_PrintUnformatted(v) : NULL;

    snprintf(out, n, "%s", s ? s : "(absent)");
    cJSON_free(s);
    cJSON_Delete(d);
    return out;
}

static void providers_parse_every_documented_sample(void)
{
    struct provider_event ev;
    char buf[128];

    parse_file(named("xsolla"), "xsolla/order_canceled.json", &ev);
    ASSERT_EQ(ev.kind, PROVIDER_EVENT_CANCELLATION);
    ASSERT_STR_EQ(ev.type, "order_canceled");
    ASSERT_STR_EQ(ev.order_ref, "1");
    ASSERT_STR_EQ(ev.order_status, "canceled");
    ASSERT_STR_EQ(detail(&ev, "amount", buf, sizeof(buf)), "\"2000\"");
    ASSERT_STR_EQ(detail(&ev, "currency", buf, sizeof(buf)), "\"USD\"");
    ASSERT_STR_EQ(detail(&ev, "invoice_id", buf, sizeof(buf)), "\"1054\"");
    ASSERT_STR_EQ(detail(&ev, "user_external_id", buf, sizeof(buf)), "\"id_xsolla_user\"");
    ASSERT_STR_EQ(detail(&ev, "webhook_version", buf, sizeof(buf)), "1");
    provider_event_cleanup(&ev);

    parse_file(named("xsolla"), "xsolla/order_canceled_v2.json", &ev);
    ASSERT_EQ(ev.kind, PROVIDER_EVENT_CANCELLATION);
    ASSERT_STR_EQ(ev.order_ref, "602310");
    ASSERT_STR_EQ(detail(&ev, "invoice_id", buf, sizeof(buf)), "null");
    ASSERT_STR_EQ(detail(&ev, "webhook_version", buf, sizeof(buf)), "2");
    provider_event_cleanup(&ev);

    parse_file(named("xsolla"), "xsolla/schema_sample.json", &ev);
    ASSERT_EQ(ev.kind, PROVIDER_EVENT_OTHER); /* its notification_type is the placeholder */
    ASSERT_STR_EQ(ev.type, "string");
    provider_event_cleanup(&ev);

    parse_file(named("xendbridge"), "xendbridge/order_canceled.json", &ev);
    ASSERT_EQ(ev.kind, PROVIDER_EVENT_CANCELLATION);
    ASSERT_STR_EQ(ev.type, "order_canceled");
    ASSERT_STR_EQ(ev.order_ref, "XB_0cb80c382cd343ae9600cf6b177be55a");
    ASSERT_STR_EQ(ev.order_status, "2");
    ASSERT_STR_EQ(detail(&ev, "order_id", buf, sizeof(buf)),
                  "\"844059b7-88ea-4b73-daca-08d9eb0f6c4a\"");
    ASSERT_STR_EQ(detail(&ev, "initiated_by", buf, sizeof(buf)), "0");
    ASSERT_STR_EQ(detail(&ev, "checksum_verified", buf, sizeof(buf)), "false");
    ASSERT_CONTAINS(detail(&ev, "checksum", buf, sizeof(buf)), "7423ACC55801F2ED");
    provider_event_cleanup(&ev);

    parse_file(named("xendbridge"), "xendbridge/order_payment_confirmation.json", &ev);
    ASSERT_EQ(ev.kind, PROVIDER_EVENT_OTHER);
    ASSERT_STR_EQ(ev.type, "order_payment_confirmation");
    provider_event_cleanup(&ev);

    parse_file(named("xendbridge"), "xendbridge/order_matched.json", &ev);
    ASSERT_EQ(ev.kind, PROVIDER_EVENT_OTHER);
    ASSERT_STR_EQ(ev.type, "order_matched");
    provider_event_cleanup(&ev);

    parse_file(named("atlas"), "atlas/cancelled_notification.json", &ev);
    ASSERT_EQ(ev.kind, PROVIDER_EVENT_CANCELLATION);
    ASSERT_STR_EQ(ev.order_ref, "BCNQL20201031184148568");
    ASSERT_STR_EQ(ev.error_code, "604");
    ASSERT_STR_EQ(ev.order_status, "-3");
    provider_event_cleanup(&ev);

    parse_file(named("atlas"), "atlas/void_success.json", &ev);
    ASSERT_EQ(ev.kind, PROVIDER_EVENT_VOID);
    ASSERT_STR_EQ(ev.void_code, "202505-0012");
    ASSERT_EQ(ev.void_status, 2);
    provider_event_cleanup(&ev);
}

static void xendbridge_keeps_order_statuses_outside_the_documented_range(void)
{
    static const char *const bodies[] = {
        "{\"CheckSum\":\"AB\",\"Data\":{\"OrderReference\":\"XB_1\",\"OrderStatus\":9}}",
        "{\"CheckSum\":\"AB\",\"Data\":{\"OrderReference\":\"XB_1\",\"OrderStatus\":-1}}",
        "{\"CheckSum\":\"AB\",\"Data\":{\"OrderReference\":\"XB_1\",\"OrderStatus\":7}}",
    };

    for (size_t i = 0; i < ARRAY_SIZE(bodies); i++) {
        struct provider_event ev;
        char err[128];

        ASSERT_EQ(named("xendbridge")->parse(bodies[i], strlen(bodies[i]), &ev, err, sizeof(err)),
                  0);
        ASSERT_EQ(ev.kind, PROVIDER_EVENT_OTHER);
        ASSERT_STR_EQ(ev.type, "order_status");
        provider_event_cleanup(&ev);
    }
}

/* The field table spells the envelope key Checksum, the published sample CheckSum. */
static void xendbridge_takes_the_checksum_in_either_spelling(void)
{
    static const char *const bodies[] = {
        "{\"CheckSum\":\"AB\",\"Data\":{\"OrderReference\":\"XB_1\",\"OrderStatus\":2}}",
        "{\"Checksum\":\"AB\",\"Data\":{\"OrderReference\":\"XB_1\",\"OrderStatus\":2}}",
    };

    for (size_t i = 0; i < ARRAY_SIZE(bodies); i++) {
        struct provider_event ev;
        char err[128];

        ASSERT_EQ(named("xendbridge")->parse(bodies[i], strlen(bodies[i]), &ev, err, sizeof(err)),
                  0);
        ASSERT_EQ(ev.kind, PROVIDER_EVENT_CANCELLATION);
        ASSERT_CONTAINS(ev.details, "\"checksum\":\"AB\"");
        provider_event_cleanup(&ev);
    }
}

/* Only the headers a signature check reads are kept with a delivery. */
static void providers_declare_the_headers_their_verification_reads(void)
{
    ASSERT_STR_EQ(named("xsolla")->verify_headers[0], "Authorization");
    ASSERT_TRUE(named("xsolla")->verify_headers[1] == NULL);
    for (size_t i = 0; i < provider_count; i++)
        if (provider_all[i]->verify == NULL)
            ASSERT_TRUE(provider_all[i]->verify_headers == NULL);
}

/* Atlas's cid names the account a webhook came from: kept, a number as its text, anything else
 * left out. */
static void atlas_keeps_the_cid(void)
{
    static const char with_text[] = "{\"cid\":\"acct-1\",\"type\":\"order.ticketed\"}";
    static const char with_number[] = "{\"cid\":42,\"type\":\"order.ticketed\"}";
    static const char with_list[] = "{\"cid\":[1],\"type\":\"order.ticketed\"}";
    struct provider_event ev;
    char err[128];

    ASSERT_EQ(named("atlas")->parse(with_text, strlen(with_text), &ev, err, sizeof(err)), 0);
    ASSERT_STR_EQ(ev.cid, "acct-1");
    provider_event_cleanup(&ev);
    ASSERT_EQ(named("atlas")->parse(with_number, strlen(with_number), &ev, err, sizeof(err)), 0);
    ASSERT_STR_EQ(ev.cid, "42");
    provider_event_cleanup(&ev);
    /* Neither: not kept, and the report it came with is not lost for it. */
    ASSERT_EQ(named("atlas")->parse(with_list, strlen(with_list), &ev, err, sizeof(err)), 0);
    ASSERT_TRUE(ev.cid == NULL);
    provider_event_cleanup(&ev);
}

static const struct provider *by_name(const char *name)
{
    for (size_t i = 0; i < provider_count; i++) {
        if (strcmp(provider_all[i]->name, name) == 0)
            return provider_all[i];
    }
    return NULL;
}

static void providers_answer_broken_bodies_with_their_own_codes(void)
{
    char line[1024];
    FILE *f = fopen(VR_TEST_DATA_DIR "/providers/broken.tsv", "r");
    int n = 0;

    ASSERT_TRUE(f != NULL);
    while (fgets(line, sizeof(line), f) != NULL) {
        char *field[5], *save = NULL;
        const struct provider *p;
        struct provider_event ev;
        struct provider_reply reply;
        char err[256] = "";
        cJSON *doc;

        if (line[0] == '#' || line[0] == '\n')
            continue;
        line[strcspn(line, "\n")] = '\0';
        field[0] = strtok_r(line, "\t", &save);
        for (int i = 1; i < 5; i++)
            field[i] = strtok_r(NULL, "\t", &save);
        ASSERT_TRUE(field[4] != NULL);
        p = by_name(field[0]);
        ASSERT_TRUE(p != NULL);
        ASSERT_EQ(p->parse(field[1], strlen(field[1]), &ev, err, sizeof(err)), VR_EPARSE);
        if (strstr(err, field[4]) == NULL)
            fprintf(stderr, "%s %s: %s\n", field[0], field[1], err);
        ASSERT_CONTAINS(err, field[4]);
        provider_event_cleanup(&ev);
        memset(&reply, 0, sizeof(reply));
        p->failure(PROVIDER_BAD_BODY, err, &reply);
        ASSERT_EQ(reply.status, strtol(field[2], NULL, 10));
        doc = cJSON_Parse(reply.body);
        ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "error"), "code")->valuestring,
                      field[3]);
        ASSERT_STR_EQ(
            cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "error"), "message")->valuestring, err);
        cJSON_Delete(doc);
        n++;
    }
    fclose(f);
    ASSERT_TRUE(n >= 25);
}

static void providers_answer_success_and_failures_as_documented(void)
{
    struct provider_reply r;

    memset(&r, 0, sizeof(r));
    named("xsolla")->success("applied", 7, &r);
    ASSERT_EQ(r.status, 204);
    ASSERT_STR_EQ(r.body, "");
    memset(&r, 0, sizeof(r));
    named("xsolla")->failure(PROVIDER_BAD_SIGNATURE, "bad", &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_EQ(r.body, "{\"error\":{\"code\":\"INVALID_SIGNATURE\",\"message\":\"bad\"}}");
    memset(&r, 0, sizeof(r));
    named("xsolla")->failure(PROVIDER_UNAVAILABLE, "db", &r);
    ASSERT_EQ(r.status, 500); /* Xsolla retries on 5xx */
    memset(&r, 0, sizeof(r));
    named("xsolla")->failure(PROVIDER_NOT_CONFIGURED, "no secret", &r);
    ASSERT_EQ(r.status, 503);
    memset(&r, 0, sizeof(r));
    named("xendbridge")->success("applied", 7, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body, "{\"status\":\"OK\",\"outcome\":\"applied\",\"delivery_id\":7}");
    memset(&r, 0, sizeof(r));
    named("xendbridge")->failure(PROVIDER_UNAVAILABLE, "db", &r);
    ASSERT_EQ(r.status, 503);
    ASSERT_STR_EQ(r.extra_headers, "Retry-After: 5\r\n");
    memset(&r, 0, sizeof(r));
    named("atlas")->success("duplicate", 9, &r);
    ASSERT_STR_EQ(r.body, "{\"outcome\":\"duplicate\",\"delivery_id\":9}");
    memset(&r, 0, sizeof(r));
    named("atlas")->failure(PROVIDER_BAD_MEDIA_TYPE, "ct", &r);
    ASSERT_EQ(r.status, 415);
}

static void provider_error_bodies_stay_valid_json_whatever_the_message(void)
{
    struct provider_reply r;
    char big[2000];
    cJSON *doc;

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    big[5] = '"';
    memset(&r, 0, sizeof(r));
    named("xsolla")->failure(PROVIDER_BAD_BODY, big, &r);
    doc = cJSON_Parse(r.body);
    ASSERT_TRUE(doc != NULL);
    cJSON_Delete(doc);
    memset(&r, 0, sizeof(r));
    named("xsolla")->failure(PROVIDER_BAD_BODY, "quote \" and \\ and \n", &r);
    doc = cJSON_Parse(r.body);
    ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "error"), "message")->valuestring,
                  "quote \" and \\ and \n");
    cJSON_Delete(doc);
}

CHECK_MAIN(CASE(xsolla_signature_vectors), CASE(providers_parse_every_documented_sample),
           CASE(xendbridge_keeps_order_statuses_outside_the_documented_range),
           CASE(xendbridge_takes_the_checksum_in_either_spelling),
           CASE(providers_declare_the_headers_their_verification_reads), CASE(atlas_keeps_the_cid),
           CASE(providers_answer_broken_bodies_with_their_own_codes),
           CASE(providers_answer_success_and_failures_as_documented),
           CASE(provider_error_bodies_stay_valid_json_whatever_the_message))
