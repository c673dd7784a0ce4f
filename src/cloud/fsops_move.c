/*
 * fsops_move: create_folder, move and copy, each one transaction with
 * its journal rows and its notifier mark.
 *
 * A relocation reads the live rows at and below the source in path
 * order (a folder before its contents), and writes each at its new
 * place.  A move journals a deleted row for every old path first, so
 * that a cursor on any folder below the source sees its paths go, then
 * the new rows top-down, the way the real service reports a move.  A
 * move that changes only the case of the name rewrites the display
 * paths and reports nothing.
 */
#include "cloud/fsops.h"
#include "cloud/fsops_int.h"

#include "cloud/journal.h"
#include "cloud/notifier.h"
#include "common/db.h"
#include "common/log.h"
#include "common/pathx.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>

/* The error for an existing live entry in the way. */
static enum fsop_error conflict_of(const struct entry *e)
{
    return strcmp(e->tag, "folder") == 0 ? FSOP_CONFLICT_FOLDER
                                         : FSOP_CONFLICT_FILE;
}

/* Finds where a new entry goes: the given path, or with autorename a
 * free "name (n)" beside it (then *d and *l own the new path, which
 * *display and *lower point at).  Checks its ancestors into *a. */
static enum fsop_error target_place(struct store *s, int64_t account,
                                    const char **display,
                                    const char **lower, bool is_file,
                                    bool autorename, char **d, char **l,
                                    struct fsop_ancestors *a)
{
    enum fsop_error err;
    struct entry e;
    int found;

    err = fsop_ancestors_check(s, account, *display, *lower, a);
    if (err != FSOP_OK)
        return err;
    found = store_entry_get(s, account, *lower, &e);
    if (found < 0)
        return FSOP_INTERNAL;
    if (found == 1 || strcmp(e.tag, "deleted") == 0) {
        store_entry_clear(&e);
        return FSOP_OK;
    }
    err = conflict_of(&e);
    store_entry_clear(&e);
    if (!autorename)
        return err;
    if (fsop_autorename(s, account, *display, is_file, d, l) < 0)
        return FSOP_INTERNAL;
    *display = *d;
    *lower = *l;
    return FSOP_OK;
}

/* Commits and wakes the waiters; rolls back and fails otherwise. */
static enum fsop_error finish_tx(struct store *s, int64_t account,
                                 int rc, bool notify)
{
    if (rc < 0 || (notify && notifier_mark_pending_tx(s->db, account) < 0)
        || db_commit(s->db) < 0) {
        db_rollback(s->db);
        return FSOP_INTERNAL;
    }
    store_changed(s);
    return FSOP_OK;
}

enum fsop_error fsop_create_folder(struct store *s, int64_t account,
                                   const char *display, const char *lower,
                                   bool autorename, json_t **meta)
{
    struct fsop_ancestors a = {.count = 0};
    struct entry e = {.tag = "folder"};
    char *d = NULL, *l = NULL;
    enum fsop_error err;
    int rc;

    *meta = NULL;
    store_lock(s);
    if (db_begin(s->db) < 0) {
        err = FSOP_INTERNAL;
        goto out;
    }
    err = target_place(s, account, &display, &lower, false, autorename, &d,
                       &l, &a);
    if (err != FSOP_OK) {
        db_rollback(s->db);
        goto out;
    }
    e.path_display = (char *)display;
    e.path_lower = (char *)lower;
    e.file_id = fsop_new_file_id();
    rc = fsop_ancestors_create(s, account, &a);
    if (rc == 0)
        rc = fsop_entry_put(s, account, &e);
    if (rc == 0)
        rc = journal_append(s, journal_next_seq(s), account, &e);
    err = finish_tx(s, account, rc, true);
    if (err == FSOP_OK)
        *meta = store_entry_json(&e);
    free(e.file_id);
out:
    store_unlock(s);
    if (err == FSOP_OK)
        LOG_I("folder created account=%lld path=%s", (long long)account,
              display);
    fsop_ancestors_free(&a);
    free(d);
    free(l);
    return err;
}

/* The rows at and below lower, live ones only, in path order. */
static int subtree_read(struct store *s, int64_t account, const char *lower,
                        struct entry **rows, size_t *n)
{
    sqlite3_stmt *st = db_prepare(
        s->db, "SELECT " ENTRY_COLUMNS " FROM entries"
               " WHERE account = ?1 AND tag != 'deleted' AND"
               " (path_lower = ?2"
               " OR (path_lower > ?2 || '/' AND path_lower < ?2 || '0'))"
               " ORDER BY path_lower LIMIT ?3");
    size_t cap = 16;
    int step;

    *n = 0;
    *rows = xmalloc(cap * sizeof **rows);
    sqlite3_bind_int64(st, 1, account);
    db_bind_text(st, 2, lower);
    sqlite3_bind_int64(st, 3, s->relocate_max + 1);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap *= 2;
            *rows = xrealloc(*rows, cap * sizeof **rows);
        }
        store_entry_read(st, &(*rows)[(*n)++]);
    }
    sqlite3_finalize(st);
    return step == SQLITE_DONE ? 0 : -1;
}

static void subtree_free(struct entry *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        store_entry_clear(&rows[i]);
    free(rows);
}

/* to + what follows the first `depth` components of path. */
static char *rebase(const char *path, int depth, const char *to)
{
    const char *p = path;

    for (int i = 0; i < depth && p != NULL; i++)
        p = strchr(p + 1, '/');
    return xasprintf("%s%s", to, p ? p : "");
}

static int depth_of(const char *path)
{
    int n = 0;

    for (; *path; path++)
        n += *path == '/';
    return n;
}

/* A change of case only: new display paths, nothing reported. */
static int relocate_case(struct store *s, const struct fsop_relocation *r,
                         struct entry *rows, size_t n)
{
    int depth = depth_of(r->from_lower);

    for (size_t i = 0; i < n; i++) {
        char *d = rebase(rows[i].path_display, depth, r->to_display);
        int rc;

        free(rows[i].path_display);
        rows[i].path_display = d;
        rc = fsop_entry_put(s, r->account, &rows[i]);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* A moved row leaves a tombstone at its old path. */
static int relocate_leave(struct store *s, int64_t account,
                          const struct entry *old)
{
    struct entry gone = {.tag = "deleted"};

    gone.path_lower = old->path_lower;
    gone.path_display = old->path_display;
    if (fsop_entry_put(s, account, &gone) < 0)
        return -1;
    return journal_append(s, journal_next_seq(s), account, &gone);
}

/* Writes one row at its new place (new id for a copy, new rev for a
 * file) with its revision and journal row. */
static int relocate_row(struct store *s, const struct fsop_relocation *r,
                        const char *to_display, const char *to_lower,
                        int depth, struct entry *row)
{
    int64_t seq = journal_next_seq(s);
    char *d = rebase(row->path_display, depth, to_display);
    char *l = rebase(row->path_lower, depth, to_lower);
    int rc;

    free(row->path_display);
    free(row->path_lower);
    row->path_display = d;
    row->path_lower = l;
    if (r->copy) {
        free(row->file_id);
        row->file_id = fsop_new_file_id();
    }
    if (strcmp(row->tag, "file") == 0) {
        free(row->rev);
        row->rev = fsop_new_rev(seq);
        row->server_modified = time_now_s();
    }
    rc = fsop_entry_put(s, r->account, row);
    if (rc == 0 && strcmp(row->tag, "file") == 0)
        rc = fsop_revision_add(s, r->account, row);
    if (rc == 0)
        rc = journal_append(s, seq, r->account, row);
    return rc;
}

/* Checks the source and the target; fills rows (the source subtree). */
static enum fsop_error relocate_check(struct store *s,
                                      const struct fsop_relocation *r,
                                      struct entry **rows, size_t *n)
{
    if (subtree_read(s, r->account, r->from_lower, rows, n) < 0)
        return FSOP_INTERNAL;
    if (*n == 0 || strcmp((*rows)[0].path_lower, r->from_lower) != 0)
        return FSOP_NOT_FOUND;
    if ((int64_t)*n > s->relocate_max)
        return FSOP_TOO_MANY;
    if (strcmp(r->to_lower, r->from_lower) != 0 &&
        pathx_is_under(r->to_lower, r->from_lower))
        return FSOP_INTO_ITSELF;
    return FSOP_OK;
}

/* The relocation proper, in the transaction; *meta: the new entry. */
static enum fsop_error relocate_locked(struct store *s,
                                       const struct fsop_relocation *r,
                                       json_t **meta, bool *reported)
{
    struct fsop_ancestors a = {.count = 0};
    const char *to_d = r->to_display, *to_l = r->to_lower;
    char *d = NULL, *l = NULL;
    struct entry *rows = NULL;
    size_t n = 0;
    bool is_file;
    enum fsop_error err;
    int rc = 0, depth = depth_of(r->from_lower);

    err = relocate_check(s, r, &rows, &n);
    if (err != FSOP_OK)
        goto out;
    *reported = !(strcmp(to_l, r->from_lower) == 0 && !r->copy &&
                  strcmp(to_d, rows[0].path_display) != 0);
    if (!*reported) {
        rc = relocate_case(s, r, rows, n);
        goto done;
    }
    is_file = strcmp(rows[0].tag, "file") == 0;
    err = target_place(s, r->account, &to_d, &to_l, is_file, r->autorename,
                       &d, &l, &a);
    if (err != FSOP_OK)
        goto out;
    rc = fsop_ancestors_create(s, r->account, &a);
    for (size_t i = 0; rc == 0 && !r->copy && i < n; i++)
        rc = relocate_leave(s, r->account, &rows[i]);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = relocate_row(s, r, to_d, to_l, depth, &rows[i]);
done:
    err = rc < 0 ? FSOP_INTERNAL : FSOP_OK;
    if (err == FSOP_OK)
        *meta = store_entry_json(&rows[0]);
out:
    fsop_ancestors_free(&a);
    subtree_free(rows, n);
    free(d);
    free(l);
    return err;
}

enum fsop_error fsop_relocate(struct store *s,
                              const struct fsop_relocation *r,
                              json_t **meta)
{
    enum fsop_error err;
    bool reported = true;

    *meta = NULL;
    store_lock(s);
    if (db_begin(s->db) < 0) {
        store_unlock(s);
        return FSOP_INTERNAL;
    }
    err = relocate_locked(s, r, meta, &reported);
    if (err == FSOP_OK)
        err = finish_tx(s, r->account, 0, reported);
    else
        db_rollback(s->db);
    store_unlock(s);

    if (err != FSOP_OK) {
        json_decref(*meta);
        *meta = NULL;
        return err;
    }
    LOG_I("%s account=%lld from=%s to=%s", r->copy ? "copied" : "moved",
          (long long)r->account, r->from_lower, r->to_display);
    return FSOP_OK;
}
