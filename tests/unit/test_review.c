/* review: organisations' review offers on a real store (caresync.db with
 * its migrations), a real ledger with an organisation registered by the
 * admin key, and Debian's iso-codes. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
} fixture;

static void register_org(fixture *f, const uint8_t key[32], const char *name) {
    ledger_tx tx = {.kind = LEDGER_TX_REGISTER_ORG};
    memcpy(tx.u.org.org, key, 32);
    snprintf(tx.u.org.name, sizeof tx.u.org.name, "%s", name);
    ledger_receipt r;
    core_error err = {0};
    if (ledger_sign_submit(f->led, &tx, f->admin_sk, &r, &err)) fail_msg("register org: %s", err.message);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    testutil_tmpdir(f->dir);
    char path[300];
    core_error err = {0};
    snprintf(path, sizeof path, "%s/caresync.db", f->dir);
    if (store_open(path, 2, &f->st, &err)) return -1;
    ledger_keypair(f->node_pk, f->node_sk);
    ledger_keypair(f->admin_pk, f->admin_sk);
    ledger_options o;
    ledger_options_defaults(&o);
    snprintf(path, sizeof path, "%s/ledger.db", f->dir);
    o.path = path;
    o.batch_ms = 1;
    memcpy(o.node_pk, f->node_pk, 32);
    memcpy(o.node_sk, f->node_sk, 64);
    memcpy(o.admin_pk, f->admin_pk, 32);
    memcpy(o.admin_sk, f->admin_sk, 64);
    if (ledger_open(&o, &f->led, &err)) return -1;
    if (regions_load(TEST_ISO_CODES_DIR, &f->regs, &err)) return -1;
    uint8_t sk[64];
    ledger_keypair(f->org_a, sk);
    ledger_keypair(f->org_b, sk);
    ledger_keypair(f->stranger, sk);
    register_org(f, f->org_a, "Alpha Skin Clinic");
    register_org(f, f->org_b, "Beta Teledermatology");
    review_options ro = {.st = f->st, .led = f->led, .regs = f->regs, .conditions = table, .n_conditions = 5};
    if (review_open(&ro, &f->rv, &err)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    review_close(f->rv);
    regions_free(f->regs);
    ledger_close(f->led);
    store_close(f->st);
    testutil_rmdir(f->dir);
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

static void test_ledger_file_lookup(void **state) {
    fixture *f = *state;
    char path[300], name[REVIEW_ORG_NAME_MAX + 1] = "";
    core_error err = {0};
    snprintf(path, sizeof path, "%s/ledger.db", f->dir);
    assert_int_equal(review_ledger_org_file(path, f->org_b, name, &err), CORE_OK);
    assert_string_equal(name, "Beta Teledermatology");
    assert_int_equal(review_ledger_org_file(path, f->stranger, name, &err), CORE_ERR_NOT_FOUND);
    snprintf(path, sizeof path, "%s/absent.db", f->dir);
    assert_int_equal(review_ledger_org_file(path, f->org_a, name, &err), CORE_ERR_NOT_FOUND);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
