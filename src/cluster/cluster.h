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
 * Forwarding: any node takes writes. The hook's leads()/forward() (see
 * ledger_consensus) send a follower's checked, signed transactions to the
 * leader's forward port, a second TCP port per node (cluster_node.forward,
 * default the raft port + 100), where a small server thread submits them
 * with ledger_submit_many and answers the receipts. Frames are
 * length-prefixed and bounded (CLUSTER_FORWARD_MAX_TXS per request, each
 * transaction ≤ LEDGER_TX_MAX, 5 s to send a request, 64 connections);
 * only the listed nodes' IP addresses are served. Wire format, big-endian:
 *   request  "CSF1" u32 body_len | u8 flags (1: a retry) u32 n (u16 len, tx)×n
 *   response "CSR1" u32 body_len | u8 kind (0 receipts, 1 not the leader,
 *            2 refused) u64 leader_height u64 leader_id u16 len, message,
 *            u32 n (u8 status u64 seq u64 height u8 len, field u16 len,
 *            message)×n
 * The follower retries, with backoff, whatever no leader took (no leader
 * known, a connection lost, a leader that stepped down) until
 * forward_timeout_ms, then fails it as before forwarding existed:
 * CORE_ERR_IO, field "leader". A retry is idempotent: a retried request
 * whose transaction the leader refuses as a used nonce, but whose txid is
 * on the chain, answers that transaction's position (the first attempt
 * committed it; the chain's nonce rule means it is there once). A follower
 * that halted forwards nothing (CORE_ERR_STORAGE).
 *
 * Not yet (later slices of issue 15): snapshots (a node catches up from the
 * raft log only), membership changes, authenticated transport (raft's TCP
 * and the forward port are plain; run both on a private network).
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
    char forward[CLUSTER_ADDRESS_MAX]; /* IPv4 "a.b.c.d:port" of its forward port; "": raft port + 100 */
} cluster_node;

#define CLUSTER_FORWARD_MAX_TXS 256

typedef struct {
    uint64_t self; /* this node's id */
    size_t n_nodes;
    cluster_node nodes[LEDGER_MAX_NODES];
    const char *dir;        /* raft log directory; created (0700) if missing. Borrowed until close. */
    unsigned election_ms;   /* raft election timeout */
    unsigned heartbeat_ms;  /* raft heartbeat */
    int propose_timeout_ms; /* a block not committed by then fails (its callers are not acknowledged) */
    size_t segment_bytes;   /* raft log segment size; 0: the library's default (8 MiB) */
    int forward_timeout_ms; /* a follower's forwarded write no leader took by then fails (not_leader) */
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
/* Start the forward server (its port must be free: CORE_ERR_IO, field
 * "nodes.forward") and raft (bootstrapping the configured voters on a
 * pristine directory) with its loop thread, applying committed blocks to l
 * (borrowed until cluster_stop). */
core_status cluster_start(cluster *c, ledger *l, core_error *err);
/* Close the forward server (waiting for its handlers) and raft, joining
 * their threads; proposals in flight fail. Idempotent. Callers of the hook
 * (the ledger's submitters) must be done before cluster_close. */
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

    uint64_t forwarded, forward_retries; /* transactions sent to a leader; requests sent again */
} cluster_status;
void cluster_get_status(cluster *c, cluster_status *out);

/* Parse a cluster file (JSON): {"nodes": [{"id": 1, "address":
 * "127.0.0.1:7101", "key": "<64 hex>", "forward": "127.0.0.1:7201"
 * (optional)}, ...], "election_ms": 1000}; self and
 * dir are left to the caller. CORE_ERR_INVALID with field naming the bad
 * member. */
core_status cluster_options_load(const char *path, cluster_options *o, core_error *err);

#endif
