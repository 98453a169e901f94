/* bench/vision: figures for the screening path, printed as a table.
 *   vision_bench [shared_dir]
 * - SGEMM peak of the BLAS (the ceiling for our convolutions)
 * - MobileNetV2 (from ../shared/models) inference: images/s at batch 1 on
 *   1 and 2 threads, and at batch 16; GFLOP/s reached (2 × MACs / time)
 * Comparisons are ratios inside one run: the machines are shared and noisy. */
#include <cblas.h>
#include <math.h>
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
    printf("%-40s %10.1f img/s  %6.1f GFLOP/s (%.0f%% of SGEMM)\n", "inference batch 1, 1 thread", i11, g, 100 * g / p1);
    double i12 = infer(net, 1, 2, &g);
    printf("%-40s %10.1f img/s  %6.1f GFLOP/s (%.0f%% of SGEMM)\n", "inference batch 1, 2 threads", i12, g, 100 * g / p2);
    double i16 = infer(net, 16, 2, &g);
    printf("%-40s %10.1f img/s  %6.1f GFLOP/s (%.0f%% of SGEMM)\n", "inference batch 16, 2 threads", i16, g, 100 * g / p2);
    nn_net_free(net);
    return 0;
}
