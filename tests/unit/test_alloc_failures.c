/* Allocation failure at every point (issue 12.3): each scenario is run with
 * its 1st, 2nd, 3rd … allocation failing (failalloc.h) until it completes
 * without meeting the failure. At every point the call must return (an
 * error, or success where the allocation was optional), ASan/LSan must see no
 * crash and no leak, and the data must be as before the call or as after it
 * — never half-written. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anon/anon.h"
#include "failalloc.h"
#include "http/http.h"
#include "ledger/ledger.h"
#include "market/market.h"
#include "nn/nn.h"
#include "records/records.h"
#include "review/review.h"
#include "share/share.h"
#include "surveil/surveil.h"
#include "testutil.h"
#include "vision/vision.h"

/* Runs scenario(ctx) with the n-th allocation failing for n = 1, 2, …; the
 * scenario checks its own invariants. Returns how many points were tried. */
typedef void (*scenario_fn)(void *ctx, bool *fired);
static long every_point(scenario_fn fn, void *ctx) {
    long n = 1;
    for (;; n++) {
        bool fired = false;
        fn(ctx, &fired);
        if (!fired) break;
        assert_true(n < 200000); /* a scenario that never completes is a bug in it */
    }
    return n;
}

/* ---- a person's store: accounts made once, outside the armed region ---- */

typedef struct {
    char dir[256], path[512];
    store *st;
    accounts *acc;
    regions *regs;
    accounts_session alice;
    char entry_id[64];
    char alice_token[ACCOUNTS_TOKEN_TEXT], other_token[ACCOUNTS_TOKEN_TEXT];
    long n; /* the point this run fails at */
} person_fixture;

static int person_setup(void **state) {
    person_fixture *f = calloc(1, sizeof *f);
    testutil_tmpdir(f->dir);
    snprintf(f->path, sizeof f->path, "%s/db", f->dir);
    char rc_text[CS_CRYPTO_RECOVERY_TEXT], t[ACCOUNTS_TOKEN_TEXT];
    if (cs_crypto_init(NULL) || store_open(f->path, 2, &f->st, NULL) || accounts_open(f->st, NULL, &f->acc, NULL) ||
        regions_load(TEST_ISO_CODES_DIR, &f->regs, NULL) ||
        accounts_create(f->acc, "alice", "correct horse battery", ACCOUNTS_PERSON, rc_text, &f->alice, t, NULL))
        return -1;
    snprintf(f->alice_token, sizeof f->alice_token, "%s", t);
    json_t *in = json_pack("{s:s, s:s}", "kind", "note", "title", "first");
    json_t *out = NULL;
    core_status rc = records_create(f->st, &f->alice, in, &out, NULL);
    json_decref(in);
    if (rc) return -1;
    snprintf(f->entry_id, sizeof f->entry_id, "%s", json_string_value(json_object_get(out, "id")));
    json_decref(out);
    *state = f;
    return 0;
}

static int person_teardown(void **state) {
    person_fixture *f = *state;
    accounts_session_wipe(&f->alice);
    regions_free(f->regs);
    accounts_close(f->acc);
    store_close(f->st);
    testutil_rmdir(f->dir);
    free(f);
    return 0;
}

static size_t entry_count(person_fixture *f) {
    json_t *list = NULL;
    assert_int_equal(records_list(f->st, &f->alice, &list, NULL), CORE_OK);
    size_t n = json_array_size(list);
    json_decref(list);
    return n;
}

static void create_entry(void *ctx, bool *fired) {
    person_fixture *f = ctx;
    size_t before = entry_count(f);
    json_t *in = json_pack("{s:s, s:s}", "kind", "note", "title", "an entry written while memory runs out");
    json_t *out = NULL;
    core_error err = {0};
    failalloc_arm(++f->n);
    core_status rc = records_create(f->st, &f->alice, in, &out, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    json_decref(in);
    json_decref(out);
    if (!*fired) assert_int_equal(rc, CORE_OK);
    if (rc) assert_true(err.message[0]);                        /* a failure says what */
    assert_int_equal(entry_count(f), before + (rc == CORE_OK)); /* written whole, or not at all */
}

/* A session token resolved (the cookie on every request) and the person's
 * other sessions ended ("log out everywhere else"): after a failure the
 * token either still resolves to the same account or the call said why. */
static void authenticate_and_end_others(void *ctx, bool *fired) {
    person_fixture *f = ctx;
    accounts_session other;
    /* a second session to end each run (made unarmed) */
    assert_int_equal(
        accounts_login(f->acc, "alice", "correct horse battery", "192.0.2.1", &other, f->other_token, NULL), CORE_OK);
    accounts_session_wipe(&other);
    accounts_session s;
    memset(&s, 0, sizeof s);
    core_error err = {0};
    int ended = -1;
    failalloc_arm(++f->n);
    core_status rc = accounts_authenticate(f->acc, f->alice_token, &s, &err);
    if (!rc) rc = accounts_end_other_sessions(f->acc, &s, &ended, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired) assert_int_equal(rc, CORE_OK);
    if (rc) assert_true(err.message[0]);
    accounts_session_wipe(&s);
    /* the person's own session always survives; the other one is gone
     * exactly when the call said it ended it */
    accounts_session again;
    assert_int_equal(accounts_authenticate(f->acc, f->alice_token, &again, NULL), CORE_OK);
    accounts_session_wipe(&again);
    core_status other_rc = accounts_authenticate(f->acc, f->other_token, &again, NULL);
    if (rc == CORE_OK) assert_int_equal(other_rc, CORE_ERR_AUTH);
    if (other_rc == CORE_OK) accounts_session_wipe(&again);
}

static void sessions_survive_every_failure(void **state) {
    person_fixture *f = *state;
    print_message("accounts_authenticate + end_other_sessions: %ld allocation points\n",
                  every_point(authenticate_and_end_others, f));
}

static void records_create_survives_every_failure(void **state) {
    person_fixture *f = *state;
    long points = every_point(create_entry, f);
    print_message("records_create: %ld allocation points\n", points);
}

static void update_entry(void *ctx, bool *fired) {
    person_fixture *f = ctx;
    char text[64];
    snprintf(text, sizeof text, "version %ld", f->n + 1);
    json_t *in = json_pack("{s:s, s:s}", "kind", "note", "title", text);
    json_t *out = NULL;
    core_error err = {0};
    json_t *old = NULL;
    assert_int_equal(records_get(f->st, &f->alice, f->entry_id, &old, NULL), CORE_OK);
    failalloc_arm(++f->n);
    core_status rc = records_update(f->st, &f->alice, f->entry_id, in, &out, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    json_decref(in);
    json_decref(out);
    if (!*fired) assert_int_equal(rc, CORE_OK);
    json_t *now = NULL;
    assert_int_equal(records_get(f->st, &f->alice, f->entry_id, &now, NULL), CORE_OK);
    const char *was = json_string_value(json_object_get(old, "title"));
    const char *is = json_string_value(json_object_get(now, "title"));
    assert_non_null(is);
    /* the old text or the new one, never something between */
    assert_string_equal(is, rc == CORE_OK ? text : was);
    json_decref(old);
    json_decref(now);
}

static void records_update_survives_every_failure(void **state) {
    person_fixture *f = *state;
    long points = every_point(update_entry, f);
    print_message("records_update: %ld allocation points\n", points);
}

static void export_all(void *ctx, bool *fired) {
    person_fixture *f = ctx;
    json_t *out = NULL;
    core_error err = {0};
    failalloc_arm(++f->n);
    core_status rc = records_export(f->st, &f->alice, &out, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired) assert_int_equal(rc, CORE_OK);
    if (rc) assert_null(out);
    json_decref(out);
}

static void records_export_survives_every_failure(void **state) {
    person_fixture *f = *state;
    print_message("records_export: %ld allocation points\n", every_point(export_all, f));
}

/* ---- surveillance: counting + queueing is one transaction; releases ---- */

typedef struct {
    char dir[256], path[512];
    store *st;
    long n;
    int week;
} pool_fixture;

static int pool_setup(void **state) {
    pool_fixture *f = calloc(1, sizeof *f);
    testutil_tmpdir(f->dir);
    snprintf(f->path, sizeof f->path, "%s/db", f->dir);
    if (cs_crypto_init(NULL) || store_open(f->path, 2, &f->st, NULL)) return -1;
    f->week = surveil_week_of_date(2026, 11, 23);
    *state = f;
    return 0;
}

static int pool_teardown(void **state) {
    pool_fixture *f = *state;
    store_close(f->st);
    testutil_rmdir(f->dir);
    free(f);
    return 0;
}

static surveil_contribution fungal_ca(int week) {
    surveil_contribution c = {.week = week, .age_band = 3, .source = SURVEIL_SOURCE_MODEL};
    snprintf(c.condition, sizeof c.condition, "fungal");
    snprintf(c.region, sizeof c.region, "US-CA");
    return c;
}

static void add_one(void *ctx, bool *fired) {
    pool_fixture *f = ctx;
    surveil_contribution c = fungal_ca(f->week);
    surveil_reward rw;
    memset(&rw, 0, sizeof rw);
    uint8_t mark[32] = {0};
    long id = ++f->n;
    memcpy(mark, &id, sizeof id); /* a new datum each run */
    memcpy(rw.commitment, &id, sizeof id);
    rw.contributor[0] = rw.grant[0] = 1;
    double before, after;
    size_t q0, q1;
    assert_int_equal(surveil_series(f->st, "US-CA", "fungal", f->week, f->week, &before, NULL, NULL), CORE_OK);
    assert_int_equal(surveil_rewards_queued(f->st, &q0, NULL), CORE_OK);
    core_error err = {0};
    failalloc_arm(id);
    core_status rc = surveil_add(f->st, &c, mark, f->week - 1, &rw, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired) assert_int_equal(rc, CORE_OK);
    assert_int_equal(surveil_series(f->st, "US-CA", "fungal", f->week, f->week, &after, NULL, NULL), CORE_OK);
    assert_int_equal(surveil_rewards_queued(f->st, &q1, NULL), CORE_OK);
    /* counted and queued together, or neither */
    int counted = (int)(after - before), queued = (int)(q1 - q0);
    assert_int_equal(counted, rc == CORE_OK);
    assert_int_equal(queued, rc == CORE_OK);
}

static void surveil_add_survives_every_failure(void **state) {
    pool_fixture *f = *state;
    print_message("surveil_add: %ld allocation points\n", every_point(add_one, f));
}

static int64_t tags_kept(pool_fixture *f) {
    sqlite3 *db = store_acquire(f->st);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM surveil_tags", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    store_release(f->st, db);
    return n;
}

/* A tagged contribution, then its withdrawal (issue 14): the count and the
 * tag move together, or neither does. */
static void add_and_withdraw_one(void *ctx, bool *fired) {
    pool_fixture *f = ctx;
    surveil_withdrawal w = {.c = fungal_ca(f->week)};
    long id = ++f->n;
    memcpy(w.tag, &id, sizeof id);
    uint8_t mark[32] = {2};
    memcpy(mark + 1, &id, sizeof id);
    double c0, c1, c2;
    core_error err = {0};
    assert_int_equal(surveil_series(f->st, "US-CA", "fungal", f->week, f->week, &c0, NULL, NULL), CORE_OK);
    int64_t t0 = tags_kept(f);
    failalloc_arm(id);
    core_status rc = surveil_add_tagged(f->st, &w.c, mark, f->week - 1, NULL, w.tag, NULL, NULL, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired) assert_int_equal(rc, CORE_OK);
    assert_int_equal(surveil_series(f->st, "US-CA", "fungal", f->week, f->week, &c1, NULL, NULL), CORE_OK);
    assert_int_equal((int)(c1 - c0), rc == CORE_OK);
    assert_int_equal(tags_kept(f) - t0, rc == CORE_OK);
    if (rc) return;
    bool fired2 = false;
    do { /* the withdrawal at every point too, until it completes */
        failalloc_arm(++f->n);
        rc = surveil_withdraw(f->st, &w, 1, f->week - 1, NULL, NULL, &err);
        fired2 = failalloc_fired();
        failalloc_arm(0);
        if (!fired2) assert_int_equal(rc, CORE_OK);
        assert_int_equal(surveil_series(f->st, "US-CA", "fungal", f->week, f->week, &c2, NULL, NULL), CORE_OK);
        assert_int_equal((int)(c1 - c2), rc == CORE_OK);
        assert_int_equal(w.done, rc == CORE_OK);
        assert_int_equal(tags_kept(f) - t0, rc != CORE_OK);
    } while (rc);
    (void)fired2;
}

static void surveil_withdraw_survives_every_failure(void **state) {
    pool_fixture *f = *state;
    print_message("surveil_add_tagged + surveil_withdraw: %ld allocation points\n",
                  every_point(add_and_withdraw_one, f));
}

static void release_build_once(void *ctx, bool *fired, bool by_source) {
    pool_fixture *f = ctx;
    static const char *const conds[] = {"fungal", "eczema"}, *const rows[] = {"US-CA", "US-NV", "US-OR"};
    surveil_query q = {.country = "US",
                       .week_from = f->week - 3,
                       .week_to = f->week,
                       .conditions = conds,
                       .n_conditions = 2,
                       .k = 11,
                       .base_k = 11,
                       .sealed_through = f->week,
                       .regions = rows,
                       .n_regions = 3,
                       .by_source = by_source};
    surveil_release *r = NULL;
    core_error err = {0};
    uint8_t seed[32] = {7};
    failalloc_arm(++f->n);
    core_status rc = surveil_release_build(f->st, &q, seed, &r, &err);
    json_t *j = rc ? NULL : surveil_release_json(r);
    char *csv = j ? surveil_release_csv(j) : NULL;
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired) assert_true(rc == CORE_OK && j && csv);
    if (rc) assert_null(r);
    free(csv);
    json_decref(j);
    surveil_release_free(r);
}

static void release_once(void *ctx, bool *fired) { release_build_once(ctx, fired, false); }
/* By source: the layers and their joint audit (an audit that cannot run
 * suppresses every layer value rather than publish one unchecked). */
static void release_by_source_once(void *ctx, bool *fired) { release_build_once(ctx, fired, true); }

static void surveil_release_by_source_survives_every_failure(void **state) {
    pool_fixture *f = *state;
    surveil_contribution c[3] = {fungal_ca(f->week), fungal_ca(f->week - 1), fungal_ca(f->week - 2)};
    c[1].source = SURVEIL_SOURCE_CLINICIAN;
    int64_t n[3] = {40, 3, 17};
    assert_int_equal(surveil_add_counts(f->st, c, n, 3, false, NULL), CORE_OK);
    print_message("surveil release by source: %ld allocation points\n", every_point(release_by_source_once, f));
}

static void surveil_release_survives_every_failure(void **state) {
    pool_fixture *f = *state;
    surveil_contribution c[3] = {fungal_ca(f->week), fungal_ca(f->week - 1), fungal_ca(f->week - 2)};
    snprintf(c[1].region, sizeof c[1].region, "US-NV");
    int64_t n[3] = {40, 3, 17};
    assert_int_equal(surveil_add_counts(f->st, c, n, 3, false, NULL), CORE_OK);
    print_message("surveil release: %ld allocation points\n", every_point(release_once, f));
}

/* ---- untrusted bytes: a CSV series and a photo ---- */

typedef struct {
    char *bytes;
    size_t len;
    long n;
} bytes_fixture;

static void parse_and_detect(void *ctx, bool *fired) {
    bytes_fixture *b = ctx;
    surveil_table *t = NULL;
    core_error err = {0};
    failalloc_arm(++b->n);
    core_status rc = surveil_table_parse_csv(b->bytes, b->len, &t, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired) assert_int_equal(rc, CORE_OK);
    if (rc) assert_null(t);
    surveil_table_free(t);
}

static void surveil_csv_survives_every_failure(void **state) {
    (void)state;
    bytes_fixture b = {0};
    assert_int_equal(core_read_file(TEST_CORPUS_SURVEIL "/r_write_csv.csv", &b.bytes, &b.len, NULL), CORE_OK);
    print_message("surveil_table_parse_csv: %ld allocation points\n", every_point(parse_and_detect, &b));
    free(b.bytes);
}

static void decode_photo(void *ctx, bool *fired) {
    bytes_fixture *b = ctx;
    vision_image img;
    memset(&img, 0, sizeof img);
    core_error err = {0};
    vision_limits lim;
    vision_limits_defaults(&lim);
    lim.min_side = 1; /* the corpus photos are tiny */
    failalloc_arm(++b->n);
    core_status rc = vision_decode((const uint8_t *)b->bytes, b->len, &lim, &img, NULL, NULL, &err);
    vision_quality q;
    if (!rc) rc = vision_assess(&img, &q, &err);
    uint64_t h;
    if (!rc) rc = vision_phash(&img, &h, &err); /* a contribution's photo hash */
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired) assert_int_equal(rc, CORE_OK);
    vision_image_free(&img);
}

static void vision_decode_survives_every_failure(void **state) {
    (void)state;
    static const char *const files[] = {"exif-rotated.jpg", "small.png", "small.webp", "small.heic"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", TEST_CORPUS_VISION, files[i]);
        bytes_fixture b = {0};
        assert_int_equal(core_read_file(path, &b.bytes, &b.len, NULL), CORE_OK);
        print_message("vision_decode + assess + phash, %s: %ld allocation points\n", files[i],
                      every_point(decode_photo, &b));
        free(b.bytes);
    }
}

/* A consent receipt as a person uploads it for checking, and a contribute
 * transaction as the explorer shows it (corpus files: first byte is the
 * fuzzer's mode selector). */
static void check_document(void *ctx, bool *fired) {
    bytes_fixture *b = ctx;
    json_t *j = json_loadb(b->bytes + 1, b->len - 1, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(j);
    static ledger_proof p;
    core_error err = {0};
    failalloc_arm(++b->n);
    core_status rc = ledger_document_check(j, NULL, NULL, &p, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired) assert_int_equal(rc, CORE_OK);
    /* running out of memory is never reported as a forged document */
    if (rc) assert_int_equal(rc, CORE_ERR_NOMEM);
    json_decref(j);
}

static void tx_to_json(void *ctx, bool *fired) {
    bytes_fixture *b = ctx;
    ledger_tx tx;
    assert_int_equal(ledger_tx_decode((const uint8_t *)b->bytes + 1, b->len - 1, &tx, NULL), CORE_OK);
    failalloc_arm(++b->n);
    json_t *j = ledger_tx_to_json(&tx);
    char *text = j ? core_json_dumps(j, JSON_COMPACT) : NULL;
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired) assert_non_null(text);
    /* whole or nothing: a text that is there parses and names the kind */
    if (text) {
        json_t *back = json_loads(text, 0, NULL);
        assert_non_null(back);
        assert_string_equal(json_string_value(json_object_get(back, "kind")), "contribute");
        assert_non_null(json_object_get(back, "reward"));
        json_decref(back);
    }
    free(text);
    json_decref(j);
}

static void ledger_documents_survive_every_failure(void **state) {
    (void)state;
    bytes_fixture b = {0};
    assert_int_equal(core_read_file(TEST_CORPUS_LEDGER "/receipt_v2", &b.bytes, &b.len, NULL), CORE_OK);
    print_message("ledger_document_check (receipt): %ld allocation points\n", every_point(check_document, &b));
    free(b.bytes);
    bytes_fixture t = {0};
    assert_int_equal(core_read_file(TEST_CORPUS_LEDGER "/tx_contribute", &t.bytes, &t.len, NULL), CORE_OK);
    print_message("ledger_tx_to_json: %ld allocation points\n", every_point(tx_to_json, &t));
    free(t.bytes);
}

static void parse_model(void *ctx, bool *fired) {
    bytes_fixture *b = ctx;
    nn_net *net = NULL;
    char *meta = NULL;
    core_error err = {0};
    failalloc_arm(++b->n);
    core_status rc = nn_model_parse((const uint8_t *)b->bytes, b->len, NULL, &net, &meta, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired) assert_int_equal(rc, CORE_OK);
    if (rc) assert_null(net);
    nn_net_free(net);
    free(meta);
}

static void nn_model_parse_survives_every_failure(void **state) {
    (void)state;
    bytes_fixture b = {0};
    assert_int_equal(core_read_file(TEST_CORPUS_NN "/small.csm", &b.bytes, &b.len, NULL), CORE_OK);
    print_message("nn_model_parse: %ld allocation points\n", every_point(parse_model, &b));
    free(b.bytes);
}

/* ---- parsing JSON: the exact value or CORE_ERR_NOMEM ----
 *
 * jansson 2.14's lexer drops a byte of a string when growing the string's
 * buffer fails, and the parse succeeds ("atopic_dermatitis" read as
 * "atopic_dermatiis"). core_json_loadb (core.h) throws such a parse away.
 * Long strings, so their buffers grow several times, escapes (their bytes
 * are saved one by one too), keys and nesting. The expected value is built
 * with json_pack, not by parsing. */
typedef struct {
    char *text;
    json_t *want;
    const char *long_key; /* in want: the long string, compared byte for byte */
    bool http;            /* through http_parse_json_object, as a request body is */
    long n, nomem;
} parse_fixture;

static void parse_once(void *ctx, bool *fired) {
    parse_fixture *p = ctx;
    core_error err = {0};
    size_t len = strlen(p->text);
    failalloc_arm(++p->n);
    json_t *v = p->http ? http_parse_json_object(p->text, len, &err)
                        : core_json_loadb(p->text, len, JSON_REJECT_DUPLICATES, NULL, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (v) {
        assert_string_equal(json_string_value(json_object_get(v, p->long_key)),
                            json_string_value(json_object_get(p->want, p->long_key)));
        assert_true(json_equal(v, p->want));
    } else {
        assert_int_equal(err.code, CORE_ERR_NOMEM);
        p->nomem++;
    }
    /* Every allocation in the armed region is the parse's: one that failed
     * leaves no value, and with none failing the value is there. */
    assert_true(*fired == (v == NULL));
    json_decref(v);
}

static void parse_fixture_init(parse_fixture *p, bool http) {
    /* 23 × 40 bytes of diagnosis codes, then é, a newline, a quote and 𝄞
     * (a surrogate pair) as escapes. */
    char lng[1024] = "", esc[1024] = "";
    for (int i = 0; i < 40; i++) strcat(lng, "atopic_dermatitis.L20.9");
    snprintf(esc, sizeof esc, "%s\\u00e9\\n\\\"\\ud834\\udd1e end", lng);
    char want_str[1100];
    snprintf(want_str, sizeof want_str, "%s\xc3\xa9\n\"\xf0\x9d\x84\x9e end", lng);
    size_t cap = 4096;
    p->text = malloc(cap);
    assert_non_null(p->text);
    snprintf(p->text, cap,
             "{\"kind\":\"note\",\"condition\":\"%s\",\"body\":\"%s\",\"tags\":[\"L20.9\",\"itch\"],"
             "\"at\":{\"region\":\"GB-ENG\",\"week\":2614}}",
             lng, esc);
    p->want = json_pack("{s:s, s:s, s:s, s:[s,s], s:{s:s, s:i}}", "kind", "note", "condition", lng, "body", want_str,
                        "tags", "L20.9", "itch", "at", "region", "GB-ENG", "week", 2614);
    assert_non_null(p->want);
    p->long_key = "body";
    p->http = http;
}

static void core_json_parse_never_alters(void **state) {
    (void)state;
    for (int http = 0; http < 2; http++) {
        parse_fixture p = {0};
        parse_fixture_init(&p, http);
        long points = every_point(parse_once, &p);
        print_message("%s: %ld allocation points, %ld out of memory\n",
                      http ? "http_parse_json_object" : "core_json_loadb", points, p.nomem);
        /* the failure was met at every point but the last, and refused each time */
        assert_int_equal(p.nomem, points - 1);
        assert_true(points > 20); /* the long strings' buffers grew several times */
        json_decref(p.want);
        free(p.text);
    }
}

/* anon (issue 14): stored rows parsed; then delivered (k = 2: one class goes
 * up a level, one is held back), written as CSV and JSON, and dumped. The
 * first code is longer than jansson's 16-byte string buffer so that its
 * growth fails inside it: jansson then drops a byte and parses on
 * ("atopic_dermatiis.L20.9", still a valid code) unless anon refuses it. */
static const char anon_rows_json[] =
    "[{\"age_band\":\"30-34\",\"sex\":\"female\",\"region\":\"NZ-AUK\",\"week\":\"2026-W10\","
    "\"category\":\"condition\",\"code\":\"atopic_dermatitis.L20.9\",\"tag\":\"00112233445566778899aabbccddeeff\"},"
    "{\"age_band\":\"30-34\",\"sex\":\"female\",\"region\":\"NZ-CAN\",\"week\":\"2026-W10\","
    "\"category\":\"symptom\",\"code\":\"itch\",\"tag\":\"ffeeddccbbaa99887766554433221100\"},"
    "{\"age_band\":\"90+\",\"sex\":\"other\",\"region\":\"\",\"week\":\"2026-W53\","
    "\"category\":\"demographics\",\"code\":\"\",\"tag\":\"0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a\"}]";

static void anon_parse_once(void *ctx, bool *fired) {
    long *n = ctx;
    core_error err = {0};
    anon_row *rows = NULL;
    size_t count = 0;
    failalloc_arm(++*n);
    core_status rc = anon_rows_parse(anon_rows_json, sizeof anon_rows_json - 1, &rows, &count, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired) assert_int_equal(rc, CORE_OK);
    if (!rc) { /* never different rows: jansson can drop a byte when out of memory */
        char *back = NULL;
        assert_int_equal(anon_rows_dump(rows, count, &back, &err), CORE_OK);
        assert_string_equal(back, anon_rows_json);
        free(back);
    }
    if (rc) {
        assert_null(rows);
        /* jansson 2.14 reports some of its allocation failures as a syntax
         * error, and some as a damaged value (a dropped byte) that the row
         * check then refuses: "invalid" is all it can say (anon.h). What
         * must never happen is success with other rows (checked above). */
        assert_true(rc == CORE_ERR_NOMEM || rc == CORE_ERR_INVALID);
    }
    free(rows);
}

typedef struct {
    anon_row *rows;
    size_t count;
    long n;
} anon_fixture;

static void anon_deliver_once(void *ctx, bool *fired) {
    anon_fixture *f = ctx;
    static const uint64_t who[3] = {1, 2, 3};
    core_error err = {0};
    size_t len = 0;
    anon_delivery *d = NULL;
    char *csv = NULL, *dump = NULL;
    json_t *doc = NULL;
    failalloc_arm(++f->n);
    core_status rc = anon_deliver(f->rows, who, f->count, 2, &d, &err);
    if (!rc) rc = anon_delivery_csv(d, &csv, &len, &err);
    if (!rc) rc = anon_delivery_json(d, &doc, &err);
    if (!rc) rc = anon_rows_dump(f->rows, f->count, &dump, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired) {
        assert_int_equal(rc, CORE_OK);
        assert_int_equal(anon_delivery_size(d), 2);
        assert_int_equal(anon_delivery_stats(d)->held_back, 1);
    }
    if (rc) assert_int_equal(rc, CORE_ERR_NOMEM);
    json_decref(doc);
    free(csv);
    free(dump);
    anon_delivery_free(d);
}

static void anon_survives_every_failure(void **state) {
    (void)state;
    long n = 0;
    print_message("anon_rows_parse: %ld allocation points\n", every_point(anon_parse_once, &n));
    anon_fixture f = {0};
    core_error err = {0};
    assert_int_equal(anon_rows_parse(anon_rows_json, sizeof anon_rows_json - 1, &f.rows, &f.count, &err), CORE_OK);
    print_message("anon deliver/csv/json/dump: %ld allocation points\n", every_point(anon_deliver_once, &f));
    free(f.rows);
}

/* ---- a data request's delivery (market_deliver, issue 14) ----
 * Rows read, counted in people, made k-anonymous, the CSV hashed, the
 * release put on the ledger and the delivery recorded: with any allocation
 * failing, the call returns, nothing leaks, and the delivery is recorded
 * whole (with its receipt) or not at all; unarmed, the next delivery
 * works. Each run rewrites one row first (k = 1: every row delivered as
 * it is), so every run is a new dataset and reaches the ledger and the
 * record (a repeat would stop at the receipt).
 * The ledger's producer thread allocates while the caller waits for it, so
 * the counter also meets its block commit: a failed block is rolled back
 * and the call is refused. */
typedef struct {
    char dir[256];
    store *st;
    ledger *led;
    market *m;
    uint8_t node_pk[32], node_sk[64], admin_pk[32], admin_sk[64], org_pk[32], org_sk[64];
    char id[MARKET_ID_TEXT];
    int rows;
    long n;
} market_fixture;

static const char *const market_codes[] = {"fungal", "eczema"};

static int64_t market_count(market_fixture *f, const char *sql) {
    sqlite3 *db = store_acquire(f->st);
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    store_release(f->st, db);
    return n;
}

/* A row of the request's dataset; which = -1 adds one, else rewrites the
 * fixed row `which` with the week of run, so each run delivers a new
 * dataset of the same size (a growing one would outrun the failure point). */
static void market_row(market_fixture *f, int which, long run) {
    static const char *const places[] = {"NZ-AUK", "NZ-WGN", "NZ-CAN"};
    char row[200];
    int i = which < 0 ? f->rows : which;
    snprintf(row, sizeof row,
             "{\"age_band\":\"40-44\",\"category\":\"conditions\",\"code\":\"%s\",\"region\":\"%s\","
             "\"sex\":\"female\",\"week\":\"%04ld-W%02ld\"}",
             market_codes[i % 2], places[i % 3], 2000 + run / 50, 1 + run % 50);
    uint8_t tag[16] = {0}, who[16];
    tag[0] = (uint8_t)i; /* the row's tag: stable, so a run rewrites its row */
    cs_crypto_random(who, sizeof who);
    sqlite3 *db = store_acquire(f->st);
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "INSERT INTO market_rows (tag, request_id, row, contributor) "
                                        "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (tag) DO UPDATE SET row = ?3",
                                        -1, &q, NULL),
                     SQLITE_OK);
    sqlite3_bind_blob(q, 1, tag, 16, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, f->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 3, row, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(q, 4, who, 16, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);
    store_release(f->st, db);
    if (which < 0) f->rows++;
}

static int market_setup(void **state) {
    market_fixture *f = calloc(1, sizeof *f);
    if (cs_crypto_init(NULL)) return -1;
    testutil_ledger_open(f->dir, f->node_pk, f->node_sk, f->admin_pk, f->admin_sk, &f->st, &f->led);
    ledger_keypair(f->org_pk, f->org_sk);
    ledger_receipt r;
    ledger_tx tx = {.kind = LEDGER_TX_REGISTER_ORG};
    memcpy(tx.u.org.org, f->org_pk, 32);
    snprintf(tx.u.org.name, sizeof tx.u.org.name, "Alloc Research");
    core_error err = {0};
    if (ledger_sign_submit(f->led, &tx, f->admin_sk, &r, &err)) fail_msg("register_org: %s", err.message);
    ledger_tx credit = {.kind = LEDGER_TX_CREDIT};
    memcpy(credit.u.credit.org, f->org_pk, 32);
    credit.u.credit.amount = 100;
    snprintf(credit.u.credit.reference, sizeof credit.u.credit.reference, "INV-A");
    if (ledger_sign_submit(f->led, &credit, f->node_sk, &r, &err)) fail_msg("credit: %s", err.message);
    market_options mo = {.st = f->st,
                         .led = f->led,
                         .conditions = market_codes,
                         .n_conditions = 2,
                         .node_sk = f->node_sk,
                         .daily_cap = 100};
    if (market_open(&mo, &f->m, &err)) fail_msg("market_open: %s", err.message);
    json_t *in =
        json_pack("{s:s, s:s, s:s, s:[s], s:i, s:i, s:s}", "title", "t", "purpose_text", "p", "purpose", "research",
                  "categories", "conditions", "price", 5, "max_participants", 4, "closes", "2099-01-01T00:00:00Z");
    json_t *out = NULL;
    core_status rc = market_request_create(f->m, f->org_pk, in, &out, &err);
    json_decref(in);
    if (rc) fail_msg("market_request_create: %s", err.message);
    snprintf(f->id, sizeof f->id, "%s", json_string_value(json_object_get(out, "id")));
    json_decref(out);
    for (int i = 0; i < 6; i++) market_row(f, -1, i);
    *state = f;
    return 0;
}

static int market_teardown(void **state) {
    market_fixture *f = *state;
    market_close(f->m);
    testutil_ledger_close(f->dir, f->st, f->led);
    free(f);
    return 0;
}

static void deliver_once(void *ctx, bool *fired) {
    market_fixture *f = ctx;
    market_row(f, 0, 100 + f->n); /* a new dataset each run, of the same size */
    int64_t before = market_count(f, "SELECT count(*) FROM market_deliveries");
    anon_delivery *d = NULL;
    market_delivery_receipt r;
    core_error err = {0};
    failalloc_arm(++f->n);
    core_status rc = market_deliver(f->m, f->org_pk, f->id, 1, &d, &r, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired) assert_int_equal(rc, CORE_OK);
    int64_t after = market_count(f, "SELECT count(*) FROM market_deliveries");
    if (rc) {
        assert_true(err.message[0]);
        assert_null(d);
        assert_int_equal(after, before); /* not recorded: never half of one */
    } else {
        assert_non_null(d);
        assert_false(r.repeat);
        assert_int_equal(after, before + 1);
        assert_true(anon_delivery_stats(d)->rows_in == (size_t)f->rows);
    }
    anon_delivery_free(d);
    /* Recorded with its receipt, or not at all. */
    assert_int_equal(market_count(f, "SELECT count(*) FROM market_deliveries WHERE length(txid) <> 32"), 0);
}

static void market_deliver_survives_every_failure(void **state) {
    market_fixture *f = *state;
    long points = every_point(deliver_once, f);
    print_message("market_deliver: %ld allocation points\n", points);
    assert_true(points > 20);
    /* Unarmed, the service goes on: the same dataset again is a repeat. */
    anon_delivery *d = NULL;
    market_delivery_receipt r;
    core_error err = {0};
    assert_int_equal(market_deliver(f->m, f->org_pk, f->id, 1, &d, &r, &err), CORE_OK);
    assert_true(r.repeat);
    anon_delivery_free(d);
}

/* ---- market (issue 14): approval, acceptance and delivery, where a ledger
 * step sits between two writes of caresync.db. What must hold at every
 * point: the call returns; a failure leaves nothing or what market_recover
 * (run at every start) finishes; a person is paid exactly when their
 * participation and rows are stored; a dataset said delivered is on the
 * ledger with the CSV's hash. The ledger's producer thread allocates while
 * armed too, so a failure can also roll a block back. ---- */

static const char *const MARKET_CODES[] = {"fungal", "eczema", "melanoma"};

typedef struct {
    char dir[256];
    uint8_t node_pk[LEDGER_KEY], node_sk[LEDGER_SECRET], admin_pk[LEDGER_KEY], admin_sk[LEDGER_SECRET];
    uint8_t org_pk[LEDGER_KEY], org_sk[LEDGER_SECRET];
    ledger *l;
    store *st;
    market *m;
    char id[MARKET_ID_TEXT]; /* an approved request everyone matches */
    int64_t owner;           /* the last person made */
    long n;
    long after_failure; /* failures that still left the write whole (recovered or done) */
    long orphans;       /* releases on the ledger that a failed delivery did not record */
    long answer_only;   /* failures after the write was whole: only building the answer failed */
    long told_failed;   /* calls answered failed (each checked: everything as before) */
    regions *regs;      /* review's scenario */
    review *rv;
    share *sh; /* share's scenario */
} ledgered_fixture;

static void ledgered_new_request(ledgered_fixture *f, int max, char id[MARKET_ID_TEXT]) {
    json_t *in =
        json_pack("{s:s, s:s, s:s, s:[s], s:i, s:i, s:s}", "title", "t", "purpose_text", "p", "purpose", "research",
                  "categories", "demographics", "price", 1, "max_participants", max, "closes", "2099-01-01T00:00:00Z");
    json_t *out = NULL;
    core_error err = {0};
    if (market_request_create(f->m, f->org_pk, in, &out, &err)) fail_msg("market_request_create: %s", err.message);
    snprintf(id, MARKET_ID_TEXT, "%s", json_string_value(json_object_get(out, "id")));
    json_decref(out);
    json_decref(in);
}

static int ledgered_setup(void **state) {
    ledgered_fixture *f = calloc(1, sizeof *f);
    testutil_ledger_open(f->dir, f->node_pk, f->node_sk, f->admin_pk, f->admin_sk, &f->st, &f->l);
    ledger_keypair(f->org_pk, f->org_sk);
    core_error err = {0};
    market_options mo = {.st = f->st,
                         .led = f->l,
                         .conditions = MARKET_CODES,
                         .n_conditions = 3,
                         .node_sk = f->node_sk,
                         .daily_cap = 100};
    if (market_open(&mo, &f->m, &err)) fail_msg("market_open: %s", err.message);
    ledger_tx tx = {.kind = LEDGER_TX_REGISTER_ORG};
    memcpy(tx.u.org.org, f->org_pk, LEDGER_KEY);
    snprintf(tx.u.org.name, sizeof tx.u.org.name, "%s", "Research Institute");
    ledger_receipt rec;
    if (ledger_sign_submit(f->l, &tx, f->admin_sk, &rec, &err)) fail_msg("register org: %s", err.message);
    if (market_credit(f->m, f->org_pk, 1000000, "INV-1", rec.txid, NULL, &err)) fail_msg("credit: %s", err.message);
    ledgered_new_request(f, MARKET_PARTICIPANTS_MAX, f->id);
    json_t *out = NULL;
    if (market_request_approve(f->m, f->id, &out, &err)) fail_msg("approve: %s", err.message);
    json_decref(out);
    *state = f;
    return 0;
}

static int ledgered_teardown(void **state) {
    ledgered_fixture *f = *state;
    market_close(f->m);
    testutil_ledger_close(f->dir, f->st, f->l);
    free(f);
    return 0;
}

static int64_t org_balance(ledgered_fixture *f) {
    ledger_account a = {0};
    assert_int_equal(ledger_get_account(f->l, f->org_pk, &a, NULL), CORE_OK);
    return a.balance;
}

static const char *request_state(ledgered_fixture *f, const char *id, json_t **hold) {
    assert_int_equal(market_request_get(f->m, NULL, id, hold, NULL), CORE_OK);
    return json_string_value(json_object_get(*hold, "state"));
}

/* The ledger's totals (minted, burned, wallets, consents active,
 * organisations, escrowed): a call told failed leaves them as they were. */
static ledger_totals totals_of(ledgered_fixture *f) {
    ledger_totals t;
    assert_int_equal(ledger_get_totals(f->l, &t, NULL), CORE_OK);
    return t;
}

static bool totals_equal(const ledger_totals *a, const ledger_totals *b) {
    return a->minted == b->minted && a->burned == b->burned && a->wallets == b->wallets &&
           a->consents_active == b->consents_active && a->orgs == b->orgs && a->escrowed == b->escrowed;
}

/* Intents market_recover would still have to resolve: none may be left
 * by a call, whatever it answered (it resolves its own at once). */
static int market_left_over(ledgered_fixture *f) {
    int resolved = -1;
    assert_int_equal(market_recover(f->m, &resolved, NULL), CORE_OK);
    return resolved;
}

/* Approval funds the whole escrow. Told failed: the request is pending and
 * nothing is escrowed, exactly as before; told OK: open with price × places
 * escrowed, and the answer is what reading the request gives. */
static void approve_once(void *ctx, bool *fired) {
    ledgered_fixture *f = ctx;
    char id[MARKET_ID_TEXT];
    ledgered_new_request(f, 3, id);
    int64_t before = org_balance(f);
    ledger_totals t0 = totals_of(f);
    json_t *out = NULL;
    core_error err = {0};
    failalloc_arm(++f->n);
    core_status rc = market_request_approve(f->m, id, &out, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired) assert_int_equal(rc, CORE_OK);
    int left = market_left_over(f);
    json_t *hold = NULL;
    const char *state = request_state(f, id, &hold);
    ledger_totals t1 = totals_of(f);
    if (rc) {
        assert_null(out);
        assert_true(err.message[0]);
        f->told_failed++;
        if (strcmp(state, "pending") || org_balance(f) != before || !totals_equal(&t0, &t1) || left)
            fail_msg("point %ld: approve answered failed (%s) while the request is %s with %lld tokens escrowed "
                     "(%d intents left)",
                     f->n, err.message, state, (long long)(before - org_balance(f)), left);
    } else {
        assert_int_equal(left, 0);
        assert_string_equal(state, "open");
        assert_int_equal(org_balance(f), before - 3);
        assert_int_equal(t1.escrowed, t0.escrowed + 3);
        if (!json_equal(out, hold)) { /* the answer of a clean success */
            char *a = json_dumps(out, JSON_SORT_KEYS), *b = json_dumps(hold, JSON_SORT_KEYS);
            fail_msg("point %ld: approve answered\n%s\nbut the request reads\n%s", f->n, a, b);
        }
    }
    json_decref(out);
    json_decref(hold);
    /* withdrawn (unarmed), so that the open requests every read sweeps stay few */
    assert_int_equal(market_request_withdraw(f->m, NULL, id, &hold, NULL), CORE_OK);
    json_decref(hold);
}

static void market_approve_survives_every_failure(void **state) {
    ledgered_fixture *f = *state;
    print_message("market_request_approve: %ld allocation points", every_point(approve_once, f));
    print_message(" (%ld told failed, each with the request pending and nothing escrowed)\n", f->told_failed);
}

/* The organisation withdraws an open request: closed on the ledger, the
 * remainder returned. Told failed: still open with its escrow; told OK:
 * closed, every token back, the answer what reading the request gives. */
static void request_withdraw_once(void *ctx, bool *fired) {
    ledgered_fixture *f = ctx;
    char id[MARKET_ID_TEXT];
    ledgered_new_request(f, 3, id);
    json_t *out = NULL, *hold = NULL;
    core_error err = {0};
    if (market_request_approve(f->m, id, &out, &err)) fail_msg("approve: %s", err.message);
    json_decref(out);
    out = NULL;
    int64_t before = org_balance(f);
    ledger_totals t0 = totals_of(f);
    failalloc_arm(++f->n);
    core_status rc = market_request_withdraw(f->m, f->org_pk, id, &out, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired) assert_int_equal(rc, CORE_OK);
    int left = market_left_over(f);
    const char *state = request_state(f, id, &hold);
    ledger_totals t1 = totals_of(f);
    if (rc) {
        assert_null(out);
        assert_true(err.message[0]);
        f->told_failed++;
        if (strcmp(state, "open") || org_balance(f) != before || !totals_equal(&t0, &t1) || left)
            fail_msg("point %ld: withdraw answered failed (%s) while the request is %s and %lld tokens came back "
                     "(%d intents left)",
                     f->n, err.message, state, (long long)(org_balance(f) - before), left);
        json_decref(hold);
        assert_int_equal(market_request_withdraw(f->m, NULL, id, &hold, NULL), CORE_OK); /* unarmed: few open */
    } else {
        assert_int_equal(left, 0);
        assert_string_equal(state, "closed");
        assert_int_equal(org_balance(f), before + 3);
        assert_int_equal(t1.escrowed, t0.escrowed - 3);
        assert_true(json_equal(out, hold));
    }
    json_decref(out);
    json_decref(hold);
}

static void market_request_withdraw_survives_every_failure(void **state) {
    ledgered_fixture *f = *state;
    print_message("market_request_withdraw: %ld allocation points", every_point(request_withdraw_once, f));
    print_message(" (%ld told failed, each with the request open and its escrow whole)\n", f->told_failed);
}

/* A new person with a registered wallet, made unarmed. */
typedef struct {
    uint8_t pk[LEDGER_KEY], sk[LEDGER_SECRET], data_key[32];
    json_t *profile, *entries;
    market_person p;
} market_someone;

static void someone_new(ledgered_fixture *f, market_someone *s) {
    ledger_keypair(s->pk, s->sk);
    cs_crypto_random(s->data_key, sizeof s->data_key);
    ledger_tx tx = {.kind = LEDGER_TX_REGISTER_WALLET};
    ledger_receipt rec;
    assert_int_equal(ledger_sign_submit(f->l, &tx, s->sk, &rec, NULL), CORE_OK);
    /* the account row the market's rows refer to (its keys are not used here) */
    sqlite3 *db = store_acquire(f->st);
    char sql[300];
    snprintf(sql, sizeof sql,
             "INSERT INTO users(id, username, role, created_at, pw_salt, pw_ops, pw_mem, pw_verifier, dk_pw, "
             "rc_salt, dk_rc) VALUES (%lld, 'p%lld', 'person', 0, x'00', 1, 1, x'00', x'00', x'00', x'00')",
             (long long)(f->owner + 1), (long long)(f->owner + 1));
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    store_release(f->st, db);
    s->profile = json_pack("{s:i, s:s, s:s}", "birth_year", 1990, "sex", "female", "region", "NZ-AUK");
    s->entries = json_array();
    s->p = (market_person){
        .owner = ++f->owner, .data_key = s->data_key, .wallet_sk = s->sk, .profile = s->profile, .entries = s->entries};
}

static size_t rows_of(ledgered_fixture *f, const char *id) {
    json_t *rows = NULL;
    assert_int_equal(market_rows_for_request(f->m, id, &rows, NULL), CORE_OK);
    size_t n = json_array_size(rows);
    json_decref(rows);
    return n;
}

static int64_t escrow_remaining(ledgered_fixture *f, const char *id) {
    json_t *hold = NULL;
    assert_int_equal(market_request_get(f->m, NULL, id, &hold, NULL), CORE_OK);
    int64_t n = json_integer_value(json_object_get(hold, "remaining"));
    json_decref(hold);
    return n;
}

/* The person's participations: how many, and how many withdrawn. */
static size_t participations_of(ledgered_fixture *f, int64_t owner, size_t *withdrawn) {
    json_t *parts = NULL;
    assert_int_equal(market_participations(f->m, owner, &parts, NULL), CORE_OK);
    const json_t *a = json_object_get(parts, "participations");
    size_t i, n = json_array_size(a);
    const json_t *p;
    if (withdrawn) *withdrawn = 0;
    json_array_foreach(a, i, p) if (withdrawn && json_is_string(json_object_get(p, "withdrawn_at")))(*withdrawn)++;
    json_decref(parts);
    return n;
}

/* Acceptance: consent, payment, rows. Told failed: no payment, no
 * participation, no row, the escrow and every ledger total as before (a
 * consent made on the way is revoked again); told OK: paid, the
 * participation and the row stored, one place fewer in the escrow. */
static void accept_once(void *ctx, bool *fired) {
    ledgered_fixture *f = ctx;
    market_someone s;
    someone_new(f, &s);
    size_t rows_before = rows_of(f, f->id);
    int64_t remaining_before = escrow_remaining(f, f->id);
    ledger_totals t0 = totals_of(f);
    json_t *out = NULL;
    core_error err = {0};
    failalloc_arm(++f->n);
    core_status rc = market_accept(f->m, &s.p, f->id, &out, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired && rc) fail_msg("market_accept at point %ld: %s (%s)", f->n, err.message, err.field);
    int left = market_left_over(f);
    ledger_account a = {0};
    assert_int_equal(ledger_get_account(f->l, s.pk, &a, NULL), CORE_OK);
    size_t n_parts = participations_of(f, s.p.owner, NULL), rows = rows_of(f, f->id);
    int64_t remaining = escrow_remaining(f, f->id);
    ledger_totals t1 = totals_of(f);
    if (rc) {
        assert_null(out);
        assert_true(err.message[0]);
        f->told_failed++;
        if (a.balance != 0 || n_parts || rows != rows_before || remaining != remaining_before ||
            !totals_equal(&t0, &t1) || left)
            fail_msg("point %ld: accept answered failed (%s) while the person holds %lld, %zu participations, "
                     "%zu new rows (%d intents left)",
                     f->n, err.message, (long long)a.balance, n_parts, rows - rows_before, left);
    } else {
        assert_int_equal(left, 0);
        assert_int_equal(a.balance, 1);
        assert_int_equal(n_parts, 1);
        assert_int_equal(rows, rows_before + 1);
        assert_int_equal(remaining, remaining_before - 1);
        assert_int_equal(json_integer_value(json_object_get(out, "paid")), 1);
        assert_int_equal(json_array_size(json_object_get(out, "rows")), 1);
        assert_non_null(json_string_value(json_object_get(out, "payment_txid")));
    }
    json_decref(out);
    json_decref(s.profile);
    json_decref(s.entries);
}

static void market_accept_survives_every_failure(void **state) {
    ledgered_fixture *f = *state;
    print_message("market_accept: %ld allocation points", every_point(accept_once, f));
    print_message(" (%ld told failed, each with nothing paid, stored or escrowed differently)\n", f->told_failed);
}

/* The person withdraws from a request they took part in (made unarmed):
 * their rows deleted by the tags only their data key opens, the
 * participation marked withdrawn, in one transaction. Told failed: every
 * row still there and nothing marked; told OK: the row gone, marked. */
static void withdraw_once(void *ctx, bool *fired) {
    ledgered_fixture *f = ctx;
    market_someone s;
    someone_new(f, &s);
    json_t *out = NULL;
    core_error err = {0};
    if (market_accept(f->m, &s.p, f->id, &out, &err)) fail_msg("market_accept: %s (%s)", err.message, err.field);
    json_decref(out);
    size_t rows_before = rows_of(f, f->id);
    ledger_totals t0 = totals_of(f);
    failalloc_arm(++f->n);
    core_status rc = market_withdraw(f->m, s.p.owner, s.data_key, f->id, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired) assert_int_equal(rc, CORE_OK);
    size_t withdrawn = 0, n_parts = participations_of(f, s.p.owner, &withdrawn), rows = rows_of(f, f->id);
    ledger_totals t1 = totals_of(f);
    assert_int_equal(n_parts, 1);
    assert_true(totals_equal(&t0, &t1)); /* the payment stays paid either way */
    if (rc) {
        assert_true(err.message[0]);
        f->told_failed++;
        if (withdrawn || rows != rows_before)
            fail_msg("point %ld: withdraw answered failed (%s) while %zu rows went", f->n, err.message,
                     rows_before - rows);
    } else {
        assert_int_equal(withdrawn, 1);
        assert_int_equal(rows, rows_before - 1);
    }
    json_decref(s.profile);
    json_decref(s.entries);
}

static void market_withdraw_survives_every_failure(void **state) {
    ledgered_fixture *f = *state;
    print_message("market_withdraw: %ld allocation points", every_point(withdraw_once, f));
    print_message(" (%ld told failed, each with the rows and the participation as before)\n", f->told_failed);
}

static uint64_t ledger_size(ledgered_fixture *f) {
    ledger_block b;
    assert_int_equal(ledger_head(f->l, &b, NULL), CORE_OK);
    return b.tree_size;
}

/* Delivery: each run a request of its own with one acceptance (a dataset
 * never delivered before, of the same size every run, so every run reaches
 * the release). Said delivered = on the ledger with the CSV's hash, and the
 * same bytes again are a repeat of that receipt. */
static void deliver_release_once(void *ctx, bool *fired) {
    ledgered_fixture *f = ctx;
    char id[MARKET_ID_TEXT];
    ledgered_new_request(f, 2, id);
    json_t *out = NULL;
    core_error aerr = {0};
    if (market_request_approve(f->m, id, &out, &aerr)) fail_msg("approve: %s", aerr.message);
    json_decref(out);
    market_someone s;
    someone_new(f, &s);
    if (market_accept(f->m, &s.p, id, &out, &aerr)) fail_msg("market_accept: %s (%s)", aerr.message, aerr.field);
    json_decref(out);
    json_decref(s.profile);
    json_decref(s.entries);
    uint64_t size_before = ledger_size(f);
    anon_delivery *d = NULL;
    market_delivery_receipt r, again;
    core_error err = {0};
    failalloc_arm(++f->n);
    core_status rc = market_deliver(f->m, f->org_pk, id, 1, &d, &r, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired) assert_int_equal(rc, CORE_OK);
    if (rc) {
        assert_null(d);
        assert_true(err.message[0]);
        f->told_failed++;
        if (ledger_size(f) > size_before)
            fail_msg("point %ld: deliver answered failed (%s) while its release is on the ledger", f->n, err.message);
    } else {
        assert_false(r.repeat);
        char *csv = NULL;
        size_t len = 0;
        uint8_t h[LEDGER_HASH];
        assert_int_equal(anon_delivery_csv(d, &csv, &len, NULL), CORE_OK);
        cs_crypto_sha256(h, csv, len);
        assert_memory_equal(h, r.sha256, LEDGER_HASH);
        uint8_t *buf = NULL;
        size_t blen = 0;
        uint64_t seq, height;
        assert_int_equal(ledger_get_tx(f->l, r.txid, &buf, &blen, &seq, &height, NULL), CORE_OK);
        ledger_tx tx;
        assert_int_equal(ledger_tx_decode(buf, blen, &tx, NULL), CORE_OK);
        assert_int_equal(tx.kind, LEDGER_TX_RELEASE);
        assert_memory_equal(tx.u.release.query, h, LEDGER_HASH);
        free(buf);
        free(csv);
        anon_delivery_free(d);
        assert_int_equal(market_deliver(f->m, f->org_pk, id, 1, &d, &again, NULL), CORE_OK);
        assert_true(again.repeat);
        assert_memory_equal(again.txid, r.txid, LEDGER_HASH);
        anon_delivery_free(d);
    }
    assert_int_equal(market_request_withdraw(f->m, NULL, id, &out, NULL), CORE_OK);
    json_decref(out);
}

static void market_deliver_release_survives_every_failure(void **state) {
    ledgered_fixture *f = *state;
    print_message("market_deliver: %ld allocation points", every_point(deliver_release_once, f));
    print_message(" (%ld told failed, none with a release on the ledger)\n", f->told_failed);
}

/* ---- review (issue 13): a person's request for review — the case copy
 * sealed twice, an intent, the escrow on the ledger, the case row. After a
 * failure and review_recover (run at every start) the person either has a
 * waiting case with the price in escrow, or no case and every token. ---- */

static int review_setup(void **state) {
    if (ledgered_setup(state)) return -1;
    ledgered_fixture *f = *state;
    core_error err = {0};
    if (regions_load(TEST_ISO_CODES_DIR, &f->regs, &err)) fail_msg("regions: %s", err.message);
    review_options ro = {.st = f->st,
                         .led = f->l,
                         .regs = f->regs,
                         .conditions = MARKET_CODES,
                         .n_conditions = 3,
                         .node_sk = f->node_sk};
    if (review_open(&ro, &f->rv, &err)) fail_msg("review_open: %s", err.message);
    review_offer o;
    memset(&o, 0, sizeof o);
    memcpy(o.org, f->org_pk, LEDGER_KEY);
    o.price = 5;
    o.answer_hours = 48;
    snprintf(o.conditions[o.n_conditions++], sizeof o.conditions[0], "%s", "fungal");
    snprintf(o.regions[o.n_regions++], sizeof o.regions[0], "%s", "*");
    if (review_offer_set(f->rv, &o, &err)) fail_msg("review_offer_set: %s", err.message);
    return 0;
}

static int review_teardown(void **state) {
    ledgered_fixture *f = *state;
    review_close(f->rv);
    regions_free(f->regs);
    return ledgered_teardown(state);
}

static int64_t cases_of(ledgered_fixture *f, int64_t owner, const char *state) {
    sqlite3 *db = store_acquire(f->st);
    sqlite3_stmt *q = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT count(*) FROM review_cases WHERE owner = ?1 AND state = ?2", -1, &q, NULL),
        SQLITE_OK);
    sqlite3_bind_int64(q, 1, owner);
    sqlite3_bind_text(q, 2, state, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    store_release(f->st, db);
    return n;
}

static int64_t review_count(ledgered_fixture *f, const char *sql, const char *id) {
    sqlite3 *db = store_acquire(f->st);
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    if (id) sqlite3_bind_text(q, 1, id, -1, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    store_release(f->st, db);
    return n;
}

static int64_t balance_of_key(ledgered_fixture *f, const uint8_t pk[LEDGER_KEY]) {
    ledger_account a = {0};
    core_status rc = ledger_get_account(f->l, pk, &a, NULL);
    assert_true(rc == CORE_OK || rc == CORE_ERR_NOT_FOUND);
    return a.balance;
}

/* A new person holding 10 tokens (a node-signed contribution under a
 * consent of theirs), made unarmed. */
static void review_person(ledgered_fixture *f, market_someone *s) {
    someone_new(f, s);
    json_decref(s->profile);
    json_decref(s->entries);
    ledger_tx g = {.kind = LEDGER_TX_GRANT};
    g.u.grant.scope = 1u << LEDGER_CAT_SCREENING;
    g.u.grant.purpose = LEDGER_PURPOSE_SURVEILLANCE;
    g.u.grant.expires = 4000000000u;
    ledger_receipt gr, cr;
    assert_int_equal(ledger_sign_submit(f->l, &g, s->sk, &gr, NULL), CORE_OK);
    ledger_tx c = {.kind = LEDGER_TX_CONTRIBUTE};
    memcpy(c.u.contribute.contributor, s->pk, LEDGER_KEY);
    memcpy(c.u.contribute.grant, gr.txid, LEDGER_HASH);
    c.u.contribute.category = LEDGER_CAT_SCREENING;
    cs_crypto_random(c.u.contribute.commitment, LEDGER_HASH);
    c.u.contribute.reward = 10;
    assert_int_equal(ledger_sign_submit(f->l, &c, f->node_sk, &cr, NULL), CORE_OK);
}

static const uint8_t review_jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 4, 0xFF, 0xD9};

static review_request_in review_in(ledgered_fixture *f, market_someone *s) {
    return (review_request_in){.owner = s->p.owner,
                               .data_key = s->data_key,
                               .wallet_sk = s->sk,
                               .org = f->org_pk,
                               .title = "Skin check: fungal (71 %)",
                               .details = "fungal: 71 %\n",
                               .jpeg = review_jpeg,
                               .jpeg_len = sizeof review_jpeg,
                               .share = {.age_band = "30-44", .body_site = "arm"}};
}

/* A person with a waiting case (5 of their 10 tokens in escrow), unarmed. */
static void review_waiting_case(ledgered_fixture *f, market_someone *s, char id[REVIEW_CASE_ID_TEXT]) {
    review_person(f, s);
    review_request_in in = review_in(f, s);
    core_error err = {0};
    if (review_case_request(f->rv, &in, id, &err)) fail_msg("review_case_request: %s", err.message);
}

static int64_t review_intents(ledgered_fixture *f) {
    return review_count(f, "SELECT count(*) FROM review_intents", NULL);
}

/* The request: told failed, no case, no intent, every token and nothing
 * on the ledger (no escrow made and refunded); told OK, a waiting case
 * with the price in escrow. review_recover is not run: nothing may need
 * it. */
static void review_request_once(void *ctx, bool *fired) {
    ledgered_fixture *f = ctx;
    market_someone s;
    review_person(f, &s);
    review_request_in in = review_in(f, &s);
    char id[REVIEW_CASE_ID_TEXT];
    core_error err = {0};
    uint64_t size_before = ledger_size(f);
    failalloc_arm(++f->n);
    core_status rc = review_case_request(f->rv, &in, id, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired && rc) fail_msg("review_case_request at point %ld: %s (%s)", f->n, err.message, err.field);
    int64_t waiting = cases_of(f, s.p.owner, "waiting"), bal = balance_of_key(f, s.pk);
    if (rc) {
        assert_true(err.message[0]);
        f->told_failed++;
        if (waiting || bal != 10 || review_intents(f) || ledger_size(f) != size_before)
            fail_msg("point %ld: request answered failed (%s) while %lld cases wait, the person holds %lld, "
                     "%lld intents are left and the ledger grew by %llu",
                     f->n, err.message, (long long)waiting, (long long)bal, (long long)review_intents(f),
                     (unsigned long long)(ledger_size(f) - size_before));
    } else {
        assert_int_equal(waiting, 1);
        assert_int_equal(bal, 5);
        assert_int_equal(review_intents(f), 0);
    }
}

static void review_request_survives_every_failure(void **state) {
    ledgered_fixture *f = *state;
    print_message("review_case_request: %ld allocation points", every_point(review_request_once, f));
    print_message(" (%ld told failed, each with no case, no escrow and every token)\n", f->told_failed);
}

/* Closing a waiting case (answer: settle to the organisation; withdraw:
 * refund to the person): told failed, still waiting with the escrow open,
 * no intent left; told OK, closed in the row and on the ledger. */
typedef enum { CLOSE_ANSWER, CLOSE_WITHDRAW, CLOSE_REVOKE } close_kind;

static void review_close_once(ledgered_fixture *f, bool *fired, close_kind kind) {
    market_someone s;
    char id[REVIEW_CASE_ID_TEXT];
    review_waiting_case(f, &s, id);
    int64_t org_before = org_balance(f);
    ledger_totals t0 = totals_of(f);
    core_error err = {0};
    failalloc_arm(++f->n);
    core_status rc = kind == CLOSE_ANSWER     ? review_case_answer(f->rv, f->org_pk, 7, id, "fungal", NULL, "self_care",
                                                                   "Keep it dry.", &err)
                     : kind == CLOSE_WITHDRAW ? review_case_withdraw(f->rv, s.p.owner, id, &err)
                                              : review_case_revoke(f->rv, s.p.owner, s.sk, id, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired && rc) fail_msg("point %ld: %s (%s)", f->n, err.message, err.field);
    static const char *const name[] = {"answer", "withdraw", "revoke"};
    int64_t waiting = cases_of(f, s.p.owner, "waiting"), bal = balance_of_key(f, s.pk), org = org_balance(f);
    int64_t intents = review_intents(f);
    ledger_totals t1 = totals_of(f);
    if (rc) {
        assert_true(err.message[0]);
        f->told_failed++;
        if (!waiting || bal != 5 || org != org_before || intents || !totals_equal(&t0, &t1))
            fail_msg("point %ld: %s answered failed (%s) while the case is %swaiting, the person holds %lld, the "
                     "organisation gained %lld (%lld intents left)",
                     f->n, name[kind], err.message, waiting ? "" : "no longer ", (long long)bal,
                     (long long)(org - org_before), (long long)intents);
    } else {
        assert_int_equal(intents, 0);
        assert_int_equal(waiting, 0);
        assert_int_equal(cases_of(f, s.p.owner, kind == CLOSE_ANSWER ? "answered" : "withdrawn"), 1);
        assert_int_equal(bal, kind == CLOSE_ANSWER ? 5 : 10);
        assert_int_equal(org, org_before + (kind == CLOSE_ANSWER ? 5 : 0));
        assert_int_equal(t1.escrowed, t0.escrowed - 5);
        if (kind == CLOSE_REVOKE) assert_int_equal(t1.consents_active, t0.consents_active - 1);
    }
}

static void review_answer_once(void *ctx, bool *fired) { review_close_once(ctx, fired, CLOSE_ANSWER); }
static void review_withdraw_once(void *ctx, bool *fired) { review_close_once(ctx, fired, CLOSE_WITHDRAW); }
static void review_revoke_once(void *ctx, bool *fired) { review_close_once(ctx, fired, CLOSE_REVOKE); }

static void review_answer_survives_every_failure(void **state) {
    ledgered_fixture *f = *state;
    print_message("review_case_answer: %ld allocation points", every_point(review_answer_once, f));
    print_message(" (%ld told failed, each with the case waiting and its escrow open)\n", f->told_failed);
}

static void review_withdraw_survives_every_failure(void **state) {
    ledgered_fixture *f = *state;
    print_message("review_case_withdraw: %ld allocation points", every_point(review_withdraw_once, f));
    print_message(" (%ld told failed, each with the case waiting and its escrow open)\n", f->told_failed);
}

static void review_revoke_survives_every_failure(void **state) {
    ledgered_fixture *f = *state;
    print_message("review_case_revoke: %ld allocation points", every_point(review_revoke_once, f));
    print_message(" (%ld told failed, each with the case waiting and its consent standing)\n", f->told_failed);
}

/* The organisation opens a waiting case: the opening is logged, then the
 * case copy handed out. Told failed: no opening logged; told OK: one
 * logged, and the copy (with its id) handed out. */
static void review_open_once(void *ctx, bool *fired) {
    ledgered_fixture *f = ctx;
    market_someone s;
    char id[REVIEW_CASE_ID_TEXT];
    review_waiting_case(f, &s, id);
    json_t *out = NULL;
    core_error err = {0};
    failalloc_arm(++f->n);
    core_status rc = review_case_open(f->rv, f->org_pk, 7, id, &out, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired && rc) fail_msg("point %ld: %s (%s)", f->n, err.message, err.field);
    int64_t openings = review_count(f, "SELECT count(*) FROM review_case_openings WHERE case_id = ?1", id);
    if (rc) {
        assert_true(err.message[0]);
        assert_null(out);
        f->told_failed++;
        if (openings) fail_msg("point %ld: open answered failed (%s) with the opening logged", f->n, err.message);
    } else {
        assert_int_equal(openings, 1);
        const char *got = json_string_value(json_object_get(out, "id"));
        if (!got || strcmp(got, id)) fail_msg("point %ld: open answered OK with a case copy without its id", f->n);
        assert_non_null(json_object_get(out, "photo_jpeg_base64url"));
    }
    assert_int_equal(cases_of(f, s.p.owner, "waiting"), 1);
    json_decref(out);
}

static void review_open_survives_every_failure(void **state) {
    ledgered_fixture *f = *state;
    print_message("review_case_open: %ld allocation points", every_point(review_open_once, f));
    print_message(" (%ld told failed, none with the opening logged)\n", f->told_failed);
}

/* ---- share (issue 12.2's library): a person's contribution — the consent
 * read from the ledger, the count, its withdrawal tag and the person's vault
 * entry in one transaction, the reward queued and (batch of one) paid at
 * once. At every point: counted, tagged and queued together, or none of it
 * ("on an error nothing was counted, queued or kept"); a payment round that
 * failed leaves the reward queued, never lost. ---- */

static void contribute_once(void *ctx, bool *fired) {
    ledgered_fixture *f = ctx;
    market_someone s;
    someone_new(f, &s);
    json_decref(s.profile);
    json_decref(s.entries);
    ledger_tx g = {.kind = LEDGER_TX_GRANT};
    g.u.grant.scope = 1u << LEDGER_CAT_SCREENING;
    g.u.grant.purpose = LEDGER_PURPOSE_SURVEILLANCE;
    g.u.grant.expires = 4000000000u;
    ledger_receipt gr;
    assert_int_equal(ledger_sign_submit(f->l, &g, s.sk, &gr, NULL), CORE_OK);
    int64_t now = core_now();
    int week = surveil_week_of_time(now);
    double before = -1, after = -1;
    size_t queued_before = 0, queued_after = 0;
    assert_int_equal(surveil_series(f->st, "US-CA", "fungal", week, week, &before, NULL, NULL), CORE_OK);
    assert_int_equal(surveil_rewards_queued(f->st, &queued_before, NULL), CORE_OK);
    char result_id[32];
    snprintf(result_id, sizeof result_id, "r%lld", (long long)s.p.owner);
    share_contribution_input in = {.condition = "fungal",
                                   .region = "US-CA",
                                   .created = now,
                                   .birth_year = 1990,
                                   .result_id = result_id,
                                   .year = 2026,
                                   .now = now,
                                   .owner = s.p.owner,
                                   .data_key = s.data_key,
                                   .has_phash = true,
                                   .phash = (uint64_t)s.p.owner * 0x9E3779B97F4A7C15u};
    memcpy(in.wallet, s.pk, LEDGER_KEY);
    share_receipt r;
    core_error err = {0};
    failalloc_arm(++f->n);
    core_status rc = share_contribute(f->sh, &in, &r, &err);
    *fired = failalloc_fired();
    failalloc_arm(0);
    if (!*fired && rc) fail_msg("share_contribute at point %ld: %s (%s)", f->n, err.message, err.field);
    if (rc) assert_true(err.message[0]);
    assert_int_equal(surveil_series(f->st, "US-CA", "fungal", week, week, &after, NULL, NULL), CORE_OK);
    assert_int_equal(surveil_rewards_queued(f->st, &queued_after, NULL), CORE_OK);
    ledger_account a = {0};
    core_status arc = ledger_get_account(f->l, s.pk, &a, NULL);
    assert_true(arc == CORE_OK || arc == CORE_ERR_NOT_FOUND);
    if (rc) {
        assert_true(after == before); /* nothing counted */
        assert_int_equal(queued_after, queued_before);
        assert_int_equal(a.balance, 0);
    } else {
        assert_true(after == before + 1);
        /* paid now, or (a failed round) still queued */
        if (r.pay_error.code != CORE_OK) f->after_failure++;
        bool paid = a.balance > 0, queued = queued_after == queued_before + 1;
        if (!paid && !queued)
            fail_msg("point %ld: counted, but the reward is neither paid nor queued (round: %zu paid, %zu dropped)",
                     f->n, r.payout.paid, r.payout.dropped);
        if (paid && queued) f->orphans++; /* paid, but its queue entry stayed: the next round must drop it */
    }
    if (queued_after > 0) { /* pay what a failed round left, unarmed: never twice */
        int64_t was = a.balance;
        share_payout po;
        assert_int_equal(share_pay_rewards(f->sh, &po, NULL), CORE_OK);
        assert_int_equal(ledger_get_account(f->l, s.pk, &a, NULL), CORE_OK);
        if (was > 0) assert_int_equal(a.balance, was);
        assert_true(a.balance > 0 || rc != CORE_OK);
    }
}

static void share_contribute_survives_every_failure(void **state) {
    ledgered_fixture *f = *state;
    share_options o = {.st = f->st,
                       .led = f->l,
                       .node_sk = f->node_sk,
                       .admin_sk = f->admin_sk,
                       .k = 11,
                       .budget = 1.0,
                       .seal_delay = 86400,
                       .reward_batch = 1,
                       .photo_distance = 10};
    core_error err = {0};
    if (share_open(&o, &f->sh, &err)) fail_msg("share_open: %s", err.message);
    print_message("share_contribute: %ld allocation points", every_point(contribute_once, f));
    print_message(" (%ld counted with the payment round failed: the reward stayed queued; %ld paid with the queue "
                  "entry left, dropped by the next round)\n",
                  f->after_failure, f->orphans);
    share_close(f->sh);
    f->sh = NULL;
}

int main(void) {
    failalloc_install();
    /* ALLOC_ONLY=pattern (e.g. "market_*") runs only those scenarios */
    if (getenv("ALLOC_ONLY")) cmocka_set_test_filter(getenv("ALLOC_ONLY"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(records_create_survives_every_failure, person_setup, person_teardown),
        cmocka_unit_test_setup_teardown(records_update_survives_every_failure, person_setup, person_teardown),
        cmocka_unit_test_setup_teardown(records_export_survives_every_failure, person_setup, person_teardown),
        cmocka_unit_test_setup_teardown(sessions_survive_every_failure, person_setup, person_teardown),
        cmocka_unit_test_setup_teardown(surveil_add_survives_every_failure, pool_setup, pool_teardown),
        cmocka_unit_test_setup_teardown(surveil_withdraw_survives_every_failure, pool_setup, pool_teardown),
        cmocka_unit_test_setup_teardown(surveil_release_survives_every_failure, pool_setup, pool_teardown),
        cmocka_unit_test_setup_teardown(surveil_release_by_source_survives_every_failure, pool_setup, pool_teardown),
        cmocka_unit_test(surveil_csv_survives_every_failure),
        cmocka_unit_test(vision_decode_survives_every_failure),
        cmocka_unit_test(ledger_documents_survive_every_failure),
        cmocka_unit_test(anon_survives_every_failure),
        cmocka_unit_test_setup_teardown(market_deliver_survives_every_failure, market_setup, market_teardown),
        cmocka_unit_test(nn_model_parse_survives_every_failure),
        cmocka_unit_test(core_json_parse_never_alters),
        cmocka_unit_test_setup_teardown(market_approve_survives_every_failure, ledgered_setup, ledgered_teardown),
        cmocka_unit_test_setup_teardown(market_accept_survives_every_failure, ledgered_setup, ledgered_teardown),
        cmocka_unit_test_setup_teardown(market_withdraw_survives_every_failure, ledgered_setup, ledgered_teardown),
        cmocka_unit_test_setup_teardown(market_request_withdraw_survives_every_failure, ledgered_setup,
                                        ledgered_teardown),
        cmocka_unit_test_setup_teardown(market_deliver_release_survives_every_failure, ledgered_setup,
                                        ledgered_teardown),
        cmocka_unit_test_setup_teardown(review_request_survives_every_failure, review_setup, review_teardown),
        cmocka_unit_test_setup_teardown(review_open_survives_every_failure, review_setup, review_teardown),
        cmocka_unit_test_setup_teardown(review_answer_survives_every_failure, review_setup, review_teardown),
        cmocka_unit_test_setup_teardown(review_withdraw_survives_every_failure, review_setup, review_teardown),
        cmocka_unit_test_setup_teardown(review_revoke_survives_every_failure, review_setup, review_teardown),
        cmocka_unit_test_setup_teardown(share_contribute_survives_every_failure, ledgered_setup, ledgered_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
