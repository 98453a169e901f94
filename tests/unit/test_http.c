#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http.h"
#include "testutil.h"

static void h_a(http_request *rq, void *ctx) {
    (void)rq;
    (void)ctx;
}
static void h_b(http_request *rq, void *ctx) {
    (void)rq;
    (void)ctx;
}

static void router_matches_params_and_methods(void **state) {
    (void)state;
    http_router *r = http_router_new();
    assert_true(http_router_add(r, "GET", "/api/records", h_a));
    assert_true(http_router_add(r, "POST", "/api/records", h_b));
    assert_true(http_router_add(r, "GET", "/api/records/{id}", h_a));
    assert_true(http_router_add(r, "DELETE", "/api/records/{id}", h_b));
    assert_false(http_router_add(r, "GET", "no-slash", h_a));
    http_match m;
    assert_int_equal(http_router_match(r, "GET", "/api/records", &m), HTTP_ROUTE_FOUND);
    assert_ptr_equal(m.fn, h_a);
    assert_int_equal(http_router_match(r, "POST", "/api/records", &m), HTTP_ROUTE_FOUND);
    assert_ptr_equal(m.fn, h_b);
    assert_int_equal(http_router_match(r, "HEAD", "/api/records", &m), HTTP_ROUTE_FOUND);
    assert_int_equal(http_router_match(r, "DELETE", "/api/records/abc123", &m), HTTP_ROUTE_FOUND);
    assert_int_equal(m.nparams, 1);
    assert_string_equal(m.names[0], "id");
    assert_string_equal(m.values[0], "abc123");
    assert_int_equal(http_router_match(r, "PATCH", "/api/records/abc", &m), HTTP_ROUTE_NO_METHOD);
    assert_string_equal(m.allow, "GET, DELETE");
    assert_int_equal(http_router_match(r, "GET", "/api/records/", &m), HTTP_ROUTE_NO_PATH); /* empty capture */
    assert_int_equal(http_router_match(r, "GET", "/api/records/a/b", &m), HTTP_ROUTE_NO_PATH);
    assert_int_equal(http_router_match(r, "GET", "/api/recordsx", &m), HTTP_ROUTE_NO_PATH);
    assert_int_equal(http_router_match(r, "GET", "/api", &m), HTTP_ROUTE_NO_PATH);
    char longid[300];
    memset(longid, 'a', sizeof longid);
    memcpy(longid, "/api/records/", 13);
    longid[299] = '\0';
    assert_int_equal(http_router_match(r, "GET", longid, &m), HTTP_ROUTE_NO_PATH); /* capture too long */
    http_router_free(r);
}

static void json_body_parser(void **state) {
    (void)state;
    core_error err = {0};
    json_t *v = http_parse_json_object("{\"a\":1}", 7, &err);
    assert_non_null(v);
    json_decref(v);
    assert_null(http_parse_json_object("", 0, &err));
    assert_int_equal(err.code, CORE_ERR_INVALID);
    assert_non_null(strstr(err.message, "empty"));
    assert_null(http_parse_json_object("{\"a\":1,\"a\":2}", 13, &err));
    assert_non_null(strstr(err.message, "duplicate"));
    assert_null(http_parse_json_object("[1,2]", 5, &err));
    assert_non_null(strstr(err.message, "object"));
    assert_null(http_parse_json_object("{\"a\":", 5, &err));
    assert_non_null(strstr(err.message, "line 1"));
    assert_null(http_parse_json_object("{\"a\":\"x\\u0000y\"}", 15, &err)); /* NUL in a string */
    assert_null(http_parse_json_object("{\"a\":1} x", 9, &err));            /* trailing garbage */
    assert_null(http_parse_json_object("{\"a\":\"\xff\"}", 8, &err));       /* invalid UTF-8 */
    /* deep nesting is refused, not a stack overflow */
    static char deep[100001];
    memset(deep, '[', 100000);
    assert_null(http_parse_json_object(deep, 100000, &err));
}

/* The check every path and query value passes before routing. */
static void url_text_validation(void **state) {
    (void)state;
#define OK(lit) assert_true(http_text_valid(lit, sizeof lit - 1))
#define BAD(lit) assert_false(http_text_valid(lit, sizeof lit - 1))
    OK("");
    OK("/api/regions");
    OK("caf\xc3\xa9");       /* U+00E9 */
    OK("\xe2\x82\xac");      /* U+20AC */
    OK("\xf0\x9f\x98\x80");  /* U+1F600 */
    OK("\xf4\x8f\xbf\xbf");  /* U+10FFFF, the last code point */
    OK("\xed\x9f\xbf");      /* U+D7FF, just below the surrogates */
    BAD("\xff");             /* the outside test's %ff */
    BAD("\x80");             /* a lone continuation byte */
    BAD("\xc0\xaf");         /* overlong '/' */
    BAD("\xc1\xbf");         /* overlong */
    BAD("\xe0\x80\xaf");     /* overlong, three bytes */
    BAD("\xf0\x80\x80\xaf"); /* overlong, four bytes */
    BAD("\xed\xa0\x80");     /* U+D800, a surrogate */
    BAD("\xf4\x90\x80\x80"); /* past U+10FFFF */
    BAD("\xe2\x82");         /* cut short */
    BAD("a\xc3");            /* cut short at the end */
    BAD("\xc3(");            /* a bad continuation */
    BAD("a\nb");             /* controls */
    BAD("a\x7f");
    BAD("a\x00b"); /* NUL inside the length */
#undef OK
#undef BAD
}

/* ---- deferred answers, on a real server -------------------------------------
 * The handler defers and returns; the test (another thread) wakes the
 * request later. Checked: the answer arrives on the same keep-alive
 * connection, one server thread serves others while requests wait, a
 * client that hung up while waiting leaves nothing behind (ASan: its
 * answer's argument is freed, the request too), and
 * stopping the server with a request still waiting answers it 503
 * unconfirmed, after
 * which the late wake only frees its argument. */
static _Atomic(http_deferred *) waiting[4];
static atomic_int nwaiting;
static atomic_int answers_with_rq, answers_without_rq;

static void h_defer(http_request *rq, void *ctx) {
    (void)ctx;
    http_deferred *d = http_request_defer(rq);
    if (d) atomic_store(&waiting[atomic_fetch_add(&nwaiting, 1)], d);
}
static void h_now(http_request *rq, void *ctx) {
    (void)ctx;
    http_respond_json(rq, 200, json_pack("{s:s}", "now", "yes"));
}

static void answer(http_request *rq, void *arg) {
    char *text = arg; /* owned: freed whatever happens */
    if (rq) {
        atomic_fetch_add(&answers_with_rq, 1);
        http_respond_json(rq, 201, json_pack("{s:s}", "answer", text));
    } else {
        atomic_fetch_add(&answers_without_rq, 1);
    }
    free(text);
}

static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void send_get(int fd, const char *path) {
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    assert_int_equal(write(fd, req, (size_t)n), n);
}

/* Read one response (Content-Length framed) into out. */
static void read_response(int fd, char *out, size_t cap) {
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, out + len, cap - 1 - len);
        assert_true(r > 0);
        len += (size_t)r;
        out[len] = '\0';
        const char *end = strstr(out, "\r\n\r\n"), *cl = strstr(out, "Content-Length: ");
        if (end && cl && len >= (size_t)(end + 4 - out) + strtoul(cl + 16, NULL, 10)) return;
    }
}

static http_deferred *wait_for_defer(int i) {
    while (atomic_load(&nwaiting) <= i) usleep(1000);
    return atomic_load(&waiting[i]);
}

static void deferred_answers(void **state) {
    (void)state;
    http_router *r = http_router_new();
    assert_true(http_router_add(r, "GET", "/api/defer", h_defer));
    assert_true(http_router_add(r, "GET", "/api/now", h_now));
    http_options o = {.host = "127.0.0.1", .port = 0, .threads = 1, .max_body = 1024};
    http_server *srv = NULL;
    core_error err = {0};
    assert_int_equal(http_server_start(&o, r, NULL, &srv, &err), CORE_OK);
    int port = http_server_port(srv);
    char buf[4096];

    /* 1. Deferred, then woken from this thread; the lone server thread
     * answers another client meanwhile. */
    int a = dial(port);
    send_get(a, "/api/defer");
    http_deferred *d = wait_for_defer(0);
    int b = dial(port);
    send_get(b, "/api/now");
    read_response(b, buf, sizeof buf);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    http_deferred_wake(d, answer, strdup("first"));
    read_response(a, buf, sizeof buf);
    assert_non_null(strstr(buf, "HTTP/1.1 201"));
    assert_non_null(strstr(buf, "{\"answer\":\"first\"}"));
    assert_non_null(strstr(buf, "Content-Security-Policy")); /* the usual headers */
    /* ... and the connection is still usable (kept alive). */
    send_get(a, "/api/now");
    read_response(a, buf, sizeof buf);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));

    /* 2. The client hangs up while its request waits. */
    int c = dial(port);
    send_get(c, "/api/defer");
    d = wait_for_defer(1);
    close(c);
    usleep(50 * 1000);
    http_deferred_wake(d, answer, strdup("nobody listens"));
    send_get(b, "/api/now"); /* the server carries on */
    read_response(b, buf, sizeof buf);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));

    /* 3. Stopping with a request still waiting: after the grace period it
     * is answered 503, the stop completes, and the late wake only frees. */
    int e = dial(port);
    send_get(e, "/api/defer");
    d = wait_for_defer(2);
    close(a);
    close(b);
    http_server_stop(srv);
    read_response(e, buf, sizeof buf);
    assert_non_null(strstr(buf, "HTTP/1.1 503"));
    assert_non_null(strstr(buf, "\"unconfirmed\""));
    close(e);
    /* Every answer function ran once: "first" with its request; the hung-up
     * client's with it or, when the server saw the hang-up first on resume,
     * without (only to free); none for the 503 yet. */
    assert_int_equal(atomic_load(&answers_with_rq) + atomic_load(&answers_without_rq), 2);
    int before = atomic_load(&answers_without_rq);
    http_deferred_wake(d, answer, strdup("too late"));
    assert_int_equal(atomic_load(&answers_without_rq), before + 1);
    assert_true(atomic_load(&answers_with_rq) >= 1);
    http_router_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(router_matches_params_and_methods),
        cmocka_unit_test(json_body_parser),
        cmocka_unit_test(url_text_validation),
        cmocka_unit_test(deferred_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
