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
 * every process that opens the store.  A transaction that takes a lease
 * or drops a mark (claim, release) bumps it while it holds SQLite's
 * write lock, before it commits.  The committer reads it inside its own
 * write transaction, so as long as the counter keeps that value no claim
 * or release has begun since the mark: the account is still pending and
 * the run that will take it has not started (state_mark_covered).  Any
 * bump makes every cover_gen stale at once.
 */
#include "app/state_sqlite_impl.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The mapped file: one page, the counter at its start. */
#define SQ_LEASE_GEN_FILE "app.leasegen"
#define SQ_LEASE_GEN_SIZE 4096

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2,
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
    return c->lease_gen != NULL ? atomic_load(c->lease_gen) : 0;
}

void state_sqlite_lease_bump(struct sq_cache *c)
{
    if (c->lease_gen != NULL)
        atomic_fetch_add(c->lease_gen, 1);
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

/* Maps DIR/app.leasegen, creating it; the counter starts at 1 so that 0
 * can mean "none".  Without it nothing is ever covered, which is only
 * slower. */
static void sq_lease_gen_map(struct sq_cache *c, const char *dir)
{
    char *path = xasprintf("%s/%s", dir, SQ_LEASE_GEN_FILE);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct stat sb;
    void *mem = MAP_FAILED;
    uint64_t zero = 0;

    if (fd < 0 || fstat(fd, &sb) < 0 ||
        (sb.st_size < SQ_LEASE_GEN_SIZE &&
         ftruncate(fd, SQ_LEASE_GEN_SIZE) < 0)) {
        LOG_W("state lease generation unavailable path=%s error=\"%s\"", path,
              strerror(errno));
        goto out;
    }
    mem = mmap(NULL, SQ_LEASE_GEN_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
               fd, 0);
    if (mem == MAP_FAILED) {
        LOG_W("state lease generation unavailable path=%s error=\"%s\"", path,
              strerror(errno));
        goto out;
    }
    c->lease_gen = mem;
    atomic_compare_exchange_strong(c->lease_gen, &zero, 1);

out:
    if (fd >= 0)
        close(fd);
    free(path);
}

void state_sqlite_cache_open(struct sq_cache *c, const char *dir)
{
    c->slots = xcalloc(SQ_CACHE_SLOTS, sizeof *c->slots);
    c->used = 0;
    pthread_rwlock_init(&c->lock, NULL);
    sq_lease_gen_map(c, dir);
}

void state_sqlite_cache_close(struct sq_cache *c)
{
    if (c->slots == NULL)
        return;
    if (c->lease_gen != NULL)
        munmap((void *)c->lease_gen, SQ_LEASE_GEN_SIZE);
    free(c->slots);
    c->slots = NULL;
    pthread_rwlock_destroy(&c->lock);
}
