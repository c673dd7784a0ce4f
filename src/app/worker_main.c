/*
 * worker_main: `dbxhook worker`, workers without the receiver.
 *
 * Opens the state store, starts a pool of worker threads, and waits for
 * SIGTERM or SIGINT; then each thread finishes its page, saves the
 * cursor and releases its lease before the process exits.
 */
#include "app/state.h"
#include "app/worker.h"
#include "commands.h"
#include "common/log.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

/* More threads than this is a typo, not a plan. */
#define WORKER_MAIN_MAX_THREADS 256

struct worker_opts {
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

    st = state_open_sqlite(o.data);
    if (st == NULL) {
        fprintf(stderr, "dbxhook worker: cannot open the state in %s\n",
                o.data);
        return 1;
    }
    pool = worker_pool_start(st, &o.cfg, o.threads);
    if (pool == NULL) {
        state_close(st);
        return 1;
    }
    LOG_I("worker running data=%s threads=%u", o.data, o.threads);

    if (sigwait(&stop_signals, &sig) != 0)
        sig = 0;
    LOG_I("worker stopping signal=%d", sig);
    worker_pool_stop(pool);
    state_close(st);
    return 0;
}
