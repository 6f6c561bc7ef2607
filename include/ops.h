/* What people and their tools ask of the store: lists of cases, alerts and cancellations, one
 * case with its history, and acknowledging a follow-up. PostgreSQL builds each answer as one
 * JSON document; the API sends it as it is and the CLI prints it as a table. */
#ifndef VR_OPS_H
#define VR_OPS_H

#include "common.h"
#include "db.h"

#define OPS_DEFAULT_LIMIT 50
#define OPS_MAX_LIMIT     500

/* status 0 with json (borrowed for the call); VR_ENOENT: no such case; VR_ESTATE: the case has
 * no follow-up waiting to be acknowledged; VR_EINVAL: a bad cursor; VR_EUNAVAIL, VR_EDB as
 * from db_classify. */
typedef void (*ops_cb)(int status, const char *json, void *arg);

/* Is state one of the case listings (open, followup, rejected, all)? */
int ops_case_state_valid(const char *state);
/* Is state one of the alert listings (pending, delivered, all)? */
int ops_alert_state_valid(const char *state);

/* {"cases":[...], "next_cursor": "..." or null}: cases in state, ordered by (order_no,
 * void_code), at most limit (1..OPS_MAX_LIMIT), after cursor (NULL: from the start). Every
 * string argument is borrowed until cb runs. */
void ops_cases_list(struct db *db, const char *state, unsigned limit, const char *cursor, ops_cb cb,
                    void *arg);

/* {"case":{...}, "history":[...], "alerts":[...], "acknowledgements":[...]} */
void ops_case_show(struct db *db, const char *order_no, const char *void_code, ops_cb cb,
                   void *arg);

/* Clears the case's follow-up, recording who and why; answers {"case":{...}}. */
void ops_case_ack(struct db *db, const char *order_no, const char *void_code, const char *by,
                  const char *note, ops_cb cb, void *arg);

/* {"alerts":[...], "next_cursor":...}: newest first, in state, before cursor (an alert id). */
void ops_alerts_list(struct db *db, const char *state, unsigned limit, const char *cursor,
                     ops_cb cb, void *arg);

/* {"cancellations":[...], "next_cursor":...}: newest first, before cursor (an id). */
void ops_cancellations_list(struct db *db, unsigned limit, const char *cursor, ops_cb cb,
                            void *arg);

#endif
