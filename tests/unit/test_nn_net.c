/* nn networks: a residual graph's parameter gradients against finite
 * differences (shortcut fan-out, batch norm in training mode, dropout with
 * a replayed mask), the frozen boundary, refusals of ill-formed nodes, and a
 * small problem trained end to end through the net API. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"

enum { B = 6, C = 3, H = 8, K = 3 };

/* input → conv3x3 → bn → relu6 ─┬→ depthwise3x3 → silu → add(·, shortcut) → conv1x1 → gap → dropout → dense
 *                              └────────────────────────┘ */
static nn_net *residual_net(void) {
    nn_net *net = nn_net_new(C, H, H);
    assert_non_null(net);
    nn_node n;
    memset(&n, 0, sizeof n);
    n.op = NN_OP_CONV, n.in = NN_INPUT, n.conv = (nn_conv){C, 4, 3, 3, 1, 1, 1, 0, 0, 0, 0}, n.bias = true;
    assert_int_equal(nn_net_add(net, &n), 0);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_BN, n.in = 0, n.eps = 1e-3f, n.momentum = 0.1f;
    assert_int_equal(nn_net_add(net, &n), 1);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_ACT, n.in = 1, n.act = NN_RELU6;
    assert_int_equal(nn_net_add(net, &n), 2);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_CONV, n.in = 2, n.conv = (nn_conv){4, 4, 3, 3, 1, 1, 4, 0, 0, 0, 0}, n.bias = true;
    assert_int_equal(nn_net_add(net, &n), 3);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_ACT, n.in = 3, n.act = NN_SILU;
    assert_int_equal(nn_net_add(net, &n), 4);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_ADD, n.in = 4, n.in2 = 2;
    assert_int_equal(nn_net_add(net, &n), 5);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_CONV, n.in = 5, n.conv = (nn_conv){4, 5, 1, 1, 2, 0, 1, 0, 0, 0, 0}, n.bias = false;
    assert_int_equal(nn_net_add(net, &n), 6);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_GAP, n.in = 6;
    assert_int_equal(nn_net_add(net, &n), 7);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_DROPOUT, n.in = 7, n.p = 0.3f;
    assert_int_equal(nn_net_add(net, &n), 8);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_DENSE, n.in = 8, n.units = K, n.bias = true;
    assert_int_equal(nn_net_add(net, &n), 9);
    nn_shape o = nn_net_shape(net, 9);
    assert_int_equal(o.c, K);
    assert_int_equal(nn_net_shape(net, 6).h, 4);
    return net;
}

typedef struct {
    nn_net *net;
    nn_run *run;
    float x[B * C * H * H];
    int32_t y[B];
} ctx;

/* Training-mode loss with a replayed dropout mask (same seed every call). */
static float loss_of(ctx *c, float *dlogits) {
    nn_rng r;
    nn_rng_seed(&r, 99);
    const float *logits = nn_run_forward(c->run, c->net, B, c->x, true, &r, 0);
    assert_non_null(logits);
    return nn_softmax_ce(B, K, logits, c->y, 0.1f, NULL, dlogits, NULL);
}

/* An Inception block: input → conv3x3 → silu ─┬→ conv1x7 (pad across) → conv7x1 (pad down) ─┐
 *                                              ├→ maxpool3x3 s1 ─────────────────────────────┤ concat
 *                                              └→ avgpool3x3 s1 (padding excluded) ──────────┘
 *   → concat(·, itself) → maxpool3x3 s2 → gap → dense. The self-concatenation
 * makes one node reach a CONCAT twice (gradients must add). */
static nn_net *inception_net(void) {
    nn_net *net = nn_net_new(C, H, H);
    assert_non_null(net);
    nn_node n;
    memset(&n, 0, sizeof n);
    n.op = NN_OP_CONV, n.in = NN_INPUT, n.conv = (nn_conv){C, 4, 3, 3, 1, 1, 1, 0, 0, 0, 0}, n.bias = true;
    assert_int_equal(nn_net_add(net, &n), 0);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_ACT, n.in = 0, n.act = NN_SILU; /* smooth: max pooling's finite differences see no ReLU ties */
    assert_int_equal(nn_net_add(net, &n), 1);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_CONV, n.in = 1, n.conv = (nn_conv){4, 3, 1, 7, 1, 0, 1, 0, 1, 3, 0}, n.bias = true;
    assert_int_equal(nn_net_add(net, &n), 2);
    n.in = 2, n.conv = (nn_conv){3, 3, 7, 1, 1, 3, 1, 0, 1, 0, 0};
    assert_int_equal(nn_net_add(net, &n), 3);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_MAXPOOL, n.in = 1, n.pool = (nn_pool){3, 1, 1, false};
    assert_int_equal(nn_net_add(net, &n), 4);
    n.op = NN_OP_AVGPOOL, n.pool.exclude_pad = true;
    assert_int_equal(nn_net_add(net, &n), 5);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_CONCAT, n.in = 3, n.in2 = 4;
    assert_int_equal(nn_net_add(net, &n), 6);
    n.in = 6, n.in2 = 5;
    assert_int_equal(nn_net_add(net, &n), 7);
    n.in = 7, n.in2 = 7;
    assert_int_equal(nn_net_add(net, &n), 8);
    assert_int_equal(nn_net_shape(net, 8).c, 2 * (3 + 4 + 4));
    memset(&n, 0, sizeof n);
    n.op = NN_OP_MAXPOOL, n.in = 8, n.pool = (nn_pool){3, 2, 0, false};
    assert_int_equal(nn_net_add(net, &n), 9);
    assert_int_equal(nn_net_shape(net, 9).h, 3);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_GAP, n.in = 9;
    assert_int_equal(nn_net_add(net, &n), 10);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_DENSE, n.in = 10, n.units = K, n.bias = true;
    assert_int_equal(nn_net_add(net, &n), 11);
    return net;
}

static void setup_net(ctx *c, uint64_t seed, nn_net *(*build)(void)) {
    nn_rng r;
    nn_rng_seed(&r, seed);
    c->net = build();
    c->run = nn_run_new();
    nn_net_init(c->net, &r);
    /* Non-trivial batch-norm affine parameters and biases. */
    for (int i = 0; i < nn_net_count(c->net); i++)
        for (int k = 0; k < 2; k++) {
            size_t n;
            float *t = nn_net_tensor(c->net, i, k, &n);
            if (t && (k == 1 || nn_net_node(c->net, i)->op == NN_OP_BN))
                for (size_t j = 0; j < n; j++) t[j] += 0.3f * nn_rng_normal(&r);
        }
    for (size_t i = 0; i < sizeof c->x / sizeof c->x[0]; i++) c->x[i] = nn_rng_normal(&r);
    for (int i = 0; i < B; i++) c->y[i] = (int32_t)(nn_rng_next(&r) % K);
}

static void setup(ctx *c, uint64_t seed) { setup_net(c, seed, residual_net); }

static void teardown(ctx *c) {
    nn_run_free(c->run);
    nn_net_free(c->net);
}

static void check_all_params(ctx *c, int *checked) {
    float dl[B * K];
    nn_net_zero_grad(c->net);
    loss_of(c, dl);
    assert_true(nn_run_backward(c->run, c->net, dl));
    nn_param ps[32];
    size_t np = nn_net_params(c->net, ps, 32);
    assert_true(np <= 32);
    for (size_t p = 0; p < np; p++) {
        /* Copy the analytic gradient: loss_of() below re-runs forward only,
         * but keep it independent of the buffers anyway. */
        float *ga = malloc(ps[p].n * sizeof(float));
        memcpy(ga, ps[p].g, ps[p].n * sizeof(float));
        size_t step = ps[p].n > 40 ? ps[p].n / 40 : 1;
        for (size_t i = 0; i < ps[p].n; i += step) {
            float save = ps[p].w[i], eps = 2e-3f;
            ps[p].w[i] = save + eps;
            float lp = loss_of(c, NULL);
            ps[p].w[i] = save - eps;
            float lm = loss_of(c, NULL);
            ps[p].w[i] = save;
            float num = (lp - lm) / (2 * eps);
            float err = fabsf(num - ga[i]) / fmaxf(2e-2f, fabsf(num) + fabsf(ga[i]));
            if (err > 0.05f) fail_msg("param %zu[%zu]: numeric %.6f vs analytic %.6f", p, i, num, ga[i]);
            (*checked)++;
        }
        free(ga);
    }
}

static void test_residual_net_gradients(void **state) {
    (void)state;
    ctx c;
    setup(&c, 1);
    int checked = 0;
    check_all_params(&c, &checked);
    fprintf(stderr, "residual net: %d parameter gradients checked, %.0f MACs/sample\n", checked, nn_net_macs(c.net));
    assert_true(checked > 100);
    teardown(&c);
}

/* Pooling and concatenation nodes and per-axis padding, gradients through
 * every branch; and the same net sliced after its first node still agrees. */
static void test_inception_net_gradients(void **state) {
    (void)state;
    ctx c;
    setup_net(&c, 5, inception_net);
    int checked = 0;
    check_all_params(&c, &checked);
    fprintf(stderr, "inception block: %d parameter gradients checked\n", checked);
    assert_true(checked > 100);
    /* Refusals: a concatenation of different map sizes, a pool window
     * larger than the padded input, a width padding not below the kernel. */
    nn_node n;
    memset(&n, 0, sizeof n);
    n.op = NN_OP_CONCAT, n.in = 8, n.in2 = 9;
    assert_int_equal(nn_net_add(c.net, &n), -1);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_AVGPOOL, n.in = 9, n.pool = (nn_pool){5, 1, 0, false};
    assert_int_equal(nn_net_add(c.net, &n), -1);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_CONV, n.in = 9, n.conv = (nn_conv){22, 2, 1, 3, 1, 0, 1, 0, 1, 3, 0};
    assert_int_equal(nn_net_add(c.net, &n), -1);
    /* Inference output equals a slice from node 1 fed node 1's output. */
    float *x = c.x;
    const float *y = nn_run_forward(c.run, c.net, B, x, false, NULL, 0);
    assert_non_null(y);
    float full[B * K];
    memcpy(full, y, sizeof full);
    nn_shape s1 = nn_net_shape(c.net, 1);
    float *h1 = malloc((size_t)B * nn_count(s1) * sizeof(float));
    memcpy(h1, nn_run_output(c.run, 1), (size_t)B * nn_count(s1) * sizeof(float));
    nn_net *tail = nn_net_slice(c.net, 1, 2, nn_net_count(c.net));
    assert_non_null(tail);
    nn_run *run = nn_run_new();
    const float *y2 = nn_run_forward(run, tail, B, h1, false, NULL, 0);
    assert_non_null(y2);
    for (int i = 0; i < B * K; i++) assert_float_equal(full[i], y2[i], 1e-5);
    nn_run_free(run);
    nn_net_free(tail);
    free(h1);
    teardown(&c);
}

/* input → conv3x3 → silu → pnorm → gap → dense, or with the pnorm after
 * the gap: the convolution's gradients pass back through the power
 * normalisation (negative and positive values, the norm coupling them all).
 * Over the whole map the power is 1 (L2 only): among 1,536 SiLU outputs some
 * lie within a finite-difference step of 0, where |x|^0.5 has no derivative;
 * after the pooling, 0.5 over 24 values away from 0. */
static nn_net *pnorm_net_at(bool after_gap) {
    nn_net *net = nn_net_new(C, H, H);
    assert_non_null(net);
    nn_node n;
    memset(&n, 0, sizeof n);
    n.op = NN_OP_CONV, n.in = NN_INPUT, n.conv = (nn_conv){C, 4, 3, 3, 1, 1, 1, 0, 0, 0, 0}, n.bias = true;
    assert_int_equal(nn_net_add(net, &n), 0);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_ACT, n.in = 0, n.act = NN_SILU;
    assert_int_equal(nn_net_add(net, &n), 1);
    memset(&n, 0, sizeof n);
    n.op = after_gap ? NN_OP_GAP : NN_OP_PNORM, n.in = 1, n.alpha = 1.0f;
    assert_int_equal(nn_net_add(net, &n), 2);
    memset(&n, 0, sizeof n);
    n.op = after_gap ? NN_OP_PNORM : NN_OP_GAP, n.in = 2, n.alpha = 0.5f;
    assert_int_equal(nn_net_add(net, &n), 3);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_DENSE, n.in = 3, n.units = K, n.bias = true;
    assert_int_equal(nn_net_add(net, &n), 4);
    return net;
}
static nn_net *pnorm_map_net(void) { return pnorm_net_at(false); }
static nn_net *pnorm_pooled_net(void) { return pnorm_net_at(true); }

static void test_pnorm(void **state) {
    (void)state;
    /* Exact values: (4, −1, 0, 9) → (2, −1, 0, 3) · √4/√14; a zero vector stays zero. */
    float x[8] = {4, -1, 0, 9, 0, 0, 0, 0}, y[8];
    nn_pnorm_forward(2, 4, 0.5f, x, y);
    float s = 2.0f / sqrtf(14.0f);
    assert_float_equal(y[0], 2 * s, 1e-6);
    assert_float_equal(y[1], -s, 1e-6);
    assert_float_equal(y[2], 0, 0);
    assert_float_equal(y[3], 3 * s, 1e-6);
    for (int i = 4; i < 8; i++) assert_float_equal(y[i], 0, 0);
    /* alpha 1 is plain L2 normalisation to norm √m. */
    nn_pnorm_forward(1, 4, 1.0f, x, y);
    double ss = 0;
    for (int i = 0; i < 4; i++) ss += (double)y[i] * y[i];
    assert_float_equal(ss, 4.0, 1e-5);
    assert_float_equal(y[3] / y[0], 9.0f / 4.0f, 1e-6);
    /* Gradients through it against finite differences. */
    ctx c;
    int checked = 0;
    setup_net(&c, 3, pnorm_map_net);
    check_all_params(&c, &checked);
    teardown(&c);
    setup_net(&c, 3, pnorm_pooled_net);
    check_all_params(&c, &checked);
    fprintf(stderr, "power normalisation: %d parameter gradients checked\n", checked);
    assert_true(checked > 100);
    /* Refused powers. */
    nn_node n;
    memset(&n, 0, sizeof n);
    n.op = NN_OP_PNORM, n.in = 1, n.alpha = 0;
    assert_int_equal(nn_net_add(c.net, &n), -1);
    n.alpha = 1.5f;
    assert_int_equal(nn_net_add(c.net, &n), -1);
    n.alpha = NAN;
    assert_int_equal(nn_net_add(c.net, &n), -1);
    teardown(&c);
}

static void test_frozen_boundary(void **state) {
    (void)state;
    ctx c;
    setup(&c, 2);
    nn_param all[32], some[32];
    size_t n_all = nn_net_params(c.net, all, 32);
    nn_net_set_frozen(c.net, 6); /* conv1x1, gap, dropout, dense stay trainable */
    size_t n_some = nn_net_params(c.net, some, 32);
    assert_int_equal(n_all, 9); /* conv w,b; bn γ,β; depthwise w,b; conv1x1 w; dense w,b */
    assert_int_equal(n_some, 3);
    /* Frozen nodes get no gradient; trainable ones still check out. */
    size_t n0;
    float *w0 = nn_net_tensor(c.net, 0, 0, &n0);
    float before = w0[0];
    int checked = 0;
    check_all_params(&c, &checked);
    assert_true(checked > 20);
    assert_true(w0[0] == before);
    /* Frozen batch norm runs on running statistics: its stats stay put. */
    size_t nm;
    float *rm = nn_net_tensor(c.net, 1, 2, &nm);
    float rm0 = rm[0];
    loss_of(&c, NULL);
    assert_true(rm[0] == rm0);
    teardown(&c);
}

static void test_refusals(void **state) {
    (void)state;
    nn_net *net = nn_net_new(3, 16, 16);
    nn_node n;
    memset(&n, 0, sizeof n);
    n.op = NN_OP_CONV, n.in = NN_INPUT, n.conv = (nn_conv){4, 8, 3, 3, 1, 1, 1, 0, 0, 0, 0}; /* wrong in_c */
    assert_int_equal(nn_net_add(net, &n), -1);
    n.conv.in_c = 3, n.conv.groups = 2; /* 3 channels don't split in 2 groups */
    assert_int_equal(nn_net_add(net, &n), -1);
    n.conv.groups = 1, n.in = 5; /* no such node */
    assert_int_equal(nn_net_add(net, &n), -1);
    n.in = NN_INPUT, n.conv.stride = 0;
    assert_int_equal(nn_net_add(net, &n), -1);
    n.conv.stride = 1;
    assert_int_equal(nn_net_add(net, &n), 0);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_ADD, n.in = 0, n.in2 = NN_INPUT; /* 8 vs 3 channels */
    assert_int_equal(nn_net_add(net, &n), -1);
    n.op = NN_OP_DROPOUT, n.p = 1.0f;
    assert_int_equal(nn_net_add(net, &n), -1);
    n.op = (nn_op)42;
    assert_int_equal(nn_net_add(net, &n), -1);
    assert_int_equal(nn_net_count(net), 1);
    nn_net_free(net);
    assert_null(nn_net_new(0, 1, 1));
}

/* Horizontal vs vertical stripes, learned through the net API with AdamW. */
static float train_stripes(uint64_t seed, float *acc, float **weights, size_t *nw) {
    enum { S = 8, N = 16 };
    nn_net *net = nn_net_new(1, S, S);
    nn_node n;
    memset(&n, 0, sizeof n);
    n.op = NN_OP_CONV, n.in = NN_INPUT, n.conv = (nn_conv){1, 4, 3, 3, 1, 1, 1, 0, 0, 0, 0}, n.bias = true;
    nn_net_add(net, &n);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_BN, n.in = 0, n.eps = 1e-5f, n.momentum = 0.1f;
    nn_net_add(net, &n);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_ACT, n.in = 1, n.act = NN_RELU;
    nn_net_add(net, &n);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_GAP, n.in = 2;
    nn_net_add(net, &n);
    memset(&n, 0, sizeof n);
    n.op = NN_OP_DENSE, n.in = 3, n.units = 2, n.bias = true;
    assert_int_equal(nn_net_add(net, &n), 4);
    nn_rng r;
    nn_rng_seed(&r, seed);
    nn_net_init(net, &r);
    nn_param ps[8];
    size_t np = nn_net_params(net, ps, 8);
    float *m[8], *v[8];
    for (size_t p = 0; p < np; p++) m[p] = calloc(ps[p].n, 4), v[p] = calloc(ps[p].n, 4);
    nn_adamw opt;
    nn_adamw_init(&opt, 0.03f, 1e-4f);
    nn_run *run = nn_run_new();
    float x[N * S * S], dl[N * 2], loss = 0;
    int32_t y[N];
    int right = 0, total = 0;
    for (int step = 0; step < 260; step++) {
        bool eval = step >= 240;
        for (int i = 0; i < N; i++) {
            y[i] = (int32_t)(nn_rng_next(&r) & 1);
            int ph = (int)(nn_rng_next(&r) % 3);
            for (int a = 0; a < S; a++)
                for (int b = 0; b < S; b++)
                    x[i * S * S + a * S + b] =
                        (((y[i] ? b : a) + ph) % 3 == 0 ? 1.0f : -0.5f) + 0.2f * nn_rng_normal(&r);
        }
        const float *lo = nn_run_forward(run, net, N, x, !eval, &r, 0);
        if (eval) {
            for (int i = 0; i < N; i++, total++) right += (lo[i * 2 + 1] > lo[i * 2]) == (y[i] == 1);
            continue;
        }
        loss = nn_softmax_ce(N, 2, lo, y, 0, NULL, dl, NULL);
        nn_net_zero_grad(net);
        assert_true(nn_run_backward(run, net, dl));
        opt.lr = nn_cosine_lr(0.03f, 0.001f, step, 10, 240);
        nn_adamw_tick(&opt);
        for (size_t p = 0; p < np; p++) nn_adamw_step(&opt, ps[p].n, ps[p].w, ps[p].g, m[p], v[p], ps[p].decay);
    }
    *acc = (float)right / (float)total;
    float *w = nn_net_tensor(net, 0, 0, nw);
    *weights = malloc(*nw * sizeof(float));
    memcpy(*weights, w, *nw * sizeof(float));
    for (size_t p = 0; p < np; p++) free(m[p]), free(v[p]);
    nn_run_free(run);
    nn_net_free(net);
    return loss;
}

static void test_net_training(void **state) {
    (void)state;
    float acc, acc2, *w1, *w2;
    size_t n1, n2;
    float loss = train_stripes(5, &acc, &w1, &n1);
    fprintf(stderr, "stripes via nn_net: loss %.4f, held-out accuracy %.3f\n", loss, acc);
    assert_true(acc >= 0.95f);
    train_stripes(5, &acc2, &w2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(w1, w2, n1 * sizeof(float));
    free(w1);
    free(w2);
}

/* A slice computes the same as the nodes it was cut from. */
static void test_slice(void **state) {
    (void)state;
    ctx c;
    setup(&c, 4);
    const float *full = nn_run_forward(c.run, c.net, B, c.x, false, NULL, 0);
    float expect[B * K];
    memcpy(expect, full, sizeof expect);
    nn_shape mid = nn_net_shape(c.net, 5);
    size_t mn = nn_count(mid) * B;
    float *feat = malloc(mn * sizeof(float));
    memcpy(feat, nn_run_output(c.run, 5), mn * sizeof(float));
    nn_net *tail = nn_net_slice(c.net, 5, 6, 10);
    assert_non_null(tail);
    assert_int_equal(nn_net_count(tail), 4);
    nn_run *r2 = nn_run_new();
    const float *y = nn_run_forward(r2, tail, B, feat, false, NULL, 0);
    assert_memory_equal(y, expect, sizeof expect);
    /* A range reading outside itself (the ADD reads node 2) cannot be cut. */
    assert_null(nn_net_slice(c.net, 4, 5, 10));
    assert_null(nn_net_slice(c.net, 5, 5, 10));
    nn_run_free(r2);
    nn_net_free(tail);
    free(feat);
    teardown(&c);
}

/* Inference fuses each convolution into the activation that is its only
 * reader: the outputs must equal the layer-by-layer computation, the fused
 * convolution keeps no output of its own, and a backward pass after an
 * inference forward still finds the pre-activation values it needs. */
static void test_fused_inference(void **state) {
    (void)state;
    nn_net *net = nn_net_new(C, 9, 11);
    assert_non_null(net);
    const nn_conv convs[4] = {{C, 4, 3, 3, 1, 1, 1, 0, 0, 0, 0},
                              {4, 4, 3, 3, 1, 1, 4, 0, 0, 0, 0},
                              {4, 5, 1, 1, 1, 0, 1, 0, 0, 0, 0},
                              {5, 3, 3, 3, 2, 0, 1, 1, 0, 0, 0}};
    const nn_act acts[4] = {NN_RELU6, NN_RELU, NN_SILU, NN_RELU6};
    for (int l = 0; l < 4; l++) {
        nn_node n;
        memset(&n, 0, sizeof n);
        n.op = NN_OP_CONV, n.in = l ? 2 * l - 1 : NN_INPUT, n.conv = convs[l], n.bias = l != 2;
        assert_int_equal(nn_net_add(net, &n), 2 * l);
        memset(&n, 0, sizeof n);
        n.op = NN_OP_ACT, n.in = 2 * l, n.act = acts[l];
        assert_int_equal(nn_net_add(net, &n), 2 * l + 1);
    }
    nn_rng rng;
    nn_rng_seed(&rng, 7);
    nn_net_init(net, &rng);
    for (int l = 0; l < 4; l++) { /* non-zero biases, so their path is tested */
        size_t nb = 0;
        float *b = nn_net_tensor(net, 2 * l, 1, &nb);
        for (size_t i = 0; b && i < nb; i++) b[i] = 0.3f * (float)((int)(i % 5) - 2);
    }
    const int n = 2;
    nn_shape in = nn_net_shape(net, NN_INPUT);
    in.n = n;
    float *x = malloc(nn_count(in) * sizeof *x);
    for (size_t i = 0; i < nn_count(in); i++) x[i] = (float)((i * 37) % 23) / 5.0f - 2.0f;
    nn_run *run = nn_run_new();
    const float *y = nn_run_forward(run, net, n, x, false, NULL, 0);
    assert_non_null(y);
    /* the reference, one layer at a time */
    const float *cur = x;
    nn_shape s = in;
    float *ref = NULL;
    for (int l = 0; l < 4; l++) {
        nn_shape o = nn_conv_out(&convs[l], s);
        float *ws = malloc((nn_conv_workspace(&convs[l], s) + 1) * sizeof *ws),
              *out = malloc(nn_count(o) * sizeof *out);
        size_t nw, nb;
        nn_conv_forward(&convs[l], s, cur, nn_net_tensor(net, 2 * l, 0, &nw), nn_net_tensor(net, 2 * l, 1, &nb), out,
                        ws);
        nn_act_forward(acts[l], nn_count(o), out, out);
        free(ws);
        free(ref);
        ref = out, cur = out, s = o;
    }
    double worst = 0;
    for (size_t i = 0; i < nn_count(s); i++) worst = fmax(worst, fabs(y[i] - ref[i]) / (1.0 + fabs(ref[i])));
    assert_true(worst < 1e-5);
    for (int l = 0; l < 4; l++) {
        assert_null(nn_run_output(run, 2 * l));
        assert_non_null(nn_run_output(run, 2 * l + 1));
    }
    /* backward after an inference forward: the convolutions' outputs come back */
    float *dout = calloc(nn_count(s), sizeof *dout);
    dout[0] = 1;
    nn_net_zero_grad(net);
    assert_true(nn_run_backward(run, net, dout));
    for (int l = 0; l < 4; l++) assert_non_null(nn_run_output(run, 2 * l));
    free(dout), free(ref), free(x);
    nn_run_free(run);
    nn_net_free(net);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_residual_net_gradients),
        cmocka_unit_test(test_inception_net_gradients),
        cmocka_unit_test(test_pnorm),
        cmocka_unit_test(test_frozen_boundary),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_slice),
        cmocka_unit_test(test_fused_inference),
        cmocka_unit_test(test_net_training),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
