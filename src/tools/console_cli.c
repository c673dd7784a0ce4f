/*
 * console_cli: `dbxhook console`, the cloud's admin API from the command
 * line (docs/CLI.md).  Each command becomes one POST /admin/<name> with a
 * JSON body; the answer's JSON is printed on stdout.
 *
 * Exit status: 0 when the cloud answered 200 (and, for webhook-set, the
 * webhook was verified), 1 for any other answer or a transport error,
 * 2 for a usage error.
 */
#include "commands.h"

#include "common/http_client.h"
#include "common/util.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONSOLE_TIMEOUT_MS 30000
/* The cloud verifies a webhook for up to its own timeout (10 s by
 * default); give it room. */
#define CONSOLE_WEBHOOK_TIMEOUT_MS 120000
#define CONSOLE_BODY_MAX (16u * 1024 * 1024)
#define CONSOLE_TOKEN_MAX 1024

struct console_opts {
    const char *cloud;
    const char *ca;
    const char *token_file;
};

/* What a command sends: the admin call and its body. */
struct console_call {
    const char *name;
    json_t *body;
    long timeout_ms;
};

static void console_usage(FILE *out)
{
    fprintf(out,
            "usage: dbxhook console [--cloud URL] [--ca FILE] "
            "[--admin-token-file FILE]\n"
            "                       COMMAND [args]\n\n"
            "  --cloud URL              (default https://127.0.0.1:8443)\n"
            "  --ca FILE                (default ./dbxhook-data/cloud/ca.pem)"
            "\n"
            "  --admin-token-file FILE  (default "
            "./dbxhook-data/cloud/admin.token)\n\n"
            "commands:\n"
            "  account-create --email E [--name N]\n"
            "  account-list\n"
            "  app-create --name N\n"
            "  app-list\n"
            "  link --app KEY --account ID [--scopes \"s1 s2\"]\n"
            "  webhook-set --app KEY --uri URI  (exit 1 if verification "
            "failed)\n"
            "  stats\n"
            "  webhook-enable --app KEY   (verifies again; exit 1 if it "
            "failed)\n"
            "  webhook-disable --app KEY\n"
            "  deliveries --app KEY [--limit N]\n"
            "  attempts (--app KEY | --notification ID) [--limit N]\n"
            "  redeliver --notification ID\n"
            "  alerts [--app KEY]\n"
            "  app-redirect-uris --app KEY --uri URI [--uri URI ...]\n"
            "  fault --account ID --kind KIND [--count N] [--route ROUTE]\n"
            "        (KIND: 429, 500, expired_access_token, "
            "invalid_access_token, reset)\n"
            "  fault-clear --account ID\n");
}

/* Reads "--name value" pairs of a command into the body, by the table
 * of accepted option names and the JSON member each one fills. */
static int console_args(int argc, char **argv, const char *const *opts,
                        const char *const *members, size_t n, json_t *body)
{
    for (int i = 1; i < argc; i++) {
        size_t k;

        if (strcmp(argv[i], "--help") == 0) {
            console_usage(stdout);
            return 1;
        }
        for (k = 0; k < n; k++) {
            if (strcmp(argv[i], opts[k]) == 0)
                break;
        }
        if (k == n || i + 1 >= argc) {
            fprintf(stderr, "dbxhook console %s: %s '%s'\n", argv[0],
                    k == n ? "unknown option" : "missing value for",
                    argv[i]);
            return 2;
        }
        json_object_set_new(body, members[k], json_string(argv[++i]));
    }
    return 0;
}

static int console_require(const char *cmd, json_t *body,
                           const char *member, const char *opt)
{
    if (json_object_get(body, member) != NULL)
        return 0;
    fprintf(stderr, "dbxhook console %s: %s is required\n", cmd, opt);
    return 2;
}

#define OPTS(...) ((const char *const[]){__VA_ARGS__})

/* The webhook delivery commands (issue 4): true when cmd is one of
 * them, with console_build's status in *rc. */
static bool console_build_delivery(int argc, char **argv,
                                   struct console_call *call, int *rc)
{
    static const struct {
        const char *cmd, *name, *required; /* required: member or NULL */
    } table[] = {
        {"webhook-enable", "webhooks/enable", "app_key"},
        {"webhook-disable", "webhooks/disable", "app_key"},
        {"deliveries", "deliveries/list", "app_key"},
        {"attempts", "attempts/list", NULL},
        {"redeliver", "deliveries/redeliver", "notification_id"},
        {"alerts", "alerts/list", NULL},
    };
    size_t i = 0;

    while (i < ARRAY_LEN(table) && strcmp(argv[0], table[i].cmd) != 0)
        i++;
    if (i == ARRAY_LEN(table))
        return false;
    call->name = table[i].name;
    if (i == 0)
        call->timeout_ms = CONSOLE_WEBHOOK_TIMEOUT_MS;
    *rc = console_args(argc, argv,
                       OPTS("--app", "--notification", "--limit"),
                       OPTS("app_key", "notification_id", "limit"), 3,
                       call->body);
    if (*rc == 0 && table[i].required != NULL)
        *rc = console_require(argv[0], call->body, table[i].required,
                              i == 4 ? "--notification" : "--app");
    if (*rc == 0 && i == 3 &&
        json_object_get(call->body, "app_key") == NULL)
        *rc = console_require(argv[0], call->body, "notification_id",
                              "--app or --notification");
    return true;
}

/* app-redirect-uris: every --uri joins the "uris" list. */
static int console_build_uris(int argc, char **argv, json_t *b)
{
    json_t *uris = json_array();
    int rc = 0;

    json_object_set_new(b, "uris", uris);
    for (int i = 1; i < argc && rc == 0; i++) {
        if (strcmp(argv[i], "--uri") == 0 && i + 1 < argc)
            json_array_append_new(uris, json_string(argv[++i]));
        else if (strcmp(argv[i], "--app") == 0 && i + 1 < argc)
            json_object_set_new(b, "app_key", json_string(argv[++i]));
        else
            rc = console_args(2, (char *[]){argv[0], argv[i]}, NULL, NULL,
                              0, b);
    }
    if (rc == 0 && json_array_size(uris) == 0)
        rc = console_require(argv[0], b, "uri", "--uri");
    return rc ? rc : console_require(argv[0], b, "app_key", "--app");
}

/* fault: --count becomes a number (default 1). */
static int console_build_fault(int argc, char **argv, json_t *b)
{
    const char *count;
    char *end;
    long n;
    int rc = console_args(argc, argv,
                          OPTS("--account", "--kind", "--count", "--route"),
                          OPTS("account_id", "fault", "count", "route"), 4,
                          b);

    if (rc == 0)
        rc = console_require(argv[0], b, "account_id", "--account");
    if (rc == 0)
        rc = console_require(argv[0], b, "fault", "--kind");
    count = json_string_value(json_object_get(b, "count"));
    if (rc != 0 || count == NULL)
        return rc;
    n = strtol(count, &end, 10);
    if (*count == '\0' || *end != '\0' || n < 1) {
        fprintf(stderr, "dbxhook console fault: --count needs a number "
                        ">= 1\n");
        return 2;
    }
    json_object_set_new(b, "count", json_integer(n));
    return 0;
}

/* The OAuth and fault commands (issue 3): true when cmd is one of them,
 * with console_build's status in *rc. */
static bool console_build_auth(int argc, char **argv,
                               struct console_call *call, int *rc)
{
    if (strcmp(argv[0], "app-redirect-uris") == 0) {
        call->name = "apps/set_redirect_uris";
        *rc = console_build_uris(argc, argv, call->body);
    } else if (strcmp(argv[0], "fault") == 0) {
        call->name = "faults/set";
        *rc = console_build_fault(argc, argv, call->body);
    } else if (strcmp(argv[0], "fault-clear") == 0) {
        call->name = "faults/clear";
        *rc = console_args(argc, argv, OPTS("--account"),
                           OPTS("account_id"), 1, call->body);
        if (*rc == 0)
            *rc = console_require(argv[0], call->body, "account_id",
                                  "--account");
    } else {
        return false;
    }
    return true;
}

/* Builds the call of a command.  Returns 0, 1 after --help, 2 on a
 * usage error. */
static int console_build(int argc, char **argv, struct console_call *call)
{
    const char *cmd = argv[0];
    json_t *b = call->body = json_object();
    int rc;

    call->timeout_ms = CONSOLE_TIMEOUT_MS;
    if (strcmp(cmd, "account-create") == 0) {
        call->name = "accounts/create";
        rc = console_args(argc, argv, OPTS("--email", "--name"),
                          OPTS("email", "name"), 2, b);
        return rc ? rc : console_require(cmd, b, "email", "--email");
    }
    if (strcmp(cmd, "app-create") == 0) {
        call->name = "apps/create";
        rc = console_args(argc, argv, OPTS("--name"), OPTS("name"), 1, b);
        return rc ? rc : console_require(cmd, b, "name", "--name");
    }
    if (strcmp(cmd, "link") == 0) {
        call->name = "links/create";
        rc = console_args(argc, argv,
                          OPTS("--app", "--account", "--scopes"),
                          OPTS("app_key", "account_id", "scopes"), 3, b);
        if (rc == 0)
            rc = console_require(cmd, b, "app_key", "--app");
        return rc ? rc : console_require(cmd, b, "account_id", "--account");
    }
    if (strcmp(cmd, "webhook-set") == 0) {
        call->name = "webhooks/set";
        call->timeout_ms = CONSOLE_WEBHOOK_TIMEOUT_MS;
        rc = console_args(argc, argv, OPTS("--app", "--uri"),
                          OPTS("app_key", "uri"), 2, b);
        if (rc == 0)
            rc = console_require(cmd, b, "app_key", "--app");
        return rc ? rc : console_require(cmd, b, "uri", "--uri");
    }
    if (console_build_delivery(argc, argv, call, &rc) ||
        console_build_auth(argc, argv, call, &rc))
        return rc;
    if (strcmp(cmd, "account-list") == 0)
        call->name = "accounts/list";
    else if (strcmp(cmd, "app-list") == 0)
        call->name = "apps/list";
    else if (strcmp(cmd, "stats") == 0)
        call->name = "stats";
    else {
        fprintf(stderr, "dbxhook console: unknown command '%s'\n", cmd);
        return 2;
    }
    return console_args(argc, argv, NULL, NULL, 0, b);
}

/* Prints the answer; returns the exit status it means. */
static int console_print(const struct console_call *call,
                         const struct hcli_response *resp)
{
    json_t *doc = json_loadb(resp->body, resp->body_len, 0, NULL);
    const char *state;
    char *text;
    int rc = resp->status == 200 ? 0 : 1;

    if (doc == NULL) {
        fprintf(stderr, "dbxhook console: status %ld, not JSON: %.200s\n",
                resp->status, resp->body ? resp->body : "");
        return 1;
    }
    text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", text);
    free(text);
    state = json_string_value(json_object_get(doc, "state"));
    if ((strcmp(call->name, "webhooks/set") == 0 ||
         strcmp(call->name, "webhooks/enable") == 0) &&
        (state == NULL || strcmp(state, "verified") != 0))
        rc = 1;
    if (resp->status != 200)
        fprintf(stderr, "dbxhook console: the cloud answered %ld\n",
                resp->status);
    json_decref(doc);
    return rc;
}

static int console_send(const struct console_opts *o,
                        const struct console_call *call)
{
    char *token = file_read_all(o->token_file, CONSOLE_TOKEN_MAX, NULL);
    char *url, *auth, *body;
    struct hcli_response resp = {0};
    struct hcli *h;
    int rc = 1;

    if (token == NULL) {
        fprintf(stderr, "dbxhook console: cannot read admin token %s: %s\n"
                "  (run from where 'dbxhook cloud' was started, or pass "
                "--admin-token-file and --ca)\n", o->token_file,
                strerror(errno));
        return 1;
    }
    str_rstrip(token);
    url = xasprintf("%s/admin/%s", o->cloud, call->name);
    auth = xasprintf("Authorization: Bearer %s", token);
    body = json_dumps(call->body, JSON_COMPACT);
    h = hcli_new(strncmp(o->cloud, "https:", 6) == 0 ? o->ca : NULL,
                 CONSOLE_BODY_MAX);
    {
        const char *headers[] = {auth, "Content-Type: application/json",
                                 NULL};
        struct hcli_request req = {
            .method = "POST", .url = url, .headers = headers,
            .body = body, .body_len = strlen(body),
            .timeout_ms = call->timeout_ms};

        if (hcli_perform(h, &req, &resp) < 0) {
            fprintf(stderr, "dbxhook console: %s: %s\n", url, resp.error);
            if (strncmp(o->cloud, "http:", 5) == 0)
                fprintf(stderr, "  (the cloud serves HTTPS unless started "
                        "with --http: try --cloud https://...)\n");
        }
        else
            rc = console_print(call, &resp);
    }
    hcli_response_free(&resp);
    hcli_free(h);
    free(body);
    free(auth);
    free(url);
    free(token);
    return rc;
}

static const struct option console_long_opts[] = {
    {"cloud", required_argument, NULL, 'c'},
    {"ca", required_argument, NULL, 'a'},
    {"admin-token-file", required_argument, NULL, 't'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int console_main(int argc, char **argv)
{
    struct console_opts o = {
        .cloud = "https://127.0.0.1:8443",
        .ca = "./dbxhook-data/cloud/ca.pem",
        .token_file = "./dbxhook-data/cloud/admin.token"};
    struct console_call call = {0};
    int ch, rc;

    optind = 1;
    /* "+": stop at the command, whose own options follow it. */
    while ((ch = getopt_long(argc, argv, "+", console_long_opts, NULL)) !=
           -1) {
        switch (ch) {
        case 'c': o.cloud = optarg; break;
        case 'a': o.ca = optarg; break;
        case 't': o.token_file = optarg; break;
        case 'h': console_usage(stdout); return 0;
        default: console_usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        console_usage(stderr);
        return 2;
    }
    rc = console_build(argc - optind, argv + optind, &call);
    if (rc == 0)
        rc = console_send(&o, &call);
    else if (rc == 1)
        rc = 0;
    json_decref(call.body);
    return rc;
}
