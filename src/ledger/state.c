/* ledger — the deterministic state machine.
 *
 * State lives in SQLite tables, written inside the block's transaction, so a
 * block, its transactions and the state they produce commit together or not
 * at all. The same code applies transactions when producing a block and when
 * `ledger verify` replays the chain into a fresh in-memory database; the
 * rules below are therefore applied identically on replay, including the
 * reward rules, which are themselves ledger transactions (params).
 *
 * Each apply() first checks every rule with reads only, then writes. A
 * rejected transaction thus leaves nothing behind and needs no savepoint. */
#include "ledger/internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

enum {
    Q_SIGNER_GET,
    Q_SIGNER_PUT,
    Q_TX_PUT,
    Q_POSTING,
    Q_COMMIT_GET,
    Q_COMMIT_PUT,
    Q_CONSENT_GET,
    Q_CONSENT_PUT,
    Q_CONSENT_REVOKE,
    Q_CONSENT_END,
    Q_ORG_GET,
    Q_ORG_PUT,
    Q_META_GET,
    Q_META_PUT,
    Q_BLOCK_PUT,
    Q_ESCROW_GET,
    Q_ESCROW_PUT,
    Q_ESCROW_CLOSE,
    Q_CONSENT_GRANTEE,
    Q_MARKET_GET,
    Q_MARKET_PUT,
    Q_MARKET_UPDATE,
    Q_MARKET_PAID_GET,
    Q_MARKET_PAID_PUT,
    Q_COUNT
};

static const char *const sql[Q_COUNT] = {
    [Q_SIGNER_GET] = "SELECT nonce, wallet, balance FROM signers WHERE pubkey = ?1",
    [Q_SIGNER_PUT] = ("INSERT INTO signers (pubkey, nonce, wallet, balance) VALUES (?1, ?2, ?3, ?4) "
                      "ON CONFLICT (pubkey) DO UPDATE SET nonce = excluded.nonce, wallet = excluded.wallet, "
                      "balance = excluded.balance"),
    [Q_TX_PUT] = "INSERT INTO txs (seq, txid, height, body) VALUES (?1, ?2, ?3, ?4)",
    [Q_POSTING] = "INSERT INTO postings (wallet, seq, delta) VALUES (?1, ?2, ?3)",
    [Q_COMMIT_GET] = "SELECT 1 FROM commitments WHERE commitment = ?1",
    [Q_COMMIT_PUT] = "INSERT INTO commitments (commitment, seq) VALUES (?1, ?2)",
    [Q_CONSENT_GET] = "SELECT owner, scope, purpose, expires, revoked_height FROM consents WHERE grant_txid = ?1",
    [Q_CONSENT_PUT] = ("INSERT INTO consents (grant_txid, owner, scope, purpose, grantee, expires, granted_height, "
                       "revoked_height) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)"),
    [Q_CONSENT_REVOKE] = "UPDATE consents SET revoked_height = ?2 WHERE grant_txid = ?1",
    [Q_CONSENT_END] = "UPDATE consents SET revoked_height = ?2 WHERE grant_txid = ?1 AND revoked_height = 0",
    [Q_ORG_GET] = "SELECT 1 FROM orgs WHERE pubkey = ?1",
    [Q_ORG_PUT] = "INSERT INTO orgs (pubkey, name, height) VALUES (?1, ?2, ?3)",
    [Q_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [Q_META_PUT] = ("INSERT INTO meta (key, value) VALUES (?1, ?2) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
    [Q_BLOCK_PUT] = "INSERT INTO blocks (height, hash, header) VALUES (?1, ?2, ?3)",
    [Q_ESCROW_GET] = "SELECT payer, org, amount, outcome FROM escrows WHERE request_txid = ?1",
    [Q_ESCROW_PUT] =
        ("INSERT INTO escrows (request_txid, payer, org, commitment, amount, opened_height, closed_height, "
         "outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0)"),
    [Q_ESCROW_CLOSE] = "UPDATE escrows SET closed_height = ?2, outcome = ?3 WHERE request_txid = ?1 AND outcome = 0",
    [Q_CONSENT_GRANTEE] = "SELECT grantee FROM consents WHERE grant_txid = ?1",
    [Q_MARKET_GET] = "SELECT org, price, remaining, closes, outcome, paid FROM market_escrows WHERE request_txid = ?1",
    [Q_MARKET_PUT] =
        ("INSERT INTO market_escrows (request_txid, org, terms, price, max_participants, paid, remaining, "
         "closes, opened_height, closed_height, outcome) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8, 0, 0)"),
    [Q_MARKET_UPDATE] = ("UPDATE market_escrows SET paid = ?2, remaining = ?3, closed_height = ?4, outcome = ?5 "
                         "WHERE request_txid = ?1 AND outcome = 0"),
    [Q_MARKET_PAID_GET] = "SELECT 1 FROM market_payments WHERE request_txid = ?1 AND participant = ?2",
    [Q_MARKET_PAID_PUT] =
        "INSERT INTO market_payments (request_txid, participant, grant_txid, seq) VALUES (?1, ?2, ?3, ?4)",
};

struct ledger_state {
    sqlite3 *db;
    sqlite3_stmt *q[Q_COUNT];
    bool loaded; /* the last load succeeded: the fields below are the committed ones */
    bool have_params;
    ledger_tx params; /* the params transaction in force */
    uint64_t minted, burned;
};

typedef struct {
    bool exists, wallet;
    uint64_t nonce;
    int64_t balance;
} signer_row;

static core_status db_fail(ledger_state *s, core_error *err) { return store_error(s->db, err); }

core_status ledger_state_open(sqlite3 *db, ledger_state **out, core_error *err) {
    *out = NULL;
    ledger_state *s = calloc(1, sizeof *s);
    if (!s) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    s->db = db;
    for (int i = 0; i < Q_COUNT; i++) {
        if (sqlite3_prepare_v3(db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->q[i], NULL) != SQLITE_OK) {
            core_status rc = db_fail(s, err);
            ledger_state_close(s);
            return rc;
        }
    }
    core_status rc = ledger_state_load(s, err);
    if (rc) {
        ledger_state_close(s);
        return rc;
    }
    *out = s;
    return CORE_OK;
}

void ledger_state_close(ledger_state *s) {
    if (!s) return;
    for (int i = 0; i < Q_COUNT; i++) sqlite3_finalize(s->q[i]);
    free(s);
}

bool ledger_state_has_params(const ledger_state *s) { return s->have_params; }

void ledger_state_totals(const ledger_state *s, uint64_t *minted, uint64_t *burned) {
    *minted = s->minted;
    *burned = s->burned;
}

/* Run a prepared statement to completion (writes). */
static core_status step_done(ledger_state *s, sqlite3_stmt *q, core_error *err) {
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return rc == SQLITE_DONE ? CORE_OK : db_fail(s, err);
}

static core_status exists(ledger_state *s, int which, const uint8_t *key, size_t n, bool *found, core_error *err) {
    sqlite3_stmt *q = s->q[which];
    sqlite3_bind_blob(q, 1, key, (int)n, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    *found = rc == SQLITE_ROW;
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? CORE_OK : db_fail(s, err);
}

/* The meta row for key; *v is NULL when there is none. The blob stays valid
 * until meta_done(). */
static core_status meta_get_blob(ledger_state *s, const char *key, const void **v, int *n, core_error *err) {
    sqlite3_stmt *q = s->q[Q_META_GET];
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    *v = NULL;
    *n = 0;
    if (rc == SQLITE_ROW) {
        *v = sqlite3_column_blob(q, 0);
        *n = sqlite3_column_bytes(q, 0);
        return CORE_OK;
    }
    return rc == SQLITE_DONE ? CORE_OK : db_fail(s, err);
}

static void meta_done(ledger_state *s) {
    sqlite3_reset(s->q[Q_META_GET]);
    sqlite3_clear_bindings(s->q[Q_META_GET]);
}

/* A counter (absent: 0). */
static core_status meta_u64(ledger_state *s, const char *key, uint64_t *out, core_error *err) {
    const void *v;
    int n;
    core_status rc = meta_get_blob(s, key, &v, &n, err);
    *out = !rc && v ? (uint64_t)sqlite3_column_int64(s->q[Q_META_GET], 0) : 0;
    meta_done(s);
    return rc;
}

_Atomic int ledger_fault_state_load;

core_status ledger_state_load(ledger_state *s, core_error *err) {
    s->loaded = false;
    if (ledger_fault_state_load > 0) {
        ledger_fault_state_load--;
        return core_fail(err, CORE_ERR_STORAGE, NULL, "injected fault: state reload failed");
    }
    /* Read into locals and install only when everything was read, so a
     * failure cannot leave half old and half new values behind. */
    ledger_tx params;
    bool have = false;
    const void *v;
    int n;
    core_status rc = meta_get_blob(s, "params", &v, &n, err);
    if (!rc && v) {
        rc = ledger_tx_decode(v, (size_t)n, &params, err);
        if (!rc && params.kind != LEDGER_TX_PARAMS)
            rc = core_fail(err, CORE_ERR_INVALID, "params", "stored params are not a params transaction");
        have = rc == CORE_OK;
    }
    meta_done(s);
    uint64_t minted = 0, burned = 0;
    if (!rc) rc = meta_u64(s, "minted", &minted, err);
    if (!rc) rc = meta_u64(s, "burned", &burned, err);
    if (rc) return rc;
    s->have_params = have;
    if (have) s->params = params;
    s->minted = minted;
    s->burned = burned;
    s->loaded = true;
    return CORE_OK;
}

static core_status signer_get(ledger_state *s, const uint8_t pk[LEDGER_KEY], signer_row *r, core_error *err) {
    sqlite3_stmt *q = s->q[Q_SIGNER_GET];
    memset(r, 0, sizeof *r);
    sqlite3_bind_blob(q, 1, pk, LEDGER_KEY, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        r->exists = true;
        r->nonce = (uint64_t)sqlite3_column_int64(q, 0);
        r->wallet = sqlite3_column_int(q, 1) != 0;
        r->balance = sqlite3_column_int64(q, 2);
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? CORE_OK : db_fail(s, err);
}

static core_status signer_put(ledger_state *s, const uint8_t pk[LEDGER_KEY], const signer_row *r, core_error *err) {
    sqlite3_stmt *q = s->q[Q_SIGNER_PUT];
    sqlite3_bind_blob(q, 1, pk, LEDGER_KEY, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, (int64_t)r->nonce);
    sqlite3_bind_int(q, 3, r->wallet);
    sqlite3_bind_int64(q, 4, r->balance);
    return step_done(s, q, err);
}

static core_status posting(ledger_state *s, const uint8_t pk[LEDGER_KEY], uint64_t seq, int64_t delta,
                           core_error *err) {
    sqlite3_stmt *q = s->q[Q_POSTING];
    sqlite3_bind_blob(q, 1, pk, LEDGER_KEY, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, (int64_t)seq);
    sqlite3_bind_int64(q, 3, delta);
    return step_done(s, q, err);
}

static bool is_node(const ledger_state *s, const uint8_t pk[LEDGER_KEY]) {
    for (int i = 0; i < s->params.u.params.n_nodes; i++)
        if (memcmp(s->params.u.params.nodes[i], pk, LEDGER_KEY) == 0) return true;
    return false;
}

bool ledger_state_is_node(const ledger_state *s, const uint8_t pk[LEDGER_KEY]) {
    return s->have_params && is_node(s, pk);
}

const ledger_tx *ledger_state_params(const ledger_state *s) { return s->have_params ? &s->params : NULL; }

static bool is_admin(const ledger_state *s, const uint8_t pk[LEDGER_KEY]) {
    return memcmp(s->params.u.params.admin, pk, LEDGER_KEY) == 0;
}

typedef struct {
    bool found;
    uint8_t owner[LEDGER_KEY];
    uint32_t scope;
    uint8_t purpose;
    uint64_t expires, revoked_height;
} consent_row;

static core_status consent_get(ledger_state *s, const uint8_t grant[LEDGER_HASH], consent_row *c, core_error *err) {
    sqlite3_stmt *q = s->q[Q_CONSENT_GET];
    memset(c, 0, sizeof *c);
    sqlite3_bind_blob(q, 1, grant, LEDGER_HASH, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW && sqlite3_column_bytes(q, 0) == LEDGER_KEY) {
        c->found = true;
        memcpy(c->owner, sqlite3_column_blob(q, 0), LEDGER_KEY);
        c->scope = (uint32_t)sqlite3_column_int64(q, 1);
        c->purpose = (uint8_t)sqlite3_column_int(q, 2);
        c->expires = (uint64_t)sqlite3_column_int64(q, 3);
        c->revoked_height = (uint64_t)sqlite3_column_int64(q, 4);
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? CORE_OK : db_fail(s, err);
}

/* A consent is active at a block's time while it is neither revoked nor past
 * its expiry (expires is in seconds; the block clock in milliseconds). */
static bool consent_active(const consent_row *c, uint64_t time_ms) {
    return c->found && c->revoked_height == 0 && c->expires > time_ms / 1000;
}

static bool zero_key(const uint8_t *k) {
    uint8_t acc = 0;
    for (int i = 0; i < LEDGER_KEY; i++) acc |= k[i];
    return acc == 0;
}

/* ---- one transaction: checks, then effects ----
 *
 * Each kind has a check (reads only: it may fill the context's rows, never
 * write) and an effect (writes only what its check allowed). apply() runs
 * the common checks and the kind's check to completion before the first
 * write, which is what lets a rejected transaction leave nothing. */

typedef struct {
    const ledger_tx *tx;
    const uint8_t *enc; /* the exact bytes, stored as the tx row */
    size_t len;
    const uint8_t *txid;
    uint64_t seq, height, time_ms;
    signer_row me;    /* the signer */
    signer_row other; /* the contributor or the recipient, for the kinds that have one */
    /* REVIEW_SETTLE / REVIEW_REFUND: the escrow's amount and who receives it
     * (the signer itself when a node pays its own key: then me is credited,
     * since me and other would be two copies of one row). */
    uint64_t escrow_amount;
    uint8_t payee[LEDGER_KEY];
    bool payee_is_me;
    /* MARKET_PAY / MARKET_CLOSE: the request's escrow as the check read it. */
    uint64_t m_price, m_remaining;
    uint32_t m_paid;
} tx_ctx;

typedef core_status (*tx_check_fn)(ledger_state *s, tx_ctx *c, core_error *err);
typedef core_status (*tx_effect_fn)(ledger_state *s, tx_ctx *c, core_error *err);

static core_status check_params(ledger_state *s, tx_ctx *c, core_error *err) {
    if (s->have_params && !is_admin(s, c->tx->signer))
        return core_fail(err, CORE_ERR_FORBIDDEN, "signer", "only the admin key may change parameters");
    if (!s->have_params && c->seq != 0)
        return core_fail(err, CORE_ERR_INVALID, "kind", "genesis parameters must be the first transaction");
    return CORE_OK;
}

static core_status check_register_wallet(ledger_state *s, tx_ctx *c, core_error *err) {
    (void)s;
    if (c->me.wallet) return core_fail(err, CORE_ERR_CONFLICT, "signer", "wallet is already registered");
    return CORE_OK;
}

static core_status check_anchor(ledger_state *s, tx_ctx *c, core_error *err) {
    bool found = false;
    core_status rc = exists(s, Q_COMMIT_GET, c->tx->u.anchor.commitment, LEDGER_HASH, &found, err);
    if (rc) return rc;
    if (found) return core_fail(err, CORE_ERR_CONFLICT, "commitment", "this commitment is already on the ledger");
    return CORE_OK;
}

static core_status check_grant(ledger_state *s, tx_ctx *c, core_error *err) {
    if (!zero_key(c->tx->u.grant.grantee)) {
        bool found = false;
        core_status rc = exists(s, Q_ORG_GET, c->tx->u.grant.grantee, LEDGER_KEY, &found, err);
        if (rc) return rc;
        if (!found) return core_fail(err, CORE_ERR_NOT_FOUND, "grantee", "grantee is not a registered organisation");
    }
    if (c->tx->u.grant.expires <= c->time_ms / 1000)
        return core_fail(err, CORE_ERR_INVALID, "expires", "consent would already be expired");
    return CORE_OK;
}

static core_status check_revoke(ledger_state *s, tx_ctx *c, core_error *err) {
    consent_row consent;
    core_status rc = consent_get(s, c->tx->u.revoke.grant, &consent, err);
    if (rc) return rc;
    if (!consent.found) return core_fail(err, CORE_ERR_NOT_FOUND, "grant", "no such consent");
    if (memcmp(consent.owner, c->tx->signer, LEDGER_KEY) != 0)
        return core_fail(err, CORE_ERR_FORBIDDEN, "grant", "only the person who granted a consent may revoke it");
    if (consent.revoked_height) return core_fail(err, CORE_ERR_CONFLICT, "grant", "consent is already revoked");
    if (!consent_active(&consent, c->time_ms)) return core_fail(err, CORE_ERR_CONFLICT, "grant", "consent has expired");
    if (consent.purpose != LEDGER_PURPOSE_REVIEW) return CORE_OK;
    /* Revoking a review consent while its case waits takes the case back:
     * the escrow returns to the person in this same transaction, so no
     * crash can leave tokens locked for a case the organisation may no
     * longer see. (escrow_amount 0: nothing to refund.) */
    sqlite3_stmt *q = s->q[Q_ESCROW_GET];
    sqlite3_bind_blob(q, 1, c->tx->u.revoke.grant, LEDGER_HASH, SQLITE_STATIC);
    int step = sqlite3_step(q);
    if (step == SQLITE_ROW && sqlite3_column_int(q, 3) == 0) c->escrow_amount = (uint64_t)sqlite3_column_int64(q, 2);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    if (step != SQLITE_ROW && step != SQLITE_DONE) return db_fail(s, err);
    if (c->escrow_amount > LEDGER_AMOUNT_MAX - (uint64_t)c->me.balance)
        return core_fail(err, CORE_ERR_INVALID, "grant", "balance would overflow");
    return CORE_OK;
}

static core_status check_contribute(ledger_state *s, tx_ctx *c, core_error *err) {
    const ledger_tx *tx = c->tx;
    const uint8_t cat = tx->u.contribute.category;
    assert(cat < LEDGER_CATEGORIES); /* the decoder refuses any other */
    if (!is_node(s, tx->signer))
        return core_fail(err, CORE_ERR_FORBIDDEN, "signer", "only a node key may record contributions");
    /* signer and contributor rows are written separately by the effect */
    if (memcmp(tx->signer, tx->u.contribute.contributor, LEDGER_KEY) == 0)
        return core_fail(err, CORE_ERR_FORBIDDEN, "contributor", "a node cannot reward itself");
    core_status rc = signer_get(s, tx->u.contribute.contributor, &c->other, err);
    if (rc) return rc;
    if (!c->other.wallet)
        return core_fail(err, CORE_ERR_NOT_FOUND, "contributor", "contributor is not a registered wallet");
    consent_row consent;
    if ((rc = consent_get(s, tx->u.contribute.grant, &consent, err))) return rc;
    if (!consent_active(&consent, c->time_ms) || memcmp(consent.owner, tx->u.contribute.contributor, LEDGER_KEY) != 0 ||
        !(consent.scope & (1u << cat)) || consent.purpose == LEDGER_PURPOSE_REVIEW)
        return core_fail(err, CORE_ERR_FORBIDDEN, "grant", "no active consent of the contributor covers %s",
                         ledger_category_name((ledger_category)cat));
    if (tx->u.contribute.reward != s->params.u.params.reward[cat])
        return core_fail(err, CORE_ERR_INVALID, "reward", "reward %llu does not match the rule in force (%llu)",
                         (unsigned long long)tx->u.contribute.reward,
                         (unsigned long long)s->params.u.params.reward[cat]);
    bool found = false;
    if ((rc = exists(s, Q_COMMIT_GET, tx->u.contribute.commitment, LEDGER_HASH, &found, err))) return rc;
    if (found) return core_fail(err, CORE_ERR_CONFLICT, "commitment", "this datum was already contributed");
    if (tx->u.contribute.reward > LEDGER_AMOUNT_MAX - s->minted ||
        tx->u.contribute.reward > LEDGER_AMOUNT_MAX - (uint64_t)c->other.balance)
        return core_fail(err, CORE_ERR_INVALID, "reward", "token supply limit reached");
    return CORE_OK;
}

static core_status check_transfer(ledger_state *s, tx_ctx *c, core_error *err) {
    const ledger_tx *tx = c->tx;
    if (memcmp(tx->u.transfer.to, tx->signer, LEDGER_KEY) == 0)
        return core_fail(err, CORE_ERR_INVALID, "to", "cannot transfer to yourself");
    core_status rc = signer_get(s, tx->u.transfer.to, &c->other, err);
    if (rc) return rc;
    if (!c->other.wallet) return core_fail(err, CORE_ERR_NOT_FOUND, "to", "recipient is not a registered wallet");
    if (tx->u.transfer.amount > (uint64_t)c->me.balance)
        return core_fail(err, CORE_ERR_INVALID, "amount", "insufficient balance (%lld available)",
                         (long long)c->me.balance);
    if (tx->u.transfer.amount > LEDGER_AMOUNT_MAX - (uint64_t)c->other.balance)
        return core_fail(err, CORE_ERR_INVALID, "amount", "recipient balance would overflow");
    return CORE_OK;
}

static core_status check_redeem(ledger_state *s, tx_ctx *c, core_error *err) {
    (void)s;
    if (c->tx->u.redeem.amount > (uint64_t)c->me.balance)
        return core_fail(err, CORE_ERR_INVALID, "amount", "insufficient balance (%lld available)",
                         (long long)c->me.balance);
    return CORE_OK;
}

static core_status check_register_org(ledger_state *s, tx_ctx *c, core_error *err) {
    if (!is_admin(s, c->tx->signer))
        return core_fail(err, CORE_ERR_FORBIDDEN, "signer", "only the admin key may register organisations");
    bool found = false;
    core_status rc = exists(s, Q_ORG_GET, c->tx->u.org.org, LEDGER_KEY, &found, err);
    if (rc) return rc;
    if (found) return core_fail(err, CORE_ERR_CONFLICT, "org", "organisation is already registered");
    return CORE_OK;
}

static core_status check_release(ledger_state *s, tx_ctx *c, core_error *err) {
    if (!is_node(s, c->tx->signer))
        return core_fail(err, CORE_ERR_FORBIDDEN, "signer", "only a node key may record releases");
    bool found = false;
    core_status rc = exists(s, Q_ORG_GET, c->tx->u.release.org, LEDGER_KEY, &found, err);
    if (rc) return rc;
    if (!found) return core_fail(err, CORE_ERR_NOT_FOUND, "org", "organisation is not registered");
    return CORE_OK;
}

static core_status check_review_request(ledger_state *s, tx_ctx *c, core_error *err) {
    const ledger_tx *tx = c->tx;
    bool found = false;
    core_status rc = exists(s, Q_ORG_GET, tx->u.review.org, LEDGER_KEY, &found, err);
    if (rc) return rc;
    if (!found) return core_fail(err, CORE_ERR_NOT_FOUND, "org", "organisation is not registered");
    if ((rc = exists(s, Q_COMMIT_GET, tx->u.review.commitment, LEDGER_HASH, &found, err))) return rc;
    if (found) return core_fail(err, CORE_ERR_CONFLICT, "commitment", "this case commitment is already on the ledger");
    if (tx->u.review.price > (uint64_t)c->me.balance)
        return core_fail(err, CORE_ERR_INVALID, "price", "insufficient balance (%lld available)",
                         (long long)c->me.balance);
    return CORE_OK;
}

/* Settle and refund: a node closes an open escrow, paying the organisation
 * (settle) or the person who asked (refund). */
static core_status check_review_close(ledger_state *s, tx_ctx *c, core_error *err) {
    const ledger_tx *tx = c->tx;
    const bool settle = tx->kind == LEDGER_TX_REVIEW_SETTLE;
    if (!is_node(s, tx->signer))
        return core_fail(err, CORE_ERR_FORBIDDEN, "signer", "only a node key may %s a review escrow",
                         settle ? "settle" : "refund");
    sqlite3_stmt *q = s->q[Q_ESCROW_GET];
    sqlite3_bind_blob(q, 1, tx->u.review_close.request, LEDGER_HASH, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    bool found = false;
    int outcome = 0;
    if (rc == SQLITE_ROW && sqlite3_column_bytes(q, 0) == LEDGER_KEY && sqlite3_column_bytes(q, 1) == LEDGER_KEY) {
        found = true;
        memcpy(c->payee, sqlite3_column_blob(q, settle ? 1 : 0), LEDGER_KEY);
        c->escrow_amount = (uint64_t)sqlite3_column_int64(q, 2);
        outcome = sqlite3_column_int(q, 3);
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_fail(s, err);
    if (!found) return core_fail(err, CORE_ERR_NOT_FOUND, "request", "no such review request");
    if (outcome != 0)
        return core_fail(err, CORE_ERR_CONFLICT, "request", "the escrow was already %s",
                         outcome == 1 ? "settled" : "refunded");
    c->payee_is_me = memcmp(c->payee, tx->signer, LEDGER_KEY) == 0;
    signer_row *to = &c->me;
    if (!c->payee_is_me) {
        core_status st = signer_get(s, c->payee, &c->other, err);
        if (st) return st;
        to = &c->other;
    }
    /* Cannot happen while minted ≤ LEDGER_AMOUNT_MAX bounds balances and
     * escrows together, but an overflow must never be written. */
    if (c->escrow_amount > LEDGER_AMOUNT_MAX - (uint64_t)to->balance)
        return core_fail(err, CORE_ERR_INVALID, "request", "recipient balance would overflow");
    return CORE_OK;
}

/* ---- data requests (issue 14) ----
 *
 * An organisation holds no key on this server, so a node signs its credit,
 * its escrow and every payment from it; what the node may do is still
 * bounded here: credit only a registered organisation (a mint, counted in
 * the supply), escrow only what the organisation holds, pay only the owner
 * of an active research or surveillance consent to that same organisation,
 * once per (request, wallet), only before the closing time, and return the
 * remainder only to the organisation. */

static core_status check_org_registered(ledger_state *s, const uint8_t org[LEDGER_KEY], core_error *err) {
    bool found = false;
    core_status rc = exists(s, Q_ORG_GET, org, LEDGER_KEY, &found, err);
    if (rc) return rc;
    if (!found) return core_fail(err, CORE_ERR_NOT_FOUND, "org", "organisation is not registered");
    return CORE_OK;
}

static core_status check_credit(ledger_state *s, tx_ctx *c, core_error *err) {
    const ledger_tx *tx = c->tx;
    if (!is_node(s, tx->signer)) return core_fail(err, CORE_ERR_FORBIDDEN, "signer", "only a node key may credit");
    if (memcmp(tx->signer, tx->u.credit.org, LEDGER_KEY) == 0) /* two rows in the effect */
        return core_fail(err, CORE_ERR_FORBIDDEN, "org", "a node cannot credit itself");
    core_status rc = check_org_registered(s, tx->u.credit.org, err);
    if (!rc) rc = signer_get(s, tx->u.credit.org, &c->other, err);
    if (rc) return rc;
    if (tx->u.credit.amount > LEDGER_AMOUNT_MAX - s->minted ||
        tx->u.credit.amount > LEDGER_AMOUNT_MAX - (uint64_t)c->other.balance)
        return core_fail(err, CORE_ERR_INVALID, "amount", "token supply limit reached");
    return CORE_OK;
}

static core_status check_market_open(ledger_state *s, tx_ctx *c, core_error *err) {
    const ledger_tx *tx = c->tx;
    if (!is_node(s, tx->signer))
        return core_fail(err, CORE_ERR_FORBIDDEN, "signer", "only a node key may open a data request");
    if (memcmp(tx->signer, tx->u.market_open.org, LEDGER_KEY) == 0)
        return core_fail(err, CORE_ERR_FORBIDDEN, "org", "a node cannot fund a request itself");
    core_status rc = check_org_registered(s, tx->u.market_open.org, err);
    if (!rc) rc = signer_get(s, tx->u.market_open.org, &c->other, err);
    if (rc) return rc;
    bool found = false;
    if ((rc = exists(s, Q_COMMIT_GET, tx->u.market_open.terms, LEDGER_HASH, &found, err))) return rc;
    if (found) return core_fail(err, CORE_ERR_CONFLICT, "terms", "these terms are already on the ledger");
    if (tx->u.market_open.closes <= c->time_ms / 1000)
        return core_fail(err, CORE_ERR_INVALID, "closes", "the request would already be closed");
    /* The decoder bounds price ≤ 10^12 and max ≤ 10^6: no overflow. */
    uint64_t amount = tx->u.market_open.price * tx->u.market_open.max_participants;
    if (amount > (uint64_t)c->other.balance)
        return core_fail(err, CORE_ERR_INVALID, "balance", "the organisation holds %lld tokens; the request needs %llu",
                         (long long)c->other.balance, (unsigned long long)amount);
    return CORE_OK;
}

/* The request's escrow into c (m_*, payee = its organisation); NOT_FOUND
 * when there is none, CONFLICT when it is no longer open. */
static core_status market_get_open(ledger_state *s, tx_ctx *c, const uint8_t request[LEDGER_HASH], core_error *err) {
    sqlite3_stmt *q = s->q[Q_MARKET_GET];
    sqlite3_bind_blob(q, 1, request, LEDGER_HASH, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    bool found = false;
    int outcome = 0;
    uint64_t closes = 0;
    if (rc == SQLITE_ROW && sqlite3_column_bytes(q, 0) == LEDGER_KEY) {
        found = true;
        memcpy(c->payee, sqlite3_column_blob(q, 0), LEDGER_KEY);
        c->m_price = (uint64_t)sqlite3_column_int64(q, 1);
        c->m_remaining = (uint64_t)sqlite3_column_int64(q, 2);
        closes = (uint64_t)sqlite3_column_int64(q, 3);
        outcome = sqlite3_column_int(q, 4);
        c->m_paid = (uint32_t)sqlite3_column_int64(q, 5);
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_fail(s, err);
    if (!found) return core_fail(err, CORE_ERR_NOT_FOUND, "request", "no such data request");
    if (outcome != 0)
        return core_fail(err, CORE_ERR_CONFLICT, "request", "the request's escrow was already %s",
                         outcome == 1 ? "used up" : "closed");
    if (c->tx->kind == LEDGER_TX_MARKET_PAY && closes <= c->time_ms / 1000)
        return core_fail(err, CORE_ERR_CONFLICT, "request", "the request has closed");
    return CORE_OK;
}

static core_status check_market_pay(ledger_state *s, tx_ctx *c, core_error *err) {
    const ledger_tx *tx = c->tx;
    if (!is_node(s, tx->signer))
        return core_fail(err, CORE_ERR_FORBIDDEN, "signer", "only a node key may pay from a data request");
    core_status rc = market_get_open(s, c, tx->u.market_pay.request, err);
    if (rc) return rc;
    consent_row consent;
    if ((rc = consent_get(s, tx->u.market_pay.grant, &consent, err))) return rc;
    uint8_t grantee[LEDGER_KEY] = {0};
    sqlite3_stmt *q = s->q[Q_CONSENT_GRANTEE];
    sqlite3_bind_blob(q, 1, tx->u.market_pay.grant, LEDGER_HASH, SQLITE_STATIC);
    int step = sqlite3_step(q);
    if (step == SQLITE_ROW && sqlite3_column_bytes(q, 0) == LEDGER_KEY)
        memcpy(grantee, sqlite3_column_blob(q, 0), LEDGER_KEY);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    if (step != SQLITE_ROW && step != SQLITE_DONE) return db_fail(s, err);
    if (!consent_active(&consent, c->time_ms) || memcmp(grantee, c->payee, LEDGER_KEY) != 0 ||
        (consent.purpose != LEDGER_PURPOSE_RESEARCH && consent.purpose != LEDGER_PURPOSE_SURVEILLANCE))
        return core_fail(err, CORE_ERR_FORBIDDEN, "grant", "no active consent of the participant to this organisation");
    if (memcmp(consent.owner, tx->signer, LEDGER_KEY) == 0) /* two rows in the effect */
        return core_fail(err, CORE_ERR_FORBIDDEN, "grant", "a node cannot pay itself");
    if ((rc = signer_get(s, consent.owner, &c->other, err))) return rc;
    if (!c->other.wallet) return core_fail(err, CORE_ERR_NOT_FOUND, "grant", "participant is not a registered wallet");
    bool paid = false;
    q = s->q[Q_MARKET_PAID_GET];
    sqlite3_bind_blob(q, 1, tx->u.market_pay.request, LEDGER_HASH, SQLITE_STATIC);
    sqlite3_bind_blob(q, 2, consent.owner, LEDGER_KEY, SQLITE_STATIC);
    step = sqlite3_step(q);
    paid = step == SQLITE_ROW;
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    if (step != SQLITE_ROW && step != SQLITE_DONE) return db_fail(s, err);
    if (paid) return core_fail(err, CORE_ERR_CONFLICT, "participant", "this wallet was already paid for this request");
    memcpy(c->payee, consent.owner, LEDGER_KEY); /* from here on: who is paid */
    assert(c->m_remaining >= c->m_price);        /* open means at least one more payment */
    if (c->m_price > LEDGER_AMOUNT_MAX - (uint64_t)c->other.balance)
        return core_fail(err, CORE_ERR_INVALID, "grant", "recipient balance would overflow");
    return CORE_OK;
}

static core_status check_market_close(ledger_state *s, tx_ctx *c, core_error *err) {
    const ledger_tx *tx = c->tx;
    if (!is_node(s, tx->signer))
        return core_fail(err, CORE_ERR_FORBIDDEN, "signer", "only a node key may close a data request");
    core_status rc = market_get_open(s, c, tx->u.market_close.request, err);
    if (rc) return rc;
    if (memcmp(c->payee, tx->signer, LEDGER_KEY) == 0)
        return core_fail(err, CORE_ERR_FORBIDDEN, "signer", "a node cannot refund itself");
    if ((rc = signer_get(s, c->payee, &c->other, err))) return rc;
    if (c->m_remaining > LEDGER_AMOUNT_MAX - (uint64_t)c->other.balance)
        return core_fail(err, CORE_ERR_INVALID, "request", "recipient balance would overflow");
    return CORE_OK;
}

static core_status put_commitment(ledger_state *s, const uint8_t commitment[LEDGER_HASH], uint64_t seq,
                                  core_error *err) {
    sqlite3_stmt *q = s->q[Q_COMMIT_PUT];
    sqlite3_bind_blob(q, 1, commitment, LEDGER_HASH, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, (int64_t)seq);
    return step_done(s, q, err);
}

static core_status effect_params(ledger_state *s, tx_ctx *c, core_error *err) {
    s->params = *c->tx;
    s->have_params = true;
    sqlite3_stmt *q = s->q[Q_META_PUT];
    sqlite3_bind_text(q, 1, "params", -1, SQLITE_STATIC);
    sqlite3_bind_blob(q, 2, c->enc, (int)c->len, SQLITE_STATIC);
    return step_done(s, q, err);
}

static core_status effect_register_wallet(ledger_state *s, tx_ctx *c, core_error *err) {
    c->me.wallet = true;
    return posting(s, c->tx->signer, c->seq, 0, err);
}

static core_status effect_anchor(ledger_state *s, tx_ctx *c, core_error *err) {
    core_status rc = put_commitment(s, c->tx->u.anchor.commitment, c->seq, err);
    return rc ? rc : posting(s, c->tx->signer, c->seq, 0, err);
}

static core_status effect_grant(ledger_state *s, tx_ctx *c, core_error *err) {
    const ledger_tx *tx = c->tx;
    sqlite3_stmt *q = s->q[Q_CONSENT_PUT];
    sqlite3_bind_blob(q, 1, c->txid, LEDGER_HASH, SQLITE_STATIC);
    sqlite3_bind_blob(q, 2, tx->signer, LEDGER_KEY, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, tx->u.grant.scope);
    sqlite3_bind_int(q, 4, tx->u.grant.purpose);
    sqlite3_bind_blob(q, 5, tx->u.grant.grantee, LEDGER_KEY, SQLITE_STATIC);
    sqlite3_bind_int64(q, 6, (int64_t)tx->u.grant.expires);
    sqlite3_bind_int64(q, 7, (int64_t)c->height);
    core_status rc = step_done(s, q, err);
    return rc ? rc : posting(s, tx->signer, c->seq, 0, err);
}

static core_status effect_revoke(ledger_state *s, tx_ctx *c, core_error *err) {
    sqlite3_stmt *q = s->q[Q_CONSENT_REVOKE];
    sqlite3_bind_blob(q, 1, c->tx->u.revoke.grant, LEDGER_HASH, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, (int64_t)c->height);
    core_status rc = step_done(s, q, err);
    if (!rc && c->escrow_amount) { /* check_revoke: a review escrow still open */
        q = s->q[Q_ESCROW_CLOSE];
        sqlite3_bind_blob(q, 1, c->tx->u.revoke.grant, LEDGER_HASH, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, (int64_t)c->height);
        sqlite3_bind_int(q, 3, 2);
        rc = step_done(s, q, err);
        assert(rc || sqlite3_changes(s->db) == 1);
        c->me.balance += (int64_t)c->escrow_amount; /* written with the nonce by apply_effects */
    }
    return rc ? rc : posting(s, c->tx->signer, c->seq, (int64_t)c->escrow_amount, err);
}

static core_status effect_contribute(ledger_state *s, tx_ctx *c, core_error *err) {
    const ledger_tx *tx = c->tx;
    uint64_t reward = tx->u.contribute.reward;
    /* the contributor's row and the signer's are written separately */
    assert(memcmp(tx->signer, tx->u.contribute.contributor, LEDGER_KEY) != 0);
    /* check_contribute bounded both sums by LEDGER_AMOUNT_MAX */
    assert(reward <= LEDGER_AMOUNT_MAX - s->minted && reward <= LEDGER_AMOUNT_MAX - (uint64_t)c->other.balance);
    c->other.balance += (int64_t)reward;
    s->minted += reward;
    core_status rc = put_commitment(s, tx->u.contribute.commitment, c->seq, err);
    if (!rc) rc = signer_put(s, tx->u.contribute.contributor, &c->other, err);
    if (!rc) rc = posting(s, tx->u.contribute.contributor, c->seq, (int64_t)reward, err);
    return rc;
}

static core_status effect_transfer(ledger_state *s, tx_ctx *c, core_error *err) {
    const ledger_tx *tx = c->tx;
    int64_t amount = (int64_t)tx->u.transfer.amount;
    assert(memcmp(tx->u.transfer.to, tx->signer, LEDGER_KEY) != 0); /* two rows, as for contribute */
    c->me.balance -= amount;
    c->other.balance += amount;
    assert(c->me.balance >= 0 && c->other.balance >= 0); /* check_transfer: covered, no overflow */
    core_status rc = signer_put(s, tx->u.transfer.to, &c->other, err);
    if (!rc) rc = posting(s, tx->signer, c->seq, -amount, err);
    if (!rc) rc = posting(s, tx->u.transfer.to, c->seq, amount, err);
    return rc;
}

static core_status effect_redeem(ledger_state *s, tx_ctx *c, core_error *err) {
    uint64_t amount = c->tx->u.redeem.amount;
    c->me.balance -= (int64_t)amount;
    assert(c->me.balance >= 0); /* check_redeem: covered */
    s->burned += amount;
    return posting(s, c->tx->signer, c->seq, -(int64_t)amount, err);
}

static core_status effect_register_org(ledger_state *s, tx_ctx *c, core_error *err) {
    sqlite3_stmt *q = s->q[Q_ORG_PUT];
    sqlite3_bind_blob(q, 1, c->tx->u.org.org, LEDGER_KEY, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, c->tx->u.org.name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, (int64_t)c->height);
    return step_done(s, q, err);
}

static core_status effect_release(ledger_state *s, tx_ctx *c, core_error *err) {
    (void)s, (void)c, (void)err;
    return CORE_OK; /* the tx row is the record */
}

/* The price leaves the signer's balance for the escrow; the case commitment
 * is used up, like an anchor's. */
static core_status effect_review_request(ledger_state *s, tx_ctx *c, core_error *err) {
    const ledger_tx *tx = c->tx;
    uint64_t price = tx->u.review.price;
    c->me.balance -= (int64_t)price;
    assert(c->me.balance >= 0); /* check_review_request: covered */
    core_status rc = put_commitment(s, tx->u.review.commitment, c->seq, err);
    if (!rc) {
        sqlite3_stmt *q = s->q[Q_ESCROW_PUT];
        sqlite3_bind_blob(q, 1, c->txid, LEDGER_HASH, SQLITE_STATIC);
        sqlite3_bind_blob(q, 2, tx->signer, LEDGER_KEY, SQLITE_STATIC);
        sqlite3_bind_blob(q, 3, tx->u.review.org, LEDGER_KEY, SQLITE_STATIC);
        sqlite3_bind_blob(q, 4, tx->u.review.commitment, LEDGER_HASH, SQLITE_STATIC);
        sqlite3_bind_int64(q, 5, (int64_t)price);
        sqlite3_bind_int64(q, 6, (int64_t)c->height);
        rc = step_done(s, q, err);
    }
    if (!rc) { /* the case-scoped consent (LEDGER_PURPOSE_REVIEW), keyed like the escrow */
        sqlite3_stmt *q = s->q[Q_CONSENT_PUT];
        sqlite3_bind_blob(q, 1, c->txid, LEDGER_HASH, SQLITE_STATIC);
        sqlite3_bind_blob(q, 2, tx->signer, LEDGER_KEY, SQLITE_STATIC);
        sqlite3_bind_int64(q, 3, 1u << LEDGER_CAT_SCREENING);
        sqlite3_bind_int(q, 4, LEDGER_PURPOSE_REVIEW);
        sqlite3_bind_blob(q, 5, tx->u.review.org, LEDGER_KEY, SQLITE_STATIC);
        sqlite3_bind_int64(q, 6, INT64_MAX);
        sqlite3_bind_int64(q, 7, (int64_t)c->height);
        rc = step_done(s, q, err);
    }
    if (!rc) rc = posting(s, tx->signer, c->seq, -(int64_t)price, err);
    return rc;
}

/* The escrow moves, whole, to the organisation's key (settle) or back to the
 * person (refund). An organisation's key holds a balance in its signers row
 * exactly as a wallet does; to spend it, the key registers as a wallet. */
static core_status effect_review_close(ledger_state *s, tx_ctx *c, core_error *err) {
    const ledger_tx *tx = c->tx;
    const int64_t amount = (int64_t)c->escrow_amount;
    sqlite3_stmt *q = s->q[Q_ESCROW_CLOSE];
    sqlite3_bind_blob(q, 1, tx->u.review_close.request, LEDGER_HASH, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, (int64_t)c->height);
    sqlite3_bind_int(q, 3, tx->kind == LEDGER_TX_REVIEW_SETTLE ? 1 : 2);
    core_status rc = step_done(s, q, err);
    /* check_review_close saw it open, in this same transaction */
    assert(rc || sqlite3_changes(s->db) == 1);
    if (rc) return rc;
    if (tx->kind == LEDGER_TX_REVIEW_REFUND) { /* the case is gone: its consent ends with it */
        q = s->q[Q_CONSENT_END];
        sqlite3_bind_blob(q, 1, tx->u.review_close.request, LEDGER_HASH, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, (int64_t)c->height);
        if ((rc = step_done(s, q, err))) return rc;
    }
    if (c->payee_is_me) {
        c->me.balance += amount; /* written with the nonce by apply_effects */
    } else {
        c->other.balance += amount;
        rc = signer_put(s, c->payee, &c->other, err);
    }
    if (!rc) rc = posting(s, c->payee, c->seq, amount, err);
    return rc;
}

static core_status effect_credit(ledger_state *s, tx_ctx *c, core_error *err) {
    const ledger_tx *tx = c->tx;
    uint64_t amount = tx->u.credit.amount;
    assert(amount <= LEDGER_AMOUNT_MAX - s->minted); /* check_credit */
    c->other.balance += (int64_t)amount;
    s->minted += amount;
    core_status rc = signer_put(s, tx->u.credit.org, &c->other, err);
    if (!rc) rc = posting(s, tx->u.credit.org, c->seq, (int64_t)amount, err);
    return rc;
}

static core_status effect_market_open(ledger_state *s, tx_ctx *c, core_error *err) {
    const ledger_tx *tx = c->tx;
    int64_t amount = (int64_t)(tx->u.market_open.price * tx->u.market_open.max_participants);
    c->other.balance -= amount;
    assert(c->other.balance >= 0); /* check_market_open: covered */
    core_status rc = put_commitment(s, tx->u.market_open.terms, c->seq, err);
    if (!rc) {
        sqlite3_stmt *q = s->q[Q_MARKET_PUT];
        sqlite3_bind_blob(q, 1, c->txid, LEDGER_HASH, SQLITE_STATIC);
        sqlite3_bind_blob(q, 2, tx->u.market_open.org, LEDGER_KEY, SQLITE_STATIC);
        sqlite3_bind_blob(q, 3, tx->u.market_open.terms, LEDGER_HASH, SQLITE_STATIC);
        sqlite3_bind_int64(q, 4, (int64_t)tx->u.market_open.price);
        sqlite3_bind_int64(q, 5, (int64_t)tx->u.market_open.max_participants);
        sqlite3_bind_int64(q, 6, amount);
        sqlite3_bind_int64(q, 7, (int64_t)tx->u.market_open.closes);
        sqlite3_bind_int64(q, 8, (int64_t)c->height);
        rc = step_done(s, q, err);
    }
    if (!rc) rc = signer_put(s, tx->u.market_open.org, &c->other, err);
    if (!rc) rc = posting(s, tx->u.market_open.org, c->seq, -amount, err);
    return rc;
}

/* Write the escrow row after a payment or a close. */
static core_status market_update(ledger_state *s, tx_ctx *c, const uint8_t request[LEDGER_HASH], int outcome,
                                 core_error *err) {
    sqlite3_stmt *q = s->q[Q_MARKET_UPDATE];
    sqlite3_bind_blob(q, 1, request, LEDGER_HASH, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, c->m_paid);
    sqlite3_bind_int64(q, 3, (int64_t)c->m_remaining);
    sqlite3_bind_int64(q, 4, outcome ? (int64_t)c->height : 0);
    sqlite3_bind_int(q, 5, outcome);
    core_status rc = step_done(s, q, err);
    assert(rc || sqlite3_changes(s->db) == 1); /* the check saw it open, in this same transaction */
    return rc;
}

/* One price from the escrow to the participant; the last one empties it,
 * which closes the request (nothing is left to return). */
static core_status effect_market_pay(ledger_state *s, tx_ctx *c, core_error *err) {
    const ledger_tx *tx = c->tx;
    c->m_remaining -= c->m_price;
    c->m_paid++;
    core_status rc = market_update(s, c, tx->u.market_pay.request, c->m_remaining == 0 ? 1 : 0, err);
    if (!rc) {
        sqlite3_stmt *q = s->q[Q_MARKET_PAID_PUT];
        sqlite3_bind_blob(q, 1, tx->u.market_pay.request, LEDGER_HASH, SQLITE_STATIC);
        sqlite3_bind_blob(q, 2, c->payee, LEDGER_KEY, SQLITE_STATIC);
        sqlite3_bind_blob(q, 3, tx->u.market_pay.grant, LEDGER_HASH, SQLITE_STATIC);
        sqlite3_bind_int64(q, 4, (int64_t)c->seq);
        rc = step_done(s, q, err);
    }
    c->other.balance += (int64_t)c->m_price;
    if (!rc) rc = signer_put(s, c->payee, &c->other, err);
    if (!rc) rc = posting(s, c->payee, c->seq, (int64_t)c->m_price, err);
    return rc;
}

static core_status effect_market_close(ledger_state *s, tx_ctx *c, core_error *err) {
    const int64_t back = (int64_t)c->m_remaining;
    c->m_remaining = 0;
    core_status rc = market_update(s, c, c->tx->u.market_close.request, 2, err);
    c->other.balance += back;
    if (!rc) rc = signer_put(s, c->payee, &c->other, err);
    if (!rc) rc = posting(s, c->payee, c->seq, back, err);
    return rc;
}

/* Per kind: whether the signer must be a registered wallet, the check and
 * the effect. Indexed by ledger_tx_kind. */
static const struct {
    bool needs_wallet;
    tx_check_fn check;
    tx_effect_fn effect;
} kinds[LEDGER_TX_KIND_MAX + 1] = {
    [LEDGER_TX_PARAMS] = {false, check_params, effect_params},
    [LEDGER_TX_REGISTER_WALLET] = {false, check_register_wallet, effect_register_wallet},
    [LEDGER_TX_ANCHOR] = {true, check_anchor, effect_anchor},
    [LEDGER_TX_GRANT] = {true, check_grant, effect_grant},
    [LEDGER_TX_REVOKE] = {true, check_revoke, effect_revoke},
    [LEDGER_TX_CONTRIBUTE] = {false, check_contribute, effect_contribute},
    [LEDGER_TX_TRANSFER] = {true, check_transfer, effect_transfer},
    [LEDGER_TX_REDEEM] = {true, check_redeem, effect_redeem},
    [LEDGER_TX_REGISTER_ORG] = {false, check_register_org, effect_register_org},
    [LEDGER_TX_RELEASE] = {false, check_release, effect_release},
    [LEDGER_TX_REVIEW_REQUEST] = {true, check_review_request, effect_review_request},
    [LEDGER_TX_REVIEW_SETTLE] = {false, check_review_close, effect_review_close},
    [LEDGER_TX_REVIEW_REFUND] = {false, check_review_close, effect_review_close},
    [LEDGER_TX_CREDIT] = {false, check_credit, effect_credit},
    [LEDGER_TX_MARKET_OPEN] = {false, check_market_open, effect_market_open},
    [LEDGER_TX_MARKET_PAY] = {false, check_market_pay, effect_market_pay},
    [LEDGER_TX_MARKET_CLOSE] = {false, check_market_close, effect_market_close},
};

/* Every rule, reads only. */
static core_status check_tx(ledger_state *s, tx_ctx *c, core_error *err) {
    const ledger_tx *tx = c->tx;
    core_status rc = signer_get(s, tx->signer, &c->me, err);
    if (rc) return rc;
    if (tx->nonce <= c->me.nonce)
        return core_fail(err, CORE_ERR_CONFLICT, "nonce", "nonce %llu was already used (last is %llu): replay rejected",
                         (unsigned long long)tx->nonce, (unsigned long long)c->me.nonce);
    if (!s->have_params && tx->kind != LEDGER_TX_PARAMS)
        return core_fail(err, CORE_ERR_INVALID, "kind", "the ledger has no genesis parameters yet");
    if (kinds[tx->kind].needs_wallet && !c->me.wallet)
        return core_fail(err, CORE_ERR_NOT_FOUND, "signer", "the signing key is not a registered wallet");
    return kinds[tx->kind].check(s, c, err);
}

/* The writes: the tx row, the kind's effect, the signer's new nonce. */
static core_status apply_effects(ledger_state *s, tx_ctx *c, core_error *err) {
    sqlite3_stmt *q = s->q[Q_TX_PUT];
    sqlite3_bind_int64(q, 1, (int64_t)c->seq);
    sqlite3_bind_blob(q, 2, c->txid, LEDGER_HASH, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, (int64_t)c->height);
    sqlite3_bind_blob(q, 4, c->enc, (int)c->len, SQLITE_STATIC);
    core_status rc = step_done(s, q, err);
    if (rc) return rc;
    c->me.nonce = c->tx->nonce;
    if ((rc = kinds[c->tx->kind].effect(s, c, err))) return rc;
    return signer_put(s, c->tx->signer, &c->me, err);
}

core_status ledger_state_apply(ledger_state *s, const ledger_tx *tx, const uint8_t *enc, size_t len,
                               const uint8_t txid[LEDGER_HASH], uint64_t seq, uint64_t height, uint64_t time_ms,
                               core_error *err) {
    /* A state whose reload failed may hold a rolled-back block's params or
     * supply: nothing may be decided on it. */
    if (!s->loaded) return core_fail(err, CORE_ERR_STORAGE, NULL, "the ledger's state could not be reloaded; restart");
    if (tx->kind < LEDGER_TX_PARAMS || tx->kind > LEDGER_TX_KIND_MAX)
        return core_fail(err, CORE_ERR_INVALID, "kind", "unknown transaction kind");
    tx_ctx c = {.tx = tx, .enc = enc, .len = len, .txid = txid, .seq = seq, .height = height, .time_ms = time_ms};
#ifndef NDEBUG
    const int changes = sqlite3_total_changes(s->db);
#endif
    core_status rc = check_tx(s, &c, err);
    assert(sqlite3_total_changes(s->db) == changes); /* checks only read */
    if (rc) return rc;
    return apply_effects(s, &c, err);
}

static core_status meta_put_u64(ledger_state *s, const char *key, uint64_t v, core_error *err) {
    sqlite3_stmt *q = s->q[Q_META_PUT];
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, (int64_t)v);
    return step_done(s, q, err);
}

core_status ledger_state_finish_block(ledger_state *s, const ledger_block *b, core_error *err) {
    if (!s->loaded) /* its supply counters would be stale */
        return core_fail(err, CORE_ERR_STORAGE, NULL, "the ledger's state could not be reloaded; restart");
    uint8_t enc[LEDGER_BLOCK_BYTES], hash[LEDGER_HASH];
    ledger_block_encode(b, enc);
    ledger_block_hash(b, hash);
    sqlite3_stmt *q = s->q[Q_BLOCK_PUT];
    sqlite3_bind_int64(q, 1, (int64_t)b->height);
    sqlite3_bind_blob(q, 2, hash, LEDGER_HASH, SQLITE_STATIC);
    sqlite3_bind_blob(q, 3, enc, LEDGER_BLOCK_BYTES, SQLITE_STATIC);
    core_status rc = step_done(s, q, err);
    if (!rc) rc = meta_put_u64(s, "minted", s->minted, err);
    if (!rc) rc = meta_put_u64(s, "burned", s->burned, err);
    return rc;
}
