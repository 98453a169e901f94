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

void testutil_ledger_open(char dir[256], uint8_t node_pk[LEDGER_KEY], uint8_t node_sk[LEDGER_SECRET],
                          uint8_t admin_pk[LEDGER_KEY], uint8_t admin_sk[LEDGER_SECRET], store **st, ledger **led) {
    testutil_tmpdir(dir);
    char path[300];
    core_error err = {0};
    if (st) {
        snprintf(path, sizeof path, "%s/caresync.db", dir);
        if (store_open(path, 2, st, &err)) fail_msg("store_open: %s", err.message);
    }
    ledger_keypair(node_pk, node_sk);
    ledger_keypair(admin_pk, admin_sk);
    ledger_options o;
    ledger_options_defaults(&o);
    snprintf(path, sizeof path, "%s/ledger.db", dir);
    o.path = path;
    o.batch_ms = 1;
    memcpy(o.node_pk, node_pk, LEDGER_KEY);
    memcpy(o.node_sk, node_sk, LEDGER_SECRET);
    memcpy(o.admin_pk, admin_pk, LEDGER_KEY);
    memcpy(o.admin_sk, admin_sk, LEDGER_SECRET);
    if (ledger_open(&o, led, &err)) fail_msg("ledger_open: %s", err.message);
}

void testutil_ledger_close(const char *dir, store *st, ledger *led) {
    ledger_close(led);
    store_close(st);
    testutil_rmdir(dir);
}
