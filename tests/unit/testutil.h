/* Test helpers shared by the unit tests. */
#ifndef CARESYNC_TESTUTIL_H
#define CARESYNC_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"

/* A fresh temporary directory (mkdtemp), removed by testutil_rmdir. */
void testutil_tmpdir(char out[256]);
void testutil_rmdir(const char *dir);
/* True if needle occurs in the file's bytes. */
bool testutil_file_contains(const char *path, const void *needle, size_t n);

#endif
