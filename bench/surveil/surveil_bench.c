/* bench/surveil — CareSync's outbreak detectors next to R's `surveillance`
 * on the same series (time, and whether the alarms are the same), and the
 * cost of building and releasing a protected aggregate.
 *
 * Usage, from the repository root (`make bench` runs it so):
 *   build-bench/surveil_bench [--out DIR] [--series N] [--r-script PATH | --no-r]
 *                             [--r-stride S] [--r-farrington F] [--r-chunk C]
 *                             [--contributions M] [--no-aggregate]
 *
 * Part 1, detectors. N (10,000) series of 260 weeks (5 years of 52) are drawn
 * with R's own generator (libRmath, seeded, so every run has the same
 * series): negative binomial around a seasonal mean whose level lies between
 * 0.5 and 50 cases a week, with a mild trend, and in one series in five an
 * outbreak in the last year. They go to DIR/series.csv (a week column, then
 * one column per series, the layout `caresync surveil detect` reads, though
 * its reader stops at 4,096 columns), where R reads the very same numbers.
 *
 * Timed here: for each configuration below, surveil_detect over all N series
 * in one thread — the wall clock (CLOCK_MONOTONIC) holds nothing but the
 * calls (series in memory, results into a preallocated array). Fast
 * configurations are timed again until a second has gone by, and the fastest
 * pass counts. Each configuration's results are written to
 * DIR/c_<config>.ub (upper bounds, float64) and .alarm (int32, R's NA_integer_
 * INT_MIN for NA), series after series, the weeks each series evaluated.
 *
 * Then bench/surveil/r_side.R runs the same configurations in R on every S-th
 * series (S = 1: all of them) and, Farrington being slow in R, on F (50)
 * series spread over the set; it times only the detector calls and writes its
 * results in the same layout (r_<config>.*, with the series it ran). This
 * program compares every point R evaluated: alarms identical (NA included),
 * upper bounds equal to 1e-6 relative (test_surveil's criterion), and prints
 * one table. Where R ran a subset, its time for all N series is extrapolated
 * from its time per series, and marked so.
 *
 * Part 2, aggregates. A temporary store receives M (10 million)
 * contributions as counts per (state, ISO week, condition, age band, source):
 * 51 regions x 52 weeks x 10 conditions x 7 age bands x 3 sources, the counts
 * following population, season and age mix and summing to exactly M. Timed:
 * loading them (surveil_add_counts, one transaction), then for epsilon 0
 * (exact counts) and 1 (two-sided geometric noise), each the best of three:
 * surveil_release_build (read the counts, build 52 weekly grids, noise, small
 * cell suppression with k = 11 and its audit), surveil_release_json,
 * json_dumps (the body the API sends) and surveil_release_csv. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MATHLIB_STANDALONE 1
#include <Rmath.h>

#include "crypto/crypto.h"
#include "store/store.h"
#include "surveil/surveil.h"

#define WEEKS 260 /* 5 years of 52 weeks */

/* What is compared with R: each row runs as `caresync surveil detect
 * --method <method> --<key> <value> ...` would, and r_side.R runs the R call
 * of the same name (see there). */
typedef struct {
    const char *name;
    surveil_method method;
    const char *params; /* key=value;... */
    int farrington;     /* R runs it on the Farrington subset */
} config;

static const config configs[] = {
    {"c1", SURVEIL_C1, "", 0},
    {"c2", SURVEIL_C2, "", 0},
    {"c3", SURVEIL_C3, "", 0},
    {"cusum", SURVEIL_CUSUM, "range-start=53", 0},
    {"farrington", SURVEIL_FARRINGTON, "b=4", 1},
    {"noufaily", SURVEIL_FARRINGTON, "b=4;no-periods=10;past-weeks=26;weights-threshold=2.58;threshold=nbPlugin", 1},
};
#define NCONFIGS (sizeof configs / sizeof *configs)

typedef struct {
    /* C */
    double c_seconds; /* fastest pass over all series */
    int passes;
    size_t first;       /* 0-based first evaluated week */
    size_t alarms, nas; /* over all series */
    /* R */
    int r_ran;
    size_t r_series;
    double r_seconds;
    int r_first; /* 1-based, as R reports it */
    /* comparison */
    size_t points, alarm_diff, ub_diff;
    double worst_rel;
} result;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, const core_error *e) {
    fprintf(stderr, "surveil_bench: %s: %s\n", what, e ? e->message : strerror(errno));
    exit(1);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory", NULL);
    return p;
}

/* ---------------------------------------------------------------- series */

/* N series of WEEKS weeks, counts[s * WEEKS + t]. */
static double *make_series(size_t n_series) {
    double *x = xmalloc(n_series * WEEKS * sizeof *x);
    set_seed(20261201u, 362436069u);
    for (size_t s = 0; s < n_series; s++) {
        double level = exp(log(0.5) + unif_rand() * (log(50) - log(0.5))); /* log-uniform 0.5 .. 50 */
        double amp = 0.8 * unif_rand(), peak = 52 * unif_rand();           /* seasonal amplitude, peak week */
        double trend = 0.1 * (unif_rand() - 0.5);                          /* -5 % .. +5 % a year */
        double size = 2 + 48 * unif_rand();                                /* NB size: var = mu + mu^2/size */
        int ob_start = -1, ob_len = 0;
        double ob_k = 0;
        if (unif_rand() < 0.2) { /* an outbreak of 1-4 weeks in the last year, 2-6 sd strong */
            ob_start = 208 + (int)(48 * unif_rand());
            ob_len = 1 + (int)(4 * unif_rand());
            ob_k = 2 + 4 * unif_rand();
        }
        for (int t = 0; t < WEEKS; t++) {
            double mu = level * exp(amp * cos(2 * M_PI * (t - peak) / 52) + trend * (t - 130) / 52.0);
            double v = rnbinom_mu(size, mu);
            if (t >= ob_start && t < ob_start + ob_len) v += rpois(ob_k * sqrt(mu + mu * mu / size));
            x[s * WEEKS + t] = v;
        }
    }
    return x;
}

static void write_series_csv(const char *path, const double *x, size_t n_series) {
    FILE *f = fopen(path, "w");
    if (!f) die(path, NULL);
    fputs("week", f);
    for (size_t s = 0; s < n_series; s++) fprintf(f, ",s%zu", s + 1);
    fputc('\n', f);
    for (int t = 0; t < WEEKS; t++) {
        fprintf(f, "%d", t + 1);
        for (size_t s = 0; s < n_series; s++) fprintf(f, ",%.0f", x[s * WEEKS + t]);
        fputc('\n', f);
    }
    if (fclose(f)) die(path, NULL);
}

/* ---------------------------------------------------------------- detectors */

static void config_params(const config *c, surveil_params *p) {
    core_error err;
    surveil_params_init(p, c->method);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", c->params);
    char *save = NULL;
    for (char *kv = strtok_r(buf, ";", &save); kv; kv = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) die("bad parameter list", NULL);
        *eq = 0;
        if (surveil_params_set(p, kv, eq + 1, &err)) die(kv, &err);
    }
}

static void write_file(const char *path, const void *data, size_t bytes) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, bytes, f) != bytes || fclose(f)) die(path, NULL);
}

/* The whole file; *bytes its size. NULL if it cannot be read. */
static void *read_file(const char *path, size_t *bytes) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = xmalloc(len > 0 ? (size_t)len : 1);
    if (len < 0 || fread(p, 1, (size_t)len, f) != (size_t)len) {
        fclose(f);
        free(p);
        return NULL;
    }
    fclose(f);
    *bytes = (size_t)len;
    return p;
}

/* Time one configuration over all series; write its results. */
static void run_c(const config *c, const double *x, size_t n_series, surveil_point *out, const char *dir, result *res) {
    surveil_params p;
    config_params(c, &p);
    core_error err;
    double best = INFINITY, spent = 0;
    int passes = 0;
    size_t first = 0;
    do {
        double t0 = now();
        for (size_t s = 0; s < n_series; s++)
            if (surveil_detect(&p, x + s * WEEKS, WEEKS, &first, out + s * WEEKS, &err)) die(c->name, &err);
        double dt = now() - t0;
        if (dt < best) best = dt;
        spent += dt;
        passes++;
    } while (spent < 1.0);
    res->c_seconds = best;
    res->passes = passes;
    res->first = first;

    size_t m = WEEKS - first, total = n_series * m;
    double *ub = xmalloc(total * sizeof *ub);
    int32_t *al = xmalloc(total * sizeof *al);
    for (size_t s = 0; s < n_series; s++)
        for (size_t i = 0; i < m; i++) {
            const surveil_point *pt = &out[s * WEEKS + i];
            ub[s * m + i] = pt->upperbound;
            al[s * m + i] = pt->alarm < 0 ? INT32_MIN : pt->alarm;
            res->alarms += pt->alarm == 1;
            res->nas += pt->alarm < 0;
        }
    char path[4096];
    snprintf(path, sizeof path, "%s/c_%s.ub", dir, c->name);
    write_file(path, ub, total * sizeof *ub);
    snprintf(path, sizeof path, "%s/c_%s.alarm", dir, c->name);
    write_file(path, al, total * sizeof *al);
    free(ub);
    free(al);
}

/* ---------------------------------------------------------------- R */

/* r_times.csv: config,series,seconds,first (first evaluated week, 1-based). */
static void read_r_times(const char *dir, result *res) {
    char path[4096], line[256];
    snprintf(path, sizeof path, "%s/r_times.csv", dir);
    FILE *f = fopen(path, "r");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        char name[64];
        size_t series;
        double sec;
        int first;
        if (sscanf(line, "%63[^,],%zu,%lf,%d", name, &series, &sec, &first) != 4) continue;
        for (size_t k = 0; k < NCONFIGS; k++)
            if (!strcmp(name, configs[k].name)) {
                res[k].r_ran = 1;
                res[k].r_series = series;
                res[k].r_seconds = sec;
                res[k].r_first = first;
            }
    }
    fclose(f);
}

/* Compare every point R evaluated with ours; print the first mismatches. */
static void compare(const config *c, const char *dir, const double *x, size_t n_series, result *res) {
    char path[4096];
    size_t b_cub, b_cal, b_rub, b_ral, b_ids;
    snprintf(path, sizeof path, "%s/c_%s.ub", dir, c->name);
    double *cub = read_file(path, &b_cub);
    snprintf(path, sizeof path, "%s/c_%s.alarm", dir, c->name);
    int32_t *cal = read_file(path, &b_cal);
    snprintf(path, sizeof path, "%s/r_%s.ub", dir, c->name);
    double *rub = read_file(path, &b_rub);
    snprintf(path, sizeof path, "%s/r_%s.alarm", dir, c->name);
    int32_t *ral = read_file(path, &b_ral);
    snprintf(path, sizeof path, "%s/r_%s.series", dir, c->name);
    int32_t *ids = read_file(path, &b_ids);
    size_t m = WEEKS - res->first, k = res->r_series;
    if (!cub || !cal || !rub || !ral || !ids || b_ids != k * sizeof *ids || b_rub != k * m * sizeof *rub ||
        b_ral != k * m * sizeof *ral || res->r_first != (int)res->first + 1) {
        printf("  %-10s R's results do not line up with ours (first week R %d, C %zu; %zu series): not compared\n",
               c->name, res->r_first, res->first + 1, k);
        res->r_ran = 0;
    } else {
        int shown = 0;
        for (size_t j = 0; j < k; j++) {
            size_t s = (size_t)ids[j] - 1;
            if (s >= n_series) die("r_side.R returned a series out of range", NULL);
            for (size_t i = 0; i < m; i++) {
                double a = cub[s * m + i], b = rub[j * m + i];
                int32_t aa = cal[s * m + i], ba = ral[j * m + i];
                /* test_surveil's rule: both NA, or |ours - R| <= 1e-6 |R| */
                double rel = 0;
                int ub_ok = (isnan(a) && isnan(b)) || a == b;
                if (!ub_ok && !isnan(a) && !isnan(b)) {
                    rel = fabs(a - b) / (fabs(b) > 0 ? fabs(b) : 1);
                    ub_ok = rel <= 1e-6;
                }
                if (!isnan(rel) && rel > res->worst_rel) res->worst_rel = rel;
                res->points++;
                res->alarm_diff += aa != ba;
                res->ub_diff += !ub_ok;
                if ((aa != ba || !ub_ok) && shown++ < 5)
                    printf("  MISMATCH %s: series s%zu (column %zu of series.csv), week %zu: count %.0f, "
                           "C upperbound %.17g alarm %s, R upperbound %.17g alarm %s\n",
                           c->name, s + 1, s + 2, res->first + i + 1, x[s * WEEKS + res->first + i], a,
                           aa == INT32_MIN ? "NA"
                           : aa            ? "1"
                                           : "0",
                           b,
                           ba == INT32_MIN ? "NA"
                           : ba            ? "1"
                                           : "0");
            }
        }
    }
    free(cub);
    free(cal);
    free(rub);
    free(ral);
    free(ids);
}

/* ---------------------------------------------------------------- aggregates */

/* The demo data's model of the US (states and their populations, each
 * condition's share and season), from surveil/demo.c. */
static const char *const conditions[] = {"fungal",    "bacterial",    "viral",       "parasitic", "eczema",
                                         "psoriasis", "acne_rosacea", "benign_mole", "melanoma",  "other"};
#define NCOND (sizeof conditions / sizeof *conditions)
#define AGG_WEEKS 52

static const double age_mix[SURVEIL_AGE_BANDS] = {0.05, 0.10, 0.19, 0.34, 0.19, 0.10, 0.03};
static const double source_mix[SURVEIL_SOURCES] = {0.60, 0.30, 0.10};

static const double *frac_key;
static int by_fraction_desc(const void *a, const void *b) {
    double x = frac_key[*(const size_t *)a], y = frac_key[*(const size_t *)b];
    return x < y   ? 1
           : x > y ? -1
                   : (*(const size_t *)a > *(const size_t *)b) - (*(const size_t *)a < *(const size_t *)b);
}

static void aggregates(const char *dir, int64_t total) {
    core_error err;
    if (cs_crypto_init(&err)) die("crypto", &err);
    char path[4096], side[4200];
    snprintf(path, sizeof path, "%s/aggregate.db", dir);
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path), unlink(side);
    snprintf(side, sizeof side, "%s-shm", path), unlink(side);
    store *st;
    if (store_open(path, 2, &st, &err)) die("store_open", &err);

    /* Contributions: expected share of each (state, week, condition, band,
     * source), rounded to integers that sum to `total` (largest remainder). */
    int week0 = surveil_week_of_date(2025, 12, 1); /* 2025-W49 .. 2026-W48 */
    const size_t nstates = surveil_demo_regions();
    size_t n = nstates * AGG_WEEKS * NCOND * SURVEIL_AGE_BANDS * SURVEIL_SOURCES;
    surveil_contribution *c = xmalloc(n * sizeof *c);
    int64_t *count = xmalloc(n * sizeof *count);
    double *w = xmalloc(n * sizeof *w), wsum = 0;
    size_t i = 0;
    for (size_t s = 0; s < nstates; s++)
        for (int wk = 0; wk < AGG_WEEKS; wk++)
            for (size_t j = 0; j < NCOND; j++) {
                int pop;
                const char *region = surveil_demo_region(s, &pop);
                double share, amp, peak;
                surveil_demo_condition_profile(conditions[j], &share, &amp, &peak);
                for (int band = 0; band < SURVEIL_AGE_BANDS; band++)
                    for (int src = 0; src < SURVEIL_SOURCES; src++, i++) {
                        memset(&c[i], 0, sizeof c[i]);
                        snprintf(c[i].condition, sizeof c[i].condition, "%s", conditions[j]);
                        snprintf(c[i].region, sizeof c[i].region, "%s", region);
                        c[i].week = week0 + wk;
                        c[i].age_band = band;
                        c[i].source = (surveil_source)src;
                        /* week 49 of the year first: wk 0 is the year's week 49 */
                        double woy = (double)((wk + 48) % 52 + 1);
                        w[i] = pop * share * (1 + amp * cos(2 * M_PI * (woy - peak) / 52)) * age_mix[band] *
                               source_mix[src];
                        wsum += w[i];
                    }
            }
    int64_t assigned = 0;
    size_t *order = xmalloc(n * sizeof *order);
    for (i = 0; i < n; i++) {
        double e = (double)total * w[i] / wsum;
        count[i] = (int64_t)floor(e);
        w[i] = e - floor(e); /* now the fractional part */
        assigned += count[i];
        order[i] = i;
    }
    frac_key = w;
    qsort(order, n, sizeof *order, by_fraction_desc);
    for (i = 0; assigned < total; i++, assigned++) count[order[i % n]]++;
    size_t rows = 0;
    int64_t check = 0;
    for (i = 0; i < n; i++) rows += count[i] > 0, check += count[i];

    double t0 = now();
    if (surveil_add_counts(st, c, count, n, true, &err)) die("surveil_add_counts", &err);
    double t_load = now() - t0;
    printf("\n== Aggregates: %lld contributions as %zu count rows (%zu regions x %d weeks x %zu conditions x %d age "
           "bands x %d sources, rows with a count) ==\n",
           (long long)check, rows, nstates, AGG_WEEKS, NCOND, SURVEIL_AGE_BANDS, SURVEIL_SOURCES);
    printf("load (surveil_add_counts, one transaction): %.2f s (%.0f rows/s)\n", t_load, (double)rows / t_load);

    const char *const *codes = conditions;
    const char **row_codes = xmalloc(nstates * sizeof *row_codes);
    for (size_t s = 0; s < nstates; s++) row_codes[s] = surveil_demo_region(s, &(int){0});
    printf("%-10s %10s %10s %10s %10s %10s   %s\n", "epsilon", "build", "json", "dumps", "csv", "total",
           "cells published / suppressed, JSON and CSV bytes");
    for (int e = 0; e <= 1; e++) {
        surveil_query q = {.country = "US",
                           .week_from = week0,
                           .week_to = week0 + AGG_WEEKS - 1,
                           .conditions = codes,
                           .n_conditions = NCOND,
                           .k = 11,
                           .base_k = 11,
                           .epsilon = e,
                           .sealed_through = week0 + AGG_WEEKS - 1,
                           .regions = row_codes,
                           .n_regions = nstates};
        double best[4] = {INFINITY, INFINITY, INFINITY, INFINITY};
        size_t published = 0, json_bytes = 0, csv_bytes = 0;
        for (int rep = 0; rep < 3; rep++) {
            surveil_release *r;
            double a = now();
            if (surveil_release_build(st, &q, NULL, &r, &err)) die("surveil_release_build", &err);
            double b = now();
            json_t *j = surveil_release_json(r);
            double cc = now();
            char *body = json_dumps(j, JSON_COMPACT);
            double d = now();
            char *csv = surveil_release_csv(j);
            double f = now();
            if (!j || !body || !csv) die("release: JSON or CSV failed", NULL);
            double t[4] = {b - a, cc - b, d - cc, f - d};
            for (int k = 0; k < 4; k++) best[k] = t[k] < best[k] ? t[k] : best[k];
            published = surveil_release_cells(r);
            json_bytes = strlen(body);
            csv_bytes = strlen(csv);
            free(csv);
            free(body);
            json_decref(j);
            surveil_release_free(r);
        }
        size_t cells = (size_t)AGG_WEEKS * (nstates + 1) * (NCOND + 1);
        printf("%-10d %8.1fms %8.1fms %8.1fms %8.1fms %8.1fms   %zu / %zu of %zu, %zu B, %zu B\n", e, best[0] * 1e3,
               best[1] * 1e3, best[2] * 1e3, best[3] * 1e3, (best[0] + best[1] + best[2] + best[3]) * 1e3, published,
               cells - published, cells, json_bytes, csv_bytes);
    }
    printf("(country US, %d weeks, %zu conditions, k = 11; each figure the best of 3 runs; epsilon 1 draws its "
           "noise from the system CSPRNG as in production)\n",
           AGG_WEEKS, NCOND);
    store_close(st);
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path), unlink(side);
    snprintf(side, sizeof side, "%s-shm", path), unlink(side);
    free(order);
    free(w);
    free(count);
    free(row_codes);
    free(c);
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv) {
    const char *dir = "/tmp/surveil_bench", *script = "bench/surveil/r_side.R";
    size_t n_series = 10000, r_stride = 1, r_farrington = 50, r_chunk = 100;
    long long contributions = 10000000;
    int run_r = 1, run_agg = 1;
    for (int a = 1; a < argc; a++) {
        const char *o = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (!strcmp(o, "--no-r"))
            run_r = 0;
        else if (!strcmp(o, "--no-aggregate"))
            run_agg = 0;
        else if (v && !strcmp(o, "--out"))
            dir = v, a++;
        else if (v && !strcmp(o, "--r-script"))
            script = v, a++;
        else if (v && !strcmp(o, "--series"))
            n_series = strtoul(v, NULL, 10), a++;
        else if (v && !strcmp(o, "--r-stride"))
            r_stride = strtoul(v, NULL, 10), a++;
        else if (v && !strcmp(o, "--r-farrington"))
            r_farrington = strtoul(v, NULL, 10), a++;
        else if (v && !strcmp(o, "--r-chunk"))
            r_chunk = strtoul(v, NULL, 10), a++;
        else if (v && !strcmp(o, "--contributions"))
            contributions = strtoll(v, NULL, 10), a++;
        else {
            fprintf(stderr,
                    "usage: surveil_bench [--out DIR] [--series N] [--r-script PATH | --no-r] [--r-stride S]\n"
                    "                     [--r-farrington F] [--r-chunk C] [--contributions M] [--no-aggregate]\n");
            return 2;
        }
    }
    if (n_series < 1 || r_stride < 1 || r_farrington < 1 || r_chunk < 1 || contributions < 1) {
        fprintf(stderr, "surveil_bench: counts must be positive\n");
        return 2;
    }
    if (strchr(dir, '\'') || strchr(script, '\'')) {
        fprintf(stderr, "surveil_bench: paths with a single quote are not supported\n");
        return 2;
    }
    if (mkdir(dir, 0755) && errno != EEXIST) die(dir, NULL);

    /* Part 1: series, C timings */
    double *x = make_series(n_series);
    char path[4096];
    snprintf(path, sizeof path, "%s/series.csv", dir);
    write_series_csv(path, x, n_series);
    printf("== Detectors: %zu series x %d weeks (%s) ==\n", n_series, WEEKS, path);
    surveil_point *out = xmalloc(n_series * WEEKS * sizeof *out);
    result res[NCONFIGS];
    memset(res, 0, sizeof res);
    for (size_t k = 0; k < NCONFIGS; k++) {
        run_c(&configs[k], x, n_series, out, dir, &res[k]);
        printf("C  %-10s %8.3f s (best of %d), weeks %zu-%d evaluated, %zu alarms, %zu NA  [%s]\n", configs[k].name,
               res[k].c_seconds, res[k].passes, res[k].first + 1, WEEKS, res[k].alarms, res[k].nas,
               *configs[k].params ? configs[k].params : "defaults");
        fflush(stdout);
    }
    free(out);

    /* R: the same configurations, same series */
    size_t far_stride = n_series / r_farrington ? n_series / r_farrington : 1;
    if (run_r && access(script, R_OK) != 0) {
        printf("(R comparison skipped: %s not found; run from the repository root or pass --r-script)\n", script);
        run_r = 0;
    }
    if (run_r) {
        char cmd[8800];
        snprintf(cmd, sizeof cmd, "Rscript '%s' '%s' %zu %zu %zu %zu", script, dir, r_stride, far_stride, r_farrington,
                 r_chunk);
        printf("R: %s\n", cmd);
        fflush(stdout);
        snprintf(path, sizeof path, "%s/r_times.csv", dir);
        unlink(path);
        double t0 = now();
        int rc = system(cmd);
        printf("R side took %.0f s in all (reading the series, building sts objects, runs, writing)\n", now() - t0);
        if (rc != 0)
            printf("(R comparison failed: Rscript exited with status %d; is r-cran-surveillance installed?)\n", rc);
        else
            read_r_times(dir, res);
        for (size_t k = 0; k < NCONFIGS; k++)
            if (res[k].r_ran) compare(&configs[k], dir, x, n_series, &res[k]);
    }

    /* The table */
    printf("\n%-11s %11s %10s %16s %10s %8s  %-28s %s\n", "method", "C, all", "C/series", "R/series (n)", "R, all",
           "R/C", "alarms identical (points)", "upper bounds (1e-6 rel)");
    for (size_t k = 0; k < NCONFIGS; k++) {
        result *r = &res[k];
        double c_per = r->c_seconds / (double)n_series;
        printf("%-11s %9.3f s %7.1f us", configs[k].name, r->c_seconds, c_per * 1e6);
        if (!r->r_ran) {
            printf("  %16s\n", "(R not run)");
            continue;
        }
        double r_per = r->r_seconds / (double)r->r_series;
        char rps[32], rall[32], al[48];
        snprintf(rps, sizeof rps, "%.2f ms (%zu)", r_per * 1e3, r->r_series);
        snprintf(rall, sizeof rall, "%s%.0f s", r->r_series < n_series ? "~" : "", r_per * (double)n_series);
        snprintf(al, sizeof al, "%s (%zu)", r->alarm_diff ? "NO" : "yes", r->points);
        printf(" %16s %10s %7.0fx  %-28s %zu off, worst %.1e\n", rps, rall, r_per / c_per, al, r->ub_diff,
               r->worst_rel);
        if (r->alarm_diff) printf("%-11s   %zu alarm mismatches\n", "", r->alarm_diff);
    }
    printf("(C: one thread, wall clock, all %zu series. R: detector calls only, in sts objects of %zu series; "
           "\"~\" = extrapolated to all series from the subset R ran: series 1, 1+S, 1+2S, ... with S = %zu for "
           "EARS/CUSUM and S = %zu for Farrington.)\n",
           n_series, r_chunk, r_stride, far_stride);
    fflush(stdout);
    free(x);

    /* Part 2 */
    if (run_agg) aggregates(dir, contributions);
    return 0;
}
