/* http — private to the http module: the request object shared by server.c,
 * response.c and static.c. Not part of the public API. */
#ifndef CARESYNC_HTTP_INTERNAL_H
#define CARESYNC_HTTP_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>

#include "http/http.h"

#define HTTP_MAX_EXTRA_HEADERS 8

struct http_request {
    struct MHD_Connection *conn;
    struct http_server *server;
    const char *method;
    char path[1024];
    char *body;
    size_t body_len, body_cap;
    size_t discarded; /* bytes of an oversized body thrown away */
    bool too_large;
    bool tls;
    bool responded;
    bool is_head;
    http_match match;
    json_t *json;                 /* parsed body, owned */
    size_t limit;                 /* body limit for this request */
    struct http_form_state *form; /* parsed multipart body, owned */
    char client[64];
    int nheaders;
    char *hname[HTTP_MAX_EXTRA_HEADERS];
    char *hvalue[HTTP_MAX_EXTRA_HEADERS];
    struct MHD_Response *response; /* built by respond_*, queued by the server */
    struct conn_watch *watch;      /* the connection's watchdog entry, or NULL; valid until
                                      on_completed (libmicrohttpd completes a request before it
                                      reports its connection closed, which frees the entry) */
    int status;
    /* A deferred answer (http_request_defer). refs: libmicrohttpd's (dropped
     * by on_completed) and, once deferred, the waker's (dropped by
     * http_deferred_wake); the request is freed by whichever goes last. */
    atomic_int refs;
    bool deferred; /* set by the handler's thread before it returns */
    bool d_linked; /* on the server's deferred list (under the server's defer_lock) */
    struct http_request *d_prev, *d_next;
    pthread_mutex_t dlock; /* guards the fields below, and the response while suspended */
    bool d_woken;          /* http_deferred_wake stored d_fn/d_arg */
    http_answer_fn d_fn;   /* not yet run; owns d_arg */
    void *d_arg;
    bool d_answered;  /* a response is (being) built: by d_fn, or the server's 503 */
    bool d_suspended; /* libmicrohttpd holds the connection suspended */
    bool d_resumed;   /* someone resumed it (only one may) */
};

void http_form_free(struct http_form_state *f);
/* True once http_server_stop has begun: responses say Connection: close. */
bool http_server_stopping(struct http_server *s);
/* Add the security headers every response carries. */
void http_security_headers(struct MHD_Response *resp, bool tls, bool is_api);
/* Build a response from bytes (copied) and attach extra and security headers. */
void http_set_response(http_request *rq, int status, const char *content_type, const void *body, size_t len);
/* Serve a static file for GET/HEAD of a non-API path. */
void http_serve_static(http_request *rq, const char *web_dir);

#endif
