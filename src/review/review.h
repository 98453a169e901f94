/* review — clinician review offered by organisations (issue 13, first
 * slice): which organisation registered on the ledger offers review, at what
 * price in tokens, for which conditions and regions, and how fast it promises
 * to answer. Stored in caresync.db (tables review_offer*); knows nothing of
 * HTTP. The condition codes an offer may name are passed in at open (the
 * screening condition table), so this module does not depend on screening.
 *
 * Which organisation a clinician belongs to is owned by accounts (see
 * accounts_set_org), not here: the session is read from the users row. */
#ifndef CARESYNC_REVIEW_H
#define CARESYNC_REVIEW_H

#include <jansson.h>

#include "core/core.h"
#include "ledger/ledger.h"
#include "regions/regions.h"
#include "store/store.h"

#define REVIEW_PRICE_MIN 1
#define REVIEW_PRICE_MAX 1000000
#define REVIEW_HOURS_MIN 1
#define REVIEW_HOURS_MAX 720
#define REVIEW_CONDITIONS_MAX 32 /* conditions one offer covers */
#define REVIEW_REGIONS_MAX 64    /* regions one offer covers */
#define REVIEW_CODE_MAX 31       /* a condition code's length */
#define REVIEW_ORG_NAME_MAX 64   /* = LEDGER_NAME_MAX */

typedef struct review review;

/* A case just answered, for whatever an answer feeds (surveillance,
 * training: the caller decides, so review knows neither). Everything is
 * borrowed for the call only. */
typedef struct {
    const char *id;        /* the case */
    const char *condition; /* the clinician's code from the table; NULL when "other" */
    int64_t answered_at;   /* opt->now at the answer */
    const uint8_t *jpeg;   /* the case's photo */
    size_t jpeg_len;
} review_answered;
typedef void (*review_answered_fn)(void *ud, const review_answered *a);

/* Everything borrowed; st, led and regs must outlive the handle. conditions
 * (n_conditions codes) is copied. led: offers are accepted only from
 * organisations it knows (ledger_list_orgs). regs: country codes are
 * checked against ISO 3166-1 (Debian iso-codes). */
typedef struct {
    store *st;
    ledger *led;
    const regions *regs;
    const char *const *conditions;
    size_t n_conditions;
    /* Cases (cases.c). node_sk (LEDGER_SECRET bytes, borrowed) signs
     * refunds and settlements and keys the server's copy of case keys; NULL
     * leaves cases unavailable (CORE_ERR_INVALID). now: the clock the
     * answer-time promise is measured by; NULL is core_now (tests inject
     * one to reach a deadline without waiting hours). */
    const uint8_t *node_sk;
    int64_t (*now)(void);
    /* Called once an answer's settle is on the ledger, before the case row
     * records it (NULL: nothing); what it does cannot undo or fail the
     * answer. review_recover calls it again for an answer a crash cut off
     * between the ledger and the row, so it must take each answer once
     * (the api's feed deletes its pledge with the count). */
    review_answered_fn on_answered;
    void *answered_ud;
    /* Called (with answered_ud) after a case ended without an answer —
     * withdrawn, returned or expired, refunded — so what was pledged for its
     * answer can go (NULL: nothing). Recovery may call it again for the same
     * case: it must be harmless twice. */
    void (*on_ended)(void *ud, const char *id);
} review_options;

core_status review_open(const review_options *opt, review **out, core_error *err);
void review_close(review *r);

typedef struct {
    uint8_t org[LEDGER_KEY];
    char org_name[REVIEW_ORG_NAME_MAX + 1]; /* as registered on the ledger (set by review_offer_set) */
    int64_t price;                          /* tokens per review, REVIEW_PRICE_MIN..MAX */
    int answer_hours;                       /* promised answer time, REVIEW_HOURS_MIN..MAX */
    size_t n_conditions;                    /* 1..REVIEW_CONDITIONS_MAX, distinct, from the table */
    char conditions[REVIEW_CONDITIONS_MAX][REVIEW_CODE_MAX + 1];
    size_t n_regions; /* 1..REVIEW_REGIONS_MAX: ISO 3166-1 alpha-2 (upper case) or "*" (everywhere) */
    char regions[REVIEW_REGIONS_MAX][3];
    int64_t updated_at; /* unix seconds */
} review_offer;

/* Check an offer without storing it: CORE_ERR_INVALID with field "price",
 * "answer_hours", "conditions" or "regions". Country codes are accepted in
 * either case and stored upper-case (the check normalises o in place);
 * duplicates are refused. */
core_status review_offer_validate(review *r, review_offer *o, core_error *err);

/* Set or replace the offer of o->org (validated as above; the organisation
 * must be registered on the ledger, else CORE_ERR_NOT_FOUND with field
 * "org"). Replacing is whole: conditions and regions not in o are dropped.
 * o->org_name and o->updated_at are filled in. One transaction. */
core_status review_offer_set(review *r, review_offer *o, core_error *err);

/* Withdraw the organisation's offer: CORE_ERR_NOT_FOUND if it has none. */
core_status review_offer_withdraw(review *r, const uint8_t org[LEDGER_KEY], core_error *err);

/* The organisation's offer: CORE_ERR_NOT_FOUND if it offers no review. */
core_status review_offer_get(review *r, const uint8_t org[LEDGER_KEY], review_offer *out, core_error *err);

/* Offers, cheapest first (then by name). condition (a code from the table)
 * and country (ISO 3166-1 alpha-2) filter when non-NULL: an offer matches a
 * country it names or "*". An unknown condition or country is
 * CORE_ERR_INVALID (field "condition" / "country"). *out is a caller-owned
 * array (free()) of *n offers, NULL when there are none. */
core_status review_offer_list(review *r, const char *condition, const char *country, review_offer **out, size_t *n,
                              core_error *err);

/* ---- Cases (cases.c): a person's request for review of one saved
 * screening, the organisation's queue, the answer, and the escrow's end. ----
 *
 * The case copy is JSON {photo: base64url JPEG, result: {title, details},
 * share: {age_band?, sex?, body_site?, duration?, note?}}: the 224 px photo
 * and the model's result text (the record's "result", kept by records as
 * the screening wrote it, never the title or details the person may have
 * edited since), plus what the person chose
 * to add, and nothing else (no name, username, account id, date or place).
 * It is sealed under a random case key. The case key is kept twice: sealed
 * under the person's data key (only their session can open it) and sealed
 * under a key derived from the node key, which is the organisation's copy.
 *
 * Trust model, honestly: clinicians do not hold keys of their own; they
 * read cases through this server, which can unseal the organisation's copy
 * whenever it runs. Sealing keeps the case out of a stolen caresync.db
 * without the node key, and withdrawing, returning or timing out destroys
 * both copies of the case. It does not protect the case from the server's
 * operator. */

#define REVIEW_CASE_ID_TEXT 33 /* 16 random bytes as hex + NUL */
#define REVIEW_NOTE_MAX 500    /* bytes of the person's free-text note */
#define REVIEW_ADVICE_MAX 2000 /* bytes of the clinician's advice */
#define REVIEW_REASON_MAX 500  /* bytes of a return's reason */

/* The extras a person may add; NULL: not shared. Checked against fixed
 * lists (age_band: 0-17 18-29 30-44 45-59 60-74 75+; sex: female male
 * other; body_site: head_neck trunk arm hand leg foot genital other;
 * duration: days weeks months years); note is free text. */
typedef struct {
    const char *age_band, *sex, *body_site, *duration, *note;
} review_share;

typedef struct {
    int64_t owner;               /* the person's user id */
    const uint8_t *data_key;     /* their data key (32 bytes) */
    const uint8_t *wallet_sk;    /* their wallet key (64 bytes): signs the review_request */
    const uint8_t *org;          /* LEDGER_KEY bytes */
    const char *record_id;       /* the saved screening's id; shown to the owner only (NULL: none) */
    const char *title, *details; /* the model's result text: the record's "result" */
    const uint8_t *jpeg;         /* the record's photo */
    size_t jpeg_len;
    review_share share;
} review_request_in;

/* Ask for review. Refusals, with nothing stored and no tokens moved:
 * CORE_ERR_NOT_FOUND field "org" (the organisation offers no review),
 * CORE_ERR_INVALID field "photo" / "result" / a share field,
 * CORE_ERR_CONFLICT field "balance" (fewer tokens than the offer's price).
 * On success id receives the case id and the escrow is open. */
core_status review_case_request(review *r, const review_request_in *in, char id[REVIEW_CASE_ID_TEXT], core_error *err);

/* The person withdraws a waiting request: refunded (node key) and the case
 * destroyed. NOT_FOUND unless it is theirs; CONFLICT field "state" unless
 * it is waiting. */
core_status review_case_withdraw(review *r, int64_t owner, const char *id, core_error *err);

/* The person revokes the case-scoped consent their request made (ledger
 * purpose clinician_review, keyed by the request's txid): a REVOKE signed
 * with wallet_sk (LEDGER_SECRET bytes, theirs). While the case waits the
 * same ledger transaction refunds the escrow, and the case is withdrawn and
 * destroyed; after an answer the person keeps case and answer, and the
 * organisation its payment. Either way the organisation's copy is gone and
 * its clinicians cannot open the case (NOT_FOUND). NOT_FOUND unless it is
 * theirs; CONFLICT field "consent" when the consent has already ended (a
 * withdrawn, returned or expired case was refunded, which ends it) or was
 * revoked; CONFLICT field "state" while another step on the case runs. */
core_status review_case_revoke(review *r, int64_t owner, const uint8_t wallet_sk[LEDGER_SECRET], const char *id,
                               core_error *err);

/* Crash recovery, to run at start before any request is served (never
 * while requests run: an intent in flight would look abandoned): every
 * intent a crash left (see cases.c) is finished or dropped as the ledger
 * shows, and every waiting case whose escrow is closed follows the ledger.
 * *resolved (may be NULL) counts what it changed. */
core_status review_recover(review *r, int *resolved, core_error *err);

/* Refund every waiting case past its organisation's answer-time promise
 * (measured by opt->now); *refunded (may be NULL) counts them. Called on
 * every queue and request read, so no thread is needed. */
core_status review_sweep(review *r, int *refunded, core_error *err);

/* The person's requests, newest first (out: new JSON array), each with the
 * record_id it was made from (null before schema 12), and one of
 * them with the answer (opened with data_key), the case as shared, and
 * who opened it when (out: new object). */
core_status review_case_list(review *r, int64_t owner, json_t **out, core_error *err);
core_status review_case_get(review *r, int64_t owner, const uint8_t data_key[32], const char *id, json_t **out,
                            core_error *err);

/* The organisation's waiting cases, oldest first, with waiting_seconds
 * (out: new JSON array; no case content). */
core_status review_queue(review *r, const uint8_t org[LEDGER_KEY], json_t **out, core_error *err);

/* A clinician of org opens a waiting case: *out is the case copy (new
 * object); the opening is logged with the clinician's pseudonym (derived
 * from clinician_id under the server's key) and the time. NOT_FOUND for a
 * case of another organisation or no longer waiting. */
core_status review_case_open(review *r, const uint8_t org[LEDGER_KEY], int64_t clinician_id, const char *id,
                             json_t **out, core_error *err);

/* Answer: condition (a code of the table, or "other" with other_text),
 * urgency (self_care|pharmacist_or_gp|see_doctor_soon|urgent), advice. The
 * answer is sealed under the case key (the person reads it next time with
 * their own copy of that key) and the escrow settles to the organisation.
 * Return: reason, and the escrow is refunded. Both: NOT_FOUND as open,
 * INVALID naming the field. */
core_status review_case_answer(review *r, const uint8_t org[LEDGER_KEY], int64_t clinician_id, const char *id,
                               const char *condition, const char *other_text, const char *urgency, const char *advice,
                               core_error *err);
core_status review_case_return(review *r, const uint8_t org[LEDGER_KEY], int64_t clinician_id, const char *id,
                               const char *reason, core_error *err);

#endif
