/* The void-case state machine of DESIGN §2: a pure function from (case, report) to a decision. */
#ifndef VR_VOIDCASE_H
#define VR_VOIDCASE_H

#include <stdbool.h>

#include "common.h"

#define VOIDCASE_STATUS_MIN 0
#define VOIDCASE_STATUS_MAX 6
#define VOIDCASE_REJECTED   4

enum voidcase_source { VOIDCASE_SOURCE_WEBHOOK, VOIDCASE_SOURCE_POLL, VOIDCASE_SOURCE_API };

enum voidcase_outcome {
    VOIDCASE_APPLIED,   /* the case moved to the reported status */
    VOIDCASE_DUPLICATE, /* the case already had that status */
    VOIDCASE_STALE,     /* older news than what the case has; recorded, ignored */
    VOIDCASE_CONFLICT   /* two closed statuses disagree; flagged for a person */
};

/* When the poller should look at the case next. */
enum voidcase_poll {
    VOIDCASE_POLL_KEEP,    /* leave the schedule as it is */
    VOIDCASE_POLL_FIRST,   /* a new open case: first poll after VOIDRECON_POLL_FIRST_MS */
    VOIDCASE_POLL_CONFIRM, /* a closing reported by a hint: poll after VOIDRECON_POLL_CONFIRM_MS */
    VOIDCASE_POLL_NOW,     /* something disagrees: poll at once */
    VOIDCASE_POLL_NEXT,    /* a poll saw an open status: the next, growing interval */
    VOIDCASE_POLL_NEVER    /* reconciled: never poll again */
};

/* The reasons a case may wait for a person, as bits of a set; each is raised (with its alert)
 * once, and acknowledged on its own. */
#define VOIDCASE_FOLLOWUP_REJECTED     (1U << 0)
#define VOIDCASE_FOLLOWUP_CONFLICT     (1U << 1)
#define VOIDCASE_FOLLOWUP_POLL_FAILING (1U << 2)
#define VOIDCASE_FOLLOWUP_STUCK        (1U << 3)
#define VOIDCASE_FOLLOWUP_COUNT        4

/* What the store knows about a case before the report. */
struct voidcase_state {
    bool exists;
    int status;
    bool confirmed;   /* the current status was seen by a poll */
    unsigned pending; /* the open (unacknowledged) follow-up reasons, VOIDCASE_FOLLOWUP_* */
};

struct voidcase_decision {
    enum voidcase_outcome outcome;
    int to_status;               /* the case's status after the report */
    bool confirmed;              /* the case's confirmed flag after the report */
    const char *followup_reason; /* static string of a reason to raise (not pending yet), or NULL */
    const char *alert_kind;      /* static string of the alert raised with it, or NULL */
    enum voidcase_poll poll;
};

/* True for the open statuses 0, 1 and 3. */
bool voidcase_status_is_open(int status);
/* True for 0..6. */
bool voidcase_status_is_valid(int status);
/* Documented name of a status ("ATLAS_PROCESSING", ...), "UNKNOWN" outside 0..6. */
const char *voidcase_status_name(int status);
/* A closed status confirmed by a poll: the case is reconciled and never polled again. */
bool voidcase_is_reconciled(int status, bool confirmed);

/* Decides what a report of status reported from source does to the case cur. superseded says
 * that the case changed after the poll request behind this report was sent (polls only).
 * Returns 0, or VR_EINVAL when reported (or cur->status) is not a valid status. */
int voidcase_decide(const struct voidcase_state *cur, int reported, enum voidcase_source source,
                    bool superseded, struct voidcase_decision *out) VR_MUSTCHECK;

/* The bit of a follow-up reason's name ("rejected", "conflict", "poll_failing", "stuck"); 0 for
 * any other text. */
unsigned voidcase_followup_bit(const char *reason);
/* The name of reason i, the reason of bit 1U << i (0 <= i < VOIDCASE_FOLLOWUP_COUNT, most urgent
 * first): "rejected", "conflict", "poll_failing", "stuck". */
const char *voidcase_followup_name(unsigned i);
/* The set a comma-separated list of reason names stands for; unknown names are left out. */
unsigned voidcase_followups_parse(const char *list);

/* Stable lower-case names used in the database ("webhook", "applied", ...). */
const char *voidcase_source_name(enum voidcase_source source);
const char *voidcase_outcome_name(enum voidcase_outcome outcome);
const char *voidcase_poll_name(enum voidcase_poll poll);

#endif
