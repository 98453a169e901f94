/* market (issue 14): the ledger's data-request transaction kinds on a real
 * ledger (credit, market_open / pay / close: every rule, the supply
 * invariant, replay by verify), their encoding, and the pure matching and
 * row-building functions the person's preview and acceptance use. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anon/anon.h"
#include "crypto/crypto.h"
#include "ledger/ledger.h"
#include "market/market.h"
#include "store/store.h"

static const char *const CODES[] = {"fungal", "eczema", "melanoma"};
#define CODES_FOR_MODULE CODES

typedef struct {
    uint8_t pk[LEDGER_KEY], sk[LEDGER_SECRET];
    uint64_t nonce;
} key;

typedef struct {
    char dir[256], path[300];
    key node, admin, org, other_org, p1, p2;
    ledger *l;
} fixture;

static void keygen(key *k) {
    ledger_keypair(k->pk, k->sk);
    k->nonce = 0;
}

static core_status send(fixture *f, key *k, ledger_tx *tx, ledger_receipt *r) {
    uint8_t buf[LEDGER_TX_MAX];
    tx->nonce = ++k->nonce;
    size_t len = ledger_tx_sign(tx, k->sk, buf, sizeof buf);
    assert_true(len > 0);
    ledger_receipt tmp;
    return ledger_submit(f->l, buf, len, r ? r : &tmp, NULL);
}

static core_status node_send(fixture *f, ledger_tx *tx, ledger_receipt *r) {
    ledger_receipt tmp;
    return ledger_sign_submit(f->l, tx, f->node.sk, r ? r : &tmp, NULL);
}

static int64_t balance(fixture *f, const key *k) {
    ledger_account a = {0};
    core_status rc = ledger_get_account(f->l, k->pk, &a, NULL);
    assert_true(rc == CORE_OK || rc == CORE_ERR_NOT_FOUND);
    return a.balance;
}

static void register_org(fixture *f, key *org, const char *name) {
    ledger_tx tx = {.kind = LEDGER_TX_REGISTER_ORG};
    memcpy(tx.u.org.org, org->pk, 32);
    snprintf(tx.u.org.name, sizeof tx.u.org.name, "%s", name);
    assert_int_equal(send(f, &f->admin, &tx, NULL), CORE_OK);
}

static void register_wallet(fixture *f, key *k) {
    ledger_tx tx = {.kind = LEDGER_TX_REGISTER_WALLET};
    assert_int_equal(send(f, k, &tx, NULL), CORE_OK);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    testutil_ledger_open(f->dir, f->node.pk, f->node.sk, f->admin.pk, f->admin.sk, NULL, &f->l);
    snprintf(f->path, sizeof f->path, "%s/ledger.db", f->dir);
    keygen(&f->org);
    keygen(&f->other_org);
    keygen(&f->p1);
    keygen(&f->p2);
    f->admin.nonce = 1; /* genesis */
    register_org(f, &f->org, "Research Institute");
    register_org(f, &f->other_org, "Other Agency");
    register_wallet(f, &f->p1);
    register_wallet(f, &f->p2);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    testutil_ledger_close(f->dir, NULL, f->l);
    free(f);
    return 0;
}

static core_status credit(fixture *f, const key *org, uint64_t amount, const char *ref) {
    ledger_tx tx = {.kind = LEDGER_TX_CREDIT};
    memcpy(tx.u.credit.org, org->pk, 32);
    tx.u.credit.amount = amount;
    snprintf(tx.u.credit.reference, sizeof tx.u.credit.reference, "%s", ref);
    return node_send(f, &tx, NULL);
}

static core_status open_request(fixture *f, const key *org, uint8_t seed, uint64_t price, uint32_t max,
                                uint8_t txid[32]) {
    ledger_tx tx = {.kind = LEDGER_TX_MARKET_OPEN};
    memcpy(tx.u.market_open.org, org->pk, 32);
    memset(tx.u.market_open.terms, seed, 32);
    tx.u.market_open.price = price;
    tx.u.market_open.max_participants = max;
    tx.u.market_open.closes = (uint64_t)core_now() + 86400;
    ledger_receipt r;
    core_status rc = node_send(f, &tx, &r);
    if (!rc) memcpy(txid, r.txid, 32);
    return rc;
}

static void grant_to(fixture *f, key *who, const key *org, uint8_t purpose, uint8_t out[32]) {
    ledger_tx tx = {.kind = LEDGER_TX_GRANT};
    tx.u.grant.scope = 1u << LEDGER_CAT_CONDITIONS;
    tx.u.grant.purpose = purpose;
    memcpy(tx.u.grant.grantee, org->pk, 32);
    tx.u.grant.expires = (uint64_t)core_now() + 86400;
    ledger_receipt r;
    assert_int_equal(send(f, who, &tx, &r), CORE_OK);
    memcpy(out, r.txid, 32);
}

static core_status pay(fixture *f, const uint8_t req[32], const uint8_t grant[32]) {
    ledger_tx tx = {.kind = LEDGER_TX_MARKET_PAY};
    memcpy(tx.u.market_pay.request, req, 32);
    memcpy(tx.u.market_pay.grant, grant, 32);
    return node_send(f, &tx, NULL);
}

static core_status close_request(fixture *f, const uint8_t req[32]) {
    ledger_tx tx = {.kind = LEDGER_TX_MARKET_CLOSE};
    memcpy(tx.u.market_close.request, req, 32);
    return node_send(f, &tx, NULL);
}

static void assert_verifies(fixture *f) {
    ledger_verify_report rep;
    core_error err = {0};
    if (ledger_verify_file(f->path, 1, &rep, &err)) fail_msg("verify: %s (%s)", err.message, err.field);
}

/* ---- ledger rules ---- */

static void test_credit_rules(void **state) {
    fixture *f = *state;
    ledger_totals t0, t1;
    assert_int_equal(ledger_get_totals(f->l, &t0, NULL), CORE_OK);
    /* Only a node key; only a registered organisation. */
    ledger_tx tx = {.kind = LEDGER_TX_CREDIT};
    memcpy(tx.u.credit.org, f->org.pk, 32);
    tx.u.credit.amount = 5;
    strcpy(tx.u.credit.reference, "INV-1");
    assert_int_equal(send(f, &f->admin, &tx, NULL), CORE_ERR_FORBIDDEN);
    assert_int_equal(credit(f, &f->p1, 5, "INV-1"), CORE_ERR_NOT_FOUND);
    assert_int_equal(credit(f, &f->org, 500, "INV-2026-0001"), CORE_OK);
    assert_int_equal(balance(f, &f->org), 500);
    assert_int_equal(ledger_get_totals(f->l, &t1, NULL), CORE_OK);
    assert_int_equal(t1.minted, t0.minted + 500); /* a mint, counted in the supply */
    assert_verifies(f);
}

static void test_open_pay_close(void **state) {
    fixture *f = *state;
    assert_int_equal(credit(f, &f->org, 100, "INV-7"), CORE_OK);
    uint8_t req[32], req2[32];
    /* More than the organisation holds: refused, nothing moves. */
    assert_int_equal(open_request(f, &f->org, 1, 30, 4, req), CORE_ERR_INVALID);
    assert_int_equal(balance(f, &f->org), 100);
    assert_int_equal(open_request(f, &f->org, 1, 30, 3, req), CORE_OK);
    assert_int_equal(balance(f, &f->org), 10);
    /* The terms are used once. */
    assert_int_equal(open_request(f, &f->org, 1, 1, 1, req2), CORE_ERR_CONFLICT);
    ledger_totals t;
    assert_int_equal(ledger_get_totals(f->l, &t, NULL), CORE_OK);
    assert_int_equal(t.escrowed, 90);
    ledger_market m;
    assert_int_equal(ledger_get_market(f->l, req, &m, NULL), CORE_OK);
    assert_int_equal(m.state, LEDGER_MARKET_OPEN);
    assert_int_equal(m.remaining, 90);

    uint8_t g1[32], g1b[32], g2[32], g_other[32], g_train[32];
    grant_to(f, &f->p1, &f->org, LEDGER_PURPOSE_RESEARCH, g1);
    grant_to(f, &f->p1, &f->org, LEDGER_PURPOSE_SURVEILLANCE, g1b);
    grant_to(f, &f->p2, &f->other_org, LEDGER_PURPOSE_RESEARCH, g_other);
    grant_to(f, &f->p2, &f->org, LEDGER_PURPOSE_TRAINING, g_train);
    /* A consent to another organisation, or for another purpose, pays nothing. */
    assert_int_equal(pay(f, req, g_other), CORE_ERR_FORBIDDEN);
    assert_int_equal(pay(f, req, g_train), CORE_ERR_FORBIDDEN);
    /* Only a node pays. */
    ledger_tx tx = {.kind = LEDGER_TX_MARKET_PAY};
    memcpy(tx.u.market_pay.request, req, 32);
    memcpy(tx.u.market_pay.grant, g1, 32);
    assert_int_equal(send(f, &f->admin, &tx, NULL), CORE_ERR_FORBIDDEN);
    assert_int_equal(pay(f, req, g1), CORE_OK);
    assert_int_equal(balance(f, &f->p1), 30);
    /* One payment per wallet per request, whichever of its consents is named. */
    assert_int_equal(pay(f, req, g1), CORE_ERR_CONFLICT);
    assert_int_equal(pay(f, req, g1b), CORE_ERR_CONFLICT);
    assert_int_equal(balance(f, &f->p1), 30);
    bool paid = false;
    assert_int_equal(ledger_market_paid(f->l, req, f->p1.pk, &paid, NULL), CORE_OK);
    assert_true(paid);
    assert_int_equal(ledger_market_paid(f->l, req, f->p2.pk, &paid, NULL), CORE_OK);
    assert_false(paid);
    /* A revoked consent pays nothing. */
    grant_to(f, &f->p2, &f->org, LEDGER_PURPOSE_RESEARCH, g2);
    ledger_tx rv = {.kind = LEDGER_TX_REVOKE};
    memcpy(rv.u.revoke.grant, g2, 32);
    assert_int_equal(send(f, &f->p2, &rv, NULL), CORE_OK);
    assert_int_equal(pay(f, req, g2), CORE_ERR_FORBIDDEN);
    /* Close: the remainder (two places) goes back to the organisation, once. */
    assert_int_equal(close_request(f, req), CORE_OK);
    assert_int_equal(balance(f, &f->org), 70);
    assert_int_equal(close_request(f, req), CORE_ERR_CONFLICT);
    assert_int_equal(ledger_get_market(f->l, req, &m, NULL), CORE_OK);
    assert_int_equal(m.state, LEDGER_MARKET_CLOSED);
    assert_int_equal(m.remaining, 0);
    assert_int_equal(m.paid, 1);
    uint8_t g2b[32];
    grant_to(f, &f->p2, &f->org, LEDGER_PURPOSE_RESEARCH, g2b);
    assert_int_equal(pay(f, req, g2b), CORE_ERR_CONFLICT); /* closed */
    assert_int_equal(ledger_get_totals(f->l, &t, NULL), CORE_OK);
    assert_int_equal(t.escrowed, 0);
    assert_verifies(f);
}

static void test_exhaustion_closes(void **state) {
    fixture *f = *state;
    assert_int_equal(credit(f, &f->org, 20, "INV-8"), CORE_OK);
    uint8_t req[32], g1[32], g2[32];
    assert_int_equal(open_request(f, &f->org, 2, 10, 1, req), CORE_OK);
    grant_to(f, &f->p1, &f->org, LEDGER_PURPOSE_RESEARCH, g1);
    grant_to(f, &f->p2, &f->org, LEDGER_PURPOSE_RESEARCH, g2);
    assert_int_equal(pay(f, req, g1), CORE_OK);
    ledger_market m;
    assert_int_equal(ledger_get_market(f->l, req, &m, NULL), CORE_OK);
    assert_int_equal(m.state, LEDGER_MARKET_EXHAUSTED); /* escrow empty: closed by the ledger */
    assert_int_equal(m.remaining, 0);
    assert_int_equal(pay(f, req, g2), CORE_ERR_CONFLICT);
    assert_int_equal(close_request(f, req), CORE_ERR_CONFLICT); /* nothing to return */
    assert_int_equal(balance(f, &f->org), 10);
    assert_int_equal(balance(f, &f->p2), 0);
    assert_verifies(f);
}

/* ---- encoding ---- */

static void test_codec_kinds(void **state) {
    (void)state;
    key k;
    keygen(&k);
    uint8_t buf[LEDGER_TX_MAX];
    ledger_tx tx = {.kind = LEDGER_TX_CREDIT, .nonce = 3};
    memset(tx.u.credit.org, 9, 32);
    tx.u.credit.amount = 42;
    strcpy(tx.u.credit.reference, "PO 77");
    size_t n = ledger_tx_sign(&tx, k.sk, buf, sizeof buf);
    assert_true(n > 0);
    ledger_tx back;
    assert_int_equal(ledger_tx_decode(buf, n, &back, NULL), CORE_OK);
    assert_string_equal(back.u.credit.reference, "PO 77");
    assert_int_equal(back.u.credit.amount, 42);
    /* A reference with a control byte, or none, or a zero amount: refused both ways. */
    strcpy(tx.u.credit.reference, "Jane\nDoe");
    assert_int_equal(ledger_tx_sign(&tx, k.sk, buf, sizeof buf), 0);
    tx.u.credit.reference[0] = 0;
    assert_int_equal(ledger_tx_sign(&tx, k.sk, buf, sizeof buf), 0);
    strcpy(tx.u.credit.reference, "ok");
    tx.u.credit.amount = 0;
    assert_int_equal(ledger_tx_sign(&tx, k.sk, buf, sizeof buf), 0);
    ledger_tx o = {.kind = LEDGER_TX_MARKET_OPEN, .nonce = 1};
    memset(o.u.market_open.org, 1, 32);
    memset(o.u.market_open.terms, 2, 32);
    o.u.market_open.price = 5;
    o.u.market_open.max_participants = 0;
    assert_int_equal(ledger_tx_sign(&o, k.sk, buf, sizeof buf), 0);
    o.u.market_open.max_participants = LEDGER_MARKET_MAX_PARTICIPANTS + 1;
    assert_int_equal(ledger_tx_sign(&o, k.sk, buf, sizeof buf), 0);
    o.u.market_open.max_participants = 7;
    o.u.market_open.closes = 2000000000;
    n = ledger_tx_sign(&o, k.sk, buf, sizeof buf);
    assert_true(n > 0);
    assert_int_equal(ledger_tx_decode(buf, n, &back, NULL), CORE_OK);
    assert_int_equal(back.u.market_open.max_participants, 7);
    assert_int_equal(back.u.market_open.closes, 2000000000);
    json_t *j = ledger_tx_to_json(&back);
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "market_open");
    assert_int_equal(json_integer_value(json_object_get(j, "price")), 5);
    json_decref(j);
}

/* ---- matching and rows ---- */

static void test_iso_week_and_bands(void **state) {
    (void)state;
    char w[9], b[8];
    /* Year boundaries (ISO 8601): checked against Python's date.isocalendar(). */
    const char *cases[][2] = {{"2026-01-01", "2026-W01"}, {"2021-01-03", "2020-W53"}, {"2024-12-30", "2025-W01"},
                              {"2026-02-10", "2026-W07"}, {"2020-12-31", "2020-W53"}, {"2027-01-03", "2026-W53"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_true(market_iso_week(cases[i][0], w));
        assert_string_equal(w, cases[i][1]);
    }
    assert_false(market_iso_week("2026-13-01", w));
    assert_false(market_iso_week("yesterday", w));
    market_age_band(36, b);
    assert_string_equal(b, "35-39");
    market_age_band(0, b);
    assert_string_equal(b, "0-4");
    market_age_band(104, b);
    assert_string_equal(b, "100+");
}

static void test_matching_and_rows(void **state) {
    (void)state;
    json_t *profile = json_pack("{s:s, s:i, s:s, s:s}", "display_name", "Jane Q Private", "birth_year", 1990, "sex",
                                "female", "region", "NZ-AUK");
    json_t *entries =
        json_pack("[{s:s, s:s, s:s, s:s, s:s}, {s:s, s:s, s:s, s:s}, {s:s, s:s, s:s}]", "kind", "condition", "title",
                  "Itchy secret words", "details", "my neighbour Bob", "onset", "2026-02-10", "code", "fungal", "kind",
                  "symptom", "title", "rash", "onset", "2026-01-01", "code", "not_in_table", "kind", "condition",
                  "title", "asthma", "onset", "2019-05-05");
    market_criteria c = {.categories = (1u << LEDGER_CAT_CONDITIONS) | (1u << LEDGER_CAT_DEMOGRAPHICS)};
    assert_true(market_matches(&c, profile, entries, 2026)); /* no criteria: everyone */
    c.n_conditions = 1;
    strcpy(c.conditions[0], "fungal");
    assert_true(market_matches(&c, profile, entries, 2026));
    strcpy(c.conditions[0], "eczema");
    assert_false(market_matches(&c, profile, entries, 2026));
    strcpy(c.conditions[0], "fungal");
    c.n_countries = 1;
    strcpy(c.countries[0], "US");
    assert_false(market_matches(&c, profile, entries, 2026));
    strcpy(c.countries[0], "NZ");
    assert_true(market_matches(&c, profile, entries, 2026));
    c.n_age_bands = 1;
    strcpy(c.age_bands[0], "30-34");
    assert_false(market_matches(&c, profile, entries, 2026)); /* 36 */
    strcpy(c.age_bands[0], "35-39");
    assert_true(market_matches(&c, profile, entries, 2026));
    /* Without a birth year an age criterion cannot be met. */
    json_t *nobirth = json_deep_copy(profile);
    json_object_set_new(nobirth, "birth_year", json_null());
    assert_false(market_matches(&c, nobirth, entries, 2026));

    json_t *rows = market_rows_build(&c, profile, entries, 2026, CODES, 3);
    assert_non_null(rows);
    /* Only the coded condition of the table leaves, generalised. */
    json_t *want = json_pack("[{s:s, s:s, s:s, s:s, s:s, s:s}]", "category", "conditions", "code", "fungal", "week",
                             "2026-W07", "age_band", "35-39", "sex", "female", "region", "NZ-AUK");
    assert_true(json_equal(rows, want));
    char *text = json_dumps(rows, 0);
    const char *secrets[] = {"Itchy", "Bob", "1990", "2026-02-10", "Jane", "asthma", "rash", "not_in_table"};
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) assert_null(strstr(text, secrets[i]));
    free(text);
    json_decref(rows);
    /* Demographics alone: one row, nothing else. */
    market_criteria d = {.categories = 1u << LEDGER_CAT_DEMOGRAPHICS};
    rows = market_rows_build(&d, profile, entries, 2026, CODES, 3);
    json_decref(want);
    want = json_pack("[{s:s, s:s, s:s, s:s}]", "category", "demographics", "age_band", "35-39", "sex", "female",
                     "region", "NZ-AUK");
    assert_true(json_equal(rows, want));
    json_decref(rows);
    /* Conditions without demographics: no age, sex or region on the row. */
    market_criteria k = {.categories = 1u << LEDGER_CAT_CONDITIONS};
    rows = market_rows_build(&k, profile, entries, 2026, CODES, 3);
    json_decref(want);
    want = json_pack("[{s:s, s:s, s:s}]", "category", "conditions", "code", "fungal", "week", "2026-W07");
    assert_true(json_equal(rows, want));
    json_decref(rows);
    json_decref(want);
    json_decref(nobirth);
    json_decref(profile);
    json_decref(entries);
}

/* ---- the module: closing time (clock injected) ---- */

static int64_t fake_now;
static int64_t clock_fn(void) { return fake_now; }

static void test_sweep_closes_at_closing_time(void **state) {
    fixture *f = *state;
    char dbpath[320];
    snprintf(dbpath, sizeof dbpath, "%s/caresync.db", f->dir);
    store *st = NULL;
    core_error err = {0};
    assert_int_equal(store_open(dbpath, 2, &st, &err), CORE_OK);
    market *m = NULL;
    market_options o = {.st = st,
                        .led = f->l,
                        .conditions = CODES_FOR_MODULE,
                        .n_conditions = 3,
                        .node_sk = f->node.sk,
                        .daily_cap = 100,
                        .now = clock_fn};
    fake_now = core_now();
    assert_int_equal(market_open(&o, &m, &err), CORE_OK);
    assert_int_equal(credit(f, &f->org, 100, "INV-9"), CORE_OK);
    json_t *in =
        json_pack("{s:s, s:s, s:s, s:[s], s:i, s:i, s:s}", "title", "t", "purpose_text", "p", "purpose", "research",
                  "categories", "demographics", "price", 5, "max_participants", 4, "closes", "2099-01-01T00:00:00Z");
    json_t *out = NULL;
    assert_int_equal(market_request_create(m, f->org.pk, in, &out, &err), CORE_OK);
    char id[MARKET_ID_TEXT];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(out, "id")));
    json_decref(out);
    /* Another organisation cannot see it; a second approval is a conflict. */
    assert_int_equal(market_request_get(m, f->other_org.pk, id, &out, &err), CORE_ERR_NOT_FOUND);
    assert_int_equal(market_request_approve(m, id, &out, &err), CORE_OK);
    assert_string_equal(json_string_value(json_object_get(out, "state")), "open");
    json_decref(out);
    assert_int_equal(market_request_approve(m, id, &out, &err), CORE_ERR_CONFLICT);
    assert_int_equal(balance(f, &f->org), 80);
    int closed = -1;
    assert_int_equal(market_sweep(m, &closed, &err), CORE_OK);
    assert_int_equal(closed, 0); /* not yet */
    struct tm tm = {.tm_year = 199, .tm_mon = 0, .tm_mday = 1};
    fake_now = (int64_t)timegm(&tm); /* 2099-01-01T00:00:00Z: closing time reached */
    assert_int_equal(market_sweep(m, &closed, &err), CORE_OK);
    assert_int_equal(closed, 1);
    assert_int_equal(balance(f, &f->org), 100); /* the whole escrow came back */
    assert_int_equal(market_request_get(m, NULL, id, &out, &err), CORE_OK);
    assert_string_equal(json_string_value(json_object_get(out, "state")), "closed");
    json_decref(out);
    /* Recovery on a clean state has nothing to do. */
    int resolved = -1;
    assert_int_equal(market_recover(m, &resolved, &err), CORE_OK);
    assert_int_equal(resolved, 0);
    json_t *rows = NULL;
    assert_int_equal(market_rows_for_request(m, id, &rows, &err), CORE_OK);
    assert_int_equal(json_array_size(rows), 0);
    json_decref(rows);
    assert_int_equal(market_rows_for_request(m, "0000", &rows, &err), CORE_ERR_NOT_FOUND);
    json_decref(in);
    market_close(m);
    store_close(st);
    assert_verifies(f);
}

/* ---- delivery (deliver.c) ---- */

static void put_row(store *st, const char *id, const char *row, const uint8_t *contributor) {
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(db, "INSERT INTO market_rows (tag, request_id, row, contributor) VALUES (?1, ?2, ?3, ?4)",
                           -1, &q, NULL),
        SQLITE_OK);
    uint8_t tag[16];
    cs_crypto_random(tag, sizeof tag);
    sqlite3_bind_blob(q, 1, tag, 16, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 3, row, -1, SQLITE_TRANSIENT);
    if (contributor) sqlite3_bind_blob(q, 4, contributor, 16, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);
    store_release(st, db);
}

/* k counts people: one acceptance's rows share a contributor id; rows
 * stored before contributor ids existed count as one person together (never
 * more people than there are). The release carries the CSV's hash; the same
 * bytes again get the same receipt; another organisation gets NOT_FOUND. */
static void test_deliver_counts_people(void **state) {
    fixture *f = *state;
    char dbpath[320];
    snprintf(dbpath, sizeof dbpath, "%s/caresync.db", f->dir);
    store *st = NULL;
    core_error err = {0};
    assert_int_equal(store_open(dbpath, 2, &st, &err), CORE_OK);
    market *m = NULL;
    market_options o = {.st = st,
                        .led = f->l,
                        .conditions = CODES_FOR_MODULE,
                        .n_conditions = 3,
                        .node_sk = f->node.sk,
                        .daily_cap = 100};
    assert_int_equal(market_open(&o, &m, &err), CORE_OK);
    assert_int_equal(credit(f, &f->org, 100, "INV-D"), CORE_OK);
    json_t *in =
        json_pack("{s:s, s:s, s:s, s:[s], s:i, s:i, s:s}", "title", "t", "purpose_text", "p", "purpose", "research",
                  "categories", "conditions", "price", 5, "max_participants", 4, "closes", "2099-01-01T00:00:00Z");
    json_t *out = NULL;
    assert_int_equal(market_request_create(m, f->org.pk, in, &out, &err), CORE_OK);
    char id[MARKET_ID_TEXT];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(out, "id")));
    json_decref(out);
    json_decref(in);
    const char *row = "{\"age_band\":\"40-44\",\"category\":\"conditions\",\"code\":\"fungal\",\"region\":\"NZ-AUK\","
                      "\"sex\":\"female\",\"week\":\"2026-W07\"}";
    uint8_t a[16], b[16];
    memset(a, 'a', sizeof a);
    memset(b, 'b', sizeof b);
    put_row(st, id, row, a);
    put_row(st, id, row, a); /* A's second row: the same person */
    put_row(st, id, row, b);
    put_row(st, id, row, NULL); /* two rows from before contributor ids */
    put_row(st, id, row, NULL);
    anon_delivery *d = NULL;
    market_delivery_receipt r1, r2;
    /* A, B and the old rows: 3 people. Counting rows (5) or old rows one
     * each (4) would deliver at k = 4. */
    assert_int_equal(market_deliver(m, f->org.pk, id, 4, &d, &r1, &err), CORE_OK);
    assert_int_equal(anon_delivery_stats(d)->rows_in, 5);
    assert_int_equal(anon_delivery_stats(d)->contributors_in, 3);
    assert_int_equal(anon_delivery_stats(d)->held_back, 5);
    assert_false(r1.repeat);
    anon_delivery_free(d);
    /* At k = 3 all five are delivered as shared; the release holds the CSV's hash. */
    assert_int_equal(market_deliver(m, f->org.pk, id, 3, &d, &r1, &err), CORE_OK);
    assert_int_equal(anon_delivery_stats(d)->delivered, 5);
    assert_string_equal(anon_delivery_row(d, 0)->region, "NZ-AUK");
    char *csv = NULL;
    size_t len = 0;
    uint8_t h[32];
    assert_int_equal(anon_delivery_csv(d, &csv, &len, &err), CORE_OK);
    cs_crypto_sha256(h, csv, len);
    assert_memory_equal(h, r1.sha256, 32);
    uint8_t *buf = NULL;
    size_t blen = 0;
    uint64_t seq, height;
    assert_int_equal(ledger_get_tx(f->l, r1.txid, &buf, &blen, &seq, &height, &err), CORE_OK);
    ledger_tx tx;
    assert_int_equal(ledger_tx_decode(buf, blen, &tx, &err), CORE_OK);
    assert_int_equal(tx.kind, LEDGER_TX_RELEASE);
    assert_memory_equal(tx.u.release.query, h, 32);
    assert_memory_equal(tx.u.release.org, f->org.pk, 32);
    assert_int_equal(tx.u.release.k_min, 3);
    assert_int_equal(tx.u.release.cells, 5);
    free(buf);
    free(csv);
    anon_delivery_free(d);
    /* Again: the same bytes, the same receipt. */
    assert_int_equal(market_deliver(m, f->org.pk, id, 3, &d, &r2, &err), CORE_OK);
    assert_true(r2.repeat);
    assert_memory_equal(r2.txid, r1.txid, 32);
    anon_delivery_free(d);
    /* Another organisation's request, an unknown one, a bad stored row. */
    assert_int_equal(market_deliver(m, f->other_org.pk, id, 3, &d, &r2, &err), CORE_ERR_NOT_FOUND);
    assert_null(d);
    assert_int_equal(market_deliver(m, f->org.pk, "nope", 3, &d, &r2, &err), CORE_ERR_NOT_FOUND);
    put_row(st, id, "{\"category\":\"conditions\",\"code\":\"x y\",\"week\":\"2026-W07\"}", b);
    assert_int_equal(market_deliver(m, f->org.pk, id, 3, &d, &r2, &err), CORE_ERR_STORAGE);
    assert_null(d);
    market_close(m);
    store_close(st);
    assert_verifies(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_credit_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_pay_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exhaustion_closes, setup, teardown),
        cmocka_unit_test(test_codec_kinds),
        cmocka_unit_test(test_iso_week_and_bands),
        cmocka_unit_test(test_matching_and_rows),
        cmocka_unit_test_setup_teardown(test_sweep_closes_at_closing_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deliver_counts_people, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
