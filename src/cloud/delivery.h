/*
 * delivery: the notifier's attempts to send notifications, on libcurl.
 *
 * A delivery is one attempt to POST a stored notification to its app's
 * webhook.  The delivery queue, driven by the notifier thread alone,
 * starts every notification that is due (up to a named maximum at once,
 * all on one curl multi handle), records each finished attempt in the
 * attempts table, and moves the notification on: 'delivered' on status
 * 200, else a retry time from notifier_next_attempt_at, or 'failed' once
 * the retry window has passed.  The body and signature are sent exactly
 * as stored; the webhook URI is read from apps at send time.
 *
 * The verification GET (delivery_verify) is a blocking call on its own
 * easy handle and may run on any thread.
 *
 * Wire rules for both requests: redirects are never followed, no proxy
 * is used, only http and https are spoken, and the notification POST
 * carries exactly Content-Type, User-Agent and X-Dropbox-Signature (no
 * Expect, no Accept).
 */
#ifndef DBX_DELIVERY_H
#define DBX_DELIVERY_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cloud/notifier.h"

struct delivery_queue;
struct sockaddr;

/* Room for one disabled webhook's details, for the alert command. */
#define DELIVERY_ALERT_TEXT_MAX 512
/* Alerts a queue keeps until delivery_take_alerts. */
#define DELIVERY_MAX_ALERTS 16

/* A webhook the queue has just disabled (already committed). */
struct delivery_alert {
    char app_key[64];
    char uri[DELIVERY_ALERT_TEXT_MAX];
    char reason[DELIVERY_ALERT_TEXT_MAX];
    int64_t failures;
    int64_t attempts;
};

/* Once per process, before any other delivery call; thread-safe. */
void delivery_global_init(void);

/* Wall-clock unix milliseconds, the unit of the notifier's tables. */
int64_t delivery_now_ms(void);

/* A queue writing through db (the notifier thread's connection) with the
 * timeouts and retry schedule of cfg; both must outlive the queue. */
struct delivery_queue *delivery_queue_new(sqlite3 *db,
                                          const struct notifier_config *cfg);
/* Abandons deliveries in flight without recording them (their
 * notifications stay 'pending' and are sent again by the next run). */
void delivery_queue_free(struct delivery_queue *q);

/* Records every finished attempt (one commit), then starts the due
 * notifications while slots are free.  Returns the unix ms at which the
 * next waiting notification falls due, or -1 when none waits. */
int64_t delivery_queue_run(struct delivery_queue *q);

/* Is notification id being delivered right now? */
bool delivery_queue_inflight(const struct delivery_queue *q, int64_t id);

/* Moves up to max alerts raised since the last call into out; returns
 * how many. */
size_t delivery_take_alerts(struct delivery_queue *q,
                            struct delivery_alert *out, size_t max);

/* Sleeps until network activity, a wakeup, or timeout_ms. */
void delivery_queue_wait(struct delivery_queue *q, int64_t timeout_ms);
/* Ends a delivery_queue_wait early; any thread may call it. */
void delivery_queue_wakeup(struct delivery_queue *q);

/* The verification GET; see notifier_verify.  With refuse_private, no
 * connection is made to a loopback or private address. */
int delivery_verify(const char *uri, int64_t timeout_ms,
                    bool refuse_private, char *err, size_t err_size);

/* Is addr (AF_INET or AF_INET6) loopback, private, link-local or
 * unique-local (the ranges of notifier_uri_is_private)? */
bool delivery_addr_is_private(const struct sockaddr *addr);

#endif
