/* share — a person's screening result into the pool, and the rewards that
 * follow it to the ledger in batches. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "share/internal.h"

typedef struct {
    int64_t now;
    ledger_consent found;
    bool hit;
} consent_pick;

/* The first consent that is active now, for public-health surveillance, to
 * the pool (grantee all zero), and covers screening results. A consent for
 * research, one covering other categories only, or one given to an
 * organisation (a data request's, issue 14) does not let the result in. */
static void pick_consent(void *ud, const ledger_consent *cn) {
    consent_pick *p = ud;
    static const uint8_t pool[LEDGER_KEY] = {0};
    if (p->hit || cn->revoked_height || (int64_t)cn->expires <= p->now) return;
    if (memcmp(cn->grantee, pool, LEDGER_KEY) != 0) return;
    if (cn->purpose != LEDGER_PURPOSE_SURVEILLANCE || !(cn->scope & (1u << LEDGER_CAT_SCREENING))) return;
    p->found = *cn;
    p->hit = true;
}

/* What the vault check needs inside the pool's transaction. */
typedef struct {
    share *s;
    const share_contribution_input *in;
    share_vault *v;
    share_vault_entry *entry;
} vault_write;

/* Runs once the result is known to be new and its week open, so a result
 * shared twice is still "already shared" and a closed week still
 * "week_closed": the photo and the cap are checked against the person's
 * own vault only, then the vault gains the entry, all in one transaction. */
static core_status within_contribute(void *ud, sqlite3 *db, core_error *err) {
    vault_write *w = ud;
    const share_options *o = &w->s->opt;
    int64_t earned = 0;
    for (size_t i = 0; i < w->v->n; i++) {
        const share_vault_entry *e = &w->v->e[i];
        if (w->in->has_phash && e->has_phash && __builtin_popcountll(e->phash ^ w->in->phash) <= o->photo_distance)
            return core_fail(err, CORE_ERR_CONFLICT, "photo",
                             "this photo, or a copy of it, was already shared: the same photo is counted and "
                             "rewarded once; take a photo of a new skin problem to share again");
        if (e->day == w->entry->day) earned += (int64_t)e->reward;
    }
    if (o->daily_cap && earned + (int64_t)w->entry->reward > o->daily_cap)
        return core_fail(err, CORE_ERR_CONFLICT, "daily_cap",
                         "today's cap on tokens from shared results (%lld) is reached (%lld earned today); "
                         "share again tomorrow (UTC)",
                         (long long)o->daily_cap, (long long)earned);
    core_status rc = share_vault_append(w->v, w->entry, err);
    return rc ? rc : share_vault_store(w->s, db, w->in->owner, w->in->data_key, w->v, err);
}

/* What a pledged answer writes inside the pool's transaction. */
typedef struct {
    share *s;
    const share_contribution_input *in;
    const surveil_contribution *c;
    const uint8_t *tag, *grant;
    uint64_t reward;
} confirm_write;

/* The pledge goes with the count (a second feed of the same answer finds
 * none: refused, nothing counted twice), and the tag reaches the person's
 * inbox with it, so a count is never kept without its way back. */
static core_status within_confirm(void *ud, sqlite3 *db, core_error *err) {
    confirm_write *w = ud;
    const share_pledge *p = w->in->pledge;
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db, "DELETE FROM share_review_pledges WHERE case_id = ?1", &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, w->in->pledge_case, -1, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE)
            rc = store_error(db, err);
        else if (sqlite3_changes(db) != 1)
            rc = core_fail(err, CORE_ERR_CONFLICT, "contribution", "this answer was already contributed");
    }
    sqlite3_finalize(q);
    if (rc || !p->reserved) return rc;
    share_inbox_item it = {.kind = SHARE_INBOX_COUNTED,
                           .owner = p->owner,
                           .week = w->c->week,
                           .reward = w->reward,
                           .age_band = w->c->age_band};
    memcpy(it.ref, p->ref, 16);
    memcpy(it.tag, w->tag, SURVEIL_TAG);
    memcpy(it.grant, w->grant, LEDGER_HASH);
    snprintf(it.condition, sizeof it.condition, "%s", w->c->condition);
    snprintf(it.region, sizeof it.region, "%s", w->c->region);
    rc = share_inbox_post(w->s, db, p->inbox, &it, err);
    cs_crypto_wipe(&it, sizeof it);
    return rc;
}

core_status share_contribute(share *s, const share_contribution_input *in, share_receipt *out, core_error *err) {
    memset(out, 0, sizeof *out);
    if (!in->condition || strlen(in->condition) > SURVEIL_CONDITION_MAX)
        return core_fail(err, CORE_ERR_INVALID, "condition", "not a condition code");
    if (!in->result_id) return core_fail(err, CORE_ERR_INVALID, "id", "the result's id is required");
    consent_pick pick = {.now = in->now};
    core_status rc = ledger_list_consents(s->opt.led, in->wallet, pick_consent, &pick, err);
    if (rc) return rc;
    if (!pick.hit)
        return core_fail(err, CORE_ERR_FORBIDDEN, "consent",
                         "no active public-health consent covers screening results");
    if (!in->region)
        return core_fail(err, CORE_ERR_NOT_FOUND, "region", "no home region: shared data is counted by region");
    if (strlen(in->region) >= sizeof out->contribution.region)
        return core_fail(err, CORE_ERR_INVALID, "region", "not an ISO 3166-2 subdivision code");
    /* The five facts: the week of the screening, never its time. */
    surveil_contribution *sc = &out->contribution;
    if (in->source != SURVEIL_SOURCE_MODEL && in->source != SURVEIL_SOURCE_CLINICIAN)
        return core_fail(err, CORE_ERR_INVALID, "source", "a contribution comes from a screening or a clinician");
    sc->source = in->source;
    snprintf(sc->condition, sizeof sc->condition, "%s", in->condition);
    snprintf(sc->region, sizeof sc->region, "%s", in->region);
    sc->week = surveil_week_of_time(in->created);
    sc->age_band = surveil_age_band(in->birth_year, in->year);
    /* One reward per result: the mark is a keyed hash of wallet and result
     * id (the id zero-padded to 64 bytes, as marks already stored were made). */
    uint8_t mark[32], markin[LEDGER_KEY + 64] = {0};
    memcpy(markin, in->wallet, LEDGER_KEY);
    memcpy(markin + LEDGER_KEY, in->result_id, strnlen(in->result_id, 64));
    cs_crypto_hash(mark, "caresync-contribution-mark", markin, sizeof markin);
    /* The reward's ledger record waits in the queue with the others
     * (surveil.h, "batched rewards"); the count goes into the open week. */
    cs_crypto_random(out->salt, sizeof out->salt);
    surveil_reward reward;
    memcpy(reward.contributor, in->wallet, LEDGER_KEY);
    memcpy(reward.grant, pick.found.grant, LEDGER_HASH);
    surveil_commitment(sc, out->salt, reward.commitment);
    memcpy(out->grant, reward.grant, LEDGER_HASH);
    memcpy(out->commitment, reward.commitment, LEDGER_HASH);
    uint64_t rewards[LEDGER_CATEGORIES];
    rc = ledger_get_rewards(s->opt.led, rewards, err);
    if (!rc && in->data_key) {
        share_vault v = {0};
        share_vault_entry entry = {.phash = in->phash,
                                   .reward = rewards[LEDGER_CAT_SCREENING],
                                   .day = (int32_t)(in->now / 86400),
                                   .has_phash = in->has_phash,
                                   .tagged = true,
                                   .c = *sc};
        memcpy(entry.grant, reward.grant, LEDGER_HASH);
        cs_crypto_random(entry.tag, sizeof entry.tag);
        vault_write w = {s, in, &v, &entry};
        pthread_mutex_lock(&s->vault_lock);
        rc = share_vault_load_synced(s, in->owner, in->data_key, in->now, &v, err);
        if (!rc)
            rc = surveil_add_tagged(s->opt.st, sc, mark, share_sealed_through(s, in->now), &reward, entry.tag,
                                    within_contribute, &w, err);
        pthread_mutex_unlock(&s->vault_lock);
        share_vault_free(&v);
    } else if (!rc && in->pledge && in->pledge_case) {
        const share_pledge *p = in->pledge;
        bool pay = !p->reserved || p->pay;
        uint8_t tag[SURVEIL_TAG];
        cs_crypto_random(tag, sizeof tag);
        confirm_write w = {s, in, sc, tag, reward.grant, pay ? rewards[LEDGER_CAT_SCREENING] : 0};
        rc = surveil_add_tagged(s->opt.st, sc, mark, share_sealed_through(s, in->now), pay ? &reward : NULL,
                                p->reserved ? tag : NULL, within_confirm, &w, err);
        cs_crypto_wipe(tag, sizeof tag);
        if (!rc && !pay) rewards[LEDGER_CAT_SCREENING] = 0;
    } else if (!rc) {
        rc = surveil_add(s->opt.st, sc, mark, share_sealed_through(s, in->now), &reward, err);
    }
    if (rc) {
        memset(out, 0, sizeof *out);
        return rc;
    }
    out->reward = rewards[LEDGER_CAT_SCREENING];
    /* Counted: whatever the payment round does, the contribution stands. */
    share_pay_rewards(s, &out->payout, &out->pay_error);
    return CORE_OK;
}

/* A refusal that will never turn into an acceptance: the consent was
 * revoked or expired before the batch was written, the wallet or consent is
 * unknown, or the commitment is already there (a crash after the submit). */
static bool refused_for_good(core_status s) {
    return s == CORE_ERR_CONFLICT || s == CORE_ERR_FORBIDDEN || s == CORE_ERR_NOT_FOUND;
}

core_status share_pay_rewards(share *s, share_payout *out, core_error *err) {
    enum { CAP = 4096 };
    share_payout local;
    if (!out) out = &local;
    memset(out, 0, sizeof *out);
    surveil_reward *batch = malloc(CAP * sizeof *batch);
    size_t n = 0;
    pthread_mutex_lock(&s->pay_lock);
    core_status rc = batch ? CORE_OK : core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    if (!rc) rc = surveil_rewards_pending(s->opt.st, (size_t)s->opt.reward_batch, batch, CAP, &n, err);
    uint64_t rewards[LEDGER_CATEGORIES];
    if (!rc && n) rc = ledger_get_rewards(s->opt.led, rewards, err);
    for (size_t i = 0; i < n && !rc; i++) {
        ledger_tx tx = {.kind = LEDGER_TX_CONTRIBUTE};
        memcpy(tx.u.contribute.contributor, batch[i].contributor, LEDGER_KEY);
        memcpy(tx.u.contribute.grant, batch[i].grant, LEDGER_HASH);
        tx.u.contribute.category = LEDGER_CAT_SCREENING;
        memcpy(tx.u.contribute.commitment, batch[i].commitment, LEDGER_HASH);
        tx.u.contribute.reward = rewards[LEDGER_CAT_SCREENING];
        ledger_receipt receipt;
        core_error e = {0};
        core_status st = ledger_sign_submit(s->opt.led, &tx, s->opt.node_sk, &receipt, &e);
        if (st == CORE_OK || refused_for_good(st)) {
            /* The count it came with stays: it was shared under an active consent. */
            if (st) {
                out->dropped++;
                out->dropped_why = e;
            } else {
                out->paid++;
            }
            rc = surveil_rewards_done(s->opt.st, batch[i].commitment, err);
        } else {
            if (err) *err = e;
            rc = st;
        }
    }
    free(batch);
    s->paid += out->paid;
    s->dropped += out->dropped;
    core_error e2 = {0};
    if (surveil_rewards_queued(s->opt.st, &out->left, &e2)) out->left = 0;
    pthread_mutex_unlock(&s->pay_lock);
    return rc;
}

/* ---- withdrawal ---- */

typedef struct {
    share *s;
    int64_t owner;
    const uint8_t *data_key;
    share_vault *v;
    surveil_withdrawal *w;
    size_t *at; /* w[j] is v->e[at[j]] */
    size_t n;
} withdraw_ctx;

static core_status within_withdraw(void *ud, sqlite3 *db, core_error *err) {
    withdraw_ctx *x = ud;
    bool any = false;
    for (size_t j = 0; j < x->n; j++)
        if (x->w[j].done) x->v->e[x->at[j]].withdrawn = any = true;
    return any ? share_vault_store(x->s, db, x->owner, x->data_key, x->v, err) : CORE_OK;
}

core_status share_withdraw(share *s, int64_t owner, const uint8_t data_key[32], const uint8_t *grant, int64_t now,
                           share_withdrawal *out, core_error *err) {
    memset(out, 0, sizeof *out);
    share_vault v = {0};
    surveil_withdrawal *w = NULL;
    size_t *at = NULL, n = 0;
    int through = share_sealed_through(s, now);
    pthread_mutex_lock(&s->vault_lock);
    core_status rc = share_vault_load_synced(s, owner, data_key, now, &v, err);
    if (!rc && v.n) {
        w = calloc(v.n, sizeof *w);
        at = calloc(v.n, sizeof *at);
        if (!w || !at) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    for (size_t i = 0; !rc && i < v.n; i++) {
        const share_vault_entry *e = &v.e[i];
        if (!e->tagged || e->withdrawn || (grant && memcmp(grant, e->grant, LEDGER_HASH) != 0)) continue;
        if (e->c.week <= through) {
            out->sealed++;
            continue;
        }
        w[n].c = e->c;
        memcpy(w[n].tag, e->tag, SURVEIL_TAG);
        at[n++] = i;
    }
    withdraw_ctx x = {s, owner, data_key, &v, w, at, n};
    if (!rc && n) rc = surveil_withdraw(s->opt.st, w, n, through, within_withdraw, &x, err);
    for (size_t j = 0; !rc && j < n; j++) out->withdrawn += w[j].done;
    pthread_mutex_unlock(&s->vault_lock);
    free(w);
    free(at);
    share_vault_free(&v);
    return rc;
}
