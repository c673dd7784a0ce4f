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
 * Coalescing: a pair whose account already waits in a notification of
 * the app that is not in flight (not yet sent, or backing off) is
 * absorbed by it (its next attempt covers the change); an account whose
 * notification is in flight goes into a new notification.  A disabled
 * webhook keeps collecting pairs; re-enabling it (notifier_enable_tx)
 * folds them and every unfinished notification of the app into one.
 *
 * Tables owned by the notifier (created by notifier_schema_sql):
 *   webhook_pending(app_id, account_id)        pairs waiting for a POST
 *   notifications(id, app_id, body, signature, state, attempts,
 *                 next_attempt_at, created_at, delivered_at,
 *                 window_start)   state: pending|delivered|failed|merged
 *   notification_accounts(notification_id, account_id)
 *   attempts(id, notification_id, started_at, status, duration_ms, error,
 *            app_id, uri)
 *   webhook_resume(app_id)          re-enabled apps not yet folded
 *   webhook_health(app_id, counted_since)  health counts from then on
 *   alerts(id, app_id, created_at, kind, reason, failures, attempts, uri)
 * It reads apps, links and accounts (owned by the cloud store) and
 * writes apps.webhook_state/webhook_error when it disables a webhook.
 */
#ifndef DBX_NOTIFIER_H
#define DBX_NOTIFIER_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every duration is in ms; zero (or negative) takes the default. */
struct notifier_config {
    const char *db_path;        /* the cloud's database (own connection) */
    int64_t verify_timeout_ms;  /* 10000 */
    int64_t deliver_timeout_ms; /* 10000 */
    int64_t batch_ms;           /* gather window before sending; 10
                                 * (0 is allowed: no wait) */
    int64_t retry_base_ms;      /* first retry delay; 1000 */
    int64_t retry_cap_ms;       /* longest retry delay; 120000 */
    int64_t retry_window_ms;    /* give up after; 600000 */
    int64_t health_window_ms;   /* health's sliding window; 600000 */
    int batch_max_accounts;     /* accounts per notification; 100 */
    int inflight_per_webhook;   /* requests in flight per webhook; 8 */
    const char *alert_command;  /* run via /bin/sh on disable; NULL */
    bool refuse_private_uris;   /* refuse loopback/private addresses */
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
 * verified (or disabled: it keeps collecting) webhook and a link to
 * account_rowid with files.metadata.read.  Returns 0 or -1. */
int notifier_mark_pending_tx(sqlite3 *db, int64_t account_rowid);
void notifier_wake(struct notifier *n);

/* The verification request: GET uri?challenge=<random>, success only for
 * status 200 with the exact challenge as body within the timeout; no
 * retry, no redirect.  Returns 0 when verified; otherwise -1 with a
 * reason in err ("status 404", "body did not match the challenge",
 * "timed out after 10000 ms", "connection refused (...)", "refused: ...
 * is a loopback or private address" with refuse_private_uris).  Blocks; any
 * thread may call it; it does not touch the database (the caller stores
 * the outcome).  n may be NULL (default timeout). */
int notifier_verify(struct notifier *n, const char *uri, char *err,
                    size_t err_size);

/* The delay before retry number attempts (1 after the first failure):
 * base_ms * 2^(attempts-1), scaled by 1 + 0.2 * jitter, where jitter in
 * [-1, 1] is drawn at random by the notifier. */
int64_t notifier_backoff_ms(int64_t base_ms, int attempts, double jitter);

/* When to try again after attempts failed attempts (unix ms): now plus
 * the backoff (at most cap_ms when cap_ms > 0), no later than
 * created_at + window_ms; -1 once now has reached that deadline (the
 * notification has failed). */
int64_t notifier_next_attempt_at(int64_t created_at, int64_t now,
                                 int64_t base_ms, int64_t cap_ms,
                                 int64_t window_ms, int attempts,
                                 double jitter);

/* Inside the caller's open transaction on db (any connection): marks
 * app_id's webhook verified, restarts its health count at now, and asks
 * the notifier to fold every pending pair and unfinished notification of
 * the app into one notification (call notifier_wake after the commit).
 * Returns 0 or -1. */
int notifier_enable_tx(sqlite3 *db, int64_t app_id, int64_t now);

/* Does the URI name a loopback or private host ("localhost", 127/8,
 * ::1, 10/8, 172.16/12, 192.168/16, 169.254/16, fc00::/7, fe80::/10)?
 * Checks the literal host only; delivery also checks every address it
 * connects to.  Writes the reason into err when it does. */
bool notifier_uri_is_private(const char *uri, char *err, size_t err_size);

/* Counts for the console: delivered notifications, attempts, failed
 * notifications.  Any thread; 0 or -1. */
int notifier_stats(struct notifier *n, int64_t *delivered,
                   int64_t *attempts, int64_t *failed);

#endif
