#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void testutil_tmpdir(char out[256]) {
    snprintf(out, 256, "/tmp/caresync-unit-XXXXXX");
    assert_non_null(mkdtemp(out));
}

void testutil_rmdir(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

bool testutil_file_contains(const char *path, const void *needle, size_t n) {
    char *buf = NULL;
    size_t len = 0;
    core_error err = {0};
    if (core_read_file(path, &buf, &len, &err) != CORE_OK) return false;
    bool found = false;
    for (size_t i = 0; !found && i + n <= len; i++) found = memcmp(buf + i, needle, n) == 0;
    free(buf);
    return found;
}
