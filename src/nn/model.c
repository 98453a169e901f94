/* Model files: one network, its weights, and what the product needs to use
 * it (class names, triage levels, preprocessing), checksummed.
 *
 *   offset 0   "CSNNMDL\0"                 magic
 *          8   u32 LE version (1)
 *         12   u32 LE header length H
 *         16   header: UTF-8 JSON object
 *                { "input": [c, h, w], "frozen": F,
 *                  "backbone": { "file", "sha256", "nodes": K } (optional),
 *                  "nodes": [ { "op": "conv", "in": -1, ... }, ... ],
 *                  "meta": { "classes": [ ... ], ... } }
 *     16 + H   zero padding to a multiple of 4
 *              float32 LE parameters of nodes K.., slot by slot
 *     end−32   SHA-256 of every byte before it
 *
 * Why a backbone reference: the pretrained MobileNet weights under
 * ../shared/models may not be copied into the project, so a model built on
 * one names the file and its SHA-256 and stores only what the project
 * trained itself; loading reads the backbone and checks that its first K
 * nodes are exactly the ones the model was trained on. */
#include "nn/nn.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto/crypto.h"

#define MAGIC "CSNNMDL"
#define VERSION 1u

static const char *const op_names[] = {"conv",    "bn",      "act",     "add",    "gap",  "dense",
                                       "dropout", "maxpool", "avgpool", "concat", "pnorm"};
static const char *const act_names[] = {"relu", "relu6", "silu"};

static json_t *node_json(const nn_node *d) {
    json_t *o = json_pack("{s:s, s:i}", "op", op_names[d->op], "in", d->in);
    switch (d->op) {
    case NN_OP_CONV:
        json_object_set_new(o, "out_c", json_integer(d->conv.out_c));
        json_object_set_new(o, "k", json_pack("[i,i]", d->conv.kh, d->conv.kw));
        json_object_set_new(o, "stride", json_integer(d->conv.stride));
        json_object_set_new(o, "pad", json_integer(d->conv.pad));
        json_object_set_new(o, "pad_end", json_integer(d->conv.pad_end));
        json_object_set_new(o, "groups", json_integer(d->conv.groups));
        json_object_set_new(o, "bias", json_boolean(d->bias));
        /* Written only when used, so files of square-padded nets read as before. */
        if (d->conv.axis_pad) {
            json_object_set_new(o, "pad_w", json_integer(d->conv.pad_w));
            json_object_set_new(o, "pad_w_end", json_integer(d->conv.pad_w_end));
        }
        break;
    case NN_OP_MAXPOOL:
    case NN_OP_AVGPOOL:
        json_object_set_new(o, "k", json_integer(d->pool.k));
        json_object_set_new(o, "stride", json_integer(d->pool.stride));
        json_object_set_new(o, "pad", json_integer(d->pool.pad));
        json_object_set_new(o, "exclude_pad", json_boolean(d->pool.exclude_pad));
        break;
    case NN_OP_CONCAT: json_object_set_new(o, "in2", json_integer(d->in2)); break;
    case NN_OP_BN:
        json_object_set_new(o, "eps", json_real(d->eps));
        json_object_set_new(o, "momentum", json_real(d->momentum));
        break;
    case NN_OP_ACT: json_object_set_new(o, "fn", json_string(act_names[d->act])); break;
    case NN_OP_ADD: json_object_set_new(o, "in2", json_integer(d->in2)); break;
    case NN_OP_GAP: break;
    case NN_OP_DENSE:
        json_object_set_new(o, "units", json_integer(d->units));
        json_object_set_new(o, "bias", json_boolean(d->bias));
        break;
    case NN_OP_DROPOUT: json_object_set_new(o, "p", json_real(d->p)); break;
    case NN_OP_PNORM: json_object_set_new(o, "alpha", json_real(d->alpha)); break;
    }
    return o;
}

/* Fill d from JSON; in_c comes from the producer's shape. false = malformed. */
static bool node_from_json(json_t *o, const nn_net *net, nn_node *d) {
    memset(d, 0, sizeof *d);
    json_t *op = json_object_get(o, "op"), *in = json_object_get(o, "in");
    if (!json_is_string(op) || !json_is_integer(in)) return false;
    int k = -1;
    for (int i = 0; i < (int)(sizeof op_names / sizeof op_names[0]); i++)
        if (!strcmp(json_string_value(op), op_names[i])) k = i;
    json_int_t inv = json_integer_value(in);
    if (k < 0 || inv < NN_INPUT || inv >= nn_net_count(net)) return false;
    d->op = (nn_op)k;
    d->in = (int)inv;
#define INT(name, lo, hi, dst)                                                                                    \
    do {                                                                                                          \
        json_t *v_ = json_object_get(o, name);                                                                    \
        if (!json_is_integer(v_) || json_integer_value(v_) < (lo) || json_integer_value(v_) > (hi)) return false; \
        dst = (int)json_integer_value(v_);                                                                        \
    } while (0)
#define REAL(name, dst)                        \
    do {                                       \
        json_t *v_ = json_object_get(o, name); \
        if (!json_is_number(v_)) return false; \
        dst = (float)json_number_value(v_);    \
    } while (0)
    switch (d->op) {
    case NN_OP_CONV: {
        json_t *kk = json_object_get(o, "k"), *b = json_object_get(o, "bias");
        if (!json_is_array(kk) || json_array_size(kk) != 2 || !json_is_boolean(b)) return false;
        json_t *kh = json_array_get(kk, 0), *kw = json_array_get(kk, 1);
        if (!json_is_integer(kh) || !json_is_integer(kw) || json_integer_value(kh) < 1 || json_integer_value(kh) > 64 ||
            json_integer_value(kw) < 1 || json_integer_value(kw) > 64)
            return false;
        d->conv.kh = (int)json_integer_value(kh), d->conv.kw = (int)json_integer_value(kw);
        INT("out_c", 1, 1 << 16, d->conv.out_c);
        INT("stride", 1, 64, d->conv.stride);
        INT("pad", 0, 63, d->conv.pad);
        INT("pad_end", 0, 1, d->conv.pad_end);
        INT("groups", 1, 1 << 16, d->conv.groups);
        d->conv.in_c = nn_net_shape(net, d->in).c;
        d->bias = json_is_true(b);
        if (json_object_get(o, "pad_w") || json_object_get(o, "pad_w_end")) {
            d->conv.axis_pad = 1;
            INT("pad_w", 0, 63, d->conv.pad_w);
            INT("pad_w_end", 0, 1, d->conv.pad_w_end);
        }
        break;
    }
    case NN_OP_MAXPOOL:
    case NN_OP_AVGPOOL: {
        json_t *ex = json_object_get(o, "exclude_pad");
        if (!json_is_boolean(ex)) return false;
        INT("k", 1, 64, d->pool.k);
        INT("stride", 1, 64, d->pool.stride);
        INT("pad", 0, 63, d->pool.pad);
        d->pool.exclude_pad = json_is_true(ex);
        break;
    }
    case NN_OP_CONCAT: INT("in2", NN_INPUT, nn_net_count(net) - 1, d->in2); break;
    case NN_OP_BN:
        REAL("eps", d->eps);
        REAL("momentum", d->momentum);
        break;
    case NN_OP_ACT: {
        json_t *fn = json_object_get(o, "fn");
        if (!json_is_string(fn)) return false;
        int a = -1;
        for (int i = 0; i < 3; i++)
            if (!strcmp(json_string_value(fn), act_names[i])) a = i;
        if (a < 0) return false;
        d->act = (nn_act)a;
        break;
    }
    case NN_OP_ADD: INT("in2", NN_INPUT, nn_net_count(net) - 1, d->in2); break;
    case NN_OP_GAP: break;
    case NN_OP_DENSE: {
        json_t *b = json_object_get(o, "bias");
        if (!json_is_boolean(b)) return false;
        INT("units", 1, 1 << 20, d->units);
        d->bias = json_is_true(b);
        break;
    }
    case NN_OP_DROPOUT: REAL("p", d->p); break;
    case NN_OP_PNORM: REAL("alpha", d->alpha); break;
    }
#undef INT
#undef REAL
    return true;
}

static bool same_node(const nn_node *a, const nn_node *b) {
    if (a->op != b->op || a->in != b->in) return false;
    switch (a->op) {
    case NN_OP_CONV: return !memcmp(&a->conv, &b->conv, sizeof a->conv) && a->bias == b->bias;
    case NN_OP_ACT: return a->act == b->act;
    case NN_OP_ADD:
    case NN_OP_CONCAT: return a->in2 == b->in2;
    case NN_OP_MAXPOOL:
    case NN_OP_AVGPOOL:
        return a->pool.k == b->pool.k && a->pool.stride == b->pool.stride && a->pool.pad == b->pool.pad &&
               a->pool.exclude_pad == b->pool.exclude_pad;
    case NN_OP_DENSE: return a->units == b->units && a->bias == b->bias;
    case NN_OP_BN: return a->eps == b->eps && a->momentum == b->momentum;
    case NN_OP_DROPOUT: return a->p == b->p;
    case NN_OP_PNORM: return a->alpha == b->alpha;
    default: return true;
    }
}

/* Validate meta: an object whose "classes" is an array of strings with one
 * entry per network output. */
static bool meta_ok(json_t *meta, nn_net *net) {
    json_t *cl = json_object_get(meta, "classes");
    if (!json_is_object(meta) || !json_is_array(cl) || nn_net_count(net) == 0) return false;
    nn_shape o = nn_net_shape(net, nn_net_count(net) - 1);
    if (json_array_size(cl) != nn_count(o)) return false;
    for (size_t i = 0; i < json_array_size(cl); i++)
        if (!json_is_string(json_array_get(cl, i))) return false;
    return true;
}

core_status nn_model_save(const char *path, nn_net *net, const char *meta_text, const nn_backbone *bb,
                          core_error *err) {
    core_error pe = {0};
    json_t *meta = core_json_loads(meta_text, 0, NULL, &pe);
    if (!meta && pe.code == CORE_ERR_NOMEM) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    if (!meta || !meta_ok(meta, net)) {
        json_decref(meta);
        return core_fail(err, CORE_ERR_INVALID, "meta", "model metadata needs \"classes\": one name per output");
    }
    int first = bb ? bb->nodes : 0;
    if (first < 0 || first > nn_net_count(net)) {
        json_decref(meta);
        return core_fail(err, CORE_ERR_INVALID, "backbone", "backbone node count out of range");
    }
    nn_shape in = nn_net_shape(net, NN_INPUT);
    json_t *nodes = json_array();
    for (int i = 0; i < nn_net_count(net); i++) json_array_append_new(nodes, node_json(nn_net_node(net, i)));
    json_t *h = json_pack("{s:[i,i,i], s:i, s:o, s:o}", "input", in.c, in.h, in.w, "frozen", nn_net_frozen(net),
                          "nodes", nodes, "meta", meta);
    if (bb) {
        char sha[65];
        cs_crypto_hex(bb->sha256, 32, sha);
        json_object_set_new(h, "backbone",
                            json_pack("{s:s, s:s, s:i}", "file", bb->file, "sha256", sha, "nodes", first));
    }
    char *ht = core_json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(h);
    if (!ht) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory saving the model");
    size_t hl = strlen(ht), pad = (4 - (16 + hl) % 4) % 4, floats = 0;
    for (int i = first; i < nn_net_count(net); i++)
        for (int k = 0; k < 4; k++) {
            size_t n;
            if (nn_net_tensor(net, i, k, &n)) floats += n;
        }
    size_t total = 16 + hl + pad + floats * 4 + 32;
    uint8_t *buf = calloc(1, total);
    if (!buf) {
        free(ht);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory saving the model");
    }
    memcpy(buf, MAGIC, 8);
    core_put_le32(buf + 8, VERSION);
    core_put_le32(buf + 12, (uint32_t)hl);
    memcpy(buf + 16, ht, hl);
    free(ht);
    size_t at = 16 + hl + pad;
    for (int i = first; i < nn_net_count(net); i++)
        for (int k = 0; k < 4; k++) {
            size_t n;
            float *t = nn_net_tensor(net, i, k, &n);
            if (!t) continue;
            for (size_t j = 0; j < n; j++, at += 4) core_put_lef32(buf + at, t[j]);
        }
    cs_crypto_sha256(buf + at, buf, at);
    /* Write beside, then rename: a crash never leaves half a model. */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fwrite(buf, 1, total, f) == total;
    ok = f && fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    if (f && fclose(f) != 0) ok = false;
    free(buf);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return core_fail(err, CORE_ERR_IO, "path", "cannot write the model file %s", path);
    }
    return CORE_OK;
}

static core_status refuse(core_error *err, const char *why) {
    return core_fail(err, CORE_ERR_INVALID, NULL, "the model file is not usable: %s", why);
}

core_status nn_model_parse(const uint8_t *b, size_t n, const char *backbone_dir, nn_net **out, char **meta_out,
                           core_error *err) {
    *out = NULL;
    *meta_out = NULL;
    if (n < 16 + 32 || memcmp(b, MAGIC, 8) != 0) return refuse(err, "not a CareSync model (bad magic)");
    uint32_t v = core_get_le32(b + 8), hl = core_get_le32(b + 12);
    if (v != VERSION)
        return core_fail(err, CORE_ERR_VERSION, NULL, "the model file has format version %u; this build reads %u", v,
                         VERSION);
    uint8_t sum[32];
    cs_crypto_sha256(sum, b, n - 32);
    if (memcmp(sum, b + n - 32, 32) != 0) return refuse(err, "checksum mismatch (corrupt or altered)");
    if (hl > n - 48) return refuse(err, "header length out of range");
    core_error pe = {0};
    json_t *h = core_json_loadb((const char *)b + 16, hl, JSON_REJECT_DUPLICATES, NULL, &pe);
    if (!h && pe.code == CORE_ERR_NOMEM) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    if (!json_is_object(h)) {
        json_decref(h);
        return refuse(err, "header is not JSON");
    }
    core_status rc = CORE_OK;
    nn_net *net = NULL;
    json_t *in = json_object_get(h, "input"), *nodes = json_object_get(h, "nodes"), *meta = json_object_get(h, "meta");
    json_t *bb = json_object_get(h, "backbone"), *fr = json_object_get(h, "frozen");
    int first = 0;
    if (!json_is_array(in) || json_array_size(in) != 3 || !json_is_array(nodes) || !json_is_integer(fr)) {
        rc = refuse(err, "header lacks input, nodes or frozen");
        goto done;
    }
    int dims[3];
    for (int i = 0; i < 3; i++) {
        json_t *d = json_array_get(in, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 1 || json_integer_value(d) > 4096) {
            rc = refuse(err, "bad input shape");
            goto done;
        }
        dims[i] = (int)json_integer_value(d);
    }
    if (bb) {
        json_t *file = json_object_get(bb, "file"), *sha = json_object_get(bb, "sha256"),
               *k = json_object_get(bb, "nodes");
        const char *fn = json_string_value(file);
        if (!fn || !json_is_string(sha) || strlen(json_string_value(sha)) != 64 || !json_is_integer(k) ||
            strstr(fn, "..") || fn[0] == '/' || fn[0] == '.' || json_integer_value(k) < 1 ||
            json_integer_value(k) > (json_int_t)json_array_size(nodes)) {
            rc = refuse(err, "malformed backbone reference");
            goto done;
        }
        first = (int)json_integer_value(k);
        if (!backbone_dir) {
            rc = core_fail(err, CORE_ERR_NOT_FOUND, "backbone", "the model needs the backbone %s; no directory given",
                           fn);
            goto done;
        }
        /* backbone_dir is a colon-separated list: the first that has it. */
        char path[4096], *bytes = NULL;
        size_t len;
        bool found = false;
        for (const char *p = backbone_dir; *p && !found;) {
            size_t l = strcspn(p, ":");
            snprintf(path, sizeof path, "%.*s/%s", (int)l, p, fn);
            found = core_read_file(path, &bytes, &len, NULL) == CORE_OK;
            p += l + (p[l] == ':');
        }
        if (!found) {
            rc = core_fail(err, CORE_ERR_NOT_FOUND, "backbone", "the model's backbone %s was not found in %s", fn,
                           backbone_dir);
            goto done;
        }
        uint8_t got[32];
        char gh[65];
        cs_crypto_sha256(got, bytes, len);
        cs_crypto_hex(got, 32, gh);
        if (strcmp(gh, json_string_value(sha)) != 0) {
            free(bytes);
            rc = refuse(err, "the backbone file's SHA-256 differs from the one the model was trained on");
            goto done;
        }
        /* A TF.js model (nsfwjs: model.min.js, its weights in shard files
         * beside it, pinned by package-lock's integrity hash) or TFLite. */
        size_t fl = strlen(fn);
        if ((fl > 3 && !strcmp(fn + fl - 3, ".js")) || (fl > 5 && !strcmp(fn + fl - 5, ".json"))) {
            nn_tfjs_info info;
            rc = nn_tfjs_read(path, &net, &info, err);
        } else {
            nn_tflite_info info;
            rc = nn_tflite_read((uint8_t *)bytes, len, &net, &info, err);
        }
        free(bytes);
        if (rc) goto done;
        nn_shape s = nn_net_shape(net, NN_INPUT);
        if (s.c != dims[0] || s.h != dims[1] || s.w != dims[2] || nn_net_count(net) < first) {
            rc = refuse(err, "the backbone does not match the model");
            goto done;
        }
        nn_net_truncate(net, first);
    } else {
        net = nn_net_new(dims[0], dims[1], dims[2]);
        if (!net) {
            rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory loading the model");
            goto done;
        }
    }
    for (size_t i = 0; i < json_array_size(nodes); i++) {
        nn_node d;
        if (!node_from_json(json_array_get(nodes, i), net, &d)) {
            /* For backbone nodes the producer indices must still resolve
             * against what was built so far. */
            rc = refuse(err, "a node description is malformed");
            goto done;
        }
        if ((int)i < first) {
            if (!same_node(&d, nn_net_node(net, (int)i))) {
                rc = refuse(err, "the backbone's layers differ from the ones the model was trained on");
                goto done;
            }
        } else if (nn_net_add(net, &d) != (int)i) {
            rc = refuse(err, "a layer does not fit its input");
            goto done;
        }
    }
    if (!meta_ok(meta, net)) {
        rc = refuse(err, "metadata lacks one class name per output");
        goto done;
    }
    size_t at = 16 + hl + (4 - (16 + hl) % 4) % 4, end = n - 32;
    if (at > end) {
        rc = refuse(err, "truncated");
        goto done;
    }
    for (int i = first; i < nn_net_count(net); i++)
        for (int k = 0; k < 4; k++) {
            size_t cnt;
            float *t = nn_net_tensor(net, i, k, &cnt);
            if (!t) continue;
            if ((end - at) / 4 < cnt) {
                rc = refuse(err, "weights are truncated");
                goto done;
            }
            for (size_t j = 0; j < cnt; j++, at += 4) {
                t[j] = core_get_lef32(b + at);
                if (!isfinite(t[j])) {
                    rc = refuse(err, "weights contain NaN or infinity");
                    goto done;
                }
            }
        }
    if (at != end) {
        rc = refuse(err, "unexpected bytes after the weights");
        goto done;
    }
    json_int_t frz = json_integer_value(fr);
    if (frz < 0 || frz > nn_net_count(net)) {
        rc = refuse(err, "frozen boundary out of range");
        goto done;
    }
    nn_net_set_frozen(net, (int)frz);
    *meta_out = core_json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    if (!*meta_out) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory loading the model");
done:
    json_decref(h);
    if (rc) {
        nn_net_free(net);
        free(*meta_out);
        *meta_out = NULL;
        return rc;
    }
    *out = net;
    return CORE_OK;
}

core_status nn_model_load(const char *path, const char *backbone_dir, nn_net **net, char **meta, core_error *err) {
    char *bytes;
    size_t len;
    *net = NULL;
    *meta = NULL;
    if (core_read_file(path, &bytes, &len, NULL) != CORE_OK)
        return core_fail(err, CORE_ERR_NOT_FOUND, "model", "the model file %s cannot be read", path);
    core_status rc = nn_model_parse((uint8_t *)bytes, len, backbone_dir, net, meta, err);
    free(bytes);
    return rc;
}
