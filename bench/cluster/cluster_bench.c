/* bench/cluster — the replicated ledger (issue 15) on loopback, 1, 3 and 5
 * raft nodes side by side in one process and one run: committed signed
 * transfers per second, per-transaction commit latency, and leader
 * fail-over time.
 *
 * Usage: cluster_bench [--seconds S] [--rounds N] [--nodes 1,3,5]
 *                      [--rate TX_PER_S] [--threads T] [--chunk C]
 *                      [--election-ms MS] [--no-baseline]
 * Defaults: 3 s per load phase, 20 fail-over rounds, 8 threads, chunks of
 * 512, the cluster's default election timeout (1 s): about two minutes.
 *
 * Every configuration gets a fresh cluster in a temp dir: n nodes, each a
 * cluster (libraft over libuv TCP on a free loopback port) and a ledger
 * (synchronous=FULL, production batching) opened exactly as `caresync serve
 * --cluster` does, genesis sealed by the first leader. W wallets are
 * registered and funded through the leader (not timed). Then, on the leader,
 * through ledger_submit_many (the ledger's normal submit path: signatures
 * checked in the caller's thread, a block sealed, proposed to raft,
 * acknowledged once a majority has it on disk and the local commit is done):
 *
 *   saturation  T threads each submit pre-signed transfers in chunks of C,
 *               back to back, for S seconds: committed transfers/s; the
 *               latency of a transfer is its chunk's call (start to return).
 *   half load   transfers paced at half the saturation rate of the same
 *               cluster (or --rate), in 2 ms ticks spread over 64 threads;
 *               a transfer's latency runs from its scheduled time (not from
 *               when a thread got to it, so a stall is not hidden) to the
 *               return of the call that carried it.
 *   fail-over   (n ≥ 3) N rounds: with every node up and the chains
 *               identical, stop the leader (cluster_stop: its raft goes
 *               silent, as after a crash; nothing hands leadership over),
 *               then until a write commits on a new leader: time to a ready
 *               leader and to the first committed write. The old node
 *               restarts and catches up from the raft log before the next
 *               round.
 *
 * A baseline row runs the same load on one ledger with no consensus (what
 * ledger_bench measures). All nodes share this process's cores: a follower
 * checks every transaction's signature again, so on 2 cores 3 nodes do 3×
 * the signature work of one; the CPU seconds per 1,000 transfers are
 * printed for that reason. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "crypto/crypto.h"
#include "ledger/ledger.h"

#define MAXN 5
#define PACE_THREADS 64
#define TICK_S 0.002
#define WALLETS_PER_THREAD 4
#define REWARD 1000000000ull

typedef struct {
    uint8_t pk[LEDGER_KEY], sk[LEDGER_SECRET];
    uint64_t nonce;
} key;

static void die(const char *what, const core_error *e) {
    fprintf(stderr, "cluster_bench: %s: %s\n", what, e ? e->message : "failed");
    exit(1);
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static uint16_t free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(s, (struct sockaddr *)&a, &len) != 0)
        die("free port", NULL);
    close(s);
    return ntohs(a.sin_port);
}

/* ---- a group of nodes ---- */

typedef struct {
    int n;        /* 0: one ledger, no consensus (baseline) */
    char dir[64]; /* mkdtemp */
    key admin, keys[MAXN];
    cluster_options copt[MAXN];
    char raft_dir[MAXN][128], db[MAXN][128];
    cluster *c[MAXN];
    ledger *l[MAXN];
    bool up[MAXN];
} group;

static unsigned g_election_ms;

static ledger *open_node_ledger(group *g, int i, const ledger_consensus *cons) {
    ledger_options o;
    ledger_options_defaults(&o);
    o.path = g->db[i];
    o.consensus = cons;
    memcpy(o.node_pk, g->keys[i].pk, LEDGER_KEY);
    memcpy(o.node_sk, g->keys[i].sk, LEDGER_SECRET);
    memcpy(o.admin_pk, g->admin.pk, LEDGER_KEY);
    memcpy(o.admin_sk, g->admin.sk, LEDGER_SECRET);
    o.genesis_reward[LEDGER_CAT_SCREENING] = REWARD;
    if (cons) {
        o.n_genesis_nodes = (size_t)g->n;
        for (int k = 0; k < g->n; k++) memcpy(o.genesis_nodes[k], g->keys[k].pk, LEDGER_KEY);
        o.genesis_deferred = true;
    }
    core_error err = {0};
    ledger *l = NULL;
    if (ledger_open(&o, &l, &err)) die("ledger_open", &err);
    return l;
}

static void node_start(group *g, int i) {
    core_error err = {0};
    if (g->n == 0) {
        g->l[i] = open_node_ledger(g, i, NULL);
        g->up[i] = true;
        return;
    }
    if (cluster_open(&g->copt[i], &g->c[i], &err)) die("cluster_open", &err);
    g->l[i] = open_node_ledger(g, i, cluster_consensus(g->c[i]));
    if (cluster_start(g->c[i], g->l[i], &err)) die("cluster_start", &err);
    g->up[i] = true;
}

static void node_stop(group *g, int i) {
    if (!g->up[i]) return;
    if (g->c[i]) cluster_stop(g->c[i]);
    ledger_close(g->l[i]);
    cluster_close(g->c[i]);
    g->c[i] = NULL;
    g->l[i] = NULL;
    g->up[i] = false;
}

static void group_open(group *g, int n) {
    memset(g, 0, sizeof *g);
    g->n = n;
    snprintf(g->dir, sizeof g->dir, "/tmp/cluster-bench-XXXXXX");
    if (!mkdtemp(g->dir)) die("mkdtemp", NULL);
    ledger_keypair(g->admin.pk, g->admin.sk);
    int count = n ? n : 1;
    cluster_node nodes[MAXN];
    for (int i = 0; i < count; i++) {
        ledger_keypair(g->keys[i].pk, g->keys[i].sk);
        nodes[i] = (cluster_node){.id = (uint64_t)i + 1};
        snprintf(nodes[i].address, sizeof nodes[i].address, "127.0.0.1:%u", (unsigned)free_port());
        snprintf(nodes[i].forward, sizeof nodes[i].forward, "127.0.0.1:%u", (unsigned)free_port());
        memcpy(nodes[i].key, g->keys[i].pk, LEDGER_KEY);
    }
    for (int i = 0; i < count; i++) {
        char d[100];
        snprintf(d, sizeof d, "%s/n%d", g->dir, i + 1);
        core_error err = {0};
        if (core_mkdirs(d, &err)) die("mkdir", &err);
        snprintf(g->raft_dir[i], sizeof g->raft_dir[i], "%s/raft", d);
        snprintf(g->db[i], sizeof g->db[i], "%s/ledger.db", d);
        cluster_options *o = &g->copt[i];
        cluster_options_defaults(o);
        if (g_election_ms) o->election_ms = g_election_ms;
        if (o->heartbeat_ms * 2 > o->election_ms) o->heartbeat_ms = o->election_ms / 5;
        o->self = (uint64_t)i + 1;
        o->n_nodes = (size_t)count;
        memcpy(o->nodes, nodes, sizeof nodes);
        o->dir = g->raft_dir[i];
    }
    for (int i = 0; i < count; i++) node_start(g, i);
}

static void group_close(group *g) {
    for (int i = 0; i < MAXN; i++) node_stop(g, i);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g->dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g->dir);
}

/* The node ready to take proposals, or -1 after the deadline. */
static int wait_leader(group *g, double seconds) {
    if (g->n == 0) return 0;
    double until = core_monotonic() + seconds;
    do {
        for (int i = 0; i < g->n; i++) {
            if (!g->up[i]) continue;
            cluster_status s;
            cluster_get_status(g->c[i], &s);
            if (s.ready && s.have_tip) return i;
        }
        sleep_s(0.002);
    } while (core_monotonic() < until);
    return -1;
}

/* Every running node's head is the same block, at least min_height. */
static bool wait_converged(group *g, uint64_t min_height, double seconds) {
    double until = core_monotonic() + seconds;
    do {
        bool same = true, first = true;
        uint8_t ref[LEDGER_HASH];
        for (int i = 0; i < (g->n ? g->n : 1) && same; i++) {
            if (!g->up[i]) continue;
            ledger_block h;
            uint8_t hash[LEDGER_HASH];
            if (ledger_head(g->l[i], &h, NULL) || h.height < min_height) {
                same = false;
                break;
            }
            ledger_block_hash(&h, hash);
            if (first)
                memcpy(ref, hash, LEDGER_HASH);
            else if (memcmp(ref, hash, LEDGER_HASH) != 0)
                same = false;
            first = false;
        }
        if (same) return true;
        sleep_s(0.01);
    } while (core_monotonic() < until);
    return false;
}

static uint64_t head_height(ledger *l) {
    ledger_block h;
    return ledger_head(l, &h, NULL) ? 0 : h.height;
}

/* ---- wallets ---- */

static key *wallets;
static size_t n_wallets;

/* Register, grant and fund every wallet through the leader (the node key
 * attests the contributions, as the server does). */
static void fund_wallets(group *g, int lead) {
    ledger *l = g->l[lead];
    size_t n = n_wallets;
    uint8_t(*bufs)[LEDGER_TX_MAX] = malloc(n * sizeof *bufs);
    size_t *lens = malloc(n * sizeof *lens);
    const uint8_t **ptrs = malloc(n * sizeof *ptrs);
    ledger_receipt *r = malloc(n * sizeof *r);
    uint8_t(*grants)[LEDGER_HASH] = malloc(n * sizeof *grants);
    if (!bufs || !lens || !ptrs || !r || !grants) die("out of memory", NULL);
    key node = g->keys[lead];
    for (int step = 0; step < 3; step++) {
        for (size_t w = 0; w < n; w++) {
            key *k = &wallets[w];
            ledger_tx tx;
            if (step == 0) {
                ledger_keypair(k->pk, k->sk);
                k->nonce = 0;
                tx = (ledger_tx){.kind = LEDGER_TX_REGISTER_WALLET, .nonce = ++k->nonce};
                lens[w] = ledger_tx_sign(&tx, k->sk, bufs[w], LEDGER_TX_MAX);
            } else if (step == 1) {
                tx = (ledger_tx){.kind = LEDGER_TX_GRANT,
                                 .nonce = ++k->nonce,
                                 .u.grant = {.scope = 1, .purpose = 1, .expires = (uint64_t)core_now() + 86400}};
                lens[w] = ledger_tx_sign(&tx, k->sk, bufs[w], LEDGER_TX_MAX);
            } else {
                tx = (ledger_tx){.kind = LEDGER_TX_CONTRIBUTE, .nonce = ++node.nonce};
                memcpy(tx.u.contribute.contributor, k->pk, LEDGER_KEY);
                memcpy(tx.u.contribute.grant, grants[w], LEDGER_HASH);
                memcpy(tx.u.contribute.commitment, k->pk, LEDGER_KEY);
                tx.u.contribute.reward = REWARD;
                lens[w] = ledger_tx_sign(&tx, node.sk, bufs[w], LEDGER_TX_MAX);
            }
            ptrs[w] = bufs[w];
        }
        core_error err = {0};
        if (ledger_submit_many(l, ptrs, lens, n, r, &err)) die("funding", &err);
        for (size_t w = 0; w < n; w++) {
            if (r[w].status) die("funding", &r[w].error);
            if (step == 1) memcpy(grants[w], r[w].txid, LEDGER_HASH);
        }
    }
    free(bufs);
    free(lens);
    free(ptrs);
    free(r);
    free(grants);
}

/* One signed transfer of thread t's wallets (round robin), next nonce. */
static size_t sign_transfer(size_t t, size_t i, uint8_t *out) {
    size_t w = t * WALLETS_PER_THREAD + i % WALLETS_PER_THREAD;
    key *k = &wallets[w];
    ledger_tx tx = {.kind = LEDGER_TX_TRANSFER, .nonce = ++k->nonce, .u.transfer.amount = 1 + i % 7};
    memcpy(tx.u.transfer.to, wallets[(w + 1) % n_wallets].pk, LEDGER_KEY);
    return ledger_tx_sign(&tx, k->sk, out, LEDGER_TX_MAX);
}

/* ---- load ---- */

typedef struct {
    uint8_t (*buf)[LEDGER_TX_MAX];
    size_t *len;
    size_t n;    /* pre-signed */
    size_t next; /* next to submit */
    double *lat; /* per committed transfer, seconds */
    size_t ok, failed;
    core_error first_fail;
    double (*calls)[2]; /* paced: per call, first scheduled time and return */
    size_t n_calls;
} stream;

static void stream_alloc(stream *s, size_t n) {
    memset(s, 0, sizeof *s);
    s->buf = malloc((n ? n : 1) * sizeof *s->buf);
    s->len = malloc((n ? n : 1) * sizeof *s->len);
    s->lat = malloc((n ? n : 1) * sizeof *s->lat);
    if (!s->buf || !s->len || !s->lat) die("out of memory", NULL);
    s->n = n;
}

static void stream_free(stream *s) {
    free(s->calls);
    free(s->buf);
    free(s->len);
    free(s->lat);
}

/* Submit txs [from, from+n) of s as one call; latency from `since[k]`
 * (or the call's start) to the return. */
static void submit_part(ledger *l, stream *s, size_t from, size_t n, const double *since, ledger_receipt *r,
                        const uint8_t **ptrs) {
    for (size_t k = 0; k < n; k++) ptrs[k] = s->buf[from + k];
    double t0 = core_monotonic();
    core_error err = {0};
    if (ledger_submit_many(l, ptrs, s->len + from, n, r, &err)) die("submit", &err);
    double t1 = core_monotonic();
    if (s->calls) {
        s->calls[s->n_calls][0] = since[0];
        s->calls[s->n_calls++][1] = t1;
    }
    for (size_t k = 0; k < n; k++) {
        if (r[k].status == CORE_OK) {
            s->lat[s->ok++] = t1 - (since ? since[k] : t0);
        } else if (s->failed++ == 0) {
            s->first_fail = r[k].error;
        }
    }
}

typedef struct {
    ledger *l;
    stream s;
    size_t t; /* thread index: owns wallets t*4 .. t*4+3 */
    size_t chunk;
    double until;
    /* paced */
    double start, rate;
    size_t ticks, n_threads;
    pthread_barrier_t *signed_all, *go;
    double *t_start;
} worker;

/* Before the clock starts: this thread's transfers, signed in order. */
static void presign(worker *w) {
    for (size_t i = 0; i < w->s.n; i++) w->s.len[i] = sign_transfer(w->t, i, w->s.buf[i]);
    pthread_barrier_wait(w->signed_all);
}

static void *saturate_main(void *arg) {
    worker *w = arg;
    presign(w);
    const uint8_t **ptrs = malloc(w->chunk * sizeof *ptrs);
    ledger_receipt *r = malloc(w->chunk * sizeof *r);
    pthread_barrier_wait(w->go);
    while (w->s.next < w->s.n && core_monotonic() < *w->t_start + (w->until)) {
        size_t n = w->s.n - w->s.next < w->chunk ? w->s.n - w->s.next : w->chunk;
        submit_part(w->l, &w->s, w->s.next, n, NULL, r, ptrs);
        w->s.next += n;
    }
    free(ptrs);
    free(r);
    return NULL;
}

/* Transfers of tick k: global indices [first(k), first(k+1)). */
static size_t tick_first(double rate, size_t k) { return (size_t)((double)k * TICK_S * rate); }

static void *paced_main(void *arg) {
    worker *w = arg;
    size_t cap = tick_first(w->rate, 1) + 2;
    const uint8_t **ptrs = malloc(cap * sizeof *ptrs);
    ledger_receipt *r = malloc(cap * sizeof *r);
    double *since = malloc(cap * sizeof *since);
    presign(w);
    pthread_barrier_wait(w->go);
    double start = *w->t_start;
    for (size_t k = w->t; k < w->ticks; k += w->n_threads) {
        size_t a = tick_first(w->rate, k), b = tick_first(w->rate, k + 1);
        if (b == a) continue;
        double due = start + (double)k * TICK_S;
        double now = core_monotonic();
        if (due > now) sleep_s(due - now);
        for (size_t j = a; j < b; j++) since[j - a] = start + (double)j / w->rate;
        submit_part(w->l, &w->s, w->s.next, b - a, since, r, ptrs);
        w->s.next += b - a;
    }
    free(ptrs);
    free(r);
    free(since);
    return NULL;
}

typedef struct {
    double tps, p50, p99, max, cpu_per_k, cpu_use; /* cpu_use: share of all cores busy */
    size_t slow_calls, stalls; /* paced: calls ≥ 100 ms after their schedule; merged into episodes */
    double longest_stall;
    size_t ok, failed;
    uint64_t blocks;
    double seconds;
} load_result;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double p) {
    if (n == 0) return 0;
    if (p == 0.5 && n % 2 == 0) return (v[n / 2 - 1] + v[n / 2]) / 2;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

/* Where the paced tails come from: the calls that returned 100 ms or more
 * after their first transfer's schedule, as [scheduled, returned]
 * intervals merged where they overlap. A few long episodes point at stalls
 * (an fsync, a checkpoint, the process starved of CPU), many short ones at
 * a queue that does not keep up. */
static int cmp_interval(const void *a, const void *b) { return cmp_double(a, b); }

static void stall_summary(worker *ws, size_t threads, load_result *res) {
    size_t cap = 0;
    for (size_t t = 0; t < threads; t++) cap += ws[t].s.calls ? ws[t].s.n_calls : 0;
    if (cap == 0) return;
    double(*iv)[2] = malloc(cap * sizeof *iv);
    size_t m = 0;
    for (size_t t = 0; t < threads; t++)
        for (size_t k = 0; ws[t].s.calls && k < ws[t].s.n_calls; k++)
            if (ws[t].s.calls[k][1] - ws[t].s.calls[k][0] >= 0.1) memcpy(iv[m++], ws[t].s.calls[k], sizeof iv[0]);
    qsort(iv, m, sizeof iv[0], cmp_interval);
    res->slow_calls = m;
    for (size_t k = 0; k < m;) {
        double a = iv[k][0], b = iv[k][1];
        for (k++; k < m && iv[k][0] <= b; k++)
            if (iv[k][1] > b) b = iv[k][1];
        res->stalls++;
        if (b - a > res->longest_stall) res->longest_stall = b - a;
    }
    free(iv);
}

/* Run workers (saturation: rate 0) on the leader; threads pre-sign their
 * own transfers before the clock starts. */
static load_result run_load(group *g, int lead, size_t threads, size_t chunk, double seconds, double rate) {
    worker *ws = calloc(threads, sizeof *ws);
    pthread_t *th = calloc(threads, sizeof *th);
    pthread_barrier_t go;
    pthread_barrier_t signed_all;
    pthread_barrier_init(&go, NULL, (unsigned)threads + 1);
    pthread_barrier_init(&signed_all, NULL, (unsigned)threads + 1);
    double t_start = 0;
    size_t ticks = (size_t)(seconds / TICK_S);
    for (size_t t = 0; t < threads; t++) {
        worker *w = &ws[t];
        *w = (worker){.l = g->l[lead],
                      .t = t,
                      .chunk = chunk,
                      .until = seconds,
                      .rate = rate,
                      .ticks = ticks,
                      .n_threads = threads,
                      .signed_all = &signed_all,
                      .go = &go,
                      .t_start = &t_start};
        size_t n;
        if (rate > 0) {
            n = 0;
            for (size_t k = t; k < ticks; k += threads) n += tick_first(rate, k + 1) - tick_first(rate, k);
            w->s.calls = NULL;
        } else {
            /* Enough for 40,000/s; the run ends early (and says so) if not. */
            n = (size_t)(40000.0 * seconds / (double)threads) + chunk;
        }
        stream_alloc(&w->s, n);
        if (rate > 0) {
            w->s.calls = malloc((ticks / threads + 2) * sizeof *w->s.calls);
            if (!w->s.calls) die("out of memory", NULL);
        }
    }
    for (size_t t = 0; t < threads; t++) pthread_create(&th[t], NULL, rate > 0 ? paced_main : saturate_main, &ws[t]);
    /* Each thread signs its own transfers; the clock starts when the last
     * one is done. */
    pthread_barrier_wait(&signed_all);
    ledger_stats s0, s1;
    ledger_get_stats(g->l[lead], &s0);
    double c0 = cpu_seconds();
    t_start = core_monotonic() + 0.005;
    pthread_barrier_wait(&go);
    load_result res = {0};
    size_t total = 0;
    for (size_t t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        total += ws[t].s.ok;
        res.failed += ws[t].s.failed;
    }
    res.seconds = core_monotonic() - t_start;
    double c1 = cpu_seconds();
    ledger_get_stats(g->l[lead], &s1);
    stall_summary(ws, threads, &res);
    double *all = malloc((total ? total : 1) * sizeof *all);
    size_t m = 0;
    bool exhausted = false;
    for (size_t t = 0; t < threads; t++) {
        memcpy(all + m, ws[t].s.lat, ws[t].s.ok * sizeof *all);
        m += ws[t].s.ok;
        if (ws[t].s.failed)
            fprintf(stderr, "  thread %zu: %zu failed, first: %s\n", t, ws[t].s.failed, ws[t].s.first_fail.message);
        if (rate == 0 && ws[t].s.next >= ws[t].s.n) exhausted = true;
        stream_free(&ws[t].s);
    }
    if (exhausted) fprintf(stderr, "  (pre-signed transfers ran out before %.0f s)\n", seconds);
    qsort(all, m, sizeof *all, cmp_double);
    res.ok = m;
    res.tps = (double)m / res.seconds;
    res.p50 = pct(all, m, 0.50);
    res.p99 = pct(all, m, 0.99);
    res.max = m ? all[m - 1] : 0;
    res.blocks = s1.blocks - s0.blocks;
    res.cpu_per_k = m ? (c1 - c0) / (double)m * 1000.0 : 0;
    res.cpu_use = (c1 - c0) / res.seconds / (double)sysconf(_SC_NPROCESSORS_ONLN);
    free(all);
    free(ws);
    free(th);
    pthread_barrier_destroy(&go);
    pthread_barrier_destroy(&signed_all);
    return res;
}

/* ---- fail-over ---- */

typedef struct {
    double *ready, *commit; /* seconds after the stop, per completed round */
    int done, lost;
} failover_result;

static bool one_write(ledger *l) {
    key k;
    ledger_keypair(k.pk, k.sk);
    ledger_tx tx = {.kind = LEDGER_TX_REGISTER_WALLET, .nonce = 1};
    uint8_t buf[LEDGER_TX_MAX];
    size_t len = ledger_tx_sign(&tx, k.sk, buf, sizeof buf);
    ledger_receipt r;
    return ledger_submit(l, buf, len, &r, NULL) == CORE_OK;
}

static failover_result run_failover(group *g, int rounds) {
    failover_result fr = {calloc((size_t)rounds, sizeof(double)), calloc((size_t)rounds, sizeof(double)), 0, 0};
    for (int round = 0; round < rounds; round++) {
        int old = wait_leader(g, 30);
        if (old < 0 || !one_write(g->l[old]) || !wait_converged(g, head_height(g->l[old]), 60)) {
            fprintf(stderr, "  round %d: the cluster did not settle; fail-over stopped\n", round + 1);
            break;
        }
        double t0 = core_monotonic();
        node_stop(g, old);
        double ready = -1, commit = -1;
        while (core_monotonic() - t0 < 30 && commit < 0) {
            int lead = wait_leader(g, 0);
            if (lead >= 0) {
                if (ready < 0) ready = core_monotonic() - t0;
                if (one_write(g->l[lead])) commit = core_monotonic() - t0;
            } else {
                sleep_s(0.002);
            }
        }
        if (commit < 0) {
            fprintf(stderr, "  round %d: no write committed within 30 s of stopping node %d\n", round + 1, old + 1);
            fr.lost++;
        } else {
            fr.ready[fr.done] = ready;
            fr.commit[fr.done++] = commit;
        }
        node_start(g, old);
    }
    return fr;
}

/* ---- main ---- */

static void usage(void) {
    fprintf(stderr, "usage: cluster_bench [--seconds S (3)] [--rounds N (20)] [--nodes 1,3,5] [--rate TX_PER_S]\n"
                    "                     [--threads T (8)] [--chunk C (512)] [--election-ms MS (1000)] "
                    "[--no-baseline]\n");
    exit(2);
}

int main(int argc, char **argv) {
    double seconds = 3, fixed_rate = 0;
    int rounds = 20, node_counts[8] = {1, 3, 5}, n_counts = 3;
    size_t threads = 8, chunk = 512;
    bool baseline = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--no-baseline") == 0) {
            baseline = false;
            continue;
        }
        if (!v) usage();
        i++;
        if (strcmp(a, "--seconds") == 0)
            seconds = atof(v);
        else if (strcmp(a, "--rounds") == 0)
            rounds = atoi(v);
        else if (strcmp(a, "--rate") == 0)
            fixed_rate = atof(v);
        else if (strcmp(a, "--threads") == 0)
            threads = strtoul(v, NULL, 10);
        else if (strcmp(a, "--chunk") == 0)
            chunk = strtoul(v, NULL, 10);
        else if (strcmp(a, "--election-ms") == 0)
            g_election_ms = (unsigned)atoi(v);
        else if (strcmp(a, "--nodes") == 0) {
            n_counts = 0;
            for (char *p = (char *)v; *p && n_counts < 8;) {
                int n = (int)strtol(p, &p, 10);
                if (n < 1 || n > MAXN) usage();
                node_counts[n_counts++] = n;
                if (*p == ',')
                    p++;
                else if (*p)
                    usage();
            }
        } else
            usage();
    }
    if (seconds <= 0 || rounds < 0 || threads < 1 || threads > 64 || chunk < 1 || fixed_rate < 0) usage();
    core_error err = {0};
    if (cs_crypto_init(&err)) die("init", &err);
    n_wallets = PACE_THREADS * WALLETS_PER_THREAD;
    wallets = calloc(n_wallets, sizeof *wallets);

    int configs[9], n_configs = 0;
    if (baseline) configs[n_configs++] = 0;
    for (int i = 0; i < n_counts; i++) configs[n_configs++] = node_counts[i];
    load_result sat[9], half[9];
    failover_result fo[9];
    double rates[9], catch_up[9] = {0}; /* followers still applying after the saturation phase, s */
    memset(fo, 0, sizeof fo);

    printf("CareSync cluster benchmark: raft (libraft %s) on loopback, every node in this process\n", "0.15");
    printf("machine: nproc=%ld; %.0f s per load phase; %zu threads x %zu-transfer chunks at saturation; "
           "fail-over rounds %d\n\n",
           sysconf(_SC_NPROCESSORS_ONLN), seconds, threads, chunk, rounds);
    fflush(stdout);
    for (int ci = 0; ci < n_configs; ci++) {
        int n = configs[ci];
        group g;
        group_open(&g, n);
        fprintf(stderr, "%s: starting\n", n ? "cluster" : "baseline");
        int lead = wait_leader(&g, 30);
        if (lead < 0 || !wait_converged(&g, 0, 30)) die("no leader with genesis within 30 s", NULL);
        fund_wallets(&g, lead);
        /* Each phase starts with every node applied up to the leader's
         * head: a follower still applying earlier blocks holds its raft
         * loop (fsm_apply) and would slow the next phase's commits. */
        if (!wait_converged(&g, head_height(g.l[lead]), 120)) die("the nodes did not converge after funding", NULL);
        fprintf(stderr, "%d node(s): saturation\n", n);
        sat[ci] = run_load(&g, lead, threads, chunk, seconds, 0);
        rates[ci] = fixed_rate > 0 ? fixed_rate : sat[ci].tps / 2;
        fprintf(stderr, "%d node(s): %.0f tx/s; paced at %.0f tx/s\n", n, sat[ci].tps, rates[ci]);
        double caught0 = core_monotonic();
        if (!wait_converged(&g, head_height(g.l[lead]), 300)) die("the nodes did not converge after saturation", NULL);
        catch_up[ci] = core_monotonic() - caught0;
        int lead2 = wait_leader(&g, 30);
        if (lead2 != lead) fprintf(stderr, "  the leader changed during the saturation phase\n");
        if (lead2 < 0) die("no leader after the saturation phase", NULL);
        half[ci] = run_load(&g, lead2, PACE_THREADS, 0, seconds, rates[ci]);
        if (n >= 3 && rounds > 0) {
            if (!wait_converged(&g, head_height(g.l[lead2]), 120)) fprintf(stderr, "  not converged after load\n");
            fprintf(stderr, "%d nodes: fail-over x %d\n", n, rounds);
            fo[ci] = run_failover(&g, rounds);
        }
        group_close(&g);
    }

    printf("| nodes | committed tx/s | blocks | tx/block | p50 / p99 ms (saturation) | paced tx/s (tx/block) | "
           "p50 / p99 / max ms (paced) | CPU ms per 1k tx (cores busy) | fail-over: leader ready median / max s | "
           "first commit median / max s |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    for (int ci = 0; ci < n_configs; ci++) {
        load_result *s = &sat[ci], *h = &half[ci];
        char label[32], fobuf[64] = "—", fobuf2[128] = "—";
        if (configs[ci])
            snprintf(label, sizeof label, "%d", configs[ci]);
        else
            snprintf(label, sizeof label, "1, no raft");
        failover_result *f = &fo[ci];
        if (f->done > 0) {
            qsort(f->ready, (size_t)f->done, sizeof(double), cmp_double);
            qsort(f->commit, (size_t)f->done, sizeof(double), cmp_double);
            snprintf(fobuf, sizeof fobuf, "%.2f / %.2f", pct(f->ready, (size_t)f->done, 0.5), f->ready[f->done - 1]);
            snprintf(fobuf2, sizeof fobuf2, "%.2f / %.2f (%d rounds%s)", pct(f->commit, (size_t)f->done, 0.5),
                     f->commit[f->done - 1], f->done, f->lost ? ", and rounds with no commit in 30 s" : "");
        }
        printf("| %s | %.0f | %llu | %.0f | %.1f / %.1f | %.0f of %.0f (%.0f) | %.1f / %.1f / %.1f | %.0f (%.0f %%) | "
               "%s | %s |\n",
               label, s->tps, (unsigned long long)s->blocks, s->blocks ? (double)s->ok / (double)s->blocks : 0.0,
               s->p50 * 1e3, s->p99 * 1e3, h->tps, rates[ci], h->blocks ? (double)h->ok / (double)h->blocks : 0.0,
               h->p50 * 1e3, h->p99 * 1e3, h->max * 1e3, s->cpu_per_k * 1e3, s->cpu_use * 100, fobuf, fobuf2);
        if (catch_up[ci] >= 0.05)
            printf("|   | the followers finished applying %.2f s after the saturation phase ended |||||||||\n",
                   catch_up[ci]);
        if (h->slow_calls)
            printf("|   | paced: %zu calls returned >= 100 ms after schedule, in %zu episodes, longest %.0f ms "
                   "|||||||||\n",
                   h->slow_calls, h->stalls, h->longest_stall * 1e3);
        if (s->failed || h->failed)
            printf("|   | %zu transfers not acknowledged at saturation, %zu paced |||||||||\n", s->failed, h->failed);
        free(f->ready);
        free(f->commit);
    }
    double one = 0;
    for (int ci = 0; ci < n_configs; ci++)
        if (configs[ci] == 1) one = sat[ci].tps;
    for (int ci = 0; ci < n_configs; ci++)
        if (configs[ci] == 3 && one > 0)
            printf("\ngoal, 3 nodes >= half the 1-node rate: %.2f x (%s); p99 at half load %.1f ms (%s, goal < 100)\n",
                   sat[ci].tps / one, sat[ci].tps >= one / 2 ? "met" : "NOT met", half[ci].p99 * 1e3,
                   half[ci].p99 < 0.1 ? "met" : "NOT met");
    free(wallets);
    return 0;
}
