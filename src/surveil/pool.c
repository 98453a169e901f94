/* The pool of contributions: counts per (region, week, condition, age band,
 * source), the marks that stop a datum being rewarded twice, and the reads
 * that detection and releases are built from. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "crypto/crypto.h"
#include "surveil/surveil.h"

const char *surveil_source_name(surveil_source s) {
    static const char *const names[] = {"model", "self_reported", "clinician_confirmed"};
    return (unsigned)s < SURVEIL_SOURCES ? names[s] : "?";
}

int surveil_source_parse(const char *name) {
    for (int s = 0; name && s < SURVEIL_SOURCES; s++)
        if (strcmp(name, surveil_source_name((surveil_source)s)) == 0) return s;
    return -1;
}

const char *surveil_age_band_name(int band) {
    static const char *const names[] = {"0-4", "5-14", "15-24", "25-44", "45-64", "65+", "unknown"};
    return band >= 0 && band < SURVEIL_AGE_BANDS ? names[band] : "?";
}

int surveil_age_band(int birth_year, int year) {
    if (birth_year <= 0 || birth_year > year) return SURVEIL_AGE_BANDS - 1;
    int age = year - birth_year; /* the age reached this year: a year's precision is all we keep */
    return age < 5 ? 0 : age < 15 ? 1 : age < 25 ? 2 : age < 45 ? 3 : age < 65 ? 4 : 5;
}

core_status surveil_contribution_check(const surveil_contribution *c, core_error *err) {
    size_t n = strnlen(c->condition, sizeof c->condition);
    if (n == 0 || n > SURVEIL_CONDITION_MAX)
        return core_fail(err, CORE_ERR_INVALID, "condition", "a condition code is 1-%d characters",
                         SURVEIL_CONDITION_MAX);
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)c->condition[i]) || isdigit((unsigned char)c->condition[i]) ||
              c->condition[i] == '_'))
            return core_fail(err, CORE_ERR_INVALID, "condition",
                             "a condition code is lower-case letters, digits and _");
    const char *r = c->region;
    size_t rl = strnlen(r, sizeof c->region);
    if (rl < 4 || rl > 6 || !isupper((unsigned char)r[0]) || !isupper((unsigned char)r[1]) || r[2] != '-')
        return core_fail(err, CORE_ERR_INVALID, "region", "a region is an ISO 3166-2 code such as US-CA");
    for (size_t i = 3; i < rl; i++)
        if (!isupper((unsigned char)r[i]) && !isdigit((unsigned char)r[i]))
            return core_fail(err, CORE_ERR_INVALID, "region", "a region is an ISO 3166-2 code such as US-CA");
    if (c->week < 0 || c->week > 60000) return core_fail(err, CORE_ERR_INVALID, "week", "week out of range");
    if (c->age_band < 0 || c->age_band >= SURVEIL_AGE_BANDS)
        return core_fail(err, CORE_ERR_INVALID, "age_band", "unknown age band");
    if ((unsigned)c->source >= SURVEIL_SOURCES) return core_fail(err, CORE_ERR_INVALID, "source", "unknown source");
    return CORE_OK;
}

size_t surveil_contribution_text(const surveil_contribution *c, char *out, size_t cap) {
    char wk[9];
    surveil_week_format(c->week, wk);
    int n = snprintf(out, cap, "condition=%s;region=%s;week=%s;age=%s;source=%s", c->condition, c->region, wk,
                     surveil_age_band_name(c->age_band), surveil_source_name(c->source));
    return n < 0 ? 0 : (size_t)n;
}

void surveil_commitment(const surveil_contribution *c, const uint8_t salt[16], uint8_t out[32]) {
    uint8_t buf[16 + 160];
    memcpy(buf, salt, 16);
    size_t n = surveil_contribution_text(c, (char *)buf + 16, sizeof buf - 16);
    if (n > sizeof buf - 17) n = sizeof buf - 17;
    cs_crypto_hash(out, "caresync-contribution", buf, 16 + n);
}

static core_status bump(store *st, sqlite3 *db, const surveil_contribution *c, int64_t delta, bool synthetic,
                        core_error *err) {
    sqlite3_stmt *q;
    core_status rc = store_prepare_cached(st, db,
                                          "INSERT INTO surveil_counts VALUES (?1, ?2, ?3, ?4, ?5, ?6, max(?7, 0)) "
                                          "ON CONFLICT DO UPDATE SET n = max(n + ?7, 0)",
                                          &q, err);
    if (rc) return rc;
    sqlite3_bind_text(q, 1, c->region, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, c->week);
    sqlite3_bind_text(q, 3, c->condition, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 4, c->age_band);
    sqlite3_bind_int(q, 5, (int)c->source);
    sqlite3_bind_int(q, 6, synthetic);
    sqlite3_bind_int64(q, 7, delta);
    int s = sqlite3_step(q);
    sqlite3_reset(q);
    return s == SQLITE_DONE ? CORE_OK : store_error(db, err);
}

static core_status version_bump(sqlite3 *db, core_error *err) {
    return sqlite3_exec(db, "UPDATE surveil_version SET version = version + 1", NULL, NULL, NULL) == SQLITE_OK
               ? CORE_OK
               : store_error(db, err);
}

/* 1: inserted, 0: already there, negative: error (err filled). */
static int mark_put(store *st, sqlite3 *db, const uint8_t mark[32], core_error *err) {
    sqlite3_stmt *q;
    if (store_prepare_cached(st, db, "INSERT OR IGNORE INTO surveil_marks VALUES (?1)", &q, err)) return -1;
    sqlite3_bind_blob(q, 1, mark, 32, SQLITE_STATIC);
    int s = sqlite3_step(q);
    sqlite3_reset(q);
    if (s != SQLITE_DONE) return store_error(db, err), -1;
    return sqlite3_changes(db) == 1;
}

static core_status queue_put(store *st, sqlite3 *db, const surveil_reward *r, core_error *err) {
    sqlite3_stmt *q;
    core_status rc = store_prepare_cached(st, db, "INSERT INTO surveil_reward_queue VALUES (?1, ?2, ?3)", &q, err);
    if (rc) return rc;
    sqlite3_bind_blob(q, 1, r->commitment, 32, SQLITE_STATIC);
    sqlite3_bind_blob(q, 2, r->contributor, 32, SQLITE_STATIC);
    sqlite3_bind_blob(q, 3, r->grant, 32, SQLITE_STATIC);
    int s = sqlite3_step(q);
    sqlite3_reset(q);
    return s == SQLITE_DONE ? CORE_OK : store_error(db, err);
}

core_status surveil_add(store *st, const surveil_contribution *c, const uint8_t *mark, int sealed_through,
                        const surveil_reward *reward, core_error *err) {
    return surveil_add_tagged(st, c, mark, sealed_through, reward, NULL, NULL, NULL, err);
}

static core_status tags_prune(store *st, sqlite3 *db, int sealed_through, core_error *err) {
    sqlite3_stmt *q;
    core_status rc = store_prepare_cached(st, db, "DELETE FROM surveil_tags WHERE week <= ?1", &q, err);
    if (rc) return rc;
    sqlite3_bind_int(q, 1, sealed_through);
    int s = sqlite3_step(q);
    sqlite3_reset(q);
    return s == SQLITE_DONE ? CORE_OK : store_error(db, err);
}

static core_status tag_put(store *st, sqlite3 *db, const uint8_t *tag, int week, core_error *err) {
    sqlite3_stmt *q;
    core_status rc = store_prepare_cached(st, db, "INSERT INTO surveil_tags VALUES (?1, ?2)", &q, err);
    if (rc) return rc;
    sqlite3_bind_blob(q, 1, tag, SURVEIL_TAG, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, week);
    int s = sqlite3_step(q);
    sqlite3_reset(q);
    return s == SQLITE_DONE ? CORE_OK : store_error(db, err);
}

core_status surveil_add_tagged(store *st, const surveil_contribution *c, const uint8_t *mark, int sealed_through,
                               const surveil_reward *reward, const uint8_t *tag, surveil_within_fn within, void *ud,
                               core_error *err) {
    core_status rc = surveil_contribution_check(c, err);
    if (rc) return rc;
    if (c->week <= sealed_through) {
        char wk[9];
        surveil_week_format(c->week, wk);
        return core_fail(err, CORE_ERR_CONFLICT, "week", "week %s is closed: its counts are final", wk);
    }
    sqlite3 *db = store_acquire(st);
    if ((rc = store_begin(db, err))) {
        store_release(st, db);
        return rc;
    }
    if (mark) {
        int m = mark_put(st, db, mark, err);
        if (m < 0)
            rc = err->code;
        else if (m == 0)
            rc = core_fail(err, CORE_ERR_CONFLICT, "contribution", "this was already shared");
    }
    if (!rc && within) rc = within(ud, db, err);
    /* No version bump: the week is open, so no release, series or alert can
     * include this count until it is sealed, and the sealed data (what the
     * version keys) is unchanged. */
    if (!rc) rc = bump(st, db, c, 1, false, err);
    if (!rc && reward) rc = queue_put(st, db, reward, err);
    if (!rc && tag) rc = tags_prune(st, db, sealed_through, err);
    if (!rc && tag) rc = tag_put(st, db, tag, c->week, err);
    if (!rc) rc = store_commit(db, err);
    if (rc) store_rollback(db);
    store_release(st, db);
    return rc;
}

core_status surveil_withdraw(store *st, surveil_withdrawal *w, size_t n, int sealed_through, surveil_within_fn within,
                             void *ud, core_error *err) {
    for (size_t i = 0; i < n; i++) w[i].done = false;
    sqlite3 *db = store_acquire(st);
    core_status rc = store_begin(db, err);
    if (rc) {
        store_release(st, db);
        return rc;
    }
    /* Sealed weeks' tags go first, so a tag found below is an open week's:
     * its count has not left the service, and taking it back changes
     * nothing anyone has seen. */
    rc = tags_prune(st, db, sealed_through, err);
    sqlite3_stmt *q = NULL;
    if (!rc) rc = store_prepare_cached(st, db, "DELETE FROM surveil_tags WHERE tag = ?1 AND week = ?2", &q, err);
    for (size_t i = 0; i < n && !rc; i++) {
        if (w[i].c.week <= sealed_through) continue;
        sqlite3_bind_blob(q, 1, w[i].tag, SURVEIL_TAG, SQLITE_STATIC);
        sqlite3_bind_int(q, 2, w[i].c.week);
        int s = sqlite3_step(q);
        sqlite3_reset(q);
        if (s != SQLITE_DONE) {
            rc = store_error(db, err);
        } else if (sqlite3_changes(db) == 1) {
            rc = surveil_contribution_check(&w[i].c, err);
            if (!rc) rc = bump(st, db, &w[i].c, -1, false, err);
            w[i].done = !rc;
        }
    }
    if (!rc && within) rc = within(ud, db, err);
    if (!rc) rc = store_commit(db, err);
    if (rc) {
        store_rollback(db);
        for (size_t i = 0; i < n; i++) w[i].done = false;
    }
    store_release(st, db);
    return rc;
}

core_status surveil_add_counts(store *st, const surveil_contribution *c, const int64_t *counts, size_t n,
                               bool synthetic, core_error *err) {
    core_status rc = CORE_OK;
    for (size_t i = 0; i < n && !rc; i++) rc = surveil_contribution_check(&c[i], err);
    if (rc) return rc;
    sqlite3 *db = store_acquire(st);
    if ((rc = store_begin(db, err))) {
        store_release(st, db);
        return rc;
    }
    for (size_t i = 0; i < n && !rc; i++)
        if (counts[i] > 0) rc = bump(st, db, &c[i], counts[i], synthetic, err);
    if (!rc) rc = version_bump(db, err);
    if (!rc) rc = store_commit(db, err);
    if (rc) store_rollback(db);
    store_release(st, db);
    return rc;
}

/* One integer from a one-row query without parameters. */
static core_status one_int(store *st, const char *sql, int64_t *out, core_error *err) {
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q;
    core_status rc = store_prepare_cached(st, db, sql, &q, err);
    if (!rc) {
        if (sqlite3_step(q) == SQLITE_ROW)
            *out = sqlite3_column_int64(q, 0);
        else
            rc = store_error(db, err);
        sqlite3_reset(q);
    }
    store_release(st, db);
    return rc;
}

core_status surveil_data_version(store *st, int64_t *out, core_error *err) {
    return one_int(st, "SELECT version FROM surveil_version", out, err);
}

core_status surveil_series(store *st, const char *region, const char *condition, int week_from, int week_to,
                           double *out, bool *synthetic, core_error *err) {
    return surveil_series_source(st, region, condition, -1, week_from, week_to, out, synthetic, err);
}

core_status surveil_series_source(store *st, const char *region, const char *condition, int source, int week_from,
                                  int week_to, double *out, bool *synthetic, core_error *err) {
    if (week_to < week_from) return core_fail(err, CORE_ERR_INVALID, "to", "the period ends before it starts");
    size_t n = (size_t)(week_to - week_from + 1);
    for (size_t i = 0; i < n; i++) out[i] = 0;
    if (synthetic) *synthetic = false;
    /* A country ("US") is the key range ["US-", "US."): '.' follows '-', so
     * the primary key's index serves both a country and a subdivision. */
    char lo[16], hi[16];
    bool country = strlen(region) == 2;
    snprintf(lo, sizeof lo, country ? "%s-" : "%s", region);
    snprintf(hi, sizeof hi, country ? "%s." : "%s", region);
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q;
    core_status rc = store_prepare_cached(st, db,
                                          "SELECT week, sum(n), max(synthetic) FROM surveil_counts "
                                          "WHERE region >= ?1 AND region <= ?5 AND week BETWEEN ?2 AND ?3 "
                                          "AND (?4 IS NULL OR condition = ?4) AND (?6 < 0 OR source = ?6) "
                                          "GROUP BY week",
                                          &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, lo, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(q, 2, week_from);
        sqlite3_bind_int(q, 3, week_to);
        if (condition)
            sqlite3_bind_text(q, 4, condition, -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_null(q, 4);
        sqlite3_bind_text(q, 5, hi, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(q, 6, source);
        int s;
        while ((s = sqlite3_step(q)) == SQLITE_ROW) {
            int w = sqlite3_column_int(q, 0);
            out[w - week_from] = (double)sqlite3_column_int64(q, 1);
            if (synthetic && sqlite3_column_int(q, 2)) *synthetic = true;
        }
        if (s != SQLITE_DONE) rc = store_error(db, err);
        sqlite3_reset(q);
    }
    store_release(st, db);
    return rc;
}

core_status surveil_countries(store *st, int through, surveil_country_fn fn, void *ud, core_error *err) {
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q;
    core_status rc = store_prepare_cached(
        st, db, "SELECT DISTINCT substr(region, 1, 2) FROM surveil_counts WHERE n > 0 AND week <= ?1 ORDER BY 1", &q,
        err);
    if (!rc) {
        sqlite3_bind_int(q, 1, through);
        int s;
        while ((s = sqlite3_step(q)) == SQLITE_ROW) fn(ud, (const char *)sqlite3_column_text(q, 0));
        if (s != SQLITE_DONE) rc = store_error(db, err);
        sqlite3_reset(q);
    }
    store_release(st, db);
    return rc;
}

core_status surveil_extent(store *st, int through, int *first, int *last, core_error *err) {
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q;
    core_status rc = store_prepare_cached(
        st, db, "SELECT min(week), max(week) FROM surveil_counts WHERE n > 0 AND week <= ?1", &q, err);
    if (!rc) {
        sqlite3_bind_int(q, 1, through);
        if (sqlite3_step(q) != SQLITE_ROW)
            rc = store_error(db, err);
        else if (sqlite3_column_type(q, 0) == SQLITE_NULL)
            rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no data yet");
        else {
            *first = sqlite3_column_int(q, 0);
            *last = sqlite3_column_int(q, 1);
        }
        sqlite3_reset(q);
    }
    store_release(st, db);
    return rc;
}

/* ---- the reward queue ---- */

core_status surveil_rewards_queued(store *st, size_t *n, core_error *err) {
    int64_t v = 0;
    core_status rc = one_int(st, "SELECT count(*) FROM surveil_reward_queue", &v, err);
    if (!rc) *n = (size_t)v;
    return rc;
}

core_status surveil_rewards_pending(store *st, size_t min, surveil_reward *out, size_t cap, size_t *n,
                                    core_error *err) {
    *n = 0;
    size_t queued = 0;
    core_status rc = surveil_rewards_queued(st, &queued, err);
    if (rc || queued < min || min == 0) return rc;
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q;
    /* The table is keyed by commitment (WITHOUT ROWID), so it keeps no
     * arrival order; the shuffle below makes the order on the ledger random
     * rather than sorted by commitment. */
    rc = store_prepare_cached(st, db, "SELECT commitment, contributor, grant FROM surveil_reward_queue", &q, err);
    if (!rc) {
        int s;
        while (*n < cap && (s = sqlite3_step(q)) == SQLITE_ROW) {
            surveil_reward *r = &out[*n];
            if (sqlite3_column_bytes(q, 0) != 32 || sqlite3_column_bytes(q, 1) != 32 ||
                sqlite3_column_bytes(q, 2) != 32)
                continue; /* cannot be written by this code; never hand out a short key */
            memcpy(r->commitment, sqlite3_column_blob(q, 0), 32);
            memcpy(r->contributor, sqlite3_column_blob(q, 1), 32);
            memcpy(r->grant, sqlite3_column_blob(q, 2), 32);
            (*n)++;
        }
        if (*n < cap && s != SQLITE_DONE) rc = store_error(db, err);
        sqlite3_reset(q);
    }
    store_release(st, db);
    for (size_t i = *n; i > 1; i--) { /* Fisher-Yates with libsodium's uniform draw */
        size_t j = cs_crypto_uniform((uint32_t)i);
        surveil_reward t = out[i - 1];
        out[i - 1] = out[j];
        out[j] = t;
    }
    return rc;
}

core_status surveil_rewards_done(store *st, const uint8_t commitment[32], core_error *err) {
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q;
    core_status rc = store_prepare_cached(st, db, "DELETE FROM surveil_reward_queue WHERE commitment = ?1", &q, err);
    if (!rc) {
        sqlite3_bind_blob(q, 1, commitment, 32, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
        sqlite3_reset(q);
    }
    store_release(st, db);
    return rc;
}
