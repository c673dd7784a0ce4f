/*
 * fsops: the changes the file API makes to an account's namespace.
 *
 * Each operation is one transaction under the store lock: it updates the
 * entries, appends the journal rows of the change, marks the account
 * pending for the notifier (notifier_mark_pending_tx), commits, and then
 * wakes the notifier.  An operation that changes nothing (an upload of
 * the very content already there) writes nothing at all.
 */
#ifndef DBX_CLOUD_FSOPS_H
#define DBX_CLOUD_FSOPS_H

#include "cloud/store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Why an operation did not happen; the file API maps each to the
 * Dropbox error union of the route. */
enum fsop_error {
    FSOP_OK = 0,
    FSOP_NOT_FOUND,         /* lookup: not_found */
    FSOP_CONFLICT_FILE,     /* a file is in the way */
    FSOP_CONFLICT_FOLDER,   /* a folder is in the way */
    FSOP_FILE_ANCESTOR,     /* a parent of the path is a file */
    FSOP_INTO_ITSELF,       /* a folder moved or copied into itself */
    FSOP_TOO_MANY,          /* a relocation of too many entries */
    FSOP_INTERNAL,          /* storage failed; answered with 500 */
};

enum fsop_mode { FSOP_ADD, FSOP_OVERWRITE, FSOP_UPDATE };

struct fsop_upload {
    int64_t account;          /* accounts.id */
    const char *display;      /* normalized target path */
    const char *lower;
    enum fsop_mode mode;
    const char *update_rev;   /* FSOP_UPDATE: the rev being replaced */
    bool autorename;          /* on conflict, store as "name (n).ext" */
    bool strict;              /* strict_conflict */
    bool has_client_modified;
    int64_t client_modified;  /* unix seconds */
    const void *data;
    size_t len;
    /* Or, instead of data: a file already staged in the blob directory
     * (consumed: adopted or removed) with its content_hash; len still
     * gives its size. */
    const char *staged;
    const char *staged_hash;
};

/* Stores a file (an identical file already at the path is left as it
 * is: no revision, no journal row).  On FSOP_OK sets *meta to its metadata (new
 * reference); otherwise *meta is NULL. */
enum fsop_error fsop_upload(struct store *s, const struct fsop_upload *u,
                            json_t **meta);

/* Deletes the file or folder (and everything below it) at lower, or
 * with file id id when lower is NULL.  On FSOP_OK sets *meta to the
 * metadata it had (new reference). */
enum fsop_error fsop_delete(struct store *s, int64_t account,
                            const char *lower, const char *id,
                            const char *parent_rev, json_t **meta);

/* Creates a folder (and its missing parents).  *meta: its metadata. */
enum fsop_error fsop_create_folder(struct store *s, int64_t account,
                                   const char *display, const char *lower,
                                   bool autorename, json_t **meta);

/* Moves (copy false) or copies the entry at from_lower and everything
 * below it to to_display.  A move keeps the ids; a change of case only
 * rewrites the display paths without a journal row.  *meta: the
 * metadata of the entry at its new place. */
struct fsop_relocation {
    int64_t account;
    const char *from_lower;
    const char *to_display;
    const char *to_lower;
    bool copy;
    bool autorename;
};
enum fsop_error fsop_relocate(struct store *s,
                              const struct fsop_relocation *r,
                              json_t **meta);

#endif
