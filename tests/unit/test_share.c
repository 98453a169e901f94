/* share: each step of the sharing and releasing workflow on a real store
 * (caresync.db with its migrations) and a real ledger, both in a temporary
 * directory with freshly generated keys. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "crypto/crypto.h"
#include "ledger/ledger.h"
#include "share/share.h"
#include "store/store.h"
#include "surveil/surveil.h"

#define DAY 86400

typedef struct {
    uint8_t pk[LEDGER_KEY], sk[LEDGER_SECRET];
} key;

typedef struct {
    char dir[256];
    key node, admin;
    store *st;
    ledger *led;
    share *sh;
    int64_t now;
} fixture;

static void open_share(fixture *f, double budget, int batch) {
    share_close(f->sh);
    f->sh = NULL;
    share_options o = {.st = f->st,
                       .led = f->led,
                       .node_sk = f->node.sk,
                       .admin_sk = f->admin.sk,
                       .k = 11,
                       .budget = budget,
                       .seal_delay = DAY,
                       .reward_batch = batch,
                       .photo_distance = 10};
    core_error err = {0};
    if (share_open(&o, &f->sh, &err)) fail_msg("share_open: %s", err.message);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    testutil_ledger_open(f->dir, f->node.pk, f->node.sk, f->admin.pk, f->admin.sk, &f->st, &f->led);
    f->now = core_now();
    open_share(f, 1.0, 3);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    share_close(f->sh);
    testutil_ledger_close(f->dir, f->st, f->led);
    free(f);
    return 0;
}

/* ---- ledger helpers: the wallet signs for itself, as the server does for
 * the keys it holds ---- */

static void submit(fixture *f, const key *k, ledger_tx *tx, uint8_t txid[32]) {
    ledger_receipt r;
    core_error err = {0};
    if (ledger_sign_submit(f->led, tx, k->sk, &r, &err)) fail_msg("%s: %s", ledger_tx_kind_name(tx->kind), err.message);
    if (txid) memcpy(txid, r.txid, 32);
}

static key wallet(fixture *f) {
    key k;
    ledger_keypair(k.pk, k.sk);
    ledger_tx tx = {.kind = LEDGER_TX_REGISTER_WALLET};
    submit(f, &k, &tx, NULL);
    return k;
}

static void grant(fixture *f, const key *k, uint32_t scope, ledger_purpose purpose, int64_t expires, uint8_t id[32]) {
    ledger_tx tx = {.kind = LEDGER_TX_GRANT};
    tx.u.grant.scope = scope;
    tx.u.grant.purpose = (uint8_t)purpose;
    tx.u.grant.expires = (uint64_t)expires;
    submit(f, k, &tx, id);
}

static void revoke(fixture *f, const key *k, const uint8_t id[32]) {
    ledger_tx tx = {.kind = LEDGER_TX_REVOKE};
    memcpy(tx.u.revoke.grant, id, 32);
    submit(f, k, &tx, NULL);
}

/* A wallet with an active public-health consent covering screening results. */
static key consenting(fixture *f, uint8_t id[32]) {
    key k = wallet(f);
    uint8_t tmp[32];
    grant(f, &k, 1u << LEDGER_CAT_SCREENING, LEDGER_PURPOSE_SURVEILLANCE, f->now + 30 * DAY, id ? id : tmp);
    return k;
}

static int64_t balance(fixture *f, const key *k) {
    ledger_account a;
    core_error err = {0};
    core_status rc = ledger_get_account(f->led, k->pk, &a, &err);
    assert_int_equal(rc, CORE_OK);
    return a.balance;
}

static uint64_t tree_size(fixture *f) {
    ledger_block h;
    assert_int_equal(ledger_head(f->led, &h, NULL), CORE_OK);
    return h.tree_size;
}

static share_contribution_input input(const fixture *f, const key *k, const char *result_id) {
    share_contribution_input in = {.condition = "fungal",
                                   .region = "US-CA",
                                   .created = f->now,
                                   .birth_year = 1990,
                                   .result_id = result_id,
                                   .year = 2026,
                                   .now = f->now};
    memcpy(in.wallet, k->pk, 32);
    return in;
}

static double count_of(fixture *f, const char *region, const char *condition, int week) {
    double x = -1;
    core_error err = {0};
    assert_int_equal(surveil_series(f->st, region, condition, week, week, &x, NULL, &err), CORE_OK);
    return x;
}

static size_t queued(fixture *f) {
    size_t n = 99;
    assert_int_equal(surveil_rewards_queued(f->st, &n, NULL), CORE_OK);
    return n;
}

/* ---- contributing ---- */

/* Only an active consent for public-health surveillance that covers
 * screening results lets a result in; the others are passed over. */
static void the_consent_is_chosen(void **state) {
    fixture *f = *state;
    core_error err = {0};
    share_receipt r;
    key k = wallet(f);
    share_contribution_input in = input(f, &k, "r1");
    /* none at all */
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_ERR_FORBIDDEN);
    assert_string_equal(err.field, "consent");
    /* research, not surveillance; surveillance of other categories only */
    uint8_t research[32], other[32], revoked[32], expiring[32], good[32];
    grant(f, &k, LEDGER_SCOPE_ALL, LEDGER_PURPOSE_RESEARCH, f->now + 30 * DAY, research);
    grant(f, &k, LEDGER_SCOPE_ALL & ~(1u << LEDGER_CAT_SCREENING), LEDGER_PURPOSE_SURVEILLANCE, f->now + 30 * DAY,
          other);
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_ERR_FORBIDDEN);
    assert_string_equal(err.field, "consent");
    /* the right kind, but revoked */
    grant(f, &k, 1u << LEDGER_CAT_SCREENING, LEDGER_PURPOSE_SURVEILLANCE, f->now + 30 * DAY, revoked);
    revoke(f, &k, revoked);
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_ERR_FORBIDDEN);
    /* the right kind, expired by the time the result is shared */
    grant(f, &k, 1u << LEDGER_CAT_SCREENING, LEDGER_PURPOSE_SURVEILLANCE, f->now + 60, expiring);
    share_contribution_input later = in;
    later.now = later.created = f->now + 120;
    assert_int_equal(share_contribute(f->sh, &later, &r, &err), CORE_ERR_FORBIDDEN);
    assert_string_equal(err.field, "consent");
    /* nothing of any of that was counted or queued */
    assert_true(count_of(f, "US-CA", "fungal", surveil_week_of_time(f->now)) == 0);
    assert_int_equal(queued(f), 0);
    /* the one that fits is the one the reward names */
    grant(f, &k, (1u << LEDGER_CAT_SCREENING) | (1u << LEDGER_CAT_SYMPTOMS), LEDGER_PURPOSE_SURVEILLANCE,
          f->now + 30 * DAY, good);
    assert_int_equal(share_contribute(f->sh, &later, &r, &err), CORE_OK);
    assert_memory_equal(r.grant, good, 32);
    /* consent comes first, then the region */
    share_contribution_input nowhere = input(f, &k, "r2");
    nowhere.region = NULL;
    assert_int_equal(share_contribute(f->sh, &nowhere, &r, &err), CORE_ERR_NOT_FOUND);
    assert_string_equal(err.field, "region");
    key stranger = wallet(f);
    share_contribution_input both = input(f, &stranger, "r3");
    both.region = NULL;
    assert_int_equal(share_contribute(f->sh, &both, &r, &err), CORE_ERR_FORBIDDEN);
}

/* A consent for public-health surveillance given to an organisation (a data
 * request's, issue 14) is not a consent to the public-health pool: it lets
 * no result in, and does not count as the pool consent a clinician's
 * answer may feed. */
static void an_organisation_consent_is_not_the_pool(void **state) {
    fixture *f = *state;
    core_error err = {0};
    share_receipt r;
    key org;
    ledger_keypair(org.pk, org.sk);
    ledger_tx reg = {.kind = LEDGER_TX_REGISTER_ORG};
    memcpy(reg.u.org.org, org.pk, 32);
    strcpy(reg.u.org.name, "Agency Asking For Data");
    submit(f, &f->admin, &reg, NULL);
    key k = wallet(f);
    ledger_tx g = {.kind = LEDGER_TX_GRANT};
    g.u.grant.scope = LEDGER_SCOPE_ALL;
    g.u.grant.purpose = LEDGER_PURPOSE_SURVEILLANCE;
    memcpy(g.u.grant.grantee, org.pk, 32);
    g.u.grant.expires = (uint64_t)(f->now + 30 * DAY);
    submit(f, &k, &g, NULL);
    share_contribution_input in = input(f, &k, "r-org");
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_ERR_FORBIDDEN);
    assert_string_equal(err.field, "consent");
    bool yes = true;
    assert_int_equal(share_consented(f->sh, k.pk, LEDGER_PURPOSE_SURVEILLANCE, f->now, &yes, &err), CORE_OK);
    assert_false(yes);
    assert_true(count_of(f, "US-CA", "fungal", surveil_week_of_time(f->now)) == 0);
}

/* A contribution is its five facts counted into the open week and a reward
 * queued: nothing reaches the ledger below a batch. */
static void a_contribution_is_counted_and_queued(void **state) {
    fixture *f = *state;
    core_error err = {0};
    share_receipt r;
    key k = consenting(f, NULL);
    uint64_t size0 = tree_size(f);
    share_contribution_input in = input(f, &k, "r1");
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_OK);
    int week = surveil_week_of_time(f->now);
    assert_int_equal(r.contribution.week, week);
    assert_string_equal(r.contribution.condition, "fungal");
    assert_string_equal(r.contribution.region, "US-CA");
    assert_int_equal(r.contribution.age_band, surveil_age_band(1990, 2026));
    assert_int_equal(r.contribution.source, SURVEIL_SOURCE_MODEL);
    uint8_t c[32];
    surveil_commitment(&r.contribution, r.salt, c);
    assert_memory_equal(c, r.commitment, 32); /* the salt the person gets opens the commitment */
    uint64_t rewards[LEDGER_CATEGORIES];
    assert_int_equal(ledger_get_rewards(f->led, rewards, NULL), CORE_OK);
    assert_true(r.reward == rewards[LEDGER_CAT_SCREENING] && r.reward > 0);
    assert_int_equal(r.payout.paid, 0);
    assert_int_equal(r.payout.left, 1);
    assert_int_equal(r.pay_error.code, CORE_OK);
    /* a second result of the same person: counted and queued too */
    in = input(f, &k, "r2");
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_OK);
    assert_int_equal(r.payout.left, 2);
    assert_true(count_of(f, "US-CA", "fungal", week) == 2);
    assert_int_equal(queued(f), 2);
    /* ... and nothing on the ledger: no transaction, no reward yet */
    assert_int_equal(tree_size(f), size0);
    assert_int_equal(balance(f, &k), 0);
    /* the same result again is refused, whole */
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_ERR_CONFLICT);
    assert_string_equal(err.field, "contribution");
    /* a result from a sealed week is refused, whole */
    in = input(f, &k, "r3");
    in.created = f->now - 30 * DAY;
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_ERR_CONFLICT);
    assert_string_equal(err.field, "week");
    assert_true(count_of(f, "US-CA", "fungal", week) == 2);
    assert_int_equal(queued(f), 2);
}

/* The contribution that fills a batch pays it: every reward on the ledger,
 * the queue empty. */
static void a_full_batch_is_paid(void **state) {
    fixture *f = *state;
    core_error err = {0};
    share_receipt r[3];
    key k[3];
    for (int i = 0; i < 3; i++) {
        k[i] = consenting(f, NULL);
        share_contribution_input in = input(f, &k[i], "r1");
        assert_int_equal(share_contribute(f->sh, &in, &r[i], &err), CORE_OK);
    }
    assert_int_equal(r[1].payout.paid, 0);
    assert_int_equal(r[1].payout.left, 2);
    assert_int_equal(r[2].payout.paid, 3);
    assert_int_equal(r[2].payout.dropped, 0);
    assert_int_equal(r[2].payout.left, 0);
    assert_int_equal(queued(f), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(balance(f, &k[i]), (int64_t)r[i].reward);
        uint8_t txid[32], *buf = NULL;
        size_t len;
        assert_int_equal(ledger_find_commitment(f->led, r[i].commitment, txid, &err), CORE_OK);
        assert_int_equal(ledger_get_tx(f->led, txid, &buf, &len, NULL, NULL, &err), CORE_OK);
        ledger_tx tx;
        assert_int_equal(ledger_tx_decode(buf, len, &tx, &err), CORE_OK);
        free(buf);
        assert_int_equal(tx.kind, LEDGER_TX_CONTRIBUTE);
        assert_memory_equal(tx.u.contribute.contributor, k[i].pk, 32);
        assert_memory_equal(tx.signer, f->node.pk, 32);
        assert_memory_equal(tx.u.contribute.grant, r[i].grant, 32);
    }
    share_stats s;
    share_get_stats(f->sh, &s);
    assert_int_equal(s.rewards_paid, 3);
    /* an empty queue: a round pays nothing and fails nothing */
    share_payout p;
    assert_int_equal(share_pay_rewards(f->sh, &p, &err), CORE_OK);
    assert_true(p.paid == 0 && p.dropped == 0 && p.left == 0);
}

/* A reward whose consent was revoked before its batch was written is
 * refused by the ledger and leaves the queue; the count it came with stays,
 * as it was shared under an active consent. */
static void a_reward_revoked_before_its_batch_is_dropped(void **state) {
    fixture *f = *state;
    core_error err = {0};
    share_receipt r;
    uint8_t id[32];
    key a = consenting(f, id), b = consenting(f, NULL), c = consenting(f, NULL);
    share_contribution_input in = input(f, &a, "r1");
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_OK);
    revoke(f, &a, id);
    in = input(f, &b, "r1");
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_OK);
    in = input(f, &c, "r1");
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_OK);
    assert_int_equal(r.payout.paid, 2);
    assert_int_equal(r.payout.dropped, 1);
    assert_int_not_equal(r.payout.dropped_why.code, CORE_OK);
    assert_int_equal(r.payout.left, 0);
    assert_int_equal(queued(f), 0);
    assert_int_equal(balance(f, &a), 0);
    assert_int_equal(balance(f, &b), (int64_t)r.reward);
    assert_int_equal(balance(f, &c), (int64_t)r.reward);
    assert_true(count_of(f, "US-CA", "fungal", surveil_week_of_time(f->now)) == 3);
    share_stats s;
    share_get_stats(f->sh, &s);
    assert_int_equal(s.rewards_dropped, 1);
}

/* ---- releasing ---- */

static const char *const conds[] = {"fungal", "eczema", "viral"};
static const char *const rows[] = {"US-CA", "US-NV", "US-OR", "US-WA"};

static surveil_contribution contrib(const char *cond, const char *region, int week) {
    surveil_contribution c = {.week = week, .age_band = 3, .source = SURVEIL_SOURCE_MODEL};
    snprintf(c.condition, sizeof c.condition, "%s", cond);
    snprintf(c.region, sizeof c.region, "%s", region);
    return c;
}

/* Sealed weeks w0 .. w0 + weeks - 1: CA many of everything, NV a few
 * fungal, OR moderate. */
static void fill(fixture *f, int w0, int weeks) {
    core_error err = {0};
    for (int w = w0; w < w0 + weeks; w++) {
        surveil_contribution c[6] = {contrib("fungal", "US-CA", w), contrib("eczema", "US-CA", w),
                                     contrib("viral", "US-CA", w),  contrib("fungal", "US-NV", w),
                                     contrib("fungal", "US-OR", w), contrib("eczema", "US-OR", w)};
        int64_t n[6] = {40 + w % 7, 25, 30, 3, 14, 12};
        assert_int_equal(surveil_add_counts(f->st, c, n, 6, false, &err), CORE_OK);
    }
}

static surveil_query query(fixture *f, int weeks, double epsilon) {
    int through = share_sealed_through(f->sh, f->now);
    surveil_query q = {.country = "US",
                       .week_from = through - weeks + 1,
                       .week_to = through,
                       .conditions = conds,
                       .n_conditions = 3,
                       .k = 11,
                       .base_k = 11,
                       .epsilon = epsilon,
                       .sealed_through = through,
                       .regions = rows,
                       .n_regions = 4};
    return q;
}

static share_org registered_org(fixture *f, const char *name) {
    share_org o = {0};
    uint8_t sk[LEDGER_SECRET];
    ledger_keypair(o.key, sk);
    snprintf(o.name, sizeof o.name, "%s", name);
    ledger_tx tx = {.kind = LEDGER_TX_REGISTER_ORG};
    memcpy(tx.u.org.org, o.key, 32);
    snprintf(tx.u.org.name, sizeof tx.u.org.name, "%s", name);
    submit(f, &f->admin, &tx, NULL);
    return o;
}

static int64_t logged_releases(fixture *f) {
    sqlite3 *db = store_acquire(f->st);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM surveil_releases", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    store_release(f->st, db);
    return n;
}

/* The same question on the same data is the logged body, byte for byte
 * (noise included), costing no budget and no ledger record. */
static void a_repeated_release_is_the_same_and_free(void **state) {
    fixture *f = *state;
    core_error err = {0};
    int through = share_sealed_through(f->sh, f->now);
    fill(f, through - 5, 6);
    share_org org = registered_org(f, "Northland Public Health");
    surveil_query q = query(f, 6, 0.5);
    char *a = NULL, *b = NULL;
    assert_int_equal(share_release(f->sh, &org, &q, &a, &err), CORE_OK);
    json_t *j = json_loads(a, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "release"), "organisation")),
                        "Northland Public Health");
    assert_int_equal(json_array_size(json_object_get(j, "weeks")), 6);
    json_decref(j);
    uint64_t size = tree_size(f);
    int64_t logged = logged_releases(f);
    assert_int_equal(share_release(f->sh, &org, &q, &b, &err), CORE_OK);
    assert_string_equal(a, b);
    assert_int_equal(tree_size(f), size);
    assert_int_equal(logged_releases(f), logged);
    char label[80], hex[65];
    cs_crypto_hex(org.key, 32, hex);
    snprintf(label, sizeof label, "org:%s", hex);
    double spent = 0;
    assert_int_equal(surveil_budget_spent(f->st, label, &spent, &err), CORE_OK);
    assert_true(fabs(spent - 0.5) < 1e-9);
    free(a);
    free(b);
}

/* Over budget: refused with field "epsilon", nothing logged, nothing on the
 * ledger, nothing more spent. */
static void an_exhausted_budget_refuses_and_logs_nothing(void **state) {
    fixture *f = *state;
    core_error err = {0};
    int through = share_sealed_through(f->sh, f->now);
    fill(f, through - 5, 6);
    share_org org = registered_org(f, "Northland Public Health");
    surveil_query q = query(f, 6, 0.6);
    char *body = NULL;
    assert_int_equal(share_release(f->sh, &org, &q, &body, &err), CORE_OK);
    free(body);
    body = NULL;
    uint64_t size = tree_size(f);
    int64_t logged = logged_releases(f);
    q = query(f, 4, 0.6); /* another question: 0.6 more would exceed 1.0 */
    assert_int_equal(share_release(f->sh, &org, &q, &body, &err), CORE_ERR_CONFLICT);
    assert_string_equal(err.field, "epsilon");
    assert_null(body);
    assert_int_equal(tree_size(f), size);
    assert_int_equal(logged_releases(f), logged);
    char label[80], hex[65];
    cs_crypto_hex(org.key, 32, hex);
    snprintf(label, sizeof label, "org:%s", hex);
    double spent = 0;
    assert_int_equal(surveil_budget_spent(f->st, label, &spent, &err), CORE_OK);
    assert_true(fabs(spent - 0.6) < 1e-9);
    /* exact counts cost nothing and still go out */
    q = query(f, 4, 0);
    assert_int_equal(share_release(f->sh, &org, &q, &body, &err), CORE_OK);
    free(body);
}

typedef struct {
    const uint8_t *key;
    int n, total;
    uint64_t height;
    char name[LEDGER_NAME_MAX + 1];
} org_count;

static void count_org(void *ud, const uint8_t pk[LEDGER_KEY], const char *name, uint64_t height) {
    org_count *c = ud;
    c->total++;
    if (memcmp(pk, c->key, 32) != 0) return;
    c->n++;
    c->height = height;
    snprintf(c->name, sizeof c->name, "%s", name);
}

/* The analysts' organisation — known by its key, derived from the node
 * key — is registered on its first release and never again; another key
 * under the same name is not registered at all. */
static void the_analysts_are_registered_once(void **state) {
    fixture *f = *state;
    core_error err = {0};
    int through = share_sealed_through(f->sh, f->now);
    fill(f, through - 5, 6);
    share_org analysts;
    share_analysts_org(f->sh, &analysts);
    assert_string_equal(analysts.name, "CareSync analysts");
    uint8_t want[32];
    cs_crypto_hash(want, "caresync-analysts-org", f->node.pk, 32);
    assert_memory_equal(analysts.key, want, 32);
    org_count c = {.key = analysts.key};
    assert_int_equal(ledger_list_orgs(f->led, count_org, &c, &err), CORE_OK);
    assert_int_equal(c.n, 0);
    /* an impostor: the name, another key */
    share_org impostor = analysts;
    impostor.key[0] ^= 1;
    surveil_query q = query(f, 6, 0);
    char *body = NULL;
    assert_int_equal(share_release(f->sh, &impostor, &q, &body, &err), CORE_ERR_NOT_FOUND);
    assert_string_equal(err.field, "org");
    assert_null(body);
    memset(&c, 0, sizeof c);
    c.key = analysts.key;
    assert_int_equal(ledger_list_orgs(f->led, count_org, &c, &err), CORE_OK);
    assert_int_equal(c.total, 0);
    /* the analysts' first release registers them */
    assert_int_equal(share_release(f->sh, &analysts, &q, &body, &err), CORE_OK);
    free(body);
    memset(&c, 0, sizeof c);
    c.key = analysts.key;
    assert_int_equal(ledger_list_orgs(f->led, count_org, &c, &err), CORE_OK);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.total, 1);
    assert_string_equal(c.name, "CareSync analysts");
    uint64_t height = c.height;
    /* the next one (another question) does not register them again */
    q = query(f, 3, 0);
    assert_int_equal(share_release(f->sh, &analysts, &q, &body, &err), CORE_OK);
    free(body);
    memset(&c, 0, sizeof c);
    c.key = analysts.key;
    assert_int_equal(ledger_list_orgs(f->led, count_org, &c, &err), CORE_OK);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.height, height);
    share_org found;
    assert_int_equal(share_org_lookup(f->sh, analysts.key, &found, &err), CORE_OK);
    assert_string_equal(found.name, "CareSync analysts");
    assert_int_equal(share_org_lookup(f->sh, impostor.key, &found, &err), CORE_ERR_NOT_FOUND);
}

/* The release policy as text comes in: sealed weeks only, k and epsilon in
 * range, a condition as a view of the full release. */
static void questions_make_queries(void **state) {
    fixture *f = *state;
    core_error err = {0};
    surveil_query q;
    const char *view = "x";
    share_question in = {
        .country = "US", .regions = rows, .n_regions = 4, .conditions = conds, .n_conditions = 3, .now = f->now};
    int through = share_sealed_through(f->sh, f->now);
    assert_int_equal(share_query_make(f->sh, &in, &q, &view, &err), CORE_OK);
    assert_true(q.week_to == through && q.week_from == through - 11 && q.sealed_through == through);
    assert_true(q.k == 11 && q.base_k == 11 && q.epsilon == 0 && q.n_conditions == 3 && q.n_regions == 4);
    assert_null(view);
    char wk[9];
    surveil_week_format(through + 1, wk);
    in.to = wk;
    assert_int_equal(share_query_make(f->sh, &in, &q, &view, &err), CORE_ERR_NOT_FOUND);
    assert_string_equal(err.field, "to");
    in.to = "2026-W99";
    assert_int_equal(share_query_make(f->sh, &in, &q, &view, &err), CORE_ERR_INVALID);
    in.to = NULL;
    in.from = "soon";
    assert_int_equal(share_query_make(f->sh, &in, &q, &view, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "from");
    in.from = NULL;
    in.condition = "measles";
    assert_int_equal(share_query_make(f->sh, &in, &q, &view, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "condition");
    in.condition = "eczema";
    assert_int_equal(share_query_make(f->sh, &in, &q, &view, &err), CORE_OK);
    assert_string_equal(view, "eczema");
    assert_int_equal(q.n_conditions, 3); /* the release still holds every condition */
    in.k = "10";
    assert_int_equal(share_query_make(f->sh, &in, &q, &view, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "k");
    in.k = "20";
    in.epsilon = "0.5";
    assert_int_equal(share_query_make(f->sh, &in, &q, &view, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "epsilon");
    in.allow_epsilon = true;
    assert_int_equal(share_query_make(f->sh, &in, &q, &view, &err), CORE_OK);
    assert_true(q.k == 20 && q.base_k == 11 && q.epsilon == 0.5);
    in.epsilon = "11";
    assert_int_equal(share_query_make(f->sh, &in, &q, &view, &err), CORE_ERR_INVALID);
}

/* ---- detection ---- */

static void series_are_detected_on_exact_counts(void **state) {
    fixture *f = *state;
    core_error err = {0};
    int through = share_sealed_through(f->sh, f->now);
    surveil_params p;
    surveil_params_init(&p, SURVEIL_C2);
    surveil_point pts[4];
    char note[SHARE_NOTE_MAX];
    /* two weeks of data: C2 cannot run; that is a note, not an error */
    fill(f, through - 1, 2);
    assert_int_equal(share_series_detect(f->sh, "US-OR", "eczema", &p, through - 3, through, pts, note, &err), CORE_OK);
    assert_true(note[0] != 0);
    for (int i = 0; i < 4; i++) assert_true(isnan(pts[i].upperbound) && pts[i].alarm == -1);
    /* thirty weeks and an outbreak in the last one */
    fill(f, through - 29, 28);
    surveil_contribution c = contrib("eczema", "US-OR", through);
    int64_t more = 60;
    assert_int_equal(surveil_add_counts(f->st, &c, &more, 1, false, &err), CORE_OK);
    assert_int_equal(share_series_detect(f->sh, "US-OR", "eczema", &p, through - 3, through, pts, note, &err), CORE_OK);
    assert_string_equal(note, "");
    assert_int_equal(pts[3].alarm, 1);
    assert_int_equal(pts[2].alarm, 0);
    assert_true(pts[3].upperbound >= 12 && pts[3].upperbound < 72);
    /* the whole series as the dashboard gets it */
    share_org analysts;
    share_analysts_org(f->sh, &analysts);
    surveil_query q = query(f, 4, 0);
    json_t *s = NULL;
    assert_int_equal(share_series(f->sh, &analysts, &q, "US-OR", "eczema", &p, &s, &err), CORE_OK);
    const json_t *obs = json_object_get(s, "observed"), *alarm = json_object_get(s, "alarm");
    assert_int_equal(json_array_size(obs), 4);
    /* what the release shows: the exact count, or null where it suppressed it */
    for (int i = 0; i < 4; i++) {
        const json_t *v = json_array_get(obs, (size_t)i);
        assert_true(json_is_null(v) ||
                    json_integer_value(v) == (json_int_t)count_of(f, "US-OR", "eczema", through - 3 + i));
    }
    assert_int_equal(json_array_size(json_object_get(s, "weeks")), 4);
    assert_true(json_is_true(json_array_get(alarm, 3)));
    assert_string_equal(json_string_value(json_object_get(s, "method")), "c2");
    assert_true(json_is_null(json_object_get(s, "note")));
    json_decref(s);
}

static void count_alert(void *ud, const surveil_alert *a) {
    int *n = ud;
    (void)a;
    (*n)++;
}

static int alerts_now(fixture *f, int64_t now) {
    int n = 0;
    core_error err = {0};
    if (share_alerts(f->sh, now, false, count_alert, &n, &err)) fail_msg("share_alerts: %s", err.message);
    return n;
}

static uint64_t scans(fixture *f) {
    share_stats s;
    share_get_stats(f->sh, &s);
    return s.scans;
}

/* Alerts are rescanned when the sealed data changed (the data version) or
 * a week was newly sealed, and not otherwise: counts into an open week
 * change neither. */
static void alerts_are_rescanned_only_when_sealed_data_change(void **state) {
    fixture *f = *state;
    core_error err = {0};
    int through = share_sealed_through(f->sh, f->now);
    fill(f, through - 29, 30);
    surveil_contribution c = contrib("eczema", "US-OR", through);
    int64_t more = 60;
    assert_int_equal(surveil_add_counts(f->st, &c, &more, 1, false, &err), CORE_OK);
    int first = alerts_now(f, f->now);
    assert_true(first >= 1);
    assert_int_equal(scans(f), 1);
    assert_int_equal(alerts_now(f, f->now), first);
    assert_int_equal(scans(f), 1);
    /* an outbreak in the open week: counted, but the sealed data did not change */
    c = contrib("eczema", "US-OR", through + 1);
    for (int i = 0; i < 72; i++) {
        uint8_t mark[32] = {(uint8_t)i, 0xa1};
        assert_int_equal(surveil_add(f->st, &c, mark, through, NULL, &err), CORE_OK);
    }
    assert_int_equal(alerts_now(f, f->now), first);
    assert_int_equal(scans(f), 1);
    /* a week later that week is sealed: rescanned, and it alarms */
    int64_t later = f->now + 7 * DAY;
    assert_int_equal(share_sealed_through(f->sh, later), through + 1);
    assert_true(alerts_now(f, later) > first);
    assert_int_equal(scans(f), 2);
    assert_int_equal(alerts_now(f, later), alerts_now(f, later));
    assert_int_equal(scans(f), 2);
    /* new sealed data (the version moves): rescanned */
    c = contrib("viral", "US-NV", through - 3);
    more = 1;
    assert_int_equal(surveil_add_counts(f->st, &c, &more, 1, false, &err), CORE_OK);
    alerts_now(f, later);
    assert_int_equal(scans(f), 3);
}

/* ---- what a clinician's answer feeds (issue 13) ---- */

/* A clinician's confirmed condition is counted under its own source, under
 * the same public-health consent; without it nothing is counted. */
static void a_clinician_answer_is_counted_as_clinician_confirmed(void **state) {
    fixture *f = *state;
    core_error err = {0};
    key k = consenting(f, NULL), none = wallet(f);
    share_contribution_input in = input(f, &k, "review:case1");
    in.source = SURVEIL_SOURCE_CLINICIAN;
    share_receipt r;
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_OK);
    assert_int_equal(r.contribution.source, SURVEIL_SOURCE_CLINICIAN);
    char text[160];
    surveil_contribution_text(&r.contribution, text, sizeof text);
    assert_non_null(strstr(text, "source=clinician_confirmed"));
    int week = surveil_week_of_time(f->now);
    double x = -1;
    assert_int_equal(
        surveil_series_source(f->st, "US-CA", "fungal", SURVEIL_SOURCE_CLINICIAN, week, week, &x, NULL, &err), CORE_OK);
    assert_true(x == 1);
    assert_int_equal(surveil_series_source(f->st, "US-CA", "fungal", SURVEIL_SOURCE_MODEL, week, week, &x, NULL, &err),
                     CORE_OK);
    assert_true(x == 0);
    assert_int_equal(queued(f), 1); /* its reward queued like any other */
    /* no consent, nothing counted */
    in = input(f, &none, "review:case2");
    in.source = SURVEIL_SOURCE_CLINICIAN;
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_ERR_FORBIDDEN);
    assert_true(count_of(f, "US-CA", "fungal", week) == 1);
    /* a source a share cannot come from */
    in = input(f, &k, "review:case3");
    in.source = SURVEIL_SOURCE_SELF;
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_ERR_INVALID);
}

/* The release by source: one release (its own fingerprint, logged apart
 * from the plain one), whose clinician_confirmed layer shows the confirmed
 * counts and whose model layer does not; totals as the plain release. */
static void a_release_by_source_shows_each_source(void **state) {
    fixture *f = *state;
    core_error err = {0};
    int through = share_sealed_through(f->sh, f->now);
    fill(f, through - 1, 2);
    surveil_contribution c = contrib("viral", "US-OR", through);
    c.source = SURVEIL_SOURCE_CLINICIAN;
    int64_t n = 13;
    assert_int_equal(surveil_add_counts(f->st, &c, &n, 1, false, &err), CORE_OK);
    share_org analysts;
    share_analysts_org(f->sh, &analysts);
    surveil_query q = query(f, 2, 0);
    char *plain = NULL, *by = NULL;
    assert_int_equal(share_release(f->sh, &analysts, &q, &plain, &err), CORE_OK);
    q.by_source = true;
    assert_int_equal(share_release(f->sh, &analysts, &q, &by, &err), CORE_OK);
    assert_int_equal(logged_releases(f), 2);
    json_t *pj = json_loads(plain, 0, NULL), *bj = json_loads(by, 0, NULL);
    assert_non_null(pj);
    assert_non_null(bj);
    assert_null(json_object_get(pj, "by_source"));
    /* the totals are the plain release's, value for value */
    assert_true(json_equal(json_object_get(pj, "weeks"), json_object_get(bj, "weeks")));
    json_t *cv = surveil_release_source_view(bj, "clinician_confirmed"), *mv = surveil_release_source_view(bj, "model");
    assert_non_null(cv);
    assert_non_null(mv);
    json_t *obs = json_array();
    assert_int_equal(surveil_release_observed(cv, "US-OR", "viral", NULL, obs, &err), CORE_OK);
    assert_int_equal(json_integer_value(json_array_get(obs, 1)), 13);
    json_array_clear(obs);
    assert_int_equal(surveil_release_observed(mv, "US-OR", "viral", NULL, obs, &err), CORE_OK);
    assert_int_equal(json_integer_value(json_array_get(obs, 1)), 0);
    json_array_clear(obs);
    assert_int_equal(surveil_release_observed(pj, "US-OR", "viral", NULL, obs, &err), CORE_OK);
    assert_int_equal(json_integer_value(json_array_get(obs, 1)), 13);
    /* CSV of the view names its source on every line */
    char *csv = surveil_release_csv(cv);
    assert_non_null(csv);
    assert_non_null(strstr(csv, "week,region,condition,count,status,synthetic,source\n"));
    assert_non_null(strstr(csv, ",US-OR,viral,13,published,no,clinician_confirmed\n"));
    free(csv);
    assert_null(surveil_release_source_view(pj, "model")); /* the plain release has no layers */
    json_decref(obs);
    json_decref(cv);
    json_decref(mv);
    json_decref(pj);
    json_decref(bj);
    free(plain);
    free(by);
}

/* A review case row for the pledge's foreign key. */
static void case_row(fixture *f, const char *id) {
    sqlite3 *db = store_acquire(f->st);
    char sql[600];
    snprintf(
        sql, sizeof sql,
        "INSERT OR IGNORE INTO users (id, username, role, created_at, pw_salt, pw_ops, pw_mem, pw_verifier, dk_pw, "
        "rc_salt, dk_rc) VALUES (1, 'p', 'person', 0, x'00', 1, 1, x'00', x'00', x'00', x'00');"
        "INSERT INTO review_cases (id, owner, org_key, price, state, created_at, deadline, request_txid, salt) "
        "VALUES ('%s', 1, zeroblob(32), 1, 'waiting', 0, 1, zeroblob(32), zeroblob(16));",
        id);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    store_release(f->st, db);
}

static bool db_holds(fixture *f, const char *text) {
    sqlite3 *db = store_acquire(f->st);
    sqlite3_stmt *q;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT count(*) FROM share_review_pledges WHERE instr(sealed, ?1) > 0", -1, &q, NULL),
        SQLITE_OK);
    sqlite3_bind_blob(q, 1, text, (int)strlen(text), SQLITE_STATIC);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    bool yes = sqlite3_column_int(q, 0) > 0;
    sqlite3_finalize(q);
    store_release(f->st, db);
    return yes;
}

/* ---- the person's vault: photo hashes, the daily cap, withdrawal ---- */

static void user_row(fixture *f, int64_t id) {
    sqlite3 *db = store_acquire(f->st);
    char sql[400];
    snprintf(sql, sizeof sql,
             "INSERT OR IGNORE INTO users (id, username, role, created_at, pw_salt, pw_ops, pw_mem, pw_verifier, "
             "dk_pw, rc_salt, dk_rc) VALUES (%lld, 'u%lld', 'person', 0, x'00', 1, 1, x'00', x'00', x'00', x'00')",
             (long long)id, (long long)id);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    store_release(f->st, db);
}

/* A person's contribution with their vault (owner, data key) and a photo hash. */
static share_contribution_input vaulted(const fixture *f, const key *k, const char *result_id, int64_t owner,
                                        const uint8_t data_key[32], uint64_t phash) {
    share_contribution_input in = input(f, k, result_id);
    in.owner = owner;
    in.data_key = data_key;
    in.has_phash = true;
    in.phash = phash;
    return in;
}

static int64_t table_count(fixture *f, const char *sql) {
    sqlite3 *db = store_acquire(f->st);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    store_release(f->st, db);
    return n;
}

/* The same photo (or one within the threshold) earns once and is counted
 * once, for that person; another person's vault is never compared; the
 * hashes are only in the sealed vault. */
static void the_same_photo_earns_once(void **state) {
    fixture *f = *state;
    open_share(f, 1.0, 100);
    user_row(f, 1);
    user_row(f, 2);
    uint8_t dk1[32], dk2[32];
    cs_crypto_random(dk1, 32);
    cs_crypto_random(dk2, 32);
    key a = consenting(f, NULL), b = consenting(f, NULL);
    const uint64_t photo = 0x8f3a5c7e19d2b460ULL;
    int week = surveil_week_of_time(f->now);
    share_receipt r;
    core_error err = {0};
    share_contribution_input in = vaulted(f, &a, "r1", 1, dk1, photo);
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_OK);
    /* The same result again is still "already shared" (the mark comes first). */
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_ERR_CONFLICT);
    assert_string_equal(err.field, "contribution");
    /* Another result of the same photo, three bits off: refused, not counted, not queued. */
    in = vaulted(f, &a, "r2", 1, dk1, photo ^ 0x1000100010ULL);
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_ERR_CONFLICT);
    assert_string_equal(err.field, "photo");
    assert_true(strstr(err.message, "already shared") != NULL);
    assert_true(count_of(f, "US-CA", "fungal", week) == 1);
    assert_int_equal(queued(f), 1);
    /* A different photo (half the bits differ) is a new contribution. */
    in = vaulted(f, &a, "r3", 1, dk1, photo ^ 0x00000000ffffffffULL);
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_OK);
    /* Another person with the very same photo: their own vault, no match. */
    in = vaulted(f, &b, "r1", 2, dk2, photo);
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_OK);
    assert_true(count_of(f, "US-CA", "fungal", week) == 3);
    assert_int_equal(queued(f), 3);
    /* Nothing of the hash in the clear; one sealed vault per person; the
     * pool holds tags and weeks only. */
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(photo >> (8 * i));
    sqlite3 *db = store_acquire(f->st);
    sqlite3_stmt *q;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT count(*) FROM share_vaults WHERE instr(sealed, ?1) > 0", -1, &q, NULL),
        SQLITE_OK);
    sqlite3_bind_blob(q, 1, le, 8, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 0);
    sqlite3_finalize(q);
    store_release(f->st, db);
    assert_int_equal(table_count(f, "SELECT count(*) FROM share_vaults"), 2);
    assert_int_equal(table_count(f, "SELECT count(*) FROM surveil_tags"), 3);
    /* The wrong data key opens nothing. */
    share_withdrawal wd;
    assert_int_equal(share_withdraw(f->sh, 1, dk2, NULL, f->now, &wd, &err), CORE_ERR_CRYPTO);
}

/* Tokens from shared results per UTC day are capped; the next day is new. */
static void the_daily_cap_applies(void **state) {
    fixture *f = *state;
    share_close(f->sh);
    share_options o = {.st = f->st,
                       .led = f->led,
                       .node_sk = f->node.sk,
                       .admin_sk = f->admin.sk,
                       .k = 11,
                       .budget = 1,
                       .seal_delay = DAY,
                       .reward_batch = 100,
                       .photo_distance = 10,
                       .daily_cap = 25};
    core_error err = {0};
    assert_int_equal(share_open(&o, &f->sh, &err), CORE_OK);
    user_row(f, 1);
    uint8_t dk[32];
    cs_crypto_random(dk, 32);
    key a = consenting(f, NULL);
    uint64_t rewards[LEDGER_CATEGORIES];
    assert_int_equal(ledger_get_rewards(f->led, rewards, &err), CORE_OK);
    assert_int_equal(rewards[LEDGER_CAT_SCREENING], 10); /* so 25 allows two a day */
    share_receipt r;
    static const uint64_t photos[] = {0x0ULL, 0xffffffff00000000ULL, 0x00000000ffffffffULL, 0xffff0000ffff0000ULL};
    char id[8];
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "r%d", i);
        share_contribution_input in = vaulted(f, &a, id, 1, dk, photos[i]);
        core_status rc = share_contribute(f->sh, &in, &r, &err);
        assert_int_equal(rc, i < 2 ? CORE_OK : CORE_ERR_CONFLICT);
    }
    assert_string_equal(err.field, "daily_cap");
    assert_true(strstr(err.message, "20 earned today") != NULL);
    assert_int_equal(queued(f), 2);
    /* A day later (a result made that day, so its week is open). */
    share_contribution_input in = vaulted(f, &a, "r9", 1, dk, photos[3]);
    in.now = in.created = f->now + DAY;
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_OK);
    /* Without a vault (a clinician's answer) neither the cap nor a tag applies. */
    in = input(f, &a, "case-1");
    in.source = SURVEIL_SOURCE_CLINICIAN;
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_OK);
    assert_int_equal(table_count(f, "SELECT count(*) FROM surveil_tags"), 3);
}

/* Withdrawal: the open week loses the person's count (once, however often
 * it is asked), a sealed week keeps it, other people's counts and other
 * consents' contributions are untouched, and sealed weeks' tags are gone. */
static void a_withdrawal_takes_back_open_weeks_only(void **state) {
    fixture *f = *state;
    open_share(f, 1.0, 100);
    user_row(f, 1);
    uint8_t dk[32], g1[32], g2[32];
    cs_crypto_random(dk, 32);
    key a = consenting(f, g1), other = consenting(f, NULL);
    grant(f, &a, 1u << LEDGER_CAT_SCREENING, LEDGER_PURPOSE_SURVEILLANCE, f->now + 30 * DAY, g2);
    int week = surveil_week_of_time(f->now);
    int64_t then = f->now - 14 * DAY;
    int old = surveil_week_of_time(then);
    share_receipt r;
    core_error err = {0};
    /* Two weeks ago (open then, sealed now), under the first consent. */
    share_contribution_input in = vaulted(f, &a, "old", 1, dk, 0x1111ULL);
    in.now = in.created = then;
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_OK);
    /* The wallet's first active consent was chosen: g1 names it, g2 the other. */
    if (memcmp(r.grant, g1, 32) != 0) {
        assert_memory_equal(r.grant, g2, 32);
        memcpy(g2, g1, 32);
        memcpy(g1, r.grant, 32);
    }
    /* This week: the person's and someone else's in the same cell. */
    in = vaulted(f, &a, "new", 1, dk, 0xffff0000ffff0000ULL);
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_OK);
    in = input(f, &other, "theirs");
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_OK);
    assert_true(count_of(f, "US-CA", "fungal", week) == 2);
    assert_true(count_of(f, "US-CA", "fungal", old) == 1);
    /* Revoking a consent the contributions were not made under withdraws none. */
    share_withdrawal wd;
    assert_int_equal(share_withdraw(f->sh, 1, dk, g2, f->now, &wd, &err), CORE_OK);
    assert_int_equal(wd.withdrawn, 0);
    assert_int_equal(wd.sealed, 0);
    assert_true(count_of(f, "US-CA", "fungal", week) == 2);
    /* The consent they were made under: the open week drops by one. */
    assert_int_equal(share_withdraw(f->sh, 1, dk, g1, f->now, &wd, &err), CORE_OK);
    assert_int_equal(wd.withdrawn, 1);
    assert_int_equal(wd.sealed, 1);
    assert_true(count_of(f, "US-CA", "fungal", week) == 1);
    assert_true(count_of(f, "US-CA", "fungal", old) == 1);
    /* Again (a retried revocation, then the account's deletion): nothing more. */
    assert_int_equal(share_withdraw(f->sh, 1, dk, g1, f->now, &wd, &err), CORE_OK);
    assert_int_equal(wd.withdrawn, 0);
    assert_int_equal(share_withdraw(f->sh, 1, dk, NULL, f->now, &wd, &err), CORE_OK);
    assert_int_equal(wd.withdrawn, 0);
    assert_true(count_of(f, "US-CA", "fungal", week) == 1);
    assert_int_equal(table_count(f, "SELECT count(*) FROM surveil_tags"), 0);
    /* A person with no vault has nothing to withdraw. */
    assert_int_equal(share_withdraw(f->sh, 7, dk, NULL, f->now, &wd, &err), CORE_OK);
    assert_int_equal(wd.withdrawn + wd.sealed, 0);
}

/* A pledge keeps only what a consent held at the request asks for, sealed;
 * the answer takes it once. */
static void a_pledge_keeps_only_what_a_consent_wants(void **state) {
    fixture *f = *state;
    core_error err = {0};
    key none = wallet(f), ph = consenting(f, NULL), tr = wallet(f);
    uint8_t id[32];
    grant(f, &tr, 1u << LEDGER_CAT_SCREENING, LEDGER_PURPOSE_TRAINING, f->now + 30 * DAY, id);
    share_pledge p = {.birth_year = 1984, .training = true};
    snprintf(p.region, sizeof p.region, "US-CA");
    memset(p.handle, 0xAB, 32);
    bool kept = true, found = true;
    share_pledge got;
    /* no consent: nothing stored */
    case_row(f, "c1");
    memcpy(p.wallet, none.pk, 32);
    assert_int_equal(share_pledge_put(f->sh, "c1", &p, NULL, f->now, &kept, NULL, &err), CORE_OK);
    assert_false(kept);
    assert_int_equal(share_pledge_take(f->sh, "c1", &got, &found, &err), CORE_OK);
    assert_false(found);
    /* public health only: region and birth year, no handle */
    case_row(f, "c2");
    memcpy(p.wallet, ph.pk, 32);
    assert_int_equal(share_pledge_put(f->sh, "c2", &p, NULL, f->now, &kept, NULL, &err), CORE_OK);
    assert_true(kept);
    assert_false(db_holds(f, "US-CA")); /* sealed */
    assert_int_equal(share_pledge_take(f->sh, "c2", &got, &found, &err), CORE_OK);
    assert_true(found);
    assert_string_equal(got.region, "US-CA");
    assert_int_equal(got.birth_year, 1984);
    assert_false(got.training);
    assert_memory_equal(got.wallet, ph.pk, 32);
    assert_int_equal(share_pledge_take(f->sh, "c2", &got, &found, &err), CORE_OK);
    assert_false(found); /* taken once */
    /* training only: the handle, no region */
    case_row(f, "c3");
    memcpy(p.wallet, tr.pk, 32);
    assert_int_equal(share_pledge_put(f->sh, "c3", &p, NULL, f->now, &kept, NULL, &err), CORE_OK);
    assert_true(kept);
    assert_int_equal(share_pledge_take(f->sh, "c3", &got, &found, &err), CORE_OK);
    assert_true(found);
    assert_string_equal(got.region, "");
    assert_true(got.training);
    assert_memory_equal(got.handle, p.handle, 32);
    bool yes = false;
    assert_int_equal(share_consented(f->sh, tr.pk, LEDGER_PURPOSE_TRAINING, f->now, &yes, &err), CORE_OK);
    assert_true(yes);
    revoke(f, &tr, id);
    assert_int_equal(share_consented(f->sh, tr.pk, LEDGER_PURPOSE_TRAINING, f->now, &yes, &err), CORE_OK);
    assert_false(yes);
    /* dropped unread */
    case_row(f, "c4");
    memcpy(p.wallet, ph.pk, 32);
    assert_int_equal(share_pledge_put(f->sh, "c4", &p, NULL, f->now, &kept, NULL, &err), CORE_OK);
    assert_int_equal(share_pledge_drop(f->sh, "c4", &err), CORE_OK);
    assert_int_equal(share_pledge_take(f->sh, "c4", &got, &found, &err), CORE_OK);
    assert_false(found);
}

/* A clinician's confirmation (issue 14) goes through the person's vault as a
 * screening share does: a photo shared before makes it a duplicate (not
 * counted, nothing earned: the share path refuses duplicates whole); one
 * reserved blocks the same photo shared later; the reward counts against
 * the day's cap (counted without it when over); the answer's tag reaches
 * the vault through the inbox, so withdrawing takes the confirmed count back
 * too; a case ended unanswered frees its photo. */
static void a_confirmed_case_goes_through_the_vault(void **state) {
    fixture *f = *state;
    share_close(f->sh);
    share_options o = {.st = f->st,
                       .led = f->led,
                       .node_sk = f->node.sk,
                       .admin_sk = f->admin.sk,
                       .k = 11,
                       .budget = 1,
                       .seal_delay = DAY,
                       .reward_batch = 100,
                       .photo_distance = 10,
                       .daily_cap = 25};
    core_error err = {0};
    assert_int_equal(share_open(&o, &f->sh, &err), CORE_OK);
    user_row(f, 1);
    uint8_t dk[32], g[32];
    cs_crypto_random(dk, 32);
    key a = consenting(f, g);
    const uint64_t shared = 0x8f3a5c7e19d2b460ULL, confirmed = 0x00000000ffffffffULL, capped = 0xffff0000ffff0000ULL;
    int week = surveil_week_of_time(f->now);
    share_receipt r;
    share_confirmation cf;
    bool kept, found;
    share_pledge p = {.birth_year = 1990}, got;
    memcpy(p.wallet, a.pk, 32);
    snprintf(p.region, sizeof p.region, "US-CA");
    /* A screening share of one photo (10 of today's 25). */
    share_contribution_input in = vaulted(f, &a, "r1", 1, dk, shared);
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_OK);

    /* A case of the same photo (two bits off): a duplicate, nothing pledged for the pool. */
    case_row(f, "dup");
    share_pledge_person who = {.owner = 1, .data_key = dk, .has_phash = true, .phash = shared ^ 0x11};
    assert_int_equal(share_pledge_put(f->sh, "dup", &p, &who, f->now, &kept, &cf, &err), CORE_OK);
    assert_int_equal(cf.state, SHARE_CONFIRM_DUPLICATE);
    assert_int_equal(cf.reward, 0);
    assert_false(kept);
    assert_int_equal(share_pledge_get(f->sh, "dup", &got, &found, &err), CORE_OK);
    assert_false(found);
    assert_int_equal(share_confirmation_get(f->sh, 1, dk, "dup", f->now, &cf, &err), CORE_OK);
    assert_int_equal(cf.state, SHARE_CONFIRM_DUPLICATE);

    /* A new photo: reserved, with its reward (20 of 25). */
    case_row(f, "c1");
    who.phash = confirmed;
    assert_int_equal(share_pledge_put(f->sh, "c1", &p, &who, f->now, &kept, &cf, &err), CORE_OK);
    assert_true(kept);
    assert_int_equal(cf.state, SHARE_CONFIRM_PENDING);
    assert_int_equal(cf.reward, 10);
    assert_false(cf.capped);
    /* The reserved photo shared as a screening: the duplicate now. */
    in = vaulted(f, &a, "r2", 1, dk, confirmed ^ 0x100);
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_ERR_CONFLICT);
    assert_string_equal(err.field, "photo");
    /* The reservation counts as earned today: a third 10 is over 25. */
    in = vaulted(f, &a, "r3", 1, dk, 0x5555aaaa5555aaaaULL);
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_ERR_CONFLICT);
    assert_string_equal(err.field, "daily_cap");
    /* So is a second case: counted when answered, without its reward. */
    case_row(f, "c2");
    who.phash = capped;
    assert_int_equal(share_pledge_put(f->sh, "c2", &p, &who, f->now, &kept, &cf, &err), CORE_OK);
    assert_int_equal(cf.state, SHARE_CONFIRM_PENDING);
    assert_true(cf.capped);
    assert_int_equal(cf.reward, 0);
    assert_int_equal(cf.cap, 25);

    /* The answers, in the clinician's session (no data key). */
    size_t q0 = queued(f);
    const char *cases[] = {"c1", "c2"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(share_pledge_get(f->sh, cases[i], &got, &found, &err), CORE_OK);
        assert_true(found);
        assert_true(got.reserved);
        assert_int_equal(got.pay, i == 0);
        char rid[32];
        snprintf(rid, sizeof rid, "review:%s", cases[i]);
        in = input(f, &a, rid);
        in.source = SURVEIL_SOURCE_CLINICIAN;
        in.pledge = &got;
        in.pledge_case = cases[i];
        assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_OK);
        assert_int_equal(r.reward, i == 0 ? 10 : 0);
        /* Fed again (recovery after a crash): once only. */
        assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_ERR_CONFLICT);
        assert_int_equal(share_pledge_get(f->sh, cases[i], &got, &found, &err), CORE_OK);
        assert_false(found); /* gone with the count */
    }
    assert_int_equal(queued(f), q0 + 1); /* the capped one queued no reward */
    assert_true(count_of(f, "US-CA", "fungal", week) == 3);
    assert_int_equal(table_count(f, "SELECT count(*) FROM surveil_tags"), 3);
    assert_int_equal(table_count(f, "SELECT count(*) FROM share_vault_inbox WHERE owner = 1"), 2);
    /* The person's next read merges the inbox. */
    assert_int_equal(share_confirmation_get(f->sh, 1, dk, "c1", f->now, &cf, &err), CORE_OK);
    assert_int_equal(cf.state, SHARE_CONFIRM_COUNTED);
    assert_int_equal(cf.reward, 10);
    assert_int_equal(table_count(f, "SELECT count(*) FROM share_vault_inbox"), 0);
    assert_int_equal(share_confirmation_get(f->sh, 1, dk, "c2", f->now, &cf, &err), CORE_OK);
    assert_int_equal(cf.state, SHARE_CONFIRM_COUNTED);
    assert_true(cf.capped);
    /* Withdrawing the consent takes back the share and both confirmations. */
    share_withdrawal wd;
    assert_int_equal(share_withdraw(f->sh, 1, dk, g, f->now, &wd, &err), CORE_OK);
    assert_int_equal(wd.withdrawn, 3);
    assert_true(count_of(f, "US-CA", "fungal", week) == 0);
    assert_int_equal(table_count(f, "SELECT count(*) FROM surveil_tags"), 0);
    assert_int_equal(share_confirmation_get(f->sh, 1, dk, "c1", f->now, &cf, &err), CORE_OK);
    assert_int_equal(cf.state, SHARE_CONFIRM_WITHDRAWN);

    /* A case ended unanswered: its reservation goes, the photo is free. */
    uint8_t g2[32];
    grant(f, &a, 1u << LEDGER_CAT_SCREENING, LEDGER_PURPOSE_SURVEILLANCE, f->now + 30 * DAY, g2);
    revoke(f, &a, g);
    const uint64_t later = 0x0f0f0f0f0f0f0f0fULL;
    case_row(f, "c3");
    who.phash = later;
    assert_int_equal(share_pledge_put(f->sh, "c3", &p, &who, f->now + DAY, &kept, &cf, &err), CORE_OK);
    assert_int_equal(cf.state, SHARE_CONFIRM_PENDING);
    assert_int_equal(share_pledge_drop(f->sh, "c3", &err), CORE_OK);
    in = vaulted(f, &a, "r4", 1, dk, later);
    in.now = in.created = f->now + DAY;
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_OK);
    assert_int_equal(share_confirmation_get(f->sh, 1, dk, "c3", f->now + DAY, &cf, &err), CORE_OK);
    assert_int_equal(cf.state, SHARE_CONFIRM_NONE);
    /* Another data key opens no box and finds nothing. */
    uint8_t other[32];
    cs_crypto_random(other, 32);
    assert_int_equal(share_confirmation_get(f->sh, 1, other, "c1", f->now, &cf, &err), CORE_ERR_CRYPTO);
}

/* A vault written before confirmed cases joined it (version 1: 107-byte
 * entries, its own associated data) is read as it was, and written back in
 * version 2 at the next change. */
static void a_version_1_vault_is_read(void **state) {
    fixture *f = *state;
    open_share(f, 1.0, 100);
    user_row(f, 1);
    uint8_t dk[32], e[107] = {0};
    cs_crypto_random(dk, 32);
    key a = consenting(f, NULL);
    const uint64_t photo = 0x8f3a5c7e19d2b460ULL;
    cs_crypto_random(e, 16); /* tag */
    for (int i = 0; i < 8; i++) e[48 + i] = (uint8_t)(photo >> (8 * i));
    e[56] = 10;                                  /* reward */
    int32_t day = (int32_t)(f->now / 86400) - 3; /* not today: no cap */
    for (int i = 0; i < 4; i++) e[64 + i] = (uint8_t)((uint32_t)day >> (8 * i));
    e[68] = 1u | 4u; /* photo hash known, tagged */
    memcpy(e + 75, "US-CA", 5);
    memcpy(e + 83, "fungal", 6);
    uint8_t *sealed = NULL;
    size_t sl = 0;
    core_error err = {0};
    assert_int_equal(cs_crypto_seal(dk, "share-vault:1", 13, e, sizeof e, &sealed, &sl, &err), CORE_OK);
    sqlite3 *db = store_acquire(f->st);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO share_vaults VALUES (1, ?1)", -1, &q, NULL), SQLITE_OK);
    sqlite3_bind_blob(q, 1, sealed, (int)sl, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);
    store_release(f->st, db);
    free(sealed);
    share_receipt r;
    share_contribution_input in = vaulted(f, &a, "r1", 1, dk, photo ^ 0x3);
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_ERR_CONFLICT);
    assert_string_equal(err.field, "photo");
    in = vaulted(f, &a, "r2", 1, dk, ~photo);
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_OK);
    /* Rewritten in version 2, with both entries. */
    in = vaulted(f, &a, "r3", 1, dk, photo);
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_ERR_CONFLICT);
    in = vaulted(f, &a, "r4", 1, dk, ~photo ^ 0x10);
    assert_int_equal(share_contribute(f->sh, &in, &r, &err), CORE_ERR_CONFLICT);
    assert_string_equal(err.field, "photo");
    db = store_acquire(f->st);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT sealed FROM share_vaults WHERE owner = 1", -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    uint8_t *pt = NULL;
    size_t pl = 0;
    const uint8_t *blob = sqlite3_column_blob(q, 0);
    size_t bl = (size_t)sqlite3_column_bytes(q, 0);
    assert_int_equal(cs_crypto_open(dk, "share-vault:1", 13, blob, bl, &pt, &pl, NULL), CORE_ERR_CRYPTO);
    assert_int_equal(cs_crypto_open(dk, "share-vault:2:1", 15, blob, bl, &pt, &pl, NULL), CORE_OK);
    assert_int_equal(pl, 2 * 123);
    free(pt);
    sqlite3_finalize(q);
    store_release(f->st, db);
}

static void options_are_checked(void **state) {
    fixture *f = *state;
    core_error err = {0};
    share *s = NULL;
    share_options o = {.st = f->st,
                       .led = f->led,
                       .node_sk = f->node.sk,
                       .admin_sk = f->admin.sk,
                       .k = 11,
                       .budget = 1,
                       .seal_delay = DAY,
                       .reward_batch = 0};
    assert_int_equal(share_open(&o, &s, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "reward_batch");
    assert_null(s);
    o.reward_batch = 1;
    o.led = NULL;
    assert_int_equal(share_open(&o, &s, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "led");
    o.led = f->led;
    o.photo_distance = 33;
    assert_int_equal(share_open(&o, &s, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "photo_distance");
    o.photo_distance = 10;
    o.daily_cap = -1;
    assert_int_equal(share_open(&o, &s, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "daily_cap");
    share_close(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(the_consent_is_chosen, setup, teardown),
        cmocka_unit_test_setup_teardown(an_organisation_consent_is_not_the_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(a_contribution_is_counted_and_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(a_full_batch_is_paid, setup, teardown),
        cmocka_unit_test_setup_teardown(a_reward_revoked_before_its_batch_is_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(a_repeated_release_is_the_same_and_free, setup, teardown),
        cmocka_unit_test_setup_teardown(an_exhausted_budget_refuses_and_logs_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(the_analysts_are_registered_once, setup, teardown),
        cmocka_unit_test_setup_teardown(questions_make_queries, setup, teardown),
        cmocka_unit_test_setup_teardown(series_are_detected_on_exact_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(alerts_are_rescanned_only_when_sealed_data_change, setup, teardown),
        cmocka_unit_test_setup_teardown(options_are_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(a_clinician_answer_is_counted_as_clinician_confirmed, setup, teardown),
        cmocka_unit_test_setup_teardown(a_release_by_source_shows_each_source, setup, teardown),
        cmocka_unit_test_setup_teardown(a_pledge_keeps_only_what_a_consent_wants, setup, teardown),
        cmocka_unit_test_setup_teardown(the_same_photo_earns_once, setup, teardown),
        cmocka_unit_test_setup_teardown(the_daily_cap_applies, setup, teardown),
        cmocka_unit_test_setup_teardown(a_withdrawal_takes_back_open_weeks_only, setup, teardown),
        cmocka_unit_test_setup_teardown(a_confirmed_case_goes_through_the_vault, setup, teardown),
        cmocka_unit_test_setup_teardown(a_version_1_vault_is_read, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
