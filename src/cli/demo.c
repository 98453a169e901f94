/* caresync demo-data — fill an instance with a synthetic year of
 * surveillance contributions (marked synthetic everywhere they appear), so
 * a newcomer sees a living dashboard. Refuses to add a second year on top
 * of data that is already there unless --force. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "crypto/crypto.h"
#include "screening/screening.h"
#include "surveil/surveil.h"

static void usage(FILE *f) {
    fprintf(f, "usage: caresync demo-data [--data-dir DIR] [--weeks N] [--seed N] [--force | --if-empty]\n"
               "\n"
               "Adds N weeks (default 52, ending this week) of synthetic contributions for the 50 US\n"
               "states and DC, every skin condition, with two injected outbreaks, to DIR/caresync.db\n"
               "(default ./var). The data is flagged synthetic in the database, in every release and\n"
               "alert, and on the dashboard. The service may be running. Data already there: exit 2,\n"
               "or add more with --force, or do nothing (exit 0) with --if-empty (what make run uses).\n"
               "To see the dashboard, log in as an analyst (caresync admin create-user --role analyst).\n");
}

int cli_demo(int argc, char **argv) {
    static const struct option opts[] = {{"data-dir", required_argument, 0, 'd'},
                                         {"weeks", required_argument, 0, 'w'},
                                         {"seed", required_argument, 0, 's'},
                                         {"force", no_argument, 0, 'f'},
                                         {"if-empty", no_argument, 0, 'e'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *data_dir = "var";
    long weeks = 52, seed = 20261128;
    bool force = false, if_empty = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'd': data_dir = optarg; break;
        case 'w':
            weeks = strtol(optarg, &end, 10);
            if (*end || weeks < 8 || weeks > 520) {
                fprintf(stderr, "caresync demo-data: --weeks must be from 8 to 520\n");
                return 2;
            }
            break;
        case 's':
            seed = strtol(optarg, &end, 10);
            if (*end || seed < 1) {
                fprintf(stderr, "caresync demo-data: --seed must be a positive number\n");
                return 2;
            }
            break;
        case 'f': force = true; break;
        case 'e': if_empty = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    core_error err = {0};
    store *st = NULL;
    char dbpath[4096];
    snprintf(dbpath, sizeof dbpath, "%s/caresync.db", data_dir);
    int status = 1;
    cli_data_dir_warn(data_dir);
    if (cs_crypto_init(&err) || core_mkdirs(data_dir, &err) || store_open(dbpath, 1, &st, &err)) goto out;
    int first, last;
    core_status rc = surveil_extent(st, INT_MAX, &first, &last, &err);
    if (rc == CORE_OK && if_empty) {
        status = 0;
        goto out;
    }
    if (rc == CORE_OK && !force) {
        fprintf(stderr, "caresync demo-data: %s already holds surveillance data; --force adds more\n", dbpath);
        status = 2;
        goto out;
    }
    if (rc && rc != CORE_ERR_NOT_FOUND) goto out;
    const char *codes[64];
    size_t n = 0;
    for (int i = 0; i < screening_condition_count() && n < 64; i++) codes[n++] = screening_condition_at(i)->code;
    surveil_demo_summary sum;
    /* The synthetic year ends with the latest week a server on the default
     * settings releases (surveil.h, "sealed weeks"), so the dashboard shows
     * all of it, the injected outbreaks included. */
    core_config defaults;
    core_config_defaults(&defaults);
    int now = surveil_sealed_through(core_now(), defaults.surveil_seal_delay);
    if (surveil_demo_fill(st, codes, n, now, (int)weeks, (unsigned)seed, &sum, &err)) goto out;
    char a[9], b[9];
    surveil_week_format(now - (int)weeks + 1, a);
    surveil_week_format(now, b);
    printf("demo data (SYNTHETIC): %lld contributions, %d US regions x %zu conditions, %s to %s\n",
           (long long)sum.contributions, sum.regions, n, a, b);
    printf("injected outbreaks: %s; %s\n", sum.outbreaks[0], sum.outbreaks[1]);
    printf("the dashboard (/surveillance) is for analysts: caresync admin create-user --data-dir %s "
           "--username analyst --role analyst\n",
           data_dir);
    status = 0;
out:
    if (status == 1) fprintf(stderr, "caresync demo-data: %s\n", err.message[0] ? err.message : "failed");
    store_close(st);
    return status;
}
