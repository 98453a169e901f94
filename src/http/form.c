/* multipart/form-data bodies, parsed with libmicrohttpd's post processor
 * over the body the server has already buffered (within the route's
 * limit). Parts are collected whole: an upload is one photo. */
#include "http/http.h"
#include "http/internal.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_PARTS 8

struct http_form_state {
    http_form_part parts[MAX_PARTS];
    size_t caps[MAX_PARTS];
    int n;
    bool failed;
};

void http_form_free(struct http_form_state *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) {
        free((char *)f->parts[i].name);
        free((char *)f->parts[i].filename);
        free((char *)f->parts[i].content_type);
        free((uint8_t *)f->parts[i].data);
    }
    free(f);
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                               const char *content_type, const char *transfer_encoding, const char *data, uint64_t off,
                               size_t size) {
    (void)kind;
    (void)transfer_encoding;
    struct http_form_state *f = cls;
    if (!key) return MHD_YES;
    int i = f->n - 1;
    /* A new part starts at offset 0 with a name other than the last one's. */
    if (i < 0 || off == 0 || strcmp(f->parts[i].name, key) != 0) {
        if (f->n == MAX_PARTS) {
            f->failed = true;
            return MHD_NO;
        }
        i = f->n++;
        http_form_part *p = &f->parts[i];
        p->name = strdup(key);
        p->filename = filename ? strdup(filename) : NULL;
        p->content_type = content_type ? strdup(content_type) : NULL;
        if (!p->name) return f->failed = true, MHD_NO;
    }
    http_form_part *p = &f->parts[i];
    if (p->len + size + 1 > f->caps[i]) {
        size_t cap = f->caps[i] ? f->caps[i] : 4096;
        while (cap < p->len + size + 1) cap *= 2;
        uint8_t *d = realloc((uint8_t *)p->data, cap);
        if (!d) return f->failed = true, MHD_NO;
        p->data = d;
        f->caps[i] = cap;
    }
    memcpy((uint8_t *)p->data + p->len, data, size);
    p->len += size;
    ((uint8_t *)p->data)[p->len] = 0;
    return MHD_YES;
}

bool http_form(http_request *rq) {
    if (rq->form) return true;
    const char *ct = http_header(rq, "Content-Type");
    if (!ct || strncasecmp(ct, "multipart/form-data", 19) != 0) {
        http_respond_error(rq, 415, "unsupported_media_type", NULL, "send the photo as multipart/form-data");
        return false;
    }
    struct http_form_state *f = calloc(1, sizeof *f);
    struct MHD_PostProcessor *pp = f ? MHD_create_post_processor(rq->conn, 64 * 1024, on_part, f) : NULL;
    if (!pp) {
        free(f);
        http_respond_error(rq, 400, "malformed_form", NULL, "the multipart body has no usable boundary");
        return false;
    }
    enum MHD_Result r = rq->body_len ? MHD_post_process(pp, rq->body, rq->body_len) : MHD_YES;
    enum MHD_Result done = MHD_destroy_post_processor(pp);
    if (r != MHD_YES || done != MHD_YES || f->failed) {
        http_form_free(f);
        http_respond_error(rq, 400, "malformed_form", NULL, "the multipart body is malformed or incomplete");
        return false;
    }
    rq->form = f;
    return true;
}

const http_form_part *http_form_get(const http_request *rq, const char *name) {
    if (!rq->form) return NULL;
    for (int i = 0; i < rq->form->n; i++)
        if (!strcmp(rq->form->parts[i].name, name)) return &rq->form->parts[i];
    return NULL;
}
