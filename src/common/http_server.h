/*
 * http_server (hsrv): a small wrapper around libmicrohttpd.
 *
 * The wrapper reads the whole request body (up to a named maximum) and
 * then calls one handler with a complete request; the handler fills a
 * response, or promises one with hsrv_later and gives it later, from any
 * thread, with hsrv_answer.
 *
 * Two threading modes (hsrv_config.async):
 *   blocking  each connection has its own thread, so a handler may block
 *             without stalling other connections (the cloud's handlers
 *             do).  hsrv_later works too: the thread waits for the answer.
 *   async     a few polling threads (one per CPU) serve every connection,
 *             so a handler must not block: one that waits for something
 *             (the receiver for its group commit) calls hsrv_later and
 *             returns; the connection is parked meanwhile, costing no
 *             thread.
 *
 * Limits answered by the wrapper itself, before the handler runs:
 *   body larger than max_body        -> 413
 *   header block larger than max_header (MHD's own limit) -> 431
 *   more than max_conns connections  -> refused by MHD
 */
#ifndef DBX_HTTP_SERVER_H
#define DBX_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hsrv;
struct hsrv_request;

struct hsrv_response {
    int status;
    char *body; /* owned by the response; freed by the wrapper */
    size_t body_len;
    char *content_type; /* owned; NULL means no Content-Type header */
    /* Extra headers, name/value pairs, owned. */
    char **header_names;
    char **header_values;
    size_t header_count;
};

typedef void (*hsrv_handler)(void *ctx, const struct hsrv_request *req,
                             struct hsrv_response *resp);

struct hsrv_config {
    const char *bind_addr; /* "127.0.0.1", "::1", "0.0.0.0" */
    uint16_t port;         /* 0 picks a free port: see hsrv_port */
    size_t max_body;       /* bytes; larger bodies get 413 */
    size_t max_header;     /* bytes of the whole header block */
    size_t header_room;    /* per-connection memory beyond max_header,
                              for bookkeeping and the response headers;
                              0: 16 KiB */
    unsigned max_conns;    /* simultaneous connections */
    unsigned conn_timeout_s;
    const char *tls_cert_pem; /* both set: HTTPS; both NULL: HTTP */
    const char *tls_key_pem;
    hsrv_handler handler;
    void *ctx;
    bool async;       /* see the modes above; false: blocking */
    unsigned threads; /* async polling threads; 0: one per CPU */
};

/* A promise to answer one request later. */
struct hsrv_later;

/* Called by a handler that will answer later: from then on the handler's
 * resp is ignored (leave it empty), and exactly one hsrv_answer must
 * follow, from any thread, even if the work fails.  The request (its
 * accessors) stays valid until that call.  NULL if already called for
 * this request. */
struct hsrv_later *hsrv_later(const struct hsrv_request *req);
/* Sends resp (whose contents it takes, leaving resp empty) as the answer
 * promised by later; thread-safe; later is invalid afterwards. */
void hsrv_answer(struct hsrv_later *later, struct hsrv_response *resp);

/* Starts serving in background threads.  Returns NULL (and logs why) when
 * the address cannot be bound or TLS cannot be set up. */
struct hsrv *hsrv_start(const struct hsrv_config *cfg);
uint16_t hsrv_port(const struct hsrv *s);
/* Waits for every answer still promised (hsrv_later), then stops
 * accepting, waits for running handlers and frees everything. */
void hsrv_stop(struct hsrv *s);

/* Request accessors.  Strings belong to the request and live until the
 * handler returns. */
const char *hsrv_method(const struct hsrv_request *req);
const char *hsrv_path(const struct hsrv_request *req); /* no query */
const char *hsrv_body(const struct hsrv_request *req, size_t *len);
/* First value of a header (case-insensitive name), or NULL. */
const char *hsrv_header(const struct hsrv_request *req, const char *name);
/* How many times the header occurs. */
unsigned hsrv_header_count(const struct hsrv_request *req, const char *name);
/* A query argument, percent-decoded, or NULL. */
const char *hsrv_query(const struct hsrv_request *req, const char *name);
/* The peer address as text, e.g. "127.0.0.1".  After hsrv_later, only
 * the code that will answer may call it. */
const char *hsrv_peer(const struct hsrv_request *req);

/* Response helpers.  Each copies its arguments. */
void hsrv_reply(struct hsrv_response *resp, int status,
                const char *content_type, const void *body, size_t len);
/* A NUL-terminated body. */
void hsrv_reply_str(struct hsrv_response *resp, int status,
                    const char *content_type, const char *body);
void hsrv_add_header(struct hsrv_response *resp, const char *name,
                     const char *value);

#endif
