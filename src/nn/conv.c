/* nn — 2-D convolution.
 *
 * Dense and grouped convolutions are lowered to matrix products (im2col →
 * cblas_sgemm, the classic Caffe layout): for one image and one group,
 *     Y[oc][p] = W[oc][k] · col[k][p],   k = (ic, ky, kx), p = (oy, ox)
 * and backward is two more products plus col2im. Depthwise convolution
 * (groups = in_c = out_c) has no useful matrix form — each channel is its own
 * tiny filter — so it is a direct loop over the window. */
#include "nn/nn.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Width padding: the height's unless the convolution pads per axis. */
static inline int pad_w(const nn_conv *c) { return c->axis_pad ? c->pad_w : c->pad; }
static inline int pad_w_end(const nn_conv *c) { return c->axis_pad ? c->pad_w_end : c->pad_end; }

nn_shape nn_conv_out(const nn_conv *c, nn_shape in) {
    int ph = 2 * c->pad + c->pad_end, pw = 2 * pad_w(c) + pad_w_end(c);
    nn_shape o = {in.n, c->out_c, (in.h + ph - c->kh) / c->stride + 1, (in.w + pw - c->kw) / c->stride + 1};
    return o;
}

size_t nn_conv_params(const nn_conv *c) { return (size_t)c->out_c * (c->in_c / c->groups) * c->kh * c->kw; }

static bool depthwise(const nn_conv *c) { return c->groups == c->in_c && c->out_c == c->in_c && c->groups > 1; }

size_t nn_conv_workspace(const nn_conv *c, nn_shape in) {
    if (depthwise(c)) return 0;
    nn_shape o = nn_conv_out(c, in);
    size_t k = (size_t)(c->in_c / c->groups) * c->kh * c->kw, p = (size_t)o.h * o.w;
    return 2 * k * p;
}

static void tap_range(int kx, int stride, int pad, int in_w, int out_w, int *lo, int *hi);

/* col[k][p] for channels [c0, c0+cn) of one image and output rows
 * [oy0, oy1) (p = (oy1 − oy0)·o.w). Per tap, the output columns whose input
 * column lies inside the row (tap_range) are copied without a bounds test
 * (a memcpy at stride 1) and the rest zeroed. */
static void im2col(const nn_conv *c, nn_shape in, nn_shape o, const float *x, int c0, int cn, int oy0, int oy1,
                   float *col) {
    size_t p = (size_t)(oy1 - oy0) * o.w;
    int s = c->stride, pw = pad_w(c);
    for (int ic = 0; ic < cn; ic++)
        for (int ky = 0; ky < c->kh; ky++)
            for (int kx = 0; kx < c->kw; kx++) {
                float *row = col + ((size_t)(ic * c->kh + ky) * c->kw + kx) * p;
                const float *plane = x + (size_t)(c0 + ic) * in.h * in.w;
                int lo, hi;
                tap_range(kx, s, pw, in.w, o.w, &lo, &hi);
                if (hi < lo) hi = lo;
                for (int oy = oy0; oy < oy1; oy++) {
                    int iy = oy * s - c->pad + ky;
                    float *r = row + (size_t)(oy - oy0) * o.w;
                    if (iy < 0 || iy >= in.h) {
                        memset(r, 0, (size_t)o.w * sizeof *r);
                        continue;
                    }
                    const float *src = plane + (size_t)iy * in.w + kx - pw;
                    for (int ox = 0; ox < lo; ox++) r[ox] = 0.0f;
                    if (s == 1)
                        memcpy(r + lo, src + lo, (size_t)(hi - lo) * sizeof *r);
                    else
                        for (int ox = lo; ox < hi; ox++) r[ox] = src[(ptrdiff_t)ox * s];
                    for (int ox = hi; ox < o.w; ox++) r[ox] = 0.0f;
                }
            }
}

/* Inverse of im2col, accumulating into dx. */
static void col2im(const nn_conv *c, nn_shape in, nn_shape o, const float *col, int c0, int cn, float *dx) {
    size_t p = (size_t)o.h * o.w;
    for (int ic = 0; ic < cn; ic++)
        for (int ky = 0; ky < c->kh; ky++)
            for (int kx = 0; kx < c->kw; kx++) {
                const float *row = col + ((size_t)(ic * c->kh + ky) * c->kw + kx) * p;
                float *plane = dx + (size_t)(c0 + ic) * in.h * in.w;
                for (int oy = 0; oy < o.h; oy++) {
                    int iy = oy * c->stride - c->pad + ky;
                    if (iy < 0 || iy >= in.h) continue;
                    for (int ox = 0; ox < o.w; ox++) {
                        int ix = ox * c->stride - pad_w(c) + kx;
                        if (ix >= 0 && ix < in.w) plane[(size_t)iy * in.w + ix] += row[(size_t)oy * o.w + ox];
                    }
                }
            }
}

/* The output columns ox whose tap kx lands inside the row:
 * 0 ≤ ox·s − pad + kx < w  ⇔  lo ≤ ox < hi. Splitting the loops this way
 * leaves no bounds test in the inner loop, which the compiler vectorises. */
static void tap_range(int kx, int stride, int pad, int in_w, int out_w, int *lo, int *hi) {
    int a = pad - kx, l = a > 0 ? (a + stride - 1) / stride : 0;
    int h = (in_w - 1 + pad - kx) / stride + 1;
    if (in_w - 1 + pad - kx < 0) h = 0;
    *lo = l;
    *hi = h < out_w ? h : out_w;
}

typedef struct {
    const nn_conv *c;
    nn_shape in, o;
    const float *x, *w, *b, *dy;
    float *y, *dx, *dw, *db;
    int act;           /* fused activation (forward), or NN_ACT_NONE */
    float lo, hi;      /* ... as a clamp, when it is one */
    const float *zero; /* a row of zeros, as wide as the rows the 3×3 loops read (or NULL) */
} dw_job;

/* ReLU and ReLU6 are clamps, fused into the loops that write the output;
 * SiLU is not (it gets a pass over each finished plane). */
static bool act_clamp(int act, float *lo, float *hi) {
    *lo = -INFINITY, *hi = INFINITY;
    if (act == NN_RELU)
        *lo = 0;
    else if (act == NN_RELU6)
        *lo = 0, *hi = 6;
    return act != NN_SILU;
}

static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

/* One output row of a 3×3 depthwise filter, all nine taps summed in
 * registers and stored once (the generic loop below reads and writes the
 * row nine times). r0..r2 are the three input rows (a row of zeros where the
 * window hangs over the top or bottom). Columns [lo, hi) have the whole
 * window inside the row and vectorise; the few edge columns test bounds. */
static void dw3_row(const float *restrict r0, const float *restrict r1, const float *restrict r2, int iw,
                    const float *restrict k, float bias, int s, int pad, int ow, int lo, int hi, float vlo, float vhi,
                    float *restrict out) {
    for (int ox = 0; ox < ow; ox++) {
        if (ox == lo && lo < hi) ox = hi;
        if (ox >= ow) break;
        float acc = bias;
        for (int kx = 0; kx < 3; kx++) {
            int ix = ox * s - pad + kx;
            if (ix < 0 || ix >= iw) continue;
            acc += k[kx] * r0[ix] + k[3 + kx] * r1[ix] + k[6 + kx] * r2[ix];
        }
        out[ox] = clampf(acc, vlo, vhi);
    }
    const float k0 = k[0], k1 = k[1], k2 = k[2], k3 = k[3], k4 = k[4], k5 = k[5], k6 = k[6], k7 = k[7], k8 = k[8];
    if (s == 1) {
        for (int ox = lo; ox < hi; ox++) {
            int i = ox - pad;
            out[ox] = clampf(bias + k0 * r0[i] + k1 * r0[i + 1] + k2 * r0[i + 2] + k3 * r1[i] + k4 * r1[i + 1] +
                                 k5 * r1[i + 2] + k6 * r2[i] + k7 * r2[i + 1] + k8 * r2[i + 2],
                             vlo, vhi);
        }
    } else {
        for (int ox = lo; ox < hi; ox++) {
            int i = ox * s - pad;
            out[ox] = clampf(bias + k0 * r0[i] + k1 * r0[i + 1] + k2 * r0[i + 2] + k3 * r1[i] + k4 * r1[i + 1] +
                                 k5 * r1[i + 2] + k6 * r2[i] + k7 * r2[i + 1] + k8 * r2[i + 2],
                             vlo, vhi);
        }
    }
}

static void dw3_plane(const dw_job *j, const float *plane, const float *k, float bias, float *out, const float *zero) {
    const nn_conv *c = j->c;
    nn_shape in = j->in, o = j->o;
    int s = c->stride, pad = c->pad;
    /* Interior columns: ox·s − pad ≥ 0 and ox·s − pad + 2 ≤ in.w − 1. */
    int lo = (pad + s - 1) / s, hi = in.w - 3 + pad >= 0 ? (in.w - 3 + pad) / s + 1 : 0;
    if (hi > o.w) hi = o.w;
    if (lo > hi) lo = hi;
    for (int oy = 0; oy < o.h; oy++) {
        const float *r[3];
        for (int ky = 0; ky < 3; ky++) {
            int iy = oy * s - pad + ky;
            r[ky] = iy >= 0 && iy < in.h ? plane + (size_t)iy * in.w : zero;
        }
        dw3_row(r[0], r[1], r[2], in.w, k, bias, s, pad, o.w, lo, hi, j->lo, j->hi, out + (size_t)oy * o.w);
    }
}

/* Channels [c0, c1) of every image: planes are independent. */
static void dw_forward_part(void *arg, int c0, int c1) {
    const dw_job *j = arg;
    const nn_conv *c = j->c;
    nn_shape in = j->in, o = j->o;
    int s = c->stride;
    bool three = c->kh == 3 && c->kw == 3 && j->zero && pad_w(c) == c->pad; /* dw3 pads both axes alike */
    for (int n = 0; n < in.n; n++)
        for (int ch = c0; ch < c1; ch++) {
            const float *plane = j->x + ((size_t)n * in.c + ch) * in.h * in.w;
            const float *k = j->w + (size_t)ch * c->kh * c->kw;
            float *out = j->y + ((size_t)n * o.c + ch) * o.h * o.w;
            float bias = j->b ? j->b[ch] : 0.0f;
            if (three) {
                dw3_plane(j, plane, k, bias, out, j->zero);
                continue;
            }
            for (int oy = 0; oy < o.h; oy++) {
                float *orow = out + (size_t)oy * o.w;
                for (int ox = 0; ox < o.w; ox++) orow[ox] = bias;
                for (int ky = 0; ky < c->kh; ky++) {
                    int iy = oy * s - c->pad + ky;
                    if (iy < 0 || iy >= in.h) continue;
                    const float *irow = plane + (size_t)iy * in.w;
                    for (int kx = 0; kx < c->kw; kx++) {
                        int lo, hi;
                        tap_range(kx, s, pad_w(c), in.w, o.w, &lo, &hi);
                        float wk = k[ky * c->kw + kx];
                        const float *src = irow + kx - pad_w(c);
                        if (s == 1)
                            for (int ox = lo; ox < hi; ox++) orow[ox] += wk * src[ox];
                        else
                            for (int ox = lo; ox < hi; ox++) orow[ox] += wk * src[ox * s];
                    }
                }
            }
            if (j->act != NN_ACT_NONE && j->act != NN_SILU)
                for (int i = 0; i < o.h * o.w; i++) out[i] = clampf(out[i], j->lo, j->hi);
        }
    /* SiLU is no clamp: its own pass over this part's planes. */
    if (j->act == NN_SILU)
        for (int n = 0; n < in.n; n++) {
            float *part = j->y + ((size_t)n * o.c + c0) * o.h * o.w;
            nn_act_forward(NN_SILU, (size_t)(c1 - c0) * o.h * o.w, part, part);
        }
}

static void dw_backward_part(void *arg, int c0, int c1) {
    const dw_job *j = arg;
    const nn_conv *c = j->c;
    nn_shape in = j->in, o = j->o;
    int s = c->stride;
    for (int n = 0; n < in.n; n++)
        for (int ch = c0; ch < c1; ch++) {
            const float *plane = j->x + ((size_t)n * in.c + ch) * in.h * in.w;
            float *dplane = j->dx ? j->dx + ((size_t)n * in.c + ch) * in.h * in.w : NULL;
            const float *k = j->w + (size_t)ch * c->kh * c->kw;
            float *dk = j->dw + (size_t)ch * c->kh * c->kw;
            const float *g = j->dy + ((size_t)n * o.c + ch) * o.h * o.w;
            if (j->db) {
                float sum = 0;
#pragma omp simd reduction(+ : sum)
                for (int i = 0; i < o.h * o.w; i++) sum += g[i];
                j->db[ch] += sum;
            }
            /* Stride 1, 3×3: the input gradient is the output gradient
             * correlated with the kernel turned by 180°, padded by 2 − pad —
             * the forward row loop again, written once per element. */
            bool dx3 = dplane && j->zero && c->kh == 3 && c->kw == 3 && s == 1 && c->pad <= 2 && pad_w(c) == c->pad;
            if (dx3) {
                float flip[9];
                for (int t = 0; t < 9; t++) flip[t] = k[8 - t];
                int pad = 2 - c->pad;
                int lo = pad, hi = o.w - 3 + pad >= 0 ? o.w - 3 + pad + 1 : 0;
                if (hi > in.w) hi = in.w;
                if (lo > hi) lo = hi;
                for (int iy = 0; iy < in.h; iy++) {
                    const float *r[3];
                    for (int t = 0; t < 3; t++) {
                        int gy = iy - pad + t;
                        r[t] = gy >= 0 && gy < o.h ? g + (size_t)gy * o.w : j->zero;
                    }
                    dw3_row(r[0], r[1], r[2], o.w, flip, 0.0f, 1, pad, in.w, lo, hi, -INFINITY, INFINITY,
                            dplane + (size_t)iy * in.w);
                }
            }
            for (int oy = 0; oy < o.h; oy++) {
                const float *grow = g + (size_t)oy * o.w;
                for (int ky = 0; ky < c->kh; ky++) {
                    int iy = oy * s - c->pad + ky;
                    if (iy < 0 || iy >= in.h) continue;
                    const float *irow = plane + (size_t)iy * in.w;
                    float *drow = dplane ? dplane + (size_t)iy * in.w : NULL;
                    for (int kx = 0; kx < c->kw; kx++) {
                        int lo, hi;
                        tap_range(kx, s, pad_w(c), in.w, o.w, &lo, &hi);
                        const float *src = irow + kx - pad_w(c);
                        float acc = 0, wk = k[ky * c->kw + kx];
#pragma omp simd reduction(+ : acc)
                        for (int ox = lo; ox < hi; ox++) acc += grow[ox] * src[ox * s];
                        dk[ky * c->kw + kx] += acc;
                        if (drow && !dx3) {
                            float *dst = drow + kx - pad_w(c);
                            for (int ox = lo; ox < hi; ox++) dst[ox * s] += grow[ox] * wk;
                        }
                    }
                }
            }
        }
}

static void dw_forward(const nn_conv *c, nn_shape in, nn_shape o, const float *x, const float *w, const float *b,
                       int act, float *y) {
    /* One zero row per layer, shared by the threads (read only); without
     * it the generic loop runs. */
    float *zero = c->kh == 3 && c->kw == 3 && pad_w(c) == c->pad ? calloc((size_t)in.w, sizeof *zero) : NULL;
    dw_job j = {.c = c, .in = in, .o = o, .x = x, .w = w, .b = b, .y = y, .act = act, .zero = zero};
    act_clamp(act, &j.lo, &j.hi);
    nn_parallel(in.c, dw_forward_part, &j);
    free(zero);
}

static void dw_backward(const nn_conv *c, nn_shape in, nn_shape o, const float *x, const float *w, const float *dy,
                        float *dx, float *dw, float *db) {
    if (dx) memset(dx, 0, nn_count(in) * sizeof *dx);
    float *zero = calloc((size_t)o.w, sizeof *zero);
    dw_job j = {.c = c, .in = in, .o = o, .x = x, .w = w, .dy = dy, .dx = dx, .dw = dw, .db = db, .zero = zero};
    nn_parallel(in.c, dw_backward_part, &j);
    free(zero);
}

void nn_conv_forward(const nn_conv *c, nn_shape in, const float *x, const float *w, const float *b, float *y,
                     float *ws) {
    nn_conv_forward_act(c, in, x, w, b, NN_ACT_NONE, y, ws);
}

void nn_conv_forward_act(const nn_conv *c, nn_shape in, const float *x, const float *w, const float *b, int act,
                         float *y, float *ws) {
    nn_shape o = nn_conv_out(c, in);
    if (depthwise(c)) {
        dw_forward(c, in, o, x, w, b, act, y);
        return;
    }
    int icg = c->in_c / c->groups, ocg = c->out_c / c->groups;
    int k = icg * c->kh * c->kw, p = o.h * o.w;
    bool pointwise = c->kh == 1 && c->kw == 1 && c->stride == 1 && c->pad == 0 && c->pad_end == 0 && pad_w(c) == 0 &&
                     pad_w_end(c) == 0;
    float lo = -INFINITY, hi = INFINITY;
    bool clamp = act != NN_ACT_NONE && act_clamp(act, &lo, &hi);
    for (int n = 0; n < in.n; n++) {
        const float *xn = x + (size_t)n * in.c * in.h * in.w;
        float *yn = y + (size_t)n * o.c * p;
        /* The bias goes in first and SGEMM adds to it (beta 1): with beta 0
         * OpenBLAS would clear the output in a pass of its own, and the bias
         * would need another. */
        if (b)
            for (int oc = 0; oc < o.c; oc++)
                for (int i = 0; i < p; i++) yn[(size_t)oc * p + i] = b[oc];
        /* Bands of output rows whose columns fit in about 1 MB (the
         * per-core L2 here): im2col writes a band and SGEMM reads it back
         * from cache instead of memory. Unbanded, the 147×147 3×3 layers
         * at the bottom of InceptionV3 wrote 25 MB of columns and ran at
         * half the speed of the rest. The activation follows each band
         * while its outputs are still cached. */
        int rows = pointwise ? o.h : (int)(262144 / ((size_t)k * o.w));
        if (rows < 1) rows = 1;
        if (rows > o.h) rows = o.h;
        for (int oy0 = 0; oy0 < o.h; oy0 += rows) {
            int oy1 = oy0 + rows < o.h ? oy0 + rows : o.h, bp = (oy1 - oy0) * o.w;
            for (int g = 0; g < c->groups; g++) {
                /* A 1×1 stride-1 convolution reads the input as it is. */
                const float *col = xn + (size_t)g * icg * in.h * in.w;
                if (!pointwise) {
                    im2col(c, in, o, xn, g * icg, icg, oy0, oy1, ws);
                    col = ws;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ocg, bp, k, 1.0f, w + (size_t)g * ocg * k, k,
                            col, bp, b ? 1.0f : 0.0f, yn + (size_t)g * ocg * p + (size_t)oy0 * o.w, p);
            }
            for (int oc = 0; oc < o.c && act != NN_ACT_NONE; oc++) {
                float *band = yn + (size_t)oc * p + (size_t)oy0 * o.w;
                if (clamp)
                    for (int i = 0; i < bp; i++) band[i] = clampf(band[i], lo, hi);
                else
                    nn_act_forward(NN_SILU, (size_t)bp, band, band);
            }
        }
    }
}

void nn_conv_backward(const nn_conv *c, nn_shape in, const float *x, const float *w, const float *dy, float *dx,
                      float *dw, float *db, float *ws) {
    nn_shape o = nn_conv_out(c, in);
    if (depthwise(c)) {
        dw_backward(c, in, o, x, w, dy, dx, dw, db);
        return;
    }
    int icg = c->in_c / c->groups, ocg = c->out_c / c->groups;
    int k = icg * c->kh * c->kw, p = o.h * o.w;
    bool pointwise = c->kh == 1 && c->kw == 1 && c->stride == 1 && c->pad == 0 && c->pad_end == 0 && pad_w(c) == 0 &&
                     pad_w_end(c) == 0;
    float *col = ws, *dcol = ws + (size_t)k * p;
    if (dx) memset(dx, 0, nn_count(in) * sizeof *dx);
    for (int n = 0; n < in.n; n++) {
        const float *xn = x + (size_t)n * in.c * in.h * in.w;
        const float *gn = dy + (size_t)n * o.c * p;
        float *dxn = dx ? dx + (size_t)n * in.c * in.h * in.w : NULL;
        for (int g = 0; g < c->groups; g++) {
            const float *cg = xn + (size_t)g * icg * in.h * in.w;
            if (!pointwise) {
                im2col(c, in, o, xn, g * icg, icg, 0, o.h, col);
                cg = col;
            }
            const float *gg = gn + (size_t)g * ocg * p;
            /* dW += dY · colᵀ */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ocg, k, p, 1.0f, gg, p, cg, p, 1.0f,
                        dw + (size_t)g * ocg * k, k);
            if (dxn) {
                /* dcol = Wᵀ · dY, then scatter back */
                float *target = pointwise ? dxn + (size_t)g * icg * in.h * in.w : dcol;
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, p, ocg, 1.0f, w + (size_t)g * ocg * k, k, gg, p,
                            pointwise ? 1.0f : 0.0f, target, p);
                if (!pointwise) col2im(c, in, o, dcol, g * icg, icg, dxn);
            }
        }
        if (db)
            for (int oc = 0; oc < o.c; oc++) {
                float s = 0;
                for (int i = 0; i < p; i++) s += gn[(size_t)oc * p + i];
                db[oc] += s;
            }
    }
}
