/* RFC 6962 / RFC 9162 Merkle log: the published reference vectors in
 * ../shared/vectors/rfc6962-merkle.json (roots, audit paths, consistency
 * proofs must match exactly; every listed corruption must be rejected), and
 * exhaustive self-consistency on trees of every size up to 130. */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "ledger/ledger.h"

typedef uint8_t hash_t[LEDGER_HASH];

static json_t *vectors;

static int load_vectors(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/vectors/rfc6962-merkle.json", TEST_SHARED_DIR);
    vectors = json_load_file(path, 0, NULL);
    return 0;
}

static int free_vectors(void **state) {
    (void)state;
    json_decref(vectors);
    return 0;
}

#define NEED_VECTORS()                                                                                \
    do {                                                                                              \
        if (!vectors) {                                                                               \
            fprintf(stderr, "SKIP: %s/vectors/rfc6962-merkle.json not found (../shared is absent)\n", \
                    TEST_SHARED_DIR);                                                                 \
            skip();                                                                                   \
        }                                                                                             \
    } while (0)

static void hex32(const char *s, uint8_t out[32]) { assert_true(cs_crypto_unhex(s, out, 32)); }

static size_t hex_var(const char *s, uint8_t *out, size_t cap) {
    size_t n = strlen(s) / 2;
    assert_true(n <= cap);
    if (n) assert_true(cs_crypto_unhex(s, out, n));
    return n;
}

static ledger_tree *vector_tree(hash_t leaves[8]) {
    ledger_tree *t = ledger_tree_new();
    json_t *lv = json_object_get(vectors, "leaves_hex");
    assert_int_equal(json_array_size(lv), 8);
    for (size_t i = 0; i < 8; i++) {
        uint8_t data[64];
        size_t n = hex_var(json_string_value(json_array_get(lv, i)), data, sizeof data);
        ledger_merkle_leaf(data, n, leaves[i]);
        assert_int_equal(ledger_tree_append(t, leaves[i], NULL), CORE_OK);
    }
    return t;
}

static void test_roots(void **state) {
    (void)state;
    NEED_VECTORS();
    hash_t leaves[8];
    ledger_tree *t = vector_tree(leaves);
    json_t *roots = json_object_get(vectors, "root_by_size_hex");
    assert_int_equal(json_array_size(roots), 9);
    for (size_t size = 0; size <= 8; size++) {
        uint8_t want[32], got[32];
        hex32(json_string_value(json_array_get(roots, size)), want);
        ledger_tree_root(t, size, got);
        assert_memory_equal(got, want, 32);
    }
    /* Truncating and re-growing gives the same roots. */
    ledger_tree_truncate(t, 3);
    for (size_t i = 3; i < 8; i++) assert_int_equal(ledger_tree_append(t, leaves[i], NULL), CORE_OK);
    uint8_t want[32], got[32];
    hex32(json_string_value(json_array_get(roots, 8)), want);
    ledger_tree_root(t, 8, got);
    assert_memory_equal(got, want, 32);
    ledger_tree_free(t);
}

/* ---- inclusion ---- */

typedef struct {
    uint64_t index, size;
    hash_t leaf, root;
    size_t n;
    hash_t path[LEDGER_PROOF_MAX + 1];
} incl;

static bool incl_ok(const incl *c) {
    return ledger_merkle_verify_inclusion(c->index, c->size, c->leaf, (const uint8_t(*)[32])c->path, c->n, c->root);
}

static bool incl_same(const incl *a, const incl *b) {
    return a->index == b->index && a->size == b->size && !memcmp(a->leaf, b->leaf, 32) &&
           !memcmp(a->root, b->root, 32) && a->n == b->n && !memcmp(a->path, b->path, a->n * 32);
}

static int reject_count;

/* Every corruption listed by the vectors file must fail. Mutations that
 * happen to reproduce the original input are not corruptions and skipped. */
static void incl_must_reject(const incl *orig, const incl *m, const char *what) {
    if (incl_same(orig, m)) return;
    if (incl_ok(m))
        fail_msg("inclusion (index %llu, size %llu) accepted after: %s", (unsigned long long)orig->index,
                 (unsigned long long)orig->size, what);
    reject_count++;
}

static void incl_mutations(const incl *c) {
    incl m;
    m = *c;
    m.index = c->index - 1;
    incl_must_reject(c, &m, "index - 1"); /* wraps for 0: still must fail */
    m = *c;
    m.index = c->index + 1;
    incl_must_reject(c, &m, "index + 1");
    m = *c;
    m.index = c->index ^ 2;
    incl_must_reject(c, &m, "index ^ 2");
    m = *c;
    m.size = c->size * 2;
    incl_must_reject(c, &m, "size * 2");
    m = *c;
    m.size = c->size / 2;
    incl_must_reject(c, &m, "size / 2");
    m = *c;
    m.leaf[0] ^= 1;
    incl_must_reject(c, &m, "wrong leaf");
    m = *c;
    m.root[31] ^= 0x80;
    incl_must_reject(c, &m, "wrong root");
    m = *c;
    memcpy(m.root, c->leaf, 32);
    memcpy(m.leaf, c->root, 32);
    incl_must_reject(c, &m, "swapped root and leaf");
    for (size_t i = 0; i < c->n; i++)
        for (int bit = 0; bit < 256; bit += 37) {
            m = *c;
            m.path[i][bit / 8] ^= (uint8_t)(1 << (bit % 8));
            incl_must_reject(c, &m, "bit flipped in path");
        }
    for (size_t i = 0; i < c->n; i++) {
        m = *c;
        memmove(m.path[i], m.path[i + 1], (c->n - i - 1) * 32);
        m.n--;
        incl_must_reject(c, &m, "element removed");
    }
    hash_t extra;
    memset(extra, 0x5a, 32);
    for (size_t i = 0; i <= c->n; i++) {
        m = *c;
        memmove(m.path[i + 1], m.path[i], (c->n - i) * 32);
        memcpy(m.path[i], extra, 32);
        m.n++;
        incl_must_reject(c, &m, i == 0 ? "element prepended" : i == c->n ? "element appended" : "element inserted");
    }
    /* Prepending or appending a copy of an existing element. */
    if (c->n) {
        m = *c;
        memmove(m.path[1], m.path[0], c->n * 32);
        m.n++;
        incl_must_reject(c, &m, "first element duplicated");
        m = *c;
        memcpy(m.path[c->n], c->path[c->n - 1], 32);
        m.n++;
        incl_must_reject(c, &m, "last element duplicated");
    }
}

static void test_inclusion_vectors(void **state) {
    (void)state;
    NEED_VECTORS();
    hash_t leaves[8];
    ledger_tree *t = vector_tree(leaves);
    json_t *roots = json_object_get(vectors, "root_by_size_hex"), *v;
    size_t i;
    reject_count = 0;
    json_array_foreach(json_object_get(vectors, "inclusion"), i, v) {
        incl c = {0};
        c.index = (uint64_t)json_integer_value(json_object_get(v, "index"));
        c.size = (uint64_t)json_integer_value(json_object_get(v, "size"));
        memcpy(c.leaf, leaves[c.index], 32);
        hex32(json_string_value(json_array_get(roots, c.size)), c.root);
        json_t *p = json_object_get(v, "path_hex");
        c.n = json_array_size(p);
        for (size_t k = 0; k < c.n; k++) hex32(json_string_value(json_array_get(p, k)), c.path[k]);
        /* Our prover produces exactly the published path. */
        hash_t mine[LEDGER_PROOF_MAX];
        size_t n;
        assert_int_equal(ledger_tree_inclusion(t, c.index, c.size, mine, &n, NULL), CORE_OK);
        assert_int_equal(n, c.n);
        if (n) assert_memory_equal(mine, c.path, n * 32);
        assert_true(incl_ok(&c));
        incl_mutations(&c);
    }
    assert_true(reject_count > 100);
    ledger_tree_free(t);
}

/* ---- consistency ---- */

typedef struct {
    uint64_t size1, size2;
    hash_t root1, root2;
    size_t n;
    hash_t proof[LEDGER_PROOF_MAX + 1];
} cons;

static bool cons_ok(const cons *c) {
    return ledger_merkle_verify_consistency(c->size1, c->size2, c->root1, c->root2, (const uint8_t(*)[32])c->proof,
                                            c->n);
}

static bool cons_same(const cons *a, const cons *b) {
    return a->size1 == b->size1 && a->size2 == b->size2 && !memcmp(a->root1, b->root1, 32) &&
           !memcmp(a->root2, b->root2, 32) && a->n == b->n && !memcmp(a->proof, b->proof, a->n * 32);
}

static void cons_must_reject(const cons *orig, const cons *m, const char *what) {
    if (cons_same(orig, m)) return;
    if (cons_ok(m))
        fail_msg("consistency %llu→%llu accepted after: %s", (unsigned long long)orig->size1,
                 (unsigned long long)orig->size2, what);
    reject_count++;
}

static void cons_mutations(const cons *c) {
    cons m;
    m = *c;
    m.size1 = c->size1 * 2;
    cons_must_reject(c, &m, "size1 * 2");
    m = *c;
    m.size1 = c->size1 / 2;
    cons_must_reject(c, &m, "size1 / 2");
    m = *c;
    m.size2 = c->size2 * 2;
    cons_must_reject(c, &m, "size2 * 2");
    m = *c;
    m.size2 = c->size2 / 2;
    cons_must_reject(c, &m, "size2 / 2");
    m = *c;
    m.size1 = c->size1 + 1;
    cons_must_reject(c, &m, "size1 + 1");
    m = *c;
    m.size1 = c->size1 - 1;
    cons_must_reject(c, &m, "size1 - 1");
    m = *c;
    m.root1[0] ^= 1;
    cons_must_reject(c, &m, "wrong first root");
    m = *c;
    m.root2[0] ^= 1;
    cons_must_reject(c, &m, "wrong second root");
    m = *c;
    memcpy(m.root1, c->root2, 32);
    memcpy(m.root2, c->root1, 32);
    cons_must_reject(c, &m, "swapped roots");
    for (size_t i = 0; i < c->n; i++)
        for (int bit = 0; bit < 256; bit += 37) {
            m = *c;
            m.proof[i][bit / 8] ^= (uint8_t)(1 << (bit % 8));
            cons_must_reject(c, &m, "bit flipped in proof");
        }
    for (size_t i = 0; i < c->n; i++) {
        m = *c;
        memmove(m.proof[i], m.proof[i + 1], (c->n - i - 1) * 32);
        m.n--;
        cons_must_reject(c, &m, "element removed");
    }
    hash_t extra;
    memset(extra, 0xa5, 32);
    for (size_t i = 0; i <= c->n; i++) {
        m = *c;
        memmove(m.proof[i + 1], m.proof[i], (c->n - i) * 32);
        memcpy(m.proof[i], extra, 32);
        m.n++;
        cons_must_reject(c, &m, i == 0 ? "element prepended" : i == c->n ? "element appended" : "element inserted");
    }
}

static void test_consistency_vectors(void **state) {
    (void)state;
    NEED_VECTORS();
    hash_t leaves[8];
    ledger_tree *t = vector_tree(leaves);
    json_t *roots = json_object_get(vectors, "root_by_size_hex"), *v;
    size_t i;
    reject_count = 0;
    json_array_foreach(json_object_get(vectors, "consistency"), i, v) {
        cons c = {0};
        c.size1 = (uint64_t)json_integer_value(json_object_get(v, "size1"));
        c.size2 = (uint64_t)json_integer_value(json_object_get(v, "size2"));
        hex32(json_string_value(json_array_get(roots, c.size1)), c.root1);
        hex32(json_string_value(json_array_get(roots, c.size2)), c.root2);
        json_t *p = json_object_get(v, "proof_hex");
        c.n = json_array_size(p);
        for (size_t k = 0; k < c.n; k++) hex32(json_string_value(json_array_get(p, k)), c.proof[k]);
        hash_t mine[LEDGER_PROOF_MAX];
        size_t n;
        assert_int_equal(ledger_tree_consistency(t, c.size1, c.size2, mine, &n, NULL), CORE_OK);
        assert_int_equal(n, c.n);
        if (n) assert_memory_equal(mine, c.proof, n * 32);
        assert_true(cons_ok(&c));
        cons_mutations(&c);
    }
    assert_true(reject_count > 50);
    ledger_tree_free(t);
}

/* Reference MTH straight from RFC 6962's definition, for cross-checking. */
static void naive_mth(hash_t *leaves, uint64_t n, uint8_t out[32]) {
    if (n == 0) {
        cs_crypto_sha256(out, "", 0);
        return;
    }
    if (n == 1) {
        memcpy(out, leaves[0], 32);
        return;
    }
    uint64_t k = 1;
    while (k * 2 < n) k *= 2;
    uint8_t l[32], r[32];
    naive_mth(leaves, k, l);
    naive_mth(leaves + k, n - k, r);
    ledger_merkle_node(l, r, out);
}

static void test_every_size(void **state) {
    (void)state;
    enum { N = 130 };
    hash_t leaves[N], roots[N + 1];
    ledger_tree *t = ledger_tree_new();
    for (uint64_t i = 0; i < N; i++) {
        uint8_t data[8] = {(uint8_t)i, (uint8_t)(i >> 8), 7};
        ledger_merkle_leaf(data, sizeof data, leaves[i]);
        assert_int_equal(ledger_tree_append(t, leaves[i], NULL), CORE_OK);
    }
    for (uint64_t size = 0; size <= N; size++) {
        uint8_t want[32];
        naive_mth(leaves, size, want);
        ledger_tree_root(t, size, roots[size]);
        assert_memory_equal(roots[size], want, 32);
    }
    for (uint64_t size = 1; size <= N; size++) {
        for (uint64_t i = 0; i < size; i++) {
            hash_t path[LEDGER_PROOF_MAX];
            size_t n;
            assert_int_equal(ledger_tree_inclusion(t, i, size, path, &n, NULL), CORE_OK);
            assert_true(ledger_merkle_verify_inclusion(i, size, leaves[i], (const uint8_t(*)[32])path, n, roots[size]));
            if (size > 1) /* right path, wrong leaf */
                assert_false(ledger_merkle_verify_inclusion(i, size, leaves[(i + 1) % size], (const uint8_t(*)[32])path,
                                                            n, roots[size]));
        }
        for (uint64_t m = 1; m <= size; m++) {
            hash_t proof[LEDGER_PROOF_MAX];
            size_t n;
            assert_int_equal(ledger_tree_consistency(t, m, size, proof, &n, NULL), CORE_OK);
            assert_true(
                ledger_merkle_verify_consistency(m, size, roots[m], roots[size], (const uint8_t(*)[32])proof, n));
            if (m < size) /* an old root that is not a prefix of this tree */
                assert_false(ledger_merkle_verify_consistency(m, size, roots[m - 1 ? m - 1 : 2], roots[size],
                                                              (const uint8_t(*)[32])proof, n));
        }
    }
    /* Out-of-range requests are errors, not crashes. */
    hash_t p[LEDGER_PROOF_MAX];
    size_t n;
    core_error err = {0};
    assert_int_equal(ledger_tree_inclusion(t, N, N, p, &n, &err), CORE_ERR_INVALID);
    assert_int_equal(ledger_tree_inclusion(t, 0, N + 1, p, &n, &err), CORE_ERR_INVALID);
    assert_int_equal(ledger_tree_consistency(t, 6, 5, p, &n, &err), CORE_ERR_INVALID);
    assert_int_equal(ledger_tree_consistency(t, 5, N + 1, p, &n, &err), CORE_ERR_INVALID);
    /* From the empty tree (RFC 6962): the proof is empty and always holds;
     * a non-empty proof, or an old root that is not the empty tree's, is
     * refused. roots[0] is MTH({}) = SHA-256(). */
    for (uint64_t size = 0; size <= N; size++) {
        n = 99;
        assert_int_equal(ledger_tree_consistency(t, 0, size, p, &n, &err), CORE_OK);
        assert_int_equal(n, 0);
        assert_true(ledger_merkle_verify_consistency(0, size, roots[0], roots[size], NULL, 0));
        if (size > 0) {
            assert_false(ledger_merkle_verify_consistency(0, size, roots[1], roots[size], NULL, 0));
            assert_false(
                ledger_merkle_verify_consistency(0, size, roots[0], roots[size], (const uint8_t(*)[32])roots, 1));
        }
    }
    assert_false(ledger_merkle_verify_consistency(0, 0, roots[0], roots[1], NULL, 0));
    ledger_tree_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roots),
        cmocka_unit_test(test_inclusion_vectors),
        cmocka_unit_test(test_consistency_vectors),
        cmocka_unit_test(test_every_size),
    };
    return cmocka_run_group_tests(tests, load_vectors, free_vectors);
}
