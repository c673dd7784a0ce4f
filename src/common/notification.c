#include "common/notification.h"

#include "common/jsonx.h"
#include "common/util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

bool notification_account_valid(const char *account)
{
    size_t len;

    if (account == NULL || strncmp(account, "dbid:", 5) != 0)
        return false;
    len = strlen(account);
    if (len <= 5 || len > NOTIFICATION_ACCOUNT_MAX)
        return false;
    for (size_t i = 5; i < len; i++) {
        char c = account[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

char *notification_body(const char *const *accounts, const int64_t *uids,
                        size_t n)
{
    struct buf b;

    buf_init(&b, 0);
    buf_appendf(&b, "{\"list_folder\": {\"accounts\": [");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            buf_append(&b, ", ", 2);
        jsonx_append_string(&b, accounts[i]);
    }
    buf_appendf(&b, "]}, \"delta\": {\"users\": [");
    for (size_t i = 0; i < n; i++)
        buf_appendf(&b, "%s%lld", i > 0 ? ", " : "", (long long)uids[i]);
    buf_appendf(&b, "]}}");
    return buf_steal(&b);
}

/* ---- the sender's exact layout ---------------------------------------- */

/* Longest user id matched here (digits); longer ones, as any other
 * layout, go to the JSON library. */
#define NOTIFICATION_UID_DIGITS_MAX 18

/* p past lit when the input continues with lit, else NULL. */
static const char *nf_lit(const char *p, const char *end, const char *lit)
{
    size_t n = strlen(lit);

    if (p == NULL || (size_t)(end - p) < n || memcmp(p, lit, n) != 0)
        return NULL;
    return p + n;
}

/* A quoted valid account id whose bytes are the id itself (no escape:
 * valid ids have no character that needs one); NULL when the input does
 * not continue so.  *id receives the id, NUL-terminated. */
static const char *nf_account(const char *p, const char *end,
                              char id[NOTIFICATION_ACCOUNT_MAX + 1])
{
    const char *q;

    if (p == NULL || p == end || *p != '"')
        return NULL;
    p++;
    q = memchr(p, '"', (size_t)(end - p));
    /* A NUL would end the copy early: JSON has no raw control bytes. */
    if (q == NULL || (size_t)(q - p) > NOTIFICATION_ACCOUNT_MAX ||
        memchr(p, '\0', (size_t)(q - p)) != NULL)
        return NULL;
    memcpy(id, p, (size_t)(q - p));
    id[q - p] = '\0';
    return notification_account_valid(id) ? q + 1 : NULL;
}

/* A JSON integer that is a user id: 0, or 1 to NOTIFICATION_UID_DIGITS_MAX
 * digits without a leading zero. */
static const char *nf_uid(const char *p, const char *end)
{
    const char *q = p;

    if (p == NULL)
        return NULL;
    while (q < end && *q >= '0' && *q <= '9')
        q++;
    if (q == p || q - p > NOTIFICATION_UID_DIGITS_MAX ||
        (*p == '0' && q - p > 1))
        return NULL;
    return q;
}

/* Walks "[item, item, ...]" (or "[]") with one item parser; ids (may be
 * NULL) receives up to max account ids.  Returns past the "]" and the
 * count in *count, or NULL. */
static const char *nf_list(const char *p, const char *end, bool accounts,
                           char (*ids)[NOTIFICATION_ACCOUNT_MAX + 1],
                           size_t max, size_t *count)
{
    char id[NOTIFICATION_ACCOUNT_MAX + 1];

    *count = 0;
    p = nf_lit(p, end, "[");
    if (nf_lit(p, end, "]") != NULL)
        return p + 1;
    while (p != NULL) {
        p = accounts ? nf_account(p, end, id) : nf_uid(p, end);
        if (p == NULL || (accounts && *count == max))
            return NULL;
        if (accounts && ids != NULL)
            memcpy(ids[*count], id, sizeof id);
        (*count)++;
        if (nf_lit(p, end, "]") != NULL)
            return p + 1;
        p = nf_lit(p, end, ", ");
    }
    return NULL;
}

/* Matches body against the sender's layout: 1 (matched, accounts set),
 * 0 (some other layout).  ids holds room for max ids. */
static int nf_match(const char *body, size_t len,
                    char (*ids)[NOTIFICATION_ACCOUNT_MAX + 1], size_t max,
                    size_t *count)
{
    const char *end = body + len;
    const char *p = nf_lit(body, end, "{\"list_folder\": {\"accounts\": ");
    size_t users;

    if (p == NULL)
        return 0;
    p = nf_list(p, end, true, ids, max, count);
    p = nf_lit(p, end, "}, \"delta\": {\"users\": ");
    if (p == NULL)
        return 0;
    p = nf_list(p, end, false, NULL, 0, &users);
    p = nf_lit(p, end, "}}");
    return p != NULL && p == end;
}

/* Most accounts the exact-layout path takes; a notification names one
 * account as a rule, and more go to the JSON library. */
#define NOTIFICATION_FAST_MAX 8

int notification_parse(const char *body, size_t len, char ***accounts,
                       size_t *n)
{
    char ids[NOTIFICATION_FAST_MAX][NOTIFICATION_ACCOUNT_MAX + 1];
    size_t count = 0;

    if (body == NULL ||
        !nf_match(body, len, ids, NOTIFICATION_FAST_MAX, &count))
        return notification_parse_json(body, len, accounts, n);
    *accounts = xcalloc(count ? count : 1, sizeof **accounts);
    for (size_t i = 0; i < count; i++)
        (*accounts)[i] = xstrdup(ids[i]);
    *n = count;
    return 0;
}

/* ---- any layout ---------------------------------------------------------- */

int notification_parse_json(const char *body, size_t len, char ***accounts,
                            size_t *n)
{
    json_t *root = json_loadb(body != NULL ? body : "", len,
                              JSON_REJECT_DUPLICATES, NULL);
    json_t *list, *item;
    size_t i, count;
    int rc = -1;

    *accounts = NULL;
    *n = 0;
    list = json_object_get(json_object_get(root, "list_folder"), "accounts");
    if (!json_is_object(root) || !json_is_array(list))
        goto out;
    count = json_array_size(list);
    if (count > NOTIFICATION_ACCOUNTS_MAX)
        goto out;
    json_array_foreach(list, i, item) {
        if (!notification_account_valid(json_string_value(item)))
            goto out;
    }
    *accounts = xcalloc(count ? count : 1, sizeof **accounts);
    json_array_foreach(list, i, item)
        (*accounts)[i] = xstrdup(json_string_value(item));
    *n = count;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

void notification_accounts_free(char **accounts, size_t n)
{
    for (size_t i = 0; accounts != NULL && i < n; i++)
        free(accounts[i]);
    free(accounts);
}
