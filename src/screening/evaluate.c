/* Evaluation of a screening model on the held-out images of every set:
 * per-set metrics on the set's own classes and on the conditions the
 * product shows, calibration, how often it says "unsure", and the non-skin
 * photo — both right after training (train.c) and for a saved model
 * (`caresync eval`). */
#include "screening/internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Logits of rows (feature vectors) through the head, in batches. */
float *screening_head_logits(nn_net *head, const float *feats, const size_t *rows, size_t n, int dim, int k) {
    float *out = malloc((n ? n : 1) * (size_t)k * sizeof(float)), *x = malloc(256 * (size_t)dim * sizeof(float));
    nn_run *run = nn_run_new();
    for (size_t i = 0; out && x && run && i < n; i += 256) {
        size_t b = n - i < 256 ? n - i : 256;
        for (size_t j = 0; j < b; j++) memcpy(x + j * dim, feats + rows[i + j] * (size_t)dim, (size_t)dim * 4);
        const float *y = nn_run_forward(run, head, (int)b, x, false, NULL, 0);
        if (!y) {
            free(out);
            out = NULL;
            break;
        }
        memcpy(out + i * k, y, b * (size_t)k * 4);
    }
    nn_run_free(run);
    free(x);
    return out;
}

core_status screening_report_finish(screening_text *t, core_status rc, char **report) {
    if (rc) {
        free(t->buf);
        return rc;
    }
    *report = t->buf;
    return CORE_OK;
}

int screening_cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Highest softmax probability of each row's logits (and its class, if cls). */
float *screening_top_prob(const float *logits, size_t n, int k, int *cls) {
    float *p = malloc((size_t)k * sizeof(float)), *top = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        nn_softmax(1, k, logits + i * k, p);
        int best = 0;
        for (int c = 1; c < k; c++)
            if (p[c] > p[best]) best = c;
        top[i] = p[best];
        if (cls) cls[i] = best;
    }
    free(p);
    return top;
}

/* "Not skin": the backbone's ImageNet classifier is confident (≥ above)
 * about a class that none of the held-back skin photos had as its top-1.
 * Confidence alone does not work: half the ImageNet classes fire on skin
 * (the 98th percentile on skin photos is 0.95, above the cat's 0.87). */

bool screening_is_not_skin(const screening_ood_rule *r, int cls, float p) {
    return p >= r->above && (cls < 0 || cls >= 1024 || !r->skin[cls]);
}

/* The head's outputs are k fine-class logits then nc condition logits:
 * split rows of both into separate arrays. */
void screening_split_logits(const float *lg, size_t n, int k, int nc, float *fine, float *cond) {
    for (size_t i = 0; i < n; i++) {
        memcpy(fine + i * k, lg + i * (size_t)(k + nc), (size_t)k * 4);
        memcpy(cond + i * nc, lg + i * (size_t)(k + nc) + k, (size_t)nc * 4);
    }
}

/* The evaluation report over the test items of every set. imnet: the
 * backbone's ImageNet classifier on the same features; a photo it takes for
 * something else (is_not_skin), or a top condition below unsure_below,
 * makes the answer "unsure". */
void screening_evaluate(screening_text *t, const screening_dataset *ds, nn_net *head, nn_net *imnet, const float *feats,
                     int views, int dim, float temp, float temp_c, const float *bias, float unsure_below,
                     const screening_ood_rule *od) {
    int k = ds->fine_count, nc = screening_condition_count();
    const char *cnames[32];
    for (int c = 0; c < nc; c++) cnames[c] = screening_condition_at(c)->code;
    for (int s = 0; s < screening_set_count(); s++) {
        size_t n = 0;
        size_t *rows = malloc(ds->count * sizeof *rows);
        for (size_t i = 0; i < ds->count; i++)
            if (ds->items[i].set == s && ds->items[i].test) rows[n++] = i * (size_t)views;
        if (!n) {
            free(rows);
            continue;
        }
        float *lo = screening_head_logits(head, feats, rows, n, dim, k + nc);
        float *lg = malloc(n * (size_t)k * 4), *lc = malloc(n * (size_t)nc * 4);
        screening_split_logits(lo, n, k, nc, lg, lc);
        free(lo);
        for (size_t i = 0; i < n; i++)
            for (int c = 0; c < nc; c++) lc[i * nc + c] += bias[c];
        int ik = nn_net_shape(imnet, nn_net_count(imnet) - 1).c;
        int *icls = malloc(n * sizeof *icls);
        float *il = screening_head_logits(imnet, feats, rows, n, dim, ik), *itop = screening_top_prob(il, n, ik, icls);
        free(il);
        float *p1 = malloc(n * (size_t)k * 4), *pt = malloc(n * (size_t)k * 4);
        screening_softmax_t(lg, n, k, 1.0f, p1);
        screening_softmax_t(lg, n, k, temp, pt);
        /* (a) within the set: its own classes, probabilities renormalised. */
        int local[256], nl = 0;
        for (int c = 0; c < k && nl < 256; c++)
            if (!strncmp(ds->fine_names[c], screening_set_name(s), strlen(screening_set_name(s)))) local[nl++] = c;
        float *q1 = malloc(n * (size_t)nl * 4), *qt = malloc(n * (size_t)nl * 4);
        int *lab = malloc(n * sizeof *lab);
        const char *lnames[256];
        for (int c = 0; c < nl; c++) lnames[c] = strchr(ds->fine_names[local[c]], '/') + 1;
        for (size_t i = 0; i < n; i++) {
            double s1 = 0, st = 0;
            for (int c = 0; c < nl; c++) s1 += p1[i * k + local[c]], st += pt[i * k + local[c]];
            for (int c = 0; c < nl; c++) {
                q1[i * nl + c] = (float)(p1[i * k + local[c]] / s1);
                qt[i * nl + c] = (float)(pt[i * k + local[c]] / st);
                if (local[c] == ds->items[rows[i] / views].fine) lab[i] = c;
            }
        }
        char title[200];
        snprintf(title, sizeof title, "%s — its own %d classes", screening_set_name(s), nl);
        screening_metrics_report(t, title, q1, qt, lab, n, nl, lnames, NULL);
        /* (b) the product's view: the condition outputs. */
        float *g1 = malloc(n * (size_t)nc * 4), *gt = malloc(n * (size_t)nc * 4);
        screening_softmax_t(lc, n, nc, 1.0f, g1);
        screening_softmax_t(lc, n, nc, temp_c, gt);
        size_t unsure = 0, not_skin = 0;
        for (size_t i = 0; i < n; i++) {
            float top = 0;
            bool ns = screening_is_not_skin(od, icls[i], itop[i]);
            not_skin += ns;
            for (int c = 0; c < nc; c++) top = fmaxf(top, gt[i * nc + c]);
            unsure += top < unsure_below || ns;
            lab[i] = ds->items[rows[i] / views].condition;
        }
        snprintf(title, sizeof title, "%s — conditions (what the product shows)", screening_set_name(s));
        screening_metrics_report(t, title, g1, gt, lab, n, nc, cnames, NULL);
        screening_text_printf(t,
                              "\n\"unsure — please see a professional\" (top condition < %.2f, or not skin): "
                              "%zu of %zu (%.1f%%); of which taken for not skin: %zu (%.1f%%)\n",
                              unsure_below, unsure, n, 100.0 * unsure / n, not_skin,
                              100.0 * not_skin / n);
        free(itop), free(icls);
        free(q1), free(qt), free(lab), free(g1), free(gt), free(p1), free(pt), free(lg), free(lc), free(rows);
    }
}

/* The one non-skin photo in ../shared: the cat that ships with the models
 * (a 24-bit BMP, which uploads do not accept, so it is read here). */
void screening_not_skin_report(screening_text *t, const char *models_dir, screening_backbone *bb, int hin, nn_net *head,
                            nn_net *imnet, float temp, const float *bias, float unsure_below, const screening_ood_rule *od) {
    char path[4096], *d;
    size_t n;
    snprintf(path, sizeof path, "%s/cat.bmp", models_dir);
    if (core_read_file(path, &d, &n, NULL) != CORE_OK) return;
    const uint8_t *b = (const uint8_t *)d;
    uint32_t off = n > 54 ? (uint32_t)(b[10] | b[11] << 8 | b[12] << 16 | (uint32_t)b[13] << 24) : 0;
    int32_t w = n > 54 ? (int32_t)(b[18] | b[19] << 8 | b[20] << 16 | (uint32_t)b[21] << 24) : 0;
    int32_t h = n > 54 ? (int32_t)(b[22] | b[23] << 8 | b[24] << 16 | (uint32_t)b[25] << 24) : 0;
    size_t stride = ((size_t)(w > 0 ? w : 0) * 3 + 3) & ~(size_t)3;
    if (n <= 54 || b[0] != 'B' || b[1] != 'M' || b[28] != 24 || w <= 0 || h <= 0 || w > 8192 || h > 8192 ||
        off > n || stride * (size_t)h > n - off) {
        free(d);
        return;
    }
    uint8_t *rgb = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                rgb[((size_t)y * w + x) * 3 + c] = b[off + (size_t)(h - 1 - y) * stride + (size_t)x * 3 + 2 - c];
    free(d);
    int features;
    nn_backbone ref;
    nn_net *net = screening_backbone_net(bb, &features, &ref);
    float *x = malloc(3 * 224 * 224 * sizeof(float));
    nn_run *run = nn_run_new();
    if (x && run && !screening_preprocess(bb, rgb, w, h, 0, x, NULL)) {
        const float *f = nn_run_forward(run, net, 1, x, false, NULL, hin + 1);
        size_t row = 0;
        int k = nn_net_shape(head, nn_net_count(head) - 1).c, ik = nn_net_shape(imnet, nn_net_count(imnet) - 1).c;
        int dim = screening_node_dim(bb, hin);
        float *lg = f ? screening_head_logits(head, f, &row, 1, dim, k) : NULL, *il = f ? screening_head_logits(imnet, f, &row, 1, dim, ik) : NULL;
        if (lg && il) {
            int nc = screening_condition_count();
            int icls;
            float *p = malloc((size_t)nc * 4), *itop = screening_top_prob(il, 1, ik, &icls), top = 0;
            for (int c = 0; c < nc; c++) lg[k - nc + c] += bias[c]; /* the condition outputs */
            screening_softmax_t(lg + (k - nc), 1, nc, temp, p);
            for (int c = 0; c < nc; c++) top = fmaxf(top, p[c]);
            screening_text_printf(t, "\nnon-skin photo %s: ImageNet top-1 class %d at %.2f → %s\n", path, icls,
                                  itop[0], screening_is_not_skin(od, icls, itop[0]) || top < unsure_below ? "unsure (correct)"
                                                                                  : "a confident answer (wrong)");
            free(p), free(itop);
        }
        free(lg), free(il);
    }
    nn_run_free(run);
    free(x);
    free(rgb);
}

core_status screening_eval(const char *model_path, const char *data_dir, const char *models_dir, const char *cache_dir,
                           int threads, char **report, core_error *err) {
    *report = NULL;
    nn_net *net = NULL, *head = NULL, *imnet = NULL;
    char *meta_text = NULL;
    json_t *meta = NULL;
    screening_backbone *bb = NULL;
    float *feats = NULL;
    screening_text t = {0};
    screening_dataset ds;
    core_status rc = screening_dataset_load(data_dir, &ds, err);
    if (rc) return rc;
    if ((rc = nn_model_load(model_path, models_dir, &net, &meta_text, err))) goto done;
    meta = json_loads(meta_text, 0, NULL);
    json_t *classes = json_object_get(meta, "classes");
    double temp = json_number_value(json_object_get(meta, "temperature"));
    double temp_c = json_number_value(json_object_get(meta, "temperature_conditions"));
    json_int_t fine = json_integer_value(json_object_get(meta, "fine_count"));
    double unsure = json_number_value(json_object_get(meta, "unsure_below"));
    int first = (int)json_integer_value(json_object_get(meta, "head_first"));
    int features = (int)json_integer_value(json_object_get(meta, "features_node"));
    /* Models before fine-tuning existed have no head_input_node: the features. */
    json_t *hj = json_object_get(meta, "head_input_node");
    int hin = hj ? (int)json_integer_value(hj) : features;
    /* The data's classes must be the model's, in the same order. */
    bool same = fine == ds.fine_count && json_array_size(classes) == (size_t)(fine + screening_condition_count()) &&
                temp > 0 && temp_c > 0 && first > 0 && first < nn_net_count(net) && hin >= 0 && hin <= features;
    for (int c = 0; same && c < ds.fine_count; c++)
        same = !strcmp(json_string_value(json_array_get(classes, (size_t)c)) ?: "", ds.fine_names[c]);
    if (!same) {
        rc = core_fail(err, CORE_ERR_INVALID, "model", "the model's classes or metadata do not match the data sets");
        goto done;
    }
    if ((rc = screening_backbone_open(models_dir, SCREENING_BACKBONE_FILE, &bb, err))) goto done;
    /* Reuse the training run's cache (both views) when there is one. */
    char cache[4096];
    int views = 1;
    if (cache_dir) {
        char name[64];
        if (hin == features) snprintf(name, sizeof name, "features");
        else snprintf(name, sizeof name, "node%d", hin);
        snprintf(cache, sizeof cache, "%s/%s-v2.bin", cache_dir, name);
        FILE *f = fopen(cache, "rb");
        if (f) views = 2, fclose(f);
        else snprintf(cache, sizeof cache, "%s/%s-v1.bin", cache_dir, name);
    }
    if ((rc = screening_extract_node(bb, &ds, views, hin, threads, cache_dir ? cache : NULL, &feats, err))) goto done;
    /* The head alone, reading the cached features. */
    int dim = screening_node_dim(bb, hin);
    if (!(head = nn_net_slice(net, hin, first, nn_net_count(net)))) {
        rc = core_fail(err, CORE_ERR_INVALID, "model", "the model's head does not read the backbone features");
        goto done;
    }
    int imagenet = (int)json_integer_value(json_object_get(meta, "imagenet_node"));
    screening_ood_rule od = {0};
    od.above = (float)json_number_value(json_object_get(meta, "not_skin_above"));
    json_t *sk = json_object_get(meta, "skin_imagenet_classes");
    for (size_t i = 0; i < json_array_size(sk); i++) {
        json_int_t c = json_integer_value(json_array_get(sk, i));
        if (c >= 0 && c < 1024) od.skin[c] = true;
    }
    double not_skin = od.above;
    if (!(imnet = nn_net_slice(net, hin, hin + 1, imagenet + 1)) || not_skin <= 0) {
        rc = core_fail(err, CORE_ERR_INVALID, "model", "the model lacks the ImageNet classifier or its threshold");
        goto done;
    }
    float bias[32] = {0};
    if ((rc = screening_condition_bias(meta, bias, err))) goto done;
    nn_set_threads(threads);
    screening_text_printf(&t, "model %s, temperature %.2f\n", model_path, temp);
    screening_evaluate(&t, &ds, head, imnet, feats, views, dim, (float)temp, (float)temp_c, bias, (float)unsure, &od);
    screening_not_skin_report(&t, models_dir, bb, hin, head, imnet, (float)temp_c, bias, (float)unsure, &od);
done:
    json_decref(meta);
    free(meta_text);
    free(feats);
    nn_net_free(net);
    nn_net_free(head);
    nn_net_free(imnet);
    screening_backbone_free(bb);
    screening_dataset_free(&ds);
    return screening_report_finish(&t, rc, report);
}
