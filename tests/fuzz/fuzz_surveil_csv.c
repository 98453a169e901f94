/* libFuzzer target: `caresync surveil detect`'s input path — a CSV of
 * weekly counts parsed by surveil_table_parse_csv, then every series run
 * through each detector (short series must be refused, never crash). */
#include <stdint.h>
#include <stdlib.h>

#include "surveil/surveil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    surveil_table *t = NULL;
    core_error err = {0};
    if (surveil_table_parse_csv((const char *)data, size, &t, &err) != CORE_OK) {
        if (t || !err.message[0]) abort(); /* a refusal names its reason and leaves nothing behind */
        return 0;
    }
    size_t n = surveil_table_weeks(t);
    surveil_point *out = malloc((n ? n : 1) * sizeof *out);
    for (size_t j = 0; j < surveil_table_series(t) && j < 4 && n <= 600; j++) {
        const double *x = surveil_table_counts(t, j);
        for (int m = SURVEIL_C1; m <= SURVEIL_FARRINGTON; m++) {
            surveil_params p;
            surveil_params_init(&p, (surveil_method)m);
            if (m == SURVEIL_FARRINGTON) { /* keep the history needed within small inputs */
                p.freq = 8;
                p.b = 2;
                p.w = 1;
            }
            size_t first;
            surveil_detect(&p, x, n, &first, out, &err);
        }
    }
    free(out);
    surveil_table_free(t);
    return 0;
}
