/* bench/ledger — durable committed signed transfers per second, full-chain
 * verify rate, and single-core Ed25519 verifications per second, measured in
 * one run on the same machine so the ratios mean something.
 *
 * Usage: ledger_bench [transfers (default 200000)] [submitters (default 2)]
 *
 * Setup (not timed): a fresh ledger in a temp dir with synchronous=FULL as
 * in production; W wallets registered and funded through one contribution
 * each (the bench's genesis reward is large). Timed: `transfers` transfers,
 * pre-signed, submitted by `submitters` threads in chunks through
 * ledger_submit_many — each thread owns its wallets so nonces stay ordered.
 * A transfer counts only once its block has committed (fsync returned). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto/crypto.h"
#include "ledger/ledger.h"

#define WALLETS 64
#define CHUNK 1024

typedef struct {
    uint8_t pk[32], sk[64];
    uint64_t nonce;
} key;

static key wallets[WALLETS];
static uint8_t (*txbuf)[160];
static size_t *txlen;

typedef struct {
    ledger *l;
    size_t from, to;
    size_t ok, bad;
} job;

static void *submitter(void *arg) {
    job *j = arg;
    const uint8_t **ptrs = malloc(CHUNK * sizeof *ptrs);
    ledger_receipt *r = malloc(CHUNK * sizeof *r);
    for (size_t i = j->from; i < j->to; i += CHUNK) {
        size_t n = j->to - i < CHUNK ? j->to - i : CHUNK;
        for (size_t k = 0; k < n; k++) ptrs[k] = txbuf[i + k];
        ledger_submit_many(j->l, ptrs, txlen + i, n, r, NULL);
        for (size_t k = 0; k < n; k++) {
            if (r[k].status == CORE_OK)
                j->ok++;
            else {
                if (j->bad++ < 3) fprintf(stderr, "rejected: %s\n", r[k].error.message);
            }
        }
    }
    free(ptrs);
    free(r);
    return NULL;
}

static void die(const char *what, const core_error *e) {
    fprintf(stderr, "ledger_bench: %s: %s\n", what, e->message);
    exit(1);
}

int main(int argc, char **argv) {
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    if (threads < 1 || threads > 16 || n < 1) return 2;
    core_error err = {0};
    if (cs_crypto_init(&err)) die("init", &err);
    char dir[] = "/tmp/ledger-bench-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char path[256];
    snprintf(path, sizeof path, "%s/ledger.db", dir);

    /* Single-core Ed25519 verification rate: the ceiling for one core. */
    uint8_t pk[32], sk[64], sig[64], msg[120] = {1};
    cs_crypto_sign_keypair(pk, sk);
    cs_crypto_sign(sig, msg, sizeof msg, sk);
    double t0 = core_monotonic();
    int nver = 0;
    while (core_monotonic() - t0 < 1.0)
        for (int i = 0; i < 500; i++) nver += cs_crypto_sign_verify(sig, msg, sizeof msg, pk);
    double ed_rate = nver / (core_monotonic() - t0);

    key node, admin;
    ledger_keypair(node.pk, node.sk);
    ledger_keypair(admin.pk, admin.sk);
    ledger_options o;
    ledger_options_defaults(&o);
    o.path = path;
    memcpy(o.node_pk, node.pk, 32);
    memcpy(o.node_sk, node.sk, 64);
    memcpy(o.admin_pk, admin.pk, 32);
    memcpy(o.admin_sk, admin.sk, 64);
    o.genesis_reward[LEDGER_CAT_SCREENING] = 1000000000;
    ledger *l;
    if (ledger_open(&o, &l, &err)) die("open", &err);

    /* Register and fund the wallets. */
    for (int w = 0; w < WALLETS; w++) {
        key *k = &wallets[w];
        ledger_keypair(k->pk, k->sk);
        uint8_t buf[LEDGER_TX_MAX];
        ledger_receipt r;
        ledger_tx tx = {.kind = LEDGER_TX_REGISTER_WALLET, .nonce = ++k->nonce};
        size_t len = ledger_tx_sign(&tx, k->sk, buf, sizeof buf);
        if (ledger_submit(l, buf, len, &r, &err)) die("register", &err);
        tx = (ledger_tx){.kind = LEDGER_TX_GRANT,
                         .nonce = ++k->nonce,
                         .u.grant = {.scope = 1, .purpose = 1, .expires = (uint64_t)core_now() + 86400}};
        len = ledger_tx_sign(&tx, k->sk, buf, sizeof buf);
        if (ledger_submit(l, buf, len, &r, &err)) die("grant", &err);
        ledger_tx c = {.kind = LEDGER_TX_CONTRIBUTE};
        memcpy(c.u.contribute.contributor, k->pk, 32);
        memcpy(c.u.contribute.grant, r.txid, 32);
        memcpy(c.u.contribute.commitment, k->pk, 32);
        c.u.contribute.reward = o.genesis_reward[0];
        if (ledger_sign_submit(l, &c, node.sk, &r, &err)) die("fund", &err);
    }
    ledger_stats s0;
    ledger_get_stats(l, &s0);

    /* Pre-sign the transfers: thread t uses wallets w ≡ t (mod threads). */
    txbuf = malloc(n * sizeof *txbuf);
    txlen = malloc(n * sizeof *txlen);
    size_t per = (n + (size_t)threads - 1) / (size_t)threads;
    for (size_t i = 0; i < n; i++) {
        int t = (int)(i / per);
        int w = t + threads * (int)(i % (WALLETS / threads));
        key *k = &wallets[w];
        ledger_tx tx = {.kind = LEDGER_TX_TRANSFER, .nonce = ++k->nonce, .u.transfer.amount = 1 + i % 7};
        memcpy(tx.u.transfer.to, wallets[(w + 1) % WALLETS].pk, 32);
        uint8_t tmp[LEDGER_TX_MAX];
        txlen[i] = ledger_tx_sign(&tx, k->sk, tmp, sizeof tmp);
        memcpy(txbuf[i], tmp, txlen[i]);
    }

    pthread_t th[16];
    job jobs[16];
    t0 = core_monotonic();
    for (int t = 0; t < threads; t++) {
        jobs[t] = (job){l, (size_t)t * per, (size_t)(t + 1) * per < n ? (size_t)(t + 1) * per : n, 0, 0};
        pthread_create(&th[t], NULL, submitter, &jobs[t]);
    }
    size_t ok = 0, bad = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        ok += jobs[t].ok;
        bad += jobs[t].bad;
    }
    double secs = core_monotonic() - t0;
    ledger_stats s1;
    ledger_get_stats(l, &s1);
    ledger_close(l);

    ledger_verify_report rep;
    if (ledger_verify_file(path, 2, &rep, &err)) die("verify", &err);
    ledger_verify_report rep1;
    if (ledger_verify_file(path, 1, &rep1, &err)) die("verify", &err);

    uint64_t blocks = s1.blocks - s0.blocks, commits = s1.commits - s0.commits;
    double tps = ok / secs;
    printf("CareSync ledger benchmark (synchronous=FULL, one fsync per block)\n");
    printf("machine: nproc=%ld\n\n", sysconf(_SC_NPROCESSORS_ONLN));
    printf("%-44s %12s\n", "measure", "value");
    printf("%-44s %12.0f\n", "Ed25519 verifications/s (1 core)", ed_rate);
    printf("%-44s %12.0f\n", "committed signed transfers/s", tps);
    printf("%-44s %12zu\n", "  transfers committed", ok);
    printf("%-44s %12zu\n", "  transfers rejected", bad);
    printf("%-44s %12llu\n", "  blocks", (unsigned long long)blocks);
    printf("%-44s %12llu\n", "  durable commits (fsyncs of the WAL)", (unsigned long long)commits);
    printf("%-44s %12.1f\n", "  transactions per block", blocks ? (double)ok / (double)blocks : 0.0);
    printf("%-44s %12.2f\n", "  ratio to 1-core Ed25519 limit", tps / ed_rate);
    printf("%-44s %12.0f\n", "full-chain verify, 2 threads (tx/s)", rep.txs / rep.seconds);
    printf("%-44s %12.0f\n", "full-chain verify, 1 thread (tx/s)", rep1.txs / rep1.seconds);
    printf("%-44s %12.2f\n", "Fabric anchor 3,500 tx/s: ratio", tps / 3500.0);
    printf("%-44s %12s\n", "goal >= 20,000 committed tx/s", tps >= 20000 ? "met" : "NOT met");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    free(txbuf);
    free(txlen);
    return 0;
}
