"""Webhook delivery as the guide says: retries, timeouts, failure, health,
disabling with an alert, re-enabling, redelivery, private-URI refusal and
durability across kill -9.

Times are compressed with the cloud's options (--retry-base-ms and
friends).  A scripted receiver on 127.0.0.1 answers each POST as the
test dictates and records when it arrived.  Changes are made with raw
/2/files/upload calls, so every cloud here listens on a free port.
"""
import hashlib
import hmac
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import wait_for
from helpers import (ScriptedHook, app_entry, body_of, deliveries,
                     hook_factory, make_cloud, register, restart_twice,
                     upload)

WAIT_S = 15
QUIET_S = 1.0


class Receiver(ScriptedHook):
    """A webhook whose answers are scripted.

    script: (status, delay_s) for successive POSTs; after it runs out,
    every POST gets `after` (200 at once unless changed).  Verification
    GETs echo the challenge exactly."""

    def __init__(self, script=(), after=(200, 0.0)):
        self.script = list(script)
        self.after = after
        self.posts = []  # (arrival monotonic s, body, headers)
        self.gets = 0
        self.lock = threading.Lock()
        super().__init__()

    def answer_get(self, request, challenge):
        with self.lock:
            self.gets += 1
        return 200, challenge

    def answer_post(self, request):
        with self.lock:
            index = len(self.posts)
            self.posts.append((time.monotonic(), request["body"],
                               dict(request["headers"])))
            status, delay = (self.script[index]
                             if index < len(self.script) else self.after)
        if delay:
            time.sleep(delay)
        return status, {}

    def count(self):
        with self.lock:
            return len(self.posts)

    def wait(self, count, quiet=QUIET_S):
        wait_for(lambda: self.count() >= count, WAIT_S,
                 f"{count} POST(s)")
        time.sleep(quiet)
        with self.lock:
            return list(self.posts)


@pytest.fixture
def receivers():
    yield from hook_factory(Receiver)


def wait_state(cloud, app, state):
    return wait_for(lambda: (lambda d: d if d and all(
        x["state"] == state for x in d) else None)(deliveries(cloud, app)),
        WAIT_S, f"deliveries to be {state}")


def test_three_failures_then_success(cloud_factory, receivers):
    cloud = make_cloud(cloud_factory, "--retry-base-ms", "100")
    receiver = receivers([(500, 0), (500, 0), (500, 0), (200, 0)])
    account, app, token = cloud.new_linked_account()
    register(cloud, app, receiver)

    upload(cloud, token, "/a.md")
    posts = receiver.wait(4)
    assert len(posts) == 4
    gaps = [b[0] - a[0] for a, b in zip(posts, posts[1:])]
    # 100, 200, 400 ms, each within +-20%: strictly growing.
    assert gaps[0] < gaps[1] < gaps[2], gaps
    assert 0.07 < gaps[0] < 0.5, gaps
    assert all(p[1] == body_of([account]) for p in posts)
    assert len({p[2]["X-Dropbox-Signature"] for p in posts}) == 1

    [d] = wait_state(cloud, app, "delivered")
    assert d["attempts"] == 4
    assert d["accounts"] == [account["account_id"]]
    attempts = cloud.admin("attempts/list",
                           {"notification_id": d["notification_id"]})
    statuses = [a["status"] for a in reversed(attempts["attempts"])]
    assert statuses == [500, 500, 500, 200]
    assert [a["error"] for a in attempts["attempts"]][1:] == \
        ["status 500"] * 3
    assert all(a["duration_ms"] >= 0 and a["started_at"] > 0
               for a in attempts["attempts"])
    assert cloud.admin("stats")["notifications_delivered"] == 1


def test_failing_forever_stops_at_window_end(cloud_factory, receivers,
                                             bin_path):
    cloud = make_cloud(cloud_factory, "--retry-base-ms", "50",
                       "--retry-window-ms", "1500")
    receiver = receivers(after=(500, 0))
    account, app, token = cloud.new_linked_account()
    register(cloud, app, receiver)

    started = time.monotonic()
    upload(cloud, token, "/a.md")
    [d] = wait_state(cloud, app, "failed")
    assert 1.3 < time.monotonic() - started < 6
    count = receiver.count()
    assert count == d["attempts"]
    assert 4 <= count <= 8
    time.sleep(QUIET_S)
    assert receiver.count() == count  # nothing after the window
    alerts = cloud.admin("alerts/list", {"app_key": app["app_key"]})
    assert [a["kind"] for a in alerts["alerts"]] == ["notification_failed"]

    # The console shows it.
    r = subprocess.run(
        [bin_path, "console", "--cloud", cloud.url, "--ca", cloud.ca,
         "--admin-token-file", f"{cloud.data}/admin.token",
         "deliveries", "--app", app["app_key"]],
        capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    assert '"state": "failed"' in r.stdout


def test_timeout_is_retried_and_inside_is_not(cloud_factory, receivers):
    cloud = make_cloud(cloud_factory, "--deliver-timeout-ms", "500",
                       "--retry-base-ms", "100")
    slow = receivers([(200, 0.9)])
    fine = receivers([(200, 0.25)])
    slow_account, slow_app, slow_token = cloud.new_linked_account()
    fine_account, fine_app, fine_token = cloud.new_linked_account()
    register(cloud, slow_app, slow)
    register(cloud, fine_app, fine)

    upload(cloud, slow_token, "/s.md")
    upload(cloud, fine_token, "/f.md")
    assert len(slow.wait(2)) == 2
    assert len(fine.wait(1)) == 1
    [d] = wait_state(cloud, slow_app, "delivered")
    assert d["attempts"] == 2
    errors = [a["error"] for a in cloud.admin(
        "attempts/list", {"app_key": slow_app["app_key"]})["attempts"]]
    assert errors == [None, "timed out after 500 ms"]
    [d] = wait_state(cloud, fine_app, "delivered")
    assert d["attempts"] == 1


def test_accounts_changing_in_one_window_share_a_notification(
        cloud_factory, receivers):
    cloud = make_cloud(cloud_factory, "--batch-ms", "300")
    receiver = receivers()
    app = cloud.new_app()
    first, _, first_token = cloud.new_linked_account(app)
    second, _, second_token = cloud.new_linked_account(app)
    outsider, _, outsider_token = cloud.new_linked_account()
    register(cloud, app, receiver)

    upload(cloud, first_token, "/1.md")
    upload(cloud, second_token, "/2.md")
    upload(cloud, outsider_token, "/3.md")
    posts = receiver.wait(1)
    assert [p[1] for p in posts] == [body_of([first, second])]
    assert outsider["account_id"].encode() not in posts[0][1]


def test_disable_alert_and_reenable_recovers_everything(
        cloud_factory, receivers, bin_path, tmp_path):
    alert_file = tmp_path / "alert.txt"
    cloud = make_cloud(
        cloud_factory, "--retry-base-ms", "5", "--retry-cap-ms", "5",
        "--alert-command",
        f'printf "%s %s %s %s" "$DBXHOOK_APP_KEY" "$DBXHOOK_FAILURES" '
        f'"$DBXHOOK_WEBHOOK_URI" "$DBXHOOK_REASON" > {alert_file}')
    receiver = receivers(after=(500, 0))
    app = cloud.new_app()
    first, _, first_token = cloud.new_linked_account(app)
    second, _, second_token = cloud.new_linked_account(app)
    register(cloud, app, receiver)

    upload(cloud, first_token, "/1.md")
    entry = wait_for(lambda: (lambda e: e if e["webhook_state"] ==
                              "disabled" else None)(app_entry(cloud, app)),
                     WAIT_S, "the webhook to be disabled")
    assert "36 failed of 36 attempts" in entry["webhook_error"]
    alerts = cloud.admin("alerts/list")["alerts"]
    assert [a["kind"] for a in alerts] == ["webhook_disabled"]
    assert alerts[0]["failures"] == 36
    text = wait_for(lambda: alert_file.exists() and alert_file.read_text(),
                    WAIT_S, "the alert command")
    assert text.startswith(f"{app['app_key']} 36 {receiver.url} 36 failed")
    assert "ALERT webhook disabled" in cloud.process.output()

    # Disabled: nothing is sent, but changes are kept.
    time.sleep(0.2)
    count = receiver.count()
    upload(cloud, second_token, "/2.md")
    time.sleep(0.5)
    assert receiver.count() == count

    receiver.after = (200, 0)
    r = subprocess.run(
        [bin_path, "console", "--cloud", cloud.url, "--ca", cloud.ca,
         "--admin-token-file", f"{cloud.data}/admin.token",
         "webhook-enable", "--app", app["app_key"]],
        capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    posts = receiver.wait(count + 1)
    assert len(posts) == count + 1
    assert posts[-1][1] == body_of([first, second])
    assert app_entry(cloud, app)["webhook_state"] == "verified"
    states = sorted(d["state"] for d in deliveries(cloud, app))
    assert states == ["delivered", "merged"]


def test_redeliver_sends_the_same_bytes_again(cloud_factory, receivers):
    cloud = make_cloud(cloud_factory)
    receiver = receivers()
    account, app, token = cloud.new_linked_account()
    register(cloud, app, receiver)
    upload(cloud, token, "/a.md")
    [first] = receiver.wait(1)
    [d] = wait_state(cloud, app, "delivered")

    cloud.admin("deliveries/redeliver",
                {"notification_id": d["notification_id"]})
    posts = receiver.wait(2)
    assert len(posts) == 2
    assert posts[1][1] == first[1]
    assert posts[1][2]["X-Dropbox-Signature"] == \
        first[2]["X-Dropbox-Signature"]
    [d] = wait_state(cloud, app, "delivered")
    assert d["attempts"] == 2


def test_refuse_private_uris(cloud_factory, receivers):
    cloud = make_cloud(cloud_factory, "--refuse-private-uris")
    receiver = receivers()
    app = cloud.new_app()
    # Only loopback forms here: should the refusal ever break, nothing
    # may be sent off this machine.  The private ranges are pinned by the
    # unit test of notifier_uri_is_private, which opens no connection.
    for uri in (receiver.url,
                receiver.url.replace("127.0.0.1", "localhost"),
                receiver.url.replace("127.0.0.1", "127.8.8.8"),
                "http://[::1]:9/hook"):
        result = cloud.admin("webhooks/set", {"app_key": app["app_key"],
                                              "uri": uri})
        assert result["state"] == "failed", uri
        assert "loopback or private" in result["error"], result
    assert receiver.gets == 0


def test_kill9_during_retries_loses_nothing(cloud_factory, receivers):
    cloud = make_cloud(cloud_factory, "--retry-base-ms", "100",
                       "--retry-cap-ms", "200")
    receiver = receivers(after=(500, 0))
    app = cloud.new_app()
    first, _, first_token = cloud.new_linked_account(app)
    second, _, second_token = cloud.new_linked_account(app)
    register(cloud, app, receiver)

    upload(cloud, first_token, "/1.md")
    receiver.wait(3, quiet=0)
    upload(cloud, second_token, "/2.md")
    receiver.wait(receiver.count() + 2, quiet=0)
    cloud.stop(signal.SIGKILL)
    receiver.after = (200, 0)
    failed_before = receiver.count()

    cloud.start()
    wait_for(lambda: deliveries(cloud, app) and all(
        d["state"] == "delivered" for d in deliveries(cloud, app)),
        WAIT_S, "every notification delivered after the restart")
    time.sleep(QUIET_S)
    with receiver.lock:
        delivered = [p[1] for p in receiver.posts[failed_before:]]
    named = set()
    for body in delivered:
        named.update(json.loads(body)["list_folder"]["accounts"])
    assert named == {first["account_id"], second["account_id"]}
    assert len(delivered) == len(deliveries(cloud, app))

    # After the acknowledgement, restarts send nothing more.
    total = receiver.count()
    restart_twice(cloud, QUIET_S)
    assert receiver.count() == total


def test_signature_matches_the_bytes(cloud_factory, receivers):
    cloud = make_cloud(cloud_factory)
    receiver = receivers()
    account, app, token = cloud.new_linked_account()
    register(cloud, app, receiver)
    upload(cloud, token, "/a.md")
    [post] = receiver.wait(1)
    assert post[2]["X-Dropbox-Signature"] == hmac.new(
        app["app_secret"].encode(), post[1], hashlib.sha256).hexdigest()
    assert os.path.exists(cloud.data)
