/*
 * handler_cmd: runs a configured program for every changed entry.
 *
 * The command line is run with /bin/sh -c, its environment extended with
 *   DBXHOOK_ACCOUNT     the account id
 *   DBXHOOK_PATH        the entry's path_display (path_lower if none)
 *   DBXHOOK_PATH_LOWER  the entry's path_lower
 *   DBXHOOK_TAG         "file", "folder" or "deleted"
 *   DBXHOOK_REV         the file's rev ("" for folders and deletions)
 * and its exit status decides: 0 is done, anything else (or running
 * longer than timeout_ms, after which its process group is killed) fails
 * the entry, so the page is retried with backoff.  At most concurrency
 * commands run at once in the process.
 *
 * Once only, for files: a handled record (account, path_lower, rev) is
 * stored after the command succeeds, and an entry with a record is
 * skipped (counter "skipped_handled").  The gap between "the command
 * finished" and "the record is stored" is closed by a small journal in
 * journal_dir/commands: the command runs under a runner process that is
 * not killed with the worker; the runner notes its pid in KEY.run before
 * it starts the command and writes KEY.done when the command succeeded.
 * A worker that finds KEY.done stores the record; one that finds a live
 * runner waits for it.  So a worker killed with kill -9 at any moment
 * neither loses nor repeats a command, as long as the runner's host
 * survives.  Folders and deletions have no rev: they are run at least
 * once, and again when their page is retried.
 */
#ifndef DBX_HANDLER_CMD_H
#define DBX_HANDLER_CMD_H

#include "app/handler.h"
#include "app/state.h"

#include <stdint.h>

#define HANDLER_CMD_TIMEOUT_DEFAULT_MS 60000
#define HANDLER_CMD_CONCURRENCY_DEFAULT 4
#define HANDLER_CMD_CONCURRENCY_MAX 256

struct handler_cmd_config {
    const char *command;     /* shell command line; copied */
    int64_t timeout_ms;      /* 0: HANDLER_CMD_TIMEOUT_DEFAULT_MS */
    unsigned concurrency;    /* 0: HANDLER_CMD_CONCURRENCY_DEFAULT */
    const char *journal_dir; /* the app's data directory; copied */
};

/* Fills h; -1 (logged) when the journal directory cannot be made. */
int handler_cmd_init(struct handler *h, struct state *st,
                     const struct handler_cmd_config *cfg);

#endif
