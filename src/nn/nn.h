/* nn — the neural-network engine: float32 layers with forward and backward
 * passes, a softmax cross-entropy loss, SGD-momentum and AdamW optimisers, a
 * cosine schedule and a deterministic random generator.
 *
 * This file is the kernel layer: each function works on caller-owned flat
 * float arrays in NCHW order (batch, channels, height, width), with the
 * shapes passed explicitly, so every kernel can be tested in isolation
 * (each one's gradient is checked against finite differences). Dense matrix
 * work goes through OpenBLAS (cblas_sgemm, multi-threaded); hand-written
 * loops only where BLAS has nothing to offer (depthwise convolution,
 * pooling, normalisation, element-wise maps).
 *
 * Conventions: backward functions ACCUMULATE into parameter gradients
 * (dw, db, dgamma, dbeta: the caller zeroes them per step) and OVERWRITE the
 * input gradient dx; dx may be NULL when not needed. Nothing allocates
 * except where a workspace size function says how much to pass in. */
#ifndef CARESYNC_NN_H
#define CARESYNC_NN_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "core/core.h"

typedef struct {
    int n, c, h, w;
} nn_shape;

static inline size_t nn_count(nn_shape s) { return (size_t)s.n * s.c * s.h * s.w; }

/* Use this many threads for BLAS and for our own parallel loops (≥1). */
void nn_set_threads(int threads);
int nn_threads(void);
/* Run fn over [0, n) split into nn_threads() disjoint ranges at once (the
 * kernels' own parallel loops). */
typedef void (*nn_task)(void *ctx, int begin, int end);
void nn_parallel(int n, nn_task fn, void *ctx);

/* ---- deterministic randomness (xoshiro256**) ---- */
typedef struct {
    uint64_t s[4];
} nn_rng;
void nn_rng_seed(nn_rng *r, uint64_t seed);
uint64_t nn_rng_next(nn_rng *r);
float nn_rng_uniform(nn_rng *r); /* [0, 1) */
float nn_rng_normal(nn_rng *r);  /* N(0, 1) */
/* He/Kaiming normal init for a layer with fan_in inputs per output. */
void nn_init_he(nn_rng *r, float *w, size_t n, int fan_in);

/* ---- convolution (groups: 1 = dense, in_c = depthwise) ----
 * weights [out_c][in_c / groups][kh][kw], bias [out_c] or NULL.
 * pad is added before (top/left); pad_end extra after (bottom/right), for
 * TensorFlow's "SAME" padding, which puts the odd pixel at the end.
 * With axis_pad ≠ 0, pad and pad_end are the height's only and pad_w and
 * pad_w_end the width's: a "SAME" 1×7 kernel pads 3 columns and no rows.
 * (A flag rather than new per-axis fields replacing pad, so that every
 * existing description, which leaves the trailing fields zero, keeps its
 * meaning.) All fields are int: descriptions are compared with memcmp. */
typedef struct {
    int in_c, out_c, kh, kw, stride, pad, groups, pad_end;
    int axis_pad, pad_w, pad_w_end;
} nn_conv;
typedef enum { NN_RELU, NN_RELU6, NN_SILU } nn_act;
#define NN_ACT_NONE (-1)
nn_shape nn_conv_out(const nn_conv *c, nn_shape in);
size_t nn_conv_params(const nn_conv *c);                 /* weight count */
size_t nn_conv_workspace(const nn_conv *c, nn_shape in); /* floats for ws */
void nn_conv_forward(const nn_conv *c, nn_shape in, const float *x, const float *w, const float *b, float *y,
                     float *ws);
/* The same followed by activation act (an nn_act, or NN_ACT_NONE), applied
 * while the output is still in cache instead of in a pass of its own. */
void nn_conv_forward_act(const nn_conv *c, nn_shape in, const float *x, const float *w, const float *b, int act,
                         float *y, float *ws);
void nn_conv_backward(const nn_conv *c, nn_shape in, const float *x, const float *w, const float *dy, float *dx,
                      float *dw, float *db, float *ws);

/* ---- batch normalisation over (n, h, w) per channel ----
 * Training: normalises with the batch statistics, saves mean and 1/std for
 * backward, and folds them into the running statistics with momentum.
 * Inference: uses the running statistics. */
typedef struct {
    float momentum, eps;
} nn_bn;
void nn_bn_forward_train(const nn_bn *p, nn_shape s, const float *x, const float *gamma, const float *beta, float *y,
                         float *save_mean, float *save_invstd, float *run_mean, float *run_var);
void nn_bn_forward_infer(const nn_bn *p, nn_shape s, const float *x, const float *gamma, const float *beta,
                         const float *run_mean, const float *run_var, float *y);
void nn_bn_backward(nn_shape s, const float *x, const float *gamma, const float *save_mean, const float *save_invstd,
                    const float *dy, float *dx, float *dgamma, float *dbeta);

/* ---- element-wise activations (backward uses the forward input x) ---- */
void nn_act_forward(nn_act a, size_t n, const float *x, float *y);
void nn_act_backward(nn_act a, size_t n, const float *x, const float *dy, float *dx);

/* ---- pooling ----
 * A k×k window moved by stride, pad rows/columns on every side. */
typedef struct {
    int k, stride, pad;
    /* Average pooling: divide by the window's pixels inside the input only
     * (TensorFlow's "SAME" average pooling), not by k². */
    bool exclude_pad;
} nn_pool;
nn_shape nn_pool_out(const nn_pool *p, nn_shape in);
/* Max pooling records the winning input index per output (argmax,
 * caller-owned; NULL when no backward will follow). Padding never wins. */
void nn_maxpool_forward(const nn_pool *p, nn_shape in, const float *x, float *y, int32_t *argmax);
void nn_maxpool_backward(nn_shape in, nn_shape out, const int32_t *argmax, const float *dy, float *dx);
/* Average pooling divides by the full window (padding counts as zeros)
 * unless p->exclude_pad. */
void nn_avgpool_forward(const nn_pool *p, nn_shape in, const float *x, float *y);
void nn_avgpool_backward(const nn_pool *p, nn_shape in, const float *dy, float *dx);
/* Global average pooling: (n, c, h, w) → (n, c). */
void nn_gap_forward(nn_shape in, const float *x, float *y);
void nn_gap_backward(nn_shape in, const float *dy, float *dx);
/* Power normalisation of each sample's vector v of m values (all of c, h, w):
 * z = sign(v)·|v|^alpha, then y = z · √m / ‖z‖ (a zero vector stays zero).
 * It damps the few large activations that tell a photo's source (camera,
 * light, framing) more than its lesion (docs/MODEL.md). y is kept for the
 * backward, which takes the forward's x and y; |v| is floored at 1e-4 in
 * the derivative of the power (infinite at 0 for alpha < 1). */
void nn_pnorm_forward(int n, size_t m, float alpha, const float *x, float *y);
void nn_pnorm_backward(int n, size_t m, float alpha, const float *x, const float *y, const float *dy, float *dx);

/* ---- dense: y[n][out] = x[n][in] · w[out][in]ᵀ + b[out] ---- */
void nn_dense_forward(int n, int in, int out, const float *x, const float *w, const float *b, float *y);
void nn_dense_backward(int n, int in, int out, const float *x, const float *w, const float *dy, float *dx, float *dw,
                       float *db);

/* ---- dropout (inverted: kept units scaled by 1/(1−p)); mask is caller-owned ---- */
void nn_dropout_forward(nn_rng *r, float p, size_t n, const float *x, float *y, uint8_t *mask);
void nn_dropout_backward(float p, size_t n, const uint8_t *mask, const float *dy, float *dx);

/* ---- residual add: y = a + b; its backward passes dy to both inputs ---- */
void nn_add_forward(size_t n, const float *a, const float *b, float *y);

/* ---- channel concatenation of two NCHW tensors of the same n, h, w ----
 * y (n, ca + cb, h, w) = a (n, ca, h, w) then b (n, cb, h, w) per sample;
 * backward splits dy back into da and db (either may be NULL). hw = h·w. */
void nn_concat_forward(int n, int ca, int cb, size_t hw, const float *a, const float *b, float *y);
void nn_concat_backward(int n, int ca, int cb, size_t hw, const float *dy, float *da, float *db);

/* ---- softmax cross-entropy ----
 * logits [n][k]; labels [n]; smoothing ε spreads ε over all classes;
 * class_weight [k] or NULL (loss is the weighted mean over the batch).
 * Returns the loss; writes dlogits (may be NULL) and probabilities (may be NULL). */
float nn_softmax_ce(int n, int k, const float *logits, const int32_t *labels, float smoothing,
                    const float *class_weight, float *dlogits, float *probs);
void nn_softmax(int n, int k, const float *logits, float *probs);

/* ---- augmentation (training images, CHW float) ----
 * Random resized crop (area fraction in [min_area, max_area], aspect ratio
 * in [min_ratio, max_ratio], defaults 3/4..4/3), rotation within
 * ±max_rotate_deg, flips, and colour jitter (each factor 1 ± its amount).
 * in and out must not overlap. With area and ratio 1, no rotation, flips or
 * jitter, out is in resampled to the output size. */
typedef struct {
    float min_area, max_area, min_ratio, max_ratio, max_rotate_deg;
    bool hflip, vflip;
    float brightness, contrast, saturation;
    float max_blur;  /* Gaussian blur, sigma uniform in [0, max_blur] output pixels (0: none) */
    float max_noise; /* additive Gaussian noise, std uniform in [0, max_noise] (0: none) */
} nn_augment_opts;
void nn_augment_defaults(nn_augment_opts *o);
void nn_augment(nn_rng *r, const nn_augment_opts *o, int channels, int in_h, int in_w, const float *in, int out_h,
                int out_w, float *out);

/* ---- optimisers ----
 * AdamW: decoupled weight decay (Loshchilov & Hutter); SGD with momentum
 * and (coupled) weight decay. m and v are caller-owned state, zeroed at start. */
typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    int64_t t;
} nn_adamw;
void nn_adamw_init(nn_adamw *o, float lr, float weight_decay);
void nn_adamw_step(nn_adamw *o, size_t n, float *w, const float *g, float *m, float *v, bool decay);
/* Call once per step, before the per-tensor nn_adamw_step calls. */
void nn_adamw_tick(nn_adamw *o);
typedef struct {
    float lr, momentum, weight_decay;
} nn_sgd;
void nn_sgd_step(const nn_sgd *o, size_t n, float *w, const float *g, float *vel, bool decay);
/* Cosine schedule with linear warm-up: lr at step t of total. */
float nn_cosine_lr(float base, float min_lr, int64_t t, int64_t warmup, int64_t total);

/* ==== networks: a graph of layers, its weights, and runs over batches ====
 *
 * An nn_net owns the layer list and every parameter (weights, gradients,
 * batch-norm running statistics). Nodes are added in execution order and
 * each reads the output of an earlier node (or NN_INPUT, the network input),
 * so a residual block is just an ADD of two earlier nodes. Node outputs are
 * per-sample shapes (n = 1); a GAP output is (c, 1, 1) and a DENSE output
 * (out, 1, 1), so "flatten" needs no node of its own.
 *
 * An nn_run owns the activations of one batch through one net. Forward in
 * inference mode only reads the net, so several threads may each drive their
 * own nn_run over one shared net at once. Training (forward with train=true,
 * then backward) writes the net's gradients and running statistics: one run
 * at a time.
 *
 * Nodes below the net's frozen boundary are fixed: no gradients, batch norm
 * uses running statistics, and backward stops there. */
#define NN_INPUT (-1)
/* New ops go at the end: model files name ops, but tests and tools index by value. */
typedef enum {
    NN_OP_CONV,
    NN_OP_BN,
    NN_OP_ACT,
    NN_OP_ADD,
    NN_OP_GAP,
    NN_OP_DENSE,
    NN_OP_DROPOUT,
    NN_OP_MAXPOOL,
    NN_OP_AVGPOOL,
    NN_OP_CONCAT,
    NN_OP_PNORM
} nn_op;

typedef struct nn_net nn_net;
typedef struct nn_run nn_run;

/* A read-only description of one node, for saving and comparing graphs. */
typedef struct {
    nn_op op;
    int in, in2;         /* producer node(s); in2 only for ADD and CONCAT (in's channels first) */
    nn_conv conv;        /* CONV */
    nn_pool pool;        /* MAXPOOL, AVGPOOL */
    bool bias;           /* CONV, DENSE */
    nn_act act;          /* ACT */
    float eps, momentum; /* BN */
    float p;             /* DROPOUT */
    float alpha;         /* PNORM: the power, in (0, 1] */
    int units;           /* DENSE */
} nn_node;

/* A trainable tensor with its gradient (both owned by the net). */
typedef struct {
    float *w, *g;
    size_t n;
    bool decay; /* weight decay applies (weights yes, biases/BN no) */
} nn_param;

nn_net *nn_net_new(int c, int h, int w); /* NULL when out of memory */
void nn_net_free(nn_net *net);
/* Append a node; returns its index, or -1 when the description does not fit
 * its input (wrong channel count, bad indices, zero sizes) or memory ran out.
 * New parameters are zero, except batch-norm gamma and running variance (1). */
int nn_net_add(nn_net *net, const nn_node *node);
int nn_net_count(const nn_net *net);
const nn_node *nn_net_node(const nn_net *net, int i);
nn_shape nn_net_shape(const nn_net *net, int i); /* output of node i (n = 1); NN_INPUT = input */
/* Parameter slot k of node i (CONV/DENSE: 0 weights, 1 bias; BN: 0 gamma,
 * 1 beta, 2 running mean, 3 running variance); NULL if none. */
float *nn_net_tensor(nn_net *net, int i, int k, size_t *count);
/* A new net computing nodes [first, end) of net from the output of node
 * `input` (which becomes the new net's input), weights copied. NULL when a
 * node in the range reads anything but `input` or nodes in the range, or
 * memory ran out. Used to run a head on cached backbone features. */
nn_net *nn_net_slice(nn_net *net, int input, int first, int end);
/* Drop nodes from index `count` on. */
void nn_net_truncate(nn_net *net, int count);
void nn_net_set_frozen(nn_net *net, int first_trainable);
int nn_net_frozen(const nn_net *net);
/* He-initialise every trainable CONV/DENSE weight (biases stay zero). */
void nn_net_init(nn_net *net, nn_rng *r);
/* Trainable tensors in a stable order; returns how many (fills ≤ max). */
size_t nn_net_params(nn_net *net, nn_param *out, size_t max);
void nn_net_zero_grad(nn_net *net);
/* Multiply-adds per sample of one forward pass (for GFLOP/s figures). */
double nn_net_macs(const nn_net *net);

nn_run *nn_run_new(void);
void nn_run_free(nn_run *run);
/* Forward a batch of n samples x (n × input shape, NCHW) through nodes
 * [0, upto) (upto ≤ 0: all). Returns the last computed node's output
 * (n × its shape), owned by the run and valid until the next call, or NULL
 * when memory ran out. train: batch statistics and dropout (rng needed). */
const float *nn_run_forward(nn_run *run, nn_net *net, int n, const float *x, bool train, nn_rng *rng, int upto);
/* Output of node i from the last forward (n × shape), or NULL. An inference
 * forward fuses a convolution into the activation that is its only reader:
 * the convolution's own (pre-activation) output is then not kept (NULL). */
const float *nn_run_output(const nn_run *run, int i);
/* Backward from the gradient of the last forward's final output
 * (n × its shape); accumulates into the net's gradients. Returns false when
 * memory ran out. */
bool nn_run_backward(nn_run *run, nn_net *net, const float *dout);

/* ==== TensorFlow Lite import ====
 * Build a float network from a .tflite flatbuffer of the MobileNet family
 * (CONV_2D, DEPTHWISE_CONV_2D, ADD, whole-map AVERAGE_POOL_2D/MEAN,
 * FULLY_CONNECTED; RESHAPE/SOFTMAX/(DE)QUANTIZE pass through), dequantising
 * uint8/int8 weights (per tensor or per channel). Fused ReLU/ReLU6 become ACT
 * nodes. The network outputs logits (no softmax). Input is NCHW float: a
 * pixel byte p becomes in_scale · (p − in_zero). Bytes are borrowed; *net
 * is the caller's (nn_net_free). Anything else is refused with a message. */
typedef struct {
    int height, width; /* input size */
    float in_scale, in_zero;
    int features; /* node of the pooled features, -1 if none */
    int output;   /* node of the logits */
} nn_tflite_info;
core_status nn_tflite_read(const uint8_t *bytes, size_t len, nn_net **net, nn_tflite_info *info, core_error *err);

/* ==== TensorFlow.js import ====
 * Build a float network from a TF.js model: a Keras layers model (Conv2D,
 * DepthwiseConv2D, BatchNormalization, Activation/ReLU, ZeroPadding2D,
 * Max/AveragePooling2D, GlobalAveragePooling2D, Concatenate, Add, Flatten
 * of a 1×1 map, Dropout, Dense) or a converter graph model (Conv2D,
 * DepthwiseConv2dNative and their fused forms with BiasAdd[+Relu/Relu6],
 * Relu/Relu6, AddV2, Max/AvgPool, ConcatV2, MatMul/_FusedMatMul,
 * Squeeze/Reshape/Identity of vectors, scalar Mul/Sub/Add/RealDiv of the
 * input, which go into in_scale/in_zero). Weights may be float32 or
 * quantised (uint8/uint16 with min and scale, float16). The network outputs
 * logits (a final softmax is left out). Anything else is refused with the
 * layer's name and class.
 *
 * A pixel byte p becomes in_scale · (p − in_zero) at the network input. The
 * model does not record it: the reader assumes nsfwjs's convention (pixels
 * divided by 255 before the model) and folds the graph's own input
 * arithmetic into it. features is the node of the globally pooled features
 * (-1 if none), output the node of the logits.
 *
 * nn_tfjs_read: model_path names model.json (weight shards are the
 * manifest's plain file names in the same directory) or an nsfwjs bundle,
 * model.min.js (shards NAME.min.js, each exporting base64). nn_tfjs_parse:
 * the model text (either form) and the weight bytes (every shard, in
 * manifest order, concatenated), both borrowed. *net is the caller's
 * (nn_net_free); on failure it is NULL and err says why. The info is the
 * same as an imported TFLite model's. */
typedef nn_tflite_info nn_tfjs_info;
core_status nn_tfjs_read(const char *model_path, nn_net **net, nn_tfjs_info *info, core_error *err);
core_status nn_tfjs_parse(const char *model, size_t len, const uint8_t *weights, size_t wlen, nn_net **net,
                          nn_tfjs_info *info, core_error *err);

/* ==== model files ====
 * One network, its weights, a JSON metadata object (must hold "classes":
 * one name per network output; the rest — triage levels, preprocessing — is
 * the caller's), and a SHA-256 over everything. A model may be built on a
 * backbone it does not contain: the TFLite file named by `file` (looked up
 * in backbone_dir, a colon-separated list of directories, its SHA-256
 * checked; a name ending .js or .json is a TF.js model, read with the
 * weight shards beside it) supplies the first `nodes` nodes,
 * whose descriptions must match the ones saved. Loading refuses, with a
 * message, a wrong magic, version (CORE_ERR_VERSION), checksum, header,
 * layer, weight count, non-finite weight, or backbone. *net and *meta (a
 * JSON text) are the caller's to free. */
typedef struct {
    const char *file; /* file name only, no directory */
    uint8_t sha256[32];
    int nodes;
} nn_backbone;
core_status nn_model_save(const char *path, nn_net *net, const char *meta_json, const nn_backbone *backbone,
                          core_error *err);
core_status nn_model_parse(const uint8_t *bytes, size_t len, const char *backbone_dir, nn_net **net, char **meta_json,
                           core_error *err);
core_status nn_model_load(const char *path, const char *backbone_dir, nn_net **net, char **meta_json, core_error *err);

#endif
