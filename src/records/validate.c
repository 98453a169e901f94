/* records — validation of untrusted entry and profile JSON. Validators copy
 * only known fields into a fresh object, so unexpected keys never reach
 * storage. */
#include "records/records.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const kinds[] = {"condition", "symptom", "medication", "allergy", "note"};
static const char *const sexes[] = {"female", "male", "intersex", "unspecified"};

void records_today(char out[11], int *year) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
    if (year) *year = tm.tm_year + 1900;
}

static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static bool has_control(const char *s, bool allow_newlines) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == 0x7f || (c < 0x20 && !(allow_newlines && (c == '\n' || c == '\r' || c == '\t')))) return true;
    }
    return false;
}

/* Add key: v to out. jansson reports a failed allocation only through the
 * return value (and frees v); a record missing a field must never be
 * sealed and stored, so every field goes through here. */
static core_status put(json_t *out, const char *key, json_t *v, core_error *err) {
    return json_object_set_new(out, key, v) == 0 ? CORE_OK : core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
}

/* A string field: required or optional (null/absent → JSON null). */
static core_status text_field(const json_t *in, const char *key, bool required, size_t max, bool multiline, json_t *out,
                              core_error *err) {
    const json_t *v = json_object_get(in, key);
    if (!v || json_is_null(v)) {
        if (required) return core_fail(err, CORE_ERR_INVALID, key, "%s is required", key);
        return put(out, key, json_null(), err);
    }
    if (!json_is_string(v)) return core_fail(err, CORE_ERR_INVALID, key, "%s must be text", key);
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v))
        return core_fail(err, CORE_ERR_INVALID, key, "%s contains a NUL character", key);
    size_t n = utf8_chars(s);
    if (required && n == 0) return core_fail(err, CORE_ERR_INVALID, key, "%s must not be empty", key);
    if (n > max) return core_fail(err, CORE_ERR_INVALID, key, "%s must be at most %zu characters", key, max);
    if (has_control(s, multiline)) return core_fail(err, CORE_ERR_INVALID, key, "%s contains control characters", key);
    return put(out, key, !required && n == 0 ? json_null() : json_string(s), err);
}

static bool valid_date(const char *s) {
    int y, m, d;
    char tail;
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-') return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9')) return false;
    if (sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3) return false;
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1900 || m < 1 || m > 12 || d < 1) return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= days[m - 1] + (m == 2 && leap);
}

static core_status date_field(const json_t *in, const char *key, bool required, const char *today, json_t *out,
                              core_error *err) {
    const json_t *v = json_object_get(in, key);
    if (!v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0)) {
        if (required) return core_fail(err, CORE_ERR_INVALID, key, "%s (the date it started) is required", key);
        return put(out, key, json_null(), err);
    }
    if (!json_is_string(v) || !valid_date(json_string_value(v)))
        return core_fail(err, CORE_ERR_INVALID, key, "%s must be a date written YYYY-MM-DD", key);
    /* ISO dates of equal length compare correctly as strings. */
    if (strcmp(json_string_value(v), today) > 0)
        return core_fail(err, CORE_ERR_INVALID, key, "%s cannot be in the future", key);
    return put(out, key, json_string(json_string_value(v)), err);
}

static int one_of(const char *s, const char *const *list, size_t n) {
    for (size_t i = 0; s && i < n; i++)
        if (strcmp(s, list[i]) == 0) return (int)i;
    return -1;
}

core_status records_validate_entry(const json_t *in, const char *today, json_t **out, core_error *err) {
    *out = NULL;
    if (!json_is_object(in)) return core_fail(err, CORE_ERR_INVALID, NULL, "a record must be a JSON object");
    const json_t *kind = json_object_get(in, "kind");
    if (!json_is_string(kind) || one_of(json_string_value(kind), kinds, 5) < 0)
        return core_fail(err, CORE_ERR_INVALID, "kind",
                         "kind must be one of condition, symptom, medication, allergy, note");
    json_t *o = json_object();
    if (!o) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    bool symptom = strcmp(json_string_value(kind), "symptom") == 0;
    core_status rc = put(o, "kind", json_string(json_string_value(kind)), err);
    if (!rc) rc = text_field(in, "title", true, 200, false, o, err);
    if (!rc) rc = text_field(in, "details", false, 10000, true, o, err);
    if (!rc) rc = date_field(in, "onset", symptom, today, o, err);
    if (!rc) rc = date_field(in, "ended", false, today, o, err);
    if (!rc) {
        /* An optional coded form of a condition or symptom (issue 14: what
         * a data request may match on and share, never the free text). Kept
         * only when given, so entries without one look as they always did. */
        const json_t *code = json_object_get(in, "code");
        if (code && !json_is_null(code)) {
            const char *c = json_string_value(code);
            if (!c || strlen(c) < 1 || strlen(c) > 31 ||
                strspn(c, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(c))
                rc = core_fail(err, CORE_ERR_INVALID, "code", "code must be 1-31 characters of a-z, 0-9 and _");
            else
                rc = put(o, "code", json_string(c), err);
        }
    }
    if (!rc) {
        const char *onset = json_string_value(json_object_get(o, "onset"));
        const char *ended = json_string_value(json_object_get(o, "ended"));
        if (onset && ended && strcmp(ended, onset) < 0)
            rc = core_fail(err, CORE_ERR_INVALID, "ended", "ended cannot be before onset");
    }
    if (rc) {
        json_decref(o);
        return rc;
    }
    *out = o;
    return CORE_OK;
}

core_status records_validate_profile(const json_t *in, const regions *regs, int this_year, json_t **out,
                                     core_error *err) {
    *out = NULL;
    if (!json_is_object(in)) return core_fail(err, CORE_ERR_INVALID, NULL, "a profile must be a JSON object");
    json_t *o = json_object();
    if (!o) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    core_status rc = text_field(in, "display_name", false, 100, false, o, err);
    if (!rc) {
        const json_t *y = json_object_get(in, "birth_year");
        if (!y || json_is_null(y))
            rc = put(o, "birth_year", json_null(), err);
        else if (!json_is_integer(y) || json_integer_value(y) < 1900 || json_integer_value(y) > this_year)
            rc = core_fail(err, CORE_ERR_INVALID, "birth_year", "birth_year must be a year between 1900 and %d",
                           this_year);
        else
            rc = put(o, "birth_year", json_integer(json_integer_value(y)), err);
    }
    if (!rc) {
        const json_t *s = json_object_get(in, "sex");
        if (!s || json_is_null(s))
            rc = put(o, "sex", json_null(), err);
        else if (!json_is_string(s) || one_of(json_string_value(s), sexes, 4) < 0)
            rc = core_fail(err, CORE_ERR_INVALID, "sex", "sex must be one of female, male, intersex, unspecified");
        else
            rc = put(o, "sex", json_string(json_string_value(s)), err);
    }
    if (!rc) {
        const json_t *r = json_object_get(in, "region");
        if (!r || json_is_null(r))
            rc = put(o, "region", json_null(), err);
        else if (!json_is_string(r) || (regs && !regions_is_subdivision(regs, json_string_value(r))))
            rc = core_fail(err, CORE_ERR_INVALID, "region",
                           "region must be an ISO 3166-2 subdivision code such as NZ-AUK");
        else
            rc = put(o, "region", json_string(json_string_value(r)), err);
    }
    if (rc) {
        json_decref(o);
        return rc;
    }
    *out = o;
    return CORE_OK;
}
