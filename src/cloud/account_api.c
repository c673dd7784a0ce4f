/*
 * account_api: users/get_current_account and auth/token/revoke.
 *
 * The real service knows much more about a person than we do; the fields
 * it always sends are filled from the account row (name and email) or
 * with the values of a plain personal account.
 */
#include "cloud/account_api.h"

#include "common/db.h"
#include "common/log.h"
#include "common/util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* Longest display name we split into given name and surname. */
#define ACCOUNT_NAME_MAX 512
/* Space of a Basic account: 2 GiB, as the real service allocates. */
#define ACCOUNT_ALLOCATED (2ll * 1024 * 1024 * 1024)

/* {given_name, surname, familiar_name, display_name, abbreviated_name}
 * from a display name: the first word is the given name. */
static json_t *account_name(const char *display)
{
    char given[ACCOUNT_NAME_MAX], abbrev[8] = "";
    const char *space = strchr(display, ' ');
    const char *surname = space ? space + 1 : "";
    size_t glen = space ? (size_t)(space - display) : strlen(display);
    json_t *o = json_object();

    if (glen >= sizeof given)
        glen = sizeof given - 1;
    memcpy(given, display, glen);
    given[glen] = '\0';
    if (given[0] != '\0' && isascii((unsigned char)given[0]))
        abbrev[0] = (char)toupper((unsigned char)given[0]);
    if (surname[0] != '\0' && isascii((unsigned char)surname[0]))
        abbrev[strlen(abbrev)] = (char)toupper((unsigned char)surname[0]);

    json_object_set_new(o, "given_name", json_string(given));
    json_object_set_new(o, "surname", json_string(surname));
    json_object_set_new(o, "familiar_name", json_string(given));
    json_object_set_new(o, "display_name", json_string(display));
    json_object_set_new(o, "abbreviated_name", json_string(abbrev));
    return o;
}

static json_t *account_root_info(int64_t uid)
{
    json_t *o = json_object();
    char *ns = xasprintf("%lld", (long long)(uid * 1000 + 7));

    json_object_set_new(o, ".tag", json_string("user"));
    json_object_set_new(o, "root_namespace_id", json_string(ns));
    json_object_set_new(o, "home_namespace_id", json_string(ns));
    free(ns);
    return o;
}

static json_t *account_full(sqlite3_stmt *st)
{
    const char *account_id = (const char *)sqlite3_column_text(st, 0);
    int64_t uid = sqlite3_column_int64(st, 1);
    const char *email = (const char *)sqlite3_column_text(st, 2);
    const char *name = (const char *)sqlite3_column_text(st, 3);
    json_t *o = json_object();
    char *referral = xasprintf("https://db.tt/dbxhook%lld", (long long)uid);

    json_object_set_new(o, "account_id", json_string(account_id));
    json_object_set_new(o, "name", account_name(name ? name : ""));
    json_object_set_new(o, "email", json_string(email ? email : ""));
    json_object_set_new(o, "email_verified", json_true());
    json_object_set_new(o, "disabled", json_false());
    json_object_set_new(o, "country", json_string("US"));
    json_object_set_new(o, "locale", json_string("en"));
    json_object_set_new(o, "referral_link", json_string(referral));
    json_object_set_new(o, "is_paired", json_false());
    json_object_set_new(o, "account_type", api_tag("basic", NULL));
    json_object_set_new(o, "root_info", account_root_info(uid));
    free(referral);
    return o;
}

void account_get_current(struct api_call *c)
{
    struct store *s = c->store;
    sqlite3_stmt *st;
    json_t *result = NULL;

    if (!json_is_null(c->arg)) {
        api_bad_input(c, "%s: expected null, got value", c->arg_from);
        return;
    }
    store_lock(s);
    st = db_prepare(s->db, "SELECT account_id, uid, email, display_name"
                           " FROM accounts WHERE id = ?1");
    sqlite3_bind_int64(st, 1, c->auth.account);
    if (sqlite3_step(st) == SQLITE_ROW)
        result = account_full(st);
    sqlite3_finalize(st);
    store_unlock(s);

    if (result == NULL) {
        LOG_E("account row missing account=%s", c->auth.account_id);
        api_internal_error(c);
        return;
    }
    api_reply_json(c, result);
}

void account_token_revoke(struct api_call *c)
{
    int rc;

    if (!json_is_null(c->arg)) {
        api_bad_input(c, "%s: expected null, got value", c->arg_from);
        return;
    }
    store_lock(c->store);
    rc = auth_revoke(c->store, c->auth.token_hash);
    store_unlock(c->store);
    if (rc < 0) {
        api_internal_error(c);
        return;
    }
    LOG_I("token revoked account=%s", c->auth.account_id);
    hsrv_reply_str(c->resp, 200, "application/json", "null");
}

void account_get_space_usage(struct api_call *c)
{
    struct store *s = c->store;
    sqlite3_stmt *st;
    json_int_t used = -1;
    json_t *alloc, *result;

    if (!json_is_null(c->arg)) {
        api_bad_input(c, "%s: expected null, got value", c->arg_from);
        return;
    }
    store_lock(s);
    st = db_prepare(s->db, "SELECT COALESCE(SUM(size), 0) FROM entries"
                           " WHERE account = ?1 AND tag = 'file'");
    sqlite3_bind_int64(st, 1, c->auth.account);
    if (sqlite3_step(st) == SQLITE_ROW)
        used = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    store_unlock(s);
    if (used < 0) {
        api_internal_error(c);
        return;
    }
    alloc = api_tag("individual", NULL);
    json_object_set_new(alloc, "allocated", json_integer(ACCOUNT_ALLOCATED));
    result = json_object();
    json_object_set_new(result, "used", json_integer(used));
    json_object_set_new(result, "allocation", alloc);
    api_reply_json(c, result);
}
