/* The model as the service runs it: one forward pass through the backbone
 * and the head gives the condition logits (→ temperature → softmax; the
 * head's fine-class outputs are for evaluation) and, on the same pooled
 * features, the backbone's ImageNet logits (a confident class no skin photo
 * had tells a cat or a car from skin) and the projection that measures how
 * far the photo lies from every skin photo the model was trained on (ood.c).
 * The triage then follows the risk (triage.c).
 *
 * Runs (activation buffers, ~30 MB each) are pooled: allocating them per
 * request costs more than the forward pass's smaller layers. */
#include "screening/screening.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "screening/internal.h"
#include "vision/vision.h"

#define POOL 8

struct screening_model {
    nn_net *net;
    float temp_c, unsure_below, not_skin_above, in_scale, in_zero;
    float bias[32]; /* per-condition logit offsets (calibrate.c) */
    int size, features, imagenet, k;
    bool skin_class[1024]; /* ImageNet top-1 classes seen on skin photos */
    screening_risk risk;
    int ood_node;
    screening_ood ood; /* mean, var, res_var, above (the basis is the ood node's weights) */
    int outside[32];   /* per condition: right N in 10 on unseen sources, -1 unmeasured */
    pthread_mutex_t lock;
    nn_run *pool[POOL];
    int pooled;
};

const char *screening_verdict_code(screening_verdict v) {
    switch (v) {
    case SCREENING_CONFIDENT: return "confident";
    case SCREENING_UNSURE_LOW_CONFIDENCE: return "unsure_low_confidence";
    case SCREENING_UNSURE_NOT_SKIN: return "unsure_not_skin";
    }
    return "unsure_low_confidence";
}

core_status screening_model_load(const char *path, const char *models_dir, screening_model **out, core_error *err) {
    *out = NULL;
    nn_net *net;
    char *text;
    core_status rc = nn_model_load(path, models_dir, &net, &text, err);
    if (rc) return rc;
    json_t *meta = core_json_loads(text, 0, NULL, NULL); /* NULL: out of memory (nn_model_load checked it) */
    free(text);
    screening_model *m = calloc(1, sizeof *m);
    json_t *in = json_object_get(meta, "input");
    if (!m || !meta) {
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory loading the screening model");
        goto fail;
    }
    m->net = net;
    m->temp_c = (float)json_number_value(json_object_get(meta, "temperature_conditions"));
    m->unsure_below = (float)json_number_value(json_object_get(meta, "unsure_below"));
    m->not_skin_above = (float)json_number_value(json_object_get(meta, "not_skin_above"));
    m->features = (int)json_integer_value(json_object_get(meta, "features_node"));
    m->imagenet = (int)json_integer_value(json_object_get(meta, "imagenet_node"));
    m->size = (int)json_integer_value(json_object_get(in, "size"));
    m->in_scale = (float)json_number_value(json_object_get(in, "scale"));
    m->in_zero = (float)json_number_value(json_object_get(in, "zero"));
    m->k = (int)json_integer_value(json_object_get(meta, "fine_count"));
    int outputs = nn_net_shape(net, nn_net_count(net) - 1).c;
    nn_shape is = nn_net_shape(net, NN_INPUT);
    /* Only the condition outputs (after the k fine-class ones) are used here. */
    bool ok = m->temp_c > 0 && m->k > 0 && outputs == m->k + screening_condition_count() && m->unsure_below > 0 &&
              m->not_skin_above > 0 && m->in_scale > 0 && is.h == m->size && is.w == m->size && is.c == 3 &&
              m->imagenet > m->features && m->features >= 0 && m->imagenet < nn_net_count(net);
    if (!ok) {
        rc =
            core_fail(err, CORE_ERR_INVALID, "model", "%s: the screening metadata is incomplete or does not fit", path);
        goto fail;
    }
    if ((rc = screening_condition_bias(meta, m->bias, err))) goto fail;
    json_t *outside = json_object_get(meta, "outside_right_in_10");
    for (int c = 0; c < screening_condition_count(); c++) {
        json_t *v = json_object_get(outside, screening_condition_at(c)->code);
        m->outside[c] = json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 10
                            ? (int)json_integer_value(v)
                            : -1;
    }
    if (!screening_risk_from_meta(meta, &m->risk)) {
        rc = core_fail(err, CORE_ERR_INVALID, "model",
                       "%s: the model has no triage thresholds (retrain it with caresync train)", path);
        goto fail;
    }
    if ((rc = screening_ood_from_model(net, meta, m->features, false, &m->ood, &m->ood_node, err))) goto fail;
    json_t *sk = json_object_get(meta, "skin_imagenet_classes");
    for (size_t i = 0; i < json_array_size(sk); i++) {
        json_int_t c = json_integer_value(json_array_get(sk, i));
        if (c >= 0 && c < 1024) m->skin_class[c] = true;
    }
    pthread_mutex_init(&m->lock, NULL);
    json_decref(meta);
    *out = m;
    return CORE_OK;
fail:
    json_decref(meta);
    if (m) screening_ood_free(&m->ood);
    free(m);
    nn_net_free(net);
    return rc;
}

int screening_model_side(const screening_model *m) { return m->size; }

void screening_model_free(screening_model *m) {
    if (!m) return;
    for (int i = 0; i < m->pooled; i++) nn_run_free(m->pool[i]);
    pthread_mutex_destroy(&m->lock);
    screening_ood_free(&m->ood);
    nn_net_free(m->net);
    free(m);
}

static nn_run *take(screening_model *m) {
    pthread_mutex_lock(&m->lock);
    nn_run *r = m->pooled ? m->pool[--m->pooled] : NULL;
    pthread_mutex_unlock(&m->lock);
    return r ? r : nn_run_new();
}

static void give(screening_model *m, nn_run *r) {
    pthread_mutex_lock(&m->lock);
    if (m->pooled < POOL) m->pool[m->pooled++] = r, r = NULL;
    pthread_mutex_unlock(&m->lock);
    nn_run_free(r);
}

core_status screening_assess_rgb(screening_model *m, const uint8_t *rgb, int w, int h, screening_result *out,
                                 core_error *err) {
    memset(out, 0, sizeof *out);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* Centre square at the model's size (unless it already is one), pixel
     * bytes → the backbone's scale. */
    vision_image in = {w, h, (uint8_t *)rgb}, sq = in;
    bool cropped = w != m->size || h != m->size;
    core_status rc = cropped ? vision_center_square(&in, m->size, &sq, err) : CORE_OK;
    if (rc) return rc;
    size_t hw = (size_t)m->size * m->size;
    float *x = malloc(3 * hw * sizeof(float));
    float *p = malloc(32 * sizeof(float)), cond[32] = {0};
    nn_run *run = take(m);
    const float *logits = NULL;
    if (x && p && run) {
        for (size_t i = 0; i < hw; i++)
            for (int c = 0; c < 3; c++) x[c * hw + i] = m->in_scale * ((float)sq.rgb[i * 3 + c] - m->in_zero);
        logits = nn_run_forward(run, m->net, 1, x, false, NULL, 0);
    }
    if (cropped) vision_image_free(&sq);
    if (!logits) {
        free(x), free(p);
        if (run) give(m, run);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory running the screening model");
    }
    /* The condition outputs follow the k fine-class ones. */
    int nc = screening_condition_count();
    for (int c = 0; c < nc; c++) p[c] = (logits[m->k + c] + m->bias[c]) / m->temp_c;
    nn_softmax(1, nc, p, cond);
    /* ImageNet confidence from the same pass (node computed on the way). */
    const float *il = nn_run_output(run, m->imagenet);
    int ik = nn_net_shape(m->net, m->imagenet).c;
    float mx = -INFINITY, sum = 0;
    int top_class = 0;
    for (int c = 0; c < ik; c++)
        if (il[c] > mx) mx = il[c], top_class = c;
    for (int c = 0; c < ik; c++) sum += expf(il[c] - mx);
    out->imagenet_top = 1.0f / sum;
    const float *proj = nn_run_output(run, m->ood_node), *pooled = nn_run_output(run, m->features);
    out->ood_score = proj && pooled ? screening_ood_distance(&m->ood, proj, pooled) / m->ood.above : INFINITY;
    give(m, run);
    free(x), free(p);
    /* Top three conditions. */
    for (int r = 0; r < 3; r++) {
        int best = -1;
        for (int c = 0; c < nc; c++) {
            bool taken = false;
            for (int q = 0; q < r; q++) taken |= out->top[q].condition == c;
            if (!taken && (best < 0 || cond[c] > cond[best])) best = c;
        }
        out->top[r] = (screening_rank){best, cond[best]};
    }
    /* Not skin: confident about an ImageNet class no skin photo had on
     * top, or too far from every skin photo the model was trained on. */
    bool not_skin = (out->imagenet_top >= m->not_skin_above && (top_class >= 1024 || !m->skin_class[top_class])) ||
                    out->ood_score >= 1;
    out->verdict = not_skin                                    ? SCREENING_UNSURE_NOT_SKIN
                   : out->top[0].probability < m->unsure_below ? SCREENING_UNSURE_LOW_CONFIDENCE
                                                               : SCREENING_CONFIDENT;
    int mel = screening_condition_index("melanoma"), sc = screening_condition_index("skin_cancer");
    out->melanoma = mel >= 0 ? cond[mel] : 0;
    out->cancer = out->melanoma + (sc >= 0 ? cond[sc] : 0);
    out->outside_in_10 = m->outside[out->top[0].condition];
    if (not_skin) {
        out->triage = TRIAGE_DOCTOR_SOON;
        out->why = SCREENING_WHY_UNSURE;
    } else {
        out->triage = screening_decide_triage(cond, out->verdict == SCREENING_CONFIDENT, &m->risk, &out->why);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    out->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    return CORE_OK;
}
