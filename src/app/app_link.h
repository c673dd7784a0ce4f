/*
 * app_link: linking accounts with the OAuth 2 code flow (PKCE, offline).
 *
 *   GET /login           redirects to WEB_URL/oauth2/authorize with
 *                        client_id, response_type=code, redirect_uri, a
 *                        random state, code_challenge (S256) and
 *                        token_access_type=offline.
 *   GET /oauth/callback  checks state (once, within LINK_TTL_MS), swaps
 *                        the code (with the PKCE verifier and the app's
 *                        credentials) for tokens at the token URL,
 *                        stores the access and refresh tokens, and marks
 *                        the account pending: its first full sync.
 *
 * Pending logins live in this process's memory (at most LINK_MAX_PENDING;
 * the oldest goes first), so the callback must reach the receiver that
 * answered /login.  Tokens never appear in a page or a log line.
 */
#ifndef DBX_APP_LINK_H
#define DBX_APP_LINK_H

#include "app/dbxapi.h"
#include "app/state.h"
#include "app/worker.h"
#include "common/http_server.h"

#define LINK_MAX_PENDING 64
#define LINK_TTL_MS      (10 * 60 * 1000)

struct app_link_config {
    const char *app_key;      /* NULL: linking is off (404) */
    const char *web_url;      /* "https://www.dropbox.com" */
    const char *redirect_uri; /* the /oauth/callback URI as registered */
    struct dbxapi_config api; /* token_url, ca_file, app key and secret */
    struct state *st;
    struct worker_pool *pool; /* woken after linking; may be NULL */
};

struct app_link;

/* Copies what it needs; never NULL. */
struct app_link *app_link_new(const struct app_link_config *cfg);
void app_link_free(struct app_link *l);

void app_link_login(struct app_link *l, const struct hsrv_request *req,
                    struct hsrv_response *resp);
void app_link_callback(struct app_link *l, const struct hsrv_request *req,
                       struct hsrv_response *resp);

#endif
