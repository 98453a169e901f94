/* ledger — the schema of ledger.db. Blocks and transactions are stored as
 * their exact encodings (what signatures and hashes cover); every other
 * table is derived state that `caresync ledger verify` recomputes and
 * compares. Never edit a released migration: append one. */
#include "ledger/internal.h"

static const char *const steps[] = {
    /* 1 */
    "CREATE TABLE blocks ("
    "  height INTEGER PRIMARY KEY,"
    "  hash BLOB NOT NULL UNIQUE,"
    "  header BLOB NOT NULL);"
    /* seq is the leaf index in the Merkle log; txid = leaf hash. */
    "CREATE TABLE txs ("
    "  seq INTEGER PRIMARY KEY,"
    "  txid BLOB NOT NULL UNIQUE,"
    "  height INTEGER NOT NULL,"
    "  body BLOB NOT NULL);"
    /* Every key that ever signed, with its last nonce; wallets also hold a
     * balance, which a CHECK keeps non-negative even against a bug. */
    "CREATE TABLE signers ("
    "  pubkey BLOB PRIMARY KEY,"
    "  nonce INTEGER NOT NULL,"
    "  wallet INTEGER NOT NULL,"
    "  balance INTEGER NOT NULL CHECK (balance >= 0)) WITHOUT ROWID;"
    "CREATE TABLE consents ("
    "  grant_txid BLOB PRIMARY KEY,"
    "  owner BLOB NOT NULL,"
    "  scope INTEGER NOT NULL,"
    "  purpose INTEGER NOT NULL,"
    "  grantee BLOB NOT NULL,"
    "  expires INTEGER NOT NULL,"
    "  granted_height INTEGER NOT NULL,"
    "  revoked_height INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX consents_owner ON consents(owner);"
    "CREATE TABLE orgs ("
    "  pubkey BLOB PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  height INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE commitments ("
    "  commitment BLOB PRIMARY KEY,"
    "  seq INTEGER NOT NULL) WITHOUT ROWID;"
    /* Wallet history: one row per (wallet, transaction) with the balance change. */
    "CREATE TABLE postings ("
    "  wallet BLOB NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  delta INTEGER NOT NULL,"
    "  PRIMARY KEY (wallet, seq)) WITHOUT ROWID;"
    "CREATE TABLE meta ("
    "  key TEXT PRIMARY KEY,"
    "  value BLOB NOT NULL);",
    /* 2: review escrows, keyed by the request's txid. The case commitment
     * also sits in commitments (one use per commitment, as for anchors).
     * closed_height 0 = open; outcome 0 open, 1 settled, 2 refunded. Open
     * amounts are the tokens neither in a balance nor burned. */
    "CREATE TABLE escrows ("
    "  request_txid BLOB PRIMARY KEY,"
    "  payer BLOB NOT NULL,"
    "  org BLOB NOT NULL,"
    "  commitment BLOB NOT NULL UNIQUE,"
    "  amount INTEGER NOT NULL CHECK (amount > 0),"
    "  opened_height INTEGER NOT NULL,"
    "  closed_height INTEGER NOT NULL,"
    "  outcome INTEGER NOT NULL CHECK (outcome IN (0, 1, 2))) WITHOUT ROWID;",
    /* 3: a review request also makes a case-scoped consent (purpose 4,
     * LEDGER_PURPOSE_REVIEW, checked below,
     * keyed by the request's txid, ended by a refund): derived state for
     * requests already in the file, as a replay now computes it. */
    "INSERT OR IGNORE INTO consents (grant_txid, owner, scope, purpose, grantee, expires, granted_height, "
    "revoked_height) SELECT request_txid, payer, 1, 4, org, 9223372036854775807, opened_height, "
    "CASE outcome WHEN 2 THEN closed_height ELSE 0 END FROM escrows;",
    /* 4: data requests (issue 14), keyed by the market_open's txid; the
     * terms hash also sits in commitments (used once). remaining is what the
     * escrow still holds (price × unpaid places while open); outcome 0 open,
     * 1 used up (the last place paid), 2 closed (remainder returned). One
     * row per (request, wallet) paid: the ledger's one payment per person. */
    "CREATE TABLE market_escrows ("
    "  request_txid BLOB PRIMARY KEY,"
    "  org BLOB NOT NULL,"
    "  terms BLOB NOT NULL UNIQUE,"
    "  price INTEGER NOT NULL CHECK (price > 0),"
    "  max_participants INTEGER NOT NULL CHECK (max_participants > 0),"
    "  paid INTEGER NOT NULL CHECK (paid >= 0 AND paid <= max_participants),"
    "  remaining INTEGER NOT NULL CHECK (remaining >= 0),"
    "  closes INTEGER NOT NULL,"
    "  opened_height INTEGER NOT NULL,"
    "  closed_height INTEGER NOT NULL,"
    "  outcome INTEGER NOT NULL CHECK (outcome IN (0, 1, 2))) WITHOUT ROWID;"
    "CREATE TABLE market_payments ("
    "  request_txid BLOB NOT NULL,"
    "  participant BLOB NOT NULL,"
    "  grant_txid BLOB NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  PRIMARY KEY (request_txid, participant)) WITHOUT ROWID;",
};

_Static_assert(LEDGER_PURPOSE_REVIEW == 4, "schema step 3 writes the review purpose as 4");

/* "CSLG" */
static const store_schema schema = {"ledger", steps, (int)(sizeof steps / sizeof steps[0]), 0x43534c47};

const store_schema *ledger_schema(void) { return &schema; }
