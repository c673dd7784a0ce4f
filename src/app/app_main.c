/*
 * dbxhook app: the webhook receiver, and optionally workers, in one
 * process (docs/CLI.md).
 *
 * Start-up order: state store, worker pool, receiver; shutdown runs it
 * backwards, so no request can wake a pool that is gone.  SIGTERM and
 * SIGINT are blocked in every thread and taken by the main thread with
 * sigwait, which keeps signal handling out of the server's threads.
 */
#include "commands.h"

#include "app/dbxapi.h"
#include "app/handler_cmd.h"
#include "app/receiver.h"
#include "app/state.h"
#include "app/worker.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A secret file is one short line; anything longer is not a secret. */
#define APP_SECRET_MAX  4096
#define APP_ADDR_MAX    64
#define APP_WORKERS_MAX 256

struct app_opts {
    const char *data;
    const char *listen;
    const char *port_file;
    const char *path;
    const char *secret_file;
    const char *api_url;
    const char *content_url;
    const char *ca;
    const char *workers;
    const char *lease_ms;
    const char *app_key;
    const char *token_url;
    const char *web_url;
    const char *redirect_uri;
    const char *page_parallel;
    const char *page_size;
    const char *command;
    const char *command_timeout_ms;
    const char *command_concurrency;
    const char *md_deleted;
    const char *markdown;
    const char *max_conns;
};

static void app_usage(FILE *out)
{
    fprintf(out,
            "usage: dbxhook app [options]\n"
            "\n"
            "Serves the webhook URI; with --workers N also processes\n"
            "pending accounts in this process.\n"
            "\n"
            "  --data DIR          state store (default ./dbxhook-data/app)\n"
            "  --listen ADDR:PORT  default 127.0.0.1:8080 (port 0: any)\n"
            "  --port-file FILE    write the bound port there\n"
            "  --path PATH         webhook path (default /webhook)\n"
            "  --secret-file FILE  the app secret (else DBXHOOK_APP_SECRET)\n"
            "  --api-url URL       default https://api.dropboxapi.com\n"
            "  --content-url URL   default https://content.dropboxapi.com\n"
            "  --ca FILE           CA file for the API (default: system)\n"
            "  --workers N         worker threads (default 2; 0: none)\n"
            "  --lease-ms N        lease length (default 30000)\n"
            "  --app-key KEY       the app key (linking, token refresh)\n"
            "  --token-url URL     default API-URL/oauth2/token\n"
            "  --web-url URL       default https://www.dropbox.com\n"
            "  --redirect-uri URI  default http://LISTEN/oauth/callback\n"
            "  --page-parallel N   entries of a page at once (default 4)\n"
            "  --page-size N       entries asked per page, 1-2000 "
            "(default 2000)\n"
            "  --command CMD       run CMD (sh -c) per changed entry\n"
            "  --command-timeout-ms N       default 60000\n"
            "  --command-concurrency N      default 4\n"
            "  --md-deleted keep|delete     the .html of a deleted .md\n"
            "                      (default keep)\n"
            "  --markdown on|off   the Markdown handler (default on)\n"
            "  --max-conns N       requests at once before 503 (default "
            "960)\n"
            "\n"
            "The secret is never taken from the command line.\n");
}

/* Finds the option named name (without "--") in the table. */
static const char **app_opt_slot(struct app_opts *o, const char *name)
{
    const struct {
        const char *name;
        const char **slot;
    } table[] = {
        {"data", &o->data},
        {"listen", &o->listen},
        {"port-file", &o->port_file},
        {"path", &o->path},
        {"secret-file", &o->secret_file},
        {"api-url", &o->api_url},
        {"content-url", &o->content_url},
        {"ca", &o->ca},
        {"workers", &o->workers},
        {"lease-ms", &o->lease_ms},
        {"app-key", &o->app_key},
        {"token-url", &o->token_url},
        {"web-url", &o->web_url},
        {"redirect-uri", &o->redirect_uri},
        {"page-parallel", &o->page_parallel},
        {"page-size", &o->page_size},
        {"command", &o->command},
        {"command-timeout-ms", &o->command_timeout_ms},
        {"command-concurrency", &o->command_concurrency},
        {"md-deleted", &o->md_deleted},
        {"markdown", &o->markdown},
        {"max-conns", &o->max_conns},
    };

    for (size_t i = 0; i < ARRAY_LEN(table); i++) {
        if (strcmp(table[i].name, name) == 0)
            return table[i].slot;
    }
    return NULL;
}

/* Parses "--name value" and "--name=value"; 0, 1 (--help) or -1. */
static int app_parse(int argc, char **argv, struct app_opts *o)
{
    for (int i = 1; i < argc; i++) {
        char name[32];
        const char *arg = argv[i];
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        const char **slot;

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
            return 1;
        if (strncmp(arg, "--", 2) != 0 || len - 2 >= sizeof name) {
            fprintf(stderr, "dbxhook app: unexpected argument '%s'\n", arg);
            return -1;
        }
        memcpy(name, arg + 2, len - 2);
        name[len - 2] = '\0';
        if (strcmp(name, "secret") == 0) {
            fprintf(stderr, "dbxhook app: the secret is never taken from "
                            "the command line; use --secret-file FILE or "
                            "DBXHOOK_APP_SECRET\n");
            return -1;
        }
        slot = app_opt_slot(o, name);
        if (slot == NULL) {
            fprintf(stderr, "dbxhook app: unknown option '--%s'\n", name);
            return -1;
        }
        if (eq != NULL) {
            *slot = eq + 1;
        } else if (i + 1 < argc) {
            *slot = argv[++i];
        } else {
            fprintf(stderr, "dbxhook app: '--%s' needs a value\n", name);
            return -1;
        }
    }
    return 0;
}

/* Parses a decimal in [min, max]; 0 or -1 (after saying why). */
static int app_number(const char *opt, const char *text, long long min,
                      long long max, long long *out)
{
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
        fprintf(stderr,
                "dbxhook app: --%s wants a number from %lld to "
                "%lld\n",
                opt, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

/* Splits "ADDR:PORT" or "[v6]:PORT". */
static int app_listen(const char *text, char addr[APP_ADDR_MAX], uint16_t *port)
{
    const char *colon = strrchr(text, ':');
    const char *start = text;
    size_t len;
    long long p;

    if (colon == NULL)
        goto bad;
    len = (size_t)(colon - text);
    if (text[0] == '[') {
        if (len < 2 || text[len - 1] != ']')
            goto bad;
        start = text + 1;
        len -= 2;
    }
    if (len == 0 || len >= APP_ADDR_MAX)
        goto bad;
    memcpy(addr, start, len);
    addr[len] = '\0';
    if (app_number("listen", colon + 1, 0, 65535, &p) < 0)
        return -1;
    *port = (uint16_t)p;
    return 0;

bad:
    fprintf(stderr, "dbxhook app: --listen wants ADDR:PORT, got '%s'\n", text);
    return -1;
}

/* The secret from --secret-file, else the environment; caller frees. */
static char *app_secret(const char *file)
{
    char *secret = NULL;
    size_t len = 0;

    if (file != NULL) {
        secret = file_read_all(file, APP_SECRET_MAX, &len);
        if (secret == NULL) {
            fprintf(stderr, "dbxhook app: cannot read secret file '%s'\n",
                    file);
            return NULL;
        }
        str_rstrip(secret);
    } else if (getenv("DBXHOOK_APP_SECRET") != NULL) {
        secret = xstrdup(getenv("DBXHOOK_APP_SECRET"));
        len = strlen(secret);
    } else {
        fprintf(stderr, "dbxhook app: no secret: use --secret-file FILE or "
                        "set DBXHOOK_APP_SECRET\n");
        return NULL;
    }
    if (secret[0] == '\0' || strlen(secret) > len) {
        fprintf(stderr, "dbxhook app: the secret is empty or not text\n");
        free(secret);
        return NULL;
    }
    return secret;
}

/* Blocks the stop signals in this thread and every thread it starts. */
static void app_block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void app_announce(const struct app_opts *o, const char *addr,
                         uint16_t port)
{
    bool v6 = strchr(addr, ':') != NULL;

    printf("dbxhook app listening on http://%s%s%s:%u%s\n", v6 ? "[" : "", addr,
           v6 ? "]" : "", (unsigned)port, o->path);
    fflush(stdout);
}

static int app_write_port(const char *file, uint16_t port)
{
    char text[16];
    int n = snprintf(text, sizeof text, "%u\n", (unsigned)port);

    if (file_write_atomic(file, text, (size_t)n, 0644) < 0) {
        LOG_E("app cannot write port file=%s", file);
        return -1;
    }
    return 0;
}

/* Fills the handler and refresh parts of wc from the options. */
static int app_worker_opts(const struct app_opts *o, struct worker_config *wc)
{
    long long par, size, tmo, conc;

    if (app_number("page-parallel", o->page_parallel, 1,
                   WORKER_PAGE_PARALLEL_MAX, &par) < 0 ||
        app_number("page-size", o->page_size, 1, DBXAPI_LIST_LIMIT_MAX,
                   &size) < 0 ||
        app_number("command-timeout-ms", o->command_timeout_ms, 1,
                   86400000LL, &tmo) < 0 ||
        app_number("command-concurrency", o->command_concurrency, 1,
                   HANDLER_CMD_CONCURRENCY_MAX, &conc) < 0)
        return -1;
    if (strcmp(o->md_deleted, "keep") != 0 &&
        strcmp(o->md_deleted, "delete") != 0) {
        fprintf(stderr, "dbxhook app: --md-deleted wants keep or delete\n");
        return -1;
    }
    if (strcmp(o->markdown, "on") != 0 && strcmp(o->markdown, "off") != 0) {
        fprintf(stderr, "dbxhook app: --markdown wants on or off\n");
        return -1;
    }
    wc->page_parallel = (unsigned)par;
    wc->page_size = (unsigned)size;
    wc->command = o->command;
    wc->command_timeout_ms = tmo;
    wc->command_concurrency = (unsigned)conc;
    wc->md_delete_html = strcmp(o->md_deleted, "delete") == 0;
    wc->no_markdown = strcmp(o->markdown, "off") == 0;
    wc->app_key = o->app_key;
    wc->token_url = o->token_url;
    wc->data_dir = o->data;
    return 0;
}

/* Checks the options that need checking; fills the numbers. */
static int app_check(const struct app_opts *o, char addr[APP_ADDR_MAX],
                     uint16_t *port, long long *workers, long long *lease_ms)
{
    if (app_listen(o->listen, addr, port) < 0 ||
        app_number("workers", o->workers, 0, APP_WORKERS_MAX, workers) < 0 ||
        app_number("lease-ms", o->lease_ms, 100, 86400000LL, lease_ms) < 0)
        return -1;
    if (o->path[0] != '/' || strlen(o->path) > RECEIVER_MAX_PATH ||
        strpbrk(o->path, "?# ") != NULL) {
        fprintf(stderr, "dbxhook app: --path must start with '/' and have "
                        "no '?', '#' or space\n");
        return -1;
    }
    return 0;
}

/* Runs until SIGTERM/SIGINT once the options are checked. */
static int app_run(const struct app_opts *o, const char *addr, uint16_t port,
                   unsigned workers, int64_t lease_ms, const char *secret)
{
    struct worker_config wc = {
        .api_url = o->api_url,
        .content_url = o->content_url,
        .ca_file = o->ca,
        .lease_ms = lease_ms,
        .idle_poll_ms = 200,
    };
    struct receiver_config rc = {
        .bind_addr = addr,
        .port = port,
        .path = o->path,
        .secret = secret,
        .app_key = o->app_key,
        .web_url = o->web_url,
        .redirect_uri = o->redirect_uri,
    };
    struct worker_pool *pool = NULL;
    struct receiver *recv = NULL;
    struct state *st;
    long long conns = 0;
    sigset_t set;
    int sig = 0;
    int status = 1;

    if (app_worker_opts(o, &wc) < 0 ||
        app_number("max-conns", o->max_conns, 1, RECEIVER_SOFT_CONNS_MAX,
                   &conns) < 0)
        return 2;
    rc.soft_conns = (unsigned)conns;
    wc.app_secret = secret;
    rc.worker_cfg = &wc;
    app_block_signals(&set);
    st = state_open_sqlite(o->data);
    if (st == NULL)
        return 1;
    if (workers > 0) {
        pool = worker_pool_start(st, &wc, workers);
        if (pool == NULL)
            goto out;
    }
    rc.st = st;
    rc.pool = pool;
    recv = receiver_start(&rc);
    if (recv == NULL)
        goto out;

    app_announce(o, addr, receiver_port(recv));
    if (o->port_file != NULL &&
        app_write_port(o->port_file, receiver_port(recv)) < 0)
        goto out;
    LOG_I("app started port=%u workers=%u path=%s",
          (unsigned)receiver_port(recv), workers, o->path);

    sigwait(&set, &sig);
    LOG_I("app stopping signal=%d", sig);
    status = 0;

out:
    receiver_stop(recv);
    if (pool != NULL)
        worker_pool_stop(pool);
    state_close(st);
    return status;
}

int app_main(int argc, char **argv)
{
    struct app_opts o = {
        .data = "./dbxhook-data/app",
        .listen = "127.0.0.1:8080",
        .path = "/webhook",
        .api_url = "https://api.dropboxapi.com",
        .content_url = "https://content.dropboxapi.com",
        .workers = "2",
        .lease_ms = "30000",
        .web_url = "https://www.dropbox.com",
        .page_parallel = "4",
        .page_size = "2000",
        .command_timeout_ms = "60000",
        .command_concurrency = "4",
        .md_deleted = "keep",
        .markdown = "on",
        .max_conns = "960",
    };
    char addr[APP_ADDR_MAX];
    uint16_t port = 0;
    long long workers = 0;
    long long lease_ms = 0;
    char *secret;
    int rc;

    log_init("app", LOG_INFO);
    rc = app_parse(argc, argv, &o);
    if (rc > 0) {
        app_usage(stdout);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "Try 'dbxhook app --help'.\n");
        return 2;
    }
    if (app_check(&o, addr, &port, &workers, &lease_ms) < 0)
        return 2;
    secret = app_secret(o.secret_file);
    if (secret == NULL)
        return o.secret_file ? 1 : 2;

    rc = app_run(&o, addr, port, (unsigned)workers, lease_ms, secret);
    explicit_bzero(secret, strlen(secret));
    free(secret);
    return rc;
}
