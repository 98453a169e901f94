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

#include <string.h>

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

/* PUT /api/admin/users/{username}/org {org: KEY | null}: the clinician's
 * organisation (registered on the ledger), or none. */
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
        } else if (accounts_set_org(c->acc, http_param(rq, "username"), hex ? key : NULL, &err)) {
            api_fail(rq, &err, NULL);
        } else {
            json_t *o = hex ? json_pack("{s:s,s:s}", "key", hex, "name", found.name) : json_null();
            http_respond_json(rq, 200,
                              json_pack("{s:s,s:s,s:o}", "username", http_param(rq, "username"), "role", "clinician",
                                        "organisation", o));
        }
    }
    accounts_session_wipe(&sess);
}
