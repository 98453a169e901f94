/* caresync ledger — operator and auditor tools: verify the whole chain
 * (optionally against a pinned genesis and node keys), print an inclusion
 * proof, check proof documents and consistency proofs offline. Those that
 * read the ledger file do so read-only and may run while the service is up. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "crypto/crypto.h"
#include "ledger/ledger.h"

static void usage(FILE *f) {
    fprintf(f, "usage: caresync ledger <task> [options]\n"
               "\n"
               "tasks:\n"
               "  verify                 replay the whole chain: hashes, Merkle roots, signatures,\n"
               "                         nonces, every rule and the supply invariant; exit 1 naming\n"
               "                         the first bad block and transaction. Prints the genesis hash\n"
               "                         and the keys, to pin with --genesis and --node-key\n"
               "  proof TXID             print the inclusion proof of a transaction (JSON) against\n"
               "                         the latest signed tree head\n"
               "  verify-proof FILE...   check proofs, consent receipts or record anchors offline,\n"
               "                         every field of each; '-' reads stdin\n"
               "  verify-consistency FILE\n"
               "                         check a consistency proof as GET /api/ledger/consistency\n"
               "                         serves it (or a bare JSON array of hashes with --old and\n"
               "                         --new); with --old/--new its roots must be those of signed\n"
               "                         tree heads\n"
               "\n"
               "options:\n"
               "  --data-dir DIR         where ledger.db lives (default ./var)\n"
               "  --file PATH            the ledger file itself (overrides --data-dir)\n"
               "  --threads N            signature-checking threads for verify (default 2)\n"
               "  --node-key HEX         the node key you trust (repeat for several): verify requires\n"
               "                         every block to be signed by one; verify-proof and\n"
               "                         verify-consistency require the tree heads to be\n"
               "  --genesis HASH         verify: the genesis block's hash you trust\n"
               "  --old FILE, --new FILE verify-consistency: the tree heads the proof links, as a\n"
               "                         client fetches them (GET /api/ledger, /api/ledger/blocks/H,\n"
               "                         a block from /api/ledger/blocks, or any proof document)\n");
}

#define MAX_PINS LEDGER_MAX_NODES

static void print_keys(const ledger_verify_report *rep) {
    char hex[2 * LEDGER_HASH + 1];
    cs_crypto_hex(rep->genesis, LEDGER_HASH, hex);
    printf("genesis: %s\n", hex);
    cs_crypto_hex(rep->admin, LEDGER_KEY, hex);
    printf("admin key: %s\n", hex);
    printf("node keys (signed blocks):");
    for (size_t i = 0; i < rep->n_proposers; i++) {
        cs_crypto_hex(rep->proposers[i], LEDGER_KEY, hex);
        printf(" %s", hex);
    }
    putchar('\n');
}

static int verify(const char *path, int threads, uint8_t (*nodes)[LEDGER_KEY], size_t n_nodes, const uint8_t *genesis) {
    ledger_verify_report rep;
    core_error err = {0};
    ledger_verify_pins pins = {.nodes = (const uint8_t(*)[LEDGER_KEY])nodes, .n_nodes = n_nodes, .genesis = genesis};
    core_status rc = ledger_verify_file_pinned(path, threads, &pins, &rep, &err);
    if (rc) {
        fprintf(stderr, "caresync ledger verify: FAILED: %s\n", err.message);
        if (rep.bad_height >= 0) fprintf(stderr, "  block: %lld\n", (long long)rep.bad_height);
        if (rep.bad_seq >= 0)
            fprintf(stderr, "  transaction: %lld%s%s\n", (long long)rep.bad_seq, rep.bad_txid[0] ? " id " : "",
                    rep.bad_txid);
        return 1;
    }
    printf("ledger OK: %llu blocks, %llu transactions verified in %.3f s (%.0f tx/s)\n", (unsigned long long)rep.blocks,
           (unsigned long long)rep.txs, rep.seconds, rep.seconds > 0 ? (double)rep.txs / rep.seconds : 0.0);
    print_keys(&rep);
    if (genesis || n_nodes)
        printf("pinned:%s%s\n", genesis ? " genesis" : "", n_nodes ? " node keys" : "");
    else
        printf("note: nothing was pinned, so a ledger re-signed with fresh keys would pass too; compare the\n"
               "genesis hash and keys above with the operator's published ones, or pass --genesis and --node-key\n");
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

static json_t *load_json(const char *file, const char *task) {
    json_error_t jerr;
    json_t *doc = strcmp(file, "-") == 0 ? core_json_loadf(stdin, "stdin", JSON_REJECT_DUPLICATES, &jerr, NULL)
                                         : core_json_load_file(file, JSON_REJECT_DUPLICATES, &jerr, NULL);
    if (!doc) fprintf(stderr, "caresync ledger %s: %s: %s (line %d)\n", task, file, jerr.text, jerr.line);
    return doc;
}

/* One document: the ledger checks every field of it against the proven
 * bytes (ledger_document_check); here we only report. With several files
 * each line is prefixed by the file's name. */
static int verify_one_proof(const char *file, const uint8_t *node, bool named) {
    json_t *doc = load_json(file, "verify-proof");
    if (!doc) return 1;
    ledger_proof *p = malloc(sizeof *p);
    core_error err = {0};
    ledger_doc_kind kind = 0;
    core_status rc = p ? ledger_document_check(doc, node, &kind, p, &err) : CORE_ERR_NOMEM;
    json_decref(doc);
    const char *pre = named ? file : "", *sep = named ? ": " : "";
    if (rc) {
        fprintf(stderr, "caresync ledger verify-proof: %s%sINVALID: %s\n", pre, sep, p ? err.message : "out of memory");
        free(p);
        return 1;
    }
    ledger_tx tx;
    ledger_tx_decode(p->tx, p->tx_len, &tx, NULL);
    json_t *mine = ledger_tx_to_json(&tx);
    char *text = mine ? core_json_dumps(mine, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (text) printf("%s%sproven transaction: %s\n", pre, sep, text);
    free(text);
    json_decref(mine);
    if (kind == LEDGER_DOC_CONSENT_RECEIPT)
        printf("%s%snote: the receipt proves the grant was recorded; whether it was revoked later is not covered by\n"
               "the proof: a revocation is a separate transaction.\n",
               pre, sep);
    if (kind == LEDGER_DOC_RECORD_ANCHOR)
        printf("%s%srecord OK: SHA-256(salt ‖ record_text) is the commitment this transaction anchored\n", pre, sep);
    char txid[2 * LEDGER_HASH + 1], signer[2 * LEDGER_KEY + 1];
    uint8_t id[LEDGER_HASH];
    ledger_tx_id(p->tx, p->tx_len, id);
    cs_crypto_hex(id, LEDGER_HASH, txid);
    cs_crypto_hex(p->head.proposer, LEDGER_KEY, signer);
    printf("%s%sproof OK: transaction %s is leaf %llu of the %llu-leaf log signed at block %llu by node %s%s; it was "
           "recorded in block %llu\n",
           pre, sep, txid, (unsigned long long)p->index, (unsigned long long)p->head.tree_size,
           (unsigned long long)p->head.height, signer,
           node ? " (trusted)" : " (compare this key with the one the operator publishes)",
           (unsigned long long)p->height);
    free(p);
    return 0;
}

static int verify_proofs(char **files, int n, const uint8_t *node) {
    int bad = 0;
    for (int i = 0; i < n; i++) bad |= verify_one_proof(files[i], node, n > 1);
    return bad ? 1 : 0;
}

/* A signed tree head from what a client fetches: GET /api/ledger
 * ({tree_head: block}), GET /api/ledger/blocks/H ({block, …}), one block of
 * GET /api/ledger/blocks, or any proof document ({tree_head: {encoded,
 * block}}, possibly under "proof"). */
static core_status load_head(const char *file, const uint8_t *node, ledger_block *out, core_error *err) {
    json_t *doc = load_json(file, "verify-consistency");
    if (!doc) return core_fail(err, CORE_ERR_INVALID, file, "%s is not a JSON document", file);
    const json_t *t = doc;
    if (json_object_get(doc, "tree_head"))
        t = json_object_get(doc, "tree_head");
    else if (json_object_get(json_object_get(doc, "proof"), "tree_head"))
        t = json_object_get(json_object_get(doc, "proof"), "tree_head");
    else if (json_object_get(doc, "block"))
        t = json_object_get(doc, "block");
    core_status rc;
    const char *enc = json_string_value(json_object_get(t, "encoded"));
    if (enc) {
        uint8_t bytes[LEDGER_BLOCK_BYTES];
        ledger_block shown;
        if (strlen(enc) != 2 * LEDGER_BLOCK_BYTES || !cs_crypto_unhex(enc, bytes, sizeof bytes))
            rc =
                core_fail(err, CORE_ERR_INVALID, "encoded", "%s: tree_head.encoded is not a block header in hex", file);
        else if (!(rc = ledger_block_decode(bytes, sizeof bytes, out, err)) && json_object_size(t) != 2)
            rc = core_fail(err, CORE_ERR_INVALID, "tree_head", "%s: the tree head must be {encoded, block}", file);
        else if (!rc && !(rc = ledger_block_from_json(json_object_get(t, "block"), &shown, err))) {
            uint8_t a[LEDGER_BLOCK_BYTES];
            ledger_block_encode(&shown, a);
            if (memcmp(a, bytes, sizeof a) != 0)
                rc = core_fail(err, CORE_ERR_CRYPTO, "tree_head", "%s: the readable tree head differs from its bytes",
                               file);
        }
    } else {
        rc = ledger_block_from_json(t, out, err);
    }
    json_decref(doc);
    if (!rc && !ledger_block_check_signature(out))
        rc = core_fail(err, CORE_ERR_CRYPTO, "tree_head", "%s: the tree head's signature is invalid", file);
    if (!rc && node && !cs_crypto_equal(node, out->proposer, LEDGER_KEY))
        rc = core_fail(err, CORE_ERR_CRYPTO, "tree_head", "%s: the tree head is not signed by the trusted node key",
                       file);
    return rc;
}

static bool hash_member(const json_t *j, const char *k, uint8_t out[LEDGER_HASH]) {
    const char *s = json_string_value(json_object_get(j, k));
    char back[2 * LEDGER_HASH + 1];
    if (!s || strlen(s) != 2 * LEDGER_HASH || !cs_crypto_unhex(s, out, LEDGER_HASH)) return false;
    cs_crypto_hex(out, LEDGER_HASH, back);
    return strcmp(back, s) == 0;
}

static int verify_consistency(const char *file, const char *old_file, const char *new_file, const uint8_t *node) {
    json_t *doc = load_json(file, "verify-consistency");
    if (!doc) return 1;
    core_error err = {0};
    core_status rc = CORE_OK;
    uint64_t from = 0, to = 0;
    uint8_t r1[LEDGER_HASH], r2[LEDGER_HASH];
    static uint8_t path[LEDGER_PROOF_MAX][LEDGER_HASH];
    size_t n = 0;
    ledger_block oldh, newh;
    bool have_roots = false;
    const json_t *c =
        json_object_get(doc, "consistency") && json_object_size(doc) == 1 ? json_object_get(doc, "consistency") : doc;
    const json_t *arr = json_is_array(c) ? c : json_object_get(c, "proof");
    if (json_is_object(c)) {
        /* Every member is checked below; nothing else may ride along. */
        const json_t *f = json_object_get(c, "from"), *t = json_object_get(c, "to");
        if (json_object_size(c) != 5 || !json_is_integer(f) || !json_is_integer(t) || json_integer_value(f) < 0 ||
            json_integer_value(t) < 0 || !hash_member(c, "from_root", r1) || !hash_member(c, "to_root", r2))
            rc = core_fail(&err, CORE_ERR_INVALID, "consistency",
                           "expected {consistency:{from, to, from_root, to_root, proof}} as the explorer serves it");
        from = (uint64_t)json_integer_value(f);
        to = (uint64_t)json_integer_value(t);
        have_roots = true;
    } else if (!json_is_array(c)) {
        rc = core_fail(&err, CORE_ERR_INVALID, "consistency", "not a consistency proof");
    } else if (!old_file || !new_file) {
        rc = core_fail(&err, CORE_ERR_INVALID, "consistency",
                       "a bare path needs the tree heads it links (--old and --new)");
    }
    if (!rc) {
        if (!json_is_array(arr) || json_array_size(arr) > LEDGER_PROOF_MAX)
            rc = core_fail(&err, CORE_ERR_INVALID, "proof", "proof must be an array of hashes");
        for (size_t i = 0; !rc && i < json_array_size(arr); i++) {
            const char *s = json_string_value(json_array_get(arr, i));
            char back[2 * LEDGER_HASH + 1] = "";
            if (s && strlen(s) == 2 * LEDGER_HASH && cs_crypto_unhex(s, path[i], LEDGER_HASH))
                cs_crypto_hex(path[i], LEDGER_HASH, back);
            if (!s || strcmp(back, s) != 0)
                rc = core_fail(&err, CORE_ERR_INVALID, "proof", "proof element %zu is not a 32-byte hex hash", i);
        }
        n = json_array_size(arr);
    }
    if (!rc && old_file && !(rc = load_head(old_file, node, &oldh, &err))) {
        if (!have_roots) {
            from = oldh.tree_size;
            memcpy(r1, oldh.root, LEDGER_HASH);
        } else if (oldh.tree_size != from || !cs_crypto_equal(oldh.root, r1, LEDGER_HASH))
            rc = core_fail(&err, CORE_ERR_CRYPTO, "from",
                           "the old tree head (block %llu: %llu leaves) is not the proof's from/from_root",
                           (unsigned long long)oldh.height, (unsigned long long)oldh.tree_size);
    }
    if (!rc && new_file && !(rc = load_head(new_file, node, &newh, &err))) {
        if (!have_roots) {
            to = newh.tree_size;
            memcpy(r2, newh.root, LEDGER_HASH);
        } else if (newh.tree_size != to || !cs_crypto_equal(newh.root, r2, LEDGER_HASH))
            rc = core_fail(&err, CORE_ERR_CRYPTO, "to",
                           "the new tree head (block %llu: %llu leaves) is not the proof's to/to_root",
                           (unsigned long long)newh.height, (unsigned long long)newh.tree_size);
    }
    if (!rc && !ledger_merkle_verify_consistency(from, to, r1, r2, (const uint8_t(*)[LEDGER_HASH])path, n))
        rc = core_fail(&err, CORE_ERR_CRYPTO, "proof",
                       "the log of %llu leaves is not proven a prefix of the log of %llu leaves",
                       (unsigned long long)from, (unsigned long long)to);
    json_decref(doc);
    if (rc) {
        fprintf(stderr, "caresync ledger verify-consistency: INVALID: %s\n", err.message);
        return 1;
    }
    char h1[2 * LEDGER_HASH + 1], h2[2 * LEDGER_HASH + 1];
    cs_crypto_hex(r1, LEDGER_HASH, h1);
    cs_crypto_hex(r2, LEDGER_HASH, h2);
    if (from == 0)
        printf("consistency OK: from the empty tree (RFC 6962: the empty tree is a prefix of every tree; the proof is "
               "empty) to the log of %llu leaves (root %s)\n",
               (unsigned long long)to, h2);
    else
        printf("consistency OK: the log of %llu leaves (root %s) is a prefix of the log of %llu leaves (root %s)\n",
               (unsigned long long)from, h1, (unsigned long long)to, h2);
    char k[2 * LEDGER_KEY + 1];
    if (old_file) {
        cs_crypto_hex(oldh.proposer, LEDGER_KEY, k);
        printf("old tree head: block %llu signed by node %s%s\n", (unsigned long long)oldh.height, k,
               node ? " (trusted)" : "");
    }
    if (new_file) {
        cs_crypto_hex(newh.proposer, LEDGER_KEY, k);
        printf("new tree head: block %llu signed by node %s%s\n", (unsigned long long)newh.height, k,
               node ? " (trusted)" : "");
    }
    if (!old_file || !new_file)
        printf("note: the %s not tied to a signed tree head; pass --old/--new with tree heads you hold or fetch\n"
               "(GET /api/ledger, /api/ledger/blocks/H) to prove that the signed logs extend each other\n",
               !old_file && !new_file ? "roots are"
               : !old_file            ? "old root is"
                                      : "new root is");
    return 0;
}

int cli_ledger(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *task = argv[1];
    static const struct option opts[] = {{"data-dir", required_argument, NULL, 'd'},
                                         {"file", required_argument, NULL, 'f'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"node-key", required_argument, NULL, 'k'},
                                         {"genesis", required_argument, NULL, 'g'},
                                         {"old", required_argument, NULL, 'o'},
                                         {"new", required_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    const char *data_dir = "var", *file = NULL, *old_file = NULL, *new_file = NULL;
    uint8_t nodes[MAX_PINS][LEDGER_KEY], genesis[LEDGER_HASH];
    size_t n_nodes = 0;
    bool have_genesis = false;
    int threads = 2, c;
    optind = 1;
    while ((c = getopt_long(argc - 1, argv + 1, "d:f:t:k:g:o:n:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': data_dir = optarg; break;
        case 'f': file = optarg; break;
        case 't': threads = atoi(optarg); break;
        case 'k':
            if (n_nodes == MAX_PINS || strlen(optarg) != 2 * LEDGER_KEY ||
                !cs_crypto_unhex(optarg, nodes[n_nodes], LEDGER_KEY)) {
                fprintf(stderr, "caresync ledger: --node-key must be 64 hex digits (at most %d of them)\n", MAX_PINS);
                return 2;
            }
            n_nodes++;
            break;
        case 'g':
            if (strlen(optarg) != 2 * LEDGER_HASH || !cs_crypto_unhex(optarg, genesis, LEDGER_HASH)) {
                fprintf(stderr, "caresync ledger: --genesis must be 64 hex digits\n");
                return 2;
            }
            have_genesis = true;
            break;
        case 'o': old_file = optarg; break;
        case 'n': new_file = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    char **rest = argv + 1 + optind;
    int nrest = argc - 1 - optind;
    char path[4096];
    if (file)
        snprintf(path, sizeof path, "%s", file);
    else
        snprintf(path, sizeof path, "%s/ledger.db", data_dir);
    core_error err = {0};
    if (cs_crypto_init(&err)) {
        fprintf(stderr, "caresync ledger: %s\n", err.message);
        return 1;
    }
    if (n_nodes > 1 && strcmp(task, "verify") != 0) {
        fprintf(stderr, "caresync ledger %s: give one --node-key (the key that signs the tree heads)\n", task);
        return 2;
    }
    const uint8_t *node = n_nodes ? nodes[0] : NULL;
    if (strcmp(task, "verify") == 0 && nrest == 0)
        return verify(path, threads < 1 ? 1 : threads, nodes, n_nodes, have_genesis ? genesis : NULL);
    if (strcmp(task, "proof") == 0 && nrest == 1) return proof(path, rest[0]);
    if (strcmp(task, "verify-proof") == 0 && nrest >= 1) return verify_proofs(rest, nrest, node);
    if (strcmp(task, "verify-consistency") == 0 && nrest == 1)
        return verify_consistency(rest[0], old_file, new_file, node);
    usage(stderr);
    return 2;
}
