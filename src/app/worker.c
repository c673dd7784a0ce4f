/*
 * worker: a pool of threads that process pending accounts.
 *
 * Each thread owns page_parallel dbxapi clients (their own HTTP
 * connections) and loops: claim a pending account, run it, and when
 * nothing is pending sleep on the pool's condition variable until
 * worker_pool_wake or idle_poll_ms.
 *
 * One run of an account (account_run) lists from its cursor until
 * has_more is false, page by page: the page's entries go to the handlers
 * (worker_page.c), and only when every entry came back OK is the cursor
 * saved, under the lease's fence.  So the cursor never moves past an
 * entry that was not handled.  How a run ends decides what happens to
 * the lease and the pending mark:
 *
 *   RUN_DONE     the account is up to date: release with the claimed
 *                version (the mark goes, unless a notification came
 *                meanwhile, in which case exactly one more run follows).
 *   RUN_STOPPED  the pool is stopping with pages left: release with
 *                version -1, which no mark carries, so the account stays
 *                pending and the next worker resumes from the cursor.
 *   RUN_BACKOFF  a failure (429, 5xx, lost connection, a page that could
 *                not be handled, a second reset in a row): the cursor
 *                stays where it was and the lease is *kept*, renewed for
 *                the backoff delay, which doubles with each failure in a
 *                row (or is the server's Retry-After).  Nobody claims the
 *                account before the delay is over; then the lease expires
 *                and the still-pending account is claimed like one whose
 *                worker died.  Other accounts are not held up.
 *   RUN_RELINK   the refresh token was refused (invalid_grant): the
 *                account is flagged for re-linking, the mark is dropped,
 *                the cursor kept; no retries until it is linked again.
 *   RUN_LOST     a newer lease exists (this one expired): stop at once,
 *                touch nothing.
 */
#include "app/worker.h"

#include "app/dbxapi.h"
#include "app/handler.h"
#include "app/handler_cmd.h"
#include "app/handler_md.h"
#include "app/worker_page.h"
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

/* Backoff after a failure: WORKER_BACKOFF_BASE_MS doubled for every
 * failure in a row, up to WORKER_BACKOFF_MAX_MS, with +-25% jitter; after
 * an auth error that a refresh cannot cure (a new token has to be stored
 * first), WORKER_BACKOFF_AUTH_MS.  A server's Retry-After is followed up
 * to WORKER_BACKOFF_MAX_MS. */
#define WORKER_BACKOFF_BASE_MS 500
#define WORKER_BACKOFF_AUTH_MS 60000
#define WORKER_BACKOFF_MAX_MS  300000
/* A cursor that gets "reset" is dropped and the listing restarted; a
 * second reset in a row (in the same run, or in the next run after one
 * that reset) is a failure.  WORKER_RESET_WHAT is the account's failure
 * while a reset is the last thing that happened to it. */
#define WORKER_MAX_RESETS 1
#define WORKER_RESET_WHAT "list_folder: cursor reset"
/* Owner strings: "hostname:pid:thread". */
#define WORKER_OWNER_MAX 128

struct worker_pool;

struct worker_thread {
    struct worker_pool *pool;
    struct dbxapi **apis; /* page_parallel of them */
    pthread_t tid;
    bool started;
    char owner[WORKER_OWNER_MAX];
};

struct worker_pool {
    struct state *st;
    struct handler md;
    struct handler cmd;
    const struct handler *handlers[WORKER_MAX_HANDLERS];
    unsigned n_handlers;
    int64_t lease_ms;
    int64_t idle_poll_ms;
    unsigned page_parallel;
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
    RUN_RELINK,
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
    int resets;
    atomic_bool refreshed; /* a client refreshed: share the new token */
};

/* ---- failures and backoff --------------------------------------------- */

/* Records a failure for status (the account's last failure, failures in
 * a row, the "failures" counter) and sets the backoff: asked_ms when the
 * server asked (>= 0), else doubling with the failures in a row. */
static void run_failure(struct run *r, int64_t asked_ms, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void run_failure(struct run *r, int64_t asked_ms, const char *fmt, ...)
{
    char what[WORKER_PAGE_WHAT_MAX];
    int64_t streak = 1, delay;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    state_failure_set(r->w->pool->st, r->account, what, &streak);
    state_counter_add(r->w->pool->st, "failures", 1);

    if (asked_ms >= 0) {
        delay = asked_ms > 0 ? asked_ms : 1;
    } else {
        int shift = streak > 20 ? 20 : (int)(streak > 0 ? streak - 1 : 0);
        uint32_t jitter;

        delay = (int64_t)WORKER_BACKOFF_BASE_MS << shift;
        if (delay > WORKER_BACKOFF_MAX_MS)
            delay = WORKER_BACKOFF_MAX_MS;
        rand_bytes(&jitter, sizeof jitter);
        delay = delay * 3 / 4 + (int64_t)(jitter % (uint32_t)(delay / 2 + 1));
    }
    if (delay > WORKER_BACKOFF_MAX_MS)
        delay = WORKER_BACKOFF_MAX_MS;
    r->backoff_ms = delay;
    LOG_W("worker failure account=%s in_row=%lld backoff_ms=%lld what=\"%s\"",
          r->account, (long long)streak, (long long)delay, what);
}

/* Renews the lease when a third of it has passed; false when it is lost
 * (or the store fails: then nothing fenced can be trusted either). */
static bool run_keep_lease(struct run *r, bool force)
{
    struct worker_pool *p = r->w->pool;
    int64_t now = time_mono_ms();

    if (!force && now - r->renewed_ms < p->lease_ms / 3)
        return true;
    if (state_renew(p->st, r->account, r->fence, p->lease_ms) != STATE_OK) {
        LOG_W("worker lease lost account=%s fence=%llu", r->account,
              (unsigned long long)r->fence);
        return false;
    }
    r->renewed_ms = now;
    return true;
}

static bool run_keep_cb(void *ctx)
{
    return run_keep_lease(ctx, true);
}

static void run_finish(struct run *r, enum run_end end, int64_t version)
{
    struct worker_pool *p = r->w->pool;

    switch (end) {
    case RUN_DONE:
        state_counter_add(p->st, "runs", 1);
        if (r->resets == 0)
            state_failure_set(p->st, r->account, NULL, NULL);
        state_release(p->st, r->account, r->fence, version);
        LOG_I("worker run done account=%s pages=%u entries=%u", r->account,
              r->pages, r->entries);
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
    case RUN_RELINK:
        state_relink_set(p->st, r->account);
        state_failure_set(p->st, r->account,
                          "needs re-linking: the refresh token was refused",
                          NULL);
        state_counter_add(p->st, "failures", 1);
        state_release(p->st, r->account, r->fence, version);
        LOG_W("worker account needs re-linking account=%s", r->account);
        break;
    case RUN_LOST:
        break;
    }
}

/* ---- pages ------------------------------------------------------------ */

/* A reset is recorded as the account's failure until a run ends without
 * one, so that a second reset in a row (in this run or the next) is
 * seen: it becomes a failure with backoff instead of another listing
 * from scratch.  Only a reset counts: a reset after another failure (a
 * 429, a lost connection) is the first one, and gets its fresh listing.
 * So does the retry after a "reset again" failure's backoff, so that an
 * account whose cursors keep being reset lists again at the backoff's
 * pace (visible, never a loop) rather than never. */
static bool run_reset_allowed(struct run *r)
{
    struct state *st = r->w->pool->st;
    char *last = NULL;
    bool again;

    if (r->resets >= WORKER_MAX_RESETS)
        return false;
    if (state_failure_get(st, r->account, &last) == STATE_ERR)
        return false;
    again = last != NULL && strcmp(last, WORKER_RESET_WHAT) == 0;
    free(last);
    if (again)
        return false;
    state_failure_set(st, r->account, WORKER_RESET_WHAT, NULL);
    return true;
}

/* Fetches the next page: list_folder without a cursor, else continue. */
static enum run_end run_fetch(struct run *r, struct dbxapi_page *page)
{
    struct dbxapi *api = r->w->apis[0];
    struct dbxapi_error err;
    enum dbxapi_status st;
    int64_t asked_ms = -1;

    for (;;) {
        LOG_D("worker list begin account=%s continue=%d", r->account,
              r->cursor != NULL);
        if (r->cursor == NULL)
            st = dbxapi_list_folder(api, page, &err);
        else
            st = dbxapi_list_continue(api, r->cursor, page, &err);
        LOG_D("worker list end account=%s result=%s", r->account,
              dbxapi_status_name(st));
        if (st == DBXAPI_OK)
            return RUN_DONE;
        if (r->cursor == NULL || !dbxapi_error_is(&err, "reset"))
            break;
        if (!run_reset_allowed(r)) {
            run_failure(r, -1, "%s again: %ld %s", WORKER_RESET_WHAT,
                        err.http_status, err.summary);
            return RUN_BACKOFF;
        }
        /* The server can no longer serve this cursor: list again from
         * the start; handlers skip what they already did. */
        LOG_W("worker cursor reset account=%s", r->account);
        r->resets++;
        free(r->cursor);
        r->cursor = NULL;
    }
    if (dbxapi_relink_needed(api))
        return RUN_RELINK;
    if (st == DBXAPI_RETRY && err.retry_after_s >= 0)
        asked_ms = err.retry_after_s * 1000;
    else if (st == DBXAPI_AUTH)
        asked_ms = WORKER_BACKOFF_AUTH_MS;
    run_failure(r, asked_ms, "list_folder: %s %ld %s",
                dbxapi_status_name(st), err.http_status, err.summary);
    return RUN_BACKOFF;
}

/* Hands the page to the handlers; RUN_DONE when every entry is done. */
static enum run_end run_entries(struct run *r, const struct dbxapi_page *page)
{
    struct worker_pool *p = r->w->pool;
    struct page_job job = {
        .n_handlers = p->n_handlers,
        .apis = r->w->apis,
        .n_apis = p->page_parallel,
        .account = r->account,
        .page = page,
        .keep = run_keep_cb,
        .keep_ctx = r,
        .keep_every_ms = p->lease_ms / 3 > 0 ? p->lease_ms / 3 : 1,
    };
    struct page_outcome out;

    memcpy(job.handlers, p->handlers, sizeof job.handlers);
    page_handle(&job, &out);
    r->entries += out.handled;
    for (unsigned i = 0; i < p->page_parallel; i++) {
        if (dbxapi_relink_needed(r->w->apis[i]))
            return RUN_RELINK;
    }
    switch (out.result) {
    case PAGE_OK:
        return RUN_DONE;
    case PAGE_LOST:
        return RUN_LOST;
    case PAGE_RETRY:
        run_failure(r, out.retry_after_ms, "%s", out.what);
        return RUN_BACKOFF;
    case PAGE_FAILED:
        run_failure(r, -1, "%s", out.what);
        return RUN_BACKOFF;
    }
    return RUN_BACKOFF;
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
        run_failure(r, -1, "state: cannot save the cursor");
        return RUN_BACKOFF;
    }
    free(r->cursor);
    r->cursor = page->cursor;
    page->cursor = NULL;
    r->pages++;
    state_counter_add(p->st, "pages", 1);
    return run_keep_lease(r, true) ? RUN_DONE : RUN_LOST;
}

static void run_tokens(struct run *r, const struct state_token *tok);

/* After one client refreshed the token, hands the stored one to every
 * client of the run, so the others do not each refresh it again.  Only
 * called between steps, when no page thread uses the clients. */
static void run_sync_tokens(struct run *r)
{
    struct state_token tok;

    if (!atomic_exchange(&r->refreshed, false))
        return;
    if (state_token_get(r->w->pool->st, r->account, &tok) != STATE_OK)
        return;
    run_tokens(r, &tok);
    state_token_free(&tok);
}

/* Lists and handles pages until has_more is false or the run must end. */
static enum run_end run_pages(struct run *r)
{
    struct dbxapi_page page;
    enum run_end end;
    bool has_more;

    do {
        run_sync_tokens(r);
        end = run_fetch(r, &page);
        if (end != RUN_DONE)
            return end;
        run_sync_tokens(r);
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

/* Stores the access token a refresh brought (from any page thread). */
static void run_refreshed(void *ctx, const char *access, int64_t expires_s)
{
    struct run *r = ctx;
    struct state *st = r->w->pool->st;

    if (state_token_set(st, r->account, access, NULL, expires_s) != STATE_OK)
        LOG_W("worker cannot store a refreshed token account=%s",
              r->account);
    state_counter_add(st, "refreshes", 1);
    atomic_store(&r->refreshed, true);
}

static void run_tokens(struct run *r, const struct state_token *tok)
{
    for (unsigned i = 0; i < r->w->pool->page_parallel; i++) {
        dbxapi_set_token(r->w->apis[i], tok ? tok->access : NULL);
        dbxapi_set_refresh(r->w->apis[i], tok ? tok->refresh : NULL,
                           run_refreshed, r);
    }
}

/* Loads the tokens; false (the run already ended) when there is nothing
 * to run with. */
static bool run_load_tokens(struct run *r, int64_t version)
{
    struct worker_pool *p = r->w->pool;
    struct state_token tok;
    enum state_status st;

    st = state_token_get(p->st, r->account, &tok);
    if (st == STATE_NONE) {
        LOG_W("worker unknown account account=%s", r->account);
        run_failure(r, -1, "unknown account: no token stored");
        state_release(p->st, r->account, r->fence, version);
        return false;
    }
    if (st != STATE_OK) {
        state_release(p->st, r->account, r->fence, -1);
        return false;
    }
    if (tok.needs_relink) {
        LOG_W("worker skipped account=%s reason=needs_relink", r->account);
        state_release(p->st, r->account, r->fence, version);
        state_token_free(&tok);
        return false;
    }
    run_tokens(r, &tok);
    state_token_free(&tok);
    return true;
}

/* Loads the tokens and cursor, runs the pages, ends the run. */
static void account_run(struct worker_thread *w, const char *account,
                        uint64_t fence, int64_t version)
{
    struct worker_pool *p = w->pool;
    struct run r = {.w = w, .account = account, .fence = fence};
    enum state_status st;
    enum run_end end;

    r.renewed_ms = time_mono_ms();
    atomic_init(&r.refreshed, false);
    if (!run_load_tokens(&r, version))
        return;

    st = state_cursor_get(p->st, account, &r.cursor);
    if (st == STATE_OK || st == STATE_NONE) {
        end = run_pages(&r);
    } else {
        run_failure(&r, -1, "state: cannot read the cursor");
        end = RUN_BACKOFF;
    }
    run_finish(&r, end, version);
    run_tokens(&r, NULL);
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
    for (unsigned i = 0; i < p->n_threads; i++) {
        for (unsigned j = 0; p->threads[i].apis && j < p->page_parallel; j++)
            dbxapi_free(p->threads[i].apis[j]);
        free(p->threads[i].apis);
    }
    for (unsigned i = 0; i < p->n_handlers; i++) {
        if (p->handlers[i]->destroy != NULL)
            p->handlers[i]->destroy(p->handlers[i]->ctx);
    }
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

/* Sets up the handler chain: Markdown first, then the command. */
static int pool_handlers(struct worker_pool *p, const struct worker_config *c)
{
    if (!c->no_markdown) {
        struct handler_md_config mc = {.delete_html = c->md_delete_html};

        handler_md_init(&p->md, p->st, &mc);
        p->handlers[p->n_handlers++] = &p->md;
    }
    if (c->command != NULL) {
        struct handler_cmd_config cc = {
            .command = c->command,
            .timeout_ms = c->command_timeout_ms,
            .concurrency = c->command_concurrency,
            .journal_dir = c->data_dir,
        };

        if (handler_cmd_init(&p->cmd, p->st, &cc) < 0)
            return -1;
        p->handlers[p->n_handlers++] = &p->cmd;
    }
    return 0;
}

static struct worker_pool *
pool_new(struct state *st, const struct worker_config *cfg, unsigned threads)
{
    struct worker_pool *p = xcalloc(1, sizeof *p);
    pthread_condattr_t attr;

    p->st = st;
    p->lease_ms = cfg->lease_ms > 0 ? cfg->lease_ms : 30000;
    p->idle_poll_ms = cfg->idle_poll_ms > 0 ? cfg->idle_poll_ms : 200;
    p->page_parallel = cfg->page_parallel;
    if (p->page_parallel == 0)
        p->page_parallel = WORKER_PAGE_PARALLEL_DEFAULT;
    if (p->page_parallel > WORKER_PAGE_PARALLEL_MAX)
        p->page_parallel = WORKER_PAGE_PARALLEL_MAX;
    atomic_init(&p->stopping, false);
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &attr);
    pthread_condattr_destroy(&attr);
    p->n_threads = threads;
    p->threads = xcalloc(threads > 0 ? threads : 1, sizeof *p->threads);
    return p;
}

/* Makes the thread's clients; -1 when one cannot be made. */
static int thread_setup(struct worker_pool *p, struct worker_thread *w,
                        const struct worker_config *cfg, unsigned index,
                        const char *host)
{
    struct dbxapi_config api_cfg = {
        .api_url = cfg->api_url,
        .content_url = cfg->content_url,
        .ca_file = cfg->ca_file,
        .token_url = cfg->token_url,
        .app_key = cfg->app_key,
        .app_secret = cfg->app_secret,
        .list_limit = cfg->page_size,
    };

    w->pool = p;
    snprintf(w->owner, sizeof w->owner, "%s:%ld:%u", host, (long)getpid(),
             index);
    w->apis = xcalloc(p->page_parallel, sizeof *w->apis);
    for (unsigned j = 0; j < p->page_parallel; j++) {
        w->apis[j] = dbxapi_new(&api_cfg);
        if (w->apis[j] == NULL)
            return -1;
    }
    return 0;
}

struct worker_pool *worker_pool_start(struct state *st,
                                      const struct worker_config *cfg,
                                      unsigned threads)
{
    struct worker_pool *p = pool_new(st, cfg, threads);
    char host[64];

    if (gethostname(host, sizeof host) != 0)
        strcpy(host, "localhost");
    host[sizeof host - 1] = '\0';
    if (pool_handlers(p, cfg) < 0)
        goto fail;
    for (unsigned i = 0; i < threads; i++) {
        if (thread_setup(p, &p->threads[i], cfg, i, host) < 0)
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
    LOG_I("worker pool started threads=%u lease_ms=%lld page_parallel=%u "
          "handlers=%u",
          threads, (long long)p->lease_ms, p->page_parallel, p->n_handlers);
    return p;

fail:
    worker_pool_stop(p);
    return NULL;
}
