/* store — SQLite storage: opening, pragmas, a small connection pool and
 * versioned migrations.
 *
 * Callers borrow a connection with store_acquire() and must hand it back with
 * store_release(); a connection is used by one thread at a time. The store
 * owns every connection. */
#ifndef CARESYNC_STORE_H
#define CARESYNC_STORE_H

#include <sqlite3.h>

#include "core/core.h"

typedef struct store store;

/* Open (creating if needed) the database at path with pool_size connections,
 * WAL journal, foreign keys on, synchronous=FULL (a commit survives a crash),
 * secure_delete on (freed pages are zeroed). Applies pending migrations.
 * A database whose schema is newer than this binary is refused with
 * CORE_ERR_VERSION and the file is left untouched. */
core_status store_open(const char *path, int pool_size, store **out, core_error *err);
/* Checkpoint the WAL and close every connection. Accepts NULL. */
void store_close(store *st);

sqlite3 *store_acquire(store *st);
void store_release(store *st, sqlite3 *db);

/* Schema version this binary writes, and the version of an open database. */
int store_latest_version(void);
int store_schema_version(store *st);
/* Health probe: runs a trivial query; fills journal mode ("wal"). */
core_status store_check(store *st, char journal_mode[16], int *schema_version, core_error *err);

/* Migrate an open connection up to target (≤ latest). Exposed so tests can
 * build databases as an older release would have left them. */
core_status store_migrate(sqlite3 *db, int target, core_error *err);

/* Transaction helpers. begin takes the write lock at once (BEGIN IMMEDIATE)
 * so two writers never deadlock on lock upgrade. */
core_status store_begin(sqlite3 *db, core_error *err);
core_status store_commit(sqlite3 *db, core_error *err);
void store_rollback(sqlite3 *db);
/* Prepare a statement; reports SQLite's message in err on failure. */
core_status store_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, core_error *err);
/* Hot-path variant: the statement is prepared once per connection and kept
 * (keyed by the address of sql, so pass a string literal). Do NOT finalize
 * it; store_release() resets it for the next user. */
core_status store_prepare_cached(store *st, sqlite3 *db, const char *sql, sqlite3_stmt **out, core_error *err);
/* Fill err from the connection's last SQLite error. */
core_status store_error(sqlite3 *db, core_error *err);

#endif
