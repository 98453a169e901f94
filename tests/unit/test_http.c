#include <string.h>

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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(router_matches_params_and_methods),
        cmocka_unit_test(json_body_parser),
        cmocka_unit_test(url_text_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
