/* screening — from a skin photo to "what is this, and what should I do?".
 *
 * The model is a fine-grained classifier over every labelled class of the
 * training sets (e.g. "dermnetnz/Tinea_pedis"); each fine class belongs to
 * one actionable condition (fungal infection, eczema, ...) with a triage
 * level, and a condition's probability is the sum of its classes'. The
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

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "nn/nn.h"

/* ---- conditions and triage ---- */
typedef enum { TRIAGE_SELF_CARE, TRIAGE_PHARMACIST_GP, TRIAGE_DOCTOR_SOON, TRIAGE_URGENT } screening_triage;

typedef struct {
    const char *code;     /* stable id, e.g. "fungal" */
    const char *name;     /* "Fungal infection" */
    screening_triage triage;
    const char *advice;   /* what to do next, one or two sentences */
} screening_condition;

int screening_condition_count(void);
const screening_condition *screening_condition_at(int i);
/* Condition index of a data set's class (unknown classes: "other"). */
int screening_condition_of(const char *set, const char *cls);
const char *screening_triage_code(screening_triage t);

/* ---- data sets ---- */
typedef struct {
    char *path;           /* absolute file path */
    int set;              /* index into screening_sets() */
    int fine;             /* fine class index (dataset's class) */
    int condition;
    int test;             /* 1 = held-out test image */
} screening_item;

typedef struct {
    screening_item *items;
    size_t count;
    char **fine_names;    /* "set/class" */
    int *fine_condition;  /* per fine class */
    int fine_count;
} screening_dataset;

/* The data sets used ("skin-infections-8", "isic-melanoma-10k", "dermnetnz"). */
int screening_set_count(void);
const char *screening_set_name(int i);
/* Read every set's index.csv under data_dir. Sets that are absent are skipped;
 * none at all is an error. */
core_status screening_dataset_load(const char *data_dir, screening_dataset *ds, core_error *err);
void screening_dataset_free(screening_dataset *ds);

/* ---- features from the backbone ---- */
typedef struct screening_backbone screening_backbone;
/* Read the TFLite backbone (dir/file); *out is the caller's. */
core_status screening_backbone_open(const char *models_dir, const char *file, screening_backbone **out,
                                    core_error *err);
void screening_backbone_free(screening_backbone *bb);
int screening_backbone_dim(const screening_backbone *bb);
/* The backbone's network (owned by bb), the node of its pooled features and
 * the reference a model file built on it stores. */
nn_net *screening_backbone_net(screening_backbone *bb, int *features, nn_backbone *ref);
/* Preprocess a decoded photo as the model expects: centre square, 224 px,
 * pixel bytes scaled; flip mirrors it. out: 3·224·224 floats. */
core_status screening_preprocess(const screening_backbone *bb, const uint8_t *rgb, int w, int h, int flip, float *out,
                                 core_error *err);
/* Features of every item (views: 1 = as is, 2 = also mirrored), computed on
 * `threads` threads, cached in cache_path when given (recomputed when the
 * cache does not match). feats: count·views·dim floats, caller frees. */
core_status screening_extract(screening_backbone *bb, const screening_dataset *ds, int views, int threads,
                              const char *cache_path, float **feats, core_error *err);

/* ---- training and evaluation ---- */
typedef struct {
    uint64_t seed;
    int epochs, hidden, batch;
    float lr, weight_decay, dropout, smoothing;
    int views;
    int threads;
} screening_train_opts;
void screening_train_defaults(screening_train_opts *o);

/* Train the head on the training items, fit the temperature on a held-back
 * tenth of them, evaluate on the test items, and write the model file.
 * report: malloc'd text with every metric (caller frees). */
core_status screening_train(const char *data_dir, const char *models_dir, const char *out_path,
                            const screening_train_opts *o, const char *cache_dir, char **report, core_error *err);
/* Evaluate a saved model on the held-out test images of every set. */
core_status screening_eval(const char *model_path, const char *data_dir, const char *models_dir, const char *cache_dir,
                           int threads, char **report, core_error *err);

/* ---- metrics (for the evaluation report) ---- */
typedef struct { char *buf; size_t len, cap; } screening_text; /* growing text; free(buf) */
void screening_text_printf(screening_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
typedef struct { double accuracy, balanced_accuracy, macro_auc, ece, ece_calibrated; } screening_summary;
/* Area under the ROC curve of score for positive[i] != 0 (NaN if one class is empty). */
double screening_auc(const float *score, const int *positive, size_t n);
/* Expected calibration error of the top-1 confidence, 15 equal bins. */
double screening_ece(const float *probs, const int *label, size_t n, int k);
/* Append a markdown section: per-class sensitivity/specificity/AUC (classes
 * present), accuracy, balanced accuracy, macro AUC, ECE before (probs) and
 * after (probs_cal, may be NULL) temperature scaling, confusion matrix. */
void screening_metrics_report(screening_text *t, const char *title, const float *probs, const float *probs_cal,
                              const int *label, size_t n, int k, const char *const *names, screening_summary *sum);

#endif
