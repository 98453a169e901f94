/* http — the HTTP server (libmicrohttpd, thread pool), a small router, JSON
 * request/response helpers, static files and security headers.
 *
 * http knows nothing of accounts or records: handlers registered on the
 * router get an opaque http_request, read it through accessors, and answer
 * exactly once with one of the http_respond_* calls. Strings returned by
 * accessors are borrowed and live until the request completes. */
#ifndef CARESYNC_HTTP_H
#define CARESYNC_HTTP_H

#include <jansson.h>

#include "core/core.h"

typedef struct http_request http_request;
typedef struct http_router http_router;
typedef struct http_server http_server;

/* A handler; ctx is the pointer given to http_server_start. */
typedef void (*http_handler)(http_request *rq, void *ctx);

/* ---- router ------------------------------------------------------------ */
/* Patterns are literal segments and {name} captures: "/api/records/{id}". */
http_router *http_router_new(void);
void http_router_free(http_router *r);
/* Returns false if the route table is full or the pattern is malformed. */
bool http_router_add(http_router *r, const char *method, const char *pattern, http_handler fn);
/* The same for a route taking large bodies (uploads): max_body replaces the
 * server's default limit for it. */
bool http_router_add_upload(http_router *r, const char *method, const char *pattern, http_handler fn, size_t max_body);

typedef enum { HTTP_ROUTE_FOUND, HTTP_ROUTE_NO_PATH, HTTP_ROUTE_NO_METHOD } http_route_result;
#define HTTP_MAX_PARAMS 4
typedef struct {
    http_handler fn;
    int nparams;
    char names[HTTP_MAX_PARAMS][24];
    char values[HTTP_MAX_PARAMS][128];
    char allow[64];  /* for NO_METHOD: the methods the path does take, "GET, PUT" */
    size_t max_body; /* FOUND: the route's body limit, 0 = the server's */
} http_match;
/* Pure matching, used by the server and tests. */
http_route_result http_router_match(const http_router *r, const char *method, const char *path, http_match *m);

/* ---- server ------------------------------------------------------------ */
typedef struct {
    const char *host; /* bind address; must be loopback unless TLS is on */
    int port;         /* 0 picks a free port (see http_server_port) */
    int threads;
    size_t max_body;
    const char *web_dir;  /* static files; NULL disables them */
    const char *tls_cert; /* PEM paths; both or neither */
    const char *tls_key;
    /* Connection limits; 0 takes the default in brackets. */
    unsigned max_connections;    /* all clients together [2000] */
    unsigned per_ip_connections; /* from one client address [64] */
    unsigned head_timeout;       /* seconds from accepting a connection, or from the end of its
                                    previous request, to the end of the next request head; this
                                    also covers the TLS handshake and bounds keep-alive idling [10] */
    unsigned idle_timeout;       /* seconds without a byte either way while a body is received or a
                                    response is sent [30] */
    unsigned min_body_rate;      /* a body must arrive at >= this many bytes/s on average, after a
                                    grace of head_timeout seconds [1024] */
} http_options;

/* Router is borrowed and must outlive the server. */
core_status http_server_start(const http_options *opt, const http_router *router, void *ctx, http_server **out,
                              core_error *err);
int http_server_port(const http_server *s);
bool http_server_tls(const http_server *s);
/* Stop accepting, let in-flight requests finish (deferred ones included;
 * those still waiting after 10 s are answered 503), free. Accepts NULL. */
void http_server_stop(http_server *s);

/* ---- request validation ------------------------------------------------ */
/* The server checks the decoded path and every query name and value with
 * this before routing, and answers 400 invalid_url when it fails, so every
 * handler sees only text that JSON can carry: well-formed UTF-8 (RFC 3629:
 * no overlong forms, surrogates or code points past U+10FFFF) without C0
 * control characters or DEL. Pure; fuzzed by tests/fuzz/fuzz_url.c. */
bool http_text_valid(const char *s, size_t len);
/* Limits of a request head the server answers itself, as JSON: a request
 * target longer than HTTP_MAX_TARGET bytes is 414 uri_too_long, header
 * fields (names and values) over HTTP_MAX_HEADERS bytes are 431
 * headers_too_large. */
#define HTTP_MAX_TARGET (8u << 10)
#define HTTP_MAX_HEADERS (16u << 10)

/* ---- request accessors -------------------------------------------------- */
const char *http_method(const http_request *rq);
const char *http_path(const http_request *rq);
const char *http_param(const http_request *rq, const char *name); /* route capture */
const char *http_query(const http_request *rq, const char *name);
const char *http_header(const http_request *rq, const char *name);
const char *http_cookie(const http_request *rq, const char *name);
const char *http_client_addr(const http_request *rq);
bool http_is_tls(const http_request *rq);
const char *http_body(const http_request *rq, size_t *len);

/* Parse the body as a JSON object. On failure responds (415 for a non-JSON
 * content type, 400 for malformed JSON, 500 when out of memory) and returns NULL. The result is owned
 * by the request and freed when it completes. */
json_t *http_json_body(http_request *rq);
/* The pure parser behind it (fuzzed): rejects duplicate keys, non-objects and
 * NUL bytes. Returns a new reference or NULL with err filled: CORE_ERR_INVALID
 * (the message says why) or CORE_ERR_NOMEM (core_json_loadb). */
json_t *http_parse_json_object(const char *body, size_t len, core_error *err);

/* multipart/form-data bodies (uploads), parsed by libmicrohttpd's post
 * processor. http_form parses once; on a body that is not multipart it
 * responds 415 (400 if malformed) and returns false. Parts are owned by the
 * request; data is NUL-terminated for text values. */
typedef struct {
    const char *name, *filename, *content_type;
    const uint8_t *data;
    size_t len;
} http_form_part;
bool http_form(http_request *rq);
const http_form_part *http_form_get(const http_request *rq, const char *name);

/* ---- responses (call exactly one, once) --------------------------------- */
/* Extra header for the response; name/value copied. Up to 8 per request. */
void http_add_header(http_request *rq, const char *name, const char *value);
/* body is stolen (json_decref'd by http). */
void http_respond_json(http_request *rq, int status, json_t *body);
/* Already-serialised JSON text (copied). */
void http_respond_json_text(http_request *rq, int status, const char *text, size_t len);
/* The same, handing text over (no copy): it must be malloc'd JSON text with
 * text[len] == '\0'. http wipes and frees it once sent, or at once on failure. */
void http_respond_json_owned(http_request *rq, int status, char *text, size_t len);
/* A binary body of content_type, handed over: it must be malloc'd; http
 * wipes and frees it once sent, or at once on failure. Like every API
 * response it is sent with Cache-Control: no-store. */
void http_respond_bytes_owned(http_request *rq, int status, const char *content_type, uint8_t *body, size_t len);
/* {"error":{"code","message","field"?}} */
void http_respond_error(http_request *rq, int status, const char *code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
bool http_responded(const http_request *rq);

/* ---- answering later (a deferred request) --------------------------------
 * A handler whose answer waits on something slow that calls back (a ledger
 * commit) need not hold a server thread meanwhile: it calls
 * http_request_defer, hands the handle to whatever will call back, and
 * returns without responding; the connection is suspended. The callback,
 * on any thread, calls http_deferred_wake(d, fn, arg) exactly once (d is
 * gone after): the connection is resumed and fn(rq, arg) then runs on a
 * server thread, as a handler would, and answers with any http_respond_*
 * (none: 500). fn owns arg and frees it. fn gets rq == NULL (only to free
 * arg; possibly on the waker's thread) when there is nothing to answer any
 * more: the client's connection is gone, or the server stopped and, after
 * its 10 s grace period, answered every request still waiting 503
 * `unconfirmed` (what it waited for may still happen). Waking before the
 * handler has returned is fine; the handle stays valid until woken, also
 * when the client has gone (a suspended connection notices only once
 * resumed). While suspended a connection keeps its place under the
 * connection limits and no timeout runs on it (libmicrohttpd's restarts on
 * resume). */
typedef struct http_deferred http_deferred;
typedef void (*http_answer_fn)(http_request *rq, void *arg);
/* On the handler's thread, before any response. NULL once the server has
 * stopped waiting for deferred requests: it answered 503 shutting_down and
 * the handler must not start what it would wait for. */
http_deferred *http_request_defer(http_request *rq);
void http_deferred_wake(http_deferred *d, http_answer_fn fn, void *arg);

#endif
