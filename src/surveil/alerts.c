/* Alerts: run a detector over every (region, condition) series with data and
 * keep what it flags in the last weeks, for analysts to see and acknowledge.
 * Detection reads exact counts (inside the service); what an alert shows
 * outside is the week, the method and the threshold, and the count only
 * when the dashboard's suppression would publish it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "surveil/surveil.h"

void surveil_alert_params(int history_weeks, surveil_params *p) {
    /* whole years before the first of the 8 weeks alerts look at, less
     * Farrington's half-window of 3: every one of those weeks is evaluated */
    int years = (history_weeks - 8 - 4) / 52;
    if (years < 2) {
        surveil_params_init(p, SURVEIL_C2);
        return;
    }
    surveil_params_init(p, SURVEIL_FARRINGTON);
    p->b = years < 5 ? years : 5;
    p->no_periods = 10;
    p->past_weeks = 26;
    p->weights_threshold = 2.58;
    p->threshold = SURVEIL_THRESHOLD_NBPLUGIN;
}

/* One series' alarms in the last `recent` weeks become alerts. */
static core_status alert_series(store *st, sqlite3 *db, const surveil_params *p, const char *region,
                                const char *condition, const double *x, size_t n, int first, int week_now, int recent,
                                int min_count, bool synthetic, surveil_point *out, int64_t now, int *added,
                                core_error *err) {
    size_t start;
    core_error derr = {0};
    /* a series too short for the method has no alerts yet; not an error */
    if (surveil_detect(p, x, n, &start, out, &derr) != CORE_OK) return CORE_OK;
    for (size_t t = start; t < n; t++) {
        int week = first + (int)t;
        if (week <= week_now - recent || out[t - start].alarm != 1 || x[t] < min_count) continue;
        sqlite3_stmt *q;
        core_status rc = store_prepare_cached(st, db,
                                              "INSERT OR IGNORE INTO surveil_alerts (region, condition, week, method, "
                                              "observed, upperbound, synthetic, created_at) "
                                              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                                              &q, err);
        if (rc) return rc;
        sqlite3_bind_text(q, 1, region, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, condition, -1, SQLITE_STATIC);
        sqlite3_bind_int(q, 3, week);
        sqlite3_bind_text(q, 4, surveil_method_name(p->method), -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 5, (int64_t)x[t]);
        sqlite3_bind_double(q, 6, out[t - start].upperbound);
        sqlite3_bind_int(q, 7, synthetic);
        sqlite3_bind_int64(q, 8, now);
        if (sqlite3_step(q) != SQLITE_DONE)
            rc = store_error(db, err);
        else
            *added += sqlite3_changes(db);
        sqlite3_reset(q);
        if (rc) return rc;
    }
    return CORE_OK;
}

/* One pass over the counts, ordered by (region, condition, week): each
 * series is built in memory and run as soon as the next one starts. */
core_status surveil_scan(store *st, const surveil_params *p, int week_now, int recent, int min_count, int *added,
                         core_error *err) {
    *added = 0;
    int first, last;
    core_status rc = surveil_extent(st, week_now, &first, &last, err);
    if (rc == CORE_ERR_NOT_FOUND) return CORE_OK;
    if (rc) return rc;
    if (week_now < first) return CORE_OK;
    size_t n = (size_t)(week_now - first + 1);
    double *x = malloc(n * sizeof *x);
    surveil_point *out = malloc(n * sizeof *out);
    if (!x || !out) {
        free(x);
        free(out);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    /* SQLite lets one connection insert alerts while it reads the counts */
    sqlite3 *rdb = store_acquire(st), *wdb = rdb;
    sqlite3_stmt *q;
    rc = store_prepare_cached(st, rdb,
                              "SELECT region, condition, week, sum(n), max(synthetic) FROM surveil_counts "
                              "WHERE week BETWEEN ?1 AND ?2 GROUP BY region, condition, week "
                              "ORDER BY region, condition, week",
                              &q, err);
    char region[8] = "", condition[SURVEIL_CONDITION_MAX + 1] = "";
    bool synthetic = false, have = false;
    int64_t now = core_now();
    if (!rc) {
        sqlite3_bind_int(q, 1, first);
        sqlite3_bind_int(q, 2, week_now);
        int s;
        while (!rc && (s = sqlite3_step(q)) == SQLITE_ROW) {
            const char *r = (const char *)sqlite3_column_text(q, 0), *c = (const char *)sqlite3_column_text(q, 1);
            if (!have || strcmp(r, region) != 0 || strcmp(c, condition) != 0) {
                if (have)
                    rc = alert_series(st, wdb, p, region, condition, x, n, first, week_now, recent, min_count,
                                      synthetic, out, now, added, err);
                snprintf(region, sizeof region, "%s", r);
                snprintf(condition, sizeof condition, "%s", c);
                for (size_t i = 0; i < n; i++) x[i] = 0;
                synthetic = false;
                have = true;
            }
            x[sqlite3_column_int(q, 2) - first] = (double)sqlite3_column_int64(q, 3);
            synthetic |= sqlite3_column_int(q, 4) != 0;
        }
        if (!rc && s != SQLITE_DONE) rc = store_error(rdb, err);
        sqlite3_reset(q);
        if (!rc && have)
            rc = alert_series(st, wdb, p, region, condition, x, n, first, week_now, recent, min_count, synthetic, out,
                              now, added, err);
    }
    store_release(st, rdb);
    free(x);
    free(out);
    return rc;
}

core_status surveil_alerts(store *st, bool open_only, surveil_alert_fn fn, void *ud, core_error *err) {
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q;
    core_status rc =
        store_prepare_cached(st, db,
                             "SELECT id, region, condition, week, method, observed, upperbound, synthetic, "
                             "created_at, acked_by, acked_at FROM surveil_alerts "
                             "WHERE ?1 = 0 OR acked_at IS NULL ORDER BY week DESC, region, condition LIMIT 500",
                             &q, err);
    if (!rc) {
        sqlite3_bind_int(q, 1, open_only);
        int s;
        while ((s = sqlite3_step(q)) == SQLITE_ROW) {
            surveil_alert a = {0};
            a.id = sqlite3_column_int64(q, 0);
            snprintf(a.region, sizeof a.region, "%s", (const char *)sqlite3_column_text(q, 1));
            snprintf(a.condition, sizeof a.condition, "%s", (const char *)sqlite3_column_text(q, 2));
            a.week = sqlite3_column_int(q, 3);
            snprintf(a.method, sizeof a.method, "%s", (const char *)sqlite3_column_text(q, 4));
            a.observed = sqlite3_column_int64(q, 5);
            a.upperbound = sqlite3_column_double(q, 6);
            a.synthetic = sqlite3_column_int(q, 7);
            a.created_at = sqlite3_column_int64(q, 8);
            if (sqlite3_column_type(q, 9) != SQLITE_NULL)
                snprintf(a.acked_by, sizeof a.acked_by, "%s", (const char *)sqlite3_column_text(q, 9));
            a.acked_at = sqlite3_column_int64(q, 10);
            fn(ud, &a);
        }
        if (s != SQLITE_DONE) rc = store_error(db, err);
        sqlite3_reset(q);
    }
    store_release(st, db);
    return rc;
}

core_status surveil_alert_ack(store *st, int64_t id, const char *by, core_error *err) {
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q;
    core_status rc = store_prepare_cached(st, db,
                                          "UPDATE surveil_alerts SET acked_by = ?2, acked_at = ?3 "
                                          "WHERE id = ?1 AND acked_at IS NULL",
                                          &q, err);
    if (!rc) {
        sqlite3_bind_int64(q, 1, id);
        sqlite3_bind_text(q, 2, by, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(q, 3, core_now());
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
        sqlite3_reset(q);
    }
    if (!rc && sqlite3_changes(db) == 0) {
        sqlite3_stmt *e;
        rc = store_prepare_cached(st, db, "SELECT 1 FROM surveil_alerts WHERE id = ?1", &e, err);
        if (!rc) {
            sqlite3_bind_int64(e, 1, id);
            rc = sqlite3_step(e) == SQLITE_ROW ? core_fail(err, CORE_ERR_CONFLICT, "alert", "already acknowledged")
                                               : core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such alert");
            sqlite3_reset(e);
        }
    }
    store_release(st, db);
    return rc;
}
