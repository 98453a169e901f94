/* Training the head on cached features: the loop shared by `caresync
 * train` (the bundled model) and the source-out protocol (one model per
 * left-out source). Rows are feature rows, item · views + view; every
 * label comes from the data set's items. */
#include "screening/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"

nn_net *screening_head_new(int dim, int hidden, float dropout, int k, float power_norm) {
    nn_net *h = nn_net_new(dim, 1, 1);
    /* With power_norm the features are power-normalised first (no weights:
     * the saved model carries the node, so the service applies it too). */
    int p = power_norm > 0 ? 1 : 0, in = p ? 0 : NN_INPUT;
    nn_node n[] = {{.op = NN_OP_PNORM, .in = NN_INPUT, .alpha = power_norm},
                   {.op = NN_OP_DENSE, .in = in, .units = hidden, .bias = true},
                   {.op = NN_OP_ACT, .in = p, .act = NN_RELU},
                   {.op = NN_OP_DROPOUT, .in = p + 1, .p = dropout},
                   {.op = NN_OP_DENSE, .in = p + 2, .units = k, .bias = true}};
    for (int i = 1 - p; h && i < 5; i++)
        if (nn_net_add(h, &n[i]) != i - 1 + p) {
            nn_net_free(h);
            return NULL;
        }
    return h;
}

core_status screening_fit_head(nn_net *head, size_t tail_params, const screening_rows *R, size_t *tr, size_t ntr,
                               const screening_train_opts *o, nn_rng *rng, screening_text *log, core_error *err) {
    const screening_dataset *ds = R->ds;
    int k = ds->fine_count, nc = screening_condition_count(), ko = k + nc, B = o->batch, dim = R->dim;
    core_status rc = CORE_OK;
    nn_param ps[32];
    float *m[32] = {0}, *v[32] = {0};
    size_t np = nn_net_params(head, ps, 32);
    /* Class weights ∝ 1/√frequency, mean 1: the ten thousand ISIC images
     * must not drown the 40-image DermNet topics, nor the reverse.
     * Conditions ∝ 1/frequency (balanced): the product's answer is a
     * condition, and "other" alone has half the DermNet images. */
    size_t *count = calloc((size_t)k, sizeof *count), ccount[32] = {0}, gcount[8][32] = {{0}};
    float gw[8][32] = {{0}};
    float *cw = malloc((size_t)k * sizeof *cw), *ccw = malloc((size_t)nc * sizeof *ccw);
    float *x = malloc((size_t)B * dim * 4), *dl = malloc((size_t)B * ko * 4), *lf = malloc((size_t)B * k * 4),
          *lc = malloc((size_t)B * nc * 4), *df = malloc((size_t)B * k * 4), *dc = malloc((size_t)B * nc * 4);
    int32_t *y = malloc((size_t)B * sizeof *y), *yc = malloc((size_t)B * sizeof *yc);
    nn_run *run = nn_run_new();
    bool ok = count && cw && ccw && x && dl && lf && lc && df && dc && y && yc && run && ntr > 0;
    for (size_t p = 0; ok && p < np; p++) ok = (m[p] = calloc(ps[p].n, 4)) && (v[p] = calloc(ps[p].n, 4));
    if (!ok) {
        rc = ntr ? core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory training the head")
                 : core_fail(err, CORE_ERR_INVALID, "data", "no training rows");
        goto done;
    }
    for (size_t i = 0; i < ntr; i++) {
        const screening_item *it = &ds->items[tr[i] / (size_t)R->views];
        count[it->fine]++;
        ccount[it->condition]++;
        if (it->set >= 0 && it->set < 8) gcount[it->set][it->condition]++;
    }
    /* Group balance: every (source, condition) pair weighs the same, so a
     * condition is not learnt as "what its biggest source looks like" (ten
     * thousand dermoscopy moles against a hundred phone photos of moles). */
    int groups = 0;
    for (int g = 0; g < 8; g++)
        for (int c = 0; c < nc; c++) groups += gcount[g][c] > 0;
    for (int g = 0; g < 8; g++)
        for (int c = 0; c < nc; c++) gw[g][c] = gcount[g][c] ? (float)ntr / ((float)groups * (float)gcount[g][c]) : 0;
    double wsum = 0;
    for (int c = 0; c < k; c++) wsum += cw[c] = count[c] ? 1.0f / sqrtf((float)count[c]) : 0;
    for (int c = 0; c < k; c++) cw[c] = (float)(cw[c] * k / wsum);
    wsum = 0;
    for (int c = 0; c < nc; c++) wsum += ccw[c] = ccount[c] ? 1.0f / (float)ccount[c] : 0;
    for (int c = 0; c < nc; c++) ccw[c] = (float)(ccw[c] * nc / wsum);
    nn_adamw opt;
    nn_adamw_init(&opt, o->lr, o->weight_decay);
    int64_t steps = (int64_t)o->epochs * (int64_t)((ntr + B - 1) / B), step = 0;
    for (int ep = 0; ep < o->epochs; ep++) {
        for (size_t i = ntr; i > 1; i--) { /* Fisher–Yates with the seeded generator */
            size_t j = nn_rng_next(rng) % i, tmp = tr[i - 1];
            tr[i - 1] = tr[j], tr[j] = tmp;
        }
        double loss = 0;
        for (size_t i = 0; i < ntr; i += (size_t)B, step++) {
            int b = (int)(ntr - i < (size_t)B ? ntr - i : (size_t)B);
            for (int j = 0; j < b; j++) {
                memcpy(x + (size_t)j * dim, R->feats + tr[i + j] * (size_t)dim, (size_t)dim * 4);
                y[j] = ds->items[tr[i + j] / (size_t)R->views].fine;
                yc[j] = ds->items[tr[i + j] / (size_t)R->views].condition;
            }
            const float *lo = nn_run_forward(run, head, b, x, true, rng, 0);
            if (!lo) {
                rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory training the head");
                goto done;
            }
            /* Two losses on one output: fine classes and conditions. */
            screening_split_logits(lo, (size_t)b, k, nc, lf, lc);
            loss += (o->fine_weight * nn_softmax_ce(b, k, lf, y, o->smoothing, cw, df, NULL) +
                     nn_softmax_ce(b, nc, lc, yc, o->smoothing, o->group_balance ? NULL : ccw, dc, NULL)) *
                    b;
            if (o->group_balance) {
                /* per-row weights: the batch mean becomes a weighted mean */
                float sw = 0;
                for (int j = 0; j < b; j++) {
                    const screening_item *it = &ds->items[tr[i + j] / (size_t)R->views];
                    sw += it->set >= 0 && it->set < 8 ? gw[it->set][it->condition] : 1;
                }
                for (int j = 0; j < b; j++) {
                    const screening_item *it = &ds->items[tr[i + j] / (size_t)R->views];
                    float w = (it->set >= 0 && it->set < 8 ? gw[it->set][it->condition] : 1) * (float)b / sw;
                    for (int c = 0; c < nc; c++) dc[(size_t)j * nc + c] *= w;
                }
            }
            for (int j = 0; j < b; j++) {
                for (int c = 0; c < k; c++) dl[(size_t)j * ko + c] = o->fine_weight * df[(size_t)j * k + c];
                memcpy(dl + (size_t)j * ko + k, dc + (size_t)j * nc, (size_t)nc * 4);
            }
            nn_net_zero_grad(head);
            if (!nn_run_backward(run, head, dl)) {
                rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory training the head");
                goto done;
            }
            float lr = nn_cosine_lr(o->lr, o->lr * 0.01f, step, steps / 20, steps);
            nn_adamw_tick(&opt);
            for (size_t p = 0; p < np; p++) {
                /* pretrained layers move ten times slower than the new head */
                opt.lr = p < tail_params ? lr * 0.1f : lr;
                nn_adamw_step(&opt, ps[p].n, ps[p].w, ps[p].g, m[p], v[p], ps[p].decay);
            }
        }
        if (log && (ep == 0 || ep == o->epochs - 1 || (ep + 1) % 10 == 0))
            screening_text_printf(log, "epoch %d: training loss %.4f\n", ep + 1, loss / (double)ntr);
    }
done:
    for (int p = 0; p < 32; p++) free(m[p]), free(v[p]);
    nn_run_free(run);
    free(count), free(cw), free(ccw), free(x), free(dl), free(lf), free(lc), free(df), free(dc), free(y), free(yc);
    return rc;
}

bool screening_held_back(const char *path) {
    uint8_t h[32];
    cs_crypto_sha256(h, path, strlen(path));
    return h[0] % 10 == 0;
}

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The score t with at least `sensitivity` of the scores v[0..m) at or above it. */
static float quantile_for(float *v, size_t m, double sensitivity) {
    qsort(v, m, sizeof *v, cmp_f);
    size_t keep = (size_t)ceil(sensitivity * (double)m);
    return v[m - (keep ? keep : 1)];
}

/* The threshold that refers ≥ sensitivity of the positives of every set
 * with at least 20 of them, and (pool_small, or when no set has 20) of the
 * positives of the smaller sets taken together — a set with 12 held-back
 * melanomas would otherwise set the threshold by its single hardest photo:
 * the lowest of those values. */
static float threshold_for(const float *score, const bool *pos, const screening_item *const *items, size_t n,
                           double sensitivity, bool pool_small, float dflt) {
    float best = INFINITY, *v = malloc((n ? n : 1) * sizeof *v), *small = malloc((n ? n : 1) * sizeof *small);
    size_t ns = 0;
    if (!v || !small) {
        free(v), free(small);
        return dflt;
    }
    for (int s = 0; s < screening_set_count(); s++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (pos[i] && items[i]->set == s) v[m++] = score[i];
        if (m >= 20) {
            float t = quantile_for(v, m, sensitivity);
            if (t < best) best = t;
        } else {
            memcpy(small + ns, v, m * sizeof *v);
            ns += m;
        }
    }
    if (ns >= 5 && (pool_small || !isfinite(best))) {
        float t = quantile_for(small, ns, sensitivity);
        if (t < best) best = t;
    }
    free(v), free(small);
    return isfinite(best) ? best : dflt;
}

void screening_fit_risk(const float *probs, const screening_item *const *items, size_t n, double sensitivity,
                        screening_risk *risk) {
    int nc = screening_condition_count(), mel = screening_condition_index("melanoma"),
        sc = screening_condition_index("skin_cancer");
    float *pm = calloc(n ? n : 1, sizeof *pm), *pc = calloc(n ? n : 1, sizeof *pc);
    bool *is_mel = calloc(n ? n : 1, sizeof *is_mel), *is_mal = calloc(n ? n : 1, sizeof *is_mal);
    /* Without memory, the most cautious thresholds: refer everything. */
    *risk = (screening_risk){.melanoma_above = 0, .cancer_above = 0, .benign_sure = 0.8f};
    if (pm && pc && is_mel && is_mal) {
        for (size_t i = 0; i < n; i++) {
            pm[i] = probs[i * nc + mel];
            pc[i] = pm[i] + probs[i * nc + sc];
            is_mel[i] = items[i]->condition == mel;
            is_mal[i] = items[i]->malignant;
        }
        /* Referral ("see a doctor soon", within days) covers every
         * malignant lesion, the small sets' included; "urgent" is the
         * melanoma tier and is fitted where melanomas are many (with a
         * dozen, the hardest photo would make every mole urgent). */
        risk->melanoma_above = threshold_for(pm, is_mel, items, n, sensitivity, false, 0.2f);
        risk->cancer_above = threshold_for(pc, is_mal, items, n, sensitivity, true, 0.2f);
        /* A mole or growth goes to a pharmacist or GP rather than a doctor
         * only with more certainty than any held-back malignant lesion that
         * slipped under both thresholds had (nothing goes home: triage.c). */
        int mole = screening_condition_index("benign_mole"), growth = screening_condition_index("harmless_growth");
        for (size_t i = 0; i < n; i++) {
            if (!is_mal[i] || pm[i] >= risk->melanoma_above || pc[i] >= risk->cancer_above) continue;
            float benign = probs[i * nc + mole] + probs[i * nc + growth] + 1e-3f;
            /* past 1: a float probability can round to 1, so "never" */
            if (benign > risk->benign_sure) risk->benign_sure = benign >= 1.0f ? 1.01f : benign;
        }
    }
    free(pm), free(pc), free(is_mel), free(is_mal);
}
