/* api — outbreak surveillance over HTTP: people share a screening result;
 * analysts and admins see protected aggregates, series with a detector's
 * threshold, and alerts; organisations fetch the same aggregates with a
 * bearer token. The workflow — consents, rewards, releases, alerts — is
 * share's (src/share/share.h): each handler checks who asks, reads the
 * request, makes one share call and maps its answer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "crypto/crypto.h"
#include "records/records.h"
#include "vision/vision.h"

static bool analyst(http_request *rq, api_context *c, accounts_session *sess, bool state_changing) {
    if (!api_session(rq, c, sess, state_changing)) return false;
    if (sess->role == ACCOUNTS_ANALYST || sess->role == ACCOUNTS_ADMIN) return true;
    http_respond_error(rq, 403, "forbidden", NULL, "surveillance data is for analysts and administrators");
    accounts_session_wipe(sess);
    return false;
}

/* ?source=: absent or "all" the plain release (-1); "breakdown" the
 * release by source (SOURCE_BREAKDOWN); a source's name that source's view
 * of it (its surveil_source). */
#define SOURCE_ALL (-1)
#define SOURCE_BREAKDOWN (-2)

/* The query of this request (share_query_make). Rows (regs, room for 1024)
 * are every subdivision of the country, whether or not it has data; the
 * columns (conds, room for 64) every condition. *source as above: anything
 * but the plain release asks for the one release by source (its own log
 * entry, budget charge and ledger record; surveil_grid_suppress_layers).
 * Responds and returns false on bad input. */
static bool parse_query(http_request *rq, api_context *c, surveil_query *q, const char **conds, const char **regs,
                        bool allow_epsilon, const char *country, const char **view, int *source) {
    const char *src = http_query(rq, "source");
    *source = SOURCE_ALL;
    if (src && src[0] && strcmp(src, "all") != 0) {
        *source = strcmp(src, "breakdown") == 0 ? SOURCE_BREAKDOWN : surveil_source_parse(src);
        if (*source == SOURCE_ALL) {
            http_respond_error(rq, 422, "validation_failed", "source",
                               "source must be all, breakdown, model, self_reported or clinician_confirmed");
            return false;
        }
    }
    share_question in = {.country = country ? country : http_query(rq, "country"),
                         .regions = regs,
                         .conditions = conds,
                         .from = http_query(rq, "from"),
                         .to = http_query(rq, "to"),
                         .condition = http_query(rq, "condition"),
                         .k = http_query(rq, "k"),
                         .epsilon = http_query(rq, "epsilon"),
                         .allow_epsilon = allow_epsilon,
                         .now = core_now()};
    const json_t *subs = in.country && strlen(in.country) == 2 ? regions_subdivisions(c->regs, in.country) : NULL;
    if (!subs || json_array_size(subs) == 0 || json_array_size(subs) > 1024) {
        http_respond_error(rq, 422, "validation_failed", "country",
                           "country must be an ISO 3166-1 alpha-2 code such as US, of a country with subdivisions");
        return false;
    }
    size_t i;
    const json_t *s;
    json_array_foreach(subs, i, s) regs[in.n_regions++] = json_string_value(json_object_get(s, "code"));
    for (int j = 0; j < screening_condition_count() && j < 64; j++)
        conds[in.n_conditions++] = screening_condition_at(j)->code;
    core_error err = {0};
    core_status rc = share_query_make(c->share, &in, q, view, &err);
    q->by_source = *source != SOURCE_ALL;
    if (rc == CORE_ERR_NOT_FOUND)
        http_respond_error(rq, 422, "week_not_released", err.field, "%s", err.message);
    else if (rc)
        api_fail(rq, &err, NULL);
    return rc == CORE_OK;
}

/* A release's failure: over budget, or the ledger's refusals (409
 * ledger_conflict), or any other failure. */
static void release_fail(http_request *rq, const core_error *err) {
    if (err->code == CORE_ERR_CONFLICT && strcmp(err->field, "epsilon") == 0)
        http_respond_error(rq, 409, "budget_exhausted", "epsilon", "%s", err->message);
    else
        api_ledger_fail(rq, err);
}

/* The breakdown's view of one condition: the totals' view, and each
 * source's view of that condition in by_source (values unchanged). */
static json_t *breakdown_view(const json_t *full, const char *condition) {
    json_t *out = surveil_release_view(full, condition), *by = json_array();
    json_int_t published = json_integer_value(json_object_get(out, "published_values"));
    json_int_t suppressed = json_integer_value(json_object_get(out, "suppressed_values"));
    bool ok = out && by;
    for (int s = 0; ok && s < SURVEIL_SOURCES; s++) {
        const char *name = surveil_source_name((surveil_source)s);
        json_t *sv = surveil_release_source_view(full, name), *cv = sv ? surveil_release_view(sv, condition) : NULL;
        ok = cv &&
             !json_array_append_new(by, json_pack("{s:s, s:O}", "source", name, "weeks", json_object_get(cv, "weeks")));
        published += json_integer_value(json_object_get(cv, "published_values"));
        suppressed += json_integer_value(json_object_get(cv, "suppressed_values"));
        json_decref(sv);
        json_decref(cv);
    }
    if (ok && !json_object_set_new(out, "by_source", by) &&
        !json_object_set_new(out, "published_values", json_integer(published)) &&
        !json_object_set_new(out, "suppressed_values", json_integer(suppressed)))
        return out;
    if (!ok) json_decref(by);
    json_decref(out);
    return NULL;
}

/* JSON body, or CSV when format=csv (same numbers), of the full release or
 * of one condition's view; of one source's view when source >= 0. */
static void respond_release(http_request *rq, api_context *c, const share_org *org, const surveil_query *q,
                            const char *view, int source) {
    char *body = NULL;
    core_error err = {0};
    if (share_release(c->share, org, q, &body, &err)) {
        release_fail(rq, &err);
        return;
    }
    const char *fmt = http_query(rq, "format");
    bool csv = fmt && strcmp(fmt, "csv") == 0;
    if (!view && !csv && source < 0) {
        http_respond_json_owned(rq, 200, body, strlen(body));
        return;
    }
    json_t *full = core_json_loads(body, 0, NULL, &err);
    free(body);
    if (!full) { /* the release's own text: only out of memory */
        api_fail(rq, &err, NULL);
        return;
    }
    if (full && source >= 0) {
        json_t *sv = surveil_release_source_view(full, surveil_source_name((surveil_source)source));
        json_decref(full);
        full = sv;
    }
    json_t *j = !view || !full                       ? json_incref(full)
                : json_object_get(full, "by_source") ? breakdown_view(full, view)
                                                     : surveil_release_view(full, view);
    json_decref(full);
    char *out = !j ? NULL : csv ? surveil_release_csv(j) : core_json_dumps(j, JSON_COMPACT);
    const char *what = j && csv ? "written as CSV" : "read back";
    json_decref(j);
    if (!out) {
        http_respond_error(rq, 500, "internal", NULL, "the release could not be %s", what);
    } else if (csv) {
        char disp[96];
        snprintf(disp, sizeof disp, "attachment; filename=\"caresync-%s.csv\"", q->country);
        http_add_header(rq, "Content-Disposition", disp);
        http_respond_bytes_owned(rq, 200, "text/csv; charset=utf-8", (uint8_t *)out, strlen(out));
    } else {
        http_respond_json_owned(rq, 200, out, strlen(out));
    }
}

/* ---- person: share a screening result ---- */

/* The photo's perceptual hash, from the copy the desk keeps for the session
 * (what the model saw): the same rash photographed or copied twice earns
 * once. Only the hash goes on, into the person's vault. The JPEG is wiped
 * and freed here. False (err set) only when memory ran out. */
static bool photo_hash(uint8_t *jpeg, size_t jpeg_len, share_contribution_input *in, core_error *err) {
    vision_limits lim;
    vision_limits_defaults(&lim);
    vision_image img = {0};
    in->has_phash = vision_decode(jpeg, jpeg_len, &lim, &img, NULL, NULL, err) == CORE_OK &&
                    vision_phash(&img, &in->phash, err) == CORE_OK;
    vision_image_free(&img);
    cs_crypto_wipe(jpeg, jpeg_len);
    free(jpeg);
    return in->has_phash;
}

/* share_contribute's refusals in the API's words; the rest by api_fail. */
static void contribute_fail(http_request *rq, core_status rc, core_error *err) {
    if (rc == CORE_ERR_FORBIDDEN && strcmp(err->field, "consent") == 0)
        http_respond_error(rq, 403, "consent_required", NULL,
                           "give a public-health consent that covers screening results first (Consents page)");
    else if (rc == CORE_ERR_NOT_FOUND && strcmp(err->field, "region") == 0)
        http_respond_error(rq, 422, "region_required", "region",
                           "set your home region in your profile first: shared data is counted by region");
    else if (rc == CORE_ERR_CONFLICT && strcmp(err->field, "week") == 0)
        http_respond_error(rq, 409, "week_closed", "week", "%s; take a new photo to share", err->message);
    else if (rc == CORE_ERR_CONFLICT && strcmp(err->field, "photo") == 0)
        http_respond_error(rq, 409, "duplicate_photo", "photo", "%s", err->message);
    else if (rc == CORE_ERR_CONFLICT && strcmp(err->field, "daily_cap") == 0)
        http_respond_error(rq, 409, "daily_cap_reached", NULL, "%s", err->message);
    else if (rc == CORE_ERR_CONFLICT)
        http_respond_error(rq, 409, "already_shared", NULL, "this result was already shared");
    else
        api_fail(rq, err, NULL);
}

/* 201 with the contribution as counted, its commitment and the reward. */
static void contribute_respond(http_request *rq, api_context *c, const share_receipt *r) {
    if (r->payout.dropped)
        core_log(CORE_LOG_WARN, "%zu queued reward(s) refused by the ledger and dropped: %s", r->payout.dropped,
                 r->payout.dropped_why.message);
    if (r->pay_error.code) core_log(CORE_LOG_WARN, "rewards stay queued: %s", r->pay_error.message);
    const surveil_contribution *sc = &r->contribution;
    char wk[9], salthex[33], text[160];
    surveil_week_format(sc->week, wk);
    cs_crypto_hex(r->salt, 16, salthex);
    surveil_contribution_text(sc, text, sizeof text);
    http_respond_json(rq, 201,
                      json_pack("{s:{s:s, s:s, s:s, s:s, s:s}, s:s, s:s, s:o, s:I, s:{s:s, s:i, s:I}}", "contribution",
                                "condition", sc->condition, "region", sc->region, "week", wk, "age_band",
                                surveil_age_band_name(sc->age_band), "source", surveil_source_name(sc->source), "text",
                                text, "salt", salthex, "commitment", api_hex(r->commitment, 32), "reward",
                                (json_int_t)r->reward, "payment", "status", r->payout.left ? "queued" : "paid", "batch",
                                c->cfg->surveil_reward_batch, "queued", (json_int_t)r->payout.left));
}

/* POST /api/screenings/{id}/contribute: the kept result, its photo's hash
 * and the profile's region and birth year go to share_contribute. */
void api_screenings_contribute(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    char *doc = NULL;
    json_t *result = NULL, *profile = NULL;
    core_error err = {0};
    share_contribution_input in = {
        .result_id = http_param(rq, "id"), .now = core_now(), .owner = sess.user_id, .data_key = sess.data_key};
    bool registered;
    uint8_t *jpeg = NULL;
    size_t jpeg_len = 0;
    if (!api_require_person(rq, &sess)) goto done;
    if (screening_desk_get(c->desk, sess.user_id, sess.view_key, in.result_id, &doc, &jpeg, &jpeg_len, &err) ||
        records_profile_get(c->st, &sess, &profile, &err)) {
        api_fail(rq, &err, NULL);
        goto done;
    }
    bool hashed = photo_hash(jpeg, jpeg_len, &in, &err);
    jpeg = NULL;
    if (!hashed) { /* the desk's own JPEG: only out of memory */
        api_fail(rq, &err, NULL);
        goto done;
    }
    result = core_json_loads(doc, 0, NULL, &err);
    if (!result) {
        if (err.code != CORE_ERR_NOMEM) core_fail(&err, CORE_ERR_CRYPTO, NULL, "a kept screening could not be read");
        api_fail(rq, &err, NULL);
        goto done;
    }
    in.condition = api_str(json_array_get(json_object_get(result, "top"), 0), "condition");
    if (json_is_true(json_object_get(result, "unsure")) || !in.condition) {
        http_respond_error(rq, 422, "unsure_result", NULL,
                           "an unsure result is not shared: it would add noise, not signal");
        goto done;
    }
    /* Looked up, not registered: a wallet not on the ledger has no consent,
     * and the answer is consent_required. */
    if (!api_wallet_keys(rq, c, &sess, in.wallet, NULL, &registered)) goto done;
    in.region = api_str(profile, "region");
    const json_t *created = json_object_get(result, "created"), *by = json_object_get(profile, "birth_year");
    in.created = json_is_integer(created) ? json_integer_value(created) : in.now;
    in.birth_year = json_is_integer(by) ? (int)json_integer_value(by) : 0;
    char today[11];
    records_today(today, &in.year);
    share_receipt r;
    core_status rc = share_contribute(c->share, &in, &r, &err);
    if (rc)
        contribute_fail(rq, rc, &err);
    else
        contribute_respond(rq, c, &r);
done:
    if (jpeg) {
        cs_crypto_wipe(jpeg, jpeg_len);
        free(jpeg);
    }
    free(doc);
    json_decref(result);
    json_decref(profile);
    accounts_session_wipe(&sess);
}

/* ---- analysts ---- */

static void add_country(void *ud, const char *country) { json_array_append_new(ud, json_string(country)); }

void api_surveil_overview(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!analyst(rq, c, &sess, false)) return;
    json_t *conds = json_array(), *countries = json_array();
    for (int i = 0; i < screening_condition_count(); i++) {
        const screening_condition *sc = screening_condition_at(i);
        json_array_append_new(conds, json_pack("{s:s, s:s}", "code", sc->code, "name", sc->name));
    }
    share_extent x;
    core_error err = {0};
    if (share_overview(c->share, core_now(), &x, add_country, countries, &err)) {
        json_decref(conds);
        json_decref(countries);
        api_fail(rq, &err, NULL);
    } else {
        char now[9], latest[9], a[9], b[9];
        surveil_week_format(surveil_week_of_time(core_now()), now);
        surveil_week_format(x.through, latest);
        surveil_week_format(x.first, a);
        surveil_week_format(x.last, b);
        http_respond_json(rq, 200,
                          json_pack("{s:o, s:o, s:o, s:s, s:s, s:i, s:i, s:[s,s,s,s,s]}", "conditions", conds,
                                    "countries", countries, "extent",
                                    x.any ? json_pack("{s:s, s:s}", "from", a, "to", b) : json_null(), "current_week",
                                    now, "latest_week", latest, "seal_delay_s", c->cfg->surveil_seal_delay, "k",
                                    c->cfg->surveil_k, "methods", "c1", "c2", "c3", "cusum", "farrington"));
    }
    accounts_session_wipe(&sess);
}

/* The ISO weeks ending with `to` (default: the latest sealed week), oldest
 * first. Week arithmetic lives in surveil/week.c only: the dashboard asks
 * here for its default period instead of counting weeks in JavaScript, where
 * a 53-week year is easy to get wrong. Calendar only, no counts: a week
 * after the sealed ones is fine here (aggregates refuses it). */
void api_surveil_weeks(http_request *rq, void *ctx) {
    enum { MAX_WEEKS = 520 }; /* ten years: more than any detector looks back */
    api_context *c = ctx;
    accounts_session sess;
    if (!analyst(rq, c, &sess, false)) return;
    accounts_session_wipe(&sess);
    core_error err = {0};
    int to = share_sealed_through(c->share, core_now());
    const char *to_text = http_query(rq, "to"), *count_text = http_query(rq, "count");
    if (to_text && surveil_week_parse(to_text, &to, &err)) {
        http_respond_error(rq, 422, "validation_failed", "to", "%s", err.message);
        return;
    }
    long count = 12;
    if (count_text) {
        char *end;
        count = strtol(count_text, &end, 10);
        if (!*count_text || *end || count < 1 || count > MAX_WEEKS) {
            http_respond_error(rq, 422, "validation_failed", "count", "count must be a whole number from 1 to %d",
                               MAX_WEEKS);
            return;
        }
    }
    int first = to - (int)count + 1;
    if (first < surveil_week_of_date(1970, 1, 4)) {
        http_respond_error(rq, 422, "validation_failed", "count", "weeks before 1970-W01 are not counted");
        return;
    }
    json_t *weeks = json_array();
    char wk[9];
    for (int w = first; w <= to; w++) {
        surveil_week_format(w, wk);
        json_array_append_new(weeks, json_string(wk));
    }
    char from[9], last[9];
    surveil_week_format(first, from);
    surveil_week_format(to, last);
    http_respond_json(rq, 200,
                      json_pack("{s:s, s:s, s:i, s:o}", "from", from, "to", last, "count", (int)count, "weeks", weeks));
}

void api_surveil_aggregates(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!analyst(rq, c, &sess, false)) return;
    surveil_query q;
    const char *conds[64], *view, *regs[1024];
    int source;
    if (parse_query(rq, c, &q, conds, regs, false, NULL, &view, &source)) {
        share_org org;
        share_analysts_org(c->share, &org);
        respond_release(rq, c, &org, &q, view, source);
    }
    accounts_session_wipe(&sess);
}

/* A series: the counts the country's release shows beside the detector's
 * threshold on the exact counts (share_series). */
void api_surveil_series(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!analyst(rq, c, &sess, false)) return;
    const char *region = http_query(rq, "region"), *mname = http_query(rq, "method"), *b = http_query(rq, "b");
    size_t rl = region ? strlen(region) : 0;
    surveil_method m = SURVEIL_C2;
    surveil_params p;
    core_error err = {0};
    if (!region || (rl != 2 && (rl < 4 || rl > 6 || region[2] != '-'))) {
        http_respond_error(rq, 422, "validation_failed", "region",
                           "region must be a country (US) or a subdivision (US-CA)");
        goto done;
    }
    if (mname && surveil_method_parse(mname, &m, &err)) {
        http_respond_error(rq, 422, "validation_failed", "method", "%s", err.message);
        goto done;
    }
    surveil_params_init(&p, m);
    if (b && surveil_params_set(&p, "b", b, &err)) {
        http_respond_error(rq, 422, "validation_failed", "b", "%s", err.message);
        goto done;
    }
    char country[3] = {region[0], region[1], 0};
    surveil_query q;
    const char *conds[64], *regs[1024], *condition;
    int source;
    if (!parse_query(rq, c, &q, conds, regs, false, country, &condition, &source)) goto done;
    if (source == SOURCE_BREAKDOWN) {
        http_respond_error(rq, 422, "validation_failed", "source",
                           "a series shows one source or all of them: source must be all or a source's name");
        goto done;
    }
    share_org org;
    share_analysts_org(c->share, &org);
    json_t *series = NULL;
    if (share_series_source(c->share, &org, &q, region, condition, source, &p, &series, &err))
        release_fail(rq, &err);
    else
        http_respond_json(rq, 200, series);
done:
    accounts_session_wipe(&sess);
}

typedef struct {
    json_t *list;
    int k;
} alert_ctx;

static void add_alert(void *ud, const surveil_alert *a) {
    alert_ctx *x = ud;
    char wk[9];
    surveil_week_format(a->week, wk);
    /* an alert shows its count only where a release would (scan's min_count
     * is k, so this holds unless k was raised since) */
    json_t *obs = a->observed >= x->k || a->observed == 0 ? json_integer(a->observed) : json_null();
    json_t *j = json_pack("{s:I, s:s, s:s, s:s, s:s, s:o, s:f, s:b, s:o, s:o, s:o}", "id", (json_int_t)a->id, "region",
                          a->region, "condition", a->condition, "week", wk, "method", a->method, "observed", obs,
                          "upperbound", a->upperbound, "synthetic", a->synthetic, "created_at", api_time(a->created_at),
                          "acked_by", a->acked_by[0] ? json_string(a->acked_by) : json_null(), "acked_at",
                          a->acked_at ? api_time(a->acked_at) : json_null());
    if (j) json_array_append_new(x->list, j);
}

void api_surveil_alerts(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!analyst(rq, c, &sess, false)) return;
    core_error err = {0};
    const char *open = http_query(rq, "open");
    alert_ctx x = {json_array(), c->cfg->surveil_k};
    if (share_alerts(c->share, core_now(), open && strcmp(open, "1") == 0, add_alert, &x, &err)) {
        json_decref(x.list);
        api_fail(rq, &err, NULL);
    } else {
        http_respond_json(rq, 200, json_pack("{s:o}", "alerts", x.list));
    }
    accounts_session_wipe(&sess);
}

void api_surveil_alert_ack(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!analyst(rq, c, &sess, true)) return;
    char *end;
    long long id = strtoll(http_param(rq, "id"), &end, 10);
    core_error err = {0};
    core_status rc = *end || id <= 0 ? core_fail(&err, CORE_ERR_NOT_FOUND, NULL, "no such alert")
                                     : share_alert_ack(c->share, id, sess.username, &err);
    if (rc == CORE_ERR_CONFLICT)
        http_respond_error(rq, 409, "already_acknowledged", NULL, "%s", err.message);
    else if (rc)
        api_fail(rq, &err, NULL);
    else
        http_respond_json(rq, 200, json_pack("{s:I, s:s}", "id", (json_int_t)id, "acked_by", sess.username));
    accounts_session_wipe(&sess);
}

/* ---- organisations ---- */

void api_org_aggregates(http_request *rq, void *ctx) {
    api_context *c = ctx;
    const char *auth = http_header(rq, "Authorization");
    share_org org;
    core_error err = {0};
    if (!auth || strncmp(auth, "Bearer ", 7) != 0) {
        http_add_header(rq, "WWW-Authenticate", "Bearer");
        http_respond_error(rq, 401, "unauthenticated", NULL,
                           "send the organisation's token: Authorization: Bearer TOKEN");
        return;
    }
    if (accounts_org_token_check(c->acc, auth + 7, org.key, org.name, &err)) {
        http_add_header(rq, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        http_respond_error(rq, 401, "unauthenticated", NULL, "%s", err.message);
        return;
    }
    surveil_query q;
    const char *conds[64], *view, *regs[1024];
    int source;
    if (parse_query(rq, c, &q, conds, regs, true, NULL, &view, &source)) respond_release(rq, c, &org, &q, view, source);
}

void api_admin_org_tokens_create(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    const char *key = http_param(rq, "key");
    uint8_t pk[32];
    share_org org;
    core_error err = {0};
    char token[ACCOUNTS_TOKEN_TEXT];
    if (sess.role != ACCOUNTS_ADMIN)
        http_respond_error(rq, 403, "forbidden", NULL, "only administrators can issue organisation tokens");
    else if (!key || strlen(key) != 64 || !cs_crypto_unhex(key, pk, 32))
        http_respond_error(rq, 404, "not_found", NULL, "no such organisation");
    else if (share_org_lookup(c->share, pk, &org, &err) || accounts_org_token_create(c->acc, pk, org.name, token, &err))
        api_fail(rq, &err, NULL);
    else {
        http_respond_json(rq, 201, json_pack("{s:s, s:s, s:s}", "organisation", org.name, "key", key, "token", token));
        cs_crypto_wipe(token, sizeof token);
    }
    accounts_session_wipe(&sess);
}
