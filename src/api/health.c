/* api — GET /api/health: version, uptime and storage status. */
#include "api/internal.h"

#include "cluster/cluster.h"

void api_health(http_request *rq, void *ctx) {
    api_context *c = ctx;
    core_error err = {0};
    char mode[16] = "";
    int version = 0;
    bool ok = store_check(c->st, mode, &version, &err) == CORE_OK;
    json_t *storage = json_pack("{s:b,s:i,s:s}", "ok", ok, "schema_version", version, "journal_mode", mode);
    if (!ok) json_object_set_new(storage, "error", json_string(err.message));
    ledger_block head = {0};
    bool lok = c->led && ledger_head(c->led, &head, NULL) == CORE_OK;
    /* The derived state too: a ledger whose state could not be reloaded
     * refuses every derived read, and writes, until restarted. The rule in
     * force is one keyed row — cheap enough for a health check polled every
     * few seconds (the totals would count every wallet and consent). */
    uint64_t rewards[LEDGER_CATEGORIES];
    core_error lerr = {0};
    if (lok && ledger_get_rewards(c->led, rewards, &lerr)) lok = false;
    json_t *led = json_pack("{s:b,s:I,s:I}", "ok", lok, "height", (json_int_t)head.height, "tree_size",
                            (json_int_t)head.tree_size);
    if (lerr.code) json_object_set_new(led, "error", json_string(lerr.message));
    ok = ok && lok;
    json_t *clu = NULL;
    if (c->cluster) {
        /* A node that refused a block serves its last good state: degraded, and why. */
        cluster_status cs;
        cluster_get_status(c->cluster, &cs);
        clu = json_pack("{s:b,s:b,s:I,s:b}", "leader", cs.leader, "ready", cs.ready, "leader_id",
                        (json_int_t)cs.leader_id, "halted", cs.halted);
        if (clu && cs.halted) json_object_set_new(clu, "error", json_string(cs.halt.message));
        ok = ok && !cs.halted;
    }
    http_respond_json(rq, ok ? 200 : 503,
                      json_pack("{s:s,s:s,s:I,s:o,s:o,s:o*}", "status", ok ? "ok" : "degraded", "version",
                                core_version(), "uptime_s", (json_int_t)(core_monotonic() - c->started), "storage",
                                storage, "ledger", led, "cluster", clu));
}
