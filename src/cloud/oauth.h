/*
 * oauth: OAuth 2 as Dropbox documents it, for apps that link accounts.
 *
 *   GET  /oauth2/authorize  the consent page (Allow / Cancel); with
 *                           auto-approve it redirects at once
 *   POST /oauth2/authorize  the page's form: the person's decision
 *   POST /oauth2/token      authorization_code and refresh_token grants
 *
 * The authorize step ends with a one-time code (valid ten minutes, kept
 * as a hash in oauth_codes) sent to the app's redirect URI, which must be
 * one the app registered (apps/set_redirect_uris); without a redirect URI
 * the page shows the code, for apps that cannot receive redirects.  The
 * code is exchanged at the token endpoint, with the PKCE verifier or the
 * app secret (form fields or HTTP Basic), for a short-lived access token
 * and, with token_access_type=offline, a refresh token.
 *
 * There are no sign-ins on this cloud: the page lets the person pick one
 * of the accounts, and the non-standard "account" parameter (account id
 * or email) picks one directly; without it the newest account is used.
 */
#ifndef DBX_CLOUD_OAUTH_H
#define DBX_CLOUD_OAUTH_H

#include "cloud/store.h"
#include "common/http_server.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Largest form body at /oauth2/. */
#define OAUTH_BODY_MAX (16u * 1024)
/* How long an authorization code may wait for its exchange. */
#define OAUTH_CODE_TTL_S 600
/* Random characters of an authorization code. */
#define OAUTH_CODE_CHARS 43
/* Redirect URIs one app may register. */
#define OAUTH_REDIRECT_URIS_MAX 32
/* Longest redirect URI. */
#define OAUTH_URI_MAX 2048
/* Default lifetime of access tokens issued through OAuth. */
#define OAUTH_TOKEN_LIFETIME_S 14400

struct oauth_config {
    bool auto_approve;        /* approve without showing the page */
    int64_t token_lifetime_s; /* expires_in of access tokens */
};

/* Creates the OAuth tables if missing.  Returns 0 or -1. */
int oauth_init(struct store *s);

/* Handles a request whose path starts with "/oauth2/". */
void oauth_dispatch(struct store *s, const struct oauth_config *cfg,
                    const struct hsrv_request *req,
                    struct hsrv_response *resp);

/* POST /oauth2/token (oauth_token.c). */
void oauth_token(struct store *s, const struct oauth_config *cfg,
                 const struct hsrv_request *req,
                 struct hsrv_response *resp);

/* Admin apps/set_redirect_uris: replaces the app's redirect URIs. */
void oauth_admin_set_redirect_uris(struct store *s, json_t *body,
                                   struct hsrv_response *resp);

/* The app with this key (lock held): fills *app (apps.id) and, when
 * secret is not NULL, the secret (secret_len bytes).  Returns 0, or -1
 * when unknown. */
int oauth_app_find(struct store *s, const char *key, int64_t *app,
                   char *secret, size_t secret_len);

/* Checks a space-separated scope request against the scopes we know and
 * writes them in canonical order to out.  Returns 0, or -1 when one is
 * unknown. */
int oauth_scopes_canon(const char *requested, char *out, size_t len);

#endif
