/*
 * state_sqlite: the state store in DATA/app.db.
 *
 * Tables:
 *   accounts  tokens (access, refresh, expiry), re-link flag, cursor, time
 *             of the last cursor write, last failure and failures in a row
 *   handled   (account, path, rev) entries whose once-only work is done
 *   pending   one row per pending account with the version of its mark
 *   leases    one row per account ever leased: holder, fence, expiry.
 *             Releasing clears the holder but keeps the row, so the next
 *             fence is always larger than every fence handed out before.
 *   counters  named integers
 *   meta      version_seq, the source of mark versions
 *
 * One writing connection per process, used under a mutex by every
 * operation and by the group committer.  SQLite lets one writer in at a
 * time anyway; a second writer would only add busy-wait sleeps when the
 * two collide.  The busy timeout set by db_open covers other processes
 * (the worker, appctl) writing the same file.  A second connection only
 * reads, for account_known, so the receiver never waits for a commit to
 * learn whether it knows an account (and known accounts are cached).
 *
 * Group commit: callers of mark_pending and counter_add copy their
 * accounts and counter deltas into the batch being gathered and sleep
 * (mark_pending_async callers leave a callback instead).  One committer
 * thread takes the whole batch, writes it in one transaction (one fsync:
 * each account once, each counter once) and then wakes the callers of
 * that generation and runs the callbacks.  While it commits, the next
 * batch gathers, so the busier the receiver, the more marks share a
 * commit.
 *
 * Versions: every committed batch takes the next value of version_seq
 * and stamps it on each of its marks.  A mark committed after a claim
 * therefore always carries a larger version than the claim saw.
 */
#include "app/state.h"

#include "app/state_backend.h"
#include "common/db.h"
#include "common/log.h"
#include "common/util.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char sq_schema[] =
    "CREATE TABLE IF NOT EXISTS accounts ("
    " account TEXT PRIMARY KEY, token TEXT, cursor TEXT,"
    " last_sync_s INTEGER, failure TEXT);"
    "CREATE TABLE IF NOT EXISTS pending ("
    " account TEXT PRIMARY KEY, version INTEGER NOT NULL,"
    " marked_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS pending_by_age ON pending(marked_ms);"
    "CREATE TABLE IF NOT EXISTS leases ("
    " account TEXT PRIMARY KEY, owner TEXT, fence INTEGER NOT NULL,"
    " expires_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS handled ("
    " account TEXT NOT NULL, path TEXT NOT NULL, rev TEXT NOT NULL,"
    " done_s INTEGER NOT NULL, PRIMARY KEY(account, path, rev))"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS counters ("
    " name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS meta ("
    " name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO meta(name, value) VALUES('version_seq', 0);";

/* Columns added to accounts after the first release; an existing app.db
 * gets them on open (sq_migrate). */
static const struct {
    const char *name;
    const char *decl;
} sq_account_columns[] = {
    {"refresh", "refresh TEXT"},
    {"expires_s", "expires_s INTEGER NOT NULL DEFAULT 0"},
    {"relink", "relink INTEGER NOT NULL DEFAULT 0"},
    {"fail_streak", "fail_streak INTEGER NOT NULL DEFAULT 0"},
};

/* A batch slot: account ids are copied into the batch, so a caller that
 * does not wait (mark_pending_async) need not keep its own. */
typedef char gc_account[STATE_ACCOUNT_MAX + 1];

/* Longest counter name the committer keeps (state.c checks names). */
#define GC_COUNTER_NAME_MAX 64
/* Distinct counters one batch carries; status lists about a dozen. */
#define GC_COUNTERS_MAX 32

struct gc_count {
    char name[GC_COUNTER_NAME_MAX + 1];
    int64_t delta;
};

/* One caller waiting for its commit.  A blocking caller's lives on its
 * stack (done == NULL) and it sleeps on gc->done; an async caller's is
 * on the heap, and done(arg, rc) runs on the committer's thread. */
struct gc_waiter {
    struct gc_waiter *next;
    enum state_status rc;
    state_mark_cb done;
    void *arg;
};

/* What one commit writes: marks (merged per account when written) and
 * counter deltas (merged per name as they arrive). */
struct gc_batch {
    gc_account *marks;
    size_t n_marks;
    size_t cap_marks;
    struct gc_count counts[GC_COUNTERS_MAX];
    size_t n_counts;
    struct gc_waiter *waiters;
};

struct group_commit {
    sqlite3 *db;                /* shared with struct sq */
    pthread_mutex_t *db_mu;     /* held while db is in use */
    sqlite3_stmt *next_version; /* bumps version_seq, returns it */
    sqlite3_stmt *upsert;       /* one mark */
    sqlite3_stmt *count;        /* adds to one counter */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;        /* committer: work arrived, or stop */
    pthread_cond_t done;        /* callers: a generation was committed */
    struct gc_batch gathering;  /* the batch new callers join (mu) */
    uint64_t gen_gathering;     /* generation that new callers join */
    uint64_t gen_done;          /* last generation written (or failed) */
    bool stopping;
};

/* Slots of the known-accounts cache: a power of two, filled to 3/4 at
 * most; past that, lookups simply go to the database. */
#define SQ_KNOWN_SLOTS 8192u

/* Accounts known to hold a token.  Tokens are never removed, so a
 * positive answer stays true; a miss asks the database through a second
 * connection (WAL lets it read beside the committer), which also sees
 * tokens stored by other processes (appctl token-set). */
struct sq_known {
    pthread_rwlock_t lock; /* guards slots and used */
    gc_account *slots;     /* "" = empty */
    size_t used;
    pthread_mutex_t rmu;   /* guards rdb and lookup */
    sqlite3 *rdb;
    sqlite3_stmt *lookup;
};

struct sq {
    sqlite3 *db;        /* the writing connection */
    pthread_mutex_t mu; /* serializes use of db (transactions span calls) */
    struct group_commit gc;
    struct sq_known known;
};

/* Steps a statement that returns no row; 0 or -1 (logged). */
static int sq_step_done(sqlite3 *db, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);

    if (rc == SQLITE_DONE)
        return 0;
    LOG_E("state sqlite step failed op=%s error=\"%s\"", what,
          sqlite3_errmsg(db));
    return -1;
}

/* ---- group commit ---------------------------------------------------- */

static int gc_account_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Upserts the batch's marks, each account once, all with one new
 * version.  Called inside the commit's transaction. */
static int gc_write_marks(struct group_commit *gc, struct gc_batch *b)
{
    int64_t version;
    int64_t now = state_now_ms();

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
        rc = sq_step_done(gc->db, gc->upsert, "mark_pending");
        sqlite3_reset(gc->upsert);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int gc_write_counts(struct group_commit *gc, const struct gc_batch *b)
{
    for (size_t i = 0; i < b->n_counts; i++) {
        int rc;

        db_bind_text(gc->count, 1, b->counts[i].name);
        sqlite3_bind_int64(gc->count, 2, b->counts[i].delta);
        rc = sq_step_done(gc->db, gc->count, "counter_add");
        sqlite3_reset(gc->count);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Writes one batch in one transaction (one fsync), holding the
 * connection mutex (never gc->mu, so callers keep gathering meanwhile). */
static enum state_status gc_write(struct group_commit *gc, struct gc_batch *b)
{
    enum state_status result = STATE_ERR;

    if (b->n_marks == 0 && b->n_counts == 0)
        return STATE_OK;
    pthread_mutex_lock(gc->db_mu);
    if (db_begin(gc->db) < 0)
        goto out;
    if (gc_write_marks(gc, b) < 0 || gc_write_counts(gc, b) < 0)
        goto out;
    if (db_commit(gc->db) == 0)
        result = STATE_OK;

out:
    if (result != STATE_OK)
        db_rollback(gc->db);
    pthread_mutex_unlock(gc->db_mu);
    return result;
}

/* Gives every waiter of a written generation its result (called with
 * gc->mu held) and returns the async ones, to be told once mu is
 * released.  Blocking waiters may return as soon as mu is released, so
 * their nodes are not touched after that. */
static struct gc_waiter *gc_settle(struct group_commit *gc,
                                   struct gc_waiter *w, enum state_status rc,
                                   uint64_t gen)
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

static void *gc_thread(void *arg)
{
    struct group_commit *gc = arg;

    pthread_mutex_lock(&gc->mu);
    for (;;) {
        struct gc_batch b;
        struct gc_waiter *async;
        uint64_t gen;
        enum state_status rc;

        while (gc->gathering.waiters == NULL && !gc->stopping)
            pthread_cond_wait(&gc->wake, &gc->mu);
        if (gc->gathering.waiters == NULL)
            break; /* stopping, and every caller has been served */

        b = gc->gathering;
        memset(&gc->gathering, 0, sizeof gc->gathering);
        gen = gc->gen_gathering++;
        pthread_mutex_unlock(&gc->mu);

        rc = gc_write(gc, &b);
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

static void gc_free_stmts(struct group_commit *gc)
{
    sqlite3_finalize(gc->next_version);
    sqlite3_finalize(gc->upsert);
    sqlite3_finalize(gc->count);
}

static int gc_start(struct group_commit *gc, sqlite3 *db,
                    pthread_mutex_t *db_mu)
{
    gc->db = db;
    gc->db_mu = db_mu;
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
    pthread_cond_init(&gc->wake, NULL);
    pthread_cond_init(&gc->done, NULL);
    gc->gen_gathering = 1;
    gc->gen_done = 0;
    if (pthread_create(&gc->thread, NULL, gc_thread, gc) != 0) {
        LOG_E("state group_commit thread failed to start");
        gc_free_stmts(gc);
        pthread_cond_destroy(&gc->wake);
        pthread_cond_destroy(&gc->done);
        pthread_mutex_destroy(&gc->mu);
        return -1;
    }
    return 0;
}

/* Serves every caller still waiting, then stops the committer. */
static void gc_stop(struct group_commit *gc)
{
    pthread_mutex_lock(&gc->mu);
    gc->stopping = true;
    pthread_cond_signal(&gc->wake);
    pthread_mutex_unlock(&gc->mu);
    pthread_join(gc->thread, NULL);

    gc_free_stmts(gc);
    pthread_cond_destroy(&gc->wake);
    pthread_cond_destroy(&gc->done);
    pthread_mutex_destroy(&gc->mu);
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
    snprintf(b->counts[b->n_counts].name, sizeof b->counts[0].name, "%s",
             name);
    b->counts[b->n_counts++].delta = delta;
    return 0;
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
    for (size_t i = 0; i < n_counts; i++) {
        if (gc_add_count(b, counts[i].name, counts[i].delta) < 0) {
            LOG_E("state too many counters in one commit name=%s",
                  counts[i].name);
            goto out;
        }
    }
    if (b->n_marks + n > b->cap_marks) {
        size_t cap = b->cap_marks ? b->cap_marks : 64;

        while (cap < b->n_marks + n)
            cap *= 2;
        b->marks = xrealloc(b->marks, cap * sizeof *b->marks);
        b->cap_marks = cap;
    }
    for (size_t i = 0; i < n; i++)
        snprintf(b->marks[b->n_marks++], sizeof *b->marks, "%s",
                 accounts[i]);
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

static enum state_status sq_mark_pending(void *impl,
                                         const char *const *accounts, size_t n)
{
    return gc_join_wait(&((struct sq *)impl)->gc, accounts, n, NULL, 0);
}

static enum state_status
sq_mark_pending_async(void *impl, const char *const *accounts, size_t n,
                      const struct state_count *counts, size_t n_counts,
                      state_mark_cb done, void *arg)
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
static enum state_status sq_counter_add(void *impl, const char *name,
                                        int64_t delta)
{
    struct state_count c = {.name = name, .delta = delta};

    return gc_join_wait(&((struct sq *)impl)->gc, NULL, 0, &c, 1);
}

/* ---- known accounts ---------------------------------------------------- */

static size_t sq_known_hash(const char *s)
{
    size_t h = 14695981039346656037u; /* FNV-1a */

    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

/* The slot holding account, or the empty slot where it would go (NULL
 * when the table is full).  Called with known->lock held. */
static gc_account *sq_known_slot(struct sq_known *k, const char *account)
{
    size_t i = sq_known_hash(account) & (SQ_KNOWN_SLOTS - 1);

    for (size_t probes = 0; probes < SQ_KNOWN_SLOTS; probes++) {
        gc_account *slot = &k->slots[i];

        if ((*slot)[0] == '\0' || strcmp(*slot, account) == 0)
            return slot;
        i = (i + 1) & (SQ_KNOWN_SLOTS - 1);
    }
    return NULL;
}

static bool sq_known_cached(struct sq_known *k, const char *account)
{
    gc_account *slot;
    bool hit;

    pthread_rwlock_rdlock(&k->lock);
    slot = sq_known_slot(k, account);
    hit = slot != NULL && (*slot)[0] != '\0';
    pthread_rwlock_unlock(&k->lock);
    return hit;
}

static void sq_known_remember(struct sq_known *k, const char *account)
{
    gc_account *slot;

    pthread_rwlock_wrlock(&k->lock);
    slot = sq_known_slot(k, account);
    if (slot != NULL && (*slot)[0] == '\0' &&
        k->used < SQ_KNOWN_SLOTS / 4 * 3) {
        snprintf(*slot, sizeof *slot, "%s", account);
        k->used++;
    }
    pthread_rwlock_unlock(&k->lock);
}

static enum state_status sq_account_known(void *impl, const char *account)
{
    struct sq_known *k = &((struct sq *)impl)->known;
    enum state_status result = STATE_NONE;
    int rc;

    if (sq_known_cached(k, account))
        return STATE_OK;
    pthread_mutex_lock(&k->rmu);
    db_bind_text(k->lookup, 1, account);
    rc = sqlite3_step(k->lookup);
    if (rc == SQLITE_ROW) {
        result = STATE_OK;
    } else if (rc != SQLITE_DONE) {
        LOG_E("state read failed error=\"%s\"", sqlite3_errmsg(k->rdb));
        result = STATE_ERR;
    }
    sqlite3_reset(k->lookup);
    pthread_mutex_unlock(&k->rmu);
    if (result == STATE_OK)
        sq_known_remember(k, account);
    return result;
}

static int sq_known_open(struct sq_known *k, const char *path)
{
    k->rdb = db_open(path, NULL);
    if (k->rdb == NULL)
        return -1;
    k->lookup = db_prepare(k->rdb, "SELECT 1 FROM accounts WHERE account = ?1"
                                   " AND token IS NOT NULL");
    k->slots = xcalloc(SQ_KNOWN_SLOTS, sizeof *k->slots);
    pthread_rwlock_init(&k->lock, NULL);
    pthread_mutex_init(&k->rmu, NULL);
    return 0;
}

static void sq_known_close(struct sq_known *k)
{
    if (k->rdb == NULL)
        return;
    sqlite3_finalize(k->lookup);
    db_close(k->rdb);
    free(k->slots);
    pthread_rwlock_destroy(&k->lock);
    pthread_mutex_destroy(&k->rmu);
}

/* ---- tokens, cursors, counters, failures ----------------------------- */

/* Runs one write statement under the connection mutex, with ?1, ?2 and
 * ?4 bound to text1, text2 and text4 (NULL binds NULL) and ?3 to num; a
 * statement may leave some of them unused. */
static enum state_status sq_write(struct sq *q, const char *sql,
                                  const char *what, const char *text1,
                                  const char *text2, int64_t num,
                                  const char *text4)
{
    sqlite3_stmt *s;
    int rc;

    pthread_mutex_lock(&q->mu);
    s = db_prepare(q->db, sql);
    db_bind_text(s, 1, text1);
    db_bind_text(s, 2, text2);
    sqlite3_bind_int64(s, 3, num);
    db_bind_text(s, 4, text4);
    rc = sq_step_done(q->db, s, what);
    sqlite3_finalize(s);
    pthread_mutex_unlock(&q->mu);
    return rc == 0 ? STATE_OK : STATE_ERR;
}

/* Reads one text column of one row keyed by key; STATE_NONE when there
 * is no row or the value is NULL. */
static enum state_status sq_read_text(struct sq *q, const char *sql,
                                      const char *key, char **out)
{
    sqlite3_stmt *s;
    enum state_status result = STATE_NONE;
    int rc;

    pthread_mutex_lock(&q->mu);
    s = db_prepare(q->db, sql);
    db_bind_text(s, 1, key);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *out = db_column_dup(s, 0);
        if (*out != NULL)
            result = STATE_OK;
    } else if (rc != SQLITE_DONE) {
        LOG_E("state read failed error=\"%s\"", sqlite3_errmsg(q->db));
        result = STATE_ERR;
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&q->mu);
    return result;
}

static enum state_status sq_token_set(void *impl, const char *account,
                                      const char *access, const char *refresh,
                                      int64_t expires_s)
{
    return sq_write(impl,
                    "INSERT INTO accounts(account, token, refresh, expires_s,"
                    " relink) VALUES(?1, ?2, ?4, ?3, 0)"
                    " ON CONFLICT(account) DO UPDATE"
                    " SET token = excluded.token,"
                    " refresh = COALESCE(excluded.refresh, refresh),"
                    " expires_s = excluded.expires_s, relink = 0",
                    "token_set", account, access, expires_s, refresh);
}

static enum state_status sq_token_get(void *impl, const char *account,
                                      struct state_token *tok)
{
    struct sq *q = impl;
    sqlite3_stmt *s;
    enum state_status result = STATE_NONE;
    int rc;

    pthread_mutex_lock(&q->mu);
    s = db_prepare(q->db, "SELECT token, refresh, expires_s, relink"
                          " FROM accounts WHERE account = ?1"
                          " AND token IS NOT NULL");
    db_bind_text(s, 1, account);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        tok->access = db_column_dup(s, 0);
        tok->refresh = db_column_dup(s, 1);
        tok->expires_s = sqlite3_column_int64(s, 2);
        tok->needs_relink = sqlite3_column_int(s, 3) != 0;
        result = STATE_OK;
    } else if (rc != SQLITE_DONE) {
        LOG_E("state read failed error=\"%s\"", sqlite3_errmsg(q->db));
        result = STATE_ERR;
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&q->mu);
    return result;
}

static enum state_status sq_relink_set(void *impl, const char *account)
{
    return sq_write(impl, "UPDATE accounts SET relink = 1 WHERE account = ?1",
                    "relink_set", account, NULL, 0, NULL);
}

/* STATE_OK when sql (with ?1..?3 bound to a, b, c) returns a row. */
static enum state_status sq_exists(struct sq *q, const char *sql,
                                   const char *a, const char *b,
                                   const char *c)
{
    sqlite3_stmt *s;
    enum state_status result = STATE_NONE;
    int rc;

    pthread_mutex_lock(&q->mu);
    s = db_prepare(q->db, sql);
    db_bind_text(s, 1, a);
    db_bind_text(s, 2, b);
    db_bind_text(s, 3, c);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        result = STATE_OK;
    } else if (rc != SQLITE_DONE) {
        LOG_E("state read failed error=\"%s\"", sqlite3_errmsg(q->db));
        result = STATE_ERR;
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&q->mu);
    return result;
}

static enum state_status sq_handled_check(void *impl, const char *account,
                                          const char *path, const char *rev)
{
    return sq_exists(impl,
                     "SELECT 1 FROM handled WHERE account = ?1"
                     " AND path = ?2 AND rev = ?3",
                     account, path, rev);
}

static enum state_status sq_handled_put(void *impl, const char *account,
                                        const char *path, const char *rev)
{
    struct sq *q = impl;
    sqlite3_stmt *s;
    int rc;

    pthread_mutex_lock(&q->mu);
    s = db_prepare(q->db, "INSERT OR IGNORE INTO handled(account, path, rev,"
                          " done_s) VALUES(?1, ?2, ?3, ?4)");
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, path);
    db_bind_text(s, 3, rev);
    sqlite3_bind_int64(s, 4, time_now_s());
    rc = sq_step_done(q->db, s, "handled_put");
    sqlite3_finalize(s);
    pthread_mutex_unlock(&q->mu);
    return rc == 0 ? STATE_OK : STATE_ERR;
}

static enum state_status sq_cursor_get(void *impl, const char *account,
                                       char **cursor)
{
    return sq_read_text(impl, "SELECT cursor FROM accounts WHERE account = ?1",
                        account, cursor);
}

static enum state_status sq_counter_get(void *impl, const char *name,
                                        int64_t *value)
{
    struct sq *q = impl;
    sqlite3_stmt *s;
    enum state_status result = STATE_OK;
    int rc;

    pthread_mutex_lock(&q->mu);
    s = db_prepare(q->db, "SELECT value FROM counters WHERE name = ?1");
    db_bind_text(s, 1, name);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *value = sqlite3_column_int64(s, 0);
    } else if (rc != SQLITE_DONE) {
        LOG_E("state counter read failed error=\"%s\"", sqlite3_errmsg(q->db));
        result = STATE_ERR;
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&q->mu);
    return result;
}

static enum state_status sq_failure_set(void *impl, const char *account,
                                        const char *what, int64_t *streak)
{
    struct sq *q = impl;
    sqlite3_stmt *s;
    enum state_status result = STATE_ERR;

    pthread_mutex_lock(&q->mu);
    s = db_prepare(q->db,
                   "INSERT INTO accounts(account, failure, fail_streak)"
                   " VALUES(?1, ?2, ?2 IS NOT NULL) ON CONFLICT(account)"
                   " DO UPDATE SET failure = excluded.failure,"
                   " fail_streak = CASE WHEN excluded.failure IS NULL"
                   " THEN 0 ELSE fail_streak + 1 END"
                   " RETURNING fail_streak");
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, what);
    if (sqlite3_step(s) == SQLITE_ROW) {
        *streak = sqlite3_column_int64(s, 0);
        result = STATE_OK;
    } else {
        LOG_E("state failure_set failed error=\"%s\"", sqlite3_errmsg(q->db));
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&q->mu);
    return result;
}

static enum state_status sq_failure_get(void *impl, const char *account,
                                        char **what)
{
    return sq_read_text(impl,
                        "SELECT failure FROM accounts WHERE account = ?1",
                        account, what);
}

/* ---- leases ---------------------------------------------------------- */

/* Finds the oldest pending account without a live lease. */
static enum state_status sq_claim_find(struct sq *q, int64_t now,
                                       char **account, int64_t *version,
                                       uint64_t *last_fence)
{
    sqlite3_stmt *s;
    enum state_status result = STATE_NONE;
    int rc;

    s = db_prepare(q->db, "SELECT p.account, p.version, COALESCE(l.fence, 0)"
                          " FROM pending p LEFT JOIN leases l"
                          " ON l.account = p.account"
                          " WHERE l.owner IS NULL OR l.expires_ms <= ?1"
                          " ORDER BY p.marked_ms, p.account LIMIT 1");
    sqlite3_bind_int64(s, 1, now);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *account = db_column_dup(s, 0);
        *version = sqlite3_column_int64(s, 1);
        *last_fence = (uint64_t)sqlite3_column_int64(s, 2);
        result = STATE_OK;
    } else if (rc != SQLITE_DONE) {
        LOG_E("state claim failed error=\"%s\"", sqlite3_errmsg(q->db));
        result = STATE_ERR;
    }
    sqlite3_finalize(s);
    return result;
}

static int sq_lease_put(struct sq *q, const char *account, const char *owner,
                        uint64_t fence, int64_t expires_ms)
{
    sqlite3_stmt *s;
    int rc;

    s = db_prepare(q->db,
                   "INSERT INTO leases(account, owner, fence, expires_ms)"
                   " VALUES(?1, ?2, ?3, ?4) ON CONFLICT(account)"
                   " DO UPDATE SET owner = excluded.owner,"
                   " fence = excluded.fence,"
                   " expires_ms = excluded.expires_ms");
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, owner);
    sqlite3_bind_int64(s, 3, (int64_t)fence);
    sqlite3_bind_int64(s, 4, expires_ms);
    rc = sq_step_done(q->db, s, "claim");
    sqlite3_finalize(s);
    return rc;
}

static enum state_status sq_claim(void *impl, const char *owner,
                                  int64_t lease_ms, char **account,
                                  uint64_t *fence, int64_t *version)
{
    struct sq *q = impl;
    int64_t now = state_now_ms();
    uint64_t last_fence = 0;
    char *found = NULL;
    enum state_status result = STATE_ERR;

    pthread_mutex_lock(&q->mu);
    if (db_begin(q->db) < 0)
        goto out;
    result = sq_claim_find(q, now, &found, version, &last_fence);
    if (result != STATE_OK)
        goto out;
    result = STATE_ERR;
    if (sq_lease_put(q, found, owner, last_fence + 1, now + lease_ms) < 0)
        goto out;
    if (db_commit(q->db) < 0)
        goto out;
    *account = found;
    *fence = last_fence + 1;
    found = NULL;
    result = STATE_OK;

out:
    if (result != STATE_OK) {
        db_rollback(q->db);
        *version = 0;
    }
    pthread_mutex_unlock(&q->mu);
    free(found);
    return result;
}

/* Runs a fenced UPDATE of leases (?1 account, ?2 fence, ?3 number) and
 * tells whether it hit the live lease.  Called with q->mu held. */
static enum state_status sq_lease_update(struct sq *q, const char *sql,
                                         const char *account, uint64_t fence,
                                         int64_t num)
{
    sqlite3_stmt *s = db_prepare(q->db, sql);
    enum state_status result = STATE_OK;

    db_bind_text(s, 1, account);
    sqlite3_bind_int64(s, 2, (int64_t)fence);
    sqlite3_bind_int64(s, 3, num);
    if (sq_step_done(q->db, s, "lease") < 0)
        result = STATE_ERR;
    else if (sqlite3_changes(q->db) == 0)
        result = STATE_LOST;
    sqlite3_finalize(s);
    return result;
}

static enum state_status sq_renew(void *impl, const char *account,
                                  uint64_t fence, int64_t lease_ms)
{
    struct sq *q = impl;
    enum state_status result;

    pthread_mutex_lock(&q->mu);
    result = sq_lease_update(q,
                             "UPDATE leases SET expires_ms = ?3"
                             " WHERE account = ?1 AND fence = ?2"
                             " AND owner IS NOT NULL",
                             account, fence, state_now_ms() + lease_ms);
    pthread_mutex_unlock(&q->mu);
    return result;
}

/* Drops the mark if its version is the claimed one; otherwise moves it
 * to the back of the queue so that one busy account cannot starve the
 * others.  Called inside release's transaction. */
static int sq_unmark(struct sq *q, const char *account, int64_t version)
{
    sqlite3_stmt *s;
    int rc;

    s = db_prepare(q->db,
                   "DELETE FROM pending WHERE account = ?1 AND version = ?2");
    db_bind_text(s, 1, account);
    sqlite3_bind_int64(s, 2, version);
    rc = sq_step_done(q->db, s, "release");
    sqlite3_finalize(s);
    if (rc < 0 || sqlite3_changes(q->db) > 0)
        return rc;

    s = db_prepare(q->db,
                   "UPDATE pending SET marked_ms = ?2 WHERE account = ?1");
    db_bind_text(s, 1, account);
    sqlite3_bind_int64(s, 2, state_now_ms());
    rc = sq_step_done(q->db, s, "release");
    sqlite3_finalize(s);
    return rc;
}

static enum state_status sq_release(void *impl, const char *account,
                                    uint64_t fence, int64_t version)
{
    struct sq *q = impl;
    enum state_status result = STATE_ERR;

    pthread_mutex_lock(&q->mu);
    if (db_begin(q->db) < 0)
        goto out;
    result = sq_lease_update(q,
                             "UPDATE leases SET owner = NULL,"
                             " expires_ms = ?3"
                             " WHERE account = ?1 AND fence = ?2"
                             " AND owner IS NOT NULL",
                             account, fence, 0);
    if (result != STATE_OK)
        goto out;
    result = STATE_ERR;
    if (sq_unmark(q, account, version) < 0 || db_commit(q->db) < 0)
        goto out;
    result = STATE_OK;

out:
    if (result != STATE_OK)
        db_rollback(q->db);
    pthread_mutex_unlock(&q->mu);
    return result;
}

/* STATE_OK when fence is the live lease of account, else STATE_LOST.
 * Called inside a transaction. */
static enum state_status sq_fence_check(struct sq *q, const char *account,
                                        uint64_t fence)
{
    sqlite3_stmt *s;
    enum state_status result = STATE_LOST;
    int rc;

    s = db_prepare(q->db, "SELECT 1 FROM leases WHERE account = ?1"
                          " AND fence = ?2 AND owner IS NOT NULL");
    db_bind_text(s, 1, account);
    sqlite3_bind_int64(s, 2, (int64_t)fence);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        result = STATE_OK;
    else if (rc != SQLITE_DONE)
        result = STATE_ERR;
    sqlite3_finalize(s);
    return result;
}

static enum state_status sq_cursor_set(void *impl, const char *account,
                                       const char *cursor, uint64_t fence)
{
    struct sq *q = impl;
    sqlite3_stmt *s;
    enum state_status result = STATE_ERR;
    int rc;

    pthread_mutex_lock(&q->mu);
    if (db_begin(q->db) < 0)
        goto out;
    result = sq_fence_check(q, account, fence);
    if (result != STATE_OK)
        goto out;

    s = db_prepare(q->db, "INSERT INTO accounts(account, cursor, last_sync_s)"
                          " VALUES(?1, ?2, ?3) ON CONFLICT(account) DO UPDATE"
                          " SET cursor = excluded.cursor,"
                          " last_sync_s = excluded.last_sync_s");
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, cursor);
    sqlite3_bind_int64(s, 3, time_now_s());
    rc = sq_step_done(q->db, s, "cursor_set");
    sqlite3_finalize(s);
    result = STATE_ERR;
    if (rc == 0 && db_commit(q->db) == 0)
        result = STATE_OK;

out:
    if (result != STATE_OK)
        db_rollback(q->db);
    pthread_mutex_unlock(&q->mu);
    return result;
}

/* ---- status ---------------------------------------------------------- */

static json_t *sq_status_account(sqlite3_stmt *s)
{
    json_t *a = json_object();
    char when[21];

    json_object_set_new(a, "account",
                        json_string((const char *)sqlite3_column_text(s, 0)));
    json_object_set_new(a, "has_token", json_boolean(sqlite3_column_int(s, 1)));
    json_object_set_new(a, "cursor", json_boolean(sqlite3_column_int(s, 2)));
    json_object_set_new(a, "pending", json_boolean(sqlite3_column_int(s, 3)));
    json_object_set_new(a, "leased", json_boolean(sqlite3_column_int(s, 4)));
    if (sqlite3_column_type(s, 5) == SQLITE_NULL) {
        json_object_set_new(a, "last_sync", json_null());
    } else {
        time_iso8601(sqlite3_column_int64(s, 5), when);
        json_object_set_new(a, "last_sync", json_string(when));
    }
    if (sqlite3_column_type(s, 6) == SQLITE_NULL)
        json_object_set_new(a, "failure", json_null());
    else
        json_object_set_new(
            a, "failure", json_string((const char *)sqlite3_column_text(s, 6)));
    json_object_set_new(a, "failures_in_row",
                        json_integer(sqlite3_column_int64(s, 7)));
    json_object_set_new(a, "needs_relink",
                        json_boolean(sqlite3_column_int(s, 8)));
    return a;
}

static int sq_status_accounts(struct sq *q, json_t *out)
{
    sqlite3_stmt *s;
    int rc;

    s = db_prepare(
        q->db, "SELECT u.account, a.token IS NOT NULL, a.cursor IS NOT NULL,"
               " p.account IS NOT NULL,"
               " l.owner IS NOT NULL AND l.expires_ms > ?1,"
               " a.last_sync_s, a.failure, COALESCE(a.fail_streak, 0),"
               " COALESCE(a.relink, 0)"
               " FROM (SELECT account FROM accounts UNION"
               "       SELECT account FROM pending UNION"
               "       SELECT account FROM leases) u"
               " LEFT JOIN accounts a ON a.account = u.account"
               " LEFT JOIN pending p ON p.account = u.account"
               " LEFT JOIN leases l ON l.account = u.account"
               " ORDER BY u.account");
    sqlite3_bind_int64(s, 1, state_now_ms());
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        json_array_append_new(out, sq_status_account(s));
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int sq_status_counters(struct sq *q, json_t *out)
{
    sqlite3_stmt *s;
    int rc;

    for (size_t i = 0; i < state_counter_count; i++)
        json_object_set_new(out, state_counter_names[i], json_integer(0));
    s = db_prepare(q->db, "SELECT name, value FROM counters ORDER BY name");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        json_object_set_new(out, (const char *)sqlite3_column_text(s, 0),
                            json_integer(sqlite3_column_int64(s, 1)));
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

static enum state_status sq_status_json(void *impl, char **json)
{
    struct sq *q = impl;
    json_t *root = json_object();
    json_t *accounts = json_array();
    size_t i, pending = 0;
    json_t *a;
    json_t *counters = json_object();
    enum state_status result = STATE_ERR;

    json_object_set_new(root, "accounts", accounts);
    json_object_set_new(root, "counters", counters);

    /* One read transaction: accounts and counters from one snapshot. */
    pthread_mutex_lock(&q->mu);
    if (db_exec(q->db, "BEGIN") < 0)
        goto out;
    if (sq_status_accounts(q, accounts) < 0 ||
        sq_status_counters(q, counters) < 0) {
        LOG_E("state status failed error=\"%s\"", sqlite3_errmsg(q->db));
        goto out;
    }
    json_array_foreach(accounts, i, a)
    {
        if (json_is_true(json_object_get(a, "pending")))
            pending++;
    }
    json_object_set_new(root, "pending", json_integer((json_int_t)pending));
    *json = json_dumps(root, JSON_INDENT(2));
    if (*json != NULL)
        result = STATE_OK;

out:
    db_rollback(q->db);
    pthread_mutex_unlock(&q->mu);
    json_decref(root);
    return result;
}

/* ---- open and close -------------------------------------------------- */

/* True when accounts already has the column (called inside a
 * transaction). */
static bool sq_has_column(sqlite3 *db, const char *name)
{
    sqlite3_stmt *s = db_prepare(db, "SELECT 1 FROM pragma_table_info("
                                     "'accounts') WHERE name = ?1");
    bool found;

    db_bind_text(s, 1, name);
    found = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    return found;
}

/* Adds the columns an older app.db lacks.  BEGIN IMMEDIATE keeps two
 * processes opening the same old file from adding a column twice. */
static int sq_migrate(sqlite3 *db)
{
    if (db_begin(db) < 0)
        return -1;
    for (size_t i = 0; i < ARRAY_LEN(sq_account_columns); i++) {
        char *sql;
        int rc;

        if (sq_has_column(db, sq_account_columns[i].name))
            continue;
        sql = xasprintf("ALTER TABLE accounts ADD COLUMN %s",
                        sq_account_columns[i].decl);
        rc = db_exec(db, sql);
        free(sql);
        if (rc < 0) {
            db_rollback(db);
            return -1;
        }
        LOG_I("state migrated column=%s", sq_account_columns[i].name);
    }
    return db_commit(db);
}

static void sq_close(void *impl)
{
    struct sq *q = impl;

    gc_stop(&q->gc);
    sq_known_close(&q->known);
    db_close(q->db);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

static const struct state_ops sq_ops = {
    .name = "sqlite",
    .close = sq_close,
    .token_set = sq_token_set,
    .token_get = sq_token_get,
    .relink_set = sq_relink_set,
    .account_known = sq_account_known,
    .handled_check = sq_handled_check,
    .handled_put = sq_handled_put,
    .mark_pending = sq_mark_pending,
    .mark_pending_async = sq_mark_pending_async,
    .claim = sq_claim,
    .renew = sq_renew,
    .release = sq_release,
    .cursor_get = sq_cursor_get,
    .cursor_set = sq_cursor_set,
    .counter_add = sq_counter_add,
    .counter_get = sq_counter_get,
    .failure_set = sq_failure_set,
    .failure_get = sq_failure_get,
    .status_json = sq_status_json,
};

struct state *state_open_sqlite(const char *dir)
{
    struct sq *q;
    char *path;
    sqlite3 *db;

    if (mkdir_p(dir, 0700) < 0) {
        LOG_E("state cannot create data dir=%s", dir);
        return NULL;
    }
    path = xasprintf("%s/app.db", dir);
    db = db_open(path, sq_schema);
    if (db == NULL || sq_migrate(db) < 0)
        goto fail;

    q = xcalloc(1, sizeof *q);
    q->db = db;
    if (sq_known_open(&q->known, path) < 0) {
        free(q);
        goto fail;
    }
    pthread_mutex_init(&q->mu, NULL);
    if (gc_start(&q->gc, q->db, &q->mu) < 0) {
        pthread_mutex_destroy(&q->mu);
        sq_known_close(&q->known);
        free(q);
        goto fail;
    }
    free(path);
    return state_new(&sq_ops, q);

fail:
    db_close(db);
    free(path);
    return NULL;
}
