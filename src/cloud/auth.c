/*
 * auth: Bearer tokens to links; issuing, refreshing and revoking tokens.
 */
#include "cloud/auth.h"

#include "common/db.h"
#include "common/log.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Longest token we hash; anything longer cannot be ours. */
#define AUTH_TOKEN_MAX 1024

#define AUTH_SCHEMA                                                         \
    "CREATE TABLE IF NOT EXISTS token_meta ("                               \
    " token_hash TEXT PRIMARY KEY," /* tokens.token_hash */                 \
    " scopes TEXT,"                 /* NULL: the link's */                  \
    " parent_hash TEXT,"            /* the refresh token, if any */         \
    " pkce INTEGER NOT NULL DEFAULT 0);"                                    \
    "CREATE INDEX IF NOT EXISTS token_meta_parent"                          \
    " ON token_meta(parent_hash);"

int auth_init(struct store *s)
{
    int rc;

    store_lock(s);
    rc = db_exec(s->db, AUTH_SCHEMA);
    store_unlock(s);
    return rc;
}

static enum auth_status auth_lookup(struct store *s, const char *hash,
                                    struct auth *out)
{
    sqlite3_stmt *st = db_prepare(
        s->db, "SELECT l.account_id, l.app_id, a.account_id,"
               " COALESCE(m.scopes, l.scopes), t.expires_at, t.revoked"
               " FROM tokens t JOIN links l ON l.id = t.link_id"
               " JOIN accounts a ON a.id = l.account_id"
               " LEFT JOIN token_meta m ON m.token_hash = t.token_hash"
               " WHERE t.token_hash = ?1 AND t.kind = 'access'");
    enum auth_status rc = AUTH_INVALID;
    int step;

    db_bind_text(st, 1, hash);
    step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        out->account = sqlite3_column_int64(st, 0);
        out->app = sqlite3_column_int64(st, 1);
        snprintf(out->account_id, sizeof out->account_id, "%s",
                 (const char *)sqlite3_column_text(st, 2));
        snprintf(out->scopes, sizeof out->scopes, "%s",
                 (const char *)sqlite3_column_text(st, 3));
        snprintf(out->token_hash, sizeof out->token_hash, "%s", hash);
        rc = AUTH_OK;
        if (sqlite3_column_int(st, 5) != 0)
            rc = AUTH_INVALID;
        else if (sqlite3_column_type(st, 4) != SQLITE_NULL &&
                 sqlite3_column_int64(st, 4) <= time_now_s())
            rc = AUTH_EXPIRED;
    } else if (step != SQLITE_DONE) {
        LOG_E("token lookup failed err=%s", sqlite3_errmsg(s->db));
        rc = AUTH_ERROR;
    }
    sqlite3_finalize(st);
    return rc;
}

/* RFC 6750's b64token alphabet: anything else cannot be a token. */
static bool auth_token_chars_ok(const char *t)
{
    for (; *t != '\0'; t++) {
        unsigned char ch = (unsigned char)*t;

        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
              (ch >= '0' && ch <= '9') || strchr("-._~+/=", ch) != NULL))
            return false;
    }
    return true;
}

enum auth_status auth_check(struct store *s, const char *header,
                            struct auth *out)
{
    char hash[SIG_HEX_LEN + 1];
    const char *token;
    enum auth_status rc;

    memset(out, 0, sizeof *out);
    if (header == NULL)
        return AUTH_MISSING;
    if (strncasecmp(header, "Bearer", 6) != 0 ||
        (header[6] != ' ' && header[6] != '\0'))
        return AUTH_MALFORMED;
    token = header + 6;
    while (*token == ' ')
        token++;
    if (*token == '\0' || !auth_token_chars_ok(token))
        return AUTH_BAD_TOKEN;
    if (strlen(token) > AUTH_TOKEN_MAX)
        return AUTH_INVALID;

    sha256_hex(token, strlen(token), hash);
    store_lock(s);
    rc = auth_lookup(s, hash, out);
    store_unlock(s);
    return rc;
}

bool auth_has_scope(const char *scopes, const char *scope)
{
    size_t n = strlen(scope);
    const char *p = scopes;

    while ((p = strstr(p, scope)) != NULL) {
        bool start = p == scopes || p[-1] == ' ';
        bool end = p[n] == '\0' || p[n] == ' ';

        if (start && end)
            return true;
        p += n;
    }
    return false;
}

static int auth_meta_insert(struct store *s, const char *hash,
                            const struct auth_grant *g)
{
    sqlite3_stmt *st = db_prepare(
        s->db, "INSERT INTO token_meta (token_hash, scopes, parent_hash,"
               " pkce) VALUES (?1, ?2, ?3, ?4)");
    int step;

    db_bind_text(st, 1, hash);
    db_bind_text(st, 2, g->scopes);
    db_bind_text(st, 3, g->parent_hash);
    sqlite3_bind_int(st, 4, g->pkce ? 1 : 0);
    step = sqlite3_step(st);
    sqlite3_finalize(st);
    return step == SQLITE_DONE ? 0 : -1;
}

char *auth_token_issue(struct store *s, const struct auth_grant *g)
{
    char rnd[AUTH_REFRESH_RANDOM + 1];
    char hash[SIG_HEX_LEN + 1];
    char *token;
    sqlite3_stmt *st;
    int step;

    if (g->refresh) {
        rand_urlsafe(rnd, AUTH_REFRESH_RANDOM);
        token = xstrdup(rnd);
    } else {
        rand_urlsafe(rnd, AUTH_TOKEN_RANDOM);
        token = xasprintf("sl.%s", rnd);
    }
    sha256_hex(token, strlen(token), hash);
    st = db_prepare(s->db, "INSERT INTO tokens (token_hash, link_id, kind,"
                           " expires_at) VALUES (?1, ?2, ?3, ?4)");
    db_bind_text(st, 1, hash);
    sqlite3_bind_int64(st, 2, g->link);
    db_bind_text(st, 3, g->refresh ? "refresh" : "access");
    if (g->expires_at > 0)
        sqlite3_bind_int64(st, 4, g->expires_at);
    step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step != SQLITE_DONE ||
        ((g->scopes || g->parent_hash || g->pkce) &&
         auth_meta_insert(s, hash, g) < 0)) {
        LOG_E("token insert failed err=%s", sqlite3_errmsg(s->db));
        free(token);
        return NULL;
    }
    return token;
}

char *auth_token_create(struct store *s, int64_t link_id)
{
    struct auth_grant g = {.link = link_id};

    return auth_token_issue(s, &g);
}

int auth_refresh_find(struct store *s, const char *token,
                      struct auth_refresh *out)
{
    sqlite3_stmt *st;
    int step, rc = 1;

    memset(out, 0, sizeof *out);
    if (strlen(token) > AUTH_TOKEN_MAX)
        return 1;
    sha256_hex(token, strlen(token), out->hash);
    st = db_prepare(
        s->db, "SELECT l.id, l.app_id, COALESCE(m.pkce, 0),"
               " COALESCE(m.scopes, l.scopes)"
               " FROM tokens t JOIN links l ON l.id = t.link_id"
               " LEFT JOIN token_meta m ON m.token_hash = t.token_hash"
               " WHERE t.token_hash = ?1 AND t.kind = 'refresh'"
               " AND t.revoked = 0");
    db_bind_text(st, 1, out->hash);
    step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        out->link = sqlite3_column_int64(st, 0);
        out->app = sqlite3_column_int64(st, 1);
        out->pkce = sqlite3_column_int(st, 2) != 0;
        snprintf(out->scopes, sizeof out->scopes, "%s",
                 (const char *)sqlite3_column_text(st, 3));
        rc = 0;
    } else if (step != SQLITE_DONE) {
        LOG_E("refresh lookup failed err=%s", sqlite3_errmsg(s->db));
        rc = -1;
    }
    sqlite3_finalize(st);
    return rc;
}

int auth_revoke(struct store *s, const char *token_hash)
{
    sqlite3_stmt *st = db_prepare(
        s->db, "UPDATE tokens SET revoked = 1 WHERE token_hash = ?1"
               " OR token_hash = (SELECT parent_hash FROM token_meta"
               "  WHERE token_hash = ?1)"
               " OR token_hash IN (SELECT token_hash FROM token_meta"
               "  WHERE parent_hash IS NOT NULL AND parent_hash ="
               "  (SELECT parent_hash FROM token_meta"
               "   WHERE token_hash = ?1))");
    int step;

    db_bind_text(st, 1, token_hash);
    step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step != SQLITE_DONE) {
        LOG_E("token revoke failed err=%s", sqlite3_errmsg(s->db));
        return -1;
    }
    return 0;
}
