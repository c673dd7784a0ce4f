/*
 * cursor: list_folder cursors, opaque to clients and tamper-evident.
 *
 * A cursor is the base64url text of a small binary record followed by a
 * truncated HMAC-SHA256 of that record, keyed with a server key kept in
 * the data directory (cursor.key).  The record says whose listing it is,
 * what was listed, and how far the client has read: either a position in
 * a first listing still in progress, or a journal sequence number after
 * which changes have not been seen yet.
 */
#ifndef DBX_CLOUD_CURSOR_H
#define DBX_CLOUD_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CURSOR_KEY_LEN 32
/* Longest cursor text accepted; longer input is malformed, not parsed. */
#define CURSOR_TEXT_MAX 12288

struct cursor {
    int64_t account;      /* accounts.id of the owner */
    int64_t seq;          /* journal rows after this seq are unseen */
    uint32_t limit;       /* page size chosen by the first call */
    bool recursive;
    bool include_deleted;
    bool listing;         /* a first listing is still in progress */
    char *prefix;         /* lower path of the listed folder ("" root) */
    char *position;       /* listing: last path_lower sent, else NULL */
};

/* Returns the cursor text (caller frees). */
char *cursor_encode(const struct cursor *c,
                    const unsigned char key[CURSOR_KEY_LEN]);

/* Parses and authenticates text.  On success fills *out (release with
 * cursor_clear) and returns 0; otherwise returns -1 and points *why at a
 * static description ("malformed", "bad signature", ...). */
int cursor_decode(const char *text, const unsigned char key[CURSOR_KEY_LEN],
                  struct cursor *out, const char **why);

/* Frees the strings of c and zeroes it. */
void cursor_clear(struct cursor *c);

/* Loads the key from path, creating it (random, mode 0600) when the file
 * does not exist.  Returns 0 or -1. */
int cursor_key_load(const char *path, unsigned char key[CURSOR_KEY_LEN]);

#endif
