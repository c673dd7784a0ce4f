/*
 * delivery: notification POSTs on a curl multi handle, their records in
 * the attempts table, and the blocking verification GET.  See delivery.h.
 *
 * In-flight deliveries live only in memory (a short list, at most
 * DELIVERY_MAX_INFLIGHT long); everything that must survive a crash is
 * written when an attempt ends.  A crash mid-flight therefore resends
 * the notification after the restart: at least once, never lost.
 */
#include "cloud/delivery.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "cloud/health.h"
#include "common/db.h"
#include "common/log.h"
#include "common/util.h"

/* Notifications being delivered at once, over all webhooks. */
#define DELIVERY_MAX_INFLIGHT 512
/* Reads of the due rows per round when full webhooks crowd them out. */
#define DELIVERY_MAX_PASSES 8
/* Transport error text kept per attempt. */
#define DELIVERY_ERROR_MAX 256
/* rand_urlsafe characters in a challenge: 256 bits of entropy, like a
 * base64url-encoded 32-byte token. */
#define DELIVERY_CHALLENGE_LEN 43
/* The longest verification answer read; longer ones cannot match. */
#define DELIVERY_VERIFY_BODY_MAX 1024
#define DELIVERY_USER_AGENT "DropboxWebhooks/1.0"

/* One attempt in flight.  Strings are owned by the delivery. */
struct delivery {
    int64_t notification_id;
    int64_t app_id;
    int64_t created_at;   /* the retry window's start, unix ms */
    int attempts;         /* attempts made before this one */
    char *app_key;        /* for log lines */
    char *uri;            /* the webhook URI it went to */
    int64_t started_at;   /* unix ms */
    int64_t started_mono; /* monotonic ms */
    CURL *easy;           /* NULL until started and once finished */
    struct curl_slist *headers;
    char *body;
    size_t body_len;
    char errbuf[CURL_ERROR_SIZE];
    struct delivery *next;
};

/* How one attempt ended. */
struct delivery_result {
    long status;         /* HTTP status, 0 when no response arrived */
    int64_t duration_ms;
    char error[DELIVERY_ERROR_MAX]; /* "" on success */
};

struct delivery_queue {
    sqlite3 *db;
    const struct notifier_config *cfg;
    CURLM *multi;
    struct delivery *inflight;
    size_t inflight_count;
    struct delivery_alert alerts[DELIVERY_MAX_ALERTS];
    size_t alert_count;
};

static pthread_once_t delivery_once = PTHREAD_ONCE_INIT;

static void delivery_init_once(void)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        LOG_E("curl_global_init failed");
        abort();
    }
}

void delivery_global_init(void)
{
    pthread_once(&delivery_once, delivery_init_once);
}

int64_t delivery_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A uniformly random jitter in [-1, 1] for the retry schedule. */
static double delivery_random_jitter(void)
{
    uint32_t r;

    rand_bytes(&r, sizeof(r));
    return (double)r / (double)UINT32_MAX * 2.0 - 1.0;
}

/* ---- curl ------------------------------------------------------------ */

static curl_socket_t delivery_open_socket(void *ctx, curlsocktype purpose,
                                          struct curl_sockaddr *addr);

/* Options both requests share: no redirects, no proxy (a webhook on
 * loopback must never go through one), http and https only. */
static void delivery_common_opts(CURL *e, const char *uri,
                                 int64_t timeout_ms, bool refuse_private,
                                 char *errbuf)
{
    if (refuse_private)
        curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION,
                         delivery_open_socket);
    curl_easy_setopt(e, CURLOPT_URL, uri);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e, CURLOPT_USERAGENT, DELIVERY_USER_AGENT);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    errbuf[0] = '\0';
}

/* A transport failure in words a console user can act on. */
static void delivery_describe(CURLcode rc, CURL *e, const char *errbuf,
                              int64_t timeout_ms, char *out, size_t size)
{
    const char *detail = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    long os_errno = 0;

    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(out, size, "timed out after %lld ms",
                 (long long)timeout_ms);
        break;
    case CURLE_COULDNT_CONNECT:
        curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &os_errno);
        snprintf(out, size, "%s (%s)", os_errno == ECONNREFUSED
                 ? "connection refused" : "could not connect", detail);
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
        snprintf(out, size, "could not resolve host (%s)", detail);
        break;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        snprintf(out, size, "invalid URI (%s)", detail);
        break;
    default:
        snprintf(out, size, "%s", detail);
        break;
    }
}

/* The webhook's answer to a notification is not needed: drop it. */
static size_t delivery_discard(char *data, size_t size, size_t nmemb,
                               void *ctx)
{
    (void)data;
    (void)ctx;
    return size * nmemb;
}

static struct curl_slist *delivery_headers(const char *signature)
{
    struct curl_slist *h = NULL;
    char sig_header[128];

    snprintf(sig_header, sizeof(sig_header), "X-Dropbox-Signature: %s",
             signature);
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, sig_header);
    /* No "Expect: 100-continue" round trip and no default Accept: the
     * request carries exactly the headers the real sender uses. */
    h = curl_slist_append(h, "Expect:");
    h = curl_slist_append(h, "Accept:");
    return h;
}

/* Adds the POST of d to the multi handle.  Returns 0, or -1 with the
 * reason in d->errbuf. */
static int delivery_begin(struct delivery_queue *q, struct delivery *d,
                          const char *uri, const char *signature)
{
    CURL *e = curl_easy_init();

    if (e == NULL) {
        snprintf(d->errbuf, sizeof(d->errbuf), "curl_easy_init failed");
        return -1;
    }
    delivery_common_opts(e, uri, q->cfg->deliver_timeout_ms,
                         q->cfg->refuse_private_uris, d->errbuf);
    d->headers = delivery_headers(signature);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, d->headers);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, d->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)d->body_len);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, delivery_discard);
    curl_easy_setopt(e, CURLOPT_PRIVATE, d);

    if (curl_multi_add_handle(q->multi, e) != CURLM_OK) {
        snprintf(d->errbuf, sizeof(d->errbuf), "curl_multi_add failed");
        curl_easy_cleanup(e);
        return -1;
    }
    d->easy = e;
    return 0;
}

static void delivery_free(struct delivery_queue *q, struct delivery *d)
{
    if (d->easy != NULL) {
        curl_multi_remove_handle(q->multi, d->easy);
        curl_easy_cleanup(d->easy);
    }
    curl_slist_free_all(d->headers);
    free(d->app_key);
    free(d->uri);
    free(d->body);
    free(d);
}

/* Takes the next finished delivery off the in-flight list and fills res;
 * NULL when none has finished. */
static struct delivery *delivery_next_done(struct delivery_queue *q,
                                           struct delivery_result *res)
{
    CURLMsg *msg;
    int left = 0;
    struct delivery *d = NULL;
    long status = 0;

    do
        msg = curl_multi_info_read(q->multi, &left);
    while (msg != NULL && msg->msg != CURLMSG_DONE);
    if (msg == NULL)
        return NULL;

    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&d);
    curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
    memset(res, 0, sizeof(*res));
    res->status = status;
    res->duration_ms = time_mono_ms() - d->started_mono;
    if (msg->data.result != CURLE_OK)
        delivery_describe(msg->data.result, msg->easy_handle, d->errbuf,
                          q->cfg->deliver_timeout_ms, res->error,
                          sizeof(res->error));
    else if (status != 200)
        snprintf(res->error, sizeof(res->error), "status %ld", status);

    for (struct delivery **p = &q->inflight; *p != NULL; p = &(*p)->next) {
        if (*p == d) {
            *p = d->next;
            q->inflight_count--;
            break;
        }
    }
    return d;
}

/* ---- recording attempts ---------------------------------------------- */

static void delivery_log(const struct delivery *d,
                         const struct delivery_result *res, int64_t next_at)
{
    int attempt = d->attempts + 1;

    if (res->error[0] == '\0') {
        LOG_I("notification delivered app=%s notification=%lld attempt=%d"
              " status=%ld duration_ms=%lld", d->app_key,
              (long long)d->notification_id, attempt, res->status,
              (long long)res->duration_ms);
        return;
    }
    LOG_W("delivery failed app=%s notification=%lld attempt=%d status=%ld"
          " duration_ms=%lld error=\"%s\"", d->app_key,
          (long long)d->notification_id, attempt, res->status,
          (long long)res->duration_ms, res->error);
    if (next_at < 0)
        LOG_W("notification failed app=%s notification=%lld attempts=%d"
              " reason=\"retry window passed\"", d->app_key,
              (long long)d->notification_id, attempt);
}

/* Records an alert row; inside the caller's transaction. */
static void delivery_alert_row(struct delivery_queue *q, int64_t app_id,
                               const char *kind, const char *reason,
                               int64_t failures, int64_t attempts,
                               const char *uri)
{
    sqlite3_stmt *st = db_prepare(q->db,
        "INSERT INTO alerts(app_id, created_at, kind, reason, failures,"
        " attempts, uri) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");

    sqlite3_bind_int64(st, 1, app_id);
    sqlite3_bind_int64(st, 2, delivery_now_ms());
    db_bind_text(st, 3, kind);
    db_bind_text(st, 4, reason);
    sqlite3_bind_int64(st, 5, failures);
    sqlite3_bind_int64(st, 6, attempts);
    db_bind_text(st, 7, uri);
    if (sqlite3_step(st) != SQLITE_DONE)
        LOG_E("alert not recorded app_id=%lld error=\"%s\"",
              (long long)app_id, sqlite3_errmsg(q->db));
    sqlite3_finalize(st);
}

/* Counts the webhook's attempts and failures over the health window
 * (from its re-enabling on, and to its current URI only). */
static void delivery_health_count(struct delivery_queue *q,
                                  const struct delivery *d, int64_t now,
                                  int64_t *failures, int64_t *attempts)
{
    sqlite3_stmt *st = db_prepare(q->db,
        "SELECT count(*), coalesce(sum(status != 200), 0) FROM attempts"
        " WHERE app_id = ?1 AND uri = ?2 AND started_at >= max(?3,"
        " coalesce((SELECT counted_since FROM webhook_health"
        "           WHERE app_id = ?1), 0))");

    sqlite3_bind_int64(st, 1, d->app_id);
    db_bind_text(st, 2, d->uri);
    sqlite3_bind_int64(st, 3, now - q->cfg->health_window_ms);
    *failures = *attempts = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *attempts = sqlite3_column_int64(st, 0);
        *failures = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
}

/* After a failed attempt (recorded in the caller's transaction):
 * disables the webhook when health_should_disable says so, records the
 * alert, and keeps it for delivery_take_alerts. */
static void delivery_check_health(struct delivery_queue *q,
                                  const struct delivery *d, int64_t now)
{
    struct delivery_alert a = {0};
    sqlite3_stmt *st;
    char *error;
    int changed;

    delivery_health_count(q, d, now, &a.failures, &a.attempts);
    if (!health_should_disable(a.failures, a.attempts))
        return;
    health_describe(a.failures, a.attempts, q->cfg->health_window_ms,
                    a.reason, sizeof(a.reason));
    error = xasprintf("disabled: %s", a.reason);
    st = db_prepare(q->db,
        "UPDATE apps SET webhook_state = 'disabled', webhook_error = ?2"
        " WHERE id = ?1 AND webhook_state = 'verified'"
        " AND webhook_uri = ?3");
    sqlite3_bind_int64(st, 1, d->app_id);
    db_bind_text(st, 2, error);
    db_bind_text(st, 3, d->uri);
    changed = sqlite3_step(st) == SQLITE_DONE ? sqlite3_changes(q->db) : 0;
    sqlite3_finalize(st);
    free(error);
    if (changed != 1)
        return; /* already disabled, or its URI changed meanwhile */
    delivery_alert_row(q, d->app_id, "webhook_disabled", a.reason,
                       a.failures, a.attempts, d->uri);
    snprintf(a.app_key, sizeof(a.app_key), "%s", d->app_key);
    snprintf(a.uri, sizeof(a.uri), "%s", d->uri);
    if (q->alert_count < DELIVERY_MAX_ALERTS)
        q->alerts[q->alert_count++] = a;
}

/* Inserts the attempt and moves the notification on; inside the caller's
 * transaction.  A success is marked delivered in this same transaction,
 * so an acknowledged notification is never sent again.  0 or -1. */
static int delivery_record(struct delivery_queue *q,
                           const struct delivery *d,
                           const struct delivery_result *res)
{
    int64_t now = delivery_now_ms(), next_at = 0;
    bool ok = res->error[0] == '\0';
    sqlite3_stmt *att = db_prepare(q->db,
        "INSERT INTO attempts(notification_id, started_at, status,"
        " duration_ms, error, app_id, uri)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    sqlite3_stmt *upd = db_prepare(q->db,
        "UPDATE notifications SET attempts = attempts + 1,"
        " state = ?2, next_attempt_at = ?3, delivered_at = ?4"
        " WHERE id = ?1 AND state = 'pending'");
    int ret = -1;

    if (!ok)
        next_at = notifier_next_attempt_at(d->created_at, now,
                                           q->cfg->retry_base_ms,
                                           q->cfg->retry_cap_ms,
                                           q->cfg->retry_window_ms,
                                           d->attempts + 1,
                                           delivery_random_jitter());
    sqlite3_bind_int64(att, 1, d->notification_id);
    sqlite3_bind_int64(att, 2, d->started_at);
    sqlite3_bind_int64(att, 3, res->status);
    sqlite3_bind_int64(att, 4, res->duration_ms);
    db_bind_text(att, 5, ok ? NULL : res->error);
    sqlite3_bind_int64(att, 6, d->app_id);
    db_bind_text(att, 7, d->uri);

    sqlite3_bind_int64(upd, 1, d->notification_id);
    db_bind_text(upd, 2, ok ? "delivered" : next_at < 0 ? "failed"
                                                        : "pending");
    sqlite3_bind_int64(upd, 3, ok || next_at < 0 ? now : next_at);
    if (ok)
        sqlite3_bind_int64(upd, 4, now);

    if (sqlite3_step(att) == SQLITE_DONE && sqlite3_step(upd) == SQLITE_DONE)
        ret = 0;
    else
        LOG_E("record attempt failed notification=%lld error=\"%s\"",
              (long long)d->notification_id, sqlite3_errmsg(q->db));
    sqlite3_finalize(att);
    sqlite3_finalize(upd);
    if (ret == 0 && !ok && next_at < 0)
        delivery_alert_row(q, d->app_id, "notification_failed",
                           "retry window passed", d->attempts + 1,
                           d->attempts + 1, d->uri);
    if (ret == 0 && !ok && d->uri != NULL)
        delivery_check_health(q, d, now);
    delivery_log(d, res, next_at);
    return ret;
}

/* Records every finished delivery, all in one commit. */
static void delivery_collect(struct delivery_queue *q)
{
    struct delivery_result res;
    struct delivery *d;
    bool in_tx = false;

    while ((d = delivery_next_done(q, &res)) != NULL) {
        if (!in_tx)
            in_tx = db_begin(q->db) == 0;
        if (in_tx)
            delivery_record(q, d, &res);
        delivery_free(q, d);
    }
    if (in_tx && db_commit(q->db) != 0)
        db_rollback(q->db);
}

/* Records deliveries that could not even start, in one commit. */
static void delivery_record_unstarted(struct delivery_queue *q,
                                      struct delivery *list)
{
    struct delivery_result res;
    bool in_tx = list != NULL && db_begin(q->db) == 0;

    while (list != NULL) {
        struct delivery *d = list;

        list = d->next;
        memset(&res, 0, sizeof(res));
        snprintf(res.error, sizeof(res.error), "%s", d->errbuf);
        if (in_tx)
            delivery_record(q, d, &res);
        delivery_free(q, d);
    }
    if (in_tx && db_commit(q->db) != 0)
        db_rollback(q->db);
}

/* ---- starting deliveries --------------------------------------------- */

bool delivery_queue_inflight(const struct delivery_queue *q, int64_t id)
{
    for (const struct delivery *d = q->inflight; d != NULL; d = d->next)
        if (d->notification_id == id)
            return true;
    return false;
}

/* Requests in flight to one app's webhook. */
static int delivery_inflight_for(const struct delivery_queue *q,
                                 int64_t app_id)
{
    int count = 0;

    for (const struct delivery *d = q->inflight; d != NULL; d = d->next)
        if (d->app_id == app_id)
            count++;
    return count;
}

/* Starts the notification in the current row of st (columns as in
 * delivery_start_due).  Returns NULL when it started, or the delivery
 * (reason in errbuf) when it could not start. */
static struct delivery *delivery_begin_row(struct delivery_queue *q,
                                           sqlite3_stmt *st)
{
    struct delivery *d = xcalloc(1, sizeof(*d));
    const char *sig = (const char *)sqlite3_column_text(st, 2);

    d->notification_id = sqlite3_column_int64(st, 0);
    d->body_len = (size_t)sqlite3_column_bytes(st, 1);
    d->body = xstrndup((const char *)sqlite3_column_text(st, 1),
                       d->body_len);
    d->attempts = sqlite3_column_int(st, 3);
    d->created_at = sqlite3_column_int64(st, 4);
    d->app_key = db_column_dup(st, 5);
    d->uri = db_column_dup(st, 6);
    d->app_id = sqlite3_column_int64(st, 8);
    d->started_at = delivery_now_ms();
    d->started_mono = time_mono_ms();

    if (d->uri == NULL || sig == NULL) {
        snprintf(d->errbuf, sizeof(d->errbuf), "no webhook URI");
        return d;
    }
    if (q->cfg->refuse_private_uris &&
        notifier_uri_is_private(d->uri, d->errbuf, sizeof(d->errbuf)))
        return d;
    if (delivery_begin(q, d, d->uri, sig) != 0)
        return d;
    d->next = q->inflight;
    q->inflight = d;
    q->inflight_count++;
    return NULL;
}

static void delivery_note_full(json_t *full, int64_t app_id)
{
    size_t i;
    json_t *v;

    json_array_foreach(full, i, v) {
        if (json_integer_value(v) == app_id)
            return;
    }
    json_array_append_new(full, json_integer(app_id));
}

/* Reads due rows in order and starts what it may.  Webhooks already at
 * their in-flight limit are passed over; their ids are added to full (a
 * JSON array) so that the caller can read again without them.  Returns
 * the time of the next row not yet due (or -1), and sets *exhausted when
 * every row the LIMIT allowed was read, so more may follow. */
static int64_t delivery_start_pass(struct delivery_queue *q, json_t *full,
                                   struct delivery **unstarted,
                                   bool *exhausted)
{
    int64_t now = delivery_now_ms(), next_due = -1, limit, rows = 0;
    char *skip = json_dumps(full, JSON_COMPACT);
    struct delivery *d;
    sqlite3_stmt *st = db_prepare(q->db,
        "SELECT n.id, n.body, n.signature, n.attempts,"
        " coalesce(n.window_start, n.created_at),"
        " a.app_key, a.webhook_uri, n.next_attempt_at, n.app_id"
        " FROM notifications n JOIN apps a ON a.id = n.app_id"
        " WHERE n.state = 'pending' AND a.webhook_state = 'verified'"
        /* a re-enabled app's notifications are folded first */
        " AND NOT EXISTS (SELECT 1 FROM webhook_resume r"
        "                 WHERE r.app_id = n.app_id)"
        " AND n.app_id NOT IN (SELECT value FROM json_each(?2))"
        " ORDER BY n.next_attempt_at, n.id LIMIT ?1");

    limit = (int64_t)(q->inflight_count + DELIVERY_MAX_INFLIGHT);
    sqlite3_bind_int64(st, 1, limit);
    db_bind_text(st, 2, skip);
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t due = sqlite3_column_int64(st, 7);
        int64_t app_id = sqlite3_column_int64(st, 8);

        rows++;
        if (delivery_queue_inflight(q, sqlite3_column_int64(st, 0)))
            continue;
        if (due > now || q->inflight_count >= DELIVERY_MAX_INFLIGHT) {
            next_due = due;
            break;
        }
        /* A webhook at its limit waits for one of its answers, which
         * wakes the loop. */
        if (delivery_inflight_for(q, app_id) >=
            q->cfg->inflight_per_webhook) {
            delivery_note_full(full, app_id);
            continue;
        }
        d = delivery_begin_row(q, st);
        if (d != NULL) {
            d->next = *unstarted;
            *unstarted = d;
        }
    }
    sqlite3_finalize(st);
    free(skip);
    *exhausted = next_due < 0 && rows == limit;
    return next_due;
}

static int64_t delivery_start_due(struct delivery_queue *q)
{
    struct delivery *unstarted = NULL;
    json_t *full = json_array();
    size_t before;
    bool exhausted = true;
    int64_t next_due = -1;

    /* One slow webhook with a long backlog could fill every row a pass
     * reads; reading again without the webhooks found full lets other
     * apps' notifications through.  Each new pass excludes at least one
     * more app, so the loop ends. */
    for (int pass = 0; exhausted && pass < DELIVERY_MAX_PASSES; pass++) {
        before = json_array_size(full);
        next_due = delivery_start_pass(q, full, &unstarted, &exhausted);
        if (json_array_size(full) == before)
            break;
    }
    json_decref(full);
    /* Written only now: a write transaction must not start while the
     * SELECT above still holds its read snapshot. */
    delivery_record_unstarted(q, unstarted);
    return next_due;
}

/* ---- the queue ------------------------------------------------------- */

struct delivery_queue *delivery_queue_new(sqlite3 *db,
                                          const struct notifier_config *cfg)
{
    struct delivery_queue *q = xcalloc(1, sizeof(*q));

    delivery_global_init();
    q->db = db;
    q->cfg = cfg;
    q->multi = curl_multi_init();
    if (q->multi == NULL) {
        LOG_E("curl_multi_init failed");
        abort();
    }
    return q;
}

void delivery_queue_free(struct delivery_queue *q)
{
    if (q == NULL)
        return;
    while (q->inflight != NULL) {
        struct delivery *d = q->inflight;

        q->inflight = d->next;
        delivery_free(q, d);
    }
    curl_multi_cleanup(q->multi);
    free(q);
}

int64_t delivery_queue_run(struct delivery_queue *q)
{
    delivery_collect(q);
    return delivery_start_due(q);
}

void delivery_queue_wait(struct delivery_queue *q, int64_t timeout_ms)
{
    int running = 0;

    /* Poll first, perform last: a transfer that ends in this perform is
     * collected before the next sleep, not after it.  Newly added
     * handles make curl's own timer expire at once, so the poll does not
     * delay their start. */
    if (timeout_ms < 0)
        timeout_ms = 0;
    curl_multi_poll(q->multi, NULL, 0, (int)timeout_ms, NULL);
    curl_multi_perform(q->multi, &running);
}

void delivery_queue_wakeup(struct delivery_queue *q)
{
    curl_multi_wakeup(q->multi);
}

size_t delivery_take_alerts(struct delivery_queue *q,
                            struct delivery_alert *out, size_t max)
{
    size_t n = q->alert_count < max ? q->alert_count : max;

    memcpy(out, q->alerts, n * sizeof(*out));
    memmove(q->alerts, q->alerts + n,
            (q->alert_count - n) * sizeof(*q->alerts));
    q->alert_count -= n;
    return n;
}

/* a: an IPv4 address in host order. */
static bool delivery_v4_is_private(uint32_t a)
{
    return (a >> 24) == 127 || (a >> 24) == 10 ||
           (a >> 20) == (172u << 4 | 1) ||  /* 172.16/12 */
           (a >> 16) == (192u << 8 | 168) || /* 192.168/16 */
           (a >> 16) == (169u << 8 | 254) || /* 169.254/16 */
           a == 0;
}

bool delivery_addr_is_private(const struct sockaddr *addr)
{
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;

        return delivery_v4_is_private(ntohl(in->sin_addr.s_addr));
    }
    if (addr->sa_family == AF_INET6) {
        const struct in6_addr *a6 =
            &((const struct sockaddr_in6 *)addr)->sin6_addr;
        const uint8_t *b = a6->s6_addr;

        /* ::ffff:a.b.c.d is the IPv4 address in its last four bytes.
         * Read as bytes: a local sockaddr_in seen through a sockaddr
         * pointer is an aliasing violation the optimizer may exploit
         * (it did: ::ffff:10.0.0.1 passed as public at -O2). */
        if (IN6_IS_ADDR_V4MAPPED(a6))
            return delivery_v4_is_private((uint32_t)b[12] << 24 |
                                          (uint32_t)b[13] << 16 |
                                          (uint32_t)b[14] << 8 | b[15]);
        return IN6_IS_ADDR_LOOPBACK(a6) || IN6_IS_ADDR_UNSPECIFIED(a6) ||
               (b[0] & 0xfe) == 0xfc ||                  /* fc00::/7 */
               (b[0] == 0xfe && (b[1] & 0xc0) == 0x80); /* fe80::/10 */
    }
    return false;
}

/* Refuses to open a socket to a private address (refuse_private_uris):
 * this sees every address DNS gave, so a public name that resolves to
 * a private address is refused too. */
static curl_socket_t delivery_open_socket(void *ctx, curlsocktype purpose,
                                          struct curl_sockaddr *addr)
{
    (void)ctx;
    if (purpose != CURLSOCKTYPE_IPCXN ||
        delivery_addr_is_private(&addr->addr))
        return CURL_SOCKET_BAD;
    return socket(addr->family, addr->socktype, addr->protocol);
}

/* ---- verification ---------------------------------------------------- */

/* The verification answer, kept up to DELIVERY_VERIFY_BODY_MAX bytes. */
struct verify_body {
    char data[DELIVERY_VERIFY_BODY_MAX];
    size_t len;
    bool too_long;
};

static size_t delivery_verify_write(char *data, size_t size, size_t nmemb,
                                    void *ctx)
{
    struct verify_body *vb = ctx;
    size_t n = size * nmemb;

    if (n > sizeof(vb->data) - vb->len) {
        vb->too_long = true;
        return 0; /* aborts the transfer: it cannot match any more */
    }
    memcpy(vb->data + vb->len, data, n);
    vb->len += n;
    return n;
}

/* Judges a finished verification.  Returns 0 when it passed. */
static int delivery_verify_judge(CURL *e, CURLcode rc,
                                 const struct verify_body *vb,
                                 const char *challenge, const char *errbuf,
                                 int64_t timeout_ms, char *err,
                                 size_t err_size)
{
    size_t clen = strlen(challenge);
    long status = 0;

    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && vb->too_long)) {
        delivery_describe(rc, e, errbuf, timeout_ms, err, err_size);
        return -1;
    }
    if (status != 200) {
        snprintf(err, err_size, "status %ld", status);
        return -1;
    }
    if (vb->too_long || vb->len != clen ||
        memcmp(vb->data, challenge, clen) != 0) {
        snprintf(err, err_size, "body did not match the challenge");
        return -1;
    }
    return 0;
}

int delivery_verify(const char *uri, int64_t timeout_ms,
                    bool refuse_private, char *err, size_t err_size)
{
    char challenge[DELIVERY_CHALLENGE_LEN + 1];
    char errbuf[CURL_ERROR_SIZE];
    struct verify_body *vb = xcalloc(1, sizeof(*vb));
    char *url = NULL;
    CURL *e = NULL;
    CURLcode rc;
    int ret = -1;

    delivery_global_init();
    if (strncmp(uri, "http://", 7) != 0 &&
        strncmp(uri, "https://", 8) != 0) {
        snprintf(err, err_size, "invalid URI (must be http or https)");
        goto out;
    }
    rand_urlsafe(challenge, DELIVERY_CHALLENGE_LEN);
    url = xasprintf("%s%cchallenge=%s", uri,
                    strchr(uri, '?') != NULL ? '&' : '?', challenge);
    e = curl_easy_init();
    if (e == NULL) {
        snprintf(err, err_size, "curl_easy_init failed");
        goto out;
    }
    delivery_common_opts(e, url, timeout_ms, refuse_private, errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, delivery_verify_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, vb);

    rc = curl_easy_perform(e);
    ret = delivery_verify_judge(e, rc, vb, challenge, errbuf, timeout_ms,
                                err, err_size);
out:
    if (e != NULL)
        curl_easy_cleanup(e);
    free(url);
    free(vb);
    return ret;
}
