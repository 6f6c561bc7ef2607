/* Atlas webhook parsing: the documents' samples and broken variants. */
#include "atlas.h"
#include "check.h"
#include "utf8.h"

static char *slurp(const char *name, size_t *len)
{
    char rel[256];

    snprintf(rel, sizeof(rel), "atlas/%s", name);
    return check_slurp(rel, len);
}

static int parse_file(const char *name, struct atlas_event *ev, char *err, size_t errlen)
{
    size_t len;
    char *body = slurp(name, &len);
    int r = atlas_event_parse(body, len, ev, err, errlen);
    free(body);
    return r;
}

static void atlas_parses_void_success_sample(void)
{
    struct atlas_event ev;
    char err[256] = "";

    ASSERT_EQ(parse_file("void_success.json", &ev, err, sizeof(err)), 0);
    ASSERT_EQ(ev.kind, ATLAS_EVENT_VOID);
    ASSERT_STR_EQ(ev.type, "order.void");
    ASSERT_STR_EQ(ev.order_no, "TESTA20250512100600259");
    ASSERT_STR_EQ(ev.void_code, "202505-0012");
    ASSERT_EQ(ev.void_status, 2);
    ASSERT_STR_EQ(ev.message, "Void successful and confirmed by the airline.");
    atlas_event_cleanup(&ev);
}

static void atlas_parses_void_rejection_and_chinese_samples(void)
{
    struct atlas_event ev;
    char err[256] = "";

    ASSERT_EQ(parse_file("void_retry_failure.json", &ev, err, sizeof(err)), 0);
    ASSERT_EQ(ev.void_status, 4);
    ASSERT_CONTAINS(ev.message, "after 10 retries");
    atlas_event_cleanup(&ev);
    ASSERT_EQ(parse_file("void_zh.json", &ev, err, sizeof(err)), 0);
    ASSERT_STR_EQ(ev.message, "废票成功，航司已确认");
    atlas_event_cleanup(&ev);
}

static void atlas_void_message_is_optional(void)
{
    static const char body[] =
        "{\"type\":\"order.void\",\"data\":{\"orderNo\":\"A\",\"voidCode\":\"V\",\"voidStatus\":0,"
        "\"message\":null}}";
    struct atlas_event ev;
    char err[256] = "";

    ASSERT_EQ(atlas_event_parse(body, sizeof(body) - 1, &ev, err, sizeof(err)), 0);
    ASSERT_TRUE(ev.message == NULL);
    ASSERT_EQ(ev.void_status, 0);
    atlas_event_cleanup(&ev);
}

static void atlas_parses_both_cancelled_spellings(void)
{
    static const char schema_body[] =
        "{\"type\":\"order.cancelled\",\"data\":{\"orderNo\":\"B1\",\"orderStatus\":-3,"
        "\"ticketErrorCode\":\"633\",\"ticketErrorMessage\":\"Payment declined by airline.\"}}";
    struct atlas_event ev;
    char err[256] = "";

    ASSERT_EQ(parse_file("cancelled_notification.json", &ev, err, sizeof(err)), 0);
    ASSERT_EQ(ev.kind, ATLAS_EVENT_CANCELLED);
    ASSERT_STR_EQ(ev.order_no, "BCNQL20201031184148568");
    ASSERT_STR_EQ(ev.error_code, "604");
    ASSERT_STR_EQ(ev.error_message, "Payment declined by airline");
    ASSERT_TRUE(ev.has_order_status);
    ASSERT_EQ(ev.order_status, -3);
    atlas_event_cleanup(&ev);

    ASSERT_EQ(parse_file("cancelled_hybrid_guide.json", &ev, err, sizeof(err)), 0);
    ASSERT_STR_EQ(ev.order_no, "{canceled order no}");
    ASSERT_TRUE(!ev.has_order_status);
    atlas_event_cleanup(&ev);

    ASSERT_EQ(atlas_event_parse(schema_body, sizeof(schema_body) - 1, &ev, err, sizeof(err)), 0);
    ASSERT_STR_EQ(ev.error_code, "633");
    ASSERT_STR_EQ(ev.error_message, "Payment declined by airline.");
    atlas_event_cleanup(&ev);
}

static void atlas_keeps_other_types_as_other(void)
{
    struct atlas_event ev;
    char err[256] = "";

    ASSERT_EQ(parse_file("ticketed.json", &ev, err, sizeof(err)), 0);
    ASSERT_EQ(ev.kind, ATLAS_EVENT_OTHER);
    ASSERT_STR_EQ(ev.type, "order.ticketed");
    atlas_event_cleanup(&ev);
    ASSERT_EQ(parse_file("airline_status.json", &ev, err, sizeof(err)), 0);
    ASSERT_STR_EQ(ev.type, "airline.status");
    atlas_event_cleanup(&ev);
}

static void atlas_rejects_broken_bodies_naming_the_field(void)
{
    char path[512], line[1024], err[256];
    FILE *f;
    int checked = 0;

    snprintf(path, sizeof(path), "%s/atlas/broken.tsv", VR_TEST_DATA_DIR);
    f = fopen(path, "r");
    ASSERT_TRUE(f != NULL);
    while (fgets(line, sizeof(line), f) != NULL) {
        struct atlas_event ev;
        char *tab = strchr(line, '\t'), *nl;
        if (line[0] == '#' || tab == NULL)
            continue;
        *tab = '\0';
        if ((nl = strchr(tab + 1, '\n')) != NULL)
            *nl = '\0';
        err[0] = '\0';
        int r = atlas_event_parse(line, strlen(line), &ev, err, sizeof(err));
        if (r != VR_EPARSE || strstr(err, tab + 1) == NULL) {
            fprintf(stderr, "body %s: got %d \"%s\", want \"%s\"\n", line, r, err, tab + 1);
            fclose(f);
            ASSERT_TRUE(0);
        }
        checked++;
    }
    fclose(f);
    printf("     %d broken bodies rejected\n", checked);
    ASSERT_TRUE(checked >= 20);
}

static void atlas_keeps_type_of_a_rejected_body(void)
{
    static const char body[] = "{\"type\":\"order.void\",\"data\":{\"orderNo\":\"A\"}}";
    struct atlas_event ev;
    char err[256];

    ASSERT_EQ(atlas_event_parse(body, sizeof(body) - 1, &ev, err, sizeof(err)), VR_EPARSE);
    ASSERT_STR_EQ(ev.type, "order.void");
    ASSERT_TRUE(ev.order_no == NULL);
}

static void atlas_query_body_is_the_documented_shape(void)
{
    char *b = atlas_query_body("TESTA20250512100600259", "202505-0012");

    ASSERT_STR_EQ(b, "{\"orderNo\":\"TESTA20250512100600259\",\"voidCode\":\"202505-0012\"}");
    free(b);
    b = atlas_query_body("A\"B", "V\\1");
    ASSERT_STR_EQ(b, "{\"orderNo\":\"A\\\"B\",\"voidCode\":\"V\\\\1\"}");
    free(b);
}

static void atlas_query_picks_the_item_of_the_void_code(void)
{
    struct atlas_void_order o;
    size_t len;
    char *body = slurp("query_ok.json", &len);
    char err[256] = "";
    int st = -1;

    ASSERT_EQ(atlas_query_parse(body, len, "202505-0012", &o, &st, err, sizeof(err)), 0);
    ASSERT_EQ(st, 0);
    ASSERT_EQ(o.void_status, 1);
    ASSERT_TRUE(o.cancel_reason == NULL);
    ASSERT_STR_EQ(o.void_method, "CashBackToOriginalPayment");
    ASSERT_STR_EQ(o.expected_confirmation_date, "20250513");
    ASSERT_TRUE(o.expected_refund_date == NULL);
    ASSERT_CONTAINS(o.item_json, "\"estimatedRefundAmount\":165.48");
    ASSERT_CONTAINS(o.item_json, "\"voidCode\":\"202505-0012\"");
    atlas_void_order_cleanup(&o);
    ASSERT_EQ(atlas_query_parse(body, len, "202505-0011", &o, &st, err, sizeof(err)), 0);
    ASSERT_EQ(o.void_status, 2);
    ASSERT_STR_EQ(o.void_method, "Voucher");
    atlas_void_order_cleanup(&o);
    free(body);
}

static void atlas_query_rejects_broken_answers_naming_the_problem(void)
{
    char line[1024];
    FILE *f = fopen(VR_TEST_DATA_DIR "/atlas/query_broken.tsv", "r");
    int n = 0;

    ASSERT_TRUE(f != NULL);
    while (fgets(line, sizeof(line), f) != NULL) {
        struct atlas_void_order o;
        char err[256] = "", *tab1, *tab2;
        int st, want, got;

        if (line[0] == '#' || line[0] == '\n')
            continue;
        line[strcspn(line, "\n")] = '\0';
        tab1 = strchr(line, '\t');
        tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
        ASSERT_TRUE(tab1 && tab2);
        *tab1 = *tab2 = '\0';
        want = strcmp(tab1 + 1, "EPARSE") == 0    ? VR_EPARSE
               : strcmp(tab1 + 1, "EREMOTE") == 0 ? VR_EREMOTE
                                                  : VR_ENOENT;
        got = atlas_query_parse(line, strlen(line), "V1", &o, &st, err, sizeof(err));
        if (got != want)
            fprintf(stderr, "body: %s\n", line);
        ASSERT_EQ(got, want);
        ASSERT_CONTAINS(err, tab2 + 1);
        ASSERT_TRUE(o.item_json == NULL);
        n++;
    }
    fclose(f);
    ASSERT_TRUE(n >= 15);
}

static void atlas_query_keeps_only_real_dates(void)
{
    static const char *const cases[][2] = {
        {"20250513", "20250513"}, {"20240229", "20240229"}, {"20250229", NULL},
        {"20001231", "20001231"}, {"19000229", NULL},       {"20251301", NULL},
        {"20250431", NULL},       {"2025-05-13", NULL},     {"2025051", NULL},
    };
    char body[256], err[128];
    struct atlas_void_order o;
    int st;

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        snprintf(body, sizeof(body),
                 "{\"status\":0,\"voidOrders\":[{\"voidCode\":\"V1\",\"voidStatus\":1,"
                 "\"expectedConfirmationDate\":\"%s\"}]}",
                 cases[i][0]);
        ASSERT_EQ(atlas_query_parse(body, strlen(body), "V1", &o, &st, err, sizeof(err)), 0);
        if (cases[i][1] == NULL)
            ASSERT_TRUE(o.expected_confirmation_date == NULL);
        else
            ASSERT_STR_EQ(o.expected_confirmation_date, cases[i][1]);
        ASSERT_CONTAINS(o.item_json, cases[i][0]);
        atlas_void_order_cleanup(&o);
    }
}

static void atlas_reads_retry_after_of_a_rate_limit_answer(void)
{
    static const char doc[] = "{\"code\": 429, \"message\": \"Rate limit exceeded. Please retry "
                              "after the current window resets\", \"limitType\": \"SEARCH_QPS\", "
                              "\"limit\": 1, \"retryAfter\": 1}";

    ASSERT_EQ(atlas_retry_after_parse(doc, strlen(doc)), 1);
    ASSERT_EQ(atlas_retry_after_parse("{\"retryAfter\":2.5}", 18), 3);
    ASSERT_EQ(atlas_retry_after_parse("{}", 2), -1);
    ASSERT_EQ(atlas_retry_after_parse("oops", 4), -1);
    ASSERT_EQ(atlas_retry_after_parse("{\"retryAfter\":-4}", 17), -1);
}

static void atlas_keeps_long_retry_after_for_the_caller_to_cap(void)
{
    static const char day[] = "{\"retryAfter\":86400}";
    static const char absurd[] = "{\"retryAfter\":100000000}";
    static const char huge[] = "{\"retryAfter\":1e300}";

    ASSERT_EQ(atlas_retry_after_parse(day, strlen(day)), 86400);
    ASSERT_EQ(atlas_retry_after_parse(absurd, strlen(absurd)), 100000000);
    ASSERT_EQ(atlas_retry_after_parse(huge, strlen(huge)), ATLAS_RETRY_AFTER_MAX_S);
}

/* A byte cut through a multi-byte msg made text PostgreSQL refuses. */
static void atlas_error_msg_is_cut_on_a_character_and_cleaned(void)
{
    char body[1024], msg[256] = "", err[256];
    struct atlas_void_order o;
    int st;

    for (int i = 0; i < 60; i++)
        snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg), "%s", "\xe8\xae\xa2"); /* 订 */
    snprintf(body, sizeof(body), "{\"status\":801,\"msg\":\"%s\"}", msg);
    ASSERT_EQ(atlas_query_parse(body, strlen(body), "V1", &o, &st, err, sizeof(err)), VR_EREMOTE);
    ASSERT_EQ(st, 801);
    ASSERT_TRUE(utf8_text_ok(err, strlen(err)));
    ASSERT_EQ(strlen(err), strlen("Atlas status 801: ") + 159); /* 53 whole characters */

    snprintf(body, sizeof(body), "{\"status\":801,\"msg\":\"bad \xff\xfe byte\"}");
    ASSERT_EQ(atlas_query_parse(body, strlen(body), "V1", &o, &st, err, sizeof(err)), VR_EREMOTE);
    ASSERT_STR_EQ(err, "Atlas status 801: bad ?? byte");

    /* err itself too small: still ends on a character. */
    snprintf(body, sizeof(body), "{\"status\":801,\"msg\":\"%s\"}", msg);
    ASSERT_EQ(atlas_query_parse(body, strlen(body), "V1", &o, &st, err, 24), VR_EREMOTE);
    ASSERT_TRUE(utf8_text_ok(err, strlen(err)));
}

/* What each documented answer makes the poller do: the table of the Atlas reference. */
static void atlas_failures_are_sorted_into_the_case_s_own_and_everyone_s(void)
{
    static const struct {
        int status;
        long http;
        int atlas;
        enum atlas_failure want;
    } rows[] = {
        {VR_EREMOTE, 200, 801, ATLAS_FAILURE_PERMANENT},
        {VR_EREMOTE, 200, 824, ATLAS_FAILURE_PERMANENT},
        {VR_ENOENT, 200, 0, ATLAS_FAILURE_PERMANENT},
        {VR_EREMOTE, 200, 900, ATLAS_FAILURE_CREDENTIALS},
        {VR_EREMOTE, 200, 902, ATLAS_FAILURE_CREDENTIALS},
        {VR_EREMOTE, 200, 901, ATLAS_FAILURE_REFUSED},
        {VR_EREMOTE, 200, 905, ATLAS_FAILURE_RATE_LIMIT},
        {VR_EREMOTE, 429, 0, ATLAS_FAILURE_RATE_LIMIT},
        {VR_EREMOTE, 200, 9999, ATLAS_FAILURE_SYSTEM},
        {VR_EREMOTE, 200, -1, ATLAS_FAILURE_SYSTEM},
        {VR_EREMOTE, 502, 0, ATLAS_FAILURE_SERVER},
        {VR_EREMOTE, 503, 0, ATLAS_FAILURE_SERVER},
        {VR_EIO, 0, 0, ATLAS_FAILURE_UNREACHABLE},
        {VR_ETIMEDOUT, 0, 0, ATLAS_FAILURE_UNREACHABLE},
        {VR_EREMOTE, 200, 814, ATLAS_FAILURE_CASE},
        {VR_EREMOTE, 200, 100, ATLAS_FAILURE_CASE},
        {VR_EREMOTE, 404, 0, ATLAS_FAILURE_CASE},
        {VR_EPARSE, 200, 0, ATLAS_FAILURE_CASE},
    };

    for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
        ASSERT_EQ(atlas_failure_of(rows[i].status, rows[i].http, rows[i].atlas), rows[i].want);
    ASSERT_TRUE(!atlas_failure_is_global(ATLAS_FAILURE_CASE));
    ASSERT_TRUE(!atlas_failure_is_global(ATLAS_FAILURE_PERMANENT));
    ASSERT_TRUE(atlas_failure_is_global(ATLAS_FAILURE_UNREACHABLE));
    ASSERT_STR_EQ(atlas_failure_name(ATLAS_FAILURE_CREDENTIALS), "credentials");
    ASSERT_STR_EQ(atlas_failure_name(ATLAS_FAILURE_UNREACHABLE), "unreachable");
}

CHECK_MAIN(
    CASE(atlas_parses_void_success_sample), CASE(atlas_parses_void_rejection_and_chinese_samples),
    CASE(atlas_void_message_is_optional), CASE(atlas_parses_both_cancelled_spellings),
    CASE(atlas_keeps_other_types_as_other), CASE(atlas_rejects_broken_bodies_naming_the_field),
    CASE(atlas_keeps_type_of_a_rejected_body), CASE(atlas_query_body_is_the_documented_shape),
    CASE(atlas_query_picks_the_item_of_the_void_code),
    CASE(atlas_query_rejects_broken_answers_naming_the_problem),
    CASE(atlas_query_keeps_only_real_dates), CASE(atlas_reads_retry_after_of_a_rate_limit_answer),
    CASE(atlas_keeps_long_retry_after_for_the_caller_to_cap),
    CASE(atlas_error_msg_is_cut_on_a_character_and_cleaned),
    CASE(atlas_failures_are_sorted_into_the_case_s_own_and_everyone_s))
