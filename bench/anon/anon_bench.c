/* anon bench (issue 14): delivery of a request with 100,000 synthetic
 * participants — generalisation, the k-anonymity step at k = 11, CSV, JSON
 * and the dataset hash — and the share of rows generalised or held back.
 *
 * The population (seeded, the same every run): New Zealand's 17 regions
 * weighted by their 2023 census population (Auckland a third, the Chatham
 * Islands 0.01 %); ages from a flattened pyramid of adults 18-94; sex 49 %
 * female, 49 % male, 1 % other, 1 % unspecified; 1-4 rows each (mean 1.5:
 * one condition, sometimes symptoms or a screening result), dated uniformly
 * over 26 weeks. Usage: anon_bench [participants] [k] [iso-codes dir]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../population.h"
#include "anon/anon.h"
#include "crypto/crypto.h"

int main(int argc, char **argv) {
    size_t participants = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    int k = argc > 2 ? atoi(argv[2]) : 11;
    const char *iso = argc > 3 ? argv[3] : "/usr/share/iso-codes/json";
    core_error err = {0};
    regions *r = NULL;
    if (cs_crypto_init(&err) || regions_load(iso, &r, &err)) {
        fprintf(stderr, "anon_bench: %s\n", err.message);
        return 1;
    }
    size_t cap = participants * 4, n = 0;
    anon_row *rows = malloc(cap * sizeof *rows);
    uint64_t *who = malloc(cap * sizeof *who);
    if (!rows || !who) return 1;
    double t0 = core_monotonic();
    for (size_t p = 0; p < participants; p++) {
        static const char *const sexes[] = {"female", "male", "intersex", "unspecified"};
        static const double sex_w[] = {49, 49, 1, 1};
        int band = pick(age_w, 16);
        int age = band == 0 ? 18 + (int)(next() % 2) : 15 + 5 * band + (int)(next() % 5);
        anon_person person = {2026 - age, sexes[pick(sex_w, 4)], region_codes[pick(region_pop, 17)]};
        anon_item items[4];
        int m = 1;
        while (m < 4 && unif() < 0.33) m++;
        for (int i = 0; i < m; i++) {
            int day = (int)(next() % (26 * 7)); /* 2026-01-05 (W02) + 0..181 days */
            int month = 1, d = 5 + day;
            static const int mdays[] = {31, 28, 31, 30, 31, 30, 31};
            while (d > mdays[month - 1]) d -= mdays[month - 1], month++;
            anon_category cat = i == 0 ? ANON_CONDITION : (next() % 2 ? ANON_SYMPTOM : ANON_SCREENING);
            items[i] = (anon_item){cat, codes[pick(code_w, 12)], 2026, month, d, NULL};
        }
        if (anon_rows_from_person(r, &person, items, (size_t)m, rows + n, &err)) {
            fprintf(stderr, "anon_bench: %s\n", err.message);
            return 1;
        }
        for (int i = 0; i < m; i++) who[n + (size_t)i] = p;
        n += (size_t)m;
    }
    double t1 = core_monotonic(), c1 = cpu();
    anon_delivery *d = NULL;
    char *csv = NULL, *text = NULL;
    size_t csv_len = 0;
    json_t *doc = NULL;
    if (anon_deliver(rows, who, n, k, &d, &err) || anon_delivery_csv(d, &csv, &csv_len, &err)) {
        fprintf(stderr, "anon_bench: %s\n", err.message);
        return 1;
    }
    double t15 = core_monotonic(), c15 = cpu();
    if (anon_delivery_json(d, &doc, &err)) {
        fprintf(stderr, "anon_bench: %s\n", err.message);
        return 1;
    }
    text = core_json_dumps(doc, JSON_COMPACT);
    double t3 = core_monotonic(), c3 = cpu();
    const anon_stats *s = anon_delivery_stats(d);
    static const char *const steps[] = {"region -> country", "week -> month", "age -> 10-year band",
                                        "age -> 20-year band", "sex -> unspecified"};
    printf("anon: %zu participants, %zu rows, k = %d\n", participants, n, k);
    printf("  rows from records (generalisation): %8.1f ms\n", (t1 - t0) * 1e3);
    printf("  delivery (k-anonymity, CSV, hash):  %8.1f ms wall, %8.1f ms CPU (CSV %zu bytes)\n", (t15 - t1) * 1e3,
           (c15 - c1) * 1e3, csv_len);
    printf("  JSON (document, then text):         %8.1f ms wall, %8.1f ms CPU (%zu bytes)\n", (t3 - t15) * 1e3,
           (c3 - c15) * 1e3, text ? strlen(text) : 0);
    size_t touched = 0;
    for (int i = 0; i < ANON_LEVELS - 1; i++) {
        printf("  step %d %-22s %7zu rows (%5.2f %%)\n", i + 1, steps[i], s->generalised[i],
               100.0 * (double)s->generalised[i] / (double)n);
    }
    size_t at_level[ANON_LEVELS] = {0};
    for (size_t i = 0; i < anon_delivery_size(d); i++) at_level[anon_delivery_row(d, i)->level]++;
    touched = n - at_level[0];
    printf("  delivered %zu rows: %5.2f %% as shared, %5.2f %% generalised; %zu held back (%5.2f %%)\n", s->delivered,
           100.0 * (double)at_level[0] / (double)n, 100.0 * (double)(touched - s->held_back) / (double)n, s->held_back,
           100.0 * (double)s->held_back / (double)n);
    printf("  delivered rows by final level 0..5:");
    for (int i = 0; i < ANON_LEVELS; i++) printf(" %zu", at_level[i]);
    printf("\n");
    free(text);
    free(csv);
    json_decref(doc);
    anon_delivery_free(d);
    free(rows);
    free(who);
    regions_free(r);
    return 0;
}
