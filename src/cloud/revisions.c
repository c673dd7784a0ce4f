/*
 * revisions: files/list_revisions and the revision lookups behind
 * download by "rev:" (every stored version of a file is a row of the
 * revisions table, written with the change that created it).
 */
#include "cloud/files_api.h"

#include "common/db.h"
#include "common/log.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>

#define REVISIONS_LIMIT_DEFAULT 10
#define REVISIONS_LIMIT_MAX 100

#define REVISION_COLUMNS                                                    \
    "rowid, 'file', path_lower, path_display, file_id, rev, content_hash," \
    " size, client_modified, server_modified"

int files_revision_get(struct store *s, int64_t account, const char *rev,
                       struct entry *out)
{
    int rc;

    store_lock(s);
    rc = store_entry_query(s, "revision",
                           "SELECT " REVISION_COLUMNS " FROM revisions"
                           " WHERE account = ?1 AND rev = ?2",
                           account, rev, out);
    store_unlock(s);
    return rc;
}

/* Appends the newest revisions of a path or of a file id to out. */
static int revisions_read(struct store *s, int64_t account, bool by_id,
                          const char *key, json_int_t limit, json_t *out)
{
    sqlite3_stmt *st;
    int step;

    store_lock(s);
    st = db_prepare(s->db,
                    by_id ? "SELECT " REVISION_COLUMNS " FROM revisions"
                            " WHERE account = ?1 AND file_id = ?2"
                            " ORDER BY rowid DESC LIMIT ?3"
                          : "SELECT " REVISION_COLUMNS " FROM revisions"
                            " WHERE account = ?1 AND path_lower = ?2"
                            " ORDER BY rowid DESC LIMIT ?3");
    sqlite3_bind_int64(st, 1, account);
    db_bind_text(st, 2, key);
    sqlite3_bind_int64(st, 3, limit);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct entry e;

        store_entry_read(st, &e);
        json_array_append_new(out, store_entry_json(&e));
        store_entry_clear(&e);
    }
    sqlite3_finalize(st);
    store_unlock(s);
    return step == SQLITE_DONE ? 0 : -1;
}

static const struct api_field list_revisions_fields[] = {
    {"path", ARG_STRING, true},
    {"mode", ARG_ANY, false},
    {"limit", ARG_UINT, false},
    {"before_rev", ARG_STRING, false},
};

/* ListRevisionsMode: "path" (default) or "id".  -1 after a 400. */
static int revisions_mode(struct api_call *c, bool *by_id)
{
    json_t *m = json_object_get(c->arg, "mode");
    const char *tag = NULL;

    *by_id = false;
    if (m == NULL || json_is_null(m))
        return 0;
    tag = json_is_string(m) ? json_string_value(m)
                            : json_string_value(json_object_get(m, ".tag"));
    if (tag != NULL && (strcmp(tag, "path") == 0 || strcmp(tag, "id") == 0)) {
        *by_id = strcmp(tag, "id") == 0;
        return 0;
    }
    api_bad_input(c, "%s: mode: unknown tag '%s'", c->arg_from,
                  tag ? tag : "(none)");
    return -1;
}

static void revisions_answer(struct api_call *c, const struct entry *e,
                             bool by_id, json_int_t limit)
{
    json_t *entries = json_array(), *result;
    bool deleted = strcmp(e->tag, "deleted") == 0;

    if (revisions_read(c->store, c->auth.account, by_id && !deleted,
                       by_id && !deleted ? e->file_id : e->path_lower,
                       limit, entries) < 0) {
        json_decref(entries);
        api_internal_error(c);
        return;
    }
    result = json_object();
    json_object_set_new(result, "is_deleted", json_boolean(deleted));
    json_object_set_new(result, "entries", entries);
    api_reply_json(c, result);
}

void files_list_revisions(struct api_call *c)
{
    struct entry e;
    char *lower = NULL;
    const char *path;
    json_int_t limit;
    enum files_lookup r;
    bool by_id;

    if (api_arg_check(c, list_revisions_fields,
                      ARRAY_LEN(list_revisions_fields)) < 0 ||
        revisions_mode(c, &by_id) < 0)
        return;
    path = api_arg_str(c, "path");
    limit = api_arg_int(c, "limit", REVISIONS_LIMIT_DEFAULT);
    if (limit < 1 || limit > REVISIONS_LIMIT_MAX) {
        api_bad_input(c, "%s: limit: %lld is not within range [1, %d]",
                      c->arg_from, (long long)limit, REVISIONS_LIMIT_MAX);
        return;
    }
    if (files_check_path_pattern(c, path, false, "/(.|[\\r\\n])*|id:.*|"
                                 "(ns:[0-9]+(/.*)?)") < 0)
        return;
    r = files_resolve(c, path, false, &e, &lower);
    if (r == FILES_FAILED)
        api_internal_error(c);
    else if (r == FILES_MALFORMED)
        api_route_error(c, files_lookup_error("path", "malformed_path"));
    else if (r != FILES_FOUND)
        api_route_error(c, files_lookup_error("path", "not_found"));
    else if (strcmp(e.tag, "folder") == 0)
        api_route_error(c, files_lookup_error("path", "not_file"));
    else
        revisions_answer(c, &e, by_id, limit);
    store_entry_clear(&e);
    free(lower);
}
