/*
 * auth: who is calling the file API.
 *
 * An access token ("sl." + random URL-safe characters) is stored only as
 * its SHA-256 hex in the tokens table; a request's Bearer token is hashed
 * and looked up, which yields the link (app + account) and its scopes.
 */
#ifndef DBX_CLOUD_AUTH_H
#define DBX_CLOUD_AUTH_H

#include "cloud/store.h"

#include <stdbool.h>
#include <stdint.h>

#define AUTH_SCOPES_MAX 512
#define AUTH_TOKEN_RANDOM 56 /* random characters after "sl." */

enum auth_status {
    AUTH_OK,
    AUTH_MISSING,   /* no Authorization header: a 400 */
    AUTH_MALFORMED, /* not "Bearer <token>": a 400 */
    AUTH_INVALID,   /* unknown or revoked token: 401 */
    AUTH_EXPIRED,   /* 401 expired_access_token */
    AUTH_ERROR,     /* storage failed: 500 */
};

struct auth {
    int64_t account;              /* accounts.id */
    int64_t app;                  /* apps.id */
    char account_id[48];          /* "dbid:..." */
    char scopes[AUTH_SCOPES_MAX]; /* space-separated */
};

/* Resolves an Authorization header value (may be NULL). */
enum auth_status auth_check(struct store *s, const char *header,
                            struct auth *out);

/* True when the space-separated scopes include scope. */
bool auth_has_scope(const char *scopes, const char *scope);

/* Creates an access token for link_id (lock held, inside or outside a
 * transaction).  Returns the token text (caller frees) or NULL. */
char *auth_token_create(struct store *s, int64_t link_id);

#endif
