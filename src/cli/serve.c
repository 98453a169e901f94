/* caresync serve — open storage, load regions, start HTTP, wait for a
 * signal, shut down cleanly. */
#include <getopt.h>
#include <inttypes.h>
#include <stddef.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "accounts/accounts.h"
#include "api/api.h"
#include "screening/screening.h"
#include "share/share.h"
#include "cli/cli.h"
#include "crypto/crypto.h"
#include "http/http.h"
#include "cluster/cluster.h"
#include "ledger/ledger.h"
#include "regions/regions.h"
#include "store/store.h"
#include "surveil/surveil.h"

/* What the command line sets: the service configuration, the ledger's
 * options (its defaults from ledger_options_defaults(), so they are stated
 * once, in the ledger) and the key files. */
typedef struct {
    core_config cfg;
    ledger_options lopt;
    const char *node_key, *admin_key;
    const char *cluster_file; /* NULL: a single node (the default) */
} serve_settings;

static void settings_defaults(serve_settings *s) {
    memset(s, 0, sizeof *s);
    core_config_defaults(&s->cfg);
    ledger_options_defaults(&s->lopt);
}

/* How an option's value is stored at its field. */
typedef enum {
    ARG_STR,     /* const char * (borrowed from argv) */
    ARG_INT,     /* int in [lo, hi] */
    ARG_SIZE,    /* size_t in [lo, hi] */
    ARG_DOUBLE,  /* double from a whole number in [lo, hi] */
    ARG_REWARDS, /* LEDGER_CATEGORIES comma-separated uint64_t in [lo, hi] */
    ARG_LOG,     /* log level name (no field) */
    ARG_HELP,    /* no argument: print the usage */
} arg_kind;

/* One option: its name and argument, where and how its value goes, and its
 * help. "{}" in the help is replaced by the field's default value, so the
 * usage text shows the defaults the code uses. The getopt table, the usage
 * text and the dispatch are all built from this one list. */
typedef struct {
    const char *name;
    const char *metavar; /* NULL: takes no argument */
    arg_kind kind;
    size_t off; /* offsetof(serve_settings, ...) */
    long lo, hi;
    const char *help; /* lines after the first are indented under it */
} serve_option;

#define CFG(f) offsetof(serve_settings, cfg.f)
#define LED(f) offsetof(serve_settings, lopt.f)
#define DAY 86400L
static const serve_option options[] = {
    {"host", "ADDR", ARG_STR, CFG(host), 0, 0, "bind address (default 127.0.0.1; non-loopback needs TLS)"},
    {"port", "N", ARG_INT, CFG(port), 0, 65535, "TCP port (default {}; 0 picks a free one)"},
    {"data-dir", "DIR", ARG_STR, CFG(data_dir), 0, 0, "database directory (default ./{})"},
    {"web-dir", "DIR", ARG_STR, CFG(web_dir), 0, 0,
     "static web assets (default ./web, else ../web from the\n"
     "executable's directory: the checkout's, for build/caresync)"},
    {"tls-cert", "FILE", ARG_STR, CFG(tls_cert), 0, 0, "PEM certificate: serve HTTPS"},
    {"tls-key", "FILE", ARG_STR, CFG(tls_key), 0, 0, "PEM private key for --tls-cert"},
    {"threads", "N", ARG_INT, CFG(threads), 1, 256, "HTTP worker threads (default {})"},
    {"max-body", "BYTES", ARG_SIZE, CFG(max_body), 1024, 64L << 20, "request body limit (default {})"},
    {"session-ttl", "SECONDS", ARG_INT, CFG(session_ttl), 60, 30 * DAY, "session lifetime (default {})"},
    {"login-max-failures", "N", ARG_INT, CFG(login_max_failures), 1, 1000000,
     "failed logins per account from one client address per window\n(default {})"},
    {"login-max-failures-ip", "N", ARG_INT, CFG(login_max_failures_ip), 1, 1000000,
     "failed logins per client address per window (default {})"},
    {"login-window", "SECONDS", ARG_INT, CFG(login_window), 1, DAY, "throttling window (default {})"},
    {"login-max-failures-account", "N", ARG_INT, CFG(login_max_failures_account), 1, 1000000,
     "failed logins per account from all addresses per\naccount window (default {})"},
    {"login-account-window", "SECONDS", ARG_INT, CFG(login_account_window), 1, 7 * DAY, "(default {})"},
    {"signups-per-window", "N", ARG_INT, CFG(signup_per_window), 1, 1000000,
     "new accounts per client address (IPv6: per /64) per window\n(default {})"},
    {"signups-window", "SECONDS", ARG_INT, CFG(signup_window), 1, 7 * DAY, "(default {})"},
    {"iso-codes-dir", "DIR", ARG_STR, CFG(iso_codes_dir), 0, 0, "Debian iso-codes JSON (default {})"},
    {"node-key", "FILE", ARG_STR, offsetof(serve_settings, node_key), 0, 0,
     "ledger node key (default DATA/keys/node.key, created if absent)"},
    {"admin-key", "FILE", ARG_STR, offsetof(serve_settings, admin_key), 0, 0,
     "ledger admin key (default DATA/keys/admin.key, created if absent)"},
    {"cluster", "FILE", ARG_STR, offsetof(serve_settings, cluster_file), 0, 0,
     "run as one node of a ledger cluster (JSON: nodes with id,\n"
     "address, key); this node is the one with --node-key's key;\n"
     "raft log in DATA/raft (default: a single node)"},
    {"ledger-batch-ms", "N", ARG_INT, LED(batch_ms), 0, 10000,
     "seal pending ledger transactions at least every N ms (default {})"},
    {"ledger-batch-max", "N", ARG_INT, LED(batch_max), 1, 1000000, "... or as soon as N are pending (default {})"},
    {"genesis-rewards", "S,C,Y,D", ARG_REWARDS, LED(genesis_reward), 0, 1000000000L,
     "tokens per contribution of screening, conditions, symptoms,\n"
     "demographics data (default {}); written into the genesis\n"
     "block of a new ledger, ignored for an existing one"},
    {"model", "FILE", ARG_STR, CFG(model_path), 0, 0,
     "screening model (default models/screening.csm, else ../models/\n"
     "screening.csm from the executable's directory; missing: screening\n"
     "answers 503, everything else runs)"},
    {"backbone-dir", "DIR", ARG_STR, CFG(backbone_dir), 0, 0,
     "where the model's pretrained backbone is, colon-separated\n(default {})"},
    {"screenings-per-window", "N", ARG_INT, CFG(screen_per_window), 1, 1000000,
     "photos per account per window (default {})"},
    {"screenings-window", "SECONDS", ARG_INT, CFG(screen_window), 1, DAY, "(default {})"},
    {"small-cell-k", "K", ARG_INT, CFG(surveil_k), 1, 1000,
     "surveillance releases suppress counts below K (default {})"},
    {"privacy-budget", "E", ARG_DOUBLE, CFG(surveil_budget), 0, 1000,
     "total differential-privacy epsilon per organisation (default {})"},
    {"seal-delay", "SECONDS", ARG_INT, CFG(surveil_seal_delay), SURVEIL_SEAL_DELAY_MIN, 60 * DAY,
     "a week's surveillance counts are released this long after it ends\n(default {}, at least 3600)"},
    {"reward-batch", "N", ARG_INT, CFG(surveil_reward_batch), 1, 10000,
     "contributions' rewards go to the ledger in batches of at least N\n(default {})"},
    {"market-daily-cap", "TOKENS", ARG_INT, CFG(market_daily_cap), 1, 1000000000,
     "tokens one person may earn from data requests per UTC day\n(default {})"},
    {"share-daily-cap", "TOKENS", ARG_INT, CFG(share_daily_cap), 0, 1000000000,
     "tokens one person may earn from shared screening results per UTC\nday, 0 for none (default {})"},
    {"photo-match-bits", "N", ARG_INT, CFG(share_photo_distance), 0, 32,
     "shared photos whose perceptual hashes differ in at most N of 64\nbits are the same photo (default {})"},
    {"max-connections", "N", ARG_INT, CFG(max_connections), 1, 1000000,
     "open connections, all clients together (default {})"},
    {"max-connections-per-ip", "N", ARG_INT, CFG(per_ip_connections), 1, 1000000,
     "open connections from one client address (default {})"},
    {"head-timeout", "SECONDS", ARG_INT, CFG(head_timeout), 1, 3600,
     "time to send a whole request head, however slowly bytes\n"
     "come; also the keep-alive idle time (default {})"},
    {"idle-timeout", "SECONDS", ARG_INT, CFG(idle_timeout), 1, 3600,
     "close a connection silent this long mid-request (default {})"},
    {"min-body-rate", "BYTES", ARG_INT, CFG(min_body_rate), 1, 1L << 30,
     "bytes/s a request body must average after --head-timeout\n(default {})"},
    {"log-level", "LEVEL", ARG_LOG, 0, 0, 0, "debug, info, warn or error (default info)"},
    {"help", NULL, ARG_HELP, 0, 0, 0, "this text"},
};
#undef CFG
#undef LED
#undef DAY
#define OPTION_COUNT (sizeof options / sizeof *options)
_Static_assert(LEDGER_CATEGORIES == 4, "--genesis-rewards names four categories (S,C,Y,D)");

/* The value of o's field in s as text (its default when s holds defaults). */
static void field_text(const serve_settings *s, const serve_option *o, char *out, size_t cap) {
    const char *at = (const char *)s + o->off;
    switch (o->kind) {
    case ARG_STR: {
        const char *v;
        memcpy(&v, at, sizeof v);
        snprintf(out, cap, "%s", v ? v : "none");
        break;
    }
    case ARG_INT: snprintf(out, cap, "%d", *(const int *)(const void *)at); break;
    case ARG_SIZE: snprintf(out, cap, "%zu", *(const size_t *)(const void *)at); break;
    case ARG_DOUBLE: snprintf(out, cap, "%g", *(const double *)(const void *)at); break;
    case ARG_REWARDS: {
        const uint64_t *r = (const uint64_t *)(const void *)at;
        size_t n = 0;
        out[0] = 0;
        for (int i = 0; i < LEDGER_CATEGORIES && n < cap; i++)
            n += (size_t)snprintf(out + n, cap - n, "%s%" PRIu64, i ? "," : "", r[i]);
        break;
    }
    default: snprintf(out, cap, "%s", ""); break;
    }
}

static void usage(FILE *f) {
    serve_settings d;
    settings_defaults(&d);
    fprintf(f, "usage: caresync serve [options]\n\n");
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const serve_option *o = &options[i];
        char head[64], dflt[8192];
        snprintf(head, sizeof head, "--%s%s%s", o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        fprintf(f, strlen(head) <= 24 ? "  %-24s " : "  %s  ", head);
        field_text(&d, o, dflt, sizeof dflt);
        for (const char *p = o->help; *p; p++) {
            if (p[0] == '{' && p[1] == '}')
                fputs(dflt, f), p++;
            else if (*p == '\n')
                fputs("\n                           ", f);
            else
                fputc(*p, f);
        }
        fputc('\n', f);
    }
}

static bool parse_long(const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* Store arg as o's value in s; false when it is out of range or malformed. */
static bool set_option(serve_settings *s, const serve_option *o, const char *arg) {
    void *at = (char *)s + o->off;
    long v = 0;
    switch (o->kind) {
    case ARG_STR: memcpy(at, &arg, sizeof arg); return true;
    case ARG_INT:
        if (!parse_long(arg, o->lo, o->hi, &v)) return false;
        *(int *)at = (int)v;
        return true;
    case ARG_SIZE:
        if (!parse_long(arg, o->lo, o->hi, &v)) return false;
        *(size_t *)at = (size_t)v;
        return true;
    case ARG_DOUBLE:
        if (!parse_long(arg, o->lo, o->hi, &v)) return false;
        *(double *)at = (double)v;
        return true;
    case ARG_REWARDS: {
        uint64_t r[LEDGER_CATEGORIES];
        int n = 0;
        for (const char *p = arg;; p++) {
            char tok[32];
            size_t l = strcspn(p, ",");
            if (n == LEDGER_CATEGORIES || l >= sizeof tok) return false;
            memcpy(tok, p, l);
            tok[l] = 0;
            if (!parse_long(tok, o->lo, o->hi, &v)) return false;
            r[n++] = (uint64_t)v;
            p += l;
            if (!*p) break;
        }
        if (n != LEDGER_CATEGORIES) return false;
        memcpy(at, r, sizeof r);
        return true;
    }
    case ARG_LOG: {
        static const struct {
            const char *name;
            core_log_level level;
        } levels[] = {
            {"debug", CORE_LOG_DEBUG}, {"info", CORE_LOG_INFO}, {"warn", CORE_LOG_WARN}, {"error", CORE_LOG_ERROR}};
        for (size_t i = 0; i < sizeof levels / sizeof *levels; i++)
            if (strcmp(arg, levels[i].name) == 0) {
                core_log_set_level(levels[i].level);
                return true;
            }
        return false;
    }
    case ARG_HELP: return true;
    }
    return false;
}

/* Parse argv into s. Returns -1 to go on, else the exit status (0 after
 * --help, 2 on a usage error with the reason printed). */
static int parse_args(int argc, char **argv, serve_settings *s) {
    struct option lo[OPTION_COUNT + 1];
    for (size_t i = 0; i < OPTION_COUNT; i++)
        lo[i] =
            (struct option){options[i].name, options[i].metavar ? required_argument : no_argument, NULL, 256 + (int)i};
    lo[OPTION_COUNT] = (struct option){0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c < 256 || c >= 256 + (int)OPTION_COUNT) {
            usage(stderr);
            return 2;
        }
        const serve_option *o = &options[c - 256];
        if (o->kind == ARG_HELP) {
            usage(stdout);
            return 0;
        }
        if (!set_option(s, o, optarg)) {
            fprintf(stderr, "caresync serve: bad value for --%s: %s\n", o->name, optarg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "caresync serve: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return -1;
}

/* Each connection is a descriptor; the database, ledger, model and static
 * files need more. Raise the soft limit toward the hard one so the
 * connection limit can be reached, and lower the limit (with a warning) if
 * the hard one is too small: running out of descriptors would refuse
 * legitimate clients where the connection limit refuses only the excess. */
#define SPARE_FDS 256
static long fit_connections(long want) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return want;
    rlim_t need = (rlim_t)want + SPARE_FDS;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        rlim_t cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
        if (cur > rl.rlim_cur) {
            rl.rlim_cur = cur;
            setrlimit(RLIMIT_NOFILE, &rl);
            getrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        long fit = (long)rl.rlim_cur > 2 * SPARE_FDS ? (long)rl.rlim_cur - SPARE_FDS : (long)rl.rlim_cur / 2;
        core_log(CORE_LOG_WARN, "only %ld file descriptors: serving at most %ld connections instead of %ld",
                 (long)rl.rlim_cur, fit, want);
        return fit;
    }
    return want;
}

/* Everything serve opens, closed by serve_close() in the reverse order. */
typedef struct {
    serve_settings *set;
    char dbpath[4096], ledpath[4096], keydir[4096], nodepath[4200], adminpath[4200];
    int lockfd;
    store *st;
    regions *regs;
    accounts *acc;
    http_router *router;
    screening_model *model;
    screening_desk *desk;
    http_server *srv;
    ledger *led;
    cluster *clu; /* NULL: single node */
    char raftdir[4200];
    share *shr;
    review *rev;
    market *mkt;
    api_context ctx;
} serve_state;

/* The cluster stopped applying blocks: the operator must hear why. */
static void log_halt(void *ud, const core_error *why) {
    (void)ud;
    core_log(CORE_LOG_ERROR, "cluster: this node stopped applying blocks and serves the last good state: %s",
             why->message);
}

/* With --cluster: this node (the one whose key is --node-key's), the raft
 * log in DATA/raft, and the ledger made a follower of the cluster's
 * genesis, which the first leader seals listing every node key. */
static core_status open_cluster(serve_state *S, core_error *err) {
    if (!S->set->cluster_file) return CORE_OK;
    ledger_options *lopt = &S->set->lopt;
    cluster_options copt;
    cluster_options_defaults(&copt);
    core_status rc = cluster_options_load(S->set->cluster_file, &copt, err);
    if (rc) return rc;
    for (size_t i = 0; i < copt.n_nodes; i++)
        if (memcmp(copt.nodes[i].key, lopt->node_pk, LEDGER_KEY) == 0) copt.self = copt.nodes[i].id;
    if (!copt.self) {
        char hex[2 * LEDGER_KEY + 1];
        cs_crypto_hex(lopt->node_pk, LEDGER_KEY, hex);
        return core_fail(err, CORE_ERR_INVALID, "cluster", "this node's key %s is not in %s", hex,
                         S->set->cluster_file);
    }
    snprintf(S->raftdir, sizeof S->raftdir, "%s/raft", S->set->cfg.data_dir);
    copt.dir = S->raftdir;
    copt.on_halt = log_halt;
    if ((rc = cluster_open(&copt, &S->clu, err))) return rc;
    lopt->consensus = cluster_consensus(S->clu);
    lopt->genesis_deferred = true;
    lopt->n_genesis_nodes = cluster_node_keys(S->clu, lopt->genesis_nodes);
    core_log(CORE_LOG_INFO, "cluster node %llu of %zu (raft log %s)", (unsigned long long)copt.self, copt.n_nodes,
             S->raftdir);
    return CORE_OK;
}

/* The data directory (locked), its database, regions, keys and ledger. */
static core_status open_storage(serve_state *S, core_error *err) {
    core_config *cfg = &S->set->cfg;
    ledger_options *lopt = &S->set->lopt;
    snprintf(S->dbpath, sizeof S->dbpath, "%s/caresync.db", cfg->data_dir);
    snprintf(S->ledpath, sizeof S->ledpath, "%s/ledger.db", cfg->data_dir);
    snprintf(S->keydir, sizeof S->keydir, "%s/keys", cfg->data_dir);
    if (S->set->node_key)
        snprintf(S->nodepath, sizeof S->nodepath, "%s", S->set->node_key);
    else
        snprintf(S->nodepath, sizeof S->nodepath, "%s/node.key", S->keydir);
    if (S->set->admin_key)
        snprintf(S->adminpath, sizeof S->adminpath, "%s", S->set->admin_key);
    else
        snprintf(S->adminpath, sizeof S->adminpath, "%s/admin.key", S->keydir);
    lopt->path = S->ledpath;
    bool made_node = false, made_admin = false;
    /* The lock comes before anything in the directory is opened: a second
     * server on the same data would share SQLite files with the first but
     * not its ledger producer, session cache or memo, and its writes fail. */
    cli_data_dir_warn(cfg->data_dir);
    core_status rc = CORE_OK;
    if ((rc = cs_crypto_init(err)) || (rc = core_mkdirs(cfg->data_dir, err)) ||
        (rc = core_lock_dir(cfg->data_dir, &S->lockfd, err)) || (rc = core_mkdirs(S->keydir, err)) ||
        (rc = store_open(S->dbpath, cfg->threads + 1, &S->st, err)) ||
        (rc = regions_load(cfg->iso_codes_dir, &S->regs, err)) ||
        (rc = ledger_key_load_or_create(S->nodepath, lopt->node_pk, lopt->node_sk, &made_node, err)) ||
        (rc = ledger_key_load_or_create(S->adminpath, lopt->admin_pk, lopt->admin_sk, &made_admin, err)) ||
        (rc = open_cluster(S, err)) || (rc = ledger_open(lopt, &S->led, err)) ||
        (S->clu && (rc = cluster_start(S->clu, S->led, err))))
        return rc;
    if (made_node) core_log(CORE_LOG_INFO, "created ledger node key %s", S->nodepath);
    if (made_admin) core_log(CORE_LOG_INFO, "created ledger admin key %s", S->adminpath);
    return CORE_OK;
}

/* Accounts, the screening desk (with the model when it loads) and the
 * HTTP server. */
static core_status start_service(serve_state *S, core_error *err) {
    core_config *cfg = &S->set->cfg;
    accounts_options aopt;
    accounts_options_defaults(&aopt);
    aopt.session_ttl = cfg->session_ttl;
    aopt.max_failures = cfg->login_max_failures;
    aopt.max_failures_ip = cfg->login_max_failures_ip;
    aopt.window = cfg->login_window;
    aopt.max_failures_account = cfg->login_max_failures_account;
    aopt.account_window = cfg->login_account_window;
    aopt.signup_max = cfg->signup_per_window;
    aopt.signup_window = cfg->signup_window;
    core_status rc = accounts_open(S->st, &aopt, &S->acc, err);
    if (rc) return rc;
    share_options sopt = {S->st,
                          S->led,
                          S->set->lopt.node_sk,
                          S->set->lopt.admin_sk,
                          cfg->surveil_k,
                          cfg->surveil_budget,
                          cfg->surveil_seal_delay,
                          cfg->surveil_reward_batch,
                          cfg->share_photo_distance,
                          cfg->share_daily_cap};
    if ((rc = share_open(&sopt, &S->shr, err))) return rc;
    /* Review offers name conditions of the screening's table; review/ is
     * given the codes rather than depending on screening/. */
    const char *codes[64];
    size_t n_codes = 0;
    for (int i = 0; i < screening_condition_count() && n_codes < sizeof codes / sizeof codes[0]; i++)
        codes[n_codes++] = screening_condition_at(i)->code;
    /* An answer feeds surveillance and training through the api (which
     * knows share and screening); S->ctx is filled in below, before any
     * request can answer a case. */
    review_options ropt = {
        S->st,   S->led,          S->regs, codes, n_codes, S->set->lopt.node_sk, NULL, api_review_answered,
        &S->ctx, api_review_ended};
    if ((rc = review_open(&ropt, &S->rev, err))) return rc;
    int resolved = 0;
    core_error rerr = {0};
    market_options mopt = {.st = S->st,
                           .led = S->led,
                           .regs = S->regs,
                           .conditions = codes,
                           .n_conditions = n_codes,
                           .node_sk = S->set->lopt.node_sk,
                           .daily_cap = cfg->market_daily_cap};
    if ((rc = market_open(&mopt, &S->mkt, err))) return rc;
    /* As for review: finish or drop what a crash cut between the files. */
    if (market_recover(S->mkt, &resolved, &rerr))
        core_log(CORE_LOG_ERROR, "data-request recovery incomplete: %s", rerr.message);
    else if (resolved)
        core_log(CORE_LOG_WARN, "data-request recovery: %d interrupted step(s) resolved", resolved);
    /* The screening model is optional: without it the rest of the service
     * runs and screenings answer 503 model_unavailable. */
    core_error merr = {0};
    /* One thread per screening: requests already run on several HTTP
     * threads at once, and kernels splitting across cores that are busy
     * with other requests wait on each other (measured: 93 → 2 img/s
     * under a concurrent load with 2 threads each, 13 ms alone at 1). */
    nn_set_threads(1);
    if (screening_model_load(cfg->model_path, cfg->backbone_dir, &S->model, &merr))
        core_log(CORE_LOG_WARN, "screening disabled: %s", merr.message);
    else
        core_log(CORE_LOG_INFO, "screening model %s loaded (backbone from %s)", cfg->model_path, cfg->backbone_dir);
    screening_desk_options dopt = {cfg->screen_per_window, cfg->screen_window, 3600};
    if ((rc = screening_desk_new(S->model, &dopt, &S->desk, err))) return rc;
    S->router = http_router_new();
    if (!S->router || !api_register(S->router))
        return core_fail(err, CORE_ERR_NOMEM, NULL, "cannot build the route table");
    S->ctx = (api_context){.cfg = cfg,
                           .st = S->st,
                           .acc = S->acc,
                           .regs = S->regs,
                           .led = S->led,
                           .admin_sk = S->set->lopt.admin_sk,
                           .node_sk = S->set->lopt.node_sk,
                           .desk = S->desk,
                           .share = S->shr,
                           .review = S->rev,
                           .market = S->mkt,
                           .cluster = S->clu,
                           .started = core_monotonic()};
    /* Before any request: finish or drop the review steps a crash cut
     * between ledger.db and caresync.db (review/cases.c). A failure is
     * logged, not fatal: the cases concerned stay blocked (never wrong)
     * until a later start resolves them. After S->ctx: an answer a crash
     * cut off is fed again (api_review_answered). */
    resolved = 0;
    memset(&rerr, 0, sizeof rerr);
    if (review_recover(S->rev, &resolved, &rerr))
        core_log(CORE_LOG_ERROR, "review recovery incomplete: %s", rerr.message);
    else if (resolved)
        core_log(CORE_LOG_WARN, "review recovery: %d interrupted case step(s) resolved", resolved);
    http_options hopt = {.host = cfg->host,
                         .port = cfg->port,
                         .threads = cfg->threads,
                         .max_body = cfg->max_body,
                         .web_dir = cfg->web_dir,
                         .tls_cert = cfg->tls_cert,
                         .tls_key = cfg->tls_key,
                         .max_connections = (unsigned)fit_connections(cfg->max_connections),
                         .per_ip_connections = (unsigned)cfg->per_ip_connections,
                         .head_timeout = (unsigned)cfg->head_timeout,
                         .idle_timeout = (unsigned)cfg->idle_timeout,
                         .min_body_rate = (unsigned)cfg->min_body_rate};
    return http_server_start(&hopt, S->router, &S->ctx, &S->srv, err);
}

static void log_started(const serve_state *S) {
    const core_config *cfg = &S->set->cfg;
    bool tls = http_server_tls(S->srv);
    core_log(CORE_LOG_INFO, "caresync %s: database %s (schema v%d), web assets %s, %zu regions", core_version(),
             S->dbpath, store_schema_version(S->st), cfg->web_dir, regions_subdivision_count(S->regs));
    if (!tls) core_log(CORE_LOG_WARN, "no --tls-cert/--tls-key: plain HTTP, listening on loopback only");
    char nodehex[2 * LEDGER_KEY + 1];
    cs_crypto_hex(ledger_node_key(S->led), LEDGER_KEY, nodehex);
    ledger_block head = {0};
    ledger_head(S->led, &head, NULL);
    core_log(CORE_LOG_INFO, "ledger %s: height %llu, %llu transactions; node key %s", S->ledpath,
             (unsigned long long)head.height, (unsigned long long)head.tree_size, nodehex);
    printf("caresync listening on %s://%s:%d/\n", tls ? "https" : "http", cfg->host, http_server_port(S->srv));
    fflush(stdout);
}

static void serve_close(serve_state *S) {
    /* HTTP first (no new submissions), then the ledger seals what is pending. */
    http_server_stop(S->srv);
    share_close(S->shr);
    review_close(S->rev);
    market_close(S->mkt);
    cluster_stop(S->clu); /* no block arrives or commits from here on */
    ledger_close(S->led);
    cluster_close(S->clu);
    cs_crypto_wipe(S->set->lopt.node_sk, sizeof S->set->lopt.node_sk);
    cs_crypto_wipe(S->set->lopt.admin_sk, sizeof S->set->lopt.admin_sk);
    http_router_free(S->router);
    screening_desk_free(S->desk);
    screening_model_free(S->model);
    accounts_close(S->acc);
    regions_free(S->regs);
    store_close(S->st);
    core_unlock_dir(S->lockfd); /* last: the files are closed, another server may open them */
}

int cli_serve(int argc, char **argv) {
    serve_settings set;
    settings_defaults(&set);
    int status = parse_args(argc, argv, &set);
    if (status >= 0) return status;

    /* Block the shutdown signals before any thread exists, so every thread
     * inherits the mask and only sigwait() below ever sees them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    core_error err = {0};
    serve_state S = {.set = &set, .lockfd = -1};
    status = 1;
    if (open_storage(&S, &err) == CORE_OK && start_service(&S, &err) == CORE_OK) {
        log_started(&S);
        int sig = 0;
        sigwait(&stop, &sig);
        core_log(CORE_LOG_INFO, "received %s: finishing in-flight requests and shutting down",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
        status = 0;
    }
    if (status && err.code) fprintf(stderr, "caresync serve: %s\n", err.message);
    serve_close(&S);
    if (!status) core_log(CORE_LOG_INFO, "stopped cleanly");
    return status;
}
