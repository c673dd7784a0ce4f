/*
 * admin_webhooks: the console's calls about webhook delivery (docs/CLI.md):
 * webhooks/enable, webhooks/disable, deliveries/list, attempts/list,
 * deliveries/redeliver and alerts/list.  admin_dispatch finds them here
 * after its own table, and has already checked the admin token, the
 * method and that the body is a JSON object.
 */
#ifndef DBX_CLOUD_ADMIN_WEBHOOKS_H
#define DBX_CLOUD_ADMIN_WEBHOOKS_H

#include <jansson.h>

#include "cloud/store.h"
#include "common/http_server.h"

typedef void (*admin_webhooks_handler)(struct store *s, json_t *body,
                                       struct hsrv_response *resp);

/* The handler of admin call name, or NULL when it is not one of ours. */
admin_webhooks_handler admin_webhooks_find(const char *name);

#endif
