/* screening: the label → condition grouping and its triage levels, the
 * data-set reader (columns, deterministic DermNet split), the metrics
 * against hand-computed values, and feature extraction with its cache on a
 * few real photographs (skipped with a message when ../shared is absent). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto/crypto.h"
#include "screening/screening.h"

static int cond(const char *code) {
    for (int i = 0; i < screening_condition_count(); i++)
        if (!strcmp(screening_condition_at(i)->code, code)) return i;
    fail_msg("no condition %s", code);
    return -1;
}

static void test_grouping_and_triage(void **state) {
    (void)state;
    assert_true(screening_condition_count() >= 10);
    assert_int_equal(screening_condition_of("skin-infections-8", "ringworm"), cond("fungal"));
    assert_int_equal(screening_condition_of("dermnetnz", "Pityriasis_versicolor"), cond("fungal"));
    assert_int_equal(screening_condition_of("dermnetnz", "Non-albicans_candida_infections"), cond("fungal"));
    assert_int_equal(screening_condition_of("skin-infections-8", "cellulitis"), cond("bacterial"));
    assert_int_equal(screening_condition_of("dermnetnz", "Molluscum_contagiosum"), cond("viral"));
    assert_int_equal(screening_condition_of("dermnetnz", "Scabies"), cond("parasitic"));
    assert_int_equal(screening_condition_of("skin-infections-8", "cutaneous-larva-migrans"), cond("parasitic"));
    assert_int_equal(screening_condition_of("dermnetnz", "Atopic_dermatitis"), cond("eczema"));
    assert_int_equal(screening_condition_of("dermnetnz", "Psoriasis"), cond("psoriasis"));
    assert_int_equal(screening_condition_of("dermnetnz", "Rosacea"), cond("acne_rosacea"));
    assert_int_equal(screening_condition_of("isic-melanoma-10k", "benign"), cond("benign_mole"));
    assert_int_equal(screening_condition_of("isic-melanoma-10k", "malignant"), cond("melanoma"));
    assert_int_equal(screening_condition_of("dermnetnz", "Vitiligo"), cond("other"));
    /* Caution: possible melanoma is urgent; spreading infections are never self-care. */
    assert_int_equal(screening_condition_at(cond("melanoma"))->triage, TRIAGE_URGENT);
    assert_true(screening_condition_at(cond("bacterial"))->triage >= TRIAGE_DOCTOR_SOON);
    assert_true(screening_condition_at(cond("other"))->triage >= TRIAGE_DOCTOR_SOON);
    for (int i = 0; i < screening_condition_count(); i++) assert_true(strlen(screening_condition_at(i)->advice) > 40);
    assert_string_equal(screening_triage_code(TRIAGE_URGENT), "urgent");
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_dataset_reader(void **state) {
    (void)state;
    char dir[128], p[400];
    snprintf(dir, sizeof dir, "/tmp/caresync-screening-%d", (int)getpid());
    snprintf(p, sizeof p, "%s/skin-infections-8", dir);
    assert_int_equal(core_mkdirs(p, NULL), CORE_OK);
    snprintf(p, sizeof p, "%s/dermnetnz", dir);
    assert_int_equal(core_mkdirs(p, NULL), CORE_OK);
    snprintf(p, sizeof p, "%s/skin-infections-8/index.csv", dir);
    write_file(p, "path,class,split,width,height,source_md5\n"
                  "train/ringworm/a.jpg,ringworm,train,224,224,00\n"
                  "test/impetigo/b.jpg,impetigo,test,224,224,ff\n");
    snprintf(p, sizeof p, "%s/dermnetnz/index.csv", dir);
    write_file(p, "path,class,width,height,source_md5\r\n"
                  "Scabies/1.jpg,Scabies,256,192,32aa\r\n" /* 0x32 < 0x33: test */
                  "Scabies/2.jpg,Scabies,256,192,33aa\r\n" /* train */
                  "Vitiligo/3.jpg,Vitiligo,256,192,ffaa\r\n");
    /* PAD-UFES: its label column is "diagnostic", skin types "2.0" or blank. */
    snprintf(p, sizeof p, "%s/pad-ufes-20-subset", dir);
    assert_int_equal(core_mkdirs(p, NULL), CORE_OK);
    snprintf(p, sizeof p, "%s/pad-ufes-20-subset/index.csv", dir);
    write_file(p, "path,diagnostic,split,patient_id,lesion_id,fitzpatrick,age\n"
                  "images/a.jpg,MEL,test,PAT_1,1,2.0,60\n"
                  "images/b.jpg,SEK,train,PAT_2,2,,70\n");
    screening_dataset ds;
    core_error err = {0};
    assert_int_equal(screening_dataset_load(dir, &ds, &err), CORE_OK);
    assert_int_equal(ds.count, 7);
    assert_int_equal(ds.items[5].condition, cond("melanoma"));
    assert_true(ds.items[5].malignant && ds.items[5].test && ds.items[5].fitzpatrick == 2);
    assert_true(!ds.items[6].malignant && !ds.items[6].test && ds.items[6].fitzpatrick == 0);
    assert_int_equal(ds.items[6].condition, cond("harmless_growth"));
    assert_int_equal(ds.fine_count, 6);
    assert_string_equal(ds.fine_names[0], "skin-infections-8/ringworm");
    assert_int_equal(ds.items[0].test, 0);
    assert_int_equal(ds.items[1].test, 1);
    assert_int_equal(ds.items[2].test, 1);
    assert_int_equal(ds.items[3].test, 0);
    assert_int_equal(ds.items[2].fine, ds.items[3].fine);
    assert_int_equal(ds.items[2].condition, cond("parasitic"));
    assert_int_equal(ds.items[4].condition, cond("other"));
    assert_non_null(strstr(ds.items[3].path, "/dermnetnz/Scabies/2.jpg"));
    screening_dataset_free(&ds);
    /* Nothing there: a clear error. */
    assert_int_equal(screening_dataset_load("/nonexistent", &ds, &err), CORE_ERR_NOT_FOUND);
    assert_non_null(strstr(err.message, "no data set"));
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_metrics(void **state) {
    (void)state;
    float s[] = {0.1f, 0.4f, 0.35f, 0.8f};
    int pos[] = {0, 0, 1, 1};
    assert_true(fabs(screening_auc(s, pos, 4) - 0.75) < 1e-9); /* 3 of 4 pairs ordered */
    float tie[] = {0.5f, 0.5f, 0.5f, 0.5f};
    assert_true(fabs(screening_auc(tie, pos, 4) - 0.5) < 1e-9);
    int none[] = {0, 0, 0, 0};
    assert_true(isnan(screening_auc(s, none, 4)));
    /* Always right at confidence 0.6 → ECE 0.4; right at confidence 1 → 0. */
    float p[] = {0.6f, 0.4f, 0.4f, 0.6f, 1.0f, 0.0f};
    int lab[] = {0, 1, 0};
    assert_true(fabs(screening_ece(p, lab, 2, 2) - 0.4) < 1e-6);
    assert_true(fabs(screening_ece(p + 4, lab + 2, 1, 2)) < 1e-6);
    /* The report: 3 classes, one sample misclassified. */
    float q[] = {0.8f, 0.1f, 0.1f, 0.2f, 0.7f, 0.1f, 0.1f, 0.6f, 0.3f, 0.1f, 0.1f, 0.8f};
    int y[] = {0, 1, 2, 2};
    const char *names[] = {"a", "b", "c"};
    screening_text t = {0};
    screening_summary sum;
    screening_metrics_report(&t, "toy", q, NULL, y, 4, 3, names, &sum);
    assert_true(fabs(sum.accuracy - 0.75) < 1e-9);
    assert_true(fabs(sum.balanced_accuracy - (1.0 + 1.0 + 0.5) / 3) < 1e-9);
    assert_non_null(strstr(t.buf, "| c | 2 | 0.500 | 1.000 |"));
    free(t.buf);
}

static void test_features_and_cache(void **state) {
    (void)state;
    const char *models = TEST_SHARED_DIR "/models";
    screening_backbone *bb;
    core_error err = {0};
    if (screening_backbone_open(models, "mobilenet_v2_1.0_224_quant.tflite", &bb, &err) != CORE_OK) {
        fprintf(stderr, "SKIP: %s (../shared is absent)\n", err.message);
        skip();
    }
    assert_int_equal(screening_backbone_dim(bb), 1280);
    screening_dataset ds = {0};
    const char *files[] = {"skin-infections-8/test/ringworm", "isic-melanoma-10k/test/malignant"};
    ds.items = calloc(2, sizeof *ds.items);
    /* The first image of two folders, whatever their names. */
    for (int i = 0; i < 2; i++) {
        char cmd[600], path[600] = {0};
        snprintf(cmd, sizeof cmd, "ls -d %s/data/%s/* | head -1", TEST_SHARED_DIR, files[i]);
        FILE *f = popen(cmd, "r");
        assert_non_null(fgets(path, sizeof path, f));
        pclose(f);
        path[strcspn(path, "\n")] = 0;
        ds.items[i].path = strdup(path);
    }
    ds.count = 2;
    char cache[200];
    snprintf(cache, sizeof cache, "/tmp/caresync-feat-%d.bin", (int)getpid());
    float *a, *b;
    assert_int_equal(screening_extract(bb, &ds, 2, 2, cache, &a, &err), CORE_OK);
    assert_int_equal(access(cache, F_OK), 0);
    assert_int_equal(screening_extract(bb, &ds, 2, 1, cache, &b, &err), CORE_OK); /* from the cache */
    assert_memory_equal(a, b, 2 * 2 * 1280 * sizeof(float));
    double norm = 0, diff = 0;
    for (int i = 0; i < 1280; i++) norm += a[i] * a[i], diff += fabs(a[i] - a[1280 + i]), assert_true(a[i] >= 0);
    assert_true(norm > 1);    /* ReLU6 features, not all zero */
    assert_true(diff > 1e-3); /* the mirrored view differs */
    free(b);
    /* The last block's input (where fine-tuning starts): its activations,
     * run through the rest of the backbone, give the same pooled features;
     * the cache key tells the two kinds apart. */
    int features;
    nn_backbone ref;
    nn_net *net = screening_backbone_net(bb, &features, &ref);
    int hin = features - 1;
    while (hin >= 0 && nn_net_node(net, hin)->op != NN_OP_ADD) hin--;
    assert_true(hin > 0);
    int adim = screening_node_dim(bb, hin);
    assert_int_equal(adim, 160 * 7 * 7);
    float *act;
    assert_int_equal(screening_extract_node(bb, &ds, 2, hin, 1, cache, &act, &err), CORE_OK);
    nn_net *tail = nn_net_slice(net, hin, hin + 1, features + 1);
    assert_non_null(tail);
    nn_run *run = nn_run_new();
    const float *pooled = nn_run_forward(run, tail, 4, act, false, NULL, 0);
    assert_non_null(pooled);
    double worst = 0;
    for (int i = 0; i < 4 * 1280; i++) worst = fmax(worst, fabs(pooled[i] - a[i]));
    assert_true(worst < 1e-4);
    nn_run_free(run);
    nn_net_free(tail);
    free(act);
    assert_int_equal(screening_extract(bb, &ds, 2, 1, cache, &b, &err), CORE_OK); /* not the activations */
    assert_memory_equal(a, b, 2 * 2 * 1280 * sizeof(float));
    free(b);
    /* An unreadable item fails the whole extraction, naming the file. */
    free(ds.items[1].path);
    ds.items[1].path = strdup("/nonexistent/x.jpg");
    assert_int_not_equal(screening_extract(bb, &ds, 1, 2, NULL, &b, &err), CORE_OK);
    assert_non_null(strstr(err.message, "/nonexistent/x.jpg"));
    unlink(cache);
    free(a);
    screening_dataset_free(&ds);
    screening_backbone_free(bb);
}

/* Logit offsets: a classifier that leans towards class 2 in group 0 (as the
 * head leans towards "other" on DermNet photos) gets an offset against it,
 * the mean balanced accuracy rises, and a group it did not hurt keeps its
 * answers. Then the temperature: logits scaled by 3 are fitted back near 3. */
static void test_calibration(void **state) {
    (void)state;
    enum { N = 600, K = 3 };
    float *lg = malloc(N * K * sizeof *lg), bias[K];
    int label[N], group[N];
    uint64_t r = 12345;
    for (int i = 0; i < N; i++) {
        label[i] = i % K;
        group[i] = i < 400 ? 0 : 1;
        for (int c = 0; c < K; c++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            float noise = (float)((r >> 40) & 0xFFFF) / 65536.0f - 0.5f;
            lg[i * K + c] = (c == label[i] ? 1.0f : 0.0f) + noise * 1.6f;
        }
        if (group[i] == 0) lg[i * K + 2] += 0.8f; /* the lean */
    }
    /* balanced accuracy of argmax(logit + b), mean over the two groups */
    float zero[K] = {0};
    float *bs[2] = {zero, bias};
    double ba[2];
    screening_fit_bias(lg, label, group, N, K, bias);
    for (int v = 0; v < 2; v++) {
        double sum = 0;
        for (int g = 0; g < 2; g++) {
            int hit[K] = {0}, tot[K] = {0};
            for (int i = 0; i < N; i++) {
                if (group[i] != g) continue;
                int best = 0;
                for (int c = 1; c < K; c++)
                    if (lg[i * K + c] + bs[v][c] > lg[i * K + best] + bs[v][best]) best = c;
                tot[label[i]]++, hit[label[i]] += best == label[i];
            }
            double b = 0;
            for (int c = 0; c < K; c++) b += (double)hit[c] / tot[c];
            sum += b / K;
        }
        ba[v] = sum / 2;
    }
    assert_true(bias[2] - (bias[0] + bias[1]) / 2 < -0.2f); /* against the leaning class */
    assert_true(ba[1] > ba[0] + 0.02);
    for (int c = 0; c < K; c++) assert_true(bias[c] >= -3.0f && bias[c] <= 3.0f);
    /* invalid input: all zero */
    group[0] = 99;
    screening_fit_bias(lg, label, group, N, K, bias);
    for (int c = 0; c < K; c++) assert_true(bias[c] == 0.0f);

    /* Temperature: labels drawn from softmax(z), logits given as 2.5·z. */
    for (int i = 0; i < N; i++) {
        float p[K], sum = 0, u;
        for (int c = 0; c < K; c++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            lg[i * K + c] = 2.0f * ((float)((r >> 40) & 0xFFFF) / 65536.0f - 0.5f) * 2.0f;
            sum += p[c] = expf(lg[i * K + c]);
        }
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        u = (float)((r >> 40) & 0xFFFF) / 65536.0f * sum;
        label[i] = K - 1;
        for (int c = 0; c < K; c++) {
            if (u < p[c]) {
                label[i] = c;
                break;
            }
            u -= p[c];
        }
        for (int c = 0; c < K; c++) lg[i * K + c] *= 2.5f;
    }
    float t = screening_fit_temperature(lg, label, N, K);
    assert_true(t > 1.8f && t < 3.4f);
    free(lg);

    /* offsets in model metadata: absent → zeros; wrong length or out of range → refused */
    int nc = screening_condition_count();
    float cb[32];
    core_error err = {0};
    json_t *meta = json_object();
    assert_int_equal(screening_condition_bias(meta, cb, &err), CORE_OK);
    assert_true(cb[0] == 0.0f && cb[nc - 1] == 0.0f);
    json_t *arr = json_array();
    for (int c = 0; c < nc; c++) json_array_append_new(arr, json_real(c == 9 ? -0.5 : 0.25));
    json_object_set_new(meta, "condition_bias", arr);
    assert_int_equal(screening_condition_bias(meta, cb, &err), CORE_OK);
    assert_true(cb[0] == 0.25f && cb[9] == -0.5f);
    json_array_set_new(arr, 3, json_real(7.0));
    assert_int_equal(screening_condition_bias(meta, cb, &err), CORE_ERR_INVALID);
    json_array_set_new(arr, 3, json_string("x"));
    assert_int_equal(screening_condition_bias(meta, cb, &err), CORE_ERR_INVALID);
    json_array_remove(arr, 3);
    assert_int_equal(screening_condition_bias(meta, cb, &err), CORE_ERR_INVALID);
    json_decref(meta);
}

int main(void) {
    assert_int_equal(cs_crypto_init(NULL), CORE_OK);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grouping_and_triage),
        cmocka_unit_test(test_dataset_reader),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_calibration),
        cmocka_unit_test(test_features_and_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
