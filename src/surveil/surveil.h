/* surveil — outbreak surveillance: detection methods over weekly count
 * series, and (see the second half) privacy-safe regional aggregates.
 *
 * The detectors are the ones epidemiologists already trust, computed exactly
 * as the R package `surveillance` (1.20) computes them, so an analyst can check
 * any number CareSync shows against R:
 *   EARS C1, C2, C3          surveillance::earsC
 *   CUSUM                    surveillance::cusum (algo.cusum)
 *   Farrington flexible      surveillance::farringtonFlexible (Noufaily et
 *                            al. 2013), quasi-Poisson GLM refitted by IRLS
 *                            step for step as R's glm.fit does
 * tests/golden/surveil holds R's own outputs on the package's bundled data
 * sets (scripts/surveil-golden.R regenerates them); test_surveil demands the
 * same alarms and upper bounds equal to 1e-6 relative.
 *
 * A series is weekly with integer time: week t's reference weeks a year back
 * are t - freq, t - 2 freq, ... (R's sts without dates). Distribution
 * functions come from Debian's libRmath (r-mathlib), R's own. */
#ifndef CARESYNC_SURVEIL_H
#define CARESYNC_SURVEIL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/core.h"
#include "store/store.h"

typedef enum {
    SURVEIL_C1,
    SURVEIL_C2,
    SURVEIL_C3,
    SURVEIL_CUSUM,
    SURVEIL_FARRINGTON,
} surveil_method;

/* CUSUM's standardisation of the counts (algo.cusum's `trans`). */
typedef enum {
    SURVEIL_TRANS_STANDARD, /* (x - m) / sqrt(m) */
    SURVEIL_TRANS_ROSSI,
    SURVEIL_TRANS_ANSCOMBE,
    SURVEIL_TRANS_ANSCOMBE2ND,
    SURVEIL_TRANS_PEARSON_NB, /* (x - m) / sqrt(m + alpha m^2) */
    SURVEIL_TRANS_NONE,
} surveil_trans;

/* Farrington's threshold (farringtonFlexible's `thresholdMethod`). */
typedef enum {
    SURVEIL_THRESHOLD_DELTA,    /* Farrington 1996: power-transformed normal */
    SURVEIL_THRESHOLD_NBPLUGIN, /* Noufaily 2013: negative binomial at mu0 */
    SURVEIL_THRESHOLD_MUAN,     /* ... at the upper (1-alpha) quantile of mu0 */
} surveil_threshold;

typedef enum { SURVEIL_POWER_NONE, SURVEIL_POWER_HALF, SURVEIL_POWER_TWO_THIRDS } surveil_power;

/* Parameters of every method; surveil_params_init gives R's defaults for the
 * method, surveil_params_set changes one by the name `caresync surveil
 * detect` uses for it (e.g. "baseline", "no-periods", "threshold"). */
typedef struct {
    surveil_method method;
    int range_start; /* first week evaluated, 1-based; 0 = the method's first possible week */
    int freq;        /* weeks per year (52) */
    /* EARS */
    int baseline;     /* weeks in the reference window (>= 3) */
    double min_sigma; /* floor of the reference standard deviation */
    double alpha;     /* EARS: 0.001 (C1, C2), 0.025 (C3); Farrington: 0.05 */
    /* CUSUM */
    double k, h; /* reference value and decision limit (1.04, 2.26) */
    double m;    /* in-control mean; NAN = mean of the weeks before range_start */
    int m_glm;   /* 1: m from a Poisson GLM with yearly harmonics over those weeks */
    surveil_trans trans;
    double cusum_alpha; /* dispersion for the negative binomial transformation (0.1) */
    /* Farrington flexible */
    int b, w;                     /* years back, half-width of the reference windows (5, 3) */
    int reweight;                 /* down-weight past outbreaks by Anscombe residuals (1) */
    double weights_threshold;     /* residual above which a week is down-weighted (2.58) */
    int trend;                    /* try a linear time trend (1) */
    double p_trend;               /* keep the trend only when its p-value is below this (0.05) */
    int limit_cases, limit_weeks; /* no alarm unless >= limit_cases in the last limit_weeks (5, 4) */
    surveil_power power;          /* delta threshold's power transformation (2/3) */
    int no_periods;               /* seasonal factor levels (1 = Farrington's windows only) */
    int past_weeks;               /* recent weeks left out of the fit; -1 = w */
    surveil_threshold threshold;
} surveil_params;

void surveil_params_init(surveil_params *p, surveil_method method);
core_status surveil_params_set(surveil_params *p, const char *key, const char *value, core_error *err);
/* "c1", "c2", "c3", "cusum", "farrington" (case-insensitive on parse). */
const char *surveil_method_name(surveil_method m);
core_status surveil_method_parse(const char *name, surveil_method *out, core_error *err);

/* One evaluated week. NAN and -1 stand where R gives NA. */
typedef struct {
    double upperbound; /* the count above which the week alarms */
    int8_t alarm;      /* 1, 0, or -1 (undefined) */
    double stat;       /* EARS: C value; CUSUM: the cumulative sum; Farrington: score */
    double expected;   /* Farrington's expected count, CUSUM's m; NAN otherwise */
} surveil_point;

/* Run p over counts[0..n) (finite, >= 0). On success *first is the 0-based
 * index of the first week evaluated, and out[0 .. n - *first) hold the weeks
 * from there to the end; out must have room for n points. A series too short
 * for the method, or parameters out of range, is CORE_ERR_INVALID. */
core_status surveil_detect(const surveil_params *p, const double *counts, size_t n, size_t *first, surveil_point *out,
                           core_error *err);

/* ---- weekly series from CSV (untrusted input: `caresync surveil detect`) ----
 * RFC 4180 CSV read with libcsv (quoted cells, doubled quotes, CRLF or LF, a
 * UTF-8 BOM, blank lines ignored): a header row, then one row per week. A
 * first column headed week, date, time, t, period or label, or holding
 * anything other than numbers, is kept as the weeks' labels; R's write.csv
 * row names (a first column headed "") are dropped, or are the labels when
 * they are not numbers; every other column is a series of counts (finite,
 * >= 0; an empty cell or NA is an error, not a zero). Cells are at most 127
 * characters without control characters (so no line break inside quotes).
 * At most SURVEIL_TABLE_MAX_CELLS cells, any number of columns. */
#define SURVEIL_TABLE_MAX_CELLS (1u << 24)
/* Farrington's no-periods: 1 .. this (its GLM holds intercept, trend and
 * one column per further period). */
#define SURVEIL_MAX_PERIODS 15
typedef struct surveil_table surveil_table;

core_status surveil_table_parse_csv(const char *text, size_t len, surveil_table **out, core_error *err);
void surveil_table_free(surveil_table *t);
size_t surveil_table_weeks(const surveil_table *t);
size_t surveil_table_series(const surveil_table *t);
/* Borrowed from t. label is NULL when the table has no label column. */
const char *surveil_table_name(const surveil_table *t, size_t series);
const char *surveil_table_label(const surveil_table *t, size_t week);
const double *surveil_table_counts(const surveil_table *t, size_t series);

/* ---- ISO weeks ----
 * Weeks are numbered consecutively (a "week index": whole weeks since the
 * Monday 1970-01-05) so series arithmetic is plain integer arithmetic; they
 * are shown and parsed as ISO 8601 weeks, "2026-W48". */
int surveil_week_of_time(int64_t unix_seconds);
int surveil_week_of_date(int year, int month, int day);
/* out >= 9 bytes. */
void surveil_week_format(int week, char out[9]);
core_status surveil_week_parse(const char *text, int *week, core_error *err);
/* Monday of the week, as unix seconds at 00:00 UTC. */
int64_t surveil_week_start(int week);

/* ---- a released table and its protection ----
 * One week of one country: rows are regions, columns conditions, plus a
 * totals row (the country) and a totals column (all conditions), all
 * published together, so every row and column is an additive relation an
 * attacker can use. Values are counts of contributions. */
typedef struct {
    size_t rows, cols; /* interior size: regions x conditions */
    int64_t *value;    /* (rows + 1) x (cols + 1), row-major; row `rows` and column `cols` are totals */
    uint8_t *status;   /* same shape: SURVEIL_CELL_* */
} surveil_grid;

enum { SURVEIL_CELL_PUBLISHED = 0, SURVEIL_CELL_PRIMARY = 1, SURVEIL_CELL_COMPLEMENTARY = 2 };

/* Zeroed grid of the given interior size (values and status owned by g). */
core_status surveil_grid_init(surveil_grid *g, size_t rows, size_t cols, core_error *err);
void surveil_grid_free(surveil_grid *g);
/* Recompute the totals row and column from the interior. */
void surveil_grid_sum(surveil_grid *g);
/* Small-cell suppression with threshold k (>= 1): every value 0 < v < k,
 * totals included, is suppressed (primary); then further values are
 * suppressed (complementary, smallest first) until no suppressed value can
 * be worked out from the published ones through the table's row and column
 * sums: each relation holds zero or at least two suppressed values, and an
 * exact linear audit (surveil_grid_disclosed) finds none determined.
 * Suppression only ever adds: values already suppressed stay so (zero the
 * status first for a fresh pattern), so a release at a larger k suppresses
 * a superset of the release at the base k and the two together reveal
 * nothing the base one does not. */
void surveil_grid_suppress(surveil_grid *g, int k);
/* The audit: true (and *index set, row-major) if some suppressed value is
 * determined by the published values and the additive relations. */
bool surveil_grid_disclosed(const surveil_grid *g, size_t *index);
/* A table broken down into n layers (one per source) of total's shape that
 * add up to it value by value. Suppresses in the layers only — total's
 * pattern, as surveil_grid_suppress left it, is never widened, so the plain
 * release of the same data publishes exactly the totals this one does —
 * every layer value 0 < v < k, then complements until the audit over all
 * the relations (each grid's rows and columns, and total = sum of layers at
 * every position) finds no suppressed value determined, total's included.
 * When no complement is left, every layer value is suppressed. Keeps what
 * is already suppressed (call at the base k, then a larger k, to nest). */
void surveil_grid_suppress_layers(const surveil_grid *total, surveil_grid *layers, size_t n, int k);
/* That audit: true (and *index = layer * positions + position, layer 0 the
 * total, layer i the layers[i - 1]) if a suppressed value is determined. */
bool surveil_grid_layers_disclosed(const surveil_grid *total, surveil_grid *layers, size_t n, size_t *index);

/* Differential privacy: add two-sided geometric (discrete Laplace) noise of
 * parameter exp(-epsilon) to every interior value, clamp at 0 and recompute
 * the totals from the noisy interior. One contribution changes one interior
 * value by one, so the grid is epsilon-DP for a contribution; the totals and
 * any later suppression are post-processing. seed NULL draws from the
 * system CSPRNG; a 32-byte seed gives a reproducible stream (tests). */
void surveil_grid_noise(surveil_grid *g, double epsilon, const uint8_t *seed);
/* One draw of the two-sided geometric distribution (exposed for tests). */
typedef struct surveil_rng surveil_rng;
surveil_rng *surveil_rng_new(const uint8_t *seed);
void surveil_rng_free(surveil_rng *r);
int64_t surveil_rng_geometric2(surveil_rng *r, double epsilon);

/* ---- contributions: the pool of shared, de-identified data ----
 * A contribution is exactly these five facts. The analytics tables hold
 * only their counts (see store migration 6). */
typedef enum { SURVEIL_SOURCE_MODEL, SURVEIL_SOURCE_SELF, SURVEIL_SOURCE_CLINICIAN } surveil_source;
#define SURVEIL_SOURCES 3
#define SURVEIL_AGE_BANDS 7 /* 0-4, 5-14, 15-24, 25-44, 45-64, 65+, unknown */
#define SURVEIL_CONDITION_MAX 23

typedef struct {
    char condition[SURVEIL_CONDITION_MAX + 1]; /* a screening condition code, [a-z0-9_] */
    char region[8];                            /* ISO 3166-2 subdivision, e.g. "US-CA" */
    int week;                                  /* week index (see above) */
    int age_band;                              /* 0 .. SURVEIL_AGE_BANDS - 1 */
    surveil_source source;
} surveil_contribution;

const char *surveil_source_name(surveil_source s); /* "model", "self_reported", "clinician_confirmed" */
const char *surveil_age_band_name(int band);       /* "0-4" ... "65+", "unknown" */
/* Band of a person born in birth_year (0: unknown) in the given year. */
int surveil_age_band(int birth_year, int year);
/* Shape checks only (codes well formed, week and band in range); whether the
 * region and condition exist is the caller's business (regions, screening). */
core_status surveil_contribution_check(const surveil_contribution *c, core_error *err);
/* Canonical text of a contribution, and its ledger commitment
 * SHA-256("caresync-contribution", salt || text): the ledger shows that a
 * datum was shared without showing which; the person keeps the salt. */
size_t surveil_contribution_text(const surveil_contribution *c, char *out, size_t cap);
void surveil_commitment(const surveil_contribution *c, const uint8_t salt[16], uint8_t out[32]);

/* ---- sealed weeks and batched rewards ----
 * Why (docs/SURVEILLANCE.md, "Releases and the public ledger"): the ledger is
 * public and shows every contribution's wallet and time. If releases moved
 * with each contribution, an analyst could take a release, wait for one
 * contribution on the ledger, take another, and read that wallet's region,
 * condition and week off the difference. So:
 *  - a week is *open* while it runs and for `delay` seconds after it ends,
 *    then *sealed*: only sealed weeks ever leave the service (releases,
 *    series, alerts, the countries and weeks with data), and a sealed week's
 *    counts never change again, so two releases differ only by whole weeks;
 *  - a contribution's ledger record (its reward) is not written when it is
 *    made but queued, and the queue goes to the ledger only when it holds a
 *    whole batch, in random order, so the ledger shows batches of at least
 *    `batch` contributors and never when one contribution arrived.
 * delay must exceed the time a screening result can still be shared (the
 * desk keeps results an hour), so no contribution is ever late for its week. */
#define SURVEIL_SEAL_DELAY_MIN 3600
/* The latest sealed week at time now. */
int surveil_sealed_through(int64_t now, int64_t delay);

/* What the ledger will record for a contribution (its reward transaction's
 * body): the contributor's wallet, the consent it was shared under and the
 * salted commitment. Nothing here names the five facts. */
typedef struct {
    uint8_t contributor[32];
    uint8_t grant[32];
    uint8_t commitment[32];
} surveil_reward;

/* Count one contribution and queue its reward record, in one transaction.
 * mark (32 bytes, may be NULL) names the datum it came from, as a keyed hash
 * the caller computes; a mark seen before is CORE_ERR_CONFLICT (field
 * "contribution") and nothing is counted. A week at or before sealed_through
 * is CORE_ERR_CONFLICT (field "week"): sealed weeks never change. reward may
 * be NULL (nothing queued). Counting into an open week does not change the
 * data version: nothing that leaves the service can see it yet. */
core_status surveil_add(store *st, const surveil_contribution *c, const uint8_t *mark, int sealed_through,
                        const surveil_reward *reward, core_error *err);
/* ---- withdrawal from weeks not yet released (issue 14) ----
 * A contribution may carry a random withdrawal tag. The pool keeps only the
 * tag and its week (surveil_tags), never its facts or its contributor, and
 * only while the week is open: a tag whose week is sealed is deleted, since
 * sealed counts never change (a sealed count that moved when one person
 * left would let two releases be differenced to read that person's facts).
 * The facts and the tag's link to the person are kept by the caller, sealed
 * for the person (share's vault). */
#define SURVEIL_TAG 16
/* Run inside the write transaction on db after the pool's own checks;
 * an error rolls everything back. */
typedef core_status (*surveil_within_fn)(void *ud, sqlite3 *db, core_error *err);
/* surveil_add with tag (SURVEIL_TAG bytes, may be NULL) kept for its week,
 * and within (may be NULL) run in the same transaction once the mark is
 * new and the week open — where the caller writes its own record of the
 * contribution, so both commit or neither. Tags of sealed weeks go. */
core_status surveil_add_tagged(store *st, const surveil_contribution *c, const uint8_t *mark, int sealed_through,
                               const surveil_reward *reward, const uint8_t *tag, surveil_within_fn within, void *ud,
                               core_error *err);
typedef struct {
    surveil_contribution c;
    uint8_t tag[SURVEIL_TAG];
    bool done; /* out: its count was taken back */
} surveil_withdrawal;
/* Take back the count of each w[i] whose tag is still kept for an open week
 * (after sealed_through), deleting the tag so it can be taken back once;
 * w[i].done says which. A tag not kept (its week sealed, or taken back
 * already) is left alone: that is not an error. within (may be NULL) runs
 * in the same transaction after, seeing the done flags. */
core_status surveil_withdraw(store *st, surveil_withdrawal *w, size_t n, int sealed_through, surveil_within_fn within,
                             void *ud, core_error *err);
/* Many at once in one transaction (demo data, benchmarks): counts[i] of
 * contributions[i], into any week (demo data is synthetic and flagged as
 * such in everything built from it); bumps the data version. */
core_status surveil_add_counts(store *st, const surveil_contribution *c, const int64_t *counts, size_t n,
                               bool synthetic, core_error *err);
/* Goes up with every change to sealed data (releases and alerts key on it). */
core_status surveil_data_version(store *st, int64_t *out, core_error *err);

/* The queued reward records, when at least min are queued (else *n = 0): up
 * to cap of them into out, in a random order. They stay queued until
 * surveil_rewards_done removes each, so a crash mid-batch loses none (the
 * ledger refuses a commitment it already holds, which also counts as done). */
core_status surveil_rewards_pending(store *st, size_t min, surveil_reward *out, size_t cap, size_t *n, core_error *err);
core_status surveil_rewards_done(store *st, const uint8_t commitment[32], core_error *err);
core_status surveil_rewards_queued(store *st, size_t *n, core_error *err);

/* ---- queries and releases ---- */
typedef struct {
    char country[3];               /* ISO 3166-1 alpha-2: rows are its subdivisions with data */
    int week_from, week_to;        /* inclusive */
    const char *const *conditions; /* the columns (borrowed) */
    size_t n_conditions;
    int k;                      /* small-cell threshold (>= base_k) */
    int base_k;                 /* the service's threshold (11): the pattern every release starts from */
    double epsilon;             /* 0: exact counts; > 0: two-sided geometric noise first */
    int sealed_through;         /* the latest sealed week: week_to beyond it is refused */
    const char *const *regions; /* the rows (borrowed): every subdivision of the country, so that which
                                   rows a release has never depends on the data */
    size_t n_regions;
    /* true: the release is broken down by source as well (surveil_grid_suppress_layers):
     * one layer per source beside the totals, one release (one fingerprint, one budget charge) */
    bool by_source;
} surveil_query;

typedef struct surveil_release surveil_release;

/* Count, (noise,) suppress: one grid per week. seed as surveil_grid_noise. */
core_status surveil_release_build(store *st, const surveil_query *q, const uint8_t *seed, surveil_release **out,
                                  core_error *err);
void surveil_release_free(surveil_release *r);
/* What identifies the question and the data it was asked of: SHA-256 over
 * the canonical query and the data version. surveil_query_fingerprint
 * gives the same without building the release (it reads the current data
 * version), so an earlier identical release can be found first. */
void surveil_release_fingerprint(const surveil_release *r, uint8_t out[32]);
core_status surveil_query_fingerprint(store *st, const surveil_query *q, uint8_t out[32], core_error *err);
double surveil_release_epsilon(const surveil_release *r);
size_t surveil_release_cells(const surveil_release *r); /* values published (not suppressed) */
bool surveil_release_synthetic(const surveil_release *r);
/* The release as JSON (new reference): query, regions, conditions, and per
 * week the cells, totals and which are suppressed (null values). */
json_t *surveil_release_json(const surveil_release *r);
/* The view of one condition: a new JSON release holding that column only
 * (its cells, and its country total as the total), values taken unchanged
 * from the full release, so a view never publishes a number the full
 * release suppressed. NULL if the condition is not a column. */
json_t *surveil_release_view(const json_t *release_json, const char *condition);
/* A release by source (by_source: [{source, weeks}] beside the totals'
 * weeks) viewed as one source: a new JSON release whose weeks are that
 * source's, values unchanged, with "source" naming it. NULL if the release
 * has no such layer. Apply before surveil_release_view. */
json_t *surveil_release_source_view(const json_t *release_json, const char *source);
/* A source's code from its name ("model", "self_reported",
 * "clinician_confirmed"); -1 for any other. */
int surveil_source_parse(const char *name);
/* The series a release shows for one region (a subdivision, or the whole
 * country: region = the release's country) and condition (NULL: all):
 * appends each week's label to weeks (may be NULL) and its value, taken
 * unchanged from the release, to observed — null where the release
 * suppressed it, 0 for a region that is not one of its rows. Reading the
 * logged body is what keeps a chart from showing a number the table
 * suppressed. CORE_ERR_INVALID if release is not a release or condition
 * not one of its columns. */
core_status surveil_release_observed(const json_t *release_json, const char *region, const char *condition,
                                     json_t *weeks, json_t *observed, core_error *err);
/* A release's JSON as CSV: week,region,condition,count,status,synthetic,
 * (and source, for a release by source or a source's view: "all" on the
 * totals' lines), one line per value (totals as region = the country, condition = "all" —
 * a view of one condition has no "all" column; a suppressed value has an
 * empty count). malloc'd; NULL if not a release. */
char *surveil_release_csv(const json_t *release_json);

/* Privacy budget and the release log. Before a release leaves, record it:
 * in one transaction, refuse with CORE_ERR_CONFLICT (field "epsilon") when
 * org's spent + epsilon would exceed budget, else add epsilon to what org has
 * spent and log the release (fingerprint, epsilon, k, cells, body).
 * *id receives the log row; surveil_release_set_txid adds the ledger txid. */
core_status surveil_release_record(store *st, const char *org, const surveil_release *r, double budget,
                                   const char *body, int64_t *id, core_error *err);
core_status surveil_release_set_txid(store *st, int64_t id, const uint8_t txid[32], core_error *err);
/* An earlier release to org with the same fingerprint (same query, same
 * data) that made it onto the ledger (has a txid): its body, so asking again
 * costs no budget and shows the same noise. A logged release whose ledger
 * record failed is never handed out. CORE_ERR_NOT_FOUND if none. *body is
 * malloc'd. */
core_status surveil_release_find(store *st, const char *org, const uint8_t fingerprint[32], char **body,
                                 core_error *err);
core_status surveil_budget_spent(store *st, const char *org, double *spent, core_error *err);

/* ---- series and alerts ---- */
/* Weekly counts for one region (or a whole country: region = "US") and one
 * condition (NULL: all), weeks week_from..week_to inclusive. out has room
 * for week_to - week_from + 1 values. *synthetic: any demo data in them. */
core_status surveil_series(store *st, const char *region, const char *condition, int week_from, int week_to,
                           double *out, bool *synthetic, core_error *err);
/* The same, counting one source only (source < 0: all of them). */
core_status surveil_series_source(store *st, const char *region, const char *condition, int source, int week_from,
                                  int week_to, double *out, bool *synthetic, core_error *err);
/* The countries (ISO 3166-1 alpha-2) with data in weeks up to through, in order. */
typedef void (*surveil_country_fn)(void *ud, const char *country);
core_status surveil_countries(store *st, int through, surveil_country_fn fn, void *ud, core_error *err);
/* First and last week with data, among weeks up to through;
 * CORE_ERR_NOT_FOUND when there is none. */
core_status surveil_extent(store *st, int through, int *first, int *last, core_error *err);

typedef struct {
    int64_t id;
    char region[8];
    char condition[SURVEIL_CONDITION_MAX + 1];
    int week;
    char method[16];
    int64_t observed;
    double upperbound;
    bool synthetic;
    int64_t created_at;
    char acked_by[40]; /* "" while open */
    int64_t acked_at;
} surveil_alert;

/* Run p over every (region, condition) series with data and store an alert
 * for each alarm in the last `recent` weeks up to week_now (the latest
 * sealed week: nothing later is read) whose week holds
 * at least min_count cases (alerts already stored stay as they are). With
 * min_count = the release threshold k, an alert never points at a count the
 * dashboard suppresses, and tiny counts do not flood analysts. *added
 * counts the new ones. */
core_status surveil_scan(store *st, const surveil_params *p, int week_now, int recent, int min_count, int *added,
                         core_error *err);
/* The detector alerts use, given how many weeks of history there are:
 * Farrington flexible in Noufaily's configuration (b = years back, up to 5;
 * 10 periods, 26 recent weeks left out, nbPlugin) once two years exist —
 * on simulated outbreaks it keeps false alarms well under 1 % —, EARS C2
 * (7 weeks of baseline) before that. Two years means two years before
 * the earliest of the eight weeks alerts look at, so all eight are
 * evaluated. */
void surveil_alert_params(int history_weeks, surveil_params *p);
typedef void (*surveil_alert_fn)(void *ud, const surveil_alert *a);
/* Newest week first; open_only skips acknowledged ones. */
core_status surveil_alerts(store *st, bool open_only, surveil_alert_fn fn, void *ud, core_error *err);
/* CORE_ERR_NOT_FOUND for no such alert, CORE_ERR_CONFLICT if already acknowledged. */
core_status surveil_alert_ack(store *st, int64_t id, const char *by, core_error *err);

/* ---- demo data ----
 * A synthetic `weeks` weeks (ending at week_end) of contributions for the
 * 50 US states and DC over the given condition codes, stored with the
 * synthetic flag, with two injected outbreaks (summary says where and
 * when). Same seed, same data. */
typedef struct {
    int64_t contributions;
    int regions, weeks;
    char outbreaks[2][96];
} surveil_demo_summary;
core_status surveil_demo_fill(store *st, const char *const *conditions, size_t n_conditions, int week_end, int weeks,
                              unsigned seed, surveil_demo_summary *summary, core_error *err);
/* The demo's model, for benchmarks that want the same shape of data:
 * region i of surveil_demo_regions() (NULL past the end) with its 2020
 * population in thousands, and a condition's share of contributions,
 * seasonal amplitude and peak week of the year. */
size_t surveil_demo_regions(void);
const char *surveil_demo_region(size_t i, int *population_thousands);
void surveil_demo_condition_profile(const char *code, double *share, double *amp, double *peak);

#endif
