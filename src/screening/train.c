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

#include "crypto/crypto.h"

void screening_train_defaults(screening_train_opts *o) {
    *o = (screening_train_opts){.seed = 20261125, .epochs = 15, .hidden = 512, .batch = 64, .lr = 1e-3f,
                                .weight_decay = 1e-2f, .dropout = 0.3f, .smoothing = 0.1f, .views = 2, .threads = 2,
                                .adjust = false, .finetune = true};
}

static bool held_back(const char *path) {
    uint8_t h[32];
    cs_crypto_sha256(h, path, strlen(path));
    return h[0] % 10 == 0;
}

static nn_net *head_new(int dim, int hidden, float dropout, int k) {
    nn_net *h = nn_net_new(dim, 1, 1);
    nn_node n[] = {{.op = NN_OP_DENSE, .in = NN_INPUT, .units = hidden, .bias = true},
                   {.op = NN_OP_ACT, .in = 0, .act = NN_RELU},
                   {.op = NN_OP_DROPOUT, .in = 1, .p = dropout},
                   {.op = NN_OP_DENSE, .in = 2, .units = k, .bias = true}};
    for (size_t i = 0; h && i < 4; i++)
        if (nn_net_add(h, &n[i]) != (int)i) {
            nn_net_free(h);
            return NULL;
        }
    return h;
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

static char *meta_json(const screening_dataset *ds, float temp, float temp_c, const float *bias, int features,
                       int hin, int imagenet, int head_first,
                       const screening_train_opts *o, float in_scale, float in_zero, int size, float unsure_below,
                       const screening_ood_rule *od) {
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
                          "classes", classes, "fine_condition", fc, "conditions", conds, "temperature", (double)temp,
                          "features_node", features, "imagenet_node", imagenet, "head_first", head_first,
                          "unsure_below", (double)unsure_below, "not_skin_above", (double)od->above, "input", "size", size, "scale", (double)in_scale,
                          "zero", (double)in_zero, "crop", "centre square", "train", "seed", (json_int_t)o->seed,
                          "epochs", o->epochs, "hidden", o->hidden, "lr", (double)o->lr, "weight_decay",
                          (double)o->weight_decay, "dropout", (double)o->dropout, "smoothing", (double)o->smoothing,
                          "views", o->views);
    json_object_set_new(m, "fine_count", json_integer(ds->fine_count));
    json_t *sk = json_array();
    for (int c = 0; c < 1024; c++)
        if (od->skin[c]) json_array_append_new(sk, json_integer(c));
    json_object_set_new(m, "skin_imagenet_classes", sk);
    json_object_set_new(m, "temperature_conditions", json_real(temp_c));
    json_t *cb = json_array();
    for (int c = 0; c < screening_condition_count(); c++) json_array_append_new(cb, json_real(bias[c]));
    json_object_set_new(m, "condition_bias", cb);
    json_object_set_new(m, "head_input_node", json_integer(hin));
    json_object_set_new(json_object_get(m, "train"), "finetune", json_boolean(o->finetune));
    char *s = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    return s;
}

core_status screening_train(const char *data_dir, const char *models_dir, const char *out_path,
                            const screening_train_opts *o, const char *cache_dir, char **report, core_error *err) {
    *report = NULL;
    screening_dataset ds;
    core_status rc = screening_dataset_load(data_dir, &ds, err);
    if (rc) return rc;
    screening_backbone *bb = NULL;
    float *feats = NULL;
    nn_net *head = NULL, *imnet = NULL;
    size_t *tr = NULL, *va = NULL;
    int *va_lab = NULL;
    float *va_log = NULL, *cw = NULL, *ccw = NULL;
    nn_param ps[32];
    float *m[32] = {0}, *v[32] = {0};
    screening_text t = {0};
    if ((rc = screening_backbone_open(models_dir, SCREENING_BACKBONE_FILE, &bb, err))) goto done;
    char cache[4096];
    if (cache_dir) snprintf(cache, sizeof cache, "%s/features-v%d.bin", cache_dir, o->views);
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
    if (cache_dir && hin != features)
        snprintf(cache, sizeof cache, "%s/node%d-v%d.bin", cache_dir, hin, o->views);
    if ((rc = screening_extract_node(bb, &ds, o->views, hin, o->threads, cache_dir ? cache : NULL, &feats, err)))
        goto done;
    int dim = screening_node_dim(bb, hin), k = ds.fine_count;
    /* Rows: every view of the training images; the held-back tenth (view 0) for the temperature. */
    size_t ntr = 0, nva = 0;
    tr = malloc(ds.count * (size_t)o->views * sizeof *tr);
    va = malloc(ds.count * sizeof *va);
    size_t *count = calloc((size_t)k, sizeof *count);
    for (size_t i = 0; i < ds.count; i++) {
        if (ds.items[i].test) continue;
        if (held_back(ds.items[i].path)) {
            va[nva++] = i * (size_t)o->views;
        } else {
            for (int w = 0; w < o->views; w++) tr[ntr++] = i * (size_t)o->views + (size_t)w;
            count[ds.items[i].fine]++;
        }
    }
    /* Class weights ∝ 1/√frequency, mean 1: the ten thousand ISIC images
     * must not drown the 40-image DermNet topics, nor the reverse. */
    cw = malloc((size_t)k * sizeof *cw);
    double wsum = 0;
    for (int c = 0; c < k; c++) wsum += cw[c] = count[c] ? 1.0f / sqrtf((float)count[c]) : 0;
    for (int c = 0; c < k; c++) cw[c] = (float)(cw[c] * k / wsum);
    free(count);
    nn_set_threads(o->threads);
    nn_rng rng;
    nn_rng_seed(&rng, o->seed);
    /* Condition weights ∝ 1/frequency (balanced): the product's answer is
     * a condition, and "other" alone has half the DermNet images. */
    int nc = screening_condition_count();
    size_t ccount[32] = {0};
    for (size_t i = 0; i < ntr; i++) ccount[ds.items[tr[i] / o->views].condition]++;
    ccw = malloc((size_t)nc * sizeof *ccw);
    wsum = 0;
    for (int c = 0; c < nc; c++) wsum += ccw[c] = ccount[c] ? 1.0f / (float)ccount[c] : 0;
    for (int c = 0; c < nc; c++) ccw[c] = (float)(ccw[c] * nc / wsum);
    nn_net *mlp = head_new(screening_backbone_dim(bb), o->hidden, o->dropout, k + nc);
    if (mlp) nn_net_init(mlp, &rng);
    size_t tail_params = 0;
    if (mlp && hin != features) {
        /* pretrained tail (weights copied) + the freshly initialised MLP */
        head = nn_net_slice(net, hin, hin + 1, features + 1);
        nn_param tp[32];
        if (head) tail_params = nn_net_params(head, tp, 32);
        if (head && !append_net(head, mlp, nn_net_count(head) - 1)) nn_net_free(head), head = NULL;
        nn_net_free(mlp);
    } else {
        head = mlp;
    }
    if (!head) {
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        goto done;
    }
    size_t np = nn_net_params(head, ps, 32);
    for (size_t p = 0; p < np; p++) m[p] = calloc(ps[p].n, 4), v[p] = calloc(ps[p].n, 4);
    nn_adamw opt;
    nn_adamw_init(&opt, o->lr, o->weight_decay);
    int B = o->batch;
    int ko = k + nc;
    float *x = malloc((size_t)B * dim * 4), *dl = malloc((size_t)B * ko * 4);
    float *lf = malloc((size_t)B * k * 4), *lc = malloc((size_t)B * nc * 4), *df = malloc((size_t)B * k * 4),
          *dc = malloc((size_t)B * nc * 4);
    int32_t *y = malloc((size_t)B * sizeof *y), *yc = malloc((size_t)B * sizeof *yc);
    nn_run *run = nn_run_new();
    int64_t steps = (int64_t)o->epochs * (int64_t)((ntr + B - 1) / B), step = 0;
    for (int ep = 0; ep < o->epochs; ep++) {
        for (size_t i = ntr; i > 1; i--) { /* Fisher–Yates with the seeded generator */
            size_t j = nn_rng_next(&rng) % i, tmp = tr[i - 1];
            tr[i - 1] = tr[j], tr[j] = tmp;
        }
        double loss = 0;
        for (size_t i = 0; i < ntr; i += (size_t)B, step++) {
            int b = (int)(ntr - i < (size_t)B ? ntr - i : (size_t)B);
            for (int j = 0; j < b; j++) {
                memcpy(x + (size_t)j * dim, feats + tr[i + j] * (size_t)dim, (size_t)dim * 4);
                y[j] = ds.items[tr[i + j] / o->views].fine;
                yc[j] = ds.items[tr[i + j] / o->views].condition;
            }
            const float *lo = nn_run_forward(run, head, b, x, true, &rng, 0);
            /* Two losses on one output: fine classes and conditions. */
            screening_split_logits(lo, (size_t)b, k, nc, lf, lc);
            loss += (nn_softmax_ce(b, k, lf, y, o->smoothing, cw, df, NULL) +
                     nn_softmax_ce(b, nc, lc, yc, o->smoothing, ccw, dc, NULL)) * b;
            for (int j = 0; j < b; j++) {
                memcpy(dl + (size_t)j * ko, df + (size_t)j * k, (size_t)k * 4);
                memcpy(dl + (size_t)j * ko + k, dc + (size_t)j * nc, (size_t)nc * 4);
            }
            nn_net_zero_grad(head);
            nn_run_backward(run, head, dl);
            float lr = nn_cosine_lr(o->lr, o->lr * 0.01f, step, steps / 20, steps);
            nn_adamw_tick(&opt);
            for (size_t p = 0; p < np; p++) {
                /* pretrained layers move ten times slower than the new head */
                opt.lr = p < tail_params ? lr * 0.1f : lr;
                nn_adamw_step(&opt, ps[p].n, ps[p].w, ps[p].g, m[p], v[p], ps[p].decay);
            }
        }
        if (ep == 0 || ep == o->epochs - 1 || (ep + 1) % 10 == 0)
            screening_text_printf(&t, "epoch %d: training loss %.4f\n", ep + 1, loss / (double)ntr);
    }
    nn_run_free(run);
    free(x), free(dl), free(y), free(yc), free(lf), free(lc), free(df), free(dc);
    /* Temperatures (fine, conditions) on the held-back tenth. */
    float *va_all = screening_head_logits(head, feats, va, nva, dim, ko);
    va_log = malloc((nva ? nva : 1) * (size_t)k * 4);
    float *va_c = malloc((nva ? nva : 1) * (size_t)nc * 4);
    screening_split_logits(va_all, nva, k, nc, va_log, va_c);
    free(va_all);
    va_lab = malloc((nva ? nva : 1) * sizeof *va_lab);
    for (size_t i = 0; i < nva; i++) va_lab[i] = ds.items[va[i] / o->views].fine;
    float temp = nva ? screening_fit_temperature(va_log, va_lab, nva, k) : 1.0f;
    /* Conditions: offsets for balanced accuracy per data set, then the
     * temperature on the adjusted logits (calibrate.c says why). */
    int *va_set = malloc((nva ? nva : 1) * sizeof *va_set);
    for (size_t i = 0; i < nva; i++) {
        va_lab[i] = ds.items[va[i] / o->views].condition;
        va_set[i] = ds.items[va[i] / o->views].set;
    }
    float bias[32] = {0};
    if (nva && o->adjust) screening_fit_bias(va_c, va_lab, va_set, nva, nc, bias);
    free(va_set);
    for (size_t i = 0; i < nva; i++)
        for (int c = 0; c < nc; c++) va_c[i * nc + c] += bias[c];
    float temp_c = nva ? screening_fit_temperature(va_c, va_lab, nva, nc) : 1.0f;
    free(va_c);
    if (o->adjust) {
        screening_text_printf(&t, "condition offsets (held-back balanced accuracy):");
        for (int c = 0; c < nc; c++) screening_text_printf(&t, " %s %+.2f", screening_condition_at(c)->code, bias[c]);
        screening_text_printf(&t, "\n");
    }
    const float unsure_below = 0.5f;
    screening_text_printf(&t,
                          "\n%zu training rows (%d views), %zu held back for calibration: temperature %.2f (fine "
                          "classes), %.2f (conditions)\n",
                          ntr, o->views, nva, temp, temp_c);
    int imagenet = nn_net_count(net) - 1, first = nn_net_count(net);
    imnet = nn_net_slice(net, hin, hin + 1, imagenet + 1);
    if (!imnet) {
        rc = core_fail(err, CORE_ERR_INVALID, "models", "the backbone has no ImageNet classifier on its features");
        goto done;
    }
    /* The "not skin" rule: the held-back skin photos' ImageNet top-1 classes. */
    screening_ood_rule od = {0};
    od.above = 0.5f;
    if (nva) {
        int ik = nn_net_shape(imnet, nn_net_count(imnet) - 1).c, *cls = malloc(nva * sizeof *cls), distinct = 0;
        float *il = screening_head_logits(imnet, feats, va, nva, dim, ik), *itop = screening_top_prob(il, nva, ik, cls);
        for (size_t i = 0; i < nva; i++)
            if (cls[i] < 1024 && !od.skin[cls[i]]) od.skin[cls[i]] = true, distinct++;
        qsort(itop, nva, sizeof *itop, screening_cmp_float);
        screening_text_printf(&t,
                              "ImageNet on held-back skin photos: top-1 confidence median %.2f, 98th percentile %.2f; "
                              "%d distinct top-1 classes (any other at ≥ %.2f means \"not skin\")\n",
                              itop[nva / 2], itop[(size_t)(0.98 * (double)(nva - 1))], distinct, od.above);
        free(il), free(itop), free(cls);
    }
    screening_evaluate(&t, &ds, head, imnet, feats, o->views, dim, temp, temp_c, bias, unsure_below, &od);
    screening_not_skin_report(&t, models_dir, bb, hin, head, imnet, temp_c, bias, unsure_below, &od);
    /* The whole network: backbone (referenced) + head on its pooled features
     * (or on the last block's input, with the fine-tuned copies). */
    if (!append_net(net, head, hin)) {
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "cannot assemble the model");
        goto done;
    }
    nn_net_set_frozen(net, first);
    char *meta = meta_json(&ds, temp, temp_c, bias, features, hin, imagenet, first, o, 1.0f / 128, 128, 224,
                           unsure_below, &od);
    rc = meta ? nn_model_save(out_path, net, meta, &ref, err) : core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    free(meta);
done:
    for (int p = 0; p < 32; p++) free(m[p]), free(v[p]);
    free(tr), free(va), free(va_lab), free(va_log), free(cw), free(ccw), free(feats);
    nn_net_free(head);
    nn_net_free(imnet);
    screening_backbone_free(bb);
    screening_dataset_free(&ds);
    return screening_report_finish(&t, rc, report);
}

