/* The void-case state machine: which reports apply, which are stale, which conflict. */
#include "voidcase.h"

#include <string.h>

static const char *const status_names[] = {
    "ATLAS_PROCESSING", "AIRLINE_PROCESSING", "VOIDED",   "AIRLINE_VOIDING",
    "REJECTED",         "COMPLETED",          "WITHDREW",
};

bool voidcase_status_is_valid(int status)
{
    return status >= VOIDCASE_STATUS_MIN && status <= VOIDCASE_STATUS_MAX;
}

bool voidcase_status_is_open(int status)
{
    return status == 0 || status == 1 || status == 3;
}

const char *voidcase_status_name(int status)
{
    return voidcase_status_is_valid(status) ? status_names[status] : "UNKNOWN";
}

bool voidcase_is_reconciled(int status, bool confirmed)
{
    return confirmed && voidcase_status_is_valid(status) && !voidcase_status_is_open(status);
}

/* Open statuses progress 0 -> 1 -> 3; the code numbers are not in that order. */
static int open_rank(int status)
{
    return status == 3 ? 2 : status;
}

/* Entering REJECTED always needs a person; otherwise a conflict may. A reason already waiting
 * for a person is not raised again (one alert per reason until it is acknowledged), and a
 * conflict that enters REJECTED is raised as a conflict while rejected is waiting already. */
static void flag(const struct voidcase_state *cur, struct voidcase_decision *d, bool conflict)
{
    bool entered_rejected =
        d->to_status == VOIDCASE_REJECTED && (!cur->exists || cur->status != VOIDCASE_REJECTED);

    if (entered_rejected && !(cur->pending & VOIDCASE_FOLLOWUP_REJECTED)) {
        d->followup_reason = "rejected";
        d->alert_kind = "void_rejected";
    } else if (conflict && !(cur->pending & VOIDCASE_FOLLOWUP_CONFLICT)) {
        d->followup_reason = "conflict";
        d->alert_kind = "void_conflict";
    }
}

static void decide_poll(const struct voidcase_state *cur, int s, bool superseded,
                        struct voidcase_decision *d)
{
    bool conflict = false;

    if (cur->exists && superseded) {
        /* Something newer was recorded while the request was out: its answer may be older. */
        d->outcome = VOIDCASE_STALE;
        d->to_status = cur->status;
        d->confirmed = cur->confirmed;
        d->poll = VOIDCASE_POLL_NOW;
        return;
    }
    if (cur->exists && s == cur->status) {
        d->outcome = VOIDCASE_DUPLICATE;
    } else {
        /* A poll is the truth; changing a closing that a poll confirmed needs a person. */
        conflict = cur->exists && cur->confirmed && !voidcase_status_is_open(cur->status);
        d->outcome = conflict ? VOIDCASE_CONFLICT : VOIDCASE_APPLIED;
    }
    d->to_status = s;
    d->confirmed = true;
    d->poll = voidcase_status_is_open(s) ? VOIDCASE_POLL_NEXT : VOIDCASE_POLL_NEVER;
    flag(cur, d, conflict);
}

/* Webhooks and registrations are hints: they may move a case forward, never back. */
static void decide_hint(const struct voidcase_state *cur, int s, struct voidcase_decision *d)
{
    int c = cur->status;
    bool c_open = voidcase_status_is_open(c), s_open = voidcase_status_is_open(s);

    d->to_status = c;
    d->confirmed = cur->confirmed;
    d->poll = VOIDCASE_POLL_KEEP;
    if (!cur->exists) {
        d->outcome = VOIDCASE_APPLIED;
        d->to_status = s;
        d->confirmed = false;
        d->poll = s_open ? VOIDCASE_POLL_FIRST : VOIDCASE_POLL_CONFIRM;
    } else if (s == c) {
        d->outcome = VOIDCASE_DUPLICATE;
    } else if ((c_open && s_open && open_rank(s) < open_rank(c)) || (!c_open && s_open)) {
        d->outcome = VOIDCASE_STALE;
    } else if (!c_open) {
        d->outcome = VOIDCASE_CONFLICT;
        d->confirmed = false;
        d->poll = VOIDCASE_POLL_NOW;
        flag(cur, d, true);
        return;
    } else {
        d->outcome = VOIDCASE_APPLIED;
        d->to_status = s;
        d->confirmed = false;
        d->poll = s_open ? VOIDCASE_POLL_KEEP : VOIDCASE_POLL_CONFIRM;
    }
    if (d->outcome == VOIDCASE_APPLIED)
        flag(cur, d, false);
}

int voidcase_decide(const struct voidcase_state *cur, int reported, enum voidcase_source source,
                    bool superseded, struct voidcase_decision *out)
{
    if (!voidcase_status_is_valid(reported) ||
        (cur->exists && !voidcase_status_is_valid(cur->status)))
        return VR_EINVAL;
    memset(out, 0, sizeof(*out));
    if (source == VOIDCASE_SOURCE_POLL)
        decide_poll(cur, reported, superseded, out);
    else
        decide_hint(cur, reported, out);
    return 0;
}

static const char *const followup_names[VOIDCASE_FOLLOWUP_COUNT] = {"rejected", "conflict",
                                                                    "poll_failing", "stuck"};

const char *voidcase_followup_name(unsigned i)
{
    return i < VOIDCASE_FOLLOWUP_COUNT ? followup_names[i] : "unknown";
}

unsigned voidcase_followup_bit(const char *reason)
{
    for (unsigned i = 0; reason != NULL && i < VOIDCASE_FOLLOWUP_COUNT; i++)
        if (strcmp(reason, followup_names[i]) == 0)
            return 1U << i;
    return 0;
}

unsigned voidcase_followups_parse(const char *list)
{
    unsigned set = 0;
    char name[16];

    while (list != NULL && *list != '\0') {
        size_t n = strcspn(list, ",");

        if (n < sizeof(name)) {
            memcpy(name, list, n);
            name[n] = '\0';
            set |= voidcase_followup_bit(name);
        }
        list += n + (list[n] == ',');
    }
    return set;
}

const char *voidcase_source_name(enum voidcase_source source)
{
    switch (source) {
    case VOIDCASE_SOURCE_WEBHOOK:
        return "webhook";
    case VOIDCASE_SOURCE_POLL:
        return "poll";
    case VOIDCASE_SOURCE_API:
        return "api";
    }
    return "unknown";
}

const char *voidcase_outcome_name(enum voidcase_outcome outcome)
{
    switch (outcome) {
    case VOIDCASE_APPLIED:
        return "applied";
    case VOIDCASE_DUPLICATE:
        return "duplicate";
    case VOIDCASE_STALE:
        return "stale";
    case VOIDCASE_CONFLICT:
        return "conflict";
    }
    return "unknown";
}

const char *voidcase_poll_name(enum voidcase_poll poll)
{
    static const char *const names[] = {"keep", "first", "confirm", "now", "next", "never"};
    return (unsigned)poll < ARRAY_SIZE(names) ? names[poll] : "unknown";
}
