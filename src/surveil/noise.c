/* Differential privacy noise: the two-sided geometric mechanism (Ghosh,
 * Roughgarden, Sundararajan 2009), the discrete analogue of Laplace, which
 * keeps counts integers. Z = G1 - G2 with G geometric on {0, 1, ...},
 * P(G = g) = (1 - a) a^g, a = exp(-epsilon); then P(Z = z) = (1 - a)/(1 + a)
 * a^|z|. G is drawn by inversion from 53 uniform bits.
 *
 * The bits come from libsodium's CSPRNG, or, for reproducible tests, from a
 * keyed stream: SHA-256 over (seed, counter) through cs_crypto_hash. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "surveil/surveil.h"

struct surveil_rng {
    int seeded;
    uint8_t seed[32];
    uint64_t counter;
    uint8_t block[32];
    size_t used;
};

surveil_rng *surveil_rng_new(const uint8_t *seed) {
    surveil_rng *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    if (seed) {
        r->seeded = 1;
        memcpy(r->seed, seed, 32);
    }
    r->used = sizeof r->block;
    return r;
}

void surveil_rng_free(surveil_rng *r) {
    if (r) cs_crypto_wipe(r, sizeof *r);
    free(r);
}

static uint64_t next64(surveil_rng *r) {
    uint64_t v;
    if (!r->seeded) {
        cs_crypto_random(&v, sizeof v);
        return v;
    }
    if (r->used + 8 > sizeof r->block) {
        uint8_t in[40];
        memcpy(in, r->seed, 32);
        memcpy(in + 32, &r->counter, 8);
        r->counter++;
        cs_crypto_hash(r->block, "caresync-dp-stream", in, sizeof in);
        r->used = 0;
    }
    memcpy(&v, r->block + r->used, 8);
    r->used += 8;
    return v;
}

/* Uniform on (0, 1]: never 0, so log() is finite. */
static double uniform(surveil_rng *r) { return ((next64(r) >> 11) + 1) * 0x1.0p-53; }

static int64_t geometric(surveil_rng *r, double log_a) {
    double g = floor(log(uniform(r)) / log_a);
    return g > 1e15 ? (int64_t)1e15 : (int64_t)g;
}

int64_t surveil_rng_geometric2(surveil_rng *r, double epsilon) {
    double log_a = -epsilon; /* log(exp(-epsilon)) */
    return geometric(r, log_a) - geometric(r, log_a);
}

void surveil_grid_noise(surveil_grid *g, double epsilon, const uint8_t *seed) {
    surveil_rng *r = surveil_rng_new(seed);
    if (!r) {
        /* Without a generator no noisy value can be produced: publish nothing. */
        memset(g->status, SURVEIL_CELL_COMPLEMENTARY, (g->rows + 1) * (g->cols + 1));
        return;
    }
    size_t W = g->cols + 1;
    for (size_t i = 0; i < g->rows; i++)
        for (size_t j = 0; j < g->cols; j++) {
            int64_t v = g->value[i * W + j] + surveil_rng_geometric2(r, epsilon);
            g->value[i * W + j] = v < 0 ? 0 : v;
        }
    surveil_rng_free(r);
    surveil_grid_sum(g);
}
