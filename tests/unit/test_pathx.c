/*
 * Unit tests for pathx: normalisation, case folding and the path
 * helpers, table-driven.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/pathx.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>

struct norm_case {
    const char *in;
    bool allow_root;
    const char *display; /* NULL: expect PATHX_MALFORMED */
    const char *lower;
};

/* "é" precomposed (NFC) and as e + combining acute (NFD). */
#define E_NFC       "\xc3\xa9"
#define E_NFD       "e\xcc\x81"
#define E_UPPER_NFC "\xc3\x89"
#define SHARP_S     "\xc3\x9f" /* German sharp s, folds to "ss" */

static const struct norm_case norm_cases[] = {
    {"/Docs/Intro.MD", false, "/Docs/Intro.MD", "/docs/intro.md"},
    {"/a", false, "/a", "/a"},
    {"/a b/c", false, "/a b/c", "/a b/c"},
    {"/.hidden/..x/x..", false, "/.hidden/..x/x..", "/.hidden/..x/x.."},
    {"/Caf" E_NFC ".md", false, "/Caf" E_NFC ".md", "/caf" E_NFC ".md"},
    {"/Caf" E_NFD ".md", false, "/Caf" E_NFC ".md", "/caf" E_NFC ".md"},
    {"/CAF" E_UPPER_NFC, false, "/CAF" E_UPPER_NFC, "/caf" E_NFC},
    {"/Stra" SHARP_S "e", false, "/Stra" SHARP_S "e", "/strasse"},
    {"/STRASSE", false, "/STRASSE", "/strasse"},
    {"/\xce\xa3\xce\xbf\xcf\x86", false, /* Greek capital sigma */
     "/\xce\xa3\xce\xbf\xcf\x86", "/\xcf\x83\xce\xbf\xcf\x86"},
    /* root */
    {"", true, "", ""},
    {"/", true, "", ""},
    {"", false, NULL, NULL},
    {"/", false, NULL, NULL},
    /* malformed */
    {"a", false, NULL, NULL},
    {"a/b", true, NULL, NULL},
    {"/a/", false, NULL, NULL},
    {"//a", false, NULL, NULL},
    {"/a//b", false, NULL, NULL},
    {"//", true, NULL, NULL},
    {"/a/../b", false, NULL, NULL},
    {"/..", false, NULL, NULL},
    {"/./a", false, NULL, NULL},
    {"/a/.", false, NULL, NULL},
    {"/a\x01", false, NULL, NULL},
    {"/a\tb", false, NULL, NULL},
    {"/a\nb", false, NULL, NULL},
    {"/a\x7f", false, NULL, NULL},
    {"/a\xc2\x85", false, NULL, NULL},         /* C1 control NEL */
    {"/a\xff", false, NULL, NULL},             /* invalid byte */
    {"/a\xc3", false, NULL, NULL},             /* truncated sequence */
    {"/a\xc0\xaf", false, NULL, NULL},         /* overlong "/" */
    {"/a\xed\xa0\x80", false, NULL, NULL},     /* surrogate */
    {"/a\xf4\x90\x80\x80", false, NULL, NULL}, /* above U+10FFFF */
};

static void test_normalize_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(norm_cases); i++) {
        const struct norm_case *c = &norm_cases[i];
        char *display = (char *)"x", *lower = (char *)"x";
        enum pathx_status st;

        st = pathx_normalize(c->in, c->allow_root, &display, &lower);
        if (c->display == NULL) {
            if (st != PATHX_MALFORMED)
                fail_msg("case %zu accepted: \"%s\"", i, c->in);
            assert_null(display);
            assert_null(lower);
            continue;
        }
        if (st != PATHX_OK)
            fail_msg("case %zu rejected: \"%s\"", i, c->in);
        assert_string_equal(display, c->display);
        assert_string_equal(lower, c->lower);
        free(display);
        free(lower);
    }
}

static void test_normalize_null(void **state)
{
    char *display, *lower;

    (void)state;
    assert_int_equal(pathx_normalize(NULL, true, &display, &lower),
                     PATHX_MALFORMED);
}

static void test_normalize_length(void **state)
{
    char *in = xmalloc(PATHX_MAX + 2);
    char *display, *lower;

    (void)state;
    in[0] = '/';
    memset(in + 1, 'a', PATHX_MAX - 1);
    in[PATHX_MAX] = '\0'; /* exactly PATHX_MAX bytes */
    assert_int_equal(pathx_normalize(in, false, &display, &lower), PATHX_OK);
    assert_int_equal(strlen(display), PATHX_MAX);
    free(display);
    free(lower);

    in[PATHX_MAX] = 'a';
    in[PATHX_MAX + 1] = '\0';
    assert_int_equal(pathx_normalize(in, false, &display, &lower),
                     PATHX_MALFORMED);
    free(in);
}

static void test_nfc_nfd_same_lower(void **state)
{
    char *d1, *l1, *d2, *l2;

    (void)state;
    assert_int_equal(pathx_normalize("/R" E_NFC "sum" E_NFC, false, &d1, &l1),
                     PATHX_OK);
    assert_int_equal(pathx_normalize("/r" E_NFD "SUM" E_NFD, false, &d2, &l2),
                     PATHX_OK);
    assert_string_equal(l1, l2);
    assert_string_not_equal(d1, d2);
    free(d1);
    free(l1);
    free(d2);
    free(l2);
}

static void test_fold(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"README.MD", "readme.md"},
        {"Stra" SHARP_S "e", "strasse"},
        {E_UPPER_NFC, E_NFC},
        {"E\xcc\x81", E_NFC}, /* NFD capital folds to NFC small */
        {"", ""},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *f = pathx_fold(cases[i].in);

        assert_non_null(f);
        assert_string_equal(f, cases[i].out);
        free(f);
    }
    assert_null(pathx_fold("\xff"));
    assert_null(pathx_fold(NULL));
}

static void test_parent_and_name(void **state)
{
    static const struct {
        const char *path, *parent, *name;
    } cases[] = {
        {"/a/b/c.md", "/a/b", "c.md"},
        {"/a/b", "/a", "b"},
        {"/a", "", "a"},
        {"", "", ""},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *parent = pathx_parent(cases[i].path);

        assert_string_equal(parent, cases[i].parent);
        assert_string_equal(pathx_name(cases[i].path), cases[i].name);
        free(parent);
    }
}

static void test_is_under(void **state)
{
    static const struct {
        const char *path, *prefix;
        bool under;
    } cases[] = {
        {"/a/b", "/a", true}, {"/a", "/a", true},    {"/a/b/c", "/a/b", true},
        {"/ab", "/a", false}, {"/a", "/a/b", false}, {"/b/a", "/a", false},
        {"/a", "", true},     {"", "", true},        {"", "/a", false},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        if (pathx_is_under(cases[i].path, cases[i].prefix) != cases[i].under)
            fail_msg("case %zu: \"%s\" under \"%s\"", i, cases[i].path,
                     cases[i].prefix);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize_table),
        cmocka_unit_test(test_normalize_null),
        cmocka_unit_test(test_normalize_length),
        cmocka_unit_test(test_nfc_nfd_same_lower),
        cmocka_unit_test(test_fold),
        cmocka_unit_test(test_parent_and_name),
        cmocka_unit_test(test_is_under),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
