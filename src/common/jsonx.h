/*
 * jsonx: JSON text written the way Dropbox's own Python writes it.
 *
 * Python's json.dumps (ensure_ascii, its default) escapes every character
 * outside printable ASCII as \uXXXX with lowercase hex, and characters
 * above U+FFFF as a surrogate pair.  Dropbox uses that form for webhook
 * bodies and for JSON carried in HTTP headers (Dropbox-API-Arg,
 * Dropbox-API-Result), where raw UTF-8 is not allowed.
 */
#ifndef DBX_JSONX_H
#define DBX_JSONX_H

#include "common/util.h"

#include <jansson.h>
#include <stdint.h>

/* Decodes one UTF-8 sequence at s (s[0] >= 0x80).  Sets *cp and returns
 * its length; an invalid or truncated sequence reads as U+FFFD of
 * length 1, so callers always make progress. */
size_t jsonx_utf8_next(const unsigned char *s, uint32_t *cp);

/* Appends str as a quoted JSON string in json.dumps's escaping. */
void jsonx_append_string(struct buf *b, const char *str);

/* v serialized compactly with every non-ASCII character and DEL escaped
 * (lowercase hex); fit for an HTTP header.  Caller frees. */
char *jsonx_dumps_ascii(const json_t *v);

#endif
