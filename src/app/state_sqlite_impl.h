/*
 * state_sqlite_impl.h: what the files of the SQLite state store share
 * (private to state_sqlite*.c; the rest of the app sees state.h only).
 *
 *   state_sqlite.c         schema, open and close, the reader, known
 *                          accounts, tokens, cursors, counters, failures,
 *                          status
 *   state_sqlite_cache.c   the account cache and the lease generation
 *   state_sqlite_commit.c  the group committer: marks and counter adds
 *   state_sqlite_lease.c   claim, renew, release, fenced cursor writes
 *                          and handled records
 *
 * Every function here that takes a struct sq uses the writing
 * connection under q->mu unless its comment says it is called with
 * q->mu already held.
 */
#ifndef DBXHOOK_APP_STATE_SQLITE_IMPL_H
#define DBXHOOK_APP_STATE_SQLITE_IMPL_H

#include "app/state.h"
#include "app/state_backend.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

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
    /* Monotonic ms by which counts given without a waiter must be
     * written (state_mark_covered); 0 when there are none. */
    int64_t flush_by_ms;
};

struct group_commit {
    sqlite3 *db;                /* shared with struct sq */
    pthread_mutex_t *db_mu;     /* held while db is in use */
    sqlite3_stmt *next_version; /* bumps version_seq, returns it */
    sqlite3_stmt *upsert;       /* one mark */
    sqlite3_stmt *count;        /* adds to one counter */
    sqlite3_stmt *leased;       /* ?1 has a lease holder */
    struct sq_cache *cache;     /* told which marks are covered */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;       /* committer: work arrived, or stop */
    pthread_cond_t done;       /* callers: a generation was committed */
    struct gc_batch gathering; /* the batch new callers join (mu) */
    uint64_t gen_gathering;    /* generation that new callers join */
    uint64_t gen_done;         /* last generation written (or failed) */
    bool stopping;
};

/* Slots of the account cache: a power of two, filled to 3/4 at most;
 * past that, answers simply come from the database. */
#define SQ_CACHE_SLOTS 8192u

struct sq_slot {
    gc_account id;      /* "" = empty */
    bool known;         /* holds a token */
    uint64_t cover_gen; /* lease generation of a covered mark; 0: none */
};

/* DATA/app.leasegen as every process maps it. */
struct sq_lease_page {
    _Atomic uint64_t gen;   /* the lease generation; never 0 */
    _Atomic uint64_t nonce; /* equals meta.leasegen_nonce in app.db */
};

/* What the receiver learns without a query (state_sqlite_cache.c). */
struct sq_cache {
    pthread_rwlock_t lock; /* guards slots and used */
    struct sq_slot *slots;
    size_t used;
    struct sq_lease_page *page; /* mapped, shared by every process */
    int dir_fd; /* the data dir, locked shared while the store is open */
};

/* A read-only connection beside the writing one (WAL lets it read while
 * the committer writes), so that the receiver never waits for a commit
 * to learn whether it knows an account (asked only on a cache miss). */
struct sq_reader {
    pthread_mutex_t mu; /* guards db and known */
    sqlite3 *db;
    sqlite3_stmt *known; /* ?1 holds a token */
};

struct sq {
    sqlite3 *db;        /* the writing connection */
    pthread_mutex_t mu; /* serializes use of db (transactions span calls) */
    struct group_commit gc;
    struct sq_cache cache;
    struct sq_reader reader;
};

/* ---- shared helpers (state_sqlite.c) --------------------------------- */

/* Steps a statement that returns no row; 0 or -1 (logged with what). */
int state_sqlite_step_done(sqlite3 *db, sqlite3_stmt *s, const char *what);

/* Steps a statement that returns at most one row of interest: STATE_OK
 * on a row, STATE_NONE when there is none, STATE_ERR (logged as "state
 * <what> failed") on an error. */
enum state_status state_sqlite_step_row(sqlite3 *db, sqlite3_stmt *s,
                                        const char *what);

/* Runs one write statement under q->mu, with ?1, ?2 and ?4 bound to
 * text1, text2 and text4 (NULL binds NULL) and ?3 to num; a statement
 * may leave some of them unused. */
enum state_status state_sqlite_write(struct sq *q, const char *sql,
                                     const char *what, const char *text1,
                                     const char *text2, int64_t num,
                                     const char *text4);

/* Takes q->mu and begins a write transaction; -1 when BEGIN failed (the
 * mutex is held all the same: end with state_sqlite_txn_end). */
int state_sqlite_txn_begin(struct sq *q);

/* Rolls back unless result is STATE_OK (a committed transaction is then
 * already over) and releases q->mu. */
void state_sqlite_txn_end(struct sq *q, enum state_status result);

/* ---- account cache and lease generation (state_sqlite_cache.c) ------ */

/* Sets the cache up and maps DIR/app.leasegen, checking with db (the
 * writing connection) that it is the file every other process uses;
 * 0, or -1 (logged) when the store must not be opened.  close frees
 * it (also after a failed open). */
int state_sqlite_cache_open(struct sq_cache *c, const char *dir, sqlite3 *db);
void state_sqlite_cache_close(struct sq_cache *c);
bool state_sqlite_cache_known(struct sq_cache *c, const char *account);
void state_sqlite_cache_set_known(struct sq_cache *c, const char *account);
/* The lease generation now. */
uint64_t state_sqlite_lease_gen(struct sq_cache *c);
/* Called inside every transaction that takes a lease or drops a mark,
 * before its commit. */
void state_sqlite_lease_bump(struct sq_cache *c);
/* Records that the marks of ids were committed, without lease holders,
 * under generation gen (read inside that commit's transaction). */
void state_sqlite_cache_cover(struct sq_cache *c, const gc_account *ids,
                              size_t n, uint64_t gen);
/* Every id is covered under the generation now. */
bool state_sqlite_cache_covered(struct sq_cache *c, const char *const *ids,
                                size_t n);

/* ---- group commit (state_sqlite_commit.c) ---------------------------- */

/* Starts the committer on db, which it uses under db_mu, telling cache
 * about covered marks; 0 or -1. */
int state_sqlite_gc_start(struct group_commit *gc, sqlite3 *db,
                          pthread_mutex_t *db_mu, struct sq_cache *cache);

/* Serves every caller still waiting, then stops the committer. */
void state_sqlite_gc_stop(struct group_commit *gc);

/* The state_ops entries of the same names (impl is a struct sq). */
enum state_status
state_sqlite_mark_pending(void *impl, const char *const *accounts, size_t n);
enum state_status
state_sqlite_mark_pending_async(void *impl, const char *const *accounts,
                                size_t n, const struct state_count *counts,
                                size_t n_counts, state_mark_cb done, void *arg);
enum state_status state_sqlite_counter_add(void *impl, const char *name,
                                           int64_t delta);

/* Adds counts to the gathering batch without waiting for them: the
 * committer writes them with the next batch, or on their own within
 * STATE_COUNT_DEFER_MS; -1 (logged) when they do not fit. */
int state_sqlite_gc_defer(struct group_commit *gc,
                          const struct state_count *counts, size_t n_counts);

/* ---- leases and handled records (state_sqlite_lease.c) --------------- */

/* The state_ops entries of the same names (impl is a struct sq). */
enum state_status state_sqlite_handled_check(void *impl, const char *account,
                                             const char *path, const char *rev);
enum state_status state_sqlite_handled_put(void *impl, const char *account,
                                           const char *path, const char *rev);
enum state_status state_sqlite_claim(void *impl, const char *owner,
                                     int64_t lease_ms, char **account,
                                     uint64_t *fence, int64_t *version);
enum state_status state_sqlite_renew(void *impl, const char *account,
                                     uint64_t fence, int64_t lease_ms);
enum state_status state_sqlite_release(void *impl, const char *account,
                                       uint64_t fence, int64_t version);
enum state_status state_sqlite_cursor_set(void *impl, const char *account,
                                          const char *cursor, uint64_t fence);

#endif
