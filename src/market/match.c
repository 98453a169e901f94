/* market — matching a person against a request, and the generalised rows
 * that would leave their record. Pure functions over the decrypted profile
 * and entries the caller passes in: nothing here is stored.
 *
 * What leaves is decided field by field, never by copying: a row is built
 * from a code checked against the condition table, an ISO week computed
 * from a date, a 5-year band computed from a birth year, the profile's
 * subdivision code and sex from fixed lists. Titles, details, notes, exact
 * dates, birth years, names never reach a row, whatever the entry holds. */
#include "market/market.h"

#include <stdio.h>
#include <string.h>

void market_age_band(int age, char out[8]) {
    if (age < 0) age = 0;
    if (age >= 100) {
        snprintf(out, 8, "100+");
        return;
    }
    int lo = age / 5 * 5;
    snprintf(out, 8, "%d-%d", lo, lo + 4);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
static long days_from_civil(long y, unsigned m, unsigned d) {
    y -= m <= 2;
    const long era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long)doe - 719468;
}

/* ISO weekday, Monday 1 … Sunday 7 (1970-01-01 was a Thursday). */
static int iso_weekday(long days) {
    long w = (days + 3) % 7;
    if (w < 0) w += 7;
    return (int)w + 1;
}

/* Weeks in ISO year y: 53 when 1 January or (leap) 31 December is a Thursday. */
static int iso_weeks_in_year(long y) {
    int jan1 = iso_weekday(days_from_civil(y, 1, 1));
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return jan1 == 4 || (leap && jan1 == 3) ? 53 : 52;
}

bool market_iso_week(const char *date, char out[9]) {
    int y, mo, d;
    char tail;
    if (!date || strlen(date) != 10 || sscanf(date, "%4d-%2d-%2d%c", &y, &mo, &d, &tail) != 3) return false;
    if (y < 1900 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31) return false;
    long days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    long ordinal = days - days_from_civil(y, 1, 1) + 1;
    long week = (ordinal - iso_weekday(days) + 10) / 7;
    long wy = y;
    if (week < 1) {
        wy = y - 1;
        week = iso_weeks_in_year(wy);
    } else if (week > iso_weeks_in_year(y)) {
        wy = y + 1;
        week = 1;
    }
    char tmp[32]; /* wy is 1899..10000 and week 1..53: always 8 characters but for year 10000 */
    snprintf(tmp, sizeof tmp, "%04ld-W%02ld", wy, week);
    if (strlen(tmp) != 8) return false;
    memcpy(out, tmp, 9);
    return true;
}

static bool in_list(const char *s, const char (*list)[32], size_t n) {
    for (size_t i = 0; s && i < n; i++)
        if (!strcmp(s, list[i])) return true;
    return false;
}

static bool in_table(const char *s, const char *const *codes, size_t n) {
    for (size_t i = 0; s && i < n; i++)
        if (!strcmp(s, codes[i])) return true;
    return false;
}

/* The person's age band, or false when the profile has no birth year. */
static bool profile_band(const json_t *profile, int this_year, char band[8]) {
    const json_t *by = json_object_get(profile, "birth_year");
    if (!json_is_integer(by)) return false;
    market_age_band(this_year - (int)json_integer_value(by), band);
    return true;
}

static const char *entry_code(const json_t *e) {
    const char *kind = json_string_value(json_object_get(e, "kind"));
    if (!kind || (strcmp(kind, "condition") && strcmp(kind, "symptom"))) return NULL;
    return json_string_value(json_object_get(e, "code"));
}

bool market_matches(const market_criteria *c, const json_t *profile, const json_t *entries, int this_year) {
    if (c->n_conditions) {
        bool any = false;
        size_t i;
        const json_t *e;
        json_array_foreach(entries, i, e) any = any || in_list(entry_code(e), c->conditions, c->n_conditions);
        if (!any) return false;
    }
    if (c->n_countries) {
        const char *region = json_string_value(json_object_get(profile, "region"));
        bool any = false;
        for (size_t i = 0; region && strlen(region) > 2 && region[2] == '-' && i < c->n_countries; i++)
            any = any || !strncmp(region, c->countries[i], 2);
        if (!any) return false;
    }
    if (c->n_age_bands) {
        char band[8];
        if (!profile_band(profile, this_year, band)) return false;
        bool any = false;
        for (size_t i = 0; i < c->n_age_bands; i++) any = any || !strcmp(band, c->age_bands[i]);
        if (!any) return false;
    }
    return true;
}

static const char *const sexes[] = {"female", "male", "intersex"};

/* Demographics onto row: each field only when the profile has it (an
 * absent field is absent, never a guess). Returns false on OOM. */
static bool add_demographics(json_t *row, const json_t *profile, int this_year) {
    char band[8];
    if (profile_band(profile, this_year, band) && json_object_set_new(row, "age_band", json_string(band))) return false;
    const char *sex = json_string_value(json_object_get(profile, "sex"));
    for (size_t i = 0; sex && i < sizeof sexes / sizeof sexes[0]; i++)
        if (!strcmp(sex, sexes[i]) && json_object_set_new(row, "sex", json_string(sex))) return false;
    const char *region = json_string_value(json_object_get(profile, "region"));
    /* records validates it as an ISO 3166-2 subdivision code; checked
     * again by shape so nothing else can pass through. */
    if (region && strlen(region) >= 4 && strlen(region) <= 6 && region[2] == '-' &&
        strspn(region, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") == strlen(region) &&
        json_object_set_new(row, "region", json_string(region)))
        return false;
    return true;
}

static bool append_row(json_t *rows, const char *category, const char *code, const char *date, bool demo,
                       const json_t *profile, int this_year) {
    json_t *row = json_pack("{s:s}", "category", category);
    if (!row) return false;
    char week[9];
    bool ok = true;
    if (code) ok = !json_object_set_new(row, "code", json_string(code));
    if (ok && code)
        ok = !json_object_set_new(row, "week", market_iso_week(date, week) ? json_string(week) : json_null());
    if (ok && demo) ok = add_demographics(row, profile, this_year);
    if (!ok || json_array_append_new(rows, row)) {
        if (ok) return false; /* append_new released row */
        json_decref(row);
        return false;
    }
    return true;
}

json_t *market_rows_build(const market_criteria *c, const json_t *profile, const json_t *entries, int this_year,
                          const char *const *codes, size_t n) {
    json_t *rows = json_array();
    if (!rows) return NULL;
    const bool demo = c->categories & (1u << LEDGER_CAT_DEMOGRAPHICS);
    size_t i;
    const json_t *e;
    json_array_foreach(entries, i, e) {
        const char *kind = json_string_value(json_object_get(e, "kind"));
        const char *code = json_string_value(json_object_get(e, "code"));
        if (!kind || !in_table(code, codes, n)) continue;
        const char *category = NULL, *date = json_string_value(json_object_get(e, "onset"));
        char day[11] = "";
        if (!strcmp(kind, "condition") && (c->categories & (1u << LEDGER_CAT_CONDITIONS)))
            category = "conditions";
        else if (!strcmp(kind, "symptom") && (c->categories & (1u << LEDGER_CAT_SYMPTOMS)))
            category = "symptoms";
        else if (!strcmp(kind, "note") && json_is_object(json_object_get(e, "result")) &&
                 (c->categories & (1u << LEDGER_CAT_SCREENING))) {
            category = "screening";
            /* created_at is RFC 3339; its date part gives the week */
            const char *at = json_string_value(json_object_get(e, "created_at"));
            if (at && strlen(at) >= 10) snprintf(day, sizeof day, "%.10s", at);
            date = day;
        }
        if (category && !append_row(rows, category, code, date, demo, profile, this_year)) {
            json_decref(rows);
            return NULL;
        }
    }
    if (demo && json_array_size(rows) == 0 && !append_row(rows, "demographics", NULL, NULL, true, profile, this_year)) {
        json_decref(rows);
        return NULL;
    }
    return rows;
}
