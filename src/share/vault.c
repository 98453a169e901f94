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
 * (surveil_add_tagged, surveil_withdraw). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "share/internal.h"

/* tag 16 | grant 32 | phash 8 | reward 8 | day 4 | flags 1 | week 4 | age 1 | source 1 | region 8 | condition 24 */
#define ENTRY_BYTES 107
#define FLAG_PHASH 1u     /* the photo's hash is known */
#define FLAG_WITHDRAWN 2u /* its count was taken back from an open week */
#define FLAG_TAGGED 4u    /* the pool kept its tag (source screening, counted) */

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
                      (e->tagged ? FLAG_TAGGED : 0));
    core_put_le32(o + 69, (uint32_t)e->c.week);
    o[73] = (uint8_t)e->c.age_band;
    o[74] = (uint8_t)e->c.source;
    memcpy(o + 75, e->c.region, 8);
    memcpy(o + 83, e->c.condition, 24);
}

static void decode(const uint8_t *i, share_vault_entry *e) {
    memset(e, 0, sizeof *e);
    memcpy(e->tag, i, 16);
    memcpy(e->grant, i + 16, 32);
    e->phash = get64(i + 48);
    e->reward = get64(i + 56);
    e->day = (int32_t)core_get_le32(i + 64);
    e->has_phash = i[68] & FLAG_PHASH;
    e->withdrawn = i[68] & FLAG_WITHDRAWN;
    e->tagged = i[68] & FLAG_TAGGED;
    e->c.week = (int)(int32_t)core_get_le32(i + 69);
    e->c.age_band = i[73];
    e->c.source = (surveil_source)i[74];
    memcpy(e->c.region, i + 75, 7);
    memcpy(e->c.condition, i + 83, 23);
}

static void vault_ad(int64_t owner, char ad[48]) { snprintf(ad, 48, "share-vault:%lld", (long long)owner); }

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
    vault_ad(owner, ad);
    uint8_t *plain = NULL;
    size_t pl = 0;
    rc = cs_crypto_open(data_key, ad, strlen(ad), sealed, sl, &plain, &pl, err);
    free(sealed);
    if (rc) return rc;
    if (pl % ENTRY_BYTES) {
        cs_crypto_wipe(plain, pl);
        free(plain);
        return core_fail(err, CORE_ERR_CRYPTO, NULL, "the record of shared results could not be read");
    }
    out->n = out->cap = pl / ENTRY_BYTES;
    out->e = out->n ? calloc(out->n, sizeof *out->e) : NULL;
    if (out->n && !out->e) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    for (size_t i = 0; !rc && i < out->n; i++) decode(plain + i * ENTRY_BYTES, &out->e[i]);
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
    vault_ad(owner, ad);
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
