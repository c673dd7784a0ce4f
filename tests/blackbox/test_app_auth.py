"""The app and OAuth 2: linking with /login (code flow, PKCE, offline),
refreshing an expired access token (a real expiry and the cloud's fault),
and an account whose refresh token is refused (it must be linked again:
visible in status, no retry loop, cursor kept)."""
import json
import sqlite3
import time
import urllib.parse

import requests

from conftest import sdk_module, wait_converted, wait_for

WAIT_S = 30
CB = "/oauth/callback"


def oauth_tokens(cloud, app_info, account_id, redirect):
    """The code flow by hand (offline, client secret over HTTP Basic)."""
    url = cloud.url + "/oauth2/authorize?" + urllib.parse.urlencode({
        "response_type": "code", "client_id": app_info["app_key"],
        "token_access_type": "offline", "redirect_uri": redirect,
        "account": account_id})
    r = requests.get(url, allow_redirects=False, verify=cloud.ca, timeout=10)
    assert r.status_code == 302, r.text
    q = urllib.parse.parse_qs(urllib.parse.urlparse(
        r.headers["Location"]).query)
    r = requests.post(cloud.url + "/oauth2/token", data={
        "grant_type": "authorization_code", "code": q["code"][0],
        "redirect_uri": redirect},
        auth=(app_info["app_key"], app_info["app_secret"]),
        verify=cloud.ca, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def stored_token(app, aid):
    """(access token, expires_s, relink) as the app stored them."""
    db = sqlite3.connect(f"file:{app.data}/app.db?mode=ro", uri=True,
                         timeout=10)
    try:
        return db.execute("SELECT token, expires_s, relink FROM accounts "
                          "WHERE account = ?", (aid,)).fetchone()
    finally:
        db.close()


def account_status(app, aid):
    return [a for a in app.status()["accounts"] if a["account"] == aid][0]


def refresh_lines(app):
    return app.process.output().count("dbxapi token refresh result=")


def linked_offline(cloud, app_factory, workers=1, extra=()):
    """An app with --app-key and an account linked through OAuth with an
    offline token stored in the app; returns a dict."""
    app_info = cloud.new_app("auth app")
    redirect = "http://127.0.0.1:9/cb"
    cloud.admin("apps/set_redirect_uris", {"app_key": app_info["app_key"],
                                           "uris": [redirect]})
    account = cloud.new_account()
    aid = account["account_id"]
    tokens = oauth_tokens(cloud, app_info, aid, redirect)
    assert tokens["refresh_token"]
    app = app_factory(app_info["app_secret"], cloud=cloud, workers=workers,
                      extra_args=["--app-key", app_info["app_key"]]
                      + list(extra))
    app.set_token(aid, tokens["access_token"] + " " +
                  tokens["refresh_token"])
    # The test's own client: an SDK client that refreshes by itself.
    dropbox = sdk_module(cloud)
    dbx = dropbox.Dropbox(oauth2_refresh_token=tokens["refresh_token"],
                          app_key=app_info["app_key"],
                          app_secret=app_info["app_secret"])
    return {"app": app, "aid": aid, "tokens": tokens, "dbx": dbx,
            "app_info": app_info, "cloud": cloud}


def sync(s, path, data):
    s["dbx"].files_upload(data, path)
    s["app"].appctl("mark", "--account", s["aid"])
    wait_converted(s["dbx"], path, data)


def test_real_expiry_refreshes_once_and_stores(cloud_factory, app_factory):
    cloud = cloud_factory("--oauth-auto-approve", "--token-lifetime-s", "2")
    s = linked_offline(cloud, app_factory, extra=["--page-parallel", "4"])
    app, aid = s["app"], s["aid"]
    first, exp1, _ = stored_token(app, aid)
    sync(s, "/one.md", b"# one\n")
    time.sleep(2.5)  # the stored access token is now expired
    for i in range(6):
        s["dbx"].files_upload(f"# two {i}\n".encode(), f"/two{i}.md")
    app.appctl("mark", "--account", aid)
    for i in range(6):
        wait_converted(s["dbx"], f"/two{i}.md", f"# two {i}\n".encode())
    second, exp2, relink = stored_token(app, aid)
    assert second != first and exp2 > exp1 and relink == 0
    assert exp2 >= int(time.time()) - 5
    # One refresh for the whole run, not one per page thread (the run
    # took well under the 2 s lifetime).
    refreshes = app.counter("refreshes")
    assert 1 <= refreshes <= 2, refreshes
    assert app.counter("failures") == 0
    assert account_status(app, aid)["needs_relink"] is False


def test_expired_fault_refreshes_and_replays(cloud_factory, app_factory):
    cloud = cloud_factory("--oauth-auto-approve")
    s = linked_offline(cloud, app_factory)
    app, aid = s["app"], s["aid"]
    sync(s, "/one.md", b"# one\n")
    first, exp1, _ = stored_token(app, aid)
    cloud.admin("faults/set", {"account_id": aid,
                               "fault": "expired_access_token", "count": 1,
                               "route": "files/list_folder/continue"})
    time.sleep(1.1)  # a new expiry second
    sync(s, "/two.md", b"# two\n")
    second, exp2, _ = stored_token(app, aid)
    assert second != first and exp2 > exp1
    assert app.counter("refreshes") == 1
    assert refresh_lines(app) == 1
    assert app.counter("failures") == 0   # replayed, not retried later
    assert "result=ok" in app.process.output()


def test_worker_without_secret_refreshes_as_a_public_client(
        cloud_factory, app_factory, bin_path, tmp_path):
    """`dbxhook worker --app-key` without the app secret names itself with
    client_id in the refresh form (as a PKCE client does), not with an
    HTTP Basic header whose password is empty."""
    import base64
    import hashlib
    import os
    import subprocess
    cloud = cloud_factory("--oauth-auto-approve")
    s = linked_offline(cloud, app_factory, workers=0)
    app, aid = s["app"], s["aid"]
    # Tokens linked with PKCE, the only ones Dropbox (and the cloud)
    # refreshes without the secret.
    key, redirect = s["app_info"]["app_key"], "http://127.0.0.1:9/cb"
    verifier = "v" * 20 + "-pkce-verifier-of-enough-length"
    challenge = base64.urlsafe_b64encode(hashlib.sha256(
        verifier.encode()).digest()).decode().rstrip("=")
    r = requests.get(cloud.url + "/oauth2/authorize?" + urllib.parse.urlencode({
        "response_type": "code", "client_id": key, "account": aid,
        "token_access_type": "offline", "redirect_uri": redirect,
        "code_challenge": challenge, "code_challenge_method": "S256"}),
        allow_redirects=False, verify=cloud.ca, timeout=10)
    assert r.status_code == 302, r.text
    code = urllib.parse.parse_qs(urllib.parse.urlparse(
        r.headers["Location"]).query)["code"][0]
    r = requests.post(cloud.url + "/oauth2/token", data={
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": redirect, "client_id": key,
        "code_verifier": verifier}, verify=cloud.ca, timeout=10)
    assert r.status_code == 200, r.text
    pkce = r.json()
    app.set_token(aid, pkce["access_token"] + " " + pkce["refresh_token"])
    first, _, _ = stored_token(app, aid)
    cloud.admin("faults/set", {"account_id": aid,
                               "fault": "expired_access_token", "count": 1,
                               "route": "files/list_folder"})
    env = {k: v for k, v in os.environ.items()
           if k != "DBXHOOK_APP_SECRET"}
    log_path = tmp_path / "worker-nosecret.log"
    with open(log_path, "wb") as log:
        w = subprocess.Popen(
            [bin_path, "worker", "--data", app.data, "--api-url", cloud.url,
             "--content-url", cloud.url, "--ca", cloud.ca, "--app-key",
             s["app_info"]["app_key"]],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env)
        try:
            s["dbx"].files_upload(b"# one\n", "/one.md")
            app.appctl("mark", "--account", aid)
            wait_converted(s["dbx"], "/one.md", b"# one\n")
        finally:
            w.terminate()
            w.wait(15)
    text = log_path.read_text(errors="replace")
    assert "as by a PKCE client" in text
    assert "dbxapi token refresh result=ok" in text, text[-2000:]
    assert stored_token(app, aid)[0] != first
    assert account_status(app, aid)["needs_relink"] is False


def relinked_and_quiet(app, aid, cursor_before):
    """The account shows needs_relink (appctl and GET /status), no
    refresh loop, the cursor kept."""
    wait_for(lambda: account_status(app, aid)["needs_relink"], WAIT_S,
             "needs_relink")
    st = account_status(app, aid)
    assert "re-link" in st["failure"]
    assert not st["pending"]
    doc = requests.get(f"http://127.0.0.1:{app.port}/status",
                       timeout=10).json()
    assert [a for a in doc["accounts"]
            if a["account"] == aid][0]["needs_relink"] is True
    n = refresh_lines(app)
    assert n == 1, n
    # Notifications keep coming: no token request, no run.
    for _ in range(3):
        app.appctl("mark", "--account", aid)
        time.sleep(0.7)
    assert refresh_lines(app) == n
    assert "reason=needs_relink" in app.process.output()
    assert app.appctl("cursor", "--account", aid).strip() == cursor_before


def test_revoked_refresh_token_needs_relink(cloud_factory, app_factory):
    cloud = cloud_factory("--oauth-auto-approve")
    s = linked_offline(cloud, app_factory)
    app, aid = s["app"], s["aid"]
    sync(s, "/one.md", b"# one\n")
    cursor = app.appctl("cursor", "--account", aid).strip()
    assert cursor
    # Revoking the access token revokes its refresh token too.
    r = requests.post(cloud.url + "/2/auth/token/revoke", headers={
        "Authorization": "Bearer " + s["tokens"]["access_token"]},
        verify=cloud.ca, timeout=10)
    assert r.status_code == 200, r.text
    app.appctl("mark", "--account", aid)
    relinked_and_quiet(app, aid, cursor)
    assert "skipped account=" + aid in app.process.output()


def test_unknown_refresh_token_needs_relink(cloud_factory, app_factory):
    cloud = cloud_factory("--oauth-auto-approve")
    s = linked_offline(cloud, app_factory)
    app, aid = s["app"], s["aid"]
    sync(s, "/one.md", b"# one\n")
    cursor = app.appctl("cursor", "--account", aid).strip()
    app.set_token(aid, s["tokens"]["access_token"] + " no-such-refresh")
    cloud.admin("faults/set", {"account_id": aid,
                               "fault": "expired_access_token", "count": 1})
    app.appctl("mark", "--account", aid)
    relinked_and_quiet(app, aid, cursor)
    # Storing a working token again clears the flag and syncs.
    app.set_token(aid, s["tokens"]["access_token"] + " " +
                  s["tokens"]["refresh_token"])
    assert account_status(app, aid)["needs_relink"] is False
    sync(s, "/two.md", b"# two\n")


def login_app(cloud, app_factory):
    app_info = cloud.new_app("login app")
    app = app_factory(app_info["app_secret"], cloud=cloud, workers=2,
                      extra_args=["--app-key", app_info["app_key"],
                                  "--web-url", cloud.url])
    base = f"http://127.0.0.1:{app.port}"
    cloud.admin("apps/set_redirect_uris", {"app_key": app_info["app_key"],
                                           "uris": [base + CB]})
    return app, app_info, base


def test_login_links_and_syncs(cloud_factory, app_factory):
    cloud = cloud_factory("--oauth-auto-approve")
    dropbox = sdk_module(cloud)
    app, app_info, base = login_app(cloud, app_factory)
    account = cloud.new_account()
    aid = account["account_id"]
    # A file from before the link: the first full sync converts it.
    before = cloud.link(app_info["app_key"], aid)
    dropbox.Dropbox(before).files_upload(b"# before\n", "/before.md")

    # /login -> authorize -> /oauth/callback, redirects followed.
    seen = []
    r = requests.get(base + "/login", verify=cloud.ca, timeout=10,
                     hooks={"response": lambda r, *a, **k: seen.append(r)})
    assert r.status_code == 200, r.text
    assert "Linked " + aid in r.text
    auth = urllib.parse.urlparse(seen[0].headers["Location"])
    q = urllib.parse.parse_qs(auth.query)
    assert auth.path == "/oauth2/authorize"
    assert q["code_challenge_method"] == ["S256"]
    assert q["token_access_type"] == ["offline"]
    assert len(q["code_challenge"][0]) == 43 and len(q["state"][0]) >= 16
    assert q["redirect_uri"] == [base + CB]
    assert r.url.startswith(base + CB + "?")

    access, exp, relink = stored_token(app, aid)
    assert access and relink == 0 and exp > time.time()
    db = sqlite3.connect(f"file:{app.data}/app.db?mode=ro", uri=True)
    (refresh,) = db.execute("SELECT refresh FROM accounts WHERE account"
                            " = ?", (aid,)).fetchone()
    db.close()
    assert refresh and refresh != access
    dbx = dropbox.Dropbox(before)
    wait_converted(dbx, "/before.md", b"# before\n")
    assert account_status(app, aid)["cursor"] is True
    # Later files: notifications through a verified webhook.
    assert cloud.admin("webhooks/set", {"app_key": app_info["app_key"],
                                        "uri": app.url})["state"] \
        == "verified"
    for i in range(3):
        dbx.files_upload(f"# later {i}\n".encode(), f"/dir/later{i}.md")
    for i in range(3):
        wait_converted(dbx, f"/dir/later{i}.md", f"# later {i}\n".encode())
    out = app.process.output()
    assert before not in out and access not in out and refresh not in out
    # The state is used once: replaying the callback is refused.
    r2 = requests.get(r.url, timeout=10)
    assert r2.status_code == 400


def test_callback_with_wrong_state_stores_nothing(cloud_factory,
                                                  app_factory):
    cloud = cloud_factory("--oauth-auto-approve")
    app, app_info, base = login_app(cloud, app_factory)
    cloud.new_account()
    r = requests.get(base + "/login", allow_redirects=False, timeout=10)
    assert r.status_code == 302
    # The browser goes to the cloud, which redirects with a code...
    r = requests.get(r.headers["Location"], allow_redirects=False,
                     verify=cloud.ca, timeout=10)
    assert r.status_code == 302
    back = urllib.parse.urlparse(r.headers["Location"])
    q = dict(urllib.parse.parse_qsl(back.query))
    # ...but a forged callback carries another state.
    for bad in ("A" * len(q["state"]), "", "short"):
        forged = base + CB + "?" + urllib.parse.urlencode(
            {"code": q["code"], "state": bad})
        assert requests.get(forged, timeout=10).status_code == 400
    assert requests.get(base + CB + "?code=" + q["code"],
                        timeout=10).status_code == 400
    st = app.status()
    assert st["accounts"] == [] and st["pending"] == 0
    assert "link rejected reason=unknown_state" in app.process.output()
    # The right state still works afterwards (the forgeries did not
    # consume it), and only once.
    good = base + CB + "?" + back.query
    assert requests.get(good, timeout=10).status_code == 200
    assert requests.get(good, timeout=10).status_code == 400
    assert len(app.status()["accounts"]) == 1


def test_login_without_app_key_is_404(app_factory):
    app = app_factory("s3cret", workers=0)
    r = requests.get(f"http://127.0.0.1:{app.port}/login",
                     allow_redirects=False, timeout=10)
    assert r.status_code == 404
    r = requests.post(f"http://127.0.0.1:{app.port}/login", timeout=10)
    assert r.status_code == 405
    assert json.loads(app.appctl("status"))["accounts"] == []
