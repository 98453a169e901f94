/* core — the embedded configuration defaults. The service must run with no
 * configuration at all, so every setting has a safe default here. */
#include "core/core.h"

#include <unistd.h>

#ifndef CARESYNC_DEFAULT_WEB_DIR
#define CARESYNC_DEFAULT_WEB_DIR "web"
#endif
#ifndef CARESYNC_DEFAULT_MODEL
#define CARESYNC_DEFAULT_MODEL "models/screening.csm"
#endif
#ifndef CARESYNC_DEFAULT_BACKBONE_DIR
#define CARESYNC_DEFAULT_BACKBONE_DIR "../shared/models:node_modules"
#endif
#ifndef CARESYNC_ISO_CODES_DIR
#define CARESYNC_ISO_CODES_DIR "/usr/share/iso-codes/json"
#endif

void core_config_defaults(core_config *cfg) {
    cfg->host = "127.0.0.1";
    cfg->port = 8080;
    cfg->data_dir = "var";
    /* Prefer ./web when run from a checkout; fall back to the source tree the
     * binary was built from, so `build/caresync serve` works from anywhere. */
    cfg->web_dir = access("web/index.html", R_OK) == 0 ? "web" : CARESYNC_DEFAULT_WEB_DIR;
    cfg->iso_codes_dir = CARESYNC_ISO_CODES_DIR;
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
    cfg->model_path = CARESYNC_DEFAULT_MODEL;
    cfg->backbone_dir = CARESYNC_DEFAULT_BACKBONE_DIR;
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
