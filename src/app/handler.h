/*
 * handler: what a worker does with each entry of a list_folder page.
 *
 * A handler is a struct of function pointers with its own context, so
 * that the worker never knows which one it runs (Markdown to HTML today,
 * a configurable command next).  handle_entry is called from several
 * worker threads at once, each with its own dbxapi (which already holds
 * the account's token), so a handler's context must be safe to share.
 *
 * Results tell the worker how to go on:
 *   HANDLER_OK      done with this entry (converted, or nothing to do).
 *   HANDLER_RETRY   a temporary failure (rate limit, server error, lost
 *                   connection, expired token): the worker stops the run,
 *                   keeps the cursor where it was and the account pending,
 *                   and tries again later.  *retry_after_ms, when the
 *                   handler sets it to 0 or more, is the server's wish.
 *   HANDLER_FAILED  this entry cannot be handled (a permanent error): the
 *                   worker records the failure and goes on with the page.
 */
#ifndef DBX_HANDLER_H
#define DBX_HANDLER_H

#include "app/dbxapi.h"

#include <stdint.h>

enum handler_result {
    HANDLER_OK = 0,
    HANDLER_RETRY,
    HANDLER_FAILED,
};

struct handler {
    const char *name; /* for logs, e.g. "markdown" */
    void *ctx;        /* the handler's own; passed back to every call */
    /* *retry_after_ms starts at -1 on every call. */
    enum handler_result (*handle_entry)(void *ctx, struct dbxapi *api,
                                        const char *account,
                                        const struct dbxapi_entry *entry,
                                        int64_t *retry_after_ms);
    /* Frees ctx; may be NULL. */
    void (*destroy)(void *ctx);
};

#endif
