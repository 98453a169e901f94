/* store — schema migrations. Each entry moves the schema from version i to
 * i+1 and runs in one transaction together with the PRAGMA user_version bump,
 * so a crash mid-migration leaves the previous version intact. Never edit a
 * released migration: append a new one. */
#include "store/store.h"

#include <stdio.h>

static const char *const migrations[] = {
    /* 1: accounts and sessions. The data key exists on disk only sealed
     * (dk_pw under the password key, dk_rc under the recovery key, dk_sess
     * under a key derived from the session token that only the client holds). */
    "CREATE TABLE users ("
    "  id INTEGER PRIMARY KEY,"
    "  username TEXT NOT NULL UNIQUE,"
    "  role TEXT NOT NULL CHECK (role IN ('person','clinician','analyst','admin')),"
    "  created_at INTEGER NOT NULL,"
    "  pw_salt BLOB NOT NULL, pw_ops INTEGER NOT NULL, pw_mem INTEGER NOT NULL,"
    "  pw_verifier BLOB NOT NULL,"
    "  dk_pw BLOB NOT NULL,"
    "  rc_salt BLOB NOT NULL, dk_rc BLOB NOT NULL);"
    "CREATE TABLE sessions ("
    "  id_hash BLOB PRIMARY KEY,"
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  csrf TEXT NOT NULL,"
    "  dk_sess BLOB NOT NULL,"
    "  created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);"
    "CREATE INDEX sessions_user ON sessions(user_id);",

    /* 2: private health records, sealed per row under the data key. Only
     * ownership and timestamps are in the clear. */
    "CREATE TABLE profiles ("
    "  user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,"
    "  sealed BLOB NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE TABLE records ("
    "  id TEXT PRIMARY KEY,"
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  sealed BLOB NOT NULL,"
    "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE INDEX records_user ON records(user_id, created_at);",

    /* 3: login throttling, persisted so a restart does not reset an attack. */
    "CREATE TABLE login_throttle ("
    "  key TEXT PRIMARY KEY,"
    "  failures INTEGER NOT NULL,"
    "  window_start INTEGER NOT NULL);",

    /* 4: every account's ledger wallet. The public key is what the ledger
     * knows; the 32-byte Ed25519 seed is sealed under the account's data key
     * like the records, so deleting the account shreds it too. */
    "ALTER TABLE users ADD COLUMN wallet_pk BLOB;"
    "ALTER TABLE users ADD COLUMN wallet_seed BLOB;"
    "CREATE UNIQUE INDEX users_wallet ON users(wallet_pk) WHERE wallet_pk IS NOT NULL;",

    /* 5: a photo kept with a record entry (a saved skin screening), sealed
     * under the data key like the entry, in its own table so that listing
     * records never reads image bytes. Deleting the entry deletes it. */
    "CREATE TABLE record_photos ("
    "  record_id TEXT PRIMARY KEY REFERENCES records(id) ON DELETE CASCADE,"
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  sealed BLOB NOT NULL);",

    /* 6: public-health surveillance. Contributions are counted, never
     * listed: one row per (region, ISO week, condition, age band, source)
     * holding how many, with no account, no time finer than the week and no
     * insertion order (WITHOUT ROWID), so the analytics store cannot lead
     * back to a person. surveil_marks holds keyed hashes of what was already
     * contributed (to refuse a second reward for the same datum); nothing
     * joins them to the counts. Releases, the privacy budget each
     * organisation has spent, organisations' API tokens (hashed) and the
     * alerts analysts acknowledge. */
    "CREATE TABLE surveil_counts ("
    "  region TEXT NOT NULL,"
    "  week INTEGER NOT NULL,"
    "  condition TEXT NOT NULL,"
    "  age_band INTEGER NOT NULL,"
    "  source INTEGER NOT NULL,"
    "  synthetic INTEGER NOT NULL,"
    "  n INTEGER NOT NULL CHECK (n >= 0),"
    "  PRIMARY KEY (region, week, condition, age_band, source, synthetic)) WITHOUT ROWID;"
    "CREATE INDEX surveil_counts_week ON surveil_counts(week);"
    "CREATE TABLE surveil_marks (mark BLOB PRIMARY KEY) WITHOUT ROWID;"
    "CREATE TABLE surveil_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);"
    "INSERT INTO surveil_version VALUES (1, 0);"
    "CREATE TABLE surveil_releases ("
    "  id INTEGER PRIMARY KEY,"
    "  org TEXT NOT NULL,"
    "  fingerprint BLOB NOT NULL,"
    "  epsilon_milli INTEGER NOT NULL,"
    "  k INTEGER NOT NULL,"
    "  cells INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  body TEXT NOT NULL,"
    "  txid BLOB);"
    "CREATE INDEX surveil_releases_fp ON surveil_releases(org, fingerprint);"
    "CREATE TABLE surveil_budget ("
    "  org TEXT PRIMARY KEY,"
    "  spent_milli INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE org_tokens ("
    "  token_hash BLOB PRIMARY KEY,"
    "  org_key BLOB NOT NULL,"
    "  name TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE surveil_alerts ("
    "  id INTEGER PRIMARY KEY,"
    "  region TEXT NOT NULL,"
    "  condition TEXT NOT NULL,"
    "  week INTEGER NOT NULL,"
    "  method TEXT NOT NULL,"
    "  observed INTEGER NOT NULL,"
    "  upperbound REAL,"
    "  synthetic INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  acked_by TEXT,"
    "  acked_at INTEGER,"
    "  UNIQUE (region, condition, week, method));",
    /* 7: contributions' reward records wait here until a whole batch goes
     * to the ledger at once (surveil/pool.c). Keyed by the commitment
     * (random-looking) and WITHOUT ROWID: no arrival order is kept. */
    "CREATE TABLE surveil_reward_queue ("
    "  commitment BLOB PRIMARY KEY,"
    "  contributor BLOB NOT NULL,"
    "  grant BLOB NOT NULL) WITHOUT ROWID;",
    /* 8: clinician review. An organisation registered on the ledger offers
     * review (review/): price, answer-time promise, and the conditions and
     * regions it covers, one row each so that listing filters in SQL. A
     * clinician's organisation is a column of users (accounts/), read with
     * the session. Org keys are the ledger's 32-byte Ed25519 keys. */
    "CREATE TABLE review_offers ("
    "  org_key BLOB PRIMARY KEY CHECK (length(org_key) = 32),"
    "  org_name TEXT NOT NULL,"
    "  price INTEGER NOT NULL CHECK (price BETWEEN 1 AND 1000000),"
    "  answer_hours INTEGER NOT NULL CHECK (answer_hours BETWEEN 1 AND 720),"
    "  updated_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE review_offer_conditions ("
    "  org_key BLOB NOT NULL REFERENCES review_offers(org_key) ON DELETE CASCADE,"
    "  condition TEXT NOT NULL,"
    "  PRIMARY KEY (org_key, condition)) WITHOUT ROWID;"
    "CREATE INDEX review_offer_conditions_c ON review_offer_conditions(condition);"
    "CREATE TABLE review_offer_regions ("
    "  org_key BLOB NOT NULL REFERENCES review_offers(org_key) ON DELETE CASCADE,"
    "  region TEXT NOT NULL,"
    "  PRIMARY KEY (org_key, region)) WITHOUT ROWID;"
    "CREATE INDEX review_offer_regions_r ON review_offer_regions(region);"
    "ALTER TABLE users ADD COLUMN org_key BLOB CHECK (org_key IS NULL OR length(org_key) = 32);",
    /* 9: review cases (review/cases.c). The case copy and the answer are
     * sealed under a per-case key, which is kept sealed for the person
     * (person_key) and for the organisation (server_key); destroying a case
     * clears case_blob and both keys. The clear columns are what the queue,
     * the sweep and the ledger need: organisation, price, times, txids. */
    "CREATE TABLE review_cases ("
    "  id TEXT PRIMARY KEY,"
    "  owner INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  org_key BLOB NOT NULL CHECK (length(org_key) = 32),"
    "  price INTEGER NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN ('waiting','answered','withdrawn','returned','expired')),"
    "  created_at INTEGER NOT NULL,"
    "  deadline INTEGER NOT NULL,"
    "  closed_at INTEGER,"
    "  request_txid BLOB NOT NULL,"
    "  close_txid BLOB,"
    "  salt BLOB NOT NULL,"
    "  case_blob BLOB,"
    "  person_key BLOB,"
    "  server_key BLOB,"
    "  answer BLOB,"
    "  reason TEXT);"
    "CREATE INDEX review_cases_queue ON review_cases(org_key, state, created_at);"
    "CREATE INDEX review_cases_owner ON review_cases(owner, created_at);"
    "CREATE TABLE review_case_openings ("
    "  case_id TEXT NOT NULL REFERENCES review_cases(id) ON DELETE CASCADE,"
    "  clinician TEXT NOT NULL,"
    "  opened_at INTEGER NOT NULL);"
    "CREATE INDEX review_case_openings_c ON review_case_openings(case_id);",
    /* 10: what a clinician's answer feeds (share/pledge.c): per waiting case,
     * the wallet, home region, birth year and training handle the answer
     * needs, sealed under a node-derived key bound to the case id; only when
     * a consent asks for them, gone when the answer takes them or the case
     * row goes. */
    "CREATE TABLE share_review_pledges ("
    "  case_id TEXT PRIMARY KEY REFERENCES review_cases(id) ON DELETE CASCADE,"
    "  sealed BLOB NOT NULL,"
    "  created_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX share_review_pledges_t ON share_review_pledges(created_at);",
    /* 11: crash safety of review cases (review/cases.c). An intent is
     * committed before each ledger transaction a case step submits and is
     * deleted in the same SQLite transaction as the step's row change, so
     * after a crash review_recover finds every step the ledger may have
     * taken without this file: request (the escrow, found by its case
     * commitment), settle/refund (target state, the sealed answer or the
     * reason kept to finish it), revoke. One per case: steps on one case do
     * not interleave. And the case-scoped consent's revocation. */
    "CREATE TABLE review_intents ("
    "  case_id TEXT PRIMARY KEY,"
    "  op TEXT NOT NULL CHECK (op IN ('request','settle','refund','revoke')),"
    "  commitment BLOB,"
    "  request_txid BLOB,"
    "  target TEXT,"
    "  answer BLOB,"
    "  reason TEXT,"
    "  created_at INTEGER NOT NULL) WITHOUT ROWID;"
    "ALTER TABLE review_cases ADD COLUMN consent_revoked_at INTEGER;"
    "ALTER TABLE review_cases ADD COLUMN revoke_txid BLOB;",
    /* 12: the record a case was made from (issue 13), so the person's
     * records page can show the answer on the entry itself. Owner-only:
     * person_row reads it, nothing a clinician sees does. A record id is a
     * random handle (records keep theirs in clear too); NULL for cases made
     * before. */
    "ALTER TABLE review_cases ADD COLUMN record_id TEXT;",
    /* 13: data requests (market/, issue 14). A request's state is its own
     * crash intent for the organisation's steps: 'funding' is committed
     * before market_open goes to the ledger (found again by its terms
     * hash), 'closing' before market_close. A person's acceptance has an
     * intent (grant txid once known, the rows and the person's sealed copy
     * ready to store). Participation names the person and the request (for
     * the daily cap and "accepted"); the withdrawal tags of the rows are
     * only inside its blob, sealed under the person's data key (the grant
     * txid is in the clear: the wallet's consents name it anyway). The rows
     * themselves are stored by tag with no person id (WITHOUT ROWID: no
     * insertion order either). */
    "CREATE TABLE market_requests ("
    "  id TEXT PRIMARY KEY,"
    "  org_key BLOB NOT NULL,"
    "  org_name TEXT NOT NULL,"
    "  title TEXT NOT NULL,"
    "  purpose_text TEXT NOT NULL,"
    "  purpose TEXT NOT NULL CHECK (purpose IN ('research','public_health_surveillance')),"
    "  categories INTEGER NOT NULL,"
    "  criteria TEXT NOT NULL,"
    "  price INTEGER NOT NULL,"
    "  max_participants INTEGER NOT NULL,"
    "  closes INTEGER NOT NULL,"
    "  terms BLOB NOT NULL UNIQUE,"
    "  state TEXT NOT NULL CHECK (state IN ('pending','funding','open','closing','closed','withdrawn')),"
    "  request_txid BLOB,"
    "  created_at INTEGER NOT NULL,"
    "  closed_at INTEGER);"
    "CREATE INDEX market_requests_org ON market_requests(org_key);"
    "CREATE INDEX market_requests_state ON market_requests(state);"
    "CREATE TABLE market_participation ("
    "  owner INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  request_id TEXT NOT NULL REFERENCES market_requests(id),"
    "  amount INTEGER NOT NULL,"
    "  paid_at INTEGER NOT NULL,"
    "  grant_txid BLOB NOT NULL,"
    "  sealed BLOB NOT NULL,"
    "  withdrawn_at INTEGER,"
    "  PRIMARY KEY (owner, request_id)) WITHOUT ROWID;"
    "CREATE TABLE market_intents ("
    "  request_id TEXT NOT NULL,"
    "  owner INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  wallet BLOB NOT NULL,"
    "  grant_txid BLOB,"
    "  rows_sealed BLOB NOT NULL,"
    "  person_sealed BLOB NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  PRIMARY KEY (request_id, owner)) WITHOUT ROWID;"
    "CREATE TABLE market_rows ("
    "  tag BLOB PRIMARY KEY,"
    "  request_id TEXT NOT NULL REFERENCES market_requests(id),"
    "  row TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX market_rows_request ON market_rows(request_id);",
    /* 14: withdrawing public-health contributions, and their photo hashes
     * (issue 14; docs/SURVEILLANCE.md, "Withdrawal"). surveil_tags: a random
     * tag and the week of each contribution to a week not yet sealed, no
     * facts, no person (deleted by the first write after the week seals). share_vaults: per
     * person, one blob sealed under their data key — each contribution's
     * tag, facts, consent, reward, day and photo hash. */
    "CREATE TABLE surveil_tags (tag BLOB PRIMARY KEY, week INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX surveil_tags_week ON surveil_tags(week);"
    "CREATE TABLE share_vaults ("
    "  owner INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,"
    "  sealed BLOB NOT NULL);",
    /* 15: delivery (market/deliver.c). contributor: a random id per
     * acceptance shared by that acceptance's rows, so the k-anonymity step
     * counts people, not rows; it names no person (rows stored before have
     * none and are counted as one person: never more people than there
     * are). A delivery is a ledger release of the dataset's SHA-256, kept
     * once per (request, hash): the same bytes again get the same receipt.
     * Who had rows in a delivery's input (the participations not withdrawn
     * when it was made) is kept for their own list, never rows or tags. */
    "ALTER TABLE market_rows ADD COLUMN contributor BLOB;"
    "CREATE TABLE market_deliveries ("
    "  request_id TEXT NOT NULL REFERENCES market_requests(id),"
    "  sha256 BLOB NOT NULL,"
    "  txid BLOB NOT NULL,"
    "  delivered INTEGER NOT NULL,"
    "  held_back INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  PRIMARY KEY (request_id, sha256)) WITHOUT ROWID;"
    "CREATE TABLE market_delivery_people ("
    "  owner INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  request_id TEXT NOT NULL,"
    "  sha256 BLOB NOT NULL,"
    "  PRIMARY KEY (owner, request_id, sha256)) WITHOUT ROWID;",
    /* 16: a clinician's confirmation of a pledged case reaches the person's
     * vault (share/vault.c, "inbox"). The answer runs in the clinician's
     * session, where the vault (sealed under the person's data key) cannot
     * be opened: what the vault must learn — the contribution's withdrawal
     * tag and facts, or that the reservation ended — waits here in a box
     * sealed to a public key only the person's data key derives, and is
     * merged (and deleted) by their next session that reads the vault. */
    "CREATE TABLE share_vault_inbox ("
    "  id INTEGER PRIMARY KEY,"
    "  owner INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  sealed BLOB NOT NULL);"
    "CREATE INDEX share_vault_inbox_owner ON share_vault_inbox(owner);",
};

static const store_schema app_schema = {"caresync", migrations, (int)(sizeof migrations / sizeof migrations[0]), 0};

const store_schema *store_app_schema(void) { return &app_schema; }

int store_latest_version(void) { return app_schema.count; }

static int pragma_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *q = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    return v;
}

core_status store_migrate(sqlite3 *db, int target, core_error *err) {
    return store_migrate_schema(db, &app_schema, target, err);
}

core_status store_migrate_schema(sqlite3 *db, const store_schema *schema, int target, core_error *err) {
    int latest = schema->count;
    if (target > latest) target = latest;
    int v = pragma_int(db, "PRAGMA user_version");
    if (v < 0) return store_error(db, err);
    if (v > latest)
        return core_fail(err, CORE_ERR_VERSION, NULL,
                         "%s database schema version %d is newer than this caresync supports (%d); "
                         "run a newer caresync or restore a backup",
                         schema->name, v, latest);
    if (v > 0 && schema->application_id != 0 && pragma_int(db, "PRAGMA application_id") != schema->application_id)
        return core_fail(err, CORE_ERR_VERSION, NULL, "this file is not a %s database", schema->name);
    /* A file at version 0 becomes ours only if it is empty: never add our
     * tables to some other SQLite database. */
    if (v == 0 && schema->application_id != 0 && pragma_int(db, "SELECT count(*) FROM sqlite_master") != 0)
        return core_fail(err, CORE_ERR_VERSION, NULL, "this file is not a %s database", schema->name);
    for (; v < target; v++) {
        core_status rc = store_begin(db, err);
        if (rc) return rc;
        char bump[96];
        if (v == 0 && schema->application_id)
            snprintf(bump, sizeof bump, "PRAGMA user_version = %d; PRAGMA application_id = %d", v + 1,
                     schema->application_id);
        else
            snprintf(bump, sizeof bump, "PRAGMA user_version = %d", v + 1);
        if (sqlite3_exec(db, schema->steps[v], NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(db, bump, NULL, NULL, NULL) != SQLITE_OK) {
            core_fail(err, CORE_ERR_STORAGE, NULL, "%s migration to version %d failed: %s", schema->name, v + 1,
                      sqlite3_errmsg(db));
            store_rollback(db);
            return CORE_ERR_STORAGE;
        }
        if ((rc = store_commit(db, err))) return rc;
    }
    return CORE_OK;
}
