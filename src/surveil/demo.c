/* Demo data: a synthetic year of contributions for the United States, so a
 * new instance shows a living dashboard. Every count is stored with the
 * synthetic flag, and every release and alert built on it says so.
 *
 * Weekly counts per state and condition are negative binomial around a mean
 * that follows the state's population, the condition's share and its season
 * (fungal infections peak in summer, eczema and viral rashes in winter), the
 * shape used by Noufaily et al. (2013) for surveillance baselines. Two
 * outbreaks are injected in the last eight weeks: fungal infections in
 * Florida and a viral rash in Washington. Random numbers come from R's own
 * generator (libRmath), seeded, so the same seed gives the same year. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MATHLIB_STANDALONE 1
#include <Rmath.h>

#include "surveil/surveil.h"

/* 2020 census, thousands. */
static const struct {
    const char *code;
    int pop;
} states[] = {
    {"US-AL", 5024}, {"US-AK", 733},   {"US-AZ", 7152},  {"US-AR", 3012},  {"US-CA", 39538}, {"US-CO", 5774},
    {"US-CT", 3606}, {"US-DE", 990},   {"US-DC", 690},   {"US-FL", 21538}, {"US-GA", 10712}, {"US-HI", 1455},
    {"US-ID", 1839}, {"US-IL", 12812}, {"US-IN", 6786},  {"US-IA", 3190},  {"US-KS", 2938},  {"US-KY", 4506},
    {"US-LA", 4658}, {"US-ME", 1362},  {"US-MD", 6177},  {"US-MA", 7030},  {"US-MI", 10077}, {"US-MN", 5706},
    {"US-MS", 2961}, {"US-MO", 6154},  {"US-MT", 1084},  {"US-NE", 1962},  {"US-NV", 3105},  {"US-NH", 1378},
    {"US-NJ", 9289}, {"US-NM", 2118},  {"US-NY", 20201}, {"US-NC", 10439}, {"US-ND", 779},   {"US-OH", 11799},
    {"US-OK", 3959}, {"US-OR", 4237},  {"US-PA", 13003}, {"US-RI", 1097},  {"US-SC", 5118},  {"US-SD", 887},
    {"US-TN", 6910}, {"US-TX", 29146}, {"US-UT", 3272},  {"US-VT", 643},   {"US-VA", 8631},  {"US-WA", 7705},
    {"US-WV", 1794}, {"US-WI", 5894},  {"US-WY", 577},
};

size_t surveil_demo_regions(void) { return sizeof states / sizeof *states; }

const char *surveil_demo_region(size_t i, int *population_thousands) {
    if (i >= sizeof states / sizeof *states) return NULL;
    if (population_thousands) *population_thousands = states[i].pop;
    return states[i].code;
}

/* Share of contributions and seasonal amplitude/peak (week of year) per
 * condition; unknown codes get a small flat share. */
void surveil_demo_condition_profile(const char *code, double *share, double *amp, double *peak) {
    static const struct {
        const char *code;
        double share, amp, peak;
    } p[] = {
        {"fungal", 0.24, 0.45, 30},       {"bacterial", 0.11, 0.25, 32},   {"viral", 0.12, 0.40, 8},
        {"parasitic", 0.03, 0.30, 34},    {"eczema", 0.18, 0.35, 4},       {"psoriasis", 0.07, 0.10, 6},
        {"acne_rosacea", 0.12, 0.15, 28}, {"benign_mole", 0.08, 0.20, 26}, {"melanoma", 0.02, 0.20, 26},
        {"other", 0.03, 0.0, 1},
    };
    for (size_t i = 0; i < sizeof p / sizeof *p; i++)
        if (strcmp(p[i].code, code) == 0) {
            *share = p[i].share, *amp = p[i].amp, *peak = p[i].peak;
            return;
        }
    *share = 0.02, *amp = 0, *peak = 1;
}

core_status surveil_demo_fill(store *st, const char *const *conditions, size_t n_cond, int week_end, int weeks,
                              unsigned seed, surveil_demo_summary *sum, core_error *err) {
    memset(sum, 0, sizeof *sum);
    if (weeks < 8 || weeks > 520) return core_fail(err, CORE_ERR_INVALID, "weeks", "weeks must be from 8 to 520");
    set_seed(seed ? seed : 20261128u, 362436069u);
    size_t ns = sizeof states / sizeof *states;
    size_t cap = ns * n_cond * SURVEIL_AGE_BANDS * 2;
    surveil_contribution *c = malloc(cap * sizeof *c);
    int64_t *n = malloc(cap * sizeof *n);
    if (!c || !n) {
        free(c);
        free(n);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    /* age mix of people who use a phone app for their skin */
    static const double age_mix[SURVEIL_AGE_BANDS - 1] = {0.05, 0.10, 0.20, 0.35, 0.20, 0.10};
    int fl_from = week_end - 7, fl_to = week_end - 4, wa_from = week_end - 3, wa_to = week_end - 1;
    char a[9], b[9];
    surveil_week_format(fl_from, a);
    surveil_week_format(fl_to, b);
    snprintf(sum->outbreaks[0], sizeof sum->outbreaks[0], "fungal infections in US-FL, %s to %s", a, b);
    surveil_week_format(wa_from, a);
    surveil_week_format(wa_to, b);
    snprintf(sum->outbreaks[1], sizeof sum->outbreaks[1], "viral rash in US-WA, %s to %s", a, b);
    core_status rc = CORE_OK;
    for (int w = week_end - weeks + 1; w <= week_end && !rc; w++) {
        size_t m = 0;
        char label[9];
        surveil_week_format(w, label);
        int woy = atoi(label + 6);                                            /* week of the year, for the season */
        double trend = 1.0 + 0.15 * (double)(w - (week_end - weeks)) / weeks; /* the app grows */
        for (size_t s = 0; s < ns; s++) {
            for (size_t j = 0; j < n_cond; j++) {
                double share, amp, peak;
                surveil_demo_condition_profile(conditions[j], &share, &amp, &peak);
                double mu =
                    states[s].pop / 1000.0 * 15.0 * share * trend * (1 + amp * cos(2 * M_PI * (woy - peak) / 52.0));
                if (!strcmp(states[s].code, "US-FL") && !strcmp(conditions[j], "fungal") && w >= fl_from && w <= fl_to)
                    mu *= 2.2 + 0.6 * (w - fl_from);
                if (!strcmp(states[s].code, "US-WA") && !strcmp(conditions[j], "viral") && w >= wa_from && w <= wa_to)
                    mu += 60 + 40 * (w - wa_from);
                /* negative binomial, variance = 1.5 mu (dispersion as in Noufaily's scenarios) */
                double phi = 1.5, size = mu / (phi - 1);
                int64_t total = mu > 0 ? (int64_t)rnbinom(size, 1 / phi) : 0;
                int64_t left = total;
                double pleft = 1.0;
                for (int band = 0; band < SURVEIL_AGE_BANDS - 1 && left > 0; band++) {
                    int64_t k =
                        band == SURVEIL_AGE_BANDS - 2 ? left : (int64_t)rbinom((double)left, age_mix[band] / pleft);
                    pleft -= age_mix[band];
                    left -= k;
                    if (k <= 0) continue;
                    int64_t self = (int64_t)rbinom((double)k, 0.15);
                    for (int src = 0; src < 2; src++) {
                        int64_t v = src ? self : k - self;
                        if (v <= 0) continue;
                        surveil_contribution *x = &c[m];
                        memset(x, 0, sizeof *x);
                        snprintf(x->condition, sizeof x->condition, "%s", conditions[j]);
                        snprintf(x->region, sizeof x->region, "%s", states[s].code);
                        x->week = w;
                        x->age_band = band;
                        x->source = src ? SURVEIL_SOURCE_SELF : SURVEIL_SOURCE_MODEL;
                        n[m++] = v;
                        sum->contributions += v;
                    }
                }
            }
        }
        rc = surveil_add_counts(st, c, n, m, true, err);
    }
    sum->regions = (int)ns;
    sum->weeks = weeks;
    free(c);
    free(n);
    return rc;
}
