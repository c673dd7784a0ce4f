/*
 * account_api: the users/... routes (the caller's own account).
 */
#ifndef DBX_CLOUD_ACCOUNT_API_H
#define DBX_CLOUD_ACCOUNT_API_H

#include "cloud/api.h"

/* users/get_current_account: the FullAccount of the token's account. */
void account_get_current(struct api_call *c);

#endif
