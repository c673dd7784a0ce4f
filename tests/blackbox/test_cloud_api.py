"""The cloud's file API, seen through the official Dropbox SDK (and raw
HTTP where the SDK hides what crosses the wire).

The SDK must not notice that it talks to dbxhook: every result below is
decoded by its own generated validators."""
import hashlib
import json
import os
import re
import socket
import ssl
import urllib.request

import pytest

from conftest import sdk_module

HELLO = b"# Hello\n\nSome *text*.\n"
HELLO_HASH = ("eb181af190ea577d7a7953ae0d9ba69d"
              "16ea7c7cb74ec0cd055712d36317531d")
EMPTY_HASH = ("e3b0c44298fc1c149afbf4c8996fb924"
              "27ae41e4649b934ca495991b7852b855")


@pytest.fixture(autouse=True)
def _trust_cloud_ca(cloud, monkeypatch):
    # requests 2.28 verifies with REQUESTS_CA_BUNDLE (or its default
    # bundle) rather than the SDK's ca_certs, so point it at the cloud's.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cloud.ca)


@pytest.fixture
def dbx(cloud):
    _, _, token = cloud.new_linked_account()
    return cloud.sdk(token)


@pytest.fixture
def dropbox(cloud):
    return sdk_module(cloud)


def rpc(cloud, token, route, arg, content_type="application/json"):
    body = arg if isinstance(arg, bytes) else json.dumps(arg).encode()
    return cloud.post("/2/" + route, body,
                      {"Authorization": "Bearer " + token,
                       "Content-Type": content_type})


def all_entries(dbx, path="", recursive=True, limit=None):
    r = dbx.files_list_folder(path, recursive=recursive, limit=limit)
    entries = list(r.entries)
    pages = 1
    while r.has_more:
        r = dbx.files_list_folder_continue(r.cursor)
        entries += r.entries
        pages += 1
        assert pages < 1000
    return entries, r.cursor, pages


def test_upload_add_overwrite_and_conflict(dbx, dropbox):
    m1 = dbx.files_upload(b"one", "/Notes/a.md")
    assert isinstance(m1, dropbox.files.FileMetadata)
    assert m1.path_display == "/Notes/a.md" and m1.path_lower == "/notes/a.md"
    assert m1.size == 3 and m1.is_downloadable
    assert m1.id.startswith("id:") and len(m1.id) == 25
    assert len(m1.rev) >= 9 and int(m1.rev, 16) >= 0

    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_upload(b"two", "/notes/A.md")
    err = e.value.error
    assert err.is_path() and err.get_path().reason.is_conflict()
    assert err.get_path().reason.get_conflict().is_file()

    m2 = dbx.files_upload(b"two", "/notes/A.md",
                          mode=dropbox.files.WriteMode.overwrite)
    assert m2.id == m1.id and m2.rev != m1.rev
    assert m2.path_display == "/notes/A.md"
    _, resp = dbx.files_download("/NOTES/a.md")
    assert resp.content == b"two"

    folder = dbx.files_get_metadata("/notes")
    assert isinstance(folder, dropbox.files.FolderMetadata)
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_upload(b"x", "/Notes")
    assert e.value.error.get_path().reason.get_conflict().is_folder()
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_upload(b"x", "/Notes/a.md/inside.md")
    assert e.value.error.get_path().reason.get_conflict().is_file_ancestor()


def test_identical_upload_changes_nothing(dbx, dropbox):
    m1 = dbx.files_upload(HELLO, "/same.md")
    cursor = dbx.files_list_folder_get_latest_cursor("", recursive=True)
    m2 = dbx.files_upload(HELLO, "/same.md")
    m3 = dbx.files_upload(HELLO, "/same.md",
                          mode=dropbox.files.WriteMode.overwrite)
    assert m1.rev == m2.rev == m3.rev
    r = dbx.files_list_folder_continue(cursor.cursor)
    assert r.entries == [] and r.has_more is False
    # An empty continue hands back the same position.
    assert r.cursor == cursor.cursor


def test_content_hash_vectors(dbx):
    assert dbx.files_upload(b"", "/empty").content_hash == EMPTY_HASH
    assert dbx.files_upload(HELLO, "/hello.md").content_hash == HELLO_HASH
    big = bytes(range(256)) * (5 * 4096 + 7)  # crosses a 4 MiB block
    blocks = [hashlib.sha256(big[i:i + 4 << 20]).digest()
              for i in range(0, len(big), 4 << 20)]
    want = hashlib.sha256(b"".join(blocks)).hexdigest()
    m = dbx.files_upload(big, "/big.bin")
    assert m.content_hash == want and m.size == len(big)
    _, resp = dbx.files_download("/big.bin")
    assert resp.content == big


def test_list_folder_pagination(dbx):
    names = {f"/many/f{i:03d}.md" for i in range(250)}
    for n in sorted(names):
        dbx.files_upload(n.encode(), n)
    entries, _, pages = all_entries(dbx, "/many", recursive=False,
                                    limit=100)
    paths = [e.path_display for e in entries]
    assert sorted(paths) == sorted(names) and len(paths) == 250
    assert pages == 3
    entries, _, _ = all_entries(dbx, "", recursive=True, limit=100)
    paths = [e.path_display for e in entries]
    assert len(paths) == len(set(paths)) == 251  # the folder, once


def test_continue_reports_changes(dbx, dropbox):
    dbx.files_upload(b"keep", "/w/keep.md")
    dbx.files_upload(b"old", "/w/change.md")
    dbx.files_upload(b"gone", "/w/gone.md")
    entries, cursor, _ = all_entries(dbx, "/w")
    assert {e.name for e in entries} == {"w", "keep.md", "change.md",
                                         "gone.md"}

    dbx.files_upload(b"new", "/w/new.md")
    dbx.files_upload(b"v2", "/w/change.md",
                     mode=dropbox.files.WriteMode.overwrite)
    dbx.files_upload(b"v3", "/w/change.md",
                     mode=dropbox.files.WriteMode.overwrite)
    dbx.files_delete_v2("/w/gone.md")
    dbx.files_upload(b"elsewhere", "/other/x.md")

    r = dbx.files_list_folder_continue(cursor)
    got = {e.path_lower: e for e in r.entries}
    assert len(r.entries) == 3 and r.has_more is False
    assert isinstance(got["/w/new.md"], dropbox.files.FileMetadata)
    assert got["/w/change.md"].size == 2
    _, resp = dbx.files_download(got["/w/change.md"].id)
    assert resp.content == b"v3"
    assert isinstance(got["/w/gone.md"], dropbox.files.DeletedMetadata)

    # Small pages of changes: every change once, in order.
    cur = dbx.files_list_folder_get_latest_cursor("", recursive=True,
                                                  limit=2).cursor
    for i in range(5):
        dbx.files_upload(str(i).encode(), f"/p/{i}.md")
    seen = []
    for _ in range(10):
        r = dbx.files_list_folder_continue(cur)
        seen += [e.path_lower for e in r.entries]
        cur = r.cursor
        if not r.has_more:
            break
    assert seen == ["/p"] + [f"/p/{i}.md" for i in range(5)]


def test_download_metadata_delete(dbx, dropbox):
    m = dbx.files_upload(b"content", "/d/f.txt")
    cursor = dbx.files_list_folder_get_latest_cursor("",
                                                     recursive=True).cursor
    md, resp = dbx.files_download("/d/f.txt")
    assert md.rev == m.rev and resp.content == b"content"
    md, resp = dbx.files_download(m.id)
    assert resp.content == b"content"
    assert dbx.files_get_metadata(m.id).path_lower == "/d/f.txt"

    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_download("/d/missing.txt")
    assert e.value.error.is_path() and e.value.error.get_path().is_not_found()
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_download("/d")
    assert e.value.error.get_path().is_not_file()

    r = dbx.files_delete_v2("/D")
    assert isinstance(r.metadata, dropbox.files.FolderMetadata)
    # Every path that went away is reported, each as deleted.
    r = dbx.files_list_folder_continue(cursor)
    assert [(type(e).__name__, e.path_lower) for e in r.entries] == [
        ("DeletedMetadata", "/d"), ("DeletedMetadata", "/d/f.txt")]
    for p in ("/d", "/d/f.txt"):
        with pytest.raises(dropbox.exceptions.ApiError) as e:
            dbx.files_get_metadata(p)
        assert e.value.error.get_path().is_not_found()
    deleted = dbx.files_get_metadata("/d/f.txt", include_deleted=True)
    assert isinstance(deleted, dropbox.files.DeletedMetadata)
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_delete_v2("/d")
    assert e.value.error.is_path_lookup()
    assert e.value.error.get_path_lookup().is_not_found()
    entries, _, _ = all_entries(dbx)
    assert entries == []
    entries = dbx.files_list_folder("", recursive=True,
                                    include_deleted=True).entries
    assert {e.path_lower for e in entries} == {"/d", "/d/f.txt"}
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_list_folder("/d")
    assert e.value.error.get_path().is_not_found()


def test_get_current_account(cloud):
    account, _, token = cloud.new_linked_account()
    me = cloud.sdk(token).users_get_current_account()
    assert me.account_id == account["account_id"]
    # Shaped like the real service's: "dbid:AA" and 33 url-safe chars.
    assert re.fullmatch(r"dbid:AA[A-Za-z0-9_-]{33}", me.account_id)
    assert me.email == account["email"]
    assert me.name.display_name == account["name"]
    assert me.disabled is False and me.account_type.is_basic()


def test_link_refuses_unknown_scopes(cloud):
    app = cloud.new_app()
    account = cloud.new_account()
    status, _, body = cloud.post(
        "/admin/links/create",
        {"app_key": app["app_key"], "account_id": account["account_id"],
         "scopes": "files.metadata.read bogus.scope"},
        {"Authorization": "Bearer " + cloud.admin_token})
    assert status == 400
    assert b"unknown scope" in body
    linked = cloud.admin("links/create", {
        "app_key": app["app_key"], "account_id": account["account_id"],
        "scopes": "files.content.read files.metadata.read"})
    assert linked["scopes"] == "files.metadata.read files.content.read"


def test_auth_errors(cloud, dropbox):
    bad = cloud.sdk("sl.not-a-real-token")
    with pytest.raises(dropbox.exceptions.AuthError) as e:
        bad.files_list_folder("")
    assert e.value.error.is_invalid_access_token()

    _, _, token = cloud.new_linked_account(scopes="files.metadata.read")
    limited = cloud.sdk(token)
    limited.files_list_folder("")
    with pytest.raises(dropbox.exceptions.AuthError) as e:
        limited.files_upload(b"x", "/x")
    assert e.value.error.is_missing_scope()
    assert e.value.error.get_missing_scope().required_scope == \
        "files.content.write"

    status, headers, body = rpc(cloud, "sl.nope", "files/list_folder",
                                {"path": ""})
    assert status == 401
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"] == {".tag": "invalid_access_token"}


def test_bad_cursors(cloud, dbx, dropbox):
    cursor = dbx.files_list_folder("").cursor
    flipped = cursor[:10] + ("A" if cursor[10] != "A" else "B") + \
        cursor[11:]
    for bad in (flipped, "garbage!", cursor[:-6]):
        with pytest.raises(dropbox.exceptions.BadInputError) as e:
            dbx.files_list_folder_continue(bad)
        assert 'Invalid "cursor" parameter' in e.value.message
    _, _, token = cloud.new_linked_account()
    with pytest.raises(dropbox.exceptions.BadInputError):
        cloud.sdk(token).files_list_folder_continue(cursor)


def test_non_ascii_names(cloud, dbx):
    name = "/Ünïcödé/Résumé 日本.md"
    m = dbx.files_upload(HELLO, name)
    assert m.path_display == name and m.name == "Résumé 日本.md"
    assert m.path_lower == "/ünïcödé/résumé 日本.md"
    # NFD input names the same file.
    nfd = "/U\u0308ni\u0308co\u0308de\u0301/Re\u0301sume\u0301 日本.md"
    md, resp = dbx.files_download(nfd)
    assert md.id == m.id and resp.content == HELLO
    assert [e.name for e in dbx.files_list_folder("/ünïcödé").entries] == \
        ["Résumé 日本.md"]


def test_wire_format(cloud):
    _, _, token = cloud.new_linked_account()
    status, headers, body = rpc(cloud, token, "files/list_folder",
                                {"path": ""})
    assert status == 200 and headers["Content-Type"] == "application/json"

    arg = json.dumps({"path": "/Été.md", "mode": "add"})  # ASCII-escaped
    status, headers, body = cloud.post(
        "/2/files/upload", "é".encode(),
        {"Authorization": "Bearer " + token, "Dropbox-API-Arg": arg,
         "Content-Type": "application/octet-stream"})
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["name"] == "Été.md"

    status, headers, body = cloud.post(
        "/2/files/download", b"",
        {"Authorization": "Bearer " + token,
         "Dropbox-API-Arg": json.dumps({"path": "/été.md"})})
    assert status == 200 and body == "é".encode()
    result = headers["Dropbox-API-Result"]
    assert result.isascii() and "\\u00c9t\\u00e9.md" in result.lower()
    assert json.loads(result)["path_display"] == "/Été.md"

    status, headers, body = rpc(cloud, token, "files/get_metadata",
                                {"path": "/nothing"})
    assert status == 409
    assert json.loads(body) == {
        "error_summary": "path/not_found/..",
        "error": {".tag": "path", "path": {".tag": "not_found"}}}


@pytest.mark.parametrize("arg,needle", [
    (b"{not json", b"could not decode input as JSON"),
    ({"path": "", "bogus": 1}, b"unknown field 'bogus'"),
    ({"path": 5}, b"path: expected string"),
    ({"recursive": True}, b"missing required field 'path'"),
    ({"path": "", "limit": 0}, b"limit: 0 is not within range [1, 2000]"),
    ({"path": "", "limit": 2001},
     b"limit: 2001 is not within range [1, 2000]"),
    ({"path": "no-slash"}, b"did not match pattern"),
])
def test_malformed_calls_are_400(cloud, arg, needle):
    _, _, token = cloud.new_linked_account()
    status, headers, body = rpc(cloud, token, "files/list_folder", arg)
    assert status == 400
    assert headers["Content-Type"].startswith("text/plain")
    assert body.startswith(b'Error in call to API function '
                           b'"files/list_folder": ')
    assert needle in body


def test_data_survives_restart(cloud, dropbox):
    _, _, token = cloud.new_linked_account()
    dbx = cloud.sdk(token)
    m = dbx.files_upload(HELLO, "/keep/me.md")
    cursor = dbx.files_list_folder("", recursive=True).cursor
    cloud.restart()

    dbx = cloud.sdk(token)
    md, resp = dbx.files_download("/keep/me.md")
    assert md.rev == m.rev and resp.content == HELLO
    dbx.files_upload(b"after", "/keep/new.md")
    r = dbx.files_list_folder_continue(cursor)
    assert [e.path_lower for e in r.entries] == ["/keep/new.md"]


def test_limit_bounds_are_accepted(dbx):
    # The SDK refuses 0 and 2001 itself; test_malformed_calls_are_400
    # shows the cloud does too.
    dbx.files_upload(b"1", "/a.md")
    dbx.files_upload(b"2", "/b.md")
    r = dbx.files_list_folder("", limit=1)
    assert len(r.entries) == 1 and r.has_more is True
    r = dbx.files_list_folder("", limit=2000)
    assert len(r.entries) == 2 and r.has_more is False
    assert dbx.files_list_folder_get_latest_cursor("", limit=2000).cursor


def test_http_level_errors(cloud):
    _, _, token = cloud.new_linked_account()
    auth = {"Authorization": "Bearer " + token}
    status, headers, body = rpc(cloud, token, "files/no_such_route", {})
    assert (status, body) == (404, b"Unknown API function")
    assert headers["Content-Type"].startswith("text/plain")

    status, headers, body = rpc(cloud, token, "files/list_folder",
                                {"path": ""}, content_type="text/xml")
    assert status == 400 and headers["Content-Type"].startswith(
        "text/plain")
    assert body.startswith(b'Error in call to API function '
                           b'"files/list_folder": Bad HTTP "Content-Type" '
                           b'header: "text/xml".')
    status, _, body = cloud.post(
        "/2/files/upload", b"x", dict(auth, **{
            "Content-Type": "application/json",
            "Dropbox-API-Arg": json.dumps({"path": "/x"})}))
    assert status == 400
    assert b'Bad HTTP "Content-Type" header: "application/json"' in body
    assert b'"application/octet-stream"' in body

    req_status, _, body = _raw(cloud, b"GET /2/files/list_folder HTTP/1.1"
                               b"\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert req_status == 400 and b"Expected POST, got GET" in body

    status, headers, body = rpc(cloud, token, "files/list_folder",
                                b" " * (1024 * 1024 + 1))
    assert (status, body) == (413, b"Request body too large")
    assert headers["Content-Type"].startswith("text/plain")
    # An upload announcing more than 150 MiB is refused before its body.
    req_status, _, body = _raw(
        cloud, b"POST /2/files/upload HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\n\r\n" % (150 * 1024 * 1024 + 1))
    assert req_status == 413 and b"too large" in body
    # A header block past the server's limit.
    req_status, _, body = _raw(
        cloud, b"POST /2/files/list_folder HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-Filler-%d: %s\r\n" % (i, b"f" * 900)
                   for i in range(128)) +
        b"Content-Length: 0\r\n\r\n")
    assert req_status == 431


def _raw(cloud, request):
    """Sends request bytes over TLS; returns (status, head, body) of the
    answer, read until the server closes or 5 s pass."""
    ctx = ssl.create_default_context(cafile=cloud.ca)
    with socket.create_connection(("127.0.0.1", cloud.port), 5) as sock:
        with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            tls.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data or len(data) < 4096:
                try:
                    chunk = tls.recv(4096)
                except (socket.timeout, ssl.SSLError):
                    break
                if not chunk:
                    break
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head, body


ROUTE_SCOPES = [
    ("files/list_folder", "files.metadata.read"),
    ("files/list_folder/continue", "files.metadata.read"),
    ("files/list_folder/get_latest_cursor", "files.metadata.read"),
    ("files/get_metadata", "files.metadata.read"),
    ("files/list_revisions", "files.metadata.read"),
    ("files/download", "files.content.read"),
    ("files/upload", "files.content.write"),
    ("files/upload_session/start", "files.content.write"),
    ("files/upload_session/append_v2", "files.content.write"),
    ("files/upload_session/finish", "files.content.write"),
    ("files/create_folder_v2", "files.content.write"),
    ("files/delete_v2", "files.content.write"),
    ("files/move_v2", "files.content.write"),
    ("files/copy_v2", "files.content.write"),
    ("users/get_current_account", "account_info.read"),
    ("users/get_space_usage", "account_info.read"),
]
ALL_SCOPES = ("files.metadata.read", "files.content.read",
              "files.content.write", "account_info.read")


def test_every_route_enforces_its_scope(cloud):
    """Each route, called with a token holding every scope but its own,
    is a 401 missing_scope naming that scope; with only its own scope it
    gets past authentication."""
    app = cloud.new_app()
    without, only = {}, {}
    for scope in ALL_SCOPES:
        others = " ".join(s for s in ALL_SCOPES if s != scope)
        without[scope] = cloud.link(app["app_key"],
                                    cloud.new_account()["account_id"],
                                    others)
        only[scope] = cloud.link(app["app_key"],
                                 cloud.new_account()["account_id"], scope)

    def call(route, token):
        upload = route.startswith("files/upload")
        return cloud.post("/2/" + route, b"" if upload else b"{}", {
            "Authorization": "Bearer " + token,
            "Content-Type": "application/octet-stream" if upload
            else "application/json"})

    for route, scope in ROUTE_SCOPES:
        status, headers, body = call(route, without[scope])
        assert status == 401, route
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body) == {
            "error_summary": "missing_scope/..",
            "error": {".tag": "missing_scope", "required_scope": scope}}, \
            route
        status, _, body = call(route, only[scope])
        assert status in (200, 400, 409), (route, status, body)


def test_401_wire_format(cloud):
    account, _, token = cloud.new_linked_account()
    cloud.admin("faults/set", {"account_id": account["account_id"],
                               "fault": "expired_access_token",
                               "count": 1})
    status, headers, body = rpc(cloud, token, "files/list_folder",
                                {"path": ""})
    assert status == 401 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "error_summary": "expired_access_token/..",
        "error": {".tag": "expired_access_token"}}
    status, _, body = rpc(cloud, "sl.nope", "files/list_folder",
                          {"path": ""})
    assert json.loads(body) == {
        "error_summary": "invalid_access_token/..",
        "error": {".tag": "invalid_access_token"}}


def test_upload_style_wire_format(cloud):
    """Upload-style routes: the argument in Dropbox-API-Arg, fields named
    when wrong, JSON results with Content-Type application/json."""
    _, _, token = cloud.new_linked_account()

    def upload(route, arg, data=b"abc"):
        return cloud.post("/2/" + route, data, {
            "Authorization": "Bearer " + token,
            "Content-Type": "application/octet-stream",
            "Dropbox-API-Arg": json.dumps(arg)})

    status, headers, body = upload("files/upload",
                                   {"path": "/u.md", "cursor": "x"})
    assert status == 400 and headers["Content-Type"].startswith(
        "text/plain")
    assert body == (b'Error in call to API function "files/upload": '
                    b'HTTP header "Dropbox-API-Arg": unknown field '
                    b"'cursor'")
    status, headers, body = upload("files/upload_session/start", {})
    assert status == 200 and headers["Content-Type"] == "application/json"
    sid = json.loads(body)["session_id"]
    status, headers, body = upload(
        "files/upload_session/finish",
        {"cursor": {"session_id": sid, "offset": 3},
         "commit": {"path": "/s.md"}}, b"def")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["size"] == 6
    status, _, body = cloud.post("/2/files/upload", b"x", {
        "Authorization": "Bearer " + token,
        "Content-Type": "application/octet-stream"})
    assert status == 400 and b'Must provide HTTP header "Dropbox-API-Arg"' \
        in body


def test_https_prints_its_ca_and_http_when_asked(cloud, cloud_factory):
    """HTTPS by default with a CA made on first start, whose path the
    listening line gives; plain HTTP with --http (and then no CA)."""
    line = next(l for l in cloud.process.output().splitlines()
                if l.startswith("dbxhook cloud listening on "))
    assert line.startswith(f"dbxhook cloud listening on {cloud.url} ca=")
    ca = line.split(" ca=", 1)[1]
    assert ca.startswith("/") and os.path.samefile(ca, cloud.ca)

    plain = cloud_factory("--http", port=0)
    url = f"http://127.0.0.1:{plain.port}"
    line = next(l for l in plain.process.output().splitlines()
                if l.startswith("dbxhook cloud listening on "))
    assert line == f"dbxhook cloud listening on {url}"
    token = plain.link(plain.new_app()["app_key"],
                       plain.new_account()["account_id"])
    req = urllib.request.Request(
        url + "/2/users/get_current_account", data=b"null", method="POST",
        headers={"Authorization": "Bearer " + token,
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
        assert json.loads(r.read())["account_id"].startswith("dbid:AA")
