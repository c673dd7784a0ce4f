/*
 * cloud_main: `dbxhook cloud`, the Dropbox-compatible file API, the
 * console's admin API and the webhook notifier on one port.
 *
 * Start-up order: options, data directory and store, admin token, TLS
 * files, notifier, HTTP server; then the "listening" line and the port
 * file.  SIGTERM and SIGINT are blocked in every thread and taken by the
 * main thread with sigwait, which then stops everything in reverse order.
 */
#include "commands.h"

#include "cloud/admin.h"
#include "cloud/api.h"
#include "cloud/auth.h"
#include "cloud/notifier.h"
#include "cloud/oauth.h"
#include "cloud/ratelimit.h"
#include "cloud/store.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/tlsgen.h"
#include "common/util.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLOUD_MAX_HEADER (96u * 1024)
#define CLOUD_MAX_CONNS 512
#define CLOUD_CONN_TIMEOUT_S 120
#define CLOUD_ADDR_MAX 128

struct cloud_opts {
    const char *data;
    char addr[CLOUD_ADDR_MAX];
    uint16_t port;
    bool http;
    const char *port_file;
    struct notifier_config notify;
    int64_t journal_max_age_s;  /* 0: keep the journal forever */
    int64_t longpoll_min_s;     /* smallest longpoll timeout accepted */
    int64_t longpoll_backoff_s; /* backoff every longpoll answer asks */
    int64_t relocate_max;       /* entries one move or copy may carry */
    int64_t session_max_bytes;  /* largest upload session */
    struct oauth_config oauth;
    int64_t rate_limit;         /* calls per second per account; 0: off */
    int64_t write_rate_limit;   /* write calls per second per account */
};

/* Long options of OAuth and the rate limits. */
enum {
    OPT_OAUTH_AUTO = 2000,
    OPT_TOKEN_LIFETIME,
    OPT_RATE_LIMIT,
    OPT_WRITE_RATE_LIMIT,
};

/* Long options without a short letter (files API tuning). */
enum {
    OPT_JOURNAL_MAX_AGE = 1000,
    OPT_LONGPOLL_MIN,
    OPT_LONGPOLL_BACKOFF,
    OPT_MAX_RELOCATE,
    OPT_MAX_SESSION_BYTES,
};

struct cloud {
    struct store *store;
    struct oauth_config oauth;
    char *admin_token;
    struct notifier *notifier;
    struct hsrv *server;
};

static void cloud_usage(FILE *out)
{
    fprintf(out,
            "usage: dbxhook cloud [options]\n\n"
            "Serves the Dropbox-API-v2-compatible file API, the console's "
            "admin API\nand the webhook notifier on one port.\n\n"
            "  --data DIR               data directory "
            "(default ./dbxhook-data/cloud)\n"
            "  --listen ADDR:PORT       (default 127.0.0.1:8443; port 0 "
            "picks one)\n"
            "  --http                   plain HTTP instead of HTTPS\n"
            "  --port-file FILE         write the bound port there\n"
            "  --verify-timeout-ms N    verification timeout (10000)\n"
            "  --deliver-timeout-ms N   notification timeout (10000)\n"
            "  --batch-ms N             gathering window (10)\n"
            "  --retry-base-ms N        first retry delay (1000)\n"
            "  --retry-window-ms N      give up after (600000)\n"
            "  --retry-cap-ms N         longest retry delay (120000)\n"
            "  --health-window-ms N     webhook health window (600000)\n"
            "  --batch-max-accounts N   accounts per notification (100)\n"
            "  --inflight-per-webhook N requests in flight per webhook "
            "(8)\n"
            "  --alert-command CMD      run via /bin/sh when a webhook is "
            "disabled\n"
            "  --refuse-private-uris    refuse loopback and private "
            "webhook URIs\n"
            "  --journal-max-age-s N    compact older journal rows; "
            "older cursors\n"
            "                           get 'reset' (0: never; default "
            "0)\n"
            "  --longpoll-min-timeout-s N  smallest longpoll timeout "
            "(30)\n"
            "  --longpoll-backoff-s N   every longpoll answer asks clients "
            "to wait\n"
            "                           N s before the next (0: never; "
            "default 0)\n"
            "  --max-relocate-entries N entries one move or copy may carry "
            "(10000)\n"
            "  --max-session-bytes N    largest upload session "
            "(4294967296)\n"
            "  --oauth-auto-approve     approve OAuth requests without "
            "the page\n"
            "  --token-lifetime-s N     OAuth access token lifetime "
            "(14400)\n"
            "  --rate-limit N           API calls per second per account "
            "(0: off)\n"
            "  --write-rate-limit N     write calls per second per "
            "account (0: off)\n"
            "  --help                   this text\n");
}

/* "127.0.0.1:8443" or "[::1]:8443" into addr and port. */
static int parse_listen(const char *text, struct cloud_opts *o)
{
    const char *colon = strrchr(text, ':');
    const char *host = text;
    size_t hlen;
    char *end;
    long port;

    if (colon == NULL)
        return -1;
    hlen = (size_t)(colon - text);
    if (hlen >= 2 && text[0] == '[' && text[hlen - 1] == ']') {
        host++;
        hlen -= 2;
    }
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (hlen == 0 || hlen >= sizeof o->addr || *end != '\0' ||
        end == colon + 1 || errno != 0 || port < 0 || port > 65535)
        return -1;
    memcpy(o->addr, host, hlen);
    o->addr[hlen] = '\0';
    o->port = (uint16_t)port;
    return 0;
}

/* A whole number from 0 to max, for the option called name. */
static int parse_number(const char *name, const char *text, long long max,
                        int64_t *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (*text == '\0' || *end != '\0' || errno != 0 || v < 0 || v > max) {
        fprintf(stderr, "dbxhook cloud: %s needs a whole number from 0 to "
                        "%lld, got '%s'\n", name, max, text);
        return -1;
    }
    *out = v;
    return 0;
}

/* Durations (ms or s) and sizes. */
static int parse_ms(const char *name, const char *text, int64_t *out)
{
    return parse_number(name, text, INT64_MAX, out);
}

static const struct option cloud_long_opts[] = {
    {"data", required_argument, NULL, 'd'},
    {"listen", required_argument, NULL, 'l'},
    {"http", no_argument, NULL, 'H'},
    {"port-file", required_argument, NULL, 'p'},
    {"verify-timeout-ms", required_argument, NULL, 'v'},
    {"deliver-timeout-ms", required_argument, NULL, 't'},
    {"batch-ms", required_argument, NULL, 'b'},
    {"retry-base-ms", required_argument, NULL, 'r'},
    {"retry-window-ms", required_argument, NULL, 'w'},
    {"retry-cap-ms", required_argument, NULL, 'C'},
    {"health-window-ms", required_argument, NULL, 'W'},
    {"batch-max-accounts", required_argument, NULL, 'M'},
    {"inflight-per-webhook", required_argument, NULL, 'I'},
    {"alert-command", required_argument, NULL, 'A'},
    {"refuse-private-uris", no_argument, NULL, 'P'},
    {"journal-max-age-s", required_argument, NULL, OPT_JOURNAL_MAX_AGE},
    {"longpoll-min-timeout-s", required_argument, NULL, OPT_LONGPOLL_MIN},
    {"longpoll-backoff-s", required_argument, NULL, OPT_LONGPOLL_BACKOFF},
    {"max-relocate-entries", required_argument, NULL, OPT_MAX_RELOCATE},
    {"max-session-bytes", required_argument, NULL, OPT_MAX_SESSION_BYTES},
    {"oauth-auto-approve", no_argument, NULL, OPT_OAUTH_AUTO},
    {"token-lifetime-s", required_argument, NULL, OPT_TOKEN_LIFETIME},
    {"rate-limit", required_argument, NULL, OPT_RATE_LIMIT},
    {"write-rate-limit", required_argument, NULL, OPT_WRITE_RATE_LIMIT},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Counts that must fit an int (seconds, calls per second). */
static int parse_count(const char *name, const char *text, int64_t *out)
{
    return parse_number(name, text, INT32_MAX, out);
}

/* The options of OAuth and the rate limits. */
static int cloud_opt_auth(int ch, struct cloud_opts *o)
{
    switch (ch) {
    case OPT_OAUTH_AUTO: o->oauth.auto_approve = true; return 0;
    case OPT_TOKEN_LIFETIME:
        if (parse_count("--token-lifetime-s", optarg,
                        &o->oauth.token_lifetime_s) < 0)
            return -1;
        if (o->oauth.token_lifetime_s > 0)
            return 0;
        fprintf(stderr, "dbxhook cloud: --token-lifetime-s must be > 0\n");
        return -1;
    case OPT_RATE_LIMIT:
        return parse_count("--rate-limit", optarg, &o->rate_limit);
    case OPT_WRITE_RATE_LIMIT:
        return parse_count("--write-rate-limit", optarg,
                           &o->write_rate_limit);
    default: return -1;
    }
}

static int cloud_opt(int ch, struct cloud_opts *o)
{
    struct notifier_config *n = &o->notify;

    switch (ch) {
    case 'd': o->data = optarg; return 0;
    case 'H': o->http = true; return 0;
    case 'p': o->port_file = optarg; return 0;
    case 'v': return parse_ms("--verify-timeout-ms", optarg,
                              &n->verify_timeout_ms);
    case 't': return parse_ms("--deliver-timeout-ms", optarg,
                              &n->deliver_timeout_ms);
    case 'b': return parse_ms("--batch-ms", optarg, &n->batch_ms);
    case 'r': return parse_ms("--retry-base-ms", optarg, &n->retry_base_ms);
    case 'w': return parse_ms("--retry-window-ms", optarg,
                              &n->retry_window_ms);
    case 'C': return parse_ms("--retry-cap-ms", optarg, &n->retry_cap_ms);
    case 'W': return parse_ms("--health-window-ms", optarg,
                              &n->health_window_ms);
    case 'A': n->alert_command = optarg; return 0;
    case 'P': n->refuse_private_uris = true; return 0;
    case 'M':
    case 'I': {
        int64_t v = 0;

        if (parse_ms(ch == 'M' ? "--batch-max-accounts"
                               : "--inflight-per-webhook", optarg, &v) < 0)
            return -1;
        *(ch == 'M' ? &n->batch_max_accounts : &n->inflight_per_webhook) =
            v > 1000 ? 1000 : (int)v;
        return 0;
    }
    case OPT_JOURNAL_MAX_AGE:
        return parse_ms("--journal-max-age-s", optarg,
                        &o->journal_max_age_s);
    case OPT_LONGPOLL_MIN:
        return parse_ms("--longpoll-min-timeout-s", optarg,
                        &o->longpoll_min_s);
    case OPT_LONGPOLL_BACKOFF:
        return parse_ms("--longpoll-backoff-s", optarg,
                        &o->longpoll_backoff_s);
    case OPT_MAX_RELOCATE:
        return parse_count("--max-relocate-entries", optarg,
                           &o->relocate_max);
    case OPT_MAX_SESSION_BYTES:
        return parse_ms("--max-session-bytes", optarg,
                        &o->session_max_bytes);
    case 'l':
        if (parse_listen(optarg, o) == 0)
            return 0;
        fprintf(stderr, "dbxhook cloud: --listen needs ADDR:PORT, got "
                        "'%s'\n", optarg);
        return -1;
    default: return cloud_opt_auth(ch, o);
    }
}

/* Returns 0 to run, 1 after --help, 2 on a usage error. */
static int cloud_parse(int argc, char **argv, struct cloud_opts *o)
{
    int ch;

    memset(o, 0, sizeof *o);
    o->data = "./dbxhook-data/cloud";
    snprintf(o->addr, sizeof o->addr, "127.0.0.1");
    o->port = 8443;
    o->longpoll_min_s = 30;
    o->relocate_max = STORE_RELOCATE_MAX;
    o->session_max_bytes = STORE_SESSION_MAX_BYTES;
    o->notify = (struct notifier_config){
        .verify_timeout_ms = 10000, .deliver_timeout_ms = 10000,
        .batch_ms = 10, .retry_base_ms = 1000, .retry_window_ms = 600000,
        .retry_cap_ms = 120000, .health_window_ms = 600000,
        .batch_max_accounts = 100, .inflight_per_webhook = 8};
    o->oauth.token_lifetime_s = OAUTH_TOKEN_LIFETIME_S;
    optind = 1;
    opterr = 1;
    while ((ch = getopt_long(argc, argv, "", cloud_long_opts, NULL)) != -1) {
        if (ch == 'h') {
            cloud_usage(stdout);
            return 1;
        }
        if (cloud_opt(ch, o) < 0) {
            fprintf(stderr, "try 'dbxhook cloud --help'\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dbxhook cloud: unexpected argument '%s'\n",
                argv[optind]);
        return 2;
    }
    return 0;
}

static void cloud_handle(void *ctx, const struct hsrv_request *req,
                         struct hsrv_response *resp)
{
    struct cloud *c = ctx;
    const char *path = hsrv_path(req);

    if (strncmp(path, "/2/", 3) == 0)
        api_dispatch(c->store, req, resp);
    else if (strncmp(path, "/admin/", 7) == 0)
        admin_dispatch(c->store, c->admin_token, req, resp);
    else if (strncmp(path, "/oauth2/", 8) == 0)
        oauth_dispatch(c->store, &c->oauth, req, resp);
    else
        hsrv_reply_str(resp, 404, "text/plain; charset=utf-8",
                       "Not found\n");
    LOG_D("request method=%s path=%s status=%d peer=%s", hsrv_method(req),
          path, resp->status, hsrv_peer(req));
}

/* Starts the HTTP server and announces it. */
static int cloud_listen(struct cloud *c, const struct cloud_opts *o,
                        const char *cert, const char *key,
                        const char *ca_path)
{
    struct hsrv_config cfg = {
        .bind_addr = o->addr,
        .port = o->port,
        .max_body = API_UPLOAD_BODY_MAX,
        .max_header = CLOUD_MAX_HEADER,
        .max_conns = CLOUD_MAX_CONNS,
        .conn_timeout_s = CLOUD_CONN_TIMEOUT_S,
        .tls_cert_pem = cert,
        .tls_key_pem = key,
        .handler = cloud_handle,
        .ctx = c,
    };
    bool v6 = strchr(o->addr, ':') != NULL;
    char port[8];

    c->server = hsrv_start(&cfg);
    if (c->server == NULL)
        return -1;
    snprintf(port, sizeof port, "%u", (unsigned)hsrv_port(c->server));
    printf("dbxhook cloud listening on %s://%s%s%s:%s%s%s\n",
           o->http ? "http" : "https", v6 ? "[" : "", o->addr,
           v6 ? "]" : "", port, ca_path ? " ca=" : "",
           ca_path ? ca_path : "");
    fflush(stdout);
    if (o->port_file != NULL &&
        file_write_atomic(o->port_file, port, strlen(port), 0644) < 0) {
        LOG_E("port file not written path=%s", o->port_file);
        return -1;
    }
    LOG_I("listening addr=%s port=%s tls=%s", o->addr, port,
          o->http ? "no" : "yes");
    return 0;
}

/* TLS files (unless --http) with the CA's absolute path. */
static int cloud_tls(const struct cloud_opts *o, char **cert, char **key,
                     char **ca_abs)
{
    char *ca = NULL;
    char abs[PATH_MAX];

    *cert = *key = *ca_abs = NULL;
    if (o->http)
        return 0;
    if (tlsgen_ensure(o->data, cert, key, &ca) < 0) {
        LOG_E("tls files not ready dir=%s", o->data);
        return -1;
    }
    *ca_abs = xstrdup(realpath(ca, abs) ? abs : ca);
    free(ca);
    return 0;
}

static void cloud_stop(struct cloud *c)
{
    if (c->store != NULL)
        store_stop_waiters(c->store);
    if (c->server != NULL)
        hsrv_stop(c->server);
    if (c->notifier != NULL)
        notifier_stop(c->notifier);
    store_close(c->store);
    free(c->admin_token);
}

static int cloud_run(struct cloud_opts *o)
{
    struct cloud c = {0};
    char *cert = NULL, *key = NULL, *ca = NULL;
    sigset_t stop;
    int sig = 0, rc = 1;

    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (mkdir_p(o->data, 0700) < 0) {
        fprintf(stderr, "dbxhook cloud: cannot create %s: %s\n", o->data,
                strerror(errno));
        return 1;
    }
    c.store = store_open(o->data);
    if (c.store == NULL || (c.admin_token = admin_token_ensure(o->data)) ==
                               NULL || cloud_tls(o, &cert, &key, &ca) < 0)
        goto out;
    if (auth_init(c.store) < 0 || oauth_init(c.store) < 0)
        goto out;
    c.oauth = o->oauth;
    ratelimit_configure((unsigned)o->rate_limit,
                        (unsigned)o->write_rate_limit);
    c.store->journal_max_age_s = o->journal_max_age_s;
    c.store->longpoll_min_s = o->longpoll_min_s;
    c.store->longpoll_backoff_s = o->longpoll_backoff_s;
    c.store->relocate_max = o->relocate_max;
    c.store->session_max_bytes = o->session_max_bytes;
    o->notify.db_path = c.store->db_path;
    c.notifier = notifier_start(&o->notify);
    if (c.notifier == NULL)
        goto out;
    c.store->notifier = c.notifier;
    if (cloud_listen(&c, o, cert, key, ca) < 0)
        goto out;

    sigwait(&stop, &sig);
    LOG_I("stopping signal=%d", sig);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "dbxhook cloud: start-up failed (see log above)\n");
    cloud_stop(&c);
    free(cert);
    free(key);
    free(ca);
    return rc;
}

int cloud_main(int argc, char **argv)
{
    struct cloud_opts o;
    int rc = cloud_parse(argc, argv, &o);

    if (rc != 0)
        return rc == 1 ? 0 : 2;
    log_init("cloud", LOG_INFO);
    return cloud_run(&o);
}
