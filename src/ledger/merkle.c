/* ledger — the Merkle log of RFC 6962 §2.1 (hash = SHA-256, leaf prefix
 * 0x00, node prefix 0x01), with the proof checks of RFC 9162 §2.1.3–2.1.4.
 *
 * The in-memory tree stores, for every level k, the hashes of all complete
 * subtrees of 2^k leaves ("levels[k][i]" covers leaves i·2^k … (i+1)·2^k − 1).
 * That is under 2n hashes in all. Because a complete subtree never changes
 * once its last leaf arrives, appending touches O(log n) entries, truncating
 * is just shrinking counts, and every subtree the RFC's recursions ask for is
 * either one lookup or a split into O(log n) lookups. */
#include "ledger/internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"

#define LEVELS 64

struct ledger_tree {
    uint8_t (*level[LEVELS])[LEDGER_HASH];
    uint64_t cap[LEVELS];
    uint64_t size;
};

void ledger_merkle_leaf(const uint8_t *data, size_t len, uint8_t out[LEDGER_HASH]) {
    static const uint8_t prefix = 0x00;
    cs_crypto_sha256_2(out, &prefix, 1, data, len);
}

void ledger_merkle_node(const uint8_t left[LEDGER_HASH], const uint8_t right[LEDGER_HASH], uint8_t out[LEDGER_HASH]) {
    uint8_t buf[1 + 2 * LEDGER_HASH];
    buf[0] = 0x01;
    memcpy(buf + 1, left, LEDGER_HASH);
    memcpy(buf + 1 + LEDGER_HASH, right, LEDGER_HASH);
    cs_crypto_sha256(out, buf, sizeof buf);
}

/* Largest power of two strictly less than n (n ≥ 2). */
static uint64_t split_point(uint64_t n) {
    uint64_t k = 1;
    while (k << 1 < n) k <<= 1;
    return k;
}

/* ---- verification (RFC 9162) ---- */

bool ledger_merkle_verify_inclusion(uint64_t index, uint64_t size, const uint8_t leaf[LEDGER_HASH],
                                    const uint8_t (*path)[LEDGER_HASH], size_t n, const uint8_t root[LEDGER_HASH]) {
    if (index >= size) return false;
    uint64_t fn = index, sn = size - 1;
    uint8_t r[LEDGER_HASH];
    memcpy(r, leaf, LEDGER_HASH);
    for (size_t i = 0; i < n; i++) {
        if (sn == 0) return false;
        if ((fn & 1) || fn == sn) {
            ledger_merkle_node(path[i], r, r);
            if (!(fn & 1))
                while (!(fn & 1) && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else {
            ledger_merkle_node(r, path[i], r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && cs_crypto_equal(r, root, LEDGER_HASH);
}

bool ledger_merkle_verify_consistency(uint64_t size1, uint64_t size2, const uint8_t root1[LEDGER_HASH],
                                      const uint8_t root2[LEDGER_HASH], const uint8_t (*proof)[LEDGER_HASH], size_t n) {
    if (size1 > size2) return false;
    if (size1 == 0) {
        /* RFC 6962: the empty tree is a prefix of every tree; the proof is
         * empty. root1 is still checked, so a document showing one shows the
         * empty tree's hash, MTH({}) = SHA-256(). */
        uint8_t empty[LEDGER_HASH];
        cs_crypto_sha256(empty, "", 0);
        return n == 0 && cs_crypto_equal(root1, empty, LEDGER_HASH) &&
               (size2 > 0 || cs_crypto_equal(root2, empty, LEDGER_HASH));
    }
    if (size1 == size2) return n == 0 && cs_crypto_equal(root1, root2, LEDGER_HASH);
    if (n == 0) return false;
    /* When size1 is a power of two the old root is itself a node of the new
     * tree and the proof omits it: start from it. */
    bool pow2 = (size1 & (size1 - 1)) == 0;
    const uint8_t *first = pow2 ? root1 : proof[0];
    size_t i = pow2 ? 0 : 1;
    uint64_t fn = size1 - 1, sn = size2 - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    uint8_t fr[LEDGER_HASH], sr[LEDGER_HASH];
    memcpy(fr, first, LEDGER_HASH);
    memcpy(sr, first, LEDGER_HASH);
    for (; i < n; i++) {
        if (sn == 0) return false;
        if ((fn & 1) || fn == sn) {
            ledger_merkle_node(proof[i], fr, fr);
            ledger_merkle_node(proof[i], sr, sr);
            if (!(fn & 1))
                while (!(fn & 1) && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else {
            ledger_merkle_node(sr, proof[i], sr);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && cs_crypto_equal(fr, root1, LEDGER_HASH) && cs_crypto_equal(sr, root2, LEDGER_HASH);
}

/* ---- the tree ---- */

ledger_tree *ledger_tree_new(void) { return calloc(1, sizeof(ledger_tree)); }

void ledger_tree_free(ledger_tree *t) {
    if (!t) return;
    for (int k = 0; k < LEVELS; k++) free(t->level[k]);
    free(t);
}

uint64_t ledger_tree_size(const ledger_tree *t) { return t->size; }

/* Store h as entry (size >> k) − 1 of level k: the subtree that the leaf
 * just appended (size already counts it) completed. */
static core_status push(ledger_tree *t, int k, const uint8_t h[LEDGER_HASH], core_error *err) {
    uint64_t count = (t->size >> k) - 1;
    if (count >= t->cap[k]) {
        uint64_t ncap = t->cap[k] ? t->cap[k] * 2 : 1024;
        void *p = realloc(t->level[k], ncap * LEDGER_HASH);
        if (!p) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory growing the Merkle tree");
        t->level[k] = p;
        t->cap[k] = ncap;
    }
    memcpy(t->level[k][count], h, LEDGER_HASH);
    return CORE_OK;
}

core_status ledger_tree_append(ledger_tree *t, const uint8_t leaf[LEDGER_HASH], core_error *err) {
    t->size++;
    core_status rc = push(t, 0, leaf, err);
    if (rc) {
        t->size--;
        return rc;
    }
    /* Each trailing 1 bit of the new size closes one more complete subtree. */
    uint8_t h[LEDGER_HASH];
    for (int k = 1; k < LEVELS && (t->size & ((UINT64_C(1) << k) - 1)) == 0; k++) {
        uint64_t i = (t->size >> k) - 1;
        ledger_merkle_node(t->level[k - 1][2 * i], t->level[k - 1][2 * i + 1], h);
        if ((rc = push(t, k, h, err))) {
            ledger_tree_truncate(t, t->size - 1);
            return rc;
        }
    }
    return CORE_OK;
}

void ledger_tree_truncate(ledger_tree *t, uint64_t size) {
    assert(size <= t->size);
    if (size < t->size) t->size = size; /* complete subtrees inside the prefix are unchanged */
}

/* MTH(D[start : start+n]). RFC recursions only ever ask for ranges whose
 * start is a multiple of the largest power of two ≤ n, so a power-of-two
 * range is always a stored complete subtree. */
static void mth(const ledger_tree *t, uint64_t start, uint64_t n, uint8_t out[LEDGER_HASH]) {
    if (n == 0) {
        cs_crypto_sha256(out, "", 0);
        return;
    }
    assert(start + n <= t->size);
    if ((n & (n - 1)) == 0 && start % n == 0) {
        int k = __builtin_ctzll(n);
        memcpy(out, t->level[k][start >> k], LEDGER_HASH);
        return;
    }
    uint64_t k = split_point(n);
    uint8_t l[LEDGER_HASH], r[LEDGER_HASH];
    mth(t, start, k, l);
    mth(t, start + k, n - k, r);
    ledger_merkle_node(l, r, out);
}

void ledger_tree_root(const ledger_tree *t, uint64_t size, uint8_t out[LEDGER_HASH]) {
    assert(size <= t->size);
    if (size > t->size) size = t->size; /* the contract is broken; never read past the tree */
    mth(t, 0, size, out);
}

/* PATH(m, D[start : start+n]) of RFC 6962 §2.1.1, deepest element first. */
static void path(const ledger_tree *t, uint64_t m, uint64_t start, uint64_t n, uint8_t out[][LEDGER_HASH],
                 size_t *len) {
    if (n <= 1) return;
    uint64_t k = split_point(n);
    if (m < k)
        path(t, m, start, k, out, len);
    else
        path(t, m - k, start + k, n - k, out, len);
    assert(*len < LEDGER_PROOF_MAX); /* one element per level, and n < 2^64 */
    if (m < k)
        mth(t, start + k, n - k, out[(*len)++]);
    else
        mth(t, start, k, out[(*len)++]);
}

core_status ledger_tree_inclusion(const ledger_tree *t, uint64_t index, uint64_t size, uint8_t out[][LEDGER_HASH],
                                  size_t *n, core_error *err) {
    *n = 0;
    if (size > t->size || index >= size)
        return core_fail(err, CORE_ERR_INVALID, "index", "leaf %llu is not in a tree of size %llu",
                         (unsigned long long)index, (unsigned long long)size);
    path(t, index, 0, size, out, n);
    return CORE_OK;
}

/* SUBPROOF(m, D[start : start+n], b) of RFC 6962 §2.1.2. */
static void subproof(const ledger_tree *t, uint64_t m, uint64_t start, uint64_t n, bool b, uint8_t out[][LEDGER_HASH],
                     size_t *len) {
    assert(*len < LEDGER_PROOF_MAX); /* at most one element per level, and n < 2^64 */
    if (m == n) {
        if (!b) mth(t, start, n, out[(*len)++]);
        return;
    }
    uint64_t k = split_point(n);
    if (m <= k) {
        subproof(t, m, start, k, b, out, len);
        mth(t, start + k, n - k, out[(*len)++]);
    } else {
        subproof(t, m - k, start + k, n - k, false, out, len);
        mth(t, start, k, out[(*len)++]);
    }
}

core_status ledger_tree_consistency(const ledger_tree *t, uint64_t size1, uint64_t size2, uint8_t out[][LEDGER_HASH],
                                    size_t *n, core_error *err) {
    *n = 0;
    if (size1 > size2 || size2 > t->size)
        return core_fail(err, CORE_ERR_INVALID, "size", "no consistency proof from %llu to %llu",
                         (unsigned long long)size1, (unsigned long long)size2);
    /* From the empty tree the proof is empty (RFC 6962 §2.1.2 defines
     * PROOF(m, D[n]) for 0 < m < n; m = 0 needs nothing). */
    if (size1 > 0 && size1 < size2) subproof(t, size1, 0, size2, true, out, n);
    return CORE_OK;
}
