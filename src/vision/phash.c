/* vision — a perceptual hash, so that the same photo taken through
 * different hands (re-encoded, resized, slightly cropped or brightened)
 * can be recognised without keeping the photo.
 *
 * The classic DCT hash: the image is averaged down to 32 × 32 grey (area
 * averaging, so resizing and JPEG noise wash out), a 2-D DCT-II is taken,
 * and the 8 × 8 lowest frequencies are kept — the photo's coarse layout of
 * light and dark. Each bit says whether one coefficient is above the
 * median of the 63 non-DC ones, so a uniform change of brightness (which
 * moves only DC) or of contrast (which scales all) leaves the bits as they
 * were. Two hashes are compared by Hamming distance. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vision/vision.h"

#define N 32
#define K 8

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

core_status vision_phash(const vision_image *img, uint64_t *out, core_error *err) {
    *out = 0;
    if (!img || !img->rgb || img->width < 1 || img->height < 1)
        return core_fail(err, CORE_ERR_INVALID, "photo", "no image to hash");
    vision_image small = {0};
    core_status rc = vision_resize(img, N, N, &small, err);
    if (rc) return rc;
    double grey[N][N];
    for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++) {
            const uint8_t *p = small.rgb + ((size_t)y * N + (size_t)x) * 3;
            grey[y][x] = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
        }
    vision_image_free(&small);
    /* Separable DCT-II, only the K lowest frequencies of each axis. */
    double basis[K][N], rows[N][K], coef[K * K];
    for (int u = 0; u < K; u++)
        for (int x = 0; x < N; x++) basis[u][x] = cos((2.0 * x + 1.0) * u * M_PI / (2.0 * N));
    for (int y = 0; y < N; y++)
        for (int u = 0; u < K; u++) {
            double s = 0;
            for (int x = 0; x < N; x++) s += grey[y][x] * basis[u][x];
            rows[y][u] = s;
        }
    for (int v = 0; v < K; v++)
        for (int u = 0; u < K; u++) {
            double s = 0;
            for (int y = 0; y < N; y++) s += rows[y][u] * basis[v][y];
            coef[v * K + u] = s;
        }
    double sorted[K * K - 1];
    memcpy(sorted, coef + 1, sizeof sorted);
    qsort(sorted, K * K - 1, sizeof sorted[0], cmp_double);
    double median = sorted[(K * K - 1) / 2]; /* 63 values: the middle one */
    uint64_t h = 0;
    for (int i = 0; i < K * K; i++)
        if (coef[i] > median) h |= (uint64_t)1 << i;
    *out = h;
    return CORE_OK;
}

int vision_phash_distance(uint64_t a, uint64_t b) { return __builtin_popcountll(a ^ b); }
