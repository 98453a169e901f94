/* The source-out protocol: how the screening does on photos from a source
 * it never saw, for the conditions that source shares with the others
 * (infections: DermNet NZ ↔ skin-infections-8; pigmented and keratinocyte
 * lesions: DermNet NZ ↔ PAD-UFES ↔ ISIC). Every design choice of the model
 * is kept or dropped by these numbers (docs/MODEL.md, ablations).
 *
 * Heads are trained on frozen pooled features, so one fold takes a minute
 * where the bundled fine-tuned recipe takes twenty; the comparison between
 * choices is what matters here, and it is made with one recipe. */
#include "screening/internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void screening_protocol_defaults(screening_protocol_opts *o) {
    screening_train_defaults(&o->train);
    o->train.finetune = false; /* the protocol always trains heads on pooled features */
    o->backbones = SCREENING_BACKBONE_FILE;
    o->augment = 0;
    o->crop_watermark = true;
    o->not_skin_dir = NULL;
    o->outside_path = NULL;
}

#define MIN_SHARED 20 /* photos of a condition on each side for it to count as shared */

/* Conditions shared by set s and the other sets (never "other"). */
static int shared_conditions(const screening_dataset *ds, int s, bool *shared) {
    int nc = screening_condition_count(), other = screening_condition_index("other"), n = 0;
    size_t in[32] = {0}, out[32] = {0};
    for (size_t i = 0; i < ds->count; i++) (ds->items[i].set == s ? in : out)[ds->items[i].condition]++;
    for (int c = 0; c < nc; c++) n += shared[c] = c != other && in[c] >= MIN_SHARED && out[c] >= MIN_SHARED;
    return n;
}

typedef struct {
    size_t n, unsure, mal, mal_referred, benign, benign_referred, self_care_mal;
    size_t said[32], said_right[32]; /* confident answers per condition, and how many were right */
    double bal_acc;                  /* top-1 over every condition: what the product shows */
    double bal_shared;               /* top-1 among the shared conditions only: is the signal there at all? */
    double bal_no_other;             /* top-1 over every condition but "other": how much "other" takes */
} fold_result;

/* Train on rows of `train_set` items, calibrate on their held-back tenth,
 * then test on `test` items (view 0) over the shared conditions. */
static core_status run_fold(const screening_rows *R, const bool *train_item, const bool *test_item, const bool *shared,
                            const screening_train_opts *o, fold_result *res, core_error *err) {
    const screening_dataset *ds = R->ds;
    int k = ds->fine_count, nc = screening_condition_count();
    memset(res, 0, sizeof *res);
    size_t *tr = malloc(ds->count * (size_t)R->views * sizeof *tr), *va = malloc(ds->count * sizeof *va),
           *te = malloc(ds->count * sizeof *te), ntr = 0, nva = 0, nte = 0;
    const screening_item **va_items = malloc(ds->count * sizeof *va_items);
    float *lo = NULL, *lc = NULL, *lf = NULL, *pc = NULL;
    nn_net *head = NULL;
    core_status rc = CORE_OK;
    if (!tr || !va || !te || !va_items) {
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < ds->count; i++) {
        if (train_item[i]) {
            if (screening_held_back(ds->items[i].path)) {
                va_items[nva] = &ds->items[i];
                va[nva++] = i * (size_t)R->views;
            } else {
                for (int v = 0; v < R->views; v++) tr[ntr++] = i * (size_t)R->views + (size_t)v;
            }
        }
        if (test_item[i] && shared[ds->items[i].condition]) te[nte++] = i * (size_t)R->views;
    }
    nn_rng rng;
    nn_rng_seed(&rng, o->seed);
    head = screening_head_new(R->dim, o->hidden, o->dropout, k + nc, o->power_norm);
    if (!head) {
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        goto done;
    }
    nn_net_init(head, &rng);
    if ((rc = screening_fit_head(head, 0, R, tr, ntr, o, &rng, NULL, err))) goto done;
    /* Temperature and risk thresholds on the held-back tenth. */
    lo = screening_head_logits(head, R->feats, va, nva, R->dim, k + nc);
    lf = malloc((nva ? nva : 1) * (size_t)k * 4), lc = malloc((nva ? nva : 1) * (size_t)nc * 4);
    int *lab = malloc((nva ? nva : 1) * sizeof *lab);
    if (!lo || !lf || !lc || !lab) {
        free(lab);
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        goto done;
    }
    screening_split_logits(lo, nva, k, nc, lf, lc);
    for (size_t i = 0; i < nva; i++) lab[i] = va_items[i]->condition;
    float temp = nva ? screening_fit_temperature(lc, lab, nva, nc) : 1.0f;
    free(lab);
    pc = malloc((nva ? nva : 1) * (size_t)nc * 4);
    if (!pc) {
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        goto done;
    }
    screening_softmax_t(lc, nva, nc, temp, pc);
    screening_risk risk;
    screening_fit_risk(pc, va_items, nva, SCREENING_REFERRAL_SENSITIVITY, &risk);
    free(lo), free(lf), free(lc), free(pc);
    lo = lf = lc = pc = NULL;
    /* Test. */
    lo = screening_head_logits(head, R->feats, te, nte, R->dim, k + nc);
    lf = malloc((nte ? nte : 1) * (size_t)k * 4), lc = malloc((nte ? nte : 1) * (size_t)nc * 4);
    pc = malloc((nte ? nte : 1) * (size_t)nc * 4);
    if (!lo || !lf || !lc || !pc) {
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        goto done;
    }
    screening_split_logits(lo, nte, k, nc, lf, lc);
    screening_softmax_t(lc, nte, nc, temp, pc);
    size_t per[32] = {0}, right[32] = {0}, right_shared[32] = {0}, right_no_other[32] = {0};
    int other = screening_condition_index("other");
    int mole = screening_condition_index("benign_mole"), growth = screening_condition_index("harmless_growth");
    for (size_t i = 0; i < nte; i++) {
        const screening_item *it = &ds->items[te[i] / (size_t)R->views];
        const float *p = pc + i * nc;
        int top = 0;
        for (int c = 1; c < nc; c++)
            if (p[c] > p[top]) top = c;
        per[it->condition]++;
        right[it->condition] += top == it->condition;
        int ts = -1;
        for (int c = 0; c < nc; c++)
            if (shared[c] && (ts < 0 || p[c] > p[ts])) ts = c;
        right_shared[it->condition] += ts == it->condition;
        int tn = -1;
        for (int c = 0; c < nc; c++)
            if (c != other && (tn < 0 || p[c] > p[tn])) tn = c;
        right_no_other[it->condition] += tn == it->condition;
        bool confident = p[top] >= 0.5f;
        res->unsure += !confident;
        /* only answers that could be right here: a condition this fold tests */
        if (confident && shared[top]) res->said[top]++, res->said_right[top] += top == it->condition;
        screening_why why;
        screening_triage t = screening_decide_triage(p, confident, &risk, &why);
        if (it->malignant) {
            res->mal++;
            res->mal_referred += t >= TRIAGE_DOCTOR_SOON;
            res->self_care_mal += t == TRIAGE_SELF_CARE;
        } else if (it->condition == mole || it->condition == growth) {
            res->benign++;
            res->benign_referred += t >= TRIAGE_DOCTOR_SOON;
        }
    }
    res->n = nte;
    int m = 0;
    double sum = 0, sum_s = 0, sum_n = 0;
    for (int c = 0; c < nc; c++)
        if (shared[c] && per[c]) {
            sum += (double)right[c] / (double)per[c], sum_s += (double)right_shared[c] / (double)per[c];
            sum_n += (double)right_no_other[c] / (double)per[c], m++;
        }
    res->bal_no_other = m ? sum_n / m : NAN;
    res->bal_acc = m ? sum / m : NAN;
    res->bal_shared = m ? sum_s / m : NAN;
done:
    free(tr), free(va), free(te), free(va_items), free(lo), free(lf), free(lc), free(pc);
    nn_net_free(head);
    return rc;
}

/* Features of one backbone configuration ("a" or "a+b"): views 0–1 (as is,
 * mirrored) plus one augmented view per lever in po->augment. */
static core_status features_for(const char *spec, const char *models_dir, const char *cache_dir,
                                const screening_dataset *ds, const screening_protocol_opts *po, float **out, int *dim,
                                int *views, core_error *err) {
    *out = NULL;
    char names[4][256];
    int nb = 0;
    for (const char *p = spec; *p && nb < 4;) {
        size_t l = strcspn(p, "+");
        snprintf(names[nb++], sizeof names[0], "%.*s", (int)l, p);
        p += l + (p[l] == '+');
    }
    int nlev = 0, lev[8];
    for (int b = 0; b < 6; b++)
        if (po->augment & (1u << b)) lev[nlev++] = 1 << b;
    int base = po->train.views >= 2 ? 2 : 1, V = base + nlev, D = 0;
    float *parts[4][9] = {{0}};
    int dims[4] = {0};
    core_status rc = CORE_OK;
    for (int b = 0; b < nb && !rc; b++) {
        screening_backbone *bb;
        if ((rc = screening_backbone_open(models_dir, names[b], &bb, err))) break;
        dims[b] = screening_backbone_dim(bb);
        D += dims[b];
        for (int v = 0; v < 1 + nlev && !rc; v++) {
            screening_extract_opts eo = {.views = v ? 1 : base,
                                         .first_view = v ? 2 : 0,
                                         .node = -1,
                                         .augment = v ? (unsigned)lev[v - 1] : 0,
                                         .crop_watermark = po->crop_watermark};
            char cache[4096];
            if (cache_dir) screening_cache_path(bb, &eo, cache_dir, cache, sizeof cache);
            rc = screening_extract_with(bb, ds, &eo, po->train.threads, cache_dir ? cache : NULL, &parts[b][v], err);
        }
        screening_backbone_free(bb);
    }
    float *f = rc ? NULL : malloc(ds->count * (size_t)V * (size_t)D * sizeof *f);
    if (!rc && !f) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    for (size_t i = 0; !rc && i < ds->count; i++)
        for (int v = 0; v < V; v++) {
            float *dst = f + (i * (size_t)V + (size_t)v) * (size_t)D;
            for (int b = 0, off = 0; b < nb; off += dims[b], b++) {
                const float *src = v < base ? parts[b][0] + (i * (size_t)base + (size_t)v) * (size_t)dims[b]
                                            : parts[b][v - base + 1] + i * (size_t)dims[b];
                memcpy(dst + off, src, (size_t)dims[b] * sizeof *dst);
            }
        }
    for (int b = 0; b < 4; b++)
        for (int v = 0; v < 9; v++) free(parts[b][v]);
    if (rc) return rc;
    *out = f, *dim = D, *views = V;
    return CORE_OK;
}

core_status screening_source_out(const char *data_dir, const char *models_dir, const char *cache_dir,
                                 const screening_protocol_opts *po, char **report, core_error *err) {
    *report = NULL;
    screening_dataset ds;
    core_status rc = screening_dataset_load(data_dir, &ds, err);
    if (rc) return rc;
    screening_text t = {0};
    bool *train_item = malloc(ds.count * sizeof *train_item), *test_item = malloc(ds.count * sizeof *test_item);
    if (!train_item || !test_item) {
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        goto done;
    }
    nn_set_threads(po->train.threads);
    char list[1024];
    snprintf(list, sizeof list, "%s", po->backbones);
    for (char *save = NULL, *spec = strtok_r(list, ",", &save); spec && !rc; spec = strtok_r(NULL, ",", &save)) {
        float *feats = NULL;
        int dim = 0, views = 0;
        if ((rc = features_for(spec, models_dir, cache_dir, &ds, po, &feats, &dim, &views, err))) break;
        screening_rows R = {feats, dim, views, &ds};
        screening_text_printf(
            &t,
            "\n## Source-out: %s (%d features; watermark %s; %d views: as is%s%s%s)\n\n"
            "| left out | conditions tested | photos | same-source bal. acc. | **source-out bal. "
            "acc.** | source-out without \"other\" | source-out among shared only | source-out unsure | malignant "
            "referred (same → out) | "
            "benign moles referred (out) | malignant told self-care (out) |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n",
            spec, dim, po->crop_watermark ? "cropped away" : "kept", views, po->train.views >= 2 ? ", mirrored" : "",
            views > po->train.views ? ", one per lever " : "", views > po->train.views ? "(see --augment)" : "");
        double mean_out = 0;
        int folds = 0;
        size_t said[32] = {0}, said_right[32] = {0};
        for (int s = 0; s < screening_set_count() && !rc; s++) {
            bool shared[32];
            char names[512] = "";
            if (!shared_conditions(&ds, s, shared)) continue;
            bool present = false;
            for (size_t i = 0; i < ds.count; i++) present |= ds.items[i].set == s;
            if (!present) continue;
            for (int c = 0; c < screening_condition_count(); c++)
                if (shared[c]) {
                    size_t l = strlen(names);
                    snprintf(names + l, sizeof names - l, "%s%s", l ? ", " : "", screening_condition_at(c)->code);
                }
            fold_result same, out;
            /* same source: every set's training split → this set's test split */
            for (size_t i = 0; i < ds.count; i++) {
                train_item[i] = !ds.items[i].test;
                test_item[i] = ds.items[i].test && ds.items[i].set == s;
            }
            if ((rc = run_fold(&R, train_item, test_item, shared, &po->train, &same, err))) break;
            /* source out: every other set, all of it → all of this set */
            for (size_t i = 0; i < ds.count; i++) {
                train_item[i] = ds.items[i].set != s;
                test_item[i] = ds.items[i].set == s;
            }
            if ((rc = run_fold(&R, train_item, test_item, shared, &po->train, &out, err))) break;
            char sm[64] = "–", om[64] = "–", bm[64] = "–";
            if (same.mal) snprintf(sm, sizeof sm, "%zu/%zu", same.mal_referred, same.mal);
            if (out.mal)
                snprintf(om, sizeof om, "%zu/%zu (%.2f)", out.mal_referred, out.mal,
                         (double)out.mal_referred / (double)out.mal);
            if (out.benign) snprintf(bm, sizeof bm, "%zu/%zu", out.benign_referred, out.benign);
            screening_text_printf(
                &t, "| %s | %s | %zu | %.3f | **%.3f** | %.3f | %.3f | %.1f%% | %s → %s | %s | %zu |\n",
                screening_set_name(s), names, out.n, same.bal_acc, out.bal_acc, out.bal_no_other, out.bal_shared,
                out.n ? 100.0 * (double)out.unsure / (double)out.n : 0.0, sm, om, bm, out.self_care_mal);
            mean_out += out.bal_acc, folds++;
            for (int c = 0; c < screening_condition_count(); c++)
                said[c] += out.said[c], said_right[c] += out.said_right[c];
        }
        if (folds)
            screening_text_printf(&t, "\nmean source-out balanced accuracy over %d folds: **%.3f**\n", folds,
                                  mean_out / folds);
        /* How often a confident answer was right on a source the model
         * never saw, per condition answered at least 20 times: what the
         * product tells a person next to a result (train --outside). */
        json_t *right = json_object();
        screening_text_printf(&t, "\nconfident answers right on left-out sources:");
        for (int c = 0; c < screening_condition_count(); c++) {
            if (said[c] < 20) continue;
            double r = (double)said_right[c] / (double)said[c];
            json_object_set_new(right, screening_condition_at(c)->code, json_integer((json_int_t)(r * 10 + 0.5)));
            screening_text_printf(&t, " %s %zu/%zu (%.2f);", screening_condition_at(c)->code, said_right[c], said[c],
                                  r);
        }
        screening_text_printf(&t, "\n");
        if (po->outside_path && spec == list) {
            json_t *doc = json_pack("{s:s, s:o}", "backbones", spec, "outside_right_in_10", right);
            if (!doc || json_dump_file(doc, po->outside_path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
                rc = core_fail(err, CORE_ERR_IO, NULL, "cannot write %s", po->outside_path);
            json_decref(doc);
        } else {
            json_decref(right);
        }
        free(feats);
    }
done:
    free(train_item), free(test_item);
    screening_dataset_free(&ds);
    return screening_report_finish(&t, rc, report);
}
