/*
 * faults: the armed-fault table and its admin calls.
 *
 * A slot is free when its count is 0.  The table is small and a lookup
 * scans it whole; faults are a testing aid, armed a few at a time.
 */
#include "cloud/faults.h"

#include "cloud/admin.h"
#include "cloud/api.h"
#include "common/db.h"
#include "common/log.h"
#include "common/util.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct fault {
    int64_t account;
    char route[FAULTS_ROUTE_MAX]; /* "" for every route */
    enum fault_kind kind;
    unsigned remaining;           /* 0: the slot is free */
};

static pthread_mutex_t faults_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fault faults_table[FAULTS_MAX];

static const char *const fault_names[] = {
    [FAULT_NONE] = "none",
    [FAULT_429] = "429",
    [FAULT_500] = "500",
    [FAULT_EXPIRED] = "expired_access_token",
    [FAULT_INVALID] = "invalid_access_token",
    [FAULT_RESET] = "reset",
};

enum fault_kind faults_kind_parse(const char *text)
{
    for (size_t i = FAULT_429; text != NULL && i < ARRAY_LEN(fault_names);
         i++) {
        if (strcmp(fault_names[i], text) == 0)
            return (enum fault_kind)i;
    }
    return FAULT_NONE;
}

const char *faults_kind_name(enum fault_kind k)
{
    return (size_t)k < ARRAY_LEN(fault_names) ? fault_names[k] : "none";
}

bool faults_route_can_reset(const char *route)
{
    return strcmp(route, "files/list_folder/continue") == 0 ||
           strcmp(route, "files/list_folder/longpoll") == 0;
}

int faults_set(int64_t account, const char *route, enum fault_kind k,
               unsigned count)
{
    struct fault *slot = NULL;
    int rc = -1;

    if (route == NULL)
        route = "";
    pthread_mutex_lock(&faults_lock);
    for (size_t i = 0; i < FAULTS_MAX; i++) {
        struct fault *f = &faults_table[i];

        if (f->remaining > 0 && f->account == account &&
            strcmp(f->route, route) == 0) {
            slot = f;
            break;
        }
        if (f->remaining == 0 && slot == NULL)
            slot = f;
    }
    if (slot != NULL) {
        slot->account = account;
        snprintf(slot->route, sizeof slot->route, "%s", route);
        slot->kind = k;
        slot->remaining = count;
        rc = 0;
    }
    pthread_mutex_unlock(&faults_lock);
    return rc;
}

unsigned faults_clear(int64_t account)
{
    unsigned n = 0;

    pthread_mutex_lock(&faults_lock);
    for (size_t i = 0; i < FAULTS_MAX; i++) {
        if (faults_table[i].remaining > 0 &&
            faults_table[i].account == account) {
            faults_table[i].remaining = 0;
            n++;
        }
    }
    pthread_mutex_unlock(&faults_lock);
    return n;
}

/* A fault for one route wins over one for every route. */
static bool fault_applies(const struct fault *f, int64_t account,
                          const char *route)
{
    if (f->remaining == 0 || f->account != account)
        return false;
    if (f->route[0] != '\0' && strcmp(f->route, route) != 0)
        return false;
    return f->kind != FAULT_RESET || faults_route_can_reset(route);
}

enum fault_kind faults_take(int64_t account, const char *route)
{
    struct fault *hit = NULL;
    enum fault_kind k = FAULT_NONE;

    pthread_mutex_lock(&faults_lock);
    for (size_t i = 0; i < FAULTS_MAX; i++) {
        struct fault *f = &faults_table[i];

        if (fault_applies(f, account, route) &&
            (hit == NULL || hit->route[0] == '\0'))
            hit = f;
    }
    if (hit != NULL) {
        k = hit->kind;
        hit->remaining--;
    }
    pthread_mutex_unlock(&faults_lock);
    return k;
}

/* accounts.id of a "dbid:..." (takes the lock); 0 when unknown. */
static int64_t faults_account_row(struct store *s, const char *account_id)
{
    sqlite3_stmt *st;
    int64_t id = 0;

    store_lock(s);
    st = db_prepare(s->db, "SELECT id FROM accounts WHERE account_id = ?1");
    db_bind_text(st, 1, account_id);
    if (sqlite3_step(st) == SQLITE_ROW)
        id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    store_unlock(s);
    return id;
}

/* Checks faults/set's body; answers 400 and returns -1 when wrong. */
static int faults_check_set(const char *route, enum fault_kind k,
                            json_int_t count, struct hsrv_response *resp)
{
    const char *msg = NULL;

    if (k == FAULT_NONE)
        msg = "fault must be one of 429, 500, expired_access_token, "
              "invalid_access_token, reset";
    else if (count < 1 || count > FAULTS_COUNT_MAX)
        msg = "count must be between 1 and 1000000";
    else if (route != NULL && !api_route_known(route))
        msg = "unknown route";
    else if (k == FAULT_RESET && route != NULL &&
             !faults_route_can_reset(route))
        msg = "reset happens only on files/list_folder/continue and "
              "files/list_folder/longpoll";
    if (msg == NULL)
        return 0;
    admin_error(resp, 400, msg);
    return -1;
}

void faults_admin_set(struct store *s, json_t *body,
                      struct hsrv_response *resp)
{
    const char *account_id = json_string_value(json_object_get(body,
                                                               "account_id"));
    const char *kind = json_string_value(json_object_get(body, "fault"));
    const char *route = json_string_value(json_object_get(body, "route"));
    json_t *jcount = json_object_get(body, "count");
    json_int_t count = jcount ? json_integer_value(jcount) : 1;
    enum fault_kind k = faults_kind_parse(kind);
    int64_t account;

    if (jcount != NULL && !json_is_integer(jcount))
        count = 0;
    if (route != NULL && route[0] == '\0')
        route = NULL;
    if (faults_check_set(route, k, count, resp) < 0)
        return;
    account = account_id ? faults_account_row(s, account_id) : 0;
    if (account == 0) {
        admin_error(resp, 400, "unknown account_id");
        return;
    }
    if (faults_set(account, route, k, (unsigned)count) < 0) {
        admin_error(resp, 400, "too many faults armed");
        return;
    }
    LOG_I("fault armed account=%s fault=%s count=%lld route=%s", account_id,
          faults_kind_name(k), (long long)count, route ? route : "*");
    admin_reply(resp, 200,
                json_pack("{s:s, s:s, s:I}", "account_id", account_id,
                          "fault", faults_kind_name(k), "remaining", count));
}

void faults_admin_clear(struct store *s, json_t *body,
                        struct hsrv_response *resp)
{
    const char *account_id = json_string_value(json_object_get(body,
                                                               "account_id"));
    int64_t account = account_id ? faults_account_row(s, account_id) : 0;
    unsigned n;

    if (account == 0) {
        admin_error(resp, 400, "unknown account_id");
        return;
    }
    n = faults_clear(account);
    LOG_I("faults cleared account=%s cleared=%u", account_id, n);
    admin_reply(resp, 200, json_pack("{s:I}", "cleared", (json_int_t)n));
}
