/* http — libmicrohttpd daemon: epoll with an internal thread pool.
 *
 * Request lifecycle in libmicrohttpd's access-handler protocol:
 *   1st call: allocate our http_request, return MHD_YES without a response.
 *     (Queueing on the first call makes 0.9.75 answer "Connection: close",
 *     which cuts keep-alive throughput by ~4x.)
 *   middle calls: body chunks, appended up to max_body; a declared
 *     Content-Length over the limit is answered 413 on the first call.
 *   last call (no more data): route, run the handler, queue its response.
 * on_completed frees the request however it ended. */
#include "http/internal.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <strings.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct http_server {
    struct MHD_Daemon *d;
    const http_router *router;
    void *ctx;
    http_options opt;
    bool tls;
    int port;
    char *cert_pem, *key_pem;
    atomic_int inflight;   /* requests begun and not yet completed */
    atomic_bool stopping;
};

/* Bodies declared over the limit are read and discarded up to this size so
 * the client, which is still sending, can read the 413 instead of a reset.
 * Larger ones are answered at once and the connection closed. */
#define DRAIN_LIMIT (8u << 20)

bool http_server_stopping(struct http_server *s) { return s && atomic_load(&s->stopping); }

int http_server_port(const http_server *s) { return s->port; }
bool http_server_tls(const http_server *s) { return s->tls; }

/* ---- accessors ---------------------------------------------------------- */
const char *http_method(const http_request *rq) { return rq->method; }
const char *http_path(const http_request *rq) { return rq->path; }
const char *http_client_addr(const http_request *rq) { return rq->client; }
bool http_is_tls(const http_request *rq) { return rq->tls; }

const char *http_body(const http_request *rq, size_t *len) {
    if (len) *len = rq->body_len;
    return rq->body ? rq->body : "";
}

const char *http_param(const http_request *rq, const char *name) {
    for (int i = 0; i < rq->match.nparams; i++)
        if (strcmp(rq->match.names[i], name) == 0) return rq->match.values[i];
    return NULL;
}

const char *http_query(const http_request *rq, const char *name) {
    return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_header(const http_request *rq, const char *name) {
    return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

const char *http_cookie(const http_request *rq, const char *name) {
    return MHD_lookup_connection_value(rq->conn, MHD_COOKIE_KIND, name);
}

/* ---- dispatch ----------------------------------------------------------- */
static void dispatch(http_server *s, http_request *rq) {
    if (rq->too_large) {
        http_respond_error(rq, 413, "payload_too_large", NULL, "the request body exceeds %zu bytes", rq->limit);
        return;
    }
    bool is_api = strncmp(rq->path, "/api/", 5) == 0 || strcmp(rq->path, "/api") == 0;
    if (!is_api) {
        if (strcmp(rq->method, "GET") != 0 && strcmp(rq->method, "HEAD") != 0) {
            http_add_header(rq, "Allow", "GET, HEAD");
            http_respond_error(rq, 405, "method_not_allowed", NULL, "pages can only be fetched with GET");
        } else if (s->opt.web_dir) {
            http_serve_static(rq, s->opt.web_dir);
        } else {
            http_respond_error(rq, 404, "not_found", NULL, "no such page");
        }
        return;
    }
    switch (http_router_match(s->router, rq->method, rq->path, &rq->match)) {
    case HTTP_ROUTE_FOUND:
        rq->match.fn(rq, s->ctx);
        if (!rq->responded)
            http_respond_error(rq, 500, "internal", NULL, "the server did not produce a response");
        break;
    case HTTP_ROUTE_NO_METHOD:
        http_add_header(rq, "Allow", rq->match.allow);
        http_respond_error(rq, 405, "method_not_allowed", NULL, "%s is not allowed on %s; use %s", rq->method,
                           rq->path, rq->match.allow);
        break;
    case HTTP_ROUTE_NO_PATH:
        http_respond_error(rq, 404, "not_found", NULL, "no such endpoint: %s", rq->path);
        break;
    }
}

static enum MHD_Result queue(http_request *rq) {
    if (!rq->response) return MHD_NO; /* allocation failed: drop the connection */
    enum MHD_Result r = MHD_queue_response(rq->conn, (unsigned)rq->status, rq->response);
    MHD_destroy_response(rq->response);
    rq->response = NULL;
    return r;
}

static void client_address(struct MHD_Connection *conn, char out[64]) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, 64, "unknown");
    if (!ci || !ci->client_addr) return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out, 64);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out, 64);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    http_server *s = cls;
    http_request *rq = *con_cls;
    if (!rq) {
        rq = calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        rq->conn = conn;
        rq->server = s;
        rq->method = method;
        rq->tls = s->tls;
        if (snprintf(rq->path, sizeof rq->path, "%s", url) >= (int)sizeof rq->path) snprintf(rq->path, sizeof rq->path, "/too-long");
        client_address(conn, rq->client);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        *con_cls = rq;
        atomic_fetch_add(&s->inflight, 1);
        if (atomic_load(&s->stopping)) {
            http_add_header(rq, "Retry-After", "5");
            http_respond_error(rq, 503, "shutting_down", NULL, "the server is restarting; try again in a moment");
            return queue(rq);
        }
        /* The route decides the body limit (uploads take more than JSON). */
        http_match m;
        rq->limit = s->opt.max_body;
        if (!strncmp(rq->path, "/api/", 5) && http_router_match(s->router, method, rq->path, &m) == HTTP_ROUTE_FOUND &&
            m.max_body)
            rq->limit = m.max_body;
        unsigned long long declared = cl ? strtoull(cl, NULL, 10) : 0;
        if (declared > rq->limit) {
            rq->too_large = true;
            const char *expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Expect");
            /* With "Expect: 100-continue" the client waits for us: answer
             * before it sends anything. Otherwise drain (see DRAIN_LIMIT). */
            if ((expect && strcasecmp(expect, "100-continue") == 0) || declared > DRAIN_LIMIT) {
                dispatch(s, rq);
                return queue(rq);
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (rq->responded) { *upload_data_size = 0; return MHD_YES; }
        if (!rq->too_large && rq->body_len + *upload_data_size > rq->limit) rq->too_large = true;
        if (rq->too_large) {
            /* A body over the limit: drop what arrives (no memory is used)
             * and answer 413 when it ends. libmicrohttpd 0.9.75 cannot queue
             * a response mid-upload, so past DRAIN_LIMIT we hang up. */
            rq->discarded += *upload_data_size;
            if (rq->discarded > DRAIN_LIMIT) return MHD_NO;
            *upload_data_size = 0;
            free(rq->body);
            rq->body = NULL;
            rq->body_len = rq->body_cap = 0;
            return MHD_YES;
        }
        if (rq->body_len + *upload_data_size + 1 > rq->body_cap) {
            size_t cap = rq->body_cap ? rq->body_cap : 1024;
            while (cap < rq->body_len + *upload_data_size + 1) cap *= 2;
            char *nb = realloc(rq->body, cap);
            if (!nb) return MHD_NO;
            rq->body = nb;
            rq->body_cap = cap;
        }
        memcpy(rq->body + rq->body_len, upload_data, *upload_data_size);
        rq->body_len += *upload_data_size;
        rq->body[rq->body_len] = '\0';
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rq->responded) return MHD_YES; /* 413 already queued */
    dispatch(s, rq);
    return queue(rq);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)conn;
    (void)toe;
    http_request *rq = *con_cls;
    if (!rq) return;
    atomic_fetch_sub(&rq->server->inflight, 1);
    free(rq->body);
    json_decref(rq->json);
    http_form_free(rq->form);
    for (int i = 0; i < rq->nheaders; i++) {
        free(rq->hname[i]);
        free(rq->hvalue[i]);
    }
    if (rq->response) MHD_destroy_response(rq->response);
    free(rq);
    *con_cls = NULL;
}

/* libmicrohttpd hands us its own printf-style format strings. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
#pragma GCC diagnostic pop
    size_t n = strlen(msg);
    if (n && msg[n - 1] == '\n') msg[n - 1] = '\0';
    core_log(CORE_LOG_WARN, "http: %s", msg);
}

static bool is_loopback(const char *host) {
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 || strcmp(host, "localhost") == 0;
}

core_status http_server_start(const http_options *opt, const http_router *router, void *ctx, http_server **out,
                              core_error *err) {
    *out = NULL;
    http_server *s = calloc(1, sizeof *s);
    if (!s) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    s->opt = *opt;
    s->router = router;
    s->ctx = ctx;
    s->tls = opt->tls_cert && opt->tls_key;
    if ((opt->tls_cert != NULL) != (opt->tls_key != NULL)) {
        free(s);
        return core_fail(err, CORE_ERR_INVALID, "tls", "--tls-cert and --tls-key must be given together");
    }
    const char *host = opt->host ? opt->host : "127.0.0.1";
    if (!s->tls && !is_loopback(host)) {
        free(s);
        return core_fail(err, CORE_ERR_INVALID, "host",
                         "refusing to listen on %s without TLS; give --tls-cert and --tls-key, or use 127.0.0.1", host);
    }
    if (s->tls) {
        core_status rc = core_read_file(opt->tls_cert, &s->cert_pem, NULL, err);
        if (!rc) rc = core_read_file(opt->tls_key, &s->key_pem, NULL, err);
        if (rc) { free(s->cert_pem); free(s->key_pem); free(s); return rc; }
    }

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)opt->port);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)opt->port);
        flags |= MHD_USE_IPv6;
    } else {
        free(s->cert_pem); free(s->key_pem); free(s);
        return core_fail(err, CORE_ERR_INVALID, "host", "not an IP address: %s", host);
    }
    if (s->tls) flags |= MHD_USE_TLS;

    struct MHD_OptionItem tls_opts[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, s->cert_pem},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, s->key_pem},
        {MHD_OPTION_END, 0, NULL},
    };
    s->d = MHD_start_daemon(flags, (uint16_t)opt->port, NULL, NULL, on_request, s,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(opt->threads > 0 ? opt->threads : 2),
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                            MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                            MHD_OPTION_CONNECTION_LIMIT, 1000u,
                            /* no ADDRESS_REUSE (SO_REUSEPORT: a second server could share the port) */
                            MHD_OPTION_ARRAY, s->tls ? tls_opts : &tls_opts[2],
                            MHD_OPTION_END);
    if (!s->d) {
        free(s->cert_pem); free(s->key_pem); free(s);
        return core_fail(err, CORE_ERR_IO, NULL, "cannot listen on %s port %d (in use, or bad TLS files?)", host,
                         opt->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : opt->port;
    *out = s;
    return CORE_OK;
}

void http_server_stop(http_server *s) {
    if (!s) return;
    /* Stop accepting, then wait (up to 10 s) until every request already
     * begun has been answered: MHD_stop_daemon alone would close connections
     * whose handler had committed a write but whose response was not yet
     * sent. Requests arriving meanwhile on kept-alive connections get 503. */
    atomic_store(&s->stopping, true);
    MHD_socket fd = MHD_quiesce_daemon(s->d);
    double t0 = core_monotonic();
    while (atomic_load(&s->inflight) > 0 && core_monotonic() - t0 < 10.0) usleep(5000);
    MHD_stop_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET) close(fd);
    free(s->cert_pem);
    free(s->key_pem);
    free(s);
}
