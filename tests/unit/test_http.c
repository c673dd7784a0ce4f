/*
 * Unit tests for http_server and http_client together, on loopback:
 * an hsrv on 127.0.0.1 with an ephemeral port, driven by an hcli (and,
 * for what hcli cannot send, by a raw socket), first over HTTP and then
 * over TLS with a CA made by tlsgen in a temporary directory; each in the
 * blocking mode and again in the async mode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/http_client.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/tlsgen.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define TEST_MAX_BODY      4096
#define TEST_MAX_HEADER    2048
#define TEST_RAW_REPLY_MAX 4096

struct fixture {
    struct hsrv *srv;
    struct hcli *cli;
    char base[64];
    char tmpdir[64];
    atomic_int calls;
    atomic_int blocked;  /* a /block handler is waiting */
    atomic_int released; /* ... and may return */
};

/* The mode the next fixture starts in (set by the group's setup). */
static bool g_async;

/* Answers a /later request from its own thread once released. */
struct later_job {
    struct fixture *f;
    struct hsrv_later *later;
};

static void *later_answer(void *arg)
{
    struct later_job *job = arg;
    struct hsrv_response resp = {0};

    for (int i = 0; i < 500 && !atomic_load(&job->f->released); i++)
        usleep(10000);
    hsrv_reply_str(&resp, 200, "text/plain",
                   atomic_load(&job->f->released) ? "later" : "timeout");
    hsrv_answer(job->later, &resp);
    free(job);
    return NULL;
}

static void handle_later(struct fixture *f, const struct hsrv_request *req,
                         struct hsrv_response *resp)
{
    struct later_job *job = xcalloc(1, sizeof *job);
    pthread_t t;

    job->f = f;
    job->later = hsrv_later(req);
    assert_non_null(job->later);
    assert_null(hsrv_later(req)); /* one promise per request */
    /* Ignored once promised. */
    hsrv_reply_str(resp, 500, "text/plain", "ignored");
    atomic_store(&f->blocked, 1);
    assert_int_equal(pthread_create(&t, NULL, later_answer, job), 0);
    pthread_detach(t);
}

/* ---- the handler ---------------------------------------------------- */

static void handle_echo(const struct hsrv_request *req,
                        struct hsrv_response *resp)
{
    const char *status = hsrv_query(req, "status");
    const char *type = hsrv_header(req, "X-Want-Type");
    size_t len;
    const char *body = hsrv_body(req, &len);

    hsrv_reply(resp, status ? atoi(status) : 200, type, body, len);
    hsrv_add_header(resp, "Dropbox-API-Result", "{\"name\": \"a.md\"}");
    hsrv_add_header(resp, "Retry-After", "7");
}

static void handler(void *ctx, const struct hsrv_request *req,
                    struct hsrv_response *resp)
{
    struct fixture *f = ctx;
    const char *path = hsrv_path(req);

    atomic_fetch_add(&f->calls, 1);
    if (strcmp(path, "/echo") == 0) {
        handle_echo(req, resp);
    } else if (strcmp(path, "/query") == 0) {
        const char *v = hsrv_query(req, "name");

        hsrv_reply_str(resp, 200, "text/plain", v ? v : "(none)");
    } else if (strcmp(path, "/block") == 0) {
        atomic_store(&f->blocked, 1);
        for (int i = 0; i < 500 && !atomic_load(&f->released); i++)
            usleep(10000);
        hsrv_reply_str(resp, 200, "text/plain",
                       atomic_load(&f->released) ? "released" : "timeout");
    } else if (strcmp(path, "/later") == 0) {
        handle_later(f, req, resp);
    } else if (strcmp(path, "/count") == 0) {
        char *text = xasprintf("%u %s %s", hsrv_header_count(req, "X-Rep"),
                               hsrv_method(req), hsrv_peer(req));

        hsrv_reply_str(resp, 200, "text/plain", text);
        free(text);
    } else if (strcmp(path, "/big") == 0) {
        char *big = xmalloc(TEST_MAX_BODY * 4);

        memset(big, 'b', TEST_MAX_BODY * 4);
        hsrv_reply(resp, 200, "application/octet-stream", big,
                   TEST_MAX_BODY * 4);
        free(big);
    } else {
        hsrv_reply_str(resp, 404, "text/plain", "not found");
    }
}

/* ---- fixtures ------------------------------------------------------- */

static struct fixture *fixture_start(const char *cert, const char *key,
                                     const char *ca_file)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    struct hsrv_config cfg = {
        .bind_addr = "127.0.0.1",
        .port = 0,
        .max_body = TEST_MAX_BODY,
        .max_header = TEST_MAX_HEADER,
        .max_conns = 8,
        .conn_timeout_s = 10,
        .tls_cert_pem = cert,
        .tls_key_pem = key,
        .handler = handler,
        .ctx = f,
        .async = g_async,
    };

    f->srv = hsrv_start(&cfg);
    assert_non_null(f->srv);
    assert_int_not_equal(hsrv_port(f->srv), 0);
    snprintf(f->base, sizeof f->base, "%s://%s:%u", cert ? "https" : "http",
             cert ? "localhost" : "127.0.0.1", (unsigned)hsrv_port(f->srv));
    f->cli = hcli_new(ca_file, TEST_MAX_BODY * 2);
    assert_non_null(f->cli);
    return f;
}

static void fixture_stop(struct fixture *f)
{
    hcli_free(f->cli);
    hsrv_stop(f->srv);
    free(f);
}

static int setup_plain(void **state)
{
    log_init("test_http", LOG_WARN);
    *state = fixture_start(NULL, NULL, NULL);
    return 0;
}

static int setup_async(void **state)
{
    g_async = true;
    return setup_plain(state);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char path[128];

    if (f->tmpdir[0] != '\0') {
        static const char *const names[] = {"ca.pem", "ca.key", "server.pem",
                                            "server.key"};

        for (size_t i = 0; i < ARRAY_LEN(names); i++) {
            snprintf(path, sizeof path, "%s/%s", f->tmpdir, names[i]);
            unlink(path);
        }
        rmdir(f->tmpdir);
    }
    fixture_stop(f);
    return 0;
}

/* ---- helpers -------------------------------------------------------- */

static int request(struct fixture *f, const char *method, const char *path,
                   const char *const *headers, const void *body,
                   size_t body_len, struct hcli_response *resp)
{
    char url[256];
    struct hcli_request req = {
        .method = method,
        .url = url,
        .headers = headers,
        .body = body,
        .body_len = body_len,
        .timeout_ms = 10000,
    };

    snprintf(url, sizeof url, "%s%s", f->base, path);
    return hcli_perform(f->cli, &req, resp);
}

/* Sends raw bytes to the fixture's plain-HTTP port and returns the
 * status code of the reply, or -1. */
static int raw_status(struct fixture *f, const char *data, size_t len)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    struct timeval tv = {.tv_sec = 10};
    char reply[TEST_RAW_REPLY_MAX];
    ssize_t n;
    int fd, status = -1;

    sa.sin_port = htons(hsrv_port(f->srv));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    /* The server may answer and close before it has read everything. */
    n = send(fd, data, len, MSG_NOSIGNAL);
    (void)n;
    n = recv(fd, reply, sizeof reply - 1, 0);
    if (n > 12) {
        reply[n] = '\0';
        if (sscanf(reply, "HTTP/1.1 %d", &status) != 1)
            status = -1;
    }
    close(fd);
    return status;
}

/* ---- plain HTTP ----------------------------------------------------- */

static void test_round_trip(void **state)
{
    struct fixture *f = *state;
    static const char body[] = "binary\0body\r\n";
    const char *const headers[] = {"X-Want-Type: application/vnd.test", NULL};
    struct hcli_response resp;

    assert_int_equal(request(f, "POST", "/echo?status=201", headers, body,
                             sizeof body - 1, &resp),
                     0);
    assert_int_equal(resp.status, 201);
    assert_int_equal(resp.body_len, sizeof body - 1);
    assert_memory_equal(resp.body, body, sizeof body - 1);
    assert_string_equal(resp.content_type, "application/vnd.test");
    assert_string_equal(resp.api_result, "{\"name\": \"a.md\"}");
    assert_string_equal(resp.retry_after, "7");
    hcli_response_free(&resp);
}

static void test_no_content_type(void **state)
{
    struct fixture *f = *state;
    struct hcli_response resp;

    assert_int_equal(request(f, "GET", "/echo", NULL, NULL, 0, &resp), 0);
    assert_int_equal(resp.status, 200);
    assert_null(resp.content_type);
    assert_int_equal(resp.body_len, 0);
    assert_string_equal(resp.body, "");
    hcli_response_free(&resp);

    assert_int_equal(request(f, "GET", "/nowhere", NULL, NULL, 0, &resp), 0);
    assert_int_equal(resp.status, 404);
    assert_string_equal(resp.content_type, "text/plain");
    hcli_response_free(&resp);
}

static void test_query_decoding(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *path, *value;
    } cases[] = {
        {"/query?name=a%20b%2Fc%C3%A9", "a b/c\xc3\xa9"},
        {"/query?x=1&name=plain&y=2", "plain"},
        {"/query?name=", ""},
        {"/query", "(none)"},
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct hcli_response resp;

        assert_int_equal(request(f, "GET", cases[i].path, NULL, NULL, 0, &resp),
                         0);
        assert_int_equal(resp.status, 200);
        assert_string_equal(resp.body, cases[i].value);
        hcli_response_free(&resp);
    }
}

static void test_header_count(void **state)
{
    struct fixture *f = *state;
    const char *const headers[] = {"X-Rep: 1", "X-Other: 0", "x-rep: 2",
                                   "X-REP: 3", NULL};
    struct hcli_response resp;

    assert_int_equal(request(f, "POST", "/count", headers, "x", 1, &resp), 0);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body, "3 POST 127.0.0.1");
    hcli_response_free(&resp);

    assert_int_equal(request(f, "GET", "/count", NULL, NULL, 0, &resp), 0);
    assert_string_equal(resp.body, "0 GET 127.0.0.1");
    hcli_response_free(&resp);
}

static void test_body_limit(void **state)
{
    struct fixture *f = *state;
    char *body = xmalloc(TEST_MAX_BODY + 1);
    struct hcli_response resp;
    int before;

    memset(body, 'x', TEST_MAX_BODY + 1);
    assert_int_equal(
        request(f, "POST", "/echo", NULL, body, TEST_MAX_BODY, &resp), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body_len, TEST_MAX_BODY);
    hcli_response_free(&resp);

    before = atomic_load(&f->calls);
    assert_int_equal(
        request(f, "POST", "/echo", NULL, body, TEST_MAX_BODY + 1, &resp), 0);
    assert_int_equal(resp.status, 413);
    assert_int_equal(atomic_load(&f->calls), before);
    hcli_response_free(&resp);
    free(body);
}

static void test_chunked_body_limit(void **state)
{
    struct fixture *f = *state;
    struct buf raw;
    int before = atomic_load(&f->calls);

    /* No Content-Length: the limit can only trip while reading. */
    buf_init(&raw, 0);
    buf_appendf(&raw, "POST /echo HTTP/1.1\r\nHost: x\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 5; i++) {
        buf_appendf(&raw, "400\r\n");
        for (int j = 0; j < 1024; j++)
            buf_append(&raw, "c", 1);
        buf_appendf(&raw, "\r\n");
    }
    buf_appendf(&raw, "0\r\n\r\n");
    assert_int_equal(raw_status(f, raw.data, raw.len), 413);
    assert_int_equal(atomic_load(&f->calls), before);
    buf_free(&raw);
}

static void test_header_limit(void **state)
{
    struct fixture *f = *state;
    struct buf raw;
    int before = atomic_load(&f->calls);

    /* Just above max_header: our own check answers. */
    buf_init(&raw, 0);
    buf_appendf(&raw, "GET /echo HTTP/1.1\r\nHost: x\r\nX-Pad: ");
    for (int i = 0; i < TEST_MAX_HEADER; i++)
        buf_append(&raw, "p", 1);
    buf_appendf(&raw, "\r\n\r\n");
    assert_int_equal(raw_status(f, raw.data, raw.len), 431);
    buf_free(&raw);

    /* Far above it: MHD's memory pool overflows and MHD answers. */
    buf_init(&raw, 0);
    buf_appendf(&raw, "GET /echo HTTP/1.1\r\nHost: x\r\nX-Pad: ");
    for (int i = 0; i < 64 * 1024; i++)
        buf_append(&raw, "p", 1);
    buf_appendf(&raw, "\r\n\r\n");
    assert_int_equal(raw_status(f, raw.data, raw.len), 431);
    buf_free(&raw);
    assert_int_equal(atomic_load(&f->calls), before);
}

static void test_client_body_limit(void **state)
{
    struct fixture *f = *state;
    struct hcli_response resp;

    assert_int_equal(request(f, "GET", "/big", NULL, NULL, 0, &resp), -1);
    assert_int_equal(resp.status, 0);
    assert_non_null(strstr(resp.error, "larger than"));
    hcli_response_free(&resp);

    /* The handle stays usable after an aborted transfer. */
    assert_int_equal(request(f, "GET", "/query?name=ok", NULL, NULL, 0, &resp),
                     0);
    assert_string_equal(resp.body, "ok");
    hcli_response_free(&resp);
}

static void test_connect_refused(void **state)
{
    struct fixture *f = *state;
    struct hcli_request req = {
        .method = "GET", .url = "http://127.0.0.1:1/", .timeout_ms = 2000};
    struct hcli_response resp;

    assert_int_equal(hcli_perform(f->cli, &req, &resp), -1);
    assert_int_equal(resp.status, 0);
    assert_true(resp.error[0] != '\0');
    hcli_response_free(&resp);
}

static void test_start_failures(void **state)
{
    struct fixture *f = *state;
    struct hsrv_config cfg = {.bind_addr = "127.0.0.1",
                              .port = hsrv_port(f->srv),
                              .handler = handler,
                              .ctx = f};

    assert_null(hsrv_start(&cfg)); /* port taken */
    cfg.port = 0;
    cfg.bind_addr = "localhost"; /* addresses only, no names */
    assert_null(hsrv_start(&cfg));
    cfg.bind_addr = "127.0.0.1";
    cfg.tls_cert_pem = "not a certificate";
    assert_null(hsrv_start(&cfg)); /* no key */
    cfg.tls_key_pem = "not a key";
    assert_null(hsrv_start(&cfg));
    hsrv_stop(NULL);
}

struct blocker {
    struct fixture *f;
    const char *path;
    struct hcli_response resp;
    int rc;
};

static void *blocker_run(void *arg)
{
    struct blocker *b = arg;
    struct hcli *cli = hcli_new(NULL, 0);
    char url[128];
    struct hcli_request req = {
        .method = "GET", .url = url, .timeout_ms = 10000};

    snprintf(url, sizeof url, "%s%s", b->f->base,
             b->path ? b->path : "/block");
    b->rc = hcli_perform(cli, &req, &b->resp);
    hcli_free(cli);
    return NULL;
}

/* Starts a request that the handler holds until f->released is set,
 * and waits until the handler has it. */
static void blocker_start(struct blocker *b, pthread_t *t)
{
    atomic_store(&b->f->blocked, 0);
    atomic_store(&b->f->released, 0);
    assert_int_equal(pthread_create(t, NULL, blocker_run, b), 0);
    for (int i = 0; i < 500 && !atomic_load(&b->f->blocked); i++)
        usleep(10000);
    assert_int_equal(atomic_load(&b->f->blocked), 1);
}

/* Lets the held request finish; it must have succeeded. */
static void blocker_finish(struct blocker *b, pthread_t t)
{
    atomic_store(&b->f->released, 1);
    pthread_join(t, NULL);
    assert_int_equal(b->rc, 0);
}

/* A handler that blocks holds only its own connection. */
static void test_blocking_handler(void **state)
{
    struct fixture *f = *state;
    struct blocker b = {.f = f};
    struct hcli_response resp;
    pthread_t t;

    blocker_start(&b, &t);

    assert_int_equal(
        request(f, "GET", "/query?name=meanwhile", NULL, NULL, 0, &resp), 0);
    assert_string_equal(resp.body, "meanwhile");
    hcli_response_free(&resp);

    blocker_finish(&b, t);
    assert_string_equal(b.resp.body, "released");
    hcli_response_free(&b.resp);
}

/* An answer promised with hsrv_later and given from another thread
 * holds no server thread meanwhile: another request is served. */
static void test_later_answer(void **state)
{
    struct fixture *f = *state;
    struct blocker b = {.f = f, .path = "/later"};
    struct hcli_response resp;
    pthread_t t;

    blocker_start(&b, &t);

    for (int i = 0; i < 4; i++) {
        assert_int_equal(
            request(f, "GET", "/query?name=meanwhile", NULL, NULL, 0, &resp),
            0);
        assert_string_equal(resp.body, "meanwhile");
        hcli_response_free(&resp);
    }

    blocker_finish(&b, t);
    assert_int_equal(b.resp.status, 200);
    assert_string_equal(b.resp.body, "later");
    hcli_response_free(&b.resp);
}

/* A new directory /tmp/<prefix>-<random>; caller frees the name. */
static char *temp_dir(const char *prefix)
{
    char *t = xasprintf("/tmp/%s-......", prefix);

    memset(t + strlen(t) - 6, 'X', 6); /* the pattern mkdtemp fills in */
    if (mkdtemp(t) == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

/* ---- TLS ------------------------------------------------------------ */

static int setup_tls(void **state)
{
    char *tmpl = temp_dir("dbxhook-test-http");
    char *cert, *key, *ca, *cert2, *key2, *ca2;
    struct fixture *f;

    log_init("test_http", LOG_WARN);
    if (tmpl == NULL)
        return -1;
    if (tlsgen_ensure(tmpl, &cert, &key, &ca) < 0)
        return -1;
    /* A second call reuses the files instead of making new ones. */
    if (tlsgen_ensure(tmpl, &cert2, &key2, &ca2) < 0)
        return -1;
    assert_string_equal(cert, cert2);
    assert_string_equal(key, key2);
    assert_string_equal(ca, ca2);
    free(cert2);
    free(key2);
    free(ca2);

    f = fixture_start(cert, key, ca);
    snprintf(f->tmpdir, sizeof f->tmpdir, "%s", tmpl);
    free(tmpl);
    free(cert);
    free(key);
    free(ca);
    *state = f;
    return 0;
}

static void test_tls_round_trip(void **state)
{
    struct fixture *f = *state;
    const char *const headers[] = {"X-Want-Type: application/json", NULL};
    struct hcli_response resp;

    for (int i = 0; i < 3; i++) { /* and again on the kept connection */
        assert_int_equal(request(f, "POST", "/echo", headers, "{}", 2, &resp),
                         0);
        assert_int_equal(resp.status, 200);
        assert_string_equal(resp.body, "{}");
        assert_string_equal(resp.content_type, "application/json");
        hcli_response_free(&resp);
    }
}

static void test_tls_untrusted(void **state)
{
    struct fixture *f = *state;
    struct hcli *plain = hcli_new(NULL, 0);
    char url[128];
    struct hcli_request req = {.method = "GET", .url = url, .timeout_ms = 5000};
    struct hcli_response resp;

    snprintf(url, sizeof url, "%s/echo", f->base);
    assert_int_equal(hcli_perform(plain, &req, &resp), -1);
    assert_int_equal(resp.status, 0);
    hcli_response_free(&resp);
    hcli_free(plain);
}

static void test_tls_key_mode(void **state)
{
    struct fixture *f = *state;
    char path[128];
    struct stat st;

    snprintf(path, sizeof path, "%s/ca.key", f->tmpdir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(path, sizeof path, "%s/server.key", f->tmpdir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

/* A lost server certificate is made again under the same CA. */
static void test_tlsgen_remake_server(void **state)
{
    struct fixture *f = *state;
    char *ca_path = xasprintf("%s/ca.pem", f->tmpdir);
    char *srv_path = xasprintf("%s/server.pem", f->tmpdir);
    char *ca_before = file_read_all(ca_path, 65536, NULL);
    char *ca_after, *cert, *key, *ca;

    assert_non_null(ca_before);
    assert_int_equal(unlink(srv_path), 0);
    assert_int_equal(tlsgen_ensure(f->tmpdir, &cert, &key, &ca), 0);
    assert_int_equal(access(srv_path, R_OK), 0);
    ca_after = file_read_all(ca_path, 65536, NULL);
    assert_non_null(ca_after);
    assert_string_equal(ca_before, ca_after);
    assert_non_null(strstr(cert, "BEGIN CERTIFICATE"));
    assert_non_null(strstr(key, "PRIVATE KEY"));
    free(ca_before);
    free(ca_after);
    free(cert);
    free(key);
    free(ca);
    free(ca_path);
    free(srv_path);
}

int main(void)
{
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_no_content_type),
        cmocka_unit_test(test_query_decoding),
        cmocka_unit_test(test_header_count),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_chunked_body_limit),
        cmocka_unit_test(test_header_limit),
        cmocka_unit_test(test_client_body_limit),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_blocking_handler),
        cmocka_unit_test(test_later_answer),
        cmocka_unit_test(test_start_failures),
    };
    /* The async mode: the same, except for a handler that blocks. */
    const struct CMUnitTest async[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_no_content_type),
        cmocka_unit_test(test_query_decoding),
        cmocka_unit_test(test_header_count),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_chunked_body_limit),
        cmocka_unit_test(test_header_limit),
        cmocka_unit_test(test_client_body_limit),
        cmocka_unit_test(test_later_answer),
        cmocka_unit_test(test_start_failures),
    };
    const struct CMUnitTest tls[] = {
        cmocka_unit_test(test_tls_round_trip),
        cmocka_unit_test(test_tls_untrusted),
        cmocka_unit_test(test_tls_key_mode),
        cmocka_unit_test(test_tlsgen_remake_server),
    };
    int failed;

    failed = cmocka_run_group_tests_name("plain", plain, setup_plain, teardown);
    failed += cmocka_run_group_tests_name("tls", tls, setup_tls, teardown);
    g_async = true;
    failed += cmocka_run_group_tests_name("tls-async", tls, setup_tls,
                                          teardown);
    failed += cmocka_run_group_tests_name("plain-async", async, setup_async,
                                          teardown);
    return failed;
}
