/*
 * receiver: the app's webhook URI.
 *
 *   GET  PATH?challenge=X  verification: 200 with exactly X, as text/plain
 *                          and X-Content-Type-Options: nosniff; 400
 *                          without a challenge.
 *   POST PATH              notification: the X-Dropbox-Signature header
 *                          is checked against the raw body before
 *                          anything parses it (403 when missing, repeated,
 *                          malformed or wrong); a body that is not
 *                          {"list_folder": {"accounts": ["dbid:..", ..]}}
 *                          gets 400; otherwise every account is marked
 *                          pending, durably, and only then comes 200.
 *   other methods on PATH  405 with Allow: GET, POST
 *   other paths            404
 *   bodies over RECEIVER_MAX_BODY: 413 (from the HTTP server)
 *
 * The receiver never waits for the work itself: it marks and answers.
 */
#ifndef DBX_RECEIVER_H
#define DBX_RECEIVER_H

#include "app/state.h"
#include "app/worker.h"

#include <stdint.h>

/* Notifications carry only account ids, so 1 MiB holds ~20,000 of them;
 * anything larger is not a notification. */
#define RECEIVER_MAX_BODY (1024u * 1024u)
/* Longest webhook path accepted by --path. */
#define RECEIVER_MAX_PATH 256

struct receiver_config {
    const char *bind_addr;    /* "127.0.0.1", "::1", ... */
    uint16_t port;            /* 0 picks a free port */
    const char *path;         /* e.g. "/webhook"; copied */
    const char *secret;       /* the app secret; copied, never logged */
    struct state *st;         /* borrowed; outlives the receiver */
    struct worker_pool *pool; /* borrowed, woken on marks; may be NULL */
};

struct receiver;

/* Starts serving in background threads; NULL (logged) on failure. */
struct receiver *receiver_start(const struct receiver_config *cfg);
uint16_t receiver_port(const struct receiver *r);
/* Stops accepting, lets running requests finish, frees the receiver. */
void receiver_stop(struct receiver *r);

#endif
