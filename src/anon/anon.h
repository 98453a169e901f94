/* anon — de-identification of what people share with an organisation
 * (issue 14, "data for tokens"). Pure: no HTTP, no SQLite, no ledger. The
 * market module hands it rows and delivers what it returns.
 *
 * Two stages:
 *
 * 1. anon_rows_from_person() turns one person's shared data into rows that
 *    already hold nothing but: a category and a code (never free text), the
 *    ISO week, a 5-year age band, the first-level ISO 3166-2 subdivision, the
 *    sex as female/male/other/unspecified, and a random 16-byte withdrawal
 *    tag. This is what the person previews, and what is kept for delivery.
 *
 * 2. anon_deliver() makes a set of rows k-anonymous over the
 *    quasi-identifiers QI = (age band, sex, region, period): every released
 *    QI combination is shared by rows of at least k different contributors
 *    (not rows: one person's two conditions in one week are one person).
 *
 *    The algorithm (a ladder of levels, whole classes moved up together):
 *      level 0  subdivision, ISO week,  5-year band, sex
 *      level 1  country,     ISO week,  5-year band, sex   (region -> country)
 *      level 2  country,     month,     5-year band, sex   (week -> month)
 *      level 3  country,     month,    10-year band, sex
 *      level 4  country,     month,    20-year band, sex
 *      level 5  country,     month,    20-year band, "unspecified"
 *    Every row starts at level 0. Step s (s = 0..5) groups all rows by their
 *    released QI; each equivalence class with fewer than k contributors
 *    consists only of level-s rows (see below) and is moved, whole, to level
 *    s + 1; after level 5 such classes are held back.
 *
 *    Why it is sound: a class is moved as a whole or not at all, so a step
 *    never splits a class; the classes a step leaves in place keep every row
 *    they had, and rows moved up land in classes of coarser values, which
 *    only ever gain rows (a coarse value never equals a finer one, except
 *    where two levels read the same — "90+" at levels 2 and 3, "unknown" age
 *    at 2 to 5, "unspecified" sex at 4 and 5 — and there rows only join).
 *    So a class found to have >= k contributors keeps >= k for the rest of the
 *    run, which is also why every class still short of k at step s holds
 *    only level-s rows (asserted, i.e. re-checked, at each step). Held-back
 *    rows are whole level-5 classes: removing them touches no other class.
 *    Deterministic and independent of the input order: a step depends only on
 *    the multiset of (QI, contributor) pairs, and the output is sorted.
 *    What is not lost: a dataset already k-anonymous at level 0 is delivered
 *    unchanged; a row is held back only if fewer than k contributors share
 *    its level-5 combination among the rows that reached level 5.
 *
 * Not protected against (docs/PRIVACY.md says more): homogeneity (all k rows
 * of a class with the same code reveal it), background knowledge, linkage of
 * one person's several rows through their shared QI values, and linkage
 * across deliveries (the same tag can be generalised differently in two
 * deliveries; a withdrawn row's absence is visible).
 *
 * Errors: CORE_ERR_INVALID (field names the input), CORE_ERR_NOMEM. All
 * strings in structs are NUL-terminated and copied; nothing is borrowed
 * from the caller after a call returns. */
#ifndef CARESYNC_ANON_H
#define CARESYNC_ANON_H

#include <jansson.h>

#include "core/core.h"
#include "regions/regions.h"

#define ANON_TAG_BYTES 16
#define ANON_CODE_MAX 32  /* a code: 1..31 of [A-Za-z0-9._-], starting alphanumeric */
#define ANON_REGION_MAX 8 /* an ISO 3166-2 code is at most 6 characters ("GB-SCT") */
#define ANON_AGE_UNKNOWN -1
#define ANON_AGE_TOP 90 /* the 5- and 10-year bands end with "90+"; the 20-year ones with "80+" */
#define ANON_LEVELS 6   /* levels 0..5 above */
#define ANON_SHA256_BYTES 32

typedef enum { ANON_SEX_UNSPECIFIED, ANON_SEX_FEMALE, ANON_SEX_MALE, ANON_SEX_OTHER } anon_sex;
/* Demographics rows carry no code: the row itself (age band, sex, region,
 * week of sharing) is the datum. */
typedef enum { ANON_CONDITION, ANON_SYMPTOM, ANON_SCREENING, ANON_DEMOGRAPHICS } anon_category;

/* A row at level 0, as stored and previewed. */
typedef struct {
    int age_lo;                   /* multiple of 5 in 0..ANON_AGE_TOP (90 = "90+"), or ANON_AGE_UNKNOWN */
    anon_sex sex;                 /* */
    char region[ANON_REGION_MAX]; /* first-level ISO 3166-2 subdivision, or "" when unknown */
    int week;                     /* week index (surveil_week_*: whole weeks since Monday 1970-01-05) */
    anon_category category;       /* */
    char code[ANON_CODE_MAX];     /* "" for ANON_DEMOGRAPHICS */
    uint8_t tag[ANON_TAG_BYTES];  /* random; linked to the person only inside their sealed record */
} anon_row;

/* The record's strings: sex as records keeps it (female, male, intersex,
 * unspecified or NULL; intersex becomes other), birth_year 0 when unknown,
 * region the home region (NULL, or a code that is no longer a subdivision,
 * gives an unknown region: a free-text place can never leave). */
typedef struct {
    int birth_year;
    const char *sex;
    const char *region;
} anon_person;

/* One shared datum: category and code, and the date it refers to (onset,
 * diagnosis, screening, or for demographics the day of sharing). tag: the
 * row's existing withdrawal tag (ANON_TAG_BYTES), or NULL for a fresh random
 * one (the caller then keeps out[i].tag in the person's sealed record). */
typedef struct {
    anon_category category;
    const char *code;
    int year, month, day;
    const uint8_t *tag;
} anon_item;

/* Age: the age the person reaches in the ISO year of the row's week (only
 * the birth year is known, so a row before the birthday is one year older
 * than the person was: the same rule for every row, never finer than a
 * year). Ages outside 0..130 are unknown. out has room for n rows; on error
 * nothing in out is meaningful. cs_crypto_init() must have run for fresh
 * tags. */
core_status anon_rows_from_person(const regions *r, const anon_person *p, const anon_item *items, size_t n,
                                  anon_row *out, core_error *err);
/* Shape check of a row (from storage, or built by hand): CORE_ERR_INVALID. */
core_status anon_row_check(const anon_row *row, core_error *err);
/* Enum <-> the words used in every output. */
const char *anon_sex_name(anon_sex s);
const char *anon_category_name(anon_category c);
/* A record's sex string (see anon_person); false if it is none of them. */
bool anon_sex_parse(const char *text, anon_sex *out);
bool anon_category_parse(const char *text, anon_category *out);

/* Stored form of rows: a JSON array of
 * {"age_band","sex","region","week","category","code","tag"} objects, the
 * values as in a level-0 delivery, compact, keys in that order. Parsing is
 * for untrusted bytes (fuzzed): unknown keys, missing keys, bad values,
 * duplicate keys and any text other than the canonical one anon_rows_dump
 * writes (other spacing, key order, escapes) are refused.
 * *out is malloc'd (caller frees), NULL when n is 0. Out of memory is
 * CORE_ERR_NOMEM, except where jansson's parser reports its own allocation
 * failure as a syntax error or drops a byte (rows.c): then it is refused as
 * CORE_ERR_INVALID, never accepted as other rows. So a caller must not take
 * a refusal of rows it wrote itself as proof of corruption without trying
 * again. */
core_status anon_rows_dump(const anon_row *rows, size_t n, char **out, core_error *err);
core_status anon_rows_parse(const char *text, size_t len, anon_row **out, size_t *n, core_error *err);

/* ---- delivery ---- */

/* What the organisation is told. generalised[s] counts the rows moved from
 * level s to s + 1 by step s (a row moved twice counts in both; a move
 * counts even where the value reads the same, as "90+" at 10 years). */
typedef struct {
    size_t rows_in, delivered, held_back;
    size_t generalised[ANON_LEVELS - 1];
    size_t contributors_in;
    int k;
} anon_stats;

/* A delivered row, as released (strings as in the CSV). */
typedef struct {
    char tag[2 * ANON_TAG_BYTES + 1]; /* hex */
    char category[16];
    char code[ANON_CODE_MAX];
    char age_band[8]; /* "30-34", "30-39", "20-39", "90+", "80+", "unknown" */
    char sex[12];
    char region[ANON_REGION_MAX]; /* "NZ-AUK", "NZ" or "unknown" */
    char period[9];               /* "2026-W09" or "2026-03" */
    int level;                    /* 0..5 */
} anon_released;

typedef struct anon_delivery anon_delivery;

/* Make rows k-anonymous (k >= 1; the server's small-cell k). contributor[i]
 * is the same for the rows of one person in this request and differs between
 * persons (say a random per-acceptance id): it is never output. Rows are
 * checked with anon_row_check. *out is owned by the caller
 * (anon_delivery_free). */
core_status anon_deliver(const anon_row *rows, const uint64_t *contributor, size_t n, int k, anon_delivery **out,
                         core_error *err);
void anon_delivery_free(anon_delivery *d);
const anon_stats *anon_delivery_stats(const anon_delivery *d);
size_t anon_delivery_size(const anon_delivery *d);
/* Delivered row i (0 <= i < size), in output order. Borrowed from d. */
const anon_released *anon_delivery_row(const anon_delivery *d, size_t i);
/* RFC 4180 CSV (CRLF line ends, a header row, fields quoted only if they
 * need it — none can, by construction). *out malloc'd, caller frees. The
 * dataset's SHA-256 is the SHA-256 of exactly these bytes. */
core_status anon_delivery_csv(const anon_delivery *d, char **out, size_t *len, core_error *err);
void anon_delivery_sha256(const anon_delivery *d, uint8_t out[ANON_SHA256_BYTES]);
/* {"format","k","sha256","summary","dictionary","rows"}: the same rows as the
 * CSV, the stats, and the data dictionary. New reference, caller decrefs;
 * text via core_json_dumps. */
core_status anon_delivery_json(const anon_delivery *d, json_t **out, core_error *err);
/* The data dictionary alone: [{name, meaning, values, generalisation}] per
 * column, in CSV column order. New reference. */
core_status anon_dictionary(json_t **out, core_error *err);

#endif
