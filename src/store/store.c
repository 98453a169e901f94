/* store — connection pool and SQLite plumbing. */
#include "store/store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STMT_CACHE 64 /* distinct hot statements per connection (every module's together) */
/* Memo slots are chosen by key (a session hash, uniformly random), so a
 * collision just evicts. 512 slots of at most STORE_MEMO_MAX bytes bound the
 * memo at 32 MiB; in practice a slot holds a few KiB. */
#define MEMO_SLOTS 512
#define GEN_STRIPES 4096

typedef struct {
    bool used;
    uint8_t key[32];
    int64_t user_id;
    uint64_t generation;
    int64_t expires_at;
    uint8_t *blob;
    size_t len;
} memo_slot;

typedef struct {
    const char *sql; /* identity of a string literal */
    sqlite3_stmt *q;
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
    pthread_mutex_t memo_lock; /* guards gen[] and memo[] */
    uint64_t gen[GEN_STRIPES];
    memo_slot memo[MEMO_SLOTS];
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
    return store_open_schema(path, pool_size, store_app_schema(), out, err);
}

core_status store_open_schema(const char *path, int pool_size, const store_schema *schema, store **out,
                              core_error *err) {
    *out = NULL;
    if (pool_size < 1) pool_size = 1;
    store *st = calloc(1, sizeof *st);
    if (!st) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    st->all = calloc((size_t)pool_size, sizeof *st->all);
    st->free_list = calloc((size_t)pool_size, sizeof *st->free_list);
    st->cache = calloc((size_t)pool_size, sizeof *st->cache);
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->available, NULL);
    pthread_mutex_init(&st->memo_lock, NULL);
    if (!st->all || !st->free_list || !st->cache) {
        store_close(st);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    for (int i = 0; i < pool_size; i++) {
        core_status rc = open_one(path, &st->all[i], err);
        if (!rc && i == 0) rc = store_migrate_schema(st->all[0], schema, schema->count, err);
        if (rc) {
            sqlite3_close(st->all[i]); /* not yet counted in st->size */
            store_close(st);
            return rc;
        }
        st->size++;
        st->free_list[st->free_count++] = st->all[i];
    }
    st->schema_version = schema->count;
    *out = st;
    return CORE_OK;
}

void store_close(store *st) {
    if (!st) return;
    for (int i = 0; i < st->size; i++) {
        for (int j = 0; j < STMT_CACHE; j++) sqlite3_finalize(st->cache[i][j].q);
        if (i == 0) sqlite3_wal_checkpoint_v2(st->all[i], NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        sqlite3_close(st->all[i]);
    }
    free(st->all);
    free(st->free_list);
    free(st->cache);
    for (int i = 0; i < MEMO_SLOTS; i++) free(st->memo[i].blob);
    pthread_mutex_destroy(&st->lock);
    pthread_cond_destroy(&st->available);
    pthread_mutex_destroy(&st->memo_lock);
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
        if (c->sql == sql) {
            *out = c->q;
            return CORE_OK;
        }
        if (!c->sql) {
            if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &c->q, NULL) != SQLITE_OK)
                return store_error(db, err);
            c->sql = sql;
            *out = c->q;
            return CORE_OK;
        }
    }
    return core_fail(err, CORE_ERR_STORAGE, NULL, "statement cache is full (raise STMT_CACHE)");
}

void store_release(store *st, sqlite3 *db) {
    /* Reset cached statements so none holds a read transaction open. */
    int i = conn_index(st, db);
    for (int j = 0; i >= 0 && j < STMT_CACHE && st->cache[i][j].sql; j++) sqlite3_reset(st->cache[i][j].q);
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

/* ---- memo ---------------------------------------------------------------- */
static size_t stripe_of(int64_t user_id) { return (size_t)((uint64_t)user_id % GEN_STRIPES); }

static size_t memo_index(const uint8_t key[32]) {
    size_t v;
    memcpy(&v, key, sizeof v);
    return v % MEMO_SLOTS;
}

static void memo_clear(memo_slot *m) {
    free(m->blob);
    memset(m, 0, sizeof *m);
}

uint64_t store_user_generation(store *st, int64_t user_id) {
    pthread_mutex_lock(&st->memo_lock);
    uint64_t g = st->gen[stripe_of(user_id)];
    pthread_mutex_unlock(&st->memo_lock);
    return g;
}

void store_user_changed(store *st, int64_t user_id) {
    pthread_mutex_lock(&st->memo_lock);
    st->gen[stripe_of(user_id)]++;
    for (size_t i = 0; i < MEMO_SLOTS; i++)
        if (st->memo[i].used && st->memo[i].user_id == user_id) memo_clear(&st->memo[i]);
    pthread_mutex_unlock(&st->memo_lock);
}

bool store_memo_get(store *st, const uint8_t key[32], int64_t user_id, uint8_t **blob, size_t *len,
                    uint64_t *generation) {
    *blob = NULL;
    bool hit = false;
    int64_t now = core_now();
    pthread_mutex_lock(&st->memo_lock);
    memo_slot *m = &st->memo[memo_index(key)];
    if (m->used && m->user_id == user_id && memcmp(m->key, key, 32) == 0) {
        /* The generation test is belt and braces: store_user_changed drops
         * the user's memos as it moves the generation on. */
        if (m->expires_at > now && m->generation == st->gen[stripe_of(user_id)]) {
            *blob = malloc(m->len);
            if (*blob) {
                memcpy(*blob, m->blob, m->len);
                *len = m->len;
                *generation = m->generation;
                hit = true;
            }
        } else {
            memo_clear(m);
        }
    }
    pthread_mutex_unlock(&st->memo_lock);
    return hit;
}

void store_memo_put(store *st, const uint8_t key[32], int64_t user_id, uint64_t generation, const uint8_t *blob,
                    size_t len) {
    if (len == 0 || len > STORE_MEMO_MAX) return;
    uint8_t *copy = malloc(len); /* outside the lock */
    if (!copy) return;
    memcpy(copy, blob, len);
    int64_t expires = core_now() + STORE_MEMO_TTL;
    pthread_mutex_lock(&st->memo_lock);
    if (generation == st->gen[stripe_of(user_id)]) {
        memo_slot *m = &st->memo[memo_index(key)];
        memo_clear(m);
        *m = (memo_slot){.used = true,
                         .user_id = user_id,
                         .generation = generation,
                         .expires_at = expires,
                         .blob = copy,
                         .len = len};
        memcpy(m->key, key, 32);
        copy = NULL;
    }
    pthread_mutex_unlock(&st->memo_lock);
    free(copy);
}
