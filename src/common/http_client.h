/*
 * http_client (hcli): blocking HTTP requests through one reusable libcurl
 * handle (so connections are kept alive).  One hcli per thread.
 *
 * Redirects are never followed.  Response bodies above max_body fail the
 * request rather than grow without bound.
 */
#ifndef DBX_HTTP_CLIENT_H
#define DBX_HTTP_CLIENT_H

#include <stddef.h>

#define HCLI_DEFAULT_MAX_BODY (512u * 1024 * 1024)

struct hcli;

struct hcli_request {
    const char *method; /* "GET", "POST" */
    const char *url;
    const char *const *headers; /* "Name: value" strings, NULL-terminated */
    const void *body;
    size_t body_len;
    long timeout_ms; /* whole transfer; 0 means 30 s */
};

struct hcli_response {
    long status;      /* 0 when the transfer failed */
    char *body;       /* NUL-terminated, owned */
    size_t body_len;
    char *content_type;  /* owned, or NULL */
    char *api_result;    /* Dropbox-API-Result header, owned, or NULL */
    char *retry_after;   /* Retry-After header, owned, or NULL */
    char error[256];     /* transport error text when status is 0 */
};

/* ca_file: PEM file of trusted CAs for HTTPS, or NULL for the system's. */
struct hcli *hcli_new(const char *ca_file, size_t max_body);
void hcli_free(struct hcli *c);

/* Returns 0 when a response arrived (any status), -1 on a transport error
 * (resp->error says which).  resp must be released with
 * hcli_response_free in both cases. */
int hcli_perform(struct hcli *c, const struct hcli_request *req,
                 struct hcli_response *resp);
void hcli_response_free(struct hcli_response *resp);

#endif
