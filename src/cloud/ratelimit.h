/*
 * ratelimit: per-account request limits, like the real service's 429s.
 *
 * Two limits, each a count of calls per one-second window per account:
 * every API call counts against the request limit, and calls of write
 * routes also against the write limit.  A limit of 0 is off (the
 * default).  The state is one table for the whole process, guarded by
 * its own mutex; ratelimit_configure is called once at start-up.
 */
#ifndef DBX_CLOUD_RATELIMIT_H
#define DBX_CLOUD_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

/* Accounts tracked at once; an account that finds no slot is not
 * limited (the table favours serving over refusing). */
#define RATELIMIT_SLOTS 4096
/* Slots probed per lookup. */
#define RATELIMIT_PROBES 32

enum ratelimit_verdict {
    RATELIMIT_OK,
    RATELIMIT_TOO_MANY_REQUESTS,
    RATELIMIT_TOO_MANY_WRITES,
};

/* Sets the limits (calls per second per account; 0: off). */
void ratelimit_configure(unsigned requests_per_s, unsigned writes_per_s);

/* Counts one call of account and says whether it may run.  When it may
 * not, *retry_after_s is the number of seconds to wait. */
enum ratelimit_verdict ratelimit_take(int64_t account, bool write,
                                      int *retry_after_s);

#endif
