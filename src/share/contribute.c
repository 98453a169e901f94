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
    if (!rc) rc = surveil_add(s->opt.st, sc, mark, share_sealed_through(s, in->now), &reward, err);
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
