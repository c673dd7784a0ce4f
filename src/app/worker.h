/*
 * worker: processes pending accounts.
 *
 * A pool of threads, each looping: claim a pending account (state_claim),
 * fetch its token and cursor, call list_folder (no cursor yet) or
 * list_folder/continue until has_more is false, hand every entry of a page
 * to the handler, save the cursor after each page (fenced by the lease),
 * renew the lease as it goes, and release at the end.
 */
#ifndef DBX_WORKER_H
#define DBX_WORKER_H

#include "app/state.h"

#include <stdint.h>

struct worker_config {
    const char *api_url;     /* e.g. "https://api.dropboxapi.com" */
    const char *content_url; /* e.g. "https://content.dropboxapi.com" */
    const char *ca_file;     /* NULL: the system's trusted CAs */
    int64_t lease_ms;        /* default 30000 */
    int64_t idle_poll_ms;    /* how often an idle worker looks; 200 */
};

struct worker_pool;

struct worker_pool *worker_pool_start(struct state *st,
                                      const struct worker_config *cfg,
                                      unsigned threads);
/* Tells idle workers in this process that something became pending. */
void worker_pool_wake(struct worker_pool *p);
/* Lets each worker finish its current page, save the cursor and release
 * its lease, then joins the threads and frees the pool. */
void worker_pool_stop(struct worker_pool *p);

#endif
