/*
 * notifier: tells apps which of their linked accounts changed.
 *
 * The file API marks (app, account) pairs pending inside the same
 * transaction that writes the journal (notifier_mark_pending_tx), so a
 * committed change can never miss its notification.  After the commit it
 * calls notifier_wake.  The notifier thread then gathers pending pairs by
 * app, builds one notification per app (body in the exact spacing of
 * Python's json.dumps, signed with the app secret), records it, and
 * delivers it with libcurl's multi interface, retrying failures.
 *
 * Tables owned by the notifier (created by notifier_schema_sql):
 *   webhook_pending(app_id, account_id)        pairs waiting for a POST
 *   notifications(id, app_id, body, signature, state, attempts,
 *                 next_attempt_at, created_at, delivered_at)
 *   attempts(id, notification_id, started_at, status, duration_ms, error)
 * It reads apps, links and accounts (owned by the cloud store).
 */
#ifndef DBX_NOTIFIER_H
#define DBX_NOTIFIER_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

struct notifier_config {
    const char *db_path;        /* the cloud's database (own connection) */
    int64_t verify_timeout_ms;  /* 10000 */
    int64_t deliver_timeout_ms; /* 10000 */
    int64_t batch_ms;           /* gather window before sending; 10 */
    int64_t retry_base_ms;      /* first retry delay; 1000 */
    int64_t retry_window_ms;    /* give up after; 600000 */
};

extern const char notifier_schema_sql[];

/* Opens its own connections to cfg->db_path (applying the shared and the
 * notifier schema) and starts the thread, which first resumes what a
 * previous run left: pending pairs and 'pending' notifications.  cfg is
 * copied; zero timeouts take the defaults above.  NULL on failure. */
struct notifier *notifier_start(const struct notifier_config *cfg);
/* Stops the thread (deliveries in flight are abandoned, unrecorded, and
 * resent by the next run) and frees n.  NULL is ignored. */
void notifier_stop(struct notifier *n);

/* Inside the caller's open transaction on db: marks every app that has a
 * verified webhook and a link to account_rowid with files.metadata.read.
 * Returns 0 or -1. */
int notifier_mark_pending_tx(sqlite3 *db, int64_t account_rowid);
void notifier_wake(struct notifier *n);

/* The verification request: GET uri?challenge=<random>, success only for
 * status 200 with the exact challenge as body within the timeout; no
 * retry, no redirect.  Returns 0 when verified; otherwise -1 with a
 * reason in err ("status 404", "body did not match the challenge",
 * "timed out after 10000 ms", "connection refused (...)").  Blocks; any
 * thread may call it; it does not touch the database (the caller stores
 * the outcome).  n may be NULL (default timeout). */
int notifier_verify(struct notifier *n, const char *uri, char *err,
                    size_t err_size);

/* The notification body for n accounts, in the exact spacing of
 * Python's json.dumps (accounts[i] goes with uids[i]):
 *   {"list_folder": {"accounts": ["dbid:A"]}, "delta": {"users": [1]}}
 * Returns a new string (caller frees). */
char *notifier_body(const char *const *accounts, const int64_t *uids,
                    size_t n);

/* The delay before retry number attempts (1 after the first failure):
 * base_ms * 2^(attempts-1), scaled by 1 + 0.2 * jitter, where jitter in
 * [-1, 1] is drawn at random by the notifier. */
int64_t notifier_backoff_ms(int64_t base_ms, int attempts, double jitter);

/* When to try again after attempts failed attempts (unix ms), capped at
 * created_at + window_ms; -1 once now has reached that deadline (the
 * notification has failed). */
int64_t notifier_next_attempt_at(int64_t created_at, int64_t now,
                                 int64_t base_ms, int64_t window_ms,
                                 int attempts, double jitter);

/* Counts for the console: delivered notifications, attempts, failed
 * notifications.  Any thread; 0 or -1. */
int notifier_stats(struct notifier *n, int64_t *delivered,
                   int64_t *attempts, int64_t *failed);

#endif
