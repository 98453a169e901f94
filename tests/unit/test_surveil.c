/* surveil: detectors against R `surveillance` (golden files written by
 * scripts/surveil-golden.R), parameters, and the CSV reader.
 *
 * The golden directory is TEST_GOLDEN_DIR, or $SURVEIL_GOLDEN_DIR when set
 * (tests/surveil_vs_r.sh points it at a fresh run of R). Every point R
 * evaluated must carry the same alarm (NA included) and an upper bound
 * equal to 1e-6 relative (both NA, or |ours - R| <= 1e-6 |R|). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "surveil/surveil.h"
#include "testutil.h"

static const char *golden_dir(void) {
    const char *d = getenv("SURVEIL_GOLDEN_DIR");
    return d && *d ? d : TEST_GOLDEN_DIR;
}

static char *slurp(const char *path, size_t *len) {
    char *text = NULL;
    core_error err = {0};
    if (core_read_file(path, &text, len, &err) != CORE_OK) {
        print_error("cannot read %s: %s\n", path, err.message);
        return NULL;
    }
    return text;
}

static surveil_table *load_data(const char *dataset) {
    char path[512];
    snprintf(path, sizeof path, "%s/data/%s.csv", golden_dir(), dataset);
    size_t len;
    char *text = slurp(path, &len);
    if (!text) return NULL;
    surveil_table *t = NULL;
    core_error err = {0};
    if (surveil_table_parse_csv(text, len, &t, &err) != CORE_OK) print_error("%s: %s\n", path, err.message);
    free(text);
    return t;
}

typedef struct {
    size_t points, alarms, mismatches;
    double worst_rel;
} tally;

/* Compare one config: golden rows are dataset,series,t,upperbound,alarm. */
static void check_config(const char *config, const char *method, const char *params, tally *tl) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.csv", golden_dir(), config);
    size_t len;
    char *text = slurp(path, &len);
    assert_non_null(text);
    surveil_params p;
    surveil_method m;
    core_error err = {0};
    assert_int_equal(surveil_method_parse(method, &m, &err), CORE_OK);
    surveil_params_init(&p, m);
    char pbuf[512];
    snprintf(pbuf, sizeof pbuf, "%s", params);
    for (char *save = NULL, *kv = strtok_r(pbuf, ";", &save); kv; kv = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(kv, '=');
        assert_non_null(eq);
        *eq = 0;
        if (surveil_params_set(&p, kv, eq + 1, &err) != CORE_OK) fail_msg("%s: %s", config, err.message);
    }
    char cur_set[128] = "";
    long cur_series = -1;
    surveil_table *tab = NULL;
    surveil_point *pts = NULL;
    size_t first = 0, n = 0, shown = 0;
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save); /* header */
    for (line = strtok_r(NULL, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char set[128];
        long series, t;
        char ub_s[64], al_s[16];
        if (sscanf(line, "%127[^,],%ld,%ld,%63[^,],%15s", set, &series, &t, ub_s, al_s) != 5)
            fail_msg("%s: bad golden line '%s'", config, line);
        if (strcmp(set, cur_set) != 0) {
            surveil_table_free(tab);
            tab = load_data(set);
            assert_non_null(tab);
            snprintf(cur_set, sizeof cur_set, "%s", set);
            cur_series = -1;
            free(pts);
            n = surveil_table_weeks(tab);
            pts = malloc(n * sizeof *pts);
            assert_non_null(pts);
        }
        if (series != cur_series) {
            assert_true(series >= 1 && (size_t)series <= surveil_table_series(tab));
            if (surveil_detect(&p, surveil_table_counts(tab, (size_t)series - 1), n, &first, pts, &err) != CORE_OK)
                fail_msg("%s %s/%ld: %s", config, set, series, err.message);
            cur_series = series;
        }
        assert_true(t >= 1 && (size_t)t <= n);
        if ((size_t)t - 1 < first)
            fail_msg("%s %s/%ld t=%ld: R evaluated a week before ours (%zu)", config, set, series, t, first + 1);
        const surveil_point *pt = &pts[(size_t)t - 1 - first];
        double r_ub = strcmp(ub_s, "NA") == 0 ? NAN : strtod(ub_s, NULL);
        int r_al = strcmp(al_s, "NA") == 0 ? -1 : atoi(al_s);
        int ok = pt->alarm == r_al;
        double rel = 0;
        if (isnan(r_ub) || isnan(pt->upperbound)) {
            ok = ok && isnan(r_ub) && isnan(pt->upperbound);
        } else {
            rel = fabs(pt->upperbound - r_ub) / (fabs(r_ub) > 0 ? fabs(r_ub) : 1);
            if (rel > tl->worst_rel) tl->worst_rel = rel;
            ok = ok && rel <= 1e-6;
        }
        tl->points++;
        tl->alarms += r_al == 1;
        if (!ok) {
            tl->mismatches++;
            if (shown++ < 8)
                print_error("%s %s/%ld t=%ld: R ub=%s alarm=%s, ours ub=%.17g alarm=%d\n", config, set, series, t, ub_s,
                            al_s, pt->upperbound, pt->alarm);
        }
    }
    surveil_table_free(tab);
    free(pts);
    free(text);
}

static void detectors_agree_with_r(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/manifest.csv", golden_dir());
    size_t len;
    char *text = slurp(path, &len);
    assert_non_null(text);
    size_t configs = 0, bad = 0, all_points = 0;
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save);
    for (line = strtok_r(NULL, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        /* config,method,datasets,params (params may be empty) */
        char *f[4] = {0};
        char *p = line;
        for (int i = 0; i < 4; i++) {
            f[i] = p;
            char *c = i < 3 ? strchr(p, ',') : NULL;
            if (c) {
                *c = 0;
                p = c + 1;
            } else {
                p = p + strlen(p);
            }
        }
        tally tl = {0};
        check_config(f[0], f[1], f[3], &tl);
        print_message("  %-20s %6zu points, %4zu alarms, worst relative difference %.1e, %zu mismatches\n", f[0],
                      tl.points, tl.alarms, tl.worst_rel, tl.mismatches);
        configs++;
        all_points += tl.points;
        bad += tl.mismatches;
    }
    free(text);
    assert_true(configs >= 3);
    assert_true(all_points > 1000);
    assert_int_equal(bad, 0);
}

static void parameters_are_validated(void **state) {
    (void)state;
    surveil_params p;
    core_error err = {0};
    surveil_params_init(&p, SURVEIL_C1);
    assert_int_equal(surveil_params_set(&p, "baseline", "2", &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "baseline");
    assert_int_equal(surveil_params_set(&p, "alpha", "1", &err), CORE_ERR_INVALID);
    assert_int_equal(surveil_params_set(&p, "alpha", "abc", &err), CORE_ERR_INVALID);
    assert_int_equal(surveil_params_set(&p, "nonsense", "1", &err), CORE_ERR_INVALID);
    assert_int_equal(surveil_params_set(&p, "threshold", "nbplugin", &err), CORE_OK);
    assert_int_equal(p.threshold, SURVEIL_THRESHOLD_NBPLUGIN);
    assert_int_equal(surveil_params_set(&p, "limit54", "5,", &err), CORE_ERR_INVALID);
    assert_int_equal(surveil_params_set(&p, "limit54", "3,2", &err), CORE_OK);
    assert_int_equal(p.limit_cases, 3);
    surveil_method m;
    assert_int_equal(surveil_method_parse("FARRINGTON", &m, &err), CORE_OK);
    assert_int_equal(m, SURVEIL_FARRINGTON);
    assert_int_equal(surveil_method_parse("c4", &m, &err), CORE_ERR_INVALID);

    /* too short a series, negative or non-finite counts: errors, not output */
    double x[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    surveil_point out[10];
    size_t first;
    surveil_params_init(&p, SURVEIL_FARRINGTON);
    assert_int_equal(surveil_detect(&p, x, 10, &first, out, &err), CORE_ERR_INVALID);
    surveil_params_init(&p, SURVEIL_C1);
    assert_int_equal(surveil_detect(&p, x, 10, &first, out, &err), CORE_OK);
    assert_int_equal(first, 7);
    x[3] = -1;
    assert_int_equal(surveil_detect(&p, x, 10, &first, out, &err), CORE_ERR_INVALID);
    x[3] = NAN;
    assert_int_equal(surveil_detect(&p, x, 10, &first, out, &err), CORE_ERR_INVALID);
    x[3] = 4;
    assert_int_equal(surveil_params_set(&p, "range-start", "3", &err), CORE_OK);
    assert_int_equal(surveil_detect(&p, x, 10, &first, out, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "range-start");
}

/* A flat series with an outbreak at the end: every method flags its last
 * week and nothing before the outbreak (a check of meaning beside the R
 * comparison). The outbreak lasts one week, three for C3: R's C3 (and so
 * ours) alarms when the two weeks before t exceeded their C2 limits, since
 * its upper bound is built on the observed count rather than the mean. */
static void an_outbreak_alarms(void **state) {
    (void)state;
    enum { N = 6 * 52 };
    double x[N];
    surveil_point out[N];
    for (int m = SURVEIL_C1; m <= SURVEIL_FARRINGTON; m++) {
        int weeks = m == SURVEIL_C3 ? 3 : 1;
        for (int i = 0; i < N; i++) x[i] = 10 + (i * 7 % 5) - 2; /* 8..12 */
        for (int i = N - weeks; i < N; i++) x[i] = 60;
        surveil_params p;
        core_error err = {0};
        size_t first;
        surveil_params_init(&p, (surveil_method)m);
        assert_int_equal(surveil_detect(&p, x, N, &first, out, &err), CORE_OK);
        size_t cnt = N - first;
        assert_int_equal(out[cnt - 1].alarm, 1);
        if (m != SURVEIL_C3) assert_true(out[cnt - 1].upperbound < 60);
        if (m != SURVEIL_CUSUM) /* the CUSUM may drift on the in-control noise */
            for (size_t i = 0; i + weeks < cnt; i++) assert_int_equal(out[i].alarm, 0);
    }
}

static void csv_reader(void **state) {
    (void)state;
    core_error err = {0};
    surveil_table *t = NULL;
    const char *ok = "week,north,south\r\n2024-W01,1,2\n2024-W02, 3 ,4\n\n2024-W03,5,6\n";
    assert_int_equal(surveil_table_parse_csv(ok, strlen(ok), &t, &err), CORE_OK);
    assert_int_equal(surveil_table_weeks(t), 3);
    assert_int_equal(surveil_table_series(t), 2);
    assert_string_equal(surveil_table_name(t, 1), "south");
    assert_string_equal(surveil_table_label(t, 2), "2024-W03");
    assert_true(surveil_table_counts(t, 0)[1] == 3);
    assert_true(surveil_table_counts(t, 1)[2] == 6);
    surveil_table_free(t);

    const char *bare = "cases\n1\n2\n";
    assert_int_equal(surveil_table_parse_csv(bare, strlen(bare), &t, &err), CORE_OK);
    assert_null(surveil_table_label(t, 0));
    assert_int_equal(surveil_table_series(t), 1);
    surveil_table_free(t);

    /* RFC 4180: a quoted count is the count (it was refused before quoting
     * was read); what is malformed CSV, or no count, is refused below. */
    const char *quoted = "a\n\"1\"\n\" 2 \"\n";
    assert_int_equal(surveil_table_parse_csv(quoted, strlen(quoted), &t, &err), CORE_OK);
    assert_true(surveil_table_counts(t, 0)[0] == 1 && surveil_table_counts(t, 0)[1] == 2);
    surveil_table_free(t);

    static char huge[200000]; /* one quoted cell far over the limit: refused, not buffered */
    memcpy(huge, "a\n\"", 3);
    memset(huge + 3, '7', sizeof huge - 5);
    memcpy(huge + sizeof huge - 2, "\"", 2);
    const char *bad[] = {"",
                         "a,b\n",
                         "a,b\n1,2,3\n",
                         "a\n-1\n",
                         "a\nx\n",
                         "a,b\n1,\n",
                         "a\n1e999\n",
                         "a\n\"1\n",          /* quote never closed */
                         "a\n1\"2\n",         /* quote inside a bare cell */
                         "a\n\"1\"2\n",       /* text after the closing quote */
                         "a,b\n\"x\ny\",1\n", /* line break inside quotes: names are printed back */
                         "a\nNA\n",           /* R's missing value */
                         "a,b\n1,2\n3\0,4\n", /* NUL */
                         "\xEF\xBB\xBF\n",    /* only a BOM */
                         huge};
    const size_t bad_len[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 13, 0, sizeof huge - 1};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        t = (surveil_table *)0x1;
        memset(&err, 0, sizeof err);
        size_t len = bad_len[i] ? bad_len[i] : strlen(bad[i]);
        assert_int_equal(surveil_table_parse_csv(bad[i], len, &t, &err), CORE_ERR_INVALID);
        assert_null(t);
        assert_true(err.message[0] != 0);
    }
    /* messages name the line (and the column when one cell is at fault) */
    const char *na = "\"\",\"week\",\"n\"\n\"1\",\"2024-W01\",3\n\"2\",\"2024-W02\",NA\n";
    assert_int_equal(surveil_table_parse_csv(na, strlen(na), &t, &err), CORE_ERR_INVALID);
    assert_non_null(strstr(err.message, "line 3, column 3"));
    assert_non_null(strstr(err.message, "NA"));
    const char *open = "a\n1\n\"2\n3\n";
    assert_int_equal(surveil_table_parse_csv(open, strlen(open), &t, &err), CORE_ERR_INVALID);
    assert_non_null(strstr(err.message, "quot"));
    const char *stray = "a\n1\n2\"\n3\n";
    assert_int_equal(surveil_table_parse_csv(stray, strlen(stray), &t, &err), CORE_ERR_INVALID);
    assert_non_null(strstr(err.message, "line 3"));
    assert_int_equal(surveil_table_parse_csv(huge, sizeof huge - 1, &t, &err), CORE_ERR_INVALID);
    assert_non_null(strstr(err.message, "longer than"));
}

/* The same weeks written by hand, without quotes or row names. */
static const char *const plain_equivalent =
    "week,north,\"Kent, East\"\n"
    "2024-W01,3,0\n2024-W02,5,1\n2024-W03,4,0\n2024-W04,6,2\n2024-W05,3,1\n2024-W06,5,0\n2024-W07,4,1\n"
    "2024-W08,7,1\n2024-W09,5,0\n2024-W10,4,2\n2024-W11,6,1\n2024-W12,5,0\n2024-W13,4,1\n2024-W14,21,1\n"
    "2024-W15,18,0\n2024-W16,6,12\n";

static void same_table(const surveil_table *a, const surveil_table *b) {
    assert_int_equal(surveil_table_weeks(a), surveil_table_weeks(b));
    assert_int_equal(surveil_table_series(a), surveil_table_series(b));
    for (size_t j = 0; j < surveil_table_series(a); j++) {
        assert_string_equal(surveil_table_name(a, j), surveil_table_name(b, j));
        assert_memory_equal(surveil_table_counts(a, j), surveil_table_counts(b, j),
                            surveil_table_weeks(a) * sizeof(double));
    }
    for (size_t i = 0; i < surveil_table_weeks(a); i++)
        assert_string_equal(surveil_table_label(a, i), surveil_table_label(b, i));
}

/* tests/fixtures/surveil/r-write-csv.csv is byte for byte what R's
 * write.csv(d, file) writes for a data frame of a character week column and
 * two count columns (one named "Kent, East"): every header and the row names
 * quoted, the row names first under "", labels quoted, numbers bare. It was
 * refused before ("quotes and control characters are not supported"). */
static void csv_as_r_writes_it(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/r-write-csv.csv", TEST_FIXTURE_DIR);
    size_t len;
    char *text = slurp(path, &len);
    assert_non_null(text);
    assert_int_equal(text[0], '"'); /* the fixture is R's format, not the plain one */
    core_error err = {0};
    surveil_table *r = NULL, *plain = NULL;
    if (surveil_table_parse_csv(text, len, &r, &err) != CORE_OK) print_error("%s: %s\n", path, err.message);
    assert_non_null(r);
    assert_int_equal(surveil_table_weeks(r), 16);
    assert_int_equal(surveil_table_series(r), 2); /* the row names are not a series */
    assert_string_equal(surveil_table_name(r, 0), "north");
    assert_string_equal(surveil_table_name(r, 1), "Kent, East");
    assert_string_equal(surveil_table_label(r, 0), "2024-W01");
    assert_string_equal(surveil_table_label(r, 15), "2024-W16");
    assert_true(surveil_table_counts(r, 0)[13] == 21);
    assert_true(surveil_table_counts(r, 1)[15] == 12);
    assert_int_equal(surveil_table_parse_csv(plain_equivalent, strlen(plain_equivalent), &plain, &err), CORE_OK);
    same_table(r, plain);

    /* The detectors see the same series: C1 flags the same weeks. */
    surveil_params p;
    surveil_params_init(&p, SURVEIL_C1);
    surveil_point a[16], b[16];
    size_t fa, fb, alarms = 0;
    for (size_t j = 0; j < 2; j++) {
        assert_int_equal(surveil_detect(&p, surveil_table_counts(r, j), 16, &fa, a, &err), CORE_OK);
        assert_int_equal(surveil_detect(&p, surveil_table_counts(plain, j), 16, &fb, b, &err), CORE_OK);
        assert_int_equal(fa, fb);
        for (size_t i = 0; i < 16 - fa; i++) {
            assert_int_equal(a[i].alarm, b[i].alarm);
            assert_true(a[i].upperbound == b[i].upperbound);
            alarms += a[i].alarm == 1;
        }
    }
    assert_true(alarms > 0); /* week 14's 21 and week 16's 12 stand out */

    /* As saved on Windows or by Excel ("CSV UTF-8"): a BOM, CRLF line ends,
     * an empty last line. Same table. */
    char *win = malloc(3 + 2 * len + 3);
    assert_non_null(win);
    size_t w = 0;
    memcpy(win, "\xEF\xBB\xBF", 3);
    w = 3;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\n') win[w++] = '\r';
        win[w++] = text[i];
    }
    memcpy(win + w, "\r\n", 2);
    w += 2;
    surveil_table *crlf = NULL;
    assert_int_equal(surveil_table_parse_csv(win, w, &crlf, &err), CORE_OK);
    same_table(crlf, plain);
    surveil_table_free(crlf);
    free(win);

    /* Row names that are not numbers (R's rownames(d) <- weeks) are the labels. */
    const char *named = "\"\",\"north\"\n\"2024-W01\",3\n\"2024-W02\",5\n";
    surveil_table *nt = NULL;
    assert_int_equal(surveil_table_parse_csv(named, strlen(named), &nt, &err), CORE_OK);
    assert_int_equal(surveil_table_series(nt), 1);
    assert_string_equal(surveil_table_label(nt, 1), "2024-W02");
    surveil_table_free(nt);

    surveil_table_free(plain);
    surveil_table_free(r);
    free(text);
}

/* ---- weeks ---- */
static void iso_weeks(void **state) {
    (void)state;
    char buf[9];
    core_error err = {0};
    /* 2026-11-28 is a Saturday of ISO week 48; 2021-01-01 belongs to 2020-W53 */
    surveil_week_format(surveil_week_of_date(2026, 11, 28), buf);
    assert_string_equal(buf, "2026-W48");
    surveil_week_format(surveil_week_of_date(2021, 1, 1), buf);
    assert_string_equal(buf, "2020-W53");
    surveil_week_format(surveil_week_of_date(2024, 12, 30), buf);
    assert_string_equal(buf, "2025-W01");
    assert_int_equal(surveil_week_of_date(1970, 1, 5), 0);
    assert_int_equal(surveil_week_of_time(surveil_week_start(2900) + 6 * 86400 + 86399), 2900);
    int w;
    assert_int_equal(surveil_week_parse("2020-W53", &w, &err), CORE_OK);
    assert_int_equal(w, surveil_week_of_date(2021, 1, 1));
    assert_int_equal(surveil_week_parse("2021-W53", &w, &err), CORE_ERR_INVALID);
    assert_int_equal(surveil_week_parse("2021-W00", &w, &err), CORE_ERR_INVALID);
    assert_int_equal(surveil_week_parse("2021W01", &w, &err), CORE_ERR_INVALID);
    for (int k = 0; k < 3000; k += 7) { /* format and parse are inverse */
        surveil_week_format(k, buf);
        assert_int_equal(surveil_week_parse(buf, &w, &err), CORE_OK);
        assert_int_equal(w, k);
    }
}

/* ---- suppression ---- */

/* rank of an m x n matrix (row-major, doubles), by its own elimination: an
 * independent check of the module's audit. */
static size_t rank_of(double *A, size_t m, size_t n) {
    size_t r = 0;
    for (size_t c = 0; c < n && r < m; c++) {
        size_t p = r;
        for (size_t i = r; i < m; i++)
            if (fabs(A[i * n + c]) > fabs(A[p * n + c])) p = i;
        if (fabs(A[p * n + c]) < 1e-9) continue;
        for (size_t j = 0; j < n; j++) {
            double t = A[r * n + j];
            A[r * n + j] = A[p * n + j];
            A[p * n + j] = t;
        }
        for (size_t i = r + 1; i < m; i++) {
            double f = A[i * n + c] / A[r * n + c];
            for (size_t j = 0; j < n; j++) A[i * n + j] -= f * A[r * n + j];
        }
        r++;
    }
    return r;
}

/* Is suppressed entry `target` determined? e_target lies in the row space of
 * the relations (restricted to suppressed entries) iff adding it as a row
 * does not raise the rank. */
static bool determined(const surveil_grid *g, size_t target) {
    size_t R = g->rows, C = g->cols, W = C + 1, total = (R + 1) * W;
    size_t *var = malloc(total * sizeof *var), nu = 0;
    for (size_t e = 0; e < total; e++) var[e] = g->status[e] ? nu++ : SIZE_MAX;
    size_t m = R + 1 + C + 1;
    double *A = calloc((m + 1) * nu, sizeof *A);
    for (size_t i = 0; i <= R; i++) /* rows: interior - total */
        for (size_t j = 0; j <= C; j++)
            if (var[i * W + j] != SIZE_MAX) A[i * nu + var[i * W + j]] = j == C ? -1 : 1;
    for (size_t j = 0; j <= C; j++) /* columns */
        for (size_t i = 0; i <= R; i++)
            if (var[i * W + j] != SIZE_MAX) A[(R + 1 + j) * nu + var[i * W + j]] = i == R ? -1 : 1;
    double *B = malloc((m + 1) * nu * sizeof *B);
    memcpy(B, A, m * nu * sizeof *B);
    size_t r1 = rank_of(B, m, nu);
    memset(A + m * nu, 0, nu * sizeof *A);
    A[m * nu + var[target]] = 1;
    size_t r2 = rank_of(A, m + 1, nu);
    free(var);
    free(A);
    free(B);
    return r1 == r2;
}

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static void suppression_protects_random_tables(void **state) {
    (void)state;
    uint64_t seed = 20261128;
    size_t tables = 0, suppressed = 0, complements = 0;
    for (int t = 0; t < 400; t++) {
        size_t R = 1 + lcg(&seed) % 9, C = 1 + lcg(&seed) % 7;
        int k = t % 3 == 0 ? 11 : (int)(2 + lcg(&seed) % 15);
        surveil_grid g;
        core_error err = {0};
        assert_int_equal(surveil_grid_init(&g, R, C, &err), CORE_OK);
        for (size_t i = 0; i < R; i++)
            for (size_t j = 0; j < C; j++) {
                uint64_t u = lcg(&seed) % 10; /* many zeros and small cells, some large */
                g.value[i * (C + 1) + j] = u < 3 ? 0 : u < 7 ? (int64_t)(lcg(&seed) % 12) : (int64_t)(lcg(&seed) % 200);
            }
        surveil_grid_sum(&g);
        surveil_grid_suppress(&g, k);
        size_t total = (R + 1) * (C + 1);
        for (size_t e = 0; e < total; e++) {
            /* no value below k is ever released */
            if (g.status[e] == SURVEIL_CELL_PUBLISHED) assert_false(g.value[e] > 0 && g.value[e] < k);
            if (g.status[e]) {
                suppressed++;
                complements += g.status[e] == SURVEIL_CELL_COMPLEMENTARY;
                /* and none can be worked out from what is released */
                if (determined(&g, e))
                    fail_msg("table %d (%zux%zu, k=%d): suppressed entry %zu is determined", t, R, C, k, e);
            }
        }
        assert_false(surveil_grid_disclosed(&g, NULL));
        tables++;
        surveil_grid_free(&g);
    }
    print_message("  %zu random tables: %zu values suppressed, %zu of them complements; none determined\n", tables,
                  suppressed, complements);
}

static void a_lone_small_cell_gets_a_complement(void **state) {
    (void)state;
    surveil_grid g;
    core_error err = {0};
    assert_int_equal(surveil_grid_init(&g, 2, 2, &err), CORE_OK);
    int64_t v[] = {3, 40, 50, 60}; /* region A: 3 fungal, 40 eczema; region B: 50, 60 */
    g.value[0] = v[0], g.value[1] = v[1], g.value[3] = v[2], g.value[4] = v[3];
    surveil_grid_sum(&g);
    surveil_grid_suppress(&g, 11);
    assert_int_equal(g.status[0], SURVEIL_CELL_PRIMARY);
    /* 3 = 43 - 40 = 53 - 50 unless the row and the column each lose another value */
    assert_true(g.status[1] || g.status[2]);
    assert_true(g.status[3] || g.status[6]);
    assert_false(surveil_grid_disclosed(&g, NULL));
    surveil_grid_free(&g);
}

/* ---- a table broken down by source ---- */

/* The independent check for a stack (total, then n layers): is suppressed
 * entry `target` (layer * P + position) determined by every grid's row and
 * column sums and total = sum of layers at every position? */
static bool stack_determined(surveil_grid *grids, size_t G, size_t target) {
    size_t R = grids[0].rows, C = grids[0].cols, W = C + 1, P = (R + 1) * W;
    size_t *var = malloc(G * P * sizeof *var), nu = 0;
    for (size_t e = 0; e < G * P; e++) var[e] = grids[e / P].status[e % P] ? nu++ : SIZE_MAX;
    size_t m = G * (R + 1 + C + 1) + P, row = 0;
    double *A = calloc((m + 1) * nu, sizeof *A);
    for (size_t g = 0; g < G; g++) {
        for (size_t i = 0; i <= R; i++, row++)
            for (size_t j = 0; j <= C; j++)
                if (var[g * P + i * W + j] != SIZE_MAX) A[row * nu + var[g * P + i * W + j]] = j == C ? -1 : 1;
        for (size_t j = 0; j <= C; j++, row++)
            for (size_t i = 0; i <= R; i++)
                if (var[g * P + i * W + j] != SIZE_MAX) A[row * nu + var[g * P + i * W + j]] = i == R ? -1 : 1;
    }
    for (size_t p = 0; p < P; p++, row++)
        for (size_t g = 0; g < G; g++)
            if (var[g * P + p] != SIZE_MAX) A[row * nu + var[g * P + p]] = g == 0 ? -1 : 1;
    double *B = malloc((m + 1) * nu * sizeof *B);
    memcpy(B, A, m * nu * sizeof *B);
    size_t r1 = rank_of(B, m, nu);
    A[m * nu + var[target]] = 1;
    size_t r2 = rank_of(A, m + 1, nu);
    free(var);
    free(A);
    free(B);
    return r1 == r2;
}

/* Random tables split over three sources: the totals suppressed as the
 * plain release does, then the layers. No layer value below k is published,
 * the totals' pattern is the plain release's, and no suppressed value —
 * total or layer — is determined by everything published (an independent
 * rank test). Before the layers were suppressed together with the totals
 * (each source's table suppressed on its own), the same tables leaked: the
 * count of that is printed, and must be positive for the check to mean
 * something. */
static void a_breakdown_by_source_protects_random_tables(void **state) {
    (void)state;
    uint64_t seed = 20261203;
    size_t suppressed = 0, leaky_alone = 0;
    enum { S = 3 };
    for (int t = 0; t < 150; t++) {
        size_t R = 1 + lcg(&seed) % 6, C = 1 + lcg(&seed) % 5, W = C + 1, P = (R + 1) * W;
        int k = t % 3 == 0 ? 11 : (int)(2 + lcg(&seed) % 12);
        surveil_grid g[1 + S], plain;
        core_error err = {0};
        for (size_t q = 0; q <= S; q++) assert_int_equal(surveil_grid_init(&g[q], R, C, &err), CORE_OK);
        assert_int_equal(surveil_grid_init(&plain, R, C, &err), CORE_OK);
        for (size_t q = 1; q <= S; q++)
            for (size_t i = 0; i < R; i++)
                for (size_t j = 0; j < C; j++) {
                    uint64_t u = lcg(&seed) % 10; /* the model source large, the others mostly small */
                    int64_t v = u < 4 ? 0 : q == 1 && u > 6 ? (int64_t)(lcg(&seed) % 150) : (int64_t)(lcg(&seed) % 9);
                    g[q].value[i * W + j] = v;
                    g[0].value[i * W + j] += v;
                    plain.value[i * W + j] += v;
                }
        for (size_t q = 0; q <= S; q++) surveil_grid_sum(&g[q]);
        surveil_grid_sum(&plain);
        surveil_grid_suppress(&g[0], k);
        surveil_grid_suppress(&plain, k);
        /* each source alone, as a separate release would be */
        surveil_grid alone[1 + S];
        for (size_t q = 0; q <= S; q++) {
            assert_int_equal(surveil_grid_init(&alone[q], R, C, &err), CORE_OK);
            memcpy(alone[q].value, g[q].value, P * sizeof *g[q].value);
            memcpy(alone[q].status, g[q].status, P);
            if (q) surveil_grid_suppress(&alone[q], k);
        }
        bool leaked = surveil_grid_layers_disclosed(&alone[0], &alone[1], S, NULL);
        leaky_alone += leaked;
        surveil_grid_suppress_layers(&g[0], &g[1], S, k);
        assert_memory_equal(g[0].status, plain.status, P); /* the totals as the plain release shows them */
        for (size_t q = 0; q <= S; q++)
            for (size_t e = 0; e < P; e++) {
                if (g[q].status[e] == SURVEIL_CELL_PUBLISHED) assert_false(g[q].value[e] > 0 && g[q].value[e] < k);
                if (!g[q].status[e]) continue;
                suppressed++;
                if (stack_determined(g, 1 + S, q * P + e))
                    fail_msg("table %d (%zux%zu, k=%d): layer %zu entry %zu is determined", t, R, C, k, q, e);
            }
        assert_false(surveil_grid_layers_disclosed(&g[0], &g[1], S, NULL));
        for (size_t q = 0; q <= S; q++) {
            surveil_grid_free(&g[q]);
            surveil_grid_free(&alone[q]);
        }
        surveil_grid_free(&plain);
    }
    print_message("  150 tables by source: %zu values suppressed, none determined; suppressed source by source, "
                  "%zu of them leaked\n",
                  suppressed, leaky_alone);
    assert_true(leaky_alone > 0);
}

/* ---- differential privacy ---- */
static void noise_follows_the_two_sided_geometric(void **state) {
    (void)state;
    const double eps[] = {0.1, 0.5, 1.0, 2.0};
    uint8_t seed[32] = {42};
    for (size_t q = 0; q < sizeof eps / sizeof *eps; q++) {
        surveil_rng *r = surveil_rng_new(seed);
        assert_non_null(r);
        enum { N = 200000, B = 41 }; /* bins -20..20, tails folded into the ends */
        static long counts[B];
        memset(counts, 0, sizeof counts);
        double sum = 0;
        for (int i = 0; i < N; i++) {
            int64_t z = surveil_rng_geometric2(r, eps[q]);
            sum += (double)z;
            long b = z < -20 ? 0 : z > 20 ? B - 1 : (long)z + 20;
            counts[b]++;
        }
        surveil_rng_free(r);
        double a = exp(-eps[q]), chi2 = 0;
        int used = 0;
        for (int b = 0; b < B; b++) {
            int z = b - 20;
            double p = (1 - a) / (1 + a) * pow(a, abs(z));
            if (b == 0 || b == B - 1) p = pow(a, 20) / (1 + a); /* P(Z <= -20) = P(Z >= 20) */
            double e = N * p;
            if (e < 5) continue; /* chi-square needs expected counts >= 5 */
            chi2 += (counts[b] - e) * (counts[b] - e) / e;
            used++;
        }
        /* 99.9th percentile of chi-square with used-1 degrees of freedom (Wilson-Hilferty) */
        double df = used - 1, zq = 3.0902;
        double crit = df * pow(1 - 2 / (9 * df) + zq * sqrt(2 / (9 * df)), 3);
        print_message("  epsilon %.1f: chi2 %.1f on %d bins (critical %.1f), mean %.4f\n", eps[q], chi2, used, crit,
                      sum / N);
        assert_true(chi2 < crit);
        assert_true(fabs(sum / N) < 6 * sqrt(2 * a / ((1 - a) * (1 - a)) / N) + 1e-9);
    }
}

static void noisy_grid_is_consistent(void **state) {
    (void)state;
    surveil_grid g;
    core_error err = {0};
    assert_int_equal(surveil_grid_init(&g, 5, 4, &err), CORE_OK);
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < 4; j++) g.value[i * 5 + j] = (int64_t)(i * 7 + j);
    surveil_grid_sum(&g);
    uint8_t seed[32] = {7};
    surveil_grid_noise(&g, 0.5, seed);
    int64_t grand = 0;
    for (size_t i = 0; i < 5; i++) {
        int64_t row = 0;
        for (size_t j = 0; j < 4; j++) {
            assert_true(g.value[i * 5 + j] >= 0);
            row += g.value[i * 5 + j];
        }
        assert_int_equal(row, g.value[i * 5 + 4]);
        grand += row;
    }
    assert_int_equal(grand, g.value[5 * 5 + 4]);
    surveil_grid_free(&g);
}

/* ---- the pool, releases, budget, alerts (on a real store) ---- */
typedef struct {
    char dir[256];
    store *st;
} db_fixture;

static int db_setup(void **state) {
    db_fixture *f = calloc(1, sizeof *f);
    testutil_tmpdir(f->dir);
    char path[300];
    snprintf(path, sizeof path, "%s/caresync.db", f->dir);
    core_error err = {0};
    if (store_open(path, 2, &f->st, &err) != CORE_OK) return -1;
    *state = f;
    return 0;
}

static int db_teardown(void **state) {
    db_fixture *f = *state;
    store_close(f->st);
    testutil_rmdir(f->dir);
    free(f);
    return 0;
}

static surveil_contribution contrib(const char *cond, const char *region, int week) {
    surveil_contribution c = {.week = week, .age_band = 3, .source = SURVEIL_SOURCE_MODEL};
    snprintf(c.condition, sizeof c.condition, "%s", cond);
    snprintf(c.region, sizeof c.region, "%s", region);
    return c;
}

static void contributions_are_counted_once(void **state) {
    db_fixture *f = *state;
    core_error err = {0};
    int w = surveil_week_of_date(2026, 11, 23);
    surveil_contribution c = contrib("fungal", "US-CA", w);
    uint8_t mark[32] = {1};
    surveil_reward rw = {.contributor = {7}, .grant = {8}, .commitment = {9}};
    int64_t v0, v1;
    size_t queued;
    assert_int_equal(surveil_data_version(f->st, &v0, &err), CORE_OK);
    /* a sealed week is refused, whole: nothing counted, nothing queued */
    assert_int_equal(surveil_add(f->st, &c, mark, w, &rw, &err), CORE_ERR_CONFLICT);
    assert_string_equal(err.field, "week");
    assert_int_equal(surveil_rewards_queued(f->st, &queued, &err), CORE_OK);
    assert_int_equal(queued, 0);
    /* the open week: counted, the reward queued; a second time: refused */
    assert_int_equal(surveil_add(f->st, &c, mark, w - 1, &rw, &err), CORE_OK);
    assert_int_equal(surveil_add(f->st, &c, mark, w - 1, NULL, &err), CORE_ERR_CONFLICT);
    assert_string_equal(err.field, "contribution");
    /* counting into an open week leaves the version (what releases key on) alone */
    assert_int_equal(surveil_data_version(f->st, &v1, &err), CORE_OK);
    assert_int_equal(v1, v0);
    double x[1];
    bool syn;
    assert_int_equal(surveil_series(f->st, "US-CA", "fungal", w, w, x, &syn, &err), CORE_OK);
    assert_true(x[0] == 1 && !syn);
    assert_int_equal(surveil_series(f->st, "US", NULL, w, w, x, &syn, &err), CORE_OK);
    assert_true(x[0] == 1);
    /* the count is not visible to anything bounded by the sealed weeks */
    int first, last;
    assert_int_equal(surveil_extent(f->st, w - 1, &first, &last, &err), CORE_ERR_NOT_FOUND);
    assert_int_equal(surveil_extent(f->st, w, &first, &last, &err), CORE_OK);
    assert_int_equal(last, w);
    /* the queue hands out nothing below a batch, then everything */
    surveil_reward out[4];
    size_t n;
    assert_int_equal(surveil_rewards_pending(f->st, 2, out, 4, &n, &err), CORE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(surveil_rewards_pending(f->st, 1, out, 4, &n, &err), CORE_OK);
    assert_int_equal(n, 1);
    assert_memory_equal(&out[0], &rw, sizeof rw);
    assert_int_equal(surveil_rewards_done(f->st, rw.commitment, &err), CORE_OK);
    assert_int_equal(surveil_rewards_queued(f->st, &queued, &err), CORE_OK);
    assert_int_equal(queued, 0);
    /* malformed contributions are refused whole */
    surveil_contribution bad = contrib("Fungal!", "US-CA", w);
    assert_int_equal(surveil_add(f->st, &bad, NULL, w - 1, NULL, &err), CORE_ERR_INVALID);
    bad = contrib("fungal", "us-ca", w);
    assert_int_equal(surveil_add(f->st, &bad, NULL, w - 1, NULL, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "region");
    /* age bands */
    assert_int_equal(surveil_age_band(2024, 2026), 0);
    assert_int_equal(surveil_age_band(1990, 2026), 3);
    assert_int_equal(surveil_age_band(1950, 2026), 5);
    assert_int_equal(surveil_age_band(0, 2026), SURVEIL_AGE_BANDS - 1);
}

static const char *const conds[] = {"fungal", "eczema", "viral"};

static void fill(store *st, int w0, int weeks) {
    /* CA: many of everything; NV: a few fungal; OR: moderate */
    core_error err = {0};
    for (int w = w0; w < w0 + weeks; w++) {
        surveil_contribution c[6] = {contrib("fungal", "US-CA", w), contrib("eczema", "US-CA", w),
                                     contrib("viral", "US-CA", w),  contrib("fungal", "US-NV", w),
                                     contrib("fungal", "US-OR", w), contrib("eczema", "US-OR", w)};
        int64_t n[6] = {40 + w % 7, 25, 30, 3, 14, 12};
        assert_int_equal(surveil_add_counts(st, c, n, 6, false, &err), CORE_OK);
    }
}

/* Integers v with 0 < v < k anywhere under j (except week labels). */
static int count_small(const json_t *j, int k) {
    if (json_is_integer(j)) return json_integer_value(j) > 0 && json_integer_value(j) < k;
    int n = 0;
    if (json_is_array(j)) {
        size_t i;
        const json_t *v;
        json_array_foreach(j, i, v) n += count_small(v, k);
    } else if (json_is_object(j)) {
        const char *key;
        const json_t *v;
        json_object_foreach((json_t *)j, key, v) n += count_small(v, k);
    }
    return n;
}

static void releases_are_suppressed_and_logged(void **state) {
    db_fixture *f = *state;
    core_error err = {0};
    int w0 = surveil_week_of_date(2026, 1, 5);
    fill(f->st, w0, 4);
    /* rows are the caller's list (here with US-WA, which has no data) */
    static const char *const rows[] = {"US-OR", "US-CA", "US-NV", "US-WA"};
    surveil_query q = {.country = "US",
                       .week_from = w0,
                       .week_to = w0 + 3,
                       .conditions = conds,
                       .n_conditions = 3,
                       .k = 11,
                       .sealed_through = w0 + 3,
                       .regions = rows,
                       .n_regions = 4};
    surveil_release *r;
    assert_int_equal(surveil_release_build(f->st, &q, NULL, &r, &err), CORE_OK);
    json_t *j = surveil_release_json(r);
    json_t *wk = json_array_get(json_object_get(j, "weeks"), 0);
    /* regions sorted: CA, NV, OR; NV fungal (3) is suppressed, and so is a complement */
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "regions"), 1)), "US-NV");
    json_t *nv = json_array_get(json_object_get(wk, "cells"), 1);
    assert_true(json_is_null(json_array_get(nv, 0)));
    assert_true(json_is_null(json_array_get(json_object_get(wk, "region_totals"), 1))); /* NV total = 3 too */
    assert_int_equal(json_integer_value(json_array_get(json_array_get(json_object_get(wk, "cells"), 0), 1)), 25);
    assert_true(json_integer_value(json_object_get(j, "suppressed_values")) >= 4 * 3);
    /* nothing below k anywhere in the released numbers */
    assert_int_equal(count_small(json_object_get(j, "weeks"), 11), 0);
    char *csv = surveil_release_csv(j);
    assert_non_null(csv);
    assert_non_null(strstr(csv, "week,region,condition,count,status,synthetic\n"));
    assert_non_null(strstr(csv, ",US-NV,fungal,,suppressed,no"));
    assert_non_null(strstr(csv, ",US-CA,eczema,25,published,no"));
    free(csv);
    json_decref(j);

    /* exact releases cost no budget; recorded anyway */
    int64_t id;
    assert_int_equal(surveil_release_record(f->st, "org:test", r, 1.0, "{}", &id, &err), CORE_OK);
    uint8_t fp[32], qfp[32], txid[32] = {9};
    surveil_release_fingerprint(r, fp);
    /* the query alone gives the same key, so a repeat is found before any building */
    assert_int_equal(surveil_query_fingerprint(f->st, &q, qfp, &err), CORE_OK);
    assert_memory_equal(fp, qfp, 32);
    assert_true(surveil_release_epsilon(r) == 0);
    char *none;
    /* not on the ledger yet: not handed out again */
    assert_int_equal(surveil_release_find(f->st, "org:test", fp, &none, &err), CORE_ERR_NOT_FOUND);
    assert_int_equal(surveil_release_set_txid(f->st, id, txid, &err), CORE_OK);
    char *body;
    assert_int_equal(surveil_release_find(f->st, "org:test", fp, &body, &err), CORE_OK);
    assert_string_equal(body, "{}");
    free(body);
    assert_int_equal(surveil_release_find(f->st, "org:other", fp, &body, &err), CORE_ERR_NOT_FOUND);
    surveil_release_free(r);

    /* noisy releases spend epsilon until the budget is gone */
    q.epsilon = 0.4;
    double spent;
    for (int i = 0; i < 3; i++) {
        uint8_t seed[32] = {(uint8_t)i};
        assert_int_equal(surveil_release_build(f->st, &q, seed, &r, &err), CORE_OK);
        core_status rc = surveil_release_record(f->st, "org:test", r, 1.0, "{}", &id, &err);
        surveil_release_free(r);
        if (i < 2)
            assert_int_equal(rc, CORE_OK);
        else {
            assert_int_equal(rc, CORE_ERR_CONFLICT);
            assert_string_equal(err.field, "epsilon");
        }
    }
    assert_int_equal(surveil_budget_spent(f->st, "org:test", &spent, &err), CORE_OK);
    assert_true(fabs(spent - 0.8) < 1e-9);
    assert_int_equal(surveil_budget_spent(f->st, "org:other", &spent, &err), CORE_OK);
    assert_true(spent == 0);

    /* releases at a larger k nest in the base one: whatever the k=14 release
     * publishes, the k=11 release published too (with the same value), so
     * the pair reveals nothing the k=11 release did not */
    q.epsilon = 0;
    q.base_k = 11;
    surveil_release *r11, *r14;
    assert_int_equal(surveil_release_build(f->st, &q, NULL, &r11, &err), CORE_OK);
    q.k = 14;
    assert_int_equal(surveil_release_build(f->st, &q, NULL, &r14, &err), CORE_OK);
    json_t *j11 = surveil_release_json(r11), *j14 = surveil_release_json(r14);
    assert_int_equal(count_small(json_object_get(j14, "weeks"), 14), 0);
    size_t nested = 0, wi;
    json_t *w14;
    json_array_foreach(json_object_get(j14, "weeks"), wi, w14) {
        json_t *w11 = json_array_get(json_object_get(j11, "weeks"), wi);
        for (size_t i = 0; i < 3; i++)
            for (size_t c = 0; c < 3; c++) {
                json_t *a = json_array_get(json_array_get(json_object_get(w14, "cells"), i), c);
                json_t *b = json_array_get(json_array_get(json_object_get(w11, "cells"), i), c);
                if (!json_is_null(a)) {
                    assert_false(json_is_null(b));
                    assert_int_equal(json_integer_value(a), json_integer_value(b));
                    nested++;
                }
            }
    }
    assert_true(nested > 0);
    /* a view of one condition only repeats the full release's numbers */
    json_t *v = surveil_release_view(j11, "eczema");
    assert_non_null(v);
    json_t *vw = json_array_get(json_object_get(v, "weeks"), 0), *fw = json_array_get(json_object_get(j11, "weeks"), 0);
    for (size_t i = 0; i < 3; i++)
        assert_true(json_equal(json_array_get(json_array_get(json_object_get(vw, "cells"), i), 0),
                               json_array_get(json_array_get(json_object_get(fw, "cells"), i), 1)));
    assert_true(json_equal(json_object_get(vw, "total"), json_array_get(json_object_get(fw, "condition_totals"), 1)));
    assert_null(surveil_release_view(j11, "leprosy"));
    json_decref(v);
    json_decref(j11);
    json_decref(j14);
    surveil_release_free(r11);
    surveil_release_free(r14);
    q.k = 11;
    q.base_k = 14; /* k below the base: refused */
    assert_int_equal(surveil_release_build(f->st, &q, NULL, &r, &err), CORE_ERR_INVALID);
    q.base_k = 11;

    /* bad queries */
    q.k = 0;
    assert_int_equal(surveil_release_build(f->st, &q, NULL, &r, &err), CORE_ERR_INVALID);
    q.k = 11;
    q.week_to = q.week_from - 1;
    assert_int_equal(surveil_release_build(f->st, &q, NULL, &r, &err), CORE_ERR_INVALID);
    /* a week not yet sealed is never released */
    q.week_to = q.week_from + 3;
    q.sealed_through = q.week_to - 1;
    assert_int_equal(surveil_release_build(f->st, &q, NULL, &r, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "to");
    q.sealed_through = q.week_to;
    /* rows must be the country's subdivisions, each once */
    static const char *const foreign[] = {"US-CA", "MX-CMX"}, *const twice[] = {"US-CA", "US-CA"};
    q.regions = foreign;
    q.n_regions = 2;
    assert_int_equal(surveil_release_build(f->st, &q, NULL, &r, &err), CORE_ERR_INVALID);
    q.regions = twice;
    assert_int_equal(surveil_release_build(f->st, &q, NULL, &r, &err), CORE_ERR_INVALID);
    q.n_regions = 0;
    assert_int_equal(surveil_release_build(f->st, &q, NULL, &r, &err), CORE_ERR_INVALID);
}

/* A week is sealed `delay` seconds after it ends (Monday 00:00 UTC), not a
 * second earlier. */
/* A chart's series read off a logged release: the release's own values,
 * so a chart never shows what the table suppressed. */
static void a_release_reads_back_as_series(void **state) {
    db_fixture *f = *state;
    core_error err = {0};
    int w0 = surveil_week_of_date(2026, 1, 5);
    fill(f->st, w0, 4);
    static const char *const rows[] = {"US-OR", "US-CA", "US-NV", "US-WA"};
    surveil_query q = {.country = "US",
                       .week_from = w0,
                       .week_to = w0 + 3,
                       .conditions = conds,
                       .n_conditions = 3,
                       .k = 11,
                       .sealed_through = w0 + 3,
                       .regions = rows,
                       .n_regions = 4};
    surveil_release *r;
    assert_int_equal(surveil_release_build(f->st, &q, NULL, &r, &err), CORE_OK);
    json_t *rel = surveil_release_json(r);
    surveil_release_free(r);
    struct {
        const char *region, *condition;
    } ask[] = {{"US", NULL},        {"US", "eczema"}, {"US-CA", "eczema"}, {"US-CA", NULL},
               {"US-NV", "fungal"}, {"US-NV", NULL},  {"US-TX", NULL}};
    for (size_t a = 0; a < sizeof ask / sizeof ask[0]; a++) {
        json_t *weeks = json_array(), *obs = json_array();
        assert_int_equal(surveil_release_observed(rel, ask[a].region, ask[a].condition, weeks, obs, &err), CORE_OK);
        assert_int_equal(json_array_size(obs), 4);
        assert_int_equal(json_array_size(weeks), 4);
        double exact[4];
        assert_int_equal(surveil_series(f->st, ask[a].region, ask[a].condition, w0, w0 + 3, exact, NULL, &err),
                         CORE_OK);
        for (size_t i = 0; i < 4; i++) {
            char wk[9];
            surveil_week_format(w0 + (int)i, wk);
            assert_string_equal(json_string_value(json_array_get(weeks, i)), wk);
            const json_t *v = json_array_get(obs, i);
            if (!strcmp(ask[a].region, "US-NV"))
                assert_true(json_is_null(v)); /* 3: suppressed */
            else if (!strcmp(ask[a].region, "US-TX"))
                assert_true(json_is_integer(v) && json_integer_value(v) == 0);
            else
                assert_true(json_is_integer(v) && json_integer_value(v) == (json_int_t)exact[i]);
        }
        json_decref(weeks);
        json_decref(obs);
    }
    /* weeks may be left out; a condition not in the release, or no release, is refused */
    json_t *obs = json_array();
    assert_int_equal(surveil_release_observed(rel, "US-CA", "viral", NULL, obs, &err), CORE_OK);
    assert_int_equal(json_integer_value(json_array_get(obs, 0)), 30);
    assert_int_equal(surveil_release_observed(rel, "US-CA", "measles", NULL, obs, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "condition");
    json_t *empty = json_object();
    assert_int_equal(surveil_release_observed(empty, "US", NULL, NULL, obs, &err), CORE_ERR_INVALID);
    json_decref(empty);
    json_decref(obs);
    json_decref(rel);
}

static void weeks_seal_after_the_delay(void **state) {
    (void)state;
    int w = surveil_week_of_date(2026, 11, 30); /* 2026-W49 */
    int64_t end = surveil_week_start(w + 1), day = 86400;
    assert_int_equal(surveil_sealed_through(end + day - 1, day), w - 1);
    assert_int_equal(surveil_sealed_through(end + day, day), w);
    assert_int_equal(surveil_sealed_through(end - 1, 0), w - 1);
    assert_int_equal(surveil_sealed_through(end + 8 * day, day), w + 1);
}

static void the_analytics_store_holds_no_identifier(void **state) {
    db_fixture *f = *state;
    core_error err = {0};
    int w0 = surveil_week_of_date(2026, 3, 2);
    fill(f->st, w0, 2);
    /* every column of the analytics table is one of the five facts and a count */
    sqlite3 *db = store_acquire(f->st);
    sqlite3_stmt *q;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT name FROM pragma_table_info('surveil_counts') ORDER BY cid", -1, &q, NULL),
        SQLITE_OK);
    const char *want[] = {"region", "week", "condition", "age_band", "source", "synthetic", "n"};
    size_t i = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        assert_true(i < 7);
        assert_string_equal((const char *)sqlite3_column_text(q, 0), want[i++]);
    }
    assert_int_equal(i, 7);
    sqlite3_finalize(q);
    /* WITHOUT ROWID: no insertion order to line up with the ledger */
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT rowid FROM surveil_counts", -1, &q, NULL), SQLITE_ERROR);
    /* the reward queue holds what the ledger will show (wallet, consent,
     * salted commitment), none of the five facts, and no arrival order */
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT name FROM pragma_table_info('surveil_reward_queue') ORDER BY cid", -1, &q, NULL),
        SQLITE_OK);
    const char *queue_cols[] = {"commitment", "contributor", "grant"};
    i = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        assert_true(i < 3);
        assert_string_equal((const char *)sqlite3_column_text(q, 0), queue_cols[i++]);
    }
    assert_int_equal(i, 3);
    sqlite3_finalize(q);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT rowid FROM surveil_reward_queue", -1, &q, NULL), SQLITE_ERROR);
    store_release(f->st, db);
    (void)err;
}

static void cb(void *ud, const surveil_alert *a);

static void alerts_pick_their_method_by_history(void **state) {
    (void)state;
    surveil_params p;
    surveil_alert_params(0, &p);
    assert_int_equal(p.method, SURVEIL_C2);
    surveil_alert_params(52, &p);
    assert_int_equal(p.method, SURVEIL_C2);
    surveil_alert_params(2 * 52 + 11, &p);
    assert_int_equal(p.method, SURVEIL_C2);
    surveil_alert_params(2 * 52 + 12, &p);
    assert_int_equal(p.method, SURVEIL_FARRINGTON);
    assert_int_equal(p.b, 2);
    assert_int_equal(p.no_periods, 10);
    surveil_alert_params(9 * 52, &p);
    assert_int_equal(p.b, 5);
    /* and with that history the method runs: b years of weeks before the first evaluated one */
    enum { N = 2 * 52 + 12 };
    double x[N];
    surveil_point out[N];
    size_t first;
    core_error err = {0};
    for (int i = 0; i < N; i++) x[i] = 20 + (i % 5);
    surveil_alert_params(N, &p);
    assert_int_equal(surveil_detect(&p, x, N, &first, out, &err), CORE_OK);
    assert_true(first <= N - 8); /* all of the last eight weeks are evaluated */
}

/* Regression: no-periods 16 used to be accepted, and with the trend (the
 * default) the design had 17 columns for a GLM that holds 16, so every week
 * came out NA with exit status 0. The limit is now where the parameter is
 * accepted, and the largest allowed value runs. */
static void farrington_periods_fit_the_glm(void **state) {
    (void)state;
    surveil_params p;
    core_error err = {0};
    surveil_params_init(&p, SURVEIL_FARRINGTON);
    char big[8];
    snprintf(big, sizeof big, "%d", SURVEIL_MAX_PERIODS + 1);
    assert_int_equal(surveil_params_set(&p, "no-periods", big, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "no-periods");
    char most[8];
    snprintf(most, sizeof most, "%d", SURVEIL_MAX_PERIODS);
    assert_int_equal(surveil_params_set(&p, "no-periods", most, &err), CORE_OK);
    assert_int_equal(surveil_params_set(&p, "trend", "true", &err), CORE_OK);
    enum { N = 7 * 52 };
    double x[N];
    surveil_point out[N];
    size_t first;
    const double pi = 3.14159265358979323846;
    for (int i = 0; i < N; i++) x[i] = round(30 + 8 * sin(2 * pi * i / 52.0) + 0.02 * i + (i * 7) % 5);
    assert_int_equal(surveil_detect(&p, x, N, &first, out, &err), CORE_OK);
    size_t defined = 0;
    for (size_t t = 0; t < N - first; t++) defined += !isnan(out[t].upperbound) && out[t].alarm >= 0;
    assert_true(N - first >= 52);
    assert_int_equal(defined, N - first); /* every evaluated week gets an answer */
}

/* Regression: surveil_detect trusted the GLM-sizing fields of a struct
 * filled without surveil_params_set: no_periods past SURVEIL_MAX_PERIODS
 * ran and answered NA for every week with CORE_OK, and a huge b overflowed
 * the int that sizes the GLM's rows. Each is refused where it is accepted,
 * naming the parameter. */
static void detect_checks_glm_limits_of_a_filled_struct(void **state) {
    (void)state;
    enum { N = 7 * 52 };
    double x[N];
    surveil_point out[N];
    size_t first;
    for (int i = 0; i < N; i++) x[i] = 20 + (i * 7) % 5;
    static const struct {
        const char *field;
        int value;
    } bad[] = {{"no-periods", SURVEIL_MAX_PERIODS + 1},
               {"no-periods", 0},
               {"b", 1 << 28},
               {"b", 0},
               {"w", 27},
               {"freq", 0},
               {"freq", 1 << 28},
               {"past-weeks", -2}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        surveil_params p;
        surveil_params_init(&p, SURVEIL_FARRINGTON);
        if (!strcmp(bad[i].field, "no-periods"))
            p.no_periods = bad[i].value;
        else if (!strcmp(bad[i].field, "b"))
            p.b = bad[i].value;
        else if (!strcmp(bad[i].field, "w"))
            p.w = bad[i].value;
        else if (!strcmp(bad[i].field, "freq"))
            p.freq = bad[i].value;
        else
            p.past_weeks = bad[i].value;
        core_error err = {0};
        assert_int_equal(surveil_detect(&p, x, N, &first, out, &err), CORE_ERR_INVALID);
        assert_string_equal(err.field, bad[i].field);
    }
    /* CUSUM's seasonal GLM: a frequency of zero is refused too */
    surveil_params p;
    surveil_params_init(&p, SURVEIL_CUSUM);
    p.m_glm = 1;
    p.freq = 0;
    core_error err = {0};
    assert_int_equal(surveil_detect(&p, x, N, &first, out, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "freq");
}

static void alerts_are_raised_and_acknowledged(void **state) {
    db_fixture *f = *state;
    core_error err = {0};
    int w0 = surveil_week_of_date(2026, 1, 5);
    fill(f->st, w0, 30);
    /* an outbreak of eczema in Oregon in the last week */
    surveil_contribution c = contrib("eczema", "US-OR", w0 + 29);
    int64_t more = 60;
    assert_int_equal(surveil_add_counts(f->st, &c, &more, 1, false, &err), CORE_OK);
    surveil_params p;
    surveil_params_init(&p, SURVEIL_C2);
    int added;
    assert_int_equal(surveil_scan(f->st, &p, w0 + 29, 4, 11, &added, &err), CORE_OK);
    assert_true(added >= 1);
    int again;
    assert_int_equal(surveil_scan(f->st, &p, w0 + 29, 4, 11, &again, &err), CORE_OK);
    assert_int_equal(again, 0); /* stored once */
    struct {
        int n;
        int64_t id;
        bool or_eczema;
    } seen = {0};
    assert_int_equal(surveil_alerts(f->st, true, cb, &seen, &err), CORE_OK);
    assert_true(seen.or_eczema);
    assert_int_equal(surveil_alert_ack(f->st, seen.id, "analyst1", &err), CORE_OK);
    assert_int_equal(surveil_alert_ack(f->st, seen.id, "analyst1", &err), CORE_ERR_CONFLICT);
    assert_int_equal(surveil_alert_ack(f->st, 999999, "analyst1", &err), CORE_ERR_NOT_FOUND);
    int before = seen.n;
    seen.n = 0;
    assert_int_equal(surveil_alerts(f->st, true, cb, &seen, &err), CORE_OK);
    assert_int_equal(seen.n, before - 1);
}

static void cb(void *ud, const surveil_alert *a) {
    struct {
        int n;
        int64_t id;
        bool or_eczema;
    } *s = ud;
    s->n++;
    if (!strcmp(a->region, "US-OR") && !strcmp(a->condition, "eczema") && !strcmp(a->method, "c2")) {
        s->or_eczema = true;
        s->id = a->id;
        assert_int_equal(a->observed, 72);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(detectors_agree_with_r),
        cmocka_unit_test(parameters_are_validated),
        cmocka_unit_test(an_outbreak_alarms),
        cmocka_unit_test(csv_reader),
        cmocka_unit_test(csv_as_r_writes_it),
        cmocka_unit_test(iso_weeks),
        cmocka_unit_test(suppression_protects_random_tables),
        cmocka_unit_test(a_lone_small_cell_gets_a_complement),
        cmocka_unit_test(noise_follows_the_two_sided_geometric),
        cmocka_unit_test(noisy_grid_is_consistent),
        cmocka_unit_test_setup_teardown(contributions_are_counted_once, db_setup, db_teardown),
        cmocka_unit_test_setup_teardown(releases_are_suppressed_and_logged, db_setup, db_teardown),
        cmocka_unit_test_setup_teardown(a_release_reads_back_as_series, db_setup, db_teardown),
        cmocka_unit_test(weeks_seal_after_the_delay),
        cmocka_unit_test(farrington_periods_fit_the_glm),
        cmocka_unit_test(a_breakdown_by_source_protects_random_tables),
        cmocka_unit_test(detect_checks_glm_limits_of_a_filled_struct),
        cmocka_unit_test_setup_teardown(the_analytics_store_holds_no_identifier, db_setup, db_teardown),
        cmocka_unit_test_setup_teardown(alerts_are_raised_and_acknowledged, db_setup, db_teardown),
        cmocka_unit_test(alerts_pick_their_method_by_history),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
