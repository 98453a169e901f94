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

#endif
