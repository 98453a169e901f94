/* http — router. A linear scan over a few dozen routes costs nanoseconds;
 * a trie would be more code to get wrong for no measurable gain. */
#include "http/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUTES 128 /* a fixed table; api_register fails loudly when it is full */

typedef struct {
    char method[8];
    char pattern[128];
    http_handler fn;
    size_t max_body; /* 0: the server's default */
} route;

struct http_router {
    int n;
    route routes[MAX_ROUTES];
};

http_router *http_router_new(void) { return calloc(1, sizeof(http_router)); }
void http_router_free(http_router *r) { free(r); }

bool http_router_add_upload(http_router *r, const char *method, const char *pattern, http_handler fn, size_t max_body) {
    if (r->n >= MAX_ROUTES || strlen(method) >= 8 || strlen(pattern) >= 128 || pattern[0] != '/') return false;
    route *rt = &r->routes[r->n++];
    snprintf(rt->method, sizeof rt->method, "%s", method);
    snprintf(rt->pattern, sizeof rt->pattern, "%s", pattern);
    rt->fn = fn;
    rt->max_body = max_body;
    return true;
}

bool http_router_add(http_router *r, const char *method, const char *pattern, http_handler fn) {
    return http_router_add_upload(r, method, pattern, fn, 0);
}

/* Match path against pattern segment by segment, capturing {name}s. */
static bool match_pattern(const char *pattern, const char *path, http_match *m) {
    m->nparams = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            if (!close || m->nparams >= HTTP_MAX_PARAMS) return false;
            size_t nlen = (size_t)(close - p - 1);
            const char *end = strchr(s, '/');
            size_t vlen = end ? (size_t)(end - s) : strlen(s);
            if (vlen == 0 || vlen >= sizeof m->values[0] || nlen >= sizeof m->names[0]) return false;
            memcpy(m->names[m->nparams], p + 1, nlen);
            m->names[m->nparams][nlen] = '\0';
            memcpy(m->values[m->nparams], s, vlen);
            m->values[m->nparams][vlen] = '\0';
            m->nparams++;
            p = close + 1;
            s += vlen;
        } else {
            if (*p != *s) return false;
            p++;
            s++;
        }
    }
    return *p == '\0' && *s == '\0';
}

http_route_result http_router_match(const http_router *r, const char *method, const char *path, http_match *m) {
    memset(m, 0, sizeof *m);
    bool path_seen = false;
    http_match tmp;
    for (int i = 0; i < r->n; i++) {
        const route *rt = &r->routes[i];
        if (!match_pattern(rt->pattern, path, &tmp)) continue;
        /* HEAD is answered by GET handlers (the body is dropped by the server). */
        if (strcmp(rt->method, method) == 0 || (strcmp(method, "HEAD") == 0 && strcmp(rt->method, "GET") == 0)) {
            *m = tmp;
            m->fn = rt->fn;
            m->max_body = rt->max_body;
            return HTTP_ROUTE_FOUND;
        }
        path_seen = true;
        size_t used = strlen(m->allow);
        if (!strstr(m->allow, rt->method))
            snprintf(m->allow + used, sizeof m->allow - used, "%s%s", used ? ", " : "", rt->method);
    }
    return path_seen ? HTTP_ROUTE_NO_METHOD : HTTP_ROUTE_NO_PATH;
}
