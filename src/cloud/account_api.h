/*
 * account_api: the users/... routes (the caller's own account) and
 * auth/token/revoke (the caller's own token).
 */
#ifndef DBX_CLOUD_ACCOUNT_API_H
#define DBX_CLOUD_ACCOUNT_API_H

#include "cloud/api.h"

/* users/get_current_account: the FullAccount of the token's account. */
void account_get_current(struct api_call *c);

/* users/get_space_usage: the bytes of the account's live files, out of
 * a Basic account's individual allocation. */
void account_get_space_usage(struct api_call *c);

/* auth/token/revoke: disables the token of the call and, when it came
 * from a refresh token, that refresh token and its other access tokens.
 * Answers 200 with a JSON null. */
void account_token_revoke(struct api_call *c);

#endif
