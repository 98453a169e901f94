/* accounts — private to the module: the in-memory session cache. */
#ifndef CARESYNC_ACCOUNTS_INTERNAL_H
#define CARESYNC_ACCOUNTS_INTERNAL_H

#include "accounts/accounts.h"

/* What authenticate needs from a sessions row. The data key stays sealed
 * (under the key only the cookie's token yields), exactly as on disk, so the
 * cache holds nothing the database file does not. */
typedef struct {
    uint8_t id_hash[32];
    int64_t user_id;
    char username[ACCOUNTS_USERNAME_MAX + 1];
    accounts_role role;
    char csrf[ACCOUNTS_TOKEN_TEXT];
    uint8_t sealed[96];
    size_t sealed_len;
    int64_t expires_at;  /* min(session expiry, cached + SESSION_CACHE_TTL) */
} session_entry;

typedef struct session_cache session_cache;

session_cache *session_cache_new(void);
void session_cache_free(session_cache *c);
/* Generation to pass to put: a put is refused if any drop happened since,
 * so a row read before a logout can never be cached after it. */
uint64_t session_cache_generation(session_cache *c);
bool session_cache_get(session_cache *c, const uint8_t id_hash[32], int64_t now, session_entry *out);
void session_cache_put(session_cache *c, const session_entry *e, uint64_t generation);
void session_cache_drop(session_cache *c, const uint8_t id_hash[32]);
/* Drop every session of user_id except keep (may be NULL). */
void session_cache_drop_user(session_cache *c, int64_t user_id, const uint8_t *keep);

#endif
