/* share — the handle's insides, shared by the module's files; not public. */
#ifndef CARESYNC_SHARE_INTERNAL_H
#define CARESYNC_SHARE_INTERNAL_H

#include <pthread.h>

#include "share/share.h"

struct share {
    share_options opt;
    /* One payment round at a time: two rounds reading the same queue would
     * submit the same rewards twice (the ledger refuses the second, but the
     * batch would no longer be one shuffled run). Guards the reward counters. */
    pthread_mutex_t pay_lock;
    uint64_t paid, dropped;
    /* What the alerts were last scanned at: the data version and the sealed
     * week. Guards the scan counter too. */
    pthread_mutex_t scan_lock;
    int64_t scanned_version;
    int scanned_week;
    uint64_t scans;
    /* One read-modify-write of a person's vault at a time (vault.c). */
    pthread_mutex_t vault_lock;
};

/* One contribution in a person's vault (vault.c). */
typedef struct {
    uint8_t tag[SURVEIL_TAG];
    uint8_t grant[LEDGER_HASH];
    uint64_t phash, reward;
    int32_t day; /* UTC day number (unix seconds / 86400) */
    bool has_phash, withdrawn, tagged;
    surveil_contribution c;
} share_vault_entry;

typedef struct {
    share_vault_entry *e;
    size_t n, cap;
} share_vault;

/* The person's vault (empty when they have none); free with share_vault_free. */
core_status share_vault_load(share *s, int64_t owner, const uint8_t data_key[32], share_vault *out, core_error *err);
core_status share_vault_append(share_vault *v, const share_vault_entry *e, core_error *err);
/* Seal and write v on db, inside the caller's transaction. */
core_status share_vault_store(share *s, sqlite3 *db, int64_t owner, const uint8_t data_key[32], const share_vault *v,
                              core_error *err);
void share_vault_free(share_vault *v);

#endif
