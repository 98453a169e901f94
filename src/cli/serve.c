/* caresync serve — open storage, load regions, start HTTP, wait for a
 * signal, shut down cleanly. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
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
#include "ledger/ledger.h"
#include "regions/regions.h"
#include "store/store.h"
#include "surveil/surveil.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: caresync serve [options]\n"
            "\n"
            "  --host ADDR              bind address (default 127.0.0.1; non-loopback needs TLS)\n"
            "  --port N                 TCP port (default 8080; 0 picks a free one)\n"
            "  --data-dir DIR           database directory (default ./var)\n"
            "  --web-dir DIR            static web assets (default ./web or the source tree's)\n"
            "  --tls-cert FILE          PEM certificate: serve HTTPS\n"
            "  --tls-key FILE           PEM private key for --tls-cert\n"
            "  --threads N              HTTP worker threads (default 4)\n"
            "  --max-body BYTES         request body limit (default 65536)\n"
            "  --session-ttl SECONDS    session lifetime (default 43200)\n"
            "  --login-max-failures N   failed logins per account from one client address per window\n"
            "                           (default 5)\n"
            "  --login-max-failures-ip N  failed logins per client address per window (default 20)\n"
            "  --login-window SECONDS   throttling window (default 900)\n"
            "  --login-max-failures-account N  failed logins per account from all addresses per\n"
            "                           account window (default 50)\n"
            "  --login-account-window SECONDS  (default 3600)\n"
            "  --signups-per-window N   new accounts per client address (IPv6: per /64) per window\n"
            "                           (default 20)\n"
            "  --signups-window SECONDS (default 3600)\n"
            "  --iso-codes-dir DIR      Debian iso-codes JSON (default /usr/share/iso-codes/json)\n"
            "  --node-key FILE          ledger node key (default DATA/keys/node.key, created if absent)\n"
            "  --admin-key FILE         ledger admin key (default DATA/keys/admin.key, created if absent)\n"
            "  --ledger-batch-ms N      seal pending ledger transactions at least every N ms (default 10)\n"
            "  --ledger-batch-max N     ... or as soon as N are pending (default 4096)\n"
            "  --genesis-rewards S,C,Y,D  tokens per contribution of screening, conditions, symptoms,\n"
            "                           demographics data (default 10,5,5,2); written into the genesis\n"
            "                           block of a new ledger, ignored for an existing one\n"
            "  --model FILE             screening model (default the source tree's models/screening.csm;\n"
            "                           missing: screening answers 503, everything else runs)\n"
            "  --backbone-dir DIR       where the model's pretrained backbone is, colon-separated\n"
            "                           (default ../shared/models:node_modules)\n"
            "  --screenings-per-window N  photos per account per window (default 20)\n"
            "  --screenings-window SECONDS  (default 600)\n"
            "  --small-cell-k K         surveillance releases suppress counts below K (default 11)\n"
            "  --privacy-budget E       total differential-privacy epsilon per organisation (default 10)\n"
            "  --seal-delay SECONDS     a week's surveillance counts are released this long after it ends\n"
            "                           (default 86400, at least 3600)\n"
            "  --reward-batch N         contributions' rewards go to the ledger in batches of at least N\n"
            "                           (default 11)\n"
            "  --max-connections N      open connections, all clients together (default 2000)\n"
            "  --max-connections-per-ip N  open connections from one client address (default 64)\n"
            "  --head-timeout SECONDS   time to send a whole request head, however slowly bytes\n"
            "                           come; also the keep-alive idle time (default 10)\n"
            "  --idle-timeout SECONDS   close a connection silent this long mid-request (default 30)\n"
            "  --min-body-rate BYTES    bytes/s a request body must average after --head-timeout\n"
            "                           (default 1024)\n"
            "  --log-level LEVEL        debug, info, warn or error (default info)\n");
}

static bool parse_int(const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
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

int cli_serve(int argc, char **argv) {
    core_config cfg;
    core_config_defaults(&cfg);
    enum { O_HOST = 256, O_PORT, O_DATA, O_WEB, O_CERT, O_KEY, O_THREADS, O_BODY, O_TTL, O_FAIL, O_FAILIP,
           O_WINDOW, O_ISO, O_LOG, O_HELP, O_NODEKEY, O_ADMINKEY, O_BATCH, O_BATCHMAX, O_REWARDS, O_MODEL, O_BACKBONE,
           O_SCREENS, O_SCREENWIN, O_SURVK, O_BUDGET, O_SEAL, O_RBATCH,
           O_MAXCONN, O_PERIP, O_HEADTO, O_IDLETO, O_BODYRATE, O_FAILACCT, O_ACCTWIN,
           O_SIGNUPS, O_SIGNUPWIN };
    static const struct option opts[] = {
        {"host", required_argument, 0, O_HOST},        {"port", required_argument, 0, O_PORT},
        {"data-dir", required_argument, 0, O_DATA},    {"web-dir", required_argument, 0, O_WEB},
        {"tls-cert", required_argument, 0, O_CERT},    {"tls-key", required_argument, 0, O_KEY},
        {"threads", required_argument, 0, O_THREADS},  {"max-body", required_argument, 0, O_BODY},
        {"session-ttl", required_argument, 0, O_TTL},  {"login-max-failures", required_argument, 0, O_FAIL},
        {"login-max-failures-ip", required_argument, 0, O_FAILIP},
        {"login-window", required_argument, 0, O_WINDOW}, {"iso-codes-dir", required_argument, 0, O_ISO},
        {"log-level", required_argument, 0, O_LOG},    {"help", no_argument, 0, O_HELP},
        {"node-key", required_argument, 0, O_NODEKEY}, {"admin-key", required_argument, 0, O_ADMINKEY},
        {"ledger-batch-ms", required_argument, 0, O_BATCH},
        {"ledger-batch-max", required_argument, 0, O_BATCHMAX}, {"genesis-rewards", required_argument, 0, O_REWARDS},
        {"model", required_argument, 0, O_MODEL},      {"backbone-dir", required_argument, 0, O_BACKBONE},
        {"screenings-per-window", required_argument, 0, O_SCREENS},
        {"screenings-window", required_argument, 0, O_SCREENWIN},
        {"small-cell-k", required_argument, 0, O_SURVK},
        {"privacy-budget", required_argument, 0, O_BUDGET},
        {"seal-delay", required_argument, 0, O_SEAL},
        {"reward-batch", required_argument, 0, O_RBATCH},
        {"max-connections", required_argument, 0, O_MAXCONN},
        {"max-connections-per-ip", required_argument, 0, O_PERIP},
        {"head-timeout", required_argument, 0, O_HEADTO},
        {"idle-timeout", required_argument, 0, O_IDLETO},
        {"min-body-rate", required_argument, 0, O_BODYRATE},
        {"login-max-failures-account", required_argument, 0, O_FAILACCT},
        {"login-account-window", required_argument, 0, O_ACCTWIN},
        {"signups-per-window", required_argument, 0, O_SIGNUPS},
        {"signups-window", required_argument, 0, O_SIGNUPWIN},
        {0, 0, 0, 0},
    };
    long v = 0, batch_ms = 10, batch_max = 4096;
    long rewards[LEDGER_CATEGORIES] = {10, 5, 5, 2};
    const char *node_key = NULL, *admin_key = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case O_HOST: cfg.host = optarg; break;
        case O_PORT: ok = parse_int(optarg, 0, 65535, &v); cfg.port = (int)v; break;
        case O_DATA: cfg.data_dir = optarg; break;
        case O_WEB: cfg.web_dir = optarg; break;
        case O_CERT: cfg.tls_cert = optarg; break;
        case O_KEY: cfg.tls_key = optarg; break;
        case O_THREADS: ok = parse_int(optarg, 1, 256, &v); cfg.threads = (int)v; break;
        case O_BODY: ok = parse_int(optarg, 1024, 64L << 20, &v); cfg.max_body = (size_t)v; break;
        case O_TTL: ok = parse_int(optarg, 60, 30L * 86400, &v); cfg.session_ttl = (int)v; break;
        case O_FAIL: ok = parse_int(optarg, 1, 1000000, &v); cfg.login_max_failures = (int)v; break;
        case O_FAILIP: ok = parse_int(optarg, 1, 1000000, &v); cfg.login_max_failures_ip = (int)v; break;
        case O_WINDOW: ok = parse_int(optarg, 1, 86400, &v); cfg.login_window = (int)v; break;
        case O_FAILACCT: ok = parse_int(optarg, 1, 1000000, &v); cfg.login_max_failures_account = (int)v; break;
        case O_ACCTWIN: ok = parse_int(optarg, 1, 7L * 86400, &v); cfg.login_account_window = (int)v; break;
        case O_SIGNUPS: ok = parse_int(optarg, 1, 1000000, &v); cfg.signup_per_window = (int)v; break;
        case O_SIGNUPWIN: ok = parse_int(optarg, 1, 7L * 86400, &v); cfg.signup_window = (int)v; break;
        case O_ISO: cfg.iso_codes_dir = optarg; break;
        case O_LOG:
            if (strcmp(optarg, "debug") == 0) core_log_set_level(CORE_LOG_DEBUG);
            else if (strcmp(optarg, "info") == 0) core_log_set_level(CORE_LOG_INFO);
            else if (strcmp(optarg, "warn") == 0) core_log_set_level(CORE_LOG_WARN);
            else if (strcmp(optarg, "error") == 0) core_log_set_level(CORE_LOG_ERROR);
            else ok = false;
            break;
        case O_HELP: usage(stdout); return 0;
        case O_NODEKEY: node_key = optarg; break;
        case O_ADMINKEY: admin_key = optarg; break;
        case O_BATCH: ok = parse_int(optarg, 0, 10000, &batch_ms); break;
        case O_BATCHMAX: ok = parse_int(optarg, 1, 1000000, &batch_max); break;
        case O_MODEL: cfg.model_path = optarg; break;
        case O_BACKBONE: cfg.backbone_dir = optarg; break;
        case O_SCREENS: ok = parse_int(optarg, 1, 1000000, &v); cfg.screen_per_window = (int)v; break;
        case O_SCREENWIN: ok = parse_int(optarg, 1, 86400, &v); cfg.screen_window = (int)v; break;
        case O_SURVK: ok = parse_int(optarg, 1, 1000, &v); cfg.surveil_k = (int)v; break;
        case O_BUDGET: ok = parse_int(optarg, 0, 1000, &v); cfg.surveil_budget = (double)v; break;
        case O_SEAL: ok = parse_int(optarg, SURVEIL_SEAL_DELAY_MIN, 60L * 86400, &v); cfg.surveil_seal_delay = (int)v; break;
        case O_RBATCH: ok = parse_int(optarg, 1, 10000, &v); cfg.surveil_reward_batch = (int)v; break;
        case O_MAXCONN: ok = parse_int(optarg, 1, 1000000, &v); cfg.max_connections = (int)v; break;
        case O_PERIP: ok = parse_int(optarg, 1, 1000000, &v); cfg.per_ip_connections = (int)v; break;
        case O_HEADTO: ok = parse_int(optarg, 1, 3600, &v); cfg.head_timeout = (int)v; break;
        case O_IDLETO: ok = parse_int(optarg, 1, 3600, &v); cfg.idle_timeout = (int)v; break;
        case O_BODYRATE: ok = parse_int(optarg, 1, 1L << 30, &v); cfg.min_body_rate = (int)v; break;
        case O_REWARDS: {
            char buf[128], *save = NULL, *tok;
            snprintf(buf, sizeof buf, "%s", optarg);
            int n = 0;
            for (tok = strtok_r(buf, ",", &save); ok && tok; tok = strtok_r(NULL, ",", &save))
                ok = n < LEDGER_CATEGORIES && parse_int(tok, 0, 1000000000L, &rewards[n++]);
            ok = ok && n == LEDGER_CATEGORIES;
            break;
        }
        default: usage(stderr); return 2;
        }
        if (!ok) {
            fprintf(stderr, "caresync serve: bad value for --%s: %s\n", opts[c - O_HOST].name, optarg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "caresync serve: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }

    /* Block the shutdown signals before any thread exists, so every thread
     * inherits the mask and only sigwait() below ever sees them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    core_error err = {0};
    store *st = NULL;
    regions *regs = NULL;
    accounts *acc = NULL;
    http_router *router = NULL;
    screening_model *model = NULL;
    screening_desk *desk = NULL;
    http_server *srv = NULL;
    ledger *led = NULL;
    share *shr = NULL;
    int status = 1;
    char dbpath[4096], ledpath[4096], keydir[4096], nodepath[4200], adminpath[4200];
    snprintf(dbpath, sizeof dbpath, "%s/caresync.db", cfg.data_dir);
    snprintf(ledpath, sizeof ledpath, "%s/ledger.db", cfg.data_dir);
    snprintf(keydir, sizeof keydir, "%s/keys", cfg.data_dir);
    snprintf(nodepath, sizeof nodepath, "%s", node_key ? node_key : "");
    snprintf(adminpath, sizeof adminpath, "%s", admin_key ? admin_key : "");
    if (!node_key) snprintf(nodepath, sizeof nodepath, "%s/node.key", keydir);
    if (!admin_key) snprintf(adminpath, sizeof adminpath, "%s/admin.key", keydir);
    ledger_options lopt;
    ledger_options_defaults(&lopt);
    lopt.path = ledpath;
    lopt.batch_ms = (int)batch_ms;
    lopt.batch_max = (int)batch_max;
    for (int i = 0; i < LEDGER_CATEGORIES; i++) lopt.genesis_reward[i] = (uint64_t)rewards[i];
    bool made_node = false, made_admin = false;
    /* The lock comes before anything in the directory is opened: a second
     * server on the same data would share SQLite files with the first but
     * not its ledger producer, session cache or memo, and its writes fail. */
    int lockfd = -1;
    cli_data_dir_warn(cfg.data_dir);
    if (cs_crypto_init(&err) || core_mkdirs(cfg.data_dir, &err) || core_lock_dir(cfg.data_dir, &lockfd, &err) ||
        core_mkdirs(keydir, &err) ||
        store_open(dbpath, cfg.threads + 1, &st, &err) || regions_load(cfg.iso_codes_dir, &regs, &err) ||
        ledger_key_load_or_create(nodepath, lopt.node_pk, lopt.node_sk, &made_node, &err) ||
        ledger_key_load_or_create(adminpath, lopt.admin_pk, lopt.admin_sk, &made_admin, &err) ||
        ledger_open(&lopt, &led, &err))
        goto out;
    if (made_node) core_log(CORE_LOG_INFO, "created ledger node key %s", nodepath);
    if (made_admin) core_log(CORE_LOG_INFO, "created ledger admin key %s", adminpath);
    accounts_options aopt;
    accounts_options_defaults(&aopt);
    aopt.session_ttl = cfg.session_ttl;
    aopt.max_failures = cfg.login_max_failures;
    aopt.max_failures_ip = cfg.login_max_failures_ip;
    aopt.window = cfg.login_window;
    aopt.max_failures_account = cfg.login_max_failures_account;
    aopt.account_window = cfg.login_account_window;
    aopt.signup_max = cfg.signup_per_window;
    aopt.signup_window = cfg.signup_window;
    if (accounts_open(st, &aopt, &acc, &err)) goto out;
    share_options sopt = {st, led, lopt.node_sk, lopt.admin_sk, cfg.surveil_k, cfg.surveil_budget,
                          cfg.surveil_seal_delay, cfg.surveil_reward_batch};
    if (share_open(&sopt, &shr, &err)) goto out;
    /* The screening model is optional: without it the rest of the service
     * runs and screenings answer 503 model_unavailable. */
    {
        core_error merr = {0};
        /* One thread per screening: requests already run on several HTTP
         * threads at once, and kernels splitting across cores that are busy
         * with other requests wait on each other (measured: 93 → 2 img/s
         * under a concurrent load with 2 threads each, 13 ms alone at 1). */
        nn_set_threads(1);
        if (screening_model_load(cfg.model_path, cfg.backbone_dir, &model, &merr))
            core_log(CORE_LOG_WARN, "screening disabled: %s", merr.message);
        else
            core_log(CORE_LOG_INFO, "screening model %s loaded (backbone from %s)", cfg.model_path, cfg.backbone_dir);
        screening_desk_options dopt = {cfg.screen_per_window, cfg.screen_window, 3600};
        if (screening_desk_new(model, &dopt, &desk, &err)) goto out;
    }
    router = http_router_new();
    if (!router || !api_register(router)) {
        core_fail(&err, CORE_ERR_NOMEM, NULL, "cannot build the route table");
        goto out;
    }
    api_context ctx = {.cfg = &cfg, .st = st, .acc = acc, .regs = regs, .led = led, .admin_sk = lopt.admin_sk,
                       .node_sk = lopt.node_sk, .desk = desk, .share = shr, .started = core_monotonic()};
    http_options hopt = {.host = cfg.host, .port = cfg.port, .threads = cfg.threads, .max_body = cfg.max_body,
                         .web_dir = cfg.web_dir, .tls_cert = cfg.tls_cert, .tls_key = cfg.tls_key,
                         .max_connections = (unsigned)fit_connections(cfg.max_connections),
                         .per_ip_connections = (unsigned)cfg.per_ip_connections,
                         .head_timeout = (unsigned)cfg.head_timeout, .idle_timeout = (unsigned)cfg.idle_timeout,
                         .min_body_rate = (unsigned)cfg.min_body_rate};
    if (http_server_start(&hopt, router, &ctx, &srv, &err)) goto out;

    bool tls = http_server_tls(srv);
    core_log(CORE_LOG_INFO, "caresync %s: database %s (schema v%d), web assets %s, %zu regions", core_version(),
             dbpath, store_schema_version(st), cfg.web_dir, regions_subdivision_count(regs));
    if (!tls) core_log(CORE_LOG_WARN, "no --tls-cert/--tls-key: plain HTTP, listening on loopback only");
    {
        char nodehex[2 * LEDGER_KEY + 1];
        cs_crypto_hex(ledger_node_key(led), LEDGER_KEY, nodehex);
        ledger_block head;
        ledger_head(led, &head, NULL);
        core_log(CORE_LOG_INFO, "ledger %s: height %llu, %llu transactions; node key %s", ledpath,
                 (unsigned long long)head.height, (unsigned long long)head.tree_size, nodehex);
    }
    printf("caresync listening on %s://%s:%d/\n", tls ? "https" : "http", cfg.host, http_server_port(srv));
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    core_log(CORE_LOG_INFO, "received %s: finishing in-flight requests and shutting down",
             sig == SIGINT ? "SIGINT" : "SIGTERM");
    status = 0;
out:
    if (status && err.code) fprintf(stderr, "caresync serve: %s\n", err.message);
    /* HTTP first (no new submissions), then the ledger seals what is pending. */
    http_server_stop(srv);
    share_close(shr);
    ledger_close(led);
    cs_crypto_wipe(lopt.node_sk, sizeof lopt.node_sk);
    cs_crypto_wipe(lopt.admin_sk, sizeof lopt.admin_sk);
    http_router_free(router);
    screening_desk_free(desk);
    screening_model_free(model);
    accounts_close(acc);
    regions_free(regs);
    store_close(st);
    core_unlock_dir(lockfd); /* last: the files are closed, another server may open them */
    if (!status) core_log(CORE_LOG_INFO, "stopped cleanly");
    return status;
}
