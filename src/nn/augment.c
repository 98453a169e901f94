/* Training-time augmentation of CHW float images: random resized crop
 * (area fraction and aspect ratio, as in Inception training), rotation,
 * horizontal/vertical flips, and colour jitter (brightness, contrast,
 * saturation), then optionally blur and sensor noise. One inverse affine
 * map per image, bilinear sampling with the border pixel repeated, so every
 * output pixel is a blend of real ones. Blur and noise stand in for phone
 * cameras: out-of-focus shots and small, noisy sensors. */
#include "nn/nn.h"

#include <math.h>
#include <stdlib.h>

void nn_augment_defaults(nn_augment_opts *o) {
    *o = (nn_augment_opts){.min_area = 0.35f,
                           .max_area = 1.0f,
                           .min_ratio = 0.75f,
                           .max_ratio = 4.0f / 3.0f,
                           .max_rotate_deg = 30.0f,
                           .hflip = true,
                           .vflip = true,
                           .brightness = 0.2f,
                           .contrast = 0.2f,
                           .saturation = 0.2f,
                           .max_blur = 0,
                           .max_noise = 0};
}

static float uniform(nn_rng *r, float lo, float hi) { return lo + (hi - lo) * nn_rng_uniform(r); }

/* Separable Gaussian blur of one plane in place (tmp: h·w floats). */
static void blur_plane(float *p, float *tmp, int h, int w, float sigma) {
    int rad = (int)ceilf(2.5f * sigma);
    if (rad < 1) return;
    if (rad > 15) rad = 15;
    float k[31], sum = 0;
    for (int i = -rad; i <= rad; i++) sum += k[i + rad] = expf(-(float)(i * i) / (2 * sigma * sigma));
    for (int i = 0; i <= 2 * rad; i++) k[i] /= sum;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float a = 0;
            for (int i = -rad; i <= rad; i++) {
                int xx = x + i < 0 ? 0 : x + i >= w ? w - 1 : x + i;
                a += k[i + rad] * p[(size_t)y * w + xx];
            }
            tmp[(size_t)y * w + x] = a;
        }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float a = 0;
            for (int i = -rad; i <= rad; i++) {
                int yy = y + i < 0 ? 0 : y + i >= h ? h - 1 : y + i;
                a += k[i + rad] * tmp[(size_t)yy * w + x];
            }
            p[(size_t)y * w + x] = a;
        }
}

static float sample(const float *plane, int h, int w, float y, float x) {
    if (x < 0) x = 0;
    if (y < 0) y = 0;
    if (x > (float)(w - 1)) x = (float)(w - 1);
    if (y > (float)(h - 1)) y = (float)(h - 1);
    int x0 = (int)x, y0 = (int)y, x1 = x0 + 1 < w ? x0 + 1 : x0, y1 = y0 + 1 < h ? y0 + 1 : y0;
    float fx = x - (float)x0, fy = y - (float)y0;
    float a = plane[(size_t)y0 * w + x0], b = plane[(size_t)y0 * w + x1];
    float c = plane[(size_t)y1 * w + x0], d = plane[(size_t)y1 * w + x1];
    return (a + (b - a) * fx) * (1 - fy) + (c + (d - c) * fx) * fy;
}

void nn_augment(nn_rng *r, const nn_augment_opts *o, int channels, int in_h, int in_w, const float *in, int out_h,
                int out_w, float *out) {
    /* Crop: a fraction of the area, aspect ratio drawn log-uniformly. */
    float area = uniform(r, o->min_area, o->max_area) * (float)in_h * (float)in_w;
    float ratio = expf(uniform(r, logf(o->min_ratio), logf(o->max_ratio)));
    float cw = sqrtf(area * ratio), ch = sqrtf(area / ratio);
    if (cw > (float)in_w) cw = (float)in_w;
    if (ch > (float)in_h) ch = (float)in_h;
    float cx = uniform(r, cw / 2, (float)in_w - cw / 2), cy = uniform(r, ch / 2, (float)in_h - ch / 2);
    float th = uniform(r, -o->max_rotate_deg, o->max_rotate_deg) * 3.14159265f / 180.0f;
    bool fh = o->hflip && (nn_rng_next(r) & 1), fv = o->vflip && (nn_rng_next(r) & 1);
    float bright = 1 + uniform(r, -o->brightness, o->brightness);
    float contrast = 1 + uniform(r, -o->contrast, o->contrast);
    float sat = 1 + uniform(r, -o->saturation, o->saturation);
    /* Output pixel centre → offset from the crop centre (in input pixels),
     * flipped, rotated, then sampled. */
    float sx = cw / (float)out_w, sy = ch / (float)out_h, cs = cosf(th), sn = sinf(th);
    size_t ohw = (size_t)out_h * out_w, ihw = (size_t)in_h * in_w;
    for (int v = 0; v < out_h; v++)
        for (int u = 0; u < out_w; u++) {
            float dx = ((float)u + 0.5f) * sx - cw / 2, dy = ((float)v + 0.5f) * sy - ch / 2;
            if (fh) dx = -dx;
            if (fv) dy = -dy;
            float x = cx + cs * dx - sn * dy - 0.5f, y = cy + sn * dx + cs * dy - 0.5f;
            for (int c = 0; c < channels; c++)
                out[(size_t)c * ohw + (size_t)v * out_w + u] = sample(in + (size_t)c * ihw, in_h, in_w, y, x);
        }
    /* Colour: brightness scales, contrast stretches about the mean,
     * saturation blends with the pixel's grey (3-channel images only). */
    for (int c = 0; c < channels; c++) {
        double mean = 0;
        float *p = out + (size_t)c * ohw;
        for (size_t i = 0; i < ohw; i++) mean += p[i];
        float m = (float)(mean / (double)ohw);
        for (size_t i = 0; i < ohw; i++) p[i] = ((p[i] - m) * contrast + m) * bright;
    }
    if (channels == 3)
        for (size_t i = 0; i < ohw; i++) {
            float *R = out + i, *G = out + ohw + i, *B = out + 2 * ohw + i;
            float grey = 0.299f * *R + 0.587f * *G + 0.114f * *B;
            *R = grey + (*R - grey) * sat, *G = grey + (*G - grey) * sat, *B = grey + (*B - grey) * sat;
        }
    /* Blur, then noise (a camera blurs before its sensor adds noise). The
     * draws come after the others so that options at 0 change nothing. */
    if (o->max_blur > 0) {
        float sigma = uniform(r, 0, o->max_blur);
        /* Best effort: without memory for the scratch plane the copy stays sharp. */
        float *tmp = sigma >= 0.3f ? malloc(ohw * sizeof *tmp) : NULL;
        for (int c = 0; tmp && c < channels; c++) blur_plane(out + (size_t)c * ohw, tmp, out_h, out_w, sigma);
        free(tmp);
    }
    if (o->max_noise > 0) {
        float sd = uniform(r, 0, o->max_noise);
        for (size_t i = 0; i < ohw * (size_t)channels; i++) out[i] += sd * nn_rng_normal(r);
    }
}
