/* anon — helpers shared by rows.c and deliver.c (not part of the module's API). */
#ifndef CARESYNC_ANON_INTERNAL_H
#define CARESYNC_ANON_INTERNAL_H

#include "anon/anon.h"

/* ISO year and month of a week index: those of its Thursday. */
void anon_week_calendar(int week, int *year, int *month);
/* 5-year band start (or ANON_AGE_UNKNOWN) of a birth year at a week. */
int anon_age_band(int birth_year, int week);
/* "30-34" for (30, 5), "30-39" for (30, 10), "20-39" for (30, 20), "90+",
 * "80+" (20-year), "unknown". */
void anon_age_text(int lo, int width, char out[8]);

#endif
