/*
 * journal: appending changes and reading them back collapsed per path.
 */
#include "cloud/journal.h"

#include "common/db.h"
#include "common/log.h"
#include "common/pathx.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>

/* Matches a path at or below ?3 (recursive) or directly inside ?3.  The
 * range test works because '0' is the byte after '/': every path below
 * "/a" sorts between "/a/" and "/a0". */
#define UNDER_PREFIX                                                        \
    " AND ((?4 = 1 AND (path_lower = ?3 OR (path_lower > ?3 || '/'"         \
    " AND path_lower < ?3 || '0'))) OR (?4 = 0 AND parent_lower = ?3))"

int64_t journal_next_seq(struct store *s)
{
    return store_journal_head(s) + 1;
}

int journal_append(struct store *s, int64_t seq, int64_t account,
                   const struct entry *e)
{
    sqlite3_stmt *st = db_prepare(
        s->db, "INSERT INTO journal (seq, account, path_lower, parent_lower,"
               " path_display, tag, metadata, created_at)"
               " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    json_t *meta = store_entry_json(e);
    char *text = json_dumps(meta, JSON_COMPACT);
    char *parent = pathx_parent(e->path_lower);
    int rc = 0;

    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_int64(st, 2, account);
    db_bind_text(st, 3, e->path_lower);
    db_bind_text(st, 4, parent);
    db_bind_text(st, 5, e->path_display);
    db_bind_text(st, 6, e->tag);
    db_bind_text(st, 7, text);
    sqlite3_bind_int64(st, 8, time_now_s());
    if (sqlite3_step(st) != SQLITE_DONE) {
        LOG_E("journal append failed err=%s", sqlite3_errmsg(s->db));
        rc = -1;
    }
    sqlite3_finalize(st);
    free(parent);
    free(text);
    json_decref(meta);
    return rc;
}

/* Runs a query of one integer with the account as ?1; 0 if no row. */
static int64_t journal_scalar(struct store *s, const char *sql,
                              int64_t account)
{
    sqlite3_stmt *st = db_prepare(s->db, sql);
    int64_t v = 0;

    sqlite3_bind_int64(st, 1, account);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

int64_t journal_account_head(struct store *s, int64_t account)
{
    return journal_scalar(
        s, "SELECT MAX((SELECT COALESCE(MAX(seq), 0) FROM journal"
           " WHERE account = ?1), (SELECT COALESCE(MAX(seq), 0)"
           " FROM journal_floor WHERE account = ?1))", account);
}

int64_t journal_account_floor(struct store *s, int64_t account)
{
    return journal_scalar(s, "SELECT seq FROM journal_floor"
                             " WHERE account = ?1", account);
}

/* The floor moves up to the newest row removed, per account. */
static const char floor_sql[] =
    "INSERT INTO journal_floor (account, seq)"
    " SELECT account, MAX(seq) FROM journal WHERE created_at < ?1"
    " GROUP BY account"
    " ON CONFLICT(account) DO UPDATE SET seq = MAX(seq, excluded.seq)";

int64_t journal_compact(struct store *s)
{
    int64_t now = time_mono_ms(), cutoff, removed = 0;
    sqlite3_stmt *st;

    if (s->journal_max_age_s <= 0 || now - s->compacted_at < 1000)
        return 0;
    s->compacted_at = now;
    cutoff = time_now_s() - s->journal_max_age_s;
    if (db_begin(s->db) < 0)
        return -1;
    st = db_prepare(s->db, floor_sql);
    sqlite3_bind_int64(st, 1, cutoff);
    if (sqlite3_step(st) != SQLITE_DONE)
        removed = -1;
    sqlite3_finalize(st);
    st = db_prepare(s->db, "DELETE FROM journal WHERE created_at < ?1");
    sqlite3_bind_int64(st, 1, cutoff);
    if (removed == 0 && sqlite3_step(st) == SQLITE_DONE)
        removed = sqlite3_changes(s->db);
    else
        removed = -1;
    sqlite3_finalize(st);
    if (removed < 0 || db_commit(s->db) < 0) {
        LOG_E("journal compaction failed err=%s", sqlite3_errmsg(s->db));
        db_rollback(s->db);
        return -1;
    }
    if (removed > 0)
        LOG_I("journal compacted rows=%lld max_age_s=%lld",
              (long long)removed, (long long)s->journal_max_age_s);
    return removed;
}

bool journal_has_changes(struct store *s, int64_t account,
                         const char *prefix, bool recursive, int64_t seq)
{
    sqlite3_stmt *st = db_prepare(
        s->db, "SELECT 1 FROM journal WHERE account = ?1 AND seq > ?2"
               UNDER_PREFIX " LIMIT 1");
    bool found;

    sqlite3_bind_int64(st, 1, account);
    sqlite3_bind_int64(st, 2, seq);
    db_bind_text(st, 3, prefix);
    sqlite3_bind_int(st, 4, recursive ? 1 : 0);
    found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

/* SQLite returns the bare column (metadata) from the row that holds the
 * MAX(seq) of each group, which is exactly the latest state per path. */
static const char changes_sql[] =
    "SELECT MAX(seq) AS last, metadata FROM journal"
    " WHERE account = ?1 AND seq > ?2" UNDER_PREFIX
    " GROUP BY path_lower ORDER BY last LIMIT ?5";

int journal_changes(struct store *s, int64_t account, const char *prefix,
                    bool recursive, int64_t seq, uint32_t limit,
                    json_t *entries, int64_t *next_seq, bool *has_more)
{
    int64_t head = journal_account_head(s, account), last = seq;
    sqlite3_stmt *st = db_prepare(s->db, changes_sql);
    uint32_t taken = 0;
    int step, rc = 0;

    sqlite3_bind_int64(st, 1, account);
    sqlite3_bind_int64(st, 2, seq);
    db_bind_text(st, 3, prefix);
    sqlite3_bind_int(st, 4, recursive ? 1 : 0);
    sqlite3_bind_int64(st, 5, (int64_t)limit + 1);
    *has_more = false;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 1);
        json_t *meta;

        if (taken == limit) {
            *has_more = true;
            break;
        }
        meta = json_loads(text ? text : "", 0, NULL);
        if (meta == NULL) {
            LOG_E("journal row unreadable seq=%lld",
                  (long long)sqlite3_column_int64(st, 0));
            rc = -1;
            break;
        }
        json_array_append_new(entries, meta);
        last = sqlite3_column_int64(st, 0);
        taken++;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        LOG_E("journal read failed err=%s", sqlite3_errmsg(s->db));
        rc = -1;
    }
    sqlite3_finalize(st);
    *next_seq = *has_more ? last : (head > seq ? head : seq);
    return rc;
}

int64_t journal_count(struct store *s)
{
    sqlite3_stmt *st = db_prepare(s->db, "SELECT COUNT(*) FROM journal");
    int64_t n = 0;

    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}
