/*
 * longpoll: files/list_folder/longpoll, served on the notify host
 * without an Authorization header: the cursor says whose folder it is.
 *
 * The call waits on the store's `changed` condition (with the store
 * lock, which the wait releases) until the journal holds a change under
 * the cursor's folder after its position, or the timeout passes.  It
 * answers {"changes": true|false}, with "backoff": N when the cloud
 * was started with --longpoll-backoff-s N (the real service asks for
 * one when it is busy), so that clients' handling of it can be tested.
 */
#include "cloud/files_api.h"

#include "cloud/cursor.h"
#include "cloud/journal.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <time.h>

#define LONGPOLL_TIMEOUT_DEFAULT 30
#define LONGPOLL_TIMEOUT_MAX 480

static const struct api_field longpoll_fields[] = {
    {"cursor", ARG_STRING, true},
    {"timeout", ARG_UINT, false},
};

/* Waits (lock held) until a change or the deadline.  Returns true when
 * there are changes. */
static bool longpoll_wait(struct store *s, const struct cursor *cur,
                          json_int_t timeout_s)
{
    struct timespec deadline;
    bool changes = cur->listing;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)timeout_s;
    while (!changes && !s->stopping) {
        changes = journal_has_changes(s, cur->account, cur->prefix,
                                      cur->recursive, cur->seq);
        if (changes ||
            pthread_cond_timedwait(&s->changed, &s->lock, &deadline) ==
                ETIMEDOUT)
            break;
    }
    if (!changes)
        changes = journal_has_changes(s, cur->account, cur->prefix,
                                      cur->recursive, cur->seq);
    return changes;
}

/* Decodes the cursor; answers 400 and returns -1 when it is bad. */
static int longpoll_cursor(struct api_call *c, struct cursor *cur)
{
    const char *why = NULL;

    if (cursor_decode(api_arg_str(c, "cursor"), c->store->cursor_key, cur,
                      &why) == 0 && cur->limit != 0)
        return 0;
    api_bad_input(c, "Invalid \"cursor\" parameter: %s",
                  why ? why : "malformed");
    return -1;
}

void files_list_folder_longpoll(struct api_call *c)
{
    struct store *s = c->store;
    struct cursor cur;
    json_int_t timeout;
    json_t *result;
    bool changes = false, reset;

    if (api_arg_check(c, longpoll_fields, ARRAY_LEN(longpoll_fields)) < 0)
        return;
    timeout = api_arg_int(c, "timeout", LONGPOLL_TIMEOUT_DEFAULT);
    if (timeout < s->longpoll_min_s || timeout > LONGPOLL_TIMEOUT_MAX) {
        api_bad_input(c, "%s: timeout: %lld is not within range [%lld, %d]",
                      c->arg_from, (long long)timeout,
                      (long long)s->longpoll_min_s, LONGPOLL_TIMEOUT_MAX);
        return;
    }
    if (longpoll_cursor(c, &cur) < 0)
        return;

    store_lock(s);
    journal_compact(s);
    reset = cur.seq < journal_account_floor(s, cur.account) ||
            cur.seq > store_journal_head(s);
    if (!reset)
        changes = longpoll_wait(s, &cur, timeout);
    store_unlock(s);
    if (reset) {
        api_route_error(c, api_tag("reset", NULL));
    } else {
        result = json_object();
        json_object_set_new(result, "changes", json_boolean(changes));
        if (s->longpoll_backoff_s > 0)
            json_object_set_new(result, "backoff",
                                json_integer(s->longpoll_backoff_s));
        api_reply_json(c, result);
    }
    LOG_D("longpoll account=%lld changes=%d", (long long)cur.account,
          changes);
    cursor_clear(&cur);
}
