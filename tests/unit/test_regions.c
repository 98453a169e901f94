#include <string.h>

#include "regions/regions.h"
#include "testutil.h"

static void loads_debian_iso_codes(void **state) {
    (void)state;
    regions *r = NULL;
    core_error err = {0};
    assert_int_equal(regions_load(TEST_ISO_CODES_DIR, &r, &err), CORE_OK);
    assert_true(regions_subdivision_count(r) > 4000);
    assert_true(regions_is_subdivision(r, "NZ-AUK"));
    assert_true(regions_is_subdivision(r, "US-CA"));
    assert_false(regions_is_subdivision(r, "NZ"));
    assert_false(regions_is_subdivision(r, "XX-YYY"));
    assert_false(regions_is_subdivision(r, ""));
    assert_false(regions_is_subdivision(r, NULL));
    const json_t *countries = regions_countries(r);
    assert_true(json_array_size(countries) > 150);
    /* sorted by name */
    const char *prev = "";
    size_t i;
    json_t *c;
    json_array_foreach(countries, i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        assert_true(strcmp(prev, name) <= 0);
        prev = name;
    }
    const json_t *nz = regions_subdivisions(r, "NZ");
    assert_non_null(nz);
    bool found = false;
    json_array_foreach(nz, i, c) found |= strcmp(json_string_value(json_object_get(c, "name")), "Auckland") == 0;
    assert_true(found);
    assert_null(regions_subdivisions(r, "XX"));
    regions_free(r);
}

/* Issue 14: data leave at the first-level subdivision. iso-codes writes a
 * parent whole ("GB-SCT") or bare ("ARA" for FR-01); both are followed. */
static void first_level_subdivision_of_every_code(void **state) {
    (void)state;
    regions *r = NULL;
    core_error err = {0};
    assert_int_equal(regions_load(TEST_ISO_CODES_DIR, &r, &err), CORE_OK);
    assert_string_equal(regions_first_level(r, "NZ-AUK"), "NZ-AUK");
    assert_string_equal(regions_first_level(r, "GB-ABD"), "GB-SCT");
    assert_string_equal(regions_first_level(r, "FR-01"), "FR-ARA");
    assert_string_equal(regions_first_level(r, "FR-75"), "FR-IDF");
    assert_null(regions_first_level(r, "NZ"));
    assert_null(regions_first_level(r, "XX-YYY"));
    assert_null(regions_first_level(r, NULL));
    size_t i, j, moved = 0;
    json_t *c, *sub;
    json_array_foreach(regions_countries(r), i, c) {
        const char *cc = json_string_value(json_object_get(c, "code"));
        json_array_foreach(regions_subdivisions(r, cc), j, sub) {
            const char *code = json_string_value(json_object_get(sub, "code"));
            const char *first = regions_first_level(r, code);
            assert_non_null(first);
            assert_memory_equal(first, code, 3);                       /* same country */
            assert_string_equal(regions_first_level(r, first), first); /* and itself first-level */
            moved += strcmp(first, code) != 0;
        }
    }
    assert_true(moved > 1000); /* iso-codes 4.x gives ~1,400 codes a parent */
    regions_free(r);
}

static void missing_directory_is_a_clear_error(void **state) {
    (void)state;
    regions *r = NULL;
    core_error err = {0};
    assert_int_equal(regions_load("/nonexistent", &r, &err), CORE_ERR_IO);
    assert_null(r);
    assert_non_null(strstr(err.message, "iso-codes"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loads_debian_iso_codes),
        cmocka_unit_test(first_level_subdivision_of_every_code),
        cmocka_unit_test(missing_directory_is_a_clear_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
