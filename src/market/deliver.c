/* market — delivery: a request's stored rows → anon's k-anonymous dataset →
 * a ledger release of its hash; and the person's participations with the
 * deliveries their rows were in (see market.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anon/anon.h"
#include "crypto/crypto.h"
#include "market/internal.h"
#include "surveil/surveil.h"

static core_status nomem(core_error *err) { return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory"); }

/* What one delivery reads, in one read transaction so the rows and the
 * people whose participation stands agree. */
typedef struct {
    uint8_t org[LEDGER_KEY];
    int64_t created_at;
    anon_row *rows;
    uint8_t (*group)[MARKET_TAG_BYTES]; /* the rows' contributor ids (zero: stored before they existed) */
    size_t n, cap;
    int64_t *owners;
    size_t n_owners, cap_owners;
} snapshot;

static void snapshot_free(snapshot *s) {
    free(s->rows);
    free(s->group);
    free(s->owners);
}

static bool category_of(const char *name, anon_category *out) {
    static const struct {
        const char *market;
        anon_category anon;
    } map[] = {{"conditions", ANON_CONDITION},
               {"symptoms", ANON_SYMPTOM},
               {"screening", ANON_SCREENING},
               {"demographics", ANON_DEMOGRAPHICS}};
    for (size_t i = 0; name && i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(name, map[i].market)) {
            *out = map[i].anon;
            return true;
        }
    return false;
}

/* "35-39" → 35, "90-94", "95-99", "100+" → 90 (anon's top band). */
static bool band_of(const char *band, int *lo) {
    if (!band) {
        *lo = ANON_AGE_UNKNOWN;
        return true;
    }
    if (!strcmp(band, "100+")) {
        *lo = ANON_AGE_TOP;
        return true;
    }
    for (int a = 0; a < 100; a += 5) {
        char b[8];
        market_age_band(a, b);
        if (!strcmp(b, band)) {
            *lo = a >= ANON_AGE_TOP ? ANON_AGE_TOP : a;
            return true;
        }
    }
    return false;
}

/* One stored row (market_rows_build's JSON) as an anon row. */
static core_status row_of(const market *m, const json_t *j, const uint8_t tag[MARKET_TAG_BYTES], int default_week,
                          anon_row *out, core_error *err) {
    memset(out, 0, sizeof *out);
    const char *cat = json_string_value(json_object_get(j, "category"));
    const char *code = json_string_value(json_object_get(j, "code"));
    const char *week = json_string_value(json_object_get(j, "week"));
    const char *sex = json_string_value(json_object_get(j, "sex"));
    const char *region = json_string_value(json_object_get(j, "region"));
    if (!json_is_object(j) || !category_of(cat, &out->category) ||
        !band_of(json_string_value(json_object_get(j, "age_band")), &out->age_lo) || !anon_sex_parse(sex, &out->sex))
        return core_fail(err, CORE_ERR_STORAGE, NULL, "malformed stored row");
    if (code && strlen(code) >= sizeof out->code) return core_fail(err, CORE_ERR_STORAGE, NULL, "malformed stored row");
    if (code) memcpy(out->code, code, strlen(code) + 1);
    out->week = default_week;
    if (week && surveil_week_parse(week, &out->week, NULL))
        return core_fail(err, CORE_ERR_STORAGE, NULL, "malformed stored row");
    const char *first = region && m->opt.regs ? regions_first_level(m->opt.regs, region) : region;
    if (first && strlen(first) < ANON_REGION_MAX) memcpy(out->region, first, strlen(first) + 1);
    memcpy(out->tag, tag, ANON_TAG_BYTES);
    core_status rc = anon_row_check(out, err);
    return rc ? core_fail(err, CORE_ERR_STORAGE, NULL, "malformed stored row (%s)", err ? err->message : "") : rc;
}

static core_status read_snapshot(market *m, const char *id, snapshot *s, core_error *err) {
    memset(s, 0, sizeof *s);
    sqlite3 *db = store_acquire(m->opt.st);
    sqlite3_stmt *q = NULL;
    core_status rc = CORE_OK;
    bool open = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
    if (!open) rc = store_error(db, err);
    if (!rc) rc = store_prepare(db, "SELECT org_key, created_at FROM market_requests WHERE id = ?1", &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        int step = sqlite3_step(q);
        if (step == SQLITE_ROW && sqlite3_column_bytes(q, 0) == LEDGER_KEY) {
            memcpy(s->org, sqlite3_column_blob(q, 0), LEDGER_KEY);
            s->created_at = sqlite3_column_int64(q, 1);
        } else if (step == SQLITE_ROW || step == SQLITE_DONE)
            rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such data request");
        else
            rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    q = NULL;
    time_t t = (time_t)s->created_at;
    struct tm tm;
    gmtime_r(&t, &tm);
    const int default_week = surveil_week_of_date(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    if (!rc)
        rc = store_prepare(db, "SELECT tag, row, contributor FROM market_rows WHERE request_id = ?1 ORDER BY tag", &q,
                           err);
    if (!rc) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        int step;
        while (!rc && (step = sqlite3_step(q)) == SQLITE_ROW) {
            if (s->n == s->cap) {
                size_t cap = s->cap ? 2 * s->cap : 64;
                anon_row *r = realloc(s->rows, cap * sizeof *r);
                if (r) s->rows = r;
                uint8_t(*g)[MARKET_TAG_BYTES] = r ? realloc(s->group, cap * sizeof *g) : NULL;
                if (!g) {
                    rc = nomem(err);
                    break;
                }
                s->group = g;
                s->cap = cap;
            }
            json_t *j = core_json_loads((const char *)sqlite3_column_text(q, 1), 0, NULL, err);
            if (!j && err && err->code == CORE_ERR_NOMEM) {
                rc = CORE_ERR_NOMEM;
                break;
            }
            if (sqlite3_column_bytes(q, 0) != MARKET_TAG_BYTES)
                rc = core_fail(err, CORE_ERR_STORAGE, NULL, "malformed stored row");
            else
                rc = row_of(m, j, sqlite3_column_blob(q, 0), default_week, &s->rows[s->n], err);
            json_decref(j);
            memset(s->group[s->n], 0, MARKET_TAG_BYTES);
            if (sqlite3_column_bytes(q, 2) == MARKET_TAG_BYTES)
                memcpy(s->group[s->n], sqlite3_column_blob(q, 2), MARKET_TAG_BYTES);
            if (!rc) s->n++;
        }
        if (!rc && step != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    q = NULL;
    if (!rc)
        rc = store_prepare(db, "SELECT owner FROM market_participation WHERE request_id = ?1 AND withdrawn_at IS NULL",
                           &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        int step;
        while (!rc && (step = sqlite3_step(q)) == SQLITE_ROW) {
            if (s->n_owners == s->cap_owners) {
                size_t cap = s->cap_owners ? 2 * s->cap_owners : 64;
                int64_t *o = realloc(s->owners, cap * sizeof *o);
                if (!o) {
                    rc = nomem(err);
                    break;
                }
                s->owners = o;
                s->cap_owners = cap;
            }
            s->owners[s->n_owners++] = sqlite3_column_int64(q, 0);
        }
        if (!rc && step != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    if (open) sqlite3_exec(db, "COMMIT", NULL, NULL, NULL); /* read only: nothing to keep */
    store_release(m->opt.st, db);
    if (rc) snapshot_free(s);
    return rc;
}

/* The receipt of an earlier delivery of the same bytes, if any. */
static core_status find_receipt(sqlite3 *db, const char *id, market_delivery_receipt *r, bool *found, core_error *err) {
    sqlite3_stmt *q = NULL;
    *found = false;
    core_status rc = store_prepare(
        db, "SELECT txid, created_at FROM market_deliveries WHERE request_id = ?1 AND sha256 = ?2", &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(q, 2, r->sha256, LEDGER_HASH, SQLITE_STATIC);
        int step = sqlite3_step(q);
        if (step == SQLITE_ROW && sqlite3_column_bytes(q, 0) == LEDGER_HASH) {
            memcpy(r->txid, sqlite3_column_blob(q, 0), LEDGER_HASH);
            r->at = sqlite3_column_int64(q, 1);
            *found = true;
        } else if (step != SQLITE_ROW && step != SQLITE_DONE)
            rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    return rc;
}

/* The delivery and who took part in it, one transaction. */
static core_status store_delivery(sqlite3 *db, const char *id, const market_delivery_receipt *r,
                                  const anon_stats *stats, const snapshot *s, core_error *err) {
    core_status rc = store_begin(db, err);
    if (rc) return rc;
    sqlite3_stmt *q = NULL;
    rc = store_prepare(db,
                       "INSERT INTO market_deliveries (request_id, sha256, txid, delivered, held_back, created_at) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                       &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(q, 2, r->sha256, LEDGER_HASH, SQLITE_STATIC);
        sqlite3_bind_blob(q, 3, r->txid, LEDGER_HASH, SQLITE_STATIC);
        sqlite3_bind_int64(q, 4, (sqlite3_int64)stats->delivered);
        sqlite3_bind_int64(q, 5, (sqlite3_int64)stats->held_back);
        sqlite3_bind_int64(q, 6, r->at);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    q = NULL;
    if (!rc)
        rc = store_prepare(db,
                           "INSERT OR IGNORE INTO market_delivery_people (owner, request_id, sha256) "
                           "VALUES (?1, ?2, ?3)",
                           &q, err);
    for (size_t i = 0; !rc && i < s->n_owners; i++) {
        sqlite3_bind_int64(q, 1, s->owners[i]);
        sqlite3_bind_text(q, 2, id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(q, 3, r->sha256, LEDGER_HASH, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
        sqlite3_reset(q);
    }
    sqlite3_finalize(q);
    if (!rc) return store_commit(db, err);
    store_rollback(db);
    return rc;
}

core_status market_deliver(market *m, const uint8_t org[LEDGER_KEY], const char *id, int k, anon_delivery **out,
                           market_delivery_receipt *receipt, core_error *err) {
    *out = NULL;
    memset(receipt, 0, sizeof *receipt);
    if (k < 1) return core_fail(err, CORE_ERR_INVALID, "k", "k is at least 1");
    snapshot s;
    core_status rc = read_snapshot(m, id ? id : "", &s, err);
    if (rc) return rc;
    if (memcmp(s.org, org, LEDGER_KEY)) {
        snapshot_free(&s);
        return core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such data request");
    }
    /* The per-delivery pseudonyms: only equality matters to anon, and a
     * fresh salt keeps them from meaning anything across deliveries. */
    uint64_t *contributor = calloc(s.n ? s.n : 1, sizeof *contributor);
    if (!contributor) rc = nomem(err);
    uint8_t salt[32];
    cs_crypto_random(salt, sizeof salt);
    for (size_t i = 0; !rc && i < s.n; i++) {
        uint8_t h[32];
        cs_crypto_sha256_2(h, salt, sizeof salt, s.group[i], MARKET_TAG_BYTES);
        memcpy(&contributor[i], h, sizeof contributor[i]);
    }
    cs_crypto_wipe(salt, sizeof salt);
    anon_delivery *d = NULL;
    if (!rc) rc = anon_deliver(s.rows, contributor, s.n, k, &d, err);
    free(contributor);
    if (!rc) {
        anon_delivery_sha256(d, receipt->sha256);
        pthread_mutex_lock(&m->delivery);
        sqlite3 *db = store_acquire(m->opt.st);
        bool found = false;
        rc = find_receipt(db, id, receipt, &found, err);
        if (!rc && found)
            receipt->repeat = true;
        else if (!rc) {
            const anon_stats *stats = anon_delivery_stats(d);
            ledger_tx tx = {.kind = LEDGER_TX_RELEASE};
            memcpy(tx.u.release.org, s.org, LEDGER_KEY);
            memcpy(tx.u.release.query, receipt->sha256, LEDGER_HASH);
            tx.u.release.epsilon_milli = 0; /* exact rows, protected by k-anonymity */
            tx.u.release.k_min = (uint32_t)k;
            tx.u.release.cells = stats->delivered > UINT32_MAX ? UINT32_MAX : (uint32_t)stats->delivered;
            ledger_receipt rec;
            rc = ledger_sign_submit(m->opt.led, &tx, m->opt.node_sk, &rec, err);
            if (!rc) {
                memcpy(receipt->txid, rec.txid, LEDGER_HASH);
                receipt->at = m->opt.now ? m->opt.now() : core_now();
                /* The release stands on the ledger, so the delivery is
                 * answered by that outcome: if recording it fails (the
                 * transaction rolled back whole), it is recorded again at
                 * once rather than answered "failed". Only if that fails
                 * too is the release one this file does not know: the next
                 * delivery of the same bytes records a second one
                 * (docs/PRIVACY.md). */
                rc = store_delivery(db, id, receipt, stats, &s, err);
                core_error again = {0};
                if (rc && !store_delivery(db, id, receipt, stats, &s, &again)) rc = CORE_OK;
            }
        }
        store_release(m->opt.st, db);
        pthread_mutex_unlock(&m->delivery);
    }
    snapshot_free(&s);
    if (rc) {
        anon_delivery_free(d);
        return rc;
    }
    *out = d;
    return CORE_OK;
}

/* ---- the person's participations ---- */

static json_t *hexj(const uint8_t *p, size_t n) {
    char s[2 * 64 + 1];
    cs_crypto_hex(p, n, s);
    return json_string(s);
}

static json_t *timej(int64_t t) {
    char s[32];
    core_format_time(t, s);
    return json_string(s);
}

static core_status deliveries_of(sqlite3 *db, int64_t owner, const char *id, json_t **out, core_error *err) {
    sqlite3_stmt *q = NULL;
    json_t *a = json_array();
    if (!a) return nomem(err);
    core_status rc = store_prepare(db,
                                   "SELECT d.txid, d.sha256, d.created_at FROM market_delivery_people p "
                                   "JOIN market_deliveries d ON d.request_id = p.request_id AND d.sha256 = p.sha256 "
                                   "WHERE p.owner = ?1 AND p.request_id = ?2 ORDER BY d.created_at, d.txid",
                                   &q, err);
    if (!rc) {
        sqlite3_bind_int64(q, 1, owner);
        sqlite3_bind_text(q, 2, id, -1, SQLITE_STATIC);
        int step;
        while (!rc && (step = sqlite3_step(q)) == SQLITE_ROW) {
            json_t *o =
                sqlite3_column_bytes(q, 0) == LEDGER_HASH && sqlite3_column_bytes(q, 1) == LEDGER_HASH
                    ? json_pack("{s:o, s:o, s:o}", "txid", hexj(sqlite3_column_blob(q, 0), LEDGER_HASH), "sha256",
                                hexj(sqlite3_column_blob(q, 1), LEDGER_HASH), "at", timej(sqlite3_column_int64(q, 2)))
                    : NULL;
            if (!o || json_array_append_new(a, o)) rc = nomem(err);
        }
        if (!rc && step != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    if (rc) {
        json_decref(a);
        return rc;
    }
    *out = a;
    return CORE_OK;
}

core_status market_participations(market *m, int64_t owner, json_t **out, core_error *err) {
    *out = NULL;
    json_t *a = json_array();
    if (!a) return nomem(err);
    sqlite3 *db = store_acquire(m->opt.st);
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db,
                                   "SELECT p.request_id, r.title, r.org_name, r.org_key, p.amount, p.paid_at, "
                                   "p.withdrawn_at, p.grant_txid FROM market_participation p "
                                   "JOIN market_requests r ON r.id = p.request_id WHERE p.owner = ?1 "
                                   "ORDER BY p.paid_at DESC, p.request_id",
                                   &q, err);
    if (!rc) {
        sqlite3_bind_int64(q, 1, owner);
        int step;
        while (!rc && (step = sqlite3_step(q)) == SQLITE_ROW) {
            const char *id = (const char *)sqlite3_column_text(q, 0);
            json_t *dl = NULL;
            if ((rc = deliveries_of(db, owner, id, &dl, err))) break;
            if (sqlite3_column_bytes(q, 3) != LEDGER_KEY || sqlite3_column_bytes(q, 7) != LEDGER_HASH) {
                json_decref(dl);
                rc = core_fail(err, CORE_ERR_STORAGE, NULL, "malformed participation");
                break;
            }
            /* json_pack takes dl ("o") whether or not it succeeds. */
            json_t *o =
                json_pack("{s:s, s:s, s:{s:o, s:s}, s:I, s:o, s:o, s:o}", "request", id, "title",
                          (const char *)sqlite3_column_text(q, 1), "organisation", "key",
                          hexj(sqlite3_column_blob(q, 3), LEDGER_KEY), "name", (const char *)sqlite3_column_text(q, 2),
                          "paid", (json_int_t)sqlite3_column_int64(q, 4), "paid_at", timej(sqlite3_column_int64(q, 5)),
                          "grant_txid", hexj(sqlite3_column_blob(q, 7), LEDGER_HASH), "deliveries", dl);
            if (o && sqlite3_column_type(q, 6) != SQLITE_NULL &&
                json_object_set_new(o, "withdrawn_at", timej(sqlite3_column_int64(q, 6)))) {
                json_decref(o);
                o = NULL;
            }
            if (!o || json_array_append_new(a, o)) rc = nomem(err);
        }
        if (!rc && step != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    store_release(m->opt.st, db);
    if (!rc) {
        *out = json_pack("{s:o}", "participations", a);
        a = NULL;
        if (!*out) rc = nomem(err);
    }
    json_decref(a);
    return rc;
}
