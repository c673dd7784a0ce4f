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
 *                          Only accounts the app holds a token for are
 *                          marked; others are logged and ignored (still
 *                          200: the sender can do nothing about them).
 *   GET  /status           the state as JSON (no token, no cursor)
 *   GET  /login, /oauth/callback   linking (app_link.h)
 *   other methods          405 with Allow
 *   other paths            404
 *   bodies over RECEIVER_MAX_BODY: 413, header blocks over
 *   RECEIVER_MAX_HEADER: 431 (both from the HTTP server); more than
 *   soft_conns (--max-conns) requests at once, or a store that cannot commit:
 *   503 with Retry-After.
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
/* Requests served at once before 503: below the HTTP server's hard
 * connection limit (RECEIVER_MAX_CONNS, where it refuses connections
 * outright), so that a flood is told to come back rather than cut off. */
#define RECEIVER_MAX_CONNS  1024u
#define RECEIVER_SOFT_CONNS 960u
/* Largest soft limit --max-conns accepts; the hard limit is always the
 * soft one plus the margin below. */
#define RECEIVER_SOFT_CONNS_MAX 60000u
#define RECEIVER_CONNS_MARGIN (RECEIVER_MAX_CONNS - RECEIVER_SOFT_CONNS)
/* Longest webhook path accepted by --path. */
#define RECEIVER_MAX_PATH 256

struct receiver_config {
    const char *bind_addr;    /* "127.0.0.1", "::1", ... */
    uint16_t port;            /* 0 picks a free port */
    const char *path;         /* e.g. "/webhook"; copied */
    const char *secret;       /* the app secret; copied, never logged */
    struct state *st;         /* borrowed; outlives the receiver */
    struct worker_pool *pool; /* borrowed, woken on marks; may be NULL */
    /* Linking (NULL app_key: off); worker_cfg gives the API settings. */
    const char *app_key;
    const char *web_url;
    const char *redirect_uri; /* NULL: http://ADDR:PORT/oauth/callback */
    const struct worker_config *worker_cfg;
    /* Requests answered at once before 503 (0: RECEIVER_SOFT_CONNS). */
    unsigned soft_conns;
};

struct receiver;

/* Starts serving in background threads; NULL (logged) on failure. */
struct receiver *receiver_start(const struct receiver_config *cfg);
uint16_t receiver_port(const struct receiver *r);
/* Stops accepting, lets running requests finish, frees the receiver. */
void receiver_stop(struct receiver *r);

#endif
