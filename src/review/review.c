/* review — organisations' review offers (see review.h). */
#include "review/review.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "crypto/crypto.h"
#include "review/internal.h"

core_status review_open(const review_options *opt, review **out, core_error *err) {
    *out = NULL;
    review *r = calloc(1, sizeof *r);
    if (!r) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    r->opt = *opt;
    r->opt.conditions = NULL;
    /* The organisation's copy of a case key is sealed under a key only the
     * node key yields (domain-separated), not under the node key itself. */
    if (opt->node_sk) cs_crypto_hash(r->server_key, "caresync review case keys v1", opt->node_sk, LEDGER_SECRET);
    if (opt->n_conditions) {
        r->conditions = calloc(opt->n_conditions, sizeof *r->conditions);
        if (!r->conditions) {
            review_close(r);
            return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        }
    }
    for (size_t i = 0; i < opt->n_conditions; i++) {
        r->conditions[i] = strdup(opt->conditions[i]);
        if (!r->conditions[i]) {
            review_close(r);
            return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        }
        r->n_conditions = i + 1;
    }
    *out = r;
    return CORE_OK;
}

void review_close(review *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_conditions; i++) free(r->conditions[i]);
    free(r->conditions);
    cs_crypto_wipe(r->server_key, sizeof r->server_key);
    free(r);
}

bool review_known_condition(const review *r, const char *code) {
    for (size_t i = 0; i < r->n_conditions; i++)
        if (!strcmp(r->conditions[i], code)) return true;
    return false;
}

/* An ISO 3166-1 alpha-2 code, upper-cased into out. The regions module
 * lists the countries that have subdivisions, which is every country a home
 * region (an ISO 3166-2 code) can be in: an offer for any other could never
 * match a person. */
static bool known_country(const review *r, const char *in, char out[3]) {
    if (!in || strlen(in) != 2 || !isalpha((unsigned char)in[0]) || !isalpha((unsigned char)in[1])) return false;
    out[0] = (char)toupper((unsigned char)in[0]);
    out[1] = (char)toupper((unsigned char)in[1]);
    out[2] = 0;
    return regions_subdivisions(r->opt.regs, out) != NULL;
}

core_status review_offer_validate(review *r, review_offer *o, core_error *err) {
    if (o->price < REVIEW_PRICE_MIN || o->price > REVIEW_PRICE_MAX)
        return core_fail(err, CORE_ERR_INVALID, "price", "the price must be %d to %d tokens", REVIEW_PRICE_MIN,
                         REVIEW_PRICE_MAX);
    if (o->answer_hours < REVIEW_HOURS_MIN || o->answer_hours > REVIEW_HOURS_MAX)
        return core_fail(err, CORE_ERR_INVALID, "answer_hours", "the answer-time promise must be %d to %d hours",
                         REVIEW_HOURS_MIN, REVIEW_HOURS_MAX);
    if (o->n_conditions < 1 || o->n_conditions > REVIEW_CONDITIONS_MAX)
        return core_fail(err, CORE_ERR_INVALID, "conditions", "an offer covers 1 to %d conditions",
                         REVIEW_CONDITIONS_MAX);
    for (size_t i = 0; i < o->n_conditions; i++) {
        if (!review_known_condition(r, o->conditions[i]))
            return core_fail(err, CORE_ERR_INVALID, "conditions", "'%.31s' is not a condition code of the screening",
                             o->conditions[i]);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(o->conditions[i], o->conditions[j]))
                return core_fail(err, CORE_ERR_INVALID, "conditions", "condition '%.31s' is named twice",
                                 o->conditions[i]);
    }
    if (o->n_regions < 1 || o->n_regions > REVIEW_REGIONS_MAX)
        return core_fail(err, CORE_ERR_INVALID, "regions", "an offer covers 1 to %d regions (or \"*\")",
                         REVIEW_REGIONS_MAX);
    for (size_t i = 0; i < o->n_regions; i++) {
        char cc[3];
        if (!strcmp(o->regions[i], "*")) {
            if (o->n_regions != 1)
                return core_fail(err, CORE_ERR_INVALID, "regions", "\"*\" (everywhere) stands alone");
            continue;
        }
        if (!known_country(r, o->regions[i], cc))
            return core_fail(err, CORE_ERR_INVALID, "regions", "'%.2s' is not an ISO 3166-1 country code",
                             o->regions[i]);
        memcpy(o->regions[i], cc, sizeof cc);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(o->regions[i], o->regions[j]))
                return core_fail(err, CORE_ERR_INVALID, "regions", "region '%s' is named twice", cc);
    }
    return CORE_OK;
}

typedef struct {
    const uint8_t *want;
    char *name;
    bool hit;
} org_find;

static void find_org(void *ud, const uint8_t pk[LEDGER_KEY], const char *name, uint64_t height) {
    (void)height;
    org_find *f = ud;
    if (f->hit || memcmp(pk, f->want, LEDGER_KEY)) return;
    f->hit = true;
    snprintf(f->name, REVIEW_ORG_NAME_MAX + 1, "%s", name);
}

static core_status exec_key(sqlite3 *db, const char *sql, const uint8_t org[LEDGER_KEY], core_error *err) {
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db, sql, &q, err);
    if (!rc) {
        sqlite3_bind_blob(q, 1, org, LEDGER_KEY, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    return rc;
}

static core_status insert_codes(sqlite3 *db, const char *sql, const uint8_t org[LEDGER_KEY], size_t n,
                                const char *codes, size_t stride, core_error *err) {
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db, sql, &q, err);
    for (size_t i = 0; !rc && i < n; i++) {
        sqlite3_reset(q);
        sqlite3_bind_blob(q, 1, org, LEDGER_KEY, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, codes + i * stride, -1, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    return rc;
}

core_status review_offer_set(review *r, review_offer *o, core_error *err) {
    core_status rc = review_offer_validate(r, o, err);
    if (rc) return rc;
    org_find f = {.want = o->org, .name = o->org_name};
    if ((rc = ledger_list_orgs(r->opt.led, find_org, &f, err))) return rc;
    if (!f.hit)
        return core_fail(err, CORE_ERR_NOT_FOUND, "org", "no such organisation (register it on the ledger first)");
    o->updated_at = core_now();

    sqlite3 *db = store_acquire(r->opt.st);
    sqlite3_stmt *q = NULL;
    rc = store_begin(db, err);
    /* Replace whole: the old rows go (the child rows by cascade) and the
     * new ones are written in the same transaction, so a reader sees the
     * old offer or the new one, never a mix. */
    if (!rc) rc = exec_key(db, "DELETE FROM review_offers WHERE org_key = ?", o->org, err);
    if (!rc)
        rc = store_prepare(db,
                           "INSERT INTO review_offers(org_key, org_name, price, answer_hours, updated_at) "
                           "VALUES (?, ?, ?, ?, ?)",
                           &q, err);
    if (!rc) {
        sqlite3_bind_blob(q, 1, o->org, LEDGER_KEY, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, o->org_name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 3, o->price);
        sqlite3_bind_int(q, 4, o->answer_hours);
        sqlite3_bind_int64(q, 5, o->updated_at);
        if (sqlite3_step(q) != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    if (!rc)
        rc = insert_codes(db, "INSERT INTO review_offer_conditions(org_key, condition) VALUES (?, ?)", o->org,
                          o->n_conditions, o->conditions[0], sizeof o->conditions[0], err);
    if (!rc)
        rc = insert_codes(db, "INSERT INTO review_offer_regions(org_key, region) VALUES (?, ?)", o->org, o->n_regions,
                          o->regions[0], sizeof o->regions[0], err);
    if (!rc)
        rc = store_commit(db, err);
    else
        store_rollback(db);
    store_release(r->opt.st, db);
    return rc;
}

core_status review_offer_withdraw(review *r, const uint8_t org[LEDGER_KEY], core_error *err) {
    sqlite3 *db = store_acquire(r->opt.st);
    core_status rc = exec_key(db, "DELETE FROM review_offers WHERE org_key = ?", org, err);
    if (!rc && sqlite3_changes(db) == 0)
        rc = core_fail(err, CORE_ERR_NOT_FOUND, "org", "this organisation offers no review");
    store_release(r->opt.st, db);
    return rc;
}

/* Fill one offer's conditions and regions (sorted, for stable output). */
static core_status load_codes(sqlite3 *db, review_offer *o, core_error *err) {
    static const char *const sql[2] = {
        "SELECT condition FROM review_offer_conditions WHERE org_key = ? ORDER BY condition",
        "SELECT region FROM review_offer_regions WHERE org_key = ? ORDER BY region",
    };
    core_status rc = CORE_OK;
    for (int k = 0; !rc && k < 2; k++) {
        sqlite3_stmt *q = NULL;
        rc = store_prepare(db, sql[k], &q, err);
        if (!rc) sqlite3_bind_blob(q, 1, o->org, LEDGER_KEY, SQLITE_STATIC);
        size_t *n = k ? &o->n_regions : &o->n_conditions;
        size_t cap = k ? REVIEW_REGIONS_MAX : REVIEW_CONDITIONS_MAX;
        *n = 0;
        int step = SQLITE_DONE;
        while (!rc && (step = sqlite3_step(q)) == SQLITE_ROW && *n < cap) {
            const char *t = (const char *)sqlite3_column_text(q, 0);
            if (k)
                snprintf(o->regions[(*n)++], sizeof o->regions[0], "%s", t ? t : "");
            else
                snprintf(o->conditions[(*n)++], sizeof o->conditions[0], "%s", t ? t : "");
        }
        if (!rc && step != SQLITE_DONE && step != SQLITE_ROW) rc = store_error(db, err);
        sqlite3_finalize(q);
    }
    return rc;
}

static void offer_from_row(sqlite3_stmt *q, review_offer *o) {
    memset(o, 0, sizeof *o);
    if (sqlite3_column_bytes(q, 0) == LEDGER_KEY) memcpy(o->org, sqlite3_column_blob(q, 0), LEDGER_KEY);
    const char *name = (const char *)sqlite3_column_text(q, 1);
    snprintf(o->org_name, sizeof o->org_name, "%s", name ? name : "");
    o->price = sqlite3_column_int64(q, 2);
    o->answer_hours = sqlite3_column_int(q, 3);
    o->updated_at = sqlite3_column_int64(q, 4);
}

#define OFFER_COLUMNS "o.org_key, o.org_name, o.price, o.answer_hours, o.updated_at"

core_status review_offer_get(review *r, const uint8_t org[LEDGER_KEY], review_offer *out, core_error *err) {
    sqlite3 *db = store_acquire(r->opt.st);
    sqlite3_stmt *q = NULL;
    core_status rc = store_prepare(db, "SELECT " OFFER_COLUMNS " FROM review_offers o WHERE o.org_key = ?", &q, err);
    if (!rc) {
        sqlite3_bind_blob(q, 1, org, LEDGER_KEY, SQLITE_STATIC);
        int step = sqlite3_step(q);
        if (step == SQLITE_ROW)
            offer_from_row(q, out);
        else if (step == SQLITE_DONE)
            rc = core_fail(err, CORE_ERR_NOT_FOUND, "org", "this organisation offers no review");
        else
            rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    if (!rc) rc = load_codes(db, out, err);
    store_release(r->opt.st, db);
    return rc;
}

core_status review_offer_list(review *r, const char *condition, const char *country, review_offer **out, size_t *n,
                              core_error *err) {
    *out = NULL;
    *n = 0;
    char cc[3] = "";
    if (condition && !review_known_condition(r, condition))
        return core_fail(err, CORE_ERR_INVALID, "condition", "not a condition code of the screening");
    if (country && !known_country(r, country, cc))
        return core_fail(err, CORE_ERR_INVALID, "country", "country must be an ISO 3166-1 code such as NZ");
    sqlite3 *db = store_acquire(r->opt.st);
    sqlite3_stmt *q = NULL;
    review_offer *list = NULL;
    size_t len = 0, cap = 0;
    core_status rc =
        store_prepare(db,
                      "SELECT " OFFER_COLUMNS " FROM review_offers o WHERE "
                      "(?1 IS NULL OR EXISTS (SELECT 1 FROM review_offer_conditions c WHERE c.org_key = o.org_key AND "
                      "c.condition = ?1)) AND "
                      "(?2 IS NULL OR EXISTS (SELECT 1 FROM review_offer_regions g WHERE g.org_key = o.org_key AND "
                      "g.region IN (?2, '*'))) "
                      "ORDER BY o.price, o.org_name, o.org_key",
                      &q, err);
    if (!rc) {
        if (condition) sqlite3_bind_text(q, 1, condition, -1, SQLITE_STATIC);
        if (country) sqlite3_bind_text(q, 2, cc, -1, SQLITE_STATIC);
        int step = SQLITE_DONE;
        while (!rc && (step = sqlite3_step(q)) == SQLITE_ROW) {
            if (len == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                review_offer *grown = realloc(list, ncap * sizeof *list);
                if (!grown) {
                    rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
                    break;
                }
                list = grown;
                cap = ncap;
            }
            offer_from_row(q, &list[len++]);
        }
        if (!rc && step != SQLITE_DONE) rc = store_error(db, err);
    }
    sqlite3_finalize(q);
    for (size_t i = 0; !rc && i < len; i++) rc = load_codes(db, &list[i], err);
    store_release(r->opt.st, db);
    if (rc) {
        free(list);
        return rc;
    }
    *out = list;
    *n = len;
    return CORE_OK;
}
