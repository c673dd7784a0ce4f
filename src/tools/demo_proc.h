/*
 * demo_proc: the child processes of `dbxhook demo` (private to
 * src/tools/demo*.c).
 *
 * The demo runs this same binary as children: the cloud and the app,
 * long-running with their output in a log file and their port in a port
 * file, and short `appctl` runs whose output the demo reads.  Every wait
 * here is bounded (the bounds are in demo.h) and cut short by SIGINT or
 * SIGTERM once demo_signals_install has run.
 */
#ifndef DBX_DEMO_PROC_H
#define DBX_DEMO_PROC_H

#include "common/util.h"

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

/* Set by SIGINT and SIGTERM: every wait of the demo ends early. */
extern volatile sig_atomic_t demo_interrupted;

/* A child process: the cloud or the app. */
struct demo_child {
    const char *name;
    pid_t pid; /* 0 when not running */
    char *port_file;
    char *log_path;
    int port;
};

/* Catches SIGINT and SIGTERM (setting demo_interrupted, without
 * SA_RESTART, so a signal cuts the current sleep or poll short) and
 * ignores SIGPIPE. */
void demo_signals_install(void);

/* Sleeps ms milliseconds, or less when a signal arrives. */
void demo_sleep_ms(long ms);

/* Wipes and frees a secret string (NULL is fine). */
void demo_free_secret(char *s);

/* environ with NAME=value added (or replacing NAME).  Free the array
 * and its last entry with demo_env_free. */
char **demo_env_with(const char *name, const char *value);
void demo_env_free(char **env);

/* Names the child and gives it DIR/NAME.port and DIR/NAME.log; the
 * strings are freed by demo_child_free. */
void demo_child_init(struct demo_child *c, const char *dir, const char *name);
void demo_child_free(struct demo_child *c);

/* Starts exe with argv and envp as the long-running child c, with its
 * output appended to c's log file and a stale port file removed first.
 * 0, or -1 (said on stderr). */
int demo_spawn(const char *exe, struct demo_child *c, char *const argv[],
               char *const envp[]);

/* Waits, bounded by DEMO_START_TIMEOUT_MS, until c has written its port
 * file, and sets c->port.  -1 (said on stderr) when c exited first, the
 * bound passed or the demo was interrupted. */
int demo_wait_port(struct demo_child *c);

/* SIGTERM, then SIGKILL if c has not exited within DEMO_STOP_TIMEOUT_MS;
 * an unclean exit is said on stderr.  Nothing when c is not running. */
void demo_stop(struct demo_child *c);

/* Runs `EXE appctl --data APP_DATA args...` with input (may be NULL) on
 * its stdin; its stdout goes into out (may be NULL), its stderr is
 * appended to log_path.  0 when it exited with status 0 within
 * DEMO_APPCTL_TIMEOUT_MS, else -1 (said on stderr). */
int demo_appctl_run(const char *exe, const char *app_data, const char *log_path,
                    const char *const *args, const char *input,
                    struct buf *out);

#endif
