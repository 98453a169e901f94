/* Test helpers shared by the unit tests. */
#ifndef CARESYNC_TESTUTIL_H
#define CARESYNC_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"
#include "ledger/ledger.h"
#include "store/store.h"

/* A fresh temporary directory (mkdtemp), removed by testutil_rmdir. */
void testutil_tmpdir(char out[256]);
void testutil_rmdir(const char *dir);
/* True if needle occurs in the file's bytes. */
bool testutil_file_contains(const char *path, const void *needle, size_t n);

/* The fixture the ledger-backed suites share: a fresh temporary directory
 * (dir), fresh node and admin key pairs (written to the four buffers), a
 * new ledger in dir/ledger.db under those keys sealing a block after 1 ms
 * (a test waits on every block), and, when st is not NULL, the service's
 * store in dir/caresync.db beside it (its migrations, 2 connections). Fails
 * the running test on any error. *led and *st are the caller's, to give back
 * with testutil_ledger_close. */
void testutil_ledger_open(char dir[256], uint8_t node_pk[LEDGER_KEY], uint8_t node_sk[LEDGER_SECRET],
                          uint8_t admin_pk[LEDGER_KEY], uint8_t admin_sk[LEDGER_SECRET], store **st, ledger **led);
/* Closes the ledger and the store (either may be NULL) and removes dir. */
void testutil_ledger_close(const char *dir, store *st, ledger *led);

#endif
