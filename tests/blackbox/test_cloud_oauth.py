"""OAuth 2 on the cloud, driven by the official SDK's own flow classes
(DropboxOAuth2Flow, token refresh inside dropbox.Dropbox), plus raw HTTP
where the SDK hides what crosses the wire: HTTP Basic client auth, the
consent page, the 400s for malformed tokens.

The "browser" is requests: it follows the authorize URL the SDK builds,
with redirects off, and hands the redirect's query to flow.finish()."""
import datetime
import json
import re
import subprocess
import time
import urllib.parse

import pytest
import requests

from conftest import sdk_module, wait_for
from helpers import RecordingHook

REDIRECT = "http://127.0.0.1:9/oauth/callback"


@pytest.fixture
def auto_cloud(cloud_factory):
    return cloud_factory("--oauth-auto-approve")


def new_app(cloud, uris=(REDIRECT,)):
    app = cloud.new_app("oauth app")
    cloud.admin("apps/set_redirect_uris",
                {"app_key": app["app_key"], "uris": list(uris)})
    return app


def browse(cloud, url, account=None):
    """GETs the authorize URL (as a browser would) without following the
    redirect; returns the response."""
    if account is not None:
        url += "&account=" + urllib.parse.quote(account)
    return requests.get(url, allow_redirects=False, verify=cloud.ca,
                        timeout=10)


def redirect_params(resp):
    assert resp.status_code == 302, resp.text
    loc = resp.headers["Location"]
    assert loc.startswith(REDIRECT + "?")
    return dict(urllib.parse.parse_qsl(urllib.parse.urlparse(loc).query))


def run_flow(cloud, app, account, **kw):
    """The whole code flow through DropboxOAuth2Flow; returns its
    OAuth2FlowResult."""
    dropbox = sdk_module(cloud)
    session = {}
    flow = dropbox.DropboxOAuth2Flow(app["app_key"], REDIRECT, session,
                                     "csrf", **kw)
    url = flow.start(url_state="back-to=/home")
    result = flow.finish(redirect_params(browse(cloud, url,
                                                account["account_id"])))
    assert result.url_state == "back-to=/home"
    assert result.account_id == account["account_id"]
    return result


def token_post(cloud, data, auth=None):
    r = requests.post(cloud.url + "/oauth2/token", data=data, auth=auth,
                      verify=cloud.ca, timeout=10)
    return r.status_code, r.headers.get("Content-Type"), r.json()


def test_pkce_flow_offline(auto_cloud):
    dropbox = sdk_module(auto_cloud)
    app = new_app(auto_cloud)
    account = auto_cloud.new_account()
    result = run_flow(auto_cloud, app, account, use_pkce=True,
                      token_access_type="offline")
    assert result.access_token.startswith("sl.")
    assert result.refresh_token
    assert result.scope == ("files.metadata.read files.content.read "
                            "files.content.write account_info.read")
    left = result.expires_at - datetime.datetime.utcnow()
    assert 14000 < left.total_seconds() <= 14400
    dbx = dropbox.Dropbox(result.access_token)
    assert dbx.users_get_current_account().account_id == \
        account["account_id"]
    dbx.files_upload(b"hi", "/hi.txt")

    # A PKCE refresh token needs no secret.
    dbx = dropbox.Dropbox(oauth2_refresh_token=result.refresh_token,
                          app_key=app["app_key"])
    assert dbx.files_get_metadata("/hi.txt").size == 2


def test_online_flow_has_no_refresh_token(auto_cloud):
    app = new_app(auto_cloud)
    account = auto_cloud.new_account()
    result = run_flow(auto_cloud, app, account,
                      consumer_secret=app["app_secret"],
                      token_access_type="online")
    assert result.refresh_token == "" and result.expires_at is not None


def test_secret_flow_form_and_basic(auto_cloud):
    dropbox = sdk_module(auto_cloud)
    app = new_app(auto_cloud)
    account = auto_cloud.new_account()
    # Form fields: what the SDK sends.
    result = run_flow(auto_cloud, app, account,
                      consumer_secret=app["app_secret"],
                      token_access_type="offline")
    assert result.refresh_token
    dropbox.Dropbox(result.access_token).files_list_folder("")

    # HTTP Basic, by hand.
    url = (auto_cloud.url + "/oauth2/authorize?response_type=code"
           "&client_id=" + app["app_key"] + "&redirect_uri=" +
           urllib.parse.quote(REDIRECT, safe="") + "&state=s1")
    params = redirect_params(browse(auto_cloud, url, account["email"]))
    assert params["state"] == "s1"
    form = {"grant_type": "authorization_code", "code": params["code"],
            "redirect_uri": REDIRECT}
    status, ctype, body = token_post(auto_cloud, form,
                                     auth=(app["app_key"], "wrong"))
    assert status == 400 and body["error"] == "invalid_client"
    status, ctype, body = token_post(auto_cloud, form,
                                     auth=(app["app_key"],
                                           app["app_secret"]))
    assert status == 200 and ctype == "application/json"
    assert body["token_type"] == "bearer" and body["expires_in"] == 14400
    assert body["uid"] == str(account["uid"])
    assert body["account_id"] == account["account_id"]
    assert "refresh_token" not in body
    # A code works once.
    status, _, body = token_post(auto_cloud, form,
                                 auth=(app["app_key"], app["app_secret"]))
    assert status == 400 and body["error"] == "invalid_grant"

    # Neither verifier nor secret: refused.
    params = redirect_params(browse(auto_cloud, url))
    status, _, body = token_post(auto_cloud, dict(
        form, code=params["code"], client_id=app["app_key"]))
    assert status == 400 and body["error"] == "invalid_request"


def test_code_exchange_refusals(auto_cloud):
    dropbox = sdk_module(auto_cloud)
    app = new_app(auto_cloud)
    auto_cloud.new_account()
    flow = dropbox.DropboxOAuth2Flow(app["app_key"], REDIRECT, {}, "csrf",
                                     use_pkce=True)
    code = redirect_params(browse(auto_cloud, flow.start()))["code"]
    base = {"grant_type": "authorization_code", "code": code,
            "client_id": app["app_key"], "redirect_uri": REDIRECT,
            "code_verifier": flow.code_verifier}
    for change, error in [({"code_verifier": "x" * 43}, "invalid_grant"),
                          ({"redirect_uri": REDIRECT + "2"},
                           "invalid_grant"),
                          ({"grant_type": "password"},
                           "unsupported_grant_type"),
                          ({"client_id": "nope"}, "invalid_client")]:
        status, ctype, body = token_post(auto_cloud, dict(base, **change))
        assert (status, body["error"]) == (400, error), change
        assert ctype == "application/json"
    # The refusals did not use the code up.
    status, _, body = token_post(auto_cloud, base)
    assert status == 200 and body["access_token"].startswith("sl.")


def test_state_mismatch_is_csrf(auto_cloud):
    dropbox = sdk_module(auto_cloud)
    app = new_app(auto_cloud)
    auto_cloud.new_account()
    session = {}
    flow = dropbox.DropboxOAuth2Flow(app["app_key"], REDIRECT, session,
                                     "csrf", use_pkce=True)
    params = redirect_params(browse(auto_cloud, flow.start()))
    forged = dict(params, state="A" * 24)
    with pytest.raises(dropbox.oauth.CsrfException):
        flow.finish(forged)


def test_consent_page_allow_and_cancel(cloud):
    """Without auto-approve the person sees Allow and Cancel."""
    dropbox = sdk_module(cloud)
    app = new_app(cloud)
    account = cloud.new_account()

    def submit(decision):
        session = {}
        flow = dropbox.DropboxOAuth2Flow(app["app_key"], REDIRECT, session,
                                         "csrf", use_pkce=True)
        page = browse(cloud, flow.start())
        assert page.status_code == 200
        assert page.headers["Content-Type"].startswith("text/html")
        assert ">Allow<" in page.text and ">Cancel<" in page.text
        fields = dict(re.findall(
            r'<input type="hidden" name="([^"]+)" value="([^"]*)">',
            page.text))
        fields = {k: v.replace("&amp;", "&") for k, v in fields.items()}
        assert account["account_id"] in page.text
        fields.update(decision=decision, account=account["account_id"])
        r = requests.post(cloud.url + "/oauth2/authorize", data=fields,
                          allow_redirects=False, verify=cloud.ca,
                          timeout=10)
        return flow, redirect_params(r)

    flow, params = submit("allow")
    assert flow.finish(params).account_id == account["account_id"]
    flow, params = submit("cancel")
    assert params["error"] == "access_denied"
    with pytest.raises(dropbox.oauth.NotApprovedException):
        flow.finish(params)


def test_redirect_uri_must_be_registered(auto_cloud, bin_path):
    app = new_app(auto_cloud, uris=())
    auto_cloud.new_account()
    url = (auto_cloud.url + "/oauth2/authorize?response_type=code"
           "&client_id=" + app["app_key"] + "&redirect_uri=" +
           urllib.parse.quote(REDIRECT, safe=""))
    r = browse(auto_cloud, url)
    assert r.status_code == 400 and "Location" not in r.headers
    assert "redirect_uri" in r.text

    # The console registers it; then the same request redirects.
    out = subprocess.run(
        [bin_path, "console", "--cloud", auto_cloud.url, "--ca",
         auto_cloud.ca, "--admin-token-file",
         auto_cloud.data + "/admin.token", "app-redirect-uris", "--app",
         app["app_key"], "--uri", "https://example.invalid/cb", "--uri",
         REDIRECT], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["redirect_uris"] == [
        "https://example.invalid/cb", REDIRECT]
    assert "code" in redirect_params(browse(auto_cloud, url))

    r = browse(auto_cloud, url.replace("client_id=", "client_id=nope"))
    assert r.status_code == 400


def test_refresh_when_access_token_expires(cloud_factory):
    cloud = cloud_factory("--oauth-auto-approve", "--token-lifetime-s", "2")
    dropbox = sdk_module(cloud)
    app = new_app(cloud)
    account = cloud.new_account()
    result = run_flow(cloud, app, account,
                      consumer_secret=app["app_secret"],
                      token_access_type="offline")
    # The SDK is told the token lasts long, so it only learns of the
    # expiry from the cloud's 401 expired_access_token.
    later = datetime.datetime.utcnow() + datetime.timedelta(hours=1)
    dbx = dropbox.Dropbox(oauth2_access_token=result.access_token,
                          oauth2_access_token_expiration=later,
                          oauth2_refresh_token=result.refresh_token,
                          app_key=app["app_key"],
                          app_secret=app["app_secret"])
    dbx.files_list_folder("")
    time.sleep(2.5)
    with pytest.raises(dropbox.exceptions.AuthError) as e:
        dropbox.Dropbox(result.access_token).files_list_folder("")
    assert e.value.error.is_expired_access_token()
    dbx.files_list_folder("")  # refreshed and retried inside the SDK
    assert dbx._oauth2_access_token != result.access_token


def test_revoke_kills_the_refresh_token(auto_cloud):
    dropbox = sdk_module(auto_cloud)
    app = new_app(auto_cloud)
    account = auto_cloud.new_account()
    result = run_flow(auto_cloud, app, account,
                      consumer_secret=app["app_secret"],
                      token_access_type="offline")

    def client():
        return dropbox.Dropbox(oauth2_refresh_token=result.refresh_token,
                               app_key=app["app_key"],
                               app_secret=app["app_secret"])

    dbx = client()
    dbx.users_get_current_account()
    sibling = dropbox.Dropbox(result.access_token)
    sibling.files_list_folder("")
    assert dbx.auth_token_revoke() is None

    with pytest.raises(dropbox.exceptions.AuthError) as e:
        client().users_get_current_account()
    assert e.value.error.is_invalid_access_token()  # invalid_grant
    with pytest.raises(dropbox.exceptions.AuthError) as e:
        sibling.files_list_folder("")
    assert e.value.error.is_invalid_access_token()
    status, _, body = token_post(auto_cloud, {
        "grant_type": "refresh_token",
        "refresh_token": result.refresh_token,
        "client_id": app["app_key"], "client_secret": app["app_secret"]})
    assert status == 400 and body["error"] == "invalid_grant"
    status, _, body = token_post(auto_cloud, {
        "grant_type": "refresh_token", "refresh_token": "never-issued",
        "client_id": app["app_key"], "client_secret": app["app_secret"]})
    assert status == 400 and body["error"] == "invalid_grant"


def test_revoke_console_token(cloud):
    dropbox = sdk_module(cloud)
    _, _, token = cloud.new_linked_account()
    dbx = cloud.sdk(token)
    dbx.auth_token_revoke()
    with pytest.raises(dropbox.exceptions.AuthError) as e:
        dbx.files_list_folder("")
    assert e.value.error.is_invalid_access_token()


def test_requested_scope_narrows_and_missing_scope(auto_cloud):
    dropbox = sdk_module(auto_cloud)
    app = new_app(auto_cloud)
    account = auto_cloud.new_account()
    result = run_flow(auto_cloud, app, account, use_pkce=True,
                      token_access_type="offline",
                      scope=["files.metadata.read", "files.content.read"])
    assert result.scope == "files.metadata.read files.content.read"
    dbx = dropbox.Dropbox(result.access_token)
    dbx.files_list_folder("")
    with pytest.raises(dropbox.exceptions.AuthError) as e:
        dbx.files_upload(b"x", "/x")
    assert e.value.error.get_missing_scope().required_scope == \
        "files.content.write"
    with pytest.raises(dropbox.exceptions.AuthError) as e:
        dbx.users_get_current_account()
    assert e.value.error.get_missing_scope().required_scope == \
        "account_info.read"

    # A refresh may narrow further, never widen.
    narrow = dropbox.Dropbox(oauth2_refresh_token=result.refresh_token,
                             app_key=app["app_key"],
                             scope=["files.metadata.read"])
    narrow.files_list_folder("")
    with pytest.raises(dropbox.exceptions.AuthError) as e:
        narrow.files_download("/x")
    assert e.value.error.is_missing_scope()
    status, _, body = token_post(auto_cloud, {
        "grant_type": "refresh_token",
        "refresh_token": result.refresh_token,
        "client_id": app["app_key"], "scope": "account_info.read"})
    assert status == 400 and body["error"] == "invalid_scope"

    url = (auto_cloud.url + "/oauth2/authorize?response_type=code"
           "&client_id=" + app["app_key"] + "&redirect_uri=" +
           urllib.parse.quote(REDIRECT, safe="") + "&scope=files.everything")
    assert redirect_params(browse(auto_cloud, url))["error"] == \
        "invalid_scope"


@pytest.mark.parametrize("value", [
    "Bearer sl.abc!def", "Bearer ", "Bearer", "Bearer a b", "bearer \x7f"])
def test_malformed_token_is_400(cloud, value):
    status, headers, body = cloud.post(
        "/2/files/list_folder", b'{"path": ""}',
        {"Authorization": value, "Content-Type": "application/json"})
    assert status == 400
    assert headers["Content-Type"].startswith("text/plain")
    assert b"token is malformed" in body
    assert body.startswith(b'Error in call to API function '
                           b'"files/list_folder": ')


def test_missing_and_non_bearer_authorization_is_400(cloud):
    status, _, body = cloud.post("/2/files/list_folder", b'{"path": ""}',
                                 {"Content-Type": "application/json"})
    assert status == 400 and b"Authorization" in body
    status, _, body = cloud.post(
        "/2/files/list_folder", b'{"path": ""}',
        {"Authorization": "Basic eDp5", "Content-Type": "application/json"})
    assert status == 400 and b"Bearer <oauth2-access-token>" in body


def test_only_metadata_read_accounts_are_notified(cloud):
    with RecordingHook(path="/webhook") as hook:
        app = cloud.new_app("scoped")
        uri = hook.url
        assert cloud.admin("webhooks/set", {"app_key": app["app_key"],
                                            "uri": uri})["state"] == \
            "verified"
        blind, _, blind_token = cloud.new_linked_account(
            app, scopes="files.content.write files.content.read")
        seeing, _, seeing_token = cloud.new_linked_account(app)
        cloud.sdk(blind_token).files_upload(b"1", "/blind.md")
        cloud.sdk(seeing_token).files_upload(b"2", "/seeing.md")

        def notified():
            return [a for b in hook.bodies
                    for a in b["list_folder"]["accounts"]]
        wait_for(lambda: seeing["account_id"] in notified(), 10,
                 "the notification")
        cloud.sdk(blind_token).files_upload(b"3", "/blind2.md")
        time.sleep(0.5)
        assert blind["account_id"] not in notified()


def _pkce_pair():
    import base64
    import hashlib
    import secrets
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def test_token_response_fields(cloud_factory):
    """The token endpoint's JSON, field by field, for an offline PKCE
    (S256) code; expires_in follows --token-lifetime-s."""
    cloud = cloud_factory("--oauth-auto-approve", "--token-lifetime-s",
                          "600")
    app = new_app(cloud)
    account = cloud.new_account()
    verifier, challenge = _pkce_pair()
    url = (cloud.url + "/oauth2/authorize?response_type=code&client_id=" +
           app["app_key"] + "&redirect_uri=" +
           urllib.parse.quote(REDIRECT, safe="") + "&state=xyz"
           "&token_access_type=offline&code_challenge_method=S256"
           "&code_challenge=" + challenge)
    params = redirect_params(browse(cloud, url, account["account_id"]))
    assert params["state"] == "xyz"
    status, ctype, body = token_post(cloud, {
        "grant_type": "authorization_code", "code": params["code"],
        "client_id": app["app_key"], "redirect_uri": REDIRECT,
        "code_verifier": verifier})
    assert status == 200 and ctype == "application/json"
    assert set(body) == {"access_token", "token_type", "expires_in",
                         "refresh_token", "scope", "uid", "account_id"}
    assert body["access_token"].startswith("sl.")
    assert body["token_type"] == "bearer" and body["expires_in"] == 600
    assert body["account_id"] == account["account_id"]
    assert body["uid"] == str(account["uid"])
    assert body["scope"] == ("files.metadata.read files.content.read "
                             "files.content.write account_info.read")
    status, _, again = token_post(cloud, {
        "grant_type": "refresh_token",
        "refresh_token": body["refresh_token"],
        "client_id": app["app_key"]})
    assert status == 200 and again["expires_in"] == 600
    assert "refresh_token" not in again
    assert again["access_token"] != body["access_token"]


@pytest.mark.parametrize("extra,error", [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"code_challenge": "short"}, "invalid_request"),
    ({"code_challenge": "c" * 43, "code_challenge_method": "S512"},
     "invalid_request"),
    ({"token_access_type": "forever"}, "invalid_request"),
])
def test_authorize_errors_go_back_to_the_app(auto_cloud, extra, error):
    app = new_app(auto_cloud)
    auto_cloud.new_account()
    query = dict({"response_type": "code", "client_id": app["app_key"],
                  "redirect_uri": REDIRECT, "state": "st"}, **extra)
    params = redirect_params(browse(
        auto_cloud, auto_cloud.url + "/oauth2/authorize?" +
        urllib.parse.urlencode(query)))
    assert params["error"] == error and params["state"] == "st"
    assert params["error_description"] and "code" not in params
