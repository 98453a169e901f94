/* http — building responses, JSON bodies and security headers. */
#include "http/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* No inline script or style anywhere: the UI loads everything from 'self'. */
static const char csp[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

void http_security_headers(struct MHD_Response *resp, bool tls, bool is_api) {
    MHD_add_response_header(resp, "Content-Security-Policy", csp);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "Cross-Origin-Opener-Policy", "same-origin");
    MHD_add_response_header(resp, "Permissions-Policy", "camera=(self), geolocation=(), microphone=()");
    if (tls) MHD_add_response_header(resp, "Strict-Transport-Security", "max-age=31536000");
    if (is_api) MHD_add_response_header(resp, "Cache-Control", "no-store");
}

void http_add_header(http_request *rq, const char *name, const char *value) {
    if (rq->nheaders >= HTTP_MAX_EXTRA_HEADERS) return;
    rq->hname[rq->nheaders] = strdup(name);
    rq->hvalue[rq->nheaders] = strdup(value);
    rq->nheaders++;
}

/* Headers every response gets, once its body is attached. */
static void finish_response(http_request *rq, const char *content_type) {
    if (!rq->response) return;
    if (content_type) MHD_add_response_header(rq->response, "Content-Type", content_type);
    for (int i = 0; i < rq->nheaders; i++)
        if (rq->hname[i] && rq->hvalue[i]) MHD_add_response_header(rq->response, rq->hname[i], rq->hvalue[i]);
    if (http_server_stopping(rq->server)) MHD_add_response_header(rq->response, "Connection", "close");
    http_security_headers(rq->response, rq->tls, true);
}

void http_set_response(http_request *rq, int status, const char *content_type, const void *body, size_t len) {
    if (rq->responded) return;
    rq->responded = true;
    rq->status = status;
    rq->response = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    finish_response(rq, content_type);
}

/* libmicrohttpd frees a handed-over body once the response is sent; private
 * text is wiped first so it does not linger in freed heap. The text is JSON,
 * which never holds a NUL byte (jansson escapes it), so strlen is its length. */
static void wipe_free(void *text) {
    explicit_bzero(text, strlen(text));
    free(text);
}

bool http_responded(const http_request *rq) { return rq->responded; }

void http_respond_json(http_request *rq, int status, json_t *body) {
    char *text = body ? core_json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        http_set_response(rq, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    http_set_response(rq, status, "application/json", text, strlen(text));
    free(text);
}

void http_respond_json_text(http_request *rq, int status, const char *text, size_t len) {
    http_set_response(rq, status, "application/json", text, len);
}

void http_respond_json_owned(http_request *rq, int status, char *text, size_t len) {
    if (rq->responded) {
        wipe_free(text);
        return;
    }
    rq->responded = true;
    rq->status = status;
    rq->response = MHD_create_response_from_buffer_with_free_callback(len, text, wipe_free);
    if (!rq->response) wipe_free(text);
    finish_response(rq, "application/json");
}

/* A private binary body (a photo): wiped and freed once sent. */
typedef struct {
    uint8_t *body;
    size_t len;
} owned_bytes;

static void wipe_free_bytes(void *cls) {
    owned_bytes *o = cls;
    explicit_bzero(o->body, o->len);
    free(o->body);
    free(o);
}

void http_respond_bytes_owned(http_request *rq, int status, const char *content_type, uint8_t *body, size_t len) {
    owned_bytes *o = rq->responded ? NULL : malloc(sizeof *o);
    if (!o) {
        explicit_bzero(body, len);
        free(body);
        if (!rq->responded) http_respond_error(rq, 500, "internal", NULL, "out of memory");
        return;
    }
    *o = (owned_bytes){body, len};
    rq->responded = true;
    rq->status = status;
    rq->response = MHD_create_response_from_buffer_with_free_callback_cls(len, body, wipe_free_bytes, o);
    if (!rq->response) wipe_free_bytes(o);
    finish_response(rq, content_type);
}

void http_respond_error(http_request *rq, int status, const char *code, const char *field, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* A message cut to fit must not end inside a UTF-8 sequence: jansson
     * refuses such a string, and the error would become a 500. */
    if (n >= (int)sizeof msg) {
        size_t len = sizeof msg - 1, i = len;
        while (i > 0 && ((unsigned char)msg[i - 1] & 0xc0) == 0x80) i--;
        if (i > 0 && (unsigned char)msg[i - 1] >= 0xc0) {
            unsigned char lead = (unsigned char)msg[i - 1];
            size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
            if (len - (i - 1) < need) msg[i - 1] = '\0';
        }
    }
    json_t *e = json_pack("{s:s,s:s}", "code", code, "message", msg);
    /* A message quoting client text that is not UTF-8 (never after the
     * server's checks, but handlers quote what they like): keep the status
     * and code, drop the quote. */
    if (!e) e = json_pack("{s:s,s:s}", "code", code, "message", "the request could not be processed");
    if (e && field && *field) json_object_set_new(e, "field", json_string(field));
    http_respond_json(rq, status, json_pack("{s:o}", "error", e));
}

json_t *http_parse_json_object(const char *body, size_t len, core_error *err) {
    if (len == 0) {
        core_fail(err, CORE_ERR_INVALID, NULL, "the request body is empty; send a JSON object");
        return NULL;
    }
    /* REJECT_DUPLICATES: {"role":"person","role":"admin"} must not be read
     * one way here and another way by a proxy or a log parser. core's
     * parser: under memory pressure jansson alone can drop a byte of a
     * string and still succeed. */
    json_t *v = core_json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL, err);
    if (!v) return NULL; /* err: "malformed JSON at line L column C: ...", or out of memory */
    if (!json_is_object(v)) {
        json_decref(v);
        core_fail(err, CORE_ERR_INVALID, NULL, "the request body must be a JSON object");
        return NULL;
    }
    return v;
}

json_t *http_json_body(http_request *rq) {
    if (rq->json) return rq->json;
    const char *ct = http_header(rq, "Content-Type");
    size_t n = strlen("application/json");
    if (!ct || strncasecmp(ct, "application/json", n) != 0 || (ct[n] != '\0' && ct[n] != ';' && ct[n] != ' ')) {
        http_respond_error(rq, 415, "unsupported_media_type", NULL, "send the body as Content-Type: application/json");
        return NULL;
    }
    core_error err = {0};
    rq->json = http_parse_json_object(rq->body ? rq->body : "", rq->body_len, &err);
    if (!rq->json && err.code == CORE_ERR_NOMEM)
        http_respond_error(rq, 500, "internal", NULL, "out of memory; nothing was changed");
    else if (!rq->json)
        http_respond_error(rq, 400, "invalid_json", NULL, "%s", err.message);
    return rq->json;
}
