"""The cloud's file routes beyond the basics of test_cloud_api.py: large
listings, longpoll, upload sessions, write modes, moves and copies,
revisions, journal compaction and space usage, through the official SDK
(and raw HTTP where the SDK hides what crosses the wire)."""
import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import sdk_module, wait_for
from helpers import RecordingHook

HELLO = b"# Hello\n\nSome *text*.\n"
BLOCK = 4 << 20


@pytest.fixture
def token(cloud):
    return cloud.new_linked_account()[2]


@pytest.fixture
def dbx(cloud, token):
    return cloud.sdk(token)


@pytest.fixture
def dropbox(cloud):
    return sdk_module(cloud)


def rpc(cloud, token, route, arg, timeout=30):
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    return cloud.post("/2/" + route, json.dumps(arg).encode(), headers,
                      timeout=timeout)


def content_hash(data):
    blocks = [hashlib.sha256(data[i:i + BLOCK]).digest()
              for i in range(0, len(data), BLOCK)]
    return hashlib.sha256(b"".join(blocks)).hexdigest()


def changes(dbx, cursor):
    """Every change after cursor: [(kind, path_lower)], new cursor."""
    out = []
    for _ in range(100):
        r = dbx.files_list_folder_continue(cursor)
        out += [(type(e).__name__.replace("Metadata", ""), e.path_lower)
                for e in r.entries]
        cursor = r.cursor
        if not r.has_more:
            return out, cursor
    raise AssertionError("continue never finished")


def latest(dbx, path=""):
    return dbx.files_list_folder_get_latest_cursor(path,
                                                   recursive=True).cursor


def test_2500_files_in_pages_of_1000(cloud, token):
    local = threading.local()

    def put(i):
        if not hasattr(local, "dbx"):
            local.dbx = cloud.sdk(token)
        local.dbx.files_upload(b"%d" % i, f"/big/f{i:04d}.txt")

    start = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(2500)))
    assert time.monotonic() - start < 60

    dbx = cloud.sdk(token)
    r = dbx.files_list_folder("/big", limit=1000)
    pages = [r]
    while r.has_more:
        r = dbx.files_list_folder_continue(r.cursor)
        pages.append(r)
        assert len(pages) < 10
    assert [len(p.entries) for p in pages] == [1000, 1000, 500]
    assert [p.has_more for p in pages] == [True, True, False]
    paths = [e.path_lower for p in pages for e in p.entries]
    assert sorted(paths) == [f"/big/f{i:04d}.txt" for i in range(2500)]


def test_continue_names_unknown_field(cloud, token, dbx):
    cursor = dbx.files_list_folder("").cursor
    status, headers, body = rpc(cloud, token, "files/list_folder/continue",
                                {"cursor": cursor, "path": ""})
    assert status == 400
    assert headers["Content-Type"].startswith("text/plain")
    assert body.startswith(b'Error in call to API function '
                           b'"files/list_folder/continue": ')
    assert b"request body: unknown field 'path'" in body
    status, _, body = rpc(cloud, token, "files/list_folder/continue",
                          {"cursor": "not a cursor"})
    assert status == 400 and b'Invalid "cursor"' in body


def test_add_onto_another_file_is_conflict(cloud, token, dbx, dropbox):
    dbx.files_upload(b"one", "/c.md")
    status, headers, body = cloud.post(
        "/2/files/upload", b"two",
        {"Authorization": "Bearer " + token,
         "Content-Type": "application/octet-stream",
         "Dropbox-API-Arg": json.dumps({"path": "/c.md", "mode": "add"})})
    assert status == 409 and headers["Content-Type"] == "application/json"
    err = json.loads(body)
    assert err["error_summary"].startswith("path/conflict/file")
    assert err["error"]["reason"] == {".tag": "conflict",
                                      "conflict": {".tag": "file"}}


def test_identical_overwrite_is_silent(linked, dropbox):
    cloud, dbx = linked["cloud"], linked["dbx"]
    m1 = dbx.files_upload(HELLO, "/same.md")
    wait_for(lambda: cloud.admin("stats")["notifications_delivered"] >= 1,
             10, "the first notification")
    time.sleep(0.5)
    before = cloud.admin("stats")
    cursor = latest(dbx)
    m2 = dbx.files_upload(HELLO, "/same.md",
                          mode=dropbox.files.WriteMode.overwrite)
    assert m2.rev == m1.rev
    time.sleep(1.0)
    after = cloud.admin("stats")
    assert after["journal_entries"] == before["journal_entries"]
    assert after["notifications_delivered"] == \
        before["notifications_delivered"]
    assert changes(dbx, cursor)[0] == []
    assert len(dbx.files_list_revisions("/same.md").entries) == 1


def test_longpoll_sees_an_upload(cloud, dbx):
    cursor = latest(dbx)
    result = {}

    def poll():
        start = time.monotonic()
        result["r"] = dbx.files_list_folder_longpoll(cursor, timeout=30)
        result["s"] = time.monotonic() - start

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.5)
    dbx.files_upload(b"x", "/poked.md")
    t.join(35)
    assert result["r"].changes is True and result["s"] < 10
    # Below 30 s is refused (unless --longpoll-min-timeout-s says so).
    status, _, body = rpc(cloud, None, "files/list_folder/longpoll",
                          {"cursor": cursor, "timeout": 29})
    assert status == 400
    assert b"timeout: 29 is not within range [30, 480]" in body
    status, _, body = rpc(cloud, None, "files/list_folder/longpoll",
                          {"cursor": cursor, "timeout": 481})
    assert status == 400
    assert b"timeout: 481 is not within range [30, 480]" in body
    # 480 is allowed; a change is already waiting, so it answers at once.
    status, headers, body = rpc(cloud, None, "files/list_folder/longpoll",
                                {"cursor": cursor, "timeout": 480})
    assert status == 200 and json.loads(body) == {"changes": True}
    assert headers["Content-Type"] == "application/json"


def test_longpoll_times_out_without_auth(cloud_factory):
    cloud = cloud_factory("--longpoll-min-timeout-s", "1", port=0)
    token = cloud.new_linked_account()[2]
    status, _, body = rpc(cloud, token, "files/list_folder/get_latest_cursor",
                          {"path": "", "recursive": True})
    cursor = json.loads(body)["cursor"]
    start = time.monotonic()
    status, headers, body = rpc(cloud, None, "files/list_folder/longpoll",
                                {"cursor": cursor, "timeout": 1})
    took = time.monotonic() - start
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"changes": False}
    assert 0.9 <= took < 5
    status, _, body = rpc(cloud, None, "files/list_folder/longpoll",
                          {"cursor": cursor[:-4], "timeout": 1})
    assert status == 400 and b'Invalid "cursor"' in body


def test_longpoll_backoff_when_asked(cloud_factory):
    """--longpoll-backoff-s N: every answer carries "backoff": N, as the
    real service's do when it is busy; the official SDK reads it."""
    cloud = cloud_factory("--longpoll-min-timeout-s", "1",
                          "--longpoll-backoff-s", "7")
    dbx = cloud.sdk(cloud.new_linked_account()[2])
    cursor = dbx.files_list_folder_get_latest_cursor("", recursive=True).cursor
    status, _, body = rpc(cloud, None, "files/list_folder/longpoll",
                          {"cursor": cursor, "timeout": 1})
    assert status == 200 and json.loads(body) == {"changes": False,
                                                  "backoff": 7}
    dbx.files_upload(b"x", "/poked.md")
    # The SDK insists on timeout >= 30; a change is waiting, so at once.
    r = dbx.files_list_folder_longpoll(cursor, timeout=30)
    assert r.changes is True and r.backoff == 7


def test_upload_session_10_mib(dbx, dropbox):
    data = bytes(range(256)) * (10 * 4096)  # 10 MiB: three 4 MiB blocks
    files = dropbox.files
    first, second, last = data[:BLOCK], data[BLOCK:2 * BLOCK], \
        data[2 * BLOCK:]
    sid = dbx.files_upload_session_start(first).session_id
    dbx.files_upload_session_append_v2(
        second, files.UploadSessionCursor(sid, len(first)))
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_upload_session_append_v2(
            b"late", files.UploadSessionCursor(sid, 5))
    assert e.value.error.is_incorrect_offset()
    assert e.value.error.get_incorrect_offset().correct_offset == 2 * BLOCK
    m = dbx.files_upload_session_finish(
        last, files.UploadSessionCursor(sid, 2 * BLOCK),
        files.CommitInfo("/Big/ten.bin"))
    assert m.size == len(data) and m.content_hash == content_hash(data)
    _, resp = dbx.files_download("/big/ten.bin")
    assert resp.content == data
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_upload_session_finish(
            b"", files.UploadSessionCursor(sid, len(data)),
            files.CommitInfo("/again.bin"))
    assert e.value.error.get_lookup_failed().is_not_found()


def test_write_modes(dbx, dropbox):
    WriteMode = dropbox.files.WriteMode
    m1 = dbx.files_upload(b"v1", "/m.md")
    m2 = dbx.files_upload(b"v2", "/m.md", mode=WriteMode.update(m1.rev))
    assert m2.id == m1.id and m2.rev != m1.rev
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_upload(b"v3", "/m.md", mode=WriteMode.update(m1.rev))
    assert e.value.error.get_path().reason.get_conflict().is_file()

    a1 = dbx.files_upload(b"other", "/m.md", autorename=True)
    assert a1.path_display == "/m (1).md" and a1.name == "m (1).md"
    a2 = dbx.files_upload(b"third", "/m.md", autorename=True)
    assert a2.name == "m (2).md"
    same = dbx.files_upload(b"v2", "/m.md", autorename=True)
    assert same.rev == m2.rev and same.name == "m.md"
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_upload(b"v2", "/m.md", strict_conflict=True)
    assert e.value.error.get_path().reason.get_conflict().is_file()

    f = dbx.files_create_folder_v2("/Dir").metadata
    assert isinstance(f, dropbox.files.FolderMetadata)
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_create_folder_v2("/dir")
    assert e.value.error.get_path().get_conflict().is_folder()
    assert dbx.files_create_folder_v2("/dir", autorename=True) \
        .metadata.name == "dir (1)"


def test_move_and_copy_a_folder(dbx, dropbox):
    for p in ("/src/a.md", "/src/sub/b.md"):
        dbx.files_upload(p.encode(), p)
    ids = {e.path_lower: e.id for e in
           dbx.files_list_folder("/src", recursive=True).entries}
    cursor = latest(dbx)
    sub_cursor = latest(dbx, "/src/sub")
    r = dbx.files_move_v2("/src", "/Dst")
    assert isinstance(r.metadata, dropbox.files.FolderMetadata)
    assert r.metadata.path_display == "/Dst"
    got, cursor = changes(dbx, cursor)
    # A folder move: the old path deleted (and each path below it, so a
    # cursor on a subfolder sees its own paths go), then every entry
    # under the new path, top-down.  Nothing else.
    assert got == [("Deleted", "/src"), ("Deleted", "/src/a.md"),
                   ("Deleted", "/src/sub"), ("Deleted", "/src/sub/b.md"),
                   ("Folder", "/dst"), ("File", "/dst/a.md"),
                   ("Folder", "/dst/sub"), ("File", "/dst/sub/b.md")]
    assert changes(dbx, sub_cursor)[0] == [("Deleted", "/src/sub"),
                                           ("Deleted", "/src/sub/b.md")]
    moved = {e.path_lower: e.id for e in
             dbx.files_list_folder("/dst", recursive=True).entries}
    assert moved["/dst/sub/b.md"] == ids["/src/sub/b.md"]
    _, resp = dbx.files_download("/dst/sub/b.md")
    assert resp.content == b"/src/sub/b.md"

    r = dbx.files_copy_v2("/dst", "/copy")
    got, cursor = changes(dbx, cursor)
    assert got == [("Folder", "/copy"), ("File", "/copy/a.md"),
                   ("Folder", "/copy/sub"), ("File", "/copy/sub/b.md")]
    copied = dbx.files_get_metadata("/copy/sub/b.md")
    assert copied.id != moved["/dst/sub/b.md"]

    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_move_v2("/dst", "/copy")
    assert e.value.error.get_to().get_conflict().is_folder()
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_move_v2("/dst", "/dst/sub/inner")
    assert e.value.error.is_cant_move_folder_into_itself()
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_move_v2("/nowhere", "/x")
    assert e.value.error.get_from_lookup().is_not_found()


def test_case_only_rename_is_not_reported(dbx):
    dbx.files_upload(b"x", "/case/Readme.md")
    cursor = latest(dbx)
    r = dbx.files_move_v2("/case/Readme.md", "/case/README.md")
    assert r.metadata.path_display == "/case/README.md"
    assert changes(dbx, cursor)[0] == []
    assert dbx.files_get_metadata("/case/readme.md").name == "README.md"


def test_nfd_and_nfc_name_one_file(dbx, dropbox):
    nfc, nfd = "/caf\u00e9.md", "/cafe\u0301.md"
    m = dbx.files_upload(HELLO, nfc)
    again = dbx.files_upload(HELLO, nfd)
    assert again.id == m.id and again.rev == m.rev
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_upload(b"other", nfd)
    assert e.value.error.get_path().reason.get_conflict().is_file()
    assert [e.name for e in dbx.files_list_folder("").entries] == \
        ["caf\u00e9.md"]


def test_list_revisions_and_download_by_rev(dbx, dropbox):
    WriteMode = dropbox.files.WriteMode
    revs = [dbx.files_upload(b"v%d" % i, "/r.md",
                             mode=WriteMode.overwrite).rev
            for i in range(3)]
    r = dbx.files_list_revisions("/r.md")
    assert r.is_deleted is False
    assert [e.rev for e in r.entries] == revs[::-1]
    assert [e.size for e in r.entries] == [2, 2, 2]
    md, resp = dbx.files_download("rev:" + revs[0])
    assert resp.content == b"v0" and md.rev == revs[0]
    _, resp = dbx.files_download("/r.md", rev=revs[1])
    assert resp.content == b"v1"
    dbx.files_delete_v2("/r.md")
    r = dbx.files_list_revisions("/r.md", limit=2)
    assert r.is_deleted is True and len(r.entries) == 2
    _, resp = dbx.files_download("rev:" + revs[2])  # the blob stays
    assert resp.content == b"v2"
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_download("rev:0123456789abcdef")
    assert e.value.error.get_path().is_not_found()


def test_compacted_journal_resets_cursor(cloud_factory):
    cloud = cloud_factory("--journal-max-age-s", "1")
    dropbox = sdk_module(cloud)
    token = cloud.new_linked_account()[2]
    dbx = cloud.sdk(token)
    dbx.files_upload(b"a", "/a.md")
    cursor = latest(dbx)
    dbx.files_upload(b"b", "/b.md")
    time.sleep(2.2)
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_list_folder_continue(cursor)
    assert e.value.error.is_reset()
    status, headers, body = rpc(cloud, token, "files/list_folder/continue",
                                {"cursor": cursor})
    assert status == 409 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"error_summary": "reset/..",
                                "error": {".tag": "reset"}}
    fresh = latest(dbx)
    dbx.files_upload(b"c", "/c.md")
    assert changes(dbx, fresh)[0] == [("File", "/c.md")]


def test_space_usage(dbx):
    dbx.files_upload(b"12345", "/s1")
    dbx.files_upload(b"123", "/d/s2")
    u = dbx.users_get_space_usage()
    assert u.used == 8
    assert u.allocation.is_individual()
    assert u.allocation.get_individual().allocated >= 2 << 30


def test_api_result_escapes_lowercase(cloud, token, dbx):
    dbx.files_upload(b"e", "/\u00c9t\u00e9 \U0001f600.md")
    status, headers, _ = cloud.post(
        "/2/files/download", b"",
        {"Authorization": "Bearer " + token,
         "Dropbox-API-Arg": json.dumps({"path": "/\u00e9t\u00e9 "
                                        "\U0001f600.md"})})
    assert status == 200
    result = headers["Dropbox-API-Result"]
    assert "\\u00c9t\\u00e9 \\ud83d\\ude00.md" in result
    assert json.loads(result)["name"] == "\u00c9t\u00e9 \U0001f600.md"


def test_identical_upload_notifies_nobody(cloud, dropbox):
    """Uploading the bytes a file already holds (add, overwrite, update
    with its rev) creates no revision and no journal entry, and the
    webhook receiver hears nothing; a real change right after is heard."""
    with RecordingHook() as hook:
        app = cloud.new_app("silent")
        account, _, token = cloud.new_linked_account(app)
        uri = hook.url
        assert cloud.admin("webhooks/set", {"app_key": app["app_key"],
                                            "uri": uri})["state"] == \
            "verified"
        dbx = cloud.sdk(token)
        WriteMode = dropbox.files.WriteMode
        m1 = dbx.files_upload(HELLO, "/same.md")
        wait_for(lambda: len(hook.bodies) == 1, 10,
                 "the first notification")
        journal = cloud.admin("stats")["journal_entries"]
        for mode in (WriteMode.add, WriteMode.overwrite,
                     WriteMode.update(m1.rev)):
            assert dbx.files_upload(HELLO, "/same.md", mode=mode).rev == \
                m1.rev
        time.sleep(1.0)
        assert len(hook.bodies) == 1
        assert cloud.admin("stats")["journal_entries"] == journal
        assert len(dbx.files_list_revisions("/same.md").entries) == 1

        dbx.files_upload(b"changed", "/same.md", mode=WriteMode.overwrite)
        wait_for(lambda: len(hook.bodies) == 2, 10,
                 "the second notification")
        assert hook.bodies[1]["list_folder"]["accounts"] == [
            account["account_id"]]


def test_malformed_paths_hash_mismatch_closed_session(dbx, dropbox):
    """The rarer route errors, as the SDK decodes them."""
    files = dropbox.files
    for bad in ("/a/../b.md", "/a/./b.md", "/a//b.md", "/a/b.md/"):
        with pytest.raises(dropbox.exceptions.ApiError) as e:
            dbx.files_upload(b"x", bad)
        assert e.value.error.get_path().reason.is_malformed_path(), bad
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_move_v2("/a/../b", "/c")
    assert e.value.error.get_from_lookup().is_malformed_path()
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_upload(b"abc", "/h.md", content_hash="0" * 64)
    assert e.value.error.is_content_hash_mismatch()
    assert dbx.files_upload(b"abc", "/h.md",
                            content_hash=content_hash(b"abc")).size == 3

    sid = dbx.files_upload_session_start(b"ab", close=True).session_id
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_upload_session_append_v2(
            b"cd", files.UploadSessionCursor(sid, 2))
    assert e.value.error.is_closed()
    m = dbx.files_upload_session_finish(
        b"", files.UploadSessionCursor(sid, 2), files.CommitInfo("/ab"))
    assert m.size == 2


def test_relocation_and_session_limits(cloud_factory):
    """The real service's limits (10,000 entries a move or copy, 4 GiB a
    session) are options, so that their errors can be reached here."""
    cloud = cloud_factory("--max-relocate-entries", "3",
                          "--max-session-bytes", "10")
    dropbox = sdk_module(cloud)
    dbx = cloud.sdk(cloud.new_linked_account()[2])
    for name in ("a", "b"):
        dbx.files_upload(b"x", f"/small/{name}.md")
    for name in ("a", "b", "c"):
        dbx.files_upload(b"x", f"/big/{name}.md")

    # /small and its two files: 3 entries, allowed; /big: 4, refused.
    dbx.files_copy_v2("/small", "/small-copy")
    for call in (dbx.files_move_v2, dbx.files_copy_v2):
        with pytest.raises(dropbox.exceptions.ApiError) as e:
            call("/big", "/elsewhere")
        assert e.value.error.is_too_many_files()
    assert dbx.files_get_metadata("/big/c.md").name == "c.md"

    start = dbx.files_upload_session_start(b"0123456789")
    cursor = dropbox.files.UploadSessionCursor(start.session_id, 10)
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_upload_session_append_v2(b"x", cursor)
    assert e.value.error.is_too_large()
