/*
 * files_move: create_folder_v2, move_v2 and copy_v2.
 */
#include "cloud/files_api.h"

#include "cloud/fsops.h"
#include "common/log.h"
#include "common/pathx.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>

static const char write_path_pattern[] =
    "(/(.|[\\r\\n])*)|(ns:[0-9]+(/.*)?)|(id:.*)";
static const char folder_path_pattern[] = "(/(.|[\\r\\n])*)|(ns:[0-9]+(/.*)?)";

json_t *files_write_error(enum fsop_error err)
{
    switch (err) {
    case FSOP_CONFLICT_FILE: return files_lookup_error("conflict", "file");
    case FSOP_CONFLICT_FOLDER:
        return files_lookup_error("conflict", "folder");
    case FSOP_FILE_ANCESTOR:
        return files_lookup_error("conflict", "file_ancestor");
    case FSOP_NOT_FOUND: return api_tag("malformed_path", NULL);
    default: return api_tag("other", NULL);
    }
}

/* A path argument that must name a place to write: normalized into
 * *display and *lower, or answered with 409 malformed_path under
 * outer.  Returns 0 or -1. */
static int write_target(struct api_call *c, const char *path,
                        const char *outer, char **display, char **lower)
{
    if (path[0] == '/' &&
        pathx_normalize(path, false, display, lower) == PATHX_OK)
        return 0;
    api_route_error(c, api_tag(outer, api_tag("malformed_path", NULL)));
    return -1;
}

static void reply_metadata(struct api_call *c, json_t *meta)
{
    json_t *result = json_object();

    json_object_set_new(result, "metadata", meta);
    api_reply_json(c, result);
}

static const struct api_field create_folder_fields[] = {
    {"path", ARG_STRING, true},
    {"autorename", ARG_BOOL, false},
};

void files_create_folder(struct api_call *c)
{
    char *display = NULL, *lower = NULL;
    const char *path;
    json_t *meta = NULL;
    enum fsop_error err;

    if (api_arg_check(c, create_folder_fields,
                      ARRAY_LEN(create_folder_fields)) < 0)
        return;
    path = api_arg_str(c, "path");
    if (files_check_path_pattern(c, path, false, folder_path_pattern) < 0 ||
        write_target(c, path, "path", &display, &lower) < 0)
        goto out;
    err = fsop_create_folder(c->store, c->auth.account, display, lower,
                             api_arg_bool(c, "autorename", false), &meta);
    if (err == FSOP_OK)
        reply_metadata(c, meta);
    else if (err == FSOP_INTERNAL)
        api_internal_error(c);
    else
        api_route_error(c, api_tag("path", files_write_error(err)));
out:
    free(display);
    free(lower);
}

static const struct api_field relocation_fields[] = {
    {"from_path", ARG_STRING, true},
    {"to_path", ARG_STRING, true},
    {"allow_shared_folder", ARG_BOOL, false},
    {"autorename", ARG_BOOL, false},
    {"allow_ownership_transfer", ARG_BOOL, false},
};

/* RelocationError for err. */
static json_t *relocation_error(enum fsop_error err)
{
    switch (err) {
    case FSOP_NOT_FOUND:
        return files_lookup_error("from_lookup", "not_found");
    case FSOP_INTO_ITSELF:
        return api_tag("cant_move_folder_into_itself", NULL);
    case FSOP_TOO_MANY: return api_tag("too_many_files", NULL);
    default: return api_tag("to", files_write_error(err));
    }
}

/* The source's lower path: from a path, or the path of an id. */
static int relocation_source(struct api_call *c, const char *from,
                             char **lower)
{
    struct entry e;
    enum files_lookup r = files_resolve(c, from, false, &e, lower);
    bool live = r == FILES_FOUND && strcmp(e.tag, "deleted") != 0;

    store_entry_clear(&e);
    if (r == FILES_FAILED)
        api_internal_error(c);
    else if (r == FILES_MALFORMED)
        api_route_error(c, files_lookup_error("from_lookup",
                                              "malformed_path"));
    else if (!live)
        api_route_error(c, files_lookup_error("from_lookup", "not_found"));
    return live ? 0 : -1;
}

static void files_relocate(struct api_call *c, bool copy)
{
    struct fsop_relocation r = {.account = c->auth.account, .copy = copy};
    char *from_lower = NULL, *to_display = NULL, *to_lower = NULL;
    const char *from, *to;
    json_t *meta = NULL;
    enum fsop_error err;

    if (api_arg_check(c, relocation_fields,
                      ARRAY_LEN(relocation_fields)) < 0)
        return;
    from = api_arg_str(c, "from_path");
    to = api_arg_str(c, "to_path");
    if (files_check_path_pattern(c, from, false, write_path_pattern) < 0 ||
        files_check_path_pattern(c, to, false, write_path_pattern) < 0 ||
        relocation_source(c, from, &from_lower) < 0 ||
        write_target(c, to, "to", &to_display, &to_lower) < 0)
        goto out;
    r.from_lower = from_lower;
    r.to_display = to_display;
    r.to_lower = to_lower;
    r.autorename = api_arg_bool(c, "autorename", false);
    err = fsop_relocate(c->store, &r, &meta);
    if (err == FSOP_OK)
        reply_metadata(c, meta);
    else if (err == FSOP_INTERNAL)
        api_internal_error(c);
    else
        api_route_error(c, relocation_error(err));
out:
    free(from_lower);
    free(to_display);
    free(to_lower);
}

void files_move(struct api_call *c)
{
    files_relocate(c, false);
}

void files_copy(struct api_call *c)
{
    files_relocate(c, true);
}
