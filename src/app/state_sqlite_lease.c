/*
 * state_sqlite_lease: leases, fenced cursor writes and handled records
 * of the SQLite state store.
 *
 * A claim takes the oldest pending account without a live lease and
 * gives it the next fence of that account; the lease row stays when the
 * lease is released (only its holder is cleared), so fences only grow.
 * Renew, release and cursor_set succeed only with the live fence, so a
 * worker whose lease was taken over writes nothing (STATE_LOST).
 */
#include "app/state_sqlite_impl.h"

#include "common/db.h"
#include "common/log.h"
#include "common/util.h"

#include <stdlib.h>

enum state_status state_sqlite_handled_check(void *impl, const char *account,
                                             const char *path, const char *rev)
{
    struct sq *q = impl;
    sqlite3_stmt *s;
    enum state_status result;

    pthread_mutex_lock(&q->mu);
    s = db_prepare(q->db, "SELECT 1 FROM handled WHERE account = ?1"
                          " AND path = ?2 AND rev = ?3");
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, path);
    db_bind_text(s, 3, rev);
    result = state_sqlite_step_row(q->db, s, "read");
    sqlite3_finalize(s);
    pthread_mutex_unlock(&q->mu);
    return result;
}

enum state_status state_sqlite_handled_put(void *impl, const char *account,
                                           const char *path, const char *rev)
{
    return state_sqlite_write(impl,
                              "INSERT OR IGNORE INTO handled(account, path,"
                              " rev, done_s) VALUES(?1, ?2, ?4, ?3)",
                              "handled_put", account, path, time_now_s(), rev);
}

/* Finds the oldest pending account without a live lease.  Called inside
 * claim's transaction. */
static enum state_status sq_claim_find(struct sq *q, int64_t now,
                                       char **account, int64_t *version,
                                       uint64_t *last_fence)
{
    sqlite3_stmt *s;
    enum state_status result;

    s = db_prepare(q->db, "SELECT p.account, p.version, COALESCE(l.fence, 0)"
                          " FROM pending p LEFT JOIN leases l"
                          " ON l.account = p.account"
                          " WHERE l.owner IS NULL OR l.expires_ms <= ?1"
                          " ORDER BY p.marked_ms, p.account LIMIT 1");
    sqlite3_bind_int64(s, 1, now);
    result = state_sqlite_step_row(q->db, s, "claim");
    if (result == STATE_OK) {
        *account = db_column_dup(s, 0);
        *version = sqlite3_column_int64(s, 1);
        *last_fence = (uint64_t)sqlite3_column_int64(s, 2);
    }
    sqlite3_finalize(s);
    return result;
}

/* Runs one write statement with ?1 bound to account and ?2, ?3 to
 * numbers (a statement may leave ?3 unused).  Called with q->mu held. */
static int sq_exec_num(struct sq *q, const char *sql, const char *what,
                       const char *account, int64_t n2, int64_t n3)
{
    sqlite3_stmt *s = db_prepare(q->db, sql);
    int rc;

    db_bind_text(s, 1, account);
    sqlite3_bind_int64(s, 2, n2);
    sqlite3_bind_int64(s, 3, n3);
    rc = state_sqlite_step_done(q->db, s, what);
    sqlite3_finalize(s);
    return rc;
}

static int sq_lease_put(struct sq *q, const char *account, const char *owner,
                        uint64_t fence, int64_t expires_ms)
{
    sqlite3_stmt *s;
    int rc;

    s = db_prepare(q->db,
                   "INSERT INTO leases(account, owner, fence, expires_ms)"
                   " VALUES(?1, ?2, ?3, ?4) ON CONFLICT(account)"
                   " DO UPDATE SET owner = excluded.owner,"
                   " fence = excluded.fence,"
                   " expires_ms = excluded.expires_ms");
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, owner);
    sqlite3_bind_int64(s, 3, (int64_t)fence);
    sqlite3_bind_int64(s, 4, expires_ms);
    rc = state_sqlite_step_done(q->db, s, "claim");
    sqlite3_finalize(s);
    return rc;
}

enum state_status state_sqlite_claim(void *impl, const char *owner,
                                     int64_t lease_ms, char **account,
                                     uint64_t *fence, int64_t *version)
{
    struct sq *q = impl;
    int64_t now = state_now_ms();
    uint64_t last_fence = 0;
    char *found = NULL;
    enum state_status result = STATE_ERR;

    if (state_sqlite_txn_begin(q) < 0)
        goto out;
    result = sq_claim_find(q, now, &found, version, &last_fence);
    if (result != STATE_OK)
        goto out;
    result = STATE_ERR;
    if (sq_lease_put(q, found, owner, last_fence + 1, now + lease_ms) < 0)
        goto out;
    state_sqlite_lease_bump(&q->cache); /* its mark is no longer covered */
    if (db_commit(q->db) < 0)
        goto out;
    *account = found;
    *fence = last_fence + 1;
    found = NULL;
    result = STATE_OK;

out:
    if (result != STATE_OK)
        *version = 0;
    state_sqlite_txn_end(q, result);
    free(found);
    return result;
}

/* Runs a fenced UPDATE of leases (?1 account, ?2 fence, ?3 number) and
 * tells whether it hit the live lease.  Called with q->mu held. */
static enum state_status sq_lease_update(struct sq *q, const char *sql,
                                         const char *account, uint64_t fence,
                                         int64_t num)
{
    if (sq_exec_num(q, sql, "lease", account, (int64_t)fence, num) < 0)
        return STATE_ERR;
    return sqlite3_changes(q->db) == 0 ? STATE_LOST : STATE_OK;
}

enum state_status state_sqlite_renew(void *impl, const char *account,
                                     uint64_t fence, int64_t lease_ms)
{
    struct sq *q = impl;
    enum state_status result;

    pthread_mutex_lock(&q->mu);
    result = sq_lease_update(q,
                             "UPDATE leases SET expires_ms = ?3"
                             " WHERE account = ?1 AND fence = ?2"
                             " AND owner IS NOT NULL",
                             account, fence, state_now_ms() + lease_ms);
    pthread_mutex_unlock(&q->mu);
    return result;
}

/* Drops the mark if its version is the claimed one; otherwise moves it
 * to the back of the queue so that one busy account cannot starve the
 * others.  Called inside release's transaction. */
static int sq_unmark(struct sq *q, const char *account, int64_t version)
{
    int rc;

    rc = sq_exec_num(q,
                     "DELETE FROM pending WHERE account = ?1"
                     " AND version = ?2",
                     "release", account, version, 0);
    if (rc == 0 && sqlite3_changes(q->db) > 0)
        state_sqlite_lease_bump(&q->cache); /* no longer pending */
    if (rc < 0 || sqlite3_changes(q->db) > 0)
        return rc;
    return sq_exec_num(q,
                       "UPDATE pending SET marked_ms = ?2"
                       " WHERE account = ?1",
                       "release", account, state_now_ms(), 0);
}

enum state_status state_sqlite_release(void *impl, const char *account,
                                       uint64_t fence, int64_t version)
{
    struct sq *q = impl;
    enum state_status result = STATE_ERR;

    if (state_sqlite_txn_begin(q) < 0)
        goto out;
    result = sq_lease_update(q,
                             "UPDATE leases SET owner = NULL,"
                             " expires_ms = ?3"
                             " WHERE account = ?1 AND fence = ?2"
                             " AND owner IS NOT NULL",
                             account, fence, 0);
    if (result != STATE_OK)
        goto out;
    result = STATE_ERR;
    if (sq_unmark(q, account, version) < 0 || db_commit(q->db) < 0)
        goto out;
    result = STATE_OK;

out:
    state_sqlite_txn_end(q, result);
    return result;
}

/* STATE_OK when fence is the live lease of account, else STATE_LOST.
 * Called inside a transaction. */
static enum state_status sq_fence_check(struct sq *q, const char *account,
                                        uint64_t fence)
{
    sqlite3_stmt *s;
    enum state_status result;

    s = db_prepare(q->db, "SELECT 1 FROM leases WHERE account = ?1"
                          " AND fence = ?2 AND owner IS NOT NULL");
    db_bind_text(s, 1, account);
    sqlite3_bind_int64(s, 2, (int64_t)fence);
    result = state_sqlite_step_row(q->db, s, "fence check");
    sqlite3_finalize(s);
    return result == STATE_NONE ? STATE_LOST : result;
}

enum state_status state_sqlite_cursor_set(void *impl, const char *account,
                                          const char *cursor, uint64_t fence)
{
    struct sq *q = impl;
    sqlite3_stmt *s;
    enum state_status result = STATE_ERR;
    int rc;

    if (state_sqlite_txn_begin(q) < 0)
        goto out;
    result = sq_fence_check(q, account, fence);
    if (result != STATE_OK)
        goto out;

    s = db_prepare(q->db, "INSERT INTO accounts(account, cursor, last_sync_s)"
                          " VALUES(?1, ?2, ?3) ON CONFLICT(account) DO UPDATE"
                          " SET cursor = excluded.cursor,"
                          " last_sync_s = excluded.last_sync_s");
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, cursor);
    sqlite3_bind_int64(s, 3, time_now_s());
    rc = state_sqlite_step_done(q->db, s, "cursor_set");
    sqlite3_finalize(s);
    result = STATE_ERR;
    if (rc == 0 && db_commit(q->db) == 0)
        result = STATE_OK;

out:
    state_sqlite_txn_end(q, result);
    return result;
}
