/* api — the HTTP handlers: one file per area (health, auth, account,
 * records, admin, regions). Each handler parses and checks the request, calls
 * one capability library, and maps its core_status to an HTTP status and a
 * stable error code. No handler touches SQL or keys directly. */
#ifndef CARESYNC_API_H
#define CARESYNC_API_H

#include "accounts/accounts.h"
#include "core/core.h"
#include "http/http.h"
#include "ledger/ledger.h"
#include "market/market.h"
#include "regions/regions.h"
#include "review/review.h"
#include "screening/screening.h"
#include "share/share.h"
#include "store/store.h"

/* Everything a handler needs; all borrowed, owned by the caller of api_register. */
typedef struct {
    const core_config *cfg;
    store *st;
    accounts *acc;
    regions *regs;
    ledger *led;
    struct cluster *cluster; /* this node of a ledger cluster (issue 15); NULL: single node */
    const uint8_t *admin_sk; /* the ledger admin key (64 bytes): registers organisations */
    const uint8_t *node_sk;  /* the node key (64 bytes): signs contributions and releases */
    screening_desk *desk;    /* screenings (model may be absent: answers 503) */
    share *share;            /* surveillance: contributions, rewards, releases, alerts */
    review *review;          /* clinician review: organisations' offers */
    market *market;          /* data requests (NULL: answers 503) */
    double started;          /* core_monotonic() at start, for uptime */
} api_context;

/* Register every route. Handlers expect an api_context as the server ctx. */
bool api_register(http_router *r);

/* review_options.on_answered, with ud the api_context (issue 13): the
 * answered case's pledge (share_pledge_get) feeds a clinician_confirmed
 * contribution (public-health consent still active; through the person's
 * vault reservation, issue 14, the pledge going with the count, so a second
 * call feeds nothing) and a labelled example in DATA_DIR/examples
 * ("model_training" consent still active). Failures are logged: the answer
 * stands whatever this does. */
void api_review_answered(void *ud, const review_answered *a);
/* review_options.on_ended: a case ended unanswered — its pledge goes, and
 * the vault reservation with it (share_pledge_drop). */
void api_review_ended(void *ud, const char *id);
/* Where the labelled examples are kept: DATA_DIR/examples. */
void api_examples_dir(const api_context *c, char out[4200]);

#endif
