"""The notifier's contract, point by point: verification echoes,
batching limits, coalescing while waiting, redirects and non-200
successes, in-flight limits, concurrency over many webhooks, the
sliding health window, the console's views, the documented defaults and
durability across kill -9 at random moments.

Every receiver listens on 127.0.0.1 only; every cloud on a free port.
Times are compressed with the cloud's options.
"""
import json
import os
import random
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import REPO, wait_for
from helpers import (ScriptedHook, body_of, deliveries, hook_factory,
                     make_cloud, register, restart_twice, upload)

WAIT_S = 15
QUIET_S = 1.0


class Hook(ScriptedHook):
    """A loopback webhook that records each POST's arrival and end.

    get: how verification is answered: "exact", "quoted", "json",
    "html", "newline", or an int status sent with the exact challenge;
    get_delay: seconds before answering a GET.
    post: f(index) -> (status, delay_s, extra headers) for each POST."""

    def __init__(self, get="exact", get_delay=0.0,
                 post=lambda i: (200, 0.0, {})):
        self.get = get
        self.get_delay = get_delay
        self.post = post
        self.lock = threading.Lock()
        self.gets = 0
        self.posts = []  # dicts: start, end, body, headers
        self.active = 0
        self.max_active = 0
        super().__init__()

    def answer_get(self, request, challenge):
        with self.lock:
            self.gets += 1
        c = challenge
        status, text = 200, c
        if self.get == "quoted":
            text = f'"{c}"'
        elif self.get == "json":
            text = json.dumps({"challenge": c})
        elif self.get == "html":
            text = f"<html><body>{c}</body></html>"
        elif self.get == "newline":
            text = c + "\n"
        elif isinstance(self.get, int):
            status = self.get
        if self.get_delay:
            time.sleep(self.get_delay)
        return status, text

    def answer_post(self, request):
        with self.lock:
            index = len(self.posts)
            entry = {"start": request["start"], "end": None,
                     "body": request["body"],
                     "headers": dict(request["headers"])}
            self.posts.append(entry)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        status, delay, headers = self.post(index)
        if delay:
            time.sleep(delay)
        with self.lock:
            self.active -= 1
            entry["end"] = time.monotonic()
        return status, headers

    def count(self):
        with self.lock:
            return len(self.posts)

    def bodies(self):
        with self.lock:
            return [p["body"] for p in self.posts]

    def wait(self, count, quiet=QUIET_S):
        wait_for(lambda: self.count() >= count, WAIT_S, f"{count} POST(s)")
        time.sleep(quiet)
        with self.lock:
            return [dict(p) for p in self.posts]


@pytest.fixture
def hooks():
    yield from hook_factory(Hook)


def named(body):
    return json.loads(body)["list_folder"]["accounts"]


def all_delivered(cloud, app, count):
    d = deliveries(cloud, app)
    return d if len(d) == count and all(
        x["state"] == "delivered" for x in d) else None


def console(cloud, bin_path, *args):
    """Runs `dbxhook console` against cloud; returns (rc, stdout, stderr)."""
    r = subprocess.run(
        [bin_path, "console", "--cloud", cloud.url, "--ca", cloud.ca,
         "--admin-token-file", f"{cloud.data}/admin.token"] + list(args),
        capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout, r.stderr


# ---- 1. verification ----------------------------------------------------

@pytest.mark.parametrize("mode,reason", [
    ("quoted", "body did not match the challenge"),
    ("json", "body did not match the challenge"),
    ("html", "body did not match the challenge"),
    ("newline", "body did not match the challenge"),
    (201, "status 201"),
    (204, "status 204"),
])
def test_bad_verification_fails_and_webhook_gets_nothing(
        cloud_factory, hooks, bin_path, mode, reason):
    cloud = make_cloud(cloud_factory)
    hook = hooks(get=mode)
    account, app, token = cloud.new_linked_account()

    rc, out, _ = console(cloud, bin_path, "webhook-set", "--app",
                         app["app_key"], "--uri", hook.url)
    assert rc == 1
    shown = json.loads(out)
    assert shown["state"] == "failed"
    assert shown["error"] == reason
    assert hook.gets == 1  # never retried
    rc, out, _ = console(cloud, bin_path, "app-list")
    assert rc == 0
    [entry] = [a for a in json.loads(out)["apps"]
               if a["app_key"] == app["app_key"]]
    assert entry["webhook_state"] == "failed"
    assert reason in entry["webhook_error"]

    # A webhook that is not verified receives nothing.
    upload(cloud, token, "/a.md")
    time.sleep(QUIET_S)
    assert hook.count() == 0
    assert hook.gets == 1
    assert deliveries(cloud, app) == []


def test_verification_timeout_is_configurable_and_not_retried(
        cloud_factory, hooks):
    cloud = make_cloud(cloud_factory, "--verify-timeout-ms", "300")
    slow = hooks(get_delay=1.0)
    app = cloud.new_app()
    started = time.monotonic()
    result = cloud.admin("webhooks/set", {"app_key": app["app_key"],
                                          "uri": slow.url})
    assert time.monotonic() - started < 0.9
    assert result == {"state": "failed",
                      "error": "timed out after 300 ms"}
    time.sleep(1.0)
    assert slow.gets == 1


def test_changing_the_uri_verifies_the_new_one(cloud_factory, hooks):
    cloud = make_cloud(cloud_factory)
    first = hooks()
    second = hooks(get="quoted")
    account, app, token = cloud.new_linked_account()
    register(cloud, app, first)
    result = cloud.admin("webhooks/set", {"app_key": app["app_key"],
                                          "uri": second.url})
    assert result["state"] == "failed"
    assert second.gets == 1
    upload(cloud, token, "/a.md")
    time.sleep(QUIET_S)
    # Neither the old URI nor the unverified new one is notified.
    assert first.count() == 0 and second.count() == 0


# ---- 3. batching ----------------------------------------------------------

def test_batch_max_accounts_splits_without_loss(cloud_factory, hooks):
    cloud = make_cloud(cloud_factory, "--batch-ms", "3000",
                       "--batch-max-accounts", "2")
    hook = hooks()
    app = cloud.new_app()
    linked = [cloud.new_linked_account(app)[::2] for _ in range(5)]
    register(cloud, app, hook)

    started = time.monotonic()
    for i, (_, token) in enumerate(linked):
        upload(cloud, token, f"/{i}.md")
    if time.monotonic() - started > 2.5:
        pytest.skip("uploads took longer than the gathering window")
    posts = hook.wait(3)
    assert len(posts) == 3
    sizes = sorted(len(named(p["body"])) for p in posts)
    assert sizes == [1, 2, 2]
    every = [a for p in posts for a in named(p["body"])]
    assert sorted(every) == sorted(a["account_id"] for a, _ in linked)
    wait_for(lambda: all_delivered(cloud, app, 3), WAIT_S, "3 delivered")


# How fast a single change is delivered with the default window is a
# figure, not a test: bench/notify_bench.py measures change-to-POST
# latency (p50 and p99).  The default window itself is pinned by
# test_help_and_docs_show_the_guide_defaults.


# ---- 4. coalescing ------------------------------------------------------

def test_waiting_unsent_notification_absorbs_changes(cloud_factory, hooks):
    cloud = make_cloud(cloud_factory, "--inflight-per-webhook", "1")
    hook = hooks(post=lambda i: (200, 0.8 if i == 0 else 0.0, {}))
    app = cloud.new_app()
    a, _, a_token = cloud.new_linked_account(app)
    b, _, b_token = cloud.new_linked_account(app)
    register(cloud, app, hook)

    upload(cloud, a_token, "/1.md")
    wait_for(lambda: hook.count() == 1, WAIT_S, "the first POST")
    upload(cloud, b_token, "/2.md")   # a new notification, not sent yet
    time.sleep(0.1)
    upload(cloud, b_token, "/3.md")   # absorbed by it
    upload(cloud, a_token, "/4.md")   # A is in flight: pending again
    posts = hook.wait(3)
    assert [p["body"] for p in posts] == [body_of([a]), body_of([b]),
                                         body_of([a])]
    assert hook.max_active == 1
    d = wait_for(lambda: all_delivered(cloud, app, 3), WAIT_S,
                 "3 delivered")
    assert all(x["attempts"] == 1 for x in d)


# ---- 5. delivery ----------------------------------------------------------

def test_redirect_is_a_failure_and_not_followed(cloud_factory, hooks):
    cloud = make_cloud(cloud_factory, "--retry-base-ms", "100")
    other = hooks()
    hook = hooks(post=lambda i: (302, 0.0, {"Location": other.url})
                 if i == 0 else (200, 0.0, {}))
    account, app, token = cloud.new_linked_account()
    register(cloud, app, hook)
    upload(cloud, token, "/a.md")
    posts = hook.wait(2)
    assert len(posts) == 2
    assert other.count() == 0 and other.gets == 0
    [d] = wait_for(lambda: all_delivered(cloud, app, 1), WAIT_S,
                   "delivered")
    attempts = cloud.admin("attempts/list",
                           {"notification_id": d["notification_id"]})
    assert [(x["status"], x["error"]) for x in
            reversed(attempts["attempts"])] == [(302, "status 302"),
                                                (200, None)]


def test_201_and_204_are_failures(cloud_factory, hooks):
    cloud = make_cloud(cloud_factory, "--retry-base-ms", "50")
    statuses = [201, 204, 200]
    hook = hooks(post=lambda i: (statuses[min(i, 2)], 0.0, {}))
    account, app, token = cloud.new_linked_account()
    register(cloud, app, hook)
    upload(cloud, token, "/a.md")
    assert len(hook.wait(3)) == 3
    [d] = wait_for(lambda: all_delivered(cloud, app, 1), WAIT_S,
                   "delivered")
    assert d["attempts"] == 3
    attempts = cloud.admin("attempts/list", {"app_key": app["app_key"]})
    assert [x["status"] for x in reversed(attempts["attempts"])] == \
        [201, 204, 200]


def test_inflight_limit_per_webhook(cloud_factory, hooks):
    cloud = make_cloud(cloud_factory, "--inflight-per-webhook", "2",
                       "--batch-max-accounts", "1", "--batch-ms", "500")
    hook = hooks(post=lambda i: (200, 0.4, {}))
    app = cloud.new_app()
    linked = [cloud.new_linked_account(app)[::2] for _ in range(6)]
    register(cloud, app, hook)
    for i, (_, token) in enumerate(linked):
        upload(cloud, token, f"/{i}.md")
    posts = hook.wait(6)
    assert len(posts) == 6
    assert hook.max_active == 2
    assert sorted(a for p in posts for a in named(p["body"])) == \
        sorted(a["account_id"] for a, _ in linked)


def test_many_webhooks_are_served_at_once(cloud_factory, hooks):
    cloud = make_cloud(cloud_factory)
    account = cloud.new_account()
    apps = []
    for i in range(20):
        app = cloud.new_app(f"app {i}")
        token = cloud.link(app["app_key"], account["account_id"])
        hook = hooks(post=lambda i: (200, 2.0, {}))
        register(cloud, app, hook)
        apps.append((app, hook))
    upload(cloud, token, "/shared.md")  # one change, 20 apps
    for app, hook in apps:
        wait_for(lambda: hook.count() >= 1 and hook.posts[0]["end"],
                 WAIT_S, "every webhook's POST")
    starts = [h.posts[0]["start"] for _, h in apps]
    ends = [h.posts[0]["end"] for _, h in apps]
    # Every request began before any of them was answered: all 20 were
    # in flight together.
    assert max(starts) < min(ends), (max(starts) - min(starts))


# ---- 7. health --------------------------------------------------------

def test_health_window_slides(cloud_factory, hooks):
    # About 12 failures fit in any 500 ms window; about 60 in all.
    cloud = make_cloud(cloud_factory, "--retry-base-ms", "40",
                       "--retry-cap-ms", "40", "--health-window-ms", "500",
                       "--retry-window-ms", "2500")
    hook = hooks(post=lambda i: (500, 0.0, {}))
    account, app, token = cloud.new_linked_account()
    register(cloud, app, hook)
    upload(cloud, token, "/a.md")
    [d] = wait_for(lambda: (lambda x: x if x and x[0]["state"] == "failed"
                            else None)(deliveries(cloud, app)),
                   WAIT_S, "the notification to fail")
    assert d["attempts"] > 36
    entry = next(a for a in cloud.admin("apps/list")["apps"]
                 if a["app_key"] == app["app_key"])
    assert entry["webhook_state"] == "verified"
    kinds = [a["kind"] for a in cloud.admin("alerts/list")["alerts"]]
    assert kinds == ["notification_failed"]


def test_disable_shows_in_console_then_reenable(cloud_factory, hooks,
                                                bin_path):
    cloud = make_cloud(cloud_factory, "--retry-base-ms", "5",
                       "--retry-cap-ms", "5")
    failing = {"on": True}
    hook = hooks(post=lambda i: (500 if failing["on"] else 200, 0.0, {}))
    app = cloud.new_app()
    first, _, first_token = cloud.new_linked_account(app)
    second, _, second_token = cloud.new_linked_account(app)
    register(cloud, app, hook)
    upload(cloud, first_token, "/1.md")
    wait_for(lambda: console(cloud, bin_path, "app-list")[1].count(
        '"disabled"'), WAIT_S, "the console to show disabled")

    rc, out, _ = console(cloud, bin_path, "app-list")
    [entry] = [a for a in json.loads(out)["apps"]
               if a["app_key"] == app["app_key"]]
    assert entry["webhook_state"] == "disabled"
    assert entry["webhook_error"].startswith("disabled: 36 failed of 36")
    rc, out, _ = console(cloud, bin_path, "alerts", "--app",
                         app["app_key"])
    assert rc == 0
    [alert] = json.loads(out)["alerts"]
    assert (alert["kind"], alert["failures"], alert["attempts"],
            alert["uri"]) == ("webhook_disabled", 36, 36, hook.url)
    assert "ALERT webhook disabled" in cloud.process.output()

    count = hook.count()
    upload(cloud, second_token, "/2.md")
    time.sleep(0.5)
    assert hook.count() == count
    failing["on"] = False
    gets = hook.gets
    rc, out, _ = console(cloud, bin_path, "webhook-enable", "--app",
                         app["app_key"])
    assert rc == 0 and json.loads(out)["state"] == "verified"
    assert hook.gets == gets + 1  # verified again
    posts = hook.wait(count + 1)
    assert len(posts) == count + 1
    assert posts[-1]["body"] == body_of([first, second])


# ---- 9. the console's attempt log and redelivery -----------------------

def test_console_lists_attempts_and_redelivers(cloud_factory, hooks,
                                               bin_path):
    cloud = make_cloud(cloud_factory, "--retry-base-ms", "50")
    hook = hooks(post=lambda i: ((500 if i == 0 else 200), 0.0, {}))
    account, app, token = cloud.new_linked_account()
    register(cloud, app, hook)
    upload(cloud, token, "/a.md")
    hook.wait(2)
    [d] = wait_for(lambda: all_delivered(cloud, app, 1), WAIT_S,
                   "delivered")
    nid = str(d["notification_id"])

    rc, out, _ = console(cloud, bin_path, "deliveries", "--app",
                         app["app_key"])
    assert rc == 0
    [shown] = json.loads(out)["deliveries"]
    assert (shown["state"], shown["attempts"], shown["accounts"]) == \
        ("delivered", 2, [account["account_id"]])
    for args in (("--app", app["app_key"]), ("--notification", nid)):
        rc, out, _ = console(cloud, bin_path, "attempts", *args)
        assert rc == 0
        rows = json.loads(out)["attempts"]
        assert [(r["status"], r["error"], r["uri"]) for r in rows] == \
            [(200, None, hook.url), (500, "status 500", hook.url)]
        assert all(r["started_at"] > 0 and r["duration_ms"] >= 0
                   for r in rows)

    rc, out, _ = console(cloud, bin_path, "redeliver", "--notification",
                         nid)
    assert rc == 0
    assert json.loads(out) == {"notification_id": int(nid),
                               "state": "pending"}
    posts = hook.wait(3)
    assert len(posts) == 3 and posts[2]["body"] == posts[1]["body"]
    wait_for(lambda: all_delivered(cloud, app, 1), WAIT_S, "redelivered")
    rc, out, _ = console(cloud, bin_path, "attempts", "--notification",
                         nid)
    assert len(json.loads(out)["attempts"]) == 3


# ---- 10. private URIs ---------------------------------------------------

def test_loopback_allowed_by_default_and_refused_at_delivery_when_asked(
        cloud_factory, hooks):
    cloud = make_cloud(cloud_factory)
    hook = hooks()
    account, app, token = cloud.new_linked_account()
    for uri in (hook.url.replace("127.0.0.1", "localhost"), hook.url):
        result = cloud.admin("webhooks/set", {"app_key": app["app_key"],
                                              "uri": uri})
        assert result["state"] == "verified", (uri, result)
    assert hook.gets == 2

    # Stored before the option was given: refused when connecting.
    cloud.stop()
    cloud.extra_args += ["--refuse-private-uris", "--retry-base-ms", "50",
                         "--retry-window-ms", "300"]
    cloud.start()
    upload(cloud, token, "/a.md")
    [d] = wait_for(lambda: (lambda x: x if x and x[0]["state"] == "failed"
                            else None)(deliveries(cloud, app)),
                   WAIT_S, "the notification to fail")
    assert hook.count() == 0
    errors = {a["error"] for a in cloud.admin(
        "attempts/list", {"notification_id": d["notification_id"]})[
            "attempts"]}
    assert errors == {"refused: 127.0.0.1 is a loopback or private"
                      " address"}


# ---- 11. defaults ---------------------------------------------------------

NOTIFIER_DEFAULTS = {
    "--verify-timeout-ms": "10000", "--deliver-timeout-ms": "10000",
    "--batch-ms": "10", "--retry-base-ms": "1000",
    "--retry-window-ms": "600000", "--retry-cap-ms": "120000",
    "--health-window-ms": "600000", "--batch-max-accounts": "100",
    "--inflight-per-webhook": "8",
}


def test_help_and_docs_show_the_guide_defaults(bin_path):
    r = subprocess.run([bin_path, "cloud", "--help"], capture_output=True,
                       text=True, timeout=30)
    text = r.stdout + r.stderr
    with open(os.path.join(REPO, "docs", "CLI.md")) as f:
        doc = f.read()
    for option, default in NOTIFIER_DEFAULTS.items():
        assert re.search(re.escape(option) + r" N\s.*\(" + default + r"\)",
                         text), option
        assert re.search(r"\| `" + re.escape(option) + r" N` \| " +
                         default + r" \|", doc), option
    assert "--refuse-private-uris" in text
    assert "| `--refuse-private-uris` | off |" in doc


# ---- 8. kill -9 at random moments ----------------------------------------

def test_kill9_at_random_moments_loses_and_repeats_nothing(cloud_factory,
                                                           hooks):
    rng = random.Random(os.environ.get("DBXHOOK_TEST_SEED", "4"))
    cloud = make_cloud(cloud_factory, "--retry-base-ms", "50",
                       "--retry-cap-ms", "100")
    state = {"fail": True, "failed": 0}

    def answer(index):
        # Fails sometimes, but never 36 times: the health rule would
        # disable the webhook (tested elsewhere).
        if state["fail"] and state["failed"] < 30 and rng.random() < 0.4:
            state["failed"] += 1
            return 500, 0.0, {}
        return 200, 0.0, {}
    hook = hooks(post=answer)
    app = cloud.new_app()
    linked = [cloud.new_linked_account(app)[::2] for _ in range(4)]
    register(cloud, app, hook)

    changed = {}  # account id -> time of its last change (monotonic)
    uploads = []
    for cycle in range(5):
        deadline = time.monotonic() + rng.uniform(0.05, 0.4)
        while time.monotonic() < deadline:
            account, token = rng.choice(linked)
            # Taken before the request: the POST for a change may start
            # before the upload's answer is read.
            changed[account["account_id"]] = time.monotonic()
            # A new path each time: an identical upload is no change.
            upload(cloud, token, f"/c{len(uploads)}.md")
            uploads.append(account["account_id"])
        cloud.stop(signal.SIGKILL)
        cloud.start()
    state["fail"] = False

    wait_for(lambda: (lambda d: d and all(
        x["state"] == "delivered" for x in d))(deliveries(cloud, app)),
        WAIT_S, "every notification delivered")
    time.sleep(QUIET_S)
    # Every account was named in a POST that arrived after its last
    # change was sent to the cloud.
    with hook.lock:
        posts = [(p["start"], named(p["body"])) for p in hook.posts]
    for account_id, at in changed.items():
        assert any(start > at and account_id in accounts
                   for start, accounts in posts), account_id
    assert cloud.admin("deliveries/list", {"app_key": app["app_key"]})[
        "pending_accounts"] == 0

    # After the last acknowledged delivery, restarts send nothing more.
    total = hook.count()
    restart_twice(cloud, QUIET_S)
    assert hook.count() == total
