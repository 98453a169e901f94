/* api — the person's side of the ledger: wallet (balance, history,
 * transfer, redeem) and consents (grant, list, revoke, receipt).
 *
 * A wallet goes on the ledger (a register_wallet transaction, permanent like
 * everything there) at its first use — the first consent or record anchor,
 * or the first look at the wallet, which is how a person learns the key
 * others send tokens to — never at sign-up, so an account that is abandoned
 * or made in a flood leaves nothing permanent behind. Paths that cannot
 * succeed for a wallet not on the ledger (transfer and redeem need tokens;
 * revoke, receipts and contributions need a consent; the consent list is
 * empty) look the wallet up without registering it and answer as the ledger
 * would.
 *
 * The server signs for the person with their wallet key, which it can only
 * unseal inside an authenticated request (the seed is sealed under the data
 * key). Every write answers only after the transaction is in a durably
 * committed block, and returns where it is (txid, block, leaf index). */
#include "api/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"

json_t *api_hex(const uint8_t *p, size_t n) {
    char s[2 * 64 + 1];
    if (n > 64) return NULL;
    cs_crypto_hex(p, n, s);
    return json_string(s);
}

json_t *api_time(int64_t t) {
    char s[32];
    core_format_time(t, s);
    return json_string(s);
}

void api_ledger_fail(http_request *rq, const core_error *err) {
    if (err->code == CORE_ERR_CONFLICT) {
        http_respond_error(rq, 409, "ledger_conflict", err->field[0] ? err->field : NULL, "%s", err->message);
        return;
    }
    api_fail(rq, err, NULL);
}

core_status api_wallet_lookup(api_context *c, const accounts_session *sess, uint8_t pk[32], uint8_t sk[64],
                              bool *registered, core_error *err) {
    bool created;
    *registered = false;
    /* The keypair itself lives in caresync.db (made on first use, sealed under
     * the data key, shredded with the account): nothing permanent yet. */
    core_status rc = accounts_wallet(c->acc, sess, pk, sk, &created, err);
    if (rc) return rc;
    ledger_account acct;
    core_error e = {0};
    rc = ledger_get_account(c->led, pk, &acct, &e);
    if (rc == CORE_ERR_NOT_FOUND)
        rc = CORE_OK;
    else if (rc) {
        if (err) *err = e;
    } else
        *registered = acct.wallet;
    if (rc && sk) cs_crypto_wipe(sk, 64);
    return rc;
}

core_status api_wallet_ensure(api_context *c, const accounts_session *sess, uint8_t pk[32], uint8_t sk[64],
                              core_error *err) {
    uint8_t tmp[64];
    uint8_t *key = sk ? sk : tmp;
    bool registered;
    core_status rc = api_wallet_lookup(c, sess, pk, key, &registered, err);
    /* Register on the ledger the first time (or if an earlier attempt was
     * interrupted after the key was stored). Idempotent: of concurrent first
     * uses, the ledger's producer applies one register_wallet and refuses
     * the others as "already registered", which is success here. The
     * nonces ledger_sign_submit hands out stay strictly increasing either
     * way, so the callers' own transactions follow in order. */
    if (!rc && !registered) {
        ledger_tx tx = {.kind = LEDGER_TX_REGISTER_WALLET};
        ledger_receipt r;
        rc = ledger_sign_submit(c->led, &tx, key, &r, err);
        if (rc == CORE_ERR_CONFLICT && strcmp(err->field, "signer") == 0) rc = CORE_OK; /* a concurrent request won */
    }
    cs_crypto_wipe(tmp, sizeof tmp);
    if (rc && sk) cs_crypto_wipe(sk, 64);
    return rc;
}

bool api_wallet_keys(http_request *rq, api_context *c, const accounts_session *sess, uint8_t pk[32], uint8_t sk[64],
                     bool *registered) {
    core_error err = {0};
    if (api_wallet_lookup(c, sess, pk, sk, registered, &err) == CORE_OK) return true;
    api_fail(rq, &err, NULL);
    return false;
}

bool api_wallet(http_request *rq, api_context *c, const accounts_session *sess, uint8_t pk[32], uint8_t sk[64]) {
    core_error err = {0};
    if (api_wallet_ensure(c, sess, pk, sk, &err) == CORE_OK) return true;
    api_fail(rq, &err, NULL);
    return false;
}

static json_t *receipt_json(const ledger_receipt *r) {
    return json_pack("{s:o, s:I, s:I}", "txid", api_hex(r->txid, 32), "block", (json_int_t)r->height, "leaf_index",
                     (json_int_t)r->seq);
}

/* ---- wallet ---- */

typedef struct {
    json_t *items;
    const uint8_t *me;
} history_ctx;

static void add_history(void *ud, uint64_t seq, int64_t delta, const ledger_tx *tx, uint64_t height) {
    history_ctx *h = ud;
    uint8_t enc[LEDGER_TX_MAX], id[32];
    size_t len = ledger_tx_encode(tx, enc, sizeof enc);
    ledger_tx_id(enc, len, id);
    json_t *item =
        json_pack("{s:I, s:I, s:s, s:I, s:o}", "leaf_index", (json_int_t)seq, "block", (json_int_t)height, "kind",
                  ledger_tx_kind_name(tx->kind), "delta", (json_int_t)delta, "txid", api_hex(id, 32));
    if (!item) return;
    if (tx->kind == LEDGER_TX_TRANSFER)
        json_object_set_new(item, "counterparty",
                            api_hex(memcmp(tx->signer, h->me, 32) == 0 ? tx->u.transfer.to : tx->signer, 32));
    if (tx->kind == LEDGER_TX_CONTRIBUTE)
        json_object_set_new(item, "category",
                            json_string(ledger_category_name((ledger_category)tx->u.contribute.category)));
    /* A review's tokens leave the balance at the request and come back only
     * with a refund; a settlement pays the organisation and posts nothing to
     * the person. So the request row names the organisation, and a refund
     * row the request it closes, for the page to pair them. */
    if (tx->kind == LEDGER_TX_REVIEW_REQUEST) json_object_set_new(item, "counterparty", api_hex(tx->u.review.org, 32));
    if (tx->kind == LEDGER_TX_REVIEW_REFUND || tx->kind == LEDGER_TX_REVIEW_SETTLE)
        json_object_set_new(item, "request", api_hex(tx->u.review_close.request, 32));
    /* A data request's payment names the request's escrow (its escrow_txid). */
    if (tx->kind == LEDGER_TX_MARKET_PAY) json_object_set_new(item, "request", api_hex(tx->u.market_pay.request, 32));
    json_array_append_new(h->items, item);
}

/* Each review_request row gets its escrow: {state: open|settled|refunded,
 * closed_block}. Looked up after the history query, not inside its
 * callback, which runs on the query's pooled connection. */
static core_status add_escrows(api_context *c, json_t *items, core_error *err) {
    static const char *const names[] = {"open", "settled", "refunded"};
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item) {
        uint8_t txid[32];
        if (strcmp(json_string_value(json_object_get(item, "kind")), "review_request") != 0) continue;
        if (!cs_crypto_unhex(json_string_value(json_object_get(item, "txid")), txid, 32)) continue;
        ledger_escrow e;
        core_status rc = ledger_get_escrow(c->led, txid, &e, err);
        if (rc) return rc;
        json_t *o = json_pack("{s:s, s:o}", "state", names[e.state > 2 ? 0 : e.state], "closed_block",
                              e.closed_height ? json_integer((json_int_t)e.closed_height) : json_null());
        if (!o || json_object_set_new(item, "escrow", o)) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    return CORE_OK;
}

void api_wallet_get(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, false)) return;
    uint8_t pk[32];
    /* Showing the wallet is a first use: the key shown must be able to
     * receive transfers, which the ledger allows only to registered wallets. */
    if (api_wallet(rq, c, &sess, pk, NULL)) {
        core_error err = {0};
        ledger_account acct;
        history_ctx h = {json_array(), pk};
        uint64_t escrowed = 0;
        core_status rc = ledger_get_account(c->led, pk, &acct, &err);
        if (!rc) rc = ledger_escrowed_by(c->led, pk, &escrowed, &err);
        if (!rc) rc = ledger_history(c->led, pk, LEDGER_HISTORY_LIMIT, add_history, &h, &err);
        if (!rc) rc = add_escrows(c, h.items, &err);
        if (rc) {
            json_decref(h.items);
            api_fail(rq, &err, NULL);
        } else {
            http_respond_json(rq, 200,
                              json_pack("{s:{s:o, s:I, s:I, s:o}}", "wallet", "public_key", api_hex(pk, 32), "balance",
                                        (json_int_t)acct.balance, "escrowed", (json_int_t)escrowed, "history",
                                        h.items));
        }
    }
    accounts_session_wipe(&sess);
}

/* A positive whole number of tokens from body[key]. */
static bool amount_of(http_request *rq, const json_t *body, uint64_t *out) {
    json_t *v = json_object_get(body, "amount");
    if (!json_is_integer(v) || json_integer_value(v) < 1) {
        http_respond_error(rq, 422, "validation_failed", "amount",
                           "amount must be a whole number of tokens, at least 1");
        return false;
    }
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* A wallet not on the ledger holds no tokens, so a transfer or redeem from it
 * must fail. Answer exactly as the ledger's rules would (in their order:
 * yourself, unknown recipient, balance) instead of registering the wallet
 * just to have the ledger refuse. */
static void refuse_unregistered(http_request *rq, api_context *c, const ledger_tx *tx, const uint8_t pk[32]) {
    if (tx->kind == LEDGER_TX_TRANSFER) {
        ledger_account to;
        core_error err = {0};
        core_status rc = ledger_get_account(c->led, tx->u.transfer.to, &to, &err);
        if (memcmp(tx->u.transfer.to, pk, 32) == 0) {
            http_respond_error(rq, 422, "validation_failed", "to", "cannot transfer to yourself");
            return;
        }
        if (rc == CORE_ERR_NOT_FOUND || (!rc && !to.wallet)) {
            http_respond_error(rq, 404, "not_found", NULL, "recipient is not a registered wallet");
            return;
        }
        if (rc) {
            api_fail(rq, &err, NULL);
            return;
        }
    }
    http_respond_error(rq, 422, "validation_failed", "amount", "insufficient balance (0 available)");
}

/* ---- answering a ledger write from its commit ----
 *
 * A write waits for its block without holding a server thread: the request
 * is deferred (http_request_defer), the ledger's producer thread only copies
 * the receipt and wakes it (wait_committed), and the answer is built on a
 * server thread (wait_answer → the endpoint's answer function) exactly as
 * the synchronous path built it — a refusal through api_ledger_fail, the
 * same codes. What the answer needs travels in the wait, which starts with
 * a ledger_wait; nothing is written after the commit. */
typedef struct ledger_wait ledger_wait;
struct ledger_wait {
    http_deferred *d;
    ledger_receipt r;
    void (*answer)(http_request *rq, const ledger_wait *w); /* on success */
};

static void wait_answer(http_request *rq, void *arg) {
    ledger_wait *w = arg;
    if (rq && w->r.status)
        api_ledger_fail(rq, &w->r.error);
    else if (rq)
        w->answer(rq, w);
    free(w); /* the whole wait: ledger_wait is its first member */
}

static void wait_committed(void *ud, const ledger_receipt *r) {
    ledger_wait *w = ud;
    w->r = *r;
    http_deferred_wake(w->d, wait_answer, w);
}

/* Defer rq and submit tx signed with sk; w (calloc'd by the caller, NULL
 * answers 500 now) is taken and answers the request once the block is
 * committed, or at once when the ledger refuses to queue it. */
static void submit_deferred(http_request *rq, api_context *c, ledger_tx *tx, const uint8_t sk[64], ledger_wait *w) {
    core_error err = {0};
    if (!w) {
        core_fail(&err, CORE_ERR_NOMEM, NULL, "out of memory");
        api_fail(rq, &err, NULL);
        return;
    }
    w->d = http_request_defer(rq);
    if (!w->d) { /* the server is stopping: answered 503, nothing written */
        free(w);
        return;
    }
    /* Queued: w belongs to wait_committed, which may have run already. */
    core_status rc = ledger_sign_submit_async(c->led, tx, sk, wait_committed, w, &err);
    if (rc) {
        w->r.status = rc;
        w->r.error = err;
        http_deferred_wake(w->d, wait_answer, w);
    }
}

typedef struct {
    ledger_wait base;
    int status;
} receipt_wait;

static void answer_receipt(http_request *rq, const ledger_wait *w) {
    http_respond_json(rq, ((const receipt_wait *)w)->status, json_pack("{s:o}", "receipt", receipt_json(&w->r)));
}

static void sign_and_answer(http_request *rq, api_context *c, ledger_tx *tx, const uint8_t sk[64], int status) {
    receipt_wait *w = calloc(1, sizeof *w);
    if (w) {
        w->base.answer = answer_receipt;
        w->status = status;
    }
    submit_deferred(rq, c, tx, sk, w ? &w->base : NULL);
}

void api_wallet_transfer(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    json_t *body = http_json_body(rq);
    uint8_t pk[32], sk[64];
    bool registered;
    ledger_tx tx = {.kind = LEDGER_TX_TRANSFER};
    if (body && amount_of(rq, body, &tx.u.transfer.amount)) {
        const char *to = api_str(body, "to");
        static const uint8_t zero[32];
        if (!to || !cs_crypto_unhex(to, tx.u.transfer.to, 32) || memcmp(tx.u.transfer.to, zero, 32) == 0) {
            http_respond_error(rq, 422, "validation_failed", "to", "to must be a wallet public key (64 hex digits)");
        } else if (api_wallet_keys(rq, c, &sess, pk, sk, &registered)) {
            if (registered)
                sign_and_answer(rq, c, &tx, sk, 200);
            else
                refuse_unregistered(rq, c, &tx, pk);
            cs_crypto_wipe(sk, sizeof sk);
        }
    }
    accounts_session_wipe(&sess);
}

void api_wallet_redeem(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    json_t *body = http_json_body(rq);
    uint8_t pk[32], sk[64];
    bool registered;
    ledger_tx tx = {.kind = LEDGER_TX_REDEEM};
    if (body && amount_of(rq, body, &tx.u.redeem.amount) && api_wallet_keys(rq, c, &sess, pk, sk, &registered)) {
        if (registered)
            sign_and_answer(rq, c, &tx, sk, 200);
        else
            refuse_unregistered(rq, c, &tx, pk);
        cs_crypto_wipe(sk, sizeof sk);
    }
    accounts_session_wipe(&sess);
}

/* ---- consents ---- */

static const char *consent_status(const ledger_consent *cn) {
    if (cn->revoked_height) return "revoked";
    return (int64_t)cn->expires <= core_now() ? "expired" : "active";
}

static json_t *consent_json(const ledger_consent *cn) {
    static const uint8_t zero[32];
    json_t *scope = json_array();
    for (int k = 0; k < LEDGER_CATEGORIES; k++)
        if (cn->scope & (1u << k)) json_array_append_new(scope, json_string(ledger_category_name((ledger_category)k)));
    char id[65], url[128];
    cs_crypto_hex(cn->grant, 32, id);
    snprintf(url, sizeof url, "/api/consents/%s/receipt", id);
    return json_pack("{s:s, s:o, s:s, s:o, s:o, s:s, s:I, s:o, s:s}", "id", id, "scope", scope, "purpose",
                     ledger_purpose_name((ledger_purpose)cn->purpose), "grantee",
                     memcmp(cn->grantee, zero, 32) == 0 ? json_string("public_health_pool") : api_hex(cn->grantee, 32),
                     "expires_at", api_time((int64_t)cn->expires), "status", consent_status(cn), "granted_block",
                     (json_int_t)cn->granted_height, "revoked_block",
                     cn->revoked_height ? json_integer((json_int_t)cn->revoked_height) : json_null(), "receipt_url",
                     url);
}

typedef struct {
    json_t *list;
    const uint8_t *want;
    ledger_consent found;
    bool hit;
} consent_ctx;

/* A review case's consent (LEDGER_PURPOSE_REVIEW) is the case's: it is shown
 * and revoked with the request (/api/review/requests/{id}), which also
 * destroys the organisation's copy; revoking it here would leave the copy. */
static void add_consent(void *ud, const ledger_consent *cn) {
    consent_ctx *x = ud;
    if (cn->purpose == LEDGER_PURPOSE_REVIEW) return;
    if (x->list) json_array_append_new(x->list, consent_json(cn));
    if (x->want && memcmp(cn->grant, x->want, 32) == 0) {
        x->found = *cn;
        x->hit = true;
    }
}

/* Find one of the caller's consents by id (another person's is a 404). */
static bool my_consent(http_request *rq, api_context *c, const uint8_t pk[32], ledger_consent *out) {
    uint8_t id[32];
    const char *hex = http_param(rq, "id");
    consent_ctx x = {.want = id};
    core_error err = {0};
    if (!hex || !cs_crypto_unhex(hex, id, 32)) {
        http_respond_error(rq, 404, "not_found", NULL, "no such consent");
        return false;
    }
    if (ledger_list_consents(c->led, pk, add_consent, &x, &err)) {
        api_fail(rq, &err, NULL);
        return false;
    }
    if (!x.hit) {
        http_respond_error(rq, 404, "not_found", NULL, "no such consent");
        return false;
    }
    *out = x.found;
    return true;
}

void api_consents_list(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, false)) return;
    uint8_t pk[32];
    bool registered; /* a wallet not on the ledger simply has no consents */
    if (api_require_person(rq, &sess) && api_wallet_keys(rq, c, &sess, pk, NULL, &registered)) {
        consent_ctx x = {.list = json_array()};
        core_error err = {0};
        if (ledger_list_consents(c->led, pk, add_consent, &x, &err)) {
            json_decref(x.list);
            api_fail(rq, &err, NULL);
        } else {
            http_respond_json(rq, 200, json_pack("{s:o}", "consents", x.list));
        }
    }
    accounts_session_wipe(&sess);
}

typedef struct {
    const uint8_t *want;
    bool found;
} org_find;

static void find_org(void *ud, const uint8_t pk[LEDGER_KEY], const char *name, uint64_t height) {
    org_find *f = ud;
    (void)name;
    (void)height;
    if (memcmp(pk, f->want, LEDGER_KEY) == 0) f->found = true;
}

/* Parse {scope:[names], purpose, grantee, expires_in_days} into tx, and make
 * the ledger's own checks of a grant (a known organisation, an expiry in
 * the future) here first: a first consent registers the wallet, and a
 * consent the ledger would refuse must not leave that registration behind.
 * (Organisations are never removed, so the check cannot go stale.) */
static bool parse_grant(http_request *rq, api_context *c, const json_t *body, ledger_tx *tx) {
    json_t *scope = json_object_get(body, "scope"), *v;
    size_t i;
    if (!json_is_array(scope) || json_array_size(scope) == 0) {
        http_respond_error(rq, 422, "validation_failed", "scope", "choose at least one category of data to share");
        return false;
    }
    json_array_foreach(scope, i, v) {
        int k = 0;
        while (k < LEDGER_CATEGORIES &&
               (!json_is_string(v) || strcmp(json_string_value(v), ledger_category_name((ledger_category)k)) != 0))
            k++;
        if (k == LEDGER_CATEGORIES) {
            http_respond_error(rq, 422, "validation_failed", "scope",
                               "scope items must be screening, conditions, symptoms or demographics");
            return false;
        }
        tx->u.grant.scope |= 1u << k;
    }
    const char *purpose = api_str(body, "purpose");
    if (purpose && strcmp(purpose, ledger_purpose_name(LEDGER_PURPOSE_SURVEILLANCE)) == 0)
        tx->u.grant.purpose = LEDGER_PURPOSE_SURVEILLANCE;
    else if (purpose && strcmp(purpose, ledger_purpose_name(LEDGER_PURPOSE_RESEARCH)) == 0)
        tx->u.grant.purpose = LEDGER_PURPOSE_RESEARCH;
    else if (purpose && strcmp(purpose, ledger_purpose_name(LEDGER_PURPOSE_TRAINING)) == 0)
        tx->u.grant.purpose = LEDGER_PURPOSE_TRAINING;
    else {
        http_respond_error(rq, 422, "validation_failed", "purpose",
                           "purpose must be public_health_surveillance, research or model_training");
        return false;
    }
    const char *grantee = api_str(body, "grantee");
    if (grantee && strcmp(grantee, "public_health_pool") != 0 && !cs_crypto_unhex(grantee, tx->u.grant.grantee, 32)) {
        http_respond_error(rq, 422, "validation_failed", "grantee",
                           "grantee must be public_health_pool or an organisation's key (64 hex digits)");
        return false;
    }
    json_t *days = json_object_get(body, "expires_in_days");
    json_int_t d = days ? (json_is_integer(days) ? json_integer_value(days) : -1) : 365;
    if (d < 1 || d > 3650) {
        http_respond_error(rq, 422, "validation_failed", "expires_in_days",
                           "expires_in_days must be between 1 and 3650");
        return false;
    }
    tx->u.grant.expires = (uint64_t)(core_now() + d * 86400);
    static const uint8_t pool[32];
    if (memcmp(tx->u.grant.grantee, pool, 32) != 0) {
        org_find f = {.want = tx->u.grant.grantee};
        core_error err = {0};
        if (ledger_list_orgs(c->led, find_org, &f, &err)) {
            api_fail(rq, &err, NULL);
            return false;
        }
        if (!f.found) {
            http_respond_error(rq, 404, "not_found", NULL, "grantee is not a registered organisation");
            return false;
        }
    }
    return true;
}

typedef struct {
    ledger_wait base;
    ledger_tx tx;
} grant_wait;

static void answer_grant(http_request *rq, const ledger_wait *base) {
    const grant_wait *w = (const grant_wait *)base;
    ledger_consent cn = {.scope = w->tx.u.grant.scope,
                         .purpose = w->tx.u.grant.purpose,
                         .expires = w->tx.u.grant.expires,
                         .granted_height = w->base.r.height};
    memcpy(cn.grant, w->base.r.txid, 32);
    memcpy(cn.grantee, w->tx.u.grant.grantee, 32);
    http_respond_json(rq, 201,
                      json_pack("{s:o, s:o}", "consent", consent_json(&cn), "receipt", receipt_json(&w->base.r)));
}

void api_consents_create(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    json_t *body = http_json_body(rq);
    uint8_t pk[32], sk[64];
    ledger_tx tx = {.kind = LEDGER_TX_GRANT};
    if (api_require_person(rq, &sess) && body && parse_grant(rq, c, body, &tx) && api_wallet(rq, c, &sess, pk, sk)) {
        grant_wait *w = calloc(1, sizeof *w);
        if (w) {
            w->base.answer = answer_grant;
            w->tx = tx;
        }
        submit_deferred(rq, c, &tx, sk, w ? &w->base : NULL);
        cs_crypto_wipe(sk, sizeof sk);
    }
    accounts_session_wipe(&sess);
}

typedef struct {
    ledger_wait base;
    ledger_consent cn;
    bool training, public_health;
    size_t deleted;
    share_withdrawal wd;
} revoke_wait;

static void answer_revoke(http_request *rq, const ledger_wait *base) {
    const revoke_wait *w = (const revoke_wait *)base;
    ledger_consent cn = w->cn;
    cn.revoked_height = w->base.r.height;
    json_t *body = json_pack("{s:o, s:o}", "consent", consent_json(&cn), "receipt", receipt_json(&w->base.r));
    if (body && w->training) json_object_set_new(body, "examples_deleted", json_integer((json_int_t)w->deleted));
    if (body && w->public_health)
        json_object_set_new(body, "contributions",
                            json_pack("{s:I, s:I}", "withdrawn", (json_int_t)w->wd.withdrawn, "in_released_weeks",
                                      (json_int_t)w->wd.sealed));
    http_respond_json(rq, 200, body);
}

void api_consents_revoke(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    uint8_t pk[32], sk[64];
    bool registered; /* not on the ledger: no consent, so my_consent answers 404 */
    ledger_consent cn;
    if (api_require_person(rq, &sess) && api_wallet_keys(rq, c, &sess, pk, sk, &registered)) {
        if (my_consent(rq, c, pk, &cn)) {
            ledger_tx tx = {.kind = LEDGER_TX_REVOKE};
            memcpy(tx.u.revoke.grant, cn.grant, 32);
            core_error err = {0};
            /* Revoking "model_training" deletes the person's kept examples,
             * found by the handle only their data key derives — first, so a
             * failure leaves the consent standing and the request can be
             * retried, never a revoked consent with examples left. */
            size_t deleted = 0;
            uint8_t handle[32];
            char dir[4200];
            bool training = cn.purpose == LEDGER_PURPOSE_TRAINING && !cn.revoked_height;
            if (training) {
                screening_example_handle(sess.data_key, handle);
                api_examples_dir(c, dir);
            }
            /* A data request's consent (issue 14): the rows it shared leave the
             * store first, by the tags only this session's data key opens. */
            core_status mrc = c->market && !cn.revoked_height
                                  ? market_withdraw_grant(c->market, sess.user_id, sess.data_key, cn.grant, &err)
                                  : CORE_ERR_NOT_FOUND;
            /* A public-health consent to the pool: the results shared under
             * it leave every week not yet released, by the tags in the
             * person's vault (docs/SURVEILLANCE.md, "Withdrawal"). First too:
             * a failed revocation after it leaves the consent to retry, and
             * a contribution never outlives its consent in an open week. */
            static const uint8_t pool[32] = {0};
            share_withdrawal wd = {0};
            bool public_health =
                cn.purpose == LEDGER_PURPOSE_SURVEILLANCE && !cn.revoked_height && !memcmp(cn.grantee, pool, 32);
            if (!mrc || mrc == CORE_ERR_NOT_FOUND)
                mrc = public_health
                          ? share_withdraw(c->share, sess.user_id, sess.data_key, cn.grant, core_now(), &wd, &err)
                          : CORE_ERR_NOT_FOUND;
            if (training && screening_examples_forget(dir, handle, &deleted, &err)) {
                api_fail(rq, &err, NULL);
            } else if (mrc && mrc != CORE_ERR_NOT_FOUND) {
                api_fail(rq, &err, NULL);
            } else {
                revoke_wait *w = calloc(1, sizeof *w);
                if (w) {
                    w->base.answer = answer_revoke;
                    w->cn = cn;
                    w->training = training;
                    w->deleted = deleted;
                    w->public_health = public_health;
                    w->wd = wd;
                }
                submit_deferred(rq, c, &tx, sk, w ? &w->base : NULL);
            }
        }
        cs_crypto_wipe(sk, sizeof sk);
    }
    accounts_session_wipe(&sess);
}

/* A consent receipt: the grant transaction, its inclusion proof and the
 * signed tree head, checkable offline with `caresync ledger verify-proof`. */
void api_consents_receipt(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, false)) return;
    uint8_t pk[32];
    bool registered;
    ledger_consent cn;
    if (api_require_person(rq, &sess) && api_wallet_keys(rq, c, &sess, pk, NULL, &registered) &&
        my_consent(rq, c, pk, &cn)) {
        ledger_proof *p = malloc(sizeof *p);
        core_error err = {0};
        if (!p || ledger_prove(c->led, cn.grant, p, &err)) {
            if (!p) core_fail(&err, CORE_ERR_NOMEM, NULL, "out of memory");
            api_fail(rq, &err, NULL);
        } else {
            /* Rendered by the ledger from the proof alone, so verify-proof can
             * hold every field to the proven bytes (status is left out). */
            char id[65], disp[128];
            cs_crypto_hex(cn.grant, 32, id);
            snprintf(disp, sizeof disp, "attachment; filename=\"consent-%.16s.json\"", id);
            json_t *doc = ledger_consent_receipt_to_json(p);
            http_add_header(rq, "Content-Disposition", disp);
            if (doc)
                http_respond_json(rq, 200, doc);
            else
                http_respond_error(rq, 500, "internal", NULL, "the consent receipt could not be built");
        }
        free(p);
    }
    accounts_session_wipe(&sess);
}
