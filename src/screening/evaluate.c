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

#include "vision/vision.h"

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

static int cond_index_top(const float *p, int nc) {
    int top = 0;
    for (int c = 1; c < nc; c++)
        if (p[c] > p[top]) top = c;
    return top;
}

/* Per-group tallies for the fairness tables. */
typedef struct {
    size_t n, right, mal, mal_referred;
} tally;

static void tally_add(tally *g, const screening_item *it, const float *p, screening_triage t, int nc) {
    g->n++;
    g->right += cond_index_top(p, nc) == it->condition;
    if (it->malignant) g->mal++, g->mal_referred += t >= TRIAGE_DOCTOR_SOON;
}

static void tally_row(screening_text *t, const char *name, const tally *g) {
    char acc[32] = "–", ref[48] = "–";
    if (g->n) snprintf(acc, sizeof acc, "%.3f", (double)g->right / (double)g->n);
    if (g->mal)
        snprintf(ref, sizeof ref, "%zu/%zu (%.2f)", g->mal_referred, g->mal, (double)g->mal_referred / (double)g->mal);
    screening_text_printf(t, "| %s | %zu | %s | %s |%s\n", name, g->n, acc, ref,
                          g->n < 30 ? " too few photos to know" : "");
}

/* Skin tone (ITA) of an item's photo as the model sees it; NAN if unknown. */
static double item_ita(const screening_item *it, bool crop_watermark) {
    char *bytes = NULL;
    size_t len;
    double ita = NAN;
    vision_limits lim;
    vision_limits_defaults(&lim);
    lim.min_side = 64;
    lim.target_short_side = 224;
    vision_image img = {0};
    uint8_t *sq = NULL;
    if (core_read_file(it->path, &bytes, &len, NULL) == CORE_OK &&
        vision_decode((uint8_t *)bytes, len, &lim, &img, NULL, NULL, NULL) == CORE_OK &&
        screening_crop(img.rgb, img.width, img.height, it->set, crop_watermark, 224, &sq, NULL) == CORE_OK) {
        vision_image v = {224, 224, sq};
        vision_skin_ita(&v, &ita, NULL);
    }
    free(sq);
    vision_image_free(&img);
    free(bytes);
    return ita;
}

#define ITA_GROUPS 7
static int ita_index(double ita) {
    if (isnan(ita)) return 6;
    return ita > 55 ? 0 : ita > 41 ? 1 : ita > 28 ? 2 : ita > 10 ? 3 : ita > -30 ? 4 : 5;
}

core_status screening_evaluate(screening_text *t, const screening_dataset *ds, const screening_judge *j,
                               const float *feats, int views, int dim, screening_backbone *bb, int hin,
                               bool crop_watermark, const char *not_skin_dir, int threads, const char *cache_dir,
                               core_error *err) {
    int k = ds->fine_count, nc = screening_condition_count();
    const char *cnames[32];
    for (int c = 0; c < nc; c++) cnames[c] = screening_condition_at(c)->code;
    tally ita_g[8][ITA_GROUPS], fitz[7];
    memset(ita_g, 0, sizeof ita_g);
    memset(fitz, 0, sizeof fitz);
    screening_text refer = {0};
    screening_text_printf(
        &refer,
        "\n## Referral (safety-first triage: melanoma risk ≥ %.3f → urgent; melanoma + skin cancer "
        "≥ %.3f → see a doctor; moles and growths a pharmacist or GP rather than a doctor only at P(benign) ≥ "
        "%.2f; no answer is ever self-care)\n\n"
        "| set | malignant | referred (sensitivity) | urgent | told self-care | benign moles/growths | "
        "referred (1 − specificity) | skin photos refused as not skin |\n"
        "|---|---|---|---|---|---|---|---|\n",
        (double)j->risk.melanoma_above, (double)j->risk.cancer_above, (double)j->risk.benign_sure);
    core_status rc = CORE_OK;
    for (int s = 0; s < screening_set_count() && !rc; s++) {
        size_t n = 0;
        size_t *rows = malloc(ds->count * sizeof *rows);
        if (!rows) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        for (size_t i = 0; i < ds->count; i++)
            if (ds->items[i].set == s && ds->items[i].test) rows[n++] = i * (size_t)views;
        if (!n) {
            free(rows);
            continue;
        }
        screening_judged jd;
        float *lo = screening_head_logits(j->head, feats, rows, n, dim, k + nc);
        float *lg = malloc(n * (size_t)k * 4), *lc = malloc(n * (size_t)nc * 4), *pt = malloc(n * (size_t)k * 4);
        int local[256], nl = 0, *lab = malloc(n * sizeof *lab);
        float *qt = malloc(n * 256 * 4);
        if ((rc = screening_judge_rows(j, feats, rows, n, dim, k, &jd, err)) || !lo || !lg || !lc || !pt || !lab ||
            !qt) {
            if (!rc) screening_judged_free(&jd), rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
            free(lo), free(lg), free(lc), free(pt), free(lab), free(qt), free(rows);
            break;
        }
        screening_split_logits(lo, n, k, nc, lg, lc);
        screening_softmax_t(lg, n, k, j->temp, pt);
        /* (a) within the set: its own classes, probabilities renormalised. */
        for (int c = 0; c < k && nl < 256; c++)
            if (!strncmp(ds->fine_names[c], screening_set_name(s), strlen(screening_set_name(s))) &&
                ds->fine_names[c][strlen(screening_set_name(s))] == '/')
                local[nl++] = c;
        const char *lnames[256];
        for (int c = 0; c < nl; c++) lnames[c] = strchr(ds->fine_names[local[c]], '/') + 1;
        for (size_t i = 0; i < n; i++) {
            double st = 0;
            for (int c = 0; c < nl; c++) st += pt[i * k + local[c]];
            for (int c = 0; c < nl; c++) {
                qt[i * nl + c] = (float)(pt[i * k + local[c]] / st);
                if (local[c] == ds->items[rows[i] / views].fine) lab[i] = c;
            }
        }
        char title[200];
        snprintf(title, sizeof title, "%s — its own %d classes", screening_set_name(s), nl);
        screening_metrics_report(t, title, qt, NULL, lab, n, nl, lnames, NULL);
        /* (b) the product's view: the condition outputs, verdicts, triage. */
        size_t by_distance = 0, unsure = 0, not_skin = 0, mal = 0, mal_ref = 0, mal_urgent = 0, mal_self = 0, ben = 0,
               ben_ref = 0;
        int mole = screening_condition_index("benign_mole"), growth = screening_condition_index("harmless_growth");
        for (size_t i = 0; i < n; i++) {
            const screening_item *it = &ds->items[rows[i] / views];
            lab[i] = it->condition;
            unsure += jd.verdict[i] != SCREENING_CONFIDENT;
            not_skin += jd.verdict[i] == SCREENING_UNSURE_NOT_SKIN;
            by_distance += jd.ood[i] >= 1;
            if (it->malignant) {
                mal++;
                mal_ref += jd.triage[i] >= TRIAGE_DOCTOR_SOON;
                mal_urgent += jd.triage[i] == TRIAGE_URGENT;
                mal_self += jd.triage[i] == TRIAGE_SELF_CARE;
            } else if (it->condition == mole || it->condition == growth) {
                ben++;
                ben_ref += jd.triage[i] >= TRIAGE_DOCTOR_SOON;
            }
            double ita = item_ita(it, crop_watermark);
            tally_add(&ita_g[s][ita_index(ita)], it, jd.probs + i * nc, jd.triage[i], nc);
            if (it->fitzpatrick) tally_add(&fitz[it->fitzpatrick], it, jd.probs + i * nc, jd.triage[i], nc);
        }
        snprintf(title, sizeof title, "%s — conditions (what the product shows)", screening_set_name(s));
        screening_metrics_report(t, title, jd.probs, NULL, lab, n, nc, cnames, NULL);
        screening_text_printf(t,
                              "\n\"unsure — please see a professional\" (top condition < %.2f, or not skin): "
                              "%zu of %zu (%.1f%%); of which taken for not skin: %zu (%.1f%%)\n",
                              (double)j->unsure_below, unsure, n, 100.0 * unsure / n, not_skin, 100.0 * not_skin / n);
        char a[48] = "–", b[48] = "–";
        if (mal) snprintf(a, sizeof a, "%zu (%.3f)", mal_ref, (double)mal_ref / (double)mal);
        if (ben) snprintf(b, sizeof b, "%zu (%.3f)", ben_ref, (double)ben_ref / (double)ben);
        screening_text_printf(&refer,
                              "| %s | %zu | %s | %zu | %zu | %zu | %s | %zu of %zu (%.1f%%; %zu by distance) |\n",
                              screening_set_name(s), mal, a, mal_urgent, mal_self, ben, b, not_skin, n,
                              100.0 * not_skin / n, by_distance);
        screening_judged_free(&jd);
        free(lo), free(lg), free(lc), free(pt), free(lab), free(qt), free(rows);
    }
    if (rc) {
        free(refer.buf);
        return rc;
    }
    screening_text_printf(t, "%s", refer.buf ? refer.buf : "");
    free(refer.buf);
    /* Fairness: by estimated skin tone for every set, by Fitzpatrick type
     * where a set records it. */
    screening_text_printf(t, "\n## By skin tone (Individual Typology Angle of the skin around the problem)\n\n"
                             "| set / ITA group | photos | top-1 condition accuracy | malignant referred |\n"
                             "|---|---|---|---|\n");
    static const char *const groups[ITA_GROUPS] = {"very light (> 55)", "light (41–55)",  "intermediate (28–41)",
                                                   "tan (10–28)",       "brown (−30–10)", "dark (< −30)",
                                                   "no estimate"};
    for (int s = 0; s < screening_set_count(); s++)
        for (int g = 0; g < ITA_GROUPS; g++) {
            if (!ita_g[s][g].n) continue;
            char name[128];
            snprintf(name, sizeof name, "%s / %s", screening_set_name(s), groups[g]);
            tally_row(t, name, &ita_g[s][g]);
        }
    screening_text_printf(t, "\n## By Fitzpatrick skin type (PAD-UFES test photos where recorded)\n\n"
                             "| type | photos | top-1 condition accuracy | malignant referred |\n|---|---|---|---|\n");
    for (int f = 1; f <= 6; f++) {
        char name[16];
        snprintf(name, sizeof name, "%d", f);
        tally_row(t, name, &fitz[f]);
    }
    /* Photos that are not skin, never used in choosing anything. */
    size_t nn = 0;
    char **paths = not_skin_dir ? screening_not_skin_list(not_skin_dir, &nn) : NULL;
    if (!nn) {
        screening_text_printf(t,
                              "\nphotos that are not skin: none found%s%s (scripts/not-skin-photos.sh gathers them)\n",
                              not_skin_dir ? " in " : "", not_skin_dir ? not_skin_dir : "");
        return CORE_OK;
    }
    screening_dataset ns = {0};
    ns.items = calloc(nn, sizeof *ns.items);
    ns.count = nn;
    float *nf = NULL;
    size_t *nrows = malloc(nn * sizeof *nrows);
    if (!ns.items || !nrows) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    for (size_t i = 0; !rc && i < nn; i++) ns.items[i] = (screening_item){.path = paths[i], .set = -1}, nrows[i] = i;
    char cache[4096];
    screening_extract_opts eo = {.views = 1, .node = hin, .crop_watermark = false};
    if (cache_dir) {
        char name[64];
        snprintf(name, sizeof name, "%s/not-skin", cache_dir);
        screening_cache_path(bb, &eo, name, cache, sizeof cache);
        if (core_mkdirs(name, NULL) != CORE_OK) cache[0] = 0; /* a cache is optional */
    }
    if (!rc) rc = screening_extract_with(bb, &ns, &eo, threads, cache_dir && cache[0] ? cache : NULL, &nf, err);
    screening_judged jd = {0};
    if (!rc) rc = screening_judge_rows(j, nf, nrows, nn, dim, k, &jd, err);
    if (!rc) {
        size_t confident = 0, by_ood = 0, by_imagenet = 0, urgent = 0;
        for (size_t i = 0; i < nn; i++) {
            confident += jd.verdict[i] == SCREENING_CONFIDENT;
            by_ood += jd.ood[i] >= 1;
            by_imagenet += jd.verdict[i] == SCREENING_UNSURE_NOT_SKIN && jd.ood[i] < 1;
            urgent += jd.verdict[i] == SCREENING_CONFIDENT && jd.triage[i] == TRIAGE_URGENT;
        }
        screening_text_printf(t,
                              "\n## Photos that are not skin (%s, %zu photos, never used for tuning)\n\n"
                              "confident condition: **%zu (%.1f%%)** (goal ≤ 1 %%); refused as not skin: %zu by "
                              "feature distance, %zu more by the ImageNet rule; confident and urgent: %zu\n",
                              not_skin_dir, nn, confident, 100.0 * confident / nn, by_ood, by_imagenet, urgent);
        int shown = 0;
        for (size_t i = 0; i < nn && shown < 12; i++)
            if (jd.verdict[i] == SCREENING_CONFIDENT) {
                int top = cond_index_top(jd.probs + i * nc, nc);
                screening_text_printf(t, "%s- %s → %s %.2f (distance %.2f)\n", shown ? "" : "\nconfident answers:\n",
                                      paths[i], screening_condition_at(top)->code, (double)jd.probs[i * nc + top],
                                      (double)jd.ood[i]);
                shown++;
            }
    }
    screening_judged_free(&jd);
    free(nf), free(nrows), free(ns.items);
    for (size_t i = 0; i < nn; i++) free(paths[i]);
    free(paths);
    return rc;
}

char **screening_not_skin_list(const char *dir, size_t *count) {
    *count = 0;
    char path[4096], line[4096];
    snprintf(path, sizeof path, "%s/index.csv", dir);
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char **list = NULL;
    size_t n = 0, cap = 0;
    bool first = true, ok = true;
    while (ok && fgets(line, sizeof line, f)) {
        line[strcspn(line, ",\r\n")] = 0;
        bool header = first && !strcmp(line, "path");
        first = false;
        if (header || !line[0]) continue;
        if (n == cap) {
            char **l = realloc(list, (cap = cap ? cap * 2 : 256) * sizeof *l);
            ok = l != NULL;
            if (!ok) break;
            list = l;
        }
        ok = (list[n] = strdup(line)) != NULL;
        n += ok;
    }
    fclose(f);
    if (!ok) { /* all or nothing: a partial set would report a wrong rate */
        for (size_t i = 0; i < n; i++) free(list[i]);
        free(list);
        return NULL;
    }
    *count = n;
    return list;
}

core_status screening_eval(const char *model_path, const char *data_dir, const char *models_dir, const char *cache_dir,
                           int threads, const char *not_skin_dir, char **report, core_error *err) {
    *report = NULL;
    nn_net *net = NULL;
    char *meta_text = NULL;
    json_t *meta = NULL;
    screening_backbone *bb = NULL;
    float *feats = NULL;
    screening_text t = {0};
    screening_judge j = {0};
    screening_dataset ds;
    core_status rc = screening_dataset_load(data_dir, &ds, err);
    if (rc) return rc;
    if ((rc = nn_model_load(model_path, models_dir, &net, &meta_text, err))) goto done;
    core_error pe = {0};
    meta = core_json_loads(meta_text, 0, NULL, &pe);
    if (!meta) {
        rc = core_fail(err, pe.code, NULL, "the model's metadata: %s", pe.message);
        goto done;
    }
    json_t *classes = json_object_get(meta, "classes"), *train = json_object_get(meta, "train");
    j.temp = (float)json_number_value(json_object_get(meta, "temperature"));
    j.temp_c = (float)json_number_value(json_object_get(meta, "temperature_conditions"));
    json_int_t fine = json_integer_value(json_object_get(meta, "fine_count"));
    j.unsure_below = (float)json_number_value(json_object_get(meta, "unsure_below"));
    int first = (int)json_integer_value(json_object_get(meta, "head_first"));
    int features = (int)json_integer_value(json_object_get(meta, "features_node"));
    int hin = (int)json_integer_value(json_object_get(meta, "head_input_node"));
    const char *backbone = json_string_value(json_object_get(meta, "backbone"));
    bool crop_watermark = json_is_true(json_object_get(train, "crop_watermark"));
    /* The data's classes must be the model's, in the same order. */
    bool same = fine == ds.fine_count && json_array_size(classes) == (size_t)(fine + screening_condition_count()) &&
                j.temp > 0 && j.temp_c > 0 && first > 0 && first < nn_net_count(net) && hin >= 0 && hin <= features &&
                backbone && screening_risk_from_meta(meta, &j.risk);
    for (int c = 0; same && c < ds.fine_count; c++)
        same = !strcmp(json_string_value(json_array_get(classes, (size_t)c)) ?: "", ds.fine_names[c]);
    if (!same) {
        rc = core_fail(err, CORE_ERR_INVALID, "model",
                       "the model's classes or metadata do not match the data sets (retrain it with caresync train)");
        goto done;
    }
    if ((rc = screening_backbone_open(models_dir, backbone, &bb, err))) goto done;
    /* Reuse the training run's cache of as-is and mirrored views when there is one. */
    char cache[4096];
    int views = (int)json_integer_value(json_object_get(train, "views"));
    unsigned augment = (unsigned)json_integer_value(json_object_get(train, "augment"));
    if (views < 1 || views > 8) views = 1;
    screening_extract_opts eo = {.views = views, .node = hin, .augment = augment, .crop_watermark = crop_watermark};
    if (cache_dir) screening_cache_path(bb, &eo, cache_dir, cache, sizeof cache);
    FILE *f = cache_dir ? fopen(cache, "rb") : NULL;
    if (f) {
        fclose(f);
    } else { /* no training cache: the photos as they are */
        eo.views = views = 1, eo.augment = 0;
        if (cache_dir) screening_cache_path(bb, &eo, cache_dir, cache, sizeof cache);
    }
    if ((rc = screening_extract_with(bb, &ds, &eo, threads, cache_dir ? cache : NULL, &feats, err))) goto done;
    int dim = screening_node_dim(bb, hin), imagenet = (int)json_integer_value(json_object_get(meta, "imagenet_node"));
    /* The head alone, reading the cached activations; the ImageNet
     * classifier and the pooled features on the same. */
    j.head = nn_net_slice(net, hin, first, nn_net_count(net));
    j.imnet = imagenet > features ? nn_net_slice(net, hin, hin + 1, imagenet + 1) : NULL;
    j.pool = hin == features ? NULL : nn_net_slice(net, hin, hin + 1, features + 1);
    j.od.above = (float)json_number_value(json_object_get(meta, "not_skin_above"));
    if (!j.head || !j.imnet || (hin != features && !j.pool) || !(j.od.above > 0)) {
        rc = core_fail(err, CORE_ERR_INVALID, "model", "the model's head or ImageNet classifier cannot be read");
        goto done;
    }
    json_t *sk = json_object_get(meta, "skin_imagenet_classes");
    for (size_t i = 0; i < json_array_size(sk); i++) {
        json_int_t c = json_integer_value(json_array_get(sk, i));
        if (c >= 0 && c < 1024) j.od.skin[c] = true;
    }
    int ood_node;
    if ((rc = screening_condition_bias(meta, j.bias, err)) ||
        (rc = screening_ood_from_model(net, meta, features, true, &j.ood, &ood_node, err)))
        goto done;
    nn_set_threads(threads);
    screening_text_printf(&t, "model %s (backbone %s), temperature %.2f\n", model_path, backbone, (double)j.temp);
    rc = screening_evaluate(&t, &ds, &j, feats, views, dim, bb, hin, crop_watermark, not_skin_dir, threads, cache_dir,
                            err);
done:
    json_decref(meta);
    free(meta_text);
    free(feats);
    nn_net_free(net);
    screening_judge_free(&j);
    screening_backbone_free(bb);
    screening_dataset_free(&ds);
    return screening_report_finish(&t, rc, report);
}
