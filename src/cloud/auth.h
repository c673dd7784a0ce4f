/*
 * auth: who is calling the file API, and the tokens that say so.
 *
 * An access token ("sl." + random URL-safe characters) or a refresh token
 * (random characters, no prefix) is stored only as its SHA-256 hex in the
 * tokens table; a request's Bearer token is hashed and looked up, which
 * yields the link (app + account) and its scopes.
 *
 * Tokens issued through OAuth also get a row in token_meta (created by
 * auth_init): the scopes of that one token (a refresh may narrow them),
 * the refresh token an access token came from (so that revoking it
 * revokes the whole family, as the real service does), and whether the
 * grant used PKCE (such refresh tokens may be used without the secret).
 */
#ifndef DBX_CLOUD_AUTH_H
#define DBX_CLOUD_AUTH_H

#include "cloud/store.h"
#include "common/sig.h"

#include <stdbool.h>
#include <stdint.h>

#define AUTH_SCOPES_MAX 512
#define AUTH_TOKEN_RANDOM 56   /* random characters after "sl." */
#define AUTH_REFRESH_RANDOM 64 /* random characters of a refresh token */

/* Every scope we know, in their canonical order; the default grant. */
#define AUTH_ALL_SCOPES                                                     \
    "files.metadata.read files.content.read files.content.write "           \
    "account_info.read"

enum auth_status {
    AUTH_OK,
    AUTH_MISSING,     /* no Authorization header: a 400 */
    AUTH_MALFORMED,   /* not "Bearer <token>": a 400 */
    AUTH_BAD_TOKEN,   /* "Bearer" with an empty or ill-formed token: 400 */
    AUTH_INVALID,     /* unknown or revoked token: 401 */
    AUTH_EXPIRED,     /* 401 expired_access_token */
    AUTH_ERROR,       /* storage failed: 500 */
};

struct auth {
    int64_t account;              /* accounts.id */
    int64_t app;                  /* apps.id */
    char account_id[48];          /* "dbid:..." */
    char scopes[AUTH_SCOPES_MAX]; /* space-separated */
    char token_hash[SIG_HEX_LEN + 1];
};

/* What auth_token_issue creates. */
struct auth_grant {
    int64_t link;            /* links.id */
    bool refresh;            /* a refresh token rather than an access one */
    int64_t expires_at;      /* unix seconds; 0: never */
    const char *scopes;      /* this token's scopes; NULL: the link's */
    const char *parent_hash; /* refresh token of an access token, or NULL */
    bool pkce;               /* refresh token granted through PKCE */
};

/* A refresh token's row, from auth_refresh_find. */
struct auth_refresh {
    int64_t link;
    int64_t app;
    bool pkce;
    char scopes[AUTH_SCOPES_MAX];
    char hash[SIG_HEX_LEN + 1];
};

/* Creates token_meta if missing.  Returns 0 or -1. */
int auth_init(struct store *s);

/* Resolves an Authorization header value (may be NULL). */
enum auth_status auth_check(struct store *s, const char *header,
                            struct auth *out);

/* True when the space-separated scopes include scope. */
bool auth_has_scope(const char *scopes, const char *scope);

/* Creates a non-expiring access token for link_id with the link's scopes
 * (lock held).  Returns the token text (caller frees) or NULL. */
char *auth_token_create(struct store *s, int64_t link_id);

/* Creates a token as g describes (lock held).  Returns the token text
 * (caller frees) or NULL. */
char *auth_token_issue(struct store *s, const struct auth_grant *g);

/* Looks up a live refresh token (lock held).  Returns 0 when found, 1
 * when unknown or revoked, -1 on a storage error. */
int auth_refresh_find(struct store *s, const char *token,
                      struct auth_refresh *out);

/* Revokes the access token with this hash and, when it came from a
 * refresh token, that refresh token and every access token issued from
 * it (lock held).  Returns 0 or -1. */
int auth_revoke(struct store *s, const char *token_hash);

#endif
