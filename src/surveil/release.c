/* Releases: a query's counts as one protected grid per week, their JSON and
 * CSV forms, and the log + privacy budget every release passes through. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "surveil/surveil.h"

struct surveil_release {
    char country[3];
    int week_from, week_to;
    int k, base_k;
    double epsilon;
    int64_t version;
    char **conditions;
    size_t n_conditions;
    char (*regions)[8];
    size_t n_regions;
    surveil_grid *grids; /* one per week */
    bool by_source;
    surveil_grid *layers; /* by_source: week w's layer for source s at [w * SURVEIL_SOURCES + s] */
    bool synthetic;
    size_t published;
};

void surveil_release_free(surveil_release *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_conditions; i++) free(r->conditions[i]);
    free(r->conditions);
    free(r->regions);
    if (r->grids)
        for (int w = 0; w <= r->week_to - r->week_from; w++) surveil_grid_free(&r->grids[w]);
    free(r->grids);
    if (r->layers)
        for (int e = 0; e < (r->week_to - r->week_from + 1) * SURVEIL_SOURCES; e++) surveil_grid_free(&r->layers[e]);
    free(r->layers);
    free(r);
}

static int region_index(const surveil_release *r, const char *code) {
    size_t lo = 0, hi = r->n_regions;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(r->regions[mid], code);
        if (c == 0) return (int)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static int condition_index(const surveil_release *r, const char *code) {
    for (size_t j = 0; j < r->n_conditions; j++)
        if (strcmp(r->conditions[j], code) == 0) return (int)j;
    return -1;
}

/* A country's regions are the key range [CC-, CC.) ('.' follows '-'), which
 * the primary key's index serves: ?1 and ?4 bound it, ?2 and ?3 the weeks. */
static void bind_country_weeks(sqlite3_stmt *q, const surveil_release *r, const char *pattern) {
    char hi[8];
    snprintf(hi, sizeof hi, "%.2s.", pattern);
    sqlite3_bind_text(q, 1, pattern, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 4, hi, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 2, r->week_from);
    sqlite3_bind_int(q, 3, r->week_to);
}

static int region_cmp(const void *a, const void *b) { return strcmp(a, b); }

/* The rows are the caller's list (every subdivision of the country), never
 * the regions that happen to have data: a row appearing once its first
 * contribution is sealed would say where that contributor lives. */
static core_status copy_regions(surveil_release *r, const surveil_query *q, core_error *err) {
    if (q->n_regions == 0 || q->n_regions > 10000 || !q->regions)
        return core_fail(err, CORE_ERR_INVALID, "country", "no subdivisions known for this country");
    r->regions = calloc(q->n_regions, sizeof *r->regions);
    if (!r->regions) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    size_t pl = strlen(r->country);
    for (size_t i = 0; i < q->n_regions; i++) {
        const char *code = q->regions[i];
        size_t l = strlen(code);
        if (l < 4 || l >= sizeof r->regions[0] || strncmp(code, r->country, pl) != 0 || code[pl] != '-')
            return core_fail(err, CORE_ERR_INVALID, "regions", "'%s' is not a subdivision of %s", code, r->country);
        memcpy(r->regions[r->n_regions++], code, l + 1);
    }
    qsort(r->regions, r->n_regions, sizeof *r->regions, region_cmp);
    for (size_t i = 1; i < r->n_regions; i++)
        if (strcmp(r->regions[i - 1], r->regions[i]) == 0)
            return core_fail(err, CORE_ERR_INVALID, "regions", "'%s' is listed twice", r->regions[i]);
    return CORE_OK;
}

static core_status load_counts(store *st, sqlite3 *db, surveil_release *r, const char *pattern, core_error *err) {
    sqlite3_stmt *q;
    core_status rc = store_prepare_cached(st, db,
                                          "SELECT region, week, condition, sum(n), max(synthetic) FROM surveil_counts "
                                          "WHERE region >= ?1 AND region < ?4 AND week BETWEEN ?2 AND ?3 "
                                          "GROUP BY region, week, condition",
                                          &q, err);
    if (rc) return rc;
    bind_country_weeks(q, r, pattern);
    int s;
    while ((s = sqlite3_step(q)) == SQLITE_ROW) {
        int i = region_index(r, (const char *)sqlite3_column_text(q, 0));
        int j = condition_index(r, (const char *)sqlite3_column_text(q, 2));
        if (i < 0 || j < 0) continue;
        surveil_grid *g = &r->grids[sqlite3_column_int(q, 1) - r->week_from];
        g->value[(size_t)i * (g->cols + 1) + (size_t)j] = sqlite3_column_int64(q, 3);
        if (sqlite3_column_int(q, 4)) r->synthetic = true;
    }
    if (s != SQLITE_DONE) rc = store_error(db, err);
    sqlite3_reset(q);
    return rc;
}

/* The same counts per source, into the layers; the total's interior is
 * their sum (filled later, after any noise). */
static core_status load_layers(store *st, sqlite3 *db, surveil_release *r, const char *pattern, core_error *err) {
    sqlite3_stmt *q;
    core_status rc = store_prepare_cached(st, db,
                                          "SELECT region, week, condition, source, sum(n), max(synthetic) "
                                          "FROM surveil_counts WHERE region >= ?1 AND region < ?4 "
                                          "AND week BETWEEN ?2 AND ?3 GROUP BY region, week, condition, source",
                                          &q, err);
    if (rc) return rc;
    bind_country_weeks(q, r, pattern);
    int s;
    while ((s = sqlite3_step(q)) == SQLITE_ROW) {
        int i = region_index(r, (const char *)sqlite3_column_text(q, 0));
        int j = condition_index(r, (const char *)sqlite3_column_text(q, 2));
        int src = sqlite3_column_int(q, 3);
        if (i < 0 || j < 0 || src < 0 || src >= SURVEIL_SOURCES) continue;
        surveil_grid *g = &r->layers[(sqlite3_column_int(q, 1) - r->week_from) * SURVEIL_SOURCES + src];
        g->value[(size_t)i * (g->cols + 1) + (size_t)j] = sqlite3_column_int64(q, 4);
        if (sqlite3_column_int(q, 5)) r->synthetic = true;
    }
    if (s != SQLITE_DONE) rc = store_error(db, err);
    sqlite3_reset(q);
    return rc;
}

/* A distinct reproducible noise stream per (week, layer) from a test's seed. */
static void stream_seed(const uint8_t *seed, int w, int layer, uint8_t out[32]) {
    uint8_t in[40];
    memcpy(in, seed, 32);
    memcpy(in + 32, &w, 4);
    memcpy(in + 36, &layer, 4);
    /* layer -1 (the plain release's grid) keeps the stream it always had */
    cs_crypto_hash(out, "caresync-dp-week", in, layer < 0 ? 36 : sizeof in);
}

core_status surveil_release_build(store *st, const surveil_query *q, const uint8_t *seed, surveil_release **out,
                                  core_error *err) {
    *out = NULL;
    if (strlen(q->country) != 2 || q->country[0] < 'A' || q->country[0] > 'Z' || q->country[1] < 'A' ||
        q->country[1] > 'Z')
        return core_fail(err, CORE_ERR_INVALID, "country", "country must be an ISO 3166-1 alpha-2 code such as US");
    if (q->week_to < q->week_from) return core_fail(err, CORE_ERR_INVALID, "to", "the period ends before it starts");
    if (q->week_to - q->week_from >= 520) return core_fail(err, CORE_ERR_INVALID, "from", "at most 520 weeks at once");
    if (q->week_to > q->sealed_through) {
        char wk[9];
        surveil_week_format(q->sealed_through, wk);
        return core_fail(err, CORE_ERR_INVALID, "to", "only closed weeks are released (the latest is %s)", wk);
    }
    if (q->k < 1 || q->k > 1000) return core_fail(err, CORE_ERR_INVALID, "k", "k must be from 1 to 1000");
    if (q->base_k > q->k) return core_fail(err, CORE_ERR_INVALID, "k", "k must be at least %d", q->base_k);
    if (!(q->epsilon >= 0 && q->epsilon <= 10))
        return core_fail(err, CORE_ERR_INVALID, "epsilon", "epsilon must be from 0 (exact) to 10");
    if (q->n_conditions == 0) return core_fail(err, CORE_ERR_INVALID, "condition", "no conditions asked for");
    surveil_release *r = calloc(1, sizeof *r);
    if (!r) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    memcpy(r->country, q->country, 3);
    r->week_from = q->week_from;
    r->week_to = q->week_to;
    r->k = q->k;
    r->base_k = q->base_k;
    r->epsilon = q->epsilon;
    r->by_source = q->by_source;
    r->conditions = calloc(q->n_conditions, sizeof *r->conditions);
    core_status rc = r->conditions ? CORE_OK : core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    for (size_t j = 0; j < q->n_conditions && !rc; j++) {
        r->conditions[j] = strdup(q->conditions[j]);
        r->n_conditions++;
        if (!r->conditions[j]) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    char pattern[8];
    snprintf(pattern, sizeof pattern, "%s-", r->country);
    if (!rc) rc = surveil_data_version(st, &r->version, err);
    sqlite3 *db = store_acquire(st);
    /* one read transaction: the regions and the counts agree */
    if (!rc && sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) rc = store_error(db, err);
    if (!rc) {
        rc = copy_regions(r, q, err);
        size_t weeks = (size_t)(r->week_to - r->week_from + 1);
        if (!rc) {
            r->grids = calloc(weeks, sizeof *r->grids);
            if (!r->grids) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        }
        for (size_t w = 0; w < weeks && !rc; w++)
            rc = surveil_grid_init(&r->grids[w], r->n_regions, r->n_conditions, err);
        if (!rc && r->by_source) {
            r->layers = calloc(weeks * SURVEIL_SOURCES, sizeof *r->layers);
            if (!r->layers) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
            for (size_t e = 0; e < weeks * SURVEIL_SOURCES && !rc; e++)
                rc = surveil_grid_init(&r->layers[e], r->n_regions, r->n_conditions, err);
            if (!rc) rc = load_layers(st, db, r, pattern, err);
        } else if (!rc) {
            rc = load_counts(st, db, r, pattern, err);
        }
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    }
    store_release(st, db);
    if (rc) {
        surveil_release_free(r);
        return rc;
    }
    for (int w = 0; w <= r->week_to - r->week_from; w++) {
        surveil_grid *g = &r->grids[w];
        if (r->by_source) {
            /* Noise goes into each source's values (one contribution moves
             * one of them by one); the total is their sum, post-processing. */
            surveil_grid *lay = &r->layers[w * SURVEIL_SOURCES];
            size_t W = g->cols + 1;
            for (int src = 0; src < SURVEIL_SOURCES; src++) {
                uint8_t ws[32];
                if (seed) stream_seed(seed, w, src, ws);
                if (r->epsilon > 0)
                    surveil_grid_noise(&lay[src], r->epsilon, seed ? ws : NULL);
                else
                    surveil_grid_sum(&lay[src]);
                for (size_t i = 0; i < g->rows; i++)
                    for (size_t j = 0; j < g->cols; j++) g->value[i * W + j] += lay[src].value[i * W + j];
            }
            surveil_grid_sum(g);
        } else {
            surveil_grid_sum(g);
            if (r->epsilon > 0) {
                uint8_t ws[32];
                if (seed) stream_seed(seed, w, -1, ws);
                surveil_grid_noise(g, r->epsilon, seed ? ws : NULL);
            }
        }
        /* the base pattern first, then any larger k on top of it (see
         * surveil_grid_suppress: releases at different k nest) */
        surveil_grid_suppress(g, q->base_k > 0 && q->base_k < r->k ? q->base_k : r->k);
        if (q->base_k > 0 && q->base_k < r->k) surveil_grid_suppress(g, r->k);
        size_t total = (g->rows + 1) * (g->cols + 1);
        for (size_t e = 0; e < total; e++) r->published += g->status[e] == SURVEIL_CELL_PUBLISHED;
        if (r->by_source) {
            /* the layers after the total's pattern is final, nested as above */
            surveil_grid *lay = &r->layers[w * SURVEIL_SOURCES];
            surveil_grid_suppress_layers(g, lay, SURVEIL_SOURCES, q->base_k > 0 && q->base_k < r->k ? q->base_k : r->k);
            if (q->base_k > 0 && q->base_k < r->k) surveil_grid_suppress_layers(g, lay, SURVEIL_SOURCES, r->k);
            for (int src = 0; src < SURVEIL_SOURCES; src++)
                for (size_t e = 0; e < total; e++) r->published += lay[src].status[e] == SURVEIL_CELL_PUBLISHED;
        }
    }
    *out = r;
    return CORE_OK;
}

size_t surveil_release_cells(const surveil_release *r) { return r->published; }
bool surveil_release_synthetic(const surveil_release *r) { return r->synthetic; }

static void fingerprint(const char *country, int week_from, int week_to, int k, int base_k, double epsilon,
                        int64_t version, const char *const *conditions, size_t n_conditions, bool by_source,
                        uint8_t out[32]) {
    char from[9], to[9];
    surveil_week_format(week_from, from);
    surveil_week_format(week_to, to);
    /* A release broken down by source is a different release (its own log
     * entry, budget charge and ledger record); the plain one keys as always. */
    char head[200];
    int n = snprintf(head, sizeof head,
                     "country=%s;from=%s;to=%s;k=%d;base_k=%d;epsilon_milli=%lld;version=%lld;%sconditions=", country,
                     from, to, k, base_k, (long long)llround(epsilon * 1000), (long long)version,
                     by_source ? "by_source=1;" : "");
    size_t len = (size_t)n;
    for (size_t j = 0; j < n_conditions; j++) len += strlen(conditions[j]) + 1;
    char *text = malloc(len);
    if (!text) { /* cannot happen in practice; a fingerprint of the head still keys the query */
        cs_crypto_hash(out, "caresync-release", head, (size_t)n);
        return;
    }
    memcpy(text, head, (size_t)n);
    size_t at = (size_t)n;
    for (size_t j = 0; j < n_conditions; j++) {
        size_t l = strlen(conditions[j]);
        memcpy(text + at, conditions[j], l);
        at += l;
        text[at++] = ',';
    }
    cs_crypto_hash(out, "caresync-release", text, at);
    free(text);
}

void surveil_release_fingerprint(const surveil_release *r, uint8_t out[32]) {
    fingerprint(r->country, r->week_from, r->week_to, r->k, r->base_k, r->epsilon, r->version,
                (const char *const *)r->conditions, r->n_conditions, r->by_source, out);
}

core_status surveil_query_fingerprint(store *st, const surveil_query *q, uint8_t out[32], core_error *err) {
    int64_t version;
    core_status rc = surveil_data_version(st, &version, err);
    if (!rc)
        fingerprint(q->country, q->week_from, q->week_to, q->k, q->base_k, q->epsilon, version, q->conditions,
                    q->n_conditions, q->by_source, out);
    return rc;
}

double surveil_release_epsilon(const surveil_release *r) { return r->epsilon; }

static json_t *value(const surveil_grid *g, size_t e) {
    return g->status[e] == SURVEIL_CELL_PUBLISHED ? json_integer(g->value[e]) : json_null();
}

/* One week of one grid: {week, cells, region_totals, condition_totals, total}. */
static json_t *week_json(const surveil_grid *g, int week, size_t *suppressed) {
    size_t R = g->rows, C = g->cols, W = C + 1;
    json_t *cells = json_array(), *rt = json_array(), *ct = json_array();
    for (size_t i = 0; i < R; i++) {
        json_t *row = json_array();
        for (size_t j = 0; j < C; j++) json_array_append_new(row, value(g, i * W + j));
        json_array_append_new(cells, row);
        json_array_append_new(rt, value(g, i * W + C));
    }
    for (size_t j = 0; j < C; j++) json_array_append_new(ct, value(g, R * W + j));
    for (size_t e = 0; e < (R + 1) * W; e++) *suppressed += g->status[e] != SURVEIL_CELL_PUBLISHED;
    char wk[9];
    surveil_week_format(week, wk);
    return json_pack("{s:s, s:o, s:o, s:o, s:o}", "week", wk, "cells", cells, "region_totals", rt, "condition_totals",
                     ct, "total", value(g, R * W + C));
}

json_t *surveil_release_json(const surveil_release *r) {
    char from[9], to[9];
    surveil_week_format(r->week_from, from);
    surveil_week_format(r->week_to, to);
    json_t *regions = json_array(), *conditions = json_array(), *weeks = json_array();
    for (size_t i = 0; i < r->n_regions; i++) json_array_append_new(regions, json_string(r->regions[i]));
    for (size_t j = 0; j < r->n_conditions; j++) json_array_append_new(conditions, json_string(r->conditions[j]));
    size_t suppressed = 0;
    int nw = r->week_to - r->week_from + 1;
    for (int w = 0; w < nw; w++) json_array_append_new(weeks, week_json(&r->grids[w], r->week_from + w, &suppressed));
    json_t *by = NULL;
    if (r->by_source) {
        by = json_array();
        for (int src = 0; src < SURVEIL_SOURCES; src++) {
            json_t *sw = json_array();
            for (int w = 0; w < nw; w++)
                json_array_append_new(sw,
                                      week_json(&r->layers[w * SURVEIL_SOURCES + src], r->week_from + w, &suppressed));
            json_array_append_new(
                by, json_pack("{s:s, s:o}", "source", surveil_source_name((surveil_source)src), "weeks", sw));
        }
    }
    json_t *out = json_pack("{s:s, s:s, s:s, s:i, s:f, s:b, s:o, s:o, s:o, s:I, s:I}", "country", r->country, "from",
                            from, "to", to, "k", r->k, "epsilon", r->epsilon, "synthetic", r->synthetic, "regions",
                            regions, "conditions", conditions, "weeks", weeks, "published_values",
                            (json_int_t)r->published, "suppressed_values", (json_int_t)suppressed);
    if (r->by_source && (!out || !by || json_object_set_new(out, "by_source", by))) {
        if (!out) json_decref(by); /* else set_new took it, even on failure */
        json_decref(out);
        return NULL;
    }
    return out;
}

/* A source's view: the release with that source's weeks in place of the
 * totals' (values unchanged), "source" naming it, and no other layer. */
json_t *surveil_release_source_view(const json_t *rel, const char *source) {
    const json_t *by = json_object_get(rel, "by_source"), *layer = NULL, *v;
    size_t i;
    json_array_foreach(by, i, v) if (json_is_string(json_object_get(v, "source")) &&
                                     strcmp(json_string_value(json_object_get(v, "source")), source) == 0) layer = v;
    if (!layer) return NULL;
    json_t *out = json_deep_copy(rel);
    if (!out) return NULL;
    json_object_del(out, "by_source");
    json_t *weeks = json_deep_copy(json_object_get(layer, "weeks")), *wk;
    size_t published = 0, suppressed = 0;
    json_array_foreach(weeks, i, wk) {
        json_t *row, *x;
        size_t a, b;
        json_array_foreach(json_object_get(wk, "cells"), a, row) json_array_foreach(row, b, x) {
            if (json_is_null(x))
                suppressed++;
            else
                published++;
        }
        const char *keys[] = {"region_totals", "condition_totals"};
        for (int t = 0; t < 2; t++) json_array_foreach(json_object_get(wk, keys[t]), a, x) {
                if (json_is_null(x))
                    suppressed++;
                else
                    published++;
            }
        if (json_is_null(json_object_get(wk, "total")))
            suppressed++;
        else
            published++;
    }
    if (!weeks || json_object_set_new(out, "weeks", weeks) || json_object_set_new(out, "source", json_string(source)) ||
        json_object_set_new(out, "published_values", json_integer((json_int_t)published)) ||
        json_object_set_new(out, "suppressed_values", json_integer((json_int_t)suppressed))) {
        json_decref(out);
        return NULL;
    }
    return out;
}

json_t *surveil_release_view(const json_t *rel, const char *condition) {
    const json_t *conds = json_object_get(rel, "conditions");
    size_t c = SIZE_MAX, i;
    const json_t *v;
    json_array_foreach(conds, i, v) if (json_is_string(v) && strcmp(json_string_value(v), condition) == 0) c = i;
    if (c == SIZE_MAX) return NULL;
    json_t *out = json_deep_copy(rel);
    if (!out) return NULL;
    json_object_set_new(out, "conditions", json_pack("[s]", condition));
    json_t *weeks = json_object_get(out, "weeks"), *wk;
    size_t published = 0, suppressed = 0;
    json_array_foreach(weeks, i, wk) {
        json_t *cells = json_object_get(wk, "cells"), *row, *col = json_array();
        size_t r;
        json_array_foreach(cells, r, row) {
            json_t *x = json_array_get(row, c);
            json_array_set_new(cells, r, json_pack("[O]", x));
            json_array_append(col, x);
            if (json_is_null(x))
                suppressed++;
            else
                published++;
        }
        json_t *ct = json_array_get(json_object_get(wk, "condition_totals"), c);
        json_object_set_new(wk, "total", json_incref(ct));
        json_object_set_new(wk, "condition_totals", json_pack("[O]", ct));
        json_object_set_new(wk, "region_totals", col); /* one column: its own row totals */
        if (json_is_null(ct))
            suppressed++;
        else
            published++;
    }
    json_object_set_new(out, "condition", json_string(condition));
    json_object_set_new(out, "published_values", json_integer((json_int_t)published));
    json_object_set_new(out, "suppressed_values", json_integer((json_int_t)suppressed));
    return out;
}

static size_t index_of(const json_t *names, const char *want) {
    size_t i;
    const json_t *v;
    json_array_foreach(names, i, v) if (json_is_string(v) && strcmp(json_string_value(v), want) == 0) return i;
    return SIZE_MAX;
}

core_status surveil_release_observed(const json_t *rel, const char *region, const char *condition, json_t *weeks,
                                     json_t *observed, core_error *err) {
    const char *country = json_string_value(json_object_get(rel, "country"));
    const json_t *wks = json_object_get(rel, "weeks");
    if (!country || !json_is_array(wks) || !json_is_array(observed) || (weeks && !json_is_array(weeks)))
        return core_fail(err, CORE_ERR_INVALID, NULL, "not a release");
    size_t ci = SIZE_MAX;
    if (condition && (ci = index_of(json_object_get(rel, "conditions"), condition)) == SIZE_MAX)
        return core_fail(err, CORE_ERR_INVALID, "condition", "'%s' is not one of the release's conditions", condition);
    bool whole = strcmp(region, country) == 0;
    size_t ri = whole ? SIZE_MAX : index_of(json_object_get(rel, "regions"), region);
    size_t i;
    const json_t *wk;
    json_array_foreach(wks, i, wk) {
        if (weeks) json_array_append(weeks, json_object_get(wk, "week"));
        const json_t *v;
        if (whole)
            v = condition ? json_array_get(json_object_get(wk, "condition_totals"), ci) : json_object_get(wk, "total");
        else if (ri == SIZE_MAX)
            v = NULL; /* not a row of the release: no data there */
        else if (condition)
            v = json_array_get(json_array_get(json_object_get(wk, "cells"), ri), ci);
        else
            v = json_array_get(json_object_get(wk, "region_totals"), ri);
        json_array_append_new(observed, v ? json_incref((json_t *)v) : json_integer(0));
    }
    return CORE_OK;
}

typedef struct {
    char *out;
    size_t cap, len;
} csv_buf;

/* The lines of one weeks array; source (NULL: no source column) ends each. */
static bool csv_weeks(csv_buf *b, const json_t *weeks, const json_t *regions, const json_t *conditions,
                      const char *country, bool view, bool synthetic, const char *source) {
    size_t R = json_array_size(regions), C = json_array_size(conditions), w;
    const json_t *wk;
    json_array_foreach(weeks, w, wk) {
        const char *name = json_string_value(json_object_get(wk, "week"));
        const json_t *cells = json_object_get(wk, "cells"), *rt = json_object_get(wk, "region_totals");
        const json_t *ct = json_object_get(wk, "condition_totals"), *total = json_object_get(wk, "total");
        for (size_t i = 0; i <= R; i++)
            for (size_t j = 0; j <= C; j++) {
                if (j == C && view) continue; /* a view's "all" column would repeat its one condition */
                const json_t *v = i < R ? (j < C ? json_array_get(json_array_get(cells, i), j) : json_array_get(rt, i))
                                        : (j < C ? json_array_get(ct, j) : total);
                if (b->cap - b->len < 200) {
                    char *p = realloc(b->out, b->cap *= 2);
                    if (!p) return false;
                    b->out = p;
                }
                char count[24] = "";
                if (json_is_integer(v)) snprintf(count, sizeof count, "%lld", (long long)json_integer_value(v));
                b->len +=
                    (size_t)snprintf(b->out + b->len, b->cap - b->len, "%s,%s,%s,%s,%s,%s%s%s\n", name ? name : "",
                                     i < R ? json_string_value(json_array_get(regions, i)) : country,
                                     j < C ? json_string_value(json_array_get(conditions, j)) : "all", count,
                                     json_is_integer(v) ? "published" : "suppressed", synthetic ? "yes" : "no",
                                     source ? "," : "", source ? source : "");
            }
    }
    return true;
}

/* CSV from the JSON form, so an export holds exactly the numbers shown
 * (and a release kept in the log can be exported again byte for byte). A
 * release by source (or one source's view) has a last column, source: "all"
 * for the totals, else the source's name. */
char *surveil_release_csv(const json_t *rel) {
    const json_t *regions = json_object_get(rel, "regions"), *conditions = json_object_get(rel, "conditions");
    const json_t *weeks = json_object_get(rel, "weeks"), *by = json_object_get(rel, "by_source");
    const char *country = json_string_value(json_object_get(rel, "country"));
    const char *source = json_string_value(json_object_get(rel, "source"));
    bool synthetic = json_is_true(json_object_get(rel, "synthetic"));
    bool view = json_object_get(rel, "condition") != NULL;
    if (!json_is_array(regions) || !json_is_array(conditions) || !json_is_array(weeks) || !country) return NULL;
    csv_buf b = {malloc(1 << 12), 1 << 12, 0};
    if (!b.out) return NULL;
    bool sources = source || by;
    b.len =
        (size_t)snprintf(b.out, b.cap, "week,region,condition,count,status,synthetic%s\n", sources ? ",source" : "");
    bool ok =
        csv_weeks(&b, weeks, regions, conditions, country, view, synthetic, sources ? (source ? source : "all") : NULL);
    size_t i;
    const json_t *layer;
    json_array_foreach(by, i, layer) {
        if (!ok) break;
        ok = csv_weeks(&b, json_object_get(layer, "weeks"), regions, conditions, country, view, synthetic,
                       json_string_value(json_object_get(layer, "source")));
    }
    if (!ok) {
        free(b.out);
        return NULL;
    }
    return b.out;
}

core_status surveil_release_record(store *st, const char *org, const surveil_release *r, double budget,
                                   const char *body, int64_t *id, core_error *err) {
    int64_t eps = llround(r->epsilon * 1000), cap = llround(budget * 1000);
    uint8_t fp[32];
    surveil_release_fingerprint(r, fp);
    sqlite3 *db = store_acquire(st);
    core_status rc = store_begin(db, err);
    sqlite3_stmt *q = NULL;
    if (!rc && eps > 0) {
        int64_t spent = 0;
        rc = store_prepare_cached(st, db, "SELECT spent_milli FROM surveil_budget WHERE org = ?1", &q, err);
        if (!rc) {
            sqlite3_bind_text(q, 1, org, -1, SQLITE_TRANSIENT);
            if (sqlite3_step(q) == SQLITE_ROW) spent = sqlite3_column_int64(q, 0);
            sqlite3_reset(q);
        }
        if (!rc && spent + eps > cap)
            rc = core_fail(err, CORE_ERR_CONFLICT, "epsilon",
                           "privacy budget exhausted: %.3f of %.3f spent, this release needs %.3f", spent / 1000.0,
                           cap / 1000.0, eps / 1000.0);
        if (!rc)
            rc = store_prepare_cached(st, db,
                                      "INSERT INTO surveil_budget VALUES (?1, ?2) "
                                      "ON CONFLICT DO UPDATE SET spent_milli = spent_milli + ?2",
                                      &q, err);
        if (!rc) {
            sqlite3_bind_text(q, 1, org, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(q, 2, eps);
            if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
            sqlite3_reset(q);
        }
    }
    if (!rc)
        rc = store_prepare_cached(st, db,
                                  "INSERT INTO surveil_releases (org, fingerprint, epsilon_milli, k, cells, "
                                  "created_at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                  &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, org, -1, SQLITE_TRANSIENT);
        sqlite3_bind_blob(q, 2, fp, 32, SQLITE_TRANSIENT);
        sqlite3_bind_int64(q, 3, eps);
        sqlite3_bind_int(q, 4, r->k);
        sqlite3_bind_int64(q, 5, (int64_t)r->published);
        sqlite3_bind_int64(q, 6, core_now());
        sqlite3_bind_text(q, 7, body, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(q) != SQLITE_DONE)
            rc = store_error(db, err);
        else
            *id = sqlite3_last_insert_rowid(db);
        sqlite3_reset(q);
    }
    if (!rc) rc = store_commit(db, err);
    if (rc) store_rollback(db);
    store_release(st, db);
    return rc;
}

core_status surveil_release_set_txid(store *st, int64_t id, const uint8_t txid[32], core_error *err) {
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q;
    core_status rc = store_prepare_cached(st, db, "UPDATE surveil_releases SET txid = ?2 WHERE id = ?1", &q, err);
    if (!rc) {
        sqlite3_bind_int64(q, 1, id);
        sqlite3_bind_blob(q, 2, txid, 32, SQLITE_TRANSIENT);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
        sqlite3_reset(q);
    }
    store_release(st, db);
    return rc;
}

core_status surveil_release_find(store *st, const char *org, const uint8_t fingerprint[32], char **body,
                                 core_error *err) {
    *body = NULL;
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q;
    core_status rc = store_prepare_cached(
        st, db,
        "SELECT body FROM surveil_releases WHERE org = ?1 AND fingerprint = ?2 AND txid IS NOT NULL "
        "ORDER BY id DESC LIMIT 1",
        &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, org, -1, SQLITE_TRANSIENT);
        sqlite3_bind_blob(q, 2, fingerprint, 32, SQLITE_TRANSIENT);
        if (sqlite3_step(q) == SQLITE_ROW) {
            *body = strdup((const char *)sqlite3_column_text(q, 0));
            if (!*body) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        } else {
            rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such release");
        }
        sqlite3_reset(q);
    }
    store_release(st, db);
    return rc;
}

core_status surveil_budget_spent(store *st, const char *org, double *spent, core_error *err) {
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q;
    *spent = 0;
    core_status rc = store_prepare_cached(st, db, "SELECT spent_milli FROM surveil_budget WHERE org = ?1", &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, org, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(q) == SQLITE_ROW) *spent = sqlite3_column_int64(q, 0) / 1000.0;
        sqlite3_reset(q);
    }
    store_release(st, db);
    return rc;
}
