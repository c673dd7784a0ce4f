/*
 * fsops: uploads and deletions, each one transaction with its journal
 * rows and its notifier mark.
 */
#include "cloud/fsops.h"
#include "cloud/fsops_int.h"

#include "cloud/journal.h"
#include "cloud/notifier.h"
#include "common/db.h"
#include "common/log.h"
#include "common/pathx.h"
#include "common/sig.h"
#include "common/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FILE_ID_CHARS 22

/* Writes e as the row of its path (insert or replace in place). */
/* Binds e's content hash, size and two times to ?first..?first+3. */
static void fsop_bind_content(sqlite3_stmt *st, int first,
                              const struct entry *e)
{
    db_bind_text(st, first, e->content_hash);
    sqlite3_bind_int64(st, first + 1, e->size);
    sqlite3_bind_int64(st, first + 2, e->client_modified);
    sqlite3_bind_int64(st, first + 3, e->server_modified);
}

/* Runs the bound write st and finalizes it; what names the row in the
 * log line.  Returns 0 or -1. */
static int fsop_write(struct store *s, sqlite3_stmt *st, const char *what)
{
    int rc = 0;

    if (sqlite3_step(st) != SQLITE_DONE) {
        LOG_E("%s write failed err=%s", what, sqlite3_errmsg(s->db));
        rc = -1;
    }
    sqlite3_finalize(st);
    return rc;
}

int fsop_entry_put(struct store *s, int64_t account, const struct entry *e)
{
    sqlite3_stmt *st = db_prepare(
        s->db,
        "INSERT INTO entries (account, path_lower, parent_lower,"
        " path_display, tag, file_id, rev, content_hash, size,"
        " client_modified, server_modified)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        " ON CONFLICT(account, path_lower) DO UPDATE SET"
        " path_display = ?4, tag = ?5, file_id = ?6, rev = ?7,"
        " content_hash = ?8, size = ?9, client_modified = ?10,"
        " server_modified = ?11");
    char *parent = pathx_parent(e->path_lower);
    int rc;

    sqlite3_bind_int64(st, 1, account);
    db_bind_text(st, 2, e->path_lower);
    db_bind_text(st, 3, parent);
    db_bind_text(st, 4, e->path_display);
    db_bind_text(st, 5, e->tag);
    db_bind_text(st, 6, e->file_id);
    db_bind_text(st, 7, e->rev);
    fsop_bind_content(st, 8, e);
    rc = fsop_write(s, st, "entry");
    free(parent);
    return rc;
}

char *fsop_new_file_id(void)
{
    char r[FILE_ID_CHARS + 1];

    rand_urlsafe(r, FILE_ID_CHARS);
    return xasprintf("id:%s", r);
}

char *fsop_new_rev(int64_t seq)
{
    unsigned char rnd[2];

    rand_bytes(rnd, sizeof rnd);
    return xasprintf("%09" PRIx64 "%02x%02x", (uint64_t)seq, rnd[0],
                     rnd[1]);
}

int fsop_revision_add(struct store *s, int64_t account,
                      const struct entry *e)
{
    sqlite3_stmt *st = db_prepare(
        s->db, "INSERT INTO revisions (account, rev, file_id, path_lower,"
               " path_display, content_hash, size, client_modified,"
               " server_modified) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,"
               " ?9)");

    sqlite3_bind_int64(st, 1, account);
    db_bind_text(st, 2, e->rev);
    db_bind_text(st, 3, e->file_id);
    db_bind_text(st, 4, e->path_lower);
    db_bind_text(st, 5, e->path_display);
    fsop_bind_content(st, 6, e);
    return fsop_write(s, st, "revision");
}

/* "name (n).ext" (files) or "name (n)" (folders) beside display. */
static char *autorename_candidate(const char *display, bool is_file,
                                  int n)
{
    const char *name = pathx_name(display);
    const char *dot = is_file ? strrchr(name, '.') : NULL;
    size_t base_len;

    if (dot == NULL || dot == name)
        dot = name + strlen(name);
    base_len = (size_t)(dot - display);
    return xasprintf("%.*s (%d)%s", (int)base_len, display, n, dot);
}

int fsop_autorename(struct store *s, int64_t account, const char *display,
                    bool is_file, char **out_display, char **out_lower)
{
    for (int n = 1; n <= FSOP_AUTORENAME_MAX; n++) {
        char *cand = autorename_candidate(display, is_file, n);
        char *d = NULL, *l = NULL;
        struct entry e;
        int found = -1;

        if (pathx_normalize(cand, false, &d, &l) == PATHX_OK)
            found = store_entry_get(s, account, l, &e);
        free(cand);
        if (found == 0 && strcmp(e.tag, "deleted") == 0)
            found = 1;
        if (found == 0)
            store_entry_clear(&e);
        if (found == 1) {
            *out_display = d;
            *out_lower = l;
            return 0;
        }
        free(d);
        free(l);
        if (found < 0)
            return -1;
    }
    return -1;
}

void fsop_ancestors_free(struct fsop_ancestors *a)
{
    for (int i = 0; i < a->count; i++) {
        free(a->display[i]);
        free(a->lower[i]);
    }
    a->count = 0;
}

/* Walks up from the parent of lower until an existing folder; collects
 * the missing or deleted ones.  A file on the way is a conflict. */
enum fsop_error fsop_ancestors_check(struct store *s, int64_t account,
                                       const char *display,
                                       const char *lower,
                                       struct fsop_ancestors *a)
{
    char *d = pathx_parent(display), *l = pathx_parent(lower);
    enum fsop_error err = FSOP_OK;

    a->count = 0;
    while (l[0] != '\0') {
        struct entry e;
        int found = store_entry_get(s, account, l, &e);
        bool folder = found == 0 && strcmp(e.tag, "folder") == 0;
        bool file = found == 0 && strcmp(e.tag, "file") == 0;

        store_entry_clear(&e);
        if (found < 0 || a->count == FSOP_DEPTH_MAX) {
            err = found < 0 ? FSOP_INTERNAL : FSOP_CONFLICT_FOLDER;
            break;
        }
        if (folder)
            break;
        if (file) {
            err = FSOP_FILE_ANCESTOR;
            break;
        }
        a->display[a->count] = d;
        a->lower[a->count] = l;
        a->count++;
        d = pathx_parent(d);
        l = pathx_parent(l);
    }
    free(d);
    free(l);
    return err;
}

/* Creates the collected folders top-down, one journal row each. */
int fsop_ancestors_create(struct store *s, int64_t account,
                            const struct fsop_ancestors *a)
{
    for (int i = a->count - 1; i >= 0; i--) {
        struct entry e = {.tag = "folder"};
        int rc;

        e.path_lower = a->lower[i];
        e.path_display = a->display[i];
        e.file_id = fsop_new_file_id();
        rc = fsop_entry_put(s, account, &e);
        if (rc == 0)
            rc = journal_append(s, journal_next_seq(s), account, &e);
        free(e.file_id);
        if (rc < 0)
            return -1;
        LOG_I("folder created account=%lld path=%s", (long long)account,
              a->display[i]);
    }
    return 0;
}

/* Decides what an upload does with the current row of its path:
 * FSOP_OK with *same set when the content is already there.  Strict
 * conflict checking refuses an update of a missing file, and identical
 * content where the mode would otherwise conflict. */
static enum fsop_error upload_decide(const struct fsop_upload *u,
                                     const struct entry *cur, int found,
                                     const char *hash, bool *same)
{
    bool rev_ok;

    *same = false;
    if (found != 0 || strcmp(cur->tag, "deleted") == 0)
        return u->strict && u->mode == FSOP_UPDATE ? FSOP_CONFLICT_FILE
                                                   : FSOP_OK;
    if (strcmp(cur->tag, "folder") == 0)
        return FSOP_CONFLICT_FOLDER;
    rev_ok = u->mode == FSOP_OVERWRITE ||
             (u->mode == FSOP_UPDATE && cur->rev && u->update_rev &&
              strcmp(cur->rev, u->update_rev) == 0);
    if (cur->content_hash && strcmp(cur->content_hash, hash) == 0 &&
        (rev_ok || !u->strict)) {
        *same = true;
        return FSOP_OK;
    }
    return rev_ok ? FSOP_OK : FSOP_CONFLICT_FILE;
}

/* Writes the file row, its revision and its journal row; *meta gets
 * its metadata. */
static int upload_write(struct store *s, const struct fsop_upload *u,
                        const struct entry *cur, int found,
                        const char *hash, json_t **meta)
{
    struct entry e = {.tag = "file"};
    int64_t seq = journal_next_seq(s), now = time_now_s();
    int rc;

    e.path_lower = (char *)u->lower;
    e.path_display = (char *)u->display;
    e.file_id = found == 0 && cur->file_id ? xstrdup(cur->file_id)
                                           : fsop_new_file_id();
    e.rev = fsop_new_rev(seq);
    e.content_hash = (char *)hash;
    e.size = (int64_t)u->len;
    e.server_modified = now;
    e.client_modified = u->has_client_modified ? u->client_modified : now;
    rc = fsop_entry_put(s, u->account, &e);
    if (rc == 0)
        rc = fsop_revision_add(s, u->account, &e);
    if (rc == 0)
        rc = journal_append(s, seq, u->account, &e);
    if (rc == 0)
        *meta = store_entry_json(&e);
    free(e.file_id);
    free(e.rev);
    return rc;
}

/* With autorename, moves a conflicting upload to "name (n).ext": u
 * then points at the new path (owned by *d and *l), and *cur and *found
 * describe it. */
static enum fsop_error upload_rename(struct store *s, struct fsop_upload *u,
                                     struct entry *cur, int *found,
                                     char **d, char **l)
{
    if (fsop_autorename(s, u->account, u->display, true, d, l) < 0)
        return FSOP_INTERNAL;
    u->display = *d;
    u->lower = *l;
    store_entry_clear(cur);
    *found = store_entry_get(s, u->account, u->lower, cur);
    return *found < 0 ? FSOP_INTERNAL : FSOP_OK;
}

/* The part of an upload that runs under the lock, in a transaction. */
static enum fsop_error upload_locked(struct store *s,
                                     const struct fsop_upload *orig,
                                     const char *hash, const char *tmp,
                                     json_t **meta, bool *changed)
{
    struct fsop_ancestors a = {.count = 0};
    struct fsop_upload u = *orig;
    char *rd = NULL, *rl = NULL;
    struct entry cur;
    enum fsop_error err;
    bool same = false;
    int found;

    *changed = false;
    if (db_begin(s->db) < 0)
        return FSOP_INTERNAL;
    err = fsop_ancestors_check(s, u.account, u.display, u.lower, &a);
    found = store_entry_get(s, u.account, u.lower, &cur);
    if (err == FSOP_OK && found < 0)
        err = FSOP_INTERNAL;
    if (err == FSOP_OK)
        err = upload_decide(&u, &cur, found, hash, &same);
    if ((err == FSOP_CONFLICT_FILE || err == FSOP_CONFLICT_FOLDER) &&
        u.autorename) {
        u.mode = FSOP_ADD;
        err = upload_rename(s, &u, &cur, &found, &rd, &rl);
    }
    if (err != FSOP_OK || same) {
        if (same)
            *meta = store_entry_json(&cur);
        goto out;
    }

    if (fsop_ancestors_create(s, u.account, &a) < 0 ||
        upload_write(s, &u, &cur, found, hash, meta) < 0 ||
        notifier_mark_pending_tx(s->db, u.account) < 0 ||
        store_blob_adopt(s, tmp, hash) < 0 || db_commit(s->db) < 0) {
        err = FSOP_INTERNAL;
        goto out;
    }
    *changed = true;
    store_changed(s);
    LOG_I("file stored account=%lld path=%s size=%zu",
          (long long)u.account, u.display, u.len);
out:
    if (!*changed)
        db_rollback(s->db);
    if (err != FSOP_OK && *meta != NULL) {
        json_decref(*meta);
        *meta = NULL;
    }
    store_entry_clear(&cur);
    fsop_ancestors_free(&a);
    free(rd);
    free(rl);
    return err;
}

/* Stages the body as a blob file unless the caller staged it. */
static char *upload_stage(struct store *s, const struct fsop_upload *u,
                          char hash[SIG_HEX_LEN + 1])
{
    if (u->staged != NULL) {
        snprintf(hash, SIG_HEX_LEN + 1, "%s", u->staged_hash);
        return xstrdup(u->staged);
    }
    content_hash_buf(u->data, u->len, hash);
    return store_blob_stage(s, u->data, u->len);
}

enum fsop_error fsop_upload(struct store *s, const struct fsop_upload *u,
                            json_t **meta)
{
    char hash[SIG_HEX_LEN + 1];
    char *tmp;
    enum fsop_error err;
    bool changed;

    *meta = NULL;
    tmp = upload_stage(s, u, hash);
    if (tmp == NULL)
        return FSOP_INTERNAL;

    store_lock(s);
    err = upload_locked(s, u, hash, tmp, meta, &changed);
    store_unlock(s);
    if (!changed)
        unlink(tmp);
    free(tmp);
    return err;
}

/* The live files at or below lower, for removing their blobs later. */
static json_t *delete_hashes(struct store *s, int64_t account,
                             const char *lower)
{
    sqlite3_stmt *st = db_prepare(
        s->db, "SELECT DISTINCT content_hash FROM entries"
               " WHERE account = ?1 AND tag = 'file' AND (path_lower = ?2"
               " OR (path_lower > ?2 || '/' AND path_lower < ?2 || '0'))");
    json_t *hashes = json_array();

    sqlite3_bind_int64(st, 1, account);
    db_bind_text(st, 2, lower);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *h = (const char *)sqlite3_column_text(st, 0);

        if (h != NULL)
            json_array_append_new(hashes, json_string(h));
    }
    sqlite3_finalize(st);
    return hashes;
}

/* Turns the path and everything below it into tombstones. */
static int delete_rows(struct store *s, int64_t account, const char *lower)
{
    sqlite3_stmt *st = db_prepare(
        s->db, "UPDATE entries SET tag = 'deleted', file_id = NULL,"
               " rev = NULL, content_hash = NULL, size = 0"
               " WHERE account = ?1 AND tag != 'deleted' AND"
               " (path_lower = ?2"
               " OR (path_lower > ?2 || '/' AND path_lower < ?2 || '0'))");
    int rc = 0;

    sqlite3_bind_int64(st, 1, account);
    db_bind_text(st, 2, lower);
    if (sqlite3_step(st) != SQLITE_DONE) {
        LOG_E("entry delete failed err=%s", sqlite3_errmsg(s->db));
        rc = -1;
    }
    sqlite3_finalize(st);
    return rc;
}

/* One deleted journal row for the path and for each live entry below
 * it, in path order, so that a cursor anywhere sees its own paths go
 * (and a change to a child earlier in the window is superseded). */
static int delete_journal(struct store *s, int64_t account,
                          const char *lower)
{
    sqlite3_stmt *st = db_prepare(
        s->db, "SELECT path_lower, path_display FROM entries"
               " WHERE account = ?1 AND tag != 'deleted' AND"
               " (path_lower = ?2"
               " OR (path_lower > ?2 || '/' AND path_lower < ?2 || '0'))"
               " ORDER BY path_lower");
    int step, rc = 0;

    sqlite3_bind_int64(st, 1, account);
    db_bind_text(st, 2, lower);
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        struct entry gone = {.tag = "deleted"};

        gone.path_lower = (char *)sqlite3_column_text(st, 0);
        gone.path_display = (char *)sqlite3_column_text(st, 1);
        rc = journal_append(s, journal_next_seq(s), account, &gone);
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = -1;
    sqlite3_finalize(st);
    return rc;
}

static enum fsop_error delete_locked(struct store *s, int64_t account,
                                     struct entry *cur,
                                     const char *parent_rev,
                                     json_t **hashes)
{
    if (parent_rev != NULL &&
        (cur->rev == NULL || strcmp(parent_rev, cur->rev) != 0))
        return FSOP_CONFLICT_FILE;
    if (db_begin(s->db) < 0)
        return FSOP_INTERNAL;
    *hashes = delete_hashes(s, account, cur->path_lower);
    if (delete_journal(s, account, cur->path_lower) < 0 ||
        delete_rows(s, account, cur->path_lower) < 0 ||
        notifier_mark_pending_tx(s->db, account) < 0 ||
        db_commit(s->db) < 0) {
        db_rollback(s->db);
        return FSOP_INTERNAL;
    }
    store_changed(s);
    for (size_t i = 0; i < json_array_size(*hashes); i++)
        store_blob_release(s,
                           json_string_value(json_array_get(*hashes, i)));
    return FSOP_OK;
}

enum fsop_error fsop_delete(struct store *s, int64_t account,
                            const char *lower, const char *id,
                            const char *parent_rev, json_t **meta)
{
    struct entry cur;
    json_t *hashes = NULL;
    enum fsop_error err = FSOP_NOT_FOUND;
    int found;

    *meta = NULL;
    store_lock(s);
    found = lower ? store_entry_get(s, account, lower, &cur)
                  : store_entry_by_id(s, account, id, &cur);
    if (found < 0)
        err = FSOP_INTERNAL;
    else if (found == 0 && strcmp(cur.tag, "deleted") != 0)
        err = delete_locked(s, account, &cur, parent_rev, &hashes);
    if (err == FSOP_OK)
        *meta = store_entry_json(&cur);
    store_unlock(s);

    if (err == FSOP_OK)
        LOG_I("deleted account=%lld path=%s", (long long)account,
              cur.path_display);
    if (found == 0)
        store_entry_clear(&cur);
    json_decref(hashes);
    return err;
}
