/*
 * pathx: Dropbox paths.
 *
 * A path is "" (the root, only where an endpoint allows it) or "/"
 * followed by components separated by single slashes; no trailing slash,
 * no "." or ".." component, valid UTF-8, no NUL or control characters.
 * Display case is kept as given (after NFC normalisation); the lower form
 * is the NFC case fold, used for every comparison.
 */
#ifndef DBX_PATHX_H
#define DBX_PATHX_H

#include <stdbool.h>

#define PATHX_MAX 4096

enum pathx_status {
    PATHX_OK = 0,
    PATHX_MALFORMED = -1, /* the real service says "malformed_path" */
};

/* On PATHX_OK sets *display (NFC, caller frees) and *lower (case-folded
 * NFC, caller frees).  allow_root accepts "" (and "/", read as ""). */
enum pathx_status pathx_normalize(const char *in, bool allow_root,
                                  char **display, char **lower);

/* Case-folded NFC of any UTF-8 string (a name, a suffix); NULL if the
 * input is not valid UTF-8.  Caller frees. */
char *pathx_fold(const char *s);

/* The parent of a normalized path ("/a/b" -> "/a", "/a" -> ""); new
 * string.  The last component ("/a/b" -> "b"): a pointer into path. */
char *pathx_parent(const char *path);
const char *pathx_name(const char *path);

/* True when path equals prefix or lies below it; both lower forms.  The
 * root "" contains everything. */
bool pathx_is_under(const char *path_lower, const char *prefix_lower);

#endif
