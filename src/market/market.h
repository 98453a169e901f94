/* market — data for tokens (issue 14, first slice): organisations fund data
 * requests on the ledger, people whose record matches accept and are paid.
 * Knows nothing of HTTP; stored in caresync.db (tables market_*) and on the
 * ledger (credit, market_open / market_pay / market_close, and the person's
 * grant). The condition codes a request may name are passed in at open (the
 * screening table), as for review.
 *
 * Lifecycle of a request: an organisation registered on the ledger posts it
 * (pending); an administrator approves it, which funds it in full on the
 * ledger (market_open: price × max_participants from the organisation's
 * balance into an escrow) and opens it; only open requests are shown to
 * people. It ends when the last place is paid (the escrow is empty: the
 * ledger closes it), when the organisation withdraws it, or at its closing
 * time (market_sweep): market_close returns what is left to the organisation.
 *
 * Matching runs on the person's own decrypted profile and entries, passed in
 * by the caller while they are logged in; nothing about who matched is kept.
 * What would leave the record is a list of generalised rows
 * (market_rows_build): conditions and symptoms as codes of the table (no
 * free text), dates as ISO weeks, age as a 5-year band, region as the
 * profile's ISO 3166-2 subdivision, sex; nothing else.
 *
 * Accepting: a grant (consent: grantee the organisation, the request's
 * purpose and categories) signed by the person's wallet, then market_pay
 * from the escrow (the ledger pays a wallet once per request), then the rows
 * are stored, each under a fresh random withdrawal tag and no person id; the
 * tag list is kept only sealed under the person's data key. A per-person
 * daily earning cap (tokens per UTC day) is checked first.
 *
 * Crash safety as in review: an intent (the request's state 'funding' /
 * 'closing', or a market_intents row for an acceptance) is committed before
 * each ledger step, and market_recover, run at start, finishes or drops each
 * as the ledger shows. A running call whose step fails after its intent
 * resolves that intent at once the same way and answers by the outcome: a
 * call told failed has written nothing, the ledger included.
 *
 * Ownership: options and inputs are borrowed; json_t ** outputs are new
 * references owned by the caller. Thread-safe (one store, one ledger). */
#ifndef CARESYNC_MARKET_H
#define CARESYNC_MARKET_H

#include <jansson.h>

#include "core/core.h"
#include "ledger/ledger.h"
#include "regions/regions.h"
#include "store/store.h"

#define MARKET_ID_TEXT 33 /* 16 random bytes as hex + NUL */
#define MARKET_TAG_BYTES 16
#define MARKET_TITLE_MAX 200
#define MARKET_PURPOSE_TEXT_MAX 2000
#define MARKET_PRICE_MAX 1000000
#define MARKET_PARTICIPANTS_MAX 100000
#define MARKET_CODES_MAX 32     /* condition codes in a request's criteria */
#define MARKET_COUNTRIES_MAX 64 /* countries in a request's criteria */
#define MARKET_CREDIT_MAX 1000000000

typedef struct market market;

typedef struct {
    store *st;
    ledger *led;
    const regions *regs;
    const char *const *conditions; /* the codes a request and a row may name (copied) */
    size_t n_conditions;
    const uint8_t *node_sk; /* LEDGER_SECRET bytes: signs credits, escrows, payments; keys the rows' intent copy */
    int64_t daily_cap;      /* tokens one person may earn per UTC day (≥ 1) */
    int64_t (*now)(void);   /* NULL: core_now; tests inject one to pass a closing time */
} market_options;

core_status market_open(const market_options *opt, market **out, core_error *err);
void market_close(market *m);

/* ---- organisation credit ---- */

/* Mint amount (1..MARKET_CREDIT_MAX) tokens to a registered organisation
 * (a purchase made outside the product), recorded on the ledger with
 * reference (1-64 printable ASCII: an invoice number, never personal data).
 * CORE_ERR_NOT_FOUND field "org" when it is not registered, INVALID naming
 * "amount" or "reference". txid and *balance (may be NULL) receive the
 * credit's transaction id and the organisation's balance after it. */
core_status market_credit(market *m, const uint8_t org[LEDGER_KEY], int64_t amount, const char *reference,
                          uint8_t txid[LEDGER_HASH], int64_t *balance, core_error *err);

/* The organisation's name and spendable balance (what is in escrow is not
 * in it): {organisation:{key, name}, balance}. NOT_FOUND "org" when it is
 * not registered. */
core_status market_org_credit(market *m, const uint8_t org[LEDGER_KEY], json_t **out, core_error *err);

/* ---- requests (the organisation's side) ---- */

/* Post a request from untrusted JSON: {title, purpose_text, purpose
 * ("research" | "public_health_surveillance"), categories (non-empty subset
 * of "screening","conditions","symptoms","demographics"), criteria:
 * {conditions?: [codes of the table], countries?: [ISO 3166-1 alpha-2],
 * age_bands?: ["30-34", … 5-year bands "0-4" … "95-99", "100+"]},
 * price (tokens per participant), max_participants, closes (RFC 3339 UTC
 * "YYYY-MM-DDTHH:MM:SSZ", in the future)}. Unknown members are refused.
 * The organisation must be registered (NOT_FOUND "org") and hold price ×
 * max_participants tokens (CONFLICT "balance"). Stored as pending; *out is
 * the request as market_request_get shows it. */
core_status market_request_create(market *m, const uint8_t org[LEDGER_KEY], const json_t *in, json_t **out,
                                  core_error *err);
/* The organisation's requests, newest first, with {balance} of its key:
 * {balance, requests: [...]}. */
core_status market_request_list_org(market *m, const uint8_t org[LEDGER_KEY], json_t **out, core_error *err);
/* One request. org NULL: any (administrators); otherwise another
 * organisation's request is NOT_FOUND. Shows state, paid, remaining
 * escrow and the market_open txid once funded. */
core_status market_request_get(market *m, const uint8_t *org, const char *id, json_t **out, core_error *err);
/* Every request, newest first (administrators). state NULL or one state. */
core_status market_request_list_all(market *m, const char *state, json_t **out, core_error *err);
/* Approve a pending request: fund it on the ledger (market_open) and open
 * it. CONFLICT "state" unless pending; CONFLICT "balance" when the
 * organisation no longer holds enough; INVALID "closes" when its closing
 * time has passed. */
core_status market_request_approve(market *m, const char *id, json_t **out, core_error *err);
/* The organisation withdraws its request: a pending one simply ends; an
 * open one is closed on the ledger, the remainder returned. CONFLICT
 * "state" when it has already ended. org NULL: an administrator. */
core_status market_request_withdraw(market *m, const uint8_t *org, const char *id, json_t **out, core_error *err);
/* Close every open request past its closing time, and bring every open
 * request whose escrow the ledger has emptied to 'closed'. *closed (may be
 * NULL) counts them. Called on every listing, so no thread is needed. */
core_status market_sweep(market *m, int *closed, core_error *err);
/* Crash recovery at start, before requests are served (see the top). */
core_status market_recover(market *m, int *resolved, core_error *err);

/* ---- matching and rows (pure: no storage) ---- */

/* A request's terms as matching needs them. */
typedef struct {
    uint32_t categories; /* bit set of (1 << ledger_category) */
    size_t n_conditions, n_countries, n_age_bands;
    char conditions[MARKET_CODES_MAX][32];
    char countries[MARKET_COUNTRIES_MAX][3];
    char age_bands[21][8];
} market_criteria;

/* "35-39" for an age (0..99), "100+" above; age from birth_year and year. */
void market_age_band(int age, char out[8]);
/* ISO 8601 week "2026-W05" of a date "YYYY-MM-DD"; false if not a date. */
bool market_iso_week(const char *date, char out[9]);
/* Whether profile ({birth_year, sex, region}) and entries (records_list's
 * array) meet the criteria: each non-empty list must be met (a condition or
 * symptom entry with one of the codes; the region's country; the age band). */
bool market_matches(const market_criteria *c, const json_t *profile, const json_t *entries, int this_year);
/* The generalised rows that would leave the record for these categories
 * (new array; NULL on OOM). A condition or symptom entry gives a row
 * {category, code, week} when it carries a code of the table (entries
 * without one, and free text, never leave); demographics add {age_band,
 * sex, region} to every row, or make the only row when nothing else is
 * asked for; screening: saved screenings that carry a code. Nothing else
 * leaves. codes: the table (n codes). */
json_t *market_rows_build(const market_criteria *c, const json_t *profile, const json_t *entries, int this_year,
                          const char *const *codes, size_t n);

/* ---- the person's side ---- */

typedef struct {
    int64_t owner;            /* the person's user id */
    const uint8_t *data_key;  /* 32 bytes: seals their copy of the withdrawal tags */
    const uint8_t *wallet_sk; /* LEDGER_SECRET bytes, a registered wallet: signs the grant */
    const json_t *profile;    /* their decrypted profile */
    const json_t *entries;    /* their decrypted entries (records_list) */
} market_person;

/* Open requests that match the person, each with organisation, purpose,
 * payment, closes, categories, max_participants and places_left (as the
 * ledger counts), the preview rows, "accepted" (they took part) and
 * "daily_cap" {cap, earned_today, applies} (applies: accepting would go over
 * today's cap); and every request they took part in, open or not:
 * participations [{request, title, organisation, purpose, paid, paid_at,
 * grant_txid (the consent to revoke to withdraw), state, withdrawn_at}].
 * {requests: [...], daily_cap: {cap, earned_today}, participations: [...]}. */
core_status market_person_list(market *m, const market_person *p, json_t **out, core_error *err);
/* Accept: NOT_FOUND unless open and matching; CONFLICT "accepted" when they
 * already took part (or an acceptance is under way); CONFLICT "daily_cap"
 * when the payment would take them over today's cap (the message says so);
 * CONFLICT "state" when the request filled or closed meanwhile. On success
 * *out {request, paid, grant_txid, payment_txid, rows}. */
core_status market_accept(market *m, const market_person *p, const char *id, json_t **out, core_error *err);

/* ---- withdrawal ----
 *
 * Rows are deleted by the withdrawal tags in the person's sealed copy (only
 * their data key opens it), so no later delivery holds them; payments made
 * stay paid, and the participation stays (the cap, "accepted") marked
 * withdrawn. NOT_FOUND when there is nothing (left) to withdraw. */
core_status market_withdraw(market *m, int64_t owner, const uint8_t data_key[32], const char *id, core_error *err);
/* The same for the participation a consent (grant txid) was made for: what
 * revoking that consent does, before the revoke goes to the ledger. */
core_status market_withdraw_grant(market *m, int64_t owner, const uint8_t data_key[32],
                                  const uint8_t grant[LEDGER_HASH], core_error *err);
/* Every participation of the person (account deletion, before the account
 * and with it the sealed copies go). *n (may be NULL) counts them. */
core_status market_forget_person(market *m, int64_t owner, const uint8_t data_key[32], int *n, core_error *err);

/* ---- delivery's boundary ---- */

/* The rows stored for a request (new array of row objects, each with its
 * "tag" in hex), for the delivery step (k-anonymity, release) built on top.
 * No person id is stored with them. NOT_FOUND for an unknown request. */
core_status market_rows_for_request(market *m, const char *id, json_t **rows, core_error *err);

/* ---- delivery (deliver.c) ----
 *
 * The organisation's dataset: the request's current rows (withdrawn ones
 * are gone) made k-anonymous by anon_deliver, counting people. Each
 * acceptance's rows share a random contributor id (market_rows), turned for
 * each delivery into a 64-bit pseudonym (SHA-256 under a fresh random salt)
 * that is used only for counting and never leaves; a pseudonym collision
 * can only merge two people, which makes the check stricter, not looser.
 * The stored rows become anon rows field by field: codes as stored, the
 * ISO week (a row without a date — demographics, an entry without one —
 * takes the week the request was posted: the same for every row, so it
 * says nothing about the person), the 5-year band (95-99 and 100+ become
 * anon's 90+), sex (intersex → other), region → its first-level ISO 3166-2
 * subdivision.
 *
 * Each new dataset is a ledger release (org = the request's organisation,
 * query = the CSV's SHA-256, k_min = k, cells = rows delivered), signed by
 * the node key; the same bytes again (same request, same hash) return the
 * first receipt and write nothing. The people whose participation stood
 * when the rows were read are noted for their own list
 * (market_participations). */
typedef struct {
    uint8_t sha256[LEDGER_HASH];
    uint8_t txid[LEDGER_HASH];
    int64_t at;  /* when the release was first recorded */
    bool repeat; /* the same dataset was delivered before: nothing written */
} market_delivery_receipt;

struct anon_delivery;
/* The dataset of request id for org (another organisation's is NOT_FOUND;
 * a pending or withdrawn-before-funding request has no rows and gives an
 * empty dataset). k >= 1. *out (anon_delivery_free) and *receipt on
 * success. */
core_status market_deliver(market *m, const uint8_t org[LEDGER_KEY], const char *id, int k, struct anon_delivery **out,
                           market_delivery_receipt *receipt, core_error *err);
/* The person's participations, newest first: {participations: [{request,
 * title, organisation, paid, paid_at, withdrawn_at?, grant_txid,
 * deliveries: [{txid, sha256, at}]}]}, deliveries being those made while
 * their rows were in the request. */
core_status market_participations(market *m, int64_t owner, json_t **out, core_error *err);

#endif
