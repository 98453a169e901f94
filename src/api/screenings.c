/* api — skin-photo screenings. Person only: a photo goes in as
 * multipart/form-data (field "photo", up to 20 MB), the result comes back
 * at once and stays fetchable by the same session for an hour.
 *
 * Refusals keep their own stable codes (not_an_image, corrupt_image,
 * file_too_large, too_many_pixels, image_too_small, too_blurry, too_dark,
 * too_bright) so the page can say exactly what to do; nothing is kept for a
 * refused photo. */
#include "api/internal.h"

#include "screening/screening.h"

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
