/*
 * worker_page: one page's entries over a few threads.  See worker_page.h.
 */
#include "app/worker_page.h"

#include "common/log.h"
#include "common/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct page_run {
    const struct page_job *job;
    atomic_size_t next;  /* index of the next entry to take */
    atomic_bool abort;   /* stop taking entries */
    atomic_uint handled; /* entries done */
    pthread_mutex_t mu;  /* guards out, running */
    pthread_cond_t done; /* a helper finished; CLOCK_MONOTONIC */
    unsigned running;
    struct page_outcome *out;
};

struct page_helper {
    struct page_run *run;
    struct dbxapi *api;
    pthread_t tid;
};

/* Runs the chain on one entry; the first result that is not OK wins. */
static enum handler_result chain_handle(const struct page_job *job,
                                        struct dbxapi *api,
                                        const struct dbxapi_entry *e,
                                        int64_t *retry_after_ms,
                                        const char **who)
{
    for (unsigned i = 0; i < job->n_handlers; i++) {
        const struct handler *h = job->handlers[i];
        enum handler_result res;

        *retry_after_ms = -1;
        res = h->handle_entry(h->ctx, api, job->account, e, retry_after_ms);
        if (res != HANDLER_OK) {
            *who = h->name;
            return res;
        }
    }
    return HANDLER_OK;
}

/* Records the first failure of the page (called with run->mu held). */
static void page_fail(struct page_run *run, enum handler_result res,
                      const char *who, const struct dbxapi_entry *e,
                      int64_t retry_after_ms)
{
    struct page_outcome *out = run->out;
    const char *path = e->path_display ? e->path_display : "(no path)";

    if (out->result != PAGE_OK)
        return;
    if (res == HANDLER_RETRY) {
        out->result = PAGE_RETRY;
        out->retry_after_ms = retry_after_ms;
        snprintf(out->what, sizeof out->what, "%s: temporary failure at %s",
                 who, path);
    } else {
        out->result = PAGE_FAILED;
        snprintf(out->what, sizeof out->what, "%s: failed at %s", who, path);
    }
}

static void *page_helper_main(void *arg)
{
    struct page_helper *hp = arg;
    struct page_run *run = hp->run;
    const struct dbxapi_page *page = run->job->page;

    while (!atomic_load(&run->abort)) {
        size_t i = atomic_fetch_add(&run->next, 1);
        const struct dbxapi_entry *e;
        int64_t retry_after_ms = -1;
        const char *who = NULL;
        enum handler_result res;

        if (i >= page->n_entries)
            break;
        e = &page->entries[i];
        res = chain_handle(run->job, hp->api, e, &retry_after_ms, &who);
        if (res == HANDLER_OK) {
            atomic_fetch_add(&run->handled, 1);
            continue;
        }
        atomic_store(&run->abort, true);
        pthread_mutex_lock(&run->mu);
        page_fail(run, res, who, e, retry_after_ms);
        pthread_mutex_unlock(&run->mu);
    }
    pthread_mutex_lock(&run->mu);
    run->running--;
    pthread_cond_signal(&run->done);
    pthread_mutex_unlock(&run->mu);
    return NULL;
}

static void deadline_after(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Waits for the helpers, renewing the lease every keep_every_ms. */
static void page_wait(struct page_run *run)
{
    const struct page_job *job = run->job;

    pthread_mutex_lock(&run->mu);
    while (run->running > 0) {
        struct timespec until;

        deadline_after(&until, job->keep_every_ms);
        if (pthread_cond_timedwait(&run->done, &run->mu, &until) == 0)
            continue;
        pthread_mutex_unlock(&run->mu);
        if (!job->keep(job->keep_ctx)) {
            atomic_store(&run->abort, true);
            pthread_mutex_lock(&run->mu);
            run->out->result = PAGE_LOST;
            continue;
        }
        pthread_mutex_lock(&run->mu);
    }
    pthread_mutex_unlock(&run->mu);
}

static void page_run_init(struct page_run *run, const struct page_job *job,
                          struct page_outcome *out)
{
    pthread_condattr_t attr;

    memset(run, 0, sizeof *run);
    run->job = job;
    run->out = out;
    atomic_init(&run->next, 0);
    atomic_init(&run->abort, false);
    atomic_init(&run->handled, 0);
    pthread_mutex_init(&run->mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&run->done, &attr);
    pthread_condattr_destroy(&attr);
}

void page_handle(const struct page_job *job, struct page_outcome *out)
{
    struct page_helper helpers[64];
    struct page_run run;
    unsigned n = job->n_apis;
    unsigned started = 0;

    memset(out, 0, sizeof *out);
    out->result = PAGE_OK;
    out->retry_after_ms = -1;
    if (job->page->n_entries == 0)
        return;
    if (n > ARRAY_LEN(helpers))
        n = ARRAY_LEN(helpers);
    if (n > job->page->n_entries)
        n = (unsigned)job->page->n_entries;

    page_run_init(&run, job, out);
    for (unsigned i = 0; i < n; i++) {
        helpers[started].run = &run;
        helpers[started].api = job->apis[i];
        pthread_mutex_lock(&run.mu);
        run.running++;
        pthread_mutex_unlock(&run.mu);
        if (pthread_create(&helpers[started].tid, NULL, page_helper_main,
                           &helpers[started]) == 0) {
            started++;
            continue;
        }
        LOG_W("worker cannot start a page thread; fewer in parallel");
        pthread_mutex_lock(&run.mu);
        run.running--;
        pthread_mutex_unlock(&run.mu);
    }
    if (started == 0) {
        /* No thread at all: handle the page on this one. */
        helpers[0].run = &run;
        helpers[0].api = job->apis[0];
        run.running = 1;
        page_helper_main(&helpers[0]);
    }
    page_wait(&run);
    for (unsigned i = 0; i < started; i++)
        pthread_join(helpers[i].tid, NULL);
    out->handled = atomic_load(&run.handled);
    pthread_cond_destroy(&run.done);
    pthread_mutex_destroy(&run.mu);
}
