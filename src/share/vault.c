/* share — the person's own record of what they contributed (issue 14):
 * one blob per person in share_vaults, sealed under their data key, so only
 * their session opens it. Per contribution it holds the withdrawal tag (the
 * only link from a count in an open week to a person), the five facts (to
 * take the count back), the consent it was shared under (revoking that
 * consent withdraws exactly these), the reward and UTC day (the daily cap)
 * and the photo's perceptual hash (the same photo earns once). Hashes are
 * compared only within one person's vault: nothing lets two people's photos
 * be compared, and no hash is in the pool, the ledger or a release.
 *
 * Read-modify-write of a vault happens under the handle's vault lock, and
 * the write commits in the same transaction as the pool's change
 * (surveil_add_tagged, surveil_withdraw).
 *
 * A clinician's confirmation of a pledged case (pledge.c) is reserved here
 * when the person asks for review — the photo's hash, the reward against
 * that day's cap, a reference derived from the data key and the case id —
 * and completed by the answer, which runs in the clinician's session and
 * cannot open the vault. So the answer leaves what the vault must learn (the
 * contribution's random withdrawal tag, its facts, or that the reservation
 * ended) in the person's inbox: a box sealed to a public key derived from
 * their data key (crypto_box_seal: the server can seal, not open), merged
 * into the vault by share_vault_load_synced in their next session that
 * reads it. Until then the tag is only in that box, never in the clear. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "share/internal.h"

/* tag 16 | grant 32 | phash 8 | reward 8 | day 4 | flags 1 | week 4 | age 1 | source 1 | region 8 | condition 24
 * (version 1, 107 bytes) | ref 16 (version 2, 123 bytes: written since confirmed cases joined the vault; a
 * vault is read in either, told apart by its associated data, and written in 2). */
#define ENTRY_BYTES_V1 107
#define ENTRY_BYTES 123
#define FLAG_PHASH 1u      /* the photo's hash is known */
#define FLAG_WITHDRAWN 2u  /* its count was taken back from an open week */
#define FLAG_TAGGED 4u     /* the pool kept its tag (counted) */
#define FLAG_PENDING 8u    /* a confirmed case reserved, waiting for its answer */
#define FLAG_DUPLICATE 16u /* a confirmed case refused: its photo was contributed before */
#define FLAG_CAPPED 32u    /* a confirmed case counted without its reward: the daily cap */
/* A reservation nobody can complete any more (its pledge outlived every
 * promised answer time) is dropped after this many days. */
#define PENDING_DAYS 32

static void put64(uint8_t *o, uint64_t v) {
    core_put_le32(o, (uint32_t)v);
    core_put_le32(o + 4, (uint32_t)(v >> 32));
}
static uint64_t get64(const uint8_t *i) { return core_get_le32(i) | (uint64_t)core_get_le32(i + 4) << 32; }

static void encode(const share_vault_entry *e, uint8_t *o) {
    memcpy(o, e->tag, 16);
    memcpy(o + 16, e->grant, 32);
    put64(o + 48, e->phash);
    put64(o + 56, e->reward);
    core_put_le32(o + 64, (uint32_t)e->day);
    o[68] = (uint8_t)((e->has_phash ? FLAG_PHASH : 0) | (e->withdrawn ? FLAG_WITHDRAWN : 0) |
                      (e->tagged ? FLAG_TAGGED : 0) | (e->pending ? FLAG_PENDING : 0) |
                      (e->duplicate ? FLAG_DUPLICATE : 0) | (e->capped ? FLAG_CAPPED : 0));
    core_put_le32(o + 69, (uint32_t)e->c.week);
    o[73] = (uint8_t)e->c.age_band;
    o[74] = (uint8_t)e->c.source;
    memcpy(o + 75, e->c.region, 8);
    memcpy(o + 83, e->c.condition, 24);
    memcpy(o + 107, e->ref, 16);
}

static void decode(const uint8_t *i, size_t size, share_vault_entry *e) {
    memset(e, 0, sizeof *e);
    memcpy(e->tag, i, 16);
    memcpy(e->grant, i + 16, 32);
    e->phash = get64(i + 48);
    e->reward = get64(i + 56);
    e->day = (int32_t)core_get_le32(i + 64);
    e->has_phash = i[68] & FLAG_PHASH;
    e->withdrawn = i[68] & FLAG_WITHDRAWN;
    e->tagged = i[68] & FLAG_TAGGED;
    e->pending = i[68] & FLAG_PENDING;
    e->duplicate = i[68] & FLAG_DUPLICATE;
    e->capped = i[68] & FLAG_CAPPED;
    e->c.week = (int)(int32_t)core_get_le32(i + 69);
    e->c.age_band = i[73];
    e->c.source = (surveil_source)i[74];
    memcpy(e->c.region, i + 75, 7);
    memcpy(e->c.condition, i + 83, 23);
    if (size >= ENTRY_BYTES) memcpy(e->ref, i + 107, 16);
}

static void vault_ad(int64_t owner, int version, char ad[48]) {
    if (version == 1)
        snprintf(ad, 48, "share-vault:%lld", (long long)owner);
    else
        snprintf(ad, 48, "share-vault:%d:%lld", version, (long long)owner);
}

void share_vault_free(share_vault *v) {
    if (!v) return;
    free(v->e);
    memset(v, 0, sizeof *v);
}

core_status share_vault_load(share *s, int64_t owner, const uint8_t data_key[32], share_vault *out, core_error *err) {
    memset(out, 0, sizeof *out);
    sqlite3 *db = store_acquire(s->opt.st);
    sqlite3_stmt *q;
    uint8_t *sealed = NULL;
    size_t sl = 0;
    core_status rc = store_prepare_cached(s->opt.st, db, "SELECT sealed FROM share_vaults WHERE owner = ?1", &q, err);
    if (!rc) {
        sqlite3_bind_int64(q, 1, owner);
        int st = sqlite3_step(q);
        if (st == SQLITE_ROW) {
            sl = (size_t)sqlite3_column_bytes(q, 0);
            sealed = malloc(sl ? sl : 1);
            if (!sealed)
                rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
            else if (sl)
                memcpy(sealed, sqlite3_column_blob(q, 0), sl);
        } else if (st != SQLITE_DONE) {
            rc = store_error(db, err);
        }
        sqlite3_reset(q);
    }
    store_release(s->opt.st, db);
    if (rc || !sealed) return rc; /* no vault yet: empty */
    char ad[48];
    vault_ad(owner, 2, ad);
    uint8_t *plain = NULL;
    size_t pl = 0, size = ENTRY_BYTES;
    rc = cs_crypto_open(data_key, ad, strlen(ad), sealed, sl, &plain, &pl, NULL);
    if (rc == CORE_ERR_CRYPTO) { /* written before version 2 */
        vault_ad(owner, 1, ad);
        size = ENTRY_BYTES_V1;
        rc = cs_crypto_open(data_key, ad, strlen(ad), sealed, sl, &plain, &pl, err);
    } else if (rc) {
        core_fail(err, rc, NULL, "out of memory");
    }
    free(sealed);
    if (rc) return rc;
    if (pl % size) {
        cs_crypto_wipe(plain, pl);
        free(plain);
        return core_fail(err, CORE_ERR_CRYPTO, NULL, "the record of shared results could not be read");
    }
    out->n = out->cap = pl / size;
    out->e = out->n ? calloc(out->n, sizeof *out->e) : NULL;
    if (out->n && !out->e) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    for (size_t i = 0; !rc && i < out->n; i++) decode(plain + i * size, size, &out->e[i]);
    cs_crypto_wipe(plain, pl);
    free(plain);
    if (rc) share_vault_free(out);
    return rc;
}

core_status share_vault_append(share_vault *v, const share_vault_entry *e, core_error *err) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        share_vault_entry *ne = realloc(v->e, cap * sizeof *ne);
        if (!ne) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        v->e = ne;
        v->cap = cap;
    }
    v->e[v->n++] = *e;
    return CORE_OK;
}

core_status share_vault_store(share *s, sqlite3 *db, int64_t owner, const uint8_t data_key[32], const share_vault *v,
                              core_error *err) {
    size_t pl = v->n * ENTRY_BYTES;
    uint8_t *plain = malloc(pl ? pl : 1), *sealed = NULL;
    size_t sl = 0;
    if (!plain) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    for (size_t i = 0; i < v->n; i++) encode(&v->e[i], plain + i * ENTRY_BYTES);
    char ad[48];
    vault_ad(owner, 2, ad);
    core_status rc = cs_crypto_seal(data_key, ad, strlen(ad), plain, pl, &sealed, &sl, err);
    cs_crypto_wipe(plain, pl);
    free(plain);
    sqlite3_stmt *q;
    if (!rc) rc = store_prepare_cached(s->opt.st, db, "INSERT OR REPLACE INTO share_vaults VALUES (?1, ?2)", &q, err);
    if (!rc) {
        sqlite3_bind_int64(q, 1, owner);
        sqlite3_bind_blob(q, 2, sealed, (int)sl, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
        sqlite3_reset(q);
    }
    free(sealed);
    return rc;
}

/* ---- the inbox ---- */

/* kind 1 | owner 8 | ref 16 | tag 16 | grant 32 | week 4 | reward 8 | condition 24 | age 1 | region 8 */
#define ITEM_BYTES 118

void share_inbox_keys(const uint8_t data_key[32], uint8_t pk[32], uint8_t sk[32]) {
    uint8_t seed[32];
    cs_crypto_hash(seed, "caresync share vault inbox v1", data_key, 32);
    cs_crypto_box_seed_keypair(seed, pk, sk);
    cs_crypto_wipe(seed, sizeof seed);
}

void share_case_ref(const uint8_t data_key[32], const char *case_id, uint8_t ref[16]) {
    uint8_t in[32 + 64] = {0}, h[32];
    memcpy(in, data_key, 32);
    memcpy(in + 32, case_id, strnlen(case_id, 64));
    cs_crypto_hash(h, "caresync share confirmed case ref v1", in, sizeof in);
    memcpy(ref, h, 16);
    cs_crypto_wipe(in, sizeof in);
}

core_status share_inbox_post(share *s, sqlite3 *db, const uint8_t pk[32], const share_inbox_item *it, core_error *err) {
    uint8_t pt[ITEM_BYTES] = {0}, box[ITEM_BYTES + CS_CRYPTO_BOX_SEAL_OVERHEAD];
    pt[0] = it->kind;
    put64(pt + 1, (uint64_t)it->owner);
    memcpy(pt + 9, it->ref, 16);
    memcpy(pt + 25, it->tag, 16);
    memcpy(pt + 41, it->grant, 32);
    core_put_le32(pt + 73, (uint32_t)it->week);
    put64(pt + 77, it->reward);
    memcpy(pt + 85, it->condition, strnlen(it->condition, 23));
    pt[109] = (uint8_t)it->age_band;
    memcpy(pt + 110, it->region, strnlen(it->region, 7));
    core_status rc = cs_crypto_box_seal(pk, pt, sizeof pt, box, err);
    cs_crypto_wipe(pt, sizeof pt);
    sqlite3_stmt *q;
    if (!rc)
        rc = store_prepare_cached(s->opt.st, db, "INSERT INTO share_vault_inbox(owner, sealed) VALUES (?1, ?2)", &q,
                                  err);
    if (!rc) {
        sqlite3_bind_int64(q, 1, it->owner);
        sqlite3_bind_blob(q, 2, box, sizeof box, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
        sqlite3_reset(q);
    }
    return rc;
}

/* Apply one opened box to v: the reservation it names becomes the counted
 * contribution (its tag now the pool's), or goes. A box naming no pending
 * reservation (merged before, or expired) changes nothing. */
static void merge_item(share_vault *v, const uint8_t *pt) {
    for (size_t i = 0; i < v->n; i++) {
        share_vault_entry *e = &v->e[i];
        if (!e->pending || memcmp(e->ref, pt + 9, 16) != 0) continue;
        if (pt[0] == SHARE_INBOX_COUNTED) {
            e->pending = false;
            e->tagged = true;
            memcpy(e->tag, pt + 25, SURVEIL_TAG);
            memcpy(e->grant, pt + 41, LEDGER_HASH);
            e->c.week = (int)(int32_t)core_get_le32(pt + 73);
            e->reward = get64(pt + 77);
            memset(e->c.condition, 0, sizeof e->c.condition);
            memcpy(e->c.condition, pt + 85, 23);
            e->c.age_band = pt[109];
            memset(e->c.region, 0, sizeof e->c.region);
            memcpy(e->c.region, pt + 110, 7);
        } else {
            v->e[i] = v->e[--v->n];
        }
        return;
    }
}

core_status share_vault_load_synced(share *s, int64_t owner, const uint8_t data_key[32], int64_t now, share_vault *out,
                                    core_error *err) {
    core_status rc = share_vault_load(s, owner, data_key, out, err);
    if (rc) return rc;
    bool changed = false;
    int32_t oldest = (int32_t)(now / 86400) - PENDING_DAYS;
    for (size_t i = 0; i < out->n;)
        if (out->e[i].pending && out->e[i].day < oldest) {
            out->e[i] = out->e[--out->n];
            changed = true;
        } else {
            i++;
        }
    sqlite3 *db = store_acquire(s->opt.st);
    sqlite3_stmt *q = NULL;
    /* Most loads find no box: look before taking the write lock. */
    bool any = false;
    rc = store_prepare_cached(s->opt.st, db, "SELECT 1 FROM share_vault_inbox WHERE owner = ?1 LIMIT 1", &q, err);
    if (!rc) {
        sqlite3_bind_int64(q, 1, owner);
        int st = sqlite3_step(q);
        any = st == SQLITE_ROW;
        if (st != SQLITE_ROW && st != SQLITE_DONE) rc = store_error(db, err);
        sqlite3_reset(q);
    }
    if (rc || (!any && !changed)) {
        store_release(s->opt.st, db);
        if (rc) share_vault_free(out);
        return rc;
    }
    uint8_t pk[32], sk[32], pt[ITEM_BYTES];
    share_inbox_keys(data_key, pk, sk);
    rc = store_begin(db, err);
    bool open = !rc;
    if (!rc)
        rc = store_prepare_cached(s->opt.st, db, "SELECT id, sealed FROM share_vault_inbox WHERE owner = ?1", &q, err);
    size_t boxes = 0;
    if (!rc) {
        sqlite3_bind_int64(q, 1, owner);
        int st;
        while ((st = sqlite3_step(q)) == SQLITE_ROW) {
            boxes++;
            /* A box that does not open, or is another person's, is dropped:
             * it can never become anything for this vault. */
            size_t len = (size_t)sqlite3_column_bytes(q, 1);
            if (len == ITEM_BYTES + CS_CRYPTO_BOX_SEAL_OVERHEAD &&
                !cs_crypto_box_open(pk, sk, sqlite3_column_blob(q, 1), len, pt, NULL) &&
                (int64_t)get64(pt + 1) == owner)
                merge_item(out, pt);
        }
        if (st != SQLITE_DONE) rc = store_error(db, err);
        sqlite3_reset(q);
    }
    cs_crypto_wipe(sk, sizeof sk);
    cs_crypto_wipe(pt, sizeof pt);
    if (!rc && (boxes || changed)) rc = share_vault_store(s, db, owner, data_key, out, err);
    if (!rc && boxes)
        rc = store_prepare_cached(s->opt.st, db, "DELETE FROM share_vault_inbox WHERE owner = ?1", &q, err);
    if (!rc && boxes) {
        sqlite3_bind_int64(q, 1, owner);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
        sqlite3_reset(q);
    }
    if (open) {
        if (!rc)
            rc = store_commit(db, err);
        else
            store_rollback(db);
    }
    store_release(s->opt.st, db);
    if (rc) share_vault_free(out);
    return rc;
}
