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
 * returned (share_pledge_drop), or after SHARE_PLEDGE_TTL at the latest.
 *
 * Anti-abuse and withdrawal (issue 14): asked for in the person's session,
 * a pledge that will be contributed is checked against their vault — the
 * case photo's hash, today's earnings — and reserved there (vault.c). The
 * pledge then carries the reservation's reference and the person's inbox
 * key, never a withdrawal tag: the tag is made at the answer and goes only
 * into the pool and the person's sealed inbox, with the pledge's deletion,
 * in one transaction (contribute.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto/crypto.h"
#include "share/internal.h"

/* Longer than any promised answer time (REVIEW_HOURS_MAX, 30 days). */
#define SHARE_PLEDGE_TTL (31 * 86400)
/* wallet | region 8 | birth year 4 | flags 1 | handle 32 (version 1) | owner 8 | inbox 32 | ref 16 */
#define PLEDGE_BYTES_V1 (LEDGER_KEY + 8 + 4 + 1 + 32)
#define PLEDGE_BYTES (PLEDGE_BYTES_V1 + 8 + 32 + 16)
#define PF_SURVEIL 1u
#define PF_TRAINING 2u
#define PF_RESERVED 4u
#define PF_PAY 8u

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

/* The confirmation checked against the person's vault as a share is, and
 * reserved in it (v, written by the caller with the pledge). q gains the
 * reservation; out says what the person is told. */
static core_status reserve(share *s, const share_pledge_person *who, const char *case_id, int64_t now, share_vault *v,
                           share_pledge *q, share_confirmation *out, core_error *err) {
    uint64_t rewards[LEDGER_CATEGORIES];
    core_status rc = ledger_get_rewards(s->opt.led, rewards, err);
    if (!rc) rc = share_vault_load_synced(s, who->owner, who->data_key, now, v, err);
    if (rc) return rc;
    time_t t = (time_t)now;
    struct tm tm;
    gmtime_r(&t, &tm);
    share_vault_entry e = {.day = (int32_t)(now / 86400), .pending = true};
    share_case_ref(who->data_key, case_id, e.ref);
    memcpy(e.tag, e.ref, SURVEIL_TAG); /* not a pool tag: the answer makes that */
    e.c.source = SURVEIL_SOURCE_CLINICIAN;
    snprintf(e.c.region, sizeof e.c.region, "%s", q->region);
    e.c.age_band = surveil_age_band(q->birth_year, tm.tm_year + 1900);
    int64_t earned = 0;
    bool dup = false;
    for (size_t i = 0; i < v->n; i++) {
        const share_vault_entry *o = &v->e[i];
        if (who->has_phash && o->has_phash && __builtin_popcountll(o->phash ^ who->phash) <= s->opt.photo_distance)
            dup = true;
        if (o->day == e.day) earned += (int64_t)o->reward;
    }
    uint64_t reward = rewards[LEDGER_CAT_SCREENING];
    out->cap = s->opt.daily_cap;
    if (dup) {
        /* As a duplicate share: not counted, no reward. Kept (without the
         * hash, and not pending) only so the person's list can say so. */
        e.pending = false;
        e.duplicate = true;
        out->state = SHARE_CONFIRM_DUPLICATE;
    } else {
        e.has_phash = who->has_phash;
        e.phash = who->phash;
        e.capped = s->opt.daily_cap && earned + (int64_t)reward > s->opt.daily_cap;
        e.reward = e.capped ? 0 : reward;
        out->state = SHARE_CONFIRM_PENDING;
        out->reward = (int64_t)e.reward;
        out->capped = e.capped;
        q->reserved = true;
        q->pay = !e.capped;
        q->owner = who->owner;
        memcpy(q->ref, e.ref, 16);
        uint8_t sk[32];
        share_inbox_keys(who->data_key, q->inbox, sk);
        cs_crypto_wipe(sk, sizeof sk);
    }
    return share_vault_append(v, &e, err);
}

core_status share_pledge_put(share *s, const char *case_id, const share_pledge *p, const share_pledge_person *who,
                             int64_t now, bool *kept, share_confirmation *conf, core_error *err) {
    share_confirmation local;
    if (!conf) conf = &local;
    memset(conf, 0, sizeof *conf);
    *kept = false;
    if (!case_id || !case_id[0] || strlen(case_id) > 64) return core_fail(err, CORE_ERR_INVALID, "id", "no case id");
    bool surveil = false, training = false;
    core_status rc = share_consented(s, p->wallet, LEDGER_PURPOSE_SURVEILLANCE, now, &surveil, err);
    if (!rc && p->training) rc = share_consented(s, p->wallet, LEDGER_PURPOSE_TRAINING, now, &training, err);
    if (rc) return rc;
    surveil = surveil && p->region[0];
    if (!surveil && !training) return CORE_OK; /* nothing wanted: nothing kept */
    share_pledge pl = *p;
    pl.reserved = pl.pay = false;
    share_vault v = {0};
    bool vault = surveil && who && who->data_key;
    if (vault) {
        pthread_mutex_lock(&s->vault_lock);
        rc = reserve(s, who, case_id, now, &v, &pl, conf, err);
        if (!rc && conf->state == SHARE_CONFIRM_DUPLICATE) surveil = false;
    }
    /* Only what a consent held now asks for. */
    uint8_t pt[PLEDGE_BYTES] = {0}, key[32];
    memcpy(pt, pl.wallet, LEDGER_KEY);
    if (surveil) {
        memcpy(pt + LEDGER_KEY, pl.region, strnlen(pl.region, 7));
        core_put_le32(pt + LEDGER_KEY + 8, (uint32_t)pl.birth_year);
    }
    pt[LEDGER_KEY + 12] = (uint8_t)((surveil ? PF_SURVEIL : 0) | (training ? PF_TRAINING : 0) |
                                    (surveil && pl.reserved ? PF_RESERVED : 0) | (surveil && pl.pay ? PF_PAY : 0));
    if (training) memcpy(pt + LEDGER_KEY + 13, pl.handle, 32);
    if (surveil && pl.reserved) {
        uint8_t *o = pt + PLEDGE_BYTES_V1;
        core_put_le32(o, (uint32_t)pl.owner);
        core_put_le32(o + 4, (uint32_t)((uint64_t)pl.owner >> 32));
        memcpy(o + 8, pl.inbox, 32);
        memcpy(o + 40, pl.ref, 16);
    }
    bool store_pledge = surveil || training;
    uint8_t *sealed = NULL;
    size_t sealed_len = 0;
    pledge_key(s, key);
    if (!rc && store_pledge)
        rc = cs_crypto_seal(key, case_id, strlen(case_id), pt, sizeof pt, &sealed, &sealed_len, err);
    cs_crypto_wipe(key, sizeof key);
    cs_crypto_wipe(pt, sizeof pt);
    cs_crypto_wipe(&pl, sizeof pl);
    sqlite3 *db = store_acquire(s->opt.st);
    sqlite3_stmt *q = NULL;
    bool open = false;
    if (!rc) open = !(rc = store_begin(db, err));
    if (!rc && store_pledge) rc = store_prepare(db, "DELETE FROM share_review_pledges WHERE created_at < ?1", &q, err);
    if (!rc && store_pledge) {
        sqlite3_bind_int64(q, 1, now - SHARE_PLEDGE_TTL);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    q = NULL;
    if (!rc && store_pledge)
        rc = store_prepare(db, "INSERT OR REPLACE INTO share_review_pledges VALUES (?1, ?2, ?3)", &q, err);
    if (!rc && store_pledge) {
        sqlite3_bind_text(q, 1, case_id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(q, 2, sealed, (int)sealed_len, SQLITE_STATIC);
        sqlite3_bind_int64(q, 3, now);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    /* The reservation and the pledge that completes it, together. */
    if (!rc && vault) rc = share_vault_store(s, db, who->owner, who->data_key, &v, err);
    if (open) {
        if (!rc)
            rc = store_commit(db, err);
        else
            store_rollback(db);
    }
    store_release(s->opt.st, db);
    if (vault) pthread_mutex_unlock(&s->vault_lock);
    share_vault_free(&v);
    free(sealed);
    if (rc) memset(conf, 0, sizeof *conf);
    if (!rc) *kept = store_pledge;
    return rc;
}

/* The case's pledge, opened (*found false when there is none). A damaged
 * one is CORE_ERR_CRYPTO. */
static core_status pledge_read(share *s, sqlite3 *db, const char *case_id, share_pledge *out, bool *found,
                               core_error *err) {
    memset(out, 0, sizeof *out);
    *found = false;
    sqlite3_stmt *q = NULL;
    uint8_t *pt = NULL;
    size_t ptlen = 0;
    core_status rc = store_prepare(db, "SELECT sealed FROM share_review_pledges WHERE case_id = ?1", &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, case_id ? case_id : "", -1, SQLITE_STATIC);
        int step = sqlite3_step(q);
        if (step == SQLITE_ROW) {
            uint8_t key[32];
            pledge_key(s, key);
            rc = cs_crypto_open(key, case_id, strlen(case_id), sqlite3_column_blob(q, 0),
                                (size_t)sqlite3_column_bytes(q, 0), &pt, &ptlen, err);
            cs_crypto_wipe(key, sizeof key);
            /* Pledges kept before issue 14 are shorter: no reservation. */
            if (!rc && ptlen != PLEDGE_BYTES && ptlen != PLEDGE_BYTES_V1)
                rc = core_fail(err, CORE_ERR_CRYPTO, NULL, "a pledge is damaged");
            *found = rc == CORE_OK;
        } else if (step != SQLITE_DONE) {
            rc = store_error(db, err);
        }
    }
    sqlite3_finalize(q);
    if (*found) {
        memcpy(out->wallet, pt, LEDGER_KEY);
        uint8_t flags = pt[LEDGER_KEY + 12];
        if (flags & PF_SURVEIL) {
            memcpy(out->region, pt + LEDGER_KEY, 7);
            out->birth_year = (int)core_get_le32(pt + LEDGER_KEY + 8);
        }
        out->training = (flags & PF_TRAINING) != 0;
        if (out->training) memcpy(out->handle, pt + LEDGER_KEY + 13, 32);
        if (ptlen == PLEDGE_BYTES && (flags & PF_RESERVED)) {
            const uint8_t *o = pt + PLEDGE_BYTES_V1;
            out->reserved = true;
            out->pay = (flags & PF_PAY) != 0;
            out->owner = (int64_t)(core_get_le32(o) | (uint64_t)core_get_le32(o + 4) << 32);
            memcpy(out->inbox, o + 8, 32);
            memcpy(out->ref, o + 40, 16);
        }
    }
    if (pt) {
        cs_crypto_wipe(pt, ptlen);
        free(pt);
    }
    return rc;
}

static core_status pledge_delete(sqlite3 *db, const char *case_id, core_error *err) {
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db, "DELETE FROM share_review_pledges WHERE case_id = ?1", &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, case_id ? case_id : "", -1, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    return rc;
}

core_status share_pledge_get(share *s, const char *case_id, share_pledge *out, bool *found, core_error *err) {
    sqlite3 *db = store_acquire(s->opt.st);
    core_status rc = pledge_read(s, db, case_id, out, found, err);
    store_release(s->opt.st, db);
    return rc;
}

core_status share_pledge_take(share *s, const char *case_id, share_pledge *out, bool *found, core_error *err) {
    sqlite3 *db = store_acquire(s->opt.st);
    core_status rc = store_begin(db, err);
    if (!rc) {
        rc = pledge_read(s, db, case_id, out, found, err);
        /* Taken once: gone in the same transaction as it is read (a damaged
         * one goes too, rather than fail every answer after it). */
        if (!rc || rc == CORE_ERR_CRYPTO) {
            core_error e = {0};
            core_status d = pledge_delete(db, case_id, &e);
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
    }
    store_release(s->opt.st, db);
    if (rc || !*found) cs_crypto_wipe(out, sizeof *out);
    return rc;
}

core_status share_pledge_drop(share *s, const char *case_id, core_error *err) {
    sqlite3 *db = store_acquire(s->opt.st);
    share_pledge p;
    bool found = false;
    core_status rc = store_begin(db, err);
    bool open = !rc;
    if (!rc) {
        core_error e = {0};
        /* A damaged pledge can end nothing: it just goes. */
        rc = pledge_read(s, db, case_id, &p, &found, &e);
        if (rc == CORE_ERR_CRYPTO)
            rc = CORE_OK;
        else if (rc && err)
            *err = e;
    }
    /* Ended unanswered (or with nothing to count): the reservation's photo
     * and reward are the person's again, once their session reads the box. */
    if (!rc && found && p.reserved) {
        share_inbox_item it = {.kind = SHARE_INBOX_ENDED, .owner = p.owner};
        memcpy(it.ref, p.ref, 16);
        rc = share_inbox_post(s, db, p.inbox, &it, err);
    }
    if (!rc) rc = pledge_delete(db, case_id, err);
    if (open) {
        if (!rc)
            rc = store_commit(db, err);
        else
            store_rollback(db);
    }
    store_release(s->opt.st, db);
    cs_crypto_wipe(&p, sizeof p);
    return rc;
}

core_status share_confirmation_get(share *s, int64_t owner, const uint8_t data_key[32], const char *case_id,
                                   int64_t now, share_confirmation *out, core_error *err) {
    memset(out, 0, sizeof *out);
    out->cap = s->opt.daily_cap;
    if (!case_id) return CORE_OK;
    uint8_t ref[16];
    share_case_ref(data_key, case_id, ref);
    share_vault v = {0};
    pthread_mutex_lock(&s->vault_lock);
    core_status rc = share_vault_load_synced(s, owner, data_key, now, &v, err);
    pthread_mutex_unlock(&s->vault_lock);
    for (size_t i = 0; !rc && i < v.n; i++) {
        const share_vault_entry *e = &v.e[i];
        if (memcmp(e->ref, ref, 16) != 0) continue;
        out->state = e->duplicate   ? SHARE_CONFIRM_DUPLICATE
                     : e->pending   ? SHARE_CONFIRM_PENDING
                     : e->withdrawn ? SHARE_CONFIRM_WITHDRAWN
                                    : SHARE_CONFIRM_COUNTED;
        out->reward = (int64_t)e->reward;
        out->capped = e->capped;
        break;
    }
    share_vault_free(&v);
    return rc;
}
