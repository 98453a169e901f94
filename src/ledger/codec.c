/* ledger — deterministic binary encoding of transactions and block headers.
 *
 * Every field has a fixed width and big-endian order; the only variable part
 * is an organisation's name, length-prefixed. There are no optional fields,
 * no varints and no padding, so a value has exactly one encoding and the
 * decoder can insist on it: it rejects trailing bytes, unknown kinds and any
 * value the encoder would not produce. Hashes and signatures are computed
 * over these bytes, so "same transaction → same bytes → same hash" holds on
 * every machine.
 *
 *   tx    = version(1)=1 ‖ kind(1) ‖ signer(32) ‖ nonce(u64) ‖ body ‖ sig(64)
 *   block = version(1)=1 ‖ height(u64) ‖ prev(32) ‖ time_ms(u64) ‖ tx_count(u32)
 *           ‖ tree_size(u64) ‖ root(32) ‖ proposer(32) ‖ sig(64)
 *
 * Signatures cover a domain tag followed by every byte before the signature,
 * so a transaction signature can never be replayed as a block signature. */
#include "ledger/internal.h"

#include <assert.h>
#include <string.h>

#include "crypto/crypto.h"

#define TX_VERSION 1
#define BLOCK_VERSION 1
#define TX_HEAD (1 + 1 + LEDGER_KEY + 8)
static const char TX_DOMAIN[16] = "caresync-tx-v1";
static const char BLOCK_DOMAIN[16] = "caresync-blk-v1";

/* ---- byte writer / reader ---- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
    bool bad;
} writer;
typedef struct {
    const uint8_t *p;
    size_t len, pos;
    bool bad;
} reader;

static void put(writer *w, const void *src, size_t n) {
    if (w->bad || n > w->cap - w->len) {
        w->bad = true;
        return;
    }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}
static void put_u8(writer *w, uint8_t v) { put(w, &v, 1); }
static void put_u32(writer *w, uint32_t v) {
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 4);
}
static void put_u64(writer *w, uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (56 - 8 * i));
    put(w, b, 8);
}

static void get(reader *r, void *dst, size_t n) {
    if (r->bad || n > r->len - r->pos) {
        r->bad = true;
        memset(dst, 0, n);
        return;
    }
    memcpy(dst, r->p + r->pos, n);
    r->pos += n;
}
static uint8_t get_u8(reader *r) {
    uint8_t v;
    get(r, &v, 1);
    return v;
}
static uint32_t get_u32(reader *r) {
    uint8_t b[4];
    get(r, b, 4);
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}
static uint64_t get_u64(reader *r) {
    uint8_t b[8];
    get(r, b, 8);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | b[i];
    return v;
}

/* ---- names ---- */

const char *ledger_tx_kind_name(ledger_tx_kind kind) {
    switch (kind) {
    case LEDGER_TX_PARAMS: return "params";
    case LEDGER_TX_REGISTER_WALLET: return "register_wallet";
    case LEDGER_TX_ANCHOR: return "anchor";
    case LEDGER_TX_GRANT: return "grant_consent";
    case LEDGER_TX_REVOKE: return "revoke_consent";
    case LEDGER_TX_CONTRIBUTE: return "contribute";
    case LEDGER_TX_TRANSFER: return "transfer";
    case LEDGER_TX_REDEEM: return "redeem";
    case LEDGER_TX_REGISTER_ORG: return "register_org";
    case LEDGER_TX_RELEASE: return "release";
    case LEDGER_TX_REVIEW_REQUEST: return "review_request";
    case LEDGER_TX_REVIEW_SETTLE: return "review_settle";
    case LEDGER_TX_REVIEW_REFUND: return "review_refund";
    case LEDGER_TX_CREDIT: return "credit";
    case LEDGER_TX_MARKET_OPEN: return "market_open";
    case LEDGER_TX_MARKET_PAY: return "market_pay";
    case LEDGER_TX_MARKET_CLOSE: return "market_close";
    }
    return "unknown";
}

const char *ledger_category_name(ledger_category c) {
    switch (c) {
    case LEDGER_CAT_SCREENING: return "screening";
    case LEDGER_CAT_CONDITIONS: return "conditions";
    case LEDGER_CAT_SYMPTOMS: return "symptoms";
    case LEDGER_CAT_DEMOGRAPHICS: return "demographics";
    }
    return "unknown";
}

const char *ledger_purpose_name(ledger_purpose p) {
    switch (p) {
    case LEDGER_PURPOSE_SURVEILLANCE: return "public_health_surveillance";
    case LEDGER_PURPOSE_RESEARCH: return "research";
    case LEDGER_PURPOSE_TRAINING: return "model_training";
    case LEDGER_PURPOSE_REVIEW: return "clinician_review";
    }
    return "unknown";
}

/* ---- field rules shared by encoder and decoder ---- */

static bool is_zero(const uint8_t *p, size_t n) {
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++) acc |= p[i];
    return acc == 0;
}

/* An organisation name is public (it is shown in the explorer), so it is
 * restricted to printable ASCII without edge spaces: no control bytes, no
 * look-alike Unicode, one spelling per name. */
bool ledger_name_valid(const char *name, size_t len) {
    if (len < 1 || len > LEDGER_NAME_MAX) return false;
    if (name[0] == ' ' || name[len - 1] == ' ') return false;
    for (size_t i = 0; i < len; i++)
        if (name[i] < 0x20 || name[i] > 0x7e) return false;
    return true;
}

static core_status check_fields(const ledger_tx *tx, core_error *err) {
    if (tx->nonce < 1 || tx->nonce > (uint64_t)INT64_MAX)
        return core_fail(err, CORE_ERR_INVALID, "nonce", "nonce must be between 1 and 2^63-1");
    switch (tx->kind) {
    case LEDGER_TX_PARAMS:
        if (tx->u.params.n_nodes < 1 || tx->u.params.n_nodes > LEDGER_MAX_NODES)
            return core_fail(err, CORE_ERR_INVALID, "nodes", "between 1 and %d node keys", LEDGER_MAX_NODES);
        for (int i = 0; i < LEDGER_CATEGORIES; i++)
            if (tx->u.params.reward[i] > LEDGER_REWARD_MAX)
                return core_fail(err, CORE_ERR_INVALID, "reward", "reward rule out of range");
        break;
    case LEDGER_TX_REGISTER_WALLET:
    case LEDGER_TX_ANCHOR:
    case LEDGER_TX_REVOKE: break;
    case LEDGER_TX_GRANT:
        if (tx->u.grant.scope == 0 || (tx->u.grant.scope & ~LEDGER_SCOPE_ALL))
            return core_fail(err, CORE_ERR_INVALID, "scope", "scope must name known data categories");
        if (tx->u.grant.purpose != LEDGER_PURPOSE_SURVEILLANCE && tx->u.grant.purpose != LEDGER_PURPOSE_RESEARCH &&
            tx->u.grant.purpose != LEDGER_PURPOSE_TRAINING)
            return core_fail(err, CORE_ERR_INVALID, "purpose", "unknown purpose");
        if (tx->u.grant.expires > (uint64_t)INT64_MAX)
            return core_fail(err, CORE_ERR_INVALID, "expires", "expiry out of range");
        break;
    case LEDGER_TX_CONTRIBUTE:
        if (tx->u.contribute.category >= LEDGER_CATEGORIES)
            return core_fail(err, CORE_ERR_INVALID, "category", "unknown data category");
        if (is_zero(tx->u.contribute.contributor, LEDGER_KEY))
            return core_fail(err, CORE_ERR_INVALID, "contributor", "contributor key missing");
        if (tx->u.contribute.reward > LEDGER_REWARD_MAX)
            return core_fail(err, CORE_ERR_INVALID, "reward", "reward out of range");
        break;
    case LEDGER_TX_TRANSFER:
        if (is_zero(tx->u.transfer.to, LEDGER_KEY))
            return core_fail(err, CORE_ERR_INVALID, "to", "recipient key missing");
        if (tx->u.transfer.amount < 1 || tx->u.transfer.amount > LEDGER_AMOUNT_MAX)
            return core_fail(err, CORE_ERR_INVALID, "amount", "amount must be positive");
        break;
    case LEDGER_TX_REDEEM:
        if (tx->u.redeem.amount < 1 || tx->u.redeem.amount > LEDGER_AMOUNT_MAX)
            return core_fail(err, CORE_ERR_INVALID, "amount", "amount must be positive");
        break;
    case LEDGER_TX_REGISTER_ORG:
        if (is_zero(tx->u.org.org, LEDGER_KEY))
            return core_fail(err, CORE_ERR_INVALID, "org", "organisation key missing");
        if (!ledger_name_valid(tx->u.org.name, strnlen(tx->u.org.name, sizeof tx->u.org.name)))
            return core_fail(err, CORE_ERR_INVALID, "name", "organisation name must be 1-%d printable ASCII characters",
                             LEDGER_NAME_MAX);
        break;
    case LEDGER_TX_RELEASE:
        /* epsilon 0 is an exact release protected by small-cell suppression
         * alone; cells 0 a release that suppressed everything. Both happen. */
        if (tx->u.release.k_min < 1) return core_fail(err, CORE_ERR_INVALID, "release", "k_min must be positive");
        break;
    case LEDGER_TX_REVIEW_REQUEST:
        if (is_zero(tx->u.review.org, LEDGER_KEY))
            return core_fail(err, CORE_ERR_INVALID, "org", "organisation key missing");
        /* An all-zero commitment is what a caller that forgot to fill it sends. */
        if (is_zero(tx->u.review.commitment, LEDGER_HASH))
            return core_fail(err, CORE_ERR_INVALID, "commitment", "case commitment missing");
        if (tx->u.review.price < 1 || tx->u.review.price > LEDGER_AMOUNT_MAX)
            return core_fail(err, CORE_ERR_INVALID, "price", "price must be positive");
        break;
    case LEDGER_TX_REVIEW_SETTLE:
    case LEDGER_TX_REVIEW_REFUND: break;
    case LEDGER_TX_CREDIT:
        if (is_zero(tx->u.credit.org, LEDGER_KEY))
            return core_fail(err, CORE_ERR_INVALID, "org", "organisation key missing");
        if (tx->u.credit.amount < 1 || tx->u.credit.amount > LEDGER_REWARD_MAX)
            return core_fail(err, CORE_ERR_INVALID, "amount", "credit must be between 1 and 10^12 tokens");
        /* The reference is public: the same printable-ASCII rule as a name. */
        if (!ledger_name_valid(tx->u.credit.reference, strnlen(tx->u.credit.reference, sizeof tx->u.credit.reference)))
            return core_fail(err, CORE_ERR_INVALID, "reference", "reference must be 1-%d printable ASCII characters",
                             LEDGER_NAME_MAX);
        break;
    case LEDGER_TX_MARKET_OPEN:
        if (is_zero(tx->u.market_open.org, LEDGER_KEY))
            return core_fail(err, CORE_ERR_INVALID, "org", "organisation key missing");
        if (is_zero(tx->u.market_open.terms, LEDGER_HASH))
            return core_fail(err, CORE_ERR_INVALID, "terms", "terms hash missing");
        /* Both bounds keep price × max below 2^63 with room to spare. */
        if (tx->u.market_open.price < 1 || tx->u.market_open.price > LEDGER_REWARD_MAX)
            return core_fail(err, CORE_ERR_INVALID, "price", "price must be between 1 and 10^12 tokens");
        if (tx->u.market_open.max_participants < 1 ||
            tx->u.market_open.max_participants > LEDGER_MARKET_MAX_PARTICIPANTS)
            return core_fail(err, CORE_ERR_INVALID, "max_participants", "between 1 and %u participants",
                             LEDGER_MARKET_MAX_PARTICIPANTS);
        if (tx->u.market_open.closes > (uint64_t)INT64_MAX)
            return core_fail(err, CORE_ERR_INVALID, "closes", "closing time out of range");
        break;
    case LEDGER_TX_MARKET_PAY:
    case LEDGER_TX_MARKET_CLOSE: break;
    default: return core_fail(err, CORE_ERR_INVALID, "kind", "unknown transaction kind");
    }
    return CORE_OK;
}

/* ---- transactions ---- */

static void write_unsigned(writer *w, const ledger_tx *tx) {
    put_u8(w, TX_VERSION);
    put_u8(w, (uint8_t)tx->kind);
    put(w, tx->signer, LEDGER_KEY);
    put_u64(w, tx->nonce);
    switch (tx->kind) {
    case LEDGER_TX_PARAMS:
        put(w, tx->u.params.admin, LEDGER_KEY);
        put_u8(w, tx->u.params.n_nodes);
        for (int i = 0; i < tx->u.params.n_nodes && i < LEDGER_MAX_NODES; i++)
            put(w, tx->u.params.nodes[i], LEDGER_KEY);
        for (int i = 0; i < LEDGER_CATEGORIES; i++) put_u64(w, tx->u.params.reward[i]);
        break;
    case LEDGER_TX_REGISTER_WALLET: break;
    case LEDGER_TX_ANCHOR: put(w, tx->u.anchor.commitment, LEDGER_HASH); break;
    case LEDGER_TX_GRANT:
        put_u32(w, tx->u.grant.scope);
        put_u8(w, tx->u.grant.purpose);
        put(w, tx->u.grant.grantee, LEDGER_KEY);
        put_u64(w, tx->u.grant.expires);
        break;
    case LEDGER_TX_REVOKE: put(w, tx->u.revoke.grant, LEDGER_HASH); break;
    case LEDGER_TX_CONTRIBUTE:
        put(w, tx->u.contribute.contributor, LEDGER_KEY);
        put(w, tx->u.contribute.grant, LEDGER_HASH);
        put_u8(w, tx->u.contribute.category);
        put(w, tx->u.contribute.commitment, LEDGER_HASH);
        put_u64(w, tx->u.contribute.reward);
        break;
    case LEDGER_TX_TRANSFER:
        put(w, tx->u.transfer.to, LEDGER_KEY);
        put_u64(w, tx->u.transfer.amount);
        break;
    case LEDGER_TX_REDEEM: put_u64(w, tx->u.redeem.amount); break;
    case LEDGER_TX_REGISTER_ORG: {
        size_t n = strnlen(tx->u.org.name, sizeof tx->u.org.name);
        put(w, tx->u.org.org, LEDGER_KEY);
        put_u8(w, (uint8_t)n);
        put(w, tx->u.org.name, n);
        break;
    }
    case LEDGER_TX_RELEASE:
        put(w, tx->u.release.org, LEDGER_KEY);
        put(w, tx->u.release.query, LEDGER_HASH);
        put_u32(w, tx->u.release.epsilon_milli);
        put_u32(w, tx->u.release.k_min);
        put_u32(w, tx->u.release.cells);
        break;
    case LEDGER_TX_REVIEW_REQUEST:
        put(w, tx->u.review.org, LEDGER_KEY);
        put(w, tx->u.review.commitment, LEDGER_HASH);
        put_u64(w, tx->u.review.price);
        break;
    case LEDGER_TX_REVIEW_SETTLE:
    case LEDGER_TX_REVIEW_REFUND: put(w, tx->u.review_close.request, LEDGER_HASH); break;
    case LEDGER_TX_CREDIT: {
        size_t n = strnlen(tx->u.credit.reference, sizeof tx->u.credit.reference);
        put(w, tx->u.credit.org, LEDGER_KEY);
        put_u64(w, tx->u.credit.amount);
        put_u8(w, (uint8_t)n);
        put(w, tx->u.credit.reference, n);
        break;
    }
    case LEDGER_TX_MARKET_OPEN:
        put(w, tx->u.market_open.org, LEDGER_KEY);
        put(w, tx->u.market_open.terms, LEDGER_HASH);
        put_u64(w, tx->u.market_open.price);
        put_u32(w, tx->u.market_open.max_participants);
        put_u64(w, tx->u.market_open.closes);
        break;
    case LEDGER_TX_MARKET_PAY:
        put(w, tx->u.market_pay.request, LEDGER_HASH);
        put(w, tx->u.market_pay.grant, LEDGER_HASH);
        break;
    case LEDGER_TX_MARKET_CLOSE: put(w, tx->u.market_close.request, LEDGER_HASH); break;
    }
}

size_t ledger_tx_encode(const ledger_tx *tx, uint8_t *out, size_t cap) {
    if (check_fields(tx, NULL)) return 0;
    writer w = {out, 0, cap, false};
    write_unsigned(&w, tx);
    put(&w, tx->sig, LEDGER_SIG);
    return w.bad ? 0 : w.len;
}

core_status ledger_tx_decode(const uint8_t *buf, size_t len, ledger_tx *tx, core_error *err) {
    memset(tx, 0, sizeof *tx);
    if (len > LEDGER_TX_MAX) return core_fail(err, CORE_ERR_INVALID, "tx", "transaction too long");
    reader r = {buf, len, 0, false};
    uint8_t version = get_u8(&r);
    if (r.bad) return core_fail(err, CORE_ERR_INVALID, "tx", "empty transaction");
    if (version != TX_VERSION)
        return core_fail(err, CORE_ERR_INVALID, "version", "unknown transaction version %u", version);
    uint8_t kind = get_u8(&r);
    if (kind < LEDGER_TX_PARAMS || kind > LEDGER_TX_KIND_MAX)
        return core_fail(err, CORE_ERR_INVALID, "kind", "unknown transaction kind");
    tx->kind = (ledger_tx_kind)kind;
    get(&r, tx->signer, LEDGER_KEY);
    tx->nonce = get_u64(&r);
    switch (tx->kind) {
    case LEDGER_TX_PARAMS:
        get(&r, tx->u.params.admin, LEDGER_KEY);
        tx->u.params.n_nodes = get_u8(&r);
        if (tx->u.params.n_nodes < 1 || tx->u.params.n_nodes > LEDGER_MAX_NODES)
            return core_fail(err, CORE_ERR_INVALID, "nodes", "between 1 and %d node keys", LEDGER_MAX_NODES);
        for (int i = 0; i < tx->u.params.n_nodes; i++) get(&r, tx->u.params.nodes[i], LEDGER_KEY);
        for (int i = 0; i < LEDGER_CATEGORIES; i++) tx->u.params.reward[i] = get_u64(&r);
        break;
    case LEDGER_TX_REGISTER_WALLET: break;
    case LEDGER_TX_ANCHOR: get(&r, tx->u.anchor.commitment, LEDGER_HASH); break;
    case LEDGER_TX_GRANT:
        tx->u.grant.scope = get_u32(&r);
        tx->u.grant.purpose = get_u8(&r);
        get(&r, tx->u.grant.grantee, LEDGER_KEY);
        tx->u.grant.expires = get_u64(&r);
        break;
    case LEDGER_TX_REVOKE: get(&r, tx->u.revoke.grant, LEDGER_HASH); break;
    case LEDGER_TX_CONTRIBUTE:
        get(&r, tx->u.contribute.contributor, LEDGER_KEY);
        get(&r, tx->u.contribute.grant, LEDGER_HASH);
        tx->u.contribute.category = get_u8(&r);
        get(&r, tx->u.contribute.commitment, LEDGER_HASH);
        tx->u.contribute.reward = get_u64(&r);
        break;
    case LEDGER_TX_TRANSFER:
        get(&r, tx->u.transfer.to, LEDGER_KEY);
        tx->u.transfer.amount = get_u64(&r);
        break;
    case LEDGER_TX_REDEEM: tx->u.redeem.amount = get_u64(&r); break;
    case LEDGER_TX_REGISTER_ORG: {
        get(&r, tx->u.org.org, LEDGER_KEY);
        uint8_t n = get_u8(&r);
        if (n < 1 || n > LEDGER_NAME_MAX)
            return core_fail(err, CORE_ERR_INVALID, "name", "organisation name length out of range");
        get(&r, tx->u.org.name, n);
        tx->u.org.name[n] = '\0';
        /* An embedded NUL would make two encodings print the same name. */
        if (!r.bad && !ledger_name_valid(tx->u.org.name, n))
            return core_fail(err, CORE_ERR_INVALID, "name", "organisation name must be 1-%d printable ASCII characters",
                             LEDGER_NAME_MAX);
        break;
    }
    case LEDGER_TX_RELEASE:
        get(&r, tx->u.release.org, LEDGER_KEY);
        get(&r, tx->u.release.query, LEDGER_HASH);
        tx->u.release.epsilon_milli = get_u32(&r);
        tx->u.release.k_min = get_u32(&r);
        tx->u.release.cells = get_u32(&r);
        break;
    case LEDGER_TX_REVIEW_REQUEST:
        get(&r, tx->u.review.org, LEDGER_KEY);
        get(&r, tx->u.review.commitment, LEDGER_HASH);
        tx->u.review.price = get_u64(&r);
        break;
    case LEDGER_TX_REVIEW_SETTLE:
    case LEDGER_TX_REVIEW_REFUND: get(&r, tx->u.review_close.request, LEDGER_HASH); break;
    case LEDGER_TX_CREDIT: {
        get(&r, tx->u.credit.org, LEDGER_KEY);
        tx->u.credit.amount = get_u64(&r);
        uint8_t n = get_u8(&r);
        if (n < 1 || n > LEDGER_NAME_MAX)
            return core_fail(err, CORE_ERR_INVALID, "reference", "reference length out of range");
        get(&r, tx->u.credit.reference, n);
        tx->u.credit.reference[n] = '\0';
        /* An embedded NUL would make two encodings print the same reference. */
        if (!r.bad && !ledger_name_valid(tx->u.credit.reference, n))
            return core_fail(err, CORE_ERR_INVALID, "reference", "reference must be 1-%d printable ASCII characters",
                             LEDGER_NAME_MAX);
        break;
    }
    case LEDGER_TX_MARKET_OPEN:
        get(&r, tx->u.market_open.org, LEDGER_KEY);
        get(&r, tx->u.market_open.terms, LEDGER_HASH);
        tx->u.market_open.price = get_u64(&r);
        tx->u.market_open.max_participants = get_u32(&r);
        tx->u.market_open.closes = get_u64(&r);
        break;
    case LEDGER_TX_MARKET_PAY:
        get(&r, tx->u.market_pay.request, LEDGER_HASH);
        get(&r, tx->u.market_pay.grant, LEDGER_HASH);
        break;
    case LEDGER_TX_MARKET_CLOSE: get(&r, tx->u.market_close.request, LEDGER_HASH); break;
    }
    get(&r, tx->sig, LEDGER_SIG);
    if (r.bad) return core_fail(err, CORE_ERR_INVALID, "tx", "transaction is truncated");
    if (r.pos != len) return core_fail(err, CORE_ERR_INVALID, "tx", "trailing bytes after transaction");
    return check_fields(tx, err);
}

/* Domain tag ‖ the bytes before the signature. */
static size_t signing_message(const uint8_t *enc, size_t len, uint8_t *msg) {
    memcpy(msg, TX_DOMAIN, sizeof TX_DOMAIN);
    memcpy(msg + sizeof TX_DOMAIN, enc, len - LEDGER_SIG);
    return sizeof TX_DOMAIN + len - LEDGER_SIG;
}

size_t ledger_tx_sign(ledger_tx *tx, const uint8_t sk[LEDGER_SECRET], uint8_t *out, size_t cap) {
    memcpy(tx->signer, sk + 32, LEDGER_KEY); /* libsodium: sk = seed ‖ pk */
    memset(tx->sig, 0, LEDGER_SIG);
    size_t len = ledger_tx_encode(tx, out, cap);
    if (!len) return 0;
    uint8_t msg[sizeof TX_DOMAIN + LEDGER_TX_MAX];
    size_t mlen = signing_message(out, len, msg);
    cs_crypto_sign(tx->sig, msg, mlen, sk);
    memcpy(out + len - LEDGER_SIG, tx->sig, LEDGER_SIG);
    return len;
}

bool ledger_tx_check_signature(const uint8_t *buf, size_t len) {
    if (len < TX_HEAD + LEDGER_SIG || len > LEDGER_TX_MAX) return false;
    uint8_t msg[sizeof TX_DOMAIN + LEDGER_TX_MAX];
    size_t mlen = signing_message(buf, len, msg);
    return cs_crypto_sign_verify(buf + len - LEDGER_SIG, msg, mlen, buf + 2);
}

void ledger_tx_id(const uint8_t *buf, size_t len, uint8_t out[LEDGER_HASH]) { ledger_merkle_leaf(buf, len, out); }

/* ---- block headers ---- */

static void block_write(writer *w, const ledger_block *b) {
    put_u8(w, BLOCK_VERSION);
    put_u64(w, b->height);
    put(w, b->prev, LEDGER_HASH);
    put_u64(w, b->time_ms);
    put_u32(w, b->tx_count);
    put_u64(w, b->tree_size);
    put(w, b->root, LEDGER_HASH);
    put(w, b->proposer, LEDGER_KEY);
}

void ledger_block_encode(const ledger_block *b, uint8_t out[LEDGER_BLOCK_BYTES]) {
    writer w = {out, 0, LEDGER_BLOCK_BYTES, false};
    block_write(&w, b);
    put(&w, b->sig, LEDGER_SIG);
}

core_status ledger_block_decode(const uint8_t *buf, size_t len, ledger_block *b, core_error *err) {
    memset(b, 0, sizeof *b);
    if (len != LEDGER_BLOCK_BYTES)
        return core_fail(err, CORE_ERR_INVALID, "block", "block header has the wrong length");
    reader r = {buf, len, 0, false};
    if (get_u8(&r) != BLOCK_VERSION) return core_fail(err, CORE_ERR_INVALID, "version", "unknown block version");
    b->height = get_u64(&r);
    get(&r, b->prev, LEDGER_HASH);
    b->time_ms = get_u64(&r);
    b->tx_count = get_u32(&r);
    b->tree_size = get_u64(&r);
    get(&r, b->root, LEDGER_HASH);
    get(&r, b->proposer, LEDGER_KEY);
    get(&r, b->sig, LEDGER_SIG);
    if (b->height > (uint64_t)INT64_MAX || b->tree_size > (uint64_t)INT64_MAX || b->time_ms > (uint64_t)INT64_MAX)
        return core_fail(err, CORE_ERR_INVALID, "block", "block field out of range");
    return CORE_OK;
}

static void block_message(const ledger_block *b, uint8_t *msg, size_t *mlen) {
    memcpy(msg, BLOCK_DOMAIN, sizeof BLOCK_DOMAIN);
    writer w = {msg + sizeof BLOCK_DOMAIN, 0, LEDGER_BLOCK_BYTES - LEDGER_SIG, false};
    block_write(&w, b);
    *mlen = sizeof BLOCK_DOMAIN + w.len;
}

void ledger_block_sign(ledger_block *b, const uint8_t sk[LEDGER_SECRET]) {
    memcpy(b->proposer, sk + 32, LEDGER_KEY);
    uint8_t msg[sizeof BLOCK_DOMAIN + LEDGER_BLOCK_BYTES];
    size_t mlen;
    block_message(b, msg, &mlen);
    cs_crypto_sign(b->sig, msg, mlen, sk);
}

bool ledger_block_check_signature(const ledger_block *b) {
    uint8_t msg[sizeof BLOCK_DOMAIN + LEDGER_BLOCK_BYTES];
    size_t mlen;
    block_message(b, msg, &mlen);
    return cs_crypto_sign_verify(b->sig, msg, mlen, b->proposer);
}

void ledger_block_hash(const ledger_block *b, uint8_t out[LEDGER_HASH]) {
    uint8_t enc[LEDGER_BLOCK_BYTES];
    ledger_block_encode(b, enc);
    cs_crypto_sha256(out, enc, sizeof enc);
}

/* ---- JSON views ---- */

static json_t *hexj(const uint8_t *p, size_t n) {
    char s[2 * LEDGER_SIG + 1];
    assert(n <= LEDGER_SIG); /* keys, hashes and signatures only */
    cs_crypto_hex(p, n, s);
    return json_string(s);
}

json_t *ledger_block_to_json(const ledger_block *b) {
    uint8_t h[LEDGER_HASH];
    ledger_block_hash(b, h);
    return json_pack("{s:I, s:o, s:o, s:I, s:i, s:I, s:o, s:o, s:o}", "height", (json_int_t)b->height, "hash",
                     hexj(h, LEDGER_HASH), "prev", hexj(b->prev, LEDGER_HASH), "time_ms", (json_int_t)b->time_ms,
                     "tx_count", (int)b->tx_count, "tree_size", (json_int_t)b->tree_size, "root",
                     hexj(b->root, LEDGER_HASH), "proposer", hexj(b->proposer, LEDGER_KEY), "signature",
                     hexj(b->sig, LEDGER_SIG));
}

/* NULL on OOM, never a list missing a category. */
static json_t *scope_json(uint32_t scope) {
    json_t *a = json_array();
    for (int c = 0; a && c < LEDGER_CATEGORIES; c++)
        if ((scope & (1u << c)) && json_array_append_new(a, json_string(ledger_category_name((ledger_category)c)))) {
            json_decref(a);
            a = NULL;
        }
    return a;
}

static json_t *params_nodes_json(const ledger_tx *tx) {
    json_t *nodes = json_array();
    for (int i = 0; nodes && i < tx->u.params.n_nodes; i++)
        if (json_array_append_new(nodes, hexj(tx->u.params.nodes[i], LEDGER_KEY))) {
            json_decref(nodes);
            nodes = NULL;
        }
    return nodes;
}

static json_t *params_reward_json(const ledger_tx *tx) {
    json_t *reward = json_object();
    for (int c = 0; reward && c < LEDGER_CATEGORIES; c++)
        if (json_object_set_new(reward, ledger_category_name((ledger_category)c),
                                json_integer((json_int_t)tx->u.params.reward[c]))) {
            json_decref(reward);
            reward = NULL;
        }
    return reward;
}

json_t *ledger_tx_to_json(const ledger_tx *tx) {
    json_t *j = json_pack("{s:s, s:o, s:I}", "kind", ledger_tx_kind_name(tx->kind), "signer",
                          hexj(tx->signer, LEDGER_KEY), "nonce", (json_int_t)tx->nonce);
    if (!j) return NULL;
    json_t *body = NULL;
    switch (tx->kind) {
    case LEDGER_TX_PARAMS: /* json_pack fails on a NULL "o" and releases the others */
        body = json_pack("{s:o, s:o, s:o}", "admin", hexj(tx->u.params.admin, LEDGER_KEY), "nodes",
                         params_nodes_json(tx), "reward", params_reward_json(tx));
        break;
    case LEDGER_TX_REGISTER_WALLET: body = json_object(); break;
    case LEDGER_TX_ANCHOR: body = json_pack("{s:o}", "commitment", hexj(tx->u.anchor.commitment, LEDGER_HASH)); break;
    case LEDGER_TX_GRANT: {
        bool pool = is_zero(tx->u.grant.grantee, LEDGER_KEY);
        body = json_pack("{s:o, s:s, s:o, s:I}", "scope", scope_json(tx->u.grant.scope), "purpose",
                         ledger_purpose_name((ledger_purpose)tx->u.grant.purpose), "grantee",
                         pool ? json_string("public_health_pool") : hexj(tx->u.grant.grantee, LEDGER_KEY), "expires",
                         (json_int_t)tx->u.grant.expires);
        break;
    }
    case LEDGER_TX_REVOKE: body = json_pack("{s:o}", "grant", hexj(tx->u.revoke.grant, LEDGER_HASH)); break;
    case LEDGER_TX_CONTRIBUTE:
        body = json_pack("{s:o, s:o, s:s, s:o, s:I}", "contributor", hexj(tx->u.contribute.contributor, LEDGER_KEY),
                         "grant", hexj(tx->u.contribute.grant, LEDGER_HASH), "category",
                         ledger_category_name((ledger_category)tx->u.contribute.category), "commitment",
                         hexj(tx->u.contribute.commitment, LEDGER_HASH), "reward", (json_int_t)tx->u.contribute.reward);
        break;
    case LEDGER_TX_TRANSFER:
        body = json_pack("{s:o, s:I}", "to", hexj(tx->u.transfer.to, LEDGER_KEY), "amount",
                         (json_int_t)tx->u.transfer.amount);
        break;
    case LEDGER_TX_REDEEM: body = json_pack("{s:I}", "amount", (json_int_t)tx->u.redeem.amount); break;
    case LEDGER_TX_REGISTER_ORG:
        body = json_pack("{s:o, s:s}", "org", hexj(tx->u.org.org, LEDGER_KEY), "name", tx->u.org.name);
        break;
    case LEDGER_TX_RELEASE:
        body = json_pack("{s:o, s:o, s:i, s:i, s:i}", "org", hexj(tx->u.release.org, LEDGER_KEY), "query",
                         hexj(tx->u.release.query, LEDGER_HASH), "epsilon_milli", (int)tx->u.release.epsilon_milli,
                         "k_min", (int)tx->u.release.k_min, "cells", (int)tx->u.release.cells);
        break;
    case LEDGER_TX_REVIEW_REQUEST:
        body = json_pack("{s:o, s:o, s:I}", "org", hexj(tx->u.review.org, LEDGER_KEY), "commitment",
                         hexj(tx->u.review.commitment, LEDGER_HASH), "price", (json_int_t)tx->u.review.price);
        break;
    case LEDGER_TX_REVIEW_SETTLE:
    case LEDGER_TX_REVIEW_REFUND:
        body = json_pack("{s:o}", "request", hexj(tx->u.review_close.request, LEDGER_HASH));
        break;
    case LEDGER_TX_CREDIT:
        body = json_pack("{s:o, s:I, s:s}", "org", hexj(tx->u.credit.org, LEDGER_KEY), "amount",
                         (json_int_t)tx->u.credit.amount, "reference", tx->u.credit.reference);
        break;
    case LEDGER_TX_MARKET_OPEN:
        body = json_pack("{s:o, s:o, s:I, s:I, s:I}", "org", hexj(tx->u.market_open.org, LEDGER_KEY), "terms",
                         hexj(tx->u.market_open.terms, LEDGER_HASH), "price", (json_int_t)tx->u.market_open.price,
                         "max_participants", (json_int_t)tx->u.market_open.max_participants, "closes",
                         (json_int_t)tx->u.market_open.closes);
        break;
    case LEDGER_TX_MARKET_PAY:
        body = json_pack("{s:o, s:o}", "request", hexj(tx->u.market_pay.request, LEDGER_HASH), "grant",
                         hexj(tx->u.market_pay.grant, LEDGER_HASH));
        break;
    case LEDGER_TX_MARKET_CLOSE:
        body = json_pack("{s:o}", "request", hexj(tx->u.market_close.request, LEDGER_HASH));
        break;
    }
    if (!body || json_object_update(j, body) != 0) {
        json_decref(body);
        json_decref(j);
        return NULL;
    }
    json_decref(body);
    return j;
}
