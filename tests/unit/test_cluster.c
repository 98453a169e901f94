/* Replication (issue 15): the follower's path (ledger_apply_block verifies
 * every block it did not seal, and refuses forged ones whole), and a real
 * three-node libraft cluster on loopback in one process: replication to
 * byte-identical chains, the leader stopped (a new leader, no acknowledged
 * block lost), the stopped node restarted and caught up from the log, and a
 * node whose pinned genesis differs refusing the cluster's and halting.
 * Ports are chosen by binding to port 0. Waits poll with generous
 * deadlines; nothing asserts on elapsed time. */
#include "testutil.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "crypto/crypto.h"
#include "ledger/ledger.h"

typedef struct {
    uint8_t pk[LEDGER_KEY], sk[LEDGER_SECRET];
} key;

static void keygen(key *k) { ledger_keypair(k->pk, k->sk); }

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static ledger *open_ledger(const char *path, const key *node, const key *admin, const key *nodes, size_t n_nodes,
                           bool deferred, const ledger_consensus *cons) {
    ledger_options o;
    ledger_options_defaults(&o);
    o.path = path;
    o.batch_ms = 2;
    o.consensus = cons;
    memcpy(o.node_pk, node->pk, 32);
    memcpy(o.node_sk, node->sk, 64);
    if (admin) {
        memcpy(o.admin_pk, admin->pk, 32);
        memcpy(o.admin_sk, admin->sk, 64);
    }
    o.n_genesis_nodes = n_nodes;
    for (size_t i = 0; i < n_nodes; i++) memcpy(o.genesis_nodes[i], nodes[i].pk, 32);
    o.genesis_deferred = deferred;
    core_error err = {0};
    ledger *l = NULL;
    if (ledger_open(&o, &l, &err)) fail_msg("ledger_open %s: %s", path, err.message);
    return l;
}

/* n fresh wallets register (each its own transaction, nonce 1). */
static void wallet_txs(size_t n, uint8_t (*bufs)[LEDGER_TX_MAX], size_t *lens) {
    for (size_t i = 0; i < n; i++) {
        key w;
        keygen(&w);
        ledger_tx tx = {.kind = LEDGER_TX_REGISTER_WALLET, .nonce = 1};
        lens[i] = ledger_tx_sign(&tx, w.sk, bufs[i], LEDGER_TX_MAX);
        assert_true(lens[i] > 0);
    }
}

static void head_hash(ledger *l, uint8_t out[32], uint64_t *height) {
    ledger_block h;
    assert_int_equal(ledger_head(l, &h, NULL), CORE_OK);
    ledger_block_hash(&h, out);
    if (height) *height = h.height;
}

/* Apply block h of src to dst as a follower would. */
static core_status copy_block(ledger *src, ledger *dst, uint64_t h, core_error *err) {
    ledger_block b;
    uint8_t **txs;
    size_t *lens, n;
    assert_int_equal(ledger_get_block_txs(src, h, &b, &txs, &lens, &n, NULL), CORE_OK);
    core_status rc = ledger_apply_block(dst, &b, (const uint8_t *const *)txs, lens, n, err);
    ledger_free_txs(txs, lens, n);
    return rc;
}

/* ---- the follower's path, without raft ---- */

typedef struct {
    char dir[256], pa[300], pb[300], pc[300];
    key node_a, node_b, admin, stranger;
    key nodes[2];
    ledger *a, *b;
} pair;

static int pair_setup(void **state) {
    pair *p = calloc(1, sizeof *p);
    testutil_tmpdir(p->dir);
    snprintf(p->pa, sizeof p->pa, "%s/a.db", p->dir);
    snprintf(p->pb, sizeof p->pb, "%s/b.db", p->dir);
    snprintf(p->pc, sizeof p->pc, "%s/c.db", p->dir);
    keygen(&p->node_a);
    keygen(&p->node_b);
    keygen(&p->admin);
    keygen(&p->stranger);
    p->nodes[0] = p->node_a;
    p->nodes[1] = p->node_b;
    /* a seals (alone, no consensus); b only follows. */
    p->a = open_ledger(p->pa, &p->node_a, &p->admin, p->nodes, 2, false, NULL);
    p->b = open_ledger(p->pb, &p->node_b, &p->admin, p->nodes, 2, true, NULL);
    *state = p;
    return 0;
}

static int pair_teardown(void **state) {
    pair *p = *state;
    ledger_close(p->a);
    ledger_close(p->b);
    testutil_rmdir(p->dir);
    free(p);
    return 0;
}

/* The next block a sealed, as a follower receives it, to be forged. */
typedef struct {
    ledger_block b;
    uint8_t **txs;
    size_t *lens, n;
} fetched;

static void fetch(ledger *l, uint64_t h, fetched *f) {
    assert_int_equal(ledger_get_block_txs(l, h, &f->b, &f->txs, &f->lens, &f->n, NULL), CORE_OK);
}

static core_status apply(ledger *l, const fetched *f, core_error *err) {
    return ledger_apply_block(l, &f->b, (const uint8_t *const *)f->txs, f->lens, f->n, err);
}

/* The root a block with these transactions after `base` earlier ones has. */
static void root_over(ledger *src, uint64_t base, const fetched *f, uint8_t root[32]) {
    ledger_tree *t = ledger_tree_new();
    assert_non_null(t);
    for (uint64_t s = 0; s < base; s++) {
        uint8_t *buf;
        size_t len;
        uint64_t h;
        assert_int_equal(ledger_get_tx_at(src, s, &buf, &len, &h, NULL), CORE_OK);
        uint8_t id[32];
        ledger_tx_id(buf, len, id);
        free(buf);
        assert_int_equal(ledger_tree_append(t, id, NULL), CORE_OK);
    }
    for (size_t i = 0; i < f->n; i++) {
        uint8_t id[32];
        ledger_tx_id(f->txs[i], f->lens[i], id);
        assert_int_equal(ledger_tree_append(t, id, NULL), CORE_OK);
    }
    ledger_tree_root(t, ledger_tree_size(t), root);
    ledger_tree_free(t);
}

static void expect_refused(pair *p, const fetched *f, core_status code, const char *why) {
    uint8_t before[32], after[32];
    uint64_t hb, ha;
    head_hash(p->b, before, &hb);
    core_error err = {0};
    assert_int_equal(apply(p->b, f, &err), code);
    if (!strstr(err.message, why)) fail_msg("expected \"%s\" in \"%s\"", why, err.message);
    head_hash(p->b, after, &ha);
    assert_int_equal(ha, hb);
    assert_memory_equal(after, before, 32);
}

static void test_follower_applies_and_refuses_forgeries(void **state) {
    pair *p = *state;
    core_error err = {0};
    /* Genesis and two blocks of wallets, copied to b: identical chains. */
    uint8_t bufs[8][LEDGER_TX_MAX];
    size_t lens[8];
    const uint8_t *ptrs[8];
    ledger_receipt r[8];
    for (int round = 0; round < 2; round++) {
        wallet_txs(8, bufs, lens);
        for (int i = 0; i < 8; i++) ptrs[i] = bufs[i];
        assert_int_equal(ledger_submit_many(p->a, ptrs, lens, 8, r, NULL), CORE_OK);
        for (int i = 0; i < 8; i++) assert_int_equal(r[i].status, CORE_OK);
    }
    uint64_t top;
    uint8_t ha[32], hb[32];
    head_hash(p->a, ha, &top);
    for (uint64_t h = 0; h <= top; h++)
        if (copy_block(p->a, p->b, h, &err)) fail_msg("block %llu: %s", (unsigned long long)h, err.message);
    head_hash(p->b, hb, NULL);
    assert_memory_equal(ha, hb, 32);
    /* Replayed (already applied) or out of order: refused, nothing changes. */
    fetched f;
    fetch(p->a, top, &f);
    expect_refused(p, &f, CORE_ERR_INVALID, "does not follow the head");
    ledger_free_txs(f.txs, f.lens, f.n);

    /* The next genuine block, and forgeries of it. */
    wallet_txs(4, bufs, lens);
    for (int i = 0; i < 4; i++) ptrs[i] = bufs[i];
    assert_int_equal(ledger_submit_many(p->a, ptrs, lens, 4, r, NULL), CORE_OK);
    fetch(p->a, top + 1, &f);
    fetched g = f;

    /* 1. A header whose signature does not verify. */
    g.b.sig[5] ^= 1;
    expect_refused(p, &g, CORE_ERR_CRYPTO, "block signature is invalid");
    g.b = f.b;
    /* 2. A wrong Merkle root, properly signed by a node key. */
    g.b.root[0] ^= 1;
    ledger_block_sign(&g.b, p->node_a.sk);
    expect_refused(p, &g, CORE_ERR_INVALID, "Merkle root does not match");
    /* 3. Signed by a key that is not a node's (root and all else right). */
    g.b = f.b;
    ledger_block_sign(&g.b, p->stranger.sk);
    expect_refused(p, &g, CORE_ERR_CRYPTO, "not a node key");
    /* 4. A transaction altered after signing (header re-signed over the
     * altered ids, so only the transaction's own signature tells). */
    uint8_t forged[LEDGER_TX_MAX];
    memcpy(forged, f.txs[1], f.lens[1]);
    forged[f.lens[1] - 1] ^= 1;
    uint8_t *saved = g.txs[1];
    g.txs[1] = forged;
    g.b = f.b;
    root_over(p->a, f.b.tree_size - f.b.tx_count, &g, g.b.root);
    ledger_block_sign(&g.b, p->node_a.sk);
    expect_refused(p, &g, CORE_ERR_CRYPTO, "signature is invalid");
    g.txs[1] = saved;
    /* 5. A validly signed transaction the rules refuse (a wallet that
     * registered in an earlier block registers again), root and header
     * correct and signed by a node. */
    uint8_t *old;
    size_t old_len;
    uint64_t old_h;
    assert_int_equal(ledger_get_tx_at(p->a, f.b.tree_size - f.b.tx_count - 1, &old, &old_len, &old_h, NULL), CORE_OK);
    g.txs[1] = old;
    size_t saved_len = g.lens[1];
    g.lens[1] = old_len;
    g.b = f.b;
    root_over(p->a, f.b.tree_size - f.b.tx_count, &g, g.b.root);
    ledger_block_sign(&g.b, p->node_a.sk);
    expect_refused(p, &g, CORE_ERR_INVALID, "breaks the ledger rules");
    g.txs[1] = saved;
    g.lens[1] = saved_len;
    free(old);
    /* 6. A transaction missing (count and tree size no longer agree). */
    g.b = f.b;
    g.n = f.n - 1;
    expect_refused(p, &g, CORE_ERR_INVALID, "transaction count");
    /* The refusals left nothing behind: the genuine block applies. */
    if (apply(p->b, &f, &err)) fail_msg("genuine block: %s", err.message);
    head_hash(p->a, ha, NULL);
    head_hash(p->b, hb, NULL);
    assert_memory_equal(ha, hb, 32);
    ledger_free_txs(f.txs, f.lens, f.n);
    /* b's file stands on its own: the offline verifier replays it. */
    ledger_verify_report rep;
    if (ledger_verify_file(p->pb, 1, &rep, &err)) fail_msg("verify b: %s", err.message);
    assert_int_equal(rep.blocks, top + 2);
}

static void test_follower_refuses_foreign_genesis(void **state) {
    pair *p = *state;
    core_error err = {0};
    /* A follower pinned to other node keys refuses a's genesis. */
    key other[2] = {p->node_b, p->stranger};
    ledger *c = open_ledger(p->pc, &p->node_b, &p->admin, other, 2, true, NULL);
    assert_int_equal(copy_block(p->a, c, 0, &err), CORE_ERR_CRYPTO);
    assert_non_null(strstr(err.message, "other node keys"));
    ledger_block h;
    assert_int_equal(ledger_head(c, &h, NULL), CORE_ERR_NOT_FOUND);
    /* Nor does a follower with no genesis take transactions of its own. */
    uint8_t bufs[1][LEDGER_TX_MAX];
    size_t lens[1];
    wallet_txs(1, bufs, lens);
    ledger_receipt r;
    assert_int_equal(ledger_submit(c, bufs[0], lens[0], &r, NULL), CORE_ERR_INVALID);
    ledger_close(c);
    /* The pinned one takes it. */
    assert_int_equal(copy_block(p->a, p->b, 0, &err), CORE_OK);
}

/* ---- three raft nodes on loopback ---- */

#define N 3

typedef struct {
    char dir[256];
    key admin, keys[N];
    cluster_options copt[N];
    char raft_dir[N][300], db[N][300];
    cluster *c[N];
    ledger *l[N];
    bool up[N];
} trio;

static uint16_t free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s);
    return ntohs(a.sin_port);
}

static void node_start(trio *t, int i) {
    core_error err = {0};
    if (cluster_open(&t->copt[i], &t->c[i], &err)) fail_msg("cluster_open: %s", err.message);
    t->l[i] = open_ledger(t->db[i], &t->keys[i], &t->admin, t->keys, N, true, cluster_consensus(t->c[i]));
    if (cluster_start(t->c[i], t->l[i], &err)) fail_msg("cluster_start %d: %s", i, err.message);
    t->up[i] = true;
}

static void node_stop(trio *t, int i) {
    if (!t->up[i]) return;
    cluster_stop(t->c[i]);
    ledger_close(t->l[i]);
    cluster_close(t->c[i]);
    t->c[i] = NULL;
    t->l[i] = NULL;
    t->up[i] = false;
}

static int trio_setup(void **state) {
    trio *t = calloc(1, sizeof *t);
    testutil_tmpdir(t->dir);
    keygen(&t->admin);
    cluster_node nodes[N];
    for (int i = 0; i < N; i++) {
        keygen(&t->keys[i]);
        nodes[i] = (cluster_node){.id = (uint64_t)i + 1};
        snprintf(nodes[i].address, sizeof nodes[i].address, "127.0.0.1:%u", (unsigned)free_port());
        snprintf(nodes[i].forward, sizeof nodes[i].forward, "127.0.0.1:%u", (unsigned)free_port());
        memcpy(nodes[i].key, t->keys[i].pk, 32);
    }
    for (int i = 0; i < N; i++) {
        snprintf(t->raft_dir[i], sizeof t->raft_dir[i], "%s/n%d/raft", t->dir, i + 1);
        snprintf(t->db[i], sizeof t->db[i], "%s/n%d/ledger.db", t->dir, i + 1);
        cluster_options *o = &t->copt[i];
        cluster_options_defaults(o);
        o->self = (uint64_t)i + 1;
        o->n_nodes = N;
        memcpy(o->nodes, nodes, sizeof nodes);
        o->dir = t->raft_dir[i];
        core_error err = {0};
        char d[300];
        snprintf(d, sizeof d, "%s/n%d", t->dir, i + 1);
        assert_int_equal(core_mkdirs(d, &err), CORE_OK);
    }
    *state = t;
    return 0;
}

static int trio_teardown(void **state) {
    trio *t = *state;
    for (int i = 0; i < N; i++) node_stop(t, i);
    testutil_rmdir(t->dir);
    free(t);
    return 0;
}

/* The node ready to take proposals, or -1 after the deadline. */
static int wait_leader(trio *t, double seconds) {
    double until = core_monotonic() + seconds;
    do {
        for (int i = 0; i < N; i++) {
            if (!t->up[i]) continue;
            cluster_status s;
            cluster_get_status(t->c[i], &s);
            if (s.ready) return i;
        }
        sleep_ms(20);
    } while (core_monotonic() < until);
    return -1;
}

/* Wait until every running node's head is the same block and at least
 * min_height; then compare every block hash node by node. */
static uint64_t wait_converged(trio *t, uint64_t min_height, double seconds) {
    double until = core_monotonic() + seconds;
    for (;;) {
        bool same = true;
        uint8_t first[32] = {0};
        bool have_first = false;
        uint64_t height = 0;
        for (int i = 0; i < N && same; i++) {
            if (!t->up[i]) continue;
            ledger_block h;
            if (ledger_head(t->l[i], &h, NULL)) {
                same = false;
                break;
            }
            uint8_t hash[32];
            ledger_block_hash(&h, hash);
            if (!have_first) {
                memcpy(first, hash, 32);
                height = h.height;
                have_first = true;
            } else if (memcmp(first, hash, 32) != 0) {
                same = false;
            }
        }
        if (same && have_first && height >= min_height) {
            for (uint64_t h = 0; h <= height; h++) {
                ledger_block ref, b;
                int r0 = -1;
                for (int i = 0; i < N; i++) {
                    if (!t->up[i]) continue;
                    if (r0 < 0) {
                        r0 = i;
                        assert_int_equal(ledger_get_block(t->l[i], h, &ref, NULL), CORE_OK);
                        continue;
                    }
                    assert_int_equal(ledger_get_block(t->l[i], h, &b, NULL), CORE_OK);
                    uint8_t x[32], y[32];
                    ledger_block_hash(&ref, x);
                    ledger_block_hash(&b, y);
                    assert_memory_equal(x, y, 32);
                }
            }
            return height;
        }
        if (core_monotonic() > until) fail_msg("the nodes did not converge on one chain in %.0f s", seconds);
        sleep_ms(20);
    }
}

/* Submit rounds × per fresh wallets on whichever node leads, retrying a
 * transaction the cluster did not take (not acknowledged) until it is;
 * every acknowledged txid goes to acked. Returns the median round latency. */
static double write_rounds(trio *t, int rounds, int per, uint8_t (*acked)[32], size_t *n_acked) {
    uint8_t bufs[16][LEDGER_TX_MAX];
    size_t lens[16];
    const uint8_t *ptrs[16];
    ledger_receipt r[16];
    double lat[64];
    int nl = 0;
    assert_true(per <= 16 && rounds <= 64);
    for (int round = 0; round < rounds; round++) {
        wallet_txs((size_t)per, bufs, lens);
        int left = per;
        double until = core_monotonic() + 60;
        while (left > 0) {
            if (core_monotonic() > until) fail_msg("round %d: writes were not acknowledged in 60 s", round);
            int lead = wait_leader(t, 30);
            if (lead < 0) fail_msg("no leader within 30 s");
            for (int i = 0; i < left; i++) ptrs[i] = bufs[i];
            double t0 = core_monotonic();
            assert_int_equal(ledger_submit_many(t->l[lead], ptrs, lens, (size_t)left, r, NULL), CORE_OK);
            double dt = core_monotonic() - t0;
            int keep = 0;
            for (int i = 0; i < left; i++) {
                if (r[i].status == CORE_OK) {
                    memcpy(acked[(*n_acked)++], r[i].txid, 32);
                } else {
                    /* Not acknowledged: the leader changed or it is catching up. */
                    memmove(bufs[keep], bufs[i], lens[i]);
                    lens[keep++] = lens[i];
                }
            }
            if (keep == 0 && nl < 64) lat[nl++] = dt;
            if (keep) sleep_ms(50);
            left = keep;
        }
    }
    for (int i = 1; i < nl; i++)
        for (int j = i; j > 0 && lat[j] < lat[j - 1]; j--) {
            double x = lat[j];
            lat[j] = lat[j - 1];
            lat[j - 1] = x;
        }
    return nl ? lat[nl / 2] : 0;
}

/* Every acknowledged transaction is on every running node. */
static void expect_acked_everywhere(trio *t, uint8_t (*acked)[32], size_t n) {
    for (int i = 0; i < N; i++) {
        if (!t->up[i]) continue;
        for (size_t k = 0; k < n; k++) {
            uint8_t *buf = NULL;
            size_t len;
            uint64_t seq, h;
            core_status rc = ledger_get_tx(t->l[i], acked[k], &buf, &len, &seq, &h, NULL);
            if (rc) fail_msg("node %d lost acknowledged transaction %zu", i + 1, k);
            free(buf);
        }
    }
}

static void test_three_nodes_replicate_and_fail_over(void **state) {
    trio *t = *state;
    for (int i = 0; i < N; i++) node_start(t, i);
    /* The first leader seals genesis; everyone gets the same block 0. */
    assert_true(wait_leader(t, 30) >= 0);
    wait_converged(t, 0, 30);
    static uint8_t acked[1024][32];
    size_t n_acked = 0;
    double p50 = write_rounds(t, 10, 8, acked, &n_acked);
    uint64_t h1 = wait_converged(t, 1, 30);
    expect_acked_everywhere(t, acked, n_acked);
    print_message("3 nodes: %zu transactions in %llu blocks; median commit of a round %.1f ms\n", n_acked,
                  (unsigned long long)h1, p50 * 1000);

    /* Stop the leader: the other two elect one and carry on. */
    int old = wait_leader(t, 30);
    assert_true(old >= 0);
    double t0 = core_monotonic();
    node_stop(t, old);
    int lead = wait_leader(t, 30);
    if (lead < 0) fail_msg("no new leader within 30 s of stopping node %d", old + 1);
    assert_int_not_equal(lead, old);
    print_message("fail-over: node %d leads %.2f s after node %d stopped\n", lead + 1, core_monotonic() - t0, old + 1);
    write_rounds(t, 5, 8, acked, &n_acked);
    uint64_t h2 = wait_converged(t, h1 + 1, 30);
    expect_acked_everywhere(t, acked, n_acked);

    /* The stopped node comes back and catches up from the raft log. */
    node_start(t, old);
    write_rounds(t, 2, 4, acked, &n_acked);
    wait_converged(t, h2 + 1, 60);
    expect_acked_everywhere(t, acked, n_acked);
    for (int i = 0; i < N; i++) {
        cluster_status s;
        cluster_get_status(t->c[i], &s);
        assert_false(s.halted);
    }
    /* Each node's file verifies offline, genesis listing all three keys. */
    for (int i = 0; i < N; i++) {
        ledger_verify_report rep;
        core_error err = {0};
        if (ledger_verify_file(t->db[i], 1, &rep, &err)) fail_msg("verify node %d: %s", i + 1, err.message);
        assert_true(rep.txs >= n_acked + 1);
    }
}

typedef struct {
    core_error why;
    _Atomic bool heard; /* set after why, read by the test thread */
} halt_note;

static void note_halt(void *ud, const core_error *why) {
    halt_note *n = ud;
    n->why = *why;
    atomic_store(&n->heard, true);
}

/* A node pinned to another admin key refuses the cluster's genesis through
 * raft, halts and says why; the other two (a majority) carry on. */
static void test_node_refusing_a_block_halts(void **state) {
    trio *t = *state;
    key other_admin;
    keygen(&other_admin);
    /* Node 3 is slow to stand for election, so one of the honest two leads. */
    t->copt[2].election_ms = 8000;
    halt_note seen = {0};
    t->copt[2].on_halt = note_halt;
    t->copt[2].on_halt_ud = &seen;
    for (int i = 0; i < 2; i++) node_start(t, i);
    core_error err = {0};
    assert_int_equal(cluster_open(&t->copt[2], &t->c[2], &err), CORE_OK);
    ledger_options o;
    ledger_options_defaults(&o);
    o.path = t->db[2];
    o.batch_ms = 2;
    o.consensus = cluster_consensus(t->c[2]);
    memcpy(o.node_pk, t->keys[2].pk, 32);
    memcpy(o.node_sk, t->keys[2].sk, 64);
    memcpy(o.admin_pk, other_admin.pk, 32); /* no admin secret: it cannot seal a genesis */
    o.n_genesis_nodes = N;
    for (int i = 0; i < N; i++) memcpy(o.genesis_nodes[i], t->keys[i].pk, 32);
    o.genesis_deferred = true;
    if (ledger_open(&o, &t->l[2], &err)) fail_msg("open: %s", err.message);
    if (cluster_start(t->c[2], t->l[2], &err)) fail_msg("start: %s", err.message);
    t->up[2] = true;

    double until = core_monotonic() + 30;
    cluster_status s;
    do {
        sleep_ms(20);
        cluster_get_status(t->c[2], &s);
    } while ((!s.halted || !atomic_load(&seen.heard)) && core_monotonic() < until);
    assert_true(s.halted);
    assert_int_equal(s.halt.code, CORE_ERR_CRYPTO);
    assert_non_null(strstr(s.halt.message, "another admin key"));
    assert_true(atomic_load(&seen.heard));
    assert_string_equal(seen.why.message, s.halt.message); /* the hook heard it too */
    ledger_block h;
    assert_int_equal(ledger_head(t->l[2], &h, NULL), CORE_ERR_NOT_FOUND); /* nothing of it applied */
    /* The majority commits on. */
    static uint8_t acked[64][32];
    size_t n_acked = 0;
    node_stop(t, 2);
    write_rounds(t, 2, 4, acked, &n_acked);
    wait_converged(t, 1, 30);
    expect_acked_everywhere(t, acked, n_acked);
}

/* ---- forwarding: any node takes writes ---- */

/* A running node that does not lead (or -1). */
static int a_follower(trio *t) {
    for (int i = 0; i < N; i++) {
        if (!t->up[i]) continue;
        cluster_status s;
        cluster_get_status(t->c[i], &s);
        if (!s.ready) return i;
    }
    return -1;
}

/* The transaction is at (seq, height) on node i, in a block whose header
 * equals the one on node j. */
static void expect_same_place(trio *t, int i, int j, const uint8_t txid[32], uint64_t seq, uint64_t height) {
    uint8_t *buf = NULL;
    size_t len;
    uint64_t s, h;
    if (ledger_get_tx(t->l[i], txid, &buf, &len, &s, &h, NULL)) fail_msg("node %d lacks the transaction", i + 1);
    free(buf);
    assert_int_equal(s, seq);
    assert_int_equal(h, height);
    ledger_block a, b;
    assert_int_equal(ledger_get_block(t->l[i], height, &a, NULL), CORE_OK);
    assert_int_equal(ledger_get_block(t->l[j], height, &b, NULL), CORE_OK);
    uint8_t x[32], y[32];
    ledger_block_hash(&a, x);
    ledger_block_hash(&b, y);
    assert_memory_equal(x, y, 32);
}

static void anchor_tx(ledger_tx *tx) {
    memset(tx, 0, sizeof *tx);
    tx->kind = LEDGER_TX_ANCHOR;
    cs_crypto_random(tx->u.anchor.commitment, 32);
}

/* A follower's writes: submitted there, sealed by the leader, on the
 * follower's own ledger when the call returns (read-your-writes); then the
 * follower's node-held key signs with a nonce its lagging state got wrong
 * (it was down while its earlier writes committed) and still succeeds once. */
static void test_follower_writes_are_forwarded(void **state) {
    trio *t = *state;
    for (int i = 0; i < N; i++) node_start(t, i);
    int lead = wait_leader(t, 30);
    assert_true(lead >= 0);
    wait_converged(t, 0, 30);
    int f = a_follower(t);
    assert_true(f >= 0);

    uint8_t bufs[8][LEDGER_TX_MAX];
    size_t lens[8];
    const uint8_t *ptrs[8];
    ledger_receipt r[8];
    wallet_txs(8, bufs, lens);
    for (int i = 0; i < 8; i++) ptrs[i] = bufs[i];
    assert_int_equal(ledger_submit_many(t->l[f], ptrs, lens, 8, r, NULL), CORE_OK);
    lead = wait_leader(t, 30);
    for (int i = 0; i < 8; i++) {
        if (r[i].status) fail_msg("forwarded tx %d: %s", i, r[i].error.message);
        uint8_t id[32];
        ledger_tx_id(bufs[i], lens[i], id);
        assert_memory_equal(id, r[i].txid, 32);
        /* On the follower already (no wait), where the receipt says, in the
         * block the leader sealed. */
        expect_same_place(t, f, lead, r[i].txid, r[i].seq, r[i].height);
    }
    /* A refusal comes back as the leader's: the same wallet again. */
    ledger_receipt again;
    assert_int_equal(ledger_submit(t->l[f], bufs[0], lens[0], &again, NULL), CORE_ERR_CONFLICT);
    assert_string_equal(again.error.field, "nonce");

    /* Server-held key on the follower: sign_submit assigns nonces. */
    key w;
    keygen(&w);
    ledger_tx tx = {.kind = LEDGER_TX_REGISTER_WALLET};
    ledger_receipt rr;
    core_error err = {0};
    if (ledger_sign_submit(t->l[f], &tx, w.sk, &rr, &err)) fail_msg("sign_submit on a follower: %s", err.message);
    assert_int_equal(tx.nonce, 1);
    for (int k = 0; k < 3; k++) {
        anchor_tx(&tx);
        if (ledger_sign_submit(t->l[f], &tx, w.sk, &rr, &err)) fail_msg("anchor %d: %s", k, err.message);
        expect_same_place(t, f, f, rr.txid, rr.seq, rr.height);
    }
    assert_int_equal(tx.nonce, 4);
    cluster_status st;
    cluster_get_status(t->c[f], &st);
    assert_true(st.forwarded >= 12);

    /* The follower goes down; its key's later writes commit without it (as
     * if it had forwarded them and crashed before applying them). Back up,
     * its state says nonce 4 until it catches up; its next write must still
     * commit exactly once. */
    node_stop(t, f);
    lead = wait_leader(t, 30);
    assert_true(lead >= 0);
    for (int k = 0; k < 30; k++) {
        anchor_tx(&tx);
        if (ledger_sign_submit(t->l[lead], &tx, w.sk, &rr, &err)) fail_msg("anchor on the leader: %s", err.message);
    }
    assert_int_equal(tx.nonce, 34);
    node_start(t, f);
    cluster_get_status(t->c[f], &st);
    uint64_t before = st.forwarded;
    anchor_tx(&tx);
    if (ledger_sign_submit(t->l[f], &tx, w.sk, &rr, &err)) fail_msg("after restart: %s", err.message);
    assert_int_equal(tx.nonce, 35);
    cluster_get_status(t->c[f], &st);
    print_message("restarted follower: its write took %llu forward(s) (2: the stale nonce was re-signed)\n",
                  (unsigned long long)(st.forwarded - before));
    ledger_account acct;
    assert_int_equal(ledger_get_account(t->l[f], w.pk, &acct, NULL), CORE_OK);
    assert_int_equal(acct.nonce, 35);
    wait_converged(t, rr.height, 60);
}

typedef struct {
    trio *t;
    int node;
    _Atomic bool stop;
    size_t n, ok, not_leader, other;
    uint8_t ids[4096][32];
    core_status status[4096];
    char other_why[240];
} writer;

static void *write_loop(void *arg) {
    writer *w = arg;
    uint8_t bufs[4][LEDGER_TX_MAX];
    size_t lens[4];
    const uint8_t *ptrs[4];
    ledger_receipt r[4];
    while (!atomic_load(&w->stop) && w->n + 4 <= 4096) {
        wallet_txs(4, bufs, lens);
        for (int i = 0; i < 4; i++) ptrs[i] = bufs[i];
        if (ledger_submit_many(w->t->l[w->node], ptrs, lens, 4, r, NULL)) continue;
        for (int i = 0; i < 4; i++) {
            memcpy(w->ids[w->n], r[i].txid, 32);
            w->status[w->n++] = r[i].status;
            if (r[i].status == CORE_OK)
                __atomic_add_fetch(&w->ok, 1, __ATOMIC_RELAXED);
            else if (r[i].status == CORE_ERR_IO && strcmp(r[i].error.field, "leader") == 0)
                w->not_leader++;
            else if (w->other++ == 0)
                snprintf(w->other_why, sizeof w->other_why, "%s", r[i].error.message);
        }
    }
    return NULL;
}

/* A follower keeps writing while the leader is stopped: each forwarded
 * write commits once or fails as not_leader; none is refused as a replay
 * (a retried request answers the first attempt's commit) and none is on
 * the chain twice. */
static void test_forward_survives_leader_loss(void **state) {
    trio *t = *state;
    for (int i = 0; i < N; i++) node_start(t, i);
    int lead = wait_leader(t, 30);
    assert_true(lead >= 0);
    wait_converged(t, 0, 30);
    int f = a_follower(t);
    assert_true(f >= 0 && f != lead);
    static writer w;
    memset(&w, 0, sizeof w);
    w.t = t;
    w.node = f;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, write_loop, &w), 0);
    double until = core_monotonic() + 30;
    while (__atomic_load_n(&w.ok, __ATOMIC_RELAXED) < 40 && core_monotonic() < until) sleep_ms(10);
    node_stop(t, lead); /* mid-way: requests are in flight to it */
    int next = wait_leader(t, 30);
    if (next < 0) fail_msg("no new leader");
    size_t ok_then = __atomic_load_n(&w.ok, __ATOMIC_RELAXED);
    until = core_monotonic() + 30;
    while (__atomic_load_n(&w.ok, __ATOMIC_RELAXED) < ok_then + 40 && core_monotonic() < until) sleep_ms(10);
    atomic_store(&w.stop, true);
    pthread_join(th, NULL);
    cluster_status st;
    cluster_get_status(t->c[f], &st);
    print_message("forwarded through a leader change: %zu committed, %zu not_leader, %llu retried requests\n", w.ok,
                  w.not_leader, (unsigned long long)st.forward_retries);
    if (w.other) fail_msg("%zu forwarded writes failed otherwise: %s", w.other, w.other_why);
    assert_true(w.ok >= ok_then + 40);
    uint64_t h = wait_converged(t, 1, 60);
    ledger_block head;
    assert_int_equal(ledger_head(t->l[f], &head, NULL), CORE_OK);
    assert_true(head.height >= h);
    /* Every acknowledged write on both running nodes; no txid twice. */
    uint8_t(*acked)[32] = malloc(w.n * 32);
    size_t na = 0;
    for (size_t i = 0; i < w.n; i++)
        if (w.status[i] == CORE_OK) memcpy(acked[na++], w.ids[i], 32);
    expect_acked_everywhere(t, acked, na);
    free(acked);
    uint8_t(*all)[32] = malloc((size_t)head.tree_size * 32);
    for (uint64_t q = 0; q < head.tree_size; q++) {
        uint8_t *buf;
        size_t len;
        uint64_t bh;
        assert_int_equal(ledger_get_tx_at(t->l[f], q, &buf, &len, &bh, NULL), CORE_OK);
        ledger_tx_id(buf, len, all[q]);
        free(buf);
        for (uint64_t z = 0; z < q; z++)
            if (memcmp(all[z], all[q], 32) == 0)
                fail_msg("transaction %llu is on the chain twice", (unsigned long long)q);
    }
    free(all);
}

/* The forward port itself: a hostile frame is dropped without harm; a
 * request marked as a retry of a transaction already committed answers its
 * position, while the same request as a first attempt is a replay. */
static int raw_connect(const char *addr) {
    char host[64];
    snprintf(host, sizeof host, "%s", addr);
    char *colon = strrchr(host, ':');
    *colon = 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, host, &a.sin_addr);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    assert_int_equal(connect(s, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {10, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return s;
}

static void be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* Send one forward request of tx (flags as given); returns the first
 * receipt's status and fills seq/height. -1: no answer. */
static int raw_forward(const char *addr, uint8_t flags, const uint8_t *tx, size_t len, uint64_t *seq,
                       uint64_t *height) {
    uint8_t req[8 + 5 + 2 + LEDGER_TX_MAX];
    memcpy(req, "CSF1", 4);
    be32(req + 4, (uint32_t)(5 + 2 + len));
    req[8] = flags;
    be32(req + 9, 1);
    req[13] = (uint8_t)(len >> 8), req[14] = (uint8_t)len;
    memcpy(req + 15, tx, len);
    int s = raw_connect(addr);
    assert_int_equal(send(s, req, 15 + len, MSG_NOSIGNAL), (ssize_t)(15 + len));
    uint8_t resp[4096];
    size_t got = 0;
    ssize_t k;
    while (got < sizeof resp && (k = recv(s, resp + got, sizeof resp - got, 0)) > 0) got += (size_t)k;
    close(s);
    if (got < 8 + 23 || memcmp(resp, "CSR1", 4) != 0 || resp[8] != 0) return -1;
    const uint8_t *b = resp + 8;
    size_t off = 19 + ((size_t)b[17] << 8 | b[18]) + 4;
    int st = b[off];
    uint64_t v = 0, w = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | b[off + 1 + i], w = w << 8 | b[off + 9 + i];
    *seq = v;
    *height = w;
    return st;
}

static void test_forward_port_frames(void **state) {
    trio *t = *state;
    for (int i = 0; i < N; i++) node_start(t, i);
    int lead = wait_leader(t, 30);
    assert_true(lead >= 0);
    wait_converged(t, 0, 30);
    const char *addr = t->copt[lead].nodes[lead].forward;
    /* Hostile frames: a length past the cap, a wrong magic, a truncated
     * body. Each connection is closed with nothing answered. */
    const uint8_t huge[8] = {'C', 'S', 'F', '1', 0x7f, 0xff, 0xff, 0xff};
    const uint8_t magic[8] = {'X', 'X', 'X', 'X', 0, 0, 0, 5};
    const uint8_t *bad[] = {huge, magic};
    for (int i = 0; i < 2; i++) {
        int s = raw_connect(addr);
        assert_int_equal(send(s, bad[i], 8, MSG_NOSIGNAL), 8);
        uint8_t x[16];
        assert_true(recv(s, x, sizeof x, 0) <= 0);
        close(s);
    }
    /* A body claiming 300 transactions (past the cap): refused, kind 2. */
    uint8_t many[8 + 5];
    memcpy(many, "CSF1", 4);
    be32(many + 4, 5);
    many[8] = 0;
    be32(many + 9, 300);
    int s = raw_connect(addr);
    assert_int_equal(send(s, many, sizeof many, MSG_NOSIGNAL), (ssize_t)sizeof many);
    uint8_t x[512];
    ssize_t k = recv(s, x, sizeof x, 0);
    close(s);
    assert_true(k >= 9);
    assert_memory_equal(x, "CSR1", 4);
    assert_int_equal(x[8], 2);

    /* The leader still works: a fresh wallet commits (first attempt). */
    uint8_t tx[1][LEDGER_TX_MAX];
    size_t len[1];
    wallet_txs(1, tx, len);
    uint64_t seq = 0, height = 0, seq2 = 0, height2 = 0;
    assert_int_equal(raw_forward(addr, 0, tx[0], len[0], &seq, &height), CORE_OK);
    /* The same bytes again as a first attempt: a replay, refused. */
    assert_int_equal(raw_forward(addr, 0, tx[0], len[0], &seq2, &height2), CORE_ERR_CONFLICT);
    /* As a retry: the first attempt's commit, same position. */
    assert_int_equal(raw_forward(addr, 1, tx[0], len[0], &seq2, &height2), CORE_OK);
    assert_int_equal(seq2, seq);
    assert_int_equal(height2, height);
    /* A follower's port answers "not the leader", and nothing is written. */
    int f = a_follower(t);
    assert_true(f >= 0);
    wallet_txs(1, tx, len);
    assert_int_equal(raw_forward(t->copt[f].nodes[f].forward, 0, tx[0], len[0], &seq, &height), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_follower_applies_and_refuses_forgeries, pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_follower_refuses_foreign_genesis, pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_three_nodes_replicate_and_fail_over, trio_setup, trio_teardown),
        cmocka_unit_test_setup_teardown(test_node_refusing_a_block_halts, trio_setup, trio_teardown),
        cmocka_unit_test_setup_teardown(test_follower_writes_are_forwarded, trio_setup, trio_teardown),
        cmocka_unit_test_setup_teardown(test_forward_survives_leader_loss, trio_setup, trio_teardown),
        cmocka_unit_test_setup_teardown(test_forward_port_frames, trio_setup, trio_teardown),
    };
    assert_int_equal(cs_crypto_init(NULL), CORE_OK);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
