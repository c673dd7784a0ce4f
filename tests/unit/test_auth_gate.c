/*
 * Unit tests for the auth gate's pure parts: url-encoded forms (the
 * OAuth endpoints), scope lists, the fault table and the rate limiter.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cloud/faults.h"
#include "cloud/form.h"
#include "cloud/oauth.h"
#include "cloud/ratelimit.h"

#include <string.h>

struct form_case {
    const char *text;
    const char *name;  /* NULL: the text is malformed */
    const char *value; /* NULL: name absent */
};

static const struct form_case form_cases[] = {
    {"a=1&b=x%20y", "b", "x y"},
    {"a=1&b=x+y", "b", "x y"},
    {"a=1&a=2", "a", "1"},
    {"flag&b=", "flag", ""},
    {"", "a", NULL},
    {"&&a=%7e", "a", "~"},
    {"r=http%3A%2F%2F127.0.0.1%3A9%2Fcb", "r", "http://127.0.0.1:9/cb"},
    {"a=%zz", NULL, NULL},
    {"a=%4", NULL, NULL},
    {"a=%00", NULL, NULL},
    {"a=%ff", NULL, NULL}, /* not UTF-8 */
};

static void test_form_decode(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof form_cases / sizeof form_cases[0]; i++) {
        const struct form_case *c = &form_cases[i];
        json_t *o = form_decode(c->text, strlen(c->text));

        if (c->name == NULL) {
            assert_null(o);
            continue;
        }
        assert_non_null(o);
        if (c->value == NULL)
            assert_null(json_object_get(o, c->name));
        else
            assert_string_equal(
                json_string_value(json_object_get(o, c->name)), c->value);
        json_decref(o);
    }
}

static void test_form_too_many_fields(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 0);
    for (int i = 0; i <= FORM_FIELDS_MAX; i++)
        buf_appendf(&b, "f%d=1&", i);
    assert_null(form_decode(b.data, b.len));
    buf_free(&b);
}

static void test_escaping(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 0);
    form_append_encoded(&b, "a b&c=d/é~");
    assert_string_equal(b.data, "a%20b%26c%3Dd%2F%C3%A9~");
    buf_free(&b);
    buf_init(&b, 0);
    form_append_html(&b, "<a href=\"x\">&'");
    assert_string_equal(b.data, "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    buf_free(&b);
}

static void test_scopes(void **state)
{
    char out[256];

    (void)state;
    assert_int_equal(oauth_scopes_canon("account_info.read "
                                        "files.metadata.read", out,
                                        sizeof out), 0);
    assert_string_equal(out, "files.metadata.read account_info.read");
    assert_int_equal(oauth_scopes_canon("files.metadata.read  bogus", out,
                                        sizeof out), -1);
    assert_int_equal(oauth_scopes_canon("", out, sizeof out), -1);
}

static void test_faults(void **state)
{
    const char *cont = "files/list_folder/continue";

    (void)state;
    assert_int_equal(faults_kind_parse("expired_access_token"),
                     FAULT_EXPIRED);
    assert_int_equal(faults_kind_parse("none"), FAULT_NONE);
    assert_int_equal(faults_kind_parse(NULL), FAULT_NONE);

    assert_int_equal(faults_set(5, NULL, FAULT_500, 2), 0);
    assert_int_equal(faults_set(5, "files/upload", FAULT_429, 1), 0);
    assert_int_equal(faults_take(6, "files/upload"), FAULT_NONE);
    /* The route's own fault first, then the one for every route. */
    assert_int_equal(faults_take(5, "files/upload"), FAULT_429);
    assert_int_equal(faults_take(5, "files/upload"), FAULT_500);
    assert_int_equal(faults_take(5, cont), FAULT_500);
    assert_int_equal(faults_take(5, cont), FAULT_NONE);

    /* A reset waits for a route where it can happen. */
    assert_int_equal(faults_set(5, NULL, FAULT_RESET, 1), 0);
    assert_int_equal(faults_take(5, "files/upload"), FAULT_NONE);
    assert_int_equal(faults_take(5, cont), FAULT_RESET);
    assert_int_equal(faults_take(5, cont), FAULT_NONE);

    assert_int_equal(faults_set(5, NULL, FAULT_500, 9), 0);
    assert_int_equal(faults_set(5, NULL, FAULT_INVALID, 1), 0);
    assert_int_equal(faults_clear(5), 1);
    assert_int_equal(faults_take(5, cont), FAULT_NONE);
}

static void test_ratelimit(void **state)
{
    enum ratelimit_verdict v = RATELIMIT_OK;
    int after = 0, limited = 0;

    (void)state;
    ratelimit_configure(0, 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(ratelimit_take(1, true, &after), RATELIMIT_OK);

    ratelimit_configure(0, 3);
    for (int i = 0; i < 8; i++) {
        enum ratelimit_verdict got = ratelimit_take(2, true, &after);

        if (got != RATELIMIT_OK) {
            v = got;
            limited++;
            assert_int_equal(after, 1);
        }
    }
    /* Eight writes in at most two windows: at least two refused. */
    assert_true(limited >= 2);
    assert_int_equal(v, RATELIMIT_TOO_MANY_WRITES);
    assert_int_equal(ratelimit_take(2, false, &after), RATELIMIT_OK);
    ratelimit_configure(0, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_form_decode),
        cmocka_unit_test(test_form_too_many_fields),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_scopes),
        cmocka_unit_test(test_faults),
        cmocka_unit_test(test_ratelimit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
