/* api — the public ledger explorer (no login): tree head, blocks,
 * transactions, proofs, organisations; and the admin's organisation
 * registration. Everything shown here is what the ledger itself holds —
 * keys, commitments, amounts, public organisation names — never a person's
 * name, record or location. */
#include "api/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"

#define BLOCK_TX_PAGE 100

static bool parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s || strlen(s) > 19) return false;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9') return false;
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno || v > (unsigned long long)INT64_MAX) return false;
    *out = v;
    return true;
}

void api_ledger_summary(http_request *rq, void *ctx) {
    api_context *c = ctx;
    ledger_block head;
    ledger_totals t;
    core_error err = {0};
    if (ledger_head(c->led, &head, &err) || ledger_get_totals(c->led, &t, &err)) {
        api_fail(rq, &err, NULL);
        return;
    }
    http_respond_json(rq, 200,
                      json_pack("{s:o, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I}}", "tree_head",
                                ledger_block_to_json(&head), "node_key", api_hex(ledger_node_key(c->led), 32), "totals",
                                "minted", (json_int_t)t.minted, "burned", (json_int_t)t.burned, "supply",
                                (json_int_t)(t.minted - t.burned), "escrowed", (json_int_t)t.escrowed, "wallets",
                                (json_int_t)t.wallets, "consents_active", (json_int_t)t.consents_active));
}

/* Newest first: ?before=H (exclusive) &limit=N (1..50, default 20). */
void api_ledger_blocks(http_request *rq, void *ctx) {
    api_context *c = ctx;
    ledger_block head;
    core_error err = {0};
    if (ledger_head(c->led, &head, &err)) {
        api_fail(rq, &err, NULL);
        return;
    }
    uint64_t before = head.height + 1, limit = 20;
    const char *b = http_query(rq, "before"), *l = http_query(rq, "limit");
    if ((b && !parse_u64(b, &before)) || (l && (!parse_u64(l, &limit) || limit < 1 || limit > 50))) {
        http_respond_error(rq, 422, "validation_failed", b && !parse_u64(b, &before) ? "before" : "limit",
                           "before must be a block height and limit between 1 and 50");
        return;
    }
    if (before > head.height + 1) before = head.height + 1;
    json_t *list = json_array();
    for (uint64_t h = before; h > 0 && json_array_size(list) < limit; h--) {
        ledger_block blk;
        if (ledger_get_block(c->led, h - 1, &blk, &err)) {
            json_decref(list);
            api_fail(rq, &err, NULL);
            return;
        }
        json_array_append_new(list, ledger_block_to_json(&blk));
    }
    http_respond_json(rq, 200, json_pack("{s:o, s:I}", "blocks", list, "height", (json_int_t)head.height));
}

static json_t *tx_json(const uint8_t *buf, size_t len, uint64_t seq, uint64_t height) {
    ledger_tx tx;
    if (ledger_tx_decode(buf, len, &tx, NULL)) return NULL;
    json_t *j = ledger_tx_to_json(&tx);
    uint8_t id[32];
    ledger_tx_id(buf, len, id);
    if (j) {
        json_object_set_new(j, "txid", api_hex(id, 32));
        json_object_set_new(j, "leaf_index", json_integer((json_int_t)seq));
        json_object_set_new(j, "block", json_integer((json_int_t)height));
    }
    return j;
}

/* One block with its transactions (?offset=K pages through big blocks). */
void api_ledger_block(http_request *rq, void *ctx) {
    api_context *c = ctx;
    uint64_t h, offset = 0;
    core_error err = {0};
    ledger_block blk;
    if (!parse_u64(http_param(rq, "height"), &h)) {
        http_respond_error(rq, 404, "not_found", NULL, "no such block");
        return;
    }
    const char *o = http_query(rq, "offset");
    if (o && !parse_u64(o, &offset)) {
        http_respond_error(rq, 422, "validation_failed", "offset", "offset must be a whole number");
        return;
    }
    if (ledger_get_block(c->led, h, &blk, &err)) {
        api_fail(rq, &err, NULL);
        return;
    }
    json_t *txs = json_array();
    uint64_t first = blk.tree_size - blk.tx_count;
    for (uint64_t i = offset; i < blk.tx_count && i < offset + BLOCK_TX_PAGE; i++) {
        uint8_t *buf;
        size_t len;
        if (ledger_get_tx_at(c->led, first + i, &buf, &len, NULL, &err)) {
            json_decref(txs);
            api_fail(rq, &err, NULL);
            return;
        }
        json_t *j = tx_json(buf, len, first + i, h);
        free(buf);
        if (j) json_array_append_new(txs, j);
    }
    http_respond_json(rq, 200,
                      json_pack("{s:o, s:o, s:I}", "block", ledger_block_to_json(&blk), "transactions", txs, "offset",
                                (json_int_t)offset));
}

static bool txid_param(http_request *rq, uint8_t id[32]) {
    const char *hex = http_param(rq, "txid");
    if (hex && cs_crypto_unhex(hex, id, 32)) return true;
    http_respond_error(rq, 404, "not_found", NULL, "no such transaction");
    return false;
}

void api_ledger_tx(http_request *rq, void *ctx) {
    api_context *c = ctx;
    uint8_t id[32], *buf;
    size_t len;
    uint64_t seq, height;
    core_error err = {0};
    if (!txid_param(rq, id)) return;
    if (ledger_get_tx(c->led, id, &buf, &len, &seq, &height, &err)) {
        api_fail(rq, &err, NULL);
        return;
    }
    json_t *j = tx_json(buf, len, seq, height);
    free(buf);
    if (!j)
        http_respond_error(rq, 500, "internal", NULL, "stored transaction does not decode; run caresync ledger verify");
    else
        http_respond_json(rq, 200, json_pack("{s:o}", "transaction", j));
}

void api_ledger_proof(http_request *rq, void *ctx) {
    api_context *c = ctx;
    uint8_t id[32];
    core_error err = {0};
    if (!txid_param(rq, id)) return;
    ledger_proof *p = malloc(sizeof *p);
    if (!p) {
        core_fail(&err, CORE_ERR_NOMEM, NULL, "out of memory");
        api_fail(rq, &err, NULL);
        return;
    }
    if (ledger_prove(c->led, id, p, &err))
        api_fail(rq, &err, NULL);
    else
        http_respond_json(rq, 200, json_pack("{s:o}", "proof", ledger_proof_to_json(p)));
    free(p);
}

/* ?from=M&to=N (tree sizes; to defaults to the latest). */
void api_ledger_consistency(http_request *rq, void *ctx) {
    api_context *c = ctx;
    ledger_block head;
    core_error err = {0};
    if (ledger_head(c->led, &head, &err)) {
        api_fail(rq, &err, NULL);
        return;
    }
    uint64_t from = 0, to = head.tree_size;
    const char *f = http_query(rq, "from"), *t = http_query(rq, "to");
    /* from=0 is allowed (RFC 6962: an empty proof; the empty tree is a
     * prefix of every tree). */
    if (!parse_u64(f, &from)) {
        http_respond_error(rq, 422, "validation_failed", "from", "from must be a tree size");
        return;
    }
    if (t && !parse_u64(t, &to)) {
        http_respond_error(rq, 422, "validation_failed", "to", "to must be a tree size");
        return;
    }
    uint8_t r1[32], r2[32], proof[LEDGER_PROOF_MAX][32];
    size_t n;
    if (ledger_prove_consistency(c->led, from, to, r1, r2, proof, &n, &err)) {
        if (err.code == CORE_ERR_INVALID && !err.field[0]) snprintf(err.field, sizeof err.field, "from");
        api_fail(rq, &err, NULL);
        return;
    }
    json_t *p = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(p, api_hex(proof[i], 32));
    http_respond_json(rq, 200,
                      json_pack("{s:{s:I, s:I, s:o, s:o, s:o}}", "consistency", "from", (json_int_t)from, "to",
                                (json_int_t)to, "from_root", api_hex(r1, 32), "to_root", api_hex(r2, 32), "proof", p));
}

static void add_org(void *ud, const uint8_t pk[32], const char *name, uint64_t height) {
    json_array_append_new(
        ud, json_pack("{s:o, s:s, s:I}", "key", api_hex(pk, 32), "name", name, "registered_block", (json_int_t)height));
}

void api_ledger_orgs(http_request *rq, void *ctx) {
    api_context *c = ctx;
    json_t *list = json_array();
    core_error err = {0};
    if (ledger_list_orgs(c->led, add_org, list, &err)) {
        json_decref(list);
        api_fail(rq, &err, NULL);
        return;
    }
    http_respond_json(rq, 200, json_pack("{s:o}", "organisations", list));
}

/* Admin: register an organisation (its key from `caresync keygen`). */
void api_admin_orgs_create(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    bool admin = sess.role == ACCOUNTS_ADMIN;
    json_t *body = admin ? http_json_body(rq) : NULL; /* responds itself when the body is bad */
    if (!admin) {
        http_respond_error(rq, 403, "forbidden", NULL, "only administrators can register organisations");
    } else if (body) {
        ledger_tx tx = {.kind = LEDGER_TX_REGISTER_ORG};
        const char *name = api_str(body, "name"), *key = api_str(body, "public_key");
        if (!key || !cs_crypto_unhex(key, tx.u.org.org, 32)) {
            http_respond_error(rq, 422, "validation_failed", "public_key",
                               "public_key must be the organisation's key (64 hex digits, from caresync keygen)");
        } else if (!name || strlen(name) < 1 || strlen(name) > LEDGER_NAME_MAX || name[0] == ' ' ||
                   name[strlen(name) - 1] == ' ' ||
                   strspn(name, " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~") != strlen(name)) {
            http_respond_error(rq, 422, "validation_failed", "name",
                               "name must be 1-64 printable ASCII characters without leading or trailing spaces");
        } else {
            strcpy(tx.u.org.name, name);
            core_error err = {0};
            ledger_receipt r;
            if (ledger_sign_submit(c->led, &tx, c->admin_sk, &r, &err)) {
                api_ledger_fail(rq, &err);
            } else {
                http_respond_json(rq, 201,
                                  json_pack("{s:{s:s, s:s, s:I}, s:{s:o, s:I}}", "organisation", "key", key, "name",
                                            name, "registered_block", (json_int_t)r.height, "receipt", "txid",
                                            api_hex(r.txid, 32), "block", (json_int_t)r.height));
            }
        }
    }
    accounts_session_wipe(&sess);
}
