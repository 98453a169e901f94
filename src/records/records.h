/* records — a person's private health record: a profile and entries
 * (conditions, symptoms, medications, allergies, notes).
 *
 * Every row is sealed with XChaCha20-Poly1305 under the account's data key
 * (from the caller's accounts_session), bound to the owner and row id. Only
 * ownership and timestamps are stored in the clear. Only the owner, and only
 * a person account, may read or write: staff roles get CORE_ERR_FORBIDDEN and
 * other people's rows are CORE_ERR_NOT_FOUND.
 *
 * JSON values passed in are borrowed; values returned through json_t ** are
 * new references owned by the caller (json_decref). */
#ifndef CARESYNC_RECORDS_H
#define CARESYNC_RECORDS_H

#include <jansson.h>

#include "accounts/accounts.h"
#include "regions/regions.h"
#include "store/store.h"

#define RECORDS_ID_TEXT 33 /* 16 random bytes as hex + NUL */

/* Pure validators (no storage): normalise an entry or a profile from
 * untrusted JSON into a new object holding exactly the known fields, or fail
 * with CORE_ERR_INVALID naming the field. today is "YYYY-MM-DD" (UTC) and
 * bounds dates; regions may be NULL to skip the region check. */
core_status records_validate_entry(const json_t *in, const char *today, json_t **out, core_error *err);
core_status records_validate_profile(const json_t *in, const regions *regs, int this_year, json_t **out,
                                     core_error *err);
/* Today's UTC date as YYYY-MM-DD, and the current UTC year. */
void records_today(char out[11], int *year);

core_status records_profile_get(store *st, const accounts_session *sess, json_t **out, core_error *err);
core_status records_profile_put(store *st, const regions *regs, const accounts_session *sess, const json_t *in,
                                json_t **out, core_error *err);

/* Entries: out receives {id, kind, title, details, onset, ended, created_at, updated_at}. */
core_status records_list(store *st, const accounts_session *sess, json_t **out_array, core_error *err);
/* The same list as JSON text, {"records":[…]}, spliced from the sealed JSON
 * without parsing it again: the hot path of GET /api/records. *out is
 * malloc'd and owned by the caller (wipe it before free).
 *
 * The rendered text is also kept in the store's memo for the session, sealed
 * under sess->view_key (so only a request bearing the session's cookie can
 * open it), and served from there until the person's records, profile or
 * sessions change (every write here and in accounts calls
 * store_user_changed) or STORE_MEMO_TTL passes. A session without a view key
 * (all zero) is never memoised. */
core_status records_list_text(store *st, const accounts_session *sess, char **out, size_t *len, core_error *err);
core_status records_get(store *st, const accounts_session *sess, const char *id, json_t **out, core_error *err);
core_status records_create(store *st, const accounts_session *sess, const json_t *in, json_t **out, core_error *err);
core_status records_update(store *st, const accounts_session *sess, const char *id, const json_t *in, json_t **out,
                           core_error *err);
core_status records_delete(store *st, const accounts_session *sess, const char *id, core_error *err);

/* Photos. An entry may carry one photo (a JPEG of at most RECORDS_PHOTO_MAX
 * bytes: the screening's 224 px copy is ~20 kB), written with the entry in
 * one transaction and sealed like it under the data key, bound to owner and
 * id. The entry then holds "photo": {"type","bytes","sha256"}, set by this
 * module (never taken from the caller) and kept across updates, so the
 * entry's fingerprint commits to the image too; and "result": {"title",
 * "details"} as they were at creation (a saved screening's: the model's
 * words), kept the same way while title and details may be edited. Deleting the entry deletes
 * the photo. jpeg is borrowed. */
#define RECORDS_PHOTO_MAX (2u << 20)
core_status records_create_with_photo(store *st, const accounts_session *sess, const json_t *in, const uint8_t *jpeg,
                                      size_t len, json_t **out, core_error *err);
/* The photo of entry id: *jpeg is malloc'd and owned by the caller (wipe it
 * before free). NOT_FOUND when the entry has no photo or is not the
 * caller's. */
core_status records_photo_get(store *st, const accounts_session *sess, const char *id, uint8_t **jpeg, size_t *len,
                              core_error *err);

/* Fingerprint of one entry as it is now (fingerprint.c): its canonical JSON
 * text, a salt only the owner can recompute, and commitment =
 * SHA-256(salt ‖ text), which is what a ledger anchor records. The text is
 * health data: free with records_fingerprint_free, which wipes it. */
typedef struct {
    char *text;
    size_t len;
    uint8_t salt[32];
    uint8_t commitment[32];
} records_fingerprint;
core_status records_fingerprint_get(store *st, const accounts_session *sess, const char *id, records_fingerprint *out,
                                    core_error *err);
void records_fingerprint_free(records_fingerprint *fp);

/* Everything the person keeps, as one JSON document (format caresync-export-1);
 * photos ride along as photo.jpeg_base64url (URL-safe, unpadded). */
core_status records_export(store *st, const accounts_session *sess, json_t **out, core_error *err);

#endif
