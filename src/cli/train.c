/* caresync train / caresync eval — build the screening model from the
 * photographs in ../shared/data and report how well it does on held-out
 * images. The bundled model (models/screening.csm) is made by
 *   caresync train --seed 20261125
 * (docs/MODEL.md records the command, the seed and the figures). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "crypto/crypto.h"
#include "screening/screening.h"

static void usage(FILE *f, const char *cmd) {
    fprintf(f,
            "usage: caresync %s [options]\n"
            "\n"
            "  --data DIR      data sets (default ../shared/data)\n"
            "  --models DIR    pretrained backbone (default ../shared/models)\n"
            "  --model FILE    the model file (default models/screening.csm)\n"
            "  --cache DIR     where image features are cached (default var/cache)\n"
            "  --threads N     worker threads (default 2)\n"
            "  --report FILE   also write the evaluation report (markdown) here\n",
            cmd);
    if (!strcmp(cmd, "train"))
        fprintf(f, "  --seed N        random seed (default 20261125)\n"
                   "  --epochs N      passes over the training images (default 15)\n"
                   "  --views N       1 = as is, 2 = also mirrored, 3-8 = also augmented copies\n"
                   "                  (random crop, rotation, flips, colour; default 2)\n"
                   "  --frozen        train the head only, on the pooled features; by default the\n"
                   "                  backbone's last block and its 1×1 convolution to 1280 are\n"
                   "                  trained too (on cached activations of the block's input)\n"
                   "  --adjust        per-condition logit offsets fitted on the held-back tenth\n"
                   "                  for balanced accuracy (off by default; see docs/MODEL.md)\n");
}

static int run(int argc, char **argv, bool train) {
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'},   {"models", required_argument, NULL, 'm'},
        {"model", required_argument, NULL, 'o'},  {"cache", required_argument, NULL, 'c'},
        {"threads", required_argument, NULL, 't'}, {"report", required_argument, NULL, 'r'},
        {"seed", required_argument, NULL, 's'},   {"epochs", required_argument, NULL, 'e'},
        {"views", required_argument, NULL, 'v'},  {"help", no_argument, NULL, 'h'},
        {"adjust", no_argument, NULL, 'A'},       {"frozen", no_argument, NULL, 'F'},
        {0}};
    const char *data = "../shared/data", *models = "../shared/models", *model = "models/screening.csm",
               *cache = "var/cache", *report_path = NULL;
    screening_train_opts o;
    screening_train_defaults(&o);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': data = optarg; break;
        case 'm': models = optarg; break;
        case 'o': model = optarg; break;
        case 'c': cache = optarg; break;
        case 'r': report_path = optarg; break;
        case 't': o.threads = atoi(optarg); break;
        case 's': o.seed = strtoull(optarg, NULL, 10); break;
        case 'e': o.epochs = atoi(optarg); break;
        case 'v': o.views = atoi(optarg); break;
        case 'A': o.adjust = true; break;
        case 'F': o.finetune = false; break;
        case 'h': usage(stdout, argv[0]); return 0;
        default: usage(stderr, argv[0]); return 2;
        }
    }
    if (optind != argc || o.threads < 1 || o.threads > 16 || o.epochs < 1 || o.views < 1 || o.views > 8) {
        usage(stderr, argv[0]);
        return 2;
    }
    core_error err = {0};
    char *report = NULL;
    if (cs_crypto_init(&err) || core_mkdirs(cache, &err) ||
        (train ? screening_train(data, models, model, &o, cache, &report, &err)
               : screening_eval(model, data, models, cache, o.threads, &report, &err))) {
        fprintf(stderr, "caresync %s: %s\n", argv[0], err.message);
        return 1;
    }
    fputs(report, stdout);
    if (report_path) {
        FILE *f = fopen(report_path, "w");
        if (!f || fputs(report, f) < 0 || fclose(f) != 0) {
            fprintf(stderr, "caresync %s: cannot write %s\n", argv[0], report_path);
            free(report);
            return 1;
        }
    }
    if (train) fprintf(stderr, "caresync train: wrote %s\n", model);
    free(report);
    return 0;
}

int cli_train(int argc, char **argv) { return run(argc, argv, true); }
int cli_eval(int argc, char **argv) { return run(argc, argv, false); }
