/* bench/vision: figures for the screening path, printed as a table.
 *   vision_bench [shared_dir] [model_file]
 * - SGEMM peak of the BLAS (the ceiling for our convolutions)
 * - MobileNetV2 (from ../shared/models) inference: images/s at batch 1 on
 *   1 and 2 threads, and at batch 16; GFLOP/s reached (2 × MACs / time)
 * - training: forward + backward + SGD step through the whole network
 *   (every layer trainable), batch 16, images/s
 * - end to end (decode → centre crop → model → result) for a 12-megapixel
 *   phone JPEG and a 224 px JPEG, with the bundled screening model
 * bench/vision/run.sh runs this and the same network in PyTorch in one go.
 * Comparisons are ratios inside one run: the machines are shared and noisy. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/nn.h"
#include "screening/screening.h"
#include "vision/vision.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double sgemm_gflops(int threads) {
    nn_set_threads(threads);
    int n = 1024;
    float *a = malloc((size_t)n * n * 4), *b = malloc((size_t)n * n * 4), *c = malloc((size_t)n * n * 4);
    for (size_t i = 0; i < (size_t)n * n; i++) a[i] = (float)(i % 7) * 0.1f, b[i] = (float)(i % 5) * 0.1f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
    int reps = 0;
    double t0 = now(), t;
    do {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        reps++;
    } while ((t = now() - t0) < 1.0);
    free(a), free(b), free(c);
    return 2.0 * n * n * n * reps / t / 1e9;
}

static double infer(nn_net *net, int batch, int threads, double *gflops) {
    nn_set_threads(threads);
    nn_shape in = nn_net_shape(net, NN_INPUT);
    size_t n = nn_count(in) * (size_t)batch;
    float *x = malloc(n * 4);
    for (size_t i = 0; i < n; i++) x[i] = sinf((float)i) * 0.9f;
    nn_run *run = nn_run_new();
    nn_run_forward(run, net, batch, x, false, NULL, 0); /* warm-up: buffers */
    int reps = 0;
    double t0 = now(), t;
    do {
        nn_run_forward(run, net, batch, x, false, NULL, 0);
        reps++;
    } while ((t = now() - t0) < 2.0);
    nn_run_free(run);
    free(x);
    double ips = batch * reps / t;
    *gflops = 2.0 * nn_net_macs(net) * ips / 1e9;
    return ips;
}

static double train_rate(nn_net *net, int batch, int threads) {
    nn_set_threads(threads);
    nn_net_set_frozen(net, 0);
    nn_shape in = nn_net_shape(net, NN_INPUT);
    int k = nn_net_shape(net, nn_net_count(net) - 1).c;
    size_t n = nn_count(in) * (size_t)batch;
    float *x = malloc(n * 4), *dl = malloc((size_t)batch * k * 4);
    int32_t *y = malloc((size_t)batch * 4);
    for (size_t i = 0; i < n; i++) x[i] = sinf((float)i) * 0.9f;
    for (int i = 0; i < batch; i++) y[i] = i * 37 % k;
    nn_param ps[256];
    size_t np = nn_net_params(net, ps, 256);
    float **vel = calloc(np, sizeof *vel);
    for (size_t p = 0; p < np; p++) vel[p] = calloc(ps[p].n, 4);
    nn_sgd opt = {0.001f, 0.9f, 0.0f};
    nn_run *run = nn_run_new();
    int reps = 0;
    double t0 = 0, t = 0;
    for (int it = 0; it < 4 || t < 3.0; it++) {
        if (it == 1) t0 = now(); /* the first step sizes the buffers */
        const float *lo = nn_run_forward(run, net, batch, x, true, NULL, 0);
        nn_softmax_ce(batch, k, lo, y, 0, NULL, dl, NULL);
        nn_net_zero_grad(net);
        nn_run_backward(run, net, dl);
        for (size_t p = 0; p < np; p++) nn_sgd_step(&opt, ps[p].n, ps[p].w, ps[p].g, vel[p], ps[p].decay);
        if (it >= 1) reps++, t = now() - t0;
    }
    for (size_t p = 0; p < np; p++) free(vel[p]);
    free(vel), free(x), free(dl), free(y);
    nn_run_free(run);
    return batch * reps / t;
}

/* A synthetic photo: skin-coloured with texture, so quality passes. */
static uint8_t *synthetic_jpeg(int w, int h, size_t *len) {
    vision_image img = {w, h, malloc((size_t)w * h * 3)};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = img.rgb + ((size_t)y * w + x) * 3;
            int t = ((x / 7) ^ (y / 5)) & 15;
            p[0] = (uint8_t)(190 + t), p[1] = (uint8_t)(140 + t), p[2] = (uint8_t)(120 + t / 2);
        }
    uint8_t *out = NULL;
    vision_encode_jpeg(&img, 90, &out, len, NULL);
    vision_image_free(&img);
    return out;
}

static double end_to_end(screening_model *m, const uint8_t *jpeg, size_t len, int threads) {
    nn_set_threads(threads);
    vision_limits lim;
    vision_limits_defaults(&lim);
    lim.target_short_side = 224;
    int reps = 0;
    double t0 = now(), t;
    do {
        vision_image img;
        screening_result r;
        if (vision_decode(jpeg, len, &lim, &img, NULL, NULL, NULL) != CORE_OK) return -1;
        screening_assess_rgb(m, img.rgb, img.width, img.height, &r, NULL);
        vision_image_free(&img);
        reps++;
    } while ((t = now() - t0) < 2.0);
    return t / reps * 1000.0;
}

int main(int argc, char **argv) {
    const char *shared = argc > 1 ? argv[1] : "../shared";
    char path[1024];
    snprintf(path, sizeof path, "%s/models/mobilenet_v2_1.0_224_quant.tflite", shared);
    char *bytes;
    size_t len;
    if (core_read_file(path, &bytes, &len, NULL) != CORE_OK) {
        fprintf(stderr, "vision_bench: %s not found (pass the shared directory)\n", path);
        return 2;
    }
    nn_net *net;
    nn_tflite_info info;
    core_error err = {0};
    if (nn_tflite_read((uint8_t *)bytes, len, &net, &info, &err) != CORE_OK) {
        fprintf(stderr, "vision_bench: %s\n", err.message);
        return 1;
    }
    free(bytes);
    printf("MobileNetV2 1.0 224: %.0f M multiply-adds per image\n", nn_net_macs(net) / 1e6);
    double p1 = sgemm_gflops(1), p2 = sgemm_gflops(2), g;
    printf("%-40s %10.1f GFLOP/s\n", "OpenBLAS SGEMM 1024^3, 1 thread", p1);
    printf("%-40s %10.1f GFLOP/s\n", "OpenBLAS SGEMM 1024^3, 2 threads", p2);
    double i11 = infer(net, 1, 1, &g);
    printf("%-40s %10.1f img/s  %6.1f GFLOP/s (%.0f%% of SGEMM)\n", "inference batch 1, 1 thread", i11, g,
           100 * g / p1);
    double i12 = infer(net, 1, 2, &g);
    printf("%-40s %10.1f img/s  %6.1f GFLOP/s (%.0f%% of SGEMM)\n", "inference batch 1, 2 threads", i12, g,
           100 * g / p2);
    double i16 = infer(net, 16, 2, &g);
    printf("%-40s %10.1f img/s  %6.1f GFLOP/s (%.0f%% of SGEMM)\n", "inference batch 16, 2 threads", i16, g,
           100 * g / p2);
    double tr1 = train_rate(net, 16, 1), tr2 = train_rate(net, 16, 2);
    printf("%-40s %10.1f img/s\n", "training batch 16, 1 thread", tr1);
    printf("%-40s %10.1f img/s\n", "training batch 16, 2 threads", tr2);
    nn_net_free(net);
    const char *model = argc > 2 ? argv[2] : "models/screening.csm";
    char models[1024];
    snprintf(models, sizeof models, "%s/models", shared);
    screening_model *m;
    if (screening_model_load(model, models, &m, &err) != CORE_OK) {
        fprintf(stderr, "vision_bench: no end-to-end figures: %s\n", err.message);
        return 0;
    }
    size_t big_len, small_len;
    uint8_t *big = synthetic_jpeg(4000, 3000, &big_len), *small = synthetic_jpeg(224, 224, &small_len);
    printf("%-40s %10.1f ms (%.1f MB file)\n", "end to end, 12 MP JPEG, 2 threads", end_to_end(m, big, big_len, 2),
           big_len / 1e6);
    printf("%-40s %10.1f ms\n", "end to end, 224 px JPEG, 2 threads", end_to_end(m, small, small_len, 2));
    printf("%-40s %10.1f ms\n", "end to end, 224 px JPEG, 1 thread", end_to_end(m, small, small_len, 1));
    free(big);
    free(small);
    screening_model_free(m);
    return 0;
}
