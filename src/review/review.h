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

/* Whether the ledger file at ledger_path (read-only; the service may be
 * running) has registered the organisation; name (may be NULL) receives its
 * name. For `caresync admin`, which does not open the ledger for writing.
 * CORE_ERR_NOT_FOUND if it is not registered. */
core_status review_ledger_org_file(const char *ledger_path, const uint8_t org[LEDGER_KEY],
                                   char name[REVIEW_ORG_NAME_MAX + 1], core_error *err);

#endif
