/*
 * Unit tests of the Markdown handler's pure parts: which names are
 * Markdown, where their HTML goes, and that rendering is md4c's own.
 */
#include "app/handler_md.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <md4c-html.h>

struct is_md_case {
    const char *path;
    bool markdown;
};

static void test_is_markdown(void **state)
{
    static const struct is_md_case cases[] = {
        {"/a.md", true},
        {"/Docs/Intro.MD", true},
        {"/notes.Md", true},
        {"/notes.mD", true},
        {"readme.md", true},
        {"/dir.with.dots/x.y.md", true},
        {"/Überblick/Résumé.md", true},
        {"/a.mdx", false},
        {"/a.markdown", false},
        {"/a.txt", false},
        {"/a.html", false},
        {"md", false},
        {"/md", false},
        {"/.md", false},
        {".md", false},
        {"/folder.md/", false},
        {"/a.md.txt", false},
        {"", false},
        {NULL, false},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool got = handler_md_is_markdown(cases[i].path);

        if (got != cases[i].markdown)
            fail_msg("is_markdown(%s) = %d", cases[i].path, got);
    }
}

struct html_path_case {
    const char *md;
    const char *html; /* NULL: not Markdown */
};

static void test_html_path(void **state)
{
    static const struct html_path_case cases[] = {
        {"/a.md", "/a.html"},
        {"/Docs/Intro.MD", "/Docs/Intro.html"},
        {"/Docs/Intro.Md", "/Docs/Intro.html"},
        {"/CamelCase/MixedName.md", "/CamelCase/MixedName.html"},
        {"/Überblick/Résumé.md", "/Überblick/Résumé.html"},
        {"/日本語/ノート.MD", "/日本語/ノート.html"},
        {"/with space/a b.md", "/with space/a b.html"},
        {"/a.txt", NULL},
        {"/.md", NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = handler_md_html_path(cases[i].md);

        if (cases[i].html == NULL)
            assert_null(got);
        else
            assert_string_equal(got, cases[i].html);
        free(got);
    }
}

/* The reference: md4c called directly, as the tests of the brief do. */
struct collect {
    char *data;
    size_t len;
};

static void collect_piece(const MD_CHAR *text, MD_SIZE size, void *ud)
{
    struct collect *c = ud;

    c->data = realloc(c->data, c->len + size + 1);
    assert_non_null(c->data);
    memcpy(c->data + c->len, text, size);
    c->len += size;
    c->data[c->len] = '\0';
}

static void assert_renders_like_md4c(const char *src, size_t len)
{
    struct collect want = {NULL, 0};
    char *got;
    size_t got_len;

    assert_int_equal(
        md_html(src, (MD_SIZE)len, collect_piece, &want, MD_DIALECT_GITHUB, 0),
        0);
    assert_int_equal(handler_md_render(src, len, &got, &got_len), 0);
    assert_int_equal(got_len, want.len);
    assert_int_equal(strlen(got), got_len);
    if (want.len > 0)
        assert_memory_equal(got, want.data, want.len);
    free(got);
    free(want.data);
}

static void test_render_matches_md4c(void **state)
{
    static const char *const inputs[] = {
        "",
        "# Title\n\nSome *emphasis* and **strong** text.\n",
        "| a | b |\n|---|:-:|\n| 1 | 2 |\n| x | `y` |\n",
        "- [x] done\n- [ ] todo\n\n~~gone~~ and www.example.com\n",
        "```c\nint main(void) { return 0; }\n```\n",
        "<div>raw html</div>\n\n&copy; &amp; < > \"quotes\"\n",
        "Ünïcödé — 日本語 😀\n",
        "no trailing newline",
    };

    (void)state;
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++)
        assert_renders_like_md4c(inputs[i], strlen(inputs[i]));
}

static void test_render_github_table(void **state)
{
    static const char table[] = "| Name | Qty |\n"
                                "|:-----|----:|\n"
                                "| pear | 3 |\n";
    char *got;
    size_t len;

    (void)state;
    assert_int_equal(handler_md_render(table, strlen(table), &got, &len), 0);
    assert_non_null(strstr(got, "<table>"));
    assert_non_null(strstr(got, "<th align=\"left\">Name</th>"));
    assert_non_null(strstr(got, "<td align=\"right\">3</td>"));
    free(got);
    assert_renders_like_md4c(table, strlen(table));
}

static void test_render_not_nul_terminated(void **state)
{
    /* Only the first len bytes count: "# A" and not "# AB". */
    static const char src[] = "# AB";

    (void)state;
    assert_renders_like_md4c(src, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_markdown),
        cmocka_unit_test(test_html_path),
        cmocka_unit_test(test_render_matches_md4c),
        cmocka_unit_test(test_render_github_table),
        cmocka_unit_test(test_render_not_nul_terminated),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
