/*
 * demo: `dbxhook demo`, the whole loop in one command.  See demo.h for
 * the steps and docs/CLI.md for the options.
 *
 * The demo is a client of the other commands and talks to them only the
 * way a user would: it starts them as child processes of this same
 * binary, calls the cloud's admin and file APIs over HTTPS, and runs
 * `dbxhook appctl` for the app's side.  Nothing is shared in memory, so a
 * green demo says the real programs work together.
 *
 * Every wait is bounded: the children's start, the conversions
 * (--timeout-s), each appctl run and the children's stop.  SIGINT and
 * SIGTERM end the current wait and stop the children.
 */
#include "tools/demo.h"

#include "app/dbxapi.h"
#include "app/handler_md.h"
#include "commands.h"
#include "common/http_client.h"
#include "common/log.h"
#include "common/pathx.h"
#include "common/sig.h"
#include "common/util.h"
#include "tools/demo_proc.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

#define DEMO_WORKERS "2"
#define DEMO_ADMIN_TIMEOUT_MS 30000
#define DEMO_UPLOAD_ATTEMPTS 5
#define DEMO_REPORT_MAX 10  /* files named when conversions are missing */
#define DEMO_PROGRESS_EVERY 10
#define DEMO_STATS_TRIES 20 /* reads of the counts: see demo_read_counts */
#define DEMO_STATS_WAIT_MS 100

struct demo_opts {
    const char *import_dir; /* NULL: the bundled sample */
    const char *data_dir;   /* NULL: a fresh temporary directory */
    long timeout_s;
    bool keep;
};

/* One file of the imported folder. */
struct demo_file {
    char *local;      /* path on disk */
    char *remote;     /* "/sample/notes/a.md" */
    bool is_md;
    char *html_lower; /* folded path of its .html twin (Markdown only) */
    char html_sha[SIG_HEX_LEN + 1]; /* SHA-256 of md4c's rendering */
    char *checked_rev; /* rev of the .html last compared, or NULL */
    bool differs;      /* that .html did not match */
    bool verified;
};

struct demo {
    struct demo_opts opts;
    char *exe;    /* this program, to run its other commands */
    char *dir;    /* the data directory */
    bool dir_is_temp;
    char *folder; /* the folder to upload, absolute */
    struct demo_child cloud;
    struct demo_child app;
    char *cloud_url; /* "https://127.0.0.1:P" */
    char *ca_file;
    char *admin_token;
    char *app_data;
    struct hcli *admin;
    struct dbxapi *api;
    char *account_id;
    char *app_key;
    char *app_secret;
    char *token;
    struct demo_file *files; /* everything but Markdown first */
    size_t n_files;
    size_t n_md;
    size_t n_skipped; /* symbolic links and special files */
    size_t n_uploaded;
    struct demo_file **by_html; /* the Markdown files, by html_lower */
    size_t n_verified;
    int64_t start_ms;
};

/* ---- small helpers ---------------------------------------------------- */

static bool demo_is_dir(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A copy of the string member key of obj, or NULL. */
static char *demo_json_str(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s != NULL ? xstrdup(s) : NULL;
}

/* ---- options ---------------------------------------------------------- */

static void demo_usage(FILE *out)
{
    fprintf(out,
        "usage: dbxhook demo [--import DIR] [--data DIR] [--timeout-s N]"
        " [--keep]\n"
        "\n"
        "Starts the cloud and the app on free loopback ports, links an\n"
        "account, registers the webhook, uploads a folder and waits\n"
        "until every .md file has a correct .html twin.\n"
        "\n"
        "  --import DIR     folder to upload (default: the bundled"
        " sample/)\n"
        "  --data DIR       keep all state in DIR (default: a temporary\n"
        "                   directory, removed when the demo succeeds)\n"
        "  --timeout-s N    give up waiting for conversions after N s"
        " (default %d)\n"
        "  --keep           keep the temporary directory\n",
        DEMO_TIMEOUT_S_DEFAULT);
}

/* 0 to run, 1 when --help was answered, -1 on a usage error. */
static int demo_parse(int argc, char **argv, struct demo_opts *o)
{
    static const struct option longopts[] = {
        {"import", required_argument, NULL, 'i'},
        {"data", required_argument, NULL, 'd'},
        {"timeout-s", required_argument, NULL, 't'},
        {"keep", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char *end;
    int c;

    o->timeout_s = DEMO_TIMEOUT_S_DEFAULT;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'i': o->import_dir = optarg; break;
        case 'd': o->data_dir = optarg; break;
        case 'k': o->keep = true; break;
        case 'h': demo_usage(stdout); return 1;
        case 't':
            errno = 0;
            o->timeout_s = strtol(optarg, &end, 10);
            if (errno || *end || o->timeout_s < 1 ||
                o->timeout_s > 86400) {
                fprintf(stderr, "dbxhook demo: --timeout-s wants 1 to 86400\n");
                return -1;
            }
            break;
        default: demo_usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dbxhook demo: unexpected argument '%s'\n",
                argv[optind]);
        return -1;
    }
    return 0;
}

/* ---- directories ------------------------------------------------------ */

/* The bundled sample: ../sample beside the binary's directory (the
 * build tree sits in the repository), else ./sample. */
static char *demo_find_sample(const char *exe)
{
    char *dir = xstrdup(exe);
    char *slash = strrchr(dir, '/');
    char *found = NULL;

    if (slash != NULL) {
        *slash = '\0';
        char *guess = xasprintf("%s/../sample", dir);
        if (demo_is_dir(guess))
            found = realpath(guess, NULL);
        free(guess);
    }
    if (found == NULL && demo_is_dir("sample"))
        found = realpath("sample", NULL);
    free(dir);
    return found;
}

static int demo_prepare_dirs(struct demo *d)
{
    const char *tmp = getenv("TMPDIR");

    if (d->opts.data_dir != NULL) {
        if (mkdir_p(d->opts.data_dir, 0700) < 0) {
            fprintf(stderr, "dbxhook demo: cannot create %s: %s\n",
                    d->opts.data_dir, strerror(errno));
            return -1;
        }
        d->dir = realpath(d->opts.data_dir, NULL);
    } else {
        d->dir = xasprintf("%s/dbxhook-demo-XXXXXX",
                           tmp != NULL && *tmp ? tmp : "/tmp");
        if (mkdtemp(d->dir) == NULL) {
            fprintf(stderr, "dbxhook demo: cannot create %s: %s\n", d->dir,
                    strerror(errno));
            return -1;
        }
        d->dir_is_temp = true;
    }
    if (d->dir == NULL)
        return -1;
    d->app_data = xasprintf("%s/app", d->dir);
    return 0;
}

/* rm -r, bounded in depth; symbolic links are removed, not followed. */
static void demo_remove_tree(const char *path, int depth)
{
    struct stat st;
    struct dirent *de;
    DIR *dir;

    if (lstat(path, &st) < 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    if (depth < DEMO_MAX_DEPTH && (dir = opendir(path)) != NULL) {
        while ((de = readdir(dir)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 ||
                strcmp(de->d_name, "..") == 0)
                continue;
            char *child = xasprintf("%s/%s", path, de->d_name);
            demo_remove_tree(child, depth + 1);
            free(child);
        }
        closedir(dir);
    }
    rmdir(path);
}

/* Runs `dbxhook appctl --data APP args...` for the demo's app; see
 * demo_appctl_run. */
static int demo_appctl(struct demo *d, const char *const *args,
                       const char *input, struct buf *out)
{
    return demo_appctl_run(d->exe, d->app_data, d->app.log_path, args,
                           input, out);
}

/* ---- the cloud's admin API -------------------------------------------- */

/* POST /admin/<name> with body (consumed).  On 0, *answer is the JSON
 * object the cloud returned (caller decrefs). */
static int demo_admin(struct demo *d, const char *name, json_t *body,
                      json_t **answer)
{
    char *url = xasprintf("%s/admin/%s", d->cloud_url, name);
    char *auth = xasprintf("Authorization: Bearer %s", d->admin_token);
    const char *headers[] = {auth, "Content-Type: application/json", NULL};
    char *text = json_dumps(body, JSON_COMPACT);
    struct hcli_request req = {
        .method = "POST", .url = url, .headers = headers, .body = text,
        .body_len = text != NULL ? strlen(text) : 0,
        .timeout_ms = DEMO_ADMIN_TIMEOUT_MS,
    };
    struct hcli_response resp = {0};
    json_error_t jerr;
    int rc = -1;

    *answer = NULL;
    if (hcli_perform(d->admin, &req, &resp) < 0) {
        fprintf(stderr, "dbxhook demo: admin %s: %s\n", name, resp.error);
        goto out;
    }
    if (resp.status != 200) {
        fprintf(stderr, "dbxhook demo: admin %s: HTTP %ld %.200s\n", name,
                resp.status, resp.body != NULL ? resp.body : "");
        goto out;
    }
    *answer = json_loadb(resp.body, resp.body_len, 0, &jerr);
    if (!json_is_object(*answer)) {
        fprintf(stderr, "dbxhook demo: admin %s: answer is not a JSON object\n",
                name);
        json_decref(*answer);
        *answer = NULL;
        goto out;
    }
    rc = 0;
out:
    hcli_response_free(&resp);
    free(text);
    free(url);
    demo_free_secret(auth);
    json_decref(body);
    return rc;
}

/* An account, an app, and a link between them (with every scope). */
static int demo_create_account_and_app(struct demo *d)
{
    unsigned char rnd[4];
    char hex[9], *email;
    json_t *a = NULL;
    int rc = -1;

    rand_bytes(rnd, sizeof rnd);
    hex_encode(rnd, sizeof rnd, hex);
    email = xasprintf("demo-%s@example.com", hex);
    if (demo_admin(d, "accounts/create",
                   json_pack("{s:s, s:s}", "email", email, "name",
                             "Demo User"), &a) < 0)
        goto out;
    d->account_id = demo_json_str(a, "account_id");
    json_decref(a);
    if (demo_admin(d, "apps/create",
                   json_pack("{s:s}", "name", "dbxhook demo"), &a) < 0)
        goto out;
    d->app_key = demo_json_str(a, "app_key");
    d->app_secret = demo_json_str(a, "app_secret");
    json_decref(a);
    if (d->account_id == NULL || d->app_key == NULL ||
        d->app_secret == NULL) {
        fprintf(stderr, "dbxhook demo: the cloud's answers lack ids\n");
        goto out;
    }
    if (demo_admin(d, "links/create",
                   json_pack("{s:s, s:s}", "app_key", d->app_key,
                             "account_id", d->account_id), &a) < 0)
        goto out;
    d->token = demo_json_str(a, "access_token");
    json_decref(a);
    if (d->token == NULL) {
        fprintf(stderr, "dbxhook demo: links/create gave no access token\n");
        goto out;
    }
    printf("account  %s linked to app %s\n", d->account_id, d->app_key);
    rc = 0;
out:
    free(email);
    return rc;
}

/* Registers the app's webhook; the cloud verifies it before answering. */
static int demo_set_webhook(struct demo *d)
{
    char *uri = xasprintf("http://127.0.0.1:%d/webhook", d->app.port);
    json_t *a = NULL;
    const char *state, *error;
    int rc = -1;

    if (demo_admin(d, "webhooks/set",
                   json_pack("{s:s, s:s}", "app_key", d->app_key, "uri",
                             uri), &a) < 0)
        goto out;
    state = json_string_value(json_object_get(a, "state"));
    error = json_string_value(json_object_get(a, "error"));
    if (state == NULL || strcmp(state, "verified") != 0) {
        fprintf(stderr, "dbxhook demo: webhook %s was not verified: %s (%s)\n",
                uri, state != NULL ? state : "?",
                error != NULL ? error : "no error given");
        goto out;
    }
    printf("webhook  %s verified\n", uri);
    rc = 0;
out:
    json_decref(a);
    free(uri);
    return rc;
}

/* ---- starting the two servers ----------------------------------------- */

static int demo_start_cloud(struct demo *d)
{
    char *data = xasprintf("%s/cloud", d->dir), *token_path;
    char *argv[] = {d->exe, "cloud", "--listen", "127.0.0.1:0",
                    "--port-file", d->cloud.port_file, "--data", data,
                    NULL};
    int rc = -1;

    token_path = xasprintf("%s/admin.token", data);
    d->ca_file = xasprintf("%s/ca.pem", data);
    if (demo_spawn(d->exe, &d->cloud, argv, environ) < 0 ||
        demo_wait_port(&d->cloud) < 0)
        goto out;
    d->cloud_url = xasprintf("https://127.0.0.1:%d", d->cloud.port);
    d->admin_token = file_read_all(token_path, 4096, NULL);
    if (d->admin_token == NULL) {
        fprintf(stderr, "dbxhook demo: cannot read %s\n", token_path);
        goto out;
    }
    str_rstrip(d->admin_token);
    d->admin = hcli_new(d->ca_file, DEMO_MAX_ADMIN_BODY);
    if (d->admin == NULL)
        goto out;
    printf("cloud    %s (log %s)\n", d->cloud_url, d->cloud.log_path);
    rc = 0;
out:
    free(token_path);
    free(data);
    return rc;
}

static int demo_start_app(struct demo *d)
{
    char *argv[] = {d->exe, "app", "--listen", "127.0.0.1:0",
                    "--port-file", d->app.port_file, "--data", d->app_data,
                    "--workers", DEMO_WORKERS, "--api-url", d->cloud_url,
                    "--content-url", d->cloud_url, "--ca", d->ca_file,
                    NULL};
    char **env = demo_env_with("DBXHOOK_APP_SECRET", d->app_secret);
    int rc = demo_spawn(d->exe, &d->app, argv, env);

    demo_env_free(env);
    if (rc < 0 || demo_wait_port(&d->app) < 0)
        return -1;
    printf("app      http://127.0.0.1:%d/webhook, %s workers (log %s)\n",
           d->app.port, DEMO_WORKERS, d->app.log_path);
    return 0;
}

static int demo_store_token(struct demo *d)
{
    const char *args[] = {"token-set", "--account", d->account_id, NULL};

    return demo_appctl(d, args, d->token, NULL);
}

/* ---- the folder ------------------------------------------------------- */

static int demo_add_file(struct demo *d, const char *local,
                         const char *remote)
{
    struct demo_file *f;

    if (d->n_files == DEMO_MAX_FILES) {
        fprintf(stderr, "dbxhook demo: more than %d files to upload\n",
                DEMO_MAX_FILES);
        return -1;
    }
    if (d->n_files % 64 == 0)
        d->files = xrealloc(d->files, (d->n_files + 64) * sizeof *f);
    f = &d->files[d->n_files];
    memset(f, 0, sizeof *f);
    f->local = xstrdup(local);
    f->remote = xstrdup(remote);
    f->is_md = handler_md_is_markdown(remote);
    if (f->is_md) {
        char *html = handler_md_html_path(remote);
        f->html_lower = pathx_fold(html);
        free(html);
        if (f->html_lower == NULL) {
            fprintf(stderr, "dbxhook demo: %s: name is not UTF-8\n", local);
            free(f->local);
            free(f->remote);
            return -1;
        }
        d->n_md++;
    }
    d->n_files++;
    return 0;
}

/* Collects the regular files below local (symbolic links and special
 * files are skipped), naming each remote/<relative path>. */
static int demo_walk(struct demo *d, const char *local, const char *remote,
                     int depth)
{
    DIR *dir = opendir(local);
    struct dirent *de;
    struct stat st;
    int rc = 0;

    if (dir == NULL) {
        fprintf(stderr, "dbxhook demo: %s: %s\n", local, strerror(errno));
        return -1;
    }
    while (rc == 0 && (de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *lp = xasprintf("%s/%s", local, de->d_name);
        char *rp = xasprintf("%s/%s", remote, de->d_name);
        if (lstat(lp, &st) < 0) {
            fprintf(stderr, "dbxhook demo: %s: %s\n", lp, strerror(errno));
            rc = -1;
        } else if (S_ISDIR(st.st_mode) && depth + 1 >= DEMO_MAX_DEPTH) {
            fprintf(stderr, "dbxhook demo: %s: nested too deep\n", lp);
            rc = -1;
        } else if (S_ISDIR(st.st_mode)) {
            rc = demo_walk(d, lp, rp, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            rc = demo_add_file(d, lp, rp);
        } else {
            d->n_skipped++;
        }
        free(lp);
        free(rp);
    }
    closedir(dir);
    return rc;
}

/* Other files go before Markdown, so that a stale .html in the folder
 * can never land after the app wrote the fresh one. */
static int demo_file_order(const void *a, const void *b)
{
    const struct demo_file *x = a, *y = b;

    if (x->is_md != y->is_md)
        return x->is_md ? 1 : -1;
    return strcmp(x->remote, y->remote);
}

static int demo_html_order(const void *a, const void *b)
{
    const struct demo_file *const *x = a, *const *y = b;

    return strcmp((*x)->html_lower, (*y)->html_lower);
}

static int demo_collect_files(struct demo *d)
{
    const char *base = strrchr(d->folder, '/');
    char *remote = xasprintf("/%s", base != NULL && base[1] ? base + 1
                                                           : "import");
    size_t k = 0;
    int rc = demo_walk(d, d->folder, remote, 0);

    free(remote);
    if (rc < 0)
        return -1;
    qsort(d->files, d->n_files, sizeof *d->files, demo_file_order);
    d->by_html = xcalloc(d->n_md + 1, sizeof *d->by_html);
    for (size_t i = 0; i < d->n_files; i++) {
        if (d->files[i].is_md)
            d->by_html[k++] = &d->files[i];
    }
    qsort(d->by_html, d->n_md, sizeof *d->by_html, demo_html_order);
    for (size_t i = 1; i < d->n_md; i++) {
        if (demo_html_order(&d->by_html[i - 1], &d->by_html[i]) == 0) {
            fprintf(stderr, "dbxhook demo: %s and %s differ only in "
                    "case, which Dropbox paths do not tell apart\n",
                    d->by_html[i - 1]->local, d->by_html[i]->local);
            return -1;
        }
    }
    return 0;
}

/* ---- uploading -------------------------------------------------------- */

/* What the app must produce for this Markdown (md4c's HTML with the
 * GitHub dialect, see handler_md.h), kept as its SHA-256. */
static int demo_expect_html(struct demo_file *f, const char *src,
                            size_t len)
{
    char *html = NULL;
    size_t html_len = 0;

    if (handler_md_render(src, len, &html, &html_len) < 0) {
        fprintf(stderr, "dbxhook demo: %s: md4c cannot render it\n", f->local);
        return -1;
    }
    sha256_hex(html, html_len, f->html_sha);
    free(html);
    return 0;
}

/* /2/files/upload, retried (bounded) when the cloud asks to slow down. */
static int demo_upload_one(struct demo *d, const struct demo_file *f,
                           const char *data, size_t len)
{
    struct dbxapi_error err;
    enum dbxapi_status s = DBXAPI_RETRY;

    for (int i = 0; i < DEMO_UPLOAD_ATTEMPTS && !demo_interrupted; i++) {
        s = dbxapi_upload(d->api, f->remote, data, len, NULL, &err);
        if (s != DBXAPI_RETRY)
            break;
        demo_sleep_ms(err.retry_after_s > 0 && err.retry_after_s < 10
                          ? (long)err.retry_after_s * 1000 : 1000);
    }
    if (s == DBXAPI_OK)
        return 0;
    if (!demo_interrupted)
        fprintf(stderr, "dbxhook demo: upload %s: %s %s\n", f->remote,
                dbxapi_status_name(s), s == DBXAPI_RETRY ? "" : err.summary);
    return -1;
}

static int demo_upload_all(struct demo *d)
{
    for (size_t i = 0; i < d->n_files && !demo_interrupted; i++) {
        struct demo_file *f = &d->files[i];
        size_t len = 0;
        char *data = file_read_all(f->local, DBXAPI_MAX_UPLOAD, &len);
        int rc;

        if (data == NULL) {
            fprintf(stderr,
                    "dbxhook demo: cannot read %s (or above %u bytes)\n",
                    f->local, DBXAPI_MAX_UPLOAD);
            return -1;
        }
        rc = f->is_md ? demo_expect_html(f, data, len) : 0;
        if (rc == 0)
            rc = demo_upload_one(d, f, data, len);
        free(data);
        if (rc < 0)
            return -1;
        d->n_uploaded = i + 1;
        if ((i + 1) % DEMO_PROGRESS_EVERY == 0 || i + 1 == d->n_files)
            printf("uploaded %zu/%zu\n", i + 1, d->n_files);
    }
    return demo_interrupted ? -1 : 0;
}

/* ---- waiting for the conversions -------------------------------------- */

/* Compares one listed .html with what its Markdown should give, once
 * per revision of the .html. */
static void demo_check_entry(struct demo *d, const struct dbxapi_entry *e)
{
    struct demo_file key = {.html_lower = e->path_lower}, *kp = &key;
    struct demo_file **hit;
    struct dbxapi_error err;
    char sha[SIG_HEX_LEN + 1], *data = NULL;
    size_t len = 0;

    if (e->tag != DBXAPI_FILE || e->path_lower == NULL)
        return;
    hit = bsearch(&kp, d->by_html, d->n_md, sizeof *d->by_html,
                  demo_html_order);
    if (hit == NULL || (*hit)->verified)
        return;
    if ((*hit)->checked_rev != NULL && e->rev != NULL &&
        strcmp((*hit)->checked_rev, e->rev) == 0)
        return;
    if (dbxapi_download(d->api, e->path_lower, &data, &len, NULL, &err) !=
        DBXAPI_OK)
        return;
    sha256_hex(data, len, sha);
    free(data);
    free((*hit)->checked_rev);
    (*hit)->checked_rev = e->rev != NULL ? xstrdup(e->rev) : NULL;
    (*hit)->differs = strcmp(sha, (*hit)->html_sha) != 0;
    if (!(*hit)->differs) {
        (*hit)->verified = true;
        d->n_verified++;
    }
}

/* One recursive listing of the whole account.  -1 only on an error that
 * waiting will not cure. */
static int demo_poll(struct demo *d)
{
    struct dbxapi_page page = {0};
    struct dbxapi_error err;
    enum dbxapi_status s = dbxapi_list_folder(d->api, &page, &err);

    for (int pages = 1;; pages++) {
        if (s == DBXAPI_RETRY || s == DBXAPI_TRANSPORT)
            return 0;
        if (s != DBXAPI_OK) {
            fprintf(stderr, "dbxhook demo: list_folder: %s %s\n",
                    dbxapi_status_name(s), err.summary);
            return -1;
        }
        for (size_t i = 0; i < page.n_entries; i++)
            demo_check_entry(d, &page.entries[i]);
        if (!page.has_more || pages >= DEMO_MAX_LIST_PAGES)
            break;
        char *cursor = xstrdup(page.cursor);
        dbxapi_page_free(&page);
        s = dbxapi_list_continue(d->api, cursor, &page, &err);
        free(cursor);
    }
    dbxapi_page_free(&page);
    return 0;
}

static void demo_report_missing(const struct demo *d)
{
    size_t shown = 0;

    fprintf(stderr, "dbxhook demo: %zu of %zu Markdown files not converted "
            "within %ld s:\n", d->n_md - d->n_verified, d->n_md,
            d->opts.timeout_s);
    for (size_t i = 0; i < d->n_md && shown < DEMO_REPORT_MAX; i++) {
        const struct demo_file *f = d->by_html[i];
        if (f->verified)
            continue;
        fprintf(stderr, "  %s: %s\n", f->remote,
                f->differs ? "its .html differs from md4c's rendering"
                           : "no .html yet");
        shown++;
    }
    fprintf(stderr, "  (the app's log: %s)\n", d->app.log_path);
}

static int demo_wait_converted(struct demo *d)
{
    int64_t deadline = time_mono_ms() + d->opts.timeout_s * 1000;
    size_t shown = (size_t)-1;

    for (;;) {
        if (demo_poll(d) < 0)
            return -1;
        if (d->n_verified != shown) {
            shown = d->n_verified;
            printf("converted %zu/%zu\n", shown, d->n_md);
        }
        if (d->n_verified == d->n_md)
            return 0;
        if (demo_interrupted)
            return -1;
        if (time_mono_ms() >= deadline) {
            demo_report_missing(d);
            return -1;
        }
        demo_sleep_ms(DEMO_POLL_MS);
    }
}

/* ---- the summary ------------------------------------------------------ */

/* A counter as text, "?" when it could not be read. */
static void demo_counter(json_t *obj, const char *key, char out[32])
{
    json_t *v = json_object_get(obj, key);

    if (json_is_integer(v))
        snprintf(out, 32, "%lld", (long long)json_integer_value(v));
    else
        snprintf(out, 32, "?");
}

static json_t *demo_app_status(struct demo *d)
{
    const char *args[] = {"status", NULL};
    json_t *status = NULL;
    struct buf out;

    buf_init(&out, DEMO_MAX_STATUS_JSON);
    if (d->account_id != NULL && demo_appctl(d, args, NULL, &out) == 0)
        status = json_loadb(out.data, out.len, 0, NULL);
    buf_free(&out);
    return status;
}

static json_int_t demo_int(json_t *obj, const char *key)
{
    return json_integer_value(json_object_get(obj, key));
}

/* The two sides count at different moments: the cloud records a
 * delivery once the app's 200 is back, and the app writes the count of
 * a notification it answered without a commit within 10 ms of the 200.
 * So both are read until they agree, briefly (it is only a summary). */
static void demo_read_counts(struct demo *d, json_t **status, json_t **stats)
{
    for (int i = 0; d->admin != NULL && i < DEMO_STATS_TRIES; i++) {
        json_int_t received, delivered;

        json_decref(*stats);
        *stats = NULL;
        if (demo_admin(d, "stats", json_object(), stats) < 0)
            return;
        received = demo_int(json_object_get(*status, "counters"),
                            "notifications");
        delivered = demo_int(*stats, "notifications_delivered");
        if (delivered == received)
            return;
        demo_sleep_ms(DEMO_STATS_WAIT_MS);
        if (delivered > received) {
            json_decref(*status);
            *status = demo_app_status(d);
        }
    }
}

static void demo_summary(struct demo *d, bool ok)
{
    json_t *stats = NULL, *status = demo_app_status(d), *counters;
    char delivered[32], received[32], pages[32], conversions[32];

    demo_read_counts(d, &status, &stats);
    counters = json_object_get(status, "counters");
    demo_counter(stats, "notifications_delivered", delivered);
    demo_counter(counters, "notifications", received);
    demo_counter(counters, "pages", pages);
    demo_counter(counters, "conversions", conversions);

    printf("\n%s\n", ok ? "dbxhook demo: every Markdown file converted"
                        : "dbxhook demo: FAILED");
    if (d->n_uploaded == d->n_files)
        printf("  files uploaded:          %zu (%zu Markdown)\n",
               d->n_files, d->n_md);
    else
        printf("  files uploaded:          %zu of %zu (%zu Markdown)\n",
               d->n_uploaded, d->n_files, d->n_md);
    printf("  notifications delivered: %s\n", delivered);
    printf("  notifications received:  %s\n", received);
    printf("  pages listed:            %s\n", pages);
    printf("  conversions:             %s\n", conversions);
    printf("  HTML files verified:     %zu/%zu\n", d->n_verified, d->n_md);
    printf("  elapsed:                 %.1f s\n",
           (double)(time_mono_ms() - d->start_ms) / 1000.0);
    json_decref(stats);
    json_decref(status);
}

/* ---- the whole run ---------------------------------------------------- */

static int demo_prepare(struct demo *d)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);

    if (n <= 0) {
        fprintf(stderr, "dbxhook demo: cannot find this program's path\n");
        return -1;
    }
    exe[n] = '\0';
    d->exe = xstrdup(exe);
    if (d->opts.import_dir != NULL)
        d->folder = realpath(d->opts.import_dir, NULL);
    else
        d->folder = demo_find_sample(d->exe);
    if (d->folder == NULL || !demo_is_dir(d->folder)) {
        fprintf(stderr, "dbxhook demo: no folder to import (%s)\n",
                d->opts.import_dir != NULL ? d->opts.import_dir
                                           : "sample/ not found");
        return -1;
    }
    if (demo_collect_files(d) < 0)
        return -1;
    if (d->n_md == 0) {
        fprintf(stderr,
                "dbxhook demo: no Markdown files (*.md, any case) in %s\n",
                d->folder);
        return -1;
    }
    if (demo_prepare_dirs(d) < 0)
        return -1;
    demo_child_init(&d->cloud, d->dir, "cloud");
    demo_child_init(&d->app, d->dir, "app");
    printf("data     %s\n", d->dir);
    printf("folder   %s: %zu files, %zu Markdown", d->folder, d->n_files,
           d->n_md);
    if (d->n_skipped > 0)
        printf(" (%zu links or special files skipped)", d->n_skipped);
    printf("\n");
    return 0;
}

static int demo_run(struct demo *d)
{
    struct dbxapi_config cfg = {0};
    int rc;

    if (demo_start_cloud(d) < 0 || demo_create_account_and_app(d) < 0 ||
        demo_start_app(d) < 0 || demo_store_token(d) < 0 ||
        demo_set_webhook(d) < 0)
        return -1;
    cfg.api_url = d->cloud_url;
    cfg.content_url = d->cloud_url;
    cfg.ca_file = d->ca_file;
    d->api = dbxapi_new(&cfg);
    if (d->api == NULL)
        return -1;
    dbxapi_set_token(d->api, d->token);
    rc = demo_upload_all(d);
    if (rc == 0)
        rc = demo_wait_converted(d);
    demo_summary(d, rc == 0);
    return rc;
}

static void demo_free(struct demo *d)
{
    for (size_t i = 0; i < d->n_files; i++) {
        free(d->files[i].local);
        free(d->files[i].remote);
        free(d->files[i].html_lower);
        free(d->files[i].checked_rev);
    }
    free(d->files);
    free(d->by_html);
    if (d->api != NULL)
        dbxapi_free(d->api);
    if (d->admin != NULL)
        hcli_free(d->admin);
    demo_free_secret(d->admin_token);
    demo_free_secret(d->app_secret);
    demo_free_secret(d->token);
    free(d->account_id);
    free(d->app_key);
    free(d->cloud_url);
    free(d->ca_file);
    free(d->app_data);
    demo_child_free(&d->cloud);
    demo_child_free(&d->app);
    free(d->folder);
    free(d->dir);
    free(d->exe);
}

int demo_main(int argc, char **argv)
{
    struct demo d;
    int parsed, rc;

    memset(&d, 0, sizeof d);
    parsed = demo_parse(argc, argv, &d.opts);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;
    log_init("demo", LOG_WARN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    demo_signals_install();
    d.start_ms = time_mono_ms();

    rc = demo_prepare(&d) == 0 && demo_run(&d) == 0 ? 0 : 1;
    demo_stop(&d.app);
    demo_stop(&d.cloud);
    if (demo_interrupted)
        fprintf(stderr, "dbxhook demo: interrupted\n");

    if (d.dir_is_temp && !d.opts.keep && rc == 0)
        demo_remove_tree(d.dir, 0);
    else if (d.dir != NULL && rc != 0)
        fprintf(stderr, "dbxhook demo: logs and data kept in %s\n", d.dir);
    else if (d.dir != NULL)
        printf("  data kept in:            %s\n", d.dir);
    demo_free(&d);
    return rc;
}
