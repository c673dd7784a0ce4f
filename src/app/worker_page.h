/*
 * worker_page: handles the entries of one list_folder page in parallel
 * (private to the worker).
 *
 * Up to n_apis threads, each with its own dbxapi (which already holds the
 * account's token), take the page's entries in order and hand each to
 * every handler in the chain.  The first entry that does not come back
 * HANDLER_OK stops the others from taking new entries: the page as a
 * whole has failed and will be retried from its start (handlers skip
 * what they already did).  Meanwhile the calling thread calls keep()
 * every keep_every_ms, so the lease is renewed however long the page
 * takes; when keep() returns false the page is abandoned as lost.
 */
#ifndef DBX_WORKER_PAGE_H
#define DBX_WORKER_PAGE_H

#include "app/dbxapi.h"
#include "app/handler.h"

#include <stdbool.h>
#include <stdint.h>

/* Handlers run one after another on each entry. */
#define WORKER_MAX_HANDLERS 4
/* Failure descriptions kept for status. */
#define WORKER_PAGE_WHAT_MAX 300

struct page_job {
    const struct handler *handlers[WORKER_MAX_HANDLERS];
    unsigned n_handlers;
    struct dbxapi **apis; /* one per thread */
    unsigned n_apis;
    const char *account;
    const struct dbxapi_page *page;
    bool (*keep)(void *ctx); /* false: the lease is lost */
    void *keep_ctx;
    int64_t keep_every_ms;
};

enum page_result {
    PAGE_OK,     /* every entry handled */
    PAGE_RETRY,  /* a temporary failure: retry_after_ms (-1: none) */
    PAGE_FAILED, /* an entry failed: what says which */
    PAGE_LOST,   /* keep() said the lease is gone */
};

struct page_outcome {
    enum page_result result;
    int64_t retry_after_ms;
    unsigned handled;
    char what[WORKER_PAGE_WHAT_MAX];
};

void page_handle(const struct page_job *job, struct page_outcome *out);

#endif
