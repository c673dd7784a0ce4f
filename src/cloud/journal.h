/*
 * journal: the ordered list of changes to each account's files.
 *
 * Every committed change to entries appends one row per changed path in
 * the same transaction: the sequence number (global, increasing), the
 * account, the path and a JSON snapshot of the entry's metadata after the
 * change.  list_folder/continue reads it after a cursor's seq.
 * All functions expect the store lock held.
 */
#ifndef DBX_CLOUD_JOURNAL_H
#define DBX_CLOUD_JOURNAL_H

#include "cloud/store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* The seq the next append will get (inside a write transaction). */
int64_t journal_next_seq(struct store *s);

/* Appends e's state as change seq (from journal_next_seq, used in
 * increasing order).  Returns 0 or -1. */
int journal_append(struct store *s, int64_t seq, int64_t account,
                   const struct entry *e);

/* The account's last seq (compacted rows included), 0 when it has no
 * change yet. */
int64_t journal_account_head(struct store *s, int64_t account);

/* The highest seq of the account's rows that compaction removed, 0 when
 * none: a cursor before it can no longer be served (reset). */
int64_t journal_account_floor(struct store *s, int64_t account);

/* Removes journal rows older than s->journal_max_age_s (when set), at
 * most once a second, remembering each account's floor.  Returns the
 * number of rows removed, or -1. */
int64_t journal_compact(struct store *s);

/* True when the account has a change after seq under prefix. */
bool journal_has_changes(struct store *s, int64_t account,
                         const char *prefix, bool recursive, int64_t seq);

/* Appends to entries (a JSON array) at most limit changes after seq
 * under prefix (recursive, or direct children only), one per path in
 * its latest state, ordered by the seq of that state.  *next_seq is the
 * position to continue from and *has_more tells whether more changes
 * wait.  Returns 0 or -1. */
int journal_changes(struct store *s, int64_t account, const char *prefix,
                    bool recursive, int64_t seq, uint32_t limit,
                    json_t *entries, int64_t *next_seq, bool *has_more);

/* Rows in the journal, all accounts (for the console's stats). */
int64_t journal_count(struct store *s);

#endif
