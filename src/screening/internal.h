/* screening — what train.c and evaluate.c share; not part of the module's
 * public API (screening.h). */
#ifndef CARESYNC_SCREENING_INTERNAL_H
#define CARESYNC_SCREENING_INTERNAL_H

#include "screening/screening.h"

#define SCREENING_BACKBONE_FILE "mobilenet_v2_1.0_224_quant.tflite"

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

/* The evaluation report over the test items of every set (evaluate.c). */
void screening_evaluate(screening_text *t, const screening_dataset *ds, nn_net *head, nn_net *imnet, const float *feats,
                        int views, int dim, float temp, float temp_c, const float *bias, float unsure_below,
                        const screening_ood_rule *od);
/* The same model on ../shared/models/cat.bmp, the one non-skin photo. */
void screening_not_skin_report(screening_text *t, const char *models_dir, screening_backbone *bb, int hin,
                               nn_net *head, nn_net *imnet, float temp, const float *bias, float unsure_below,
                               const screening_ood_rule *od);

#endif
