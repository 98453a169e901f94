/* libFuzzer target: the request target as the server sees it. The input is
 * a raw target ("/path?a=1&b=%ff"); it is split and percent-decoded the way
 * libmicrohttpd does (MHD_http_unescape, '+' as space in the query), and
 * every piece goes through http_text_valid, the check the server makes
 * before routing. The oracle: a piece is accepted exactly when jansson can
 * carry it as a JSON string and it holds no control character; accepting
 * more would let a handler quote bytes that turn its answer into a 500, and
 * refusing more would turn away valid UTF-8. */
#include <microhttpd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

static void check(char *piece, size_t len) {
    bool ok = http_text_valid(piece, len);
    bool controls = false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)piece[i] < 0x20 || piece[i] == 0x7f) controls = true;
    json_t *j = json_stringn(piece, len);
    bool expect = j && !controls;
    json_decref(j);
    if (ok != expect) abort();
}

/* Decode in place like libmicrohttpd and check; returns nothing. */
static void decode_check(char *s, bool query) {
    if (query)
        for (char *p = s; *p; p++)
            if (*p == '+') *p = ' ';
    size_t n = MHD_http_unescape(s);
    check(s, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *t = malloc(size + 1);
    if (!t) return 0;
    memcpy(t, data, size);
    t[size] = '\0';
    /* The whole input as raw bytes, NULs included, */
    check(t, size);
    /* then as a target: path and query parameters. */
    char *q = strchr(t, '?');
    if (q) *q++ = '\0';
    decode_check(t, false);
    for (char *save = NULL, *kv = q ? strtok_r(q, "&", &save) : NULL; kv; kv = strtok_r(NULL, "&", &save)) {
        char *v = strchr(kv, '=');
        if (v) *v++ = '\0';
        decode_check(kv, true);
        if (v) decode_check(v, true);
    }
    free(t);
    return 0;
}
