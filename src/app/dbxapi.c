/*
 * dbxapi: Dropbox API v2 calls over hcli, answers parsed with jansson.
 *
 * Two kinds of endpoint: RPC calls POST a JSON body to the api host and
 * get JSON back; content calls (download, upload) carry their argument
 * as JSON in the Dropbox-API-Arg header and get the metadata back in the
 * Dropbox-API-Result header.  Both share one way of turning a non-200
 * answer into a status (response_classify).
 */
#include "app/dbxapi.h"

#include "common/http_client.h"
#include "common/jsonx.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

/* Whole-transfer timeouts: an RPC answer is small; a content transfer
 * may move DBXAPI_MAX_DOWNLOAD bytes. */
#define DBXAPI_RPC_TIMEOUT_MS     30000L
#define DBXAPI_CONTENT_TIMEOUT_MS 300000L
/* A Retry-After beyond a day is taken as a day. */
#define DBXAPI_RETRY_AFTER_MAX_S 86400
/* Bodies of error answers are quoted into err->summary at most this far. */
#define DBXAPI_QUOTE_MAX 120

struct dbxapi {
    struct hcli *rpc;     /* api host, bodies up to DBXAPI_MAX_RPC_BODY */
    struct hcli *content; /* content host, up to DBXAPI_MAX_DOWNLOAD */
    char *api_url;        /* without a trailing slash */
    char *content_url;
    char *auth_header; /* "Authorization: Bearer ..." or NULL */
    unsigned list_limit;
    char *token_url;    /* the OAuth token endpoint */
    char *basic_header; /* "Authorization: Basic ..." for it, or NULL */
    char *client_id;    /* the app key when there is no secret (a public
                           client names itself in the form), or NULL */
    char *refresh;      /* refresh token of the account, or NULL */
    dbxapi_refresh_cb on_refresh;
    void *on_refresh_ctx;
    bool relink_needed; /* the refresh token was refused */
};

/* "Authorization: Basic base64(key:secret)", the caller's. */
static char *dbxapi_basic_header(const char *key, const char *secret);

static char *url_base_dup(const char *url)
{
    char *s = xstrdup(url);
    size_t n = strlen(s);

    while (n > 0 && s[n - 1] == '/')
        s[--n] = '\0';
    return s;
}

struct dbxapi *dbxapi_new(const struct dbxapi_config *cfg)
{
    struct dbxapi *api = xcalloc(1, sizeof *api);

    api->rpc = hcli_new(cfg->ca_file, DBXAPI_MAX_RPC_BODY);
    api->content = hcli_new(cfg->ca_file, DBXAPI_MAX_DOWNLOAD);
    if (api->rpc == NULL || api->content == NULL) {
        LOG_E("dbxapi_new failed: cannot create HTTP client");
        dbxapi_free(api);
        return NULL;
    }
    api->api_url = url_base_dup(cfg->api_url);
    api->content_url = url_base_dup(cfg->content_url);
    api->list_limit = cfg->list_limit;
    if (api->list_limit == 0 || api->list_limit > DBXAPI_LIST_LIMIT_MAX)
        api->list_limit = DBXAPI_LIST_LIMIT_DEFAULT;
    if (cfg->token_url != NULL)
        api->token_url = xstrdup(cfg->token_url);
    else
        api->token_url = xasprintf("%s/oauth2/token", api->api_url);
    if (cfg->app_key != NULL && cfg->app_secret != NULL &&
        cfg->app_secret[0] != '\0')
        api->basic_header = dbxapi_basic_header(cfg->app_key,
                                                cfg->app_secret);
    else if (cfg->app_key != NULL)
        api->client_id = xstrdup(cfg->app_key);
    return api;
}

static void secret_free(char *s)
{
    if (s == NULL)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}

void dbxapi_free(struct dbxapi *api)
{
    if (api == NULL)
        return;
    if (api->rpc != NULL)
        hcli_free(api->rpc);
    if (api->content != NULL)
        hcli_free(api->content);
    free(api->api_url);
    free(api->content_url);
    free(api->token_url);
    secret_free(api->auth_header);
    secret_free(api->basic_header);
    free(api->client_id);
    secret_free(api->refresh);
    free(api);
}

void dbxapi_set_token(struct dbxapi *api, const char *token)
{
    secret_free(api->auth_header);
    api->auth_header = NULL;
    if (token != NULL)
        api->auth_header = xasprintf("Authorization: Bearer %s", token);
}

const char *dbxapi_status_name(enum dbxapi_status s)
{
    switch (s) {
    case DBXAPI_OK:
        return "ok";
    case DBXAPI_CONFLICT:
        return "conflict";
    case DBXAPI_AUTH:
        return "auth";
    case DBXAPI_RETRY:
        return "retry";
    case DBXAPI_TRANSPORT:
        return "transport";
    case DBXAPI_PROTOCOL:
        return "protocol";
    }
    return "unknown";
}

bool dbxapi_error_is(const struct dbxapi_error *err, const char *prefix)
{
    return err != NULL && err->http_status == 409 &&
           strncmp(err->summary, prefix, strlen(prefix)) == 0;
}

/* ---- entries ---------------------------------------------------------- */

void dbxapi_entry_free(struct dbxapi_entry *e)
{
    if (e == NULL)
        return;
    free(e->name);
    free(e->path_lower);
    free(e->path_display);
    free(e->id);
    free(e->rev);
    free(e->content_hash);
    memset(e, 0, sizeof *e);
}

void dbxapi_page_free(struct dbxapi_page *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n_entries; i++)
        dbxapi_entry_free(&p->entries[i]);
    free(p->entries);
    free(p->cursor);
    memset(p, 0, sizeof *p);
}

static char *json_str_dup(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s != NULL ? xstrdup(s) : NULL;
}

/* Fills e from one metadata object; -1 when it is not one. */
static int entry_parse(const json_t *obj, struct dbxapi_entry *e)
{
    const char *tag = json_string_value(json_object_get(obj, ".tag"));
    json_t *size = json_object_get(obj, "size");

    memset(e, 0, sizeof *e);
    if (tag == NULL)
        return -1;
    if (strcmp(tag, "file") == 0)
        e->tag = DBXAPI_FILE;
    else if (strcmp(tag, "folder") == 0)
        e->tag = DBXAPI_FOLDER;
    else if (strcmp(tag, "deleted") == 0)
        e->tag = DBXAPI_DELETED;
    else
        return -1;

    e->name = json_str_dup(obj, "name");
    e->path_lower = json_str_dup(obj, "path_lower");
    e->path_display = json_str_dup(obj, "path_display");
    e->id = json_str_dup(obj, "id");
    e->rev = json_str_dup(obj, "rev");
    e->content_hash = json_str_dup(obj, "content_hash");
    e->size = json_is_integer(size) ? (int64_t)json_integer_value(size) : 0;
    return 0;
}

static int page_parse(const json_t *root, struct dbxapi_page *page)
{
    json_t *entries = json_object_get(root, "entries");
    const char *cursor = json_string_value(json_object_get(root, "cursor"));
    json_t *has_more = json_object_get(root, "has_more");
    size_t n = json_array_size(entries);

    memset(page, 0, sizeof *page);
    if (!json_is_array(entries) || cursor == NULL || !json_is_boolean(has_more))
        return -1;
    page->entries = xcalloc(n > 0 ? n : 1, sizeof *page->entries);
    for (size_t i = 0; i < n; i++) {
        if (entry_parse(json_array_get(entries, i), &page->entries[i]) < 0) {
            dbxapi_page_free(page);
            return -1;
        }
        page->n_entries = i + 1;
    }
    page->cursor = xstrdup(cursor);
    page->has_more = json_is_true(has_more);
    return 0;
}

/* ---- requests and answers --------------------------------------------- */

/* Copies printable ASCII of text (at most DBXAPI_QUOTE_MAX bytes, or
 * fewer when out is smaller) so that a server's words can go into a log
 * line. */
static void summary_set(struct dbxapi_error *err, const char *text)
{
    size_t j = 0;

    if (text == NULL)
        text = "";
    for (size_t i = 0;
         text[i] != '\0' && i < DBXAPI_QUOTE_MAX && j + 1 < sizeof err->summary;
         i++) {
        unsigned char c = (unsigned char)text[i];

        err->summary[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    err->summary[j] = '\0';
}

static int64_t retry_after_parse(const char *v)
{
    char *end;
    long long s;

    if (v == NULL)
        return -1;
    errno = 0;
    s = strtoll(v, &end, 10);
    if (errno != 0 || end == v || s < 0)
        return -1;
    return s < DBXAPI_RETRY_AFTER_MAX_S ? (int64_t)s : DBXAPI_RETRY_AFTER_MAX_S;
}

/* 401 and 409 bodies are JSON: {"error_summary": .., "error": {..}}.
 * For 409 the summary is wanted; for 401 the error's tag. */
static void error_body_parse(const struct hcli_response *resp,
                             struct dbxapi_error *err)
{
    json_t *root = json_loadb(resp->body, resp->body_len, 0, NULL);
    const char *text = NULL;

    if (root != NULL && resp->status == 401)
        text = json_string_value(
            json_object_get(json_object_get(root, "error"), ".tag"));
    if (root != NULL && text == NULL)
        text = json_string_value(json_object_get(root, "error_summary"));
    summary_set(err, text != NULL ? text : resp->body);
    json_decref(root);
}

static enum dbxapi_status response_classify(int rc,
                                            const struct hcli_response *resp,
                                            struct dbxapi_error *err)
{
    err->http_status = resp->status;
    err->retry_after_s = -1;
    err->summary[0] = '\0';

    if (rc < 0 || resp->status == 0) {
        summary_set(err, resp->error);
        return DBXAPI_TRANSPORT;
    }
    if (resp->status == 200)
        return DBXAPI_OK;
    if (resp->status == 409 || resp->status == 401) {
        error_body_parse(resp, err);
        return resp->status == 409 ? DBXAPI_CONFLICT : DBXAPI_AUTH;
    }
    if (resp->status == 429 || resp->status >= 500) {
        err->retry_after_s = retry_after_parse(resp->retry_after);
        summary_set(err, resp->body);
        return DBXAPI_RETRY;
    }
    summary_set(err, resp->body);
    return DBXAPI_PROTOCOL;
}

static enum dbxapi_status protocol_error(struct dbxapi_error *err,
                                         const char *what)
{
    summary_set(err, what);
    return DBXAPI_PROTOCOL;
}

/* A call refused before anything was sent: no HTTP status, no retry. */
static enum dbxapi_status local_error(struct dbxapi_error *err,
                                      const char *what)
{
    err->http_status = 0;
    err->retry_after_s = -1;
    return protocol_error(err, what);
}

/* An argument jansson refused (a path that is not UTF-8): nothing sent. */
static enum dbxapi_status bad_argument(struct dbxapi_error *err)
{
    return local_error(err, "argument is not valid UTF-8");
}

/* Logs a call that did not succeed, at debug level. */
static void call_log(const char *endpoint, enum dbxapi_status st,
                     const struct dbxapi_error *err)
{
    if (st != DBXAPI_OK)
        LOG_D("dbxapi call endpoint=%s status=%ld result=%s", endpoint,
              err->http_status, dbxapi_status_name(st));
}

/* The argument of a content call as an HTTP header: ASCII only, with
 * everything else (and DEL) escaped as Dropbox asks. */
static char *api_arg_header(const json_t *arg)
{
    char *json = jsonx_dumps_ascii(arg);
    char *header = xasprintf("Dropbox-API-Arg: %s", json);

    free(json);
    return header;
}

/* Sends one request with the token and the given extra headers (at most
 * three), and classifies the answer.  resp is the caller's to free. */
static enum dbxapi_status api_send(struct dbxapi *api, struct hcli *http,
                                      const char *url, const char **extra,
                                      const void *body, size_t body_len,
                                      long timeout_ms,
                                      struct hcli_response *resp,
                                      struct dbxapi_error *err)
{
    const char *headers[6];
    size_t n = 0;
    struct hcli_request req = {
        .method = "POST",
        .url = url,
        .headers = headers,
        .body = body,
        .body_len = body_len,
        .timeout_ms = timeout_ms,
    };
    int rc;

    if (api->auth_header != NULL)
        headers[n++] = api->auth_header;
    for (size_t i = 0; extra[i] != NULL && n < ARRAY_LEN(headers) - 1; i++)
        headers[n++] = extra[i];
    headers[n] = NULL;

    memset(resp, 0, sizeof *resp);
    rc = hcli_perform(http, &req, resp);
    return response_classify(rc, resp, err);
}

static enum dbxapi_status api_refresh(struct dbxapi *api,
                                      struct dbxapi_error *err);

/* api_send, plus one refresh and replay on expired_access_token. */
static enum dbxapi_status api_perform(struct dbxapi *api, struct hcli *http,
                                      const char *url, const char **extra,
                                      const void *body, size_t body_len,
                                      long timeout_ms,
                                      struct hcli_response *resp,
                                      struct dbxapi_error *err)
{
    enum dbxapi_status st = api_send(api, http, url, extra, body, body_len,
                                     timeout_ms, resp, err);

    /* A revoked access token may still have a live refresh token: one
     * try tells, and a refused one marks the account for re-linking. */
    if (st != DBXAPI_AUTH || api->refresh == NULL ||
        (strcmp(err->summary, "expired_access_token") != 0 &&
         strcmp(err->summary, "invalid_access_token") != 0))
        return st;
    st = api_refresh(api, err);
    if (st != DBXAPI_OK)
        return st;
    hcli_response_free(resp);
    return api_send(api, http, url, extra, body, body_len, timeout_ms, resp,
                    err);
}

/* POSTs arg as JSON to api_url + endpoint; on DBXAPI_OK *out is the
 * parsed JSON object of the answer (the caller's). */
static enum dbxapi_status rpc_call(struct dbxapi *api, const char *endpoint,
                                   const json_t *arg, json_t **out,
                                   struct dbxapi_error *err)
{
    static const char *extra[] = {"Content-Type: application/json", NULL};
    char *body = arg != NULL ? json_dumps(arg, JSON_COMPACT) : NULL;
    struct hcli_response resp;
    enum dbxapi_status st;
    char *url;

    *out = NULL;
    if (body == NULL)
        return bad_argument(err);
    url = xasprintf("%s%s", api->api_url, endpoint);
    st = api_perform(api, api->rpc, url, extra, body, strlen(body),
                     DBXAPI_RPC_TIMEOUT_MS, &resp, err);
    if (st == DBXAPI_OK) {
        *out = json_loadb(resp.body, resp.body_len, 0, NULL);
        if (!json_is_object(*out)) {
            json_decref(*out);
            *out = NULL;
            st = protocol_error(err, "answer is not a JSON object");
        }
    }
    call_log(endpoint, st, err);
    hcli_response_free(&resp);
    free(body);
    free(url);
    return st;
}

/* ---- the calls -------------------------------------------------------- */

/* Reads an answer into the caller's struct; -1 when it is malformed. */
typedef int (*answer_parse_fn)(const json_t *root, void *out);

static int page_answer(const json_t *root, void *out)
{
    return page_parse(root, out);
}

static int entry_answer(const json_t *root, void *out)
{
    return entry_parse(root, out);
}

/* rpc_call, then parse (when not NULL) reads the answer into out; a
 * malformed answer is DBXAPI_PROTOCOL with the summary malformed.  Takes
 * arg; err may be NULL. */
static enum dbxapi_status rpc_parse(struct dbxapi *api, const char *endpoint,
                                    json_t *arg, answer_parse_fn parse,
                                    void *out, const char *malformed,
                                    struct dbxapi_error *err)
{
    struct dbxapi_error scratch;
    json_t *root = NULL;
    enum dbxapi_status st;

    if (err == NULL)
        err = &scratch;
    st = rpc_call(api, endpoint, arg, &root, err);
    if (st == DBXAPI_OK && parse != NULL && parse(root, out) < 0)
        st = protocol_error(err, malformed);
    json_decref(root);
    json_decref(arg);
    return st;
}

enum dbxapi_status dbxapi_list_folder(struct dbxapi *api,
                                      struct dbxapi_page *page,
                                      struct dbxapi_error *err)
{
    json_t *arg =
        json_pack("{s:s, s:b, s:b, s:I}", "path", "", "recursive", 1,
                  "include_deleted", 0, "limit", (json_int_t)api->list_limit);

    memset(page, 0, sizeof *page);
    return rpc_parse(api, "/2/files/list_folder", arg, page_answer, page,
                     "malformed list_folder page", err);
}

enum dbxapi_status dbxapi_list_continue(struct dbxapi *api, const char *cursor,
                                        struct dbxapi_page *page,
                                        struct dbxapi_error *err)
{
    memset(page, 0, sizeof *page);
    return rpc_parse(api, "/2/files/list_folder/continue",
                     json_pack("{s:s}", "cursor", cursor), page_answer, page,
                     "malformed list_folder page", err);
}

enum dbxapi_status dbxapi_get_metadata(struct dbxapi *api, const char *path,
                                       struct dbxapi_entry *meta,
                                       struct dbxapi_error *err)
{
    memset(meta, 0, sizeof *meta);
    return rpc_parse(api, "/2/files/get_metadata",
                     json_pack("{s:s}", "path", path), entry_answer, meta,
                     "malformed metadata", err);
}

/* Parses the metadata a content call answers with (the Dropbox-API-Result
 * header of a download, the body of an upload) into meta, when the caller
 * wants it. */
static enum dbxapi_status meta_parse(const char *text,
                                     struct dbxapi_entry *meta,
                                     struct dbxapi_error *err)
{
    json_t *root;
    int rc;

    if (meta == NULL)
        return DBXAPI_OK;
    root = json_loads(text != NULL ? text : "", 0, NULL);
    rc = root != NULL ? entry_parse(root, meta) : -1;
    json_decref(root);
    if (rc < 0)
        return protocol_error(err, "malformed result metadata");
    return DBXAPI_OK;
}

/* One content call: the argument in a header, body bytes out and in. */
static enum dbxapi_status content_call(struct dbxapi *api, const char *endpoint,
                                       json_t *arg, const char *content_type,
                                       const void *body, size_t body_len,
                                       struct hcli_response *resp,
                                       struct dbxapi_error *err)
{
    char *arg_header = arg != NULL ? api_arg_header(arg) : NULL;
    const char *extra[] = {arg_header, content_type, NULL};
    enum dbxapi_status st;
    char *url;

    memset(resp, 0, sizeof *resp);
    if (arg_header == NULL) {
        json_decref(arg);
        return bad_argument(err);
    }
    url = xasprintf("%s%s", api->content_url, endpoint);
    st = api_perform(api, api->content, url, extra, body, body_len,
                     DBXAPI_CONTENT_TIMEOUT_MS, resp, err);
    call_log(endpoint, st, err);
    free(arg_header);
    free(url);
    json_decref(arg);
    return st;
}

enum dbxapi_status dbxapi_download(struct dbxapi *api, const char *path,
                                   char **data, size_t *len,
                                   struct dbxapi_entry *meta,
                                   struct dbxapi_error *err)
{
    struct dbxapi_error scratch;
    struct hcli_response resp;
    enum dbxapi_status st;

    if (err == NULL)
        err = &scratch;
    *data = NULL;
    *len = 0;
    if (meta != NULL)
        memset(meta, 0, sizeof *meta);

    /* "Content-Type:" with no value keeps libcurl from sending its form
     * type; Dropbox rejects a download that carries one. */
    st =
        content_call(api, "/2/files/download", json_pack("{s:s}", "path", path),
                     "Content-Type:", "", 0, &resp, err);
    if (st == DBXAPI_OK)
        st = meta_parse(resp.api_result, meta, err);
    if (st == DBXAPI_OK) {
        *data = resp.body;
        *len = resp.body_len;
        resp.body = NULL;
        if (*data == NULL)
            *data = xstrdup("");
    }
    hcli_response_free(&resp);
    return st;
}

enum dbxapi_status dbxapi_upload(struct dbxapi *api, const char *path,
                                 const void *data, size_t len,
                                 struct dbxapi_entry *meta,
                                 struct dbxapi_error *err)
{
    struct dbxapi_error scratch;
    struct hcli_response resp;
    enum dbxapi_status st;
    json_t *arg;

    if (err == NULL)
        err = &scratch;
    if (meta != NULL)
        memset(meta, 0, sizeof *meta);
    if (len > DBXAPI_MAX_UPLOAD)
        return local_error(err, "file too large for one upload");

    arg = json_pack("{s:s, s:s, s:b, s:b}", "path", path, "mode", "overwrite",
                    "autorename", 0, "mute", 1);
    st = content_call(api, "/2/files/upload", arg,
                      "Content-Type: application/octet-stream", data, len,
                      &resp, err);
    if (st == DBXAPI_OK)
        st = meta_parse(resp.body, meta, err);
    hcli_response_free(&resp);
    return st;
}

enum dbxapi_status dbxapi_delete(struct dbxapi *api, const char *path,
                                 struct dbxapi_error *err)
{
    return rpc_parse(api, "/2/files/delete_v2",
                     json_pack("{s:s}", "path", path), NULL, NULL, NULL, err);
}

/* ---- OAuth tokens ----------------------------------------------------- */

static char *dbxapi_basic_header(const char *key, const char *secret)
{
    char *plain = xasprintf("%s:%s", key, secret);
    size_t n = strlen(plain);
    unsigned char *enc = xmalloc(4 * ((n + 2) / 3) + 1);
    char *header;

    EVP_EncodeBlock(enc, (const unsigned char *)plain, (int)n);
    header = xasprintf("Authorization: Basic %s", (char *)enc);
    secret_free(plain);
    secret_free((char *)enc);
    return header;
}

void dbxapi_set_refresh(struct dbxapi *api, const char *refresh,
                        dbxapi_refresh_cb cb, void *ctx)
{
    secret_free(api->refresh);
    api->refresh = refresh != NULL ? xstrdup(refresh) : NULL;
    api->on_refresh = cb;
    api->on_refresh_ctx = ctx;
    api->relink_needed = false;
}

bool dbxapi_relink_needed(const struct dbxapi *api)
{
    return api->relink_needed;
}

void dbxapi_form_add(char **form, const char *name, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    struct buf b;

    buf_init(&b, 0);
    if (*form != NULL && (*form)[0] != '\0') {
        buf_append(&b, *form, strlen(*form));
        buf_append(&b, "&", 1);
    }
    buf_append(&b, name, strlen(name));
    buf_append(&b, "=", 1);
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || strchr("-._~", *p);
        char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};

        if (plain)
            buf_append(&b, p, 1);
        else
            buf_append(&b, esc, 3);
    }
    secret_free(*form);
    *form = buf_steal(&b);
    buf_free(&b);
}

void dbxapi_token_free(struct dbxapi_token *t)
{
    if (t == NULL)
        return;
    secret_free(t->access);
    secret_free(t->refresh);
    free(t->account);
    memset(t, 0, sizeof *t);
}

/* Reads the token endpoint's JSON answer into out; -1 without a token. */
static int token_parse(const struct hcli_response *resp,
                       struct dbxapi_token *out)
{
    json_t *root = json_loadb(resp->body, resp->body_len, 0, NULL);
    json_t *expires = json_object_get(root, "expires_in");
    int rc = -1;

    out->access = json_str_dup(root, "access_token");
    out->refresh = json_str_dup(root, "refresh_token");
    out->account = json_str_dup(root, "account_id");
    if (json_is_integer(expires))
        out->expires_s = time_now_s() + (int64_t)json_integer_value(expires);
    if (out->access != NULL && out->access[0] != '\0')
        rc = 0;
    json_decref(root);
    if (rc < 0)
        dbxapi_token_free(out);
    return rc;
}

/* A refused grant: {"error": "invalid_grant", ...} as DBXAPI_AUTH. */
static enum dbxapi_status token_refused(const struct hcli_response *resp,
                                        struct dbxapi_error *err)
{
    json_t *root = json_loadb(resp->body, resp->body_len, 0, NULL);
    const char *what = json_string_value(json_object_get(root, "error"));

    if (what == NULL)
        what = json_string_value(json_object_get(
            json_object_get(root, "error"), ".tag"));
    summary_set(err, what != NULL ? what : "token request refused");
    json_decref(root);
    return DBXAPI_AUTH;
}

enum dbxapi_status dbxapi_oauth_token(struct dbxapi *api, const char *form,
                                      struct dbxapi_token *out,
                                      struct dbxapi_error *err)
{
    const char *headers[3] = {
        "Content-Type: application/x-www-form-urlencoded", NULL, NULL};
    struct hcli_request req = {
        .method = "POST",
        .url = api->token_url,
        .headers = headers,
        .body = form,
        .body_len = strlen(form),
        .timeout_ms = DBXAPI_RPC_TIMEOUT_MS,
    };
    struct dbxapi_error scratch;
    struct hcli_response resp;
    enum dbxapi_status st;
    int rc;

    if (err == NULL)
        err = &scratch;
    memset(out, 0, sizeof *out);
    headers[1] = api->basic_header;
    memset(&resp, 0, sizeof resp);
    rc = hcli_perform(api->rpc, &req, &resp);
    st = response_classify(rc, &resp, err);
    if (st == DBXAPI_PROTOCOL && (resp.status == 400 || resp.status == 403))
        st = token_refused(&resp, err);
    else if (st == DBXAPI_AUTH)
        st = token_refused(&resp, err);
    else if (st == DBXAPI_OK && token_parse(&resp, out) < 0)
        st = protocol_error(err, "token answer without access_token");
    hcli_response_free(&resp);
    return st;
}

/* Swaps the refresh token for a new access token, stores it through the
 * callback and uses it from now on. */
static enum dbxapi_status api_refresh(struct dbxapi *api,
                                      struct dbxapi_error *err)
{
    struct dbxapi_token tok;
    enum dbxapi_status st;
    char *form = NULL;

    dbxapi_form_add(&form, "grant_type", "refresh_token");
    dbxapi_form_add(&form, "refresh_token", api->refresh);
    if (api->client_id != NULL)
        dbxapi_form_add(&form, "client_id", api->client_id);
    st = dbxapi_oauth_token(api, form, &tok, err);
    secret_free(form);
    LOG_I("dbxapi token refresh result=%s error=\"%s\"",
          dbxapi_status_name(st), st == DBXAPI_OK ? "" : err->summary);
    if (st == DBXAPI_AUTH && strcmp(err->summary, "invalid_grant") == 0)
        api->relink_needed = true;
    if (st != DBXAPI_OK)
        return st;
    dbxapi_set_token(api, tok.access);
    if (api->on_refresh != NULL)
        api->on_refresh(api->on_refresh_ctx, tok.access, tok.expires_s);
    dbxapi_token_free(&tok);
    return DBXAPI_OK;
}
