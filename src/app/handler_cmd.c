/*
 * handler_cmd: a program per changed entry, once per file rev.  See
 * handler_cmd.h for the contract and the journal that makes it survive
 * kill -9.
 *
 * Between fork and exec only async-signal-safe calls are allowed (the
 * worker has many threads), so everything the runner needs (paths,
 * argv, envp) is built before the fork, and the runner itself only uses
 * open, write, fsync, rename, fork, execve, waitpid, kill, nanosleep and
 * _exit.
 */
#include "app/handler_cmd.h"

#include "common/log.h"
#include "common/sig.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Environment entries passed on at most (the rest are dropped). */
#define CMD_ENV_MAX 512
/* How often a runner looks at its command, and a worker at a runner. */
#define CMD_POLL_NS        2000000L
#define CMD_WAIT_POLL_MS   20
/* Extra time a worker waits for another process's runner. */
#define CMD_WAIT_GRACE_MS  5000
/* Runner exit codes. */
#define RUNNER_OK      0
#define RUNNER_FAILED  1
#define RUNNER_TIMEOUT 2
#define RUNNER_SPAWN   3

struct handler_cmd {
    struct state *st;
    char *command;
    char *dir; /* DATA/commands */
    int64_t timeout_ms;
    sem_t slots;
};

/* Everything the runner uses, built before the fork. */
struct cmd_spawn {
    char run_path[PATH_MAX];
    char done_path[PATH_MAX];
    char tmp_path[PATH_MAX];
    char *argv[4];
    char **envp;
    int64_t timeout_ms;
};

static const char *tag_name(enum dbxapi_tag t)
{
    switch (t) {
    case DBXAPI_FILE:
        return "file";
    case DBXAPI_FOLDER:
        return "folder";
    case DBXAPI_DELETED:
        return "deleted";
    }
    return "unknown";
}

/* ---- the runner (async-signal-safe only) ----------------------------- */

static void runner_write_pid(const char *path)
{
    char digits[24];
    size_t n = 0;
    long pid = (long)getpid();
    int fd;

    do {
        digits[sizeof digits - 1 - n++] = (char)('0' + pid % 10);
        pid /= 10;
    } while (pid > 0 && n < sizeof digits);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        _exit(RUNNER_SPAWN);
    if (write(fd, digits + sizeof digits - n, n) != (ssize_t)n)
        _exit(RUNNER_SPAWN);
    fsync(fd);
    close(fd);
}

static void runner_exec(const struct cmd_spawn *sp)
{
    sigset_t none;
    int nul;

    setpgid(0, 0);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    nul = open("/dev/null", O_RDONLY);
    if (nul >= 0)
        dup2(nul, 0);
    execve("/bin/sh", sp->argv, sp->envp);
    _exit(127);
}

static int64_t runner_elapsed_ms(const struct timespec *start)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(now.tv_sec - start->tv_sec) * 1000 +
           (now.tv_nsec - start->tv_nsec) / 1000000;
}

static void runner_main(const struct cmd_spawn *sp)
{
    struct timespec start, nap = {0, CMD_POLL_NS};
    int status = 0;
    pid_t child;
    int fd;

    /* Keep none of the worker's descriptors (its sockets, its database)
     * alive past the worker. */
    close_range(3, ~0U, 0);
    runner_write_pid(sp->run_path);
    child = fork();
    if (child == 0)
        runner_exec(sp);
    if (child < 0)
        _exit(RUNNER_SPAWN);
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (waitpid(child, &status, WNOHANG) != child) {
        if (runner_elapsed_ms(&start) > sp->timeout_ms) {
            kill(-child, SIGKILL);
            kill(child, SIGKILL);
            waitpid(child, &status, 0);
            _exit(RUNNER_TIMEOUT);
        }
        nanosleep(&nap, NULL);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        _exit(RUNNER_FAILED);
    fd = open(sp->tmp_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        _exit(RUNNER_FAILED);
    fsync(fd);
    close(fd);
    if (rename(sp->tmp_path, sp->done_path) != 0)
        _exit(RUNNER_FAILED);
    _exit(RUNNER_OK);
}

/* ---- the worker's side ----------------------------------------------- */

static bool file_exists(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0;
}

/* The environment of the command: ours without the app secret and any
 * DBXHOOK_ variable, plus the entry's.  Freed with env_free. */
static char **env_build(const char *account, const struct dbxapi_entry *e)
{
    char **envp = xcalloc(CMD_ENV_MAX + 6, sizeof *envp);
    size_t n = 0;

    for (char **v = environ; v != NULL && *v != NULL && n < CMD_ENV_MAX; v++) {
        if (strncmp(*v, "DBXHOOK_", 8) != 0)
            envp[n++] = xstrdup(*v);
    }
    envp[n++] = xasprintf("DBXHOOK_ACCOUNT=%s", account);
    envp[n++] = xasprintf("DBXHOOK_PATH=%s",
                          e->path_display ? e->path_display
                          : e->path_lower ? e->path_lower
                                          : "");
    envp[n++] = xasprintf("DBXHOOK_PATH_LOWER=%s",
                          e->path_lower ? e->path_lower : "");
    envp[n++] = xasprintf("DBXHOOK_TAG=%s", tag_name(e->tag));
    envp[n++] = xasprintf("DBXHOOK_REV=%s", e->rev ? e->rev : "");
    envp[n] = NULL;
    return envp;
}

static void env_free(char **envp)
{
    for (size_t i = 0; envp[i] != NULL; i++)
        free(envp[i]);
    free(envp);
}

/* Names the journal files of one (account, path, rev or tag). */
static void spawn_paths(struct handler_cmd *c, struct cmd_spawn *sp,
                        const char *account, const struct dbxapi_entry *e)
{
    char key[SIG_HEX_LEN + 1];
    char *text = xasprintf("%s\n%s\n%s", account,
                           e->path_lower ? e->path_lower : "",
                           e->rev ? e->rev : tag_name(e->tag));

    sha256_hex(text, strlen(text), key);
    free(text);
    snprintf(sp->run_path, sizeof sp->run_path, "%s/%s.run", c->dir, key);
    snprintf(sp->done_path, sizeof sp->done_path, "%s/%s.done", c->dir, key);
    snprintf(sp->tmp_path, sizeof sp->tmp_path, "%s/%s.tmp", c->dir, key);
}

/* A runner left by another (dead) worker may still be at work: waits for
 * it to end, so that the command is not started twice. */
static void wait_foreign_runner(struct handler_cmd *c,
                                const struct cmd_spawn *sp)
{
    char *text = file_read_all(sp->run_path, 32, NULL);
    long pid = text ? strtol(text, NULL, 10) : 0;
    int64_t deadline = time_mono_ms() + c->timeout_ms + CMD_WAIT_GRACE_MS;

    free(text);
    if (pid <= 0)
        return;
    while (kill((pid_t)pid, 0) == 0 && time_mono_ms() < deadline) {
        struct timespec nap = {0, CMD_WAIT_POLL_MS * 1000000L};

        nanosleep(&nap, NULL);
    }
}

/* Records the entry as handled and clears its journal files. */
static enum handler_result cmd_done(struct handler_cmd *c,
                                    const struct cmd_spawn *sp,
                                    const char *account,
                                    const struct dbxapi_entry *e)
{
    if (e->rev != NULL && e->path_lower != NULL &&
        state_handled_put(c->st, account, e->path_lower, e->rev) != STATE_OK)
        return HANDLER_RETRY;
    unlink(sp->done_path);
    unlink(sp->run_path);
    return HANDLER_OK;
}

/* Forks the runner and waits for it; its exit code. */
static int cmd_spawn_wait(struct handler_cmd *c, struct cmd_spawn *sp)
{
    int status = 0;
    pid_t pid;

    sem_wait(&c->slots);
    pid = fork();
    if (pid == 0)
        runner_main(sp);
    while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    sem_post(&c->slots);
    if (pid < 0)
        return RUNNER_SPAWN;
    return WIFEXITED(status) ? WEXITSTATUS(status) : RUNNER_FAILED;
}

static enum handler_result cmd_handle_entry(void *ctx, struct dbxapi *api,
                                            const char *account,
                                            const struct dbxapi_entry *e,
                                            int64_t *retry_after_ms)
{
    struct handler_cmd *c = ctx;
    struct cmd_spawn sp = {.timeout_ms = c->timeout_ms};
    const char *path = e->path_display ? e->path_display : "";
    int rc;

    (void)api;
    (void)retry_after_ms;
    if (e->path_lower == NULL)
        return HANDLER_OK;
    if (e->rev != NULL &&
        state_handled_check(c->st, account, e->path_lower, e->rev) ==
            STATE_OK) {
        state_counter_add(c->st, "skipped_handled", 1);
        return HANDLER_OK;
    }
    spawn_paths(c, &sp, account, e);
    if (file_exists(sp.run_path) && !file_exists(sp.done_path))
        wait_foreign_runner(c, &sp);
    if (file_exists(sp.done_path))
        return cmd_done(c, &sp, account, e);

    sp.argv[0] = "sh";
    sp.argv[1] = "-c";
    sp.argv[2] = c->command;
    sp.argv[3] = NULL;
    sp.envp = env_build(account, e);
    rc = cmd_spawn_wait(c, &sp);
    env_free(sp.envp);
    if (rc == RUNNER_OK && file_exists(sp.done_path)) {
        state_counter_add(c->st, "commands", 1);
        LOG_D("command done account=%s path=%s", account, path);
        return cmd_done(c, &sp, account, e);
    }
    unlink(sp.run_path);
    LOG_W("command failed account=%s path=%s tag=%s reason=%s", account, path,
          tag_name(e->tag),
          rc == RUNNER_TIMEOUT ? "timeout"
          : rc == RUNNER_SPAWN ? "spawn"
                               : "exit_status");
    return HANDLER_FAILED;
}

static void cmd_destroy(void *ctx)
{
    struct handler_cmd *c = ctx;

    sem_destroy(&c->slots);
    free(c->command);
    free(c->dir);
    free(c);
}

int handler_cmd_init(struct handler *h, struct state *st,
                     const struct handler_cmd_config *cfg)
{
    struct handler_cmd *c = xcalloc(1, sizeof *c);
    unsigned slots = cfg->concurrency;

    if (slots == 0)
        slots = HANDLER_CMD_CONCURRENCY_DEFAULT;
    if (slots > HANDLER_CMD_CONCURRENCY_MAX)
        slots = HANDLER_CMD_CONCURRENCY_MAX;
    c->st = st;
    c->command = xstrdup(cfg->command);
    c->dir = xasprintf("%s/commands",
                       cfg->journal_dir ? cfg->journal_dir : ".");
    c->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms
                                        : HANDLER_CMD_TIMEOUT_DEFAULT_MS;
    if (mkdir_p(c->dir, 0700) < 0 || sem_init(&c->slots, 0, slots) != 0) {
        LOG_E("command handler cannot set up dir=%s", c->dir);
        free(c->command);
        free(c->dir);
        free(c);
        return -1;
    }
    h->name = "command";
    h->ctx = c;
    h->handle_entry = cmd_handle_entry;
    h->destroy = cmd_destroy;
    return 0;
}
