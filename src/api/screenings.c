/* api — skin-photo screenings. Person only: a photo goes in as
 * multipart/form-data (field "photo", up to 20 MB), the result comes back
 * at once and stays fetchable by the same session for an hour.
 *
 * Refusals keep their own stable codes (not_an_image, corrupt_image,
 * file_too_large, too_many_pixels, image_too_small, too_blurry, too_dark,
 * too_bright) so the page can say exactly what to do; nothing is kept for a
 * refused photo.
 *
 * POST /api/screenings/{id}/save {"with_photo": bool} writes a kept result
 * into the person's private record as a note — with the 224 px photo copy
 * only when asked — in one transaction: the record and its photo, or
 * nothing. Saving is idempotent per (screening, with_photo): a repeat (a
 * double tap, a retry after a lost answer) gets the first record back with
 * 200 instead of a second copy with 201. */
#include "api/internal.h"

#include "crypto/crypto.h"
#include "records/records.h"
#include "screening/screening.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void api_screenings_create(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    if (!api_require_person(rq, &sess) || !http_form(rq)) goto done;
    const http_form_part *photo = http_form_get(rq, "photo");
    if (!photo || photo->len == 0) {
        http_respond_error(rq, 422, "photo_missing", "photo", "choose or take a photo of the skin problem first");
        goto done;
    }
    core_error err = {0};
    char *doc = NULL;
    const char *refusal = NULL;
    core_status rc =
        screening_desk_assess(c->desk, sess.user_id, sess.view_key, photo->data, photo->len, &doc, &refusal, &err);
    if (rc == CORE_OK) {
        size_t n = strlen(doc);
        char *body = malloc(n + 16);
        if (!body) {
            free(doc);
            http_respond_error(rq, 500, "internal", NULL, "something went wrong on our side; nothing was kept");
            goto done;
        }
        int len = snprintf(body, n + 16, "{\"screening\":%s}", doc);
        free(doc);
        http_respond_json_owned(rq, 201, body, (size_t)len);
    } else if (rc == CORE_ERR_INVALID && refusal) {
        http_respond_error(rq, strcmp(refusal, "file_too_large") ? 422 : 413, refusal, "photo", "%s", err.message);
    } else if (rc == CORE_ERR_NOT_FOUND) {
        http_respond_error(rq, 503, "model_unavailable", NULL, "%s", err.message);
    } else {
        api_fail(rq, &err, NULL);
    }
done:
    accounts_session_wipe(&sess);
}

void api_screenings_get(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, false)) return;
    if (api_require_person(rq, &sess)) {
        core_error err = {0};
        char *doc = NULL;
        if (screening_desk_get(c->desk, sess.user_id, sess.view_key, http_param(rq, "id"), &doc, NULL, NULL, &err)) {
            api_fail(rq, &err, NULL);
        } else {
            json_t *j = core_json_loads(doc, 0, NULL, &err);
            free(doc);
            if (!j && err.code != CORE_ERR_NOMEM)
                core_fail(&err, CORE_ERR_CRYPTO, NULL, "a kept screening could not be read");
            if (j)
                http_respond_json(rq, 200, json_pack("{s:o}", "screening", j));
            else
                api_fail(rq, &err, NULL);
        }
    }
    accounts_session_wipe(&sess);
}

static int percent(const json_t *rank) {
    return (int)(json_real_value(json_object_get(rank, "probability")) * 100.0 + 0.5);
}

/* The record entry (kind note) that tells, in words, what the screening said. */
static json_t *entry_from_result(const json_t *r) {
    const json_t *top = json_object_get(r, "top");
    const json_t *best = json_array_get(top, 0);
    char title[200];
    if (json_is_true(json_object_get(r, "unsure")) || !best)
        snprintf(title, sizeof title, "Skin check: unsure");
    else
        snprintf(title, sizeof title, "Skin check: %s (%d %%)", api_str(best, "name"), percent(best));
    char details[4096];
    size_t n = 0;
    size_t i;
    const json_t *rank;
    json_array_foreach(top, i, rank) {
        n += (size_t)snprintf(details + n, sizeof details - n, "%s: %d %%\n", api_str(rank, "name"), percent(rank));
        if (n >= sizeof details) break;
    }
    if (n < sizeof details)
        snprintf(details + n, sizeof details - n, "\n%s\n%s\n\n%s", api_str(r, "advice"), api_str(r, "triage_label"),
                 api_str(r, "notice"));
    return json_pack("{s:s, s:s, s:s}", "kind", "note", "title", title, "details", details);
}

/* Which record each saved screening became. In memory, like the kept
 * results themselves (screening_desk): once a result expires or the server
 * restarts it cannot be saved at all, so nothing here needs to outlive it.
 * SAVED_TTL is longer than the desk keeps a result (an hour). An entry is
 * "busy" while its first save runs; a concurrent repeat waits for it rather
 * than racing it into a second record. Entries are keyed by the store too,
 * so servers sharing this process never see each other's. */
#define SAVED_TTL (2 * 3600)
typedef struct saved_entry {
    const store *st;
    int64_t user;
    char screening[65];
    bool with_photo;
    bool busy;
    char record[65];
    int64_t expires;
    struct saved_entry *next;
} saved_entry;

static pthread_mutex_t saved_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t saved_done = PTHREAD_COND_INITIALIZER;
static saved_entry *saved_list;

static saved_entry **saved_find_locked(const store *st, int64_t user, const char *sid, bool with_photo, int64_t now) {
    saved_entry **pp = &saved_list;
    while (*pp) {
        saved_entry *e = *pp;
        if (e->expires <= now && !e->busy) { /* prune as we go */
            *pp = e->next;
            free(e);
            continue;
        }
        if (e->st == st && e->user == user && e->with_photo == with_photo && strcmp(e->screening, sid) == 0) return pp;
        pp = &e->next;
    }
    return NULL;
}

/* Either the record an earlier save made (copied into record, returns
 * true), or the right to save: a busy entry is left for saved_finish. */
static bool saved_claim(const store *st, int64_t user, const char *sid, bool with_photo, char record[65]) {
    pthread_mutex_lock(&saved_lock);
    for (;;) {
        saved_entry **pp = saved_find_locked(st, user, sid, with_photo, core_now());
        if (pp && (*pp)->busy) {
            pthread_cond_wait(&saved_done, &saved_lock);
            continue;
        }
        if (pp) {
            snprintf(record, 65, "%s", (*pp)->record);
            pthread_mutex_unlock(&saved_lock);
            return true;
        }
        saved_entry *e = calloc(1, sizeof *e);
        if (e) { /* out of memory: save without the guard rather than fail */
            e->st = st;
            e->user = user;
            snprintf(e->screening, sizeof e->screening, "%s", sid);
            e->with_photo = with_photo;
            e->busy = true;
            e->expires = core_now() + SAVED_TTL;
            e->next = saved_list;
            saved_list = e;
        }
        pthread_mutex_unlock(&saved_lock);
        return false;
    }
}

/* End a claim: remember record (NULL: the save failed, forget the claim). */
static void saved_finish(const store *st, int64_t user, const char *sid, bool with_photo, const char *record) {
    pthread_mutex_lock(&saved_lock);
    saved_entry **pp = saved_find_locked(st, user, sid, with_photo, core_now());
    if (pp && record) {
        snprintf((*pp)->record, sizeof(*pp)->record, "%s", record);
        (*pp)->busy = false;
    } else if (pp) {
        saved_entry *e = *pp;
        *pp = e->next;
        free(e);
    }
    pthread_cond_broadcast(&saved_done);
    pthread_mutex_unlock(&saved_lock);
}

void api_screenings_save(http_request *rq, void *ctx) {
    api_context *c = ctx;
    accounts_session sess;
    if (!api_session(rq, c, &sess, true)) return;
    json_t *body = NULL, *result = NULL, *entry = NULL, *saved = NULL; /* body: owned by the request */
    char *doc = NULL;
    uint8_t *jpeg = NULL;
    size_t jpeg_len = 0;
    if (!api_require_person(rq, &sess) || !(body = http_json_body(rq))) goto done;
    const json_t *wp = json_object_get(body, "with_photo");
    if (wp && !json_is_boolean(wp)) {
        http_respond_error(rq, 422, "validation_failed", "with_photo", "with_photo must be true or false");
        goto done;
    }
    bool with_photo = json_is_true(wp);
    const char *sid = http_param(rq, "id");
    core_error err = {0};
    /* The kept result first: only the session that made it gets further. */
    core_status rc = screening_desk_get(c->desk, sess.user_id, sess.view_key, sid, &doc, with_photo ? &jpeg : NULL,
                                        with_photo ? &jpeg_len : NULL, &err);
    if (rc) {
        api_fail(rq, &err, NULL);
        goto done;
    }
    char first[65];
    while (saved_claim(c->st, sess.user_id, sid, with_photo, first)) {
        rc = records_get(c->st, &sess, first, &saved, &err);
        if (!rc) {
            http_respond_json(rq, 200, json_pack("{s:o}", "record", saved));
            goto done;
        }
        /* The person deleted that record since: this save makes a new one. */
        if (rc != CORE_ERR_NOT_FOUND) {
            api_fail(rq, &err, NULL);
            goto done;
        }
        saved_finish(c->st, sess.user_id, sid, with_photo, NULL);
    }
    rc = CORE_OK;
    result = core_json_loads(doc, 0, NULL, &err);
    if (!result && err.code != CORE_ERR_NOMEM)
        rc = core_fail(&err, CORE_ERR_CRYPTO, NULL, "a kept screening could not be read");
    else if (!result)
        rc = CORE_ERR_NOMEM;
    if (!rc && !(entry = entry_from_result(result))) rc = core_fail(&err, CORE_ERR_NOMEM, NULL, "out of memory");
    if (!rc)
        rc = with_photo ? records_create_with_photo(c->st, &sess, entry, jpeg, jpeg_len, &saved, &err)
                        : records_create(c->st, &sess, entry, &saved, &err);
    saved_finish(c->st, sess.user_id, sid, with_photo, rc ? NULL : api_str(saved, "id"));
    if (rc)
        api_fail(rq, &err, NULL);
    else
        http_respond_json(rq, 201, json_pack("{s:o}", "record", saved));
done:
    if (jpeg) {
        cs_crypto_wipe(jpeg, jpeg_len);
        free(jpeg);
    }
    free(doc);
    json_decref(result);
    json_decref(entry);
    accounts_session_wipe(&sess);
}
