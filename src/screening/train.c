/* Training of the screening model.
 *
 * The backbone up to the head's input (its pooled features, or the input of
 * its last block when fine-tuning) is fixed, so its outputs are computed
 * once per image and view (cached) and what is trained — optionally copies
 * of the last block, then dense → ReLU → dropout → dense over every fine
 * class and condition — trains on them. A tenth of the training
 * images (by a hash of the path, so it is stable) is held back to fit the
 * softmax temperature; the test images are never seen before evaluation.
 *
 * The saved model is the whole network: the backbone's nodes (referenced,
 * not stored) with the head appended reading the pooled features, so the
 * service runs one forward pass and also gets the ImageNet logits (used to
 * notice photos that are not of skin). */
#include "screening/internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* The bundled recipe, chosen on the source-out protocol (docs/MODEL.md):
 * a frozen backbone, a 128-unit head, the condition loss balanced over
 * (data set, condition) pairs, DermNet's watermark cropped away. */
void screening_train_defaults(screening_train_opts *o) {
    *o = (screening_train_opts){.seed = 20261125, .epochs = 12, .hidden = 128, .batch = 64, .lr = 1e-3f,
                                .weight_decay = 1e-2f, .dropout = 0.3f, .smoothing = 0.1f, .views = 2, .threads = 2,
                                .adjust = false, .finetune = false, .backbone = SCREENING_BACKBONE_DEFAULT,
                                .fine_weight = 1.0f, .group_balance = true,
                                .augment = 0, .crop_watermark = true, .not_skin_dir = NULL};
}

/* Append src's nodes to dst, src's input read from dst's node `input`,
 * weights copied. */
static bool append_net(nn_net *dst, nn_net *src, int input) {
    int first = nn_net_count(dst);
    for (int i = 0; i < nn_net_count(src); i++) {
        nn_node d = *nn_net_node(src, i);
        d.in = d.in == NN_INPUT ? input : d.in + first;
        if (d.op == NN_OP_ADD) d.in2 = d.in2 == NN_INPUT ? input : d.in2 + first;
        if (nn_net_add(dst, &d) < 0) return false;
        for (int s = 0; s < 4; s++) {
            size_t a, b;
            float *from = nn_net_tensor(src, i, s, &a), *to = nn_net_tensor(dst, first + i, s, &b);
            if (from && to && a == b) memcpy(to, from, a * 4);
        }
    }
    return true;
}

/* Fine-tuning starts at the input of the backbone's last block: the last
 * residual add before the pooled features (MobileNetV2: block 15's output,
 * 160×7×7). -1 when there is none. */
static int last_block_input(nn_net *net, int features) {
    for (int i = features - 1; i >= 0; i--)
        if (nn_net_node(net, i)->op == NN_OP_ADD) return i;
    return -1;
}

static json_t *floats_json(const float *v, int n) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) json_array_append_new(a, json_real(v[i]));
    return a;
}

static char *meta_json(const screening_dataset *ds, const screening_judge *j, int features, int hin, int imagenet,
                       int head_first, int ood_node, const screening_train_opts *o, float in_scale, float in_zero,
                       int size, json_t *outside) {
    json_t *classes = json_array(), *fc = json_array(), *conds = json_array();
    for (int c = 0; c < ds->fine_count; c++) {
        json_array_append_new(classes, json_string(ds->fine_names[c]));
        json_array_append_new(fc, json_integer(ds->fine_condition[c]));
    }
    for (int c = 0; c < screening_condition_count(); c++) {
        const screening_condition *sc = screening_condition_at(c);
        json_array_append_new(conds, json_pack("{s:s, s:s, s:s}", "code", sc->code, "name", sc->name, "triage",
                                               screening_triage_code(sc->triage)));
        char name[64];
        snprintf(name, sizeof name, "condition/%s", sc->code);
        json_array_append_new(classes, json_string(name));
    }
    json_t *m = json_pack("{s:o, s:o, s:o, s:f, s:i, s:i, s:i, s:f, s:f, s:{s:i, s:f, s:f, s:s}, s:{s:I, s:i, s:i, s:f, "
                          "s:f, s:f, s:f, s:i}}",
                          "classes", classes, "fine_condition", fc, "conditions", conds, "temperature", (double)j->temp,
                          "features_node", features, "imagenet_node", imagenet, "head_first", head_first,
                          "unsure_below", (double)j->unsure_below, "not_skin_above", (double)j->od.above, "input",
                          "size", size, "scale", (double)in_scale, "zero", (double)in_zero, "crop", "centre square",
                          "train", "seed", (json_int_t)o->seed, "epochs", o->epochs, "hidden", o->hidden, "lr",
                          (double)o->lr, "weight_decay", (double)o->weight_decay, "dropout", (double)o->dropout,
                          "smoothing", (double)o->smoothing, "views", o->views);
    if (!m) return NULL;
    json_object_set_new(m, "fine_count", json_integer(ds->fine_count));
    json_t *sk = json_array();
    for (int c = 0; c < 1024; c++)
        if (j->od.skin[c]) json_array_append_new(sk, json_integer(c));
    json_object_set_new(m, "skin_imagenet_classes", sk);
    json_object_set_new(m, "temperature_conditions", json_real(j->temp_c));
    json_object_set_new(m, "condition_bias", floats_json(j->bias, screening_condition_count()));
    json_object_set_new(m, "head_input_node", json_integer(hin));
    json_object_set_new(m, "backbone", json_string(o->backbone));
    if (outside) json_object_set(m, "outside_right_in_10", outside);
    json_t *tr = json_object_get(m, "train");
    json_object_set_new(tr, "finetune", json_boolean(o->finetune));
    json_object_set_new(tr, "augment", json_integer(o->augment));
    json_object_set_new(tr, "crop_watermark", json_boolean(o->crop_watermark));
    json_object_set_new(m, "risk", json_pack("{s:f, s:f, s:f}", "melanoma_above", (double)j->risk.melanoma_above,
                                             "cancer_above", (double)j->risk.cancer_above, "benign_sure",
                                             (double)j->risk.benign_sure));
    json_object_set_new(m, "ood", json_pack("{s:i, s:i, s:o, s:o, s:f, s:f, s:o}", "node", ood_node, "m", j->ood.m,
                                            "mean", floats_json(j->ood.mean, j->ood.dim), "var",
                                            floats_json(j->ood.var, j->ood.m), "res_var", (double)j->ood.res_var,
                                            "above", (double)j->ood.above, "centres",
                                            floats_json(j->ood.centre, j->ood.classes * j->ood.m)));
    char *s = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    return s;
}

/* Skin photos far from the training photos are as suspect as cats: the
 * threshold is this quantile of the held-back skin photos' distances. */
#define OOD_COMPONENTS 256
#define OOD_QUANTILE 0.99

core_status screening_train(const char *data_dir, const char *models_dir, const char *out_path,
                            const screening_train_opts *o, const char *cache_dir, char **report, core_error *err) {
    *report = NULL;
    screening_dataset ds;
    core_status rc = screening_dataset_load(data_dir, &ds, err);
    if (rc) return rc;
    screening_backbone *bb = NULL;
    float *feats = NULL, *pooled = NULL, *lo = NULL, *lf = NULL, *lc = NULL, *pc = NULL, *dist = NULL;
    size_t *tr = NULL, *va = NULL, *tr0 = NULL;
    int *va_lab = NULL;
    const screening_item **va_items = NULL;
    screening_judge j = {0};
    screening_text t = {0};
    char *meta = NULL;
    if ((rc = screening_backbone_open(models_dir, o->backbone, &bb, err))) goto done;
    int features;
    nn_backbone ref;
    nn_net *net = screening_backbone_net(bb, &features, &ref);
    /* The head reads the pooled features, or — fine-tuning — the last
     * block's input activations, and then runs copies of the last block and
     * the 1×1 convolution to 1280 that are trained with it. */
    int hin = o->finetune ? last_block_input(net, features) : features;
    if (hin < 0) {
        rc = core_fail(err, CORE_ERR_INVALID, "models", "the backbone has no residual block to fine-tune");
        goto done;
    }
    char cache[4096];
    screening_extract_opts eo = {.views = o->views, .node = hin, .augment = o->augment,
                                 .crop_watermark = o->crop_watermark};
    if (cache_dir) screening_cache_path(bb, &eo, cache_dir, cache, sizeof cache);
    if ((rc = screening_extract_with(bb, &ds, &eo, o->threads, cache_dir ? cache : NULL, &feats, err))) goto done;
    int dim = screening_node_dim(bb, hin), k = ds.fine_count, nc = screening_condition_count();
    screening_rows R = {feats, dim, o->views, &ds};
    /* Rows: every view of the training images; the held-back tenth (view 0)
     * for the temperature, the risk thresholds and the skin model's threshold. */
    size_t ntr = 0, nva = 0, ntr0 = 0;
    tr = malloc(ds.count * (size_t)o->views * sizeof *tr);
    tr0 = malloc(ds.count * sizeof *tr0);
    va = malloc(ds.count * sizeof *va);
    va_items = malloc(ds.count * sizeof *va_items);
    if (!tr || !tr0 || !va || !va_items) {
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < ds.count; i++) {
        if (ds.items[i].test) continue;
        if (screening_held_back(ds.items[i].path)) {
            va_items[nva] = &ds.items[i];
            va[nva++] = i * (size_t)o->views;
        } else {
            tr0[ntr0++] = i * (size_t)o->views;
            for (int w = 0; w < o->views; w++) tr[ntr++] = i * (size_t)o->views + (size_t)w;
        }
    }
    if (!nva || !ntr) {
        rc = core_fail(err, CORE_ERR_INVALID, "data", "too few training photos");
        goto done;
    }
    nn_set_threads(o->threads);
    nn_rng rng;
    nn_rng_seed(&rng, o->seed);
    nn_net *mlp = screening_head_new(screening_backbone_dim(bb), o->hidden, o->dropout, k + nc);
    if (mlp) nn_net_init(mlp, &rng);
    size_t tail_params = 0;
    if (mlp && hin != features) {
        /* pretrained tail (weights copied) + the freshly initialised MLP */
        j.head = nn_net_slice(net, hin, hin + 1, features + 1);
        nn_param tp[32];
        if (j.head) tail_params = nn_net_params(j.head, tp, 32);
        if (j.head && !append_net(j.head, mlp, nn_net_count(j.head) - 1)) nn_net_free(j.head), j.head = NULL;
        nn_net_free(mlp);
    } else {
        j.head = mlp;
    }
    int imagenet = nn_net_count(net) - 1;
    j.imnet = nn_net_slice(net, hin, hin + 1, imagenet + 1);
    j.pool = hin == features ? NULL : nn_net_slice(net, hin, hin + 1, features + 1);
    if (!j.head || !j.imnet || (hin != features && !j.pool)) {
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory or no ImageNet classifier on the features");
        goto done;
    }
    if ((rc = screening_fit_head(j.head, tail_params, &R, tr, ntr, o, &rng, &t, err))) goto done;
    /* Temperatures (fine, conditions) on the held-back tenth. */
    lo = screening_head_logits(j.head, feats, va, nva, dim, k + nc);
    lf = malloc(nva * (size_t)k * 4), lc = malloc(nva * (size_t)nc * 4), pc = malloc(nva * (size_t)nc * 4);
    va_lab = malloc(nva * sizeof *va_lab);
    int *va_set = malloc(nva * sizeof *va_set);
    if (!lo || !lf || !lc || !pc || !va_lab || !va_set) {
        free(va_set);
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        goto done;
    }
    screening_split_logits(lo, nva, k, nc, lf, lc);
    for (size_t i = 0; i < nva; i++) va_lab[i] = va_items[i]->fine;
    j.temp = screening_fit_temperature(lf, va_lab, nva, k);
    /* Conditions: offsets for balanced accuracy per data set, then the
     * temperature on the adjusted logits (calibrate.c says why). */
    for (size_t i = 0; i < nva; i++) va_lab[i] = va_items[i]->condition, va_set[i] = va_items[i]->set;
    if (o->adjust) screening_fit_bias(lc, va_lab, va_set, nva, nc, j.bias);
    free(va_set);
    for (size_t i = 0; i < nva; i++)
        for (int c = 0; c < nc; c++) lc[i * nc + c] += j.bias[c];
    j.temp_c = screening_fit_temperature(lc, va_lab, nva, nc);
    if (o->adjust) {
        screening_text_printf(&t, "condition offsets (held-back balanced accuracy):");
        for (int c = 0; c < nc; c++) screening_text_printf(&t, " %s %+.2f", screening_condition_at(c)->code, j.bias[c]);
        screening_text_printf(&t, "\n");
    }
    /* Risk thresholds: ≥ SCREENING_REFERRAL_SENSITIVITY of held-back malignant lesions of every set referred. */
    screening_softmax_t(lc, nva, nc, j.temp_c, pc);
    screening_fit_risk(pc, va_items, nva, SCREENING_REFERRAL_SENSITIVITY, &j.risk);
    j.unsure_below = 0.5f;
    screening_text_printf(&t,
                          "\n%zu training rows (%d views), %zu held back for calibration: temperature %.2f (fine "
                          "classes), %.2f (conditions); referral thresholds: melanoma %.3f, melanoma + skin cancer "
                          "%.3f\n",
                          ntr, o->views, nva, (double)j.temp, (double)j.temp_c, (double)j.risk.melanoma_above,
                          (double)j.risk.cancer_above);
    /* The "not skin" rules. (1) the held-back skin photos' ImageNet top-1 classes. */
    j.od.above = 0.5f;
    {
        int ik = nn_net_shape(j.imnet, nn_net_count(j.imnet) - 1).c, *cls = malloc(nva * sizeof *cls), distinct = 0;
        float *il = screening_head_logits(j.imnet, feats, va, nva, dim, ik), *itop = il && cls ? screening_top_prob(il, nva, ik, cls) : NULL;
        if (!itop) {
            free(il), free(cls);
            rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < nva; i++)
            if (cls[i] < 1024 && !j.od.skin[cls[i]]) j.od.skin[cls[i]] = true, distinct++;
        qsort(itop, nva, sizeof *itop, screening_cmp_float);
        screening_text_printf(&t,
                              "ImageNet on held-back skin photos: top-1 confidence median %.2f, 98th percentile %.2f; "
                              "%d distinct top-1 classes (any other at ≥ %.2f means \"not skin\")\n",
                              (double)itop[nva / 2], (double)itop[(size_t)(0.98 * (double)(nva - 1))], distinct,
                              (double)j.od.above);
        free(il), free(itop), free(cls);
    }
    /* (2) distance from the training photos' pooled features. */
    int pd = screening_backbone_dim(bb);
    size_t *all = malloc((ntr0 + nva) * sizeof *all);
    if (all) {
        memcpy(all, tr0, ntr0 * sizeof *all);
        memcpy(all + ntr0, va, nva * sizeof *all);
    }
    if (j.pool) {
        pooled = all ? screening_head_logits(j.pool, feats, all, ntr0 + nva, dim, pd) : NULL;
    } else if (all && (pooled = malloc((ntr0 + nva) * (size_t)pd * sizeof *pooled))) {
        for (size_t i = 0; i < ntr0 + nva; i++) memcpy(pooled + i * (size_t)pd, feats + all[i] * (size_t)dim, (size_t)pd * 4);
    }
    free(all);
    if (!pooled) {
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        goto done;
    }
    size_t *seq = malloc(ntr0 * sizeof *seq);
    if (!seq) {
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        goto done;
    }
    int *lab0 = malloc(ntr0 * sizeof *lab0);
    for (size_t i = 0; lab0 && i < ntr0; i++) seq[i] = i, lab0[i] = ds.items[tr0[i] / (size_t)o->views].condition;
    rc = lab0 ? screening_ood_fit(pooled, seq, lab0, ntr0, pd, OOD_COMPONENTS, &j.ood, err)
              : core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    free(seq), free(lab0);
    if (rc) goto done;
    dist = malloc(nva * sizeof *dist);
    if (!dist) {
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        goto done;
    }
    /* The threshold: the OOD_QUANTILE of all held-back photos. (The highest
     * of the per-set quantiles was tried: 2.2 % of photos that are not skin
     * got a confident answer instead of 1.0 %, and PAD-UFES's refusals did
     * not move: its far photos are far.) Per set, for the report. */
    for (int s = 0; s < screening_set_count(); s++) {
        size_t m = 0;
        for (size_t i = 0; i < nva; i++)
            if (va_items[i]->set == s) dist[m++] = screening_ood_score(&j.ood, pooled + (ntr0 + i) * (size_t)pd);
        if (m < 30) continue;
        qsort(dist, m, sizeof *dist, screening_cmp_float);
        float q = dist[(size_t)(OOD_QUANTILE * (double)(m - 1))];
        screening_text_printf(&t, "distance of held-back %s photos: median %.2f, %.0fth percentile %.2f\n",
                              screening_set_name(s), (double)dist[m / 2], OOD_QUANTILE * 100, (double)q);
    }
    for (size_t i = 0; i < nva; i++) dist[i] = screening_ood_score(&j.ood, pooled + (ntr0 + i) * (size_t)pd);
    qsort(dist, nva, sizeof *dist, screening_cmp_float);
    j.ood.above = dist[(size_t)(OOD_QUANTILE * (double)(nva - 1))];
    screening_text_printf(&t, "distance from training photos (%d principal directions): threshold %.2f\n",
                          OOD_COMPONENTS, (double)j.ood.above);
    if ((rc = screening_evaluate(&t, &ds, &j, feats, o->views, dim, bb, hin, o->crop_watermark, o->not_skin_dir,
                                 o->threads, cache_dir, err)))
        goto done;
    /* The whole network: backbone (referenced), the skin model's projection
     * on the pooled features, then the head on the head input. */
    int first = nn_net_count(net);
    nn_node pn = {.op = NN_OP_DENSE, .in = features, .units = j.ood.m, .bias = true};
    int ood_node = nn_net_add(net, &pn);
    size_t nw = 0, nb = 0;
    float *pw = ood_node >= 0 ? nn_net_tensor(net, ood_node, 0, &nw) : NULL,
          *pb = ood_node >= 0 ? nn_net_tensor(net, ood_node, 1, &nb) : NULL;
    if (!pw || !pb || nw != (size_t)j.ood.m * pd || nb != (size_t)j.ood.m) {
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "cannot assemble the model");
        goto done;
    }
    memcpy(pw, j.ood.basis, nw * sizeof *pw);
    for (int q = 0; q < j.ood.m; q++) {
        double b = 0;
        for (int d = 0; d < pd; d++) b -= (double)j.ood.basis[(size_t)q * pd + d] * j.ood.mean[d];
        pb[q] = (float)b;
    }
    int head_first = nn_net_count(net);
    if (!append_net(net, j.head, hin)) {
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "cannot assemble the model");
        goto done;
    }
    nn_net_set_frozen(net, first);
    int side;
    float in_scale, in_zero;
    screening_backbone_input(bb, &side, &in_scale, &in_zero);
    json_t *outside = NULL;
    if (o->outside_path) {
        json_error_t je;
        json_t *doc = json_load_file(o->outside_path, JSON_REJECT_DUPLICATES, &je);
        outside = json_incref(json_object_get(doc, "outside_right_in_10"));
        json_decref(doc);
        if (!json_is_object(outside)) {
            json_decref(outside);
            rc = core_fail(err, CORE_ERR_INVALID, "outside", "%s has no outside_right_in_10 object", o->outside_path);
            goto done;
        }
    }
    meta = meta_json(&ds, &j, features, hin, imagenet, head_first, ood_node, o, in_scale, in_zero, side, outside);
    json_decref(outside);
    rc = meta ? nn_model_save(out_path, net, meta, &ref, err) : core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
done:
    free(meta);
    free(tr), free(tr0), free(va), free(va_lab), free(va_items), free(feats), free(pooled), free(lo), free(lf), free(lc),
        free(pc), free(dist);
    screening_judge_free(&j);
    screening_backbone_free(bb);
    screening_dataset_free(&ds);
    return screening_report_finish(&t, rc, report);
}
