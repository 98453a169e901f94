/* share — sharing data into surveillance and releasing aggregates out of it:
 * the workflow that ties the pool of counts (surveil) to the public ledger.
 *
 *   contribute  a person's confident screening result, under an active
 *               public-health consent covering screening results, becomes
 *               five counted facts and a queued reward (share_contribute);
 *   pay         queued rewards go to the ledger in whole batches, in random
 *               order (share_pay_rewards; surveil.h, "sealed weeks and
 *               batched rewards", says why);
 *   release     an aggregate leaves only built, suppressed (noised when
 *               epsilon > 0), logged against the organisation's budget and
 *               recorded on the ledger; the same question on the same data
 *               gets the logged answer back (share_release);
 *   detect      series and alerts on the exact counts, sealed weeks only.
 *
 * No HTTP here: the api adapts requests to these calls and maps the
 * core_status (with err->field) to its error codes. Nothing here knows the
 * screening model either: the caller says which condition a result is.
 *
 * Threading: one share handle serves every thread. It holds the alert scan's
 * state (what it last scanned) and serialises reward payments, each under its
 * own mutex; everything else is the store's and the ledger's business.
 * Ownership: the options' pointers are borrowed and must outlive the handle;
 * strings and buffers passed in are borrowed for the call; what comes back
 * through a pointer-to-pointer is malloc'd and the caller frees it. */
#ifndef CARESYNC_SHARE_H
#define CARESYNC_SHARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/core.h"
#include "ledger/ledger.h"
#include "store/store.h"
#include "surveil/surveil.h"

typedef struct share share;

typedef struct {
    store *st;               /* caresync.db: counts, the reward queue, the release log, alerts */
    ledger *led;             /* consents are read from it; rewards and releases written to it */
    const uint8_t *node_sk;  /* LEDGER_SECRET bytes: signs contribute and release transactions */
    const uint8_t *admin_sk; /* LEDGER_SECRET bytes: registers the analysts' organisation */
    int k;                   /* small-cell threshold (>= 1): alerts show no week with fewer cases */
    double budget;           /* total epsilon an organisation may spend (>= 0) */
    int seal_delay;          /* seconds after a week ends before it is sealed (>= 0) */
    int reward_batch;        /* rewards go to the ledger in batches of at least this (>= 1) */
    int photo_distance;      /* photos whose hashes differ in at most this many of 64 bits are one photo (0..32) */
    int64_t daily_cap;       /* tokens one person may earn from contributions per UTC day (0: no cap) */
} share_options;

/* CORE_ERR_INVALID (field naming the option) for a missing pointer or a
 * value out of range. */
core_status share_open(const share_options *opt, share **out, core_error *err);
/* Accepts NULL. Call once no thread uses the handle any more. */
void share_close(share *s);

/* The latest sealed week at time now: the last week anything built from the
 * counts may show. */
int share_sealed_through(const share *s, int64_t now);

/* What the pool may show at now: the latest sealed week, and the first and
 * last sealed weeks with data (any = false, first = last = 0, when there are
 * none); fn (may be NULL) gets each country with data in them, in order. */
typedef struct {
    int through, first, last;
    bool any;
} share_extent;
core_status share_overview(share *s, int64_t now, share_extent *out, surveil_country_fn fn, void *ud, core_error *err);

/* ---- contributing ---- */

struct share_pledge;

typedef struct {
    uint8_t wallet[LEDGER_KEY]; /* the contributor's wallet public key */
    const char *condition;      /* the result's confident top condition code */
    const char *region;         /* the person's home region (ISO 3166-2); NULL: not set */
    int64_t created;            /* when the result was made (unix seconds): its week is counted */
    int birth_year;             /* 0: unknown */
    const char *result_id;      /* the result's id: one contribution per (wallet, result) */
    int year;                   /* today's year, for the age band */
    int64_t now;                /* consents must be active now; weeks sealed by now are closed */
    surveil_source source;      /* SURVEIL_SOURCE_MODEL (0, a screening result) or
                                   SURVEIL_SOURCE_CLINICIAN (a clinician's answer, result_id its case) */
    /* The person's own record of their contributions (their vault, sealed
     * under their data key): the withdrawal tag, the photo hash and the
     * daily cap need it. NULL data_key (a clinician's answer, read in the
     * clinician's session): none of the three applies. */
    int64_t owner;           /* the person's user id */
    const uint8_t *data_key; /* 32 bytes, or NULL */
    bool has_phash;          /* phash holds the photo's vision_phash */
    uint64_t phash;
    /* A clinician's answer to a pledged case (share_pledge_get; data_key
     * NULL): pledge_case's pledge is deleted in the count's transaction (a
     * pledge already gone is CORE_ERR_CONFLICT field "contribution": an
     * answer feeds once, also when recovery feeds it again). When the pledge
     * holds a vault reservation (pledge->reserved), the count gets a fresh
     * random withdrawal tag, kept by the pool for its open week and sent with
     * the facts to the person's vault inbox (sealed to pledge->inbox: only
     * their session opens it) in the same transaction, and the reward is
     * queued only when pledge->pay (the daily cap, checked at the request:
     * out->reward is then 0). NULL: none of this. */
    const struct share_pledge *pledge;
    const char *pledge_case;
} share_contribution_input;

/* What a payment round did. */
typedef struct {
    size_t paid;            /* reward transactions now on the ledger */
    size_t dropped;         /* refused by the ledger for good (consent revoked or expired before the
                           batch, already there after a crash): left the queue, their counts stay */
    size_t left;            /* still queued */
    core_error dropped_why; /* the last refusal's reason, when dropped > 0 */
} share_payout;

typedef struct {
    surveil_contribution contribution; /* the five facts counted */
    uint8_t grant[LEDGER_HASH];        /* the consent it was shared under */
    uint8_t salt[16];                  /* the person keeps it: it opens the commitment */
    uint8_t commitment[LEDGER_HASH];
    uint64_t reward;      /* tokens the reward transaction will mint */
    share_payout payout;  /* the payment round that followed */
    core_error pay_error; /* code != CORE_OK: that round failed (rewards stay queued);
                                          the contribution itself was counted all the same */
} share_receipt;

/* Count one contribution and queue its reward, then pay a batch if one is
 * full. in->source says where the condition comes from; the consent is the
 * same for both sources (a clinician's answer is contributed under the
 * public-health consent a screening share needs). In order: the consent (the wallet's first active one whose purpose
 * is public-health surveillance and whose scope covers screening results;
 * none is CORE_ERR_FORBIDDEN, field "consent"), the region (NULL, not set,
 * is CORE_ERR_NOT_FOUND, field "region"; a malformed one CORE_ERR_INVALID),
 * then surveil_add: the same (wallet,
 * result) shared before is CORE_ERR_CONFLICT field "contribution", a result
 * whose week is sealed CORE_ERR_CONFLICT field "week". With a data key, then:
 * a photo within photo_distance bits of one this person shared before is
 * CORE_ERR_CONFLICT field "photo" (the same rash photographed twice earns
 * once and is counted once: a second count would inflate an outbreak), and
 * a reward that would take today's earnings (UTC) over daily_cap is
 * CORE_ERR_CONFLICT field "daily_cap"; otherwise the contribution gets a
 * random withdrawal tag, kept by the pool for its open week and in the
 * person's vault with the facts, in the same transaction as the count.
 * Reservations of confirmed cases (share_pledge_put) count as contributed
 * photos and as today's earnings. On an error nothing was counted, queued
 * or kept. */
core_status share_contribute(share *s, const share_contribution_input *in, share_receipt *out, core_error *err);

/* What share_withdraw did. */
typedef struct {
    size_t withdrawn; /* counts taken back from weeks not yet released */
    size_t sealed;    /* contributions in weeks already sealed: they stay (docs/SURVEILLANCE.md) */
} share_withdrawal;

/* Withdraw the person's contributions made under grant (NULL: all of them,
 * an account being deleted) from every later release: each one whose week
 * is still open loses its count now, in one transaction with the vault's
 * note of it (so it is never taken back twice); one in a sealed week stays,
 * since sealed weeks never change. Rewards already paid stay paid; one
 * still queued is refused by the ledger once the consent is revoked. */
core_status share_withdraw(share *s, int64_t owner, const uint8_t data_key[32], const uint8_t *grant, int64_t now,
                           share_withdrawal *out, core_error *err);

/* ---- what a clinician's answer feeds (pledge.c; issue 13) ---- */

/* Whether wallet holds a consent active at now for purpose whose scope
 * covers screening results (a wallet unknown to the ledger holds none). */
core_status share_consented(share *s, const uint8_t wallet[LEDGER_KEY], ledger_purpose purpose, int64_t now, bool *yes,
                            core_error *err);

/* The facts a review answer will need, taken while the person's session
 * can read them (their profile), since the clinician's cannot. */
typedef struct share_pledge {
    uint8_t wallet[LEDGER_KEY];
    char region[8];     /* home region (ISO 3166-2); "" none */
    int birth_year;     /* 0: unknown */
    bool training;      /* handle holds the person's training pseudonym */
    uint8_t handle[32]; /* screening_example_handle of their data key */
    /* Filled by share_pledge_put, read back by share_pledge_get (issue 14):
     * the confirmation is reserved in the person's vault. */
    bool reserved;     /* a reservation waits for the answer */
    bool pay;          /* its reward fitted under the day's cap */
    int64_t owner;     /* the person's user id */
    uint8_t inbox[32]; /* their vault inbox's public key */
    uint8_t ref[16];   /* the reservation's reference in the vault */
} share_pledge;

/* The person's side of a pledge, from their session: with it, a pledge that
 * will be contributed is first checked and reserved in their vault. */
typedef struct {
    int64_t owner;
    const uint8_t *data_key; /* 32 bytes */
    bool has_phash;          /* phash holds the case photo's vision_phash */
    uint64_t phash;
} share_pledge_person;

/* What becomes of a case's confirmation, as the person is told. */
typedef enum {
    SHARE_CONFIRM_NONE,      /* not contributed (no public-health consent or home region; ended unanswered) */
    SHARE_CONFIRM_PENDING,   /* counted when a clinician answers with a condition code */
    SHARE_CONFIRM_DUPLICATE, /* not counted, earns nothing: the photo was contributed before */
    SHARE_CONFIRM_COUNTED,   /* answered and counted */
    SHARE_CONFIRM_WITHDRAWN, /* counted, then withdrawn from weeks not yet released */
} share_confirm_state;
typedef struct {
    share_confirm_state state;
    int64_t reward; /* tokens it earns / earned (0 when capped) */
    bool capped;    /* the daily cap left it without its reward */
    int64_t cap;    /* the cap (tokens per UTC day; 0 none) */
} share_confirmation;

/* Keep p for the case, sealed under a key derived from the node key and
 * bound to case_id (a review_cases id: the pledge goes with the row), but
 * only what a consent active at now wants: region and birth year under a
 * public-health consent covering screening results (and a region set), the
 * handle under a "model_training" one. Neither: nothing is stored and
 * *kept is false. Pledges older than the longest answer time go too.
 *
 * With who (issue 14), a pledge that will be contributed is checked against
 * the person's vault as a screening share is, in the same transaction as it
 * is kept: the case photo within photo_distance bits of one contributed
 * before (a screening share or another confirmed case) is a duplicate —
 * the confirmation will not be counted and earns nothing, as a duplicate
 * share is refused (out->state SHARE_CONFIRM_DUPLICATE; the region is not
 * kept); otherwise it is reserved in the vault (the photo's hash, so the
 * same photo shared later is the duplicate, and the reward against today's
 * earnings, UTC), to be counted when answered — without its reward when
 * that would take today's earnings over daily_cap (out->capped). out may
 * be NULL. */
core_status share_pledge_put(share *s, const char *case_id, const share_pledge *p, const share_pledge_person *who,
                             int64_t now, bool *kept, share_confirmation *out, core_error *err);
/* Read and delete the case's pledge in one transaction (*found false when
 * there was none): an answer feeds once. */
core_status share_pledge_take(share *s, const char *case_id, share_pledge *out, bool *found, core_error *err);
/* Read it, leaving it (share_contribute with pledge_case deletes it with
 * the count; share_pledge_drop otherwise). */
core_status share_pledge_get(share *s, const char *case_id, share_pledge *out, bool *found, core_error *err);
/* Delete it unread (the case was withdrawn, returned or answered with
 * nothing to count): a vault reservation it holds is ended through the
 * person's inbox in the same transaction, freeing its photo and reward. */
core_status share_pledge_drop(share *s, const char *case_id, core_error *err);

/* What became of case_id's confirmation, from the person's vault (their
 * session): NONE when it holds nothing for the case. */
core_status share_confirmation_get(share *s, int64_t owner, const uint8_t data_key[32], const char *case_id,
                                   int64_t now, share_confirmation *out, core_error *err);

/* Write the queued rewards to the ledger if a whole batch waits: all of
 * them, in random order, one after another. A reward the ledger refuses for
 * good leaves the queue (out->dropped); on any other failure the rest stays
 * queued for the next round and that failure is returned. out may be NULL;
 * out->left is filled either way. */
core_status share_pay_rewards(share *s, share_payout *out, core_error *err);

/* ---- releasing ---- */

/* An organisation that receives releases: its ledger key and public name.
 * Its privacy budget and release log are kept by key. */
typedef struct {
    uint8_t key[LEDGER_KEY];
    char name[LEDGER_NAME_MAX + 1];
} share_org;

/* The analysts' pseudo-organisation, to which the dashboard's releases go:
 * a fixed identity derived from the node key, "CareSync analysts". */
void share_analysts_org(const share *s, share_org *out);
/* An organisation registered on the ledger, by key (its name filled in);
 * CORE_ERR_NOT_FOUND if the ledger has none with that key. */
core_status share_org_lookup(share *s, const uint8_t key[LEDGER_KEY], share_org *out, core_error *err);

/* A question as asked (text, as it comes from a query string), and the
 * query it makes. The rules are the release policy's: only sealed weeks
 * (week_to defaults to the latest sealed week at now, from to twelve weeks
 * back); a release always holds every condition (releases of single
 * conditions, suppressed each on its own, could be combined to recover
 * what one of them hides), so a condition asked for is a view of the full
 * release; k at least the service's; epsilon only where allowed. */
typedef struct {
    const char *country;        /* ISO 3166-1 alpha-2 */
    const char *const *regions; /* the rows: every subdivision of the country */
    size_t n_regions;
    const char *const *conditions; /* the columns: every condition code */
    size_t n_conditions;
    const char *from, *to; /* ISO weeks ("2026-W48"); NULL: the default period */
    const char *condition; /* NULL, "" or "all": all; else one of conditions */
    const char *k;         /* NULL: the service's k; else a whole number from it to 1000 */
    const char *epsilon;   /* NULL: exact counts; else 0.01 .. 10 */
    bool allow_epsilon;    /* false: any epsilon is refused (the dashboard) */
    int64_t now;
} share_question;

/* Fill q from in (q borrows in's arrays) and *view (NULL: all conditions;
 * else in->condition). A malformed or out-of-range value is
 * CORE_ERR_INVALID with field naming it (a malformed `to` is field "week",
 * as surveil_week_parse says); a `to` later than the latest sealed week is
 * CORE_ERR_NOT_FOUND, field "to": that week is not released yet. */
core_status share_query_make(const share *s, const share_question *in, surveil_query *q, const char **view,
                             core_error *err);

/* The release of q to org, as its JSON body (*body malloc'd): the body
 * logged earlier for the same question on the same data if there is one
 * (no budget spent, byte for byte the same); otherwise built, logged with
 * its epsilon charged to org's budget (over budget: CORE_ERR_CONFLICT,
 * field "epsilon", nothing logged) and recorded on the ledger before it is
 * returned. The analysts' organisation (by key, not name) is registered on
 * the ledger the first time it needs to be; any other organisation must be
 * registered already (CORE_ERR_NOT_FOUND, field "org"). A release whose
 * ledger record failed stays logged and charged (the safe side) but is
 * never returned, now or later; the ledger's error is returned. */
core_status share_release(share *s, const share_org *org, const surveil_query *q, char **body, core_error *err);

/* ---- detection ---- */

#define SHARE_NOTE_MAX 240
/* The detector's view of weeks from..to (inclusive) of one region (or a
 * whole country, region = "US") and condition (NULL: all), run over the
 * exact counts from the first week with data so the method has all the
 * history there is. out has room for to - from + 1 points; a week the
 * method does not evaluate has upperbound NAN and alarm -1. When the method
 * cannot run at all (too little history, say) every week is so and note
 * says why ("" otherwise): that is not an error. */
core_status share_series_detect(share *s, const char *region, const char *condition, const surveil_params *p, int from,
                                int to, surveil_point *out, char note[SHARE_NOTE_MAX], core_error *err);

/* The series the dashboard charts, as JSON (new reference in *out): q's
 * release to org (share_release, with its errors) gives the weeks and the
 * observed values (surveil_release_observed: a chart never shows a number
 * the table suppressed), share_series_detect the method's upper bound and
 * alarm per week (null where not evaluated), with "note" saying why the
 * method could not run (else null):
 * {region, condition ("all" for NULL), method, weeks, observed, upperbound,
 *  alarm, synthetic, k, note}. region is q's country or one of its rows. */
core_status share_series(share *s, const share_org *org, const surveil_query *q, const char *region,
                         const char *condition, const surveil_params *p, json_t **out, core_error *err);
/* The same for one source (a surveil_source; < 0: all, as share_series):
 * the observed values come from the release by source (q with by_source
 * set: one release, its layers suppressed with the totals), the detector
 * runs on that source's exact counts, and the JSON says "source". */
core_status share_series_source(share *s, const share_org *org, const surveil_query *q, const char *region,
                                const char *condition, int source, const surveil_params *p, json_t **out,
                                core_error *err);
core_status share_series_detect_source(share *s, const char *region, const char *condition, int source,
                                       const surveil_params *p, int from, int to, surveil_point *out,
                                       char note[SHARE_NOTE_MAX], core_error *err);

/* The alerts (newest week first; open_only skips acknowledged ones), after
 * rescanning the sealed weeks if the sealed data changed since the last scan:
 * new data, or a week newly sealed at now. Only sealed weeks are scanned, so
 * no alert appears because of one contribution to an open week. */
core_status share_alerts(share *s, int64_t now, bool open_only, surveil_alert_fn fn, void *ud, core_error *err);
/* CORE_ERR_NOT_FOUND for no such alert, CORE_ERR_CONFLICT if already acknowledged. */
core_status share_alert_ack(share *s, int64_t id, const char *by, core_error *err);

/* Counters since open (for tests and health): alert scans run, rewards
 * paid and dropped. */
typedef struct {
    uint64_t scans, rewards_paid, rewards_dropped;
} share_stats;
void share_get_stats(share *s, share_stats *out);

#endif
