/* accounts — each account's ledger wallet.
 *
 * The wallet is an Ed25519 keypair. Its public key is stored in the clear
 * (the ledger knows it anyway); its 32-byte seed only sealed under the
 * account's data key with associated data naming the user, so the server's
 * disk alone cannot sign for anyone and deleting the account (which
 * destroys every wrapping of the data key) shreds the wallet key as well. */
#include "accounts/accounts.h"
#include "accounts/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void wallet_ad(int64_t user_id, char ad[64]) {
    snprintf(ad, 64, "caresync-wallet-seed-v1:%lld", (long long)user_id);
}

/* Read (pk, sealed seed) for the user; *found false when not yet made. */
static core_status load(sqlite3 *db, int64_t user_id, uint8_t pk[ACCOUNTS_WALLET_PK], uint8_t **sealed,
                        size_t *sealed_len, bool *found, core_error *err) {
    sqlite3_stmt *q = NULL;
    *found = false;
    *sealed = NULL;
    core_status rc = store_prepare(db, "SELECT wallet_pk, wallet_seed FROM users WHERE id = ?1", &q, err);
    if (rc) return rc;
    sqlite3_bind_int64(q, 1, user_id);
    int step = sqlite3_step(q);
    if (step == SQLITE_ROW && sqlite3_column_bytes(q, 0) == ACCOUNTS_WALLET_PK && sqlite3_column_bytes(q, 1) > 0) {
        memcpy(pk, sqlite3_column_blob(q, 0), ACCOUNTS_WALLET_PK);
        *sealed_len = (size_t)sqlite3_column_bytes(q, 1);
        *sealed = malloc(*sealed_len);
        if (!*sealed)
            rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        else
            memcpy(*sealed, sqlite3_column_blob(q, 1), *sealed_len);
        *found = rc == CORE_OK;
    } else if (step == SQLITE_DONE) {
        rc = core_fail(err, CORE_ERR_AUTH, NULL, "the account no longer exists");
    } else if (step != SQLITE_ROW) {
        rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    return rc;
}

core_status accounts_wallet(accounts *a, const accounts_session *sess, uint8_t pk[ACCOUNTS_WALLET_PK],
                            uint8_t sk[ACCOUNTS_WALLET_SK], bool *created, core_error *err) {
    *created = false;
    char ad[64];
    wallet_ad(sess->user_id, ad);
    store *st = accounts_store(a);
    sqlite3 *db = store_acquire(st);
    uint8_t *sealed = NULL;
    size_t sealed_len = 0;
    bool found = false;
    core_status rc = load(db, sess->user_id, pk, &sealed, &sealed_len, &found, err);
    if (!rc && !found) {
        /* Make one. The UPDATE only fills an empty slot, so two concurrent
         * first uses agree on whichever committed first. */
        uint8_t seed[ACCOUNTS_WALLET_SEED], npk[ACCOUNTS_WALLET_PK], nsk[ACCOUNTS_WALLET_SK];
        cs_crypto_random(seed, sizeof seed);
        cs_crypto_sign_seed_keypair(seed, npk, nsk);
        cs_crypto_wipe(nsk, sizeof nsk);
        uint8_t *nsealed = NULL;
        size_t nlen = 0;
        sqlite3_stmt *q = NULL;
        rc = cs_crypto_seal(sess->data_key, ad, strlen(ad), seed, sizeof seed, &nsealed, &nlen, err);
        cs_crypto_wipe(seed, sizeof seed);
        if (!rc)
            rc = store_prepare(
                db, "UPDATE users SET wallet_pk = ?2, wallet_seed = ?3 WHERE id = ?1 AND wallet_pk IS NULL", &q, err);
        if (!rc) {
            sqlite3_bind_int64(q, 1, sess->user_id);
            sqlite3_bind_blob(q, 2, npk, ACCOUNTS_WALLET_PK, SQLITE_STATIC);
            sqlite3_bind_blob(q, 3, nsealed, (int)nlen, SQLITE_STATIC);
            if (sqlite3_step(q) != SQLITE_DONE)
                rc = store_error(db, err);
            else
                *created = sqlite3_changes(db) == 1;
        }
        sqlite3_finalize(q);
        free(nsealed);
        if (!rc) rc = load(db, sess->user_id, pk, &sealed, &sealed_len, &found, err);
        if (!rc && !found) rc = core_fail(err, CORE_ERR_STORAGE, NULL, "wallet was not stored");
    }
    store_release(st, db);
    if (!rc && sk) {
        uint8_t *seed = NULL;
        size_t n = 0;
        rc = cs_crypto_open(sess->data_key, ad, strlen(ad), sealed, sealed_len, &seed, &n, err);
        if (!rc && n != ACCOUNTS_WALLET_SEED)
            rc = core_fail(err, CORE_ERR_CRYPTO, NULL, "wallet key has the wrong size");
        if (!rc) {
            uint8_t check[ACCOUNTS_WALLET_PK];
            cs_crypto_sign_seed_keypair(seed, check, sk);
            if (!cs_crypto_equal(check, pk, ACCOUNTS_WALLET_PK))
                rc = core_fail(err, CORE_ERR_CRYPTO, NULL, "wallet key does not match");
        }
        if (seed) cs_crypto_wipe(seed, n);
        free(seed);
        if (rc) cs_crypto_wipe(sk, ACCOUNTS_WALLET_SK);
    }
    free(sealed);
    return rc;
}
