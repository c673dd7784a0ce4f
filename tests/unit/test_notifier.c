/*
 * Unit tests for the notifier: the body's exact bytes, the retry
 * schedule, verification against a loopback hsrv server, and a small
 * end-to-end run (mark pending -> wake -> signed POST, with retries).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cloud/notifier.h"
#include "cloud/schema.h"
#include "common/db.h"
#include "common/http_server.h"
#include "common/sig.h"
#include "common/util.h"

#define TEST_MAX_REQUESTS 16
#define TEST_WAIT_MS 5000

/* ---- retry schedule -------------------------------------------------- */

static void test_backoff_doubles(void **state)
{
    (void)state;
    assert_int_equal(notifier_backoff_ms(1000, 1, 0.0), 1000);
    assert_int_equal(notifier_backoff_ms(1000, 2, 0.0), 2000);
    assert_int_equal(notifier_backoff_ms(1000, 3, 0.0), 4000);
    assert_int_equal(notifier_backoff_ms(100, 5, 0.0), 1600);
    assert_int_equal(notifier_backoff_ms(1000, 1, 1.0), 1200);
    assert_int_equal(notifier_backoff_ms(1000, 1, -1.0), 800);
    assert_int_equal(notifier_backoff_ms(1000, 2, 0.5), 2200);
    /* Out-of-range jitter is clamped; huge attempt counts do not
     * overflow. */
    assert_int_equal(notifier_backoff_ms(1000, 1, 7.0), 1200);
    assert_true(notifier_backoff_ms(1000, 500, 0.0) > 0);
}

static void test_next_attempt_window(void **state)
{
    const int64_t created = 1000000, window = 600000;

    (void)state;
    assert_int_equal(notifier_next_attempt_at(created, created + 5, 1000, 0,
                                              window, 1, 0.0),
                     created + 1005);
    /* Capped at the end of the window... */
    assert_int_equal(notifier_next_attempt_at(created, created + 590000,
                                              1000, 0, window, 12, 0.0),
                     created + window);
    /* ...and given up once the window has passed. */
    assert_int_equal(notifier_next_attempt_at(created, created + window,
                                              1000, 0, window, 13, 0.0),
                     -1);
    assert_int_equal(notifier_next_attempt_at(created, created + window + 1,
                                              1000, 0, window, 1, 0.0),
                     -1);
}

/* The defaults of docs/CLI.md (base 1 s, cap 120 s, window 600 s), walked
 * attempt by attempt with zero answer time: about ten attempts that
 * spread over the whole ten minutes, each delay within the cap, whatever
 * the jitter. */
static void test_default_schedule_spans_ten_minutes(void **state)
{
    static const double jitters[] = {-1.0, 0.0, 1.0};
    const int64_t created = 5000000, base = 1000, cap = 120000;
    const int64_t window = 600000;

    (void)state;
    for (size_t j = 0; j < sizeof(jitters) / sizeof(jitters[0]); j++) {
        int64_t now = created, next;
        int attempts = 1; /* the first attempt, at created */

        while ((next = notifier_next_attempt_at(created, now, base, cap,
                                                window, attempts,
                                                jitters[j])) >= 0) {
            assert_true(next > now);
            assert_true(next - now <= cap);
            now = next;
            attempts++;
            assert_true(attempts < 40);
        }
        /* The last attempt is at the end of the window. */
        assert_int_equal(now, created + window);
        assert_in_range(attempts, 9, 14);
    }
}

/* The cap bounds one delay; the window still ends the retries. */
static void test_next_attempt_cap(void **state)
{
    const int64_t created = 1000000, window = 600000;

    (void)state;
    assert_int_equal(notifier_next_attempt_at(created, created + 100, 1000,
                                              5000, window, 8, 0.0),
                     created + 5100);
    assert_int_equal(notifier_next_attempt_at(created, created + 100, 1000,
                                              5000, window, 2, 0.0),
                     created + 2100);
    assert_int_equal(notifier_next_attempt_at(created, created + 598000,
                                              1000, 5000, window, 9, 0.0),
                     created + window);
}

static void test_uri_private(void **state)
{
    static const char *const refused[] = {
        "http://localhost:80/h", "http://LOCALHOST./h", "http://127.0.0.1/",
        "http://127.9.9.9:8/", "http://[::1]:9/", "http://10.1.2.3/",
        "http://172.16.0.1/", "http://172.31.255.255/",
        "http://192.168.1.1/", "http://169.254.169.254/latest",
        "http://[fc00::1]/", "http://[fd12::1]/", "http://[fe80::1]/",
        "http://[::ffff:10.0.0.1]/", "https://a.localhost/"};
    static const char *const allowed[] = {
        "http://172.32.0.1/", "http://172.15.0.1/", "https://example.com/",
        "http://8.8.8.8/", "http://[2001:db8::1]/", "http://192.169.0.1/"};
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        err[0] = '\0';
        if (!notifier_uri_is_private(refused[i], err, sizeof(err)))
            fail_msg("not refused: %s", refused[i]);
        assert_non_null(strstr(err, "loopback or private"));
    }
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        if (notifier_uri_is_private(allowed[i], err, sizeof(err)))
            fail_msg("refused: %s", allowed[i]);
}

/* ---- a scripted loopback webhook ------------------------------------- */

struct recorded {
    char *method;
    char *query; /* the challenge argument */
    char *body;
    char *signature;
    char *content_type;
    char *user_agent;
    unsigned expect_count;
};

struct receiver {
    struct hsrv *srv;
    pthread_mutex_t lock;
    struct recorded req[TEST_MAX_REQUESTS];
    size_t count;
    int statuses[TEST_MAX_REQUESTS]; /* POST answers in order; 0: 200 */
    int always; /* when set: every POST's answer */
};

static char *dup_or_null(const char *s)
{
    return s != NULL ? xstrdup(s) : NULL;
}

static void receiver_record(struct receiver *r,
                            const struct hsrv_request *req, size_t *index)
{
    size_t len = 0;
    const char *body = hsrv_body(req, &len);
    struct recorded *rec;

    pthread_mutex_lock(&r->lock);
    *index = r->count;
    if (r->count < TEST_MAX_REQUESTS) {
        rec = &r->req[r->count++];
        rec->method = xstrdup(hsrv_method(req));
        rec->query = dup_or_null(hsrv_query(req, "challenge"));
        rec->body = xstrndup(body != NULL ? body : "", len);
        rec->signature = dup_or_null(hsrv_header(req,
                                                 "X-Dropbox-Signature"));
        rec->content_type = dup_or_null(hsrv_header(req, "Content-Type"));
        rec->user_agent = dup_or_null(hsrv_header(req, "User-Agent"));
        rec->expect_count = hsrv_header_count(req, "Expect");
    }
    pthread_mutex_unlock(&r->lock);
}

/* Verification answers depend on the path; POSTs follow r->statuses. */
static void receiver_handle(void *ctx, const struct hsrv_request *req,
                            struct hsrv_response *resp)
{
    struct receiver *r = ctx;
    const char *path = hsrv_path(req);
    const char *ch = hsrv_query(req, "challenge");
    size_t i;
    char *text;

    receiver_record(r, req, &i);
    if (strcmp(hsrv_method(req), "POST") == 0) {
        int status = i < TEST_MAX_REQUESTS && r->statuses[i] != 0
                         ? r->statuses[i] : 200;

        if (r->always != 0)
            status = r->always;
        if (strcmp(path, "/slowpost") == 0)
            usleep(400 * 1000);
        hsrv_reply_str(resp, status, "text/plain", "ok");
        return;
    }
    if (ch == NULL)
        ch = "";
    if (strcmp(path, "/exact") == 0) {
        text = xstrdup(ch);
    } else if (strcmp(path, "/quoted") == 0) {
        text = xasprintf("\"%s\"", ch);
    } else if (strcmp(path, "/json") == 0) {
        text = xasprintf("{\"challenge\": \"%s\"}", ch);
    } else if (strcmp(path, "/slow") == 0) {
        usleep(1500 * 1000);
        text = xstrdup(ch);
    } else {
        hsrv_reply_str(resp, 404, "text/plain", "not found");
        return;
    }
    hsrv_reply_str(resp, 200, "text/plain", text);
    free(text);
}

static struct receiver *receiver_start(void)
{
    struct receiver *r = xcalloc(1, sizeof(*r));
    struct hsrv_config cfg = {
        .bind_addr = "127.0.0.1",
        .port = 0,
        .max_body = 1 << 20,
        .max_header = 16384,
        .max_conns = 32,
        .conn_timeout_s = 10,
        .handler = receiver_handle,
        .ctx = r,
    };

    pthread_mutex_init(&r->lock, NULL);
    r->srv = hsrv_start(&cfg);
    assert_non_null(r->srv);
    return r;
}

static void receiver_stop(struct receiver *r)
{
    hsrv_stop(r->srv);
    for (size_t i = 0; i < r->count; i++) {
        free(r->req[i].method);
        free(r->req[i].query);
        free(r->req[i].body);
        free(r->req[i].signature);
        free(r->req[i].content_type);
        free(r->req[i].user_agent);
    }
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static size_t receiver_count(struct receiver *r)
{
    size_t n;

    pthread_mutex_lock(&r->lock);
    n = r->count;
    pthread_mutex_unlock(&r->lock);
    return n;
}

static char *receiver_url(struct receiver *r, const char *path)
{
    return xasprintf("http://127.0.0.1:%u%s", hsrv_port(r->srv), path);
}

/* A notifier on a fresh database in a temp directory. */
struct fixture {
    char dir[64];
    char *db_path;
    struct notifier *n;
    sqlite3 *db;
    struct notifier_config cfg;
};

/* Creates the database; the caller may adjust f->cfg, seed the tables,
 * then call fixture_run. */
static void fixture_open(struct fixture *f)
{
    static int serial;
    char *schema = xasprintf("%s%s", CLOUD_SCHEMA_SHARED,
                             notifier_schema_sql);

    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_notifier.%ld.%d",
             (long)getpid(), serial++);
    assert_int_equal(mkdir(f->dir, 0700), 0);
    f->db_path = xasprintf("%s/cloud.db", f->dir);
    f->db = db_open(f->db_path, schema);
    free(schema);
    assert_non_null(f->db);
    f->cfg.db_path = f->db_path;
    f->cfg.verify_timeout_ms = 1000;
    f->cfg.deliver_timeout_ms = 2000;
    f->cfg.batch_ms = 20;
    f->cfg.retry_base_ms = 1000;
    f->cfg.retry_window_ms = 60000;
}

static void fixture_run(struct fixture *f)
{
    f->n = notifier_start(&f->cfg);
    assert_non_null(f->n);
}

static void fixture_start(struct fixture *f, int64_t verify_timeout_ms,
                          int64_t retry_base_ms)
{
    fixture_open(f);
    f->cfg.verify_timeout_ms = verify_timeout_ms;
    f->cfg.retry_base_ms = retry_base_ms;
    fixture_run(f);
}

static void fixture_stop(struct fixture *f)
{
    char *cmd = xasprintf("rm -rf '%s'", f->dir);

    notifier_stop(f->n);
    db_close(f->db);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(f->db_path);
}

/* ---- verification ---------------------------------------------------- */

static int verify_path(struct fixture *f, struct receiver *r,
                       const char *path, char *err, size_t size)
{
    char *url = receiver_url(r, path);
    int ret;

    err[0] = '\0';
    ret = notifier_verify(f->n, url, err, size);
    free(url);
    return ret;
}

static void test_verify(void **state)
{
    struct fixture f;
    struct receiver *r = receiver_start();
    char err[256];
    char *url;

    (void)state;
    fixture_start(&f, 500, 1000);
    assert_int_equal(verify_path(&f, r, "/exact", err, sizeof(err)), 0);
    assert_int_equal(strlen(r->req[0].query), 43);
    assert_int_equal(strspn(r->req[0].query, "abcdefghijklmnopqrstuvwxyz"
                            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"), 43);
    assert_string_equal(r->req[0].method, "GET");

    /* An existing query string gets "&challenge=". */
    assert_int_equal(verify_path(&f, r, "/exact?x=1", err, sizeof(err)),
                     0);

    assert_int_equal(verify_path(&f, r, "/quoted", err, sizeof(err)), -1);
    assert_string_equal(err, "body did not match the challenge");
    assert_int_equal(verify_path(&f, r, "/json", err, sizeof(err)), -1);
    assert_string_equal(err, "body did not match the challenge");
    assert_int_equal(verify_path(&f, r, "/missing", err, sizeof(err)), -1);
    assert_string_equal(err, "status 404");
    assert_int_equal(verify_path(&f, r, "/slow", err, sizeof(err)), -1);
    assert_string_equal(err, "timed out after 500 ms");

    url = receiver_url(r, "/exact");
    receiver_stop(r);
    assert_int_equal(notifier_verify(f.n, url, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "connection refused"));
    assert_int_equal(notifier_verify(f.n, "ftp://127.0.0.1/", err,
                                     sizeof(err)), -1);
    assert_non_null(strstr(err, "invalid URI"));
    free(url);
    fixture_stop(&f);
}

/* ---- end to end ------------------------------------------------------ */

static void seed(sqlite3 *db, const char *uri)
{
    char *sql = xasprintf(
        "INSERT INTO accounts VALUES (1, 'dbid:A', 1001, 'a@x', 'A', 0);"
        "INSERT INTO accounts VALUES (2, 'dbid:B', 1002, 'b@x', 'B', 0);"
        "INSERT INTO accounts VALUES (3, 'dbid:C', 1003, 'c@x', 'C', 0);"
        "INSERT INTO apps VALUES (1, 'key1', 'secret1', 'one', '%s',"
        " 'verified', NULL, 0);"
        "INSERT INTO apps VALUES (2, 'key2', 'secret2', 'two', '%s',"
        " 'none', NULL, 0);"
        "INSERT INTO links VALUES (1, 1, 1,"
        " 'account_info.read files.metadata.read', 0);"
        "INSERT INTO links VALUES (2, 1, 2, 'files.metadata.read', 0);"
        "INSERT INTO links VALUES (3, 1, 3, 'files.metadata.readx', 0);"
        "INSERT INTO links VALUES (4, 2, 1, 'files.metadata.read', 0);",
        uri, uri);

    assert_int_equal(db_exec(db, sql), 0);
    free(sql);
}

static void mark(struct fixture *f, const int64_t *accounts, size_t n)
{
    assert_int_equal(db_begin(f->db), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(notifier_mark_pending_tx(f->db, accounts[i]), 0);
    assert_int_equal(db_commit(f->db), 0);
    notifier_wake(f->n);
}

static void wait_requests(struct receiver *r, size_t want)
{
    for (int i = 0; i < TEST_WAIT_MS / 10 && receiver_count(r) < want; i++)
        usleep(10 * 1000);
    /* A little longer, so that extra requests would show. */
    usleep(200 * 1000);
    assert_int_equal(receiver_count(r), want);
}

static int64_t query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = db_prepare(db, sql);
    int64_t v = -1;

    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void test_deliver_batch(void **state)
{
    struct fixture f;
    struct receiver *r = receiver_start();
    char *url = receiver_url(r, "/hook");
    const int64_t accounts[] = {2, 1, 3};
    const char *want = "{\"list_folder\": {\"accounts\": [\"dbid:A\","
                       " \"dbid:B\"]}, \"delta\": {\"users\": [1001, 1002]}}";
    char sig[SIG_HEX_LEN + 1];
    int64_t delivered = 0, attempts = 0, failed = 0;

    (void)state;
    fixture_start(&f, 1000, 1000);
    seed(f.db, url);
    mark(&f, accounts, 3);
    wait_requests(r, 1);

    sig_sign("secret1", want, strlen(want), sig);
    assert_string_equal(r->req[0].method, "POST");
    assert_string_equal(r->req[0].body, want);
    assert_string_equal(r->req[0].signature, sig);
    assert_string_equal(r->req[0].content_type, "application/json");
    assert_string_equal(r->req[0].user_agent, "DropboxWebhooks/1.0");
    assert_int_equal(r->req[0].expect_count, 0);

    for (int i = 0; i < 100 && delivered == 0; i++) {
        usleep(10 * 1000);
        assert_int_equal(notifier_stats(f.n, &delivered, &attempts,
                                        &failed), 0);
    }
    assert_int_equal(delivered, 1);
    assert_int_equal(attempts, 1);
    assert_int_equal(failed, 0);
    assert_int_equal(query_int(f.db, "SELECT count(*) FROM webhook_pending"),
                     0);
    fixture_stop(&f);
    receiver_stop(r);
    free(url);
}

static void test_deliver_retries(void **state)
{
    struct fixture f;
    struct receiver *r = receiver_start();
    char *url = receiver_url(r, "/hook");
    const int64_t account = 2;

    (void)state;
    r->statuses[0] = 500;
    r->statuses[1] = 500;
    fixture_start(&f, 1000, 50);
    seed(f.db, url);
    mark(&f, &account, 1);
    wait_requests(r, 3);

    for (size_t i = 1; i < 3; i++) {
        assert_string_equal(r->req[i].body, r->req[0].body);
        assert_string_equal(r->req[i].signature, r->req[0].signature);
    }
    for (int i = 0; i < 100; i++) {
        if (query_int(f.db, "SELECT count(*) FROM notifications"
                            " WHERE state = 'delivered'") == 1)
            break;
        usleep(10 * 1000);
    }
    assert_int_equal(query_int(f.db, "SELECT attempts FROM notifications"),
                     3);
    assert_int_equal(query_int(f.db, "SELECT count(*) FROM attempts"
                                     " WHERE status = 500"), 2);
    assert_int_equal(query_int(f.db, "SELECT count(*) FROM attempts"
                                     " WHERE status = 200"), 1);
    fixture_stop(&f);
    receiver_stop(r);
    free(url);
}

static void wait_state(sqlite3 *db, const char *sql, int64_t want)
{
    for (int i = 0; i < TEST_WAIT_MS / 10; i++) {
        if (query_int(db, sql) == want)
            return;
        usleep(10 * 1000);
    }
    assert_int_equal(query_int(db, sql), want);
}

/* A webhook that always fails: retried until the window ends, then the
 * notification is 'failed'; every attempt is recorded. */
static void test_deliver_gives_up(void **state)
{
    struct fixture f;
    struct receiver *r = receiver_start();
    char *url = receiver_url(r, "/hook");
    const int64_t account = 1;
    int64_t delivered, attempts, failed;

    (void)state;
    for (size_t i = 0; i < TEST_MAX_REQUESTS; i++)
        r->statuses[i] = 503;
    fixture_open(&f);
    f.cfg.retry_base_ms = 50;
    f.cfg.retry_window_ms = 400;
    fixture_run(&f);
    seed(f.db, url);
    mark(&f, &account, 1);
    wait_state(f.db, "SELECT count(*) FROM notifications"
                     " WHERE state = 'failed'", 1);

    assert_int_equal(notifier_stats(f.n, &delivered, &attempts, &failed),
                     0);
    assert_int_equal(delivered, 0);
    assert_int_equal(failed, 1);
    /* 0, ~50, ~150, ~350, then the capped last try at 400 ms. */
    assert_true(attempts >= 4 && attempts <= 6);
    assert_int_equal(attempts, (int64_t)receiver_count(r));
    assert_int_equal(query_int(f.db, "SELECT count(*) FROM attempts"
                                     " WHERE status = 503"
                                     " AND error = 'status 503'"),
                     attempts);
    fixture_stop(&f);
    receiver_stop(r);
    free(url);
}

/* What a crash leaves behind is picked up at start: a pending pair and a
 * notification still 'pending' (sent with its stored bytes). */
static void test_resume_after_restart(void **state)
{
    struct fixture f;
    struct receiver *r = receiver_start();
    char *url = receiver_url(r, "/hook");
    size_t stored = 0;

    (void)state;
    fixture_open(&f);
    seed(f.db, url);
    assert_int_equal(db_exec(f.db,
        "INSERT INTO webhook_pending VALUES (1, 2);"
        "INSERT INTO notifications(app_id, body, signature, state,"
        " attempts, next_attempt_at, created_at)"
        " VALUES (1, 'stored body', 'stored sig', 'pending', 1,"
        " 0, strftime('%s', 'now') * 1000);"), 0);
    fixture_run(&f);
    wait_requests(r, 2);

    for (size_t i = 0; i < 2; i++) {
        if (strcmp(r->req[i].body, "stored body") == 0) {
            assert_string_equal(r->req[i].signature, "stored sig");
            stored++;
        } else {
            assert_non_null(strstr(r->req[i].body, "\"dbid:B\""));
        }
    }
    assert_int_equal(stored, 1);
    wait_state(f.db, "SELECT count(*) FROM notifications"
                     " WHERE state = 'delivered'", 2);
    fixture_stop(&f);
    receiver_stop(r);
    free(url);
}

/* One slow webhook with more due notifications than the notifier reads
 * at once must not hold up another app's: the second app's POST arrives
 * while the first is still working through its backlog. */
static void test_backlog_does_not_starve_others(void **state)
{
    struct fixture f;
    struct receiver *slow = receiver_start(), *fast = receiver_start();
    char *slow_url = receiver_url(slow, "/slowpost");
    char *fast_url = receiver_url(fast, "/hook");
    char *sql = xasprintf(
        "INSERT INTO apps VALUES (1, 'key1', 'secret1', 'slow', '%s',"
        " 'verified', NULL, 0);"
        "INSERT INTO apps VALUES (2, 'key2', 'secret2', 'fast', '%s',"
        " 'verified', NULL, 0);"
        "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k"
        "                        WHERE i < 600)"
        " INSERT INTO notifications(app_id, body, signature, state,"
        " attempts, next_attempt_at, created_at)"
        " SELECT 1, 'slow ' || i, 'sig', 'pending', 0, 0,"
        " strftime('%%s', 'now') * 1000 FROM k;"
        "INSERT INTO notifications(app_id, body, signature, state,"
        " attempts, next_attempt_at, created_at)"
        " VALUES (2, 'fast', 'sig', 'pending', 0, 1,"
        " strftime('%%s', 'now') * 1000);",
        slow_url, fast_url);

    (void)state;
    fixture_open(&f);
    f.cfg.inflight_per_webhook = 1;
    assert_int_equal(db_exec(f.db, sql), 0);
    fixture_run(&f);
    wait_requests(fast, 1);
    assert_string_equal(fast->req[0].body, "fast");
    /* The slow webhook answers one POST per 400 ms, one at a time. */
    assert_true(receiver_count(slow) < 100);
    fixture_stop(&f);
    receiver_stop(slow);
    receiver_stop(fast);
    free(sql);
    free(slow_url);
    free(fast_url);
}

/* An account waiting in a backing-off notification absorbs a new
 * change: no second notification, and the retry covers it. */
static void test_coalesce_absorbs(void **state)
{
    struct fixture f;
    struct receiver *r = receiver_start();
    char *url = receiver_url(r, "/hook");
    const int64_t account = 1;

    (void)state;
    r->statuses[0] = 500;
    fixture_start(&f, 1000, 800);
    seed(f.db, url);
    mark(&f, &account, 1);
    wait_requests(r, 1);
    mark(&f, &account, 1);
    wait_state(f.db, "SELECT count(*) FROM webhook_pending", 0);
    assert_int_equal(query_int(f.db, "SELECT count(*) FROM notifications"),
                     1);
    wait_requests(r, 2);
    assert_string_equal(r->req[1].body, r->req[0].body);
    assert_int_equal(query_int(f.db, "SELECT count(*) FROM notifications"),
                     1);
    fixture_stop(&f);
    receiver_stop(r);
    free(url);
}

/* A change while the account's notification is in flight makes it
 * pending again: a second notification follows. */
static void test_change_in_flight_goes_pending(void **state)
{
    struct fixture f;
    struct receiver *r = receiver_start();
    char *url = receiver_url(r, "/slowpost");
    const int64_t account = 1;

    (void)state;
    fixture_start(&f, 1000, 1000);
    seed(f.db, url);
    mark(&f, &account, 1);
    for (int i = 0; i < TEST_WAIT_MS / 10 && receiver_count(r) < 1; i++)
        usleep(10 * 1000);
    mark(&f, &account, 1); /* the first POST is still being answered */
    wait_requests(r, 2);
    assert_string_equal(r->req[1].body, r->req[0].body);
    wait_state(f.db, "SELECT count(*) FROM notifications"
                     " WHERE state = 'delivered'", 2);
    fixture_stop(&f);
    receiver_stop(r);
    free(url);
}

/* A disabled webhook receives nothing but keeps collecting; enabling it
 * folds the waiting notification and the pending pairs into one. */
static void test_enable_folds_everything(void **state)
{
    struct fixture f;
    struct receiver *r = receiver_start();
    char *url = receiver_url(r, "/hook");
    const int64_t account = 2;
    const char *want = "{\"list_folder\": {\"accounts\": [\"dbid:A\","
                       " \"dbid:B\"]}, \"delta\": {\"users\": [1001, 1002]}}";

    (void)state;
    fixture_open(&f);
    seed(f.db, url);
    assert_int_equal(db_exec(f.db,
        "UPDATE apps SET webhook_state = 'disabled' WHERE id = 1;"
        "INSERT INTO notifications(id, app_id, body, signature, state,"
        " attempts, next_attempt_at, created_at)"
        " VALUES (7, 1, 'old', 'old', 'pending', 3, 0, 0);"
        "INSERT INTO notification_accounts VALUES (7, 1);"), 0);
    fixture_run(&f);
    mark(&f, &account, 1);
    usleep(300 * 1000);
    assert_int_equal(receiver_count(r), 0);
    assert_int_equal(query_int(f.db, "SELECT count(*) FROM webhook_pending"),
                     1);

    assert_int_equal(db_begin(f.db), 0);
    assert_int_equal(notifier_enable_tx(f.db, 1, 0), 0);
    assert_int_equal(db_commit(f.db), 0);
    notifier_wake(f.n);
    wait_requests(r, 1);
    assert_string_equal(r->req[0].body, want);
    assert_int_equal(query_int(f.db, "SELECT count(*) FROM notifications"
                                     " WHERE id = 7 AND state = 'merged'"),
                     1);
    fixture_stop(&f);
    receiver_stop(r);
    free(url);
}

/* A webhook failing every attempt is disabled once it passes 35
 * failures; the alert is recorded and the alert command runs. */
static void test_disable_on_health(void **state)
{
    struct fixture f;
    struct receiver *r = receiver_start();
    char *url = receiver_url(r, "/hook");
    const int64_t account = 1;
    char *alert_file, *cmd, *text = NULL;

    (void)state;
    r->always = 500;
    fixture_open(&f);
    alert_file = xasprintf("%s/alert.txt", f.dir);
    cmd = xasprintf("echo \"$DBXHOOK_APP_KEY $DBXHOOK_FAILURES"
                    " $DBXHOOK_ATTEMPTS\" > %s", alert_file);
    f.cfg.retry_base_ms = 2;
    f.cfg.retry_cap_ms = 2;
    f.cfg.retry_window_ms = 20000;
    f.cfg.alert_command = cmd;
    fixture_run(&f);
    seed(f.db, url);
    mark(&f, &account, 1);
    wait_state(f.db, "SELECT count(*) FROM apps WHERE id = 1"
                     " AND webhook_state = 'disabled'", 1);
    assert_int_equal(query_int(f.db, "SELECT count(*) FROM attempts"), 36);
    assert_int_equal(query_int(f.db, "SELECT failures FROM alerts"
                                     " WHERE kind = 'webhook_disabled'"),
                     36);
    for (int i = 0; i < TEST_WAIT_MS / 10 && text == NULL; i++) {
        usleep(10 * 1000);
        text = file_read_all(alert_file, 1024, NULL);
        if (text != NULL && strchr(text, '\n') == NULL) {
            free(text);
            text = NULL;
        }
    }
    assert_non_null(text);
    assert_string_equal(text, "key1 36 36\n");
    /* No more attempts once disabled. */
    usleep(100 * 1000);
    assert_int_equal(query_int(f.db, "SELECT count(*) FROM attempts"), 36);
    free(text);
    fixture_stop(&f);
    receiver_stop(r);
    free(url);
    free(cmd);
    free(alert_file);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_doubles),
        cmocka_unit_test(test_next_attempt_window),
        cmocka_unit_test(test_next_attempt_cap),
        cmocka_unit_test(test_default_schedule_spans_ten_minutes),
        cmocka_unit_test(test_uri_private),
        cmocka_unit_test(test_backlog_does_not_starve_others),
        cmocka_unit_test(test_coalesce_absorbs),
        cmocka_unit_test(test_change_in_flight_goes_pending),
        cmocka_unit_test(test_enable_folds_everything),
        cmocka_unit_test(test_disable_on_health),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_deliver_batch),
        cmocka_unit_test(test_deliver_retries),
        cmocka_unit_test(test_deliver_gives_up),
        cmocka_unit_test(test_resume_after_restart),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
