#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/store.h"
#include "testutil.h"

static int scalar(sqlite3 *db, const char *sql) {
    sqlite3_stmt *q = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    return v;
}

static void open_sets_wal_fk_and_latest_schema(void **state) {
    (void)state;
    char dir[256], path[512];
    testutil_tmpdir(dir);
    snprintf(path, sizeof path, "%s/db", dir);
    store *st = NULL;
    core_error err = {0};
    assert_int_equal(store_open(path, 3, &st, &err), CORE_OK);
    char mode[16];
    int version = 0;
    assert_int_equal(store_check(st, mode, &version, &err), CORE_OK);
    assert_string_equal(mode, "wal");
    assert_int_equal(version, store_latest_version());
    assert_int_equal(store_schema_version(st), store_latest_version());
    sqlite3 *db = store_acquire(st);
    assert_int_equal(scalar(db, "PRAGMA foreign_keys"), 1);
    assert_int_equal(scalar(db, "PRAGMA synchronous"), 2); /* FULL */
    assert_int_equal(scalar(db, "PRAGMA secure_delete"), 1);
    /* foreign keys are enforced: a session for a missing user is refused */
    assert_int_not_equal(sqlite3_exec(db, "INSERT INTO sessions VALUES (x'00', 42, 'c', x'00', 0, 0)", 0, 0, 0),
                         SQLITE_OK);
    store_release(st, db);
    store_close(st);
    testutil_rmdir(dir);
}

static void pool_hands_out_distinct_connections(void **state) {
    (void)state;
    char dir[256], path[512];
    testutil_tmpdir(dir);
    snprintf(path, sizeof path, "%s/db", dir);
    store *st = NULL;
    assert_int_equal(store_open(path, 2, &st, NULL), CORE_OK);
    sqlite3 *a = store_acquire(st), *b = store_acquire(st);
    assert_ptr_not_equal(a, b);
    /* a connection returned mid-transaction is rolled back, never leaked open */
    assert_int_equal(store_begin(a, NULL), CORE_OK);
    store_release(st, a);
    sqlite3 *c = store_acquire(st);
    assert_true(sqlite3_get_autocommit(c));
    store_release(st, c);
    store_release(st, b);
    store_close(st);
    testutil_rmdir(dir);
}

/* A database left by an older release (schema v1, one user) upgrades in
 * place and keeps its data. */
static void older_database_upgrades(void **state) {
    (void)state;
    char dir[256], path[512];
    testutil_tmpdir(dir);
    snprintf(path, sizeof path, "%s/db", dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    core_error err = {0};
    assert_int_equal(store_migrate(db, 1, &err), CORE_OK);
    assert_int_equal(scalar(db, "PRAGMA user_version"), 1);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO users(username, role, created_at, pw_salt, pw_ops, pw_mem, "
                                  "pw_verifier, dk_pw, rc_salt, dk_rc) VALUES "
                                  "('old', 'person', 1, x'00', 2, 67108864, x'00', x'00', x'00', x'00')",
                                  0, 0, 0),
                     SQLITE_OK);
    assert_int_equal(scalar(db, "SELECT count(*) FROM sqlite_master WHERE name = 'records'"), 0);
    sqlite3_close(db);

    store *st = NULL;
    assert_int_equal(store_open(path, 1, &st, &err), CORE_OK);
    db = store_acquire(st);
    assert_int_equal(scalar(db, "PRAGMA user_version"), store_latest_version());
    assert_int_equal(scalar(db, "SELECT count(*) FROM users WHERE username = 'old'"), 1);
    assert_int_equal(scalar(db, "SELECT count(*) FROM sqlite_master WHERE name = 'records'"), 1);
    store_release(st, db);
    store_close(st);
    testutil_rmdir(dir);
}

/* A database from a newer release is refused and left untouched. */
static void newer_database_is_refused(void **state) {
    (void)state;
    char dir[256], path[512];
    testutil_tmpdir(dir);
    snprintf(path, sizeof path, "%s/db", dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE future(x); PRAGMA user_version = 99", 0, 0, 0), SQLITE_OK);
    sqlite3_close(db);
    struct stat before, after;
    assert_int_equal(stat(path, &before), 0);
    store *st = NULL;
    core_error err = {0};
    assert_int_equal(store_open(path, 1, &st, &err), CORE_ERR_VERSION);
    assert_null(st);
    assert_non_null(strstr(err.message, "newer"));
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(before.st_size, after.st_size);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(scalar(db, "PRAGMA user_version"), 99);
    sqlite3_close(db);
    testutil_rmdir(dir);
}

static void failed_migration_rolls_back(void **state) {
    (void)state;
    char dir[256], path[512];
    testutil_tmpdir(dir);
    snprintf(path, sizeof path, "%s/db", dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(store_migrate(db, 1, NULL), CORE_OK);
    /* sabotage: migration 2 creates "profiles", so a clash makes it fail */
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE profiles(x)", 0, 0, 0), SQLITE_OK);
    core_error err = {0};
    assert_int_equal(store_migrate(db, store_latest_version(), &err), CORE_ERR_STORAGE);
    assert_non_null(strstr(err.message, "version 2"));
    assert_int_equal(scalar(db, "PRAGMA user_version"), 1);
    assert_int_equal(scalar(db, "SELECT count(*) FROM sqlite_master WHERE name = 'records'"), 0);
    sqlite3_close(db);
    testutil_rmdir(dir);
}

/* The memo of sealed views: a put made with a generation read before a change
 * of that user is refused, a change drops only that user's memos, and views
 * over STORE_MEMO_MAX are not kept. */
static void memo_follows_user_generations(void **state) {
    (void)state;
    char dir[256], path[512];
    testutil_tmpdir(dir);
    snprintf(path, sizeof path, "%s/db", dir);
    store *st = NULL;
    assert_int_equal(store_open(path, 1, &st, NULL), CORE_OK);
    uint8_t ka[32], kb[32], *blob = NULL;
    memset(ka, 0xa1, sizeof ka);
    memset(kb, 0xb2, sizeof kb);
    size_t len = 0;
    uint64_t gen = 0;
    static const uint8_t sealed[] = "opaque sealed bytes";

    uint64_t g1 = store_user_generation(st, 1), g2 = store_user_generation(st, 2);
    store_memo_put(st, ka, 1, g1, sealed, sizeof sealed);
    store_memo_put(st, kb, 2, g2, sealed, sizeof sealed);
    assert_true(store_memo_get(st, ka, 1, &blob, &len, &gen));
    assert_int_equal(len, sizeof sealed);
    assert_memory_equal(blob, sealed, sizeof sealed);
    assert_int_equal(gen, g1);
    free(blob);
    /* the key and the owner must both match */
    assert_false(store_memo_get(st, ka, 2, &blob, &len, &gen));
    assert_null(blob);
    assert_false(store_memo_get(st, kb, 1, &blob, &len, &gen));

    /* a change of user 1 drops user 1's memo, not user 2's */
    store_user_changed(st, 1);
    assert_false(store_memo_get(st, ka, 1, &blob, &len, &gen));
    assert_true(store_memo_get(st, kb, 2, &blob, &len, &gen));
    free(blob);

    /* a view rendered from rows read before the change arrives after it: refused */
    store_memo_put(st, ka, 1, g1, sealed, sizeof sealed);
    assert_false(store_memo_get(st, ka, 1, &blob, &len, &gen));
    g1 = store_user_generation(st, 1);
    store_memo_put(st, ka, 1, g1, sealed, sizeof sealed);
    assert_true(store_memo_get(st, ka, 1, &blob, &len, &gen));
    free(blob);

    /* oversized views are not kept */
    uint8_t *big = calloc(1, STORE_MEMO_MAX + 1);
    assert_non_null(big);
    uint8_t kc[32];
    memset(kc, 0xc3, sizeof kc);
    store_memo_put(st, kc, 3, store_user_generation(st, 3), big, STORE_MEMO_MAX + 1);
    free(big);
    assert_false(store_memo_get(st, kc, 3, &blob, &len, &gen));

    store_close(st);
    testutil_rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(open_sets_wal_fk_and_latest_schema),
        cmocka_unit_test(pool_hands_out_distinct_connections),
        cmocka_unit_test(older_database_upgrades),
        cmocka_unit_test(newer_database_is_refused),
        cmocka_unit_test(failed_migration_rolls_back),
        cmocka_unit_test(memo_follows_user_generations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
