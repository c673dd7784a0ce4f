/*
 * files_api: get_metadata, delete_v2, upload and download.
 */
#include "cloud/files_api.h"

#include "cloud/fsops.h"
#include "common/jsonx.h"
#include "common/log.h"
#include "common/pathx.h"
#include "common/sig.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char read_path_pattern[] =
    "(/(.|[\\r\\n])*|id:.*)|(rev:[0-9a-f]{9,})|(ns:[0-9]+(/.*)?)";
static const char write_path_pattern[] =
    "(/(.|[\\r\\n])*)|(ns:[0-9]+(/.*)?)|(id:.*)";

int files_check_path_pattern(struct api_call *c, const char *path,
                             bool root_ok, const char *pattern)
{
    bool ok = path[0] == '/' || strncmp(path, "id:", 3) == 0 ||
              strncmp(path, "ns:", 3) == 0 ||
              (path[0] == '\0' && root_ok) ||
              (strncmp(path, "rev:", 4) == 0 && strstr(pattern, "rev:"));

    if (ok)
        return 0;
    api_bad_input(c, "%s: path: '%.200s' did not match pattern '%s'",
                  c->arg_from, path, pattern);
    return -1;
}

json_t *files_lookup_error(const char *outer, const char *inner)
{
    return api_tag(outer, api_tag(inner, NULL));
}

enum files_lookup files_resolve(struct api_call *c, const char *path,
                                bool allow_root, struct entry *e,
                                char **lower)
{
    struct store *s = c->store;
    char *display = NULL;
    enum files_lookup r;
    int found;

    memset(e, 0, sizeof *e);
    *lower = NULL;
    if (strncmp(path, "id:", 3) == 0) {
        store_lock(s);
        found = store_entry_by_id(s, c->auth.account, path, e);
        store_unlock(s);
        if (found == 0)
            *lower = xstrdup(e->path_lower);
        return found < 0 ? FILES_FAILED
                         : found == 0 ? FILES_FOUND : FILES_ABSENT;
    }
    if (path[0] != '/' && path[0] != '\0')
        return FILES_ABSENT; /* rev: and ns: forms: nothing stored so */
    if (pathx_normalize(path, allow_root, &display, lower) != PATHX_OK)
        return FILES_MALFORMED;
    free(display);
    if ((*lower)[0] == '\0')
        return FILES_ROOT;

    store_lock(s);
    found = store_entry_get(s, c->auth.account, *lower, e);
    store_unlock(s);
    r = found < 0 ? FILES_FAILED : found == 0 ? FILES_FOUND : FILES_ABSENT;
    return r;
}

static const struct api_field get_metadata_fields[] = {
    {"path", ARG_STRING, true},
    {"include_media_info", ARG_BOOL, false},
    {"include_deleted", ARG_BOOL, false},
    {"include_has_explicit_shared_members", ARG_BOOL, false},
    {"include_property_groups", ARG_ANY, false},
};

void files_get_metadata(struct api_call *c)
{
    const char *path;
    struct entry e;
    char *lower = NULL;
    enum files_lookup r;
    bool deleted_ok;

    if (api_arg_check(c, get_metadata_fields,
                      ARRAY_LEN(get_metadata_fields)) < 0)
        return;
    path = api_arg_str(c, "path");
    if (files_check_path_pattern(c, path, false, read_path_pattern) < 0)
        return;
    deleted_ok = api_arg_bool(c, "include_deleted", false);
    r = files_resolve(c, path, false, &e, &lower);
    if (r == FILES_FAILED)
        api_internal_error(c);
    else if (r == FILES_MALFORMED)
        api_route_error(c, files_lookup_error("path", "malformed_path"));
    else if (r != FILES_FOUND ||
             (strcmp(e.tag, "deleted") == 0 && !deleted_ok))
        api_route_error(c, files_lookup_error("path", "not_found"));
    else
        api_reply_json(c, store_entry_json(&e));
    store_entry_clear(&e);
    free(lower);
}

static const struct api_field delete_fields[] = {
    {"path", ARG_STRING, true},
    {"parent_rev", ARG_STRING, false},
};

void files_delete(struct api_call *c)
{
    const char *path, *parent_rev;
    char *display = NULL, *lower = NULL;
    json_t *meta = NULL, *result;
    enum fsop_error err;
    bool by_id;

    if (api_arg_check(c, delete_fields, ARRAY_LEN(delete_fields)) < 0)
        return;
    path = api_arg_str(c, "path");
    parent_rev = api_arg_str(c, "parent_rev");
    if (files_check_path_pattern(c, path, false, write_path_pattern) < 0)
        return;
    by_id = strncmp(path, "id:", 3) == 0;
    if (!by_id && (path[0] != '/' ||
                   pathx_normalize(path, false, &display, &lower) !=
                       PATHX_OK)) {
        api_route_error(c, files_lookup_error("path_lookup",
                                              "malformed_path"));
        goto out;
    }

    err = fsop_delete(c->store, c->auth.account, by_id ? NULL : lower,
                      by_id ? path : NULL, parent_rev, &meta);
    if (err == FSOP_OK) {
        result = json_object();
        json_object_set_new(result, "metadata", meta);
        api_reply_json(c, result);
    } else if (err == FSOP_NOT_FOUND) {
        api_route_error(c, files_lookup_error("path_lookup", "not_found"));
    } else if (err == FSOP_CONFLICT_FILE) {
        api_route_error(c, api_tag("path_write",
                                   files_lookup_error("conflict", "file")));
    } else {
        api_internal_error(c);
    }
out:
    free(display);
    free(lower);
}

static void files_reply_download(struct api_call *c, const struct entry *e)
{
    char *path = store_blob_path(c->store, e->content_hash);
    json_t *meta = store_entry_json(e);
    /* Headers carry ASCII only: the real service escapes the rest. */
    char *result = jsonx_dumps_ascii(meta);
    size_t len = 0;
    char *data = file_read_all(path, API_UPLOAD_BODY_MAX + 1, &len);

    if (data == NULL) {
        LOG_E("blob missing hash=%.12s", e->content_hash);
        api_internal_error(c);
        goto out;
    }
    /* The wrapper frees body and content_type: hand the file over
     * instead of copying up to 150 MiB once more. */
    hsrv_reply(c->resp, 200, "application/octet-stream", NULL, 0);
    free(c->resp->body);
    c->resp->body = data;
    c->resp->body_len = len;
    hsrv_add_header(c->resp, "Dropbox-API-Result", result);
out:
    free(result);
    json_decref(meta);
    free(path);
}

static const struct api_field download_fields[] = {
    {"path", ARG_STRING, true},
    {"rev", ARG_STRING, false},
};

/* Download of an old version: "rev:..." as the path, or the deprecated
 * rev field beside a path (which must be where that version was). */
static void files_download_rev(struct api_call *c, const char *rev,
                               const struct entry *at)
{
    struct entry e;
    int found = files_revision_get(c->store, c->auth.account, rev, &e);

    if (found == 0 && at != NULL &&
        strcmp(e.path_lower, at->path_lower) != 0 &&
        (at->file_id == NULL || strcmp(e.file_id, at->file_id) != 0))
        found = 1;
    if (found < 0)
        api_internal_error(c);
    else if (found == 1)
        api_route_error(c, files_lookup_error("path", "not_found"));
    else
        files_reply_download(c, &e);
    store_entry_clear(&e);
}

void files_download(struct api_call *c)
{
    const char *path, *rev;
    struct entry e;
    char *lower = NULL;
    enum files_lookup r;

    if (api_arg_check(c, download_fields, ARRAY_LEN(download_fields)) < 0)
        return;
    path = api_arg_str(c, "path");
    rev = api_arg_str(c, "rev");
    if (files_check_path_pattern(c, path, false, read_path_pattern) < 0)
        return;
    if (strncmp(path, "rev:", 4) == 0) {
        files_download_rev(c, path + 4, NULL);
        return;
    }
    r = files_resolve(c, path, false, &e, &lower);
    if (r == FILES_FAILED)
        api_internal_error(c);
    else if (r == FILES_MALFORMED)
        api_route_error(c, files_lookup_error("path", "malformed_path"));
    else if (r == FILES_FOUND && rev != NULL)
        files_download_rev(c, rev, &e);
    else if (r != FILES_FOUND || strcmp(e.tag, "deleted") == 0)
        api_route_error(c, files_lookup_error("path", "not_found"));
    else if (strcmp(e.tag, "file") != 0)
        api_route_error(c, files_lookup_error("path", "not_file"));
    else
        files_reply_download(c, &e);
    store_entry_clear(&e);
    free(lower);
}
