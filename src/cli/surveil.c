/* caresync surveil — outbreak detection on an epidemiologist's own data:
 * `caresync surveil detect --method farrington FILE.csv` runs any of the
 * detectors on a CSV of weekly counts and prints, per series and week, the
 * count, the method's upper bound and whether it alarms, so every number
 * CareSync shows can be checked by hand or against R `surveillance`. */
#include <csv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "surveil/surveil.h"

static void usage(FILE *f) {
    fprintf(f, "usage: caresync surveil detect --method METHOD [--PARAM VALUE]... FILE.csv\n"
               "\n"
               "FILE.csv ('-' reads stdin): RFC 4180 CSV (quotes, CRLF, a UTF-8 BOM; R's\n"
               "write.csv output as is), a header row, then one row per week. A first column\n"
               "named week/date/time/t/period/label (or holding labels) names the weeks; R's\n"
               "row names (first header \"\") are dropped; every other column is one series of\n"
               "counts (no NA: every week needs a count).\n"
               "\n"
               "METHOD: c1, c2, c3 (EARS), cusum, farrington (improved Farrington, Noufaily 2013).\n"
               "Results equal R surveillance 1.20 (earsC, cusum, farringtonFlexible) with the\n"
               "same parameters; each PARAM below names R's control argument it stands for.\n"
               "\n"
               "all:        --range-start WEEK (range[1], 1-based)  --freq 52\n"
               "EARS:       --baseline 7  --min-sigma 0 (minSigma)  --alpha 0.001 (C3: 0.025)\n"
               "CUSUM:      --k 1.04  --h 2.26  --m MEAN|glm  --trans standard|rossi|anscombe|\n"
               "            anscombe2nd|pearsonNegBin|none  --cusum-alpha 0.1 (alpha)\n"
               "            (default range-start: week freq+1, the first year estimates m)\n"
               "Farrington: --b 5  --w 3  --alpha 0.05  --reweight true  --weights-threshold 2.58\n"
               "            --trend true  --p-trend 0.05 (pThresholdTrend)  --limit54 5,4\n"
               "            --powertrans 2/3|1/2|none  --no-periods 1 (noPeriods)\n"
               "            --past-weeks W (pastWeeksNotIncluded)  --threshold delta|nbPlugin|muan\n"
               "\n"
               "options:\n"
               "  --alarms-only      print only the weeks that alarm\n"
               "\n"
               "Output (CSV): series,week,observed,upperbound,alarm,statistic,expected\n"
               "(NA where the method gives none). Exit 0, or 1 on bad input with the reason.\n");
}

/* A name or label as one CSV cell: quoted (RFC 4180, by libcsv) only when
 * it holds a comma or a quote, so plain names print as before. */
static void print_cell(const char *s) {
    if (strpbrk(s, ",\""))
        csv_fwrite(stdout, s, strlen(s));
    else
        fputs(s, stdout);
}

static void print_num(double v) {
    if (v != v)
        fputs("NA", stdout);
    else
        printf("%.10g", v);
}

/* What the command line asks for. */
typedef struct {
    surveil_params p;
    const char *path;
    int alarms_only;
} detect_args;

/* Parse the arguments into a. Returns -1 to go on, else the exit status
 * (0 after --help, 2 on a usage error, with the reason printed). */
static int parse_detect_args(int argc, char **argv, detect_args *a) {
    int method_set = 0;
    surveil_method method = SURVEIL_C1;
    core_error err = {0};
    /* The method decides the defaults, so find it before the parameters. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--method") == 0 && i + 1 < argc) {
            if (surveil_method_parse(argv[i + 1], &method, &err) != CORE_OK) {
                fprintf(stderr, "caresync surveil detect: %s\n", err.message);
                return 2;
            }
            method_set = 1;
        }
    }
    if (!method_set) {
        fprintf(stderr, "caresync surveil detect: --method is required\n\n");
        usage(stderr);
        return 2;
    }
    surveil_params_init(&a->p, method);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(arg, "--alarms-only") == 0) {
            a->alarms_only = 1;
        } else if (strcmp(arg, "--method") == 0) {
            i++;
        } else if (strncmp(arg, "--", 2) == 0 && arg[2]) {
            if (i + 1 >= argc) {
                fprintf(stderr, "caresync surveil detect: %s needs a value\n", arg);
                return 2;
            }
            if (surveil_params_set(&a->p, arg + 2, argv[++i], &err) != CORE_OK) {
                fprintf(stderr, "caresync surveil detect: %s\n", err.message);
                return 2;
            }
        } else if (!a->path) {
            a->path = arg;
        } else {
            fprintf(stderr, "caresync surveil detect: one input file, please ('%s' is a second)\n", arg);
            return 2;
        }
    }
    if (!a->path) {
        fprintf(stderr, "caresync surveil detect: no input file ('-' reads stdin)\n");
        return 2;
    }
    return -1;
}

/* One series' evaluated weeks as CSV rows. */
static void print_series(const surveil_table *t, size_t j, const double *x, size_t first, size_t n,
                         const surveil_point *out, int alarms_only) {
    for (size_t i = first; i < n; i++) {
        const surveil_point *o = &out[i - first];
        if (alarms_only && o->alarm != 1) continue;
        const char *label = surveil_table_label(t, i);
        print_cell(surveil_table_name(t, j));
        putchar(',');
        if (label)
            print_cell(label);
        else
            printf("%zu", i + 1);
        putchar(',');
        print_num(x[i]);
        putchar(',');
        print_num(o->upperbound);
        printf(",%s,", o->alarm < 0 ? "NA" : o->alarm ? "1" : "0");
        print_num(o->stat);
        putchar(',');
        print_num(o->expected);
        putchar('\n');
    }
}

/* Run the method over every series of t and print the results. */
static int run_detect(const detect_args *a, const surveil_table *t) {
    core_error err = {0};
    size_t n = surveil_table_weeks(t);
    surveil_point *out = malloc(n * sizeof *out);
    if (!out) {
        fprintf(stderr, "caresync surveil detect: out of memory\n");
        return 1;
    }
    int rc = 0;
    printf("series,week,observed,upperbound,alarm,statistic,expected\n");
    for (size_t j = 0; j < surveil_table_series(t) && rc == 0; j++) {
        const double *x = surveil_table_counts(t, j);
        size_t first;
        if (surveil_detect(&a->p, x, n, &first, out, &err) != CORE_OK) {
            fprintf(stderr, "caresync surveil detect: series '%s': %s\n", surveil_table_name(t, j), err.message);
            rc = 1;
            break;
        }
        print_series(t, j, x, first, n, out, a->alarms_only);
    }
    free(out);
    return rc;
}

static int detect(int argc, char **argv) {
    detect_args a = {0};
    int status = parse_detect_args(argc, argv, &a);
    if (status >= 0) return status;
    core_error err = {0};
    char *text = NULL;
    size_t len = 0;
    core_status st = strcmp(a.path, "-") == 0 ? core_read_stream(stdin, "stdin", &text, &len, &err)
                                              : core_read_file(a.path, &text, &len, &err);
    if (st != CORE_OK) {
        fprintf(stderr, "caresync surveil detect: %s\n", err.message);
        return 1;
    }
    surveil_table *t = NULL;
    st = surveil_table_parse_csv(text, len, &t, &err);
    free(text);
    if (st != CORE_OK) {
        fprintf(stderr, "caresync surveil detect: %s: %s\n", a.path, err.message);
        return 1;
    }
    status = run_detect(&a, t);
    surveil_table_free(t);
    return status;
}

int cli_surveil(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "detect") == 0) return detect(argc - 1, argv + 1);
    fprintf(stderr, "caresync surveil: unknown task '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
