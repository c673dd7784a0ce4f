/*
 * api: the framing of Dropbox API v2 calls.
 *
 * A call is POST /2/<namespace>/<route>.  RPC routes take their argument
 * as the JSON body and answer JSON; upload routes take it in the
 * Dropbox-API-Arg header (or the "arg" query parameter) with the file as
 * the body and answer JSON; download routes answer the file as the body
 * and the metadata in the Dropbox-API-Result header.
 *
 * Errors follow the real service: 400 text/plain naming the problem for a
 * malformed call, 401 JSON AuthError, 409 JSON route error with an
 * error_summary, 500 text for our own failures.
 */
#ifndef DBX_CLOUD_API_H
#define DBX_CLOUD_API_H

#include "cloud/auth.h"
#include "cloud/store.h"
#include "common/http_server.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Largest RPC body: arguments are small JSON documents. */
#define API_RPC_BODY_MAX (1u * 1024 * 1024)
/* Largest upload body: the real service's single-request limit. */
#define API_UPLOAD_BODY_MAX (150u * 1024 * 1024)
/* Largest Dropbox-API-Arg header value. */
#define API_ARG_MAX (64u * 1024)

struct api_call {
    struct store *store;
    const struct hsrv_request *req;
    struct hsrv_response *resp;
    const char *route;    /* "files/list_folder" */
    const char *arg_from; /* "request body" or the header's name */
    struct auth auth;     /* the caller */
    json_t *arg;          /* the parsed argument (borrowed by handlers) */
};

/* Handles a request whose path starts with "/2/". */
void api_dispatch(struct store *s, const struct hsrv_request *req,
                  struct hsrv_response *resp);

/* True when name ("files/list_folder") is a route we serve. */
bool api_route_known(const char *name);

/* Field kinds for api_arg_check.  ARG_ANY accepts any JSON value and
 * leaves checking to the handler. */
enum api_arg_type { ARG_STRING, ARG_BOOL, ARG_UINT, ARG_ANY };

struct api_field {
    const char *name;
    enum api_arg_type type;
    bool required;
};

/* Checks that the argument is an object with only the given fields, of
 * the given types (null counts as absent for optional fields).  On a
 * mismatch it answers 400 and returns -1. */
int api_arg_check(struct api_call *c, const struct api_field *fields,
                  size_t n);

/* The string, bool or integer value of an argument field, or the
 * fallback when absent or null. */
const char *api_arg_str(const struct api_call *c, const char *name);
bool api_arg_bool(const struct api_call *c, const char *name, bool dflt);
json_int_t api_arg_int(const struct api_call *c, const char *name,
                       json_int_t dflt);

/* 400 text/plain: 'Error in call to API function "<route>": <msg>'. */
void api_bad_input(struct api_call *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* 409 with error (stolen) and its error_summary. */
void api_route_error(struct api_call *c, json_t *error);

/* 200 JSON body (result stolen). */
void api_reply_json(struct api_call *c, json_t *result);

/* 500 text/plain. */
void api_internal_error(struct api_call *c);

/* Builds {".tag": tag}, optionally with one member named like the tag. */
json_t *api_tag(const char *tag, json_t *member);

#endif
