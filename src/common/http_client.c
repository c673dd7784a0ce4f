/*
 * http_client: one libcurl easy handle per hcli.
 *
 * The handle is reset before every request (which clears its options but
 * keeps its connection cache and TLS sessions), so a request never
 * inherits settings from the previous one and connections are still
 * reused.  The body goes into a buffer bounded by max_body; the write
 * callback refusing more data is how an oversized response is aborted.
 */
#include "common/http_client.h"

#include "common/log.h"
#include "common/util.h"

#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HCLI_DEFAULT_TIMEOUT_MS 30000L
/* Connecting never needs more than this on our networks, even when the
 * whole transfer may take longer. */
#define HCLI_CONNECT_TIMEOUT_MS 10000L

struct hcli {
    CURL *curl;
    char *ca_file;
    size_t max_body;
};

/* What the callbacks fill during one transfer. */
struct hcli_transfer {
    struct buf body;
    bool too_large;
    struct hcli_response *resp;
};

static pthread_once_t hcli_once = PTHREAD_ONCE_INIT;

static void hcli_global_init(void)
{
    struct sigaction old;

    if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK) {
        fprintf(stderr, "dbxhook: curl_global_init failed\n");
        abort();
    }
    /* With CURLOPT_NOSIGNAL curl leaves SIGPIPE alone, so a server that
     * closes mid-request must not kill us. */
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
}

struct hcli *hcli_new(const char *ca_file, size_t max_body)
{
    struct hcli *c;

    pthread_once(&hcli_once, hcli_global_init);
    c = xcalloc(1, sizeof *c);
    c->curl = curl_easy_init();
    if (c->curl == NULL) {
        LOG_E("hcli curl_easy_init failed");
        free(c);
        return NULL;
    }
    c->ca_file = ca_file ? xstrdup(ca_file) : NULL;
    c->max_body = max_body ? max_body : HCLI_DEFAULT_MAX_BODY;
    return c;
}

void hcli_free(struct hcli *c)
{
    if (c == NULL)
        return;
    curl_easy_cleanup(c->curl);
    free(c->ca_file);
    free(c);
}

void hcli_response_free(struct hcli_response *resp)
{
    free(resp->body);
    free(resp->content_type);
    free(resp->api_result);
    free(resp->retry_after);
    resp->body = resp->content_type = NULL;
    resp->api_result = resp->retry_after = NULL;
    resp->body_len = 0;
}

/* ---- callbacks ------------------------------------------------------ */

static size_t hcli_on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    struct hcli_transfer *t = ud;
    size_t n = size * nmemb;

    if (buf_append(&t->body, data, n) < 0) {
        t->too_large = true;
        return 0; /* anything but n makes curl abort the transfer */
    }
    return n;
}

/* Stores a copy of the value of "Name: value\r\n" in *slot when the
 * line's name is name. */
static void hcli_capture(const char *line, size_t len, const char *name,
                         char **slot)
{
    size_t nlen = strlen(name);
    const char *v, *end = line + len;

    if (len <= nlen || line[nlen] != ':' || strncasecmp(line, name, nlen) != 0)
        return;
    v = line + nlen + 1;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' ||
                       end[-1] == '\t'))
        end--;
    free(*slot);
    *slot = xstrndup(v, (size_t)(end - v));
}

static size_t hcli_on_header(char *line, size_t size, size_t nmemb, void *ud)
{
    struct hcli_transfer *t = ud;
    struct hcli_response *r = t->resp;
    size_t n = size * nmemb;

    /* A status line starts a new response (after a 100 Continue, say):
     * only the final response's headers count. */
    if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        hcli_response_free(r);
        return n;
    }
    hcli_capture(line, n, "Content-Type", &r->content_type);
    hcli_capture(line, n, "Dropbox-API-Result", &r->api_result);
    hcli_capture(line, n, "Retry-After", &r->retry_after);
    return n;
}

/* ---- one request ---------------------------------------------------- */

static bool hcli_has_header(const char *const *headers, const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        if (strncasecmp(headers[i], name, n) == 0 && headers[i][n] == ':')
            return true;
    }
    return false;
}

static struct curl_slist *hcli_header_list(const struct hcli_request *req)
{
    struct curl_slist *list = NULL;

    for (size_t i = 0; req->headers != NULL && req->headers[i]; i++)
        list = curl_slist_append(list, req->headers[i]);
    /* curl would otherwise invent a form Content-Type for a POST, and
     * wait for 100 Continue before sending a large body. */
    if (!hcli_has_header(req->headers, "Content-Type"))
        list = curl_slist_append(list, "Content-Type:");
    if (!hcli_has_header(req->headers, "Expect"))
        list = curl_slist_append(list, "Expect:");
    return list;
}

static void hcli_set_method(CURL *h, const struct hcli_request *req)
{
    const char *m = req->method ? req->method : "GET";
    bool has_body = req->body != NULL || strcmp(m, "POST") == 0;

    if (strcmp(m, "GET") == 0 && !has_body) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        return;
    }
    if (strcmp(m, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        return;
    }
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)(req->body ? req->body_len : 0));
    if (strcmp(m, "POST") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, m);
}

static void hcli_setup(struct hcli *c, const struct hcli_request *req,
                       struct hcli_transfer *t, struct curl_slist *headers,
                       char *errbuf)
{
    CURL *h = c->curl;
    long timeout =
        req->timeout_ms > 0 ? req->timeout_ms : HCLI_DEFAULT_TIMEOUT_MS;

    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, req->url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(
        h, CURLOPT_CONNECTTIMEOUT_MS,
        timeout < HCLI_CONNECT_TIMEOUT_MS ? timeout : HCLI_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, hcli_on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, hcli_on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, t);
    if (c->ca_file != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    hcli_set_method(h, req);
}

int hcli_perform(struct hcli *c, const struct hcli_request *req,
                 struct hcli_response *resp)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    struct hcli_transfer t = {.resp = resp};
    struct curl_slist *headers;
    CURLcode rc;
    int result = -1;

    memset(resp, 0, sizeof *resp);
    buf_init(&t.body, c->max_body);
    headers = hcli_header_list(req);
    hcli_setup(c, req, &t, headers, errbuf);

    rc = curl_easy_perform(c->curl);
    if (t.too_large) {
        snprintf(resp->error, sizeof resp->error,
                 "response body larger than %zu bytes", c->max_body);
    } else if (rc != CURLE_OK) {
        snprintf(resp->error, sizeof resp->error, "%s",
                 errbuf[0] ? errbuf : curl_easy_strerror(rc));
    } else {
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &resp->status);
        result = 0;
    }
    if (result < 0)
        resp->status = 0;

    resp->body_len = t.body.len;
    resp->body = buf_steal(&t.body);
    buf_free(&t.body);
    /* The easy handle keeps pointers to these until the next reset. */
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(headers);
    return result;
}
