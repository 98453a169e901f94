/* regions — iso-codes loader. */
#include "regions/regions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct regions {
    json_t *countries;  /* array of {code,name} */
    json_t *by_country; /* object: "NZ" -> array of {code,name,type} */
    json_t *codes;      /* object used as a set: "NZ-AUK" -> true */
    json_t *parents;    /* object: "FR-75C" -> "FR-IDF" (full codes; iso-codes writes some bare) */
};

void regions_free(regions *r) {
    if (!r) return;
    json_decref(r->countries);
    json_decref(r->by_country);
    json_decref(r->codes);
    json_decref(r->parents);
    free(r);
}

static json_t *load_list(const char *dir, const char *file, const char *key, core_error *err) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    json_error_t jerr;
    core_error pe = {0};
    json_t *doc = core_json_load_file(path, 0, &jerr, &pe);
    if (!doc && pe.code == CORE_ERR_NOMEM) {
        core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
        return NULL;
    }
    if (!doc) {
        core_fail(err, CORE_ERR_IO, NULL, "cannot load %s: %s (install Debian's iso-codes)", path, jerr.text);
        return NULL;
    }
    json_t *list = json_incref(json_object_get(doc, key));
    json_decref(doc);
    if (!json_is_array(list)) {
        json_decref(list);
        core_fail(err, CORE_ERR_IO, NULL, "%s has no \"%s\" list", path, key);
        return NULL;
    }
    return list;
}

static int by_name(const void *a, const void *b) {
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    return strcmp(json_string_value(json_object_get(x, "name")), json_string_value(json_object_get(y, "name")));
}

core_status regions_load(const char *dir, regions **out, core_error *err) {
    *out = NULL;
    json_t *c1 = load_list(dir, "iso_3166-1.json", "3166-1", err);
    if (!c1) return err ? err->code : CORE_ERR_IO;
    json_t *c2 = load_list(dir, "iso_3166-2.json", "3166-2", err);
    if (!c2) {
        json_decref(c1);
        return err ? err->code : CORE_ERR_IO;
    }

    regions *r = calloc(1, sizeof *r);
    if (!r) {
        json_decref(c1);
        json_decref(c2);
        return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    }
    r->by_country = json_object();
    r->codes = json_object();
    r->parents = json_object();
    size_t i;
    json_t *e;
    json_array_foreach(c2, i, e) {
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *type = json_string_value(json_object_get(e, "type"));
        if (!code || !name || strlen(code) < 4 || code[2] != '-') continue;
        char cc[3] = {code[0], code[1], 0};
        json_t *arr = json_object_get(r->by_country, cc);
        if (!arr) {
            arr = json_array();
            json_object_set_new(r->by_country, cc, arr);
        }
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s}", "code", code, "name", name, "type", type ? type : ""));
        json_object_set_new(r->codes, code, json_true());
        /* iso-codes gives a parent either whole ("GB-SCT") or without its
         * country ("IDF" for FR-75C): store it whole. */
        const char *parent = json_string_value(json_object_get(e, "parent"));
        if (parent && *parent) {
            char full[16];
            if (strchr(parent, '-'))
                snprintf(full, sizeof full, "%s", parent);
            else
                snprintf(full, sizeof full, "%s-%s", cc, parent);
            json_object_set_new(r->parents, code, json_string(full));
        }
    }
    /* Countries with at least one subdivision, sorted by name for the UI. */
    size_t n = json_array_size(c1), k = 0;
    json_t **tmp = calloc(n ? n : 1, sizeof *tmp);
    json_array_foreach(c1, i, e) {
        const char *code = json_string_value(json_object_get(e, "alpha_2"));
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *numeric = json_string_value(json_object_get(e, "numeric")); /* world-atlas ids */
        if (tmp && code && name && json_object_get(r->by_country, code))
            tmp[k++] = json_pack("{s:s,s:s,s:s}", "code", code, "name", name, "numeric", numeric ? numeric : "");
    }
    if (tmp) qsort(tmp, k, sizeof *tmp, by_name);
    r->countries = json_array();
    for (size_t j = 0; j < k; j++) json_array_append_new(r->countries, tmp[j]);
    free(tmp);
    json_decref(c1);
    json_decref(c2);
    *out = r;
    return CORE_OK;
}

bool regions_is_subdivision(const regions *r, const char *code) {
    return code && json_object_get(r->codes, code) != NULL;
}

size_t regions_subdivision_count(const regions *r) { return json_object_size(r->codes); }

const json_t *regions_countries(const regions *r) { return r->countries; }

const json_t *regions_subdivisions(const regions *r, const char *country) {
    return country ? json_object_get(r->by_country, country) : NULL;
}

const char *regions_first_level(const regions *r, const char *code) {
    if (!regions_is_subdivision(r, code)) return NULL;
    const char *at = code;
    /* iso-codes nests at most two deep today; the bound keeps a cyclic list
     * from looping. */
    for (int depth = 0; depth < 8; depth++) {
        json_t *p = json_object_get(r->parents, at);
        if (!p || !regions_is_subdivision(r, json_string_value(p))) break;
        at = json_string_value(p);
    }
    /* Return the key owned by r (the codes set), not the caller's string. */
    void *iter = json_object_iter_at(r->codes, at);
    return iter ? json_object_iter_key(iter) : NULL;
}
