/* store — connection pool and SQLite plumbing. */
#include "store/store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STMT_CACHE 16

typedef struct {
    const char *sql; /* identity of a string literal */
    sqlite3_stmt *st;
} cached_stmt;

struct store {
    cached_stmt (*cache)[STMT_CACHE]; /* per connection, same index as all[] */
    pthread_mutex_t lock;
    pthread_cond_t available;
    int size;
    int free_count;
    sqlite3 **all;
    sqlite3 **free_list;
    int schema_version;
};

core_status store_error(sqlite3 *db, core_error *err) {
    return core_fail(err, CORE_ERR_STORAGE, NULL, "storage error: %s", sqlite3_errmsg(db));
}

core_status store_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, core_error *err) {
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK) return store_error(db, err);
    return CORE_OK;
}

core_status store_begin(sqlite3 *db, core_error *err) {
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) return store_error(db, err);
    return CORE_OK;
}

core_status store_commit(sqlite3 *db, core_error *err) {
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        core_status rc = store_error(db, err);
        store_rollback(db);
        return rc;
    }
    return CORE_OK;
}

void store_rollback(sqlite3 *db) {
    if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

static core_status open_one(const char *path, sqlite3 **out, core_error *err) {
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        core_fail(err, CORE_ERR_STORAGE, NULL, "cannot open database %s: %s", path,
                  db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return CORE_ERR_STORAGE;
    }
    sqlite3_busy_timeout(db, 5000);
    /* synchronous=FULL: in WAL mode NORMAL may lose the last commits on power
     * loss; a health record the user saw saved must stay saved. */
    const char *pragmas = "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;"
                          "PRAGMA synchronous=FULL; PRAGMA secure_delete=ON;";
    if (sqlite3_exec(db, pragmas, NULL, NULL, NULL) != SQLITE_OK) {
        core_fail(err, CORE_ERR_STORAGE, NULL, "cannot configure database: %s", sqlite3_errmsg(db));
        sqlite3_close(db);
        return CORE_ERR_STORAGE;
    }
    *out = db;
    return CORE_OK;
}

core_status store_open(const char *path, int pool_size, store **out, core_error *err) {
    *out = NULL;
    if (pool_size < 1) pool_size = 1;
    store *st = calloc(1, sizeof *st);
    if (!st) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    st->all = calloc((size_t)pool_size, sizeof *st->all);
    st->free_list = calloc((size_t)pool_size, sizeof *st->free_list);
    st->cache = calloc((size_t)pool_size, sizeof *st->cache);
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->available, NULL);
    if (!st->all || !st->free_list || !st->cache) {
        store_close(st);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    for (int i = 0; i < pool_size; i++) {
        core_status rc = open_one(path, &st->all[i], err);
        if (!rc && i == 0) rc = store_migrate(st->all[0], store_latest_version(), err);
        if (rc) {
            sqlite3_close(st->all[i]); /* not yet counted in st->size */
            store_close(st);
            return rc;
        }
        st->size++;
        st->free_list[st->free_count++] = st->all[i];
    }
    st->schema_version = store_latest_version();
    *out = st;
    return CORE_OK;
}

void store_close(store *st) {
    if (!st) return;
    for (int i = 0; i < st->size; i++) {
        for (int j = 0; j < STMT_CACHE; j++) sqlite3_finalize(st->cache[i][j].st);
        if (i == 0) sqlite3_wal_checkpoint_v2(st->all[i], NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        sqlite3_close(st->all[i]);
    }
    free(st->all);
    free(st->free_list);
    free(st->cache);
    pthread_mutex_destroy(&st->lock);
    pthread_cond_destroy(&st->available);
    free(st);
}

sqlite3 *store_acquire(store *st) {
    pthread_mutex_lock(&st->lock);
    while (st->free_count == 0) pthread_cond_wait(&st->available, &st->lock);
    sqlite3 *db = st->free_list[--st->free_count];
    pthread_mutex_unlock(&st->lock);
    return db;
}

static int conn_index(const store *st, const sqlite3 *db) {
    for (int i = 0; i < st->size; i++)
        if (st->all[i] == db) return i;
    return -1;
}

core_status store_prepare_cached(store *st, sqlite3 *db, const char *sql, sqlite3_stmt **out, core_error *err) {
    int i = conn_index(st, db);
    if (i < 0) return core_fail(err, CORE_ERR_STORAGE, NULL, "connection is not from this store");
    for (int j = 0; j < STMT_CACHE; j++) {
        cached_stmt *c = &st->cache[i][j];
        if (c->sql == sql) { *out = c->st; return CORE_OK; }
        if (!c->sql) {
            if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &c->st, NULL) != SQLITE_OK)
                return store_error(db, err);
            c->sql = sql;
            *out = c->st;
            return CORE_OK;
        }
    }
    return core_fail(err, CORE_ERR_STORAGE, NULL, "statement cache is full (raise STMT_CACHE)");
}

void store_release(store *st, sqlite3 *db) {
    /* Reset cached statements so none holds a read transaction open. */
    int i = conn_index(st, db);
    for (int j = 0; i >= 0 && j < STMT_CACHE && st->cache[i][j].sql; j++) sqlite3_reset(st->cache[i][j].st);
    store_rollback(db); /* a connection never goes back with an open transaction */
    pthread_mutex_lock(&st->lock);
    st->free_list[st->free_count++] = db;
    pthread_cond_signal(&st->available);
    pthread_mutex_unlock(&st->lock);
}

int store_schema_version(store *st) { return st->schema_version; }

core_status store_check(store *st, char journal_mode[16], int *schema_version, core_error *err) {
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db, "PRAGMA journal_mode", &q, err);
    if (!rc) {
        if (sqlite3_step(q) == SQLITE_ROW) {
            snprintf(journal_mode, 16, "%s", (const char *)sqlite3_column_text(q, 0));
        } else {
            rc = store_error(db, err);
        }
    }
    sqlite3_finalize(q);
    if (!rc) {
        rc = store_prepare(db, "PRAGMA user_version", &q, err);
        if (!rc && sqlite3_step(q) == SQLITE_ROW) *schema_version = sqlite3_column_int(q, 0);
        sqlite3_finalize(q);
    }
    store_release(st, db);
    return rc;
}
