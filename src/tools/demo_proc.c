/*
 * demo_proc: the child processes of `dbxhook demo`: starting them,
 * waiting for their port files, stopping and reaping them, and running
 * `dbxhook appctl` with its output read back.  See demo_proc.h.
 */
#include "tools/demo_proc.h"

#include "tools/demo.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

volatile sig_atomic_t demo_interrupted;

/* ---- signals and small helpers ---------------------------------------- */

static void demo_on_signal(int signo)
{
    (void)signo;
    demo_interrupted = 1;
}

void demo_signals_install(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = demo_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

void demo_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

void demo_free_secret(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* ---- child processes -------------------------------------------------- */

char **demo_env_with(const char *name, const char *value)
{
    size_t n = 0, len = strlen(name), k = 0;
    char **env;

    while (environ[n] != NULL)
        n++;
    env = xcalloc(n + 2, sizeof *env);
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], name, len) != 0 || environ[i][len] != '=')
            env[k++] = environ[i];
    }
    env[k] = xasprintf("%s=%s", name, value);
    return env;
}

void demo_env_free(char **env)
{
    size_t n = 0;

    while (env[n + 1] != NULL)
        n++;
    demo_free_secret(env[n]);
    free(env);
}

/* In the forked child: wires stdin/stdout/stderr (-1: /dev/null for
 * stdin, unchanged for the others), asks to be killed with the parent,
 * and runs the program.  Never returns. */
static void demo_exec(const char *exe, char *const argv[], char *const envp[],
                      int in, int out, int err, pid_t parent)
{
    if (in < 0)
        in = open("/dev/null", O_RDONLY);
    if (in >= 0)
        dup2(in, STDIN_FILENO);
    if (out >= 0)
        dup2(out, STDOUT_FILENO);
    if (err >= 0)
        dup2(err, STDERR_FILENO);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(127);
    execve(exe, argv, envp);
    _exit(127);
}

void demo_child_init(struct demo_child *c, const char *dir, const char *name)
{
    c->name = name;
    c->port_file = xasprintf("%s/%s.port", dir, name);
    c->log_path = xasprintf("%s/%s.log", dir, name);
}

void demo_child_free(struct demo_child *c)
{
    free(c->port_file);
    free(c->log_path);
    c->port_file = c->log_path = NULL;
}

int demo_spawn(const char *exe, struct demo_child *c, char *const argv[],
               char *const envp[])
{
    pid_t parent = getpid(), pid;
    int fd;

    unlink(c->port_file);
    fd = open(c->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "dbxhook demo: cannot open %s: %s\n", c->log_path,
                strerror(errno));
        return -1;
    }
    pid = fork();
    if (pid == 0)
        demo_exec(exe, argv, envp, -1, fd, fd, parent);
    close(fd);
    if (pid < 0) {
        fprintf(stderr, "dbxhook demo: fork: %s\n", strerror(errno));
        return -1;
    }
    c->pid = pid;
    return 0;
}

/* A port number from the file, or 0 while it is absent or incomplete. */
static int demo_read_port(const char *path)
{
    size_t len;
    char *text = file_read_all(path, 32, &len), *end;
    long port = 0;

    if (text == NULL)
        return 0;
    port = strtol(text, &end, 10);
    if (end == text || (*end != '\0' && *end != '\n') || port < 1 ||
        port > 65535)
        port = 0;
    free(text);
    return (int)port;
}

/* The port is read twice, 20 ms apart, so a file caught half-written
 * is not taken for a shorter number. */
int demo_wait_port(struct demo_child *c)
{
    int64_t deadline = time_mono_ms() + DEMO_START_TIMEOUT_MS;
    int status, port, last = 0;

    while (!demo_interrupted) {
        port = demo_read_port(c->port_file);
        if (port != 0 && port == last) {
            c->port = port;
            return 0;
        }
        last = port;
        if (waitpid(c->pid, &status, WNOHANG) == c->pid) {
            c->pid = 0;
            fprintf(stderr,
                    "dbxhook demo: the %s exited before listening; "
                    "see %s\n",
                    c->name, c->log_path);
            return -1;
        }
        if (time_mono_ms() > deadline) {
            fprintf(stderr,
                    "dbxhook demo: the %s did not listen within %d ms; "
                    "see %s\n",
                    c->name, DEMO_START_TIMEOUT_MS, c->log_path);
            return -1;
        }
        demo_sleep_ms(20);
    }
    return -1;
}

/* Waits for pid until deadline (monotonic ms); true when it exited. */
static bool demo_reap(pid_t pid, int64_t deadline, int *status)
{
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            return true;
        if (time_mono_ms() >= deadline)
            return false;
        demo_sleep_ms(20);
    }
}

/* An unclean exit is reported: it may be a sanitizer's finding. */
void demo_stop(struct demo_child *c)
{
    int status = 0;

    if (c->pid <= 0)
        return;
    kill(c->pid, SIGTERM);
    if (!demo_reap(c->pid, time_mono_ms() + DEMO_STOP_TIMEOUT_MS, &status)) {
        fprintf(stderr, "dbxhook demo: the %s ignored SIGTERM; killing it\n",
                c->name);
        kill(c->pid, SIGKILL);
        waitpid(c->pid, &status, 0);
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr,
                "dbxhook demo: the %s stopped uncleanly (status %d); "
                "see %s\n",
                c->name, status, c->log_path);
    }
    c->pid = 0;
}

/* Reads fd until EOF into out, bounded by out's maximum and deadline. */
static int demo_read_all(int fd, struct buf *out, int64_t deadline)
{
    char chunk[4096];

    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - time_mono_ms();
        if (left <= 0)
            return -1;
        int r = poll(&p, 1, (int)(left < 1000 ? left : 1000));
        if (r < 0 && errno != EINTR)
            return -1;
        if (r <= 0)
            continue;
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n == 0)
            return 0;
        if (n < 0 && errno != EINTR && errno != EAGAIN)
            return -1;
        if (n > 0 && buf_append(out, chunk, (size_t)n) < 0)
            return -1;
    }
}

/* appctl's stderr is noise unless it fails, hence the log file. */
int demo_appctl_run(const char *exe, const char *app_data, const char *log_path,
                    const char *const *args, const char *input, struct buf *out)
{
    int64_t deadline = time_mono_ms() + DEMO_APPCTL_TIMEOUT_MS;
    char *argv[12] = {(char *)exe, "appctl", "--data", (char *)app_data};
    int in[2] = {-1, -1}, outp[2] = {-1, -1}, status = 0, rc = -1;
    int log_fd = -1;
    size_t n = 4;
    struct buf sink;
    pid_t parent = getpid(), pid;

    for (; *args != NULL && n < ARRAY_LEN(argv) - 1; args++)
        argv[n++] = (char *)*args;
    buf_init(&sink, DEMO_MAX_STATUS_JSON);
    log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(outp, O_CLOEXEC) < 0)
        goto out;
    pid = fork();
    if (pid == 0)
        demo_exec(exe, argv, environ, in[0], outp[1], log_fd, parent);
    close(in[0]);
    close(outp[1]);
    in[0] = outp[1] = -1;
    if (pid < 0)
        goto out;
    if (input != NULL && write(in[1], input, strlen(input)) < 0)
        fprintf(stderr, "dbxhook demo: appctl stdin: %s\n", strerror(errno));
    close(in[1]);
    in[1] = -1;
    if (demo_read_all(outp[0], out != NULL ? out : &sink, deadline) < 0)
        kill(pid, SIGKILL);
    if (!demo_reap(pid, deadline, &status)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        rc = 0;
    else
        fprintf(stderr, "dbxhook demo: appctl %s failed (status %d); see %s\n",
                argv[4], status, log_path);
out:
    if (log_fd >= 0)
        close(log_fd);
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (outp[i] >= 0)
            close(outp[i]);
    }
    buf_free(&sink);
    return rc;
}
