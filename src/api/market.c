/* api — data requests (issue 14): organisations post and withdraw requests
 * and download datasets, either with their bearer token (/api/v1) or through
 * a signed-in member's session (/api/org: an analyst of the organisation,
 * web/org-requests.html); administrators credit organisations and
 * approve (fund) requests; people list the open requests that match their
 * record and accept. The market module does the work; these handlers
 * authenticate, parse, and map errors. */
#include <stdio.h>
#include <string.h>

#include "anon/anon.h"
#include "api/internal.h"
#include "crypto/crypto.h"
#include "market/market.h"
#include "records/records.h"

/* The organisation behind the bearer token, or respond 401. */
static bool org_auth(http_request *rq, api_context *c, uint8_t key[ACCOUNTS_ORG_KEY_BYTES]) {
    const char *auth = http_header(rq, "Authorization");
    char name[ACCOUNTS_ORG_NAME_MAX + 1];
    core_error err = {0};
    if (!auth || strncmp(auth, "Bearer ", 7) != 0) {
        http_add_header(rq, "WWW-Authenticate", "Bearer");
        http_respond_error(rq, 401, "unauthenticated", NULL,
                           "send the organisation's token: Authorization: Bearer TOKEN");
        return false;
    }
    if (accounts_org_token_check(c->acc, auth + 7, key, name, &err)) {
        http_add_header(rq, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        http_respond_error(rq, 401, "unauthenticated", NULL, "%s", err.message);
        return false;
    }
    return true;
}

static bool need_market(http_request *rq, api_context *c) {
    if (c->market) return true;
    http_respond_error(rq, 503, "market_unavailable", NULL, "data requests are not available on this server");
    return false;
}

/* Module errors: balance / daily cap / state conflicts keep their own codes. */
static void market_fail(http_request *rq, const core_error *err) {
    if (err->code == CORE_ERR_CONFLICT) {
        const char *code = !strcmp(err->field, "balance")     ? "insufficient_tokens"
                           : !strcmp(err->field, "daily_cap") ? "daily_cap_reached"
                           : !strcmp(err->field, "accepted")  ? "already_accepted"
                                                              : "conflict";
        api_fail(rq, err, code);
        return;
    }
    api_fail(rq, err, NULL);
}

static void respond(http_request *rq, int status, const char *key, json_t *v) {
    http_respond_json(rq, status, json_pack("{s:o}", key, v));
}

/* ---- organisations (bearer token or a member's session) ----
 *
 * Each organisation handler is one body taking the organisation's key; the
 * token routes and the session routes differ only in how the key is found,
 * so the two can never drift apart. */

typedef void (*org_body)(http_request *rq, api_context *c, const uint8_t org[32]);

static void as_token(http_request *rq, void *ctx, org_body body) {
    api_context *c = ctx;
    uint8_t org[32];
    if (need_market(rq, c) && org_auth(rq, c, org)) body(rq, c, org);
}

/* A member acts for the organisation of their session: an analyst that an
 * administrator put in a (ledger-registered) organisation. Clinicians of an
 * organisation answer its review cases, not its data requests; an analyst
 * without one has only the dashboard. State-changing calls need the CSRF
 * token, as every session POST. */
static void as_member(http_request *rq, void *ctx, bool state_changing, org_body body) {
    api_context *c = ctx;
    accounts_session sess;
    if (!need_market(rq, c) || !api_session(rq, c, &sess, state_changing)) return;
    uint8_t org[32];
    bool member = sess.role == ACCOUNTS_ANALYST && sess.has_org;
    if (member) memcpy(org, sess.org, sizeof org);
    accounts_session_wipe(&sess);
    if (!member) {
        http_respond_error(rq, 403, "forbidden", NULL,
                           "only analysts of an organisation act for it; ask an administrator to add you to yours");
        return;
    }
    body(rq, c, org);
    cs_crypto_wipe(org, sizeof org);
}

static void requests_list(http_request *rq, api_context *c, const uint8_t org[32]) {
    json_t *out = NULL;
    core_error err = {0};
    if (market_request_list_org(c->market, org, &out, &err))
        market_fail(rq, &err);
    else
        http_respond_json(rq, 200, out);
}

static void requests_create(http_request *rq, api_context *c, const uint8_t org[32]) {
    json_t *out = NULL, *body = http_json_body(rq);
    core_error err = {0};
    if (!body) return;
    if (market_request_create(c->market, org, body, &out, &err))
        market_fail(rq, &err);
    else
        respond(rq, 201, "request", out);
}

static void request_get(http_request *rq, api_context *c, const uint8_t org[32]) {
    json_t *out = NULL;
    core_error err = {0};
    if (market_request_get(c->market, org, http_param(rq, "id"), &out, &err))
        market_fail(rq, &err);
    else
        respond(rq, 200, "request", out);
}

static void request_withdraw(http_request *rq, api_context *c, const uint8_t org[32]) {
    json_t *out = NULL;
    core_error err = {0};
    if (market_request_withdraw(c->market, org, http_param(rq, "id"), &out, &err))
        market_fail(rq, &err);
    else
        respond(rq, 200, "request", out);
}

static void org_credit(http_request *rq, api_context *c, const uint8_t org[32]) {
    json_t *out = NULL;
    core_error err = {0};
    if (market_org_credit(c->market, org, &out, &err))
        market_fail(rq, &err);
    else
        http_respond_json(rq, 200, out);
}

static void request_dataset(http_request *rq, api_context *c, const uint8_t org[32]);

void api_org_requests_list(http_request *rq, void *ctx) { as_token(rq, ctx, requests_list); }
void api_org_requests_create(http_request *rq, void *ctx) { as_token(rq, ctx, requests_create); }
void api_org_request_get(http_request *rq, void *ctx) { as_token(rq, ctx, request_get); }
void api_org_request_withdraw(http_request *rq, void *ctx) { as_token(rq, ctx, request_withdraw); }
void api_org_request_dataset(http_request *rq, void *ctx) { as_token(rq, ctx, request_dataset); }

void api_member_requests_list(http_request *rq, void *ctx) { as_member(rq, ctx, false, requests_list); }
void api_member_requests_create(http_request *rq, void *ctx) { as_member(rq, ctx, true, requests_create); }
void api_member_request_get(http_request *rq, void *ctx) { as_member(rq, ctx, false, request_get); }
void api_member_request_withdraw(http_request *rq, void *ctx) { as_member(rq, ctx, true, request_withdraw); }
void api_member_request_dataset(http_request *rq, void *ctx) { as_member(rq, ctx, false, request_dataset); }
void api_member_credit(http_request *rq, void *ctx) { as_member(rq, ctx, false, org_credit); }

/* ---- administrators ---- */

static bool admin(http_request *rq, api_context *c, accounts_session *sess, bool state_changing) {
    if (!api_session(rq, c, sess, state_changing)) return false;
    if (sess->role == ACCOUNTS_ADMIN) return true;
    accounts_session_wipe(sess);
    http_respond_error(rq, 403, "forbidden", NULL, "only administrators can do this");
    return false;
}

void api_admin_org_credit(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!need_market(rq, c) || !admin(rq, c, &sess, true)) return;
    accounts_session_wipe(&sess);
    const char *key = http_param(rq, "key");
    uint8_t org[32], txid[32];
    json_t *body = NULL;
    core_error err = {0};
    int64_t balance = 0;
    if (!key || strlen(key) != 64 || !cs_crypto_unhex(key, org, 32)) {
        http_respond_error(rq, 404, "not_found", NULL, "no such organisation");
        return;
    }
    body = http_json_body(rq);
    if (!body) return;
    const json_t *amount = json_object_get(body, "amount");
    if (!json_is_integer(amount))
        http_respond_error(rq, 422, "validation_failed", "amount", "amount must be a whole number of tokens");
    else if (market_credit(c->market, org, json_integer_value(amount), api_str(body, "reference"), txid, &balance,
                           &err))
        market_fail(rq, &err);
    else
        http_respond_json(rq, 201,
                          json_pack("{s:{s:s}, s:I, s:I, s:s, s:o}", "organisation", "key", key, "balance",
                                    (json_int_t)balance, "amount", json_integer_value(amount), "reference",
                                    api_str(body, "reference"), "txid", api_hex(txid, 32)));
}

void api_admin_market_list(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    json_t *out = NULL;
    core_error err = {0};
    if (!need_market(rq, c) || !admin(rq, c, &sess, false)) return;
    accounts_session_wipe(&sess);
    if (market_request_list_all(c->market, http_query(rq, "state"), &out, &err))
        market_fail(rq, &err);
    else
        respond(rq, 200, "requests", out);
}

void api_admin_market_approve(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    json_t *out = NULL;
    core_error err = {0};
    if (!need_market(rq, c) || !admin(rq, c, &sess, true)) return;
    accounts_session_wipe(&sess);
    if (market_request_approve(c->market, http_param(rq, "id"), &out, &err))
        market_fail(rq, &err);
    else
        respond(rq, 200, "request", out);
}

/* ---- people ---- */

/* The person's decrypted profile and entries, for matching in this request
 * only. Responds on failure. */
static bool person_record(http_request *rq, api_context *c, const accounts_session *sess, json_t **profile,
                          json_t **entries) {
    core_error err = {0};
    *profile = *entries = NULL;
    if (records_profile_get(c->st, sess, profile, &err) || records_list(c->st, sess, entries, &err)) {
        json_decref(*profile);
        *profile = NULL;
        api_fail(rq, &err, NULL);
        return false;
    }
    return true;
}

void api_market_list(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!need_market(rq, c) || !api_session(rq, c, &sess, false)) return;
    json_t *profile = NULL, *entries = NULL, *out = NULL;
    if (api_require_person(rq, &sess) && person_record(rq, c, &sess, &profile, &entries)) {
        market_person p = {.owner = sess.user_id, .data_key = sess.data_key, .profile = profile, .entries = entries};
        core_error err = {0};
        if (market_person_list(c->market, &p, &out, &err))
            market_fail(rq, &err);
        else
            http_respond_json(rq, 200, out);
    }
    json_decref(profile);
    json_decref(entries);
    accounts_session_wipe(&sess);
}

void api_market_accept(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!need_market(rq, c) || !api_session(rq, c, &sess, true)) return;
    json_t *profile = NULL, *entries = NULL, *out = NULL;
    uint8_t pk[32], sk[64];
    /* The wallet signs the consent, so it must be on the ledger. */
    if (api_require_person(rq, &sess) && person_record(rq, c, &sess, &profile, &entries) &&
        api_wallet(rq, c, &sess, pk, sk)) {
        market_person p = {
            .owner = sess.user_id, .data_key = sess.data_key, .wallet_sk = sk, .profile = profile, .entries = entries};
        core_error err = {0};
        if (market_accept(c->market, &p, http_param(rq, "id"), &out, &err))
            market_fail(rq, &err);
        else
            http_respond_json(rq, 201, out);
        cs_crypto_wipe(sk, sizeof sk);
    }
    json_decref(profile);
    json_decref(entries);
    accounts_session_wipe(&sess);
}

/* ---- delivery ---- */

/* GET /api/v1/requests/{id}/dataset?format=csv|json (and /api/org/…): the
 * request's current rows made k-anonymous (k = the server's small-cell k,
 * the surveillance's), recorded as a ledger release of the CSV's SHA-256.
 * CSV carries the counts in headers; JSON carries them in its summary, with
 * the dictionary and the receipt. */
static void request_dataset(http_request *rq, api_context *c, const uint8_t org[32]) {
    const char *format = http_query(rq, "format");
    if (!format) format = "csv";
    if (strcmp(format, "csv") && strcmp(format, "json")) {
        http_respond_error(rq, 422, "validation_failed", "format", "format is csv or json");
        return;
    }
    anon_delivery *d = NULL;
    market_delivery_receipt rec;
    core_error err = {0};
    if (market_deliver(c->market, org, http_param(rq, "id"), c->cfg->surveil_k, &d, &rec, &err)) {
        market_fail(rq, &err);
        return;
    }
    const anon_stats *s = anon_delivery_stats(d);
    char at[32], num[32];
    core_format_time(rec.at, at);
    if (!strcmp(format, "json")) {
        json_t *doc = NULL;
        if (anon_delivery_json(d, &doc, &err) ||
            json_object_set_new(doc, "receipt",
                                json_pack("{s:o, s:s, s:b, s:i}", "txid", api_hex(rec.txid, 32), "at", at, "repeat",
                                          rec.repeat, "contributors", (int)s->contributors_in))) {
            json_decref(doc);
            anon_delivery_free(d);
            http_respond_error(rq, 500, "internal", NULL, "out of memory");
            return;
        }
        anon_delivery_free(d);
        http_respond_json(rq, 200, doc);
        return;
    }
    char *csv = NULL, hex[65], gen[160];
    size_t len = 0;
    if (anon_delivery_csv(d, &csv, &len, &err)) {
        anon_delivery_free(d);
        http_respond_error(rq, 500, "internal", NULL, "out of memory");
        return;
    }
    cs_crypto_hex(rec.sha256, 32, hex);
    http_add_header(rq, "X-Dataset-SHA256", hex);
    cs_crypto_hex(rec.txid, 32, hex);
    http_add_header(rq, "X-Ledger-Txid", hex);
    http_add_header(rq, "X-Delivered-At", at);
    http_add_header(rq, "X-Repeat", rec.repeat ? "true" : "false");
    snprintf(num, sizeof num, "%d", s->k);
    http_add_header(rq, "X-K", num);
    /* Eight extra headers at most (http): the counts share one. */
    snprintf(gen, sizeof gen, "in=%zu, delivered=%zu, held_back=%zu", s->rows_in, s->delivered, s->held_back);
    http_add_header(rq, "X-Rows", gen);
    /* The steps in anon.h's order, named as in the JSON summary. */
    snprintf(gen, sizeof gen,
             "region_to_country=%zu, week_to_month=%zu, age_to_10_years=%zu, age_to_20_years=%zu, "
             "sex_to_unspecified=%zu",
             s->generalised[0], s->generalised[1], s->generalised[2], s->generalised[3], s->generalised[4]);
    http_add_header(rq, "X-Rows-Generalised", gen);
    anon_delivery_free(d);
    http_add_header(rq, "Content-Disposition", "attachment; filename=\"dataset.csv\"");
    http_respond_bytes_owned(rq, 200, "text/csv; charset=utf-8", (uint8_t *)csv, len);
}

/* GET /api/market/participations: the person's participations, each with
 * the deliveries made while their rows were in the request. */
void api_market_participations(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!need_market(rq, c) || !api_session(rq, c, &sess, false)) return;
    json_t *out = NULL;
    core_error err = {0};
    if (api_require_person(rq, &sess)) {
        if (market_participations(c->market, sess.user_id, &out, &err))
            market_fail(rq, &err);
        else
            http_respond_json(rq, 200, out);
    }
    accounts_session_wipe(&sess);
}
