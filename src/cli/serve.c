/* caresync serve — open storage, load regions, start HTTP, wait for a
 * signal, shut down cleanly. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts/accounts.h"
#include "api/api.h"
#include "cli/cli.h"
#include "crypto/crypto.h"
#include "http/http.h"
#include "regions/regions.h"
#include "store/store.h"

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
            "  --login-max-failures N   failed logins per account per window (default 5)\n"
            "  --login-max-failures-ip N  failed logins per client address per window (default 20)\n"
            "  --login-window SECONDS   throttling window (default 900)\n"
            "  --iso-codes-dir DIR      Debian iso-codes JSON (default /usr/share/iso-codes/json)\n"
            "  --log-level LEVEL        debug, info, warn or error (default info)\n");
}

static bool parse_int(const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

int cli_serve(int argc, char **argv) {
    core_config cfg;
    core_config_defaults(&cfg);
    enum { O_HOST = 256, O_PORT, O_DATA, O_WEB, O_CERT, O_KEY, O_THREADS, O_BODY, O_TTL, O_FAIL, O_FAILIP,
           O_WINDOW, O_ISO, O_LOG, O_HELP };
    static const struct option opts[] = {
        {"host", required_argument, 0, O_HOST},        {"port", required_argument, 0, O_PORT},
        {"data-dir", required_argument, 0, O_DATA},    {"web-dir", required_argument, 0, O_WEB},
        {"tls-cert", required_argument, 0, O_CERT},    {"tls-key", required_argument, 0, O_KEY},
        {"threads", required_argument, 0, O_THREADS},  {"max-body", required_argument, 0, O_BODY},
        {"session-ttl", required_argument, 0, O_TTL},  {"login-max-failures", required_argument, 0, O_FAIL},
        {"login-max-failures-ip", required_argument, 0, O_FAILIP},
        {"login-window", required_argument, 0, O_WINDOW}, {"iso-codes-dir", required_argument, 0, O_ISO},
        {"log-level", required_argument, 0, O_LOG},    {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0},
    };
    long v = 0;
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
        case O_ISO: cfg.iso_codes_dir = optarg; break;
        case O_LOG:
            if (strcmp(optarg, "debug") == 0) core_log_set_level(CORE_LOG_DEBUG);
            else if (strcmp(optarg, "info") == 0) core_log_set_level(CORE_LOG_INFO);
            else if (strcmp(optarg, "warn") == 0) core_log_set_level(CORE_LOG_WARN);
            else if (strcmp(optarg, "error") == 0) core_log_set_level(CORE_LOG_ERROR);
            else ok = false;
            break;
        case O_HELP: usage(stdout); return 0;
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
    http_server *srv = NULL;
    int status = 1;
    char dbpath[4096];
    snprintf(dbpath, sizeof dbpath, "%s/caresync.db", cfg.data_dir);
    if (cs_crypto_init(&err) || core_mkdirs(cfg.data_dir, &err) ||
        store_open(dbpath, cfg.threads + 1, &st, &err) || regions_load(cfg.iso_codes_dir, &regs, &err))
        goto out;
    accounts_options aopt;
    accounts_options_defaults(&aopt);
    aopt.session_ttl = cfg.session_ttl;
    aopt.max_failures = cfg.login_max_failures;
    aopt.max_failures_ip = cfg.login_max_failures_ip;
    aopt.window = cfg.login_window;
    if (accounts_open(st, &aopt, &acc, &err)) goto out;
    router = http_router_new();
    if (!router || !api_register(router)) {
        core_fail(&err, CORE_ERR_NOMEM, NULL, "cannot build the route table");
        goto out;
    }
    api_context ctx = {.cfg = &cfg, .st = st, .acc = acc, .regs = regs, .started = core_monotonic()};
    http_options hopt = {.host = cfg.host, .port = cfg.port, .threads = cfg.threads, .max_body = cfg.max_body,
                         .web_dir = cfg.web_dir, .tls_cert = cfg.tls_cert, .tls_key = cfg.tls_key};
    if (http_server_start(&hopt, router, &ctx, &srv, &err)) goto out;

    bool tls = http_server_tls(srv);
    core_log(CORE_LOG_INFO, "caresync %s: database %s (schema v%d), web assets %s, %zu regions", core_version(),
             dbpath, store_schema_version(st), cfg.web_dir, regions_subdivision_count(regs));
    if (!tls) core_log(CORE_LOG_WARN, "no --tls-cert/--tls-key: plain HTTP, listening on loopback only");
    printf("caresync listening on %s://%s:%d/\n", tls ? "https" : "http", cfg.host, http_server_port(srv));
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    core_log(CORE_LOG_INFO, "received %s: finishing in-flight requests and shutting down",
             sig == SIGINT ? "SIGINT" : "SIGTERM");
    status = 0;
out:
    if (status && err.code) fprintf(stderr, "caresync serve: %s\n", err.message);
    http_server_stop(srv);
    http_router_free(router);
    accounts_close(acc);
    regions_free(regs);
    store_close(st);
    if (!status) core_log(CORE_LOG_INFO, "stopped cleanly");
    return status;
}
