/*
 * worker: processes pending accounts.
 *
 * A pool of threads, each looping: claim a pending account (state_claim),
 * fetch its tokens and cursor, call list_folder (no cursor yet) or
 * list_folder/continue until has_more is false, hand the entries of each
 * page to the handlers (a few at a time, page_parallel), save the cursor
 * after each page that was wholly handled (fenced by the lease), renew
 * the lease as it goes, and release at the end.
 */
#ifndef DBX_WORKER_H
#define DBX_WORKER_H

#include "app/state.h"

#include <stdbool.h>
#include <stdint.h>

/* Entries of one page handled at once, per worker thread. */
#define WORKER_PAGE_PARALLEL_DEFAULT 4
#define WORKER_PAGE_PARALLEL_MAX     32

struct worker_config {
    const char *api_url;     /* e.g. "https://api.dropboxapi.com" */
    const char *content_url; /* e.g. "https://content.dropboxapi.com" */
    const char *ca_file;     /* NULL: the system's trusted CAs */
    int64_t lease_ms;        /* default 30000 */
    int64_t idle_poll_ms;    /* how often an idle worker looks; 200 */
    /* Token refresh: endpoint (NULL: api_url/oauth2/token), app key and
     * secret (borrowed); without app_key expired tokens are not
     * refreshed. */
    const char *token_url;
    const char *app_key;
    const char *app_secret;
    unsigned page_parallel; /* 0: WORKER_PAGE_PARALLEL_DEFAULT */
    unsigned page_size;     /* entries asked per page (list_folder's
                               limit); 0: DBXAPI_LIST_LIMIT_DEFAULT */
    bool no_markdown;       /* turn the Markdown handler off */
    bool md_delete_html;    /* delete X.html when X.md goes (default keep) */
    /* The command handler, when command is not NULL (handler_cmd.h). */
    const char *command;
    int64_t command_timeout_ms;
    unsigned command_concurrency;
    const char *data_dir; /* where the command handler keeps its journal */
};

struct worker_pool;

/* NULL (logged) when a thread or client cannot be set up. */
struct worker_pool *worker_pool_start(struct state *st,
                                      const struct worker_config *cfg,
                                      unsigned threads);
/* Tells idle workers in this process that something became pending. */
void worker_pool_wake(struct worker_pool *p);
/* Lets each worker finish its current page, save the cursor and release
 * its lease, then joins the threads and frees the pool. */
void worker_pool_stop(struct worker_pool *p);

#endif
