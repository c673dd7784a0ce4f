/*
 * app_link: /login and /oauth/callback.  See app_link.h.
 */
#include "app/app_link.h"

#include "common/log.h"
#include "common/util.h"

#include <openssl/sha.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* RFC 7636 allows 43 to 128 characters; 64 random ones. */
#define LINK_VERIFIER_LEN 64
#define LINK_STATE_LEN    32

struct link_pending {
    char state[LINK_STATE_LEN + 1];
    char verifier[LINK_VERIFIER_LEN + 1];
    int64_t created_ms; /* 0: free slot */
};

struct app_link {
    char *app_key;
    char *web_url;
    char *redirect_uri;
    struct dbxapi_config api;
    char *token_url;
    char *ca_file;
    char *app_secret;
    struct state *st;
    struct worker_pool *pool;
    pthread_mutex_t mu; /* guards pending */
    struct link_pending pending[LINK_MAX_PENDING];
};

static char *dup_or_null(const char *s)
{
    return s != NULL ? xstrdup(s) : NULL;
}

struct app_link *app_link_new(const struct app_link_config *cfg)
{
    struct app_link *l = xcalloc(1, sizeof *l);

    l->app_key = dup_or_null(cfg->app_key);
    l->web_url = xstrdup(cfg->web_url ? cfg->web_url
                                      : "https://www.dropbox.com");
    l->redirect_uri = dup_or_null(cfg->redirect_uri);
    l->api = cfg->api;
    l->token_url = dup_or_null(cfg->api.token_url);
    l->ca_file = dup_or_null(cfg->api.ca_file);
    l->app_secret = dup_or_null(cfg->api.app_secret);
    l->api.token_url = l->token_url;
    l->api.ca_file = l->ca_file;
    l->api.app_secret = l->app_secret;
    l->api.app_key = l->app_key;
    l->st = cfg->st;
    l->pool = cfg->pool;
    pthread_mutex_init(&l->mu, NULL);
    return l;
}

void app_link_free(struct app_link *l)
{
    if (l == NULL)
        return;
    free(l->app_key);
    free(l->web_url);
    free(l->redirect_uri);
    free(l->token_url);
    free(l->ca_file);
    if (l->app_secret != NULL)
        explicit_bzero(l->app_secret, strlen(l->app_secret));
    free(l->app_secret);
    explicit_bzero(l->pending, sizeof l->pending);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

static void reply_page(struct hsrv_response *resp, int status,
                       const char *text)
{
    char *page = xasprintf("<!doctype html><title>dbxhook</title>"
                           "<p>%s</p>\n", text);

    hsrv_reply_str(resp, status, "text/html; charset=utf-8", page);
    hsrv_add_header(resp, "Cache-Control", "no-store");
    free(page);
}

/* Remembers a new login in a free (or the oldest) slot. */
static void pending_add(struct app_link *l, const char *state,
                        const char *verifier)
{
    struct link_pending *slot = &l->pending[0];

    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < LINK_MAX_PENDING; i++) {
        if (l->pending[i].created_ms < slot->created_ms)
            slot = &l->pending[i];
    }
    memcpy(slot->state, state, sizeof slot->state);
    memcpy(slot->verifier, verifier, sizeof slot->verifier);
    slot->created_ms = time_mono_ms();
    pthread_mutex_unlock(&l->mu);
}

/* Takes (once) the verifier of a live login with this state. */
static bool pending_take(struct app_link *l, const char *state,
                         char verifier[LINK_VERIFIER_LEN + 1])
{
    bool found = false;
    int64_t now = time_mono_ms();

    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < LINK_MAX_PENDING && !found; i++) {
        struct link_pending *p = &l->pending[i];

        if (p->created_ms == 0 || strlen(state) != LINK_STATE_LEN ||
            strcmp(p->state, state) != 0)
            continue;
        if (now - p->created_ms <= LINK_TTL_MS) {
            memcpy(verifier, p->verifier, LINK_VERIFIER_LEN + 1);
            found = true;
        }
        explicit_bzero(p, sizeof *p);
    }
    pthread_mutex_unlock(&l->mu);
    return found;
}

void app_link_login(struct app_link *l, const struct hsrv_request *req,
                    struct hsrv_response *resp)
{
    char state[LINK_STATE_LEN + 1], verifier[LINK_VERIFIER_LEN + 1];
    unsigned char digest[SHA256_DIGEST_LENGTH];
    char *challenge, *query = NULL, *url;

    if (l->app_key == NULL || l->redirect_uri == NULL) {
        reply_page(resp, 404, "Linking is not configured (--app-key).");
        return;
    }
    rand_urlsafe(state, LINK_STATE_LEN);
    rand_urlsafe(verifier, LINK_VERIFIER_LEN);
    SHA256((const unsigned char *)verifier, LINK_VERIFIER_LEN, digest);
    challenge = b64url_encode(digest, sizeof digest);
    pending_add(l, state, verifier);

    dbxapi_form_add(&query, "client_id", l->app_key);
    dbxapi_form_add(&query, "response_type", "code");
    dbxapi_form_add(&query, "redirect_uri", l->redirect_uri);
    dbxapi_form_add(&query, "state", state);
    dbxapi_form_add(&query, "code_challenge", challenge);
    dbxapi_form_add(&query, "code_challenge_method", "S256");
    dbxapi_form_add(&query, "token_access_type", "offline");
    url = xasprintf("%s/oauth2/authorize?%s", l->web_url, query);
    reply_page(resp, 302, "Redirecting to the authorization page.");
    hsrv_add_header(resp, "Location", url);
    LOG_I("link started peer=%s", hsrv_peer(req));
    explicit_bzero(verifier, sizeof verifier);
    free(challenge);
    free(query);
    free(url);
}

/* Stores the tokens and schedules the first sync. */
static int link_store(struct app_link *l, const struct dbxapi_token *tok)
{
    const char *ids[1] = {tok->account};

    if (tok->account == NULL || !state_account_valid(tok->account) ||
        state_token_set(l->st, tok->account, tok->access, tok->refresh,
                        tok->expires_s) != STATE_OK)
        return -1;
    state_failure_set(l->st, tok->account, NULL, NULL);
    if (state_mark_pending(l->st, ids, 1) != STATE_OK)
        return -1;
    if (l->pool != NULL)
        worker_pool_wake(l->pool);
    return 0;
}

/* Swaps the code for tokens; 0 and *tok filled, or -1. */
static int link_exchange(struct app_link *l, const char *code,
                         const char *verifier, struct dbxapi_token *tok)
{
    struct dbxapi *api = dbxapi_new(&l->api);
    struct dbxapi_error err;
    enum dbxapi_status st;
    char *form = NULL;

    if (api == NULL)
        return -1;
    dbxapi_form_add(&form, "grant_type", "authorization_code");
    dbxapi_form_add(&form, "code", code);
    dbxapi_form_add(&form, "redirect_uri", l->redirect_uri);
    dbxapi_form_add(&form, "client_id", l->app_key);
    dbxapi_form_add(&form, "code_verifier", verifier);
    st = dbxapi_oauth_token(api, form, tok, &err);
    explicit_bzero(form, strlen(form));
    free(form);
    dbxapi_free(api);
    if (st != DBXAPI_OK) {
        LOG_W("link token exchange failed result=%s status=%ld error=\"%s\"",
              dbxapi_status_name(st), err.http_status, err.summary);
        return -1;
    }
    return 0;
}

void app_link_callback(struct app_link *l, const struct hsrv_request *req,
                       struct hsrv_response *resp)
{
    const char *code = hsrv_query(req, "code");
    const char *state = hsrv_query(req, "state");
    char verifier[LINK_VERIFIER_LEN + 1];
    struct dbxapi_token tok;
    char *text;

    if (l->app_key == NULL) {
        reply_page(resp, 404, "Linking is not configured (--app-key).");
        return;
    }
    if (state == NULL || !pending_take(l, state, verifier)) {
        LOG_W("link rejected reason=unknown_state peer=%s", hsrv_peer(req));
        reply_page(resp, 400, "Unknown or expired login; start again.");
        return;
    }
    if (code == NULL) {
        LOG_W("link refused error=%s", hsrv_query(req, "error")
                                           ? "access_denied" : "no_code");
        reply_page(resp, 400, "The account was not linked.");
        return;
    }
    if (link_exchange(l, code, verifier, &tok) < 0) {
        reply_page(resp, 502, "The token exchange failed; start again.");
        return;
    }
    if (link_store(l, &tok) < 0) {
        reply_page(resp, 503, "The tokens could not be stored.");
    } else {
        LOG_I("link done account=%s refresh=%d", tok.account,
              tok.refresh != NULL);
        text = xasprintf("Linked %s; its first sync is scheduled.",
                         tok.account);
        reply_page(resp, 200, text);
        free(text);
    }
    explicit_bzero(verifier, sizeof verifier);
    dbxapi_token_free(&tok);
}
