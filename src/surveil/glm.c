/* Log-link Poisson GLM by IRLS, replicating R's glm.fit (see internal.h).
 *
 * Each iteration solves a weighted least-squares problem, written here
 * rather than with LAPACK: the systems are tiny (tens to a few hundred rows,
 * 2 to 12 columns, at most three nonzeros a row) and are solved hundreds of
 * thousands of times in a run, where a library call's setup and a dense
 * factorisation cost far more than the work. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "surveil/internal.h"

#define GLM_EPSILON 1e-8 /* glm.control()$epsilon */
#define GLM_MAXIT 25     /* glm.control()$maxit */

core_status surveil_glm_alloc(surveil_glm *g, int n_max, int p_max, core_error *err) {
    memset(g, 0, sizeof *g);
    g->n_max = n_max;
    g->p_max = p_max;
    size_t n = (size_t)n_max, p = (size_t)p_max;
    g->X = malloc(n * p * sizeof(double));
    g->sp_val = malloc(n * p * sizeof(double));
    g->sp_col = malloc(n * p * sizeof(int));
    g->sp_n = malloc(n * sizeof(int));
    g->y = malloc(n * sizeof(double));
    g->prior = malloc(n * sizeof(double));
    g->eta = malloc(n * sizeof(double));
    g->mu = malloc(n * sizeof(double));
    g->wt = malloc(n * sizeof(double));
    g->ylogy = malloc(n * sizeof(double));
    g->z = malloc(n * sizeof(double));
    g->beta = malloc(p * sizeof(double));
    g->coefold = malloc(p * sizeof(double));
    g->rinv = malloc(p * p * sizeof(double));
    if (!g->X || !g->ylogy || !g->sp_val || !g->sp_col || !g->sp_n || !g->y || !g->prior || !g->eta || !g->mu ||
        !g->wt || !g->z || !g->beta || !g->coefold || !g->rinv) {
        surveil_glm_free(g);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    return CORE_OK;
}

void surveil_glm_free(surveil_glm *g) {
    free(g->X);
    free(g->sp_val);
    free(g->sp_col);
    free(g->sp_n);
    free(g->y);
    free(g->prior);
    free(g->eta);
    free(g->mu);
    free(g->wt);
    free(g->ylogy);
    free(g->z);
    free(g->beta);
    free(g->coefold);
    free(g->rinv);
    memset(g, 0, sizeof *g);
}

/* Poisson deviance, summed in row order as R does. */
/* Poisson deviance, summed in row order as R does. y log(y/mu) is taken as
 * y log y (once per fit, in g->ylogy) - y log mu, and log mu is eta itself
 * unless mu was clamped at eps: one log per row per fit instead of one per
 * row per iteration (the log was a tenth of Farrington's time). */
static double deviance(const surveil_glm *g) {
    double dev = 0;
    for (int i = 0; i < g->n; i++) {
        double y = g->y[i], mu = g->mu[i], wt = g->prior[i];
        double logmu = mu > DBL_EPSILON ? g->eta[i] : log(mu);
        dev += 2 * (y > 0 ? wt * (g->ylogy[i] - y * logmu - (y - mu)) : mu * wt);
    }
    return dev;
}

/* eta = X beta, mu = max(exp(eta), eps) (R's poisson()$linkinv). */
static void predict(surveil_glm *g, const double *beta) {
    for (int i = 0; i < g->n; i++) {
        double e = 0;
        const int *c = g->sp_col + (size_t)i * g->p;
        const double *v = g->sp_val + (size_t)i * g->p;
        for (int a = 0; a < g->sp_n[i]; a++) e += v[a] * beta[c[a]];
        g->eta[i] = e;
        double m = exp(e);
        g->mu[i] = m > DBL_EPSILON ? m : DBL_EPSILON;
    }
}

/* The rows' nonzero entries. Farrington's design (intercept, trend, one
 * seasonal dummy) has at most three per row, so the weighted normal
 * equations cost O(9n) to form instead of a dense QR's O(2np^2): at
 * no-periods 10 that is the difference between 1.3 and 0.06 us a row. */
static void sparsify(surveil_glm *g) {
    int n = g->n, p = g->p;
    for (int i = 0; i < n; i++) {
        int k = 0;
        for (int j = 0; j < p; j++) {
            double v = g->X[(size_t)j * n + i];
            if (v != 0) {
                g->sp_col[(size_t)i * p + k] = j;
                g->sp_val[(size_t)i * p + k] = v;
                k++;
            }
        }
        g->sp_n[i] = k;
    }
}

/* R = L', so R^-1 = (L^-1)': from the Cholesky factor the last least
 * squares left in g->chol (only the last iteration's is ever needed). */
static void invert_r(surveil_glm *g) {
    int p = g->p;
    const double *L = g->chol;
    double *ri = g->rinv;
    for (int c = 0; c < p; c++) { /* solve L x = e_c: x = column c of L^-1 */
        double x[SURVEIL_GLM_COLS];
        for (int i = 0; i < p; i++) {
            double s = i == c ? 1.0 : 0.0;
            for (int k = c; k < i; k++) s -= L[i * SURVEIL_GLM_COLS + k] * x[k];
            x[i] = i < c ? 0.0 : s / L[i * SURVEIL_GLM_COLS + i];
        }
        /* (L^-1)[i][c] = x[i] => (R^-1)[c][i] = x[i]: stored column-major at ri[i * p + c] */
        for (int i = 0; i < p; i++) ri[(size_t)i * p + c] = x[i];
    }
}

/* Weighted least squares: minimise sum wt_i (x_i b - z_i)^2 through the
 * normal equations X'WX b = X'Wz and their Cholesky factor L (X'WX = LL').
 * The design's columns are far from collinear (an intercept, a week number
 * and 0/1 dummies), so this agrees with R's QR to ~1e-13. Keeps L in
 * g->chol. Returns -1 when a column is (numerically) a combination of the
 * others. */
static int least_squares(surveil_glm *g, double *b) {
    int n = g->n, p = g->p;
    double A[SURVEIL_GLM_COLS * SURVEIL_GLM_COLS], r[SURVEIL_GLM_COLS] = {0}, L[SURVEIL_GLM_COLS * SURVEIL_GLM_COLS];
    memset(A, 0, (size_t)p * SURVEIL_GLM_COLS * sizeof *A); /* rows 0..p-1 are all that is used */
    memset(L, 0, (size_t)p * SURVEIL_GLM_COLS * sizeof *L);
    for (int i = 0; i < n; i++) {
        double w = g->wt[i], wz = w * g->z[i];
        const int *c = g->sp_col + (size_t)i * p;
        const double *v = g->sp_val + (size_t)i * p;
        for (int a = 0; a < g->sp_n[i]; a++) {
            r[c[a]] += wz * v[a];
            double wa = w * v[a];
            for (int q = 0; q <= a; q++)
                A[c[a] * SURVEIL_GLM_COLS + c[q]] += wa * v[q]; /* lower triangle: c ascending */
        }
    }
    for (int j = 0; j < p; j++) {
        double d = A[j * SURVEIL_GLM_COLS + j];
        for (int k = 0; k < j; k++) d -= L[j * SURVEIL_GLM_COLS + k] * L[j * SURVEIL_GLM_COLS + k];
        if (!(d > 1e-14 * A[j * SURVEIL_GLM_COLS + j]) || !(A[j * SURVEIL_GLM_COLS + j] > 0)) return -1;
        double ljj = sqrt(d);
        L[j * SURVEIL_GLM_COLS + j] = ljj;
        for (int i = j + 1; i < p; i++) {
            double s = A[i * SURVEIL_GLM_COLS + j];
            for (int k = 0; k < j; k++) s -= L[i * SURVEIL_GLM_COLS + k] * L[j * SURVEIL_GLM_COLS + k];
            L[i * SURVEIL_GLM_COLS + j] = s / ljj;
        }
    }
    double y[SURVEIL_GLM_COLS];
    for (int i = 0; i < p; i++) { /* L y = r */
        double s = r[i];
        for (int k = 0; k < i; k++) s -= L[i * SURVEIL_GLM_COLS + k] * y[k];
        y[i] = s / L[i * SURVEIL_GLM_COLS + i];
    }
    for (int i = p - 1; i >= 0; i--) { /* L' b = y */
        double s = y[i];
        for (int k = i + 1; k < p; k++) s -= L[k * SURVEIL_GLM_COLS + i] * b[k];
        b[i] = s / L[i * SURVEIL_GLM_COLS + i];
    }
    memcpy(g->chol, L, (size_t)p * SURVEIL_GLM_COLS * sizeof *L); /* R^-1 is needed only from the last iteration's */
    return 0;
}

int surveil_glm_fit(surveil_glm *g) {
    int n = g->n, p = g->p;
    if (n < 1 || p < 1 || p > SURVEIL_GLM_COLS || n > g->n_max || p > g->p_max) return -1;
    for (int i = 0; i < n; i++) {
        g->ylogy[i] = g->y[i] > 0 ? g->y[i] * log(g->y[i]) : 0;
        g->eta[i] = log(g->y[i] + 0.1);
        double m = exp(g->eta[i]);
        g->mu[i] = m > DBL_EPSILON ? m : DBL_EPSILON;
    }
    double devold = deviance(g);
    int have_old = 0;
    g->converged = 0;
    sparsify(g);
    for (int iter = 1; iter <= GLM_MAXIT; iter++) {
        for (int i = 0; i < n; i++) {
            /* mu.eta(eta) = max(exp(eta), eps) is mu itself (same formula,
             * same eta), and the working weight prior * mu.eta^2 / V(mu)
             * is prior * mu */
            double mu = g->mu[i];
            g->z[i] = g->eta[i] + (g->y[i] - mu) / mu;
            g->wt[i] = g->prior[i] * mu;
        }
        if (least_squares(g, g->beta) != 0) return -1;
        for (int j = 0; j < p; j++)
            if (!isfinite(g->beta[j])) return -1;
        predict(g, g->beta);
        double dev = deviance(g);
        /* Step halving when the deviance or mu is not finite (glm.fit). */
        int bad = !isfinite(dev);
        for (int i = 0; i < n && !bad; i++) bad = !isfinite(g->mu[i]);
        if (bad) {
            if (!have_old) return -1;
            for (int ii = 1; bad; ii++) {
                if (ii > GLM_MAXIT) return -1;
                for (int j = 0; j < p; j++) g->beta[j] = (g->beta[j] + g->coefold[j]) / 2;
                predict(g, g->beta);
                dev = deviance(g);
                bad = !isfinite(dev);
                for (int i = 0; i < n && !bad; i++) bad = !isfinite(g->mu[i]);
            }
        }
        if (fabs(dev - devold) / (fabs(dev) + 0.1) < GLM_EPSILON) {
            g->converged = 1;
            break;
        }
        devold = dev;
        memcpy(g->coefold, g->beta, (size_t)p * sizeof(double));
        have_old = 1;
    }
    invert_r(g);
    g->df_residual = n - p;
    if (g->df_residual > 0) {
        double s = 0;
        for (int i = 0; i < n; i++) {
            double r = (g->y[i] - g->mu[i]) / g->mu[i]; /* working residual at the final mu */
            s += g->wt[i] * r * r;
        }
        g->dispersion = s / g->df_residual;
    } else {
        g->dispersion = NAN;
    }
    return 0;
}

double surveil_glm_xvar(const surveil_glm *g, const double *x0) {
    /* |x0' R^-1|^2 */
    double s = 0;
    for (int c = 0; c < g->p; c++) {
        double v = 0;
        for (int r = 0; r <= c; r++) v += x0[r] * g->rinv[(size_t)c * g->p + r];
        s += v * v;
    }
    return s;
}

double surveil_glm_coef_var(const surveil_glm *g, int j) {
    /* (R^-1 R^-T)_jj = sum over columns c >= j of rinv[j, c]^2 */
    double s = 0;
    for (int c = j; c < g->p; c++) s += g->rinv[(size_t)c * g->p + j] * g->rinv[(size_t)c * g->p + j];
    return s;
}

double surveil_glm_hat(const surveil_glm *g, int i) {
    double x0[SURVEIL_GLM_COLS];
    double w = sqrt(g->wt[i]);
    for (int j = 0; j < g->p; j++) x0[j] = g->X[(size_t)j * g->n + i] * w;
    double h = surveil_glm_xvar(g, x0);
    return h > 1 - 10 * DBL_EPSILON ? 1 : h;
}
