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

/* A database schema: an ordered list of migrations (step i moves version i to
 * i+1). Each database file has exactly one schema; application_id (written by
 * the first migration when non-zero) stops one file being opened as another. */
typedef struct {
    const char *name; /* for messages: "caresync", "ledger" */
    const char *const *steps;
    int count;
    int application_id; /* 0: not checked */
} store_schema;

/* The schema of the main database (accounts, sessions, records). */
const store_schema *store_app_schema(void);

/* Open (creating if needed) the database at path with pool_size connections,
 * WAL journal, foreign keys on, synchronous=FULL (a commit survives a crash),
 * secure_delete on (freed pages are zeroed). Applies pending migrations.
 * A database whose schema is newer than this binary is refused with
 * CORE_ERR_VERSION and the file is left untouched. */
core_status store_open(const char *path, int pool_size, store **out, core_error *err);
/* Checkpoint the WAL and close every connection. Accepts NULL. */
void store_close(store *st);
/* Same, for a database with another schema (the ledger keeps its own file). */
core_status store_open_schema(const char *path, int pool_size, const store_schema *schema, store **out,
                              core_error *err);

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
core_status store_migrate_schema(sqlite3 *db, const store_schema *schema, int target, core_error *err);

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

/* ---- per-user generations and the memo of sealed views ------------------
 * A view derived from one user's rows (the rendered records list) may be kept
 * in memory between requests, under a 32-byte key (a session's id hash) — but
 * only as bytes the caller has sealed: the store never sees a plaintext or a
 * key, so the memo holds nothing more readable than the database file.
 *
 * Whoever changes a user's rows or sessions calls store_user_changed() once
 * the change is committed: it drops every memo of that user and moves the
 * user's generation on. Read the generation (store_user_generation) before
 * reading the rows a view is built from and pass it to store_memo_put: a put
 * is refused if the user changed since, so a view of rows read before a write
 * can never be cached after it. Generations are shared by users whose ids
 * fall in the same stripe, which only costs a spurious miss. A memo lives at
 * most STORE_MEMO_TTL seconds, which bounds how long a change made by another
 * process (which cannot call store_user_changed here) goes unseen. */
#define STORE_MEMO_TTL 60
#define STORE_MEMO_MAX (64u << 10) /* larger views are not kept */
uint64_t store_user_generation(store *st, int64_t user_id);
void store_user_changed(store *st, int64_t user_id);
/* On a hit, *blob is a malloc'd copy (caller frees) and *generation the one
 * the memo was put with, which is still the user's current generation. */
bool store_memo_get(store *st, const uint8_t key[32], int64_t user_id, uint8_t **blob, size_t *len,
                    uint64_t *generation);
void store_memo_put(store *st, const uint8_t key[32], int64_t user_id, uint64_t generation, const uint8_t *blob,
                    size_t len);

#endif
