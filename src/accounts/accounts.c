/* accounts — account lifecycle, key wrapping and sessions. */
#include "accounts/accounts.h"
#include "accounts/internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct accounts {
    store *st;
    accounts_options opt;
    session_cache *cache;
};

/* Associated data binds each sealed key to its purpose, so a blob copied into
 * the wrong column fails to open. */
#define AD_PW "caresync-dk-password-v1"
#define AD_RC "caresync-dk-recovery-v1"
#define AD_SESS "caresync-dk-session-v1"

static const char *const role_names[] = {"person", "clinician", "analyst", "admin"};

const char *accounts_role_name(accounts_role role) { return role <= ACCOUNTS_ADMIN ? role_names[role] : "unknown"; }

bool accounts_role_parse(const char *name, accounts_role *out) {
    for (int i = 0; name && i <= ACCOUNTS_ADMIN; i++)
        if (strcmp(name, role_names[i]) == 0) {
            *out = (accounts_role)i;
            return true;
        }
    return false;
}

void accounts_options_defaults(accounts_options *opt) {
    opt->session_ttl = 12 * 3600;
    opt->max_failures = 5;
    opt->max_failures_ip = 20;
    opt->window = 15 * 60;
    opt->max_failures_account = 50;
    opt->account_window = 3600;
    opt->signup_max = 20;
    opt->signup_window = 3600;
    opt->kdf = cs_crypto_kdf_default();
}

core_status accounts_open(store *st, const accounts_options *opt, accounts **out, core_error *err) {
    accounts *a = calloc(1, sizeof *a);
    if (!a) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    a->st = st;
    a->cache = session_cache_new();
    if (!a->cache) {
        free(a);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    if (opt)
        a->opt = *opt;
    else
        accounts_options_defaults(&a->opt);
    *out = a;
    return CORE_OK;
}

void accounts_close(accounts *a) {
    if (!a) return;
    session_cache_free(a->cache);
    free(a);
}
store *accounts_store(accounts *a) { return a->st; }

void accounts_session_wipe(accounts_session *sess) {
    if (sess) cs_crypto_wipe(sess, sizeof *sess);
}

core_status accounts_validate_username(const char *in, char out[ACCOUNTS_USERNAME_MAX + 1], core_error *err) {
    size_t n = in ? strlen(in) : 0;
    if (n < 3 || n > ACCOUNTS_USERNAME_MAX)
        return core_fail(err, CORE_ERR_INVALID, "username", "username must be 3 to %d characters",
                         ACCOUNTS_USERNAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && (c == '.' || c == '_' || c == '-'));
        if (!ok)
            return core_fail(
                err, CORE_ERR_INVALID, "username",
                "username may use only letters, digits, '.', '_' and '-', and must start with a letter or digit");
        out[i] = c;
    }
    out[n] = '\0';
    return CORE_OK;
}

core_status accounts_validate_password(const char *password, core_error *err) {
    size_t n = password ? strlen(password) : 0;
    if (n < 10) return core_fail(err, CORE_ERR_INVALID, "password", "password must be at least 10 characters");
    if (n > 256) return core_fail(err, CORE_ERR_INVALID, "password", "password must be at most 256 bytes");
    return CORE_OK;
}

/* Everything needed to check a password and unwrap the data key. */
typedef struct {
    int64_t id;
    char username[ACCOUNTS_USERNAME_MAX + 1];
    accounts_role role;
    uint8_t pw_salt[CS_CRYPTO_SALT_BYTES];
    cs_crypto_kdf_cost cost;
    uint8_t verifier[ACCOUNTS_VERIFIER_BYTES];
    uint8_t *dk_pw;
    size_t dk_pw_len;
    uint8_t rc_salt[CS_CRYPTO_SALT_BYTES];
    uint8_t *dk_rc;
    size_t dk_rc_len;
} user_row;

static void user_row_free(user_row *u) {
    free(u->dk_pw);
    free(u->dk_rc);
    cs_crypto_wipe(u, sizeof *u);
}

static uint8_t *blob_dup(sqlite3_stmt *q, int col, size_t *len) {
    size_t n = (size_t)sqlite3_column_bytes(q, col);
    uint8_t *p = malloc(n ? n : 1);
    if (p && n) memcpy(p, sqlite3_column_blob(q, col), n);
    *len = n;
    return p;
}

static bool blob_copy(sqlite3_stmt *q, int col, void *dst, size_t n) {
    if ((size_t)sqlite3_column_bytes(q, col) != n) return false;
    memcpy(dst, sqlite3_column_blob(q, col), n);
    return true;
}

/* Load by username (id < 0) or by id. CORE_ERR_NOT_FOUND if absent. */
static core_status load_user(sqlite3 *db, const char *username, int64_t id, user_row *u, core_error *err) {
    memset(u, 0, sizeof *u);
    sqlite3_stmt *q = NULL;
    const char *sql = "SELECT id, username, role, pw_salt, pw_ops, pw_mem, pw_verifier, dk_pw, rc_salt, dk_rc "
                      "FROM users WHERE ";
    char sql_text[512];
    snprintf(sql_text, sizeof sql_text, "%s%s", sql, username ? "username = ?" : "id = ?");
    core_status rc = store_prepare(db, sql_text, &q, err);
    if (rc) return rc;
    if (username)
        sqlite3_bind_text(q, 1, username, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(q, 1, id);
    int step = sqlite3_step(q);
    if (step == SQLITE_ROW) {
        u->id = sqlite3_column_int64(q, 0);
        snprintf(u->username, sizeof u->username, "%s", (const char *)sqlite3_column_text(q, 1));
        if (!accounts_role_parse((const char *)sqlite3_column_text(q, 2), &u->role)) u->role = ACCOUNTS_PERSON;
        u->cost.ops = (uint64_t)sqlite3_column_int64(q, 4);
        u->cost.mem = (uint64_t)sqlite3_column_int64(q, 5);
        u->dk_pw = blob_dup(q, 7, &u->dk_pw_len);
        u->dk_rc = blob_dup(q, 9, &u->dk_rc_len);
        if (!blob_copy(q, 3, u->pw_salt, sizeof u->pw_salt) || !blob_copy(q, 6, u->verifier, ACCOUNTS_VERIFIER_BYTES) ||
            !blob_copy(q, 8, u->rc_salt, sizeof u->rc_salt) || !u->dk_pw || !u->dk_rc)
            rc = core_fail(err, CORE_ERR_STORAGE, NULL, "account row is damaged");
    } else if (step == SQLITE_DONE) {
        rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such account");
    } else {
        rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    if (rc) user_row_free(u);
    return rc;
}

static void recovery_key(const uint8_t salt[CS_CRYPTO_SALT_BYTES], const uint8_t raw[CS_CRYPTO_RECOVERY_RAW],
                         uint8_t key[ACCOUNTS_KEK_BYTES]) {
    /* The recovery secret has 160 bits of entropy: a fast keyed hash suffices. */
    uint8_t in[CS_CRYPTO_SALT_BYTES + CS_CRYPTO_RECOVERY_RAW];
    memcpy(in, salt, CS_CRYPTO_SALT_BYTES);
    memcpy(in + CS_CRYPTO_SALT_BYTES, raw, CS_CRYPTO_RECOVERY_RAW);
    cs_crypto_hash(key, "caresync-recovery-key-v1", in, sizeof in);
    cs_crypto_wipe(in, sizeof in);
}

/* Fresh password wrapping of dk: new salt, verifier and sealed key. */
typedef struct {
    uint8_t salt[CS_CRYPTO_SALT_BYTES];
    uint8_t verifier[ACCOUNTS_VERIFIER_BYTES];
    uint8_t *sealed;
    size_t sealed_len;
} pw_wrap;

static core_status wrap_password(const accounts *a, const char *password, const uint8_t dk[ACCOUNTS_DK_BYTES],
                                 pw_wrap *w, core_error *err) {
    uint8_t key[ACCOUNTS_KEK_BYTES];
    cs_crypto_random(w->salt, sizeof w->salt);
    core_status rc = cs_crypto_password_derive(password, strlen(password), w->salt, a->opt.kdf, key, w->verifier, err);
    if (!rc) rc = cs_crypto_seal(key, AD_PW, strlen(AD_PW), dk, ACCOUNTS_DK_BYTES, &w->sealed, &w->sealed_len, err);
    cs_crypto_wipe(key, sizeof key);
    return rc;
}

typedef struct {
    uint8_t salt[CS_CRYPTO_SALT_BYTES];
    uint8_t *sealed;
    size_t sealed_len;
} rc_wrap;

static core_status wrap_recovery(const uint8_t dk[ACCOUNTS_DK_BYTES], char text[CS_CRYPTO_RECOVERY_TEXT], rc_wrap *w,
                                 core_error *err) {
    uint8_t raw[CS_CRYPTO_RECOVERY_RAW], key[ACCOUNTS_KEK_BYTES];
    cs_crypto_recovery_new(raw, text);
    cs_crypto_random(w->salt, sizeof w->salt);
    recovery_key(w->salt, raw, key);
    core_status rc = cs_crypto_seal(key, AD_RC, strlen(AD_RC), dk, ACCOUNTS_DK_BYTES, &w->sealed, &w->sealed_len, err);
    cs_crypto_wipe(raw, sizeof raw);
    cs_crypto_wipe(key, sizeof key);
    return rc;
}

/* The organisation column of a users row (NULL: none). */
static void org_from_column(sqlite3_stmt *q, int col, bool *has_org, uint8_t org[ACCOUNTS_ORG_KEY_BYTES]) {
    *has_org = sqlite3_column_bytes(q, col) == ACCOUNTS_ORG_KEY_BYTES;
    if (*has_org)
        memcpy(org, sqlite3_column_blob(q, col), ACCOUNTS_ORG_KEY_BYTES);
    else
        memset(org, 0, ACCOUNTS_ORG_KEY_BYTES);
}

static core_status read_org(sqlite3 *db, int64_t user_id, bool *has_org, uint8_t org[ACCOUNTS_ORG_KEY_BYTES],
                            core_error *err) {
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db, "SELECT org_key FROM users WHERE id = ?", &q, err);
    if (!rc) {
        sqlite3_bind_int64(q, 1, user_id);
        int step = sqlite3_step(q);
        if (step == SQLITE_ROW)
            org_from_column(q, 0, has_org, org);
        else
            rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    return rc;
}

/* Insert a session row for user u with data key dk; fill sess and token. */
static core_status open_session(accounts *a, sqlite3 *db, int64_t user_id, const char *username, accounts_role role,
                                const uint8_t dk[ACCOUNTS_DK_BYTES], accounts_session *sess,
                                char token[ACCOUNTS_TOKEN_TEXT], core_error *err) {
    uint8_t raw[ACCOUNTS_TOKEN_RAW], key[ACCOUNTS_KEK_BYTES], csrf_raw[ACCOUNTS_TOKEN_RAW];
    cs_crypto_random(raw, sizeof raw);
    cs_crypto_random(csrf_raw, sizeof csrf_raw);
    memset(sess, 0, sizeof *sess);
    cs_crypto_hash(sess->id_hash, "caresync-session-id-v1", raw, sizeof raw);
    cs_crypto_hash(key, "caresync-session-key-v1", raw, sizeof raw);
    cs_crypto_hash(sess->view_key, "caresync-session-view-v1", raw, sizeof raw);
    cs_crypto_b64(csrf_raw, sizeof csrf_raw, sess->csrf);
    uint8_t *sealed = NULL;
    size_t sealed_len = 0;
    core_status rc = cs_crypto_seal(key, AD_SESS, strlen(AD_SESS), dk, ACCOUNTS_DK_BYTES, &sealed, &sealed_len, err);
    cs_crypto_wipe(key, sizeof key);
    sqlite3_stmt *q = NULL;
    if (!rc)
        rc = store_prepare(db,
                           "INSERT INTO sessions(id_hash, user_id, csrf, dk_sess, created_at, expires_at) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           &q, err);
    if (!rc) {
        int64_t now = core_now();
        sqlite3_bind_blob(q, 1, sess->id_hash, ACCOUNTS_SESSION_ID_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, user_id);
        sqlite3_bind_text(q, 3, sess->csrf, -1, SQLITE_STATIC);
        sqlite3_bind_blob(q, 4, sealed, (int)sealed_len, SQLITE_STATIC);
        sqlite3_bind_int64(q, 5, now);
        sqlite3_bind_int64(q, 6, now + a->opt.session_ttl);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    free(sealed);
    if (!rc) {
        sess->user_id = user_id;
        snprintf(sess->username, sizeof sess->username, "%s", username);
        sess->role = role;
        memcpy(sess->data_key, dk, ACCOUNTS_DK_BYTES);
        cs_crypto_b64(raw, sizeof raw, token);
        rc = read_org(db, user_id, &sess->has_org, sess->org, err);
    }
    cs_crypto_wipe(raw, sizeof raw);
    return rc;
}

static void client_key(const char *prefix, const char *client, char out[80]);
static core_status signup_check(accounts *a, sqlite3 *db, const char *key, core_error *err);

/* limit_key non-NULL: a sign-up from the network, counted under that key. */
static core_status create_account(accounts *a, const char *username, const char *password, accounts_role role,
                                  const uint8_t *org, const char *limit_key, char recovery[CS_CRYPTO_RECOVERY_TEXT],
                                  accounts_session *sess, char token[ACCOUNTS_TOKEN_TEXT], core_error *err) {
    char name[ACCOUNTS_USERNAME_MAX + 1];
    core_status rc = accounts_validate_username(username, name, err);
    if (!rc) rc = accounts_validate_password(password, err);
    if (rc) return rc;

    uint8_t dk[ACCOUNTS_DK_BYTES];
    cs_crypto_random(dk, sizeof dk);
    pw_wrap pw = {0};
    rc_wrap rw = {0};
    rc = wrap_password(a, password, dk, &pw, err);
    if (!rc) rc = wrap_recovery(dk, recovery, &rw, err);

    sqlite3 *db = store_acquire(a->st);
    sqlite3_stmt *q = NULL;
    if (!rc) rc = store_begin(db, err);
    /* Checked again inside the write transaction (BEGIN IMMEDIATE serialises
     * writers), and taken in it: concurrent sign-ups cannot all pass the
     * early check and overshoot, and a sign-up that fails takes nothing. */
    if (!rc && limit_key) rc = signup_check(a, db, limit_key, err);
    if (!rc && limit_key) rc = accounts_throttle_fail(db, limit_key, a->opt.signup_window, err);
    if (!rc)
        rc = store_prepare(db,
                           "INSERT INTO users(username, role, created_at, pw_salt, pw_ops, pw_mem, "
                           "pw_verifier, dk_pw, rc_salt, dk_rc, org_key) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                           &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, accounts_role_name(role), -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 3, core_now());
        sqlite3_bind_blob(q, 4, pw.salt, sizeof pw.salt, SQLITE_STATIC);
        sqlite3_bind_int64(q, 5, (sqlite3_int64)a->opt.kdf.ops);
        sqlite3_bind_int64(q, 6, (sqlite3_int64)a->opt.kdf.mem);
        sqlite3_bind_blob(q, 7, pw.verifier, ACCOUNTS_VERIFIER_BYTES, SQLITE_STATIC);
        sqlite3_bind_blob(q, 8, pw.sealed, (int)pw.sealed_len, SQLITE_STATIC);
        sqlite3_bind_blob(q, 9, rw.salt, sizeof rw.salt, SQLITE_STATIC);
        sqlite3_bind_blob(q, 10, rw.sealed, (int)rw.sealed_len, SQLITE_STATIC);
        if (org) sqlite3_bind_blob(q, 11, org, ACCOUNTS_ORG_KEY_BYTES, SQLITE_STATIC);
        int step = sqlite3_step(q);
        if (step == SQLITE_CONSTRAINT)
            rc = core_fail(err, CORE_ERR_CONFLICT, "username", "that username is already taken");
        else if (step != SQLITE_DONE)
            rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    int64_t id = sqlite3_last_insert_rowid(db);
    if (!rc && sess && token) rc = open_session(a, db, id, name, role, dk, sess, token, err);
    if (!rc) rc = store_commit(db, err);
    store_release(a->st, db);
    free(pw.sealed);
    free(rw.sealed);
    cs_crypto_wipe(dk, sizeof dk);
    if (rc) cs_crypto_wipe(recovery, CS_CRYPTO_RECOVERY_TEXT);
    return rc;
}

core_status accounts_create(accounts *a, const char *username, const char *password, accounts_role role,
                            char recovery[CS_CRYPTO_RECOVERY_TEXT], accounts_session *sess,
                            char token[ACCOUNTS_TOKEN_TEXT], core_error *err) {
    return create_account(a, username, password, role, NULL, NULL, recovery, sess, token, err);
}

/* Clinicians answer the organisation's review cases (issue 13); analysts act
 * for it on the data market (issue 14). People and administrators act for
 * themselves and the operator only. */
bool accounts_role_has_org(accounts_role role) { return role == ACCOUNTS_CLINICIAN || role == ACCOUNTS_ANALYST; }

core_status accounts_create_in_org(accounts *a, const char *username, const char *password, accounts_role role,
                                   const uint8_t org[ACCOUNTS_ORG_KEY_BYTES], char recovery[CS_CRYPTO_RECOVERY_TEXT],
                                   core_error *err) {
    if (!accounts_role_has_org(role))
        return core_fail(err, CORE_ERR_INVALID, "role",
                         "only clinician and analyst accounts belong to an organisation");
    return create_account(a, username, password, role, org, NULL, recovery, NULL, NULL, err);
}

/* The users row's id, role and organisation by (normalised) name. */
static core_status user_org_row(sqlite3 *db, const char *name, int64_t *id, accounts_role *role, bool *has_org,
                                uint8_t org[ACCOUNTS_ORG_KEY_BYTES], core_error *err) {
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db, "SELECT id, role, org_key FROM users WHERE username = ?", &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
        int step = sqlite3_step(q);
        if (step == SQLITE_ROW) {
            *id = sqlite3_column_int64(q, 0);
            if (!accounts_role_parse((const char *)sqlite3_column_text(q, 1), role)) *role = ACCOUNTS_PERSON;
            org_from_column(q, 2, has_org, org);
        } else if (step == SQLITE_DONE) {
            rc = core_fail(err, CORE_ERR_NOT_FOUND, "username", "no such account");
        } else {
            rc = store_error(db, err);
        }
    }
    sqlite3_finalize(q);
    return rc;
}

core_status accounts_get_org(accounts *a, const char *username, accounts_role *role, bool *has_org,
                             uint8_t org[ACCOUNTS_ORG_KEY_BYTES], core_error *err) {
    char name[ACCOUNTS_USERNAME_MAX + 1];
    core_error ignored = {0};
    if (accounts_validate_username(username, name, &ignored))
        return core_fail(err, CORE_ERR_NOT_FOUND, "username", "no such account");
    int64_t id;
    sqlite3 *db = store_acquire(a->st);
    core_status rc = user_org_row(db, name, &id, role, has_org, org, err);
    store_release(a->st, db);
    return rc;
}

core_status accounts_set_org(accounts *a, const char *username, const uint8_t *org, core_error *err) {
    char name[ACCOUNTS_USERNAME_MAX + 1];
    core_error ignored = {0};
    if (accounts_validate_username(username, name, &ignored))
        return core_fail(err, CORE_ERR_NOT_FOUND, "username", "no such account");
    sqlite3 *db = store_acquire(a->st);
    sqlite3_stmt *q = NULL;
    int64_t id = 0;
    accounts_role role;
    bool had;
    uint8_t old[ACCOUNTS_ORG_KEY_BYTES];
    core_status rc = store_begin(db, err);
    if (!rc) rc = user_org_row(db, name, &id, &role, &had, old, err);
    if (!rc && !accounts_role_has_org(role))
        rc = core_fail(err, CORE_ERR_INVALID, "role", "only clinician and analyst accounts belong to an organisation");
    if (!rc) rc = store_prepare(db, "UPDATE users SET org_key = ? WHERE id = ?", &q, err);
    if (!rc) {
        if (org) sqlite3_bind_blob(q, 1, org, ACCOUNTS_ORG_KEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, id);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    if (!rc)
        rc = store_commit(db, err);
    else
        store_rollback(db);
    store_release(a->st, db);
    /* Cached sessions hold the old organisation: drop them, so the next
     * request of each reads the row again. */
    if (!rc) session_cache_drop_user(a->cache, id, NULL);
    return rc;
}

/* The sign-up budget reuses the throttle counters: each created account is
 * one "hit" in a fixed window. */
static core_status signup_check(accounts *a, sqlite3 *db, const char *key, core_error *err) {
    core_error e = {0};
    core_status rc = accounts_throttle_check(db, key, a->opt.signup_max, a->opt.signup_window, &e);
    if (rc == CORE_ERR_THROTTLED) {
        core_fail(err, rc, NULL, "too many new accounts from this network; try again in %d seconds", e.retry_after);
        if (err) err->retry_after = e.retry_after;
    } else if (rc && err) {
        *err = e;
    }
    return rc;
}

core_status accounts_signup(accounts *a, const char *username, const char *password, const char *client,
                            char recovery[CS_CRYPTO_RECOVERY_TEXT], accounts_session *sess,
                            char token[ACCOUNTS_TOKEN_TEXT], core_error *err) {
    char key[80];
    client_key("signup:", client, key);
    /* Refuse early, before the two Argon2id-sized steps of account creation,
     * so a flood over the limit costs almost nothing. */
    sqlite3 *db = store_acquire(a->st);
    core_status rc = signup_check(a, db, key, err);
    store_release(a->st, db);
    if (rc) {
        cs_crypto_wipe(recovery, CS_CRYPTO_RECOVERY_TEXT);
        return rc;
    }
    return create_account(a, username, password, ACCOUNTS_PERSON, NULL, key, recovery, sess, token, err);
}

/* Verify password against u and unwrap its data key. CORE_ERR_AUTH on mismatch. */
static core_status unlock_with_password(const user_row *u, const char *password, uint8_t dk[ACCOUNTS_DK_BYTES],
                                        core_error *err) {
    uint8_t key[ACCOUNTS_KEK_BYTES], verifier[ACCOUNTS_VERIFIER_BYTES];
    core_status rc = cs_crypto_password_derive(password, strlen(password), u->pw_salt, u->cost, key, verifier, err);
    if (!rc && !cs_crypto_equal(verifier, u->verifier, ACCOUNTS_VERIFIER_BYTES))
        rc = core_fail(err, CORE_ERR_AUTH, NULL, "wrong username or password");
    if (!rc) {
        uint8_t *plain = NULL;
        size_t n = 0;
        rc = cs_crypto_open(key, AD_PW, strlen(AD_PW), u->dk_pw, u->dk_pw_len, &plain, &n, err);
        if (!rc && n != ACCOUNTS_DK_BYTES) rc = core_fail(err, CORE_ERR_CRYPTO, NULL, "wrapped key has the wrong size");
        if (!rc) memcpy(dk, plain, ACCOUNTS_DK_BYTES);
        if (plain) {
            cs_crypto_wipe(plain, n);
            free(plain);
        }
    }
    cs_crypto_wipe(key, sizeof key);
    return rc;
}

/* The counter key for a client address: IPv4 as is (also when mapped into
 * IPv6), IPv6 by its /64 — one subscriber usually holds a whole /64, so
 * counting single addresses would let them step around every limit. */
static void client_key(const char *prefix, const char *client, char out[80]) {
    struct in6_addr a6;
    char text[INET6_ADDRSTRLEN];
    if (client && strchr(client, ':') && inet_pton(AF_INET6, client, &a6) == 1) {
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a6.s6_addr, v4mapped, 12) == 0) {
            snprintf(out, 80, "%s%u.%u.%u.%u", prefix, a6.s6_addr[12], a6.s6_addr[13], a6.s6_addr[14], a6.s6_addr[15]);
            return;
        }
        memset(a6.s6_addr + 8, 0, 8);
        if (inet_ntop(AF_INET6, &a6, text, sizeof text)) {
            snprintf(out, 80, "%s%s/64", prefix, text);
            return;
        }
    }
    snprintf(out, 80, "%s%s", prefix, client ? client : "unknown");
}

/* Login throttling keys for one attempt.
 *
 * A lock on the account alone lets anyone lock a person out by typing wrong
 * passwords (and used to block the recovery-code reset too). So the tight
 * budget is per (account, address): the address that keeps failing is shut
 * out of that account, while the owner elsewhere still gets in. The address
 * budget stops one client spraying many names; the account budget, larger
 * and over a longer window, bounds guessing spread over many addresses. */
typedef struct {
    char acct[64];  /* acct:NAME          every failure against the account */
    char pair[160]; /* pair:NAME|ADDRKEY  this address against this account */
    char addr[96];  /* addr:ADDRKEY       this address against any account */
} throttle_keys_t;

static void throttle_keys(const char *username, const char *client, throttle_keys_t *k) {
    char ak[80];
    client_key("", client, ak);
    snprintf(k->acct, sizeof k->acct, "acct:%s", username);
    snprintf(k->pair, sizeof k->pair, "pair:%s|%s", username, ak);
    snprintf(k->addr, sizeof k->addr, "addr:%s", ak);
}

/* Refuse early (before Argon2id) if a counter is over its limit. with_account:
 * also the account's global budget (not for the recovery-code reset). */
static core_status throttle_check_all(accounts *a, sqlite3 *db, const throttle_keys_t *k, bool with_account,
                                      core_error *err) {
    core_status rc = accounts_throttle_check(db, k->pair, a->opt.max_failures, a->opt.window, err);
    if (!rc) rc = accounts_throttle_check(db, k->addr, a->opt.max_failures_ip, a->opt.window, err);
    if (!rc && with_account)
        rc = accounts_throttle_check(db, k->acct, a->opt.max_failures_account, a->opt.account_window, err);
    return rc;
}

static void throttle_fail_all(accounts *a, sqlite3 *db, const throttle_keys_t *k, bool with_account) {
    core_error ignored = {0};
    accounts_throttle_fail(db, k->pair, a->opt.window, &ignored);
    accounts_throttle_fail(db, k->addr, a->opt.window, &ignored);
    if (with_account) accounts_throttle_fail(db, k->acct, a->opt.account_window, &ignored);
}

/* Spend the same Argon2id time for unknown names so response timing does
 * not reveal which usernames exist. */
static void burn_kdf(const accounts *a, const char *password) {
    uint8_t salt[CS_CRYPTO_SALT_BYTES] = {0}, k[ACCOUNTS_KEK_BYTES], v[ACCOUNTS_VERIFIER_BYTES];
    core_error ignored = {0};
    cs_crypto_password_derive(password, strlen(password), salt, a->opt.kdf, k, v, &ignored);
}

core_status accounts_login(accounts *a, const char *username, const char *password, const char *client,
                           accounts_session *sess, char token[ACCOUNTS_TOKEN_TEXT], core_error *err) {
    char name[ACCOUNTS_USERNAME_MAX + 1];
    if (!password || !*password || strlen(password) > 256)
        return core_fail(err, CORE_ERR_INVALID, "password", "enter your password");
    if (accounts_validate_username(username, name, NULL) != CORE_OK)
        return core_fail(err, CORE_ERR_AUTH, NULL, "wrong username or password");
    throttle_keys_t keys;
    throttle_keys(name, client, &keys);

    sqlite3 *db = store_acquire(a->st);
    user_row u;
    uint8_t dk[ACCOUNTS_DK_BYTES];
    core_status rc = throttle_check_all(a, db, &keys, true, err);
    if (rc) goto done;
    rc = load_user(db, name, -1, &u, err);
    if (rc == CORE_ERR_NOT_FOUND) {
        burn_kdf(a, password);
        rc = core_fail(err, CORE_ERR_AUTH, NULL, "wrong username or password");
    } else if (!rc) {
        rc = unlock_with_password(&u, password, dk, err);
        if (!rc) {
            rc = store_begin(db, err);
            if (!rc) {
                /* Expired sessions are swept here, the one place they accumulate. */
                sqlite3_exec(db, "DELETE FROM sessions WHERE expires_at < strftime('%s','now')", NULL, NULL, NULL);
                rc = open_session(a, db, u.id, u.username, u.role, dk, sess, token, err);
                /* Only this address's count for the account is forgiven: the
                 * account's global count must keep bounding guesses made
                 * from elsewhere, however often the owner logs in. */
                core_error ignored = {0};
                if (!rc) accounts_throttle_clear(db, keys.pair, &ignored);
                if (!rc) rc = store_commit(db, err);
            }
        }
        user_row_free(&u);
    }
    if (rc == CORE_ERR_AUTH) throttle_fail_all(a, db, &keys, true);
done:
    cs_crypto_wipe(dk, sizeof dk);
    store_release(a->st, db);
    return rc;
}

/* Read the session row into e. CORE_ERR_AUTH if absent or expired. */
static core_status load_session(accounts *a, const uint8_t id_hash[ACCOUNTS_SESSION_ID_BYTES], session_entry *e,
                                core_error *err) {
    sqlite3 *db = store_acquire(a->st);
    sqlite3_stmt *q = NULL;
    /* Runs on every cache miss: the statement is cached. */
    core_status rc = store_prepare_cached(
        a->st, db,
        "SELECT s.user_id, u.username, u.role, s.csrf, s.dk_sess, s.expires_at, u.org_key FROM sessions s "
        "JOIN users u ON u.id = s.user_id WHERE s.id_hash = ? AND s.expires_at > ?",
        &q, err);
    if (!rc) {
        sqlite3_bind_blob(q, 1, id_hash, ACCOUNTS_SESSION_ID_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, core_now());
        int step = sqlite3_step(q);
        if (step == SQLITE_ROW) {
            memcpy(e->id_hash, id_hash, ACCOUNTS_SESSION_ID_BYTES);
            e->user_id = sqlite3_column_int64(q, 0);
            snprintf(e->username, sizeof e->username, "%s", (const char *)sqlite3_column_text(q, 1));
            if (!accounts_role_parse((const char *)sqlite3_column_text(q, 2), &e->role)) e->role = ACCOUNTS_PERSON;
            snprintf(e->csrf, sizeof e->csrf, "%s", (const char *)sqlite3_column_text(q, 3));
            e->sealed_len = (size_t)sqlite3_column_bytes(q, 4);
            if (e->sealed_len > sizeof e->sealed)
                rc = core_fail(err, CORE_ERR_CRYPTO, NULL, "session key is damaged");
            else
                memcpy(e->sealed, sqlite3_column_blob(q, 4), e->sealed_len);
            e->expires_at = sqlite3_column_int64(q, 5);
            org_from_column(q, 6, &e->has_org, e->org);
        } else if (step == SQLITE_DONE) {
            rc = core_fail(err, CORE_ERR_AUTH, NULL, "not logged in, or the session has expired");
        } else {
            rc = store_error(db, err);
        }
    }
    store_release(a->st, db);
    return rc;
}

core_status accounts_authenticate(accounts *a, const char *token, accounts_session *sess, core_error *err) {
    uint8_t raw[ACCOUNTS_TOKEN_RAW];
    memset(sess, 0, sizeof *sess);
    if (!token || !cs_crypto_unb64(token, raw, sizeof raw)) return core_fail(err, CORE_ERR_AUTH, NULL, "not logged in");
    uint8_t id_hash[ACCOUNTS_SESSION_ID_BYTES], key[ACCOUNTS_KEK_BYTES];
    cs_crypto_hash(id_hash, "caresync-session-id-v1", raw, sizeof raw);
    cs_crypto_hash(key, "caresync-session-key-v1", raw, sizeof raw);
    cs_crypto_hash(sess->view_key, "caresync-session-view-v1", raw, sizeof raw);
    cs_crypto_wipe(raw, sizeof raw);

    session_entry e;
    core_status rc = CORE_OK;
    if (!session_cache_get(a->cache, id_hash, core_now(), &e)) {
        uint64_t gen = session_cache_generation(a->cache);
        rc = load_session(a, id_hash, &e, err);
        if (!rc) session_cache_put(a->cache, &e, gen);
    }
    if (!rc) {
        sess->user_id = e.user_id;
        memcpy(sess->username, e.username, sizeof sess->username);
        sess->role = e.role;
        sess->has_org = e.has_org;
        memcpy(sess->org, e.org, sizeof sess->org);
        memcpy(sess->csrf, e.csrf, sizeof sess->csrf);
        memcpy(sess->id_hash, id_hash, ACCOUNTS_SESSION_ID_BYTES);
        uint8_t *plain = NULL;
        size_t n = 0;
        rc = cs_crypto_open(key, AD_SESS, strlen(AD_SESS), e.sealed, e.sealed_len, &plain, &n, err);
        if (!rc && n == ACCOUNTS_DK_BYTES)
            memcpy(sess->data_key, plain, ACCOUNTS_DK_BYTES);
        else if (!rc)
            rc = core_fail(err, CORE_ERR_CRYPTO, NULL, "session key has the wrong size");
        if (plain) {
            cs_crypto_wipe(plain, n);
            free(plain);
        }
    }
    cs_crypto_wipe(key, sizeof key);
    if (rc) accounts_session_wipe(sess);
    return rc;
}

static core_status exec_bound(sqlite3 *db, const char *sql, int64_t id, const uint8_t *blob, core_error *err) {
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db, sql, &q, err);
    if (rc) return rc;
    sqlite3_bind_int64(q, 1, id);
    if (blob) sqlite3_bind_blob(q, 2, blob, ACCOUNTS_SESSION_ID_BYTES, SQLITE_STATIC);
    if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    sqlite3_finalize(q);
    return rc;
}

core_status accounts_logout(accounts *a, const accounts_session *sess, core_error *err) {
    sqlite3 *db = store_acquire(a->st);
    core_status rc =
        exec_bound(db, "DELETE FROM sessions WHERE user_id = ?1 AND id_hash = ?2", sess->user_id, sess->id_hash, err);
    store_release(a->st, db);
    session_cache_drop(a->cache, sess->id_hash);
    /* Also when the DELETE failed: a session the user ended must not keep
     * serving from memory. */
    store_user_changed(a->st, sess->user_id);
    return rc;
}

core_status accounts_end_other_sessions(accounts *a, const accounts_session *sess, int *ended, core_error *err) {
    sqlite3 *db = store_acquire(a->st);
    core_status rc =
        exec_bound(db, "DELETE FROM sessions WHERE user_id = ?1 AND id_hash <> ?2", sess->user_id, sess->id_hash, err);
    int n = rc ? 0 : sqlite3_changes(db);
    store_release(a->st, db);
    /* Also when the DELETE failed, as logout: ended sessions must not keep
     * serving from the cache. */
    session_cache_drop_user(a->cache, sess->user_id, sess->id_hash);
    store_user_changed(a->st, sess->user_id);
    if (ended) *ended = n;
    return rc;
}

/* Store a new password wrapping (and optionally a new recovery wrapping). */
static core_status update_wrapping(sqlite3 *db, const accounts *a, int64_t id, const pw_wrap *pw, const rc_wrap *rw,
                                   core_error *err) {
    sqlite3_stmt *q = NULL;
    core_status rc =
        store_prepare(db,
                      rw ? "UPDATE users SET pw_salt=?2, pw_ops=?3, pw_mem=?4, pw_verifier=?5, dk_pw=?6, rc_salt=?7, "
                           "dk_rc=?8 WHERE id=?1"
                         : "UPDATE users SET pw_salt=?2, pw_ops=?3, pw_mem=?4, pw_verifier=?5, dk_pw=?6 WHERE id=?1",
                      &q, err);
    if (rc) return rc;
    sqlite3_bind_int64(q, 1, id);
    sqlite3_bind_blob(q, 2, pw->salt, sizeof pw->salt, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)a->opt.kdf.ops);
    sqlite3_bind_int64(q, 4, (sqlite3_int64)a->opt.kdf.mem);
    sqlite3_bind_blob(q, 5, pw->verifier, ACCOUNTS_VERIFIER_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(q, 6, pw->sealed, (int)pw->sealed_len, SQLITE_STATIC);
    if (rw) {
        sqlite3_bind_blob(q, 7, rw->salt, sizeof rw->salt, SQLITE_STATIC);
        sqlite3_bind_blob(q, 8, rw->sealed, (int)rw->sealed_len, SQLITE_STATIC);
    }
    if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    sqlite3_finalize(q);
    return rc;
}

/* Re-check the password of the session's account, with throttling. */
static core_status recheck_password(accounts *a, sqlite3 *db, const accounts_session *sess, const char *password,
                                    const char *client, user_row *u, uint8_t dk[ACCOUNTS_DK_BYTES], core_error *err) {
    throttle_keys_t keys;
    throttle_keys(sess->username, client, &keys);
    core_status rc = throttle_check_all(a, db, &keys, true, err);
    if (rc) return rc;
    rc = load_user(db, NULL, sess->user_id, u, err);
    if (rc == CORE_ERR_NOT_FOUND) return core_fail(err, CORE_ERR_AUTH, NULL, "the account no longer exists");
    if (rc) return rc;
    if (!password || strlen(password) > 256)
        rc = core_fail(err, CORE_ERR_AUTH, "password", "wrong password");
    else
        rc = unlock_with_password(u, password, dk, err);
    if (rc == CORE_ERR_AUTH) {
        throttle_fail_all(a, db, &keys, true);
        core_fail(err, CORE_ERR_AUTH, "current_password", "the current password is wrong");
    }
    if (rc) user_row_free(u);
    return rc;
}

core_status accounts_change_password(accounts *a, const accounts_session *sess, const char *current, const char *next,
                                     const char *client, core_error *err) {
    core_status rc = accounts_validate_password(next, err);
    if (rc) {
        snprintf(err->field, sizeof err->field, "new_password");
        return rc;
    }
    sqlite3 *db = store_acquire(a->st);
    user_row u;
    uint8_t dk[ACCOUNTS_DK_BYTES];
    pw_wrap pw = {0};
    rc = recheck_password(a, db, sess, current, client, &u, dk, err);
    if (!rc) {
        rc = wrap_password(a, next, dk, &pw, err);
        if (!rc) rc = store_begin(db, err);
        if (!rc) rc = update_wrapping(db, a, u.id, &pw, NULL, err);
        /* A changed password ends every other session: whoever knew the old one is out. */
        if (!rc)
            rc = exec_bound(db, "DELETE FROM sessions WHERE user_id = ?1 AND id_hash <> ?2", u.id, sess->id_hash, err);
        if (!rc) rc = store_commit(db, err);
        if (!rc) session_cache_drop_user(a->cache, u.id, sess->id_hash);
        if (!rc) store_user_changed(a->st, u.id);
        user_row_free(&u);
    }
    free(pw.sealed);
    cs_crypto_wipe(dk, sizeof dk);
    store_release(a->st, db);
    return rc;
}

core_status accounts_reset_password(accounts *a, const char *username, const char *recovery, const char *next,
                                    const char *client, char new_recovery[CS_CRYPTO_RECOVERY_TEXT], core_error *err) {
    char name[ACCOUNTS_USERNAME_MAX + 1];
    core_status rc = accounts_validate_password(next, err);
    if (rc) {
        snprintf(err->field, sizeof err->field, "new_password");
        return rc;
    }
    if (accounts_validate_username(username, name, NULL) != CORE_OK)
        return core_fail(err, CORE_ERR_AUTH, NULL, "wrong username or recovery code");
    throttle_keys_t keys;
    throttle_keys(name, client, &keys);
    sqlite3 *db = store_acquire(a->st);
    user_row u;
    bool loaded = false;
    uint8_t raw[CS_CRYPTO_RECOVERY_RAW], key[ACCOUNTS_KEK_BYTES], dk[ACCOUNTS_DK_BYTES];
    pw_wrap pw = {0};
    rc_wrap rw = {0};
    rc = throttle_check_all(a, db, &keys, false, err);
    if (!rc) {
        rc = load_user(db, name, -1, &u, err);
        loaded = rc == CORE_OK;
        if (rc == CORE_ERR_NOT_FOUND || (!rc && (!recovery || !cs_crypto_recovery_parse(recovery, raw))))
            rc = core_fail(err, CORE_ERR_AUTH, NULL, "wrong username or recovery code");
    }
    if (!rc) {
        uint8_t *plain = NULL;
        size_t n = 0;
        recovery_key(u.rc_salt, raw, key);
        if (cs_crypto_open(key, AD_RC, strlen(AD_RC), u.dk_rc, u.dk_rc_len, &plain, &n, NULL) != CORE_OK ||
            n != ACCOUNTS_DK_BYTES)
            rc = core_fail(err, CORE_ERR_AUTH, NULL, "wrong username or recovery code");
        else
            memcpy(dk, plain, ACCOUNTS_DK_BYTES);
        if (plain) {
            cs_crypto_wipe(plain, n);
            free(plain);
        }
    }
    if (rc == CORE_ERR_AUTH) throttle_fail_all(a, db, &keys, false);
    if (!rc) rc = wrap_password(a, next, dk, &pw, err);
    if (!rc) rc = wrap_recovery(dk, new_recovery, &rw, err);
    if (!rc) rc = store_begin(db, err);
    if (!rc) rc = update_wrapping(db, a, u.id, &pw, &rw, err);
    if (!rc) rc = exec_bound(db, "DELETE FROM sessions WHERE user_id = ?1", u.id, NULL, err);
    if (!rc) {
        /* The password that failures were guessing at is gone: its global
         * count goes too, so the owner is not locked out of the new one. */
        core_error ignored = {0};
        accounts_throttle_clear(db, keys.pair, &ignored);
        accounts_throttle_clear(db, keys.acct, &ignored);
        rc = store_commit(db, err);
        if (!rc) session_cache_drop_user(a->cache, u.id, NULL);
        if (!rc) store_user_changed(a->st, u.id);
    }
    if (loaded) user_row_free(&u);
    free(pw.sealed);
    free(rw.sealed);
    cs_crypto_wipe(raw, sizeof raw);
    cs_crypto_wipe(key, sizeof key);
    cs_crypto_wipe(dk, sizeof dk);
    store_release(a->st, db);
    return rc;
}

core_status accounts_delete(accounts *a, const accounts_session *sess, const char *password, const char *client,
                            core_error *err) {
    return accounts_delete_with(a, sess, password, client, NULL, NULL, err);
}

core_status accounts_delete_with(accounts *a, const accounts_session *sess, const char *password, const char *client,
                                 accounts_before_delete_fn before_delete, void *ud, core_error *err) {
    sqlite3 *db = store_acquire(a->st);
    user_row u;
    uint8_t dk[ACCOUNTS_DK_BYTES];
    core_status rc = recheck_password(a, db, sess, password, client, &u, dk, err);
    if (rc == CORE_ERR_AUTH && strcmp(err->field, "current_password") == 0)
        core_fail(err, CORE_ERR_AUTH, "password", "the password is wrong");
    if (!rc && before_delete && (rc = before_delete(ud, sess, err))) user_row_free(&u);
    if (!rc) {
        /* ON DELETE CASCADE removes sessions, profile and records with the
         * user row, in one transaction. */
        rc = store_begin(db, err);
        if (!rc) rc = exec_bound(db, "DELETE FROM users WHERE id = ?1", u.id, NULL, err);
        if (!rc) rc = store_commit(db, err);
        if (!rc) session_cache_drop_user(a->cache, u.id, NULL);
        if (!rc) store_user_changed(a->st, u.id);
        user_row_free(&u);
    }
    cs_crypto_wipe(dk, sizeof dk);
    store_release(a->st, db);
    return rc;
}

core_status accounts_list(accounts *a, accounts_user_fn fn, void *ud, core_error *err) {
    sqlite3 *db = store_acquire(a->st);
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db, "SELECT username, role, created_at FROM users ORDER BY username", &q, err);
    while (!rc) {
        int step = sqlite3_step(q);
        if (step == SQLITE_DONE) break;
        if (step != SQLITE_ROW) {
            rc = store_error(db, err);
            break;
        }
        accounts_role role;
        if (!accounts_role_parse((const char *)sqlite3_column_text(q, 1), &role)) role = ACCOUNTS_PERSON;
        fn(ud, (const char *)sqlite3_column_text(q, 0), role, sqlite3_column_int64(q, 2));
    }
    sqlite3_finalize(q);
    store_release(a->st, db);
    return rc;
}
