/* share — the handle, organisations, series detection and alerts. The
 * contribution side is in contribute.c, releases in release.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "share/internal.h"

core_status share_open(const share_options *opt, share **out, core_error *err) {
    *out = NULL;
    if (!opt || !opt->st) return core_fail(err, CORE_ERR_INVALID, "st", "a store is required");
    if (!opt->led) return core_fail(err, CORE_ERR_INVALID, "led", "a ledger is required");
    if (!opt->node_sk) return core_fail(err, CORE_ERR_INVALID, "node_sk", "the node key is required");
    if (!opt->admin_sk) return core_fail(err, CORE_ERR_INVALID, "admin_sk", "the admin key is required");
    if (opt->k < 1) return core_fail(err, CORE_ERR_INVALID, "k", "k must be at least 1");
    if (!(opt->budget >= 0)) return core_fail(err, CORE_ERR_INVALID, "budget", "the budget must be 0 or more");
    if (opt->seal_delay < 0) return core_fail(err, CORE_ERR_INVALID, "seal_delay", "the seal delay must be 0 or more");
    if (opt->reward_batch < 1)
        return core_fail(err, CORE_ERR_INVALID, "reward_batch", "the reward batch must be at least 1");
    if (opt->photo_distance < 0 || opt->photo_distance > 32)
        return core_fail(err, CORE_ERR_INVALID, "photo_distance", "the photo distance must be 0 to 32 bits");
    if (opt->daily_cap < 0) return core_fail(err, CORE_ERR_INVALID, "daily_cap", "the daily cap must be 0 or more");
    share *s = calloc(1, sizeof *s);
    if (!s) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    s->opt = *opt;
    pthread_mutex_init(&s->pay_lock, NULL);
    pthread_mutex_init(&s->scan_lock, NULL);
    pthread_mutex_init(&s->vault_lock, NULL);
    s->scanned_version = -1;
    s->scanned_week = -1;
    *out = s;
    return CORE_OK;
}

void share_close(share *s) {
    if (!s) return;
    pthread_mutex_destroy(&s->pay_lock);
    pthread_mutex_destroy(&s->scan_lock);
    pthread_mutex_destroy(&s->vault_lock);
    free(s);
}

int share_sealed_through(const share *s, int64_t now) { return surveil_sealed_through(now, s->opt.seal_delay); }

void share_get_stats(share *s, share_stats *out) {
    pthread_mutex_lock(&s->scan_lock);
    out->scans = s->scans;
    pthread_mutex_unlock(&s->scan_lock);
    pthread_mutex_lock(&s->pay_lock);
    out->rewards_paid = s->paid;
    out->rewards_dropped = s->dropped;
    pthread_mutex_unlock(&s->pay_lock);
}

core_status share_overview(share *s, int64_t now, share_extent *out, surveil_country_fn fn, void *ud, core_error *err) {
    memset(out, 0, sizeof *out);
    out->through = share_sealed_through(s, now);
    core_status rc = surveil_extent(s->opt.st, out->through, &out->first, &out->last, err);
    if (rc == CORE_ERR_NOT_FOUND) {
        out->first = out->last = 0;
        memset(err, 0, sizeof *err);
        return CORE_OK;
    }
    out->any = rc == CORE_OK;
    if (!rc && fn) rc = surveil_countries(s->opt.st, out->through, fn, ud, err);
    return rc;
}

/* ---- organisations ---- */

/* A fixed 32-byte identity derived from the node key, so that releases to
 * the dashboard are recorded on the ledger like any other. */
void share_analysts_org(const share *s, share_org *out) {
    memset(out, 0, sizeof *out);
    cs_crypto_hash(out->key, "caresync-analysts-org", ledger_node_key(s->opt.led), LEDGER_KEY);
    snprintf(out->name, sizeof out->name, "CareSync analysts");
}

typedef struct {
    const uint8_t *want;
    share_org *out;
    bool hit;
} org_find;

static void find_org(void *ud, const uint8_t pk[LEDGER_KEY], const char *name, uint64_t height) {
    (void)height;
    org_find *f = ud;
    if (!f->hit && memcmp(pk, f->want, LEDGER_KEY) == 0) {
        memcpy(f->out->key, pk, LEDGER_KEY);
        snprintf(f->out->name, sizeof f->out->name, "%s", name);
        f->hit = true;
    }
}

core_status share_org_lookup(share *s, const uint8_t key[LEDGER_KEY], share_org *out, core_error *err) {
    org_find f = {.want = key, .out = out};
    core_status rc = ledger_list_orgs(s->opt.led, find_org, &f, err);
    if (rc) return rc;
    if (!f.hit)
        return core_fail(err, CORE_ERR_NOT_FOUND, "org", "no such organisation (register it on the ledger first)");
    return CORE_OK;
}

/* ---- detection ---- */

core_status share_series_detect(share *s, const char *region, const char *condition, const surveil_params *p, int from,
                                int to, surveil_point *out, char note[SHARE_NOTE_MAX], core_error *err) {
    return share_series_detect_source(s, region, condition, -1, p, from, to, out, note, err);
}

core_status share_series_detect_source(share *s, const char *region, const char *condition, int source,
                                       const surveil_params *p, int from, int to, surveil_point *out,
                                       char note[SHARE_NOTE_MAX], core_error *err) {
    note[0] = 0;
    if (to < from) return core_fail(err, CORE_ERR_INVALID, "from", "the period ends before it starts");
    int first = from, last;
    core_status rc = surveil_extent(s->opt.st, to, &first, &last, err);
    if (rc == CORE_ERR_NOT_FOUND || (rc == CORE_OK && first > to))
        first = from;
    else if (rc)
        return rc;
    if (first > from) first = from;
    size_t n = (size_t)(to - first + 1);
    double *x = malloc(n * sizeof *x);
    surveil_point *pts = malloc(n * sizeof *pts);
    if (!x || !pts) {
        free(x);
        free(pts);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    rc = surveil_series_source(s->opt.st, region, condition, source, first, to, x, NULL, err);
    size_t start = n;
    if (!rc) {
        core_error e = {0};
        if (surveil_detect(p, x, n, &start, pts, &e)) {
            /* e.g. not enough history yet: the chart shows the counts alone */
            snprintf(note, SHARE_NOTE_MAX, "%s", e.message);
            start = n;
        }
        for (int w = from; w <= to; w++) {
            size_t t = (size_t)(w - first);
            out[w - from] = t >= start ? pts[t - start] : (surveil_point){NAN, -1, NAN, NAN};
        }
    }
    free(x);
    free(pts);
    return rc;
}

core_status share_series(share *s, const share_org *org, const surveil_query *q, const char *region,
                         const char *condition, const surveil_params *p, json_t **out, core_error *err) {
    return share_series_source(s, org, q, region, condition, -1, p, out, err);
}

core_status share_series_source(share *s, const share_org *org, const surveil_query *q, const char *region,
                                const char *condition, int source, const surveil_params *p, json_t **out,
                                core_error *err) {
    *out = NULL;
    char *body = NULL;
    if (source >= SURVEIL_SOURCES) return core_fail(err, CORE_ERR_INVALID, "source", "unknown source");
    /* One source's series is read from the release by source (one release
     * for all of them, suppressed together with the totals). */
    surveil_query bq = *q;
    bq.by_source = source >= 0;
    core_status rc = share_release(s, org, &bq, &body, err);
    if (rc) return rc;
    json_t *full = core_json_loads(body, 0, NULL, NULL); /* share_release's own text: NULL is out of memory */
    json_t *rel = full && source >= 0 ? surveil_release_source_view(full, surveil_source_name((surveil_source)source))
                                      : json_incref(full);
    json_decref(full);
    json_t *weeks = json_array(), *observed = json_array(), *ub = json_array(), *alarm = json_array();
    free(body);
    size_t n = (size_t)(q->week_to - q->week_from + 1);
    surveil_point *pts = malloc(n * sizeof *pts);
    char note[SHARE_NOTE_MAX];
    if (!rel || !weeks || !observed || !ub || !alarm || !pts)
        rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    if (!rc) rc = surveil_release_observed(rel, region, condition, weeks, observed, err);
    if (!rc) rc = share_series_detect_source(s, region, condition, source, p, q->week_from, q->week_to, pts, note, err);
    for (size_t w = 0; !rc && w < n; w++) {
        json_array_append_new(ub, isnan(pts[w].upperbound) ? json_null() : json_real(pts[w].upperbound));
        json_array_append_new(alarm, pts[w].alarm < 0 ? json_null() : json_boolean(pts[w].alarm == 1));
    }
    if (!rc) {
        *out =
            json_pack("{s:s, s:s, s:s, s:O, s:O, s:O, s:O, s:O, s:i, s:o}", "region", region, "condition",
                      condition ? condition : "all", "method", surveil_method_name(p->method), "weeks", weeks,
                      "observed", observed, "upperbound", ub, "alarm", alarm, "synthetic",
                      json_object_get(rel, "synthetic"), "k", q->k, "note", note[0] ? json_string(note) : json_null());
        if (*out &&
            json_object_set_new(*out, "source",
                                json_string(source >= 0 ? surveil_source_name((surveil_source)source) : "all"))) {
            json_decref(*out);
            *out = NULL;
        }
        if (!*out) rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    free(pts);
    json_decref(rel);
    json_decref(weeks);
    json_decref(observed);
    json_decref(ub);
    json_decref(alarm);
    return rc;
}

/* ---- alerts ---- */

static core_status rescan(share *s, int64_t now, core_error *err) {
    int64_t v;
    core_status rc = surveil_data_version(s->opt.st, &v, err);
    if (rc) return rc;
    pthread_mutex_lock(&s->scan_lock);
    int week = share_sealed_through(s, now);
    if (v != s->scanned_version || week != s->scanned_week) {
        int first, last;
        core_status e = surveil_extent(s->opt.st, week, &first, &last, err);
        surveil_params p;
        surveil_alert_params(e == CORE_OK ? week - first + 1 : 0, &p);
        int added;
        rc = e && e != CORE_ERR_NOT_FOUND ? e : surveil_scan(s->opt.st, &p, week, 8, s->opt.k, &added, err);
        if (!rc) {
            s->scanned_version = v;
            s->scanned_week = week;
            s->scans++;
        }
    }
    pthread_mutex_unlock(&s->scan_lock);
    return rc;
}

core_status share_alerts(share *s, int64_t now, bool open_only, surveil_alert_fn fn, void *ud, core_error *err) {
    core_status rc = rescan(s, now, err);
    return rc ? rc : surveil_alerts(s->opt.st, open_only, fn, ud, err);
}

core_status share_alert_ack(share *s, int64_t id, const char *by, core_error *err) {
    return surveil_alert_ack(s->opt.st, id, by, err);
}
