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
 * nothing. */
#include "api/internal.h"

#include "crypto/crypto.h"
#include "records/records.h"
#include "screening/screening.h"

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
    core_status rc = screening_desk_assess(c->desk, sess.user_id, sess.view_key, photo->data, photo->len, &doc,
                                           &refusal, &err);
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
            json_t *j = json_loads(doc, 0, NULL);
            free(doc);
            http_respond_json(rq, 200, json_pack("{s:o}", "screening", j ? j : json_null()));
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
        http_respond_error(rq, 422, "invalid", "with_photo", "with_photo must be true or false");
        goto done;
    }
    bool with_photo = json_is_true(wp);
    core_error err = {0};
    core_status rc = screening_desk_get(c->desk, sess.user_id, sess.view_key, http_param(rq, "id"), &doc,
                                        with_photo ? &jpeg : NULL, with_photo ? &jpeg_len : NULL, &err);
    if (!rc && !(result = json_loads(doc, 0, NULL)))
        rc = core_fail(&err, CORE_ERR_CRYPTO, NULL, "a kept screening could not be read");
    if (!rc && !(entry = entry_from_result(result))) rc = core_fail(&err, CORE_ERR_NOMEM, NULL, "out of memory");
    if (!rc)
        rc = with_photo ? records_create_with_photo(c->st, &sess, entry, jpeg, jpeg_len, &saved, &err)
                        : records_create(c->st, &sess, entry, &saved, &err);
    if (rc) api_fail(rq, &err, NULL);
    else http_respond_json(rq, 201, json_pack("{s:o}", "record", saved));
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
