/*
 * auth: Bearer tokens to links.
 */
#include "cloud/auth.h"

#include "common/db.h"
#include "common/log.h"
#include "common/sig.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Longest token we hash; anything longer cannot be ours. */
#define AUTH_TOKEN_MAX 1024

static enum auth_status auth_lookup(struct store *s, const char *hash,
                                    struct auth *out)
{
    sqlite3_stmt *st = db_prepare(
        s->db, "SELECT l.account_id, l.app_id, a.account_id, l.scopes,"
               " t.expires_at, t.revoked"
               " FROM tokens t JOIN links l ON l.id = t.link_id"
               " JOIN accounts a ON a.id = l.account_id"
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

enum auth_status auth_check(struct store *s, const char *header,
                            struct auth *out)
{
    char hash[SIG_HEX_LEN + 1];
    const char *token;
    enum auth_status rc;

    memset(out, 0, sizeof *out);
    if (header == NULL)
        return AUTH_MISSING;
    if (strncasecmp(header, "Bearer ", 7) != 0)
        return AUTH_MALFORMED;
    token = header + 7;
    while (*token == ' ')
        token++;
    if (*token == '\0')
        return AUTH_MALFORMED;
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

char *auth_token_create(struct store *s, int64_t link_id)
{
    char rnd[AUTH_TOKEN_RANDOM + 1];
    char hash[SIG_HEX_LEN + 1];
    char *token;
    sqlite3_stmt *st;
    int step;

    rand_urlsafe(rnd, AUTH_TOKEN_RANDOM);
    token = xasprintf("sl.%s", rnd);
    sha256_hex(token, strlen(token), hash);
    st = db_prepare(s->db, "INSERT INTO tokens (token_hash, link_id, kind)"
                           " VALUES (?1, ?2, 'access')");
    db_bind_text(st, 1, hash);
    sqlite3_bind_int64(st, 2, link_id);
    step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step != SQLITE_DONE) {
        LOG_E("token insert failed err=%s", sqlite3_errmsg(s->db));
        free(token);
        return NULL;
    }
    return token;
}
