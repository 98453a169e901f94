/* "Not what the model knows": how far a photo's pooled features lie from
 * the skin photos it was trained on.
 *
 * The features of training photos are modelled as one Gaussian per
 * condition with a shared covariance (Lee et al., NeurIPS 2018): in the top m
 * principal directions, the distance to the nearest condition's centre with
 * the within-condition variances; outside them, one shared variance for the
 * rest (a "PCA + residual" Mahalanobis distance; a full 1280×1280 inverse
 * covariance from ~15k photos would be noise in its small directions). The
 * score is the mean squared standardised distance per dimension, so about 1
 * for a typical training photo; the threshold is a
 * high quantile of the scores of held-back skin photos, so by construction
 * only that share of real skin photos is refused, and no photo that is not
 * skin takes part in choosing it.
 *
 * Why not the ImageNet classifier alone: half of skin photos get some
 * ImageNet class above 0.24 and 2 % above 0.95, and a painting or a leaf
 * gets none with confidence; distance in feature space catches both. */
#include "screening/internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK's symmetric eigensolver, from OpenBLAS (Debian builds it in). */
extern void ssyevd_(const char *jobz, const char *uplo, const int *n, float *a, const int *lda, float *w, float *work,
                    const int *lwork, int *iwork, const int *liwork, int *info);

void screening_ood_free(screening_ood *o) {
    free(o->centre);
    free(o->mean);
    free(o->basis);
    free(o->var);
    memset(o, 0, sizeof *o);
}

core_status screening_ood_fit(const float *feats, const size_t *rows, const int *label, size_t n, int dim, int m,
                              screening_ood *o, core_error *err) {
    memset(o, 0, sizeof *o);
    if (n < 2 || m < 1 || m >= dim || m > 256)
        return core_fail(err, CORE_ERR_INVALID, "data", "too few photos to model");
    float *cov = calloc((size_t)dim * dim, sizeof *cov), *chunk = malloc((size_t)256 * dim * sizeof *chunk);
    float *w = malloc((size_t)dim * sizeof *w);
    double *mean = calloc((size_t)dim, sizeof *mean);
    o->mean = malloc((size_t)dim * sizeof *o->mean);
    o->basis = malloc((size_t)m * dim * sizeof *o->basis);
    o->var = malloc((size_t)m * sizeof *o->var);
    core_status rc = CORE_OK;
    if (!cov || !chunk || !w || !mean || !o->mean || !o->basis || !o->var) {
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory fitting the skin model");
        goto done;
    }
    o->dim = dim, o->m = m;
    int nc = 0;
    for (size_t i = 0; label && i < n; i++)
        if (label[i] >= nc) nc = label[i] + 1;
    if (nc > 64) {
        rc = core_fail(err, CORE_ERR_INVALID, "data", "too many conditions");
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        for (int d = 0; d < dim; d++) mean[d] += feats[rows[i] * (size_t)dim + (size_t)d];
    for (int d = 0; d < dim; d++) o->mean[d] = (float)(mean[d] / (double)n);
    /* Covariance (upper triangle) by rank-256 updates of centred rows. */
    for (size_t i = 0; i < n; i += 256) {
        size_t b = n - i < 256 ? n - i : 256;
        for (size_t j = 0; j < b; j++)
            for (int d = 0; d < dim; d++)
                chunk[j * dim + (size_t)d] = feats[rows[i + j] * (size_t)dim + (size_t)d] - o->mean[d];
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, dim, (int)b, 1.0f / (float)(n - 1), chunk, dim, 1.0f, cov,
                    dim);
    }
    double total = 0;
    for (int d = 0; d < dim; d++) total += cov[(size_t)d * dim + (size_t)d];
    /* Row-major upper = column-major lower: ask LAPACK for 'L'. */
    int N = dim, lwork = -1, liwork = -1, info = 0, iw;
    float wq;
    ssyevd_("V", "L", &N, cov, &N, w, &wq, &lwork, &iw, &liwork, &info);
    lwork = (int)wq, liwork = iw;
    float *work = malloc((size_t)lwork * sizeof *work);
    int *iwork = malloc((size_t)liwork * sizeof *iwork);
    if (!work || !iwork)
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory fitting the skin model");
    else
        ssyevd_("V", "L", &N, cov, &N, w, work, &lwork, iwork, &liwork, &info);
    free(work), free(iwork);
    if (!rc && info != 0) rc = core_fail(err, CORE_ERR_INVALID, "data", "the eigensolver failed (%d)", info);
    if (rc) goto done;
    /* Eigenvalues ascending; eigenvector j is column j of the column-major
     * result, i.e. row j of cov as stored here. */
    double top = 0;
    for (int j = 0; j < m; j++) {
        int src = dim - 1 - j;
        o->var[j] = w[src] > 1e-8f ? w[src] : 1e-8f;
        top += w[src];
        memcpy(o->basis + (size_t)j * dim, cov + (size_t)src * dim, (size_t)dim * sizeof(float));
    }
    o->res_var = (float)((total - top) / (double)(dim - m));
    if (!(o->res_var > 1e-10f)) o->res_var = 1e-10f;
    o->above = 1;
    if (nc > 0) {
        /* Centres per condition in the subspace, then the variance along each
         * direction around the row's own centre. */
        o->classes = nc;
        double *c = calloc((size_t)nc * m, sizeof *c), *v = calloc((size_t)m, sizeof *v);
        size_t *cnt = calloc((size_t)nc, sizeof *cnt);
        float *proj = malloc((size_t)n * m * sizeof *proj);
        o->centre = malloc((size_t)nc * m * sizeof *o->centre);
        if (!c || !v || !cnt || !proj || !o->centre) {
            free(c), free(v), free(cnt), free(proj);
            rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory fitting the skin model");
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            const float *x = feats + rows[i] * (size_t)dim;
            for (int j = 0; j < m; j++) {
                double a = 0;
                for (int d = 0; d < dim; d++) a += (double)o->basis[(size_t)j * dim + d] * ((double)x[d] - o->mean[d]);
                proj[i * (size_t)m + (size_t)j] = (float)a;
                c[(size_t)label[i] * m + (size_t)j] += a;
            }
            cnt[label[i]]++;
        }
        for (int k = 0; k < nc; k++)
            for (int j = 0; j < m; j++)
                o->centre[(size_t)k * m + (size_t)j] =
                    cnt[k] ? (float)(c[(size_t)k * m + (size_t)j] / (double)cnt[k]) : 1e30f;
        for (size_t i = 0; i < n; i++)
            for (int j = 0; j < m; j++) {
                double d = proj[i * (size_t)m + (size_t)j] - o->centre[(size_t)label[i] * m + (size_t)j];
                v[j] += d * d;
            }
        for (int j = 0; j < m; j++) o->var[j] = v[j] / (double)n > 1e-8 ? (float)(v[j] / (double)n) : 1e-8f;
        free(c), free(v), free(cnt), free(proj);
    }
done:
    free(cov), free(chunk), free(w), free(mean);
    if (rc) screening_ood_free(o);
    return rc;
}

float screening_ood_distance(const screening_ood *o, const float *proj, const float *x) {
    double in = o->classes ? INFINITY : 0, all = 0, pp = 0;
    for (int j = 0; j < o->m; j++) pp += (double)proj[j] * proj[j];
    if (!o->classes)
        for (int j = 0; j < o->m; j++) in += (double)proj[j] * proj[j] / o->var[j];
    for (int k = 0; k < o->classes; k++) { /* the nearest condition */
        double a = 0;
        for (int j = 0; j < o->m; j++) {
            double d = proj[j] - o->centre[(size_t)k * o->m + (size_t)j];
            a += d * d / o->var[j];
        }
        if (a < in) in = a;
    }
    for (int d = 0; d < o->dim; d++) {
        double c = (double)x[d] - o->mean[d];
        all += c * c;
    }
    double res = all - pp > 0 ? all - pp : 0;
    return (float)((in + res / o->res_var) / (double)o->dim);
}

float screening_ood_score(const screening_ood *o, const float *x) {
    float proj[256];
    int m = o->m < 256 ? o->m : 256;
    for (int j = 0; j < m; j++) {
        double s = 0;
        for (int d = 0; d < o->dim; d++) s += (double)o->basis[(size_t)j * o->dim + d] * ((double)x[d] - o->mean[d]);
        proj[j] = (float)s;
    }
    return screening_ood_distance(o, proj, x) / o->above;
}

core_status screening_ood_centres(const json_t *ood, screening_ood *o, core_error *err) {
    const json_t *c = json_object_get(ood, "centres");
    size_t n = json_array_size(c);
    o->classes = 0;
    if (!n) return CORE_OK;
    if (o->m < 1 || n % (size_t)o->m || n / (size_t)o->m > 64)
        return core_fail(err, CORE_ERR_INVALID, "model", "the skin-distance centres do not fit");
    o->centre = malloc(n * sizeof *o->centre);
    if (!o->centre) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(c, i);
        if (!json_is_number(v))
            return core_fail(err, CORE_ERR_INVALID, "model", "a skin-distance centre is not a number");
        o->centre[i] = (float)json_number_value(v);
    }
    o->classes = (int)(n / (size_t)o->m);
    return CORE_OK;
}

core_status screening_ood_from_model(nn_net *net, const json_t *meta, int features, bool with_basis, screening_ood *o,
                                     int *node, core_error *err) {
    memset(o, 0, sizeof *o);
    const json_t *j = json_object_get(meta, "ood"), *mean = json_object_get(j, "mean"),
                 *var = json_object_get(j, "var");
    int nd = (int)json_integer_value(json_object_get(j, "node")), m = (int)json_integer_value(json_object_get(j, "m"));
    int dim = (int)json_array_size(mean);
    bool ok = nd > features && features >= 0 && nd < nn_net_count(net) && nn_net_node(net, nd)->op == NN_OP_DENSE &&
              nn_net_node(net, nd)->in == features && m >= 1 && m <= 256 && nn_net_shape(net, nd).c == m &&
              dim == nn_net_shape(net, features).c && json_array_size(var) == (size_t)m;
    o->res_var = (float)json_number_value(json_object_get(j, "res_var"));
    o->above = (float)json_number_value(json_object_get(j, "above"));
    if (!ok || !(o->res_var > 0) || !(o->above > 0))
        return core_fail(err, CORE_ERR_INVALID, "model",
                         "the model has no valid skin-distance block (retrain it with caresync train)");
    o->dim = dim, o->m = m;
    o->mean = malloc((size_t)dim * sizeof *o->mean);
    o->var = malloc((size_t)m * sizeof *o->var);
    size_t nw = 0;
    const float *w = nn_net_tensor(net, nd, 0, &nw);
    if (with_basis) o->basis = malloc((size_t)m * dim * sizeof *o->basis);
    if (o->basis && w) memcpy(o->basis, w, nw * sizeof *w);
    core_status rc = CORE_OK;
    if (!o->mean || !o->var || (with_basis && !o->basis)) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    for (int d = 0; !rc && d < dim; d++) o->mean[d] = (float)json_number_value(json_array_get(mean, (size_t)d));
    for (int q = 0; !rc && q < m; q++) {
        o->var[q] = (float)json_number_value(json_array_get(var, (size_t)q));
        if (!(o->var[q] > 0))
            rc = core_fail(err, CORE_ERR_INVALID, "model", "a skin-distance variance is not positive");
    }
    if (!rc) rc = screening_ood_centres(j, o, err);
    if (rc)
        screening_ood_free(o);
    else
        *node = nd;
    return rc;
}

bool screening_risk_from_meta(const json_t *meta, screening_risk *r) {
    const json_t *j = json_object_get(meta, "risk");
    r->melanoma_above = (float)json_number_value(json_object_get(j, "melanoma_above"));
    r->cancer_above = (float)json_number_value(json_object_get(j, "cancer_above"));
    r->benign_sure = (float)json_number_value(json_object_get(j, "benign_sure"));
    return json_is_object(j) && r->benign_sure > 0;
}
