/* core — the embedded configuration defaults. The service must run with no
 * configuration at all, so every setting has a safe default here.
 *
 * No path of the source tree is compiled in: the binary may be built in one
 * place and run from another. Web assets, the bundled model and the
 * backbones are looked up in the current directory (a checkout, as `make
 * run` uses) and else relative to the executable: build/caresync is one
 * level below the checkout, so its ../web, ../models and ../node_modules
 * are the checkout's, and ../../shared is the shared data beside it. The
 * iso-codes path is where Debian's package installs it. */
#include "core/core.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ISO_CODES_DIR "/usr/share/iso-codes/json"
#define WEB_DIR "web"
#define MODEL "models/screening.csm"
#define BACKBONE_DIRS "../shared/models:node_modules"

/* Filled once: defaults found beside the executable (static, so the
 * borrowed strings of core_config stay valid for the process). */
static struct {
    char web[PATH_MAX + 64];
    char model[PATH_MAX + 64];
    char backbones[2 * PATH_MAX + 128];
} found;
static pthread_once_t found_once = PTHREAD_ONCE_INIT;

static bool readable(const char *path) { return access(path, R_OK) == 0; }

/* The checkout an executable at exe belongs to: the parent of its
 * directory (build/caresync → the checkout), or "" when /proc/self/exe is unreadable. */
static void checkout_of_exe(char *root, size_t cap) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    root[0] = 0;
    if (n <= 0) return;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return;
    *slash = 0;
    char up[PATH_MAX + 8], real[PATH_MAX];
    snprintf(up, sizeof up, "%s/..", exe);
    /* resolved, so the paths logged and shown in --help read plainly */
    snprintf(root, cap, "%s", realpath(up, real) ? real : up);
}

static void find_defaults(void) {
    char root[PATH_MAX + 8];
    checkout_of_exe(root, sizeof root);
    snprintf(found.web, sizeof found.web, "%s", WEB_DIR);
    snprintf(found.model, sizeof found.model, "%s", MODEL);
    snprintf(found.backbones, sizeof found.backbones, "%s", BACKBONE_DIRS);
    if (!root[0]) return;
    char web[PATH_MAX + 64], model[PATH_MAX + 64];
    snprintf(web, sizeof web, "%s/" WEB_DIR "/index.html", root);
    snprintf(model, sizeof model, "%s/" MODEL, root);
    if (!readable(WEB_DIR "/index.html") && readable(web)) snprintf(found.web, sizeof found.web, "%s/" WEB_DIR, root);
    if (!readable(MODEL) && readable(model)) snprintf(found.model, sizeof found.model, "%s", model);
    /* Both places, the current directory's first: the model names its
     * backbone, and the search takes the first directory that has it. */
    snprintf(found.backbones, sizeof found.backbones, "%s:%s/../shared/models:%s/node_modules", BACKBONE_DIRS, root,
             root);
}

void core_config_defaults(core_config *cfg) {
    cfg->host = "127.0.0.1";
    cfg->port = 8080;
    cfg->data_dir = "var";
    /* Prefer ./web when run from a checkout; else the checkout the
     * executable is in, so `build/caresync serve` works from anywhere. */
    pthread_once(&found_once, find_defaults);
    cfg->web_dir = found.web;
    cfg->iso_codes_dir = ISO_CODES_DIR;
    cfg->tls_cert = NULL;
    cfg->tls_key = NULL;
    cfg->threads = 4;
    cfg->max_body = 64 * 1024;
    cfg->session_ttl = 12 * 3600;
    cfg->login_max_failures = 5;
    cfg->login_max_failures_ip = 20;
    cfg->login_window = 15 * 60;
    cfg->login_max_failures_account = 50;
    cfg->login_account_window = 3600;
    cfg->signup_per_window = 20;
    cfg->signup_window = 3600;
    cfg->model_path = found.model;
    cfg->backbone_dir = found.backbones;
    cfg->screen_per_window = 20;
    cfg->screen_window = 10 * 60;
    cfg->surveil_k = 11;
    cfg->surveil_budget = 10.0;
    /* A week is released a day after it ends (surveil.h, "sealed weeks"):
     * long enough for a result shared just before midnight on Sunday, short
     * enough that weekly surveillance stays timely. Rewards are paid in
     * batches as large as the smallest published count. */
    cfg->surveil_seal_delay = 86400;
    cfg->surveil_reward_batch = 11;
    /* Data requests: enough for a few requests a day, not a living made of
     * accepting everything (issue 14's anti-abuse limit). */
    cfg->market_daily_cap = 200;
    /* Shared screening results (issue 14's anti-abuse): a day's cap well
     * above what honest sharing earns (a few results) and far below a
     * living; photos within 10 bits of 64 are one photo (docs/SURVEILLANCE.md,
     * "Photo hashes": re-encoded, resized, brightened copies all match, 3 %
     * crops 94 %, different photos 0.014 %). */
    cfg->share_daily_cap = 50;
    cfg->share_photo_distance = 10;
    /* Headroom against slow clients: one address holds at most 64 sockets
     * (a clinic's browsers behind one NAT fit), so filling all 2000 takes
     * dozens of addresses, and a socket that dribbles its request head is
     * cut after 10 s however steadily its bytes come. */
    cfg->max_connections = 2000;
    cfg->per_ip_connections = 64;
    cfg->head_timeout = 10;
    cfg->idle_timeout = 30;
    cfg->min_body_rate = 1024;
}
