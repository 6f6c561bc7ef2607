/* The store's checked decoders of result fields, on results built in memory: every type reads
 * what PostgreSQL writes, and anything else is refused, naming the column. */
#include <libpq-fe.h>

#include "check.h"
#include "store/store_int.h"

/* A one-row result of text fields; NULL entries are SQL NULLs. */
static PGresult *result_of(const char *const *values, int n)
{
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc attrs[8];

    memset(attrs, 0, sizeof(attrs));
    for (int i = 0; i < n; i++)
        attrs[i].name = (char *)"f";
    if (res == NULL || PQsetResultAttrs(res, n, attrs) == 0) {
        fprintf(stderr, "cannot build a result\n");
        exit(2);
    }
    for (int i = 0; i < n; i++) {
        if (PQsetvalue(res, 0, i, (char *)values[i], values[i] ? (int)strlen(values[i]) : -1) == 0)
            exit(2);
    }
    return res;
}

static void store_row_reads_every_type(void)
{
    const char *values[] = {"9007199254740993", "-42", "t", "f", "text", NULL};
    PGresult *res = result_of(values, 6);
    struct store_row row;
    char err[128] = "";

    store_row_init(&row, res, 0);
    ASSERT_TRUE(store_row_i64(&row, 0) == 9007199254740993LL);
    ASSERT_EQ(store_row_int(&row, 1), -42);
    ASSERT_TRUE(store_row_bool(&row, 2));
    ASSERT_TRUE(!store_row_bool(&row, 3));
    ASSERT_STR_EQ(store_row_text(&row, 4), "text");
    ASSERT_TRUE(store_row_null(&row, 5));
    ASSERT_EQ(store_row_i64(&row, 5), 0);
    ASSERT_TRUE(store_row_text(&row, 5) == NULL);
    ASSERT_EQ(store_row_check(&row, "reading", err, sizeof(err)), 0);
    PQclear(res);
}

static void store_row_refuses_what_is_not_of_its_type(void)
{
    static const struct {
        const char *value;
        int type; /* 0 i64, 1 int, 2 bool */
    } bad[] = {
        {"12x", 0}, {"", 0},     {"99999999999999999999", 0}, {" 1", 1}, {"2147483648", 1},
        {"yes", 2}, {"true", 2},
    };

    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        const char *values[] = {"1", bad[i].value};
        PGresult *res = result_of(values, 2);
        struct store_row row;
        char err[128] = "";

        store_row_init(&row, res, 0);
        ASSERT_EQ(store_row_i64(&row, 0), 1);
        if (bad[i].type == 0)
            (void)store_row_i64(&row, 1);
        else if (bad[i].type == 1)
            (void)store_row_int(&row, 1);
        else
            (void)store_row_bool(&row, 1);
        ASSERT_EQ(store_row_check(&row, "reading a case", err, sizeof(err)), VR_EDB);
        ASSERT_CONTAINS(err, "reading a case: column 2");
        PQclear(res);
    }
}

static void store_row_counts_a_missing_field_as_bad_and_stops_reading(void)
{
    const char *values[] = {"7"};
    PGresult *res = result_of(values, 1);
    struct store_row row;
    char err[128] = "";

    store_row_init(&row, res, 0);
    ASSERT_EQ(store_row_i64(&row, 3), 0);
    ASSERT_EQ(store_row_i64(&row, 0), 0); /* after the first bad field, reads give zero values */
    ASSERT_EQ(store_row_check(&row, "leasing", err, sizeof(err)), VR_EDB);
    ASSERT_CONTAINS(err, "column 4");
    store_row_init(&row, res, 1); /* no second row */
    ASSERT_TRUE(store_row_text(&row, 0) == NULL);
    ASSERT_EQ(store_row_check(&row, "leasing", err, sizeof(err)), VR_EDB);
    PQclear(res);
}

CHECK_MAIN(CASE(store_row_reads_every_type), CASE(store_row_refuses_what_is_not_of_its_type),
           CASE(store_row_counts_a_missing_field_as_bad_and_stops_reading))
