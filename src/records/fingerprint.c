/* records — fingerprints of entries, for anchoring on the ledger.
 *
 * An anchor proves that an entry existed, exactly as it is now, at the time
 * of a block, while revealing nothing: the ledger holds only
 *     commitment = SHA-256(salt ‖ text)
 * where text is the entry's canonical JSON (keys sorted, compact; the same
 * fields GET /api/records/{id} shows) and salt is derived from the account's
 * data key and that text, so only the owner can recompute it, and a guess of
 * the text (a common diagnosis, say) cannot be tested against the ledger.
 * The owner may later hand text + salt to anyone to let them check. */
#include "records/records.h"

#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"

core_status records_fingerprint_get(store *st, const accounts_session *sess, const char *id, records_fingerprint *out,
                                    core_error *err) {
    memset(out, 0, sizeof *out);
    json_t *rec = NULL;
    core_status rc = records_get(st, sess, id, &rec, err);
    if (rc) return rc;
    out->text = core_json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(rec);
    if (!out->text) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    out->len = strlen(out->text);
    /* salt = BLAKE2b_ctx(data_key ‖ text): secret without the data key. */
    size_t n = CS_CRYPTO_KEY_BYTES + out->len;
    uint8_t *buf = malloc(n);
    if (!buf) {
        records_fingerprint_free(out);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    memcpy(buf, sess->data_key, CS_CRYPTO_KEY_BYTES);
    memcpy(buf + CS_CRYPTO_KEY_BYTES, out->text, out->len);
    cs_crypto_hash(out->salt, "caresync-anchor-salt-v1", buf, n);
    cs_crypto_wipe(buf, n);
    free(buf);
    cs_crypto_sha256_2(out->commitment, out->salt, sizeof out->salt, out->text, out->len);
    return CORE_OK;
}

void records_fingerprint_free(records_fingerprint *fp) {
    if (fp->text) {
        cs_crypto_wipe(fp->text, fp->len);
        free(fp->text);
    }
    memset(fp, 0, sizeof *fp);
}
