/* Command-line operations that work straight on the database, so they work while no server
 * runs; each uses the same store functions as the HTTP API. */
#ifndef VR_CLI_H
#define VR_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "config.h"

/* Registers a void case as POST /v1/cases does (source "api"; status 0 right after void.do).
 * Prints the result to out (JSON with json) and returns the exit status: 0, or 1 with the
 * reason logged. */
int cli_cases_add(const struct config *cfg, const char *order_no, const char *void_code, int status,
                  bool json, FILE *out);

#endif
