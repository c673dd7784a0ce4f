/*
 * md_bench: Markdown to HTML throughput on a corpus, three ways:
 *
 *   handler  handler_md_render (src/app/handler_md.h), what the app runs
 *   md4c     md_html called directly into a growing buffer (the library
 *            alone, so handler / md4c is the overhead we add)
 *   cmark    cmark-gfm with the table, strikethrough, autolink and
 *            tasklist extensions (the alternative we did not choose)
 *
 * usage: md_bench SECONDS FILE...
 *
 * The three run in turns, one pass over the whole corpus each, until
 * SECONDS have passed (at least one turn), so a noisy neighbour slows
 * all three alike.  Prints one JSON object: bytes per pass, passes, and
 * MB/s (10^6 bytes of Markdown in per second) for each.
 */
#include "app/handler_md.h"

#include <cmark-gfm-core-extensions.h>
#include <cmark-gfm-extension_api.h>
#include <cmark-gfm.h>
#include <md4c-html.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Files in one corpus, and the largest we read. */
#define BENCH_MAX_FILES 4096
#define BENCH_MAX_FILE (64u * 1024 * 1024)

struct bench_doc {
    char *text;
    size_t len;
};

struct bench_buf {
    char *data;
    size_t len, cap;
};

static double bench_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int bench_read(const char *path, struct bench_doc *doc)
{
    FILE *f = fopen(path, "rb");
    long size;
    int rc = -1;

    doc->text = NULL;
    if (f == NULL)
        return -1;
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
        (size_t)size > BENCH_MAX_FILE || fseek(f, 0, SEEK_SET) != 0)
        goto out;
    doc->text = malloc((size_t)size + 1);
    if (doc->text == NULL ||
        fread(doc->text, 1, (size_t)size, f) != (size_t)size)
        goto out;
    doc->text[size] = '\0'; /* md4c may scan to a terminator */
    doc->len = (size_t)size;
    rc = 0;
out:
    fclose(f);
    return rc;
}

static void bench_append(const MD_CHAR *text, MD_SIZE size, void *arg)
{
    struct bench_buf *b = arg;

    if (b->len + size > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;

        while (cap < b->len + size)
            cap *= 2;
        b->data = realloc(b->data, cap);
        if (b->data == NULL)
            abort();
        b->cap = cap;
    }
    memcpy(b->data + b->len, text, size);
    b->len += size;
}

/* Each pass returns the HTML bytes produced, or 0 on failure. */
static size_t bench_handler(const struct bench_doc *docs, size_t n)
{
    size_t total = 0;

    for (size_t i = 0; i < n; i++) {
        char *html;
        size_t len;

        if (handler_md_render(docs[i].text, docs[i].len, &html, &len) != 0)
            return 0;
        total += len;
        free(html);
    }
    return total;
}

static size_t bench_md4c(const struct bench_doc *docs, size_t n)
{
    struct bench_buf b = {0};
    size_t total = 0;

    for (size_t i = 0; i < n; i++) {
        b.len = 0;
        if (md_html(docs[i].text, (MD_SIZE)docs[i].len, bench_append, &b,
                    MD_DIALECT_GITHUB, 0) != 0)
            return 0;
        total += b.len;
    }
    free(b.data);
    return total;
}

static size_t bench_cmark_one(const struct bench_doc *doc)
{
    static const char *exts[] = {"table", "strikethrough", "autolink",
                                 "tasklist"};
    cmark_parser *p = cmark_parser_new(CMARK_OPT_DEFAULT);
    cmark_node *root;
    char *html;
    size_t len;

    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++)
        cmark_parser_attach_syntax_extension(
            p, cmark_find_syntax_extension(exts[i]));
    cmark_parser_feed(p, doc->text, doc->len);
    root = cmark_parser_finish(p);
    html = cmark_render_html(root, CMARK_OPT_DEFAULT,
                             cmark_parser_get_syntax_extensions(p));
    len = html != NULL ? strlen(html) : 0;
    free(html);
    cmark_node_free(root);
    cmark_parser_free(p);
    return len;
}

static size_t bench_cmark(const struct bench_doc *docs, size_t n)
{
    size_t total = 0;

    for (size_t i = 0; i < n; i++)
        total += bench_cmark_one(&docs[i]);
    return total;
}

typedef size_t (*bench_fn)(const struct bench_doc *, size_t);

int main(int argc, char **argv)
{
    static struct bench_doc docs[BENCH_MAX_FILES];
    static const char *names[] = {"handler", "md4c", "cmark"};
    const bench_fn fns[] = {bench_handler, bench_md4c, bench_cmark};
    double spent[3] = {0}, seconds, start;
    size_t n = 0, bytes = 0, out[3] = {0}, passes = 0;

    if (argc < 3 || (size_t)(argc - 2) > BENCH_MAX_FILES) {
        fprintf(stderr, "usage: md_bench SECONDS FILE...\n");
        return 2;
    }
    seconds = atof(argv[1]);
    for (int i = 2; i < argc; i++, n++) {
        if (bench_read(argv[i], &docs[n]) != 0) {
            fprintf(stderr, "md_bench: cannot read %s\n", argv[i]);
            return 1;
        }
        bytes += docs[n].len;
    }
    cmark_gfm_core_extensions_ensure_registered();
    start = bench_now();
    do {
        for (int k = 0; k < 3; k++) {
            double t0 = bench_now();

            out[k] = fns[k](docs, n);
            spent[k] += bench_now() - t0;
            if (out[k] == 0) {
                fprintf(stderr, "md_bench: %s failed\n", names[k]);
                return 1;
            }
        }
        passes++;
    } while (bench_now() - start < seconds);

    printf("{\"bytes\": %zu, \"files\": %zu, \"passes\": %zu", bytes, n,
           passes);
    for (int k = 0; k < 3; k++)
        printf(", \"%s_mbps\": %.3f, \"%s_html_bytes\": %zu", names[k],
               (double)bytes * (double)passes / spent[k] / 1e6, names[k],
               out[k]);
    printf("}\n");
    for (size_t i = 0; i < n; i++)
        free(docs[i].text);
    return 0;
}
