/* api — GET /api/regions[?country=XX]: the choices for a home region. */
#include "api/internal.h"

void api_regions(http_request *rq, void *ctx) {
    api_context *c = ctx;
    const char *country = http_query(rq, "country");
    if (!country) {
        http_respond_json(rq, 200, json_pack("{s:O}", "countries", regions_countries(c->regs)));
        return;
    }
    const json_t *subs = regions_subdivisions(c->regs, country);
    if (!subs) {
        http_respond_error(rq, 404, "not_found", "country", "no subdivisions known for country %.8s", country);
        return;
    }
    http_respond_json(rq, 200, json_pack("{s:s,s:O}", "country", country, "subdivisions", subs));
}
