/*
 * state: everything the app keeps between runs, behind one interface.
 *
 * Tokens, cursors, the pending set, leases, handled-entry records and
 * counters.  SQLite is the
 * back end today (state_open_sqlite); a Redis back end will implement the
 * same operations so that the receiver and the workers never change.
 *
 * The pending set and leases work together like this:
 *  - state_mark_pending adds an account to the set, or bumps its version
 *    if it is already there.  It returns only once the mark is on disk.
 *  - state_claim picks a pending account that no live lease holds, takes
 *    a lease on it (a new, larger fence number) and reports the version
 *    of the pending mark it saw.  The mark stays in the set.
 *  - state_release drops the lease, and drops the pending mark only if its
 *    version is still the one claimed.  A mark that arrived during the run
 *    bumped the version, so the account stays pending: exactly one more
 *    run follows, however many notifications came meanwhile.
 *  - Versions start at 1, so releasing with version -1 never drops the
 *    mark: a worker stopping mid-run uses it to leave the account pending.
 *  - A worker that dies never releases: its lease expires and the account,
 *    still pending, is claimed again, resuming from the saved cursor.
 *  - Writes made under a lease (cursor, renew, release) carry the fence
 *    and fail with STATE_LOST when a newer lease exists, so a stale worker
 *    can never overwrite a newer cursor.
 *
 * Every function returns STATE_OK, STATE_NONE (nothing found) or
 * STATE_LOST where documented, and STATE_ERR (logged) on a storage error.
 * The handle may be used from several threads at once.
 */
#ifndef DBX_STATE_H
#define DBX_STATE_H

#include "common/notification.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest account id accepted anywhere ("dbid:" + id characters). */
#define STATE_ACCOUNT_MAX NOTIFICATION_ACCOUNT_MAX

enum state_status {
    STATE_OK = 0,
    STATE_NONE = 1,
    STATE_LOST = 2,
    STATE_ERR = -1,
};

struct state;

/* True when account is a valid id (notification_account_valid: "dbid:"
 * and 1 or more of [A-Za-z0-9_-], STATE_ACCOUNT_MAX characters at most).
 * Every function below rejects other ids with STATE_ERR. */
bool state_account_valid(const char *account);

/* Opens (creating) the SQLite store at dir/app.db; NULL on failure. */
struct state *state_open_sqlite(const char *dir);
void state_close(struct state *st);

/* The tokens of an account.  access and refresh are the caller's
 * (state_token_free wipes and frees them). */
struct state_token {
    char *access;       /* short-lived bearer token */
    char *refresh;      /* long-lived refresh token, or NULL */
    int64_t expires_s;  /* unix time the access token expires; 0 unknown */
    bool needs_relink;  /* the refresh token was refused (invalid_grant) */
};

/* Stores an access token; refresh NULL keeps the stored refresh token
 * (a refresh answer carries none).  Clears needs_relink. */
enum state_status state_token_set(struct state *st, const char *account,
                                  const char *access, const char *refresh,
                                  int64_t expires_s);
/* STATE_NONE when the account has no access token. */
enum state_status state_token_get(struct state *st, const char *account,
                                  struct state_token *tok);
void state_token_free(struct state_token *tok);
/* Marks the account as needing re-linking (its refresh token is dead);
 * the cursor is kept.  The next state_token_set clears it. */
enum state_status state_relink_set(struct state *st, const char *account);
/* STATE_OK when the app holds a token for the account (it is linked),
 * STATE_NONE otherwise.  The receiver marks only known accounts. */
enum state_status state_account_known(struct state *st, const char *account);

/* Handled-entry records: (account, path_lower, rev) done by a handler
 * whose work must happen once.  check: STATE_OK when recorded,
 * STATE_NONE when not.  put is durable before it returns. */
enum state_status state_handled_check(struct state *st, const char *account,
                                      const char *path, const char *rev);
enum state_status state_handled_put(struct state *st, const char *account,
                                    const char *path, const char *rev);

/* Durable before return; several threads calling at once share one
 * commit (group commit). */
enum state_status state_mark_pending(struct state *st,
                                     const char *const *accounts, size_t n);

/* A counter delta committed together with marks (state_counter_add's
 * names). */
struct state_count {
    const char *name;
    int64_t delta;
};
typedef void (*state_mark_cb)(void *arg, enum state_status rc);
/* Like state_mark_pending without waiting: the ids and counts are copied
 * into the batch being gathered and STATE_OK returns at once; later, on
 * another thread, done(arg, rc) runs once the commit holding them is on
 * disk (STATE_OK) or has failed (STATE_ERR).  done is called exactly
 * once when this returns STATE_OK, never when it returns STATE_ERR (a
 * bad argument).  done must not block; it may call state functions
 * other than the mark and counter ones. */
enum state_status state_mark_pending_async(struct state *st,
                                           const char *const *accounts,
                                           size_t n,
                                           const struct state_count *counts,
                                           size_t n_counts, state_mark_cb done,
                                           void *arg);

/* How long counts given to state_mark_covered may wait before a commit
 * writes them (they ride the next commit, or one of their own). */
#define STATE_COUNT_DEFER_MS 10

/* The cheap path for a notification whose accounts are all pending
 * already: when each one is pending on disk and no worker holds its
 * lease, the run that will take it has not started yet, so it will see
 * every change made until now and a new mark would add nothing.  Then
 * STATE_OK returns at once, without waiting for a commit, and the counts
 * are written by a later commit (within STATE_COUNT_DEFER_MS; a crash
 * meanwhile loses them, which is acceptable for statistics only).
 * STATE_NONE when some account needs a real mark: call
 * state_mark_pending_async.  n may be 0 (then only the counts). */
enum state_status state_mark_covered(struct state *st,
                                     const char *const *accounts, size_t n,
                                     const struct state_count *counts,
                                     size_t n_counts);

/* STATE_NONE when no pending account is free. */
enum state_status state_claim(struct state *st, const char *owner,
                              int64_t lease_ms, char **account,
                              uint64_t *fence, int64_t *version);
enum state_status state_renew(struct state *st, const char *account,
                              uint64_t fence, int64_t lease_ms);
enum state_status state_release(struct state *st, const char *account,
                                uint64_t fence, int64_t version);

/* STATE_NONE when the account has no cursor yet. */
enum state_status state_cursor_get(struct state *st, const char *account,
                                   char **cursor);
enum state_status state_cursor_set(struct state *st, const char *account,
                                   const char *cursor, uint64_t fence);

/* Named counters for status and the demo's summary (an add is durable
 * on return and shares the group commit with marks):
 * "notifications", "runs", "pages", "conversions", "skipped_identical",
 * "failures", "commands", "skipped_handled", "html_deleted", "refreshes",
 * "unknown_accounts". */
enum state_status state_counter_add(struct state *st, const char *name,
                                    int64_t delta);
enum state_status state_counter_get(struct state *st, const char *name,
                                    int64_t *value);

/* Remembers the last failure of an account (shown by status) and counts
 * failures in a row; *streak (may be NULL) gets the new count.  what=NULL
 * clears the failure and the count. */
enum state_status state_failure_set(struct state *st, const char *account,
                                    const char *what, int64_t *streak);

/* The account's last failure as state_failure_set stored it (*what is
 * the caller's); STATE_NONE when there is none. */
enum state_status state_failure_get(struct state *st, const char *account,
                                    char **what);

/* Writes the whole state as one JSON object to *json (caller frees):
 * {"accounts": [{"account": .., "has_token": .., "cursor": bool,
 *   "pending": bool, "leased": bool, "last_sync": "..", "failure": ..,
 *   "failures_in_row": N, "needs_relink": bool}],
 *  "pending": N, "counters": {"notifications": N, ...}}
 * No token, secret or cursor ever appears in it. */
enum state_status state_status_json(struct state *st, char **json);

#endif
