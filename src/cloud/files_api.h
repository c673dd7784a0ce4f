/*
 * files_api: the files/... routes of API v2.  Each handler receives a
 * call whose caller is authenticated, whose scope is checked and whose
 * argument is decoded (api.h), checks the argument's fields and answers.
 *
 * The list_folder family lives in listing.c, longpoll in longpoll.c,
 * upload in files_upload.c, upload sessions in upload_session.c, create
 * folder, move and copy in files_move.c, list_revisions in revisions.c,
 * the others in files_api.c.
 */
#ifndef DBX_CLOUD_FILES_API_H
#define DBX_CLOUD_FILES_API_H

#include "cloud/api.h"
#include "cloud/fsops.h"
#include "cloud/store.h"

#include <jansson.h>

void files_list_folder(struct api_call *c);
void files_list_folder_continue(struct api_call *c);
void files_get_latest_cursor(struct api_call *c);
void files_get_metadata(struct api_call *c);
void files_delete(struct api_call *c);
void files_upload(struct api_call *c);
void files_download(struct api_call *c);
void files_list_folder_longpoll(struct api_call *c);
void files_create_folder(struct api_call *c);
void files_move(struct api_call *c);
void files_copy(struct api_call *c);
void files_list_revisions(struct api_call *c);
void files_upload_session_start(struct api_call *c);
void files_upload_session_append(struct api_call *c);
void files_upload_session_finish(struct api_call *c);

/* The WriteError union (new reference) for a failed write. */
json_t *files_write_error(enum fsop_error err);

/* The revision rev of the account as a file entry (release with
 * store_entry_clear).  Takes the store lock.  0 found, 1 none, -1. */
int files_revision_get(struct store *s, int64_t account, const char *rev,
                       struct entry *out);

/* Reads the WriteMode, autorename, strict_conflict and client_modified
 * of an upload (from obj: the argument, or a commit) into u.  Answers
 * 400 and returns -1 on a bad value. */
int files_commit_info(struct api_call *c, const json_t *obj,
                      struct fsop_upload *u);

/* Where a path argument points. */
enum files_lookup {
    FILES_FOUND,      /* *e holds the row (maybe a tombstone) */
    FILES_ROOT,       /* the root folder; no row */
    FILES_ABSENT,     /* a well-formed path without a row */
    FILES_MALFORMED,  /* not a valid path */
    FILES_FAILED,     /* storage error */
};

/* Resolves a path argument ("", "/...", "id:...") of the caller.  The
 * lower form goes to *lower (caller frees) whenever the path is
 * well-formed (the id's path for "id:...").  Takes the store lock. */
enum files_lookup files_resolve(struct api_call *c, const char *path,
                                bool allow_root, struct entry *e,
                                char **lower);

/* {".tag": outer, outer: {".tag": inner}} as a route error. */
json_t *files_lookup_error(const char *outer, const char *inner);

/* Checks the "path" field against a Dropbox path pattern: root_ok lets
 * "" through, others need "/...", "id:..." (and, where reads allow,
 * "rev:..." or "ns:...").  Answers 400 and returns -1 on mismatch. */
int files_check_path_pattern(struct api_call *c, const char *path,
                             bool root_ok, const char *pattern);

#endif
