/* accounts — users, roles, password and recovery-code key wrapping, sessions
 * and login throttling.
 *
 * Every account has a random 32-byte data key that seals its private records.
 * On disk the key exists only sealed: under an Argon2id key derived from the
 * password, under a key derived from the one-time recovery code, and, for each
 * live session, under a key derived from the session token (which only the
 * client holds; the server stores a hash of it). The server's disk alone
 * therefore cannot open a record. */
#ifndef CARESYNC_ACCOUNTS_H
#define CARESYNC_ACCOUNTS_H

#include "core/core.h"
#include "crypto/crypto.h"
#include "store/store.h"

typedef struct accounts accounts;

typedef enum { ACCOUNTS_PERSON, ACCOUNTS_CLINICIAN, ACCOUNTS_ANALYST, ACCOUNTS_ADMIN } accounts_role;

#define ACCOUNTS_USERNAME_MAX 32
#define ACCOUNTS_TOKEN_TEXT 44 /* 32 bytes, URL-safe base64, NUL */
/* A session is looked up by a keyed BLAKE2b-256 hash of its token (the token
 * itself is only in the client's cookie). */
#define ACCOUNTS_SESSION_ID_BYTES 32
/* An organisation's key on the ledger (Ed25519 public key). */
#define ACCOUNTS_ORG_KEY_BYTES 32

/* Throttling (see throttle_* in accounts.c for why it is shaped so):
 *   per (account, client address)  max_failures per window: the attacker's
 *       own address is locked out of that account, nobody else;
 *   per client address             max_failures_ip per window, across names;
 *   per account, from everywhere   max_failures_account per account_window:
 *       a slower budget that bounds guessing from many addresses;
 *   sign-ups per client address    signup_max per signup_window.
 * IPv6 clients are counted per /64, the block one subscriber usually gets. */
typedef struct {
    int session_ttl;          /* seconds a session lives */
    int max_failures;         /* failed logins per (account, address) per window before 429 */
    int max_failures_ip;      /* failed logins per client address per window */
    int window;               /* seconds */
    int max_failures_account; /* failed logins per account from all addresses per account_window */
    int account_window;       /* seconds */
    int signup_max;           /* accounts created per client address per signup_window */
    int signup_window;        /* seconds */
    cs_crypto_kdf_cost kdf;
} accounts_options;

/* An authenticated caller. Holds the unwrapped data key and the view key:
 * wipe them with accounts_session_wipe() when the request is done.
 *
 * view_key is derived from the session token alone (like the key that wraps
 * dk_sess), so only a request presenting the cookie can compute it. Views of
 * the account's data kept in memory between requests (records_list_text's
 * memo) are sealed under it. */
typedef struct {
    int64_t user_id;
    char username[ACCOUNTS_USERNAME_MAX + 1];
    accounts_role role;
    char csrf[ACCOUNTS_TOKEN_TEXT];
    uint8_t id_hash[ACCOUNTS_SESSION_ID_BYTES];
    uint8_t data_key[CS_CRYPTO_KEY_BYTES];
    uint8_t view_key[CS_CRYPTO_KEY_BYTES];
    bool has_org;                        /* a clinician or analyst that belongs to an organisation */
    uint8_t org[ACCOUNTS_ORG_KEY_BYTES]; /* its ledger key, when has_org */
} accounts_session;

/* The accounts object borrows st (which must outlive it). opt may be NULL for
 * defaults (12 h sessions; 5 failures per account and address / 20 per
 * address per 15 min, 50 per account per hour; 20 sign-ups per address per
 * hour). */
core_status accounts_open(store *st, const accounts_options *opt, accounts **out, core_error *err);
void accounts_close(accounts *a);
void accounts_options_defaults(accounts_options *opt);

const char *accounts_role_name(accounts_role role);
bool accounts_role_parse(const char *name, accounts_role *out);

/* Normalise (lower-case) and validate a username into out; validate a password. */
core_status accounts_validate_username(const char *in, char out[ACCOUNTS_USERNAME_MAX + 1], core_error *err);
core_status accounts_validate_password(const char *password, core_error *err);

/* Create an account. recovery receives the one-time recovery code (shown to
 * the user once, never stored). If sess and token are non-NULL a session is
 * opened too (sign-up logs you in). */
core_status accounts_create(accounts *a, const char *username, const char *password, accounts_role role,
                            char recovery[CS_CRYPTO_RECOVERY_TEXT], accounts_session *sess,
                            char token[ACCOUNTS_TOKEN_TEXT], core_error *err);

/* Sign-up from the network: a person account (accounts_create with
 * ACCOUNTS_PERSON) from client, at most signup_max per client address per
 * signup_window. The count is checked and taken in the transaction that
 * inserts the user, so concurrent sign-ups cannot overshoot it; only
 * created accounts count. CORE_ERR_THROTTLED with err->retry_after over the
 * limit. */
core_status accounts_signup(accounts *a, const char *username, const char *password, const char *client,
                            char recovery[CS_CRYPTO_RECOVERY_TEXT], accounts_session *sess,
                            char token[ACCOUNTS_TOKEN_TEXT], core_error *err);

/* Check the password and open a session. client is the caller's address, for
 * throttling. CORE_ERR_AUTH for a wrong name or password (indistinguishable),
 * CORE_ERR_THROTTLED with err->retry_after when this address is over its
 * budget for the account or overall, or the account over its global one. */
core_status accounts_login(accounts *a, const char *username, const char *password, const char *client,
                           accounts_session *sess, char token[ACCOUNTS_TOKEN_TEXT], core_error *err);

/* Resolve a session token (from the cookie) into sess. CORE_ERR_AUTH if the
 * token is unknown, malformed or expired. */
core_status accounts_authenticate(accounts *a, const char *token, accounts_session *sess, core_error *err);
core_status accounts_logout(accounts *a, const accounts_session *sess, core_error *err);
/* End every session of the account except sess's own; *ended (may be NULL)
 * receives how many. */
core_status accounts_end_other_sessions(accounts *a, const accounts_session *sess, int *ended, core_error *err);

/* Re-wrap the data key under a new password; ends the account's other sessions. */
core_status accounts_change_password(accounts *a, const accounts_session *sess, const char *current, const char *next,
                                     const char *client, core_error *err);

/* Forgotten password: the recovery code unwraps the data key, which is re-wrapped
 * under the new password. The used code is spent: new_recovery receives a fresh
 * one. Ends every session of the account. Throttled per (account, address)
 * and per address like login, but not by the account's global budget: a
 * 160-bit code cannot be guessed, and others' failures must not stop the
 * owner's reset. */
core_status accounts_reset_password(accounts *a, const char *username, const char *recovery, const char *next,
                                    const char *client, char new_recovery[CS_CRYPTO_RECOVERY_TEXT], core_error *err);

/* Delete the account after re-checking the password: the wrapped keys and all
 * rows go (crypto-shredding; SQLite's secure_delete zeroes the freed pages). */
core_status accounts_delete(accounts *a, const accounts_session *sess, const char *password, const char *client,
                            core_error *err);
/* The same, running before_delete (if non-NULL) after the password check and
 * before anything is deleted — to settle what lives outside this database
 * (the ledger wallet). If it fails, nothing is deleted and its error is
 * returned. */
typedef core_status (*accounts_before_delete_fn)(void *ud, const accounts_session *sess, core_error *err);
core_status accounts_delete_with(accounts *a, const accounts_session *sess, const char *password, const char *client,
                                 accounts_before_delete_fn before_delete, void *ud, core_error *err);

typedef void (*accounts_user_fn)(void *ud, const char *username, accounts_role role, int64_t created_at);
core_status accounts_list(accounts *a, accounts_user_fn fn, void *ud, core_error *err);

/* The account's ledger wallet (wallet.c). Created on first use: a fresh
 * Ed25519 keypair whose seed is sealed under the session's data key. pk gets
 * the public key; sk (64 bytes, may be NULL) the secret key, which the
 * caller must wipe. *created tells whether it was made just now. */
#define ACCOUNTS_WALLET_PK 32
#define ACCOUNTS_WALLET_SK 64
core_status accounts_wallet(accounts *a, const accounts_session *sess, uint8_t pk[ACCOUNTS_WALLET_PK],
                            uint8_t sk[ACCOUNTS_WALLET_SK], bool *created, core_error *err);

/* Clinicians (issue 13) and analysts (issue 14) belong to at most one
 * organisation: a clinician answers its review cases, an analyst acts for it
 * on the data market (its requests, credit and datasets, by session). An
 * analyst without one works as before (surveillance only). The membership is a
 * column of users, owned here rather than by review/: it is a fact about the
 * account, read with the session row on every request (so a clinician's
 * session knows its organisation without a second lookup) and deleted with
 * the account. Whether org is registered on the ledger is the caller's
 * check (accounts does not know the ledger).
 *
 * role_has_org: whether accounts of role may belong to one (clinician,
 * analyst). create_in_org: accounts_create for such an account with its
 * organisation, in one transaction (another role is CORE_ERR_INVALID field
 * "role"). set_org: org NULL removes the membership; CORE_ERR_NOT_FOUND
 * for an unknown username, CORE_ERR_INVALID (field "role") for an account
 * that is neither clinician nor analyst. The account's live sessions see the
 * change on their next request. get_org: *has_org false when it belongs to
 * none. */
bool accounts_role_has_org(accounts_role role);
core_status accounts_create_in_org(accounts *a, const char *username, const char *password, accounts_role role,
                                   const uint8_t org[ACCOUNTS_ORG_KEY_BYTES], char recovery[CS_CRYPTO_RECOVERY_TEXT],
                                   core_error *err);
core_status accounts_set_org(accounts *a, const char *username, const uint8_t *org, core_error *err);
core_status accounts_get_org(accounts *a, const char *username, accounts_role *role, bool *has_org,
                             uint8_t org[ACCOUNTS_ORG_KEY_BYTES], core_error *err);

void accounts_session_wipe(accounts_session *sess);
store *accounts_store(accounts *a);

/* Throttling primitives (throttle.c), used by login/reset and by tests.
 * Keys are opaque strings such as "acct:alice" or "addr:127.0.0.1". */
core_status accounts_throttle_check(sqlite3 *db, const char *key, int limit, int window, core_error *err);
core_status accounts_throttle_fail(sqlite3 *db, const char *key, int window, core_error *err);
core_status accounts_throttle_clear(sqlite3 *db, const char *key, core_error *err);

/* Organisations' bearer tokens for the aggregates API (the organisation is
 * registered on the ledger; its key and name are kept with the token's hash).
 * check: CORE_ERR_AUTH for an unknown token. */
#define ACCOUNTS_ORG_NAME_MAX 64 /* = LEDGER_NAME_MAX, the name as registered */
core_status accounts_org_token_create(accounts *a, const uint8_t org_key[ACCOUNTS_ORG_KEY_BYTES], const char *name,
                                      char token[ACCOUNTS_TOKEN_TEXT], core_error *err);
core_status accounts_org_token_check(accounts *a, const char *token, uint8_t org_key[ACCOUNTS_ORG_KEY_BYTES],
                                     char name[ACCOUNTS_ORG_NAME_MAX + 1], core_error *err);
#endif
