/* nn: every layer's backward pass checked against central finite
 * differences (input and parameter gradients), the loss, the optimisers,
 * two small training problems that must be fitted, and bit-identical
 * weights from the same seed. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"

static nn_rng rng;

static float *randn(size_t n, float scale) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = scale * nn_rng_normal(&rng);
    return p;
}

static float dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return (float)s;
}

/* Compare grad (analytical) with central differences of loss() while
 * perturbing arr[i]; checks up to 150 indices spread over the array. */
static void gradcheck(const char *what, float *arr, const float *grad, size_t n, float (*loss)(void *), void *ctx,
                      float eps, float tol) {
    size_t step = n > 150 ? n / 150 : 1;
    for (size_t i = 0; i < n; i += step) {
        float save = arr[i];
        arr[i] = save + eps;
        float lp = loss(ctx);
        arr[i] = save - eps;
        float lm = loss(ctx);
        arr[i] = save;
        float num = (lp - lm) / (2 * eps), ana = grad[i];
        /* relative error, with an absolute floor for tiny gradients where
         * float32 rounding of the loss (~1e-4) dominates */
        float err = fabsf(num - ana) / fmaxf(5e-2f, fabsf(num) + fabsf(ana));
        if (err > tol) fail_msg("%s[%zu]: numeric %.6f vs analytic %.6f (rel err %.4f)", what, i, num, ana, err);
    }
}

/* ---- convolution ---- */

typedef struct {
    nn_conv c;
    nn_shape in, out;
    float *x, *w, *b, *y, *r, *ws;
} conv_ctx;

static float conv_loss(void *p) {
    conv_ctx *t = p;
    nn_conv_forward(&t->c, t->in, t->x, t->w, t->b, t->y, t->ws);
    return dot(t->y, t->r, nn_count(t->out));
}

/* The definition, loop by loop: checks the forward pass itself (the
 * gradient checks only show that forward and backward agree). */
static void reference_conv(const nn_conv *c, nn_shape in, const float *x, const float *w, const float *b, float *y) {
    nn_shape o = nn_conv_out(c, in);
    int icg = c->in_c / c->groups, ocg = c->out_c / c->groups;
    int pt = c->pad, pl = c->axis_pad ? c->pad_w : c->pad;
    for (int n = 0; n < in.n; n++)
        for (int oc = 0; oc < o.c; oc++)
            for (int oy = 0; oy < o.h; oy++)
                for (int ox = 0; ox < o.w; ox++) {
                    double acc = b ? b[oc] : 0;
                    for (int i = 0; i < icg; i++)
                        for (int ky = 0; ky < c->kh; ky++)
                            for (int kx = 0; kx < c->kw; kx++) {
                                int iy = oy * c->stride - pt + ky, ix = ox * c->stride - pl + kx;
                                if (iy < 0 || iy >= in.h || ix < 0 || ix >= in.w) continue;
                                int ic = oc / ocg * icg + i;
                                acc += (double)x[(((size_t)n * in.c + ic) * in.h + iy) * in.w + ix] *
                                       w[(((size_t)oc * icg + i) * c->kh + ky) * c->kw + kx];
                            }
                    y[(((size_t)n * o.c + oc) * o.h + oy) * o.w + ox] = (float)acc;
                }
}

static void check_conv(nn_conv c, nn_shape in) {
    conv_ctx t = {.c = c, .in = in, .out = nn_conv_out(&c, in)};
    size_t nx = nn_count(in), ny = nn_count(t.out), nw = nn_conv_params(&c);
    t.x = randn(nx, 1);
    t.w = randn(nw, 0.5f);
    t.b = randn((size_t)c.out_c, 0.5f);
    t.y = malloc(ny * sizeof(float));
    t.r = randn(ny, 1);
    t.ws = malloc((nn_conv_workspace(&c, in) + 1) * sizeof(float));
    float *dx = malloc(nx * sizeof(float)), *dw = calloc(nw, sizeof(float)),
          *db = calloc((size_t)c.out_c, sizeof(float));
    conv_loss(&t);
    float *ref = malloc(ny * sizeof(float));
    reference_conv(&c, in, t.x, t.w, t.b, ref);
    for (size_t i = 0; i < ny; i++)
        if (fabsf(ref[i] - t.y[i]) > 1e-4f * (1 + fabsf(ref[i])))
            fail_msg("conv k%dx%d pad %d/%d: y[%zu] %.6f, reference %.6f", c.kh, c.kw, c.pad,
                     c.axis_pad ? c.pad_w : c.pad, i, t.y[i], ref[i]);
    free(ref);
    nn_conv_backward(&c, in, t.x, t.w, t.r, dx, dw, db, t.ws);
    char what[96];
    snprintf(what, sizeof what, "conv k%d s%d p%d g%d dx", c.kh, c.stride, c.pad, c.groups);
    /* The loss is linear in x, w and b, so any step is exact but for the
     * float rounding of the loss, which grows with the output: large maps
     * take a larger step. */
    float eps = ny > 4096 ? 0.25f : 1e-2f;
    gradcheck(what, t.x, dx, nx, conv_loss, &t, eps, 1e-2f);
    what[strlen(what) - 2] = 'w';
    gradcheck(what, t.w, dw, nw, conv_loss, &t, eps, 1e-2f);
    gradcheck("conv db", t.b, db, (size_t)c.out_c, conv_loss, &t, eps, 1e-2f);
    free(t.x), free(t.w), free(t.b), free(t.y), free(t.r), free(t.ws), free(dx), free(dw), free(db);
}

static void test_conv_gradients(void **state) {
    (void)state;
    check_conv((nn_conv){3, 4, 3, 3, 1, 1, 1, 0, 0, 0, 0}, (nn_shape){2, 3, 6, 5}); /* dense 3×3 */
    check_conv((nn_conv){3, 5, 3, 3, 2, 1, 1, 0, 0, 0, 0}, (nn_shape){2, 3, 7, 6}); /* stride 2 */
    check_conv((nn_conv){4, 6, 3, 3, 1, 0, 2, 0, 0, 0, 0}, (nn_shape){1, 4, 5, 5}); /* 2 groups, no padding */
    check_conv((nn_conv){3, 3, 3, 3, 2, 1, 3, 0, 0, 0, 0}, (nn_shape){2, 3, 7, 7}); /* depthwise */
    check_conv((nn_conv){4, 4, 5, 5, 1, 2, 4, 0, 0, 0, 0}, (nn_shape){1, 4, 6, 6}); /* depthwise 5×5 */
    check_conv((nn_conv){5, 3, 1, 1, 1, 0, 1, 0, 0, 0, 0}, (nn_shape){2, 5, 4, 3}); /* pointwise (no im2col) */
    check_conv((nn_conv){2, 4, 2, 3, 1, 0, 1, 0, 0, 0, 0}, (nn_shape){1, 2, 4, 5}); /* rectangular kernel */
    check_conv((nn_conv){3, 4, 3, 3, 2, 0, 1, 1, 0, 0, 0},
               (nn_shape){2, 3, 8, 8}); /* TF "SAME", stride 2: pad after only */
    check_conv((nn_conv){4, 4, 3, 3, 2, 0, 4, 1, 0, 0, 0}, (nn_shape){1, 4, 8, 8}); /* the same, depthwise */
    /* depthwise 3×3 has its own forward loop (a vectorised interior and
     * bounds-tested edges): rows wide enough for the interior, stride 1 and
     * 2, odd and even widths, and a row narrower than the window */
    check_conv((nn_conv){3, 3, 3, 3, 1, 1, 3, 0, 0, 0, 0}, (nn_shape){2, 3, 5, 21});
    check_conv((nn_conv){2, 2, 3, 3, 2, 1, 2, 0, 0, 0, 0}, (nn_shape){1, 2, 6, 19});
    check_conv((nn_conv){2, 2, 3, 3, 2, 0, 2, 1, 0, 0, 0}, (nn_shape){1, 2, 6, 20});
    check_conv((nn_conv){2, 2, 3, 3, 1, 1, 2, 0, 0, 0, 0}, (nn_shape){1, 2, 3, 2});
    /* Padding per axis (axis_pad): Inception's "SAME" 1×7 and 7×1 kernels
     * pad only across the long side; rectangular windows with the odd
     * pixel after on one axis only; depthwise with unequal padding (the
     * generic loop, not the 3×3 one). */
    check_conv((nn_conv){3, 4, 1, 7, 1, 0, 1, 0, 1, 3, 0}, (nn_shape){2, 3, 5, 9});
    check_conv((nn_conv){3, 4, 7, 1, 1, 3, 1, 0, 1, 0, 0}, (nn_shape){1, 3, 9, 4});
    check_conv((nn_conv){3, 2, 1, 3, 1, 0, 1, 0, 1, 1, 0}, (nn_shape){1, 3, 4, 6});
    check_conv((nn_conv){3, 4, 3, 3, 2, 1, 1, 0, 1, 0, 1}, (nn_shape){2, 3, 7, 8});
    check_conv((nn_conv){2, 2, 3, 3, 1, 1, 2, 0, 1, 0, 0}, (nn_shape){1, 2, 6, 7});
    check_conv((nn_conv){3, 3, 1, 5, 1, 0, 3, 0, 1, 2, 0}, (nn_shape){2, 3, 4, 8});
    /* Maps large enough that the forward pass im2cols in bands of rows
     * (about 1 MB of columns each): three bands, the last one short. */
    check_conv((nn_conv){32, 4, 3, 3, 1, 1, 1, 0, 0, 0, 0}, (nn_shape){1, 32, 40, 60});
    check_conv((nn_conv){16, 3, 1, 7, 2, 0, 1, 0, 1, 3, 1}, (nn_shape){1, 16, 75, 160});
    /* The square cases above through the reference with axis_pad set to the same values. */
    check_conv((nn_conv){3, 5, 3, 3, 2, 1, 1, 0, 1, 1, 0}, (nn_shape){2, 3, 7, 6});
}

/* ---- batch norm ---- */

typedef struct {
    nn_bn p;
    nn_shape s;
    float *x, *g, *b, *y, *r, *m, *inv;
} bn_ctx;

static float bn_loss(void *p) {
    bn_ctx *t = p;
    nn_bn_forward_train(&t->p, t->s, t->x, t->g, t->b, t->y, t->m, t->inv, NULL, NULL);
    return dot(t->y, t->r, nn_count(t->s));
}

static void test_bn_gradients(void **state) {
    (void)state;
    bn_ctx t = {.p = {0.1f, 1e-5f}, .s = {3, 2, 4, 3}};
    size_t n = nn_count(t.s);
    t.x = randn(n, 2);
    t.g = randn(2, 1);
    t.b = randn(2, 1);
    t.y = malloc(n * sizeof(float));
    t.r = randn(n, 1);
    t.m = malloc(2 * sizeof(float));
    t.inv = malloc(2 * sizeof(float));
    float *dx = malloc(n * sizeof(float)), dg[2] = {0}, dbeta[2] = {0};
    bn_loss(&t);
    nn_bn_backward(t.s, t.x, t.g, t.m, t.inv, t.r, dx, dg, dbeta);
    gradcheck("bn dx", t.x, dx, n, bn_loss, &t, 1e-2f, 2e-2f);
    gradcheck("bn dgamma", t.g, dg, 2, bn_loss, &t, 1e-2f, 1e-2f);
    gradcheck("bn dbeta", t.b, dbeta, 2, bn_loss, &t, 1e-2f, 1e-2f);
    /* Inference with the batch's own statistics equals training mode. */
    float rm[2] = {0}, rv[2] = {0}, *yi = malloc(n * sizeof(float));
    nn_bn one = {1.0f, 1e-5f};
    nn_bn_forward_train(&one, t.s, t.x, t.g, t.b, t.y, t.m, t.inv, rm, rv);
    size_t m = (size_t)t.s.n * t.s.h * t.s.w;
    for (int c = 0; c < 2; c++) rv[c] *= (float)(m - 1) / (float)m; /* biased, as normalisation uses */
    nn_bn_forward_infer(&one, t.s, t.x, t.g, t.b, rm, rv, yi);
    for (size_t i = 0; i < n; i++) assert_true(fabsf(yi[i] - t.y[i]) < 1e-3f);
    free(t.x), free(t.g), free(t.b), free(t.y), free(t.r), free(t.m), free(t.inv), free(dx), free(yi);
}

/* ---- activations, pooling, dense, dropout ---- */

typedef struct {
    nn_act a;
    size_t n;
    float *x, *y, *r;
} act_ctx;
static float act_loss(void *p) {
    act_ctx *t = p;
    nn_act_forward(t->a, t->n, t->x, t->y);
    return dot(t->y, t->r, t->n);
}

static void test_activation_gradients(void **state) {
    (void)state;
    for (nn_act a = NN_RELU; a <= NN_SILU; a++) {
        act_ctx t = {a, 200, randn(200, 4), malloc(200 * sizeof(float)), randn(200, 1)};
        /* Keep away from the kinks at 0 and 6, where no derivative exists. */
        for (size_t i = 0; i < t.n; i++) {
            if (fabsf(t.x[i]) < 0.05f) t.x[i] += 0.1f;
            if (fabsf(t.x[i] - 6) < 0.05f) t.x[i] += 0.1f;
        }
        float *dx = malloc(t.n * sizeof(float));
        nn_act_backward(a, t.n, t.x, t.r, dx);
        gradcheck(a == NN_RELU ? "relu" : a == NN_RELU6 ? "relu6" : "silu", t.x, dx, t.n, act_loss, &t, 1e-2f, 1e-2f);
        free(t.x), free(t.y), free(t.r), free(dx);
    }
}

typedef struct {
    nn_pool p;
    nn_shape in, out;
    int kind;
    float *x, *y, *r;
    int32_t *arg;
} pool_ctx;
static float pool_loss(void *p) {
    pool_ctx *t = p;
    if (t->kind == 0)
        nn_maxpool_forward(&t->p, t->in, t->x, t->y, t->arg);
    else if (t->kind == 1)
        nn_avgpool_forward(&t->p, t->in, t->x, t->y);
    else
        nn_gap_forward(t->in, t->x, t->y);
    return dot(t->y, t->r, nn_count(t->out));
}

static void test_pool_gradients(void **state) {
    (void)state;
    nn_pool cfgs[] = {{2, 2, 0, false}, {3, 2, 1, false}, {3, 1, 1, false}, {3, 1, 1, true}, {3, 2, 1, true}};
    for (int kind = 0; kind < 3; kind++)
        for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
            pool_ctx t = {.p = cfgs[k], .in = {2, 3, 7, 6}, .kind = kind};
            t.out = kind == 2 ? (nn_shape){2, 3, 1, 1} : nn_pool_out(&t.p, t.in);
            size_t nx = nn_count(t.in), ny = nn_count(t.out);
            t.x = randn(nx, 1);
            /* Distinct values at least 0.01 apart (a shuffled ladder), so a
             * ±eps nudge can never swap which element is a window's max. */
            for (size_t i = 0; i < nx; i++) t.x[i] = 0.01f * (float)i - 0.005f * (float)nx;
            for (size_t i = nx - 1; i > 0; i--) {
                size_t j = (size_t)(nn_rng_next(&rng) % (i + 1));
                float tmp = t.x[i];
                t.x[i] = t.x[j];
                t.x[j] = tmp;
            }
            t.y = malloc(ny * sizeof(float));
            t.r = randn(ny, 1);
            t.arg = malloc(ny * sizeof(int32_t));
            float *dx = malloc(nx * sizeof(float));
            pool_loss(&t);
            if (kind == 0)
                nn_maxpool_backward(t.in, t.out, t.arg, t.r, dx);
            else if (kind == 1)
                nn_avgpool_backward(&t.p, t.in, t.r, dx);
            else
                nn_gap_backward(t.in, t.r, dx);
            char what[64];
            snprintf(what, sizeof what, "%s k%d s%d p%d",
                     kind == 0   ? "maxpool"
                     : kind == 1 ? "avgpool"
                                 : "gap",
                     t.p.k, t.p.stride, t.p.pad);
            gradcheck(what, t.x, dx, nx, pool_loss, &t, 1e-3f, 1e-2f);
            free(t.x), free(t.y), free(t.r), free(t.arg), free(dx);
        }
}

typedef struct {
    int n, in, out;
    float *x, *w, *b, *y, *r;
} dense_ctx;
static float dense_loss(void *p) {
    dense_ctx *t = p;
    nn_dense_forward(t->n, t->in, t->out, t->x, t->w, t->b, t->y);
    return dot(t->y, t->r, (size_t)t->n * t->out);
}

/* ---- concatenation ---- */

typedef struct {
    int n, ca, cb;
    size_t hw;
    float *a, *b, *y, *r;
} cat_ctx;

static float cat_loss(void *p) {
    cat_ctx *t = p;
    nn_concat_forward(t->n, t->ca, t->cb, t->hw, t->a, t->b, t->y);
    return dot(t->y, t->r, (size_t)t->n * (t->ca + t->cb) * t->hw);
}

static void test_concat(void **state) {
    (void)state;
    cat_ctx t = {.n = 2, .ca = 3, .cb = 2, .hw = 5};
    size_t na = (size_t)t.n * t.ca * t.hw, nb = (size_t)t.n * t.cb * t.hw, ny = na + nb;
    t.a = randn(na, 1), t.b = randn(nb, 1), t.y = malloc(ny * sizeof(float)), t.r = randn(ny, 1);
    cat_loss(&t);
    /* Sample 1, channel 0 of the result is sample 1's channel 0 of a; its
     * channel 3 is sample 1's channel 0 of b. */
    assert_true(t.y[(size_t)(t.ca + t.cb) * t.hw] == t.a[(size_t)t.ca * t.hw]);
    assert_true(t.y[(size_t)(t.ca + t.cb) * t.hw + (size_t)t.ca * t.hw] == t.b[(size_t)t.cb * t.hw]);
    float *da = malloc(na * sizeof(float)), *db = malloc(nb * sizeof(float));
    nn_concat_backward(t.n, t.ca, t.cb, t.hw, t.r, da, db);
    gradcheck("concat da", t.a, da, na, cat_loss, &t, 1e-2f, 1e-3f);
    gradcheck("concat db", t.b, db, nb, cat_loss, &t, 1e-2f, 1e-3f);
    nn_concat_backward(t.n, t.ca, t.cb, t.hw, t.r, NULL, db); /* either side may be skipped */
    free(t.a), free(t.b), free(t.y), free(t.r), free(da), free(db);
}

/* The inference pooling loop (no argmax: separable, interior vectorised)
 * against the training one (tap by tap, with argmax) and, for averages, a
 * direct sum, on maps with edges, strides and padding. */
static void test_pool_fast_paths(void **state) {
    (void)state;
    nn_pool cfgs[] = {{3, 1, 1, true}, {3, 2, 0, false}, {3, 2, 1, false}, {2, 2, 0, false},
                      {5, 1, 2, true}, {3, 1, 1, false}, {7, 3, 3, true}};
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        nn_pool p = cfgs[k];
        nn_shape in = {2, 3, 13, 17}, o = nn_pool_out(&p, in);
        float *x = randn(nn_count(in), 1), *a = malloc(nn_count(o) * sizeof(float)),
              *b = malloc(nn_count(o) * sizeof(float));
        int32_t *arg = malloc(nn_count(o) * sizeof(int32_t));
        nn_maxpool_forward(&p, in, x, a, NULL);
        nn_maxpool_forward(&p, in, x, b, arg);
        assert_memory_equal(a, b, nn_count(o) * sizeof(float));
        nn_avgpool_forward(&p, in, x, a);
        for (int nc = 0; nc < in.n * in.c; nc++)
            for (int oy = 0; oy < o.h; oy++)
                for (int ox = 0; ox < o.w; ox++) {
                    double sum = 0;
                    int cnt = 0;
                    for (int ky = 0; ky < p.k; ky++)
                        for (int kx = 0; kx < p.k; kx++) {
                            int iy = oy * p.stride - p.pad + ky, ix = ox * p.stride - p.pad + kx;
                            if (iy < 0 || iy >= in.h || ix < 0 || ix >= in.w) continue;
                            sum += x[((size_t)nc * in.h + iy) * in.w + ix], cnt++;
                        }
                    double want = sum / (p.exclude_pad ? cnt : p.k * p.k);
                    assert_float_equal(a[((size_t)nc * o.h + oy) * o.w + ox], want, 1e-5);
                }
        free(x), free(a), free(b), free(arg);
    }
}

/* Average pooling that leaves padding out of the divisor: a 3×3 window at
 * a corner of a map of ones averages four ones (1), not 4/9. */
static void test_avgpool_exclude_pad(void **state) {
    (void)state;
    nn_pool p = {3, 1, 1, true};
    nn_shape in = {1, 1, 4, 5};
    float x[20], y[20];
    for (int i = 0; i < 20; i++) x[i] = 1;
    nn_avgpool_forward(&p, in, x, y);
    for (int i = 0; i < 20; i++) assert_float_equal(y[i], 1.0f, 1e-6);
    p.exclude_pad = false;
    nn_avgpool_forward(&p, in, x, y);
    assert_float_equal(y[0], 4.0f / 9, 1e-6);
    /* Max pooling without an argmax (inference). */
    nn_maxpool_forward(&p, in, x, y, NULL);
    assert_float_equal(y[0], 1.0f, 0);
}

static void test_dense_gradients(void **state) {
    (void)state;
    dense_ctx t = {.n = 4, .in = 7, .out = 5};
    t.x = randn(28, 1);
    t.w = randn(35, 0.5f);
    t.b = randn(5, 0.5f);
    t.y = malloc(20 * sizeof(float));
    t.r = randn(20, 1);
    float dx[28], dw[35] = {0}, db[5] = {0};
    dense_loss(&t);
    nn_dense_backward(4, 7, 5, t.x, t.w, t.r, dx, dw, db);
    gradcheck("dense dx", t.x, dx, 28, dense_loss, &t, 1e-2f, 1e-2f);
    gradcheck("dense dw", t.w, dw, 35, dense_loss, &t, 1e-2f, 1e-2f);
    gradcheck("dense db", t.b, db, 5, dense_loss, &t, 1e-2f, 1e-2f);
    free(t.x), free(t.w), free(t.b), free(t.y), free(t.r);
}

typedef struct {
    float p;
    size_t n;
    float *x, *y, *r;
    uint8_t *mask;
} drop_ctx;
static float drop_loss(void *p) {
    drop_ctx *t = p;
    nn_rng fixed;
    nn_rng_seed(&fixed, 99); /* the same mask every call */
    nn_dropout_forward(&fixed, t->p, t->n, t->x, t->y, t->mask);
    return dot(t->y, t->r, t->n);
}

static void test_dropout_and_add(void **state) {
    (void)state;
    drop_ctx t = {0.3f, 500, randn(500, 1), malloc(500 * sizeof(float)), randn(500, 1), malloc(500)};
    float *dx = malloc(500 * sizeof(float));
    drop_loss(&t);
    size_t kept = 0;
    for (size_t i = 0; i < 500; i++) kept += t.mask[i];
    assert_true(kept > 300 && kept < 400); /* ≈ 70 % kept */
    nn_dropout_backward(t.p, t.n, t.mask, t.r, dx);
    gradcheck("dropout", t.x, dx, t.n, drop_loss, &t, 1e-2f, 1e-2f);
    float a[3] = {1, 2, 3}, b[3] = {10, 20, 30}, y[3];
    nn_add_forward(3, a, b, y);
    assert_true(y[0] == 11 && y[1] == 22 && y[2] == 33);
    free(t.x), free(t.y), free(t.r), free(t.mask), free(dx);
}

typedef struct {
    int n, k;
    float *z;
    int32_t *lab;
    float smooth;
    float *cw;
} ce_ctx;
static float ce_loss(void *p) {
    ce_ctx *t = p;
    return nn_softmax_ce(t->n, t->k, t->z, t->lab, t->smooth, t->cw, NULL, NULL);
}

static void test_softmax_ce(void **state) {
    (void)state;
    int32_t lab[5] = {0, 3, 2, 3, 1};
    float cw[4] = {1.0f, 2.0f, 0.5f, 1.5f};
    ce_ctx t = {5, 4, randn(20, 2), lab, 0.1f, cw};
    float dz[20], probs[20];
    nn_softmax_ce(5, 4, t.z, lab, 0.1f, cw, dz, probs);
    gradcheck("softmax_ce", t.z, dz, 20, ce_loss, &t, 1e-2f, 1e-2f);
    for (int i = 0; i < 5; i++) {
        float s = 0;
        for (int j = 0; j < 4; j++) s += probs[i * 4 + j];
        assert_true(fabsf(s - 1) < 1e-5f);
    }
    /* A confident right answer costs little; a confident wrong one a lot. */
    float good[2] = {10, -10}, bad[2] = {-10, 10};
    int32_t zero = 0;
    assert_true(nn_softmax_ce(1, 2, good, &zero, 0, NULL, NULL, NULL) < 1e-3f);
    assert_true(nn_softmax_ce(1, 2, bad, &zero, 0, NULL, NULL, NULL) > 19.0f);
    free(t.z);
}

static void test_schedule_and_optimisers(void **state) {
    (void)state;
    assert_true(fabsf(nn_cosine_lr(1.0f, 0.0f, 0, 10, 110) - 0.1f) < 1e-6f); /* warm-up */
    assert_true(fabsf(nn_cosine_lr(1.0f, 0.0f, 10, 10, 110) - 1.0f) < 1e-6f);
    assert_true(fabsf(nn_cosine_lr(1.0f, 0.0f, 60, 10, 110) - 0.5f) < 1e-6f);
    assert_true(nn_cosine_lr(1.0f, 0.01f, 110, 10, 110) < 0.0101f);
    /* Both optimisers minimise a quadratic bowl. */
    float w[3] = {5, -3, 2}, g[3], m[3] = {0}, v[3] = {0};
    nn_adamw o;
    nn_adamw_init(&o, 0.1f, 0.0f);
    for (int s = 0; s < 500; s++) {
        for (int i = 0; i < 3; i++) g[i] = 2 * (w[i] - (float)i);
        nn_adamw_tick(&o);
        nn_adamw_step(&o, 3, w, g, m, v, true);
    }
    for (int i = 0; i < 3; i++) assert_true(fabsf(w[i] - (float)i) < 0.05f);
    float u[3] = {5, -3, 2}, vel[3] = {0};
    nn_sgd sgd = {0.05f, 0.9f, 0.0f};
    for (int s = 0; s < 500; s++) {
        for (int i = 0; i < 3; i++) g[i] = 2 * (u[i] - (float)i);
        nn_sgd_step(&sgd, 3, u, g, vel, true);
    }
    for (int i = 0; i < 3; i++) assert_true(fabsf(u[i] - (float)i) < 1e-3f);
    /* AdamW's decay is decoupled: with zero gradient weights shrink by lr·wd. */
    float z[1] = {1.0f}, zg[1] = {0}, zm[1] = {0}, zv[1] = {0};
    nn_adamw d;
    nn_adamw_init(&d, 0.1f, 0.5f);
    nn_adamw_tick(&d);
    nn_adamw_step(&d, 1, z, zg, zm, zv, true);
    assert_true(fabsf(z[0] - 0.95f) < 1e-6f);
}

/* ---- training: a small CNN must learn stripes' orientation ----
 * conv3×3(1→4)+BN+ReLU → conv3×3 s2 depthwise(4) → ReLU6 → GAP → dense(4→2).
 * 8×8 images of horizontal or vertical stripes with random phase and noise. */

enum { B = 16, H = 8 };

typedef struct {
    float w1[4 * 9], b1[4], g1[4], be1[4], rm1[4], rv1[4], w2[4 * 9], b2[4], w3[2 * 4], b3[2];
} cnn;

static void make_batch(nn_rng *r, float *x, int32_t *y) {
    for (int i = 0; i < B; i++) {
        y[i] = (int32_t)(nn_rng_next(r) & 1);
        int phase = (int)(nn_rng_next(r) % 3);
        for (int a = 0; a < H; a++)
            for (int b = 0; b < H; b++) {
                int along = y[i] ? b : a;
                x[i * H * H + a * H + b] = ((along + phase) % 3 == 0 ? 1.0f : -0.5f) + 0.2f * nn_rng_normal(r);
            }
    }
}

static float train_cnn(uint64_t seed, int steps, cnn *net, float *accuracy) {
    nn_rng r;
    nn_rng_seed(&r, seed);
    memset(net, 0, sizeof *net);
    nn_init_he(&r, net->w1, 36, 9);
    nn_init_he(&r, net->w2, 36, 9);
    nn_init_he(&r, net->w3, 8, 4);
    for (int c = 0; c < 4; c++) net->g1[c] = 1, net->rv1[c] = 1;
    nn_conv c1 = {1, 4, 3, 3, 1, 1, 1, 0, 0, 0, 0}, c2 = {4, 4, 3, 3, 2, 1, 4, 0, 0, 0, 0};
    nn_bn bn = {0.1f, 1e-5f};
    nn_shape s0 = {B, 1, H, H}, s1 = nn_conv_out(&c1, s0), s2 = nn_conv_out(&c2, s1);
    size_t n1 = nn_count(s1), n2 = nn_count(s2);
    float x[B * H * H], a1[B * 4 * 64], z1[B * 4 * 64], h1[B * 4 * 64], a2[B * 4 * 16], h2[B * 4 * 16], g[B * 4],
        logits[B * 2], dl[B * 2], dg[B * 4], dh2[B * 4 * 16], da2[B * 4 * 16], dh1[B * 4 * 64], dz1[B * 4 * 64],
        da1[B * 4 * 64], mean[4], inv[4];
    float ws[2 * 9 * 64];
    int32_t y[B];
    cnn grad, m1, v1;
    memset(&m1, 0, sizeof m1);
    memset(&v1, 0, sizeof v1);
    nn_adamw opt;
    nn_adamw_init(&opt, 0.02f, 1e-4f);
    float loss = 0;
    for (int step = 0; step < steps; step++) {
        make_batch(&r, x, y);
        nn_conv_forward(&c1, s0, x, net->w1, net->b1, a1, ws);
        nn_bn_forward_train(&bn, s1, a1, net->g1, net->be1, z1, mean, inv, net->rm1, net->rv1);
        nn_act_forward(NN_RELU, n1, z1, h1);
        nn_conv_forward(&c2, s1, h1, net->w2, net->b2, a2, ws);
        nn_act_forward(NN_RELU6, n2, a2, h2);
        nn_gap_forward(s2, h2, g);
        nn_dense_forward(B, 4, 2, g, net->w3, net->b3, logits);
        loss = nn_softmax_ce(B, 2, logits, y, 0.0f, NULL, dl, NULL);
        memset(&grad, 0, sizeof grad);
        nn_dense_backward(B, 4, 2, g, net->w3, dl, dg, grad.w3, grad.b3);
        nn_gap_backward(s2, dg, dh2);
        nn_act_backward(NN_RELU6, n2, a2, dh2, da2);
        nn_conv_backward(&c2, s1, h1, net->w2, da2, dh1, grad.w2, grad.b2, ws);
        nn_act_backward(NN_RELU, n1, z1, dh1, dz1);
        nn_bn_backward(s1, a1, net->g1, mean, inv, dz1, da1, grad.g1, grad.be1);
        nn_conv_backward(&c1, s0, x, net->w1, da1, NULL, grad.w1, grad.b1, ws);
        opt.lr = nn_cosine_lr(0.02f, 0.001f, step, 20, steps);
        nn_adamw_tick(&opt);
        float *pw[] = {net->w1, net->b1, net->g1, net->be1, net->w2, net->b2, net->w3, net->b3};
        float *pg[] = {grad.w1, grad.b1, grad.g1, grad.be1, grad.w2, grad.b2, grad.w3, grad.b3};
        float *pm[] = {m1.w1, m1.b1, m1.g1, m1.be1, m1.w2, m1.b2, m1.w3, m1.b3};
        float *pv[] = {v1.w1, v1.b1, v1.g1, v1.be1, v1.w2, v1.b2, v1.w3, v1.b3};
        size_t pn[] = {36, 4, 4, 4, 36, 4, 8, 2};
        bool decay[] = {true, false, false, false, true, false, true, false};
        for (int k = 0; k < 8; k++) nn_adamw_step(&opt, pn[k], pw[k], pg[k], pm[k], pv[k], decay[k]);
    }
    /* Held-out accuracy with inference-mode batch norm. */
    int right = 0, total = 0;
    for (int t = 0; t < 20; t++) {
        make_batch(&r, x, y);
        nn_conv_forward(&c1, s0, x, net->w1, net->b1, a1, ws);
        nn_bn_forward_infer(&bn, s1, a1, net->g1, net->be1, net->rm1, net->rv1, z1);
        nn_act_forward(NN_RELU, n1, z1, h1);
        nn_conv_forward(&c2, s1, h1, net->w2, net->b2, a2, ws);
        nn_act_forward(NN_RELU6, n2, a2, h2);
        nn_gap_forward(s2, h2, g);
        nn_dense_forward(B, 4, 2, g, net->w3, net->b3, logits);
        for (int i = 0; i < B; i++, total++) right += (logits[i * 2 + 1] > logits[i * 2]) == (y[i] == 1);
    }
    *accuracy = (float)right / (float)total;
    return loss;
}

static void test_training_fits_and_is_deterministic(void **state) {
    (void)state;
    cnn a, b;
    float acc_a, acc_b;
    float loss = train_cnn(7, 400, &a, &acc_a);
    fprintf(stderr, "stripes CNN: final loss %.4f, held-out accuracy %.3f\n", loss, acc_a);
    assert_true(acc_a >= 0.97f);
    train_cnn(7, 400, &b, &acc_b);
    assert_memory_equal(&a, &b, sizeof a); /* same seed → identical weights, bit for bit */
    train_cnn(8, 400, &b, &acc_b);
    assert_true(memcmp(&a, &b, sizeof a) != 0);
}

/* ---- augmentation ---- */

static void test_augmentation(void **state) {
    (void)state;
    enum { AC = 3, AH = 20, AW = 24 };
    float in[AC * AH * AW], out[AC * AH * AW], out2[AC * AH * AW];
    for (int i = 0; i < AC * AH * AW; i++) in[i] = sinf((float)i * 0.7f) + (float)(i / (AH * AW));
    nn_rng r;
    nn_rng_seed(&r, 1);
    /* Identity options on a square image: the same image back, exactly;
     * with the horizontal flip allowed, either it or its mirror. */
    nn_augment_opts id = {.min_area = 1, .max_area = 1, .min_ratio = 1, .max_ratio = 1};
    float sq[AC * AH * AH], sqo[AC * AH * AH];
    for (int i = 0; i < AC * AH * AH; i++) sq[i] = cosf((float)i * 0.31f);
    nn_augment(&r, &id, AC, AH, AH, sq, AH, AH, sqo);
    for (int i = 0; i < AC * AH * AH; i++) assert_true(fabsf(sqo[i] - sq[i]) < 1e-5f);
    nn_augment_opts flip = id;
    flip.hflip = true;
    int plain = 0, mirrored = 0;
    for (int t = 0; t < 40; t++) {
        nn_augment(&r, &flip, AC, AH, AH, sq, AH, AH, sqo);
        bool eq = true, mir = true;
        for (int c = 0; c < AC; c++)
            for (int y = 0; y < AH; y++)
                for (int x = 0; x < AH; x++) {
                    float got = sqo[(c * AH + y) * AH + x];
                    eq &= fabsf(got - sq[(c * AH + y) * AH + x]) < 1e-5f;
                    mir &= fabsf(got - sq[(c * AH + y) * AH + (AH - 1 - x)]) < 1e-5f;
                }
        assert_true(eq || mir);
        plain += eq, mirrored += mir;
    }
    assert_true(plain > 5 && mirrored > 5); /* both happen */
    /* Every output value is a blend of input values (no overshoot) before
     * colour jitter; with jitter, the image mean scales with brightness. */
    nn_augment_opts o;
    nn_augment_defaults(&o);
    o.brightness = o.contrast = o.saturation = 0;
    float lo = in[0], hi = in[0];
    for (int i = 0; i < AC * AH * AW; i++) lo = fminf(lo, in[i]), hi = fmaxf(hi, in[i]);
    for (int t = 0; t < 20; t++) {
        nn_augment(&r, &o, AC, AH, AW, in, 16, 16, out);
        for (int i = 0; i < AC * 16 * 16; i++) assert_true(out[i] >= lo - 1e-4f && out[i] <= hi + 1e-4f);
    }
    /* A constant image stays constant under any geometry; brightness then
     * scales it within its range. */
    float k[AC * AH * AW];
    for (int i = 0; i < AC * AH * AW; i++) k[i] = 0.5f;
    nn_augment_defaults(&o);
    o.contrast = o.saturation = 0;
    for (int t = 0; t < 20; t++) {
        nn_augment(&r, &o, AC, AH, AW, k, 12, 12, out);
        for (int i = 1; i < AC * 12 * 12; i++) assert_true(fabsf(out[i] - out[0]) < 1e-5f);
        assert_true(out[0] >= 0.5f * (1 - o.brightness) - 1e-5f && out[0] <= 0.5f * (1 + o.brightness) + 1e-5f);
    }
    /* Same seed, same augmentation. */
    nn_augment_defaults(&o);
    nn_rng a, b;
    nn_rng_seed(&a, 9);
    nn_rng_seed(&b, 9);
    nn_augment(&a, &o, AC, AH, AW, in, 16, 16, out);
    nn_augment(&b, &o, AC, AH, AW, in, 16, 16, out2);
    assert_memory_equal(out, out2, AC * 16 * 16 * sizeof(float));
}

int main(void) {
    nn_set_threads(2);
    nn_rng_seed(&rng, 2026);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_gradients),
        cmocka_unit_test(test_bn_gradients),
        cmocka_unit_test(test_activation_gradients),
        cmocka_unit_test(test_pool_gradients),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_avgpool_exclude_pad),
        cmocka_unit_test(test_pool_fast_paths),
        cmocka_unit_test(test_dense_gradients),
        cmocka_unit_test(test_dropout_and_add),
        cmocka_unit_test(test_softmax_ce),
        cmocka_unit_test(test_schedule_and_optimisers),
        cmocka_unit_test(test_training_fits_and_is_deterministic),
        cmocka_unit_test(test_augmentation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
