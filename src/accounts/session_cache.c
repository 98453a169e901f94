/* accounts — a small direct-mapped cache of session rows.
 *
 * Every authenticated request resolves its cookie; without a cache that is
 * a SQLite read transaction (file locks included) per request. Slots are
 * chosen by the session hash, which is uniformly random, so a collision just
 * evicts. Entries live at most SESSION_CACHE_TTL seconds, which bounds how
 * long a change made by another process (e.g. `caresync admin`) can go
 * unseen; changes made by this process drop entries at once. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "accounts/internal.h"

#define SESSION_CACHE_SLOTS 4096
#define SESSION_CACHE_TTL 60

typedef struct {
    bool used;
    session_entry e;
} slot;

struct session_cache {
    pthread_mutex_t lock;
    uint64_t generation;
    slot slots[SESSION_CACHE_SLOTS];
};

session_cache *session_cache_new(void) {
    session_cache *c = calloc(1, sizeof *c);
    if (c) pthread_mutex_init(&c->lock, NULL);
    return c;
}

void session_cache_free(session_cache *c) {
    if (!c) return;
    pthread_mutex_destroy(&c->lock);
    cs_crypto_wipe(c, sizeof *c);
    free(c);
}

static size_t index_of(const uint8_t id_hash[ACCOUNTS_SESSION_ID_BYTES]) {
    size_t v;
    memcpy(&v, id_hash, sizeof v);
    return v % SESSION_CACHE_SLOTS;
}

uint64_t session_cache_generation(session_cache *c) {
    pthread_mutex_lock(&c->lock);
    uint64_t g = c->generation;
    pthread_mutex_unlock(&c->lock);
    return g;
}

bool session_cache_get(session_cache *c, const uint8_t id_hash[ACCOUNTS_SESSION_ID_BYTES], int64_t now,
                       session_entry *out) {
    bool hit = false;
    pthread_mutex_lock(&c->lock);
    slot *s = &c->slots[index_of(id_hash)];
    if (s->used && memcmp(s->e.id_hash, id_hash, ACCOUNTS_SESSION_ID_BYTES) == 0) {
        if (s->e.expires_at > now) {
            *out = s->e;
            hit = true;
        } else {
            s->used = false;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return hit;
}

void session_cache_put(session_cache *c, const session_entry *e, uint64_t generation) {
    session_entry copy = *e;
    int64_t cap = core_now() + SESSION_CACHE_TTL;
    if (copy.expires_at > cap) copy.expires_at = cap;
    pthread_mutex_lock(&c->lock);
    if (generation == c->generation) {
        slot *s = &c->slots[index_of(e->id_hash)];
        s->used = true;
        s->e = copy;
    }
    pthread_mutex_unlock(&c->lock);
}

void session_cache_drop(session_cache *c, const uint8_t id_hash[ACCOUNTS_SESSION_ID_BYTES]) {
    pthread_mutex_lock(&c->lock);
    c->generation++;
    slot *s = &c->slots[index_of(id_hash)];
    if (s->used && memcmp(s->e.id_hash, id_hash, ACCOUNTS_SESSION_ID_BYTES) == 0) s->used = false;
    pthread_mutex_unlock(&c->lock);
}

void session_cache_drop_user(session_cache *c, int64_t user_id, const uint8_t *keep) {
    pthread_mutex_lock(&c->lock);
    c->generation++;
    for (size_t i = 0; i < SESSION_CACHE_SLOTS; i++) {
        slot *s = &c->slots[i];
        if (s->used && s->e.user_id == user_id && !(keep && memcmp(s->e.id_hash, keep, ACCOUNTS_SESSION_ID_BYTES) == 0))
            s->used = false;
    }
    pthread_mutex_unlock(&c->lock);
}
