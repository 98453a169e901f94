/* Ledger: encoding, the state machine's rules, blocks, durability across
 * reopen, proofs, and a randomized property test against a reference model. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "ledger/ledger.h"

typedef struct { uint8_t pk[LEDGER_KEY], sk[LEDGER_SECRET]; uint64_t nonce; } key;

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
        case LEDGER_TX_PARAMS: tx->u.params.n_nodes = 3; tx->u.params.reward[2] = 9; memset(tx->u.params.nodes[2], 3, 32); break;
        case LEDGER_TX_GRANT: tx->u.grant.scope = 5; tx->u.grant.purpose = 2; tx->u.grant.expires = 1999999999; break;
        case LEDGER_TX_CONTRIBUTE: memset(tx->u.contribute.contributor, 1, 32); tx->u.contribute.category = 3; break;
        case LEDGER_TX_TRANSFER: memset(tx->u.transfer.to, 2, 32); tx->u.transfer.amount = 42; break;
        case LEDGER_TX_REDEEM: tx->u.redeem.amount = 1; break;
        case LEDGER_TX_REGISTER_ORG: memset(tx->u.org.org, 4, 32); strcpy(tx->u.org.name, "Public Health Agency"); break;
        case LEDGER_TX_RELEASE: tx->u.release.cells = 12; tx->u.release.k_min = 10; tx->u.release.epsilon_milli = 500; break;
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
        assert_true(ledger_block_decode(enc, sizeof enc, &back, NULL) != CORE_OK || !ledger_block_check_signature(&back));
        enc[i] ^= 1;
    }
    assert_int_equal(ledger_block_decode(enc, sizeof enc - 1, &back, NULL), CORE_ERR_INVALID);
}

/* ---- the state machine ---- */

typedef struct { int total, revoked; } consent_tally;
static void tally_consent(void *ud, const ledger_consent *c) {
    consent_tally *t = ud;
    t->total++;
    if (c->revoked_height) t->revoked++;
}

typedef struct { int rows; int64_t sum; uint64_t last_seq; bool newest_first; } history_tally;
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
    assert_int_equal(contribute(f, &a, g, LEDGER_CAT_SCREENING, 3, &r), CORE_ERR_CONFLICT); /* same datum */
    assert_int_equal(contribute(f, &b, g, LEDGER_CAT_SCREENING, 4, &r), CORE_ERR_FORBIDDEN);  /* not b's consent */
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
    tx = (ledger_tx){.kind = LEDGER_TX_GRANT, .u.grant = {.scope = 3, .purpose = 2, .expires = (uint64_t)core_now() + 60}};
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_roundtrip_and_rejects),
        cmocka_unit_test(test_block_codec),
        cmocka_unit_test_setup_teardown(test_genesis, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rules, setup, teardown),
    };
    assert_int_equal(cs_crypto_init(NULL), CORE_OK);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
