/* market — data requests: credit, post, approve (fund), withdraw, sweep,
 * the person's list and acceptance, crash recovery, and the stored rows
 * (see market.h).
 *
 * Order of effects (as review/cases.c):
 *   approve:  state 'funding' committed → market_open → state 'open' + txid.
 *             Recovery: the terms hash is a ledger commitment, so
 *             ledger_find_commitment tells whether the escrow exists.
 *   close:    state 'closing' committed → market_close → 'closed'.
 *             Recovery: submit the close if the escrow is still open.
 *   accept:   intent row (the rows sealed under a node-derived key, the
 *             person's copy sealed under their data key) → grant (wallet)
 *             → intent gets the grant txid → market_pay → participation,
 *             rows and the end of the intent in one SQLite transaction.
 *             Recovery: no grant txid → drop (nothing was paid; a grant the
 *             crash hid stays a consent the person can revoke); grant known
 *             → pay if the ledger has not, then store as above; a payment
 *             the ledger refuses (filled, closed) → drop.
 * The ledger pays a wallet once per request whatever happens here.
 *
 * When a step after an intent fails in a running call (an allocation, a
 * SQLite write, the ledger), the call resolves that one intent at once with
 * the recovery code (funding_resolve, closing_resolve, intent_paid) and
 * answers by the outcome: the ledger step happened → the rows are finished
 * and the answer is a clean success's; it did not → the intent is dropped
 * and the error is answered with everything as before. The answer is built
 * before the last write, so a call told "failed" never leaves a write
 * standing. Only when the resolution fails too (a second failure, or the
 * ledger cannot say) does the intent wait for market_recover at start. */
#include "market/market.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto/crypto.h"
#include "market/internal.h"

#ifdef CARESYNC_CRASH_POINTS
#include <signal.h>
/* Tests kill the server between steps: CARESYNC_CRASH_AT=name. */
static void market_crash_point(const char *name) {
    const char *at = getenv("CARESYNC_CRASH_AT");
    if (at && !strcmp(at, name)) raise(SIGKILL);
}
#define MARKET_CRASH_POINT(name) market_crash_point(name)
#else
#define MARKET_CRASH_POINT(name) ((void)0)
#endif

static int64_t now_of(const market *m) { return m->opt.now ? m->opt.now() : core_now(); }

core_status market_open(const market_options *opt, market **out, core_error *err) {
    *out = NULL;
    if (!opt->st || !opt->led || !opt->node_sk || opt->daily_cap < 1)
        return core_fail(err, CORE_ERR_INVALID, NULL, "market needs a store, a ledger, the node key and a cap");
    market *m = calloc(1, sizeof *m);
    if (!m) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    m->opt = *opt;
    pthread_mutex_init(&m->delivery, NULL);
    size_t n = opt->n_conditions;
    m->codes = calloc(n ? n : 1, sizeof *m->codes);
    m->code_ptrs = calloc(n ? n : 1, sizeof *m->code_ptrs);
    if (!m->codes || !m->code_ptrs) {
        market_close(m);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(m->codes[i], sizeof m->codes[i], "%s", opt->conditions[i]);
        m->code_ptrs[i] = m->codes[i];
    }
    m->opt.conditions = m->code_ptrs;
    cs_crypto_hash(m->row_key, "caresync market intent rows v1", opt->node_sk, LEDGER_SECRET);
    *out = m;
    return CORE_OK;
}

void market_close(market *m) {
    if (!m) return;
    cs_crypto_wipe(m->row_key, sizeof m->row_key);
    pthread_mutex_destroy(&m->delivery);
    free(m->codes);
    free(m->code_ptrs);
    free(m);
}

/* ---- small helpers ---- */

static core_status nomem(core_error *err) { return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory"); }

static bool known_code(const market *m, const char *s) {
    for (size_t i = 0; s && i < m->opt.n_conditions; i++)
        if (!strcmp(s, m->codes[i])) return true;
    return false;
}

static int this_year_of(int64_t t) {
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    return tm.tm_year + 1900;
}

static int64_t day_start(int64_t t) { return t - (t % 86400 + 86400) % 86400; }

/* Text without control characters (newlines allowed when multiline), 1..max
 * characters. */
static bool good_text(const char *s, size_t max, bool multiline) {
    if (!s) return false;
    size_t chars = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == 0x7f || (*p < 0x20 && !(multiline && (*p == '\n' || *p == '\t')))) return false;
        chars += (*p & 0xC0) != 0x80;
    }
    return chars >= 1 && chars <= max;
}

static bool parse_time(const char *s, int64_t *out) {
    int y, mo, d, h, mi, sec;
    char z, tail;
    if (!s || strlen(s) != 20 || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c%c", &y, &mo, &d, &h, &mi, &sec, &z, &tail) != 7 ||
        z != 'Z')
        return false;
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59) return false;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t == (time_t)-1 || tm.tm_mday != d) return false; /* 31 April rolls over: refused */
    *out = (int64_t)t;
    return true;
}

static json_t *time_json(int64_t t) {
    char s[32];
    core_format_time(t, s);
    return json_string(s);
}

static json_t *hex_json(const uint8_t *p, size_t n) {
    char s[2 * 64 + 1];
    cs_crypto_hex(p, n, s);
    return json_string(s);
}

static bool valid_band(const char *s) {
    char b[8];
    if (!s) return false;
    for (int age = 0; age <= 100; age += 5) {
        market_age_band(age, b);
        if (!strcmp(s, b)) return true;
    }
    return false;
}

static json_t *categories_json(uint32_t cats) {
    json_t *a = json_array();
    for (int c = 0; a && c < LEDGER_CATEGORIES; c++)
        if ((cats & (1u << c)) && json_array_append_new(a, json_string(ledger_category_name((ledger_category)c)))) {
            json_decref(a);
            a = NULL;
        }
    return a;
}

/* ---- criteria: validated from the organisation's JSON, kept as JSON ---- */

static core_status string_list(const json_t *in, const char *key, size_t max, json_t **out, core_error *err) {
    *out = NULL;
    const json_t *v = json_object_get(in, key);
    if (!v || json_is_null(v)) return CORE_OK;
    if (!json_is_array(v) || json_array_size(v) > max)
        return core_fail(err, CORE_ERR_INVALID, key, "%s must be a list of at most %zu codes", key, max);
    size_t i, j;
    const json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_string(e)) return core_fail(err, CORE_ERR_INVALID, key, "%s must hold codes", key);
        for (j = 0; j < i; j++)
            if (json_equal(e, json_array_get(v, j)))
                return core_fail(err, CORE_ERR_INVALID, key, "%s names %s twice", key, json_string_value(e));
    }
    *out = (json_t *)v;
    return CORE_OK;
}

static core_status criteria_check(market *m, const json_t *in, json_t **out, core_error *err) {
    *out = NULL;
    if (in && !json_is_null(in) && !json_is_object(in))
        return core_fail(err, CORE_ERR_INVALID, "criteria", "criteria must be an object");
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)in, key, v) {
        if (strcmp(key, "conditions") && strcmp(key, "countries") && strcmp(key, "age_bands"))
            return core_fail(err, CORE_ERR_INVALID, "criteria", "criteria may hold conditions, countries, age_bands");
    }
    json_t *conds, *countries, *bands;
    core_status rc = string_list(in, "conditions", MARKET_CODES_MAX, &conds, err);
    if (!rc) rc = string_list(in, "countries", MARKET_COUNTRIES_MAX, &countries, err);
    if (!rc) rc = string_list(in, "age_bands", 21, &bands, err);
    if (rc) return rc;
    json_t *o = json_pack("{s:[], s:[], s:[]}", "conditions", "countries", "age_bands");
    if (!o) return nomem(err);
    size_t i;
    const json_t *e;
    json_array_foreach(conds, i, e) {
        if (!known_code(m, json_string_value(e))) {
            json_decref(o);
            return core_fail(err, CORE_ERR_INVALID, "conditions", "unknown condition code %s", json_string_value(e));
        }
        if (json_array_append_new(json_object_get(o, "conditions"), json_string(json_string_value(e)))) goto oom;
    }
    json_array_foreach(countries, i, e) {
        const char *c = json_string_value(e);
        char up[3] = {0};
        if (strlen(c) == 2) {
            up[0] = (char)(c[0] >= 'a' && c[0] <= 'z' ? c[0] - 32 : c[0]);
            up[1] = (char)(c[1] >= 'a' && c[1] <= 'z' ? c[1] - 32 : c[1]);
        }
        if (!up[0] || (m->opt.regs && !regions_subdivisions(m->opt.regs, up))) {
            json_decref(o);
            return core_fail(err, CORE_ERR_INVALID, "countries", "unknown country %s (ISO 3166-1 alpha-2)", c);
        }
        if (json_array_append_new(json_object_get(o, "countries"), json_string(up))) goto oom;
    }
    json_array_foreach(bands, i, e) {
        if (!valid_band(json_string_value(e))) {
            json_decref(o);
            return core_fail(err, CORE_ERR_INVALID, "age_bands", "age bands are 5-year bands such as 30-34, or 100+");
        }
        if (json_array_append_new(json_object_get(o, "age_bands"), json_string(json_string_value(e)))) goto oom;
    }
    *out = o;
    return CORE_OK;
oom:
    json_decref(o);
    return nomem(err);
}

static void criteria_load(const json_t *crit, uint32_t cats, market_criteria *c) {
    memset(c, 0, sizeof *c);
    c->categories = cats;
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(crit, "conditions"), i, e) if (c->n_conditions < MARKET_CODES_MAX)
        snprintf(c->conditions[c->n_conditions++], 32, "%s", json_string_value(e));
    json_array_foreach(json_object_get(crit, "countries"), i, e) if (c->n_countries < MARKET_COUNTRIES_MAX)
        snprintf(c->countries[c->n_countries++], 3, "%s", json_string_value(e));
    json_array_foreach(json_object_get(crit, "age_bands"), i, e) if (c->n_age_bands < 21)
        snprintf(c->age_bands[c->n_age_bands++], 8, "%s", json_string_value(e));
}

/* ---- request rows ---- */

typedef struct {
    char id[MARKET_ID_TEXT];
    uint8_t org[LEDGER_KEY];
    char org_name[LEDGER_NAME_MAX + 1];
    char title[4 * MARKET_TITLE_MAX + 1];
    char *purpose_text;
    char purpose[32];
    uint32_t categories;
    json_t *criteria;
    int64_t price, max, closes, created_at, closed_at;
    uint8_t terms[LEDGER_HASH];
    char state[16];
    bool funded;
    uint8_t txid[LEDGER_HASH];
} req_row;

static void req_free(req_row *r) {
    free(r->purpose_text);
    json_decref(r->criteria);
    r->purpose_text = NULL;
    r->criteria = NULL;
}

#define REQ_COLS                                                                                                   \
    "id, org_key, org_name, title, purpose_text, purpose, categories, criteria, price, max_participants, closes, " \
    "terms, state, request_txid, created_at, closed_at"

static core_status req_read(sqlite3_stmt *q, req_row *r, core_error *err) {
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", (const char *)sqlite3_column_text(q, 0));
    if (sqlite3_column_bytes(q, 1) == LEDGER_KEY) memcpy(r->org, sqlite3_column_blob(q, 1), LEDGER_KEY);
    snprintf(r->org_name, sizeof r->org_name, "%s", (const char *)sqlite3_column_text(q, 2));
    snprintf(r->title, sizeof r->title, "%s", (const char *)sqlite3_column_text(q, 3));
    r->purpose_text = strdup((const char *)sqlite3_column_text(q, 4));
    snprintf(r->purpose, sizeof r->purpose, "%s", (const char *)sqlite3_column_text(q, 5));
    r->categories = (uint32_t)sqlite3_column_int64(q, 6);
    r->criteria = core_json_loads((const char *)sqlite3_column_text(q, 7), 0, NULL, NULL);
    r->price = sqlite3_column_int64(q, 8);
    r->max = sqlite3_column_int64(q, 9);
    r->closes = sqlite3_column_int64(q, 10);
    if (sqlite3_column_bytes(q, 11) == LEDGER_HASH) memcpy(r->terms, sqlite3_column_blob(q, 11), LEDGER_HASH);
    snprintf(r->state, sizeof r->state, "%s", (const char *)sqlite3_column_text(q, 12));
    r->funded = sqlite3_column_bytes(q, 13) == LEDGER_HASH;
    if (r->funded) memcpy(r->txid, sqlite3_column_blob(q, 13), LEDGER_HASH);
    r->created_at = sqlite3_column_int64(q, 14);
    r->closed_at = sqlite3_column_int64(q, 15);
    if (!r->purpose_text || !r->criteria) {
        req_free(r);
        return nomem(err);
    }
    return CORE_OK;
}

/* Rows of sql (bound: ?1 text a, ?2 blob b of blen bytes when given). */
static core_status req_query(market *m, const char *sql, const char *a, const void *b, int blen, req_row **out,
                             size_t *n, core_error *err) {
    *out = NULL;
    *n = 0;
    sqlite3 *db = store_acquire(m->opt.st);
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db, sql, &q, err);
    size_t cap = 0;
    if (!rc) {
        if (a) sqlite3_bind_text(q, 1, a, -1, SQLITE_STATIC);
        if (b) sqlite3_bind_blob(q, 2, b, blen, SQLITE_STATIC);
        int step;
        while (!rc && (step = sqlite3_step(q)) == SQLITE_ROW) {
            if (*n == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                req_row *g = realloc(*out, ncap * sizeof *g);
                if (!g) {
                    rc = nomem(err);
                    break;
                }
                *out = g;
                cap = ncap;
            }
            if (!(rc = req_read(q, &(*out)[*n], err))) (*n)++;
        }
        if (!rc && step != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    store_release(m->opt.st, db);
    if (rc) {
        for (size_t i = 0; i < *n; i++) req_free(&(*out)[i]);
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

static void reqs_free(req_row *v, size_t n) {
    for (size_t i = 0; i < n; i++) req_free(&v[i]);
    free(v);
}

static core_status req_load(market *m, const char *id, req_row *r, core_error *err) {
    req_row *v;
    size_t n;
    core_status rc = req_query(m, "SELECT " REQ_COLS " FROM market_requests WHERE id = ?1", id, NULL, 0, &v, &n, err);
    if (rc) return rc;
    if (n == 0) {
        free(v);
        return core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such data request");
    }
    *r = v[0];
    free(v);
    return CORE_OK;
}

/* Set a request's state (and txid when given; closed_at = at when it
 * ends) if it is in state from (NULL: any); CONFLICT "state" when it was
 * not. */
static core_status req_set_state_at(market *m, const char *id, const char *from, const char *to, const uint8_t *txid,
                                    int64_t at, core_error *err) {
    sqlite3 *db = store_acquire(m->opt.st);
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db,
                                   "UPDATE market_requests SET state = ?2, request_txid = coalesce(?3, request_txid), "
                                   "closed_at = CASE WHEN ?2 IN ('closed','withdrawn') THEN ?4 ELSE closed_at END "
                                   "WHERE id = ?1 AND (?5 IS NULL OR state = ?5)",
                                   &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, to, -1, SQLITE_STATIC);
        if (txid) sqlite3_bind_blob(q, 3, txid, LEDGER_HASH, SQLITE_STATIC);
        sqlite3_bind_int64(q, 4, at);
        if (from) sqlite3_bind_text(q, 5, from, -1, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE)
            rc = store_error(db, err);
        else if (sqlite3_changes(db) != 1)
            rc = core_fail(err, CORE_ERR_CONFLICT, "state", "the request is not %s", from ? from : "there");
    }
    sqlite3_finalize(q);
    store_release(m->opt.st, db);
    return rc;
}

static core_status req_set_state(market *m, const char *id, const char *from, const char *to, const uint8_t *txid,
                                 core_error *err) {
    return req_set_state_at(m, id, from, to, txid, now_of(m), err);
}

/* The request as shown to its organisation and administrators (*out,
 * new). The escrow's paid and remaining are read from the ledger: a read
 * that fails fails the answer (an answer without them would say nothing
 * was paid); an escrow the ledger does not know leaves them out. */
static core_status req_json(market *m, const req_row *r, json_t **out, core_error *err) {
    *out = NULL;
    json_t *j =
        json_pack("{s:s, s:{s:o, s:s}, s:s, s:s, s:s, s:o, s:O, s:I, s:I, s:o, s:o, s:s}", "id", r->id, "organisation",
                  "key", hex_json(r->org, LEDGER_KEY), "name", r->org_name, "title", r->title, "purpose_text",
                  r->purpose_text, "purpose", r->purpose, "categories", categories_json(r->categories), "criteria",
                  r->criteria, "price", (json_int_t)r->price, "max_participants", (json_int_t)r->max, "closes",
                  time_json(r->closes), "created_at", time_json(r->created_at), "state", r->state);
    if (!j) return nomem(err);
    core_status rc = CORE_OK;
    bool ok = true;
    if (r->funded) {
        ledger_market lm;
        core_error e = {0};
        ok = !json_object_set_new(j, "escrow_txid", hex_json(r->txid, LEDGER_HASH));
        core_status g = ok ? ledger_get_market(m->opt.led, r->txid, &lm, &e) : CORE_OK;
        if (ok && !g)
            ok = !json_object_set_new(j, "paid", json_integer(lm.paid)) &&
                 !json_object_set_new(j, "remaining", json_integer((json_int_t)lm.remaining));
        else if (ok && g != CORE_ERR_NOT_FOUND) {
            rc = g;
            if (err) *err = e;
        }
    } else {
        ok = !json_object_set_new(j, "paid", json_integer(0));
    }
    if (ok && !rc && r->closed_at) ok = !json_object_set_new(j, "closed_at", time_json(r->closed_at));
    if (!ok && !rc) rc = nomem(err);
    if (rc) {
        json_decref(j);
        return rc;
    }
    *out = j;
    return CORE_OK;
}

static core_status reqs_json(market *m, req_row *v, size_t n, json_t **out, core_error *err) {
    json_t *a = json_array();
    core_status rc = a ? CORE_OK : nomem(err);
    for (size_t i = 0; !rc && i < n; i++) {
        json_t *j;
        if (!(rc = req_json(m, &v[i], &j, err)) && json_array_append_new(a, j)) rc = nomem(err);
    }
    reqs_free(v, n);
    if (rc) {
        json_decref(a);
        return rc;
    }
    *out = a;
    return CORE_OK;
}

/* ---- organisations ---- */

typedef struct {
    const uint8_t *key;
    char *name;
    bool found;
} org_find;

static void org_cb(void *ud, const uint8_t pk[LEDGER_KEY], const char *name, uint64_t height) {
    (void)height;
    org_find *f = ud;
    if (!f->found && !memcmp(pk, f->key, LEDGER_KEY)) {
        f->found = true;
        snprintf(f->name, LEDGER_NAME_MAX + 1, "%s", name);
    }
}

static core_status org_name(market *m, const uint8_t org[LEDGER_KEY], char name[LEDGER_NAME_MAX + 1], core_error *err) {
    org_find f = {org, name, false};
    core_status rc = ledger_list_orgs(m->opt.led, org_cb, &f, err);
    if (!rc && !f.found) rc = core_fail(err, CORE_ERR_NOT_FOUND, "org", "the organisation is not registered");
    return rc;
}

static core_status balance_of(market *m, const uint8_t key[LEDGER_KEY], int64_t *out, core_error *err) {
    ledger_account a = {0};
    core_error e = {0};
    core_status rc = ledger_get_account(m->opt.led, key, &a, &e);
    if (rc == CORE_ERR_NOT_FOUND) rc = CORE_OK;
    if (rc && err) *err = e;
    *out = a.balance;
    return rc;
}

core_status market_org_credit(market *m, const uint8_t org[LEDGER_KEY], json_t **out, core_error *err) {
    char name[LEDGER_NAME_MAX + 1];
    int64_t bal = 0;
    *out = NULL;
    core_status rc = org_name(m, org, name, err);
    if (!rc) rc = balance_of(m, org, &bal, err);
    if (rc) return rc;
    *out = json_pack("{s:{s:o, s:s}, s:I}", "organisation", "key", hex_json(org, LEDGER_KEY), "name", name, "balance",
                     (json_int_t)bal);
    return *out ? CORE_OK : nomem(err);
}

core_status market_credit(market *m, const uint8_t org[LEDGER_KEY], int64_t amount, const char *reference,
                          uint8_t txid[LEDGER_HASH], int64_t *balance, core_error *err) {
    if (amount < 1 || amount > MARKET_CREDIT_MAX)
        return core_fail(err, CORE_ERR_INVALID, "amount", "amount must be between 1 and %d tokens", MARKET_CREDIT_MAX);
    size_t rl = reference ? strlen(reference) : 0;
    if (rl < 1 || rl > LEDGER_NAME_MAX || reference[0] == ' ' || reference[rl - 1] == ' ' ||
        !good_text(reference, LEDGER_NAME_MAX, false) ||
        strspn(reference, " !\"#$%&'()*+,-./0123456789:;<=>?@"
                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`"
                          "abcdefghijklmnopqrstuvwxyz{|}~") != rl)
        return core_fail(err, CORE_ERR_INVALID, "reference",
                         "reference must be 1-64 printable ASCII characters without edge spaces");
    char name[LEDGER_NAME_MAX + 1];
    core_status rc = org_name(m, org, name, err);
    if (rc) return rc;
    ledger_tx tx = {.kind = LEDGER_TX_CREDIT};
    memcpy(tx.u.credit.org, org, LEDGER_KEY);
    tx.u.credit.amount = (uint64_t)amount;
    memcpy(tx.u.credit.reference, reference, rl + 1);
    ledger_receipt rec;
    if ((rc = ledger_sign_submit(m->opt.led, &tx, m->opt.node_sk, &rec, err))) return rc;
    memcpy(txid, rec.txid, LEDGER_HASH);
    return balance ? balance_of(m, org, balance, err) : CORE_OK;
}

/* ---- posting ---- */

static const char *const create_keys[] = {"title",   "price",  "purpose_text", "max_participants",
                                          "purpose", "closes", "categories",   "criteria"};

core_status market_request_create(market *m, const uint8_t org[LEDGER_KEY], const json_t *in, json_t **out,
                                  core_error *err) {
    *out = NULL;
    if (!json_is_object(in)) return core_fail(err, CORE_ERR_INVALID, NULL, "the request must be a JSON object");
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)in, key, v) {
        bool known = false;
        for (size_t i = 0; i < sizeof create_keys / sizeof create_keys[0]; i++)
            known = known || !strcmp(key, create_keys[i]);
        if (!known) return core_fail(err, CORE_ERR_INVALID, key, "unknown member %s", key);
    }
    const char *title = json_string_value(json_object_get(in, "title"));
    const char *ptext = json_string_value(json_object_get(in, "purpose_text"));
    const char *purpose = json_string_value(json_object_get(in, "purpose"));
    const json_t *cats = json_object_get(in, "categories");
    const json_t *price = json_object_get(in, "price"), *max = json_object_get(in, "max_participants");
    int64_t closes = 0, now = now_of(m);
    if (!good_text(title, MARKET_TITLE_MAX, false))
        return core_fail(err, CORE_ERR_INVALID, "title", "title must be 1-%d characters", MARKET_TITLE_MAX);
    if (!good_text(ptext, MARKET_PURPOSE_TEXT_MAX, true))
        return core_fail(err, CORE_ERR_INVALID, "purpose_text", "purpose_text must be 1-%d characters",
                         MARKET_PURPOSE_TEXT_MAX);
    if (!purpose || (strcmp(purpose, "research") && strcmp(purpose, "public_health_surveillance")))
        return core_fail(err, CORE_ERR_INVALID, "purpose", "purpose must be research or public_health_surveillance");
    uint32_t categories = 0;
    if (!json_is_array(cats) || json_array_size(cats) == 0)
        return core_fail(err, CORE_ERR_INVALID, "categories", "categories must name at least one category");
    size_t i;
    json_array_foreach(cats, i, v) {
        int found = -1;
        for (int c = 0; c < LEDGER_CATEGORIES; c++)
            if (json_is_string(v) && !strcmp(json_string_value(v), ledger_category_name((ledger_category)c))) found = c;
        if (found < 0 || (categories & (1u << found)))
            return core_fail(err, CORE_ERR_INVALID, "categories",
                             "categories are distinct names of screening, conditions, symptoms, demographics");
        categories |= 1u << found;
    }
    if (!json_is_integer(price) || json_integer_value(price) < 1 || json_integer_value(price) > MARKET_PRICE_MAX)
        return core_fail(err, CORE_ERR_INVALID, "price", "price must be 1-%d tokens per participant", MARKET_PRICE_MAX);
    if (!json_is_integer(max) || json_integer_value(max) < 1 || json_integer_value(max) > MARKET_PARTICIPANTS_MAX)
        return core_fail(err, CORE_ERR_INVALID, "max_participants", "max_participants must be 1-%d",
                         MARKET_PARTICIPANTS_MAX);
    if (!parse_time(json_string_value(json_object_get(in, "closes")), &closes))
        return core_fail(err, CORE_ERR_INVALID, "closes", "closes must be a UTC time such as 2027-01-31T00:00:00Z");
    if (closes <= now) return core_fail(err, CORE_ERR_INVALID, "closes", "closes must be in the future");
    json_t *crit = NULL;
    core_status rc = criteria_check(m, json_object_get(in, "criteria"), &crit, err);
    if (rc) return rc;
    char name[LEDGER_NAME_MAX + 1];
    int64_t bal = 0;
    const int64_t need = json_integer_value(price) * json_integer_value(max);
    if (!rc) rc = org_name(m, org, name, err);
    if (!rc) rc = balance_of(m, org, &bal, err);
    if (!rc && bal < need)
        rc = core_fail(err, CORE_ERR_CONFLICT, "balance",
                       "funding this request takes %lld tokens; the organisation holds %lld", (long long)need,
                       (long long)bal);
    uint8_t raw[16];
    char id[MARKET_ID_TEXT];
    cs_crypto_random(raw, sizeof raw);
    cs_crypto_hex(raw, sizeof raw, id);
    /* The terms the ledger commits to: everything the organisation asked,
     * with the request id (two equal requests still differ). */
    json_t *terms =
        rc ? NULL
           : json_pack("{s:s, s:o, s:s, s:s, s:s, s:o, s:O, s:I, s:I, s:I}", "id", id, "org", hex_json(org, LEDGER_KEY),
                       "title", title, "purpose_text", ptext, "purpose", purpose, "categories",
                       categories_json(categories), "criteria", crit, "price", json_integer_value(price),
                       "max_participants", json_integer_value(max), "closes", (json_int_t)closes);
    char *tt = terms ? core_json_dumps(terms, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    char *ct = crit ? core_json_dumps(crit, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(terms);
    if (!rc && (!tt || !ct)) rc = nomem(err);
    uint8_t th[LEDGER_HASH];
    if (!rc) cs_crypto_sha256(th, tt, strlen(tt));
    free(tt);
    if (!rc) {
        sqlite3 *db = store_acquire(m->opt.st);
        sqlite3_stmt *q = NULL;
        rc = store_prepare(db,
                           "INSERT INTO market_requests (id, org_key, org_name, title, purpose_text, purpose, "
                           "categories, criteria, price, max_participants, closes, terms, state, created_at) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'pending', ?13)",
                           &q, err);
        if (!rc) {
            sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
            sqlite3_bind_blob(q, 2, org, LEDGER_KEY, SQLITE_STATIC);
            sqlite3_bind_text(q, 3, name, -1, SQLITE_STATIC);
            sqlite3_bind_text(q, 4, title, -1, SQLITE_STATIC);
            sqlite3_bind_text(q, 5, ptext, -1, SQLITE_STATIC);
            sqlite3_bind_text(q, 6, purpose, -1, SQLITE_STATIC);
            sqlite3_bind_int64(q, 7, categories);
            sqlite3_bind_text(q, 8, ct, -1, SQLITE_STATIC);
            sqlite3_bind_int64(q, 9, json_integer_value(price));
            sqlite3_bind_int64(q, 10, json_integer_value(max));
            sqlite3_bind_int64(q, 11, closes);
            sqlite3_bind_blob(q, 12, th, LEDGER_HASH, SQLITE_STATIC);
            sqlite3_bind_int64(q, 13, now);
            if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
        }
        sqlite3_finalize(q);
        store_release(m->opt.st, db);
    }
    free(ct);
    json_decref(crit);
    return rc ? rc : market_request_get(m, org, id, out, err);
}

core_status market_request_get(market *m, const uint8_t *org, const char *id, json_t **out, core_error *err) {
    *out = NULL;
    market_sweep(m, NULL, NULL); /* best effort: a failure leaves the state one sweep behind */
    req_row r;
    core_status rc = req_load(m, id, &r, err);
    if (rc) return rc;
    if (org && memcmp(org, r.org, LEDGER_KEY)) {
        req_free(&r);
        return core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such data request");
    }
    rc = req_json(m, &r, out, err);
    req_free(&r);
    return rc;
}

core_status market_request_list_org(market *m, const uint8_t org[LEDGER_KEY], json_t **out, core_error *err) {
    *out = NULL;
    market_sweep(m, NULL, NULL);
    req_row *v;
    size_t n;
    int64_t bal = 0;
    json_t *a = NULL;
    core_status rc = balance_of(m, org, &bal, err);
    if (!rc)
        rc = req_query(m, "SELECT " REQ_COLS " FROM market_requests WHERE org_key = ?2 ORDER BY created_at DESC, id",
                       NULL, org, LEDGER_KEY, &v, &n, err);
    if (!rc) rc = reqs_json(m, v, n, &a, err);
    if (rc) return rc;
    *out = json_pack("{s:I, s:o}", "balance", (json_int_t)bal, "requests", a);
    return *out ? CORE_OK : nomem(err);
}

core_status market_request_list_all(market *m, const char *state, json_t **out, core_error *err) {
    *out = NULL;
    market_sweep(m, NULL, NULL);
    req_row *v;
    size_t n;
    core_status rc = req_query(m,
                               "SELECT " REQ_COLS " FROM market_requests WHERE ?1 IS NULL OR state = ?1 "
                               "ORDER BY created_at DESC, id",
                               state, NULL, 0, &v, &n, err);
    return rc ? rc : reqs_json(m, v, n, out, err);
}

/* ---- funding and closing on the ledger ---- */

static core_status submit_open(market *m, const req_row *r, uint8_t txid[LEDGER_HASH], core_error *err) {
    ledger_tx tx = {.kind = LEDGER_TX_MARKET_OPEN};
    memcpy(tx.u.market_open.org, r->org, LEDGER_KEY);
    memcpy(tx.u.market_open.terms, r->terms, LEDGER_HASH);
    tx.u.market_open.price = (uint64_t)r->price;
    tx.u.market_open.max_participants = (uint32_t)r->max;
    tx.u.market_open.closes = (uint64_t)r->closes;
    ledger_receipt rec;
    core_status rc = ledger_sign_submit(m->opt.led, &tx, m->opt.node_sk, &rec, err);
    if (!rc) memcpy(txid, rec.txid, LEDGER_HASH);
    return rc;
}

/* A 'funding' request as the ledger shows it (its terms hash is the
 * escrow's commitment): funded → 'open' with the escrow's txid (also put in
 * r, *funded true); not → back to 'pending'. market_recover runs it for
 * each at start; approve runs it at once when a step after its intent
 * failed. */
static core_status funding_resolve(market *m, req_row *r, bool *funded, core_error *err) {
    uint8_t txid[LEDGER_HASH];
    *funded = false;
    core_status rc = ledger_find_commitment(m->opt.led, r->terms, txid, err);
    if (rc == CORE_ERR_NOT_FOUND) return req_set_state(m, r->id, "funding", "pending", NULL, err);
    if (rc) return rc;
    *funded = true;
    r->funded = true;
    memcpy(r->txid, txid, LEDGER_HASH);
    return req_set_state(m, r->id, "funding", "open", txid, err);
}

/* The approve answer: the request as market_request_get shows it once
 * open (read from the ledger's escrow, so after the ledger step). */
static core_status opened_json(market *m, const req_row *r, json_t **out, core_error *err) {
    req_row o = *r; /* shallow: req_json only reads */
    snprintf(o.state, sizeof o.state, "open");
    return req_json(m, &o, out, err);
}

core_status market_request_approve(market *m, const char *id, json_t **out, core_error *err) {
    *out = NULL;
    req_row r;
    core_status rc = req_load(m, id, &r, err);
    if (rc) return rc;
    if (strcmp(r.state, "pending"))
        rc = core_fail(err, CORE_ERR_CONFLICT, "state", "only a pending request can be approved (it is %s)", r.state);
    if (!rc && r.closes <= now_of(m)) rc = core_fail(err, CORE_ERR_INVALID, "closes", "the closing time has passed");
    int64_t bal = 0;
    if (!rc) rc = balance_of(m, r.org, &bal, err);
    if (!rc && bal < r.price * r.max)
        rc = core_fail(err, CORE_ERR_CONFLICT, "balance",
                       "funding this request takes %lld tokens; the organisation holds %lld",
                       (long long)(r.price * r.max), (long long)bal);
    /* 1. The intent: 'funding' (the terms hash finds the escrow again). */
    if (!rc) rc = req_set_state(m, id, "pending", "funding", NULL, err);
    if (rc) {
        req_free(&r);
        return rc;
    }
    MARKET_CRASH_POINT("market_after_fund_intent");
    /* 2. The escrow. */
    uint8_t txid[LEDGER_HASH];
    rc = submit_open(m, &r, txid, err);
    MARKET_CRASH_POINT("market_after_fund");
    /* 3. The answer, then 'open': nothing that can fail comes after the
     * last write. */
    if (!rc) {
        r.funded = true;
        memcpy(r.txid, txid, LEDGER_HASH);
        rc = opened_json(m, &r, out, err);
    }
    if (!rc) rc = req_set_state(m, id, "funding", "open", txid, err);
    if (rc) {
        /* A step failed: the ledger says how far it got. Funded → open and
         * the answer of a clean success; not → pending, the error. If the
         * ledger cannot say, or the row cannot be written now either,
         * 'funding' stays for market_recover. */
        core_error e = {0};
        bool funded = false;
        if (!funding_resolve(m, &r, &funded, &e) && funded && (*out || !opened_json(m, &r, out, &e))) rc = CORE_OK;
    }
    if (rc) {
        json_decref(*out);
        *out = NULL;
    }
    req_free(&r);
    return rc;
}

static core_status submit_close(market *m, const uint8_t request[LEDGER_HASH], core_error *err) {
    ledger_tx tx = {.kind = LEDGER_TX_MARKET_CLOSE};
    memcpy(tx.u.market_close.request, request, LEDGER_HASH);
    ledger_receipt rec;
    return ledger_sign_submit(m->opt.led, &tx, m->opt.node_sk, &rec, err);
}

/* A 'closing' request as the ledger shows it: its escrow ended (by this
 * close, or the last place was paid) → 'closed' at at (*closed true);
 * still open → with complete (market_recover) the close is submitted now
 * and it ends, else (a running call whose step failed) back to 'open'. */
static core_status closing_resolve(market *m, const req_row *r, bool complete, int64_t at, bool *closed,
                                   core_error *err) {
    ledger_market lm;
    *closed = false;
    core_status rc = ledger_get_market(m->opt.led, r->txid, &lm, err);
    if (rc) return rc;
    if (lm.state == LEDGER_MARKET_OPEN) {
        if (!complete) return req_set_state(m, r->id, "closing", "open", NULL, err);
        if ((rc = submit_close(m, r->txid, err))) return rc;
    }
    *closed = true;
    return req_set_state_at(m, r->id, "closing", "closed", NULL, at, err);
}

/* The request as market_request_get shows it once ended in state at at. */
static core_status ended_json(market *m, const req_row *r, const char *state, int64_t at, json_t **out,
                              core_error *err) {
    req_row o = *r; /* shallow: req_json only reads */
    snprintf(o.state, sizeof o.state, "%s", state);
    o.closed_at = at;
    return req_json(m, &o, out, err);
}

/* Close an open request on the ledger: 'closing', market_close (unless the
 * ledger has already ended the escrow), 'closed'. out (may be NULL: the
 * sweep) receives the request as it then reads, built before the last
 * write. A failed step is resolved at once (closing_resolve): closed on
 * the ledger → done; still open → 'open' again and the error. */
static core_status close_open(market *m, const req_row *r, json_t **out, core_error *err) {
    core_status rc = req_set_state(m, r->id, "open", "closing", NULL, err);
    if (rc) return rc;
    MARKET_CRASH_POINT("market_after_close_intent");
    ledger_market lm;
    const int64_t at = now_of(m);
    rc = ledger_get_market(m->opt.led, r->txid, &lm, err);
    if (!rc && lm.state == LEDGER_MARKET_OPEN) rc = submit_close(m, r->txid, err);
    if (!rc && out) rc = ended_json(m, r, "closed", at, out, err);
    if (!rc) rc = req_set_state_at(m, r->id, "closing", "closed", NULL, at, err);
    if (rc) {
        core_error e = {0};
        bool closed = false;
        if (!closing_resolve(m, r, false, at, &closed, &e) && closed &&
            (!out || *out || !ended_json(m, r, "closed", at, out, &e)))
            rc = CORE_OK;
    }
    if (rc && out) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

core_status market_request_withdraw(market *m, const uint8_t *org, const char *id, json_t **out, core_error *err) {
    *out = NULL;
    req_row r;
    core_status rc = req_load(m, id, &r, err);
    if (rc) return rc;
    const int64_t at = now_of(m);
    if (org && memcmp(org, r.org, LEDGER_KEY)) {
        rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such data request");
    } else if (!strcmp(r.state, "pending")) {
        /* the answer first: one write, nothing after it */
        rc = ended_json(m, &r, "withdrawn", at, out, err);
        if (!rc) rc = req_set_state_at(m, id, "pending", "withdrawn", NULL, at, err);
    } else if (!strcmp(r.state, "open")) {
        rc = close_open(m, &r, out, err);
    } else {
        rc = core_fail(err, CORE_ERR_CONFLICT, "state", "the request has already ended (%s)", r.state);
    }
    if (rc) {
        json_decref(*out);
        *out = NULL;
    }
    req_free(&r);
    return rc;
}

core_status market_sweep(market *m, int *closed, core_error *err) {
    if (closed) *closed = 0;
    req_row *v;
    size_t n;
    core_status rc =
        req_query(m, "SELECT " REQ_COLS " FROM market_requests WHERE state = 'open'", NULL, NULL, 0, &v, &n, err);
    if (rc) return rc;
    int64_t now = now_of(m);
    for (size_t i = 0; !rc && i < n; i++) {
        ledger_market lm;
        if ((rc = ledger_get_market(m->opt.led, v[i].txid, &lm, err))) break;
        if (lm.state != LEDGER_MARKET_OPEN) { /* the last place was paid: the ledger closed it */
            rc = req_set_state(m, v[i].id, "open", "closed", NULL, err);
            if (rc == CORE_ERR_CONFLICT)
                rc = CORE_OK; /* another sweep got there */
            else if (!rc && closed)
                (*closed)++;
        } else if (v[i].closes <= now) {
            rc = close_open(m, &v[i], NULL, err);
            if (rc == CORE_ERR_CONFLICT)
                rc = CORE_OK;
            else if (!rc && closed)
                (*closed)++;
        }
    }
    reqs_free(v, n);
    return rc;
}

/* ---- the person's side ---- */

static core_status earned_today(market *m, sqlite3 *db, int64_t owner, int64_t *out, core_error *err) {
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(
        db, "SELECT coalesce(sum(amount), 0) FROM market_participation WHERE owner = ?1 AND paid_at >= ?2", &q, err);
    *out = 0;
    if (!rc) {
        sqlite3_bind_int64(q, 1, owner);
        sqlite3_bind_int64(q, 2, day_start(now_of(m)));
        if (sqlite3_step(q) == SQLITE_ROW)
            *out = sqlite3_column_int64(q, 0);
        else
            rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    return rc;
}

static core_status took_part(sqlite3 *db, int64_t owner, const char *id, bool *yes, core_error *err) {
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db,
                                   "SELECT 1 FROM market_participation WHERE owner = ?1 AND request_id = ?2 UNION ALL "
                                   "SELECT 1 FROM market_intents WHERE owner = ?1 AND request_id = ?2",
                                   &q, err);
    *yes = false;
    if (!rc) {
        sqlite3_bind_int64(q, 1, owner);
        sqlite3_bind_text(q, 2, id, -1, SQLITE_STATIC);
        int s = sqlite3_step(q);
        *yes = s == SQLITE_ROW;
        if (s != SQLITE_ROW && s != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    return rc;
}

/* The requests the person took part in, newest first: what they were paid
 * and the grant (the consent whose revocation withdraws their rows). Read
 * from their own participation rows, which name them anyway (cap,
 * "accepted"); the tags stay sealed. */
static core_status participations(sqlite3 *db, int64_t owner, json_t **out, core_error *err) {
    sqlite3_stmt *q = NULL;
    json_t *a = json_array();
    core_status rc = a ? store_prepare(db,
                                       "SELECT p.request_id, r.title, r.org_key, r.org_name, r.purpose, p.amount, "
                                       "p.paid_at, p.grant_txid, p.withdrawn_at, r.state FROM market_participation p "
                                       "JOIN market_requests r ON r.id = p.request_id WHERE p.owner = ?1 "
                                       "ORDER BY p.paid_at DESC, p.request_id",
                                       &q, err)
                       : nomem(err);
    if (!rc) sqlite3_bind_int64(q, 1, owner);
    int s = SQLITE_DONE;
    while (!rc && (s = sqlite3_step(q)) == SQLITE_ROW) {
        const bool withdrawn = sqlite3_column_type(q, 8) != SQLITE_NULL;
        json_t *j =
            sqlite3_column_bytes(q, 2) == LEDGER_KEY && sqlite3_column_bytes(q, 7) == LEDGER_HASH
                ? json_pack("{s:s, s:s, s:{s:o, s:s}, s:s, s:I, s:o, s:o, s:s, s:o}", "request",
                            (const char *)sqlite3_column_text(q, 0), "title", (const char *)sqlite3_column_text(q, 1),
                            "organisation", "key", hex_json(sqlite3_column_blob(q, 2), LEDGER_KEY), "name",
                            (const char *)sqlite3_column_text(q, 3), "purpose", (const char *)sqlite3_column_text(q, 4),
                            "paid", (json_int_t)sqlite3_column_int64(q, 5), "paid_at",
                            time_json(sqlite3_column_int64(q, 6)), "grant_txid",
                            hex_json(sqlite3_column_blob(q, 7), LEDGER_HASH), "state",
                            (const char *)sqlite3_column_text(q, 9), "withdrawn_at",
                            withdrawn ? time_json(sqlite3_column_int64(q, 8)) : json_null())
                : NULL;
        if (!j || json_array_append_new(a, j)) rc = nomem(err);
    }
    if (!rc && s != SQLITE_DONE) rc = store_error(db, err);
    sqlite3_finalize(q);
    if (rc) {
        json_decref(a);
        return rc;
    }
    *out = a;
    return CORE_OK;
}

core_status market_person_list(market *m, const market_person *p, json_t **out, core_error *err) {
    *out = NULL;
    market_sweep(m, NULL, NULL);
    req_row *v;
    size_t n;
    core_status rc = req_query(m, "SELECT " REQ_COLS " FROM market_requests WHERE state = 'open' ORDER BY closes, id",
                               NULL, NULL, 0, &v, &n, err);
    if (rc) return rc;
    const int year = this_year_of(now_of(m));
    int64_t earned = 0;
    sqlite3 *db = store_acquire(m->opt.st);
    rc = earned_today(m, db, p->owner, &earned, err);
    json_t *a = json_array();
    if (!rc && !a) rc = nomem(err);
    for (size_t i = 0; !rc && i < n; i++) {
        market_criteria c;
        criteria_load(v[i].criteria, v[i].categories, &c);
        if (!market_matches(&c, p->profile, p->entries, year)) continue;
        bool accepted = false;
        if ((rc = took_part(db, p->owner, v[i].id, &accepted, err))) break;
        json_t *rows = market_rows_build(&c, p->profile, p->entries, year, m->opt.conditions, m->opt.n_conditions);
        const bool applies = earned + v[i].price > m->opt.daily_cap;
        /* Places left as the ledger counts them (the page shows them). */
        ledger_market lm;
        if ((rc = ledger_get_market(m->opt.led, v[i].txid, &lm, err))) {
            json_decref(rows);
            break;
        }
        const json_int_t left = (json_int_t)lm.max_participants - (json_int_t)lm.paid;
        json_t *j =
            rows ? json_pack("{s:s, s:{s:o, s:s}, s:s, s:s, s:s, s:o, s:I, s:o, s:o, s:b, s:{s:I, s:I, s:b}}", "id",
                             v[i].id, "organisation", "key", hex_json(v[i].org, LEDGER_KEY), "name", v[i].org_name,
                             "title", v[i].title, "purpose_text", v[i].purpose_text, "purpose", v[i].purpose,
                             "categories", categories_json(v[i].categories), "price", (json_int_t)v[i].price, "closes",
                             time_json(v[i].closes), "preview", rows, "accepted", accepted, "daily_cap", "cap",
                             (json_int_t)m->opt.daily_cap, "earned_today", (json_int_t)earned, "applies", applies)
                 : NULL;
        if (!j || json_object_set_new(j, "places_left", json_integer(left)) ||
            json_object_set_new(j, "max_participants", json_integer((json_int_t)v[i].max)) ||
            json_array_append_new(a, j))
            rc = nomem(err);
    }
    json_t *took = NULL;
    if (!rc) rc = participations(db, p->owner, &took, err);
    store_release(m->opt.st, db);
    reqs_free(v, n);
    if (!rc) {
        *out = json_pack("{s:o, s:{s:I, s:I}, s:o}", "requests", a, "daily_cap", "cap", (json_int_t)m->opt.daily_cap,
                         "earned_today", (json_int_t)earned, "participations", took);
        a = took = NULL;
        if (!*out) rc = nomem(err);
    }
    json_decref(a);
    json_decref(took);
    return rc;
}

/* The person's sealed copy: {request, grant (hex), tags: [hex]}, AD
 * "market:<owner>:<request>". */
static void person_ad(char ad[80], int64_t owner, const char *id) {
    snprintf(ad, 80, "market:%lld:%s", (long long)owner, id);
}

typedef struct {
    char id[MARKET_ID_TEXT];
    int64_t owner;
    uint8_t wallet[LEDGER_KEY];
    bool has_grant;
    uint8_t grant[LEDGER_HASH];
    uint8_t *rows_sealed, *person_sealed;
    size_t rows_len, person_len;
} intent_row;

static void intent_free(intent_row *v) {
    free(v->rows_sealed);
    free(v->person_sealed);
}

static core_status intent_put(market *m, const intent_row *in, core_error *err) {
    sqlite3 *db = store_acquire(m->opt.st);
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db,
                                   "INSERT INTO market_intents (request_id, owner, wallet, rows_sealed, person_sealed, "
                                   "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                                   &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, in->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, in->owner);
        sqlite3_bind_blob(q, 3, in->wallet, LEDGER_KEY, SQLITE_STATIC);
        sqlite3_bind_blob(q, 4, in->rows_sealed, (int)in->rows_len, SQLITE_STATIC);
        sqlite3_bind_blob(q, 5, in->person_sealed, (int)in->person_len, SQLITE_STATIC);
        sqlite3_bind_int64(q, 6, now_of(m));
        int s = sqlite3_step(q);
        if ((s & 0xff) == SQLITE_CONSTRAINT)
            rc = core_fail(err, CORE_ERR_CONFLICT, "accepted", "this request is already being accepted");
        else if (s != SQLITE_DONE)
            rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    store_release(m->opt.st, db);
    return rc;
}

static core_status intent_exec(market *m, sqlite3 *db, const char *sql, const intent_row *in, core_error *err) {
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db, sql, &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, in->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, in->owner);
        if (in->has_grant) sqlite3_bind_blob(q, 3, in->grant, LEDGER_HASH, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    (void)m;
    return rc;
}

static core_status intent_drop(market *m, const intent_row *in, core_error *err) {
    sqlite3 *db = store_acquire(m->opt.st);
    core_status rc = intent_exec(m, db, "DELETE FROM market_intents WHERE request_id = ?1 AND owner = ?2", in, err);
    store_release(m->opt.st, db);
    return rc;
}

/* Step 3 of an acceptance, also run by recovery: the participation (with
 * the person's sealed copy), the rows by tag, the end of the intent. */
static core_status finish_accept(market *m, const intent_row *in, int64_t amount, core_error *err) {
    uint8_t *plain = NULL;
    size_t plen = 0;
    char ad[80];
    snprintf(ad, sizeof ad, "market-rows:%s", in->id);
    core_status rc = cs_crypto_open(m->row_key, ad, strlen(ad), in->rows_sealed, in->rows_len, &plain, &plen, err);
    json_t *rows = rc ? NULL : core_json_loadb((const char *)plain, plen, 0, NULL, err);
    if (!rc && !rows) rc = err->code;
    if (plain) cs_crypto_wipe(plain, plen);
    free(plain);
    if (!rc && !json_is_array(rows)) rc = core_fail(err, CORE_ERR_STORAGE, NULL, "malformed acceptance intent");
    sqlite3 *db = store_acquire(m->opt.st);
    bool open = false;
    if (!rc) open = !(rc = store_begin(db, err));
    sqlite3_stmt *q = NULL;
    if (!rc)
        rc = store_prepare(db,
                           "INSERT INTO market_participation (owner, request_id, amount, paid_at, sealed, "
                           "grant_txid) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                           &q, err);
    if (!rc) {
        sqlite3_bind_int64(q, 1, in->owner);
        sqlite3_bind_text(q, 2, in->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 3, amount);
        sqlite3_bind_int64(q, 4, now_of(m));
        sqlite3_bind_blob(q, 5, in->person_sealed, (int)in->person_len, SQLITE_STATIC);
        sqlite3_bind_blob(q, 6, in->grant, LEDGER_HASH, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    q = NULL;
    /* One random contributor id for this acceptance's rows: delivery counts
     * people with it (k-anonymity). Drawn here, not in the intent: the
     * intent is gone in this same transaction, so it is drawn once. */
    uint8_t contributor[MARKET_TAG_BYTES];
    cs_crypto_random(contributor, sizeof contributor);
    if (!rc)
        rc = store_prepare(db, "INSERT INTO market_rows (tag, request_id, row, contributor) VALUES (?1, ?2, ?3, ?4)",
                           &q, err);
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        if (rc) break;
        uint8_t tag[MARKET_TAG_BYTES];
        const char *th = json_string_value(json_object_get(row, "tag"));
        json_t *copy = json_deep_copy(row);
        char *text = NULL;
        if (!th || strlen(th) != 2 * MARKET_TAG_BYTES || !cs_crypto_unhex(th, tag, sizeof tag))
            rc = core_fail(err, CORE_ERR_STORAGE, NULL, "malformed acceptance intent");
        else if (!copy || json_object_del(copy, "tag") ||
                 !(text = core_json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS)))
            rc = nomem(err);
        if (!rc) {
            sqlite3_bind_blob(q, 1, tag, sizeof tag, SQLITE_STATIC);
            sqlite3_bind_text(q, 2, in->id, -1, SQLITE_STATIC);
            sqlite3_bind_text(q, 3, text, -1, SQLITE_STATIC);
            sqlite3_bind_blob(q, 4, contributor, sizeof contributor, SQLITE_STATIC);
            if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
            sqlite3_reset(q);
        }
        free(text);
        json_decref(copy);
    }
    sqlite3_finalize(q);
    if (!rc) rc = intent_exec(m, db, "DELETE FROM market_intents WHERE request_id = ?1 AND owner = ?2", in, err);
    if (open) {
        if (!rc)
            rc = store_commit(db, err);
        else
            store_rollback(db);
    }
    store_release(m->opt.st, db);
    json_decref(rows);
    return rc;
}

static core_status submit_pay(market *m, const uint8_t request[LEDGER_HASH], const uint8_t grant[LEDGER_HASH],
                              uint8_t txid[LEDGER_HASH], core_error *err) {
    ledger_tx tx = {.kind = LEDGER_TX_MARKET_PAY};
    memcpy(tx.u.market_pay.request, request, LEDGER_HASH);
    memcpy(tx.u.market_pay.grant, grant, LEDGER_HASH);
    ledger_receipt rec;
    core_status rc = ledger_sign_submit(m->opt.led, &tx, m->opt.node_sk, &rec, err);
    /* The txid even on a failure (zero if it was never signed): a payment
     * the ledger holds after all is answered with it. */
    if (txid) memcpy(txid, rec.txid, LEDGER_HASH);
    return rc;
}

/* Whether an acceptance's payment is on the ledger (*paid). No grant, or
 * a request never funded: nothing can have been paid. With complete
 * (market_recover) a payment the ledger does not hold is made now; one it
 * refuses (filled, closed, the consent revoked) leaves *paid false. */
static core_status intent_paid(market *m, const req_row *r, const intent_row *x, bool complete, bool *paid,
                               core_error *err) {
    *paid = false;
    if (!x->has_grant || !r->funded) return CORE_OK;
    core_status rc = ledger_market_paid(m->opt.led, r->txid, x->wallet, paid, err);
    if (rc || *paid || !complete) return rc;
    core_error e = {0};
    core_status p = submit_pay(m, r->txid, x->grant, NULL, &e);
    if (!p) {
        *paid = true;
    } else if (p != CORE_ERR_CONFLICT && p != CORE_ERR_FORBIDDEN && p != CORE_ERR_NOT_FOUND) {
        rc = p; /* the ledger could not answer: try again at the next start */
        if (err) *err = e;
    }
    return rc;
}

static json_t *accept_json(const char *id, const req_row *r, const intent_row *in, const uint8_t pay[LEDGER_HASH],
                           json_t *rows) {
    return json_pack("{s:s, s:I, s:o, s:o, s:O}", "request", id, "paid", (json_int_t)r->price, "grant_txid",
                     hex_json(in->grant, LEDGER_HASH), "payment_txid", hex_json(pay, LEDGER_HASH), "rows", rows);
}

/* How long a market consent stands unless revoked: the delivery that uses
 * it may come after the request closes. */
#define CONSENT_AFTER_CLOSE (365 * 86400)

/* An acceptance's refusals, before anything is made: not open or not
 * matching, already taken part (or under way), over today's cap. *r (to
 * req_free) and *c on success. */
static core_status accept_check(market *m, const market_person *p, const char *id, req_row *r, market_criteria *c,
                                int year, core_error *err) {
    core_status rc = req_load(m, id, r, err);
    if (rc) return rc;
    criteria_load(r->criteria, r->categories, c);
    if (strcmp(r->state, "open") || !market_matches(c, p->profile, p->entries, year)) {
        req_free(r);
        return core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such open request matches your record");
    }
    int64_t earned = 0;
    bool accepted = false;
    sqlite3 *db = store_acquire(m->opt.st);
    rc = took_part(db, p->owner, id, &accepted, err);
    if (!rc) rc = earned_today(m, db, p->owner, &earned, err);
    store_release(m->opt.st, db);
    if (!rc && accepted)
        rc = core_fail(err, CORE_ERR_CONFLICT, "accepted", "you have already taken part in this request");
    if (!rc && earned + r->price > m->opt.daily_cap)
        rc = core_fail(err, CORE_ERR_CONFLICT, "daily_cap",
                       "the daily earning limit applies: you have earned %lld of %lld tokens today, and this request "
                       "pays %lld; you can accept it tomorrow",
                       (long long)earned, (long long)m->opt.daily_cap, (long long)r->price);
    if (rc) req_free(r);
    return rc;
}

/* The rows, each with a fresh random tag, sealed under the row key for the
 * intent, and the person's copy of the tags sealed under their data key:
 * in->rows_sealed and in->person_sealed (intent_free), *rows (new). */
static core_status accept_seal(market *m, const market_person *p, const char *id, const market_criteria *c, int year,
                               intent_row *in, json_t **rows, core_error *err) {
    core_status rc = CORE_OK;
    *rows = market_rows_build(c, p->profile, p->entries, year, m->opt.conditions, m->opt.n_conditions);
    json_t *tags = json_array();
    if (!*rows || !tags) rc = nomem(err);
    size_t i;
    json_t *row;
    json_array_foreach(*rows, i, row) {
        if (rc) break;
        uint8_t tag[MARKET_TAG_BYTES];
        cs_crypto_random(tag, sizeof tag);
        if (json_object_set_new(row, "tag", hex_json(tag, sizeof tag)) ||
            json_array_append_new(tags, hex_json(tag, sizeof tag)))
            rc = nomem(err);
    }
    char *rt = rc ? NULL : core_json_dumps(*rows, JSON_COMPACT);
    json_t *mine = rc ? NULL : json_pack("{s:s, s:O}", "request", id, "tags", tags);
    char *pt = mine ? core_json_dumps(mine, JSON_COMPACT) : NULL;
    if (!rc && (!rt || !pt)) rc = nomem(err);
    char ad[80];
    snprintf(ad, sizeof ad, "market-rows:%s", id);
    if (!rc) rc = cs_crypto_seal(m->row_key, ad, strlen(ad), rt, strlen(rt), &in->rows_sealed, &in->rows_len, err);
    person_ad(ad, p->owner, id);
    if (!rc) rc = cs_crypto_seal(p->data_key, ad, strlen(ad), pt, strlen(pt), &in->person_sealed, &in->person_len, err);
    if (rt) cs_crypto_wipe(rt, strlen(rt));
    free(rt);
    free(pt);
    json_decref(mine);
    json_decref(tags);
    return rc;
}

/* Step 2: the consent, signed by the person's wallet, noted in the intent. */
static core_status accept_grant(market *m, const market_person *p, const req_row *r, intent_row *in, core_error *err) {
    ledger_tx tx = {.kind = LEDGER_TX_GRANT};
    tx.u.grant.scope = r->categories;
    tx.u.grant.purpose = !strcmp(r->purpose, "research") ? LEDGER_PURPOSE_RESEARCH : LEDGER_PURPOSE_SURVEILLANCE;
    memcpy(tx.u.grant.grantee, r->org, LEDGER_KEY);
    tx.u.grant.expires = (uint64_t)(r->closes + CONSENT_AFTER_CLOSE);
    ledger_receipt rec;
    core_status rc = ledger_sign_submit(m->opt.led, &tx, p->wallet_sk, &rec, err);
    if (rc) return rc;
    in->has_grant = true;
    memcpy(in->grant, rec.txid, LEDGER_HASH);
    sqlite3 *db = store_acquire(m->opt.st);
    rc = intent_exec(m, db, "UPDATE market_intents SET grant_txid = ?3 WHERE request_id = ?1 AND owner = ?2", in, err);
    store_release(m->opt.st, db);
    return rc;
}

core_status market_accept(market *m, const market_person *p, const char *id, json_t **out, core_error *err) {
    *out = NULL;
    req_row r;
    market_criteria c;
    const int year = this_year_of(now_of(m));
    core_status rc = accept_check(m, p, id, &r, &c, year, err);
    if (rc) return rc;
    intent_row in = {.owner = p->owner};
    snprintf(in.id, sizeof in.id, "%s", id);
    memcpy(in.wallet, p->wallet_sk + 32, LEDGER_KEY);
    json_t *rows = NULL;
    rc = accept_seal(m, p, id, &c, year, &in, &rows, err);
    /* 1. The intent. */
    if (!rc) rc = intent_put(m, &in, err);
    bool intended = !rc;
    MARKET_CRASH_POINT("market_after_accept_intent");
    /* 2. The consent. */
    if (!rc) rc = accept_grant(m, p, &r, &in, err);
    MARKET_CRASH_POINT("market_after_grant");
    /* 3. The payment (the ledger refuses a second one to this wallet). */
    uint8_t pay[LEDGER_HASH] = {0};
    if (!rc) {
        rc = submit_pay(m, r.txid, in.grant, pay, err);
        if (rc == CORE_ERR_CONFLICT && !strcmp(err ? err->field : "", "request"))
            core_fail(err, CORE_ERR_CONFLICT, "state", "the request filled or closed while you accepted");
    }
    MARKET_CRASH_POINT("market_after_pay");
    /* 4. The answer, then rows, participation and the end of the intent
     * in one transaction: nothing that can fail comes after it. */
    if (!rc && !(*out = accept_json(id, &r, &in, pay, rows))) rc = nomem(err);
    if (!rc) rc = finish_accept(m, &in, r.price, err);
    if (rc && intended) {
        /* A step failed: the ledger says whether the person was paid.
         * Paid → the acceptance is finished now and answered as a clean
         * success; not → the consent just made would stand for nothing,
         * so the person's wallet revokes it, and the intent goes. If the
         * ledger cannot say, or the rows cannot be written now either, the
         * intent stays for market_recover. */
        core_error e = {0};
        bool paid = false;
        if (!intent_paid(m, &r, &in, false, &paid, &e)) {
            if (paid) {
                if ((*out || (*out = accept_json(id, &r, &in, pay, rows))) && !finish_accept(m, &in, r.price, &e))
                    rc = CORE_OK;
            } else {
                if (in.has_grant) { /* if this fails it stays listed among their consents to revoke */
                    ledger_tx tx = {.kind = LEDGER_TX_REVOKE};
                    memcpy(tx.u.revoke.grant, in.grant, LEDGER_HASH);
                    ledger_receipt rec;
                    ledger_sign_submit(m->opt.led, &tx, p->wallet_sk, &rec, NULL);
                }
                intent_drop(m, &in, NULL);
            }
        }
    }
    if (rc) {
        json_decref(*out);
        *out = NULL;
    } else {
        market_sweep(m, NULL, NULL); /* the last place closes the request now */
    }
    json_decref(rows);
    intent_free(&in);
    req_free(&r);
    return rc;
}

/* ---- recovery ---- */

static core_status recover_intents(market *m, int *done, core_error *err) {
    sqlite3 *db = store_acquire(m->opt.st);
    sqlite3_stmt *q = NULL;
    intent_row *v = NULL;
    size_t n = 0, cap = 0;
    core_status rc = store_prepare(
        db, "SELECT request_id, owner, wallet, grant_txid, rows_sealed, person_sealed FROM market_intents", &q, err);
    while (!rc && sqlite3_step(q) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 8;
            intent_row *g = realloc(v, ncap * sizeof *g);
            if (!g) {
                rc = nomem(err);
                break;
            }
            v = g;
            cap = ncap;
        }
        intent_row *x = &v[n];
        memset(x, 0, sizeof *x);
        snprintf(x->id, sizeof x->id, "%s", (const char *)sqlite3_column_text(q, 0));
        x->owner = sqlite3_column_int64(q, 1);
        if (sqlite3_column_bytes(q, 2) == LEDGER_KEY) memcpy(x->wallet, sqlite3_column_blob(q, 2), LEDGER_KEY);
        x->has_grant = sqlite3_column_bytes(q, 3) == LEDGER_HASH;
        if (x->has_grant) memcpy(x->grant, sqlite3_column_blob(q, 3), LEDGER_HASH);
        x->rows_len = (size_t)sqlite3_column_bytes(q, 4);
        x->person_len = (size_t)sqlite3_column_bytes(q, 5);
        x->rows_sealed = malloc(x->rows_len ? x->rows_len : 1);
        x->person_sealed = malloc(x->person_len ? x->person_len : 1);
        n++;
        if (!x->rows_sealed || !x->person_sealed) {
            rc = nomem(err);
            break;
        }
        memcpy(x->rows_sealed, sqlite3_column_blob(q, 4), x->rows_len);
        memcpy(x->person_sealed, sqlite3_column_blob(q, 5), x->person_len);
    }
    sqlite3_finalize(q);
    store_release(m->opt.st, db);
    for (size_t i = 0; !rc && i < n; i++) {
        intent_row *x = &v[i];
        req_row r;
        if ((rc = req_load(m, x->id, &r, err))) break;
        bool paid = false;
        rc = intent_paid(m, &r, x, true, &paid, err);
        if (!rc) rc = paid ? finish_accept(m, x, r.price, err) : intent_drop(m, x, err);
        if (!rc) (*done)++;
        req_free(&r);
    }
    for (size_t i = 0; i < n; i++) intent_free(&v[i]);
    free(v);
    return rc;
}

core_status market_recover(market *m, int *resolved, core_error *err) {
    int done = 0;
    if (resolved) *resolved = 0;
    req_row *v;
    size_t n;
    core_status rc = req_query(m, "SELECT " REQ_COLS " FROM market_requests WHERE state IN ('funding','closing')", NULL,
                               NULL, 0, &v, &n, err);
    for (size_t i = 0; !rc && i < n; i++) {
        req_row *r = &v[i];
        bool ended = false;
        if (!strcmp(r->state, "funding"))
            rc = funding_resolve(m, r, &ended, err);
        else
            rc = closing_resolve(m, r, true, now_of(m), &ended, err);
        if (!rc) done++;
    }
    reqs_free(v, n);
    if (!rc) rc = recover_intents(m, &done, err);
    if (resolved) *resolved = done;
    return rc;
}

/* ---- withdrawal ---- */

typedef struct {
    char id[MARKET_ID_TEXT];
    uint8_t *sealed;
    size_t len;
} part_row;

/* The person's participations not yet withdrawn: all (id NULL, grant NULL),
 * one request's, or the one a grant made. */
static core_status parts_of(market *m, sqlite3 *db, int64_t owner, const char *id, const uint8_t *grant, part_row **out,
                            size_t *n, core_error *err) {
    *out = NULL;
    *n = 0;
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db,
                                   "SELECT request_id, sealed FROM market_participation WHERE owner = ?1 AND "
                                   "withdrawn_at IS NULL AND (?2 IS NULL OR request_id = ?2) AND "
                                   "(?3 IS NULL OR grant_txid = ?3)",
                                   &q, err);
    size_t cap = 0;
    (void)m;
    if (!rc) {
        sqlite3_bind_int64(q, 1, owner);
        if (id) sqlite3_bind_text(q, 2, id, -1, SQLITE_STATIC);
        if (grant) sqlite3_bind_blob(q, 3, grant, LEDGER_HASH, SQLITE_STATIC);
    }
    while (!rc && sqlite3_step(q) == SQLITE_ROW) {
        if (*n == cap) {
            size_t ncap = cap ? 2 * cap : 4;
            part_row *g = realloc(*out, ncap * sizeof *g);
            if (!g) {
                rc = nomem(err);
                break;
            }
            *out = g;
            cap = ncap;
        }
        part_row *p = &(*out)[*n];
        snprintf(p->id, sizeof p->id, "%s", (const char *)sqlite3_column_text(q, 0));
        p->len = (size_t)sqlite3_column_bytes(q, 1);
        p->sealed = malloc(p->len ? p->len : 1);
        if (!p->sealed) {
            rc = nomem(err);
            break;
        }
        memcpy(p->sealed, sqlite3_column_blob(q, 1), p->len);
        (*n)++;
    }
    sqlite3_finalize(q);
    return rc;
}

static void parts_free(part_row *v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i].sealed);
    free(v);
}

/* Delete one participation's rows by the tags only the data key opens, and
 * mark it withdrawn (the payment stands; the row still counts for the cap
 * and "accepted"). One SQLite transaction. */
static core_status withdraw_one(market *m, sqlite3 *db, int64_t owner, const uint8_t data_key[32], const part_row *p,
                                core_error *err) {
    char ad[80];
    person_ad(ad, owner, p->id);
    uint8_t *plain = NULL;
    size_t plen = 0;
    core_status rc = cs_crypto_open(data_key, ad, strlen(ad), p->sealed, p->len, &plain, &plen, err);
    json_t *mine = rc ? NULL : core_json_loadb((const char *)plain, plen, 0, NULL, err);
    if (!rc && !mine) rc = err->code;
    free(plain);
    const json_t *tags = json_object_get(mine, "tags");
    if (!rc && !json_is_array(tags)) rc = core_fail(err, CORE_ERR_STORAGE, NULL, "malformed participation");
    bool open = false;
    if (!rc) {
        rc = store_begin(db, err);
        open = !rc;
    }
    sqlite3_stmt *q = NULL;
    if (!rc) rc = store_prepare(db, "DELETE FROM market_rows WHERE tag = ?1 AND request_id = ?2", &q, err);
    size_t i;
    const json_t *t;
    json_array_foreach(tags, i, t) {
        uint8_t tag[MARKET_TAG_BYTES];
        if (rc) break;
        const char *h = json_string_value(t);
        if (!h || strlen(h) != 2 * MARKET_TAG_BYTES || !cs_crypto_unhex(h, tag, sizeof tag)) {
            rc = core_fail(err, CORE_ERR_STORAGE, NULL, "malformed participation");
            break;
        }
        sqlite3_bind_blob(q, 1, tag, sizeof tag, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, p->id, -1, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
        sqlite3_reset(q);
    }
    sqlite3_finalize(q);
    q = NULL;
    if (!rc)
        rc = store_prepare(db, "UPDATE market_participation SET withdrawn_at = ?3 WHERE owner = ?1 AND request_id = ?2",
                           &q, err);
    if (!rc) {
        sqlite3_bind_int64(q, 1, owner);
        sqlite3_bind_text(q, 2, p->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 3, now_of(m));
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    if (open) {
        if (!rc)
            rc = store_commit(db, err);
        else
            store_rollback(db);
    }
    json_decref(mine);
    return rc;
}

static core_status withdraw_where(market *m, int64_t owner, const uint8_t data_key[32], const char *id,
                                  const uint8_t *grant, int *n_out, core_error *err) {
    if (n_out) *n_out = 0;
    sqlite3 *db = store_acquire(m->opt.st);
    part_row *v = NULL;
    size_t n = 0;
    core_status rc = parts_of(m, db, owner, id, grant, &v, &n, err);
    for (size_t i = 0; !rc && i < n; i++) rc = withdraw_one(m, db, owner, data_key, &v[i], err);
    store_release(m->opt.st, db);
    parts_free(v, n);
    if (!rc && n_out) *n_out = (int)n;
    if (!rc && n == 0 && (id || grant)) rc = core_fail(err, CORE_ERR_NOT_FOUND, NULL, "no such participation");
    return rc;
}

core_status market_withdraw(market *m, int64_t owner, const uint8_t data_key[32], const char *id, core_error *err) {
    return withdraw_where(m, owner, data_key, id, NULL, NULL, err);
}

core_status market_withdraw_grant(market *m, int64_t owner, const uint8_t data_key[32],
                                  const uint8_t grant[LEDGER_HASH], core_error *err) {
    return withdraw_where(m, owner, data_key, NULL, grant, NULL, err);
}

core_status market_forget_person(market *m, int64_t owner, const uint8_t data_key[32], int *n, core_error *err) {
    return withdraw_where(m, owner, data_key, NULL, NULL, n, err);
}

/* ---- delivery's boundary ---- */

core_status market_rows_for_request(market *m, const char *id, json_t **rows, core_error *err) {
    *rows = NULL;
    req_row r = {0}; /* gcc -O3 (make bench) cannot see req_load fill it before req_free */
    core_status rc = req_load(m, id, &r, err);
    if (rc) return rc;
    req_free(&r);
    json_t *a = json_array();
    if (!a) return nomem(err);
    sqlite3 *db = store_acquire(m->opt.st);
    sqlite3_stmt *q = NULL;
    rc = store_prepare(db, "SELECT tag, row FROM market_rows WHERE request_id = ?1 ORDER BY tag", &q, err);
    if (!rc) {
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        int s;
        while (!rc && (s = sqlite3_step(q)) == SQLITE_ROW) {
            json_t *row = core_json_loads((const char *)sqlite3_column_text(q, 1), 0, NULL, NULL);
            if (!row || sqlite3_column_bytes(q, 0) != MARKET_TAG_BYTES ||
                json_object_set_new(row, "tag", hex_json(sqlite3_column_blob(q, 0), MARKET_TAG_BYTES)) ||
                json_array_append_new(a, row))
                rc = nomem(err);
        }
        if (!rc && s != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    store_release(m->opt.st, db);
    if (rc) {
        json_decref(a);
        return rc;
    }
    *rows = a;
    return CORE_OK;
}
