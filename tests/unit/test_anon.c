/* anon (issue 14): generalisation rules, the k-anonymity step with a random
 * audit, the CSV/JSON output and the stored form of rows. Real iso-codes
 * lists, real libsodium; no mocks. */
#include <csv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anon/anon.h"
#include "crypto/crypto.h"
#include "surveil/surveil.h"
#include "testutil.h"

static regions *R;

static int setup(void **state) {
    (void)state;
    core_error err = {0};
    if (cs_crypto_init(&err) || regions_load(TEST_ISO_CODES_DIR, &R, &err)) return -1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    regions_free(R);
    return 0;
}

static anon_row one(int birth_year, const char *sex, const char *region, int y, int m, int d) {
    anon_person p = {birth_year, sex, region};
    anon_item it = {ANON_CONDITION, "eczema", y, m, d, NULL};
    anon_row row;
    core_error err = {0};
    assert_int_equal(anon_rows_from_person(R, &p, &it, 1, &row, &err), CORE_OK);
    return row;
}

static void week_text(int week, char out[9]) { surveil_week_format(week, out); }

/* ---- generalisation of one person's data ---- */

static void age_is_a_5_year_band_of_the_iso_year(void **state) {
    (void)state;
    char w[9];
    /* Born 1990: in ISO year 2024 the person reaches 34. */
    anon_row r = one(1990, "female", "NZ-AUK", 2024, 6, 15);
    assert_int_equal(r.age_lo, 30);
    /* Around the year's turn the ISO year decides, not the calendar date:
     * Monday 2024-12-30 is in 2025-W01, so the age is 35 (band 35-39), while
     * Sunday 2024-12-29 (2024-W52) is still 34. */
    r = one(1990, "female", "NZ-AUK", 2024, 12, 30);
    week_text(r.week, w);
    assert_string_equal(w, "2025-W01");
    assert_int_equal(r.age_lo, 35);
    r = one(1990, "female", "NZ-AUK", 2024, 12, 29);
    week_text(r.week, w);
    assert_string_equal(w, "2024-W52");
    assert_int_equal(r.age_lo, 30);
    /* The birthday itself: only the year is known, so every week of the
     * year gives the same band (born 1995: 30 in 2025, W01 and W52 alike). */
    assert_int_equal(one(1995, "male", "NZ-AUK", 2025, 1, 1).age_lo, 30);
    assert_int_equal(one(1995, "male", "NZ-AUK", 2025, 12, 24).age_lo, 30);
    assert_int_equal(one(1996, "male", "NZ-AUK", 2025, 12, 24).age_lo, 25);
    /* Top band, unknown birth year, birth year after the row, over 130. */
    assert_int_equal(one(1930, "male", "NZ-AUK", 2025, 3, 3).age_lo, 90);
    assert_int_equal(one(0, "male", "NZ-AUK", 2025, 3, 3).age_lo, ANON_AGE_UNKNOWN);
    assert_int_equal(one(2026, "male", "NZ-AUK", 2025, 3, 3).age_lo, ANON_AGE_UNKNOWN);
    assert_int_equal(one(1880, "male", "NZ-AUK", 2025, 3, 3).age_lo, ANON_AGE_UNKNOWN);
    /* Newborn: 0-4. */
    assert_int_equal(one(2025, "male", "NZ-AUK", 2025, 3, 3).age_lo, 0);
}

static void dates_become_iso_weeks_including_week_53(void **state) {
    (void)state;
    char w[9];
    /* 2026 has 53 ISO weeks; Friday 2027-01-01 still belongs to 2026-W53. */
    anon_row r = one(1980, "male", "NZ-CAN", 2027, 1, 1);
    week_text(r.week, w);
    assert_string_equal(w, "2026-W53");
    assert_int_equal(r.age_lo, 45); /* ISO year 2026: 46 */
    r = one(1980, "male", "NZ-CAN", 2021, 1, 3);
    week_text(r.week, w);
    assert_string_equal(w, "2020-W53");
    /* The released month of a week 53 is that of its Thursday (2020-12-31):
     * generalise it by making it the only row at k = 2 with a partner. */
    anon_row rows[2] = {r, one(1980, "male", "NZ-WGN", 2020, 12, 29)};
    uint64_t who[2] = {1, 2};
    anon_delivery *d = NULL;
    core_error err = {0};
    assert_int_equal(anon_deliver(rows, who, 2, 2, &d, &err), CORE_OK);
    assert_int_equal(anon_delivery_size(d), 2);
    /* Same week, different subdivision: region -> country is enough. */
    assert_string_equal(anon_delivery_row(d, 0)->period, "2020-W53");
    assert_string_equal(anon_delivery_row(d, 0)->region, "NZ");
    anon_delivery_free(d);
    /* A week whose Thursday is in the next month: 2026-W05 runs Mon 26
     * January to Sun 1 February, Thursday 29 January -> 2026-01; 2026-W09
     * runs 23 Feb - 1 Mar, Thursday 26 Feb -> 2026-02. Force month level. */
    anon_row m[2] = {one(1980, "male", "NZ-CAN", 2026, 2, 1), one(1980, "male", "NZ-CAN", 2026, 1, 5)};
    assert_int_equal(anon_deliver(m, who, 2, 2, &d, &err), CORE_OK);
    assert_int_equal(anon_delivery_size(d), 2);
    assert_string_equal(anon_delivery_row(d, 0)->period, "2026-01");
    assert_string_equal(anon_delivery_row(d, 1)->period, "2026-01");
    assert_int_equal(anon_delivery_stats(d)->generalised[1], 2);
    anon_delivery_free(d);
}

static void region_is_the_first_level_subdivision_or_unknown(void **state) {
    (void)state;
    assert_string_equal(one(1980, "male", "NZ-AUK", 2025, 3, 3).region, "NZ-AUK");
    /* Second-level codes go up to their first-level parent, whether
     * iso-codes writes the parent whole (GB) or bare (FR). */
    assert_string_equal(one(1980, "male", "GB-ABD", 2025, 3, 3).region, "GB-SCT");
    assert_string_equal(one(1980, "male", "FR-75", 2025, 3, 3).region, "FR-IDF");
    assert_string_equal(one(1980, "male", "FR-01", 2025, 3, 3).region, "FR-ARA");
    /* Unknown: none, a country, a code no longer listed, free text. */
    assert_string_equal(one(1980, "male", NULL, 2025, 3, 3).region, "");
    assert_string_equal(one(1980, "male", "NZ", 2025, 3, 3).region, "");
    assert_string_equal(one(1980, "male", "NZ-XYZ", 2025, 3, 3).region, "");
    assert_string_equal(one(1980, "male", "Auckland, near the zoo", 2025, 3, 3).region, "");
    anon_row r = one(1980, "male", NULL, 2025, 3, 3);
    anon_row rows[1] = {r};
    uint64_t who[1] = {7};
    anon_delivery *d = NULL;
    core_error err = {0};
    assert_int_equal(anon_deliver(rows, who, 1, 1, &d, &err), CORE_OK);
    assert_string_equal(anon_delivery_row(d, 0)->region, "unknown");
    anon_delivery_free(d);
}

static void sex_codes_and_tags(void **state) {
    (void)state;
    assert_int_equal(one(1980, "intersex", "NZ-AUK", 2025, 3, 3).sex, ANON_SEX_OTHER);
    assert_int_equal(one(1980, NULL, "NZ-AUK", 2025, 3, 3).sex, ANON_SEX_UNSPECIFIED);
    assert_int_equal(one(1980, "female", "NZ-AUK", 2025, 3, 3).sex, ANON_SEX_FEMALE);
    anon_person p = {1980, "woman", "NZ-AUK"};
    anon_item it = {ANON_CONDITION, "eczema", 2025, 3, 3, NULL};
    anon_row row;
    core_error err = {0};
    assert_int_equal(anon_rows_from_person(R, &p, &it, 1, &row, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "sex");
    p.sex = "male";
    /* Free text never becomes a code. */
    const char *bad[] = {
        "itchy red patch", "eczema;", "", "-x", "a\"b", "éczéma", "a_code_that_is_far_too_long_to_be_a_code"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        it.code = bad[i];
        memset(&err, 0, sizeof err);
        assert_int_equal(anon_rows_from_person(R, &p, &it, 1, &row, &err), CORE_ERR_INVALID);
        assert_string_equal(err.field, "code");
    }
    it.code = NULL;
    assert_int_equal(anon_rows_from_person(R, &p, &it, 1, &row, &err), CORE_ERR_INVALID);
    it.category = ANON_DEMOGRAPHICS;
    assert_int_equal(anon_rows_from_person(R, &p, &it, 1, &row, &err), CORE_OK);
    assert_string_equal(row.code, "");
    it.code = "eczema"; /* a demographics row carries no code */
    assert_int_equal(anon_rows_from_person(R, &p, &it, 1, &row, &err), CORE_ERR_INVALID);
    /* Dates. */
    anon_item dates[] = {{ANON_CONDITION, "L20.9", 2025, 2, 29, NULL},
                         {ANON_CONDITION, "L20.9", 1969, 12, 31, NULL},
                         {ANON_CONDITION, "L20.9", 2025, 13, 1, NULL}};
    for (size_t i = 0; i < 3; i++) {
        memset(&err, 0, sizeof err);
        assert_int_equal(anon_rows_from_person(R, &p, &dates[i], 1, &row, &err), CORE_ERR_INVALID);
        assert_string_equal(err.field, "date");
    }
    /* Tags: kept when given, fresh and distinct when not. */
    uint8_t tag[ANON_TAG_BYTES];
    memset(tag, 0xA5, sizeof tag);
    anon_item two[2] = {{ANON_CONDITION, "L20.9", 2024, 2, 29, tag}, {ANON_SYMPTOM, "itch", 2024, 3, 1, NULL}};
    anon_row rows[2];
    assert_int_equal(anon_rows_from_person(R, &p, two, 2, rows, &err), CORE_OK);
    assert_memory_equal(rows[0].tag, tag, ANON_TAG_BYTES);
    assert_memory_not_equal(rows[1].tag, tag, ANON_TAG_BYTES);
    anon_row again[2];
    two[0].tag = NULL;
    assert_int_equal(anon_rows_from_person(R, &p, two, 2, again, &err), CORE_OK);
    assert_memory_not_equal(again[0].tag, again[1].tag, ANON_TAG_BYTES);
    assert_memory_not_equal(again[1].tag, rows[1].tag, ANON_TAG_BYTES);
}

/* ---- the k-anonymity step ---- */

static uint64_t rng_state;
static uint64_t rnd(void) {
    rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Du;
}

/* The released QI of a delivered row, as one string. */
static void qi_of(const anon_released *r, char out[64]) {
    snprintf(out, 64, "%s|%s|%s|%s", r->age_band, r->sex, r->region, r->period);
}

/* Independently of deliver.c: the level-L QI of an input row (the ladder of
 * anon.h written out again). */
static void qi_at(const anon_row *row, int level, char out[64]) {
    char age[8], region[8], period[9];
    int width = level <= 2 ? 5 : level == 3 ? 10 : 20;
    if (row->age_lo < 0)
        snprintf(age, sizeof age, "unknown");
    else if (width == 20 && row->age_lo >= 80)
        snprintf(age, sizeof age, "80+");
    else if (row->age_lo >= 90)
        snprintf(age, sizeof age, "90+");
    else
        snprintf(age, sizeof age, "%d-%d", row->age_lo / width * width % 100,
                 row->age_lo / width * width % 100 + width - 1);
    if (!row->region[0])
        snprintf(region, sizeof region, "unknown");
    else
        snprintf(region, sizeof region, "%.*s", level >= 1 ? 2 : 7, row->region);
    if (level >= 2) {
        /* month of the week's Thursday */
        int64_t t = surveil_week_start(row->week) / 86400 + 3;
        time_t tt = (time_t)(t * 86400);
        struct tm tm;
        gmtime_r(&tt, &tm);
        snprintf(period, sizeof period, "%04u-%02u", (unsigned)(tm.tm_year + 1900) % 10000u,
                 (unsigned)tm.tm_mon % 12u + 1);
    } else
        surveil_week_format(row->week, period);
    snprintf(out, 64, "%s|%s|%s|%s", age, level >= 5 ? "unspecified" : anon_sex_name(row->sex), region, period);
}

typedef struct {
    char qi[64];
    uint64_t who;
} pair;

static int cmp_pair(const void *a, const void *b) {
    const pair *p = a, *q = b;
    int c = strcmp(p->qi, q->qi);
    if (c) return c;
    return p->who < q->who ? -1 : p->who > q->who;
}

/* Smallest number of distinct contributors in any class of pairs (SIZE_MAX
 * when there are none); *classes_below: classes with fewer than k. */
static size_t min_class(pair *p, size_t n, size_t k, size_t *classes_below) {
    qsort(p, n, sizeof *p, cmp_pair);
    size_t best = SIZE_MAX;
    *classes_below = 0;
    for (size_t j = 0; j < n;) {
        size_t e = j, distinct = 0;
        for (; e < n && !strcmp(p[e].qi, p[j].qi); e++)
            if (e == j || p[e].who != p[e - 1].who) distinct++;
        if (distinct < best) best = distinct;
        if (distinct < k) (*classes_below)++;
        j = e;
    }
    return best;
}

static const char *const audit_regions[] = {"NZ-AUK", "NZ-CAN", "NZ-WGN", "NZ-CIT", "FR-IDF", "FR-ARA", ""};

static void random_dataset(anon_row *rows, uint64_t *who, size_t n, size_t people) {
    for (size_t i = 0; i < n; i++) {
        anon_row *r = &rows[i];
        memset(r, 0, sizeof *r);
        who[i] = rnd() % people + 1000;
        /* A person's QI come from their id, as in life (one age, sex, region). */
        uint64_t h = who[i] * 0x9E3779B97F4A7C15u;
        int a = (int)(h % 21);
        r->age_lo = a == 20 ? ANON_AGE_UNKNOWN : a * 5 > 90 ? 90 : a * 5;
        r->sex = (anon_sex)(h >> 8) % 4;
        snprintf(r->region, sizeof r->region, "%s", audit_regions[(h >> 16) % 7]);
        r->week = surveil_week_of_date(2026, 1, 1) + (int)(rnd() % 10) + ((rnd() % 4) ? 0 : 48);
        r->category = (anon_category)(rnd() % 4);
        if (r->category != ANON_DEMOGRAPHICS) snprintf(r->code, sizeof r->code, "c%d", (int)(rnd() % 5));
        for (int b = 0; b < ANON_TAG_BYTES; b++) r->tag[b] = (uint8_t)rnd();
    }
}

static void audit_one(const anon_row *rows, const uint64_t *who, size_t n, int k, bool *all_level0) {
    anon_delivery *d = NULL;
    core_error err = {0};
    assert_int_equal(anon_deliver(rows, who, n, k, &d, &err), CORE_OK);
    const anon_stats *s = anon_delivery_stats(d);
    size_t m = anon_delivery_size(d);
    assert_int_equal(m + s->held_back, n);
    assert_int_equal(s->delivered, m);
    pair *p = calloc(n ? n : 1, sizeof *p);
    bool *delivered = calloc(n ? n : 1, sizeof *delivered);
    assert_non_null(p);
    assert_non_null(delivered);
    /* Each delivered row is exactly one input row (by tag) at its level. */
    for (size_t i = 0; i < m; i++) {
        const anon_released *r = anon_delivery_row(d, i);
        size_t src = n;
        for (size_t j = 0; j < n; j++) {
            char hex[2 * ANON_TAG_BYTES + 1];
            cs_crypto_hex(rows[j].tag, ANON_TAG_BYTES, hex);
            if (!strcmp(hex, r->tag)) src = j;
        }
        assert_true(src < n);
        assert_false(delivered[src]);
        delivered[src] = true;
        char want[64], got[64];
        qi_at(&rows[src], r->level, want);
        qi_of(r, got);
        assert_string_equal(got, want);
        assert_string_equal(r->code, rows[src].code);
        assert_string_equal(r->category, anon_category_name(rows[src].category));
        snprintf(p[i].qi, sizeof p[i].qi, "%s", got);
        p[i].who = who[src];
    }
    /* k-anonymity of what is delivered, counted in people. */
    size_t below;
    size_t least = min_class(p, m, (size_t)k, &below);
    assert_int_equal(below, 0);
    if (m) assert_true(least >= (size_t)k);
    /* Nothing held back that could have gone out at level 5 on its own:
     * the held-back rows of each level-5 combination are fewer than k people. */
    size_t h = 0;
    for (size_t j = 0; j < n; j++)
        if (!delivered[j]) {
            qi_at(&rows[j], 5, p[h].qi);
            p[h++].who = who[j];
        }
    assert_int_equal(h, s->held_back);
    if (h) {
        min_class(p, h, (size_t)k, &below);
        /* every class of held rows is below k */
        qsort(p, h, sizeof *p, cmp_pair);
        size_t classes = 0;
        for (size_t j = 0; j < h; j++)
            if (j == 0 || strcmp(p[j].qi, p[j - 1].qi)) classes++;
        assert_int_equal(below, classes);
    }
    /* Already k-anonymous at level 0 -> delivered unchanged. */
    for (size_t j = 0; j < n; j++) {
        qi_at(&rows[j], 0, p[j].qi);
        p[j].who = who[j];
    }
    min_class(p, n, (size_t)k, &below);
    *all_level0 = below == 0;
    if (below == 0) {
        assert_int_equal(m, n);
        for (size_t i = 0; i < m; i++) assert_int_equal(anon_delivery_row(d, i)->level, 0);
        for (int st = 0; st < ANON_LEVELS - 1; st++) assert_int_equal(s->generalised[st], 0);
    }
    /* Determinism under shuffling: the same bytes. */
    anon_row *shuf = malloc((n ? n : 1) * sizeof *shuf);
    uint64_t *swho = malloc((n ? n : 1) * sizeof *swho);
    assert_non_null(shuf);
    assert_non_null(swho);
    memcpy(shuf, rows, n * sizeof *rows);
    memcpy(swho, who, n * sizeof *who);
    for (size_t j = n; j > 1; j--) {
        size_t x = rnd() % j;
        anon_row t = shuf[j - 1];
        shuf[j - 1] = shuf[x], shuf[x] = t;
        uint64_t w = swho[j - 1];
        swho[j - 1] = swho[x], swho[x] = w;
    }
    anon_delivery *d2 = NULL;
    assert_int_equal(anon_deliver(shuf, swho, n, k, &d2, &err), CORE_OK);
    char *c1, *c2;
    size_t l1, l2;
    assert_int_equal(anon_delivery_csv(d, &c1, &l1, &err), CORE_OK);
    assert_int_equal(anon_delivery_csv(d2, &c2, &l2, &err), CORE_OK);
    assert_int_equal(l1, l2);
    assert_memory_equal(c1, c2, l1);
    assert_memory_equal(anon_delivery_stats(d), anon_delivery_stats(d2), sizeof(anon_stats));
    free(c1);
    free(c2);
    free(shuf);
    free(swho);
    anon_delivery_free(d2);
    free(p);
    free(delivered);
    anon_delivery_free(d);
}

static void random_audit_no_delivered_class_below_k(void **state) {
    (void)state;
    rng_state = 0x5DEECE66Du;
    size_t unchanged = 0, held = 0, deep = 0;
    for (int round = 0; round < 3000; round++) {
        size_t n = rnd() % 160;
        size_t people = 1 + rnd() % (n + 1);
        int k = round % 7 == 0 ? 1 : 2 + (int)(rnd() % 12);
        if (round % 11 == 0) people = 3 + rnd() % 4; /* few people, many rows: dense classes */
        anon_row *rows = malloc((n ? n : 1) * sizeof *rows);
        uint64_t *who = malloc((n ? n : 1) * sizeof *who);
        assert_non_null(rows);
        assert_non_null(who);
        random_dataset(rows, who, n, people);
        bool k_anon;
        audit_one(rows, who, n, k, &k_anon);
        anon_delivery *d = NULL;
        core_error err = {0};
        assert_int_equal(anon_deliver(rows, who, n, k, &d, &err), CORE_OK);
        unchanged += k_anon && n;
        held += anon_delivery_stats(d)->held_back > 0;
        deep += anon_delivery_stats(d)->generalised[4] > 0;
        anon_delivery_free(d);
        free(rows);
        free(who);
    }
    /* The audit saw every kind of outcome, not only the easy one. */
    print_message("audit: %zu datasets already k-anonymous, %zu with rows held back, %zu reaching step 5\n", unchanged,
                  held, deep);
    assert_true(unchanged > 100);
    assert_true(held > 100);
    assert_true(deep > 100);
}

/* One contributor with many rows is one person: 20 rows of one person in
 * one class are not 20 people. */
static void classes_count_people_not_rows(void **state) {
    (void)state;
    anon_row rows[20];
    uint64_t who[20];
    for (int i = 0; i < 20; i++) {
        rows[i] = one(1980, "female", "NZ-AUK", 2025, 3, 3);
        who[i] = i < 15 ? 1 : (uint64_t)i; /* 15 rows of person 1, 5 others */
    }
    anon_delivery *d = NULL;
    core_error err = {0};
    assert_int_equal(anon_deliver(rows, who, 20, 11, &d, &err), CORE_OK);
    assert_int_equal(anon_delivery_size(d), 0);
    assert_int_equal(anon_delivery_stats(d)->held_back, 20);
    anon_delivery_free(d);
    for (int i = 0; i < 20; i++) who[i] = (uint64_t)i;
    assert_int_equal(anon_deliver(rows, who, 20, 11, &d, &err), CORE_OK);
    assert_int_equal(anon_delivery_size(d), 20);
    anon_delivery_free(d);
    assert_int_equal(anon_deliver(rows, who, 20, 0, &d, &err), CORE_ERR_INVALID);
    assert_null(d);
    rows[3].code[0] = ' ';
    assert_int_equal(anon_deliver(rows, who, 20, 11, &d, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "code");
}

/* ---- output ---- */

typedef struct {
    size_t field, record, bad_width;
    char header[7][16];
} csv_count;

static void on_field(void *s, size_t len, void *data) {
    csv_count *c = data;
    if (c->record == 0 && c->field < 7) snprintf(c->header[c->field], 16, "%.*s", (int)len, (const char *)s);
    c->field++;
}

static void on_record(int ch, void *data) {
    (void)ch;
    csv_count *c = data;
    if (c->field != 7) c->bad_width++;
    c->field = 0;
    c->record++;
}

static void csv_and_json_are_well_formed_and_hold_only_the_schema(void **state) {
    (void)state;
    /* 12 people share a subdivision class, 3 stand out; markers that must
     * never appear: birth years, exact dates, the home region's free text. */
    enum { N = 15 };
    anon_row rows[N];
    uint64_t who[N];
    for (int i = 0; i < N; i++) {
        anon_person p = {i < 12 ? 1971 : 1938, i % 2 ? "female" : "male", i < 12 ? "NZ-AUK" : "Ponsonby Rd 17"};
        if (i < 12) p.sex = "female";
        anon_item it = {i % 3 ? ANON_CONDITION : ANON_DEMOGRAPHICS, i % 3 ? "L20.9" : NULL, 2025, 7, 14, NULL};
        core_error err = {0};
        assert_int_equal(anon_rows_from_person(R, &p, &it, 1, &rows[i], &err), CORE_OK);
        who[i] = (uint64_t)i;
    }
    anon_delivery *d = NULL;
    core_error err = {0};
    assert_int_equal(anon_deliver(rows, who, N, 11, &d, &err), CORE_OK);
    char *csv;
    size_t len;
    assert_int_equal(anon_delivery_csv(d, &csv, &len, &err), CORE_OK);
    /* RFC 4180 via libcsv, strictly. */
    struct csv_parser parser;
    csv_count c = {0};
    assert_int_equal(csv_init(&parser, CSV_STRICT | CSV_STRICT_FINI), 0);
    assert_int_equal(csv_parse(&parser, csv, len, on_field, on_record, &c), len);
    assert_int_equal(csv_fini(&parser, on_field, on_record, &c), 0);
    csv_free(&parser);
    assert_int_equal(c.bad_width, 0);
    assert_int_equal(c.record, anon_delivery_size(d) + 1);
    assert_int_equal(anon_delivery_size(d), 12);
    assert_int_equal(anon_delivery_stats(d)->held_back, 3);
    assert_true(len >= 2 && csv[len - 2] == '\r' && csv[len - 1] == '\n');
    const char *markers[] = {"1971", "1938", "2025-07-14", "07-14", "Ponsonby", "intersex", "\""};
    for (size_t i = 0; i < sizeof markers / sizeof *markers; i++) assert_null(strstr(csv, markers[i]));
    /* The hash is SHA-256 of the CSV bytes. */
    uint8_t want[ANON_SHA256_BYTES], got[ANON_SHA256_BYTES];
    cs_crypto_sha256(want, csv, len);
    anon_delivery_sha256(d, got);
    assert_memory_equal(want, got, sizeof want);

    json_t *doc = NULL;
    assert_int_equal(anon_delivery_json(d, &doc, &err), CORE_OK);
    char *text = core_json_dumps(doc, JSON_COMPACT);
    assert_non_null(text);
    json_error_t jerr;
    json_t *back = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(back);
    for (size_t i = 0; i < sizeof markers / sizeof *markers - 1; i++) assert_null(strstr(text, markers[i]));
    char hex[2 * ANON_SHA256_BYTES + 1];
    cs_crypto_hex(want, sizeof want, hex);
    assert_string_equal(json_string_value(json_object_get(back, "sha256")), hex);
    assert_int_equal(json_integer_value(json_object_get(back, "k")), 11);
    json_t *summary = json_object_get(back, "summary");
    assert_int_equal(json_integer_value(json_object_get(summary, "held_back")), 3);
    assert_int_equal(json_integer_value(json_object_get(summary, "delivered")), 12);
    /* Top-level keys, dictionary names = CSV header, row keys = exactly the dictionary. */
    const char *top[] = {"format", "k", "sha256", "summary", "dictionary", "rows"};
    assert_int_equal(json_object_size(back), 6);
    for (size_t i = 0; i < 6; i++) assert_non_null(json_object_get(back, top[i]));
    json_t *dict = json_object_get(back, "dictionary");
    assert_int_equal(json_array_size(dict), 7);
    for (size_t i = 0; i < 7; i++) {
        json_t *col = json_array_get(dict, i);
        assert_string_equal(json_string_value(json_object_get(col, "name")), c.header[i]);
        assert_int_equal(json_object_size(col), 4);
        assert_non_null(json_string_value(json_object_get(col, "meaning")));
        assert_non_null(json_string_value(json_object_get(col, "values")));
        assert_non_null(json_string_value(json_object_get(col, "generalisation")));
    }
    json_t *jrows = json_object_get(back, "rows");
    assert_int_equal(json_array_size(jrows), anon_delivery_size(d));
    size_t i;
    json_t *row;
    json_array_foreach(jrows, i, row) {
        assert_int_equal(json_object_size(row), 7);
        const anon_released *r = anon_delivery_row(d, i);
        const char *vals[7] = {r->tag, r->category, r->code, r->age_band, r->sex, r->region, r->period};
        for (size_t f = 0; f < 7; f++)
            assert_string_equal(json_string_value(json_object_get(row, c.header[f])), vals[f]);
    }
    json_decref(back);
    json_decref(doc);
    free(text);
    free(csv);
    anon_delivery_free(d);
}

static void stored_rows_round_trip_and_refuse_anything_else(void **state) {
    (void)state;
    anon_row rows[3] = {one(1971, "intersex", "GB-ABD", 2026, 12, 31), one(0, NULL, NULL, 2020, 1, 1),
                        one(1930, "female", "FR-75", 2024, 2, 29)};
    rows[1].category = ANON_DEMOGRAPHICS;
    memset(rows[1].code, 0, sizeof rows[1].code);
    char *text = NULL;
    core_error err = {0};
    assert_int_equal(anon_rows_dump(rows, 3, &text, &err), CORE_OK);
    anon_row *back = NULL;
    size_t n = 0;
    assert_int_equal(anon_rows_parse(text, strlen(text), &back, &n, &err), CORE_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(back, rows, sizeof rows);
    free(back);
    free(text);
    const char *ok = "{\"age_band\":\"30-34\",\"sex\":\"other\",\"region\":\"NZ-AUK\",\"week\":\"2026-W53\","
                     "\"category\":\"condition\",\"code\":\"eczema\",\"tag\":\"00112233445566778899aabbccddeeff\"";
    char buf[512];
    snprintf(buf, sizeof buf, "[%s}]", ok);
    assert_int_equal(anon_rows_parse(buf, strlen(buf), &back, &n, &err), CORE_OK);
    free(back);
    const char *bad[][2] = {
        {"[", ",\"name\":\"Ann\"}]"},  /* a field outside the schema */
        {"[", ",\"code\":\"acne\"}]"}, /* duplicate key */
        {"[", "}"},                    /* truncated */
        {"{", "}"},                    /* not an array */
        {"[{\"row\":", "}}]"},         /* not a row */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(buf, sizeof buf, "%s%s%s", bad[i][0], ok, bad[i][1]);
        memset(&err, 0, sizeof err);
        assert_int_equal(anon_rows_parse(buf, strlen(buf), &back, &n, &err), CORE_ERR_INVALID);
        assert_null(back);
    }
    /* Each value replaced by something that must not pass. */
    const char *swaps[][2] = {{"30-34", "31-35"},    {"30-34", "30-39"},      {"other", "intersex"},
                              {"NZ-AUK", "NZ"},      {"NZ-AUK", "Auckland"},  {"2026-W53", "2025-W53"},
                              {"condition", "note"}, {"eczema", "red itchy"}, {"00112233", "zz112233"}};
    for (size_t i = 0; i < sizeof swaps / sizeof *swaps; i++) {
        char row[400];
        snprintf(row, sizeof row, "%s", ok);
        char *at = strstr(row, swaps[i][0]);
        assert_non_null(at);
        char rest[400];
        snprintf(rest, sizeof rest, "%s", at + strlen(swaps[i][0]));
        snprintf(at, sizeof row - (size_t)(at - row), "%s%s", swaps[i][1], rest);
        snprintf(buf, sizeof buf, "[%s}]", row);
        memset(&err, 0, sizeof err);
        assert_int_equal(anon_rows_parse(buf, strlen(buf), &back, &n, &err), CORE_ERR_INVALID);
        assert_true(err.message[0]);
    }
    assert_int_equal(anon_rows_parse("[]", 2, &back, &n, &err), CORE_OK);
    assert_int_equal(n, 0);
    assert_null(back);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(age_is_a_5_year_band_of_the_iso_year),
        cmocka_unit_test(dates_become_iso_weeks_including_week_53),
        cmocka_unit_test(region_is_the_first_level_subdivision_or_unknown),
        cmocka_unit_test(sex_codes_and_tags),
        cmocka_unit_test(classes_count_people_not_rows),
        cmocka_unit_test(random_audit_no_delivered_class_below_k),
        cmocka_unit_test(csv_and_json_are_well_formed_and_hold_only_the_schema),
        cmocka_unit_test(stored_rows_round_trip_and_refuse_anything_else),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
