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

/* The caller's ledger wallet, created and registered on the ledger on first
 * use: for paths that need a registered wallet (consent, anchor, showing the
 * wallet's key). sk may be NULL; when not, the caller wipes it. Responds on
 * failure. */
bool api_wallet(http_request *rq, api_context *c, const accounts_session *sess, uint8_t pk[32], uint8_t sk[64]);
core_status api_wallet_ensure(api_context *c, const accounts_session *sess, uint8_t pk[32], uint8_t sk[64],
                              core_error *err);
/* The caller's wallet keys and whether the ledger knows the wallet yet,
 * without registering it: for reads and for writes that a wallet not on the
 * ledger could not make anyway. The keypair is made (in caresync.db only) if
 * the account has none. _keys responds on failure. */
core_status api_wallet_lookup(api_context *c, const accounts_session *sess, uint8_t pk[32], uint8_t sk[64],
                              bool *registered, core_error *err);
bool api_wallet_keys(http_request *rq, api_context *c, const accounts_session *sess, uint8_t pk[32], uint8_t sk[64],
                     bool *registered);
/* Map a ledger receipt failure (rule rejection) to the error response. */
void api_ledger_fail(http_request *rq, const core_error *err);
json_t *api_hex(const uint8_t *p, size_t n);
/* RFC 3339 text for unix seconds. */
json_t *api_time(int64_t t);

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
void api_account_sessions_revoke_others(http_request *rq, void *ctx);
void api_profile_get(http_request *rq, void *ctx);
void api_profile_put(http_request *rq, void *ctx);
void api_records_list(http_request *rq, void *ctx);
void api_records_create(http_request *rq, void *ctx);
void api_records_get(http_request *rq, void *ctx);
void api_records_update(http_request *rq, void *ctx);
void api_records_delete(http_request *rq, void *ctx);
void api_export(http_request *rq, void *ctx);
void api_admin_users(http_request *rq, void *ctx);
void api_admin_orgs_create(http_request *rq, void *ctx);
void api_records_anchor(http_request *rq, void *ctx);
void api_records_anchor_proof(http_request *rq, void *ctx);
void api_wallet_get(http_request *rq, void *ctx);
void api_wallet_transfer(http_request *rq, void *ctx);
void api_wallet_redeem(http_request *rq, void *ctx);
void api_consents_list(http_request *rq, void *ctx);
void api_consents_create(http_request *rq, void *ctx);
void api_consents_revoke(http_request *rq, void *ctx);
void api_consents_receipt(http_request *rq, void *ctx);
void api_screenings_create(http_request *rq, void *ctx);
void api_screenings_get(http_request *rq, void *ctx);
void api_screenings_save(http_request *rq, void *ctx);
void api_records_photo(http_request *rq, void *ctx);
void api_ledger_summary(http_request *rq, void *ctx);
void api_ledger_blocks(http_request *rq, void *ctx);
void api_ledger_block(http_request *rq, void *ctx);
void api_ledger_tx(http_request *rq, void *ctx);
void api_ledger_proof(http_request *rq, void *ctx);
void api_ledger_orgs(http_request *rq, void *ctx);
void api_ledger_consistency(http_request *rq, void *ctx);
void api_screenings_contribute(http_request *rq, void *ctx);
void api_surveil_overview(http_request *rq, void *ctx);
void api_surveil_weeks(http_request *rq, void *ctx);
void api_surveil_aggregates(http_request *rq, void *ctx);
void api_surveil_series(http_request *rq, void *ctx);
void api_surveil_alerts(http_request *rq, void *ctx);
void api_surveil_alert_ack(http_request *rq, void *ctx);
void api_org_aggregates(http_request *rq, void *ctx);
void api_admin_org_tokens_create(http_request *rq, void *ctx);
void api_admin_org_offer_put(http_request *rq, void *ctx);
void api_admin_org_offer_delete(http_request *rq, void *ctx);
void api_review_offers(http_request *rq, void *ctx);
void api_review_conditions(http_request *rq, void *ctx);
void api_review_request_create(http_request *rq, void *ctx);
void api_review_requests_list(http_request *rq, void *ctx);
void api_review_request_get(http_request *rq, void *ctx);
void api_review_request_withdraw(http_request *rq, void *ctx);
void api_review_request_revoke(http_request *rq, void *ctx);
void api_review_queue(http_request *rq, void *ctx);
void api_review_case_get(http_request *rq, void *ctx);
void api_review_case_answer(http_request *rq, void *ctx);
void api_review_case_return(http_request *rq, void *ctx);
void api_admin_user_org_put(http_request *rq, void *ctx);
void api_org_requests_list(http_request *rq, void *ctx);
void api_org_requests_create(http_request *rq, void *ctx);
void api_org_request_get(http_request *rq, void *ctx);
void api_org_request_withdraw(http_request *rq, void *ctx);
void api_admin_org_credit(http_request *rq, void *ctx);
void api_admin_market_list(http_request *rq, void *ctx);
void api_admin_market_approve(http_request *rq, void *ctx);
void api_market_list(http_request *rq, void *ctx);
void api_market_accept(http_request *rq, void *ctx);
void api_org_request_dataset(http_request *rq, void *ctx);
void api_market_participations(http_request *rq, void *ctx);
/* The same organisation handlers for a signed-in member (api/market.c). */
void api_member_requests_list(http_request *rq, void *ctx);
void api_member_requests_create(http_request *rq, void *ctx);
void api_member_request_get(http_request *rq, void *ctx);
void api_member_request_withdraw(http_request *rq, void *ctx);
void api_member_request_dataset(http_request *rq, void *ctx);
void api_member_credit(http_request *rq, void *ctx);

#endif
