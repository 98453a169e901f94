/* api — clinician review (issue 13, first slice): organisations' review
 * offers (set and withdrawn by administrators, listed to anyone signed in)
 * and which organisation a clinician belongs to.
 *
 * Stable error codes: 401 unauthenticated, 403 forbidden (not an
 * administrator) or csrf_failed, 404 not_found (no such organisation on the
 * ledger, no offer to withdraw, no such account), 422 validation_failed with
 * field (price, answer_hours, conditions, regions, condition, country, org,
 * role). */
#include "api/internal.h"
#include "records/records.h"
#include "vision/vision.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The organisation named by the {key} capture, or respond 404. */
static bool org_param(http_request *rq, uint8_t key[32]) {
    const char *hex = http_param(rq, "key");
    if (hex && strlen(hex) == 64 && cs_crypto_unhex(hex, key, 32)) return true;
    http_respond_error(rq, 404, "not_found", NULL, "no such organisation");
    return false;
}

static bool require_admin(http_request *rq, const accounts_session *sess, const char *what) {
    if (sess->role == ACCOUNTS_ADMIN) return true;
    http_respond_error(rq, 403, "forbidden", NULL, "only administrators can %s", what);
    return false;
}

static json_t *offer_json(const review_offer *o) {
    json_t *conds = json_array(), *regs = json_array();
    bool ok = conds && regs;
    for (size_t i = 0; ok && i < o->n_conditions; i++)
        ok = json_array_append_new(conds, json_string(o->conditions[i])) == 0;
    for (size_t i = 0; ok && i < o->n_regions; i++) ok = json_array_append_new(regs, json_string(o->regions[i])) == 0;
    if (!ok) {
        json_decref(conds);
        json_decref(regs);
        return NULL;
    }
    return json_pack("{s:{s:o,s:s},s:I,s:i,s:o,s:o,s:o}", "organisation", "key", api_hex(o->org, 32), "name",
                     o->org_name, "price", (json_int_t)o->price, "answer_hours", o->answer_hours, "conditions", conds,
                     "regions", regs, "updated_at", api_time(o->updated_at));
}

/* A list of short strings from body[key] into dst (rows of width bytes,
 * at most max). Responds 422 and returns false when it is not one. */
static bool string_list(http_request *rq, const json_t *body, const char *key, char *dst, size_t width, size_t max,
                        size_t *n) {
    const json_t *a = json_object_get(body, key);
    *n = 0;
    if (!json_is_array(a) || json_array_size(a) < 1 || json_array_size(a) > max) {
        http_respond_error(rq, 422, "validation_failed", key, "%s must be a list of 1 to %zu codes", key, max);
        return false;
    }
    size_t i;
    const json_t *v;
    json_array_foreach(a, i, v) {
        const char *s = json_string_value(v);
        if (!s || strlen(s) < 1 || strlen(s) >= width) {
            http_respond_error(rq, 422, "validation_failed", key, "%s must hold codes of 1 to %zu characters", key,
                               width - 1);
            return false;
        }
        memcpy(dst + i * width, s, strlen(s) + 1);
        *n = i + 1;
    }
    return true;
}

/* PUT /api/admin/orgs/{key}/offer {price, answer_hours, conditions, regions}:
 * set or replace the organisation's offer. */
void api_admin_org_offer_put(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    uint8_t key[32];
    json_t *body = NULL;
    review_offer o;
    memset(&o, 0, sizeof o);
    if (require_admin(rq, &sess, "set review offers") && org_param(rq, key) && (body = http_json_body(rq))) {
        memcpy(o.org, key, 32);
        const json_t *price = json_object_get(body, "price"), *hours = json_object_get(body, "answer_hours");
        if (!json_is_integer(price) || json_integer_value(price) < REVIEW_PRICE_MIN ||
            json_integer_value(price) > REVIEW_PRICE_MAX) {
            http_respond_error(rq, 422, "validation_failed", "price",
                               "price must be a whole number of tokens, %d to %d", REVIEW_PRICE_MIN, REVIEW_PRICE_MAX);
        } else if (!json_is_integer(hours) || json_integer_value(hours) < REVIEW_HOURS_MIN ||
                   json_integer_value(hours) > REVIEW_HOURS_MAX) {
            http_respond_error(rq, 422, "validation_failed", "answer_hours",
                               "answer_hours must be a whole number of hours, %d to %d", REVIEW_HOURS_MIN,
                               REVIEW_HOURS_MAX);
        } else if (string_list(rq, body, "conditions", o.conditions[0], sizeof o.conditions[0], REVIEW_CONDITIONS_MAX,
                               &o.n_conditions) &&
                   string_list(rq, body, "regions", o.regions[0], sizeof o.regions[0], REVIEW_REGIONS_MAX,
                               &o.n_regions)) {
            o.price = json_integer_value(price);
            o.answer_hours = (int)json_integer_value(hours);
            core_error err = {0};
            /* Answer with the offer as stored (codes sorted), as the list
             * shows it. A NULL body (out of memory) is answered 500. */
            if (review_offer_set(c->review, &o, &err) || review_offer_get(c->review, key, &o, &err))
                api_fail(rq, &err, NULL);
            else
                http_respond_json(rq, 200, json_pack("{s:o}", "offer", offer_json(&o)));
        }
    }
    accounts_session_wipe(&sess);
}

/* DELETE /api/admin/orgs/{key}/offer: withdraw it. Cases already asked
 * for are not affected (they live elsewhere, in later slices). */
void api_admin_org_offer_delete(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    uint8_t key[32];
    if (require_admin(rq, &sess, "withdraw review offers") && org_param(rq, key)) {
        core_error err = {0};
        if (review_offer_withdraw(c->review, key, &err))
            api_fail(rq, &err, NULL);
        else
            http_respond_json(rq, 200, json_pack("{s:b,s:s}", "withdrawn", 1, "key", http_param(rq, "key")));
    }
    accounts_session_wipe(&sess);
}

/* GET /api/review/offers?condition=&country=: what a signed-in person can
 * choose from (any role may look; nothing in an offer is personal). */
void api_review_offers(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, false)) return;
    const char *condition = http_query(rq, "condition"), *country = http_query(rq, "country");
    if (condition && !condition[0]) condition = NULL;
    if (country && !country[0]) country = NULL;
    review_offer *list = NULL;
    size_t n = 0;
    core_error err = {0};
    if (review_offer_list(c->review, condition, country, &list, &n, &err)) {
        api_fail(rq, &err, NULL);
    } else {
        json_t *arr = json_array();
        bool ok = arr != NULL;
        for (size_t i = 0; ok && i < n; i++) ok = json_array_append_new(arr, offer_json(&list[i])) == 0;
        if (!ok) {
            json_decref(arr);
            arr = NULL;
        }
        http_respond_json(rq, 200, arr ? json_pack("{s:o}", "offers", arr) : NULL);
    }
    free(list);
    accounts_session_wipe(&sess);
}

/* GET /api/review/conditions: the screening's condition table (code, name),
 * the codes an offer covers and a clinician answers with. Any session: the
 * review page needs it, and /api/surveil/overview, which also lists them,
 * is for analysts. */
void api_review_conditions(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, false)) return;
    json_t *arr = json_array();
    bool ok = arr != NULL;
    for (int i = 0; ok && i < screening_condition_count(); i++) {
        const screening_condition *sc = screening_condition_at(i);
        ok = json_array_append_new(arr, json_pack("{s:s, s:s}", "code", sc->code, "name", sc->name)) == 0;
    }
    if (!ok) {
        json_decref(arr);
        arr = NULL;
    }
    http_respond_json(rq, 200, arr ? json_pack("{s:o}", "conditions", arr) : NULL);
    accounts_session_wipe(&sess);
}

/* PUT /api/admin/users/{username}/org {org: KEY | null}: the clinician's or
 * analyst's organisation (registered on the ledger), or none. */
void api_admin_user_org_put(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    json_t *body = NULL;
    if (require_admin(rq, &sess, "set a clinician's organisation") && (body = http_json_body(rq))) {
        const json_t *org = json_object_get(body, "org");
        const char *hex = json_string_value(org);
        uint8_t key[32];
        share_org found;
        accounts_role role;
        bool has = false;
        core_error err = {0};
        if (!json_is_null(org) && (!hex || strlen(hex) != 64 || !cs_crypto_unhex(hex, key, 32))) {
            http_respond_error(rq, 422, "validation_failed", "org",
                               "org must be the organisation's key (64 hex digits), or null for none");
        } else if (hex && share_org_lookup(c->share, key, &found, &err)) {
            if (err.code == CORE_ERR_NOT_FOUND)
                http_respond_error(rq, 422, "validation_failed", "org",
                                   "no such organisation (register it on the ledger first)");
            else
                api_fail(rq, &err, NULL);
        } else if (accounts_set_org(c->acc, http_param(rq, "username"), hex ? key : NULL, &err) ||
                   accounts_get_org(c->acc, http_param(rq, "username"), &role, &has, key, &err)) {
            api_fail(rq, &err, NULL);
        } else {
            json_t *o = hex ? json_pack("{s:s,s:s}", "key", hex, "name", found.name) : json_null();
            http_respond_json(rq, 200,
                              json_pack("{s:s,s:s,s:o}", "username", http_param(rq, "username"), "role",
                                        accounts_role_name(role), "organisation", o));
        }
    }
    accounts_session_wipe(&sess);
}

/* ---- cases (issue 13, second slice) ----
 *
 * Person: POST /api/review/requests, GET /api/review/requests[/{id}],
 * POST /api/review/requests/{id}/withdraw|revoke. Clinician of the case's
 * organisation: GET /api/review/queue, GET /api/review/cases/{id},
 * POST /api/review/cases/{id}/answer|return. Other roles get 403; a case
 * of another person or organisation is 404. Codes beyond the common ones:
 * 404 no_offer, 422 no_photo, 409 insufficient_tokens, 409 not_waiting,
 * 409 consent_ended.
 * Timed-out cases are refunded by review_sweep on every read of requests,
 * queue and cases (no thread). */

static void case_fail(http_request *rq, const core_error *err) {
    if (err->code == CORE_ERR_NOT_FOUND && !strcmp(err->field, "org")) {
        http_respond_error(rq, 404, "no_offer", "org", "%s", err->message);
    } else if (err->code == CORE_ERR_INVALID && !strcmp(err->field, "photo")) {
        http_respond_error(rq, 422, "no_photo", "record_id", "%s", err->message);
    } else if (err->code == CORE_ERR_CONFLICT && !strcmp(err->field, "balance")) {
        http_respond_error(rq, 409, "insufficient_tokens", NULL, "%s", err->message);
    } else if (err->code == CORE_ERR_CONFLICT && !strcmp(err->field, "state")) {
        http_respond_error(rq, 409, "not_waiting", NULL, "%s", err->message);
    } else if (err->code == CORE_ERR_CONFLICT && !strcmp(err->field, "consent")) {
        http_respond_error(rq, 409, "consent_ended", NULL, "%s", err->message);
    } else {
        api_ledger_fail(rq, err);
    }
}

static bool require_clinician(http_request *rq, const accounts_session *sess) {
    if (sess->role == ACCOUNTS_CLINICIAN && sess->has_org) return true;
    http_respond_error(rq, 403, "forbidden", NULL, "only clinicians of an organisation review cases");
    return false;
}

/* An optional string member, or respond 422. */
static bool opt_string(http_request *rq, const json_t *obj, const char *key, const char **out) {
    const json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v)) return true;
    if (json_is_string(v)) {
        *out = json_string_value(v);
        return true;
    }
    http_respond_error(rq, 422, "validation_failed", key, "%s must be a string", key);
    return false;
}

/* What the answer will feed, pledged while the person's session can read
 * it (share_pledge_put keeps only what a consent held now asks for). The
 * request stands whatever happens here: a failure is logged. */
static json_t *confirmation_json(const share_confirmation *cf);

static void pledge(api_context *c, const accounts_session *sess, const char *id, const uint8_t wallet[32],
                   const uint8_t *jpeg, size_t jpeg_len, share_confirmation *cf) {
    share_pledge p = {0};
    json_t *profile = NULL;
    core_error err = {0};
    memcpy(p.wallet, wallet, 32);
    if (!records_profile_get(c->st, sess, &profile, &err)) {
        const char *region = api_str(profile, "region");
        const json_t *by = json_object_get(profile, "birth_year");
        if (region && strlen(region) < sizeof p.region) snprintf(p.region, sizeof p.region, "%s", region);
        p.birth_year = json_is_integer(by) ? (int)json_integer_value(by) : 0;
    }
    json_decref(profile);
    p.training = true;
    screening_example_handle(sess->data_key, p.handle);
    /* The case photo's perceptual hash, as a screening share takes it: the
     * same photo contributed twice (shared, or confirmed) earns once. */
    share_pledge_person who = {.owner = sess->user_id, .data_key = sess->data_key};
    vision_limits lim;
    vision_limits_defaults(&lim);
    vision_image img = {0};
    memset(&err, 0, sizeof err);
    who.has_phash = vision_decode(jpeg, jpeg_len, &lim, &img, NULL, NULL, &err) == CORE_OK &&
                    vision_phash(&img, &who.phash, &err) == CORE_OK;
    vision_image_free(&img);
    bool kept;
    memset(&err, 0, sizeof err);
    if (share_pledge_put(c->share, id, &p, &who, core_now(), &kept, cf, &err))
        core_log(CORE_LOG_WARN, "review request %s: what its answer feeds was not kept: %s", id, err.message);
    cs_crypto_wipe(&p, sizeof p);
    cs_crypto_wipe(&who, sizeof who);
}

/* What becomes of the confirmation, as the person is told (null: the answer
 * is not contributed). */
static json_t *confirmation_json(const share_confirmation *cf) {
    static const char *const states[] = {"none", "pending", "not_counted", "counted", "withdrawn"};
    if (cf->state == SHARE_CONFIRM_NONE) return json_null();
    char msg[320];
    const char *reason = NULL;
    switch (cf->state) {
    case SHARE_CONFIRM_DUPLICATE:
        reason = "duplicate_photo";
        snprintf(msg, sizeof msg,
                 "this photo, or a copy of it, was already shared: the clinician's answer is not counted again "
                 "and earns nothing (the same photo is counted and rewarded once)");
        break;
    case SHARE_CONFIRM_PENDING:
        if (cf->capped)
            snprintf(msg, sizeof msg,
                     "today's cap on tokens from shared results (%lld) is reached: a coded answer will be counted "
                     "for public-health surveillance but earns nothing",
                     (long long)cf->cap);
        else
            snprintf(msg, sizeof msg,
                     "a coded answer will be counted for public-health surveillance and earn %lld tokens",
                     (long long)cf->reward);
        break;
    case SHARE_CONFIRM_COUNTED:
        if (cf->capped)
            snprintf(msg, sizeof msg,
                     "counted for public-health surveillance, without a reward: the daily cap (%lld) was reached "
                     "the day you asked",
                     (long long)cf->cap);
        else
            snprintf(msg, sizeof msg, "counted for public-health surveillance; it earned %lld tokens",
                     (long long)cf->reward);
        break;
    default:
        snprintf(msg, sizeof msg, "withdrawn from public-health releases not yet made; tokens paid stay paid");
        break;
    }
    if (cf->capped) reason = "daily_cap";
    return json_pack("{s:s, s:o, s:I, s:s}", "status", states[cf->state], "reason",
                     reason ? json_string(reason) : json_null(), "reward", (json_int_t)cf->reward, "message", msg);
}

/* Add the confirmation of case id to o (the person's view, their session). */
static core_status add_confirmation(api_context *c, const accounts_session *s, const char *id, json_t *o,
                                    core_error *err) {
    share_confirmation cf;
    core_status rc = share_confirmation_get(c->share, s->user_id, s->data_key, id, core_now(), &cf, err);
    if (!rc && json_object_set_new(o, "contribution", confirmation_json(&cf)))
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    return rc;
}

void api_examples_dir(const api_context *c, char out[4200]) { snprintf(out, 4200, "%s/examples", c->cfg->data_dir); }

void api_review_answered(void *ud, const review_answered *a) {
    api_context *c = ud;
    share_pledge p;
    bool found = false, fed = false;
    core_error err = {0};
    /* Read, not taken: the contribution deletes it with the count (so an
     * answer fed again after a crash is fed once), the drop below otherwise. */
    if (share_pledge_get(c->share, a->id, &p, &found, &err)) {
        core_log(CORE_LOG_WARN, "review case %s: its pledge could not be read: %s", a->id, err.message);
        if (err.code != CORE_ERR_CRYPTO) return;
    }
    if (!found) {
        cs_crypto_wipe(&p, sizeof p);
        memset(&err, 0, sizeof err);
        /* a damaged pledge goes, as share_pledge_take let it */
        if (share_pledge_drop(c->share, a->id, &err))
            core_log(CORE_LOG_WARN, "review case %s: pledge kept: %s", a->id, err.message);
        return;
    }
    int64_t now = core_now();
    time_t t = (time_t)a->answered_at;
    struct tm tm;
    gmtime_r(&t, &tm);
    /* "other" is free text, not a code: it feeds no count. */
    if (p.region[0] && a->condition) {
        char result_id[64];
        snprintf(result_id, sizeof result_id, "review:%s", a->id);
        share_contribution_input in = {.condition = a->condition,
                                       .region = p.region,
                                       .created = a->answered_at,
                                       .birth_year = p.birth_year,
                                       .result_id = result_id,
                                       .year = tm.tm_year + 1900,
                                       .now = now,
                                       .source = SURVEIL_SOURCE_CLINICIAN,
                                       .pledge = &p,
                                       .pledge_case = a->id};
        memcpy(in.wallet, p.wallet, 32);
        share_receipt r;
        memset(&err, 0, sizeof err);
        core_status rc = share_contribute(c->share, &in, &r, &err);
        fed = rc == CORE_OK;
        /* FORBIDDEN: the consent was revoked since the request — nothing is
         * contributed, as it should be. CONFLICT "contribution": fed before
         * (recovery after a crash) — the pledge is gone. */
        if (rc && rc != CORE_ERR_FORBIDDEN && !(rc == CORE_ERR_CONFLICT && !strcmp(err.field, "contribution")))
            core_log(CORE_LOG_WARN, "review case %s: the confirmed condition was not contributed: %s", a->id,
                     err.message);
        if (!rc && r.pay_error.code) core_log(CORE_LOG_WARN, "rewards stay queued: %s", r.pay_error.message);
    }
    /* Nothing counted: the pledge goes, and its reservation with it. */
    memset(&err, 0, sizeof err);
    if (!fed && share_pledge_drop(c->share, a->id, &err))
        core_log(CORE_LOG_WARN, "review case %s: pledge kept: %s", a->id, err.message);
    bool training = false;
    memset(&err, 0, sizeof err);
    if (p.training && share_consented(c->share, p.wallet, LEDGER_PURPOSE_TRAINING, now, &training, &err))
        core_log(CORE_LOG_WARN, "review case %s: the training consent could not be read: %s", a->id, err.message);
    if (training) {
        char dir[4200], week[9];
        api_examples_dir(c, dir);
        surveil_week_format(surveil_week_of_time(a->answered_at), week);
        memset(&err, 0, sizeof err);
        if (screening_example_put(dir, p.handle, a->condition, week, a->jpeg, a->jpeg_len, &err))
            core_log(CORE_LOG_WARN, "review case %s: the labelled example was not kept: %s", a->id, err.message);
    }
    cs_crypto_wipe(&p, sizeof p);
}

/* POST /api/review/requests {record_id, org, share:{…}}. */
void api_review_request_create(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    json_t *body = NULL;
    if (api_require_person(rq, &sess) && (body = http_json_body(rq))) {
        const char *rid = api_str(body, "record_id"), *hex = api_str(body, "org");
        const json_t *extras = json_object_get(body, "share");
        review_request_in in = {.owner = sess.user_id, .data_key = sess.data_key};
        uint8_t org[32], pk[32], sk[64];
        bool registered, ok = true;
        if (!rid) {
            http_respond_error(rq, 422, "validation_failed", "record_id", "record_id is required");
            ok = false;
        } else if (!hex || strlen(hex) != 64 || !cs_crypto_unhex(hex, org, 32)) {
            http_respond_error(rq, 422, "validation_failed", "org", "org must be the organisation's key (64 hex)");
            ok = false;
        } else if (extras && !json_is_object(extras) && !json_is_null(extras)) {
            http_respond_error(rq, 422, "validation_failed", "share", "share must be an object");
            ok = false;
        }
        ok = ok && opt_string(rq, extras, "age_band", &in.share.age_band) &&
             opt_string(rq, extras, "sex", &in.share.sex) && opt_string(rq, extras, "body_site", &in.share.body_site) &&
             opt_string(rq, extras, "duration", &in.share.duration) && opt_string(rq, extras, "note", &in.share.note);
        json_t *rec = NULL;
        uint8_t *jpeg = NULL;
        size_t len = 0;
        core_error err = {0};
        if (ok && records_get(c->st, &sess, rid, &rec, &err)) {
            api_fail(rq, &err, NULL);
            ok = false;
        }
        if (ok && records_photo_get(c->st, &sess, rid, &jpeg, &len, &err)) {
            if (err.code == CORE_ERR_NOT_FOUND)
                http_respond_error(rq, 422, "no_photo", "record_id", "this record has no photo to share");
            else
                api_fail(rq, &err, NULL);
            ok = false;
        }
        /* The wallet is looked up, not registered: a refused request must
         * leave nothing on the ledger, and an unregistered wallet holds no
         * tokens (the module answers insufficient_tokens). */
        if (ok && api_wallet_keys(rq, c, &sess, pk, sk, &registered)) {
            char id[REVIEW_CASE_ID_TEXT];
            in.wallet_sk = sk;
            in.org = org;
            /* The model's words as the screening saved them, not the
             * title/details the person may have typed over since. */
            in.title = api_str(json_object_get(rec, "result"), "title");
            in.details = api_str(json_object_get(rec, "result"), "details");
            in.jpeg = jpeg;
            in.jpeg_len = len;
            in.record_id = api_str(rec, "id"); /* as records stored it, not as the body spelled it */
            json_t *out = NULL;
            if (review_case_request(c->review, &in, id, &err) ||
                review_case_get(c->review, sess.user_id, sess.data_key, id, &out, &err)) {
                case_fail(rq, &err);
            } else {
                share_confirmation cf = {0};
                pledge(c, &sess, id, pk, jpeg, len, &cf);
                if (json_object_set_new(out, "contribution", confirmation_json(&cf))) {
                    json_decref(out);
                    out = NULL; /* answered 500: out of memory */
                }
                http_respond_json(rq, 201, out ? json_pack("{s:o}", "request", out) : NULL);
            }
            cs_crypto_wipe(sk, sizeof sk);
        }
        if (jpeg) {
            cs_crypto_wipe(jpeg, len);
            free(jpeg);
        }
        json_decref(rec);
    }
    accounts_session_wipe(&sess);
}

/* The other case endpoints share one shape — session (+CSRF for writes),
 * the role (a person, or a clinician of an organisation), an optional JSON
 * body, one review_* call, {key: result} — so each is a small op and one
 * call to run_case(), as in api/records.c. */
typedef core_status (*case_op)(api_context *c, const accounts_session *s, http_request *rq, const json_t *body,
                               json_t **out, core_error *err);

typedef struct {
    bool write;      /* state-changing: CSRF required */
    bool clinician;  /* a clinician of an organisation (else a person) */
    bool body;       /* parse a JSON body first */
    bool case_codes; /* the module's refusals get their own codes (case_fail) */
    const char *key; /* success: 200 {key: result}; NULL: the result itself */
} case_route;

static void run_case(http_request *rq, void *ctx, case_route how, case_op op) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, how.write)) return;
    bool allowed = how.clinician ? require_clinician(rq, &sess) : api_require_person(rq, &sess);
    const json_t *body = allowed && how.body ? http_json_body(rq) : NULL;
    if (allowed && (!how.body || body)) {
        json_t *out = NULL;
        core_error err = {0};
        if (op(c, &sess, rq, body, &out, &err) == CORE_OK)
            http_respond_json(rq, 200, how.key ? json_pack("{s:o}", how.key, out) : out);
        else if (how.case_codes)
            case_fail(rq, &err);
        else
            api_fail(rq, &err, NULL);
    }
    accounts_session_wipe(&sess);
}

static core_status list_op(api_context *c, const accounts_session *s, http_request *rq, const json_t *b, json_t **o,
                           core_error *e) {
    (void)rq, (void)b;
    return review_case_list(c->review, s->user_id, o, e);
}
static core_status get_op(api_context *c, const accounts_session *s, http_request *rq, const json_t *b, json_t **o,
                          core_error *e) {
    (void)b;
    core_status rc = review_case_get(c->review, s->user_id, s->data_key, http_param(rq, "id"), o, e);
    /* What became of the confirmation (issue 14): only the vault, which
     * this session opens, knows. */
    if (!rc) rc = add_confirmation(c, s, http_param(rq, "id"), *o, e);
    if (rc) {
        json_decref(*o);
        *o = NULL;
    }
    return rc;
}
/* A case closed without an answer feeds nothing: its pledge goes now, and
 * the photo and reward it reserved in the person's vault are theirs again. */
static void drop_pledge(api_context *c, const char *id) {
    core_error e = {0};
    if (share_pledge_drop(c->share, id, &e)) core_log(CORE_LOG_WARN, "review case %s: pledge kept: %s", id, e.message);
}

void api_review_ended(void *ud, const char *id) { drop_pledge(ud, id); }

/* (Withdrawn, returned and expired cases drop their pledge through
 * api_review_ended, called by review as the case ends.) */
static core_status withdraw_op(api_context *c, const accounts_session *s, http_request *rq, const json_t *b, json_t **o,
                               core_error *e) {
    core_status rc = review_case_withdraw(c->review, s->user_id, http_param(rq, "id"), e);
    return rc ? rc : get_op(c, s, rq, b, o, e);
}
/* The wallet is looked up, never registered: a request's wallet is on the
 * ledger already, and one that is not has no consent (404). */
static core_status revoke_op(api_context *c, const accounts_session *s, http_request *rq, const json_t *b, json_t **o,
                             core_error *e) {
    uint8_t pk[32], sk[64];
    bool registered = false;
    core_status rc = api_wallet_lookup(c, s, pk, sk, &registered, e);
    if (!rc && !registered) rc = core_fail(e, CORE_ERR_NOT_FOUND, NULL, "no such review request");
    if (!rc) rc = review_case_revoke(c->review, s->user_id, sk, http_param(rq, "id"), e);
    cs_crypto_wipe(sk, sizeof sk);
    if (!rc) drop_pledge(c, http_param(rq, "id")); /* revoked while waiting: it will never be answered */
    return rc ? rc : get_op(c, s, rq, b, o, e);
}
static core_status queue_op(api_context *c, const accounts_session *s, http_request *rq, const json_t *b, json_t **o,
                            core_error *e) {
    (void)rq, (void)b;
    return review_queue(c->review, s->org, o, e);
}
static core_status open_op(api_context *c, const accounts_session *s, http_request *rq, const json_t *b, json_t **o,
                           core_error *e) {
    (void)b;
    return review_case_open(c->review, s->org, s->user_id, http_param(rq, "id"), o, e);
}
static core_status answer_op(api_context *c, const accounts_session *s, http_request *rq, const json_t *b, json_t **o,
                             core_error *e) {
    const char *id = http_param(rq, "id");
    core_status rc = review_case_answer(c->review, s->org, s->user_id, id, api_str(b, "condition"), api_str(b, "other"),
                                        api_str(b, "urgency"), api_str(b, "advice"), e);
    if (!rc) *o = json_pack("{s:s,s:s}", "id", id, "state", "answered");
    return rc;
}
static core_status return_op(api_context *c, const accounts_session *s, http_request *rq, const json_t *b, json_t **o,
                             core_error *e) {
    const char *id = http_param(rq, "id");
    core_status rc = review_case_return(c->review, s->org, s->user_id, id, api_str(b, "reason"), e);
    if (!rc) *o = json_pack("{s:s,s:s}", "id", id, "state", "returned");
    return rc;
}

void api_review_requests_list(http_request *rq, void *ctx) {
    run_case(rq, ctx, (case_route){.key = "requests"}, list_op);
}
void api_review_request_get(http_request *rq, void *ctx) { run_case(rq, ctx, (case_route){.key = "request"}, get_op); }
void api_review_request_withdraw(http_request *rq, void *ctx) {
    run_case(rq, ctx, (case_route){.write = true, .case_codes = true, .key = "request"}, withdraw_op);
}
void api_review_request_revoke(http_request *rq, void *ctx) {
    run_case(rq, ctx, (case_route){.write = true, .case_codes = true, .key = "request"}, revoke_op);
}
void api_review_queue(http_request *rq, void *ctx) {
    run_case(rq, ctx, (case_route){.clinician = true, .key = "queue"}, queue_op);
}
void api_review_case_get(http_request *rq, void *ctx) {
    run_case(rq, ctx, (case_route){.clinician = true, .key = "case"}, open_op);
}
void api_review_case_answer(http_request *rq, void *ctx) {
    run_case(rq, ctx, (case_route){.write = true, .clinician = true, .body = true, .case_codes = true}, answer_op);
}
void api_review_case_return(http_request *rq, void *ctx) {
    run_case(rq, ctx, (case_route){.write = true, .clinician = true, .body = true, .case_codes = true}, return_op);
}
