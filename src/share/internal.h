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
};

#endif
