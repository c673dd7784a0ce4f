/*
 * state: the front of the state store.
 *
 * Checks arguments once, for every back end, and dispatches to the back
 * end's operations (state_backend.h).  A bad argument is a caller's bug
 * or hostile input that slipped through; it is logged and answered with
 * STATE_ERR rather than reaching the store.
 */
#include "app/state.h"

#include "app/state_backend.h"
#include "common/log.h"
#include "common/notification.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct state {
    const struct state_ops *ops;
    void *impl;
};

const char *const state_counter_names[] = {
    "notifications", "runs",         "pages",     "conversions",
    "skipped_identical", "failures", "commands", "skipped_handled",
    "html_deleted",  "refreshes",    "unknown_accounts",
};
const size_t state_counter_count = ARRAY_LEN(state_counter_names);

/* Longest counter name; names are chosen by our code, not the network. */
#define STATE_COUNTER_NAME_MAX 64

int64_t state_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool state_account_valid(const char *account)
{
    return notification_account_valid(account);
}

static bool check_account(const char *op, const char *account)
{
    if (state_account_valid(account))
        return true;
    LOG_W("state rejected op=%s reason=bad_account", op);
    return false;
}

static bool check_counter(const char *name)
{
    if (name != NULL && name[0] != '\0' &&
        strlen(name) <= STATE_COUNTER_NAME_MAX)
        return true;
    LOG_W("state rejected op=counter reason=bad_name");
    return false;
}

struct state *state_new(const struct state_ops *ops, void *impl)
{
    struct state *st = xcalloc(1, sizeof *st);

    st->ops = ops;
    st->impl = impl;
    return st;
}

void state_close(struct state *st)
{
    if (st == NULL)
        return;
    st->ops->close(st->impl);
    free(st);
}

enum state_status state_token_set(struct state *st, const char *account,
                                  const char *access, const char *refresh,
                                  int64_t expires_s)
{
    if (!check_account("token_set", account) || access == NULL ||
        access[0] == '\0')
        return STATE_ERR;
    return st->ops->token_set(st->impl, account, access, refresh, expires_s);
}

enum state_status state_token_get(struct state *st, const char *account,
                                  struct state_token *tok)
{
    memset(tok, 0, sizeof *tok);
    if (!check_account("token_get", account))
        return STATE_ERR;
    return st->ops->token_get(st->impl, account, tok);
}

static void secret_wipe(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void state_token_free(struct state_token *tok)
{
    if (tok == NULL)
        return;
    secret_wipe(tok->access);
    secret_wipe(tok->refresh);
    memset(tok, 0, sizeof *tok);
}

enum state_status state_relink_set(struct state *st, const char *account)
{
    if (!check_account("relink_set", account))
        return STATE_ERR;
    return st->ops->relink_set(st->impl, account);
}

enum state_status state_account_known(struct state *st, const char *account)
{
    if (!check_account("account_known", account))
        return STATE_ERR;
    return st->ops->account_known(st->impl, account);
}

/* Paths and revs of handled entries come from the file API. */
#define STATE_HANDLED_FIELD_MAX 4096

static bool check_handled(const char *path, const char *rev)
{
    if (path != NULL && rev != NULL && path[0] != '\0' && rev[0] != '\0' &&
        strlen(path) <= STATE_HANDLED_FIELD_MAX &&
        strlen(rev) <= STATE_HANDLED_FIELD_MAX)
        return true;
    LOG_W("state rejected op=handled reason=bad_entry");
    return false;
}

enum state_status state_handled_check(struct state *st, const char *account,
                                      const char *path, const char *rev)
{
    if (!check_account("handled_check", account) || !check_handled(path, rev))
        return STATE_ERR;
    return st->ops->handled_check(st->impl, account, path, rev);
}

enum state_status state_handled_put(struct state *st, const char *account,
                                    const char *path, const char *rev)
{
    if (!check_account("handled_put", account) || !check_handled(path, rev))
        return STATE_ERR;
    return st->ops->handled_put(st->impl, account, path, rev);
}

enum state_status state_mark_pending(struct state *st,
                                     const char *const *accounts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!check_account("mark_pending", accounts[i]))
            return STATE_ERR;
    }
    if (n == 0)
        return STATE_OK;
    return st->ops->mark_pending(st->impl, accounts, n);
}

/* The accounts and counts of a mark are all valid. */
static bool check_marks(const char *op, const char *const *accounts,
                        size_t n, const struct state_count *counts,
                        size_t n_counts)
{
    for (size_t i = 0; i < n; i++) {
        if (!check_account(op, accounts[i]))
            return false;
    }
    for (size_t i = 0; i < n_counts; i++) {
        if (!check_counter(counts[i].name))
            return false;
    }
    return true;
}

enum state_status state_mark_pending_async(struct state *st,
                                           const char *const *accounts,
                                           size_t n,
                                           const struct state_count *counts,
                                           size_t n_counts, state_mark_cb done,
                                           void *arg)
{
    if (!check_marks("mark_pending", accounts, n, counts, n_counts))
        return STATE_ERR;
    if (done == NULL)
        return STATE_ERR;
    return st->ops->mark_pending_async(st->impl, accounts, n, counts,
                                       n_counts, done, arg);
}

enum state_status state_mark_covered(struct state *st,
                                     const char *const *accounts, size_t n,
                                     const struct state_count *counts,
                                     size_t n_counts)
{
    if (!check_marks("mark_covered", accounts, n, counts, n_counts))
        return STATE_ERR;
    return st->ops->mark_covered(st->impl, accounts, n, counts, n_counts);
}

enum state_status state_claim(struct state *st, const char *owner,
                              int64_t lease_ms, char **account, uint64_t *fence,
                              int64_t *version)
{
    *account = NULL;
    *fence = 0;
    *version = 0;
    if (owner == NULL || lease_ms <= 0)
        return STATE_ERR;
    return st->ops->claim(st->impl, owner, lease_ms, account, fence, version);
}

enum state_status state_renew(struct state *st, const char *account,
                              uint64_t fence, int64_t lease_ms)
{
    if (!check_account("renew", account) || lease_ms <= 0)
        return STATE_ERR;
    return st->ops->renew(st->impl, account, fence, lease_ms);
}

enum state_status state_release(struct state *st, const char *account,
                                uint64_t fence, int64_t version)
{
    if (!check_account("release", account))
        return STATE_ERR;
    return st->ops->release(st->impl, account, fence, version);
}

enum state_status state_cursor_get(struct state *st, const char *account,
                                   char **cursor)
{
    *cursor = NULL;
    if (!check_account("cursor_get", account))
        return STATE_ERR;
    return st->ops->cursor_get(st->impl, account, cursor);
}

enum state_status state_cursor_set(struct state *st, const char *account,
                                   const char *cursor, uint64_t fence)
{
    if (!check_account("cursor_set", account) || cursor == NULL)
        return STATE_ERR;
    return st->ops->cursor_set(st->impl, account, cursor, fence);
}

enum state_status state_counter_add(struct state *st, const char *name,
                                    int64_t delta)
{
    if (!check_counter(name))
        return STATE_ERR;
    return st->ops->counter_add(st->impl, name, delta);
}

enum state_status state_counter_get(struct state *st, const char *name,
                                    int64_t *value)
{
    *value = 0;
    if (!check_counter(name))
        return STATE_ERR;
    return st->ops->counter_get(st->impl, name, value);
}

enum state_status state_failure_set(struct state *st, const char *account,
                                    const char *what, int64_t *streak)
{
    int64_t scratch;

    if (streak == NULL)
        streak = &scratch;
    *streak = 0;
    if (!check_account("failure_set", account))
        return STATE_ERR;
    return st->ops->failure_set(st->impl, account, what, streak);
}

enum state_status state_failure_get(struct state *st, const char *account,
                                    char **what)
{
    *what = NULL;
    if (!check_account("failure_get", account))
        return STATE_ERR;
    return st->ops->failure_get(st->impl, account, what);
}

enum state_status state_status_json(struct state *st, char **json)
{
    *json = NULL;
    return st->ops->status_json(st->impl, json);
}
