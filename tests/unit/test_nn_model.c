/* Model files: a saved network loads back computing bit-identical outputs;
 * every kind of damage is refused with a message (bad magic, version,
 * checksum, header, layer, weight count, NaN, missing or different
 * backbone); a model built on a shared TFLite backbone stores only its own
 * layers. */
#define _GNU_SOURCE /* memmem */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto/crypto.h"
#include "nn/nn.h"

static char dir[256];

static int add(nn_net *net, nn_node n) {
    int k = nn_net_add(net, &n);
    assert_true(k >= 0);
    return k;
}

/* A small residual net with random weights and non-trivial BN statistics. */
static nn_net *small_net(uint64_t seed) {
    nn_net *net = nn_net_new(3, 12, 12);
    int a =
        add(net, (nn_node){.op = NN_OP_CONV, .in = NN_INPUT, .conv = {3, 6, 3, 3, 2, 0, 1, 1, 0, 0, 0}, .bias = true});
    int b = add(net, (nn_node){.op = NN_OP_BN, .in = a, .eps = 1e-3f, .momentum = 0.1f});
    int c = add(net, (nn_node){.op = NN_OP_ACT, .in = b, .act = NN_RELU6});
    int d = add(net, (nn_node){.op = NN_OP_CONV, .in = c, .conv = {6, 6, 3, 3, 1, 1, 6, 0, 0, 0, 0}});
    int e = add(net, (nn_node){.op = NN_OP_ADD, .in = d, .in2 = c});
    int f = add(net, (nn_node){.op = NN_OP_GAP, .in = e});
    int g = add(net, (nn_node){.op = NN_OP_DROPOUT, .in = f, .p = 0.2f});
    add(net, (nn_node){.op = NN_OP_DENSE, .in = g, .units = 4, .bias = true});
    nn_rng r;
    nn_rng_seed(&r, seed);
    for (int i = 0; i < nn_net_count(net); i++)
        for (int k = 0; k < 4; k++) {
            size_t n;
            float *t = nn_net_tensor(net, i, k, &n);
            for (size_t j = 0; t && j < n; j++) t[j] = k == 3 ? 0.5f + nn_rng_uniform(&r) : 0.5f * nn_rng_normal(&r);
        }
    nn_net_set_frozen(net, 3);
    return net;
}

static const char *META = "{\"classes\":[\"a\",\"b\",\"c\",\"d\"],\"triage\":[0,1,2,3],\"size\":12}";

static float *forward(nn_net *net, size_t *n_out) {
    nn_shape in = nn_net_shape(net, NN_INPUT);
    size_t n = nn_count(in) * 2;
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = sinf((float)i * 0.37f);
    nn_run *run = nn_run_new();
    const float *y = nn_run_forward(run, net, 2, x, false, NULL, 0);
    nn_shape o = nn_net_shape(net, nn_net_count(net) - 1);
    *n_out = nn_count(o) * 2;
    float *copy = malloc(*n_out * sizeof(float));
    memcpy(copy, y, *n_out * sizeof(float));
    nn_run_free(run);
    free(x);
    return copy;
}

static void path_of(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", dir, name); }

static void test_round_trip(void **state) {
    (void)state;
    nn_net *net = small_net(1);
    char p[512];
    path_of(p, sizeof p, "m.csm");
    core_error err = {0};
    assert_int_equal(nn_model_save(p, net, META, NULL, &err), CORE_OK);
    nn_net *back;
    char *meta;
    assert_int_equal(nn_model_load(p, NULL, &back, &meta, &err), CORE_OK);
    assert_int_equal(nn_net_count(back), nn_net_count(net));
    assert_int_equal(nn_net_frozen(back), 3);
    assert_non_null(strstr(meta, "\"triage\":[0,1,2,3]"));
    size_t n1, n2;
    float *y1 = forward(net, &n1), *y2 = forward(back, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(y1, y2, n1 * sizeof(float)); /* bit for bit */
    free(y1);
    free(y2);
    free(meta);
    nn_net_free(back);
    /* Metadata must name every output. */
    err = (core_error){0};
    assert_int_equal(nn_model_save(p, net, "{\"classes\":[\"a\"]}", NULL, &err), CORE_ERR_INVALID);
    assert_int_equal(nn_model_save(p, net, "not json", NULL, &err), CORE_ERR_INVALID);
    nn_net_free(net);
}

/* The pooling, concatenation and power-normalisation nodes and per-axis
 * padding survive a save and load (an Inception block on the small net's
 * first layers). */
static void test_round_trip_inception_ops(void **state) {
    (void)state;
    nn_net *net = nn_net_new(3, 12, 12);
    int a =
        add(net, (nn_node){.op = NN_OP_CONV, .in = NN_INPUT, .conv = {3, 4, 1, 7, 1, 0, 1, 0, 1, 3, 0}, .bias = true});
    int b = add(net, (nn_node){.op = NN_OP_MAXPOOL, .in = a, .pool = {3, 1, 1, false}});
    int c = add(net, (nn_node){.op = NN_OP_AVGPOOL, .in = a, .pool = {3, 1, 1, true}});
    int d = add(net, (nn_node){.op = NN_OP_CONCAT, .in = b, .in2 = c});
    int e = add(net, (nn_node){.op = NN_OP_MAXPOOL, .in = d, .pool = {3, 2, 0, false}});
    int f = add(net, (nn_node){.op = NN_OP_GAP, .in = e});
    int g = add(net, (nn_node){.op = NN_OP_PNORM, .in = f, .alpha = 0.5f});
    add(net, (nn_node){.op = NN_OP_DENSE, .in = g, .units = 4, .bias = true});
    nn_rng r;
    nn_rng_seed(&r, 9);
    nn_net_init(net, &r);
    char p[512];
    path_of(p, sizeof p, "inc.csm");
    core_error err = {0};
    assert_int_equal(nn_model_save(p, net, META, NULL, &err), CORE_OK);
    nn_net *back;
    char *meta;
    assert_int_equal(nn_model_load(p, NULL, &back, &meta, &err), CORE_OK);
    assert_int_equal(nn_net_count(back), nn_net_count(net));
    assert_int_equal(nn_net_node(back, 0)->conv.axis_pad, 1);
    assert_int_equal(nn_net_node(back, 0)->conv.pad_w, 3);
    assert_true(nn_net_node(back, 2)->pool.exclude_pad);
    assert_int_equal(nn_net_node(back, 3)->in2, c);
    assert_int_equal(nn_net_node(back, g)->op, NN_OP_PNORM);
    assert_true(nn_net_node(back, g)->alpha == 0.5f);
    size_t n1, n2;
    float *y1 = forward(net, &n1), *y2 = forward(back, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(y1, y2, n1 * sizeof(float));
    free(y1);
    free(y2);
    free(meta);
    nn_net_free(back);
    nn_net_free(net);
}

/* Re-seal a modified file with a valid checksum, so the checks behind the
 * checksum are reached. */
static void reseal(uint8_t *b, size_t n) { cs_crypto_sha256(b + n - 32, b, n - 32); }

static core_status parse(const uint8_t *b, size_t n, core_error *err) {
    nn_net *net;
    char *meta;
    core_status rc = nn_model_parse(b, n, dir, &net, &meta, err);
    if (rc == CORE_OK) {
        nn_net_free(net);
        free(meta);
    } else {
        assert_null(net);
        assert_null(meta);
        assert_true(strlen(err->message) > 10);
    }
    return rc;
}

static void replace(uint8_t **b, size_t *n, const char *from, const char *to) {
    char *at = memmem(*b, *n, from, strlen(from));
    assert_non_null(at);
    size_t off = (size_t)((uint8_t *)at - *b), fl = strlen(from), tl = strlen(to);
    assert_int_equal(fl, tl); /* same length keeps the header length valid */
    memcpy(*b + off, to, tl);
}

static void test_damage_refused(void **state) {
    (void)state;
    nn_net *net = small_net(2);
    char p[512];
    path_of(p, sizeof p, "d.csm");
    assert_int_equal(nn_model_save(p, net, META, NULL, NULL), CORE_OK);
    nn_net_free(net);
    char *raw;
    size_t n;
    assert_int_equal(core_read_file(p, &raw, &n, NULL), CORE_OK);
    uint8_t *b = (uint8_t *)raw, *c = malloc(n);
    core_error err = {0};
    assert_int_equal(parse(b, n, &err), CORE_OK);
    /* Every byte flipped: refused (the checksum covers all of it). */
    for (size_t i = 0; i < n; i++) {
        memcpy(c, b, n);
        c[i] ^= 0x01;
        err = (core_error){0};
        assert_int_not_equal(parse(c, n, &err), CORE_OK);
    }
    /* Every truncation: refused. */
    for (size_t cut = 0; cut < n; cut += 7) assert_int_not_equal(parse(b, cut, &err), CORE_OK);
    /* A newer format version says so. */
    memcpy(c, b, n);
    c[8] = 2;
    reseal(c, n);
    assert_int_equal(parse(c, n, &err), CORE_ERR_VERSION);
    assert_non_null(strstr(err.message, "version 2"));
    /* Behind a valid checksum: a layer that no longer fits its input... */
    memcpy(c, b, n);
    replace(&c, &n, "\"out_c\":6", "\"out_c\":7");
    reseal(c, n);
    assert_int_equal(parse(c, n, &err), CORE_ERR_INVALID);
    /* ...an unknown operator... */
    memcpy(c, b, n);
    replace(&c, &n, "\"op\":\"gap\"", "\"op\":\"gop\"");
    reseal(c, n);
    assert_int_equal(parse(c, n, &err), CORE_ERR_INVALID);
    /* ...a class list that no longer matches the outputs... */
    memcpy(c, b, n);
    replace(&c, &n, "\"classes\"", "\"klasses\"");
    reseal(c, n);
    assert_int_equal(parse(c, n, &err), CORE_ERR_INVALID);
    assert_non_null(strstr(err.message, "class"));
    /* ...a NaN among the weights... */
    memcpy(c, b, n);
    float nan = NAN;
    memcpy(c + n - 32 - 4, &nan, 4);
    reseal(c, n);
    assert_int_equal(parse(c, n, &err), CORE_ERR_INVALID);
    assert_non_null(strstr(err.message, "NaN"));
    /* ...and weights of the wrong length. */
    uint8_t *longer = malloc(n + 4);
    memcpy(longer, b, n - 32);
    memset(longer + n - 32, 0, 4);
    reseal(longer, n + 4);
    assert_int_equal(parse(longer, n + 4, &err), CORE_ERR_INVALID);
    free(longer);
    free(c);
    free(raw);
    /* A missing file is its own error. */
    assert_int_equal(nn_model_load("/nonexistent/m.csm", NULL, &net, &raw, &err), CORE_ERR_NOT_FOUND);
}

/* A head trained on a shared backbone stores only the head. */
static void test_backbone_reference(void **state) {
    (void)state;
    const char *file = "mobilenet_v1_0.25_128_quant.tflite";
    char src[600];
    snprintf(src, sizeof src, "%s/models/%s", TEST_SHARED_DIR, file);
    char *bytes;
    size_t len;
    if (core_read_file(src, &bytes, &len, NULL) != CORE_OK) {
        fprintf(stderr, "SKIP: %s not found (../shared is absent)\n", src);
        skip();
    }
    nn_net *net;
    nn_tflite_info info;
    core_error err = {0};
    assert_int_equal(nn_tflite_read((uint8_t *)bytes, len, &net, &info, &err), CORE_OK);
    nn_backbone bb = {.file = file, .nodes = nn_net_count(net)};
    cs_crypto_sha256(bb.sha256, bytes, len);
    free(bytes);
    /* Head on the pooled features, beside the ImageNet classifier. */
    int d = add(net, (nn_node){.op = NN_OP_DENSE, .in = info.features, .units = 4, .bias = true});
    nn_rng r;
    nn_rng_seed(&r, 3);
    nn_net_set_frozen(net, d);
    nn_net_init(net, &r);
    char p[512];
    path_of(p, sizeof p, "head.csm");
    assert_int_equal(nn_model_save(p, net, META, &bb, &err), CORE_OK);
    char *raw;
    size_t n;
    assert_int_equal(core_read_file(p, &raw, &n, NULL), CORE_OK);
    fprintf(stderr, "head on %s: model file %zu bytes (backbone %d nodes not stored)\n", file, n, bb.nodes);
    assert_true(n < 20000);
    char models[600];
    snprintf(models, sizeof models, "%s/models", TEST_SHARED_DIR);
    nn_net *back;
    char *meta;
    assert_int_equal(nn_model_parse((uint8_t *)raw, n, models, &back, &meta, &err), CORE_OK);
    size_t n1, n2;
    float *y1 = forward(net, &n1), *y2 = forward(back, &n2);
    assert_memory_equal(y1, y2, n1 * sizeof(float));
    free(y1);
    free(y2);
    free(meta);
    nn_net_free(back);
    /* No directory, wrong directory, or a different file under the name: refused. */
    assert_int_equal(nn_model_parse((uint8_t *)raw, n, NULL, &back, &meta, &err), CORE_ERR_NOT_FOUND);
    assert_int_equal(nn_model_parse((uint8_t *)raw, n, dir, &back, &meta, &err), CORE_ERR_NOT_FOUND);
    bb.sha256[0] ^= 1;
    assert_int_equal(nn_model_save(p, net, META, &bb, &err), CORE_OK);
    assert_int_equal(nn_model_load(p, models, &back, &meta, &err), CORE_ERR_INVALID);
    assert_non_null(strstr(err.message, "SHA-256"));
    free(raw);
    nn_net_free(net);
}

/* The file's integers and floats are little-endian (the format says so):
 * the version and header length as bytes, and the first weight as the
 * bytes of its binary32 pattern, least significant first. On a big-endian
 * host the old memcpy of host integers and floats wrote them reversed. */
static void test_fields_little_endian(void **state) {
    (void)state;
    nn_net *net = small_net(7);
    char p[512];
    path_of(p, sizeof p, "le.csm");
    core_error err = {0};
    assert_int_equal(nn_model_save(p, net, META, NULL, &err), CORE_OK);
    char *raw;
    size_t n;
    assert_int_equal(core_read_file(p, &raw, &n, &err), CORE_OK);
    const uint8_t *b = (const uint8_t *)raw;
    assert_memory_equal(b + 8, ((uint8_t[]){1, 0, 0, 0}), 4);
    size_t hl = (size_t)b[12] | (size_t)b[13] << 8 | (size_t)b[14] << 16 | (size_t)b[15] << 24;
    assert_true(16 + hl < n);
    assert_int_equal(b[16], '{');
    assert_int_equal(b[16 + hl - 1], '}');
    size_t at = 16 + hl + (4 - (16 + hl) % 4) % 4, cnt;
    const float *w = nn_net_tensor(net, 0, 0, &cnt);
    assert_non_null(w);
    uint32_t bits;
    memcpy(&bits, &w[0], 4);
    uint8_t want[4] = {(uint8_t)bits, (uint8_t)(bits >> 8), (uint8_t)(bits >> 16), (uint8_t)(bits >> 24)};
    assert_memory_equal(b + at, want, 4);
    /* and a file whose version is written most significant byte first is
     * another version, not version 1 */
    uint8_t *copy = malloc(n);
    memcpy(copy, b, n);
    memcpy(copy + 8, ((uint8_t[]){0, 0, 0, 1}), 4);
    reseal(copy, n);
    nn_net *back = NULL;
    char *meta = NULL;
    assert_int_equal(nn_model_parse(copy, n, NULL, &back, &meta, &err), CORE_ERR_VERSION);
    assert_non_null(strstr(err.message, "16777216"));
    free(copy);
    free(raw);
    nn_net_free(net);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/caresync-nn-model-%d", (int)getpid());
    assert_int_equal(core_mkdirs(dir, NULL), CORE_OK);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),           cmocka_unit_test(test_round_trip_inception_ops),
        cmocka_unit_test(test_damage_refused),       cmocka_unit_test(test_backbone_reference),
        cmocka_unit_test(test_fields_little_endian),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) rc = rc ? rc : 1;
    return rc;
}
