/* market — what market.c and deliver.c share (not part of the module's API). */
#ifndef CARESYNC_MARKET_INTERNAL_H
#define CARESYNC_MARKET_INTERNAL_H

#include <pthread.h>

#include "market/market.h"

struct market {
    market_options opt;
    char (*codes)[32];
    const char **code_ptrs;
    uint8_t row_key[32];      /* seals an acceptance's rows inside its intent */
    pthread_mutex_t delivery; /* one delivery at a time: a repeat finds the first's receipt */
};

#endif
