/* screening — what train.c and evaluate.c share; not part of the module's
 * public API (screening.h). */
#ifndef CARESYNC_SCREENING_INTERNAL_H
#define CARESYNC_SCREENING_INTERNAL_H

#include "screening/screening.h"

#include <jansson.h>

#define SCREENING_BACKBONE_FILE SCREENING_BACKBONE_DEFAULT

/* "Not skin": the backbone's ImageNet classifier is confident (≥ above)
 * about a class that none of the held-back skin photos had as its top-1. */
typedef struct {
    float above;
    bool skin[1024];
} screening_ood_rule;
bool screening_is_not_skin(const screening_ood_rule *r, int cls, float p);

/* Logits of rows (indices into feats, dim floats each) through head, in
 * batches: malloc'd n × k (caller frees), NULL when memory ran out. */
float *screening_head_logits(nn_net *head, const float *feats, const size_t *rows, size_t n, int dim, int k);
/* Highest softmax probability of each row (malloc'd n; its class in cls if not NULL). */
float *screening_top_prob(const float *logits, size_t n, int k, int *cls);
/* Rows of k fine-class then nc condition logits, split into two arrays. */
void screening_split_logits(const float *lg, size_t n, int k, int nc, float *fine, float *cond);
int screening_cmp_float(const void *a, const void *b); /* for qsort */
/* End of a run that builds a report: on success hand t's text to *report,
 * on failure free it; returns rc. */
core_status screening_report_finish(screening_text *t, core_status rc, char **report);

/* ---- "not what the model knows" (ood.c) ---- */
typedef struct {
    int dim, m;
    float *mean;   /* dim */
    float *basis;  /* m × dim principal directions (NULL in the service: the model's DENSE node holds them) */
    float *var;    /* m within-condition variances along them */
    int classes;   /* conditions with a centre (0: one centre, the mean) */
    float *centre; /* classes × m: each condition's mean, projected */
    float res_var; /* variance per remaining dimension */
    float above;   /* raw distance at the threshold: score = distance / above, ≥ 1 is too far */
} screening_ood;
/* label: the condition of each row (NULL: one Gaussian for all). *o is
 * overwritten (free an earlier fit first); on failure it holds nothing. */
core_status screening_ood_fit(const float *feats, const size_t *rows, const int *label, size_t n, int dim, int m,
                              screening_ood *o, core_error *err);
/* Raw distance from the projections proj (m values: basis · (x − mean)) and x. */
float screening_ood_distance(const screening_ood *o, const float *proj, const float *x);
/* distance / above for a feature vector (needs basis). */
float screening_ood_score(const screening_ood *o, const float *x);
void screening_ood_free(screening_ood *o);
/* Read the condition centres of a model's "ood" metadata (classes × m
 * numbers, or none) into o (m set); CORE_ERR_INVALID when malformed. */
core_status screening_ood_centres(const json_t *ood, screening_ood *o, core_error *err);
/* The distance model of a saved model: its metadata's "ood" block and the
 * DENSE node (*node) on the pooled features (node `features`) that holds
 * the projection, copied into o->basis when with_basis (evaluation; the
 * service reads the projection from the forward pass). Validated whole. */
core_status screening_ood_from_model(nn_net *net, const json_t *meta, int features, bool with_basis, screening_ood *o,
                                     int *node, core_error *err);
/* The referral thresholds of a model's metadata; false when absent. */
bool screening_risk_from_meta(const json_t *meta, screening_risk *r);

/* Everything that turns head-input activations into an answer, as the
 * service applies it (assess.c), for evaluation on cached activations. */
typedef struct {
    nn_net *head;  /* head input → k fine-class then nc condition logits */
    nn_net *imnet; /* head input → the backbone's ImageNet logits */
    nn_net *pool;  /* head input → the backbone's pooled features (for ood); NULL when they are the head input */
    float temp, temp_c, bias[32], unsure_below;
    screening_ood_rule od;
    screening_ood ood; /* basis filled */
    screening_risk risk;
} screening_judge;
void screening_judge_free(screening_judge *j);

/* What the judge says of rows of head-input activations (n × dim):
 * calibrated condition probabilities (n × nc, caller frees), verdicts and
 * triage per row. NULL when memory ran out. */
typedef struct {
    float *probs;
    screening_verdict *verdict;
    screening_triage *triage;
    float *ood; /* feature-distance score (≥ 1: too far) */
    size_t n;
} screening_judged;
core_status screening_judge_rows(const screening_judge *j, const float *feats, const size_t *rows, size_t n, int dim,
                                 int k, screening_judged *out, core_error *err);
void screening_judged_free(screening_judged *r);

/* The evaluation report over the test items of every set (evaluate.c),
 * then the photos that are not skin (not_skin_dir/index.csv, may be NULL),
 * extracted with bb at node hin. */
core_status screening_evaluate(screening_text *t, const screening_dataset *ds, const screening_judge *j,
                               const float *feats, int views, int dim, screening_backbone *bb, int hin,
                               bool crop_watermark, const char *not_skin_dir, int threads, const char *cache_dir,
                               core_error *err);

/* ---- training the head on cached features (head.c) ---- */
typedef struct {
    const float *feats; /* row r = item · views + view, dim floats each */
    int dim, views;
    const screening_dataset *ds;
} screening_rows;
/* dense hidden → ReLU → dropout → dense k (fine classes + conditions) */
nn_net *screening_head_new(int dim, int hidden, float dropout, int k, float power_norm);
/* Train head on the rows tr[0..ntr) (shuffled in place). Parameters before
 * tail_params are pretrained and move ten times slower. log may be NULL. */
core_status screening_fit_head(nn_net *head, size_t tail_params, const screening_rows *R, size_t *tr, size_t ntr,
                               const screening_train_opts *o, nn_rng *rng, screening_text *log, core_error *err);
/* The referral sensitivity the thresholds are fitted for on the held-back
 * tenth. Asking 0.98 instead was tried (2026-12-03): thresholds fell from
 * 0.093 to 0.035, ISIC specificity from 0.01 to 0.008, and DermNet's test
 * split stayed at 56 of 60 — its misses are lesions the model takes for
 * something else with near certainty, which no threshold on risk catches. */
#define SCREENING_REFERRAL_SENSITIVITY 0.95
/* Whether an item is in the held-back tenth (calibration and thresholds). */
bool screening_held_back(const char *path);
/* Thresholds for ≥ sensitivity of malignant lesions in every set that has
 * at least 5 of them among rows (calibrated condition probabilities probs,
 * n × nc, of items items[i]); benign_sure is fixed. */
void screening_fit_risk(const float *probs, const screening_item *const *items, size_t n, double sensitivity,
                        screening_risk *risk);

/* Photos that are not skin, listed in dir/index.csv (first column: path);
 * NULL paths with count 0 when absent. */
char **screening_not_skin_list(const char *dir, size_t *count);

#endif
