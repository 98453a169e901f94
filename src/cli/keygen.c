/* caresync keygen — create an Ed25519 key file for a node, an admin or an
 * organisation, and print its public key. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "crypto/crypto.h"
#include "ledger/ledger.h"

static void usage(FILE *f) {
    fprintf(f, "usage: caresync keygen --out FILE\n"
               "\n"
               "Creates FILE (mode 0600; never overwrites) holding a new Ed25519 secret key and\n"
               "prints the public key in hex. Node, admin and organisation keys are made this way.\n");
}

int cli_keygen(int argc, char **argv) {
    static const struct option opts[] = {{"out", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'}, {0}};
    const char *out = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        if (c == 'o')
            out = optarg;
        else if (c == 'h') {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!out || optind != argc) {
        usage(stderr);
        return 2;
    }
    core_error err = {0};
    uint8_t pk[LEDGER_KEY];
    if (cs_crypto_init(&err) || ledger_key_generate(out, pk, &err)) {
        fprintf(stderr, "caresync keygen: %s\n", err.message);
        return 1;
    }
    char hex[2 * LEDGER_KEY + 1];
    cs_crypto_hex(pk, LEDGER_KEY, hex);
    printf("%s\n", hex);
    return 0;
}
