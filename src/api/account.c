/* api — account settings: change password, delete account. */
#include "api/internal.h"

void api_password(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    json_t *body = http_json_body(rq);
    if (body) {
        core_error err = {0};
        if (accounts_change_password(c->acc, &sess, api_str(body, "current_password"), api_str(body, "new_password"),
                                     http_client_addr(rq), &err))
            api_fail(rq, &err, NULL);
        else
            http_respond_json(rq, 200, json_pack("{s:b}", "ok", 1));
    }
    accounts_session_wipe(&sess);
}

void api_account_delete(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    json_t *body = http_json_body(rq);
    if (body) {
        core_error err = {0};
        if (accounts_delete(c->acc, &sess, api_str(body, "password"), http_client_addr(rq), &err)) {
            api_fail(rq, &err, NULL);
        } else {
            api_clear_session_cookie(rq);
            http_respond_json(rq, 200, json_pack("{s:b}", "deleted", 1));
        }
    }
    accounts_session_wipe(&sess);
}
