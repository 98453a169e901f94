/* accounts — private to the module: the in-memory session cache. */
#ifndef CARESYNC_ACCOUNTS_INTERNAL_H
#define CARESYNC_ACCOUNTS_INTERNAL_H

#include "accounts/accounts.h"

/* Sizes of the secrets accounts.c handles (docs/ARCHITECTURE.md, "Keys"):
 * the account's random data key, a key that wraps it (from Argon2id, the
 * recovery code or a session token), the login verifier (the other half of
 * the Argon2id output) and the random bytes of a session or CSRF token. */
#define ACCOUNTS_DK_BYTES CS_CRYPTO_KEY_BYTES
#define ACCOUNTS_KEK_BYTES CS_CRYPTO_KEY_BYTES
#define ACCOUNTS_VERIFIER_BYTES 32
#define ACCOUNTS_TOKEN_RAW 32
/* A token is stored as its cs_crypto_hash (org_tokens.c); a wallet's
 * secret is its Ed25519 seed (wallet.c). */
#define ACCOUNTS_TOKEN_HASH_BYTES 32
#define ACCOUNTS_WALLET_SEED 32
_Static_assert(ACCOUNTS_WALLET_SEED + ACCOUNTS_WALLET_PK == ACCOUNTS_WALLET_SK, "libsodium's sk is seed || pk");
/* cs_crypto_hash writes 32 bytes: the session id hash and the keys derived
 * from a token; base64 of the token's bytes (unpadded) plus NUL fits the text. */
_Static_assert(ACCOUNTS_SESSION_ID_BYTES == 32 && ACCOUNTS_KEK_BYTES == 32, "cs_crypto_hash gives 32 bytes");
_Static_assert(ACCOUNTS_DK_BYTES == sizeof(((accounts_session *)0)->data_key), "the session holds the data key");
_Static_assert((ACCOUNTS_TOKEN_RAW * 4 + 2) / 3 + 1 <= ACCOUNTS_TOKEN_TEXT, "a token's text holds its bytes");
/* A session's data key sealed under the token's key: nonce, key, tag. */
#define ACCOUNTS_SEALED_SESSION_MAX 96
_Static_assert(ACCOUNTS_DK_BYTES + CS_CRYPTO_SEAL_OVERHEAD <= ACCOUNTS_SEALED_SESSION_MAX, "the sealed key fits");

/* What authenticate needs from a sessions row. The data key stays sealed
 * (under the key only the cookie's token yields), exactly as on disk, so the
 * cache holds nothing the database file does not. */
typedef struct {
    uint8_t id_hash[ACCOUNTS_SESSION_ID_BYTES];
    int64_t user_id;
    char username[ACCOUNTS_USERNAME_MAX + 1];
    accounts_role role;
    char csrf[ACCOUNTS_TOKEN_TEXT];
    uint8_t sealed[ACCOUNTS_SEALED_SESSION_MAX];
    size_t sealed_len;
    int64_t expires_at; /* min(session expiry, cached + SESSION_CACHE_TTL) */
    bool has_org;
    uint8_t org[ACCOUNTS_ORG_KEY_BYTES];
} session_entry;

typedef struct session_cache session_cache;

session_cache *session_cache_new(void);
void session_cache_free(session_cache *c);
/* Generation to pass to put: a put is refused if any drop happened since,
 * so a row read before a logout can never be cached after it. */
uint64_t session_cache_generation(session_cache *c);
bool session_cache_get(session_cache *c, const uint8_t id_hash[ACCOUNTS_SESSION_ID_BYTES], int64_t now,
                       session_entry *out);
void session_cache_put(session_cache *c, const session_entry *e, uint64_t generation);
void session_cache_drop(session_cache *c, const uint8_t id_hash[ACCOUNTS_SESSION_ID_BYTES]);
/* Drop every session of user_id except keep (may be NULL). */
void session_cache_drop_user(session_cache *c, int64_t user_id, const uint8_t *keep);

#endif
