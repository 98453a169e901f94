/* api — account settings: change password, delete account. */
#include "api/internal.h"

#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"

void api_password(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    json_t *body = http_json_body(rq);
    if (body) {
        core_error err = {0};
        if (accounts_change_password(c->acc, &sess, api_str(body, "current_password"), api_str(body, "new_password"),
                                     http_client_addr(rq), &err))
            api_fail(rq, &err, NULL);
        else
            http_respond_json(rq, 200, json_pack("{s:b}", "ok", 1));
    }
    accounts_session_wipe(&sess);
}

/* POST /api/account/sessions/revoke-others → 200 {ended: n}: every other
 * session of the account ends at once (a lost phone, a shared computer);
 * the caller's own goes on. No password is asked: it only takes access away.
 * Should a thief's session use it against the owner, the owner logs in again
 * and changes the password, which the thief cannot (it re-checks the old
 * one) and which ends the thief's session too. */
void api_account_sessions_revoke_others(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    core_error err = {0};
    int ended = 0;
    if (accounts_end_other_sessions(c->acc, &sess, &ended, &err))
        api_fail(rq, &err, NULL);
    else
        http_respond_json(rq, 200, json_pack("{s:i}", "ended", ended));
    accounts_session_wipe(&sess);
}

/* Before an account goes: revoke its active consents (no contribution may
 * follow a deletion) and burn its tokens (its wallet key is about to be
 * shredded, so they could never be spent again and would inflate supply). */
typedef struct {
    api_context *c;
    uint8_t grants[64][32];
    int n;
    bool more;
} settle_ctx;

static void collect_active(void *ud, const ledger_consent *cn) {
    settle_ctx *s = ud;
    if (cn->revoked_height || (int64_t)cn->expires <= core_now()) return;
    if (s->n < 64)
        memcpy(s->grants[s->n++], cn->grant, 32);
    else
        s->more = true;
}

static core_status settle_wallet(void *ud, const accounts_session *sess, core_error *err) {
    settle_ctx *s = ud;
    uint8_t pk[32], sk[64], handle[32];
    bool registered;
    /* Its labelled examples go first (the deletion revokes the training
     * consent below; only this session's data key finds them). */
    char dir[4200];
    api_examples_dir(s->c, dir);
    screening_example_handle(sess->data_key, handle);
    core_status rc = screening_examples_forget(dir, handle, NULL, err);
    /* Rows shared with data requests, found by tags this data key opens,
     * before the sealed copies go with the account (issue 14). */
    if (!rc && s->c->market) rc = market_forget_person(s->c->market, sess->user_id, sess->data_key, NULL, err);
    /* Shared screening results leave the weeks not yet released, by the
     * tags in the vault this data key opens (the vault goes with the user
     * row); those in released weeks stay (docs/SURVEILLANCE.md). */
    share_withdrawal wd;
    if (!rc) rc = share_withdraw(s->c->share, sess->user_id, sess->data_key, NULL, core_now(), &wd, err);
    if (rc) return rc;
    rc = api_wallet_lookup(s->c, sess, pk, sk, &registered, err);
    if (rc) return rc;
    /* A wallet never put on the ledger has no consents and no tokens: there
     * is nothing to settle, and it must not be registered now. */
    if (!registered) {
        cs_crypto_wipe(sk, sizeof sk);
        return CORE_OK;
    }
    do {
        s->n = 0;
        s->more = false;
        rc = ledger_list_consents(s->c->led, pk, collect_active, s, err);
        for (int i = 0; !rc && i < s->n; i++) {
            ledger_tx tx = {.kind = LEDGER_TX_REVOKE};
            memcpy(tx.u.revoke.grant, s->grants[i], 32);
            ledger_receipt r;
            rc = ledger_sign_submit(s->c->led, &tx, sk, &r, err);
        }
    } while (!rc && s->more);
    ledger_account acct;
    if (!rc) rc = ledger_get_account(s->c->led, pk, &acct, err);
    if (!rc && acct.balance > 0) {
        ledger_tx tx = {.kind = LEDGER_TX_REDEEM, .u.redeem.amount = (uint64_t)acct.balance};
        ledger_receipt r;
        rc = ledger_sign_submit(s->c->led, &tx, sk, &r, err);
    }
    cs_crypto_wipe(sk, sizeof sk);
    return rc;
}

void api_account_delete(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    json_t *body = http_json_body(rq);
    if (body) {
        core_error err = {0};
        settle_ctx *settle = calloc(1, sizeof *settle);
        core_status rc = settle ? CORE_OK : core_fail(&err, CORE_ERR_NOMEM, NULL, "out of memory");
        if (settle) settle->c = c;
        if (!rc)
            rc = accounts_delete_with(c->acc, &sess, api_str(body, "password"), http_client_addr(rq), settle_wallet,
                                      settle, &err);
        free(settle);
        if (rc) {
            api_fail(rq, &err, NULL);
        } else {
            api_clear_session_cookie(rq);
            http_respond_json(rq, 200, json_pack("{s:b}", "deleted", 1));
        }
    }
    accounts_session_wipe(&sess);
}
