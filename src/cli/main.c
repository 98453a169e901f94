/* caresync — entry point: dispatch to a subcommand. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/core.h"

static void usage(FILE *f) {
    fprintf(f, "usage: caresync <command> [options]\n"
               "\n"
               "commands:\n"
               "  serve    run the web service (default 127.0.0.1:8080, data in ./var)\n"
               "  admin    operator tasks: create-user, list-users\n"
               "  ledger   ledger tools: verify, proof, verify-proof, verify-consistency\n"
               "  keygen   create a node, admin or organisation key file\n"
               "  train    train the screening model on ../shared/data\n"
               "  eval     evaluate the screening model on held-out images\n"
               "  surveil  outbreak detection on a CSV of weekly counts (surveil detect)\n"
               "  demo-data  fill the instance with a synthetic year of surveillance data\n"
               "\n"
               "caresync <command> --help shows the options of a command.\n"
               "caresync --version prints the version.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("caresync %s\n", core_version());
        return 0;
    }
    /* jansson's allocators, installed before any thread can allocate
     * through jansson (core.h: every parse goes through core_json_loadb). */
    core_json_init();
    /* Every command that writes the data directory (databases, their WAL and
     * shared memory, keys, the lock) makes it private to the service's user:
     * directories 0700, files 0600. SQLite and libsodium create files with
     * 0644 & ~umask, so the umask is what decides, for files made by any
     * library; it is set here, before anything is opened. `train`, `eval`
     * and `surveil` write models, caches and reports meant to be shared. */
    static const char *const writers[] = {"serve", "admin", "keygen", "ledger", "demo-data"};
    for (size_t i = 0; i < sizeof writers / sizeof *writers; i++)
        if (strcmp(argv[1], writers[i]) == 0) umask(077);
    if (strcmp(argv[1], "serve") == 0) return cli_serve(argc - 1, argv + 1);
    if (strcmp(argv[1], "admin") == 0) return cli_admin(argc - 1, argv + 1);
    if (strcmp(argv[1], "ledger") == 0) return cli_ledger(argc - 1, argv + 1);
    if (strcmp(argv[1], "keygen") == 0) return cli_keygen(argc - 1, argv + 1);
    if (strcmp(argv[1], "train") == 0) return cli_train(argc - 1, argv + 1);
    if (strcmp(argv[1], "eval") == 0) return cli_eval(argc - 1, argv + 1);
    if (strcmp(argv[1], "surveil") == 0) return cli_surveil(argc - 1, argv + 1);
    if (strcmp(argv[1], "demo-data") == 0) return cli_demo(argc - 1, argv + 1);
    fprintf(stderr, "caresync: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
