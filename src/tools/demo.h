/*
 * demo: the whole loop on one machine, in one command (`dbxhook demo`).
 *
 * The demo runs the same binary twice as child processes, a cloud (HTTPS
 * on a free loopback port) and an app with two workers, then plays the
 * parts a person would: creates an account and an app in the cloud's
 * admin API, links them, stores the account's token in the app (through
 * `dbxhook appctl`), registers the app's webhook (the cloud verifies it
 * for real), uploads a folder through the file API and waits until every
 * Markdown file has an HTML twin equal to md4c's own rendering.
 *
 * Its entry point is demo_main in commands.h; this header holds only the
 * bounds, so that tests and documentation can name them.
 */
#ifndef DBX_DEMO_H
#define DBX_DEMO_H

/* How long each child may take to write its port file. */
#define DEMO_START_TIMEOUT_MS 20000
/* How long a child may take to exit after SIGTERM before SIGKILL. */
#define DEMO_STOP_TIMEOUT_MS 10000
/* How long one `appctl` run may take. */
#define DEMO_APPCTL_TIMEOUT_MS 30000
/* Default bound on the wait for conversions (--timeout-s). */
#define DEMO_TIMEOUT_S_DEFAULT 120
/* Time between two listings of the account while waiting. */
#define DEMO_POLL_MS 200

/* Bounds on the imported folder: files, nesting, and one file's size
 * (the largest single /2/files/upload). */
#define DEMO_MAX_FILES 20000
#define DEMO_MAX_DEPTH 64
/* Bounds on what the demo reads back: an admin answer, appctl's status,
 * the pages of one listing. */
#define DEMO_MAX_ADMIN_BODY (1024u * 1024)
#define DEMO_MAX_STATUS_JSON (8u * 1024 * 1024)
#define DEMO_MAX_LIST_PAGES 10000

#endif
