/* TensorFlow Lite reader: builds an nn_net from a .tflite flatbuffer of the
 * MobileNet family (CONV_2D, DEPTHWISE_CONV_2D, ADD, AVERAGE_POOL_2D / MEAN
 * over the whole map, FULLY_CONNECTED, and the shape-only RESHAPE, SQUEEZE,
 * SOFTMAX, QUANTIZE, DEQUANTIZE), dequantising uint8/int8 weights to float32.
 *
 * Debian ships no TensorFlow Lite and no copy of its schema, so this walks
 * the flatbuffer by hand: a table starts with a signed offset back to its
 * vtable; field i's offset within the table is the u16 at vtable + 4 + 2i
 * (0 = absent); references (tables, vectors, strings) are u32 offsets from
 * where they are stored. Field numbers are those of the public schema.fbs.
 * Every read is bounds-checked: the file is data from outside the binary.
 *
 * The network runs in float: activations are not re-quantised between
 * layers, so outputs differ from a uint8 interpreter by quantisation noise
 * (cat.bmp: 0.78 "Egyptian cat" here vs 0.76 in Arm NN). */
#include "nn/nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *b;
    size_t n;
    bool bad;
} fb;

typedef struct {
    size_t pos, vt, vlen;
    bool ok;
} tab;
typedef struct {
    size_t pos, len;
} vec; /* pos: first element */

static uint32_t rd32(fb *f, size_t p) {
    if (p > f->n || f->n - p < 4) {
        f->bad = true;
        return 0;
    }
    return (uint32_t)f->b[p] | (uint32_t)f->b[p + 1] << 8 | (uint32_t)f->b[p + 2] << 16 | (uint32_t)f->b[p + 3] << 24;
}
static uint16_t rd16(fb *f, size_t p) {
    if (p > f->n || f->n - p < 2) {
        f->bad = true;
        return 0;
    }
    return (uint16_t)(f->b[p] | f->b[p + 1] << 8);
}

static tab tab_at(fb *f, size_t pos) {
    tab t = {pos, 0, 0, false};
    int32_t so = (int32_t)rd32(f, pos);
    int64_t vt = (int64_t)pos - so;
    if (f->bad || vt < 0 || (uint64_t)vt >= f->n) return f->bad = true, t;
    t.vt = (size_t)vt;
    t.vlen = rd16(f, t.vt);
    t.ok = !f->bad && t.vlen >= 4 && t.vlen % 2 == 0;
    if (!t.ok) f->bad = true;
    return t;
}

/* Offset of field i inside the table, 0 when absent. */
static size_t field(fb *f, tab t, int i) {
    if (!t.ok || (size_t)(4 + 2 * i) >= t.vlen) return 0;
    uint16_t o = rd16(f, t.vt + 4 + 2 * (size_t)i);
    if (o && t.pos + o >= f->n) f->bad = true;
    return o;
}
static int64_t f_int(fb *f, tab t, int i, int size, int64_t dflt) {
    size_t o = field(f, t, i);
    if (!o) return dflt;
    size_t p = t.pos + o;
    if (f->n - p < (size_t)size) return f->bad = true, dflt;
    if (size == 1) return (int8_t)f->b[p];
    if (size == 2) return (int16_t)rd16(f, p);
    return (int32_t)rd32(f, p);
}
static size_t f_ref(fb *f, tab t, int i) {
    size_t o = field(f, t, i);
    if (!o) return 0;
    size_t p = t.pos + o;
    uint32_t r = rd32(f, p);
    if (f->bad || r == 0 || r >= f->n - p) return f->bad = true, 0;
    return p + r;
}
static tab f_tab(fb *f, tab t, int i) {
    size_t p = f_ref(f, t, i);
    return p ? tab_at(f, p) : (tab){0, 0, 0, false};
}
static vec f_vec(fb *f, tab t, int i, size_t elem) {
    size_t p = f_ref(f, t, i);
    if (!p) return (vec){0, 0};
    uint32_t len = rd32(f, p);
    if (f->bad || (uint64_t)len * elem > f->n - p - 4) return f->bad = true, (vec){0, 0};
    return (vec){p + 4, len};
}
static tab vec_tab(fb *f, vec v, size_t k) {
    size_t p = v.pos + 4 * k;
    uint32_t r = rd32(f, p);
    if (f->bad || r >= f->n - p) return f->bad = true, (tab){0, 0, 0, false};
    return tab_at(f, p + r);
}
static int32_t vec_i32(fb *f, vec v, size_t k) { return (int32_t)rd32(f, v.pos + 4 * k); }
static float vec_f32(fb *f, vec v, size_t k) {
    uint32_t u = rd32(f, v.pos + 4 * k);
    float x;
    memcpy(&x, &u, 4);
    return x;
}
static int64_t vec_i64(fb *f, vec v, size_t k) {
    uint64_t lo = rd32(f, v.pos + 8 * k), hi = rd32(f, v.pos + 8 * k + 4);
    return (int64_t)(lo | hi << 32);
}

enum {
    OP_ADD = 0,
    OP_AVG_POOL = 1,
    OP_CONV = 3,
    OP_DWCONV = 4,
    OP_DEQUANTIZE = 6,
    OP_FC = 9,
    OP_RESHAPE = 22,
    OP_SOFTMAX = 25,
    OP_MEAN = 40,
    OP_SQUEEZE = 43,
    OP_QUANTIZE = 114
};
enum { T_F32 = 0, T_I32 = 2, T_U8 = 3, T_I8 = 9 };

typedef struct {
    fb f;
    vec tensors, buffers;
    int *node_of; /* tensor → node; -2 unknown */
    size_t ntensors;
    core_error *err;
} rd;

static core_status bad(rd *r, const char *what) {
    return core_fail(r->err, CORE_ERR_INVALID, NULL, "not a usable TensorFlow Lite model: %s", what);
}

/* Shape of tensor ti into dims (≤ 4); returns rank or -1. */
static int tshape(rd *r, int ti, int dims[4]) {
    if (ti < 0 || (size_t)ti >= r->ntensors) return -1;
    tab t = vec_tab(&r->f, r->tensors, (size_t)ti);
    vec s = f_vec(&r->f, t, 0, 4);
    if (r->f.bad || s.len > 4) return -1;
    for (size_t k = 0; k < s.len; k++) {
        dims[k] = vec_i32(&r->f, s, k);
        if (dims[k] <= 0 || dims[k] > 1 << 20) return -1;
    }
    return (int)s.len;
}

/* Dequantised contents of constant tensor ti (count floats expected); the
 * scale/zero point may be per channel along quantized_dimension, whose
 * extent and stride (in elements) are given by the caller's layout. */
static float *tconst(rd *r, int ti, size_t count, size_t chan_stride, size_t nchan) {
    if (ti < 0 || (size_t)ti >= r->ntensors) return NULL;
    fb *f = &r->f;
    tab t = vec_tab(f, r->tensors, (size_t)ti);
    int type = (int)f_int(f, t, 1, 1, 0);
    uint32_t bi = (uint32_t)f_int(f, t, 2, 4, 0);
    if (f->bad || bi >= r->buffers.len) return NULL;
    tab bt = vec_tab(f, r->buffers, bi);
    vec data = f_vec(f, bt, 0, 1);
    size_t esz = type == T_F32 || type == T_I32 ? 4 : 1;
    if (f->bad || (type != T_F32 && type != T_I32 && type != T_U8 && type != T_I8) || data.len != count * esz)
        return NULL;
    tab q = f_tab(f, t, 4);
    vec sc = q.ok ? f_vec(f, q, 2, 4) : (vec){0, 0};
    vec zp = q.ok ? f_vec(f, q, 3, 8) : (vec){0, 0};
    if (f->bad || (type != T_F32 && sc.len == 0) || (sc.len > 1 && sc.len != nchan) || (zp.len > 1 && zp.len != nchan))
        return NULL;
    float *out = malloc((count ? count : 1) * sizeof(float));
    if (!out) return NULL;
    const uint8_t *p = f->b + data.pos;
    for (size_t i = 0; i < count; i++) {
        size_t ch = sc.len > 1 || zp.len > 1 ? (i / chan_stride) % nchan : 0;
        float s = sc.len ? vec_f32(f, sc, sc.len > 1 ? ch : 0) : 1.0f;
        float z = zp.len ? (float)vec_i64(f, zp, zp.len > 1 ? ch : 0) : 0.0f;
        float v;
        if (type == T_F32) {
            memcpy(&v, p + 4 * i, 4);
            out[i] = v;
        } else if (type == T_I32) {
            int32_t q32;
            memcpy(&q32, p + 4 * i, 4);
            out[i] = ((float)q32 - z) * s;
        } else {
            float qv = type == T_U8 ? (float)p[i] : (float)(int8_t)p[i];
            out[i] = (qv - z) * s;
        }
        if (!isfinite(out[i])) {
            free(out);
            return NULL;
        }
    }
    return out;
}

/* TensorFlow SAME padding for one dimension; the odd pixel goes at the end. */
static void same_pad(int in, int k, int s, int *pad, int *pad_end) {
    int out = (in + s - 1) / s;
    int total = (out - 1) * s + k - in;
    if (total < 0) total = 0;
    *pad = total / 2;
    *pad_end = total - 2 * *pad;
}

static int add_act(nn_net *net, int in, int64_t act, core_status *rc, rd *r) {
    if (act == 0) return in;
    if (act != 1 && act != 3) {
        *rc = bad(r, "an activation other than ReLU/ReLU6");
        return -1;
    }
    nn_node a = {.op = NN_OP_ACT, .in = in, .act = act == 1 ? NN_RELU : NN_RELU6};
    int k = nn_net_add(net, &a);
    if (k < 0) *rc = bad(r, "a layer that does not fit its input");
    return k;
}

static core_status conv_op(rd *r, nn_net *net, tab op, tab opt, bool depthwise, vec ins, int out_t) {
    fb *f = &r->f;
    int x = vec_i32(f, ins, 0), wi = vec_i32(f, ins, 1), bi = ins.len > 2 ? vec_i32(f, ins, 2) : -1;
    (void)op;
    if (r->node_of[x] == -2) return bad(r, "an operator reads a tensor nothing produced");
    nn_shape is = nn_net_shape(net, r->node_of[x]);
    int wd[4];
    if (tshape(r, wi, wd) != 4) return bad(r, "convolution weights are not 4-D");
    int64_t padding = f_int(f, opt, 0, 1, 0), sw = f_int(f, opt, 1, 4, 1), sh = f_int(f, opt, 2, 4, 1);
    int64_t act = f_int(f, opt, depthwise ? 4 : 3, 1, 0);
    int64_t dil_w = f_int(f, opt, depthwise ? 5 : 4, 4, 1), dil_h = f_int(f, opt, depthwise ? 6 : 5, 4, 1);
    if (sw != sh || sw < 1 || sw > 8 || dil_w != 1 || dil_h != 1) return bad(r, "unsupported stride or dilation");
    nn_conv c = {.in_c = is.c, .stride = (int)sw, .groups = 1};
    if (depthwise) {
        if (wd[0] != 1 || wd[3] != is.c) return bad(r, "depthwise multiplier other than 1");
        c.out_c = is.c, c.kh = wd[1], c.kw = wd[2], c.groups = is.c;
    } else {
        if (wd[3] != is.c) return bad(r, "convolution input channels do not match");
        c.out_c = wd[0], c.kh = wd[1], c.kw = wd[2];
    }
    if (padding == 0) {
        int ph, peh, pw, pew;
        same_pad(is.h, c.kh, c.stride, &ph, &peh);
        same_pad(is.w, c.kw, c.stride, &pw, &pew);
        if (ph != pw || peh != pew) return bad(r, "non-square SAME padding");
        c.pad = ph, c.pad_end = peh;
    }
    nn_node nd = {.op = NN_OP_CONV, .in = r->node_of[x], .conv = c, .bias = bi >= 0};
    int k = nn_net_add(net, &nd);
    if (k < 0) return bad(r, "a convolution that does not fit its input");
    size_t nw, nb;
    float *w = nn_net_tensor(net, k, 0, &nw), *b = nn_net_tensor(net, k, 1, &nb);
    size_t kk = (size_t)c.kh * c.kw, icg = (size_t)(c.in_c / c.groups);
    /* TFLite layouts: conv OHWI, per-channel along O; depthwise 1HWC, along C. */
    float *src = depthwise ? tconst(r, wi, nw, 1, (size_t)c.out_c) : tconst(r, wi, nw, kk * icg, (size_t)c.out_c);
    if (!src) return bad(r, "convolution weights are missing or malformed");
    for (int o = 0; o < c.out_c; o++)
        for (size_t i = 0; i < icg; i++)
            for (size_t s = 0; s < kk; s++)
                w[((size_t)o * icg + i) * kk + s] =
                    depthwise ? src[s * (size_t)c.out_c + (size_t)o] : src[((size_t)o * kk + s) * icg + i];
    free(src);
    if (b) {
        int bd[4];
        float *bs = tshape(r, bi, bd) == 1 && (size_t)bd[0] == nb ? tconst(r, bi, nb, 1, nb) : NULL;
        if (!bs) return bad(r, "convolution bias is missing or malformed");
        memcpy(b, bs, nb * sizeof(float));
        free(bs);
    }
    core_status rc = CORE_OK;
    k = add_act(net, k, act, &rc, r);
    if (rc) return rc;
    r->node_of[out_t] = k;
    return CORE_OK;
}

core_status nn_tflite_read(const uint8_t *b, size_t n, nn_net **out, nn_tflite_info *info, core_error *err) {
    *out = NULL;
    memset(info, 0, sizeof *info);
    info->features = -1;
    rd r = {.f = {b, n, false}, .err = err};
    fb *f = &r.f;
    if (n < 16 || memcmp(b + 4, "TFL3", 4) != 0) return bad(&r, "no TFL3 identifier");
    tab model = tab_at(f, rd32(f, 0));
    vec codes = f_vec(f, model, 1, 4), subgraphs = f_vec(f, model, 2, 4);
    r.buffers = f_vec(f, model, 4, 4);
    if (f->bad || subgraphs.len < 1) return bad(&r, "no subgraph");
    tab sg = vec_tab(f, subgraphs, 0);
    r.tensors = f_vec(f, sg, 0, 4);
    vec inputs = f_vec(f, sg, 1, 4), outputs = f_vec(f, sg, 2, 4), ops = f_vec(f, sg, 3, 4);
    if (f->bad || inputs.len != 1 || outputs.len != 1 || r.tensors.len == 0 || r.tensors.len > 100000)
        return bad(&r, "expected one input and one output");
    r.ntensors = r.tensors.len;
    int in_t = vec_i32(f, inputs, 0), out_t = vec_i32(f, outputs, 0), d[4];
    if (tshape(&r, in_t, d) != 4 || d[0] != 1 || d[3] != 3 || out_t < 0 || (size_t)out_t >= r.ntensors)
        return bad(&r, "the input is not one RGB image");
    /* Input quantisation: the real value of pixel byte p is scale·(p − zero). */
    tab it = vec_tab(f, r.tensors, (size_t)in_t);
    tab iq = f_tab(f, it, 4);
    vec isc = iq.ok ? f_vec(f, iq, 2, 4) : (vec){0, 0}, izp = iq.ok ? f_vec(f, iq, 3, 8) : (vec){0, 0};
    info->in_scale = isc.len ? vec_f32(f, isc, 0) : 1.0f;
    info->in_zero = izp.len ? (float)vec_i64(f, izp, 0) : 0.0f;
    info->height = d[1], info->width = d[2];
    nn_net *net = nn_net_new(3, d[1], d[2]);
    r.node_of = malloc(r.ntensors * sizeof(int));
    if (!net || !r.node_of) {
        nn_net_free(net);
        free(r.node_of);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory reading the model");
    }
    for (size_t i = 0; i < r.ntensors; i++) r.node_of[i] = -2;
    r.node_of[in_t] = NN_INPUT;
    core_status rc = CORE_OK;
    for (size_t k = 0; k < ops.len && !rc; k++) {
        tab op = vec_tab(f, ops, k);
        uint32_t ci = (uint32_t)f_int(f, op, 0, 4, 0);
        vec ins = f_vec(f, op, 1, 4), outs = f_vec(f, op, 2, 4);
        if (f->bad || ci >= codes.len || ins.len < 1 || outs.len != 1) {
            rc = bad(&r, "malformed operator");
            break;
        }
        tab code = vec_tab(f, codes, ci);
        int64_t c = f_int(f, code, 0, 1, 0), c3 = f_int(f, code, 3, 4, 0);
        if (c3 > c) c = c3;
        int x = vec_i32(f, ins, 0), y = vec_i32(f, outs, 0);
        if (f->bad || x < 0 || (size_t)x >= r.ntensors || y < 0 || (size_t)y >= r.ntensors || r.node_of[x] == -2) {
            rc = bad(&r, "an operator reads a tensor nothing produced");
            break;
        }
        tab opt = f_tab(f, op, 4);
        switch (c) {
        case OP_CONV:
        case OP_DWCONV:
            rc = ins.len >= 2 ? conv_op(&r, net, op, opt, c == OP_DWCONV, ins, y)
                              : bad(&r, "convolution without weights");
            break;
        case OP_ADD: {
            int x2 = ins.len == 2 ? vec_i32(f, ins, 1) : -1;
            if (x2 < 0 || (size_t)x2 >= r.ntensors || r.node_of[x2] == -2) {
                rc = bad(&r, "ADD of an unknown tensor");
                break;
            }
            nn_node a = {.op = NN_OP_ADD, .in = r.node_of[x], .in2 = r.node_of[x2]};
            int nk = nn_net_add(net, &a);
            if (nk < 0)
                rc = bad(&r, "ADD of different shapes");
            else
                nk = add_act(net, nk, f_int(f, opt, 0, 1, 0), &rc, &r);
            r.node_of[y] = nk;
            break;
        }
        case OP_AVG_POOL:
        case OP_MEAN: {
            nn_shape s = nn_net_shape(net, r.node_of[x]);
            if (c == OP_AVG_POOL && (f_int(f, opt, 3, 4, 0) != s.w || f_int(f, opt, 4, 4, 0) != s.h)) {
                rc = bad(&r, "average pooling other than over the whole map");
                break;
            }
            nn_node g = {.op = NN_OP_GAP, .in = r.node_of[x]};
            int nk = nn_net_add(net, &g);
            if (nk < 0) rc = bad(&r, "pooling that does not fit");
            r.node_of[y] = nk;
            info->features = nk;
            break;
        }
        case OP_FC: {
            int wi = ins.len >= 2 ? vec_i32(f, ins, 1) : -1, bi = ins.len > 2 ? vec_i32(f, ins, 2) : -1, wd[4];
            nn_shape s = nn_net_shape(net, r.node_of[x]);
            if (tshape(&r, wi, wd) != 2 || (size_t)wd[1] != nn_count(s)) {
                rc = bad(&r, "fully connected weights do not match");
                break;
            }
            nn_node dn = {.op = NN_OP_DENSE, .in = r.node_of[x], .units = wd[0], .bias = bi >= 0};
            int nk = nn_net_add(net, &dn);
            size_t nw, nb;
            float *w = nk >= 0 ? nn_net_tensor(net, nk, 0, &nw) : NULL,
                  *bb = nk >= 0 ? nn_net_tensor(net, nk, 1, &nb) : NULL;
            float *src = w ? tconst(&r, wi, nw, (size_t)wd[1], (size_t)wd[0]) : NULL;
            float *bsrc = bb ? tconst(&r, bi, nb, 1, nb) : NULL;
            if (!src || (bb && !bsrc))
                rc = bad(&r, "fully connected weights are malformed");
            else {
                memcpy(w, src, nw * sizeof(float));
                if (bb) memcpy(bb, bsrc, nb * sizeof(float));
                nk = add_act(net, nk, f_int(f, opt, 0, 1, 0), &rc, &r);
            }
            free(src);
            free(bsrc);
            r.node_of[y] = nk;
            break;
        }
        case OP_RESHAPE:
        case OP_SOFTMAX:
        case OP_SQUEEZE:
        case OP_QUANTIZE:
        case OP_DEQUANTIZE:
            /* Shapes are implicit (n,c,1,1 is already flat) and the network
             * outputs logits: callers apply softmax themselves. */
            r.node_of[y] = r.node_of[x];
            break;
        default:
            rc = core_fail(err, CORE_ERR_INVALID, "model",
                           "not a usable TensorFlow Lite model: operator %d is one this engine does not run", (int)c);
            break;
        }
        if (!rc && f->bad) rc = bad(&r, "a reference points outside the file");
    }
    if (!rc && (r.node_of[out_t] < 0 || nn_net_count(net) == 0)) rc = bad(&r, "the output is not computed");
    if (!rc) info->output = r.node_of[out_t];
    free(r.node_of);
    if (rc) {
        nn_net_free(net);
        return rc;
    }
    *out = net;
    return CORE_OK;
}
