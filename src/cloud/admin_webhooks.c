/*
 * admin_webhooks: re-enabling, disabling and inspecting webhook
 * delivery from the console.  See admin_webhooks.h and docs/CLI.md.
 *
 * Reads and writes go through the store's connection under store_lock;
 * the verification GET of webhooks/enable runs without the lock.
 */
#include "cloud/admin_webhooks.h"

#include "cloud/delivery.h"
#include "cloud/notifier.h"
#include "common/db.h"
#include "common/log.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>

/* Rows one list call returns at most, and by default. */
#define ADMIN_WH_LIST_MAX 1000
#define ADMIN_WH_LIST_DEFAULT 100
#define ADMIN_WH_ERR_MAX 512

static void admin_wh_reply(struct hsrv_response *resp, int status,
                           json_t *o)
{
    char *text = json_dumps(o, JSON_COMPACT);

    hsrv_reply_str(resp, status, "application/json", text);
    free(text);
    json_decref(o);
}

static void admin_wh_error(struct hsrv_response *resp, int status,
                           const char *msg)
{
    admin_wh_reply(resp, status, json_pack("{s:s}", "error", msg));
}

/* The app named by body's app_key: its rowid (0 when absent or unknown,
 * after answering 400), and a copy of its webhook URI in *uri (may be
 * NULL) when uri is not NULL. */
static int64_t admin_wh_app(struct store *s, json_t *body, char **uri,
                            struct hsrv_response *resp)
{
    const char *key = json_string_value(json_object_get(body, "app_key"));
    sqlite3_stmt *st;
    int64_t id = 0;

    if (key == NULL || key[0] == '\0') {
        admin_wh_error(resp, 400, "missing or empty string field"
                                  " 'app_key'");
        return 0;
    }
    store_lock(s);
    st = db_prepare(s->db, "SELECT id, webhook_uri FROM apps"
                           " WHERE app_key = ?1");
    db_bind_text(st, 1, key);
    if (sqlite3_step(st) == SQLITE_ROW) {
        id = sqlite3_column_int64(st, 0);
        if (uri != NULL)
            *uri = db_column_dup(st, 1);
    }
    sqlite3_finalize(st);
    store_unlock(s);
    if (id == 0)
        admin_wh_error(resp, 400, "unknown app_key");
    return id;
}

/* An integer member given as a number or a decimal string; def when
 * absent, -1 when malformed. */
static int64_t admin_wh_int(json_t *body, const char *name, int64_t def)
{
    json_t *v = json_object_get(body, name);
    const char *text;
    char *end;
    long long n;

    if (v == NULL)
        return def;
    if (json_is_integer(v))
        return json_integer_value(v) >= 0 ? json_integer_value(v) : -1;
    text = json_string_value(v);
    if (text == NULL || text[0] == '\0')
        return -1;
    n = strtoll(text, &end, 10);
    return *end == '\0' && n >= 0 ? n : -1;
}

/* "a b c" (or NULL) as ["a", "b", "c"]. */
static json_t *admin_wh_split(const char *text)
{
    json_t *list = json_array();
    char *copy, *save = NULL;

    if (text == NULL)
        return list;
    copy = xstrdup(text);
    for (char *w = strtok_r(copy, " ", &save); w != NULL;
         w = strtok_r(NULL, " ", &save))
        json_array_append_new(list, json_string(w));
    free(copy);
    return list;
}

/* Runs st (bound by the caller; the lock held) into an array of objects
 * keyed by names; a column named "accounts" holds space-separated ids
 * and becomes an array. */
static json_t *admin_wh_rows(sqlite3_stmt *st, const char *const *names,
                             int ncols)
{
    json_t *rows = json_array();

    while (sqlite3_step(st) == SQLITE_ROW) {
        json_t *row = json_object();

        for (int i = 0; i < ncols; i++) {
            json_t *v = store_column_json(st, i);

            if (strcmp(names[i], "accounts") == 0) {
                json_t *list = admin_wh_split(json_string_value(v));

                json_decref(v);
                v = list;
            }
            json_object_set_new(row, names[i], v);
        }
        json_array_append_new(rows, row);
    }
    return rows;
}

/* Prepares sql, binds args to ?1..?nargs and returns its rows as
 * admin_wh_rows does (lock held). */
static json_t *admin_wh_query(struct store *s, const char *sql,
                              const int64_t *args, int nargs,
                              const char *const *names, int ncols)
{
    sqlite3_stmt *st = db_prepare(s->db, sql);
    json_t *rows;

    for (int i = 0; i < nargs; i++)
        sqlite3_bind_int64(st, i + 1, args[i]);
    rows = admin_wh_rows(st, names, ncols);
    sqlite3_finalize(st);
    return rows;
}

/* A console list: the reply's member, its query and column names. */
struct admin_wh_list {
    const char *key;
    const char *sql;
    const char *const *names;
    int ncols;
};

/* Runs l's query under the lock and replies 200 {key: [rows]}. */
static void admin_wh_list_reply(struct store *s,
                                const struct admin_wh_list *l,
                                const int64_t *args, int nargs,
                                struct hsrv_response *resp)
{
    json_t *rows;

    store_lock(s);
    rows = admin_wh_query(s, l->sql, args, nargs, l->names, l->ncols);
    store_unlock(s);
    admin_wh_reply(resp, 200, json_pack("{s:o}", l->key, rows));
}

/* The limit member, ADMIN_WH_LIST_MAX when out of range. */
static int64_t admin_wh_limit(json_t *body, int64_t def)
{
    int64_t limit = admin_wh_int(body, "limit", def);

    return limit < 0 || limit > ADMIN_WH_LIST_MAX ? ADMIN_WH_LIST_MAX
                                                  : limit;
}

/* ---- enable and disable ---------------------------------------------- */

static void admin_wh_enable(struct store *s, json_t *body,
                            struct hsrv_response *resp)
{
    char err[ADMIN_WH_ERR_MAX] = "", *uri = NULL;
    int64_t app = admin_wh_app(s, body, &uri, resp);
    int rc = -1;

    if (app == 0)
        goto out;
    if (uri == NULL) {
        admin_wh_error(resp, 400, "the app has no webhook URI");
        goto out;
    }
    /* Verification may take the whole timeout: not under the lock. */
    if (s->notifier == NULL)
        snprintf(err, sizeof(err), "notifier not running");
    else if (notifier_verify(s->notifier, uri, err, sizeof(err)) == 0)
        rc = 0;
    store_lock(s);
    if (rc == 0 && db_begin(s->db) == 0) {
        rc = notifier_enable_tx(s->db, app, delivery_now_ms());
        if (rc != 0 || db_commit(s->db) != 0) {
            db_rollback(s->db);
            rc = -1;
            snprintf(err, sizeof(err), "not stored");
        }
    } else {
        sqlite3_stmt *st = db_prepare(s->db,
            "UPDATE apps SET webhook_error = ?2 WHERE id = ?1");
        char *text = xasprintf("re-enable failed: %s", err);

        sqlite3_bind_int64(st, 1, app);
        db_bind_text(st, 2, text);
        sqlite3_step(st);
        sqlite3_finalize(st);
        free(text);
    }
    store_unlock(s);
    if (rc == 0) {
        notifier_wake(s->notifier);
        LOG_I("webhook enabled app_id=%lld", (long long)app);
        admin_wh_reply(resp, 200, json_pack("{s:s}", "state", "verified"));
    } else {
        LOG_W("webhook enable failed app_id=%lld error=\"%s\"",
              (long long)app, err);
        admin_wh_reply(resp, 200, json_pack("{s:s, s:s}", "state",
                                            "failed", "error", err));
    }
out:
    free(uri);
}

static void admin_wh_disable(struct store *s, json_t *body,
                             struct hsrv_response *resp)
{
    int64_t app = admin_wh_app(s, body, NULL, resp);
    sqlite3_stmt *st;
    int changed;

    if (app == 0)
        return;
    store_lock(s);
    st = db_prepare(s->db,
        "UPDATE apps SET webhook_state = 'disabled',"
        " webhook_error = 'disabled from the console'"
        " WHERE id = ?1 AND webhook_uri IS NOT NULL");
    sqlite3_bind_int64(st, 1, app);
    changed = sqlite3_step(st) == SQLITE_DONE ? sqlite3_changes(s->db) : 0;
    sqlite3_finalize(st);
    store_unlock(s);
    if (changed != 1) {
        admin_wh_error(resp, 400, "the app has no webhook URI");
        return;
    }
    LOG_I("webhook disabled from the console app_id=%lld", (long long)app);
    admin_wh_reply(resp, 200, json_pack("{s:s}", "state", "disabled"));
}

/* ---- lists ----------------------------------------------------------- */

static void admin_wh_deliveries(struct store *s, json_t *body,
                                struct hsrv_response *resp)
{
    static const char *const names[] = {
        "notification_id", "state", "attempts", "created_at",
        "next_attempt_at", "delivered_at", "accounts"};
    int64_t app = admin_wh_app(s, body, NULL, resp);
    int64_t args[2] = {app, admin_wh_limit(body, ADMIN_WH_LIST_DEFAULT)};
    sqlite3_stmt *st;
    json_t *o;

    if (app == 0)
        return;
    store_lock(s);
    o = json_pack("{s:o}", "deliveries", admin_wh_query(s,
        "SELECT n.id, n.state, n.attempts, n.created_at,"
        " n.next_attempt_at, n.delivered_at,"
        " (SELECT group_concat(a.account_id, ' ') FROM"
        "  notification_accounts na JOIN accounts a"
        "  ON a.id = na.account_id WHERE na.notification_id = n.id)"
        " FROM notifications n WHERE n.app_id = ?1"
        " ORDER BY n.id DESC LIMIT ?2", args, 2, names, 7));
    st = db_prepare(s->db, "SELECT count(*) FROM webhook_pending"
                           " WHERE app_id = ?1");
    sqlite3_bind_int64(st, 1, app);
    if (sqlite3_step(st) == SQLITE_ROW)
        json_object_set_new(o, "pending_accounts",
                            json_integer(sqlite3_column_int64(st, 0)));
    sqlite3_finalize(st);
    store_unlock(s);
    admin_wh_reply(resp, 200, o);
}

static void admin_wh_attempts(struct store *s, json_t *body,
                              struct hsrv_response *resp)
{
    static const char *const names[] = {
        "attempt_id", "notification_id", "started_at", "status",
        "duration_ms", "error", "uri"};
    static const struct admin_wh_list list = {
        "attempts",
        "SELECT t.id, t.notification_id, t.started_at, t.status,"
        " t.duration_ms, t.error, t.uri FROM attempts t"
        " JOIN notifications n ON n.id = t.notification_id"
        " WHERE (?1 = 0 OR t.notification_id = ?1)"
        " AND (?2 = 0 OR n.app_id = ?2)"
        " ORDER BY t.id DESC LIMIT ?3",
        names, 7};
    int64_t nid = admin_wh_int(body, "notification_id", 0), app = 0;
    int64_t args[3];

    if (nid < 0) {
        admin_wh_error(resp, 400, "notification_id must be a number");
        return;
    }
    if (nid == 0 && (app = admin_wh_app(s, body, NULL, resp)) == 0)
        return;
    args[0] = nid;
    args[1] = app;
    args[2] = admin_wh_limit(body, ADMIN_WH_LIST_MAX);
    admin_wh_list_reply(s, &list, args, 3, resp);
}

static void admin_wh_alerts(struct store *s, json_t *body,
                            struct hsrv_response *resp)
{
    static const char *const names[] = {
        "alert_id", "app_key", "created_at", "kind", "reason", "failures",
        "attempts", "uri"};
    static const struct admin_wh_list list = {
        "alerts",
        "SELECT l.id, a.app_key, l.created_at, l.kind, l.reason,"
        " l.failures, l.attempts, l.uri FROM alerts l"
        " JOIN apps a ON a.id = l.app_id WHERE (?1 = 0 OR l.app_id = ?1)"
        " ORDER BY l.id DESC LIMIT ?2",
        names, 8};
    int64_t args[2] = {0, ADMIN_WH_LIST_MAX};

    if (json_object_get(body, "app_key") != NULL &&
        (args[0] = admin_wh_app(s, body, NULL, resp)) == 0)
        return;
    admin_wh_list_reply(s, &list, args, 2, resp);
}

/* ---- redeliver ------------------------------------------------------- */

/* Sends a notification again, as a new attempt with a new retry window;
 * the body and signature are the stored ones. */
static void admin_wh_redeliver(struct store *s, json_t *body,
                               struct hsrv_response *resp)
{
    int64_t nid = admin_wh_int(body, "notification_id", -1);
    int64_t now = delivery_now_ms();
    sqlite3_stmt *st;
    int changed;

    if (nid <= 0) {
        admin_wh_error(resp, 400, "missing or bad field"
                                  " 'notification_id'");
        return;
    }
    store_lock(s);
    st = db_prepare(s->db,
        "UPDATE notifications SET state = 'pending', next_attempt_at = ?2,"
        " window_start = ?2 WHERE id = ?1 AND state != 'merged'");
    sqlite3_bind_int64(st, 1, nid);
    sqlite3_bind_int64(st, 2, now);
    changed = sqlite3_step(st) == SQLITE_DONE ? sqlite3_changes(s->db) : 0;
    sqlite3_finalize(st);
    store_unlock(s);
    if (changed != 1) {
        admin_wh_error(resp, 400, "unknown or merged notification_id");
        return;
    }
    notifier_wake(s->notifier);
    LOG_I("redeliver notification=%lld", (long long)nid);
    admin_wh_reply(resp, 200, json_pack("{s:I, s:s}", "notification_id",
                                        (json_int_t)nid, "state",
                                        "pending"));
}

static const struct {
    const char *name;
    admin_webhooks_handler handle;
} admin_wh_routes[] = {
    {"webhooks/enable", admin_wh_enable},
    {"webhooks/disable", admin_wh_disable},
    {"deliveries/list", admin_wh_deliveries},
    {"deliveries/redeliver", admin_wh_redeliver},
    {"attempts/list", admin_wh_attempts},
    {"alerts/list", admin_wh_alerts},
};

admin_webhooks_handler admin_webhooks_find(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(admin_wh_routes); i++)
        if (strcmp(admin_wh_routes[i].name, name) == 0)
            return admin_wh_routes[i].handle;
    return NULL;
}
