/*
 * dbxhook appctl: the app's state from the command line (docs/CLI.md).
 *
 *   token-set --account ID   stores the token read from stdin (a second
 *                            word, if any, is the refresh token)
 *   mark --account ID        marks the account pending
 *   cursor --account ID      prints the stored cursor (for checks)
 *   status                   prints the state as JSON
 *
 * It opens the same app.db as a running app; SQLite's locking makes that
 * safe, and a mark made here is seen by the app's workers on their next
 * look (they poll when idle).
 */
#include "commands.h"

#include "app/state.h"
#include "common/log.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Access tokens are a few hundred bytes; refuse anything absurd. */
#define APPCTL_TOKEN_MAX 8192

static void appctl_usage(FILE *out)
{
    fprintf(out, "usage: dbxhook appctl [--data DIR] COMMAND [args]\n"
                 "\n"
                 "  token-set --account ID  store the account's access token,\n"
                 "                          read from stdin; a second word\n"
                 "                          is its refresh token\n"
                 "  cursor --account ID     print the stored cursor\n"
                 "  mark --account ID       mark the account pending\n"
                 "  status                  print the state as JSON\n"
                 "\n"
                 "--data defaults to ./dbxhook-data/app.\n");
}

/* Reads stdin: the access token and, optionally, the refresh token,
 * separated by white space.  -1 (after saying why) when empty, too long
 * or more than two words. */
static int appctl_read_tokens(char **access, char **refresh)
{
    struct buf b;
    char chunk[1024];
    size_t n;
    char *text, *save = NULL, *w1, *w2;

    *access = *refresh = NULL;
    buf_init(&b, APPCTL_TOKEN_MAX);
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
        if (buf_append(&b, chunk, n) < 0) {
            fprintf(stderr, "dbxhook appctl: token longer than %u bytes\n",
                    APPCTL_TOKEN_MAX);
            buf_free(&b);
            return -1;
        }
    }
    text = buf_steal(&b);
    w1 = strtok_r(text, " \t\r\n", &save);
    w2 = w1 ? strtok_r(NULL, " \t\r\n", &save) : NULL;
    if (w1 == NULL || (w2 != NULL && strtok_r(NULL, " \t\r\n", &save))) {
        fprintf(stderr, "dbxhook appctl: stdin must hold the access token "
                        "and, optionally, the refresh token\n");
        free(text);
        return -1;
    }
    *access = xstrdup(w1);
    *refresh = w2 ? xstrdup(w2) : NULL;
    explicit_bzero(text, strlen(w1));
    free(text);
    return 0;
}

/* Parses "--account ID" (or --account=ID) as the only argument. */
static const char *appctl_account(int argc, char **argv)
{
    const char *id = NULL;

    if (argc == 3 && strcmp(argv[1], "--account") == 0)
        id = argv[2];
    else if (argc == 2 && strncmp(argv[1], "--account=", 10) == 0)
        id = argv[1] + 10;
    if (id == NULL) {
        fprintf(stderr, "dbxhook appctl: %s wants --account ID\n", argv[0]);
        return NULL;
    }
    if (!state_account_valid(id)) {
        fprintf(stderr,
                "dbxhook appctl: '%s' is not an account id "
                "(dbid:...)\n",
                id);
        return NULL;
    }
    return id;
}

static int appctl_token_set(struct state *st, const char *account)
{
    char *access, *refresh;
    enum state_status rc;

    if (appctl_read_tokens(&access, &refresh) < 0)
        return 1;
    rc = state_token_set(st, account, access, refresh, 0);
    explicit_bzero(access, strlen(access));
    free(access);
    if (refresh != NULL) {
        explicit_bzero(refresh, strlen(refresh));
        free(refresh);
    }
    if (rc != STATE_OK) {
        fprintf(stderr, "dbxhook appctl: cannot store the token\n");
        return 1;
    }
    fprintf(stderr, "token stored for %s\n", account);
    return 0;
}

static int appctl_cursor(struct state *st, const char *account)
{
    char *cursor = NULL;
    enum state_status rc = state_cursor_get(st, account, &cursor);

    if (rc == STATE_NONE) {
        fprintf(stderr, "dbxhook appctl: %s has no cursor yet\n", account);
        return 1;
    }
    if (rc != STATE_OK) {
        fprintf(stderr, "dbxhook appctl: cannot read the state\n");
        return 1;
    }
    printf("%s\n", cursor);
    free(cursor);
    return fflush(stdout) == 0 ? 0 : 1;
}

static int appctl_mark(struct state *st, const char *account)
{
    const char *ids[1] = {account};

    if (state_mark_pending(st, ids, 1) != STATE_OK) {
        fprintf(stderr, "dbxhook appctl: cannot mark %s\n", account);
        return 1;
    }
    fprintf(stderr, "marked %s pending\n", account);
    return 0;
}

static int appctl_status(struct state *st)
{
    char *json = NULL;

    if (state_status_json(st, &json) != STATE_OK) {
        fprintf(stderr, "dbxhook appctl: cannot read the state\n");
        return 1;
    }
    printf("%s\n", json);
    free(json);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* Runs one command (argv[0] is its name) against the store in data. */
static int appctl_run(const char *data, int argc, char **argv)
{
    const char *cmd = argv[0];
    const char *account = NULL;
    struct state *st;
    char *db;
    int rc;

    if (strcmp(cmd, "token-set") == 0 || strcmp(cmd, "mark") == 0 ||
        strcmp(cmd, "cursor") == 0) {
        account = appctl_account(argc, argv);
        if (account == NULL)
            return 2;
    } else if (strcmp(cmd, "status") == 0) {
        if (argc != 1) {
            fprintf(stderr, "dbxhook appctl: status takes no arguments\n");
            return 2;
        }
    } else {
        fprintf(stderr, "dbxhook appctl: unknown command '%s'\n", cmd);
        appctl_usage(stderr);
        return 2;
    }

    /* Opening would create an empty store: a mistyped --data must not
     * look like an app with no accounts.  Only token-set may create it
     * (seeding a store for workers that run without a receiver). */
    db = xasprintf("%s/app.db", data);
    if (strcmp(cmd, "token-set") != 0 && access(db, F_OK) != 0) {
        fprintf(stderr, "dbxhook appctl: no app state in %s (start "
                        "'dbxhook app --data %s' first, or check --data)\n",
                data, data);
        free(db);
        return 1;
    }
    free(db);
    st = state_open_sqlite(data);
    if (st == NULL) {
        fprintf(stderr, "dbxhook appctl: cannot open the state in %s\n", data);
        return 1;
    }
    if (strcmp(cmd, "token-set") == 0)
        rc = appctl_token_set(st, account);
    else if (strcmp(cmd, "mark") == 0)
        rc = appctl_mark(st, account);
    else if (strcmp(cmd, "cursor") == 0)
        rc = appctl_cursor(st, account);
    else
        rc = appctl_status(st);
    state_close(st);
    return rc;
}

int appctl_main(int argc, char **argv)
{
    const char *data = "./dbxhook-data/app";
    int i = 1;

    log_init("appctl", LOG_WARN);
    for (int k = 1; k < argc; k++) {
        if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0) {
            appctl_usage(stdout);
            return 0;
        }
    }
    if (i < argc && strcmp(argv[i], "--data") == 0) {
        if (i + 1 >= argc) {
            fprintf(stderr, "dbxhook appctl: '--data' needs a value\n");
            return 2;
        }
        data = argv[i + 1];
        i += 2;
    } else if (i < argc && strncmp(argv[i], "--data=", 7) == 0) {
        data = argv[i] + 7;
        i++;
    }
    if (i >= argc) {
        appctl_usage(stderr);
        return 2;
    }
    return appctl_run(data, argc - i, argv + i);
}
