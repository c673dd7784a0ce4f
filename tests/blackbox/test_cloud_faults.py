"""Faults on demand (admin faults/set, console `fault`) and the per-account
rate limits, seen through the official SDK: its retry and refresh logic
must react to them exactly as to the real service's."""
import datetime
import json
import subprocess
import time
import urllib.parse

import pytest
import requests

from conftest import sdk_module

REDIRECT = "http://127.0.0.1:9/cb"


def arm(cloud, account, fault, count=1, route=None):
    body = {"account_id": account["account_id"], "fault": fault,
            "count": count}
    if route is not None:
        body["route"] = route
    r = cloud.admin("faults/set", body)
    assert r == {"account_id": account["account_id"], "fault": fault,
                 "remaining": count}


def console(cloud, bin_path, *args):
    return subprocess.run(
        [bin_path, "console", "--cloud", cloud.url, "--ca", cloud.ca,
         "--admin-token-file", cloud.data + "/admin.token"] + list(args),
        capture_output=True, text=True, timeout=30)


@pytest.fixture
def linked(cloud):
    account, app, token = cloud.new_linked_account()
    return account, token


def test_429_raises_then_sdk_backs_off(cloud, linked, bin_path):
    dropbox = sdk_module(cloud)
    account, token = linked
    out = console(cloud, bin_path, "fault", "--account",
                  account["account_id"], "--kind", "429", "--count", "1")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["remaining"] == 1
    strict = dropbox.Dropbox(token, max_retries_on_rate_limit=0)
    with pytest.raises(dropbox.exceptions.RateLimitError) as e:
        strict.files_list_folder("")
    assert e.value.error.reason.is_too_many_requests()
    assert e.value.backoff == 1
    strict.files_list_folder("")  # the count is used up

    # The SDK's own retry waits Retry-After and succeeds.
    arm(cloud, account, "429", count=1)
    started = time.monotonic()
    cloud.sdk(token).files_list_folder("")
    assert time.monotonic() - started >= 0.9


def test_429_wire_format(cloud, linked):
    account, token = linked
    arm(cloud, account, "429")
    status, headers, body = cloud.post(
        "/2/files/list_folder", {"path": ""},
        {"Authorization": "Bearer " + token,
         "Content-Type": "application/json"})
    assert status == 429 and headers["Retry-After"] == "1"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "error_summary": "too_many_requests/..",
        "error": {"reason": {".tag": "too_many_requests"},
                  "retry_after": 1}}


def test_500_count_honoured(cloud, linked):
    dropbox = sdk_module(cloud)
    account, token = linked
    arm(cloud, account, "500", count=2)
    dbx = dropbox.Dropbox(token, max_retries_on_error=0)
    for _ in range(2):
        with pytest.raises(dropbox.exceptions.InternalServerError) as e:
            dbx.users_get_current_account()
        assert e.value.status_code == 500
    dbx.users_get_current_account()


def test_auth_faults(cloud, linked):
    dropbox = sdk_module(cloud)
    account, token = linked
    dbx = cloud.sdk(token)
    # Without a refresh token the SDK retries once as is, then raises.
    arm(cloud, account, "expired_access_token", count=2)
    with pytest.raises(dropbox.exceptions.AuthError) as e:
        dbx.files_list_folder("")
    assert e.value.error.is_expired_access_token()
    dbx.files_list_folder("")
    arm(cloud, account, "invalid_access_token")
    with pytest.raises(dropbox.exceptions.AuthError) as e:
        dbx.files_list_folder("")
    assert e.value.error.is_invalid_access_token()
    dbx.files_list_folder("")


def test_expired_fault_makes_sdk_refresh(cloud_factory):
    cloud = cloud_factory("--oauth-auto-approve")
    dropbox = sdk_module(cloud)
    app = cloud.new_app()
    cloud.admin("apps/set_redirect_uris", {"app_key": app["app_key"],
                                           "uris": [REDIRECT]})
    account = cloud.new_account()
    url = (cloud.url + "/oauth2/authorize?response_type=code&client_id=" +
           app["app_key"] + "&token_access_type=offline&redirect_uri=" +
           urllib.parse.quote(REDIRECT, safe=""))
    r = requests.get(url, allow_redirects=False, verify=cloud.ca, timeout=10)
    code = urllib.parse.parse_qs(
        urllib.parse.urlparse(r.headers["Location"]).query)["code"][0]
    tokens = requests.post(cloud.url + "/oauth2/token", data={
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": REDIRECT}, auth=(app["app_key"], app["app_secret"]),
        verify=cloud.ca, timeout=10).json()
    dbx = dropbox.Dropbox(
        oauth2_access_token=tokens["access_token"],
        oauth2_access_token_expiration=datetime.datetime.utcnow() +
        datetime.timedelta(hours=1),
        oauth2_refresh_token=tokens["refresh_token"],
        app_key=app["app_key"], app_secret=app["app_secret"])
    arm(cloud, account, "expired_access_token")
    dbx.files_list_folder("")
    assert dbx._oauth2_access_token != tokens["access_token"]


def test_reset_only_where_it_exists(cloud, linked):
    dropbox = sdk_module(cloud)
    account, token = linked
    dbx = cloud.sdk(token)
    cursor = dbx.files_list_folder("").cursor
    arm(cloud, account, "reset", count=1)
    dbx.files_list_folder("")           # no reset here: count kept
    dbx.files_upload(b"x", "/x.md")
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dbx.files_list_folder_continue(cursor)
    assert e.value.error.is_reset()
    assert len(dbx.files_list_folder_continue(cursor).entries) == 1

    arm(cloud, account, "reset", route="files/list_folder/longpoll")
    with pytest.raises(dropbox.exceptions.ApiError) as e:
        dropbox.Dropbox(token).files_list_folder_longpoll(cursor)
    assert e.value.error.is_reset()


def test_route_filter_and_clear(cloud, linked, bin_path):
    dropbox = sdk_module(cloud)
    account, token = linked
    dbx = dropbox.Dropbox(token, max_retries_on_error=0)
    arm(cloud, account, "500", count=5, route="files/upload")
    dbx.files_list_folder("")
    with pytest.raises(dropbox.exceptions.InternalServerError):
        dbx.files_upload(b"x", "/x")
    out = console(cloud, bin_path, "fault-clear", "--account",
                  account["account_id"])
    assert out.returncode == 0 and json.loads(out.stdout) == {"cleared": 1}
    dbx.files_upload(b"x", "/x")

    # Another account is never touched.
    other, _, other_token = cloud.new_linked_account()
    arm(cloud, account, "500", count=3)
    cloud.sdk(other_token).files_list_folder("")
    assert cloud.admin("faults/clear", {"account_id": account["account_id"]}
                       ) == {"cleared": 1}


@pytest.mark.parametrize("body", [
    {"fault": "418"},
    {"fault": "500", "count": 0},
    {"fault": "reset", "route": "files/upload"},
    {"fault": "500", "route": "files/no_such_route"},
])
def test_bad_fault_requests(cloud, linked, body):
    account, _ = linked
    status, _, data = cloud.post(
        "/admin/faults/set", dict(body, account_id=account["account_id"]),
        {"Authorization": "Bearer " + cloud.admin_token,
         "Content-Type": "application/json"})
    assert status == 400 and "error" in json.loads(data)


def test_rate_limits(cloud_factory):
    cloud = cloud_factory("--rate-limit", "3", "--write-rate-limit", "2")
    dropbox = sdk_module(cloud)
    account, _, token = cloud.new_linked_account()
    headers = {"Authorization": "Bearer " + token,
               "Content-Type": "application/json"}
    answers = [cloud.post("/2/files/list_folder", {"path": ""}, headers)
               for _ in range(8)]
    limited = [a for a in answers if a[0] == 429]
    assert limited and len(limited) <= 5
    status, hdrs, body = limited[0]
    assert hdrs["Retry-After"] == "1"
    assert json.loads(body)["error"]["reason"] == {
        ".tag": "too_many_requests"}

    # Another account has its own budget.
    _, _, other = cloud.new_linked_account()
    time.sleep(1.05)
    cloud.sdk(other).files_list_folder("")

    time.sleep(1.05)
    dbx = dropbox.Dropbox(token, max_retries_on_rate_limit=0)
    with pytest.raises(dropbox.exceptions.RateLimitError) as e:
        for i in range(6):
            dbx.files_upload(b"x", f"/w{i}")
    assert e.value.error.reason.is_too_many_write_operations()
    # The SDK, left to retry, gets through.
    time.sleep(1.05)
    for i in range(3):
        cloud.sdk(token).files_upload(b"y", f"/r{i}")
