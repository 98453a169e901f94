/* screening — from a skin photo to "what is this, and what should I do?".
 *
 * The model's head has two outputs trained together: every labelled class
 * of the training sets (e.g. "dermnetnz/Tinea_pedis"), and the actionable
 * conditions those classes are grouped into (fungal infection, eczema, ...),
 * each with a triage level; the product shows the condition outputs. The
 * image features come from a pretrained MobileNetV2 backbone read from
 * ../shared/models (never copied into the project); the head on top is
 * trained here (`caresync train`) and saved as an nn model file.
 *
 * Data sets are read from ../shared/data/<set>/index.csv
 * (path,class[,split],...). dermnetnz has no split: an image is held out
 * for testing when the first byte of its source MD5 is below 0x33 (~20 %),
 * so the split never depends on file order. */
#ifndef CARESYNC_SCREENING_H
#define CARESYNC_SCREENING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/core.h"
#include "nn/nn.h"

/* ---- conditions and triage ---- */
typedef enum { TRIAGE_SELF_CARE, TRIAGE_PHARMACIST_GP, TRIAGE_DOCTOR_SOON, TRIAGE_URGENT } screening_triage;

typedef struct {
    const char *code; /* stable id, e.g. "fungal" */
    const char *name; /* "Fungal infection" */
    screening_triage triage;
    const char *advice; /* what to do next, one or two sentences */
} screening_condition;

int screening_condition_count(void);
const screening_condition *screening_condition_at(int i);
/* Condition index of a data set's class (unknown classes: "other"). */
int screening_condition_of(const char *set, const char *cls);
/* Whether a data set's class is a skin cancer (melanoma, basal or squamous
 * cell carcinoma): the lesions referral sensitivity is measured on. */
bool screening_is_malignant(const char *cls);
const char *screening_triage_code(screening_triage t);
/* The triage level as one sentence for a person ("Ask a pharmacist or your GP."). */
const char *screening_triage_label(screening_triage t);

/* ---- data sets ---- */
typedef struct {
    char *path; /* absolute file path */
    int set;    /* index into screening_sets() */
    int fine;   /* fine class index (dataset's class) */
    int condition;
    int test;        /* 1 = held-out test image */
    bool malignant;  /* screening_is_malignant of its class */
    int fitzpatrick; /* skin type 1..6 where the set records it, else 0 */
} screening_item;

typedef struct {
    screening_item *items;
    size_t count;
    char **fine_names;   /* "set/class" */
    int *fine_condition; /* per fine class */
    int fine_count;
} screening_dataset;

/* The data sets used ("skin-infections-8", "isic-melanoma-10k", "dermnetnz",
 * "pad-ufes-20-subset", and SCREENING_EXAMPLES_SET: clinicians' labelled
 * examples, loaded only when asked for). */
int screening_set_count(void);
const char *screening_set_name(int i);

/* ---- clinician-labelled examples (examples.c; issue 13) ----
 * Kept only under a "model_training" consent: a 224 px JPEG re-encoded from
 * pixels, the clinician's condition code and the answer's ISO week, as
 * DIR/<handle>/<random id>.<condition>.<week>.jpg (0700/0600, times set to
 * the epoch). The handle is the person's pseudonym derived from their data
 * key only, so the server cannot tell whose examples are whose, and the
 * person's own session can delete them all on revocation. */
#define SCREENING_EXAMPLES_SET "clinician_labelled"
void screening_example_handle(const uint8_t data_key[32], uint8_t out[32]);
/* condition: a code of the table other than "other"; week "2026-W48";
 * photo: any photo vision decodes (centre square taken, 224 px). */
core_status screening_example_put(const char *dir, const uint8_t handle[32], const char *condition, const char *week,
                                  const uint8_t *photo, size_t len, core_error *err);
/* Delete every example of the handle (*deleted counts them; a handle with
 * none is not an error). */
core_status screening_examples_forget(const char *dir, const uint8_t handle[32], size_t *deleted, core_error *err);
/* Append DIR's examples to ds as the set SCREENING_EXAMPLES_SET (its fine
 * classes are "clinician_labelled/<condition>"; about a fifth are test
 * items, by the random id). A missing DIR adds nothing. */
core_status screening_examples_load(const char *dir, screening_dataset *ds, core_error *err);
/* Read every set's index.csv under data_dir. Sets that are absent are skipped;
 * none at all is an error. */
core_status screening_dataset_load(const char *data_dir, screening_dataset *ds, core_error *err);
void screening_dataset_free(screening_dataset *ds);

/* ---- features from the backbone ---- */
typedef struct screening_backbone screening_backbone;
/* Read a backbone: a TFLite file, or a TF.js model (file ending .js or
 * .json, e.g. "nsfwjs/dist/models/inception_v3/model.min.js"), looked up in
 * the colon-separated directories dirs; *out is the caller's. */
core_status screening_backbone_open(const char *dirs, const char *file, screening_backbone **out, core_error *err);
/* The first dirs/file that exists, into path. */
core_status screening_backbone_find(const char *dirs, const char *file, char *path, size_t n);
void screening_backbone_free(screening_backbone *bb);
int screening_backbone_dim(const screening_backbone *bb);
/* Its input: side × side pixels, a byte p becomes scale · (p − zero). */
void screening_backbone_input(const screening_backbone *bb, int *side, float *scale, float *zero);
/* The backbone's network (owned by bb), the node of its pooled features and
 * the reference a model file built on it stores. */
nn_net *screening_backbone_net(screening_backbone *bb, int *features, nn_backbone *ref);
/* Preprocess a decoded photo as the model expects: centre square, 224 px,
 * pixel bytes scaled; flip mirrors it. out: 3·224·224 floats. */
core_status screening_preprocess(const screening_backbone *bb, const uint8_t *rgb, int w, int h, int flip, float *out,
                                 core_error *err);
/* Features of every item (views: 1 = as is, 2 = also mirrored, more =
 * also that many minus two augmented copies, see nn_augment), computed on
 * `threads` threads, cached in cache_path when given (recomputed when the
 * cache does not match). feats: count·views·dim floats, caller frees. */
core_status screening_extract(screening_backbone *bb, const screening_dataset *ds, int views, int threads,
                              const char *cache_path, float **feats, core_error *err);
/* The same for the output of any backbone node up to the features (for
 * fine-tuning the last block: its input activations); dim is
 * screening_node_dim. The cache key includes the node. */
core_status screening_extract_node(screening_backbone *bb, const screening_dataset *ds, int views, int node,
                                   int threads, const char *cache_path, float **feats, core_error *err);

/* What a view of an image is made of. Views 0 and 1 are the photo as is and
 * mirrored; views from 2 on are augmented copies built from the levers in
 * `augment` (SCREENING_AUG_* bits), each seeded by item and view so that a
 * cache can be rebuilt identically. DermNet NZ's watermark (bottom left of
 * every photo) is cropped away from every view, train and test alike, when
 * crop_watermark is set: a model must not learn a source's logo. */
enum {
    SCREENING_AUG_GEOMETRY = 1 << 0, /* random resized crop, rotation, flips */
    SCREENING_AUG_COLOUR = 1 << 1,   /* brightness, contrast, saturation */
    SCREENING_AUG_BLUR = 1 << 2,
    SCREENING_AUG_NOISE = 1 << 3,
    SCREENING_AUG_JPEG = 1 << 4,       /* re-encoded at a random quality 25–90 */
    SCREENING_AUG_RESOLUTION = 1 << 5, /* taken at 56–180 px, then scaled back up */
    SCREENING_AUG_ALL = (1 << 6) - 1,
};
typedef struct {
    int views;        /* ≥ 1 */
    int first_view;   /* extract views [first_view, first_view + views): a lever's copies apart */
    int node;         /* backbone node; < 0: the pooled features */
    unsigned augment; /* SCREENING_AUG_* for views ≥ 2 (0: geometry + colour, the original recipe) */
    bool crop_watermark;
} screening_extract_opts;
/* The general form of the two above (which use augment 0 and no watermark
 * crop). The cache key covers every option. */
core_status screening_extract_with(screening_backbone *bb, const screening_dataset *ds,
                                   const screening_extract_opts *opt, int threads, const char *cache_path,
                                   float **feats, core_error *err);
/* The cache file name for these options under cache_dir (one naming for
 * training, evaluation and the protocol, so they share extractions). */
void screening_cache_path(const screening_backbone *bb, const screening_extract_opts *opt, const char *cache_dir,
                          char *out, size_t n);
/* The square a photo of data set `set` is cut to: the centre square, or for
 * DermNet NZ's 4:3 photos the largest square right of its watermark
 * (x from 5/16 of the width). */
core_status screening_crop(const uint8_t *rgb, int w, int h, int set, bool crop_watermark, int side, uint8_t **out,
                           core_error *err);
int screening_node_dim(const screening_backbone *bb, int node);

/* ---- training and evaluation ---- */
typedef struct {
    uint64_t seed;
    int epochs, hidden, batch;
    float lr, weight_decay, dropout, smoothing;
    int views;
    int threads;
    bool adjust;              /* fit per-condition logit offsets (default false; calibrate.c) */
    bool finetune;            /* also train the backbone's last block and final 1×1 convolution (default true) */
    const char *backbone;     /* TFLite file in models_dir (default SCREENING_BACKBONE_DEFAULT) */
    float fine_weight;        /* weight of the fine-class loss beside the conditions' (default 1) */
    bool group_balance;       /* condition loss balanced over (source, condition) pairs, not conditions */
    float power_norm;         /* > 0: the head's input is power-normalised with this power (0: as is) */
    unsigned augment;         /* SCREENING_AUG_* for views ≥ 2 (0: geometry + colour) */
    bool crop_watermark;      /* crop DermNet's watermark away (default true) */
    const char *not_skin_dir; /* photos that are not skin, for the report only (may be NULL) */
    const char *outside_path; /* the protocol's "right N in 10" per condition (JSON) to embed, or NULL */
    const char *examples_dir; /* clinician-labelled examples to train on too (DATA_DIR/examples), or NULL */
} screening_train_opts;
#define SCREENING_BACKBONE_DEFAULT "mobilenet_v2_1.0_224_quant.tflite"
void screening_train_defaults(screening_train_opts *o);

/* Train the head on the training items, fit the temperature on a held-back
 * tenth of them, evaluate on the test items, and write the model file.
 * report: malloc'd text with every metric (caller frees). */
core_status screening_train(const char *data_dir, const char *models_dir, const char *out_path,
                            const screening_train_opts *o, const char *cache_dir, char **report, core_error *err);
/* The source-out protocol (protocol.c): for each data set, a head trained
 * on every other set (frozen backbone features) is tested on that set's
 * photos of the conditions it shares with the others, next to the same
 * conditions' figures for a head trained on every set's training split
 * ("same source"). Held-out photos of the sources a model was trained on
 * overstate what a person at home gets; a source the model never saw is the
 * closest thing here to photos from another clinic. */
typedef struct {
    const char *backbones;      /* comma-separated TFLite files; "a+b" concatenates their features */
    screening_train_opts train; /* head recipe (frozen features) */
    unsigned augment;           /* SCREENING_AUG_* levers, one extra view each (0: none) */
    bool crop_watermark;
    const char *not_skin_dir; /* photos that are not skin (index.csv), or NULL */
    const char *outside_path; /* write the first configuration's per-condition "right N in 10" here (JSON), or NULL */
} screening_protocol_opts;
void screening_protocol_defaults(screening_protocol_opts *o);
core_status screening_source_out(const char *data_dir, const char *models_dir, const char *cache_dir,
                                 const screening_protocol_opts *po, char **report, core_error *err);

/* Evaluate a saved model on the held-out test images of every set: per set
 * its own classes and the conditions, "unsure", referral sensitivity and
 * specificity, accuracy by skin tone and Fitzpatrick type, and the photos
 * that are not skin listed in not_skin_dir/index.csv (may be NULL). */
core_status screening_eval(const char *model_path, const char *data_dir, const char *models_dir, const char *cache_dir,
                           int threads, const char *not_skin_dir, char **report, core_error *err);

/* ---- calibration (calibrate.c) ----
 * logits: n rows of k. Softmax of logits / t into probs (n × k). */
void screening_softmax_t(const float *logits, size_t n, int k, float t, float *probs);
/* The temperature in [0.5, 5] minimising the negative log-likelihood of label. */
float screening_fit_temperature(const float *logits, const int *label, size_t n, int k);
/* Per-class offsets (bias, k values in [-3, 3]) added to the logits that
 * maximise the mean over groups (data sets, 0..7) of the balanced accuracy
 * of argmax(logit + bias). k ≤ 64; otherwise all zero. */
void screening_fit_bias(const float *logits, const int *label, const int *group, size_t n, int k, float *bias);
/* The offsets a model file's metadata holds ("condition_bias", one per
 * condition, added to the condition logits before the temperature). A
 * model without them gets zeros; malformed ones are CORE_ERR_INVALID. */
core_status screening_condition_bias(const json_t *meta, float *bias, core_error *err);

/* ---- metrics (for the evaluation report) ---- */
typedef struct {
    char *buf;
    size_t len, cap;
} screening_text; /* growing text; free(buf) */
void screening_text_printf(screening_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
typedef struct {
    double accuracy, balanced_accuracy, macro_auc, ece, ece_calibrated;
} screening_summary;
/* Area under the ROC curve of score for positive[i] != 0 (NaN if one class is empty). */
double screening_auc(const float *score, const int *positive, size_t n);
/* Expected calibration error of the top-1 confidence, 15 equal bins. */
double screening_ece(const float *probs, const int *label, size_t n, int k);
/* Append a markdown section: per-class sensitivity/specificity/AUC (classes
 * present), accuracy, balanced accuracy, macro AUC, ECE before (probs) and
 * after (probs_cal, may be NULL) temperature scaling, confusion matrix. */
void screening_metrics_report(screening_text *t, const char *title, const float *probs, const float *probs_cal,
                              const int *label, size_t n, int k, const char *const *names, screening_summary *sum);

/* ---- safety-first triage (triage.c) ----
 * The advice follows the risk, not only the top condition. Thresholds are
 * fitted at training time (held-back malignant lesions of every source,
 * ≥ 95 % sensitivity) and kept in the model file. */
typedef struct {
    float melanoma_above; /* P(melanoma) ≥ this: urgent, whatever the top condition */
    float cancer_above;   /* P(melanoma) + P(skin cancer) ≥ this: at least "see a doctor soon" */
    float benign_sure;    /* a mole or growth gets self-care only when P(benign) ≥ this */
} screening_risk;
typedef enum {
    SCREENING_WHY_TOP,            /* the top condition's own triage */
    SCREENING_WHY_UNSURE,         /* unsure or not skin: a professional should look */
    SCREENING_WHY_MELANOMA_RISK,  /* melanoma cannot be ruled out */
    SCREENING_WHY_CANCER_RISK,    /* a skin cancer cannot be ruled out */
    SCREENING_WHY_LESION_NOT_SURE /* a spot or growth not sure to be harmless */
} screening_why;
/* Decide the triage from calibrated condition probabilities (one per
 * condition), whether the answer is confident, and the thresholds; *why says
 * which rule decided. */
screening_triage screening_decide_triage(const float *probs, bool confident, const screening_risk *risk,
                                         screening_why *why);
const char *screening_why_code(screening_why w); /* "top_condition", "melanoma_risk", ... */
const char *screening_why_text(screening_why w); /* one sentence for the person, "" for top_condition */
/* Condition index of a code, -1 when unknown. */
int screening_condition_index(const char *code);

/* ---- the service's model ----
 * Loaded once at start (the model file and its backbone); assessments may
 * run on many threads at once (each borrows a run from a small pool). */
typedef struct screening_model screening_model;
core_status screening_model_load(const char *model_path, const char *models_dir, screening_model **out,
                                 core_error *err);
void screening_model_free(screening_model *m);
/* The side of the square the model reads (224 for MobileNets, 299 for InceptionV3). */
int screening_model_side(const screening_model *m);

typedef struct {
    int condition;     /* index for screening_condition_at */
    float probability; /* calibrated (temperature-scaled) */
} screening_rank;

typedef enum { SCREENING_CONFIDENT, SCREENING_UNSURE_LOW_CONFIDENCE, SCREENING_UNSURE_NOT_SKIN } screening_verdict;

typedef struct {
    screening_rank top[3];
    screening_verdict verdict;
    screening_triage triage; /* screening_decide_triage's answer */
    screening_why why;
    float melanoma, cancer; /* P(melanoma), P(melanoma) + P(skin cancer) */
    float ood_score;        /* distance from the skin photos the model knows (≥ 1: too far) */
    int outside_in_10;      /* top condition right N in 10 on unseen sources; -1 unmeasured */
    float imagenet_top;     /* the backbone's ImageNet confidence (not-skin signal) */
    double seconds;         /* model time */
} screening_result;

/* Run the model on a decoded RGB image (any size; the centre square is
 * used). Thread-safe. */
core_status screening_assess_rgb(screening_model *m, const uint8_t *rgb, int w, int h, screening_result *out,
                                 core_error *err);
const char *screening_verdict_code(screening_verdict v); /* "confident", "unsure_low_confidence", "unsure_not_skin" */

/* ---- the desk: screenings for the service ----
 * Decodes an upload (vision limits and refusals), checks photo quality, runs
 * the model, and keeps the result with a 224 px pixel-only copy of the photo
 * for ttl seconds, sealed under the caller's key (the session's view key),
 * so only the same session can fetch or save it. Uploads are rate-limited
 * per account. model may be NULL: photos are still checked (refusals as
 * usual), then CORE_ERR_NOT_FOUND ("no model installed"). Thread-safe. */
typedef struct screening_desk screening_desk;
typedef struct {
    int per_window, window_seconds; /* default 20 per 600 s */
    int ttl_seconds;                /* default 3600 */
} screening_desk_options;
core_status screening_desk_new(screening_model *model, const screening_desk_options *opt, screening_desk **out,
                               core_error *err);
void screening_desk_free(screening_desk *d);
/* On success *json is the result document (caller frees). On a refused
 * photo: CORE_ERR_INVALID, *refusal a stable code ("not_an_image",
 * "corrupt_image", "file_too_large", "too_many_pixels", "image_too_small",
 * "too_blurry", "too_dark", "too_bright") and err->message what to do. */
core_status screening_desk_assess(screening_desk *d, int64_t user, const uint8_t key[32], const uint8_t *bytes,
                                  size_t len, char **json, const char **refusal, core_error *err);
/* A kept result (and, if jpeg is not NULL, its photo); NOT_FOUND when it is
 * unknown, expired, another account's or sealed under another key. */
core_status screening_desk_get(screening_desk *d, int64_t user, const uint8_t key[32], const char *id, char **json,
                               uint8_t **jpeg, size_t *jpeg_len, core_error *err);

#endif
