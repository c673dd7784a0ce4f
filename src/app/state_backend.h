/*
 * state_backend: what a state back end provides (private to src/app).
 *
 * struct state is a table of operations plus the back end's own handle;
 * state.c checks arguments and dispatches, so callers never know which
 * store they talk to.  A back end fills a struct state_ops (static,
 * const) and hands it with its handle to state_new.  Each operation has
 * the contract of the state.h function of the same name; arguments are
 * already checked (non-NULL, account ids valid) when it is called.
 */
#ifndef DBX_STATE_BACKEND_H
#define DBX_STATE_BACKEND_H

#include "app/state.h"

struct state_ops {
    const char *name; /* "sqlite", for logs */
    void (*close)(void *impl);
    enum state_status (*token_set)(void *impl, const char *account,
                                   const char *access, const char *refresh,
                                   int64_t expires_s);
    enum state_status (*token_get)(void *impl, const char *account,
                                   struct state_token *tok);
    enum state_status (*relink_set)(void *impl, const char *account);
    enum state_status (*account_known)(void *impl, const char *account);
    enum state_status (*handled_check)(void *impl, const char *account,
                                       const char *path, const char *rev);
    enum state_status (*handled_put)(void *impl, const char *account,
                                     const char *path, const char *rev);
    enum state_status (*mark_pending)(void *impl, const char *const *accounts,
                                      size_t n);
    enum state_status (*mark_pending_async)(
        void *impl, const char *const *accounts, size_t n,
        const struct state_count *counts, size_t n_counts, state_mark_cb done,
        void *arg);
    enum state_status (*mark_covered)(void *impl,
                                      const char *const *accounts, size_t n,
                                      const struct state_count *counts,
                                      size_t n_counts);
    enum state_status (*claim)(void *impl, const char *owner, int64_t lease_ms,
                               char **account, uint64_t *fence,
                               int64_t *version);
    enum state_status (*renew)(void *impl, const char *account, uint64_t fence,
                               int64_t lease_ms);
    enum state_status (*release)(void *impl, const char *account,
                                 uint64_t fence, int64_t version);
    enum state_status (*cursor_get)(void *impl, const char *account,
                                    char **cursor);
    enum state_status (*cursor_set)(void *impl, const char *account,
                                    const char *cursor, uint64_t fence);
    enum state_status (*counter_add)(void *impl, const char *name,
                                     int64_t delta);
    enum state_status (*counter_get)(void *impl, const char *name,
                                     int64_t *value);
    enum state_status (*failure_set)(void *impl, const char *account,
                                     const char *what, int64_t *streak);
    enum state_status (*failure_get)(void *impl, const char *account,
                                     char **what);
    enum state_status (*status_json)(void *impl, char **json);
};

/* Wraps a back end's handle; the state owns impl from now on and passes
 * it to ops->close in state_close. */
struct state *state_new(const struct state_ops *ops, void *impl);

/* The names status always lists, even at zero. */
extern const char *const state_counter_names[];
extern const size_t state_counter_count;

/* Wall-clock milliseconds since the epoch: leases are compared across
 * processes (and, with a shared store, across hosts). */
int64_t state_now_ms(void);

#endif
