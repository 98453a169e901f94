/* CUSUM for counts (Rossi et al. 1999), as surveillance::algo.cusum: the
 * counts are standardised against an in-control mean m, and the one-sided
 * sum S_t = max(0, S_{t-1} + z_t - k) alarms when it reaches h. The upper
 * bound is the count that would have made S_t reach h, given S_{t-1}. */
#include <math.h>
#include <float.h>
#include <stdlib.h>

#include "surveil/internal.h"

/* m for each evaluated week from a Poisson GLM with one yearly harmonic over
 * the weeks before the range (control$m = "glm"); week t has time index t. */
static core_status glm_mean(const surveil_params *p, const double *x, size_t first, size_t m, double *mean,
                            core_error *err) {
    surveil_glm g;
    core_status st = surveil_glm_alloc(&g, (int)first, 3, err);
    if (st != CORE_OK) return st;
    g.n = (int)first;
    g.p = 3;
    double om = 2 * M_PI / p->freq;
    for (int i = 0; i < g.n; i++) {
        double t = i + 1;
        g.X[i] = 1;
        g.X[(size_t)g.n + i] = cos(om * t);
        g.X[2 * (size_t)g.n + i] = sin(om * t);
        g.y[i] = x[i];
        g.prior[i] = 1;
    }
    int rc = surveil_glm_fit(&g);
    if (rc == 0) {
        for (size_t i = 0; i < m; i++) {
            double t = (double)(first + i + 1);
            double e = exp(g.beta[0] + g.beta[1] * cos(om * t) + g.beta[2] * sin(om * t));
            mean[i] = e > DBL_EPSILON ? e : DBL_EPSILON; /* predict(type = "response") */
        }
    }
    surveil_glm_free(&g);
    if (rc != 0) return core_fail(err, CORE_ERR_INVALID, "m", "the seasonal GLM for m could not be fitted");
    return CORE_OK;
}

core_status surveil_cusum(const surveil_params *p, const double *x, size_t n, size_t first, surveil_point *out,
                          core_error *err) {
    size_t m = n - first;
    double *mean = malloc(m * sizeof(double));
    if (!mean) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    if (p->m_glm) {
        core_status st = glm_mean(p, x, first, m, mean, err);
        if (st != CORE_OK) {
            free(mean);
            return st;
        }
    } else {
        double mu = p->m;
        if (isnan(mu)) {
            long double s = 0; /* mean(observed[1:(start-1)]) */
            for (size_t i = 0; i < first; i++) s += x[i];
            long double mm = s / first, t = 0;
            for (size_t i = 0; i < first; i++) t += x[i] - mm;
            mu = (double)(mm + t / first);
        }
        for (size_t i = 0; i < m; i++) mean[i] = mu;
    }
    double k = p->k, h = p->h, a = p->cusum_alpha;
    double s = 0; /* S_{t-1} */
    for (size_t i = 0; i < m; i++) {
        double xt = x[first + i], mu = mean[i], z, ub;
        switch (p->trans) {
        case SURVEIL_TRANS_ROSSI: z = (xt - 3 * mu + 2 * sqrt(xt * mu)) / (2 * sqrt(mu)); break;
        case SURVEIL_TRANS_ANSCOMBE: z = 1.5 * (pow(xt, 2.0 / 3) - pow(mu, 2.0 / 3)) / pow(mu, 1.0 / 6); break;
        case SURVEIL_TRANS_ANSCOMBE2ND:
            z = (pow(xt, 2.0 / 3) - (pow(mu, 2.0 / 3) - pow(mu, -1.0 / 3) / 9)) / (2.0 / 3 * pow(mu, 1.0 / 6));
            break;
        case SURVEIL_TRANS_PEARSON_NB: z = (xt - mu) / sqrt(mu + a * mu * mu); break;
        case SURVEIL_TRANS_NONE: z = xt; break;
        default: z = (xt - mu) / sqrt(mu); break;
        }
        double prev = s;
        double next = prev + (z - k);
        s = surveil_pmax(0, next);
        switch (p->trans) {
        case SURVEIL_TRANS_ROSSI: {
            double r = sqrt(mu);
            ub = 2 * h * r + 2 * k * r - 2 * prev * r + 5 * mu -
                 2 * sqrt(4 * mu * mu + 2 * pow(mu, 1.5) * h + 2 * pow(mu, 1.5) * k - 2 * pow(mu, 1.5) * prev);
            break;
        }
        case SURVEIL_TRANS_ANSCOMBE: {
            double base = 2.0 / 3 * pow(mu, 1.0 / 6) * (h + k - prev) + pow(mu, 2.0 / 3);
            ub = base < 0 ? 0 : pow(base, 1.5);
            break;
        }
        case SURVEIL_TRANS_ANSCOMBE2ND: {
            /* R writes m^(1/3) here where the transformation has m^(-1/3); kept, to agree with R */
            double base = 2.0 / 3 * pow(mu, 1.0 / 6) * (h + k - prev) + (pow(mu, 2.0 / 3) - pow(mu, 1.0 / 3) / 9);
            ub = base < 0 ? 0 : pow(base, 1.5);
            break;
        }
        case SURVEIL_TRANS_PEARSON_NB: ub = sqrt(mu + a * mu * mu) * (h + k - prev) + mu; break;
        case SURVEIL_TRANS_NONE: ub = h - s; break;
        default: ub = ceil(sqrt(mu) * (h + k - prev) + mu); break;
        }
        if (isnan(ub) || ub < 0) ub = 0;
        out[i].upperbound = ub;
        out[i].stat = s;
        out[i].expected = mu;
        out[i].alarm = isnan(s) ? -1 : s >= h;
    }
    free(mean);
    return CORE_OK;
}
