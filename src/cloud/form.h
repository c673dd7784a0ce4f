/*
 * form: application/x-www-form-urlencoded bodies (the OAuth token
 * endpoint and the authorize page's form), and the escaping needed to
 * write URLs and HTML.
 */
#ifndef DBX_CLOUD_FORM_H
#define DBX_CLOUD_FORM_H

#include "common/util.h"

#include <jansson.h>
#include <stddef.h>

/* Most fields one form may carry; more make the form malformed. */
#define FORM_FIELDS_MAX 64

/* Decodes "a=1&b=x%20y" into a new JSON object of strings (the first
 * value of a repeated name wins).  Returns NULL when text is malformed
 * (bad %-escape, not UTF-8, too many fields). */
json_t *form_decode(const char *text, size_t len);

/* Appends s %-encoded for a query component. */
int form_append_encoded(struct buf *b, const char *s);

/* Appends s with &, <, >, " and ' escaped for HTML. */
int form_append_html(struct buf *b, const char *s);

#endif
