/* api — sign-up, log-in, log-out, password reset and the session probe. */
#include "api/internal.h"

void api_signup(http_request *rq, void *ctx) {
    api_context *c = ctx;
    json_t *body = http_json_body(rq);
    if (!body) return;
    const char *username = api_str(body, "username"), *password = api_str(body, "password");
    core_error err = {0};
    char recovery[CS_CRYPTO_RECOVERY_TEXT], token[ACCOUNTS_TOKEN_TEXT];
    accounts_session sess;
    /* Throttled per client address (429 rate_limited with Retry-After). The
     * ledger wallet is not made here: it goes on the ledger at the first
     * consent or anchor (api_wallet_ensure), so an account made in a flood,
     * or never used, writes nothing permanent. */
    core_status rc = accounts_signup(c->acc, username, password, http_client_addr(rq), recovery, &sess, token, &err);
    if (rc) {
        api_fail(rq, &err, "username_taken");
        return;
    }
    api_set_session_cookie(rq, c, token);
    http_respond_json(
        rq, 201,
        json_pack("{s:o,s:s,s:s}", "user", api_user_json(&sess), "csrf_token", sess.csrf, "recovery_code", recovery));
    cs_crypto_wipe(recovery, sizeof recovery);
    cs_crypto_wipe(token, sizeof token);
    accounts_session_wipe(&sess);
}

void api_login(http_request *rq, void *ctx) {
    api_context *c = ctx;
    json_t *body = http_json_body(rq);
    if (!body) return;
    const char *username = api_str(body, "username"), *password = api_str(body, "password");
    core_error err = {0};
    if (!username) {
        http_respond_error(rq, 422, "validation_failed", "username", "enter your username");
        return;
    }
    /* Optional: end every other session of the account once logged in. */
    const json_t *others = json_object_get(body, "end_other_sessions");
    if (others && !json_is_boolean(others)) {
        http_respond_error(rq, 422, "validation_failed", "end_other_sessions",
                           "end_other_sessions must be true or false");
        return;
    }
    char token[ACCOUNTS_TOKEN_TEXT];
    accounts_session sess;
    core_status rc = accounts_login(c->acc, username, password, http_client_addr(rq), &sess, token, &err);
    if (rc) {
        api_fail(rq, &err, NULL);
        return;
    }
    int ended = 0;
    if (json_is_true(others) && accounts_end_other_sessions(c->acc, &sess, &ended, &err)) {
        /* The new session stands; say the others may not have ended. */
        core_log(CORE_LOG_ERROR, "login: ending other sessions failed: %s", err.message);
        ended = -1;
    }
    api_set_session_cookie(rq, c, token);
    json_t *out = json_pack("{s:o,s:s}", "user", api_user_json(&sess), "csrf_token", sess.csrf);
    if (json_is_true(others)) json_object_set_new(out, "ended_sessions", ended < 0 ? json_null() : json_integer(ended));
    http_respond_json(rq, 200, out);
    cs_crypto_wipe(token, sizeof token);
    accounts_session_wipe(&sess);
}

void api_logout(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    core_error err = {0};
    if (accounts_logout(c->acc, &sess, &err))
        api_fail(rq, &err, NULL);
    else {
        api_clear_session_cookie(rq);
        http_respond_json(rq, 200, json_pack("{s:b}", "ok", 1));
    }
    accounts_session_wipe(&sess);
}

void api_reset(http_request *rq, void *ctx) {
    api_context *c = ctx;
    json_t *body = http_json_body(rq);
    if (!body) return;
    core_error err = {0};
    char recovery[CS_CRYPTO_RECOVERY_TEXT];
    core_status rc = accounts_reset_password(c->acc, api_str(body, "username"), api_str(body, "recovery_code"),
                                             api_str(body, "new_password"), http_client_addr(rq), recovery, &err);
    if (rc) {
        api_fail(rq, &err, NULL);
        return;
    }
    http_respond_json(rq, 200, json_pack("{s:s}", "recovery_code", recovery));
    cs_crypto_wipe(recovery, sizeof recovery);
}

void api_session_get(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, false)) return;
    http_respond_json(rq, 200, json_pack("{s:o,s:s}", "user", api_user_json(&sess), "csrf_token", sess.csrf));
    accounts_session_wipe(&sess);
}
