/* api — admin-only endpoints. Lists accounts (names and roles only: an
 * admin sees no record contents, which are sealed anyway). */
#include "api/internal.h"

static void add_user(void *ud, const char *username, accounts_role role, int64_t created_at) {
    char t[32];
    core_format_time(created_at, t);
    json_array_append_new(
        ud, json_pack("{s:s,s:s,s:s}", "username", username, "role", accounts_role_name(role), "created_at", t));
}

void api_admin_users(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, false)) return;
    if (sess.role != ACCOUNTS_ADMIN) {
        http_respond_error(rq, 403, "forbidden", NULL, "only administrators can list accounts");
    } else {
        json_t *users = json_array();
        core_error err = {0};
        if (accounts_list(c->acc, add_user, users, &err)) {
            json_decref(users);
            api_fail(rq, &err, NULL);
        } else {
            http_respond_json(rq, 200, json_pack("{s:o}", "users", users));
        }
    }
    accounts_session_wipe(&sess);
}
