/* Classification metrics for the evaluation report: accuracy, balanced
 * accuracy, macro one-vs-rest AUC (rank statistic, ties halved), per-class
 * sensitivity and specificity, the confusion matrix, and the expected
 * calibration error (15 equal-width confidence bins). */
#include "screening/screening.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void screening_text_printf(screening_text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need < 0) return;
    if (t->len + (size_t)need + 1 > t->cap) {
        size_t cap = (t->cap ? t->cap * 2 : 4096) + (size_t)need;
        char *b = realloc(t->buf, cap);
        if (!b) return;
        t->buf = b;
        t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)need;
}

typedef struct {
    float s;
    int pos;
} scored;

static int by_score(const void *a, const void *b) {
    float x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    return (x > y) - (x < y);
}

double screening_auc(const float *score, const int *positive, size_t n) {
    scored *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return NAN;
    size_t np = 0;
    for (size_t i = 0; i < n; i++) v[i] = (scored){score[i], positive[i]}, np += positive[i] != 0;
    size_t nn = n - np;
    if (!np || !nn) {
        free(v);
        return NAN;
    }
    qsort(v, n, sizeof *v, by_score);
    /* Mann–Whitney: sum of positive ranks, ties get their average rank. */
    double rank_sum = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && v[j].s == v[i].s) j++;
        double avg = (double)(i + j + 1) / 2.0; /* ranks are 1-based */
        for (size_t k = i; k < j; k++)
            if (v[k].pos) rank_sum += avg;
        i = j;
    }
    free(v);
    return (rank_sum - (double)np * (np + 1) / 2.0) / ((double)np * nn);
}

double screening_ece(const float *probs, const int *label, size_t n, int k) {
    enum { BINS = 15 };
    double conf[BINS] = {0}, acc[BINS] = {0};
    size_t cnt[BINS] = {0};
    for (size_t i = 0; i < n; i++) {
        int best = 0;
        for (int c = 1; c < k; c++)
            if (probs[i * k + c] > probs[i * k + best]) best = c;
        float p = probs[i * k + best];
        int b = (int)(p * BINS);
        if (b >= BINS) b = BINS - 1;
        if (b < 0) b = 0;
        conf[b] += p;
        acc[b] += best == label[i];
        cnt[b]++;
    }
    double e = 0;
    for (int b = 0; b < BINS; b++)
        if (cnt[b]) e += fabs(acc[b] - conf[b]) / (double)n;
    return e;
}

void screening_metrics_report(screening_text *t, const char *title, const float *probs, const float *probs_cal,
                              const int *label, size_t n, int k, const char *const *names, screening_summary *sum) {
    int *pred = malloc((n ? n : 1) * sizeof *pred);
    size_t *conf = calloc((size_t)k * k, sizeof *conf);
    float *col = malloc((n ? n : 1) * sizeof *col);
    int *pos = malloc((n ? n : 1) * sizeof *pos);
    if (!pred || !conf || !col || !pos) {
        free(pred), free(conf), free(col), free(pos);
        return;
    }
    size_t right = 0;
    for (size_t i = 0; i < n; i++) {
        int best = 0;
        for (int c = 1; c < k; c++)
            if (probs[i * k + c] > probs[i * k + best]) best = c;
        pred[i] = best;
        right += best == label[i];
        conf[(size_t)label[i] * k + best]++;
    }
    double ba = 0, auc = 0;
    int present = 0, auc_n = 0;
    screening_text_printf(
        t, "\n### %s (%zu images)\n\n| class | n | sensitivity | specificity | AUC |\n|---|---|---|---|---|\n", title,
        n);
    for (int c = 0; c < k; c++) {
        size_t tp = conf[(size_t)c * k + c], P = 0, fp = 0;
        for (int d = 0; d < k; d++) P += conf[(size_t)c * k + d], fp += d != c ? conf[(size_t)d * k + c] : 0;
        size_t N = n - P;
        for (size_t i = 0; i < n; i++) col[i] = probs[i * k + c], pos[i] = label[i] == c;
        double a = screening_auc(col, pos, n);
        if (!P) continue; /* a class absent from this set */
        double sens = (double)tp / P, spec = N ? (double)(N - fp) / N : NAN;
        ba += sens;
        present++;
        if (!isnan(a)) auc += a, auc_n++;
        screening_text_printf(t, "| %s | %zu | %.3f | %.3f | %.3f |\n", names[c], P, sens, spec, a);
    }
    double ece = screening_ece(probs, label, n, k), ece_cal = probs_cal ? screening_ece(probs_cal, label, n, k) : ece;
    screening_summary s = {(double)right / (n ? n : 1), present ? ba / present : 0, auc_n ? auc / auc_n : NAN, ece,
                           ece_cal};
    screening_text_printf(
        t,
        "\naccuracy %.3f · balanced accuracy %.3f · macro one-vs-rest AUC %.3f · ECE %.3f before, %.3f after "
        "temperature scaling\n\nconfusion (rows: truth; columns: prediction, every class that is a truth or "
        "was predicted, in the order of the rows, then any others):\n\n",
        s.accuracy, s.balanced_accuracy, s.macro_auc, s.ece, s.ece_calibrated);
    bool extra = false;
    for (int d = 0; d < k; d++) {
        size_t Pd = 0, Qd = 0;
        for (int e = 0; e < k; e++) Pd += conf[(size_t)d * k + e], Qd += conf[(size_t)e * k + d];
        if (!Pd && Qd) screening_text_printf(t, "%s%s", extra ? ", " : "    (predicted only: ", names[d]), extra = true;
    }
    if (extra) screening_text_printf(t, ")\n");
    for (int c = 0; c < k; c++) {
        size_t P = 0;
        for (int d = 0; d < k; d++) P += conf[(size_t)c * k + d];
        if (!P) continue;
        screening_text_printf(t, "    %-28.28s", names[c]);
        for (int pass = 0; pass < 2; pass++) /* truth classes first, then predicted-only ones */
            for (int d = 0; d < k; d++) {
                size_t Pd = 0, Qd = 0;
                for (int e = 0; e < k; e++) Pd += conf[(size_t)d * k + e], Qd += conf[(size_t)e * k + d];
                if ((pass == 0 && Pd) || (pass == 1 && !Pd && Qd))
                    screening_text_printf(t, " %4zu", conf[(size_t)c * k + d]);
            }
        screening_text_printf(t, "\n");
    }
    if (sum) *sum = s;
    free(pred), free(conf), free(col), free(pos);
}
