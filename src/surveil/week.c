/* ISO 8601 weeks <-> consecutive week numbers. Week 0 starts on Monday
 * 1970-01-05; a week belongs to the ISO year of its Thursday. */
#include <stdio.h>
#include <string.h>

#include "surveil/surveil.h"

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static int floor_div(int64_t a, int64_t b) { return (int)(a >= 0 ? a / b : -((-a + b - 1) / b)); }

int surveil_week_of_date(int year, int month, int day) {
    return floor_div(days_from_civil(year, month, day) - 4, 7); /* 1970-01-05 is day 4 */
}

int surveil_week_of_time(int64_t t) {
    int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
    return floor_div(days - 4, 7);
}

int64_t surveil_week_start(int week) { return ((int64_t)week * 7 + 4) * 86400; }

/* The ISO year of a week is the year of its Thursday; its number counts
 * from the week holding that year's 4 January. */
void surveil_week_format(int week, char out[9]) {
    int y, m, d;
    civil_from_days((int64_t)week * 7 + 4 + 3, &y, &m, &d);
    int first = surveil_week_of_date(y, 1, 4);
    int n = week - first + 1; /* 1..53 */
    y = ((y % 10000) + 10000) % 10000;
    out[0] = (char)('0' + y / 1000), out[1] = (char)('0' + y / 100 % 10);
    out[2] = (char)('0' + y / 10 % 10), out[3] = (char)('0' + y % 10);
    out[4] = '-', out[5] = 'W', out[6] = (char)('0' + n / 10 % 10), out[7] = (char)('0' + n % 10), out[8] = 0;
}

core_status surveil_week_parse(const char *text, int *week, core_error *err) {
    int y, w, n = 0;
    if (!text || strlen(text) != 8 || sscanf(text, "%4d-W%2d%n", &y, &w, &n) != 2 || n != 8 || y < 1970 || y > 9999 ||
        w < 1)
        return core_fail(err, CORE_ERR_INVALID, "week", "a week is written YYYY-Www, e.g. 2026-W48");
    int first = surveil_week_of_date(y, 1, 4);
    int next = surveil_week_of_date(y + 1, 1, 4);
    if (w > next - first) return core_fail(err, CORE_ERR_INVALID, "week", "%d has %d ISO weeks", y, next - first);
    *week = first + w - 1;
    return CORE_OK;
}

/* Week W ends when W + 1 starts; it is sealed once delay more seconds have
 * passed, so the latest sealed week is the one before the week holding
 * now - delay. */
int surveil_sealed_through(int64_t now, int64_t delay) { return surveil_week_of_time(now - delay) - 1; }
