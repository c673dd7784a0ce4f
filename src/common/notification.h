/*
 * notification: the body of a webhook notification, both ways.
 *
 *   {"list_folder": {"accounts": ["dbid:A", "dbid:B"]},
 *    "delta": {"users": [1001, 1002]}}
 *
 * The cloud builds it in the spacing of Python's json.dumps, as the real
 * sender does (the signature covers those exact bytes); the app parses
 * it after checking the signature, and needs only list_folder.accounts.
 */
#ifndef DBX_NOTIFICATION_H
#define DBX_NOTIFICATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest account id accepted.  Real ones are exactly 40 characters
 * ("dbid:" + 35); the margin admits test and future ids. */
#define NOTIFICATION_ACCOUNT_MAX 64
/* Most accounts one notification may name when parsed. */
#define NOTIFICATION_ACCOUNTS_MAX 20000

/* "dbid:" followed by 1 to NOTIFICATION_ACCOUNT_MAX - 5 characters of
 * [A-Za-z0-9_-]. */
bool notification_account_valid(const char *account);

/* The body naming accounts[i] with uids[i]; caller frees. */
char *notification_body(const char *const *accounts, const int64_t *uids,
                        size_t n);

/* Parses a body.  On success (0) *accounts is a new array of n new
 * strings (free with notification_accounts_free).  Returns -1 when the
 * body is not JSON, has no list_folder.accounts array, names more than
 * NOTIFICATION_ACCOUNTS_MAX accounts, or holds an id that is not valid;
 * a duplicated key anywhere counts as malformed. */
int notification_parse(const char *body, size_t len, char ***accounts,
                       size_t *n);
/* The same answers, always through the JSON library.  notification_parse
 * first matches the exact layout the sender uses (the one
 * notification_body writes) byte for byte, which costs a tenth of a
 * JSON parse, and hands every other body to this function. */
int notification_parse_json(const char *body, size_t len, char ***accounts,
                            size_t *n);
void notification_accounts_free(char **accounts, size_t n);

#endif
