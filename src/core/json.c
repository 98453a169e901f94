/* core — JSON serialisation that never hands out a damaged text.
 *
 * jansson 2.14 (Debian 12) ignores a failed write of an object's key inside
 * json_dumps: when an allocation fails there, it carries on and returns a
 * text with the key missing (`{"kind":"note",:5}`) instead of NULL. Found by
 * tests/unit/test_alloc_failures.c: a record sealed from such a text was
 * stored, and every later read of the person's records failed. Here the
 * output buffer is ours and remembers any failed append, so the result is
 * the whole text or NULL. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

typedef struct {
    char *p;
    size_t len, cap;
    bool failed;
} dump_buf;

static int append(const char *buffer, size_t size, void *data) {
    dump_buf *b = data;
    if (b->failed) return -1;
    if (size > SIZE_MAX / 2 - b->len - 1) {
        b->failed = true;
        return -1;
    }
    if (b->len + size + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + size + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return -1;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, buffer, size);
    b->len += size;
    b->p[b->len] = '\0';
    return 0;
}

char *core_json_dumps(const struct json_t *json, size_t flags) {
    dump_buf b = {0};
    if (json_dump_callback(json, append, &b, flags) != 0 || b.failed || !b.p) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
