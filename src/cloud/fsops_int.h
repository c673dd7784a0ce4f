/*
 * fsops_int: helpers shared by the fsops*.c files (not by callers of
 * fsops.h).  All expect the store lock held, inside a write transaction
 * where they write.
 */
#ifndef DBX_CLOUD_FSOPS_INT_H
#define DBX_CLOUD_FSOPS_INT_H

#include "cloud/fsops.h"

/* Deepest path that an operation may create parents for, in
 * components. */
#define FSOP_DEPTH_MAX 256
/* Highest n tried for "name (n).ext" before giving up. */
#define FSOP_AUTORENAME_MAX 10000

/* Writes e as the row of its path (insert or replace in place). */
int fsop_entry_put(struct store *s, int64_t account, const struct entry *e);

/* A fresh "id:..." (caller frees). */
char *fsop_new_file_id(void);

/* A fresh rev for change seq: 9+ lowercase hex digits (caller frees). */
char *fsop_new_rev(int64_t seq);

/* Records file e (rev, id, path, content) as a revision. */
int fsop_revision_add(struct store *s, int64_t account,
                      const struct entry *e);

/* The first free "name (n).ext" (or "name (n)" for a folder) beside
 * display.  Sets *out_display and *out_lower (caller frees); 0 or -1. */
int fsop_autorename(struct store *s, int64_t account, const char *display,
                    bool is_file, char **out_display, char **out_lower);

/* The missing ancestors of a path, deepest first. */
struct fsop_ancestors {
    char *display[FSOP_DEPTH_MAX];
    char *lower[FSOP_DEPTH_MAX];
    int count;
};

/* Walks up from the parent of lower until an existing folder and
 * collects the missing (or deleted) ones; a file on the way is
 * FSOP_FILE_ANCESTOR.  Release with fsop_ancestors_free. */
enum fsop_error fsop_ancestors_check(struct store *s, int64_t account,
                                     const char *display,
                                     const char *lower,
                                     struct fsop_ancestors *a);
/* Creates the collected folders top-down, one journal row each. */
int fsop_ancestors_create(struct store *s, int64_t account,
                          const struct fsop_ancestors *a);
void fsop_ancestors_free(struct fsop_ancestors *a);

#endif
