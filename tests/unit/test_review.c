/* review: organisations' review offers on a real store (caresync.db with
 * its migrations), a real ledger with an organisation registered by the
 * admin key, and Debian's iso-codes. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "crypto/crypto.h"
#include "ledger/ledger.h"
#include "regions/regions.h"
#include "review/review.h"
#include "store/store.h"

static const char *const table[] = {"fungal", "eczema", "acne_rosacea", "melanoma", "other"};

typedef struct {
    char dir[256];
    uint8_t node_pk[32], node_sk[64], admin_pk[32], admin_sk[64];
    uint8_t org_a[32], org_b[32], stranger[32];
    store *st;
    ledger *led;
    regions *regs;
    review *rv;
    /* what on_answered was handed (issue 13: what an answer feeds) */
    int answered;
    char answered_id[REVIEW_CASE_ID_TEXT], answered_condition[32];
    int64_t answered_at;
    uint8_t answered_jpeg[64];
    size_t answered_len;
} fixture;

static void on_answered(void *ud, const review_answered *a) {
    fixture *f = ud;
    f->answered++;
    snprintf(f->answered_id, sizeof f->answered_id, "%s", a->id);
    snprintf(f->answered_condition, sizeof f->answered_condition, "%s", a->condition ? a->condition : "(null)");
    f->answered_at = a->answered_at;
    f->answered_len = a->jpeg_len <= sizeof f->answered_jpeg ? a->jpeg_len : 0;
    memcpy(f->answered_jpeg, a->jpeg, f->answered_len);
}

static void register_org(fixture *f, const uint8_t key[32], const char *name) {
    ledger_tx tx = {.kind = LEDGER_TX_REGISTER_ORG};
    memcpy(tx.u.org.org, key, 32);
    snprintf(tx.u.org.name, sizeof tx.u.org.name, "%s", name);
    ledger_receipt r;
    core_error err = {0};
    if (ledger_sign_submit(f->led, &tx, f->admin_sk, &r, &err)) fail_msg("register org: %s", err.message);
}

/* The cases' clock: tests move it past an answer-time promise. */
static int64_t fake_clock;
static int64_t fake_now(void) { return fake_clock; }

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    testutil_ledger_open(f->dir, f->node_pk, f->node_sk, f->admin_pk, f->admin_sk, &f->st, &f->led);
    core_error err = {0};
    if (regions_load(TEST_ISO_CODES_DIR, &f->regs, &err)) return -1;
    uint8_t sk[64];
    ledger_keypair(f->org_a, sk);
    ledger_keypair(f->org_b, sk);
    ledger_keypair(f->stranger, sk);
    register_org(f, f->org_a, "Alpha Skin Clinic");
    register_org(f, f->org_b, "Beta Teledermatology");
    review_options ro = {.st = f->st,
                         .led = f->led,
                         .regs = f->regs,
                         .conditions = table,
                         .n_conditions = 5,
                         .node_sk = f->node_sk,
                         .now = fake_now,
                         .on_answered = on_answered,
                         .answered_ud = f};
    fake_clock = 1700000000;
    if (review_open(&ro, &f->rv, &err)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    review_close(f->rv);
    regions_free(f->regs);
    testutil_ledger_close(f->dir, f->st, f->led);
    free(f);
    return 0;
}

static review_offer offer(const uint8_t org[32], int64_t price, int hours, const char *conds, const char *regs) {
    review_offer o;
    memset(&o, 0, sizeof o);
    memcpy(o.org, org, 32);
    o.price = price;
    o.answer_hours = hours;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", conds);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        snprintf(o.conditions[o.n_conditions++], sizeof o.conditions[0], "%s", t);
    snprintf(buf, sizeof buf, "%s", regs);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        snprintf(o.regions[o.n_regions++], sizeof o.regions[0], "%s", t);
    return o;
}

static void expect_invalid(fixture *f, review_offer o, const char *field) {
    core_error err = {0};
    assert_int_equal(review_offer_set(f->rv, &o, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, field);
}

static size_t count_offers(fixture *f) {
    review_offer *list = NULL;
    size_t n = 0;
    core_error err = {0};
    assert_int_equal(review_offer_list(f->rv, NULL, NULL, &list, &n, &err), CORE_OK);
    free(list);
    return n;
}

static void test_refusals(void **state) {
    fixture *f = *state;
    expect_invalid(f, offer(f->org_a, 0, 48, "fungal", "NZ"), "price");
    expect_invalid(f, offer(f->org_a, 1000001, 48, "fungal", "NZ"), "price");
    expect_invalid(f, offer(f->org_a, 10, 0, "fungal", "NZ"), "answer_hours");
    expect_invalid(f, offer(f->org_a, 10, 721, "fungal", "NZ"), "answer_hours");
    expect_invalid(f, offer(f->org_a, 10, 48, "", "NZ"), "conditions");
    expect_invalid(f, offer(f->org_a, 10, 48, "psoriasis_made_up", "NZ"), "conditions");
    expect_invalid(f, offer(f->org_a, 10, 48, "fungal,fungal", "NZ"), "conditions");
    expect_invalid(f, offer(f->org_a, 10, 48, "fungal", ""), "regions");
    expect_invalid(f, offer(f->org_a, 10, 48, "fungal", "XX"), "regions");
    expect_invalid(f, offer(f->org_a, 10, 48, "fungal", "N1"), "regions");
    expect_invalid(f, offer(f->org_a, 10, 48, "fungal", "NZ,nz"), "regions");
    expect_invalid(f, offer(f->org_a, 10, 48, "fungal", "*,NZ"), "regions");
    /* An organisation the ledger does not know cannot offer review. */
    review_offer o = offer(f->stranger, 10, 48, "fungal", "NZ");
    core_error err = {0};
    assert_int_equal(review_offer_set(f->rv, &o, &err), CORE_ERR_NOT_FOUND);
    assert_string_equal(err.field, "org");
    /* Nothing refused was stored. */
    assert_int_equal(count_offers(f), 0);
    /* The bounds themselves are accepted. */
    o = offer(f->org_a, 1, 1, "fungal", "nz");
    assert_int_equal(review_offer_set(f->rv, &o, &err), CORE_OK);
    o = offer(f->org_b, 1000000, 720, "other", "*");
    assert_int_equal(review_offer_set(f->rv, &o, &err), CORE_OK);
    assert_int_equal(count_offers(f), 2);
}

static void test_set_get_replace(void **state) {
    fixture *f = *state;
    core_error err = {0};
    review_offer o = offer(f->org_a, 25, 48, "fungal,eczema", "nz,AU"), got;
    assert_int_equal(review_offer_set(f->rv, &o, &err), CORE_OK);
    assert_string_equal(o.org_name, "Alpha Skin Clinic");
    assert_int_equal(review_offer_get(f->rv, f->org_a, &got, &err), CORE_OK);
    assert_memory_equal(got.org, f->org_a, 32);
    assert_string_equal(got.org_name, "Alpha Skin Clinic");
    assert_int_equal(got.price, 25);
    assert_int_equal(got.answer_hours, 48);
    assert_int_equal(got.n_conditions, 2);
    assert_string_equal(got.conditions[0], "eczema");
    assert_string_equal(got.conditions[1], "fungal");
    assert_int_equal(got.n_regions, 2);
    assert_string_equal(got.regions[0], "AU");
    assert_string_equal(got.regions[1], "NZ");

    /* Replacing is whole: the old conditions and regions are gone. */
    o = offer(f->org_a, 30, 24, "acne_rosacea", "GB");
    assert_int_equal(review_offer_set(f->rv, &o, &err), CORE_OK);
    assert_int_equal(review_offer_get(f->rv, f->org_a, &got, &err), CORE_OK);
    assert_int_equal(got.price, 30);
    assert_int_equal(got.answer_hours, 24);
    assert_int_equal(got.n_conditions, 1);
    assert_string_equal(got.conditions[0], "acne_rosacea");
    assert_int_equal(got.n_regions, 1);
    assert_string_equal(got.regions[0], "GB");
    assert_int_equal(count_offers(f), 1);

    /* A refused replacement leaves the standing offer as it was. */
    o = offer(f->org_a, 30, 24, "acne_rosacea", "ZZ");
    assert_int_equal(review_offer_set(f->rv, &o, &err), CORE_ERR_INVALID);
    assert_int_equal(review_offer_get(f->rv, f->org_a, &got, &err), CORE_OK);
    assert_string_equal(got.regions[0], "GB");
    assert_int_equal(review_offer_get(f->rv, f->org_b, &got, &err), CORE_ERR_NOT_FOUND);
}

static void test_withdraw(void **state) {
    fixture *f = *state;
    core_error err = {0};
    review_offer o = offer(f->org_a, 25, 48, "fungal", "NZ"), got;
    assert_int_equal(review_offer_withdraw(f->rv, f->org_a, &err), CORE_ERR_NOT_FOUND);
    assert_int_equal(review_offer_set(f->rv, &o, &err), CORE_OK);
    assert_int_equal(review_offer_withdraw(f->rv, f->org_a, &err), CORE_OK);
    assert_int_equal(review_offer_get(f->rv, f->org_a, &got, &err), CORE_ERR_NOT_FOUND);
    assert_int_equal(review_offer_withdraw(f->rv, f->org_a, &err), CORE_ERR_NOT_FOUND);
    assert_int_equal(count_offers(f), 0);
    /* Its conditions and regions went with it: a fresh offer starts clean. */
    o = offer(f->org_a, 5, 12, "acne_rosacea", "AU");
    assert_int_equal(review_offer_set(f->rv, &o, &err), CORE_OK);
    assert_int_equal(review_offer_get(f->rv, f->org_a, &got, &err), CORE_OK);
    assert_int_equal(got.n_conditions, 1);
    assert_int_equal(got.n_regions, 1);
}

static void list_names(fixture *f, const char *condition, const char *country, const char *want) {
    review_offer *list = NULL;
    size_t n = 0;
    core_error err = {0};
    assert_int_equal(review_offer_list(f->rv, condition, country, &list, &n, &err), CORE_OK);
    char got[256] = "";
    for (size_t i = 0; i < n; i++) {
        if (i) strcat(got, "|");
        strcat(got, list[i].org_name);
    }
    free(list);
    assert_string_equal(got, want);
}

static void test_filters(void **state) {
    fixture *f = *state;
    core_error err = {0};
    review_offer a = offer(f->org_a, 40, 48, "fungal,eczema", "NZ,AU");
    review_offer b = offer(f->org_b, 15, 72, "fungal,melanoma", "*");
    assert_int_equal(review_offer_set(f->rv, &a, &err), CORE_OK);
    assert_int_equal(review_offer_set(f->rv, &b, &err), CORE_OK);
    /* Cheapest first. */
    list_names(f, NULL, NULL, "Beta Teledermatology|Alpha Skin Clinic");
    list_names(f, "fungal", NULL, "Beta Teledermatology|Alpha Skin Clinic");
    list_names(f, "eczema", NULL, "Alpha Skin Clinic");
    list_names(f, "melanoma", NULL, "Beta Teledermatology");
    list_names(f, "acne_rosacea", NULL, "");
    /* "*" covers every country; a country is matched in either case. */
    list_names(f, NULL, "nz", "Beta Teledermatology|Alpha Skin Clinic");
    list_names(f, NULL, "GB", "Beta Teledermatology");
    list_names(f, "eczema", "AU", "Alpha Skin Clinic");
    list_names(f, "eczema", "GB", "");
    /* Unknown filters are refused, not silently empty. */
    review_offer *list = NULL;
    size_t n = 0;
    assert_int_equal(review_offer_list(f->rv, "nope", NULL, &list, &n, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "condition");
    assert_int_equal(review_offer_list(f->rv, NULL, "XX", &list, &n, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "country");
    assert_null(list);
}

/* ledger_org_in_file (the ledger's offline lookup the admin CLI uses for --org). */
static void test_ledger_file_lookup(void **state) {
    fixture *f = *state;
    char path[300], name[LEDGER_NAME_MAX + 1] = "";
    core_error err = {0};
    snprintf(path, sizeof path, "%s/ledger.db", f->dir);
    assert_int_equal(ledger_org_in_file(path, f->org_b, name, &err), CORE_OK);
    assert_string_equal(name, "Beta Teledermatology");
    assert_int_equal(ledger_org_in_file(path, f->stranger, name, &err), CORE_ERR_NOT_FOUND);
    snprintf(path, sizeof path, "%s/absent.db", f->dir);
    assert_int_equal(ledger_org_in_file(path, f->org_a, name, &err), CORE_ERR_NOT_FOUND);
}

/* ---- cases ---- */

/* A person: a users row (the case's owner), a data key and a wallet on the
 * ledger funded by node-signed contributions (10 tokens each). */
typedef struct {
    int64_t id;
    uint8_t dk[32], pk[32], sk[64];
} person;

static void wallet_send(fixture *f, person *p, ledger_tx *tx, ledger_receipt *r) {
    core_error err = {0};
    if (ledger_sign_submit(f->led, tx, p->sk, r, &err)) fail_msg("%s: %s", ledger_tx_kind_name(tx->kind), err.message);
}

static void make_person(fixture *f, person *p, int64_t id, int contributions) {
    p->id = id;
    cs_crypto_random(p->dk, sizeof p->dk);
    ledger_keypair(p->pk, p->sk);
    sqlite3 *db = store_acquire(f->st);
    char sql[300];
    snprintf(sql, sizeof sql,
             "INSERT INTO users(id, username, role, created_at, pw_salt, pw_ops, pw_mem, pw_verifier, dk_pw, "
             "rc_salt, dk_rc) VALUES (%lld, 'p%lld', 'person', 0, x'00', 1, 1, x'00', x'00', x'00', x'00')",
             (long long)id, (long long)id);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    store_release(f->st, db);
    ledger_receipt r;
    ledger_tx reg = {.kind = LEDGER_TX_REGISTER_WALLET};
    wallet_send(f, p, &reg, &r);
    ledger_tx g = {.kind = LEDGER_TX_GRANT};
    g.u.grant.scope = 1u << LEDGER_CAT_SCREENING;
    g.u.grant.purpose = LEDGER_PURPOSE_SURVEILLANCE;
    g.u.grant.expires = 4000000000u;
    wallet_send(f, p, &g, &r);
    for (int i = 0; i < contributions; i++) {
        ledger_tx c = {.kind = LEDGER_TX_CONTRIBUTE};
        memcpy(c.u.contribute.contributor, p->pk, 32);
        memcpy(c.u.contribute.grant, r.txid, 32);
        c.u.contribute.category = LEDGER_CAT_SCREENING;
        cs_crypto_random(c.u.contribute.commitment, 32);
        c.u.contribute.reward = 10;
        ledger_receipt cr;
        core_error err = {0};
        if (ledger_sign_submit(f->led, &c, f->node_sk, &cr, &err)) fail_msg("contribute: %s", err.message);
    }
}

static int64_t balance_of(fixture *f, const uint8_t pk[32]) {
    ledger_account a = {0};
    core_status rc = ledger_get_account(f->led, pk, &a, NULL);
    return rc == CORE_ERR_NOT_FOUND ? 0 : a.balance;
}

static const uint8_t jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 4, 0xFF, 0xD9};

static review_request_in request_of(const person *p, const uint8_t org[32]) {
    review_request_in in = {.owner = p->id,
                            .data_key = p->dk,
                            .wallet_sk = p->sk,
                            .org = org,
                            .title = "Skin check: fungal (71 %)",
                            .details = "fungal: 71 %\neczema: 12 %\n",
                            .jpeg = jpeg,
                            .jpeg_len = sizeof jpeg,
                            .share = {.age_band = "30-44", .body_site = "arm"}};
    return in;
}

static int64_t count_rows(fixture *f, const char *sql) {
    sqlite3 *db = store_acquire(f->st);
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    store_release(f->st, db);
    return n;
}

static ledger_escrow_state escrow_state(fixture *f, json_t *req) {
    uint8_t txid[32];
    assert_true(cs_crypto_unhex(json_string_value(json_object_get(req, "request_txid")), txid, 32));
    ledger_escrow e;
    assert_int_equal(ledger_get_escrow(f->led, txid, &e, NULL), CORE_OK);
    return e.state;
}

static void test_case_refusals(void **state) {
    fixture *f = *state;
    person p, poor;
    make_person(f, &p, 7, 3);
    make_person(f, &poor, 8, 1);
    review_offer o = offer(f->org_a, 25, 48, "fungal", "*");
    core_error err = {0};
    char id[REVIEW_CASE_ID_TEXT];
    /* No offer yet. */
    review_request_in in = request_of(&p, f->org_a);
    assert_int_equal(review_case_request(f->rv, &in, id, &err), CORE_ERR_NOT_FOUND);
    assert_string_equal(err.field, "org");
    assert_int_equal(review_offer_set(f->rv, &o, &err), CORE_OK);
    /* No photo, a bad extra, too few tokens. */
    in.jpeg = NULL;
    assert_int_equal(review_case_request(f->rv, &in, id, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "photo");
    in = request_of(&p, f->org_a);
    in.share.sex = "unknown";
    assert_int_equal(review_case_request(f->rv, &in, id, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "sex");
    in = request_of(&poor, f->org_a);
    assert_int_equal(review_case_request(f->rv, &in, id, &err), CORE_ERR_CONFLICT);
    assert_string_equal(err.field, "balance");
    /* Nothing stored, nothing escrowed. */
    assert_int_equal(count_rows(f, "SELECT count(*) FROM review_cases"), 0);
    ledger_totals t;
    assert_int_equal(ledger_get_totals(f->led, &t, NULL), CORE_OK);
    assert_int_equal(t.escrowed, 0);
    assert_int_equal(balance_of(f, p.pk), 30);
    assert_int_equal(balance_of(f, poor.pk), 10);
}

static void test_case_answer(void **state) {
    fixture *f = *state;
    person p, other;
    make_person(f, &p, 7, 3);
    make_person(f, &other, 9, 3);
    review_offer o = offer(f->org_a, 25, 48, "fungal,eczema", "*");
    core_error err = {0};
    assert_int_equal(review_offer_set(f->rv, &o, &err), CORE_OK);
    char id[REVIEW_CASE_ID_TEXT], id2[REVIEW_CASE_ID_TEXT];
    review_request_in in = request_of(&p, f->org_a);
    assert_int_equal(review_case_request(f->rv, &in, id, &err), CORE_OK);
    assert_int_equal(balance_of(f, p.pk), 5);
    fake_clock += 60;
    in = request_of(&other, f->org_a);
    assert_int_equal(review_case_request(f->rv, &in, id2, &err), CORE_OK);
    fake_clock += 30;

    /* The queue: oldest first, with waiting time; the other org sees none. */
    json_t *q = NULL;
    assert_int_equal(review_queue(f->rv, f->org_a, &q, &err), CORE_OK);
    assert_int_equal(json_array_size(q), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(q, 0), "id")), id);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(q, 0), "waiting_seconds")), 90);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(q, 1), "waiting_seconds")), 30);
    json_decref(q);
    assert_int_equal(review_queue(f->rv, f->org_b, &q, &err), CORE_OK);
    assert_int_equal(json_array_size(q), 0);
    json_decref(q);

    /* Opening: org B cannot; org A gets exactly the case copy, logged. */
    json_t *c = NULL;
    assert_int_equal(review_case_open(f->rv, f->org_b, 50, id, &c, &err), CORE_ERR_NOT_FOUND);
    assert_int_equal(review_case_open(f->rv, f->org_a, 50, id, &c, &err), CORE_OK);
    json_t *want = json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:s,s:s}}", "id", id, "photo_jpeg_base64url", "_9j_4AECAwT_2Q",
                             "result", "title", "Skin check: fungal (71 %)", "details", "fungal: 71 %\neczema: 12 %\n",
                             "share", "age_band", "30-44", "body_site", "arm");
    assert_true(json_equal(c, want));
    json_decref(want);
    json_decref(c);

    /* Answer: bad fields refused; then settled to the organisation. */
    assert_int_equal(review_case_answer(f->rv, f->org_a, 50, id, "nonsense", NULL, "urgent", "x", &err),
                     CORE_ERR_INVALID);
    assert_string_equal(err.field, "condition");
    assert_int_equal(review_case_answer(f->rv, f->org_a, 50, id, "other", NULL, "urgent", "x", &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "other");
    assert_int_equal(review_case_answer(f->rv, f->org_a, 50, id, "fungal", NULL, "soon", "x", &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "urgency");
    assert_int_equal(review_case_answer(f->rv, f->org_b, 51, id, "fungal", NULL, "self_care", "x", &err),
                     CORE_ERR_NOT_FOUND);
    assert_int_equal(review_case_answer(f->rv, f->org_a, 50, id, "fungal", NULL, "pharmacist_or_gp",
                                        "Antifungal cream twice a day for two weeks.", &err),
                     CORE_OK);
    assert_int_equal(balance_of(f, f->org_a), 25);
    assert_int_equal(balance_of(f, p.pk), 5);
    /* Answered: out of the queue, not answerable twice, not openable. */
    assert_int_equal(review_case_answer(f->rv, f->org_a, 50, id, "fungal", NULL, "urgent", "again", &err),
                     CORE_ERR_NOT_FOUND);
    assert_int_equal(review_case_open(f->rv, f->org_a, 50, id, &c, &err), CORE_ERR_NOT_FOUND);

    /* The person reads the answer with their key, and who opened it. */
    json_t *r = NULL;
    assert_int_equal(review_case_get(f->rv, 9, other.dk, id, &r, &err), CORE_ERR_NOT_FOUND);
    assert_int_equal(review_case_get(f->rv, 7, p.dk, id, &r, &err), CORE_OK);
    assert_string_equal(json_string_value(json_object_get(r, "state")), "answered");
    json_t *ans = json_object_get(r, "answer");
    assert_string_equal(json_string_value(json_object_get(ans, "condition")), "fungal");
    assert_string_equal(json_string_value(json_object_get(ans, "urgency")), "pharmacist_or_gp");
    json_t *opened = json_object_get(r, "openings");
    assert_int_equal(json_array_size(opened), 1);
    const char *who = json_string_value(json_object_get(json_array_get(opened, 0), "clinician"));
    assert_non_null(strstr(who, "clinician-"));
    assert_string_equal(who, json_string_value(json_object_get(ans, "clinician")));
    assert_int_equal(escrow_state(f, r), LEDGER_ESCROW_SETTLED);
    json_decref(r);
    /* The second case: returned, refunded, destroyed. */
    assert_int_equal(review_case_return(f->rv, f->org_a, 50, id2, "", &err), CORE_ERR_INVALID);
    assert_int_equal(review_case_return(f->rv, f->org_a, 50, id2, "photo not usable", &err), CORE_OK);
    assert_int_equal(balance_of(f, other.pk), 30);
    assert_int_equal(count_rows(f, "SELECT count(*) FROM review_cases WHERE state = 'returned' AND case_blob IS "
                                   "NULL AND person_key IS NULL AND server_key IS NULL"),
                     1);
    ledger_totals t;
    assert_int_equal(ledger_get_totals(f->led, &t, NULL), CORE_OK);
    assert_int_equal(t.escrowed, 0);
}

/* An answer is handed on once, after it settled: the case, the code (NULL
 * for "other": free text feeds nothing), the answer's time and the case's
 * photo; refusals, returns and withdrawals hand on nothing. */
static void test_an_answer_is_handed_on(void **state) {
    fixture *f = *state;
    person p;
    make_person(f, &p, 7, 3);
    review_offer o = offer(f->org_a, 5, 48, "fungal", "*");
    core_error err = {0};
    assert_int_equal(review_offer_set(f->rv, &o, &err), CORE_OK);
    char a[REVIEW_CASE_ID_TEXT], b[REVIEW_CASE_ID_TEXT], c[REVIEW_CASE_ID_TEXT];
    review_request_in in = request_of(&p, f->org_a);
    assert_int_equal(review_case_request(f->rv, &in, a, &err), CORE_OK);
    assert_int_equal(review_case_request(f->rv, &in, b, &err), CORE_OK);
    assert_int_equal(review_case_request(f->rv, &in, c, &err), CORE_OK);
    assert_int_equal(review_case_answer(f->rv, f->org_a, 50, a, "nonsense", NULL, "urgent", "x", &err),
                     CORE_ERR_INVALID);
    assert_int_equal(review_case_answer(f->rv, f->org_b, 50, a, "eczema", NULL, "urgent", "x", &err),
                     CORE_ERR_NOT_FOUND);
    assert_int_equal(review_case_return(f->rv, f->org_a, 50, c, "blurred", &err), CORE_OK);
    assert_int_equal(f->answered, 0);
    fake_clock += 600;
    assert_int_equal(review_case_answer(f->rv, f->org_a, 50, a, "eczema", NULL, "pharmacist_or_gp", "x", &err),
                     CORE_OK);
    assert_int_equal(f->answered, 1);
    assert_string_equal(f->answered_id, a);
    assert_string_equal(f->answered_condition, "eczema");
    assert_int_equal(f->answered_at, fake_clock);
    assert_int_equal(f->answered_len, sizeof jpeg);
    assert_memory_equal(f->answered_jpeg, jpeg, sizeof jpeg);
    json_t *r = NULL; /* handed on after it settled */
    assert_int_equal(review_case_get(f->rv, 7, p.dk, a, &r, &err), CORE_OK);
    assert_int_equal(escrow_state(f, r), LEDGER_ESCROW_SETTLED);
    json_decref(r);
    /* a second answer is refused and hands on nothing */
    assert_int_equal(review_case_answer(f->rv, f->org_a, 50, a, "eczema", NULL, "urgent", "x", &err),
                     CORE_ERR_NOT_FOUND);
    assert_int_equal(f->answered, 1);
    assert_int_equal(review_case_answer(f->rv, f->org_a, 50, b, "other", "granuloma annulare", "see_doctor_soon",
                                        "See a dermatologist.", &err),
                     CORE_OK);
    assert_int_equal(f->answered, 2);
    assert_string_equal(f->answered_condition, "(null)");
}

static void test_case_withdraw_and_timeout(void **state) {
    fixture *f = *state;
    person p;
    make_person(f, &p, 7, 3);
    review_offer o = offer(f->org_a, 10, 1, "fungal", "*");
    core_error err = {0};
    assert_int_equal(review_offer_set(f->rv, &o, &err), CORE_OK);
    char a[REVIEW_CASE_ID_TEXT], b[REVIEW_CASE_ID_TEXT];
    review_request_in in = request_of(&p, f->org_a);
    assert_int_equal(review_case_request(f->rv, &in, a, &err), CORE_OK);
    assert_int_equal(review_case_request(f->rv, &in, b, &err), CORE_OK);
    assert_int_equal(balance_of(f, p.pk), 10);
    /* Only the owner withdraws, once. */
    assert_int_equal(review_case_withdraw(f->rv, 8, a, &err), CORE_ERR_NOT_FOUND);
    assert_int_equal(review_case_withdraw(f->rv, 7, a, &err), CORE_OK);
    assert_int_equal(review_case_withdraw(f->rv, 7, a, &err), CORE_ERR_CONFLICT);
    assert_string_equal(err.field, "state");
    assert_int_equal(balance_of(f, p.pk), 20);
    json_t *r = NULL;
    assert_int_equal(review_case_get(f->rv, 7, p.dk, a, &r, &err), CORE_OK);
    assert_string_equal(json_string_value(json_object_get(r, "state")), "withdrawn");
    assert_null(json_object_get(r, "case")); /* destroyed */
    assert_int_equal(escrow_state(f, r), LEDGER_ESCROW_REFUNDED);
    json_decref(r);
    /* Just before the one-hour promise: still waiting. Past it: refunded. */
    int n = -1;
    fake_clock += 3599;
    assert_int_equal(review_sweep(f->rv, &n, &err), CORE_OK);
    assert_int_equal(n, 0);
    fake_clock += 1;
    json_t *q = NULL;
    assert_int_equal(review_queue(f->rv, f->org_a, &q, &err), CORE_OK); /* the read sweeps */
    assert_int_equal(json_array_size(q), 0);
    json_decref(q);
    assert_int_equal(balance_of(f, p.pk), 30);
    assert_int_equal(review_case_get(f->rv, 7, p.dk, b, &r, &err), CORE_OK);
    assert_string_equal(json_string_value(json_object_get(r, "state")), "expired");
    assert_int_equal(escrow_state(f, r), LEDGER_ESCROW_REFUNDED);
    json_decref(r);
    assert_int_equal(review_sweep(f->rv, &n, &err), CORE_OK);
    assert_int_equal(n, 0);
}

/* The case-scoped consent: revoking it while the case waits refunds the
 * escrow in the same ledger transaction and destroys the case; after an
 * answer it keeps the answer and the payment; either way the organisation
 * can no longer open the case. A refund (withdrawal) ends it on the ledger. */
static void test_case_revoke(void **state) {
    fixture *f = *state;
    person p, other;
    make_person(f, &p, 7, 3);
    make_person(f, &other, 9, 1);
    review_offer o = offer(f->org_a, 10, 48, "fungal", "*");
    core_error err = {0};
    assert_int_equal(review_offer_set(f->rv, &o, &err), CORE_OK);
    char a[REVIEW_CASE_ID_TEXT], b[REVIEW_CASE_ID_TEXT], c[REVIEW_CASE_ID_TEXT];
    review_request_in in = request_of(&p, f->org_a);
    assert_int_equal(review_case_request(f->rv, &in, a, &err), CORE_OK);
    assert_int_equal(review_case_request(f->rv, &in, b, &err), CORE_OK);
    assert_int_equal(review_case_request(f->rv, &in, c, &err), CORE_OK);
    assert_int_equal(balance_of(f, p.pk), 0);
    json_t *r = NULL;
    assert_int_equal(review_case_get(f->rv, 7, p.dk, a, &r, &err), CORE_OK);
    json_t *cj = json_object_get(r, "consent");
    assert_string_equal(json_string_value(json_object_get(cj, "status")), "active");
    /* The consent's id is the request's txid: on the ledger, the person's
     * wallet to the organisation, for this case's commitment only. */
    assert_string_equal(json_string_value(json_object_get(cj, "id")),
                        json_string_value(json_object_get(r, "request_txid")));
    uint8_t req[32], owner[32];
    assert_true(cs_crypto_unhex(json_string_value(json_object_get(r, "request_txid")), req, 32));
    json_decref(r);
    ledger_consent cn;
    assert_int_equal(ledger_get_consent(f->led, req, &cn, owner, &err), CORE_OK);
    assert_memory_equal(owner, p.pk, 32);
    assert_memory_equal(cn.grantee, f->org_a, 32);
    assert_int_equal(cn.purpose, LEDGER_PURPOSE_REVIEW);

    /* Only the owner, with their own wallet. */
    assert_int_equal(review_case_revoke(f->rv, 9, other.sk, a, &err), CORE_ERR_NOT_FOUND);
    assert_int_equal(review_case_revoke(f->rv, 7, other.sk, a, &err), CORE_ERR_NOT_FOUND);
    /* Waiting: refunded by the revocation itself, withdrawn, destroyed. */
    assert_int_equal(review_case_revoke(f->rv, 7, p.sk, a, &err), CORE_OK);
    assert_int_equal(balance_of(f, p.pk), 10);
    assert_int_equal(review_case_get(f->rv, 7, p.dk, a, &r, &err), CORE_OK);
    assert_string_equal(json_string_value(json_object_get(r, "state")), "withdrawn");
    assert_null(json_object_get(r, "case"));
    cj = json_object_get(r, "consent");
    assert_string_equal(json_string_value(json_object_get(cj, "status")), "revoked");
    assert_true(json_is_string(json_object_get(cj, "revoke_txid")));
    assert_int_equal(escrow_state(f, r), LEDGER_ESCROW_REFUNDED);
    json_decref(r);
    json_t *x = NULL;
    assert_int_equal(review_case_open(f->rv, f->org_a, 50, a, &x, &err), CORE_ERR_NOT_FOUND);
    assert_int_equal(ledger_get_consent(f->led, req, &cn, NULL, &err), CORE_OK);
    assert_true(cn.revoked_height > 0);
    assert_int_equal(review_case_revoke(f->rv, 7, p.sk, a, &err), CORE_ERR_CONFLICT);
    assert_string_equal(err.field, "consent");
    assert_int_equal(count_rows(f, "SELECT count(*) FROM review_cases WHERE state = 'withdrawn' AND case_blob IS "
                                   "NULL AND person_key IS NULL AND server_key IS NULL"),
                     1);

    /* Answered: the person keeps the answer, the organisation its pay. */
    assert_int_equal(review_case_answer(f->rv, f->org_a, 50, b, "fungal", NULL, "self_care", "Keep it dry.", &err),
                     CORE_OK);
    assert_int_equal(review_case_revoke(f->rv, 7, p.sk, b, &err), CORE_OK);
    assert_int_equal(balance_of(f, f->org_a), 10);
    assert_int_equal(balance_of(f, p.pk), 10);
    assert_int_equal(review_case_get(f->rv, 7, p.dk, b, &r, &err), CORE_OK);
    assert_string_equal(json_string_value(json_object_get(r, "state")), "answered");
    assert_non_null(json_object_get(r, "answer"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "consent"), "status")), "revoked");
    json_decref(r);

    /* Withdrawn: the refund ended the consent; nothing left to revoke. */
    assert_int_equal(review_case_withdraw(f->rv, 7, c, &err), CORE_OK);
    assert_int_equal(review_case_get(f->rv, 7, p.dk, c, &r, &err), CORE_OK);
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "consent"), "status")), "ended");
    assert_true(cs_crypto_unhex(json_string_value(json_object_get(r, "request_txid")), req, 32));
    json_decref(r);
    assert_int_equal(ledger_get_consent(f->led, req, &cn, NULL, &err), CORE_OK);
    assert_true(cn.revoked_height > 0);
    assert_int_equal(review_case_revoke(f->rv, 7, p.sk, c, &err), CORE_ERR_CONFLICT);
    assert_string_equal(err.field, "consent");
    assert_int_equal(balance_of(f, p.pk), 20);
    ledger_totals t;
    assert_int_equal(ledger_get_totals(f->led, &t, NULL), CORE_OK);
    assert_int_equal(t.escrowed, 0);
}

static void exec_sql(fixture *f, const char *sql) {
    sqlite3 *db = store_acquire(f->st);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s", sql, msg);
    store_release(f->st, db);
}

static void request_txid_of(fixture *f, const person *p, const char *id, uint8_t txid[32]) {
    json_t *r = NULL;
    core_error err = {0};
    assert_int_equal(review_case_get(f->rv, p->id, p->dk, id, &r, &err), CORE_OK);
    assert_true(cs_crypto_unhex(json_string_value(json_object_get(r, "request_txid")), txid, 32));
    json_decref(r);
}

static const char *state_of(fixture *f, const char *id) {
    static char out[16];
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT state FROM review_cases WHERE id = '%s'", id);
    sqlite3 *db = store_acquire(f->st);
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    snprintf(out, sizeof out, "%s", (const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    store_release(f->st, db);
    return out;
}

/* Each window a crash can leave between ledger.db's commit and
 * caresync.db's, written as the crash would leave it (the intent row and
 * the ledger as far as the step got), then review_recover: tokens end
 * neither locked, lost nor doubled, and the rows follow the ledger. */
static void test_case_recover(void **state) {
    fixture *f = *state;
    person p;
    make_person(f, &p, 7, 10);
    review_offer o = offer(f->org_a, 10, 48, "fungal", "*");
    core_error err = {0};
    assert_int_equal(review_offer_set(f->rv, &o, &err), CORE_OK);
    char sql[512], hex[65];
    ledger_receipt lr;

    /* 1. Request: escrow committed, case row never written → refunded. */
    uint8_t commitment[32];
    cs_crypto_random(commitment, 32);
    ledger_tx rq = {.kind = LEDGER_TX_REVIEW_REQUEST, .u.review.price = 10};
    memcpy(rq.u.review.org, f->org_a, 32);
    memcpy(rq.u.review.commitment, commitment, 32);
    wallet_send(f, &p, &rq, &lr);
    uint8_t lost_req[32];
    memcpy(lost_req, lr.txid, 32);
    cs_crypto_hex(commitment, 32, hex);
    snprintf(sql, sizeof sql,
             "INSERT INTO review_intents(case_id, op, commitment, created_at) VALUES ('c1', 'request', x'%s', 0)", hex);
    exec_sql(f, sql);
    /* 2. Request: intent committed, escrow never reached the ledger → dropped. */
    cs_crypto_random(commitment, 32);
    cs_crypto_hex(commitment, 32, hex);
    snprintf(sql, sizeof sql,
             "INSERT INTO review_intents(case_id, op, commitment, created_at) VALUES ('c2', 'request', x'%s', 0)", hex);
    exec_sql(f, sql);
    assert_int_equal(balance_of(f, p.pk), 90);

    /* 3. Answer: intent (with the sealed answer) committed, settle not
     * submitted → recovery settles and stores that answer. */
    char c3[REVIEW_CASE_ID_TEXT], c4[REVIEW_CASE_ID_TEXT], c5[REVIEW_CASE_ID_TEXT], c6[REVIEW_CASE_ID_TEXT],
        c7[REVIEW_CASE_ID_TEXT], c8[REVIEW_CASE_ID_TEXT];
    review_request_in in = request_of(&p, f->org_a);
    assert_int_equal(review_case_request(f->rv, &in, c3, &err), CORE_OK);
    uint8_t t3[32];
    request_txid_of(f, &p, c3, t3);
    cs_crypto_hex(t3, 32, hex);
    snprintf(sql, sizeof sql,
             "INSERT INTO review_intents(case_id, op, request_txid, target, answer, created_at) "
             "VALUES ('%s', 'settle', x'%s', 'answered', x'a1b2c3', 0)",
             c3, hex);
    exec_sql(f, sql);
    /* While the intent stands, no other step may touch the case. */
    assert_int_equal(review_case_withdraw(f->rv, 7, c3, &err), CORE_ERR_CONFLICT);
    assert_string_equal(err.field, "state");

    /* 4. Withdraw: refund committed on the ledger, row not updated. */
    assert_int_equal(review_case_request(f->rv, &in, c4, &err), CORE_OK);
    uint8_t t4[32];
    request_txid_of(f, &p, c4, t4);
    cs_crypto_hex(t4, 32, hex);
    snprintf(sql, sizeof sql,
             "INSERT INTO review_intents(case_id, op, request_txid, target, created_at) "
             "VALUES ('%s', 'refund', x'%s', 'withdrawn', 0)",
             c4, hex);
    exec_sql(f, sql);
    ledger_tx rf = {.kind = LEDGER_TX_REVIEW_REFUND};
    memcpy(rf.u.review_close.request, t4, 32);
    assert_int_equal(ledger_sign_submit(f->led, &rf, f->node_sk, &lr, &err), CORE_OK);

    /* 5. Revoke: intent committed, the person's REVOKE never reached the
     * ledger → dropped, the case still waits. 6. Revoke on the ledger (and
     * the escrow refunded with it), row not updated → withdrawn. */
    assert_int_equal(review_case_request(f->rv, &in, c5, &err), CORE_OK);
    assert_int_equal(review_case_request(f->rv, &in, c6, &err), CORE_OK);
    uint8_t t5[32], t6[32];
    request_txid_of(f, &p, c5, t5);
    request_txid_of(f, &p, c6, t6);
    cs_crypto_hex(t5, 32, hex);
    snprintf(sql, sizeof sql,
             "INSERT INTO review_intents(case_id, op, request_txid, created_at) VALUES ('%s', 'revoke', x'%s', 0)", c5,
             hex);
    exec_sql(f, sql);
    cs_crypto_hex(t6, 32, hex);
    snprintf(sql, sizeof sql,
             "INSERT INTO review_intents(case_id, op, request_txid, created_at) VALUES ('%s', 'revoke', x'%s', 0)", c6,
             hex);
    exec_sql(f, sql);
    ledger_tx rv = {.kind = LEDGER_TX_REVOKE};
    memcpy(rv.u.revoke.grant, t6, 32);
    wallet_send(f, &p, &rv, &lr);

    /* 7. A waiting case whose escrow a node refunded with no intent left
     * (a crash before intents existed) → the row follows the ledger. */
    assert_int_equal(review_case_request(f->rv, &in, c7, &err), CORE_OK);
    uint8_t t7[32];
    request_txid_of(f, &p, c7, t7);
    memcpy(rf.u.review_close.request, t7, 32);
    assert_int_equal(ledger_sign_submit(f->led, &rf, f->node_sk, &lr, &err), CORE_OK);
    /* 8. Untouched: stays waiting with its escrow open. */
    assert_int_equal(review_case_request(f->rv, &in, c8, &err), CORE_OK);

    /* Before: c1's 10 locked with no case; c3, c5, c8 open; c4, c6, c7 back. */
    assert_int_equal(balance_of(f, p.pk), 60);
    int n = -1;
    assert_int_equal(review_recover(f->rv, &n, &err), CORE_OK);
    assert_int_equal(n, 7); /* the intents of c1 to c6, and c7 */
    ledger_escrow e;
    assert_int_equal(ledger_get_escrow(f->led, lost_req, &e, NULL), CORE_OK);
    assert_int_equal(e.state, LEDGER_ESCROW_REFUNDED);
    assert_int_equal(count_rows(f, "SELECT count(*) FROM review_intents"), 0);
    assert_string_equal(state_of(f, c3), "answered");
    assert_int_equal(count_rows(f, "SELECT count(*) FROM review_cases WHERE answer = x'a1b2c3' AND server_key IS NULL"),
                     1);
    assert_int_equal(ledger_get_escrow(f->led, t3, &e, NULL), CORE_OK);
    assert_int_equal(e.state, LEDGER_ESCROW_SETTLED);
    assert_string_equal(state_of(f, c4), "withdrawn");
    assert_string_equal(state_of(f, c5), "waiting");
    assert_string_equal(state_of(f, c6), "withdrawn");
    assert_int_equal(count_rows(f, "SELECT count(*) FROM review_cases WHERE consent_revoked_at IS NOT NULL"), 1);
    assert_string_equal(state_of(f, c7), "withdrawn");
    assert_string_equal(state_of(f, c8), "waiting");
    assert_int_equal(count_rows(f, "SELECT count(*) FROM review_cases WHERE state <> 'waiting' AND state <> "
                                   "'answered' AND (case_blob IS NOT NULL OR server_key IS NOT NULL)"),
                     0);
    /* Tokens: each refund once, one settle; escrowed = the waiting cases. */
    assert_int_equal(balance_of(f, p.pk), 100 - 10 /* c3 paid */ - 20 /* c5, c8 escrowed */);
    assert_int_equal(balance_of(f, f->org_a), 10);
    ledger_totals t;
    assert_int_equal(ledger_get_totals(f->led, &t, NULL), CORE_OK);
    assert_int_equal(t.escrowed, 20);
    assert_int_equal(count_rows(f, "SELECT coalesce(sum(price), 0) FROM review_cases WHERE state = 'waiting'"), 20);
    /* A second run finds nothing; the steps work again on the cases. */
    assert_int_equal(review_recover(f->rv, &n, &err), CORE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(review_case_withdraw(f->rv, 7, c5, &err), CORE_OK);
    char path[300];
    snprintf(path, sizeof path, "%s/ledger.db", f->dir);
    ledger_verify_report rep;
    if (ledger_verify_file(path, 1, &rep, &err)) fail_msg("verify: %s", err.message);
}

int main(void) {
    core_error err = {0};
    if (cs_crypto_init(&err)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_get_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_withdraw, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_file_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_case_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_case_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_case_withdraw_and_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_an_answer_is_handed_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_case_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_case_recover, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
