/* libFuzzer target: anon's stored rows (anon_rows_parse), the bytes the
 * market keeps for delivery and reads back; whatever parses is delivered
 * (k = 1 and 2), every row delivered or held back; dumped, it re-parses equal. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "anon/anon.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    anon_row *rows = NULL;
    size_t n = 0;
    core_error err = {0};
    if (anon_rows_parse((const char *)data, size, &rows, &n, &err) != CORE_OK) {
        if (rows || n || !err.message[0]) abort(); /* a refusal names its reason and leaves nothing behind */
        return 0;
    }
    char *text = NULL;
    if (anon_rows_dump(rows, n, &text, &err) != CORE_OK) abort(); /* what parsed is a valid row */
    anon_row *again = NULL;
    size_t m = 0;
    if (anon_rows_parse(text, strlen(text), &again, &m, &err) != CORE_OK || m != n ||
        (n && memcmp(again, rows, n * sizeof *rows)))
        abort();
    uint64_t *who = calloc(n ? n : 1, sizeof *who);
    if (!who) abort();
    for (size_t i = 0; i < n; i++) who[i] = rows[i].tag[0] % 4; /* a few contributors */
    for (int k = 1; k <= 2; k++) {
        anon_delivery *d = NULL;
        if (anon_deliver(rows, who, n, k, &d, &err) != CORE_OK) abort();
        if (anon_delivery_size(d) + anon_delivery_stats(d)->held_back != n) abort();
        char *csv = NULL;
        size_t len = 0;
        json_t *doc = NULL;
        if (anon_delivery_csv(d, &csv, &len, &err) != CORE_OK || anon_delivery_json(d, &doc, &err) != CORE_OK) abort();
        free(csv);
        json_decref(doc);
        anon_delivery_free(d);
    }
    free(who);
    free(again);
    free(text);
    free(rows);
    return 0;
}
