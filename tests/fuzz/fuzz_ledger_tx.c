/* libFuzzer target: the ledger's decoders of untrusted bytes — transactions
 * (submitted by clients, read back from disk), block headers, and inclusion
 * proofs (uploaded for offline checking). The first input byte picks the
 * decoder. Properties checked beyond "no crash": a decoded transaction
 * re-encodes to exactly the input (one encoding per value) and a decoded
 * block header likewise. Run by `make test` for a bounded time. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ledger/ledger.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t mode = data[0] % 3;
    data++;
    size--;
    if (mode == 0) {
        ledger_tx tx;
        if (ledger_tx_decode(data, size, &tx, NULL) == CORE_OK) {
            uint8_t again[LEDGER_TX_MAX];
            size_t n = ledger_tx_encode(&tx, again, sizeof again);
            if (n != size || memcmp(again, data, size) != 0) abort();
            (void)ledger_tx_check_signature(data, size);
            json_t *j = ledger_tx_to_json(&tx);
            if (!j) abort();
            json_decref(j);
        }
    } else if (mode == 1) {
        ledger_block b;
        if (ledger_block_decode(data, size, &b, NULL) == CORE_OK) {
            uint8_t again[LEDGER_BLOCK_BYTES];
            ledger_block_encode(&b, again);
            if (size != LEDGER_BLOCK_BYTES || memcmp(again, data, size) != 0) abort();
            (void)ledger_block_check_signature(&b);
        }
    } else {
        json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
        if (!j) return 0;
        static ledger_proof p;
        if (ledger_proof_from_json(j, &p, NULL) == CORE_OK) (void)ledger_proof_check(&p, NULL, NULL);
        (void)ledger_document_check(j, NULL, NULL, &p, NULL);
        ledger_block b;
        (void)ledger_block_from_json(j, &b, NULL);
        json_decref(j);
    }
    return 0;
}
