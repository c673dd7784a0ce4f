/*
 * files_upload: /2/files/upload, one request carrying the whole file.
 */
#include "cloud/files_api.h"

#include "cloud/fsops.h"
#include "common/log.h"
#include "common/pathx.h"
#include "common/sig.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct api_field upload_fields[] = {
    {"path", ARG_STRING, true},
    {"mode", ARG_ANY, false},
    {"autorename", ARG_BOOL, false},
    {"client_modified", ARG_STRING, false},
    {"mute", ARG_BOOL, false},
    {"property_groups", ARG_ANY, false},
    {"strict_conflict", ARG_BOOL, false},
    {"content_hash", ARG_STRING, false},
};

/* The WriteMode union arrives as "add" or {".tag": "add"}; update
 * carries the rev being replaced.  Answers 400 and returns -1 when it is
 * none of them. */
static int upload_mode(struct api_call *c, const json_t *obj,
                       struct fsop_upload *u)
{
    json_t *m = json_object_get(obj, "mode");
    const char *tag = NULL;

    u->mode = FSOP_ADD;
    if (m == NULL || json_is_null(m))
        return 0;
    if (json_is_string(m))
        tag = json_string_value(m);
    else if (json_is_object(m))
        tag = json_string_value(json_object_get(m, ".tag"));
    if (tag != NULL && strcmp(tag, "add") == 0)
        return 0;
    if (tag != NULL && strcmp(tag, "overwrite") == 0) {
        u->mode = FSOP_OVERWRITE;
        return 0;
    }
    if (tag != NULL && strcmp(tag, "update") == 0 && json_is_object(m)) {
        u->update_rev = json_string_value(json_object_get(m, "update"));
        u->mode = FSOP_UPDATE;
        if (u->update_rev != NULL && strlen(u->update_rev) >= 9)
            return 0;
        api_bad_input(c, "%s: mode: update: expected a rev", c->arg_from);
        return -1;
    }
    api_bad_input(c, "%s: mode: unknown tag '%s'", c->arg_from,
                  tag ? tag : "(none)");
    return -1;
}

/* Parses client_modified ("YYYY-MM-DDTHH:MM:SSZ"). */
static int upload_client_modified(struct api_call *c, const json_t *obj,
                                  struct fsop_upload *u)
{
    const char *t = json_string_value(json_object_get(obj,
                                                      "client_modified"));
    struct tm tm;
    const char *end;

    if (t == NULL)
        return 0;
    memset(&tm, 0, sizeof tm);
    end = strptime(t, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (end == NULL || *end != '\0') {
        api_bad_input(c, "%s: client_modified: timestamp '%.40s' does not"
                         " match format '%%Y-%%m-%%dT%%H:%%M:%%SZ'",
                      c->arg_from, t);
        return -1;
    }
    u->client_modified = (int64_t)timegm(&tm);
    u->has_client_modified = true;
    return 0;
}

int files_commit_info(struct api_call *c, const json_t *obj,
                      struct fsop_upload *u)
{
    if (upload_mode(c, obj, u) < 0 || upload_client_modified(c, obj, u) < 0)
        return -1;
    u->autorename = json_is_true(json_object_get(obj, "autorename"));
    u->strict = json_is_true(json_object_get(obj, "strict_conflict"));
    return 0;
}

/* UploadError.path: {".tag": "path", "reason": WriteError,
 * "upload_session_id": ""}. */
static json_t *upload_path_error(const char *reason, const char *conflict)
{
    json_t *e = json_object();
    json_t *r = conflict ? files_lookup_error(reason, conflict)
                         : api_tag(reason, NULL);

    json_object_set_new(e, ".tag", json_string("path"));
    json_object_set_new(e, "reason", r);
    json_object_set_new(e, "upload_session_id", json_string(""));
    return e;
}

static void upload_answer(struct api_call *c, enum fsop_error err,
                          json_t *meta)
{
    switch (err) {
    case FSOP_OK:
        api_reply_json(c, meta);
        return;
    case FSOP_CONFLICT_FILE:
        api_route_error(c, upload_path_error("conflict", "file"));
        break;
    case FSOP_CONFLICT_FOLDER:
        api_route_error(c, upload_path_error("conflict", "folder"));
        break;
    case FSOP_FILE_ANCESTOR:
        api_route_error(c, upload_path_error("conflict", "file_ancestor"));
        break;
    default:
        api_internal_error(c);
        break;
    }
    json_decref(meta);
}

/* True when the client's content_hash (if any) matches the body. */
static bool upload_hash_ok(struct api_call *c, const void *data, size_t n)
{
    const char *want = api_arg_str(c, "content_hash");
    char got[SIG_HEX_LEN + 1];

    if (want == NULL)
        return true;
    content_hash_buf(data, n, got);
    return strcmp(want, got) == 0;
}

void files_upload(struct api_call *c)
{
    struct fsop_upload u = {.account = c->auth.account};
    char *display = NULL, *lower = NULL;
    const char *path;
    json_t *meta = NULL;
    enum fsop_error err;

    if (api_arg_check(c, upload_fields, ARRAY_LEN(upload_fields)) < 0 ||
        files_commit_info(c, c->arg, &u) < 0)
        return;
    path = api_arg_str(c, "path");
    if (path[0] != '/' && strncmp(path, "id:", 3) != 0 &&
        strncmp(path, "ns:", 3) != 0) {
        api_bad_input(c, "%s: path: '%.200s' did not match pattern '%s'",
                      c->arg_from, path,
                      "(/(.|[\\r\\n])*)|(ns:[0-9]+(/.*)?)|(id:.*)");
        return;
    }
    if (pathx_normalize(path, false, &display, &lower) != PATHX_OK) {
        api_route_error(c, upload_path_error("malformed_path", NULL));
        goto out;
    }
    u.data = hsrv_body(c->req, &u.len);
    if (!upload_hash_ok(c, u.data, u.len)) {
        api_route_error(c, api_tag("content_hash_mismatch", NULL));
        goto out;
    }
    u.display = display;
    u.lower = lower;
    err = fsop_upload(c->store, &u, &meta);
    upload_answer(c, err, meta);
out:
    free(display);
    free(lower);
}
