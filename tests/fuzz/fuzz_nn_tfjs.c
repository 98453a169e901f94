/* libFuzzer target: the TF.js model reader (nn_tfjs_parse): the relaxed
 * JavaScript-literal reader and bundle unwrapping, the manifest, layers and
 * graph topologies, weight decoding and every shape check behind them.
 *
 * Input: the model text, a NUL byte, then the weight bytes (all shards
 * concatenated), as nn_tfjs_parse takes them; without a NUL, all text and
 * no weights. Seeds (corpus_nn_tfjs) are the unit test's two small models
 * in each form. Whatever loads must also run when small. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t tl = nul ? (size_t)(nul - data) : size;
    const uint8_t *w = nul ? nul + 1 : data + size;
    size_t wl = size - tl - (nul ? 1 : 0);
    char *text = malloc(tl + 1);
    memcpy(text, data, tl);
    text[tl] = 0;
    nn_net *net = NULL;
    nn_tfjs_info info;
    core_error err = {0};
    core_status rc = nn_tfjs_parse(text, tl, w, wl, &net, &info, &err);
    if (rc == CORE_OK) {
        if (!net || info.output < 0 || info.output >= nn_net_count(net) || info.features >= nn_net_count(net)) abort();
    } else if (net || !err.message[0]) {
        abort(); /* a refusal leaves nothing behind and says why */
    }
    if (net) {
        nn_shape in = nn_net_shape(net, NN_INPUT);
        size_t acts = 0;
        for (int i = 0; i < nn_net_count(net); i++) acts += nn_count(nn_net_shape(net, i));
        if (nn_count(in) <= 4096 && nn_net_macs(net) < 2e6 && acts < ((size_t)1 << 22)) {
            float *x = calloc(nn_count(in), sizeof(float));
            nn_run *run = nn_run_new();
            if (!nn_run_forward(run, net, 1, x, false, NULL, 0)) abort();
            nn_run_free(run);
            free(x);
        }
    }
    nn_net_free(net);
    free(text);
    return 0;
}
