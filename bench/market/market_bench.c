/* market bench (issue 14): delivery of a data request with 100,000
 * synthetic participants through the market module — what
 * GET /api/v1/requests/{id}/dataset runs: read the stored rows and the
 * standing participations (one read transaction), the per-delivery
 * pseudonyms, anon_deliver at k = 11 (k-anonymity, CSV, SHA-256), the
 * ledger release, the delivery and its participants stored; then a repeat
 * (same bytes: the receipt is found, nothing written) and
 * market_rows_for_request (the JSON boundary) for comparison.
 *
 * Accepting 100,000 people through the API (a signup with Argon2id, a
 * profile, a record, a grant, a payment each) would take hours, so the
 * market's tables are FILLED DIRECTLY with SQL: users (dummy key material),
 * market_participation and market_rows in the stored form market_accept
 * writes (market_rows_build's JSON, a random tag per row, a random
 * contributor id per participant). The request itself is posted through
 * market_request_create on a real ledger with the organisation registered.
 * The population is anon_bench's (seeded): New Zealand's 17 regions by the
 * 2023 census, adults 18-94, 49/49/1/1 % female/male/intersex/unspecified,
 * 1-4 rows each (mean 1.5) over 26 weeks.
 * Usage: market_bench [participants] [k] [iso-codes dir]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../population.h"
#include "anon/anon.h"
#include "crypto/crypto.h"
#include "market/market.h"

static void die(const char *what, const core_error *err) {
    fprintf(stderr, "market_bench: %s: %s\n", what, err ? err->message : "failed");
    exit(1);
}

static void exec(sqlite3 *db, const char *sql) {
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "market_bench: %s: %s\n", sql, msg ? msg : "?");
        exit(1);
    }
}

/* The tables as market_accept leaves them (see the top). */
static size_t fill(store *st, const char *id, size_t participants) {
    sqlite3 *db = store_acquire(st);
    exec(db, "BEGIN");
    sqlite3_stmt *u, *p, *r;
    if (sqlite3_prepare_v2(
            db,
            "INSERT INTO users (id, username, role, created_at, pw_salt, pw_ops, pw_mem, pw_verifier, "
            "dk_pw, rc_salt, dk_rc) VALUES (?1, ?2, 'person', 0, x'00', 1, 1, x'00', x'00', x'00', x'00')",
            -1, &u, NULL) ||
        sqlite3_prepare_v2(db,
                           "INSERT INTO market_participation (owner, request_id, amount, paid_at, grant_txid, sealed) "
                           "VALUES (?1, ?2, 1, 0, ?3, x'00')",
                           -1, &p, NULL) ||
        sqlite3_prepare_v2(db, "INSERT INTO market_rows (tag, request_id, row, contributor) VALUES (?1, ?2, ?3, ?4)",
                           -1, &r, NULL))
        die(sqlite3_errmsg(db), NULL);
    static const char *const sexes[] = {"female", "male", "intersex", NULL};
    static const double sex_w[] = {49, 49, 1, 1};
    size_t n = 0;
    for (size_t i = 0; i < participants; i++) {
        char name[32], row[256], band[8], week[9];
        uint8_t grant[32], contributor[16], tag[16];
        snprintf(name, sizeof name, "bench-%zu", i);
        sqlite3_bind_int64(u, 1, (sqlite3_int64)i + 1);
        sqlite3_bind_text(u, 2, name, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(u) != SQLITE_DONE) die(sqlite3_errmsg(db), NULL);
        sqlite3_reset(u);
        cs_crypto_random(grant, sizeof grant);
        sqlite3_bind_int64(p, 1, (sqlite3_int64)i + 1);
        sqlite3_bind_text(p, 2, id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(p, 3, grant, sizeof grant, SQLITE_TRANSIENT);
        if (sqlite3_step(p) != SQLITE_DONE) die(sqlite3_errmsg(db), NULL);
        sqlite3_reset(p);
        int b = pick(age_w, 16);
        int age = b == 0 ? 18 + (int)(next() % 2) : 15 + 5 * b + (int)(next() % 5);
        market_age_band(age, band);
        const char *sex = sexes[pick(sex_w, 4)], *region = region_codes[pick(region_pop, 17)];
        cs_crypto_random(contributor, sizeof contributor);
        int m = 1;
        while (m < 4 && unif() < 0.33) m++;
        for (int j = 0; j < m; j++) {
            int day = (int)(next() % (26 * 7)); /* 2026-01-05 (W02) + 0..181 days */
            int month = 1, d = 5 + day;
            static const int mdays[] = {31, 28, 31, 30, 31, 30, 31};
            while (d > mdays[month - 1]) d -= mdays[month - 1], month++;
            char date[32];
            snprintf(date, sizeof date, "2026-%02d-%02d", month, d);
            if (!market_iso_week(date, week)) die("week", NULL);
            const char *cat = j == 0 ? "conditions" : (next() % 2 ? "symptoms" : "screening");
            char sexpart[40] = "";
            if (sex) snprintf(sexpart, sizeof sexpart, "\"sex\":\"%s\",", sex);
            /* Keys sorted, compact: as finish_accept stores them. */
            snprintf(row, sizeof row,
                     "{\"age_band\":\"%s\",\"category\":\"%s\",\"code\":\"%s\",\"region\":\"%s\",%s\"week\":\"%s\"}",
                     band, cat, codes[pick(code_w, 12)], region, sexpart, week);
            cs_crypto_random(tag, sizeof tag);
            sqlite3_bind_blob(r, 1, tag, sizeof tag, SQLITE_TRANSIENT);
            sqlite3_bind_text(r, 2, id, -1, SQLITE_STATIC);
            sqlite3_bind_text(r, 3, row, -1, SQLITE_TRANSIENT);
            sqlite3_bind_blob(r, 4, contributor, sizeof contributor, SQLITE_TRANSIENT);
            if (sqlite3_step(r) != SQLITE_DONE) die(sqlite3_errmsg(db), NULL);
            sqlite3_reset(r);
            n++;
        }
    }
    sqlite3_finalize(u);
    sqlite3_finalize(p);
    sqlite3_finalize(r);
    exec(db, "COMMIT");
    store_release(st, db);
    return n;
}

int main(int argc, char **argv) {
    size_t participants = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    int k = argc > 2 ? atoi(argv[2]) : 11;
    const char *iso = argc > 3 ? argv[3] : "/usr/share/iso-codes/json";
    core_error err = {0};
    regions *regs = NULL;
    if (cs_crypto_init(&err) || regions_load(iso, &regs, &err)) die("init", &err);
    char dir[] = "/tmp/market-bench-XXXXXX", path[64];
    if (!mkdtemp(dir)) die("mkdtemp", NULL);
    ledger_options lo;
    ledger_options_defaults(&lo);
    snprintf(path, sizeof path, "%s/ledger.db", dir);
    lo.path = path;
    lo.batch_ms = 1;
    uint8_t org[LEDGER_KEY], org_sk[LEDGER_SECRET];
    ledger_keypair(lo.node_pk, lo.node_sk);
    ledger_keypair(lo.admin_pk, lo.admin_sk);
    ledger_keypair(org, org_sk);
    ledger *led = NULL;
    store *st = NULL;
    market *m = NULL;
    if (ledger_open(&lo, &led, &err)) die("ledger", &err);
    ledger_tx reg = {.kind = LEDGER_TX_REGISTER_ORG};
    memcpy(reg.u.org.org, org, LEDGER_KEY);
    snprintf(reg.u.org.name, sizeof reg.u.org.name, "Bench Institute");
    ledger_receipt rec;
    if (ledger_sign_submit(led, &reg, lo.admin_sk, &rec, &err)) die("register", &err);
    snprintf(path, sizeof path, "%s/caresync.db", dir);
    if (store_open(path, 2, &st, &err)) die("store", &err);
    market_options mo = {.st = st,
                         .led = led,
                         .regs = regs,
                         .conditions = codes,
                         .n_conditions = 12,
                         .node_sk = lo.node_sk,
                         .daily_cap = 1000};
    if (market_open(&mo, &m, &err)) die("market", &err);
    if (market_credit(m, org, (int64_t)participants, "BENCH-1", rec.txid, NULL, &err)) die("credit", &err);
    json_t *in = json_pack("{s:s, s:s, s:s, s:[s,s], s:i, s:I, s:s}", "title", "bench", "purpose_text", "bench",
                           "purpose", "research", "categories", "conditions", "demographics", "price", 1,
                           "max_participants", (json_int_t)participants, "closes", "2099-01-01T00:00:00Z");
    json_t *out = NULL;
    if (!in || market_request_create(m, org, in, &out, &err)) die("request", &err);
    char id[MARKET_ID_TEXT];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(out, "id")));
    json_decref(in);
    json_decref(out);
    double t0 = core_monotonic();
    size_t n = fill(st, id, participants);
    double t1 = core_monotonic(), c1 = cpu();
    anon_delivery *d = NULL;
    market_delivery_receipt r1, r2;
    if (market_deliver(m, org, id, k, &d, &r1, &err)) die("deliver", &err);
    double t2 = core_monotonic(), c2 = cpu();
    anon_delivery *d2 = NULL;
    if (market_deliver(m, org, id, k, &d2, &r2, &err)) die("repeat", &err);
    double t3 = core_monotonic(), c3 = cpu();
    json_t *rows = NULL;
    if (market_rows_for_request(m, id, &rows, &err)) die("rows", &err);
    double t4 = core_monotonic(), c4 = cpu();
    const anon_stats *s = anon_delivery_stats(d);
    size_t gen = 0;
    for (size_t i = 0; i < anon_delivery_size(d); i++) gen += anon_delivery_row(d, i)->level > 0;
    printf("market: %zu participants, %zu rows, k = %d (tables filled directly: %.1f s)\n", participants, n, k,
           t1 - t0);
    printf("  delivery (read, k-anonymity, CSV, hash, release tx, stored): %8.1f ms wall, %8.1f ms CPU\n",
           (t2 - t1) * 1e3, (c2 - c1) * 1e3);
    printf("  repeat of the same dataset (receipt found, nothing written): %8.1f ms wall, %8.1f ms CPU\n",
           (t3 - t2) * 1e3, (c3 - c2) * 1e3);
    printf("  market_rows_for_request alone (JSON):                          %8.1f ms wall, %8.1f ms CPU\n",
           (t4 - t3) * 1e3, (c4 - c3) * 1e3);
    printf("  delivered %zu rows (%.2f %% generalised), held back %zu (%.2f %%); repeat %s\n", s->delivered,
           100.0 * (double)gen / (double)n, s->held_back, 100.0 * (double)s->held_back / (double)n,
           r2.repeat && !memcmp(r1.txid, r2.txid, 32) ? "same receipt" : "NEW RECEIPT (bug)");
    json_decref(rows);
    anon_delivery_free(d);
    anon_delivery_free(d2);
    market_close(m);
    store_close(st);
    ledger_close(led);
    regions_free(regs);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
