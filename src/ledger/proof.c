/* ledger — inclusion proofs as self-contained JSON documents, and the
 * documents built around them (consent receipts, record anchors).
 *
 * A proof carries the exact transaction bytes, its leaf index, the audit
 * path, the exact bytes of the block header it leads to (the signed tree
 * head), the exact bytes of the header of the block that holds the
 * transaction, and the consistency proof from that block's tree to the
 * head's. Everything needed to check it offline is inside.
 *
 * The human-readable fields beside the hex are what people read, so they
 * must not be able to say anything the bytes do not: the checker parses
 * only the bytes, proves them, renders the whole document again from what
 * it proved, and requires the result to equal the document it was given.
 * A field edited, dropped or added therefore fails, whatever field it is,
 * and a new readable field cannot be added to a document without the
 * checker holding it to the bytes too. Documents whose content cannot be
 * derived from the proof (a consent's status, the time of download) leave
 * that content out. */
#include "ledger/internal.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "crypto/crypto.h"

#define PROOF_FORMAT "caresync-inclusion-proof-v2"
#define RECEIPT_FORMAT "caresync-consent-receipt-v2"
#define ANCHOR_FORMAT "caresync-record-anchor-v2"
#define ANCHOR_HOW                                                                                              \
    "SHA-256(salt bytes ‖ record_text bytes) must equal commitment, which must be the anchor transaction's; " \
    "then caresync ledger verify-proof FILE checks the transaction is in the signed log"

static json_t *hexj(const uint8_t *p, size_t n) {
    char s[2 * LEDGER_TX_MAX + 1];
    assert(n <= LEDGER_TX_MAX); /* the longest thing shown in hex is a transaction */
    cs_crypto_hex(p, n, s);
    return json_string(s);
}

static json_t *header_json(const ledger_block *b) {
    uint8_t enc[LEDGER_BLOCK_BYTES];
    ledger_block_encode(b, enc);
    return json_pack("{s:o, s:o}", "encoded", hexj(enc, LEDGER_BLOCK_BYTES), "block", ledger_block_to_json(b));
}

/* NULL on OOM, never a shortened path. */
static json_t *hashes_json(const uint8_t (*h)[LEDGER_HASH], size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, hexj(h[i], LEDGER_HASH))) {
            json_decref(a);
            a = NULL;
        }
    return a;
}

json_t *ledger_proof_to_json(const ledger_proof *p) {
    uint8_t txid[LEDGER_HASH];
    ledger_tx_id(p->tx, p->tx_len, txid);
    ledger_tx tx;
    json_t *txj = ledger_tx_decode(p->tx, p->tx_len, &tx, NULL) == CORE_OK ? ledger_tx_to_json(&tx) : json_null();
    return json_pack(
        "{s:s, s:o, s:o, s:o, s:I, s:I, s:I, s:o, s:o, s:o, s:o}", "format", PROOF_FORMAT, "txid",
        hexj(txid, LEDGER_HASH), "tx", hexj(p->tx, p->tx_len), "transaction", txj, "leaf_index", (json_int_t)p->index,
        "block_height", (json_int_t)p->height, "tree_size", (json_int_t)p->head.tree_size, "path",
        hashes_json((const uint8_t(*)[LEDGER_HASH])p->path, p->path_len), "tx_block", header_json(&p->block),
        "tx_block_to_head", hashes_json((const uint8_t(*)[LEDGER_HASH])p->cons, p->cons_len), "tree_head",
        header_json(&p->head));
}

static bool unhex_var(const char *s, uint8_t *out, size_t cap, size_t *len) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n % 2 || n / 2 > cap) return false;
    *len = n / 2;
    return cs_crypto_unhex(s, out, n / 2);
}

static core_status hashes_from_json(const json_t *a, const char *field, uint8_t out[][LEDGER_HASH], size_t *n,
                                    core_error *err) {
    if (!json_is_array(a) || json_array_size(a) > LEDGER_PROOF_MAX)
        return core_fail(err, CORE_ERR_INVALID, field, "%s must be an array of hashes", field);
    for (size_t i = 0; i < json_array_size(a); i++) {
        const char *s = json_string_value(json_array_get(a, i));
        if (!s || strlen(s) != 2 * LEDGER_HASH || !cs_crypto_unhex(s, out[i], LEDGER_HASH))
            return core_fail(err, CORE_ERR_INVALID, field, "%s element %zu is not a 32-byte hex hash", field, i);
    }
    *n = json_array_size(a);
    return CORE_OK;
}

static core_status header_from_json(const json_t *j, const char *field, ledger_block *out, core_error *err) {
    uint8_t enc[LEDGER_BLOCK_BYTES];
    const char *s = json_string_value(json_object_get(j, "encoded"));
    if (!s || strlen(s) != 2 * LEDGER_BLOCK_BYTES || !cs_crypto_unhex(s, enc, sizeof enc))
        return core_fail(err, CORE_ERR_INVALID, field, "%s.encoded must be a block header in hex", field);
    core_status rc = ledger_block_decode(enc, sizeof enc, out, err);
    if (rc && err) snprintf(err->field, sizeof err->field, "%s", field);
    return rc;
}

static bool get_u64(const json_t *j, uint64_t *out) {
    if (!json_is_integer(j) || json_integer_value(j) < 0) return false;
    *out = (uint64_t)json_integer_value(j);
    return true;
}

core_status ledger_proof_from_json(const json_t *j, ledger_proof *out, core_error *err) {
    memset(out, 0, sizeof *out);
    const char *format = json_string_value(json_object_get(j, "format"));
    if (format && strcmp(format, "caresync-inclusion-proof-v1") == 0)
        return core_fail(err, CORE_ERR_INVALID, "format",
                         "a v1 proof: its readable fields were not all covered by the proof; fetch the proof again");
    if (!format || strcmp(format, PROOF_FORMAT) != 0)
        return core_fail(err, CORE_ERR_INVALID, "format", "not a %s document", PROOF_FORMAT);
    if (!unhex_var(json_string_value(json_object_get(j, "tx")), out->tx, sizeof out->tx, &out->tx_len))
        return core_fail(err, CORE_ERR_INVALID, "tx", "tx must be the transaction's bytes in hex");
    if (!get_u64(json_object_get(j, "leaf_index"), &out->index))
        return core_fail(err, CORE_ERR_INVALID, "leaf_index", "leaf_index must be a non-negative integer");
    if (!get_u64(json_object_get(j, "block_height"), &out->height))
        return core_fail(err, CORE_ERR_INVALID, "block_height", "block_height must be a non-negative integer");
    core_status rc = hashes_from_json(json_object_get(j, "path"), "path", out->path, &out->path_len, err);
    if (!rc)
        rc = hashes_from_json(json_object_get(j, "tx_block_to_head"), "tx_block_to_head", out->cons, &out->cons_len,
                              err);
    if (!rc) rc = header_from_json(json_object_get(j, "tx_block"), "tx_block", &out->block, err);
    if (!rc) rc = header_from_json(json_object_get(j, "tree_head"), "tree_head", &out->head, err);
    return rc;
}

core_status ledger_proof_check(const ledger_proof *p, const uint8_t *trusted_node, core_error *err) {
    ledger_tx tx;
    core_status rc = ledger_tx_decode(p->tx, p->tx_len, &tx, err);
    if (rc) return rc;
    if (!ledger_tx_check_signature(p->tx, p->tx_len))
        return core_fail(err, CORE_ERR_CRYPTO, "tx", "the transaction's signature is invalid");
    if (!ledger_block_check_signature(&p->head))
        return core_fail(err, CORE_ERR_CRYPTO, "tree_head", "the tree head's signature is invalid");
    if (!ledger_block_check_signature(&p->block))
        return core_fail(err, CORE_ERR_CRYPTO, "tx_block", "the holding block's signature is invalid");
    if (trusted_node && !cs_crypto_equal(trusted_node, p->head.proposer, LEDGER_KEY))
        return core_fail(err, CORE_ERR_CRYPTO, "tree_head", "the tree head is not signed by the trusted node key");
    if (trusted_node && !cs_crypto_equal(trusted_node, p->block.proposer, LEDGER_KEY))
        return core_fail(err, CORE_ERR_CRYPTO, "tx_block", "the holding block is not signed by the trusted node key");
    uint8_t leaf[LEDGER_HASH];
    ledger_tx_id(p->tx, p->tx_len, leaf);
    if (!ledger_merkle_verify_inclusion(p->index, p->head.tree_size, leaf, (const uint8_t(*)[LEDGER_HASH])p->path,
                                        p->path_len, p->head.root))
        return core_fail(err, CORE_ERR_CRYPTO, "path", "the audit path does not lead to the tree head's root");
    /* The holding block: its range of leaves holds the index, it comes no
     * later than head, and its tree is a prefix of head's. Together with the
     * inclusion above, the leaf is in that block's range of that log. Every
     * block holds at least one transaction, so heights can grow no faster
     * than tree sizes; two different headers at one height are refused. */
    const ledger_block *b = &p->block, *h = &p->head;
    if (p->height != b->height)
        return core_fail(err, CORE_ERR_CRYPTO, "block_height", "block_height is not the holding block's height");
    if (b->tx_count == 0 || b->tx_count > b->tree_size || p->index < b->tree_size - b->tx_count ||
        p->index >= b->tree_size)
        return core_fail(err, CORE_ERR_CRYPTO, "tx_block", "the leaf is not among the holding block's transactions");
    if (b->height > h->height || b->tree_size > h->tree_size || h->height - b->height > h->tree_size - b->tree_size)
        return core_fail(err, CORE_ERR_CRYPTO, "tx_block", "the holding block does not come before the tree head");
    uint8_t be[LEDGER_BLOCK_BYTES], he[LEDGER_BLOCK_BYTES];
    ledger_block_encode(b, be);
    ledger_block_encode(h, he);
    if (b->height == h->height && memcmp(be, he, sizeof be) != 0)
        return core_fail(err, CORE_ERR_CRYPTO, "tx_block", "two different headers claim the same height");
    if (!ledger_merkle_verify_consistency(b->tree_size, h->tree_size, b->root, h->root,
                                          (const uint8_t(*)[LEDGER_HASH])p->cons, p->cons_len))
        return core_fail(err, CORE_ERR_CRYPTO, "tx_block_to_head",
                         "the holding block's log is not a prefix of the tree head's (consistency proof fails)");
    return CORE_OK;
}

/* ---- documents ---- */

json_t *ledger_consent_receipt_to_json(const ledger_proof *p) {
    ledger_tx tx;
    if (ledger_tx_decode(p->tx, p->tx_len, &tx, NULL) || tx.kind != LEDGER_TX_GRANT) return NULL;
    json_t *txj = ledger_tx_to_json(&tx);
    if (!txj) return NULL;
    uint8_t txid[LEDGER_HASH];
    char id[2 * LEDGER_HASH + 1], node[2 * LEDGER_KEY + 1], exp[32], how[256];
    ledger_tx_id(p->tx, p->tx_len, txid);
    cs_crypto_hex(txid, LEDGER_HASH, id);
    cs_crypto_hex(p->head.proposer, LEDGER_KEY, node);
    core_format_time((int64_t)tx.u.grant.expires, exp);
    snprintf(how, sizeof how, "caresync ledger verify-proof consent-%.16s.json --node-key %s", id, node);
    /* The consent as the grant says it; not its status (a revocation is a
     * later transaction this proof does not cover). */
    json_t *doc =
        json_pack("{s:s, s:{s:s, s:O, s:O, s:O, s:s, s:I}, s:s, s:s, s:o}", "format", RECEIPT_FORMAT, "consent", "id",
                  id, "scope", json_object_get(txj, "scope"), "purpose", json_object_get(txj, "purpose"), "grantee",
                  json_object_get(txj, "grantee"), "expires_at", exp, "granted_block", (json_int_t)p->height,
                  "node_key", node, "how_to_verify", how, "proof", ledger_proof_to_json(p));
    json_decref(txj);
    return doc;
}

json_t *ledger_record_anchor_to_json(const ledger_proof *p, const char *text, size_t text_len,
                                     const uint8_t salt[LEDGER_HASH]) {
    ledger_tx tx;
    if (ledger_tx_decode(p->tx, p->tx_len, &tx, NULL) || tx.kind != LEDGER_TX_ANCHOR) return NULL;
    return json_pack("{s:s, s:s%, s:o, s:o, s:o, s:s}", "format", ANCHOR_FORMAT, "record_text", text, text_len, "salt",
                     hexj(salt, LEDGER_HASH), "commitment", hexj(tx.u.anchor.commitment, LEDGER_HASH), "proof",
                     ledger_proof_to_json(p), "how_to_verify", ANCHOR_HOW);
}

/* Where want (rendered from the proof) and got (the document) first differ,
 * as a dotted path in err->field and a sentence in err->message. */
static void describe_diff(const json_t *want, const json_t *got, char *path, size_t cap, core_error *err) {
    size_t at = strlen(path);
    if (json_is_object(want) && json_is_object(got)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)got, k, v) {
            if (!json_object_get(want, k)) {
                snprintf(path + at, cap - at, "%s%s", at ? "." : "", k);
                core_fail(err, CORE_ERR_CRYPTO, path, "field %s is not part of this document", path);
                return;
            }
        }
        json_object_foreach((json_t *)want, k, v) {
            json_t *g = json_object_get(got, k);
            snprintf(path + at, cap - at, "%s%s", at ? "." : "", k);
            if (!g) {
                core_fail(err, CORE_ERR_CRYPTO, path, "field %s is missing", path);
                return;
            }
            if (!json_equal(v, g)) {
                describe_diff(v, g, path, cap, err);
                return;
            }
            path[at] = 0;
        }
    } else if (json_is_array(want) && json_is_array(got) && json_array_size(want) == json_array_size(got)) {
        for (size_t i = 0; i < json_array_size(want); i++) {
            if (!json_equal(json_array_get(want, i), json_array_get(got, i))) {
                snprintf(path + at, cap - at, "[%zu]", i);
                describe_diff(json_array_get(want, i), json_array_get(got, i), path, cap, err);
                return;
            }
        }
    }
    core_fail(err, CORE_ERR_CRYPTO, path, "field %s differs from what the proven bytes say", path);
}

static const char *member_path(ledger_doc_kind kind) { return kind == LEDGER_DOC_PROOF ? "" : "proof"; }

core_status ledger_document_check(const json_t *doc, const uint8_t *trusted_node, ledger_doc_kind *kind,
                                  ledger_proof *out, core_error *err) {
    if (!json_is_object(doc)) return core_fail(err, CORE_ERR_INVALID, NULL, "the document is not a JSON object");
    const char *format = json_string_value(json_object_get(doc, "format"));
    ledger_doc_kind k;
    if (!json_object_get(doc, "format") && json_object_get(doc, "proof"))
        k = LEDGER_DOC_EXPLORER;
    else if (format && strcmp(format, PROOF_FORMAT) == 0)
        k = LEDGER_DOC_PROOF;
    else if (format && strcmp(format, RECEIPT_FORMAT) == 0)
        k = LEDGER_DOC_CONSENT_RECEIPT;
    else if (format && strcmp(format, ANCHOR_FORMAT) == 0)
        k = LEDGER_DOC_RECORD_ANCHOR;
    else if (format &&
             (strcmp(format, "caresync-consent-receipt-v1") == 0 || strcmp(format, "caresync-record-anchor-v1") == 0 ||
              strcmp(format, "caresync-inclusion-proof-v1") == 0))
        return core_fail(err, CORE_ERR_INVALID, "format",
                         "a v1 document: some of its readable fields were not covered by the proof; download it again");
    else
        return core_fail(err, CORE_ERR_INVALID, "format", "not a CareSync proof, consent receipt or record anchor");
    const json_t *pj = k == LEDGER_DOC_PROOF ? doc : json_object_get(doc, "proof");
    core_status rc = ledger_proof_from_json(pj, out, err);
    if (rc) {
        /* Name the field within the document, not within the proof. */
        if (err && k != LEDGER_DOC_PROOF) {
            char f[sizeof err->field + 16];
            snprintf(f, sizeof f, "%s%s%s", member_path(k), err->field[0] ? "." : "", err->field);
            size_t n = strlen(f) < sizeof err->field ? strlen(f) : sizeof err->field - 1;
            memcpy(err->field, f, n);
            err->field[n] = 0;
        }
        return rc;
    }
    if ((rc = ledger_proof_check(out, trusted_node, err))) return rc;
    json_t *want = NULL;
    ledger_tx tx;
    core_status decoded = ledger_tx_decode(out->tx, out->tx_len, &tx, NULL);
    assert(decoded == CORE_OK); /* ledger_proof_check decoded it */
    (void)decoded;
    switch (k) {
    case LEDGER_DOC_PROOF: want = ledger_proof_to_json(out); break;
    case LEDGER_DOC_EXPLORER: want = json_pack("{s:o}", "proof", ledger_proof_to_json(out)); break;
    case LEDGER_DOC_CONSENT_RECEIPT:
        if (tx.kind != LEDGER_TX_GRANT)
            return core_fail(err, CORE_ERR_CRYPTO, "proof.tx", "a consent receipt must prove a consent grant");
        want = ledger_consent_receipt_to_json(out);
        break;
    case LEDGER_DOC_RECORD_ANCHOR: {
        const json_t *text = json_object_get(doc, "record_text");
        const char *salt_hex = json_string_value(json_object_get(doc, "salt"));
        uint8_t salt[LEDGER_HASH], commitment[LEDGER_HASH];
        if (!json_is_string(text))
            return core_fail(err, CORE_ERR_INVALID, "record_text", "record_text must be the record's text");
        if (!salt_hex || strlen(salt_hex) != 2 * LEDGER_HASH || !cs_crypto_unhex(salt_hex, salt, sizeof salt))
            return core_fail(err, CORE_ERR_INVALID, "salt", "salt must be 32 bytes in hex");
        if (tx.kind != LEDGER_TX_ANCHOR)
            return core_fail(err, CORE_ERR_CRYPTO, "proof.tx", "a record anchor must prove an anchor transaction");
        cs_crypto_sha256_2(commitment, salt, sizeof salt, json_string_value(text), json_string_length(text));
        if (!cs_crypto_equal(commitment, tx.u.anchor.commitment, LEDGER_HASH))
            return core_fail(err, CORE_ERR_CRYPTO, "record_text",
                             "the record text and salt do not match the anchored commitment");
        want = ledger_record_anchor_to_json(out, json_string_value(text), json_string_length(text), salt);
        break;
    }
    }
    if (!want) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    if (!json_equal(want, (json_t *)doc)) {
        char path[256] = "";
        core_error e = {0};
        describe_diff(want, doc, path, sizeof path, &e);
        /* The two copies people read most get the sentences they know. */
        const char *f = e.field;
        if (strncmp(f, "transaction", 11) == 0 || strncmp(f, "proof.transaction", 17) == 0)
            rc = core_fail(err, CORE_ERR_CRYPTO, f, "the readable transaction differs from the proven bytes (%s)", f);
        else if (strncmp(f, "consent", 7) == 0)
            rc = core_fail(err, CORE_ERR_CRYPTO, f, "the receipt's consent (%s) differs from the proven grant", f);
        else
            rc = core_fail(err, CORE_ERR_CRYPTO, f, "%s", e.message);
    }
    json_decref(want);
    if (!rc && kind) *kind = k;
    return rc;
}

/* ---- block headers as the explorer shows them ---- */

static core_status hex_member(const json_t *j, const char *k, uint8_t *out, size_t n, core_error *err) {
    const char *s = json_string_value(json_object_get(j, k));
    if (!s || strlen(s) != 2 * n || !cs_crypto_unhex(s, out, n))
        return core_fail(err, CORE_ERR_INVALID, k, "%s must be %zu bytes in lower-case hex", k, n);
    char back[2 * LEDGER_SIG + 1];
    cs_crypto_hex(out, n, back);
    if (strcmp(back, s) != 0)
        return core_fail(err, CORE_ERR_INVALID, k, "%s must be %zu bytes in lower-case hex", k, n);
    return CORE_OK;
}

core_status ledger_block_from_json(const json_t *j, ledger_block *out, core_error *err) {
    memset(out, 0, sizeof *out);
    static const char *const keys[] = {"height",    "hash", "prev",     "time_ms",  "tx_count",
                                       "tree_size", "root", "proposer", "signature"};
    if (!json_is_object(j)) return core_fail(err, CORE_ERR_INVALID, "tree_head", "a tree head must be a JSON object");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)j, k, v) {
        bool known = false;
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) known |= strcmp(k, keys[i]) == 0;
        if (!known) return core_fail(err, CORE_ERR_INVALID, k, "field %s is not part of a block header", k);
    }
    uint64_t tx_count;
    uint8_t hash[LEDGER_HASH], mine[LEDGER_HASH];
    if (!get_u64(json_object_get(j, "height"), &out->height) ||
        !get_u64(json_object_get(j, "time_ms"), &out->time_ms) || !get_u64(json_object_get(j, "tx_count"), &tx_count) ||
        tx_count > UINT32_MAX || !get_u64(json_object_get(j, "tree_size"), &out->tree_size))
        return core_fail(err, CORE_ERR_INVALID, "tree_head",
                         "height, time_ms, tx_count and tree_size must be whole numbers");
    out->tx_count = (uint32_t)tx_count;
    core_status rc = hex_member(j, "hash", hash, LEDGER_HASH, err);
    if (!rc) rc = hex_member(j, "prev", out->prev, LEDGER_HASH, err);
    if (!rc) rc = hex_member(j, "root", out->root, LEDGER_HASH, err);
    if (!rc) rc = hex_member(j, "proposer", out->proposer, LEDGER_KEY, err);
    if (!rc) rc = hex_member(j, "signature", out->sig, LEDGER_SIG, err);
    if (rc) return rc;
    /* Through the decoder, so a header it would refuse is refused here too. */
    uint8_t enc[LEDGER_BLOCK_BYTES];
    ledger_block_encode(out, enc);
    if ((rc = ledger_block_decode(enc, sizeof enc, out, err))) return rc;
    ledger_block_hash(out, mine);
    if (!cs_crypto_equal(hash, mine, LEDGER_HASH))
        return core_fail(err, CORE_ERR_INVALID, "hash", "hash is not the hash of this header");
    return CORE_OK;
}
