/*
 * store: opening the cloud's database, entry rows and blob files.
 */
#include "cloud/store.h"

#include "cloud/notifier.h"
#include "cloud/schema.h"
#include "common/db.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The file API's own tables.  parent_lower makes non-recursive listings
 * an index lookup; the journal keeps a JSON snapshot of each change so
 * that list_folder/continue can answer without joining entries. */
#define STORE_SCHEMA_FILES                                                  \
    "CREATE TABLE IF NOT EXISTS entries ("                                  \
    " id INTEGER PRIMARY KEY,"                                              \
    " account INTEGER NOT NULL REFERENCES accounts(id),"                    \
    " path_lower TEXT NOT NULL,"                                            \
    " parent_lower TEXT NOT NULL,"                                          \
    " path_display TEXT NOT NULL,"                                          \
    " tag TEXT NOT NULL," /* file | folder | deleted */                     \
    " file_id TEXT,"                                                        \
    " rev TEXT,"                                                            \
    " content_hash TEXT,"                                                   \
    " size INTEGER NOT NULL DEFAULT 0,"                                     \
    " client_modified INTEGER NOT NULL DEFAULT 0,"                          \
    " server_modified INTEGER NOT NULL DEFAULT 0,"                          \
    " UNIQUE(account, path_lower));"                                        \
    "CREATE INDEX IF NOT EXISTS entries_parent"                             \
    " ON entries(account, parent_lower);"                                   \
    "CREATE INDEX IF NOT EXISTS entries_file_id ON entries(file_id);"       \
    "CREATE INDEX IF NOT EXISTS entries_hash ON entries(content_hash);"     \
    "CREATE TABLE IF NOT EXISTS journal ("                                  \
    " seq INTEGER PRIMARY KEY,"                                             \
    " account INTEGER NOT NULL REFERENCES accounts(id),"                    \
    " path_lower TEXT NOT NULL,"                                            \
    " parent_lower TEXT NOT NULL,"                                          \
    " path_display TEXT NOT NULL,"                                          \
    " tag TEXT NOT NULL,"                                                   \
    " metadata TEXT NOT NULL,"                                              \
    " created_at INTEGER NOT NULL);"                                        \
    "CREATE INDEX IF NOT EXISTS journal_account ON journal(account, seq);"\
    "CREATE INDEX IF NOT EXISTS journal_age ON journal(created_at);"       \
    /* Highest seq compacted away per account: older cursors reset. */     \
    "CREATE TABLE IF NOT EXISTS journal_floor ("                            \
    " account INTEGER PRIMARY KEY,"                                         \
    " seq INTEGER NOT NULL);"                                               \
    /* Every stored version of every file, for rev: and list_revisions. */ \
    "CREATE TABLE IF NOT EXISTS revisions ("                                \
    " account INTEGER NOT NULL REFERENCES accounts(id),"                    \
    " rev TEXT NOT NULL,"                                                   \
    " file_id TEXT NOT NULL,"                                               \
    " path_lower TEXT NOT NULL,"                                            \
    " path_display TEXT NOT NULL,"                                          \
    " content_hash TEXT NOT NULL,"                                          \
    " size INTEGER NOT NULL,"                                               \
    " client_modified INTEGER NOT NULL,"                                    \
    " server_modified INTEGER NOT NULL,"                                    \
    " PRIMARY KEY(account, rev));"                                          \
    "CREATE INDEX IF NOT EXISTS revisions_path"                             \
    " ON revisions(account, path_lower);"                                   \
    "CREATE INDEX IF NOT EXISTS revisions_id"                               \
    " ON revisions(account, file_id);"                                      \
    "CREATE INDEX IF NOT EXISTS revisions_hash ON revisions(content_hash);"\
    /* Open upload sessions; their bytes are in blobs/sessions/<id>. */     \
    "CREATE TABLE IF NOT EXISTS upload_sessions ("                          \
    " id TEXT PRIMARY KEY,"                                                 \
    " account INTEGER NOT NULL REFERENCES accounts(id),"                    \
    " size INTEGER NOT NULL,"                                               \
    " closed INTEGER NOT NULL DEFAULT 0,"                                   \
    " created_at INTEGER NOT NULL);"

static int store_dirs(struct store *s)
{
    char *tmp = xasprintf("%s/tmp", s->blob_dir);
    char *sessions = xasprintf("%s/sessions", s->blob_dir);
    int rc = 0;

    if (mkdir_p(s->dir, 0700) < 0 || mkdir_p(tmp, 0700) < 0 ||
        mkdir_p(sessions, 0700) < 0) {
        LOG_E("store mkdir failed dir=%s errno=%d", s->dir, errno);
        rc = -1;
    }
    free(tmp);
    free(sessions);
    return rc;
}

struct store *store_open(const char *dir)
{
    struct store *s = xcalloc(1, sizeof *s);
    char *key_path = xasprintf("%s/cursor.key", dir);

    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->changed, NULL);
    s->longpoll_min_s = 30;
    s->relocate_max = STORE_RELOCATE_MAX;
    s->session_max_bytes = STORE_SESSION_MAX_BYTES;
    s->dir = xstrdup(dir);
    s->db_path = xasprintf("%s/cloud.db", dir);
    s->blob_dir = xasprintf("%s/blobs", dir);
    if (store_dirs(s) < 0)
        goto fail;
    s->db = db_open(s->db_path, CLOUD_SCHEMA_SHARED STORE_SCHEMA_FILES);
    if (s->db == NULL)
        goto fail;
    if (db_exec(s->db, notifier_schema_sql) < 0)
        goto fail;
    if (cursor_key_load(key_path, s->cursor_key) < 0)
        goto fail;
    free(key_path);
    return s;
fail:
    free(key_path);
    store_close(s);
    return NULL;
}

void store_close(struct store *s)
{
    if (s == NULL)
        return;
    if (s->db != NULL)
        db_close(s->db);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->changed);
    free(s->dir);
    free(s->db_path);
    free(s->blob_dir);
    free(s);
}

void store_lock(struct store *s)
{
    pthread_mutex_lock(&s->lock);
}

void store_unlock(struct store *s)
{
    bool wake = s->wake_notifier;

    s->wake_notifier = false;
    pthread_mutex_unlock(&s->lock);
    if (wake && s->notifier != NULL)
        notifier_wake(s->notifier);
}

void store_entry_read(sqlite3_stmt *st, struct entry *out)
{
    const char *tag = (const char *)sqlite3_column_text(st, 1);

    memset(out, 0, sizeof *out);
    out->rowid = sqlite3_column_int64(st, 0);
    snprintf(out->tag, sizeof out->tag, "%s", tag ? tag : "");
    out->path_lower = db_column_dup(st, 2);
    out->path_display = db_column_dup(st, 3);
    out->file_id = db_column_dup(st, 4);
    out->rev = db_column_dup(st, 5);
    out->content_hash = db_column_dup(st, 6);
    out->size = sqlite3_column_int64(st, 7);
    out->client_modified = sqlite3_column_int64(st, 8);
    out->server_modified = sqlite3_column_int64(st, 9);
}

int64_t store_link_put(struct store *s, int64_t app, int64_t account,
                       const char *scopes)
{
    sqlite3_stmt *st = db_prepare(
        s->db, "INSERT INTO links (app_id, account_id, scopes, created_at)"
               " VALUES (?1, ?2, ?3, ?4) ON CONFLICT(app_id, account_id)"
               " DO UPDATE SET scopes = ?3 RETURNING id");
    int64_t id = 0;

    sqlite3_bind_int64(st, 1, app);
    sqlite3_bind_int64(st, 2, account);
    db_bind_text(st, 3, scopes);
    sqlite3_bind_int64(st, 4, time_now_s());
    if (sqlite3_step(st) == SQLITE_ROW)
        id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return id;
}

json_t *store_column_json(sqlite3_stmt *st, int col)
{
    switch (sqlite3_column_type(st, col)) {
    case SQLITE_NULL:
        return json_null();
    case SQLITE_INTEGER:
        return json_integer(sqlite3_column_int64(st, col));
    default:
        return json_string((const char *)sqlite3_column_text(st, col));
    }
}

int store_entry_query(struct store *s, const char *what, const char *sql,
                      int64_t account, const char *key, struct entry *out)
{
    sqlite3_stmt *st = db_prepare(s->db, sql);
    int rc, step;

    memset(out, 0, sizeof *out);
    sqlite3_bind_int64(st, 1, account);
    db_bind_text(st, 2, key);
    step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        store_entry_read(st, out);
        rc = 0;
    } else if (step == SQLITE_DONE) {
        rc = 1;
    } else {
        LOG_E("%s lookup failed err=%s", what, sqlite3_errmsg(s->db));
        rc = -1;
    }
    sqlite3_finalize(st);
    return rc;
}

int store_entry_get(struct store *s, int64_t account, const char *lower,
                    struct entry *out)
{
    return store_entry_query(s, "entry",
                             "SELECT " ENTRY_COLUMNS " FROM entries"
                             " WHERE account = ?1 AND path_lower = ?2",
                             account, lower, out);
}

int store_entry_by_id(struct store *s, int64_t account, const char *id,
                      struct entry *out)
{
    return store_entry_query(s, "entry",
                             "SELECT " ENTRY_COLUMNS " FROM entries"
                             " WHERE account = ?1 AND file_id = ?2"
                             " AND tag != 'deleted'",
                             account, id, out);
}

void store_entry_clear(struct entry *e)
{
    free(e->path_lower);
    free(e->path_display);
    free(e->file_id);
    free(e->rev);
    free(e->content_hash);
    memset(e, 0, sizeof *e);
}

static const char *entry_name(const char *display)
{
    const char *slash = strrchr(display, '/');

    return slash ? slash + 1 : display;
}

json_t *store_entry_json(const struct entry *e)
{
    json_t *o = json_object();
    char when[21];

    json_object_set_new(o, ".tag", json_string(e->tag));
    json_object_set_new(o, "name",
                        json_string(entry_name(e->path_display)));
    json_object_set_new(o, "path_lower", json_string(e->path_lower));
    json_object_set_new(o, "path_display", json_string(e->path_display));
    if (strcmp(e->tag, "deleted") == 0)
        return o;

    json_object_set_new(o, "id", json_string(e->file_id));
    if (strcmp(e->tag, "file") != 0)
        return o;

    time_iso8601(e->client_modified, when);
    json_object_set_new(o, "client_modified", json_string(when));
    time_iso8601(e->server_modified, when);
    json_object_set_new(o, "server_modified", json_string(when));
    json_object_set_new(o, "rev", json_string(e->rev));
    json_object_set_new(o, "size", json_integer(e->size));
    json_object_set_new(o, "is_downloadable", json_true());
    json_object_set_new(o, "content_hash", json_string(e->content_hash));
    return o;
}

void store_changed(struct store *s)
{
    s->wake_notifier = true;
    pthread_cond_broadcast(&s->changed);
}

void store_stop_waiters(struct store *s)
{
    store_lock(s);
    s->stopping = true;
    pthread_cond_broadcast(&s->changed);
    store_unlock(s);
}

int64_t store_journal_head(struct store *s)
{
    sqlite3_stmt *st = db_prepare(
        s->db, "SELECT MAX((SELECT COALESCE(MAX(seq), 0) FROM journal),"
               " (SELECT COALESCE(MAX(seq), 0) FROM journal_floor))");
    int64_t head = 0;

    if (sqlite3_step(st) == SQLITE_ROW)
        head = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return head;
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

char *store_blob_stage(struct store *s, const void *data, size_t len)
{
    char name[25];
    char *path;
    int fd, rc;

    rand_urlsafe(name, 24);
    path = xasprintf("%s/tmp/%s", s->blob_dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        LOG_E("blob create failed path=%s errno=%d", path, errno);
        free(path);
        return NULL;
    }
    rc = write_all(fd, data, len);
    if (rc == 0)
        rc = fsync(fd);
    if (close(fd) < 0)
        rc = -1;
    if (rc < 0) {
        LOG_E("blob write failed path=%s errno=%d", path, errno);
        unlink(path);
        free(path);
        return NULL;
    }
    return path;
}

char *store_blob_path(struct store *s, const char *content_hash)
{
    return xasprintf("%s/%.2s/%s", s->blob_dir, content_hash, content_hash);
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int store_blob_adopt(struct store *s, const char *tmp_path,
                     const char *content_hash)
{
    char *final = store_blob_path(s, content_hash);
    char *dir = xasprintf("%s/%.2s", s->blob_dir, content_hash);
    struct stat sb;
    int rc = -1;

    if (stat(final, &sb) == 0) {
        unlink(tmp_path);
        rc = 0;
        goto out;
    }
    if (mkdir_p(dir, 0700) < 0 || rename(tmp_path, final) < 0) {
        LOG_E("blob rename failed path=%s errno=%d", final, errno);
        unlink(tmp_path);
        goto out;
    }
    fsync_dir(dir);
    rc = 0;
out:
    free(final);
    free(dir);
    return rc;
}

void store_blob_release(struct store *s, const char *content_hash)
{
    sqlite3_stmt *st = db_prepare(
        s->db, "SELECT 1 FROM entries WHERE content_hash = ?1"
               " AND tag = 'file' UNION ALL SELECT 1 FROM revisions"
               " WHERE content_hash = ?1 LIMIT 1");
    char *path;

    db_bind_text(st, 1, content_hash);
    if (sqlite3_step(st) == SQLITE_DONE) {
        path = store_blob_path(s, content_hash);
        if (unlink(path) == 0)
            LOG_D("blob removed hash=%.12s", content_hash);
        free(path);
    }
    sqlite3_finalize(st);
}
