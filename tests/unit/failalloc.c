/* See failalloc.h. The counter is process-wide and atomic: the market
 * scenarios run with the ledger's producer thread allocating while the
 * scenario's thread waits for its block, and exactly one allocation of the
 * two threads must take the armed failure. */
#include "failalloc.h"

#include "core/core.h"

#include <jansson.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);

static atomic_long countdown; /* 0: disarmed */
static atomic_bool fired;

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FAILALLOC_TRACE 1
void __sanitizer_print_stack_trace(void);
#endif
#endif

static bool fail_now(void) {
    if (atomic_load(&countdown) <= 0) return false;
    if (atomic_fetch_sub(&countdown, 1) != 1) return false; /* only the one that takes it from 1 to 0 */
    atomic_store(&fired, true);
#ifdef FAILALLOC_TRACE
    /* FAILALLOC_TRACE=1 in the environment: where each injected failure
     * happened, to find the caller that ignored it. */
    static int trace = -1;
    if (trace < 0) trace = getenv("FAILALLOC_TRACE") != NULL;
    if (trace) __sanitizer_print_stack_trace();
#endif
    return true;
}

void failalloc_arm(long n) {
    atomic_store(&countdown, n > 0 ? n : 0);
    atomic_store(&fired, false);
}

bool failalloc_fired(void) { return atomic_load(&fired); }

void *__wrap_malloc(size_t n) { return fail_now() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { return fail_now() ? NULL : __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { return fail_now() ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s) { return fail_now() ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n) { return fail_now() ? NULL : __real_strndup(s, n); }

/* SQLite: its default allocator, with the counter in front of the calls
 * that can fail. */
static sqlite3_mem_methods base;
static void *sq_malloc(int n) { return fail_now() ? NULL : base.xMalloc(n); }
static void *sq_realloc(void *p, int n) { return fail_now() ? NULL : base.xRealloc(p, n); }

void failalloc_install(void) {
    /* jansson: core's allocators (core_json_loadb and the others need
     * theirs to see a failure). They call malloc, which the --wrap above
     * routes through the counter. */
    core_json_init();
    if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &base) == SQLITE_OK) {
        sqlite3_mem_methods m = base;
        m.xMalloc = sq_malloc;
        m.xRealloc = sq_realloc;
        sqlite3_config(SQLITE_CONFIG_MALLOC, &m);
    }
}
