/* Everything voidrecon keeps in PostgreSQL, behind one interface: the connection pool, webhook
 * deliveries, void reports through the state machine, order cancellations, polling leases, the
 * alert outbox, the listings people read, and health readings. Every SQL statement and every
 * row decode lives in src/store/; callers get typed results and one line of error text.
 *
 * Every operation is asynchronous: its callback runs once, from the loop, never from inside the
 * call. Unless said otherwise a callback's status is 0; VR_EUNAVAIL when the database is
 * unreachable or the failure is transient (retrying later may succeed); or VR_EDB for any other
 * database error. On failure, error is one line naming the operation and the reason, without
 * secrets, for the caller to log; the store itself logs nothing. Strings given to an operation
 * are borrowed until its callback runs; what a callback gets is borrowed for the call. */
#ifndef VR_STORE_H
#define VR_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common.h"
#include "voidcase.h"

/* ---- lifecycle ------------------------------------------------------------------------------ */

/* Zero fields take the defaults in parentheses. */
struct store_config {
    const char *conninfo;     /* libpq connection string or URI; copied, never logged */
    unsigned pool_size;       /* connections kept open (4) */
    uint64_t timeout_ms;      /* longest statement, and longest wait for a connection (10000) */
    uint64_t poll_first_ms;   /* first poll of a case that appears open */
    uint64_t poll_confirm_ms; /* poll confirming a closing that only a hint reported */
    /* Non-zero: health readings (store_read_health) get one connection of their own, whose
     * statements time out after this, so that they never take a connection from the work. */
    uint64_t health_timeout_ms;
    /* Group commit: writes (void reports, deliveries, cancellations) that arrive while others
     * are being written wait, and the next batch writes up to write_batch of them in one
     * transaction (128; 1 writes each alone); at most write_concurrency batches run at once,
     * each on a connection of the pool (2). */
    unsigned write_batch;
    unsigned write_concurrency;
};

struct store;

/* Creates a store on loop and starts connecting in the background. 0, or VR_EINVAL when conninfo
 * cannot be parsed (err says so without quoting it: it may hold a password). */
int store_new(struct store **out, uv_loop_t *loop, const struct store_config *cfg, char *err,
              size_t errlen) VR_MUSTCHECK;

/* Fails queued operations with VR_EUNAVAIL, lets those under way finish (their callbacks run),
 * closes every connection, frees the store, then calls done_cb(arg) (NULL: none). */
void store_close(struct store *st, void (*done_cb)(void *arg), void *arg);

/* ---- webhooks and void reports -------------------------------------------------------------- */

/* A received webhook, as it is kept in voidrecon.deliveries. */
struct store_delivery {
    const char *provider;    /* "atlas", "xsolla", ... */
    const char *event_type;  /* NULL when it could not be read */
    const char *remote_addr; /* textual peer address */
    const char *body;        /* raw body, body_len bytes (any bytes): all of it or a prefix */
    size_t body_len;
    /* When body is only a prefix: the whole body's length and its SHA-256 (32 bytes, borrowed);
     * whole_len 0 when body is whole (the store then measures it itself). */
    size_t whole_len;
    const unsigned char *whole_sha256;
    /* The request headers the provider's signature check needs, as a JSON object of lower-case
     * names ("{}": none; NULL: not known); replay_of, the delivery this one replays (0: none);
     * cid, the sender's account the body names (NULL: none). */
    const char *headers;
    int64_t replay_of;
    const char *cid;
};

/* What a poll's answer says about a void beyond its status; kept on the case. */
struct store_void_details {
    const char *cancel_reason;              /* NULL when none */
    const char *void_method;                /* NULL when none */
    const char *expected_confirmation_date; /* "yyyyMMdd", NULL when none */
    const char *expected_refund_date;       /* likewise */
    const char *raw_json;                   /* the provider's whole item, a JSON object */
};

/* One report of a void case's status. */
struct store_void_report {
    const char *order_no;
    const char *void_code;
    int status;          /* 0..6 */
    const char *message; /* NULL when none */
    enum voidcase_source source;
    /* Polls only: the case's version when it was leased (a later change supersedes the
     * answer), the lease's fencing token, the delay of the next poll when the answer leaves
     * the case open, and what else the answer said. */
    int64_t seen_version;
    int64_t lease_token;
    uint64_t next_poll_ms;
    const struct store_void_details *details;
};

struct store_cancellation {
    const char *order_ref;     /* the provider's order reference */
    const char *error_code;    /* NULL when none */
    const char *error_message; /* NULL when none */
    const char *order_status;  /* the provider's order status as text, NULL when none */
    const char *details;       /* JSON object of what else the provider said, NULL when none */
    bool verified;             /* the sender's signature was checked */
    bool alert;                /* raise an order_cancelled alert when the cancellation is new */
};

struct store_result {
    int64_t delivery_id; /* 0 when no delivery row was written (polls, registrations) */
    const char *outcome; /* static: applied, duplicate, stale, conflict, ignored, rejected,
                            failed (a recorded poll failure) */
    int64_t alert_id;    /* 0 when no alert was raised */
    bool created;        /* a void report created the case */
    int to_status;       /* a void report: the case's status afterwards */
    const char *error;   /* status != 0: what failed */
};

/* res is never NULL. Beside the common statuses, VR_ESTATE for a poll whose lease another
 * process has taken over (nothing written). */
typedef void (*store_done_cb)(int status, const struct store_result *res, void *arg);

/* Keeps a delivery with a final outcome ("ignored" or "rejected") and reason (NULL allowed). */
void store_record_delivery(struct store *st, const struct store_delivery *d, const char *outcome,
                           const char *reason, store_done_cb cb, void *arg);

/* Applies a report through voidcase_decide: the case, its history row, the delivery (when d is
 * not NULL), the follow-up flag and any alert are written together or not at all. */
void store_apply_void(struct store *st, const struct store_delivery *d,
                      const struct store_void_report *rep, store_done_cb cb, void *arg);

/* Records an order cancellation and its delivery; a repeat of a known (provider, order_ref)
 * is a "duplicate" that changes nothing else. */
void store_record_cancellation(struct store *st, const struct store_delivery *d,
                               const struct store_cancellation *c, store_done_cb cb, void *arg);

/* ---- polling -------------------------------------------------------------------------------- */

/* A case leased for one poll. */
struct store_lease {
    const char *order_no;
    const char *void_code;
    int64_t version;      /* when leased */
    int64_t lease_token;  /* give it back with the answer */
    int polls;            /* good answers so far */
    int poll_failures;    /* failures in a row so far */
    bool failed_for_good; /* the last of those failures was one no retry changes */
};

/* What one lease gets back: the cases (n of them, none while the circuit is closed to them)
 * and the circuit's state as the lease saw it. */
struct store_lease_batch {
    const struct store_lease *leases;
    size_t n;
    bool circuit_open;       /* an atlas_failing incident is open */
    bool probe;              /* the case leased is that incident's probe */
    int64_t circuit_since_s; /* when it opened, Unix time; 0 when closed */
};

/* How to lease: up to max cases, each for lease_ms; every process together leases at most
 * max_rps per second (one second's worth in a burst); while an atlas_failing incident is open,
 * one probe at a time, probe_ms after the opening and then at doubling intervals up to
 * probe_max_ms. */
struct store_lease_rules {
    unsigned max;
    uint64_t lease_ms;
    unsigned max_rps;
    uint64_t probe_ms;
    uint64_t probe_max_ms;
};

/* batch is NULL on failure. */
typedef void (*store_lease_cb)(int status, const char *error, const struct store_lease_batch *batch,
                               void *arg);
/* count: how many rows the operation touched. */
typedef void (*store_count_cb)(int status, const char *error, int64_t count, void *arg);

/* Leases cases that are due for a poll and not leased by anyone (FOR UPDATE SKIP LOCKED),
 * oldest due first, within the database-wide rate and the circuit (rules). */
void store_lease_due(struct store *st, const struct store_lease_rules *rules, store_lease_cb cb,
                     void *arg);

/* Records a failed poll of a leased case: counts it, keeps error, releases the lease and
 * schedules the next try retry_ms from now. The failure that makes failures_alert in a row
 * flags the case poll_failing with one void_poll_failing alert (res->alert_id); 0 flags none.
 * for_good says no retry will change the answer (the next lease tells). VR_ESTATE when the
 * lease was lost. */
void store_poll_failed(struct store *st, const char *order_no, const char *void_code,
                       int64_t lease_token, const char *error, uint64_t retry_ms,
                       unsigned failures_alert, bool for_good, store_done_cb cb, void *arg);

/* Gives a leased case back without counting a failure (Atlas asked every poll to wait):
 * its next poll comes delay_ms from now at the earliest. count is 0 when the lease was lost. */
void store_poll_deferred(struct store *st, const char *order_no, const char *void_code,
                         int64_t lease_token, uint64_t delay_ms, store_count_cb cb, void *arg);

/* Flags up to max cases still open stuck_after_ms after they appeared, once each, with one
 * void_stuck alert each; count is how many were flagged. */
void store_flag_stuck(struct store *st, uint64_t stuck_after_ms, unsigned max, store_count_cb cb,
                      void *arg);

/* ---- incidents: the poll circuit and the silence of webhooks -------------------------------- */

/* Why Atlas fails for every case, as the poller saw it. */
struct store_circuit_cause {
    const char *cause;   /* credentials, request_refused, rate_limited, system_error,
                            server_error or unreachable */
    const char *message; /* the error line of the last failure (no secrets) */
    int atlas_status;    /* the envelope's status, 0 when none */
    long http_status;    /* 0 when no answer came */
    unsigned cases;      /* distinct cases that failed so in a row */
    uint64_t probe_ms;   /* the first probe comes this long after the opening */
};

/* Opens the atlas_failing incident unless one is open, with its alert, in one statement:
 * count is the alert's id when this call opened it, 0 when another process had. */
void store_circuit_open(struct store *st, const struct store_circuit_cause *c, store_count_cb cb,
                        void *arg);

/* Closes the open atlas_failing incident, with its resolve alert ("resolved": true), in one
 * statement: count is that alert's id when this call closed it, 0 when none was open. */
void store_circuit_close(struct store *st, store_count_cb cb, void *arg);

/* What one silence check found and did. */
struct store_silence {
    bool silent;            /* a webhooks_silent incident is open (after the check) */
    int64_t since_s;        /* when it opened, Unix time; 0 when none is open */
    int64_t raised_alert;   /* the check opened it: its alert's id; else 0 */
    int64_t resolved_alert; /* the check closed it: the resolve alert's id; else 0 */
};

typedef void (*store_silence_cb)(int status, const char *error, const struct store_silence *s,
                                 void *arg);

/* Opens the webhooks_silent incident, with its alert, when cases are open and no Atlas webhook
 * (but refused ones) came for quiet_ms (0: this test is off), or polls found poll_changes
 * (0: off) status changes since the last one; closes it, with a resolve alert, once an Atlas
 * webhook came after it opened. Once across processes, like the circuit. */
void store_check_silence(struct store *st, uint64_t quiet_ms, unsigned poll_changes,
                         store_silence_cb cb, void *arg);

/* ---- the alert outbox ----------------------------------------------------------------------- */

/* One row of voidrecon.alerts. */
struct alert_row {
    int64_t id;
    const char *kind;       /* void_rejected, void_conflict, void_stuck, ... */
    const char *order_no;   /* may be NULL */
    const char *void_code;  /* may be NULL */
    const char *payload;    /* a JSON object */
    const char *created_at; /* ISO 8601, UTC, milliseconds */
    int64_t resolves_id;    /* the alert this one resolves; 0: it raises */
};

/* An alert leased for one delivery attempt. */
struct store_alert_lease {
    struct alert_row alert;
    int64_t lease_token; /* give it back with the result */
    int attempts;        /* this one included */
};

typedef void (*store_alerts_cb)(int status, const char *error,
                                const struct store_alert_lease *leases, size_t n, void *arg);

/* Leases up to max undelivered alerts whose next attempt is due, for lease_ms, counting the
 * attempt. A resolve alert waits until the alert it resolves is delivered: a receiver that
 * tracks incidents drops a resolve of one it does not know. */
void store_alerts_lease(struct store *st, unsigned max, uint64_t lease_ms, store_alerts_cb cb,
                        void *arg);

/* Marks a leased alert delivered; count is 0 when another process had taken the lease over. */
void store_alert_delivered(struct store *st, int64_t id, int64_t lease_token, store_count_cb cb,
                           void *arg);

/* Keeps why an attempt failed and schedules the next retry_ms from now; count as above. */
void store_alert_failed(struct store *st, int64_t id, int64_t lease_token, const char *error,
                        uint64_t retry_ms, store_count_cb cb, void *arg);

/* ---- listings for people -------------------------------------------------------------------- */

#define STORE_DEFAULT_LIMIT 50
#define STORE_MAX_LIMIT     500

/* json is the whole answer, a JSON document that PostgreSQL built. Beside the common statuses:
 * VR_ENOENT, no such case or cancellation; VR_ESTATE, nothing waiting to be acknowledged;
 * VR_EINVAL, a cursor this store did not give out. For these three, error is a sentence for
 * the person who asked, without the operation's name. */
typedef void (*store_json_cb)(int status, const char *json, const char *error, void *arg);

/* Is state one of the case listings (open, followup, rejected, all)? */
bool store_case_state_valid(const char *state);
/* Is state one of the alert listings (pending, delivered, all)? */
bool store_alert_state_valid(const char *state);
/* Is state one of the cancellation listings (open, acked, all)? */
bool store_cancellation_state_valid(const char *state);
/* Is reason a follow-up reason of a case (rejected, conflict, poll_failing, stuck)? */
bool store_followup_reason_valid(const char *reason);

/* {"cases":[...], "next_cursor": "..." or null}: cases in state, ordered by (order_no,
 * void_code), at most limit (0: STORE_DEFAULT_LIMIT; at most STORE_MAX_LIMIT), after cursor
 * (NULL: from the start). */
void store_cases_list(struct store *st, const char *state, unsigned limit, const char *cursor,
                      store_json_cb cb, void *arg);

/* {"case":{...}, "history":[...], "alerts":[...], "acknowledgements":[...]}; the case's
 * "followups" are its open reasons, most urgent first. */
void store_case_show(struct store *st, const char *order_no, const char *void_code,
                     store_json_cb cb, void *arg);

/* Acknowledges the case's open follow-up reason (NULL: every open one), recording who and why,
 * one acknowledgement per reason; answers {"case":{...}, "acknowledged":[reasons]}. VR_ESTATE
 * when the reason (or any) is not open. */
void store_case_ack(struct store *st, const char *order_no, const char *void_code,
                    const char *reason, const char *by, const char *note, store_json_cb cb,
                    void *arg);

/* {"alerts":[...], "next_cursor":...}: newest first, in state, before cursor (an alert id). */
void store_alerts_list(struct store *st, const char *state, unsigned limit, const char *cursor,
                       store_json_cb cb, void *arg);

/* {"cancellations":[...], "next_cursor":...}: newest first, in state (open: waiting for a
 * person, acked, all), before cursor (an id). */
void store_cancellations_list(struct store *st, const char *state, unsigned limit,
                              const char *cursor, store_json_cb cb, void *arg);

/* {"cancellation":{...}, "acknowledgements":[...]} */
void store_cancellation_show(struct store *st, int64_t id, store_json_cb cb, void *arg);

/* Acknowledges an order cancellation, recording who and why; answers {"cancellation":{...}}.
 * VR_ESTATE when it was acknowledged already. */
void store_cancellation_ack(struct store *st, int64_t id, const char *by, const char *note,
                            store_json_cb cb, void *arg);

/* ---- retention ------------------------------------------------------------------------------ */

/* The advisory lock every prune batch takes for its transaction, so that one voidrecon process
 * at a time prunes, whatever their number ("voidprun" in ASCII). */
#define STORE_PRUNE_LOCK_KEY "8534155698994574702"

enum store_prune_kind {
    /* Deliveries received before the age, except those that a follow-up still waiting for a
     * person refers to: one that produced a history row of a case whose needs_followup is true,
     * or that recorded a cancellation whose needs_followup is true. The rows that refer to a
     * removed delivery stay, with delivery_id NULL. */
    STORE_PRUNE_DELIVERIES,
    /* History rows recorded before the age that changed nothing: duplicate or stale reports
     * (from_status = to_status). Status changes and conflicts are never pruned. */
    STORE_PRUNE_EVENTS,
};

/* Where the next batch of a run starts (deliveries kept for a follow-up are passed over, not
 * read again by every batch). Zero it before a run's first batch. */
struct store_prune_cursor {
    bool started;
    int64_t at_us; /* received_at of the last delivery looked at, microseconds since 1970 */
    int64_t id;
};

struct store_prune_result {
    bool busy;       /* another process held the prune lock: nothing was done */
    bool more;       /* the batch was full: the next one may find more */
    int64_t removed; /* rows deleted */
};

/* res is never NULL. */
typedef void (*store_prune_cb)(int status, const char *error, const struct store_prune_result *res,
                               void *arg);

/* One batch in a short transaction of its own, under the advisory lock STORE_PRUNE_LOCK_KEY:
 * removes at most max rows of kind older than older_than_ms. Without wait, a lock held by
 * another process ends the batch at once (res->busy); with wait, it is waited for up to the
 * session's lock_timeout, then res->busy. cur (borrowed until the callback) is read and moved
 * on. */
void store_prune_batch(struct store *st, enum store_prune_kind kind, uint64_t older_than_ms,
                       unsigned max, bool wait, struct store_prune_cursor *cur, store_prune_cb cb,
                       void *arg);

/* ---- deliveries ----------------------------------------------------------------------------- */

/* Is outcome one that voidrecon.deliveries keeps (applied, duplicate, stale, conflict, ignored,
 * rejected, failed)? */
bool store_delivery_outcome_valid(const char *outcome);

/* {"deliveries":[...], "next_cursor":...}: newest first, of provider and with outcome (NULL:
 * any), with id below before_id (0: from the newest); bodies are left out. */
void store_deliveries_list(struct store *st, const char *provider, const char *outcome,
                           unsigned limit, int64_t before_id, store_json_cb cb, void *arg);

/* {"delivery":{... "body_encoding": "text"|"base64", "body", "headers", "replay_of",
 * "replays"}, "case_events":[...], "cancellation":{...}|null}; VR_ENOENT: no such delivery. */
void store_delivery_show(struct store *st, int64_t id, store_json_cb cb, void *arg);

/* A delivery as stored, for a replay. */
struct store_stored_delivery {
    int64_t id;
    const char *provider;
    const char *remote_addr; /* NULL when not known */
    const char *body;        /* what is kept, body_len bytes: the whole body or a prefix */
    size_t body_len;
    uint64_t whole_len;  /* the whole body's length: more than body_len for a prefix */
    const char *headers; /* the kept headers, a JSON object; NULL when none were kept */
};

/* d is NULL unless status is 0; VR_ENOENT: no such delivery. */
typedef void (*store_delivery_cb)(int status, const char *error,
                                  const struct store_stored_delivery *d, void *arg);

void store_delivery_load(struct store *st, int64_t id, store_delivery_cb cb, void *arg);

/* ---- the change feed ----------------------------------------------------------------------- */

/* {"events":[...], "next_after": N, "more": bool}: the change feed after the event whose id
 * is after (0: from the start), at most limit (0: STORE_DEFAULT_LIMIT; at most STORE_MAX_LIMIT),
 * in feed order (voidrecon.case_feed): only events whose transaction is older than every
 * running one, so that passing back next_after skips nothing and repeats nothing, whatever
 * order transactions commit in. next_after is the last event's id, or after when there is
 * none. Beside the common statuses: VR_ENOENT, no event has the id after. */
void store_events_list(struct store *st, int64_t after, unsigned limit, store_json_cb cb,
                       void *arg);

/* What a listener hears. Status 0 and payload NULL: LISTEN is in place (at first and after each
 * reconnect; anything announced before went unheard, so read the feed now). Status 0 and a
 * payload: a NOTIFY voidrecon_cases, its JSON object borrowed for the call. VR_EUNAVAIL: the
 * connection was lost or could not be had (error says why); it tries again every second. */
typedef void (*store_listen_cb)(int status, const char *payload, const char *error, void *arg);

/* Listens on voidrecon_cases on a connection of its own (one more than pool_size), until
 * store_close. 0; VR_ESTATE when the store listens already. */
int store_listen_cases(struct store *st, store_listen_cb cb, void *arg) VR_MUSTCHECK;

/* ---- health --------------------------------------------------------------------------------- */

/* What the pool knows right now, without asking the database. */
struct store_pool_state {
    bool starting;    /* no connection attempt has finished yet */
    bool up;          /* at least one connection is established */
    bool read_only;   /* the database refused writes since the last writable connection */
    char reason[200]; /* why the last connection was lost or refused; "" when none */
};

void store_pool_state(const struct store *st, struct store_pool_state *out);

/* The writer's figures, from memory. */
struct store_writer_state {
    size_t queued;          /* writes waiting for a batch */
    unsigned in_flight;     /* batches under way */
    size_t in_flight_items; /* writes in them */
    uint64_t batches;       /* batches written since start */
    uint64_t items;         /* writes in them */
};

void store_writer_state(const struct store *st, struct store_writer_state *out);

/* One health reading. */
struct store_health {
    int schema_version; /* 0: none */
    bool read_only;     /* in recovery (a standby) or refusing writes */
    bool have_gauges;   /* the counts below were read */
    bool gauges_failed; /* asked for, they could not be read: the callback's error says why */
    int64_t open_cases;
    int64_t followup_cases;
    int64_t alert_backlog;
    int64_t poll_lag_ms; /* age of the oldest due poll; 0 when none is due */
    int64_t
        followups[VOIDCASE_FOLLOWUP_COUNT]; /* open follow-ups by reason (voidcase_followup_name) */
    int64_t alert_oldest_ms;                /* age of the oldest undelivered alert; 0 when none */
    int64_t followup_oldest_ms; /* age of the oldest follow-up (case reason or cancellation) */
};

typedef void (*store_health_cb)(int status, const char *error, const struct store_health *h,
                                void *arg);
typedef void (*store_version_cb)(int status, const char *error, int version, void *arg);

/* Reads the schema version and whether the database takes writes, and with gauges also the
 * counts (which cost a scan of the open cases), on the health connection when there is one.
 * status is the check's; counts that fail after a good check give status 0, gauges_failed.
 * A read-only answer makes the pool reconnect every connection (as after a failover); a
 * writable one clears the pool's read-only state. */
void store_read_health(struct store *st, bool gauges, store_health_cb cb, void *arg);

/* The schema version migrations have brought the database to (0: none). */
void store_schema_version(struct store *st, store_version_cb cb, void *arg);

#endif
