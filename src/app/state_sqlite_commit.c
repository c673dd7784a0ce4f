/*
 * state_sqlite_commit: the group committer of the SQLite state store.
 *
 * Callers of mark_pending and counter_add copy their accounts and
 * counter deltas into the batch being gathered and sleep
 * (mark_pending_async callers leave a callback instead).  One committer
 * thread takes the whole batch, writes it in one transaction (one fsync:
 * each account once, each counter once) and then wakes the callers of
 * that generation and runs the callbacks.  While it commits, the next
 * batch gathers, so the busier the receiver, the more marks share a
 * commit.  Counts given without a waiter (state_mark_covered) ride the
 * next batch, or are written on their own once STATE_COUNT_DEFER_MS has
 * passed.
 *
 * Versions: every committed batch takes the next value of version_seq
 * and stamps it on each of its marks.  A mark committed after a claim
 * therefore always carries a larger version than the claim saw.
 */
#include "app/state_sqlite_impl.h"

#include "common/db.h"
#include "common/log.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int gc_account_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Tells whether a worker holds the account's lease (inside the commit's
 * transaction): 1 yes, 0 no, -1 on error. */
static int gc_leased(struct group_commit *gc, const char *account)
{
    enum state_status rc;

    db_bind_text(gc->leased, 1, account);
    rc = state_sqlite_step_row(gc->db, gc->leased, "mark_pending");
    sqlite3_reset(gc->leased);
    return rc == STATE_ERR ? -1 : rc == STATE_OK;
}

/* Upserts the batch's marks, each account once, all with one new
 * version.  Called inside the commit's transaction.  Afterwards the
 * first *n_cover marks are the accounts no worker holds (covered once
 * the commit is done). */
static int gc_write_marks(struct group_commit *gc, struct gc_batch *b,
                          size_t *n_cover)
{
    int64_t version;
    int64_t now = state_now_ms();

    *n_cover = 0;
    if (b->n_marks == 0)
        return 0;
    if (sqlite3_step(gc->next_version) != SQLITE_ROW) {
        LOG_E("state version_seq failed error=\"%s\"", sqlite3_errmsg(gc->db));
        sqlite3_reset(gc->next_version);
        return -1;
    }
    version = sqlite3_column_int64(gc->next_version, 0);
    sqlite3_reset(gc->next_version);

    qsort(b->marks, b->n_marks, sizeof *b->marks, gc_account_cmp);
    for (size_t i = 0; i < b->n_marks; i++) {
        int rc;

        if (i > 0 && strcmp(b->marks[i], b->marks[i - 1]) == 0)
            continue; /* merged: one row, one version */
        db_bind_text(gc->upsert, 1, b->marks[i]);
        sqlite3_bind_int64(gc->upsert, 2, version);
        sqlite3_bind_int64(gc->upsert, 3, now);
        rc = state_sqlite_step_done(gc->db, gc->upsert, "mark_pending");
        sqlite3_reset(gc->upsert);
        if (rc == 0)
            rc = gc_leased(gc, b->marks[i]);
        if (rc < 0)
            return -1;
        /* Compact in place: slot *n_cover <= i was read already. */
        if (rc == 0 && *n_cover != i)
            memcpy(b->marks[*n_cover], b->marks[i], sizeof *b->marks);
        if (rc == 0)
            (*n_cover)++;
    }
    return 0;
}

static int gc_write_counts(struct group_commit *gc, const struct gc_batch *b)
{
    for (size_t i = 0; i < b->n_counts; i++) {
        int rc;

        db_bind_text(gc->count, 1, b->counts[i].name);
        sqlite3_bind_int64(gc->count, 2, b->counts[i].delta);
        rc = state_sqlite_step_done(gc->db, gc->count, "counter_add");
        sqlite3_reset(gc->count);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Writes one batch in one transaction (one fsync), holding the
 * connection mutex (never gc->mu, so callers keep gathering meanwhile),
 * then tells the cache which marks are covered. */
static enum state_status gc_write(struct group_commit *gc, struct gc_batch *b)
{
    enum state_status result = STATE_ERR;
    size_t n_cover = 0;
    uint64_t gen = 0;

    if (b->n_marks == 0 && b->n_counts == 0)
        return STATE_OK;
    pthread_mutex_lock(gc->db_mu);
    if (db_begin(gc->db) < 0)
        goto out;
    /* Read under the write lock: no claim or release is under way. */
    gen = state_sqlite_lease_gen(gc->cache);
    if (gc_write_marks(gc, b, &n_cover) < 0 || gc_write_counts(gc, b) < 0)
        goto out;
    if (db_commit(gc->db) == 0)
        result = STATE_OK;

out:
    if (result != STATE_OK)
        db_rollback(gc->db);
    pthread_mutex_unlock(gc->db_mu);
    if (result == STATE_OK)
        state_sqlite_cache_cover(gc->cache, b->marks, n_cover, gen);
    return result;
}

/* Gives every waiter of a written generation its result (called with
 * gc->mu held) and returns the async ones, to be told once mu is
 * released.  Blocking waiters may return as soon as mu is released, so
 * their nodes are not touched after that. */
static struct gc_waiter *gc_settle(struct group_commit *gc, struct gc_waiter *w,
                                   enum state_status rc, uint64_t gen)
{
    struct gc_waiter *async = NULL;

    while (w != NULL) {
        struct gc_waiter *next = w->next;

        w->rc = rc;
        if (w->done != NULL) {
            w->next = async;
            async = w;
        }
        w = next;
    }
    gc->gen_done = gen;
    pthread_cond_broadcast(&gc->done);
    return async;
}

static void gc_notify(struct gc_waiter *async)
{
    while (async != NULL) {
        struct gc_waiter *next = async->next;

        async->done(async->arg, async->rc);
        free(async);
        async = next;
    }
}

static int64_t gc_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps (gc->mu held) until a caller waits for a commit, deferred
 * counts are due or the committer is to stop. */
static void gc_wait_work(struct group_commit *gc)
{
    while (gc->gathering.waiters == NULL && !gc->stopping) {
        int64_t due = gc->gathering.flush_by_ms;
        struct timespec ts;

        if (due == 0) {
            pthread_cond_wait(&gc->wake, &gc->mu);
            continue;
        }
        if (gc_mono_ms() >= due)
            return;
        ts.tv_sec = (time_t)(due / 1000);
        ts.tv_nsec = (long)(due % 1000) * 1000000;
        pthread_cond_timedwait(&gc->wake, &gc->mu, &ts);
    }
}

static void *gc_thread(void *arg)
{
    struct group_commit *gc = arg;

    pthread_mutex_lock(&gc->mu);
    for (;;) {
        struct gc_batch b;
        struct gc_waiter *async;
        uint64_t gen;
        enum state_status rc;

        gc_wait_work(gc);
        if (gc->gathering.waiters == NULL && gc->gathering.n_counts == 0)
            break; /* stopping, and every caller has been served */

        b = gc->gathering;
        memset(&gc->gathering, 0, sizeof gc->gathering);
        gen = gc->gen_gathering++;
        pthread_mutex_unlock(&gc->mu);

        rc = gc_write(gc, &b);
        if (rc != STATE_OK && b.waiters == NULL)
            LOG_W("state deferred counts lost counters=%zu", b.n_counts);
        LOG_D("state group_commit gen=%llu marks=%zu counters=%zu status=%d",
              (unsigned long long)gen, b.n_marks, b.n_counts, (int)rc);
        free(b.marks);

        pthread_mutex_lock(&gc->mu);
        async = gc_settle(gc, b.waiters, rc, gen);
        pthread_mutex_unlock(&gc->mu);
        gc_notify(async);
        pthread_mutex_lock(&gc->mu);
    }
    pthread_mutex_unlock(&gc->mu);
    return NULL;
}

/* Frees what state_sqlite_gc_start made, once no thread uses it. */
static void gc_destroy(struct group_commit *gc)
{
    sqlite3_finalize(gc->next_version);
    sqlite3_finalize(gc->upsert);
    sqlite3_finalize(gc->count);
    sqlite3_finalize(gc->leased);
    pthread_cond_destroy(&gc->wake);
    pthread_cond_destroy(&gc->done);
    pthread_mutex_destroy(&gc->mu);
}

int state_sqlite_gc_start(struct group_commit *gc, sqlite3 *db,
                          pthread_mutex_t *db_mu, struct sq_cache *cache)
{
    pthread_condattr_t attr;

    gc->db = db;
    gc->db_mu = db_mu;
    gc->cache = cache;
    gc->leased = db_prepare(gc->db, "SELECT 1 FROM leases WHERE account = ?1"
                                    " AND owner IS NOT NULL");
    gc->next_version =
        db_prepare(gc->db, "UPDATE meta SET value = value + 1"
                           " WHERE name = 'version_seq' RETURNING value");
    gc->upsert =
        db_prepare(gc->db, "INSERT INTO pending(account, version, marked_ms)"
                           " VALUES(?1, ?2, ?3) ON CONFLICT(account)"
                           " DO UPDATE SET version = excluded.version");
    gc->count = db_prepare(gc->db, "INSERT INTO counters(name, value)"
                                   " VALUES(?1, ?2) ON CONFLICT(name)"
                                   " DO UPDATE SET value = value"
                                   " + excluded.value");
    pthread_mutex_init(&gc->mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&gc->wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&gc->done, NULL);
    gc->gen_gathering = 1;
    gc->gen_done = 0;
    if (pthread_create(&gc->thread, NULL, gc_thread, gc) != 0) {
        LOG_E("state group_commit thread failed to start");
        gc_destroy(gc);
        return -1;
    }
    return 0;
}

void state_sqlite_gc_stop(struct group_commit *gc)
{
    pthread_mutex_lock(&gc->mu);
    gc->stopping = true;
    pthread_cond_signal(&gc->wake);
    pthread_mutex_unlock(&gc->mu);
    pthread_join(gc->thread, NULL);
    gc_destroy(gc);
}

/* Adds a delta to the gathering batch (gc->mu held); -1 when the batch
 * already carries GC_COUNTERS_MAX other names. */
static int gc_add_count(struct gc_batch *b, const char *name, int64_t delta)
{
    for (size_t i = 0; i < b->n_counts; i++) {
        if (strcmp(b->counts[i].name, name) == 0) {
            b->counts[i].delta += delta;
            return 0;
        }
    }
    if (b->n_counts == GC_COUNTERS_MAX || strlen(name) > GC_COUNTER_NAME_MAX)
        return -1;
    snprintf(b->counts[b->n_counts].name, sizeof b->counts[0].name, "%s", name);
    b->counts[b->n_counts++].delta = delta;
    return 0;
}

/* Adds every delta (gc->mu held), or none: -1 (logged) when one does
 * not fit. */
static int gc_add_counts(struct gc_batch *b, const struct state_count *counts,
                         size_t n_counts)
{
    struct gc_count saved[GC_COUNTERS_MAX];
    size_t n_saved = b->n_counts;

    memcpy(saved, b->counts, n_saved * sizeof *saved);
    for (size_t i = 0; i < n_counts; i++) {
        if (gc_add_count(b, counts[i].name, counts[i].delta) < 0) {
            LOG_E("state too many counters in one commit name=%s",
                  counts[i].name);
            memcpy(b->counts, saved, n_saved * sizeof *saved);
            b->n_counts = n_saved;
            return -1;
        }
    }
    return 0;
}

int state_sqlite_gc_defer(struct group_commit *gc,
                          const struct state_count *counts, size_t n_counts)
{
    struct gc_batch *b = &gc->gathering;
    int rc;

    if (n_counts == 0)
        return 0;
    pthread_mutex_lock(&gc->mu);
    rc = gc_add_counts(b, counts, n_counts);
    if (rc == 0 && b->flush_by_ms == 0) {
        b->flush_by_ms = gc_mono_ms() + STATE_COUNT_DEFER_MS;
        pthread_cond_signal(&gc->wake);
    }
    pthread_mutex_unlock(&gc->mu);
    return rc;
}

/* Puts marks, counts and the waiter into the gathering batch and wakes
 * the committer.  Returns the generation to wait for, or 0 (logged)
 * when the counts do not fit. */
static uint64_t gc_join(struct group_commit *gc, const char *const *accounts,
                        size_t n, const struct state_count *counts,
                        size_t n_counts, struct gc_waiter *w)
{
    struct gc_batch *b = &gc->gathering;
    uint64_t gen = 0;

    pthread_mutex_lock(&gc->mu);
    if (gc_add_counts(b, counts, n_counts) < 0)
        goto out;
    if (b->n_marks + n > b->cap_marks) {
        size_t cap = b->cap_marks ? b->cap_marks : 64;

        while (cap < b->n_marks + n)
            cap *= 2;
        b->marks = xrealloc(b->marks, cap * sizeof *b->marks);
        b->cap_marks = cap;
    }
    for (size_t i = 0; i < n; i++)
        snprintf(b->marks[b->n_marks++], sizeof *b->marks, "%s", accounts[i]);
    w->next = b->waiters;
    b->waiters = w;
    gen = gc->gen_gathering;
    pthread_cond_signal(&gc->wake);
out:
    pthread_mutex_unlock(&gc->mu);
    return gen;
}

/* Joins the batch and sleeps until the commit holding it is done. */
static enum state_status gc_join_wait(struct group_commit *gc,
                                      const char *const *accounts, size_t n,
                                      const struct state_count *counts,
                                      size_t n_counts)
{
    struct gc_waiter me = {.next = NULL, .rc = STATE_ERR, .done = NULL};
    uint64_t my_gen = gc_join(gc, accounts, n, counts, n_counts, &me);
    enum state_status rc;

    if (my_gen == 0)
        return STATE_ERR;
    pthread_mutex_lock(&gc->mu);
    while (gc->gen_done < my_gen)
        pthread_cond_wait(&gc->done, &gc->mu);
    rc = me.rc;
    pthread_mutex_unlock(&gc->mu);
    return rc;
}

enum state_status
state_sqlite_mark_pending(void *impl, const char *const *accounts, size_t n)
{
    return gc_join_wait(&((struct sq *)impl)->gc, accounts, n, NULL, 0);
}

enum state_status
state_sqlite_mark_pending_async(void *impl, const char *const *accounts,
                                size_t n, const struct state_count *counts,
                                size_t n_counts, state_mark_cb done, void *arg)
{
    struct group_commit *gc = &((struct sq *)impl)->gc;
    struct gc_waiter *w = xcalloc(1, sizeof *w);

    w->rc = STATE_ERR;
    w->done = done;
    w->arg = arg;
    if (gc_join(gc, accounts, n, counts, n_counts, w) == 0) {
        free(w);
        return STATE_ERR;
    }
    return STATE_OK;
}

/* Counters ride in the group commit: durable on return, and concurrent
 * adds (or marks) share one fsync. */
enum state_status state_sqlite_counter_add(void *impl, const char *name,
                                           int64_t delta)
{
    struct state_count c = {.name = name, .delta = delta};

    return gc_join_wait(&((struct sq *)impl)->gc, NULL, 0, &c, 1);
}
