/* regions — ISO 3166 countries and subdivisions, as shipped by Debian's
 * iso-codes package. Loaded once at start, read-only afterwards (safe to share
 * between threads). A home region is always one of these codes, never a
 * free-text place, so it can never carry more precision than a subdivision. */
#ifndef CARESYNC_REGIONS_H
#define CARESYNC_REGIONS_H

#include <jansson.h>

#include "core/core.h"

typedef struct regions regions;

/* dir holds iso_3166-1.json and iso_3166-2.json. */
core_status regions_load(const char *dir, regions **out, core_error *err);
void regions_free(regions *r);

/* True if code is an ISO 3166-2 subdivision code (e.g. "NZ-AUK"). */
bool regions_is_subdivision(const regions *r, const char *code);
size_t regions_subdivision_count(const regions *r);
/* The first-level subdivision holding code: code itself when iso-codes gives
 * it no parent ("NZ-AUK"), else its top ancestor ("FR-75" -> "FR-IDF",
 * "GB-ABD" -> "GB-SCT"). Borrowed from r; NULL when code is not a
 * subdivision. */
const char *regions_first_level(const regions *r, const char *code);
/* Borrowed JSON (owned by r): [{code,name,numeric}] of countries that have
 * subdivisions, sorted by name (numeric: the ISO 3166-1 numeric code); and the subdivisions [{code,name,type}] of one
 * country, or NULL if the country is unknown. */
const json_t *regions_countries(const regions *r);
const json_t *regions_subdivisions(const regions *r, const char *country);

#endif
