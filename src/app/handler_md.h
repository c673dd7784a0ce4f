/*
 * handler_md: the built-in handler, Markdown to HTML.
 *
 * For every file whose name ends in ".md", in any case (".md", ".MD",
 * ".Md", ".mD"), the handler downloads it, renders it with md4c-html
 * (GitHub dialect: tables, strikethrough, task lists, permissive
 * autolinks; no renderer flags), and uploads the result beside it with
 * the extension replaced by ".html": "/Docs/Intro.MD" gives
 * "/Docs/Intro.html".  The rest of the path keeps its display case.
 *
 * A deleted ".md" (or one moved away, which lists as deleted at its old
 * path) leaves its ".html" alone unless delete_html is set; then the
 * ".html" beside it is deleted too (counter "html_deleted").  A moved
 * folder lists its files at their new paths, where the moved ".html"
 * already holds the right content, so nothing is uploaded again.
 *
 * Deliberately not converted: ".markdown", ".mdx" and other extensions
 * (replacing ".markdown" would need a second naming rule and nobody has
 * asked for it), a file named just ".md" (a dotfile, not a document),
 * folders and deleted entries, and ".html" files (our own output).
 *
 * Before uploading, the handler asks for the metadata of the ".html" and
 * uploads nothing when its content_hash already equals the new HTML's
 * (counter "skipped_identical"); otherwise it uploads with mode
 * overwrite (counter "conversions").  So a replayed notification or a
 * re-listing from scratch costs downloads and renders but no writes, and
 * the app's own uploads do not start an endless loop of changes.
 */
#ifndef DBX_HANDLER_MD_H
#define DBX_HANDLER_MD_H

#include "app/handler.h"
#include "app/state.h"

#include <stdbool.h>
#include <stddef.h>

/* The largest HTML the handler produces and uploads; a larger rendering
 * fails the entry. */
#define HANDLER_MD_MAX_HTML (128u * 1024 * 1024)

/* True when path (or a bare name) ends in ".md" in any case and the last
 * component has a name before that extension. */
bool handler_md_is_markdown(const char *path);

/* The HTML path for a Markdown path: the last three characters replaced
 * by ".html".  Returns a new string (the caller's), or NULL when path is
 * not Markdown. */
char *handler_md_html_path(const char *path);

/* Renders src (len bytes, followed by a NUL: md4c 0.4.8 may look for
 * line ends with strcspn, reading up to the terminator) exactly as
 * md_html(src, len, .., MD_DIALECT_GITHUB, 0) does.  On 0, *html (the
 * caller's, NUL-terminated) holds *html_len bytes; -1 when md4c fails or
 * the result would exceed HANDLER_MD_MAX_HTML. */
int handler_md_render(const char *src, size_t len, char **html,
                      size_t *html_len);

struct handler_md_config {
    /* What happens to X.html when X.md is deleted or moved away: false
     * (the default) keeps it, true deletes it.  Keeping is the default
     * because the .html may have been edited or shared since, and a
     * deleted file cannot be brought back by the app. */
    bool delete_html;
};

/* Fills h with the Markdown handler.  Counters go to st, which must
 * outlive the handler.  Call h->destroy(h->ctx) when done. */
void handler_md_init(struct handler *h, struct state *st,
                     const struct handler_md_config *cfg);

#endif
