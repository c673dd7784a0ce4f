/*
 * handler_md: Markdown to HTML, one entry at a time.  See handler_md.h.
 */
#include "app/handler_md.h"

#include "common/log.h"
#include "common/sig.h"
#include "common/util.h"

#include <md4c-html.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MD_EXT_LEN 3 /* ".md" */

struct handler_md {
    struct state *st;
    bool delete_html;
};

bool handler_md_is_markdown(const char *path)
{
    const char *slash;
    size_t len;

    if (path == NULL)
        return false;
    slash = strrchr(path, '/');
    if (slash != NULL)
        path = slash + 1;
    len = strlen(path);
    return len > MD_EXT_LEN && str_ends_with_ci(path, ".md");
}

char *handler_md_html_path(const char *path)
{
    size_t stem;

    if (!handler_md_is_markdown(path))
        return NULL;
    stem = strlen(path) - MD_EXT_LEN;
    return xasprintf("%.*s.html", (int)stem, path);
}

/* md4c hands the HTML over in pieces; the first piece that does not fit
 * sets overflow, and the rest are dropped. */
struct render_out {
    struct buf html;
    bool overflow;
};

static void render_piece(const MD_CHAR *text, MD_SIZE size, void *userdata)
{
    struct render_out *out = userdata;

    if (!out->overflow && buf_append(&out->html, text, size) < 0)
        out->overflow = true;
}

int handler_md_render(const char *src, size_t len, char **html,
                      size_t *html_len)
{
    struct render_out out = {.overflow = false};
    int rc = -1;

    *html = NULL;
    *html_len = 0;
    buf_init(&out.html, HANDLER_MD_MAX_HTML);
    if (len > UINT32_MAX)
        goto out;
    if (md_html(src, (MD_SIZE)len, render_piece, &out, MD_DIALECT_GITHUB, 0) !=
            0 ||
        out.overflow)
        goto out;

    *html_len = out.html.len;
    *html = buf_steal(&out.html);
    if (*html == NULL)
        *html = xstrdup("");
    rc = 0;
out:
    buf_free(&out.html);
    return rc;
}

/* How a failed API call ends the entry: what may pass on its own is
 * retried later; what will fail again the same way is a failure. */
static enum handler_result api_result(enum dbxapi_status st,
                                      const struct dbxapi_error *err,
                                      int64_t *retry_after_ms)
{
    switch (st) {
    case DBXAPI_OK:
        return HANDLER_OK;
    case DBXAPI_RETRY:
        if (err->retry_after_s >= 0)
            *retry_after_ms = err->retry_after_s * 1000;
        return HANDLER_RETRY;
    case DBXAPI_AUTH:
    case DBXAPI_TRANSPORT:
        return HANDLER_RETRY;
    case DBXAPI_CONFLICT:
    case DBXAPI_PROTOCOL:
        break;
    }
    return HANDLER_FAILED;
}

static void log_api_failure(const char *account, const char *call,
                            const char *path, enum dbxapi_status st,
                            const struct dbxapi_error *err)
{
    LOG_W("markdown %s failed account=%s path=%s result=%s status=%ld "
          "error=\"%s\"",
          call, account, path, dbxapi_status_name(st), err->http_status,
          err->summary);
}

/* True when the file at html_path already holds exactly html; a missing
 * file (or any doubt) means no.  A temporary failure is reported through
 * *result so that the entry is retried. */
static bool html_is_current(struct dbxapi *api, const char *account,
                            const char *html_path, const char *html,
                            size_t html_len, enum handler_result *result,
                            int64_t *retry_after_ms)
{
    struct dbxapi_entry meta;
    struct dbxapi_error err;
    char hash[SIG_HEX_LEN + 1];
    enum dbxapi_status st;
    bool same;

    *result = HANDLER_OK;
    st = dbxapi_get_metadata(api, html_path, &meta, &err);
    if (st == DBXAPI_CONFLICT)
        return false; /* not found, or not a file: the upload decides */
    if (st != DBXAPI_OK) {
        log_api_failure(account, "get_metadata", html_path, st, &err);
        *result = api_result(st, &err, retry_after_ms);
        return false;
    }
    content_hash_buf(html, html_len, hash);
    same = meta.tag == DBXAPI_FILE && meta.content_hash != NULL &&
           strcmp(meta.content_hash, hash) == 0;
    dbxapi_entry_free(&meta);
    return same;
}

/* Renders src and writes it to html_path unless it is already there. */
static enum handler_result publish(struct handler_md *md, struct dbxapi *api,
                                   const char *account, const char *md_path,
                                   const char *src, size_t src_len,
                                   int64_t *retry_after_ms)
{
    char *html_path = handler_md_html_path(md_path);
    enum handler_result result = HANDLER_FAILED;
    struct dbxapi_error err;
    enum dbxapi_status st;
    size_t html_len;
    char *html = NULL;

    if (handler_md_render(src, src_len, &html, &html_len) < 0) {
        LOG_W("markdown render failed account=%s path=%s size=%zu", account,
              md_path, src_len);
        goto out;
    }
    if (html_is_current(api, account, html_path, html, html_len, &result,
                        retry_after_ms)) {
        state_counter_add(md->st, "skipped_identical", 1);
        LOG_D("markdown unchanged account=%s path=%s", account, html_path);
        goto out;
    }
    if (result != HANDLER_OK)
        goto out;

    st = dbxapi_upload(api, html_path, html, html_len, NULL, &err);
    result = api_result(st, &err, retry_after_ms);
    if (st != DBXAPI_OK) {
        log_api_failure(account, "upload", html_path, st, &err);
        goto out;
    }
    state_counter_add(md->st, "conversions", 1);
    LOG_I("markdown converted account=%s path=%s bytes=%zu", account, html_path,
          html_len);
out:
    free(html);
    free(html_path);
    return result;
}

/* The .md at e's path is gone: delete the .html beside it, if any. */
static enum handler_result md_deleted(struct handler_md *md,
                                      struct dbxapi *api, const char *account,
                                      const struct dbxapi_entry *e,
                                      int64_t *retry_after_ms)
{
    const char *path = e->path_display ? e->path_display : e->path_lower;
    struct dbxapi_error err;
    enum dbxapi_status st;
    char *html_path;

    if (path == NULL || !handler_md_is_markdown(path))
        return HANDLER_OK;
    html_path = handler_md_html_path(path);
    st = dbxapi_delete(api, html_path, &err);
    if (st == DBXAPI_OK) {
        state_counter_add(md->st, "html_deleted", 1);
        LOG_I("markdown html deleted account=%s path=%s", account, html_path);
    } else if (st == DBXAPI_CONFLICT) {
        st = DBXAPI_OK; /* no .html there (any more) */
    } else {
        log_api_failure(account, "delete", html_path, st, &err);
    }
    free(html_path);
    return api_result(st, &err, retry_after_ms);
}

static enum handler_result md_handle_entry(void *ctx, struct dbxapi *api,
                                           const char *account,
                                           const struct dbxapi_entry *e,
                                           int64_t *retry_after_ms)
{
    struct handler_md *md = ctx;
    enum handler_result result;
    struct dbxapi_error err;
    enum dbxapi_status st;
    size_t len;
    char *src;

    if (e->tag == DBXAPI_DELETED && md->delete_html)
        return md_deleted(md, api, account, e, retry_after_ms);
    if (e->tag != DBXAPI_FILE || e->path_lower == NULL ||
        !handler_md_is_markdown(e->path_display))
        return HANDLER_OK;

    st = dbxapi_download(api, e->path_lower, &src, &len, NULL, &err);
    if (st == DBXAPI_CONFLICT && dbxapi_error_is(&err, "path/not_found")) {
        /* Deleted since it was listed; a later entry will say so. */
        LOG_D("markdown gone account=%s path=%s", account, e->path_lower);
        return HANDLER_OK;
    }
    if (st != DBXAPI_OK) {
        log_api_failure(account, "download", e->path_lower, st, &err);
        return api_result(st, &err, retry_after_ms);
    }

    result =
        publish(md, api, account, e->path_display, src, len, retry_after_ms);
    free(src);
    return result;
}

static void md_destroy(void *ctx)
{
    free(ctx);
}

void handler_md_init(struct handler *h, struct state *st,
                     const struct handler_md_config *cfg)
{
    struct handler_md *md = xcalloc(1, sizeof *md);

    md->st = st;
    md->delete_html = cfg != NULL && cfg->delete_html;
    h->name = "markdown";
    h->ctx = md;
    h->handle_entry = md_handle_entry;
    h->destroy = md_destroy;
}
