/* Organisations' API tokens. An organisation registered on the ledger (by
 * its key) gets bearer tokens for the aggregates API; only a hash of each is
 * stored, so the database cannot be used to call the API. */
#include <stdio.h>
#include <string.h>

#include "accounts/accounts.h"
#include "accounts/internal.h"
#include "crypto/crypto.h"

core_status accounts_org_token_create(accounts *a, const uint8_t org_key[ACCOUNTS_ORG_KEY_BYTES], const char *name,
                                      char token[ACCOUNTS_TOKEN_TEXT], core_error *err) {
    uint8_t raw[ACCOUNTS_TOKEN_RAW], hash[ACCOUNTS_TOKEN_HASH_BYTES];
    cs_crypto_random(raw, sizeof raw);
    cs_crypto_hash(hash, "caresync-org-token-v1", raw, sizeof raw);
    store *st = accounts_store(a);
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db, "INSERT INTO org_tokens VALUES (?1, ?2, ?3, ?4)", &q, err);
    if (!rc) {
        sqlite3_bind_blob(q, 1, hash, sizeof hash, SQLITE_STATIC);
        sqlite3_bind_blob(q, 2, org_key, ACCOUNTS_ORG_KEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_text(q, 3, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 4, core_now());
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    store_release(st, db);
    if (!rc) cs_crypto_b64(raw, sizeof raw, token);
    cs_crypto_wipe(raw, sizeof raw);
    return rc;
}

core_status accounts_org_token_check(accounts *a, const char *token, uint8_t org_key[ACCOUNTS_ORG_KEY_BYTES],
                                     char name[ACCOUNTS_ORG_NAME_MAX + 1], core_error *err) {
    uint8_t raw[ACCOUNTS_TOKEN_RAW], hash[ACCOUNTS_TOKEN_HASH_BYTES];
    if (!token || !cs_crypto_unb64(token, raw, sizeof raw))
        return core_fail(err, CORE_ERR_AUTH, NULL, "not a CareSync organisation token");
    cs_crypto_hash(hash, "caresync-org-token-v1", raw, sizeof raw);
    cs_crypto_wipe(raw, sizeof raw);
    store *st = accounts_store(a);
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q;
    core_status rc =
        store_prepare_cached(st, db, "SELECT org_key, name FROM org_tokens WHERE token_hash = ?1", &q, err);
    if (!rc) {
        sqlite3_bind_blob(q, 1, hash, sizeof hash, SQLITE_STATIC);
        if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_bytes(q, 0) == ACCOUNTS_ORG_KEY_BYTES) {
            memcpy(org_key, sqlite3_column_blob(q, 0), ACCOUNTS_ORG_KEY_BYTES);
            snprintf(name, ACCOUNTS_ORG_NAME_MAX + 1, "%s", (const char *)sqlite3_column_text(q, 1));
        } else {
            rc = core_fail(err, CORE_ERR_AUTH, NULL, "unknown or revoked organisation token");
        }
        sqlite3_reset(q);
    }
    store_release(st, db);
    return rc;
}
