/*
 * pathx: validation and normalisation of Dropbox paths with utf8proc.
 *
 * The input is checked byte by byte and code point by code point before
 * utf8proc transforms it, so every rejection has one clear reason and the
 * transforms only ever see valid UTF-8.
 */
#include "common/pathx.h"

#include "common/util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <utf8proc.h>

/* Valid UTF-8 without control characters (C0, DEL, C1). */
static bool pathx_text_ok(const char *s, size_t len)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    utf8proc_ssize_t left = (utf8proc_ssize_t)len;

    while (left > 0) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);

        if (n <= 0 || cp < 0)
            return false;
        if (utf8proc_category(cp) == UTF8PROC_CATEGORY_CC)
            return false;
        p += n;
        left -= n;
    }
    return true;
}

/* Components between single slashes, none empty, none "." or "..". */
static bool pathx_components_ok(const char *s)
{
    if (s[0] != '/')
        return false;
    while (*s == '/') {
        const char *start = s + 1;
        const char *end = strchr(start, '/');
        size_t n = end ? (size_t)(end - start) : strlen(start);

        if (n == 0)
            return false;
        if ((n == 1 && start[0] == '.') ||
            (n == 2 && start[0] == '.' && start[1] == '.'))
            return false;
        s = start + n;
    }
    return true;
}

static enum pathx_status pathx_root(bool allow_root, char **display,
                                    char **lower)
{
    if (!allow_root)
        return PATHX_MALFORMED;
    *display = xstrdup("");
    *lower = xstrdup("");
    return PATHX_OK;
}

enum pathx_status pathx_normalize(const char *in, bool allow_root,
                                  char **display, char **lower)
{
    size_t len;
    char *nfc = NULL, *folded = NULL;

    *display = *lower = NULL;
    if (in == NULL)
        return PATHX_MALFORMED;
    if (in[0] == '\0' || strcmp(in, "/") == 0)
        return pathx_root(allow_root, display, lower);

    len = strlen(in);
    if (len > PATHX_MAX || !pathx_text_ok(in, len) || !pathx_components_ok(in))
        return PATHX_MALFORMED;

    nfc = (char *)utf8proc_NFC((const utf8proc_uint8_t *)in);
    if (nfc == NULL || strlen(nfc) > PATHX_MAX)
        goto fail;
    folded = pathx_fold(nfc);
    if (folded == NULL)
        goto fail;
    *display = nfc;
    *lower = folded;
    return PATHX_OK;

fail:
    free(nfc);
    return PATHX_MALFORMED;
}

char *pathx_fold(const char *s)
{
    utf8proc_uint8_t *out = NULL;
    utf8proc_ssize_t n;

    if (s == NULL)
        return NULL;
    n = utf8proc_map((const utf8proc_uint8_t *)s, 0, &out,
                     UTF8PROC_NULLTERM | UTF8PROC_STABLE | UTF8PROC_COMPOSE |
                         UTF8PROC_CASEFOLD);
    if (n < 0)
        return NULL;
    return (char *)out;
}

char *pathx_parent(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        return xstrdup("");
    return xstrndup(path, (size_t)(slash - path));
}

const char *pathx_name(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash ? slash + 1 : path;
}

bool pathx_is_under(const char *path_lower, const char *prefix_lower)
{
    size_t n = strlen(prefix_lower);

    if (n == 0)
        return true;
    return strncmp(path_lower, prefix_lower, n) == 0 &&
           (path_lower[n] == '\0' || path_lower[n] == '/');
}
