/* Weekly series from CSV text (RFC 4180, as R's write.csv or a spreadsheet
 * writes it). The text is untrusted (an analyst's file, a fuzzer): every
 * cell is bounded, every number checked, and a failure names the line and
 * column. */
#include <csv.h>
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "surveil/surveil.h"

#define CELL_MAX 128

struct surveil_table {
    size_t weeks, series;
    char **names;   /* series names */
    char **labels;  /* weeks' labels, or NULL */
    double *counts; /* series-major: counts[j * weeks + i] */
};

void surveil_table_free(surveil_table *t) {
    if (!t) return;
    for (size_t j = 0; j < t->series; j++) free(t->names[j]);
    if (t->labels)
        for (size_t i = 0; i < t->weeks; i++) free(t->labels[i]);
    free(t->names);
    free(t->labels);
    free(t->counts);
    free(t);
}

size_t surveil_table_weeks(const surveil_table *t) { return t->weeks; }
size_t surveil_table_series(const surveil_table *t) { return t->series; }
const char *surveil_table_name(const surveil_table *t, size_t j) { return j < t->series ? t->names[j] : NULL; }
const char *surveil_table_label(const surveil_table *t, size_t i) {
    return t->labels && i < t->weeks ? t->labels[i] : NULL;
}
const double *surveil_table_counts(const surveil_table *t, size_t j) {
    return j < t->series ? t->counts + j * t->weeks : NULL;
}

/* ---- reading: libcsv (RFC 4180) splits, this file checks ----
 *
 * libcsv is fed one physical line at a time so every message can name its
 * line; its callbacks hand over one field, then the end of a record. A
 * record is kept in `cur` (the cells of one row, back to back) until its
 * end, then checked and stored: the header's cells become names, a week's
 * cells a label and counts. Counts are stored week by week as they come
 * and turned series-major at the end. */

/* libcsv grows its field buffer through this; refusing beyond a bound keeps
 * a hostile multi-megabyte quoted field from being buffered whole. The bound
 * leaves room for blanks around a cell that is itself under CELL_MAX. */
#define FIELD_BUF_MAX 4096
static void *bounded_realloc(void *p, size_t n) { return n > FIELD_BUF_MAX ? NULL : realloc(p, n); }

typedef struct {
    surveil_table *t;
    core_error *err;
    core_status st;
    size_t line; /* physical line being fed, 1-based */
    /* the record being read */
    char *cur; /* cells, each NUL-terminated, back to back */
    size_t cur_len, cur_cap;
    size_t *off; /* offsets of the cells in cur */
    size_t n, off_cap;
    /* the table so far */
    size_t cols; /* header's columns; 0 until the header is read */
    size_t skip; /* 1 when the first column is R's row names, dropped */
    int lab;     /* column `skip` holds the weeks' labels */
    size_t weeks;
    double *rows;    /* week-major counts of the series columns */
    size_t rows_cap; /* in weeks */
    size_t labels_cap;
} reader;

static int is_number(const char *s, double *v) {
    char *end;
    if (!*s) return 0;
    double d = strtod(s, &end);
    if (*end || !isfinite(d)) return 0;
    *v = d;
    return 1;
}

static int label_header(const char *h) {
    static const char *const names[] = {"week", "date", "time", "t", "period", "label"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcasecmp(h, names[i])) return 1;
    return 0;
}

static void fail_nomem(reader *r) {
    if (r->st == CORE_OK) r->st = core_fail(r->err, CORE_ERR_NOMEM, NULL, "out of memory");
}

static void on_field(void *data, size_t len, void *ctx) {
    reader *r = ctx;
    if (r->st != CORE_OK) return;
    const char *p = data ? data : "", *e = p + (data ? len : 0);
    /* Blanks around a cell mean nothing (libcsv trims them outside quotes). */
    while (p < e && isspace((unsigned char)*p)) p++;
    while (e > p && isspace((unsigned char)e[-1])) e--;
    size_t cl = (size_t)(e - p);
    if (cl >= CELL_MAX) {
        r->st = core_fail(r->err, CORE_ERR_INVALID, "csv", "line %zu: a cell is longer than %d characters", r->line,
                          CELL_MAX - 1);
        return;
    }
    /* Names and labels are printed back one to a CSV line, so a line break
     * or other control character (a NUL too) inside quotes is refused. */
    for (size_t i = 0; i < cl; i++)
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f) {
            r->st = core_fail(r->err, CORE_ERR_INVALID, "csv",
                              "line %zu: a cell holds a line break or another control character", r->line);
            return;
        }
    /* Never more cells than the header has: a row is refused as soon as it
     * overflows, so memory follows the header, not the input. */
    if (r->cols && r->n >= r->cols) {
        r->st = core_fail(r->err, CORE_ERR_INVALID, "csv", "line %zu: more columns than the header's %zu", r->line,
                          r->cols);
        return;
    }
    if (r->n == r->off_cap) {
        size_t cap = r->off_cap ? r->off_cap * 2 : 16;
        size_t *o = realloc(r->off, cap * sizeof *o);
        if (!o) return fail_nomem(r);
        r->off = o;
        r->off_cap = cap;
    }
    if (r->cur_len + cl + 1 > r->cur_cap) {
        size_t cap = r->cur_cap ? r->cur_cap : 256;
        while (cap < r->cur_len + cl + 1) cap *= 2;
        char *c = realloc(r->cur, cap);
        if (!c) return fail_nomem(r);
        r->cur = c;
        r->cur_cap = cap;
    }
    memcpy(r->cur + r->cur_len, p, cl);
    r->cur[r->cur_len + cl] = 0;
    r->off[r->n++] = r->cur_len;
    r->cur_len += cl + 1;
}

#define CELL(r, j) ((r)->cur + (r)->off[j])

static void header(reader *r) {
    surveil_table *t = r->t;
    r->cols = r->n;
    t->names = calloc(r->cols, sizeof(char *));
    if (!t->names) return fail_nomem(r);
    t->series = r->cols; /* provisional: the first week decides which columns are series */
    for (size_t j = 0; j < r->cols; j++) {
        const char *name = CELL(r, j);
        /* the first column may go unnamed: labels, or R's row names */
        if (!*name && !(j == 0 && r->cols >= 2)) {
            r->st = core_fail(r->err, CORE_ERR_INVALID, "csv", "line %zu: column %zu has no name", r->line, j + 1);
            return;
        }
        t->names[j] = strdup(name);
        if (!t->names[j]) return fail_nomem(r);
    }
}

/* Which leading columns are not series, decided on the first week: labels
 * are a first column named like week or holding something other than a
 * number. R's write.csv puts the row names first under an empty name; they
 * are dropped when the next column holds the labels or when they are R's
 * default 1, 2, 3 …, and kept as the labels when they are not numbers. */
static void layout(reader *r) {
    double v;
    const char *const *names = (const char *const *)r->t->names;
    if (r->cols >= 2 && !*names[0]) {
        r->skip = r->cols >= 3 && (label_header(names[1]) || !is_number(CELL(r, 1), &v));
        r->lab = r->skip || !is_number(CELL(r, 0), &v);
        if (!r->lab) r->skip = 1;
    } else {
        r->lab = r->cols >= 2 && (label_header(names[0]) || !is_number(CELL(r, 0), &v));
    }
}

static void week(reader *r) {
    surveil_table *t = r->t;
    if (r->n != r->cols) {
        r->st = core_fail(r->err, CORE_ERR_INVALID, "csv", "line %zu: %zu columns where the header has %zu", r->line,
                          r->n, r->cols);
        return;
    }
    if (r->weeks + 1 > SURVEIL_TABLE_MAX_CELLS / r->cols) {
        r->st = core_fail(r->err, CORE_ERR_INVALID, "csv", "too many cells (at most %u)", SURVEIL_TABLE_MAX_CELLS);
        return;
    }
    if (r->weeks == 0) layout(r);
    size_t first = r->skip + (size_t)r->lab, nser = r->cols - first;
    if (r->weeks == r->rows_cap) {
        size_t cap = r->rows_cap ? r->rows_cap * 2 : 64;
        double *rows = realloc(r->rows, cap * nser * sizeof *rows);
        if (!rows) return fail_nomem(r);
        r->rows = rows;
        r->rows_cap = cap;
    }
    if (r->lab && r->weeks == r->labels_cap) {
        size_t cap = r->labels_cap ? r->labels_cap * 2 : 64;
        char **labels = realloc(t->labels, cap * sizeof *labels);
        if (!labels) return fail_nomem(r);
        t->labels = labels;
        r->labels_cap = cap;
    }
    if (r->lab && !(t->labels[r->weeks] = strdup(CELL(r, r->skip)))) return fail_nomem(r);
    for (size_t j = first; j < r->cols; j++) {
        const char *cell = CELL(r, j);
        double v = 0;
        if (!strcmp(cell, "NA")) /* R writes a missing value as NA; the detectors need every week. */
            r->st = core_fail(r->err, CORE_ERR_INVALID, "csv",
                              "line %zu, column %zu: a missing count (NA); every week needs a count", r->line, j + 1);
        else if (!is_number(cell, &v) || v < 0)
            r->st = core_fail(r->err, CORE_ERR_INVALID, "csv", "line %zu, column %zu: '%s' is not a count", r->line,
                              j + 1, cell);
        if (r->st != CORE_OK) {
            if (r->lab) free(t->labels[r->weeks]);
            return;
        }
        r->rows[r->weeks * nser + (j - first)] = v;
    }
    r->weeks++;
}

static void on_record(int term, void *ctx) {
    (void)term;
    reader *r = ctx;
    if (r->st == CORE_OK) {
        if (r->cols == 0)
            header(r);
        else
            week(r);
    }
    r->n = 0;
    r->cur_len = 0;
}

core_status surveil_table_parse_csv(const char *text, size_t len, surveil_table **out, core_error *err) {
    *out = NULL;
    reader r = {.err = err, .st = CORE_OK};
    r.t = calloc(1, sizeof *r.t);
    struct csv_parser csv;
    if (!r.t || csv_init(&csv, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0) {
        free(r.t);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    csv_set_realloc_func(&csv, bounded_realloc);
    /* A UTF-8 byte order mark (Excel's "CSV UTF-8") is not part of the first name. */
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) {
        text += 3;
        len -= 3;
    }
    int cerr = 0;
    for (const char *p = text, *e = text + len; p < e && r.st == CORE_OK && !cerr;) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        size_t n = (size_t)((nl ? nl + 1 : e) - p);
        r.line++;
        if (csv_parse(&csv, p, n, on_field, on_record, &r) != n) cerr = csv_error(&csv);
        p += n;
    }
    if (r.st == CORE_OK && !cerr && csv_fini(&csv, on_field, on_record, &r) != 0) cerr = csv_error(&csv);
    if (r.st == CORE_OK && cerr)
        r.st = cerr == CSV_EPARSE
                   ? core_fail(err, CORE_ERR_INVALID, "csv",
                               "line %zu: bad quoting (a quoted cell is quoted whole, a quote inside it is "
                               "written twice, and it is closed before the end of the file)",
                               r.line)
                   : core_fail(err, CORE_ERR_INVALID, "csv", "line %zu: a cell is longer than %d characters", r.line,
                               CELL_MAX - 1);
    csv_free(&csv);
    free(r.cur);
    free(r.off);
    surveil_table *t = r.t;
    size_t first = r.skip + (size_t)r.lab, nser = r.cols - first;
    if (r.st == CORE_OK && r.cols == 0) r.st = core_fail(err, CORE_ERR_INVALID, "csv", "the file is empty");
    if (r.st == CORE_OK && r.weeks == 0)
        r.st = core_fail(err, CORE_ERR_INVALID, "csv", "the file has a header but no weeks");
    t->weeks = r.weeks;
    if (r.st == CORE_OK && !(t->counts = malloc(nser * r.weeks * sizeof(double)))) fail_nomem(&r);
    if (r.st != CORE_OK) {
        free(r.rows);
        surveil_table_free(t);
        return r.st;
    }
    /* series-major, without the row-name and label columns */
    for (size_t j = 0; j < nser; j++)
        for (size_t i = 0; i < r.weeks; i++) t->counts[j * r.weeks + i] = r.rows[i * nser + j];
    free(r.rows);
    for (size_t j = 0; j < first; j++) free(t->names[j]);
    memmove(t->names, t->names + first, nser * sizeof(char *));
    t->series = nser;
    *out = t;
    return CORE_OK;
}
