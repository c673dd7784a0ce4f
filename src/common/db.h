/*
 * db: SQLite helpers shared by the cloud and the app.
 *
 * Every database is opened in WAL mode with synchronous=FULL (a commit is
 * on disk before it returns), foreign keys on, and a busy timeout, and
 * its schema is applied with CREATE ... IF NOT EXISTS statements.
 */
#ifndef DBX_DB_H
#define DBX_DB_H

#include <sqlite3.h>
#include <stdint.h>

/* Opens (creating if needed) the database at path and runs schema_sql.
 * Returns NULL and logs the reason on failure. */
sqlite3 *db_open(const char *path, const char *schema_sql);
void db_close(sqlite3 *db);

/* Runs SQL without results; logs and returns -1 on error. */
int db_exec(sqlite3 *db, const char *sql);

/* Prepares a statement; aborts on a programming error (bad SQL is a bug,
 * not a runtime condition). */
sqlite3_stmt *db_prepare(sqlite3 *db, const char *sql);

int db_begin(sqlite3 *db);    /* BEGIN IMMEDIATE */
int db_commit(sqlite3 *db);
void db_rollback(sqlite3 *db);

/* Binds text (SQLITE_TRANSIENT), or NULL when s is NULL. */
void db_bind_text(sqlite3_stmt *st, int idx, const char *s);
/* Column text duplicated (caller frees), or NULL for SQL NULL. */
char *db_column_dup(sqlite3_stmt *st, int col);

#endif
