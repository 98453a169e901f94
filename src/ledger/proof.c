/* ledger — inclusion proofs as self-contained JSON documents.
 *
 * A proof carries the exact transaction bytes, its leaf index, the audit
 * path and the exact bytes of the block header it leads to (the signed tree
 * head). Everything needed to check it offline is inside; the human-readable
 * fields beside the hex are for people and are ignored by the checker,
 * which trusts nothing but the bytes. */
#include "ledger/internal.h"

#include <string.h>

#include "crypto/crypto.h"

#define PROOF_FORMAT "caresync-inclusion-proof-v1"

static json_t *hexj(const uint8_t *p, size_t n) {
    char s[2 * LEDGER_TX_MAX + 1];
    cs_crypto_hex(p, n, s);
    return json_string(s);
}

json_t *ledger_proof_to_json(const ledger_proof *p) {
    uint8_t txid[LEDGER_HASH], head[LEDGER_BLOCK_BYTES];
    ledger_tx_id(p->tx, p->tx_len, txid);
    ledger_block_encode(&p->head, head);
    json_t *path = json_array();
    for (size_t i = 0; path && i < p->path_len; i++) json_array_append_new(path, hexj(p->path[i], LEDGER_HASH));
    ledger_tx tx;
    json_t *txj = ledger_tx_decode(p->tx, p->tx_len, &tx, NULL) == CORE_OK ? ledger_tx_to_json(&tx) : json_null();
    return json_pack("{s:s, s:o, s:o, s:o, s:I, s:I, s:I, s:o, s:{s:o, s:o}}", "format", PROOF_FORMAT, "txid",
                     hexj(txid, LEDGER_HASH), "tx", hexj(p->tx, p->tx_len), "transaction", txj, "leaf_index",
                     (json_int_t)p->index, "block_height", (json_int_t)p->height, "tree_size",
                     (json_int_t)p->head.tree_size, "path", path, "tree_head", "encoded",
                     hexj(head, LEDGER_BLOCK_BYTES), "block", ledger_block_to_json(&p->head));
}

static bool unhex_var(const char *s, uint8_t *out, size_t cap, size_t *len) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n % 2 || n / 2 > cap) return false;
    *len = n / 2;
    return cs_crypto_unhex(s, out, n / 2);
}

core_status ledger_proof_from_json(const json_t *j, ledger_proof *out, core_error *err) {
    memset(out, 0, sizeof *out);
    const char *format = json_string_value(json_object_get(j, "format"));
    if (!format || strcmp(format, PROOF_FORMAT) != 0)
        return core_fail(err, CORE_ERR_INVALID, "format", "not a %s document", PROOF_FORMAT);
    if (!unhex_var(json_string_value(json_object_get(j, "tx")), out->tx, sizeof out->tx, &out->tx_len))
        return core_fail(err, CORE_ERR_INVALID, "tx", "tx must be the transaction's bytes in hex");
    json_t *idx = json_object_get(j, "leaf_index"), *h = json_object_get(j, "block_height");
    if (!json_is_integer(idx) || json_integer_value(idx) < 0)
        return core_fail(err, CORE_ERR_INVALID, "leaf_index", "leaf_index must be a non-negative integer");
    out->index = (uint64_t)json_integer_value(idx);
    out->height = json_is_integer(h) && json_integer_value(h) >= 0 ? (uint64_t)json_integer_value(h) : 0;
    json_t *path = json_object_get(j, "path");
    if (!json_is_array(path) || json_array_size(path) > LEDGER_PROOF_MAX)
        return core_fail(err, CORE_ERR_INVALID, "path", "path must be an array of hashes");
    for (size_t i = 0; i < json_array_size(path); i++)
        if (!cs_crypto_unhex(json_string_value(json_array_get(path, i)) ? json_string_value(json_array_get(path, i)) : "",
                             out->path[i], LEDGER_HASH))
            return core_fail(err, CORE_ERR_INVALID, "path", "path element %zu is not a 32-byte hex hash", i);
    out->path_len = json_array_size(path);
    uint8_t head[LEDGER_BLOCK_BYTES];
    const char *enc = json_string_value(json_object_get(json_object_get(j, "tree_head"), "encoded"));
    if (!enc || !cs_crypto_unhex(enc, head, sizeof head))
        return core_fail(err, CORE_ERR_INVALID, "tree_head", "tree_head.encoded must be a block header in hex");
    return ledger_block_decode(head, sizeof head, &out->head, err);
}

core_status ledger_proof_check(const ledger_proof *p, const uint8_t *trusted_node, core_error *err) {
    ledger_tx tx;
    core_status rc = ledger_tx_decode(p->tx, p->tx_len, &tx, err);
    if (rc) return rc;
    if (!ledger_tx_check_signature(p->tx, p->tx_len))
        return core_fail(err, CORE_ERR_CRYPTO, "tx", "the transaction's signature is invalid");
    if (!ledger_block_check_signature(&p->head))
        return core_fail(err, CORE_ERR_CRYPTO, "tree_head", "the tree head's signature is invalid");
    if (trusted_node && !cs_crypto_equal(trusted_node, p->head.proposer, LEDGER_KEY))
        return core_fail(err, CORE_ERR_CRYPTO, "tree_head", "the tree head is not signed by the trusted node key");
    uint8_t leaf[LEDGER_HASH];
    ledger_tx_id(p->tx, p->tx_len, leaf);
    if (!ledger_merkle_verify_inclusion(p->index, p->head.tree_size, leaf, (const uint8_t(*)[LEDGER_HASH])p->path,
                                        p->path_len, p->head.root))
        return core_fail(err, CORE_ERR_CRYPTO, "path", "the audit path does not lead to the tree head's root");
    return CORE_OK;
}
