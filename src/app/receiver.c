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

#include "app/app_link.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/notification.h"
#include "common/sig.h"
#include "common/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Header block limit: notifications and verifications need little,
 * and a browser's request for /login about 2 KiB. */
#define RECEIVER_MAX_HEADER     (8u * 1024u)
/* Room for MHD's bookkeeping and our response headers (a Location of a
 * few hundred bytes at most).  Kept small on purpose: MHD clears the
 * whole per-connection pool after every request. */
#define RECEIVER_HEADER_ROOM    (8u * 1024u)
#define RECEIVER_CONN_TIMEOUT_S 30u

#define SIGNATURE_HEADER "X-Dropbox-Signature"

struct receiver {
    struct hsrv *http;
    char *path;
    struct sig_key *key; /* the app secret, prepared for verifying */
    struct state *st;
    struct worker_pool *pool;
    struct app_link *link;
    atomic_uint in_flight; /* requests being answered */
    unsigned soft_conns;   /* in_flight at which 503 starts */
    _Atomic int64_t log_last_s; /* second of the last INFO notification */
    atomic_uint log_quieted;    /* notifications logged at debug since */
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
    if (!sig_key_verify(r->key, body, len,
                        hsrv_header(req, SIGNATURE_HEADER))) {
        *reason = "mismatch";
        return false;
    }
    return true;
}

/* Keeps the accounts the app knows (holds a token for) in ids; logs the
 * others.  Returns how many were kept, or -1 when the store fails. */
static long receiver_known(struct receiver *r, const char **ids, size_t n,
                           const struct hsrv_request *req)
{
    size_t kept = 0;

    for (size_t i = 0; i < n; i++) {
        enum state_status st = state_account_known(r->st, ids[i]);

        if (st == STATE_OK) {
            ids[kept++] = ids[i];
        } else if (st == STATE_NONE) {
            LOG_W("notification unknown account=%s peer=%s ignored=1", ids[i],
                  hsrv_peer(req));
        } else {
            return -1;
        }
    }
    return (long)kept;
}

static void reply_unavailable(struct hsrv_response *resp, const char *why)
{
    reply_text(resp, 503, why);
    hsrv_add_header(resp, "Retry-After", "1");
}

/* A notification waiting for the commit that holds its marks. */
struct receiver_mark_wait {
    struct receiver *r;
    struct hsrv_later *later;
    const struct hsrv_request *req; /* valid until hsrv_answer */
    bool wake;                      /* some account was marked */
};

/* Runs on the committer's thread once the marks are on disk (or not):
 * only then does the 200 go out. */
static void receiver_marked(void *arg, enum state_status rc)
{
    struct receiver_mark_wait *w = arg;
    struct receiver *r = w->r;
    struct hsrv_response resp = {0};

    if (rc != STATE_OK) {
        LOG_E("notification not stored peer=%s", hsrv_peer(w->req));
        reply_unavailable(&resp, "state store unavailable\n");
    } else {
        if (r->pool != NULL && w->wake)
            worker_pool_wake(r->pool);
        hsrv_reply(&resp, 200, NULL, "", 0);
    }
    /* Once answered, receiver_stop may free r: touch it before. */
    atomic_fetch_sub(&r->in_flight, 1);
    hsrv_answer(w->later, &resp);
    free(w);
}

/* One INFO line per notification would cost more than the notification
 * under load: at most one a second is INFO, telling how many went to
 * debug level since the last; the others are debug lines. */
static void receiver_log_notification(struct receiver *r, size_t n,
                                      long kept,
                                      const struct hsrv_request *req)
{
    struct timespec ts;
    int64_t now_s, last;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    now_s = (int64_t)ts.tv_sec;
    last = atomic_load(&r->log_last_s);
    if (now_s != last &&
        atomic_compare_exchange_strong(&r->log_last_s, &last, now_s)) {
        LOG_I("notification accounts=%zu marked=%ld peer=%s quieted=%u", n,
              kept, hsrv_peer(req), atomic_exchange(&r->log_quieted, 0));
        return;
    }
    atomic_fetch_add(&r->log_quieted, 1);
    LOG_D("notification accounts=%zu marked=%ld peer=%s", n, kept,
          hsrv_peer(req));
}

/* Marks the known accounts, counting the notification in the same
 * commit, and answers once that commit is done (receiver_marked); when
 * every account is pending already and no worker has taken it, answers
 * at once (state_mark_covered).  accounts stay the caller's. */
static void receiver_mark(struct receiver *r, char *const *accounts,
                          size_t n, const struct hsrv_request *req,
                          struct hsrv_response *resp)
{
    const char **ids = xcalloc(n ? n : 1, sizeof *ids);
    struct state_count counts[2] = {{"notifications", 1},
                                    {"unknown_accounts", 0}};
    size_t n_counts;
    struct receiver_mark_wait *w;
    enum state_status rc = STATE_ERR;
    long kept;

    for (size_t i = 0; i < n; i++)
        ids[i] = accounts[i];
    kept = receiver_known(r, ids, n, req);
    if (kept < 0)
        goto out;
    counts[1].delta = (int64_t)n - kept;
    n_counts = counts[1].delta > 0 ? 2 : 1;
    receiver_log_notification(r, n, kept, req);

    rc = state_mark_covered(r->st, ids, (size_t)kept, counts, n_counts);
    if (rc == STATE_OK) {
        if (r->pool != NULL && kept > 0)
            worker_pool_wake(r->pool);
        hsrv_reply(resp, 200, NULL, "", 0);
        goto out;
    }
    if (rc != STATE_NONE)
        goto out;

    rc = STATE_OK;
    w = xcalloc(1, sizeof *w);
    w->r = r;
    w->req = req;
    w->wake = kept > 0;
    w->later = hsrv_later(req);
    atomic_fetch_add(&r->in_flight, 1); /* released by receiver_marked */
    if (state_mark_pending_async(r->st, ids, (size_t)kept, counts, n_counts,
                                 receiver_marked, w) != STATE_OK)
        receiver_marked(w, STATE_ERR);

out:
    if (rc == STATE_ERR) {
        LOG_E("notification not stored accounts=%zu peer=%s", n,
              hsrv_peer(req));
        reply_unavailable(resp, "state store unavailable\n");
    }
    free(ids);
}

static void receiver_notify(struct receiver *r, const struct hsrv_request *req,
                            struct hsrv_response *resp)
{
    const char *reason = NULL;
    const char *body;
    size_t len = 0, n = 0;
    char **accounts = NULL;

    if (!receiver_signed(r, req, &reason)) {
        LOG_W("notification rejected status=403 reason=%s peer=%s", reason,
              hsrv_peer(req));
        reply_text(resp, 403, "invalid signature\n");
        return;
    }

    body = hsrv_body(req, &len);
    if (notification_parse(body, len, &accounts, &n) < 0) {
        LOG_W("notification rejected status=400 reason=malformed peer=%s",
              hsrv_peer(req));
        reply_text(resp, 400, "malformed notification\n");
        return;
    }
    receiver_mark(r, accounts, n, req, resp);
    notification_accounts_free(accounts, n);
}

static void reply_method(struct hsrv_response *resp, const char *allow)
{
    reply_text(resp, 405, "method not allowed\n");
    hsrv_add_header(resp, "Allow", allow);
}

static void receiver_status(struct receiver *r, struct hsrv_response *resp)
{
    char *json = NULL;

    if (state_status_json(r->st, &json) != STATE_OK) {
        reply_unavailable(resp, "state store unavailable\n");
        return;
    }
    hsrv_reply_str(resp, 200, "application/json", json);
    hsrv_add_header(resp, "Cache-Control", "no-store");
    free(json);
}

/* The other pages: GET only. */
static void receiver_page(struct receiver *r, const struct hsrv_request *req,
                          struct hsrv_response *resp)
{
    const char *path = hsrv_path(req);
    bool get = strcmp(hsrv_method(req), "GET") == 0;

    if (r->link == NULL) {
        reply_unavailable(resp, "starting\n");
    } else if (strcmp(path, "/status") == 0) {
        if (get)
            receiver_status(r, resp);
        else
            reply_method(resp, "GET");
    } else if (strcmp(path, "/login") == 0) {
        if (get)
            app_link_login(r->link, req, resp);
        else
            reply_method(resp, "GET");
    } else if (strcmp(path, "/oauth/callback") == 0) {
        if (get)
            app_link_callback(r->link, req, resp);
        else
            reply_method(resp, "GET");
    } else {
        reply_text(resp, 404, "not found\n");
    }
}

/* A page that may block (linking talks to the token endpoint; status
 * reads the store), run on a thread of its own: the HTTP server's
 * threads serve every connection and must not wait. */
struct receiver_page_job {
    struct receiver *r;
    const struct hsrv_request *req; /* valid until hsrv_answer */
    struct hsrv_later *later;
};

static void *receiver_page_thread(void *arg)
{
    struct receiver_page_job *job = arg;
    struct receiver *r = job->r;
    struct hsrv_response resp = {0};

    receiver_page(r, job->req, &resp);
    /* Once answered, receiver_stop may free r: touch it before. */
    atomic_fetch_sub(&r->in_flight, 1);
    hsrv_answer(job->later, &resp);
    free(job);
    return NULL;
}

static bool receiver_page_blocks(const struct receiver *r,
                                 const struct hsrv_request *req)
{
    const char *path = hsrv_path(req);

    return r->link != NULL && strcmp(hsrv_method(req), "GET") == 0 &&
           (strcmp(path, "/status") == 0 || strcmp(path, "/login") == 0 ||
            strcmp(path, "/oauth/callback") == 0);
}

static void receiver_page_later(struct receiver *r,
                                const struct hsrv_request *req,
                                struct hsrv_response *resp)
{
    struct receiver_page_job *job = xcalloc(1, sizeof *job);
    pthread_attr_t attr;
    pthread_t t;
    int rc;

    job->r = r;
    job->req = req;
    job->later = hsrv_later(req);
    atomic_fetch_add(&r->in_flight, 1); /* released by the thread */
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&t, &attr, receiver_page_thread, job);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        LOG_W("request refused status=503 reason=no_thread peer=%s",
              hsrv_peer(req));
        reply_unavailable(resp, "busy\n");
        hsrv_answer(job->later, resp);
        free(job);
        atomic_fetch_sub(&r->in_flight, 1);
    }
}

static void receiver_route(struct receiver *r, const struct hsrv_request *req,
                           struct hsrv_response *resp)
{
    const char *method = hsrv_method(req);

    if (strcmp(hsrv_path(req), r->path) != 0 && receiver_page_blocks(r, req))
        receiver_page_later(r, req, resp);
    else if (strcmp(hsrv_path(req), r->path) != 0)
        receiver_page(r, req, resp);
    else if (strcmp(method, "GET") == 0)
        receiver_verify(req, resp);
    else if (strcmp(method, "POST") == 0)
        receiver_notify(r, req, resp);
    else
        reply_method(resp, "GET, POST");
}

static void receiver_handle(void *ctx, const struct hsrv_request *req,
                            struct hsrv_response *resp)
{
    struct receiver *r = ctx;
    unsigned busy = atomic_fetch_add(&r->in_flight, 1);

    if (busy >= r->soft_conns) {
        LOG_W("request refused status=503 reason=busy in_flight=%u peer=%s",
              busy, hsrv_peer(req));
        reply_unavailable(resp, "busy\n");
    } else {
        receiver_route(r, req, resp);
    }
    atomic_fetch_sub(&r->in_flight, 1);
}

/* Sets up linking once the port is known (for the default redirect). */
static void receiver_link_setup(struct receiver *r,
                                const struct receiver_config *cfg)
{
    const struct worker_config *wc = cfg->worker_cfg;
    struct app_link_config lc = {
        .app_key = cfg->app_key,
        .web_url = cfg->web_url,
        .redirect_uri = cfg->redirect_uri,
        .st = cfg->st,
        .pool = cfg->pool,
    };
    char *redirect = NULL;

    if (wc != NULL) {
        lc.api.api_url = wc->api_url;
        lc.api.content_url = wc->content_url;
        lc.api.ca_file = wc->ca_file;
        lc.api.token_url = wc->token_url;
        lc.api.app_key = cfg->app_key;
        lc.api.app_secret = cfg->secret;
    }
    if (lc.redirect_uri == NULL) {
        bool v6 = strchr(cfg->bind_addr, ':') != NULL;

        redirect = xasprintf("http://%s%s%s:%u/oauth/callback",
                             v6 ? "[" : "", cfg->bind_addr, v6 ? "]" : "",
                             (unsigned)hsrv_port(r->http));
        lc.redirect_uri = redirect;
    }
    r->link = app_link_new(&lc);
    free(redirect);
}

struct receiver *receiver_start(const struct receiver_config *cfg)
{
    struct receiver *r = xcalloc(1, sizeof *r);
    struct hsrv_config hc = {
        .bind_addr = cfg->bind_addr,
        .port = cfg->port,
        .max_body = RECEIVER_MAX_BODY,
        .max_header = RECEIVER_MAX_HEADER,
        .header_room = RECEIVER_HEADER_ROOM,
        .max_conns = RECEIVER_MAX_CONNS,
        .conn_timeout_s = RECEIVER_CONN_TIMEOUT_S,
        .handler = receiver_handle,
        .ctx = r,
        .async = true,
    };

    r->soft_conns = cfg->soft_conns ? cfg->soft_conns : RECEIVER_SOFT_CONNS;
    hc.max_conns = r->soft_conns + RECEIVER_CONNS_MARGIN;
    r->path = xstrdup(cfg->path);
    r->key = sig_key_new(cfg->secret);
    r->st = cfg->st;
    r->pool = cfg->pool;
    atomic_init(&r->in_flight, 0);
    r->http = hsrv_start(&hc);
    if (r->http == NULL) {
        receiver_stop(r);
        return NULL;
    }
    receiver_link_setup(r, cfg);
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
    app_link_free(r->link);
    sig_key_free(r->key); /* wipes the secret's traces */
    free(r->path);
    free(r);
}
