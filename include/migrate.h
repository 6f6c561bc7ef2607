/* Schema migrations: numbered SQL files embedded in the binary, applied forward only. */
#ifndef VR_MIGRATE_H
#define VR_MIGRATE_H

#include <stddef.h>

#include <libpq-fe.h>

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

/* Applies every pending migration on conn (a blocking connection), each in its own
 * transaction, under an advisory lock so that concurrent runs wait for each other.
 * *applied gets the number applied. On failure writes a message into err. */
int migrate_apply(PGconn *conn, int *applied, char *err, size_t errlen) VR_MUSTCHECK;

/* Reads the applied version into *version (0 for an empty database). Returns 0 when the
 * database is current (or ahead), VR_EBEHIND when migrations are pending, VR_EDB on error. */
int migrate_check(PGconn *conn, int *version, char *err, size_t errlen) VR_MUSTCHECK;

/* SQL that returns the applied version as one row, one column; for asynchronous checks. */
extern const char migrate_sql_version[];

#endif
