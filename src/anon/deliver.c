/* anon — the k-anonymity step and the delivered dataset (CSV, JSON, hash).
 * The algorithm and why it is sound: anon.h. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "anon/anon.h"
#include "anon/internal.h"
#include "crypto/crypto.h"
#include "surveil/surveil.h"

_Static_assert(ANON_SHA256_BYTES == CS_CRYPTO_SHA256_BYTES, "the dataset hash is crypto's SHA-256");

struct anon_delivery {
    anon_stats stats;
    anon_released *rows;
    size_t n;
    char *csv;
    size_t csv_len;
    uint8_t sha256[ANON_SHA256_BYTES];
};

/* One row's released QI at its level, packed into two words so a step is
 * one sort: a = region (≤ 6 bytes), b = period kind and value, age band,
 * sex. Equal keys are exactly equal released values: the bands that read
 * the same at two widths ("90+" at 5 and 10 years, "unknown" at any) get
 * one width code, so their rows form one class, as the reader sees them. */
typedef struct {
    uint64_t a, b, contributor;
    size_t row;
} item;

static int age_width(int level) { return level <= 2 ? 5 : level == 3 ? 10 : 20; }

static int age_released(int lo, int width) {
    if (lo == ANON_AGE_UNKNOWN) return lo;
    int top = width == 20 ? 80 : ANON_AGE_TOP;
    return lo >= top ? top : lo / width * width;
}

static void key_of(const anon_row *row, int month_code, int level, uint64_t *a, uint64_t *b) {
    size_t len = level >= 1 && row->region[0] ? 2 : strlen(row->region);
    uint64_t ra = 0;
    for (size_t i = 0; i < len; i++) ra = ra << 8 | (uint8_t)row->region[i];
    *a = ra << 8 | len;
    uint64_t kind = level >= 2, period = (uint32_t)(level >= 2 ? month_code : row->week);
    int width = age_width(level), lo = age_released(row->age_lo, width);
    if (lo == ANON_AGE_UNKNOWN || (width < 20 && lo >= ANON_AGE_TOP)) width = 0;
    uint64_t sex = level >= 5 ? ANON_SEX_UNSPECIFIED : row->sex;
    *b = kind << 62 | period << 24 | (uint64_t)(lo + 1) << 8 | (uint64_t)width << 3 | sex;
}

static int cmp_item(const void *x, const void *y) {
    const item *p = x, *q = y;
    if (p->a != q->a) return p->a < q->a ? -1 : 1;
    if (p->b != q->b) return p->b < q->b ? -1 : 1;
    if (p->contributor != q->contributor) return p->contributor < q->contributor ? -1 : 1;
    return 0;
}

static int cmp_released(const void *x, const void *y) {
    const anon_released *p = *(const anon_released *const *)x, *q = *(const anon_released *const *)y;
    int c = strcmp(p->region, q->region);
    if (!c) c = strcmp(p->period, q->period);
    if (!c) c = strcmp(p->age_band, q->age_band);
    if (!c) c = strcmp(p->sex, q->sex);
    if (!c) c = strcmp(p->category, q->category);
    if (!c) c = strcmp(p->code, q->code);
    if (!c) c = strcmp(p->tag, q->tag);
    return c;
}

static void release(const anon_row *row, int month_code, int level, anon_released *out) {
    memset(out, 0, sizeof *out);
    out->level = level;
    cs_crypto_hex(row->tag, ANON_TAG_BYTES, out->tag);
    snprintf(out->category, sizeof out->category, "%s", anon_category_name(row->category));
    memcpy(out->code, row->code, strlen(row->code) + 1);
    int width = age_width(level);
    anon_age_text(age_released(row->age_lo, width), width, out->age_band);
    snprintf(out->sex, sizeof out->sex, "%s", anon_sex_name(level >= 5 ? ANON_SEX_UNSPECIFIED : row->sex));
    if (!row->region[0])
        snprintf(out->region, sizeof out->region, "unknown");
    else
        snprintf(out->region, sizeof out->region, "%.*s", level >= 1 ? 2 : ANON_REGION_MAX - 1, row->region);
    if (level >= 2)
        snprintf(out->period, sizeof out->period, "%04u-%02u", (unsigned)month_code / 12 % 10000,
                 (unsigned)month_code % 12 + 1);
    else
        surveil_week_format(row->week, out->period);
}

/* ---- CSV (RFC 4180) ---- */

static const char *const columns[] = {"tag", "category", "code", "age_band", "sex", "region", "period"};
#define NCOLUMNS (sizeof columns / sizeof *columns)

typedef struct {
    char *p;
    size_t len, cap;
    bool failed;
} buf;

static void put(buf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

/* A field is quoted only if it holds a comma, quote, CR or LF (RFC 4180
 * 2.6), its quotes doubled (2.7). No released value can, by construction:
 * this is the guard should a future column carry one. */
static void put_field(buf *b, const char *s, bool last) {
    if (strpbrk(s, ",\"\r\n")) {
        put(b, "\"", 1);
        for (const char *q = s; *q; q++) {
            put(b, q, 1);
            if (*q == '"') put(b, "\"", 1);
        }
        put(b, "\"", 1);
    } else
        put(b, s, strlen(s));
    put(b, last ? "\r\n" : ",", last ? 2 : 1);
}

static core_status build_csv(anon_delivery *d, core_error *err) {
    buf b = {0};
    for (size_t c = 0; c < NCOLUMNS; c++) put_field(&b, columns[c], c + 1 == NCOLUMNS);
    for (size_t i = 0; i < d->n; i++) {
        const anon_released *r = &d->rows[i];
        const char *f[NCOLUMNS] = {r->tag, r->category, r->code, r->age_band, r->sex, r->region, r->period};
        for (size_t c = 0; c < NCOLUMNS; c++) put_field(&b, f[c], c + 1 == NCOLUMNS);
    }
    if (b.failed) {
        free(b.p);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    d->csv = b.p;
    d->csv_len = b.len;
    cs_crypto_sha256(d->sha256, b.p, b.len);
    return CORE_OK;
}

void anon_delivery_free(anon_delivery *d) {
    if (!d) return;
    free(d->rows);
    free(d->csv);
    free(d);
}

core_status anon_deliver(const anon_row *rows, const uint64_t *contributor, size_t n, int k, anon_delivery **out,
                         core_error *err) {
    *out = NULL;
    if (k < 1) return core_fail(err, CORE_ERR_INVALID, "k", "k is at least 1");
    core_status rc = CORE_OK;
    for (size_t i = 0; i < n && !rc; i++) rc = anon_row_check(&rows[i], err);
    if (rc) return rc;

    anon_released *released = NULL, **order = NULL;
    anon_delivery *d = calloc(1, sizeof *d);
    unsigned char *level = calloc(n ? n : 1, 1); /* ANON_LEVELS = held back */
    int *month = calloc(n ? n : 1, sizeof *month);
    item *it = calloc(n ? n : 1, sizeof *it);
    if (!d || !level || !month || !it) {
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        goto done;
    }
    d->stats.k = k;
    d->stats.rows_in = n;
    for (size_t i = 0; i < n; i++) {
        int y, m;
        anon_week_calendar(rows[i].week, &y, &m);
        month[i] = y * 12 + m - 1;
    }
    for (int s = 0; s < ANON_LEVELS; s++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if (level[i] == ANON_LEVELS) continue;
            key_of(&rows[i], month[i], level[i], &it[m].a, &it[m].b);
            it[m].contributor = contributor[i];
            it[m++].row = i;
        }
        qsort(it, m, sizeof *it, cmp_item);
        for (size_t j = 0; j < m;) {
            size_t e = j, distinct = 0;
            for (; e < m && it[e].a == it[j].a && it[e].b == it[j].b; e++)
                if (e == j || it[e].contributor != it[e - 1].contributor) distinct++;
            if (distinct < (size_t)k)
                for (size_t x = j; x < e; x++) {
                    size_t i = it[x].row;
                    /* The re-check: a class short of k holds only rows that
                     * reached this level now; every class seen whole at an
                     * earlier step kept its >= k (anon.h). */
                    assert(level[i] == s);
                    if (s + 1 < ANON_LEVELS)
                        d->stats.generalised[s]++;
                    else
                        d->stats.held_back++;
                    level[i] = (unsigned char)(s + 1);
                }
            j = e;
        }
        if (s == 0) {
            /* Contributors of the input: distinct per class summed at level 0
             * counts one person in two classes twice, so count them apart. */
            for (size_t x = 0; x < m; x++) it[x].a = it[x].b = 0;
            qsort(it, m, sizeof *it, cmp_item);
            for (size_t x = 0; x < m; x++)
                if (x == 0 || it[x].contributor != it[x - 1].contributor) d->stats.contributors_in++;
        }
    }
    d->n = n - d->stats.held_back;
    d->stats.delivered = d->n;
    d->rows = calloc(d->n ? d->n : 1, sizeof *d->rows);
    released = calloc(d->n ? d->n : 1, sizeof *released);
    order = calloc(d->n ? d->n : 1, sizeof *order);
    if (!d->rows || !released || !order) {
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0, j = 0; i < n; i++)
        if (level[i] < ANON_LEVELS) {
            release(&rows[i], month[i], level[i], &released[j]);
            order[j] = &released[j];
            j++;
        }
    /* Sorted as pointers: a released row is ~130 bytes, and glibc's qsort
     * (a merge sort) would copy each one about log2(n) times. */
    qsort(order, d->n, sizeof *order, cmp_released);
    for (size_t j = 0; j < d->n; j++) d->rows[j] = *order[j];
    rc = build_csv(d, err);
done:
    free(released);
    free(order);
    free(level);
    free(month);
    free(it);
    if (rc)
        anon_delivery_free(d);
    else
        *out = d;
    return rc;
}

const anon_stats *anon_delivery_stats(const anon_delivery *d) { return &d->stats; }
size_t anon_delivery_size(const anon_delivery *d) { return d->n; }
const anon_released *anon_delivery_row(const anon_delivery *d, size_t i) { return i < d->n ? &d->rows[i] : NULL; }
void anon_delivery_sha256(const anon_delivery *d, uint8_t out[ANON_SHA256_BYTES]) {
    memcpy(out, d->sha256, ANON_SHA256_BYTES);
}

core_status anon_delivery_csv(const anon_delivery *d, char **out, size_t *len, core_error *err) {
    *out = malloc(d->csv_len + 1);
    if (!*out) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    memcpy(*out, d->csv, d->csv_len + 1);
    *len = d->csv_len;
    return CORE_OK;
}

/* ---- JSON and the data dictionary ---- */

static const struct {
    const char *meaning, *values, *generalisation;
} dictionary[NCOLUMNS] = {
    {"random withdrawal tag of the row (128 bits, hex); says nothing about the person, and lets a later "
     "delivery omit the row when its person withdraws",
     "32 lowercase hex digits", "none"},
    {"what the row reports", "condition, symptom, screening, demographics", "none"},
    {"the condition, symptom or screening-result code (never free text); empty for demographics",
     "1-31 of A-Z a-z 0-9 . _ - starting alphanumeric, or empty", "none"},
    {"age band: the age the person reaches in the ISO year of the row's period (only the birth year is used)",
     "5-year bands 0-4 .. 85-89 and 90+; 10-year bands 0-9 .. 80-89 and 90+; 20-year bands 0-19 .. 60-79 and 80+; "
     "unknown",
     "5-year band; 10-year, then 20-year, when a group was smaller than k"},
    {"sex as the person recorded it (a recorded third option is reported as other)", "female, male, other, unspecified",
     "as recorded; unspecified when a group was smaller than k at every coarser age band"},
    {"home region: the first-level ISO 3166-2 subdivision",
     "ISO 3166-2 code (NZ-AUK), ISO 3166-1 alpha-2 (NZ), unknown",
     "subdivision; the country when a group was smaller than k"},
    {"when: the ISO 8601 week of the onset, diagnosis, screening or sharing date",
     "YYYY-Www, or YYYY-MM (the month of the week's Thursday)",
     "ISO week; the month holding the week's Thursday when a group was smaller than k at country level"},
};

core_status anon_dictionary(json_t **out, core_error *err) {
    *out = NULL;
    json_t *arr = json_array();
    if (!arr) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    for (size_t c = 0; c < NCOLUMNS; c++) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "name", columns[c], "meaning", dictionary[c].meaning, "values",
                              dictionary[c].values, "generalisation", dictionary[c].generalisation);
        if (!o || json_array_append_new(arr, o)) {
            json_decref(arr);
            return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        }
    }
    *out = arr;
    return CORE_OK;
}

static const char *const step_names[ANON_LEVELS - 1] = {"region_to_country", "week_to_month", "age_to_10_years",
                                                        "age_to_20_years", "sex_to_unspecified"};

core_status anon_delivery_json(const anon_delivery *d, json_t **out, core_error *err) {
    *out = NULL;
    char hex[2 * ANON_SHA256_BYTES + 1];
    cs_crypto_hex(d->sha256, ANON_SHA256_BYTES, hex);
    json_t *dict = NULL, *rowsj = json_array(), *gen = json_object();
    core_status rc = anon_dictionary(&dict, err);
    bool bad = !rowsj || !gen;
    for (int s = 0; s < ANON_LEVELS - 1 && !bad; s++)
        bad = json_object_set_new(gen, step_names[s], json_integer((json_int_t)d->stats.generalised[s])) != 0;
    for (size_t i = 0; i < d->n && !bad; i++) {
        const anon_released *r = &d->rows[i];
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "tag", r->tag, "category", r->category, "code", r->code,
                              "age_band", r->age_band, "sex", r->sex, "region", r->region, "period", r->period);
        bad = !o || json_array_append_new(rowsj, o) != 0;
    }
    json_t *doc = NULL;
    if (!rc && !bad)
        doc = json_pack("{s:s,s:i,s:s,s:{s:I,s:I,s:I,s:O},s:O,s:O}", "format", "caresync-anon/1", "k", d->stats.k,
                        "sha256", hex, "summary", "rows_in", (json_int_t)d->stats.rows_in, "delivered",
                        (json_int_t)d->stats.delivered, "held_back", (json_int_t)d->stats.held_back, "generalised", gen,
                        "dictionary", dict, "rows", rowsj);
    json_decref(dict);
    json_decref(rowsj);
    json_decref(gen);
    if (rc) return rc;
    if (!doc) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    *out = doc;
    return CORE_OK;
}
