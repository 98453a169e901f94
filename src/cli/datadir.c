/* The data directory's permissions: what `serve`, `admin` and `demo-data`
 * say at start about a directory made by something else.
 *
 * caresync.db holds usernames, Argon2 verifiers and the link from an account
 * to its wallet key; ledger.db and keys/ the ledger's secrets. New files are
 * private because main() sets umask 077, but a directory made earlier (by an
 * older version, by hand, by a restore with another umask) keeps its modes.
 * Changing them behind the operator's back could break a setup they chose
 * (a backup user in the group), so this warns instead, naming the fix. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/core.h"

static void check(const char *path, unsigned max, bool dir) {
    unsigned extra = core_mode_excess(path, max);
    if (extra)
        core_log(CORE_LOG_WARN, "%s %s is readable or writable by others (mode bits %04o beyond %04o): chmod %o %s",
                 dir ? "directory" : "file", path, extra, max, max, path);
}

void cli_data_dir_warn(const char *data_dir) {
    static const char *const files[] = {"caresync.db",   "caresync.db-wal", "caresync.db-shm", "ledger.db",
                                        "ledger.db-wal", "ledger.db-shm",   "caresync.lock"};
    char path[4200];
    check(data_dir, 0700, true);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        if (snprintf(path, sizeof path, "%s/%s", data_dir, files[i]) < (int)sizeof path) check(path, 0600, false);
    }
    char keys[4200];
    snprintf(keys, sizeof keys, "%s/keys", data_dir);
    check(keys, 0700, true);
    DIR *d = opendir(keys);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        if (snprintf(path, sizeof path, "%s/%s", keys, e->d_name) < (int)sizeof path) check(path, 0600, false);
    }
    closedir(d);
}
