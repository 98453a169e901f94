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
 * a frozen backbone, power-normalised features (square root, then L2), a
 * 128-unit head, the condition loss balanced over (data set, condition)
 * pairs, DermNet's watermark cropped away. */
void screening_train_defaults(screening_train_opts *o) {
    *o = (screening_train_opts){.seed = 20261125,
                                .epochs = 12,
                                .hidden = 128,
                                .batch = 64,
                                .lr = 1e-3f,
                                .weight_decay = 1e-2f,
                                .dropout = 0.3f,
                                .smoothing = 0.1f,
                                .views = 2,
                                .threads = 2,
                                .adjust = false,
                                .finetune = false,
                                .backbone = SCREENING_BACKBONE_DEFAULT,
                                .fine_weight = 1.0f,
                                .group_balance = true,
                                .power_norm = 0.5f,
                                .augment = 0,
                                .crop_watermark = true,
                                .not_skin_dir = NULL};
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

/* The model's metadata as compact JSON (malloc'd), NULL when out of memory:
 * every piece is checked, so a failed allocation never leaves a key out. */
static char *meta_json(const screening_dataset *ds, const screening_judge *j, int features, int hin, int imagenet,
                       int head_first, int ood_node, const screening_train_opts *o, float in_scale, float in_zero,
                       int size, json_t *outside) {
    json_t *classes = json_array(), *fc = json_array(), *conds = json_array();
    bool ok = classes && fc && conds;
    for (int c = 0; ok && c < ds->fine_count; c++)
        ok = !json_array_append_new(classes, json_string(ds->fine_names[c])) &&
             !json_array_append_new(fc, json_integer(ds->fine_condition[c]));
    for (int c = 0; ok && c < screening_condition_count(); c++) {
        const screening_condition *sc = screening_condition_at(c);
        char name[64];
        snprintf(name, sizeof name, "condition/%s", sc->code);
        ok = !json_array_append_new(conds, json_pack("{s:s, s:s, s:s}", "code", sc->code, "name", sc->name, "triage",
                                                     screening_triage_code(sc->triage))) &&
             !json_array_append_new(classes, json_string(name));
    }
    if (!ok) {
        json_decref(classes), json_decref(fc), json_decref(conds);
        return NULL;
    }
    json_t *m = json_pack(
        "{s:o, s:o, s:o, s:f, s:i, s:i, s:i, s:f, s:f, s:{s:i, s:f, s:f, s:s}, s:{s:I, s:i, s:i, s:f, "
        "s:f, s:f, s:f, s:i}}",
        "classes", classes, "fine_condition", fc, "conditions", conds, "temperature", (double)j->temp, "features_node",
        features, "imagenet_node", imagenet, "head_first", head_first, "unsure_below", (double)j->unsure_below,
        "not_skin_above", (double)j->od.above, "input", "size", size, "scale", (double)in_scale, "zero",
        (double)in_zero, "crop", "centre square", "train", "seed", (json_int_t)o->seed, "epochs", o->epochs, "hidden",
        o->hidden, "lr", (double)o->lr, "weight_decay", (double)o->weight_decay, "dropout", (double)o->dropout,
        "smoothing", (double)o->smoothing, "views", o->views);
    if (!m) return NULL;
    json_t *sk = json_array();
    for (int c = 0; sk && c < 1024; c++)
        if (j->od.skin[c] && json_array_append_new(sk, json_integer(c))) json_decref(sk), sk = NULL;
    json_t *tr = json_object_get(m, "train");
    ok = !json_object_set_new(m, "fine_count", json_integer(ds->fine_count)) &&
         !json_object_set_new(m, "skin_imagenet_classes", sk) &&
         !json_object_set_new(m, "temperature_conditions", json_real(j->temp_c)) &&
         !json_object_set_new(m, "condition_bias", floats_json(j->bias, screening_condition_count())) &&
         !json_object_set_new(m, "head_input_node", json_integer(hin)) &&
         !json_object_set_new(m, "backbone", json_string(o->backbone)) &&
         !(outside && json_object_set(m, "outside_right_in_10", outside)) &&
         !json_object_set_new(tr, "finetune", json_boolean(o->finetune)) &&
         !json_object_set_new(tr, "augment", json_integer(o->augment)) &&
         !json_object_set_new(tr, "crop_watermark", json_boolean(o->crop_watermark)) &&
         !json_object_set_new(tr, "power_norm", json_real(o->power_norm)) &&
         !json_object_set_new(m, "risk",
                              json_pack("{s:f, s:f, s:f}", "melanoma_above", (double)j->risk.melanoma_above,
                                        "cancer_above", (double)j->risk.cancer_above, "benign_sure",
                                        (double)j->risk.benign_sure)) &&
         !json_object_set_new(m, "ood",
                              json_pack("{s:i, s:i, s:o, s:o, s:f, s:f, s:o}", "node", ood_node, "m", j->ood.m, "mean",
                                        floats_json(j->ood.mean, j->ood.dim), "var", floats_json(j->ood.var, j->ood.m),
                                        "res_var", (double)j->ood.res_var, "above", (double)j->ood.above, "centres",
                                        floats_json(j->ood.centre, j->ood.classes * j->ood.m)));
    char *s = ok ? core_json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    return s;
}

/* Skin photos far from the training photos are as suspect as cats: the
 * threshold is this quantile of the held-back skin photos' distances. */
#define OOD_COMPONENTS 256
#define OOD_QUANTILE 0.99

/* Everything screening_train holds between its stages. Every pointer is
 * owned here and released by train_free() alone, so a stage that fails
 * returns its status and the one cleanup path frees whatever was made. */
typedef struct {
    const screening_train_opts *o;
    screening_dataset ds;
    bool ds_loaded;
    screening_backbone *bb;
    nn_net *net;        /* the backbone's network (owned by bb); the model is assembled on it */
    nn_backbone ref;    /* how the model file names the backbone */
    int features, hin;  /* the pooled-features node; the head's input node */
    int imagenet;       /* the backbone's ImageNet logits (its last node) */
    int dim, k, nc, pd; /* head-input width, fine classes, conditions, pooled-features width */
    float *feats;       /* head-input rows, item · views + view */
    screening_rows rows;
    /* Rows: every view of the training images (tr), view 0 of the training
     * images (tr0) and of the held-back tenth (va, whose items are va_items). */
    size_t *tr, *tr0, *va, ntr, ntr0, nva;
    const screening_item **va_items;
    float *lo, *lf, *lc, *pc; /* held-back logits: all, fine, conditions; condition probabilities */
    int *va_lab, *va_set;
    int *cls;          /* held-back ImageNet top-1 classes ... */
    float *il, *itop;  /* ... from these logits, with these probabilities */
    size_t *all, *seq; /* rows whose pooled features the distance model sees */
    int *lab0;
    float *pooled, *dist;
    nn_rng rng;
    size_t tail_params; /* fine-tuning: the pretrained parameters at the front of the head */
    screening_judge j;
    screening_text t;
    json_t *outside;
    char *meta;
} train_ctx;

static void train_free(train_ctx *c) {
    free(c->meta);
    json_decref(c->outside);
    free(c->tr), free(c->tr0), free(c->va), free(c->va_items), free(c->feats);
    free(c->lo), free(c->lf), free(c->lc), free(c->pc), free(c->va_lab), free(c->va_set);
    free(c->cls), free(c->il), free(c->itop);
    free(c->all), free(c->seq), free(c->lab0), free(c->pooled), free(c->dist);
    screening_judge_free(&c->j);
    screening_backbone_free(c->bb);
    if (c->ds_loaded) screening_dataset_free(&c->ds);
}

static core_status nomem(core_error *err) { return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory"); }

/* The data set, the backbone, and the head-input activations of every
 * image and view (from the cache when it has them). */
static core_status train_features(train_ctx *c, const char *data_dir, const char *models_dir, const char *cache_dir,
                                  core_error *err) {
    const screening_train_opts *o = c->o;
    core_status rc = screening_dataset_load(data_dir, &c->ds, err);
    if (rc) return rc;
    c->ds_loaded = true;
    if (o->examples_dir && (rc = screening_examples_load(o->examples_dir, &c->ds, err))) return rc;
    if ((rc = screening_backbone_open(models_dir, o->backbone, &c->bb, err))) return rc;
    c->net = screening_backbone_net(c->bb, &c->features, &c->ref);
    /* The head reads the pooled features, or — fine-tuning — the last
     * block's input activations, and then runs copies of the last block and
     * the 1×1 convolution to 1280 that are trained with it. */
    c->hin = o->finetune ? last_block_input(c->net, c->features) : c->features;
    if (c->hin < 0)
        return core_fail(err, CORE_ERR_INVALID, "models", "the backbone has no residual block to fine-tune");
    char cache[4096];
    screening_extract_opts eo = {
        .views = o->views, .node = c->hin, .augment = o->augment, .crop_watermark = o->crop_watermark};
    if (cache_dir) screening_cache_path(c->bb, &eo, cache_dir, cache, sizeof cache);
    if ((rc = screening_extract_with(c->bb, &c->ds, &eo, o->threads, cache_dir ? cache : NULL, &c->feats, err)))
        return rc;
    c->dim = screening_node_dim(c->bb, c->hin);
    c->k = c->ds.fine_count;
    c->nc = screening_condition_count();
    c->pd = screening_backbone_dim(c->bb);
    c->rows = (screening_rows){c->feats, c->dim, o->views, &c->ds};
    return CORE_OK;
}

/* Rows: every view of the training images; the held-back tenth (view 0)
 * for the temperature, the risk thresholds and the skin model's threshold. */
static core_status train_split(train_ctx *c, core_error *err) {
    size_t n = c->ds.count, views = (size_t)c->o->views;
    c->tr = malloc(n * views * sizeof *c->tr);
    c->tr0 = malloc(n * sizeof *c->tr0);
    c->va = malloc(n * sizeof *c->va);
    c->va_items = malloc(n * sizeof *c->va_items);
    if (!c->tr || !c->tr0 || !c->va || !c->va_items) return nomem(err);
    for (size_t i = 0; i < n; i++) {
        if (c->ds.items[i].test) continue;
        if (screening_held_back(c->ds.items[i].path)) {
            c->va_items[c->nva] = &c->ds.items[i];
            c->va[c->nva++] = i * views;
        } else {
            c->tr0[c->ntr0++] = i * views;
            for (size_t w = 0; w < views; w++) c->tr[c->ntr++] = i * views + w;
        }
    }
    if (!c->nva || !c->ntr) return core_fail(err, CORE_ERR_INVALID, "data", "too few training photos");
    return CORE_OK;
}

/* The head (fine-tuning: the pretrained tail with the fresh MLP after it),
 * the ImageNet classifier and the pooling on the head input; the head is
 * then trained. */
static core_status train_head(train_ctx *c, core_error *err) {
    const screening_train_opts *o = c->o;
    screening_judge *j = &c->j;
    nn_set_threads(o->threads);
    nn_rng_seed(&c->rng, o->seed);
    nn_net *mlp = screening_head_new(c->pd, o->hidden, o->dropout, c->k + c->nc, o->power_norm);
    if (mlp) nn_net_init(mlp, &c->rng);
    if (mlp && c->hin != c->features) {
        /* pretrained tail (weights copied) + the freshly initialised MLP */
        j->head = nn_net_slice(c->net, c->hin, c->hin + 1, c->features + 1);
        nn_param tp[32];
        if (j->head) c->tail_params = nn_net_params(j->head, tp, 32);
        if (j->head && !append_net(j->head, mlp, nn_net_count(j->head) - 1)) nn_net_free(j->head), j->head = NULL;
        nn_net_free(mlp);
    } else {
        j->head = mlp;
    }
    c->imagenet = nn_net_count(c->net) - 1;
    j->imnet = nn_net_slice(c->net, c->hin, c->hin + 1, c->imagenet + 1);
    j->pool = c->hin == c->features ? NULL : nn_net_slice(c->net, c->hin, c->hin + 1, c->features + 1);
    if (!j->head || !j->imnet || (c->hin != c->features && !j->pool))
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory or no ImageNet classifier on the features");
    return screening_fit_head(j->head, c->tail_params, &c->rows, c->tr, c->ntr, o, &c->rng, &c->t, err);
}

/* Temperatures (fine, conditions), condition offsets and the referral
 * thresholds, on the held-back tenth. */
static core_status train_calibrate(train_ctx *c, core_error *err) {
    screening_judge *j = &c->j;
    size_t nva = c->nva;
    int k = c->k, nc = c->nc;
    c->lo = screening_head_logits(j->head, c->feats, c->va, nva, c->dim, k + nc);
    c->lf = malloc(nva * (size_t)k * sizeof *c->lf);
    c->lc = malloc(nva * (size_t)nc * sizeof *c->lc);
    c->pc = malloc(nva * (size_t)nc * sizeof *c->pc);
    c->va_lab = malloc(nva * sizeof *c->va_lab);
    c->va_set = malloc(nva * sizeof *c->va_set);
    if (!c->lo || !c->lf || !c->lc || !c->pc || !c->va_lab || !c->va_set) return nomem(err);
    screening_split_logits(c->lo, nva, k, nc, c->lf, c->lc);
    for (size_t i = 0; i < nva; i++) c->va_lab[i] = c->va_items[i]->fine;
    j->temp = screening_fit_temperature(c->lf, c->va_lab, nva, k);
    /* Conditions: offsets for balanced accuracy per data set, then the
     * temperature on the adjusted logits (calibrate.c says why). */
    for (size_t i = 0; i < nva; i++) c->va_lab[i] = c->va_items[i]->condition, c->va_set[i] = c->va_items[i]->set;
    if (c->o->adjust) screening_fit_bias(c->lc, c->va_lab, c->va_set, nva, nc, j->bias);
    for (size_t i = 0; i < nva; i++)
        for (int q = 0; q < nc; q++) c->lc[i * nc + q] += j->bias[q];
    j->temp_c = screening_fit_temperature(c->lc, c->va_lab, nva, nc);
    if (c->o->adjust) {
        screening_text_printf(&c->t, "condition offsets (held-back balanced accuracy):");
        for (int q = 0; q < nc; q++)
            screening_text_printf(&c->t, " %s %+.2f", screening_condition_at(q)->code, j->bias[q]);
        screening_text_printf(&c->t, "\n");
    }
    /* Risk thresholds: ≥ SCREENING_REFERRAL_SENSITIVITY of held-back malignant lesions of every set referred. */
    screening_softmax_t(c->lc, nva, nc, j->temp_c, c->pc);
    screening_fit_risk(c->pc, c->va_items, nva, SCREENING_REFERRAL_SENSITIVITY, &j->risk);
    j->unsure_below = 0.5f;
    screening_text_printf(&c->t,
                          "\n%zu training rows (%d views), %zu held back for calibration: temperature %.2f (fine "
                          "classes), %.2f (conditions); referral thresholds: melanoma %.3f, melanoma + skin cancer "
                          "%.3f\n",
                          c->ntr, c->o->views, nva, (double)j->temp, (double)j->temp_c, (double)j->risk.melanoma_above,
                          (double)j->risk.cancer_above);
    return CORE_OK;
}

/* The "not skin" rules. (1) the held-back skin photos' ImageNet top-1 classes. */
static core_status train_imagenet_rule(train_ctx *c, core_error *err) {
    screening_judge *j = &c->j;
    size_t nva = c->nva;
    j->od.above = 0.5f;
    int ik = nn_net_shape(j->imnet, nn_net_count(j->imnet) - 1).c, distinct = 0;
    c->cls = malloc(nva * sizeof *c->cls);
    c->il = screening_head_logits(j->imnet, c->feats, c->va, nva, c->dim, ik);
    c->itop = c->il && c->cls ? screening_top_prob(c->il, nva, ik, c->cls) : NULL;
    if (!c->itop) return nomem(err);
    for (size_t i = 0; i < nva; i++)
        if (c->cls[i] < 1024 && !j->od.skin[c->cls[i]]) j->od.skin[c->cls[i]] = true, distinct++;
    qsort(c->itop, nva, sizeof *c->itop, screening_cmp_float);
    screening_text_printf(&c->t,
                          "ImageNet on held-back skin photos: top-1 confidence median %.2f, 98th percentile %.2f; "
                          "%d distinct top-1 classes (any other at ≥ %.2f means \"not skin\")\n",
                          (double)c->itop[nva / 2], (double)c->itop[(size_t)(0.98 * (double)(nva - 1))], distinct,
                          (double)j->od.above);
    return CORE_OK;
}

/* (2) distance from the training photos' pooled features: the model on
 * view 0 of the training images, its threshold on the held-back ones. */
static core_status train_distance_rule(train_ctx *c, core_error *err) {
    screening_judge *j = &c->j;
    size_t ntr0 = c->ntr0, nva = c->nva, pd = (size_t)c->pd;
    c->all = malloc((ntr0 + nva) * sizeof *c->all);
    if (!c->all) return nomem(err);
    memcpy(c->all, c->tr0, ntr0 * sizeof *c->all);
    memcpy(c->all + ntr0, c->va, nva * sizeof *c->all);
    if (j->pool) {
        c->pooled = screening_head_logits(j->pool, c->feats, c->all, ntr0 + nva, c->dim, c->pd);
    } else {
        c->pooled = malloc((ntr0 + nva) * pd * sizeof *c->pooled);
        for (size_t i = 0; c->pooled && i < ntr0 + nva; i++)
            memcpy(c->pooled + i * pd, c->feats + c->all[i] * (size_t)c->dim, pd * sizeof *c->pooled);
    }
    c->seq = malloc(ntr0 * sizeof *c->seq);
    c->lab0 = malloc(ntr0 * sizeof *c->lab0);
    c->dist = malloc(nva * sizeof *c->dist);
    if (!c->pooled || !c->seq || !c->lab0 || !c->dist) return nomem(err);
    for (size_t i = 0; i < ntr0; i++)
        c->seq[i] = i, c->lab0[i] = c->ds.items[c->tr0[i] / (size_t)c->o->views].condition;
    core_status rc = screening_ood_fit(c->pooled, c->seq, c->lab0, ntr0, c->pd, OOD_COMPONENTS, &j->ood, err);
    if (rc) return rc;
    /* The threshold: the OOD_QUANTILE of all held-back photos. (The highest
     * of the per-set quantiles was tried: 2.2 % of photos that are not skin
     * got a confident answer instead of 1.0 %, and PAD-UFES's refusals did
     * not move: its far photos are far.) Per set, for the report. */
    float *dist = c->dist;
    for (int s = 0; s < screening_set_count(); s++) {
        size_t m = 0;
        for (size_t i = 0; i < nva; i++)
            if (c->va_items[i]->set == s) dist[m++] = screening_ood_score(&j->ood, c->pooled + (ntr0 + i) * pd);
        if (m < 30) continue;
        qsort(dist, m, sizeof *dist, screening_cmp_float);
        float q = dist[(size_t)(OOD_QUANTILE * (double)(m - 1))];
        screening_text_printf(&c->t, "distance of held-back %s photos: median %.2f, %.0fth percentile %.2f\n",
                              screening_set_name(s), (double)dist[m / 2], OOD_QUANTILE * 100, (double)q);
    }
    for (size_t i = 0; i < nva; i++) dist[i] = screening_ood_score(&j->ood, c->pooled + (ntr0 + i) * pd);
    qsort(dist, nva, sizeof *dist, screening_cmp_float);
    j->ood.above = dist[(size_t)(OOD_QUANTILE * (double)(nva - 1))];
    screening_text_printf(&c->t, "distance from training photos (%d principal directions): threshold %.2f\n",
                          OOD_COMPONENTS, (double)j->ood.above);
    return CORE_OK;
}

/* The whole network: backbone (referenced), the skin model's projection
 * on the pooled features, then the head on the head input. */
static core_status train_assemble(train_ctx *c, int *ood_node, int *head_first, core_error *err) {
    screening_judge *j = &c->j;
    int first = nn_net_count(c->net), pd = c->pd;
    /* The distance reads the pooled features as they are: fitted on their
     * power normalisation instead, 2.0 % of photos that are not skin got a
     * confident answer (1.1 % this way; docs/MODEL.md). */
    nn_node pn = {.op = NN_OP_DENSE, .in = c->features, .units = j->ood.m, .bias = true};
    *ood_node = nn_net_add(c->net, &pn);
    size_t nw = 0, nb = 0;
    float *pw = *ood_node >= 0 ? nn_net_tensor(c->net, *ood_node, 0, &nw) : NULL,
          *pb = *ood_node >= 0 ? nn_net_tensor(c->net, *ood_node, 1, &nb) : NULL;
    if (!pw || !pb || nw != (size_t)j->ood.m * (size_t)pd || nb != (size_t)j->ood.m)
        return core_fail(err, CORE_ERR_NOMEM, NULL, "cannot assemble the model");
    memcpy(pw, j->ood.basis, nw * sizeof *pw);
    for (int q = 0; q < j->ood.m; q++) {
        double b = 0;
        for (int d = 0; d < pd; d++) b -= (double)j->ood.basis[(size_t)q * pd + d] * j->ood.mean[d];
        pb[q] = (float)b;
    }
    *head_first = nn_net_count(c->net);
    if (!append_net(c->net, j->head, c->hin)) return core_fail(err, CORE_ERR_NOMEM, NULL, "cannot assemble the model");
    nn_net_set_frozen(c->net, first);
    return CORE_OK;
}

/* eval --protocol source-out's figures, embedded as they are. */
static core_status train_load_outside(train_ctx *c, core_error *err) {
    const char *path = c->o->outside_path;
    if (!path) return CORE_OK;
    core_error pe = {0};
    json_t *doc = core_json_load_file(path, JSON_REJECT_DUPLICATES, NULL, &pe);
    if (!doc && pe.code == CORE_ERR_NOMEM) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    c->outside = json_incref(json_object_get(doc, "outside_right_in_10"));
    json_decref(doc);
    if (!json_is_object(c->outside))
        return core_fail(err, CORE_ERR_INVALID, "outside", "%s has no outside_right_in_10 object", path);
    return CORE_OK;
}

static core_status train_save(train_ctx *c, const char *out_path, core_error *err) {
    int ood_node = -1, head_first = 0, side = 0;
    float in_scale, in_zero;
    core_status rc = train_assemble(c, &ood_node, &head_first, err);
    if (!rc) rc = train_load_outside(c, err);
    if (rc) return rc;
    screening_backbone_input(c->bb, &side, &in_scale, &in_zero);
    c->meta = meta_json(&c->ds, &c->j, c->features, c->hin, c->imagenet, head_first, ood_node, c->o, in_scale, in_zero,
                        side, c->outside);
    if (!c->meta) return nomem(err);
    return nn_model_save(out_path, c->net, c->meta, &c->ref, err);
}

core_status screening_train(const char *data_dir, const char *models_dir, const char *out_path,
                            const screening_train_opts *o, const char *cache_dir, char **report, core_error *err) {
    *report = NULL;
    train_ctx c = {.o = o};
    core_status rc = train_features(&c, data_dir, models_dir, cache_dir, err);
    if (!rc) rc = train_split(&c, err);
    if (!rc) rc = train_head(&c, err);
    if (!rc) rc = train_calibrate(&c, err);
    if (!rc) rc = train_imagenet_rule(&c, err);
    if (!rc) rc = train_distance_rule(&c, err);
    if (!rc)
        rc = screening_evaluate(&c.t, &c.ds, &c.j, c.feats, o->views, c.dim, c.bb, c.hin, o->crop_watermark,
                                o->not_skin_dir, o->threads, cache_dir, err);
    if (!rc) rc = train_save(&c, out_path, err);
    screening_text t = c.t;
    train_free(&c);
    return screening_report_finish(&t, rc, report);
}
