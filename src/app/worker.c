/*
 * worker: a pool of threads that process pending accounts.
 *
 * Each thread owns a dbxapi (its own HTTP connections) and loops: claim
 * a pending account, run it, and when nothing is pending sleep on the
 * pool's condition variable until worker_pool_wake or idle_poll_ms.
 *
 * One run of an account (account_run) lists from its cursor until
 * has_more is false, page by page: every entry goes to the handler, then
 * the cursor is saved under the lease's fence, then the lease is renewed.
 * How a run ends decides what happens to the lease and the pending mark:
 *
 *   RUN_DONE     the account is up to date: release with the claimed
 *                version (the mark goes, unless a notification came
 *                meanwhile, in which case exactly one more run follows).
 *   RUN_STOPPED  the pool is stopping with pages left: release with
 *                version -1, which no mark carries, so the account stays
 *                pending and the next worker resumes from the cursor.
 *   RUN_BACKOFF  a temporary failure (429, 5xx, lost connection, expired
 *                token): the cursor stays where it was and the lease is
 *                *kept*, renewed for the backoff delay.  Nobody, in this
 *                process or another, claims the account before the delay
 *                is over; then the lease expires and the still-pending
 *                account is claimed like one whose worker died.  Other
 *                accounts are not held up.
 *   RUN_LOST     a newer lease exists (this one expired): stop at once,
 *                touch nothing.
 */
#include "app/worker.h"

#include "app/dbxapi.h"
#include "app/handler.h"
#include "app/handler_md.h"
#include "common/log.h"
#include "common/util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Backoff before an account is tried again: after a 429/5xx without
 * Retry-After or a transport error; after an auth error (a new token has
 * to be stored first); after an error that will not pass by itself.  A
 * server's Retry-After is followed up to WORKER_BACKOFF_MAX_MS. */
#define WORKER_BACKOFF_RETRY_MS 2000
#define WORKER_BACKOFF_AUTH_MS  60000
#define WORKER_BACKOFF_ERROR_MS 60000
#define WORKER_BACKOFF_MAX_MS   600000
/* A cursor that gets "reset" is dropped and the listing restarted; a
 * second reset in the same run is treated as an error. */
#define WORKER_MAX_RESETS 1
/* Owner strings: "hostname:pid:thread". */
#define WORKER_OWNER_MAX 128
/* Failure descriptions stored for status. */
#define WORKER_FAILURE_MAX 300

struct worker_pool;

struct worker_thread {
    struct worker_pool *pool;
    struct dbxapi *api;
    pthread_t tid;
    bool started;
    char owner[WORKER_OWNER_MAX];
};

struct worker_pool {
    struct state *st;
    struct handler handler;
    int64_t lease_ms;
    int64_t idle_poll_ms;
    atomic_bool stopping;

    pthread_mutex_t lock; /* guards wake_seq */
    pthread_cond_t cond;  /* signalled by wake and stop; CLOCK_MONOTONIC */
    uint64_t wake_seq;

    unsigned n_threads;
    struct worker_thread *threads;
};

enum run_end {
    RUN_DONE,
    RUN_STOPPED,
    RUN_BACKOFF,
    RUN_LOST,
};

/* One run of one account. */
struct run {
    struct worker_thread *w;
    const char *account;
    uint64_t fence;
    int64_t renewed_ms; /* monotonic time of the last renew */
    int64_t backoff_ms; /* for RUN_BACKOFF */
    char *cursor;       /* NULL until the first listing */
    unsigned pages;
    unsigned entries;
    unsigned failed; /* entries the handler could not handle */
    int resets;
};

/* ---- ending a run ----------------------------------------------------- */

/* Records a failure for status: the account's last failure and the
 * "failures" counter. */
static void run_failure(struct run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void run_failure(struct run *r, const char *fmt, ...)
{
    char what[WORKER_FAILURE_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    state_failure_set(r->w->pool->st, r->account, what);
    state_counter_add(r->w->pool->st, "failures", 1);
}

/* The delay a server asked for (-1: none) within our bounds. */
static int64_t backoff_clamp(int64_t asked_ms)
{
    if (asked_ms < 0)
        return WORKER_BACKOFF_RETRY_MS;
    if (asked_ms > WORKER_BACKOFF_MAX_MS)
        return WORKER_BACKOFF_MAX_MS;
    return asked_ms > 0 ? asked_ms : 1;
}

static int64_t backoff_for(enum dbxapi_status st,
                           const struct dbxapi_error *err)
{
    if (st == DBXAPI_AUTH)
        return WORKER_BACKOFF_AUTH_MS;
    if (st == DBXAPI_CONFLICT || st == DBXAPI_PROTOCOL)
        return WORKER_BACKOFF_ERROR_MS;
    if (st == DBXAPI_RETRY && err->retry_after_s >= 0)
        return backoff_clamp(err->retry_after_s * 1000);
    return WORKER_BACKOFF_RETRY_MS;
}

/* Renews the lease when a third of it has passed; false when it is lost
 * (or the store fails: then nothing fenced can be trusted either). */
static bool run_keep_lease(struct run *r, bool force)
{
    struct worker_pool *p = r->w->pool;
    int64_t now = time_mono_ms();
    enum state_status st;

    if (!force && now - r->renewed_ms < p->lease_ms / 3)
        return true;
    st = state_renew(p->st, r->account, r->fence, p->lease_ms);
    if (st != STATE_OK) {
        LOG_W("worker lease lost account=%s fence=%llu", r->account,
              (unsigned long long)r->fence);
        return false;
    }
    r->renewed_ms = now;
    return true;
}

static void run_finish(struct run *r, enum run_end end, int64_t version)
{
    struct worker_pool *p = r->w->pool;

    switch (end) {
    case RUN_DONE:
        state_counter_add(p->st, "runs", 1);
        if (r->failed == 0)
            state_failure_set(p->st, r->account, NULL);
        state_release(p->st, r->account, r->fence, version);
        LOG_I("worker run done account=%s pages=%u entries=%u failed=%u",
              r->account, r->pages, r->entries, r->failed);
        break;
    case RUN_STOPPED:
        state_release(p->st, r->account, r->fence, -1);
        LOG_I("worker run stopped account=%s pages=%u", r->account, r->pages);
        break;
    case RUN_BACKOFF:
        state_renew(p->st, r->account, r->fence, r->backoff_ms);
        LOG_I("worker run backoff account=%s pages=%u delay_ms=%lld",
              r->account, r->pages, (long long)r->backoff_ms);
        break;
    case RUN_LOST:
        break;
    }
}

/* ---- pages ------------------------------------------------------------ */

/* Fetches the next page: list_folder without a cursor, else continue. */
static enum run_end run_fetch(struct run *r, struct dbxapi_page *page)
{
    struct dbxapi_error err;
    enum dbxapi_status st;

    for (;;) {
        if (r->cursor == NULL)
            st = dbxapi_list_folder(r->w->api, page, &err);
        else
            st = dbxapi_list_continue(r->w->api, r->cursor, page, &err);
        if (st == DBXAPI_OK)
            return RUN_DONE;
        if (r->cursor == NULL || !dbxapi_error_is(&err, "reset") ||
            r->resets >= WORKER_MAX_RESETS)
            break;
        /* The server can no longer serve this cursor: list again from
         * the start; unchanged .html files are not rewritten. */
        LOG_W("worker cursor reset account=%s", r->account);
        r->resets++;
        free(r->cursor);
        r->cursor = NULL;
    }
    LOG_W("worker list failed account=%s result=%s status=%ld error=\"%s\"",
          r->account, dbxapi_status_name(st), err.http_status, err.summary);
    run_failure(r, "list_folder: %s %ld %s", dbxapi_status_name(st),
                err.http_status, err.summary);
    r->backoff_ms = backoff_for(st, &err);
    return RUN_BACKOFF;
}

static const char *entry_path(const struct dbxapi_entry *e)
{
    return e->path_display != NULL ? e->path_display : "(no path)";
}

/* Hands every entry of page to the handler; RUN_DONE when the page is
 * handled (some entries may have failed for good). */
static enum run_end run_entries(struct run *r, const struct dbxapi_page *page)
{
    const struct handler *h = &r->w->pool->handler;

    for (size_t i = 0; i < page->n_entries; i++) {
        const struct dbxapi_entry *e = &page->entries[i];
        int64_t retry_after_ms = -1;
        enum handler_result res;

        if (!run_keep_lease(r, false))
            return RUN_LOST;
        res =
            h->handle_entry(h->ctx, r->w->api, r->account, e, &retry_after_ms);
        r->entries++;
        if (res == HANDLER_RETRY) {
            run_failure(r, "%s: temporary failure at %s", h->name,
                        entry_path(e));
            r->backoff_ms = backoff_clamp(retry_after_ms);
            return RUN_BACKOFF;
        }
        if (res == HANDLER_FAILED) {
            r->failed++;
            run_failure(r, "%s: failed at %s", h->name, entry_path(e));
        }
    }
    return RUN_DONE;
}

/* Saves the page's cursor under the fence, then renews the lease. */
static enum run_end run_commit(struct run *r, struct dbxapi_page *page)
{
    struct worker_pool *p = r->w->pool;
    enum state_status st;

    st = state_cursor_set(p->st, r->account, page->cursor, r->fence);
    if (st == STATE_LOST) {
        LOG_W("worker lease lost account=%s fence=%llu", r->account,
              (unsigned long long)r->fence);
        return RUN_LOST;
    }
    if (st != STATE_OK) {
        run_failure(r, "state: cannot save the cursor");
        r->backoff_ms = WORKER_BACKOFF_RETRY_MS;
        return RUN_BACKOFF;
    }
    free(r->cursor);
    r->cursor = page->cursor;
    page->cursor = NULL;
    r->pages++;
    state_counter_add(p->st, "pages", 1);
    return run_keep_lease(r, true) ? RUN_DONE : RUN_LOST;
}

/* Lists and handles pages until has_more is false or the run must end. */
static enum run_end run_pages(struct run *r)
{
    struct dbxapi_page page;
    enum run_end end;
    bool has_more;

    do {
        end = run_fetch(r, &page);
        if (end != RUN_DONE)
            return end;
        end = run_entries(r, &page);
        if (end == RUN_DONE)
            end = run_commit(r, &page);
        has_more = page.has_more;
        dbxapi_page_free(&page);
        if (end != RUN_DONE)
            return end;
        if (has_more && atomic_load(&r->w->pool->stopping))
            return RUN_STOPPED;
    } while (has_more);
    return RUN_DONE;
}

/* ---- accounts --------------------------------------------------------- */

/* Loads the token and cursor, runs the pages, ends the run. */
static void account_run(struct worker_thread *w, const char *account,
                        uint64_t fence, int64_t version)
{
    struct worker_pool *p = w->pool;
    struct run r = {.w = w, .account = account, .fence = fence};
    enum state_status st;
    enum run_end end;
    char *token = NULL;

    r.renewed_ms = time_mono_ms();
    st = state_token_get(p->st, account, &token);
    if (st == STATE_NONE) {
        LOG_W("worker unknown account account=%s", account);
        run_failure(&r, "unknown account: no token stored");
        state_release(p->st, account, fence, version);
        return;
    }
    if (st != STATE_OK) {
        state_release(p->st, account, fence, -1);
        return;
    }
    dbxapi_set_token(w->api, token);
    explicit_bzero(token, strlen(token));
    free(token);

    st = state_cursor_get(p->st, account, &r.cursor);
    if (st == STATE_OK || st == STATE_NONE) {
        end = run_pages(&r);
    } else {
        r.backoff_ms = WORKER_BACKOFF_RETRY_MS;
        end = RUN_BACKOFF;
    }
    run_finish(&r, end, version);
    dbxapi_set_token(w->api, NULL);
    free(r.cursor);
}

/* Sleeps until woken, stopped, or idle_poll_ms passed, unless a wake
 * came since seen (the value of wake_seq before the last claim). */
static void pool_idle_wait(struct worker_pool *p, uint64_t seen)
{
    struct timespec until;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += p->idle_poll_ms / 1000;
    until.tv_nsec += (p->idle_poll_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->lock);
    if (!atomic_load(&p->stopping) && p->wake_seq == seen)
        pthread_cond_timedwait(&p->cond, &p->lock, &until);
    pthread_mutex_unlock(&p->lock);
}

static void *worker_thread_main(void *arg)
{
    struct worker_thread *w = arg;
    struct worker_pool *p = w->pool;

    while (!atomic_load(&p->stopping)) {
        char *account = NULL;
        uint64_t fence = 0, seen;
        int64_t version = 0;
        enum state_status st;

        pthread_mutex_lock(&p->lock);
        seen = p->wake_seq;
        pthread_mutex_unlock(&p->lock);

        st = state_claim(p->st, w->owner, p->lease_ms, &account, &fence,
                         &version);
        if (st == STATE_OK) {
            LOG_D("worker claimed account=%s fence=%llu owner=%s", account,
                  (unsigned long long)fence, w->owner);
            account_run(w, account, fence, version);
            free(account);
            continue;
        }
        pool_idle_wait(p, seen);
    }
    return NULL;
}

/* ---- the pool --------------------------------------------------------- */

static void pool_free(struct worker_pool *p)
{
    for (unsigned i = 0; i < p->n_threads; i++)
        dbxapi_free(p->threads[i].api);
    if (p->handler.destroy != NULL)
        p->handler.destroy(p->handler.ctx);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
}

void worker_pool_stop(struct worker_pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stopping, true);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->n_threads; i++) {
        if (p->threads[i].started)
            pthread_join(p->threads[i].tid, NULL);
    }
    pool_free(p);
}

void worker_pool_wake(struct worker_pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->wake_seq++;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static struct worker_pool *
pool_new(struct state *st, const struct worker_config *cfg, unsigned threads)
{
    struct worker_pool *p = xcalloc(1, sizeof *p);
    pthread_condattr_t attr;

    p->st = st;
    p->lease_ms = cfg->lease_ms > 0 ? cfg->lease_ms : 30000;
    p->idle_poll_ms = cfg->idle_poll_ms > 0 ? cfg->idle_poll_ms : 200;
    atomic_init(&p->stopping, false);
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &attr);
    pthread_condattr_destroy(&attr);
    handler_md_init(&p->handler, st);
    p->n_threads = threads;
    p->threads = xcalloc(threads > 0 ? threads : 1, sizeof *p->threads);
    return p;
}

struct worker_pool *worker_pool_start(struct state *st,
                                      const struct worker_config *cfg,
                                      unsigned threads)
{
    struct dbxapi_config api_cfg = {
        .api_url = cfg->api_url,
        .content_url = cfg->content_url,
        .ca_file = cfg->ca_file,
    };
    struct worker_pool *p = pool_new(st, cfg, threads);
    char host[64];

    if (gethostname(host, sizeof host) != 0)
        strcpy(host, "localhost");
    host[sizeof host - 1] = '\0';
    for (unsigned i = 0; i < threads; i++) {
        struct worker_thread *w = &p->threads[i];

        w->pool = p;
        snprintf(w->owner, sizeof w->owner, "%s:%ld:%u", host, (long)getpid(),
                 i);
        w->api = dbxapi_new(&api_cfg);
        if (w->api == NULL)
            goto fail;
    }
    for (unsigned i = 0; i < threads; i++) {
        struct worker_thread *w = &p->threads[i];

        if (pthread_create(&w->tid, NULL, worker_thread_main, w) != 0) {
            LOG_E("worker cannot start a thread");
            goto fail;
        }
        w->started = true;
    }
    LOG_I("worker pool started threads=%u lease_ms=%lld", threads,
          (long long)p->lease_ms);
    return p;

fail:
    worker_pool_stop(p);
    return NULL;
}
