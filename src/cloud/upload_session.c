/*
 * upload_session: files/upload_session/start, append_v2 and finish, for
 * files larger than one request.
 *
 * A session is a row of upload_sessions (owner, size so far, closed)
 * and a file blobs/sessions/<id> holding the bytes received.  Appends
 * must come at the session's current size (incorrect_offset otherwise);
 * the offset check and the new size are decided under the store lock
 * before the bytes are written, so two appends at one offset cannot
 * both succeed.  Finish hard-links the bytes into the blob staging
 * area and stores them like an upload; the session ends only when that
 * succeeds, so a conflict can be retried with another commit.
 */
#include "cloud/files_api.h"

#include "common/db.h"
#include "common/log.h"
#include "common/pathx.h"
#include "common/sig.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SESSION_ID_CHARS 32
/* Read size when hashing a finished session. */
#define SESSION_READ_CHUNK (4u * 1024 * 1024)

enum session_err {
    SESSION_OK,
    SESSION_NOT_FOUND,
    SESSION_OFFSET,
    SESSION_CLOSED,
    SESSION_TOO_LARGE,
    SESSION_FAILED,
};

static char *session_path(struct store *s, const char *id)
{
    return xasprintf("%s/sessions/%s", s->blob_dir, id);
}

/* Writes len bytes at offset of the session's file (created if new). */
static int session_write(struct store *s, const char *id, uint64_t offset,
                         const char *data, size_t len)
{
    char *path = session_path(s, id);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    int rc = fd < 0 ? -1 : 0;

    while (rc == 0 && len > 0) {
        ssize_t n = pwrite(fd, data, len, (off_t)offset);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = -1;
            break;
        }
        data += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = -1;
    if (fd >= 0)
        close(fd);
    if (rc < 0)
        LOG_E("session write failed path=%s errno=%d", path, errno);
    free(path);
    return rc;
}

/* Under the lock: checks that the account's session takes len bytes at
 * offset, then moves its size on (and closes it when asked).  A closed
 * session takes no more bytes, but may still be finished (finishing).
 * *size gets the size before. */
static enum session_err session_reserve(struct store *s, int64_t account,
                                        const char *id, uint64_t offset,
                                        size_t len, bool close,
                                        bool finishing, uint64_t *size)
{
    sqlite3_stmt *st = db_prepare(
        s->db, "SELECT size, closed FROM upload_sessions"
               " WHERE id = ?1 AND account = ?2");
    enum session_err err = SESSION_NOT_FOUND;

    db_bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, account);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *size = (uint64_t)sqlite3_column_int64(st, 0);
        err = sqlite3_column_int(st, 1) && (len > 0 || !finishing)
                  ? SESSION_CLOSED
                  : SESSION_OK;
    }
    sqlite3_finalize(st);
    if (err == SESSION_OK && offset != *size)
        err = SESSION_OFFSET;
    if (err == SESSION_OK && *size + len > (uint64_t)s->session_max_bytes)
        err = SESSION_TOO_LARGE;
    if (err != SESSION_OK)
        return err;
    st = db_prepare(s->db, "UPDATE upload_sessions SET size = ?2,"
                           " closed = ?3 WHERE id = ?1");
    db_bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, (int64_t)(*size + len));
    sqlite3_bind_int(st, 3, close ? 1 : 0);
    if (sqlite3_step(st) != SQLITE_DONE)
        err = SESSION_FAILED;
    sqlite3_finalize(st);
    return err;
}

/* Puts the session's size back after a failed write. */
static void session_unreserve(struct store *s, const char *id,
                              uint64_t size)
{
    sqlite3_stmt *st = db_prepare(
        s->db, "UPDATE upload_sessions SET size = ?2, closed = 0"
               " WHERE id = ?1");

    db_bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, (int64_t)size);
    sqlite3_step(st);
    sqlite3_finalize(st);
}

/* Appends the request body to the session at offset (see
 * session_reserve); *size: the size after. */
static enum session_err session_append(struct api_call *c, const char *id,
                                       uint64_t offset, bool close,
                                       bool finishing, uint64_t *size)
{
    struct store *s = c->store;
    size_t len = 0;
    const char *data = hsrv_body(c->req, &len);
    enum session_err err;

    store_lock(s);
    err = session_reserve(s, c->auth.account, id, offset, len, close,
                          finishing, size);
    store_unlock(s);
    if (err != SESSION_OK)
        return err;
    if (len > 0 && session_write(s, id, offset, data, len) < 0) {
        store_lock(s);
        session_unreserve(s, id, *size);
        store_unlock(s);
        return SESSION_FAILED;
    }
    *size += len;
    return SESSION_OK;
}

/* UploadSessionLookupError for err (new reference). */
static json_t *session_lookup_error(enum session_err err, uint64_t size)
{
    json_t *e;

    switch (err) {
    case SESSION_OFFSET:
        e = api_tag("incorrect_offset", NULL);
        json_object_set_new(e, "correct_offset", json_integer((json_int_t)
                                                              size));
        return e;
    case SESSION_CLOSED: return api_tag("closed", NULL);
    case SESSION_TOO_LARGE: return api_tag("too_large", NULL);
    default: return api_tag("not_found", NULL);
    }
}

/* True when the arg's content_hash (if any) matches the request body. */
static bool session_body_hash_ok(struct api_call *c)
{
    const char *want = api_arg_str(c, "content_hash");
    char got[SIG_HEX_LEN + 1];
    size_t len = 0;
    const char *data = hsrv_body(c->req, &len);

    if (want == NULL)
        return true;
    content_hash_buf(data, len, got);
    return strcmp(want, got) == 0;
}

static const struct api_field start_fields[] = {
    {"close", ARG_BOOL, false},
    {"session_type", ARG_ANY, false},
    {"content_hash", ARG_STRING, false},
};

void files_upload_session_start(struct api_call *c)
{
    struct store *s = c->store;
    char id[SESSION_ID_CHARS + 1];
    sqlite3_stmt *st;
    uint64_t size = 0;
    json_t *result;
    int rc;

    if (api_arg_check(c, start_fields, ARRAY_LEN(start_fields)) < 0)
        return;
    if (!session_body_hash_ok(c)) {
        api_route_error(c, api_tag("content_hash_mismatch", NULL));
        return;
    }
    rand_urlsafe(id, SESSION_ID_CHARS);
    store_lock(s);
    st = db_prepare(s->db, "INSERT INTO upload_sessions (id, account,"
                           " size, created_at) VALUES (?1, ?2, 0, ?3)");
    db_bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, c->auth.account);
    sqlite3_bind_int64(st, 3, time_now_s());
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    sqlite3_finalize(st);
    store_unlock(s);
    if (rc < 0 || session_write(s, id, 0, "", 0) < 0 ||
        session_append(c, id, 0, api_arg_bool(c, "close", false), false,
                       &size) != SESSION_OK) {
        api_internal_error(c);
        return;
    }
    LOG_I("upload session started account=%s session=%.8s size=%llu",
          c->auth.account_id, id, (unsigned long long)size);
    result = json_object();
    json_object_set_new(result, "session_id", json_string(id));
    api_reply_json(c, result);
}

/* The session id and offset of an UploadSessionCursor; 400 if bad. */
static int session_cursor(struct api_call *c, const char **id,
                          uint64_t *offset)
{
    json_t *cur = json_object_get(c->arg, "cursor");
    json_t *sid = json_object_get(cur, "session_id");
    json_t *off = json_object_get(cur, "offset");

    if (!json_is_object(cur) || !json_is_string(sid) ||
        !json_is_integer(off) || json_integer_value(off) < 0 ||
        json_object_size(cur) != 2) {
        api_bad_input(c, "%s: cursor: expected an object with"
                         " 'session_id' (string) and 'offset' (unsigned"
                         " integer)", c->arg_from);
        return -1;
    }
    *id = json_string_value(sid);
    *offset = (uint64_t)json_integer_value(off);
    return 0;
}

static const struct api_field append_fields[] = {
    {"cursor", ARG_ANY, true},
    {"close", ARG_BOOL, false},
    {"content_hash", ARG_STRING, false},
};

void files_upload_session_append(struct api_call *c)
{
    const char *id;
    uint64_t offset, size = 0;
    enum session_err err;

    if (api_arg_check(c, append_fields, ARRAY_LEN(append_fields)) < 0 ||
        session_cursor(c, &id, &offset) < 0)
        return;
    if (!session_body_hash_ok(c)) {
        api_route_error(c, api_tag("content_hash_mismatch", NULL));
        return;
    }
    err = session_append(c, id, offset, api_arg_bool(c, "close", false),
                         false, &size);
    if (err == SESSION_OK)
        hsrv_reply_str(c->resp, 200, "application/json", "null");
    else if (err == SESSION_FAILED)
        api_internal_error(c);
    else
        api_route_error(c, session_lookup_error(err, size));
}

/* Links the session's bytes into the staging area and hashes them.
 * Returns the staged path (caller frees) or NULL. */
static char *session_stage(struct store *s, const char *id,
                           char hash[SIG_HEX_LEN + 1])
{
    char *src = session_path(s, id), name[25];
    char *dst, *chunk = xmalloc(SESSION_READ_CHUNK);
    struct content_hash ch;
    int fd = open(src, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : 0;

    content_hash_init(&ch);
    while (fd >= 0 &&
           (n = read(fd, chunk, SESSION_READ_CHUNK)) > 0)
        content_hash_update(&ch, chunk, (size_t)n);
    if (fd >= 0)
        close(fd);
    content_hash_final(&ch, hash);
    free(chunk);
    rand_urlsafe(name, 24);
    dst = xasprintf("%s/tmp/%s", s->blob_dir, name);
    if (n < 0 || link(src, dst) < 0) {
        LOG_E("session stage failed path=%s errno=%d", src, errno);
        free(dst);
        dst = NULL;
    }
    free(src);
    return dst;
}

/* Ends the session after a successful finish. */
static void session_end(struct store *s, const char *id)
{
    char *path = session_path(s, id);
    sqlite3_stmt *st;

    store_lock(s);
    st = db_prepare(s->db, "DELETE FROM upload_sessions WHERE id = ?1");
    db_bind_text(st, 1, id);
    sqlite3_step(st);
    sqlite3_finalize(st);
    store_unlock(s);
    unlink(path);
    free(path);
}

static const struct api_field finish_fields[] = {
    {"cursor", ARG_ANY, true},
    {"commit", ARG_ANY, true},
    {"content_hash", ARG_STRING, false},
};

static const char *const commit_fields[] = {
    "path", "mode", "autorename", "client_modified", "mute",
    "property_groups", "strict_conflict",
};

/* Checks the CommitInfo object and reads it into u (path in *d, *l). */
static int finish_commit(struct api_call *c, struct fsop_upload *u,
                         char **d, char **l)
{
    json_t *commit = json_object_get(c->arg, "commit"), *v;
    const char *key, *path;

    json_object_foreach(commit, key, v)
    {
        size_t i = 0;

        while (i < ARRAY_LEN(commit_fields) && strcmp(commit_fields[i], key))
            i++;
        if (i == ARRAY_LEN(commit_fields)) {
            api_bad_input(c, "%s: commit: unknown field '%s'", c->arg_from,
                          key);
            return -1;
        }
    }
    path = json_string_value(json_object_get(commit, "path"));
    if (!json_is_object(commit) || path == NULL) {
        api_bad_input(c, "%s: commit: missing required field 'path'",
                      c->arg_from);
        return -1;
    }
    if (files_commit_info(c, commit, u) < 0)
        return -1;
    if (path[0] != '/' || pathx_normalize(path, false, d, l) != PATHX_OK) {
        api_route_error(c, api_tag("path", api_tag("malformed_path",
                                                   NULL)));
        return -1;
    }
    u->display = *d;
    u->lower = *l;
    return 0;
}

/* Stores the session's bytes as the commit says and answers. */
static void finish_store(struct api_call *c, const char *id,
                         struct fsop_upload *u, uint64_t size)
{
    const char *want = api_arg_str(c, "content_hash");
    char hash[SIG_HEX_LEN + 1];
    json_t *meta = NULL;
    enum fsop_error err;
    char *staged = session_stage(c->store, id, hash);

    if (staged == NULL) {
        api_internal_error(c);
        return;
    }
    if (want != NULL && strcmp(want, hash) != 0) {
        unlink(staged);
        free(staged);
        api_route_error(c, api_tag("content_hash_mismatch", NULL));
        return;
    }
    u->staged = staged;
    u->staged_hash = hash;
    u->len = (size_t)size;
    err = fsop_upload(c->store, u, &meta);
    free(staged);
    if (err == FSOP_OK) {
        session_end(c->store, id);
        api_reply_json(c, meta);
    } else if (err == FSOP_INTERNAL) {
        api_internal_error(c);
    } else {
        api_route_error(c, api_tag("path", files_write_error(err)));
    }
}

void files_upload_session_finish(struct api_call *c)
{
    struct fsop_upload u = {.account = c->auth.account};
    char *display = NULL, *lower = NULL;
    const char *id;
    uint64_t offset, size = 0;
    enum session_err err;

    if (api_arg_check(c, finish_fields, ARRAY_LEN(finish_fields)) < 0 ||
        session_cursor(c, &id, &offset) < 0 ||
        finish_commit(c, &u, &display, &lower) < 0)
        goto out;
    err = session_append(c, id, offset, true, true, &size);
    if (err == SESSION_FAILED)
        api_internal_error(c);
    else if (err != SESSION_OK)
        api_route_error(c, api_tag("lookup_failed",
                                   session_lookup_error(err, size)));
    else
        finish_store(c, id, &u, size);
out:
    free(display);
    free(lower);
}
