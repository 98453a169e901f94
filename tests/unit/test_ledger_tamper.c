/* Tamper evidence: flip any single byte of a stored block header or
 * transaction (or its stored hash/id), drop or add a row, or edit derived
 * state — `ledger verify` must fail and name the block and transaction. */
#include "testutil.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "ledger/ledger.h"

typedef struct {
    uint8_t pk[32], sk[64];
    uint64_t nonce;
} key;

static char dir[256], path[300];

static void sign_send(ledger *l, key *k, ledger_tx *tx) {
    uint8_t buf[LEDGER_TX_MAX];
    tx->nonce = ++k->nonce;
    size_t len = ledger_tx_sign(tx, k->sk, buf, sizeof buf);
    ledger_receipt r;
    core_error err = {0};
    if (ledger_submit(l, buf, len, &r, &err)) fail_msg("submit %s: %s", ledger_tx_kind_name(tx->kind), err.message);
}

/* A small ledger with every kind of transaction over several blocks. */
static int build(void **state) {
    (void)state;
    assert_int_equal(cs_crypto_init(NULL), CORE_OK);
    testutil_tmpdir(dir);
    snprintf(path, sizeof path, "%s/ledger.db", dir);
    key node, admin, w[3], org;
    ledger_keypair(node.pk, node.sk);
    ledger_keypair(admin.pk, admin.sk);
    ledger_keypair(org.pk, org.sk);
    ledger_options o;
    ledger_options_defaults(&o);
    o.path = path;
    o.batch_ms = 0;
    memcpy(o.node_pk, node.pk, 32);
    memcpy(o.node_sk, node.sk, 64);
    memcpy(o.admin_pk, admin.pk, 32);
    memcpy(o.admin_sk, admin.sk, 64);
    ledger *l;
    core_error err = {0};
    if (ledger_open(&o, &l, &err)) fail_msg("open: %s", err.message);
    for (int i = 0; i < 3; i++) {
        ledger_keypair(w[i].pk, w[i].sk);
        w[i].nonce = 0;
        ledger_tx tx = {.kind = LEDGER_TX_REGISTER_WALLET};
        sign_send(l, &w[i], &tx);
    }
    ledger_tx tx = {.kind = LEDGER_TX_GRANT,
                    .u.grant = {.scope = LEDGER_SCOPE_ALL, .purpose = 1, .expires = (uint64_t)core_now() + 86400}};
    uint8_t buf[LEDGER_TX_MAX];
    tx.nonce = ++w[0].nonce;
    size_t len = ledger_tx_sign(&tx, w[0].sk, buf, sizeof buf);
    ledger_receipt r;
    assert_int_equal(ledger_submit(l, buf, len, &r, NULL), CORE_OK);
    for (int c = 0; c < 3; c++) {
        ledger_tx ct = {.kind = LEDGER_TX_CONTRIBUTE};
        memcpy(ct.u.contribute.contributor, w[0].pk, 32);
        memcpy(ct.u.contribute.grant, r.txid, 32);
        ct.u.contribute.category = (uint8_t)c;
        memset(ct.u.contribute.commitment, 0x40 + c, 32);
        ct.u.contribute.reward = o.genesis_reward[c];
        ledger_receipt cr;
        assert_int_equal(ledger_sign_submit(l, &ct, node.sk, &cr, NULL), CORE_OK);
    }
    tx = (ledger_tx){.kind = LEDGER_TX_TRANSFER, .u.transfer.amount = 7};
    memcpy(tx.u.transfer.to, w[1].pk, 32);
    sign_send(l, &w[0], &tx);
    tx = (ledger_tx){.kind = LEDGER_TX_REDEEM, .u.redeem.amount = 2};
    sign_send(l, &w[1], &tx);
    tx = (ledger_tx){.kind = LEDGER_TX_ANCHOR};
    memset(tx.u.anchor.commitment, 0x99, 32);
    sign_send(l, &w[2], &tx);
    ledger_tx ot = {.kind = LEDGER_TX_REGISTER_ORG};
    memcpy(ot.u.org.org, org.pk, 32);
    strcpy(ot.u.org.name, "County Health Department");
    assert_int_equal(ledger_sign_submit(l, &ot, admin.sk, &r, NULL), CORE_OK);
    ledger_tx rel = {.kind = LEDGER_TX_RELEASE, .u.release = {.epsilon_milli = 1000, .k_min = 5, .cells = 3}};
    memcpy(rel.u.release.org, org.pk, 32);
    assert_int_equal(ledger_sign_submit(l, &rel, node.sk, &r, NULL), CORE_OK);
    /* Review escrows: one settled, one refunded, one left open. */
    for (int i = 0; i < 3; i++) {
        ledger_tx rq = {.kind = LEDGER_TX_REVIEW_REQUEST, .u.review.price = (uint64_t)(3 - i)};
        memcpy(rq.u.review.org, org.pk, 32);
        memset(rq.u.review.commitment, 0x71 + i, 32);
        rq.nonce = ++w[0].nonce;
        len = ledger_tx_sign(&rq, w[0].sk, buf, sizeof buf);
        assert_int_equal(ledger_submit(l, buf, len, &r, NULL), CORE_OK);
        if (i == 2) break;
        ledger_tx close = {.kind = i == 0 ? LEDGER_TX_REVIEW_SETTLE : LEDGER_TX_REVIEW_REFUND};
        memcpy(close.u.review_close.request, r.txid, 32);
        ledger_receipt cr;
        assert_int_equal(ledger_sign_submit(l, &close, node.sk, &cr, NULL), CORE_OK);
    }
    ledger_close(l);
    return 0;
}

static int cleanup(void **state) {
    (void)state;
    testutil_rmdir(dir);
    return 0;
}

static sqlite3 *db_open(void) {
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    return db;
}

static int64_t scalar(sqlite3 *db, const char *sql) {
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

/* Read one blob cell. */
static size_t get_blob(sqlite3 *db, const char *sql, int64_t rowkey, uint8_t *out, size_t cap) {
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    sqlite3_bind_int64(q, 1, rowkey);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    size_t n = (size_t)sqlite3_column_bytes(q, 0);
    assert_true(n <= cap);
    memcpy(out, sqlite3_column_blob(q, 0), n);
    sqlite3_finalize(q);
    return n;
}

static void put_blob(sqlite3 *db, const char *sql, int64_t rowkey, const uint8_t *v, size_t n) {
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    sqlite3_bind_blob(q, 1, v, (int)n, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 2, rowkey);
    assert_int_equal(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);
}

static void expect_bad(int64_t height, int64_t seq, const char *what) {
    ledger_verify_report rep;
    core_error err = {0};
    core_status rc = ledger_verify_file(path, 2, &rep, &err);
    if (rc == CORE_OK) fail_msg("verify passed after %s", what);
    if (rep.bad_height != height || rep.bad_seq != seq)
        fail_msg("after %s verify blamed block %lld tx %lld (want %lld/%lld): %s", what, (long long)rep.bad_height,
                 (long long)rep.bad_seq, (long long)height, (long long)seq, err.message);
}

static void test_clean_ledger_verifies(void **state) {
    (void)state;
    ledger_verify_report rep;
    core_error err = {0};
    if (ledger_verify_file(path, 2, &rep, &err)) fail_msg("verify: %s", err.message);
    assert_true(rep.blocks >= 8);
    assert_int_equal(rep.txs, 18);
    assert_int_equal(rep.bad_height, -1);
}

/* Every byte of every block header. */
static void test_flip_block_bytes(void **state) {
    (void)state;
    sqlite3 *db = db_open();
    int64_t blocks = scalar(db, "SELECT count(*) FROM blocks");
    for (int64_t h = 0; h < blocks; h++) {
        uint8_t hdr[LEDGER_BLOCK_BYTES], hash[32];
        assert_int_equal(get_blob(db, "SELECT header FROM blocks WHERE height = ?1", h, hdr, sizeof hdr), sizeof hdr);
        for (size_t i = 0; i < sizeof hdr; i++) {
            hdr[i] ^= 0x01;
            put_blob(db, "UPDATE blocks SET header = ?1 WHERE height = ?2", h, hdr, sizeof hdr);
            char what[64];
            snprintf(what, sizeof what, "flipping byte %zu of block %lld", i, (long long)h);
            expect_bad(h, -1, what);
            hdr[i] ^= 0x01;
        }
        put_blob(db, "UPDATE blocks SET header = ?1 WHERE height = ?2", h, hdr, sizeof hdr);
        assert_int_equal(get_blob(db, "SELECT hash FROM blocks WHERE height = ?1", h, hash, sizeof hash), 32);
        hash[h % 32] ^= 0x80;
        put_blob(db, "UPDATE blocks SET hash = ?1 WHERE height = ?2", h, hash, sizeof hash);
        expect_bad(h, -1, "changing a stored block hash");
        hash[h % 32] ^= 0x80;
        put_blob(db, "UPDATE blocks SET hash = ?1 WHERE height = ?2", h, hash, sizeof hash);
    }
    sqlite3_close(db);
    test_clean_ledger_verifies(state);
}

/* Every byte of every transaction, and every stored transaction id. */
static void test_flip_transaction_bytes(void **state) {
    (void)state;
    sqlite3 *db = db_open();
    int64_t n = scalar(db, "SELECT count(*) FROM txs");
    for (int64_t seq = 0; seq < n; seq++) {
        char sql[96];
        snprintf(sql, sizeof sql, "SELECT height FROM txs WHERE seq = %lld", (long long)seq);
        int64_t h = scalar(db, sql);
        uint8_t body[LEDGER_TX_MAX], id[32];
        size_t len = get_blob(db, "SELECT body FROM txs WHERE seq = ?1", seq, body, sizeof body);
        for (size_t i = 0; i < len; i++) {
            body[i] ^= 0x20;
            put_blob(db, "UPDATE txs SET body = ?1 WHERE seq = ?2", seq, body, len);
            char what[64];
            snprintf(what, sizeof what, "flipping byte %zu of transaction %lld", i, (long long)seq);
            expect_bad(h, seq, what);
            body[i] ^= 0x20;
        }
        put_blob(db, "UPDATE txs SET body = ?1 WHERE seq = ?2", seq, body, len);
        /* Truncated and extended bodies. */
        put_blob(db, "UPDATE txs SET body = ?1 WHERE seq = ?2", seq, body, len - 1);
        expect_bad(h, seq, "truncating a transaction");
        body[len] = 0;
        put_blob(db, "UPDATE txs SET body = ?1 WHERE seq = ?2", seq, body, len + 1);
        expect_bad(h, seq, "extending a transaction");
        put_blob(db, "UPDATE txs SET body = ?1 WHERE seq = ?2", seq, body, len);
        assert_int_equal(get_blob(db, "SELECT txid FROM txs WHERE seq = ?1", seq, id, sizeof id), 32);
        id[5] ^= 4;
        put_blob(db, "UPDATE txs SET txid = ?1 WHERE seq = ?2", seq, id, 32);
        expect_bad(h, seq, "changing a stored transaction id");
        id[5] ^= 4;
        put_blob(db, "UPDATE txs SET txid = ?1 WHERE seq = ?2", seq, id, 32);
    }
    sqlite3_close(db);
    test_clean_ledger_verifies(state);
}

static void test_rows_and_state(void **state) {
    (void)state;
    sqlite3 *db = db_open();
    int64_t n = scalar(db, "SELECT count(*) FROM txs");
    int64_t last_h = scalar(db, "SELECT max(height) FROM blocks");
    int64_t mid_h = scalar(db, "SELECT height FROM txs WHERE seq = 5");
    /* A transaction removed from the middle of the log. */
    assert_int_equal(sqlite3_exec(db,
                                  "BEGIN; CREATE TEMP TABLE keep AS SELECT * FROM txs WHERE seq = 5;"
                                  "DELETE FROM txs WHERE seq = 5; COMMIT",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    expect_bad(mid_h, 5, "deleting a transaction");
    assert_int_equal(sqlite3_exec(db, "INSERT INTO txs SELECT * FROM keep; DROP TABLE keep", NULL, NULL, NULL),
                     SQLITE_OK);
    /* A transaction slipped in after the last block. */
    char sql[200];
    snprintf(sql, sizeof sql,
             "INSERT INTO txs (seq, txid, height, body) SELECT %lld, randomblob(32), height, body "
             "FROM txs WHERE seq = 3",
             (long long)n);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    expect_bad(last_h, n, "appending an unsealed transaction");
    snprintf(sql, sizeof sql, "DELETE FROM txs WHERE seq = %lld", (long long)n);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    /* The last block removed. */
    assert_int_equal(
        sqlite3_exec(db,
                     "CREATE TEMP TABLE kb AS SELECT * FROM blocks WHERE height = (SELECT max(height) FROM blocks);"
                     "DELETE FROM blocks WHERE height = (SELECT max(height) FROM blocks)",
                     NULL, NULL, NULL),
        SQLITE_OK);
    ledger_verify_report rep;
    assert_int_not_equal(ledger_verify_file(path, 1, &rep, NULL), CORE_OK);
    assert_int_equal(sqlite3_exec(db, "INSERT INTO blocks SELECT * FROM kb; DROP TABLE kb", NULL, NULL, NULL),
                     SQLITE_OK);
    test_clean_ledger_verifies(state);
    /* Derived state edited behind the ledger's back: a balance, a consent, supply. */
    static const char *const edits[][2] = {
        {"UPDATE signers SET balance = balance + 1 WHERE wallet AND balance > 0",
         "UPDATE signers SET balance = balance - 1 WHERE wallet AND balance > 0"},
        {"UPDATE consents SET revoked_height = 3", "UPDATE consents SET revoked_height = 0"},
        {"UPDATE meta SET value = value + 5 WHERE key = 'minted'",
         "UPDATE meta SET value = value - 5 WHERE key = 'minted'"},
        /* Escrows: settled and refunded swapped; an open one's amount changed. */
        {"UPDATE escrows SET outcome = 3 - outcome WHERE outcome > 0",
         "UPDATE escrows SET outcome = 3 - outcome WHERE outcome > 0"},
        {"UPDATE escrows SET amount = amount + 1 WHERE outcome = 0",
         "UPDATE escrows SET amount = amount - 1 WHERE outcome = 0"},
        {"DELETE FROM orgs", NULL},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        assert_int_equal(sqlite3_exec(db, "SAVEPOINT s", NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, edits[i][0], NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, "RELEASE s", NULL, NULL, NULL), SQLITE_OK);
        core_error err = {0};
        assert_int_equal(ledger_verify_file(path, 1, &rep, &err), CORE_ERR_INVALID);
        assert_non_null(strstr(err.message, "state table"));
        if (edits[i][1]) assert_int_equal(sqlite3_exec(db, edits[i][1], NULL, NULL, NULL), SQLITE_OK);
    }
    sqlite3_close(db);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_ledger_verifies),
        cmocka_unit_test(test_flip_block_bytes),
        cmocka_unit_test(test_flip_transaction_bytes),
        cmocka_unit_test(test_rows_and_state),
    };
    return cmocka_run_group_tests(tests, build, cleanup);
}
