/* The state machine against the rule table in tests/data/voidcase_transitions.tsv. */
#include <stdbool.h>

#include "check.h"
#include "voidcase.h"

#define MAX_RULES 64

struct rule {
    char f[12][24];
    int line;
};

static struct rule rules[MAX_RULES];
static int nrules;

static void load_rules(void)
{
    char line[512];
    FILE *f = fopen(VR_TEST_DATA_DIR "/voidcase_transitions.tsv", "r");
    int lineno = 0;

    if (f == NULL) {
        perror("voidcase_transitions.tsv");
        exit(2);
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        struct rule *r = &rules[nrules];
        lineno++;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        int n = sscanf(line, "%23s %23s %23s %23s %23s %23s %23s %23s %23s %23s %23s %23s", r->f[0],
                       r->f[1], r->f[2], r->f[3], r->f[4], r->f[5], r->f[6], r->f[7], r->f[8],
                       r->f[9], r->f[10], r->f[11]);
        if (n != 12 || nrules == MAX_RULES) {
            fprintf(stderr, "voidcase_transitions.tsv:%d: expected 12 fields\n", lineno);
            exit(2);
        }
        r->line = lineno;
        nrules++;
    }
    fclose(f);
}

static int rank(int s)
{
    return s == 3 ? 2 : s;
}

static bool match_cur(const char *p, bool exists, int c)
{
    if (strcmp(p, "*") == 0)
        return true;
    if (strcmp(p, "none") == 0)
        return !exists;
    if (strcmp(p, "!none") == 0)
        return exists;
    if (!exists)
        return false;
    if (strcmp(p, "open") == 0)
        return c == 0 || c == 1 || c == 3;
    if (strcmp(p, "closed") == 0)
        return !(c == 0 || c == 1 || c == 3);
    return p[0] - '0' == c && p[1] == '\0';
}

static bool match_rep(const char *p, bool exists, int c, int s)
{
    bool s_open = s == 0 || s == 1 || s == 3;

    if (strcmp(p, "*") == 0)
        return true;
    if (strcmp(p, "open") == 0)
        return s_open;
    if (strcmp(p, "closed") == 0)
        return !s_open;
    if (strcmp(p, "=cur") == 0)
        return exists && s == c;
    if (strcmp(p, "<cur") == 0)
        return exists && s_open && rank(s) < rank(c);
    return p[0] - '0' == s && p[1] == '\0';
}

static bool match_word(const char *p, const char *value)
{
    return strcmp(p, "*") == 0 || strcmp(p, value) == 0;
}

/* A rule's pend field: "*" any set, "-" the empty set, reasons joined by "+": any set that
 * holds them all. */
static bool match_pending(const char *p, unsigned pending)
{
    char list[64];
    unsigned want;

    if (strcmp(p, "*") == 0)
        return true;
    if (strcmp(p, "-") == 0)
        return pending == 0;
    snprintf(list, sizeof(list), "%s", p);
    for (char *c = list; *c; c++)
        if (*c == '+')
            *c = ',';
    want = voidcase_followups_parse(list);
    return want != 0 && (pending & want) == want;
}

static const struct rule *find_rule(bool exists, int c, bool conf, unsigned pend, int s,
                                    enum voidcase_source src, bool sup)
{
    const char *src_class = src == VOIDCASE_SOURCE_POLL ? "poll" : "hint";

    for (int i = 0; i < nrules; i++) {
        const struct rule *r = &rules[i];
        if (match_cur(r->f[0], exists, c) && match_word(r->f[1], conf ? "y" : "n") &&
            match_pending(r->f[2], pend) && match_rep(r->f[3], exists, c, s) &&
            match_word(r->f[4], src_class) && match_word(r->f[5], sup ? "y" : "n"))
            return r;
    }
    return NULL;
}

static int failures_here;

static void compare(const struct rule *r, const struct voidcase_decision *d, bool exists, int c,
                    bool conf, int s)
{
    int want_to = strcmp(r->f[7], "rep") == 0 ? s : c;
    bool want_conf = strcmp(r->f[8], "keep") == 0 ? conf : strcmp(r->f[8], "y") == 0;
    const char *want_poll = r->f[11];
    char got_poll[16];

    if (strcmp(want_poll, "settle") == 0)
        want_poll = (want_to == 0 || want_to == 1 || want_to == 3) ? "next" : "never";
    snprintf(got_poll, sizeof(got_poll), "%s", voidcase_poll_name(d->poll));
    if (strcmp(r->f[6], voidcase_outcome_name(d->outcome)) != 0 || d->to_status != want_to ||
        d->confirmed != want_conf ||
        strcmp(r->f[9], d->followup_reason ? d->followup_reason : "-") != 0 ||
        strcmp(r->f[10], d->alert_kind ? d->alert_kind : "-") != 0 ||
        strcmp(want_poll, got_poll) != 0) {
        if (failures_here++ < 20)
            fprintf(stderr,
                    "rule line %d (cur=%s%d conf=%d rep=%d): want %s to=%d conf=%d %s %s %s, "
                    "got %s to=%d conf=%d %s %s %s\n",
                    r->line, exists ? "" : "none/", c, conf, s, r->f[6], want_to, want_conf,
                    r->f[9], r->f[10], want_poll, voidcase_outcome_name(d->outcome), d->to_status,
                    d->confirmed, d->followup_reason ? d->followup_reason : "-",
                    d->alert_kind ? d->alert_kind : "-", got_poll);
    }
}

static void voidcase_matches_every_rule_of_the_table(void)
{
    static const unsigned pendings[] = {
        0,
        VOIDCASE_FOLLOWUP_REJECTED,
        VOIDCASE_FOLLOWUP_CONFLICT,
        VOIDCASE_FOLLOWUP_REJECTED | VOIDCASE_FOLLOWUP_CONFLICT,
        VOIDCASE_FOLLOWUP_STUCK | VOIDCASE_FOLLOWUP_POLL_FAILING,
        VOIDCASE_FOLLOWUP_CONFLICT | VOIDCASE_FOLLOWUP_STUCK,
    };
    static const enum voidcase_source sources[] = {VOIDCASE_SOURCE_WEBHOOK, VOIDCASE_SOURCE_POLL,
                                                   VOIDCASE_SOURCE_API};
    int combinations = 0;

    load_rules();
    failures_here = 0;
    for (int c = -1; c <= 6; c++) {
        bool exists = c >= 0;
        for (int conf = 0; conf <= (exists ? 1 : 0); conf++) {
            for (size_t p = 0; p < (exists ? ARRAY_SIZE(pendings) : 1); p++) {
                for (int s = 0; s <= 6; s++) {
                    for (size_t si = 0; si < ARRAY_SIZE(sources); si++) {
                        for (int sup = 0; sup <= (exists ? 1 : 0); sup++) {
                            struct voidcase_state cur = {exists, exists ? c : 0, conf, pendings[p]};
                            struct voidcase_decision d;
                            const struct rule *r =
                                find_rule(exists, c, conf, pendings[p], s, sources[si], sup);
                            ASSERT_TRUE(r != NULL);
                            ASSERT_EQ(voidcase_decide(&cur, s, sources[si], sup, &d), 0);
                            compare(r, &d, exists, c, conf, s);
                            combinations++;
                        }
                    }
                }
            }
        }
    }
    printf("     %d combinations checked against %d rules\n", combinations, nrules);
    ASSERT_EQ(failures_here, 0);
}

static void voidcase_rejects_unknown_statuses(void)
{
    struct voidcase_state cur = {false, 0, false, 0};
    struct voidcase_decision d;

    ASSERT_EQ(voidcase_decide(&cur, 7, VOIDCASE_SOURCE_WEBHOOK, false, &d), VR_EINVAL);
    ASSERT_EQ(voidcase_decide(&cur, -1, VOIDCASE_SOURCE_POLL, false, &d), VR_EINVAL);
    cur.exists = true;
    cur.status = 9;
    ASSERT_EQ(voidcase_decide(&cur, 2, VOIDCASE_SOURCE_POLL, false, &d), VR_EINVAL);
}

static void voidcase_lifecycle_in_any_order_ends_the_same(void)
{
    /* Every permutation of the webhooks 0, 1, 3, 2 leaves the case in 2. */
    static const int perms[24][4] = {
        {0, 1, 3, 2}, {0, 1, 2, 3}, {0, 3, 1, 2}, {0, 3, 2, 1}, {0, 2, 1, 3}, {0, 2, 3, 1},
        {1, 0, 3, 2}, {1, 0, 2, 3}, {1, 3, 0, 2}, {1, 3, 2, 0}, {1, 2, 0, 3}, {1, 2, 3, 0},
        {3, 0, 1, 2}, {3, 0, 2, 1}, {3, 1, 0, 2}, {3, 1, 2, 0}, {3, 2, 0, 1}, {3, 2, 1, 0},
        {2, 0, 1, 3}, {2, 0, 3, 1}, {2, 1, 0, 3}, {2, 1, 3, 0}, {2, 3, 0, 1}, {2, 3, 1, 0}};

    for (size_t p = 0; p < ARRAY_SIZE(perms); p++) {
        struct voidcase_state cur = {false, 0, false, 0};
        for (int i = 0; i < 4; i++) {
            struct voidcase_decision d;
            ASSERT_EQ(voidcase_decide(&cur, perms[p][i], VOIDCASE_SOURCE_WEBHOOK, false, &d), 0);
            cur.exists = true;
            cur.status = d.to_status;
            cur.confirmed = d.confirmed;
        }
        ASSERT_EQ(cur.status, 2);
        ASSERT_TRUE(!voidcase_is_reconciled(cur.status, cur.confirmed));
    }
}

static void voidcase_names_statuses_as_documented(void)
{
    ASSERT_STR_EQ(voidcase_status_name(4), "REJECTED");
    ASSERT_STR_EQ(voidcase_status_name(3), "AIRLINE_VOIDING");
    ASSERT_STR_EQ(voidcase_status_name(7), "UNKNOWN");
    ASSERT_TRUE(voidcase_status_is_open(3));
    ASSERT_TRUE(!voidcase_status_is_open(2));
}

CHECK_MAIN(CASE(voidcase_matches_every_rule_of_the_table), CASE(voidcase_rejects_unknown_statuses),
           CASE(voidcase_lifecycle_in_any_order_ends_the_same),
           CASE(voidcase_names_statuses_as_documented))
