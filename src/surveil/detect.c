/* Detection: parameters, their validation, and the dispatch to a method. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "surveil/internal.h"

static const char *const method_names[] = {"c1", "c2", "c3", "cusum", "farrington"};

const char *surveil_method_name(surveil_method m) {
    return (unsigned)m < sizeof method_names / sizeof *method_names ? method_names[m] : "?";
}

core_status surveil_method_parse(const char *name, surveil_method *out, core_error *err) {
    for (size_t i = 0; i < sizeof method_names / sizeof *method_names; i++) {
        if (name && strcasecmp(name, method_names[i]) == 0) {
            *out = (surveil_method)i;
            return CORE_OK;
        }
    }
    return core_fail(err, CORE_ERR_INVALID, "method", "unknown method '%s' (c1, c2, c3, cusum, farrington)",
                     name ? name : "");
}

void surveil_params_init(surveil_params *p, surveil_method method) {
    memset(p, 0, sizeof *p);
    p->method = method;
    p->freq = 52;
    p->baseline = 7;
    p->min_sigma = 0;
    p->alpha = method == SURVEIL_C3 ? 0.025 : method == SURVEIL_FARRINGTON ? 0.05 : 0.001;
    p->k = 1.04;
    p->h = 2.26;
    p->m = NAN;
    p->trans = SURVEIL_TRANS_STANDARD;
    p->cusum_alpha = 0.1;
    p->b = 5;
    p->w = 3;
    p->reweight = 1;
    p->weights_threshold = 2.58;
    p->trend = 1;
    p->p_trend = 0.05;
    p->limit_cases = 5;
    p->limit_weeks = 4;
    p->power = SURVEIL_POWER_TWO_THIRDS;
    p->no_periods = 1;
    p->past_weeks = -1;
    p->threshold = SURVEIL_THRESHOLD_DELTA;
}

static core_status num(const char *key, const char *v, double lo, double hi, double *out, core_error *err) {
    char *end;
    double d = v ? strtod(v, &end) : NAN;
    if (!v || end == v || *end || !isfinite(d) || d < lo || d > hi)
        return core_fail(err, CORE_ERR_INVALID, key, "%s must be a number from %g to %g", key, lo, hi);
    *out = d;
    return CORE_OK;
}

static core_status integer(const char *key, const char *v, int lo, int hi, int *out, core_error *err) {
    char *end;
    long d = v ? strtol(v, &end, 10) : 0;
    if (!v || end == v || *end || d < lo || d > hi)
        return core_fail(err, CORE_ERR_INVALID, key, "%s must be a whole number from %d to %d", key, lo, hi);
    *out = (int)d;
    return CORE_OK;
}

static core_status boolean(const char *key, const char *v, int *out, core_error *err) {
    if (v && (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes")))
        *out = 1;
    else if (v && (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no")))
        *out = 0;
    else
        return core_fail(err, CORE_ERR_INVALID, key, "%s must be true or false", key);
    return CORE_OK;
}

static core_status choice(const char *key, const char *v, const char *const *names, int count, int *out,
                          core_error *err) {
    for (int i = 0; i < count; i++) {
        if (v && strcasecmp(v, names[i]) == 0) {
            *out = i;
            return CORE_OK;
        }
    }
    return core_fail(err, CORE_ERR_INVALID, key, "unknown %s '%s'", key, v ? v : "");
}

core_status surveil_params_set(surveil_params *p, const char *key, const char *v, core_error *err) {
    static const char *const trans[] = {"standard", "rossi", "anscombe", "anscombe2nd", "pearsonNegBin", "none"};
    static const char *const thresholds[] = {"delta", "nbPlugin", "muan"};
    static const char *const powers[] = {"none", "1/2", "2/3"};
    int i = 0;
    core_status st;
    if (!strcmp(key, "range-start")) return integer(key, v, 1, 1 << 30, &p->range_start, err);
    if (!strcmp(key, "freq")) return integer(key, v, 1, 366, &p->freq, err);
    if (!strcmp(key, "baseline")) return integer(key, v, 3, 1 << 20, &p->baseline, err);
    if (!strcmp(key, "min-sigma")) return num(key, v, 0, 1e300, &p->min_sigma, err);
    if (!strcmp(key, "alpha")) {
        st = num(key, v, 0, 1, &p->alpha, err);
        if (st == CORE_OK && (p->alpha <= 0 || p->alpha >= 1))
            return core_fail(err, CORE_ERR_INVALID, key, "alpha must lie strictly between 0 and 1");
        return st;
    }
    if (!strcmp(key, "k")) return num(key, v, -1e6, 1e6, &p->k, err);
    if (!strcmp(key, "h")) return num(key, v, 0, 1e6, &p->h, err);
    if (!strcmp(key, "m")) {
        if (v && !strcasecmp(v, "glm")) {
            p->m_glm = 1;
            return CORE_OK;
        }
        p->m_glm = 0;
        st = num(key, v, 0, 1e12, &p->m, err);
        if (st == CORE_OK && p->m <= 0) return core_fail(err, CORE_ERR_INVALID, key, "m must be positive");
        return st;
    }
    if (!strcmp(key, "trans")) {
        st = choice(key, v, trans, 6, &i, err);
        if (st == CORE_OK) p->trans = (surveil_trans)i;
        return st;
    }
    if (!strcmp(key, "cusum-alpha")) return num(key, v, 0, 1e6, &p->cusum_alpha, err);
    if (!strcmp(key, "b")) return integer(key, v, 1, 50, &p->b, err);
    if (!strcmp(key, "w")) return integer(key, v, 0, 26, &p->w, err);
    if (!strcmp(key, "reweight")) return boolean(key, v, &p->reweight, err);
    if (!strcmp(key, "weights-threshold")) return num(key, v, -1e6, 1e6, &p->weights_threshold, err);
    if (!strcmp(key, "trend")) return boolean(key, v, &p->trend, err);
    if (!strcmp(key, "p-trend")) return num(key, v, 0, 1, &p->p_trend, err);
    if (!strcmp(key, "limit54")) {
        int c, w;
        char tail;
        if (!v || sscanf(v, "%d,%d%c", &c, &w, &tail) != 2 || c < 0 || w < 1 || w > 520)
            return core_fail(err, CORE_ERR_INVALID, key, "limit54 is CASES,WEEKS (cases >= 0, weeks >= 1)");
        p->limit_cases = c;
        p->limit_weeks = w;
        return CORE_OK;
    }
    if (!strcmp(key, "powertrans")) {
        st = choice(key, v, powers, 3, &i, err);
        if (st == CORE_OK) p->power = (surveil_power)i;
        return st;
    }
    if (!strcmp(key, "no-periods")) return integer(key, v, 1, SURVEIL_MAX_PERIODS, &p->no_periods, err);
    if (!strcmp(key, "past-weeks")) return integer(key, v, 0, 520, &p->past_weeks, err);
    if (!strcmp(key, "threshold")) {
        st = choice(key, v, thresholds, 3, &i, err);
        if (st == CORE_OK) p->threshold = (surveil_threshold)i;
        return st;
    }
    return core_fail(err, CORE_ERR_INVALID, key, "unknown parameter '%s'", key);
}

/* The parameters that size a GLM or its data (Farrington's b, w, freq and
 * no-periods: its rows are b·freq + w + 1 weeks, its columns 2 + no-periods
 * at most; CUSUM's m = glm: rows are the weeks before the range) within
 * the limits surveil_params_set accepts. A caller that fills the struct
 * itself (the API's alerts, tests) meets the same limits, so an int never
 * overflows sizing a buffer and the design always fits SURVEIL_GLM_COLS. */
static core_status params_in_range(const surveil_params *p, core_error *err) {
    static const struct {
        const char *key;
        int lo, hi;
    } lim[] = {{"freq", 1, 366},
               {"baseline", 3, 1 << 20},
               {"b", 1, 50},
               {"w", 0, 26},
               {"no-periods", 1, SURVEIL_MAX_PERIODS},
               {"past-weeks", -1, 520},
               {"range-start", 0, 1 << 30}};
    const int val[] = {p->freq, p->baseline, p->b, p->w, p->no_periods, p->past_weeks, p->range_start};
    _Static_assert(sizeof val / sizeof *val == sizeof lim / sizeof *lim, "one value per limit");
    for (size_t i = 0; i < sizeof lim / sizeof *lim; i++)
        if (val[i] < lim[i].lo || val[i] > lim[i].hi)
            return core_fail(err, CORE_ERR_INVALID, lim[i].key, "%s must be a whole number from %d to %d", lim[i].key,
                             lim[i].lo, lim[i].hi);
    return CORE_OK;
}

/* The first week (0-based) a method can evaluate; R's default range. */
static size_t earliest(const surveil_params *p) {
    switch (p->method) {
    case SURVEIL_C1: return (size_t)p->baseline;
    case SURVEIL_C2: return (size_t)p->baseline + 2;
    case SURVEIL_C3: return (size_t)p->baseline + 4;
    case SURVEIL_CUSUM: return 1;
    case SURVEIL_FARRINGTON: return (size_t)p->b * (size_t)p->freq + (size_t)p->w;
    }
    return 0;
}

core_status surveil_detect(const surveil_params *p, const double *counts, size_t n, size_t *first, surveil_point *out,
                           core_error *err) {
    if ((unsigned)p->method > SURVEIL_FARRINGTON) return core_fail(err, CORE_ERR_INVALID, "method", "unknown method");
    for (size_t i = 0; i < n; i++)
        if (!isfinite(counts[i]) || counts[i] < 0)
            return core_fail(err, CORE_ERR_INVALID, "counts", "week %zu: counts must be finite and not negative",
                             i + 1);
    if (!(p->alpha > 0 && p->alpha < 1))
        return core_fail(err, CORE_ERR_INVALID, "alpha", "alpha must lie strictly between 0 and 1");
    core_status st = params_in_range(p, err);
    if (st != CORE_OK) return st;
    if (p->method == SURVEIL_FARRINGTON) {
        if (2 * p->w + 1 > p->freq)
            return core_fail(err, CORE_ERR_INVALID, "w", "the reference window (2w+1 weeks) is longer than a year");
        if (p->no_periods > 1 && p->freq - 2 * p->w - 1 < p->no_periods - 1)
            return core_fail(err, CORE_ERR_INVALID, "no-periods", "too many periods for the weeks between windows");
        if (p->past_weeks >= p->freq * p->b)
            return core_fail(err, CORE_ERR_INVALID, "past-weeks", "past-weeks leaves no reference data");
    }
    if (p->method == SURVEIL_CUSUM && p->m_glm && p->freq < 3)
        return core_fail(err, CORE_ERR_INVALID, "freq", "m=glm needs at least 3 weeks per period");
    size_t lo = earliest(p);
    size_t start;
    if (p->range_start > 0)
        start = (size_t)p->range_start - 1;
    else if (p->method == SURVEIL_CUSUM)
        start = (size_t)p->freq < n ? (size_t)p->freq : lo;
    else
        start = lo;
    if (start < lo)
        return core_fail(err, CORE_ERR_INVALID, "range-start",
                         "%s needs %zu weeks of history before the first week it evaluates",
                         surveil_method_name(p->method), lo);
    if (start >= n)
        return core_fail(err, CORE_ERR_INVALID, "counts", "the series has %zu weeks; %s needs more than %zu", n,
                         surveil_method_name(p->method), start);
    *first = start;
    switch (p->method) {
    case SURVEIL_C1:
    case SURVEIL_C2:
    case SURVEIL_C3: return surveil_ears(p, counts, n, start, out, err);
    case SURVEIL_CUSUM: return surveil_cusum(p, counts, n, start, out, err);
    case SURVEIL_FARRINGTON: return surveil_farrington(p, counts, n, start, out, err);
    }
    return CORE_OK;
}
