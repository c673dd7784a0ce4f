/*
 * state_sqlite_cache: what the receiver learns about an account without
 * asking the database.
 *
 * One table of accounts, each slot filled as answers come:
 *  - known: the account holds a token.  Tokens are never removed, so the
 *    answer stays true.
 *  - cover_gen: the account's mark was committed, with no worker holding
 *    its lease, while the lease generation (below) had this value.
 *
 * The lease generation is a counter in DATA/app.leasegen, mapped by
 * every process that opens the store (opening fails without it, and
 * when the file is not the one the other processes use: see
 * sq_lease_adopt).  A transaction that takes a lease
 * or drops a mark (claim, release) bumps it while it holds SQLite's
 * write lock, before it commits.  The committer reads it inside its own
 * write transaction, so as long as the counter keeps that value no claim
 * or release has begun since the mark: the account is still pending and
 * the run that will take it has not started (state_mark_covered).  Any
 * bump makes every cover_gen stale at once.
 */
#include "app/state_sqlite_impl.h"

#include "common/db.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#define SQ_LEASE_GEN_FILE "app.leasegen"

_Static_assert(ATOMIC_LONG_LOCK_FREE == 2 && sizeof(long) == 8,
               "the lease generation is shared between processes");

static size_t sq_cache_hash(const char *s)
{
    size_t h = 14695981039346656037u; /* FNV-1a */

    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

/* The slot holding account, or the empty slot where it would go (NULL
 * when the table is full).  Called with c->lock held. */
static struct sq_slot *sq_cache_slot(struct sq_cache *c, const char *account)
{
    size_t i = sq_cache_hash(account) & (SQ_CACHE_SLOTS - 1);

    for (size_t probes = 0; probes < SQ_CACHE_SLOTS; probes++) {
        struct sq_slot *slot = &c->slots[i];

        if (slot->id[0] == '\0' || strcmp(slot->id, account) == 0)
            return slot;
        i = (i + 1) & (SQ_CACHE_SLOTS - 1);
    }
    return NULL;
}

/* The slot of account, taking an empty one for it while the table is
 * under 3/4 full; NULL otherwise.  Called with c->lock held for
 * writing. */
static struct sq_slot *sq_cache_take(struct sq_cache *c, const char *account)
{
    struct sq_slot *slot = sq_cache_slot(c, account);

    if (slot == NULL || slot->id[0] != '\0')
        return slot;
    if (c->used >= SQ_CACHE_SLOTS / 4 * 3)
        return NULL;
    snprintf(slot->id, sizeof slot->id, "%s", account);
    c->used++;
    return slot;
}

bool state_sqlite_cache_known(struct sq_cache *c, const char *account)
{
    struct sq_slot *slot;
    bool hit;

    pthread_rwlock_rdlock(&c->lock);
    slot = sq_cache_slot(c, account);
    hit = slot != NULL && slot->known;
    pthread_rwlock_unlock(&c->lock);
    return hit;
}

void state_sqlite_cache_set_known(struct sq_cache *c, const char *account)
{
    struct sq_slot *slot;

    pthread_rwlock_wrlock(&c->lock);
    slot = sq_cache_take(c, account);
    if (slot != NULL)
        slot->known = true;
    pthread_rwlock_unlock(&c->lock);
}

uint64_t state_sqlite_lease_gen(struct sq_cache *c)
{
    return atomic_load(&c->page->gen);
}

void state_sqlite_lease_bump(struct sq_cache *c)
{
    atomic_fetch_add(&c->page->gen, 1);
}

void state_sqlite_cache_cover(struct sq_cache *c, const gc_account *ids,
                              size_t n, uint64_t gen)
{
    if (gen == 0 || n == 0)
        return;
    pthread_rwlock_wrlock(&c->lock);
    for (size_t i = 0; i < n; i++) {
        struct sq_slot *slot = sq_cache_take(c, ids[i]);

        if (slot != NULL)
            slot->cover_gen = gen;
    }
    pthread_rwlock_unlock(&c->lock);
}

bool state_sqlite_cache_covered(struct sq_cache *c, const char *const *ids,
                                size_t n)
{
    uint64_t gen = state_sqlite_lease_gen(c);
    bool covered = gen != 0;

    pthread_rwlock_rdlock(&c->lock);
    for (size_t i = 0; i < n && covered; i++) {
        struct sq_slot *slot = sq_cache_slot(c, ids[i]);

        covered = slot != NULL && slot->id[0] != '\0' &&
                  slot->cover_gen == gen;
    }
    pthread_rwlock_unlock(&c->lock);
    return covered;
}

/* Maps DIR/app.leasegen (creating it, its block allocated so that a
 * store through the mapping can never fault); 0 or -1 (logged). */
static int sq_lease_map(struct sq_cache *c, const char *dir)
{
    char *path = xasprintf("%s/%s", dir, SQ_LEASE_GEN_FILE);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    void *mem = MAP_FAILED;
    int err = 0;

    if (fd < 0)
        err = errno;
    else
        err = posix_fallocate(fd, 0, sizeof(struct sq_lease_page));
    if (err == 0) {
        mem = mmap(NULL, sizeof(struct sq_lease_page),
                   PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (mem == MAP_FAILED)
            err = errno;
    }
    if (err != 0)
        LOG_E("state cannot map the lease generation path=%s error=\"%s\"",
              path, strerror(err));
    else
        c->page = mem;
    if (fd >= 0)
        close(fd);
    free(path);
    return err == 0 ? 0 : -1;
}

static uint64_t sq_random_nonce(void)
{
    uint64_t n = 0;

    while (n == 0) {
        if (getrandom(&n, sizeof n, 0) != (ssize_t)sizeof n)
            n = (uint64_t)state_now_ms() ^ ((uint64_t)getpid() << 32);
    }
    return n;
}

/* Reads the nonce app.db holds for its lease generation file (0: none
 * yet).  Called inside a transaction. */
static int sq_db_nonce(sqlite3 *db, uint64_t *nonce)
{
    sqlite3_stmt *s = db_prepare(db, "SELECT value FROM meta"
                                     " WHERE name = 'leasegen_nonce'");
    enum state_status rc = state_sqlite_step_row(db, s, "open");

    *nonce = rc == STATE_OK ? (uint64_t)sqlite3_column_int64(s, 0) : 0;
    sqlite3_finalize(s);
    return rc == STATE_ERR ? -1 : 0;
}

/* Gives a new nonce to the file and to app.db, so that they belong
 * together.  Called inside a transaction. */
static int sq_lease_renew(struct sq_cache *c, sqlite3 *db)
{
    uint64_t nonce = sq_random_nonce();
    uint64_t zero = 0;
    sqlite3_stmt *s;
    int rc;

    s = db_prepare(db, "INSERT INTO meta(name, value)"
                       " VALUES('leasegen_nonce', ?1) ON CONFLICT(name)"
                       " DO UPDATE SET value = excluded.value");
    sqlite3_bind_int64(s, 1, (int64_t)nonce);
    rc = state_sqlite_step_done(db, s, "open");
    sqlite3_finalize(s);
    if (rc < 0)
        return -1;
    atomic_compare_exchange_strong(&c->page->gen, &zero, 1);
    atomic_store(&c->page->nonce, nonce);
    return 0;
}

/* Makes sure every process of this store uses this very file: app.db
 * keeps the nonce the file holds.  A file that does not match (removed
 * and made anew, or app.db restored) is only renewed when no other
 * process has the store open, since one of them could still be using
 * the old file; otherwise opening fails.  0 or -1 (logged). */
static int sq_lease_adopt(struct sq_cache *c, const char *dir, sqlite3 *db)
{
    uint64_t db_nonce = 0;
    bool alone = false;
    int rc = -1;

    if (db_begin(db) < 0)
        return -1;
    if (sq_db_nonce(db, &db_nonce) < 0)
        goto out;
    if (db_nonce != 0 && db_nonce == atomic_load(&c->page->nonce)) {
        rc = 0; /* the usual case: nothing to write */
        goto out;
    }
    if (db_nonce != 0) {
        alone = flock(c->dir_fd, LOCK_EX | LOCK_NB) == 0;
        if (!alone) {
            LOG_E("state %s/%s does not belong to app.db (removed or"
                  " restored?) while other dbxhook processes use %s:"
                  " stop them all, then start again",
                  dir, SQ_LEASE_GEN_FILE, dir);
            goto out;
        }
        LOG_W("state lease generation file renewed dir=%s", dir);
    }
    rc = sq_lease_renew(c, db);

out:
    if (rc == 0 && db_commit(db) < 0)
        rc = -1;
    if (rc < 0)
        db_rollback(db);
    if (alone)
        flock(c->dir_fd, LOCK_SH);
    return rc;
}

int state_sqlite_cache_open(struct sq_cache *c, const char *dir, sqlite3 *db)
{
    c->slots = xcalloc(SQ_CACHE_SLOTS, sizeof *c->slots);
    c->used = 0;
    c->page = NULL;
    pthread_rwlock_init(&c->lock, NULL);
    c->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c->dir_fd < 0 || flock(c->dir_fd, LOCK_SH) < 0) {
        LOG_E("state cannot lock dir=%s error=\"%s\"", dir, strerror(errno));
        goto fail;
    }
    if (sq_lease_map(c, dir) < 0 || sq_lease_adopt(c, dir, db) < 0)
        goto fail;
    return 0;

fail:
    state_sqlite_cache_close(c);
    return -1;
}

void state_sqlite_cache_close(struct sq_cache *c)
{
    if (c->slots == NULL)
        return;
    if (c->page != NULL)
        munmap(c->page, sizeof *c->page);
    if (c->dir_fd >= 0)
        close(c->dir_fd); /* releases the lock */
    free(c->slots);
    c->slots = NULL;
    pthread_rwlock_destroy(&c->lock);
}
