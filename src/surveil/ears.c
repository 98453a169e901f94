/* EARS C1, C2 and C3 (Hutwagner et al. 2003), as surveillance::earsC.
 *
 * C1: week t against the mean and sd of the `baseline` weeks before it.
 * C2: the same window, lagged by two weeks (t-baseline-2 .. t-3).
 * C3: C2's statistic summed over t-2, t-1, t (the two earlier ones only
 *     where they exceed 1); R turns that into an upper bound for the count. */
#include <math.h>

#define MATHLIB_STANDALONE 1
#include <Rmath.h>

#include "surveil/internal.h"

/* mean and sd (n-1 denominator) of x[0..n), two-pass like R's var(). */
static void mean_sd(const double *x, int n, double *mean, double *sd) {
    long double s = 0;
    for (int i = 0; i < n; i++) s += x[i];
    long double m = s / n;
    /* R's mean() adds the mean of the residuals back (one refinement pass) */
    long double t = 0;
    for (int i = 0; i < n; i++) t += x[i] - m;
    m += t / n;
    double md = (double)m;
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (x[i] - md) * (x[i] - md);
    *mean = md;
    *sd = sqrt(ss / (n - 1));
}

core_status surveil_ears(const surveil_params *p, const double *x, size_t n, size_t first, surveil_point *out,
                         core_error *err) {
    (void)err;
    int bl = p->baseline;
    int lag = p->method == SURVEIL_C1 ? 0 : 2; /* window ends lag+1 weeks before t */
    double z = qnorm(1 - p->alpha, 0, 1, 1, 0);
    size_t m = n - first;
    if (p->method != SURVEIL_C3) {
        for (size_t i = 0; i < m; i++) {
            size_t t = first + i;
            double mean, sd;
            mean_sd(x + t - lag - (size_t)bl, bl, &mean, &sd);
            double s = surveil_pmax(sd, p->min_sigma);
            double ub = mean + z * s;
            out[i].upperbound = ub;
            out[i].stat = (x[t] - mean) / s;
            out[i].expected = mean;
            out[i].alarm = isnan(ub) ? -1 : x[t] > ub;
        }
        return CORE_OK;
    }
    /* C3: the C2 statistic is needed from two weeks before the first. */
    double c2m2 = NAN, c2m1 = NAN;
    for (size_t t = first - 2; t < n; t++) {
        double mean, sd;
        mean_sd(x + t - 2 - (size_t)bl, bl, &mean, &sd);
        double s = surveil_pmax(sd, p->min_sigma);
        double c2 = (x[t] - mean) / s;
        if (t >= first) {
            double lag2 = surveil_pmax(0, c2m2 - 1), lag1 = surveil_pmax(0, c2m1 - 1);
            double ub = surveil_pmax(0, x[t] + s * (z - (lag2 + lag1)));
            surveil_point *o = &out[t - first];
            o->upperbound = ub;
            o->stat = c2 + lag2 + lag1; /* C3 as EARS defines it */
            o->expected = mean;
            o->alarm = isnan(ub) ? -1 : x[t] > ub;
        }
        c2m2 = c2m1;
        c2m1 = c2;
    }
    return CORE_OK;
}
