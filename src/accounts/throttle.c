/* accounts — failed-attempt counters in fixed windows. A window starts at the
 * first failure; after `limit` failures further attempts are refused until the
 * window ends. Checked before the expensive Argon2id step, so a flood of bad
 * logins costs the server almost nothing. */
#include "accounts/accounts.h"

core_status accounts_throttle_check(sqlite3 *db, const char *key, int limit, int window, core_error *err) {
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db, "SELECT failures, window_start FROM login_throttle WHERE key = ?", &q, err);
    if (rc) return rc;
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    int step = sqlite3_step(q);
    if (step == SQLITE_ROW) {
        int failures = sqlite3_column_int(q, 0);
        int64_t start = sqlite3_column_int64(q, 1);
        int64_t left = start + window - core_now();
        if (failures >= limit && left > 0) {
            rc = core_fail(err, CORE_ERR_THROTTLED, NULL, "too many failed attempts; try again in %lld seconds",
                           (long long)left);
            if (err) err->retry_after = (int)left;
        }
    } else if (step != SQLITE_DONE) {
        rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    return rc;
}

core_status accounts_throttle_fail(sqlite3 *db, const char *key, int window, core_error *err) {
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db,
                                   "INSERT INTO login_throttle(key, failures, window_start) VALUES (?1, 1, ?2) "
                                   "ON CONFLICT(key) DO UPDATE SET "
                                   "  failures = CASE WHEN ?2 - window_start >= ?3 THEN 1 ELSE failures + 1 END,"
                                   "  window_start = CASE WHEN ?2 - window_start >= ?3 THEN ?2 ELSE window_start END",
                                   &q, err);
    if (rc) return rc;
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, core_now());
    sqlite3_bind_int(q, 3, window);
    if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    sqlite3_finalize(q);
    return rc;
}

core_status accounts_throttle_clear(sqlite3 *db, const char *key, core_error *err) {
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db, "DELETE FROM login_throttle WHERE key = ?", &q, err);
    if (rc) return rc;
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    sqlite3_finalize(q);
    return rc;
}
