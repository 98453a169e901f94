/* Weekly series from CSV text. The text is untrusted (an analyst's file,
 * a fuzzer): every cell is bounded, every number checked, and a failure
 * names the line and column. */
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

/* A line split into cells (pointers into a private copy of the line),
 * sized for the longest line of the file. */
typedef struct {
    char *buf;
    size_t buf_cap;
    char **cell;
    size_t cell_cap;
    size_t n;
} row;

/* Split [s, e) at commas, trimming blanks and a trailing \r. */
static int split(const char *s, const char *e, row *r, size_t line, core_error *err) {
    r->n = 0;
    size_t len = (size_t)(e - s);
    if (len && s[len - 1] == '\r') len--;
    size_t cap = r->buf_cap - 1;
    const char *p = s, *end = s + len;
    char *out = r->buf;
    for (;;) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        const char *ce = c ? c : end;
        while (p < ce && isspace((unsigned char)*p)) p++;
        const char *q = ce;
        while (q > p && isspace((unsigned char)q[-1])) q--;
        size_t cl = (size_t)(q - p);
        if (cl >= CELL_MAX) return core_fail(err, CORE_ERR_INVALID, "csv", "line %zu: a cell is longer than %d characters", line, CELL_MAX - 1), -1;
        if (r->n >= r->cell_cap || (size_t)(out - r->buf) + cl + 1 > cap)
            return core_fail(err, CORE_ERR_INVALID, "csv", "line %zu: too many columns", line), -1;
        for (size_t i = 0; i < cl; i++)
            if (p[i] == '"' || (unsigned char)p[i] < 0x20)
                return core_fail(err, CORE_ERR_INVALID, "csv", "line %zu: quotes and control characters are not supported", line), -1;
        memcpy(out, p, cl);
        out[cl] = 0;
        r->cell[r->n++] = out;
        out += cl + 1;
        if (!c) break;
        p = c + 1;
    }
    return 0;
}

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

core_status surveil_table_parse_csv(const char *text, size_t len, surveil_table **out, core_error *err) {
    *out = NULL;
    row *r = calloc(1, sizeof *r);
    surveil_table *t = calloc(1, sizeof *t);
    if (!r || !t) {
        free(r);
        free(t);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    /* Count the lines that hold something, and the longest line and the
     * most commas, to size everything once. */
    size_t lines = 0, longest = 0, commas = 0;
    for (const char *p = text, *e = text + len; p < e;) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        const char *le = nl ? nl : e;
        size_t c = 0;
        bool content = false;
        for (const char *q = p; q < le; q++) {
            if (!isspace((unsigned char)*q)) content = true;
            c += *q == ',';
        }
        if (content) {
            lines++;
            if ((size_t)(le - p) > longest) longest = (size_t)(le - p);
            if (c > commas) commas = c;
        }
        p = nl ? nl + 1 : e;
    }
    r->buf_cap = longest + 2;
    r->cell_cap = commas + 1;
    r->buf = malloc(r->buf_cap);
    r->cell = malloc(r->cell_cap * sizeof *r->cell);
    if (!r->buf || !r->cell) {
        free(r->buf);
        free(r->cell);
        free(r);
        free(t);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    core_status st = CORE_OK;
    size_t line = 0, cols = 0, lab = 0, week = 0;
    for (const char *p = text, *e = text + len; p < e && st == CORE_OK;) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        const char *le = nl ? nl : e;
        line++;
        const char *q = p;
        while (q < le && isspace((unsigned char)*q)) q++;
        p = nl ? nl + 1 : e;
        if (q == le) continue; /* blank line */
        if (memchr(q, 0, (size_t)(le - q))) {
            st = core_fail(err, CORE_ERR_INVALID, "csv", "line %zu: NUL byte", line);
            break;
        }
        if (split(q, le, r, line, err) != 0) {
            st = err->code;
            break;
        }
        if (cols == 0) { /* header */
            cols = r->n;
            lab = cols >= 2 && label_header(r->cell[0]);
            if (lines < 2) {
                st = core_fail(err, CORE_ERR_INVALID, "csv", "the file has a header but no weeks");
                break;
            }
            /* a non-numeric first cell in the first data row also marks labels: decided below */
            t->series = cols; /* provisional, fixed once labels are known */
            t->weeks = lines - 1;
            if (cols * t->weeks > SURVEIL_TABLE_MAX_CELLS) {
                st = core_fail(err, CORE_ERR_INVALID, "csv", "too many cells (at most %u)", SURVEIL_TABLE_MAX_CELLS);
                break;
            }
            t->names = calloc(cols, sizeof(char *));
            t->counts = malloc(cols * t->weeks * sizeof(double));
            t->labels = calloc(t->weeks, sizeof(char *));
            if (!t->names || !t->counts || !t->labels) {
                st = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
                break;
            }
            for (size_t j = 0; j < cols; j++) {
                if (!*r->cell[j] && !(j == 0 && cols >= 2)) {
                    st = core_fail(err, CORE_ERR_INVALID, "csv", "line 1: column %zu has no name", j + 1);
                    break;
                }
                t->names[j] = strdup(r->cell[j]);
                if (!t->names[j]) st = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
            }
            continue;
        }
        if (r->n != cols) {
            st = core_fail(err, CORE_ERR_INVALID, "csv", "line %zu: %zu columns where the header has %zu", line, r->n, cols);
            break;
        }
        double v;
        if (week == 0 && !lab && cols >= 2 && !is_number(r->cell[0], &v)) lab = 1;
        for (size_t j = 0; j < cols && st == CORE_OK; j++) {
            if (j == 0 && lab) {
                t->labels[week] = strdup(r->cell[0]);
                if (!t->labels[week]) st = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
                continue;
            }
            if (!is_number(r->cell[j], &v) || v < 0)
                st = core_fail(err, CORE_ERR_INVALID, "csv", "line %zu, column %zu: '%s' is not a count", line, j + 1,
                               r->cell[j]);
            else
                t->counts[j * t->weeks + week] = v;
        }
        week++;
    }
    free(r->buf);
    free(r->cell);
    free(r);
    if (st == CORE_OK && cols == 0) st = core_fail(err, CORE_ERR_INVALID, "csv", "the file is empty");
    if (st == CORE_OK && lab && cols < 2) st = core_fail(err, CORE_ERR_INVALID, "csv", "no series besides the labels");
    if (st != CORE_OK) {
        surveil_table_free(t);
        return st;
    }
    if (lab) {
        /* drop the label column: shift names and counts left by one */
        free(t->names[0]);
        memmove(t->names, t->names + 1, (cols - 1) * sizeof(char *));
        memmove(t->counts, t->counts + t->weeks, (cols - 1) * t->weeks * sizeof(double));
        t->series = cols - 1;
    } else {
        free(t->labels);
        t->labels = NULL;
    }
    *out = t;
    return CORE_OK;
}
