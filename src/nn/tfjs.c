/* TensorFlow.js import: Keras "layers" models and converter "graph" models
 * (model.json plus binary weight shards), and the same wrapped in
 * browserify bundles as npm's nsfwjs ships them.
 *
 * nsfwjs 4.x (MIT) ships three models, each as dist/models/NAME/model.min.js
 * (a browserify module whose export is the model.json object written as a
 * minified JavaScript literal: unquoted keys, !0/!1 for true/false, .5 for
 * 0.5) and group1-shardKofN.min.js (each exporting one base64 string: the
 * shard's bytes). Every weight is uint8-quantised per tensor, value =
 * min + scale·q, with min and scale in the manifest's `quantization` entry.
 *   inception_v3      layers model (Keras 2.2.4), 299×299: Conv2D without
 *                     bias + BatchNormalization (scale=false) + ReLU,
 *                     1×7/7×1/1×3/3×1 kernels, max/average pooling ("SAME"
 *                     average pooling excludes padding), Concatenate; an
 *                     8×8 average pool over the 8×8 map gives 2,048 features;
 *                     Dense 256 → 128 → 5 with dropout between.
 *   mobilenet_v2      layers model, 224×224, alpha 1.0 (1,280 features).
 *   mobilenet_v2_mid  graph model from the TF.js converter, 224×224,
 *                     alpha 1.4 (1,792 features): batch norm is already
 *                     folded into _FusedConv2D/FusedDepthwiseConv2dNative
 *                     (BiasAdd[, Relu6]); a Mul and a Sub at the input.
 *
 * Input scaling (how a pixel byte p reaches the network): a TF.js model does
 * not record it. nsfwjs (core.js, classify) feeds tf.browser.fromPixels(img)
 * .toFloat().div(255), resized bilinearly to the model's size, so the
 * network input is p/255 for every model. mobilenet_v2_mid then computes
 * x·2 − 1 itself (hub_input/Mul, hub_input/Sub: constants read from its
 * weights); those two ops are folded into the reported scale and zero
 * instead of being run, so that info->in_scale·(p − info->in_zero) is the
 * first convolution's input: 1/255 and 0 for inception_v3, 2/255 and 127.5
 * for mobilenet_v2_mid.
 *
 * In layers models a convolution read only by a BatchNormalization is
 * folded with it (w·γ/√(σ²+ε), β − μ·γ/√(σ²+ε) as bias): one node instead
 * of two, and the BN pass over the largest tensors disappears. The result
 * is the same function up to float rounding. Softmax at the output is left
 * out (the network gives logits, like the TFLite reader). Any layer or op
 * outside the lists below is refused with its name and class. */
#include "nn/nn.h"

#include <ctype.h>
#include <stdarg.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds for untrusted files: the largest nsfwjs model is 22 MB of weights
 * and 178 kB of topology. */
#define MAX_TEXT ((size_t)64 << 20)
#define MAX_WEIGHTS ((size_t)512 << 20)
#define MAX_DEPTH 512
#define MAX_NODES 100000

static core_status bad(core_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static core_status bad(core_error *err, const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return core_fail(err, CORE_ERR_INVALID, NULL, "%s", msg);
}

/* ---- a JavaScript object literal as JSON ----
 * Enough of JavaScript for what minifiers emit for data: objects, arrays,
 * strings in either quote, numbers (.5, -.5, 1e-3), true/false/null, !0
 * and !1, and unquoted keys. Anything else (functions, hex numbers,
 * Infinity) is refused. Standard JSON passes through unchanged. Returns a
 * malloc'd NUL-terminated JSON text, or NULL; *end is set past the value. */
typedef struct {
    char *b;
    size_t n, cap;
    bool oom;
} sbuf;

static void put(sbuf *s, const char *p, size_t n) {
    if (s->oom) return;
    if (s->n + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->n + n + 1) cap *= 2;
        char *nb = realloc(s->b, cap);
        if (!nb) {
            s->oom = true;
            return;
        }
        s->b = nb, s->cap = cap;
    }
    memcpy(s->b + s->n, p, n);
    s->n += n;
    s->b[s->n] = 0;
}
static void putc_(sbuf *s, char c) { put(s, &c, 1); }

static bool ident_start(char c) { return isalpha((unsigned char)c) || c == '_' || c == '$'; }
static bool ident_char(char c) { return isalnum((unsigned char)c) || c == '_' || c == '$'; }

static char *js_to_json(const char *t, size_t n, size_t *end) {
    sbuf o = {0};
    size_t i = 0;
    int depth = 0;
    bool started = false;
    while (i < n) {
        char c = t[i];
        if (isspace((unsigned char)c)) {
            i++;
            continue;
        }
        if (started && depth == 0) break;
        started = true;
        if (c == '{' || c == '[') {
            if (++depth > MAX_DEPTH) goto fail;
            putc_(&o, c), i++;
        } else if (c == '}' || c == ']') {
            if (--depth < 0) goto fail;
            putc_(&o, c), i++;
        } else if (c == ',' || c == ':') {
            if (depth == 0) goto fail;
            putc_(&o, c), i++;
        } else if (c == '"' || c == '\'') {
            char q = c;
            putc_(&o, '"');
            for (i++;; i++) {
                if (i >= n) goto fail;
                char d = t[i];
                if (d == q) break;
                if ((unsigned char)d < 0x20) goto fail;
                if (d == '\\') {
                    if (i + 1 >= n) goto fail;
                    char e = t[++i];
                    if (e == '\'')
                        putc_(&o, '\'');
                    else if (strchr("\"\\/bfnrtu", e))
                        putc_(&o, '\\'), putc_(&o, e);
                    else
                        goto fail;
                } else if (d == '"') {
                    put(&o, "\\\"", 2); /* inside a single-quoted string */
                } else {
                    putc_(&o, d);
                }
            }
            putc_(&o, '"'), i++;
        } else if (c == '!' && i + 1 < n && (t[i + 1] == '0' || t[i + 1] == '1')) {
            if (t[i + 1] == '0')
                put(&o, "true", 4);
            else
                put(&o, "false", 5);
            i += 2;
        } else if (c == '-' || c == '+' || c == '.' || isdigit((unsigned char)c)) {
            if (c == '-') putc_(&o, '-');
            if (c == '-' || c == '+') i++;
            if (i < n && t[i] == '.') putc_(&o, '0');
            size_t s = i;
            while (i < n && isdigit((unsigned char)t[i])) putc_(&o, t[i++]);
            if (i < n && t[i] == '.') {
                putc_(&o, '.'), i++;
                if (i >= n || !isdigit((unsigned char)t[i])) putc_(&o, '0');
                while (i < n && isdigit((unsigned char)t[i])) putc_(&o, t[i++]);
            }
            if (i == s) goto fail;
            if (i < n && (t[i] == 'e' || t[i] == 'E')) {
                putc_(&o, 'e'), i++;
                if (i < n && (t[i] == '-' || t[i] == '+')) putc_(&o, t[i++]);
                if (i >= n || !isdigit((unsigned char)t[i])) goto fail;
                while (i < n && isdigit((unsigned char)t[i])) putc_(&o, t[i++]);
            }
            if (i < n && ident_char(t[i])) goto fail; /* 0x10, 1n */
        } else if (ident_start(c)) {
            size_t s = i;
            while (i < n && ident_char(t[i])) i++;
            size_t len = i - s, j = i;
            while (j < n && isspace((unsigned char)t[j])) j++;
            if (j < n && t[j] == ':' && depth > 0) {
                putc_(&o, '"'), put(&o, t + s, len), putc_(&o, '"');
            } else if ((len == 4 && !memcmp(t + s, "true", 4)) || (len == 5 && !memcmp(t + s, "false", 5)) ||
                       (len == 4 && !memcmp(t + s, "null", 4))) {
                put(&o, t + s, len);
            } else {
                goto fail;
            }
        } else {
            goto fail;
        }
    }
    if (depth != 0 || !started || o.oom) goto fail;
    *end = i;
    return o.b;
fail:
    free(o.b);
    return NULL;
}

/* What a browserify bundle exports: the text after the first ".exports="
 * inside its first module ("[function(": the UMD prelude before it has a
 * module.exports= of its own). A text that starts with '{' is taken as it
 * is (a plain model.json). */
static const char *bundle_payload(const char *t, size_t n, size_t *rest) {
    size_t i = 0;
    while (i < n && isspace((unsigned char)t[i])) i++;
    if (i < n && t[i] == '{') {
        *rest = n - i;
        return t + i;
    }
    static const char key[] = ".exports=", mod[] = "[function(";
    size_t from = 0;
    while (from + sizeof mod - 1 <= n && memcmp(t + from, mod, sizeof mod - 1)) from++;
    for (size_t k = from; k + sizeof key - 1 <= n; k++)
        if (!memcmp(t + k, key, sizeof key - 1)) {
            *rest = n - k - (sizeof key - 1);
            return t + k + sizeof key - 1;
        }
    return NULL;
}

static int b64v(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* Decode base64 from t until the closing quote q (or n); appends to out. */
static bool b64_decode(const char *t, size_t n, char q, sbuf *out) {
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n && t[i] != q; i++) {
        if (t[i] == '=') continue;
        int v = b64v((unsigned char)t[i]);
        if (v < 0) return false;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            putc_(out, (char)(acc >> bits & 0xff));
        }
        if (out->n > MAX_WEIGHTS) return false;
    }
    return !out->oom;
}

/* ---- weights ---- */
typedef struct {
    const char *name;
    int dims[4], rank;
    size_t count, off; /* elements; byte offset in the weight data */
    int qtype;         /* 0 float32, 1 uint8, 2 uint16, 3 float16, 4 int32 */
    double min, scale;
} weight;

typedef struct {
    json_t *root;
    weight *w;
    size_t nw;
    json_t *windex; /* name → index in w */
    const uint8_t *data;
    size_t dlen;
    nn_net *net;
    nn_tfjs_info *info;
    core_error *err;
} rd;

static const weight *find_weight(rd *r, const char *name) {
    json_t *i = r->windex ? json_object_get(r->windex, name) : NULL;
    return i ? &r->w[json_integer_value(i)] : NULL;
}

static float half_to_float(uint16_t h) {
    int e = h >> 10 & 0x1f, m = h & 0x3ff;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 0x400), e - 25);
    return h & 0x8000 ? -v : v;
}

/* Element i of a weight, dequantised. */
static float wval(rd *r, const weight *w, size_t i) {
    const uint8_t *p = r->data + w->off;
    switch (w->qtype) {
    case 1: return (float)(w->min + w->scale * p[i]);
    case 2: return (float)(w->min + w->scale * (p[2 * i] | p[2 * i + 1] << 8));
    case 3: return half_to_float((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
    case 4: {
        int32_t v;
        memcpy(&v, p + 4 * i, 4);
        return (float)v;
    }
    default: {
        float v;
        memcpy(&v, p + 4 * i, 4);
        return v;
    }
    }
}

/* The weight `name` with the given shape (rank dims; -1 = any), all finite;
 * NULL with an error otherwise. */
static const weight *need(rd *r, const char *name, int rank, int d0, int d1, int d2, int d3, core_status *rc) {
    const weight *w = find_weight(r, name);
    int want[4] = {d0, d1, d2, d3};
    bool ok = w && w->rank == rank;
    for (int k = 0; ok && k < rank; k++) ok = want[k] < 0 || w->dims[k] == want[k];
    for (size_t i = 0; ok && i < w->count; i++) ok = isfinite(wval(r, w, i));
    if (!ok) {
        *rc = bad(r->err, "TF.js model: weight %s is missing, of the wrong shape, or not finite%s", name, "");
        return NULL;
    }
    return w;
}

static const char *dtype_of(json_t *o) { return json_string_value(json_object_get(o, "dtype")); }

/* Read the manifest: every weight's name, shape, encoding and place in the
 * concatenated shards (groups in order, weights in order within each). */
static core_status read_manifest(rd *r, json_t *manifest) {
    if (!json_is_array(manifest)) return bad(r->err, "TF.js model: no weightsManifest");
    size_t total = 0, cap = 0;
    for (size_t g = 0; g < json_array_size(manifest); g++) {
        json_t *ws = json_object_get(json_array_get(manifest, g), "weights");
        if (!json_is_array(ws)) return bad(r->err, "TF.js model: a manifest group without weights");
        cap += json_array_size(ws);
    }
    if (cap > MAX_NODES) return bad(r->err, "TF.js model: too many weights");
    r->w = calloc(cap ? cap : 1, sizeof *r->w);
    r->windex = json_object();
    if (!r->w || !r->windex) return core_fail(r->err, CORE_ERR_NOMEM, NULL, "out of memory reading the model");
    for (size_t g = 0; g < json_array_size(manifest); g++) {
        json_t *ws = json_object_get(json_array_get(manifest, g), "weights");
        for (size_t k = 0; k < json_array_size(ws); k++) {
            json_t *e = json_array_get(ws, k), *shape = json_object_get(e, "shape"),
                   *q = json_object_get(e, "quantization");
            weight *w = &r->w[r->nw];
            w->name = json_string_value(json_object_get(e, "name"));
            const char *dt = dtype_of(e);
            if (!w->name || !dt || !json_is_array(shape) || json_array_size(shape) > 4)
                return bad(r->err, "TF.js model: malformed weight entry %s", w->name ? w->name : "(unnamed)");
            w->rank = (int)json_array_size(shape);
            w->count = 1;
            for (int d = 0; d < w->rank; d++) {
                json_t *v = json_array_get(shape, (size_t)d);
                if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1 << 24))
                    return bad(r->err, "TF.js model: weight %s has a bad shape", w->name);
                w->dims[d] = (int)json_integer_value(v);
                w->count *= (size_t)w->dims[d];
                if (w->count > MAX_WEIGHTS) return bad(r->err, "TF.js model: weight %s is too large", w->name);
            }
            size_t esz;
            if (q) {
                const char *qt = dtype_of(q);
                json_t *mn = json_object_get(q, "min"), *sc = json_object_get(q, "scale");
                if (strcmp(dt, "float32") || !qt)
                    return bad(r->err, "TF.js model: weight %s: unsupported quantization", w->name);
                if (!strcmp(qt, "float16")) {
                    w->qtype = 3, esz = 2;
                } else if (!strcmp(qt, "uint8") || !strcmp(qt, "uint16")) {
                    if (!json_is_number(mn) || !json_is_number(sc))
                        return bad(r->err, "TF.js model: weight %s: quantization without min and scale", w->name);
                    w->qtype = qt[4] == '8' ? 1 : 2, esz = qt[4] == '8' ? 1 : 2;
                    w->min = json_number_value(mn), w->scale = json_number_value(sc);
                } else {
                    return bad(r->err, "TF.js model: weight %s: quantization to %s is not supported", w->name, qt);
                }
            } else if (!strcmp(dt, "float32")) {
                w->qtype = 0, esz = 4;
            } else if (!strcmp(dt, "int32")) {
                w->qtype = 4, esz = 4;
            } else {
                return bad(r->err, "TF.js model: weight %s has dtype %s", w->name, dt);
            }
            w->off = total;
            total += w->count * esz;
            if (json_object_get(r->windex, w->name))
                return bad(r->err, "TF.js model: two weights are named %s", w->name);
            if (json_object_set_new(r->windex, w->name, json_integer((json_int_t)r->nw)))
                return core_fail(r->err, CORE_ERR_NOMEM, NULL, "out of memory reading the model");
            r->nw++;
        }
    }
    if (total != r->dlen) {
        return core_fail(r->err, CORE_ERR_INVALID, NULL,
                         "TF.js model: the manifest describes %zu bytes of weights, the shards hold %zu", total,
                         r->dlen);
    }
    return CORE_OK;
}

/* ---- building the net ---- */

/* A tensor of the source graph: the node computing it, and padding a
 * ZeroPadding2D layer asked for, still to be applied by its reader. */
typedef struct {
    const char *name;
    int node;   /* net node, NN_INPUT, or -2: not a tensor (constant, skipped) */
    int pad[4]; /* top, bottom, left, right */
    bool padded;
    bool affine; /* graph models: the input times a, plus b (not yet a node) */
    double a, b;
    const weight *cw; /* graph models: a constant */
    bool softmax;     /* computed by a softmax that was left out */
    bool folded;      /* layers models: a batch norm folded into the convolution it reads */
} tensor;

/* Tensors by name: a jansson object as the hash table (name → index of the
 * latest tensor of that name), so that lookups stay O(1) in models of
 * thousands of layers. */
typedef struct {
    tensor *t;
    size_t n, cap;
    json_t *index;
} tmap;

static tensor *tfind(tmap *m, const char *name) {
    json_t *i = m->index ? json_object_get(m->index, name) : NULL;
    return i ? &m->t[json_integer_value(i)] : NULL;
}

static tensor *tadd(tmap *m, const char *name, int node) {
    if (!m->index && !(m->index = json_object())) return NULL;
    if (m->n >= MAX_NODES || json_object_set_new(m->index, name, json_integer((json_int_t)m->n))) return NULL;
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 64;
        tensor *nt = realloc(m->t, cap * sizeof *nt);
        if (!nt) return NULL;
        m->t = nt, m->cap = cap;
    }
    tensor *t = &m->t[m->n++];
    memset(t, 0, sizeof *t);
    t->name = name, t->node = node;
    return t;
}

/* TensorFlow SAME padding for one dimension; the odd pixel goes at the end. */
static void same_pad(int in, int k, int s, int *before, int *after) {
    int out = (in + s - 1) / s, total = (out - 1) * s + k - in;
    if (total < 0) total = 0;
    *before = total / 2, *after = total - total / 2;
}

static int add_node(rd *r, const nn_node *d, const char *what, core_status *rc) {
    int k = nn_net_add(r->net, d);
    if (k < 0) *rc = bad(r->err, "TF.js model: %s does not fit its input", what);
    return k;
}

/* A convolution. w is HWIO (kh, kw, in, out) for a dense kernel or HWC1 for
 * a depthwise one; bias may be NULL; bn_* (layers models) fold a batch
 * norm in: y = (conv − mean)·gamma/√(var+eps) + beta. pad: extra padding
 * (top, bottom, left, right) from a ZeroPadding2D before the convolution. */
typedef struct {
    const weight *w, *bias, *gamma, *beta, *mean, *var;
    double eps;
    int stride, depthwise;
    bool same;
    const int *pad;
} conv_spec;

static int build_conv(rd *r, int in, const conv_spec *cs, const char *name, core_status *rc) {
    nn_shape is = nn_net_shape(r->net, in);
    const weight *w = cs->w;
    int kh = w->dims[0], kw = w->dims[1], ci = w->dims[2], co = cs->depthwise ? ci : w->dims[3];
    if (ci != is.c || (cs->depthwise && w->dims[3] != 1)) {
        *rc = bad(r->err, "TF.js model: %s: kernel channels do not match its input", name);
        return -1;
    }
    int t = 0, b = 0, l = 0, rr = 0;
    if (cs->pad) t = cs->pad[0], b = cs->pad[1], l = cs->pad[2], rr = cs->pad[3];
    if (cs->same) {
        int sb, sa;
        same_pad(is.h + t + b, kh, cs->stride, &sb, &sa);
        t += sb, b += sa;
        same_pad(is.w + l + rr, kw, cs->stride, &sb, &sa);
        l += sb, rr += sa;
    }
    /* nn_conv: pad before, pad + pad_end after, pad_end 0 or 1. */
    if (b - t < 0 || b - t > 1 || rr - l < 0 || rr - l > 1) {
        *rc = bad(r->err, "TF.js model: %s: padding this engine cannot express", name);
        return -1;
    }
    nn_conv c = {.in_c = ci,
                 .out_c = co,
                 .kh = kh,
                 .kw = kw,
                 .stride = cs->stride,
                 .groups = cs->depthwise ? ci : 1,
                 .pad = t,
                 .pad_end = b - t};
    if (l != t || rr - l != b - t) c.axis_pad = 1, c.pad_w = l, c.pad_w_end = rr - l;
    bool fold = cs->mean != NULL;
    nn_node d = {.op = NN_OP_CONV, .in = in, .conv = c, .bias = cs->bias || fold};
    int k = add_node(r, &d, name, rc);
    if (k < 0) return -1;
    float *wt = nn_net_tensor(r->net, k, 0, NULL), *bt = nn_net_tensor(r->net, k, 1, NULL);
    int icg = cs->depthwise ? 1 : ci;
    for (int o = 0; o < co; o++) {
        double s = 1, sh = 0;
        if (fold) {
            double g = cs->gamma ? wval(r, cs->gamma, (size_t)o) : 1.0, v = wval(r, cs->var, (size_t)o);
            if (!(v + cs->eps > 0)) {
                *rc = bad(r->err, "TF.js model: %s: a batch-norm variance is negative", name);
                return -1;
            }
            s = g / sqrt(v + cs->eps);
            sh = (cs->beta ? wval(r, cs->beta, (size_t)o) : 0.0) - wval(r, cs->mean, (size_t)o) * s;
        }
        for (int i = 0; i < icg; i++)
            for (int y = 0; y < kh; y++)
                for (int x = 0; x < kw; x++) {
                    size_t src = cs->depthwise ? ((size_t)y * kw + x) * ci + (size_t)o
                                               : (((size_t)y * kw + x) * ci + (size_t)i) * co + (size_t)o;
                    wt[(((size_t)o * icg + i) * kh + y) * kw + x] = (float)(wval(r, w, src) * s);
                }
        if (bt) bt[o] = (float)((cs->bias ? wval(r, cs->bias, (size_t)o) * s : 0.0) + sh);
    }
    return k;
}

static int build_act(rd *r, int in, nn_act a, const char *name, core_status *rc) {
    nn_node d = {.op = NN_OP_ACT, .in = in, .act = a};
    return add_node(r, &d, name, rc);
}

/* Dense from a kernel (in, out), transposed into the engine's (out, in). */
static int build_dense(rd *r, int in, const weight *w, const weight *bias, const char *name, core_status *rc) {
    nn_shape is = nn_net_shape(r->net, in);
    if (is.h != 1 || is.w != 1 || (size_t)w->dims[0] != nn_count(is)) {
        /* A flattened map would be read in HWC order; only flat inputs keep
         * the two layouts the same. */
        *rc = bad(r->err, "TF.js model: %s: a dense layer on anything but a flat vector of the right size", name);
        return -1;
    }
    int units = w->dims[1];
    nn_node d = {.op = NN_OP_DENSE, .in = in, .units = units, .bias = bias != NULL};
    int k = add_node(r, &d, name, rc);
    if (k < 0) return -1;
    float *wt = nn_net_tensor(r->net, k, 0, NULL), *bt = nn_net_tensor(r->net, k, 1, NULL);
    for (int o = 0; o < units; o++) {
        for (int i = 0; i < is.c; i++) wt[(size_t)o * is.c + i] = wval(r, w, (size_t)i * units + (size_t)o);
        if (bt) bt[o] = wval(r, bias, (size_t)o);
    }
    return k;
}

/* Pooling: a whole-map average becomes GAP (and the features node). */
static int build_pool(rd *r, int in, bool avg, int kh, int kw, int sh, int sw, bool same, const char *name,
                      core_status *rc) {
    nn_shape is = nn_net_shape(r->net, in);
    if (kh < 1 || kw < 1 || sh < 1 || sw < 1 || kh > 64 || kw > 64 || sh > 64 || sw > 64) {
        *rc = bad(r->err, "TF.js model: %s: pooling window or stride out of range", name);
        return -1;
    }
    if (avg && !same && kh == is.h && kw == is.w) {
        nn_node d = {.op = NN_OP_GAP, .in = in};
        int k = add_node(r, &d, name, rc);
        if (k >= 0) r->info->features = k;
        return k;
    }
    int pb = 0, pa = 0, pb2 = 0, pa2 = 0;
    if (same) {
        same_pad(is.h, kh, sh, &pb, &pa);
        same_pad(is.w, kw, sw, &pb2, &pa2);
    }
    if (kh != kw || sh != sw || pb != pa || pb2 != pa2 || pb != pb2) {
        *rc = bad(r->err, "TF.js model: %s: pooling window, stride or padding this engine cannot express", name);
        return -1;
    }
    nn_node d = {.op = avg ? NN_OP_AVGPOOL : NN_OP_MAXPOOL,
                 .in = in,
                 .pool = {.k = kh, .stride = sh, .pad = pb, .exclude_pad = avg && same}};
    return add_node(r, &d, name, rc);
}

/* ---- Keras layers models ---- */

static bool int_pair(json_t *v, int *a, int *b) {
    if (json_is_integer(v)) {
        *a = *b = (int)json_integer_value(v);
        return true;
    }
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(json_array_get(v, 0)) ||
        !json_is_integer(json_array_get(v, 1)))
        return false;
    json_int_t x = json_integer_value(json_array_get(v, 0)), y = json_integer_value(json_array_get(v, 1));
    if (x < 0 || x > 4096 || y < 0 || y > 4096) return false;
    *a = (int)x, *b = (int)y;
    return true;
}

static const char *cfg_str(json_t *cfg, const char *key) { return json_string_value(json_object_get(cfg, key)); }

/* The names of the layers a layer reads (Keras 2 format:
 * inbound_nodes = [[[name, 0, 0, {}], ...]]); at most max. -1 if malformed. */
static int inbound(json_t *layer, const char **names, int max) {
    json_t *in = json_object_get(layer, "inbound_nodes");
    if (!json_is_array(in)) return -1;
    if (json_array_size(in) == 0) return 0;
    if (json_array_size(in) != 1) return -1; /* a layer called twice (shared weights) */
    json_t *calls = json_array_get(in, 0);
    if (!json_is_array(calls) || json_array_size(calls) > (size_t)max) return -1;
    for (size_t i = 0; i < json_array_size(calls); i++) {
        json_t *c = json_array_get(calls, i);
        if (!json_is_array(c) || !json_is_string(json_array_get(c, 0))) return -1;
        json_t *ti = json_array_get(c, 2);
        if (ti && json_is_integer(ti) && json_integer_value(ti) != 0) return -1;
        names[i] = json_string_value(json_array_get(c, 0));
    }
    return (int)json_array_size(calls);
}

#define MAX_IN 16

/* For every layer name, how many layers read it and the first of them:
 * name → [count, index], computed once. */
static json_t *reader_table(json_t *layers) {
    json_t *t = json_object();
    for (size_t i = 0; t && i < json_array_size(layers); i++) {
        const char *in[MAX_IN];
        int k = inbound(json_array_get(layers, i), in, MAX_IN);
        for (int j = 0; j < k; j++) {
            json_t *e = json_object_get(t, in[j]);
            if (e)
                json_array_set_new(e, 0, json_integer(json_integer_value(json_array_get(e, 0)) + 1));
            else
                json_object_set_new(t, in[j], json_pack("[i,I]", 1, (json_int_t)i));
        }
    }
    return t;
}

/* How many layers read layer `name`, and the first of them. */
static int readers(json_t *table, json_t *layers, const char *name, json_t **first) {
    json_t *e = json_object_get(table, name);
    *first = e ? json_array_get(layers, (size_t)json_integer_value(json_array_get(e, 1))) : NULL;
    return e ? (int)json_integer_value(json_array_get(e, 0)) : 0;
}

static bool is_output(json_t *config, const char *name) {
    json_t *out = json_object_get(config, "output_layers");
    json_t *o0 = json_array_get(out, 0);
    return json_is_array(out) && json_array_size(out) == 1 && json_is_array(o0) &&
           json_is_string(json_array_get(o0, 0)) && !strcmp(json_string_value(json_array_get(o0, 0)), name);
}

static bool act_of(const char *a, int *act) {
    if (!a || !strcmp(a, "linear"))
        *act = NN_ACT_NONE;
    else if (!strcmp(a, "relu"))
        *act = NN_RELU;
    else if (!strcmp(a, "relu6"))
        *act = NN_RELU6;
    else if (!strcmp(a, "swish") || !strcmp(a, "silu"))
        *act = NN_SILU;
    else
        return false;
    return true;
}

static core_status layers_body(rd *r, json_t *config, json_t *layers, bool sequential, json_t *rtab, tmap *m);

static core_status layers_model(rd *r, json_t *topo, tmap *m) {
    json_t *mc = json_object_get(topo, "model_config");
    if (!mc) mc = topo;
    const char *cls = json_string_value(json_object_get(mc, "class_name"));
    json_t *config = json_object_get(mc, "config");
    bool sequential = cls && !strcmp(cls, "Sequential");
    json_t *layers = sequential && json_is_array(config) ? config : json_object_get(config, "layers");
    if (!cls || (strcmp(cls, "Model") && strcmp(cls, "Functional") && !sequential) || !json_is_array(layers))
        return bad(r->err, "TF.js model: model class %s is not supported", cls ? cls : "(none)");
    if (json_array_size(layers) > MAX_NODES) return bad(r->err, "TF.js model: too many layers");
    json_t *rtab = reader_table(layers);
    if (!rtab) return core_fail(r->err, CORE_ERR_NOMEM, NULL, "out of memory reading the model");
    core_status rc = layers_body(r, config, layers, sequential, rtab, m);
    json_decref(rtab);
    return rc;
}

static core_status layers_body(rd *r, json_t *config, json_t *layers, bool sequential, json_t *rtab, tmap *m) {
    json_t *out_layer = NULL;
    core_status rc = CORE_OK;
    int prev = -2; /* Sequential: the previous layer's tensor index */
    for (size_t li = 0; li < json_array_size(layers) && !rc; li++) {
        json_t *L = json_array_get(layers, li), *cfg = json_object_get(L, "config");
        const char *lc = json_string_value(json_object_get(L, "class_name"));
        const char *name = json_string_value(json_object_get(L, "name"));
        if (!name) name = cfg_str(cfg, "name");
        if (!lc || !name || !json_is_object(cfg))
            return bad(r->err, "TF.js model: malformed layer %s", name ? name : "(unnamed)");
        tensor *prior = tfind(m, name);
        if (prior && prior->folded && !strcmp(lc, "BatchNormalization")) {
            prev = (int)(prior - m->t); /* built with its convolution */
            out_layer = L;
            continue;
        }
        if (prior) return bad(r->err, "TF.js model: two layers are named %s", name);
        /* Inputs. */
        const char *inames[MAX_IN];
        tensor *in[MAX_IN];
        int nin;
        if (sequential) {
            nin = prev >= 0 ? 1 : 0;
            if (nin) in[0] = &m->t[prev];
        } else {
            nin = inbound(L, inames, MAX_IN);
            if (nin < 0) return bad(r->err, "TF.js model: layer %s has inputs this reader does not follow", name);
            for (int i = 0; i < nin; i++) {
                in[i] = tfind(m, inames[i]);
                if (!in[i] || in[i]->node == -2)
                    return bad(r->err, "TF.js model: layer %s reads %s, which comes later or is no tensor", name,
                               inames[i]);
            }
        }
        /* The input: an InputLayer, or a Sequential model's first layer's
         * batch_input_shape. */
        if (!strcmp(lc, "InputLayer") || (sequential && !r->net)) {
            json_t *bis = json_object_get(cfg, "batch_input_shape");
            if (!bis) bis = json_object_get(cfg, "batch_shape");
            if (r->net || !json_is_array(bis) || json_array_size(bis) != 4)
                return bad(r->err, "TF.js model: the input must be one image (batch, height, width, channels)");
            int d[3];
            for (int k = 0; k < 3; k++) {
                json_t *v = json_array_get(bis, (size_t)k + 1);
                if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 4096)
                    return bad(r->err, "TF.js model: the input size must be fixed");
                d[k] = (int)json_integer_value(v);
            }
            r->net = nn_net_new(d[2], d[0], d[1]);
            if (!r->net) return core_fail(r->err, CORE_ERR_NOMEM, NULL, "out of memory reading the model");
            r->info->height = d[0], r->info->width = d[1];
            if (!strcmp(lc, "InputLayer")) {
                if (!tadd(m, name, NN_INPUT)) return core_fail(r->err, CORE_ERR_NOMEM, NULL, "out of memory");
                prev = (int)m->n - 1;
                continue;
            }
            if (!tadd(m, "(input)", NN_INPUT)) return core_fail(r->err, CORE_ERR_NOMEM, NULL, "out of memory");
            prev = (int)m->n - 1;
            nin = 1, in[0] = &m->t[prev];
        }
        if (nin == 0) return bad(r->err, "TF.js model: layer %s has no input", name);
        /* Only a convolution may read through a ZeroPadding2D. */
        bool conv = !strcmp(lc, "Conv2D") || !strcmp(lc, "DepthwiseConv2D");
        for (int i = 0; i < nin; i++)
            if (in[i]->padded && !conv)
                return bad(r->err, "TF.js model: ZeroPadding2D feeds %s (%s), not a convolution", name, lc);
        int x = in[0]->node, node = -1, act = NN_ACT_NONE;
        bool same_tensor = false; /* the layer passes its input through */
        int pad_copy[4];
        bool padded = false;
        char wn[512];
        if (conv) {
            bool dw = lc[0] == 'D';
            int kh, kw, sh, sw, dh = 1, dwl = 1;
            const char *padding = cfg_str(cfg, "padding");
            json_t *dil = json_object_get(cfg, "dilation_rate");
            json_t *groups = json_object_get(cfg, "groups");
            if (!int_pair(json_object_get(cfg, "kernel_size"), &kh, &kw) ||
                !int_pair(json_object_get(cfg, "strides"), &sh, &sw) || (dil && !int_pair(dil, &dh, &dwl)) || !padding)
                return bad(r->err, "TF.js model: %s: malformed convolution", name);
            if (sh != sw || sh < 1 || dh != 1 || dwl != 1 || (groups && json_integer_value(groups) != 1) ||
                (cfg_str(cfg, "data_format") && strcmp(cfg_str(cfg, "data_format"), "channels_last")) ||
                (dw && json_integer_value(json_object_get(cfg, "depth_multiplier")) > 1))
                return bad(r->err,
                           "TF.js model: %s: stride, dilation, groups, layout or depth multiplier not supported", name);
            if (strcmp(padding, "same") && strcmp(padding, "valid"))
                return bad(r->err, "TF.js model: %s: padding %s", name, padding);
            if (!act_of(cfg_str(cfg, "activation"), &act))
                return bad(r->err, "TF.js model: %s: activation %s", name, cfg_str(cfg, "activation"));
            conv_spec cs = {.stride = sh,
                            .depthwise = dw,
                            .same = !strcmp(padding, "same"),
                            .pad = in[0]->padded ? in[0]->pad : NULL};
            snprintf(wn, sizeof wn, dw ? "%s/depthwise_kernel" : "%s/kernel", name);
            nn_shape is = nn_net_shape(r->net, x);
            cs.w = need(r, wn, 4, kh, kw, is.c, dw ? 1 : -1, &rc);
            if (!cs.w) return rc;
            if (json_is_true(json_object_get(cfg, "use_bias"))) {
                snprintf(wn, sizeof wn, "%s/bias", name);
                cs.bias = need(r, wn, 1, dw ? is.c : cs.w->dims[3], 0, 0, 0, &rc);
                if (!cs.bias) return rc;
            }
            /* Fold the batch norm that alone reads this convolution. */
            json_t *rdr;
            const char *rcls = NULL;
            if (act == NN_ACT_NONE && !sequential && readers(rtab, layers, name, &rdr) == 1)
                rcls = json_string_value(json_object_get(rdr, "class_name"));
            if (rcls && !strcmp(rcls, "BatchNormalization")) {
                json_t *bc = json_object_get(rdr, "config");
                const char *bn = json_string_value(json_object_get(rdr, "name"));
                json_t *axis = json_object_get(bc, "axis");
                int co = dw ? is.c : cs.w->dims[3];
                if (bn && (!axis || json_integer_value(axis) == 3 || json_integer_value(axis) == -1) &&
                    json_is_number(json_object_get(bc, "epsilon"))) {
                    cs.eps = json_number_value(json_object_get(bc, "epsilon"));
                    snprintf(wn, sizeof wn, "%s/moving_mean", bn);
                    cs.mean = need(r, wn, 1, co, 0, 0, 0, &rc);
                    if (!cs.mean) return rc;
                    snprintf(wn, sizeof wn, "%s/moving_variance", bn);
                    cs.var = need(r, wn, 1, co, 0, 0, 0, &rc);
                    if (!cs.var) return rc;
                    if (!json_is_false(json_object_get(bc, "scale"))) {
                        snprintf(wn, sizeof wn, "%s/gamma", bn);
                        cs.gamma = need(r, wn, 1, co, 0, 0, 0, &rc);
                        if (!cs.gamma) return rc;
                    }
                    if (!json_is_false(json_object_get(bc, "center"))) {
                        snprintf(wn, sizeof wn, "%s/beta", bn);
                        cs.beta = need(r, wn, 1, co, 0, 0, 0, &rc);
                        if (!cs.beta) return rc;
                    }
                }
            }
            node = build_conv(r, x, &cs, name, &rc);
            if (node < 0) return rc;
            if (cs.mean) {
                /* The batch norm's name stands for the folded convolution. */
                tensor *t = tadd(m, json_string_value(json_object_get(rdr, "name")), node);
                if (!t) return core_fail(r->err, CORE_ERR_NOMEM, NULL, "out of memory");
                t->folded = true;
            }
        } else if (!strcmp(lc, "BatchNormalization")) {
            /* Unfolded: a node of its own. */
            json_t *axis = json_object_get(cfg, "axis");
            nn_shape is = nn_net_shape(r->net, x);
            if (axis && json_integer_value(axis) != 3 && json_integer_value(axis) != -1)
                return bad(r->err, "TF.js model: %s: batch norm over an axis other than channels", name);
            double eps = json_number_value(json_object_get(cfg, "epsilon"));
            nn_node d = {.op = NN_OP_BN, .in = x, .eps = (float)(eps > 0 ? eps : 1e-3), .momentum = 0.01f};
            node = add_node(r, &d, name, &rc);
            if (node < 0) return rc;
            static const char *const slot[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
            for (int s = 0; s < 4; s++) {
                if ((s == 0 && json_is_false(json_object_get(cfg, "scale"))) ||
                    (s == 1 && json_is_false(json_object_get(cfg, "center"))))
                    continue; /* gamma 1 / beta 0 as created */
                snprintf(wn, sizeof wn, "%s/%s", name, slot[s]);
                const weight *w = need(r, wn, 1, is.c, 0, 0, 0, &rc);
                if (!w) return rc;
                float *t = nn_net_tensor(r->net, node, s, NULL);
                for (int c = 0; c < is.c; c++) t[c] = wval(r, w, (size_t)c);
            }
        } else if (!strcmp(lc, "Activation")) {
            const char *a = cfg_str(cfg, "activation");
            if (a && !strcmp(a, "softmax")) {
                if (!is_output(config, name) && !sequential)
                    return bad(r->err, "TF.js model: %s: softmax before the output", name);
                same_tensor = true;
            } else if (!act_of(a, &act)) {
                return bad(r->err, "TF.js model: %s: activation %s", name, a);
            } else if (act == NN_ACT_NONE) {
                same_tensor = true;
            } else {
                node = build_act(r, x, (nn_act)act, name, &rc);
                if (node < 0) return rc;
            }
            act = NN_ACT_NONE;
        } else if (!strcmp(lc, "ReLU")) {
            json_t *mv = json_object_get(cfg, "max_value");
            double ns = json_number_value(json_object_get(cfg, "negative_slope"));
            double th = json_number_value(json_object_get(cfg, "threshold"));
            if (ns != 0 || th != 0 || (mv && !json_is_null(mv) && json_number_value(mv) != 6))
                return bad(r->err, "TF.js model: %s: a ReLU other than max(0, x) or min(max(0, x), 6)", name);
            node = build_act(r, x, mv && !json_is_null(mv) ? NN_RELU6 : NN_RELU, name, &rc);
            if (node < 0) return rc;
        } else if (!strcmp(lc, "ZeroPadding2D")) {
            json_t *p = json_object_get(cfg, "padding");
            int v[4];
            bool ok = false;
            if (json_is_integer(p)) {
                v[0] = v[1] = v[2] = v[3] = (int)json_integer_value(p);
                ok = v[0] >= 0 && v[0] <= 64;
            } else if (json_is_array(p) && json_array_size(p) == 2) {
                json_t *a = json_array_get(p, 0), *b = json_array_get(p, 1);
                if (json_is_array(a) && json_is_array(b))
                    ok = int_pair(a, &v[0], &v[1]) && int_pair(b, &v[2], &v[3]);
                else if (int_pair(p, &v[0], &v[2]))
                    v[1] = v[0], v[3] = v[2], ok = true;
            }
            if (!ok || in[0]->padded) return bad(r->err, "TF.js model: %s: malformed padding", name);
            memcpy(pad_copy, v, sizeof v);
            padded = true;
            same_tensor = true;
        } else if (!strcmp(lc, "MaxPooling2D") || !strcmp(lc, "AveragePooling2D")) {
            int kh, kw, sh, sw;
            const char *padding = cfg_str(cfg, "padding");
            json_t *st = json_object_get(cfg, "strides");
            if (!int_pair(json_object_get(cfg, "pool_size"), &kh, &kw) || !padding ||
                (st && !json_is_null(st) && !int_pair(st, &sh, &sw)))
                return bad(r->err, "TF.js model: %s: malformed pooling", name);
            if (!st || json_is_null(st)) sh = kh, sw = kw;
            if (strcmp(padding, "same") && strcmp(padding, "valid"))
                return bad(r->err, "TF.js model: %s: padding %s", name, padding);
            node = build_pool(r, x, lc[0] == 'A', kh, kw, sh, sw, !strcmp(padding, "same"), name, &rc);
            if (node < 0) return rc;
        } else if (!strcmp(lc, "GlobalAveragePooling2D")) {
            nn_node d = {.op = NN_OP_GAP, .in = x};
            node = add_node(r, &d, name, &rc);
            if (node < 0) return rc;
            r->info->features = node;
        } else if (!strcmp(lc, "Concatenate") || !strcmp(lc, "Add")) {
            bool cat = lc[0] == 'C';
            json_t *axis = json_object_get(cfg, "axis");
            if (cat && axis && json_integer_value(axis) != 3 && json_integer_value(axis) != -1)
                return bad(r->err, "TF.js model: %s: concatenation along an axis other than channels", name);
            if (nin < 2) return bad(r->err, "TF.js model: %s: fewer than two inputs", name);
            node = x;
            for (int i = 1; i < nin; i++) {
                nn_node d = {.op = cat ? NN_OP_CONCAT : NN_OP_ADD, .in = node, .in2 = in[i]->node};
                node = add_node(r, &d, name, &rc);
                if (node < 0) return rc;
            }
        } else if (!strcmp(lc, "Flatten") || !strcmp(lc, "Dropout")) {
            nn_shape is = nn_net_shape(r->net, x);
            if (lc[0] == 'F' && (is.h != 1 || is.w != 1))
                return bad(r->err, "TF.js model: %s: flattening a map (only 1×1 maps keep the channel order)", name);
            same_tensor = true; /* dropout is the identity in inference */
        } else if (!strcmp(lc, "Dense")) {
            const char *a = cfg_str(cfg, "activation");
            bool softmax = a && !strcmp(a, "softmax");
            if (softmax && !is_output(config, name) && !sequential)
                return bad(r->err, "TF.js model: %s: softmax before the output", name);
            if (!softmax && !act_of(a, &act)) return bad(r->err, "TF.js model: %s: activation %s", name, a);
            json_t *units = json_object_get(cfg, "units");
            nn_shape is = nn_net_shape(r->net, x);
            snprintf(wn, sizeof wn, "%s/kernel", name);
            const weight *w = need(r, wn, 2, (int)nn_count(is), (int)json_integer_value(units), 0, 0, &rc), *b = NULL;
            if (!w) return rc;
            if (json_is_true(json_object_get(cfg, "use_bias"))) {
                snprintf(wn, sizeof wn, "%s/bias", name);
                b = need(r, wn, 1, w->dims[1], 0, 0, 0, &rc);
                if (!b) return rc;
            }
            node = build_dense(r, x, w, b, name, &rc);
            if (node < 0) return rc;
        } else {
            return bad(r->err, "TF.js model: layer %s is a %s, which this engine does not run", name, lc);
        }
        /* An activation inside the layer (Conv2D, Dense). */
        if (act != NN_ACT_NONE && (node = build_act(r, node, (nn_act)act, name, &rc)) < 0) return rc;
        tensor *t = tadd(m, name, same_tensor ? x : node);
        if (!t) return core_fail(r->err, CORE_ERR_NOMEM, NULL, "out of memory");
        if (padded) memcpy(t->pad, pad_copy, sizeof pad_copy), t->padded = true;
        prev = (int)m->n - 1;
        out_layer = L;
    }
    if (!r->net || !out_layer) return bad(r->err, "TF.js model: no layers");
    const char *oname;
    if (sequential) {
        oname = NULL;
        r->info->output = m->t[prev].node;
    } else {
        json_t *out = json_object_get(config, "output_layers"), *o0 = json_array_get(out, 0);
        json_t *ins = json_object_get(config, "input_layers");
        if (!json_is_array(out) || json_array_size(out) != 1 || !json_is_array(o0) ||
            !(oname = json_string_value(json_array_get(o0, 0))) || (ins && json_array_size(ins) != 1))
            return bad(r->err, "TF.js model: expected one input and one output");
        tensor *t = tfind(m, oname);
        if (!t || t->node < 0)
            return bad(r->err, "TF.js model: the output %s is not computed", oname ? oname : "(unnamed)");
        r->info->output = t->node;
    }
    return CORE_OK;
}

/* ---- converter graph models ---- */

static json_t *attr(json_t *node, const char *key) { return json_object_get(json_object_get(node, "attr"), key); }

/* attr.KEY.list.i as ints (strings in the JSON). */
static int attr_ints(json_t *node, const char *key, int *out, int max) {
    json_t *l = json_object_get(json_object_get(attr(node, key), "list"), "i");
    if (!json_is_array(l) || json_array_size(l) > (size_t)max) return -1;
    for (size_t i = 0; i < json_array_size(l); i++) {
        json_t *v = json_array_get(l, i);
        const char *s = json_string_value(v);
        long x = s ? strtol(s, NULL, 10) : json_is_integer(v) ? (long)json_integer_value(v) : -1;
        if (x < -4096 || x > 4096) return -1;
        out[i] = (int)x;
    }
    return (int)json_array_size(l);
}

/* A base64 attribute string (attr.KEY.s, or an element of attr.KEY.list.s)
 * decoded into out. */
static bool attr_str(json_t *v, char *out, size_t cap) {
    const char *s = json_string_value(v);
    if (!s) return false;
    sbuf b = {0};
    bool ok = b64_decode(s, strlen(s), 0, &b) && b.n < cap;
    if (ok && b.n) memcpy(out, b.b, b.n);
    if (ok) out[b.n] = 0;
    free(b.b);
    return ok;
}

/* A node input "name", "name:0" or "^name" (control: skipped, NULL). */
static const char *input_name(const char *s, char *buf, size_t cap) {
    if (!s || s[0] == '^') return NULL;
    const char *colon = strrchr(s, ':');
    size_t n = colon && !strcmp(colon, ":0") ? (size_t)(colon - s) : strlen(s);
    if (n >= cap) return NULL;
    memcpy(buf, s, n), buf[n] = 0;
    return buf;
}

static core_status graph_node(rd *r, json_t *nd, tmap *m, bool *deferred) {
    const char *name = json_string_value(json_object_get(nd, "name")),
               *op = json_string_value(json_object_get(nd, "op"));
    json_t *inputs = json_object_get(nd, "input");
    if (!name || !op) return bad(r->err, "TF.js model: malformed graph node");
    tensor *in[MAX_IN];
    int nin = 0;
    for (size_t i = 0; i < json_array_size(inputs); i++) {
        char buf[512];
        const char *n = input_name(json_string_value(json_array_get(inputs, i)), buf, sizeof buf);
        if (!n) {
            if (json_string_value(json_array_get(inputs, i)) && json_string_value(json_array_get(inputs, i))[0] == '^')
                continue;
            return bad(r->err, "TF.js model: %s reads an output other than the first of a node", name);
        }
        if (nin == MAX_IN) return bad(r->err, "TF.js model: %s has too many inputs", name);
        in[nin] = tfind(m, n);
        if (!in[nin++]) {
            *deferred = true; /* its input comes later in the list */
            return CORE_OK;
        }
    }
    *deferred = false;
    core_status rc = CORE_OK;
    tensor t = {.name = name, .node = -2};
    if (!strcmp(op, "Placeholder")) {
        int d[4];
        json_t *dims = json_object_get(json_object_get(attr(nd, "shape"), "shape"), "dim");
        if (r->net || !json_is_array(dims) || json_array_size(dims) != 4)
            return bad(r->err, "TF.js model: the input must be one image (batch, height, width, channels)");
        for (int k = 1; k < 4; k++) {
            const char *s = json_string_value(json_object_get(json_array_get(dims, (size_t)k), "size"));
            long v = s ? strtol(s, NULL, 10) : 0;
            if (v < 1 || v > 4096) return bad(r->err, "TF.js model: the input size must be fixed");
            d[k] = (int)v;
        }
        r->net = nn_net_new(d[3], d[1], d[2]);
        if (!r->net) return core_fail(r->err, CORE_ERR_NOMEM, NULL, "out of memory reading the model");
        r->info->height = d[1], r->info->width = d[2];
        t.affine = true, t.a = 1, t.b = 0;
    } else if (!strcmp(op, "Const")) {
        t.cw = find_weight(r, name);
        if (!t.cw) return bad(r->err, "TF.js model: constant %s has no weights", name);
    } else if (!strcmp(op, "Identity") || !strcmp(op, "Squeeze") || !strcmp(op, "Reshape") || !strcmp(op, "Softmax")) {
        if (nin < 1 || in[0]->node == -2 || in[0]->affine)
            return bad(r->err, "TF.js model: %s (%s) of no computed tensor", name, op);
        nn_shape s = nn_net_shape(r->net, in[0]->node);
        if (op[0] != 'I' && op[0] != 'S' && (s.h != 1 || s.w != 1))
            return bad(r->err, "TF.js model: %s: reshaping a map", name);
        if (!strcmp(op, "Squeeze") && (s.h != 1 || s.w != 1))
            return bad(r->err, "TF.js model: %s: squeezing a map", name);
        if (in[0]->softmax && op[0] != 'I')
            return bad(r->err, "TF.js model: %s reads a softmax before the output", name);
        t = *in[0];
        t.name = name;
        t.softmax = in[0]->softmax || !strcmp(op, "Softmax");
    } else if (!strcmp(op, "Mul") || !strcmp(op, "Sub") || !strcmp(op, "AddV2") || !strcmp(op, "Add") ||
               !strcmp(op, "RealDiv")) {
        if (nin != 2) return bad(r->err, "TF.js model: %s: %s of other than two inputs", name, op);
        /* Scalar arithmetic on the input is folded into the pixel scaling. */
        tensor *a = in[0], *b = in[1];
        if ((!strcmp(op, "Mul") || !strcmp(op, "AddV2") || !strcmp(op, "Add")) && a->cw && b->affine) {
            tensor *s = a;
            a = b, b = s;
        }
        if (a->affine && b->cw && b->cw->count == 1) {
            double c = wval(r, b->cw, 0);
            t = *a;
            t.name = name;
            if (op[0] == 'M')
                t.a *= c, t.b *= c;
            else if (op[0] == 'S')
                t.b -= c;
            else if (op[0] == 'R' && c != 0)
                t.a /= c, t.b /= c;
            else if (op[0] == 'A')
                t.b += c;
            else
                return bad(r->err, "TF.js model: %s: division by zero", name);
        } else if (op[0] == 'A' && a->node != -2 && b->node != -2 && !a->affine && !b->affine && !a->softmax &&
                   !b->softmax) {
            nn_node d = {.op = NN_OP_ADD, .in = a->node, .in2 = b->node};
            t.node = add_node(r, &d, name, &rc);
            if (t.node < 0) return rc;
        } else {
            return bad(r->err, "TF.js model: %s: %s other than of the input by a scalar, or of two maps", name, op);
        }
    } else {
        /* Ops computing a map: their first input must be a map (or the input). */
        if (nin < 1 || (in[0]->node == -2 && !in[0]->affine) || in[0]->softmax)
            return bad(r->err, "TF.js model: %s (%s) of no computed tensor", name, op);
        int x = in[0]->node;
        if (in[0]->affine) {
            /* The network input is the placeholder scaled: fold it into the
             * reported pixel scaling (once; every reader must agree). */
            if (in[0]->a == 0) return bad(r->err, "TF.js model: the input is multiplied by zero");
            float sc = (float)(in[0]->a / 255.0), z = (float)(-255.0 * in[0]->b / in[0]->a);
            if (r->info->in_scale != 0 && (r->info->in_scale != sc || r->info->in_zero != z))
                return bad(r->err, "TF.js model: the input is scaled in two ways");
            r->info->in_scale = sc, r->info->in_zero = z;
            x = NN_INPUT;
        }
        int strides[4] = {1, 1, 1, 1}, ks[4] = {1, 1, 1, 1}, dil[4] = {1, 1, 1, 1};
        char pad[32] = "VALID", df[32] = "NHWC";
        if (attr(nd, "strides") && attr_ints(nd, "strides", strides, 4) != 4)
            return bad(r->err, "TF.js model: %s: malformed strides", name);
        if (attr(nd, "dilations") && attr_ints(nd, "dilations", dil, 4) != 4)
            return bad(r->err, "TF.js model: %s: malformed dilations", name);
        if (attr(nd, "padding") && !attr_str(json_object_get(attr(nd, "padding"), "s"), pad, sizeof pad))
            return bad(r->err, "TF.js model: %s: malformed padding", name);
        if (attr(nd, "data_format") && !attr_str(json_object_get(attr(nd, "data_format"), "s"), df, sizeof df))
            return bad(r->err, "TF.js model: %s: malformed data format", name);
        if (strcmp(df, "NHWC") || (strcmp(pad, "SAME") && strcmp(pad, "VALID")) || dil[1] != 1 || dil[2] != 1 ||
            strides[0] != 1 || strides[3] != 1 || strides[1] != strides[2] || strides[1] < 1)
            return bad(r->err, "TF.js model: %s: layout, padding %s, dilation or stride not supported", name, pad);
        /* Fused ops after a convolution or matrix product: BiasAdd, then at
         * most one activation. */
        int act = NN_ACT_NONE;
        bool biasadd = false;
        json_t *fused = json_object_get(json_object_get(attr(nd, "fused_ops"), "list"), "s");
        for (size_t i = 0; i < json_array_size(fused); i++) {
            char f[32];
            if (!attr_str(json_array_get(fused, i), f, sizeof f))
                return bad(r->err, "TF.js model: %s: malformed fused ops", name);
            if (i == 0 && !strcmp(f, "BiasAdd"))
                biasadd = true;
            else if (i == 1 && !strcmp(f, "Relu"))
                act = NN_RELU;
            else if (i == 1 && !strcmp(f, "Relu6"))
                act = NN_RELU6;
            else
                return bad(r->err, "TF.js model: %s: fused op %s is not supported", name, f);
        }
        bool isconv = !strcmp(op, "Conv2D") || !strcmp(op, "_FusedConv2D");
        bool isdw = !strcmp(op, "DepthwiseConv2dNative") || !strcmp(op, "FusedDepthwiseConv2dNative");
        if (isconv || isdw) {
            if (nin < 2 + (biasadd ? 1 : 0) || !in[1]->cw || (biasadd && !in[2]->cw))
                return bad(r->err, "TF.js model: %s: convolution without constant weights", name);
            nn_shape is = nn_net_shape(r->net, x);
            const weight *w = in[1]->cw, *b = biasadd ? in[2]->cw : NULL;
            if (w->rank != 4 || w->dims[2] != is.c || (isdw && w->dims[3] != 1) ||
                (b && (b->rank != 1 || b->dims[0] != (isdw ? is.c : w->dims[3]))))
                return bad(r->err, "TF.js model: %s: weights of the wrong shape", name);
            for (const weight *ww = w; ww; ww = ww == w ? b : NULL)
                for (size_t i = 0; i < ww->count; i++)
                    if (!isfinite(wval(r, ww, i))) return bad(r->err, "TF.js model: %s: weights not finite", name);
            conv_spec cs = {.w = w, .bias = b, .stride = strides[1], .depthwise = isdw, .same = !strcmp(pad, "SAME")};
            t.node = build_conv(r, x, &cs, name, &rc);
            if (t.node < 0) return rc;
        } else if (!strcmp(op, "MatMul") || !strcmp(op, "_FusedMatMul")) {
            json_t *ta = json_object_get(attr(nd, "transpose_a"), "b"),
                   *tb = json_object_get(attr(nd, "transpose_b"), "b");
            if (json_is_true(ta) || json_is_true(tb) || nin < 2 + (biasadd ? 1 : 0) || !in[1]->cw ||
                (biasadd && !in[2]->cw))
                return bad(r->err, "TF.js model: %s: a matrix product this engine does not run", name);
            const weight *w = in[1]->cw, *b = biasadd ? in[2]->cw : NULL;
            if (w->rank != 2 || (b && (b->rank != 1 || b->dims[0] != w->dims[1])))
                return bad(r->err, "TF.js model: %s: weights of the wrong shape", name);
            for (const weight *ww = w; ww; ww = ww == w ? b : NULL)
                for (size_t i = 0; i < ww->count; i++)
                    if (!isfinite(wval(r, ww, i))) return bad(r->err, "TF.js model: %s: weights not finite", name);
            t.node = build_dense(r, x, w, b, name, &rc);
            if (t.node < 0) return rc;
        } else if (!strcmp(op, "AvgPool") || !strcmp(op, "MaxPool")) {
            if (attr_ints(nd, "ksize", ks, 4) != 4 || ks[0] != 1 || ks[3] != 1)
                return bad(r->err, "TF.js model: %s: malformed pooling window", name);
            t.node =
                build_pool(r, x, op[0] == 'A', ks[1], ks[2], strides[1], strides[2], !strcmp(pad, "SAME"), name, &rc);
            if (t.node < 0) return rc;
        } else if (!strcmp(op, "Relu") || !strcmp(op, "Relu6")) {
            t.node = build_act(r, x, op[4] ? NN_RELU6 : NN_RELU, name, &rc);
            if (t.node < 0) return rc;
        } else if (!strcmp(op, "ConcatV2")) {
            /* Inputs: the tensors, then the axis (a constant). */
            if (nin < 3 || !in[nin - 1]->cw || in[nin - 1]->cw->count != 1)
                return bad(r->err, "TF.js model: %s: malformed concatenation", name);
            float axis = wval(r, in[nin - 1]->cw, 0);
            if (axis != 3 && axis != -1)
                return bad(r->err, "TF.js model: %s: concatenation along an axis other than channels", name);
            t.node = x;
            for (int i = 1; i < nin - 1; i++) {
                if (in[i]->node == -2 || in[i]->affine || in[i]->softmax)
                    return bad(r->err, "TF.js model: %s: concatenation of no computed tensor", name);
                nn_node d = {.op = NN_OP_CONCAT, .in = t.node, .in2 = in[i]->node};
                t.node = add_node(r, &d, name, &rc);
                if (t.node < 0) return rc;
            }
        } else {
            return bad(r->err, "TF.js model: node %s is a %s, which this engine does not run", name, op);
        }
        if (act != NN_ACT_NONE && (t.node = build_act(r, t.node, (nn_act)act, name, &rc)) < 0) return rc;
    }
    tensor *nt = tadd(m, name, t.node);
    if (!nt) return core_fail(r->err, CORE_ERR_NOMEM, NULL, "out of memory");
    *nt = t;
    return CORE_OK;
}

static core_status graph_model(rd *r, json_t *topo, tmap *m, json_t *root) {
    json_t *nodes = json_object_get(topo, "node");
    if (!json_is_array(nodes) || json_array_size(nodes) == 0) return bad(r->err, "TF.js model: no graph nodes");
    if (json_array_size(nodes) > MAX_NODES) return bad(r->err, "TF.js model: too many graph nodes");
    size_t n = json_array_size(nodes);
    bool *done = calloc(n, sizeof *done);
    if (!done) return core_fail(r->err, CORE_ERR_NOMEM, NULL, "out of memory");
    /* Nodes are usually listed inputs first; passes over the rest handle
     * any that are not (each pass must make progress). */
    size_t left = n;
    core_status rc = CORE_OK;
    while (left && !rc) {
        size_t before = left;
        for (size_t i = 0; i < n && !rc; i++) {
            if (done[i]) continue;
            bool deferred = false;
            rc = graph_node(r, json_array_get(nodes, i), m, &deferred);
            if (!rc && !deferred) done[i] = true, left--;
        }
        if (!rc && left == before) rc = bad(r->err, "TF.js model: a node reads a tensor that nothing computes");
    }
    free(done);
    if (rc) return rc;
    if (!r->net) return bad(r->err, "TF.js model: no input");
    /* The output: the signature's single output, else the last node. */
    json_t *outs =
        json_object_get(json_object_get(json_object_get(root, "userDefinedMetadata"), "signature"), "outputs");
    const char *oname = NULL;
    char buf[512];
    if (json_is_object(outs)) {
        if (json_object_size(outs) != 1) return bad(r->err, "TF.js model: expected one output");
        oname = input_name(json_object_iter_key(json_object_iter(outs)), buf, sizeof buf);
    } else {
        oname = json_string_value(json_object_get(json_array_get(nodes, n - 1), "name"));
    }
    tensor *t = oname ? tfind(m, oname) : NULL;
    if (!t || t->node < 0 || t->affine)
        return bad(r->err, "TF.js model: the output %s is not computed", oname ? oname : "(unnamed)");
    r->info->output = t->node;
    return CORE_OK;
}

/* ---- entry points ---- */

static core_status parse_topology(const char *text, size_t len, json_t **root, bool *bundle, core_error *err) {
    size_t rest, end;
    const char *p = bundle_payload(text, len, &rest);
    if (!p) return bad(err, "TF.js model: neither JSON nor a module exporting it");
    *bundle = p > text && p[-1] == '='; /* found after ".exports=" */
    char *json = js_to_json(p, rest, &end);
    if (!json) return bad(err, "TF.js model: the model text is not a JSON object");
    json_error_t je;
    core_error pe = {0};
    *root = core_json_loads(json, JSON_REJECT_DUPLICATES, &je, &pe);
    free(json);
    if (!*root && pe.code == CORE_ERR_NOMEM) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    if (!*root || !json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return core_fail(err, CORE_ERR_INVALID, NULL, "TF.js model: malformed JSON: %s", je.text);
    }
    return CORE_OK;
}

static core_status build(json_t *root, const uint8_t *weights, size_t wlen, nn_net **net, nn_tfjs_info *info,
                         core_error *err) {
    rd r = {.root = root, .data = weights, .dlen = wlen, .info = info, .err = err};
    tmap m = {0};
    json_t *topo = json_object_get(root, "modelTopology");
    core_status rc = read_manifest(&r, json_object_get(root, "weightsManifest"));
    if (!rc && !json_is_object(topo)) rc = bad(err, "TF.js model: no modelTopology");
    if (!rc) {
        const char *fmt = json_string_value(json_object_get(root, "format"));
        bool graph = json_is_array(json_object_get(topo, "node"));
        if (fmt && strcmp(fmt, graph ? "graph-model" : "layers-model"))
            rc = bad(err, "TF.js model: format %s does not match its topology", fmt);
        else
            rc = graph ? graph_model(&r, topo, &m, root) : layers_model(&r, topo, &m);
    }
    if (!rc && info->in_scale == 0) info->in_scale = 1.0f / 255, info->in_zero = 0;
    free(m.t);
    json_decref(m.index);
    json_decref(r.windex);
    free(r.w);
    if (rc) {
        nn_net_free(r.net);
        return rc;
    }
    *net = r.net;
    return CORE_OK;
}

core_status nn_tfjs_parse(const char *model, size_t len, const uint8_t *weights, size_t wlen, nn_net **net,
                          nn_tfjs_info *info, core_error *err) {
    *net = NULL;
    memset(info, 0, sizeof *info);
    info->features = info->output = -1;
    if (len > MAX_TEXT || wlen > MAX_WEIGHTS) return bad(err, "TF.js model: too large");
    json_t *root;
    bool bundle;
    core_status rc = parse_topology(model, len, &root, &bundle, err);
    if (rc) return rc;
    rc = build(root, weights, wlen, net, info, err);
    json_decref(root);
    if (rc) memset(info, 0, sizeof *info), info->features = info->output = -1;
    return rc;
}

/* A manifest path: a file name in the model's directory, nothing else. */
static bool plain_name(const char *p) {
    return p && p[0] && p[0] != '.' && !strchr(p, '/') && !strchr(p, '\\') && strlen(p) < 256;
}

core_status nn_tfjs_read(const char *path, nn_net **net, nn_tfjs_info *info, core_error *err) {
    *net = NULL;
    memset(info, 0, sizeof *info);
    info->features = info->output = -1;
    char *text;
    size_t len;
    core_status rc = core_read_file(path, &text, &len, err);
    if (rc) return rc;
    json_t *root = NULL;
    bool bundle = false;
    rc = len > MAX_TEXT ? bad(err, "TF.js model: %s is too large", path)
                        : parse_topology(text, len, &root, &bundle, err);
    free(text);
    if (rc) return rc;
    /* Shards: the manifest's paths in the model's directory; a bundled
     * model's shards are bundles too (PATH.min.js exporting base64). */
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
    sbuf data = {0};
    json_t *manifest = json_object_get(root, "weightsManifest");
    for (size_t g = 0; g < json_array_size(manifest) && !rc; g++) {
        json_t *paths = json_object_get(json_array_get(manifest, g), "paths");
        if (!json_is_array(paths)) rc = bad(err, "TF.js model: a manifest group without paths");
        for (size_t k = 0; k < json_array_size(paths) && !rc; k++) {
            const char *p = json_string_value(json_array_get(paths, k));
            if (!plain_name(p)) {
                rc = bad(err, "TF.js model: weight file %s is not a plain file name", p ? p : "(none)");
                break;
            }
            char full[4096];
            snprintf(full, sizeof full, "%.*s%s%s", (int)dirlen, path, p, bundle ? ".min.js" : "");
            char *b;
            size_t bl;
            if ((rc = core_read_file(full, &b, &bl, err))) break;
            if (bundle) {
                size_t rest;
                const char *q = bundle_payload(b, bl, &rest);
                if (!q || rest < 2 || (q[0] != '"' && q[0] != '\'') || !b64_decode(q + 1, rest - 1, q[0], &data))
                    rc = bad(err, "TF.js model: %s does not export a base64 string", full);
            } else {
                put(&data, b, bl);
            }
            free(b);
            if (!rc && (data.oom || data.n > MAX_WEIGHTS)) rc = bad(err, "TF.js model: the weights are too large");
        }
    }
    if (!rc) rc = build(root, (const uint8_t *)data.b, data.n, net, info, err);
    if (rc) memset(info, 0, sizeof *info), info->features = info->output = -1;
    free(data.b);
    json_decref(root);
    return rc;
}
