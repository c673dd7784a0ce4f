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

#include <arpa/inet.h>
#include <curl/curl.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "cloud/delivery.h"
#include "cloud/health.h"
#include "cloud/schema.h"
#include "common/db.h"
#include "common/log.h"
#include "common/notification.h"
#include "common/sig.h"
#include "common/util.h"

extern char **environ;

/* Most accounts one notification may name (batch_max_accounts is
 * clamped to it); more wait for the next one. */
#define NOTIFIER_MAX_ACCOUNTS 1000
/* Alert commands running at once; more are logged and skipped. */
#define NOTIFIER_MAX_ALERT_CHILDREN 8
/* An alert command is killed after this long. */
#define NOTIFIER_ALERT_TIMEOUT_MS 10000
/* Unfinished notifications folded into one when a webhook is
 * re-enabled, per pass. */
#define NOTIFIER_MAX_FOLD 4096
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
    /* pending | delivered | failed | merged */
    " state TEXT NOT NULL DEFAULT 'pending',"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " next_attempt_at INTEGER NOT NULL," /* unix ms */
    " created_at INTEGER NOT NULL,"      /* unix ms */
    " delivered_at INTEGER,"             /* unix ms */
    " window_start INTEGER);"            /* NULL: created_at */
    "CREATE INDEX IF NOT EXISTS notifications_due"
    " ON notifications(state, next_attempt_at);"
    "CREATE TABLE IF NOT EXISTS notification_accounts ("
    " notification_id INTEGER NOT NULL,"
    " account_id INTEGER NOT NULL,"
    " PRIMARY KEY(notification_id, account_id));"
    "CREATE INDEX IF NOT EXISTS notification_accounts_by_account"
    " ON notification_accounts(account_id);"
    "CREATE TABLE IF NOT EXISTS attempts ("
    " id INTEGER PRIMARY KEY,"
    " notification_id INTEGER NOT NULL,"
    " started_at INTEGER NOT NULL," /* unix ms */
    " status INTEGER NOT NULL,"     /* 0: no response */
    " duration_ms INTEGER NOT NULL,"
    " error TEXT,"
    " app_id INTEGER,"
    " uri TEXT);"
    "CREATE INDEX IF NOT EXISTS attempts_by_notification"
    " ON attempts(notification_id);"
    "CREATE TABLE IF NOT EXISTS webhook_resume ("
    " app_id INTEGER PRIMARY KEY);"
    "CREATE TABLE IF NOT EXISTS webhook_health ("
    " app_id INTEGER PRIMARY KEY,"
    " counted_since INTEGER NOT NULL);" /* unix ms */
    "CREATE TABLE IF NOT EXISTS alerts ("
    " id INTEGER PRIMARY KEY,"
    " app_id INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL," /* unix ms */
    " kind TEXT NOT NULL," /* webhook_disabled | notification_failed */
    " reason TEXT NOT NULL,"
    " failures INTEGER,"
    " attempts INTEGER,"
    " uri TEXT);";

/* Columns added after the first release, for databases made before. */
static const struct {
    const char *table, *column, *decl;
} notifier_added_columns[] = {
    {"notifications", "window_start", "INTEGER"},
    {"attempts", "app_id", "INTEGER"},
    {"attempts", "uri", "TEXT"},
};

/* Indexes on added columns: created once the columns exist. */
static const char notifier_late_indexes[] =
    "CREATE INDEX IF NOT EXISTS attempts_by_app"
    " ON attempts(app_id, started_at);";

struct notifier {
    struct notifier_config cfg; /* strings point at our own copies */
    char *db_path;
    char *alert_command;
    sqlite3 *db;        /* the thread's connection */
    sqlite3 *stats_db;  /* notifier_stats' connection, under stats_lock */
    pthread_mutex_t stats_lock;
    struct delivery_queue *queue; /* used by the thread only */
    pthread_t thread;
    pthread_mutex_t lock; /* guards woken and stop */
    bool woken;
    bool stop;
    /* Alert commands still running (thread only). */
    pid_t alert_pids[NOTIFIER_MAX_ALERT_CHILDREN];
    int64_t alert_deadlines[NOTIFIER_MAX_ALERT_CHILDREN]; /* mono ms */
};

/* ---- body ------------------------------------------------------------ */

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
                                 int64_t base_ms, int64_t cap_ms,
                                 int64_t window_ms, int attempts,
                                 double jitter)
{
    int64_t deadline = created_at + window_ms;
    int64_t delay, next;

    if (now >= deadline)
        return -1;
    delay = notifier_backoff_ms(base_ms, attempts, jitter);
    if (cap_ms > 0 && delay > cap_ms)
        delay = cap_ms;
    next = now + delay;
    return next < deadline ? next : deadline;
}

/* ---- marking and gathering ------------------------------------------- */

int notifier_mark_pending_tx(sqlite3 *db, int64_t account_rowid)
{
    /* Scopes are space-separated; padding both sides makes the search
     * match whole scope names only.  A disabled webhook keeps collecting
     * so that re-enabling it can name every account it missed. */
    static const char sql[] =
        "INSERT OR IGNORE INTO webhook_pending(app_id, account_id)"
        " SELECT l.app_id, l.account_id FROM links l"
        " JOIN apps a ON a.id = l.app_id"
        " WHERE l.account_id = ?1"
        " AND a.webhook_state IN ('verified', 'disabled')"
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

int notifier_enable_tx(sqlite3 *db, int64_t app_id, int64_t now)
{
    sqlite3_stmt *st[3] = {
        db_prepare(db, "UPDATE apps SET webhook_state = 'verified',"
                       " webhook_error = NULL WHERE id = ?1"),
        db_prepare(db, "INSERT OR REPLACE INTO webhook_health(app_id,"
                       " counted_since) VALUES (?1, ?2)"),
        db_prepare(db, "INSERT OR IGNORE INTO webhook_resume(app_id)"
                       " VALUES (?1)"),
    };
    int ret = 0;

    for (size_t i = 0; i < ARRAY_LEN(st); i++) {
        sqlite3_bind_int64(st[i], 1, app_id);
        if (i == 1)
            sqlite3_bind_int64(st[i], 2, now);
        if (ret == 0 && sqlite3_step(st[i]) != SQLITE_DONE)
            ret = -1;
        sqlite3_finalize(st[i]);
    }
    if (ret != 0)
        LOG_E("enable webhook failed app_id=%lld error=\"%s\"",
              (long long)app_id, sqlite3_errmsg(db));
    return ret;
}

/* The pending accounts of one app, in account order. */
struct gathered {
    char *accounts[NOTIFIER_MAX_ACCOUNTS];
    int64_t uids[NOTIFIER_MAX_ACCOUNTS];
    int64_t rowids[NOTIFIER_MAX_ACCOUNTS];
    size_t count;
    size_t absorbed; /* pairs an unsent notification already covers */
    bool more; /* more pending than fit in one notification */
};

/* Is account already named by a notification of app that waits (not
 * yet sent, or backing off) and is not in flight?  Then that
 * notification's next attempt covers the change. */
static bool notifier_absorbs(struct notifier *n, int64_t app_id,
                             int64_t account)
{
    sqlite3_stmt *st = db_prepare(n->db,
        "SELECT x.id FROM notification_accounts na"
        " JOIN notifications x ON x.id = na.notification_id"
        " WHERE na.account_id = ?1 AND x.app_id = ?2"
        " AND x.state = 'pending'");
    bool absorbed = false;

    sqlite3_bind_int64(st, 1, account);
    sqlite3_bind_int64(st, 2, app_id);
    while (!absorbed && sqlite3_step(st) == SQLITE_ROW)
        absorbed = !delivery_queue_inflight(n->queue,
                                            sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
    return absorbed;
}

/* Runs one statement that returns no row, ?1 and ?2 bound to a and b;
 * 0 or -1. */
static int notifier_exec2(sqlite3 *db, const char *sql, int64_t a, int64_t b)
{
    sqlite3_stmt *st = db_prepare(db, sql);
    int rc;

    sqlite3_bind_int64(st, 1, a);
    sqlite3_bind_int64(st, 2, b);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    sqlite3_finalize(st);
    return rc;
}

static int notifier_unpend(sqlite3 *db, int64_t app_id, int64_t account)
{
    return notifier_exec2(db,
                          "DELETE FROM webhook_pending WHERE app_id = ?1"
                          " AND account_id = ?2",
                          app_id, account);
}

/* Reads the app's pending pairs (inside the gathering transaction):
 * absorbed ones are deleted at once, the others collected in g, up to
 * the configured maximum.  Returns 0 or -1. */
static int gathered_read(struct notifier *n, int64_t app_id,
                         struct gathered *g)
{
    size_t max = (size_t)n->cfg.batch_max_accounts;
    int64_t absorbed[NOTIFIER_MAX_ACCOUNTS];
    size_t nabsorbed = 0, rows = 0;
    sqlite3_stmt *st = db_prepare(n->db,
        "SELECT a.id, a.account_id, a.uid FROM webhook_pending p"
        " JOIN accounts a ON a.id = p.account_id"
        " WHERE p.app_id = ?1 ORDER BY a.id LIMIT ?2");

    sqlite3_bind_int64(st, 1, app_id);
    sqlite3_bind_int(st, 2, NOTIFIER_MAX_ACCOUNTS);
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t rowid = sqlite3_column_int64(st, 0);

        rows++;
        if (notifier_absorbs(n, app_id, rowid)) {
            absorbed[nabsorbed++] = rowid;
            continue;
        }
        if (g->count == max) {
            g->more = true;
            continue;
        }
        g->rowids[g->count] = rowid;
        g->accounts[g->count] = db_column_dup(st, 1);
        g->uids[g->count] = sqlite3_column_int64(st, 2);
        g->count++;
    }
    if (rows == NOTIFIER_MAX_ACCOUNTS)
        g->more = true;
    sqlite3_finalize(st);
    g->absorbed = nabsorbed;
    for (size_t i = 0; i < nabsorbed; i++)
        if (notifier_unpend(n->db, app_id, absorbed[i]) != 0)
            return -1;
    return 0;
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

/* Names account in notification id and takes its pending pair away. */
static int notifier_name_account(sqlite3 *db, int64_t id, int64_t app_id,
                                 int64_t account)
{
    if (notifier_exec2(db,
                       "INSERT OR IGNORE INTO notification_accounts"
                       "(notification_id, account_id) VALUES (?1, ?2)",
                       id, account) < 0)
        return -1;
    return notifier_unpend(db, app_id, account);
}

/* Writes the notification for g, names its accounts and deletes their
 * pending pairs; inside the caller's transaction.  Returns the new
 * notification's id or -1. */
static int64_t notifier_insert(sqlite3 *db, int64_t app_id,
                               const struct gathered *g, const char *secret)
{
    char *body = notification_body((const char *const *)g->accounts,
                                   g->uids, g->count);
    char sig[SIG_HEX_LEN + 1];
    int64_t now = delivery_now_ms(), id = -1;
    sqlite3_stmt *ins = db_prepare(db,
        "INSERT INTO notifications(app_id, body, signature, state,"
        " attempts, next_attempt_at, created_at)"
        " VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4)");

    sig_sign(secret, body, strlen(body), sig);
    sqlite3_bind_int64(ins, 1, app_id);
    db_bind_text(ins, 2, body);
    db_bind_text(ins, 3, sig);
    sqlite3_bind_int64(ins, 4, now);
    if (sqlite3_step(ins) != SQLITE_DONE)
        goto out;
    id = sqlite3_last_insert_rowid(db);
    for (size_t i = 0; i < g->count; i++) {
        if (notifier_name_account(db, id, app_id, g->rowids[i]) != 0) {
            id = -1;
            goto out;
        }
    }
out:
    sqlite3_finalize(ins);
    free(body);
    return id;
}

/* One app's pending pairs into one notification, in one transaction.
 * Sets *more when pairs remain for another pass (too many for one
 * notification, or the transaction failed). */
static int notifier_gather_app(struct notifier *n, int64_t app_id,
                               bool *more)
{
    struct gathered *g = xcalloc(1, sizeof(*g));
    char *key = NULL, *secret = NULL;
    int64_t id = -1;
    int ret = -1;

    *more = true; /* until this app's pairs are safely written */
    if (db_begin(n->db) != 0)
        goto out;
    if (notifier_app_keys(n->db, app_id, &key, &secret) != 0 ||
        gathered_read(n, app_id, g) != 0)
        goto fail;
    if (g->count > 0 &&
        (id = notifier_insert(n->db, app_id, g, secret)) < 0)
        goto fail;
    if (db_commit(n->db) != 0)
        goto fail;
    if (g->count > 0)
        LOG_I("notification created app=%s notification=%lld accounts=%zu"
              " absorbed=%zu", key, (long long)id, g->count, g->absorbed);
    else if (g->absorbed > 0)
        LOG_D("changes absorbed app=%s accounts=%zu", key, g->absorbed);
    *more = g->more;
    ret = 0;
    goto out;
fail:
    LOG_E("gather failed app=%s error=\"%s\"", key ? key : "?",
          sqlite3_errmsg(n->db));
    db_rollback(n->db);
out:
    for (size_t i = 0; i < g->count; i++)
        free(g->accounts[i]);
    free(g);
    free(key);
    free(secret);
    return ret;
}

/* ---- folding on re-enable -------------------------------------------- */

/* Inside the caller's transaction: every waiting or failed notification
 * of the app that is not in flight gives its accounts back to
 * webhook_pending and becomes 'merged'. */
static int notifier_fold_app(struct notifier *n, int64_t app_id)
{
    int64_t *ids = xcalloc(NOTIFIER_MAX_FOLD, sizeof(*ids));
    size_t count = 0;
    int ret = 0;
    sqlite3_stmt *st = db_prepare(n->db,
        "SELECT id FROM notifications WHERE app_id = ?1"
        " AND state IN ('pending', 'failed') ORDER BY id LIMIT ?2");
    sqlite3_stmt *back = db_prepare(n->db,
        "INSERT OR IGNORE INTO webhook_pending(app_id, account_id)"
        " SELECT ?1, account_id FROM notification_accounts"
        " WHERE notification_id = ?2");
    sqlite3_stmt *merge = db_prepare(n->db,
        "UPDATE notifications SET state = 'merged' WHERE id = ?1");

    sqlite3_bind_int64(st, 1, app_id);
    sqlite3_bind_int(st, 2, NOTIFIER_MAX_FOLD);
    while (sqlite3_step(st) == SQLITE_ROW && count < NOTIFIER_MAX_FOLD) {
        int64_t id = sqlite3_column_int64(st, 0);

        if (!delivery_queue_inflight(n->queue, id))
            ids[count++] = id;
    }
    sqlite3_finalize(st);
    for (size_t i = 0; i < count && ret == 0; i++) {
        sqlite3_reset(back);
        sqlite3_reset(merge);
        sqlite3_bind_int64(back, 1, app_id);
        sqlite3_bind_int64(back, 2, ids[i]);
        sqlite3_bind_int64(merge, 1, ids[i]);
        if (sqlite3_step(back) != SQLITE_DONE ||
            sqlite3_step(merge) != SQLITE_DONE)
            ret = -1;
    }
    sqlite3_finalize(back);
    sqlite3_finalize(merge);
    free(ids);
    if (ret == 0 && count > 0)
        LOG_I("notifications folded app_id=%lld count=%zu",
              (long long)app_id, count);
    return ret;
}

/* Folds every re-enabled app (one transaction each), so the gathering
 * that follows sends one notification covering all it missed. */
static void notifier_resume(struct notifier *n)
{
    int64_t apps[NOTIFIER_MAX_APPS_PER_PASS];
    size_t count = 0;
    sqlite3_stmt *st = db_prepare(n->db,
        "SELECT r.app_id FROM webhook_resume r JOIN apps a"
        " ON a.id = r.app_id WHERE a.webhook_state = 'verified' LIMIT ?1");
    sqlite3_stmt *del;

    sqlite3_bind_int(st, 1, NOTIFIER_MAX_APPS_PER_PASS);
    while (sqlite3_step(st) == SQLITE_ROW)
        apps[count++] = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    for (size_t i = 0; i < count; i++) {
        if (db_begin(n->db) != 0)
            return;
        del = db_prepare(n->db,
                         "DELETE FROM webhook_resume WHERE app_id = ?1");
        sqlite3_bind_int64(del, 1, apps[i]);
        if (notifier_fold_app(n, apps[i]) != 0 ||
            sqlite3_step(del) != SQLITE_DONE || db_commit(n->db) != 0) {
            LOG_E("fold failed app_id=%lld error=\"%s\"",
                  (long long)apps[i], sqlite3_errmsg(n->db));
            db_rollback(n->db);
        }
        sqlite3_finalize(del);
    }
}

/* Gathers every app with pending pairs and a verified webhook.  Returns
 * true when work remains for another pass. */
static bool notifier_gather(struct notifier *n)
{
    int64_t apps[NOTIFIER_MAX_APPS_PER_PASS];
    size_t count = 0;
    bool more = false;
    sqlite3_stmt *st;

    notifier_resume(n);
    st = db_prepare(n->db,
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

        notifier_gather_app(n, apps[i], &app_more);
        more = more || app_more;
    }
    return more;
}

/* ---- alerts ---------------------------------------------------------- */

/* The environment of an alert command: ours plus the details. */
static char **notifier_alert_env(const struct delivery_alert *a,
                                 char **extra, size_t nextra)
{
    size_t n = 0;
    char **env;

    while (environ[n] != NULL)
        n++;
    env = xcalloc(n + nextra + 1, sizeof(*env));
    memcpy(env, environ, n * sizeof(*env));
    extra[0] = xasprintf("DBXHOOK_APP_KEY=%s", a->app_key);
    extra[1] = xasprintf("DBXHOOK_WEBHOOK_URI=%s", a->uri);
    extra[2] = xasprintf("DBXHOOK_FAILURES=%lld", (long long)a->failures);
    extra[3] = xasprintf("DBXHOOK_ATTEMPTS=%lld", (long long)a->attempts);
    extra[4] = xasprintf("DBXHOOK_REASON=%s", a->reason);
    memcpy(env + n, extra, nextra * sizeof(*env));
    return env;
}

/* Starts the alert command for a (never waits for it). */
static void notifier_alert_spawn(struct notifier *n,
                                 const struct delivery_alert *a)
{
    char *extra[5];
    char **env;
    char *argv[] = {"/bin/sh", "-c", (char *)n->cfg.alert_command, NULL};
    posix_spawnattr_t attr;
    int slot = -1, rc;
    pid_t pid;

    for (int i = 0; i < NOTIFIER_MAX_ALERT_CHILDREN; i++)
        if (n->alert_pids[i] == 0)
            slot = i;
    if (slot < 0) {
        LOG_W("alert command skipped app=%s reason=\"too many running\"",
              a->app_key);
        return;
    }
    env = notifier_alert_env(a, extra, ARRAY_LEN(extra));
    posix_spawnattr_init(&attr);
    /* Its own process group, so a timeout kills the whole command. */
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    rc = posix_spawn(&pid, "/bin/sh", NULL, &attr, argv, env);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        LOG_E("alert command not started app=%s errno=%d", a->app_key, rc);
    } else {
        n->alert_pids[slot] = pid;
        n->alert_deadlines[slot] = time_mono_ms() +
                                   NOTIFIER_ALERT_TIMEOUT_MS;
        LOG_I("alert command started app=%s pid=%d", a->app_key,
              (int)pid);
    }
    for (size_t i = 0; i < ARRAY_LEN(extra); i++)
        free(extra[i]);
    free(env);
}

/* Reaps finished alert commands and kills overdue ones; with force,
 * kills and reaps them all (at stop). */
static void notifier_alert_reap(struct notifier *n, bool force)
{
    int64_t now = time_mono_ms();

    for (int i = 0; i < NOTIFIER_MAX_ALERT_CHILDREN; i++) {
        pid_t pid = n->alert_pids[i];
        int status = 0;

        if (pid == 0)
            continue;
        if (force || now > n->alert_deadlines[i]) {
            LOG_W("alert command killed pid=%d reason=\"%s\"", (int)pid,
                  force ? "stopping" : "timed out");
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            n->alert_pids[i] = 0;
        } else if (waitpid(pid, &status, WNOHANG) == pid) {
            LOG_I("alert command finished pid=%d status=%d", (int)pid,
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
            n->alert_pids[i] = 0;
        }
    }
}

/* Announces the webhooks the delivery queue has just disabled. */
static void notifier_alerts(struct notifier *n)
{
    struct delivery_alert alerts[DELIVERY_MAX_ALERTS];
    size_t count = delivery_take_alerts(n->queue, alerts,
                                        ARRAY_LEN(alerts));

    for (size_t i = 0; i < count; i++) {
        LOG_W("ALERT webhook disabled app=%s failures=%lld attempts=%lld"
              " reason=\"%s\"", alerts[i].app_key,
              (long long)alerts[i].failures, (long long)alerts[i].attempts,
              alerts[i].reason);
        if (n->cfg.alert_command != NULL && n->cfg.alert_command[0])
            notifier_alert_spawn(n, &alerts[i]);
    }
    notifier_alert_reap(n, false);
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
        notifier_alerts(n);
        if (gather_at >= 0)
            wait = notifier_min_wait(wait, gather_at - now);
        if (next_due >= 0)
            wait = notifier_min_wait(wait, next_due - delivery_now_ms());
        delivery_queue_wait(n->queue, wait);
    }
    notifier_alert_reap(n, true);
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
    if (c->retry_cap_ms <= 0)
        c->retry_cap_ms = 120000;
    if (c->retry_window_ms <= 0)
        c->retry_window_ms = 600000;
    if (c->health_window_ms <= 0)
        c->health_window_ms = HEALTH_WINDOW_MS_DEFAULT;
    if (c->batch_max_accounts <= 0)
        c->batch_max_accounts = 100;
    if (c->batch_max_accounts > NOTIFIER_MAX_ACCOUNTS)
        c->batch_max_accounts = NOTIFIER_MAX_ACCOUNTS;
    if (c->inflight_per_webhook <= 0)
        c->inflight_per_webhook = 8;
}

/* Adds the columns of notifier_added_columns a database made by an
 * earlier version lacks, then the indexes on them.  0 or -1. */
static int notifier_migrate(sqlite3 *db)
{
    for (size_t i = 0; i < ARRAY_LEN(notifier_added_columns); i++) {
        char *q = xasprintf("SELECT count(*) FROM pragma_table_info('%s')"
                            " WHERE name = '%s'",
                            notifier_added_columns[i].table,
                            notifier_added_columns[i].column);
        sqlite3_stmt *st = db_prepare(db, q);
        bool present = sqlite3_step(st) == SQLITE_ROW &&
                       sqlite3_column_int(st, 0) > 0;

        sqlite3_finalize(st);
        free(q);
        if (present)
            continue;
        q = xasprintf("ALTER TABLE %s ADD COLUMN %s %s",
                      notifier_added_columns[i].table,
                      notifier_added_columns[i].column,
                      notifier_added_columns[i].decl);
        if (db_exec(db, q) != 0) {
            free(q);
            return -1;
        }
        free(q);
    }
    return db_exec(db, notifier_late_indexes);
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
    free(n->alert_command);
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
    n->alert_command = cfg->alert_command != NULL
                           ? xstrdup(cfg->alert_command) : NULL;
    n->cfg.alert_command = n->alert_command;
    pthread_mutex_init(&n->lock, NULL);
    pthread_mutex_init(&n->stats_lock, NULL);
    delivery_global_init();
    n->db = db_open(n->db_path, schema);
    n->stats_db = n->db != NULL ? db_open(n->db_path, schema) : NULL;
    free(schema);
    if (n->stats_db == NULL || notifier_migrate(n->db) != 0)
        goto fail;
    n->queue = delivery_queue_new(n->db, &n->cfg);
    if (pthread_create(&n->thread, NULL, notifier_run, n) != 0) {
        LOG_E("notifier thread could not start");
        goto fail;
    }
    LOG_I("notifier started batch_ms=%lld batch_max_accounts=%d"
          " retry_base_ms=%lld retry_cap_ms=%lld retry_window_ms=%lld"
          " health_window_ms=%lld inflight_per_webhook=%d"
          " refuse_private_uris=%s", (long long)n->cfg.batch_ms,
          n->cfg.batch_max_accounts, (long long)n->cfg.retry_base_ms,
          (long long)n->cfg.retry_cap_ms,
          (long long)n->cfg.retry_window_ms,
          (long long)n->cfg.health_window_ms, n->cfg.inflight_per_webhook,
          n->cfg.refuse_private_uris ? "yes" : "no");
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
    bool refuse = n != NULL && n->cfg.refuse_private_uris;
    int64_t start = time_mono_ms();
    int ret;

    if (refuse && notifier_uri_is_private(uri, err, err_size)) {
        LOG_W("verification refused error=\"%s\"", err);
        return -1;
    }
    ret = delivery_verify(uri, timeout, refuse, err, err_size);

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

bool notifier_uri_is_private(const char *uri, char *err, size_t err_size)
{
    CURLU *u = curl_url();
    char *host = NULL;
    bool priv = false;
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    size_t len;

    if (u == NULL || curl_url_set(u, CURLUPART_URL, uri, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        goto out;
    len = strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        host[len - 1] = '\0';
        memmove(host, host + 1, len - 1);
    }
    len = strlen(host);
    while (len > 0 && host[len - 1] == '.') /* "localhost." */
        host[--len] = '\0';
    if (strcasecmp(host, "localhost") == 0 ||
        (len > 10 && strcasecmp(host + len - 10, ".localhost") == 0))
        priv = true;
    else if (inet_pton(AF_INET, host, &v4.sin_addr) == 1)
        priv = delivery_addr_is_private((struct sockaddr *)&v4);
    else if (inet_pton(AF_INET6, host, &v6.sin6_addr) == 1)
        priv = delivery_addr_is_private((struct sockaddr *)&v6);
    if (priv)
        snprintf(err, err_size, "refused: %s is a loopback or private"
                 " address", host);
out:
    curl_free(host);
    curl_url_cleanup(u);
    return priv;
}
