/*
 * oauth_token: POST /oauth2/token, the code and refresh-token grants.
 *
 * Errors are 400 JSON {"error": ..., "error_description": ...} with the
 * codes of RFC 6749 section 5.2; the official SDKs turn invalid_grant on
 * a refresh into an AuthError.
 */
#include "cloud/auth.h"
#include "cloud/form.h"
#include "cloud/oauth.h"
#include "common/db.h"
#include "common/log.h"
#include "common/sig.h"
#include "common/util.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Longest client id or secret we take from HTTP Basic. */
#define TOKEN_BASIC_MAX 512
#define TOKEN_SECRET_MAX 128

/* A token request: its fields and the client it comes from. */
struct token_req {
    json_t *form;
    const char *client_id;
    const char *client_secret;
    char basic[TOKEN_BASIC_MAX]; /* "key:secret" from HTTP Basic */
    int64_t app;
    char app_secret[TOKEN_SECRET_MAX];
};

static const char *const token_names[] = {
    "grant_type", "code", "redirect_uri", "client_id", "client_secret",
    "code_verifier", "refresh_token", "scope",
};

static void token_error(struct hsrv_response *resp, const char *error,
                        const char *desc)
{
    json_t *o = json_pack("{s:s, s:s}", "error", error,
                          "error_description", desc);
    char *text = json_dumps(o, JSON_COMPACT);

    hsrv_reply_str(resp, 400, "application/json", text);
    free(text);
    json_decref(o);
}

static const char *token_field(const struct token_req *t, const char *name)
{
    const char *v = json_string_value(json_object_get(t->form, name));

    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* The form body, with query parameters filling fields it lacks. */
static json_t *token_form(const struct hsrv_request *req)
{
    size_t len;
    const char *body = hsrv_body(req, &len);
    json_t *o = len > OAUTH_BODY_MAX ? NULL : form_decode(body, len);

    for (size_t i = 0; o != NULL && i < ARRAY_LEN(token_names); i++) {
        const char *v = hsrv_query(req, token_names[i]);

        if (v != NULL && json_object_get(o, token_names[i]) == NULL)
            json_object_set_new(o, token_names[i], json_string(v));
    }
    return o;
}

/* "Authorization: Basic base64(key:secret)" into t->basic; 0 when
 * absent or well-formed. */
static int token_basic(struct token_req *t, const struct hsrv_request *req)
{
    const char *h = hsrv_header(req, "Authorization");
    unsigned char out[TOKEN_BASIC_MAX * 3 / 4 + 4];
    size_t n;
    int len;
    char *colon;

    if (h == NULL || strncasecmp(h, "Basic ", 6) != 0)
        return 0;
    h += 6;
    n = strlen(h);
    if (n == 0 || n % 4 != 0 || n > TOKEN_BASIC_MAX)
        return -1;
    len = EVP_DecodeBlock(out, (const unsigned char *)h, (int)n);
    if (len < 0)
        return -1;
    len -= (h[n - 1] == '=') + (h[n - 2] == '=');
    if (len <= 0 || (size_t)len >= sizeof t->basic ||
        memchr(out, '\0', (size_t)len) != NULL)
        return -1;
    memcpy(t->basic, out, (size_t)len);
    t->basic[len] = '\0';
    colon = strchr(t->basic, ':');
    if (colon == NULL)
        return -1;
    *colon = '\0';
    t->client_id = t->basic;
    t->client_secret = colon + 1;
    return 0;
}

/* Finds the client's app and checks the secret when one was given.
 * Answers and returns -1 on failure. */
static int token_client(struct store *s, struct token_req *t,
                        const struct hsrv_request *req,
                        struct hsrv_response *resp)
{
    int rc;

    if (token_basic(t, req) < 0) {
        token_error(resp, "invalid_request", "malformed HTTP Basic auth");
        return -1;
    }
    if (t->client_id == NULL) {
        t->client_id = token_field(t, "client_id");
        t->client_secret = token_field(t, "client_secret");
    }
    if (t->client_id == NULL) {
        token_error(resp, "invalid_request",
                    "No auth function available for given request");
        return -1;
    }
    store_lock(s);
    rc = oauth_app_find(s, t->client_id, &t->app, t->app_secret,
                        sizeof t->app_secret);
    store_unlock(s);
    if (rc < 0 ||
        (t->client_secret != NULL &&
         (strlen(t->client_secret) != strlen(t->app_secret) ||
          CRYPTO_memcmp(t->client_secret, t->app_secret,
                        strlen(t->app_secret)) != 0))) {
        token_error(resp, "invalid_client",
                    "Invalid client_id or client_secret");
        return -1;
    }
    return 0;
}

/* The code row being exchanged. */
struct token_code {
    int64_t account;
    char *redirect_uri;
    char *challenge;
    char *method;
    char *scopes;
    char *access_type;
    char hash[SIG_HEX_LEN + 1];
};

static void token_code_clear(struct token_code *c)
{
    free(c->redirect_uri);
    free(c->challenge);
    free(c->method);
    free(c->scopes);
    free(c->access_type);
}

/* Loads a live, unused code of the app (lock held).  Returns 0 or -1. */
static int token_code_load(struct store *s, int64_t app, const char *code,
                           struct token_code *out)
{
    sqlite3_stmt *st = db_prepare(
        s->db, "SELECT account_id, redirect_uri, challenge,"
               " challenge_method, scopes, access_type FROM oauth_codes"
               " WHERE code_hash = ?1 AND app_id = ?2 AND used = 0"
               " AND expires_at > ?3");
    int rc = -1;

    sha256_hex(code, strlen(code), out->hash);
    db_bind_text(st, 1, out->hash);
    sqlite3_bind_int64(st, 2, app);
    sqlite3_bind_int64(st, 3, time_now_s());
    if (sqlite3_step(st) == SQLITE_ROW) {
        out->account = sqlite3_column_int64(st, 0);
        out->redirect_uri = db_column_dup(st, 1);
        out->challenge = db_column_dup(st, 2);
        out->method = db_column_dup(st, 3);
        out->scopes = db_column_dup(st, 4);
        out->access_type = db_column_dup(st, 5);
        rc = 0;
    }
    sqlite3_finalize(st);
    return rc;
}

/* True when verifier answers the code's PKCE challenge. */
static bool token_pkce_ok(const struct token_code *c, const char *verifier)
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    char *want;
    bool ok;

    if (verifier == NULL)
        return false;
    if (strcmp(c->method, "plain") == 0)
        return strcmp(verifier, c->challenge) == 0;
    SHA256((const unsigned char *)verifier, strlen(verifier), digest);
    want = b64url_encode(digest, sizeof digest);
    ok = strcmp(want, c->challenge) == 0;
    free(want);
    return ok;
}

/* What a grant hands out. */
struct token_out {
    char *access;
    char *refresh;
    int64_t expires_in;     /* 0: the token does not expire */
    char account_id[48];
    int64_t uid;
};

static void token_out_clear(struct token_out *o)
{
    free(o->access);
    free(o->refresh);
}

/* The account's "dbid:..." and uid (lock held).  Returns 0 or -1. */
static int token_account(struct store *s, int64_t account,
                         struct token_out *o)
{
    sqlite3_stmt *st = db_prepare(
        s->db, "SELECT account_id, uid FROM accounts WHERE id = ?1");
    int rc = -1;

    sqlite3_bind_int64(st, 1, account);
    if (sqlite3_step(st) == SQLITE_ROW) {
        snprintf(o->account_id, sizeof o->account_id, "%s",
                 (const char *)sqlite3_column_text(st, 0));
        o->uid = sqlite3_column_int64(st, 1);
        rc = 0;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Uses up the code and issues the tokens, in one transaction (lock
 * held).  Returns 0 or -1. */
static int token_exchange(struct store *s, const struct oauth_config *cfg,
                          const struct token_req *t,
                          const struct token_code *c, bool pkce,
                          struct token_out *o)
{
    bool legacy = strcmp(c->access_type, "legacy") == 0;
    struct auth_grant g = {.scopes = c->scopes, .pkce = pkce};
    sqlite3_stmt *st;
    char hash[SIG_HEX_LEN + 1];
    int rc = -1;

    if (db_begin(s->db) < 0)
        return -1;
    st = db_prepare(s->db, "UPDATE oauth_codes SET used = 1"
                           " WHERE code_hash = ?1 AND used = 0");
    db_bind_text(st, 1, c->hash);
    if (sqlite3_step(st) != SQLITE_DONE || sqlite3_changes(s->db) != 1)
        goto out;
    g.link = store_link_put(s, t->app, c->account, c->scopes);
    if (g.link == 0 || token_account(s, c->account, o) < 0)
        goto out;
    if (strcmp(c->access_type, "offline") == 0) {
        g.refresh = true;
        o->refresh = auth_token_issue(s, &g);
        if (o->refresh == NULL)
            goto out;
        sha256_hex(o->refresh, strlen(o->refresh), hash);
        g.parent_hash = hash;
    }
    g.refresh = false;
    o->expires_in = legacy ? 0 : cfg->token_lifetime_s;
    g.expires_at = legacy ? 0 : time_now_s() + cfg->token_lifetime_s;
    o->access = auth_token_issue(s, &g);
    if (o->access != NULL)
        rc = db_commit(s->db);
out:
    sqlite3_finalize(st);
    if (rc < 0)
        db_rollback(s->db);
    return rc;
}

static void token_reply(struct hsrv_response *resp,
                        const struct token_out *o, const char *scopes)
{
    json_t *r = json_pack("{s:s, s:s}", "access_token", o->access,
                          "token_type", "bearer");
    char *text;

    if (o->expires_in > 0)
        json_object_set_new(r, "expires_in", json_integer(o->expires_in));
    if (o->refresh != NULL)
        json_object_set_new(r, "refresh_token", json_string(o->refresh));
    if (scopes != NULL)
        json_object_set_new(r, "scope", json_string(scopes));
    if (o->account_id[0] != '\0') {
        char uid[24];

        snprintf(uid, sizeof uid, "%lld", (long long)o->uid);
        json_object_set_new(r, "uid", json_string(uid));
        json_object_set_new(r, "account_id", json_string(o->account_id));
    }
    text = json_dumps(r, JSON_COMPACT);
    hsrv_reply_str(resp, 200, "application/json", text);
    hsrv_add_header(resp, "Cache-Control", "no-store");
    free(text);
    json_decref(r);
}

/* Checks the code's proof (verifier or secret) and redirect URI. */
static const char *token_code_check(const struct token_req *t,
                                    const struct token_code *c,
                                    const char **error)
{
    const char *uri = token_field(t, "redirect_uri");

    *error = "invalid_grant";
    if (c->challenge != NULL &&
        !token_pkce_ok(c, token_field(t, "code_verifier")))
        return "invalid code verifier";
    if (c->challenge == NULL && t->client_secret == NULL) {
        *error = "invalid_request";
        return "No auth function available for given request";
    }
    if (c->redirect_uri != NULL &&
        (uri == NULL || strcmp(uri, c->redirect_uri) != 0))
        return "redirect_uri mismatch";
    return NULL;
}

static void token_grant_code(struct store *s, const struct oauth_config *cfg,
                             struct token_req *t,
                             struct hsrv_response *resp)
{
    const char *code = token_field(t, "code"), *why, *error;
    struct token_code c = {0};
    struct token_out o = {0};
    int rc;

    if (code == NULL) {
        token_error(resp, "invalid_request", "No code");
        return;
    }
    store_lock(s);
    rc = token_code_load(s, t->app, code, &c);
    store_unlock(s);
    if (rc < 0) {
        token_error(resp, "invalid_grant",
                    "code doesn't exist or has expired");
        goto out;
    }
    why = token_code_check(t, &c, &error);
    if (why != NULL) {
        token_error(resp, error, why);
        goto out;
    }
    store_lock(s);
    rc = token_exchange(s, cfg, t, &c, c.challenge != NULL, &o);
    store_unlock(s);
    if (rc < 0) {
        token_error(resp, "invalid_grant",
                    "code doesn't exist or has expired");
        goto out;
    }
    LOG_I("oauth tokens issued app=%s account=%s offline=%s", t->client_id,
          o.account_id, o.refresh ? "yes" : "no");
    token_reply(resp, &o, c.scopes);
out:
    token_code_clear(&c);
    token_out_clear(&o);
}

/* The requested narrowing of a refresh, or the token's own scopes;
 * NULL when the request asks for more than the token has. */
static const char *token_refresh_scopes(const struct token_req *t,
                                        const struct auth_refresh *r,
                                        char *out, size_t len)
{
    const char *want = token_field(t, "scope");
    char *copy, *save = NULL;
    bool ok = true;

    if (want == NULL)
        return r->scopes;
    if (oauth_scopes_canon(want, out, len) < 0)
        return NULL;
    copy = xstrdup(out);
    for (char *w = strtok_r(copy, " ", &save); w != NULL;
         w = strtok_r(NULL, " ", &save))
        ok = ok && auth_has_scope(r->scopes, w);
    free(copy);
    return ok ? out : NULL;
}

static void token_grant_refresh(struct store *s,
                                const struct oauth_config *cfg,
                                struct token_req *t,
                                struct hsrv_response *resp)
{
    const char *refresh = token_field(t, "refresh_token"), *scopes;
    char narrowed[AUTH_SCOPES_MAX];
    struct auth_refresh r;
    struct token_out o = {0};
    struct auth_grant g = {0};
    int rc;

    if (refresh == NULL) {
        token_error(resp, "invalid_request", "No refresh_token");
        return;
    }
    store_lock(s);
    rc = auth_refresh_find(s, refresh, &r);
    if (rc == 0 && r.app == t->app && (t->client_secret || r.pkce) &&
        (scopes = token_refresh_scopes(t, &r, narrowed,
                                       sizeof narrowed)) != NULL) {
        g = (struct auth_grant){
            .link = r.link, .scopes = scopes, .parent_hash = r.hash,
            .expires_at = time_now_s() + cfg->token_lifetime_s};
        o.access = auth_token_issue(s, &g);
        o.expires_in = cfg->token_lifetime_s;
    }
    store_unlock(s);

    if (rc != 0 || r.app != t->app)
        token_error(resp, "invalid_grant",
                    "refresh token is invalid or revoked");
    else if (!t->client_secret && !r.pkce)
        token_error(resp, "invalid_request",
                    "No auth function available for given request");
    else if (g.link == 0)
        token_error(resp, "invalid_scope",
                    "scope asks for more than the refresh token grants");
    else if (o.access == NULL)
        hsrv_reply_str(resp, 500, "text/plain; charset=utf-8",
                       "Internal server error");
    else
        token_reply(resp, &o, g.scopes);
    token_out_clear(&o);
}

void oauth_token(struct store *s, const struct oauth_config *cfg,
                 const struct hsrv_request *req, struct hsrv_response *resp)
{
    struct token_req t = {.form = NULL};
    const char *grant;

    if (strcmp(hsrv_method(req), "POST") != 0) {
        token_error(resp, "invalid_request", "expected POST");
        return;
    }
    t.form = token_form(req);
    if (t.form == NULL) {
        token_error(resp, "invalid_request", "malformed form body");
        return;
    }
    if (token_client(s, &t, req, resp) < 0)
        goto out;
    grant = token_field(&t, "grant_type");
    if (grant != NULL && strcmp(grant, "authorization_code") == 0)
        token_grant_code(s, cfg, &t, resp);
    else if (grant != NULL && strcmp(grant, "refresh_token") == 0)
        token_grant_refresh(s, cfg, &t, resp);
    else
        token_error(resp, "unsupported_grant_type",
                    "grant_type must be authorization_code or "
                    "refresh_token");
out:
    json_decref(t.form);
}
