/*
 * store: the cloud's database and file contents.
 *
 * One SQLite connection (cloud.db in the data directory) holds the
 * shared tables of schema.h, the file API's entries and journal, and the
 * notifier's tables.  The connection is used by one thread at a time:
 * callers take store_lock around every use, and writers keep it for the
 * whole transaction, so there is one writer at a time.
 *
 * Entries are the current state of each account's namespace, one row per
 * path (compared by its lower form).  A deleted path keeps a row with tag
 * "deleted" (a tombstone) so that listings with include_deleted see it.
 *
 * File contents live outside the database in blobs/<2 hex>/<content_hash>
 * (content-addressed, so identical files share one blob).  A blob is
 * written to blobs/tmp, fsynced, and renamed into place before the commit
 * that refers to it.
 */
#ifndef DBX_CLOUD_STORE_H
#define DBX_CLOUD_STORE_H

/* Defaults of the real service's limits, which tests may lower. */
#define STORE_RELOCATE_MAX 10000 /* entries a move or copy may carry */
#define STORE_SESSION_MAX_BYTES (4ll * 1024 * 1024 * 1024) /* 4 GiB */

#include "cloud/cursor.h"

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

struct notifier;

struct store {
    sqlite3 *db;
    pthread_mutex_t lock;  /* one user of db at a time */
    char *dir;             /* the data directory */
    char *db_path;         /* dir/cloud.db */
    char *blob_dir;        /* dir/blobs */
    struct notifier *notifier; /* set once started; may be NULL */
    unsigned char cursor_key[CURSOR_KEY_LEN];
    pthread_cond_t changed;    /* broadcast after each committed change */
    bool wake_notifier;        /* a change since the lock was taken: the
                                  notifier is woken once it is released */
    int64_t journal_max_age_s; /* compact older journal rows; 0: never */
    int64_t compacted_at;      /* last compaction (monotonic ms) */
    int64_t longpoll_min_s;    /* smallest longpoll timeout accepted */
    int64_t longpoll_backoff_s; /* asked of clients by every longpoll
                                   answer; 0: never */
    int64_t relocate_max;      /* entries one move or copy may carry */
    int64_t session_max_bytes; /* largest upload session */
    bool stopping;             /* set once: waiters return at once */
};

/* One row of entries.  Strings owned; release with store_entry_clear. */
struct entry {
    int64_t rowid;
    char tag[8];          /* "file", "folder" or "deleted" */
    char *path_lower;
    char *path_display;
    char *file_id;        /* "id:..."; NULL for a tombstone */
    char *rev;            /* files only */
    char *content_hash;   /* files only */
    int64_t size;
    int64_t client_modified;
    int64_t server_modified;
};

/* Opens (creating) the database, blob directories and cursor key in
 * dir.  Returns NULL and logs the reason on failure. */
struct store *store_open(const char *dir);
void store_close(struct store *s);

void store_lock(struct store *s);
void store_unlock(struct store *s);

/* Entry lookups (lock held).  Return 0 when found, 1 when there is no
 * row (a tombstone counts as a row), -1 on error. */
int store_entry_get(struct store *s, int64_t account, const char *lower,
                    struct entry *out);
int store_entry_by_id(struct store *s, int64_t account, const char *id,
                      struct entry *out);
void store_entry_clear(struct entry *e);

/* Runs sql, whose columns are ENTRY_COLUMNS (or read alike) and whose
 * parameters are account and key, for one row (lock held).  Returns
 * as store_entry_get; what names the table in the log line on error. */
int store_entry_query(struct store *s, const char *what, const char *sql,
                      int64_t account, const char *key, struct entry *out);

/* Reads one entry from a statement whose columns are ENTRY_COLUMNS. */
#define ENTRY_COLUMNS                                                       \
    "id, tag, path_lower, path_display, file_id, rev, content_hash, size, " \
    "client_modified, server_modified"
void store_entry_read(sqlite3_stmt *st, struct entry *out);

/* The Dropbox metadata object of e (new reference). */
json_t *store_entry_json(const struct entry *e);

/* Creates the link of app and account or updates its scopes (lock
 * held).  Returns the link's rowid, or 0 when it was not stored. */
int64_t store_link_put(struct store *s, int64_t app, int64_t account,
                       const char *scopes);

/* Column col of the current row as JSON: null, an integer or a string
 * (new reference). */
json_t *store_column_json(sqlite3_stmt *st, int col);

/* The account-independent journal head: the highest seq ever given
 * (compacted rows included), 0 if none. */
int64_t store_journal_head(struct store *s);

/* Lock held, after a commit that changed entries: wakes the longpolls
 * (they wait on s->changed with the store lock) and, once store_unlock
 * has released the lock, the notifier (the commit may have marked
 * webhooks pending). */
void store_changed(struct store *s);

/* Takes the lock: sets s->stopping and wakes every waiter, so that
 * longpolls answer before the server joins its threads. */
void store_stop_waiters(struct store *s);

/* Blob files.  store_blob_stage writes data to a fresh temporary file
 * (fsynced) without the lock and returns its path (caller frees), or NULL.
 * store_blob_adopt (lock held) renames it to its content-addressed name,
 * or removes it when that blob exists already.  Returns 0 or -1. */
char *store_blob_stage(struct store *s, const void *data, size_t len);
int store_blob_adopt(struct store *s, const char *tmp_path,
                     const char *content_hash);
/* Path of the blob of content_hash (caller frees). */
char *store_blob_path(struct store *s, const char *content_hash);
/* Lock held, after a commit: removes the blob when no live entry and no
 * revision refers to it any more (so old revisions stay readable). */
void store_blob_release(struct store *s, const char *content_hash);

#endif
