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
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
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

    /* The forward server (see "forwarding" below). fwd_conns and
     * fwd_active are under lock; the rest belongs to start/stop. */
    int fwd_listen, fwd_wake[2];
    pthread_t fwd_thread;
    bool fwd_running;
    int fwd_conns[64];
    size_t fwd_active;
    pthread_cond_t fwd_idle;
    size_t n_peers;
    struct in_addr peers[2 * LEDGER_MAX_NODES];
    uint64_t forwarded, forward_retries; /* under lock */
};

void cluster_options_defaults(cluster_options *o) {
    memset(o, 0, sizeof *o);
    o->election_ms = 1000;
    o->heartbeat_ms = 100;
    o->propose_timeout_ms = 10000;
    o->forward_timeout_ms = 15000; /* a proposal's timeout and a leader change */
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
    if (o->forward_timeout_ms < 1)
        return core_fail(err, CORE_ERR_INVALID, "forward_timeout_ms", "the forwarding timeout must be positive");
    bool self = false;
    for (size_t i = 0; i < o->n_nodes; i++) {
        const cluster_node *n = &o->nodes[i];
        if (n->id < 1) return core_fail(err, CORE_ERR_INVALID, "nodes.id", "node ids start at 1");
        if (memchr(n->address, 0, sizeof n->address) == NULL || !address_ok(n->address))
            return core_fail(err, CORE_ERR_INVALID, "nodes.address", "node %llu: the address must be IPv4 a.b.c.d:port",
                             (unsigned long long)n->id);
        if (memchr(n->forward, 0, sizeof n->forward) == NULL || (n->forward[0] && !address_ok(n->forward)))
            return core_fail(err, CORE_ERR_INVALID, "nodes.forward",
                             "node %llu: the forward address must be IPv4 a.b.c.d:port", (unsigned long long)n->id);
        for (size_t j = 0; j < i; j++) {
            if (n->forward[0] &&
                (strcmp(o->nodes[j].forward, n->forward) == 0 || strcmp(o->nodes[j].address, n->forward) == 0 ||
                 strcmp(o->nodes[j].forward, n->address) == 0))
                return core_fail(err, CORE_ERR_INVALID, "nodes.forward", "address %s is listed twice", n->forward);
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

/* The forward port a node leaves unset: its raft port + 100, same host. */
static core_status default_forward(cluster_node *n, core_error *err) {
    if (n->forward[0]) return CORE_OK;
    const char *colon = strrchr(n->address, ':');
    long port = strtol(colon + 1, NULL, 10) + 100;
    if (port > 65535)
        return core_fail(err, CORE_ERR_INVALID, "nodes.forward",
                         "node %llu: raft port + 100 is past 65535; set \"forward\"", (unsigned long long)n->id);
    snprintf(n->forward, sizeof n->forward, "%.*s:%ld", (int)(colon - n->address), n->address, port);
    return CORE_OK;
}

core_status cluster_open(const cluster_options *o, cluster **out, core_error *err) {
    *out = NULL;
    core_status rc = check_options(o, err);
    if (rc) return rc;
    cluster_options full = *o;
    for (size_t i = 0; i < full.n_nodes && !rc; i++) rc = default_forward(&full.nodes[i], err);
    if (!rc) rc = check_options(&full, err); /* a default may collide with a listed address */
    if (rc) return rc;
    cluster *c = calloc(1, sizeof *c);
    if (!c) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    c->opt = full;
    snprintf(c->dir, sizeof c->dir, "%s", o->dir);
    c->opt.dir = c->dir;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    pthread_cond_init(&c->fwd_idle, NULL);
    c->fwd_listen = c->fwd_wake[0] = c->fwd_wake[1] = -1;
    for (size_t i = 0; i < sizeof c->fwd_conns / sizeof c->fwd_conns[0]; i++) c->fwd_conns[i] = -1;
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

/* ---- forwarding: a follower's writes go to the leader (see cluster.h) ----
 *
 * Plain blocking sockets on their own threads, not raft's libuv loop: the
 * leader's handler waits in ledger_submit_many until its block commits, and
 * that commit needs the loop, so it must not run there. The follower's
 * side runs in the submitter's thread; every wait is bounded by poll(). */

#define FWD_IO_MS 5000      /* a peer gets this long to send its request, and to read the answer */
#define FWD_CONNECT_MS 2000 /* per connection attempt */
#define FWD_BACKOFF_MIN_MS 20
#define FWD_BACKOFF_MAX_MS 500
#define FWD_HEADER 8
#define FWD_MAX_REQ (5 + CLUSTER_FORWARD_MAX_TXS * (2 + LEDGER_TX_MAX))
#define FWD_MAX_RESP                                   \
    (19 + 2 + sizeof(((core_error *)0)->message) + 4 + \
     CLUSTER_FORWARD_MAX_TXS * (17 + 1 + sizeof(((core_error *)0)->field) + 2 + sizeof(((core_error *)0)->message)))
#define FWD_FLAG_RETRY 1u

enum { FWD_RECEIPTS = 0, FWD_NOT_LEADER = 1, FWD_REFUSED = 2 };

/* Set on the forward server's threads: a write they submit is sealed on
 * this node (it is the leader, or fails as a follower's write did before
 * forwarding), never forwarded on again. */
static _Thread_local bool fwd_serving;

static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

static bool parse_addr(const char *a, struct sockaddr_in *out) {
    char host[CLUSTER_ADDRESS_MAX];
    const char *colon = strrchr(a, ':');
    if (!colon || (size_t)(colon - a) >= sizeof host) return false;
    memcpy(host, a, (size_t)(colon - a));
    host[colon - a] = 0;
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)strtol(colon + 1, NULL, 10));
    return inet_pton(AF_INET, host, &out->sin_addr) == 1;
}

/* Move len bytes through fd (non-blocking) until deadline (monotonic s). */
static bool io_full(int fd, uint8_t *buf, size_t len, bool out, double deadline) {
    while (len > 0) {
        ssize_t k = out ? send(fd, buf, len, MSG_NOSIGNAL) : recv(fd, buf, len, 0);
        if (k > 0) {
            buf += k;
            len -= (size_t)k;
            continue;
        }
        if (k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return false;
        int ms = (int)((deadline - core_monotonic()) * 1000);
        if (ms <= 0) return false;
        struct pollfd p = {.fd = fd, .events = out ? POLLOUT : POLLIN};
        if (poll(&p, 1, ms) < 0 && errno != EINTR) return false;
    }
    return true;
}

/* ---- the leader's side ---- */

typedef struct {
    cluster *c;
    int fd;
    size_t slot;
} fwd_conn;

/* Answer a request body: decode, submit, encode the answer into *out. */
static size_t fwd_handle(cluster *c, const uint8_t *req, size_t len, uint8_t *out) {
    uint8_t kind = FWD_RECEIPTS;
    char msg[sizeof(((core_error *)0)->message)] = "";
    const uint8_t *txs[CLUSTER_FORWARD_MAX_TXS];
    size_t lens[CLUSTER_FORWARD_MAX_TXS];
    ledger_receipt *rs = calloc(CLUSTER_FORWARD_MAX_TXS, sizeof *rs);
    uint32_t n = len >= 5 ? get_u32(req + 1) : 0;
    bool retry = len >= 5 && (req[0] & FWD_FLAG_RETRY);
    size_t off = 5;
    if (!rs) {
        kind = FWD_REFUSED;
        snprintf(msg, sizeof msg, "out of memory");
    } else if (len < 5 || n == 0 || n > CLUSTER_FORWARD_MAX_TXS) {
        kind = FWD_REFUSED;
        snprintf(msg, sizeof msg, "malformed forward request");
    }
    for (uint32_t i = 0; kind == FWD_RECEIPTS && i < n; i++) {
        size_t tl = off + 2 <= len ? (size_t)req[off] << 8 | req[off + 1] : 0;
        if (tl == 0 || tl > LEDGER_TX_MAX || off + 2 + tl > len) {
            kind = FWD_REFUSED;
            snprintf(msg, sizeof msg, "malformed forward request");
            break;
        }
        txs[i] = req + off + 2;
        lens[i] = tl;
        off += 2 + tl;
    }
    if (kind == FWD_RECEIPTS && off != len) {
        kind = FWD_REFUSED;
        snprintf(msg, sizeof msg, "malformed forward request");
    }
    pthread_mutex_lock(&c->lock);
    uint64_t leader_id = c->leader_id;
    if (kind == FWD_RECEIPTS && (c->stopping || !c->ready)) {
        kind = FWD_NOT_LEADER;
        snprintf(msg, sizeof msg, "node %llu is not the cluster's leader", (unsigned long long)c->opt.self);
    }
    pthread_mutex_unlock(&c->lock);
    if (kind == FWD_RECEIPTS) {
        core_error e = {0};
        fwd_serving = true;
        core_status rc = ledger_submit_many(c->l, txs, lens, n, rs, &e);
        fwd_serving = false;
        if (rc) {
            kind = FWD_REFUSED;
            snprintf(msg, sizeof msg, "%s", e.message);
        }
    }
    for (uint32_t i = 0; kind == FWD_RECEIPTS && retry && i < n; i++) {
        /* A retry whose first attempt committed: its nonce is used because
         * this very transaction used it. Answer where it sits. */
        if (rs[i].status != CORE_ERR_CONFLICT || strcmp(rs[i].error.field, "nonce") != 0) continue;
        uint8_t *buf = NULL;
        size_t blen;
        uint64_t seq, height;
        if (ledger_get_tx(c->l, rs[i].txid, &buf, &blen, &seq, &height, NULL) == CORE_OK) {
            memset(&rs[i].error, 0, sizeof rs[i].error);
            rs[i].status = CORE_OK;
            rs[i].seq = seq;
            rs[i].height = height;
        }
        free(buf);
    }
    ledger_block head;
    uint64_t leader_height = ledger_head(c->l, &head, NULL) == CORE_OK ? head.height : 0;
    uint8_t *p = out + FWD_HEADER;
    *p++ = kind;
    put_u64(p, leader_height), p += 8;
    put_u64(p, leader_id), p += 8;
    size_t ml = strlen(msg);
    *p++ = (uint8_t)(ml >> 8), *p++ = (uint8_t)ml;
    memcpy(p, msg, ml), p += ml;
    uint32_t nr = kind == FWD_RECEIPTS ? n : 0;
    put_u32(p, nr), p += 4;
    for (uint32_t i = 0; i < nr; i++) {
        *p++ = (uint8_t)rs[i].status;
        put_u64(p, rs[i].seq), p += 8;
        put_u64(p, rs[i].height), p += 8;
        size_t fl = strnlen(rs[i].error.field, sizeof rs[i].error.field - 1);
        *p++ = (uint8_t)fl;
        memcpy(p, rs[i].error.field, fl), p += fl;
        size_t el = strnlen(rs[i].error.message, sizeof rs[i].error.message - 1);
        *p++ = (uint8_t)(el >> 8), *p++ = (uint8_t)el;
        memcpy(p, rs[i].error.message, el), p += el;
    }
    free(rs);
    size_t body = (size_t)(p - out) - FWD_HEADER;
    memcpy(out, "CSR1", 4);
    put_u32(out + 4, (uint32_t)body);
    return FWD_HEADER + body;
}

static void *fwd_conn_main(void *arg) {
    fwd_conn *k = arg;
    cluster *c = k->c;
    uint8_t hdr[FWD_HEADER];
    uint8_t *req = NULL, *resp = NULL;
    double deadline = core_monotonic() + FWD_IO_MS / 1000.0;
    if (io_full(k->fd, hdr, sizeof hdr, false, deadline) && memcmp(hdr, "CSF1", 4) == 0) {
        uint32_t len = get_u32(hdr + 4);
        if (len <= FWD_MAX_REQ && (req = malloc(len ? len : 1)) && io_full(k->fd, req, len, false, deadline) &&
            (resp = malloc(FWD_MAX_RESP + FWD_HEADER))) {
            size_t rl = fwd_handle(c, req, len, resp);
            io_full(k->fd, resp, rl, true, core_monotonic() + FWD_IO_MS / 1000.0);
        }
    }
    free(req);
    free(resp);
    close(k->fd);
    pthread_mutex_lock(&c->lock);
    c->fwd_conns[k->slot] = -1;
    c->fwd_active--;
    pthread_cond_broadcast(&c->fwd_idle);
    pthread_mutex_unlock(&c->lock);
    free(k);
    return NULL;
}

static bool peer_listed(const cluster *c, const struct sockaddr_in *a) {
    for (size_t i = 0; i < c->n_peers; i++)
        if (c->peers[i].s_addr == a->sin_addr.s_addr) return true;
    return false;
}

static void *fwd_accept_main(void *arg) {
    cluster *c = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = c->fwd_listen, .events = POLLIN}, {.fd = c->fwd_wake[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR) break;
        if (p[1].revents) break;
        if (!(p[0].revents & POLLIN)) continue;
        struct sockaddr_in peer;
        socklen_t pl = sizeof peer;
        int fd = accept(c->fwd_listen, (struct sockaddr *)&peer, &pl);
        if (fd < 0) continue;
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 || fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
            close(fd);
            continue;
        }
        if (pl != sizeof peer || peer.sin_family != AF_INET || !peer_listed(c, &peer)) {
            close(fd); /* not a listed node's address */
            continue;
        }
        fwd_conn *k = malloc(sizeof *k);
        pthread_mutex_lock(&c->lock);
        size_t slot = SIZE_MAX;
        for (size_t i = 0; k && i < sizeof c->fwd_conns / sizeof c->fwd_conns[0]; i++)
            if (c->fwd_conns[i] < 0) {
                slot = i;
                break;
            }
        if (slot == SIZE_MAX) { /* busy (or out of memory): the follower retries */
            pthread_mutex_unlock(&c->lock);
            free(k);
            close(fd);
            continue;
        }
        c->fwd_conns[slot] = fd;
        c->fwd_active++;
        pthread_mutex_unlock(&c->lock);
        *k = (fwd_conn){.c = c, .fd = fd, .slot = slot};
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int prc = pthread_create(&t, &at, fwd_conn_main, k);
        pthread_attr_destroy(&at);
        if (prc != 0) {
            pthread_mutex_lock(&c->lock);
            c->fwd_conns[slot] = -1;
            c->fwd_active--;
            pthread_mutex_unlock(&c->lock);
            close(fd);
            free(k);
        }
    }
    return NULL;
}

static const cluster_node *node_by_id(const cluster *c, uint64_t id) {
    for (size_t i = 0; i < c->opt.n_nodes; i++)
        if (c->opt.nodes[i].id == id) return &c->opt.nodes[i];
    return NULL;
}

static core_status fwd_start(cluster *c, core_error *err) {
    c->n_peers = 0;
    for (size_t i = 0; i < c->opt.n_nodes; i++) {
        struct sockaddr_in a;
        if (parse_addr(c->opt.nodes[i].address, &a)) c->peers[c->n_peers++] = a.sin_addr;
        if (parse_addr(c->opt.nodes[i].forward, &a)) c->peers[c->n_peers++] = a.sin_addr;
    }
    const cluster_node *me = self_node(c);
    struct sockaddr_in a;
    parse_addr(me->forward, &a);
    c->fwd_listen = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (c->fwd_listen < 0 || setsockopt(c->fwd_listen, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(c->fwd_listen, (struct sockaddr *)&a, sizeof a) != 0 || listen(c->fwd_listen, 64) != 0 ||
        pipe(c->fwd_wake) != 0) {
        core_status rc = core_fail(err, CORE_ERR_IO, "nodes.forward", "cannot listen on the forward port %s: %s",
                                   me->forward, strerror(errno));
        if (c->fwd_listen >= 0) close(c->fwd_listen);
        c->fwd_listen = -1;
        return rc;
    }
    fcntl(c->fwd_wake[0], F_SETFD, FD_CLOEXEC);
    fcntl(c->fwd_wake[1], F_SETFD, FD_CLOEXEC);
    if (pthread_create(&c->fwd_thread, NULL, fwd_accept_main, c) != 0) {
        close(c->fwd_listen);
        close(c->fwd_wake[0]);
        close(c->fwd_wake[1]);
        c->fwd_listen = c->fwd_wake[0] = c->fwd_wake[1] = -1;
        return core_fail(err, CORE_ERR_NOMEM, NULL, "cannot start the forward thread");
    }
    c->fwd_running = true;
    return CORE_OK;
}

/* Stop accepting, cut open connections and wait for their threads. */
static void fwd_stop(cluster *c) {
    if (!c->fwd_running) return;
    (void)!write(c->fwd_wake[1], "x", 1);
    pthread_join(c->fwd_thread, NULL);
    close(c->fwd_listen);
    close(c->fwd_wake[0]);
    close(c->fwd_wake[1]);
    c->fwd_listen = c->fwd_wake[0] = c->fwd_wake[1] = -1;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < sizeof c->fwd_conns / sizeof c->fwd_conns[0]; i++)
        if (c->fwd_conns[i] >= 0) shutdown(c->fwd_conns[i], SHUT_RDWR);
    while (c->fwd_active > 0) pthread_cond_wait(&c->fwd_idle, &c->lock);
    pthread_mutex_unlock(&c->lock);
    c->fwd_running = false;
}

/* ---- the follower's side (the hook, in a submitter's thread) ---- */

static bool leads(void *ud) {
    cluster *c = ud;
    if (fwd_serving) return true;
    pthread_mutex_lock(&c->lock);
    /* A stopped node seals (and fails) locally, as before forwarding. */
    bool here = c->ready || c->stopping || !c->thread_running;
    pthread_mutex_unlock(&c->lock);
    return here;
}

typedef enum { EX_OK, EX_LOST, EX_NOT_LEADER, EX_REFUSED } exchange_result;

/* One request to addr and its answer. EX_LOST: no answer (the request may
 * or may not have reached the leader). */
static exchange_result fwd_exchange(const char *addr, const uint8_t *req, size_t req_len, double deadline,
                                    uint8_t **resp, size_t *resp_len) {
    struct sockaddr_in a;
    if (!parse_addr(addr, &a)) return EX_LOST;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return EX_LOST;
    exchange_result r = EX_LOST;
    double cdl = core_monotonic() + FWD_CONNECT_MS / 1000.0;
    if (cdl > deadline) cdl = deadline;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (errno != EINPROGRESS) goto out;
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int ms = (int)((cdl - core_monotonic()) * 1000);
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (ms <= 0 || poll(&p, 1, ms) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr)
            goto out;
    }
    if (!io_full(fd, (uint8_t *)req, req_len, true, deadline)) goto out;
    uint8_t hdr[FWD_HEADER];
    if (!io_full(fd, hdr, sizeof hdr, false, deadline) || memcmp(hdr, "CSR1", 4) != 0) goto out;
    uint32_t len = get_u32(hdr + 4);
    if (len < 23 || len > FWD_MAX_RESP) goto out;
    uint8_t *body = malloc(len);
    if (!body) goto out;
    if (!io_full(fd, body, len, false, deadline)) {
        free(body);
        goto out;
    }
    *resp = body;
    *resp_len = len;
    r = body[0] == FWD_RECEIPTS ? EX_OK : body[0] == FWD_NOT_LEADER ? EX_NOT_LEADER : EX_REFUSED;
out:
    close(fd);
    return r;
}

/* Read an answer's receipts into rs[idx[i]]; false if it is malformed. */
static bool fwd_read_receipts(const uint8_t *b, size_t len, const size_t *idx, size_t n, ledger_receipt *rs) {
    size_t off = 17;
    size_t ml = (size_t)b[off] << 8 | b[off + 1];
    off += 2 + ml;
    if (off + 4 > len || get_u32(b + off) != n) return false;
    off += 4;
    for (size_t i = 0; i < n; i++) {
        if (off + 18 > len) return false;
        ledger_receipt *r = &rs[idx[i]];
        uint8_t st = b[off];
        uint64_t seq = get_u64(b + off + 1), height = get_u64(b + off + 9);
        size_t fl = b[off + 17];
        off += 18;
        if (fl >= sizeof r->error.field || off + fl + 2 > len) return false;
        const uint8_t *f = b + off;
        off += fl;
        size_t el = (size_t)b[off] << 8 | b[off + 1];
        off += 2;
        if (el >= sizeof r->error.message || off + el > len || st > CORE_ERR_VERSION) return false;
        memset(&r->error, 0, sizeof r->error);
        r->status = (core_status)st;
        r->seq = seq;
        r->height = height;
        memcpy(r->error.field, f, fl);
        memcpy(r->error.message, b + off, el);
        r->error.code = r->status;
        off += el;
    }
    return off == len;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The hook: send txs to whoever leads, retrying what no leader took. */
static core_status forward(void *ud, const uint8_t *const *txs, const size_t *lens, size_t n, ledger_receipt *rs,
                           uint64_t *leader_height, core_error *err) {
    cluster *c = ud;
    bool *todo = calloc(n ? n : 1, sizeof *todo), *sent = calloc(n ? n : 1, sizeof *sent);
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    uint8_t *req = malloc(FWD_HEADER + FWD_MAX_REQ);
    if (!todo || !sent || !idx || !req) {
        free(todo), free(sent), free(idx), free(req);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory forwarding a write");
    }
    for (size_t i = 0; i < n; i++) todo[i] = true;
    size_t left = n;
    double deadline = core_monotonic() + c->opt.forward_timeout_ms / 1000.0;
    int backoff = FWD_BACKOFF_MIN_MS;
    uint64_t last_leader = 0;
    core_status final = CORE_OK;
    core_error why = {0};
    *leader_height = 0;
    while (left > 0) {
        pthread_mutex_lock(&c->lock);
        uint64_t lid = c->leader_id;
        bool stopping = c->stopping, halted = c->halted;
        core_error halt = c->halt;
        pthread_mutex_unlock(&c->lock);
        if (stopping) {
            final = core_fail(&why, CORE_ERR_IO, "leader", "the cluster node is stopping");
            break;
        }
        if (halted) {
            final =
                core_fail(&why, CORE_ERR_STORAGE, "leader", "this node stopped applying blocks: %.150s", halt.message);
            break;
        }
        if (core_monotonic() >= deadline) {
            final = core_fail(&why, CORE_ERR_IO, "leader",
                              "no cluster leader took the write within %d ms (last known leader: node %llu)",
                              c->opt.forward_timeout_ms, (unsigned long long)(lid ? lid : last_leader));
            break;
        }
        const cluster_node *to = lid ? node_by_id(c, lid) : NULL;
        if (!to) {
            sleep_ms(backoff);
            backoff = backoff * 2 > FWD_BACKOFF_MAX_MS ? FWD_BACKOFF_MAX_MS : backoff * 2;
            continue;
        }
        last_leader = lid;
        /* One request of up to CLUSTER_FORWARD_MAX_TXS of what is left. */
        size_t k = 0;
        bool again = false;
        uint8_t *p = req + FWD_HEADER + 5;
        for (size_t i = 0; i < n && k < CLUSTER_FORWARD_MAX_TXS; i++) {
            if (!todo[i]) continue;
            idx[k++] = i;
            again |= sent[i];
            p[0] = (uint8_t)(lens[i] >> 8), p[1] = (uint8_t)lens[i];
            memcpy(p + 2, txs[i], lens[i]);
            p += 2 + lens[i];
        }
        size_t body = (size_t)(p - req) - FWD_HEADER;
        memcpy(req, "CSF1", 4);
        put_u32(req + 4, (uint32_t)body);
        req[FWD_HEADER] = again ? FWD_FLAG_RETRY : 0;
        put_u32(req + FWD_HEADER + 1, (uint32_t)k);
        for (size_t i = 0; i < k; i++) sent[idx[i]] = true;
        uint8_t *resp = NULL;
        size_t rl = 0;
        exchange_result ex = fwd_exchange(to->forward, req, FWD_HEADER + body, deadline, &resp, &rl);
        pthread_mutex_lock(&c->lock);
        c->forwarded += k;
        if (again) c->forward_retries++;
        pthread_mutex_unlock(&c->lock);
        if (ex == EX_OK && !fwd_read_receipts(resp, rl, idx, k, rs)) ex = EX_LOST;
        if (resp && rl >= 17) {
            uint64_t lh = get_u64(resp + 1);
            if (lh > *leader_height) *leader_height = lh;
        }
        if (ex == EX_REFUSED) {
            size_t ml = (size_t)resp[17] << 8 | resp[18];
            if (ml > 200 || 19 + ml > rl) ml = 0;
            final = core_fail(&why, CORE_ERR_IO, "leader", "the leader refused the forwarded write: %.*s", (int)ml,
                              (const char *)resp + 19);
            free(resp);
            break;
        }
        free(resp);
        bool progress = false;
        if (ex == EX_OK)
            for (size_t i = 0; i < k; i++) {
                ledger_receipt *r = &rs[idx[i]];
                /* The leader stepped down while sealing: nothing of it was
                 * acknowledged; send it again to the next leader. */
                if (r->status == CORE_ERR_IO && strcmp(r->error.field, "leader") == 0) continue;
                todo[idx[i]] = false;
                left--;
                progress = true;
            }
        if (!progress) {
            sleep_ms(backoff);
            backoff = backoff * 2 > FWD_BACKOFF_MAX_MS ? FWD_BACKOFF_MAX_MS : backoff * 2;
        } else {
            backoff = FWD_BACKOFF_MIN_MS;
        }
    }
    for (size_t i = 0; i < n && final; i++)
        if (todo[i]) {
            rs[i].status = final;
            rs[i].error = why;
            rs[i].seq = rs[i].height = 0;
        }
    free(todo), free(sent), free(idx), free(req);
    return CORE_OK;
}

const ledger_consensus *cluster_consensus(cluster *c) {
    c->hook.ud = c;
    c->hook.propose = propose;
    c->hook.leads = leads;
    c->hook.forward = forward;
    c->hook.forward_wait_ms = c->opt.forward_timeout_ms;
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
    if ((rc = fwd_start(c, err))) return rc;
    if ((rc = start_raft(c, err))) {
        fwd_stop(c);
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
        fwd_stop(c);
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
    fwd_stop(c); /* its handlers' proposals fail from here on, so they end */
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
    pthread_cond_destroy(&c->fwd_idle);
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
    out->forwarded = c->forwarded;
    out->forward_retries = c->forward_retries;
    pthread_mutex_unlock(&c->lock);
}

/* ---- the cluster file ---- */

static core_status load_node(const json_t *j, size_t i, cluster_node *n, core_error *err) {
    json_t *id = json_object_get(j, "id"), *addr = json_object_get(j, "address"), *key = json_object_get(j, "key");
    json_t *fwd = json_object_get(j, "forward");
    if (!json_is_object(j) || json_object_size(j) != 3u + (fwd != NULL) || !json_is_integer(id) ||
        !json_is_string(addr) || !json_is_string(key) || (fwd && !json_is_string(fwd)))
        return core_fail(err, CORE_ERR_INVALID, "nodes",
                         "node %zu must be {\"id\", \"address\", \"key\"} and optionally \"forward\"", i + 1);
    if (fwd && json_string_length(fwd) >= sizeof n->forward)
        return core_fail(err, CORE_ERR_INVALID, "nodes.forward", "node %zu: the forward address is too long", i + 1);
    if (fwd) snprintf(n->forward, sizeof n->forward, "%s", json_string_value(fwd));
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
        else if (strcmp(k, "forward_timeout_ms") == 0 && x >= 10 && x <= 600000)
            o->forward_timeout_ms = (int)x;
        else
            rc = core_fail(err, CORE_ERR_INVALID, k, "unknown member or value out of range: %.60s", k);
    }
    json_decref(root);
    return rc;
}
