/* surveil — what the module's files share; not part of its public API. */
#ifndef CARESYNC_SURVEIL_INTERNAL_H
#define CARESYNC_SURVEIL_INTERNAL_H

#include "surveil/surveil.h"

/* A log-link Poisson / quasi-Poisson GLM fitted by iteratively reweighted
 * least squares, as R's glm.fit does it: the same start (mu = y + 0.1), the
 * same stopping rule (|dev - devold| / (|dev| + 0.1) < 1e-8, at most 25
 * iterations) and the same bookkeeping (the working weights and QR kept are
 * those of the last iteration, taken before its update), because the
 * dispersion, standard errors and hat values R reports are computed from
 * exactly those, and they differ from the converged values by more than the
 * 1e-6 we promise. Buffers are sized for n_max rows and p_max columns. */
/* Columns the GLM's normal equations hold on the stack. Farrington needs
 * intercept + trend + (no_periods - 1) period dummies, so the periods a
 * user may ask for are bounded by it (surveil.h, SURVEIL_MAX_PERIODS). */
#define SURVEIL_GLM_COLS 16
_Static_assert(SURVEIL_MAX_PERIODS + 1 <= SURVEIL_GLM_COLS, "Farrington's design must fit the GLM");

typedef struct {
    int n_max, p_max;
    int n, p;
    double *X;                                        /* n x p design, column-major; filled by the caller */
    double *y;                                        /* n responses; filled by the caller */
    double *prior;                                    /* n prior weights (> 0); filled by the caller */
    double *beta;                                     /* p coefficients */
    double *eta, *mu;                                 /* n, at the coefficients */
    double *wt;                                       /* n working weights (w^2) of the last iteration */
    double *ylogy;                                    /* n: y log y, for the deviance */
    double *rinv;                                     /* p x p inverse of the last iteration's R, column-major */
    double chol[SURVEIL_GLM_COLS * SURVEIL_GLM_COLS]; /* the last iteration's Cholesky factor of X'WX
                                                        (row-major, stride SURVEIL_GLM_COLS) */
    double *sp_val;                                   /* n x p scratch: each row's nonzero values ... */
    int *sp_col;                                      /* ... their columns ... */
    int *sp_n;                                        /* ... and how many */
    double *z;                                        /* n scratch */
    double *coefold;                                  /* p scratch */
    int converged;
    int df_residual;
    double dispersion; /* Pearson chi^2 / df with the kept weights (summary.glm) */
} surveil_glm;

core_status surveil_glm_alloc(surveil_glm *g, int n_max, int p_max, core_error *err);
void surveil_glm_free(surveil_glm *g);
/* Fit g->n rows and g->p columns. Returns 0 on a fit (converged or not: see
 * g->converged), -1 when the design is rank deficient or the iteration broke
 * down (non-finite coefficients): R would give NA there. */
int surveil_glm_fit(surveil_glm *g);
/* x0' (R'R)^-1 x0 for a new row x0 of p values: the unscaled variance of
 * the linear predictor there. */
double surveil_glm_xvar(const surveil_glm *g, const double *x0);
/* Unscaled variance of coefficient j. */
double surveil_glm_coef_var(const surveil_glm *g, int j);
/* Hat value of row i (leverage in the last iteration's weighted design). */
double surveil_glm_hat(const surveil_glm *g, int i);

/* The three method families (surveil_detect dispatches). */
core_status surveil_ears(const surveil_params *p, const double *x, size_t n, size_t first, surveil_point *out,
                         core_error *err);
core_status surveil_cusum(const surveil_params *p, const double *x, size_t n, size_t first, surveil_point *out,
                          core_error *err);
core_status surveil_farrington(const surveil_params *p, const double *x, size_t n, size_t first, surveil_point *out,
                               core_error *err);

/* R's pmax(a, b): NaN if either is NaN (fmax would drop it). */
static inline double surveil_pmax(double a, double b) {
    if (a != a || b != b) return a + b;
    return a > b ? a : b;
}

#endif
