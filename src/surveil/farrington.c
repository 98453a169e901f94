/* The improved Farrington method ("Farrington flexible", Noufaily et al.
 * 2013), as surveillance::farringtonFlexible with integer time.
 *
 * For week k: the counts of the b previous years around the same week form
 * the reference data; with no_periods > 1 every week of those years is used,
 * labelled by a seasonal factor (Farrington's window around the week is one
 * level, the rest of the year is cut into no_periods - 1 blocks). A
 * quasi-Poisson GLM (intercept, optional trend, the factor) is fitted; past
 * outbreaks are down-weighted by their Anscombe residuals and the model is
 * refitted; the trend is kept only if significant, at least three years back
 * and not extrapolating beyond the data. The prediction for week k and its
 * dispersion give the threshold. Every branch below follows one in R's
 * algo.farrington.* functions; comments name them. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MATHLIB_STANDALONE 1
#include <Rmath.h>

#include "surveil/internal.h"

typedef struct {
    const surveil_params *p;
    const double *x;
    double *x23; /* x^(2/3) of every week, for the Anscombe residuals (computed once) */
    int *blk;    /* seasonal level of week i (1-based), 0 = not in the reference data */
    int *rows;   /* 0-based week of each GLM row */
    int nrows;
    int levels[17]; /* present levels, ascending */
    int nlevels;
    surveil_glm g;
    int has_trend; /* the fitted model has the wtime column */
    double phi;    /* max(dispersion, 1) */
    double disp;   /* the dispersion summary.glm() reports for the model (see fit_fun) */
} farr_ctx;

/* blocks(): the seasonal level of each week used for week k (1-based). */
static void assign_blocks(farr_ctx *c, int k) {
    const surveil_params *p = c->p;
    int f = p->freq, w = p->w, np = p->no_periods, b = p->b;
    int lo = k - b * f - w;
    for (int i = lo; i <= k; i++) c->blk[i] = 0;
    for (int i = k - w; i <= k; i++) c->blk[i] = np;
    for (int i = 1; i <= b; i++) {
        int ref = k - i * f;
        for (int j = ref - w; j <= ref + w; j++) c->blk[j] = np;
        if (np != 1) {
            int period = (k - (i - 1) * f) - 2 * w - 1 - ref;
            int len = period / (np - 1), rest = period % (np - 1);
            int at = ref + w + 1;
            for (int j = 1; j <= np - 1; j++) {
                int l = len + (j <= rest);
                for (int q = 0; q < l; q++) c->blk[at + q] = j;
                at += l;
            }
        }
    }
}

/* algo.farrington.data.glm: the rows (weeks) of the fit, oldest first. */
static void collect_rows(farr_ctx *c, int k) {
    int pw = c->p->past_weeks < 0 ? c->p->w : c->p->past_weeks;
    int lo = k - c->p->b * c->p->freq - c->p->w;
    int present[17] = {0};
    c->nrows = 0;
    for (int i = lo; i <= k; i++) {
        if (c->blk[i] == 0 || i >= k - pw) continue;
        c->rows[c->nrows++] = i - 1;
        present[c->blk[i]] = 1;
    }
    c->nlevels = 0;
    for (int l = 1; l <= c->p->no_periods; l++)
        if (present[l]) c->levels[c->nlevels++] = l;
}

/* The model matrix of formulaGLM: (Intercept), [wtime], seasgroups dummies
 * (treatment contrasts: the lowest level present is the baseline). x0 gets
 * the row for week k at level no_periods. */
static void build_design(farr_ctx *c, int trend, int k, double *x0) {
    surveil_glm *g = &c->g;
    int n = c->nrows, col = 0;
    int factors = c->p->no_periods != 1;
    g->n = n;
    for (int i = 0; i < n; i++) {
        g->X[i] = 1;
        g->y[i] = c->x[c->rows[i]];
        g->prior[i] = 1;
    }
    x0[col++] = 1;
    if (trend) {
        for (int i = 0; i < n; i++) g->X[(size_t)col * n + i] = c->rows[i] + 1;
        x0[col++] = k;
    }
    if (factors) {
        for (int l = 1; l < c->nlevels; l++) {
            int lev = c->levels[l];
            for (int i = 0; i < n; i++) g->X[(size_t)col * n + i] = c->blk[c->rows[i] + 1] == lev;
            x0[col++] = lev == c->p->no_periods;
        }
    }
    g->p = col;
    c->has_trend = trend;
}

/* algo.farrington.fitGLM.flexible: fit, fall back to no trend when the
 * fit does not converge, then reweight and refit. -1 = R's NULL. */
static int fit_fun(farr_ctx *c, int trend, int k, double *x0) {
    surveil_glm *g = &c->g;
    build_design(c, trend, k, x0);
    if (surveil_glm_fit(g) != 0) return -1;
    if (!g->converged) {
        if (trend) {
            build_design(c, 0, k, x0);
            if (surveil_glm_fit(g) != 0) return -1;
        }
        if (!g->converged) return -1;
    }
    double phi = g->dispersion > 1 ? g->dispersion : 1;
    if (isnan(g->dispersion)) phi = NAN;
    if (c->p->reweight) {
        /* anscombe.residuals + algo.farrington.assign.weights */
        int n = g->n;
        double thr = c->p->weights_threshold, denom = 0;
        double *s = g->z; /* scratch: the next fit overwrites it anyway */
        for (int i = 0; i < n; i++) {
            double mu = g->mu[i];
            double a = 1.5 * (c->x23[c->rows[i]] * pow(mu, -1.0 / 6) - sqrt(mu));
            s[i] = a / sqrt(phi * (1 - surveil_glm_hat(g, i)));
            denom += s[i] > thr ? 1 / (s[i] * s[i]) : 1;
        }
        double gamma = n / denom;
        for (int i = 0; i < n; i++) g->prior[i] = s[i] > thr ? gamma / (s[i] * s[i]) : gamma;
        if (surveil_glm_fit(g) != 0) return -1;
        phi = g->dispersion > 1 ? g->dispersion : 1;
        if (isnan(g->dispersion)) phi = NAN;
        /* R then stores omega in model$weights, the slot summary.glm() reads
         * as the working weights; so the dispersion behind the trend's
         * p-value and the prediction's standard error is sum(omega r^2)/df
         * with r the working residuals, while phi above is the true one. */
        double sum = 0;
        for (int i = 0; i < n; i++) {
            double r = (g->y[i] - g->mu[i]) / g->mu[i];
            sum += g->prior[i] * r * r;
        }
        c->disp = g->df_residual > 0 ? sum / g->df_residual : NAN;
    } else {
        c->disp = g->dispersion;
    }
    c->phi = phi;
    return 0;
}

static double linear_predictor(const surveil_glm *g, const double *x0) {
    double e = 0;
    for (int j = 0; j < g->p; j++) e += x0[j] * g->beta[j];
    return e;
}

/* One week (1-based k): fills *o. */
static void evaluate_week(farr_ctx *c, int k, surveil_point *o) {
    const surveil_params *p = c->p;
    surveil_glm *g = &c->g;
    double x0[18];
    o->upperbound = NAN;
    o->alarm = -1;
    o->stat = NAN;
    o->expected = NAN;
    assign_blocks(c, k);
    collect_rows(c, k);
    if (c->nrows < 1) return;
    if (fit_fun(c, p->trend, k, x0) != 0) return;
    /* algo.farrington.glm: keep the trend only when it earns its place */
    if (c->has_trend) {
        double eta0 = linear_predictor(g, x0);
        double fit = exp(eta0) > DBL_EPSILON ? exp(eta0) : DBL_EPSILON;
        double tval = g->beta[1] / sqrt(c->disp * surveil_glm_coef_var(g, 1));
        double pval = 2 * pt(-fabs(tval), g->df_residual, 1, 0);
        double ymax = 0;
        for (int i = 0; i < g->n; i++) ymax = g->y[i] > ymax ? g->y[i] : ymax;
        int significant = pval < p->p_trend;
        int do_trend = p->b >= 3 && significant && fit <= ymax;
        if (!do_trend && fit_fun(c, 0, k, x0) != 0) return;
    }
    double eta0 = linear_predictor(g, x0);
    double se_link = sqrt(surveil_glm_xvar(g, x0) * c->disp);
    double y = c->x[k - 1], phi = c->phi, alpha = p->alpha, upper, pred;
    if (p->threshold == SURVEIL_THRESHOLD_DELTA) {
        /* algo.farrington.threshold.farrington, on the response scale */
        double mu0 = exp(eta0) > DBL_EPSILON ? exp(eta0) : DBL_EPSILON;
        double se_fit = se_link * mu0;
        double tau = phi + se_fit * se_fit / mu0, se, e;
        switch (p->power) {
        case SURVEIL_POWER_NONE: se = sqrt(mu0 * tau), e = 1; break;
        case SURVEIL_POWER_HALF: se = sqrt(0.25 * tau), e = 0.5; break;
        default: se = sqrt(4.0 / 9 * pow(mu0, 1.0 / 3) * tau), e = 2.0 / 3; break;
        }
        double z = qnorm(1 - alpha, 0, 1, 1, 0);
        double lo = pow(pow(mu0, e) - z * se, 1 / e), hi = pow(pow(mu0, e) + z * se, 1 / e);
        /* sort(c(lo, hi), na.last = FALSE)[2] */
        upper = isnan(lo) ? hi : isnan(hi) ? lo : (lo > hi ? lo : hi);
        pred = mu0;
        o->expected = mu0;
    } else {
        /* algo.farrington.threshold.noufaily, on the link scale */
        double q = p->threshold == SURVEIL_THRESHOLD_NBPLUGIN ? exp(eta0) : exp(qnorm(1 - alpha, eta0, se_link, 1, 0));
        if (isinf(q)) {
            upper = NAN;
        } else if (phi > 1) {
            upper = qnbinom(1 - alpha, q / (phi - 1), 1 / phi, 1, 0);
        } else {
            upper = qpois(1 - alpha, q, 1, 0);
        }
        pred = eta0; /* R scores against the link-scale prediction here */
        o->expected = exp(eta0);
    }
    /* limit54: no alarm without limit_cases in the last limit_weeks */
    double recent = 0;
    for (int i = k - p->limit_weeks + 1; i <= k; i++) recent += c->x[i - 1];
    int enough = recent >= p->limit_cases;
    double score = isnan(upper) ? NAN : (y - pred) / (upper - pred);
    o->stat = score;
    o->upperbound = enough ? upper : NAN;
    if (!enough || isnan(upper)) o->expected = NAN;
    o->alarm = enough && !isnan(score) && score > 1 && y != 0;
}

core_status surveil_farrington(const surveil_params *p, const double *x, size_t n, size_t first, surveil_point *out,
                               core_error *err) {
    farr_ctx c = {.p = p, .x = x};
    int span = p->b * p->freq + p->w + 1;
    c.blk = calloc(n + 1, sizeof(int));
    c.rows = malloc((size_t)span * sizeof(int));
    c.x23 = malloc(n * sizeof(double));
    if (!c.blk || !c.rows || !c.x23) {
        free(c.blk);
        free(c.rows);
        free(c.x23);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    for (size_t t = 0; t < n; t++) c.x23[t] = pow(x[t], 2.0 / 3);
    core_status st = surveil_glm_alloc(&c.g, span, 1 + 1 + p->no_periods, err);
    if (st == CORE_OK) {
        for (size_t t = first; t < n; t++) evaluate_week(&c, (int)t + 1, &out[t - first]);
        surveil_glm_free(&c.g);
    }
    free(c.blk);
    free(c.rows);
    free(c.x23);
    return st;
}
