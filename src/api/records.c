/* api — the private health record: profile, entries, export. Person only;
 * entries are looked up by (id, owner) so another person's id is a 404. */
#include "api/internal.h"

#include "records/records.h"

/* Common prologue: session (+CSRF for writes) and the person role. */
static bool enter(http_request *rq, api_context *c, accounts_session *sess, bool write) {
    if (!api_session(rq, c, sess, write)) return false;
    if (!api_require_person(rq, sess)) {
        accounts_session_wipe(sess);
        return false;
    }
    return true;
}

/* Respond with {key: value} on success or the mapped error. */
static void finish(http_request *rq, core_status rc, const core_error *err, int status, const char *key, json_t *value) {
    if (rc) api_fail(rq, err, NULL);
    else http_respond_json(rq, status, json_pack("{s:o}", key, value));
}

void api_profile_get(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!enter(rq, c, &sess, false)) return;
    core_error err = {0};
    json_t *p = NULL;
    core_status rc = records_profile_get(c->st, &sess, &p, &err);
    finish(rq, rc, &err, 200, "profile", p);
    accounts_session_wipe(&sess);
}

void api_profile_put(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!enter(rq, c, &sess, true)) return;
    json_t *body = http_json_body(rq);
    if (body) {
        core_error err = {0};
        json_t *p = NULL;
        core_status rc = records_profile_put(c->st, c->regs, &sess, body, &p, &err);
        finish(rq, rc, &err, 200, "profile", p);
    }
    accounts_session_wipe(&sess);
}

void api_records_list(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!enter(rq, c, &sess, false)) return;
    core_error err = {0};
    json_t *list = NULL;
    core_status rc = records_list(c->st, &sess, &list, &err);
    finish(rq, rc, &err, 200, "records", list);
    accounts_session_wipe(&sess);
}

void api_records_create(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!enter(rq, c, &sess, true)) return;
    json_t *body = http_json_body(rq);
    if (body) {
        core_error err = {0};
        json_t *r = NULL;
        core_status rc = records_create(c->st, &sess, body, &r, &err);
        finish(rq, rc, &err, 201, "record", r);
    }
    accounts_session_wipe(&sess);
}

void api_records_get(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!enter(rq, c, &sess, false)) return;
    core_error err = {0};
    json_t *r = NULL;
    core_status rc = records_get(c->st, &sess, http_param(rq, "id"), &r, &err);
    finish(rq, rc, &err, 200, "record", r);
    accounts_session_wipe(&sess);
}

void api_records_update(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!enter(rq, c, &sess, true)) return;
    json_t *body = http_json_body(rq);
    if (body) {
        core_error err = {0};
        json_t *r = NULL;
        core_status rc = records_update(c->st, &sess, http_param(rq, "id"), body, &r, &err);
        finish(rq, rc, &err, 200, "record", r);
    }
    accounts_session_wipe(&sess);
}

void api_records_delete(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!enter(rq, c, &sess, true)) return;
    core_error err = {0};
    core_status rc = records_delete(c->st, &sess, http_param(rq, "id"), &err);
    finish(rq, rc, &err, 200, "deleted", rc ? NULL : json_true());
    accounts_session_wipe(&sess);
}

void api_export(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!enter(rq, c, &sess, false)) return;
    core_error err = {0};
    json_t *doc = NULL;
    if (records_export(c->st, &sess, &doc, &err)) {
        api_fail(rq, &err, NULL);
    } else {
        http_add_header(rq, "Content-Disposition", "attachment; filename=\"caresync-export.json\"");
        http_respond_json(rq, 200, doc);
    }
    accounts_session_wipe(&sess);
}
