/*
 * listing: list_folder, list_folder/continue and get_latest_cursor.
 *
 * A first listing walks the entries in path order (a parent sorts before
 * everything below it), limit entries per page, and remembers the last
 * path sent in the cursor.  The cursor also carries the account's journal
 * head taken with the first page; once the listing is done, continue
 * serves the journal after that point.  Changes made while the listing
 * was paged may therefore be reported twice, never missed.
 */
#include "cloud/files_api.h"

#include "cloud/cursor.h"
#include "cloud/journal.h"
#include "common/db.h"
#include "common/log.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>

#define LISTING_LIMIT_DEFAULT 2000
#define LISTING_LIMIT_MAX 2000

static const char list_path_pattern[] =
    "(/(.|[\\r\\n])*)?|id:.*|(ns:[0-9]+(/.*)?)";

static const struct api_field list_folder_fields[] = {
    {"path", ARG_STRING, true},
    {"recursive", ARG_BOOL, false},
    {"include_media_info", ARG_BOOL, false},
    {"include_deleted", ARG_BOOL, false},
    {"include_has_explicit_shared_members", ARG_BOOL, false},
    {"include_mounted_folders", ARG_BOOL, false},
    {"limit", ARG_UINT, false},
    {"shared_link", ARG_ANY, false},
    {"include_property_groups", ARG_ANY, false},
    {"include_non_downloadable_files", ARG_BOOL, false},
};

/* Entries after c->position under the prefix, in path order.  The
 * range test on path_lower is explained in journal.c. */
static const char page_sql[] =
    "SELECT " ENTRY_COLUMNS " FROM entries"
    " WHERE account = ?1 AND path_lower > ?2"
    " AND ((?4 = 1 AND (path_lower = ?3 OR (path_lower > ?3 || '/'"
    " AND path_lower < ?3 || '0'))) OR (?4 = 0 AND parent_lower = ?3))"
    " AND (?5 = 1 OR tag != 'deleted')"
    " ORDER BY path_lower LIMIT ?6";

/* One page of a first listing (lock held); moves the cursor on. */
static int listing_page(struct store *s, struct cursor *cur, json_t *out,
                        bool *has_more)
{
    sqlite3_stmt *st = db_prepare(s->db, page_sql);
    char *last = NULL;
    uint32_t n = 0;
    int step;

    sqlite3_bind_int64(st, 1, cur->account);
    db_bind_text(st, 2, cur->position ? cur->position : "");
    db_bind_text(st, 3, cur->prefix);
    sqlite3_bind_int(st, 4, cur->recursive ? 1 : 0);
    sqlite3_bind_int(st, 5, cur->include_deleted ? 1 : 0);
    sqlite3_bind_int64(st, 6, (int64_t)cur->limit + 1);
    *has_more = false;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct entry e;

        if (n == cur->limit) {
            *has_more = true;
            break;
        }
        store_entry_read(st, &e);
        json_array_append_new(out, store_entry_json(&e));
        free(last);
        last = e.path_lower;
        e.path_lower = NULL;
        store_entry_clear(&e);
        n++;
    }
    sqlite3_finalize(st);
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        free(last);
        return -1;
    }
    free(cur->position);
    cur->position = *has_more ? last : NULL;
    cur->listing = *has_more;
    if (!*has_more)
        free(last);
    return 0;
}

/* Answers {entries, cursor, has_more} for the cursor's next page. */
static void listing_answer(struct api_call *c, struct cursor *cur)
{
    struct store *s = c->store;
    json_t *entries = json_array(), *result;
    bool has_more = false;
    int64_t next = cur->seq;
    char *text;
    int rc;

    store_lock(s);
    if (cur->listing)
        rc = listing_page(s, cur, entries, &has_more);
    else
        rc = journal_changes(s, cur->account, cur->prefix, cur->recursive,
                             cur->seq, cur->limit, entries, &next,
                             &has_more);
    store_unlock(s);
    if (rc < 0) {
        json_decref(entries);
        api_internal_error(c);
        return;
    }
    cur->seq = next;
    text = cursor_encode(cur, s->cursor_key);
    result = json_object();
    json_object_set_new(result, "entries", entries);
    json_object_set_new(result, "cursor", json_string(text));
    json_object_set_new(result, "has_more", json_boolean(has_more));
    api_reply_json(c, result);
    free(text);
}

/* Checks list_folder's argument and resolves its folder into a fresh
 * cursor positioned at the start.  Answers and returns -1 on error. */
static int listing_start(struct api_call *c, struct cursor *cur)
{
    const char *path;
    json_int_t limit;
    struct entry e;
    enum files_lookup r;
    int rc = -1;

    memset(cur, 0, sizeof *cur);
    if (api_arg_check(c, list_folder_fields,
                      ARRAY_LEN(list_folder_fields)) < 0)
        return -1;
    path = api_arg_str(c, "path");
    limit = api_arg_int(c, "limit", LISTING_LIMIT_DEFAULT);
    if (limit < 1 || limit > LISTING_LIMIT_MAX) {
        api_bad_input(c, "%s: limit: %lld is not within range [1, %d]",
                      c->arg_from, (long long)limit, LISTING_LIMIT_MAX);
        return -1;
    }
    if (files_check_path_pattern(c, path, true, list_path_pattern) < 0)
        return -1;

    r = files_resolve(c, path, true, &e, &cur->prefix);
    if (r == FILES_FAILED)
        api_internal_error(c);
    else if (r == FILES_MALFORMED)
        api_route_error(c, files_lookup_error("path", "malformed_path"));
    else if (r == FILES_ABSENT || (r == FILES_FOUND &&
                                   strcmp(e.tag, "deleted") == 0))
        api_route_error(c, files_lookup_error("path", "not_found"));
    else if (r == FILES_FOUND && strcmp(e.tag, "folder") != 0)
        api_route_error(c, files_lookup_error("path", "not_folder"));
    else
        rc = 0;
    store_entry_clear(&e);

    cur->account = c->auth.account;
    cur->limit = (uint32_t)limit;
    cur->recursive = api_arg_bool(c, "recursive", false);
    cur->include_deleted = api_arg_bool(c, "include_deleted", false);
    if (cur->prefix == NULL)
        cur->prefix = xstrdup("");
    return rc;
}

void files_list_folder(struct api_call *c)
{
    struct cursor cur;

    if (listing_start(c, &cur) == 0) {
        store_lock(c->store);
        cur.seq = journal_account_head(c->store, c->auth.account);
        store_unlock(c->store);
        cur.listing = true;
        cur.position = xstrdup("");
        listing_answer(c, &cur);
    }
    cursor_clear(&cur);
}

void files_get_latest_cursor(struct api_call *c)
{
    struct cursor cur;
    json_t *result;
    char *text;

    if (listing_start(c, &cur) == 0) {
        store_lock(c->store);
        cur.seq = journal_account_head(c->store, c->auth.account);
        store_unlock(c->store);
        text = cursor_encode(&cur, c->store->cursor_key);
        result = json_object();
        json_object_set_new(result, "cursor", json_string(text));
        api_reply_json(c, result);
        free(text);
    }
    cursor_clear(&cur);
}

static const struct api_field continue_fields[] = {
    {"cursor", ARG_STRING, true},
};

void files_list_folder_continue(struct api_call *c)
{
    struct cursor cur;
    const char *why = NULL;
    int64_t head, floor;
    bool ok;

    if (api_arg_check(c, continue_fields, ARRAY_LEN(continue_fields)) < 0)
        return;
    ok = cursor_decode(api_arg_str(c, "cursor"), c->store->cursor_key,
                       &cur, &why) == 0;
    if (ok && (cur.account != c->auth.account || cur.limit == 0)) {
        ok = false;
        why = "not a cursor of this account";
    }
    if (!ok) {
        api_bad_input(c, "Invalid \"cursor\" parameter: %s", why);
        cursor_clear(&cur);
        return;
    }

    store_lock(c->store);
    journal_compact(c->store);
    head = store_journal_head(c->store);
    floor = journal_account_floor(c->store, cur.account);
    store_unlock(c->store);
    if (cur.seq > head || cur.seq < floor) {
        /* The journal was reset under the cursor (a new database), or
         * compacted past it: the client must list afresh. */
        api_route_error(c, api_tag("reset", NULL));
    } else {
        listing_answer(c, &cur);
    }
    cursor_clear(&cur);
}
