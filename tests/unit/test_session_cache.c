/* The session cache is private to accounts; tested through its internal header. */
#include <string.h>

#include "accounts/internal.h"
#include "testutil.h"

static session_entry entry(uint8_t tag, int64_t user) {
    session_entry e;
    memset(&e, 0, sizeof e);
    memset(e.id_hash, tag, 32);
    e.user_id = user;
    e.expires_at = core_now() + 3600;
    e.sealed_len = 4;
    return e;
}

static void get_put_drop(void **state) {
    (void)state;
    session_cache *c = session_cache_new();
    session_entry a = entry(1, 10), b = entry(2, 10), d = entry(3, 11), out;
    session_cache_put(c, &a, session_cache_generation(c));
    session_cache_put(c, &b, session_cache_generation(c));
    session_cache_put(c, &d, session_cache_generation(c));
    assert_true(session_cache_get(c, a.id_hash, core_now(), &out));
    assert_int_equal(out.user_id, 10);
    /* entries are capped at 60 s even if the session lives longer */
    assert_true(out.expires_at <= core_now() + 60);
    assert_false(session_cache_get(c, a.id_hash, core_now() + 61, &out));
    session_cache_put(c, &a, session_cache_generation(c));
    session_cache_drop(c, a.id_hash);
    assert_false(session_cache_get(c, a.id_hash, core_now(), &out));
    /* drop_user keeps the named session and other users' sessions */
    session_cache_put(c, &a, session_cache_generation(c));
    session_cache_drop_user(c, 10, b.id_hash);
    assert_false(session_cache_get(c, a.id_hash, core_now(), &out));
    assert_true(session_cache_get(c, b.id_hash, core_now(), &out));
    assert_true(session_cache_get(c, d.id_hash, core_now(), &out));
    session_cache_drop_user(c, 10, NULL);
    assert_false(session_cache_get(c, b.id_hash, core_now(), &out));
    session_cache_free(c);
}

/* A row read before a logout must not be cached after it. */
static void stale_put_after_drop_is_refused(void **state) {
    (void)state;
    session_cache *c = session_cache_new();
    session_entry a = entry(7, 1), out;
    uint64_t gen = session_cache_generation(c); /* authenticate starts its DB read */
    session_cache_drop(c, a.id_hash);           /* logout commits meanwhile */
    session_cache_put(c, &a, gen);              /* the stale row arrives */
    assert_false(session_cache_get(c, a.id_hash, core_now(), &out));
    session_cache_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(get_put_drop),
        cmocka_unit_test(stale_put_after_drop_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
