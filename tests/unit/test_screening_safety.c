/* screening safety: the triage rule (risk before top class), the fitting of
 * its thresholds, the distance from the training photos that refuses what
 * the model does not know, and skin-tone estimation — on fixed inputs; then
 * the bundled model on real photos: a photo that is not skin is refused, a
 * skin photo is not, and no malignant test lesion of PAD-UFES is told
 * self-care (skipped with a message when ../shared or the model is absent). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "screening/internal.h"
#include "vision/vision.h"

static int cond(const char *code) {
    int i = screening_condition_index(code);
    if (i < 0) fail_msg("no condition %s", code);
    return i;
}

/* probabilities with p at a, q at b, the rest spread evenly */
static void probs2(float *p, int a, float pa, int b, float pb) {
    int nc = screening_condition_count();
    float rest = (1 - pa - pb) / (float)(nc - 2);
    for (int c = 0; c < nc; c++) p[c] = rest;
    p[a] = pa, p[b] = pb;
}

static void test_triage_rule(void **state) {
    (void)state;
    float p[32];
    screening_why why;
    const screening_risk risk = {.melanoma_above = 0.10f, .cancer_above = 0.20f, .benign_sure = 0.85f};
    /* A mole the model is sure of, no risk: a pharmacist or GP (a photo
     * never clears a spot for self-care). */
    probs2(p, cond("benign_mole"), 0.95f, cond("melanoma"), 0.01f);
    assert_int_equal(screening_decide_triage(p, true, &risk, &why), TRIAGE_PHARMACIST_GP);
    assert_int_equal(why, SCREENING_WHY_TOP);
    /* Nothing is ever "self-care": no condition of the table has it, and the
     * rules only raise the advice — for every condition on top, sure or not,
     * at any risk. */
    for (int c = 0; c < screening_condition_count(); c++) {
        assert_true(screening_condition_at(c)->triage >= TRIAGE_PHARMACIST_GP);
        for (int k = 0; k < 4; k++) {
            probs2(p, c, 0.99f - 0.2f * (float)k, c == cond("eczema") ? cond("fungal") : cond("eczema"), 0.005f);
            assert_int_not_equal(screening_decide_triage(p, k < 2, &risk, &why), TRIAGE_SELF_CARE);
        }
    }
    /* The same top class with melanoma at 0.12: urgent, whatever the top. */
    probs2(p, cond("benign_mole"), 0.80f, cond("melanoma"), 0.12f);
    assert_int_equal(screening_decide_triage(p, true, &risk, &why), TRIAGE_URGENT);
    assert_int_equal(why, SCREENING_WHY_MELANOMA_RISK);
    /* Acne on top, but melanoma + skin cancer above its threshold: a doctor. */
    probs2(p, cond("acne_rosacea"), 0.70f, cond("skin_cancer"), 0.22f);
    assert_int_equal(screening_decide_triage(p, true, &risk, &why), TRIAGE_DOCTOR_SOON);
    assert_int_equal(why, SCREENING_WHY_CANCER_RISK);
    /* A growth, no cancer risk, but not sure it is harmless: a doctor. */
    probs2(p, cond("harmless_growth"), 0.70f, cond("eczema"), 0.2f);
    assert_int_equal(screening_decide_triage(p, true, &risk, &why), TRIAGE_DOCTOR_SOON);
    assert_int_equal(why, SCREENING_WHY_LESION_NOT_SURE);
    /* Unsure never advises less than a doctor; a confident urgent stays urgent. */
    probs2(p, cond("acne_rosacea"), 0.40f, cond("eczema"), 0.35f);
    assert_int_equal(screening_decide_triage(p, false, &risk, &why), TRIAGE_DOCTOR_SOON);
    assert_int_equal(why, SCREENING_WHY_UNSURE);
    probs2(p, cond("bacterial"), 0.90f, cond("eczema"), 0.05f);
    assert_int_equal(screening_decide_triage(p, true, &risk, &why), TRIAGE_DOCTOR_SOON);
    assert_int_equal(why, SCREENING_WHY_TOP);
    assert_string_equal(screening_why_code(SCREENING_WHY_MELANOMA_RISK), "melanoma_risk");
    assert_true(strlen(screening_why_text(SCREENING_WHY_CANCER_RISK)) > 40);
    /* New conditions: keratinocyte cancers see a doctor; PAD labels map. */
    assert_true(screening_condition_at(cond("skin_cancer"))->triage >= TRIAGE_DOCTOR_SOON);
    assert_int_equal(screening_condition_of("pad-ufes-20-subset", "BCC"), cond("skin_cancer"));
    assert_int_equal(screening_condition_of("pad-ufes-20-subset", "SEK"), cond("harmless_growth"));
    assert_int_equal(screening_condition_of("pad-ufes-20-subset", "MEL"), cond("melanoma"));
    assert_int_equal(screening_condition_of("dermnetnz", "Basal_cell_carcinoma"), cond("skin_cancer"));
    assert_true(screening_is_malignant("MEL") && screening_is_malignant("Squamous_cell_carcinoma") &&
                screening_is_malignant("malignant"));
    assert_false(screening_is_malignant("ACK") || screening_is_malignant("NEV") || screening_is_malignant("benign"));
}

/* Thresholds: ≥ 95 % of each set's malignant lesions referred, the lowest
 * set deciding; and no held-back malignant lesion left with self-care. */
static void test_fit_risk(void **state) {
    (void)state;
    enum { N = 200 };
    int nc = screening_condition_count(), mel = cond("melanoma"), mole = cond("benign_mole");
    static float p[N * 32];
    static screening_item items[N];
    const screening_item *ptr[N];
    for (int i = 0; i < N; i++) {
        bool malignant = i % 2 == 0;
        items[i] =
            (screening_item){.set = i < 100 ? 1 : 3, .condition = malignant ? mel : mole, .malignant = malignant};
        ptr[i] = &items[i];
        /* set 1: malignant melanoma probability 0.30..0.79; set 3: 0.05..0.54 */
        float pm = malignant ? (i < 100 ? 0.30f : 0.05f) + 0.01f * (float)(i % 100 / 2) : 0.02f;
        probs2(p + (size_t)i * nc, mole, 0.98f - pm, mel, pm);
    }
    screening_risk r;
    screening_fit_risk(p, ptr, N, 0.95, &r);
    /* set 3's 50 lesions at 0.05, 0.06, …: 48 of 50 ≥ 0.07 (96 %), 47 ≥ 0.08 (94 %) */
    assert_true(fabsf(r.melanoma_above - 0.07f) < 1e-4f);
    size_t referred = 0;
    for (int i = 100; i < N; i += 2) referred += p[(size_t)i * nc + mel] >= r.melanoma_above;
    assert_true(referred >= 48);
    /* The two below the threshold had P(benign) ≈ 0.93: self-care needs more. */
    assert_true(r.benign_sure > 0.93f && r.benign_sure <= 1.0f);
    for (int i = 0; i < N; i++) {
        screening_why why;
        if (items[i].malignant)
            assert_int_not_equal(screening_decide_triage(p + (size_t)i * nc, true, &r, &why), TRIAGE_SELF_CARE);
    }
}

/* Points from a known Gaussian: typical ones score below 1 after the
 * threshold is set on held-back draws; points far away score far above. */
static void test_ood_distance(void **state) {
    (void)state;
    enum { D = 48, N = 3000 };
    nn_rng r;
    nn_rng_seed(&r, 7);
    float *x = malloc((size_t)N * D * sizeof *x);
    size_t rows[N];
    for (int i = 0; i < N; i++) {
        rows[i] = (size_t)i;
        for (int d = 0; d < D; d++) x[(size_t)i * D + d] = 1.0f + nn_rng_normal(&r) * (d < 4 ? 5.0f : 0.5f);
    }
    screening_ood o;
    core_error err = {0};
    assert_int_equal(screening_ood_fit(x, rows, NULL, 2000, D, 8, &o, &err), CORE_OK);
    /* the principal variances found: the four wide directions first */
    assert_true(o.var[0] > 15 && o.var[3] > 15 && o.var[4] < 1);
    float s[1000];
    for (int i = 0; i < 1000; i++) s[i] = screening_ood_score(&o, x + (size_t)(2000 + i) * D);
    qsort(s, 1000, sizeof *s, screening_cmp_float);
    o.above = s[989]; /* the 99th percentile of held-back draws */
    size_t over = 0;
    for (int i = 0; i < 1000; i++) over += screening_ood_score(&o, x + (size_t)(2000 + i) * D) >= 1;
    assert_true(over <= 11);
    float far[D];
    for (int d = 0; d < D; d++)
        far[d] = 1.0f + (d >= 20 && d < 30 ? 4.0f : 0.0f); /* 8 sd along ten narrow directions */
    assert_true(screening_ood_score(&o, far) > 1.5f);
    /* the distance from projections equals the direct score */
    float proj[8];
    for (int q = 0; q < 8; q++) {
        double a = 0;
        for (int d = 0; d < D; d++) a += (double)o.basis[q * D + d] * (far[d] - o.mean[d]);
        proj[q] = (float)a;
    }
    assert_true(fabsf(screening_ood_distance(&o, proj, far) / o.above - screening_ood_score(&o, far)) < 1e-3f);
    screening_ood_free(&o);
    assert_int_equal(screening_ood_fit(x, rows, NULL, 1, D, 8, &o, &err), CORE_ERR_INVALID);
    assert_null(o.mean);
    free(x);
}

/* ITA of flat skin-coloured images: lighter skin, larger angle; a photo
 * with no skin colour has no estimate. */
static void test_skin_tone(void **state) {
    (void)state;
    static const uint8_t tones[][3] = {{240, 205, 185}, {200, 150, 120}, {140, 95, 70}, {85, 55, 40}};
    double last = INFINITY;
    for (size_t t = 0; t < 4; t++) {
        vision_image im = {64, 64, malloc(64 * 64 * 3)};
        for (int i = 0; i < 64 * 64; i++) memcpy(im.rgb + i * 3, tones[t], 3);
        double ita;
        assert_int_equal(vision_skin_ita(&im, &ita, NULL), CORE_OK);
        assert_false(isnan(ita));
        assert_true(ita < last);
        last = ita;
        free(im.rgb);
    }
    assert_string_equal(vision_ita_group(60), "very light (ITA > 55)");
    assert_string_equal(vision_ita_group(-45), "dark (< -30)");
    vision_image green = {64, 64, malloc(64 * 64 * 3)};
    for (int i = 0; i < 64 * 64; i++) green.rgb[i * 3] = 20, green.rgb[i * 3 + 1] = 160, green.rgb[i * 3 + 2] = 40;
    double ita = 0;
    assert_int_equal(vision_skin_ita(&green, &ita, NULL), CORE_OK);
    assert_true(isnan(ita));
    free(green.rgb);
}

/* DermNet's photos are cut right of the watermark; other sets' to the
 * centre square. A red mark at the bottom left must vanish from DermNet's
 * crop and stay in another set's. */
static void test_watermark_crop(void **state) {
    (void)state;
    int w = 256, h = 192, dermnet = -1, isic = -1;
    for (int i = 0; i < screening_set_count(); i++) {
        if (!strcmp(screening_set_name(i), "dermnetnz")) dermnet = i;
        if (!strcmp(screening_set_name(i), "isic-melanoma-10k")) isic = i;
    }
    assert_true(dermnet >= 0 && isic >= 0);
    uint8_t *rgb = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = rgb + ((size_t)y * w + x) * 3;
            bool mark = x >= 40 && x < 76 && y >= 128 && y < 180;
            p[0] = mark ? 255 : 128, p[1] = mark ? 0 : 128, p[2] = mark ? 0 : 128;
        }
    uint8_t *a = NULL, *b = NULL;
    assert_int_equal(screening_crop(rgb, w, h, dermnet, true, 64, &a, NULL), CORE_OK);
    assert_int_equal(screening_crop(rgb, w, h, isic, true, 64, &b, NULL), CORE_OK);
    int red_a = 0, red_b = 0;
    for (int i = 0; i < 64 * 64; i++) red_a += a[i * 3] > 160, red_b += b[i * 3] > 160;
    assert_int_equal(red_a, 0);
    assert_true(red_b > 20);
    free(a), free(b), free(rgb);
}

/* The not-skin list: header and blank lines skipped, first column kept. */
static void test_not_skin_list(void **state) {
    (void)state;
    char dir[256], p[300];
    testutil_tmpdir(dir);
    snprintf(p, sizeof p, "%s/index.csv", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("path,source,licence\n/a/tree.jpg,apt:x,PD\n\n/b/sea.png,npm:y,CC0\n", f);
    fclose(f);
    size_t n = 0;
    char **list = screening_not_skin_list(dir, &n);
    assert_int_equal(n, 2);
    assert_string_equal(list[0], "/a/tree.jpg");
    assert_string_equal(list[1], "/b/sea.png");
    for (size_t i = 0; i < n; i++) free(list[i]);
    free(list);
    assert_null(screening_not_skin_list("/nonexistent", &n));
    assert_int_equal(n, 0);
    testutil_rmdir(dir);
}

/* ---- the bundled model on real photos ---- */
static screening_model *model;

/* Skips only when the backbone is absent; a bundled model that does not
 * load is a failure. */
static bool load_model(void) {
    if (model) return true;
    FILE *f = fopen(TEST_SHARED_DIR "/models/mobilenet_v2_1.0_224_quant.tflite", "rb");
    if (!f) {
        fprintf(stderr, "SKIP: ../shared/models is absent\n");
        return false;
    }
    fclose(f);
    core_error err = {0};
    if (screening_model_load(TEST_SOURCE_DIR "/models/screening.csm",
                             TEST_SHARED_DIR "/models:" TEST_SOURCE_DIR "/node_modules", &model, &err) != CORE_OK)
        fail_msg("the bundled model does not load: %s", err.message);
    return true;
}

static bool assess_file(const char *path, screening_result *r) {
    char *b;
    size_t n;
    if (core_read_file(path, &b, &n, NULL) != CORE_OK) return false;
    vision_limits lim;
    vision_limits_defaults(&lim);
    lim.min_side = 64;
    lim.target_short_side = 224;
    vision_image img = {0};
    core_error err = {0};
    bool ok = vision_decode((uint8_t *)b, n, &lim, &img, NULL, NULL, &err) == CORE_OK &&
              screening_assess_rgb(model, img.rgb, img.width, img.height, r, &err) == CORE_OK;
    vision_image_free(&img);
    free(b);
    return ok;
}

static void test_model_not_skin(void **state) {
    (void)state;
    if (!load_model()) skip();
    /* A synthetic non-skin picture: a blue sky over green grass with a
     * brown trunk — no skin anywhere. */
    vision_image im = {224, 224, malloc(224 * 224 * 3)};
    for (int y = 0; y < 224; y++)
        for (int x = 0; x < 224; x++) {
            uint8_t *p = im.rgb + ((size_t)y * 224 + x) * 3;
            if (x > 100 && x < 124 && y > 80)
                p[0] = 90, p[1] = 60, p[2] = 30;
            else if (y < 140)
                p[0] = 90, p[1] = (uint8_t)(150 + y / 3), p[2] = 235;
            else
                p[0] = 40, p[1] = (uint8_t)(140 + (x * 7 + y * 3) % 40), p[2] = 40;
        }
    screening_result r;
    core_error err = {0};
    assert_int_equal(screening_assess_rgb(model, im.rgb, 224, 224, &r, &err), CORE_OK);
    assert_int_equal(r.verdict, SCREENING_UNSURE_NOT_SKIN);
    assert_int_not_equal(r.triage, TRIAGE_URGENT);
    assert_true(r.ood_score >= 1);
    free(im.rgb);
}

/* Every malignant test lesion of PAD-UFES (smartphone photos) is referred,
 * and skin photos are not refused as "not skin" more than rarely. */
static void test_model_on_pad(void **state) {
    (void)state;
    if (!load_model()) skip();
    FILE *f = fopen(TEST_SHARED_DIR "/data/pad-ufes-20-subset/index.csv", "r");
    if (!f) {
        fprintf(stderr, "SKIP: no pad-ufes-20-subset in ../shared/data\n");
        skip();
    }
    char line[2048];
    size_t n = 0, refused = 0, mal = 0, self_care_mal = 0;
    assert_non_null(fgets(line, sizeof line, f));
    while (fgets(line, sizeof line, f)) {
        char *path = strtok(line, ","), *dx = strtok(NULL, ","), *split = strtok(NULL, ",");
        if (!path || !dx || !split || strcmp(split, "test")) continue;
        char full[1024];
        snprintf(full, sizeof full, "%s/data/pad-ufes-20-subset/%s", TEST_SHARED_DIR, path);
        screening_result r;
        assert_true(assess_file(full, &r));
        n++;
        refused += r.verdict == SCREENING_UNSURE_NOT_SKIN;
        if (screening_is_malignant(dx)) mal++, self_care_mal += r.triage == TRIAGE_SELF_CARE;
    }
    fclose(f);
    fprintf(stderr, "PAD-UFES test: %zu photos, %zu refused as not skin, %zu malignant, %zu of them self-care\n", n,
            refused, mal, self_care_mal);
    assert_true(n > 100 && mal > 20);
    assert_int_equal(self_care_mal, 0);
    /* The product's goal is ≤ 3 % of skin photos refused over every source
     * (docs/MODEL.md reports each); this guards against a regression on the
     * phone photos, the closest to what people send. */
    assert_true(refused * 100 <= n * 5);
}

static int teardown(void **state) {
    (void)state;
    screening_model_free(model);
    model = NULL;
    return 0;
}

int main(void) {
    assert_int_equal(cs_crypto_init(NULL), CORE_OK);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_triage_rule),    cmocka_unit_test(test_fit_risk),
        cmocka_unit_test(test_ood_distance),   cmocka_unit_test(test_skin_tone),
        cmocka_unit_test(test_watermark_crop), cmocka_unit_test(test_not_skin_list),
        cmocka_unit_test(test_model_not_skin), cmocka_unit_test(test_model_on_pad),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
