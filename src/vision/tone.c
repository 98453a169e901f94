/* Skin tone as the Individual Typology Angle (Chardon et al. 1991):
 * ITA = atan((L* − 50) / b*) in degrees, from CIELAB. Higher is lighter:
 * > 55 very light, 41–55 light, 28–41 intermediate, 10–28 tan, −30–10
 * brown, < −30 dark (Del Bino & Bernerd 2013).
 *
 * Measured on skin around the problem, not on it: only pixels of the outer
 * ring of the photo (outside the central half, where a lesion usually is)
 * whose chroma falls in the YCbCr skin box (quality.c uses the same box)
 * count, and the medians of L* and b* over them give the angle. A photo with
 * too little such skin has no estimate. Lighting shifts ITA; it is an
 * estimate for reporting by group, not a property of a person. */
#include "vision/vision.h"

#include <math.h>
#include <stdlib.h>

static double lin(double c) {
    c /= 255.0;
    return c <= 0.04045 ? c / 12.92 : pow((c + 0.055) / 1.055, 2.4);
}
static double lab_f(double t) { return t > 216.0 / 24389.0 ? cbrt(t) : (24389.0 / 27.0 * t + 16) / 116; }

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

core_status vision_skin_ita(const vision_image *img, double *ita, core_error *err) {
    *ita = NAN;
    size_t n = (size_t)img->width * img->height, k = 0;
    float *L = malloc(n * sizeof *L), *B = malloc(n * sizeof *B);
    if (!L || !B) {
        free(L), free(B);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    int x0 = img->width / 4, x1 = img->width - x0, y0 = img->height / 4, y1 = img->height - y0;
    for (int y = 0; y < img->height; y++)
        for (int x = 0; x < img->width; x++) {
            if (x >= x0 && x < x1 && y >= y0 && y < y1) continue;
            const uint8_t *p = img->rgb + ((size_t)y * img->width + x) * 3;
            double yy = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
            double cb = 128 - 0.168736 * p[0] - 0.331264 * p[1] + 0.5 * p[2];
            double cr = 128 + 0.5 * p[0] - 0.418688 * p[1] - 0.081312 * p[2];
            if (!(cb >= 77 && cb <= 127 && cr >= 133 && cr <= 173 && yy > 20)) continue;
            double r = lin(p[0]), g = lin(p[1]), b = lin(p[2]);
            /* sRGB (D65) → Y, Z → L*, b* (a* is not needed) */
            double Y = 0.2126 * r + 0.7152 * g + 0.0722 * b, Z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883;
            L[k] = (float)(116 * lab_f(Y) - 16);
            B[k] = (float)(200 * (lab_f(Y) - lab_f(Z)));
            k++;
        }
    size_t ring = n - (size_t)(x1 - x0) * (size_t)(y1 - y0);
    if (k >= 50 && k * 5 >= ring) { /* at least a fifth of the ring is skin */
        qsort(L, k, sizeof *L, cmp_float);
        qsort(B, k, sizeof *B, cmp_float);
        double l = L[k / 2], bb = B[k / 2];
        *ita = atan2(l - 50, bb) * 180 / M_PI;
    }
    free(L), free(B);
    return CORE_OK;
}

const char *vision_ita_group(double ita) {
    if (isnan(ita)) return "unknown";
    if (ita > 55) return "very light (ITA > 55)";
    if (ita > 41) return "light (41-55)";
    if (ita > 28) return "intermediate (28-41)";
    if (ita > 10) return "tan (10-28)";
    if (ita > -30) return "brown (-30-10)";
    return "dark (< -30)";
}
