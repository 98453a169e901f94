/* anon — one person's shared data as generalised rows, and their stored form. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anon/anon.h"
#include "anon/internal.h"
#include "crypto/crypto.h"
#include "surveil/surveil.h"

static const char *const sex_names[] = {"unspecified", "female", "male", "other"};
static const char *const category_names[] = {"condition", "symptom", "screening", "demographics"};

const char *anon_sex_name(anon_sex s) { return (unsigned)s < 4 ? sex_names[s] : "unspecified"; }
const char *anon_category_name(anon_category c) { return (unsigned)c < 4 ? category_names[c] : "?"; }

bool anon_sex_parse(const char *text, anon_sex *out) {
    if (!text) {
        *out = ANON_SEX_UNSPECIFIED;
        return true;
    }
    /* records keeps "intersex"; what leaves says "other", the coarser word. */
    if (!strcmp(text, "intersex")) {
        *out = ANON_SEX_OTHER;
        return true;
    }
    for (int i = 0; i < 4; i++)
        if (!strcmp(text, sex_names[i])) {
            *out = (anon_sex)i;
            return true;
        }
    return false;
}

bool anon_category_parse(const char *text, anon_category *out) {
    for (int i = 0; text && i < 4; i++)
        if (!strcmp(text, category_names[i])) {
            *out = (anon_category)i;
            return true;
        }
    return false;
}

void anon_week_calendar(int week, int *year, int *month) {
    /* The Thursday decides: it fixes the ISO year (ISO 8601), and the same
     * rule gives each week exactly one month, so months partition weeks. */
    time_t t = (time_t)(surveil_week_start(week) + 3 * 86400);
    struct tm tm;
    gmtime_r(&t, &tm);
    *year = tm.tm_year + 1900;
    *month = tm.tm_mon + 1;
}

static bool code_ok(const char *code) {
    size_t n = code ? strlen(code) : 0;
    if (n < 1 || n >= ANON_CODE_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = code[i];
        bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && (i == 0 || (ch != '.' && ch != '_' && ch != '-'))) return false;
    }
    return true;
}

/* Shape of a region once generalised or stored: "" or CC or CC-XXX. */
static bool region_shape_ok(const char *region) {
    size_t n = strnlen(region, ANON_REGION_MAX);
    if (n == ANON_REGION_MAX) return false;
    if (n == 0) return true;
    if (n < 4 || region[2] != '-') return false;
    for (size_t i = 0; i < n; i++) {
        char ch = region[i];
        bool ok = i == 2 || (i < 2 ? ch >= 'A' && ch <= 'Z' : (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'));
        if (!ok) return false;
    }
    return true;
}

/* Weeks of years 1970..9999, the range surveil_week_parse accepts. */
#define WEEK_MAX 417000

core_status anon_row_check(const anon_row *row, core_error *err) {
    if (row->age_lo != ANON_AGE_UNKNOWN && (row->age_lo < 0 || row->age_lo > ANON_AGE_TOP || row->age_lo % 5))
        return core_fail(err, CORE_ERR_INVALID, "age_band", "an age band starts at a multiple of 5 up to 90");
    if ((unsigned)row->sex > ANON_SEX_OTHER) return core_fail(err, CORE_ERR_INVALID, "sex", "unknown sex");
    if (!region_shape_ok(row->region))
        return core_fail(err, CORE_ERR_INVALID, "region", "a region is an ISO 3166-2 code or unknown");
    if (row->week < 0 || row->week > WEEK_MAX) return core_fail(err, CORE_ERR_INVALID, "week", "week out of range");
    if ((unsigned)row->category > ANON_DEMOGRAPHICS)
        return core_fail(err, CORE_ERR_INVALID, "category", "unknown category");
    if (!memchr(row->code, 0, ANON_CODE_MAX)) return core_fail(err, CORE_ERR_INVALID, "code", "code too long");
    if (row->category == ANON_DEMOGRAPHICS ? row->code[0] != 0 : !code_ok(row->code))
        return core_fail(err, CORE_ERR_INVALID, "code",
                         "a code is 1-31 letters, digits, '.', '_' or '-' (none for demographics)");
    return CORE_OK;
}

static bool date_ok(int y, int m, int d) {
    static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || y > 9998 || m < 1 || m > 12 || d < 1 || d > days[m - 1]) return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return !(m == 2 && d == 29 && !leap);
}

int anon_age_band(int birth_year, int week) {
    int year, month;
    anon_week_calendar(week, &year, &month);
    int age = year - birth_year;
    if (birth_year <= 0 || age < 0 || age > 130) return ANON_AGE_UNKNOWN;
    return age >= ANON_AGE_TOP ? ANON_AGE_TOP : age / 5 * 5;
}

core_status anon_rows_from_person(const regions *r, const anon_person *p, const anon_item *items, size_t n,
                                  anon_row *out, core_error *err) {
    anon_sex sex;
    if (!anon_sex_parse(p->sex, &sex))
        return core_fail(err, CORE_ERR_INVALID, "sex", "sex must be female, male, intersex or unspecified");
    const char *first = p->region ? regions_first_level(r, p->region) : NULL;
    for (size_t i = 0; i < n; i++) {
        const anon_item *it = &items[i];
        anon_row *row = &out[i];
        memset(row, 0, sizeof *row);
        if ((unsigned)it->category > ANON_DEMOGRAPHICS)
            return core_fail(err, CORE_ERR_INVALID, "category", "unknown category");
        if (!date_ok(it->year, it->month, it->day))
            return core_fail(err, CORE_ERR_INVALID, "date", "a date between 1970 and 9998 is needed");
        row->category = it->category;
        if (it->category == ANON_DEMOGRAPHICS) {
            if (it->code && *it->code)
                return core_fail(err, CORE_ERR_INVALID, "code", "a demographics row carries no code");
        } else {
            if (!code_ok(it->code))
                return core_fail(err, CORE_ERR_INVALID, "code",
                                 "a code is 1-31 letters, digits, '.', '_' or '-': never free text");
            memcpy(row->code, it->code, strlen(it->code) + 1);
        }
        row->week = surveil_week_of_date(it->year, it->month, it->day);
        row->age_lo = anon_age_band(p->birth_year, row->week);
        row->sex = sex;
        if (first) memcpy(row->region, first, strlen(first) + 1);
        if (it->tag)
            memcpy(row->tag, it->tag, ANON_TAG_BYTES);
        else
            cs_crypto_random(row->tag, ANON_TAG_BYTES);
    }
    return CORE_OK;
}

/* ---- stored form ---- */

void anon_age_text(int lo, int width, char out[8]) {
    if (lo == ANON_AGE_UNKNOWN) {
        memcpy(out, "unknown", 8);
        return;
    }
    int top = width == 20 ? 80 : ANON_AGE_TOP;
    lo = lo / width * width;
    /* Bands lie in 0..99 (ages above 130 are unknown): the casts say so. */
    if (lo >= top)
        snprintf(out, 8, "%u+", (unsigned char)top);
    else
        snprintf(out, 8, "%u-%u", (unsigned char)lo, (unsigned char)(lo + width - 1));
}

static bool age_from_text(const char *text, int *lo) {
    if (!strcmp(text, "unknown")) {
        *lo = ANON_AGE_UNKNOWN;
        return true;
    }
    for (int a = 0; a <= ANON_AGE_TOP; a += 5) {
        char t[8];
        anon_age_text(a, 5, t);
        if (!strcmp(t, text)) {
            *lo = a;
            return true;
        }
    }
    return false;
}

static core_status set(json_t *o, const char *key, json_t *v, core_error *err) {
    if (json_object_set_new(o, key, v)) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    return CORE_OK;
}

core_status anon_rows_dump(const anon_row *rows, size_t n, char **out, core_error *err) {
    *out = NULL;
    core_status rc = CORE_OK;
    json_t *arr = json_array();
    if (!arr) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        const anon_row *row = &rows[i];
        if ((rc = anon_row_check(row, err))) break;
        char age[8], week[9], tag[2 * ANON_TAG_BYTES + 1];
        anon_age_text(row->age_lo, 5, age);
        surveil_week_format(row->week, week);
        cs_crypto_hex(row->tag, ANON_TAG_BYTES, tag);
        json_t *o = json_object();
        if (!o || json_array_append_new(arr, o)) {
            rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
            break;
        }
        rc = set(o, "age_band", json_string(age), err);
        if (!rc) rc = set(o, "sex", json_string(anon_sex_name(row->sex)), err);
        if (!rc) rc = set(o, "region", json_string(row->region), err);
        if (!rc) rc = set(o, "week", json_string(week), err);
        if (!rc) rc = set(o, "category", json_string(anon_category_name(row->category)), err);
        if (!rc) rc = set(o, "code", json_string(row->code), err);
        if (!rc) rc = set(o, "tag", json_string(tag), err);
    }
    if (!rc) {
        *out = core_json_dumps(arr, JSON_COMPACT);
        if (!*out) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    json_decref(arr);
    return rc;
}

static const char *str_field(const json_t *o, const char *key) { return json_string_value(json_object_get(o, key)); }

static core_status row_from_json(const json_t *o, anon_row *row, core_error *err) {
    memset(row, 0, sizeof *row);
    if (!json_is_object(o) || json_object_size(o) != 7)
        return core_fail(err, CORE_ERR_INVALID, "row", "a row is an object of exactly 7 fields");
    const char *age = str_field(o, "age_band"), *sex = str_field(o, "sex"), *region = str_field(o, "region");
    const char *week = str_field(o, "week"), *cat = str_field(o, "category"), *code = str_field(o, "code");
    const char *tag = str_field(o, "tag");
    if (!age || !sex || !region || !week || !cat || !code || !tag)
        return core_fail(err, CORE_ERR_INVALID, "row", "a row field is missing or not a string");
    if (!age_from_text(age, &row->age_lo)) return core_fail(err, CORE_ERR_INVALID, "age_band", "bad age band");
    /* Stored rows say "other", never "intersex" (that is the record's word). */
    if (!strcmp(sex, "intersex") || !anon_sex_parse(sex, &row->sex))
        return core_fail(err, CORE_ERR_INVALID, "sex", "bad sex");
    if (strlen(region) >= ANON_REGION_MAX) return core_fail(err, CORE_ERR_INVALID, "region", "bad region");
    memcpy(row->region, region, strlen(region) + 1);
    if (surveil_week_parse(week, &row->week, err)) return err ? err->code : CORE_ERR_INVALID;
    if (!anon_category_parse(cat, &row->category)) return core_fail(err, CORE_ERR_INVALID, "category", "bad category");
    if (strlen(code) >= ANON_CODE_MAX) return core_fail(err, CORE_ERR_INVALID, "code", "code too long");
    memcpy(row->code, code, strlen(code) + 1);
    if (!cs_crypto_unhex(tag, row->tag, ANON_TAG_BYTES)) return core_fail(err, CORE_ERR_INVALID, "tag", "bad tag");
    return anon_row_check(row, err);
}

core_status anon_rows_parse(const char *text, size_t len, anon_row **out, size_t *n, core_error *err) {
    *out = NULL;
    *n = 0;
    json_error_t jerr;
    core_error pe = {0};
    json_t *arr = core_json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr, &pe);
    /* core_json_loadb tells out of memory apart (core.h); it is not "invalid". */
    if (!arr && pe.code == CORE_ERR_NOMEM) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    if (!arr) return core_fail(err, CORE_ERR_INVALID, "rows", "stored rows are not JSON: %s", jerr.text);
    if (!json_is_array(arr)) {
        json_decref(arr);
        return core_fail(err, CORE_ERR_INVALID, "rows", "stored rows are a JSON array");
    }
    size_t count = json_array_size(arr);
    anon_row *rows = NULL;
    if (count) {
        rows = calloc(count, sizeof *rows);
        if (!rows) {
            json_decref(arr);
            return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        }
    }
    core_status rc = CORE_OK;
    for (size_t i = 0; i < count && !rc; i++) rc = row_from_json(json_array_get(arr, i), &rows[i], err);
    json_decref(arr);
    /* Only the canonical text (what anon_rows_dump writes) is accepted: when
     * a buffer cannot grow, jansson 2.14's lexer drops the byte and carries
     * on (seen: a tag lost a digit under tests/unit/test_alloc_failures.c),
     * so a parse under memory pressure can return a different, still valid
     * value — a code "L20.9" read as "L2.9". Writing the rows back and
     * comparing turns that into an error. */
    char *again = NULL;
    if (!rc) rc = anon_rows_dump(rows, count, &again, err);
    if (!rc && (strlen(again) != len || memcmp(again, text, len)))
        rc = core_fail(err, CORE_ERR_INVALID, "rows", "stored rows are not in the form anon_rows_dump writes");
    free(again);
    if (rc) {
        free(rows);
        return rc;
    }
    *out = rows;
    *n = count;
    return CORE_OK;
}
