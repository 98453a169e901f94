/* TensorFlow Lite import, checked against what the published models are
 * known to answer: each pretrained MobileNet in ../shared/models must rank
 * a cat class first on the cat.bmp that ships with them (skipped with a
 * message when ../shared is absent). Also: malformed files are refused. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"
#include "vision/vision.h"

/* cat.bmp is a plain 24-bit BMP; vision refuses BMP uploads on purpose, so
 * the test reads it itself (bottom-up BGR rows padded to 4 bytes). */
static bool read_bmp(const char *path, vision_image *img) {
    char *d;
    size_t n;
    if (core_read_file(path, &d, &n, NULL) != CORE_OK) return false;
    const uint8_t *b = (const uint8_t *)d;
    assert_true(n > 54 && b[0] == 'B' && b[1] == 'M');
    uint32_t off = b[10] | b[11] << 8 | b[12] << 16 | (uint32_t)b[13] << 24;
    int32_t w = (int32_t)(b[18] | b[19] << 8 | b[20] << 16 | (uint32_t)b[21] << 24);
    int32_t h = (int32_t)(b[22] | b[23] << 8 | b[24] << 16 | (uint32_t)b[25] << 24);
    assert_int_equal(b[28], 24);
    assert_true(w > 0 && h > 0);
    size_t stride = ((size_t)w * 3 + 3) & ~(size_t)3;
    assert_true(off + stride * (size_t)h <= n);
    img->width = w, img->height = h;
    img->rgb = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const uint8_t *p = b + off + (size_t)(h - 1 - y) * stride + (size_t)x * 3;
            uint8_t *q = img->rgb + ((size_t)y * w + x) * 3;
            q[0] = p[2], q[1] = p[1], q[2] = p[0];
        }
    free(d);
    return true;
}

static char labels[1001][160]; /* the longest line is 121 bytes */

static void load_labels(void) {
    FILE *f = fopen(TEST_SHARED_DIR "/models/imagenet_labels.txt", "r");
    assert_non_null(f);
    for (int i = 0; i < 1001 && fgets(labels[i], sizeof labels[i], f); i++) labels[i][strcspn(labels[i], "\r\n")] = 0;
    fclose(f);
}

/* Run one model on cat.bmp; returns the top-1 probability and its label. */
static float classify_cat(const char *file, const char **top, int *ops) {
    char path[600];
    snprintf(path, sizeof path, "%s/models/%s", TEST_SHARED_DIR, file);
    char *bytes;
    size_t len;
    assert_int_equal(core_read_file(path, &bytes, &len, NULL), CORE_OK);
    nn_net *net;
    nn_tflite_info info;
    core_error err = {0};
    if (nn_tflite_read((uint8_t *)bytes, len, &net, &info, &err) != CORE_OK) fail_msg("%s: %s", file, err.message);
    free(bytes);
    *ops = nn_net_count(net);
    vision_image cat, small;
    assert_true(read_bmp(TEST_SHARED_DIR "/models/cat.bmp", &cat));
    assert_int_equal(vision_resize(&cat, info.width, info.height, &small, NULL), CORE_OK);
    size_t hw = (size_t)info.width * info.height;
    float *x = malloc(3 * hw * sizeof(float));
    for (size_t i = 0; i < hw; i++)
        for (int c = 0; c < 3; c++) x[c * hw + i] = info.in_scale * ((float)small.rgb[i * 3 + c] - info.in_zero);
    nn_run *run = nn_run_new();
    const float *logits = nn_run_forward(run, net, 1, x, false, NULL, 0);
    assert_non_null(logits);
    nn_shape o = nn_net_shape(net, info.output);
    assert_int_equal(o.c, 1001);
    float p[1001];
    nn_softmax(1, 1001, logits, p);
    int best = 0;
    for (int i = 1; i < 1001; i++)
        if (p[i] > p[best]) best = i;
    *top = labels[best];
    nn_run_free(run);
    nn_net_free(net);
    free(x);
    vision_image_free(&cat);
    vision_image_free(&small);
    return p[best];
}

static void test_pretrained_models_see_a_cat(void **state) {
    (void)state;
    FILE *probe = fopen(TEST_SHARED_DIR "/models/cat.bmp", "rb");
    if (!probe) {
        fprintf(stderr, "SKIP: %s/models not found (../shared is absent)\n", TEST_SHARED_DIR);
        skip();
    }
    fclose(probe);
    load_labels();
    static const struct {
        const char *file;
        float min_p;
    } models[] = {
        /* uint8 per-tensor (TF1), float replay: Egyptian cat ≈ 0.78 */
        {"mobilenet_v2_1.0_224_quant.tflite", 0.5f},
        /* int8 per-channel (TF2 post-training), QUANTIZE and MEAN ops */
        {"tf2_mobilenet_v2_1.0_224_ptq.tflite", 0.4f},
        /* a small v1 at 128 px: right, but not confident */
        {"mobilenet_v1_0.25_128_quant.tflite", 0.05f},
    };
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        const char *top;
        int ops;
        float p = classify_cat(models[m].file, &top, &ops);
        fprintf(stderr, "%s: %d nodes, top-1 \"%s\" %.3f\n", models[m].file, ops, top, p);
        assert_non_null(strstr(top, "cat"));
        assert_true(p >= models[m].min_p);
    }
}

static void test_malformed_files_refused(void **state) {
    (void)state;
    nn_net *net = (nn_net *)1;
    nn_tflite_info info;
    core_error err = {0};
    uint8_t junk[64] = {0};
    assert_int_equal(nn_tflite_read(junk, sizeof junk, &net, &info, &err), CORE_ERR_INVALID);
    assert_null(net);
    assert_non_null(strstr(err.message, "TensorFlow Lite"));
    memcpy(junk + 4, "TFL3", 4);
    junk[0] = 200; /* root table outside the file */
    assert_int_equal(nn_tflite_read(junk, sizeof junk, &net, &info, &err), CORE_ERR_INVALID);
    /* Every truncation of a real model is refused or still well-formed; never a crash. */
    char *bytes;
    size_t len;
    if (core_read_file(TEST_SHARED_DIR "/models/mobilenet_v1_0.25_128_quant.tflite", &bytes, &len, NULL) != CORE_OK)
        return;
    int refused = 0;
    for (size_t cut = 0; cut < len; cut += len / 37 + 1) {
        nn_net *n2;
        if (nn_tflite_read((uint8_t *)bytes, cut, &n2, &info, NULL) == CORE_OK)
            nn_net_free(n2);
        else
            refused++;
    }
    assert_true(refused >= 30);
    /* Flipped bytes across the file: refused or a usable net, never a crash. */
    for (size_t at = 0; at < len; at += len / 53 + 1) {
        bytes[at] ^= 0x5a;
        nn_net *n2;
        if (nn_tflite_read((uint8_t *)bytes, len, &n2, &info, NULL) == CORE_OK) nn_net_free(n2);
        bytes[at] ^= 0x5a;
    }
    free(bytes);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pretrained_models_see_a_cat),
        cmocka_unit_test(test_malformed_files_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
