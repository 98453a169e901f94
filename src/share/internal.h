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
    /* A clinician-confirmed case (pledge.c): reserved and waiting for its
     * answer (tag is then ref, not yet in the pool); refused at the request
     * because its photo was contributed before; counted without its reward
     * because of the daily cap. */
    bool pending, duplicate, capped;
    uint8_t ref[16]; /* a confirmed case's share_case_ref; zero for a screening share */
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

/* ---- the vault's inbox (vault.c) ---- */

/* The person's inbox key pair, derived from their data key (sk: their
 * session only; pk goes with a pledge). */
void share_inbox_keys(const uint8_t data_key[32], uint8_t pk[32], uint8_t sk[32]);
/* A confirmed case's reference in the vault, keyed by the data key, so
 * the person's session finds the case's entry and nothing else can. */
void share_case_ref(const uint8_t data_key[32], const char *case_id, uint8_t ref[16]);

enum { SHARE_INBOX_COUNTED = 1, SHARE_INBOX_ENDED = 2 };
typedef struct {
    uint8_t kind;  /* SHARE_INBOX_COUNTED: tag, grant, week, reward, condition are the count's;
                      SHARE_INBOX_ENDED: the reservation ended uncounted */
    int64_t owner; /* checked when opened: a box is merged into its owner's vault only */
    uint8_t ref[16], tag[SURVEIL_TAG], grant[LEDGER_HASH];
    int32_t week;
    uint64_t reward;
    char condition[SURVEIL_CONDITION_MAX + 1];
    int age_band;
    char region[8];
} share_inbox_item;
/* Seal it to pk and insert it on db, inside the caller's transaction. */
core_status share_inbox_post(share *s, sqlite3 *db, const uint8_t pk[32], const share_inbox_item *it, core_error *err);
/* share_vault_load, after merging the person's inbox into the vault (and
 * dropping reservations older than any answer can be), written back with
 * the inbox emptied in one transaction when anything changed. Call under
 * vault_lock. */
core_status share_vault_load_synced(share *s, int64_t owner, const uint8_t data_key[32], int64_t now, share_vault *out,
                                    core_error *err);

#endif
