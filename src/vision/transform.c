/* vision — resizing, the model's centre crop, and pixel-only JPEG output. */
#include "vision/vision.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

/* One axis of a separable resize: for each output position, a list of
 * (source index, weight). Downscaling averages the exact area each output
 * pixel covers (no aliasing); upscaling interpolates linearly. */
typedef struct {
    int first, count;
    float *w;
} taps;

static taps *make_taps(int in, int out) {
    taps *t = calloc((size_t)out, sizeof *t);
    if (!t) return NULL;
    double scale = (double)in / out;
    for (int o = 0; o < out; o++) {
        if (scale >= 1.0) {
            double a = o * scale, b = a + scale;
            int first = (int)floor(a), last = (int)ceil(b) - 1;
            if (last >= in) last = in - 1;
            t[o].first = first;
            t[o].count = last - first + 1;
            t[o].w = malloc((size_t)t[o].count * sizeof(float));
            if (!t[o].w) goto fail;
            for (int i = first; i <= last; i++) {
                double lo = i < a ? a : i, hi = i + 1 > b ? b : i + 1;
                t[o].w[i - first] = (float)((hi - lo) / scale);
            }
        } else {
            double c = (o + 0.5) * scale - 0.5;
            int i0 = (int)floor(c);
            double f = c - i0;
            if (i0 < 0) {
                i0 = 0;
                f = 0;
            }
            if (i0 >= in - 1) {
                i0 = in - 1;
                f = 0;
            }
            t[o].first = i0;
            t[o].count = f > 0 ? 2 : 1;
            t[o].w = malloc(2 * sizeof(float));
            if (!t[o].w) goto fail;
            t[o].w[0] = (float)(1 - f);
            t[o].w[1] = (float)f;
        }
    }
    return t;
fail:
    for (int o = 0; o < out; o++) free(t[o].w);
    free(t);
    return NULL;
}

static void free_taps(taps *t, int n) {
    for (int i = 0; t && i < n; i++) free(t[i].w);
    free(t);
}

core_status vision_resize(const vision_image *in, int w, int h, vision_image *out, core_error *err) {
    memset(out, 0, sizeof *out);
    if (w < 1 || h < 1 || in->width < 1 || in->height < 1)
        return core_fail(err, CORE_ERR_INVALID, "size", "cannot resize to %d x %d", w, h);
    taps *tx = make_taps(in->width, w), *ty = make_taps(in->height, h);
    float *mid = malloc((size_t)w * (size_t)in->height * 3 * sizeof(float));
    out->rgb = malloc((size_t)w * (size_t)h * 3);
    if (!tx || !ty || !mid || !out->rgb) {
        free_taps(tx, w);
        free_taps(ty, h);
        free(mid);
        vision_image_free(out);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory resizing the photo");
    }
    out->width = w;
    out->height = h;
    for (int y = 0; y < in->height; y++) {
        const uint8_t *row = in->rgb + (size_t)y * in->width * 3;
        float *m = mid + (size_t)y * w * 3;
        for (int x = 0; x < w; x++) {
            float r = 0, g = 0, b = 0;
            for (int k = 0; k < tx[x].count; k++) {
                const uint8_t *p = row + (size_t)(tx[x].first + k) * 3;
                float wt = tx[x].w[k];
                r += wt * p[0];
                g += wt * p[1];
                b += wt * p[2];
            }
            m[x * 3] = r;
            m[x * 3 + 1] = g;
            m[x * 3 + 2] = b;
        }
    }
    for (int y = 0; y < h; y++) {
        uint8_t *o = out->rgb + (size_t)y * w * 3;
        for (int x = 0; x < w * 3; x++) {
            float v = 0;
            for (int k = 0; k < ty[y].count; k++) v += ty[y].w[k] * mid[(size_t)(ty[y].first + k) * w * 3 + x];
            o[x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5f);
        }
    }
    free_taps(tx, w);
    free_taps(ty, h);
    free(mid);
    return CORE_OK;
}

core_status vision_center_square(const vision_image *in, int side, vision_image *out, core_error *err) {
    int s = in->width < in->height ? in->width : in->height;
    vision_image crop = {s, s, malloc((size_t)s * (size_t)s * 3)};
    if (!crop.rgb) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory cropping the photo");
    int x0 = (in->width - s) / 2, y0 = (in->height - s) / 2;
    for (int y = 0; y < s; y++)
        memcpy(crop.rgb + (size_t)y * s * 3, in->rgb + ((size_t)(y0 + y) * in->width + x0) * 3, (size_t)s * 3);
    core_status rc = vision_resize(&crop, side, side, out, err);
    vision_image_free(&crop);
    return rc;
}

core_status vision_encode_jpeg(const vision_image *img, int quality, uint8_t **out, size_t *len, core_error *err) {
    *out = NULL;
    *len = 0;
    tjhandle tj = tjInitCompress();
    if (!tj) return core_fail(err, CORE_ERR_NOMEM, NULL, "cannot start the JPEG encoder");
    unsigned char *buf = NULL;
    unsigned long n = 0;
    /* turbojpeg writes SOI, a JFIF APP0, tables and the scan: no EXIF, no
     * XMP, no ICC — nothing but pixels leaves. */
    int rc = tjCompress2(tj, img->rgb, img->width, 0, img->height, TJPF_RGB, &buf, &n, TJSAMP_420,
                         quality < 1     ? 85
                         : quality > 100 ? 100
                                         : quality,
                         0);
    tjDestroy(tj);
    if (rc != 0) {
        tjFree(buf);
        return core_fail(err, CORE_ERR_INVALID, "photo", "cannot encode the photo");
    }
    *out = malloc(n);
    if (*out) memcpy(*out, buf, n);
    tjFree(buf);
    if (!*out) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    *len = n;
    return CORE_OK;
}
