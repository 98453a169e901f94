/* review — what review.c (offers) and cases.c (cases) share. */
#ifndef CARESYNC_REVIEW_INTERNAL_H
#define CARESYNC_REVIEW_INTERNAL_H

#include "review/review.h"

struct review {
    review_options opt;
    char **conditions; /* our copy of the table's codes */
    size_t n_conditions;
    uint8_t server_key[32]; /* seals the organisation's copy of case keys; from the node key */
};

bool review_known_condition(const review *r, const char *code);

/* Crash points for the crash tests (cases.c): compiled in only when the
 * build defines CARESYNC_CRASH_POINTS (CMake option of that name, on in the
 * sanitizer test build), otherwise nothing. */
#ifdef CARESYNC_CRASH_POINTS
void review_crash_point(const char *name);
#define REVIEW_CRASH_POINT(name) review_crash_point(name)
#else
#define REVIEW_CRASH_POINT(name) ((void)0)
#endif

#endif
