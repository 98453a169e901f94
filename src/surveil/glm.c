/* Log-link Poisson GLM by IRLS, replicating R's glm.fit (see internal.h).
 *
 * Each iteration solves a weighted least-squares problem with a Householder
 * QR written here rather than LAPACK: the systems are tiny (tens to a few
 * hundred rows, 2 to 12 columns) and are solved hundreds of thousands of
 * times in a run, where a library call's setup costs more than the work. */
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
    g->a = malloc(n * p * sizeof(double));
    g->y = malloc(n * sizeof(double));
    g->prior = malloc(n * sizeof(double));
    g->eta = malloc(n * sizeof(double));
    g->mu = malloc(n * sizeof(double));
    g->wt = malloc(n * sizeof(double));
    g->z = malloc(n * sizeof(double));
    g->beta = malloc(p * sizeof(double));
    g->coefold = malloc(p * sizeof(double));
    g->rinv = malloc(p * p * sizeof(double));
    if (!g->X || !g->a || !g->y || !g->prior || !g->eta || !g->mu || !g->wt || !g->z || !g->beta || !g->coefold ||
        !g->rinv) {
        surveil_glm_free(g);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    return CORE_OK;
}

void surveil_glm_free(surveil_glm *g) {
    free(g->X);
    free(g->a);
    free(g->y);
    free(g->prior);
    free(g->eta);
    free(g->mu);
    free(g->wt);
    free(g->z);
    free(g->beta);
    free(g->coefold);
    free(g->rinv);
    memset(g, 0, sizeof *g);
}

/* Poisson deviance, summed in row order as R does. */
static double deviance(const surveil_glm *g) {
    double dev = 0;
    for (int i = 0; i < g->n; i++) {
        double y = g->y[i], mu = g->mu[i], wt = g->prior[i];
        dev += 2 * (y > 0 ? wt * (y * log(y / mu) - (y - mu)) : mu * wt);
    }
    return dev;
}

/* eta = X beta, mu = max(exp(eta), eps) (R's poisson()$linkinv). */
static void predict(surveil_glm *g, const double *beta) {
    for (int i = 0; i < g->n; i++) {
        double e = 0;
        for (int j = 0; j < g->p; j++) e += g->X[(size_t)j * g->n + i] * beta[j];
        g->eta[i] = e;
        double m = exp(e);
        g->mu[i] = m > DBL_EPSILON ? m : DBL_EPSILON;
    }
}

/* Least squares min |A b - z| by Householder QR, A n x p column-major
 * (overwritten), z overwritten. Leaves R^-1 in g->rinv. Returns -1 when a
 * column is (numerically) a combination of the ones before it: R's dqrdc2
 * would pivot it out with tolerance 1e-11 relative to its original norm. */
static int least_squares(surveil_glm *g, double *b) {
    int n = g->n, p = g->p;
    double *A = g->a, *z = g->z;
    double norms[16];
    for (int j = 0; j < p; j++) {
        double s = 0;
        for (int i = 0; i < n; i++) s += A[(size_t)j * n + i] * A[(size_t)j * n + i];
        norms[j] = sqrt(s);
    }
    for (int j = 0; j < p; j++) {
        double *col = A + (size_t)j * n;
        double s = 0;
        for (int i = j; i < n; i++) s += col[i] * col[i];
        double nrm = sqrt(s);
        if (!(nrm > 1e-11 * norms[j])) return -1;
        double alpha = col[j] > 0 ? -nrm : nrm;
        /* v = col[j..] - alpha e1, stored in place; H = I - 2 v v' / v'v */
        double v0 = col[j] - alpha;
        double vtv = s - col[j] * col[j] + v0 * v0;
        col[j] = v0;
        for (int k = j + 1; k < p; k++) {
            double *ck = A + (size_t)k * n;
            double d = 0;
            for (int i = j; i < n; i++) d += col[i] * ck[i];
            double f = 2 * d / vtv;
            for (int i = j; i < n; i++) ck[i] -= f * col[i];
        }
        double d = 0;
        for (int i = j; i < n; i++) d += col[i] * z[i];
        double f = 2 * d / vtv;
        for (int i = j; i < n; i++) z[i] -= f * col[i];
        col[j] = alpha; /* R's diagonal; the rest of v is no longer needed */
    }
    /* Back substitution R b = (Q'z)[0..p), and R^-1 column by column. */
    for (int j = p - 1; j >= 0; j--) {
        double s = z[j];
        for (int k = j + 1; k < p; k++) s -= A[(size_t)k * n + j] * b[k];
        b[j] = s / A[(size_t)j * n + j];
    }
    double *ri = g->rinv;
    for (int c = 0; c < p; c++) {
        for (int r = p - 1; r >= 0; r--) {
            double s = r == c ? 1.0 : 0.0;
            for (int k = r + 1; k <= c; k++) s -= A[(size_t)k * n + r] * ri[(size_t)c * p + k];
            ri[(size_t)c * p + r] = r > c ? 0.0 : s / A[(size_t)r * n + r];
        }
    }
    return 0;
}

int surveil_glm_fit(surveil_glm *g) {
    int n = g->n, p = g->p;
    if (n < 1 || p < 1 || p > 16 || n > g->n_max || p > g->p_max) return -1;
    for (int i = 0; i < n; i++) {
        g->eta[i] = log(g->y[i] + 0.1);
        double m = exp(g->eta[i]);
        g->mu[i] = m > DBL_EPSILON ? m : DBL_EPSILON;
    }
    double devold = deviance(g);
    int have_old = 0;
    g->converged = 0;
    for (int iter = 1; iter <= GLM_MAXIT; iter++) {
        for (int i = 0; i < n; i++) {
            double me = exp(g->eta[i]);
            if (me < DBL_EPSILON) me = DBL_EPSILON; /* mu.eta(eta) */
            double mu = g->mu[i];
            double w = sqrt(g->prior[i] * me * me / mu);
            g->z[i] = (g->eta[i] + (g->y[i] - mu) / me) * w;
            g->wt[i] = w * w;
            for (int j = 0; j < p; j++) g->a[(size_t)j * n + i] = g->X[(size_t)j * n + i] * w;
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
    double x0[16];
    double w = sqrt(g->wt[i]);
    for (int j = 0; j < g->p; j++) x0[j] = g->X[(size_t)j * g->n + i] * w;
    double h = surveil_glm_xvar(g, x0);
    return h > 1 - 10 * DBL_EPSILON ? 1 : h;
}
