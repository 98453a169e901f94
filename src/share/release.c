/* share — every aggregate that leaves the service: built, suppressed (and
 * noised when epsilon > 0), logged with its budget, and recorded on the
 * ledger; the same question on the same data gets the same answer back. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "crypto/crypto.h"
#include "share/internal.h"

core_status share_query_make(const share *s, const share_question *in, surveil_query *q, const char **view,
                             core_error *err) {
    memset(q, 0, sizeof *q);
    *view = NULL;
    if (!in->country || strlen(in->country) != 2)
        return core_fail(err, CORE_ERR_INVALID, "country", "country must be an ISO 3166-1 alpha-2 code such as US");
    memcpy(q->country, in->country, 3);
    q->regions = in->regions;
    q->n_regions = in->n_regions;
    /* Only sealed weeks: the default period ends with the latest one, and a
     * later week asked for is refused rather than shown half-filled. */
    q->sealed_through = q->week_to = share_sealed_through(s, in->now);
    core_status rc;
    if (in->to && (rc = surveil_week_parse(in->to, &q->week_to, err))) return rc;
    if (q->week_to > q->sealed_through) {
        char wk[9];
        surveil_week_format(q->sealed_through, wk);
        return core_fail(err, CORE_ERR_NOT_FOUND, "to",
                         "that week is not released yet: a week's counts are released once it has ended and "
                         "%d hours have passed (the latest released week is %s)",
                         s->opt.seal_delay / 3600, wk);
    }
    q->week_from = q->week_to - 11;
    if (in->from && surveil_week_parse(in->from, &q->week_from, err)) {
        snprintf(err->field, sizeof err->field, "from");
        return CORE_ERR_INVALID;
    }
    if (in->condition && *in->condition && strcmp(in->condition, "all") != 0) {
        for (size_t j = 0; j < in->n_conditions && !*view; j++)
            if (strcmp(in->conditions[j], in->condition) == 0) *view = in->conditions[j];
        if (!*view) return core_fail(err, CORE_ERR_INVALID, "condition", "unknown condition '%s'", in->condition);
    }
    q->conditions = in->conditions;
    q->n_conditions = in->n_conditions;
    q->k = q->base_k = s->opt.k;
    char *end;
    if (in->k) {
        long v = strtol(in->k, &end, 10);
        if (!*in->k || *end || v < s->opt.k || v > 1000)
            return core_fail(err, CORE_ERR_INVALID, "k", "k must be a whole number from %d to 1000", s->opt.k);
        q->k = (int)v;
    }
    if (in->epsilon) {
        double e = strtod(in->epsilon, &end);
        if (!in->allow_epsilon)
            return core_fail(err, CORE_ERR_INVALID, "epsilon", "the dashboard shows exact, suppressed counts");
        if (!*in->epsilon || *end || !(e >= 0.01 && e <= 10))
            return core_fail(err, CORE_ERR_INVALID, "epsilon", "epsilon must be from 0.01 to 10");
        q->epsilon = e;
    }
    return CORE_OK;
}

static bool is_analysts(const share *s, const share_org *org) {
    share_org a;
    share_analysts_org(s, &a);
    return memcmp(a.key, org->key, LEDGER_KEY) == 0;
}

/* The release log and budget are kept per organisation under this label
 * (the labels the log has always used). */
static void label_of(const share *s, const share_org *org, char label[80]) {
    if (is_analysts(s, org)) {
        snprintf(label, 80, "analysts");
        return;
    }
    char hex[2 * LEDGER_KEY + 1];
    cs_crypto_hex(org->key, LEDGER_KEY, hex);
    snprintf(label, 80, "org:%s", hex);
}

static core_status submit_release(share *s, const share_org *org, const surveil_release *r, int k,
                                  ledger_receipt *receipt, core_error *err) {
    ledger_tx tx = {.kind = LEDGER_TX_RELEASE};
    memcpy(tx.u.release.org, org->key, LEDGER_KEY);
    surveil_release_fingerprint(r, tx.u.release.query);
    tx.u.release.epsilon_milli = (uint32_t)llround(surveil_release_epsilon(r) * 1000);
    tx.u.release.k_min = (uint32_t)k;
    size_t cells = surveil_release_cells(r);
    tx.u.release.cells = cells > UINT32_MAX ? UINT32_MAX : (uint32_t)cells;
    return ledger_sign_submit(s->opt.led, &tx, s->opt.node_sk, receipt, err);
}

/* Record r on the ledger; the analysts' organisation is registered (by the
 * admin key) the first time the ledger does not know it. */
static core_status record_on_ledger(share *s, const share_org *org, const surveil_release *r, int k,
                                    ledger_receipt *receipt, core_error *err) {
    core_status rc = submit_release(s, org, r, k, receipt, err);
    if (rc != CORE_ERR_NOT_FOUND || strcmp(err->field, "org") != 0 || !is_analysts(s, org)) return rc;
    ledger_tx reg = {.kind = LEDGER_TX_REGISTER_ORG};
    memcpy(reg.u.org.org, org->key, LEDGER_KEY);
    snprintf(reg.u.org.name, sizeof reg.u.org.name, "%s", org->name);
    ledger_receipt rr;
    memset(err, 0, sizeof *err);
    rc = ledger_sign_submit(s->opt.led, &reg, s->opt.admin_sk, &rr, err);
    if (rc == CORE_ERR_CONFLICT) { /* a concurrent request registered it */
        memset(err, 0, sizeof *err);
        rc = CORE_OK;
    }
    return rc ? rc : submit_release(s, org, r, k, receipt, err);
}

core_status share_release(share *s, const share_org *org, const surveil_query *q, char **body, core_error *err) {
    core_error local = {0};
    if (!err) err = &local;
    *body = NULL;
    char label[80];
    label_of(s, org, label);
    /* The same question on the same data: the logged answer, before any work. */
    uint8_t fp[32];
    core_status rc = surveil_query_fingerprint(s->opt.st, q, fp, err);
    if (!rc) rc = surveil_release_find(s->opt.st, label, fp, body, err);
    if (rc != CORE_ERR_NOT_FOUND) return rc;
    memset(err, 0, sizeof *err);
    surveil_release *r = NULL;
    rc = surveil_release_build(s->opt.st, q, NULL, &r, err);
    if (rc) return rc;
    /* the data may have moved on since: the release keys on what it read */
    surveil_release_fingerprint(r, fp);
    json_t *j = surveil_release_json(r);
    char fphex[65];
    cs_crypto_hex(fp, 32, fphex);
    char *text = NULL;
    if (j) {
        json_object_set_new(j, "release", json_pack("{s:s, s:s}", "fingerprint", fphex, "organisation", org->name));
        text = core_json_dumps(j, JSON_COMPACT);
        json_decref(j);
    }
    int64_t id = 0;
    if (!text)
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    else
        rc = surveil_release_record(s->opt.st, label, r, s->opt.budget, text, &id, err);
    if (!rc) {
        ledger_receipt receipt;
        rc = record_on_ledger(s, org, r, q->k, &receipt, err);
        /* The release is logged and its budget spent either way (the safe
         * side); without its ledger record it is not handed out. */
        if (!rc) rc = surveil_release_set_txid(s->opt.st, id, receipt.txid, err);
    }
    surveil_release_free(r);
    if (rc) {
        free(text);
        return rc;
    }
    *body = text;
    return CORE_OK;
}
