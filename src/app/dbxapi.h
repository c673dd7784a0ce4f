/*
 * dbxapi: the few Dropbox API v2 calls the app's workers make.
 *
 * One struct dbxapi per thread: it owns two HTTP clients (RPC host and
 * content host, each keeping its connections alive) and the access token
 * of the account being processed.  Base URLs come from configuration, so
 * the same code talks to the real Dropbox or to `dbxhook cloud`.
 *
 * Every call returns a status that tells the caller what to do next:
 *   DBXAPI_OK         the call succeeded; out-parameters are set.
 *   DBXAPI_CONFLICT   HTTP 409, an endpoint error ("path/not_found/..");
 *                     err->summary holds the error_summary.
 *   DBXAPI_AUTH       HTTP 401; err->summary holds the error tag
 *                     ("expired_access_token", "invalid_access_token",..).
 *   DBXAPI_RETRY      HTTP 429 or 5xx; err->retry_after_s is the server's
 *                     Retry-After in seconds, or -1 when it sent none.
 *   DBXAPI_TRANSPORT  no response (connection, TLS, timeout, a body above
 *                     its bound); err->summary holds the transport error.
 *   DBXAPI_PROTOCOL   any other status (400, 403, ..) or a response that
 *                     is not the JSON we expect; err->summary says which.
 * On any status but DBXAPI_OK the out-parameters are left empty (NULL/0)
 * and need no freeing.  err may be NULL when the caller does not care.
 *
 * Refresh: when a refresh token is set (dbxapi_set_refresh), a call that
 * gets 401 expired_access_token posts grant_type=refresh_token to the
 * token URL once, hands the new access token to the on_refresh callback
 * (which stores it) and replays the call.  A refused refresh token gives
 * DBXAPI_AUTH with summary "invalid_grant": the account must be linked
 * again.
 *
 * Tokens never appear in log lines or in err.
 */
#ifndef DBX_DBXAPI_H
#define DBX_DBXAPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bounds on response bodies: a downloaded file, and any RPC answer (a
 * list_folder page of 2000 entries is well under 2 MiB). */
#define DBXAPI_MAX_DOWNLOAD (64u * 1024 * 1024)
#define DBXAPI_MAX_RPC_BODY (16u * 1024 * 1024)
/* Largest body a single /2/files/upload may carry (Dropbox's own limit);
 * bigger files would need an upload session. */
#define DBXAPI_MAX_UPLOAD (150u * 1024 * 1024)
/* Default and largest page size of list_folder. */
#define DBXAPI_LIST_LIMIT_DEFAULT 2000
#define DBXAPI_LIST_LIMIT_MAX     2000

enum dbxapi_status {
    DBXAPI_OK = 0,
    DBXAPI_CONFLICT,
    DBXAPI_AUTH,
    DBXAPI_RETRY,
    DBXAPI_TRANSPORT,
    DBXAPI_PROTOCOL,
};

struct dbxapi_error {
    long http_status;      /* 0 on a transport error */
    int64_t retry_after_s; /* DBXAPI_RETRY only; -1 when not given */
    char summary[256];     /* see above; always NUL-terminated */
};

enum dbxapi_tag {
    DBXAPI_FILE,
    DBXAPI_FOLDER,
    DBXAPI_DELETED,
};

/* One entry of list_folder, or the metadata of one file.  Strings are
 * owned by the entry; those a tag does not carry are NULL (a folder has
 * no rev, a deleted entry has only name and paths).  Dropbox documents
 * even the paths as optional (an unmounted folder), so users of an
 * entry check them too. */
struct dbxapi_entry {
    enum dbxapi_tag tag;
    char *name;
    char *path_lower;
    char *path_display;
    char *id;
    char *rev;
    char *content_hash;
    int64_t size;
};

/* One page of list_folder or list_folder/continue; everything owned. */
struct dbxapi_page {
    struct dbxapi_entry *entries;
    size_t n_entries;
    char *cursor;
    bool has_more;
};

struct dbxapi_config {
    const char *api_url;     /* RPC base, "https://api.dropboxapi.com" */
    const char *content_url; /* "https://content.dropboxapi.com" */
    const char *ca_file;     /* NULL: the system's trusted CAs */
    unsigned list_limit;     /* 0: DBXAPI_LIST_LIMIT_DEFAULT */
    /* Token endpoint (NULL: api_url + "/oauth2/token") and the app's
     * credentials for it; without app_key no refresh is attempted. */
    const char *token_url;
    const char *app_key;
    const char *app_secret; /* copied; wiped on dbxapi_free */
};

/* Called with the new access token after a successful refresh. */
typedef void (*dbxapi_refresh_cb)(void *ctx, const char *access,
                                  int64_t expires_s);

/* The answer of the token endpoint; strings are the caller's
 * (dbxapi_token_free wipes them). */
struct dbxapi_token {
    char *access;
    char *refresh;  /* NULL when the answer has none */
    char *account;  /* account_id, or NULL */
    int64_t expires_s; /* unix time, 0 when expires_in was absent */
};

struct dbxapi;

/* Copies what it needs from cfg; NULL if an HTTP client cannot be made. */
struct dbxapi *dbxapi_new(const struct dbxapi_config *cfg);
/* Wipes the token and frees everything. */
void dbxapi_free(struct dbxapi *api);

/* Sets (copies) the bearer token used by the following calls; NULL
 * forgets it.  The previous token is wiped from memory. */
void dbxapi_set_token(struct dbxapi *api, const char *token);

/* Sets (copies) the refresh token used on expired_access_token, and the
 * callback that stores a new access token; refresh NULL disables. */
void dbxapi_set_refresh(struct dbxapi *api, const char *refresh,
                        dbxapi_refresh_cb cb, void *ctx);

/* True when a refresh since the last dbxapi_set_refresh was refused with
 * invalid_grant: the account must be linked again. */
bool dbxapi_relink_needed(const struct dbxapi *api);

/* POSTs form (application/x-www-form-urlencoded, built with
 * dbxapi_form_add) to the token URL, with the app's credentials in HTTP
 * Basic when it has them.  A 400 answer's "error" (e.g. invalid_grant)
 * lands in err->summary with DBXAPI_AUTH. */
enum dbxapi_status dbxapi_oauth_token(struct dbxapi *api, const char *form,
                                      struct dbxapi_token *out,
                                      struct dbxapi_error *err);
void dbxapi_token_free(struct dbxapi_token *t);

/* Appends "name=value" (percent-encoded, '&' between pairs) to the form
 * string *form (NULL or malloc'ed; reallocated). */
void dbxapi_form_add(char **form, const char *name, const char *value);

/* /2/files/delete_v2.  A missing path is DBXAPI_CONFLICT
 * ("path_lookup/not_found/.."). */
enum dbxapi_status dbxapi_delete(struct dbxapi *api, const char *path,
                                 struct dbxapi_error *err);

/* /2/files/list_folder of the whole account: path "", recursive, without
 * deleted entries.  *page is the caller's (dbxapi_page_free). */
enum dbxapi_status dbxapi_list_folder(struct dbxapi *api,
                                      struct dbxapi_page *page,
                                      struct dbxapi_error *err);

/* /2/files/list_folder/continue.  A cursor the server can no longer serve
 * gives DBXAPI_CONFLICT with a summary starting "reset". */
enum dbxapi_status dbxapi_list_continue(struct dbxapi *api, const char *cursor,
                                        struct dbxapi_page *page,
                                        struct dbxapi_error *err);

/* /2/files/download.  path is a path, "id:..." or "rev:...".  *data is
 * the caller's (free), NUL-terminated for convenience, *len bytes long;
 * meta, when not NULL, receives the Dropbox-API-Result metadata. */
enum dbxapi_status dbxapi_download(struct dbxapi *api, const char *path,
                                   char **data, size_t *len,
                                   struct dbxapi_entry *meta,
                                   struct dbxapi_error *err);

/* /2/files/upload with mode overwrite, autorename false, mute true.
 * meta, when not NULL, receives the new file's metadata. */
enum dbxapi_status dbxapi_upload(struct dbxapi *api, const char *path,
                                 const void *data, size_t len,
                                 struct dbxapi_entry *meta,
                                 struct dbxapi_error *err);

/* /2/files/get_metadata.  A missing path is DBXAPI_CONFLICT with a
 * summary starting "path/not_found". */
enum dbxapi_status dbxapi_get_metadata(struct dbxapi *api, const char *path,
                                       struct dbxapi_entry *meta,
                                       struct dbxapi_error *err);

/* True when err is a 409 whose error_summary begins with prefix (for
 * example "path/not_found" or "reset"). */
bool dbxapi_error_is(const struct dbxapi_error *err, const char *prefix);

/* Short lowercase name of a status, for logs. */
const char *dbxapi_status_name(enum dbxapi_status s);

void dbxapi_entry_free(struct dbxapi_entry *e);
void dbxapi_page_free(struct dbxapi_page *p);

#endif
