/* records — sealed storage of profiles and entries. */
#include "records/records.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"

static core_status require_person(const accounts_session *sess, core_error *err) {
    if (sess->role != ACCOUNTS_PERSON)
        return core_fail(err, CORE_ERR_FORBIDDEN, NULL, "staff accounts cannot keep or read personal health records");
    return CORE_OK;
}

/* Associated data binds a sealed row to its owner and id: a row copied to
 * another user or id no longer opens. */
static void make_ad(char ad[96], const char *what, int64_t user_id, const char *id) {
    snprintf(ad, 96, "caresync-%s-v1:%lld:%s", what, (long long)user_id, id ? id : "");
}

static core_status seal_json(const accounts_session *sess, const char *ad, const json_t *v, uint8_t **out,
                             size_t *outlen, core_error *err) {
    char *text = core_json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    core_status rc = cs_crypto_seal(sess->data_key, ad, strlen(ad), text, strlen(text), out, outlen, err);
    cs_crypto_wipe(text, strlen(text));
    free(text);
    return rc;
}

static core_status open_json(const accounts_session *sess, const char *ad, const void *blob, size_t len, json_t **out,
                             core_error *err) {
    uint8_t *plain = NULL;
    size_t n = 0;
    core_status rc = cs_crypto_open(sess->data_key, ad, strlen(ad), blob, len, &plain, &n, err);
    if (rc) return core_fail(err, CORE_ERR_CRYPTO, NULL, "a stored record failed its integrity check");
    core_error pe = {0};
    *out = core_json_loadb((const char *)plain, n, 0, NULL, &pe);
    cs_crypto_wipe(plain, n);
    free(plain);
    if (!*out && pe.code == CORE_ERR_NOMEM) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    if (!*out) return core_fail(err, CORE_ERR_CRYPTO, NULL, "a stored record is not valid JSON");
    return CORE_OK;
}

core_status records_profile_get(store *st, const accounts_session *sess, json_t **out, core_error *err) {
    *out = NULL;
    core_status rc = require_person(sess, err);
    if (rc) return rc;
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q = NULL;
    rc = store_prepare(db, "SELECT sealed FROM profiles WHERE user_id = ?", &q, err);
    if (!rc) {
        sqlite3_bind_int64(q, 1, sess->user_id);
        int step = sqlite3_step(q);
        if (step == SQLITE_ROW) {
            char ad[96];
            make_ad(ad, "profile", sess->user_id, NULL);
            rc = open_json(sess, ad, sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0), out, err);
        } else if (step == SQLITE_DONE) {
            *out = json_pack("{s:n,s:n,s:n,s:n}", "display_name", "birth_year", "sex", "region");
        } else {
            rc = store_error(db, err);
        }
    }
    sqlite3_finalize(q);
    store_release(st, db);
    return rc;
}

core_status records_profile_put(store *st, const regions *regs, const accounts_session *sess, const json_t *in,
                                json_t **out, core_error *err) {
    *out = NULL;
    core_status rc = require_person(sess, err);
    if (rc) return rc;
    char today[11];
    int year;
    records_today(today, &year);
    json_t *p = NULL;
    if ((rc = records_validate_profile(in, regs, year, &p, err))) return rc;
    char ad[96];
    make_ad(ad, "profile", sess->user_id, NULL);
    uint8_t *sealed = NULL;
    size_t len = 0;
    rc = seal_json(sess, ad, p, &sealed, &len, err);
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q = NULL;
    if (!rc)
        rc = store_prepare(db,
                           "INSERT INTO profiles(user_id, sealed, updated_at) VALUES (?1, ?2, ?3) "
                           "ON CONFLICT(user_id) DO UPDATE SET sealed = ?2, updated_at = ?3",
                           &q, err);
    if (!rc) {
        sqlite3_bind_int64(q, 1, sess->user_id);
        sqlite3_bind_blob(q, 2, sealed, (int)len, SQLITE_STATIC);
        sqlite3_bind_int64(q, 3, core_now());
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    store_release(st, db);
    store_user_changed(st, sess->user_id);
    free(sealed);
    if (rc)
        json_decref(p);
    else
        *out = p;
    return rc;
}

/* Decorate a decrypted entry with its id and timestamps. jansson reports a
 * failed allocation only through return values: an entry missing its id
 * must not be answered, so this fails whole. */
static core_status decorate(json_t *e, const char *id, int64_t created, int64_t updated, core_error *err) {
    char c[32], u[32];
    core_format_time(created, c);
    core_format_time(updated, u);
    if (json_object_set_new(e, "id", json_string(id)) || json_object_set_new(e, "created_at", json_string(c)) ||
        json_object_set_new(e, "updated_at", json_string(u)))
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    return CORE_OK;
}

static bool valid_id(const char *id) {
    uint8_t raw[16];
    return id && cs_crypto_unhex(id, raw, sizeof raw);
}

core_status records_list(store *st, const accounts_session *sess, json_t **out_array, core_error *err) {
    *out_array = NULL;
    core_status rc = require_person(sess, err);
    if (rc) return rc;
    json_t *arr = json_array();
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q = NULL;
    rc = store_prepare(db,
                       "SELECT id, sealed, created_at, updated_at FROM records WHERE user_id = ? "
                       "ORDER BY created_at DESC, rowid DESC",
                       &q, err);
    if (!rc) sqlite3_bind_int64(q, 1, sess->user_id);
    while (!rc) {
        int step = sqlite3_step(q);
        if (step == SQLITE_DONE) break;
        if (step != SQLITE_ROW) {
            rc = store_error(db, err);
            break;
        }
        const char *id = (const char *)sqlite3_column_text(q, 0);
        char ad[96];
        make_ad(ad, "record", sess->user_id, id);
        json_t *e = NULL;
        rc = open_json(sess, ad, sqlite3_column_blob(q, 1), (size_t)sqlite3_column_bytes(q, 1), &e, err);
        if (rc) break;
        rc = decorate(e, id, sqlite3_column_int64(q, 2), sqlite3_column_int64(q, 3), err);
        if (rc) {
            json_decref(e);
            break;
        }
        if (json_array_append_new(arr, e)) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    sqlite3_finalize(q);
    store_release(st, db);
    if (rc)
        json_decref(arr);
    else
        *out_array = arr;
    return rc;
}

typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} text_buf;

static void put(text_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* The memo of the rendered list (see store.h) is sealed under the session's
 * view key, bound to the owner and the generation it was rendered at. */
static void list_ad(char ad[96], int64_t user_id, uint64_t generation) {
    snprintf(ad, 96, "caresync-list-v1:%lld:%llu", (long long)user_id, (unsigned long long)generation);
}

static bool has_view_key(const accounts_session *sess) {
    static const uint8_t zero[CS_CRYPTO_KEY_BYTES];
    return !cs_crypto_equal(sess->view_key, zero, sizeof zero);
}

/* A hit costs one AEAD open of the whole body instead of a query and one open
 * per entry. A memo that does not open under this session's view key is
 * treated as a miss and rendered afresh (it should not happen: the slot is
 * keyed by the id hash of the same token the view key comes from). */
static bool list_from_memo(store *st, const accounts_session *sess, char **out, size_t *len) {
    uint8_t *blob = NULL;
    size_t blen = 0;
    uint64_t gen = 0;
    if (!store_memo_get(st, sess->id_hash, sess->user_id, &blob, &blen, &gen)) return false;
    char ad[96];
    list_ad(ad, sess->user_id, gen);
    uint8_t *plain = NULL;
    size_t n = 0;
    bool ok = cs_crypto_open(sess->view_key, ad, strlen(ad), blob, blen, &plain, &n, NULL) == CORE_OK;
    free(blob);
    if (!ok) return false;
    *out = (char *)plain;
    *len = n;
    return true;
}

static void list_to_memo(store *st, const accounts_session *sess, uint64_t gen, const char *text, size_t len) {
    if (len > STORE_MEMO_MAX - CS_CRYPTO_SEAL_OVERHEAD) return;
    char ad[96];
    list_ad(ad, sess->user_id, gen);
    uint8_t *sealed = NULL;
    size_t slen = 0;
    if (cs_crypto_seal(sess->view_key, ad, strlen(ad), text, len, &sealed, &slen, NULL) != CORE_OK) return;
    store_memo_put(st, sess->id_hash, sess->user_id, gen, sealed, slen);
    free(sealed);
}

core_status records_list_text(store *st, const accounts_session *sess, char **out, size_t *len, core_error *err) {
    *out = NULL;
    core_status rc = require_person(sess, err);
    if (rc) return rc;
    bool memo = has_view_key(sess);
    if (memo && list_from_memo(st, sess, out, len)) return CORE_OK;
    /* Read before the rows: a write committed after this point refuses the put. */
    uint64_t gen = memo ? store_user_generation(st, sess->user_id) : 0;
    text_buf b = {0};
    put(&b, "{\"records\":[", 12);
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q = NULL;
    rc = store_prepare_cached(st, db,
                              "SELECT id, sealed, created_at, updated_at FROM records WHERE user_id = ? "
                              "ORDER BY created_at DESC, rowid DESC",
                              &q, err);
    if (!rc) sqlite3_bind_int64(q, 1, sess->user_id);
    for (bool first = true; !rc; first = false) {
        int step = sqlite3_step(q);
        if (step == SQLITE_DONE) break;
        if (step != SQLITE_ROW) {
            rc = store_error(db, err);
            break;
        }
        const char *id = (const char *)sqlite3_column_text(q, 0);
        char ad[96];
        make_ad(ad, "record", sess->user_id, id);
        uint8_t *plain = NULL;
        size_t n = 0;
        if (cs_crypto_open(sess->data_key, ad, strlen(ad), sqlite3_column_blob(q, 1),
                           (size_t)sqlite3_column_bytes(q, 1), &plain, &n, err) != CORE_OK) {
            rc = core_fail(err, CORE_ERR_CRYPTO, NULL, "a stored record failed its integrity check");
            break;
        }
        /* The plaintext is an authenticated object this module serialised
         * itself (json_dumps, compact, non-empty): splice the id and times in
         * before its closing brace instead of parsing it again. */
        if (n < 2 || plain[0] != '{' || plain[n - 1] != '}') {
            cs_crypto_wipe(plain, n);
            free(plain);
            rc = core_fail(err, CORE_ERR_CRYPTO, NULL, "a stored record is not a JSON object");
            break;
        }
        char tail[160], c[32], u[32];
        core_format_time(sqlite3_column_int64(q, 2), c);
        core_format_time(sqlite3_column_int64(q, 3), u);
        int tn = snprintf(tail, sizeof tail, ",\"id\":\"%s\",\"created_at\":\"%s\",\"updated_at\":\"%s\"}", id, c, u);
        if (!first) put(&b, ",", 1);
        put(&b, (const char *)plain, n - 1);
        put(&b, tail, (size_t)tn);
        cs_crypto_wipe(plain, n);
        free(plain);
    }
    store_release(st, db);
    put(&b, "]}", 2);
    if (!rc && b.oom) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    if (rc) {
        if (b.p) cs_crypto_wipe(b.p, b.len);
        free(b.p);
        return rc;
    }
    if (memo) list_to_memo(st, sess, gen, b.p, b.len);
    *out = b.p;
    *len = b.len;
    return CORE_OK;
}

/* Read an entry's sealed row (on the caller's connection, inside its
 * transaction if it has one): the decrypted JSON and its times. The owner is
 * part of the lookup: another person's id is simply not found. */
static core_status read_entry(sqlite3 *db, const accounts_session *sess, const char *id, json_t **out, int64_t *created,
                              int64_t *updated, core_error *err) {
    sqlite3_stmt *q = NULL;
    core_status rc =
        store_prepare(db, "SELECT sealed, created_at, updated_at FROM records WHERE id = ? AND user_id = ?", &q, err);
    if (rc) return rc;
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, sess->user_id);
    int step = sqlite3_step(q);
    if (step == SQLITE_ROW) {
        char ad[96];
        make_ad(ad, "record", sess->user_id, id);
        rc = open_json(sess, ad, sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0), out, err);
        *created = sqlite3_column_int64(q, 1);
        *updated = sqlite3_column_int64(q, 2);
    } else if (step == SQLITE_DONE) {
        rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such record");
    } else {
        rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    return rc;
}

core_status records_get(store *st, const accounts_session *sess, const char *id, json_t **out, core_error *err) {
    *out = NULL;
    core_status rc = require_person(sess, err);
    if (rc) return rc;
    if (!valid_id(id)) return core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such record");
    sqlite3 *db = store_acquire(st);
    int64_t created = 0, updated = 0;
    rc = read_entry(db, sess, id, out, &created, &updated, err);
    store_release(st, db);
    if (!rc) rc = decorate(*out, id, created, updated, err);
    if (rc) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

static bool looks_like_jpeg(const uint8_t *b, size_t n) {
    return n >= 4 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF && b[n - 2] == 0xFF && b[n - 1] == 0xD9;
}

static core_status insert_photo(sqlite3 *db, const accounts_session *sess, const char *id, const uint8_t *jpeg,
                                size_t len, core_error *err) {
    char ad[96];
    make_ad(ad, "photo", sess->user_id, id);
    uint8_t *sealed = NULL;
    size_t slen = 0;
    core_status rc = cs_crypto_seal(sess->data_key, ad, strlen(ad), jpeg, len, &sealed, &slen, err);
    sqlite3_stmt *q = NULL;
    if (!rc) rc = store_prepare(db, "INSERT INTO record_photos(record_id, user_id, sealed) VALUES (?, ?, ?)", &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, sess->user_id);
        sqlite3_bind_blob(q, 3, sealed, (int)slen, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    free(sealed);
    return rc;
}

/* Validate, seal and write an entry (and its photo, if any) in one
 * transaction; id == NULL creates a new one. The "photo" and "result"
 * members are this module's own: made on create (with a photo), carried
 * over from the stored entry on update, never taken from the caller (the
 * validator drops them). */
static core_status write_entry(store *st, const accounts_session *sess, const char *id, const json_t *in,
                               const uint8_t *photo, size_t photo_len, json_t **out, core_error *err) {
    *out = NULL;
    core_status rc = require_person(sess, err);
    if (rc) return rc;
    if (id && !valid_id(id)) return core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such record");
    if (photo && (photo_len > RECORDS_PHOTO_MAX || !looks_like_jpeg(photo, photo_len)))
        return core_fail(err, CORE_ERR_INVALID, "photo", "a record's photo must be a JPEG of at most %u bytes",
                         RECORDS_PHOTO_MAX);
    char today[11];
    records_today(today, NULL);
    json_t *e = NULL;
    if ((rc = records_validate_entry(in, today, &e, err))) return rc;
    if (photo) {
        uint8_t digest[32];
        char hex[65];
        cs_crypto_sha256(digest, photo, photo_len);
        cs_crypto_hex(digest, sizeof digest, hex);
        /* "result": the title and details as created — for a saved
         * screening, the model's words — kept apart from what the person
         * may later type over them, so that a review case carries only the
         * model's text (review/cases.c). */
        if (json_object_set_new(
                e, "photo",
                json_pack("{s:s,s:I,s:s}", "type", "image/jpeg", "bytes", (json_int_t)photo_len, "sha256", hex)) ||
            json_object_set_new(
                e, "result",
                json_pack("{s:O,s:O}", "title", json_object_get(e, "title"), "details",
                          json_object_get(e, "details") ? json_object_get(e, "details") : json_string("")))) {
            json_decref(e);
            return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        }
    }

    char new_id[RECORDS_ID_TEXT];
    bool create = !id;
    if (create) {
        uint8_t raw[16];
        cs_crypto_random(raw, sizeof raw);
        cs_crypto_hex(raw, sizeof raw, new_id);
        id = new_id;
    }
    int64_t now = core_now(), created = now;
    uint8_t *sealed = NULL;
    size_t len = 0;
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q = NULL;
    rc = store_begin(db, err);
    bool open = !rc;
    if (!rc && !create) {
        json_t *old = NULL;
        int64_t was_updated;
        rc = read_entry(db, sess, id, &old, &created, &was_updated, err);
        json_t *old_photo = old ? json_object_get(old, "photo") : NULL;
        json_t *old_result = old ? json_object_get(old, "result") : NULL;
        if (!rc && ((old_photo && json_object_set(e, "photo", old_photo)) ||
                    (old_result && json_object_set(e, "result", old_result))))
            rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        json_decref(old);
    }
    char ad[96];
    make_ad(ad, "record", sess->user_id, id);
    if (!rc) rc = seal_json(sess, ad, e, &sealed, &len, err);
    /* The answer is made before the commit (e is sealed already): once the
     * write is committed nothing may fail, or a caller told "failed" would
     * retry a write that stands. */
    if (!rc) rc = decorate(e, id, created, now, err);
    if (!rc)
        rc = store_prepare(
            db,
            create ? "INSERT INTO records(id, user_id, sealed, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)"
                   : "UPDATE records SET sealed = ?3, updated_at = ?4 WHERE id = ?1 AND user_id = ?2",
            &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, sess->user_id);
        sqlite3_bind_blob(q, 3, sealed, (int)len, SQLITE_STATIC);
        sqlite3_bind_int64(q, 4, now);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    if (!rc && photo) rc = insert_photo(db, sess, id, photo, photo_len, err);
    if (open) {
        if (!rc)
            rc = store_commit(db, err);
        else
            store_rollback(db);
    }
    store_release(st, db);
    /* Even on failure: which step failed, and whether anything was written
     * before it, is not worth reasoning about for the price of one miss. */
    store_user_changed(st, sess->user_id);
    free(sealed);
    if (rc) {
        json_decref(e);
        return rc;
    }
    *out = e;
    return CORE_OK;
}

core_status records_create(store *st, const accounts_session *sess, const json_t *in, json_t **out, core_error *err) {
    return write_entry(st, sess, NULL, in, NULL, 0, out, err);
}

core_status records_create_with_photo(store *st, const accounts_session *sess, const json_t *in, const uint8_t *jpeg,
                                      size_t len, json_t **out, core_error *err) {
    if (!jpeg) return core_fail(err, CORE_ERR_INVALID, "photo", "no photo given");
    return write_entry(st, sess, NULL, in, jpeg, len, out, err);
}

core_status records_update(store *st, const accounts_session *sess, const char *id, const json_t *in, json_t **out,
                           core_error *err) {
    if (!id) return core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such record");
    return write_entry(st, sess, id, in, NULL, 0, out, err);
}

core_status records_photo_get(store *st, const accounts_session *sess, const char *id, uint8_t **jpeg, size_t *len,
                              core_error *err) {
    *jpeg = NULL;
    *len = 0;
    core_status rc = require_person(sess, err);
    if (rc) return rc;
    if (!valid_id(id)) return core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such photo");
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q = NULL;
    rc = store_prepare(db, "SELECT sealed FROM record_photos WHERE record_id = ? AND user_id = ?", &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, sess->user_id);
        int step = sqlite3_step(q);
        if (step == SQLITE_ROW) {
            char ad[96];
            make_ad(ad, "photo", sess->user_id, id);
            if (cs_crypto_open(sess->data_key, ad, strlen(ad), sqlite3_column_blob(q, 0),
                               (size_t)sqlite3_column_bytes(q, 0), jpeg, len, err) != CORE_OK)
                rc = core_fail(err, CORE_ERR_CRYPTO, NULL, "a stored photo failed its integrity check");
        } else if (step == SQLITE_DONE) {
            rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such photo");
        } else {
            rc = store_error(db, err);
        }
    }
    sqlite3_finalize(q);
    store_release(st, db);
    return rc;
}

core_status records_delete(store *st, const accounts_session *sess, const char *id, core_error *err) {
    core_status rc = require_person(sess, err);
    if (rc) return rc;
    if (!valid_id(id)) return core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such record");
    sqlite3 *db = store_acquire(st);
    sqlite3_stmt *q = NULL;
    rc = store_prepare(db, "DELETE FROM records WHERE id = ? AND user_id = ?", &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, sess->user_id);
        if (sqlite3_step(q) != SQLITE_DONE)
            rc = store_error(db, err);
        else if (sqlite3_changes(db) == 0)
            rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such record");
    }
    sqlite3_finalize(q);
    store_release(st, db);
    store_user_changed(st, sess->user_id);
    return rc;
}

core_status records_export(store *st, const accounts_session *sess, json_t **out, core_error *err) {
    *out = NULL;
    json_t *profile = NULL, *list = NULL;
    core_status rc = records_profile_get(st, sess, &profile, err);
    if (!rc) rc = records_list(st, sess, &list, err);
    if (rc) {
        json_decref(profile);
        json_decref(list);
        return rc;
    }
    /* Photos go along base64-encoded: the export is everything kept. */
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e) {
        if (rc || !json_object_get(e, "photo")) continue;
        uint8_t *jpeg = NULL;
        size_t n = 0;
        if ((rc = records_photo_get(st, sess, json_string_value(json_object_get(e, "id")), &jpeg, &n, err))) break;
        char *b64 = malloc(cs_crypto_b64_len(n));
        if (b64) {
            cs_crypto_b64(jpeg, n, b64);
            if (json_object_set_new(json_object_get(e, "photo"), "jpeg_base64url", json_string(b64)))
                rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
            free(b64);
        } else {
            rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        }
        cs_crypto_wipe(jpeg, n);
        free(jpeg);
    }
    if (rc) {
        json_decref(profile);
        json_decref(list);
        return rc;
    }
    char now[32];
    core_format_time(core_now(), now);
    *out = json_pack("{s:s,s:s,s:{s:s,s:s},s:o,s:o}", "format", "caresync-export-1", "exported_at", now, "user",
                     "username", sess->username, "role", accounts_role_name(sess->role), "profile", profile, "records",
                     list);
    if (!*out) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    return CORE_OK;
}
