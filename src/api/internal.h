/* api — helpers shared by the handler files; not part of the public API. */
#ifndef CARESYNC_API_INTERNAL_H
#define CARESYNC_API_INTERNAL_H

#include "api/api.h"

/* Respond with the HTTP status and stable code for err->code. fallback_code
 * overrides the code string for CORE_ERR_CONFLICT (e.g. "username_taken"). */
void api_fail(http_request *rq, const core_error *err, const char *conflict_code);

/* Resolve the session cookie into sess. When state_changing, also require the
 * X-CSRF-Token header to match. On failure responds (401/403) and returns false. */
bool api_session(http_request *rq, api_context *c, accounts_session *sess, bool state_changing);
/* Person-only areas (records, profile, export). Responds 403 and returns false for staff. */
bool api_require_person(http_request *rq, const accounts_session *sess);

void api_set_session_cookie(http_request *rq, const api_context *c, const char *token);
void api_clear_session_cookie(http_request *rq);
/* A string member of an object, or NULL. */
const char *api_str(const json_t *obj, const char *key);
json_t *api_user_json(const accounts_session *sess);

/* Handlers, by file. */
void api_health(http_request *rq, void *ctx);
void api_regions(http_request *rq, void *ctx);
void api_signup(http_request *rq, void *ctx);
void api_login(http_request *rq, void *ctx);
void api_logout(http_request *rq, void *ctx);
void api_reset(http_request *rq, void *ctx);
void api_session_get(http_request *rq, void *ctx);
void api_password(http_request *rq, void *ctx);
void api_account_delete(http_request *rq, void *ctx);
void api_profile_get(http_request *rq, void *ctx);
void api_profile_put(http_request *rq, void *ctx);
void api_records_list(http_request *rq, void *ctx);
void api_records_create(http_request *rq, void *ctx);
void api_records_get(http_request *rq, void *ctx);
void api_records_update(http_request *rq, void *ctx);
void api_records_delete(http_request *rq, void *ctx);
void api_export(http_request *rq, void *ctx);
void api_admin_users(http_request *rq, void *ctx);

#endif
