/* http — libmicrohttpd daemon: epoll with an internal thread pool.
 *
 * Request lifecycle in libmicrohttpd's access-handler protocol:
 *   1st call: allocate our http_request, return MHD_YES without a response.
 *     (Queueing on the first call makes 0.9.75 answer "Connection: close",
 *     which cuts keep-alive throughput by ~4x.)
 *   middle calls: body chunks, appended up to max_body; a declared
 *     Content-Length over the limit is answered 413 on the first call.
 *   last call (no more data): route, run the handler, queue its response.
 * on_completed frees the request however it ended.
 *
 * Deferred answers (http_request_defer). A handler that waits on a ledger
 * commit returns at once; on_request then suspends the connection
 * (MHD_suspend_connection), freeing the pool thread. The waker — the
 * ledger's producer thread — only stores an answer function and its
 * argument under the request's dlock and resumes the connection;
 * libmicrohttpd calls on_request once more, on the connection's own pool
 * thread, which runs the function (building the JSON there, not on the
 * producer) and queues the response. Exactly one party resumes
 * (d_resumed, under dlock), and only a connection that was suspended, so
 * libmicrohttpd cannot have freed it: a suspended connection is never timed
 * out or closed, not even when its client hangs up (that shows only once
 * resumed). Whoever comes first — the waker, or http_server_stop after its
 * grace period (503 unconfirmed) — wins; an answer function that lost is called with
 * NULL so it can free its argument. The request is refcounted
 * (libmicrohttpd's reference ends at on_completed, the waker's in
 * http_deferred_wake), so a waker that comes after the client or the server
 * has gone still finds valid memory, and it touches nothing of the server.
 * MHD_stop_daemon must not meet a suspended connection (libmicrohttpd
 * panics), hence the fail-all step in http_server_stop.
 *
 * Slow clients. libmicrohttpd's own connection timeout is restarted by every
 * byte, so a socket that sends one header byte every few seconds would be
 * held for ever. Here:
 *   - MHD_OPTION_PER_IP_CONNECTION_LIMIT caps the sockets of one client
 *     address (over it, libmicrohttpd closes the new socket at accept), and
 *     MHD_OPTION_CONNECTION_LIMIT all of them together. libmicrohttpd counts
 *     an IPv6 client per full address, but one subscriber usually holds a
 *     whole /64 (2^64 addresses), so the same cap is also applied here per
 *     /64 (on_connection), as the login and sign-up limits count;
 *   - a watchdog thread (below) cuts a connection whose request head has not
 *     been received within head_timeout seconds of the connection being
 *     accepted or of its previous request being completed, and one whose
 *     body arrives slower than min_body_rate on average after that grace.
 * Guarantees: no connection waits for a request head (TLS handshake
 * included) longer than head_timeout + WATCH_TICK, however its bytes are
 * spaced; a body is received at min_body_rate or the connection is cut; a
 * stalled body or response is closed after idle_timeout without a byte.
 * Not covered: a client that reads its response slowly but steadily (the
 * response is built in full before it is sent, so that costs a socket and
 * memory, never a thread). */
#include "http/internal.h"

#include <arpa/inet.h>
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <strings.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* What the watchdog knows of one connection (MHD's socket context). */
typedef enum { WATCH_HEAD, WATCH_BODY, WATCH_BUSY } watch_phase;
typedef struct conn_watch {
    struct conn_watch *prev, *next;
    MHD_socket fd;
    watch_phase phase;
    double since;      /* start of the phase (core_monotonic) */
    size_t body_bytes; /* WATCH_BODY: received so far */
    size_t target_len; /* raw request target of the current request, from the URI log */
    bool target_nul;   /* ... and it holds %00, which decoding would turn into a cut */
    bool cut;          /* shut down by the watchdog */
    /* The client as counted for the per-address limit: an IPv4 address
     * (also when IPv4-mapped) or the /64 of an IPv6 one, tagged by family. */
    uint8_t client_key[9];
} conn_watch;

/* How often the watchdog looks; the deadlines are this much late at most. */
#define WATCH_TICK 0.2

struct http_server {
    struct MHD_Daemon *d;
    const http_router *router;
    void *ctx;
    http_options opt;
    bool tls;
    int port;
    char *cert_pem, *key_pem;
    atomic_int inflight; /* requests begun and not yet completed */
    atomic_bool stopping;
    /* The watchdog: every live connection is on the list, guarded by
     * watch_lock, from MHD's STARTED notification to its CLOSED one. */
    pthread_mutex_t watch_lock;
    pthread_cond_t watch_cond;
    pthread_t watch_thread;
    bool watch_running, watch_stop;
    conn_watch *watch_head;
    /* Deferred requests not yet completed: added by http_request_defer,
     * removed by on_completed; defer_closed once http_server_stop has
     * answered the waiting ones. */
    pthread_mutex_t defer_lock;
    http_request *defer_head;
    bool defer_closed;
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

static void http_request_release(http_request *rq);
/* After dispatch, on the handler's thread: true when the answer is already
 * there to queue, false when the connection was suspended to wait for it. */
static bool deferred_settle(http_request *rq);
/* On the connection's thread once woken (or answered 503): build the answer. */
static void deferred_answer(http_request *rq);

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
        /* A deferred request's response is the responder's to write, maybe
         * right now on another thread: not looked at here. */
        if (!rq->deferred && !rq->responded)
            http_respond_error(rq, 500, "internal", NULL, "the server did not produce a response");
        break;
    case HTTP_ROUTE_NO_METHOD:
        http_add_header(rq, "Allow", rq->match.allow);
        http_respond_error(rq, 405, "method_not_allowed", NULL, "%s is not allowed on %s; use %s", rq->method, rq->path,
                           rq->match.allow);
        break;
    case HTTP_ROUTE_NO_PATH: http_respond_error(rq, 404, "not_found", NULL, "no such endpoint: %s", rq->path); break;
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

/* ---- the watchdog --------------------------------------------------------- */
static conn_watch *watch_of(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void watch_set(http_server *s, conn_watch *w, watch_phase phase) {
    if (!w) return;
    pthread_mutex_lock(&s->watch_lock);
    w->phase = phase;
    w->since = core_monotonic();
    w->body_bytes = 0;
    pthread_mutex_unlock(&s->watch_lock);
}

/* Fill key with what the per-address limit counts the client as; false when
 * the address is not IP (nothing to count). */
static bool client_key(struct MHD_Connection *conn, uint8_t key[9]) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    memset(key, 0, 9);
    if (!ci || !ci->client_addr) return false;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family != AF_INET6) return false;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a)) {
        key[0] = 4;
        memcpy(key + 1, a->s6_addr + 12, 4);
    } else {
        key[0] = 6;
        memcpy(key + 1, a->s6_addr, 8);
    }
    return true;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    http_server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn_watch *w = calloc(1, sizeof *w);
        /* Without memory to watch it, a connection is not served at all:
         * an unwatched one could be held open for ever. */
        if (!w || !ci) {
            free(w);
            if (ci) shutdown(ci->connect_fd, SHUT_RDWR);
            return;
        }
        w->fd = ci->connect_fd;
        w->phase = WATCH_HEAD;
        w->since = core_monotonic();
        bool keyed = client_key(conn, w->client_key);
        pthread_mutex_lock(&s->watch_lock);
        /* The per-/64 count (libmicrohttpd has already applied its own, per
         * full address). A connection over it is cut at once, before any
         * TLS handshake, and stays listed until its CLOSED notification. A
         * linear scan: the list is at most max_connections long. */
        if (keyed) {
            unsigned same = 0;
            for (const conn_watch *o = s->watch_head; o; o = o->next)
                same += !o->cut && memcmp(o->client_key, w->client_key, sizeof w->client_key) == 0;
            if (same >= s->opt.per_ip_connections) {
                w->cut = true;
                shutdown(w->fd, SHUT_RDWR);
            }
        }
        w->next = s->watch_head;
        if (w->next) w->next->prev = w;
        s->watch_head = w;
        pthread_mutex_unlock(&s->watch_lock);
        *socket_context = w;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_watch *w = *socket_context;
        if (!w) return;
        /* libmicrohttpd sends CLOSED before it closes the socket, so while
         * an entry is on the list (under the lock) its fd is still this
         * connection's and shutdown() cannot hit a reused descriptor. */
        pthread_mutex_lock(&s->watch_lock);
        if (w->prev)
            w->prev->next = w->next;
        else
            s->watch_head = w->next;
        if (w->next) w->next->prev = w->prev;
        pthread_mutex_unlock(&s->watch_lock);
        free(w);
        *socket_context = NULL;
    }
}

/* The raw request target, before libmicrohttpd decodes it: its length (for
 * 414) and whether it encodes a NUL byte, which decoding turns into a silent
 * end of string ("/api/records/1%00x" would reach us as "/api/records/1").
 * The return value becomes con_cls; NULL keeps our allocation in on_request.
 * Only this connection's thread reads or writes these two fields. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
    (void)cls;
    conn_watch *w = watch_of(conn);
    if (w) {
        w->target_len = strlen(uri);
        w->target_nul = strstr(uri, "%00") != NULL;
    }
    return NULL;
}

/* Cut connections past their deadline. shutdown() rather than close(): the
 * descriptor stays libmicrohttpd's, which sees end-of-stream on its next
 * read and closes the connection in its own thread, as if the client had
 * gone. Nothing is sent: the request head is incomplete, and writing from
 * this thread could interleave with libmicrohttpd's own writes. */
static void *watchdog(void *arg) {
    http_server *s = arg;
    double head = s->opt.head_timeout, rate = s->opt.min_body_rate;
    pthread_mutex_lock(&s->watch_lock);
    while (!s->watch_stop) {
        double now = core_monotonic();
        for (conn_watch *w = s->watch_head; w; w = w->next) {
            if (w->cut || w->phase == WATCH_BUSY) continue;
            double deadline = w->since + head;
            if (w->phase == WATCH_BODY) deadline += (double)w->body_bytes / rate;
            if (now > deadline) {
                w->cut = true;
                shutdown(w->fd, SHUT_RDWR);
                core_log(CORE_LOG_DEBUG, "http: cut a connection: request %s too slow",
                         w->phase == WATCH_HEAD ? "head" : "body");
            }
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long ns = ts.tv_nsec + (long)(WATCH_TICK * 1e9);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&s->watch_cond, &s->watch_lock, &ts);
    }
    pthread_mutex_unlock(&s->watch_lock);
    return NULL;
}

/* ---- checks on the request head, before routing ---------------------------- */
typedef struct {
    int content_length, transfer_encoding;
    bool bad_field_name;
    const char *te;
    size_t fields;        /* bytes of header names and values */
    const char *bad_name; /* a query parameter that failed http_text_valid */
    bool bad;
} head_scan;

/* RFC 9110 5.1: a field name is a token (letters, digits and
 * !#$%&'*+-.^_`|~). libmicrohttpd keeps what precedes the colon as the name,
 * blanks included, so "Transfer-Encoding : chunked" would match none of the
 * checks below while a front end that trims the blank frames the body as
 * chunked; RFC 9112 5.1 requires a 400 for whitespace before the colon.
 *
 * A field folded over lines (obs-fold, RFC 9112 5.2: reject or unfold)
 * reaches us mangled: libmicrohttpd 0.9.75 appends the continuation line to
 * the *name*, so "Transfer-Encoding:\r\n chunked" arrives as a field named
 * "Transfer-Encodingchunked" and the body would be framed without it. A
 * continuation holding a blank or a colon fails the token rule; a name that
 * starts like a framing header without being one is refused as well. */
static bool field_name_valid(const char *name) {
    if (!*name) return false;
    static const char *const framing[] = {"Content-Length", "Transfer-Encoding"};
    for (size_t i = 0; i < sizeof framing / sizeof *framing; i++) {
        size_t n = strlen(framing[i]);
        if (strncasecmp(name, framing[i], n) == 0 && name[n]) return false;
    }
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
              strchr("!#$%&'*+-.^_`|~", *p)))
            return false;
    return true;
}

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind;
    head_scan *h = cls;
    if (!key || !field_name_valid(key)) h->bad_field_name = true;
    if (!key) return MHD_YES;
    if (strcasecmp(key, "Content-Length") == 0) h->content_length++;
    if (strcasecmp(key, "Transfer-Encoding") == 0) {
        h->transfer_encoding++;
        h->te = value;
    }
    return MHD_YES;
}

static enum MHD_Result scan_query(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind;
    head_scan *h = cls;
    bool key_ok = key && http_text_valid(key, strlen(key));
    if (key_ok && (!value || http_text_valid(value, strlen(value)))) return MHD_YES;
    h->bad = true;
    h->bad_name = key_ok ? key : NULL;
    return MHD_NO;
}

/* Refuse what must not reach a handler. Returns false after responding. */
static bool check_head(http_request *rq, const char *url) {
    struct MHD_Connection *conn = rq->conn;
    conn_watch *w = watch_of(conn);
    /* Any of these answers ends the connection: what follows on it cannot
     * be trusted to start where we think it does. */
    size_t target = w && w->target_len ? w->target_len : strlen(url);
    if (target > HTTP_MAX_TARGET) {
        http_add_header(rq, "Connection", "close");
        http_respond_error(rq, 414, "uri_too_long", NULL, "the request target exceeds %u bytes", HTTP_MAX_TARGET);
        return false;
    }
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    if (ci && ci->header_size > target + HTTP_MAX_HEADERS) {
        http_add_header(rq, "Connection", "close");
        http_respond_error(rq, 431, "headers_too_large", NULL, "the request header fields exceed %u bytes",
                           HTTP_MAX_HEADERS);
        return false;
    }
    /* RFC 9112 6.1 and 6.3: a message with both Content-Length and
     * Transfer-Encoding, or with either of them twice, is how requests are
     * smuggled past a proxy that frames them differently from us. */
    head_scan h = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, scan_header, &h);
    if ((h.content_length && h.transfer_encoding) || h.content_length > 1 || h.transfer_encoding > 1) {
        http_add_header(rq, "Connection", "close");
        http_respond_error(rq, 400, "bad_framing", NULL,
                           "send a body with either one Content-Length or Transfer-Encoding: chunked, not both");
        return false;
    }
    if (h.bad_field_name) {
        http_add_header(rq, "Connection", "close");
        http_respond_error(rq, 400, "bad_framing", NULL,
                           "a header field name holds whitespace (before the colon too) or a character not "
                           "allowed in a name, or a framing header is folded over lines");
        return false;
    }
    if (h.transfer_encoding && strcasecmp(h.te, "chunked") != 0) {
        http_add_header(rq, "Connection", "close");
        http_respond_error(rq, 501, "not_implemented", NULL, "the only transfer coding accepted is chunked");
        return false;
    }
    if ((w && w->target_nul) || !http_text_valid(url, strlen(url))) {
        http_respond_error(rq, 400, "invalid_url", NULL,
                           "the URL is not valid UTF-8 or holds control characters (%%00 included)");
        return false;
    }
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, scan_query, &h);
    if (h.bad) {
        http_respond_error(rq, 400, "invalid_url", h.bad_name,
                           "a query parameter is not valid UTF-8 or holds control characters");
        return false;
    }
    return true;
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
        atomic_init(&rq->refs, 1);
        rq->conn = conn;
        rq->server = s;
        rq->method = method;
        rq->tls = s->tls;
        if (snprintf(rq->path, sizeof rq->path, "%s", url) >= (int)sizeof rq->path)
            snprintf(rq->path, sizeof rq->path, "/too-long");
        client_address(conn, rq->client);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        *con_cls = rq;
        atomic_fetch_add(&s->inflight, 1);
        rq->watch = watch_of(conn);
        watch_set(s, rq->watch, WATCH_BODY);
        if (atomic_load(&s->stopping)) {
            http_add_header(rq, "Retry-After", "5");
            http_respond_error(rq, 503, "shutting_down", NULL, "the server is restarting; try again in a moment");
            watch_set(s, rq->watch, WATCH_BUSY);
            return queue(rq);
        }
        if (!check_head(rq, url)) {
            watch_set(s, rq->watch, WATCH_BUSY);
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
                watch_set(s, rq->watch, WATCH_BUSY);
                return queue(rq);
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (rq->watch) {
            pthread_mutex_lock(&s->watch_lock);
            rq->watch->body_bytes += *upload_data_size;
            pthread_mutex_unlock(&s->watch_lock);
        }
        if (rq->responded) {
            *upload_data_size = 0;
            return MHD_YES;
        }
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
    watch_set(s, rq->watch, WATCH_BUSY);
    if (rq->deferred) {
        /* Called again after MHD_resume_connection: woken, or answered 503. */
        deferred_answer(rq);
        return queue(rq);
    }
    if (rq->responded) return MHD_YES; /* 413 already queued */
    dispatch(s, rq);
    if (rq->deferred && !deferred_settle(rq)) return MHD_YES; /* suspended */
    return queue(rq);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)conn;
    (void)toe;
    http_request *rq = *con_cls;
    if (!rq) return;
    *con_cls = NULL;
    http_server *s = rq->server;
    if (rq->deferred) {
        pthread_mutex_lock(&s->defer_lock);
        if (rq->d_linked) {
            if (rq->d_prev)
                rq->d_prev->d_next = rq->d_next;
            else
                s->defer_head = rq->d_next;
            if (rq->d_next) rq->d_next->d_prev = rq->d_prev;
            rq->d_linked = false;
        }
        pthread_mutex_unlock(&s->defer_lock);
    }
    /* A kept-alive connection now waits for its next request head. */
    watch_set(s, rq->watch, WATCH_HEAD);
    atomic_fetch_sub(&s->inflight, 1);
    http_request_release(rq);
}

/* The last reference frees the request; nothing of the server is touched
 * (a deferred request's responder may come after the server is gone). */
static void http_request_release(http_request *rq) {
    if (atomic_fetch_sub(&rq->refs, 1) != 1) return;
    free(rq->body);
    json_decref(rq->json);
    http_form_free(rq->form);
    for (int i = 0; i < rq->nheaders; i++) {
        free(rq->hname[i]);
        free(rq->hvalue[i]);
    }
    if (rq->response) MHD_destroy_response(rq->response);
    if (rq->deferred) {
        /* Woken but closed before its answer ran (MHD_stop_daemon): the
         * answer function still owns its argument. */
        if (rq->d_fn) rq->d_fn(NULL, rq->d_arg);
        pthread_mutex_destroy(&rq->dlock);
    }
    free(rq);
}

/* ---- deferred answers ------------------------------------------------------ */
http_deferred *http_request_defer(http_request *rq) {
    http_server *s = rq->server;
    assert(!rq->deferred && !rq->responded);
    pthread_mutex_lock(&s->defer_lock);
    if (s->defer_closed) {
        /* Past the stop's grace period: nothing new may start waiting. */
        pthread_mutex_unlock(&s->defer_lock);
        http_add_header(rq, "Retry-After", "5");
        http_respond_error(rq, 503, "shutting_down", NULL, "the server is restarting; try again in a moment");
        return NULL;
    }
    pthread_mutex_init(&rq->dlock, NULL);
    rq->deferred = true;
    atomic_fetch_add(&rq->refs, 1); /* the waker's, dropped by http_deferred_wake */
    rq->d_prev = NULL;
    rq->d_next = s->defer_head;
    if (s->defer_head) s->defer_head->d_prev = rq;
    s->defer_head = rq;
    rq->d_linked = true;
    pthread_mutex_unlock(&s->defer_lock);
    return (http_deferred *)rq;
}

void http_deferred_wake(http_deferred *d, http_answer_fn fn, void *arg) {
    http_request *rq = (http_request *)d;
    bool resume = false, late;
    pthread_mutex_lock(&rq->dlock);
    late = rq->d_answered; /* the server answered it already (stopping) */
    if (!late) {
        rq->d_fn = fn;
        rq->d_arg = arg;
        rq->d_woken = true;
        if (rq->d_suspended && !rq->d_resumed) resume = rq->d_resumed = true;
    }
    pthread_mutex_unlock(&rq->dlock);
    if (late) fn(NULL, arg);
    /* Suspended and not resumed by anyone else: the connection is still
     * libmicrohttpd's live one, so it may be resumed here, after the
     * unlock (libmicrohttpd takes its own locks). */
    if (resume) MHD_resume_connection(rq->conn);
    http_request_release(rq);
}

/* On the connection's thread once woken: the answer function builds the
 * response (or, when the server answered first, only frees its argument). */
static void deferred_answer(http_request *rq) {
    pthread_mutex_lock(&rq->dlock);
    http_answer_fn fn = rq->d_fn;
    void *arg = rq->d_arg;
    bool answered = rq->d_answered;
    rq->d_fn = NULL;
    rq->d_answered = true;
    pthread_mutex_unlock(&rq->dlock);
    if (fn) fn(answered ? NULL : rq, arg);
    if (!rq->responded) http_respond_error(rq, 500, "internal", NULL, "the server did not produce a response");
}

static bool deferred_settle(http_request *rq) {
    pthread_mutex_lock(&rq->dlock);
    bool ready = rq->d_woken || rq->d_answered;
    pthread_mutex_unlock(&rq->dlock);
    if (ready) { /* the ledger was quicker than this thread */
        deferred_answer(rq);
        return true;
    }
    MHD_suspend_connection(rq->conn);
    pthread_mutex_lock(&rq->dlock);
    bool resume = false;
    if (rq->d_woken || rq->d_answered) /* ... woken in between: resume at once */
        resume = rq->d_resumed = true;
    else
        rq->d_suspended = true;
    pthread_mutex_unlock(&rq->dlock);
    if (resume) MHD_resume_connection(rq->conn);
    return false;
}

/* Answer 503 unconfirmed for every deferred request still waiting and
 * resume those suspended, so MHD_stop_daemon finds none. Their writes may
 * still commit (the ledger is closed after the server): the code says so.
 * Later defers are refused (503 shutting_down, before anything starts). */
static void deferred_fail_all(http_server *s) {
    pthread_mutex_lock(&s->defer_lock);
    s->defer_closed = true;
    size_t n = 0;
    for (http_request *rq = s->defer_head; rq; rq = rq->d_next) {
        pthread_mutex_lock(&rq->dlock);
        bool resume = false;
        if (!rq->d_answered && !rq->d_woken) { /* a woken one is answered on its own thread */
            /* Not shutting_down ("not processed"): what it waits for may
             * still happen after this answer. */
            http_add_header(rq, "Retry-After", "5");
            http_respond_error(rq, 503, "unconfirmed", NULL,
                               "the server stopped before the outcome was known; the change may still have been "
                               "made, so look before you retry");
            rq->d_answered = true;
            n++;
            if (rq->d_suspended && !rq->d_resumed) resume = rq->d_resumed = true;
        }
        pthread_mutex_unlock(&rq->dlock);
        if (resume) MHD_resume_connection(rq->conn);
    }
    pthread_mutex_unlock(&s->defer_lock);
    if (n)
        core_log(CORE_LOG_WARN, "http: %zu deferred requests were still waiting at shutdown: answered 503 unconfirmed",
                 n);
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
    /* What a single client does to its own connection (hangs up, sends an
     * oversized head, is cut by the watchdog) is debug noise; a flood of
     * slow clients must not become a flood of log lines. Refusals at the
     * connection limits are worth a warning, once per 10 s. */
    static const char *const client_noise[] = {"closed by remote", "forcibly closed", "socket is closed",
                                               "Error processing request"};
    core_log_level level = CORE_LOG_WARN;
    for (size_t i = 0; i < sizeof client_noise / sizeof client_noise[0]; i++)
        if (strstr(msg, client_noise[i])) level = CORE_LOG_DEBUG;
    if (strstr(msg, "connection limit")) {
        static _Atomic double last_warned = -1e9;
        double now = core_monotonic(), last = atomic_load(&last_warned);
        if (now - last < 10.0 || !atomic_compare_exchange_strong(&last_warned, &last, now))
            level = CORE_LOG_DEBUG;
        else
            snprintf(msg, sizeof msg,
                     "refusing connections over the total or per-address limit (logged once per 10 s)");
    }
    core_log(level, "http: %s", msg);
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
        if (rc) {
            free(s->cert_pem);
            free(s->key_pem);
            free(s);
            return rc;
        }
    }

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
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
        free(s->cert_pem);
        free(s->key_pem);
        free(s);
        return core_fail(err, CORE_ERR_INVALID, "host", "not an IP address: %s", host);
    }
    if (s->tls) flags |= MHD_USE_TLS;

    /* Forward-secret AEAD only: TLS 1.3, and TLS 1.2 with ECDHE and AES-GCM
     * or ChaCha20-Poly1305. No RSA key exchange, no CBC, no SHA-1 MACs, no
     * TLS 1.1 or older; the server's order wins. */
    static const char tls_priorities[] =
        "SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:"
        "-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:-MAC-ALL:+AEAD:%SERVER_PRECEDENCE";
    struct MHD_OptionItem tls_opts[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, s->cert_pem},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, s->key_pem},
        {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)tls_priorities},
        {MHD_OPTION_END, 0, NULL},
    };
    if (!s->opt.max_connections) s->opt.max_connections = 2000;
    if (!s->opt.per_ip_connections) s->opt.per_ip_connections = 64;
    if (!s->opt.head_timeout) s->opt.head_timeout = 10;
    if (!s->opt.idle_timeout) s->opt.idle_timeout = 30;
    if (!s->opt.min_body_rate) s->opt.min_body_rate = 1024;
    pthread_mutex_init(&s->watch_lock, NULL);
    pthread_cond_init(&s->watch_cond, NULL);
    pthread_mutex_init(&s->defer_lock, NULL);
    /* The connection's memory pool holds the request head. It must be larger
     * than the limits checked in check_head (8 KiB target + 16 KiB fields
     * and libmicrohttpd's bookkeeping) so those limits are reached first and
     * answered as JSON; a head past the pool (about 120 KiB, less with
     * thousands of tiny fields, each costing ~56 bytes of bookkeeping) gets
     * libmicrohttpd's built-in 414/431 page, which no option replaces. */
    s->d = MHD_start_daemon(flags, (uint16_t)opt->port, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
                            NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
                            (unsigned)(opt->threads > 0 ? opt->threads : 2), MHD_OPTION_NOTIFY_COMPLETED, on_completed,
                            NULL, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_URI_LOG_CALLBACK, on_uri,
                            NULL, MHD_OPTION_CONNECTION_TIMEOUT, s->opt.idle_timeout, MHD_OPTION_CONNECTION_LIMIT,
                            s->opt.max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->opt.per_ip_connections,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128u << 10),
                            /* no ADDRESS_REUSE (SO_REUSEPORT: a second server could share the port) */
                            MHD_OPTION_ARRAY, s->tls ? tls_opts : &tls_opts[3], MHD_OPTION_END);
    if (s->d && pthread_create(&s->watch_thread, NULL, watchdog, s) == 0) s->watch_running = true;
    if (s->d && !s->watch_running) {
        MHD_stop_daemon(s->d);
        s->d = NULL;
    }
    if (!s->d) {
        pthread_mutex_destroy(&s->defer_lock);
        pthread_mutex_destroy(&s->watch_lock);
        pthread_cond_destroy(&s->watch_cond);
        free(s->cert_pem);
        free(s->key_pem);
        free(s);
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
    /* Deferred requests still waiting (a ledger that cannot commit) are
     * answered 503 and resumed; a moment for those answers to be sent. */
    deferred_fail_all(s);
    t0 = core_monotonic();
    while (atomic_load(&s->inflight) > 0 && core_monotonic() - t0 < 1.0) usleep(5000);
    MHD_stop_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET) close(fd);
    /* Every connection is closed now, so the watch list is empty. */
    pthread_mutex_lock(&s->watch_lock);
    s->watch_stop = true;
    pthread_cond_signal(&s->watch_cond);
    pthread_mutex_unlock(&s->watch_lock);
    pthread_join(s->watch_thread, NULL);
    pthread_mutex_destroy(&s->watch_lock);
    pthread_cond_destroy(&s->watch_cond);
    pthread_mutex_destroy(&s->defer_lock);
    free(s->cert_pem);
    free(s->key_pem);
    free(s);
}
