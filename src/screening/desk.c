/* The desk: what the service keeps around screenings — the results of the
 * last hour (sealed, per account) and per-account upload counts. */
#include "screening/screening.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "vision/vision.h"

#define SLOTS 512
#define RATE_SLOTS 1024

typedef struct {
    char id[33];
    int64_t user, expires;
    uint8_t *json, *jpeg; /* sealed */
    size_t json_len, jpeg_len;
} kept;

typedef struct {
    int64_t user, window_start;
    int count;
} rate;

struct screening_desk {
    screening_model *model;
    screening_desk_options opt;
    pthread_mutex_t lock;
    kept slots[SLOTS];
    rate rates[RATE_SLOTS];
};

core_status screening_desk_new(screening_model *model, const screening_desk_options *opt, screening_desk **out,
                               core_error *err) {
    screening_desk *d = calloc(1, sizeof *d);
    if (!d) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    d->model = model;
    d->opt = opt ? *opt : (screening_desk_options){20, 600, 3600};
    pthread_mutex_init(&d->lock, NULL);
    *out = d;
    return CORE_OK;
}

static void kept_clear(kept *k) {
    free(k->json);
    free(k->jpeg);
    memset(k, 0, sizeof *k);
}

void screening_desk_free(screening_desk *d) {
    if (!d) return;
    for (int i = 0; i < SLOTS; i++) kept_clear(&d->slots[i]);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

/* Count an upload for user; false (with retry_after) past the limit. */
static bool admit(screening_desk *d, int64_t user, int64_t now, int *retry_after) {
    pthread_mutex_lock(&d->lock);
    rate *r = NULL, *oldest = &d->rates[0];
    for (int i = 0; i < RATE_SLOTS; i++) {
        if (d->rates[i].user == user) r = &d->rates[i];
        if (d->rates[i].window_start < oldest->window_start) oldest = &d->rates[i];
    }
    if (!r) *(r = oldest) = (rate){user, now, 0};
    if (now - r->window_start >= d->opt.window_seconds) r->window_start = now, r->count = 0;
    bool ok = r->count < d->opt.per_window;
    if (ok)
        r->count++;
    else
        *retry_after = (int)(r->window_start + d->opt.window_seconds - now);
    pthread_mutex_unlock(&d->lock);
    return ok;
}

static json_t *rank_json(const screening_rank *r) {
    const screening_condition *c = screening_condition_at(r->condition);
    return json_pack("{s:s, s:s, s:f, s:s, s:s}", "condition", c->code, "name", c->name, "probability",
                     (double)((int)(r->probability * 1000 + 0.5f)) / 1000.0, "triage", screening_triage_code(c->triage),
                     "advice", c->advice);
}

/* What the result means, in words: how often answers like this one were
 * right on photos from sources the model never saw (the source-out
 * protocol, docs/MODEL.md), where that was measured. */
static const char *meaning(const screening_result *r, char *buf, size_t n) {
    if (r->verdict == SCREENING_UNSURE_NOT_SKIN) return "No assessment was made.";
    if (r->verdict != SCREENING_CONFIDENT)
        return "The screening could not decide between several conditions for this photo.";
    if (r->outside_in_10 < 0)
        return "How often results like this one are right on photos from other clinics is not known yet: the "
               "screening has photos of this condition from one source only.";
    snprintf(buf, n,
             "Results like this one were right about %d times in 10 on photos from clinics the screening had never "
             "seen.",
             r->outside_in_10);
    return buf;
}

static char *result_json(const char *id, const screening_result *r, const vision_quality *q, int64_t now) {
    char mbuf[200];
    json_t *top = json_array(), *issues = json_array();
    for (int i = 0; i < 3; i++) json_array_append_new(top, rank_json(&r->top[i]));
    for (unsigned b = 1; b <= VISION_Q_NO_SKIN; b <<= 1)
        if (q->issues & b)
            json_array_append_new(issues, json_pack("{s:s, s:s}", "code", vision_issue_code((vision_issue)b), "advice",
                                                    vision_issue_advice((vision_issue)b)));
    bool unsure = r->verdict != SCREENING_CONFIDENT;
    const screening_condition *best = screening_condition_at(r->top[0].condition);
    const char *summary =
        r->verdict == SCREENING_UNSURE_NOT_SKIN
            ? "This does not look like a photo of skin the screening knows, so it cannot say anything about it. If "
              "you have a skin problem, take a close, sharp photo of it; if you are worried, please see a professional."
        : r->why != SCREENING_WHY_TOP && r->why != SCREENING_WHY_UNSURE ? screening_why_text(r->why)
        : unsure ? "The screening is unsure about this photo — please see a professional, who can examine it properly."
                 : best->advice;
    /* The triage was decided by the risk rules (triage.c): never less
     * than "see a doctor soon" when unsure, urgent when melanoma cannot be
     * ruled out, whatever the top condition. */
    screening_triage triage = r->triage;
    json_t *doc = json_pack(
        "{s:s, s:I, s:s, s:b, s:s, s:s, s:s, s:s, s:s, s:o, s:{s:o}, s:s, s:{s:f, s:f, s:f}}", "id", id, "created",
        (json_int_t)now, "verdict", screening_verdict_code(r->verdict), "unsure", unsure, "triage",
        screening_triage_code(triage), "triage_label", screening_triage_label(triage), "triage_reason",
        screening_why_code(r->why), "advice", summary, "meaning", meaning(r, mbuf, sizeof mbuf), "top", top, "quality",
        "issues", issues, "notice",
        "This is not a diagnosis. It is an automated, preliminary assessment from a photo and can be wrong. If you are "
        "worried, or it gets worse, see a doctor.",
        "model", "seconds", r->seconds, "imagenet_confidence", (double)r->imagenet_top, "distance",
        (double)((int)(r->ood_score * 1000 + 0.5f)) / 1000.0);
    char *s = core_json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return s;
}

core_status screening_desk_assess(screening_desk *d, int64_t user, const uint8_t key[32], const uint8_t *bytes,
                                  size_t len, char **json, const char **refusal, core_error *err) {
    *json = NULL;
    *refusal = NULL;
    int64_t now = core_now();
    int retry = 0;
    if (!admit(d, user, now, &retry)) {
        core_status rc = core_fail(err, CORE_ERR_THROTTLED, NULL,
                                   "too many photos in a short time; please wait a few minutes before the next one");
        if (err) err->retry_after = retry > 0 ? retry : 1;
        return rc;
    }
    /* The model reads side × side; the copy that is kept is 224 px. */
    int side = d->model ? screening_model_side(d->model) : 224;
    vision_limits lim;
    vision_limits_defaults(&lim);
    lim.target_short_side = side > 224 ? side : 224;
    vision_image img = {0};
    vision_refusal why = VISION_OK;
    core_status rc = vision_decode(bytes, len, &lim, &img, NULL, &why, err);
    if (rc) {
        if (rc == CORE_ERR_INVALID) *refusal = vision_refusal_code(why);
        if (err) snprintf(err->field, sizeof err->field, "photo");
        return rc;
    }
    /* Quality first: a blurred or badly lit photo gets advice, not a guess. */
    vision_quality q;
    if ((rc = vision_assess(&img, &q, err))) goto out;
    /* Exposure before sharpness: a black frame is also "blurry", but the
     * useful advice is about the light. */
    static const vision_issue order[] = {VISION_Q_DARK, VISION_Q_BRIGHT, VISION_Q_BLURRY};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (q.issues & order[i]) {
            *refusal = vision_issue_code(order[i]);
            rc = core_fail(err, CORE_ERR_INVALID, "photo", "%s", vision_issue_advice(order[i]));
            goto out;
        }
    if (!d->model) {
        rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL,
                       "screening is not available on this server (no model installed); please see a professional");
        goto out;
    }
    /* What the model sees is also the copy that is kept (at 224 px). */
    vision_image sq = {0}, big = {0};
    screening_result r;
    if ((rc = vision_center_square(&img, side, side == 224 ? &sq : &big, err))) goto out;
    if (side != 224 && (rc = vision_resize(&big, 224, 224, &sq, err))) {
        vision_image_free(&big);
        goto out;
    }
    rc = screening_assess_rgb(d->model, side == 224 ? sq.rgb : big.rgb, side, side, &r, err);
    vision_image_free(&big);
    if (rc) {
        vision_image_free(&sq);
        goto out;
    }
    /* No skin colour in view is only a hint, listed with the quality
     * issues: it made 4 % of real skin photos "unsure" (dark skin, some
     * lesions, odd light), and the distance from the training photos
     * (assess.c) now tells skin from what is not. */
    uint8_t raw[16];
    char id[33];
    cs_crypto_random(raw, sizeof raw);
    cs_crypto_hex(raw, sizeof raw, id);
    char *doc = result_json(id, &r, &q, now);
    /* The kept photo: what the model saw, re-encoded from pixels only. */
    uint8_t *jpeg = NULL;
    size_t jl = 0;
    kept k = {.user = user, .expires = now + d->opt.ttl_seconds};
    memcpy(k.id, id, sizeof id);
    if (!doc) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    if (!rc) rc = vision_encode_jpeg(&sq, 85, &jpeg, &jl, err);
    char ad[64];
    snprintf(ad, sizeof ad, "screening:%lld:%s", (long long)user, id);
    if (!rc) rc = cs_crypto_seal(key, ad, strlen(ad), doc, strlen(doc), &k.json, &k.json_len, err);
    if (!rc) rc = cs_crypto_seal(key, ad, strlen(ad), jpeg, jl, &k.jpeg, &k.jpeg_len, err);
    vision_image_free(&sq);
    free(jpeg);
    if (rc) {
        kept_clear(&k);
        free(doc);
        goto out;
    }
    pthread_mutex_lock(&d->lock);
    kept *slot = &d->slots[0];
    for (int i = 0; i < SLOTS; i++) {
        if (d->slots[i].expires <= now) kept_clear(&d->slots[i]);
        if (d->slots[i].expires < slot->expires) slot = &d->slots[i];
    }
    kept_clear(slot); /* all full: the oldest goes */
    *slot = k;
    pthread_mutex_unlock(&d->lock);
    *json = doc;
out:
    vision_image_free(&img);
    return rc;
}

core_status screening_desk_get(screening_desk *d, int64_t user, const uint8_t key[32], const char *id, char **json,
                               uint8_t **jpeg, size_t *jpeg_len, core_error *err) {
    *json = NULL;
    if (jpeg) *jpeg = NULL;
    int64_t now = core_now();
    uint8_t *sj = NULL, *sp = NULL;
    size_t sjl = 0, spl = 0;
    pthread_mutex_lock(&d->lock);
    for (int i = 0; i < SLOTS; i++) {
        kept *k = &d->slots[i];
        if (k->json && k->user == user && k->expires > now && !strcmp(k->id, id)) {
            sj = malloc(k->json_len), sp = malloc(k->jpeg_len);
            if (sj && sp) memcpy(sj, k->json, sjl = k->json_len), memcpy(sp, k->jpeg, spl = k->jpeg_len);
            break;
        }
    }
    pthread_mutex_unlock(&d->lock);
    char ad[64];
    snprintf(ad, sizeof ad, "screening:%lld:%s", (long long)user, id);
    core_status rc = CORE_ERR_NOT_FOUND;
    size_t n;
    if (sjl && cs_crypto_open(key, ad, strlen(ad), sj, sjl, (uint8_t **)json, &n, NULL) == CORE_OK) {
        rc = CORE_OK;
        if (jpeg && cs_crypto_open(key, ad, strlen(ad), sp, spl, jpeg, jpeg_len, NULL) != CORE_OK) {
            free(*json);
            *json = NULL;
            rc = CORE_ERR_NOT_FOUND;
        }
    }
    free(sj);
    free(sp);
    if (rc) return core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such screening (results are kept for an hour)");
    return CORE_OK;
}
