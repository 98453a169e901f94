/* bench/surveil/sim: CareSync's outbreak detectors on simulated outbreaks,
 * after the simulation study of Noufaily et al. (2013), "An improved
 * algorithm for outbreak detection in multiple surveillance systems",
 * Statistics in Medicine 32:1206-1222. docs/SURVEILLANCE.md describes the
 * design, where it departs from the paper, and the results.
 *
 *   surveil_simulate [--reps N] [--seed S] [--threads T] [--alpha A]
 *                    [--scenario I]... [--no-scenarios]
 *
 * Per scenario and replicate: 624 weeks (12 years of 52) of negative
 * binomial counts with mean
 *   mu(t) = exp(theta + beta t + sum_{j=1..m} [g1 cos(2 pi j t/52) + g2 sin(2 pi j t/52)])
 * and variance phi mu (phi = 1: Poisson); four outbreaks in the five years
 * before the evaluation period (weeks 576..624, the last 49); then one
 * outbreak starting at a uniform week of the evaluation period, of
 * Poisson(k sd(t0)) cases, sd(t0) = sqrt(phi mu(t0)), each case in week
 * t0 + ceil(X) - 1 with X lognormal(0, 0.5). The same baseline and start
 * week serve every k in {2, 3, 5, 10} and an outbreak-free copy (for the
 * false-positive rate). Every method evaluates all 49 weeks of each series.
 *
 * Random numbers: R's own generators from libRmath (set_seed, rnbinom,
 * rpois, rlnorm), reseeded per (scenario, replicate) from --seed, so a
 * replicate's data do not depend on --reps, --threads or --scenario.
 * The data are drawn in the main thread; the detectors (which keep no
 * global state) run on --threads threads. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MATHLIB_STANDALONE 1
#include <Rmath.h>

#include "surveil/surveil.h"

#define WEEKS 624
#define FREQ 52
#define EVAL_FIRST 576 /* 1-based: the last 49 weeks are evaluated */
#define EVAL_WEEKS (WEEKS - EVAL_FIRST + 1)
#define PAST_FIRST 313 /* baseline outbreaks start in the 5 years before the evaluation */
#define PAST_OUTBREAKS 4
#define NK 4
#define NSERIES (NK + 1) /* one per k, then the outbreak-free copy */
static const double K[NK] = {2, 3, 5, 10};

typedef struct {
    double theta, beta, g1, g2;
    int m;
    double phi;
} scenario;

/* Four baseline levels (roughly 1, 4.5, 20 and 150 cases a week at t = 0;
 * dispersion growing with the level, as in surveillance data) crossed with
 * four shapes: flat; trend; annual seasonality; two harmonics plus trend.
 * Not the paper's Table (see docs/SURVEILLANCE.md): the same kinds of
 * variation over the same kinds of ranges. */
#define NLEVEL 4
#define NSHAPE 4
static const double LEVEL_THETA[NLEVEL] = {0, 1.5, 3, 5};
static const double LEVEL_PHI[NLEVEL] = {1, 1.5, 2, 4};
static const struct {
    const char *name;
    double beta, g1, g2;
    int m;
} SHAPE[NSHAPE] = {
    {"flat", 0, 0, 0, 0},
    {"trend", 0.002, 0, 0, 0},
    {"seasonal", 0, 0.4, 0.5, 1},
    {"seasonal2+trend", 0.002, 0.4, 0.5, 2},
};
#define NSCEN (NLEVEL * NSHAPE)

static scenario scen_of(int i) {
    scenario s;
    int lv = i / NSHAPE, sh = i % NSHAPE;
    s.theta = LEVEL_THETA[lv];
    s.phi = LEVEL_PHI[lv];
    s.beta = SHAPE[sh].beta;
    s.g1 = SHAPE[sh].g1;
    s.g2 = SHAPE[sh].g2;
    s.m = SHAPE[sh].m;
    return s;
}

static double mean_at(const scenario *s, int t) {
    double e = s->theta + s->beta * t;
    for (int j = 1; j <= s->m; j++) e += s->g1 * cos(2 * M_PI * j * t / FREQ) + s->g2 * sin(2 * M_PI * j * t / FREQ);
    return exp(e);
}

static double draw_count(double mu, double phi) {
    if (phi <= 1) return rpois(mu);
    return rnbinom(mu / (phi - 1), 1 / phi); /* mean mu, variance phi mu */
}

/* One outbreak of Poisson(k sd) cases from week t0 (1-based) on, added to x
 * (x[0] is week 1); cases past the last week are lost. ob (may be NULL)
 * gets the cases per week. Returns the number of cases. */
static int add_outbreak(const scenario *s, double *x, double *ob, int t0, double k) {
    double mu = mean_at(s, t0);
    int cases = (int)rpois(k * sqrt(s->phi * mu));
    for (int c = 0; c < cases; c++) {
        double d;
        do d = rlnorm(0, 0.5);
        while (d > 20); /* lognormDiscrete(Dmax = 20) */
        int t = t0 + (int)ceil(d) - 1;
        if (t <= WEEKS) {
            x[t - 1] += 1;
            if (ob) ob[t - 1] += 1;
        }
    }
    return cases;
}

/* ---- methods ---- */
enum { M_C1, M_C2, M_C3, M_CUSUM, M_FARR_DEFAULT, M_FARR_1996, M_NOUF_NB, M_NOUF_MUAN, NMETHOD };
static const char *const METHOD_NAME[NMETHOD] = {"EARS C1",
                                                 "EARS C2",
                                                 "EARS C3",
                                                 "CUSUM",
                                                 "Farrington, CareSync default",
                                                 "Farrington 1996",
                                                 "Noufaily (nbPlugin)",
                                                 "Noufaily (muan)"};
static const char *const METHOD_SHORT[NMETHOD] = {"C1", "C2", "C3", "CUSUM", "F-dflt", "F-1996", "N-nb", "N-muan"};
static surveil_params PARAMS[NMETHOD];

static void set(surveil_params *p, const char *k, const char *v) {
    core_error err = {0};
    if (surveil_params_set(p, k, v, &err) != CORE_OK) {
        fprintf(stderr, "surveil_simulate: %s=%s: %s\n", k, v, err.message);
        exit(2);
    }
}

static void setup_methods(const char *alpha) {
    char rs[16];
    snprintf(rs, sizeof rs, "%d", EVAL_FIRST);
    surveil_params_init(&PARAMS[M_C1], SURVEIL_C1);
    surveil_params_init(&PARAMS[M_C2], SURVEIL_C2);
    surveil_params_init(&PARAMS[M_C3], SURVEIL_C3);
    for (int i = M_C1; i <= M_C3; i++) set(&PARAMS[i], "range-start", rs);
    /* CUSUM sees the year before the evaluation and the evaluation: its m
     * is the mean of those 52 weeks (range-start 53), fixed thereafter. */
    surveil_params_init(&PARAMS[M_CUSUM], SURVEIL_CUSUM);
    set(&PARAMS[M_CUSUM], "range-start", "53");
    /* What `caresync surveil detect --method farrington` does (R's defaults). */
    surveil_params_init(&PARAMS[M_FARR_DEFAULT], SURVEIL_FARRINGTON);
    set(&PARAMS[M_FARR_DEFAULT], "range-start", rs);
    /* Farrington et al. 1996 */
    surveil_params *f = &PARAMS[M_FARR_1996];
    surveil_params_init(f, SURVEIL_FARRINGTON);
    set(f, "range-start", rs);
    set(f, "b", "5"), set(f, "w", "3"), set(f, "no-periods", "1"), set(f, "past-weeks", "3");
    set(f, "reweight", "true"), set(f, "weights-threshold", "1"), set(f, "p-trend", "0.05");
    set(f, "threshold", "delta"), set(f, "powertrans", "2/3"), set(f, "alpha", alpha);
    /* Noufaily et al. 2013 */
    for (int i = M_NOUF_NB; i <= M_NOUF_MUAN; i++) {
        f = &PARAMS[i];
        surveil_params_init(f, SURVEIL_FARRINGTON);
        set(f, "range-start", rs);
        set(f, "b", "5"), set(f, "w", "3"), set(f, "no-periods", "10"), set(f, "past-weeks", "26");
        set(f, "reweight", "true"), set(f, "weights-threshold", "2.58"), set(f, "p-trend", "1");
        set(f, "threshold", i == M_NOUF_NB ? "nbPlugin" : "muan"), set(f, "alpha", alpha);
    }
}

/* ---- one replicate ---- */
typedef struct {
    double x[NSERIES][WEEKS];
    double ob[NK][WEEKS]; /* current outbreak cases per week */
    uint8_t past[WEEKS];  /* week holds cases of a baseline outbreak */
    int t0;               /* 1-based start of the current outbreak */
    int cases[NK];
} replicate;

typedef struct {
    /* false positives: outbreak-free copy */
    long fp, fp_weeks, undefined;
    /* false positives in the outbreak series, outbreak weeks left out */
    long fpo, fpo_weeks;
    /* per k */
    long outbreaks[NK], detected[NK], first_week[NK], delay_sum[NK], alarm_weeks[NK], ob_weeks[NK];
} tally;

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void simulate(const scenario *s, unsigned seed, int si, int r, replicate *rep) {
    uint64_t st = ((uint64_t)seed << 32) ^ ((uint64_t)si << 20) ^ (uint64_t)r;
    unsigned a = (unsigned)splitmix(&st) | 1u, b = (unsigned)splitmix(&st) | 1u;
    set_seed(a, b);
    double base[WEEKS];
    for (int t = 1; t <= WEEKS; t++) base[t - 1] = draw_count(mean_at(s, t), s->phi);
    double pastob[WEEKS] = {0};
    for (int i = 0; i < PAST_OUTBREAKS; i++) {
        int t0 = PAST_FIRST + (int)floor(unif_rand() * (EVAL_FIRST - PAST_FIRST));
        double k = 2 + floor(unif_rand() * 9); /* 2..10 */
        add_outbreak(s, base, pastob, t0, k);
    }
    for (int t = 0; t < WEEKS; t++) rep->past[t] = pastob[t] > 0;
    rep->t0 = EVAL_FIRST + (int)floor(unif_rand() * EVAL_WEEKS);
    for (int j = 0; j < NK; j++) {
        memcpy(rep->x[j], base, sizeof base);
        memset(rep->ob[j], 0, sizeof rep->ob[j]);
        rep->cases[j] = add_outbreak(s, rep->x[j], rep->ob[j], rep->t0, K[j]);
    }
    memcpy(rep->x[NK], base, sizeof base);
}

/* alarms[w] for the evaluation weeks w = 0..48 (week EVAL_FIRST + w): 1, 0, -1 */
static void detect(int method, const double *x, int8_t *alarms, surveil_point *out) {
    const surveil_params *p = &PARAMS[method];
    const double *xs = x;
    size_t n = WEEKS, first;
    core_error err = {0};
    if (method == M_CUSUM) {
        xs = x + (EVAL_FIRST - 1 - FREQ);
        n = WEEKS - (EVAL_FIRST - 1 - FREQ);
    }
    if (surveil_detect(p, xs, n, &first, out, &err) != CORE_OK) {
        fprintf(stderr, "surveil_simulate: %s: %s\n", METHOD_NAME[method], err.message);
        exit(1);
    }
    for (int w = 0; w < EVAL_WEEKS; w++) alarms[w] = out[w].alarm;
}

static void score(const replicate *rep, int method, tally *tl, surveil_point *out) {
    int8_t al[EVAL_WEEKS];
    detect(method, rep->x[NK], al, out);
    for (int w = 0; w < EVAL_WEEKS; w++) {
        if (rep->past[EVAL_FIRST - 1 + w]) continue; /* a baseline outbreak spilling over */
        tl->fp_weeks++;
        tl->fp += al[w] == 1;
        tl->undefined += al[w] < 0;
    }
    for (int j = 0; j < NK; j++) {
        detect(method, rep->x[j], al, out);
        /* outbreak weeks: those holding cases of the current outbreak */
        int firstalarm = 0, weeks = 0;
        for (int w = 0; w < EVAL_WEEKS; w++) {
            int t = EVAL_FIRST + w, a = al[w] == 1;
            if (rep->ob[j][t - 1] > 0) {
                weeks++;
                tl->alarm_weeks[j] += a;
                if (a && !firstalarm) firstalarm = t;
            } else if (!rep->past[t - 1]) {
                tl->fpo_weeks++;
                tl->fpo += a;
            }
        }
        if (!weeks) continue; /* no case fell in the series: nothing to detect */
        tl->outbreaks[j]++;
        tl->ob_weeks[j] += weeks;
        if (firstalarm) {
            tl->detected[j]++;
            tl->delay_sum[j] += firstalarm - rep->t0;
            tl->first_week[j] += firstalarm == rep->t0;
        }
    }
}

static void tally_add(tally *a, const tally *b) {
    a->fp += b->fp, a->fp_weeks += b->fp_weeks, a->undefined += b->undefined;
    a->fpo += b->fpo, a->fpo_weeks += b->fpo_weeks;
    for (int j = 0; j < NK; j++) {
        a->outbreaks[j] += b->outbreaks[j], a->detected[j] += b->detected[j];
        a->first_week[j] += b->first_week[j], a->delay_sum[j] += b->delay_sum[j];
        a->alarm_weeks[j] += b->alarm_weeks[j], a->ob_weeks[j] += b->ob_weeks[j];
    }
}

/* ---- the run: one scenario at a time, its replicates as jobs over threads ---- */
typedef struct {
    int reps, cur;        /* replicates; the scenario (index into the run's list) */
    replicate *reps_data; /* reps of them */
    tally *results;       /* [scenario][method], summed under lock */
    int next;
    pthread_mutex_t lock;
} job;

static void *worker(void *arg) {
    job *jb = arg;
    surveil_point *out = malloc(WEEKS * sizeof *out);
    if (!out) {
        fprintf(stderr, "surveil_simulate: out of memory\n");
        exit(1);
    }
    for (;;) {
        pthread_mutex_lock(&jb->lock);
        int i = jb->next++;
        pthread_mutex_unlock(&jb->lock);
        if (i >= jb->reps) break;
        int si = jb->cur;
        tally t[NMETHOD];
        memset(t, 0, sizeof t);
        for (int m = 0; m < NMETHOD; m++) score(&jb->reps_data[i], m, &t[m], out);
        pthread_mutex_lock(&jb->lock);
        for (int m = 0; m < NMETHOD; m++) tally_add(&jb->results[si * NMETHOD + m], &t[m]);
        pthread_mutex_unlock(&jb->lock);
    }
    free(out);
    return NULL;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double ratio(long a, long b) { return b ? (double)a / (double)b : NAN; }

static void pct(double v) {
    if (isnan(v))
        printf(" – |");
    else
        printf(" %.1f |", 100 * v);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: surveil_simulate [--reps N] [--seed S] [--threads T] [--alpha A]\n"
            "                        [--scenario I]... [--no-scenarios]\n"
            "  --reps N       replicates per scenario (200)\n"
            "  --seed S       seed of R's generator (2013)\n"
            "  --threads T    detector threads (2)\n"
            "  --alpha A      alpha of the Farrington 1996 and Noufaily configurations (0.005)\n"
            "  --scenario I   run scenario I (1..%d) only; repeatable\n"
            "  --no-scenarios omit the per-scenario tables\n"
            "  --dump I:R     print scenario I's replicate R (1-based) as CSV and exit:\n"
            "                 week, the series with the outbreak of each k, the outbreak-free\n"
            "                 series, the outbreak's own cases for each k, and\n"
            "                 whether a baseline outbreak has cases in the week\n",
            NSCEN);
}

int main(int argc, char **argv) {
    int reps = 200, threads = 2, per_scen = 1;
    unsigned seed = 2013;
    const char *alpha = "0.005";
    int scen[NSCEN], nscen = 0, dump_s = 0, dump_r = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--no-scenarios")) {
            per_scen = 0;
        } else if (v && !strcmp(a, "--reps")) {
            reps = atoi(v), i++;
        } else if (v && !strcmp(a, "--seed")) {
            seed = (unsigned)strtoul(v, NULL, 10), i++;
        } else if (v && !strcmp(a, "--threads")) {
            threads = atoi(v), i++;
        } else if (v && !strcmp(a, "--alpha")) {
            alpha = v, i++;
        } else if (v && !strcmp(a, "--dump")) {
            i++;
            if (sscanf(v, "%d:%d", &dump_s, &dump_r) != 2 || dump_s < 1 || dump_s > NSCEN || dump_r < 1) {
                fprintf(stderr, "surveil_simulate: --dump SCENARIO:REPLICATE, scenario 1..%d\n", NSCEN);
                return 2;
            }
        } else if (v && !strcmp(a, "--scenario")) {
            int s = atoi(v);
            i++;
            if (s < 1 || s > NSCEN || nscen == NSCEN) {
                fprintf(stderr, "surveil_simulate: scenario must be 1..%d\n", NSCEN);
                return 2;
            }
            scen[nscen++] = s - 1;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (reps < 1 || reps > 100000 || threads < 1 || threads > 64) {
        usage(stderr);
        return 2;
    }
    if (dump_s) {
        static replicate rp;
        scenario sc = scen_of(dump_s - 1);
        simulate(&sc, seed, dump_s - 1, dump_r - 1, &rp);
        printf("week,k2,k3,k5,k10,none,ob2,ob3,ob5,ob10,past\n");
        for (int t = 0; t < WEEKS; t++) {
            printf("%d", t + 1);
            for (int j = 0; j < NSERIES; j++) printf(",%.0f", rp.x[j][t]);
            for (int j = 0; j < NK; j++) printf(",%.0f", rp.ob[j][t]);
            printf(",%d\n", rp.past[t]);
        }
        return 0;
    }
    if (!nscen)
        for (int s = 0; s < NSCEN; s++) scen[nscen++] = s;
    setup_methods(alpha);

    double t_start = now();
    job jb = {.reps = reps};
    jb.reps_data = malloc((size_t)reps * sizeof *jb.reps_data);
    jb.results = calloc((size_t)nscen * NMETHOD, sizeof *jb.results);
    int(*cases)[NK] = calloc((size_t)nscen, sizeof *cases);
    if (!jb.reps_data || !jb.results || !cases) {
        fprintf(stderr, "surveil_simulate: out of memory\n");
        return 1;
    }
    long zero_size[NK] = {0};
    pthread_mutex_init(&jb.lock, NULL);
    for (int s = 0; s < nscen; s++) {
        scenario sc = scen_of(scen[s]);
        for (int r = 0; r < reps; r++) { /* drawn here: R's generator is one global stream */
            replicate *rp = &jb.reps_data[r];
            simulate(&sc, seed, scen[s], r, rp);
            for (int j = 0; j < NK; j++) cases[s][j] += rp->cases[j], zero_size[j] += rp->cases[j] == 0;
        }
        jb.cur = s;
        jb.next = 0;
        pthread_t th[64];
        for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, worker, &jb);
        for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
        fprintf(stderr, "\rscenario %d of %d done, %.0f s", s + 1, nscen, now() - t_start);
    }
    fprintf(stderr, "\n");
    double elapsed = now() - t_start;

    printf("# CareSync detectors on simulated outbreaks (after Noufaily et al. 2013)\n\n");
    printf("%d scenarios x %d replicates, seed %u, Farrington/Noufaily alpha %s; %d weeks, evaluation weeks %d-%d; "
           "%.0f s on %d threads.\n\n",
           nscen, reps, seed, alpha, WEEKS, EVAL_FIRST, WEEKS, elapsed, threads);

    /* overall: averaged over scenarios (each scenario weighs the same) */
    printf("## All scenarios\n\n");
    printf("FPR: %% of the 49 evaluation weeks of the outbreak-free series with an alarm (FPR*: %% of the weeks "
           "without outbreak cases in the series with an outbreak, k pooled). POD k: %% of outbreaks of Poisson(k sd) "
           "cases with an alarm in a week holding outbreak cases. Sens: %% of outbreak weeks with an alarm (k = 5). "
           "Unweighted means over the scenarios.\n\n");
    printf("| method | FPR %% | FPR* %% | POD k=2 | POD k=3 | POD k=5 | POD k=10 | sens k=5 |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int m = 0; m < NMETHOD; m++) {
        double fpr = 0, fpro = 0, pod[NK] = {0}, sens = 0;
        for (int s = 0; s < nscen; s++) {
            const tally *t = &jb.results[s * NMETHOD + m];
            fpr += ratio(t->fp, t->fp_weeks);
            fpro += ratio(t->fpo, t->fpo_weeks);
            for (int j = 0; j < NK; j++) pod[j] += ratio(t->detected[j], t->outbreaks[j]);
            sens += ratio(t->alarm_weeks[2], t->ob_weeks[2]);
        }
        printf("| %s |", METHOD_NAME[m]);
        pct(fpr / nscen), pct(fpro / nscen);
        for (int j = 0; j < NK; j++) pct(pod[j] / nscen);
        pct(sens / nscen);
        printf("\n");
    }
    printf("\nTimeliness: wk1 = %% of outbreaks with an alarm in their start week (when that week holds outbreak "
           "cases); delay = mean weeks from the start week to the first alarm in an outbreak week, over the detected "
           "outbreaks (0 = detected in the start week). Pooled over scenarios.\n\n");
    printf("| method |");
    for (int j = 0; j < NK; j++) printf(" wk1 k=%g |", K[j]);
    for (int j = 0; j < NK; j++) printf(" delay k=%g |", K[j]);
    printf("\n|---|");
    for (int j = 0; j < 2 * NK; j++) printf("---:|");
    printf("\n");
    for (int m = 0; m < NMETHOD; m++) {
        tally all;
        memset(&all, 0, sizeof all);
        for (int s = 0; s < nscen; s++) tally_add(&all, &jb.results[s * NMETHOD + m]);
        printf("| %s |", METHOD_NAME[m]);
        for (int j = 0; j < NK; j++) pct(ratio(all.first_week[j], all.outbreaks[j]));
        for (int j = 0; j < NK; j++) printf(" %.2f |", ratio(all.delay_sum[j], all.detected[j]));
        printf("\n");
    }

    if (per_scen) {
        printf("\n## Per scenario\n\n");
        printf("Scenario parameters: theta, beta, (g1, g2) x m harmonics, phi; mean0 = weekly mean at t = 0 "
               "without seasonality; size = mean cases per outbreak at k = 3 and 5. Cells: FPR %% / POD %% at k = 3 / "
               "POD %% at k = 5.\n\n");
        printf("| # | theta | beta | g1,g2 x m | phi | mean0 | size k=3/5 |");
        for (int m = 0; m < NMETHOD; m++) printf(" %s |", METHOD_SHORT[m]);
        printf("\n|---:|---:|---:|---|---:|---:|---:|");
        for (int m = 0; m < NMETHOD; m++) printf("---|");
        printf("\n");
        for (int s = 0; s < nscen; s++) {
            scenario sc = scen_of(scen[s]);
            printf("| %d | %g | %g | %g,%g x %d | %g | %.1f | %.1f / %.1f |", scen[s] + 1, sc.theta, sc.beta, sc.g1,
                   sc.g2, sc.m, sc.phi, exp(sc.theta), (double)cases[s][1] / reps, (double)cases[s][2] / reps);
            for (int m = 0; m < NMETHOD; m++) {
                const tally *t = &jb.results[s * NMETHOD + m];
                printf(" %.1f / %.0f / %.0f |", 100 * ratio(t->fp, t->fp_weeks),
                       100 * ratio(t->detected[1], t->outbreaks[1]), 100 * ratio(t->detected[2], t->outbreaks[2]));
            }
            printf("\n");
        }
        printf("\nTimeliness per scenario: mean delay in weeks (detected outbreaks, k = 5).\n\n");
        printf("| # |");
        for (int m = 0; m < NMETHOD; m++) printf(" %s |", METHOD_SHORT[m]);
        printf("\n|---:|");
        for (int m = 0; m < NMETHOD; m++) printf("---:|");
        printf("\n");
        for (int s = 0; s < nscen; s++) {
            printf("| %d |", scen[s] + 1);
            for (int m = 0; m < NMETHOD; m++) {
                const tally *t = &jb.results[s * NMETHOD + m];
                printf(" %.2f |", ratio(t->delay_sum[2], t->detected[2]));
            }
            printf("\n");
        }
    }
    long undefined = 0;
    for (int i = 0; i < nscen * NMETHOD; i++) undefined += jb.results[i].undefined;
    printf("\nOutbreaks with no case in the series (left out of POD):");
    for (int j = 0; j < NK; j++) printf(" k=%g: %ld of %d;", K[j], zero_size[j], nscen * reps);
    printf(" weeks without a defined alarm (fit failed, counted as no alarm): %ld.\n", undefined);
    free(jb.reps_data);
    free(jb.results);
    free(cases);
    pthread_mutex_destroy(&jb.lock);
    return 0;
}
