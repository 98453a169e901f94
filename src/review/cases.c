/* review — cases: request, queue, opening, answer, return, withdrawal,
 * consent revocation, the timeout sweep and crash recovery (see review.h for
 * the case copy and the trust model).
 *
 * Order of effects. A request is checked (offer, photo, extras, balance)
 * before anything happens. Every step that puts a transaction on the ledger
 * (request → review_request, answer → review_settle, return / withdraw /
 * expiry → review_refund, revocation → revoke) runs in three commits:
 *
 *   1. an intent row (review_intents) is committed in caresync.db, naming
 *      the case, the step, and what is needed to finish it (the request's
 *      case commitment; the escrow's txid; the target state, the sealed
 *      answer or the reason);
 *   2. the ledger transaction is submitted and committed in ledger.db;
 *   3. the case row changes and the intent is deleted in one SQLite
 *      transaction.
 *
 * The two files cannot commit together, so a crash may fall between any of
 * these. review_recover, run at start before any request is served, reads
 * each intent left and asks the ledger how far the step got: no escrow for a
 * request → drop it; an escrow with no case row → refund it; a settle or
 * refund not yet on the ledger → submit it (the answer or reason is in the
 * intent), then finish the row; a revocation not on the ledger → drop it
 * (only the person's session can sign it: they may revoke again). It also
 * brings every waiting case in line with its escrow. So tokens are never
 * left in an escrow no case refers to, and never paid twice: the ledger
 * closes an escrow once, and a case takes only one step at a time (the
 * intent is keyed by case: a second concurrent step is refused as busy).
 *
 * A conflict from the ledger ("already closed") on a close means an earlier
 * attempt got as far as the ledger, and the row is brought in line with it
 * if it closed the same way.
 *
 * A running call whose step fails after its intent (an allocation, a SQLite
 * write, the ledger) does not leave the intent for the next start: it asks
 * the ledger at once how far the step got (request_resolve, close_resolve,
 * revoke_resolve) and answers by the outcome. On the ledger → the row is
 * finished now and the call succeeds as a clean one would; not → the intent
 * is dropped and the error answered with everything as before. So a call
 * told "failed" never leaves a ledger write standing; only a second failure
 * while resolving (or a ledger that cannot say) leaves the intent to
 * review_recover.
 *
 * An answer is handed to opt->on_answered between steps 2 and 3 (crash
 * point review_after_feed after it): recovery of a settle intent opens the
 * answer it kept and hands it on again before finishing the row, so a
 * crash never loses what an answer feeds, and the feed's own once-only
 * check (the pledge goes with the count) keeps it from counting twice. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "crypto/crypto.h"
#include "review/internal.h"

static int64_t now_of(const review *r) { return r->opt.now ? r->opt.now() : core_now(); }

#ifdef CARESYNC_CRASH_POINTS
/* Test builds only (CMake option CARESYNC_CRASH_POINTS, compiled out of
 * release builds): CARESYNC_CRASH_AT=name kills the process at that point
 * with SIGKILL, as a power cut would, so a crash test can land in each
 * window between the two files' commits deterministically. */
void review_crash_point(const char *name) {
    const char *at = getenv("CARESYNC_CRASH_AT");
    if (at && !strcmp(at, name)) raise(SIGKILL);
}
#endif

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
    *text = c ? core_json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(c);
    if (!*text) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    return CORE_OK;
}

/* Submit a node-signed settle or refund of the escrow opened by request.
 * An escrow already closed the same way (an earlier attempt reached the
 * ledger) counts as done: txid is then left zero. */
static core_status close_escrow(review *r, ledger_tx_kind kind, const uint8_t request[LEDGER_HASH],
                                uint8_t txid[LEDGER_HASH], core_error *err) {
    ledger_tx tx = {.kind = kind};
    memcpy(tx.u.review_close.request, request, LEDGER_HASH);
    ledger_receipt rc_;
    memset(txid, 0, LEDGER_HASH);
    core_status rc = ledger_sign_submit(r->opt.led, &tx, r->opt.node_sk, &rc_, err);
    if (rc == CORE_ERR_CONFLICT) {
        ledger_escrow e;
        ledger_escrow_state want = kind == LEDGER_TX_REVIEW_SETTLE ? LEDGER_ESCROW_SETTLED : LEDGER_ESCROW_REFUNDED;
        if (!ledger_get_escrow(r->opt.led, request, &e, NULL) && e.state == want) return CORE_OK;
    }
    if (!rc) memcpy(txid, rc_.txid, LEDGER_HASH);
    return rc;
}

/* ---- intents (see the top of this file) ---- */

typedef struct {
    const char *op;            /* request | settle | refund | revoke */
    const uint8_t *commitment; /* request: the case commitment (LEDGER_HASH) */
    const uint8_t *request;    /* others: the escrow's / consent's txid */
    const char *target;        /* settle / refund: the state the case ends in */
    const uint8_t *answer;     /* settle: the sealed answer */
    size_t answer_len;
    const char *reason; /* returned: why */
} intent;

/* Commit the intent. CONFLICT field "state" when the case already has one:
 * another step on it is under way (or waits for recovery). */
static core_status intent_put(review *r, sqlite3 *db, const char *id, const intent *in, core_error *err) {
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db,
                                   "INSERT INTO review_intents(case_id, op, commitment, request_txid, target, answer, "
                                   "reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                   &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, in->op, -1, SQLITE_STATIC);
        if (in->commitment) sqlite3_bind_blob(q, 3, in->commitment, LEDGER_HASH, SQLITE_STATIC);
        if (in->request) sqlite3_bind_blob(q, 4, in->request, LEDGER_HASH, SQLITE_STATIC);
        if (in->target) sqlite3_bind_text(q, 5, in->target, -1, SQLITE_STATIC);
        if (in->answer) sqlite3_bind_blob(q, 6, in->answer, (int)in->answer_len, SQLITE_STATIC);
        if (in->reason) sqlite3_bind_text(q, 7, in->reason, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 8, now_of(r));
        int step = sqlite3_step(q);
        if ((step & 0xff) == SQLITE_CONSTRAINT) /* primary key: the case has one */
            rc = core_fail(err, CORE_ERR_CONFLICT, "state", "another change to this case is under way");
        else if (step != SQLITE_DONE)
            rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    return rc;
}

static core_status intent_drop(sqlite3 *db, const char *id, core_error *err) {
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db, "DELETE FROM review_intents WHERE case_id = ?", &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    return rc;
}

/* Run sql (its ?1 bound to id; binder binds the rest) and drop the case's
 * intent in one SQLite transaction: the row's step and the end of the
 * intent commit together. */
typedef void (*binder)(sqlite3_stmt *q, const void *ud);
static core_status finish_step(sqlite3 *db, const char *id, const char *sql, binder bind, const void *ud,
                               core_error *err) {
    core_status rc = store_begin(db, err);
    if (rc) return rc;
    sqlite3_stmt *q = NULL;
    rc = store_prepare(db, sql, &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        if (bind) bind(q, ud);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    if (!rc) rc = intent_drop(db, id, err);
    if (!rc) rc = store_commit(db, err);
    if (rc) store_rollback(db);
    return rc;
}

/* A request's refusals, before anything is sealed or signed: cases off, no
 * offer, a bad case (build_case), too few tokens. *text (the case copy, to
 * wipe and free) on success. */
static core_status request_check(review *r, const review_request_in *in, review_offer *offer, char **text,
                                 core_error *err) {
    core_status rc = need_cases(r, err);
    if (rc) return rc;
    if ((rc = review_offer_get(r, in->org, offer, err))) return rc;
    if ((rc = build_case(in, text, err))) return rc;
    size_t text_len = strlen(*text);

    /* Balance first: the ledger would refuse too, but the refusal should
     * name what is short, and nothing should be sealed or signed for it. */
    ledger_account acct = {0};
    core_error e = {0};
    core_status arc = ledger_get_account(r->opt.led, in->wallet_sk + 32, &acct, &e);
    if (arc && arc != CORE_ERR_NOT_FOUND) {
        if (err) *err = e;
        rc = arc;
    } else if (acct.balance < offer->price) {
        rc = core_fail(err, CORE_ERR_CONFLICT, "balance", "this review costs %lld tokens; the wallet holds %lld",
                       (long long)offer->price, (long long)acct.balance);
    }
    if (rc) {
        cs_crypto_wipe(*text, text_len);
        free(*text);
        *text = NULL;
    }
    return rc;
}

/* The case copy sealed for keeping: under a random case key, which is
 * sealed for the person (data key) and for the organisation (server key);
 * the ledger's commitment to it. Owns its buffers (case_seal_free). */
typedef struct {
    uint8_t salt[32], commitment[32];
    uint8_t *sealed, *pkey, *skey;
    size_t sealed_len, pkey_len, skey_len;
} case_seal;

static void case_seal_free(case_seal *c) {
    free(c->sealed);
    free(c->pkey);
    free(c->skey);
}

/* Seals text (the case copy, wiped and freed here whatever happens). */
static core_status case_seal_make(review *r, const review_request_in *in, const char *id, char *text, case_seal *c,
                                  core_error *err) {
    size_t text_len = strlen(text);
    uint8_t key[32];
    cs_crypto_random(key, sizeof key);
    cs_crypto_random(c->salt, sizeof c->salt);
    /* The ledger commits to the case without revealing it: SHA-256(salt ‖
     * case), the salt known only to those who hold the case. */
    cs_crypto_sha256_2(c->commitment, c->salt, sizeof c->salt, text, text_len);
    size_t idlen = strlen(id);
    core_status rc = cs_crypto_seal(key, id, idlen, text, text_len, &c->sealed, &c->sealed_len, err);
    if (!rc) rc = cs_crypto_seal(in->data_key, id, idlen, key, sizeof key, &c->pkey, &c->pkey_len, err);
    if (!rc) rc = cs_crypto_seal(r->server_key, id, idlen, key, sizeof key, &c->skey, &c->skey_len, err);
    cs_crypto_wipe(text, text_len);
    free(text);
    cs_crypto_wipe(key, sizeof key);
    return rc;
}

/* Step 3: the case row and the end of the intent, together (nothing
 * written if it fails: request_resolve decides what then). */
static core_status case_store(review *r, sqlite3 *db, const review_request_in *in, const char *id,
                              const review_offer *offer, const uint8_t request_txid[LEDGER_HASH], const case_seal *c,
                              core_error *err) {
    int64_t now = now_of(r);
    sqlite3_stmt *q = NULL;
    core_status rc = store_begin(db, err);
    bool open = !rc;
    if (!rc)
        rc = store_prepare(db,
                           "INSERT INTO review_cases(id, owner, org_key, price, state, created_at, deadline, "
                           "request_txid, salt, case_blob, person_key, server_key, record_id) "
                           "VALUES (?, ?, ?, ?, 'waiting', ?, ?, ?, ?, ?, ?, ?, ?)",
                           &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, in->owner);
        sqlite3_bind_blob(q, 3, in->org, LEDGER_KEY, SQLITE_STATIC);
        sqlite3_bind_int64(q, 4, offer->price);
        sqlite3_bind_int64(q, 5, now);
        sqlite3_bind_int64(q, 6, now + (int64_t)offer->answer_hours * 3600);
        sqlite3_bind_blob(q, 7, request_txid, LEDGER_HASH, SQLITE_STATIC);
        sqlite3_bind_blob(q, 8, c->salt, sizeof c->salt, SQLITE_STATIC);
        sqlite3_bind_blob(q, 9, c->sealed, (int)c->sealed_len, SQLITE_STATIC);
        sqlite3_bind_blob(q, 10, c->pkey, (int)c->pkey_len, SQLITE_STATIC);
        sqlite3_bind_blob(q, 11, c->skey, (int)c->skey_len, SQLITE_STATIC);
        if (in->record_id) sqlite3_bind_text(q, 12, in->record_id, -1, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    if (!rc) rc = intent_drop(db, id, err);
    if (open) {
        if (!rc)
            rc = store_commit(db, err);
        else
            store_rollback(db);
    }
    return rc;
}

static core_status recover_one(review *r, sqlite3 *db, const char *id, const intent *v, core_error *err);

/* A step after a request's intent failed: the ledger says whether the
 * escrow exists. No → the intent goes and the error stands. Yes → the case
 * is kept now (its sealed copy is still here) and the request succeeds as
 * a clean one would; if it cannot be kept, recovery's answer to an escrow
 * with no case (refund, intent gone) and the error. If the ledger cannot
 * say, the intent stays for review_recover. */
static core_status request_resolve(review *r, sqlite3 *db, const review_request_in *in, const char *id,
                                   const review_offer *offer, const case_seal *c, core_status failed) {
    core_error e = {0};
    uint8_t txid[LEDGER_HASH];
    core_status f = ledger_find_commitment(r->opt.led, c->commitment, txid, &e);
    if (f == CORE_ERR_NOT_FOUND) {
        intent_drop(db, id, NULL); /* if this fails, recovery finds no escrow and drops it */
        return failed;
    }
    if (f) return failed;
    if (!case_store(r, db, in, id, offer, txid, c, &e)) return CORE_OK;
    intent it = {.op = "request", .commitment = c->commitment};
    recover_one(r, db, id, &it, &e);
    return failed;
}

core_status review_case_request(review *r, const review_request_in *in, char id[REVIEW_CASE_ID_TEXT], core_error *err) {
    review_offer offer;
    char *text = NULL;
    core_status rc = request_check(r, in, &offer, &text, err);
    if (rc) return rc;
    uint8_t raw_id[16];
    cs_crypto_random(raw_id, sizeof raw_id);
    cs_crypto_hex(raw_id, sizeof raw_id, id);
    case_seal c = {0};
    rc = case_seal_make(r, in, id, text, &c, err);

    /* 1. The intent, committed before the escrow exists: a crash after the
     * escrow and before the case row leaves this, and recovery refunds. */
    sqlite3 *db = store_acquire(r->opt.st);
    intent it = {.op = "request", .commitment = c.commitment};
    if (!rc) rc = intent_put(r, db, id, &it, err);
    bool intended = !rc;
    /* Not held across the ledger's block commit: other requests need it. */
    store_release(r->opt.st, db);
    REVIEW_CRASH_POINT("review_after_request_intent");
    /* 2. The escrow. */
    ledger_receipt receipt;
    if (!rc) {
        ledger_tx tx = {.kind = LEDGER_TX_REVIEW_REQUEST};
        memcpy(tx.u.review.org, in->org, LEDGER_KEY);
        memcpy(tx.u.review.commitment, c.commitment, LEDGER_HASH);
        tx.u.review.price = (uint64_t)offer.price;
        rc = ledger_sign_submit(r->opt.led, &tx, in->wallet_sk, &receipt, err);
    }
    db = store_acquire(r->opt.st);
    REVIEW_CRASH_POINT("review_after_escrow");
    /* 3. The case row. */
    if (!rc) rc = case_store(r, db, in, id, &offer, receipt.txid, &c, err);
    if (rc && intended) rc = request_resolve(r, db, in, id, &offer, &c, rc);
    store_release(r->opt.st, db);
    case_seal_free(&c);
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
    sqlite3_stmt *q = NULL;
    core_status rc =
        store_prepare(db, "SELECT state, org_key, request_txid, owner FROM review_cases WHERE id = ?", &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, id ? id : "", -1, SQLITE_STATIC);
        int step = sqlite3_step(q);
        if (step == SQLITE_ROW) {
            snprintf(h->state, sizeof h->state, "%s", (const char *)sqlite3_column_text(q, 0));
            if (sqlite3_column_bytes(q, 1) == LEDGER_KEY) memcpy(h->org, sqlite3_column_blob(q, 1), LEDGER_KEY);
            if (sqlite3_column_bytes(q, 2) == LEDGER_HASH) memcpy(h->request, sqlite3_column_blob(q, 2), LEDGER_HASH);
            h->owner = sqlite3_column_int64(q, 3);
            if ((owner > 0 && h->owner != owner) || (org && memcmp(org, h->org, LEDGER_KEY)))
                rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such review case");
        } else if (step == SQLITE_DONE) {
            rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such review case");
        } else {
            rc = store_error(db, err);
        }
    }
    sqlite3_finalize(q);
    return rc;
}

/* The row's side of a close (settle or refund), as the case ends in state
 * with txid (zero: not known, left NULL). When there is no answer the case
 * copy and both key copies go (the answer needs them, so an answered case
 * keeps them, but never the organisation's key copy). Drops the intent in
 * the same transaction. */
typedef struct {
    const char *state;
    int64_t now;
    const uint8_t *txid;
    const uint8_t *answer;
    size_t answer_len;
    const char *reason;
} close_row;

static void bind_close(sqlite3_stmt *q, const void *ud) {
    const close_row *c = ud;
    static const uint8_t zero[LEDGER_HASH];
    sqlite3_bind_text(q, 2, c->state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, c->now);
    if (c->txid && memcmp(c->txid, zero, LEDGER_HASH)) sqlite3_bind_blob(q, 4, c->txid, LEDGER_HASH, SQLITE_STATIC);
    if (c->reason) sqlite3_bind_text(q, 5, c->reason, -1, SQLITE_STATIC);
    if (c->answer) sqlite3_bind_blob(q, 6, c->answer, (int)c->answer_len, SQLITE_STATIC);
}

static core_status finish_close(sqlite3 *db, const char *id, const close_row *c, core_error *err) {
    return finish_step(db, id,
                       c->answer ? "UPDATE review_cases SET state = ?2, closed_at = ?3, close_txid = ?4, reason = ?5, "
                                   "answer = ?6, server_key = NULL WHERE id = ?1 AND state = 'waiting'"
                                 : "UPDATE review_cases SET state = ?2, closed_at = ?3, close_txid = ?4, reason = ?5, "
                                   "case_blob = NULL, person_key = NULL, server_key = NULL "
                                   "WHERE id = ?1 AND state = 'waiting'",
                       bind_close, c, err);
}

static void feed_answer(review *r, const char *id, const char *condition, const uint8_t *pt, size_t ptlen);

/* What an answer feeds (opt->on_answered): its condition code and the case
 * copy's plaintext. */
typedef struct {
    const char *condition;
    const uint8_t *pt;
    size_t ptlen;
} feed_args;

/* A step after a close's intent failed: the ledger says how far it got.
 * Escrow still open → the intent goes and the error stands. Closed this
 * way → the row is finished now (feed, when not NULL, is an answer not yet
 * handed on) and the call succeeds as a clean one would. Closed the other
 * way (a revocation meanwhile) → the row follows the ledger as recovery
 * does, and the error stands. If the ledger cannot say, or the row cannot
 * be written now either, the intent stays for review_recover. */
static core_status close_resolve(review *r, sqlite3 *db, const char *id, const intent *it,
                                 const uint8_t txid[LEDGER_HASH], const feed_args *feed, core_status failed) {
    core_error e = {0};
    ledger_escrow es;
    if (ledger_get_escrow(r->opt.led, it->request, &es, &e)) return failed;
    if (es.state == LEDGER_ESCROW_OPEN) {
        intent_drop(db, id, NULL);
        return failed;
    }
    bool settle = !strcmp(it->op, "settle");
    if ((es.state == LEDGER_ESCROW_SETTLED) != settle) {
        recover_one(r, db, id, it, &e);
        return failed;
    }
    if (feed) feed_answer(r, id, feed->condition, feed->pt, feed->ptlen);
    close_row c = {it->target, now_of(r), txid, it->answer, it->answer_len, it->reason};
    if (finish_close(db, id, &c, &e)) return failed;
    if (!settle && r->opt.on_ended) r->opt.on_ended(r->opt.answered_ud, id);
    return CORE_OK;
}

/* Close a waiting case: intent, ledger (settle or refund), then the row. A
 * settle with feed hands the answer on between the ledger and the row, while
 * the settle intent still stands: a crash before the hand-over is fed by
 * recovery (which finishes the intent), one after it finds the feed done
 * (what it feeds takes each answer once). A failed step is resolved at
 * once (close_resolve). */
static core_status close_case(review *r, sqlite3 *db, const char *id, const case_head *h, ledger_tx_kind kind,
                              const char *state, const uint8_t *answer, size_t answer_len, const char *reason,
                              const feed_args *feed, core_error *err) {
    if (strcmp(h->state, "waiting"))
        return core_fail(err, CORE_ERR_CONFLICT, "state", "this case is %s, no longer waiting", h->state);
    bool settle = kind == LEDGER_TX_REVIEW_SETTLE;
    intent it = {.op = settle ? "settle" : "refund",
                 .request = h->request,
                 .target = state,
                 .answer = answer,
                 .answer_len = answer_len,
                 .reason = reason};
    core_status rc = intent_put(r, db, id, &it, err);
    if (rc) return rc;
    REVIEW_CRASH_POINT(settle ? "review_after_settle_intent" : "review_after_refund_intent");
    uint8_t txid[LEDGER_HASH];
    rc = close_escrow(r, kind, h->request, txid, err);
    bool fed = false;
    if (!rc) {
        REVIEW_CRASH_POINT(settle ? "review_after_settle" : "review_after_refund");
        if (feed) {
            feed_answer(r, id, feed->condition, feed->pt, feed->ptlen);
            fed = true;
            REVIEW_CRASH_POINT("review_after_feed");
        }
        close_row c = {state, now_of(r), txid, answer, answer_len, reason};
        rc = finish_close(db, id, &c, err);
    }
    if (rc) return close_resolve(r, db, id, &it, txid, fed ? NULL : feed, rc);
    if (!settle && r->opt.on_ended) r->opt.on_ended(r->opt.answered_ud, id);
    return CORE_OK;
}

core_status review_case_withdraw(review *r, int64_t owner, const char *id, core_error *err) {
    core_status rc = need_cases(r, err);
    if (rc) return rc;
    sqlite3 *db = store_acquire(r->opt.st);
    case_head h;
    rc = load_head(db, id, owner, NULL, &h, err);
    if (!rc) rc = close_case(r, db, id, &h, LEDGER_TX_REVIEW_REFUND, "withdrawn", NULL, 0, NULL, NULL, err);
    store_release(r->opt.st, db);
    return rc;
}

/* The revocation's row side: the case's consent is revoked (and a case still
 * waiting was refunded by the same ledger transaction: it is withdrawn and
 * destroyed). The organisation's key copy goes in every case. */
typedef struct {
    int64_t now;
    const uint8_t *txid;
} revoke_row;

static void bind_revoke(sqlite3_stmt *q, const void *ud) {
    const revoke_row *v = ud;
    static const uint8_t zero[LEDGER_HASH];
    sqlite3_bind_int64(q, 2, v->now);
    if (v->txid && memcmp(v->txid, zero, LEDGER_HASH)) sqlite3_bind_blob(q, 3, v->txid, LEDGER_HASH, SQLITE_STATIC);
}

static core_status finish_revoke(sqlite3 *db, const char *id, const revoke_row *v, core_error *err) {
    return finish_step(db, id,
                       "UPDATE review_cases SET consent_revoked_at = ?2, revoke_txid = ?3, server_key = NULL, "
                       "closed_at = CASE state WHEN 'waiting' THEN ?2 ELSE closed_at END, "
                       "close_txid = CASE state WHEN 'waiting' THEN ?3 ELSE close_txid END, "
                       "case_blob = CASE state WHEN 'waiting' THEN NULL ELSE case_blob END, "
                       "person_key = CASE state WHEN 'waiting' THEN NULL ELSE person_key END, "
                       "state = CASE state WHEN 'waiting' THEN 'withdrawn' ELSE state END "
                       "WHERE id = ?1 AND consent_revoked_at IS NULL",
                       bind_revoke, v, err);
}

/* A step after a revocation's intent failed: the ledger says whether the
 * consent is revoked. Yes → the row is finished now and the call succeeds
 * as a clean one would; no → the intent goes and the error stands. If the
 * ledger cannot say, or the row cannot be written now either, the intent
 * stays for review_recover. txid: the revocation's, when known. */
static core_status revoke_resolve(review *r, sqlite3 *db, const char *id, const intent *it, const uint8_t *txid,
                                  core_status failed) {
    core_error e = {0};
    ledger_consent cn;
    if (ledger_get_consent(r->opt.led, it->request, &cn, NULL, &e)) return failed;
    if (!cn.revoked_height) {
        intent_drop(db, id, NULL);
        return failed;
    }
    revoke_row v = {now_of(r), txid};
    return finish_revoke(db, id, &v, &e) ? failed : CORE_OK;
}

core_status review_case_revoke(review *r, int64_t owner, const uint8_t wallet_sk[LEDGER_SECRET], const char *id,
                               core_error *err) {
    core_status rc = need_cases(r, err);
    if (rc) return rc;
    sqlite3 *db = store_acquire(r->opt.st);
    case_head h;
    ledger_consent cn;
    uint8_t payer[LEDGER_KEY];
    rc = load_head(db, id, owner, NULL, &h, err);
    if (!rc) rc = ledger_get_consent(r->opt.led, h.request, &cn, payer, err);
    /* Another wallet's consent cannot be this person's case (a wallet is
     * per account): as not found. */
    if (!rc && memcmp(payer, wallet_sk + 32, LEDGER_KEY))
        rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such review request");
    if (!rc && cn.revoked_height)
        rc = core_fail(err, CORE_ERR_CONFLICT, "consent", "this case's consent has already ended (the case is %s)",
                       h.state);
    intent it = {.op = "revoke", .request = h.request};
    if (!rc) rc = intent_put(r, db, id, &it, err);
    if (!rc) {
        REVIEW_CRASH_POINT("review_after_revoke_intent");
        ledger_tx tx = {.kind = LEDGER_TX_REVOKE};
        memcpy(tx.u.revoke.grant, h.request, LEDGER_HASH);
        ledger_receipt receipt;
        rc = ledger_sign_submit(r->opt.led, &tx, wallet_sk, &receipt, err);
        const uint8_t *txid = rc ? NULL : receipt.txid;
        if (!rc) {
            REVIEW_CRASH_POINT("review_after_revoke");
            revoke_row v = {now_of(r), txid};
            rc = finish_revoke(db, id, &v, err);
        }
        if (rc) rc = revoke_resolve(r, db, id, &it, txid, rc);
    }
    store_release(r->opt.st, db);
    return rc;
}

/* ---- recovery ---- */

typedef struct {
    char id[REVIEW_CASE_ID_TEXT];
    char op[16], target[16];
    uint8_t commitment[LEDGER_HASH], request[LEDGER_HASH];
    uint8_t *answer;
    size_t answer_len;
    char *reason;
} intent_row;

static void intent_rows_free(intent_row *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(v[i].answer);
        free(v[i].reason);
    }
    free(v);
}

static core_status intent_rows(sqlite3 *db, intent_row **out, size_t *n, core_error *err) {
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(
        db, "SELECT case_id, op, commitment, request_txid, target, answer, reason FROM review_intents", &q, err);
    while (!rc) {
        int step = sqlite3_step(q);
        if (step == SQLITE_DONE) break;
        if (step != SQLITE_ROW) {
            rc = store_error(db, err);
            break;
        }
        if (*n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            void *g = realloc(*out, ncap * sizeof **out);
            if (!g) {
                rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
                break;
            }
            *out = g;
            cap = ncap;
        }
        intent_row *v = &(*out)[*n];
        memset(v, 0, sizeof *v);
        (*n)++;
        snprintf(v->id, sizeof v->id, "%s", (const char *)sqlite3_column_text(q, 0));
        snprintf(v->op, sizeof v->op, "%s", (const char *)sqlite3_column_text(q, 1));
        if (sqlite3_column_bytes(q, 2) == LEDGER_HASH) memcpy(v->commitment, sqlite3_column_blob(q, 2), LEDGER_HASH);
        if (sqlite3_column_bytes(q, 3) == LEDGER_HASH) memcpy(v->request, sqlite3_column_blob(q, 3), LEDGER_HASH);
        if (sqlite3_column_type(q, 4) != SQLITE_NULL)
            snprintf(v->target, sizeof v->target, "%s", (const char *)sqlite3_column_text(q, 4));
        if (sqlite3_column_type(q, 5) != SQLITE_NULL) {
            v->answer_len = (size_t)sqlite3_column_bytes(q, 5);
            v->answer = malloc(v->answer_len ? v->answer_len : 1);
            if (!v->answer) {
                rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
                break;
            }
            memcpy(v->answer, sqlite3_column_blob(q, 5), v->answer_len);
        }
        if (sqlite3_column_type(q, 6) != SQLITE_NULL) {
            v->reason = strdup((const char *)sqlite3_column_text(q, 6));
            if (!v->reason) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        }
    }
    sqlite3_finalize(q);
    if (rc) {
        intent_rows_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

static bool case_exists(sqlite3 *db, const char *id) {
    case_head h;
    return load_head(db, id, 0, NULL, &h, NULL) == CORE_OK;
}

/* Feed an answer settled before a crash: the condition from the answer the
 * intent kept, the photo from the case copy, both opened with the
 * organisation's key copy (the row keeps it until the intent is finished).
 * Best effort: a case that cannot be read feeds nothing. */
static core_status open_under(const uint8_t wrap[32], const char *id, const void *kblob, size_t klen, const void *blob,
                              size_t blen, uint8_t **out, size_t *outlen, uint8_t *case_key, core_error *err);

static void refeed(review *r, sqlite3 *db, const char *id, const uint8_t *answer, size_t answer_len) {
    if (!r->opt.on_answered) return;
    sqlite3_stmt *q = NULL;
    uint8_t *pt = NULL, *at = NULL, key[32];
    size_t ptlen = 0, atlen = 0;
    core_status rc = store_prepare(db, "SELECT server_key, case_blob FROM review_cases WHERE id = ?", &q, NULL);
    if (!rc) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL &&
            sqlite3_column_type(q, 1) != SQLITE_NULL)
            rc = open_under(r->server_key, id, sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0),
                            sqlite3_column_blob(q, 1), (size_t)sqlite3_column_bytes(q, 1), &pt, &ptlen, key, NULL);
        else
            rc = CORE_ERR_NOT_FOUND;
    }
    sqlite3_finalize(q);
    if (!rc) rc = cs_crypto_open(key, id, strlen(id), answer, answer_len, &at, &atlen, NULL);
    cs_crypto_wipe(key, sizeof key);
    json_t *a = rc ? NULL : core_json_loadb((const char *)at, atlen, 0, NULL, NULL);
    const char *condition = json_string_value(json_object_get(a, "condition"));
    if (condition) feed_answer(r, id, condition, pt, ptlen);
    json_decref(a);
    if (at) {
        cs_crypto_wipe(at, atlen);
        free(at);
    }
    if (pt) {
        cs_crypto_wipe(pt, ptlen);
        free(pt);
    }
}

/* One intent left by a crash (or by a failure that could not resolve it). */
static core_status recover_one(review *r, sqlite3 *db, const char *id, const intent *v, core_error *err) {
    ledger_escrow e;
    core_status rc;
    if (!strcmp(v->op, "request")) {
        uint8_t txid[LEDGER_HASH];
        rc = ledger_find_commitment(r->opt.led, v->commitment, txid, err);
        if (rc == CORE_ERR_NOT_FOUND) return intent_drop(db, id, err); /* never reached the ledger */
        if (rc) return rc;
        if (!case_exists(db, id)) {
            /* Escrowed for a case that was never kept: refund (the case copy
             * was only in the crashed process's memory). */
            if ((rc = ledger_get_escrow(r->opt.led, txid, &e, err))) return rc;
            uint8_t t[LEDGER_HASH];
            if (e.state == LEDGER_ESCROW_OPEN && (rc = close_escrow(r, LEDGER_TX_REVIEW_REFUND, txid, t, err)))
                return rc;
        }
        return intent_drop(db, id, err);
    }
    if (!strcmp(v->op, "revoke")) {
        ledger_consent cn;
        if ((rc = ledger_get_consent(r->opt.led, v->request, &cn, NULL, err))) return rc;
        /* Only the person's session can sign a revocation: one the ledger
         * does not hold is dropped (they may revoke again). One it holds
         * is finished; its txid is not known here, so none is recorded. */
        if (!cn.revoked_height) return intent_drop(db, id, err);
        revoke_row row = {now_of(r), NULL};
        return finish_revoke(db, id, &row, err);
    }
    /* settle / refund: complete on the ledger what the intent began. */
    bool settle = !strcmp(v->op, "settle");
    if ((rc = ledger_get_escrow(r->opt.led, v->request, &e, err))) return rc;
    uint8_t txid[LEDGER_HASH] = {0};
    if (e.state == LEDGER_ESCROW_OPEN &&
        (rc = close_escrow(r, settle ? LEDGER_TX_REVIEW_SETTLE : LEDGER_TX_REVIEW_REFUND, v->request, txid, err)))
        return rc;
    if (e.state != LEDGER_ESCROW_OPEN && (e.state == LEDGER_ESCROW_SETTLED) != settle) {
        /* Closed the other way (not by these steps, which take one case at
         * a time): the row follows the ledger, without the answer. */
        close_row c = {e.state == LEDGER_ESCROW_SETTLED ? "answered" : "withdrawn", now_of(r), NULL, NULL, 0, NULL};
        return finish_close(db, id, &c, err);
    }
    /* Settled by this intent: what the answer feeds may not have been fed
     * (a crash between the ledger and the row); feeding twice is harmless. */
    if (settle && v->answer) refeed(r, db, id, v->answer, v->answer_len);
    close_row c = {v->target ? v->target : (settle ? "answered" : "withdrawn"),
                   now_of(r),
                   txid,
                   settle ? v->answer : NULL,
                   v->answer_len,
                   v->reason};
    rc = finish_close(db, id, &c, err);
    if (!rc && !settle && r->opt.on_ended) r->opt.on_ended(r->opt.answered_ud, id);
    return rc;
}

/* A waiting case whose escrow is no longer open (a crash before intents
 * existed, or a revocation by another route): the row follows the ledger. */
static core_status reconcile_waiting(review *r, sqlite3 *db, int *fixed, core_error *err) {
    sqlite3_stmt *q = NULL;
    char(*ids)[REVIEW_CASE_ID_TEXT] = NULL;
    uint8_t(*reqs)[LEDGER_HASH] = NULL;
    size_t n = 0, cap = 0;
    core_status rc = store_prepare(db, "SELECT id, request_txid FROM review_cases WHERE state = 'waiting'", &q, err);
    while (!rc && sqlite3_step(q) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            void *g1 = realloc(ids, ncap * sizeof *ids);
            if (g1) ids = g1;
            void *g2 = g1 ? realloc(reqs, ncap * sizeof *reqs) : NULL;
            if (g2) reqs = g2;
            if (!g1 || !g2) {
                rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
                break;
            }
            cap = ncap;
        }
        snprintf(ids[n], REVIEW_CASE_ID_TEXT, "%s", (const char *)sqlite3_column_text(q, 0));
        memset(reqs[n], 0, LEDGER_HASH);
        if (sqlite3_column_bytes(q, 1) == LEDGER_HASH) memcpy(reqs[n], sqlite3_column_blob(q, 1), LEDGER_HASH);
        n++;
    }
    sqlite3_finalize(q);
    for (size_t i = 0; !rc && i < n; i++) {
        ledger_escrow e;
        core_error e1 = {0};
        core_status one = ledger_get_escrow(r->opt.led, reqs[i], &e, &e1);
        if (one == CORE_ERR_NOT_FOUND || (!one && e.state == LEDGER_ESCROW_OPEN)) continue;
        if (one) {
            rc = one;
            if (err) *err = e1;
            break;
        }
        close_row c = {e.state == LEDGER_ESCROW_SETTLED ? "answered" : "withdrawn", now_of(r), NULL, NULL, 0, NULL};
        if (!(rc = finish_close(db, ids[i], &c, err))) (*fixed)++;
    }
    free(ids);
    free(reqs);
    return rc;
}

core_status review_recover(review *r, int *resolved, core_error *err) {
    int done = 0;
    if (resolved) *resolved = 0;
    if (!r->opt.node_sk) return CORE_OK;
    sqlite3 *db = store_acquire(r->opt.st);
    intent_row *v = NULL;
    size_t n = 0;
    core_status rc = intent_rows(db, &v, &n, err);
    for (size_t i = 0; !rc && i < n; i++) {
        intent it = {.op = v[i].op,
                     .commitment = v[i].commitment,
                     .request = v[i].request,
                     .target = v[i].target[0] ? v[i].target : NULL,
                     .answer = v[i].answer,
                     .answer_len = v[i].answer_len,
                     .reason = v[i].reason};
        if (!(rc = recover_one(r, db, v[i].id, &it, err))) done++;
    }
    intent_rows_free(v, n);
    if (!rc) rc = reconcile_waiting(r, db, &done, err);
    store_release(r->opt.st, db);
    if (resolved) *resolved = done;
    return rc;
}

core_status review_sweep(review *r, int *refunded, core_error *err) {
    if (refunded) *refunded = 0;
    if (!r->opt.node_sk) return CORE_OK;
    sqlite3 *db = store_acquire(r->opt.st);
    sqlite3_stmt *q = NULL;
    char(*ids)[REVIEW_CASE_ID_TEXT] = NULL;
    size_t n = 0, cap = 0;
    core_status rc = store_prepare(
        db, "SELECT id FROM review_cases WHERE state = 'waiting' AND deadline <= ? ORDER BY deadline LIMIT 100", &q,
        err);
    if (!rc) {
        sqlite3_bind_int64(q, 1, now_of(r));
        while (!rc && sqlite3_step(q) == SQLITE_ROW) {
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
            snprintf(ids[n++], REVIEW_CASE_ID_TEXT, "%s", (const char *)sqlite3_column_text(q, 0));
        }
    }
    sqlite3_finalize(q);
    for (size_t i = 0; !rc && i < n; i++) {
        case_head h;
        core_error e = {0};
        /* A case answered or withdrawn since the SELECT is refused as not
         * waiting: skip it, it has its ending. */
        core_status one = load_head(db, ids[i], 0, NULL, &h, &e);
        if (!one) one = close_case(r, db, ids[i], &h, LEDGER_TX_REVIEW_REFUND, "expired", NULL, 0, NULL, NULL, &e);
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
/* The case key (wrapped under wrap), then the blob under it; case_key (NULL:
 * not wanted) receives the key itself. */
static core_status open_under(const uint8_t wrap[32], const char *id, const void *kblob, size_t klen, const void *blob,
                              size_t blen, uint8_t **out, size_t *outlen, uint8_t *case_key, core_error *err) {
    uint8_t *key = NULL;
    size_t keylen = 0;
    size_t idlen = strlen(id);
    core_status rc = cs_crypto_open(wrap, id, idlen, kblob, klen, &key, &keylen, err);
    if (!rc && keylen != 32) rc = core_fail(err, CORE_ERR_CRYPTO, NULL, "a case key is damaged");
    if (!rc) rc = cs_crypto_open(key, id, idlen, blob, blen, out, outlen, err);
    if (!rc && case_key) memcpy(case_key, key, 32);
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
    sqlite3_stmt *q = NULL;
    if (!a || store_prepare(db,
                            "SELECT clinician, opened_at FROM review_case_openings WHERE case_id = ? "
                            "ORDER BY opened_at, rowid",
                            &q, NULL)) {
        sqlite3_finalize(q);
        return a;
    }
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    while (sqlite3_step(q) == SQLITE_ROW) {
        char t[32];
        core_format_time(sqlite3_column_int64(q, 1), t);
        json_array_append_new(
            a, json_pack("{s:s, s:s}", "clinician", (const char *)sqlite3_column_text(q, 0), "opened_at", t));
    }
    sqlite3_finalize(q);
    return a;
}

#define CASE_COLUMNS                                                                                            \
    "id, org_key, price, state, created_at, deadline, closed_at, request_txid, close_txid, reason, case_blob, " \
    "person_key, answer, consent_revoked_at, revoke_txid, record_id"

/* The case-scoped consent (ledger purpose clinician_review, keyed by the
 * request's txid): active while the case waits or after its answer until
 * revoked; a refund (withdrawn, returned, expired) ends it on the ledger. */
static json_t *consent_json(sqlite3_stmt *q) {
    const char *state = (const char *)sqlite3_column_text(q, 3);
    bool revoked = sqlite3_column_type(q, 13) != SQLITE_NULL;
    char at[32];
    core_format_time(sqlite3_column_int64(q, 13), at);
    const char *status = revoked                                                     ? "revoked"
                         : (!strcmp(state, "waiting") || !strcmp(state, "answered")) ? "active"
                                                                                     : "ended";
    return json_pack("{s:o, s:s, s:o, s:o}", "id", hex_json(sqlite3_column_blob(q, 7), sqlite3_column_bytes(q, 7)),
                     "status", status, "revoked_at", revoked ? json_string(at) : json_null(), "revoke_txid",
                     hex_json(sqlite3_column_blob(q, 14), sqlite3_column_bytes(q, 14)));
}

/* The person's view of one row; with data_key, the case and answer too. */
static json_t *person_row(sqlite3 *db, sqlite3_stmt *q, const uint8_t *data_key) {
    char created[32], deadline[32], closed[32];
    const char *id = (const char *)sqlite3_column_text(q, 0);
    core_format_time(sqlite3_column_int64(q, 4), created);
    core_format_time(sqlite3_column_int64(q, 5), deadline);
    core_format_time(sqlite3_column_int64(q, 6), closed);
    json_t *o = json_pack(
        "{s:s, s:{s:o}, s:I, s:s, s:s, s:s, s:o, s:o, s:o, s:o}", "id", id, "organisation", "key",
        hex_json(sqlite3_column_blob(q, 1), sqlite3_column_bytes(q, 1)), "price",
        (json_int_t)sqlite3_column_int64(q, 2), "state", (const char *)sqlite3_column_text(q, 3), "created_at", created,
        "answer_due", deadline, "closed_at",
        sqlite3_column_type(q, 6) == SQLITE_NULL ? json_null() : json_string(closed), "request_txid",
        hex_json(sqlite3_column_blob(q, 7), sqlite3_column_bytes(q, 7)), "close_txid",
        hex_json(sqlite3_column_blob(q, 8), sqlite3_column_bytes(q, 8)), "reason",
        sqlite3_column_type(q, 9) == SQLITE_NULL ? json_null() : json_string((const char *)sqlite3_column_text(q, 9)));
    /* The owner's own link back to their entry (person_row is never a
     * clinician's view: those are review_queue and review_case_open). */
    if (o && json_object_set_new(o, "record_id",
                                 sqlite3_column_type(q, 15) == SQLITE_NULL
                                     ? json_null()
                                     : json_string((const char *)sqlite3_column_text(q, 15)))) {
        json_decref(o);
        return NULL;
    }
    if (o && json_object_set_new(o, "consent", consent_json(q))) {
        json_decref(o);
        return NULL;
    }
    if (!o || !data_key) return o;
    const void *kb = sqlite3_column_blob(q, 11);
    size_t kl = (size_t)sqlite3_column_bytes(q, 11);
    uint8_t *pt = NULL;
    size_t ptlen = 0;
    if (kb && sqlite3_column_type(q, 10) != SQLITE_NULL &&
        !open_under(data_key, id, kb, kl, sqlite3_column_blob(q, 10), (size_t)sqlite3_column_bytes(q, 10), &pt, &ptlen,
                    NULL, NULL)) {
        bool ok = !json_object_set_new(o, "case", core_json_loadb((const char *)pt, ptlen, 0, NULL, NULL));
        cs_crypto_wipe(pt, ptlen);
        free(pt);
        if (!ok) { /* out of memory (the text is ours, sealed): no answer rather than half of one */
            json_decref(o);
            return NULL;
        }
    }
    if (kb && sqlite3_column_type(q, 12) != SQLITE_NULL &&
        !open_under(data_key, id, kb, kl, sqlite3_column_blob(q, 12), (size_t)sqlite3_column_bytes(q, 12), &pt, &ptlen,
                    NULL, NULL)) {
        bool ok = !json_object_set_new(o, "answer", core_json_loadb((const char *)pt, ptlen, 0, NULL, NULL));
        cs_crypto_wipe(pt, ptlen);
        free(pt);
        if (!ok) {
            json_decref(o);
            return NULL;
        }
    }
    json_object_set_new(o, "openings", openings_json(db, id));
    return o;
}

core_status review_case_list(review *r, int64_t owner, json_t **out, core_error *err) {
    *out = NULL;
    review_sweep(r, NULL, NULL);
    sqlite3 *db = store_acquire(r->opt.st);
    sqlite3_stmt *q = NULL;
    json_t *a = json_array();
    core_status rc = a ? CORE_OK : core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    if (!rc)
        rc = store_prepare(db, "SELECT " CASE_COLUMNS " FROM review_cases WHERE owner = ? ORDER BY created_at DESC, id",
                           &q, err);
    if (!rc) {
        sqlite3_bind_int64(q, 1, owner);
        while (sqlite3_step(q) == SQLITE_ROW) json_array_append_new(a, person_row(db, q, NULL));
    }
    sqlite3_finalize(q);
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
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db, "SELECT " CASE_COLUMNS " FROM review_cases WHERE id = ? AND owner = ?", &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, id ? id : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, owner);
        if (sqlite3_step(q) == SQLITE_ROW) {
            *out = person_row(db, q, data_key);
            if (!*out) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        } else {
            rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such review request");
        }
    }
    sqlite3_finalize(q);
    store_release(r->opt.st, db);
    return rc;
}

core_status review_queue(review *r, const uint8_t org[LEDGER_KEY], json_t **out, core_error *err) {
    *out = NULL;
    core_status rc = review_sweep(r, NULL, err);
    if (rc) return rc;
    int64_t now = now_of(r);
    sqlite3 *db = store_acquire(r->opt.st);
    sqlite3_stmt *q = NULL;
    json_t *a = json_array();
    rc = a ? CORE_OK : core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    /* Only what a queue needs: the case id, its price and how long it has
     * waited. No owner, no content, no absolute time. */
    if (!rc)
        rc = store_prepare(db,
                           "SELECT id, price, created_at, deadline FROM review_cases "
                           "WHERE org_key = ? AND state = 'waiting' ORDER BY created_at, id",
                           &q, err);
    if (!rc) {
        sqlite3_bind_blob(q, 1, org, LEDGER_KEY, SQLITE_STATIC);
        while (sqlite3_step(q) == SQLITE_ROW)
            json_array_append_new(a, json_pack("{s:s, s:I, s:I, s:I}", "id", (const char *)sqlite3_column_text(q, 0),
                                               "price", (json_int_t)sqlite3_column_int64(q, 1), "waiting_seconds",
                                               (json_int_t)(now - sqlite3_column_int64(q, 2)), "seconds_left",
                                               (json_int_t)(sqlite3_column_int64(q, 3) - now)));
    }
    sqlite3_finalize(q);
    store_release(r->opt.st, db);
    if (rc) {
        json_decref(a);
        return rc;
    }
    *out = a;
    return CORE_OK;
}

/* The waiting case of org, opened with the organisation's key copy. */
/* A waiting case of org: its head, the case copy (pt) and, when case_key is
 * not NULL, the case key — all from one read of the row, so a revocation or
 * withdrawal committed meanwhile is either seen whole (not found) or not at
 * all; a second read could find the copy gone (that was a 500 under the
 * crash test's traffic). */
static core_status org_case(review *r, sqlite3 *db, const uint8_t org[LEDGER_KEY], const char *id, case_head *h,
                            uint8_t **pt, size_t *ptlen, uint8_t *case_key, core_error *err) {
    core_status rc = load_head(db, id, 0, org, h, err);
    if (rc) return rc;
    if (strcmp(h->state, "waiting")) return core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such waiting review case");
    sqlite3_stmt *q = NULL;
    rc = store_prepare(db, "SELECT server_key, case_blob FROM review_cases WHERE id = ?", &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL &&
            sqlite3_column_type(q, 1) != SQLITE_NULL)
            rc = open_under(r->server_key, id, sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0),
                            sqlite3_column_blob(q, 1), (size_t)sqlite3_column_bytes(q, 1), pt, ptlen, case_key, err);
        else
            rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such waiting review case");
    }
    sqlite3_finalize(q);
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
    rc = org_case(r, db, org, id, &h, &pt, &ptlen, NULL, err);
    /* The case copy to hand out, made first: the opening logged below is
     * then the last thing that can fail, so a call told "failed" has logged
     * nothing, and one that logged hands the case out. */
    if (!rc) {
        *out = core_json_loadb((const char *)pt, ptlen, 0, NULL, NULL);
        if (!*out || json_object_set_new(*out, "id", json_string(id)))
            rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    /* Log the opening before handing the case out: an opening that is not
     * logged never shows the case. */
    sqlite3_stmt *q = NULL;
    if (!rc)
        rc = store_prepare(db, "INSERT INTO review_case_openings(case_id, clinician, opened_at) VALUES (?, ?, ?)", &q,
                           err);
    if (!rc) {
        char who[24];
        pseudonym(r, clinician_id, who);
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, who, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(q, 3, now_of(r));
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    store_release(r->opt.st, db);
    if (rc) {
        json_decref(*out);
        *out = NULL;
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
    json_t *c = core_json_loadb((const char *)pt, ptlen, 0, NULL, NULL);
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
    char *text = a ? core_json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(a);
    if (!text) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");

    sqlite3 *db = store_acquire(r->opt.st);
    case_head h;
    uint8_t *pt = NULL, *sealed = NULL;
    size_t ptlen = 0, sealed_len = 0;
    /* The answer is sealed under the case key (the person opens it with
     * their copy of that key next time they read the request): the server
     * cannot seal anything under the person's data key without their
     * session. */
    uint8_t key[32];
    rc = org_case(r, db, org, id, &h, &pt, &ptlen, key, err);
    if (!rc) rc = cs_crypto_seal(key, id, strlen(id), text, strlen(text), &sealed, &sealed_len, err);
    cs_crypto_wipe(key, sizeof key);
    feed_args feed = {condition, pt, ptlen};
    if (!rc) rc = close_case(r, db, id, &h, LEDGER_TX_REVIEW_SETTLE, "answered", sealed, sealed_len, NULL, &feed, err);
    store_release(r->opt.st, db);
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
    if (!rc) rc = close_case(r, db, id, &h, LEDGER_TX_REVIEW_REFUND, "returned", NULL, 0, reason, NULL, err);
    store_release(r->opt.st, db);
    return rc;
}
