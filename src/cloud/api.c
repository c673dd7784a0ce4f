/*
 * api: routing, authentication, argument decoding and error replies for
 * the Dropbox API v2 routes.
 */
#include "cloud/api.h"

#include "cloud/account_api.h"
#include "cloud/faults.h"
#include "cloud/files_api.h"
#include "cloud/ratelimit.h"
#include "common/log.h"
#include "common/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Longest error_summary we build (the union path is short). */
#define API_SUMMARY_MAX 256

enum api_style { STYLE_RPC, STYLE_UPLOAD, STYLE_DOWNLOAD };

/* Access rules of a route (see api_authenticate). */
#define API_SCOPE_NONE NULL     /* any valid token; no scope needed */
#define API_NO_AUTH ""          /* no Authorization at all (longpoll) */
#define API_SCOPE_WRITE "files.content.write"

struct api_route {
    const char *name;
    enum api_style style;
    const char *scope; /* required scope, API_SCOPE_NONE or API_NO_AUTH */
    void (*handle)(struct api_call *c);
};

static const struct api_route api_routes[] = {
    {"files/list_folder", STYLE_RPC, "files.metadata.read",
     files_list_folder},
    {"files/list_folder/continue", STYLE_RPC, "files.metadata.read",
     files_list_folder_continue},
    {"files/list_folder/get_latest_cursor", STYLE_RPC,
     "files.metadata.read", files_get_latest_cursor},
    {"files/get_metadata", STYLE_RPC, "files.metadata.read",
     files_get_metadata},
    {"files/delete_v2", STYLE_RPC, "files.content.write", files_delete},
    {"files/upload", STYLE_UPLOAD, "files.content.write", files_upload},
    {"files/download", STYLE_DOWNLOAD, "files.content.read",
     files_download},
    {"users/get_current_account", STYLE_RPC, "account_info.read",
     account_get_current},
    {"users/get_space_usage", STYLE_RPC, "account_info.read",
     account_get_space_usage},
    {"files/list_folder/longpoll", STYLE_RPC, API_NO_AUTH,
     files_list_folder_longpoll},
    {"files/create_folder_v2", STYLE_RPC, API_SCOPE_WRITE,
     files_create_folder},
    {"files/move_v2", STYLE_RPC, API_SCOPE_WRITE, files_move},
    {"files/copy_v2", STYLE_RPC, API_SCOPE_WRITE, files_copy},
    {"files/list_revisions", STYLE_RPC, "files.metadata.read",
     files_list_revisions},
    {"files/upload_session/start", STYLE_UPLOAD, API_SCOPE_WRITE,
     files_upload_session_start},
    {"files/upload_session/append_v2", STYLE_UPLOAD, API_SCOPE_WRITE,
     files_upload_session_append},
    {"files/upload_session/finish", STYLE_UPLOAD, API_SCOPE_WRITE,
     files_upload_session_finish},
    {"auth/token/revoke", STYLE_RPC, API_SCOPE_NONE, account_token_revoke},
};

json_t *api_tag(const char *tag, json_t *member)
{
    json_t *o = json_object();

    json_object_set_new(o, ".tag", json_string(tag));
    if (member != NULL)
        json_object_set_new(o, tag, member);
    return o;
}

void api_bad_input(struct api_call *c, const char *fmt, ...)
{
    struct buf b;
    va_list ap;
    char *msg;

    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    buf_init(&b, 0);
    buf_appendf(&b, "Error in call to API function \"%s\": %s", c->route,
                msg ? msg : "bad input");
    hsrv_reply(c->resp, 400, "text/plain; charset=utf-8", b.data, b.len);
    buf_free(&b);
    free(msg);
}

/* "path/not_found/.." from {".tag": "path", "path": {".tag": ...}}: the
 * nested tag is the member named like the tag, or else the first member
 * that is itself a tagged union (UploadWriteFailed's "reason"). */
static void api_summary(const json_t *err, struct buf *b)
{
    for (int depth = 0; depth < 8 && json_is_object(err); depth++) {
        const char *tag = json_string_value(json_object_get(err, ".tag"));
        const json_t *next;
        const char *key;
        json_t *v;

        if (tag == NULL)
            break;
        buf_appendf(b, "%s/", tag);
        next = json_object_get(err, tag);
        if (!json_is_object(next)) {
            next = NULL;
            json_object_foreach((json_t *)err, key, v)
            {
                if (json_is_object(v) && json_object_get(v, ".tag")) {
                    next = v;
                    break;
                }
            }
        }
        err = next;
    }
    buf_append(b, "..", 2);
}

static void api_reply_error(struct hsrv_response *resp, int status,
                            json_t *error)
{
    json_t *o = json_object();
    struct buf summary;
    char *text;

    buf_init(&summary, API_SUMMARY_MAX);
    api_summary(error, &summary);
    json_object_set_new(o, "error_summary", json_string(summary.data));
    json_object_set_new(o, "error", error);
    text = json_dumps(o, JSON_COMPACT);
    hsrv_reply_str(resp, status, "application/json", text);
    free(text);
    json_decref(o);
    buf_free(&summary);
}

void api_route_error(struct api_call *c, json_t *error)
{
    api_reply_error(c->resp, 409, error);
}

void api_reply_json(struct api_call *c, json_t *result)
{
    char *text = json_dumps(result, JSON_COMPACT);

    hsrv_reply_str(c->resp, 200, "application/json", text);
    free(text);
    json_decref(result);
}

void api_internal_error(struct api_call *c)
{
    hsrv_reply_str(c->resp, 500, "text/plain; charset=utf-8",
                   "Internal server error");
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "list";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "float";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    default: return "null";
    }
}

static bool arg_type_ok(const json_t *v, enum api_arg_type t)
{
    switch (t) {
    case ARG_STRING: return json_is_string(v);
    case ARG_BOOL: return json_is_boolean(v);
    case ARG_UINT: return json_is_integer(v) && json_integer_value(v) >= 0;
    default: return true;
    }
}

static const char *const arg_type_names[] = {"string", "boolean",
                                             "unsigned integer", "value"};

static const struct api_field *field_find(const struct api_field *fields,
                                          size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(fields[i].name, name) == 0)
            return &fields[i];
    }
    return NULL;
}

int api_arg_check(struct api_call *c, const struct api_field *fields,
                  size_t n)
{
    const char *key;
    json_t *v;

    if (!json_is_object(c->arg)) {
        api_bad_input(c, "%s: expected object, got %s", c->arg_from,
                      json_kind(c->arg));
        return -1;
    }
    json_object_foreach(c->arg, key, v)
    {
        const struct api_field *f = field_find(fields, n, key);

        if (f == NULL) {
            api_bad_input(c, "%s: unknown field '%s'", c->arg_from, key);
            return -1;
        }
        if (json_is_null(v) && !f->required)
            continue;
        if (!arg_type_ok(v, f->type)) {
            api_bad_input(c, "%s: %s: expected %s, got %s", c->arg_from,
                          key, arg_type_names[f->type], json_kind(v));
            return -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (fields[i].required && json_object_get(c->arg, fields[i].name)
                                      == NULL) {
            api_bad_input(c, "%s: missing required field '%s'",
                          c->arg_from, fields[i].name);
            return -1;
        }
    }
    return 0;
}

const char *api_arg_str(const struct api_call *c, const char *name)
{
    return json_string_value(json_object_get(c->arg, name));
}

bool api_arg_bool(const struct api_call *c, const char *name, bool dflt)
{
    json_t *v = json_object_get(c->arg, name);

    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

json_int_t api_arg_int(const struct api_call *c, const char *name,
                       json_int_t dflt)
{
    json_t *v = json_object_get(c->arg, name);

    return json_is_integer(v) ? json_integer_value(v) : dflt;
}


static const struct api_route *route_find(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(api_routes); i++) {
        if (strcmp(api_routes[i].name, name) == 0)
            return &api_routes[i];
    }
    return NULL;
}

static bool route_no_auth(const struct api_route *r)
{
    return r->scope != NULL && r->scope[0] == '\0';
}

/* Write routes count against the write limit as well. */
static bool route_writes(const struct api_route *r)
{
    return r->scope != NULL && strcmp(r->scope, API_SCOPE_WRITE) == 0;
}

bool api_route_known(const char *name)
{
    return route_find(name) != NULL;
}

/* RPC bodies are JSON; content uploads are bytes.  Like the real
 * service, a wrong Content-Type is refused rather than guessed at. */
static int check_content_type(struct api_call *c, enum api_style style)
{
    const char *ct = hsrv_header(c->req, "Content-Type");
    const char *want = style == STYLE_RPC ? "application/json"
                                          : "application/octet-stream";

    if (style == STYLE_DOWNLOAD || ct == NULL || ct[0] == '\0')
        return 0;
    if (strncasecmp(ct, want, strlen(want)) == 0 ||
        strcasecmp(ct, "text/plain; charset=dropbox-cors-hack") == 0)
        return 0;
    api_bad_input(c, "Bad HTTP \"Content-Type\" header: \"%.100s\".  "
                     "Expecting one of \"%s\", \"text/plain; "
                     "charset=dropbox-cors-hack\".", ct, want);
    return -1;
}

/* Authenticates the caller and checks the route's scope. */
static int api_authenticate(struct api_call *c, const char *scope)
{
    const char *h = hsrv_header(c->req, "Authorization");
    char bearer[1100];
    enum auth_status st;

    if (h == NULL && hsrv_query(c->req, "authorization") != NULL) {
        snprintf(bearer, sizeof bearer, "Bearer %s",
                 hsrv_query(c->req, "authorization"));
        h = bearer;
    }
    st = auth_check(c->store, h, &c->auth);
    switch (st) {
    case AUTH_OK:
        break;
    case AUTH_MISSING:
        api_bad_input(c, "Must provide HTTP header \"Authorization\" or "
                         "URL parameter \"authorization\".");
        return -1;
    case AUTH_MALFORMED:
        api_bad_input(c, "Invalid authorization value in HTTP header "
                         "\"Authorization\".  Expecting \"Bearer "
                         "<oauth2-access-token>\".");
        return -1;
    case AUTH_BAD_TOKEN:
        api_bad_input(c, "The given OAuth 2 access token is malformed.");
        return -1;
    case AUTH_ERROR:
        api_internal_error(c);
        return -1;
    default:
        api_reply_error(c->resp, 401,
                        api_tag(st == AUTH_EXPIRED ? "expired_access_token"
                                                   : "invalid_access_token",
                                NULL));
        return -1;
    }
    if (scope != API_SCOPE_NONE && !auth_has_scope(c->auth.scopes, scope)) {
        json_t *e = api_tag("missing_scope", NULL);

        json_object_set_new(e, "required_scope", json_string(scope));
        api_reply_error(c->resp, 401, e);
        return -1;
    }
    return 0;
}

/* Decodes the argument: the body for RPC, else the Dropbox-API-Arg
 * header or the "arg" query parameter. */
static int api_decode_arg(struct api_call *c, enum api_style style)
{
    json_error_t jerr;
    const char *text;
    size_t len;

    if (style == STYLE_RPC) {
        c->arg_from = "request body";
        text = hsrv_body(c->req, &len);
        if (len == 0) {
            text = "null";
            len = 4;
        }
    } else {
        c->arg_from = "HTTP header \"Dropbox-API-Arg\"";
        text = hsrv_header(c->req, "Dropbox-API-Arg");
        if (text == NULL) {
            c->arg_from = "URL parameter \"arg\"";
            text = hsrv_query(c->req, "arg");
        }
        if (text == NULL) {
            api_bad_input(c, "Must provide HTTP header \"Dropbox-API-Arg\""
                             " or URL parameter \"arg\".");
            return -1;
        }
        len = strlen(text);
        if (len > API_ARG_MAX) {
            api_bad_input(c, "%s: too long", c->arg_from);
            return -1;
        }
    }
    c->arg = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
                        &jerr);
    if (c->arg == NULL) {
        api_bad_input(c, "%s: could not decode input as JSON", c->arg_from);
        return -1;
    }
    return 0;
}

/* 429 with Retry-After and a RateLimitError body. */
static void api_reply_429(struct hsrv_response *resp, const char *reason,
                          int retry_after_s)
{
    json_t *o = json_pack("{s:s+, s:{s:{s:s}, s:i}}", "error_summary",
                          reason, "/..", "error", "reason", ".tag", reason,
                          "retry_after", retry_after_s);
    char *text = json_dumps(o, JSON_COMPACT);
    char secs[16];

    snprintf(secs, sizeof secs, "%d", retry_after_s);
    hsrv_reply_str(resp, 429, "application/json", text);
    hsrv_add_header(resp, "Retry-After", secs);
    free(text);
    json_decref(o);
}

/* The account a call concerns: the token's, or for a route without
 * authentication (longpoll) the owner of the cursor it names. */
static int64_t api_call_account(struct api_call *c)
{
    const char *text = json_string_value(json_object_get(c->arg, "cursor"));
    struct cursor cur;
    const char *why;
    int64_t account;

    if (c->auth.account != 0 || text == NULL)
        return c->auth.account;
    if (cursor_decode(text, c->store->cursor_key, &cur, &why) < 0)
        return 0;
    account = cur.account;
    cursor_clear(&cur);
    return account;
}

/* Answers the call with an armed fault (faults.h); 0 when none. */
static int api_fault(struct api_call *c, enum fault_kind k)
{
    switch (k) {
    case FAULT_NONE:
        return 0;
    case FAULT_429:
        api_reply_429(c->resp, "too_many_requests", 1);
        break;
    case FAULT_500:
        api_internal_error(c);
        break;
    case FAULT_EXPIRED:
    case FAULT_INVALID:
        api_reply_error(c->resp, 401,
                        api_tag(k == FAULT_EXPIRED ? "expired_access_token"
                                                   : "invalid_access_token",
                                NULL));
        break;
    case FAULT_RESET:
        api_route_error(c, api_tag("reset", NULL));
        break;
    }
    LOG_I("fault injected route=%s fault=%s", c->route, faults_kind_name(k));
    return -1;
}

/* Runs before every handler: armed faults, then the rate limits.
 * Answers and returns -1 when the call must not run. */
static int api_gate(struct api_call *c, const struct api_route *r)
{
    int64_t account = api_call_account(c);
    enum ratelimit_verdict v;
    int retry_after;

    if (account == 0)
        return 0;
    if (api_fault(c, faults_take(account, r->name)) < 0)
        return -1;
    v = ratelimit_take(account, route_writes(r), &retry_after);
    if (v == RATELIMIT_OK)
        return 0;
    api_reply_429(c->resp, v == RATELIMIT_TOO_MANY_WRITES
                               ? "too_many_write_operations"
                               : "too_many_requests",
                  retry_after);
    return -1;
}

static void api_run(struct api_call *c, const struct api_route *r)
{
    size_t len = 0;

    hsrv_body(c->req, &len);
    if (r->style != STYLE_UPLOAD && len > API_RPC_BODY_MAX) {
        hsrv_reply_str(c->resp, 413, "text/plain; charset=utf-8",
                       "Request body too large");
        return;
    }
    if (check_content_type(c, r->style) < 0)
        return;
    if (!route_no_auth(r) && api_authenticate(c, r->scope) < 0)
        return;
    if (api_decode_arg(c, r->style) < 0 || api_gate(c, r) < 0)
        return;
    r->handle(c);
}

void api_dispatch(struct store *s, const struct hsrv_request *req,
                  struct hsrv_response *resp)
{
    const char *path = hsrv_path(req);
    const struct api_route *r = route_find(path + 3);
    struct api_call c = {.store = s, .req = req, .resp = resp};

    if (r == NULL) {
        hsrv_reply_str(resp, 404, "text/plain; charset=utf-8",
                       "Unknown API function");
        return;
    }
    c.route = r->name;
    if (strcmp(hsrv_method(req), "POST") != 0) {
        api_bad_input(&c, "Expected POST, got %s", hsrv_method(req));
        return;
    }
    api_run(&c, r);
    LOG_D("api call route=%s status=%d account=%s", r->name, resp->status,
          c.auth.account_id[0] ? c.auth.account_id : "-");
    json_decref(c.arg);
}
