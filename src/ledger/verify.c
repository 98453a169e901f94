/* ledger — offline verification of a whole ledger file, and offline proofs.
 *
 * verify trusts nothing in the file except the genesis block's claim of who
 * the admin and nodes are; it reports the genesis hash and the keys, and an
 * auditor who learnt them out of band pins them (ledger_verify_pins), which
 * is what tells the real ledger from one re-signed with fresh keys. It
 * replays every block into a fresh in-memory database with the very state
 * machine the producer uses, so any stored byte that disagrees — a header, a
 * signature, a transaction body, its id, its place in the log, or a row of
 * derived state — is found and named. */
#include "ledger/internal.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"

typedef struct {
    uint64_t seq;
    uint8_t *body;
    size_t len;
    uint8_t txid[LEDGER_HASH]; /* as stored */
    int64_t height;            /* as stored */
    bool sig_ok;
} vtx;

typedef struct {
    vtx *v;
    size_t from, to;
} sig_job;

static void *sig_worker(void *arg) {
    sig_job *j = arg;
    for (size_t i = j->from; i < j->to; i++) j->v[i].sig_ok = ledger_tx_check_signature(j->v[i].body, j->v[i].len);
    return NULL;
}

/* Check signatures of n transactions on up to `threads` threads. */
static void check_signatures(vtx *v, size_t n, int threads) {
    if (threads > 16) threads = 16;
    if (threads < 2 || n < 64) {
        sig_job j = {v, 0, n};
        sig_worker(&j);
        return;
    }
    pthread_t th[16];
    sig_job jobs[16];
    int started = 0;
    size_t per = (n + (size_t)threads - 1) / (size_t)threads;
    for (int t = 0; t < threads; t++) {
        jobs[t] = (sig_job){v, (size_t)t * per, (size_t)(t + 1) * per < n ? (size_t)(t + 1) * per : n};
        if (jobs[t].from >= jobs[t].to) break;
        if (t == 0 || pthread_create(&th[t], NULL, sig_worker, &jobs[t]) != 0) {
            if (t > 0) sig_worker(&jobs[t]);
            continue;
        }
        started |= 1 << t;
    }
    sig_worker(&jobs[0]);
    for (int t = 1; t < threads; t++)
        if (started & (1 << t)) pthread_join(th[t], NULL);
}

static core_status bad(ledger_verify_report *r, core_error *err, core_status code, int64_t height, int64_t seq,
                       const uint8_t *txid, const char *fmt, const char *detail) {
    r->bad_height = height;
    r->bad_seq = seq;
    if (txid) cs_crypto_hex(txid, LEDGER_HASH, r->bad_txid);
    char where[96] = "";
    if (seq >= 0)
        snprintf(where, sizeof where, "block %lld, transaction %lld: ", (long long)height, (long long)seq);
    else if (height >= 0)
        snprintf(where, sizeof where, "block %lld: ", (long long)height);
    return core_fail(err, code, seq >= 0 ? "tx" : "block", "%s%s%s%s", where, fmt, detail ? ": " : "",
                     detail ? detail : "");
}

static core_status open_ro(const char *path, sqlite3 **db, core_error *err) {
    *db = NULL;
    if (sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        core_fail(err, CORE_ERR_IO, "ledger", "cannot open %s: %s", path, *db ? sqlite3_errmsg(*db) : "out of memory");
        sqlite3_close(*db);
        *db = NULL;
        return CORE_ERR_IO;
    }
    sqlite3_busy_timeout(*db, 5000);
    sqlite3_stmt *q = NULL;
    int app = 0, ver = 0;
    if (sqlite3_prepare_v2(*db, "PRAGMA application_id", -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        app = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    if (sqlite3_prepare_v2(*db, "PRAGMA user_version", -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        ver = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    if (app != ledger_schema()->application_id || ver < 1 || ver > ledger_schema()->count) {
        sqlite3_close(*db);
        *db = NULL;
        return core_fail(err, CORE_ERR_VERSION, "ledger", "%s is not a ledger database this caresync can read", path);
    }
    return CORE_OK;
}

/* Compare one derived-state table between the replay (main) and the file
 * (disk); on a difference name the first differing key. */
static core_status compare_table(sqlite3 *mem, const char *table, const char *key, ledger_verify_report *r,
                                 core_error *err) {
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT hex(%s) FROM (SELECT * FROM (SELECT * FROM main.%s EXCEPT SELECT * FROM disk.%s) UNION ALL "
             "SELECT * FROM (SELECT * FROM disk.%s EXCEPT SELECT * FROM main.%s)) LIMIT 1",
             key, table, table, table, table);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(mem, sql, -1, &q, NULL) != SQLITE_OK) return store_error(mem, err);
    int s = sqlite3_step(q);
    char which[160] = "";
    if (s == SQLITE_ROW) snprintf(which, sizeof which, "%s %s", key, (const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    if (s == SQLITE_ROW) {
        char msg[96];
        snprintf(msg, sizeof msg, "stored state table '%s' differs from the replay", table);
        return bad(r, err, CORE_ERR_INVALID, -1, -1, NULL, msg, which);
    }
    return s == SQLITE_DONE ? CORE_OK : store_error(mem, err);
}

static bool pinned_node(const ledger_verify_pins *pins, const uint8_t key[LEDGER_KEY]) {
    if (!pins || pins->n_nodes == 0) return true;
    for (size_t i = 0; i < pins->n_nodes; i++)
        if (cs_crypto_equal(pins->nodes[i], key, LEDGER_KEY)) return true;
    return false;
}

static void note_proposer(ledger_verify_report *r, const uint8_t key[LEDGER_KEY]) {
    for (size_t i = 0; i < r->n_proposers; i++)
        if (memcmp(r->proposers[i], key, LEDGER_KEY) == 0) return;
    if (r->n_proposers < LEDGER_MAX_NODES) memcpy(r->proposers[r->n_proposers++], key, LEDGER_KEY);
}

/* Where the replay is: the last good header and the buffer of the block's
 * transactions being checked. */
typedef struct {
    sqlite3 *disk, *mem;
    ledger_state *state;
    int threads;
    const ledger_verify_pins *pins;
    ledger_verify_report *r;
    sqlite3_stmt *qt; /* a block's transactions: seq >= ?1 LIMIT ?2 */
    ledger_tree *tree;
    vtx *v;
    size_t vcap;
    ledger_block prev;
    bool have_prev;
} replay_ctx;

/* The header of block h (stored hash, chain, signature, time, count) and
 * the pins. */
static core_status check_header(replay_ctx *x, int64_t h, const ledger_block *b, const void *stored_hash,
                                int stored_hash_len, core_error *err) {
    ledger_verify_report *r = x->r;
    uint8_t hash[LEDGER_HASH];
    ledger_block_hash(b, hash);
    uint64_t expect_h = x->have_prev ? x->prev.height + 1 : 0;
    uint8_t expect_prev[LEDGER_HASH] = {0};
    if (x->have_prev) ledger_block_hash(&x->prev, expect_prev);
    uint64_t base = x->have_prev ? x->prev.tree_size : 0;
    if ((uint64_t)h != expect_h || b->height != expect_h)
        return bad(r, err, CORE_ERR_INVALID, h, -1, NULL, "height is out of sequence", NULL);
    if (stored_hash_len != LEDGER_HASH || !cs_crypto_equal(stored_hash, hash, LEDGER_HASH))
        return bad(r, err, CORE_ERR_INVALID, h, -1, NULL, "stored block hash does not match the header", NULL);
    if (!cs_crypto_equal(b->prev, expect_prev, LEDGER_HASH))
        return bad(r, err, CORE_ERR_INVALID, h, -1, NULL, "previous-block hash does not match: the chain is broken",
                   NULL);
    if (!ledger_block_check_signature(b))
        return bad(r, err, CORE_ERR_CRYPTO, h, -1, NULL, "block signature is invalid", NULL);
    if (x->have_prev && b->time_ms < x->prev.time_ms)
        return bad(r, err, CORE_ERR_INVALID, h, -1, NULL, "block time goes backwards", NULL);
    if (b->tx_count == 0 || b->tree_size != base + b->tx_count)
        return bad(r, err, CORE_ERR_INVALID, h, -1, NULL, "transaction count does not match the tree size", NULL);
    /* The pins: a ledger re-signed with fresh keys passes every check
     * above, since its genesis names its own keys; only keys learnt out
     * of band tell it apart. */
    char hex[2 * LEDGER_HASH + 1];
    if (b->height == 0) {
        memcpy(r->genesis, hash, LEDGER_HASH);
        if (x->pins && x->pins->genesis && !cs_crypto_equal(x->pins->genesis, hash, LEDGER_HASH)) {
            cs_crypto_hex(hash, LEDGER_HASH, hex);
            return bad(r, err, CORE_ERR_CRYPTO, h, -1, NULL, "genesis is not the pinned one (--genesis); its hash is",
                       hex);
        }
    }
    if (!pinned_node(x->pins, b->proposer)) {
        cs_crypto_hex(b->proposer, LEDGER_KEY, hex);
        return bad(r, err, CORE_ERR_CRYPTO, h, -1, NULL,
                   "block is signed by a key that is not a pinned node key (--node-key)", hex);
    }
    note_proposer(r, b->proposer);
    return CORE_OK;
}

/* Read block h's transactions into x->v (bodies malloc'd; *n of them). */
static core_status load_block_txs(replay_ctx *x, int64_t h, const ledger_block *b, uint64_t base, size_t *n,
                                  core_error *err) {
    *n = 0;
    if (b->tx_count > x->vcap) {
        vtx *nv = realloc(x->v, b->tx_count * sizeof *x->v);
        if (!nv) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        x->v = nv;
        x->vcap = b->tx_count;
    }
    core_status rc = CORE_OK;
    sqlite3_stmt *qt = x->qt;
    sqlite3_bind_int64(qt, 1, (int64_t)base);
    sqlite3_bind_int64(qt, 2, b->tx_count);
    int s;
    while ((s = sqlite3_step(qt)) == SQLITE_ROW) {
        assert(*n < b->tx_count); /* LIMIT tx_count */
        vtx *t = &x->v[*n];
        t->seq = (uint64_t)sqlite3_column_int64(qt, 0);
        t->height = sqlite3_column_int64(qt, 2);
        memset(t->txid, 0, LEDGER_HASH);
        if (sqlite3_column_bytes(qt, 1) == LEDGER_HASH) memcpy(t->txid, sqlite3_column_blob(qt, 1), LEDGER_HASH);
        t->len = (size_t)sqlite3_column_bytes(qt, 3);
        t->body = malloc(t->len ? t->len : 1);
        if (!t->body) {
            rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
            break;
        }
        if (t->len) memcpy(t->body, sqlite3_column_blob(qt, 3), t->len);
        (*n)++;
    }
    sqlite3_reset(qt);
    if (!rc && *n != b->tx_count)
        rc = bad(x->r, err, CORE_ERR_INVALID, h, (int64_t)(base + *n), NULL, "transaction missing from the log", NULL);
    return rc;
}

/* Check block h's n loaded transactions one by one and apply them. */
static core_status replay_block_txs(replay_ctx *x, int64_t h, const ledger_block *b, uint64_t base, size_t n,
                                    core_error *err) {
    ledger_verify_report *r = x->r;
    check_signatures(x->v, n, x->threads);
    core_status rc = CORE_OK;
    for (size_t i = 0; !rc && i < n; i++) {
        vtx *t = &x->v[i];
        ledger_tx tx;
        uint8_t id[LEDGER_HASH];
        ledger_tx_id(t->body, t->len, id);
        core_error te = {0};
        if (t->seq != base + i)
            rc = bad(r, err, CORE_ERR_INVALID, h, (int64_t)(base + i), NULL, "transaction missing from the log", NULL);
        else if (t->height != h)
            rc =
                bad(r, err, CORE_ERR_INVALID, h, (int64_t)t->seq, id, "transaction is filed under another block", NULL);
        else if (ledger_tx_decode(t->body, t->len, &tx, &te))
            rc = bad(r, err, CORE_ERR_INVALID, h, (int64_t)t->seq, id, "transaction does not decode", te.message);
        else if (!t->sig_ok)
            rc = bad(r, err, CORE_ERR_CRYPTO, h, (int64_t)t->seq, id, "transaction signature is invalid", NULL);
        else if (!cs_crypto_equal(id, t->txid, LEDGER_HASH))
            rc = bad(r, err, CORE_ERR_INVALID, h, (int64_t)t->seq, id, "stored transaction id does not match its bytes",
                     NULL);
        else if (ledger_state_apply(x->state, &tx, t->body, t->len, id, t->seq, (uint64_t)h, b->time_ms, &te))
            rc = bad(r, err, CORE_ERR_INVALID, h, (int64_t)t->seq, id, "transaction breaks the ledger rules",
                     te.message);
        else
            rc = ledger_tree_append(x->tree, id, err);
    }
    return rc;
}

/* Blocks are proposed by a node key in force (checked after the genesis
 * block has installed the first node set); notes the admin key in force. */
static core_status check_proposer(replay_ctx *x, int64_t h, const ledger_block *b, core_error *err) {
    ledger_tx params;
    sqlite3_stmt *qp = NULL;
    bool proposer_ok = false;
    if (sqlite3_prepare_v2(x->mem, "SELECT value FROM meta WHERE key = 'params'", -1, &qp, NULL) == SQLITE_OK &&
        sqlite3_step(qp) == SQLITE_ROW &&
        ledger_tx_decode(sqlite3_column_blob(qp, 0), (size_t)sqlite3_column_bytes(qp, 0), &params, NULL) == CORE_OK)
        for (int k = 0; k < params.u.params.n_nodes; k++)
            if (cs_crypto_equal(params.u.params.nodes[k], b->proposer, LEDGER_KEY)) proposer_ok = true;
    sqlite3_finalize(qp);
    if (!proposer_ok) return bad(x->r, err, CORE_ERR_CRYPTO, h, -1, NULL, "block proposer is not a node key", NULL);
    memcpy(x->r->admin, params.u.params.admin, LEDGER_KEY);
    return CORE_OK;
}

/* One stored block: header, transactions, root, proposer, derived state. */
static core_status replay_block(replay_ctx *x, sqlite3_stmt *qb, core_error *err) {
    int64_t h = sqlite3_column_int64(qb, 0);
    ledger_block b;
    core_error e = {0};
    if (ledger_block_decode(sqlite3_column_blob(qb, 2), (size_t)sqlite3_column_bytes(qb, 2), &b, &e))
        return bad(x->r, err, CORE_ERR_INVALID, h, -1, NULL, "header does not decode", e.message);
    core_status rc = check_header(x, h, &b, sqlite3_column_blob(qb, 1), sqlite3_column_bytes(qb, 1), err);
    if (rc) return rc;
    uint64_t base = x->have_prev ? x->prev.tree_size : 0;
    size_t n = 0;
    rc = load_block_txs(x, h, &b, base, &n, err);
    if (!rc) rc = replay_block_txs(x, h, &b, base, n, err);
    for (size_t i = 0; i < n; i++) free(x->v[i].body);
    if (rc) return rc;
    uint8_t root[LEDGER_HASH];
    ledger_tree_root(x->tree, b.tree_size, root);
    if (!cs_crypto_equal(root, b.root, LEDGER_HASH))
        return bad(x->r, err, CORE_ERR_INVALID, h, -1, NULL, "Merkle root does not match the block's transactions",
                   NULL);
    if ((rc = check_proposer(x, h, &b, err))) return rc;
    if ((rc = ledger_state_finish_block(x->state, &b, err))) return rc;
    x->prev = b;
    x->have_prev = true;
    x->r->blocks++;
    x->r->txs += b.tx_count;
    return CORE_OK;
}

/* Transactions beyond the last block were never sealed: tampering. */
static core_status check_unsealed(replay_ctx *x, core_error *err) {
    sqlite3_stmt *q = NULL;
    core_status rc = CORE_OK;
    if (store_prepare(x->disk, "SELECT seq FROM txs WHERE seq >= ?1 ORDER BY seq LIMIT 1", &q, err) == CORE_OK) {
        sqlite3_bind_int64(q, 1, (int64_t)x->prev.tree_size);
        if (sqlite3_step(q) == SQLITE_ROW)
            rc = bad(x->r, err, CORE_ERR_INVALID, (int64_t)x->prev.height, sqlite3_column_int64(q, 0), NULL,
                     "transaction is not covered by any block", NULL);
    }
    sqlite3_finalize(q);
    return rc;
}

static core_status replay(sqlite3 *disk, sqlite3 *mem, ledger_state *state, int threads, const ledger_verify_pins *pins,
                          ledger_verify_report *r, core_error *err) {
    replay_ctx x = {.disk = disk, .mem = mem, .state = state, .threads = threads, .pins = pins, .r = r};
    sqlite3_stmt *qb = NULL;
    core_status rc = store_prepare(disk, "SELECT height, hash, header FROM blocks ORDER BY height", &qb, err);
    if (!rc)
        rc = store_prepare(disk, "SELECT seq, txid, height, body FROM txs WHERE seq >= ?1 ORDER BY seq LIMIT ?2", &x.qt,
                           err);
    x.tree = ledger_tree_new();
    if (!rc && !x.tree) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    int s = SQLITE_DONE;
    while (!rc && (s = sqlite3_step(qb)) == SQLITE_ROW) rc = replay_block(&x, qb, err);
    if (!rc && s != SQLITE_DONE) rc = store_error(disk, err);
    if (!rc && !x.have_prev) rc = bad(r, err, CORE_ERR_INVALID, -1, -1, NULL, "the ledger has no blocks", NULL);
    if (!rc) rc = check_unsealed(&x, err);
    sqlite3_finalize(qb);
    sqlite3_finalize(x.qt);
    ledger_tree_free(x.tree);
    free(x.v);
    return rc;
}

core_status ledger_verify_file(const char *path, int threads, ledger_verify_report *r, core_error *err) {
    return ledger_verify_file_pinned(path, threads, NULL, r, err);
}

core_status ledger_verify_file_pinned(const char *path, int threads, const ledger_verify_pins *pins,
                                      ledger_verify_report *r, core_error *err) {
    memset(r, 0, sizeof *r);
    r->bad_height = r->bad_seq = -1;
    double t0 = core_monotonic();
    sqlite3 *disk = NULL, *mem = NULL;
    ledger_state *state = NULL;
    core_status rc = open_ro(path, &disk, err);
    if (!rc && sqlite3_open_v2(":memory:", &mem, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, NULL) != SQLITE_OK)
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "cannot open an in-memory database");
    if (!rc) rc = store_migrate_schema(mem, ledger_schema(), ledger_schema()->count, err);
    if (!rc) rc = ledger_state_open(mem, &state, err);
    if (!rc) rc = store_begin(mem, err);
    /* The disk connection holds one read transaction for the whole replay,
     * so a server writing meanwhile cannot show us half a block. */
    if (!rc && sqlite3_exec(disk, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) rc = store_error(disk, err);
    if (!rc) rc = replay(disk, mem, state, threads, pins, r, err);
    if (!rc) {
        /* Compare derived state. ATTACH needs the path quoted as a literal. */
        char *sql = sqlite3_mprintf("ATTACH DATABASE 'file:%q?mode=ro' AS disk", path);
        if (!sql || sqlite3_exec(mem, sql, NULL, NULL, NULL) != SQLITE_OK) rc = store_error(mem, err);
        sqlite3_free(sql);
        static const char *const tables[][2] = {{"signers", "pubkey"},  {"consents", "grant_txid"},
                                                {"orgs", "pubkey"},     {"commitments", "commitment"},
                                                {"postings", "wallet"}, {"meta", "key"}};
        for (size_t i = 0; !rc && i < sizeof tables / sizeof tables[0]; i++)
            rc = compare_table(mem, tables[i][0], tables[i][1], r, err);
        /* A file still at schema 1 has no escrows table, and cannot hold a
         * review transaction either (the replay would have made rows). */
        bool disk_escrows = false;
        sqlite3_stmt *qe = NULL;
        if (!rc && sqlite3_prepare_v2(mem, "SELECT 1 FROM disk.sqlite_master WHERE type = 'table' AND name = 'escrows'",
                                      -1, &qe, NULL) == SQLITE_OK)
            disk_escrows = sqlite3_step(qe) == SQLITE_ROW;
        sqlite3_finalize(qe);
        if (!rc && disk_escrows) rc = compare_table(mem, "escrows", "request_txid", r, err);
        if (!rc && !disk_escrows &&
            sqlite3_prepare_v2(mem, "SELECT hex(request_txid) FROM main.escrows LIMIT 1", -1, &qe, NULL) == SQLITE_OK) {
            if (sqlite3_step(qe) == SQLITE_ROW) {
                char which[96];
                snprintf(which, sizeof which, "request_txid %s", (const char *)sqlite3_column_text(qe, 0));
                rc = bad(r, err, CORE_ERR_INVALID, -1, -1, NULL, "stored state table 'escrows' differs from the replay",
                         which);
            }
            sqlite3_finalize(qe);
        }
    }
    /* Data requests (issue 14): the same rule as escrows for a file at an
     * older schema step (no table, so the replay must have made no rows). */
    static const char *const market[][2] = {{"market_escrows", "request_txid"}, {"market_payments", "request_txid"}};
    for (size_t i = 0; !rc && i < sizeof market / sizeof market[0]; i++) {
        bool on_disk = false;
        sqlite3_stmt *qm = NULL;
        if (sqlite3_prepare_v2(mem, "SELECT 1 FROM disk.sqlite_master WHERE type = 'table' AND name = ?1", -1, &qm,
                               NULL) == SQLITE_OK) {
            sqlite3_bind_text(qm, 1, market[i][0], -1, SQLITE_STATIC);
            on_disk = sqlite3_step(qm) == SQLITE_ROW;
        }
        sqlite3_finalize(qm);
        if (on_disk) {
            rc = compare_table(mem, market[i][0], market[i][1], r, err);
            continue;
        }
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT hex(request_txid) FROM main.%s LIMIT 1", market[i][0]);
        if (sqlite3_prepare_v2(mem, sql, -1, &qm, NULL) == SQLITE_OK && sqlite3_step(qm) == SQLITE_ROW) {
            char which[96], msg[96];
            snprintf(which, sizeof which, "request_txid %s", (const char *)sqlite3_column_text(qm, 0));
            snprintf(msg, sizeof msg, "stored state table '%s' differs from the replay", market[i][0]);
            rc = bad(r, err, CORE_ERR_INVALID, -1, -1, NULL, msg, which);
        }
        sqlite3_finalize(qm);
    }
    if (!rc) {
        /* The supply invariant, on the replayed state. */
        uint64_t minted, burned;
        ledger_state_totals(state, &minted, &burned);
        /* Tokens in an open review escrow (or what an open data request still
         * holds) left a balance without being burned: they count on the
         * balances' side until settled, paid out or refunded. Credits to
         * organisations are mints, in minted. */
        sqlite3_stmt *q = NULL;
        int64_t sum = -1, escrowed = -1;
        if (sqlite3_prepare_v2(mem,
                               "SELECT (SELECT coalesce(sum(balance), 0) FROM main.signers),"
                               " (SELECT coalesce(sum(amount), 0) FROM main.escrows WHERE outcome = 0)"
                               " + (SELECT coalesce(sum(remaining), 0) FROM main.market_escrows WHERE outcome = 0)",
                               -1, &q, NULL) == SQLITE_OK &&
            sqlite3_step(q) == SQLITE_ROW) {
            sum = sqlite3_column_int64(q, 0);
            escrowed = sqlite3_column_int64(q, 1);
        }
        sqlite3_finalize(q);
        if (burned > minted || sum < 0 || escrowed < 0 || (uint64_t)escrowed > LEDGER_AMOUNT_MAX - (uint64_t)sum ||
            (uint64_t)sum + (uint64_t)escrowed != minted - burned) {
            char d[160];
            snprintf(d, sizeof d, "sum of balances %lld, open escrow %lld, minted %llu, burned %llu", (long long)sum,
                     (long long)escrowed, (unsigned long long)minted, (unsigned long long)burned);
            rc = bad(r, err, CORE_ERR_INVALID, -1, -1, NULL, "supply invariant broken", d);
        }
    }
    if (disk) sqlite3_exec(disk, "COMMIT", NULL, NULL, NULL);
    ledger_state_close(state);
    sqlite3_close(mem);
    sqlite3_close(disk);
    r->seconds = core_monotonic() - t0;
    return rc;
}

core_status ledger_prove_file(const char *path, const uint8_t txid[LEDGER_HASH], ledger_proof *out, core_error *err) {
    memset(out, 0, sizeof *out);
    sqlite3 *db = NULL;
    core_status rc = open_ro(path, &db, err);
    if (rc) return rc;
    ledger_tree *tree = ledger_tree_new();
    sqlite3_stmt *q = NULL;
    if (!tree) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    if (!rc && sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) rc = store_error(db, err);
    if (!rc && !(rc = store_prepare(db, "SELECT header FROM blocks ORDER BY height DESC LIMIT 1", &q, err))) {
        if (sqlite3_step(q) == SQLITE_ROW)
            rc = ledger_block_decode(sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0), &out->head, err);
        else
            rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "the ledger has no blocks");
        sqlite3_finalize(q);
        q = NULL;
    }
    bool found = false;
    if (!rc &&
        !(rc = store_prepare(db, "SELECT seq, txid, height, body FROM txs WHERE seq < ?1 ORDER BY seq", &q, err))) {
        sqlite3_bind_int64(q, 1, (int64_t)out->head.tree_size);
        while (!rc && sqlite3_step(q) == SQLITE_ROW) {
            if (sqlite3_column_bytes(q, 1) != LEDGER_HASH) {
                rc = core_fail(err, CORE_ERR_INVALID, "txs", "bad transaction id at %lld; run caresync ledger verify",
                               sqlite3_column_int64(q, 0));
                break;
            }
            const uint8_t *id = sqlite3_column_blob(q, 1);
            if (!found && memcmp(id, txid, LEDGER_HASH) == 0) {
                int n = sqlite3_column_bytes(q, 3);
                if (n < 1 || n > LEDGER_TX_MAX) {
                    rc = core_fail(err, CORE_ERR_INVALID, "txs", "stored transaction has a bad length");
                    break;
                }
                memcpy(out->tx, sqlite3_column_blob(q, 3), (size_t)n);
                out->tx_len = (size_t)n;
                out->index = (uint64_t)sqlite3_column_int64(q, 0);
                out->height = (uint64_t)sqlite3_column_int64(q, 2);
                found = true;
            }
            rc = ledger_tree_append(tree, id, err);
        }
        sqlite3_finalize(q);
    }
    if (!rc && !found) rc = core_fail(err, CORE_ERR_NOT_FOUND, "txid", "no such transaction in the ledger");
    if (!rc && ledger_tree_size(tree) != out->head.tree_size)
        rc = core_fail(err, CORE_ERR_INVALID, "txs",
                       "the log is shorter than the last block says; run caresync ledger verify");
    if (!rc && !(rc = store_prepare(db, "SELECT header FROM blocks WHERE height = ?1", &q, err))) {
        sqlite3_bind_int64(q, 1, (int64_t)out->height);
        if (sqlite3_step(q) == SQLITE_ROW)
            rc = ledger_block_decode(sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0), &out->block, err);
        else
            rc = core_fail(err, CORE_ERR_INVALID, "blocks",
                           "the block holding the transaction is missing; run caresync ledger verify");
        sqlite3_finalize(q);
    }
    if (!rc) rc = ledger_tree_inclusion(tree, out->index, out->head.tree_size, out->path, &out->path_len, err);
    if (!rc)
        rc = ledger_tree_consistency(tree, out->block.tree_size, out->head.tree_size, out->cons, &out->cons_len, err);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    ledger_tree_free(tree);
    sqlite3_close(db);
    return rc;
}

core_status ledger_org_in_file(const char *path, const uint8_t org[LEDGER_KEY], char name[LEDGER_NAME_MAX + 1],
                               core_error *err) {
    sqlite3 *db = NULL;
    /* Read-only and without creating anything: the ledger's own process
     * (the service) is the only writer of ledger.db. */
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return core_fail(err, CORE_ERR_NOT_FOUND, "org",
                         "cannot read the ledger at %s (start the service once, and register the organisation)", path);
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *q = NULL;
    core_status rc = CORE_OK;
    if (sqlite3_prepare_v2(db, "SELECT name FROM orgs WHERE pubkey = ?", -1, &q, NULL) != SQLITE_OK) {
        rc = core_fail(err, CORE_ERR_STORAGE, NULL, "the ledger file cannot be read: %s", sqlite3_errmsg(db));
    } else {
        sqlite3_bind_blob(q, 1, org, LEDGER_KEY, SQLITE_STATIC);
        int step = sqlite3_step(q);
        if (step == SQLITE_ROW) {
            if (name) snprintf(name, LEDGER_NAME_MAX + 1, "%s", (const char *)sqlite3_column_text(q, 0));
        } else if (step == SQLITE_DONE) {
            rc = core_fail(err, CORE_ERR_NOT_FOUND, "org", "no such organisation (register it on the ledger first)");
        } else {
            rc = core_fail(err, CORE_ERR_STORAGE, NULL, "the ledger file cannot be read: %s", sqlite3_errmsg(db));
        }
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    return rc;
}
