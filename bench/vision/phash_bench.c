/* bench/vision: how well the contribution photo hash (vision_phash) tells
 * the same photo from different ones, on real photos of one condition.
 *   phash_bench DIR [max]
 * Every photo goes the way a contributed one does: decoded as the desk
 * decodes it, centre-cropped to 224 px, kept as JPEG q85, decoded again and
 * hashed. Then each photo is altered — re-encoded at q60, resized to 60 % (160 px at least),
 * cropped by 3 % on every side, brightened by 25 levels — and the altered
 * file goes the same way. Printed: the distances of the altered copies from
 * the original (should be small) and, per threshold, the share of pairs of
 * different photos within it (false matches). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vision/vision.h"

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = n > 0 ? malloc((size_t)n) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* The contributed hash of a photo file: as screening_desk_assess keeps it,
 * as api_screenings_contribute hashes it. */
static int kept_hash(const uint8_t *bytes, size_t len, uint64_t *h) {
    vision_limits lim;
    vision_limits_defaults(&lim);
    lim.target_short_side = 224;
    vision_image img = {0}, sq = {0}, back = {0};
    uint8_t *jpeg = NULL;
    size_t jl = 0;
    int ok = vision_decode(bytes, len, &lim, &img, NULL, NULL, NULL) == CORE_OK &&
             vision_center_square(&img, 224, &sq, NULL) == CORE_OK &&
             vision_encode_jpeg(&sq, 85, &jpeg, &jl, NULL) == CORE_OK &&
             vision_decode(jpeg, jl, &lim, &back, NULL, NULL, NULL) == CORE_OK &&
             vision_phash(&back, h, NULL) == CORE_OK;
    vision_image_free(&img);
    vision_image_free(&sq);
    vision_image_free(&back);
    free(jpeg);
    return ok;
}

static int altered_hash(const vision_image *img, int how, uint64_t *h) {
    vision_image t = {0};
    int q = 90;
    core_status rc = CORE_OK;
    if (how == 0) { /* re-encoded */
        rc = vision_resize(img, img->width, img->height, &t, NULL);
        q = 60;
    } else if (how == 1) { /* resized */
        /* to 60 %, but no smaller than the desk takes (128 px on the short side) */
        int shortest = img->width < img->height ? img->width : img->height;
        double f = shortest * 0.6 < 160 ? 160.0 / shortest : 0.6;
        rc = vision_resize(img, (int)(img->width * f), (int)(img->height * f), &t, NULL);
    } else if (how == 2) { /* cropped 3 % on every side */
        int dx = img->width * 3 / 100, dy = img->height * 3 / 100;
        t.width = img->width - 2 * dx;
        t.height = img->height - 2 * dy;
        t.rgb = malloc((size_t)t.width * (size_t)t.height * 3);
        if (!t.rgb) return 0;
        for (int y = 0; y < t.height; y++)
            memcpy(t.rgb + (size_t)y * (size_t)t.width * 3,
                   img->rgb + ((size_t)(y + dy) * (size_t)img->width + (size_t)dx) * 3, (size_t)t.width * 3);
    } else { /* brightened */
        rc = vision_resize(img, img->width, img->height, &t, NULL);
        for (size_t i = 0; !rc && i < (size_t)t.width * (size_t)t.height * 3; i++)
            t.rgb[i] = (uint8_t)(t.rgb[i] > 230 ? 255 : t.rgb[i] + 25);
    }
    uint8_t *jpeg = NULL;
    size_t jl = 0;
    int ok = !rc && vision_encode_jpeg(&t, q, &jpeg, &jl, NULL) == CORE_OK && kept_hash(jpeg, jl, h);
    vision_image_free(&t);
    free(jpeg);
    return ok;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: phash_bench DIR [max]\n");
        return 2;
    }
    int max = argc > 2 ? atoi(argv[2]) : 400;
    DIR *d = opendir(argv[1]);
    if (!d) return 1;
    uint64_t *hs = calloc((size_t)max, sizeof *hs);
    int n = 0, alt_n[4] = {0}, alt_hist[4][65] = {{0}};
    struct dirent *e;
    while (n < max && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
        size_t len = 0;
        uint8_t *b = slurp(path, &len);
        vision_limits lim;
        vision_limits_defaults(&lim);
        vision_image img = {0};
        if (b && kept_hash(b, len, &hs[n]) && vision_decode(b, len, &lim, &img, NULL, NULL, NULL) == CORE_OK) {
            for (int how = 0; how < 4; how++) {
                uint64_t h;
                if (altered_hash(&img, how, &h)) {
                    alt_n[how]++;
                    alt_hist[how][vision_phash_distance(h, hs[n])]++;
                }
            }
            n++;
        }
        vision_image_free(&img);
        free(b);
    }
    closedir(d);
    static const char *names[] = {"re-encoded q60", "resized 60%", "cropped 3%/side", "brightened +25"};
    printf("%d photos\n", n);
    for (int how = 0; how < 4; how++) {
        int worst = 0, within[4] = {0};
        for (int k = 0; k <= 64; k++) {
            if (alt_hist[how][k]) worst = k;
            for (int t = 0; t < 4; t++)
                if (k <= 6 + 2 * t) within[t] += alt_hist[how][k];
        }
        printf("%-16s n=%d worst=%d  <=6: %d  <=8: %d  <=10: %d  <=12: %d\n", names[how], alt_n[how], worst, within[0],
               within[1], within[2], within[3]);
    }
    long pairs = 0, hist[65] = {0};
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            hist[vision_phash_distance(hs[i], hs[j])]++;
            pairs++;
        }
    long cum = 0;
    printf("different photos: %ld pairs\n", pairs);
    for (int t = 0; t <= 16; t++) {
        cum += hist[t];
        printf("  threshold %2d: %ld false matches (%.4f %%)\n", t, cum,
               pairs ? 100.0 * (double)cum / (double)pairs : 0);
    }
    free(hs);
    return 0;
}
