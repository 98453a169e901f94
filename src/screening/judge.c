/* The judge: from a head's input activations to what the product answers —
 * calibrated condition probabilities, "unsure" (low confidence, an ImageNet
 * class no skin photo had, or features far from every skin photo) and the
 * safety-first triage — exactly as assess.c applies it to one photo, but
 * over many cached rows at once for evaluation. */
#include "screening/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void screening_judge_free(screening_judge *j) {
    nn_net_free(j->head);
    nn_net_free(j->imnet);
    nn_net_free(j->pool);
    screening_ood_free(&j->ood);
    memset(j, 0, sizeof *j);
}

void screening_judged_free(screening_judged *r) {
    free(r->probs);
    free(r->verdict);
    free(r->triage);
    free(r->ood);
    memset(r, 0, sizeof *r);
}

core_status screening_judge_rows(const screening_judge *j, const float *feats, const size_t *rows, size_t n, int dim,
                                 int k, screening_judged *out, core_error *err) {
    memset(out, 0, sizeof *out);
    /* pool NULL: the head input is already the pooled features (--frozen). */
    int nc = screening_condition_count(), ik = nn_net_shape(j->imnet, nn_net_count(j->imnet) - 1).c,
        pd = j->pool ? nn_net_shape(j->pool, nn_net_count(j->pool) - 1).c : dim;
    size_t N = n ? n : 1;
    float *lo = screening_head_logits(j->head, feats, rows, n, dim, k + nc);
    float *il = screening_head_logits(j->imnet, feats, rows, n, dim, ik);
    float *pf = j->pool ? screening_head_logits(j->pool, feats, rows, n, dim, pd) : malloc(N * (size_t)pd * 4);
    for (size_t i = 0; pf && !j->pool && i < n; i++)
        memcpy(pf + i * (size_t)pd, feats + rows[i] * (size_t)dim, (size_t)pd * 4);
    float *lf = malloc(N * (size_t)k * 4), *lc = malloc(N * (size_t)nc * 4);
    int *icls = malloc(N * sizeof *icls);
    float *itop = il ? screening_top_prob(il, n, ik, icls) : NULL;
    out->probs = malloc(N * (size_t)nc * 4);
    out->verdict = malloc(N * sizeof *out->verdict);
    out->triage = malloc(N * sizeof *out->triage);
    out->ood = malloc(N * sizeof *out->ood);
    core_status rc = CORE_OK;
    if (!lo || !il || !pf || !lf || !lc || !icls || !itop || !out->probs || !out->verdict || !out->triage ||
        !out->ood) {
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory judging photos");
        screening_judged_free(out);
        goto done;
    }
    screening_split_logits(lo, n, k, nc, lf, lc);
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < nc; c++) lc[i * nc + c] += j->bias[c];
    screening_softmax_t(lc, n, nc, j->temp_c, out->probs);
    for (size_t i = 0; i < n; i++) {
        const float *p = out->probs + i * nc;
        float top = 0;
        for (int c = 0; c < nc; c++) top = fmaxf(top, p[c]);
        out->ood[i] = screening_ood_score(&j->ood, pf + i * (size_t)pd);
        bool not_skin = screening_is_not_skin(&j->od, icls[i], itop[i]) || out->ood[i] >= 1;
        out->verdict[i] = not_skin                ? SCREENING_UNSURE_NOT_SKIN
                          : top < j->unsure_below ? SCREENING_UNSURE_LOW_CONFIDENCE
                                                  : SCREENING_CONFIDENT;
        screening_why why;
        out->triage[i] = not_skin ? TRIAGE_DOCTOR_SOON
                                  : screening_decide_triage(p, out->verdict[i] == SCREENING_CONFIDENT, &j->risk, &why);
    }
    out->n = n;
done:
    free(lo), free(il), free(pf), free(lf), free(lc), free(icls), free(itop);
    return rc;
}
