/* Durable effects in PostgreSQL: deliveries, void-case reports through the state machine, order
 * cancellations, and the alerts they raise, each written by one atomic statement. */
#ifndef VR_STORE_H
#define VR_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "atlas.h"
#include "common.h"
#include "db.h"
#include "voidcase.h"

struct store_config {
    uint64_t poll_first_ms;   /* first poll of a case that appears open */
    uint64_t poll_confirm_ms; /* poll confirming a closing that only a hint reported */
};

/* A received webhook, as it is kept in voidrecon.deliveries. */
struct store_delivery {
    const char *provider;    /* "atlas", "xsolla", "xendbridge" */
    const char *event_type;  /* NULL when it could not be read */
    const char *remote_addr; /* textual peer address */
    const char *body;        /* raw body, body_len bytes (any bytes) */
    size_t body_len;
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
     * the case open, and the answer itself, whose details are kept on the case. */
    int64_t seen_version;
    int64_t lease_token;
    uint64_t next_poll_ms;
    const struct atlas_void_order *answer;
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
    const char *outcome; /* static: applied, duplicate, stale, conflict, ignored, rejected */
    int64_t alert_id;    /* 0 when no alert was raised */
    bool created;        /* a void report created the case */
    int to_status;       /* a void report: the case's status afterwards */
};

/* status 0 with res; VR_EUNAVAIL when the database is unreachable or the failure is transient
 * (retrying later may succeed); VR_EDB for any other database error (already logged);
 * VR_ESTATE for a poll whose lease another process has taken over (nothing written). res is
 * borrowed for the duration of the call. */
typedef void (*store_done_cb)(int status, const struct store_result *res, void *arg);

/* A case leased for one poll. */
struct store_lease {
    char *order_no;
    char *void_code;
    int64_t version;     /* when leased */
    int64_t lease_token; /* give it back with the answer */
    int polls;           /* good answers so far */
    int poll_failures;   /* failures in a row so far */
};

/* status as for store_done_cb; leases (n of them) are borrowed for the call. */
typedef void (*store_lease_cb)(int status, const struct store_lease *leases, size_t n, void *arg);
/* status as for store_done_cb, and how many rows the operation touched. */
typedef void (*store_count_cb)(int status, int64_t count, void *arg);

struct store;

/* Creates a store over db (borrowed; it must outlive the store). Caller frees with store_free
 * once no operation is pending. */
struct store *store_new(struct db *db, const struct store_config *cfg);
void store_free(struct store *st);

/* Keeps a delivery with a final outcome ("ignored" or "rejected") and reason (NULL allowed).
 * d and its strings are borrowed until cb runs. */
void store_record_delivery(struct store *st, const struct store_delivery *d, const char *outcome,
                           const char *reason, store_done_cb cb, void *arg);

/* Applies a report through voidcase_decide: the case, its history row, the delivery (when d is
 * not NULL), the follow-up flag and any alert are written together or not at all. d and rep
 * are borrowed until cb runs. */
void store_apply_void(struct store *st, const struct store_delivery *d,
                      const struct store_void_report *rep, store_done_cb cb, void *arg);

/* Leases up to max cases that are due for a poll and not leased by anyone (FOR UPDATE SKIP
 * LOCKED), for lease_ms, oldest due first. */
void store_lease_due(struct store *st, unsigned max, uint64_t lease_ms, store_lease_cb cb,
                     void *arg);

/* Records a failed poll of a leased case: counts it, keeps error, releases the lease and
 * schedules the next try retry_ms from now. The failure that makes failures_alert in a row
 * flags the case poll_failing with one void_poll_failing alert. VR_ESTATE when the lease was
 * lost. order_no, void_code and error are borrowed until cb runs. */
void store_poll_failed(struct store *st, const char *order_no, const char *void_code,
                       int64_t lease_token, const char *error, uint64_t retry_ms,
                       unsigned failures_alert, store_done_cb cb, void *arg);

/* Flags up to max cases still open stuck_after_ms after they appeared, once each, with one
 * void_stuck alert each; cb gets how many were flagged. */
void store_flag_stuck(struct store *st, uint64_t stuck_after_ms, unsigned max, store_count_cb cb,
                      void *arg);

/* Records an order cancellation and its delivery; a repeat of a known (provider, order_ref)
 * is a "duplicate" that changes nothing else. d and c are borrowed until cb runs. */
void store_record_cancellation(struct store *st, const struct store_delivery *d,
                               const struct store_cancellation *c, store_done_cb cb, void *arg);

#endif
