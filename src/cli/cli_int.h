/* The commands that work straight on the database, so they work while no server runs; each
 * calls the same store functions as the HTTP API and prints a table, or with json the API's
 * JSON document. Each returns the exit status: 0; 1 when the operation failed (said on stderr);
 * 2 for bad arguments. */
#ifndef VR_CLI_INT_H
#define VR_CLI_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

/* Registers a void case as POST /v1/cases does (source "api"; status 0 right after void.do). */
int cli_cases_add(const struct config *cfg, const char *order_no, const char *void_code, int status,
                  bool json, FILE *out);

/* Lists cases in state (open, followup, rejected, all); limit 0: the default page. */
int cli_cases_list(const struct config *cfg, const char *state, unsigned limit, const char *cursor,
                   bool json, FILE *out);

/* Shows one case with its history, alerts and acknowledgements. */
int cli_cases_show(const struct config *cfg, const char *order_no, const char *void_code, bool json,
                   FILE *out);

/* Acknowledges the case's open follow-up reason (NULL: every open one) as by, with an optional
 * note. */
int cli_cases_ack(const struct config *cfg, const char *order_no, const char *void_code,
                  const char *reason, const char *by, const char *note, bool json, FILE *out);

/* Lists order cancellations in state (open, acked, all), newest first. */
int cli_cancellations_list(const struct config *cfg, const char *state, unsigned limit,
                           const char *cursor, bool json, FILE *out);

/* Shows one order cancellation; id is the argument as given. */
int cli_cancellations_show(const struct config *cfg, const char *id, bool json, FILE *out);

/* Acknowledges an order cancellation as by, with an optional note. */
int cli_cancellations_ack(const struct config *cfg, const char *id, const char *by,
                          const char *note, bool json, FILE *out);

/* Lists alerts in state (pending, delivered, all), newest first. */
int cli_alerts_list(const struct config *cfg, const char *state, unsigned limit, const char *cursor,
                    bool json, FILE *out);

/* Prunes what retention allows, batch after batch to the end, as serve does on its timer,
 * and prints how many deliveries and history rows it removed. */
int cli_prune(const struct config *cfg, bool json, FILE *out);

/* Lists deliveries newest first, of provider and with outcome (NULL: any). */
int cli_deliveries_list(const struct config *cfg, const char *provider, const char *outcome,
                        unsigned limit, const char *cursor, bool json, FILE *out);

/* Shows one delivery (id as given on the command line) with its body, kept headers and
 * effects. */
int cli_deliveries_show(const struct config *cfg, const char *id, bool json, FILE *out);

/* Replays each of the n deliveries of ids in turn, through the providers of cfg; 1 when any
 * could not be replayed (each said on stderr). */
int cli_deliveries_replay(const struct config *cfg, const char *const *ids, int n, bool json,
                          FILE *out);

struct cli_events_opts {
    int64_t after;    /* the last event already seen; 0: from the start */
    unsigned limit;   /* a page; 0: the default */
    bool follow;      /* keep printing new events until interrupted */
    unsigned poll_ms; /* with follow: read at least this often; 0: every second */
    bool json;
};

/* Lists the case history after the event o->after in feed order, as GET /v1/events does. With
 * follow, keeps printing each new event as a line (a JSON object with json) until SIGINT or
 * SIGTERM, then exits 0: it listens on voidrecon_cases and reads from the last event printed
 * at each notification, when it starts listening (again), and every poll_ms in case a
 * notification went missing. */
int cli_events(const struct config *cfg, const struct cli_events_opts *o, FILE *out);

#endif
