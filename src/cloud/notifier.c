/*
 * notifier: from committed changes to signed webhook notifications.
 *
 * The model.  Changes leave (app, account) pairs in webhook_pending,
 * written in the same transaction as the change itself.  One thread owns
 * everything after that:
 *
 *   wake -> wait batch_ms -> gather: per app, in one transaction, turn
 *   its pending pairs into one notification (body + signature, state
 *   'pending') and delete the pairs -> the delivery queue (delivery.c)
 *   sends every due notification and records each attempt; on failure
 *   the next one is scheduled with exponential backoff and jitter
 *   (notifier_next_attempt_at) until the retry window has passed.
 *
 * Every fact lives in the database, so a restart resumes where the last
 * run stopped: leftover pending pairs are gathered and notifications
 * still 'pending' are sent again (at least once, never silently lost).
 * The body and signature are stored when the notification is made, so a
 * retry sends the very same bytes.
 *
 * The thread sleeps in the delivery queue's curl_multi_poll rather than
 * on a condition variable, so one wait covers both network activity and
 * notifier_wake (which calls curl_multi_wakeup); the flag under the
 * mutex says why it woke.
 */
#include "cloud/notifier.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloud/delivery.h"
#include "cloud/schema.h"
#include "common/db.h"
#include "common/log.h"
#include "common/sig.h"
#include "common/util.h"

/* Accounts named in one notification; more wait for the next one. */
#define NOTIFIER_MAX_ACCOUNTS 1000
/* Apps gathered in one pass; the rest follow in the next pass. */
#define NOTIFIER_MAX_APPS_PER_PASS 256
/* Pause before another gathering pass when one left pairs behind. */
#define NOTIFIER_REGATHER_MS 10
/* Longest sleep, so the thread also notices webhooks re-enabled by the
 * console without a wake. */
#define NOTIFIER_IDLE_MS 1000
/* Jitter spreads retries by up to this fraction either way. */
#define NOTIFIER_JITTER 0.2
/* Doublings stop here; the retry window caps the delay long before. */
#define NOTIFIER_MAX_DOUBLINGS 30

const char notifier_schema_sql[] =
    "CREATE TABLE IF NOT EXISTS webhook_pending ("
    " app_id INTEGER NOT NULL,"
    " account_id INTEGER NOT NULL,"
    " PRIMARY KEY(app_id, account_id));"
    "CREATE TABLE IF NOT EXISTS notifications ("
    " id INTEGER PRIMARY KEY,"
    " app_id INTEGER NOT NULL,"
    " body TEXT NOT NULL,"
    " signature TEXT NOT NULL,"
    /* pending | delivered | failed */
    " state TEXT NOT NULL DEFAULT 'pending',"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " next_attempt_at INTEGER NOT NULL," /* unix ms */
    " created_at INTEGER NOT NULL,"      /* unix ms */
    " delivered_at INTEGER);"            /* unix ms */
    "CREATE INDEX IF NOT EXISTS notifications_due"
    " ON notifications(state, next_attempt_at);"
    "CREATE TABLE IF NOT EXISTS attempts ("
    " id INTEGER PRIMARY KEY,"
    " notification_id INTEGER NOT NULL,"
    " started_at INTEGER NOT NULL," /* unix ms */
    " status INTEGER NOT NULL,"     /* 0: no response */
    " duration_ms INTEGER NOT NULL,"
    " error TEXT);"
    "CREATE INDEX IF NOT EXISTS attempts_by_notification"
    " ON attempts(notification_id);";

struct notifier {
    struct notifier_config cfg; /* db_path points at our own copy */
    char *db_path;
    sqlite3 *db;        /* the thread's connection */
    sqlite3 *stats_db;  /* notifier_stats' connection, under stats_lock */
    pthread_mutex_t stats_lock;
    struct delivery_queue *queue; /* used by the thread only */
    pthread_t thread;
    pthread_mutex_t lock; /* guards woken and stop */
    bool woken;
    bool stop;
};

/* ---- body ------------------------------------------------------------ */

/* Decodes one UTF-8 sequence at s; returns its length (1 for a bad
 * byte, which then stands for U+FFFD). */
static size_t notifier_utf8(const unsigned char *s, uint32_t *cp)
{
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    uint32_t v = s[0] & (0x3f >> (len > 0 ? len - 1 : 0));

    if (s[0] < 0xc2 || s[0] > 0xf4) /* continuation, overlong, too big */
        len = 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) { /* also stops at the NUL */
            len = 0;
            break;
        }
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (len == 0 || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) {
        *cp = 0xfffd;
        return 1;
    }
    *cp = v;
    return len;
}

/* A JSON string as Python's json.dumps writes it (ensure_ascii): every
 * character outside ' '..'~' escaped, lowercase hex, surrogate pairs. */
static void notifier_json_string(struct buf *b, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;

    buf_append(b, "\"", 1);
    while (*s != '\0') {
        uint32_t cp = *s;
        size_t len = cp < 0x80 ? 1 : notifier_utf8(s, &cp);
        const char *short_esc = cp == '"' ? "\\\"" : cp == '\\' ? "\\\\"
                              : cp == '\n' ? "\\n" : cp == '\r' ? "\\r"
                              : cp == '\t' ? "\\t" : cp == '\b' ? "\\b"
                              : cp == '\f' ? "\\f" : NULL;

        if (short_esc != NULL) {
            buf_append(b, short_esc, 2);
        } else if (cp >= 0x20 && cp < 0x7f) {
            buf_append(b, s, 1);
        } else if (cp < 0x10000) {
            buf_appendf(b, "\\u%04x", (unsigned)cp);
        } else {
            cp -= 0x10000;
            buf_appendf(b, "\\u%04x\\u%04x", 0xd800 + (unsigned)(cp >> 10),
                        0xdc00 + (unsigned)(cp & 0x3ff));
        }
        s += len;
    }
    buf_append(b, "\"", 1);
}

char *notifier_body(const char *const *accounts, const int64_t *uids,
                    size_t n)
{
    struct buf b;
    char *body;

    buf_init(&b, 0);
    buf_appendf(&b, "{\"list_folder\": {\"accounts\": [");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            buf_append(&b, ", ", 2);
        notifier_json_string(&b, accounts[i]);
    }
    buf_appendf(&b, "]}, \"delta\": {\"users\": [");
    for (size_t i = 0; i < n; i++)
        buf_appendf(&b, "%s%lld", i > 0 ? ", " : "", (long long)uids[i]);
    buf_appendf(&b, "]}}");
    body = buf_steal(&b);
    return body;
}

/* ---- retry schedule -------------------------------------------------- */

int64_t notifier_backoff_ms(int64_t base_ms, int attempts, double jitter)
{
    int doublings = attempts > 1 ? attempts - 1 : 0;
    double delay;

    if (doublings > NOTIFIER_MAX_DOUBLINGS)
        doublings = NOTIFIER_MAX_DOUBLINGS;
    if (jitter < -1.0)
        jitter = -1.0;
    if (jitter > 1.0)
        jitter = 1.0;
    delay = ldexp((double)base_ms, doublings) *
            (1.0 + NOTIFIER_JITTER * jitter);
    return (int64_t)llround(delay);
}

int64_t notifier_next_attempt_at(int64_t created_at, int64_t now,
                                 int64_t base_ms, int64_t window_ms,
                                 int attempts, double jitter)
{
    int64_t deadline = created_at + window_ms;
    int64_t next;

    if (now >= deadline)
        return -1;
    next = now + notifier_backoff_ms(base_ms, attempts, jitter);
    return next < deadline ? next : deadline;
}

/* ---- marking and gathering ------------------------------------------- */

int notifier_mark_pending_tx(sqlite3 *db, int64_t account_rowid)
{
    /* Scopes are space-separated; padding both sides makes the search
     * match whole scope names only. */
    static const char sql[] =
        "INSERT OR IGNORE INTO webhook_pending(app_id, account_id)"
        " SELECT l.app_id, l.account_id FROM links l"
        " JOIN apps a ON a.id = l.app_id"
        " WHERE l.account_id = ?1 AND a.webhook_state = 'verified'"
        " AND instr(' ' || l.scopes || ' ', ' files.metadata.read ') > 0";
    sqlite3_stmt *st = db_prepare(db, sql);
    int ret = 0;

    sqlite3_bind_int64(st, 1, account_rowid);
    if (sqlite3_step(st) != SQLITE_DONE) {
        LOG_E("mark pending failed account_rowid=%lld error=\"%s\"",
              (long long)account_rowid, sqlite3_errmsg(db));
        ret = -1;
    }
    sqlite3_finalize(st);
    return ret;
}

/* The pending accounts of one app, in account order. */
struct gathered {
    char *accounts[NOTIFIER_MAX_ACCOUNTS];
    int64_t uids[NOTIFIER_MAX_ACCOUNTS];
    int64_t rowids[NOTIFIER_MAX_ACCOUNTS];
    size_t count;
    bool more; /* more pending than fit in one notification */
};

static void gathered_read(sqlite3 *db, int64_t app_id, struct gathered *g)
{
    sqlite3_stmt *st = db_prepare(db,
        "SELECT a.id, a.account_id, a.uid FROM webhook_pending p"
        " JOIN accounts a ON a.id = p.account_id"
        " WHERE p.app_id = ?1 ORDER BY a.id LIMIT ?2");

    sqlite3_bind_int64(st, 1, app_id);
    sqlite3_bind_int(st, 2, NOTIFIER_MAX_ACCOUNTS + 1);
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (g->count == NOTIFIER_MAX_ACCOUNTS) {
            g->more = true;
            break;
        }
        g->rowids[g->count] = sqlite3_column_int64(st, 0);
        g->accounts[g->count] = db_column_dup(st, 1);
        g->uids[g->count] = sqlite3_column_int64(st, 2);
        g->count++;
    }
    sqlite3_finalize(st);
}

/* The app's key (for log lines) and secret, both new strings; 0, or -1
 * when the app is gone. */
static int notifier_app_keys(sqlite3 *db, int64_t app_id, char **key,
                             char **secret)
{
    sqlite3_stmt *st = db_prepare(db,
        "SELECT app_key, app_secret FROM apps WHERE id = ?1");
    int ret = -1;

    sqlite3_bind_int64(st, 1, app_id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *key = db_column_dup(st, 0);
        *secret = db_column_dup(st, 1);
        ret = 0;
    }
    sqlite3_finalize(st);
    return ret;
}

/* Writes the notification for g and deletes its pending pairs; inside
 * the caller's transaction.  Returns the new notification's id or -1. */
static int64_t notifier_insert(sqlite3 *db, int64_t app_id,
                               const struct gathered *g, const char *secret)
{
    char *body = notifier_body((const char *const *)g->accounts, g->uids,
                               g->count);
    char sig[SIG_HEX_LEN + 1];
    int64_t now = delivery_now_ms(), id = -1;
    sqlite3_stmt *ins = db_prepare(db,
        "INSERT INTO notifications(app_id, body, signature, state,"
        " attempts, next_attempt_at, created_at)"
        " VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4)");
    sqlite3_stmt *del = db_prepare(db,
        "DELETE FROM webhook_pending WHERE app_id = ?1 AND account_id = ?2");

    sig_sign(secret, body, strlen(body), sig);
    sqlite3_bind_int64(ins, 1, app_id);
    db_bind_text(ins, 2, body);
    db_bind_text(ins, 3, sig);
    sqlite3_bind_int64(ins, 4, now);
    if (sqlite3_step(ins) != SQLITE_DONE)
        goto out;
    id = sqlite3_last_insert_rowid(db);

    for (size_t i = 0; i < g->count; i++) {
        sqlite3_reset(del);
        sqlite3_bind_int64(del, 1, app_id);
        sqlite3_bind_int64(del, 2, g->rowids[i]);
        if (sqlite3_step(del) != SQLITE_DONE) {
            id = -1;
            goto out;
        }
    }
out:
    sqlite3_finalize(ins);
    sqlite3_finalize(del);
    free(body);
    return id;
}

/* One app's pending pairs into one notification, in one transaction.
 * Sets *more when pairs remain for another pass (too many for one
 * notification, or the transaction failed). */
static int notifier_gather_app(sqlite3 *db, int64_t app_id, bool *more)
{
    struct gathered *g = xcalloc(1, sizeof(*g));
    char *key = NULL, *secret = NULL;
    int64_t id = -1;
    int ret = -1;

    *more = true; /* until this app's pairs are safely written */
    if (db_begin(db) != 0)
        goto out;
    gathered_read(db, app_id, g);
    if (notifier_app_keys(db, app_id, &key, &secret) != 0 ||
        g->count == 0) {
        db_rollback(db);
        *more = false;
        ret = 0;
        goto out;
    }
    id = notifier_insert(db, app_id, g, secret);
    if (id < 0 || db_commit(db) != 0) {
        LOG_E("gather failed app=%s error=\"%s\"", key,
              sqlite3_errmsg(db));
        db_rollback(db);
        goto out;
    }
    LOG_I("notification created app=%s notification=%lld accounts=%zu",
          key, (long long)id, g->count);
    *more = g->more;
    ret = 0;
out:
    for (size_t i = 0; i < g->count; i++)
        free(g->accounts[i]);
    free(g);
    free(key);
    free(secret);
    return ret;
}

/* Gathers every app with pending pairs and a verified webhook.  Returns
 * true when work remains for another pass. */
static bool notifier_gather(struct notifier *n)
{
    int64_t apps[NOTIFIER_MAX_APPS_PER_PASS];
    size_t count = 0;
    bool more = false;
    sqlite3_stmt *st = db_prepare(n->db,
        "SELECT DISTINCT p.app_id FROM webhook_pending p"
        " JOIN apps a ON a.id = p.app_id"
        " WHERE a.webhook_state = 'verified' ORDER BY p.app_id LIMIT ?1");

    sqlite3_bind_int(st, 1, NOTIFIER_MAX_APPS_PER_PASS + 1);
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (count == NOTIFIER_MAX_APPS_PER_PASS) {
            more = true;
            break;
        }
        apps[count++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);

    for (size_t i = 0; i < count; i++) {
        bool app_more = false;

        notifier_gather_app(n->db, apps[i], &app_more);
        more = more || app_more;
    }
    return more;
}

/* ---- the thread ------------------------------------------------------ */

static int64_t notifier_min_wait(int64_t wait, int64_t candidate)
{
    if (candidate < 0)
        candidate = 0;
    return candidate < wait ? candidate : wait;
}

static void *notifier_run(void *arg)
{
    struct notifier *n = arg;
    /* Pairs left pending by a previous run are gathered at once. */
    int64_t gather_at = time_mono_ms();

    for (;;) {
        int64_t now = time_mono_ms(), wait = NOTIFIER_IDLE_MS, next_due;
        bool woken, stop;

        pthread_mutex_lock(&n->lock);
        woken = n->woken;
        stop = n->stop;
        n->woken = false;
        pthread_mutex_unlock(&n->lock);
        if (stop)
            break;

        if (woken && gather_at < 0)
            gather_at = now + n->cfg.batch_ms;
        if (gather_at >= 0 && now >= gather_at)
            gather_at = notifier_gather(n) ? now + NOTIFIER_REGATHER_MS
                                           : -1;

        next_due = delivery_queue_run(n->queue);
        if (gather_at >= 0)
            wait = notifier_min_wait(wait, gather_at - now);
        if (next_due >= 0)
            wait = notifier_min_wait(wait, next_due - delivery_now_ms());
        delivery_queue_wait(n->queue, wait);
    }
    return NULL;
}

static void notifier_defaults(struct notifier_config *c)
{
    if (c->verify_timeout_ms <= 0)
        c->verify_timeout_ms = 10000;
    if (c->deliver_timeout_ms <= 0)
        c->deliver_timeout_ms = 10000;
    if (c->batch_ms < 0)
        c->batch_ms = 10;
    if (c->retry_base_ms <= 0)
        c->retry_base_ms = 1000;
    if (c->retry_window_ms <= 0)
        c->retry_window_ms = 600000;
}

static void notifier_free(struct notifier *n)
{
    /* Deliveries cut short here were not recorded: their notifications
     * are still 'pending' and the next run sends them again. */
    delivery_queue_free(n->queue);
    if (n->db != NULL)
        db_close(n->db);
    if (n->stats_db != NULL)
        db_close(n->stats_db);
    pthread_mutex_destroy(&n->lock);
    pthread_mutex_destroy(&n->stats_lock);
    free(n->db_path);
    free(n);
}

struct notifier *notifier_start(const struct notifier_config *cfg)
{
    struct notifier *n = xcalloc(1, sizeof(*n));
    char *schema = xasprintf("%s%s", CLOUD_SCHEMA_SHARED,
                             notifier_schema_sql);

    n->cfg = *cfg;
    notifier_defaults(&n->cfg);
    n->db_path = xstrdup(cfg->db_path);
    n->cfg.db_path = n->db_path;
    pthread_mutex_init(&n->lock, NULL);
    pthread_mutex_init(&n->stats_lock, NULL);
    delivery_global_init();
    n->db = db_open(n->db_path, schema);
    n->stats_db = n->db != NULL ? db_open(n->db_path, schema) : NULL;
    free(schema);
    if (n->stats_db == NULL)
        goto fail;
    n->queue = delivery_queue_new(n->db, &n->cfg);
    if (pthread_create(&n->thread, NULL, notifier_run, n) != 0) {
        LOG_E("notifier thread could not start");
        goto fail;
    }
    LOG_I("notifier started batch_ms=%lld retry_base_ms=%lld"
          " retry_window_ms=%lld", (long long)n->cfg.batch_ms,
          (long long)n->cfg.retry_base_ms,
          (long long)n->cfg.retry_window_ms);
    return n;
fail:
    notifier_free(n);
    return NULL;
}

void notifier_stop(struct notifier *n)
{
    if (n == NULL)
        return;
    pthread_mutex_lock(&n->lock);
    n->stop = true;
    pthread_mutex_unlock(&n->lock);
    delivery_queue_wakeup(n->queue);
    pthread_join(n->thread, NULL);
    notifier_free(n);
}

void notifier_wake(struct notifier *n)
{
    if (n == NULL)
        return;
    pthread_mutex_lock(&n->lock);
    n->woken = true;
    pthread_mutex_unlock(&n->lock);
    delivery_queue_wakeup(n->queue);
}

int notifier_verify(struct notifier *n, const char *uri, char *err,
                    size_t err_size)
{
    int64_t timeout = n != NULL ? n->cfg.verify_timeout_ms : 10000;
    int64_t start = time_mono_ms();
    int ret = delivery_verify(uri, timeout, err, err_size);

    if (ret == 0)
        LOG_I("verification passed duration_ms=%lld",
              (long long)(time_mono_ms() - start));
    else
        LOG_W("verification failed duration_ms=%lld error=\"%s\"",
              (long long)(time_mono_ms() - start), err);
    return ret;
}

int notifier_stats(struct notifier *n, int64_t *delivered,
                   int64_t *attempts, int64_t *failed)
{
    sqlite3_stmt *st;
    int ret = -1;

    if (n == NULL)
        return -1;
    pthread_mutex_lock(&n->stats_lock);
    st = db_prepare(n->stats_db,
        "SELECT (SELECT count(*) FROM notifications"
        "        WHERE state = 'delivered'),"
        " (SELECT count(*) FROM attempts),"
        " (SELECT count(*) FROM notifications WHERE state = 'failed')");
    if (sqlite3_step(st) == SQLITE_ROW) {
        *delivered = sqlite3_column_int64(st, 0);
        *attempts = sqlite3_column_int64(st, 1);
        *failed = sqlite3_column_int64(st, 2);
        ret = 0;
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&n->stats_lock);
    return ret;
}
