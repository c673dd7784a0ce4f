/*
 * The notification body (built by the cloud, parsed by the app) and the
 * Python-style JSON escaping both sides share.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/jsonx.h"
#include "common/notification.h"
#include "common/sig.h"

#include <stdlib.h>
#include <string.h>

static const char alice_body[] =
    "{\"list_folder\": {\"accounts\": [\"dbid:AAB_acct_alice_0001\"]}, "
    "\"delta\": {\"users\": [1001]}}";

static void test_body_vector(void **state)
{
    const char *accounts[] = {"dbid:AAB_acct_alice_0001"};
    const int64_t uids[] = {1001};
    char *body = notification_body(accounts, uids, 1);
    char sig[SIG_HEX_LEN + 1];

    (void)state;
    assert_string_equal(body, alice_body);
    assert_int_equal(strlen(body), 87);
    sig_sign("test-app-secret-42", body, strlen(body), sig);
    assert_string_equal(sig, "ad44cb5c1bd0364b49e137daf99d3e9d"
                             "42fa4086f422d5e9af966797e8a69807");
    free(body);
}

static void test_body_several_and_none(void **state)
{
    const char *accounts[] = {"dbid:A", "dbid:B-_9"};
    const int64_t uids[] = {12345678, 23456789};
    char *body;

    (void)state;
    body = notification_body(accounts, uids, 2);
    assert_string_equal(body, "{\"list_folder\": {\"accounts\": "
                              "[\"dbid:A\", \"dbid:B-_9\"]}, \"delta\": "
                              "{\"users\": [12345678, 23456789]}}");
    free(body);
    body = notification_body(NULL, NULL, 0);
    assert_string_equal(body, "{\"list_folder\": {\"accounts\": []}, "
                              "\"delta\": {\"users\": []}}");
    free(body);
}

static void test_parse_round_trip(void **state)
{
    const char *spaced = alice_body;
    const char *compact =
        "{\"list_folder\":{\"accounts\":[\"dbid:X1\",\"dbid:Y2\"]},"
        "\"delta\":{\"users\":[1,2]}}";
    const char *empty = "{\"list_folder\": {\"accounts\": []}}";
    char **ids;
    size_t n;

    (void)state;
    assert_int_equal(notification_parse(spaced, strlen(spaced), &ids, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], "dbid:AAB_acct_alice_0001");
    notification_accounts_free(ids, n);

    /* Spacing matters to the signature, not to the parser. */
    assert_int_equal(notification_parse(compact, strlen(compact), &ids, &n),
                     0);
    assert_int_equal(n, 2);
    assert_string_equal(ids[1], "dbid:Y2");
    notification_accounts_free(ids, n);

    assert_int_equal(notification_parse(empty, strlen(empty), &ids, &n), 0);
    assert_int_equal(n, 0);
    notification_accounts_free(ids, n);
}

static void test_parse_rejects(void **state)
{
    static const char *const bad[] = {
        "",
        "not json",
        "[]",
        "{}",
        "{\"list_folder\": []}",
        "{\"list_folder\": {\"accounts\": \"dbid:A\"}}",
        "{\"list_folder\": {\"accounts\": [1]}}",
        "{\"list_folder\": {\"accounts\": [\"dbid:\"]}}",
        "{\"list_folder\": {\"accounts\": [\"user:A\"]}}",
        "{\"list_folder\": {\"accounts\": [\"dbid:A B\"]}}",
        "{\"list_folder\": {\"accounts\": [\"dbid:\\u00e9\"]}}",
        "{\"list_folder\": {\"accounts\": [\"dbid:A\"]}, "
        "\"list_folder\": {\"accounts\": [\"dbid:B\"]}}",
        "{\"list_folder\": {\"accounts\": [\"dbid:A\"]}} trailing",
    };
    char **ids;
    size_t n;

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (notification_parse(bad[i], strlen(bad[i]), &ids, &n) != -1)
            fail_msg("accepted: %s", bad[i]);
        assert_null(ids);
        assert_int_equal(n, 0);
    }
}

/* notification_parse (the sender's exact layout first) and
 * notification_parse_json (always the JSON library) give the same answer
 * for the sender's bodies, hand-made edge cases and many mutations of
 * them (a fixed pseudo-random sequence, so a failure repeats). */
#define FUZZ_ROUNDS 40000

static uint64_t fuzz_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void same_answer(const char *body, size_t len)
{
    char **a = NULL, **b = NULL;
    size_t na = 0, nb = 0;
    int ra = notification_parse(body, len, &a, &na);
    int rb = notification_parse_json(body, len, &b, &nb);

    if (ra != rb || na != nb)
        fail_msg("parsers disagree (%d/%d, %zu/%zu): %.*s", ra, rb, na, nb,
                 (int)len, body);
    for (size_t i = 0; i < na; i++)
        assert_string_equal(a[i], b[i]);
    notification_accounts_free(a, na);
    notification_accounts_free(b, nb);
}

static void test_parse_fast_matches_json(void **state)
{
    static const char *const edges[] = {
        "{\"list_folder\": {\"accounts\": [\"dbid:\\u0041\"]}, "
        "\"delta\": {\"users\": [1]}}",
        "{\"list_folder\": {\"accounts\": [\"dbid:A\"]}, "
        "\"delta\": {\"users\": [012]}}",
        "{\"list_folder\": {\"accounts\": [\"dbid:A\"]}, "
        "\"delta\": {\"users\": [123456789012345678]}}",
        "{\"list_folder\": {\"accounts\": [\"dbid:A\"]}, "
        "\"delta\": {\"users\": [99999999999999999999]}}",
        "{\"list_folder\": {\"accounts\": [\"dbid:A\", ]}, "
        "\"delta\": {\"users\": [1]}}",
        "{\"list_folder\": {\"accounts\": [\"dbid:A\"]}, "
        "\"delta\": {\"users\": [1]}} ",
        "{\"list_folder\": {\"accounts\": [\"dbid:A\"]}, "
        "\"delta\": {\"users\": [-1]}}",
        "{\"list_folder\": {\"accounts\": []}, \"delta\": {\"users\": []}}",
    };
    /* With NUL, DEL and high bytes: the body is not a C string. */
    static const char alphabet[] = "\"\\,:[]{}019aZ_- \t\nud\0\x7f\x80\xff";
    const char *ids[10];
    int64_t uids[10];
    char names[10][16];
    char *seeds[12];
    size_t n_seeds = 0;
    uint64_t x = 0x9e3779b97f4a7c15u;
    char buf[512];

    (void)state;
    for (size_t i = 0; i < 10; i++) {
        snprintf(names[i], sizeof names[i], "dbid:AAB_%zu-x", i);
        ids[i] = names[i];
        uids[i] = 1000 + (int64_t)i;
    }
    for (size_t k = 0; k <= 10; k += 1 + k / 2)
        seeds[n_seeds++] = notification_body(ids, uids, k);
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        same_answer(edges[i], strlen(edges[i]));
    for (size_t i = 0; i < n_seeds; i++)
        same_answer(seeds[i], strlen(seeds[i]));

    for (int round = 0; round < FUZZ_ROUNDS; round++) {
        const char *seed = seeds[fuzz_next(&x) % n_seeds];
        size_t len = strlen(seed);
        int edits = 1 + (int)(fuzz_next(&x) % 3);

        memcpy(buf, seed, len);
        for (int e = 0; e < edits && len > 0; e++) {
            size_t at = fuzz_next(&x) % len;
            char c = alphabet[fuzz_next(&x) % (sizeof alphabet - 1)];
            /* sizeof - 1: the literal's own NUL is not a choice, the
             * explicit \0 above is. */

            switch (fuzz_next(&x) % 3) {
            case 0: /* replace */
                buf[at] = c;
                break;
            case 1: /* delete */
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
                break;
            default: /* insert */
                if (len + 1 < sizeof buf) {
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = c;
                    len++;
                }
            }
        }
        same_answer(buf, len);
    }
    for (size_t i = 0; i < n_seeds; i++)
        free(seeds[i]);
}

/* A raw NUL byte inside an account id: JSON forbids control characters
 * in a string, so the JSON library rejects the body; the exact-layout
 * path must not accept it as the id cut at the NUL.  The bodies are
 * given with their length, not NUL-terminated. */
static void test_parse_fast_nul_in_account(void **state)
{
    static const char nul_mid[] =
        "{\"list_folder\": {\"accounts\": [\"dbid:A\0B\"]}, "
        "\"delta\": {\"users\": [1]}}";
    static const char nul_end[] =
        "{\"list_folder\": {\"accounts\": [\"dbid:AAB\0\"]}, "
        "\"delta\": {\"users\": [1]}}";
    char **a = NULL;
    size_t n = 0;

    (void)state;
    assert_int_equal(notification_parse_json(nul_mid, sizeof nul_mid - 1,
                                             &a, &n), -1);
    same_answer(nul_mid, sizeof nul_mid - 1);
    same_answer(nul_end, sizeof nul_end - 1);
}

static void test_account_valid(void **state)
{
    char longest[NOTIFICATION_ACCOUNT_MAX + 2];

    (void)state;
    assert_true(notification_account_valid(
        "dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc"));
    assert_true(notification_account_valid("dbid:a_-Z9"));
    assert_false(notification_account_valid(NULL));
    assert_false(notification_account_valid("dbid:"));
    assert_false(notification_account_valid("DBID:abc"));
    assert_false(notification_account_valid("dbid:a/b"));
    memset(longest, 'a', sizeof longest);
    memcpy(longest, "dbid:", 5);
    longest[NOTIFICATION_ACCOUNT_MAX] = '\0';
    assert_true(notification_account_valid(longest));
    longest[NOTIFICATION_ACCOUNT_MAX] = 'a';
    longest[NOTIFICATION_ACCOUNT_MAX + 1] = '\0';
    assert_false(notification_account_valid(longest));
}

static void test_jsonx_string(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 0);
    /* "é", an emoji (surrogate pair), quote, backslash, controls, DEL. */
    jsonx_append_string(&b, "caf\xc3\xa9 \xf0\x9f\x98\x80 \"\\\n\t\x01\x7f");
    assert_string_equal(b.data, "\"caf\\u00e9 \\ud83d\\ude00 \\\"\\\\\\n"
                                "\\t\\u0001\\u007f\"");
    buf_free(&b);

    /* Invalid UTF-8 (a lone continuation byte, an overlong form) reads as
     * U+FFFD rather than being copied through. */
    buf_init(&b, 0);
    jsonx_append_string(&b, "a\x80z\xe0\x80\xaf");
    assert_string_equal(b.data, "\"a\\ufffdz\\ufffd\\ufffd\\ufffd\"");
    buf_free(&b);
}

static void test_jsonx_dumps_ascii(void **state)
{
    json_t *v = json_pack("{s:s}", "name", "R\xc3\xa9sum\xc3\xa9\x7f.md");
    char *text = jsonx_dumps_ascii(v);

    (void)state;
    assert_string_equal(text, "{\"name\":\"R\\u00e9sum\\u00e9\\u007f.md\"}");
    free(text);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_vector),
        cmocka_unit_test(test_body_several_and_none),
        cmocka_unit_test(test_parse_round_trip),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_parse_fast_matches_json),
        cmocka_unit_test(test_parse_fast_nul_in_account),
        cmocka_unit_test(test_account_valid),
        cmocka_unit_test(test_jsonx_string),
        cmocka_unit_test(test_jsonx_dumps_ascii),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
