/* api — outbreak surveillance: people share a screening result (with an
 * active consent, rewarded on the ledger); analysts and admins see
 * protected aggregates, series with a detector's threshold, and alerts;
 * organisations fetch the same aggregates with a bearer token. Every
 * aggregate that leaves goes through release(): built, suppressed (and
 * noised when epsilon > 0), logged with its budget, and recorded on the
 * ledger; the same question on the same data gets the same answer back. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "crypto/crypto.h"
#include "records/records.h"
#include "surveil/surveil.h"

#define ANALYSTS_ORG_NAME "CareSync analysts"

/* ---- shared helpers ---- */

static bool analyst(http_request *rq, api_context *c, accounts_session *sess, bool state_changing) {
    if (!api_session(rq, c, sess, state_changing)) return false;
    if (sess->role == ACCOUNTS_ANALYST || sess->role == ACCOUNTS_ADMIN) return true;
    http_respond_error(rq, 403, "forbidden", NULL, "surveillance data is for analysts and administrators");
    accounts_session_wipe(sess);
    return false;
}

/* The latest week anything built from the counts may show (surveil.h,
 * "sealed weeks"). */
static int sealed(const api_context *c) { return surveil_sealed_through(core_now(), c->cfg->surveil_seal_delay); }

/* Every screening condition code, in the model's order: the columns. */
static size_t condition_codes(const char **out, size_t cap) {
    size_t n = 0;
    for (int i = 0; i < screening_condition_count() && n < cap; i++) out[n++] = screening_condition_at(i)->code;
    return n;
}

static bool known_condition(const char *code) {
    for (int i = 0; i < screening_condition_count(); i++)
        if (strcmp(screening_condition_at(i)->code, code) == 0) return true;
    return false;
}

/* The analysts' pseudo-organisation: a fixed 32-byte identity derived from
 * the node key, registered on the ledger (by the admin key) on first use,
 * so releases to the dashboard are recorded like any other. */
static void analysts_org(const api_context *c, uint8_t key[32]) {
    cs_crypto_hash(key, "caresync-analysts-org", ledger_node_key(c->led), LEDGER_KEY);
}

static core_status submit_release(api_context *c, const uint8_t org[32], const surveil_release *r, int k,
                                  ledger_receipt *receipt, core_error *err) {
    ledger_tx tx = {.kind = LEDGER_TX_RELEASE};
    memcpy(tx.u.release.org, org, 32);
    surveil_release_fingerprint(r, tx.u.release.query);
    tx.u.release.epsilon_milli = (uint32_t)llround(surveil_release_epsilon(r) * 1000);
    tx.u.release.k_min = (uint32_t)k;
    size_t cells = surveil_release_cells(r);
    tx.u.release.cells = cells > UINT32_MAX ? UINT32_MAX : (uint32_t)cells;
    return ledger_sign_submit(c->led, &tx, c->node_sk, receipt, err);
}

/* Build or reuse the release of q for an organisation. Returns the JSON body
 * (malloc'd) or responds with the error and returns NULL. */
static char *release(http_request *rq, api_context *c, const char *org_label, const uint8_t org_key[32],
                     const char *org_name, const surveil_query *q) {
    core_error err = {0};
    /* The same question on the same data: the logged answer, before any work. */
    uint8_t fp[32];
    char *body = NULL;
    core_status rc = surveil_query_fingerprint(c->st, q, fp, &err);
    if (!rc) rc = surveil_release_find(c->st, org_label, fp, &body, &err);
    if (rc == CORE_OK) return body;
    if (rc != CORE_ERR_NOT_FOUND) {
        api_fail(rq, &err, NULL);
        return NULL;
    }
    surveil_release *r = NULL;
    if (surveil_release_build(c->st, q, NULL, &r, &err)) {
        api_fail(rq, &err, NULL);
        return NULL;
    }
    /* the data may have moved on since: the release keys on what it read */
    surveil_release_fingerprint(r, fp);
    json_t *j = surveil_release_json(r);
    char fphex[65];
    cs_crypto_hex(fp, 32, fphex);
    json_object_set_new(j, "release", json_pack("{s:s, s:s}", "fingerprint", fphex, "organisation", org_name));
    body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    int64_t id = 0;
    if (!body) rc = core_fail(&err, CORE_ERR_NOMEM, NULL, "out of memory");
    else rc = surveil_release_record(c->st, org_label, r, c->cfg->surveil_budget, body, &id, &err);
    if (rc == CORE_ERR_CONFLICT) {
        http_respond_error(rq, 409, "budget_exhausted", "epsilon", "%s", err.message);
    } else if (rc) {
        api_fail(rq, &err, NULL);
    } else {
        ledger_receipt receipt;
        rc = submit_release(c, org_key, r, q->k, &receipt, &err);
        if (rc == CORE_ERR_NOT_FOUND && strcmp(err.field, "org") == 0 && strcmp(org_name, ANALYSTS_ORG_NAME) == 0) {
            /* first release to the dashboard: register its organisation */
            ledger_tx reg = {.kind = LEDGER_TX_REGISTER_ORG};
            memcpy(reg.u.org.org, org_key, 32);
            snprintf(reg.u.org.name, sizeof reg.u.org.name, "%s", ANALYSTS_ORG_NAME);
            ledger_receipt rr;
            memset(&err, 0, sizeof err);
            rc = ledger_sign_submit(c->led, &reg, c->admin_sk, &rr, &err);
            if (rc == CORE_ERR_CONFLICT) rc = CORE_OK; /* a concurrent request registered it */
            if (!rc) rc = submit_release(c, org_key, r, q->k, &receipt, &err);
        }
        if (!rc) rc = surveil_release_set_txid(c->st, id, receipt.txid, &err);
        /* The release is logged and its budget spent either way (the safe
         * side); without its ledger record it is not handed out. */
        if (rc) api_ledger_fail(rq, &err);
    }
    surveil_release_free(r);
    if (rc) {
        free(body);
        return NULL;
    }
    return body;
}

/* country, from, to, condition, k from the query string. A release always
 * holds every condition (conds receives them): releases of single
 * conditions, suppressed each on its own, could be combined to recover
 * what one of them hides; a condition asked for is a view of the full
 * release (*view, NULL for all). Responds 422 and returns false on bad
 * input. */
static bool parse_query(http_request *rq, api_context *c, surveil_query *q, const char **conds, size_t cap,
                        const char **regs, size_t regcap, bool allow_epsilon, const char *country, const char **view) {
    memset(q, 0, sizeof *q);
    core_error err = {0};
    if (!country) country = http_query(rq, "country");
    const json_t *subs = country && strlen(country) == 2 ? regions_subdivisions(c->regs, country) : NULL;
    if (!subs || json_array_size(subs) == 0 || json_array_size(subs) > regcap) {
        http_respond_error(rq, 422, "validation_failed", "country",
                           "country must be an ISO 3166-1 alpha-2 code such as US, of a country with subdivisions");
        return false;
    }
    memcpy(q->country, country, 3);
    /* Rows: every subdivision, whether or not it has data (surveil_query). */
    size_t i;
    const json_t *s;
    json_array_foreach(subs, i, s) regs[i] = json_string_value(json_object_get(s, "code"));
    q->regions = regs;
    q->n_regions = json_array_size(subs);
    /* Only sealed weeks: the default period ends with the latest one, and a
     * later week asked for is refused rather than shown half-filled. */
    q->sealed_through = sealed(c);
    const char *from = http_query(rq, "from"), *to = http_query(rq, "to");
    q->week_to = q->sealed_through;
    if (to && surveil_week_parse(to, &q->week_to, &err)) goto bad;
    if (q->week_to > q->sealed_through) {
        char wk[9];
        surveil_week_format(q->sealed_through, wk);
        http_respond_error(rq, 422, "week_not_released", "to",
                           "that week is not released yet: a week's counts are released once it has ended and "
                           "%d hours have passed (the latest released week is %s)",
                           c->cfg->surveil_seal_delay / 3600, wk);
        return false;
    }
    q->week_from = q->week_to - 11;
    if (from && surveil_week_parse(from, &q->week_from, &err)) {
        snprintf(err.field, sizeof err.field, "from");
        goto bad;
    }
    const char *cond = http_query(rq, "condition");
    *view = NULL;
    if (cond && *cond && strcmp(cond, "all") != 0) {
        if (!known_condition(cond)) {
            http_respond_error(rq, 422, "validation_failed", "condition", "unknown condition '%s'", cond);
            return false;
        }
        *view = cond;
    }
    q->n_conditions = condition_codes(conds, cap);
    q->conditions = conds;
    q->k = q->base_k = c->cfg->surveil_k;
    const char *k = http_query(rq, "k");
    if (k) {
        char *end;
        long v = strtol(k, &end, 10);
        if (*end || v < c->cfg->surveil_k || v > 1000) {
            http_respond_error(rq, 422, "validation_failed", "k", "k must be a whole number from %d to 1000",
                               c->cfg->surveil_k);
            return false;
        }
        q->k = (int)v;
    }
    const char *eps = http_query(rq, "epsilon");
    if (eps) {
        char *end;
        double e = strtod(eps, &end);
        if (!allow_epsilon) {
            http_respond_error(rq, 422, "validation_failed", "epsilon", "the dashboard shows exact, suppressed counts");
            return false;
        }
        if (*end || !(e >= 0.01 && e <= 10)) {
            http_respond_error(rq, 422, "validation_failed", "epsilon", "epsilon must be from 0.01 to 10");
            return false;
        }
        q->epsilon = e;
    }
    return true;
bad:
    http_respond_error(rq, 422, "validation_failed", err.field[0] ? err.field : "to", "%s", err.message);
    return false;
}

/* JSON body, or CSV when format=csv (same numbers), of the full release or
 * of one condition's view. Takes body. */
static void respond_release(http_request *rq, char *body, const char *country, const char *view) {
    const char *fmt = http_query(rq, "format");
    if (view) {
        json_t *full = json_loads(body, 0, NULL);
        json_t *v = full ? surveil_release_view(full, view) : NULL;
        json_decref(full);
        free(body);
        body = v ? json_dumps(v, JSON_COMPACT) : NULL;
        json_decref(v);
        if (!body) {
            http_respond_error(rq, 500, "internal", NULL, "the release could not be read back");
            return;
        }
    }
    if (fmt && strcmp(fmt, "csv") == 0) {
        json_t *j = json_loads(body, 0, NULL);
        char *csv = j ? surveil_release_csv(j) : NULL;
        json_decref(j);
        free(body);
        if (!csv) {
            http_respond_error(rq, 500, "internal", NULL, "the release could not be written as CSV");
            return;
        }
        char disp[96];
        snprintf(disp, sizeof disp, "attachment; filename=\"caresync-%s.csv\"", country);
        http_add_header(rq, "Content-Disposition", disp);
        http_respond_bytes_owned(rq, 200, "text/csv; charset=utf-8", (uint8_t *)csv, strlen(csv));
        return;
    }
    http_respond_json_owned(rq, 200, body, strlen(body));
}

/* ---- person: share a screening result ---- */

typedef struct {
    int64_t now;
    ledger_consent found;
    bool hit;
} consent_pick;

static void pick_consent(void *ud, const ledger_consent *cn) {
    consent_pick *p = ud;
    if (p->hit || cn->revoked_height || (int64_t)cn->expires <= p->now) return;
    if (cn->purpose != LEDGER_PURPOSE_SURVEILLANCE || !(cn->scope & (1u << LEDGER_CAT_SCREENING))) return;
    p->found = *cn;
    p->hit = true;
}

/* Write the queued reward records to the ledger once there is a whole
 * batch: all of them, in random order, one after another, so the ledger
 * shows a batch of contributors and not when each one shared. A record the
 * ledger refuses for good (its consent was revoked or expired before the
 * batch was written, or it is already there after a crash) leaves the
 * queue; the count it came with stays, as it was shared under an active
 * consent. On any other failure (storage) the rest stays queued for the
 * next attempt. *left: how many are still queued. */
static pthread_mutex_t pay_lock = PTHREAD_MUTEX_INITIALIZER;

void api_surveil_pay_rewards(api_context *c, size_t *left) {
    enum { CAP = 4096 };
    surveil_reward *batch = malloc(CAP * sizeof *batch);
    core_error err = {0};
    size_t n = 0;
    pthread_mutex_lock(&pay_lock);
    core_status rc = batch ? CORE_OK : core_fail(&err, CORE_ERR_NOMEM, NULL, "out of memory");
    if (!rc) rc = surveil_rewards_pending(c->st, (size_t)c->cfg->surveil_reward_batch, batch, CAP, &n, &err);
    uint64_t rewards[LEDGER_CATEGORIES];
    if (!rc && n) rc = ledger_get_rewards(c->led, rewards, &err);
    for (size_t i = 0; i < n && !rc; i++) {
        ledger_tx tx = {.kind = LEDGER_TX_CONTRIBUTE};
        memcpy(tx.u.contribute.contributor, batch[i].contributor, 32);
        memcpy(tx.u.contribute.grant, batch[i].grant, 32);
        tx.u.contribute.category = LEDGER_CAT_SCREENING;
        memcpy(tx.u.contribute.commitment, batch[i].commitment, 32);
        tx.u.contribute.reward = rewards[LEDGER_CAT_SCREENING];
        ledger_receipt receipt;
        core_error e = {0};
        core_status s = ledger_sign_submit(c->led, &tx, c->node_sk, &receipt, &e);
        if (s == CORE_OK || s == CORE_ERR_CONFLICT || s == CORE_ERR_FORBIDDEN || s == CORE_ERR_NOT_FOUND) {
            if (s) core_log(CORE_LOG_WARN, "a queued reward was refused by the ledger and dropped: %s", e.message);
            rc = surveil_rewards_done(c->st, batch[i].commitment, &err);
        } else {
            err = e;
            rc = s;
        }
    }
    if (rc) core_log(CORE_LOG_WARN, "rewards stay queued: %s", err.message);
    free(batch);
    size_t q = 0;
    core_error e2 = {0};
    if (surveil_rewards_queued(c->st, &q, &e2)) q = 0;
    pthread_mutex_unlock(&pay_lock);
    if (left) *left = q;
}

void api_screenings_contribute(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    char *doc = NULL;
    json_t *result = NULL, *profile = NULL;
    uint8_t pk[32], sk[64];
    bool have_sk = false;
    if (!api_require_person(rq, &sess)) goto done;
    core_error err = {0};
    if (screening_desk_get(c->desk, sess.user_id, sess.view_key, http_param(rq, "id"), &doc, NULL, NULL, &err)) {
        api_fail(rq, &err, NULL);
        goto done;
    }
    result = json_loads(doc, 0, NULL);
    const json_t *best = json_array_get(json_object_get(result, "top"), 0);
    const char *cond = best ? api_str(best, "condition") : NULL;
    if (!result || json_is_true(json_object_get(result, "unsure")) || !cond) {
        http_respond_error(rq, 422, "unsure_result", NULL,
                           "an unsure result is not shared: it would add noise, not signal");
        goto done;
    }
    /* Looked up, not registered: a wallet not on the ledger has no consent,
     * and the answer below is consent_required. */
    bool registered;
    if (!api_wallet_keys(rq, c, &sess, pk, sk, &registered)) goto done;
    have_sk = true;
    consent_pick pick = {.now = core_now()};
    if (ledger_list_consents(c->led, pk, pick_consent, &pick, &err)) {
        api_fail(rq, &err, NULL);
        goto done;
    }
    if (!pick.hit) {
        http_respond_error(rq, 403, "consent_required", NULL,
                           "give a public-health consent that covers screening results first (Consents page)");
        goto done;
    }
    if (records_profile_get(c->st, &sess, &profile, &err)) {
        api_fail(rq, &err, NULL);
        goto done;
    }
    const char *region = api_str(profile, "region");
    if (!region) {
        http_respond_error(rq, 422, "region_required", "region",
                           "set your home region in your profile first: shared data is counted by region");
        goto done;
    }
    /* The five facts: the week of the screening, never its time. */
    surveil_contribution sc = {.source = SURVEIL_SOURCE_MODEL};
    snprintf(sc.condition, sizeof sc.condition, "%s", cond);
    snprintf(sc.region, sizeof sc.region, "%s", region);
    const json_t *created = json_object_get(result, "created");
    sc.week = surveil_week_of_time(json_is_integer(created) ? json_integer_value(created) : core_now());
    char today[11];
    int year;
    records_today(today, &year);
    const json_t *by = json_object_get(profile, "birth_year");
    sc.age_band = surveil_age_band(json_is_integer(by) ? (int)json_integer_value(by) : 0, year);
    /* One reward per result: the mark is a keyed hash of wallet and result id. */
    uint8_t mark[32], markin[32 + 64];
    const char *sid = http_param(rq, "id");
    memcpy(markin, pk, 32);
    memset(markin + 32, 0, 64);
    memcpy(markin + 32, sid, strnlen(sid, 64));
    cs_crypto_hash(mark, "caresync-contribution-mark", markin, sizeof markin);
    /* The reward's ledger record waits in the queue with the others
     * (surveil.h, "batched rewards"); the count goes into the open week. */
    uint8_t salt[16];
    cs_crypto_random(salt, sizeof salt);
    surveil_reward reward;
    memcpy(reward.contributor, pk, 32);
    memcpy(reward.grant, pick.found.grant, 32);
    surveil_commitment(&sc, salt, reward.commitment);
    uint64_t rewards[LEDGER_CATEGORIES];
    core_status rc = ledger_get_rewards(c->led, rewards, &err);
    if (!rc) rc = surveil_add(c->st, &sc, mark, sealed(c), &reward, &err);
    if (rc == CORE_ERR_CONFLICT && strcmp(err.field, "week") == 0) {
        http_respond_error(rq, 409, "week_closed", "week", "%s; take a new photo to share", err.message);
        goto done;
    }
    if (rc == CORE_ERR_CONFLICT) {
        http_respond_error(rq, 409, "already_shared", NULL, "this result was already shared");
        goto done;
    }
    if (rc) {
        api_fail(rq, &err, NULL);
        goto done;
    }
    size_t queued = 0;
    api_surveil_pay_rewards(c, &queued);
    char wk[9], salthex[33], text[160];
    surveil_week_format(sc.week, wk);
    cs_crypto_hex(salt, 16, salthex);
    surveil_contribution_text(&sc, text, sizeof text);
    http_respond_json(rq, 201,
                      json_pack("{s:{s:s, s:s, s:s, s:s, s:s}, s:s, s:s, s:o, s:I, s:{s:s, s:i, s:I}}", "contribution",
                                "condition", sc.condition, "region", sc.region, "week", wk, "age_band",
                                surveil_age_band_name(sc.age_band), "source", surveil_source_name(sc.source), "text",
                                text, "salt", salthex, "commitment", api_hex(reward.commitment, 32), "reward",
                                (json_int_t)rewards[LEDGER_CAT_SCREENING], "payment", "status",
                                queued ? "queued" : "paid", "batch", c->cfg->surveil_reward_batch, "queued",
                                (json_int_t)queued));
done:
    if (have_sk) cs_crypto_wipe(sk, sizeof sk);
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
    json_t *conds = json_array();
    for (int i = 0; i < screening_condition_count(); i++) {
        const screening_condition *sc = screening_condition_at(i);
        json_array_append_new(conds, json_pack("{s:s, s:s}", "code", sc->code, "name", sc->name));
    }
    json_t *countries = json_array();
    int first = 0, last = 0;
    core_error err = {0};
    json_t *extent = json_null();
    int through = sealed(c);
    core_status rc = surveil_extent(c->st, through, &first, &last, &err);
    if (!rc) {
        char a[9], b[9];
        surveil_week_format(first, a);
        surveil_week_format(last, b);
        extent = json_pack("{s:s, s:s}", "from", a, "to", b);
        rc = surveil_countries(c->st, through, add_country, countries, &err);
    } else if (rc == CORE_ERR_NOT_FOUND) {
        rc = CORE_OK;
    }
    if (rc) {
        json_decref(conds);
        json_decref(countries);
        json_decref(extent);
        api_fail(rq, &err, NULL);
    } else {
        char now[9], latest[9];
        surveil_week_format(surveil_week_of_time(core_now()), now);
        surveil_week_format(through, latest);
        http_respond_json(rq, 200,
                          json_pack("{s:o, s:o, s:o, s:s, s:s, s:i, s:i, s:[s,s,s,s,s]}", "conditions", conds,
                                    "countries", countries, "extent", extent, "current_week", now, "latest_week", latest,
                                    "seal_delay_s", c->cfg->surveil_seal_delay, "k", c->cfg->surveil_k, "methods",
                                    "c1", "c2", "c3", "cusum", "farrington"));
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
    int to = sealed(c);
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
    http_respond_json(rq, 200, json_pack("{s:s, s:s, s:i, s:o}", "from", from, "to", last, "count", (int)count,
                                         "weeks", weeks));
}

void api_surveil_aggregates(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!analyst(rq, c, &sess, false)) return;
    surveil_query q;
    const char *conds[64], *view, *regs[1024];
    if (parse_query(rq, c, &q, conds, 64, regs, 1024, false, NULL, &view)) {
        uint8_t org[32];
        analysts_org(c, org);
        char *body = release(rq, c, "analysts", org, ANALYSTS_ORG_NAME, &q);
        if (body) respond_release(rq, body, q.country, view);
    }
    accounts_session_wipe(&sess);
}

/* The detection side of a series: exact counts inside the service, from the
 * first week with data, so a method has all the history there is. */
static bool detect_series(http_request *rq, api_context *c, const char *region, const char *condition,
                          const surveil_params *p, int from, int to, json_t *ub, json_t *alarm, json_t **note) {
    core_error err = {0};
    int first, last;
    core_status rc = surveil_extent(c->st, to, &first, &last, &err);
    if (rc == CORE_ERR_NOT_FOUND || first > to) first = from;
    else if (rc) {
        api_fail(rq, &err, NULL);
        return false;
    }
    if (first > from) first = from;
    size_t n = (size_t)(to - first + 1);
    double *x = malloc(n * sizeof *x);
    surveil_point *out = malloc(n * sizeof *out);
    if (!x || !out) {
        free(x);
        free(out);
        http_respond_error(rq, 500, "internal", NULL, "out of memory");
        return false;
    }
    rc = surveil_series(c->st, region, condition, first, to, x, NULL, &err);
    size_t start = n;
    if (!rc && surveil_detect(p, x, n, &start, out, &err) != CORE_OK) {
        *note = json_string(err.message); /* e.g. not enough history yet: the chart shows the counts alone */
        start = n;
        rc = CORE_OK;
    }
    if (rc) {
        free(x);
        free(out);
        api_fail(rq, &err, NULL);
        return false;
    }
    for (int w = from; w <= to; w++) {
        size_t t = (size_t)(w - first);
        if (t >= start) {
            const surveil_point *o = &out[t - start];
            json_array_append_new(ub, isnan(o->upperbound) ? json_null() : json_real(o->upperbound));
            json_array_append_new(alarm, o->alarm < 0 ? json_null() : json_boolean(o->alarm == 1));
        } else {
            json_array_append_new(ub, json_null());
            json_array_append_new(alarm, json_null());
        }
    }
    free(x);
    free(out);
    return true;
}

void api_surveil_series(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!analyst(rq, c, &sess, false)) return;
    json_t *rel = NULL, *note = NULL;
    const char *region = http_query(rq, "region");
    size_t rl = region ? strlen(region) : 0;
    if (!region || (rl != 2 && (rl < 4 || rl > 6 || region[2] != '-'))) {
        http_respond_error(rq, 422, "validation_failed", "region", "region must be a country (US) or a subdivision (US-CA)");
        goto done;
    }
    const char *mname = http_query(rq, "method");
    surveil_method m = SURVEIL_C2;
    core_error err = {0};
    if (mname && surveil_method_parse(mname, &m, &err)) {
        http_respond_error(rq, 422, "validation_failed", "method", "%s", err.message);
        goto done;
    }
    surveil_params p;
    surveil_params_init(&p, m);
    const char *b = http_query(rq, "b");
    if (b && surveil_params_set(&p, "b", b, &err)) {
        http_respond_error(rq, 422, "validation_failed", "b", "%s", err.message);
        goto done;
    }
    /* The observed counts shown are those of the country's release, so the
     * chart can never publish a value the table suppressed. */
    char country[3] = {region[0], region[1], 0};
    surveil_query q;
    const char *conds[64], *regs[1024];
    const char *condition;
    if (!parse_query(rq, c, &q, conds, 64, regs, 1024, false, country, &condition)) goto done;
    uint8_t org[32];
    analysts_org(c, org);
    char *body = release(rq, c, "analysts", org, ANALYSTS_ORG_NAME, &q);
    if (!body) goto done;
    rel = json_loads(body, 0, NULL);
    free(body);
    if (!rel) {
        http_respond_error(rq, 500, "internal", NULL, "the release could not be read back");
        goto done;
    }
    int ri = -1, ci = -1;
    size_t i;
    const json_t *v;
    if (rl != 2)
        json_array_foreach(json_object_get(rel, "regions"), i, v) if (!strcmp(json_string_value(v), region)) ri = (int)i;
    if (condition)
        json_array_foreach(json_object_get(rel, "conditions"), i, v) if (!strcmp(json_string_value(v), condition)) ci = (int)i;
    json_t *weeks = json_array(), *observed = json_array(), *ub = json_array(), *alarm = json_array();
    const json_t *wk;
    json_array_foreach(json_object_get(rel, "weeks"), i, wk) {
        json_array_append_new(weeks, json_incref(json_object_get(wk, "week")));
        const json_t *val;
        if (rl == 2) val = ci >= 0 ? json_array_get(json_object_get(wk, "condition_totals"), (size_t)ci) : json_object_get(wk, "total");
        else if (ri < 0) val = NULL; /* no data in this region in the period: zeros */
        else if (ci >= 0) val = json_array_get(json_array_get(json_object_get(wk, "cells"), (size_t)ri), (size_t)ci);
        else val = json_array_get(json_object_get(wk, "region_totals"), (size_t)ri);
        json_array_append_new(observed, val ? json_incref((json_t *)val) : json_integer(0));
    }
    if (!detect_series(rq, c, rl == 2 ? country : region, condition, &p, q.week_from, q.week_to, ub, alarm, &note)) {
        json_decref(weeks);
        json_decref(observed);
        json_decref(ub);
        json_decref(alarm);
        goto done;
    }
    http_respond_json(rq, 200,
                      json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:O, s:i, s:o}", "region", region, "condition",
                                condition ? condition : "all", "method", surveil_method_name(m), "weeks", weeks,
                                "observed", observed, "upperbound", ub, "alarm", alarm, "synthetic",
                                json_object_get(rel, "synthetic"), "k", q.k, "note", note ? note : json_null()));
    note = NULL;
done:
    json_decref(rel);
    json_decref(note);
    accounts_session_wipe(&sess);
}

/* Alerts are rescanned when the sealed data changed since the last scan:
 * new data, or a newly sealed week. They look at sealed weeks only, so an
 * alert never appears because of one contribution to an open week. */
static pthread_mutex_t scan_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t scanned_version = -1;
static int scanned_week = -1;

static core_status rescan(api_context *c, core_error *err) {
    int64_t v;
    core_status rc = surveil_data_version(c->st, &v, err);
    if (rc) return rc;
    pthread_mutex_lock(&scan_lock);
    int now = sealed(c);
    if (v != scanned_version || now != scanned_week) {
        int first, last;
        core_status e = surveil_extent(c->st, now, &first, &last, err);
        surveil_params p;
        surveil_alert_params(e == CORE_OK ? now - first + 1 : 0, &p);
        int added;
        rc = e && e != CORE_ERR_NOT_FOUND ? e : surveil_scan(c->st, &p, now, 8, c->cfg->surveil_k, &added, err);
        if (!rc) {
            scanned_version = v;
            scanned_week = now;
        }
    }
    pthread_mutex_unlock(&scan_lock);
    return rc;
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
    if (rescan(c, &err) || surveil_alerts(c->st, open && strcmp(open, "1") == 0, add_alert, &x, &err)) {
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
    const char *ids = http_param(rq, "id");
    long long id = strtoll(ids, &end, 10);
    core_error err = {0};
    if (*end || id <= 0) {
        http_respond_error(rq, 404, "not_found", NULL, "no such alert");
    } else {
        core_status rc = surveil_alert_ack(c->st, id, sess.username, &err);
        if (rc == CORE_ERR_CONFLICT) http_respond_error(rq, 409, "already_acknowledged", NULL, "%s", err.message);
        else if (rc) api_fail(rq, &err, NULL);
        else http_respond_json(rq, 200, json_pack("{s:I, s:s}", "id", (json_int_t)id, "acked_by", sess.username));
    }
    accounts_session_wipe(&sess);
}

/* ---- organisations ---- */

void api_org_aggregates(http_request *rq, void *ctx) {
    api_context *c = ctx;
    const char *auth = http_header(rq, "Authorization");
    uint8_t org[32];
    char name[65];
    core_error err = {0};
    if (!auth || strncmp(auth, "Bearer ", 7) != 0) {
        http_add_header(rq, "WWW-Authenticate", "Bearer");
        http_respond_error(rq, 401, "unauthenticated", NULL, "send the organisation's token: Authorization: Bearer TOKEN");
        return;
    }
    if (accounts_org_token_check(c->acc, auth + 7, org, name, &err)) {
        http_add_header(rq, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        http_respond_error(rq, 401, "unauthenticated", NULL, "%s", err.message);
        return;
    }
    surveil_query q;
    const char *conds[64], *view, *regs[1024];
    if (!parse_query(rq, c, &q, conds, 64, regs, 1024, true, NULL, &view)) return;
    char label[80];
    char hex[65];
    cs_crypto_hex(org, 32, hex);
    snprintf(label, sizeof label, "org:%.64s", hex);
    char *body = release(rq, c, label, org, name, &q);
    if (body) respond_release(rq, body, q.country, view);
}

typedef struct {
    const uint8_t *want;
    char name[LEDGER_NAME_MAX + 1];
    bool hit;
} find_t;

static void find_org(void *ud, const uint8_t pk[LEDGER_KEY], const char *name, uint64_t height) {
    (void)height;
    find_t *f = ud;
    if (!f->hit && memcmp(pk, f->want, 32) == 0) {
        snprintf(f->name, sizeof f->name, "%s", name);
        f->hit = true;
    }
}

void api_admin_org_tokens_create(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    if (sess.role != ACCOUNTS_ADMIN) {
        http_respond_error(rq, 403, "forbidden", NULL, "only administrators can issue organisation tokens");
        accounts_session_wipe(&sess);
        return;
    }
    uint8_t org[32];
    const char *key = http_param(rq, "key");
    core_error err = {0};
    find_t f = {.want = org};
    if (!key || strlen(key) != 64 || !cs_crypto_unhex(key, org, 32)) {
        http_respond_error(rq, 404, "not_found", NULL, "no such organisation");
    } else if (ledger_list_orgs(c->led, find_org, &f, &err)) {
        api_fail(rq, &err, NULL);
    } else if (!f.hit) {
        http_respond_error(rq, 404, "not_found", NULL, "no such organisation (register it on the ledger first)");
    } else {
        char token[ACCOUNTS_TOKEN_TEXT];
        if (accounts_org_token_create(c->acc, org, f.name, token, &err)) {
            api_fail(rq, &err, NULL);
        } else {
            http_respond_json(rq, 201, json_pack("{s:s, s:s, s:s}", "organisation", f.name, "key", key, "token", token));
            cs_crypto_wipe(token, sizeof token);
        }
    }
    accounts_session_wipe(&sess);
}
