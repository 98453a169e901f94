/* Allocation-failure injection for the unit tests (issue 12.3).
 *
 * Every allocation CareSync's own code makes (malloc, calloc, realloc,
 * strdup, strndup: the linker routes them here with -Wl,--wrap=...), every
 * one jansson makes (core's allocators, core_json_init, call malloc) and every one SQLite makes
 * (SQLITE_CONFIG_MALLOC) passes through one counter. failalloc_arm(n) makes
 * the n-th of them from now on return NULL, once; a scenario run with
 * n = 1, 2, 3, … until the failure no longer fires has met an allocation
 * failure at every point it allocates. ASan/LSan (the test build) turn a
 * crash or a leak on any of those paths into a failed test. */
#ifndef CARESYNC_FAILALLOC_H
#define CARESYNC_FAILALLOC_H

#include <stdbool.h>

/* Route jansson and SQLite through the counter; call once, first thing in
 * main (SQLite takes its allocator only before it initialises). */
void failalloc_install(void);
/* The n-th allocation from now fails (n >= 1); 0 disarms. */
void failalloc_arm(long n);
/* Whether the armed failure happened since failalloc_arm. */
bool failalloc_fired(void);

#endif
