/* api — anchoring a private record on the ledger. The ledger receives only
 * a salted commitment (records/fingerprint.c); the proof document given
 * back to the owner holds the record text and salt, so whoever the owner
 * chooses to show it to can check that this exact entry existed, unaltered,
 * when its block was sealed. */
#include "api/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "records/records.h"

/* POST /api/records/{id}/anchor → 201 {anchor:{record_id, commitment, receipt}};
 * 409 ledger_conflict when this version is already anchored. */
void api_records_anchor(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    uint8_t pk[32], sk[64];
    records_fingerprint fp;
    core_error err = {0};
    if (api_require_person(rq, &sess)) {
        uint8_t txid[32];
        core_status got = records_fingerprint_get(c->st, &sess, http_param(rq, "id"), &fp, &err);
        core_status found = got ? CORE_ERR_NOT_FOUND : ledger_find_commitment(c->led, fp.commitment, txid, &err);
        if (got) {
            api_fail(rq, &err, NULL);
        } else if (found != CORE_ERR_NOT_FOUND) {
            /* Checked before api_wallet, which may register the wallet (a
             * first anchor): an anchor the ledger would refuse must not
             * leave a registration behind. */
            if (found == CORE_OK)
                http_respond_error(rq, 409, "ledger_conflict", "commitment",
                                   "this version of the record is already anchored");
            else
                api_fail(rq, &err, NULL);
            records_fingerprint_free(&fp);
        } else {
            if (api_wallet(rq, c, &sess, pk, sk)) {
                ledger_tx tx = {.kind = LEDGER_TX_ANCHOR};
                memcpy(tx.u.anchor.commitment, fp.commitment, 32);
                ledger_receipt r;
                if (ledger_sign_submit(c->led, &tx, sk, &r, &err)) {
                    if (err.code == CORE_ERR_CONFLICT && strcmp(err.field, "commitment") == 0)
                        http_respond_error(rq, 409, "ledger_conflict", "commitment",
                                           "this version of the record is already anchored");
                    else
                        api_ledger_fail(rq, &err);
                } else {
                    http_respond_json(rq, 201,
                                      json_pack("{s:{s:s, s:o, s:{s:o, s:I, s:I}}}", "anchor", "record_id",
                                                http_param(rq, "id"), "commitment", api_hex(fp.commitment, 32),
                                                "receipt", "txid", api_hex(r.txid, 32), "block", (json_int_t)r.height,
                                                "leaf_index", (json_int_t)r.seq));
                }
                cs_crypto_wipe(sk, sizeof sk);
            }
            records_fingerprint_free(&fp);
        }
    }
    accounts_session_wipe(&sess);
}

/* GET /api/records/{id}/anchor → the anchor proof of the record as it is
 * now: {format, record_text, salt, commitment, proof}; 404 when this version
 * was never anchored (e.g. edited since). */
void api_records_anchor_proof(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, false)) return;
    records_fingerprint fp;
    core_error err = {0};
    if (api_require_person(rq, &sess)) {
        if (records_fingerprint_get(c->st, &sess, http_param(rq, "id"), &fp, &err)) {
            api_fail(rq, &err, NULL);
        } else {
            uint8_t txid[32];
            ledger_proof *p = malloc(sizeof *p);
            core_status rc = p ? ledger_find_commitment(c->led, fp.commitment, txid, &err) : CORE_ERR_NOMEM;
            if (rc == CORE_ERR_NOT_FOUND) {
                http_respond_error(rq, 404, "not_found", NULL, "this version of the record has not been anchored");
            } else if (rc || (rc = ledger_prove(c->led, txid, p, &err))) {
                if (!p) core_fail(&err, CORE_ERR_NOMEM, NULL, "out of memory");
                api_fail(rq, &err, NULL);
            } else {
                char disp[96];
                snprintf(disp, sizeof disp, "attachment; filename=\"record-anchor-%.12s.json\"", http_param(rq, "id"));
                http_add_header(rq, "Content-Disposition", disp);
                json_t *doc = ledger_record_anchor_to_json(p, fp.text, fp.len, fp.salt);
                if (doc)
                    http_respond_json(rq, 200, doc);
                else
                    http_respond_error(rq, 500, "internal", NULL, "the anchor proof could not be built");
            }
            free(p);
            records_fingerprint_free(&fp);
        }
    }
    accounts_session_wipe(&sess);
}
