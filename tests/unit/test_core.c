#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "testutil.h"

static void fail_fills_error(void **state) {
    (void)state;
    core_error err = {0};
    assert_int_equal(core_fail(&err, CORE_ERR_INVALID, "title", "bad %d", 7), CORE_ERR_INVALID);
    assert_int_equal(err.code, CORE_ERR_INVALID);
    assert_string_equal(err.field, "title");
    assert_string_equal(err.message, "bad 7");
    assert_int_equal(core_fail(NULL, CORE_ERR_IO, NULL, "x"), CORE_ERR_IO); /* NULL err is allowed */
    assert_string_equal(core_status_name(CORE_ERR_THROTTLED), "throttled");
}

static void time_format_is_rfc3339(void **state) {
    (void)state;
    char t[32];
    core_format_time(0, t);
    assert_string_equal(t, "1970-01-01T00:00:00Z");
    core_format_time(1700000000, t);
    assert_string_equal(t, "2023-11-14T22:13:20Z");
    /* agrees with gmtime_r/strftime across leap years, centuries and negatives */
    for (int64_t x = -2208988800LL; x < 4102444800LL; x += 86399 * 37 + 7) {
        char ref[32];
        time_t tt = (time_t)x;
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(ref, sizeof ref, "%Y-%m-%dT%H:%M:%SZ", &tm);
        core_format_time(x, t);
        assert_string_equal(t, ref);
    }
}

static void read_file_and_mkdirs(void **state) {
    (void)state;
    char dir[256], path[512];
    testutil_tmpdir(dir);
    snprintf(path, sizeof path, "%s/a/b/c", dir);
    core_error err = {0};
    assert_int_equal(core_mkdirs(path, &err), CORE_OK);
    assert_int_equal(core_mkdirs(path, &err), CORE_OK); /* idempotent */
    snprintf(path, sizeof path, "%s/a/f.txt", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 5000; i++) fputs("0123456789", f); /* larger than one read */
    fclose(f);
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(core_read_file(path, &buf, &len, &err), CORE_OK);
    assert_int_equal(len, 50000);
    assert_int_equal(strlen(buf), 50000);
    free(buf);
    snprintf(path, sizeof path, "%s/missing", dir);
    assert_int_equal(core_read_file(path, &buf, &len, &err), CORE_ERR_IO);
    assert_null(buf);
    assert_non_null(strstr(err.message, "missing"));
    testutil_rmdir(dir);
}

/* The data directory's lock: a second taker (another open of the file, as
 * another process would make) is refused with the holder's pid; closing the
 * holder frees it. Modes beyond the allowed ones are reported. */
static void data_dir_lock_and_modes(void **state) {
    (void)state;
    char dir[256], path[512];
    testutil_tmpdir(dir);
    core_error err = {0};
    int a = -1, b = -1;
    assert_int_equal(core_lock_dir(dir, &a, &err), CORE_OK);
    assert_true(a >= 0);
    assert_int_equal(core_lock_dir(dir, &b, &err), CORE_ERR_CONFLICT);
    assert_int_equal(b, -1);
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
    assert_non_null(strstr(err.message, pid));
    core_unlock_dir(a);
    assert_int_equal(core_lock_dir(dir, &b, &err), CORE_OK);
    core_unlock_dir(b);

    snprintf(path, sizeof path, "%s/caresync.lock", dir);
    assert_int_equal(core_mode_excess(path, 0600), 0); /* created 0600 whatever the umask */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(core_mode_excess(path, 0600), 0044);
    assert_int_equal(chmod(dir, 0755), 0);
    assert_int_equal(core_mode_excess(dir, 0700), 0055);
    snprintf(path, sizeof path, "%s/absent", dir);
    assert_int_equal(core_mode_excess(path, 0600), 0);
    testutil_rmdir(dir);
}

static void config_defaults_are_safe(void **state) {
    (void)state;
    core_config cfg;
    core_config_defaults(&cfg);
    assert_string_equal(cfg.host, "127.0.0.1");
    assert_int_equal(cfg.port, 8080);
    assert_string_equal(cfg.data_dir, "var");
    assert_null(cfg.tls_cert);
    assert_true(cfg.max_body >= 1024);
}

/* `caresync surveil detect -` reads stdin through core_read_stream (its own
 * reader used to duplicate core_read_file): a stream larger than one read,
 * NUL bytes kept (the length says where it ends), the stream left open. */
static void read_stream_to_end(void **state) {
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    for (int i = 0; i < 30000; i++) fwrite("0123456789", 1, 10, f);
    fputc(0, f);
    fputs("tail", f);
    rewind(f);
    char *buf = NULL;
    size_t len = 0;
    core_error err = {0};
    assert_int_equal(core_read_stream(f, "stdin", &buf, &len, &err), CORE_OK);
    assert_int_equal(len, 300005);
    assert_int_equal(buf[300000], 0);
    assert_string_equal(buf + 300001, "tail");
    assert_int_equal(buf[len], 0);
    free(buf);
    /* at the end: an empty text, and the stream is still the caller's */
    assert_int_equal(core_read_stream(f, "stdin", &buf, &len, &err), CORE_OK);
    assert_int_equal(len, 0);
    assert_string_equal(buf, "");
    free(buf);
    assert_int_equal(fclose(f), 0);
}

/* Model files' fields are little-endian whatever the host: the helpers
 * write and read the bytes in that order (checked against fixed bytes, not
 * against the host's own layout). */
static void le_fields_byte_order(void **state) {
    (void)state;
    uint8_t b[4];
    core_put_le32(b, 0x11223344u);
    assert_memory_equal(b, ((uint8_t[]){0x44, 0x33, 0x22, 0x11}), 4);
    assert_int_equal(core_get_le32((const uint8_t[]){0x78, 0x56, 0x34, 0x12}), 0x12345678u);
    assert_int_equal(core_get_le32((const uint8_t[]){0xff, 0xff, 0xff, 0xff}), 0xffffffffu);
    core_put_lef32(b, 1.0f); /* binary32 0x3f800000 */
    assert_memory_equal(b, ((uint8_t[]){0x00, 0x00, 0x80, 0x3f}), 4);
    assert_true(core_get_lef32((const uint8_t[]){0x00, 0x00, 0x20, 0xc0}) == -2.5f);
    core_put_lef32(b, -0.0f);
    assert_memory_equal(b, ((uint8_t[]){0x00, 0x00, 0x00, 0x80}), 4);
}

/* core_json_loadb and friends without allocation failures (those are in
 * test_alloc_failures.c): jansson's flags and errors come through, bad input
 * is CORE_ERR_INVALID with jansson's place and text, a missing file
 * CORE_ERR_IO, and the value is jansson's own. */
static void json_parse_reports_errors(void **state) {
    (void)state;
    core_error err = {0};
    json_error_t je;
    json_t *v = core_json_loads("{\"a\":\"d\\u00e9j\u00e0\",\"n\":[1,2.5]}", 0, &je, &err);
    assert_non_null(v);
    assert_string_equal(json_string_value(json_object_get(v, "a")), "d\xc3\xa9j\xc3\xa0");
    assert_int_equal(json_array_size(json_object_get(v, "n")), 2);
    json_decref(v);
    /* loadb reads len bytes, not to a NUL */
    v = core_json_loadb("[1] trailing", 3, 0, NULL, &err);
    assert_non_null(v);
    json_decref(v);
    assert_null(core_json_loads("{\"a\":1,\"a\":2}", JSON_REJECT_DUPLICATES, &je, &err));
    assert_int_equal(err.code, CORE_ERR_INVALID);
    assert_non_null(strstr(err.message, "duplicate"));
    assert_non_null(strstr(je.text, "duplicate"));
    err = (core_error){0};
    assert_null(core_json_loads("{\n\"a\":", 0, &je, &err));
    assert_int_equal(err.code, CORE_ERR_INVALID);
    assert_int_equal(je.line, 2);
    assert_non_null(strstr(err.message, "line 2"));
    err = (core_error){0};
    assert_null(core_json_loads(NULL, 0, &je, &err));
    assert_int_equal(err.code, CORE_ERR_INVALID);
    assert_null(core_json_loads("", 0, NULL, NULL)); /* both optional */

    char dir[256], path[512];
    testutil_tmpdir(dir);
    snprintf(path, sizeof path, "%s/doc.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"k\": [true, null]}\n", f);
    fclose(f);
    v = core_json_load_file(path, JSON_REJECT_DUPLICATES, &je, &err);
    assert_non_null(v);
    assert_true(json_is_true(json_array_get(json_object_get(v, "k"), 0)));
    json_decref(v);
    f = fopen(path, "r");
    v = core_json_loadf(f, "doc", 0, NULL, &err);
    fclose(f);
    assert_non_null(v);
    json_decref(v);
    snprintf(path, sizeof path, "%s/missing.json", dir);
    err = (core_error){0};
    assert_null(core_json_load_file(path, 0, &je, &err));
    assert_int_equal(err.code, CORE_ERR_IO);
    assert_non_null(strstr(je.text, "missing.json"));
    assert_int_equal(je.line, -1);
    testutil_rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(le_fields_byte_order),     cmocka_unit_test(read_stream_to_end),
        cmocka_unit_test(fail_fills_error),         cmocka_unit_test(time_format_is_rfc3339),
        cmocka_unit_test(read_file_and_mkdirs),     cmocka_unit_test(data_dir_lock_and_modes),
        cmocka_unit_test(config_defaults_are_safe), cmocka_unit_test(json_parse_reports_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
