/* cluster — one node of a statically configured ledger cluster (issue 15),
 * replicated with Debian's libraft (canonical raft 0.15) over libuv TCP.
 *
 * The ledger stays the only place that builds, checks and stores blocks;
 * this module only moves them. It implements the ledger's consensus hook:
 * the leader's producer hands a sealed block to propose(), which appends it
 * as one raft entry and returns once raft has committed it (a majority has
 * it on disk) or fails after a timeout, so an acknowledged block survives
 * the loss of any minority. Every node applies the committed entries in log
 * order: a block this node proposed is already applied in its producer's
 * open transaction; any other block goes through ledger_apply_block, which
 * verifies it fully before committing. A block that extends the chain tip
 * but fails verification stops this node applying (cluster_get_status names
 * why); an entry that does not extend the tip (a proposal overtaken by a
 * leader change) is skipped by every node alike, so chains stay identical.
 *
 * Lifecycle: cluster_open (config checked, nothing started), ledger_open
 * with .consensus = cluster_consensus(c) and .genesis_deferred, then
 * cluster_start(c, ledger) (raft and its libuv loop on their own thread).
 * To stop: cluster_stop(c) (raft closed; proposals fail from then on),
 * ledger_close, cluster_close. The leader of a cluster with no block seals
 * genesis itself (ledger_seal_genesis), listing the configured node keys.
 *
 * Not yet (later slices of issue 15): snapshots (a node catches up from the
 * raft log only), membership changes, forwarding writes from followers to
 * the leader (a follower's writes fail with CORE_ERR_IO, field "leader"),
 * authenticated transport (raft's TCP is plain; run it on a private
 * network).
 *
 * cluster_start sets SIGPIPE to ignored if it was at its default: libuv
 * writes to sockets with write(2), and a vanished peer must not kill the
 * process.
 *
 * Threading: cluster_get_status and the consensus hook may be called from
 * any thread; open/start/stop/close from one controlling thread. */
#ifndef CARESYNC_CLUSTER_H
#define CARESYNC_CLUSTER_H

#include "core/core.h"
#include "ledger/ledger.h"

#define CLUSTER_ADDRESS_MAX 64

typedef struct {
    uint64_t id;                       /* raft server id, ≥ 1, unique in the cluster */
    char address[CLUSTER_ADDRESS_MAX]; /* IPv4 "a.b.c.d:port" the node's raft listens on */
    uint8_t key[LEDGER_KEY];           /* its block-signing public key (caresync keygen) */
} cluster_node;

typedef struct {
    uint64_t self; /* this node's id */
    size_t n_nodes;
    cluster_node nodes[LEDGER_MAX_NODES];
    const char *dir;        /* raft log directory; created (0700) if missing. Borrowed until close. */
    unsigned election_ms;   /* raft election timeout */
    unsigned heartbeat_ms;  /* raft heartbeat */
    int propose_timeout_ms; /* a block not committed by then fails (its callers are not acknowledged) */
    size_t segment_bytes;   /* raft log segment size; 0: the library's default (8 MiB) */
    /* Called once, on the raft thread, when this node stops applying
     * because a block failed verification (NULL: none). For the log. */
    void (*on_halt)(void *ud, const core_error *why);
    void *on_halt_ud;
} cluster_options;

typedef struct cluster cluster;

/* Fill every default (timeouts); nodes, self and dir are the caller's. */
void cluster_options_defaults(cluster_options *o);
/* Check the configuration (ids unique and ≥ 1, self listed, addresses
 * parse, keys distinct); nothing is started. */
core_status cluster_open(const cluster_options *o, cluster **out, core_error *err);
/* The hook to put in ledger_options.consensus. Owned by c. */
const ledger_consensus *cluster_consensus(cluster *c);
/* The node keys in configuration order, for ledger_options.genesis_nodes. */
size_t cluster_node_keys(const cluster *c, uint8_t keys[LEDGER_MAX_NODES][LEDGER_KEY]);
/* Start raft (bootstrapping the configured voters on a pristine directory)
 * and its loop thread, applying committed blocks to l (borrowed until
 * cluster_stop). */
core_status cluster_start(cluster *c, ledger *l, core_error *err);
/* Close raft and join its thread; proposals in flight fail. Idempotent. */
void cluster_stop(cluster *c);
/* Stop if needed and free. Accepts NULL. */
void cluster_close(cluster *c);

typedef struct {
    bool running;
    bool leader;        /* raft leader */
    bool ready;         /* leader and caught up: proposals are accepted */
    uint64_t leader_id; /* 0: none known */
    bool have_tip;      /* the chain tip in raft order (≥ the ledger's committed head) */
    uint64_t tip_height;
    uint64_t proposed, committed, applied,
        skipped;     /* own blocks proposed / committed; others' applied; entries skipped */
    bool halted;     /* a block failed verification: this node applies nothing more */
    core_error halt; /* why (for the log and /api/health) */
} cluster_status;
void cluster_get_status(cluster *c, cluster_status *out);

/* Parse a cluster file (JSON): {"nodes": [{"id": 1, "address":
 * "127.0.0.1:7101", "key": "<64 hex>"}, ...], "election_ms": 1000}; self and
 * dir are left to the caller. CORE_ERR_INVALID with field naming the bad
 * member. */
core_status cluster_options_load(const char *path, cluster_options *o, core_error *err);

#endif
