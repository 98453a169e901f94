/* bench/tfjs: nsfwjs's TF.js backbones in CareSync's engine, one photo at a
 * time on ONE thread (the budget: ≤ 150 ms per photo on one core).
 *   tfjs_bench [models_dir]     (default node_modules/nsfwjs/dist/models)
 * Per model: load time, ms per image to the pooled features (what CareSync
 * uses) and to the logits, GFLOP/s reached (2 × MACs / time), and the time
 * per node kind, so a slow layer type shows itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/nn.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Median-free but warm: one run to size the buffers, then as many as fit
 * in `seconds`; returns ms per image. */
static double per_image(nn_net *net, nn_run *run, const float *x, int upto, double seconds) {
    nn_run_forward(run, net, 1, x, false, NULL, upto);
    int reps = 0;
    double t0 = now(), t;
    do {
        nn_run_forward(run, net, 1, x, false, NULL, upto);
        reps++;
    } while ((t = now() - t0) < seconds);
    return 1e3 * t / reps;
}

static const char *const op_name[] = {"conv",  "bn",      "act",     "add",     "gap",
                                      "dense", "dropout", "maxpool", "avgpool", "concat"};

/* Time per node kind: forward to node i minus forward to node i − 1 would
 * be noisy; instead slice each node into a one-node net and time it alone
 * (convolutions fused with their activation are timed without it). */
static void breakdown(nn_net *net, int upto) {
    double t_op[10] = {0};
    double conv_k[4] = {0}, macs_k[4] = {0}; /* 1×1, 3×3, 1×n / n×1, other */
    nn_run *run = nn_run_new();
    for (int i = 0; i < upto; i++) {
        const nn_node *d = nn_net_node(net, i);
        if (d->op == NN_OP_ADD || d->op == NN_OP_CONCAT) continue; /* two inputs: cheap copies */
        nn_net *one = nn_net_slice(net, d->in, i, i + 1);
        if (!one) continue;
        nn_shape in = nn_net_shape(one, NN_INPUT);
        float *x = calloc(nn_count(in), sizeof(float));
        for (size_t k = 0; k < nn_count(in); k++) x[k] = (float)(k % 13) * 0.05f;
        double ms = per_image(one, run, x, 0, 0.02);
        t_op[d->op] += ms;
        if (d->op == NN_OP_CONV) {
            const nn_conv *c = &d->conv;
            int kind = c->kh == 1 && c->kw == 1 ? 0 : c->kh == 3 && c->kw == 3 ? 1 : c->kh == 1 || c->kw == 1 ? 2 : 3;
            conv_k[kind] += ms;
            macs_k[kind] += nn_net_macs(one);
            if (getenv("TFJS_BENCH_LAYERS"))
                printf("    conv %dx%d s%d %3dx%3dx%4d -> %4d: %6.2f ms %5.1f GFLOP/s\n", c->kh, c->kw, c->stride, in.h,
                       in.w, in.c, c->out_c, ms, 2 * nn_net_macs(one) / ms / 1e6);
        }
        free(x);
        nn_net_free(one);
    }
    nn_run_free(run);
    printf("  per node kind (alone, ms):");
    for (int k = 0; k < 10; k++)
        if (t_op[k] > 0.05) printf(" %s %.1f", op_name[k], t_op[k]);
    printf("\n  convolutions: 1x1 %.1f ms (%.0f GFLOP/s), 3x3 %.1f ms (%.0f), 1xn/nx1 %.1f ms (%.0f), other %.1f ms "
           "(%.0f)\n",
           conv_k[0], 2 * macs_k[0] / conv_k[0] / 1e6, conv_k[1], 2 * macs_k[1] / conv_k[1] / 1e6, conv_k[2],
           2 * macs_k[2] / conv_k[2] / 1e6, conv_k[3], 2 * macs_k[3] / conv_k[3] / 1e6);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "node_modules/nsfwjs/dist/models";
    static const char *const models[] = {"inception_v3", "mobilenet_v2_mid", "mobilenet_v2"};
    static const char *const labels[] = {"InceptionV3 299", "MobileNetV2 1.4 224", "MobileNetV2 1.0 224"};
    nn_set_threads(1);
    printf("one thread (nn_set_threads(1)), batch 1; budget 150 ms per photo\n");
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s/model.min.js", dir, models[m]);
        nn_net *net;
        nn_tfjs_info info;
        core_error err = {0};
        double t0 = now();
        if (nn_tfjs_read(path, &net, &info, &err) != CORE_OK) {
            printf("%-22s cannot load: %s\n", labels[m], err.message);
            continue;
        }
        double load = now() - t0;
        nn_shape in = nn_net_shape(net, NN_INPUT);
        float *x = malloc(nn_count(in) * sizeof(float));
        for (size_t i = 0; i < nn_count(in); i++) x[i] = info.in_scale * ((float)(i * 7919 % 256) - info.in_zero);
        nn_run *run = nn_run_new();
        double feat = per_image(net, run, x, info.features + 1, 3.0), all = per_image(net, run, x, 0, 1.0);
        double gmacs = nn_net_macs(net) / 1e9;
        printf("%-22s %3d nodes, load %.2f s, %.2f GMAC: features (%d-d, node %d) %6.1f ms/image, logits (node %d) "
               "%6.1f ms/image, %.0f GFLOP/s %s\n",
               labels[m], nn_net_count(net), load, gmacs, nn_net_shape(net, info.features).c, info.features, feat,
               info.output, all, 2 * gmacs / (all / 1e3), feat <= 150 ? "(within budget)" : "(OVER BUDGET)");
        if (getenv("TFJS_BENCH_BREAKDOWN")) breakdown(net, info.features + 1);
        nn_run_free(run);
        free(x);
        nn_net_free(net);
    }
    return 0;
}
