/* Ledger: encoding, the state machine's rules, blocks, durability across
 * reopen, proofs, and a randomized property test against a reference model. */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "crypto/crypto.h"
#include "ledger/internal.h" /* ledger_fault_state_load */
#include "ledger/ledger.h"

typedef struct {
    uint8_t pk[LEDGER_KEY], sk[LEDGER_SECRET];
    uint64_t nonce;
} key;

#define GOLDEN_TX_HEX                                                                                  \
    "0107ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c000000000000002a"             \
    "abababababababababababababababababababababababababababababababab00000000000003e8"                 \
    "dc950fe6d8df4d018190023351bf61435a160ed09dfd41f409608e2b734adea8d12c76d6880ef6542984b21c25abbeb4" \
    "d97253bb2baa1f9764843063f961c60f"
/* = SHA-256(0x00 ‖ bytes), computed independently with Python hashlib */
#define GOLDEN_TXID "ce3f7c2e74c0daa22953a1e8a7d16fe89e55b1b860ddf726fc9f9bfdd2228ae0"

static void keygen(key *k) {
    ledger_keypair(k->pk, k->sk);
    k->nonce = 0;
}

typedef struct {
    char dir[256], path[300];
    key node, admin;
    ledger *l;
} fixture;

static ledger *reopen(fixture *f, int batch_ms) {
    ledger_options o;
    ledger_options_defaults(&o);
    o.path = f->path;
    o.batch_ms = batch_ms;
    memcpy(o.node_pk, f->node.pk, 32);
    memcpy(o.node_sk, f->node.sk, 64);
    memcpy(o.admin_pk, f->admin.pk, 32);
    memcpy(o.admin_sk, f->admin.sk, 64);
    core_error err = {0};
    ledger *l = NULL;
    if (ledger_open(&o, &l, &err)) fail_msg("ledger_open: %s", err.message);
    return l;
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    testutil_tmpdir(f->dir);
    snprintf(f->path, sizeof f->path, "%s/ledger.db", f->dir);
    keygen(&f->node);
    keygen(&f->admin);
    f->admin.nonce = 1; /* genesis used nonce 1 */
    f->l = reopen(f, 1);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    ledger_close(f->l);
    testutil_rmdir(f->dir);
    free(f);
    return 0;
}

/* Sign tx with k (next nonce) and submit; returns the receipt status. */
static core_status send(fixture *f, key *k, ledger_tx *tx, ledger_receipt *r) {
    uint8_t buf[LEDGER_TX_MAX];
    tx->nonce = ++k->nonce;
    size_t len = ledger_tx_sign(tx, k->sk, buf, sizeof buf);
    assert_true(len > 0);
    ledger_receipt tmp;
    if (!r) r = &tmp;
    return ledger_submit(f->l, buf, len, r, NULL);
}

static void register_wallet(fixture *f, key *k) {
    ledger_tx tx = {.kind = LEDGER_TX_REGISTER_WALLET};
    assert_int_equal(send(f, k, &tx, NULL), CORE_OK);
}

static void grant(fixture *f, key *k, uint32_t scope, uint64_t expires, uint8_t out[32]) {
    ledger_tx tx = {.kind = LEDGER_TX_GRANT};
    tx.u.grant.scope = scope;
    tx.u.grant.purpose = LEDGER_PURPOSE_SURVEILLANCE;
    tx.u.grant.expires = expires;
    ledger_receipt r;
    assert_int_equal(send(f, k, &tx, &r), CORE_OK);
    memcpy(out, r.txid, 32);
}

static core_status contribute(fixture *f, key *who, const uint8_t grant_id[32], int cat, uint8_t seed,
                              ledger_receipt *r) {
    ledger_tx tx = {.kind = LEDGER_TX_CONTRIBUTE};
    memcpy(tx.u.contribute.contributor, who->pk, 32);
    memcpy(tx.u.contribute.grant, grant_id, 32);
    tx.u.contribute.category = (uint8_t)cat;
    memset(tx.u.contribute.commitment, seed, 32);
    ledger_options o;
    ledger_options_defaults(&o);
    tx.u.contribute.reward = o.genesis_reward[cat];
    ledger_receipt tmp;
    return ledger_sign_submit(f->l, &tx, f->node.sk, r ? r : &tmp, NULL);
}

static int64_t balance(fixture *f, const key *k) {
    ledger_account a;
    assert_int_equal(ledger_get_account(f->l, k->pk, &a, NULL), CORE_OK);
    return a.balance;
}

/* ---- codec ---- */

static void test_codec_roundtrip_and_rejects(void **state) {
    (void)state;
    key k;
    keygen(&k);
    ledger_tx all[LEDGER_TX_KIND_MAX] = {0};
    for (int kind = LEDGER_TX_PARAMS; kind <= LEDGER_TX_KIND_MAX; kind++) {
        ledger_tx *tx = &all[kind - 1];
        tx->kind = (ledger_tx_kind)kind;
        tx->nonce = (uint64_t)kind * 1000 + 7;
        switch (tx->kind) {
        case LEDGER_TX_PARAMS:
            tx->u.params.n_nodes = 3;
            tx->u.params.reward[2] = 9;
            memset(tx->u.params.nodes[2], 3, 32);
            break;
        case LEDGER_TX_GRANT:
            tx->u.grant.scope = 5;
            tx->u.grant.purpose = 2;
            tx->u.grant.expires = 1999999999;
            break;
        case LEDGER_TX_CONTRIBUTE:
            memset(tx->u.contribute.contributor, 1, 32);
            tx->u.contribute.category = 3;
            break;
        case LEDGER_TX_TRANSFER:
            memset(tx->u.transfer.to, 2, 32);
            tx->u.transfer.amount = 42;
            break;
        case LEDGER_TX_REDEEM: tx->u.redeem.amount = 1; break;
        case LEDGER_TX_REGISTER_ORG:
            memset(tx->u.org.org, 4, 32);
            strcpy(tx->u.org.name, "Public Health Agency");
            break;
        case LEDGER_TX_RELEASE:
            tx->u.release.cells = 12;
            tx->u.release.k_min = 10;
            tx->u.release.epsilon_milli = 500;
            break;
        case LEDGER_TX_REVIEW_REQUEST:
            memset(tx->u.review.org, 5, 32);
            memset(tx->u.review.commitment, 6, 32);
            tx->u.review.price = 25;
            break;
        case LEDGER_TX_REVIEW_SETTLE:
        case LEDGER_TX_REVIEW_REFUND: memset(tx->u.review_close.request, 7, 32); break;
        case LEDGER_TX_CREDIT:
            memset(tx->u.credit.org, 8, 32);
            tx->u.credit.amount = 5000;
            strcpy(tx->u.credit.reference, "INV-2026-0042");
            break;
        case LEDGER_TX_MARKET_OPEN:
            memset(tx->u.market_open.org, 9, 32);
            memset(tx->u.market_open.terms, 10, 32);
            tx->u.market_open.price = 20;
            tx->u.market_open.max_participants = 50;
            tx->u.market_open.closes = 1999999999;
            break;
        case LEDGER_TX_MARKET_PAY:
            memset(tx->u.market_pay.request, 11, 32);
            memset(tx->u.market_pay.grant, 12, 32);
            break;
        case LEDGER_TX_MARKET_CLOSE: memset(tx->u.market_close.request, 13, 32); break;
        default: break;
        }
        uint8_t a[LEDGER_TX_MAX], b[LEDGER_TX_MAX];
        size_t n = ledger_tx_sign(tx, k.sk, a, sizeof a);
        assert_true(n > 0);
        assert_true(ledger_tx_check_signature(a, n));
        ledger_tx back;
        core_error err = {0};
        assert_int_equal(ledger_tx_decode(a, n, &back, &err), CORE_OK);
        /* Same transaction → same bytes → same id. */
        assert_int_equal(ledger_tx_encode(&back, b, sizeof b), n);
        assert_memory_equal(a, b, n);
        uint8_t id1[32], id2[32];
        ledger_tx_id(a, n, id1);
        ledger_tx_id(b, n, id2);
        assert_memory_equal(id1, id2, 32);
        /* Every truncation and every extension is refused. */
        for (size_t cut = 0; cut < n; cut++) assert_int_not_equal(ledger_tx_decode(a, cut, &back, NULL), CORE_OK);
        a[n] = 0;
        assert_int_equal(ledger_tx_decode(a, n + 1, &back, &err), CORE_ERR_INVALID);
        /* Any flipped byte breaks the signature (or the decode). */
        for (size_t i = 0; i < n; i++) {
            a[i] ^= 0x10;
            assert_true(ledger_tx_decode(a, n, &back, NULL) != CORE_OK || !ledger_tx_check_signature(a, n));
            a[i] ^= 0x10;
        }
        json_t *j = ledger_tx_to_json(&back);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "kind")), ledger_tx_kind_name(tx->kind));
        json_decref(j);
    }
    /* Out-of-range values are refused by the encoder and the decoder. */
    uint8_t buf[LEDGER_TX_MAX];
    ledger_tx bad = all[LEDGER_TX_GRANT - 1];
    bad.u.grant.scope = 1u << 7;
    assert_int_equal(ledger_tx_encode(&bad, buf, sizeof buf), 0);
    bad = all[LEDGER_TX_TRANSFER - 1];
    bad.u.transfer.amount = 0;
    assert_int_equal(ledger_tx_encode(&bad, buf, sizeof buf), 0);
    bad = all[LEDGER_TX_REGISTER_ORG - 1];
    strcpy(bad.u.org.name, " leading space");
    assert_int_equal(ledger_tx_encode(&bad, buf, sizeof buf), 0);
    bad = all[LEDGER_TX_REDEEM - 1];
    bad.nonce = 0;
    assert_int_equal(ledger_tx_encode(&bad, buf, sizeof buf), 0);
    bad = all[LEDGER_TX_REVIEW_REQUEST - 1];
    bad.u.review.price = 0;
    assert_int_equal(ledger_tx_encode(&bad, buf, sizeof buf), 0);
    bad.u.review.price = LEDGER_AMOUNT_MAX + 1;
    assert_int_equal(ledger_tx_encode(&bad, buf, sizeof buf), 0);
    bad = all[LEDGER_TX_REVIEW_REQUEST - 1];
    memset(bad.u.review.org, 0, 32);
    assert_int_equal(ledger_tx_encode(&bad, buf, sizeof buf), 0);
    bad = all[LEDGER_TX_REVIEW_REQUEST - 1];
    memset(bad.u.review.commitment, 0, 32);
    assert_int_equal(ledger_tx_encode(&bad, buf, sizeof buf), 0);
    {
        /* The decoder refuses a price past 2^63-1 written into valid bytes:
         * body = org(32) ‖ commitment(32) ‖ price(u64), after the 42-byte head. */
        ledger_tx rq = all[LEDGER_TX_REVIEW_REQUEST - 1];
        size_t rn = ledger_tx_sign(&rq, k.sk, buf, sizeof buf);
        assert_int_equal(rn, 42 + 32 + 32 + 8 + 64);
        buf[42 + 64] = 0x80;
        core_error perr = {0};
        assert_int_equal(ledger_tx_decode(buf, rn, &bad, &perr), CORE_ERR_INVALID);
        assert_string_equal(perr.field, "price");
    }
    /* Unknown version and kind. */
    size_t n = ledger_tx_sign(&all[LEDGER_TX_REDEEM - 1], k.sk, buf, sizeof buf);
    core_error err = {0};
    buf[0] = 2;
    assert_int_equal(ledger_tx_decode(buf, n, &bad, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "version");
    buf[0] = 1;
    buf[1] = 99;
    assert_int_equal(ledger_tx_decode(buf, n, &bad, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "kind");
}

/* A golden transaction: fixed key (seed 0x07…), fixed fields. Ed25519 is
 * deterministic, so its bytes and id are the same on every machine; a change
 * here means the encoding changed and every stored signature would break. */
static void test_golden_encoding(void **state) {
    (void)state;
    uint8_t seed[32], pk[32], sk[64], buf[LEDGER_TX_MAX];
    memset(seed, 7, sizeof seed);
    cs_crypto_sign_seed_keypair(seed, pk, sk);
    ledger_tx tx = {.kind = LEDGER_TX_TRANSFER, .nonce = 42, .u.transfer.amount = 1000};
    memset(tx.u.transfer.to, 0xab, 32);
    size_t n = ledger_tx_sign(&tx, sk, buf, sizeof buf);
    assert_int_equal(n, 1 + 1 + 32 + 8 + 32 + 8 + 64);
    char hex[2 * LEDGER_TX_MAX + 1], id[65];
    cs_crypto_hex(buf, n, hex);
    uint8_t txid[32];
    ledger_tx_id(buf, n, txid);
    cs_crypto_hex(txid, 32, id);
    assert_string_equal(hex, GOLDEN_TX_HEX);
    assert_string_equal(id, GOLDEN_TXID);
}

static void test_block_codec(void **state) {
    (void)state;
    key k;
    keygen(&k);
    ledger_block b = {.height = 5, .time_ms = 1700000000000ULL, .tx_count = 3, .tree_size = 20};
    memset(b.prev, 9, 32);
    memset(b.root, 8, 32);
    ledger_block_sign(&b, k.sk);
    assert_true(ledger_block_check_signature(&b));
    uint8_t enc[LEDGER_BLOCK_BYTES];
    ledger_block_encode(&b, enc);
    ledger_block back;
    assert_int_equal(ledger_block_decode(enc, sizeof enc, &back, NULL), CORE_OK);
    assert_memory_equal(&back, &b, sizeof b);
    for (size_t i = 0; i < sizeof enc; i++) {
        enc[i] ^= 1;
        assert_true(ledger_block_decode(enc, sizeof enc, &back, NULL) != CORE_OK ||
                    !ledger_block_check_signature(&back));
        enc[i] ^= 1;
    }
    assert_int_equal(ledger_block_decode(enc, sizeof enc - 1, &back, NULL), CORE_ERR_INVALID);
}

/* ---- the state machine ---- */

typedef struct {
    int total, revoked;
} consent_tally;
static void tally_consent(void *ud, const ledger_consent *c) {
    consent_tally *t = ud;
    t->total++;
    if (c->revoked_height) t->revoked++;
}

typedef struct {
    int rows;
    int64_t sum;
    uint64_t last_seq;
    bool newest_first;
} history_tally;
static void tally_history(void *ud, uint64_t seq, int64_t delta, const ledger_tx *tx, uint64_t height) {
    history_tally *t = ud;
    (void)tx;
    (void)height;
    t->newest_first = t->rows == 0 ? true : t->newest_first && seq < t->last_seq;
    t->last_seq = seq;
    t->rows++;
    t->sum += delta;
}

static void test_genesis(void **state) {
    fixture *f = *state;
    ledger_block head;
    assert_int_equal(ledger_head(f->l, &head, NULL), CORE_OK);
    assert_int_equal(head.height, 0);
    assert_int_equal(head.tree_size, 1);
    assert_memory_equal(head.proposer, f->node.pk, 32);
    assert_true(ledger_block_check_signature(&head));
    uint8_t *buf;
    size_t len;
    assert_int_equal(ledger_get_tx_at(f->l, 0, &buf, &len, NULL, NULL), CORE_OK);
    ledger_tx g;
    assert_int_equal(ledger_tx_decode(buf, len, &g, NULL), CORE_OK);
    free(buf);
    assert_int_equal(g.kind, LEDGER_TX_PARAMS);
    assert_memory_equal(g.u.params.admin, f->admin.pk, 32);
    assert_memory_equal(g.u.params.nodes[0], f->node.pk, 32);
}

static void test_rules(void **state) {
    fixture *f = *state;
    key a, b, stranger;
    keygen(&a);
    keygen(&b);
    keygen(&stranger);
    register_wallet(f, &a);
    register_wallet(f, &b);
    ledger_receipt r;

    /* Registering twice, and acting from an unregistered key. */
    ledger_tx tx = {.kind = LEDGER_TX_REGISTER_WALLET};
    assert_int_equal(send(f, &a, &tx, &r), CORE_ERR_CONFLICT);
    tx = (ledger_tx){.kind = LEDGER_TX_REDEEM, .u.redeem.amount = 1};
    assert_int_equal(send(f, &stranger, &tx, &r), CORE_ERR_NOT_FOUND);

    /* A replayed transaction is rejected: same bytes, same nonce. */
    uint8_t buf[LEDGER_TX_MAX];
    tx = (ledger_tx){.kind = LEDGER_TX_ANCHOR, .nonce = ++a.nonce};
    memset(tx.u.anchor.commitment, 0x77, 32);
    size_t len = ledger_tx_sign(&tx, a.sk, buf, sizeof buf);
    assert_int_equal(ledger_submit(f->l, buf, len, &r, NULL), CORE_OK);
    assert_int_equal(ledger_submit(f->l, buf, len, &r, NULL), CORE_ERR_CONFLICT);
    assert_string_equal(r.error.field, "nonce");
    /* The same commitment anchored again (fresh nonce) is a duplicate. */
    assert_int_equal(send(f, &a, &tx, &r), CORE_ERR_CONFLICT);
    assert_string_equal(r.error.field, "commitment");
    /* A forged signature. */
    tx.nonce = ++a.nonce;
    memset(tx.u.anchor.commitment, 0x78, 32);
    len = ledger_tx_sign(&tx, a.sk, buf, sizeof buf);
    buf[len - 1] ^= 1;
    assert_int_equal(ledger_submit(f->l, buf, len, &r, NULL), CORE_ERR_CRYPTO);

    /* Contributions need an active consent covering the category. */
    uint8_t g[32], zero[32] = {0};
    assert_int_equal(contribute(f, &a, zero, LEDGER_CAT_SCREENING, 1, &r), CORE_ERR_FORBIDDEN);
    grant(f, &a, 1u << LEDGER_CAT_SCREENING, (uint64_t)core_now() + 3600, g);
    assert_int_equal(contribute(f, &a, g, LEDGER_CAT_SYMPTOMS, 2, &r), CORE_ERR_FORBIDDEN);
    assert_int_equal(contribute(f, &a, g, LEDGER_CAT_SCREENING, 3, &r), CORE_OK);
    assert_int_equal(balance(f, &a), 10);
    assert_int_equal(contribute(f, &a, g, LEDGER_CAT_SCREENING, 3, &r), CORE_ERR_CONFLICT);  /* same datum */
    assert_int_equal(contribute(f, &b, g, LEDGER_CAT_SCREENING, 4, &r), CORE_ERR_FORBIDDEN); /* not b's consent */
    /* Only node keys record contributions; the reward must match the rule. */
    ledger_tx c = {.kind = LEDGER_TX_CONTRIBUTE};
    memcpy(c.u.contribute.contributor, a.pk, 32);
    memcpy(c.u.contribute.grant, g, 32);
    memset(c.u.contribute.commitment, 5, 32);
    c.u.contribute.reward = 10;
    assert_int_equal(send(f, &b, &c, &r), CORE_ERR_FORBIDDEN);
    c.u.contribute.reward = 11;
    assert_int_equal(ledger_sign_submit(f->l, &c, f->node.sk, &r, NULL), CORE_ERR_INVALID);
    assert_string_equal(r.error.field, "reward");

    /* Transfers and redemption: never negative, never to yourself. */
    tx = (ledger_tx){.kind = LEDGER_TX_TRANSFER, .u.transfer.amount = 11};
    memcpy(tx.u.transfer.to, b.pk, 32);
    assert_int_equal(send(f, &a, &tx, &r), CORE_ERR_INVALID);
    tx.u.transfer.amount = 4;
    assert_int_equal(send(f, &a, &tx, &r), CORE_OK);
    memcpy(tx.u.transfer.to, a.pk, 32);
    assert_int_equal(send(f, &a, &tx, &r), CORE_ERR_INVALID);
    memcpy(tx.u.transfer.to, stranger.pk, 32);
    assert_int_equal(send(f, &a, &tx, &r), CORE_ERR_NOT_FOUND);
    tx = (ledger_tx){.kind = LEDGER_TX_REDEEM, .u.redeem.amount = 3};
    assert_int_equal(send(f, &b, &tx, &r), CORE_OK);
    tx.u.redeem.amount = 2;
    assert_int_equal(send(f, &b, &tx, &r), CORE_ERR_INVALID);
    assert_int_equal(balance(f, &a), 6);
    assert_int_equal(balance(f, &b), 1);
    ledger_totals t;
    assert_int_equal(ledger_get_totals(f->l, &t, NULL), CORE_OK);
    assert_int_equal(t.minted, 10);
    assert_int_equal(t.burned, 3);

    /* Revocation: only the owner, only once; afterwards no contributions. */
    tx = (ledger_tx){.kind = LEDGER_TX_REVOKE};
    memcpy(tx.u.revoke.grant, g, 32);
    assert_int_equal(send(f, &b, &tx, &r), CORE_ERR_FORBIDDEN);
    assert_int_equal(send(f, &a, &tx, &r), CORE_OK);
    assert_int_equal(send(f, &a, &tx, &r), CORE_ERR_CONFLICT);
    assert_int_equal(contribute(f, &a, g, LEDGER_CAT_SCREENING, 9, &r), CORE_ERR_FORBIDDEN);
    /* A consent that would already be expired is refused. */
    tx = (ledger_tx){.kind = LEDGER_TX_GRANT, .u.grant = {.scope = 1, .purpose = 1, .expires = 1000}};
    assert_int_equal(send(f, &a, &tx, &r), CORE_ERR_INVALID);

    /* Organisations: admin only; grants and releases need registered ones. */
    key org;
    keygen(&org);
    tx = (ledger_tx){.kind = LEDGER_TX_GRANT,
                     .u.grant = {.scope = 3, .purpose = 2, .expires = (uint64_t)core_now() + 60}};
    memcpy(tx.u.grant.grantee, org.pk, 32);
    assert_int_equal(send(f, &a, &tx, &r), CORE_ERR_NOT_FOUND);
    ledger_tx o = {.kind = LEDGER_TX_REGISTER_ORG};
    memcpy(o.u.org.org, org.pk, 32);
    strcpy(o.u.org.name, "Regional Health Office");
    assert_int_equal(send(f, &b, &o, &r), CORE_ERR_FORBIDDEN);
    ledger_tx rel = {.kind = LEDGER_TX_RELEASE, .u.release = {.epsilon_milli = 1000, .k_min = 10, .cells = 40}};
    memcpy(rel.u.release.org, org.pk, 32);
    assert_int_equal(ledger_sign_submit(f->l, &rel, f->node.sk, &r, NULL), CORE_ERR_NOT_FOUND);
    assert_int_equal(ledger_sign_submit(f->l, &o, f->admin.sk, &r, NULL), CORE_OK);
    assert_int_equal(ledger_sign_submit(f->l, &o, f->admin.sk, &r, NULL), CORE_ERR_CONFLICT);
    assert_int_equal(send(f, &a, &tx, &r), CORE_OK);
    assert_int_equal(ledger_sign_submit(f->l, &rel, f->node.sk, &r, NULL), CORE_OK);
    assert_int_equal(send(f, &a, &rel, &r), CORE_ERR_FORBIDDEN); /* wallets cannot record releases */

    /* Params can change only by the admin. */
    ledger_tx p = {.kind = LEDGER_TX_PARAMS};
    memcpy(p.u.params.admin, b.pk, 32);
    p.u.params.n_nodes = 1;
    memcpy(p.u.params.nodes[0], b.pk, 32);
    assert_int_equal(send(f, &b, &p, &r), CORE_ERR_FORBIDDEN);

    /* Consents listing: a's revoked surveillance grant and active org grant. */
    consent_tally ct = {0};
    assert_int_equal(ledger_list_consents(f->l, a.pk, tally_consent, &ct, NULL), CORE_OK);
    assert_int_equal(ct.total, 2);
    assert_int_equal(ct.revoked, 1);
    /* History: a's postings, newest first, deltas summing to the balance. */
    history_tally ht = {0};
    assert_int_equal(ledger_history(f->l, a.pk, 100, tally_history, &ht, NULL), CORE_OK);
    assert_int_equal(ht.sum, balance(f, &a));
    assert_true(ht.newest_first);
    assert_true(ht.rows >= 5);
}

/* ---- review escrows ---- */

/* Supply is conserved: minted − burned equals every balance in the file plus
 * the open escrows, the sums read straight from ledger.db by SQL. Returns the
 * open escrow total so callers can check it too. */
static int64_t check_supply(fixture *f) {
    ledger_totals t;
    assert_int_equal(ledger_get_totals(f->l, &t, NULL), CORE_OK);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT (SELECT coalesce(sum(balance), 0) FROM signers),"
                                        " (SELECT coalesce(sum(amount), 0) FROM escrows WHERE closed_height = 0)",
                                        -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t balances = sqlite3_column_int64(q, 0), open = sqlite3_column_int64(q, 1);
    sqlite3_finalize(q);
    sqlite3_close(db);
    assert_int_equal(t.escrowed, (uint64_t)open);
    assert_int_equal(t.minted - t.burned, (uint64_t)(balances + open));
    return open;
}

static core_status review_request(fixture *f, key *k, const key *org, uint8_t seed, uint64_t price, ledger_receipt *r) {
    ledger_tx tx = {.kind = LEDGER_TX_REVIEW_REQUEST, .u.review.price = price};
    memcpy(tx.u.review.org, org->pk, 32);
    memset(tx.u.review.commitment, seed, 32);
    return send(f, k, &tx, r);
}

/* Settle or refund the escrow of request, signed by sk. */
static core_status review_close(fixture *f, ledger_tx_kind kind, const uint8_t request[32], const uint8_t *sk,
                                core_error *err) {
    ledger_tx tx = {.kind = kind};
    memcpy(tx.u.review_close.request, request, 32);
    ledger_receipt r;
    return ledger_sign_submit(f->l, &tx, sk, &r, err);
}

static void expect_escrow(fixture *f, const uint8_t request[32], ledger_escrow_state want, uint64_t amount) {
    ledger_escrow e;
    assert_int_equal(ledger_get_escrow(f->l, request, &e, NULL), CORE_OK);
    assert_int_equal(e.state, want);
    assert_int_equal(e.amount, amount);
    assert_true(want == LEDGER_ESCROW_OPEN ? e.closed_height == 0 : e.closed_height >= e.opened_height);
}

/* What the wallet page shows as held: payer's open escrows only. */
static uint64_t escrowed_by(fixture *f, const key *k) {
    uint64_t n = 99;
    assert_int_equal(ledger_escrowed_by(f->l, k->pk, &n, NULL), CORE_OK);
    return n;
}

static void test_review_escrow(void **state) {
    fixture *f = *state;
    key a, b, org, stranger;
    keygen(&a);
    keygen(&b);
    keygen(&org);
    keygen(&stranger);
    register_wallet(f, &a);
    uint8_t g[32];
    grant(f, &a, LEDGER_SCOPE_ALL, (uint64_t)core_now() + 3600, g);
    for (int i = 0; i < 3; i++)
        assert_int_equal(contribute(f, &a, g, LEDGER_CAT_SCREENING, (uint8_t)(0x30 + i), NULL), CORE_OK);
    assert_int_equal(balance(f, &a), 30);
    ledger_tx o = {.kind = LEDGER_TX_REGISTER_ORG};
    memcpy(o.u.org.org, org.pk, 32);
    strcpy(o.u.org.name, "Teledermatology Clinic");
    ledger_receipt r;
    assert_int_equal(ledger_sign_submit(f->l, &o, f->admin.sk, &r, NULL), CORE_OK);
    assert_int_equal(check_supply(f), 0);

    /* Refusals of a request, each leaving balance and escrow as they were. */
    core_error err = {0};
    assert_int_equal(review_request(f, &a, &org, 0xc1, 31, &r), CORE_ERR_INVALID); /* short balance */
    assert_string_equal(r.error.field, "price");
    assert_int_equal(review_request(f, &a, &stranger, 0xc1, 5, &r), CORE_ERR_NOT_FOUND); /* unknown org */
    assert_string_equal(r.error.field, "org");
    assert_int_equal(review_request(f, &b, &org, 0xc1, 5, &r), CORE_ERR_NOT_FOUND); /* not a wallet */
    assert_string_equal(r.error.field, "signer");
    assert_int_equal(balance(f, &a), 30);
    assert_int_equal(check_supply(f), 0);

    /* Request 1: 12 tokens leave the balance for the escrow. */
    uint8_t req1[32], req2[32], req3[32];
    assert_int_equal(review_request(f, &a, &org, 0xc1, 12, &r), CORE_OK);
    memcpy(req1, r.txid, 32);
    assert_int_equal(balance(f, &a), 18);
    expect_escrow(f, req1, LEDGER_ESCROW_OPEN, 12);
    assert_int_equal(check_supply(f), 12);
    assert_int_equal(escrowed_by(f, &a), 12);
    assert_int_equal(escrowed_by(f, &org), 0);      /* the payee holds nothing yet */
    assert_int_equal(escrowed_by(f, &stranger), 0); /* a key the ledger never saw */
    /* The case commitment is used up: by this request, and by an anchor. */
    assert_int_equal(review_request(f, &a, &org, 0xc1, 1, &r), CORE_ERR_CONFLICT);
    assert_string_equal(r.error.field, "commitment");
    ledger_tx an = {.kind = LEDGER_TX_ANCHOR};
    memset(an.u.anchor.commitment, 0xc9, 32);
    assert_int_equal(send(f, &a, &an, &r), CORE_OK);
    assert_int_equal(review_request(f, &a, &org, 0xc9, 1, &r), CORE_ERR_CONFLICT);
    uint8_t where[32];
    uint8_t c1[32];
    memset(c1, 0xc1, 32);
    assert_int_equal(ledger_find_commitment(f->l, c1, where, NULL), CORE_OK);
    assert_memory_equal(where, req1, 32);
    assert_int_equal(check_supply(f), 12);

    /* Only a node key closes an escrow: not the person, the admin or the org. */
    assert_int_equal(review_close(f, LEDGER_TX_REVIEW_SETTLE, req1, a.sk, &err), CORE_ERR_FORBIDDEN);
    assert_string_equal(err.field, "signer");
    assert_int_equal(review_close(f, LEDGER_TX_REVIEW_SETTLE, req1, f->admin.sk, &err), CORE_ERR_FORBIDDEN);
    assert_int_equal(review_close(f, LEDGER_TX_REVIEW_REFUND, req1, org.sk, &err), CORE_ERR_FORBIDDEN);
    uint8_t nothing[32];
    memset(nothing, 0x5a, 32);
    assert_int_equal(review_close(f, LEDGER_TX_REVIEW_SETTLE, nothing, f->node.sk, &err), CORE_ERR_NOT_FOUND);
    assert_int_equal(ledger_get_escrow(f->l, nothing, &(ledger_escrow){0}, NULL), CORE_ERR_NOT_FOUND);
    expect_escrow(f, req1, LEDGER_ESCROW_OPEN, 12);

    /* Settle: the organisation's key is credited, once. */
    assert_int_equal(review_close(f, LEDGER_TX_REVIEW_SETTLE, req1, f->node.sk, &err), CORE_OK);
    expect_escrow(f, req1, LEDGER_ESCROW_SETTLED, 12);
    assert_int_equal(escrowed_by(f, &a), 0);
    ledger_account acc;
    assert_int_equal(ledger_get_account(f->l, org.pk, &acc, NULL), CORE_OK);
    assert_int_equal(acc.balance, 12);
    assert_false(acc.wallet);
    assert_int_equal(balance(f, &a), 18);
    assert_int_equal(check_supply(f), 0);
    assert_int_equal(review_close(f, LEDGER_TX_REVIEW_SETTLE, req1, f->node.sk, &err), CORE_ERR_CONFLICT);
    assert_int_equal(review_close(f, LEDGER_TX_REVIEW_REFUND, req1, f->node.sk, &err), CORE_ERR_CONFLICT);
    assert_int_equal(balance(f, &a), 18);
    assert_int_equal(ledger_get_account(f->l, org.pk, &acc, NULL), CORE_OK);
    assert_int_equal(acc.balance, 12);
    assert_int_equal(check_supply(f), 0);

    /* Refund: the person gets the escrow back, once; no settling after. */
    assert_int_equal(review_request(f, &a, &org, 0xc2, 18, &r), CORE_OK); /* the whole balance */
    memcpy(req2, r.txid, 32);
    assert_int_equal(balance(f, &a), 0);
    assert_int_equal(check_supply(f), 18);
    assert_int_equal(escrowed_by(f, &a), 18);
    assert_int_equal(review_close(f, LEDGER_TX_REVIEW_REFUND, req2, f->node.sk, &err), CORE_OK);
    expect_escrow(f, req2, LEDGER_ESCROW_REFUNDED, 18);
    assert_int_equal(balance(f, &a), 18);
    assert_int_equal(check_supply(f), 0);
    assert_int_equal(escrowed_by(f, &a), 0);
    assert_int_equal(review_close(f, LEDGER_TX_REVIEW_REFUND, req2, f->node.sk, &err), CORE_ERR_CONFLICT);
    assert_int_equal(review_close(f, LEDGER_TX_REVIEW_SETTLE, req2, f->node.sk, &err), CORE_ERR_CONFLICT);
    assert_int_equal(balance(f, &a), 18);
    /* A refunded case's commitment stays used: a new request needs a new salt. */
    assert_int_equal(review_request(f, &a, &org, 0xc2, 1, &r), CORE_ERR_CONFLICT);

    /* The organisation spends what it was paid once its key is a wallet. */
    register_wallet(f, &org);
    ledger_tx tr = {.kind = LEDGER_TX_TRANSFER, .u.transfer.amount = 2};
    memcpy(tr.u.transfer.to, a.pk, 32);
    assert_int_equal(send(f, &org, &tr, &r), CORE_OK);
    assert_int_equal(balance(f, &a), 20);

    /* Request 3 stays open through verify and a reopen. */
    assert_int_equal(review_request(f, &a, &org, 0xc3, 7, &r), CORE_OK);
    memcpy(req3, r.txid, 32);
    assert_int_equal(check_supply(f), 7);
    assert_int_equal(escrowed_by(f, &a), 7);
    /* History: request, refund and transfer postings sum to the balance. */
    history_tally ht = {0};
    assert_int_equal(ledger_history(f->l, a.pk, 100, tally_history, &ht, NULL), CORE_OK);
    assert_int_equal(ht.sum, balance(f, &a));
    assert_int_equal(ht.sum, 13);
    history_tally oh = {0};
    assert_int_equal(ledger_history(f->l, org.pk, 100, tally_history, &oh, NULL), CORE_OK);
    assert_int_equal(oh.sum, 10);

    ledger_close(f->l);
    f->l = reopen(f, 1);
    expect_escrow(f, req3, LEDGER_ESCROW_OPEN, 7);
    expect_escrow(f, req1, LEDGER_ESCROW_SETTLED, 12);
    assert_int_equal(check_supply(f), 7);
    ledger_verify_report rep;
    if (ledger_verify_file(f->path, 2, &rep, &err)) fail_msg("verify: %s", err.message);
    /* ... and with request 3 closed too. */
    assert_int_equal(review_close(f, LEDGER_TX_REVIEW_REFUND, req3, f->node.sk, &err), CORE_OK);
    assert_int_equal(check_supply(f), 0);
    if (ledger_verify_file(f->path, 2, &rep, &err)) fail_msg("verify: %s", err.message);
}

/* A review request is also a consent scoped to its case and organisation
 * (purpose clinician_review, keyed by the request's txid). The person
 * revoking it while the escrow is open is refunded by that same
 * transaction; a node refund ends it; a settled one stays until revoked;
 * it never admits a contribution; and a replay agrees. */
static void test_review_consent(void **state) {
    fixture *f = *state;
    key a, b, org;
    keygen(&a);
    keygen(&b);
    keygen(&org);
    register_wallet(f, &a);
    register_wallet(f, &b);
    uint8_t g[32];
    grant(f, &a, LEDGER_SCOPE_ALL, (uint64_t)core_now() + 3600, g);
    for (int i = 0; i < 3; i++)
        assert_int_equal(contribute(f, &a, g, LEDGER_CAT_SCREENING, (uint8_t)(0x70 + i), NULL), CORE_OK);
    ledger_tx o = {.kind = LEDGER_TX_REGISTER_ORG};
    memcpy(o.u.org.org, org.pk, 32);
    strcpy(o.u.org.name, "Consent Clinic");
    ledger_receipt r;
    assert_int_equal(ledger_sign_submit(f->l, &o, f->admin.sk, &r, NULL), CORE_OK);

    uint8_t req1[32], req2[32], req3[32], owner[32];
    assert_int_equal(review_request(f, &a, &org, 0xd1, 5, &r), CORE_OK);
    memcpy(req1, r.txid, 32);
    uint64_t h1 = r.height;
    ledger_consent cn;
    core_error err = {0};
    assert_int_equal(ledger_get_consent(f->l, req1, &cn, owner, &err), CORE_OK);
    assert_memory_equal(owner, a.pk, 32);
    assert_memory_equal(cn.grantee, org.pk, 32);
    assert_int_equal(cn.purpose, LEDGER_PURPOSE_REVIEW);
    assert_int_equal(cn.scope, 1u << LEDGER_CAT_SCREENING);
    assert_int_equal(cn.granted_height, h1);
    assert_int_equal(cn.revoked_height, 0);
    assert_string_equal(ledger_purpose_name(LEDGER_PURPOSE_REVIEW), "clinician_review");
    /* ... and only a request makes one: a GRANT cannot name that purpose. */
    ledger_tx bad = {.kind = LEDGER_TX_GRANT, .nonce = 99};
    bad.u.grant.scope = 1;
    bad.u.grant.purpose = LEDGER_PURPOSE_REVIEW;
    bad.u.grant.expires = (uint64_t)core_now() + 3600;
    memcpy(bad.u.grant.grantee, org.pk, 32);
    uint8_t buf[LEDGER_TX_MAX];
    assert_int_equal(ledger_tx_sign(&bad, a.sk, buf, sizeof buf), 0);

    /* It does not let a contribution in. */
    assert_int_equal(contribute(f, &a, req1, LEDGER_CAT_SCREENING, 0x7f, &r), CORE_ERR_FORBIDDEN);
    /* Only the person revokes it; revoking while open refunds at once. */
    ledger_tx rv = {.kind = LEDGER_TX_REVOKE};
    memcpy(rv.u.revoke.grant, req1, 32);
    assert_int_equal(send(f, &b, &rv, &r), CORE_ERR_FORBIDDEN);
    assert_int_equal(balance(f, &a), 25);
    assert_int_equal(check_supply(f), 5);
    assert_int_equal(send(f, &a, &rv, &r), CORE_OK);
    assert_int_equal(balance(f, &a), 30);
    expect_escrow(f, req1, LEDGER_ESCROW_REFUNDED, 5);
    assert_int_equal(check_supply(f), 0);
    assert_int_equal(ledger_get_consent(f->l, req1, &cn, NULL, &err), CORE_OK);
    assert_int_equal(cn.revoked_height, r.height);
    /* The organisation cannot be paid for a case taken back. */
    assert_int_equal(review_close(f, LEDGER_TX_REVIEW_SETTLE, req1, f->node.sk, &err), CORE_ERR_CONFLICT);
    assert_int_equal(send(f, &a, &rv, &r), CORE_ERR_CONFLICT); /* once */

    /* A node refund (withdrawn, returned, expired) ends the consent. */
    assert_int_equal(review_request(f, &a, &org, 0xd2, 4, &r), CORE_OK);
    memcpy(req2, r.txid, 32);
    assert_int_equal(review_close(f, LEDGER_TX_REVIEW_REFUND, req2, f->node.sk, &err), CORE_OK);
    assert_int_equal(ledger_get_consent(f->l, req2, &cn, NULL, &err), CORE_OK);
    assert_true(cn.revoked_height > 0);
    memcpy(rv.u.revoke.grant, req2, 32);
    assert_int_equal(send(f, &a, &rv, &r), CORE_ERR_CONFLICT);

    /* Settled: the consent stands until revoked; revoking then moves no token. */
    assert_int_equal(review_request(f, &a, &org, 0xd3, 6, &r), CORE_OK);
    memcpy(req3, r.txid, 32);
    assert_int_equal(review_close(f, LEDGER_TX_REVIEW_SETTLE, req3, f->node.sk, &err), CORE_OK);
    assert_int_equal(ledger_get_consent(f->l, req3, &cn, NULL, &err), CORE_OK);
    assert_int_equal(cn.revoked_height, 0);
    memcpy(rv.u.revoke.grant, req3, 32);
    assert_int_equal(send(f, &a, &rv, &r), CORE_OK);
    assert_int_equal(balance(f, &a), 24);
    assert_int_equal(balance(f, &org), 6);
    assert_int_equal(check_supply(f), 0);
    /* History sums to the balance: the revoke's refund is a posting. */
    history_tally ht = {0};
    assert_int_equal(ledger_history(f->l, a.pk, 100, tally_history, &ht, NULL), CORE_OK);
    assert_int_equal(ht.sum, 24);
    ledger_verify_report rep;
    if (ledger_verify_file(f->path, 2, &rep, &err)) fail_msg("verify: %s", err.message);
}

/* A ledger.db at schema 2 holds review escrows but not the consents a
 * request now makes: opening it derives them (migration 3), as a replay
 * does, so verify agrees; a refunded escrow's consent is ended. */
static void test_review_consent_migration(void **state) {
    fixture *f = *state;
    key a, org;
    keygen(&a);
    keygen(&org);
    register_wallet(f, &a);
    uint8_t g[32];
    grant(f, &a, LEDGER_SCOPE_ALL, (uint64_t)core_now() + 3600, g);
    assert_int_equal(contribute(f, &a, g, LEDGER_CAT_SCREENING, 0x81, NULL), CORE_OK);
    ledger_tx o = {.kind = LEDGER_TX_REGISTER_ORG};
    memcpy(o.u.org.org, org.pk, 32);
    strcpy(o.u.org.name, "Old Clinic");
    ledger_receipt r;
    assert_int_equal(ledger_sign_submit(f->l, &o, f->admin.sk, &r, NULL), CORE_OK);
    uint8_t open_req[32], refunded[32];
    assert_int_equal(review_request(f, &a, &org, 0x82, 3, &r), CORE_OK);
    memcpy(open_req, r.txid, 32);
    assert_int_equal(review_request(f, &a, &org, 0x83, 2, &r), CORE_OK);
    memcpy(refunded, r.txid, 32);
    core_error err = {0};
    assert_int_equal(review_close(f, LEDGER_TX_REVIEW_REFUND, refunded, f->node.sk, &err), CORE_OK);
    ledger_close(f->l);
    f->l = NULL;
    /* As the file was before: no review consents, schema 2. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "DELETE FROM consents WHERE purpose = 4; DROP TABLE market_escrows; DROP TABLE market_payments; "
                     "PRAGMA user_version = 2" /* LEDGER_PURPOSE_REVIEW */,
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    ledger_verify_report rep;
    assert_int_not_equal(ledger_verify_file(f->path, 1, &rep, &err), CORE_OK); /* the replay has them */
    f->l = reopen(f, 1);
    ledger_consent cn;
    assert_int_equal(ledger_get_consent(f->l, open_req, &cn, NULL, &err), CORE_OK);
    assert_int_equal(cn.purpose, LEDGER_PURPOSE_REVIEW);
    assert_int_equal(cn.revoked_height, 0);
    assert_int_equal(ledger_get_consent(f->l, refunded, &cn, NULL, &err), CORE_OK);
    assert_true(cn.revoked_height > 0);
    if (ledger_verify_file(f->path, 1, &rep, &err)) fail_msg("verify migrated: %s", err.message);
}

/* A ledger.db written before escrows existed (schema 1) verifies as it is
 * (read-only: nothing migrates it) and gains the table when the ledger opens. */
static void test_review_escrow_schema1_file(void **state) {
    fixture *f = *state;
    key a;
    keygen(&a);
    register_wallet(f, &a);
    ledger_close(f->l);
    f->l = NULL;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(
            db, "DROP TABLE escrows; DROP TABLE market_escrows; DROP TABLE market_payments; PRAGMA user_version = 1",
            NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    ledger_verify_report rep;
    core_error err = {0};
    if (ledger_verify_file(f->path, 1, &rep, &err)) fail_msg("verify schema 1: %s", err.message);
    f->l = reopen(f, 1);
    key org;
    keygen(&org);
    ledger_tx o = {.kind = LEDGER_TX_REGISTER_ORG};
    memcpy(o.u.org.org, org.pk, 32);
    strcpy(o.u.org.name, "Migrated Clinic");
    ledger_receipt r;
    assert_int_equal(ledger_sign_submit(f->l, &o, f->admin.sk, &r, NULL), CORE_OK);
    uint8_t g[32];
    grant(f, &a, LEDGER_SCOPE_ALL, (uint64_t)core_now() + 3600, g);
    assert_int_equal(contribute(f, &a, g, LEDGER_CAT_SCREENING, 0x62, NULL), CORE_OK);
    assert_int_equal(review_request(f, &a, &org, 0xe1, 3, &r), CORE_OK);
    assert_int_equal(check_supply(f), 3);
    if (ledger_verify_file(f->path, 1, &rep, &err)) fail_msg("verify migrated: %s", err.message);
}

/* A node key may be a wallet too; a settle or refund paying the node's own
 * key credits the signer's row (one row, not two copies of it). */
static void test_review_escrow_node_payee(void **state) {
    fixture *f = *state;
    key node = f->node;
    register_wallet(f, &f->node);
    /* the node's sign_submit nonces continue after the wallet registration */
    uint8_t g[32];
    key a;
    keygen(&a);
    register_wallet(f, &a);
    grant(f, &a, LEDGER_SCOPE_ALL, (uint64_t)core_now() + 3600, g);
    assert_int_equal(contribute(f, &a, g, LEDGER_CAT_SCREENING, 0x61, NULL), CORE_OK);
    ledger_tx o = {.kind = LEDGER_TX_REGISTER_ORG};
    memcpy(o.u.org.org, node.pk, 32);
    strcpy(o.u.org.name, "Node Clinic");
    ledger_receipt r;
    assert_int_equal(ledger_sign_submit(f->l, &o, f->admin.sk, &r, NULL), CORE_OK);
    assert_int_equal(review_request(f, &a, &node, 0xd1, 4, &r), CORE_OK);
    core_error err = {0};
    assert_int_equal(review_close(f, LEDGER_TX_REVIEW_SETTLE, r.txid, f->node.sk, &err), CORE_OK);
    assert_int_equal(balance(f, &f->node), 4);
    assert_int_equal(check_supply(f), 0);
    ledger_verify_report rep;
    if (ledger_verify_file(f->path, 2, &rep, &err)) fail_msg("verify: %s", err.message);
}

/* ---- property test: random streams against a reference model ---- */

enum { PW = 6, PSTEPS = 1500 };

typedef struct {
    key w[PW];
    bool wallet[PW];
    int64_t bal[PW];
    uint64_t last[PW + 1]; /* last accepted nonce; [PW] is the node */
    uint64_t counter[PW + 1];
    int ngrants;
    struct {
        uint8_t id[32];
        int owner;
        uint32_t scope;
        bool revoked;
    } grants[256];
    int ncommit;
    uint8_t commits[PSTEPS][32];
    uint64_t minted, burned;
} model;

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static bool seen_commit(const model *m, const uint8_t c[32]) {
    for (int i = 0; i < m->ncommit; i++)
        if (!memcmp(m->commits[i], c, 32)) return true;
    return false;
}

/* Predict the outcome exactly as the rules say, and apply it. who = PW is the node. */
static core_status model_apply(model *m, int who, const ledger_tx *tx, const uint8_t txid[32], const uint64_t *reward) {
    if (tx->nonce <= m->last[who]) return CORE_ERR_CONFLICT;
    bool needs_wallet = tx->kind == LEDGER_TX_ANCHOR || tx->kind == LEDGER_TX_GRANT || tx->kind == LEDGER_TX_REVOKE ||
                        tx->kind == LEDGER_TX_TRANSFER || tx->kind == LEDGER_TX_REDEEM;
    if (needs_wallet && (who == PW || !m->wallet[who])) return CORE_ERR_NOT_FOUND;
    int to = -1, g = -1;
    switch (tx->kind) {
    case LEDGER_TX_REGISTER_WALLET:
        if (m->wallet[who]) return CORE_ERR_CONFLICT;
        m->wallet[who] = true;
        break;
    case LEDGER_TX_TRANSFER:
        for (int i = 0; i < PW; i++)
            if (!memcmp(m->w[i].pk, tx->u.transfer.to, 32)) to = i;
        if (to == who) return CORE_ERR_INVALID;
        if (to < 0 || !m->wallet[to]) return CORE_ERR_NOT_FOUND;
        if ((int64_t)tx->u.transfer.amount > m->bal[who]) return CORE_ERR_INVALID;
        m->bal[who] -= (int64_t)tx->u.transfer.amount;
        m->bal[to] += (int64_t)tx->u.transfer.amount;
        break;
    case LEDGER_TX_REDEEM:
        if ((int64_t)tx->u.redeem.amount > m->bal[who]) return CORE_ERR_INVALID;
        m->bal[who] -= (int64_t)tx->u.redeem.amount;
        m->burned += tx->u.redeem.amount;
        break;
    case LEDGER_TX_GRANT:
        m->grants[m->ngrants].owner = who;
        m->grants[m->ngrants].scope = tx->u.grant.scope;
        m->grants[m->ngrants].revoked = false;
        memcpy(m->grants[m->ngrants].id, txid, 32);
        m->ngrants++;
        break;
    case LEDGER_TX_REVOKE:
        for (int i = 0; i < m->ngrants; i++)
            if (!memcmp(m->grants[i].id, tx->u.revoke.grant, 32)) g = i;
        if (g < 0) return CORE_ERR_NOT_FOUND;
        if (m->grants[g].owner != who) return CORE_ERR_FORBIDDEN;
        if (m->grants[g].revoked) return CORE_ERR_CONFLICT;
        m->grants[g].revoked = true;
        break;
    case LEDGER_TX_CONTRIBUTE: {
        if (who != PW) return CORE_ERR_FORBIDDEN;
        int c = -1;
        for (int i = 0; i < PW; i++)
            if (!memcmp(m->w[i].pk, tx->u.contribute.contributor, 32)) c = i;
        if (c < 0 || !m->wallet[c]) return CORE_ERR_NOT_FOUND;
        for (int i = 0; i < m->ngrants; i++)
            if (!memcmp(m->grants[i].id, tx->u.contribute.grant, 32)) g = i;
        if (g < 0 || m->grants[g].revoked || m->grants[g].owner != c ||
            !(m->grants[g].scope & (1u << tx->u.contribute.category)))
            return CORE_ERR_FORBIDDEN;
        if (tx->u.contribute.reward != reward[tx->u.contribute.category]) return CORE_ERR_INVALID;
        if (seen_commit(m, tx->u.contribute.commitment)) return CORE_ERR_CONFLICT;
        memcpy(m->commits[m->ncommit++], tx->u.contribute.commitment, 32);
        m->bal[c] += (int64_t)tx->u.contribute.reward;
        m->minted += tx->u.contribute.reward;
        break;
    }
    default: fail_msg("unexpected kind");
    }
    m->last[who] = tx->nonce;
    return CORE_OK;
}

static void test_property_random_streams(void **state) {
    fixture *f = *state;
    static model m;
    memset(&m, 0, sizeof m);
    ledger_options o;
    ledger_options_defaults(&o);
    for (int i = 0; i < PW; i++) keygen(&m.w[i]);
    enum { BATCH = 40 };
    static uint8_t bufs[BATCH][LEDGER_TX_MAX];
    static uint8_t history[64][LEDGER_TX_MAX];
    static size_t history_len[64];
    int nhistory = 0;
    const uint8_t *ptrs[BATCH];
    size_t lens[BATCH];
    int who[BATCH];
    ledger_tx txs[BATCH];
    bool forged[BATCH], replay[BATCH];
    ledger_receipt rc[BATCH];
    int accepted = 0, rejected = 0;
    for (int step = 0; step < PSTEPS; step += BATCH) {
        for (int b = 0; b < BATCH; b++) {
            ledger_tx tx = {0};
            int s = (int)rnd(PW);
            forged[b] = replay[b] = false;
            switch (rnd(10)) {
            case 0: tx.kind = LEDGER_TX_REGISTER_WALLET; break;
            case 1:
            case 2:
                tx.kind = LEDGER_TX_TRANSFER;
                memcpy(tx.u.transfer.to, m.w[rnd(PW)].pk, 32);
                tx.u.transfer.amount = 1 + rnd(25);
                break;
            case 3:
                tx.kind = LEDGER_TX_REDEEM;
                tx.u.redeem.amount = 1 + rnd(15);
                break;
            case 4:
                tx.kind = LEDGER_TX_GRANT;
                tx.u.grant.scope = 1 + rnd(LEDGER_SCOPE_ALL);
                tx.u.grant.purpose = (uint8_t)(1 + rnd(2));
                tx.u.grant.expires = (uint64_t)core_now() + 86400 * 30;
                break;
            case 5:
                tx.kind = LEDGER_TX_REVOKE;
                if (m.ngrants && rnd(4))
                    memcpy(tx.u.revoke.grant, m.grants[rnd((uint32_t)m.ngrants)].id, 32);
                else
                    memset(tx.u.revoke.grant, (int)rnd(256), 32);
                break;
            default: {
                tx.kind = LEDGER_TX_CONTRIBUTE;
                int g = m.ngrants ? (int)rnd((uint32_t)m.ngrants) : -1;
                int c = g >= 0 && rnd(5) ? m.grants[g].owner : (int)rnd(PW);
                memcpy(tx.u.contribute.contributor, m.w[c].pk, 32);
                if (g >= 0) memcpy(tx.u.contribute.grant, m.grants[g].id, 32);
                tx.u.contribute.category = (uint8_t)rnd(LEDGER_CATEGORIES);
                uint32_t cm = rnd(100000);
                if (m.ncommit && !rnd(8))
                    memcpy(tx.u.contribute.commitment, m.commits[rnd((uint32_t)m.ncommit)], 32);
                else {
                    memset(tx.u.contribute.commitment, 0, 32);
                    memcpy(tx.u.contribute.commitment, &step, sizeof step);
                    memcpy(tx.u.contribute.commitment + 8, &b, sizeof b);
                    memcpy(tx.u.contribute.commitment + 16, &cm, 4);
                }
                tx.u.contribute.reward = o.genesis_reward[tx.u.contribute.category] + (rnd(10) == 0);
                s = rnd(6) ? PW : s; /* mostly signed by the node, sometimes (wrongly) by a wallet */
                break;
            }
            }
            key *k = s == PW ? &f->node : &m.w[s];
            tx.nonce = ++m.counter[s] + (s == PW ? 0 : 0);
            if (s == PW) tx.nonce = ++f->node.nonce;
            size_t len = ledger_tx_sign(&tx, k->sk, bufs[b], LEDGER_TX_MAX);
            assert_true(len > 0);
            if (nhistory && !rnd(15)) { /* replay an old transaction verbatim */
                int h = (int)rnd((uint32_t)nhistory);
                memcpy(bufs[b], history[h], history_len[h]);
                len = history_len[h];
                assert_int_equal(ledger_tx_decode(bufs[b], len, &tx, NULL), CORE_OK);
                s = -1;
                for (int i = 0; i < PW; i++)
                    if (!memcmp(m.w[i].pk, tx.signer, 32)) s = i;
                if (s < 0) s = PW;
                replay[b] = true;
            } else if (!rnd(25)) {
                bufs[b][len - 3] ^= 0x40;
                forged[b] = true;
            } else if (nhistory < 64) {
                memcpy(history[nhistory], bufs[b], len);
                history_len[nhistory++] = len;
            }
            ptrs[b] = bufs[b];
            lens[b] = len;
            who[b] = s;
            txs[b] = tx;
        }
        assert_int_equal(ledger_submit_many(f->l, ptrs, lens, BATCH, rc, NULL), CORE_OK);
        for (int b = 0; b < BATCH; b++) {
            core_status want;
            if (forged[b])
                want = CORE_ERR_CRYPTO;
            else
                want = model_apply(&m, who[b], &txs[b], rc[b].txid, o.genesis_reward);
            if (rc[b].status != want)
                fail_msg("step %d: %s by %d (replay %d): ledger said %s (%s), model %s", step + b,
                         ledger_tx_kind_name(txs[b].kind), who[b], replay[b], core_status_name(rc[b].status),
                         rc[b].error.message, core_status_name(want));
            if (want == CORE_OK)
                accepted++;
            else
                rejected++;
        }
        /* Invariants after every batch. */
        int64_t sum = 0;
        for (int i = 0; i < PW; i++) {
            ledger_account a;
            core_status st = ledger_get_account(f->l, m.w[i].pk, &a, NULL);
            if (st == CORE_ERR_NOT_FOUND) {
                assert_false(m.wallet[i]);
                continue;
            }
            assert_int_equal(st, CORE_OK);
            assert_int_equal(a.wallet, m.wallet[i]);
            assert_int_equal(a.balance, m.bal[i]);
            assert_true(a.balance >= 0);
            sum += a.balance;
        }
        ledger_totals t;
        assert_int_equal(ledger_get_totals(f->l, &t, NULL), CORE_OK);
        assert_int_equal(t.minted, m.minted);
        assert_int_equal(t.burned, m.burned);
        assert_int_equal((uint64_t)sum, t.minted - t.burned);
    }
    assert_true(accepted > 300);
    assert_true(rejected > 100);
    /* The whole history replays identically, and survives a reopen. */
    ledger_block before, after;
    assert_int_equal(ledger_head(f->l, &before, NULL), CORE_OK);
    ledger_close(f->l);
    ledger_verify_report rep;
    core_error err = {0};
    if (ledger_verify_file(f->path, 2, &rep, &err)) fail_msg("verify: %s", err.message);
    assert_int_equal(rep.txs, before.tree_size);
    f->l = reopen(f, 1);
    assert_int_equal(ledger_head(f->l, &after, NULL), CORE_OK);
    assert_memory_equal(&before, &after, sizeof before);
}

/* ---- proofs ---- */

static void test_proofs(void **state) {
    fixture *f = *state;
    key a;
    keygen(&a);
    register_wallet(f, &a);
    uint8_t g[32];
    grant(f, &a, 3, (uint64_t)core_now() + 600, g);
    for (int i = 0; i < 5; i++) {
        ledger_tx tx = {.kind = LEDGER_TX_ANCHOR};
        memset(tx.u.anchor.commitment, 0x30 + i, 32);
        assert_int_equal(send(f, &a, &tx, NULL), CORE_OK);
    }
    static ledger_proof p, q;
    core_error err = {0};
    assert_int_equal(ledger_prove(f->l, g, &p, &err), CORE_OK);
    assert_int_equal(ledger_proof_check(&p, f->node.pk, &err), CORE_OK);
    /* Round trip through JSON, and the file-based prover agrees. */
    json_t *j = ledger_proof_to_json(&p);
    assert_non_null(j);
    assert_int_equal(ledger_proof_from_json(j, &q, &err), CORE_OK);
    assert_int_equal(ledger_proof_check(&q, f->node.pk, &err), CORE_OK);
    static ledger_proof r;
    assert_int_equal(ledger_prove_file(f->path, g, &r, &err), CORE_OK);
    assert_int_equal(r.index, p.index);
    assert_int_equal(ledger_proof_check(&r, NULL, &err), CORE_OK);
    /* Wrong trusted key, corrupted path, other leaf, forged head. */
    assert_int_equal(ledger_proof_check(&q, a.pk, &err), CORE_ERR_CRYPTO);
    q.path[0][3] ^= 1;
    assert_int_equal(ledger_proof_check(&q, NULL, &err), CORE_ERR_CRYPTO);
    q.path[0][3] ^= 1;
    q.index++;
    assert_int_equal(ledger_proof_check(&q, NULL, &err), CORE_ERR_CRYPTO);
    q.index--;
    q.head.root[0] ^= 1;
    assert_int_equal(ledger_proof_check(&q, NULL, &err), CORE_ERR_CRYPTO);
    q.head.root[0] ^= 1;
    q.tx[q.tx_len - 1] ^= 1;
    assert_int_not_equal(ledger_proof_check(&q, NULL, &err), CORE_OK);
    /* Malformed documents are refused with a reason. */
    json_object_set_new(j, "tx", json_string("zz"));
    assert_int_equal(ledger_proof_from_json(j, &q, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "tx");
    json_decref(j);
    uint8_t missing[32] = {1};
    assert_int_equal(ledger_prove(f->l, missing, &p, &err), CORE_ERR_NOT_FOUND);
}

/* Concurrent server-side signers never collide on a nonce. */
typedef struct {
    fixture *f;
    int ok;
} signer_arg;
static void *sign_many(void *arg) {
    signer_arg *s = arg;
    for (int i = 0; i < 40; i++) {
        ledger_tx tx = {.kind = LEDGER_TX_RELEASE, .u.release = {.epsilon_milli = 100, .k_min = 5, .cells = 1 + i}};
        memset(tx.u.release.org, 0x11, 32);
        ledger_receipt r;
        /* Unregistered org: rejected for that reason, never for the nonce. */
        core_status rc = ledger_sign_submit(s->f->l, &tx, s->f->node.sk, &r, NULL);
        if (rc == CORE_ERR_NOT_FOUND && strcmp(r.error.field, "org") == 0) s->ok++;
    }
    return NULL;
}

/* The holding block makes block_height a proven fact; documents are held
 * to their bytes field by field (the integration test enumerates every
 * one-field edit of real documents; here the library calls directly). */
static void test_proof_documents(void **state) {
    fixture *f = *state;
    key a;
    keygen(&a);
    register_wallet(f, &a);
    uint8_t g[32];
    grant(f, &a, 5, (uint64_t)core_now() + 600, g);
    const char text[] = "{\"title\":\"Peanuts\"}";
    uint8_t salt[32], commitment[32];
    memset(salt, 0x5a, sizeof salt);
    cs_crypto_sha256_2(commitment, salt, sizeof salt, text, strlen(text));
    ledger_tx tx = {.kind = LEDGER_TX_ANCHOR};
    memcpy(tx.u.anchor.commitment, commitment, 32);
    ledger_receipt ar;
    assert_int_equal(send(f, &a, &tx, &ar), CORE_OK);
    for (int i = 0; i < 3; i++) {
        ledger_tx t2 = {.kind = LEDGER_TX_ANCHOR};
        memset(t2.u.anchor.commitment, 0x60 + i, 32);
        assert_int_equal(send(f, &a, &t2, NULL), CORE_OK);
    }
    static ledger_proof p, q, r;
    core_error err = {0};
    assert_int_equal(ledger_prove(f->l, g, &p, &err), CORE_OK);
    assert_true(p.block.height < p.head.height);
    assert_int_equal(p.block.height, p.height);
    assert_true(p.cons_len > 0);
    /* The file-based prover gives the same document. */
    assert_int_equal(ledger_prove_file(f->path, g, &r, &err), CORE_OK);
    json_t *j1 = ledger_proof_to_json(&p), *j2 = ledger_proof_to_json(&r);
    assert_true(json_equal(j1, j2));
    json_decref(j2);
    /* Each byte-level part is proven: holding block, its height, the link. */
    q = p;
    q.height++;
    assert_int_equal(ledger_proof_check(&q, NULL, &err), CORE_ERR_CRYPTO);
    q = p;
    q.block.time_ms++;
    assert_int_equal(ledger_proof_check(&q, NULL, &err), CORE_ERR_CRYPTO);
    q = p;
    q.cons[0][0] ^= 1;
    assert_int_equal(ledger_proof_check(&q, NULL, &err), CORE_ERR_CRYPTO);
    assert_string_equal(err.field, "tx_block_to_head");
    q = p;
    q.block = q.head; /* a real signed header, but not the one holding the leaf */
    q.height = q.head.height;
    q.cons_len = 0;
    assert_int_equal(ledger_proof_check(&q, NULL, &err), CORE_ERR_CRYPTO);
    assert_string_equal(err.field, "tx_block");

    /* The three documents verify, and say what they are. */
    json_t *receipt = ledger_consent_receipt_to_json(&p);
    assert_non_null(receipt);
    assert_null(ledger_record_anchor_to_json(&p, text, strlen(text), salt)); /* a grant is not an anchor */
    static ledger_proof pa;
    assert_int_equal(ledger_prove(f->l, ar.txid, &pa, &err), CORE_OK);
    assert_null(ledger_consent_receipt_to_json(&pa));
    json_t *anchor = ledger_record_anchor_to_json(&pa, text, strlen(text), salt);
    assert_non_null(anchor);
    json_t *docs[] = {j1, receipt, anchor};
    ledger_doc_kind kinds[] = {LEDGER_DOC_PROOF, LEDGER_DOC_CONSENT_RECEIPT, LEDGER_DOC_RECORD_ANCHOR};
    for (int d = 0; d < 3; d++) {
        ledger_doc_kind k = 0;
        if (ledger_document_check(docs[d], f->node.pk, &k, &q, &err)) fail_msg("document %d: %s", d, err.message);
        assert_int_equal(k, kinds[d]);
        /* Any top-level member removed, or one added, is refused. */
        const char *name;
        json_t *v;
        json_object_foreach(docs[d], name, v) {
            json_t *e = json_deep_copy(docs[d]);
            json_object_del(e, name);
            assert_int_not_equal(ledger_document_check(e, NULL, &k, &q, &err), CORE_OK);
            json_decref(e);
        }
        json_t *e = json_deep_copy(docs[d]);
        json_object_set_new(e, "issued_at", json_string("2030-01-01T00:00:00Z"));
        assert_int_equal(ledger_document_check(e, NULL, &k, &q, &err), CORE_ERR_CRYPTO);
        assert_string_equal(err.field, "issued_at");
        json_decref(e);
    }
    /* A readable field the bytes contradict names its path. */
    json_t *e = json_deep_copy(receipt);
    json_object_set_new(json_object_get(e, "consent"), "granted_block", json_integer((json_int_t)p.height + 1));
    assert_int_equal(ledger_document_check(e, NULL, NULL, &q, &err), CORE_ERR_CRYPTO);
    assert_string_equal(err.field, "consent.granted_block");
    json_decref(e);
    e = json_deep_copy(anchor);
    json_object_set_new(e, "record_text", json_string("{\"title\":\"Walnuts\"}"));
    assert_int_equal(ledger_document_check(e, NULL, NULL, &q, &err), CORE_ERR_CRYPTO);
    assert_string_equal(err.field, "record_text");
    json_decref(e);
    /* A block header as the explorer shows it reads back exactly; any
     * member edited or added is refused. */
    json_t *bj = ledger_block_to_json(&p.head);
    ledger_block back;
    assert_int_equal(ledger_block_from_json(bj, &back, &err), CORE_OK);
    uint8_t e1[LEDGER_BLOCK_BYTES], e2[LEDGER_BLOCK_BYTES];
    ledger_block_encode(&p.head, e1);
    ledger_block_encode(&back, e2);
    assert_memory_equal(e1, e2, sizeof e1);
    json_object_set_new(bj, "time_ms", json_integer((json_int_t)p.head.time_ms + 1));
    assert_int_equal(ledger_block_from_json(bj, &back, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "hash");
    json_decref(bj);
    bj = ledger_block_to_json(&p.head);
    json_object_set_new(bj, "note", json_true());
    assert_int_equal(ledger_block_from_json(bj, &back, &err), CORE_ERR_INVALID);
    json_decref(bj);
    json_decref(j1);
    json_decref(receipt);
    json_decref(anchor);
}

/* A ledger re-signed end to end with fresh keys: the same wallet
 * transactions (byte for byte) under a new admin and node. Unpinned it
 * verifies, as it must (genesis names its own keys); pinned to the real
 * node key or genesis it is refused. */
static void test_resigned_ledger_and_pins(void **state) {
    fixture *f = *state;
    key w;
    keygen(&w);
    uint8_t txs[6][LEDGER_TX_MAX];
    size_t lens[6];
    for (int i = 0; i < 6; i++) {
        ledger_tx tx = {.kind = i == 0 ? LEDGER_TX_REGISTER_WALLET : i % 2 ? LEDGER_TX_GRANT : LEDGER_TX_ANCHOR};
        if (tx.kind == LEDGER_TX_GRANT) {
            tx.u.grant.scope = 1;
            tx.u.grant.purpose = LEDGER_PURPOSE_RESEARCH;
            tx.u.grant.expires = (uint64_t)core_now() + 3600;
        } else if (tx.kind == LEDGER_TX_ANCHOR) {
            memset(tx.u.anchor.commitment, 0x70 + i, 32);
        }
        tx.nonce = ++w.nonce;
        lens[i] = ledger_tx_sign(&tx, w.sk, txs[i], sizeof txs[i]);
        assert_true(lens[i] > 0);
        ledger_receipt r;
        assert_int_equal(ledger_submit(f->l, txs[i], lens[i], &r, NULL), CORE_OK);
    }
    ledger_close(f->l);
    f->l = NULL;
    ledger_verify_report rep;
    core_error err = {0};
    if (ledger_verify_file(f->path, 2, &rep, &err)) fail_msg("verify: %s", err.message);
    uint8_t genesis[32];
    memcpy(genesis, rep.genesis, 32);
    assert_memory_equal(rep.admin, f->admin.pk, 32);
    assert_int_equal(rep.n_proposers, 1);
    assert_memory_equal(rep.proposers[0], f->node.pk, 32);

    /* The forgery: fresh admin and node keys, every block signed anew. */
    fixture g = {0};
    snprintf(g.dir, sizeof g.dir, "%s", f->dir);
    snprintf(g.path, sizeof g.path, "%s/forged.db", f->dir);
    keygen(&g.node);
    keygen(&g.admin);
    g.l = reopen(&g, 1);
    for (int i = 0; i < 6; i++) {
        ledger_receipt r;
        assert_int_equal(ledger_submit(g.l, txs[i], lens[i], &r, NULL), CORE_OK);
    }
    ledger_close(g.l);
    if (ledger_verify_file(g.path, 2, &rep, &err)) fail_msg("forged verify: %s", err.message);
    assert_memory_not_equal(rep.genesis, genesis, 32);
    assert_memory_equal(rep.proposers[0], g.node.pk, 32);

    const uint8_t(*real)[LEDGER_KEY] = (const uint8_t(*)[LEDGER_KEY])f->node.pk;
    ledger_verify_pins node_pin = {.nodes = real, .n_nodes = 1};
    assert_int_equal(ledger_verify_file_pinned(g.path, 2, &node_pin, &rep, &err), CORE_ERR_CRYPTO);
    assert_int_equal(rep.bad_height, 0);
    assert_non_null(strstr(err.message, "not a pinned node key"));
    ledger_verify_pins genesis_pin = {.genesis = genesis};
    assert_int_equal(ledger_verify_file_pinned(g.path, 2, &genesis_pin, &rep, &err), CORE_ERR_CRYPTO);
    assert_non_null(strstr(err.message, "genesis is not the pinned one"));
    /* The real ledger passes both pins. */
    ledger_verify_pins both = {.nodes = real, .n_nodes = 1, .genesis = genesis};
    if (ledger_verify_file_pinned(f->path, 2, &both, &rep, &err)) fail_msg("pinned verify: %s", err.message);
    f->l = reopen(f, 1);
}

static void test_concurrent_sign_submit(void **state) {
    fixture *f = *state;
    key org;
    keygen(&org);
    pthread_t th[4];
    signer_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (signer_arg){f, 0};
        pthread_create(&th[i], NULL, sign_many, &args[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) assert_int_equal(args[i].ok, 40);
    /* And accepted ones all land, in nonce order. */
    ledger_tx o = {.kind = LEDGER_TX_REGISTER_ORG};
    memcpy(o.u.org.org, org.pk, 32);
    strcpy(o.u.org.name, "Lab");
    ledger_receipt r;
    assert_int_equal(ledger_sign_submit(f->l, &o, f->admin.sk, &r, NULL), CORE_OK);
    ledger_stats st;
    ledger_get_stats(f->l, &st);
    assert_true(st.rejected >= 160);
    assert_true(st.committed >= 1);
}

/* Asynchronous submission: every callback runs once, on the producer
 * thread, with the receipt a synchronous submit would have given; a refused
 * transaction's callback carries the refusal; one refused before queueing
 * gets no callback; ledger_close runs what is outstanding. */
#define ASYNC_N 300
typedef struct {
    pthread_mutex_t lock;
    int calls[ASYNC_N + 2], ok, refused;
    ledger_receipt r[ASYNC_N + 2];
    pthread_t submitter;
    bool other_thread;
} async_tally;
typedef struct {
    async_tally *t;
    int i;
} async_ref;

static void on_async(void *ud, const ledger_receipt *r) {
    async_ref *a = ud;
    pthread_mutex_lock(&a->t->lock);
    a->t->calls[a->i]++;
    a->t->r[a->i] = *r;
    if (r->status)
        a->t->refused++;
    else
        a->t->ok++;
    if (!pthread_equal(pthread_self(), a->t->submitter)) a->t->other_thread = true;
    pthread_mutex_unlock(&a->t->lock);
}

static void test_async_submit(void **state) {
    fixture *f = *state;
    ledger_close(f->l);
    f->l = reopen(f, 20); /* a wide batch window: many transactions per block */
    static async_tally t;
    memset(&t, 0, sizeof t);
    pthread_mutex_init(&t.lock, NULL);
    t.submitter = pthread_self();
    static async_ref refs[ASYNC_N + 2];
    key w;
    keygen(&w);
    register_wallet(f, &w);
    /* Server-held keys: the ledger assigns the nonces. */
    for (int i = 0; i < ASYNC_N; i++) {
        refs[i] = (async_ref){&t, i};
        ledger_tx tx = {.kind = LEDGER_TX_GRANT};
        tx.u.grant.scope = 1;
        tx.u.grant.purpose = LEDGER_PURPOSE_RESEARCH;
        tx.u.grant.expires = (uint64_t)core_now() + 86400;
        assert_int_equal(ledger_sign_submit_async(f->l, &tx, w.sk, on_async, &refs[i], NULL), CORE_OK);
    }
    /* Pre-signed bytes: a transaction with a reused nonce is refused by the
     * state rules, and its callback says so. */
    refs[ASYNC_N] = (async_ref){&t, ASYNC_N};
    uint8_t buf[LEDGER_TX_MAX];
    ledger_tx dup = {.kind = LEDGER_TX_REGISTER_WALLET, .nonce = 1};
    size_t len = ledger_tx_sign(&dup, w.sk, buf, sizeof buf);
    assert_true(len > 0);
    assert_int_equal(ledger_submit_async(f->l, buf, len, on_async, &refs[ASYNC_N], NULL), CORE_OK);
    /* A bad signature is refused before queueing: no callback. */
    buf[len - 1] ^= 1;
    core_error err = {0};
    refs[ASYNC_N + 1] = (async_ref){&t, ASYNC_N + 1};
    assert_int_equal(ledger_submit_async(f->l, buf, len, on_async, &refs[ASYNC_N + 1], &err), CORE_ERR_CRYPTO);
    /* Close with callbacks possibly outstanding: close runs them all. */
    ledger_close(f->l);
    f->l = NULL;
    assert_int_equal(t.ok, ASYNC_N);
    assert_int_equal(t.refused, 1);
    assert_false(t.calls[ASYNC_N + 1]);
    assert_true(t.other_thread);
    for (int i = 0; i <= ASYNC_N; i++) assert_int_equal(t.calls[i], 1);
    assert_int_equal(t.r[ASYNC_N].status, CORE_ERR_CONFLICT);
    /* The receipts are the ledger's: distinct leaves, each proven where it says. */
    f->l = reopen(f, 1);
    uint64_t max_height = 0;
    for (int i = 0; i < ASYNC_N; i++) {
        uint8_t *tb = NULL;
        size_t tl = 0;
        uint64_t seq = 0, height = 0;
        assert_int_equal(ledger_get_tx(f->l, t.r[i].txid, &tb, &tl, &seq, &height, NULL), CORE_OK);
        assert_int_equal(seq, t.r[i].seq);
        assert_int_equal(height, t.r[i].height);
        if (height > max_height) max_height = height;
        free(tb);
    }
    /* Fewer blocks than transactions: they were batched, not one per call. */
    assert_true(max_height < 1 + ASYNC_N / 2);
    pthread_mutex_destroy(&t.lock);
}

/* The consensus hook: sees every block with its transactions before the
 * commit; a refusal rolls the block back and fails its submitters. */
typedef struct {
    int blocks, txs;
    bool refuse;
    uint64_t last_height;
} fake_consensus;

static core_status fake_propose(void *ud, const ledger_block *h, const uint8_t *const *txs, const size_t *lens,
                                size_t n, core_error *err) {
    fake_consensus *fc = ud;
    for (size_t i = 0; i < n; i++) assert_true(ledger_tx_check_signature(txs[i], lens[i]));
    assert_true(ledger_block_check_signature(h));
    assert_int_equal(h->tx_count, n);
    if (fc->refuse) return core_fail(err, CORE_ERR_IO, NULL, "no quorum");
    fc->blocks++;
    fc->txs += (int)n;
    fc->last_height = h->height;
    return CORE_OK;
}

static void test_consensus_hook(void **state) {
    fixture *f = *state;
    ledger_close(f->l);
    fake_consensus fc = {0};
    ledger_consensus cons = {.ud = &fc, .propose = fake_propose};
    ledger_options o;
    ledger_options_defaults(&o);
    o.path = f->path;
    o.batch_ms = 1;
    o.consensus = &cons;
    memcpy(o.node_pk, f->node.pk, 32);
    memcpy(o.node_sk, f->node.sk, 64);
    core_error err = {0};
    if (ledger_open(&o, &f->l, &err)) fail_msg("open: %s", err.message);
    key a;
    keygen(&a);
    register_wallet(f, &a);
    assert_int_equal(fc.blocks, 1);
    assert_int_equal(fc.txs, 1);
    ledger_block head;
    assert_int_equal(ledger_head(f->l, &head, NULL), CORE_OK);
    assert_int_equal(fc.last_height, head.height);
    /* Refused: nothing committed, the submitter hears why, the ledger stays whole. */
    fc.refuse = true;
    ledger_tx tx = {.kind = LEDGER_TX_ANCHOR};
    memset(tx.u.anchor.commitment, 0x21, 32);
    ledger_receipt r;
    assert_int_equal(send(f, &a, &tx, &r), CORE_ERR_IO);
    ledger_block same;
    assert_int_equal(ledger_head(f->l, &same, NULL), CORE_OK);
    assert_memory_equal(&same, &head, sizeof head);
    uint8_t txid[32];
    assert_int_equal(ledger_find_commitment(f->l, tx.u.anchor.commitment, txid, NULL), CORE_ERR_NOT_FOUND);
    /* Accepted again: the same transaction (same nonce) now goes through. */
    fc.refuse = false;
    a.nonce--;
    assert_int_equal(send(f, &a, &tx, &r), CORE_OK);
    assert_int_equal(ledger_find_commitment(f->l, tx.u.anchor.commitment, txid, NULL), CORE_OK);
    assert_memory_equal(txid, r.txid, 32);
    ledger_close(f->l);
    ledger_verify_report rep;
    if (ledger_verify_file(f->path, 1, &rep, &err)) fail_msg("verify: %s", err.message);
    f->l = reopen(f, 1);
}

/* What a ledger that could not reload its state must do: refuse every write
 * and every read of derived state with CORE_ERR_STORAGE, keep the log
 * readable, and leave the file exactly as last committed. */
static void expect_refused(fixture *f, key *w, const uint8_t grant_id[32]) {
    core_error err = {0};
    ledger_tx tx = {.kind = LEDGER_TX_ANCHOR};
    memset(tx.u.anchor.commitment, 0x5a, 32);
    uint8_t buf[LEDGER_TX_MAX];
    tx.nonce = w->nonce + 1;
    size_t len = ledger_tx_sign(&tx, w->sk, buf, sizeof buf);
    ledger_receipt r;
    assert_int_equal(ledger_submit(f->l, buf, len, &r, &err), CORE_ERR_STORAGE);
    assert_non_null(strstr(err.message, "could not be reloaded; restart"));
    assert_int_equal(r.status, CORE_ERR_STORAGE);
    if (grant_id) assert_int_equal(contribute(f, w, grant_id, LEDGER_CAT_SYMPTOMS, 0x5b, &r), CORE_ERR_STORAGE);
    ledger_account acct;
    memset(&err, 0, sizeof err);
    assert_int_equal(ledger_get_account(f->l, w->pk, &acct, &err), CORE_ERR_STORAGE);
    assert_non_null(strstr(err.message, "could not be reloaded"));
    ledger_totals t;
    assert_int_equal(ledger_get_totals(f->l, &t, NULL), CORE_ERR_STORAGE);
    uint64_t rewards[LEDGER_CATEGORIES];
    assert_int_equal(ledger_get_rewards(f->l, rewards, NULL), CORE_ERR_STORAGE);
    consent_tally ct = {0};
    assert_int_equal(ledger_list_consents(f->l, w->pk, tally_consent, &ct, NULL), CORE_ERR_STORAGE);
    history_tally ht = {0};
    assert_int_equal(ledger_history(f->l, w->pk, 10, tally_history, &ht, NULL), CORE_ERR_STORAGE);
    uint8_t txid[32];
    assert_int_equal(ledger_find_commitment(f->l, tx.u.anchor.commitment, txid, NULL), CORE_ERR_STORAGE);
    assert_int_equal(ct.total + ht.rows, 0);
    /* The log is not derived state: blocks and transactions still read. */
    ledger_block head, b;
    assert_int_equal(ledger_head(f->l, &head, NULL), CORE_OK);
    assert_int_equal(ledger_get_block(f->l, head.height, &b, NULL), CORE_OK);
    assert_memory_equal(&b, &head, sizeof b);
}

/* Issue 12.3: a block refused after its contribution was applied (so the
 * in-memory supply counted the reward), then the reload that restores the
 * committed supply fails. Before the fix the next block was sealed on the
 * stale supply: the stored "minted" exceeded the sum of balances and
 * `ledger verify` failed. */
static void test_reload_failure_refuses(void **state) {
    fixture *f = *state;
    ledger_close(f->l);
    fake_consensus fc = {0};
    ledger_consensus cons = {.ud = &fc, .propose = fake_propose};
    ledger_options o;
    ledger_options_defaults(&o);
    o.path = f->path;
    o.batch_ms = 1;
    o.consensus = &cons;
    memcpy(o.node_pk, f->node.pk, 32);
    memcpy(o.node_sk, f->node.sk, 64);
    core_error err = {0};
    if (ledger_open(&o, &f->l, &err)) fail_msg("open: %s", err.message);
    key a;
    keygen(&a);
    register_wallet(f, &a);
    uint8_t g[32];
    grant(f, &a, LEDGER_SCOPE_ALL, (uint64_t)core_now() + 3600, g);
    assert_int_equal(contribute(f, &a, g, LEDGER_CAT_SCREENING, 0x31, NULL), CORE_OK);
    const int64_t committed = balance(f, &a);
    assert_int_equal(committed, o.genesis_reward[LEDGER_CAT_SCREENING]);

    fc.refuse = true;
    ledger_fault_state_load = 1;
    assert_int_equal(contribute(f, &a, g, LEDGER_CAT_CONDITIONS, 0x32, NULL), CORE_ERR_IO);
    assert_int_equal(ledger_fault_state_load, 0); /* the reload was attempted, and failed */
    fc.refuse = false;
    const int blocks = fc.blocks;
    expect_refused(f, &a, g);
    assert_int_equal(fc.blocks, blocks); /* nothing was even proposed */

    /* Nothing was written on the stale state: the file verifies, and after a
     * restart the supply is the committed one and writes go through again. */
    ledger_close(f->l);
    f->l = NULL;
    ledger_verify_report rep;
    if (ledger_verify_file(f->path, 1, &rep, &err)) fail_msg("verify: %s", err.message);
    f->l = reopen(f, 1);
    assert_int_equal(balance(f, &a), committed);
    ledger_totals t;
    assert_int_equal(ledger_get_totals(f->l, &t, NULL), CORE_OK);
    assert_int_equal(t.minted, (uint64_t)committed);
    assert_int_equal(contribute(f, &a, g, LEDGER_CAT_CONDITIONS, 0x32, NULL), CORE_OK);
    assert_int_equal(balance(f, &a), committed + (int64_t)o.genesis_reward[LEDGER_CAT_CONDITIONS]);
    ledger_close(f->l);
    if (ledger_verify_file(f->path, 1, &rep, &err)) fail_msg("verify: %s", err.message);
    f->l = reopen(f, 1);
}

/* The same through a real fault: the stored params row is damaged behind
 * the ledger's back, so the reload after a rejected transaction cannot
 * decode it. Before the fix the ledger went on with no parameters and
 * answered the next write "the ledger has no genesis parameters yet". */
static void test_reload_corrupt_state_refuses(void **state) {
    fixture *f = *state;
    key a;
    keygen(&a);
    register_wallet(f, &a);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db, "UPDATE meta SET value = x'00' WHERE key = 'params'", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    /* A replayed nonce: rejected, the empty block rolled back, state reloaded. */
    ledger_tx tx = {.kind = LEDGER_TX_ANCHOR};
    memset(tx.u.anchor.commitment, 0x41, 32);
    a.nonce = 0;
    assert_int_equal(send(f, &a, &tx, NULL), CORE_ERR_CONFLICT);
    expect_refused(f, &a, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_roundtrip_and_rejects),
        cmocka_unit_test(test_golden_encoding),
        cmocka_unit_test(test_block_codec),
        cmocka_unit_test_setup_teardown(test_genesis, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_review_escrow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_review_escrow_node_payee, setup, teardown),
        cmocka_unit_test_setup_teardown(test_review_consent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_review_consent_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_review_escrow_schema1_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_property_random_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proofs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proof_documents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resigned_ledger_and_pins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_sign_submit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consensus_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_submit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_failure_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_corrupt_state_refuses, setup, teardown),
    };
    assert_int_equal(cs_crypto_init(NULL), CORE_OK);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
