#include <string.h>

#include "http/http.h"
#include "testutil.h"

static void h_a(http_request *rq, void *ctx) { (void)rq; (void)ctx; }
static void h_b(http_request *rq, void *ctx) { (void)rq; (void)ctx; }

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
    assert_int_equal(http_router_match(r, "GET", "/api/records/", &m), HTTP_ROUTE_NO_PATH);   /* empty capture */
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
    char msg[200];
    json_t *v = http_parse_json_object("{\"a\":1}", 7, msg, sizeof msg);
    assert_non_null(v);
    json_decref(v);
    assert_null(http_parse_json_object("", 0, msg, sizeof msg));
    assert_non_null(strstr(msg, "empty"));
    assert_null(http_parse_json_object("{\"a\":1,\"a\":2}", 13, msg, sizeof msg));
    assert_non_null(strstr(msg, "duplicate"));
    assert_null(http_parse_json_object("[1,2]", 5, msg, sizeof msg));
    assert_non_null(strstr(msg, "object"));
    assert_null(http_parse_json_object("{\"a\":", 5, msg, sizeof msg));
    assert_non_null(strstr(msg, "line 1"));
    assert_null(http_parse_json_object("{\"a\":\"x\\u0000y\"}", 15, msg, sizeof msg)); /* NUL in a string */
    assert_null(http_parse_json_object("{\"a\":1} x", 9, msg, sizeof msg)); /* trailing garbage */
    assert_null(http_parse_json_object("{\"a\":\"\xff\"}", 8, msg, sizeof msg)); /* invalid UTF-8 */
    /* deep nesting is refused, not a stack overflow */
    static char deep[100001];
    memset(deep, '[', 100000);
    assert_null(http_parse_json_object(deep, 100000, msg, sizeof msg));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(router_matches_params_and_methods),
        cmocka_unit_test(json_body_parser),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
