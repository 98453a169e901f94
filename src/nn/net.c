/* Networks: a list of nodes in execution order, each reading earlier
 * outputs, with parameters owned here and activations owned by an nn_run.
 *
 * Why a flat list rather than a general graph: every network this product
 * runs (MobileNetV2 and small heads) is a chain with residual shortcuts, and
 * a list in execution order makes forward a loop and backward the same loop
 * reversed. A node's gradient can have several consumers (a shortcut feeds
 * both the next block and an ADD), so backward accumulates: the first
 * consumer to reach an input writes its gradient, later ones add to it.
 * Inception's branches fit the same list: each branch is a run of nodes
 * and the branches meet in CONCAT nodes, two inputs at a time (a four-way
 * concatenation is three nodes; the copies cost little next to the
 * convolutions, and two-input nodes keep backward's bookkeeping as for ADD). */
#include "nn/nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NN_SLOTS 4

typedef struct {
    nn_node d;
    nn_shape out;       /* per sample */
    float *t[NN_SLOTS]; /* parameters / statistics */
    float *g[NN_SLOTS]; /* gradients (trainable slots only) */
    size_t tn[NN_SLOTS];
} node;

struct nn_net {
    nn_shape in;
    node *nodes;
    int count, cap;
    int frozen;
};

struct nn_run {
    int n, count;                     /* batch and node count the buffers are sized for */
    float **y, **dy;                  /* per node */
    float **save_mean, **save_invstd; /* BN in training */
    uint8_t **mask;                   /* dropout */
    int32_t **argmax;                 /* max pooling, in training (an inference forward runs a faster loop without) */
    size_t *ycap, *dycap, *amcap;
    float *ws, *scratch, *scratch2;
    size_t wscap, scratchcap, scratch2cap;
    const float *x;
    int last;     /* index of the last node computed */
    bool trained; /* the last forward was in training mode */
    bool fused;   /* ... and fused a convolution into its activation */
    bool blind;   /* ... and ran max pooling without recording argmax */
    int *readers; /* per node: how many nodes read its output */
};

nn_net *nn_net_new(int c, int h, int w) {
    if (c <= 0 || h <= 0 || w <= 0) return NULL;
    nn_net *net = calloc(1, sizeof *net);
    if (net) net->in = (nn_shape){1, c, h, w};
    return net;
}

static void node_free(node *nd) {
    for (int k = 0; k < NN_SLOTS; k++) {
        free(nd->t[k]);
        free(nd->g[k]);
    }
}

void nn_net_free(nn_net *net) {
    if (!net) return;
    for (int i = 0; i < net->count; i++) node_free(&net->nodes[i]);
    free(net->nodes);
    free(net);
}

int nn_net_count(const nn_net *net) { return net->count; }
const nn_node *nn_net_node(const nn_net *net, int i) { return i >= 0 && i < net->count ? &net->nodes[i].d : NULL; }
nn_shape nn_net_shape(const nn_net *net, int i) { return i >= 0 && i < net->count ? net->nodes[i].out : net->in; }
void nn_net_set_frozen(nn_net *net, int first) {
    net->frozen = first < 0 ? 0 : first > net->count ? net->count : first;
}
int nn_net_frozen(const nn_net *net) { return net->frozen; }

void nn_net_truncate(nn_net *net, int count) {
    if (count < 0) count = 0;
    for (int i = count; i < net->count; i++) node_free(&net->nodes[i]);
    if (count < net->count) net->count = count;
    if (net->frozen > net->count) net->frozen = net->count;
}

float *nn_net_tensor(nn_net *net, int i, int k, size_t *count) {
    if (i < 0 || i >= net->count || k < 0 || k >= NN_SLOTS || !net->nodes[i].t[k]) {
        if (count) *count = 0;
        return NULL;
    }
    if (count) *count = net->nodes[i].tn[k];
    return net->nodes[i].t[k];
}

/* Which slots are trained by gradient descent. */
static bool slot_trainable(nn_op op, int k) {
    if (op == NN_OP_CONV || op == NN_OP_DENSE) return k <= 1;
    if (op == NN_OP_BN) return k <= 1;
    return false;
}

static bool alloc_slot(node *nd, int k, size_t n, float fill) {
    nd->t[k] = malloc(n * sizeof(float));
    nd->g[k] = slot_trainable(nd->d.op, k) ? calloc(n, sizeof(float)) : NULL;
    nd->tn[k] = n;
    if (!nd->t[k] || (slot_trainable(nd->d.op, k) && !nd->g[k])) return false;
    for (size_t i = 0; i < n; i++) nd->t[k][i] = fill;
    return true;
}

int nn_net_add(nn_net *net, const nn_node *src) {
    nn_node d = *src;
    if (d.in < NN_INPUT || d.in >= net->count) return -1;
    nn_shape in = nn_net_shape(net, d.in), out = in;
    switch (d.op) {
    case NN_OP_CONV: {
        const nn_conv *c = &d.conv;
        if (c->in_c != in.c || c->out_c <= 0 || c->kh <= 0 || c->kw <= 0 || c->stride <= 0 || c->pad < 0 ||
            c->pad_end < 0 || c->groups <= 0 || c->in_c % c->groups || c->out_c % c->groups || c->kh > 64 ||
            c->kw > 64 || c->pad >= c->kh || c->pad_end > 1 || c->stride > 64 || (c->axis_pad != 0 && c->axis_pad != 1))
            return -1;
        int pw = c->axis_pad ? c->pad_w : c->pad, pwe = c->axis_pad ? c->pad_w_end : c->pad_end;
        if (pw < 0 || pw >= c->kw || pwe < 0 || pwe > 1) return -1;
        /* The window must fit the padded input at least once (C's division
         * would otherwise round a negative count up to one output). */
        if (in.h + 2 * c->pad + c->pad_end < c->kh || in.w + 2 * pw + pwe < c->kw) return -1;
        out = nn_conv_out(c, in);
        break;
    }
    case NN_OP_MAXPOOL:
    case NN_OP_AVGPOOL: {
        const nn_pool *p = &d.pool;
        if (p->k < 1 || p->k > 64 || p->stride < 1 || p->stride > 64 || p->pad < 0 || p->pad >= p->k ||
            in.h + 2 * p->pad < p->k || in.w + 2 * p->pad < p->k)
            return -1;
        out = nn_pool_out(p, in);
        break;
    }
    case NN_OP_CONCAT: {
        if (d.in2 < NN_INPUT || d.in2 >= net->count) return -1;
        nn_shape b = nn_net_shape(net, d.in2);
        if (b.h != in.h || b.w != in.w) return -1;
        out.c = in.c + b.c;
        break;
    }
    case NN_OP_BN:
        if (!(d.eps > 0 && d.eps < 1) || !(d.momentum >= 0 && d.momentum <= 1)) return -1;
        break;
    case NN_OP_ACT:
        if (d.act != NN_RELU && d.act != NN_RELU6 && d.act != NN_SILU) return -1;
        break;
    case NN_OP_ADD: {
        if (d.in2 < NN_INPUT || d.in2 >= net->count) return -1;
        nn_shape b = nn_net_shape(net, d.in2);
        if (b.c != in.c || b.h != in.h || b.w != in.w) return -1;
        break;
    }
    case NN_OP_GAP: out = (nn_shape){1, in.c, 1, 1}; break;
    case NN_OP_DENSE:
        if (d.units <= 0 || d.units > (1 << 20)) return -1;
        out = (nn_shape){1, d.units, 1, 1};
        break;
    case NN_OP_DROPOUT:
        if (!(d.p >= 0 && d.p < 1)) return -1;
        break;
    case NN_OP_PNORM:
        if (!(d.alpha > 0 && d.alpha <= 1)) return -1;
        break;
    default: return -1;
    }
    if (out.c <= 0 || out.h <= 0 || out.w <= 0 || nn_count(out) > ((size_t)1 << 26)) return -1;
    if (net->count == net->cap) {
        int cap = net->cap ? net->cap * 2 : 32;
        node *nn = realloc(net->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return -1;
        net->nodes = nn;
        net->cap = cap;
    }
    node *nd = &net->nodes[net->count];
    memset(nd, 0, sizeof *nd);
    nd->d = d;
    nd->out = out;
    bool ok = true;
    if (d.op == NN_OP_CONV) {
        ok = alloc_slot(nd, 0, nn_conv_params(&d.conv), 0) && (!d.bias || alloc_slot(nd, 1, (size_t)d.conv.out_c, 0));
    } else if (d.op == NN_OP_DENSE) {
        ok = alloc_slot(nd, 0, nn_count(in) * (size_t)d.units, 0) && (!d.bias || alloc_slot(nd, 1, (size_t)d.units, 0));
    } else if (d.op == NN_OP_BN) {
        ok = alloc_slot(nd, 0, (size_t)in.c, 1) && alloc_slot(nd, 1, (size_t)in.c, 0) &&
             alloc_slot(nd, 2, (size_t)in.c, 0) && alloc_slot(nd, 3, (size_t)in.c, 1);
    }
    if (!ok) {
        node_free(nd);
        return -1;
    }
    return net->count++;
}

void nn_net_init(nn_net *net, nn_rng *r) {
    for (int i = net->frozen; i < net->count; i++) {
        node *nd = &net->nodes[i];
        nn_shape in = nn_net_shape(net, nd->d.in);
        if (nd->d.op == NN_OP_CONV)
            nn_init_he(r, nd->t[0], nd->tn[0], nd->d.conv.in_c / nd->d.conv.groups * nd->d.conv.kh * nd->d.conv.kw);
        else if (nd->d.op == NN_OP_DENSE)
            nn_init_he(r, nd->t[0], nd->tn[0], (int)nn_count(in));
    }
}

size_t nn_net_params(nn_net *net, nn_param *out, size_t max) {
    size_t k = 0;
    for (int i = net->frozen; i < net->count; i++) {
        node *nd = &net->nodes[i];
        for (int s = 0; s < NN_SLOTS; s++) {
            if (!nd->g[s]) continue;
            if (k < max) out[k] = (nn_param){nd->t[s], nd->g[s], nd->tn[s], s == 0 && nd->d.op != NN_OP_BN};
            k++;
        }
    }
    return k;
}

void nn_net_zero_grad(nn_net *net) {
    for (int i = 0; i < net->count; i++)
        for (int s = 0; s < NN_SLOTS; s++)
            if (net->nodes[i].g[s]) memset(net->nodes[i].g[s], 0, net->nodes[i].tn[s] * sizeof(float));
}

double nn_net_macs(const nn_net *net) {
    double m = 0;
    for (int i = 0; i < net->count; i++) {
        const node *nd = &net->nodes[i];
        if (nd->d.op == NN_OP_CONV)
            m += (double)nd->out.c * nd->out.h * nd->out.w * (nd->d.conv.in_c / nd->d.conv.groups) * nd->d.conv.kh *
                 nd->d.conv.kw;
        else if (nd->d.op == NN_OP_DENSE)
            m += (double)nd->tn[0];
    }
    return m;
}

/* ---- runs ---- */

nn_run *nn_run_new(void) { return calloc(1, sizeof(nn_run)); }

static void run_release(nn_run *r) {
    for (int i = 0; i < r->count; i++) {
        free(r->y[i]);
        free(r->dy[i]);
        free(r->save_mean[i]);
        free(r->save_invstd[i]);
        free(r->mask[i]);
        free(r->argmax[i]);
    }
    free(r->y);
    free(r->dy);
    free(r->save_mean);
    free(r->save_invstd);
    free(r->mask);
    free(r->argmax);
    free(r->amcap);
    free(r->ycap);
    free(r->dycap);
    free(r->readers);
    r->readers = NULL;
    r->y = r->dy = r->save_mean = r->save_invstd = NULL;
    r->mask = NULL;
    r->argmax = NULL;
    r->ycap = r->dycap = r->amcap = NULL;
    r->count = 0;
}

void nn_run_free(nn_run *r) {
    if (!r) return;
    run_release(r);
    free(r->ws);
    free(r->scratch);
    free(r->scratch2);
    free(r);
}

static bool run_size(nn_run *r, int count) {
    if (count <= r->count && r->y) return true;
    run_release(r);
    r->y = calloc((size_t)count, sizeof(float *));
    r->dy = calloc((size_t)count, sizeof(float *));
    r->save_mean = calloc((size_t)count, sizeof(float *));
    r->save_invstd = calloc((size_t)count, sizeof(float *));
    r->mask = calloc((size_t)count, sizeof(uint8_t *));
    r->argmax = calloc((size_t)count, sizeof(int32_t *));
    r->amcap = calloc((size_t)count, sizeof(size_t));
    r->ycap = calloc((size_t)count, sizeof(size_t));
    r->dycap = calloc((size_t)count, sizeof(size_t));
    r->readers = calloc((size_t)count, sizeof(int));
    r->count = count;
    return r->y && r->dy && r->save_mean && r->save_invstd && r->mask && r->argmax && r->amcap && r->ycap && r->dycap &&
           r->readers;
}

/* Grow *buf to hold n floats (contents not kept). */
static bool reserve(float **buf, size_t *cap, size_t n) {
    if (n <= *cap && *buf) return true;
    free(*buf);
    *buf = malloc((n ? n : 1) * sizeof(float));
    *cap = *buf ? n : 0;
    return *buf != NULL;
}

const float *nn_run_output(const nn_run *r, int i) {
    if (i < 0 || i >= r->count || i > r->last) return NULL;
    /* A convolution fused into its activation kept no output of its own. */
    if (r->fused && r->readers[i] < 0) return NULL;
    return r->y[i];
}

/* In inference, a convolution whose only reader is the activation right
 * after it is computed with that activation applied on the way
 * (nn_conv_forward_act), straight into the activation's buffer: one pass
 * over the largest tensors of the network instead of two. Training keeps
 * them apart (the activation's backward needs its input). readers[i] < 0
 * marks a fused convolution. */
static const float *forward(nn_run *r, nn_net *net, int n, const float *x, bool train, nn_rng *rng, int upto,
                            bool fuse) {
    int end = upto <= 0 || upto > net->count ? net->count : upto;
    if (n <= 0 || end == 0 || !run_size(r, net->count)) return NULL;
    r->n = n;
    r->x = x;
    r->trained = train;
    r->fused = false;
    r->blind = false;
    for (int i = 0; i < net->count; i++) r->readers[i] = 0;
    for (int i = 0; i < end; i++) {
        const nn_node *d = &net->nodes[i].d;
        if (d->in >= 0) r->readers[d->in]++;
        if ((d->op == NN_OP_ADD || d->op == NN_OP_CONCAT) && d->in2 >= 0) r->readers[d->in2]++;
    }
    for (int i = 0; i < end; i++) {
        node *nd = &net->nodes[i];
        if (fuse && !train && nd->d.op == NN_OP_CONV && i + 1 < end && r->readers[i] == 1 &&
            net->nodes[i + 1].d.op == NN_OP_ACT && net->nodes[i + 1].d.in == i) {
            nn_shape is = nn_net_shape(net, nd->d.in), os = net->nodes[i + 1].out;
            is.n = os.n = n;
            size_t ws = nn_conv_workspace(&nd->d.conv, is);
            if (!reserve(&r->y[i + 1], &r->ycap[i + 1], nn_count(os)) || !reserve(&r->ws, &r->wscap, ws)) return NULL;
            nn_conv_forward_act(&nd->d.conv, is, nd->d.in == NN_INPUT ? x : r->y[nd->d.in], nd->t[0], nd->t[1],
                                (int)net->nodes[i + 1].d.act, r->y[i + 1], r->ws);
            r->readers[i] = -1;
            r->fused = true;
            r->last = ++i;
            continue;
        }
        nn_shape is = nn_net_shape(net, nd->d.in);
        is.n = n;
        nn_shape os = nd->out;
        os.n = n;
        size_t on = nn_count(os);
        if (!reserve(&r->y[i], &r->ycap[i], on)) return NULL;
        const float *in = nd->d.in == NN_INPUT ? x : r->y[nd->d.in];
        float *y = r->y[i];
        bool learn = train && i >= net->frozen;
        switch (nd->d.op) {
        case NN_OP_CONV: {
            size_t ws = nn_conv_workspace(&nd->d.conv, is);
            if (!reserve(&r->ws, &r->wscap, ws)) return NULL;
            nn_conv_forward(&nd->d.conv, is, in, nd->t[0], nd->t[1], y, r->ws);
            break;
        }
        case NN_OP_BN: {
            nn_bn p = {nd->d.momentum, nd->d.eps};
            if (learn) {
                free(r->save_mean[i]);
                free(r->save_invstd[i]);
                r->save_mean[i] = malloc((size_t)is.c * sizeof(float));
                r->save_invstd[i] = malloc((size_t)is.c * sizeof(float));
                if (!r->save_mean[i] || !r->save_invstd[i]) return NULL;
                nn_bn_forward_train(&p, is, in, nd->t[0], nd->t[1], y, r->save_mean[i], r->save_invstd[i], nd->t[2],
                                    nd->t[3]);
            } else {
                nn_bn_forward_infer(&p, is, in, nd->t[0], nd->t[1], nd->t[2], nd->t[3], y);
            }
            break;
        }
        case NN_OP_ACT: nn_act_forward(nd->d.act, on, in, y); break;
        case NN_OP_ADD: nn_add_forward(on, in, nd->d.in2 == NN_INPUT ? x : r->y[nd->d.in2], y); break;
        case NN_OP_GAP: nn_gap_forward(is, in, y); break;
        case NN_OP_MAXPOOL:
            if (fuse && !train) { /* backward, if it comes, forwards again (fuse false) */
                nn_maxpool_forward(&nd->d.pool, is, in, y, NULL);
                r->blind = true;
                break;
            }
            if (on > r->amcap[i] || !r->argmax[i]) {
                free(r->argmax[i]);
                r->argmax[i] = malloc(on * sizeof(int32_t));
                r->amcap[i] = r->argmax[i] ? on : 0;
                if (!r->argmax[i]) return NULL;
            }
            nn_maxpool_forward(&nd->d.pool, is, in, y, r->argmax[i]);
            break;
        case NN_OP_AVGPOOL: nn_avgpool_forward(&nd->d.pool, is, in, y); break;
        case NN_OP_CONCAT: {
            nn_shape bs = nn_net_shape(net, nd->d.in2);
            nn_concat_forward(n, is.c, bs.c, (size_t)is.h * is.w, in, nd->d.in2 == NN_INPUT ? x : r->y[nd->d.in2], y);
            break;
        }
        case NN_OP_DENSE:
            nn_dense_forward(n, (int)(nn_count(is) / (size_t)n), nd->d.units, in, nd->t[0], nd->t[1], y);
            break;
        case NN_OP_PNORM: nn_pnorm_forward(n, on / (size_t)n, nd->d.alpha, in, y); break;
        case NN_OP_DROPOUT:
            if (learn && nd->d.p > 0 && rng) {
                free(r->mask[i]);
                r->mask[i] = malloc(on);
                if (!r->mask[i]) return NULL;
                nn_dropout_forward(rng, nd->d.p, on, in, y, r->mask[i]);
            } else {
                memcpy(y, in, on * sizeof(float));
            }
            break;
        }
        r->last = i;
    }
    return r->y[end - 1];
}

const float *nn_run_forward(nn_run *r, nn_net *net, int n, const float *x, bool train, nn_rng *rng, int upto) {
    return forward(r, net, n, x, train, rng, upto, true);
}

/* Deliver a gradient g (n floats) to node `to`'s dy: written if this is the
 * first delivery (written[to] false), else added. */
static void deliver(nn_run *r, bool *written, int to, const float *g, size_t n) {
    if (!written[to]) {
        memcpy(r->dy[to], g, n * sizeof(float));
        written[to] = true;
    } else {
        for (size_t k = 0; k < n; k++) r->dy[to][k] += g[k];
    }
}

bool nn_run_backward(nn_run *r, nn_net *net, const float *dout) {
    /* Backward through an inference forward (gradient checks do it) needs
     * the pre-activation outputs that fusion skipped and the max-pooling
     * argmax that was not recorded: compute them. */
    if ((r->fused || r->blind) && !forward(r, net, r->n, r->x, false, NULL, r->last + 1, false)) return false;
    int last = r->last, first = net->frozen;
    if (!r->y || last < first) return true; /* nothing trainable was run */
    bool *written = calloc((size_t)last + 1, sizeof(bool));
    if (!written) return false;
    bool ok = true;
    for (int i = first; i <= last && ok; i++) {
        nn_shape os = net->nodes[i].out;
        os.n = r->n;
        ok = reserve(&r->dy[i], &r->dycap[i], nn_count(os));
    }
    if (ok) {
        nn_shape os = net->nodes[last].out;
        os.n = r->n;
        memcpy(r->dy[last], dout, nn_count(os) * sizeof(float));
        written[last] = true;
    }
    for (int i = last; i >= first && ok; i--) {
        node *nd = &net->nodes[i];
        if (!written[i]) continue; /* output unused by what was differentiated */
        nn_shape is = nn_net_shape(net, nd->d.in), os = nd->out;
        is.n = os.n = r->n;
        size_t inn = nn_count(is), on = nn_count(os);
        const float *x = nd->d.in == NN_INPUT ? r->x : r->y[nd->d.in];
        const float *dy = r->dy[i];
        /* An input gradient is wanted only if its producer is trainable. */
        bool want = nd->d.in >= first;
        float *dx = NULL;
        if (want && !written[nd->d.in]) {
            dx = r->dy[nd->d.in];
        } else if (want) {
            ok = reserve(&r->scratch, &r->scratchcap, inn);
            if (!ok) break;
            dx = r->scratch;
        }
        switch (nd->d.op) {
        case NN_OP_CONV:
            ok = reserve(&r->ws, &r->wscap, nn_conv_workspace(&nd->d.conv, is));
            if (!ok) break;
            nn_conv_backward(&nd->d.conv, is, x, nd->t[0], dy, dx, nd->g[0], nd->g[1], r->ws);
            break;
        case NN_OP_BN:
            if (r->trained && r->save_mean[i]) {
                nn_bn_backward(is, x, nd->t[0], r->save_mean[i], r->save_invstd[i], dy, dx, nd->g[0], nd->g[1]);
            } else if (dx) { /* inference statistics: a per-channel affine map */
                int hw = is.h * is.w;
                for (int b = 0; b < is.n; b++)
                    for (int c = 0; c < is.c; c++) {
                        float s = nd->t[0][c] / sqrtf(nd->t[3][c] + nd->d.eps);
                        size_t o = ((size_t)b * is.c + c) * hw;
                        for (int k = 0; k < hw; k++) dx[o + k] = dy[o + k] * s;
                    }
            }
            break;
        case NN_OP_ACT:
            if (dx) nn_act_backward(nd->d.act, on, x, dy, dx);
            break;
        case NN_OP_ADD:
            if (dx) memcpy(dx, dy, on * sizeof(float));
            if (dx && dx != r->scratch) written[nd->d.in] = true; /* before in2, which may be the same node */
            if (nd->d.in2 >= first) deliver(r, written, nd->d.in2, dy, on);
            break;
        case NN_OP_GAP:
            if (dx) nn_gap_backward(is, dy, dx);
            break;
        case NN_OP_MAXPOOL:
            if (dx) nn_maxpool_backward(is, os, r->argmax[i], dy, dx);
            break;
        case NN_OP_AVGPOOL:
            if (dx) nn_avgpool_backward(&nd->d.pool, is, dy, dx);
            break;
        case NN_OP_CONCAT: {
            /* As ADD: in's part first (so that in2 = in adds to it), then
             * in2's, straight into its gradient when that is still unwritten. */
            int cb = nn_net_shape(net, nd->d.in2).c;
            size_t hw = (size_t)is.h * is.w;
            if (dx) nn_concat_backward(r->n, is.c, cb, hw, dy, dx, NULL);
            if (dx && dx != r->scratch) written[nd->d.in] = true;
            if (nd->d.in2 >= first) {
                size_t n2 = (size_t)r->n * cb * hw;
                if (!written[nd->d.in2]) {
                    nn_concat_backward(r->n, is.c, cb, hw, dy, NULL, r->dy[nd->d.in2]);
                    written[nd->d.in2] = true;
                } else {
                    ok = reserve(&r->scratch2, &r->scratch2cap, n2);
                    if (!ok) break;
                    nn_concat_backward(r->n, is.c, cb, hw, dy, NULL, r->scratch2);
                    deliver(r, written, nd->d.in2, r->scratch2, n2);
                }
            }
            break;
        }
        case NN_OP_DENSE:
            nn_dense_backward(r->n, (int)(inn / (size_t)r->n), nd->d.units, x, nd->t[0], dy, dx, nd->g[0], nd->g[1]);
            break;
        case NN_OP_PNORM:
            if (dx) nn_pnorm_backward(r->n, on / (size_t)r->n, nd->d.alpha, x, r->y[i], dy, dx);
            break;
        case NN_OP_DROPOUT:
            if (!dx) break;
            if (r->trained && r->mask[i] && nd->d.p > 0)
                nn_dropout_backward(nd->d.p, on, r->mask[i], dy, dx);
            else
                memcpy(dx, dy, on * sizeof(float));
            break;
        }
        if (ok && want) {
            if (dx == r->scratch)
                deliver(r, written, nd->d.in, r->scratch, inn);
            else
                written[nd->d.in] = true;
        }
    }
    free(written);
    return ok;
}

nn_net *nn_net_slice(nn_net *net, int input, int first, int end) {
    if (input < NN_INPUT || input >= net->count || first <= input || first >= end || end > net->count) return NULL;
    nn_shape in = nn_net_shape(net, input);
    nn_net *s = nn_net_new(in.c, in.h, in.w);
    for (int i = first; s && i < end; i++) {
        nn_node d = net->nodes[i].d;
        int *refs[2] = {&d.in, d.op == NN_OP_ADD || d.op == NN_OP_CONCAT ? &d.in2 : NULL};
        bool ok = true;
        for (int r = 0; r < 2; r++) {
            if (!refs[r]) continue;
            if (*refs[r] == input)
                *refs[r] = NN_INPUT;
            else if (*refs[r] >= first && *refs[r] < i)
                *refs[r] -= first;
            else
                ok = false;
        }
        if (!ok || nn_net_add(s, &d) != i - first) {
            nn_net_free(s);
            return NULL;
        }
        for (int k = 0; k < NN_SLOTS; k++)
            if (net->nodes[i].t[k])
                memcpy(s->nodes[i - first].t[k], net->nodes[i].t[k], net->nodes[i].tn[k] * sizeof(float));
    }
    return s;
}
