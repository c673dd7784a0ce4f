/*
 * admin: the console's JSON API, POST /admin/<name> (docs/CLI.md).
 *
 * Every call needs "Authorization: Bearer <admin token>", the random token
 * kept in DATA/admin.token (mode 0600).  Answers are JSON; a bad body is
 * a 400 {"error": "..."}, a wrong or missing token a 401.
 */
#ifndef DBX_CLOUD_ADMIN_H
#define DBX_CLOUD_ADMIN_H

#include "cloud/store.h"
#include "common/http_server.h"

#include <jansson.h>

/* Largest admin request body. */
#define ADMIN_BODY_MAX (64u * 1024)

/* Reads DATA/admin.token, creating it when missing.  Returns the token
 * (caller frees) or NULL. */
char *admin_token_ensure(const char *dir);

/* Answers JSON o (stolen) with status. */
void admin_reply(struct hsrv_response *resp, int status, json_t *o);
/* Answers {"error": msg} with status. */
void admin_error(struct hsrv_response *resp, int status, const char *msg);

/* Handles a request whose path starts with "/admin/". */
void admin_dispatch(struct store *s, const char *admin_token,
                    const struct hsrv_request *req,
                    struct hsrv_response *resp);

#endif
