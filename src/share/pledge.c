/* share — what a clinician's answer feeds (issue 13).
 *
 * A clinician answers in their own session, where the person's data key —
 * and so the profile's home region — cannot be opened. So when the person
 * asks for review (their session), and only if they hold a consent that
 * wants it, the few facts the answer will need are pledged: the wallet (to
 * check the consent again at the answer), the home region and birth year
 * (the contribution's region and age band, as a screening share takes them)
 * and the training handle. They are sealed under a key derived from the
 * node key, bound to the case id, in their own table (share_review_pledges,
 * migration 10), never in the case copy, which stays free of any place. The
 * answer takes the pledge (reads and deletes it); a pledge not taken goes
 * with its case row (ON DELETE CASCADE), when the case is withdrawn or
 * returned (share_pledge_drop), or after SHARE_PLEDGE_TTL at the latest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "share/internal.h"

/* Longer than any promised answer time (REVIEW_HOURS_MAX, 30 days). */
#define SHARE_PLEDGE_TTL (31 * 86400)
#define PLEDGE_BYTES (LEDGER_KEY + 8 + 4 + 1 + 32)

typedef struct {
    int64_t now;
    uint8_t purpose;
    bool hit;
} consent_find;

static void find_consent(void *ud, const ledger_consent *cn) {
    consent_find *f = ud;
    static const uint8_t pool[LEDGER_KEY] = {0};
    if (f->hit || cn->revoked_height || (int64_t)cn->expires <= f->now) return;
    /* Only the person's own consent to the pool / to training, never one
     * given to an organisation (a data request's, issue 14). */
    if (memcmp(cn->grantee, pool, LEDGER_KEY) != 0) return;
    if (cn->purpose != f->purpose || !(cn->scope & (1u << LEDGER_CAT_SCREENING))) return;
    f->hit = true;
}

core_status share_consented(share *s, const uint8_t wallet[LEDGER_KEY], ledger_purpose purpose, int64_t now, bool *yes,
                            core_error *err) {
    consent_find f = {.now = now, .purpose = (uint8_t)purpose};
    *yes = false;
    core_status rc = ledger_list_consents(s->opt.led, wallet, find_consent, &f, err);
    if (rc == CORE_ERR_NOT_FOUND) { /* a wallet the ledger never saw holds no consent */
        if (err) memset(err, 0, sizeof *err);
        return CORE_OK;
    }
    if (!rc) *yes = f.hit;
    return rc;
}

static void pledge_key(const share *s, uint8_t key[32]) {
    cs_crypto_hash(key, "caresync share review pledge key v1", s->opt.node_sk, LEDGER_SECRET);
}

core_status share_pledge_put(share *s, const char *case_id, const share_pledge *p, int64_t now, bool *kept,
                             core_error *err) {
    *kept = false;
    if (!case_id || !case_id[0] || strlen(case_id) > 64) return core_fail(err, CORE_ERR_INVALID, "id", "no case id");
    bool surveil = false, training = false;
    core_status rc = share_consented(s, p->wallet, LEDGER_PURPOSE_SURVEILLANCE, now, &surveil, err);
    if (!rc && p->training) rc = share_consented(s, p->wallet, LEDGER_PURPOSE_TRAINING, now, &training, err);
    if (rc) return rc;
    surveil = surveil && p->region[0];
    if (!surveil && !training) return CORE_OK; /* nothing wanted: nothing kept */
    /* Only what a consent held now asks for. */
    uint8_t pt[PLEDGE_BYTES] = {0}, key[32];
    memcpy(pt, p->wallet, LEDGER_KEY);
    if (surveil) {
        memcpy(pt + LEDGER_KEY, p->region, strnlen(p->region, 7));
        core_put_le32(pt + LEDGER_KEY + 8, (uint32_t)p->birth_year);
    }
    pt[LEDGER_KEY + 12] = (uint8_t)((surveil ? 1 : 0) | (training ? 2 : 0));
    if (training) memcpy(pt + LEDGER_KEY + 13, p->handle, 32);
    uint8_t *sealed = NULL;
    size_t sealed_len = 0;
    pledge_key(s, key);
    rc = cs_crypto_seal(key, case_id, strlen(case_id), pt, sizeof pt, &sealed, &sealed_len, err);
    cs_crypto_wipe(key, sizeof key);
    cs_crypto_wipe(pt, sizeof pt);
    if (rc) return rc;
    sqlite3 *db = store_acquire(s->opt.st);
    sqlite3_stmt *q = NULL;
    rc = store_begin(db, err);
    if (!rc) rc = store_prepare(db, "DELETE FROM share_review_pledges WHERE created_at < ?1", &q, err);
    if (!rc) {
        sqlite3_bind_int64(q, 1, now - SHARE_PLEDGE_TTL);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    q = NULL;
    if (!rc) rc = store_prepare(db, "INSERT OR REPLACE INTO share_review_pledges VALUES (?1, ?2, ?3)", &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, case_id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(q, 2, sealed, (int)sealed_len, SQLITE_STATIC);
        sqlite3_bind_int64(q, 3, now);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    if (!rc) rc = store_commit(db, err);
    if (rc) store_rollback(db);
    store_release(s->opt.st, db);
    free(sealed);
    if (!rc) *kept = true;
    return rc;
}

core_status share_pledge_take(share *s, const char *case_id, share_pledge *out, bool *found, core_error *err) {
    memset(out, 0, sizeof *out);
    *found = false;
    sqlite3 *db = store_acquire(s->opt.st);
    sqlite3_stmt *q = NULL;
    uint8_t *pt = NULL;
    size_t ptlen = 0;
    core_status rc = store_begin(db, err);
    if (!rc) rc = store_prepare(db, "SELECT sealed FROM share_review_pledges WHERE case_id = ?1", &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, case_id ? case_id : "", -1, SQLITE_STATIC);
        int step = sqlite3_step(q);
        if (step == SQLITE_ROW) {
            uint8_t key[32];
            pledge_key(s, key);
            rc = cs_crypto_open(key, case_id, strlen(case_id), sqlite3_column_blob(q, 0),
                                (size_t)sqlite3_column_bytes(q, 0), &pt, &ptlen, err);
            cs_crypto_wipe(key, sizeof key);
            if (!rc && ptlen != PLEDGE_BYTES) rc = core_fail(err, CORE_ERR_CRYPTO, NULL, "a pledge is damaged");
            *found = rc == CORE_OK;
        } else if (step != SQLITE_DONE) {
            rc = store_error(db, err);
        }
    }
    sqlite3_finalize(q);
    q = NULL;
    /* Taken once: gone in the same transaction as it is read (a damaged one
     * goes too, rather than fail every answer after it). */
    if (!rc || rc == CORE_ERR_CRYPTO) {
        core_error e = {0};
        core_status d = store_prepare(db, "DELETE FROM share_review_pledges WHERE case_id = ?1", &q, &e);
        if (!d) {
            sqlite3_bind_text(q, 1, case_id ? case_id : "", -1, SQLITE_STATIC);
            if (sqlite3_step(q) != SQLITE_DONE) d = store_error(db, &e);
        }
        sqlite3_finalize(q);
        if (!d) d = store_commit(db, &e);
        if (d) {
            store_rollback(db);
            if (!rc && err) *err = e;
            if (!rc) rc = d;
            *found = false;
        }
    } else {
        store_rollback(db);
    }
    store_release(s->opt.st, db);
    if (*found) {
        memcpy(out->wallet, pt, LEDGER_KEY);
        uint8_t flags = pt[LEDGER_KEY + 12];
        if (flags & 1) {
            memcpy(out->region, pt + LEDGER_KEY, 7);
            out->birth_year = (int)core_get_le32(pt + LEDGER_KEY + 8);
        }
        out->training = (flags & 2) != 0;
        if (out->training) memcpy(out->handle, pt + LEDGER_KEY + 13, 32);
    }
    if (pt) {
        cs_crypto_wipe(pt, ptlen);
        free(pt);
    }
    return rc;
}

core_status share_pledge_drop(share *s, const char *case_id, core_error *err) {
    sqlite3 *db = store_acquire(s->opt.st);
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db, "DELETE FROM share_review_pledges WHERE case_id = ?1", &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, case_id ? case_id : "", -1, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    store_release(s->opt.st, db);
    return rc;
}
