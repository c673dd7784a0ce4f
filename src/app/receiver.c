/*
 * receiver: verification and notifications on the webhook URI.
 *
 * Order of checks for a notification, each answered before the next runs:
 * path (404), method (405), size (413, by hsrv), signature over the raw
 * bytes (403), shape of the JSON (400), durable mark (503 if the store
 * fails), then 200.  Checking the signature first means unsigned input
 * never reaches the JSON parser.
 */
#include "app/receiver.h"

#include "common/http_server.h"
#include "common/log.h"
#include "common/sig.h"
#include "common/util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* Header block limit: notifications and verifications need little. */
#define RECEIVER_MAX_HEADER     (16u * 1024u)
#define RECEIVER_MAX_CONNS      1024u
#define RECEIVER_CONN_TIMEOUT_S 30u

#define SIGNATURE_HEADER "X-Dropbox-Signature"

struct receiver {
    struct hsrv *http;
    char *path;
    char *secret;
    struct state *st;
    struct worker_pool *pool;
};

static void reply_text(struct hsrv_response *resp, int status, const char *text)
{
    hsrv_reply_str(resp, status, "text/plain; charset=utf-8", text);
    hsrv_add_header(resp, "X-Content-Type-Options", "nosniff");
}

static void receiver_verify(const struct hsrv_request *req,
                            struct hsrv_response *resp)
{
    const char *challenge = hsrv_query(req, "challenge");

    if (challenge == NULL) {
        reply_text(resp, 400, "missing challenge\n");
        return;
    }
    /* Exactly the challenge, byte for byte: no charset parameter is
     * needed, and nosniff keeps a browser from reading it as HTML. */
    hsrv_reply(resp, 200, "text/plain", challenge, strlen(challenge));
    hsrv_add_header(resp, "X-Content-Type-Options", "nosniff");
    LOG_I("verification answered peer=%s", hsrv_peer(req));
}

/* Checks the one signature header over the raw body; reason gets why not
 * (for the log line, never the signature itself). */
static bool receiver_signed(const struct receiver *r,
                            const struct hsrv_request *req, const char **reason)
{
    unsigned count = hsrv_header_count(req, SIGNATURE_HEADER);
    const char *body;
    size_t len = 0;

    if (count == 0) {
        *reason = "missing";
        return false;
    }
    if (count > 1) {
        *reason = "repeated";
        return false;
    }
    body = hsrv_body(req, &len);
    if (body == NULL)
        body = "";
    if (!sig_verify(r->secret, body, len, hsrv_header(req, SIGNATURE_HEADER))) {
        *reason = "mismatch";
        return false;
    }
    return true;
}

/* Finds list_folder.accounts and checks every id.  Returns the array
 * (borrowed from root) or NULL when the shape is wrong. */
static json_t *receiver_accounts(json_t *root)
{
    json_t *accounts;
    json_t *item;
    size_t i;

    if (!json_is_object(root))
        return NULL;
    accounts =
        json_object_get(json_object_get(root, "list_folder"), "accounts");
    if (!json_is_array(accounts))
        return NULL;
    json_array_foreach(accounts, i, item)
    {
        if (!json_is_string(item) ||
            !state_account_valid(json_string_value(item)))
            return NULL;
    }
    return accounts;
}

/* Marks the accounts and answers; root stays the caller's. */
static void receiver_mark(struct receiver *r, json_t *accounts,
                          const struct hsrv_request *req,
                          struct hsrv_response *resp)
{
    size_t n = json_array_size(accounts);
    const char **ids = xcalloc(n ? n : 1, sizeof *ids);
    enum state_status rc;

    for (size_t i = 0; i < n; i++)
        ids[i] = json_string_value(json_array_get(accounts, i));
    rc = state_mark_pending(r->st, ids, n);
    free(ids);
    if (rc != STATE_OK) {
        LOG_E("notification not stored accounts=%zu peer=%s", n,
              hsrv_peer(req));
        reply_text(resp, 503, "state store unavailable\n");
        return;
    }

    state_counter_add(r->st, "notifications", 1);
    if (r->pool != NULL && n > 0)
        worker_pool_wake(r->pool);
    LOG_I("notification accounts=%zu peer=%s", n, hsrv_peer(req));
    hsrv_reply(resp, 200, NULL, "", 0);
}

static void receiver_notify(struct receiver *r, const struct hsrv_request *req,
                            struct hsrv_response *resp)
{
    const char *reason = NULL;
    const char *body;
    size_t len = 0;
    json_t *root;
    json_t *accounts;
    json_error_t err;

    if (!receiver_signed(r, req, &reason)) {
        LOG_W("notification rejected status=403 reason=%s peer=%s", reason,
              hsrv_peer(req));
        reply_text(resp, 403, "invalid signature\n");
        return;
    }

    body = hsrv_body(req, &len);
    root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &err);
    accounts = receiver_accounts(root);
    if (accounts == NULL) {
        LOG_W("notification rejected status=400 reason=malformed peer=%s",
              hsrv_peer(req));
        reply_text(resp, 400, "malformed notification\n");
    } else {
        receiver_mark(r, accounts, req, resp);
    }
    json_decref(root);
}

static void receiver_handle(void *ctx, const struct hsrv_request *req,
                            struct hsrv_response *resp)
{
    struct receiver *r = ctx;
    const char *method = hsrv_method(req);

    if (strcmp(hsrv_path(req), r->path) != 0) {
        reply_text(resp, 404, "not found\n");
    } else if (strcmp(method, "GET") == 0) {
        receiver_verify(req, resp);
    } else if (strcmp(method, "POST") == 0) {
        receiver_notify(r, req, resp);
    } else {
        reply_text(resp, 405, "method not allowed\n");
        hsrv_add_header(resp, "Allow", "GET, POST");
    }
}

struct receiver *receiver_start(const struct receiver_config *cfg)
{
    struct receiver *r = xcalloc(1, sizeof *r);
    struct hsrv_config hc = {
        .bind_addr = cfg->bind_addr,
        .port = cfg->port,
        .max_body = RECEIVER_MAX_BODY,
        .max_header = RECEIVER_MAX_HEADER,
        .max_conns = RECEIVER_MAX_CONNS,
        .conn_timeout_s = RECEIVER_CONN_TIMEOUT_S,
        .handler = receiver_handle,
        .ctx = r,
    };

    r->path = xstrdup(cfg->path);
    r->secret = xstrdup(cfg->secret);
    r->st = cfg->st;
    r->pool = cfg->pool;
    r->http = hsrv_start(&hc);
    if (r->http == NULL) {
        receiver_stop(r);
        return NULL;
    }
    return r;
}

uint16_t receiver_port(const struct receiver *r)
{
    return hsrv_port(r->http);
}

void receiver_stop(struct receiver *r)
{
    if (r == NULL)
        return;
    if (r->http != NULL)
        hsrv_stop(r->http);
    /* The secret should not linger in freed memory. */
    explicit_bzero(r->secret, strlen(r->secret));
    free(r->secret);
    free(r->path);
    free(r);
}
