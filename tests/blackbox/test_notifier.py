"""The cloud's webhook notifier, seen from a scripted receiver.

A small Python HTTP server on 127.0.0.1 plays the app: it records every
request (method, query, headers, raw body) and answers as each test
scripts it.  The cloud verifies it, then notifies it after uploads made
through the official SDK.
"""
import hashlib
import hmac
import subprocess
import threading
import time
import urllib.parse

import pytest

from conftest import wait_for
from helpers import ScriptedHook, app_entry, hook_factory, register
from helpers import body_of as expected_body

# Longer than one gathering window plus one delivery on a slow machine:
# a request that has not arrived by then is not coming.
QUIET_S = 1.5
WAIT_S = 15


class Receiver(ScriptedHook):
    """A scripted webhook: records requests, answers as told.

    verify: "exact" echoes the challenge, "quoted" wraps it in quotes.
    post_statuses: answers to successive POSTs; 200 once they run out.
    Each request is kept as ScriptedHook gives it (method, path,
    headers, body).
    """

    def __init__(self, verify="exact", post_statuses=()):
        self.verify = verify
        self.post_statuses = list(post_statuses)
        self.requests = []
        self.lock = threading.Lock()
        super().__init__(protocol="HTTP/1.0")

    def answer_get(self, request, challenge):
        self._record(request)
        text = challenge if self.verify == "exact" else f'"{challenge}"'
        return 200, text

    def answer_post(self, request):
        index = self._record(request)
        statuses = self.post_statuses
        return (statuses[index] if index < len(statuses) else 200), {}

    def _record(self, request):
        """Stores one request; returns its index among the POSTs."""
        with self.lock:
            posts = sum(1 for r in self.requests if r["method"] == "POST")
            self.requests.append(request)
        return posts

    def posts(self):
        with self.lock:
            return [r for r in self.requests if r["method"] == "POST"]

    def gets(self):
        with self.lock:
            return [r for r in self.requests if r["method"] == "GET"]

    def wait_posts(self, count):
        """Waits for count POSTs, then a quiet spell; returns all POSTs."""
        wait_for(lambda: len(self.posts()) >= count, WAIT_S,
                 f"{count} notification(s)")
        time.sleep(QUIET_S)
        return self.posts()


@pytest.fixture
def receivers():
    yield from hook_factory(Receiver)


def header(request, name):
    values = [v for k, v in request["headers"] if k.lower() == name.lower()]
    assert len(values) <= 1, f"{name} sent {len(values)} times"
    return values[0] if values else None


@pytest.fixture
def sdk(monkeypatch):
    """sdk(cloud, token) -> an SDK client that trusts the cloud's CA.

    requests (2.28) verifies with the bundle REQUESTS_CA_BUNDLE names
    (set in this environment) instead of the SDK's ca_certs, so the
    variable is pointed at the cloud's CA for the test."""
    def make(cloud, token):
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", cloud.ca)
        return cloud.sdk(token)
    return make


def upload(dbx, path):
    dbx.files_upload(b"hello " + path.encode(), path)


def test_verification_exact_echo_passes(cloud, receivers):
    receiver = receivers(verify="exact")
    app = cloud.new_app()
    register(cloud, app, receiver)

    gets = receiver.gets()
    assert len(gets) == 1
    query = urllib.parse.parse_qs(urllib.parse.urlparse(gets[0]["path"]).query)
    challenge = query["challenge"][0]
    assert len(challenge) == 43
    assert set(challenge) <= set("abcdefghijklmnopqrstuvwxyz"
                                 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
    entry = app_entry(cloud, app)
    assert entry["webhook_state"] == "verified"
    assert entry["webhook_uri"] == receiver.url


def test_verification_quoted_echo_fails(cloud, receivers, bin_path):
    receiver = receivers(verify="quoted")
    app = cloud.new_app()
    result = cloud.admin("webhooks/set", {"app_key": app["app_key"],
                                          "uri": receiver.url})
    assert result["state"] == "failed"
    assert "did not match the challenge" in result["error"]

    entry = app_entry(cloud, app)
    assert entry["webhook_state"] == "failed"
    assert "did not match the challenge" in entry["webhook_error"]

    # The console says so too, with exit status 1.
    r = subprocess.run(
        [bin_path, "console", "--cloud", cloud.url, "--ca", cloud.ca,
         "--admin-token-file", f"{cloud.data}/admin.token",
         "webhook-set", "--app", app["app_key"], "--uri", receiver.url],
        capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r
    assert len(receiver.gets()) == 2
    assert receiver.posts() == []


def test_upload_sends_one_signed_notification(cloud, receivers, sdk):
    receiver = receivers()
    account, app, token = cloud.new_linked_account()
    register(cloud, app, receiver)

    upload(sdk(cloud, token), "/one.md")
    posts = receiver.wait_posts(1)
    assert len(posts) == 1
    post = posts[0]

    body = expected_body([account])
    assert post["body"] == body
    assert body == (b'{"list_folder": {"accounts": ["'
                    + account["account_id"].encode()
                    + b'"]}, "delta": {"users": ['
                    + str(account["uid"]).encode() + b']}}')
    signature = hmac.new(app["app_secret"].encode(), post["body"],
                         hashlib.sha256).hexdigest()
    assert header(post, "X-Dropbox-Signature") == signature
    assert header(post, "Content-Type") == "application/json"
    assert header(post, "User-Agent") == "DropboxWebhooks/1.0"
    names = sorted(k.lower() for k, _ in post["headers"])
    assert names == ["content-length", "content-type", "host",
                     "user-agent", "x-dropbox-signature"]
    assert urllib.parse.urlparse(post["path"]).path == "/hook"

    stats = cloud.admin("stats")
    assert stats["notifications_delivered"] == 1
    assert stats["attempts"] == 1
    assert stats["notifications_failed"] == 0


def test_account_without_metadata_scope_is_never_named(cloud, receivers,
                                                       sdk):
    receiver = receivers()
    app = cloud.new_app()
    reader, _, reader_token = cloud.new_linked_account(app)
    writer, _, writer_token = cloud.new_linked_account(
        app, scopes="account_info.read files.content.read "
                    "files.content.write")
    register(cloud, app, receiver)

    upload(sdk(cloud, writer_token), "/by-writer.md")
    time.sleep(QUIET_S)
    assert receiver.posts() == []

    upload(sdk(cloud, reader_token), "/by-reader.md")
    posts = receiver.wait_posts(1)
    assert [p["body"] for p in posts] == [expected_body([reader])]
    assert writer["account_id"].encode() not in posts[0]["body"]


def test_unlinked_app_gets_nothing(cloud, receivers, sdk):
    linked_receiver = receivers()
    other_receiver = receivers()
    account, app, token = cloud.new_linked_account()
    other = cloud.new_app("not linked")
    register(cloud, app, linked_receiver)
    register(cloud, other, other_receiver)

    upload(sdk(cloud, token), "/x.md")
    assert len(linked_receiver.wait_posts(1)) == 1
    assert other_receiver.posts() == []
    assert len(other_receiver.gets()) == 1


def test_failed_attempts_resend_identical_bytes(cloud_factory, receivers,
                                                sdk):
    cloud = cloud_factory("--retry-base-ms", "100")
    receiver = receivers(post_statuses=[500, 500, 200])
    account, app, token = cloud.new_linked_account()
    register(cloud, app, receiver)

    upload(sdk(cloud, token), "/retry.md")
    posts = receiver.wait_posts(3)
    assert len(posts) == 3
    assert posts[0]["body"] == expected_body([account])
    for post in posts[1:]:
        assert post["body"] == posts[0]["body"]
        assert header(post, "X-Dropbox-Signature") == \
            header(posts[0], "X-Dropbox-Signature")

    stats = wait_for(
        lambda: (lambda s: s if s["notifications_delivered"] == 1 else None)(
            cloud.admin("stats")), WAIT_S, "delivery to be recorded")
    assert stats["attempts"] == 3
    assert stats["notifications_failed"] == 0


def test_changes_within_batch_window_share_a_notification(cloud_factory,
                                                          receivers, sdk):
    cloud = cloud_factory("--batch-ms", "300")
    receiver = receivers()
    app = cloud.new_app()
    first, _, first_token = cloud.new_linked_account(app)
    second, _, second_token = cloud.new_linked_account(app)
    register(cloud, app, receiver)
    dbx_first = sdk(cloud, first_token)
    dbx_second = sdk(cloud, second_token)
    # Connect both clients first, so the two uploads are quick.
    dbx_first.users_get_current_account()
    dbx_second.users_get_current_account()

    started = time.monotonic()
    dbx_first.files_upload(b"a", "/a.md")
    dbx_second.files_upload(b"b", "/b.md")
    elapsed = time.monotonic() - started
    if elapsed > 0.25:
        pytest.skip(f"uploads took {elapsed:.2f}s, beyond the window")

    posts = receiver.wait_posts(1)
    assert len(posts) == 1
    assert posts[0]["body"] == expected_body([first, second])
