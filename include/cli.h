/* The command line: voidrecon COMMAND [ARGUMENTS] [--setting=VALUE ...]. Parses commands and
 * their options, prints help, and runs migrate, cases, alerts and version itself; serve runs
 * the function main gives it. */
#ifndef VR_CLI_H
#define VR_CLI_H

#include "config.h"

/* Runs the service with cfg (loaded, validated and logged) until it stops; returns the exit
 * status. cfg is borrowed for the call. */
typedef int (*cli_serve_fn)(const struct config *cfg);

/* Runs the command of argv[1] and returns the process exit status: 0; 1 when the operation
 * failed; 2 for bad arguments or settings. Failures are said on stderr. */
int cli_main(int argc, char **argv, cli_serve_fn serve);

#endif
