/* http — validation of the request target. libmicrohttpd percent-decodes the
 * path and the query into raw bytes, so "/%ff" reaches us as the byte 0xFF.
 * Such bytes cannot be put into a JSON error message or a database column as
 * text, so the server refuses them once, here, before any handler runs. */
#include "http/http.h"

bool http_text_valid(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        unsigned c = *p;
        if (c < 0x80) {
            /* C0 controls and DEL: no URL needs them, and NUL would cut a
             * C string short of what was checked. */
            if (c < 0x20 || c == 0x7f) return false;
            p++;
            continue;
        }
        size_t n;
        unsigned cp, min;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 2;
            cp = c & 0x1f;
            min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 3;
            cp = c & 0x0f;
            min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 4;
            cp = c & 0x07;
            min = 0x10000;
        } else
            return false; /* continuation byte first, C0/C1 overlong lead, or past U+10FFFF */
        if ((size_t)(end - p) < n) return false;
        for (size_t i = 1; i < n; i++) {
            if ((p[i] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (p[i] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        p += n;
    }
    return true;
}
