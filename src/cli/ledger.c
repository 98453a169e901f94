/* caresync ledger — operator tools on the ledger file: verify the whole
 * chain, print an inclusion proof, check a proof offline. All work on the
 * file read-only and may run while the service is up. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "crypto/crypto.h"
#include "ledger/ledger.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: caresync ledger <task> [options]\n"
            "\n"
            "tasks:\n"
            "  verify                 replay the whole chain: hashes, Merkle roots, signatures,\n"
            "                         nonces, every rule and the supply invariant; exit 1 naming\n"
            "                         the first bad block and transaction\n"
            "  proof TXID             print the inclusion proof of a transaction (JSON) against\n"
            "                         the latest signed tree head\n"
            "  verify-proof FILE      check a proof (or a consent receipt) offline; '-' reads stdin\n"
            "\n"
            "options:\n"
            "  --data-dir DIR         where ledger.db lives (default ./var)\n"
            "  --file PATH            the ledger file itself (overrides --data-dir)\n"
            "  --threads N            signature-checking threads for verify (default 2)\n"
            "  --node-key HEX         verify-proof: require the tree head to be signed by this key\n");
}

static int verify(const char *path, int threads) {
    ledger_verify_report rep;
    core_error err = {0};
    core_status rc = ledger_verify_file(path, threads, &rep, &err);
    if (rc) {
        fprintf(stderr, "caresync ledger verify: FAILED: %s\n", err.message);
        if (rep.bad_height >= 0) fprintf(stderr, "  block: %lld\n", (long long)rep.bad_height);
        if (rep.bad_seq >= 0) fprintf(stderr, "  transaction: %lld%s%s\n", (long long)rep.bad_seq,
                                      rep.bad_txid[0] ? " id " : "", rep.bad_txid);
        return 1;
    }
    printf("ledger OK: %llu blocks, %llu transactions verified in %.3f s (%.0f tx/s)\n", (unsigned long long)rep.blocks,
           (unsigned long long)rep.txs, rep.seconds, rep.seconds > 0 ? (double)rep.txs / rep.seconds : 0.0);
    return 0;
}

static int proof(const char *path, const char *txid_hex) {
    uint8_t txid[LEDGER_HASH];
    if (!cs_crypto_unhex(txid_hex, txid, sizeof txid)) {
        fprintf(stderr, "caresync ledger proof: TXID must be 64 hex digits\n");
        return 2;
    }
    ledger_proof *p = malloc(sizeof *p);
    core_error err = {0};
    if (!p || ledger_prove_file(path, txid, p, &err)) {
        fprintf(stderr, "caresync ledger proof: %s\n", p ? err.message : "out of memory");
        free(p);
        return 1;
    }
    json_t *j = ledger_proof_to_json(p);
    free(p);
    if (!j || json_dumpf(j, stdout, JSON_INDENT(2)) != 0) {
        json_decref(j);
        return 1;
    }
    putchar('\n');
    json_decref(j);
    return 0;
}

/* A record anchor document also carries the record's text and salt: the
 * commitment they make must be the one the (proven) anchor transaction holds. */
static core_status check_record_anchor(const json_t *doc, const ledger_proof *p, core_error *err) {
    const char *text = json_string_value(json_object_get(doc, "record_text"));
    const char *salt_hex = json_string_value(json_object_get(doc, "salt"));
    uint8_t salt[32], commitment[32];
    ledger_tx tx;
    if (!text || !salt_hex || !cs_crypto_unhex(salt_hex, salt, sizeof salt))
        return core_fail(err, CORE_ERR_INVALID, "salt", "record_text and a 32-byte hex salt are required");
    if (ledger_tx_decode(p->tx, p->tx_len, &tx, err)) return CORE_ERR_INVALID;
    if (tx.kind != LEDGER_TX_ANCHOR) return core_fail(err, CORE_ERR_INVALID, "tx", "the proven transaction is not an anchor");
    cs_crypto_sha256_2(commitment, salt, sizeof salt, text, json_string_length(json_object_get(doc, "record_text")));
    if (!cs_crypto_equal(commitment, tx.u.anchor.commitment, 32))
        return core_fail(err, CORE_ERR_CRYPTO, "record_text", "the record text and salt do not match the anchored commitment");
    return CORE_OK;
}

/* The human-readable copies in a document (proof.transaction, and a consent
 * receipt's consent block) must say what the proven bytes say: a reader
 * reads those, so an edited copy must not pass as "OK". */
static core_status check_readable(const json_t *doc, const json_t *pj, const ledger_proof *p, core_error *err) {
    ledger_tx tx;
    if (ledger_tx_decode(p->tx, p->tx_len, &tx, err)) return CORE_ERR_INVALID;
    json_t *mine = ledger_tx_to_json(&tx);
    if (!mine) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    core_status rc = CORE_OK;
    const json_t *shown = json_object_get(pj, "transaction");
    if (shown && !json_equal(mine, (json_t *)shown))
        rc = core_fail(err, CORE_ERR_CRYPTO, "transaction", "the readable transaction differs from the proven bytes");
    const json_t *consent = json_object_get(doc, "consent");
    if (!rc && consent) {
        char id[2 * LEDGER_HASH + 1], exp[32];
        uint8_t txid[LEDGER_HASH];
        ledger_tx_id(p->tx, p->tx_len, txid);
        cs_crypto_hex(txid, LEDGER_HASH, id);
        core_format_time((int64_t)tx.u.grant.expires, exp);
        const char *cid = json_string_value(json_object_get(consent, "id"));
        const char *cexp = json_string_value(json_object_get(consent, "expires_at"));
        if (tx.kind != LEDGER_TX_GRANT || !cid || strcmp(cid, id) != 0 ||
            !json_equal(json_object_get(consent, "scope"), json_object_get(mine, "scope")) ||
            !json_equal(json_object_get(consent, "purpose"), json_object_get(mine, "purpose")) ||
            !json_equal(json_object_get(consent, "grantee"), json_object_get(mine, "grantee")) || !cexp ||
            strcmp(cexp, exp) != 0)
            rc = core_fail(err, CORE_ERR_CRYPTO, "consent",
                           "the receipt's consent (id, scope, purpose, grantee or expiry) differs from the proven grant");
    }
    if (!rc) {
        char *text = json_dumps(mine, JSON_COMPACT | JSON_SORT_KEYS);
        if (text) printf("proven transaction: %s\n", text);
        free(text);
        if (consent)
            printf("note: the receipt proves the grant was recorded; its status (active/revoked) at download\n"
                   "time is not covered by the proof: a revocation is a separate transaction.\n");
    }
    json_decref(mine);
    return rc;
}

/* Accept a bare proof or a document embedding one under "proof" (a
 * consent receipt). */
static int verify_proof(const char *file, const char *node_hex) {
    uint8_t node[LEDGER_KEY];
    if (node_hex && !cs_crypto_unhex(node_hex, node, sizeof node)) {
        fprintf(stderr, "caresync ledger verify-proof: --node-key must be 64 hex digits\n");
        return 2;
    }
    json_error_t jerr;
    json_t *doc = strcmp(file, "-") == 0 ? json_loadf(stdin, JSON_REJECT_DUPLICATES, &jerr)
                                         : json_load_file(file, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        fprintf(stderr, "caresync ledger verify-proof: %s: %s (line %d)\n", file, jerr.text, jerr.line);
        return 1;
    }
    json_t *pj = json_object_get(doc, "proof") ? json_object_get(doc, "proof") : doc;
    ledger_proof *p = malloc(sizeof *p);
    core_error err = {0};
    core_status rc = p ? ledger_proof_from_json(pj, p, &err) : CORE_ERR_NOMEM;
    if (!rc) rc = ledger_proof_check(p, node_hex ? node : NULL, &err);
    if (!rc) rc = check_readable(doc, pj, p, &err);
    bool anchored = false;
    if (!rc && json_object_get(doc, "record_text")) {
        rc = check_record_anchor(doc, p, &err);
        anchored = rc == CORE_OK;
    }
    json_decref(doc);
    if (rc) {
        fprintf(stderr, "caresync ledger verify-proof: INVALID: %s\n", p ? err.message : "out of memory");
        free(p);
        return 1;
    }
    char txid[2 * LEDGER_HASH + 1], signer[2 * LEDGER_KEY + 1];
    uint8_t id[LEDGER_HASH];
    ledger_tx_id(p->tx, p->tx_len, id);
    cs_crypto_hex(id, LEDGER_HASH, txid);
    cs_crypto_hex(p->head.proposer, LEDGER_KEY, signer);
    if (anchored) printf("record OK: SHA-256(salt ‖ record_text) is the commitment this transaction anchored\n");
    printf("proof OK: transaction %s is leaf %llu of the %llu-leaf log signed at block %llu by node %s%s\n", txid,
           (unsigned long long)p->index, (unsigned long long)p->head.tree_size, (unsigned long long)p->head.height,
           signer, node_hex ? " (trusted)" : " (compare this key with the one the operator publishes)");
    free(p);
    return 0;
}

int cli_ledger(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *task = argv[1];
    static const struct option opts[] = {{"data-dir", required_argument, NULL, 'd'}, {"file", required_argument, NULL, 'f'},
                                         {"threads", required_argument, NULL, 't'}, {"node-key", required_argument, NULL, 'k'},
                                         {"help", no_argument, NULL, 'h'}, {0}};
    const char *data_dir = "var", *file = NULL, *node_key = NULL;
    int threads = 2, c;
    optind = 1;
    while ((c = getopt_long(argc - 1, argv + 1, "d:f:t:k:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': data_dir = optarg; break;
        case 'f': file = optarg; break;
        case 't': threads = atoi(optarg); break;
        case 'k': node_key = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    char **rest = argv + 1 + optind;
    int nrest = argc - 1 - optind;
    char path[4096];
    if (file) snprintf(path, sizeof path, "%s", file);
    else snprintf(path, sizeof path, "%s/ledger.db", data_dir);
    core_error err = {0};
    if (cs_crypto_init(&err)) {
        fprintf(stderr, "caresync ledger: %s\n", err.message);
        return 1;
    }
    if (strcmp(task, "verify") == 0 && nrest == 0) return verify(path, threads < 1 ? 1 : threads);
    if (strcmp(task, "proof") == 0 && nrest == 1) return proof(path, rest[0]);
    if (strcmp(task, "verify-proof") == 0 && nrest == 1) return verify_proof(rest[0], node_key);
    usage(stderr);
    return 2;
}
