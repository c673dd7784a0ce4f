/*
 * worker_main: `dbxhook worker`, workers without the receiver.
 *
 * Opens the state store, starts a pool of worker threads, and waits for
 * SIGTERM or SIGINT; then each thread finishes its page, saves the
 * cursor and releases its lease before the process exits.
 */
#include "app/dbxapi.h"
#include "app/handler_cmd.h"
#include "app/state.h"
#include "app/worker.h"
#include "commands.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* More threads than this is a typo, not a plan. */
#define WORKER_MAIN_MAX_THREADS 256

struct worker_opts {
    const char *secret_file;
    const char *data;
    struct worker_config cfg;
    unsigned threads;
};

static void worker_usage(FILE *out)
{
    fprintf(out, "usage: dbxhook worker [options]\n"
                 "\n"
                 "Processes pending accounts from the state store until "
                 "SIGTERM.\n"
                 "\n"
                 "  --data DIR          state store directory "
                 "(default ./dbxhook-data/app)\n"
                 "  --api-url URL       RPC base URL "
                 "(default https://api.dropboxapi.com)\n"
                 "  --content-url URL   content base URL "
                 "(default https://content.dropboxapi.com)\n"
                 "  --ca FILE           CA file for HTTPS (default: system "
                 "CAs)\n"
                 "  --lease-ms N        lease length (default 30000)\n"
                 "  --threads N         worker threads (default 1)\n"
                 "  --app-key KEY       refresh expired tokens (the app\n"
                 "                      secret: --secret-file or\n"
                 "                      DBXHOOK_APP_SECRET)\n"
                 "  --secret-file FILE  the app secret\n"
                 "  --token-url URL     default API-URL/oauth2/token\n"
                 "  --page-parallel N   entries of a page at once "
                 "(default 4)\n"
                 "  --page-size N       entries asked per page, 1-2000 "
                 "(default 2000)\n"
                 "  --command CMD       run CMD (sh -c) per changed entry\n"
                 "  --command-timeout-ms N   default 60000\n"
                 "  --command-concurrency N  default 4\n"
                 "  --md-deleted keep|delete the .html of a deleted .md "
                 "(keep)\n"
                 "  --markdown on|off   the Markdown handler (default on)\n"
                 "  --help              this text\n");
}

/* Parses a decimal integer in [min, max]; -1 when s is not one. */
static int parse_int(const char *s, long long min, long long max,
                     long long *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* 0 to run, 1 when --help was answered, 2 on a usage error. */
static int worker_parse(int argc, char **argv, struct worker_opts *o)
{
    static const struct option longopts[] = {
        {"data", required_argument, NULL, 'd'},
        {"api-url", required_argument, NULL, 'a'},
        {"content-url", required_argument, NULL, 'c'},
        {"ca", required_argument, NULL, 'C'},
        {"lease-ms", required_argument, NULL, 'l'},
        {"threads", required_argument, NULL, 't'},
        {"app-key", required_argument, NULL, 'k'},
        {"secret-file", required_argument, NULL, 's'},
        {"token-url", required_argument, NULL, 'u'},
        {"page-parallel", required_argument, NULL, 'p'},
        {"page-size", required_argument, NULL, 'P'},
        {"command", required_argument, NULL, 'x'},
        {"command-timeout-ms", required_argument, NULL, 'T'},
        {"command-concurrency", required_argument, NULL, 'n'},
        {"md-deleted", required_argument, NULL, 'm'},
        {"markdown", required_argument, NULL, 'M'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long long v;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            o->data = optarg;
            break;
        case 'a':
            o->cfg.api_url = optarg;
            break;
        case 'c':
            o->cfg.content_url = optarg;
            break;
        case 'C':
            o->cfg.ca_file = optarg;
            break;
        case 'l':
            if (parse_int(optarg, 1, INT_MAX, &v) < 0)
                goto bad_value;
            o->cfg.lease_ms = v;
            break;
        case 't':
            if (parse_int(optarg, 1, WORKER_MAIN_MAX_THREADS, &v) < 0)
                goto bad_value;
            o->threads = (unsigned)v;
            break;
        case 'k':
            o->cfg.app_key = optarg;
            break;
        case 's':
            o->secret_file = optarg;
            break;
        case 'u':
            o->cfg.token_url = optarg;
            break;
        case 'p':
            if (parse_int(optarg, 1, WORKER_PAGE_PARALLEL_MAX, &v) < 0)
                goto bad_value;
            o->cfg.page_parallel = (unsigned)v;
            break;
        case 'P':
            if (parse_int(optarg, 1, DBXAPI_LIST_LIMIT_MAX, &v) < 0)
                goto bad_value;
            o->cfg.page_size = (unsigned)v;
            break;
        case 'x':
            o->cfg.command = optarg;
            break;
        case 'T':
            if (parse_int(optarg, 1, 86400000LL, &v) < 0)
                goto bad_value;
            o->cfg.command_timeout_ms = v;
            break;
        case 'n':
            if (parse_int(optarg, 1, HANDLER_CMD_CONCURRENCY_MAX, &v) < 0)
                goto bad_value;
            o->cfg.command_concurrency = (unsigned)v;
            break;
        case 'm':
            if (strcmp(optarg, "keep") != 0 && strcmp(optarg, "delete") != 0)
                goto bad_value;
            o->cfg.md_delete_html = strcmp(optarg, "delete") == 0;
            break;
        case 'M':
            if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0)
                goto bad_value;
            o->cfg.no_markdown = strcmp(optarg, "off") == 0;
            break;
        case 'h':
            worker_usage(stdout);
            return 1;
        default:
            worker_usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "dbxhook worker: unexpected argument '%s'\n",
                argv[optind]);
        return 2;
    }
    return 0;

bad_value:
    fprintf(stderr, "dbxhook worker: bad value '%s'\n", optarg);
    return 2;
}

/* Longest secret file accepted. */
#define WORKER_SECRET_MAX 4096

/* The app secret, needed only to refresh tokens (--app-key): from
 * --secret-file, else DBXHOOK_APP_SECRET; *secret NULL without one. */
static int worker_secret(const struct worker_opts *o, char **secret)
{
    const char *env = getenv("DBXHOOK_APP_SECRET");

    *secret = NULL;
    if (o->secret_file != NULL) {
        *secret = file_read_all(o->secret_file, WORKER_SECRET_MAX, NULL);
        if (*secret == NULL) {
            fprintf(stderr, "dbxhook worker: cannot read secret file '%s'\n",
                    o->secret_file);
            return -1;
        }
        str_rstrip(*secret);
    } else if (env != NULL) {
        *secret = xstrdup(env);
    }
    if (o->cfg.app_key != NULL && *secret == NULL)
        fprintf(stderr, "dbxhook worker: --app-key without a secret: "
                        "tokens are refreshed as by a PKCE client (with the "
                        "key in the form), which Dropbox accepts for tokens "
                        "linked with PKCE\n");
    return 0;
}

static void secret_drop(char *secret)
{
    if (secret != NULL) {
        explicit_bzero(secret, strlen(secret));
        free(secret);
    }
}

int worker_main(int argc, char **argv)
{
    struct worker_opts o = {
        .data = "./dbxhook-data/app",
        .cfg =
            {
                .api_url = "https://api.dropboxapi.com",
                .content_url = "https://content.dropboxapi.com",
                .ca_file = NULL,
                .lease_ms = 30000,
                .idle_poll_ms = 200,
            },
        .threads = 1,
    };
    struct worker_pool *pool;
    struct state *st;
    char *secret = NULL;
    sigset_t stop_signals;
    int rc, sig;

    rc = worker_parse(argc, argv, &o);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    log_init("worker", LOG_INFO);

    /* Blocked before any thread starts, so that every thread inherits
     * the mask and only sigwait below receives them. */
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    o.cfg.data_dir = o.data;
    if (worker_secret(&o, &secret) < 0)
        return 1;
    o.cfg.app_secret = secret;
    st = state_open_sqlite(o.data);
    if (st == NULL) {
        fprintf(stderr, "dbxhook worker: cannot open the state in %s\n",
                o.data);
        return 1;
    }
    pool = worker_pool_start(st, &o.cfg, o.threads);
    if (pool == NULL) {
        state_close(st);
        secret_drop(secret);
        return 1;
    }
    LOG_I("worker running data=%s threads=%u", o.data, o.threads);

    if (sigwait(&stop_signals, &sig) != 0)
        sig = 0;
    LOG_I("worker stopping signal=%d", sig);
    worker_pool_stop(pool);
    state_close(st);
    secret_drop(secret);
    return 0;
}
