/* Image features from the pretrained backbone: decode → centre square →
 * 224 px → scaled pixels → MobileNetV2 up to its pooled 1280-d features.
 * Extraction over a data set runs on worker threads (one nn_run each, BLAS
 * single-threaded: two images at once use two cores better than one image
 * split across two) and is cached on disk, keyed by the item list. */
#include "screening/screening.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "vision/vision.h"

struct screening_backbone {
    nn_net *net;
    nn_tflite_info info;
    char file[256];
    uint8_t sha256[32];
};

/* A backbone is a TFLite file (../shared/models) or a TF.js model
 * (node_modules/nsfwjs/dist/models/<name>/model.min.js, read with its weight
 * shards); dirs is a colon-separated search list. */
static bool is_tfjs(const char *file) {
    size_t n = strlen(file);
    return (n > 3 && !strcmp(file + n - 3, ".js")) || (n > 5 && !strcmp(file + n - 5, ".json"));
}

core_status screening_backbone_find(const char *dirs, const char *file, char *path, size_t n) {
    for (const char *p = dirs; *p;) {
        size_t l = strcspn(p, ":");
        snprintf(path, n, "%.*s/%s", (int)l, p, file);
        FILE *f = fopen(path, "rb");
        if (f) {
            fclose(f);
            return CORE_OK;
        }
        p += l + (p[l] == ':');
    }
    return CORE_ERR_NOT_FOUND;
}

core_status screening_backbone_open(const char *dirs, const char *file, screening_backbone **out, core_error *err) {
    *out = NULL;
    char path[4096];
    char *bytes;
    size_t len;
    if (strstr(file, "..") || screening_backbone_find(dirs, file, path, sizeof path) != CORE_OK ||
        core_read_file(path, &bytes, &len, NULL) != CORE_OK)
        return core_fail(err, CORE_ERR_NOT_FOUND, "models", "the backbone %s was not found in %s", file, dirs);
    screening_backbone *bb = calloc(1, sizeof *bb);
    if (!bb) {
        free(bytes);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    cs_crypto_sha256(bb->sha256, bytes, len);
    snprintf(bb->file, sizeof bb->file, "%s", file);
    core_status rc;
    if (is_tfjs(file)) {
        rc = nn_tfjs_read(path, &bb->net, &bb->info, err);
    } else {
        rc = nn_tflite_read((uint8_t *)bytes, len, &bb->net, &bb->info, err);
    }
    free(bytes);
    if (!rc && bb->info.features < 0)
        rc = core_fail(err, CORE_ERR_INVALID, "models", "%s has no pooled features", file);
    if (rc) {
        screening_backbone_free(bb);
        return rc;
    }
    *out = bb;
    return CORE_OK;
}

void screening_backbone_free(screening_backbone *bb) {
    if (!bb) return;
    nn_net_free(bb->net);
    free(bb);
}

int screening_backbone_dim(const screening_backbone *bb) { return nn_net_shape(bb->net, bb->info.features).c; }

void screening_backbone_input(const screening_backbone *bb, int *side, float *scale, float *zero) {
    *side = bb->info.height;
    *scale = bb->info.in_scale;
    *zero = bb->info.in_zero;
}

core_status screening_preprocess(const screening_backbone *bb, const uint8_t *rgb, int w, int h, int flip, float *out,
                                 core_error *err) {
    vision_image in = {w, h, (uint8_t *)rgb}, sq;
    int side = bb->info.height;
    core_status rc = vision_center_square(&in, side, &sq, err);
    if (rc) return rc;
    size_t hw = (size_t)side * side;
    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++) {
            const uint8_t *p = sq.rgb + ((size_t)y * side + (flip ? side - 1 - x : x)) * 3;
            for (int c = 0; c < 3; c++)
                out[c * hw + (size_t)y * side + x] = bb->info.in_scale * ((float)p[c] - bb->info.in_zero);
        }
    vision_image_free(&sq);
    return CORE_OK;
}

/* DermNet NZ's photos are 256×192 with its logo and name in the bottom
 * left (x < 76, y 128–180): the square right of x = 5/16 of the width never
 * holds it. The set is recognised by name so the index can move. */
static bool has_watermark(int set) {
    const char *name = screening_set_name(set);
    return name && !strcmp(name, "dermnetnz");
}

core_status screening_crop(const uint8_t *rgb, int w, int h, int set, bool crop_watermark, int side, uint8_t **out,
                           core_error *err) {
    *out = NULL;
    vision_image in = {w, h, (uint8_t *)rgb}, sq;
    core_status rc;
    if (crop_watermark && has_watermark(set) && w > h) {
        int x0 = w * 5 / 16, s = w - x0 < h ? w - x0 : h, y0 = (h - s) / 2;
        vision_image part = {s, s, malloc((size_t)s * s * 3)};
        if (!part.rgb) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        for (int y = 0; y < s; y++)
            memcpy(part.rgb + (size_t)y * s * 3, rgb + ((size_t)(y0 + y) * w + x0) * 3, (size_t)s * 3);
        rc = vision_resize(&part, side, side, &sq, err);
        free(part.rgb);
    } else {
        rc = vision_center_square(&in, side, &sq, err);
    }
    if (!rc) *out = sq.rgb;
    return rc;
}

typedef struct {
    screening_backbone *bb;
    const screening_dataset *ds;
    screening_extract_opts opt;
    int dim, node;
    float *feats;
    atomic_size_t next;
    atomic_int failed;
    core_error err;
    pthread_mutex_t lock;
} job;

static float uniform(nn_rng *r, float lo, float hi) { return lo + (hi - lo) * nn_rng_uniform(r); }

/* The pixels of view v of a decoded photo as the backbone's input x. */
static core_status view_input(job *j, size_t i, int v, const vision_image *img, float *x, float *aug, core_error *e) {
    int side = j->bb->info.height;
    unsigned a = j->opt.augment ? j->opt.augment : SCREENING_AUG_GEOMETRY | SCREENING_AUG_COLOUR;
    nn_rng r;
    nn_rng_seed(&r, 0x5eed0000u + (uint64_t)i * 16u + (uint64_t)v);
    vision_image work = *img, tmp = {0};
    core_status rc = CORE_OK;
    if (v >= 2 && (a & SCREENING_AUG_RESOLUTION)) {
        /* A small photo scaled up: what a distant or cheap camera gives. */
        int shortest = img->width < img->height ? img->width : img->height;
        float s = uniform(&r, 56, 180) / (float)shortest;
        if (s < 1) {
            int w = (int)((float)img->width * s + 0.5f), h = (int)((float)img->height * s + 0.5f);
            if ((rc = vision_resize(img, w < 8 ? 8 : w, h < 8 ? 8 : h, &tmp, e))) return rc;
            work = tmp;
        }
    }
    if (v >= 2 && (a & SCREENING_AUG_JPEG)) {
        uint8_t *jpg = NULL;
        size_t len = 0;
        vision_limits lim;
        vision_limits_defaults(&lim);
        lim.min_side = 8;
        vision_image dec = {0};
        rc = vision_encode_jpeg(&work, (int)uniform(&r, 25, 90), &jpg, &len, e);
        if (!rc) rc = vision_decode(jpg, len, &lim, &dec, NULL, NULL, e);
        free(jpg);
        vision_image_free(&tmp);
        if (rc) return rc;
        work = tmp = dec;
    }
    uint8_t *sq = NULL;
    rc = screening_crop(work.rgb, work.width, work.height, j->ds->items[i].set, j->opt.crop_watermark, side, &sq, e);
    vision_image_free(&tmp);
    if (rc) return rc;
    float *dst = v >= 2 ? aug : x;
    size_t hw = (size_t)side * side;
    for (int y = 0; y < side; y++)
        for (int xx = 0; xx < side; xx++) {
            const uint8_t *p = sq + ((size_t)y * side + (v == 1 ? side - 1 - xx : xx)) * 3;
            for (int c = 0; c < 3; c++)
                dst[c * hw + (size_t)y * side + xx] = j->bb->info.in_scale * ((float)p[c] - j->bb->info.in_zero);
        }
    free(sq);
    if (v >= 2) {
        nn_augment_opts o;
        nn_augment_defaults(&o);
        if (!(a & SCREENING_AUG_GEOMETRY)) {
            o.min_area = o.max_area = o.min_ratio = o.max_ratio = 1;
            o.max_rotate_deg = 0, o.hflip = o.vflip = false;
        }
        if (!(a & SCREENING_AUG_COLOUR)) o.brightness = o.contrast = o.saturation = 0;
        if (a & SCREENING_AUG_BLUR) o.max_blur = 1.5f;
        if (a & SCREENING_AUG_NOISE) o.max_noise = 0.06f;
        nn_augment(&r, &o, 3, side, side, aug, side, side, x);
    }
    return CORE_OK;
}

static void *worker(void *arg) {
    job *j = arg;
    nn_run *run = nn_run_new();
    int side = j->bb->info.height;
    float *x = malloc((size_t)3 * side * side * sizeof(float)), *aug = malloc((size_t)3 * side * side * sizeof(float));
    vision_limits lim;
    vision_limits_defaults(&lim);
    lim.min_side = 64;
    lim.target_short_side = side;
    int views = j->opt.views;
    for (size_t i; run && x && aug && !atomic_load(&j->failed) && (i = atomic_fetch_add(&j->next, 1)) < j->ds->count;) {
        core_error e = {0};
        char *bytes = NULL;
        size_t len;
        vision_image img = {0};
        core_status rc = core_read_file(j->ds->items[i].path, &bytes, &len, &e);
        if (!rc) rc = vision_decode((uint8_t *)bytes, len, &lim, &img, NULL, NULL, &e);
        free(bytes);
        for (int v = 0; !rc && v < views; v++) {
            rc = view_input(j, i, j->opt.first_view + v, &img, x, aug, &e);
            const float *y = rc ? NULL : nn_run_forward(run, j->bb->net, 1, x, false, NULL, j->node + 1);
            if (!rc && !y) rc = core_fail(&e, CORE_ERR_NOMEM, NULL, "out of memory");
            if (!rc) memcpy(j->feats + (i * (size_t)views + (size_t)v) * (size_t)j->dim, y, (size_t)j->dim * 4);
        }
        vision_image_free(&img);
        if (rc) {
            pthread_mutex_lock(&j->lock);
            if (!atomic_load(&j->failed)) {
                j->err = e;
                snprintf(j->err.field, sizeof j->err.field, "data");
                size_t l = strlen(j->err.message);
                snprintf(j->err.message + l, sizeof j->err.message - l, " (%s)", j->ds->items[i].path);
            }
            atomic_store(&j->failed, 1);
            pthread_mutex_unlock(&j->lock);
        }
    }
    if (!run || !x || !aug) atomic_store(&j->failed, 1);
    free(x);
    free(aug);
    nn_run_free(run);
    return NULL;
}

/* Cache key: backbone hash, the options, and every item path in order. */
static void cache_key(const screening_backbone *bb, const screening_dataset *ds, const screening_extract_opts *o,
                      int node, uint8_t key[32]) {
    uint8_t acc[32];
    char opts[96];
    int n =
        snprintf(opts, sizeof opts, "v%d+%d n%d a%u w%d", o->views, o->first_view, node, o->augment, o->crop_watermark);
    cs_crypto_sha256_2(acc, bb->sha256, 32, opts, (size_t)n);
    for (size_t i = 0; i < ds->count; i++)
        cs_crypto_sha256_2(acc, acc, 32, ds->items[i].path, strlen(ds->items[i].path));
    memcpy(key, acc, 32);
}

void screening_cache_path(const screening_backbone *bb, const screening_extract_opts *opt, const char *cache_dir,
                          char *out, size_t n) {
    char name[256];
    snprintf(name, sizeof name, "%s", bb->file);
    for (char *c = name; *c; c++)
        if (*c == '/') *c = '_';
    snprintf(out, n, "%s/%s-node%d-v%d+%d-a%u-w%d.bin", cache_dir, name, opt->node < 0 ? bb->info.features : opt->node,
             opt->views, opt->first_view, opt->augment, opt->crop_watermark);
}

int screening_node_dim(const screening_backbone *bb, int node) {
    nn_shape s = nn_net_shape(bb->net, node);
    return s.c * s.h * s.w;
}

core_status screening_extract(screening_backbone *bb, const screening_dataset *ds, int views, int threads,
                              const char *cache_path, float **feats, core_error *err) {
    screening_extract_opts o = {.views = views, .node = -1};
    return screening_extract_with(bb, ds, &o, threads, cache_path, feats, err);
}

core_status screening_extract_node(screening_backbone *bb, const screening_dataset *ds, int views, int node,
                                   int threads, const char *cache_path, float **feats, core_error *err) {
    screening_extract_opts o = {.views = views, .node = node};
    return screening_extract_with(bb, ds, &o, threads, cache_path, feats, err);
}

core_status screening_extract_with(screening_backbone *bb, const screening_dataset *ds,
                                   const screening_extract_opts *opt, int threads, const char *cache_path,
                                   float **feats, core_error *err) {
    *feats = NULL;
    int node = opt->node < 0 ? bb->info.features : opt->node;
    if (node > bb->info.features || opt->views < 1 || opt->first_view < 0)
        return core_fail(err, CORE_ERR_INVALID, "model", "node %d is not a backbone node before the features", node);
    int dim = screening_node_dim(bb, node);
    size_t total = ds->count * (size_t)opt->views * (size_t)dim;
    uint8_t key[32];
    cache_key(bb, ds, opt, node, key);
    if (cache_path) {
        FILE *f = fopen(cache_path, "rb");
        uint8_t got[32];
        if (f && fread(got, 1, 32, f) == 32 && !memcmp(got, key, 32)) {
            float *buf = malloc(total * sizeof(float));
            if (buf && fread(buf, sizeof(float), total, f) == total) {
                fclose(f);
                *feats = buf;
                return CORE_OK;
            }
            free(buf);
        }
        if (f) fclose(f);
    }
    job j = {.bb = bb, .ds = ds, .opt = *opt, .dim = dim, .node = node};
    j.feats = malloc(total * sizeof(float));
    if (!j.feats) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory for features");
    pthread_mutex_init(&j.lock, NULL);
    int saved = nn_threads();
    nn_set_threads(1);
    if (threads < 1) threads = 1;
    pthread_t t[16];
    int started = 0;
    for (int k = 0; k < threads && k < 16; k++)
        if (pthread_create(&t[k], NULL, worker, &j) == 0) started++;
    for (int k = 0; k < started; k++) pthread_join(t[k], NULL);
    nn_set_threads(saved);
    pthread_mutex_destroy(&j.lock);
    if (!started || atomic_load(&j.failed)) {
        free(j.feats);
        if (err) *err = j.err;
        return started && j.err.code ? j.err.code : core_fail(err, CORE_ERR_NOMEM, NULL, "feature extraction failed");
    }
    if (cache_path) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", cache_path);
        FILE *f = fopen(tmp, "wb");
        bool ok = f && fwrite(key, 1, 32, f) == 32 && fwrite(j.feats, sizeof(float), total, f) == total;
        if (f && fclose(f) != 0) ok = false;
        if (!ok || rename(tmp, cache_path) != 0) remove(tmp); /* a cache is optional */
    }
    *feats = j.feats;
    return CORE_OK;
}

nn_net *screening_backbone_net(screening_backbone *bb, int *features, nn_backbone *ref) {
    *features = bb->info.features;
    ref->file = bb->file;
    memcpy(ref->sha256, bb->sha256, 32);
    ref->nodes = nn_net_count(bb->net);
    return bb->net;
}
