/*
 * db: SQLite connection setup and the few helpers every store repeats.
 *
 * The pragmas are applied on every open because journal_mode=WAL is the
 * only one SQLite remembers in the file; synchronous, foreign_keys and the
 * busy timeout belong to the connection.
 */
#include "common/db.h"

#include "common/log.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>

/* How long a writer waits for another connection's lock. */
#define DB_BUSY_TIMEOUT_MS 5000

static const char db_pragmas[] = "PRAGMA journal_mode=WAL;"
                                 "PRAGMA synchronous=FULL;"
                                 "PRAGMA foreign_keys=ON;";

sqlite3 *db_open(const char *path, const char *schema_sql)
{
    sqlite3 *db = NULL;
    int rc;

    rc = sqlite3_open_v2(path, &db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                             SQLITE_OPEN_FULLMUTEX,
                         NULL);
    if (rc != SQLITE_OK) {
        LOG_E("db_open failed path=%s error=\"%s\"", path,
              db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(db, DB_BUSY_TIMEOUT_MS);
    if (db_exec(db, db_pragmas) < 0)
        goto fail;
    if (schema_sql != NULL && db_exec(db, schema_sql) < 0)
        goto fail;
    return db;

fail:
    sqlite3_close(db);
    return NULL;
}

void db_close(sqlite3 *db)
{
    if (db == NULL)
        return;
    if (sqlite3_close(db) != SQLITE_OK) {
        /* A statement was not finalized: a bug, but do not lose the
         * handle's memory silently. */
        LOG_W("db_close busy error=\"%s\"", sqlite3_errmsg(db));
        sqlite3_close_v2(db);
    }
}

int db_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        LOG_E("db_exec failed error=\"%s\"", err ? err : sqlite3_errmsg(db));
        sqlite3_free(err);
        return -1;
    }
    return 0;
}

sqlite3_stmt *db_prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        LOG_E("db_prepare failed error=\"%s\" sql=\"%s\"", sqlite3_errmsg(db),
              sql);
        abort();
    }
    return st;
}

int db_begin(sqlite3 *db)
{
    return db_exec(db, "BEGIN IMMEDIATE");
}

int db_commit(sqlite3 *db)
{
    return db_exec(db, "COMMIT");
}

void db_rollback(sqlite3 *db)
{
    /* Without an open transaction (SQLite may have rolled back already
     * after an error) there is nothing to undo. */
    if (sqlite3_get_autocommit(db))
        return;
    db_exec(db, "ROLLBACK");
}

void db_bind_text(sqlite3_stmt *st, int idx, const char *s)
{
    if (s == NULL)
        sqlite3_bind_null(st, idx);
    else
        sqlite3_bind_text(st, idx, s, -1, SQLITE_TRANSIENT);
}

char *db_column_dup(sqlite3_stmt *st, int col)
{
    const unsigned char *t;

    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return NULL;
    t = sqlite3_column_text(st, col);
    return xstrndup((const char *)t, (size_t)sqlite3_column_bytes(st, col));
}
