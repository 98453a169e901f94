/* Small-cell and complementary suppression of one released table.
 *
 * The relations an attacker has are the table's sums: each interior row adds
 * up to its total (last column), each column (the totals column included)
 * adds up to the totals row. A suppressed value is disclosed when those
 * relations and the published values pin it down. Complementary suppression
 * is the usual greedy heuristic (every relation holding one suppressed value
 * gets a second, the smallest positive one) followed by an exact audit:
 * Gaussian elimination over the suppressed values; a value is determined iff
 * its pivot row has no free column left. Anything the audit finds gets one
 * more complement in one of its relations, and the audit runs again. Tables
 * are small (regions x conditions of one week), so the audit is cheap. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "surveil/surveil.h"

core_status surveil_grid_init(surveil_grid *g, size_t rows, size_t cols, core_error *err) {
    memset(g, 0, sizeof *g);
    size_t n = (rows + 1) * (cols + 1);
    g->value = calloc(n, sizeof *g->value);
    g->status = calloc(n, 1);
    if (!g->value || !g->status) {
        surveil_grid_free(g);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    g->rows = rows;
    g->cols = cols;
    return CORE_OK;
}

void surveil_grid_free(surveil_grid *g) {
    free(g->value);
    free(g->status);
    memset(g, 0, sizeof *g);
}

void surveil_grid_sum(surveil_grid *g) {
    size_t R = g->rows, C = g->cols, W = C + 1;
    for (size_t j = 0; j <= C; j++) g->value[R * W + j] = 0;
    for (size_t i = 0; i < R; i++) {
        int64_t s = 0;
        for (size_t j = 0; j < C; j++) s += g->value[i * W + j];
        g->value[i * W + C] = s;
        for (size_t j = 0; j <= C; j++) g->value[R * W + j] += g->value[i * W + j];
    }
}

/* The relations: lines 0..R are rows (row R = the totals row), lines
 * R+1 .. R+1+C are columns (the last = the totals column). Members of a line
 * are its C+1 (or R+1) entries; the last one is the line's total. */
static size_t line_count(const surveil_grid *g) { return g->rows + 1 + g->cols + 1; }
static size_t line_len(const surveil_grid *g, size_t l) { return l <= g->rows ? g->cols + 1 : g->rows + 1; }
static size_t line_member(const surveil_grid *g, size_t l, size_t m) {
    size_t W = g->cols + 1;
    return l <= g->rows ? l * W + m : m * W + (l - g->rows - 1);
}

/* Suppress the smallest positive published member of line l (a zero only
 * when nothing else is left). Returns false if the line has none. */
static bool add_complement(surveil_grid *g, size_t l) {
    size_t best = SIZE_MAX;
    for (size_t m = 0; m < line_len(g, l); m++) {
        size_t e = line_member(g, l, m);
        if (g->status[e]) continue;
        if (best == SIZE_MAX) {
            best = e;
            continue;
        }
        int64_t v = g->value[e], b = g->value[best];
        /* positive before zero, then smaller first */
        if ((v > 0 && b == 0) || ((v > 0) == (b > 0) && v < b)) best = e;
    }
    if (best == SIZE_MAX) return false;
    g->status[best] = SURVEIL_CELL_COMPLEMENTARY;
    return true;
}

/* Gauss-Jordan elimination with partial pivoting of the L × nu system A
 * (rows: linear relations over the unknown cells; overwritten), then the
 * first unknown the relations pin down — a pivot variable whose row has
 * nothing left in the free columns — as its entry (entry_of), or SIZE_MAX.
 * pivot_col (nu, zeroed) and pivot_of_row (L) are the caller's scratch. */
static size_t first_determined(double *A, size_t L, size_t nu, const size_t *entry_of, bool *pivot_col,
                               size_t *pivot_of_row) {
    size_t r = 0;
    for (size_t c = 0; c < nu && r < L; c++) {
        size_t best = r;
        for (size_t i = r + 1; i < L; i++)
            if (fabs(A[i * nu + c]) > fabs(A[best * nu + c])) best = i;
        if (fabs(A[best * nu + c]) < 1e-9) continue;
        if (best != r)
            for (size_t j = 0; j < nu; j++) {
                double t = A[r * nu + j];
                A[r * nu + j] = A[best * nu + j];
                A[best * nu + j] = t;
            }
        double piv = A[r * nu + c];
        for (size_t j = 0; j < nu; j++) A[r * nu + j] /= piv;
        for (size_t i = 0; i < L; i++) {
            if (i == r || A[i * nu + c] == 0) continue;
            double f = A[i * nu + c];
            for (size_t j = 0; j < nu; j++) A[i * nu + j] -= f * A[r * nu + j];
        }
        pivot_col[c] = true;
        pivot_of_row[r] = c;
        r++;
    }
    for (size_t i = 0; i < r; i++) {
        bool alone = true;
        for (size_t j = 0; j < nu && alone; j++)
            if (!pivot_col[j] && fabs(A[i * nu + j]) > 1e-9) alone = false;
        if (alone) return entry_of[pivot_of_row[i]];
    }
    return SIZE_MAX;
}

/* Gaussian elimination over the suppressed entries. Returns the index of a
 * determined suppressed entry, or SIZE_MAX. */
static size_t audit(const surveil_grid *g) {
    size_t total = (g->rows + 1) * (g->cols + 1);
    size_t *var = malloc(total * sizeof *var); /* entry -> unknown number */
    size_t nu = 0;
    if (!var) return 0; /* cannot audit: report the first entry as unsafe */
    for (size_t e = 0; e < total; e++) var[e] = g->status[e] ? nu++ : SIZE_MAX;
    size_t found = SIZE_MAX;
    if (nu == 0) {
        free(var);
        return found;
    }
    size_t L = line_count(g);
    double *A = calloc(L * nu, sizeof *A);
    size_t *entry_of = malloc(nu * sizeof *entry_of);
    bool *pivot_col = calloc(nu, sizeof *pivot_col);
    size_t *pivot_of_row = malloc(L * sizeof *pivot_of_row);
    if (!A || !entry_of || !pivot_col || !pivot_of_row) {
        free(var);
        free(A);
        free(entry_of);
        free(pivot_col);
        free(pivot_of_row);
        return 0;
    }
    for (size_t e = 0; e < total; e++)
        if (var[e] != SIZE_MAX) entry_of[var[e]] = e;
    /* row l: sum of interior members - total = 0, over the unknowns only */
    for (size_t l = 0; l < L; l++) {
        size_t len = line_len(g, l);
        for (size_t m = 0; m < len; m++) {
            size_t e = line_member(g, l, m);
            if (var[e] != SIZE_MAX) A[l * nu + var[e]] = m + 1 == len ? -1.0 : 1.0;
        }
    }
    found = first_determined(A, L, nu, entry_of, pivot_col, pivot_of_row);
    free(var);
    free(A);
    free(entry_of);
    free(pivot_col);
    free(pivot_of_row);
    return found;
}

bool surveil_grid_disclosed(const surveil_grid *g, size_t *index) {
    size_t e = audit(g);
    if (e == SIZE_MAX) return false;
    if (index) *index = e;
    return true;
}

void surveil_grid_suppress(surveil_grid *g, int k) {
    size_t total = (g->rows + 1) * (g->cols + 1);
    for (size_t e = 0; e < total; e++)
        if (g->value[e] > 0 && g->value[e] < k) g->status[e] = SURVEIL_CELL_PRIMARY;
    for (;;) {
        /* greedy: no relation may hold exactly one suppressed value */
        bool changed = true;
        while (changed) {
            changed = false;
            for (size_t l = 0; l < line_count(g); l++) {
                size_t n = 0;
                for (size_t m = 0; m < line_len(g, l); m++) n += g->status[line_member(g, l, m)] != 0;
                if (n == 1 && add_complement(g, l)) changed = true;
            }
        }
        size_t e = audit(g);
        if (e == SIZE_MAX) return;
        /* determined anyway: widen one of its two relations */
        size_t W = g->cols + 1, i = e / W, j = e % W;
        if (!add_complement(g, i) && !add_complement(g, g->rows + 1 + j)) {
            /* nothing left to hide behind: suppress the whole table */
            memset(g->status, SURVEIL_CELL_COMPLEMENTARY, total);
            for (size_t q = 0; q < total; q++)
                if (g->value[q] > 0 && g->value[q] < k) g->status[q] = SURVEIL_CELL_PRIMARY;
            return;
        }
    }
}

/* ---- a table broken down by source ----
 * The layers (one grid per source, same shape as the total) add up, value by
 * value, to the total grid: total[e] = sum over s of layer[s][e]. With the
 * layers' own row and column sums, those are the relations an attacker has
 * who holds the release and the plain release of the same data (which is
 * the total grid, suppressed on its own). The total's pattern is taken as
 * given and never widened here, so the plain release and this one publish
 * the same total values and together show nothing this one does not: every
 * complement goes into a layer. The audit is the same elimination as above
 * over the general relation list. */

typedef struct {
    size_t n;      /* members */
    size_t *entry; /* global entry: layer * P + position (layer 0 = the total) */
    double *coef;
} relation;

typedef struct {
    size_t P; /* positions per grid: (rows + 1) x (cols + 1) */
    size_t G; /* grids: 1 + layers */
    uint8_t **status;
    const int64_t **value;
    relation *rel;
    size_t nrel;
} stack;

static void stack_free(stack *s) {
    for (size_t i = 0; i < s->nrel; i++) {
        free(s->rel[i].entry);
        free(s->rel[i].coef);
    }
    free(s->rel);
    free(s->status);
    free(s->value);
}

static bool rel_add(stack *s, size_t n) {
    relation *r = &s->rel[s->nrel];
    r->n = 0;
    r->entry = malloc(n * sizeof *r->entry);
    r->coef = malloc(n * sizeof *r->coef);
    s->nrel++;
    return r->entry && r->coef;
}

static void rel_put(stack *s, size_t entry, double coef) {
    relation *r = &s->rel[s->nrel - 1];
    r->entry[r->n] = entry;
    r->coef[r->n++] = coef;
}

/* Every grid's rows and columns, then one relation per position. */
static bool stack_build(stack *s, const surveil_grid *total, surveil_grid *layers, size_t n) {
    size_t R = total->rows, C = total->cols, W = C + 1;
    memset(s, 0, sizeof *s);
    s->P = (R + 1) * W;
    s->G = n + 1;
    s->status = calloc(s->G, sizeof *s->status);
    s->value = calloc(s->G, sizeof *s->value);
    s->rel = calloc(s->G * (R + 1 + C + 1) + s->P, sizeof *s->rel);
    if (!s->status || !s->value || !s->rel) return false;
    s->status[0] = total->status;
    s->value[0] = total->value;
    for (size_t g = 1; g < s->G; g++) {
        s->status[g] = layers[g - 1].status;
        s->value[g] = layers[g - 1].value;
    }
    for (size_t g = 0; g < s->G; g++) {
        size_t base = g * s->P;
        for (size_t l = 0; l < line_count(total); l++) {
            size_t len = line_len(total, l);
            if (!rel_add(s, len)) return false;
            for (size_t m = 0; m < len; m++) rel_put(s, base + line_member(total, l, m), m + 1 == len ? -1.0 : 1.0);
        }
    }
    for (size_t p = 0; p < s->P; p++) {
        if (!rel_add(s, s->G)) return false;
        rel_put(s, p, -1.0);
        for (size_t g = 1; g < s->G; g++) rel_put(s, g * s->P + p, 1.0);
    }
    return true;
}

static uint8_t st_of(const stack *s, size_t e) { return s->status[e / s->P][e % s->P]; }
static int64_t val_of(const stack *s, size_t e) { return s->value[e / s->P][e % s->P]; }

/* The smallest positive published layer member of relation r (a zero when
 * nothing else is left) is suppressed; false if it has none. */
static bool stack_complement(stack *s, const relation *r) {
    size_t best = SIZE_MAX;
    for (size_t m = 0; m < r->n; m++) {
        size_t e = r->entry[m];
        if (e < s->P || st_of(s, e)) continue; /* never the total */
        if (best == SIZE_MAX) {
            best = e;
            continue;
        }
        int64_t v = val_of(s, e), b = val_of(s, best);
        if ((v > 0 && b == 0) || ((v > 0) == (b > 0) && v < b)) best = e;
    }
    if (best == SIZE_MAX) return false;
    s->status[best / s->P][best % s->P] = SURVEIL_CELL_COMPLEMENTARY;
    return true;
}

/* Elimination over the suppressed entries: one determined, or SIZE_MAX
 * (0 when memory ran out: the caller treats that as unsafe). */
static size_t stack_audit(const stack *s) {
    size_t total = s->G * s->P, nu = 0;
    size_t *var = malloc(total * sizeof *var);
    if (!var) return 0;
    for (size_t e = 0; e < total; e++) var[e] = st_of(s, e) ? nu++ : SIZE_MAX;
    if (nu == 0) {
        free(var);
        return SIZE_MAX;
    }
    size_t L = 0;
    for (size_t i = 0; i < s->nrel; i++) {
        bool any = false;
        for (size_t m = 0; m < s->rel[i].n && !any; m++) any = var[s->rel[i].entry[m]] != SIZE_MAX;
        L += any;
    }
    double *A = calloc(L * nu, sizeof *A);
    size_t *entry_of = malloc(nu * sizeof *entry_of), *pivot_of_row = malloc((L ? L : 1) * sizeof *pivot_of_row);
    bool *pivot_col = calloc(nu, sizeof *pivot_col);
    size_t found = SIZE_MAX;
    if (!A || !entry_of || !pivot_of_row || !pivot_col) {
        found = 0;
        goto out;
    }
    for (size_t e = 0; e < total; e++)
        if (var[e] != SIZE_MAX) entry_of[var[e]] = e;
    size_t row = 0;
    for (size_t i = 0; i < s->nrel; i++) {
        bool any = false;
        for (size_t m = 0; m < s->rel[i].n; m++)
            if (var[s->rel[i].entry[m]] != SIZE_MAX) {
                A[row * nu + var[s->rel[i].entry[m]]] = s->rel[i].coef[m];
                any = true;
            }
        row += any;
    }
    found = first_determined(A, L, nu, entry_of, pivot_col, pivot_of_row);
out:
    free(var);
    free(A);
    free(entry_of);
    free(pivot_of_row);
    free(pivot_col);
    return found;
}

/* Suppress every layer entirely: what is left is the total, which is safe
 * on its own. */
static void stack_hide_layers(stack *s, int k) {
    for (size_t g = 1; g < s->G; g++)
        for (size_t p = 0; p < s->P; p++)
            s->status[g][p] =
                s->value[g][p] > 0 && s->value[g][p] < k ? SURVEIL_CELL_PRIMARY : SURVEIL_CELL_COMPLEMENTARY;
}

void surveil_grid_suppress_layers(const surveil_grid *total, surveil_grid *layers, size_t n, int k) {
    stack s;
    if (n == 0) return;
    if (!stack_build(&s, total, layers, n)) {
        stack_free(&s);
        /* cannot audit: publish no layer value at all */
        for (size_t g = 0; g < n; g++)
            memset(layers[g].status, SURVEIL_CELL_COMPLEMENTARY, (total->rows + 1) * (total->cols + 1));
        return;
    }
    for (size_t g = 1; g < s.G; g++)
        for (size_t p = 0; p < s.P; p++)
            if (s.value[g][p] > 0 && s.value[g][p] < k) s.status[g][p] = SURVEIL_CELL_PRIMARY;
    for (;;) {
        bool changed = true, stuck = false;
        while (changed && !stuck) {
            changed = false;
            for (size_t i = 0; i < s.nrel && !stuck; i++) {
                size_t c = 0;
                for (size_t m = 0; m < s.rel[i].n; m++) c += st_of(&s, s.rel[i].entry[m]) != 0;
                if (c != 1) continue;
                if (stack_complement(&s, &s.rel[i]))
                    changed = true;
                else
                    stuck = true; /* a lone suppressed value nothing in its relation can cover */
            }
        }
        size_t e = stuck ? 0 : stack_audit(&s);
        if (e == SIZE_MAX) break;
        /* determined anyway: widen one of the relations it is in */
        bool widened = false;
        for (size_t i = 0; i < s.nrel && !widened && !stuck; i++)
            for (size_t m = 0; m < s.rel[i].n && !widened; m++)
                if (s.rel[i].entry[m] == e) widened = stack_complement(&s, &s.rel[i]);
        if (!widened) {
            stack_hide_layers(&s, k);
            break;
        }
    }
    stack_free(&s);
}

bool surveil_grid_layers_disclosed(const surveil_grid *total, surveil_grid *layers, size_t n, size_t *index) {
    stack s;
    bool ok = stack_build(&s, total, layers, n);
    size_t e = ok ? stack_audit(&s) : 0;
    stack_free(&s);
    if (e == SIZE_MAX) return false;
    if (index) *index = e;
    return true;
}
