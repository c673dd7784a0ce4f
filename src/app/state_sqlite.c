/*
 * state_sqlite: the state store in DATA/app.db.
 *
 * Tables:
 *   accounts  tokens (access, refresh, expiry), re-link flag, cursor, time
 *             of the last cursor write, last failure and failures in a row
 *   handled   (account, path, rev) entries whose once-only work is done
 *   pending   one row per pending account with the version of its mark
 *   leases    one row per account ever leased: holder, fence, expiry.
 *             Releasing clears the holder but keeps the row, so the next
 *             fence is always larger than every fence handed out before.
 *   counters  named integers
 *   meta      version_seq, the source of mark versions
 *
 * One writing connection per process, used under a mutex by every
 * operation and by the group committer.  SQLite lets one writer in at a
 * time anyway; a second writer would only add busy-wait sleeps when the
 * two collide.  The busy timeout set by db_open covers other processes
 * (the worker, appctl) writing the same file.  A second connection
 * only reads, for the receiver's account_known, so it never waits for a
 * commit to learn whether it knows an account.  What the receiver has
 * learned (known accounts, covered marks) is kept in
 * state_sqlite_cache.c.
 *
 * Marks and counter adds go through the group committer
 * (state_sqlite_commit.c); leases, fenced cursor writes and handled
 * records live in state_sqlite_lease.c.
 */
#include "app/state_sqlite_impl.h"

#include "common/db.h"
#include "common/log.h"
#include "common/util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char sq_schema[] =
    "CREATE TABLE IF NOT EXISTS accounts ("
    " account TEXT PRIMARY KEY, token TEXT, cursor TEXT,"
    " last_sync_s INTEGER, failure TEXT);"
    "CREATE TABLE IF NOT EXISTS pending ("
    " account TEXT PRIMARY KEY, version INTEGER NOT NULL,"
    " marked_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS pending_by_age ON pending(marked_ms);"
    "CREATE TABLE IF NOT EXISTS leases ("
    " account TEXT PRIMARY KEY, owner TEXT, fence INTEGER NOT NULL,"
    " expires_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS handled ("
    " account TEXT NOT NULL, path TEXT NOT NULL, rev TEXT NOT NULL,"
    " done_s INTEGER NOT NULL, PRIMARY KEY(account, path, rev))"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS counters ("
    " name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS meta ("
    " name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO meta(name, value) VALUES('version_seq', 0);";

/* Columns added to accounts after the first release; an existing app.db
 * gets them on open (sq_migrate). */
static const struct {
    const char *name;
    const char *decl;
} sq_account_columns[] = {
    {"refresh", "refresh TEXT"},
    {"expires_s", "expires_s INTEGER NOT NULL DEFAULT 0"},
    {"relink", "relink INTEGER NOT NULL DEFAULT 0"},
    {"fail_streak", "fail_streak INTEGER NOT NULL DEFAULT 0"},
};

/* ---- shared helpers -------------------------------------------------- */

int state_sqlite_step_done(sqlite3 *db, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);

    if (rc == SQLITE_DONE)
        return 0;
    LOG_E("state sqlite step failed op=%s error=\"%s\"", what,
          sqlite3_errmsg(db));
    return -1;
}

enum state_status state_sqlite_step_row(sqlite3 *db, sqlite3_stmt *s,
                                        const char *what)
{
    int rc = sqlite3_step(s);

    if (rc == SQLITE_ROW)
        return STATE_OK;
    if (rc == SQLITE_DONE)
        return STATE_NONE;
    LOG_E("state %s failed error=\"%s\"", what, sqlite3_errmsg(db));
    return STATE_ERR;
}

int state_sqlite_txn_begin(struct sq *q)
{
    pthread_mutex_lock(&q->mu);
    return db_begin(q->db);
}

void state_sqlite_txn_end(struct sq *q, enum state_status result)
{
    if (result != STATE_OK)
        db_rollback(q->db);
    pthread_mutex_unlock(&q->mu);
}

/* ---- known accounts ---------------------------------------------------- */

static enum state_status sq_account_known(void *impl, const char *account)
{
    struct sq *q = impl;
    struct sq_reader *r = &q->reader;
    enum state_status result;

    if (state_sqlite_cache_known(&q->cache, account))
        return STATE_OK;
    pthread_mutex_lock(&r->mu);
    db_bind_text(r->known, 1, account);
    result = state_sqlite_step_row(r->db, r->known, "read");
    sqlite3_reset(r->known);
    pthread_mutex_unlock(&r->mu);
    if (result == STATE_OK)
        state_sqlite_cache_set_known(&q->cache, account);
    return result;
}

static int sq_reader_open(struct sq_reader *r, const char *path)
{
    r->db = db_open(path, NULL);
    if (r->db == NULL)
        return -1;
    r->known = db_prepare(r->db, "SELECT 1 FROM accounts WHERE account = ?1"
                                 " AND token IS NOT NULL");
    pthread_mutex_init(&r->mu, NULL);
    return 0;
}

static void sq_reader_close(struct sq_reader *r)
{
    if (r->db == NULL)
        return;
    sqlite3_finalize(r->known);
    db_close(r->db);
    pthread_mutex_destroy(&r->mu);
}

/* ---- covered marks (state_sqlite_cache.c) ------------------------------ */

static enum state_status sq_mark_covered(void *impl,
                                         const char *const *accounts, size_t n,
                                         const struct state_count *counts,
                                         size_t n_counts)
{
    struct sq *q = impl;

    if (!state_sqlite_cache_covered(&q->cache, accounts, n))
        return STATE_NONE;
    return state_sqlite_gc_defer(&q->gc, counts, n_counts) < 0 ? STATE_ERR
                                                               : STATE_OK;
}

/* ---- tokens, cursors, counters, failures ----------------------------- */

enum state_status state_sqlite_write(struct sq *q, const char *sql,
                                     const char *what, const char *text1,
                                     const char *text2, int64_t num,
                                     const char *text4)
{
    sqlite3_stmt *s;
    int rc;

    pthread_mutex_lock(&q->mu);
    s = db_prepare(q->db, sql);
    db_bind_text(s, 1, text1);
    db_bind_text(s, 2, text2);
    sqlite3_bind_int64(s, 3, num);
    db_bind_text(s, 4, text4);
    rc = state_sqlite_step_done(q->db, s, what);
    sqlite3_finalize(s);
    pthread_mutex_unlock(&q->mu);
    return rc == 0 ? STATE_OK : STATE_ERR;
}

/* Prepares sql on the writing connection (q->mu held by the caller),
 * binds key to ?1 and steps once: see state_sqlite_step_row.  The
 * caller reads the row, if any, and finalizes *s. */
static enum state_status sq_row_by_key(struct sq *q, const char *sql,
                                       const char *key, const char *what,
                                       sqlite3_stmt **s)
{
    *s = db_prepare(q->db, sql);
    db_bind_text(*s, 1, key);
    return state_sqlite_step_row(q->db, *s, what);
}

/* Reads one text column of one row keyed by key; STATE_NONE when there
 * is no row or the value is NULL. */
static enum state_status sq_read_text(struct sq *q, const char *sql,
                                      const char *key, char **out)
{
    sqlite3_stmt *s;
    enum state_status result;

    pthread_mutex_lock(&q->mu);
    result = sq_row_by_key(q, sql, key, "read", &s);
    if (result == STATE_OK) {
        *out = db_column_dup(s, 0);
        if (*out == NULL)
            result = STATE_NONE;
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&q->mu);
    return result;
}

static enum state_status sq_token_set(void *impl, const char *account,
                                      const char *access, const char *refresh,
                                      int64_t expires_s)
{
    return state_sqlite_write(impl,
                              "INSERT INTO accounts(account, token, refresh,"
                              " expires_s, relink) VALUES(?1, ?2, ?4, ?3, 0)"
                              " ON CONFLICT(account) DO UPDATE"
                              " SET token = excluded.token,"
                              " refresh = COALESCE(excluded.refresh,"
                              " refresh),"
                              " expires_s = excluded.expires_s, relink = 0",
                              "token_set", account, access, expires_s,
                              refresh);
}

static enum state_status sq_token_get(void *impl, const char *account,
                                      struct state_token *tok)
{
    struct sq *q = impl;
    sqlite3_stmt *s;
    enum state_status result;

    pthread_mutex_lock(&q->mu);
    result = sq_row_by_key(q,
                           "SELECT token, refresh, expires_s, relink"
                           " FROM accounts WHERE account = ?1"
                           " AND token IS NOT NULL",
                           account, "read", &s);
    if (result == STATE_OK) {
        tok->access = db_column_dup(s, 0);
        tok->refresh = db_column_dup(s, 1);
        tok->expires_s = sqlite3_column_int64(s, 2);
        tok->needs_relink = sqlite3_column_int(s, 3) != 0;
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&q->mu);
    return result;
}

static enum state_status sq_relink_set(void *impl, const char *account)
{
    return state_sqlite_write(impl,
                              "UPDATE accounts SET relink = 1"
                              " WHERE account = ?1",
                              "relink_set", account, NULL, 0, NULL);
}

static enum state_status sq_cursor_get(void *impl, const char *account,
                                       char **cursor)
{
    return sq_read_text(impl, "SELECT cursor FROM accounts WHERE account = ?1",
                        account, cursor);
}

/* A counter never written reads 0. */
static enum state_status sq_counter_get(void *impl, const char *name,
                                        int64_t *value)
{
    struct sq *q = impl;
    sqlite3_stmt *s;
    enum state_status result;

    pthread_mutex_lock(&q->mu);
    result = sq_row_by_key(q, "SELECT value FROM counters WHERE name = ?1",
                           name, "counter read", &s);
    if (result == STATE_OK)
        *value = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    pthread_mutex_unlock(&q->mu);
    return result == STATE_NONE ? STATE_OK : result;
}

static enum state_status sq_failure_set(void *impl, const char *account,
                                        const char *what, int64_t *streak)
{
    struct sq *q = impl;
    sqlite3_stmt *s;
    enum state_status result = STATE_ERR;

    pthread_mutex_lock(&q->mu);
    s = db_prepare(q->db,
                   "INSERT INTO accounts(account, failure, fail_streak)"
                   " VALUES(?1, ?2, ?2 IS NOT NULL) ON CONFLICT(account)"
                   " DO UPDATE SET failure = excluded.failure,"
                   " fail_streak = CASE WHEN excluded.failure IS NULL"
                   " THEN 0 ELSE fail_streak + 1 END"
                   " RETURNING fail_streak");
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, what);
    if (sqlite3_step(s) == SQLITE_ROW) {
        *streak = sqlite3_column_int64(s, 0);
        result = STATE_OK;
    } else {
        LOG_E("state failure_set failed error=\"%s\"", sqlite3_errmsg(q->db));
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&q->mu);
    return result;
}

static enum state_status sq_failure_get(void *impl, const char *account,
                                        char **what)
{
    return sq_read_text(impl,
                        "SELECT failure FROM accounts WHERE account = ?1",
                        account, what);
}


/* ---- status ---------------------------------------------------------- */

static json_t *sq_status_account(sqlite3_stmt *s)
{
    json_t *a = json_object();
    char when[21];

    json_object_set_new(a, "account",
                        json_string((const char *)sqlite3_column_text(s, 0)));
    json_object_set_new(a, "has_token", json_boolean(sqlite3_column_int(s, 1)));
    json_object_set_new(a, "cursor", json_boolean(sqlite3_column_int(s, 2)));
    json_object_set_new(a, "pending", json_boolean(sqlite3_column_int(s, 3)));
    json_object_set_new(a, "leased", json_boolean(sqlite3_column_int(s, 4)));
    if (sqlite3_column_type(s, 5) == SQLITE_NULL) {
        json_object_set_new(a, "last_sync", json_null());
    } else {
        time_iso8601(sqlite3_column_int64(s, 5), when);
        json_object_set_new(a, "last_sync", json_string(when));
    }
    if (sqlite3_column_type(s, 6) == SQLITE_NULL)
        json_object_set_new(a, "failure", json_null());
    else
        json_object_set_new(
            a, "failure", json_string((const char *)sqlite3_column_text(s, 6)));
    json_object_set_new(a, "failures_in_row",
                        json_integer(sqlite3_column_int64(s, 7)));
    json_object_set_new(a, "needs_relink",
                        json_boolean(sqlite3_column_int(s, 8)));
    return a;
}

static int sq_status_accounts(struct sq *q, json_t *out)
{
    sqlite3_stmt *s;
    int rc;

    s = db_prepare(
        q->db, "SELECT u.account, a.token IS NOT NULL, a.cursor IS NOT NULL,"
               " p.account IS NOT NULL,"
               " l.owner IS NOT NULL AND l.expires_ms > ?1,"
               " a.last_sync_s, a.failure, COALESCE(a.fail_streak, 0),"
               " COALESCE(a.relink, 0)"
               " FROM (SELECT account FROM accounts UNION"
               "       SELECT account FROM pending UNION"
               "       SELECT account FROM leases) u"
               " LEFT JOIN accounts a ON a.account = u.account"
               " LEFT JOIN pending p ON p.account = u.account"
               " LEFT JOIN leases l ON l.account = u.account"
               " ORDER BY u.account");
    sqlite3_bind_int64(s, 1, state_now_ms());
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        json_array_append_new(out, sq_status_account(s));
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int sq_status_counters(struct sq *q, json_t *out)
{
    sqlite3_stmt *s;
    int rc;

    for (size_t i = 0; i < state_counter_count; i++)
        json_object_set_new(out, state_counter_names[i], json_integer(0));
    s = db_prepare(q->db, "SELECT name, value FROM counters ORDER BY name");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        json_object_set_new(out, (const char *)sqlite3_column_text(s, 0),
                            json_integer(sqlite3_column_int64(s, 1)));
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

static enum state_status sq_status_json(void *impl, char **json)
{
    struct sq *q = impl;
    json_t *root = json_object();
    json_t *accounts = json_array();
    size_t i, pending = 0;
    json_t *a;
    json_t *counters = json_object();
    enum state_status result = STATE_ERR;

    json_object_set_new(root, "accounts", accounts);
    json_object_set_new(root, "counters", counters);

    /* One read transaction: accounts and counters from one snapshot. */
    pthread_mutex_lock(&q->mu);
    if (db_exec(q->db, "BEGIN") < 0)
        goto out;
    if (sq_status_accounts(q, accounts) < 0 ||
        sq_status_counters(q, counters) < 0) {
        LOG_E("state status failed error=\"%s\"", sqlite3_errmsg(q->db));
        goto out;
    }
    json_array_foreach(accounts, i, a)
    {
        if (json_is_true(json_object_get(a, "pending")))
            pending++;
    }
    json_object_set_new(root, "pending", json_integer((json_int_t)pending));
    *json = json_dumps(root, JSON_INDENT(2));
    if (*json != NULL)
        result = STATE_OK;

out:
    db_rollback(q->db);
    pthread_mutex_unlock(&q->mu);
    json_decref(root);
    return result;
}

/* ---- open and close -------------------------------------------------- */

/* True when accounts already has the column (called inside a
 * transaction). */
static bool sq_has_column(sqlite3 *db, const char *name)
{
    sqlite3_stmt *s = db_prepare(db, "SELECT 1 FROM pragma_table_info("
                                     "'accounts') WHERE name = ?1");
    bool found;

    db_bind_text(s, 1, name);
    found = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    return found;
}

/* Adds the columns an older app.db lacks.  BEGIN IMMEDIATE keeps two
 * processes opening the same old file from adding a column twice. */
static int sq_migrate(sqlite3 *db)
{
    if (db_begin(db) < 0)
        return -1;
    for (size_t i = 0; i < ARRAY_LEN(sq_account_columns); i++) {
        char *sql;
        int rc;

        if (sq_has_column(db, sq_account_columns[i].name))
            continue;
        sql = xasprintf("ALTER TABLE accounts ADD COLUMN %s",
                        sq_account_columns[i].decl);
        rc = db_exec(db, sql);
        free(sql);
        if (rc < 0) {
            db_rollback(db);
            return -1;
        }
        LOG_I("state migrated column=%s", sq_account_columns[i].name);
    }
    return db_commit(db);
}

static void sq_close(void *impl)
{
    struct sq *q = impl;

    state_sqlite_gc_stop(&q->gc);
    sq_reader_close(&q->reader);
    state_sqlite_cache_close(&q->cache);
    db_close(q->db);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

static const struct state_ops sq_ops = {
    .name = "sqlite",
    .close = sq_close,
    .token_set = sq_token_set,
    .token_get = sq_token_get,
    .relink_set = sq_relink_set,
    .account_known = sq_account_known,
    .handled_check = state_sqlite_handled_check,
    .handled_put = state_sqlite_handled_put,
    .mark_pending = state_sqlite_mark_pending,
    .mark_pending_async = state_sqlite_mark_pending_async,
    .mark_covered = sq_mark_covered,
    .claim = state_sqlite_claim,
    .renew = state_sqlite_renew,
    .release = state_sqlite_release,
    .cursor_get = sq_cursor_get,
    .cursor_set = state_sqlite_cursor_set,
    .counter_add = state_sqlite_counter_add,
    .counter_get = sq_counter_get,
    .failure_set = sq_failure_set,
    .failure_get = sq_failure_get,
    .status_json = sq_status_json,
};

struct state *state_open_sqlite(const char *dir)
{
    struct sq *q;
    char *path;
    sqlite3 *db;

    if (mkdir_p(dir, 0700) < 0) {
        LOG_E("state cannot create data dir=%s", dir);
        return NULL;
    }
    path = xasprintf("%s/app.db", dir);
    db = db_open(path, sq_schema);
    if (db == NULL || sq_migrate(db) < 0)
        goto fail;

    q = xcalloc(1, sizeof *q);
    q->db = db;
    if (sq_reader_open(&q->reader, path) < 0) {
        sq_reader_close(&q->reader);
        free(q);
        goto fail;
    }
    if (state_sqlite_cache_open(&q->cache, dir, db) < 0) {
        state_sqlite_cache_close(&q->cache);
        sq_reader_close(&q->reader);
        free(q);
        goto fail;
    }
    pthread_mutex_init(&q->mu, NULL);
    if (state_sqlite_gc_start(&q->gc, q->db, &q->mu, &q->cache) < 0) {
        pthread_mutex_destroy(&q->mu);
        state_sqlite_cache_close(&q->cache);
        sq_reader_close(&q->reader);
        free(q);
        goto fail;
    }
    free(path);
    return state_new(&sq_ops, q);

fail:
    db_close(db);
    free(path);
    return NULL;
}
