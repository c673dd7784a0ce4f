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

struct notifier *notifier_start(const struct notifier_config *cfg);
void notifier_stop(struct notifier *n);

/* Inside the caller's open transaction on db: marks every app that has a
 * verified webhook and a link to account_rowid with files.metadata.read.
 * Returns 0 or -1. */
int notifier_mark_pending_tx(sqlite3 *db, int64_t account_rowid);
void notifier_wake(struct notifier *n);

/* The verification request: GET uri?challenge=<random>, success only for
 * status 200 with the exact challenge as body within the timeout; no
 * retry.  Returns 0 when verified; otherwise -1 with a reason in err. */
int notifier_verify(struct notifier *n, const char *uri, char *err,
                    size_t err_size);

/* Counts for the console: delivered notifications and attempts. */
int notifier_stats(struct notifier *n, int64_t *delivered,
                   int64_t *attempts, int64_t *failed);

#endif
