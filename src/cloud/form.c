/*
 * form: url-encoded forms and escaping.
 */
#include "cloud/form.h"

#include "common/util.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Decodes one name or value of len bytes into out (which holds len + 1
 * bytes).  Returns 0, or -1 on a bad %-escape. */
static int form_unescape(const char *in, size_t len, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        int hi, lo;

        if (in[i] != '%') {
            out[o++] = in[i] == '+' ? ' ' : in[i];
            continue;
        }
        if (i + 2 >= len)
            return -1;
        hi = hex_digit_value(in[i + 1]);
        lo = hex_digit_value(in[i + 2]);
        if (hi < 0 || lo < 0 || hi + lo == 0) /* no NUL in a field */
            return -1;
        out[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[o] = '\0';
    return 0;
}

json_t *form_decode(const char *text, size_t len)
{
    json_t *o = json_object();
    size_t pos = 0, fields = 0;

    while (pos < len) {
        const char *start = text + pos;
        const char *amp = memchr(start, '&', len - pos);
        size_t flen = amp ? (size_t)(amp - start) : len - pos;
        const char *eq = memchr(start, '=', flen);
        size_t nlen = eq ? (size_t)(eq - start) : flen;
        char *name = xmalloc(nlen + 1), *value = xmalloc(flen + 1);
        int rc = form_unescape(start, nlen, name);

        if (rc == 0)
            rc = form_unescape(eq ? eq + 1 : "", eq ? flen - nlen - 1 : 0,
                               value);
        if (rc == 0 && flen > 0 && json_object_get(o, name) == NULL) {
            json_t *v = json_string(value);

            rc = v == NULL || ++fields > FORM_FIELDS_MAX ? -1 : 0;
            json_object_set_new(o, name, v ? v : json_null());
        }
        free(name);
        free(value);
        if (rc < 0) {
            json_decref(o);
            return NULL;
        }
        pos += flen + 1;
    }
    return o;
}

int form_append_encoded(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        bool plain = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                     (ch >= '0' && ch <= '9') || strchr("-._~", ch);
        char esc[3] = {'%', hex[ch >> 4], hex[ch & 15]};

        if (!plain) {
            if (buf_append(b, esc, 3) < 0)
                return -1;
        } else if (buf_append(b, s, 1) < 0) {
            return -1;
        }
    }
    return 0;
}

int form_append_html(struct buf *b, const char *s)
{
    for (; *s != '\0'; s++) {
        const char *rep = NULL;

        switch (*s) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: break;
        }
        if (buf_append(b, rep ? rep : s, rep ? strlen(rep) : 1) < 0)
            return -1;
    }
    return 0;
}
