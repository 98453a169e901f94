/* libFuzzer target: the request-body path every JSON endpoint takes —
 * http_parse_json_object, then the validators that read the parsed object
 * (record entry, profile). Run by `make test` for 30 s, `make fuzz` longer. */
#include <stdint.h>
#include <stdlib.h>

#include "http/http.h"
#include "records/records.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    core_error err = {0};
    json_t *v = http_parse_json_object((const char *)data, size, &err);
    if (!v) return 0;
    json_t *out = NULL;
    if (records_validate_entry(v, "2026-06-15", &out, &err) == CORE_OK) {
        /* a validated entry must serialise: it is what gets sealed */
        char *s = json_dumps(out, JSON_COMPACT);
        if (!s) abort();
        free(s);
    }
    json_decref(out);
    out = NULL;
    records_validate_profile(v, NULL, 2026, &out, &err);
    json_decref(out);
    json_decref(v);
    return 0;
}
