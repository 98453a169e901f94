/* A synthetic population for the data-request benches (bench/anon,
 * bench/market): New Zealand's regions weighted by population, adult ages
 * by 5-year band, condition codes by rough frequency, drawn with a seeded
 * xorshift64* so every run sees the same people. Header-only: each bench is
 * one translation unit. */
#ifndef CARESYNC_BENCH_POPULATION_H
#define CARESYNC_BENCH_POPULATION_H

#include <stdint.h>
#include <time.h>

/* CPU seconds of this process: on a shared machine the wall clock also
 * counts other people's work; both are printed. */
static inline double cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9E3779B97F4A7C15u;
static inline uint64_t next(void) { /* xorshift64* */
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Du;
}
static inline double unif(void) { return (double)(next() >> 11) / 9007199254740992.0; }
static inline int pick(const double *w, int n) {
    double total = 0, u;
    for (int i = 0; i < n; i++) total += w[i];
    u = unif() * total;
    for (int i = 0; i < n; i++)
        if ((u -= w[i]) < 0) return i;
    return n - 1;
}

static const char *const region_codes[] = {"NZ-AUK", "NZ-CAN", "NZ-WGN", "NZ-WKO", "NZ-BOP", "NZ-MWT",
                                           "NZ-OTA", "NZ-NTL", "NZ-HKB", "NZ-TKI", "NZ-STL", "NZ-TAS",
                                           "NZ-NSN", "NZ-GIS", "NZ-MBH", "NZ-WTC", "NZ-CIT"};
/* Thousands, 2023 census (Stats NZ), rounded. */
static const double region_pop[] = {1656, 655, 520, 498, 344, 250, 240, 194, 180, 126, 100, 58, 55, 52, 50, 32, 0.6};
/* Share of adults per 5-year band from 15-19 (18+ only) to 90-94. */
static const double age_w[] = {2, 7, 7.5, 7.5, 7, 6.5, 6.5, 6.5, 6.5, 6, 5.5, 4.5, 3.5, 2.3, 1.2, 0.6};
static const char *const codes[] = {"eczema", "psoriasis", "acne",    "urticaria", "tinea",    "melanoma",
                                    "bcc",    "scc",       "rosacea", "vitiligo",  "impetigo", "scabies"};
static const double code_w[] = {20, 10, 18, 8, 12, 2, 3, 2, 8, 2, 4, 3};

#endif
