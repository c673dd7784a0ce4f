/*
 * http_server: libmicrohttpd in thread-per-connection mode.
 *
 * MHD calls the access callback several times per request: once when the
 * headers are in (the only moment, with the last one, at which a response
 * may be queued), once per piece of body, and once more when the request
 * is complete.  The per-request state (struct hsrv_request) lives in
 * MHD's connection closure from the first call until MHD reports the
 * request finished.
 *
 * Two modes (hsrv_config.async).  Blocking: one thread per connection,
 * so a handler may block.  Async: a pool of polling threads (one per
 * CPU) serves every connection with epoll, so a handler must not block;
 * one that needs to wait calls hsrv_later, which suspends the connection
 * (MHD stops polling it), and whoever finishes the work calls
 * hsrv_answer, which stores the response and resumes the connection.
 * MHD then calls the access callback again, which queues the stored
 * response.  Suspending inside the handler, before the work is handed
 * on, means the answer can never arrive before the suspension.  In the
 * blocking mode hsrv_later works too: the connection's thread waits for
 * hsrv_answer.
 *
 * Limits are checked early: an announced Content-Length above max_body or
 * a header block above max_header is answered on the first call, so the
 * body is never read (MHD then closes the connection).  A chunked body
 * that grows past max_body is discarded as it arrives and answered with
 * 413 once complete.
 */
#include "common/http_server.h"

#include "common/log.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Used when the configuration leaves a limit at 0. */
#define HSRV_DEFAULT_MAX_HEADER (16u * 1024)
#define HSRV_DEFAULT_MAX_BODY   (1u * 1024 * 1024)
#define HSRV_DEFAULT_MAX_CONNS  64u
/* MHD's per-connection pool holds the request line, the header block,
 * its own bookkeeping and the response headers; this is the default
 * room beyond max_header it gets for the rest (hsrv_config.header_room). */
#define HSRV_DEFAULT_HEADER_ROOM (16u * 1024)
/* Longest line MHD's error log may produce that we keep. */
#define HSRV_LOG_LINE_MAX 512
/* Most polling threads the async mode starts (one per CPU below it). */
#define HSRV_MAX_THREADS 16u

struct hsrv {
    struct MHD_Daemon *daemon;
    hsrv_handler handler;
    void *ctx;
    size_t max_body;
    size_t max_header;
    uint16_t port;
    bool async;
    atomic_bool running; /* startup over: MHD's messages become routine */
    char *cert_pem;      /* kept for the daemon's lifetime */
    /* The answer "200, no body, no header of ours", made once: most
     * notifications get it, and MHD may send one response object on
     * many connections at once. */
    struct MHD_Response *empty_200;
    char *key_pem;
    /* Requests between hsrv_later and hsrv_answer, and the signal for
     * their answers (hsrv_stop waits for them; the blocking mode's
     * connection threads wait for their own). */
    pthread_mutex_t later_mu;
    pthread_cond_t later_cv;
    unsigned later_count;
};

struct hsrv_request {
    struct hsrv *srv;
    struct MHD_Connection *conn;
    const char *method;
    const char *path;
    struct buf body;
    bool too_large; /* body exceeded max_body: discard, then 413 */
    bool later;     /* hsrv_later was called */
    bool answered;  /* hsrv_answer filled later_resp (srv->later_mu) */
    struct hsrv_response later_resp;
    char peer[INET6_ADDRSTRLEN]; /* "" until hsrv_peer works it out */
};

/* ---- MHD glue ------------------------------------------------------- */

static void hsrv_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct hsrv *s = cls;
    char line[HSRV_LOG_LINE_MAX];
    size_t n;

    vsnprintf(line, sizeof line, fmt, ap);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    /* While starting, MHD explains why it cannot (bind, TLS).  Later it
     * reports every peer that hangs up mid-request; that is routine for
     * a server, so those messages stay at debug level. */
    if (atomic_load(&s->running))
        LOG_D("mhd message=\"%s\"", line);
    else
        LOG_W("mhd message=\"%s\"", line);
}

static void hsrv_peer_text(struct MHD_Connection *conn, char *out,
                           size_t out_len)
{
    const union MHD_ConnectionInfo *ci;
    const struct sockaddr *sa;

    snprintf(out, out_len, "unknown");
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || ci->client_addr == NULL)
        return;
    sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;

        inet_ntop(AF_INET, &in->sin_addr, out, (socklen_t)out_len);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;

        /* A dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d. */
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], out,
                      (socklen_t)out_len);
        else
            inet_ntop(AF_INET6, &in6->sin6_addr, out, (socklen_t)out_len);
    }
}

static bool hsrv_is_empty_200(const struct hsrv_response *resp)
{
    return resp->status == 200 && resp->body_len == 0 &&
           resp->content_type == NULL && resp->header_count == 0;
}

static enum MHD_Result hsrv_queue(struct hsrv *s, struct MHD_Connection *conn,
                                  struct hsrv_response *resp)
{
    struct MHD_Response *r;
    enum MHD_Result ok = MHD_YES;
    int status = resp->status ? resp->status : 500;

    if (s->empty_200 != NULL && hsrv_is_empty_200(resp))
        return MHD_queue_response(conn, 200, s->empty_200);

    /* MHD frees the body with free() once sent, so it takes ownership. */
    r = MHD_create_response_from_buffer(
        resp->body_len, resp->body ? resp->body : "",
        resp->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    resp->body = NULL;
    if (resp->content_type != NULL)
        ok = MHD_add_response_header(r, "Content-Type", resp->content_type);
    for (size_t i = 0; ok == MHD_YES && i < resp->header_count; i++)
        ok = MHD_add_response_header(r, resp->header_names[i],
                                     resp->header_values[i]);
    if (ok == MHD_YES)
        ok = MHD_queue_response(conn, (unsigned)status, r);
    else
        LOG_E("hsrv bad response header status=%d", status);
    MHD_destroy_response(r);
    return ok;
}

static void hsrv_response_clear(struct hsrv_response *resp)
{
    free(resp->body);
    free(resp->content_type);
    for (size_t i = 0; i < resp->header_count; i++) {
        free(resp->header_names[i]);
        free(resp->header_values[i]);
    }
    free(resp->header_names);
    free(resp->header_values);
    memset(resp, 0, sizeof *resp);
}

static enum MHD_Result hsrv_queue_text(struct hsrv *s,
                                       struct MHD_Connection *conn, int status,
                                       const char *text)
{
    struct hsrv_response resp = {0};
    enum MHD_Result ok;

    hsrv_reply_str(&resp, status, "text/plain", text);
    ok = hsrv_queue(s, conn, &resp);
    hsrv_response_clear(&resp);
    return ok;
}

/* ---- limits --------------------------------------------------------- */

static enum MHD_Result hsrv_sum_header(void *cls, enum MHD_ValueKind kind,
                                       const char *key, const char *value)
{
    size_t *total = cls;

    (void)kind;
    /* "Name: value\r\n" */
    *total += strlen(key) + 2 + (value ? strlen(value) : 0) + 2;
    return MHD_YES;
}

static bool hsrv_headers_too_large(const struct hsrv *s,
                                   struct MHD_Connection *conn)
{
    size_t total = 0;

    MHD_get_connection_values(conn, MHD_HEADER_KIND, hsrv_sum_header, &total);
    return total > s->max_header;
}

static bool hsrv_length_too_large(const struct hsrv *s,
                                  struct MHD_Connection *conn)
{
    const char *cl;
    char *end;
    unsigned long long n;

    cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl == NULL)
        return false;
    n = strtoull(cl, &end, 10);
    /* MHD itself rejects a malformed Content-Length; a huge one
     * saturates to ULLONG_MAX and is caught here. */
    return end != cl && n > s->max_body;
}

/* ---- answering later ------------------------------------------------ */

/* Queues the answer hsrv_answer stored; in the blocking mode, first waits
 * for it on the connection's own thread. */
static enum MHD_Result hsrv_queue_later(struct hsrv *s,
                                        struct hsrv_request *req)
{
    enum MHD_Result ok;

    pthread_mutex_lock(&s->later_mu);
    while (!req->answered)
        pthread_cond_wait(&s->later_cv, &s->later_mu);
    pthread_mutex_unlock(&s->later_mu);
    ok = hsrv_queue(s, req->conn, &req->later_resp);
    hsrv_response_clear(&req->later_resp);
    return ok;
}

struct hsrv_later *hsrv_later(const struct hsrv_request *creq)
{
    struct hsrv_request *req = (struct hsrv_request *)creq;
    struct hsrv *s = req->srv;

    if (req->later)
        return NULL; /* one answer per request */
    req->later = true;
    pthread_mutex_lock(&s->later_mu);
    s->later_count++;
    pthread_mutex_unlock(&s->later_mu);
    if (s->async)
        MHD_suspend_connection(req->conn);
    return (struct hsrv_later *)req;
}

void hsrv_answer(struct hsrv_later *later, struct hsrv_response *resp)
{
    struct hsrv_request *req = (struct hsrv_request *)later;
    struct hsrv *s = req->srv;

    pthread_mutex_lock(&s->later_mu);
    req->later_resp = *resp;
    memset(resp, 0, sizeof *resp);
    req->answered = true;
    s->later_count--;
    pthread_cond_broadcast(&s->later_cv);
    pthread_mutex_unlock(&s->later_mu);
    /* From here on req may be gone in the blocking mode; in the async
     * mode it lives until the connection, resumed, completes. */
    if (s->async)
        MHD_resume_connection(req->conn);
}

/* ---- the access callback -------------------------------------------- */

static enum MHD_Result hsrv_first_call(struct hsrv *s,
                                       struct MHD_Connection *conn,
                                       const char *url, const char *method,
                                       void **con_cls)
{
    struct hsrv_request *req = xcalloc(1, sizeof *req);

    req->srv = s;
    req->conn = conn;
    req->method = method;
    req->path = url;
    buf_init(&req->body, s->max_body);
    *con_cls = req;

    if (hsrv_headers_too_large(s, conn)) {
        LOG_I("hsrv reject status=431 peer=%s", hsrv_peer(req));
        return hsrv_queue_text(s, conn, 431, "request header too large\n");
    }
    if (hsrv_length_too_large(s, conn)) {
        LOG_I("hsrv reject status=413 peer=%s", hsrv_peer(req));
        return hsrv_queue_text(s, conn, 413, "request body too large\n");
    }
    return MHD_YES;
}

static enum MHD_Result hsrv_access(void *cls, struct MHD_Connection *conn,
                                   const char *url, const char *method,
                                   const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **con_cls)
{
    struct hsrv *s = cls;
    struct hsrv_request *req = *con_cls;
    struct hsrv_response resp = {0};
    enum MHD_Result ok;

    (void)version;
    if (req == NULL)
        return hsrv_first_call(s, conn, url, method, con_cls);

    if (*upload_data_size > 0) {
        if (!req->too_large &&
            buf_append(&req->body, upload_data, *upload_data_size) < 0) {
            req->too_large = true;
            buf_free(&req->body);
            buf_init(&req->body, s->max_body);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (req->later)
        return hsrv_queue_later(s, req);
    if (req->too_large) {
        LOG_I("hsrv reject status=413 peer=%s", hsrv_peer(req));
        return hsrv_queue_text(s, conn, 413, "request body too large\n");
    }
    s->handler(s->ctx, req, &resp);
    if (req->later) {
        hsrv_response_clear(&resp);
        if (s->async)
            return MHD_YES; /* suspended; called again once answered */
        return hsrv_queue_later(s, req);
    }
    ok = hsrv_queue(s, conn, &resp);
    hsrv_response_clear(&resp);
    return ok;
}

static void hsrv_completed(void *cls, struct MHD_Connection *conn,
                           void **con_cls, enum MHD_RequestTerminationCode toe)
{
    struct hsrv_request *req = *con_cls;

    (void)cls;
    (void)conn;
    (void)toe;
    if (req == NULL)
        return;
    buf_free(&req->body);
    hsrv_response_clear(&req->later_resp);
    free(req);
    *con_cls = NULL;
}

/* ---- start and stop ------------------------------------------------- */

/* Fills addr from text; returns the MHD flags the family needs, or -1. */
static int hsrv_parse_addr(const char *text, uint16_t port,
                           struct sockaddr_storage *addr)
{
    struct sockaddr_in *in = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)addr;

    memset(addr, 0, sizeof *addr);
    if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        return 0;
    }
    if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
            return MHD_USE_DUAL_STACK;
        return MHD_USE_IPv6;
    }
    return -1;
}

/* A peer that vanishes while we write must cost an error return, not the
 * process.  MHD suppresses SIGPIPE in its own threads where it can; this
 * covers the rest unless the program chose a handler itself. */
static void hsrv_ignore_sigpipe(void)
{
    struct sigaction old;

    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
}

/* MHD clears the whole pool after each request, so a pool larger than
 * needed costs time on every request, not only memory. */
static size_t hsrv_pool_size(const struct hsrv_config *cfg, size_t max_header)
{
    return max_header +
           (cfg->header_room ? cfg->header_room : HSRV_DEFAULT_HEADER_ROOM);
}

/* Polling threads of the async mode: cfg->threads, or one per CPU. */
static unsigned hsrv_threads(const struct hsrv_config *cfg)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = cfg->threads ? cfg->threads : (cpus > 0 ? (unsigned)cpus : 1);

    return n > HSRV_MAX_THREADS ? HSRV_MAX_THREADS : n;
}

static struct MHD_Daemon *hsrv_daemon(struct hsrv *s, unsigned flags,
                                      const struct hsrv_config *cfg,
                                      struct sockaddr_storage *addr)
{
    /* Options only some servers take: TLS, the async mode's pool. */
    struct MHD_OptionItem opt[4] = {{MHD_OPTION_END, 0, NULL}};
    size_t n = 0;

    if (s->cert_pem != NULL) {
        flags |= MHD_USE_TLS;
        opt[n++] =
            (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, s->cert_pem};
        opt[n++] =
            (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, s->key_pem};
    }
    if (s->async)
        opt[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE,
                                           (intptr_t)hsrv_threads(cfg), NULL};
    opt[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    return MHD_start_daemon(
        flags, cfg->port, NULL, NULL, hsrv_access, s,
        MHD_OPTION_EXTERNAL_LOGGER, hsrv_mhd_log, s, /* must come first */
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)addr,
        MHD_OPTION_NOTIFY_COMPLETED, hsrv_completed, s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        hsrv_pool_size(cfg, s->max_header),
        MHD_OPTION_CONNECTION_LIMIT,
        cfg->max_conns ? cfg->max_conns : HSRV_DEFAULT_MAX_CONNS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->conn_timeout_s,
        MHD_OPTION_ARRAY, opt, MHD_OPTION_END);
}

struct hsrv *hsrv_start(const struct hsrv_config *cfg)
{
    struct sockaddr_storage addr;
    struct hsrv *s;
    const union MHD_DaemonInfo *info;
    int family_flags;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;

    family_flags = hsrv_parse_addr(cfg->bind_addr, cfg->port, &addr);
    if (family_flags < 0) {
        LOG_E("hsrv bad bind address addr=%s", cfg->bind_addr);
        return NULL;
    }
    if ((cfg->tls_cert_pem == NULL) != (cfg->tls_key_pem == NULL)) {
        LOG_E("hsrv TLS needs both a certificate and a key");
        return NULL;
    }
    hsrv_ignore_sigpipe();

    s = xcalloc(1, sizeof *s);
    s->async = cfg->async;
    flags |= s->async ? (unsigned)(MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME)
                      : (unsigned)MHD_USE_THREAD_PER_CONNECTION;
    pthread_mutex_init(&s->later_mu, NULL);
    pthread_cond_init(&s->later_cv, NULL);
    s->handler = cfg->handler;
    s->ctx = cfg->ctx;
    s->max_body = cfg->max_body ? cfg->max_body : HSRV_DEFAULT_MAX_BODY;
    s->max_header = cfg->max_header ? cfg->max_header : HSRV_DEFAULT_MAX_HEADER;
    if (cfg->tls_cert_pem != NULL) {
        s->cert_pem = xstrdup(cfg->tls_cert_pem);
        s->key_pem = xstrdup(cfg->tls_key_pem);
    }
    /* Without it every answer is simply made afresh. */
    s->empty_200 =
        MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    s->daemon = hsrv_daemon(s, flags | (unsigned)family_flags, cfg, &addr);
    if (s->daemon == NULL) {
        LOG_E("hsrv cannot start addr=%s port=%u tls=%s", cfg->bind_addr,
              (unsigned)cfg->port, s->cert_pem ? "yes" : "no");
        hsrv_stop(s);
        return NULL;
    }
    atomic_store(&s->running, true);
    info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : cfg->port;
    LOG_I("hsrv listening addr=%s port=%u tls=%s mode=%s", cfg->bind_addr,
          (unsigned)s->port, s->cert_pem ? "yes" : "no",
          s->async ? "async" : "blocking");
    return s;
}

uint16_t hsrv_port(const struct hsrv *s)
{
    return s->port;
}

void hsrv_stop(struct hsrv *s)
{
    if (s == NULL)
        return;
    /* MHD must not be stopped with connections suspended: wait for the
     * answers still owed (their completers are running). */
    pthread_mutex_lock(&s->later_mu);
    while (s->later_count > 0)
        pthread_cond_wait(&s->later_cv, &s->later_mu);
    pthread_mutex_unlock(&s->later_mu);
    /* This joins every MHD thread, so no handler runs once it returns. */
    if (s->daemon != NULL)
        MHD_stop_daemon(s->daemon);
    if (s->empty_200 != NULL)
        MHD_destroy_response(s->empty_200);
    pthread_cond_destroy(&s->later_cv);
    pthread_mutex_destroy(&s->later_mu);
    free(s->cert_pem);
    free(s->key_pem);
    free(s);
}

/* ---- request accessors ---------------------------------------------- */

const char *hsrv_method(const struct hsrv_request *req)
{
    return req->method;
}

const char *hsrv_path(const struct hsrv_request *req)
{
    return req->path;
}

const char *hsrv_body(const struct hsrv_request *req, size_t *len)
{
    if (len != NULL)
        *len = req->body.len;
    return req->body.data;
}

const char *hsrv_header(const struct hsrv_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

struct hsrv_count {
    const char *name;
    unsigned n;
};

static enum MHD_Result hsrv_count_header(void *cls, enum MHD_ValueKind kind,
                                         const char *key, const char *value)
{
    struct hsrv_count *c = cls;

    (void)kind;
    (void)value;
    if (strcasecmp(key, c->name) == 0)
        c->n++;
    return MHD_YES;
}

unsigned hsrv_header_count(const struct hsrv_request *req, const char *name)
{
    struct hsrv_count c = {name, 0};

    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, hsrv_count_header,
                              &c);
    return c.n;
}

const char *hsrv_query(const struct hsrv_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *hsrv_peer(const struct hsrv_request *req)
{
    /* Worked out on first use (mostly for a log line), hence the cast.
     * Safe as long as one thread at a time asks: after hsrv_later, only
     * the code that will call hsrv_answer may call this. */
    struct hsrv_request *r = (struct hsrv_request *)req;

    if (r->peer[0] == '\0')
        hsrv_peer_text(r->conn, r->peer, sizeof r->peer);
    return r->peer;
}

/* ---- response helpers ----------------------------------------------- */

void hsrv_reply(struct hsrv_response *resp, int status,
                const char *content_type, const void *body, size_t len)
{
    free(resp->body);
    free(resp->content_type);
    resp->status = status;
    resp->content_type = content_type ? xstrdup(content_type) : NULL;
    resp->body = xmalloc(len + 1);
    if (len > 0)
        memcpy(resp->body, body, len);
    resp->body[len] = '\0';
    resp->body_len = len;
}

void hsrv_reply_str(struct hsrv_response *resp, int status,
                    const char *content_type, const char *body)
{
    hsrv_reply(resp, status, content_type, body, body ? strlen(body) : 0);
}

void hsrv_add_header(struct hsrv_response *resp, const char *name,
                     const char *value)
{
    size_t n = resp->header_count + 1;

    resp->header_names =
        xrealloc(resp->header_names, n * sizeof *resp->header_names);
    resp->header_values =
        xrealloc(resp->header_values, n * sizeof *resp->header_values);
    resp->header_names[n - 1] = xstrdup(name);
    resp->header_values[n - 1] = xstrdup(value);
    resp->header_count = n;
}
