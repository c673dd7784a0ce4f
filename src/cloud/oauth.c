/*
 * oauth: the authorize step, redirect URIs and the shared helpers.
 */
#include "cloud/oauth.h"

#include "cloud/admin.h"
#include "cloud/auth.h"
#include "cloud/form.h"
#include "common/db.h"
#include "common/log.h"
#include "common/sig.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest page or redirect URL we build. */
#define OAUTH_PAGE_MAX (256u * 1024)
/* Accounts listed on the consent page. */
#define OAUTH_PAGE_ACCOUNTS 200
/* PKCE code challenges (RFC 7636): 43 to 128 characters. */
#define OAUTH_CHALLENGE_MIN 43
#define OAUTH_CHALLENGE_MAX 128

#define OAUTH_SCHEMA                                                        \
    "CREATE TABLE IF NOT EXISTS app_redirect_uris ("                        \
    " app_id INTEGER NOT NULL REFERENCES apps(id),"                         \
    " uri TEXT NOT NULL,"                                                   \
    " PRIMARY KEY (app_id, uri));"                                          \
    "CREATE TABLE IF NOT EXISTS oauth_codes ("                              \
    " code_hash TEXT PRIMARY KEY," /* SHA-256 hex; never the code */        \
    " app_id INTEGER NOT NULL REFERENCES apps(id),"                         \
    " account_id INTEGER NOT NULL REFERENCES accounts(id),"                 \
    " redirect_uri TEXT,"          /* NULL: shown on the page */            \
    " challenge TEXT,"             /* PKCE; NULL: the secret is needed */   \
    " challenge_method TEXT,"      /* S256 | plain */                       \
    " scopes TEXT NOT NULL,"                                                \
    " access_type TEXT NOT NULL,"  /* offline | online | legacy */          \
    " expires_at INTEGER NOT NULL,"                                         \
    " used INTEGER NOT NULL DEFAULT 0);"

/* The parameters of an authorize request, borrowed from params. */
struct authz {
    json_t *params;
    const char *client_id;
    const char *redirect_uri;
    const char *state;
    const char *challenge;
    const char *method;
    const char *access_type;
    int64_t app;
    char scopes[AUTH_SCOPES_MAX];
};

static const char *const authz_names[] = {
    "client_id", "response_type", "redirect_uri", "state",
    "code_challenge", "code_challenge_method", "token_access_type", "scope",
    "include_granted_scopes", "force_reapprove", "locale", "account",
    "decision",
};

int oauth_init(struct store *s)
{
    int rc;

    store_lock(s);
    rc = db_exec(s->db, OAUTH_SCHEMA);
    store_unlock(s);
    return rc;
}

int oauth_app_find(struct store *s, const char *key, int64_t *app,
                   char *secret, size_t secret_len)
{
    sqlite3_stmt *st = db_prepare(
        s->db, "SELECT id, app_secret FROM apps WHERE app_key = ?1");
    int rc = -1;

    db_bind_text(st, 1, key);
    if (key != NULL && sqlite3_step(st) == SQLITE_ROW) {
        *app = sqlite3_column_int64(st, 0);
        if (secret != NULL)
            snprintf(secret, secret_len, "%s",
                     (const char *)sqlite3_column_text(st, 1));
        rc = 0;
    }
    sqlite3_finalize(st);
    return rc;
}

int oauth_scopes_canon(const char *requested, char *out, size_t len)
{
    static const char *const known[] = {
        "files.metadata.read", "files.content.read", "files.content.write",
        "account_info.read"};
    struct buf b;
    char *copy = xstrdup(requested), *save = NULL;
    int rc = 0;

    for (char *w = strtok_r(copy, " ", &save); w != NULL;
         w = strtok_r(NULL, " ", &save)) {
        size_t i = 0;

        while (i < ARRAY_LEN(known) && strcmp(known[i], w) != 0)
            i++;
        if (i == ARRAY_LEN(known))
            rc = -1;
    }
    free(copy);
    buf_init(&b, len - 1);
    for (size_t i = 0; rc == 0 && i < ARRAY_LEN(known); i++) {
        if (auth_has_scope(requested, known[i]))
            buf_appendf(&b, "%s%s", b.len ? " " : "", known[i]);
    }
    snprintf(out, len, "%s", rc == 0 && b.len ? b.data : "");
    buf_free(&b);
    return rc == 0 && out[0] != '\0' ? 0 : -1;
}

static const char *authz_param(const struct authz *a, const char *name)
{
    const char *v = json_string_value(json_object_get(a->params, name));

    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* The request's parameters: the query of a GET, the form of a POST. */
static json_t *authz_params(const struct hsrv_request *req)
{
    size_t len;
    const char *body = hsrv_body(req, &len);
    json_t *o;

    if (strcmp(hsrv_method(req), "POST") == 0)
        return len <= OAUTH_BODY_MAX ? form_decode(body, len) : NULL;
    o = json_object();
    for (size_t i = 0; i < ARRAY_LEN(authz_names); i++) {
        const char *v = hsrv_query(req, authz_names[i]);

        if (v != NULL)
            json_object_set_new(o, authz_names[i], json_string(v));
    }
    return o;
}

static void oauth_page(struct hsrv_response *resp, int status,
                       const char *title, const char *body_html)
{
    struct buf b;

    buf_init(&b, OAUTH_PAGE_MAX);
    buf_appendf(&b, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                    "<title>");
    form_append_html(&b, title);
    buf_appendf(&b, "</title></head>\n<body><h1>");
    form_append_html(&b, title);
    buf_appendf(&b, "</h1>\n%s\n</body></html>\n", body_html);
    hsrv_reply(resp, status, "text/html; charset=utf-8", b.data, b.len);
    buf_free(&b);
}

/* A 400 page: the error cannot go back to the app. */
static void oauth_error_page(struct hsrv_response *resp, const char *msg)
{
    struct buf b;

    buf_init(&b, OAUTH_PAGE_MAX);
    buf_appendf(&b, "<p id=\"error\">");
    form_append_html(&b, msg);
    buf_appendf(&b, "</p>");
    oauth_page(resp, 400, "Error (400)", b.data);
    buf_free(&b);
}

/* 302 to the redirect URI with "name=value" pairs (NULL-terminated). */
static void oauth_redirect(struct hsrv_response *resp, const char *uri,
                           const char *const *pairs)
{
    struct buf b;
    char sep = strchr(uri, '?') ? '&' : '?';

    buf_init(&b, OAUTH_PAGE_MAX);
    buf_append(&b, uri, strlen(uri));
    for (size_t i = 0; pairs[i] != NULL; i += 2) {
        if (pairs[i + 1] == NULL)
            continue;
        buf_appendf(&b, "%c%s=", sep, pairs[i]);
        form_append_encoded(&b, pairs[i + 1]);
        sep = '&';
    }
    hsrv_reply_str(resp, 302, "text/plain; charset=utf-8", "Redirecting");
    hsrv_add_header(resp, "Location", b.data);
    buf_free(&b);
}

/* An error for the app: redirected when there is a redirect URI. */
static void authz_fail(const struct authz *a, struct hsrv_response *resp,
                       const char *error, const char *desc)
{
    const char *pairs[] = {"error", error, "error_description", desc,
                           "state", a->state, NULL};

    if (a->redirect_uri == NULL) {
        oauth_error_page(resp, desc);
        return;
    }
    oauth_redirect(resp, a->redirect_uri, pairs);
}

static bool oauth_uri_registered(struct store *s, int64_t app,
                                 const char *uri)
{
    sqlite3_stmt *st;
    bool ok;

    store_lock(s);
    st = db_prepare(s->db, "SELECT 1 FROM app_redirect_uris"
                           " WHERE app_id = ?1 AND uri = ?2");
    sqlite3_bind_int64(st, 1, app);
    db_bind_text(st, 2, uri);
    ok = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    store_unlock(s);
    return ok;
}

/* Checks who asks and where the answer goes: errors here are pages. */
static int authz_check_client(struct store *s, struct authz *a,
                              struct hsrv_response *resp)
{
    int rc;

    a->client_id = authz_param(a, "client_id");
    a->redirect_uri = authz_param(a, "redirect_uri");
    a->state = json_string_value(json_object_get(a->params, "state"));
    store_lock(s);
    rc = oauth_app_find(s, a->client_id, &a->app, NULL, 0);
    store_unlock(s);
    if (rc < 0) {
        oauth_error_page(resp, "Invalid client_id: no app has this key.");
        return -1;
    }
    if (a->redirect_uri != NULL &&
        (strlen(a->redirect_uri) > OAUTH_URI_MAX ||
         !oauth_uri_registered(s, a->app, a->redirect_uri))) {
        oauth_error_page(resp, "Invalid redirect_uri. It must exactly "
                               "match one of the redirect URIs "
                               "registered for the app.");
        return -1;
    }
    return 0;
}

/* Checks the rest; errors here go back to the app. */
static int authz_check_request(struct authz *a, struct hsrv_response *resp)
{
    const char *type = authz_param(a, "response_type");
    const char *scope = authz_param(a, "scope");
    size_t clen;

    a->challenge = authz_param(a, "code_challenge");
    a->method = authz_param(a, "code_challenge_method");
    a->access_type = authz_param(a, "token_access_type");
    if (type == NULL || strcmp(type, "code") != 0) {
        authz_fail(a, resp, "unsupported_response_type",
                   "response_type must be code");
        return -1;
    }
    clen = a->challenge ? strlen(a->challenge) : 0;
    if (a->challenge != NULL &&
        (clen < OAUTH_CHALLENGE_MIN || clen > OAUTH_CHALLENGE_MAX ||
         (a->method && strcmp(a->method, "S256") != 0 &&
          strcmp(a->method, "plain") != 0))) {
        authz_fail(a, resp, "invalid_request",
                   "code_challenge must have 43 to 128 characters, with "
                   "code_challenge_method S256 or plain");
        return -1;
    }
    if (a->access_type != NULL && strcmp(a->access_type, "offline") != 0 &&
        strcmp(a->access_type, "online") != 0 &&
        strcmp(a->access_type, "legacy") != 0) {
        authz_fail(a, resp, "invalid_request",
                   "token_access_type must be offline, online or legacy");
        return -1;
    }
    if (oauth_scopes_canon(scope ? scope : AUTH_ALL_SCOPES, a->scopes,
                           sizeof a->scopes) < 0) {
        authz_fail(a, resp, "invalid_scope", "unknown scope requested");
        return -1;
    }
    return 0;
}

/* The consent page: who asks, for what, as whom; Allow or Cancel. */
static void authz_show(struct store *s, const struct authz *a,
                       struct hsrv_response *resp)
{
    struct buf b;
    const char *key;
    json_t *v;
    sqlite3_stmt *st;

    buf_init(&b, OAUTH_PAGE_MAX);
    buf_appendf(&b, "<form method=\"post\" action=\"/oauth2/authorize\">\n"
                    "<p>The app <b>");
    form_append_html(&b, a->client_id);
    buf_appendf(&b, "</b> asks for: ");
    form_append_html(&b, a->scopes);
    buf_appendf(&b, "</p>\n");
    json_object_foreach(a->params, key, v)
    {
        if (strcmp(key, "account") == 0 || strcmp(key, "decision") == 0)
            continue;
        buf_appendf(&b, "<input type=\"hidden\" name=\"");
        form_append_html(&b, key);
        buf_appendf(&b, "\" value=\"");
        form_append_html(&b, json_string_value(v));
        buf_appendf(&b, "\">\n");
    }
    buf_appendf(&b, "<p>Account: <select name=\"account\">\n");
    store_lock(s);
    st = db_prepare(s->db, "SELECT account_id, email FROM accounts"
                           " ORDER BY id DESC LIMIT ?1");
    sqlite3_bind_int(st, 1, OAUTH_PAGE_ACCOUNTS);
    while (sqlite3_step(st) == SQLITE_ROW) {
        buf_appendf(&b, "<option value=\"");
        form_append_html(&b, (const char *)sqlite3_column_text(st, 0));
        buf_appendf(&b, "\">");
        form_append_html(&b, (const char *)sqlite3_column_text(st, 1));
        buf_appendf(&b, "</option>\n");
    }
    sqlite3_finalize(st);
    store_unlock(s);
    buf_appendf(&b, "</select></p>\n"
                    "<button name=\"decision\" value=\"allow\">Allow"
                    "</button>\n<button name=\"decision\" value=\"cancel\">"
                    "Cancel</button>\n</form>");
    oauth_page(resp, 200, "Allow access to your Dropbox?", b.data);
    buf_free(&b);
}

/* accounts.id of the "account" parameter (id or email), or of the newest
 * account without one (lock held); 0 when there is none. */
static int64_t authz_account(struct store *s, const char *which)
{
    sqlite3_stmt *st = db_prepare(
        s->db, which ? "SELECT id FROM accounts WHERE account_id = ?1"
                       " OR email = ?1"
                     : "SELECT id FROM accounts ORDER BY id DESC LIMIT 1");
    int64_t id = 0;

    if (which != NULL)
        db_bind_text(st, 1, which);
    if (sqlite3_step(st) == SQLITE_ROW)
        id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return id;
}

/* With include_granted_scopes, the link's scopes join the requested
 * ones (lock held). */
static void authz_merge_granted(struct store *s, struct authz *a,
                                int64_t account)
{
    sqlite3_stmt *st;
    char *both = NULL;

    if (authz_param(a, "include_granted_scopes") == NULL)
        return;
    st = db_prepare(s->db, "SELECT scopes FROM links"
                           " WHERE app_id = ?1 AND account_id = ?2");
    sqlite3_bind_int64(st, 1, a->app);
    sqlite3_bind_int64(st, 2, account);
    if (sqlite3_step(st) == SQLITE_ROW)
        both = xasprintf("%s %s", a->scopes, sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (both != NULL)
        oauth_scopes_canon(both, a->scopes, sizeof a->scopes);
    free(both);
}

/* Stores a new code (lock held).  Returns it (caller frees) or NULL. */
static char *authz_code_store(struct store *s, const struct authz *a,
                              int64_t account)
{
    char code[OAUTH_CODE_CHARS + 1], hash[SIG_HEX_LEN + 1];
    sqlite3_stmt *st = db_prepare(
        s->db, "INSERT INTO oauth_codes (code_hash, app_id, account_id,"
               " redirect_uri, challenge, challenge_method, scopes,"
               " access_type, expires_at)"
               " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    int step;

    db_exec(s->db, "DELETE FROM oauth_codes WHERE expires_at <"
                   " strftime('%s', 'now')"); /* codes nobody exchanged */
    rand_urlsafe(code, OAUTH_CODE_CHARS);
    sha256_hex(code, strlen(code), hash);
    db_bind_text(st, 1, hash);
    sqlite3_bind_int64(st, 2, a->app);
    sqlite3_bind_int64(st, 3, account);
    db_bind_text(st, 4, a->redirect_uri);
    db_bind_text(st, 5, a->challenge);
    db_bind_text(st, 6, a->challenge ? (a->method ? a->method : "plain")
                                     : NULL);
    db_bind_text(st, 7, a->scopes);
    db_bind_text(st, 8, a->access_type ? a->access_type : "online");
    sqlite3_bind_int64(st, 9, time_now_s() + OAUTH_CODE_TTL_S);
    step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step != SQLITE_DONE) {
        LOG_E("code insert failed err=%s", sqlite3_errmsg(s->db));
        return NULL;
    }
    return xstrdup(code);
}

/* The person allowed: a code to the app, or on the page without a
 * redirect URI. */
static void authz_approve(struct store *s, struct authz *a,
                          struct hsrv_response *resp)
{
    const char *which = authz_param(a, "account");
    int64_t account;
    char *code = NULL;
    struct buf b;

    store_lock(s);
    account = authz_account(s, which);
    if (account != 0) {
        authz_merge_granted(s, a, account);
        code = authz_code_store(s, a, account);
    }
    store_unlock(s);
    if (account == 0 || code == NULL) {
        oauth_error_page(resp, account == 0 ? "No such account."
                                            : "The code was not stored.");
        return;
    }
    LOG_I("oauth code issued app=%s", a->client_id);
    if (a->redirect_uri != NULL) {
        const char *pairs[] = {"code", code, "state", a->state, NULL};

        oauth_redirect(resp, a->redirect_uri, pairs);
    } else {
        buf_init(&b, OAUTH_PAGE_MAX);
        buf_appendf(&b, "<p>Enter this code into the app:</p>\n"
                        "<p><code id=\"auth-code\">%s</code></p>", code);
        oauth_page(resp, 200, "Access granted", b.data);
        buf_free(&b);
    }
    free(code);
}

static void oauth_authorize(struct store *s, const struct oauth_config *cfg,
                            const struct hsrv_request *req,
                            struct hsrv_response *resp)
{
    struct authz a = {.params = authz_params(req)};
    bool post = strcmp(hsrv_method(req), "POST") == 0;
    const char *decision;

    if (a.params == NULL) {
        oauth_error_page(resp, "The form could not be read.");
        return;
    }
    if (authz_check_client(s, &a, resp) < 0 ||
        authz_check_request(&a, resp) < 0)
        goto out;
    decision = authz_param(&a, "decision");
    if (post && (decision == NULL || strcmp(decision, "allow") != 0))
        authz_fail(&a, resp, "access_denied",
                   "The user chose not to give your app access to their "
                   "Dropbox account.");
    else if (post || cfg->auto_approve)
        authz_approve(s, &a, resp);
    else
        authz_show(s, &a, resp);
out:
    json_decref(a.params);
}

void oauth_dispatch(struct store *s, const struct oauth_config *cfg,
                    const struct hsrv_request *req,
                    struct hsrv_response *resp)
{
    const char *path = hsrv_path(req);
    const char *method = hsrv_method(req);

    if (strcmp(path, "/oauth2/authorize") == 0 &&
        (strcmp(method, "GET") == 0 || strcmp(method, "POST") == 0))
        oauth_authorize(s, cfg, req, resp);
    else if (strcmp(path, "/oauth2/token") == 0)
        oauth_token(s, cfg, req, resp);
    else
        hsrv_reply_str(resp, 404, "text/plain; charset=utf-8",
                       "Not found\n");
}

/* Replaces the app's URIs (lock held, inside a transaction). */
static int oauth_uris_store(struct store *s, int64_t app, json_t *uris)
{
    sqlite3_stmt *del = db_prepare(
        s->db, "DELETE FROM app_redirect_uris WHERE app_id = ?1");
    sqlite3_stmt *ins = db_prepare(
        s->db, "INSERT OR IGNORE INTO app_redirect_uris (app_id, uri)"
               " VALUES (?1, ?2)");
    size_t i;
    json_t *v;
    int rc = 0;

    sqlite3_bind_int64(del, 1, app);
    if (sqlite3_step(del) != SQLITE_DONE)
        rc = -1;
    json_array_foreach(uris, i, v)
    {
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, app);
        db_bind_text(ins, 2, json_string_value(v));
        if (rc == 0 && sqlite3_step(ins) != SQLITE_DONE)
            rc = -1;
    }
    sqlite3_finalize(del);
    sqlite3_finalize(ins);
    return rc;
}

/* Each URI a non-empty string of at most OAUTH_URI_MAX bytes, starting
 * with http:// or https://. */
static bool oauth_uris_ok(const json_t *uris)
{
    size_t i;
    json_t *v;

    if (!json_is_array(uris) || json_array_size(uris) >
                                    OAUTH_REDIRECT_URIS_MAX)
        return false;
    json_array_foreach(uris, i, v)
    {
        const char *u = json_string_value(v);

        if (u == NULL || strlen(u) > OAUTH_URI_MAX ||
            (strncmp(u, "http://", 7) != 0 &&
             strncmp(u, "https://", 8) != 0))
            return false;
    }
    return true;
}

void oauth_admin_set_redirect_uris(struct store *s, json_t *body,
                                   struct hsrv_response *resp)
{
    const char *key = json_string_value(json_object_get(body, "app_key"));
    json_t *uris = json_object_get(body, "uris");
    int64_t app = 0;
    int rc = -1;

    if (!oauth_uris_ok(uris)) {
        admin_error(resp, 400, "uris must be a list of at most 32 http:// "
                               "or https:// URIs");
        return;
    }
    store_lock(s);
    if (oauth_app_find(s, key, &app, NULL, 0) == 0 && db_begin(s->db) == 0) {
        rc = oauth_uris_store(s, app, uris);
        if (rc == 0)
            rc = db_commit(s->db);
        else
            db_rollback(s->db);
    }
    store_unlock(s);
    if (app == 0) {
        admin_error(resp, 400, "unknown app_key");
        return;
    }
    if (rc < 0) {
        admin_error(resp, 500, "redirect URIs not stored");
        return;
    }
    LOG_I("redirect uris set app=%s count=%zu", key, json_array_size(uris));
    admin_reply(resp, 200, json_pack("{s:s, s:O}", "app_key", key,
                                     "redirect_uris", uris));
}
