#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts/accounts.h"
#include "testutil.h"

typedef struct {
    char dir[256];
    char path[512];
    store *st;
    accounts *acc;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    testutil_tmpdir(f->dir);
    snprintf(f->path, sizeof f->path, "%s/db", f->dir);
    if (cs_crypto_init(NULL) || store_open(f->path, 2, &f->st, NULL)) return -1;
    accounts_options opt;
    accounts_options_defaults(&opt);
    opt.max_failures = 3;
    opt.max_failures_ip = 5;
    if (accounts_open(f->st, &opt, &f->acc, NULL)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    accounts_close(f->acc);
    store_close(f->st);
    testutil_rmdir(f->dir);
    free(f);
    return 0;
}

static const char *PW = "correct horse battery";

static void validation_rules(void **state) {
    (void)state;
    char out[ACCOUNTS_USERNAME_MAX + 1];
    core_error err = {0};
    assert_int_equal(accounts_validate_username("Alice.Smith", out, &err), CORE_OK);
    assert_string_equal(out, "alice.smith");
    assert_int_equal(accounts_validate_username("ab", out, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "username");
    assert_int_equal(accounts_validate_username(".alice", out, &err), CORE_ERR_INVALID);
    assert_int_equal(accounts_validate_username("al ice", out, &err), CORE_ERR_INVALID);
    assert_int_equal(accounts_validate_username("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", out, &err), CORE_ERR_INVALID);
    assert_int_equal(accounts_validate_username(NULL, out, &err), CORE_ERR_INVALID);
    assert_int_equal(accounts_validate_password("short", &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "password");
    assert_int_equal(accounts_validate_password(PW, &err), CORE_OK);
    accounts_role r;
    assert_true(accounts_role_parse("clinician", &r));
    assert_int_equal(r, ACCOUNTS_CLINICIAN);
    assert_false(accounts_role_parse("root", &r));
    assert_string_equal(accounts_role_name(ACCOUNTS_ANALYST), "analyst");
}

static void signup_login_authenticate_logout(void **state) {
    fixture *f = *state;
    char rc_text[CS_CRYPTO_RECOVERY_TEXT], token[ACCOUNTS_TOKEN_TEXT], token2[ACCOUNTS_TOKEN_TEXT];
    accounts_session s1, s2, s3;
    core_error err = {0};
    assert_int_equal(accounts_create(f->acc, "Alice", PW, ACCOUNTS_PERSON, rc_text, &s1, token, &err), CORE_OK);
    assert_string_equal(s1.username, "alice");
    assert_int_equal(strlen(rc_text), 39);
    /* duplicate name (case-insensitively) */
    assert_int_equal(accounts_create(f->acc, "ALICE", PW, ACCOUNTS_PERSON, rc_text, NULL, NULL, &err),
                     CORE_ERR_CONFLICT);
    assert_string_equal(err.field, "username");

    assert_int_equal(accounts_login(f->acc, "alice", PW, "10.0.0.1", &s2, token2, &err), CORE_OK);
    assert_memory_equal(s1.data_key, s2.data_key, 32); /* same data key unwrapped */
    assert_string_not_equal(token, token2);
    assert_string_not_equal(s1.csrf, s2.csrf);
    assert_int_equal(accounts_authenticate(f->acc, token2, &s3, &err), CORE_OK);
    assert_int_equal(s3.user_id, s2.user_id);
    assert_memory_equal(s3.data_key, s1.data_key, 32);
    assert_string_equal(s3.csrf, s2.csrf);

    assert_int_equal(accounts_logout(f->acc, &s3, &err), CORE_OK);
    assert_int_equal(accounts_authenticate(f->acc, token2, &s3, &err), CORE_ERR_AUTH);
    assert_int_equal(accounts_authenticate(f->acc, token, &s3, &err), CORE_OK); /* the other session lives */
    assert_int_equal(accounts_authenticate(f->acc, "garbage", &s3, &err), CORE_ERR_AUTH);
    assert_int_equal(accounts_authenticate(f->acc, NULL, &s3, &err), CORE_ERR_AUTH);
    /* a well-formed but unknown token */
    assert_int_equal(accounts_authenticate(f->acc, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &s3, &err),
                     CORE_ERR_AUTH);
}

static void wrong_password_and_unknown_user_look_alike(void **state) {
    fixture *f = *state;
    char rc_text[CS_CRYPTO_RECOVERY_TEXT], token[ACCOUNTS_TOKEN_TEXT];
    accounts_session s;
    core_error e1 = {0}, e2 = {0};
    assert_int_equal(accounts_create(f->acc, "bob", PW, ACCOUNTS_PERSON, rc_text, NULL, NULL, &e1), CORE_OK);
    assert_int_equal(accounts_login(f->acc, "bob", "wrong password!", "10.0.0.2", &s, token, &e1), CORE_ERR_AUTH);
    assert_int_equal(accounts_login(f->acc, "nobody", "wrong password!", "10.0.0.2", &s, token, &e2), CORE_ERR_AUTH);
    assert_string_equal(e1.message, e2.message);
}

static void throttling_per_account_and_address(void **state) {
    fixture *f = *state;
    char rc_text[CS_CRYPTO_RECOVERY_TEXT], token[ACCOUNTS_TOKEN_TEXT];
    accounts_session s;
    core_error err = {0};
    assert_int_equal(accounts_create(f->acc, "carol", PW, ACCOUNTS_PERSON, rc_text, NULL, NULL, &err), CORE_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(accounts_login(f->acc, "carol", "bad password", "10.0.0.3", &s, token, &err), CORE_ERR_AUTH);
    /* fourth attempt from the failing address refused before the password is
     * even checked, right or wrong */
    assert_int_equal(accounts_login(f->acc, "carol", PW, "10.0.0.3", &s, token, &err), CORE_ERR_THROTTLED);
    assert_true(err.retry_after > 0 && err.retry_after <= 900);
    assert_int_equal(accounts_login(f->acc, "carol", "bad password", "10.0.0.3", &s, token, &err), CORE_ERR_THROTTLED);
    /* ... but those failures do not lock the owner out from elsewhere */
    assert_int_equal(accounts_login(f->acc, "carol", PW, "10.0.0.4", &s, token, &err), CORE_OK);
    /* per address: 5 failures from one address across different names */
    for (int i = 0; i < 2; i++)
        assert_int_equal(accounts_login(f->acc, "nobody", "bad password", "10.0.0.3", &s, token, &err), CORE_ERR_AUTH);
    assert_int_equal(accounts_create(f->acc, "dave", PW, ACCOUNTS_PERSON, rc_text, NULL, NULL, &err), CORE_OK);
    assert_int_equal(accounts_login(f->acc, "dave", PW, "10.0.0.3", &s, token, &err), CORE_ERR_THROTTLED);
    assert_int_equal(accounts_login(f->acc, "dave", PW, "10.0.0.5", &s, token, &err), CORE_OK);
    /* an expired window resets the counter */
    sqlite3 *db = store_acquire(f->st);
    assert_int_equal(sqlite3_exec(db, "UPDATE login_throttle SET window_start = window_start - 1000", 0, 0, 0),
                     SQLITE_OK);
    store_release(f->st, db);
    assert_int_equal(accounts_login(f->acc, "carol", PW, "10.0.0.3", &s, token, &err), CORE_OK);
}

static void change_password_rewraps_and_ends_other_sessions(void **state) {
    fixture *f = *state;
    char rc_text[CS_CRYPTO_RECOVERY_TEXT], t1[ACCOUNTS_TOKEN_TEXT], t2[ACCOUNTS_TOKEN_TEXT];
    accounts_session s1, s2, s3;
    core_error err = {0};
    assert_int_equal(accounts_create(f->acc, "erin", PW, ACCOUNTS_PERSON, rc_text, &s1, t1, &err), CORE_OK);
    assert_int_equal(accounts_login(f->acc, "erin", PW, "10.1.0.1", &s2, t2, &err), CORE_OK);
    assert_int_equal(accounts_change_password(f->acc, &s1, "not the password", "a brand new secret", "10.1.0.1", &err),
                     CORE_ERR_AUTH);
    assert_string_equal(err.field, "current_password");
    assert_int_equal(accounts_change_password(f->acc, &s1, PW, "short", "10.1.0.1", &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "new_password");
    assert_int_equal(accounts_change_password(f->acc, &s1, PW, "a brand new secret", "10.1.0.1", &err), CORE_OK);
    assert_int_equal(accounts_authenticate(f->acc, t1, &s3, &err), CORE_OK);
    assert_int_equal(accounts_authenticate(f->acc, t2, &s3, &err), CORE_ERR_AUTH);
    assert_int_equal(accounts_login(f->acc, "erin", PW, "10.1.0.1", &s3, t2, &err), CORE_ERR_AUTH);
    assert_int_equal(accounts_login(f->acc, "erin", "a brand new secret", "10.1.0.1", &s3, t2, &err), CORE_OK);
    assert_memory_equal(s3.data_key, s1.data_key, 32);
}

static void reset_with_recovery_code(void **state) {
    fixture *f = *state;
    char rc1[CS_CRYPTO_RECOVERY_TEXT], rc2[CS_CRYPTO_RECOVERY_TEXT], t[ACCOUNTS_TOKEN_TEXT];
    accounts_session s1, s2;
    core_error err = {0};
    assert_int_equal(accounts_create(f->acc, "frank", PW, ACCOUNTS_PERSON, rc1, &s1, t, &err), CORE_OK);
    char wrong[CS_CRYPTO_RECOVERY_TEXT];
    uint8_t raw[20];
    cs_crypto_recovery_new(raw, wrong);
    assert_int_equal(accounts_reset_password(f->acc, "frank", wrong, "reset password 1", "10.2.0.1", rc2, &err),
                     CORE_ERR_AUTH);
    assert_int_equal(accounts_reset_password(f->acc, "frank", "not a code", "reset password 1", "10.2.0.1", rc2, &err),
                     CORE_ERR_AUTH);
    assert_int_equal(accounts_reset_password(f->acc, "frank", rc1, "reset password 1", "10.2.0.2", rc2, &err), CORE_OK);
    assert_string_not_equal(rc1, rc2);
    assert_int_equal(accounts_authenticate(f->acc, t, &s2, &err), CORE_ERR_AUTH); /* sessions ended */
    assert_int_equal(accounts_login(f->acc, "frank", "reset password 1", "10.2.0.2", &s2, t, &err), CORE_OK);
    assert_memory_equal(s1.data_key, s2.data_key, 32); /* same data key: records survive */
    /* the used code is spent; the new one works */
    assert_int_equal(accounts_reset_password(f->acc, "frank", rc1, "reset password 2", "10.2.0.3", rc2 + 0, &err),
                     CORE_ERR_AUTH);
}

static void delete_destroys_keys_and_rows(void **state) {
    fixture *f = *state;
    char rc_text[CS_CRYPTO_RECOVERY_TEXT], t[ACCOUNTS_TOKEN_TEXT];
    accounts_session s, s2;
    core_error err = {0};
    assert_int_equal(accounts_create(f->acc, "gina", PW, ACCOUNTS_PERSON, rc_text, &s, t, &err), CORE_OK);
    assert_int_equal(accounts_delete(f->acc, &s, "wrong password", "10.3.0.1", &err), CORE_ERR_AUTH);
    assert_string_equal(err.field, "password");
    assert_int_equal(accounts_delete(f->acc, &s, PW, "10.3.0.1", &err), CORE_OK);
    assert_int_equal(accounts_authenticate(f->acc, t, &s2, &err), CORE_ERR_AUTH);
    assert_int_equal(accounts_login(f->acc, "gina", PW, "10.3.0.1", &s2, t, &err), CORE_ERR_AUTH);
    sqlite3 *db = store_acquire(f->st);
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT (SELECT count(*) FROM users WHERE username='gina') + "
                                        "(SELECT count(*) FROM sessions WHERE user_id = ?)",
                                        -1, &q, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(q, 1, s.user_id);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 0);
    sqlite3_finalize(q);
    store_release(f->st, db);
    /* the name is free again */
    assert_int_equal(accounts_create(f->acc, "gina", PW, ACCOUNTS_PERSON, rc_text, NULL, NULL, &err), CORE_OK);
}

static void expired_sessions_are_refused(void **state) {
    fixture *f = *state;
    char rc_text[CS_CRYPTO_RECOVERY_TEXT], t[ACCOUNTS_TOKEN_TEXT];
    accounts_session s;
    core_error err = {0};
    assert_int_equal(accounts_create(f->acc, "hank", PW, ACCOUNTS_CLINICIAN, rc_text, &s, t, &err), CORE_OK);
    assert_int_equal(s.role, ACCOUNTS_CLINICIAN);
    sqlite3 *db = store_acquire(f->st);
    assert_int_equal(sqlite3_exec(db, "UPDATE sessions SET expires_at = 1", 0, 0, 0), SQLITE_OK);
    store_release(f->st, db);
    assert_int_equal(accounts_authenticate(f->acc, t, &s, &err), CORE_ERR_AUTH);
}

static void password_and_data_key_never_stored_in_clear(void **state) {
    fixture *f = *state;
    char rc_text[CS_CRYPTO_RECOVERY_TEXT], t[ACCOUNTS_TOKEN_TEXT];
    accounts_session s;
    const char *pw = "MARKER-password-9f8e7d";
    assert_int_equal(accounts_create(f->acc, "ivy", pw, ACCOUNTS_PERSON, rc_text, &s, t, NULL), CORE_OK);
    char wal[600];
    snprintf(wal, sizeof wal, "%s-wal", f->path);
    assert_false(testutil_file_contains(f->path, pw, strlen(pw)));
    assert_false(testutil_file_contains(wal, pw, strlen(pw)));
    assert_false(testutil_file_contains(wal, s.data_key, 32));
    assert_false(testutil_file_contains(f->path, s.data_key, 32));
    assert_false(testutil_file_contains(wal, rc_text, strlen(rc_text)));
}

/* An options set on the fixture's store, for limits the fixture does not set. */
static accounts *open_with(fixture *f, void (*tweak)(accounts_options *)) {
    accounts_options opt;
    accounts_options_defaults(&opt);
    opt.max_failures = 3;
    opt.max_failures_ip = 5;
    tweak(&opt);
    accounts *a = NULL;
    assert_int_equal(accounts_open(f->st, &opt, &a, NULL), CORE_OK);
    return a;
}

static void small_account_budget(accounts_options *o) { o->max_failures_account = 4; }

static void global_account_budget_and_reset(void **state) {
    fixture *f = *state;
    accounts *a = open_with(f, small_account_budget);
    char rc1[CS_CRYPTO_RECOVERY_TEXT], rc2[CS_CRYPTO_RECOVERY_TEXT], token[ACCOUNTS_TOKEN_TEXT];
    accounts_session s;
    core_error err = {0};
    assert_int_equal(accounts_create(a, "kim", PW, ACCOUNTS_PERSON, rc1, NULL, NULL, &err), CORE_OK);
    /* an attacker's address exhausts its own budget for the account ... */
    for (int i = 0; i < 3; i++)
        assert_int_equal(accounts_login(a, "kim", "bad password", "10.7.0.1", &s, token, &err), CORE_ERR_AUTH);
    assert_int_equal(accounts_login(a, "kim", PW, "10.7.0.1", &s, token, &err), CORE_ERR_THROTTLED);
    /* ... and the recovery code still works from the owner's address */
    assert_int_equal(accounts_reset_password(a, "kim", rc1, "kim's new password", "10.7.0.9", rc2, &err), CORE_OK);
    /* guesses spread over addresses meet the account's global budget (4) */
    assert_int_equal(accounts_login(a, "kim", "bad password", "10.7.0.2", &s, token, &err), CORE_ERR_AUTH);
    assert_int_equal(accounts_login(a, "kim", "bad password", "10.7.0.3", &s, token, &err), CORE_ERR_AUTH);
    assert_int_equal(accounts_login(a, "kim", "bad password", "10.7.0.4", &s, token, &err), CORE_ERR_AUTH);
    assert_int_equal(accounts_login(a, "kim", "bad password", "10.7.0.5", &s, token, &err), CORE_ERR_AUTH);
    assert_int_equal(accounts_login(a, "kim", "kim's new password", "10.7.0.6", &s, token, &err), CORE_ERR_THROTTLED);
    assert_true(err.retry_after > 900 && err.retry_after <= 3600);
    /* the recovery code is not held by that budget (160 bits cannot be
     * guessed), and a reset starts it afresh: the guessed password is gone */
    assert_int_equal(accounts_reset_password(a, "kim", rc2, "kim's third password", "10.7.0.6", rc1, &err), CORE_OK);
    assert_int_equal(accounts_login(a, "kim", "kim's third password", "10.7.0.6", &s, token, &err), CORE_OK);
    /* the attacker's first address is still shut out of the account */
    assert_int_equal(accounts_login(a, "kim", "kim's third password", "10.7.0.1", &s, token, &err), CORE_ERR_THROTTLED);
    accounts_close(a);
}

static void two_signups(accounts_options *o) { o->signup_max = 2; }

static int64_t count_users(fixture *f) {
    sqlite3 *db = store_acquire(f->st);
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM users", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    store_release(f->st, db);
    return n;
}

static void signups_are_limited_per_address(void **state) {
    fixture *f = *state;
    accounts *a = open_with(f, two_signups);
    char rc[CS_CRYPTO_RECOVERY_TEXT], token[ACCOUNTS_TOKEN_TEXT];
    accounts_session s;
    core_error err = {0};
    assert_int_equal(accounts_signup(a, "su1", PW, "10.9.0.1", rc, &s, token, &err), CORE_OK);
    assert_int_equal(s.role, ACCOUNTS_PERSON);
    /* a refused sign-up (name taken) takes nothing from the budget */
    assert_int_equal(accounts_signup(a, "su1", PW, "10.9.0.1", rc, &s, token, &err), CORE_ERR_CONFLICT);
    assert_int_equal(accounts_signup(a, "su2", PW, "10.9.0.1", rc, &s, token, &err), CORE_OK);
    int64_t users = count_users(f);
    assert_int_equal(accounts_signup(a, "su3", PW, "10.9.0.1", rc, &s, token, &err), CORE_ERR_THROTTLED);
    assert_true(err.retry_after > 0 && err.retry_after <= 3600);
    assert_int_equal(count_users(f), users); /* nothing written */
    /* the same address written as IPv4-mapped IPv6 is the same address */
    assert_int_equal(accounts_signup(a, "su3", PW, "::ffff:10.9.0.1", rc, &s, token, &err), CORE_ERR_THROTTLED);
    /* another address still signs up */
    assert_int_equal(accounts_signup(a, "su3", PW, "10.9.0.2", rc, &s, token, &err), CORE_OK);
    /* IPv6 counts per /64 */
    assert_int_equal(accounts_signup(a, "su4", PW, "2001:db8:1:2::1", rc, &s, token, &err), CORE_OK);
    assert_int_equal(accounts_signup(a, "su5", PW, "2001:db8:1:2:aaaa::2", rc, &s, token, &err), CORE_OK);
    assert_int_equal(accounts_signup(a, "su6", PW, "2001:db8:1:2:ffff:1:2:3", rc, &s, token, &err), CORE_ERR_THROTTLED);
    assert_int_equal(accounts_signup(a, "su6", PW, "2001:db8:1:3::1", rc, &s, token, &err), CORE_OK);
    /* staff accounts made by the operator are not counted */
    assert_int_equal(accounts_create(a, "staff1", PW, ACCOUNTS_CLINICIAN, rc, NULL, NULL, &err), CORE_OK);
    /* the window ends */
    sqlite3 *db = store_acquire(f->st);
    assert_int_equal(sqlite3_exec(db, "UPDATE login_throttle SET window_start = window_start - 3600", 0, 0, 0),
                     SQLITE_OK);
    store_release(f->st, db);
    assert_int_equal(accounts_signup(a, "su7", PW, "10.9.0.1", rc, &s, token, &err), CORE_OK);
    accounts_close(a);
}

static void end_other_sessions_keeps_the_current_one(void **state) {
    fixture *f = *state;
    char rc[CS_CRYPTO_RECOVERY_TEXT], t1[ACCOUNTS_TOKEN_TEXT], t2[ACCOUNTS_TOKEN_TEXT], t3[ACCOUNTS_TOKEN_TEXT],
        t4[ACCOUNTS_TOKEN_TEXT];
    accounts_session s1, s2, s3, s4, x;
    core_error err = {0};
    assert_int_equal(accounts_create(f->acc, "lena", PW, ACCOUNTS_PERSON, rc, &s1, t1, &err), CORE_OK);
    assert_int_equal(accounts_login(f->acc, "lena", PW, "10.8.0.1", &s2, t2, &err), CORE_OK);
    assert_int_equal(accounts_login(f->acc, "lena", PW, "10.8.0.2", &s3, t3, &err), CORE_OK);
    assert_int_equal(accounts_create(f->acc, "mona", PW, ACCOUNTS_PERSON, rc, &s4, t4, &err), CORE_OK);
    /* warm the session cache, so the test also proves it is dropped */
    assert_int_equal(accounts_authenticate(f->acc, t1, &x, &err), CORE_OK);
    assert_int_equal(accounts_authenticate(f->acc, t3, &x, &err), CORE_OK);
    int ended = -1;
    assert_int_equal(accounts_end_other_sessions(f->acc, &s2, &ended, &err), CORE_OK);
    assert_int_equal(ended, 2);
    assert_int_equal(accounts_authenticate(f->acc, t1, &x, &err), CORE_ERR_AUTH);
    assert_int_equal(accounts_authenticate(f->acc, t3, &x, &err), CORE_ERR_AUTH);
    assert_int_equal(accounts_authenticate(f->acc, t2, &x, &err), CORE_OK);
    assert_memory_equal(x.data_key, s1.data_key, 32);
    assert_int_equal(accounts_authenticate(f->acc, t4, &x, &err), CORE_OK); /* another account untouched */
    assert_int_equal(accounts_end_other_sessions(f->acc, &s2, &ended, &err), CORE_OK);
    assert_int_equal(ended, 0);
}

/* A clinician's organisation: set at creation or later, read with every
 * session (cached sessions see a change at once), refused for people and administrators. */
static void clinicians_belong_to_one_organisation(void **state) {
    fixture *f = *state;
    core_error err = {0};
    char rc_text[CS_CRYPTO_RECOVERY_TEXT], token[ACCOUNTS_TOKEN_TEXT];
    uint8_t org_a[ACCOUNTS_ORG_KEY_BYTES], org_b[ACCOUNTS_ORG_KEY_BYTES], got[ACCOUNTS_ORG_KEY_BYTES];
    memset(org_a, 0xa1, sizeof org_a);
    memset(org_b, 0xb2, sizeof org_b);
    assert_int_equal(accounts_create_in_org(f->acc, "pat", PW, ACCOUNTS_PERSON, org_a, rc_text, &err),
                     CORE_ERR_INVALID);
    assert_string_equal(err.field, "role");
    assert_int_equal(accounts_create_in_org(f->acc, "doc", PW, ACCOUNTS_CLINICIAN, org_a, rc_text, &err), CORE_OK);
    accounts_session s, again;
    assert_int_equal(accounts_login(f->acc, "doc", PW, "10.0.0.1", &s, token, &err), CORE_OK);
    assert_true(s.has_org);
    assert_memory_equal(s.org, org_a, sizeof org_a);
    assert_int_equal(accounts_authenticate(f->acc, token, &again, &err), CORE_OK); /* now cached */
    assert_memory_equal(again.org, org_a, sizeof org_a);

    assert_int_equal(accounts_set_org(f->acc, "DOC", org_b, &err), CORE_OK);
    assert_int_equal(accounts_authenticate(f->acc, token, &again, &err), CORE_OK);
    assert_true(again.has_org);
    assert_memory_equal(again.org, org_b, sizeof org_b);
    accounts_role role;
    bool has = false;
    assert_int_equal(accounts_get_org(f->acc, "doc", &role, &has, got, &err), CORE_OK);
    assert_int_equal(role, ACCOUNTS_CLINICIAN);
    assert_true(has);
    assert_memory_equal(got, org_b, sizeof org_b);
    assert_int_equal(accounts_set_org(f->acc, "doc", NULL, &err), CORE_OK);
    assert_int_equal(accounts_authenticate(f->acc, token, &again, &err), CORE_OK);
    assert_false(again.has_org);

    /* People and administrators act for no organisation. */
    assert_int_equal(accounts_create(f->acc, "root", PW, ACCOUNTS_ADMIN, rc_text, NULL, NULL, &err), CORE_OK);
    assert_int_equal(accounts_set_org(f->acc, "root", org_a, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "role");
    assert_int_equal(accounts_get_org(f->acc, "root", &role, &has, got, &err), CORE_OK);
    assert_false(has);
    assert_int_equal(accounts_create(f->acc, "pat2", PW, ACCOUNTS_PERSON, rc_text, NULL, NULL, &err), CORE_OK);
    assert_int_equal(accounts_set_org(f->acc, "pat2", org_a, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "role");
    assert_int_equal(accounts_create_in_org(f->acc, "root2", PW, ACCOUNTS_ADMIN, org_a, rc_text, &err),
                     CORE_ERR_INVALID);
    assert_int_equal(accounts_set_org(f->acc, "nobody", org_a, &err), CORE_ERR_NOT_FOUND);
    assert_int_equal(accounts_set_org(f->acc, "!!", org_a, &err), CORE_ERR_NOT_FOUND);
    accounts_session_wipe(&s);
    accounts_session_wipe(&again);
}

/* Analysts belong to an organisation as clinicians do (issue 14: they act
 * for it on the data market); an analyst without one is what it always was:
 * no organisation in its session, created and logged in as before. */
static void analysts_belong_to_an_organisation_too(void **state) {
    fixture *f = *state;
    core_error err = {0};
    char rc_text[CS_CRYPTO_RECOVERY_TEXT], token[ACCOUNTS_TOKEN_TEXT], token2[ACCOUNTS_TOKEN_TEXT];
    uint8_t org_a[ACCOUNTS_ORG_KEY_BYTES], got[ACCOUNTS_ORG_KEY_BYTES];
    memset(org_a, 0xa1, sizeof org_a);
    accounts_role role;
    bool has = true;
    accounts_session s, again, plain;

    assert_int_equal(accounts_create(f->acc, "ann", PW, ACCOUNTS_ANALYST, rc_text, NULL, NULL, &err), CORE_OK);
    assert_int_equal(accounts_login(f->acc, "ann", PW, "10.0.0.1", &s, token, &err), CORE_OK);
    assert_false(s.has_org);
    assert_int_equal(accounts_get_org(f->acc, "ann", &role, &has, got, &err), CORE_OK);
    assert_int_equal(role, ACCOUNTS_ANALYST);
    assert_false(has);

    assert_int_equal(accounts_set_org(f->acc, "ann", org_a, &err), CORE_OK);
    assert_int_equal(accounts_authenticate(f->acc, token, &again, &err), CORE_OK); /* the live session sees it */
    assert_true(again.has_org);
    assert_memory_equal(again.org, org_a, sizeof org_a);
    assert_int_equal(again.role, ACCOUNTS_ANALYST);
    assert_int_equal(accounts_get_org(f->acc, "ann", &role, &has, got, &err), CORE_OK);
    assert_true(has);
    assert_memory_equal(got, org_a, sizeof org_a);
    assert_int_equal(accounts_set_org(f->acc, "ann", NULL, &err), CORE_OK);
    assert_int_equal(accounts_authenticate(f->acc, token, &again, &err), CORE_OK);
    assert_false(again.has_org);

    /* At creation, in one step. */
    assert_int_equal(accounts_create_in_org(f->acc, "bea", PW, ACCOUNTS_ANALYST, org_a, rc_text, &err), CORE_OK);
    assert_int_equal(accounts_login(f->acc, "bea", PW, "10.0.0.1", &plain, token2, &err), CORE_OK);
    assert_true(plain.has_org);
    assert_memory_equal(plain.org, org_a, sizeof org_a);
    assert_int_equal(plain.role, ACCOUNTS_ANALYST);

    assert_true(accounts_role_has_org(ACCOUNTS_CLINICIAN));
    assert_true(accounts_role_has_org(ACCOUNTS_ANALYST));
    assert_false(accounts_role_has_org(ACCOUNTS_PERSON));
    assert_false(accounts_role_has_org(ACCOUNTS_ADMIN));
    accounts_session_wipe(&s);
    accounts_session_wipe(&again);
    accounts_session_wipe(&plain);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(validation_rules),
        cmocka_unit_test_setup_teardown(signup_login_authenticate_logout, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_password_and_unknown_user_look_alike, setup, teardown),
        cmocka_unit_test_setup_teardown(throttling_per_account_and_address, setup, teardown),
        cmocka_unit_test_setup_teardown(change_password_rewraps_and_ends_other_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(reset_with_recovery_code, setup, teardown),
        cmocka_unit_test_setup_teardown(delete_destroys_keys_and_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(expired_sessions_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(password_and_data_key_never_stored_in_clear, setup, teardown),
        cmocka_unit_test_setup_teardown(global_account_budget_and_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(signups_are_limited_per_address, setup, teardown),
        cmocka_unit_test_setup_teardown(end_other_sessions_keeps_the_current_one, setup, teardown),
        cmocka_unit_test_setup_teardown(clinicians_belong_to_one_organisation, setup, teardown),
        cmocka_unit_test_setup_teardown(analysts_belong_to_an_organisation_too, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
