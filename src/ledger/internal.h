/* ledger — private declarations shared by the module's files. */
#ifndef CARESYNC_LEDGER_INTERNAL_H
#define CARESYNC_LEDGER_INTERNAL_H

#include "ledger/ledger.h"
#include "store/store.h"

/* Reward rules are capped so a year of contributions cannot approach the
 * 2^63 supply limit by accident of configuration. */
#define LEDGER_REWARD_MAX UINT64_C(1000000000000)

bool ledger_name_valid(const char *name, size_t len);

/* The ledger database's schema (schema.c). */
const store_schema *ledger_schema(void);

/* The state machine (state.c) over one SQLite connection that the caller
 * keeps inside a transaction while applying a block. apply() checks every
 * rule before writing anything, so a rejected transaction leaves no trace;
 * an accepted one writes its row, its state changes and wallet postings. */
typedef struct ledger_state ledger_state;
core_status ledger_state_open(sqlite3 *db, ledger_state **out, core_error *err);
void ledger_state_close(ledger_state *s);
/* (Re)read params and supply counters from the database, e.g. after a rollback.
 * On failure the in-memory state is unusable (it may hold a rolled-back
 * block's supply) and apply() refuses until a load succeeds. */
core_status ledger_state_load(ledger_state *s, core_error *err);
/* Test-only fault injection: while positive, each ledger_state_load() fails
 * with CORE_ERR_STORAGE, as a failing disk would, and counts it down. Only
 * tests set it; it is zero otherwise. */
extern _Atomic int ledger_fault_state_load;
core_status ledger_state_apply(ledger_state *s, const ledger_tx *tx, const uint8_t *enc, size_t len,
                               const uint8_t txid[LEDGER_HASH], uint64_t seq, uint64_t height, uint64_t time_ms,
                               core_error *err);
/* Write the block header and the supply counters (end of a block). */
core_status ledger_state_finish_block(ledger_state *s, const ledger_block *b, core_error *err);
bool ledger_state_has_params(const ledger_state *s);
/* Whether pk is a node key in the params in force (false before genesis). */
bool ledger_state_is_node(const ledger_state *s, const uint8_t pk[LEDGER_KEY]);
/* The params transaction in force; NULL before genesis. Borrowed. */
const ledger_tx *ledger_state_params(const ledger_state *s);
void ledger_state_totals(const ledger_state *s, uint64_t *minted, uint64_t *burned);

#endif
