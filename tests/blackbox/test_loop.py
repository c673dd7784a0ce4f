"""The whole loop with real processes.

A cloud, an app with two workers, an account linked to the app with its
token stored in the app, and a verified webhook (the `linked` fixture).
Files go in through the official SDK, as a user's client would put them;
the app must notice them through its webhook alone and write, beside
every Markdown file, an .html equal to md4c's own rendering.
"""
import os

import dropbox

from conftest import REPO, md4c_render, wait_for

CONVERT_TIMEOUT_S = 60
IDLE_TIMEOUT_S = 30

# Remote path -> file of the bundled sample.  Covers an uppercase .MD, a
# non-ASCII name and content, nested folders, a GitHub table, a long
# real chapter, and a file that is not Markdown.
UPLOADS = {
    "/loop/UPPER.MD": "notes/UPPER.MD",
    "/loop/café-résumé.md": "notes/café-résumé.md",
    "/loop/Deep/Nested/readme.md": "notes/Deep/Nested/Folder/readme.md",
    "/loop/ch04-01-what-is-ownership.md":
        "rust-book/ch04-01-what-is-ownership.md",
    "/loop/appendix/appendix-02-operators.md":
        "rust-book/appendix/appendix-02-operators.md",
    "/loop/data.txt": "notes/data.txt",
}


def sample_bytes(relative):
    with open(os.path.join(REPO, "sample", relative), "rb") as f:
        return f.read()


def html_path(md_path):
    return md_path[:-len(".md")] + ".html"


def upload(dbx, path, data):
    dbx.files_upload(data, path, mode=dropbox.files.WriteMode.overwrite)


def list_files(dbx):
    """Every file of the account: {path_lower: FileMetadata}."""
    result = dbx.files_list_folder("", recursive=True)
    entries = list(result.entries)
    while result.has_more:
        result = dbx.files_list_folder_continue(result.cursor)
        entries.extend(result.entries)
    return {e.path_lower: e for e in entries
            if isinstance(e, dropbox.files.FileMetadata)}


def download(dbx, path):
    _, response = dbx.files_download(path)
    return response.content


def converted(dbx, expected):
    """True when every path of expected ({md path: source bytes}) has an
    .html whose content is md4c's rendering of the source."""
    listed = list_files(dbx)
    for md, source in expected.items():
        html = html_path(md)
        if html.lower() not in listed:
            return False
        if download(dbx, html) != md4c_render(source):
            return False
    return True


def app_idle(app):
    """No account is pending or leased in the app."""
    accounts = app.status()["accounts"]
    return all(not a["pending"] and not a["leased"] for a in accounts)


def upload_sample(dbx):
    sources = {}
    for remote, relative in UPLOADS.items():
        data = sample_bytes(relative)
        upload(dbx, remote, data)
        if remote.lower().endswith(".md"):
            sources[remote] = data
    return sources


def test_every_markdown_file_gets_its_html(linked):
    dbx, app = linked["dbx"], linked["app"]
    sources = upload_sample(dbx)

    wait_for(lambda: converted(dbx, sources), CONVERT_TIMEOUT_S,
             "every .md to have a correct .html", interval_s=0.2)
    wait_for(lambda: app_idle(app), IDLE_TIMEOUT_S, "the app to be idle")

    listed = list_files(dbx)
    for md in sources:
        entry = listed[html_path(md).lower()]
        # The .html keeps the display case of its Markdown's name.
        assert entry.path_display == html_path(md)
    assert "/loop/data.html" not in listed
    assert "/loop/data.txt" in listed
    assert app.counter("conversions") >= len(sources)
    assert app.counter("notifications") >= 1
    assert linked["cloud"].admin("stats")["notifications_delivered"] >= 1


def test_a_modified_markdown_file_updates_its_html(linked):
    dbx, app = linked["dbx"], linked["app"]
    sources = upload_sample(dbx)
    wait_for(lambda: converted(dbx, sources), CONVERT_TIMEOUT_S,
             "every .md to have a correct .html", interval_s=0.2)

    path = "/loop/café-résumé.md"
    changed = sources[path] + (
        "\n## Ajouté ensuite\n\n| a | b |\n|---|---|\n| ü | ß |\n"
    ).encode()
    upload(dbx, path, changed)

    wait_for(lambda: download(dbx, html_path(path)) == md4c_render(changed),
             CONVERT_TIMEOUT_S, "the .html to follow the change",
             interval_s=0.2)
    wait_for(lambda: app_idle(app), IDLE_TIMEOUT_S, "the app to be idle")
    # The other pages were not disturbed.
    for md, source in sources.items():
        if md != path:
            assert download(dbx, html_path(md)) == md4c_render(source)
