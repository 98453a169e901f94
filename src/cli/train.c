/* caresync train / caresync eval — build the screening model from the
 * photographs in ../shared/data and report how well it does on held-out
 * images and, with --protocol source-out, on data sets it never saw. The
 * bundled model (models/screening.csm) is made by
 *   caresync eval --protocol source-out --group-balance --hidden 128 --power-norm 0.5 --outside models/outside.json
 *   caresync train --frozen --group-balance --hidden 128 --power-norm 0.5 --epochs 12 --seed 20261125 \
 *       --outside models/outside.json
 * (docs/MODEL.md records the commands, the seed and the figures). */
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
            "  --models DIRS   where backbones are, colon-separated (default ../shared/models:node_modules)\n"
            "  --model FILE    the model file (default models/screening.csm)\n"
            "  --cache DIR     where image features are cached (default var/cache)\n"
            "  --threads N     worker threads (default 2)\n"
            "  --report FILE   also write the evaluation report (markdown) here\n"
            "  --outside FILE  eval --protocol source-out writes, train embeds, how often each\n"
            "                  condition's confident answers were right on unseen sources\n"
            "  --fine-weight W weight of the per-data-set class loss beside the conditions' (default 1)\n"
            "  --group-balance balance the condition loss over (data set, condition) pairs (default)\n"
            "  --class-balance balance it over conditions only\n"
            "  --hidden N      units of the head's hidden layer (default 128)\n"
            "  --power-norm A  power-normalise the head's input features: sign(x)|x|^A, then\n"
            "                  scaled to norm √dim (0 < A ≤ 1; 0 = off; default 0.5)\n"
            "  --not-skin DIR  photos that are not skin (DIR/index.csv; default var/not-skin,\n"
            "                  gathered by scripts/not-skin-photos.sh): reported, never tuned on\n",
            cmd);
    if (!strcmp(cmd, "eval"))
        fprintf(f, "  --protocol P    held-out (default): the model file on each set's test split;\n"
                   "                  source-out: train a head per left-out set on the others and test\n"
                   "                  on the left-out set's shared conditions (no model file needed)\n"
                   "  --backbones L   source-out: comma-separated TFLite files in --models, \"a+b\"\n"
                   "                  concatenates features (default mobilenet_v2_1.0_224_quant.tflite)\n"
                   "  --augment L     source-out: levers, one augmented view each: geometry,colour,\n"
                   "                  blur,noise,jpeg,resolution or all (default none)\n"
                   "  --keep-watermark  source-out: do not crop DermNet's watermark away\n"
                   "  --epochs N      source-out: head epochs (default 12)\n"
                   "  (the head recipe options of train apply to the protocol's heads too)\n");
    if (!strcmp(cmd, "train"))
        fprintf(f, "  --seed N        random seed (default 20261125)\n"
                   "  --epochs N      passes over the training images (default 12)\n"
                   "  --views N       1 = as is, 2 = also mirrored, 3-8 = also augmented copies\n"
                   "                  (random crop, rotation, flips, colour; default 2)\n"
                   "  --frozen        train the head only, on the pooled features (the default)\n"
                   "  --finetune      also train copies of the backbone's last block and its 1×1\n"
                   "                  convolution (on cached activations of the block's input)\n"
                   "  --backbone F    TFLite backbone in --models (default mobilenet_v2_1.0_224_quant.tflite)\n"
                   "  --augment L     levers for views 3-8: geometry,colour,blur,noise,jpeg,resolution\n"
                   "                  or all (default geometry,colour)\n"
                   "  --keep-watermark  do not crop DermNet's watermark away\n"
                   "  --adjust        per-condition logit offsets fitted on the held-back tenth\n"
                   "                  for balanced accuracy (off by default; see docs/MODEL.md)\n"
                   "  --examples DIR  also train on the clinician-labelled examples kept in the\n"
                   "                  service's data directory DIR (DIR/examples; a fifth source,\n"
                   "                  clinician_labelled)\n");
}

/* "geometry,colour,..." → SCREENING_AUG_* bits; nonzero when a name is unknown. */
static int parse_levers(const char *list, unsigned *out) {
    static const struct {
        const char *name;
        unsigned bit;
    } levers[] = {{"geometry", SCREENING_AUG_GEOMETRY}, {"colour", SCREENING_AUG_COLOUR},
                  {"blur", SCREENING_AUG_BLUR},         {"noise", SCREENING_AUG_NOISE},
                  {"jpeg", SCREENING_AUG_JPEG},         {"resolution", SCREENING_AUG_RESOLUTION},
                  {"all", SCREENING_AUG_ALL},           {"none", 0}};
    *out = 0;
    for (const char *p = list; *p;) {
        size_t l = strcspn(p, ","), i;
        for (i = 0; i < sizeof levers / sizeof levers[0]; i++)
            if (strlen(levers[i].name) == l && !strncmp(levers[i].name, p, l)) break;
        if (i == sizeof levers / sizeof levers[0]) return 1;
        *out |= levers[i].bit;
        p += l + (p[l] == ',');
    }
    return 0;
}

/* What `caresync train` and `caresync eval` were asked. */
typedef struct {
    const char *data, *models, *model, *cache, *report_path, *examples_data;
    screening_train_opts o;
    screening_protocol_opts po;
    bool source_out, epochs_set;
} run_args;

/* The command line into a; -1 to go on, else the exit code (usage printed). */
static int parse_args(int argc, char **argv, run_args *a) {
    static const struct option opts[] = {{"data", required_argument, NULL, 'd'},
                                         {"models", required_argument, NULL, 'm'},
                                         {"model", required_argument, NULL, 'o'},
                                         {"cache", required_argument, NULL, 'c'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"report", required_argument, NULL, 'r'},
                                         {"seed", required_argument, NULL, 's'},
                                         {"epochs", required_argument, NULL, 'e'},
                                         {"views", required_argument, NULL, 'v'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"adjust", no_argument, NULL, 'A'},
                                         {"frozen", no_argument, NULL, 'F'},
                                         {"protocol", required_argument, NULL, 'P'},
                                         {"backbones", required_argument, NULL, 'B'},
                                         {"augment", required_argument, NULL, 'G'},
                                         {"keep-watermark", no_argument, NULL, 'W'},
                                         {"backbone", required_argument, NULL, 'K'},
                                         {"not-skin", required_argument, NULL, 'N'},
                                         {"outside", required_argument, NULL, 'O'},
                                         {"fine-weight", required_argument, NULL, 'f'},
                                         {"group-balance", no_argument, NULL, 'g'},
                                         {"hidden", required_argument, NULL, 'H'},
                                         {"finetune", no_argument, NULL, 'T'},
                                         {"class-balance", no_argument, NULL, 'C'},
                                         {"examples", required_argument, NULL, 'X'},
                                         {"power-norm", required_argument, NULL, 'p'},
                                         {0}};
    *a = (run_args){.data = "../shared/data",
                    .models = "../shared/models:node_modules",
                    .model = "models/screening.csm",
                    .cache = "var/cache"};
    screening_train_defaults(&a->o);
    screening_protocol_defaults(&a->po);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': a->data = optarg; break;
        case 'm': a->models = optarg; break;
        case 'o': a->model = optarg; break;
        case 'c': a->cache = optarg; break;
        case 'r': a->report_path = optarg; break;
        case 't': a->o.threads = atoi(optarg); break;
        case 's': a->o.seed = strtoull(optarg, NULL, 10); break;
        case 'e': a->o.epochs = atoi(optarg), a->epochs_set = true; break;
        case 'P':
            if (!strcmp(optarg, "source-out"))
                a->source_out = true;
            else if (strcmp(optarg, "held-out"))
                return usage(stderr, argv[0]), 2;
            break;
        case 'B': a->po.backbones = optarg; break;
        case 'G':
            if (parse_levers(optarg, &a->po.augment)) return usage(stderr, argv[0]), 2;
            a->o.augment = a->po.augment;
            break;
        case 'W': a->po.crop_watermark = a->o.crop_watermark = false; break;
        case 'K': a->o.backbone = optarg; break;
        case 'N': a->o.not_skin_dir = a->po.not_skin_dir = optarg; break;
        case 'O': a->o.outside_path = a->po.outside_path = optarg; break;
        case 'f': a->o.fine_weight = a->po.train.fine_weight = strtof(optarg, NULL); break;
        case 'g': a->o.group_balance = a->po.train.group_balance = true; break;
        case 'H': a->o.hidden = a->po.train.hidden = atoi(optarg); break;
        case 'T': a->o.finetune = true; break;
        case 'C': a->o.group_balance = a->po.train.group_balance = false; break;
        case 'X': a->examples_data = optarg; break;
        case 'p': a->o.power_norm = a->po.train.power_norm = strtof(optarg, NULL); break;
        case 'v': a->o.views = atoi(optarg); break;
        case 'A': a->o.adjust = true; break;
        case 'F': a->o.finetune = false; break;
        case 'h': usage(stdout, argv[0]); return 0;
        default: usage(stderr, argv[0]); return 2;
        }
    }
    const screening_train_opts *o = &a->o;
    if (optind != argc || !(o->fine_weight >= 0 && o->fine_weight <= 10) || o->hidden < 1 || o->hidden > 4096 ||
        !(o->power_norm >= 0 && o->power_norm <= 1) || o->threads < 1 || o->threads > 16 || o->epochs < 1 ||
        o->views < 1 || o->views > 8) {
        usage(stderr, argv[0]);
        return 2;
    }
    return -1;
}

static int run(int argc, char **argv, bool train) {
    run_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    screening_train_opts o = a.o;
    screening_protocol_opts po = a.po;
    core_error err = {0};
    char *report = NULL, examples[4200];
    if (a.examples_data) {
        if (!train) return usage(stderr, argv[0]), 2;
        snprintf(examples, sizeof examples, "%s/examples", a.examples_data);
        o.examples_dir = examples;
    }
    if (!o.not_skin_dir) o.not_skin_dir = po.not_skin_dir = "var/not-skin";
    po.train.threads = o.threads;
    po.train.views = o.views > 2 ? 2 : o.views;
    po.train.seed = o.seed;
    if (a.epochs_set) po.train.epochs = o.epochs;
    if (cs_crypto_init(&err) || core_mkdirs(a.cache, &err) ||
        (train ? screening_train(a.data, a.models, a.model, &o, a.cache, &report, &err)
         : a.source_out
             ? screening_source_out(a.data, a.models, a.cache, &po, &report, &err)
             : screening_eval(a.model, a.data, a.models, a.cache, o.threads, o.not_skin_dir, &report, &err))) {
        fprintf(stderr, "caresync %s: %s\n", argv[0], err.message);
        return 1;
    }
    fputs(report, stdout);
    if (a.report_path) {
        FILE *f = fopen(a.report_path, "w");
        if (!f || fputs(report, f) < 0 || fclose(f) != 0) {
            fprintf(stderr, "caresync %s: cannot write %s\n", argv[0], a.report_path);
            free(report);
            return 1;
        }
    }
    if (train) fprintf(stderr, "caresync train: wrote %s\n", a.model);
    free(report);
    return 0;
}

int cli_train(int argc, char **argv) { return run(argc, argv, true); }
int cli_eval(int argc, char **argv) { return run(argc, argv, false); }
