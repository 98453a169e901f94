/* Clinician-labelled examples (issue 13, screening/examples.c): what a kept
 * example holds — a fresh 224 px JPEG, the condition and the week, nothing
 * else — where it lives, that revocation's handle deletes exactly its own,
 * and that train's data-set reader loads them as the fifth source. No
 * training runs here. */
#define _GNU_SOURCE /* memmem */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crypto/crypto.h"
#include "screening/screening.h"
#include "vision/vision.h"

#define MARKER "zqmarker7-case-9f3a"

/* A 300 x 200 JPEG with an EXIF segment carrying a marker (as a phone's
 * would carry a place or a name), *len its size. */
static uint8_t *photo_with_metadata(size_t *len) {
    vision_image img = {300, 200, malloc(300 * 200 * 3)};
    assert_non_null(img.rgb);
    for (int i = 0; i < 300 * 200; i++) {
        img.rgb[3 * i] = (uint8_t)(150 + i % 50);
        img.rgb[3 * i + 1] = (uint8_t)(90 + (i / 300) % 40);
        img.rgb[3 * i + 2] = 80;
    }
    uint8_t *jpeg = NULL;
    size_t jl = 0;
    core_error err = {0};
    assert_int_equal(vision_encode_jpeg(&img, 90, &jpeg, &jl, &err), CORE_OK);
    free(img.rgb);
    static const char exif[] = "Exif\0\0" MARKER;
    size_t seg = 2 + sizeof exif; /* length field counts itself */
    uint8_t *out = malloc(jl + 2 + seg);
    assert_non_null(out);
    memcpy(out, jpeg, 2); /* SOI */
    out[2] = 0xFF, out[3] = 0xE1, out[4] = (uint8_t)(seg >> 8), out[5] = (uint8_t)seg;
    memcpy(out + 6, exif, sizeof exif);
    memcpy(out + 2 + 2 + seg, jpeg + 2, jl - 2);
    *len = jl + 2 + seg;
    free(jpeg);
    return out;
}

/* The one file under dir/<handle>/ (its path in out); how many there are. */
static int files_of(const char *dir, const uint8_t handle[32], char out[700]) {
    char hex[65], sub[400];
    cs_crypto_hex(handle, 32, hex);
    snprintf(sub, sizeof sub, "%s/%s", dir, hex);
    DIR *d = opendir(sub);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(out, 700, "%s/%s", sub, e->d_name);
            n++;
        }
    closedir(d);
    return n;
}

static void a_kept_example_holds_no_identifier(void **state) {
    (void)state;
    char tmp[256], dir[300], path[700];
    testutil_tmpdir(tmp);
    snprintf(dir, sizeof dir, "%s/examples", tmp);
    uint8_t dk[32], handle[32], other[32];
    cs_crypto_random(dk, sizeof dk);
    screening_example_handle(dk, handle);
    /* only the data key derives it: same key, same handle; another, another */
    screening_example_handle(dk, other);
    assert_memory_equal(handle, other, 32);
    dk[0] ^= 1;
    screening_example_handle(dk, other);
    assert_memory_not_equal(handle, other, 32);
    size_t len;
    uint8_t *photo = photo_with_metadata(&len);
    assert_non_null(memmem(photo, len, MARKER, strlen(MARKER))); /* the input does carry it */
    core_error err = {0};
    assert_int_equal(screening_example_put(dir, handle, "fungal", "2026-W48", photo, len, &err), CORE_OK);
    assert_int_equal(files_of(dir, handle, path), 1);
    /* the name is <random id>.<condition>.<week>.jpg, nothing more */
    const char *name = strrchr(path, '/') + 1;
    assert_int_equal(strlen(name), 32 + strlen(".fungal.2026-W48.jpg"));
    assert_string_equal(name + 32, ".fungal.2026-W48.jpg");
    /* private, and undated */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal((long long)st.st_mtime, 0);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    /* the pixels only: no EXIF segment, no marker, no handle */
    assert_false(testutil_file_contains(path, MARKER, strlen(MARKER)));
    assert_false(testutil_file_contains(path, "Exif", 4));
    assert_false(testutil_file_contains(path, "\xFF\xE1", 2));
    char hex[65];
    cs_crypto_hex(handle, 32, hex);
    assert_false(testutil_file_contains(path, hex, 64));
    assert_false(testutil_file_contains(path, handle, 32));
    /* and 224 px square */
    char *bytes = NULL;
    size_t blen = 0;
    assert_int_equal(core_read_file(path, &bytes, &blen, &err), CORE_OK);
    vision_limits lim;
    vision_limits_defaults(&lim);
    vision_image img = {0};
    assert_int_equal(vision_decode((const uint8_t *)bytes, blen, &lim, &img, NULL, NULL, &err), CORE_OK);
    assert_int_equal(img.width, 224);
    assert_int_equal(img.height, 224);
    vision_image_free(&img);
    free(bytes);
    /* refused: "other" (free text, not a label), a malformed week, not a photo */
    assert_int_equal(screening_example_put(dir, handle, "other", "2026-W48", photo, len, &err), CORE_ERR_INVALID);
    assert_int_equal(screening_example_put(dir, handle, "fungal", "2026-48", photo, len, &err), CORE_ERR_INVALID);
    assert_int_equal(screening_example_put(dir, handle, "fungal", "2026-W48", (const uint8_t *)"nope", 4, &err),
                     CORE_ERR_INVALID);
    assert_int_equal(files_of(dir, handle, path), 1);
    free(photo);
    testutil_rmdir(tmp);
}

static void revocation_deletes_exactly_the_persons_examples(void **state) {
    (void)state;
    char tmp[256], dir[300], path[700];
    testutil_tmpdir(tmp);
    snprintf(dir, sizeof dir, "%s/examples", tmp);
    uint8_t a[32], b[32];
    memset(a, 1, 32);
    memset(b, 2, 32);
    size_t len, deleted = 99;
    uint8_t *photo = photo_with_metadata(&len);
    core_error err = {0};
    assert_int_equal(screening_example_put(dir, a, "fungal", "2026-W48", photo, len, &err), CORE_OK);
    assert_int_equal(screening_example_put(dir, a, "eczema", "2026-W49", photo, len, &err), CORE_OK);
    assert_int_equal(screening_example_put(dir, b, "viral", "2026-W49", photo, len, &err), CORE_OK);
    assert_int_equal(screening_examples_forget(dir, a, &deleted, &err), CORE_OK);
    assert_int_equal(deleted, 2);
    assert_int_equal(files_of(dir, a, path), 0);
    assert_int_equal(files_of(dir, b, path), 1);
    /* a person with none: nothing to do, not an error */
    assert_int_equal(screening_examples_forget(dir, a, &deleted, &err), CORE_OK);
    assert_int_equal(deleted, 0);
    free(photo);
    testutil_rmdir(tmp);
}

static void the_data_set_reader_loads_them_as_the_fifth_source(void **state) {
    (void)state;
    char tmp[256], dir[300];
    testutil_tmpdir(tmp);
    snprintf(dir, sizeof dir, "%s/examples", tmp);
    uint8_t a[32], b[32];
    memset(a, 1, 32);
    memset(b, 2, 32);
    size_t len;
    uint8_t *photo = photo_with_metadata(&len);
    core_error err = {0};
    screening_dataset ds = {0};
    /* no examples kept yet: nothing added, not an error */
    assert_int_equal(screening_examples_load(dir, &ds, &err), CORE_OK);
    assert_int_equal(ds.count, 0);
    assert_int_equal(screening_example_put(dir, a, "fungal", "2026-W48", photo, len, &err), CORE_OK);
    assert_int_equal(screening_example_put(dir, a, "melanoma", "2026-W49", photo, len, &err), CORE_OK);
    assert_int_equal(screening_example_put(dir, b, "fungal", "2026-W49", photo, len, &err), CORE_OK);
    assert_int_equal(screening_examples_load(dir, &ds, &err), CORE_OK);
    assert_int_equal(ds.count, 3);
    int set = -1;
    for (int s = 0; s < screening_set_count(); s++)
        if (!strcmp(screening_set_name(s), "clinician_labelled")) set = s;
    assert_int_equal(set, 4); /* after the four public sets */
    int fungal = 0, melanoma = 0;
    for (size_t i = 0; i < ds.count; i++) {
        const screening_item *it = &ds.items[i];
        assert_int_equal(it->set, set);
        assert_int_equal(it->fitzpatrick, 0);
        const char *code = screening_condition_at(it->condition)->code;
        char fine[64];
        snprintf(fine, sizeof fine, "clinician_labelled/%s", code);
        assert_string_equal(ds.fine_names[it->fine], fine);
        if (!strcmp(code, "fungal")) fungal++, assert_false(it->malignant);
        if (!strcmp(code, "melanoma")) melanoma++, assert_true(it->malignant);
        /* train reads each item's file: it is there and decodes */
        char *bytes = NULL;
        size_t blen = 0;
        assert_int_equal(core_read_file(it->path, &bytes, &blen, &err), CORE_OK);
        free(bytes);
        /* in path order, so the feature cache keys the same every run */
        if (i) assert_true(strcmp(ds.items[i - 1].path, it->path) < 0);
    }
    assert_int_equal(fungal, 2);
    assert_int_equal(melanoma, 1);
    screening_dataset_free(&ds);
    free(photo);
    testutil_rmdir(tmp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_kept_example_holds_no_identifier),
        cmocka_unit_test(revocation_deletes_exactly_the_persons_examples),
        cmocka_unit_test(the_data_set_reader_loads_them_as_the_fifth_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
