/* nn — loss and optimisation: softmax cross-entropy with label smoothing
 * and class weights, AdamW, SGD with momentum, cosine schedule. */
#include "nn/nn.h"

#include <math.h>

void nn_softmax(int n, int k, const float *logits, float *probs) {
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k;
        float *p = probs + (size_t)i * k, mx = z[0], s = 0;
        for (int j = 1; j < k; j++) mx = z[j] > mx ? z[j] : mx;
        for (int j = 0; j < k; j++) s += (p[j] = expf(z[j] - mx));
        for (int j = 0; j < k; j++) p[j] /= s;
    }
}

float nn_softmax_ce(int n, int k, const float *logits, const int32_t *labels, float smoothing,
                    const float *class_weight, float *dlogits, float *probs) {
    double loss = 0, wsum = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k;
        float mx = z[0];
        for (int j = 1; j < k; j++) mx = z[j] > mx ? z[j] : mx;
        double s = 0;
        for (int j = 0; j < k; j++) s += exp((double)(z[j] - mx));
        double lse = log(s) + mx;
        float wi = class_weight ? class_weight[labels[i]] : 1.0f;
        wsum += wi;
        /* target q = (1−ε)·onehot + ε/k */
        double li = 0;
        for (int j = 0; j < k; j++) {
            double q = (j == labels[i] ? 1.0 - smoothing : 0.0) + smoothing / k;
            li -= q * (z[j] - lse);
        }
        loss += wi * li;
    }
    double norm = wsum > 0 ? wsum : 1;
    for (int i = 0; i < n && (dlogits || probs); i++) {
        const float *z = logits + (size_t)i * k;
        float mx = z[0];
        for (int j = 1; j < k; j++) mx = z[j] > mx ? z[j] : mx;
        double s = 0;
        for (int j = 0; j < k; j++) s += exp((double)(z[j] - mx));
        float wi = class_weight ? class_weight[labels[i]] : 1.0f;
        for (int j = 0; j < k; j++) {
            double p = exp((double)(z[j] - mx)) / s;
            if (probs) probs[(size_t)i * k + j] = (float)p;
            double q = (j == labels[i] ? 1.0 - smoothing : 0.0) + smoothing / k;
            if (dlogits) dlogits[(size_t)i * k + j] = (float)(wi * (p - q) / norm);
        }
    }
    return (float)(loss / norm);
}

void nn_adamw_init(nn_adamw *o, float lr, float weight_decay) {
    *o = (nn_adamw){.lr = lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = weight_decay, .t = 0};
}

void nn_adamw_tick(nn_adamw *o) { o->t++; }

void nn_adamw_step(nn_adamw *o, size_t n, float *w, const float *g, float *m, float *v, bool decay) {
    int64_t t = o->t > 0 ? o->t : 1;
    float c1 = 1.0f - powf(o->beta1, (float)t), c2 = 1.0f - powf(o->beta2, (float)t);
    for (size_t i = 0; i < n; i++) {
        m[i] = o->beta1 * m[i] + (1 - o->beta1) * g[i];
        v[i] = o->beta2 * v[i] + (1 - o->beta2) * g[i] * g[i];
        float upd = (m[i] / c1) / (sqrtf(v[i] / c2) + o->eps);
        if (decay) w[i] -= o->lr * o->weight_decay * w[i];
        w[i] -= o->lr * upd;
    }
}

void nn_sgd_step(const nn_sgd *o, size_t n, float *w, const float *g, float *vel, bool decay) {
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + (decay ? o->weight_decay * w[i] : 0.0f);
        vel[i] = o->momentum * vel[i] + gi;
        w[i] -= o->lr * vel[i];
    }
}

float nn_cosine_lr(float base, float min_lr, int64_t t, int64_t warmup, int64_t total) {
    if (warmup > 0 && t < warmup) return base * (float)(t + 1) / (float)warmup;
    if (total <= warmup) return base;
    double prog = (double)(t - warmup) / (double)(total - warmup);
    if (prog > 1) prog = 1;
    return min_lr + (base - min_lr) * 0.5f * (float)(1.0 + cos(3.14159265358979 * prog));
}
