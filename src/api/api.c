/* api — route table and shared helpers. */
#include "api/internal.h"

#include <stdio.h>
#include <string.h>

bool api_register(http_router *r) {
    bool ok = true;
    ok &= http_router_add(r, "GET", "/api/health", api_health);
    ok &= http_router_add(r, "GET", "/api/regions", api_regions);
    ok &= http_router_add(r, "POST", "/api/auth/signup", api_signup);
    ok &= http_router_add(r, "POST", "/api/auth/login", api_login);
    ok &= http_router_add(r, "POST", "/api/auth/logout", api_logout);
    ok &= http_router_add(r, "POST", "/api/auth/reset", api_reset);
    ok &= http_router_add(r, "GET", "/api/session", api_session_get);
    ok &= http_router_add(r, "POST", "/api/account/password", api_password);
    ok &= http_router_add(r, "DELETE", "/api/account", api_account_delete);
    ok &= http_router_add(r, "POST", "/api/account/sessions/revoke-others", api_account_sessions_revoke_others);
    ok &= http_router_add(r, "GET", "/api/profile", api_profile_get);
    ok &= http_router_add(r, "PUT", "/api/profile", api_profile_put);
    ok &= http_router_add(r, "GET", "/api/records", api_records_list);
    ok &= http_router_add(r, "POST", "/api/records", api_records_create);
    ok &= http_router_add(r, "GET", "/api/records/{id}", api_records_get);
    ok &= http_router_add(r, "PUT", "/api/records/{id}", api_records_update);
    ok &= http_router_add(r, "DELETE", "/api/records/{id}", api_records_delete);
    ok &= http_router_add(r, "GET", "/api/records/{id}/photo", api_records_photo);
    ok &= http_router_add(r, "POST", "/api/records/{id}/anchor", api_records_anchor);
    ok &= http_router_add(r, "GET", "/api/records/{id}/anchor", api_records_anchor_proof);
    ok &= http_router_add(r, "GET", "/api/export", api_export);
    ok &= http_router_add(r, "GET", "/api/admin/users", api_admin_users);
    ok &= http_router_add(r, "POST", "/api/admin/orgs", api_admin_orgs_create);
    ok &= http_router_add(r, "GET", "/api/wallet", api_wallet_get);
    ok &= http_router_add(r, "POST", "/api/wallet/transfer", api_wallet_transfer);
    ok &= http_router_add(r, "POST", "/api/wallet/redeem", api_wallet_redeem);
    ok &= http_router_add(r, "GET", "/api/consents", api_consents_list);
    ok &= http_router_add(r, "POST", "/api/consents", api_consents_create);
    ok &= http_router_add(r, "POST", "/api/consents/{id}/revoke", api_consents_revoke);
    ok &= http_router_add(r, "GET", "/api/consents/{id}/receipt", api_consents_receipt);
    ok &= http_router_add(r, "GET", "/api/ledger", api_ledger_summary);
    ok &= http_router_add(r, "GET", "/api/ledger/blocks", api_ledger_blocks);
    ok &= http_router_add(r, "GET", "/api/ledger/blocks/{height}", api_ledger_block);
    ok &= http_router_add(r, "GET", "/api/ledger/tx/{txid}", api_ledger_tx);
    ok &= http_router_add(r, "GET", "/api/ledger/proof/{txid}", api_ledger_proof);
    ok &= http_router_add(r, "GET", "/api/ledger/orgs", api_ledger_orgs);
    ok &= http_router_add(r, "GET", "/api/ledger/consistency", api_ledger_consistency);
    /* A photo of up to 20 MB plus the multipart framing around it. */
    ok &= http_router_add_upload(r, "POST", "/api/screenings", api_screenings_create, (20u << 20) + (64u << 10));
    ok &= http_router_add(r, "GET", "/api/screenings/{id}", api_screenings_get);
    ok &= http_router_add(r, "POST", "/api/screenings/{id}/save", api_screenings_save);
    ok &= http_router_add(r, "POST", "/api/screenings/{id}/contribute", api_screenings_contribute);
    ok &= http_router_add(r, "GET", "/api/surveil/overview", api_surveil_overview);
    ok &= http_router_add(r, "GET", "/api/surveil/weeks", api_surveil_weeks);
    ok &= http_router_add(r, "GET", "/api/surveil/aggregates", api_surveil_aggregates);
    ok &= http_router_add(r, "GET", "/api/surveil/series", api_surveil_series);
    ok &= http_router_add(r, "GET", "/api/surveil/alerts", api_surveil_alerts);
    ok &= http_router_add(r, "POST", "/api/surveil/alerts/{id}/ack", api_surveil_alert_ack);
    ok &= http_router_add(r, "GET", "/api/v1/aggregates", api_org_aggregates);
    ok &= http_router_add(r, "POST", "/api/admin/orgs/{key}/tokens", api_admin_org_tokens_create);
    ok &= http_router_add(r, "PUT", "/api/admin/orgs/{key}/offer", api_admin_org_offer_put);
    ok &= http_router_add(r, "DELETE", "/api/admin/orgs/{key}/offer", api_admin_org_offer_delete);
    ok &= http_router_add(r, "GET", "/api/review/offers", api_review_offers);
    ok &= http_router_add(r, "GET", "/api/review/conditions", api_review_conditions);
    ok &= http_router_add(r, "POST", "/api/review/requests", api_review_request_create);
    ok &= http_router_add(r, "GET", "/api/review/requests", api_review_requests_list);
    ok &= http_router_add(r, "GET", "/api/review/requests/{id}", api_review_request_get);
    ok &= http_router_add(r, "POST", "/api/review/requests/{id}/withdraw", api_review_request_withdraw);
    ok &= http_router_add(r, "POST", "/api/review/requests/{id}/revoke", api_review_request_revoke);
    ok &= http_router_add(r, "GET", "/api/review/queue", api_review_queue);
    ok &= http_router_add(r, "GET", "/api/review/cases/{id}", api_review_case_get);
    ok &= http_router_add(r, "POST", "/api/review/cases/{id}/answer", api_review_case_answer);
    ok &= http_router_add(r, "POST", "/api/review/cases/{id}/return", api_review_case_return);
    ok &= http_router_add(r, "PUT", "/api/admin/users/{username}/org", api_admin_user_org_put);
    ok &= http_router_add(r, "GET", "/api/v1/requests", api_org_requests_list);
    ok &= http_router_add(r, "POST", "/api/v1/requests", api_org_requests_create);
    ok &= http_router_add(r, "GET", "/api/v1/requests/{id}", api_org_request_get);
    ok &= http_router_add(r, "POST", "/api/v1/requests/{id}/withdraw", api_org_request_withdraw);
    ok &= http_router_add(r, "POST", "/api/admin/orgs/{key}/credit", api_admin_org_credit);
    ok &= http_router_add(r, "GET", "/api/admin/market/requests", api_admin_market_list);
    ok &= http_router_add(r, "POST", "/api/admin/market/requests/{id}/approve", api_admin_market_approve);
    ok &= http_router_add(r, "GET", "/api/market/requests", api_market_list);
    ok &= http_router_add(r, "POST", "/api/market/requests/{id}/accept", api_market_accept);
    ok &= http_router_add(r, "GET", "/api/v1/requests/{id}/dataset", api_org_request_dataset);
    ok &= http_router_add(r, "GET", "/api/market/participations", api_market_participations);
    ok &= http_router_add(r, "GET", "/api/org/credit", api_member_credit);
    ok &= http_router_add(r, "GET", "/api/org/requests", api_member_requests_list);
    ok &= http_router_add(r, "POST", "/api/org/requests", api_member_requests_create);
    ok &= http_router_add(r, "GET", "/api/org/requests/{id}", api_member_request_get);
    ok &= http_router_add(r, "POST", "/api/org/requests/{id}/withdraw", api_member_request_withdraw);
    ok &= http_router_add(r, "GET", "/api/org/requests/{id}/dataset", api_member_request_dataset);
    return ok;
}

void api_fail(http_request *rq, const core_error *err, const char *conflict_code) {
    const char *field = err->field[0] ? err->field : NULL;
    switch (err->code) {
    case CORE_ERR_INVALID: http_respond_error(rq, 422, "validation_failed", field, "%s", err->message); return;
    case CORE_ERR_NOT_FOUND: http_respond_error(rq, 404, "not_found", NULL, "%s", err->message); return;
    case CORE_ERR_CONFLICT:
        http_respond_error(rq, 409, conflict_code ? conflict_code : "conflict", field, "%s", err->message);
        return;
    case CORE_ERR_AUTH: http_respond_error(rq, 401, "invalid_credentials", field, "%s", err->message); return;
    case CORE_ERR_THROTTLED: {
        char s[16];
        snprintf(s, sizeof s, "%d", err->retry_after > 0 ? err->retry_after : 60);
        http_add_header(rq, "Retry-After", s);
        http_respond_error(rq, 429, "rate_limited", NULL, "%s", err->message);
        return;
    }
    case CORE_ERR_FORBIDDEN: http_respond_error(rq, 403, "forbidden", NULL, "%s", err->message); return;
    case CORE_ERR_IO:
        /* A ledger write the cluster did not commit: no leader took it
         * before the forwarding timeout, or the leader lost its quorum.
         * Retry later (issue 15). */
        if (strcmp(err->field, "leader") == 0) {
            http_add_header(rq, "Retry-After", "1");
            http_respond_error(rq, 503, "not_leader", NULL, "%s", err->message);
            return;
        }
        /* fall through */
    default:
        /* Storage and crypto failures are logged with detail for operators;
         * the client gets a stable code and no internals. */
        core_log(CORE_LOG_ERROR, "%s %s failed: %s: %s", http_method(rq), http_path(rq), core_status_name(err->code),
                 err->message);
        http_respond_error(rq, 500, "internal", NULL, "something went wrong on our side; nothing was changed");
        return;
    }
}

bool api_session(http_request *rq, api_context *c, accounts_session *sess, bool state_changing) {
    core_error err = {0};
    const char *token = http_cookie(rq, "cs_session");
    if (!token) {
        http_respond_error(rq, 401, "unauthenticated", NULL, "log in first");
        return false;
    }
    core_status rc = accounts_authenticate(c->acc, token, sess, &err);
    if (rc == CORE_ERR_AUTH) {
        api_clear_session_cookie(rq);
        http_respond_error(rq, 401, "unauthenticated", NULL, "your session has ended; log in again");
        return false;
    }
    if (rc) {
        api_fail(rq, &err, NULL);
        return false;
    }
    if (state_changing) {
        const char *csrf = http_header(rq, "X-CSRF-Token");
        if (!csrf || strlen(csrf) != strlen(sess->csrf) || !cs_crypto_equal(csrf, sess->csrf, strlen(sess->csrf))) {
            accounts_session_wipe(sess);
            http_respond_error(rq, 403, "csrf_failed", NULL, "missing or wrong X-CSRF-Token header; reload the page");
            return false;
        }
    }
    return true;
}

bool api_require_person(http_request *rq, const accounts_session *sess) {
    if (sess->role == ACCOUNTS_PERSON) return true;
    http_respond_error(rq, 403, "forbidden", NULL, "staff accounts cannot keep or read personal health records");
    return false;
}

void api_set_session_cookie(http_request *rq, const api_context *c, const char *token) {
    char cookie[256];
    snprintf(cookie, sizeof cookie, "cs_session=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%d%s", token,
             c->cfg->session_ttl, http_is_tls(rq) ? "; Secure" : "");
    http_add_header(rq, "Set-Cookie", cookie);
}

void api_clear_session_cookie(http_request *rq) {
    http_add_header(rq, "Set-Cookie", "cs_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
}

const char *api_str(const json_t *obj, const char *key) { return json_string_value(json_object_get(obj, key)); }

json_t *api_user_json(const accounts_session *sess) {
    json_t *u = json_pack("{s:s,s:s}", "username", sess->username, "role", accounts_role_name(sess->role));
    /* A clinician's or analyst's organisation (its ledger key): what its
     * review queue, or its data requests page (analysts), is scoped to. */
    if (u && sess->has_org &&
        json_object_set_new(u, "organisation", json_pack("{s:o}", "key", api_hex(sess->org, 32)))) {
        json_decref(u);
        return NULL;
    }
    return u;
}
