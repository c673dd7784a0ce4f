/*
 * admin: accounts, apps, links and webhooks for the console.
 */
#include "cloud/admin.h"

#include "cloud/admin_webhooks.h"
#include "cloud/auth.h"
#include "cloud/faults.h"
#include "cloud/journal.h"
#include "cloud/notifier.h"
#include "cloud/oauth.h"
#include "common/db.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ADMIN_TOKEN_CHARS 43
#define ACCOUNT_ID_CHARS 33 /* after "dbid:AA", 40 in all */
#define APP_KEY_CHARS 15
#define FIRST_UID 1001
#define ADMIN_ERR_MAX 512

typedef void (*admin_handler)(struct store *s, json_t *body,
                              struct hsrv_response *resp);

char *admin_token_ensure(const char *dir)
{
    char *path = xasprintf("%s/admin.token", dir);
    char *token = file_read_all(path, 256, NULL);

    if (token != NULL) {
        str_rstrip(token);
    } else {
        token = xmalloc(ADMIN_TOKEN_CHARS + 1);
        rand_urlsafe(token, ADMIN_TOKEN_CHARS);
        if (file_write_atomic(path, token, strlen(token), 0600) < 0) {
            LOG_E("admin token not written path=%s errno=%d", path, errno);
            free(token);
            token = NULL;
        }
    }
    free(path);
    return token;
}

/* n random characters from [a-z0-9], like Dropbox app keys. */
static void rand_lower_alnum(char *out, size_t n)
{
    static const char set[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    size_t i = 0;

    while (i < n) {
        unsigned char b;

        rand_bytes(&b, 1);
        if (b < 252) /* 252 = 7 * 36: no bias */
            out[i++] = set[b % 36];
    }
    out[n] = '\0';
}

void admin_reply(struct hsrv_response *resp, int status, json_t *o)
{
    char *text = json_dumps(o, JSON_COMPACT);

    hsrv_reply_str(resp, status, "application/json", text);
    free(text);
    json_decref(o);
}

void admin_error(struct hsrv_response *resp, int status, const char *msg)
{
    json_t *o = json_object();

    json_object_set_new(o, "error", json_string(msg));
    admin_reply(resp, status, o);
}

/* A required non-empty string member, or NULL after answering 400. */
static const char *admin_str(json_t *body, const char *name,
                             struct hsrv_response *resp)
{
    const char *v = json_string_value(json_object_get(body, name));
    char msg[128];

    if (v != NULL && v[0] != '\0')
        return v;
    snprintf(msg, sizeof msg, "missing or empty string field '%s'", name);
    admin_error(resp, 400, msg);
    return NULL;
}

static int64_t admin_next_uid(struct store *s)
{
    sqlite3_stmt *st = db_prepare(s->db, "SELECT MAX(uid) FROM accounts");
    int64_t uid = FIRST_UID;

    if (sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_type(st, 0) != SQLITE_NULL &&
        sqlite3_column_int64(st, 0) >= FIRST_UID)
        uid = sqlite3_column_int64(st, 0) + 1;
    sqlite3_finalize(st);
    return uid;
}

static void admin_account_create(struct store *s, json_t *body,
                                 struct hsrv_response *resp)
{
    const char *email = admin_str(body, "email", resp);
    const char *name = json_string_value(json_object_get(body, "name"));
    char rnd[ACCOUNT_ID_CHARS + 1], id[48];
    sqlite3_stmt *st;
    int64_t uid;
    json_t *o;
    int step;

    if (email == NULL)
        return;
    if (name == NULL || name[0] == '\0')
        name = email;
    rand_urlsafe(rnd, ACCOUNT_ID_CHARS);
    snprintf(id, sizeof id, "dbid:AA%s", rnd);

    store_lock(s);
    uid = admin_next_uid(s);
    st = db_prepare(s->db, "INSERT INTO accounts (account_id, uid, email,"
                           " display_name, created_at)"
                           " VALUES (?1, ?2, ?3, ?4, ?5)");
    db_bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, uid);
    db_bind_text(st, 3, email);
    db_bind_text(st, 4, name);
    sqlite3_bind_int64(st, 5, time_now_s());
    step = sqlite3_step(st);
    sqlite3_finalize(st);
    store_unlock(s);
    if (step != SQLITE_DONE) {
        admin_error(resp, 400, "an account with this email exists");
        return;
    }
    LOG_I("account created account=%s uid=%lld", id, (long long)uid);
    o = json_pack("{s:s, s:I, s:s, s:s}", "account_id", id, "uid",
                  (json_int_t)uid, "email", email, "name", name);
    admin_reply(resp, 200, o);
}

static void admin_app_create(struct store *s, json_t *body,
                             struct hsrv_response *resp)
{
    const char *name = admin_str(body, "name", resp);
    char key[APP_KEY_CHARS + 1], secret[APP_KEY_CHARS + 1];
    sqlite3_stmt *st;
    int step;

    if (name == NULL)
        return;
    rand_lower_alnum(key, APP_KEY_CHARS);
    rand_lower_alnum(secret, APP_KEY_CHARS);
    store_lock(s);
    st = db_prepare(s->db, "INSERT INTO apps (app_key, app_secret, name,"
                           " created_at) VALUES (?1, ?2, ?3, ?4)");
    db_bind_text(st, 1, key);
    db_bind_text(st, 2, secret);
    db_bind_text(st, 3, name);
    sqlite3_bind_int64(st, 4, time_now_s());
    step = sqlite3_step(st);
    sqlite3_finalize(st);
    store_unlock(s);
    if (step != SQLITE_DONE) {
        admin_error(resp, 500, "app not stored");
        return;
    }
    LOG_I("app created app=%s", key);
    admin_reply(resp, 200,
                json_pack("{s:s, s:s, s:s}", "app_key", key, "app_secret",
                          secret, "name", name));
}

/* Looks up a rowid by a unique text column; 0 when absent. */
static int64_t admin_rowid(struct store *s, const char *sql,
                           const char *key)
{
    sqlite3_stmt *st = db_prepare(s->db, sql);
    int64_t id = 0;

    db_bind_text(st, 1, key);
    if (sqlite3_step(st) == SQLITE_ROW)
        id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return id;
}

static void admin_link_create(struct store *s, json_t *body,
                              struct hsrv_response *resp)
{
    const char *key = admin_str(body, "app_key", resp), *account, *asked;
    char scopes[AUTH_SCOPES_MAX];
    int64_t app_id, account_row, link = 0;
    char *token = NULL;

    if (key == NULL || (account = admin_str(body, "account_id", resp)) ==
                           NULL)
        return;
    asked = json_string_value(json_object_get(body, "scopes"));
    if (asked == NULL || asked[0] == '\0')
        asked = AUTH_ALL_SCOPES;
    if (oauth_scopes_canon(asked, scopes, sizeof scopes) < 0) {
        admin_error(resp, 400, "scopes: unknown scope (known: "
                    AUTH_ALL_SCOPES ")");
        return;
    }

    store_lock(s);
    app_id = admin_rowid(s, "SELECT id FROM apps WHERE app_key = ?1", key);
    account_row = admin_rowid(
        s, "SELECT id FROM accounts WHERE account_id = ?1", account);
    if (app_id != 0 && account_row != 0)
        link = store_link_put(s, app_id, account_row, scopes);
    if (link != 0)
        token = auth_token_create(s, link);
    store_unlock(s);

    if (app_id == 0 || account_row == 0) {
        admin_error(resp, 400, app_id == 0 ? "unknown app_key"
                                           : "unknown account_id");
    } else if (token == NULL) {
        admin_error(resp, 500, "link not stored");
    } else {
        LOG_I("linked app=%s account=%s", key, account);
        admin_reply(resp, 200,
                    json_pack("{s:s, s:s, s:s, s:s}", "access_token", token,
                              "account_id", account, "app_key", key,
                              "scopes", scopes));
    }
    free(token);
}

/* Records the outcome of a verification on the app. */
static int admin_webhook_store(struct store *s, const char *key,
                               const char *uri, const char *state,
                               const char *error)
{
    sqlite3_stmt *st = db_prepare(
        s->db, "UPDATE apps SET webhook_uri = ?2, webhook_state = ?3,"
               " webhook_error = ?4 WHERE app_key = ?1");
    int rc;

    db_bind_text(st, 1, key);
    db_bind_text(st, 2, uri);
    db_bind_text(st, 3, state);
    db_bind_text(st, 4, error);
    rc = sqlite3_step(st) == SQLITE_DONE && sqlite3_changes(s->db) == 1
             ? 0
             : -1;
    sqlite3_finalize(st);
    return rc;
}

static void admin_webhook_set(struct store *s, json_t *body,
                              struct hsrv_response *resp)
{
    const char *key = admin_str(body, "app_key", resp), *uri;
    char err[ADMIN_ERR_MAX] = "";
    bool ok;
    int64_t app;
    json_t *o;

    if (key == NULL || (uri = admin_str(body, "uri", resp)) == NULL)
        return;
    store_lock(s);
    app = admin_rowid(s, "SELECT id FROM apps WHERE app_key = ?1", key);
    store_unlock(s);
    if (app == 0) {
        admin_error(resp, 400, "unknown app_key");
        return;
    }

    /* Verification may take the whole timeout: not under the lock. */
    ok = s->notifier != NULL &&
         notifier_verify(s->notifier, uri, err, sizeof err) == 0;
    if (s->notifier == NULL)
        snprintf(err, sizeof err, "notifier not running");
    store_lock(s);
    admin_webhook_store(s, key, uri, ok ? "verified" : "failed",
                        ok ? NULL : err);
    store_unlock(s);

    if (ok) /* notifications waiting for this webhook go out now */
        notifier_wake(s->notifier);
    LOG_I("webhook set app=%s state=%s", key, ok ? "verified" : "failed");
    o = json_pack("{s:s}", "state", ok ? "verified" : "failed");
    if (!ok)
        json_object_set_new(o, "error", json_string(err));
    admin_reply(resp, 200, o);
}

/* {"<list>": [{names[i]: column i, ...}, ...]} from a query. */
static void admin_list(struct store *s, const char *list, const char *sql,
                       const char *const *names, int ncols,
                       struct hsrv_response *resp)
{
    json_t *rows = json_array(), *o = json_object();
    sqlite3_stmt *st;

    store_lock(s);
    st = db_prepare(s->db, sql);
    while (sqlite3_step(st) == SQLITE_ROW) {
        json_t *row = json_object();

        for (int i = 0; i < ncols; i++)
            json_object_set_new(row, names[i], store_column_json(st, i));
        json_array_append_new(rows, row);
    }
    sqlite3_finalize(st);
    store_unlock(s);
    json_object_set_new(o, list, rows);
    admin_reply(resp, 200, o);
}

static void admin_app_list(struct store *s, json_t *body,
                           struct hsrv_response *resp)
{
    static const char *const names[] = {"app_key", "name", "webhook_uri",
                                        "webhook_state", "webhook_error"};

    (void)body;
    admin_list(s, "apps",
               "SELECT app_key, name, webhook_uri, webhook_state,"
               " webhook_error FROM apps ORDER BY id",
               names, 5, resp);
}

static void admin_account_list(struct store *s, json_t *body,
                               struct hsrv_response *resp)
{
    static const char *const names[] = {"account_id", "uid", "email",
                                        "name"};

    (void)body;
    admin_list(s, "accounts",
               "SELECT account_id, uid, email, display_name FROM accounts"
               " ORDER BY id",
               names, 4, resp);
}

static void admin_stats(struct store *s, json_t *body,
                        struct hsrv_response *resp)
{
    int64_t delivered = 0, attempts = 0, failed = 0, journal;

    (void)body;
    if (s->notifier != NULL)
        notifier_stats(s->notifier, &delivered, &attempts, &failed);
    store_lock(s);
    journal = journal_count(s);
    store_unlock(s);
    admin_reply(resp, 200,
                json_pack("{s:I, s:I, s:I, s:I}", "notifications_delivered",
                          (json_int_t)delivered, "attempts",
                          (json_int_t)attempts, "notifications_failed",
                          (json_int_t)failed, "journal_entries",
                          (json_int_t)journal));
}

static const struct {
    const char *name;
    admin_handler handle;
} admin_routes[] = {
    {"accounts/create", admin_account_create},
    {"accounts/list", admin_account_list},
    {"apps/create", admin_app_create},
    {"apps/list", admin_app_list},
    {"links/create", admin_link_create},
    {"webhooks/set", admin_webhook_set},
    {"stats", admin_stats},
    {"apps/set_redirect_uris", oauth_admin_set_redirect_uris},
    {"faults/set", faults_admin_set},
    {"faults/clear", faults_admin_clear},
};

static bool admin_authorized(const char *token,
                             const struct hsrv_request *req)
{
    const char *h = hsrv_header(req, "Authorization");
    size_t n = strlen(token);

    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    return strlen(h) == n && CRYPTO_memcmp(h, token, n) == 0;
}

void admin_dispatch(struct store *s, const char *admin_token,
                    const struct hsrv_request *req,
                    struct hsrv_response *resp)
{
    const char *name = hsrv_path(req) + strlen("/admin/");
    admin_handler handle = NULL;
    json_t *body;
    size_t len;
    const char *text = hsrv_body(req, &len);

    for (size_t i = 0; i < ARRAY_LEN(admin_routes); i++) {
        if (strcmp(admin_routes[i].name, name) == 0)
            handle = admin_routes[i].handle;
    }
    if (handle == NULL)
        handle = admin_webhooks_find(name);
    if (handle == NULL) {
        admin_error(resp, 404, "unknown admin call");
        return;
    }
    if (!admin_authorized(admin_token, req)) {
        admin_error(resp, 401, "missing or wrong admin token");
        return;
    }
    if (strcmp(hsrv_method(req), "POST") != 0 || len > ADMIN_BODY_MAX) {
        admin_error(resp, 400, "expected a POST with a small JSON body");
        return;
    }
    body = len ? json_loadb(text, len, 0, NULL) : json_object();
    if (!json_is_object(body)) {
        json_decref(body);
        admin_error(resp, 400, "body is not a JSON object");
        return;
    }
    handle(s, body, resp);
    json_decref(body);
}
