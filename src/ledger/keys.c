/* ledger — Ed25519 key files for nodes, admins and organisations.
 *
 * A key file is one line, "caresync-ed25519-v1 <64 hex digits of seed>\n",
 * created with mode 0600 and O_EXCL so an existing key is never overwritten.
 * The public key is derived from the seed on load. */
#include "ledger/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "crypto/crypto.h"

#define KEY_TAG "caresync-ed25519-v1 "

void ledger_keypair(uint8_t pk[LEDGER_KEY], uint8_t sk[LEDGER_SECRET]) { cs_crypto_sign_keypair(pk, sk); }

core_status ledger_key_generate(const char *path, uint8_t pk[LEDGER_KEY], core_error *err) {
    uint8_t sk[LEDGER_SECRET];
    cs_crypto_sign_keypair(pk, sk);
    char line[sizeof KEY_TAG + 64 + 2];
    memcpy(line, KEY_TAG, sizeof KEY_TAG - 1);
    cs_crypto_hex(sk, 32, line + sizeof KEY_TAG - 1);
    size_t n = strlen(line);
    line[n++] = '\n';
    cs_crypto_wipe(sk, sizeof sk);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        cs_crypto_wipe(line, sizeof line);
        return core_fail(err, errno == EEXIST ? CORE_ERR_CONFLICT : CORE_ERR_IO, "out", "cannot create key file %s: %s",
                         path, strerror(errno));
    }
    ssize_t w = write(fd, line, n);
    cs_crypto_wipe(line, sizeof line);
    /* The key must be on disk before anything signed with it is. */
    if (w != (ssize_t)n || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(path);
        return core_fail(err, CORE_ERR_IO, "out", "cannot write key file %s: %s", path, strerror(e));
    }
    close(fd);
    return CORE_OK;
}

core_status ledger_key_load(const char *path, uint8_t pk[LEDGER_KEY], uint8_t sk[LEDGER_SECRET], core_error *err) {
    FILE *f = fopen(path, "re");
    if (!f)
        return core_fail(err, errno == ENOENT ? CORE_ERR_NOT_FOUND : CORE_ERR_IO, "key", "cannot read key file %s: %s",
                         path, strerror(errno));
    char line[160] = {0};
    bool ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    uint8_t seed[32];
    ok = ok && strncmp(line, KEY_TAG, sizeof KEY_TAG - 1) == 0 && cs_crypto_unhex(line + sizeof KEY_TAG - 1, seed, 32);
    cs_crypto_wipe(line, sizeof line);
    if (!ok) return core_fail(err, CORE_ERR_INVALID, "key", "%s is not a caresync key file", path);
    cs_crypto_sign_seed_keypair(seed, pk, sk);
    cs_crypto_wipe(seed, sizeof seed);
    return CORE_OK;
}

core_status ledger_key_load_or_create(const char *path, uint8_t pk[LEDGER_KEY], uint8_t sk[LEDGER_SECRET],
                                      bool *created, core_error *err) {
    *created = false;
    core_status rc = ledger_key_load(path, pk, sk, err);
    if (rc != CORE_ERR_NOT_FOUND) return rc;
    rc = ledger_key_generate(path, pk, err);
    if (rc) return rc;
    *created = true;
    return ledger_key_load(path, pk, sk, err);
}
