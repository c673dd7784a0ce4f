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

int notification_parse(const char *body, size_t len, char ***accounts,
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
