#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "records/records.h"
#include "testutil.h"

typedef struct {
    char dir[256], path[512];
    store *st;
    accounts *acc;
    regions *regs;
    accounts_session alice, bob, clin;
} fixture;

static const char *PW = "correct horse battery";

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    testutil_tmpdir(f->dir);
    snprintf(f->path, sizeof f->path, "%s/db", f->dir);
    char rc_text[CS_CRYPTO_RECOVERY_TEXT], t[ACCOUNTS_TOKEN_TEXT];
    if (cs_crypto_init(NULL) || store_open(f->path, 2, &f->st, NULL) || accounts_open(f->st, NULL, &f->acc, NULL) ||
        regions_load(TEST_ISO_CODES_DIR, &f->regs, NULL) ||
        accounts_create(f->acc, "alice", PW, ACCOUNTS_PERSON, rc_text, &f->alice, t, NULL) ||
        accounts_create(f->acc, "bob", PW, ACCOUNTS_PERSON, rc_text, &f->bob, t, NULL) ||
        accounts_create(f->acc, "clin", PW, ACCOUNTS_CLINICIAN, rc_text, &f->clin, t, NULL))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    regions_free(f->regs);
    accounts_close(f->acc);
    store_close(f->st);
    testutil_rmdir(f->dir);
    free(f);
    return 0;
}

/* Validate a JSON literal as an entry; returns the status and the field. */
static core_status entry(const char *text, char field[48]) {
    json_t *in = json_loads(text, 0, NULL);
    assert_non_null(in);
    json_t *out = NULL;
    core_error err = {0};
    core_status rc = records_validate_entry(in, "2026-06-15", &out, &err);
    snprintf(field, 48, "%s", err.field);
    json_decref(in);
    json_decref(out);
    return rc;
}

static void entry_validation(void **state) {
    (void)state;
    char f[48];
    assert_int_equal(entry("{\"kind\":\"condition\",\"title\":\"Eczema\"}", f), CORE_OK);
    assert_int_equal(entry("{\"kind\":\"symptom\",\"title\":\"Itch\",\"onset\":\"2026-06-15\"}", f), CORE_OK);
    assert_int_equal(entry("{\"kind\":\"symptom\",\"title\":\"Itch\"}", f), CORE_ERR_INVALID);
    assert_string_equal(f, "onset");
    assert_int_equal(entry("{\"kind\":\"rumour\",\"title\":\"x\"}", f), CORE_ERR_INVALID);
    assert_string_equal(f, "kind");
    assert_int_equal(entry("{\"kind\":\"note\",\"title\":\"\"}", f), CORE_ERR_INVALID);
    assert_string_equal(f, "title");
    assert_int_equal(entry("{\"kind\":\"note\",\"title\":42}", f), CORE_ERR_INVALID);
    assert_string_equal(f, "title");
    assert_int_equal(entry("{\"kind\":\"note\",\"title\":\"a\\u0007b\"}", f), CORE_ERR_INVALID);
    assert_int_equal(entry("{\"kind\":\"note\",\"title\":\"x\",\"details\":\"line1\\nline2\"}", f), CORE_OK);
    assert_int_equal(entry("{\"kind\":\"symptom\",\"title\":\"x\",\"onset\":\"2026-06-16\"}", f), CORE_ERR_INVALID);
    assert_string_equal(f, "onset"); /* future */
    assert_int_equal(entry("{\"kind\":\"symptom\",\"title\":\"x\",\"onset\":\"2025-02-29\"}", f), CORE_ERR_INVALID);
    assert_int_equal(entry("{\"kind\":\"symptom\",\"title\":\"x\",\"onset\":\"2024-02-29\"}", f), CORE_OK); /* leap */
    assert_int_equal(entry("{\"kind\":\"symptom\",\"title\":\"x\",\"onset\":\"2024-2-29\"}", f), CORE_ERR_INVALID);
    assert_int_equal(entry("{\"kind\":\"symptom\",\"title\":\"x\",\"onset\":\"1899-12-31\"}", f), CORE_ERR_INVALID);
    assert_int_equal(
        entry("{\"kind\":\"medication\",\"title\":\"x\",\"onset\":\"2026-01-02\",\"ended\":\"2026-01-01\"}", f),
        CORE_ERR_INVALID);
    assert_string_equal(f, "ended");
    /* 200 multi-byte characters are fine; 201 are not */
    char big[2048] = "{\"kind\":\"note\",\"title\":\"";
    for (int i = 0; i < 200; i++) strcat(big, "\xc3\xa9");
    strcat(big, "\"}");
    assert_int_equal(entry(big, f), CORE_OK);
    big[strlen(big) - 2] = '\0';
    strcat(big, "e\"}");
    assert_int_equal(entry(big, f), CORE_ERR_INVALID);
    assert_string_equal(f, "title");
}

static void unknown_fields_are_dropped(void **state) {
    (void)state;
    json_t *in = json_pack("{s:s,s:s,s:s}", "kind", "note", "title", "x", "user_id", "42");
    json_t *out = NULL;
    assert_int_equal(records_validate_entry(in, "2026-01-01", &out, NULL), CORE_OK);
    assert_null(json_object_get(out, "user_id"));
    assert_int_equal(json_object_size(out), 5);
    json_decref(in);
    json_decref(out);
}

static void profile_validation(void **state) {
    fixture *f = *state;
    json_t *out = NULL;
    core_error err = {0};
    json_t *ok =
        json_pack("{s:s,s:i,s:s,s:s}", "display_name", "Al", "birth_year", 1990, "sex", "female", "region", "NZ-AUK");
    assert_int_equal(records_validate_profile(ok, f->regs, 2026, &out, &err), CORE_OK);
    json_decref(out);
    json_object_set_new(ok, "region", json_string("Auckland"));
    assert_int_equal(records_validate_profile(ok, f->regs, 2026, &out, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "region");
    json_object_set_new(ok, "region", json_null());
    json_object_set_new(ok, "birth_year", json_integer(2027));
    assert_int_equal(records_validate_profile(ok, f->regs, 2026, &out, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "birth_year");
    json_object_set_new(ok, "birth_year", json_string("1990"));
    assert_int_equal(records_validate_profile(ok, f->regs, 2026, &out, &err), CORE_ERR_INVALID);
    json_object_set_new(ok, "birth_year", json_null());
    json_object_set_new(ok, "sex", json_string("other"));
    assert_int_equal(records_validate_profile(ok, f->regs, 2026, &out, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "sex");
    json_decref(ok);
}

static void crud_and_ownership(void **state) {
    fixture *f = *state;
    core_error err = {0};
    json_t *in = json_pack("{s:s,s:s,s:s}", "kind", "symptom", "title", "Red patch", "onset", "2026-01-05");
    json_t *rec = NULL, *got = NULL, *list = NULL;
    assert_int_equal(records_create(f->st, &f->alice, in, &rec, &err), CORE_OK);
    const char *id = json_string_value(json_object_get(rec, "id"));
    assert_int_equal(strlen(id), 32);
    assert_int_equal(records_get(f->st, &f->alice, id, &got, &err), CORE_OK);
    assert_string_equal(json_string_value(json_object_get(got, "title")), "Red patch");
    json_decref(got);
    /* bob cannot see, change or delete alice's record; it is simply not found */
    assert_int_equal(records_get(f->st, &f->bob, id, &got, &err), CORE_ERR_NOT_FOUND);
    assert_int_equal(records_update(f->st, &f->bob, id, in, &got, &err), CORE_ERR_NOT_FOUND);
    assert_int_equal(records_delete(f->st, &f->bob, id, &err), CORE_ERR_NOT_FOUND);
    assert_int_equal(records_list(f->st, &f->bob, &list, &err), CORE_OK);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
    /* staff roles are refused outright */
    assert_int_equal(records_get(f->st, &f->clin, id, &got, &err), CORE_ERR_FORBIDDEN);
    assert_int_equal(records_list(f->st, &f->clin, &list, &err), CORE_ERR_FORBIDDEN);
    assert_int_equal(records_profile_get(f->st, &f->clin, &got, &err), CORE_ERR_FORBIDDEN);
    /* update by the owner */
    json_object_set_new(in, "title", json_string("Red patch, spreading"));
    assert_int_equal(records_update(f->st, &f->alice, id, in, &got, &err), CORE_OK);
    assert_string_equal(json_string_value(json_object_get(got, "title")), "Red patch, spreading");
    assert_string_equal(json_string_value(json_object_get(got, "created_at")),
                        json_string_value(json_object_get(rec, "created_at")));
    json_decref(got);
    assert_int_equal(records_list(f->st, &f->alice, &list, &err), CORE_OK);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);
    /* malformed ids are not found, not errors */
    assert_int_equal(records_get(f->st, &f->alice, "../../etc", &got, &err), CORE_ERR_NOT_FOUND);
    assert_int_equal(records_delete(f->st, &f->alice, id, &err), CORE_OK);
    assert_int_equal(records_delete(f->st, &f->alice, id, &err), CORE_ERR_NOT_FOUND);
    json_decref(rec);
    json_decref(in);
}

/* A sealed row moved to another owner (by someone with disk access) does not open. */
static void tampered_rows_are_detected(void **state) {
    fixture *f = *state;
    core_error err = {0};
    json_t *in = json_pack("{s:s,s:s}", "kind", "allergy", "title", "Penicillin");
    json_t *rec = NULL, *got = NULL;
    assert_int_equal(records_create(f->st, &f->alice, in, &rec, &err), CORE_OK);
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE records SET user_id = %lld WHERE id = '%s'", (long long)f->bob.user_id,
             json_string_value(json_object_get(rec, "id")));
    sqlite3 *db = store_acquire(f->st);
    assert_int_equal(sqlite3_exec(db, sql, 0, 0, 0), SQLITE_OK);
    store_release(f->st, db);
    assert_int_equal(records_get(f->st, &f->bob, json_string_value(json_object_get(rec, "id")), &got, &err),
                     CORE_ERR_CRYPTO);
    json_decref(rec);
    json_decref(in);
}

/* A photo rides with its entry: written in the same transaction, described
 * in the sealed entry by the module (never by the caller), kept across
 * updates, readable only by the owner, sealed at rest, gone with the entry,
 * and part of the export. */
static void photos_go_with_their_entry(void **state) {
    fixture *f = *state;
    core_error err = {0};
    uint8_t jpeg[600];
    for (size_t i = 0; i < sizeof jpeg; i++) jpeg[i] = (uint8_t)(i * 7 + 1);
    jpeg[0] = 0xFF, jpeg[1] = 0xD8, jpeg[2] = 0xFF, jpeg[598] = 0xFF, jpeg[599] = 0xD9;
    /* a forged description from the caller is dropped */
    json_t *in = json_pack("{s:s,s:s,s:{s:s,s:i,s:s}}", "kind", "note", "title", "Skin check: unsure", "photo", "type",
                           "image/png", "bytes", 1, "sha256", "00");
    json_t *rec = NULL, *got = NULL, *list = NULL;
    assert_int_equal(records_create(f->st, &f->alice, in, &rec, &err), CORE_OK);
    assert_null(json_object_get(rec, "photo"));
    uint8_t *back = NULL;
    size_t n = 0;
    assert_int_equal(
        records_photo_get(f->st, &f->alice, json_string_value(json_object_get(rec, "id")), &back, &n, &err),
        CORE_ERR_NOT_FOUND);
    json_decref(rec);

    /* not a JPEG, or too large: refused, nothing written */
    uint8_t png[8] = {0x89, 'P', 'N', 'G', 13, 10, 26, 10};
    assert_int_equal(records_create_with_photo(f->st, &f->alice, in, png, sizeof png, &rec, &err), CORE_ERR_INVALID);
    assert_string_equal(err.field, "photo");
    assert_int_equal(records_create_with_photo(f->st, &f->alice, in, jpeg, RECORDS_PHOTO_MAX + 1, &rec, &err),
                     CORE_ERR_INVALID);
    assert_int_equal(records_list(f->st, &f->alice, &list, &err), CORE_OK);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);

    assert_int_equal(records_create_with_photo(f->st, &f->alice, in, jpeg, sizeof jpeg, &rec, &err), CORE_OK);
    char id[RECORDS_ID_TEXT];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(rec, "id")));
    json_t *photo = json_object_get(rec, "photo");
    assert_string_equal(json_string_value(json_object_get(photo, "type")), "image/jpeg");
    assert_int_equal(json_integer_value(json_object_get(photo, "bytes")), sizeof jpeg);
    uint8_t digest[32];
    char hex[65];
    cs_crypto_sha256(digest, jpeg, sizeof jpeg);
    cs_crypto_hex(digest, sizeof digest, hex);
    assert_string_equal(json_string_value(json_object_get(photo, "sha256")), hex);
    json_decref(rec);

    assert_int_equal(records_photo_get(f->st, &f->alice, id, &back, &n, &err), CORE_OK);
    assert_int_equal(n, sizeof jpeg);
    assert_memory_equal(back, jpeg, n);
    free(back);
    /* another person, a staff role, a malformed id */
    assert_int_equal(records_photo_get(f->st, &f->bob, id, &back, &n, &err), CORE_ERR_NOT_FOUND);
    assert_int_equal(records_photo_get(f->st, &f->clin, id, &back, &n, &err), CORE_ERR_FORBIDDEN);
    assert_int_equal(records_photo_get(f->st, &f->alice, "../x", &back, &n, &err), CORE_ERR_NOT_FOUND);

    /* sealed at rest: the stored blob does not contain the image bytes */
    sqlite3 *db = store_acquire(f->st);
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT sealed FROM record_photos WHERE record_id = ?", -1, &q, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_null(memmem(sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0), jpeg + 100, 32));
    sqlite3_finalize(q);
    store_release(f->st, db);

    /* an update keeps the photo and its description; the list shows it */
    json_object_set_new(in, "title", json_string("Skin check: eczema"));
    assert_int_equal(records_update(f->st, &f->alice, id, in, &got, &err), CORE_OK);
    assert_string_equal(json_string_value(json_object_get(json_object_get(got, "photo"), "sha256")), hex);
    json_decref(got);
    char *text = NULL;
    size_t tlen = 0;
    assert_int_equal(records_list_text(f->st, &f->alice, &text, &tlen, &err), CORE_OK);
    assert_non_null(strstr(text, hex));
    free(text);

    /* the export carries the photo */
    json_t *doc = NULL;
    assert_int_equal(records_export(f->st, &f->alice, &doc, &err), CORE_OK);
    size_t i;
    json_t *e;
    int with_photo = 0;
    json_array_foreach(json_object_get(doc, "records"), i, e) {
        const char *b64 = json_string_value(json_object_get(json_object_get(e, "photo"), "jpeg_base64url"));
        if (!b64) continue;
        with_photo++;
        uint8_t *raw = malloc(sizeof jpeg);
        assert_true(cs_crypto_unb64(b64, raw, sizeof jpeg));
        assert_memory_equal(raw, jpeg, sizeof jpeg);
        free(raw);
    }
    assert_int_equal(with_photo, 1);
    json_decref(doc);

    /* deleting the entry deletes the photo */
    assert_int_equal(records_delete(f->st, &f->alice, id, &err), CORE_OK);
    db = store_acquire(f->st);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM record_photos", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 0);
    sqlite3_finalize(q);
    store_release(f->st, db);
    json_decref(in);
}

static void profile_and_export(void **state) {
    fixture *f = *state;
    core_error err = {0};
    json_t *p = NULL, *doc = NULL;
    assert_int_equal(records_profile_get(f->st, &f->alice, &p, &err), CORE_OK);
    assert_true(json_is_null(json_object_get(p, "display_name")));
    json_decref(p);
    json_t *in = json_pack("{s:s,s:i,s:s,s:s}", "display_name", "Alice", "birth_year", 1980, "sex", "female", "region",
                           "NZ-WGN");
    assert_int_equal(records_profile_put(f->st, f->regs, &f->alice, in, &p, &err), CORE_OK);
    json_decref(p);
    json_decref(in);
    json_t *e = json_pack("{s:s,s:s}", "kind", "medication", "title", "Hydrocortisone 1%");
    json_t *rec = NULL;
    assert_int_equal(records_create(f->st, &f->alice, e, &rec, &err), CORE_OK);
    assert_int_equal(records_export(f->st, &f->alice, &doc, &err), CORE_OK);
    assert_string_equal(json_string_value(json_object_get(doc, "format")), "caresync-export-1");
    assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "profile"), "region")), "NZ-WGN");
    assert_int_equal(json_array_size(json_object_get(doc, "records")), 1);
    json_decref(doc);
    json_decref(rec);
    json_decref(e);
    /* the profile text is sealed on disk */
    char wal[600];
    snprintf(wal, sizeof wal, "%s-wal", f->path);
    assert_false(testutil_file_contains(wal, "Hydrocortisone", 14));
    assert_false(testutil_file_contains(f->path, "Hydrocortisone", 14));
    assert_false(testutil_file_contains(wal, "NZ-WGN", 6));
}

/* ---- the memo of GET /api/records (records_list_text) ---- */
static char *list_text(fixture *f, const accounts_session *s) {
    char *t = NULL;
    size_t n = 0;
    core_error err = {0};
    assert_int_equal(records_list_text(f->st, s, &t, &n, &err), CORE_OK);
    assert_int_equal(strlen(t), n);
    return t;
}

static bool memo_present(fixture *f, const accounts_session *s) {
    uint8_t *b = NULL;
    size_t n = 0;
    uint64_t g = 0;
    bool hit = store_memo_get(f->st, s->id_hash, s->user_id, &b, &n, &g);
    free(b);
    return hit;
}

static bool bytes_contain(const uint8_t *hay, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0) return true;
    return false;
}

static json_t *entry_json(const char *title) { return json_pack("{s:s,s:s}", "kind", "note", "title", title); }

static void add_entry(fixture *f, const accounts_session *s, const char *title, char id[RECORDS_ID_TEXT]) {
    json_t *in = entry_json(title), *rec = NULL;
    core_error err = {0};
    assert_int_equal(records_create(f->st, s, in, &rec, &err), CORE_OK);
    if (id) snprintf(id, RECORDS_ID_TEXT, "%s", json_string_value(json_object_get(rec, "id")));
    json_decref(rec);
    json_decref(in);
}

/* The memo holds the list sealed, is used, and every write drops it so the
 * next read is fresh. */
static void list_memo_is_sealed_and_follows_writes(void **state) {
    fixture *f = *state;
    core_error err = {0};
    char id[RECORDS_ID_TEXT];
    add_entry(f, &f->alice, "Memo marker one", id);
    assert_false(memo_present(f, &f->alice));
    char *first = list_text(f, &f->alice);
    assert_non_null(strstr(first, "Memo marker one"));
    assert_true(memo_present(f, &f->alice));

    /* what the process keeps is sealed: no plaintext in the memo */
    uint8_t *blob = NULL;
    size_t blen = 0;
    uint64_t gen = 0;
    assert_true(store_memo_get(f->st, f->alice.id_hash, f->alice.user_id, &blob, &blen, &gen));
    assert_false(bytes_contain(blob, blen, "Memo marker"));
    assert_false(bytes_contain(blob, blen, "records"));
    free(blob);

    /* It is really served from memory: a change made behind the library's back
     * (as another process could; bounded by STORE_MEMO_TTL) is not seen... */
    sqlite3 *db = store_acquire(f->st);
    assert_int_equal(sqlite3_exec(db, "UPDATE records SET created_at = created_at - 86400", 0, 0, 0), SQLITE_OK);
    store_release(f->st, db);
    char *again = list_text(f, &f->alice);
    assert_string_equal(again, first);
    free(again);

    /* ...while every write through the library is seen by the next read. */
    json_t *in = entry_json("Memo marker two"), *out = NULL;
    assert_int_equal(records_update(f->st, &f->alice, id, in, &out, &err), CORE_OK);
    json_decref(out);
    json_decref(in);
    assert_false(memo_present(f, &f->alice));
    char *t = list_text(f, &f->alice);
    assert_non_null(strstr(t, "Memo marker two"));
    assert_null(strstr(t, "Memo marker one"));
    assert_string_not_equal(t, first);
    free(t);
    free(first);

    char id2[RECORDS_ID_TEXT];
    add_entry(f, &f->alice, "Memo marker three", id2);
    assert_false(memo_present(f, &f->alice));
    t = list_text(f, &f->alice);
    assert_non_null(strstr(t, "Memo marker three"));
    free(t);

    assert_int_equal(records_delete(f->st, &f->alice, id2, &err), CORE_OK);
    assert_false(memo_present(f, &f->alice));
    t = list_text(f, &f->alice);
    assert_null(strstr(t, "Memo marker three"));
    free(t);

    json_t *p = json_pack("{s:s}", "display_name", "Alice");
    assert_true(memo_present(f, &f->alice));
    assert_int_equal(records_profile_put(f->st, f->regs, &f->alice, p, &out, &err), CORE_OK);
    json_decref(out);
    json_decref(p);
    assert_false(memo_present(f, &f->alice));

    /* bob's writes leave alice's memo alone; bob sees only his own list */
    t = list_text(f, &f->alice);
    free(t);
    add_entry(f, &f->bob, "Bob's own", NULL);
    assert_true(memo_present(f, &f->alice));
    t = list_text(f, &f->bob);
    assert_null(strstr(t, "Memo marker"));
    assert_non_null(strstr(t, "Bob's own"));
    free(t);
}

/* The memo opens only with the view key of the session it was made for. */
static void list_memo_needs_the_session_key(void **state) {
    fixture *f = *state;
    add_entry(f, &f->alice, "Only with the cookie", NULL);
    char *t = list_text(f, &f->alice);
    free(t);
    assert_true(memo_present(f, &f->alice));
    /* Someone who knows alice's session hash and id (both on disk) but not her
     * token: the memo does not open, so the list is rendered with their own
     * data key — and alice's rows do not open either. */
    accounts_session forged = f->bob;
    forged.user_id = f->alice.user_id;
    memcpy(forged.id_hash, f->alice.id_hash, 32);
    char *text = NULL;
    size_t n = 0;
    core_error err = {0};
    assert_int_equal(records_list_text(f->st, &forged, &text, &n, &err), CORE_ERR_CRYPTO);
    assert_null(text);
    accounts_session_wipe(&forged);
    /* a session without a view key is never memoised */
    accounts_session bare = f->bob;
    memset(bare.view_key, 0, sizeof bare.view_key);
    t = list_text(f, &bare);
    free(t);
    assert_false(memo_present(f, &bare));
    /* a second session of alice has its own memo; a write drops both */
    accounts_session alice2;
    char tok[ACCOUNTS_TOKEN_TEXT];
    assert_int_equal(accounts_login(f->acc, "alice", PW, "127.0.0.1", &alice2, tok, &err), CORE_OK);
    t = list_text(f, &alice2);
    free(t);
    assert_true(memo_present(f, &f->alice));
    assert_true(memo_present(f, &alice2));
    add_entry(f, &f->alice, "Seen by both", NULL);
    assert_false(memo_present(f, &f->alice));
    assert_false(memo_present(f, &alice2));
    t = list_text(f, &alice2);
    assert_non_null(strstr(t, "Seen by both"));
    free(t);
    accounts_session_wipe(&alice2);
}

/* Log-out, password change, reset and deletion each drop the memo. */
static void list_memo_ends_with_the_session(void **state) {
    fixture *f = *state;
    core_error err = {0};
    char rc_text[CS_CRYPTO_RECOVERY_TEXT], rc2[CS_CRYPTO_RECOVERY_TEXT], tok[ACCOUNTS_TOKEN_TEXT];
    accounts_session s;
    assert_int_equal(accounts_create(f->acc, "carol", PW, ACCOUNTS_PERSON, rc_text, &s, tok, &err), CORE_OK);
    add_entry(f, &s, "Carol's note", NULL);
    char *t = list_text(f, &s);
    free(t);
    assert_true(memo_present(f, &s));
    assert_int_equal(accounts_logout(f->acc, &s, &err), CORE_OK);
    assert_false(memo_present(f, &s));
    /* the logged-out token no longer authenticates, so nothing can reach a memo */
    accounts_session gone;
    assert_int_equal(accounts_authenticate(f->acc, tok, &gone, &err), CORE_ERR_AUTH);
    accounts_session_wipe(&s);

    assert_int_equal(accounts_login(f->acc, "carol", PW, "127.0.0.1", &s, tok, &err), CORE_OK);
    t = list_text(f, &s);
    free(t);
    assert_true(memo_present(f, &s));
    assert_int_equal(accounts_change_password(f->acc, &s, PW, "a different passphrase", "127.0.0.1", &err), CORE_OK);
    assert_false(memo_present(f, &s));

    t = list_text(f, &s);
    free(t);
    assert_true(memo_present(f, &s));
    assert_int_equal(accounts_reset_password(f->acc, "carol", rc_text, PW, "127.0.0.1", rc2, &err), CORE_OK);
    assert_false(memo_present(f, &s));
    accounts_session_wipe(&s);

    assert_int_equal(accounts_login(f->acc, "carol", PW, "127.0.0.1", &s, tok, &err), CORE_OK);
    t = list_text(f, &s);
    free(t);
    assert_true(memo_present(f, &s));
    assert_int_equal(accounts_delete(f->acc, &s, PW, "127.0.0.1", &err), CORE_OK);
    assert_false(memo_present(f, &s));
    accounts_session_wipe(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(entry_validation),
        cmocka_unit_test(unknown_fields_are_dropped),
        cmocka_unit_test_setup_teardown(profile_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(crud_and_ownership, setup, teardown),
        cmocka_unit_test_setup_teardown(tampered_rows_are_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(profile_and_export, setup, teardown),
        cmocka_unit_test_setup_teardown(photos_go_with_their_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(list_memo_is_sealed_and_follows_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(list_memo_needs_the_session_key, setup, teardown),
        cmocka_unit_test_setup_teardown(list_memo_ends_with_the_session, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
