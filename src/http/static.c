/* http — static files from the web directory. Paths are checked segment by
 * segment (no "..", no hidden files) and opened relative to the web root, so
 * no request can name a file outside it. */
#include "http/internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *ext, *type;
} mime[] = {
    {".html", "text/html; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".json", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".jpg", "image/jpeg"},
    {".jpeg", "image/jpeg"},
    {".webp", "image/webp"},
    {".ico", "image/x-icon"},
    {".txt", "text/plain; charset=utf-8"},
    {".woff2", "font/woff2"},
    {".webmanifest", "application/manifest+json"},
};

static const char *mime_for(const char *path) {
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof mime / sizeof mime[0]; i++)
        if (strcmp(dot, mime[i].ext) == 0) return mime[i].type;
    return NULL;
}

static bool safe_path(const char *p) {
    if (p[0] != '/') return false;
    for (const char *s = p; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == '\\' || c == 0x7f) return false;
        /* every segment must be non-empty and not start with '.' */
        if (c == '/' && (s[1] == '/' || s[1] == '.')) return false;
    }
    return true;
}

void http_serve_static(http_request *rq, const char *web_dir) {
    char rel[1100];
    const char *p = rq->path;
    if (!safe_path(p)) {
        http_respond_error(rq, 404, "not_found", NULL, "no such page");
        return;
    }
    if (strcmp(p, "/") == 0) p = "/index.html";
    const char *last = strrchr(p, '/');
    bool has_ext = strchr(last, '.') != NULL;
    /* Pretty URLs: /records serves records.html. */
    snprintf(rel, sizeof rel, "%s%s%s", web_dir, p, has_ext ? "" : ".html");
    const char *type = mime_for(rel);
    int fd = type ? open(rel, O_RDONLY | O_CLOEXEC) : -1;
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        if (fd >= 0) close(fd);
        http_respond_error(rq, 404, "not_found", NULL, "no such page: %s", rq->path);
        return;
    }
    rq->responded = true;
    rq->status = 200;
    rq->response = MHD_create_response_from_fd((uint64_t)sb.st_size, fd); /* MHD closes fd */
    if (!rq->response) {
        close(fd);
        return;
    }
    MHD_add_response_header(rq->response, "Content-Type", type);
    MHD_add_response_header(rq->response, "Cache-Control", "no-cache");
    http_security_headers(rq->response, rq->tls, false);
}
