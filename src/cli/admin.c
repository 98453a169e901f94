/* caresync admin — operator tasks on the database, with the service either
 * running or stopped (SQLite WAL allows both). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "accounts/accounts.h"
#include "cli/cli.h"
#include "crypto/crypto.h"
#include "review/review.h"
#include "store/store.h"

static void usage(FILE *f) {
    fprintf(f, "usage: caresync admin <task> [options]\n"
               "\n"
               "tasks:\n"
               "  create-user --username NAME --role ROLE   create an account; the password is read\n"
               "               from standard input (one line), the recovery code is printed\n"
               "               ROLE is person, clinician, analyst or admin\n"
               "               --org KEY: a clinician's or analyst's organisation (64 hex digits, registered\n"
               "               on the ledger: POST /api/admin/orgs)\n"
               "  list-users                                 print username and role of every account\n"
               "\n"
               "options:\n"
               "  --data-dir DIR   database directory (default ./var)\n");
}

/* One line from stdin; no echo when it is a terminal. */
static bool read_password(char *buf, size_t n) {
    bool tty = isatty(STDIN_FILENO);
    struct termios old, quiet;
    if (tty) {
        fprintf(stderr, "password: ");
        tcgetattr(STDIN_FILENO, &old);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    }
    bool ok = fgets(buf, (int)n, stdin) != NULL;
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSANOW, &old);
        fputc('\n', stderr);
    }
    if (ok) buf[strcspn(buf, "\r\n")] = '\0';
    return ok;
}

static void print_user(void *ud, const char *username, accounts_role role, int64_t created_at) {
    (void)ud;
    char t[32];
    core_format_time(created_at, t);
    printf("%-32s %-10s %s\n", username, accounts_role_name(role), t);
}

int cli_admin(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *task = argv[1];
    const char *data_dir = "var", *username = NULL, *role_name = NULL, *org_hex = NULL;
    static const struct option opts[] = {
        {"data-dir", required_argument, 0, 'd'}, {"username", required_argument, 0, 'u'},
        {"role", required_argument, 0, 'r'},     {"org", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd': data_dir = optarg; break;
        case 'u': username = optarg; break;
        case 'r': role_name = optarg; break;
        case 'o': org_hex = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    bool create = strcmp(task, "create-user") == 0, list = strcmp(task, "list-users") == 0;
    if (!create && !list) {
        fprintf(stderr, "caresync admin: unknown task '%s'\n", task);
        usage(stderr);
        return 2;
    }
    accounts_role role = ACCOUNTS_PERSON;
    if (create && (!username || !role_name || !accounts_role_parse(role_name, &role))) {
        fprintf(stderr,
                "caresync admin create-user: needs --username and --role (person, clinician, analyst, admin)\n");
        return 2;
    }
    uint8_t org[ACCOUNTS_ORG_KEY_BYTES];
    if (org_hex && (!create || !accounts_role_has_org(role))) {
        fprintf(stderr, "caresync admin: --org is for create-user --role clinician or analyst\n");
        return 2;
    }
    if (org_hex && (strlen(org_hex) != 64 || !cs_crypto_unhex(org_hex, org, sizeof org))) {
        fprintf(stderr, "caresync admin create-user: --org must be the organisation's key (64 hex digits)\n");
        return 2;
    }

    core_error err = {0};
    store *st = NULL;
    accounts *acc = NULL;
    char dbpath[4096], password[300] = "";
    snprintf(dbpath, sizeof dbpath, "%s/caresync.db", data_dir);
    int status = 1;
    cli_data_dir_warn(data_dir);
    if (cs_crypto_init(&err) || core_mkdirs(data_dir, &err) || store_open(dbpath, 1, &st, &err) ||
        accounts_open(st, NULL, &acc, &err))
        goto out;
    if (list) {
        if (accounts_list(acc, print_user, NULL, &err)) goto out;
        status = 0;
        goto out;
    }
    if (!read_password(password, sizeof password)) {
        core_fail(&err, CORE_ERR_INVALID, "password", "no password on standard input");
        goto out;
    }
    char recovery[CS_CRYPTO_RECOVERY_TEXT], org_name[REVIEW_ORG_NAME_MAX + 1] = "";
    if (org_hex) {
        /* The ledger is read, not opened: the service may be running and is
         * its only writer. */
        char ledger_path[4200];
        snprintf(ledger_path, sizeof ledger_path, "%s/ledger.db", data_dir);
        if (ledger_org_in_file(ledger_path, org, org_name, &err) ||
            accounts_create_in_org(acc, username, password, role, org, recovery, &err))
            goto out;
    } else if (accounts_create(acc, username, password, role, recovery, NULL, NULL, &err)) {
        goto out;
    }
    printf("created %s account '%s'%s%s\nrecovery code (shown once, keep it safe): %s\n", accounts_role_name(role),
           username, org_hex ? " of organisation " : "", org_name, recovery);
    cs_crypto_wipe(recovery, sizeof recovery);
    status = 0;
out:
    cs_crypto_wipe(password, sizeof password);
    if (status) fprintf(stderr, "caresync admin %s: %s\n", task, err.message[0] ? err.message : "failed");
    accounts_close(acc);
    store_close(st);
    return status;
}
