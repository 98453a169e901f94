/* ledger — the live ledger: submission queue, block producer, queries.
 *
 * Submitters decode and signature-check their transactions in their own
 * threads (so with two cores two submitters verify in parallel), then queue
 * them and sleep. One producer thread takes what is queued — everything up
 * to batch_max, after waiting at most batch_ms for more — applies it to the
 * state inside one SQLite transaction, appends the accepted transactions to
 * the Merkle log, signs the block header and commits. One fsync therefore
 * covers a whole block ("group commit"), and a submitter is woken only after
 * that commit returned: an acknowledged transaction is durable.
 *
 * The producer is the only writer. Readers use a pool of read connections
 * (WAL gives them committed snapshots) and the in-memory tree under
 * tree_lock. Alone, the node's commit makes a block final; a replicated
 * consensus plugs in through ledger_options.consensus (propose() between
 * applying a block and committing it) and everything else stays. */
#include "ledger/internal.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto/crypto.h"

typedef struct pending {
    const uint8_t *buf;
    size_t len;
    ledger_tx tx;
    ledger_receipt *rcpt;
    bool done;
    struct pending *next;
    /* Asynchronous submissions (an async_item): nobody waits; the producer
     * calls cb once the block is settled, then frees the item. */
    ledger_submit_cb cb;
    void *ud;
    struct pending *anext; /* the batch's async items, collected by publish */
} pending;

/* What ledger_submit_async owns for one transaction until its callback has
 * run: the queue entry, the receipt and a copy of the bytes. */
typedef struct {
    pending p; /* first: a pending * of an async item is its async_item * */
    ledger_receipt r;
    uint8_t buf[LEDGER_TX_MAX];
} async_item;

/* A block another node sealed, waiting for the producer to check and apply
 * it (ledger_apply_block). The producer is the only writer, so followers'
 * blocks go through it too: no second write connection, no lock order. */
typedef struct foreign {
    const ledger_block *b;
    const uint8_t *const *txs;
    const size_t *lens;
    size_t n;
    core_status rc;
    core_error err;
    bool done;
    struct foreign *next;
} foreign;

/* Last nonce handed out per server-held key, so concurrent sign_submit
 * callers never reuse one (open addressing, grows at ½ load). */
typedef struct {
    uint8_t pk[LEDGER_KEY];
    uint64_t last;
    bool used;
} nonce_slot;

struct ledger {
    ledger_options opt;
    store *st;
    sqlite3 *wdb;        /* the producer's connection, never in the pool's free list */
    ledger_state *state; /* producer only */

    pthread_mutex_t tree_lock;
    ledger_tree *tree;

    pthread_mutex_t lock; /* queue, head, stats, closing, failed */
    pthread_cond_t work, done;
    pending *qhead, *qtail;
    size_t qlen;
    foreign *fhead, *ftail; /* followers' blocks, applied before any sealing */
    double oldest;          /* monotonic arrival of qhead */
    bool closing;
    /* The state could not be reloaded after a rollback, so the producer's
     * params and supply may be a rolled-back block's: every write and every
     * read of derived state is refused with `failure` until a restart. */
    bool failed;
    core_error failure;
    bool have_head;
    ledger_block head;
    ledger_stats stats;
    pthread_t producer;
    bool producer_running;

    pthread_mutex_t nonce_lock;
    nonce_slot *nonces;
    size_t nonce_cap, nonce_used;
};

/* Every default of the ledger lives here and nowhere else: callers (serve,
 * the CLI, tests, the benchmark) start from ledger_options_defaults(). */
static const ledger_options defaults = {
    .path = "var/ledger.db",
    .batch_ms = 10,
    .batch_max = 4096,
    .readers = 4,
    .genesis_reward = {[LEDGER_CAT_SCREENING] = 10,
                       [LEDGER_CAT_CONDITIONS] = 5,
                       [LEDGER_CAT_SYMPTOMS] = 5,
                       [LEDGER_CAT_DEMOGRAPHICS] = 2},
};

void ledger_options_defaults(ledger_options *opt) { *opt = defaults; }

const uint8_t *ledger_node_key(const ledger *l) { return l->opt.node_pk; }

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- sealing a block (producer thread, or open() for genesis) ---- */

static void fail_item(pending *p, core_status code, const core_error *e) {
    p->rcpt->status = code;
    if (e) p->rcpt->error = *e;
    p->rcpt->error.code = code;
}

/* CORE_OK, or the failed ledger's refusal (CORE_ERR_STORAGE) in err. */
static core_status check_usable(ledger *l, core_error *err) {
    pthread_mutex_lock(&l->lock);
    bool failed = l->failed;
    core_error why = l->failure;
    pthread_mutex_unlock(&l->lock);
    if (!failed) return CORE_OK;
    if (err) *err = why;
    return CORE_ERR_STORAGE;
}

/* One block in the making. */
typedef struct {
    ledger_block b;
    uint64_t base;               /* tree size before this block */
    size_t ok;                   /* transactions accepted so far */
    uint8_t (*ids)[LEDGER_HASH]; /* their ids, in order */
    pending **accepted;
    core_error err; /* why the block failed as a whole */
} block_work;

/* The next header's position, chained to the current head. */
static void start_block(ledger *l, block_work *w) {
    pthread_mutex_lock(&l->lock);
    ledger_block prev = l->head;
    bool have_prev = l->have_head;
    pthread_mutex_unlock(&l->lock);
    w->b.height = have_prev ? prev.height + 1 : 0;
    if (have_prev) ledger_block_hash(&prev, w->b.prev);
    w->b.time_ms = now_ms();
    if (have_prev && w->b.time_ms < prev.time_ms) w->b.time_ms = prev.time_ms; /* clock stepped back */
    w->base = have_prev ? prev.tree_size : 0;
}

/* Apply each pending transaction to the state inside the block's SQLite
 * transaction. A transaction the rules reject fails alone (it left nothing);
 * a storage failure or OOM fails the whole block. */
static core_status apply_batch(ledger *l, pending *batch, block_work *w) {
    core_status fatal = store_begin(l->wdb, &w->err);
    for (pending *p = batch; p && !fatal; p = p->next) {
        core_error e = {0};
        ledger_tx_id(p->buf, p->len, p->rcpt->txid);
        core_status rc = ledger_state_apply(l->state, &p->tx, p->buf, p->len, p->rcpt->txid, w->base + w->ok,
                                            w->b.height, w->b.time_ms, &e);
        if (rc == CORE_ERR_STORAGE || rc == CORE_ERR_NOMEM) {
            fatal = rc;
            w->err = e;
        } else if (rc) {
            fail_item(p, rc, &e);
        } else {
            memcpy(w->ids[w->ok], p->rcpt->txid, LEDGER_HASH);
            w->accepted[w->ok++] = p;
        }
    }
    return fatal;
}

/* Hand the block to the consensus, when there is one. */
static core_status propose_block(ledger *l, block_work *w) {
    if (!l->opt.consensus || !l->opt.consensus->propose) return CORE_OK;
    const uint8_t **bufs = malloc(w->ok * sizeof *bufs);
    size_t *lens = malloc(w->ok * sizeof *lens);
    core_status rc;
    if (!bufs || !lens) {
        rc = core_fail(&w->err, CORE_ERR_NOMEM, NULL, "out of memory proposing a block");
    } else {
        for (size_t i = 0; i < w->ok; i++) {
            bufs[i] = w->accepted[i]->buf;
            lens[i] = w->accepted[i]->len;
        }
        rc = l->opt.consensus->propose(l->opt.consensus->ud, &w->b, bufs, lens, w->ok, &w->err);
        if (rc && !w->err.message[0]) core_fail(&w->err, rc, NULL, "the block was not accepted by consensus");
    }
    free(bufs);
    free(lens);
    return rc;
}

/* Append the accepted ids to the Merkle log, sign the header (the signed
 * tree head), write it, let the consensus accept it and commit. */
static core_status finish_block(ledger *l, block_work *w) {
    assert(w->ok > 0); /* an empty block is never sealed */
    core_status rc = CORE_OK;
    pthread_mutex_lock(&l->tree_lock);
    assert(ledger_tree_size(l->tree) == w->base); /* the producer is the tree's only writer */
    for (size_t i = 0; i < w->ok && !rc; i++) rc = ledger_tree_append(l->tree, w->ids[i], &w->err);
    if (!rc) ledger_tree_root(l->tree, w->base + w->ok, w->b.root);
    pthread_mutex_unlock(&l->tree_lock);
    if (rc) return rc;
    w->b.tx_count = (uint32_t)w->ok;
    w->b.tree_size = w->base + w->ok;
    ledger_block_sign(&w->b, l->opt.node_sk);
    rc = ledger_state_finish_block(l->state, &w->b, &w->err);
    if (!rc) rc = propose_block(l, w);
    if (!rc) rc = store_commit(l->wdb, &w->err); /* the fsync that makes the block durable */
    return rc;
}

/* Undo an unsealed block: the SQLite transaction, the tree's new leaves and
 * the in-memory state (params and supply as committed). A state that cannot
 * be reloaded may hold the rolled-back block's supply, so the ledger stops
 * taking writes rather than build the next block on it. */
static void roll_back(ledger *l, const block_work *w) {
    store_rollback(l->wdb);
    pthread_mutex_lock(&l->tree_lock);
    ledger_tree_truncate(l->tree, w->base);
    pthread_mutex_unlock(&l->tree_lock);
    core_error e = {0};
    if (ledger_state_load(l->state, &e) == CORE_OK) return;
    pthread_mutex_lock(&l->lock);
    if (!l->failed) {
        l->failed = true;
        core_fail(&l->failure, CORE_ERR_STORAGE, NULL, "the ledger's state could not be reloaded; restart (%.150s)",
                  e.message);
    }
    pthread_mutex_unlock(&l->lock);
}

/* Publish the outcome and wake every submitter of the batch; then run the
 * callbacks of its asynchronous items, outside the lock (they may read the
 * ledger), and free them. The async list is gathered under the lock: once
 * `done` is set a synchronous waiter may free its item, so the batch list
 * is not walked after the unlock. */
static void publish(ledger *l, pending *batch, const block_work *w, core_status fatal) {
    pending *async = NULL, **tail = &async;
    pthread_mutex_lock(&l->lock);
    if (!fatal && w->ok > 0) {
        for (size_t i = 0; i < w->ok; i++) {
            w->accepted[i]->rcpt->seq = w->base + i;
            w->accepted[i]->rcpt->height = w->b.height;
        }
        l->head = w->b;
        l->have_head = true;
        l->stats.blocks++;
        l->stats.commits++;
        l->stats.committed += w->ok;
    }
    for (pending *p = batch; p; p = p->next) {
        if (p->rcpt->status) l->stats.rejected++;
        if (p->cb) {
            *tail = p;
            tail = &p->anext;
        }
        p->done = true;
    }
    pthread_cond_broadcast(&l->done);
    pthread_mutex_unlock(&l->lock);
    while (async) {
        pending *p = async;
        async = p->anext;
        p->cb(p->ud, p->rcpt);
        free(p);
    }
}

static void seal(ledger *l, pending *batch) {
    block_work w = {0};
    size_t n = 0;
    for (pending *p = batch; p; p = p->next) n++;
    core_status fatal = check_usable(l, &w.err);
    if (!fatal) {
        w.ids = malloc((n ? n : 1) * LEDGER_HASH);
        w.accepted = malloc((n ? n : 1) * sizeof *w.accepted);
        if (!w.ids || !w.accepted) fatal = core_fail(&w.err, CORE_ERR_NOMEM, NULL, "out of memory sealing a block");
    }
    if (!fatal) {
        start_block(l, &w);
        fatal = apply_batch(l, batch, &w);
        if (!fatal && w.ok > 0) fatal = finish_block(l, &w);
        if (fatal || w.ok == 0) roll_back(l, &w);
    }
    if (fatal)
        for (pending *p = batch; p; p = p->next)
            if (p->rcpt->status == CORE_OK) fail_item(p, fatal, &w.err);
    publish(l, batch, &w, fatal);
    free(w.ids);
    free(w.accepted);
}

/* ---- a block sealed elsewhere (producer thread) ---- */

static bool zero_bytes(const uint8_t *p, size_t n) {
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++) acc |= p[i];
    return acc == 0;
}

/* Block 0 received from another node must be the genesis this node was
 * configured with: the pinned admin key and exactly the pinned node keys,
 * otherwise a stranger could start the chain with keys of its own. */
static core_status check_genesis_pins(ledger *l, const ledger_block *b, core_error *err) {
    const ledger_tx *p = ledger_state_params(l->state);
    if (!p) return core_fail(err, CORE_ERR_INVALID, "params", "block 0 does not install the ledger's parameters");
    if (!ledger_state_is_node(l->state, b->proposer))
        return core_fail(err, CORE_ERR_CRYPTO, "proposer", "block 0 is signed by a key its parameters do not list");
    if (!zero_bytes(l->opt.admin_pk, LEDGER_KEY) && !cs_crypto_equal(p->u.params.admin, l->opt.admin_pk, LEDGER_KEY))
        return core_fail(err, CORE_ERR_CRYPTO, "admin", "block 0 names another admin key than this node's");
    size_t want = l->opt.n_genesis_nodes;
    if (want == 0) return CORE_OK;
    bool same = p->u.params.n_nodes == want;
    for (size_t i = 0; same && i < want; i++)
        same = cs_crypto_equal(p->u.params.nodes[i], l->opt.genesis_nodes[i], LEDGER_KEY);
    if (!same) return core_fail(err, CORE_ERR_CRYPTO, "nodes", "block 0 lists other node keys than this node's");
    return CORE_OK;
}

/* Every check of the header against the head before anything is written. */
static core_status check_foreign_header(ledger *l, const foreign *f, const block_work *w, bool have_prev,
                                        const ledger_block *prev, core_error *err) {
    const ledger_block *b = f->b;
    unsigned long long h = (unsigned long long)b->height;
    uint8_t prev_hash[LEDGER_HASH] = {0};
    if (have_prev) ledger_block_hash(prev, prev_hash);
    if (b->height != w->b.height)
        return core_fail(err, CORE_ERR_INVALID, "height", "block %llu does not follow the head (expected %llu)", h,
                         (unsigned long long)w->b.height);
    if (!cs_crypto_equal(b->prev, prev_hash, LEDGER_HASH))
        return core_fail(err, CORE_ERR_INVALID, "prev", "block %llu does not chain to the head", h);
    if (have_prev && b->time_ms < prev->time_ms)
        return core_fail(err, CORE_ERR_INVALID, "time", "block %llu: block time goes backwards", h);
    if (f->n == 0 || b->tx_count != f->n || b->tree_size != w->base + f->n)
        return core_fail(err, CORE_ERR_INVALID, "tx_count",
                         "block %llu: transaction count does not match the tree size", h);
    if (!ledger_block_check_signature(b))
        return core_fail(err, CORE_ERR_CRYPTO, "sig", "block %llu: the block signature is invalid", h);
    if (have_prev && !ledger_state_is_node(l->state, b->proposer))
        return core_fail(err, CORE_ERR_CRYPTO, "proposer", "block %llu is signed by a key that is not a node key", h);
    return CORE_OK;
}

/* Decode, signature-check and apply each transaction in order; any refusal
 * refuses the block (a producer seals only transactions it accepted). */
static core_status apply_foreign_txs(ledger *l, const foreign *f, block_work *w, core_error *err) {
    unsigned long long h = (unsigned long long)f->b->height;
    for (size_t i = 0; i < f->n; i++) {
        ledger_tx tx;
        core_error e = {0};
        unsigned long long seq = (unsigned long long)(w->base + i);
        if (ledger_tx_decode(f->txs[i], f->lens[i], &tx, &e))
            return core_fail(err, CORE_ERR_INVALID, "tx", "block %llu, transaction %llu does not decode: %.120s", h,
                             seq, e.message);
        if (!ledger_tx_check_signature(f->txs[i], f->lens[i]))
            return core_fail(err, CORE_ERR_CRYPTO, "tx", "block %llu, transaction %llu: the signature is invalid", h,
                             seq);
        ledger_tx_id(f->txs[i], f->lens[i], w->ids[i]);
        core_status rc = ledger_state_apply(l->state, &tx, f->txs[i], f->lens[i], w->ids[i], w->base + i, f->b->height,
                                            f->b->time_ms, &e);
        if (rc == CORE_ERR_STORAGE || rc == CORE_ERR_NOMEM) {
            *err = e;
            return rc;
        }
        if (rc)
            return core_fail(err, CORE_ERR_INVALID, "tx",
                             "block %llu, transaction %llu breaks the ledger rules: %.120s", h, seq, e.message);
    }
    return CORE_OK;
}

/* The Merkle log over the block's ids must end at the header's root. */
static core_status append_foreign_ids(ledger *l, const foreign *f, block_work *w, core_error *err) {
    core_status rc = CORE_OK;
    uint8_t root[LEDGER_HASH];
    pthread_mutex_lock(&l->tree_lock);
    assert(ledger_tree_size(l->tree) == w->base); /* the producer is the tree's only writer */
    for (size_t i = 0; i < f->n && !rc; i++) rc = ledger_tree_append(l->tree, w->ids[i], err);
    if (!rc) ledger_tree_root(l->tree, w->base + f->n, root);
    pthread_mutex_unlock(&l->tree_lock);
    if (!rc && !cs_crypto_equal(root, f->b->root, LEDGER_HASH))
        rc = core_fail(err, CORE_ERR_INVALID, "root", "block %llu: the Merkle root does not match its transactions",
                       (unsigned long long)f->b->height);
    return rc;
}

static core_status apply_foreign(ledger *l, const foreign *f, core_error *err) {
    core_status rc = check_usable(l, err);
    if (rc) return rc;
    pthread_mutex_lock(&l->lock);
    ledger_block prev = l->head;
    bool have_prev = l->have_head;
    pthread_mutex_unlock(&l->lock);
    block_work w = {0};
    w.b.height = have_prev ? prev.height + 1 : 0;
    w.base = have_prev ? prev.tree_size : 0;
    if ((rc = check_foreign_header(l, f, &w, have_prev, &prev, err))) return rc;
    w.ids = malloc(f->n * LEDGER_HASH);
    if (!w.ids) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    if ((rc = store_begin(l->wdb, err))) {
        free(w.ids);
        return rc;
    }
    rc = apply_foreign_txs(l, f, &w, err);
    if (!rc) rc = append_foreign_ids(l, f, &w, err);
    if (!rc && f->b->height == 0) rc = check_genesis_pins(l, f->b, err);
    if (!rc) rc = ledger_state_finish_block(l->state, f->b, err);
    if (!rc) rc = store_commit(l->wdb, err);
    if (rc) {
        roll_back(l, &w);
    } else {
        pthread_mutex_lock(&l->lock);
        l->head = *f->b;
        l->have_head = true;
        l->stats.blocks++;
        l->stats.commits++;
        l->stats.committed += f->n;
        pthread_mutex_unlock(&l->lock);
    }
    free(w.ids);
    return rc;
}

/* Take the first queued foreign block, apply it unlocked, wake its caller.
 * Called and returns with l->lock held. */
static void run_foreign_locked(ledger *l) {
    foreign *f = l->fhead;
    l->fhead = f->next;
    if (!l->fhead) l->ftail = NULL;
    pthread_mutex_unlock(&l->lock);
    core_error e = {0};
    core_status rc = apply_foreign(l, f, &e);
    pthread_mutex_lock(&l->lock);
    f->rc = rc;
    f->err = e;
    f->done = true;
    pthread_cond_broadcast(&l->done);
}

static void *producer_main(void *arg) {
    ledger *l = arg;
    pthread_mutex_lock(&l->lock);
    for (;;) {
        while (!l->qhead && !l->fhead && !l->closing) pthread_cond_wait(&l->work, &l->lock);
        if (l->fhead) {
            run_foreign_locked(l);
            continue;
        }
        if (!l->qhead) break;
        /* Wait for a fuller block, but never past batch_ms after the oldest
         * pending transaction arrived, and not at all when closing. */
        while (!l->closing && !l->fhead && l->qlen < (size_t)l->opt.batch_max) {
            double wait = l->oldest + l->opt.batch_ms / 1000.0 - core_monotonic();
            if (wait <= 0) break;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            long ns = ts.tv_nsec + (long)(wait * 1e9);
            ts.tv_sec += ns / 1000000000L;
            ts.tv_nsec = ns % 1000000000L;
            pthread_cond_timedwait(&l->work, &l->lock, &ts);
        }
        if (l->fhead) continue; /* a follower's block first: it extends the head this batch builds on */
        pending *batch = l->qhead, *last = batch;
        size_t taken = 1;
        while (last->next && taken < (size_t)l->opt.batch_max) {
            last = last->next;
            taken++;
        }
        l->qhead = last->next;
        if (!l->qhead) l->qtail = NULL;
        last->next = NULL;
        l->qlen -= taken;
        l->oldest = core_monotonic();
        pthread_mutex_unlock(&l->lock);
        seal(l, batch);
        pthread_mutex_lock(&l->lock);
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

/* ---- open / close ---- */

static core_status load_chain(ledger *l, core_error *err) {
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(l->wdb, "SELECT header FROM blocks ORDER BY height DESC LIMIT 1", &q, err);
    if (rc) return rc;
    if (sqlite3_step(q) == SQLITE_ROW) {
        rc = ledger_block_decode(sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0), &l->head, err);
        l->have_head = rc == CORE_OK;
    }
    sqlite3_finalize(q);
    if (rc) return rc;
    /* Rebuild the Merkle tree from the stored leaf hashes (32 bytes each:
     * a million transactions load in well under a second). */
    if ((rc = store_prepare(l->wdb, "SELECT seq, txid FROM txs ORDER BY seq", &q, err))) return rc;
    uint64_t want = 0;
    int step;
    while (!rc && (step = sqlite3_step(q)) == SQLITE_ROW) {
        if ((uint64_t)sqlite3_column_int64(q, 0) != want || sqlite3_column_bytes(q, 1) != LEDGER_HASH)
            rc = core_fail(err, CORE_ERR_INVALID, "txs",
                           "transaction log has a gap or a bad id at %llu; run caresync ledger verify",
                           (unsigned long long)want);
        else
            rc = ledger_tree_append(l->tree, sqlite3_column_blob(q, 1), err);
        want++;
    }
    sqlite3_finalize(q);
    if (rc) return rc;
    uint64_t size = l->have_head ? l->head.tree_size : 0;
    if (want != size)
        return core_fail(err, CORE_ERR_INVALID, "txs",
                         "the log holds %llu transactions but the last block says %llu; "
                         "run caresync ledger verify",
                         (unsigned long long)want, (unsigned long long)size);
    if (l->have_head) {
        uint8_t root[LEDGER_HASH];
        ledger_tree_root(l->tree, size, root);
        if (!cs_crypto_equal(root, l->head.root, LEDGER_HASH))
            return core_fail(err, CORE_ERR_INVALID, "blocks",
                             "the Merkle root of the stored log does not match block %llu; "
                             "run caresync ledger verify",
                             (unsigned long long)l->head.height);
    }
    return CORE_OK;
}

/* The genesis params transaction, signed by the admin key: the admin key,
 * the node keys (the configured set, or this node alone) and the rewards.
 * Returns its encoded length in buf, 0 if out of range. */
static size_t genesis_tx(ledger *l, ledger_tx *g, uint8_t buf[LEDGER_TX_MAX]) {
    *g = (ledger_tx){.kind = LEDGER_TX_PARAMS, .nonce = 1};
    memcpy(g->u.params.admin, l->opt.admin_pk, LEDGER_KEY);
    if (l->opt.n_genesis_nodes > 0) {
        g->u.params.n_nodes = (uint8_t)l->opt.n_genesis_nodes;
        memcpy(g->u.params.nodes, l->opt.genesis_nodes, l->opt.n_genesis_nodes * LEDGER_KEY);
    } else {
        g->u.params.n_nodes = 1;
        memcpy(g->u.params.nodes[0], l->opt.node_pk, LEDGER_KEY);
    }
    memcpy(g->u.params.reward, l->opt.genesis_reward, sizeof g->u.params.reward);
    return ledger_tx_sign(g, l->opt.admin_sk, buf, LEDGER_TX_MAX);
}

static core_status write_genesis(ledger *l, core_error *err) {
    static const uint8_t zero[LEDGER_SECRET];
    if (memcmp(l->opt.admin_sk, zero, LEDGER_SECRET) == 0)
        return core_fail(err, CORE_ERR_INVALID, "admin_key", "a new ledger needs an admin key for its genesis block");
    ledger_tx g;
    uint8_t buf[LEDGER_TX_MAX];
    size_t len = genesis_tx(l, &g, buf);
    if (!len) return core_fail(err, CORE_ERR_INVALID, "reward", "genesis parameters are out of range");
    ledger_receipt r = {0};
    pending p = {.buf = buf, .len = len, .tx = g, .rcpt = &r};
    seal(l, &p);
    if (r.status) {
        *err = r.error;
        return r.status;
    }
    return CORE_OK;
}

core_status ledger_open(const ledger_options *opt, ledger **out, core_error *err) {
    *out = NULL;
    static const uint8_t zero[LEDGER_SECRET];
    if (memcmp(opt->node_sk, zero, LEDGER_SECRET) == 0)
        return core_fail(err, CORE_ERR_INVALID, "node_key", "the ledger needs a node key");
    ledger *l = calloc(1, sizeof *l);
    if (!l) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    l->opt = *opt;
    if (l->opt.batch_ms < 0) l->opt.batch_ms = 0;
    if (l->opt.batch_max < 1) l->opt.batch_max = 1;
    if (l->opt.readers < 1) l->opt.readers = 1;
    pthread_mutex_init(&l->lock, NULL);
    pthread_mutex_init(&l->tree_lock, NULL);
    pthread_mutex_init(&l->nonce_lock, NULL);
    pthread_cond_init(&l->work, NULL);
    pthread_cond_init(&l->done, NULL);
    core_status rc = CORE_OK;
    l->tree = ledger_tree_new();
    if (!l->tree) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    if (!rc) rc = store_open_schema(opt->path, l->opt.readers + 1, ledger_schema(), &l->st, err);
    if (!rc) {
        l->wdb = store_acquire(l->st); /* kept for the ledger's lifetime */
        rc = ledger_state_open(l->wdb, &l->state, err);
    }
    if (!rc) rc = load_chain(l, err);
    if (!rc && opt->n_genesis_nodes > LEDGER_MAX_NODES)
        rc = core_fail(err, CORE_ERR_INVALID, "nodes", "at most %d node keys", LEDGER_MAX_NODES);
    if (!rc && !l->have_head && !opt->genesis_deferred) rc = write_genesis(l, err);
    if (!rc && l->have_head && !ledger_state_has_params(l->state))
        rc = core_fail(err, CORE_ERR_INVALID, "params",
                       "the ledger has blocks but no parameters; run caresync ledger verify");
    if (!rc) {
        if (pthread_create(&l->producer, NULL, producer_main, l) != 0)
            rc = core_fail(err, CORE_ERR_NOMEM, NULL, "cannot start the block producer");
        else
            l->producer_running = true;
    }
    if (rc) {
        ledger_close(l);
        return rc;
    }
    *out = l;
    return CORE_OK;
}

void ledger_close(ledger *l) {
    if (!l) return;
    pthread_mutex_lock(&l->lock);
    l->closing = true;
    pthread_cond_broadcast(&l->work);
    pthread_mutex_unlock(&l->lock);
    if (l->producer_running) pthread_join(l->producer, NULL);
    ledger_state_close(l->state);
    if (l->wdb) store_release(l->st, l->wdb);
    store_close(l->st);
    ledger_tree_free(l->tree);
    free(l->nonces);
    cs_crypto_wipe(l->opt.node_sk, sizeof l->opt.node_sk);
    cs_crypto_wipe(l->opt.admin_sk, sizeof l->opt.admin_sk);
    pthread_mutex_destroy(&l->lock);
    pthread_mutex_destroy(&l->tree_lock);
    pthread_mutex_destroy(&l->nonce_lock);
    pthread_cond_destroy(&l->work);
    pthread_cond_destroy(&l->done);
    free(l);
}

void ledger_get_stats(ledger *l, ledger_stats *out) {
    pthread_mutex_lock(&l->lock);
    *out = l->stats;
    pthread_mutex_unlock(&l->lock);
}

/* ---- submission ---- */

/* Why nothing more may be queued (l->lock held): the ledger is closing, or
 * failed. CORE_OK when it takes transactions. */
static core_status refusal_locked(ledger *l, core_error *err) {
    if (l->failed) {
        if (err) *err = l->failure;
        return CORE_ERR_STORAGE;
    }
    if (l->closing) return core_fail(err, CORE_ERR_IO, NULL, "the ledger is shutting down");
    return CORE_OK;
}

static void enqueue_locked(ledger *l, pending *p) {
    if (!l->qhead) l->oldest = core_monotonic();
    if (l->qtail)
        l->qtail->next = p;
    else
        l->qhead = p;
    l->qtail = p;
    l->qlen++;
}

/* ---- forwarding to the leader (a follower's writes, issue 15) ----
 *
 * A node that does not seal blocks (the consensus's leads() says no) still
 * decodes and signature-checks what it is given, then hands it to the
 * consensus's forward(), which submits it on the leader. Before answering,
 * the follower waits until its own head holds every acknowledged
 * transaction: the caller's next read on this node sees its write. */

#define FORWARD_NONCE_RETRIES 3

static nonce_slot *nonce_find(ledger *l, const uint8_t pk[LEDGER_KEY]);

static bool forwarding(const ledger *l) {
    const ledger_consensus *c = l->opt.consensus;
    return c && c->forward && c->leads && !c->leads(c->ud);
}

/* Wait (at most ms) until this ledger's head is at height or past it. */
static bool wait_head(ledger *l, uint64_t height, int ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long ns = ts.tv_nsec + (long)(ms % 1000) * 1000000L;
    ts.tv_sec += ms / 1000 + ns / 1000000000L;
    ts.tv_nsec = ns % 1000000000L;
    pthread_mutex_lock(&l->lock);
    while (!l->closing && !l->failed && (!l->have_head || l->head.height < height))
        if (pthread_cond_timedwait(&l->done, &l->lock, &ts) != 0) break;
    bool there = l->have_head && l->head.height >= height;
    pthread_mutex_unlock(&l->lock);
    return there;
}

static int forward_wait_ms(const ledger *l) {
    int ms = l->opt.consensus->forward_wait_ms;
    return ms > 0 ? ms : 10000;
}

/* Forward n checked transactions, fill rs (txids are this node's own), then
 * wait for the acknowledged ones to be applied here. */
static core_status forward_txs(ledger *l, const uint8_t *const *txs, const size_t *lens, size_t n, ledger_receipt *rs,
                               uint64_t *leader_height, core_error *err) {
    const ledger_consensus *c = l->opt.consensus;
    core_error why = {0};
    pthread_mutex_lock(&l->lock);
    core_status rc = refusal_locked(l, &why);
    pthread_mutex_unlock(&l->lock);
    *leader_height = 0;
    for (size_t i = 0; i < n; i++) {
        memset(&rs[i], 0, sizeof rs[i]);
        ledger_tx_id(txs[i], lens[i], rs[i].txid);
        if (rc) {
            rs[i].status = rc;
            rs[i].error = why;
            rs[i].error.code = rc;
        }
    }
    if (rc) return CORE_OK;
    if ((rc = c->forward(c->ud, txs, lens, n, rs, leader_height, err))) return rc;
    uint64_t top = 0;
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        ledger_tx_id(txs[i], lens[i], rs[i].txid);
        if (rs[i].status == CORE_OK) {
            any = true;
            if (rs[i].height > top) top = rs[i].height;
        }
    }
    if (any) wait_head(l, top, forward_wait_ms(l));
    return CORE_OK;
}

/* ledger_submit_many's forwarding: the items still pending (decoded and
 * signature-checked) go to the leader; their receipts come back. */
static core_status forward_items(ledger *l, pending *items, size_t n, core_error *err) {
    const uint8_t **txs = malloc(n * sizeof *txs);
    size_t *lens = malloc(n * sizeof *lens);
    ledger_receipt *rs = malloc(n * sizeof *rs);
    core_status rc = CORE_OK;
    if (!txs || !lens || !rs) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    size_t k = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        if (items[i].done) continue;
        txs[k] = items[i].buf;
        lens[k++] = items[i].len;
    }
    uint64_t lh;
    if (!rc) rc = forward_txs(l, txs, lens, k, rs, &lh, err);
    for (size_t i = 0, j = 0; !rc && i < n; i++)
        if (!items[i].done) *items[i].rcpt = rs[j++];
    free(txs);
    free(lens);
    free(rs);
    return rc;
}

/* ledger_sign_submit's forwarding. The nonce came from this node's state,
 * which may lag the leader's: after a restart, before this node has
 * applied everything it forwarded earlier; or when two of this node's
 * callers sign for one key and the leader receives the later nonce first.
 * The keys a node signs with are its own (its node key, its users' sealed
 * wallets), so no other node spends them and a stale nonce can only be one
 * this node itself used. On the leader's "nonce already used" the follower
 * waits until it has applied the leader's head, signs again with a nonce
 * past both its state and what it handed out, and retries (at most
 * FORWARD_NONCE_RETRIES times). A refused nonce left nothing on the chain,
 * so the retry never writes the same action twice. */
static core_status sign_forward(ledger *l, ledger_tx *tx, const uint8_t sk[LEDGER_SECRET], uint8_t *buf, size_t len,
                                ledger_receipt *receipt, core_error *err) {
    for (int attempt = 0;; attempt++) {
        const uint8_t *const txs[1] = {buf};
        uint64_t lh = 0;
        core_error fe = {0};
        core_status rc = forward_txs(l, txs, &len, 1, receipt, &lh, &fe);
        if (rc) {
            receipt->status = rc;
            receipt->error = fe;
            if (err) *err = fe;
            return rc;
        }
        if (attempt >= FORWARD_NONCE_RETRIES || receipt->status != CORE_ERR_CONFLICT ||
            strcmp(receipt->error.field, "nonce") != 0)
            break;
        wait_head(l, lh, forward_wait_ms(l));
        ledger_account acct;
        core_error e = {0};
        rc = ledger_get_account(l, sk + 32, &acct, &e);
        uint64_t stored = rc ? 0 : acct.nonce;
        pthread_mutex_lock(&l->nonce_lock);
        nonce_slot *slot = nonce_find(l, sk + 32);
        if (!slot) {
            pthread_mutex_unlock(&l->nonce_lock);
            return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        }
        tx->nonce = (slot->last > stored ? slot->last : stored) + 1;
        len = ledger_tx_sign(tx, sk, buf, LEDGER_TX_MAX);
        slot->last = tx->nonce;
        pthread_mutex_unlock(&l->nonce_lock);
        if (!len) return core_fail(err, CORE_ERR_INVALID, "tx", "transaction has out-of-range fields");
    }
    if (receipt->status && err) *err = receipt->error;
    return receipt->status;
}

core_status ledger_submit_many(ledger *l, const uint8_t *const *txs, const size_t *lens, size_t n,
                               ledger_receipt *receipts, core_error *err) {
    pending *items = calloc(n ? n : 1, sizeof *items);
    if (!items) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    size_t queued = 0;
    for (size_t i = 0; i < n; i++) {
        ledger_receipt *r = &receipts[i];
        memset(r, 0, sizeof *r);
        pending *p = &items[i];
        p->buf = txs[i];
        p->len = lens[i];
        p->rcpt = r;
        p->done = true;
        r->status = ledger_tx_decode(txs[i], lens[i], &p->tx, &r->error);
        if (r->status) continue;
        ledger_tx_id(txs[i], lens[i], r->txid);
        if (!ledger_tx_check_signature(txs[i], lens[i])) {
            r->status = core_fail(&r->error, CORE_ERR_CRYPTO, "sig", "the signature does not match the signer");
            continue;
        }
        p->done = false;
        queued++;
    }
    if (queued && forwarding(l)) {
        core_status rc = forward_items(l, items, n, err);
        free(items);
        return rc;
    }
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < n; i++) {
        if (items[i].done) continue;
        if ((items[i].rcpt->status = refusal_locked(l, &items[i].rcpt->error))) {
            items[i].done = true;
            continue;
        }
        enqueue_locked(l, &items[i]);
    }
    pthread_cond_signal(&l->work);
    for (size_t i = 0; queued && i < n; i++)
        while (!items[i].done) pthread_cond_wait(&l->done, &l->lock);
    pthread_mutex_unlock(&l->lock);
    free(items);
    return CORE_OK;
}

core_status ledger_submit(ledger *l, const uint8_t *tx, size_t len, ledger_receipt *receipt, core_error *err) {
    const uint8_t *const txs[1] = {tx};
    core_status rc = ledger_submit_many(l, txs, &len, 1, receipt, err);
    if (rc) return rc;
    if (receipt->status && err) *err = receipt->error;
    return receipt->status;
}

core_status ledger_apply_block(ledger *l, const ledger_block *b, const uint8_t *const *txs, const size_t *lens,
                               size_t n, core_error *err) {
    foreign f = {.b = b, .txs = txs, .lens = lens, .n = n};
    pthread_mutex_lock(&l->lock);
    core_status rc = refusal_locked(l, err);
    if (!rc) {
        if (l->ftail)
            l->ftail->next = &f;
        else
            l->fhead = &f;
        l->ftail = &f;
        pthread_cond_signal(&l->work);
        while (!f.done) pthread_cond_wait(&l->done, &l->lock);
        rc = f.rc;
        if (rc && err) *err = f.err;
    }
    pthread_mutex_unlock(&l->lock);
    return rc;
}

core_status ledger_seal_genesis(ledger *l, core_error *err) {
    static const uint8_t zero[LEDGER_SECRET];
    if (memcmp(l->opt.admin_sk, zero, LEDGER_SECRET) == 0)
        return core_fail(err, CORE_ERR_INVALID, "admin_key", "sealing genesis needs the admin key");
    pthread_mutex_lock(&l->lock);
    bool have = l->have_head;
    pthread_mutex_unlock(&l->lock);
    if (have) return core_fail(err, CORE_ERR_CONFLICT, NULL, "the ledger already has a genesis block");
    ledger_tx g;
    uint8_t buf[LEDGER_TX_MAX];
    size_t len = genesis_tx(l, &g, buf);
    if (!len) return core_fail(err, CORE_ERR_INVALID, "reward", "genesis parameters are out of range");
    ledger_receipt r;
    core_status rc = ledger_submit(l, buf, len, &r, err);
    /* The admin's nonce 1 already used: another node's genesis got there first. */
    if (rc == CORE_ERR_CONFLICT) core_fail(err, rc, NULL, "the ledger already has a genesis block");
    return rc;
}

void ledger_free_txs(uint8_t **txs, size_t *lens, size_t n) {
    for (size_t i = 0; txs && i < n; i++) free(txs[i]);
    free(txs);
    free(lens);
}

core_status ledger_get_block_txs(ledger *l, uint64_t height, ledger_block *block, uint8_t ***txs, size_t **lens,
                                 size_t *n, core_error *err) {
    *txs = NULL;
    *lens = NULL;
    *n = 0;
    core_status rc = ledger_get_block(l, height, block, err);
    if (rc) return rc;
    uint8_t **t = calloc(block->tx_count ? block->tx_count : 1, sizeof *t);
    size_t *ln = calloc(block->tx_count ? block->tx_count : 1, sizeof *ln);
    if (!t || !ln) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    uint64_t base = block->tree_size - block->tx_count;
    size_t got = 0;
    for (; !rc && got < block->tx_count; got++) {
        uint64_t h = 0;
        rc = ledger_get_tx_at(l, base + got, &t[got], &ln[got], &h, err);
        if (!rc && h != height) {
            free(t[got]);
            t[got] = NULL;
            rc = core_fail(err, CORE_ERR_INVALID, "txs", "transaction %llu is filed under another block",
                           (unsigned long long)(base + got));
        }
    }
    if (rc) { /* t was zeroed: unread slots are NULL */
        ledger_free_txs(t, ln, t ? block->tx_count : 0);
        return rc;
    }
    *txs = t;
    *lens = ln;
    *n = got;
    return CORE_OK;
}

static nonce_slot *nonce_find(ledger *l, const uint8_t pk[LEDGER_KEY]) {
    if (l->nonce_used * 2 >= l->nonce_cap) {
        size_t ncap = l->nonce_cap ? l->nonce_cap * 2 : 64;
        nonce_slot *ns = calloc(ncap, sizeof *ns);
        if (!ns) return NULL;
        for (size_t i = 0; i < l->nonce_cap; i++) {
            if (!l->nonces[i].used) continue;
            size_t h;
            memcpy(&h, l->nonces[i].pk, sizeof h);
            while (ns[h % ncap].used) h++;
            ns[h % ncap] = l->nonces[i];
        }
        free(l->nonces);
        l->nonces = ns;
        l->nonce_cap = ncap;
    }
    size_t h; /* keys are uniformly random: their first bytes are a fine hash */
    memcpy(&h, pk, sizeof h);
    for (;; h++) {
        nonce_slot *s = &l->nonces[h % l->nonce_cap];
        if (!s->used) {
            s->used = true;
            memcpy(s->pk, pk, LEDGER_KEY);
            l->nonce_used++;
            return s;
        }
        if (memcmp(s->pk, pk, LEDGER_KEY) == 0) return s;
    }
}

/* Give tx the signer's next nonce, sign it into buf and queue p for it
 * (p->rcpt set by the caller). CORE_OK: queued — the producer may settle
 * (and, for an async item, free) p before this returns, so the caller
 * touches it only under l->lock — or, on a follower (*forwarded), already
 * settled by the leader, the outcome in p->rcpt and p not queued.
 * Otherwise p was not queued and the reason is in p->rcpt and err. */
static core_status sign_enqueue(ledger *l, ledger_tx *tx, const uint8_t sk[LEDGER_SECRET], pending *p,
                                uint8_t buf[LEDGER_TX_MAX], bool *forwarded, core_error *err) {
    *forwarded = false;
    ledger_receipt *receipt = p->rcpt;
    memset(receipt, 0, sizeof *receipt);
    ledger_account acct;
    core_error e = {0};
    core_status rc = ledger_get_account(l, sk + 32, &acct, &e);
    if (rc && rc != CORE_ERR_NOT_FOUND) {
        receipt->status = rc;
        receipt->error = e;
        if (err) *err = e;
        return rc;
    }
    uint64_t stored = rc ? 0 : acct.nonce;

    pthread_mutex_lock(&l->nonce_lock);
    nonce_slot *slot = nonce_find(l, sk + 32);
    if (!slot) {
        pthread_mutex_unlock(&l->nonce_lock);
        receipt->status = core_fail(&receipt->error, CORE_ERR_NOMEM, NULL, "out of memory");
        if (err) *err = receipt->error;
        return receipt->status;
    }
    tx->nonce = (slot->last > stored ? slot->last : stored) + 1;
    size_t len = ledger_tx_sign(tx, sk, buf, LEDGER_TX_MAX);
    if (!len) {
        pthread_mutex_unlock(&l->nonce_lock);
        receipt->status = core_fail(&receipt->error, CORE_ERR_INVALID, "tx", "transaction has out-of-range fields");
        if (err) *err = receipt->error;
        return receipt->status;
    }
    slot->last = tx->nonce;
    if (forwarding(l)) {
        pthread_mutex_unlock(&l->nonce_lock);
        core_error fe = {0};
        rc = sign_forward(l, tx, sk, buf, len, receipt, &fe);
        if (rc && !receipt->status) { /* failed before a receipt was made */
            receipt->status = rc;
            receipt->error = fe;
        }
        *forwarded = true;
        return CORE_OK;
    }
    /* Queue while still holding nonce_lock: the queue is FIFO, so this
     * signer's transactions reach the producer in nonce order. */
    p->buf = buf;
    p->len = len;
    p->tx = *tx;
    ledger_tx_id(buf, len, receipt->txid);
    pthread_mutex_lock(&l->lock);
    if ((rc = refusal_locked(l, &receipt->error))) {
        pthread_mutex_unlock(&l->lock);
        pthread_mutex_unlock(&l->nonce_lock);
        receipt->status = rc;
        if (err) *err = receipt->error;
        return rc;
    }
    enqueue_locked(l, p);
    pthread_cond_signal(&l->work);
    pthread_mutex_unlock(&l->nonce_lock);
    pthread_mutex_unlock(&l->lock);
    return CORE_OK;
}

core_status ledger_sign_submit(ledger *l, ledger_tx *tx, const uint8_t sk[LEDGER_SECRET], ledger_receipt *receipt,
                               core_error *err) {
    uint8_t buf[LEDGER_TX_MAX];
    pending p = {.rcpt = receipt};
    bool forwarded;
    core_status rc = sign_enqueue(l, tx, sk, &p, buf, &forwarded, err);
    if (rc) return rc;
    pthread_mutex_lock(&l->lock);
    while (!forwarded && !p.done) pthread_cond_wait(&l->done, &l->lock);
    pthread_mutex_unlock(&l->lock);
    if (receipt->status && err) *err = receipt->error;
    return receipt->status;
}

/* ---- asynchronous submission ---- */

core_status ledger_submit_async(ledger *l, const uint8_t *tx, size_t len, ledger_submit_cb cb, void *ud,
                                core_error *err) {
    if (len > LEDGER_TX_MAX) return core_fail(err, CORE_ERR_INVALID, "tx", "the transaction is too long");
    async_item *a = calloc(1, sizeof *a);
    if (!a) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    pending *p = &a->p;
    memcpy(a->buf, tx, len);
    p->buf = a->buf;
    p->len = len;
    p->rcpt = &a->r;
    p->cb = cb;
    p->ud = ud;
    core_status rc = ledger_tx_decode(a->buf, len, &p->tx, err);
    if (!rc && !ledger_tx_check_signature(a->buf, len))
        rc = core_fail(err, CORE_ERR_CRYPTO, "sig", "the signature does not match the signer");
    if (!rc && forwarding(l)) {
        /* A follower: the leader settles it, in this thread (see ledger.h). */
        const uint8_t *const txs[1] = {a->buf};
        uint64_t leader_height;
        core_error fe = {0};
        core_status frc = forward_txs(l, txs, &len, 1, &a->r, &leader_height, &fe);
        if (frc) {
            a->r.status = frc;
            a->r.error = fe;
        }
        cb(ud, &a->r);
        free(a);
        return CORE_OK;
    }
    if (!rc) {
        ledger_tx_id(a->buf, len, a->r.txid);
        pthread_mutex_lock(&l->lock);
        rc = refusal_locked(l, err);
        if (!rc) {
            enqueue_locked(l, p);
            pthread_cond_signal(&l->work);
        }
        pthread_mutex_unlock(&l->lock);
    }
    if (rc) free(a);
    return rc;
}

core_status ledger_sign_submit_async(ledger *l, ledger_tx *tx, const uint8_t sk[LEDGER_SECRET], ledger_submit_cb cb,
                                     void *ud, core_error *err) {
    async_item *a = calloc(1, sizeof *a);
    if (!a) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    a->p.rcpt = &a->r;
    a->p.cb = cb;
    a->p.ud = ud;
    bool forwarded;
    core_status rc = sign_enqueue(l, tx, sk, &a->p, a->buf, &forwarded, err);
    if (!rc && forwarded) { /* settled by the leader, in this thread */
        cb(ud, &a->r);
        free(a);
        return CORE_OK;
    }
    if (rc) free(a);
    return rc;
}

/* ---- queries ---- */

core_status ledger_head(ledger *l, ledger_block *out, core_error *err) {
    pthread_mutex_lock(&l->lock);
    bool have = l->have_head;
    *out = l->head;
    pthread_mutex_unlock(&l->lock);
    return have ? CORE_OK : core_fail(err, CORE_ERR_NOT_FOUND, NULL, "the ledger has no blocks");
}

/* Every read below is one pattern: borrow a pooled connection, run one
 * cached statement with its parameters, hand each row to a callback, give
 * the connection back. query() is that pattern, once.
 *
 * Reads of derived state (signers, consents, postings, commitments, orgs,
 * meta) are refused while the ledger is failed: the producer could not
 * reload its view of them, so the ledger does not vouch for them either.
 * The log (blocks, transactions) is what was committed and stays readable. */
typedef enum { READ_LOG, READ_DERIVED } read_kind;

typedef struct {
    const void *blob; /* NULL: bind num */
    int len;
    int64_t num;
} qarg;
#define QBLOB(p, n) ((qarg){.blob = (p), .len = (n)})
#define QINT(v) ((qarg){.num = (int64_t)(v)})

/* Called for each row; a status other than CORE_OK stops the query. */
typedef core_status (*row_fn)(sqlite3_stmt *q, void *ud, core_error *err);

/* sql must be a string literal (the statement cache is keyed by its
 * address). *rows, if given, receives how many rows were handed to row(). */
static core_status query(ledger *l, read_kind kind, const char *sql, const qarg *args, int nargs, row_fn row, void *ud,
                         size_t *rows, core_error *err) {
    if (rows) *rows = 0;
    core_status rc = kind == READ_DERIVED ? check_usable(l, err) : CORE_OK;
    if (rc) return rc;
    sqlite3 *db = store_acquire(l->st);
    sqlite3_stmt *q;
    if ((rc = store_prepare_cached(l->st, db, sql, &q, err))) {
        store_release(l->st, db);
        return rc;
    }
    for (int i = 0; i < nargs; i++) {
        if (args[i].blob)
            sqlite3_bind_blob(q, i + 1, args[i].blob, args[i].len, SQLITE_STATIC);
        else
            sqlite3_bind_int64(q, i + 1, args[i].num);
    }
    int step;
    while ((step = sqlite3_step(q)) == SQLITE_ROW) {
        if (rows) (*rows)++;
        if ((rc = row(q, ud, err))) break;
    }
    if (!rc && step != SQLITE_DONE) rc = store_error(db, err);
    store_release(l->st, db); /* resets q */
    return rc;
}

static core_status block_row(sqlite3_stmt *q, void *ud, core_error *err) {
    return ledger_block_decode(sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0), ud, err);
}

core_status ledger_get_block(ledger *l, uint64_t height, ledger_block *out, core_error *err) {
    size_t rows;
    const qarg a[] = {QINT(height)};
    core_status rc =
        query(l, READ_LOG, "SELECT header FROM blocks WHERE height = ?1", a, 1, block_row, out, &rows, err);
    if (!rc && rows == 0)
        rc = core_fail(err, CORE_ERR_NOT_FOUND, "height", "no block at height %llu", (unsigned long long)height);
    return rc;
}

/* A transaction row: (seq, height, body) with seq optional. */
typedef struct {
    bool has_seq;
    uint64_t *seq, *height;
    uint8_t **buf;
    size_t *len;
} tx_out;

static core_status tx_row(sqlite3_stmt *q, void *ud, core_error *err) {
    tx_out *o = ud;
    int col = 0;
    if (o->has_seq) {
        if (o->seq) *o->seq = (uint64_t)sqlite3_column_int64(q, col);
        col++;
    }
    if (o->height) *o->height = (uint64_t)sqlite3_column_int64(q, col);
    col++;
    int n = sqlite3_column_bytes(q, col);
    free(*o->buf); /* a unique key gives one row; never leak a second */
    *o->buf = malloc(n > 0 ? (size_t)n : 1);
    if (!*o->buf) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    if (n > 0) memcpy(*o->buf, sqlite3_column_blob(q, col), (size_t)n);
    *o->len = (size_t)n;
    return CORE_OK;
}

core_status ledger_get_tx(ledger *l, const uint8_t txid[LEDGER_HASH], uint8_t **buf, size_t *len, uint64_t *seq,
                          uint64_t *height, core_error *err) {
    *buf = NULL;
    size_t rows;
    tx_out o = {true, seq, height, buf, len};
    const qarg a[] = {QBLOB(txid, LEDGER_HASH)};
    core_status rc =
        query(l, READ_LOG, "SELECT seq, height, body FROM txs WHERE txid = ?1", a, 1, tx_row, &o, &rows, err);
    if (!rc && rows == 0) rc = core_fail(err, CORE_ERR_NOT_FOUND, "txid", "no such transaction");
    if (rc) {
        free(*buf);
        *buf = NULL;
    }
    return rc;
}

core_status ledger_get_tx_at(ledger *l, uint64_t seq, uint8_t **buf, size_t *len, uint64_t *height, core_error *err) {
    *buf = NULL;
    size_t rows;
    tx_out o = {false, NULL, height, buf, len};
    const qarg a[] = {QINT(seq)};
    core_status rc = query(l, READ_LOG, "SELECT height, body FROM txs WHERE seq = ?1", a, 1, tx_row, &o, &rows, err);
    if (!rc && rows == 0) rc = core_fail(err, CORE_ERR_NOT_FOUND, "seq", "no such transaction");
    if (rc) {
        free(*buf);
        *buf = NULL;
    }
    return rc;
}

static core_status account_row(sqlite3_stmt *q, void *ud, core_error *err) {
    (void)err;
    ledger_account *out = ud;
    out->nonce = (uint64_t)sqlite3_column_int64(q, 0);
    out->wallet = sqlite3_column_int(q, 1) != 0;
    out->balance = sqlite3_column_int64(q, 2);
    return CORE_OK;
}

core_status ledger_get_account(ledger *l, const uint8_t pk[LEDGER_KEY], ledger_account *out, core_error *err) {
    memset(out, 0, sizeof *out);
    size_t rows;
    const qarg a[] = {QBLOB(pk, LEDGER_KEY)};
    core_status rc = query(l, READ_DERIVED, "SELECT nonce, wallet, balance FROM signers WHERE pubkey = ?1", a, 1,
                           account_row, out, &rows, err);
    if (!rc && rows == 0) rc = core_fail(err, CORE_ERR_NOT_FOUND, "wallet", "unknown key");
    return rc;
}

typedef struct {
    ledger_consent_fn fn;
    void *ud;
} consent_cb;

static core_status consent_row(sqlite3_stmt *q, void *ud, core_error *err) {
    (void)err;
    const consent_cb *cb = ud;
    if (sqlite3_column_bytes(q, 0) != LEDGER_HASH || sqlite3_column_bytes(q, 3) != LEDGER_KEY) return CORE_OK;
    ledger_consent c = {0};
    memcpy(c.grant, sqlite3_column_blob(q, 0), LEDGER_HASH);
    c.scope = (uint32_t)sqlite3_column_int64(q, 1);
    c.purpose = (uint8_t)sqlite3_column_int(q, 2);
    memcpy(c.grantee, sqlite3_column_blob(q, 3), LEDGER_KEY);
    c.expires = (uint64_t)sqlite3_column_int64(q, 4);
    c.granted_height = (uint64_t)sqlite3_column_int64(q, 5);
    c.revoked_height = (uint64_t)sqlite3_column_int64(q, 6);
    cb->fn(cb->ud, &c);
    return CORE_OK;
}

core_status ledger_list_consents(ledger *l, const uint8_t owner[LEDGER_KEY], ledger_consent_fn fn, void *ud,
                                 core_error *err) {
    consent_cb cb = {fn, ud};
    const qarg a[] = {QBLOB(owner, LEDGER_KEY)};
    return query(l, READ_DERIVED,
                 "SELECT grant_txid, scope, purpose, grantee, expires, granted_height, "
                 "revoked_height FROM consents WHERE owner = ?1 ORDER BY granted_height DESC",
                 a, 1, consent_row, &cb, NULL, err);
}

typedef struct {
    ledger_consent *out;
    uint8_t *owner;
} one_consent;

static void keep_consent(void *ud, const ledger_consent *c) { *((one_consent *)ud)->out = *c; }

static core_status one_consent_row(sqlite3_stmt *q, void *ud, core_error *err) {
    one_consent *o = ud;
    if (o->owner && sqlite3_column_bytes(q, 7) == LEDGER_KEY) memcpy(o->owner, sqlite3_column_blob(q, 7), LEDGER_KEY);
    consent_cb cb = {keep_consent, o};
    return consent_row(q, &cb, err);
}

core_status ledger_get_consent(ledger *l, const uint8_t grant[LEDGER_HASH], ledger_consent *out,
                               uint8_t owner[LEDGER_KEY], core_error *err) {
    memset(out, 0, sizeof *out);
    one_consent o = {out, owner};
    size_t rows;
    const qarg a[] = {QBLOB(grant, LEDGER_HASH)};
    core_status rc = query(l, READ_DERIVED,
                           "SELECT grant_txid, scope, purpose, grantee, expires, granted_height, revoked_height, "
                           "owner FROM consents WHERE grant_txid = ?1",
                           a, 1, one_consent_row, &o, &rows, err);
    if (!rc && rows == 0) rc = core_fail(err, CORE_ERR_NOT_FOUND, "grant", "no such consent");
    return rc;
}

typedef struct {
    ledger_history_fn fn;
    void *ud;
} history_cb;

static core_status history_row(sqlite3_stmt *q, void *ud, core_error *err) {
    (void)err;
    const history_cb *cb = ud;
    ledger_tx tx;
    if (ledger_tx_decode(sqlite3_column_blob(q, 2), (size_t)sqlite3_column_bytes(q, 2), &tx, NULL)) return CORE_OK;
    cb->fn(cb->ud, (uint64_t)sqlite3_column_int64(q, 0), sqlite3_column_int64(q, 1), &tx,
           (uint64_t)sqlite3_column_int64(q, 3));
    return CORE_OK;
}

core_status ledger_history(ledger *l, const uint8_t pk[LEDGER_KEY], int limit, ledger_history_fn fn, void *ud,
                           core_error *err) {
    history_cb cb = {fn, ud};
    const qarg a[] = {QBLOB(pk, LEDGER_KEY), QINT(limit > 0 ? limit : LEDGER_HISTORY_LIMIT)};
    return query(l, READ_DERIVED,
                 "SELECT p.seq, p.delta, t.body, t.height FROM postings p JOIN txs t "
                 "ON t.seq = p.seq WHERE p.wallet = ?1 ORDER BY p.seq DESC LIMIT ?2",
                 a, 2, history_row, &cb, NULL, err);
}

static core_status commitment_row(sqlite3_stmt *q, void *ud, core_error *err) {
    (void)err;
    uint8_t **txid = ud; /* set to NULL once found */
    if (*txid && sqlite3_column_bytes(q, 0) == LEDGER_HASH) {
        memcpy(*txid, sqlite3_column_blob(q, 0), LEDGER_HASH);
        *txid = NULL;
    }
    return CORE_OK;
}

core_status ledger_find_commitment(ledger *l, const uint8_t commitment[LEDGER_HASH], uint8_t txid[LEDGER_HASH],
                                   core_error *err) {
    uint8_t *slot = txid;
    const qarg a[] = {QBLOB(commitment, LEDGER_HASH)};
    core_status rc =
        query(l, READ_DERIVED, "SELECT t.txid FROM commitments c JOIN txs t ON t.seq = c.seq WHERE c.commitment = ?1",
              a, 1, commitment_row, &slot, NULL, err);
    if (!rc && slot) rc = core_fail(err, CORE_ERR_NOT_FOUND, "commitment", "not on the ledger");
    return rc;
}

static core_status escrow_row(sqlite3_stmt *q, void *ud, core_error *err) {
    ledger_escrow *e = ud;
    if (sqlite3_column_bytes(q, 0) != LEDGER_KEY || sqlite3_column_bytes(q, 1) != LEDGER_KEY ||
        sqlite3_column_bytes(q, 2) != LEDGER_HASH)
        return core_fail(err, CORE_ERR_STORAGE, "escrow", "malformed escrow row");
    memcpy(e->payer, sqlite3_column_blob(q, 0), LEDGER_KEY);
    memcpy(e->org, sqlite3_column_blob(q, 1), LEDGER_KEY);
    memcpy(e->commitment, sqlite3_column_blob(q, 2), LEDGER_HASH);
    e->amount = (uint64_t)sqlite3_column_int64(q, 3);
    e->opened_height = (uint64_t)sqlite3_column_int64(q, 4);
    e->closed_height = (uint64_t)sqlite3_column_int64(q, 5);
    e->state = (ledger_escrow_state)sqlite3_column_int(q, 6);
    return CORE_OK;
}

core_status ledger_get_escrow(ledger *l, const uint8_t request[LEDGER_HASH], ledger_escrow *out, core_error *err) {
    memset(out, 0, sizeof *out);
    memcpy(out->request, request, LEDGER_HASH);
    size_t rows;
    const qarg a[] = {QBLOB(request, LEDGER_HASH)};
    core_status rc = query(l, READ_DERIVED,
                           "SELECT payer, org, commitment, amount, opened_height, closed_height, outcome FROM escrows"
                           " WHERE request_txid = ?1",
                           a, 1, escrow_row, out, &rows, err);
    if (!rc && rows == 0) rc = core_fail(err, CORE_ERR_NOT_FOUND, "request", "no such review request");
    return rc;
}

static core_status sum_row(sqlite3_stmt *q, void *ud, core_error *err) {
    (void)err;
    *(uint64_t *)ud = (uint64_t)sqlite3_column_int64(q, 0);
    return CORE_OK;
}

/* escrows has no index on payer: one wallet's open escrows are a scan of
 * the table, which holds one row per review ever asked for. The wallet page
 * asks once per view; an index would need a schema step (verify replays
 * the table as is), so it waits until the scan shows up in a profile. */
core_status ledger_escrowed_by(ledger *l, const uint8_t payer[LEDGER_KEY], uint64_t *amount, core_error *err) {
    *amount = 0;
    const qarg a[] = {QBLOB(payer, LEDGER_KEY)};
    return query(l, READ_DERIVED, "SELECT coalesce(sum(amount), 0) FROM escrows WHERE payer = ?1 AND outcome = 0", a, 1,
                 sum_row, amount, NULL, err);
}

static core_status market_row(sqlite3_stmt *q, void *ud, core_error *err) {
    ledger_market *m = ud;
    if (sqlite3_column_bytes(q, 0) != LEDGER_KEY || sqlite3_column_bytes(q, 1) != LEDGER_HASH)
        return core_fail(err, CORE_ERR_STORAGE, "request", "malformed data-request row");
    memcpy(m->org, sqlite3_column_blob(q, 0), LEDGER_KEY);
    memcpy(m->terms, sqlite3_column_blob(q, 1), LEDGER_HASH);
    m->price = (uint64_t)sqlite3_column_int64(q, 2);
    m->max_participants = (uint32_t)sqlite3_column_int64(q, 3);
    m->paid = (uint32_t)sqlite3_column_int64(q, 4);
    m->remaining = (uint64_t)sqlite3_column_int64(q, 5);
    m->closes = (uint64_t)sqlite3_column_int64(q, 6);
    m->opened_height = (uint64_t)sqlite3_column_int64(q, 7);
    m->closed_height = (uint64_t)sqlite3_column_int64(q, 8);
    m->state = (ledger_market_state)sqlite3_column_int(q, 9);
    return CORE_OK;
}

core_status ledger_get_market(ledger *l, const uint8_t request[LEDGER_HASH], ledger_market *out, core_error *err) {
    memset(out, 0, sizeof *out);
    memcpy(out->request, request, LEDGER_HASH);
    size_t rows;
    const qarg a[] = {QBLOB(request, LEDGER_HASH)};
    core_status rc = query(l, READ_DERIVED,
                           "SELECT org, terms, price, max_participants, paid, remaining, closes, opened_height, "
                           "closed_height, outcome FROM market_escrows WHERE request_txid = ?1",
                           a, 1, market_row, out, &rows, err);
    if (!rc && rows == 0) rc = core_fail(err, CORE_ERR_NOT_FOUND, "request", "no such data request");
    return rc;
}

static core_status count_row(sqlite3_stmt *q, void *ud, core_error *err) {
    (void)q, (void)ud, (void)err;
    return CORE_OK;
}

core_status ledger_market_paid(ledger *l, const uint8_t request[LEDGER_HASH], const uint8_t participant[LEDGER_KEY],
                               bool *paid, core_error *err) {
    size_t rows = 0;
    const qarg a[] = {QBLOB(request, LEDGER_HASH), QBLOB(participant, LEDGER_KEY)};
    core_status rc =
        query(l, READ_DERIVED, "SELECT 1 FROM market_payments WHERE request_txid = ?1 AND participant = ?2", a, 2,
              count_row, NULL, &rows, err);
    *paid = !rc && rows > 0;
    return rc;
}

typedef struct {
    ledger_org_fn fn;
    void *ud;
} org_cb;

static core_status org_row(sqlite3_stmt *q, void *ud, core_error *err) {
    (void)err;
    const org_cb *cb = ud;
    if (sqlite3_column_bytes(q, 0) == LEDGER_KEY)
        cb->fn(cb->ud, sqlite3_column_blob(q, 0), (const char *)sqlite3_column_text(q, 1),
               (uint64_t)sqlite3_column_int64(q, 2));
    return CORE_OK;
}

core_status ledger_list_orgs(ledger *l, ledger_org_fn fn, void *ud, core_error *err) {
    org_cb cb = {fn, ud};
    return query(l, READ_DERIVED, "SELECT pubkey, name, height FROM orgs ORDER BY name", NULL, 0, org_row, &cb, NULL,
                 err);
}

static core_status totals_row(sqlite3_stmt *q, void *ud, core_error *err) {
    (void)err;
    ledger_totals *out = ud;
    out->minted = (uint64_t)sqlite3_column_int64(q, 0);
    out->burned = (uint64_t)sqlite3_column_int64(q, 1);
    out->wallets = (uint64_t)sqlite3_column_int64(q, 2);
    out->consents_active = (uint64_t)sqlite3_column_int64(q, 3);
    out->orgs = (uint64_t)sqlite3_column_int64(q, 4);
    out->escrowed = (uint64_t)sqlite3_column_int64(q, 5);
    return CORE_OK;
}

core_status ledger_get_totals(ledger *l, ledger_totals *out, core_error *err) {
    memset(out, 0, sizeof *out);
    const qarg a[] = {QINT(core_now())};
    return query(l, READ_DERIVED,
                 "SELECT (SELECT value FROM meta WHERE key = 'minted'), (SELECT value FROM meta WHERE key = 'burned'),"
                 " (SELECT count(*) FROM signers WHERE wallet), (SELECT count(*) FROM consents WHERE revoked_height = 0"
                 " AND expires > ?1), (SELECT count(*) FROM orgs),"
                 " (SELECT coalesce(sum(amount), 0) FROM escrows WHERE outcome = 0)"
                 " + (SELECT coalesce(sum(remaining), 0) FROM market_escrows WHERE outcome = 0)",
                 a, 1, totals_row, out, NULL, err);
}

static core_status rewards_row(sqlite3_stmt *q, void *ud, core_error *err) {
    uint64_t *reward = ud;
    ledger_tx p;
    core_status rc = ledger_tx_decode(sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0), &p, err);
    if (!rc && p.kind == LEDGER_TX_PARAMS) memcpy(reward, p.u.params.reward, LEDGER_CATEGORIES * sizeof *reward);
    return rc;
}

core_status ledger_get_rewards(ledger *l, uint64_t reward[LEDGER_CATEGORIES], core_error *err) {
    memset(reward, 0, LEDGER_CATEGORIES * sizeof *reward);
    size_t rows;
    core_status rc =
        query(l, READ_DERIVED, "SELECT value FROM meta WHERE key = 'params'", NULL, 0, rewards_row, reward, &rows, err);
    if (!rc && rows == 0) rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "the ledger has no params yet");
    return rc;
}

core_status ledger_prove(ledger *l, const uint8_t txid[LEDGER_HASH], ledger_proof *out, core_error *err) {
    memset(out, 0, sizeof *out);
    /* Set by ledger_get_tx on success; zeroed because gcc 12 -O3 (the
     * Release build of make bench) cannot see that and refuses to build. */
    uint8_t *buf = NULL;
    size_t len = 0;
    uint64_t seq = 0, height = 0;
    core_status rc = ledger_get_tx(l, txid, &buf, &len, &seq, &height, err);
    if (rc) return rc;
    if (len > LEDGER_TX_MAX) {
        free(buf);
        return core_fail(err, CORE_ERR_INVALID, "txid", "stored transaction is too long");
    }
    memcpy(out->tx, buf, len);
    out->tx_len = len;
    out->index = seq;
    out->height = height;
    free(buf);
    if ((rc = ledger_head(l, &out->head, err))) return rc;
    /* The tx row may be visible a moment before the producer publishes the
     * new head; then the block that holds it is the tree head to prove to. */
    if (seq >= out->head.tree_size && (rc = ledger_get_block(l, height, &out->head, err))) return rc;
    if ((rc = ledger_get_block(l, height, &out->block, err))) return rc;
    pthread_mutex_lock(&l->tree_lock);
    rc = ledger_tree_inclusion(l->tree, seq, out->head.tree_size, out->path, &out->path_len, err);
    if (!rc)
        rc =
            ledger_tree_consistency(l->tree, out->block.tree_size, out->head.tree_size, out->cons, &out->cons_len, err);
    pthread_mutex_unlock(&l->tree_lock);
    return rc;
}

core_status ledger_prove_consistency(ledger *l, uint64_t size1, uint64_t size2, uint8_t root1[LEDGER_HASH],
                                     uint8_t root2[LEDGER_HASH], uint8_t proof[][LEDGER_HASH], size_t *n,
                                     core_error *err) {
    ledger_block head;
    core_status rc = ledger_head(l, &head, err);
    if (rc) return rc;
    if (size2 > head.tree_size)
        return core_fail(err, CORE_ERR_INVALID, "to", "the log has only %llu transactions",
                         (unsigned long long)head.tree_size);
    pthread_mutex_lock(&l->tree_lock);
    rc = ledger_tree_consistency(l->tree, size1, size2, proof, n, err);
    if (!rc) {
        ledger_tree_root(l->tree, size1, root1);
        ledger_tree_root(l->tree, size2, root2);
    }
    pthread_mutex_unlock(&l->tree_lock);
    return rc;
}
