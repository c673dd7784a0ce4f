#include "common/jsonx.h"

#include <stdlib.h>

size_t jsonx_utf8_next(const unsigned char *s, uint32_t *cp)
{
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    uint32_t v = s[0] & (0x3f >> (len > 0 ? len - 1 : 0));

    if (s[0] < 0xc2 || s[0] > 0xf4) /* continuation, overlong, too big */
        len = 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) { /* also stops at the NUL */
            len = 0;
            break;
        }
        v = (v << 6) | (s[i] & 0x3f);
    }
    /* Overlong three- and four-byte forms decode below their range. */
    if (len == 0 || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff) ||
        (len == 3 && v < 0x800) || (len == 4 && v < 0x10000)) {
        *cp = 0xfffd;
        return 1;
    }
    *cp = v;
    return len;
}

static void jsonx_append_escape(struct buf *b, uint32_t cp)
{
    if (cp < 0x10000) {
        buf_appendf(b, "\\u%04x", (unsigned)cp);
        return;
    }
    cp -= 0x10000;
    buf_appendf(b, "\\u%04x\\u%04x", 0xd800 + (unsigned)(cp >> 10),
                0xdc00 + (unsigned)(cp & 0x3ff));
}

void jsonx_append_string(struct buf *b, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;

    buf_append(b, "\"", 1);
    while (*s != '\0') {
        uint32_t cp = *s;
        size_t len = cp < 0x80 ? 1 : jsonx_utf8_next(s, &cp);
        const char *esc = cp == '"' ? "\\\"" : cp == '\\' ? "\\\\"
                        : cp == '\n' ? "\\n" : cp == '\r' ? "\\r"
                        : cp == '\t' ? "\\t" : cp == '\b' ? "\\b"
                        : cp == '\f' ? "\\f" : NULL;

        if (esc != NULL)
            buf_append(b, esc, 2);
        else if (cp >= 0x20 && cp < 0x7f)
            buf_append(b, s, 1);
        else
            jsonx_append_escape(b, cp);
        s += len;
    }
    buf_append(b, "\"", 1);
}

char *jsonx_dumps_ascii(const json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT);
    const unsigned char *p = (const unsigned char *)text;
    struct buf b;

    buf_init(&b, 0);
    /* jansson escapes control characters itself and writes valid UTF-8;
     * only what is above ASCII, and DEL, is left to escape. */
    while (p != NULL && *p != '\0') {
        uint32_t cp = *p;
        size_t len = 1;

        if (cp < 0x7f) {
            buf_append(&b, p++, 1);
            continue;
        }
        if (cp > 0x7f)
            len = jsonx_utf8_next(p, &cp);
        jsonx_append_escape(&b, cp);
        p += len;
    }
    free(text);
    return buf_steal(&b);
}
