/*
 * Unit tests for cursor: round trips of the record, and the refusal of
 * anything the server did not sign (flipped bits, truncation, another
 * key, text that is not base64url).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cloud/cursor.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned char key[CURSOR_KEY_LEN];
static unsigned char other_key[CURSOR_KEY_LEN];

struct round_case {
    struct cursor c;
};

static const struct round_case round_cases[] = {
    {{.account = 1, .seq = 0, .limit = 2000, .recursive = true,
      .prefix = "", .position = NULL}},
    {{.account = 42, .seq = 123456789012LL, .limit = 1,
      .include_deleted = true, .prefix = "/docs/caf\xc3\xa9",
      .position = NULL}},
    {{.account = 7, .seq = 5, .limit = 100, .recursive = true,
      .listing = true, .prefix = "/a", .position = "/a/b/c.md"}},
    {{.account = INT64_MAX, .seq = INT64_MAX, .limit = 65535,
      .listing = true, .prefix = "", .position = ""}},
};

static void test_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(round_cases); i++) {
        const struct cursor *in = &round_cases[i].c;
        char *text = cursor_encode(in, key);
        struct cursor out;
        const char *why = NULL;

        assert_int_equal(cursor_decode(text, key, &out, &why), 0);
        assert_int_equal(out.account, in->account);
        assert_int_equal(out.seq, in->seq);
        assert_int_equal(out.limit, in->limit);
        assert_int_equal(out.recursive, in->recursive);
        assert_int_equal(out.include_deleted, in->include_deleted);
        assert_int_equal(out.listing, in->listing);
        assert_string_equal(out.prefix, in->prefix);
        if (in->listing)
            assert_string_equal(out.position,
                                in->position ? in->position : "");
        else
            assert_null(out.position);
        /* URL-safe text only: it travels in JSON and query strings. */
        assert_int_equal(strspn(text, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "abcdefghijklmnopqrstuvwxyz"
                                      "0123456789-_"),
                         strlen(text));
        cursor_clear(&out);
        free(text);
    }
}

/* Changing any single character must be detected. */
static void test_tamper_every_char(void **state)
{
    const struct cursor *in = &round_cases[2].c;
    char *text = cursor_encode(in, key);
    size_t n = strlen(text);

    (void)state;
    for (size_t i = 0; i < n; i++) {
        char *t = xstrdup(text);
        struct cursor out;
        const char *why = NULL;

        t[i] = t[i] == 'A' ? 'B' : 'A';
        /* The last character may carry only padding bits; a change there
         * can decode to the same bytes, which is harmless. */
        if (cursor_decode(t, key, &out, &why) == 0) {
            assert_int_equal(i, n - 1);
            cursor_clear(&out);
        } else {
            assert_non_null(why);
        }
        free(t);
    }
    free(text);
}

static void test_rejects(void **state)
{
    const struct cursor *in = &round_cases[1].c;
    char *text = cursor_encode(in, key);
    char *truncated = xstrndup(text, strlen(text) - 4);
    char *longer = xasprintf("%sAAAA", text);
    char *huge = xmalloc(CURSOR_TEXT_MAX + 2);
    const char *bad[] = {"", "!!!!", "a", "AAAA", truncated, longer, huge,
                         "AQEH0AAAAAAAAAABAAAAAAAAAAQAAAAA2wAA4LIgrNyMTg32"};
    struct cursor out;
    const char *why;

    (void)state;
    memset(huge, 'A', CURSOR_TEXT_MAX + 1);
    huge[CURSOR_TEXT_MAX + 1] = '\0';
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        why = NULL;
        assert_int_equal(cursor_decode(bad[i], key, &out, &why), -1);
        assert_non_null(why);
        assert_null(out.prefix);
    }
    assert_int_equal(cursor_decode(NULL, key, &out, &why), -1);
    /* Signed with another server's key. */
    assert_int_equal(cursor_decode(text, other_key, &out, &why), -1);
    assert_string_equal(why, "bad signature");
    free(huge);
    free(longer);
    free(truncated);
    free(text);
}

static void test_key_file(void **state)
{
    char dir[] = "/tmp/test_cursor_XXXXXX";
    unsigned char k1[CURSOR_KEY_LEN], k2[CURSOR_KEY_LEN];
    char *path;

    (void)state;
    assert_non_null(mkdtemp(dir));
    path = xasprintf("%s/cursor.key", dir);
    assert_int_equal(cursor_key_load(path, k1), 0);
    assert_int_equal(cursor_key_load(path, k2), 0);
    assert_memory_equal(k1, k2, CURSOR_KEY_LEN);
    unlink(path);
    rmdir(dir);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_tamper_every_char),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_key_file),
    };

    rand_bytes(key, sizeof key);
    rand_bytes(other_key, sizeof other_key);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
