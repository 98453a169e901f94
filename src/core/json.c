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
#include <pthread.h>
#include <stdio.h>
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

/* ---- parsing: the exact value or CORE_ERR_NOMEM ----
 *
 * jansson 2.14's lexer ignores strbuffer_append_byte's failure (lex_save):
 * when growing a string's buffer fails, the byte is dropped and the parse
 * goes on. Found by tests/unit/test_alloc_failures.c: a stored
 * "atopic_dermatitis.L20.9" came back "atopic_dermatiis.L20.9". jansson
 * cannot tell us, so its allocator does: every failure sets a flag of the
 * calling thread (a parse runs on one thread, start to end), and a parse
 * that saw one is thrown away. The flag is cleared before each parse, so
 * failures elsewhere (json_pack, say, which reports its own) never taint a
 * later parse. */
static _Thread_local bool alloc_failed;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;

/* malloc, not a cached pointer to it: the allocation-failure test routes
 * malloc through its counter with the linker's --wrap, and that must reach
 * these calls too. */
void *core_json_malloc(size_t n) {
    void *p = malloc(n);
    if (!p) alloc_failed = true;
    return p;
}

void core_json_free(void *p) { free(p); }

static void install(void) { json_set_alloc_funcs(core_json_malloc, core_json_free); }

void core_json_init(void) { pthread_once(&install_once, install); }

/* jerr for a failure that is not at a place in the text. */
static void no_place(json_error_t *jerr, const char *text) {
    if (!jerr) return;
    jerr->line = jerr->column = -1;
    jerr->position = 0;
    jerr->source[0] = '\0';
    /* Cut to jansson's field (160 bytes); the whole message is in err. */
    size_t n = strlen(text), cap = sizeof jerr->text - 1;
    if (n > cap) n = cap;
    memcpy(jerr->text, text, n);
    jerr->text[n] = '\0';
}

static json_t *nomem(json_error_t *jerr, core_error *err) {
    no_place(jerr, "out of memory");
    core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    return NULL;
}

json_t *core_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *jerr, core_error *err) {
    core_json_init();
    json_error_t local;
    if (!jerr) jerr = &local;
    alloc_failed = false;
    json_t *v = json_loadb(buf, len, flags, jerr);
    if (alloc_failed) {
        /* Whatever came back may have lost bytes: never hand it out. */
        json_decref(v);
        alloc_failed = false;
        return nomem(jerr, err);
    }
    if (!v)
        core_fail(err, CORE_ERR_INVALID, NULL, "malformed JSON at line %d column %d: %s", jerr->line, jerr->column,
                  jerr->text);
    return v;
}

json_t *core_json_loads(const char *s, size_t flags, json_error_t *jerr, core_error *err) {
    if (!s) {
        no_place(jerr, "no text");
        core_fail(err, CORE_ERR_INVALID, NULL, "no JSON text");
        return NULL;
    }
    return core_json_loadb(s, strlen(s), flags, jerr, err);
}

/* Read whole, then parsed like any other text: one parser, one check. */
static json_t *load_text(char *text, size_t len, core_status rc, const core_error *e, size_t flags, json_error_t *jerr,
                         core_error *err) {
    if (rc) {
        no_place(jerr, e->message);
        if (err) *err = *e;
        return NULL;
    }
    json_t *v = core_json_loadb(text, len, flags, jerr, err);
    free(text);
    return v;
}

json_t *core_json_loadf(FILE *f, const char *name, size_t flags, json_error_t *jerr, core_error *err) {
    char *text = NULL;
    size_t len = 0;
    core_error e = {0};
    core_status rc = core_read_stream(f, name, &text, &len, &e);
    return load_text(text, len, rc, &e, flags, jerr, err);
}

json_t *core_json_load_file(const char *path, size_t flags, json_error_t *jerr, core_error *err) {
    char *text = NULL;
    size_t len = 0;
    core_error e = {0};
    core_status rc = core_read_file(path, &text, &len, &e);
    return load_text(text, len, rc, &e, flags, jerr, err);
}
