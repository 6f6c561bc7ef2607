/* Schema migrations: numbered SQL files embedded in the binary, applied forward only, and the
 * check of the schema that serve makes at start. Both use one short blocking connection and are
 * meant for start-up and the command line, before any loop runs. */
#ifndef VR_MIGRATE_H
#define VR_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"

struct migration {
    const char *name; /* file name, "0001_initial.sql"; the leading number is the version */
    const char *sql;
};

/* The migrations compiled in, in version order (generated from migrations/). */
extern const struct migration migrate_embedded[];
extern const size_t migrate_embedded_count;

/* The schema version this binary expects: the number of its last migration. */
int migrate_latest_version(void);

/* Connects to conninfo and applies every pending migration, each in its own transaction, under
 * an advisory lock so that concurrent runs wait for each other; logs each one it applies.
 * *applied gets how many it applied and *version the schema's version afterwards. 0, or
 * VR_EUNAVAIL (no connection) or VR_EDB, with one line in err naming the problem. */
int migrate_run(const char *conninfo, int *applied, int *version, char *err,
                size_t errlen) VR_MUSTCHECK;

/* One migration as the binary and the database see it. */
struct migrate_entry {
    int version;
    const char *name;              /* the binary's file name, else the one recorded */
    const struct migration *known; /* the binary's; NULL: only the database has it */
    bool applied;                  /* recorded in voidrecon.schema_migrations */
    char applied_at[40];           /* when, ISO 8601 UTC; "" when pending */
};

/* What migrate --status shows: every migration the binary knows and every one the database
 * records, in version order. */
struct migrate_status {
    int db_version;     /* the highest recorded (0: none, or no voidrecon schema) */
    int binary_version; /* migrate_latest_version() */
    size_t npending;    /* known to the binary, not recorded */
    size_t nunknown;    /* recorded, not known to the binary: the schema is newer */
    struct migrate_entry *entries;
    size_t nentries;
};

/* Reads the recorded migrations into out, in one read-only transaction that takes no lock and
 * creates nothing (safe beside a running service or a migrate under way). 0, or VR_EUNAVAIL
 * (no connection) or VR_EDB with one line in err. Caller frees with migrate_status_free either
 * way. */
int migrate_status_read(const char *conninfo, struct migrate_status *out, char *err,
                        size_t errlen) VR_MUSTCHECK;

void migrate_status_free(struct migrate_status *st);

/* serve's policy at start: a schema that is behind is refused (VR_EBEHIND, logged as an error
 * saying to run voidrecon migrate); a database that cannot be reached or read is only a
 * warning (0, *current false), since the service answers 503 until it is back and re-checks;
 * otherwise 0 with *current true. Logs what it finds: the caller need not. */
int migrate_check_startup(const char *conninfo, bool *current) VR_MUSTCHECK;

#endif
