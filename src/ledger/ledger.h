/* ledger — the tamper-evident, permissioned ledger: signed transactions,
 * hash-chained blocks, an RFC 6962 Merkle log with inclusion and consistency
 * proofs, and the deterministic state machine (wallets, nonces, consents,
 * organisations, commitments, token supply).
 *
 * What lives here never names a person: wallets are Ed25519 public keys,
 * records and contributions appear only as salted commitments, organisations
 * by key and public name. The ledger keeps its own SQLite file (ledger.db) so
 * it can be handed to an auditor alone.
 *
 * Layers, bottom up:
 *   codec   ledger_tx_* / ledger_block_*: deterministic binary encoding, one
 *           byte string per value, and a decoder that rejects anything else.
 *   merkle  ledger_merkle_* / ledger_tree_*: RFC 6962/9162 hashing, proofs.
 *   chain   ledger_open(): state machine, block producer, queries, proofs.
 *   verify  ledger_verify_file(): replays a whole ledger file from genesis.
 *
 * Threading: a ledger handle may be used from any number of threads; one
 * producer thread inside it seals blocks. The codec and merkle functions are
 * pure and thread-safe. Ownership: buffers passed in are borrowed; anything
 * returned through a pointer-to-pointer is malloc'd and freed by the caller
 * with free() unless a _free function is named. */
#ifndef CARESYNC_LEDGER_H
#define CARESYNC_LEDGER_H

#include <jansson.h>

#include "core/core.h"

#define LEDGER_KEY 32    /* Ed25519 public key */
#define LEDGER_SECRET 64 /* Ed25519 secret key (seed ‖ public key) */
#define LEDGER_SIG 64
#define LEDGER_HASH 32
#define LEDGER_TX_MAX 512      /* no encoded transaction is longer (params with 8 nodes: 427) */
#define LEDGER_BLOCK_BYTES 189 /* encoded block header, signature included */
#define LEDGER_MAX_NODES 8
#define LEDGER_CATEGORIES 4
#define LEDGER_NAME_MAX 64
#define LEDGER_AMOUNT_MAX ((uint64_t)INT64_MAX) /* amounts, balances, supply */

typedef enum {
    LEDGER_TX_PARAMS = 1,      /* admin: admin key, node keys, reward rules */
    LEDGER_TX_REGISTER_WALLET, /* a wallet key announces itself */
    LEDGER_TX_ANCHOR,          /* commitment to a private record */
    LEDGER_TX_GRANT,           /* consent: scope, purpose, grantee, expiry */
    LEDGER_TX_REVOKE,          /* withdraw a consent */
    LEDGER_TX_CONTRIBUTE,      /* node: a consented datum entered the pool; mints its reward */
    LEDGER_TX_TRANSFER,
    LEDGER_TX_REDEEM,       /* burn tokens */
    LEDGER_TX_REGISTER_ORG, /* admin: an organisation that may receive releases */
    LEDGER_TX_RELEASE,      /* node: an aggregate was released to an organisation */
    /* Clinician review, paid in tokens: the person's wallet locks the price in
     * an escrow keyed by the request's txid; a node later pays it to the
     * organisation's key (settle) or returns it to the person (refund), once.
     * Tokens move between balances and escrow; none are minted or burned. */
    LEDGER_TX_REVIEW_REQUEST, /* wallet: escrow price for a review by org */
    LEDGER_TX_REVIEW_SETTLE,  /* node: pay an open escrow to its organisation */
    LEDGER_TX_REVIEW_REFUND,  /* node: return an open escrow to the person */
    /* Data requests (issue 14). Organisations hold no key on this server,
     * so a node signs on their behalf: the organisation authenticates to the
     * API (its bearer token) and the node records what it asked for. */
    LEDGER_TX_CREDIT,       /* node: mint tokens to a registered organisation (a purchase made outside) */
    LEDGER_TX_MARKET_OPEN,  /* node: escrow price × max from an organisation for a data request */
    LEDGER_TX_MARKET_PAY,   /* node: pay one participant (the owner of a consent to the org) from it */
    LEDGER_TX_MARKET_CLOSE, /* node: close a request's escrow, the remainder back to the organisation */
} ledger_tx_kind;
#define LEDGER_TX_KIND_MAX LEDGER_TX_MARKET_CLOSE
#define LEDGER_MARKET_MAX_PARTICIPANTS 1000000u

/* Data categories a consent may cover; a consent's scope is a bit set of
 * (1 << category). */
typedef enum {
    LEDGER_CAT_SCREENING = 0, /* screening outcome class and confidence band */
    LEDGER_CAT_CONDITIONS,    /* diagnosed conditions (coded, no free text) */
    LEDGER_CAT_SYMPTOMS,      /* symptom codes and onset week */
    LEDGER_CAT_DEMOGRAPHICS,  /* birth-decade, sex, region (never exact) */
} ledger_category;
#define LEDGER_SCOPE_ALL ((1u << LEDGER_CATEGORIES) - 1)

/* LEDGER_PURPOSE_TRAINING (issue 13): "help train the model" — a clinician's
 * label and the case photo are kept as a labelled example. Separate from
 * surveillance on purpose: neither implies the other.
 *
 * LEDGER_PURPOSE_REVIEW is never granted by a GRANT transaction (the decoder
 * refuses it): a REVIEW_REQUEST makes it, keyed by the request's txid, owned
 * by the wallet that asked, grantee the organisation, scope screening, for
 * that one case (the request's case commitment) and with no expiry. It ends
 * when the person revokes it (a REVOKE, which also refunds the escrow if it
 * is still open) or when the escrow is refunded (the case is destroyed with
 * it); a settled escrow leaves it standing until the person revokes it. It
 * never admits a contribution. */
typedef enum {
    LEDGER_PURPOSE_SURVEILLANCE = 1,
    LEDGER_PURPOSE_RESEARCH = 2,
    LEDGER_PURPOSE_TRAINING = 3,
    LEDGER_PURPOSE_REVIEW = 4,
} ledger_purpose;

/* A decoded transaction. Only the fields of its kind are meaningful. */
typedef struct {
    ledger_tx_kind kind;
    uint8_t signer[LEDGER_KEY];
    uint64_t nonce; /* strictly increasing per signer; 1 ≤ nonce ≤ INT64_MAX */
    union {
        struct {
            uint8_t admin[LEDGER_KEY];
            uint8_t n_nodes; /* 1..LEDGER_MAX_NODES */
            uint8_t nodes[LEDGER_MAX_NODES][LEDGER_KEY];
            uint64_t reward[LEDGER_CATEGORIES]; /* tokens minted per contribution */
        } params;
        struct {
            uint8_t commitment[LEDGER_HASH];
        } anchor;
        struct {
            uint32_t scope;              /* bit set of categories, non-empty */
            uint8_t purpose;             /* ledger_purpose */
            uint8_t grantee[LEDGER_KEY]; /* all zero: the public-health pool */
            uint64_t expires;            /* unix seconds */
        } grant;
        struct {
            uint8_t grant[LEDGER_HASH];
        } revoke; /* txid of the grant */
        struct {
            uint8_t contributor[LEDGER_KEY];
            uint8_t grant[LEDGER_HASH];
            uint8_t category;
            uint8_t commitment[LEDGER_HASH];
            uint64_t reward; /* must equal the reward rule in force */
        } contribute;
        struct {
            uint8_t to[LEDGER_KEY];
            uint64_t amount;
        } transfer;
        struct {
            uint64_t amount;
        } redeem;
        struct {
            uint8_t org[LEDGER_KEY];
            char name[LEDGER_NAME_MAX + 1];
        } org;
        struct {
            uint8_t org[LEDGER_KEY];
            uint8_t query[LEDGER_HASH]; /* fingerprint of the released query */
            uint32_t epsilon_milli;     /* differential-privacy epsilon × 1000; 0 = exact counts */
            uint32_t k_min;             /* small-cell threshold: no count below it released (>= 1) */
            uint32_t cells;             /* number of values released (suppressed ones not counted) */
        } release;
        struct {
            uint8_t org[LEDGER_KEY];         /* a registered organisation */
            uint8_t commitment[LEDGER_HASH]; /* salted hash of the case; never an identifier */
            uint64_t price;                  /* tokens escrowed, 1..LEDGER_AMOUNT_MAX */
        } review;
        struct {
            uint8_t request[LEDGER_HASH]; /* txid of the review request */
        } review_close;                   /* REVIEW_SETTLE and REVIEW_REFUND */
        struct {
            uint8_t org[LEDGER_KEY];             /* a registered organisation, not the signer */
            uint64_t amount;                     /* tokens minted, 1..LEDGER_REWARD_MAX */
            char reference[LEDGER_NAME_MAX + 1]; /* the purchase's reference: printable ASCII, never personal data */
        } credit;
        struct {
            uint8_t org[LEDGER_KEY];    /* a registered organisation; pays price × max_participants */
            uint8_t terms[LEDGER_HASH]; /* SHA-256 of the request's terms (used once, like a commitment) */
            uint64_t price;             /* tokens per participant, 1..LEDGER_REWARD_MAX */
            uint32_t max_participants;  /* 1..LEDGER_MARKET_MAX_PARTICIPANTS */
            uint64_t closes;            /* unix seconds: no payment at or after it */
        } market_open;
        struct {
            uint8_t request[LEDGER_HASH]; /* txid of the market_open */
            uint8_t grant[LEDGER_HASH];   /* the participant's consent to the org; its owner is paid */
        } market_pay;
        struct {
            uint8_t request[LEDGER_HASH]; /* txid of the market_open */
        } market_close;
    } u;
    uint8_t sig[LEDGER_SIG];
} ledger_tx;

const char *ledger_tx_kind_name(ledger_tx_kind kind);
const char *ledger_category_name(ledger_category c);
const char *ledger_purpose_name(ledger_purpose p);

/* Encode tx (signature included) into out; returns the length, or 0 when tx
 * holds a value the decoder would refuse or cap is too small. */
size_t ledger_tx_encode(const ledger_tx *tx, uint8_t *out, size_t cap);
/* Decode exactly len bytes. Rejects unknown versions and kinds, truncation,
 * trailing bytes and out-of-range fields (CORE_ERR_INVALID, field names the
 * part). Does NOT check the signature. */
core_status ledger_tx_decode(const uint8_t *buf, size_t len, ledger_tx *out, core_error *err);
/* Set tx->signer from sk and sign; returns the encoded length (0 as encode). */
size_t ledger_tx_sign(ledger_tx *tx, const uint8_t sk[LEDGER_SECRET], uint8_t *out, size_t cap);
/* Check the signature of an encoded transaction. */
bool ledger_tx_check_signature(const uint8_t *buf, size_t len);
/* Transaction id = its RFC 6962 leaf hash, SHA-256(0x00 ‖ encoding). */
void ledger_tx_id(const uint8_t *buf, size_t len, uint8_t out[LEDGER_HASH]);
/* JSON view of a transaction (keys in hex). New reference, NULL on OOM. */
json_t *ledger_tx_to_json(const ledger_tx *tx);

/* Block header = signed tree head: the log's size and root after this block,
 * chained to the previous header and signed by the proposer. */
typedef struct {
    uint64_t height;
    uint8_t prev[LEDGER_HASH]; /* hash of the previous header; zero for genesis */
    uint64_t time_ms;          /* unix milliseconds, never decreasing */
    uint32_t tx_count;
    uint64_t tree_size;        /* transactions in the log including this block */
    uint8_t root[LEDGER_HASH]; /* RFC 6962 root of the log at tree_size */
    uint8_t proposer[LEDGER_KEY];
    uint8_t sig[LEDGER_SIG];
} ledger_block;

void ledger_block_encode(const ledger_block *b, uint8_t out[LEDGER_BLOCK_BYTES]);
core_status ledger_block_decode(const uint8_t *buf, size_t len, ledger_block *out, core_error *err);
void ledger_block_sign(ledger_block *b, const uint8_t sk[LEDGER_SECRET]);
bool ledger_block_check_signature(const ledger_block *b);
/* SHA-256 of the encoded header (signature included). */
void ledger_block_hash(const ledger_block *b, uint8_t out[LEDGER_HASH]);
json_t *ledger_block_to_json(const ledger_block *b);

/* ---- Merkle log (RFC 6962 §2.1, verification per RFC 9162 §2.1.3–2.1.4) ---- */

void ledger_merkle_leaf(const uint8_t *data, size_t len, uint8_t out[LEDGER_HASH]);
void ledger_merkle_node(const uint8_t left[LEDGER_HASH], const uint8_t right[LEDGER_HASH], uint8_t out[LEDGER_HASH]);
bool ledger_merkle_verify_inclusion(uint64_t index, uint64_t size, const uint8_t leaf[LEDGER_HASH],
                                    const uint8_t (*path)[LEDGER_HASH], size_t n, const uint8_t root[LEDGER_HASH]);
/* size1 = 0 follows RFC 6962: the empty tree is a prefix of every tree, so
 * the proof must be empty and root1 must be the empty tree's hash
 * (SHA-256 of nothing), which is what a prover reports for size 0. */
bool ledger_merkle_verify_consistency(uint64_t size1, uint64_t size2, const uint8_t root1[LEDGER_HASH],
                                      const uint8_t root2[LEDGER_HASH], const uint8_t (*proof)[LEDGER_HASH], size_t n);

/* An append-only in-memory tree that keeps every complete subtree, so roots
 * and proofs cost O(log² n) hashes. Not thread-safe: callers serialise. */
typedef struct ledger_tree ledger_tree;
#define LEDGER_PROOF_MAX 64
ledger_tree *ledger_tree_new(void);
void ledger_tree_free(ledger_tree *t);
core_status ledger_tree_append(ledger_tree *t, const uint8_t leaf[LEDGER_HASH], core_error *err);
uint64_t ledger_tree_size(const ledger_tree *t);
/* Forget leaves past size (size ≤ current size). */
void ledger_tree_truncate(ledger_tree *t, uint64_t size);
/* Root of the first size leaves (size ≤ current size). */
void ledger_tree_root(const ledger_tree *t, uint64_t size, uint8_t out[LEDGER_HASH]);
/* Proofs into path[LEDGER_PROOF_MAX]; *n receives the element count. */
core_status ledger_tree_inclusion(const ledger_tree *t, uint64_t index, uint64_t size, uint8_t path[][LEDGER_HASH],
                                  size_t *n, core_error *err);
core_status ledger_tree_consistency(const ledger_tree *t, uint64_t size1, uint64_t size2, uint8_t proof[][LEDGER_HASH],
                                    size_t *n, core_error *err);

/* ---- Keys ---- */

/* Key files hold one line, "caresync-ed25519-v1 <hex seed>", mode 0600. */
core_status ledger_key_generate(const char *path, uint8_t pk[LEDGER_KEY], core_error *err);
core_status ledger_key_load(const char *path, uint8_t pk[LEDGER_KEY], uint8_t sk[LEDGER_SECRET], core_error *err);
/* Load the key at path, generating it first when the file does not exist. */
core_status ledger_key_load_or_create(const char *path, uint8_t pk[LEDGER_KEY], uint8_t sk[LEDGER_SECRET],
                                      bool *created, core_error *err);
void ledger_keypair(uint8_t pk[LEDGER_KEY], uint8_t sk[LEDGER_SECRET]);

/* ---- The ledger ---- */

typedef struct ledger ledger;

/* What happened to one submitted transaction. */
typedef struct {
    core_status status; /* CORE_OK: committed durably */
    core_error error;   /* why not, otherwise */
    uint8_t txid[LEDGER_HASH];
    uint64_t seq;    /* leaf index in the log */
    uint64_t height; /* block that holds it */
} ledger_receipt;

/* Consensus: how a block the producer sealed becomes final. With none (the
 * default) the node is alone and a block is final when its local commit
 * returns. A replicated consensus (a later issue) supplies propose(): called
 * on the producer thread with the signed header and the block's encoded
 * transactions after the state has been applied and before the local
 * commit; it returns CORE_OK only once a quorum has durably accepted the
 * block. On an error the block is rolled back and each of its transactions
 * fails with that error (the callers were not acknowledged). */
typedef struct {
    void *ud;
    core_status (*propose)(void *ud, const ledger_block *header, const uint8_t *const *txs, const size_t *lens,
                           size_t n, core_error *err);
    /* Forwarding (optional; both or neither). leads() says whether this
     * node seals blocks now; when it does not, ledger_submit_many and
     * ledger_sign_submit check signatures here as always and hand the
     * encoded, signed transactions to forward(), which sends them to the
     * leader and fills receipts[i] with the leader's outcome (CORE_ERR_IO,
     * field "leader", when no leader took them before its deadline: the
     * same refusal as a follower's without forwarding) and *leader_height
     * with the leader's head when it answered (0: unknown). forward()
     * returns CORE_OK when every receipt is filled. The ledger then waits
     * (bounded by forward_wait_ms) until its own head holds every
     * acknowledged transaction, so a client reading this node next sees its
     * write; past that bound the receipts stand (the write is committed;
     * this node is only slow to apply it). Called from submitters' threads,
     * never the producer's. */
    bool (*leads)(void *ud);
    core_status (*forward)(void *ud, const uint8_t *const *txs, const size_t *lens, size_t n, ledger_receipt *receipts,
                           uint64_t *leader_height, core_error *err);
    int forward_wait_ms; /* ≤ 0: 10000 */
} ledger_consensus;

typedef struct {
    const char *path;                  /* ledger.db */
    const ledger_consensus *consensus; /* NULL: single node */
    /* Defaults for every field: ledger_options_defaults(), the one place
     * they are written down. */
    int batch_ms;  /* seal pending transactions at least this often (ms, ≥ 0) */
    int batch_max; /* ... or as soon as this many are pending (≥ 1) */
    int readers;   /* read connections (≥ 1) */
    /* Node key: signs blocks, contributions and releases. Required. */
    uint8_t node_pk[LEDGER_KEY];
    uint8_t node_sk[LEDGER_SECRET];
    /* Genesis only (ignored once the ledger has a block): the admin key and
     * the reward rules written into block 0, signed by admin_sk. */
    uint8_t admin_pk[LEDGER_KEY];
    uint8_t admin_sk[LEDGER_SECRET];
    uint64_t genesis_reward[LEDGER_CATEGORIES];
    /* A replicated ledger (issue 15). genesis_nodes: the node keys block 0
     * lists (n_genesis_nodes 0: this node's key alone); a follower also
     * requires a genesis it receives to name exactly these keys and
     * admin_pk. genesis_deferred: a new file gets no genesis at open; the
     * consensus's leader seals it (ledger_seal_genesis) or it arrives
     * through ledger_apply_block. Until then every write is refused. */
    size_t n_genesis_nodes;
    uint8_t genesis_nodes[LEDGER_MAX_NODES][LEDGER_KEY];
    bool genesis_deferred;
} ledger_options;

/* Fill opt with every default (path, batching, readers, genesis rewards);
 * keys are left zero for the caller. */
void ledger_options_defaults(ledger_options *opt);

/* Open (creating and writing genesis if new) and start the block producer. */
core_status ledger_open(const ledger_options *opt, ledger **out, core_error *err);
/* Stop the producer after sealing what is pending; close. Accepts NULL. */
void ledger_close(ledger *l);

/* Submit encoded, signed transactions and wait until each is either in a
 * durably committed block or rejected. Signatures are checked here, in the
 * caller's thread, so many submitters verify in parallel. Returns CORE_OK
 * when the call itself worked; per-transaction outcomes are in receipts[i]. */
core_status ledger_submit_many(ledger *l, const uint8_t *const *txs, const size_t *lens, size_t n,
                               ledger_receipt *receipts, core_error *err);
/* One transaction; returns its receipt's status (and fills err from it). */
core_status ledger_submit(ledger *l, const uint8_t *tx, size_t len, ledger_receipt *receipt, core_error *err);
/* For keys the server holds (node, admin, wallets it keeps sealed): assign
 * the signer's next nonce, sign and submit, so concurrent callers never race
 * on a nonce. tx->kind and body are the caller's; signer and nonce are set.
 * On a follower (forwarded) the nonce comes from a state that may lag the
 * leader's; a "nonce already used" refusal is signed again after catching
 * up, up to 3 times (see sign_forward in chain.c); the receipt's txid is
 * the transaction that committed. */
core_status ledger_sign_submit(ledger *l, ledger_tx *tx, const uint8_t sk[LEDGER_SECRET], ledger_receipt *receipt,
                               core_error *err);
const uint8_t *ledger_node_key(const ledger *l);
/* Asynchronous submission, for callers that must not hold a thread while a
 * block commits (the HTTP write path). The transaction is checked and
 * queued as by ledger_submit / ledger_sign_submit (tx bytes are copied);
 * CORE_OK means it is queued and cb(ud, receipt) will run exactly once, when
 * it is durably committed or refused (receipt->status, as a sync receipt;
 * the receipt is borrowed for the call). Any other return: nothing was
 * queued, cb is never called, err says why.
 * cb runs on the producer thread, after the block's commit and outside the
 * ledger's locks, possibly before the submit call has returned; every
 * callback of a block runs before the next block is sealed, so it must be
 * quick: no blocking, no sleeping, no synchronous ledger_submit* (the
 * producer would wait for itself); a read or an async submit is fine.
 * ledger_close runs every outstanding callback before it returns.
 * On a follower that forwards writes to the leader (ledger_consensus
 * forward) the forward is synchronous as in ledger_sign_submit: cb runs in
 * the caller's thread before the call returns. */
typedef void (*ledger_submit_cb)(void *ud, const ledger_receipt *receipt);
core_status ledger_submit_async(ledger *l, const uint8_t *tx, size_t len, ledger_submit_cb cb, void *ud,
                                core_error *err);
core_status ledger_sign_submit_async(ledger *l, ledger_tx *tx, const uint8_t sk[LEDGER_SECRET], ledger_submit_cb cb,
                                     void *ud, core_error *err);

/* ---- Replication (issue 15): the follower's path ----
 *
 * A node that did not seal a block applies it here, as the consensus
 * delivers committed blocks in order. Nothing the producer claimed is
 * trusted: the header must extend this ledger's head (height, previous
 * hash, time not going back, counts), carry a valid signature by a node key
 * in force (for block 0: the key set and admin key the options pin), and
 * every transaction must decode, carry a valid signature and pass the state
 * rules in order (a producer never seals a refused one, so one refusal
 * refuses the block); the Merkle root over the ids must be the header's.
 * Only then is the block committed, in one SQLite transaction on the
 * producer thread, exactly as a sealed one. A refused block leaves nothing:
 * CORE_ERR_CRYPTO (a signature) or CORE_ERR_INVALID (anything else), err
 * saying what; CORE_ERR_STORAGE/NOMEM as usual. Buffers are borrowed. */
core_status ledger_apply_block(ledger *l, const ledger_block *b, const uint8_t *const *txs, const size_t *lens,
                               size_t n, core_error *err);
/* On a ledger opened with genesis_deferred and still without blocks: seal
 * block 0 (params signed with the options' admin key, listing the genesis
 * nodes) through the producer and the consensus. CORE_ERR_CONFLICT when a
 * genesis is already there (or won the race). */
core_status ledger_seal_genesis(ledger *l, core_error *err);
/* A block's transactions, in order, read back for replication or tests:
 * txs[i] (malloc'd, free each and the arrays) of lens[i] bytes, *n of them.
 * *txs and *lens are caller-owned; ledger_free_txs frees them. */
core_status ledger_get_block_txs(ledger *l, uint64_t height, ledger_block *block, uint8_t ***txs, size_t **lens,
                                 size_t *n, core_error *err);
void ledger_free_txs(uint8_t **txs, size_t *lens, size_t n);

/* Counters since open, for benchmarks and /api/health. */
typedef struct {
    uint64_t blocks, committed, rejected, commits; /* commits = SQLite durable commits (fsyncs) */
} ledger_stats;
void ledger_get_stats(ledger *l, ledger_stats *out);

/* ---- Queries (consistent snapshots of committed state) ---- */

core_status ledger_head(ledger *l, ledger_block *out, core_error *err);
core_status ledger_get_block(ledger *l, uint64_t height, ledger_block *out, core_error *err);
/* Encoded transaction by id, with where it sits. *buf is caller-owned. */
core_status ledger_get_tx(ledger *l, const uint8_t txid[LEDGER_HASH], uint8_t **buf, size_t *len, uint64_t *seq,
                          uint64_t *height, core_error *err);
core_status ledger_get_tx_at(ledger *l, uint64_t seq, uint8_t **buf, size_t *len, uint64_t *height, core_error *err);

typedef struct {
    bool wallet; /* registered as a wallet */
    int64_t balance;
    uint64_t nonce; /* last nonce used */
} ledger_account;
/* CORE_ERR_NOT_FOUND for a key the ledger has never seen. */
core_status ledger_get_account(ledger *l, const uint8_t pk[LEDGER_KEY], ledger_account *out, core_error *err);

typedef struct {
    uint8_t grant[LEDGER_HASH];
    uint32_t scope;
    uint8_t purpose;
    uint8_t grantee[LEDGER_KEY];
    uint64_t expires;
    uint64_t granted_height, revoked_height; /* revoked_height 0: not revoked */
} ledger_consent;
typedef void (*ledger_consent_fn)(void *ud, const ledger_consent *c);
core_status ledger_list_consents(ledger *l, const uint8_t owner[LEDGER_KEY], ledger_consent_fn fn, void *ud,
                                 core_error *err);
/* One consent by the txid that made it (a grant, or a review request);
 * CORE_ERR_NOT_FOUND if there is none. owner (may be NULL) receives its wallet. */
core_status ledger_get_consent(ledger *l, const uint8_t grant[LEDGER_HASH], ledger_consent *out,
                               uint8_t owner[LEDGER_KEY], core_error *err);

/* Wallet history, newest first: every transaction that touched pk, with the
 * balance change it caused; at most limit rows (limit ≤ 0: LEDGER_HISTORY_LIMIT). */
#define LEDGER_HISTORY_LIMIT 100
typedef void (*ledger_history_fn)(void *ud, uint64_t seq, int64_t delta, const ledger_tx *tx, uint64_t height);
core_status ledger_history(ledger *l, const uint8_t pk[LEDGER_KEY], int limit, ledger_history_fn fn, void *ud,
                           core_error *err);

/* A review escrow, by the txid of its request. CORE_ERR_NOT_FOUND when no
 * request has that txid. */
typedef enum { LEDGER_ESCROW_OPEN = 0, LEDGER_ESCROW_SETTLED = 1, LEDGER_ESCROW_REFUNDED = 2 } ledger_escrow_state;
typedef struct {
    uint8_t request[LEDGER_HASH];
    uint8_t payer[LEDGER_KEY], org[LEDGER_KEY];
    uint8_t commitment[LEDGER_HASH];
    uint64_t amount;
    uint64_t opened_height, closed_height; /* closed_height 0: open */
    ledger_escrow_state state;
} ledger_escrow;
core_status ledger_get_escrow(ledger *l, const uint8_t request[LEDGER_HASH], ledger_escrow *out, core_error *err);
/* Tokens payer has in review escrows still open (neither settled nor
 * refunded): what the wallet page shows as held. 0 for an unknown key. */
core_status ledger_escrowed_by(ledger *l, const uint8_t payer[LEDGER_KEY], uint64_t *amount, core_error *err);

/* A data request's escrow (issue 14), by the txid of its market_open.
 * remaining = price × (max_participants − paid) while open; outcome
 * EXHAUSTED when the last participant was paid (remaining 0), CLOSED when a
 * market_close returned the remainder to the organisation. */
typedef enum { LEDGER_MARKET_OPEN = 0, LEDGER_MARKET_EXHAUSTED = 1, LEDGER_MARKET_CLOSED = 2 } ledger_market_state;
typedef struct {
    uint8_t request[LEDGER_HASH];
    uint8_t org[LEDGER_KEY];
    uint8_t terms[LEDGER_HASH];
    uint64_t price, remaining, closes;
    uint32_t max_participants, paid;
    uint64_t opened_height, closed_height;
    ledger_market_state state;
} ledger_market;
/* CORE_ERR_NOT_FOUND when no market_open has that txid. */
core_status ledger_get_market(ledger *l, const uint8_t request[LEDGER_HASH], ledger_market *out, core_error *err);
/* Whether participant (a wallet key) was paid from the request's escrow. */
core_status ledger_market_paid(ledger *l, const uint8_t request[LEDGER_HASH], const uint8_t participant[LEDGER_KEY],
                               bool *paid, core_error *err);

/* Where a commitment (anchor, contribution, review case or request terms) sits: its transaction's txid. */
core_status ledger_find_commitment(ledger *l, const uint8_t commitment[LEDGER_HASH], uint8_t txid[LEDGER_HASH],
                                   core_error *err);

typedef void (*ledger_org_fn)(void *ud, const uint8_t pk[LEDGER_KEY], const char *name, uint64_t height);
core_status ledger_list_orgs(ledger *l, ledger_org_fn fn, void *ud, core_error *err);

/* Totals: minted − burned = sum of balances + escrowed (checked by verify);
 * escrowed = tokens locked in review escrows neither settled nor refunded,
 * plus what open data-request escrows hold. */
typedef struct {
    uint64_t minted, burned, wallets, consents_active, orgs, escrowed;
} ledger_totals;
core_status ledger_get_totals(ledger *l, ledger_totals *out, core_error *err);
/* The reward per contribution of each category in the params in force. */
core_status ledger_get_rewards(ledger *l, uint64_t reward[LEDGER_CATEGORIES], core_error *err);

/* Inclusion proof of txid against the latest block (the signed tree head).
 * The header of the block that holds the transaction travels with it, tied
 * to head by a consistency proof, so the block height a document shows is
 * proven too, not just asserted. */
typedef struct {
    uint8_t tx[LEDGER_TX_MAX];
    size_t tx_len;
    uint64_t index, height; /* leaf index; block that holds the tx (= block.height) */
    size_t path_len;
    uint8_t path[LEDGER_PROOF_MAX][LEDGER_HASH];
    ledger_block head;  /* signed tree head the proof leads to */
    ledger_block block; /* signed header of the block that holds the tx */
    size_t cons_len;    /* consistency proof block.tree_size → head.tree_size */
    uint8_t cons[LEDGER_PROOF_MAX][LEDGER_HASH];
} ledger_proof;
core_status ledger_prove(ledger *l, const uint8_t txid[LEDGER_HASH], ledger_proof *out, core_error *err);
/* Consistency proof that the log of size1 is a prefix of the log of size2
 * (both ≤ the latest tree size), with both roots: lets an auditor holding
 * an old signed tree head check that nothing was rewritten since. */
core_status ledger_prove_consistency(ledger *l, uint64_t size1, uint64_t size2, uint8_t root1[LEDGER_HASH],
                                     uint8_t root2[LEDGER_HASH], uint8_t proof[][LEDGER_HASH], size_t *n,
                                     core_error *err);

/* Self-contained JSON form (a consent receipt embeds it) and its checker.
 * Verification needs no ledger: decode the tx, check its signature, recompute
 * the leaf, walk the path to head.root, check both headers' signatures, that
 * the leaf lies in the holding block's range and that the block's tree is a
 * prefix of head's (consistency proof); if trusted_node is non-NULL both
 * headers must be signed by that key. from_json reads only the byte fields
 * (tx, leaf_index, block_height, path, the encoded headers, the consistency
 * path); ledger_document_check is what holds every other field to them. */
json_t *ledger_proof_to_json(const ledger_proof *p);
core_status ledger_proof_from_json(const json_t *j, ledger_proof *out, core_error *err);
core_status ledger_proof_check(const ledger_proof *p, const uint8_t *trusted_node, core_error *err);

/* The documents built around a proof. Each is rendered from the proof
 * alone (plus, for an anchor, the record text and salt whose commitment it
 * proves), so the service that serves them and the checker that reads them
 * agree byte for byte on every field. New reference; NULL on OOM or when
 * the proven transaction is of the wrong kind. */
json_t *ledger_consent_receipt_to_json(const ledger_proof *p);
json_t *ledger_record_anchor_to_json(const ledger_proof *p, const char *text, size_t text_len,
                                     const uint8_t salt[LEDGER_HASH]);

typedef enum {
    LEDGER_DOC_PROOF = 1,       /* a bare proof (caresync ledger proof) */
    LEDGER_DOC_EXPLORER,        /* {proof}, as GET /api/ledger/proof/{txid} serves it */
    LEDGER_DOC_CONSENT_RECEIPT, /* GET /api/consents/{id}/receipt */
    LEDGER_DOC_RECORD_ANCHOR,   /* GET /api/records/{id}/anchor */
} ledger_doc_kind;
/* Check a whole document: the proof's bytes and signatures as
 * ledger_proof_check, the kind-specific facts (a receipt proves a grant; an
 * anchor's SHA-256(salt ‖ record_text) is the anchored commitment), then
 * render the document again from what was proven and require it to equal
 * doc exactly: a field edited, removed or added is refused (CORE_ERR_CRYPTO,
 * err->field naming its path). On success *kind and *out describe it. */
core_status ledger_document_check(const json_t *doc, const uint8_t *trusted_node, ledger_doc_kind *kind,
                                  ledger_proof *out, core_error *err);

/* A block header as the explorer serves it (ledger_block_to_json): every
 * field is read, the header re-encoded, its hash must equal "hash" and no
 * other member may appear. The signature is not checked here. */
core_status ledger_block_from_json(const json_t *j, ledger_block *out, core_error *err);
/* The same proof, read from a ledger file without opening a live ledger
 * (read-only, safe while a server is running on the file). */
core_status ledger_prove_file(const char *path, const uint8_t txid[LEDGER_HASH], ledger_proof *out, core_error *err);

/* ---- Verification of a whole ledger file ---- */

typedef struct {
    uint64_t blocks, txs;
    double seconds;
    /* On failure: where. */
    int64_t bad_height; /* -1 when not block-specific */
    int64_t bad_seq;    /* -1 when not transaction-specific */
    char bad_txid[2 * LEDGER_HASH + 1];
    /* What an auditor pins: the genesis header's hash, the admin key in
     * force at the end, and every key that proposed a block. */
    uint8_t genesis[LEDGER_HASH];
    uint8_t admin[LEDGER_KEY];
    size_t n_proposers;
    uint8_t proposers[LEDGER_MAX_NODES][LEDGER_KEY];
} ledger_verify_report;

/* Replay the ledger at path from genesis on a fresh state: header chain,
 * signatures, Merkle roots, every transaction's rules, then compare the
 * replayed state with the stored one and check minted − burned = Σ balances
 * + Σ open escrows.
 * threads (≥1) verify signatures in parallel. The file is opened read-only.
 * CORE_ERR_CRYPTO/CORE_ERR_INVALID with report->bad_* naming the culprit. */
core_status ledger_verify_file(const char *path, int threads, ledger_verify_report *report, core_error *err);

/* Whether the ledger file at path (opened read-only, so the service may be
 * running: it is the only writer) has registered the organisation; name (may
 * be NULL) receives its name. For command-line tools that do not open the
 * ledger for writing. CORE_ERR_NOT_FOUND if it is not registered or there is
 * no ledger file yet. */
core_status ledger_org_in_file(const char *path, const uint8_t org[LEDGER_KEY], char name[LEDGER_NAME_MAX + 1],
                               core_error *err);

/* What an auditor pins, having learnt it out of band (or from an earlier
 * verify): without pins a ledger re-signed end to end with fresh keys
 * verifies, since genesis names its own keys. */
typedef struct {
    const uint8_t (*nodes)[LEDGER_KEY]; /* every block must be proposed by one of these (n_nodes > 0) */
    size_t n_nodes;
    const uint8_t *genesis; /* NULL, or the hash genesis block's header must have */
} ledger_verify_pins;
/* ledger_verify_file, plus the pins (NULL: none). On success (and as far as
 * the replay got on failure) the report names what to pin. */
core_status ledger_verify_file_pinned(const char *path, int threads, const ledger_verify_pins *pins,
                                      ledger_verify_report *report, core_error *err);

#endif
