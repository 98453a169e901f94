/* Data sets: the index.csv of each folder under ../shared/data, turned into
 * items with a fine class, a condition and a train/test flag. */
#include "screening/screening.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The fifth, clinician_labelled, has no index.csv under the data sets: its
 * items come from a data directory's examples (screening_examples_load). */
static const char *const sets[] = {"skin-infections-8", "isic-melanoma-10k", "dermnetnz", "pad-ufes-20-subset",
                                   SCREENING_EXAMPLES_SET};

int screening_set_count(void) { return (int)(sizeof sets / sizeof sets[0]); }
const char *screening_set_name(int i) { return i >= 0 && i < screening_set_count() ? sets[i] : NULL; }

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static int fine_index(screening_dataset *ds, const char *set, const char *cls, int si) {
    char name[256];
    snprintf(name, sizeof name, "%s/%s", set, cls);
    for (int i = 0; i < ds->fine_count; i++)
        if (!strcmp(ds->fine_names[i], name)) return i;
    char **n = realloc(ds->fine_names, (size_t)(ds->fine_count + 1) * sizeof *n);
    if (!n) return -1;
    ds->fine_names = n;
    int *c = realloc(ds->fine_condition, (size_t)(ds->fine_count + 1) * sizeof *c);
    if (!c) return -1;
    ds->fine_condition = c;
    n[ds->fine_count] = strdup(name);
    if (!n[ds->fine_count]) return -1;
    c[ds->fine_count] = screening_condition_of(sets[si], cls);
    return ds->fine_count++;
}

/* Split a CSV line in place (no quoting in these indexes). */
static int fields(char *line, char **f, int max) {
    int n = 0;
    line[strcspn(line, "\r\n")] = 0;
    for (char *p = line; n < max;) {
        f[n++] = p;
        char *c = strchr(p, ',');
        if (!c) break;
        *c = 0;
        p = c + 1;
    }
    return n;
}

core_status screening_dataset_load(const char *data_dir, screening_dataset *ds, core_error *err) {
    memset(ds, 0, sizeof *ds);
    size_t cap = 0;
    int found = 0;
    for (int si = 0; si < screening_set_count(); si++) {
        char path[4096];
        if (!strcmp(sets[si], SCREENING_EXAMPLES_SET)) continue;
        snprintf(path, sizeof path, "%s/%s/index.csv", data_dir, sets[si]);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        found++;
        char line[2048], *col[24];
        if (!fgets(line, sizeof line, f)) {
            fclose(f);
            continue;
        }
        int nh = fields(line, col, 24), ci = -1, pi = -1, si_split = -1, mi = -1, fz = -1;
        for (int k = 0; k < nh; k++) {
            if (!strcmp(col[k], "path")) pi = k;
            /* PAD-UFES names its label column "diagnostic". */
            if (!strcmp(col[k], "class") || !strcmp(col[k], "diagnostic")) ci = k;
            if (!strcmp(col[k], "fitzpatrick")) fz = k;
            if (!strcmp(col[k], "split")) si_split = k;
            if (!strcmp(col[k], "source_md5")) mi = k;
        }
        if (pi < 0 || ci < 0 || (si_split < 0 && mi < 0)) {
            fclose(f);
            screening_dataset_free(ds);
            return core_fail(err, CORE_ERR_INVALID, "data", "%s lacks path/class/split columns", path);
        }
        while (fgets(line, sizeof line, f)) {
            int n = fields(line, col, 24);
            if (n < nh) continue;
            if (ds->count == cap) {
                cap = cap ? cap * 2 : 4096;
                screening_item *it = realloc(ds->items, cap * sizeof *it);
                if (!it) goto nomem;
                ds->items = it;
            }
            screening_item *it = &ds->items[ds->count];
            int fi = fine_index(ds, sets[si], col[ci], si);
            char full[4096];
            snprintf(full, sizeof full, "%s/%s/%s", data_dir, sets[si], col[pi]);
            if (fi < 0 || !(it->path = strdup(full))) goto nomem;
            it->set = si;
            it->fine = fi;
            it->condition = ds->fine_condition[fi];
            it->malignant = screening_is_malignant(col[ci]);
            /* "3" or "3.0"; blank where not recorded */
            it->fitzpatrick =
                fz >= 0 && col[fz][0] >= '1' && col[fz][0] <= '6' && (!col[fz][1] || !strcmp(col[fz] + 1, ".0"))
                    ? col[fz][0] - '0'
                    : 0;
            if (si_split >= 0) {
                it->test = !strcmp(col[si_split], "test");
            } else {
                int hi = hexval(col[mi][0]), lo = hexval(col[mi][1]);
                it->test = hi >= 0 && lo >= 0 && hi * 16 + lo < 0x33;
            }
            ds->count++;
            continue;
        nomem:
            fclose(f);
            screening_dataset_free(ds);
            return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory reading %s", path);
        }
        fclose(f);
    }
    if (!found || !ds->count) {
        screening_dataset_free(ds);
        return core_fail(err, CORE_ERR_NOT_FOUND, "data", "no data set index found under %s", data_dir);
    }
    return CORE_OK;
}

void screening_dataset_free(screening_dataset *ds) {
    for (size_t i = 0; i < ds->count; i++) free(ds->items[i].path);
    for (int i = 0; i < ds->fine_count; i++) free(ds->fine_names[i]);
    free(ds->items);
    free(ds->fine_names);
    free(ds->fine_condition);
    memset(ds, 0, sizeof *ds);
}

static int path_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* <id>.<condition>.<week>.jpg: the condition's index in the table, or -1. */
static int example_condition(const char *name, char code[32]) {
    const char *a = strchr(name, '.'), *b = a ? strchr(a + 1, '.') : NULL;
    size_t l = strlen(name);
    if (name[0] == '.' || !a || !b || b - a - 1 <= 0 || b - a - 1 >= 32 || l < 4 || strcmp(name + l - 4, ".jpg"))
        return -1;
    memcpy(code, a + 1, (size_t)(b - a - 1));
    code[b - a - 1] = 0;
    int c = screening_condition_index(code);
    return c >= 0 && strcmp(code, "other") ? c : -1;
}

core_status screening_examples_load(const char *dir, screening_dataset *ds, core_error *err) {
    int si = -1;
    for (int i = 0; i < screening_set_count(); i++)
        if (!strcmp(sets[i], SCREENING_EXAMPLES_SET)) si = i;
    DIR *top = opendir(dir);
    if (!top) {
        if (errno == ENOENT) return CORE_OK; /* none kept yet */
        return core_fail(err, CORE_ERR_IO, "examples", "cannot read %s: %s", dir, strerror(errno));
    }
    char **paths = NULL;
    size_t n = 0, cap = 0;
    core_status rc = CORE_OK;
    struct dirent *h;
    while (!rc && (h = readdir(top))) {
        if (strlen(h->d_name) != 64) continue; /* a handle's directory */
        char sub[4200];
        snprintf(sub, sizeof sub, "%s/%s", dir, h->d_name);
        DIR *d = opendir(sub);
        if (!d) continue; /* deleted meanwhile (a revocation) */
        struct dirent *e;
        char code[32];
        while (!rc && (e = readdir(d))) {
            if (example_condition(e->d_name, code) < 0) continue;
            if (n == cap) {
                char **p = realloc(paths, (cap = cap ? cap * 2 : 64) * sizeof *p);
                if (!p) {
                    rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
                    break;
                }
                paths = p;
            }
            size_t len = strlen(sub) + strlen(e->d_name) + 2;
            paths[n] = malloc(len);
            if (!paths[n]) {
                rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
                break;
            }
            snprintf(paths[n++], len, "%s/%s", sub, e->d_name);
        }
        closedir(d);
    }
    closedir(top);
    /* Sorted: the feature cache keys on the items in order. */
    if (!rc && n) qsort(paths, n, sizeof *paths, path_cmp);
    size_t i = 0;
    for (; !rc && i < n; i++) {
        char code[32];
        const char *name = strrchr(paths[i], '/') + 1;
        example_condition(name, code);
        screening_item *items = realloc(ds->items, (ds->count + 1) * sizeof *items);
        if (!items) {
            rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
            break;
        }
        ds->items = items;
        int fi = fine_index(ds, sets[si], code, si);
        if (fi < 0) {
            rc = core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
            break;
        }
        screening_item *it = &ds->items[ds->count++];
        it->path = paths[i];
        paths[i] = NULL;
        it->set = si;
        it->fine = fi;
        it->condition = ds->fine_condition[fi];
        it->malignant = !strcmp(code, "melanoma") || !strcmp(code, "skin_cancer");
        it->fitzpatrick = 0;
        /* about a fifth held out for testing, by the random id (as by a
         * source MD5 elsewhere) */
        int hi = hexval(name[0]), lo = hexval(name[1]);
        it->test = hi >= 0 && lo >= 0 && hi * 16 + lo < 0x33;
    }
    for (size_t j = 0; j < n; j++) free(paths[j]);
    free(paths);
    return rc;
}
