/* vision — is this photo good enough to look at? Cheap measures on a small
 * copy, each turned into a plain sentence, before any model runs.
 *
 *  - sharpness: variance of the 4-neighbour Laplacian of luma; a blurred or
 *    shaken photo has little high-frequency energy.
 *  - exposure: mean luma and the share of nearly black / nearly white pixels.
 *  - skin: share of pixels whose chroma falls in the classic YCbCr skin box
 *    (Chai & Ngan 1999: 77 ≤ Cb ≤ 127, 133 ≤ Cr ≤ 173). Chroma, not
 *    brightness, so it holds across light and dark skin tones; it only
 *    needs to tell "some skin in view" from "a cat, a wall, a document".
 * Thresholds were set on the project's data (see docs/MODEL.md when it
 * lands); they aim to stop the obviously unusable, not to be fussy. */
#include "vision/vision.h"

#include <stdlib.h>

#define QUALITY_SIDE 256
#define BLUR_THRESHOLD 8.0
#define DARK_MEAN 45.0
#define BRIGHT_MEAN 225.0
#define CLIPPED_SHARE 0.6
#define SKIN_MIN 0.03

const char *vision_issue_code(vision_issue i) {
    switch (i) {
    case VISION_Q_BLURRY: return "too_blurry";
    case VISION_Q_DARK: return "too_dark";
    case VISION_Q_BRIGHT: return "too_bright";
    case VISION_Q_NO_SKIN: return "no_skin";
    }
    return "unknown";
}

const char *vision_issue_advice(vision_issue i) {
    switch (i) {
    case VISION_Q_BLURRY:
        return "The photo is blurry. Hold the phone still about 10 cm from the skin, tap the screen to focus, "
               "and take it again.";
    case VISION_Q_DARK:
        return "The photo is too dark. Move to daylight or a bright room (no flash right up close) and take it again.";
    case VISION_Q_BRIGHT:
        return "The photo is too bright or washed out. Avoid direct sun or flash on the skin and take it again.";
    case VISION_Q_NO_SKIN:
        return "We cannot see skin in this photo. Fill most of the picture with the affected skin and take it again.";
    }
    return "";
}

core_status vision_assess(const vision_image *img, vision_quality *q, core_error *err) {
    *q = (vision_quality){0};
    vision_image small;
    int w = img->width, h = img->height;
    int longest = w > h ? w : h;
    if (longest > QUALITY_SIDE) {
        w = (int)((int64_t)w * QUALITY_SIDE / longest);
        h = (int)((int64_t)h * QUALITY_SIDE / longest);
        if (w < 1) w = 1;
        if (h < 1) h = 1;
    }
    core_status rc = vision_resize(img, w, h, &small, err);
    if (rc) return rc;
    size_t n = (size_t)w * (size_t)h;
    float *luma = malloc(n * sizeof *luma);
    if (!luma) {
        vision_image_free(&small);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    double sum = 0;
    size_t dark = 0, bright = 0, skin = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = small.rgb + i * 3;
        double y = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
        double cb = 128 - 0.168736 * p[0] - 0.331264 * p[1] + 0.5 * p[2];
        double cr = 128 + 0.5 * p[0] - 0.418688 * p[1] - 0.081312 * p[2];
        luma[i] = (float)y;
        sum += y;
        dark += y < 16;
        bright += y > 240;
        skin += cb >= 77 && cb <= 127 && cr >= 133 && cr <= 173 && y > 20;
    }
    double lap_sum = 0, lap_sq = 0;
    size_t m = 0;
    for (int y = 1; y + 1 < h; y++)
        for (int x = 1; x + 1 < w; x++) {
            size_t i = (size_t)y * w + x;
            double l = luma[i - 1] + luma[i + 1] + luma[i - w] + luma[i + w] - 4.0 * luma[i];
            lap_sum += l;
            lap_sq += l * l;
            m++;
        }
    free(luma);
    vision_image_free(&small);
    q->brightness = sum / (double)n;
    q->clipped_dark = (double)dark / (double)n;
    q->clipped_bright = (double)bright / (double)n;
    q->skin_fraction = (double)skin / (double)n;
    q->sharpness = m ? lap_sq / (double)m - (lap_sum / (double)m) * (lap_sum / (double)m) : 0;
    if (q->sharpness < BLUR_THRESHOLD) q->issues |= VISION_Q_BLURRY;
    if (q->brightness < DARK_MEAN || q->clipped_dark > CLIPPED_SHARE) q->issues |= VISION_Q_DARK;
    if (q->brightness > BRIGHT_MEAN || q->clipped_bright > CLIPPED_SHARE) q->issues |= VISION_Q_BRIGHT;
    if (q->skin_fraction < SKIN_MIN) q->issues |= VISION_Q_NO_SKIN;
    return CORE_OK;
}
