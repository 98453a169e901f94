/* cluster — a ledger node replicated with libraft (see cluster.h).
 *
 * Two threads meet here. The ledger's producer calls propose() with a
 * sealed block; raft lives on this module's libuv loop thread and is not
 * thread-safe, so propose() leaves the encoded entry in `inflight`, wakes
 * the loop (uv_async) and sleeps until the loop reports the outcome or the
 * timeout passes. Everything the two share sits under `lock`.
 *
 * The chain tip in raft order (`tip`) decides, identically on every node,
 * what each committed entry is: the next block (height tip+1 chained to the
 * tip: applied, or refused and applying stops) or an overtaken proposal
 * (skipped). A leader proposes only once its barrier for the current term
 * has been applied, i.e. with every earlier entry already applied, and only
 * a block that extends the tip; so while it stays leader its entries follow
 * each other and none is skipped.
 *
 * Entry format: the 189-byte signed header, a u32 transaction count, then
 * per transaction a u16 length and its bytes (all big-endian), then zero
 * bytes up to a multiple of 8: libraft 0.15 writes an entry's payload
 * unpadded but reads it back as if padded to 8, so any other length makes
 * the log unreadable at the next start (canonical/raft#304, #180). */
#include "cluster/cluster.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <uv.h>

#include <jansson.h>

#include "crypto/crypto.h"

#define TICK_MS 20
#define GENESIS_RETRY_S 0.5

typedef enum { OUT_PENDING = 0, OUT_ACCEPTED, OUT_FAILED } outcome;

typedef struct {
    bool active;    /* a proposal is waiting in propose() */
    bool submitted; /* handed to raft (which then owns buf) */
    uint64_t seq;
    outcome out;
    core_status rc;
    core_error why;
    uint8_t hash[LEDGER_HASH];
    uint64_t height;
    struct raft_buffer buf;
} proposal;

/* One raft_apply request; it outlives a proposal that timed out. */
typedef struct {
    struct raft_apply req;
    struct cluster *c;
    uint64_t seq;
} apply_req;

struct cluster {
    cluster_options opt;
    char dir[4096];
    ledger_consensus hook;
    ledger *l;

    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t tick;
    uv_work_t genesis_work;
    struct raft_uv_transport transport;
    struct raft_io io;
    struct raft_fsm fsm;
    struct raft raft;
    struct raft_barrier barrier;
    pthread_t thread;
    bool loop_ready, io_ready, transport_ready, raft_ready, handles_ready, thread_running;

    /* Loop thread only. */
    bool barrier_pending;
    raft_term barrier_term;
    bool genesis_running;
    double genesis_retry_at;
    bool closing_raft;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* Under lock. */
    bool stopping;
    bool leader, ready;
    raft_term ready_term;
    uint64_t leader_id;
    bool have_tip;
    uint64_t tip_height;
    uint8_t tip_hash[LEDGER_HASH];
    proposal inflight;
    uint64_t next_seq;
    uint64_t proposed, committed, applied, skipped;
    bool halted;
    core_error halt;
    /* The loop thread is handing another node's block to the ledger and
     * waits for the producer: a proposal now would wait for the loop in
     * turn, so propose() refuses at once instead of timing out. */
    bool applying;
};

void cluster_options_defaults(cluster_options *o) {
    memset(o, 0, sizeof *o);
    o->election_ms = 1000;
    o->heartbeat_ms = 100;
    o->propose_timeout_ms = 10000;
}

/* ---- configuration ---- */

static bool address_ok(const char *a) {
    char host[CLUSTER_ADDRESS_MAX];
    const char *colon = strrchr(a, ':');
    if (!colon || (size_t)(colon - a) >= sizeof host) return false;
    memcpy(host, a, (size_t)(colon - a));
    host[colon - a] = 0;
    struct in_addr ip;
    if (inet_pton(AF_INET, host, &ip) != 1) return false;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    return *end == 0 && colon[1] && port >= 1 && port <= 65535;
}

static core_status check_options(const cluster_options *o, core_error *err) {
    if (o->n_nodes < 1 || o->n_nodes > LEDGER_MAX_NODES)
        return core_fail(err, CORE_ERR_INVALID, "nodes", "a cluster has 1 to %d nodes", LEDGER_MAX_NODES);
    if (!o->dir || !o->dir[0]) return core_fail(err, CORE_ERR_INVALID, "dir", "the raft directory is required");
    if (strlen(o->dir) >= 4096) return core_fail(err, CORE_ERR_INVALID, "dir", "the raft directory path is too long");
    if (o->election_ms < 2 * o->heartbeat_ms || o->heartbeat_ms == 0)
        return core_fail(err, CORE_ERR_INVALID, "election_ms", "the election timeout must be at least two heartbeats");
    if (o->propose_timeout_ms < 1)
        return core_fail(err, CORE_ERR_INVALID, "propose_timeout_ms", "the proposal timeout must be positive");
    bool self = false;
    for (size_t i = 0; i < o->n_nodes; i++) {
        const cluster_node *n = &o->nodes[i];
        if (n->id < 1) return core_fail(err, CORE_ERR_INVALID, "nodes.id", "node ids start at 1");
        if (memchr(n->address, 0, sizeof n->address) == NULL || !address_ok(n->address))
            return core_fail(err, CORE_ERR_INVALID, "nodes.address", "node %llu: the address must be IPv4 a.b.c.d:port",
                             (unsigned long long)n->id);
        for (size_t j = 0; j < i; j++) {
            if (o->nodes[j].id == n->id)
                return core_fail(err, CORE_ERR_INVALID, "nodes.id", "node id %llu is listed twice",
                                 (unsigned long long)n->id);
            if (strcmp(o->nodes[j].address, n->address) == 0)
                return core_fail(err, CORE_ERR_INVALID, "nodes.address", "address %s is listed twice", n->address);
            if (memcmp(o->nodes[j].key, n->key, LEDGER_KEY) == 0)
                return core_fail(err, CORE_ERR_INVALID, "nodes.key", "node %llu has the key of node %llu",
                                 (unsigned long long)n->id, (unsigned long long)o->nodes[j].id);
        }
        if (n->id == o->self) self = true;
    }
    if (!self) return core_fail(err, CORE_ERR_INVALID, "self", "this node's id is not in the cluster");
    return CORE_OK;
}

core_status cluster_open(const cluster_options *o, cluster **out, core_error *err) {
    *out = NULL;
    core_status rc = check_options(o, err);
    if (rc) return rc;
    cluster *c = calloc(1, sizeof *c);
    if (!c) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    c->opt = *o;
    snprintf(c->dir, sizeof c->dir, "%s", o->dir);
    c->opt.dir = c->dir;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    *out = c;
    return CORE_OK;
}

size_t cluster_node_keys(const cluster *c, uint8_t keys[LEDGER_MAX_NODES][LEDGER_KEY]) {
    for (size_t i = 0; i < c->opt.n_nodes; i++) memcpy(keys[i], c->opt.nodes[i].key, LEDGER_KEY);
    return c->opt.n_nodes;
}

static const cluster_node *self_node(const cluster *c) {
    for (size_t i = 0; i < c->opt.n_nodes; i++)
        if (c->opt.nodes[i].id == c->opt.self) return &c->opt.nodes[i];
    return NULL;
}

/* ---- entries ---- */

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

typedef struct {
    ledger_block b;
    size_t n;
    const uint8_t **txs;
    size_t *lens;
} entry;

static void entry_free(entry *e) {
    free(e->txs);
    free(e->lens);
}

/* Split an entry into header and transactions (pointing into buf). */
static core_status entry_decode(const uint8_t *p, size_t len, entry *e, core_error *err) {
    memset(e, 0, sizeof *e);
    if (len < LEDGER_BLOCK_BYTES + 4) return core_fail(err, CORE_ERR_INVALID, "entry", "the entry is truncated");
    core_status rc = ledger_block_decode(p, LEDGER_BLOCK_BYTES, &e->b, err);
    if (rc) return rc;
    const uint8_t *q = p + LEDGER_BLOCK_BYTES;
    uint32_t n = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
    q += 4;
    size_t left = len - LEDGER_BLOCK_BYTES - 4;
    if (n == 0 || n > left / 3) return core_fail(err, CORE_ERR_INVALID, "entry", "bad transaction count");
    e->txs = malloc(n * sizeof *e->txs);
    e->lens = malloc(n * sizeof *e->lens);
    if (!e->txs || !e->lens) {
        entry_free(e);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    for (uint32_t i = 0; i < n; i++) {
        size_t tl = left >= 2 ? (size_t)q[0] << 8 | q[1] : 0;
        if (left < 2 || tl == 0 || tl > LEDGER_TX_MAX || left - 2 < tl) {
            entry_free(e);
            return core_fail(err, CORE_ERR_INVALID, "entry", "a transaction is truncated");
        }
        e->txs[i] = q + 2;
        e->lens[i] = tl;
        q += 2 + tl;
        left -= 2 + tl;
    }
    bool pad_ok = left < 8;
    for (size_t i = 0; pad_ok && i < left; i++) pad_ok = q[i] == 0;
    if (!pad_ok) {
        entry_free(e);
        return core_fail(err, CORE_ERR_INVALID, "entry", "trailing bytes after the transactions");
    }
    e->n = n;
    return CORE_OK;
}

/* ---- the state machine (loop thread) ---- */

static void set_tip_locked(cluster *c, const ledger_block *b) {
    c->have_tip = true;
    c->tip_height = b->height;
    ledger_block_hash(b, c->tip_hash);
}

static bool extends_tip_locked(const cluster *c, const ledger_block *b) {
    if (!c->have_tip) return b->height == 0;
    return b->height == c->tip_height + 1 && cs_crypto_equal(b->prev, c->tip_hash, LEDGER_HASH);
}

static void fail_inflight_locked(cluster *c, core_status rc, const char *why) {
    if (!c->inflight.active || c->inflight.out != OUT_PENDING) return;
    c->inflight.out = OUT_FAILED;
    core_fail(&c->inflight.why, rc, "leader", "%s", why);
    c->inflight.rc = rc;
    pthread_cond_broadcast(&c->cond);
}

static void halt_locked(cluster *c, const core_error *why) {
    c->halted = true;
    c->halt = *why;
    fail_inflight_locked(c, CORE_ERR_STORAGE, "this node stopped applying blocks");
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result) {
    cluster *c = fsm->data;
    *result = NULL;
    entry e;
    core_error err = {0};
    pthread_mutex_lock(&c->lock);
    bool halted = c->halted;
    pthread_mutex_unlock(&c->lock);
    if (halted) return 0; /* stopped: the entry stays in the log for after a repair */
    if (entry_decode(buf->base, buf->len, &e, &err)) {
        core_error why;
        core_fail(&why, CORE_ERR_INVALID, "entry", "a committed entry is not a block: %.150s", err.message);
        pthread_mutex_lock(&c->lock);
        halt_locked(c, &why);
        pthread_mutex_unlock(&c->lock);
        if (c->opt.on_halt) c->opt.on_halt(c->opt.on_halt_ud, &why);
        return 0;
    }
    uint8_t hash[LEDGER_HASH];
    ledger_block_hash(&e.b, hash);
    pthread_mutex_lock(&c->lock);
    bool mine =
        c->inflight.active && c->inflight.out == OUT_PENDING && cs_crypto_equal(hash, c->inflight.hash, LEDGER_HASH);
    if (!extends_tip_locked(c, &e.b)) {
        /* Overtaken (or already applied, on a replay after restart). */
        c->skipped++;
        if (mine) fail_inflight_locked(c, CORE_ERR_IO, "the block was overtaken by another leader's");
        pthread_mutex_unlock(&c->lock);
        entry_free(&e);
        return 0;
    }
    if (mine) {
        /* Already applied in the producer's open transaction, which commits
         * when propose() returns; anything later queues behind it. */
        c->inflight.out = OUT_ACCEPTED;
        c->inflight.rc = CORE_OK;
        c->committed++;
        set_tip_locked(c, &e.b);
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
        entry_free(&e);
        return 0;
    }
    /* Someone else's block comes first: our pending proposal (if any) can
     * no longer extend the tip, and the producer must be free to apply. */
    fail_inflight_locked(c, CORE_ERR_IO, "another node's block came first");
    c->applying = true;
    pthread_mutex_unlock(&c->lock);
    core_status rc = ledger_apply_block(c->l, &e.b, e.txs, e.lens, e.n, &err);
    pthread_mutex_lock(&c->lock);
    c->applying = false;
    if (rc) {
        halt_locked(c, &err);
    } else {
        set_tip_locked(c, &e.b);
        c->applied++;
    }
    pthread_mutex_unlock(&c->lock);
    if (rc && c->opt.on_halt) c->opt.on_halt(c->opt.on_halt_ud, &err);
    entry_free(&e);
    return 0;
}

/* No snapshots in this slice: the threshold is set out of reach, and a
 * node catches up from the log. */
static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs) {
    (void)fsm, (void)bufs, (void)n_bufs;
    return RAFT_NOTFOUND;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf) {
    (void)fsm, (void)buf;
    return RAFT_NOTFOUND;
}

/* ---- proposals ---- */

static void on_applied(struct raft_apply *req, int status, void *result) {
    (void)result;
    apply_req *a = (apply_req *)req;
    cluster *c = a->c;
    pthread_mutex_lock(&c->lock);
    if (c->inflight.active && c->inflight.seq == a->seq && c->inflight.out == OUT_PENDING) {
        char why[160];
        if (status == 0)
            snprintf(why, sizeof why, "the block was committed but not applied");
        else
            snprintf(why, sizeof why, "raft did not commit the block: %s", raft_strerror(status));
        fail_inflight_locked(c, CORE_ERR_IO, why);
    }
    pthread_mutex_unlock(&c->lock);
    free(a);
}

static bool ready_now(cluster *c) {
    return c->ready && raft_state(&c->raft) == RAFT_LEADER && c->raft.current_term == c->ready_term;
}

/* Loop thread: hand a waiting proposal to raft. */
static void submit_inflight(cluster *c) {
    pthread_mutex_lock(&c->lock);
    if (!c->inflight.active || c->inflight.submitted || c->inflight.out != OUT_PENDING) {
        pthread_mutex_unlock(&c->lock);
        return;
    }
    if (!ready_now(c)) {
        fail_inflight_locked(c, CORE_ERR_IO, "this node is not the cluster's leader");
        pthread_mutex_unlock(&c->lock);
        return;
    }
    apply_req *a = malloc(sizeof *a);
    if (!a) {
        fail_inflight_locked(c, CORE_ERR_NOMEM, "out of memory");
        pthread_mutex_unlock(&c->lock);
        return;
    }
    a->c = c;
    a->seq = c->inflight.seq;
    struct raft_buffer buf = c->inflight.buf;
    c->inflight.submitted = true; /* raft owns buf if raft_apply succeeds; else we free it below */
    pthread_mutex_unlock(&c->lock);
    int rv = raft_apply(&c->raft, &a->req, &buf, 1, on_applied);
    if (rv == 0) return;
    free(a);
    raft_free(buf.base);
    char why[160];
    snprintf(why, sizeof why, "raft refused the block: %s", raft_strerror(rv));
    pthread_mutex_lock(&c->lock);
    fail_inflight_locked(c, CORE_ERR_IO, why);
    pthread_mutex_unlock(&c->lock);
}

static void deadline_after(struct timespec *ts, int ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    long ns = ts->tv_nsec + (long)(ms % 1000) * 1000000L;
    ts->tv_sec += ms / 1000 + ns / 1000000000L;
    ts->tv_nsec = ns % 1000000000L;
}

/* The ledger's consensus hook (producer thread). */
static core_status propose(void *ud, const ledger_block *header, const uint8_t *const *txs, const size_t *lens,
                           size_t n, core_error *err) {
    cluster *c = ud;
    size_t size = LEDGER_BLOCK_BYTES + 4;
    for (size_t i = 0; i < n; i++) size += 2 + lens[i];
    size = (size + 7) & ~(size_t)7;
    uint8_t *buf = raft_malloc(size);
    if (!buf) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory proposing a block");
    ledger_block_encode(header, buf);
    put_u32(buf + LEDGER_BLOCK_BYTES, (uint32_t)n);
    uint8_t *p = buf + LEDGER_BLOCK_BYTES + 4;
    for (size_t i = 0; i < n; i++) {
        p[0] = (uint8_t)(lens[i] >> 8), p[1] = (uint8_t)lens[i];
        memcpy(p + 2, txs[i], lens[i]);
        p += 2 + lens[i];
    }
    memset(p, 0, (size_t)(buf + size - p));
    pthread_mutex_lock(&c->lock);
    core_status rc = CORE_OK;
    if (c->stopping || !c->thread_running)
        rc = core_fail(err, CORE_ERR_IO, "leader", "the cluster node is stopped");
    else if (c->halted)
        rc = core_fail(err, CORE_ERR_STORAGE, "leader", "this node stopped applying blocks: %.150s", c->halt.message);
    else if (!c->ready)
        rc = core_fail(err, CORE_ERR_IO, "leader", "this node is not the cluster's leader (leader: node %llu)",
                       (unsigned long long)c->leader_id);
    else if (c->applying || !extends_tip_locked(c, header))
        rc = core_fail(err, CORE_ERR_IO, "leader", "this node is still catching up with the cluster");
    if (rc) {
        pthread_mutex_unlock(&c->lock);
        raft_free(buf);
        return rc;
    }
    proposal *q = &c->inflight;
    memset(q, 0, sizeof *q);
    q->active = true;
    q->seq = ++c->next_seq;
    q->out = OUT_PENDING;
    q->height = header->height;
    ledger_block_hash(header, q->hash);
    q->buf = (struct raft_buffer){buf, size};
    c->proposed++;
    pthread_mutex_unlock(&c->lock);
    uv_async_send(&c->wake);

    struct timespec deadline;
    deadline_after(&deadline, c->opt.propose_timeout_ms);
    pthread_mutex_lock(&c->lock);
    while (q->out == OUT_PENDING)
        if (pthread_cond_timedwait(&c->cond, &c->lock, &deadline) != 0) break;
    if (q->out == OUT_PENDING) fail_inflight_locked(c, CORE_ERR_IO, "the block was not committed in time (no quorum?)");
    rc = q->rc;
    if (rc && err) *err = q->why;
    if (!q->submitted) raft_free(q->buf.base);
    q->active = false;
    pthread_mutex_unlock(&c->lock);
    return rc;
}

const ledger_consensus *cluster_consensus(cluster *c) {
    c->hook.ud = c;
    c->hook.propose = propose;
    return &c->hook;
}

/* ---- leadership and genesis (loop thread) ---- */

static void on_barrier(struct raft_barrier *req, int status) {
    cluster *c = req->data;
    c->barrier_pending = false;
    if (status != 0 || raft_state(&c->raft) != RAFT_LEADER || c->raft.current_term != c->barrier_term) return;
    pthread_mutex_lock(&c->lock);
    c->ready = true;
    c->ready_term = c->barrier_term;
    pthread_mutex_unlock(&c->lock);
}

static void genesis_work(uv_work_t *w) {
    cluster *c = w->data;
    core_error err = {0};
    ledger_seal_genesis(c->l, &err); /* a failure is retried from the tick; CONFLICT means it exists */
}

static void genesis_done(uv_work_t *w, int status) {
    (void)status;
    cluster *c = w->data;
    c->genesis_running = false;
    c->genesis_retry_at = core_monotonic() + GENESIS_RETRY_S;
}

static void on_tick(uv_timer_t *t) {
    cluster *c = t->data;
    if (c->closing_raft) return;
    bool leader = raft_state(&c->raft) == RAFT_LEADER;
    raft_id lid = 0;
    const char *addr = NULL;
    raft_leader(&c->raft, &lid, &addr);
    pthread_mutex_lock(&c->lock);
    c->leader = leader;
    c->leader_id = lid;
    if (!leader || c->raft.current_term != c->ready_term) c->ready = false;
    bool ready = c->ready;
    bool genesis = ready && !c->have_tip && !c->halted;
    pthread_mutex_unlock(&c->lock);
    if (leader && !ready && !c->barrier_pending) {
        c->barrier.data = c;
        c->barrier_term = c->raft.current_term;
        if (raft_barrier(&c->raft, &c->barrier, on_barrier) == 0) c->barrier_pending = true;
    }
    if (genesis && !c->genesis_running && core_monotonic() >= c->genesis_retry_at) {
        c->genesis_work.data = c;
        if (uv_queue_work(&c->loop, &c->genesis_work, genesis_work, genesis_done) == 0) c->genesis_running = true;
    }
}

/* ---- start / stop ---- */

static void on_handle_closed(uv_handle_t *h) { (void)h; }

static void on_raft_closed(struct raft *r) {
    cluster *c = r->data;
    raft_uv_close(&c->io);
    raft_uv_tcp_close(&c->transport);
    if (!c->handles_ready) return;
    uv_close((uv_handle_t *)&c->tick, on_handle_closed);
    uv_close((uv_handle_t *)&c->wake, on_handle_closed);
}

static void on_wake(uv_async_t *a) {
    cluster *c = a->data;
    pthread_mutex_lock(&c->lock);
    bool stopping = c->stopping;
    pthread_mutex_unlock(&c->lock);
    if (!stopping) {
        submit_inflight(c);
        return;
    }
    if (c->closing_raft) return;
    c->closing_raft = true;
    uv_timer_stop(&c->tick);
    raft_close(&c->raft, on_raft_closed);
}

static void *loop_main(void *arg) {
    cluster *c = arg;
    uv_run(&c->loop, UV_RUN_DEFAULT);
    return NULL;
}

static core_status raft_fail(core_error *err, const char *what, int rv, struct raft *r) {
    return core_fail(err, CORE_ERR_IO, "raft", "%s: %s", what, r ? raft_errmsg(r) : raft_strerror(rv));
}

/* Everything raft needs, set up on the calling thread before the loop runs. */
static core_status start_raft(cluster *c, core_error *err) {
    const cluster_node *me = self_node(c);
    int rc;
    if (uv_loop_init(&c->loop) != 0) return core_fail(err, CORE_ERR_IO, "raft", "cannot create the event loop");
    c->loop_ready = true;
    if ((rc = raft_uv_tcp_init(&c->transport, &c->loop))) return raft_fail(err, "transport", rc, NULL);
    c->transport_ready = true;
    if ((rc = raft_uv_init(&c->io, &c->loop, c->dir, &c->transport)))
        return core_fail(err, CORE_ERR_IO, "dir", "cannot open the raft log in %s: %s", c->dir, c->io.errmsg);
    c->io_ready = true;
    if (c->opt.segment_bytes) raft_uv_set_segment_size(&c->io, c->opt.segment_bytes);
    c->fsm = (struct raft_fsm){
        .version = 1, .data = c, .apply = fsm_apply, .snapshot = fsm_snapshot, .restore = fsm_restore};
    if ((rc = raft_init(&c->raft, &c->io, &c->fsm, me->id, me->address))) return raft_fail(err, "init", rc, NULL);
    c->raft_ready = true;
    c->raft.data = c;
    raft_set_election_timeout(&c->raft, c->opt.election_ms);
    raft_set_heartbeat_timeout(&c->raft, c->opt.heartbeat_ms);
    raft_set_snapshot_threshold(&c->raft, UINT32_MAX);
    raft_set_pre_vote(&c->raft, true);
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    for (size_t i = 0; i < c->opt.n_nodes && !rc; i++)
        rc = raft_configuration_add(&conf, c->opt.nodes[i].id, c->opt.nodes[i].address, RAFT_VOTER);
    if (!rc) rc = raft_bootstrap(&c->raft, &conf);
    raft_configuration_close(&conf);
    if (rc && rc != RAFT_CANTBOOTSTRAP) return raft_fail(err, "bootstrap", rc, &c->raft);
    if ((rc = raft_start(&c->raft))) return raft_fail(err, "start", rc, &c->raft);
    uv_async_init(&c->loop, &c->wake, on_wake);
    c->wake.data = c;
    uv_timer_init(&c->loop, &c->tick);
    c->tick.data = c;
    uv_timer_start(&c->tick, on_tick, TICK_MS, TICK_MS);
    c->handles_ready = true;
    return CORE_OK;
}

/* Undo a start_raft that failed half-way (the loop never ran). */
static void unwind_raft(cluster *c) {
    if (c->raft_ready) {
        c->closing_raft = true;
        raft_close(&c->raft, on_raft_closed); /* closes io and transport, then the handles */
    } else {
        if (c->io_ready) raft_uv_close(&c->io);
        if (c->transport_ready) raft_uv_tcp_close(&c->transport);
    }
    if (c->loop_ready) {
        uv_run(&c->loop, UV_RUN_DEFAULT);
        uv_loop_close(&c->loop);
    }
    c->loop_ready = c->raft_ready = c->io_ready = c->transport_ready = c->handles_ready = false;
}

core_status cluster_start(cluster *c, ledger *l, core_error *err) {
    if (c->thread_running || c->loop_ready)
        return core_fail(err, CORE_ERR_INVALID, NULL, "the node is already started");
    core_status rc = core_mkdirs(c->dir, err);
    if (rc) return rc;
    /* libuv writes to TCP streams with write(2), not send(MSG_NOSIGNAL):
     * a peer that went away would raise SIGPIPE and kill the process, when
     * raft only needs EPIPE to reconnect later. Left alone if someone has
     * already chosen a disposition. */
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
        struct sigaction ign = {.sa_handler = SIG_IGN};
        sigemptyset(&ign.sa_mask);
        sigaction(SIGPIPE, &ign, NULL);
    }
    c->l = l;
    ledger_block head;
    core_error e = {0};
    pthread_mutex_lock(&c->lock);
    if (ledger_head(l, &head, &e) == CORE_OK) set_tip_locked(c, &head);
    c->stopping = false;
    pthread_mutex_unlock(&c->lock);
    if ((rc = start_raft(c, err))) {
        unwind_raft(c);
        return rc;
    }
    if (pthread_create(&c->thread, NULL, loop_main, c) != 0) {
        pthread_mutex_lock(&c->lock);
        c->stopping = true;
        pthread_mutex_unlock(&c->lock);
        on_wake(&c->wake);
        uv_run(&c->loop, UV_RUN_DEFAULT);
        uv_loop_close(&c->loop);
        c->loop_ready = false;
        return core_fail(err, CORE_ERR_NOMEM, NULL, "cannot start the raft thread");
    }
    pthread_mutex_lock(&c->lock);
    c->thread_running = true;
    pthread_mutex_unlock(&c->lock);
    return CORE_OK;
}

void cluster_stop(cluster *c) {
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    bool running = c->thread_running;
    c->stopping = true;
    fail_inflight_locked(c, CORE_ERR_IO, "the cluster node is stopping");
    pthread_mutex_unlock(&c->lock);
    if (!running) return;
    uv_async_send(&c->wake);
    pthread_join(c->thread, NULL);
    uv_loop_close(&c->loop);
    pthread_mutex_lock(&c->lock);
    c->thread_running = false;
    c->loop_ready = false;
    c->leader = c->ready = false;
    pthread_mutex_unlock(&c->lock);
}

void cluster_close(cluster *c) {
    if (!c) return;
    cluster_stop(c);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c);
}

void cluster_get_status(cluster *c, cluster_status *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&c->lock);
    out->running = c->thread_running && !c->stopping;
    out->leader = c->leader;
    out->ready = c->ready;
    out->leader_id = c->leader_id;
    out->have_tip = c->have_tip;
    out->tip_height = c->tip_height;
    out->proposed = c->proposed;
    out->committed = c->committed;
    out->applied = c->applied;
    out->skipped = c->skipped;
    out->halted = c->halted;
    out->halt = c->halt;
    pthread_mutex_unlock(&c->lock);
}

/* ---- the cluster file ---- */

static core_status load_node(const json_t *j, size_t i, cluster_node *n, core_error *err) {
    json_t *id = json_object_get(j, "id"), *addr = json_object_get(j, "address"), *key = json_object_get(j, "key");
    if (!json_is_object(j) || json_object_size(j) != 3 || !json_is_integer(id) || !json_is_string(addr) ||
        !json_is_string(key))
        return core_fail(err, CORE_ERR_INVALID, "nodes", "node %zu must be {\"id\", \"address\", \"key\"}", i + 1);
    if (json_integer_value(id) < 1) return core_fail(err, CORE_ERR_INVALID, "nodes.id", "node ids start at 1");
    n->id = (uint64_t)json_integer_value(id);
    if (json_string_length(addr) >= sizeof n->address)
        return core_fail(err, CORE_ERR_INVALID, "nodes.address", "node %zu: the address is too long", i + 1);
    snprintf(n->address, sizeof n->address, "%s", json_string_value(addr));
    if (!cs_crypto_unhex(json_string_value(key), n->key, LEDGER_KEY))
        return core_fail(err, CORE_ERR_INVALID, "nodes.key", "node %zu: the key must be 64 hex digits", i + 1);
    return CORE_OK;
}

core_status cluster_options_load(const char *path, cluster_options *o, core_error *err) {
    json_error_t jerr;
    json_t *root = core_json_load_file(path, JSON_REJECT_DUPLICATES, &jerr, err);
    if (!root) return err ? err->code : CORE_ERR_INVALID;
    core_status rc = CORE_OK;
    json_t *nodes = json_object_get(root, "nodes");
    if (!json_is_object(root) || !json_is_array(nodes) || json_array_size(nodes) < 1 ||
        json_array_size(nodes) > LEDGER_MAX_NODES)
        rc = core_fail(err, CORE_ERR_INVALID, "nodes", "the cluster file needs \"nodes\": 1 to %d nodes",
                       LEDGER_MAX_NODES);
    for (size_t i = 0; !rc && i < json_array_size(nodes); i++)
        rc = load_node(json_array_get(nodes, i), i, &o->nodes[i], err);
    if (!rc) o->n_nodes = json_array_size(nodes);
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (rc) break;
        if (strcmp(k, "nodes") == 0) continue;
        long long x = json_is_integer(v) ? json_integer_value(v) : -1;
        if (strcmp(k, "election_ms") == 0 && x >= 10 && x <= 60000)
            o->election_ms = (unsigned)x;
        else if (strcmp(k, "heartbeat_ms") == 0 && x >= 5 && x <= 30000)
            o->heartbeat_ms = (unsigned)x;
        else if (strcmp(k, "propose_timeout_ms") == 0 && x >= 10 && x <= 600000)
            o->propose_timeout_ms = (int)x;
        else
            rc = core_fail(err, CORE_ERR_INVALID, k, "unknown member or value out of range: %.60s", k);
    }
    json_decref(root);
    return rc;
}
