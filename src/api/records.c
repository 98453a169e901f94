/* api — the private health record: profile, entries, export. Person only;
 * entries are looked up by (id, owner) so another person's id is a 404.
 *
 * Every handler has the same shape — session (+CSRF for writes), person role,
 * optional JSON body, one records_* call, {key: result} — so each is one
 * call to run() with a small adapter. */
#include "api/internal.h"

#include "records/records.h"

#include <stdlib.h>

typedef core_status (*record_op)(api_context *c, const accounts_session *sess, http_request *rq, const json_t *body,
                                 json_t **out, core_error *err);

typedef struct {
    bool write;      /* state-changing: CSRF required */
    bool body;       /* parse a JSON body first */
    int status;      /* success status */
    const char *key; /* success: {key: result} */
} record_route;

static void run(http_request *rq, void *ctx, record_route how, record_op op) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, how.write)) return;
    if (api_require_person(rq, &sess)) {
        json_t *body = how.body ? http_json_body(rq) : NULL;
        if (!how.body || body) {
            core_error err = {0};
            json_t *out = NULL;
            if (op(c, &sess, rq, body, &out, &err))
                api_fail(rq, &err, NULL);
            else
                http_respond_json(rq, how.status, json_pack("{s:o}", how.key, out));
        }
    }
    accounts_session_wipe(&sess);
}

static core_status profile_get(api_context *c, const accounts_session *s, http_request *rq, const json_t *b, json_t **o,
                               core_error *e) {
    (void)rq, (void)b;
    return records_profile_get(c->st, s, o, e);
}
static core_status profile_put(api_context *c, const accounts_session *s, http_request *rq, const json_t *b, json_t **o,
                               core_error *e) {
    (void)rq;
    return records_profile_put(c->st, c->regs, s, b, o, e);
}
static core_status create(api_context *c, const accounts_session *s, http_request *rq, const json_t *b, json_t **o,
                          core_error *e) {
    (void)rq;
    return records_create(c->st, s, b, o, e);
}
static core_status get(api_context *c, const accounts_session *s, http_request *rq, const json_t *b, json_t **o,
                       core_error *e) {
    (void)b;
    return records_get(c->st, s, http_param(rq, "id"), o, e);
}
static core_status update(api_context *c, const accounts_session *s, http_request *rq, const json_t *b, json_t **o,
                          core_error *e) {
    return records_update(c->st, s, http_param(rq, "id"), b, o, e);
}
static core_status delete (api_context *c, const accounts_session *s, http_request *rq, const json_t *b, json_t **o,
                           core_error *e) {
    (void)b;
    core_status rc = records_delete(c->st, s, http_param(rq, "id"), e);
    if (!rc) *o = json_true();
    return rc;
}

void api_profile_get(http_request *rq, void *ctx) {
    run(rq, ctx, (record_route){false, false, 200, "profile"}, profile_get);
}
void api_profile_put(http_request *rq, void *ctx) {
    run(rq, ctx, (record_route){true, true, 200, "profile"}, profile_put);
}
void api_records_create(http_request *rq, void *ctx) {
    run(rq, ctx, (record_route){true, true, 201, "record"}, create);
}
void api_records_get(http_request *rq, void *ctx) { run(rq, ctx, (record_route){false, false, 200, "record"}, get); }
void api_records_update(http_request *rq, void *ctx) {
    run(rq, ctx, (record_route){true, true, 200, "record"}, update);
}
void api_records_delete(http_request *rq, void *ctx) {
    run(rq, ctx, (record_route){true, false, 200, "deleted"}, delete);
}

/* The busiest read: served as spliced text (records_list_text), no JSON tree. */
void api_records_list(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, false)) return;
    if (api_require_person(rq, &sess)) {
        core_error err = {0};
        char *text = NULL;
        size_t len = 0;
        if (records_list_text(c->st, &sess, &text, &len, &err)) {
            api_fail(rq, &err, NULL);
        } else {
            /* Handed over, not copied: http wipes it once sent. */
            http_respond_json_owned(rq, 200, text, len);
        }
    }
    accounts_session_wipe(&sess);
}

void api_export(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, false)) return;
    if (api_require_person(rq, &sess)) {
        core_error err = {0};
        json_t *doc = NULL;
        if (records_export(c->st, &sess, &doc, &err)) {
            api_fail(rq, &err, NULL);
        } else {
            http_add_header(rq, "Content-Disposition", "attachment; filename=\"caresync-export.json\"");
            http_respond_json(rq, 200, doc);
        }
    }
    accounts_session_wipe(&sess);
}

/* The photo kept with an entry, as image/jpeg (no-store, like every API
 * response). A plain GET so that <img src> can show it; the session cookie
 * is SameSite=Strict, so another site cannot embed it. */
void api_records_photo(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, false)) return;
    if (api_require_person(rq, &sess)) {
        core_error err = {0};
        uint8_t *jpeg = NULL;
        size_t len = 0;
        if (records_photo_get(c->st, &sess, http_param(rq, "id"), &jpeg, &len, &err))
            api_fail(rq, &err, NULL);
        else
            http_respond_bytes_owned(rq, 200, "image/jpeg", jpeg, len);
    }
    accounts_session_wipe(&sess);
}
