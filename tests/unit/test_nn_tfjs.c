/* nn TF.js import: nsfwjs's three models against TensorFlow.js's own outputs
 * (tests/golden/tfjs, made by scripts/tfjs-golden.mjs), small models written
 * here in both file forms (model.json + .bin, and an nsfwjs-style bundle),
 * BN folding, per-axis padding and pooling checked against numbers worked out
 * by hand, and refusals. The nsfwjs models are read from node_modules (make
 * deps); without them the golden test is skipped and says so. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/nn.h"

#ifndef TEST_NSFWJS_DIR
#define TEST_NSFWJS_DIR "node_modules/nsfwjs/dist/models"
#endif

/* ---- the golden images (the same pixel rules as scripts/tfjs-golden.mjs) ---- */

typedef struct {
    const uint8_t *b;
    int w, h, off, stride;
} bmp;

static bool read_bmp(const char *path, uint8_t **buf, bmp *m) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = malloc((size_t)n);
    bool ok = *buf && fread(*buf, 1, (size_t)n, f) == (size_t)n && n > 54 && (*buf)[0] == 'B' && (*buf)[1] == 'M';
    fclose(f);
    if (!ok) return false;
    const uint8_t *b = *buf;
    m->b = b;
    m->off = b[10] | b[11] << 8 | b[12] << 16 | b[13] << 24;
    m->w = b[18] | b[19] << 8 | b[20] << 16 | b[21] << 24;
    m->h = b[22] | b[23] << 8 | b[24] << 16 | b[25] << 24;
    m->stride = (m->w * 3 + 3) / 4 * 4;
    return (b[28] | b[29] << 8) == 24 && m->h > 0 && (size_t)m->off + (size_t)m->stride * m->h <= (size_t)n;
}

static int pixel(const char *img, const bmp *cat, int size, int x, int y, int c) {
    if (!strcmp(img, "cat")) {
        int side = cat->w < cat->h ? cat->w : cat->h, x0 = (cat->w - side) / 2, y0 = (cat->h - side) / 2;
        int sx = x0 + x * side / size, sy = y0 + y * side / size;
        return cat->b[cat->off + (size_t)(cat->h - 1 - sy) * cat->stride + (size_t)sx * 3 + (2 - c)];
    }
    if (!strcmp(img, "gradient"))
        return c == 0 ? 255 * x / (size - 1) : c == 1 ? 255 * y / (size - 1) : 255 * (x + y) / (2 * size - 2);
    return (int)(((uint32_t)x * 73856093u ^ (uint32_t)y * 19349663u ^ (uint32_t)c * 83492791u) & 255u);
}

/* Largest |a − b| and largest |a − b| / max(|b|, floor) over n values. */
static void diff(const float *a, json_t *golden, size_t n, double floor_, double *abs_, double *rel) {
    *abs_ = *rel = 0;
    for (size_t i = 0; i < n; i++) {
        double g = json_number_value(json_array_get(golden, i)), d = fabs(a[i] - g);
        if (d > *abs_) *abs_ = d;
        if (d / fmax(fabs(g), floor_) > *rel) *rel = d / fmax(fabs(g), floor_);
    }
}

static void test_nsfwjs_golden(void **state) {
    (void)state;
    static const char *const models[] = {"inception_v3", "mobilenet_v2", "mobilenet_v2_mid"};
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/model.min.js", TEST_NSFWJS_DIR, models[0]);
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "SKIP: %s is absent (run make deps: npm installs nsfwjs)\n", path);
        skip();
    }
    uint8_t *catbuf = NULL;
    bmp cat = {0};
    bool have_cat = read_bmp(TEST_SHARED_DIR "/models/cat.bmp", &catbuf, &cat);
    if (!have_cat) fprintf(stderr, "note: %s/models/cat.bmp is absent: synthetic images only\n", TEST_SHARED_DIR);
    nn_set_threads(2);
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        snprintf(path, sizeof path, "%s/%s/model.min.js", TEST_NSFWJS_DIR, models[m]);
        nn_net *net;
        nn_tfjs_info info;
        core_error err = {0};
        if (nn_tfjs_read(path, &net, &info, &err) != CORE_OK) fail_msg("%s: %s", path, err.message);
        char gp[1024];
        snprintf(gp, sizeof gp, "%s/%s.json", TEST_GOLDEN_DIR, models[m]);
        json_error_t je;
        json_t *golden = json_load_file(gp, 0, &je);
        assert_non_null(golden);
        int size = (int)json_integer_value(json_object_get(golden, "size"));
        assert_int_equal(info.height, size);
        assert_int_equal(info.width, size);
        assert_true(info.features >= 0);
        size_t nf = nn_count(nn_net_shape(net, info.features)), nl = nn_count(nn_net_shape(net, info.output));
        float *x = malloc((size_t)3 * size * size * sizeof(float));
        nn_run *run = nn_run_new();
        const char *img;
        json_t *g;
        json_object_foreach(json_object_get(golden, "images"), img, g) {
            if (!strcmp(img, "cat") && !have_cat) continue;
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < size; y++)
                    for (int xx = 0; xx < size; xx++)
                        x[((size_t)c * size + y) * size + xx] =
                            info.in_scale * ((float)pixel(img, &cat, size, xx, y, c) - info.in_zero);
            const float *logits = nn_run_forward(run, net, 1, x, false, NULL, 0);
            assert_non_null(logits);
            const float *feat = nn_run_output(run, info.features);
            json_t *gf = json_object_get(g, "features"), *gl = json_object_get(g, "logits");
            assert_int_equal(json_array_size(gf), nf);
            assert_int_equal(json_array_size(gl), nl);
            double fa, fr, la, lr, fmaxv = 0;
            for (size_t i = 0; i < nf; i++) fmaxv = fmax(fmaxv, fabs(json_number_value(json_array_get(gf, i))));
            /* Relative error with a floor of 1% of the largest feature:
             * features near zero carry only absolute rounding error. */
            diff(feat, gf, nf, 0.01 * fmaxv, &fa, &fr);
            diff(logits, gl, nl, 1.0, &la, &lr);
            fprintf(stderr,
                    "%-16s %-8s features (%zu, max %.3f): max abs %.2e rel %.2e | logits: max abs %.2e rel %.2e\n",
                    models[m], img, nf, fmaxv, fa, fr, la, lr);
            /* TF.js sums in another order, and batch norm is folded here:
             * float32 rounding, nothing more. A wrong layer, padding or
             * weight layout gives errors of order 1. */
            assert_true(fr < 5e-4);
            assert_true(lr < 5e-4);
        }
        nn_run_free(run);
        free(x);
        json_decref(golden);
        nn_net_free(net);
    }
    free(catbuf);
}

/* ---- small models written here ---- */

static char dir[256];

static void write_file(const char *name, const void *b, size_t n) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

static core_status read_model(const char *name, nn_net **net, nn_tfjs_info *info, core_error *err) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    core_status rc = nn_tfjs_read(p, net, info, err);
    if (rc) {
        assert_null(*net);
        assert_true(strlen(err->message) > 10);
    }
    return rc;
}

/* A layers model on a 4×5×2 input:
 *   input → ZeroPadding2D ((0,1),(0,1)) → Conv2D 3×3 s2 valid, 3 filters, no bias
 *         → BatchNormalization (folded) → ReLU(6)                 (2×2×3)
 *         ├→ Conv2D 1×3 "same" (pads columns only), 2 filters, bias, relu ─┐
 *         ├→ MaxPooling2D 3×3 s1 same ──────────────────────────────────────┤ Concatenate (8)
 *         └→ AveragePooling2D 3×3 s1 same (padding excluded) ───────────────┘
 *   → GlobalAveragePooling2D → Dense 2, softmax (left out)
 * Weights are float32 except the BN's moving_variance (uint8, min/scale);
 * two shards, split inside a tensor. */
static const char LAYERS_JSON[] =
    "{\"format\":\"layers-model\",\"modelTopology\":{\"keras_version\":\"2.2.4\",\"model_config\":{\"class_name\":"
    "\"Model\",\"config\":{\"name\":\"m\",\"layers\":["
    "{\"name\":\"in\",\"class_name\":\"InputLayer\",\"config\":{\"batch_input_shape\":[null,4,5,2]},\"inbound_nodes\":["
    "]},"
    "{\"name\":\"zp\",\"class_name\":\"ZeroPadding2D\",\"config\":{\"padding\":[[0,1],[0,1]]},\"inbound_nodes\":[[["
    "\"in\",0,0,{}]]]},"
    "{\"name\":\"c1\",\"class_name\":\"Conv2D\",\"config\":{\"filters\":3,\"kernel_size\":[3,3],\"strides\":[2,2],"
    "\"padding\":\"valid\",\"activation\":\"linear\",\"use_bias\":false},\"inbound_nodes\":[[[\"zp\",0,0,{}]]]},"
    "{\"name\":\"bn\",\"class_name\":\"BatchNormalization\",\"config\":{\"axis\":-1,\"epsilon\":0.001,\"scale\":true,"
    "\"center\":true},\"inbound_nodes\":[[[\"c1\",0,0,{}]]]},"
    "{\"name\":\"r\",\"class_name\":\"ReLU\",\"config\":{\"max_value\":6,\"negative_slope\":0,\"threshold\":0},"
    "\"inbound_nodes\":[[[\"bn\",0,0,{}]]]},"
    "{\"name\":\"c2\",\"class_name\":\"Conv2D\",\"config\":{\"filters\":2,\"kernel_size\":[1,3],\"strides\":[1,1],"
    "\"padding\":\"same\",\"activation\":\"relu\",\"use_bias\":true},\"inbound_nodes\":[[[\"r\",0,0,{}]]]},"
    "{\"name\":\"mp\",\"class_name\":\"MaxPooling2D\",\"config\":{\"pool_size\":[3,3],\"strides\":[1,1],\"padding\":"
    "\"same\"},\"inbound_nodes\":[[[\"r\",0,0,{}]]]},"
    "{\"name\":\"ap\",\"class_name\":\"AveragePooling2D\",\"config\":{\"pool_size\":[3,3],\"strides\":[1,1],"
    "\"padding\":"
    "\"same\"},\"inbound_nodes\":[[[\"r\",0,0,{}]]]},"
    "{\"name\":\"cat\",\"class_name\":\"Concatenate\",\"config\":{\"axis\":-1},\"inbound_nodes\":[[[\"c2\",0,0,{}],"
    "[\"mp\",0,0,{}],[\"ap\",0,0,{}]]]},"
    "{\"name\":\"gap\",\"class_name\":\"GlobalAveragePooling2D\",\"config\":{},\"inbound_nodes\":[[[\"cat\",0,0,{}]]]},"
    "{\"name\":\"d\",\"class_name\":\"Dense\",\"config\":{\"units\":2,\"activation\":\"softmax\",\"use_bias\":true},"
    "\"inbound_nodes\":[[[\"gap\",0,0,{}]]]}],"
    "\"input_layers\":[[\"in\",0,0]],\"output_layers\":[[\"d\",0,0]]}}},"
    "\"weightsManifest\":[{\"paths\":[\"w1.bin\",\"w2.bin\"],\"weights\":["
    "{\"name\":\"c1/kernel\",\"shape\":[3,3,2,3],\"dtype\":\"float32\"},"
    "{\"name\":\"bn/gamma\",\"shape\":[3],\"dtype\":\"float32\"},"
    "{\"name\":\"bn/beta\",\"shape\":[3],\"dtype\":\"float32\"},"
    "{\"name\":\"bn/moving_mean\",\"shape\":[3],\"dtype\":\"float32\"},"
    "{\"name\":\"bn/moving_variance\",\"shape\":[3],\"dtype\":\"float32\",\"quantization\":{\"min\":0.5,\"scale\":0.25,"
    "\"dtype\":\"uint8\"}},"
    "{\"name\":\"c2/kernel\",\"shape\":[1,3,3,2],\"dtype\":\"float32\"},"
    "{\"name\":\"c2/bias\",\"shape\":[2],\"dtype\":\"float32\"},"
    "{\"name\":\"d/kernel\",\"shape\":[8,2],\"dtype\":\"float32\"},"
    "{\"name\":\"d/bias\",\"shape\":[2],\"dtype\":\"float32\"}]}]}";

enum { NK1 = 54, NK2 = 18, ND = 16 };
typedef struct {
    float k1[NK1], gamma[3], beta[3], mean[3];
    uint8_t var_q[3];
    float k2[NK2], b2[2], kd[ND], bd[2];
} layers_w;

static void make_weights(layers_w *w) {
    nn_rng r;
    nn_rng_seed(&r, 7);
    for (int i = 0; i < NK1; i++) w->k1[i] = 0.5f * nn_rng_normal(&r);
    for (int i = 0; i < 3; i++) {
        w->gamma[i] = 1 + 0.3f * nn_rng_normal(&r), w->beta[i] = 0.5f + 0.2f * nn_rng_normal(&r);
        w->mean[i] = 0.1f * nn_rng_normal(&r), w->var_q[i] = (uint8_t)(2 + 3 * i); /* 1.0, 1.75, 2.5 */
    }
    for (int i = 0; i < NK2; i++) w->k2[i] = 0.5f * nn_rng_normal(&r);
    for (int i = 0; i < ND; i++) w->kd[i] = 0.5f * nn_rng_normal(&r);
    w->b2[0] = 0.1f, w->b2[1] = -0.1f, w->bd[0] = 0.3f, w->bd[1] = -0.2f;
}

/* The weights as TF.js lays them out: the manifest's order, little-endian. */
static size_t serialise(const layers_w *w, uint8_t *out) {
    size_t n = 0;
#define PUT(p, bytes) (memcpy(out + n, p, bytes), n += (bytes))
    PUT(w->k1, sizeof w->k1);
    PUT(w->gamma, sizeof w->gamma);
    PUT(w->beta, sizeof w->beta);
    PUT(w->mean, sizeof w->mean);
    PUT(w->var_q, sizeof w->var_q);
    PUT(w->k2, sizeof w->k2);
    PUT(w->b2, sizeof w->b2);
    PUT(w->kd, sizeof w->kd);
    PUT(w->bd, sizeof w->bd);
#undef PUT
    return n;
}

/* The same network computed directly in NHWC from the layer definitions. */
static void reference(const layers_w *w, const float *x /* NHWC 4×5×2 */, float feat[8], float logits[2]) {
    /* zero padding (0,1),(0,1) → 5×6; conv 3×3 s2 valid → 2×2×3 */
    float h1[2][2][3];
    for (int oy = 0; oy < 2; oy++)
        for (int ox = 0; ox < 2; ox++)
            for (int o = 0; o < 3; o++) {
                double s = 0;
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++)
                        for (int i = 0; i < 2; i++) {
                            int iy = 2 * oy + ky, ix = 2 * ox + kx;
                            if (iy >= 4 || ix >= 5) continue;
                            s += (double)x[(iy * 5 + ix) * 2 + i] * w->k1[((ky * 3 + kx) * 2 + i) * 3 + o];
                        }
                double var = 0.5 + 0.25 * w->var_q[o];
                double v = (s - w->mean[o]) / sqrt(var + 0.001) * w->gamma[o] + w->beta[o];
                h1[oy][ox][o] = (float)fmin(fmax(v, 0), 6);
            }
    double sum[8] = {0};
    for (int oy = 0; oy < 2; oy++)
        for (int ox = 0; ox < 2; ox++) {
            for (int o = 0; o < 2; o++) { /* 1×3 same: one column each side, no rows */
                double s = w->b2[o];
                for (int kx = 0; kx < 3; kx++)
                    for (int i = 0; i < 3; i++) {
                        int ix = ox - 1 + kx;
                        if (ix >= 0 && ix < 2) s += h1[oy][ix][i] * w->k2[(kx * 3 + i) * 2 + o];
                    }
                sum[o] += fmax(s, 0);
            }
            /* 3×3 same pools over a 2×2 map: every window holds the whole
             * map, and the average counts its 4 pixels, not 9. */
            for (int c = 0; c < 3; c++) {
                double mx = -1e30, av = 0;
                for (int y = 0; y < 2; y++)
                    for (int xx = 0; xx < 2; xx++) mx = fmax(mx, h1[y][xx][c]), av += h1[y][xx][c] / 4.0;
                sum[2 + c] += mx, sum[5 + c] += av;
            }
        }
    for (int c = 0; c < 8; c++) feat[c] = (float)(sum[c] / 4);
    for (int o = 0; o < 2; o++) {
        double s = w->bd[o];
        for (int c = 0; c < 8; c++) s += feat[c] * w->kd[c * 2 + o];
        logits[o] = (float)s;
    }
}

static void check_against_reference(nn_net *net, const nn_tfjs_info *info, const layers_w *w) {
    assert_int_equal(info->height, 4);
    assert_int_equal(info->width, 5);
    assert_float_equal(info->in_scale, 1.0f / 255, 1e-9);
    assert_float_equal(info->in_zero, 0, 0);
    assert_int_equal(nn_count(nn_net_shape(net, info->features)), 8);
    assert_int_equal(nn_count(nn_net_shape(net, info->output)), 2);
    /* The batch norm was folded: no BN node. */
    for (int i = 0; i < nn_net_count(net); i++) assert_int_not_equal(nn_net_node(net, i)->op, NN_OP_BN);
    nn_rng r;
    nn_rng_seed(&r, 3);
    float nhwc[40], nchw[40], feat[8], logits[2];
    for (int i = 0; i < 40; i++) nhwc[i] = nn_rng_normal(&r);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 5; x++)
            for (int c = 0; c < 2; c++) nchw[(c * 4 + y) * 5 + x] = nhwc[(y * 5 + x) * 2 + c];
    reference(w, nhwc, feat, logits);
    nn_run *run = nn_run_new();
    const float *y = nn_run_forward(run, net, 1, nchw, false, NULL, 0);
    assert_non_null(y);
    const float *f = nn_run_output(run, info->features);
    for (int c = 0; c < 8; c++) assert_float_equal(f[c], feat[c], 1e-4);
    for (int o = 0; o < 2; o++) assert_float_equal(y[o], logits[o], 1e-4);
    nn_run_free(run);
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64(const uint8_t *b, size_t n) {
    char *o = malloc(4 * (n / 3 + 1) + 1), *p = o;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) | (i + 2 < n ? b[i + 2] : 0);
        *p++ = B64[v >> 18 & 63], *p++ = B64[v >> 12 & 63];
        *p++ = i + 1 < n ? B64[v >> 6 & 63] : '=';
        *p++ = i + 2 < n ? B64[v & 63] : '=';
    }
    *p = 0;
    return o;
}

/* s with every occurrence of from replaced by to (malloc'd). */
static char *replace_all(const char *s, const char *from, const char *to) {
    size_t fl = strlen(from), tl = strlen(to), n = 0;
    for (const char *p = strstr(s, from); p; p = strstr(p + fl, from)) n++;
    char *o = malloc(strlen(s) + n * (tl > fl ? tl - fl : 0) + 1), *q = o;
    for (const char *p = s;;) {
        const char *h = strstr(p, from);
        if (!h) {
            strcpy(q, p);
            break;
        }
        memcpy(q, p, (size_t)(h - p)), q += h - p;
        memcpy(q, to, tl), q += tl;
        p = h + fl;
    }
    return o;
}

static void test_layers_model_by_hand(void **state) {
    (void)state;
    layers_w w;
    make_weights(&w);
    uint8_t bytes[1024];
    size_t n = serialise(&w, bytes), split = 101; /* inside c1/kernel */
    /* model.json + binary shards */
    write_file("model.json", LAYERS_JSON, strlen(LAYERS_JSON));
    write_file("w1.bin", bytes, split);
    write_file("w2.bin", bytes + split, n - split);
    nn_net *net;
    nn_tfjs_info info;
    core_error err = {0};
    if (read_model("model.json", &net, &info, &err)) fail_msg("%s", err.message);
    check_against_reference(net, &info, &w);
    nn_net_free(net);
    /* The same through nn_tfjs_parse. */
    assert_int_equal(nn_tfjs_parse(LAYERS_JSON, strlen(LAYERS_JSON), bytes, n, &net, &info, &err), CORE_OK);
    check_against_reference(net, &info, &w);
    nn_net_free(net);
    /* nsfwjs's form: a browserify bundle exporting a minified literal, and
     * shards exporting base64. */
    char *js = replace_all(LAYERS_JSON, "\"class_name\":", "class_name:");
    char *t = replace_all(js, "\"config\":", "config:");
    free(js);
    js = replace_all(t, "true", "!0");
    free(t);
    t = replace_all(js, "false", "!1");
    free(js);
    js = replace_all(t, "0.001", ".1e-2");
    free(t);
    t = replace_all(js, "0.5", ".5");
    free(js);
    const char *pre =
        "!function(a){if(\"object\"==typeof exports)module.exports=a()}(function(){return function a(n,i,e)"
        "{return a}({1:[function(a,n,i){n.exports=";
    const char *post = "},{}]},{},[1])(1)});";
    size_t ln = strlen(pre) + strlen(t) + strlen(post) + 1;
    char *bundle = malloc(ln);
    snprintf(bundle, ln, "%s%s%s", pre, t, post);
    free(t);
    write_file("model.min.js", bundle, strlen(bundle));
    for (int s = 0; s < 2; s++) {
        char *b64 = base64(s ? bytes + split : bytes, s ? n - split : split);
        size_t bl = strlen(pre) + strlen(b64) + 3 + strlen(post);
        char *sh = malloc(bl + 1);
        snprintf(sh, bl + 1, "%s\"%s\"%s", pre, b64, post);
        write_file(s ? "w2.bin.min.js" : "w1.bin.min.js", sh, strlen(sh));
        free(sh);
        free(b64);
    }
    if (read_model("model.min.js", &net, &info, &err)) fail_msg("bundle: %s", err.message);
    check_against_reference(net, &info, &w);
    nn_net_free(net);
    assert_int_equal(nn_tfjs_parse(bundle, strlen(bundle), bytes, n, &net, &info, &err), CORE_OK);
    nn_net_free(net);
    free(bundle);

    /* Refusals, each with a message that names the problem. */
    struct {
        const char *from, *to, *says;
    } bad[] = {
        {"GlobalAveragePooling2D", "GlobalMaxPooling2D", "GlobalMaxPooling2D"}, /* unknown layer */
        {"\"w1.bin\"", "\"../w1\"", "plain file name"},                         /* path outside the directory */
        {"[8,2]", "[2,8]", "d/kernel"},                                         /* weight of the wrong shape */
        {"{\"axis\":-1}", "{\"axis\":1}", "axis"},                              /* concatenation on another axis */
        {"\"softmax\"", "\"tanh\"", "tanh"},                                    /* unknown activation */
        {"[[\"in\",0,0,{}]]]},{\"name\":\"c1\"", "[[\"nope\",0,0,{}]]]},{\"name\":\"c1\"", "nope"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char *m = replace_all(LAYERS_JSON, bad[k].from, bad[k].to);
        assert_true(strcmp(m, LAYERS_JSON) != 0);
        write_file("bad.json", m, strlen(m));
        err = (core_error){0};
        assert_int_equal(read_model("bad.json", &net, &info, &err), CORE_ERR_INVALID);
        if (!strstr(err.message, bad[k].says))
            fail_msg("case %zu: \"%s\" does not say %s", k, err.message, bad[k].says);
        free(m);
    }
    /* Weights that do not add up to the manifest. */
    err = (core_error){0};
    assert_int_equal(nn_tfjs_parse(LAYERS_JSON, strlen(LAYERS_JSON), bytes, n - 1, &net, &info, &err),
                     CORE_ERR_INVALID);
    assert_non_null(strstr(err.message, "bytes"));
    assert_null(net);
    /* A shard that is missing. */
    char p[512];
    snprintf(p, sizeof p, "%s/w2.bin", dir);
    unlink(p);
    err = (core_error){0};
    assert_int_equal(read_model("model.json", &net, &info, &err), CORE_ERR_IO);
    /* Not a model at all. */
    assert_int_equal(nn_tfjs_parse("function(){}", 12, bytes, 0, &net, &info, &err), CORE_ERR_INVALID);
    assert_int_equal(nn_tfjs_parse("{\"a\":0x10}", 10, bytes, 0, &net, &info, &err), CORE_ERR_INVALID);
}

/* A converter graph model: input 3×3×1 → Mul 2 → Sub 1 (folded into the
 * pixel scaling) → _FusedConv2D 1×1 (2 filters, BiasAdd, Relu) → AvgPool 3×3
 * VALID (whole map: the features) → Squeeze → _FusedMatMul (2→1, BiasAdd)
 * → Softmax → Identity. Weights float32; "U0FNRQ==" is SAME, "VkFMSUQ=" VALID. */
static const char GRAPH_JSON[] =
    "{\"format\":\"graph-model\",\"modelTopology\":{\"node\":["
    "{\"name\":\"input\",\"op\":\"Placeholder\",\"attr\":{\"shape\":{\"shape\":{\"dim\":[{\"size\":\"-1\"},"
    "{\"size\":\"3\"},{\"size\":\"3\"},{\"size\":\"1\"}]}}}},"
    "{\"name\":\"mul_y\",\"op\":\"Const\"},{\"name\":\"sub_y\",\"op\":\"Const\"},"
    "{\"name\":\"cw\",\"op\":\"Const\"},{\"name\":\"cb\",\"op\":\"Const\"},"
    "{\"name\":\"dw\",\"op\":\"Const\"},{\"name\":\"db\",\"op\":\"Const\"},"
    "{\"name\":\"mul\",\"op\":\"Mul\",\"input\":[\"mul_y\",\"input\"]},"
    "{\"name\":\"sub\",\"op\":\"Sub\",\"input\":[\"mul\",\"sub_y\"]},"
    "{\"name\":\"conv\",\"op\":\"_FusedConv2D\",\"input\":[\"sub\",\"cw\",\"cb\"],\"attr\":{\"strides\":{\"list\":"
    "{\"i\":[\"1\",\"1\",\"1\",\"1\"]}},\"padding\":{\"s\":\"U0FNRQ==\"},\"fused_ops\":{\"list\":{\"s\":[\"Qmlhc0FkZA=="
    "\","
    "\"UmVsdQ==\"]}}}},"
    "{\"name\":\"pool\",\"op\":\"AvgPool\",\"input\":[\"conv\"],\"attr\":{\"ksize\":{\"list\":{\"i\":[\"1\",\"3\","
    "\"3\","
    "\"1\"]}},\"strides\":{\"list\":{\"i\":[\"1\",\"1\",\"1\",\"1\"]}},\"padding\":{\"s\":\"VkFMSUQ=\"}}},"
    "{\"name\":\"sq\",\"op\":\"Squeeze\",\"input\":[\"pool\"]},"
    "{\"name\":\"fc\",\"op\":\"_FusedMatMul\",\"input\":[\"sq\",\"dw\",\"db\"],\"attr\":{\"fused_ops\":{\"list\":{"
    "\"s\":"
    "[\"Qmlhc0FkZA==\"]}}}},"
    "{\"name\":\"sm\",\"op\":\"Softmax\",\"input\":[\"fc\"]},"
    "{\"name\":\"Identity\",\"op\":\"Identity\",\"input\":[\"sm\"]}]},"
    "\"weightsManifest\":[{\"paths\":[\"g.bin\"],\"weights\":["
    "{\"name\":\"mul_y\",\"shape\":[],\"dtype\":\"float32\"},{\"name\":\"sub_y\",\"shape\":[],\"dtype\":\"float32\"},"
    "{\"name\":\"cw\",\"shape\":[1,1,1,2],\"dtype\":\"float32\"},{\"name\":\"cb\",\"shape\":[2],\"dtype\":\"float32\"},"
    "{\"name\":\"dw\",\"shape\":[2,1],\"dtype\":\"float32\"},{\"name\":\"db\",\"shape\":[1],\"dtype\":\"float32\"}]}]}";

static void test_graph_model_by_hand(void **state) {
    (void)state;
    const float w[] = {2, 1, /* conv */ 1.5f, -0.5f, 0.25f, -0.25f, /* dense */ 2, -3, 0.5f};
    nn_net *net;
    nn_tfjs_info info;
    core_error err = {0};
    if (nn_tfjs_parse(GRAPH_JSON, strlen(GRAPH_JSON), (const uint8_t *)w, sizeof w, &net, &info, &err))
        fail_msg("%s", err.message);
    assert_float_equal(info.in_scale, 2.0f / 255, 1e-9);
    assert_float_equal(info.in_zero, 127.5f, 1e-4);
    /* Pixels 0..8 (scaled: p·2/255 − 1), one channel. */
    float x[9], a = 0, b = 0;
    for (int i = 0; i < 9; i++) {
        x[i] = info.in_scale * ((float)(i * 30) - info.in_zero);
        float v = (float)(i * 30) / 255 * 2 - 1;
        a += fmaxf(1.5f * v + 0.25f, 0) / 9, b += fmaxf(-0.5f * v - 0.25f, 0) / 9;
    }
    nn_run *run = nn_run_new();
    const float *y = nn_run_forward(run, net, 1, x, false, NULL, 0);
    const float *f = nn_run_output(run, info.features);
    assert_float_equal(f[0], a, 1e-5);
    assert_float_equal(f[1], b, 1e-5);
    assert_float_equal(y[0], 2 * a - 3 * b + 0.5f, 1e-5);
    nn_run_free(run);
    nn_net_free(net);
    /* An op this engine does not run, named in the refusal. */
    char *m = replace_all(GRAPH_JSON, "\"op\":\"Squeeze\"", "\"op\":\"Erf\"");
    assert_int_equal(nn_tfjs_parse(m, strlen(m), (const uint8_t *)w, sizeof w, &net, &info, &err), CORE_ERR_INVALID);
    assert_non_null(strstr(err.message, "Erf"));
    free(m);
    /* A node reading a tensor nothing computes. */
    m = replace_all(GRAPH_JSON, "[\"conv\"]", "[\"ghost\"]");
    assert_int_equal(nn_tfjs_parse(m, strlen(m), (const uint8_t *)w, sizeof w, &net, &info, &err), CORE_ERR_INVALID);
    free(m);
}

static int setup(void **state) {
    (void)state;
    testutil_tmpdir(dir);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    testutil_rmdir(dir);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layers_model_by_hand),
        cmocka_unit_test(test_graph_model_by_hand),
        cmocka_unit_test(test_nsfwjs_golden),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
