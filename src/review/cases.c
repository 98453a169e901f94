/* review — cases: request, queue, opening, answer, return, withdrawal and
 * the timeout sweep (see review.h for the case copy and the trust model).
 *
 * Order of effects. A request is checked (offer, photo, extras, balance)
 * before anything happens; then the escrow goes to the ledger (signed by
 * the person's wallet) and only once it is committed is the case row
 * written. If that write fails the escrow is refunded at once, so a refusal
 * leaves neither a row nor locked tokens. Closing a case (settle or refund)
 * submits the ledger transaction first and then updates the row; a
 * conflict from the ledger ("already closed") means an earlier attempt got
 * as far as the ledger, and the row is brought in line with it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "crypto/crypto.h"
#include "review/internal.h"

static int64_t now_of(const review *r) { return r->opt.now ? r->opt.now() : core_now(); }

static bool in_list(const char *v, const char *const *list) {
    for (; *list; list++)
        if (!strcmp(v, *list)) return true;
    return false;
}

static const char *const age_bands[] = {"0-17", "18-29", "30-44", "45-59", "60-74", "75+", NULL};
static const char *const sexes[] = {"female", "male", "other", NULL};
static const char *const sites[] = {"head_neck", "trunk", "arm", "hand", "leg", "foot", "genital", "other", NULL};
static const char *const durations[] = {"days", "weeks", "months", "years", NULL};
static const char *const urgencies[] = {"self_care", "pharmacist_or_gp", "see_doctor_soon", "urgent", NULL};

static core_status need_cases(const review *r, core_error *err) {
    if (!r->opt.node_sk) return core_fail(err, CORE_ERR_INVALID, NULL, "review cases need the node key");
    return CORE_OK;
}

/* The case copy: exactly the photo, the result text and the chosen extras. */
static core_status build_case(const review_request_in *in, char **text, core_error *err) {
    const review_share *s = &in->share;
    struct {
        const char *name, *value;
        const char *const *list;
    } extras[] = {{"age_band", s->age_band, age_bands},
                  {"sex", s->sex, sexes},
                  {"body_site", s->body_site, sites},
                  {"duration", s->duration, durations},
                  {"note", s->note, NULL}};
    if (!in->jpeg || in->jpeg_len < 4 || in->jpeg[0] != 0xFF || in->jpeg[1] != 0xD8)
        return core_fail(err, CORE_ERR_INVALID, "photo", "the record has no photo to share");
    if (!in->title || !in->details)
        return core_fail(err, CORE_ERR_INVALID, "result", "the record holds no screening result");
    json_t *share = json_object();
    if (!share) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    for (size_t i = 0; i < sizeof extras / sizeof extras[0]; i++) {
        const char *v = extras[i].value;
        if (!v) continue;
        bool ok = extras[i].list ? in_list(v, extras[i].list) : (strlen(v) <= REVIEW_NOTE_MAX && v[0]);
        if (!ok) {
            json_decref(share);
            return core_fail(err, CORE_ERR_INVALID, extras[i].name, "%s is not one of the allowed values",
                             extras[i].name);
        }
        json_object_set_new(share, extras[i].name, json_string(v));
    }
    char *b64 = malloc(cs_crypto_b64_len(in->jpeg_len));
    if (!b64) {
        json_decref(share);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    cs_crypto_b64(in->jpeg, in->jpeg_len, b64);
    json_t *c = json_pack("{s:s, s:{s:s, s:s}, s:o}", "photo_jpeg_base64url", b64, "result", "title", in->title,
                          "details", in->details, "share", share);
    free(b64);
    *text = c ? json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(c);
    if (!*text) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    return CORE_OK;
}

/* Submit a node-signed settle or refund of the escrow opened by request.
 * An escrow already closed (an earlier attempt reached the ledger) counts
 * as done: txid is then left zero. */
static core_status close_escrow(review *r, ledger_tx_kind kind, const uint8_t request[LEDGER_HASH],
                                uint8_t txid[LEDGER_HASH], core_error *err) {
    ledger_tx tx = {.kind = kind};
    memcpy(tx.u.review_close.request, request, LEDGER_HASH);
    ledger_receipt rc_;
    memset(txid, 0, LEDGER_HASH);
    core_status rc = ledger_sign_submit(r->opt.led, &tx, r->opt.node_sk, &rc_, err);
    if (rc == CORE_ERR_CONFLICT) {
        ledger_escrow e;
        if (!ledger_get_escrow(r->opt.led, request, &e, NULL) && e.state != LEDGER_ESCROW_OPEN) return CORE_OK;
    }
    if (!rc) memcpy(txid, rc_.txid, LEDGER_HASH);
    return rc;
}

core_status review_case_request(review *r, const review_request_in *in, char id[REVIEW_CASE_ID_TEXT], core_error *err) {
    core_status rc = need_cases(r, err);
    if (rc) return rc;
    review_offer offer;
    if ((rc = review_offer_get(r, in->org, &offer, err))) return rc;
    char *text = NULL;
    if ((rc = build_case(in, &text, err))) return rc;
    size_t text_len = strlen(text);

    /* Balance first: the ledger would refuse too, but the refusal should
     * name what is short, and nothing should be sealed or signed for it. */
    ledger_account acct = {0};
    core_error e = {0};
    core_status arc = ledger_get_account(r->opt.led, in->wallet_sk + 32, &acct, &e);
    if (arc && arc != CORE_ERR_NOT_FOUND) {
        cs_crypto_wipe(text, text_len);
        free(text);
        if (err) *err = e;
        return arc;
    }
    if (acct.balance < offer.price) {
        cs_crypto_wipe(text, text_len);
        free(text);
        return core_fail(err, CORE_ERR_CONFLICT, "balance", "this review costs %lld tokens; the wallet holds %lld",
                         (long long)offer.price, (long long)acct.balance);
    }

    uint8_t raw_id[16], key[32], salt[32], commitment[32];
    cs_crypto_random(raw_id, sizeof raw_id);
    cs_crypto_hex(raw_id, sizeof raw_id, id);
    cs_crypto_random(key, sizeof key);
    cs_crypto_random(salt, sizeof salt);
    /* The ledger commits to the case without revealing it: SHA-256(salt ‖
     * case), the salt known only to those who hold the case. */
    cs_crypto_sha256_2(commitment, salt, sizeof salt, text, text_len);
    uint8_t *sealed = NULL, *pkey = NULL, *skey = NULL;
    size_t sealed_len = 0, pkey_len = 0, skey_len = 0;
    size_t idlen = strlen(id);
    rc = cs_crypto_seal(key, id, idlen, text, text_len, &sealed, &sealed_len, err);
    if (!rc) rc = cs_crypto_seal(in->data_key, id, idlen, key, sizeof key, &pkey, &pkey_len, err);
    if (!rc) rc = cs_crypto_seal(r->server_key, id, idlen, key, sizeof key, &skey, &skey_len, err);
    cs_crypto_wipe(text, text_len);
    free(text);
    cs_crypto_wipe(key, sizeof key);

    ledger_receipt receipt;
    if (!rc) {
        ledger_tx tx = {.kind = LEDGER_TX_REVIEW_REQUEST};
        memcpy(tx.u.review.org, in->org, LEDGER_KEY);
        memcpy(tx.u.review.commitment, commitment, LEDGER_HASH);
        tx.u.review.price = (uint64_t)offer.price;
        rc = ledger_sign_submit(r->opt.led, &tx, in->wallet_sk, &receipt, err);
    }
    if (!rc) {
        int64_t now = now_of(r);
        sqlite3 *db = store_acquire(r->opt.st);
        sqlite3_stmt *st = NULL;
        rc = store_prepare(db,
                           "INSERT INTO review_cases(id, owner, org_key, price, state, created_at, deadline, "
                           "request_txid, salt, case_blob, person_key, server_key) "
                           "VALUES (?, ?, ?, ?, 'waiting', ?, ?, ?, ?, ?, ?, ?)",
                           &st, err);
        if (!rc) {
            sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, in->owner);
            sqlite3_bind_blob(st, 3, in->org, LEDGER_KEY, SQLITE_STATIC);
            sqlite3_bind_int64(st, 4, offer.price);
            sqlite3_bind_int64(st, 5, now);
            sqlite3_bind_int64(st, 6, now + (int64_t)offer.answer_hours * 3600);
            sqlite3_bind_blob(st, 7, receipt.txid, LEDGER_HASH, SQLITE_STATIC);
            sqlite3_bind_blob(st, 8, salt, sizeof salt, SQLITE_STATIC);
            sqlite3_bind_blob(st, 9, sealed, (int)sealed_len, SQLITE_STATIC);
            sqlite3_bind_blob(st, 10, pkey, (int)pkey_len, SQLITE_STATIC);
            sqlite3_bind_blob(st, 11, skey, (int)skey_len, SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE) rc = store_error(db, err);
        }
        sqlite3_finalize(st);
        store_release(r->opt.st, db);
        if (rc) {
            /* The escrow is on the ledger but the case is not kept: give
             * the tokens back rather than leave them locked. */
            uint8_t t[LEDGER_HASH];
            close_escrow(r, LEDGER_TX_REVIEW_REFUND, receipt.txid, t, NULL);
        }
    }
    free(sealed);
    free(pkey);
    free(skey);
    if (rc) id[0] = 0;
    return rc;
}

typedef struct {
    char state[16];
    uint8_t org[LEDGER_KEY];
    uint8_t request[LEDGER_HASH];
    int64_t owner;
} case_head;

/* The case's head. owner > 0: only that person's; org non-NULL: only that
 * organisation's. NOT_FOUND otherwise. */
static core_status load_head(sqlite3 *db, const char *id, int64_t owner, const uint8_t *org, case_head *h,
                             core_error *err) {
    sqlite3_stmt *st = NULL;
    core_status rc =
        store_prepare(db, "SELECT state, org_key, request_txid, owner FROM review_cases WHERE id = ?", &st, err);
    if (!rc) {
        sqlite3_bind_text(st, 1, id ? id : "", -1, SQLITE_STATIC);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            snprintf(h->state, sizeof h->state, "%s", (const char *)sqlite3_column_text(st, 0));
            if (sqlite3_column_bytes(st, 1) == LEDGER_KEY) memcpy(h->org, sqlite3_column_blob(st, 1), LEDGER_KEY);
            if (sqlite3_column_bytes(st, 2) == LEDGER_HASH) memcpy(h->request, sqlite3_column_blob(st, 2), LEDGER_HASH);
            h->owner = sqlite3_column_int64(st, 3);
            if ((owner > 0 && h->owner != owner) || (org && memcmp(org, h->org, LEDGER_KEY)))
                rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such review case");
        } else if (step == SQLITE_DONE) {
            rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such review case");
        } else {
            rc = store_error(db, err);
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* Close a waiting case: ledger first (settle or refund), then the row. When
 * destroy, the case copy and both key copies go (the answer needs them, so
 * an answered case keeps them). */
static core_status close_case(review *r, sqlite3 *db, const char *id, const case_head *h, ledger_tx_kind kind,
                              const char *state, const uint8_t *answer, size_t answer_len, const char *reason,
                              core_error *err) {
    if (strcmp(h->state, "waiting"))
        return core_fail(err, CORE_ERR_CONFLICT, "state", "this case is %s, no longer waiting", h->state);
    uint8_t txid[LEDGER_HASH];
    core_status rc = close_escrow(r, kind, h->request, txid, err);
    if (rc) return rc;
    bool destroy = answer == NULL;
    sqlite3_stmt *st = NULL;
    rc = store_prepare(db,
                       destroy ? "UPDATE review_cases SET state = ?2, closed_at = ?3, close_txid = ?4, reason = ?5, "
                                 "case_blob = NULL, person_key = NULL, server_key = NULL "
                                 "WHERE id = ?1 AND state = 'waiting'"
                               : "UPDATE review_cases SET state = ?2, closed_at = ?3, close_txid = ?4, reason = ?5, "
                                 "answer = ?6, server_key = NULL WHERE id = ?1 AND state = 'waiting'",
                       &st, err);
    if (!rc) {
        static const uint8_t zero[LEDGER_HASH];
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, now_of(r));
        if (memcmp(txid, zero, LEDGER_HASH)) sqlite3_bind_blob(st, 4, txid, LEDGER_HASH, SQLITE_STATIC);
        if (reason) sqlite3_bind_text(st, 5, reason, -1, SQLITE_STATIC);
        if (answer) sqlite3_bind_blob(st, 6, answer, (int)answer_len, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(st);
    return rc;
}

core_status review_case_withdraw(review *r, int64_t owner, const char *id, core_error *err) {
    core_status rc = need_cases(r, err);
    if (rc) return rc;
    sqlite3 *db = store_acquire(r->opt.st);
    case_head h;
    rc = load_head(db, id, owner, NULL, &h, err);
    if (!rc) rc = close_case(r, db, id, &h, LEDGER_TX_REVIEW_REFUND, "withdrawn", NULL, 0, NULL, err);
    store_release(r->opt.st, db);
    return rc;
}

core_status review_sweep(review *r, int *refunded, core_error *err) {
    if (refunded) *refunded = 0;
    if (!r->opt.node_sk) return CORE_OK;
    sqlite3 *db = store_acquire(r->opt.st);
    sqlite3_stmt *st = NULL;
    char(*ids)[REVIEW_CASE_ID_TEXT] = NULL;
    size_t n = 0, cap = 0;
    core_status rc = store_prepare(
        db, "SELECT id FROM review_cases WHERE state = 'waiting' AND deadline <= ? ORDER BY deadline LIMIT 100", &st,
        err);
    if (!rc) {
        sqlite3_bind_int64(st, 1, now_of(r));
        while (!rc && sqlite3_step(st) == SQLITE_ROW) {
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                void *g = realloc(ids, ncap * sizeof *ids);
                if (!g) {
                    rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
                    break;
                }
                ids = g;
                cap = ncap;
            }
            snprintf(ids[n++], REVIEW_CASE_ID_TEXT, "%s", (const char *)sqlite3_column_text(st, 0));
        }
    }
    sqlite3_finalize(st);
    for (size_t i = 0; !rc && i < n; i++) {
        case_head h;
        core_error e = {0};
        /* A case answered or withdrawn since the SELECT is refused as not
         * waiting: skip it, it has its ending. */
        core_status one = load_head(db, ids[i], 0, NULL, &h, &e);
        if (!one) one = close_case(r, db, ids[i], &h, LEDGER_TX_REVIEW_REFUND, "expired", NULL, 0, NULL, &e);
        if (!one && refunded) (*refunded)++;
        if (one && one != CORE_ERR_CONFLICT) {
            rc = one;
            if (err) *err = e;
        }
    }
    free(ids);
    store_release(r->opt.st, db);
    return rc;
}

/* Open the case key from one of its sealed copies, then the blob under it. */
static core_status open_under(const uint8_t wrap[32], const char *id, const void *kblob, size_t klen, const void *blob,
                              size_t blen, uint8_t **out, size_t *outlen, core_error *err) {
    uint8_t *key = NULL;
    size_t keylen = 0;
    size_t idlen = strlen(id);
    core_status rc = cs_crypto_open(wrap, id, idlen, kblob, klen, &key, &keylen, err);
    if (!rc && keylen != 32) rc = core_fail(err, CORE_ERR_CRYPTO, NULL, "a case key is damaged");
    if (!rc) rc = cs_crypto_open(key, id, idlen, blob, blen, out, outlen, err);
    if (key) {
        cs_crypto_wipe(key, keylen);
        free(key);
    }
    return rc;
}

static void pseudonym(const review *r, int64_t clinician, char out[24]) {
    uint8_t in[40], h[32];
    memcpy(in, r->server_key, 32);
    for (int i = 0; i < 8; i++) in[32 + i] = (uint8_t)((uint64_t)clinician >> (8 * i));
    cs_crypto_hash(h, "caresync review clinician pseudonym", in, sizeof in);
    cs_crypto_wipe(in, sizeof in);
    char hex[17];
    cs_crypto_hex(h, 8, hex);
    snprintf(out, 24, "clinician-%.8s", hex);
}

static json_t *hex_json(const void *p, int n) {
    if (n <= 0 || n > 64) return json_null();
    char s[129];
    cs_crypto_hex(p, (size_t)n, s);
    return json_string(s);
}

static json_t *openings_json(sqlite3 *db, const char *id) {
    json_t *a = json_array();
    sqlite3_stmt *st = NULL;
    if (!a || store_prepare(db,
                            "SELECT clinician, opened_at FROM review_case_openings WHERE case_id = ? "
                            "ORDER BY opened_at, rowid",
                            &st, NULL)) {
        sqlite3_finalize(st);
        return a;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        char t[32];
        core_format_time(sqlite3_column_int64(st, 1), t);
        json_array_append_new(
            a, json_pack("{s:s, s:s}", "clinician", (const char *)sqlite3_column_text(st, 0), "opened_at", t));
    }
    sqlite3_finalize(st);
    return a;
}

#define CASE_COLUMNS                                                                                            \
    "id, org_key, price, state, created_at, deadline, closed_at, request_txid, close_txid, reason, case_blob, " \
    "person_key, answer"

/* The person's view of one row; with data_key, the case and answer too. */
static json_t *person_row(sqlite3 *db, sqlite3_stmt *st, const uint8_t *data_key) {
    char created[32], deadline[32], closed[32];
    const char *id = (const char *)sqlite3_column_text(st, 0);
    core_format_time(sqlite3_column_int64(st, 4), created);
    core_format_time(sqlite3_column_int64(st, 5), deadline);
    core_format_time(sqlite3_column_int64(st, 6), closed);
    json_t *o =
        json_pack("{s:s, s:{s:o}, s:I, s:s, s:s, s:s, s:o, s:o, s:o, s:o}", "id", id, "organisation", "key",
                  hex_json(sqlite3_column_blob(st, 1), sqlite3_column_bytes(st, 1)), "price",
                  (json_int_t)sqlite3_column_int64(st, 2), "state", (const char *)sqlite3_column_text(st, 3),
                  "created_at", created, "answer_due", deadline, "closed_at",
                  sqlite3_column_type(st, 6) == SQLITE_NULL ? json_null() : json_string(closed), "request_txid",
                  hex_json(sqlite3_column_blob(st, 7), sqlite3_column_bytes(st, 7)), "close_txid",
                  hex_json(sqlite3_column_blob(st, 8), sqlite3_column_bytes(st, 8)), "reason",
                  sqlite3_column_type(st, 9) == SQLITE_NULL ? json_null()
                                                            : json_string((const char *)sqlite3_column_text(st, 9)));
    if (!o || !data_key) return o;
    const void *kb = sqlite3_column_blob(st, 11);
    size_t kl = (size_t)sqlite3_column_bytes(st, 11);
    uint8_t *pt = NULL;
    size_t ptlen = 0;
    if (kb && sqlite3_column_type(st, 10) != SQLITE_NULL &&
        !open_under(data_key, id, kb, kl, sqlite3_column_blob(st, 10), (size_t)sqlite3_column_bytes(st, 10), &pt,
                    &ptlen, NULL)) {
        json_object_set_new(o, "case", json_loadb((const char *)pt, ptlen, 0, NULL));
        cs_crypto_wipe(pt, ptlen);
        free(pt);
    }
    if (kb && sqlite3_column_type(st, 12) != SQLITE_NULL &&
        !open_under(data_key, id, kb, kl, sqlite3_column_blob(st, 12), (size_t)sqlite3_column_bytes(st, 12), &pt,
                    &ptlen, NULL)) {
        json_object_set_new(o, "answer", json_loadb((const char *)pt, ptlen, 0, NULL));
        cs_crypto_wipe(pt, ptlen);
        free(pt);
    }
    json_object_set_new(o, "openings", openings_json(db, id));
    return o;
}

core_status review_case_list(review *r, int64_t owner, json_t **out, core_error *err) {
    *out = NULL;
    review_sweep(r, NULL, NULL);
    sqlite3 *db = store_acquire(r->opt.st);
    sqlite3_stmt *st = NULL;
    json_t *a = json_array();
    core_status rc = a ? CORE_OK : core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    if (!rc)
        rc = store_prepare(db, "SELECT " CASE_COLUMNS " FROM review_cases WHERE owner = ? ORDER BY created_at DESC, id",
                           &st, err);
    if (!rc) {
        sqlite3_bind_int64(st, 1, owner);
        while (sqlite3_step(st) == SQLITE_ROW) json_array_append_new(a, person_row(db, st, NULL));
    }
    sqlite3_finalize(st);
    store_release(r->opt.st, db);
    if (rc) {
        json_decref(a);
        return rc;
    }
    *out = a;
    return CORE_OK;
}

core_status review_case_get(review *r, int64_t owner, const uint8_t data_key[32], const char *id, json_t **out,
                            core_error *err) {
    *out = NULL;
    review_sweep(r, NULL, NULL);
    sqlite3 *db = store_acquire(r->opt.st);
    sqlite3_stmt *st = NULL;
    core_status rc =
        store_prepare(db, "SELECT " CASE_COLUMNS " FROM review_cases WHERE id = ? AND owner = ?", &st, err);
    if (!rc) {
        sqlite3_bind_text(st, 1, id ? id : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, owner);
        if (sqlite3_step(st) == SQLITE_ROW) {
            *out = person_row(db, st, data_key);
            if (!*out) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        } else {
            rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such review request");
        }
    }
    sqlite3_finalize(st);
    store_release(r->opt.st, db);
    return rc;
}

core_status review_queue(review *r, const uint8_t org[LEDGER_KEY], json_t **out, core_error *err) {
    *out = NULL;
    core_status rc = review_sweep(r, NULL, err);
    if (rc) return rc;
    int64_t now = now_of(r);
    sqlite3 *db = store_acquire(r->opt.st);
    sqlite3_stmt *st = NULL;
    json_t *a = json_array();
    rc = a ? CORE_OK : core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    /* Only what a queue needs: the case id, its price and how long it has
     * waited. No owner, no content, no absolute time. */
    if (!rc)
        rc = store_prepare(db,
                           "SELECT id, price, created_at, deadline FROM review_cases "
                           "WHERE org_key = ? AND state = 'waiting' ORDER BY created_at, id",
                           &st, err);
    if (!rc) {
        sqlite3_bind_blob(st, 1, org, LEDGER_KEY, SQLITE_STATIC);
        while (sqlite3_step(st) == SQLITE_ROW)
            json_array_append_new(a, json_pack("{s:s, s:I, s:I, s:I}", "id", (const char *)sqlite3_column_text(st, 0),
                                               "price", (json_int_t)sqlite3_column_int64(st, 1), "waiting_seconds",
                                               (json_int_t)(now - sqlite3_column_int64(st, 2)), "seconds_left",
                                               (json_int_t)(sqlite3_column_int64(st, 3) - now)));
    }
    sqlite3_finalize(st);
    store_release(r->opt.st, db);
    if (rc) {
        json_decref(a);
        return rc;
    }
    *out = a;
    return CORE_OK;
}

/* The waiting case of org, opened with the organisation's key copy. */
static core_status org_case(review *r, sqlite3 *db, const uint8_t org[LEDGER_KEY], const char *id, case_head *h,
                            uint8_t **pt, size_t *ptlen, core_error *err) {
    core_status rc = load_head(db, id, 0, org, h, err);
    if (rc) return rc;
    if (strcmp(h->state, "waiting")) return core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such waiting review case");
    sqlite3_stmt *st = NULL;
    rc = store_prepare(db, "SELECT server_key, case_blob FROM review_cases WHERE id = ?", &st, err);
    if (!rc) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL &&
            sqlite3_column_type(st, 1) != SQLITE_NULL)
            rc = open_under(r->server_key, id, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0),
                            sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1), pt, ptlen, err);
        else
            rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such waiting review case");
    }
    sqlite3_finalize(st);
    return rc;
}

core_status review_case_open(review *r, const uint8_t org[LEDGER_KEY], int64_t clinician_id, const char *id,
                             json_t **out, core_error *err) {
    *out = NULL;
    core_status rc = need_cases(r, err);
    if (rc) return rc;
    review_sweep(r, NULL, NULL);
    sqlite3 *db = store_acquire(r->opt.st);
    case_head h;
    uint8_t *pt = NULL;
    size_t ptlen = 0;
    rc = org_case(r, db, org, id, &h, &pt, &ptlen, err);
    /* Log the opening before handing the case out: an opening that is not
     * logged never shows the case. */
    sqlite3_stmt *st = NULL;
    if (!rc)
        rc = store_prepare(db, "INSERT INTO review_case_openings(case_id, clinician, opened_at) VALUES (?, ?, ?)", &st,
                           err);
    if (!rc) {
        char who[24];
        pseudonym(r, clinician_id, who);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, who, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, now_of(r));
        if (sqlite3_step(st) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(st);
    store_release(r->opt.st, db);
    if (!rc) {
        *out = json_loadb((const char *)pt, ptlen, 0, NULL);
        if (*out) json_object_set_new(*out, "id", json_string(id));
        if (!*out) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    if (pt) {
        cs_crypto_wipe(pt, ptlen);
        free(pt);
    }
    return rc;
}

/* Hand the answered case to opt->on_answered: the condition and the photo
 * from the case copy (pt, the plaintext the answer opened). */
static void feed_answer(review *r, const char *id, const char *condition, const uint8_t *pt, size_t ptlen) {
    if (!r->opt.on_answered) return;
    json_t *c = json_loadb((const char *)pt, ptlen, 0, NULL);
    const char *b64 = json_string_value(json_object_get(c, "photo_jpeg_base64url"));
    size_t blen = b64 ? strlen(b64) : 0, n = blen * 3 / 4;
    uint8_t *jpeg = blen % 4 != 1 && n ? malloc(n) : NULL;
    if (jpeg && cs_crypto_unb64(b64, jpeg, n)) {
        review_answered a = {id, strcmp(condition, "other") ? condition : NULL, now_of(r), jpeg, n};
        r->opt.on_answered(r->opt.answered_ud, &a);
    }
    if (jpeg) {
        cs_crypto_wipe(jpeg, n);
        free(jpeg);
    }
    json_decref(c);
}

core_status review_case_answer(review *r, const uint8_t org[LEDGER_KEY], int64_t clinician_id, const char *id,
                               const char *condition, const char *other_text, const char *urgency, const char *advice,
                               core_error *err) {
    core_status rc = need_cases(r, err);
    if (rc) return rc;
    bool other = condition && !strcmp(condition, "other");
    if (!condition || (!other && !review_known_condition(r, condition)))
        return core_fail(err, CORE_ERR_INVALID, "condition", "condition must be a code of the table, or \"other\"");
    if (other && (!other_text || !other_text[0] || strlen(other_text) > 200))
        return core_fail(err, CORE_ERR_INVALID, "other", "with \"other\", name the condition (1 to 200 characters)");
    if (!urgency || !in_list(urgency, urgencies))
        return core_fail(err, CORE_ERR_INVALID, "urgency",
                         "urgency must be self_care, pharmacist_or_gp, see_doctor_soon or urgent");
    if (!advice || !advice[0] || strlen(advice) > REVIEW_ADVICE_MAX)
        return core_fail(err, CORE_ERR_INVALID, "advice", "advice must be 1 to %d characters", REVIEW_ADVICE_MAX);
    char who[24];
    pseudonym(r, clinician_id, who);
    json_t *a = json_pack("{s:s, s:s, s:s, s:s}", "condition", condition, "urgency", urgency, "advice", advice,
                          "clinician", who);
    if (a && other) json_object_set_new(a, "other", json_string(other_text));
    char *text = a ? json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(a);
    if (!text) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");

    sqlite3 *db = store_acquire(r->opt.st);
    case_head h;
    uint8_t *pt = NULL, *sealed = NULL, *key = NULL;
    size_t ptlen = 0, sealed_len = 0, keylen = 0;
    /* The answer is sealed under the case key (the person opens it with
     * their copy of that key next time they read the request): the server
     * cannot seal anything under the person's data key without their
     * session. */
    rc = org_case(r, db, org, id, &h, &pt, &ptlen, err);
    sqlite3_stmt *st = NULL;
    if (!rc) rc = store_prepare(db, "SELECT server_key FROM review_cases WHERE id = ?", &st, err);
    if (!rc) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            rc = cs_crypto_open(r->server_key, id, strlen(id), sqlite3_column_blob(st, 0),
                                (size_t)sqlite3_column_bytes(st, 0), &key, &keylen, err);
        else
            rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such waiting review case");
    }
    sqlite3_finalize(st);
    if (!rc && keylen != 32) rc = core_fail(err, CORE_ERR_CRYPTO, NULL, "a case key is damaged");
    if (!rc) rc = cs_crypto_seal(key, id, strlen(id), text, strlen(text), &sealed, &sealed_len, err);
    if (!rc) rc = close_case(r, db, id, &h, LEDGER_TX_REVIEW_SETTLE, "answered", sealed, sealed_len, NULL, err);
    store_release(r->opt.st, db);
    if (!rc) feed_answer(r, id, condition, pt, ptlen); /* settled and committed: now what it feeds */
    if (key) {
        cs_crypto_wipe(key, keylen);
        free(key);
    }
    if (pt) {
        cs_crypto_wipe(pt, ptlen);
        free(pt);
    }
    free(sealed);
    cs_crypto_wipe(text, strlen(text));
    free(text);
    return rc;
}

core_status review_case_return(review *r, const uint8_t org[LEDGER_KEY], int64_t clinician_id, const char *id,
                               const char *reason, core_error *err) {
    (void)clinician_id;
    core_status rc = need_cases(r, err);
    if (rc) return rc;
    if (!reason || !reason[0] || strlen(reason) > REVIEW_REASON_MAX)
        return core_fail(err, CORE_ERR_INVALID, "reason", "say why (1 to %d characters)", REVIEW_REASON_MAX);
    sqlite3 *db = store_acquire(r->opt.st);
    case_head h;
    rc = load_head(db, id, 0, org, &h, err);
    if (!rc && strcmp(h.state, "waiting")) rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such waiting review case");
    if (!rc) rc = close_case(r, db, id, &h, LEDGER_TX_REVIEW_REFUND, "returned", NULL, 0, reason, err);
    store_release(r->opt.st, db);
    return rc;
}
