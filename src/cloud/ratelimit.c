/*
 * ratelimit: fixed one-second windows per account in an open-addressed
 * table.  A slot whose window has passed is as good as free.
 */
#include "cloud/ratelimit.h"

#include "common/util.h"

#include <pthread.h>

struct ratelimit_slot {
    int64_t account;   /* 0: never used */
    int64_t window;    /* monotonic second the counts belong to */
    unsigned requests;
    unsigned writes;
};

static pthread_mutex_t rl_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ratelimit_slot rl_slots[RATELIMIT_SLOTS];
static unsigned rl_requests_per_s;
static unsigned rl_writes_per_s;

void ratelimit_configure(unsigned requests_per_s, unsigned writes_per_s)
{
    pthread_mutex_lock(&rl_lock);
    rl_requests_per_s = requests_per_s;
    rl_writes_per_s = writes_per_s;
    pthread_mutex_unlock(&rl_lock);
}

/* The account's slot for this window, or NULL when none is free. */
static struct ratelimit_slot *rl_slot(int64_t account, int64_t window)
{
    uint64_t h = (uint64_t)account * 0x9E3779B97F4A7C15ull;
    struct ratelimit_slot *spare = NULL;

    for (unsigned i = 0; i < RATELIMIT_PROBES; i++) {
        struct ratelimit_slot *sl =
            &rl_slots[(h + i) % RATELIMIT_SLOTS];

        if (sl->account == account) {
            if (sl->window != window) {
                sl->window = window;
                sl->requests = sl->writes = 0;
            }
            return sl;
        }
        if (spare == NULL && (sl->account == 0 || sl->window != window))
            spare = sl;
    }
    if (spare != NULL) {
        spare->account = account;
        spare->window = window;
        spare->requests = spare->writes = 0;
    }
    return spare;
}

enum ratelimit_verdict ratelimit_take(int64_t account, bool write,
                                      int *retry_after_s)
{
    enum ratelimit_verdict v = RATELIMIT_OK;
    int64_t window = time_mono_ms() / 1000;
    struct ratelimit_slot *sl;

    *retry_after_s = 0;
    pthread_mutex_lock(&rl_lock);
    if (rl_requests_per_s == 0 && rl_writes_per_s == 0)
        goto out;
    sl = rl_slot(account, window);
    if (sl == NULL)
        goto out;
    sl->requests++;
    if (write)
        sl->writes++;
    if (write && rl_writes_per_s > 0 && sl->writes > rl_writes_per_s)
        v = RATELIMIT_TOO_MANY_WRITES;
    else if (rl_requests_per_s > 0 && sl->requests > rl_requests_per_s)
        v = RATELIMIT_TOO_MANY_REQUESTS;
    if (v != RATELIMIT_OK)
        *retry_after_s = 1; /* the window ends within a second */
out:
    pthread_mutex_unlock(&rl_lock);
    return v;
}
