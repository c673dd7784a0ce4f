"""The app's promises about work: it is never lost, doubled or stalled.

Each test here proves one point of that contract from the outside:
the receiver answers while the workers are busy and a burst of
notifications leaves one follow-up run; a lease is renewed through a
run longer than itself; a worker killed with kill -9 is resumed from its
saved cursor; SIGTERM frees the lease at once; network errors, 429 and a
reset after another failure are survived; a failing command is retried,
never skipped; page parallelism is bounded; the app secret never comes
from the command line.  Everything runs on loopback.
"""
import datetime
import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import subprocess
import time

from conftest import REPO, wait_converted, wait_for

WAIT_S = 30


# ---- helpers --------------------------------------------------------------

def signed_post(app, secret, accounts):
    """One signed notification on a fresh connection; returns the status."""
    body = json.dumps({"list_folder": {"accounts": accounts}}).encode()
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    c = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
    try:
        c.request("POST", "/webhook", body,
                  {"Content-Type": "application/json",
                   "X-Dropbox-Signature": mac})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def account_of(status, aid):
    return [a for a in status["accounts"] if a["account"] == aid][0]


def stamp(line):
    """Seconds of a log line's leading UTC timestamp."""
    return datetime.datetime.strptime(
        line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def lines_with(text, *words):
    return [x for x in text.splitlines() if all(w in x for w in words)]


def script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def cmd_app(cloud, app_factory, tmp_path, body, workers=1, extra=()):
    """An app with a command handler (Markdown off) and a linked account."""
    app_info = cloud.new_app("issue5 app")
    account, _, token = cloud.new_linked_account(app_info)
    aid = account["account_id"]
    cmd = script(tmp_path, "cmd.sh", body)
    app = app_factory(app_info["app_secret"], cloud=cloud, workers=workers,
                      extra_args=["--command", cmd, "--markdown", "off"]
                      + list(extra))
    app.set_token(aid, token)
    return {"app": app, "aid": aid, "dbx": cloud.sdk(token),
            "secret": app_info["app_secret"], "cloud": cloud}


def logging_cmd_app(cloud, app_factory, tmp_path, middle, workers=0):
    """cmd_app whose command, for files only, runs the shell line(s)
    middle and then appends the file's path to cmd.log; returns
    (cmd_app's dict, the log's path)."""
    log = tmp_path / "cmd.log"
    s = cmd_app(cloud, app_factory, tmp_path,
                "[ \"$DBXHOOK_TAG\" = file ] || exit 0\n" + middle +
                f"echo \"$DBXHOOK_PATH\" >> {log}\n", workers=workers)
    return s, log


def slow_cmd_app(cloud, app_factory, tmp_path, sleep_s, workers=1):
    """cmd_app whose command logs every file's path, and for /slow.txt
    touches `started`, sleeps sleep_s, then touches `ended`; returns
    (cmd_app's dict, started, ended, log)."""
    started, ended = tmp_path / "started", tmp_path / "ended"
    s, log = logging_cmd_app(
        cloud, app_factory, tmp_path,
        "case \"$DBXHOOK_PATH\" in /slow.txt)\n"
        f"  touch {started}; sleep {sleep_s}; touch {ended};;\n"
        "esac\n", workers)
    return s, started, ended, log


def settled(app, aid):
    a = account_of(app.status(), aid)
    return not a["pending"] and not a["leased"]


class Workers:
    """`dbxhook worker` processes on one app's data, each with its own
    debug log."""

    def __init__(self, bin_path, tmp_path, app, cloud, extra):
        self.args = [bin_path, "worker", "--data", app.data, "--api-url",
                     cloud.url, "--content-url", cloud.url, "--ca",
                     cloud.ca] + list(extra)
        self.tmp = tmp_path
        self.procs, self.logs = [], []

    def start(self):
        path = self.tmp / f"worker{len(self.procs)}.log"
        self.logs.append(path)
        self.procs.append(subprocess.Popen(
            self.args, stdout=open(path, "ab"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, DBXHOOK_LOG="debug")))
        return len(self.procs) - 1

    def text(self, i):
        return self.logs[i].read_text(errors="replace")

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# ---- the state store is one interface -------------------------------------

def test_receiver_and_workers_know_only_state_h():
    """No SQLite (nor the back-end table) behind the receiver, the workers
    or the handlers: a Redis store can replace it without touching them."""
    src = os.path.join(REPO, "src", "app")
    users = [f for f in os.listdir(src) if f.endswith(".c") and
             re.match(r"(receiver|worker|handler|dbxapi|app_link)", f)
             and not f.endswith("_main.c")]
    assert {"receiver.c", "worker.c", "worker_page.c",
            "handler_md.c", "handler_cmd.c"} <= set(users)
    for name in users:
        with open(os.path.join(src, name)) as f:
            text = f.read()
        assert "sqlite" not in text.lower(), name
        assert "state_backend.h" not in text, name


# ---- the receiver while the workers are busy --------------------------------

def test_receiver_answers_while_busy_and_a_burst_is_one_run(
        cloud, app_factory, tmp_path):
    s, started, ended, log = slow_cmd_app(cloud, app_factory, tmp_path, 3)
    app, aid, dbx = s["app"], s["aid"], s["dbx"]
    dbx.files_upload(b"slow", "/slow.txt")
    app.appctl("mark", "--account", aid)
    wait_for(started.exists, WAIT_S, "the slow command to start")
    runs = app.counter("runs")
    notifications = app.counter("notifications")
    # A change arrives while the run is busy, then a burst of 50
    # identical notifications: each is answered while the slow command
    # still runs (before its end), not after it.
    dbx.files_upload(b"late", "/late.txt")
    for i in range(50):
        assert signed_post(app, s["secret"], [aid]) == 200
        assert not ended.exists(), f"notification {i} waited for the run"
    wait_for(lambda: settled(app, aid), WAIT_S, "the account to settle")
    assert app.counter("notifications") - notifications == 50
    # The busy run plus exactly one follow-up, which saw the late file.
    assert app.counter("runs") - runs == 2
    assert log.read_text().splitlines() == ["/slow.txt", "/late.txt"]


# ---- leases ----------------------------------------------------------------

def test_notifications_during_another_process_run_are_committed(
        cloud, app_factory, bin_path, tmp_path):
    """The receiver answers a notification for a pending account without a
    commit only while no worker has taken it.  Here the worker is another
    process: once it has claimed the account, notifications must bump the
    mark again, or its release would drop a change it never saw."""
    s, started, ended, log = slow_cmd_app(cloud, app_factory, tmp_path, 2,
                                          workers=0)
    app, aid, dbx = s["app"], s["aid"], s["dbx"]
    dbx.files_upload(b"slow", "/slow.txt")
    for _ in range(5):
        assert signed_post(app, s["secret"], [aid]) == 200
    marked = app.pending_version(aid)
    assert marked is not None
    w = Workers(bin_path, tmp_path, app, cloud,
                ["--page-parallel", "1", "--command",
                 str(tmp_path / "cmd.sh"), "--markdown", "off"])
    try:
        w.start()
        wait_for(started.exists, WAIT_S, "the worker to take the account")
        dbx.files_upload(b"late", "/late.txt")
        for _ in range(5):
            assert signed_post(app, s["secret"], [aid]) == 200
        assert not ended.exists(), "the run ended too soon for the test"
        assert app.pending_version(aid) > marked
        wait_for(lambda: settled(app, aid), WAIT_S, "the account to settle")
    finally:
        w.stop_all()
    # The busy run, then exactly one more, which saw the late file.
    assert log.read_text().splitlines() == ["/slow.txt", "/late.txt"]
    assert app.counter("runs") == 2


def test_a_run_longer_than_the_lease_keeps_it(cloud, app_factory, bin_path,
                                              tmp_path):
    s, log = logging_cmd_app(cloud, app_factory, tmp_path,
                             "sleep 1.2\n")
    app, aid, dbx = s["app"], s["aid"], s["dbx"]
    for i in range(3):
        dbx.files_upload(b"x", f"/f{i}.txt")
    w = Workers(bin_path, tmp_path, app, cloud,
                ["--lease-ms", "600", "--page-parallel", "1", "--command",
                 str(tmp_path / "cmd.sh"), "--markdown", "off"])
    try:
        w.start()
        w.start()
        app.appctl("mark", "--account", aid)
        wait_for(lambda: settled(app, aid), WAIT_S, "the run to end")
    finally:
        w.stop_all()
    text = w.text(0) + w.text(1)
    # ~3.6 s of commands under a 0.6 s lease: one claim, never lost, and
    # the idle worker (polling every 0.2 s) never got the account.
    assert len(lines_with(text, "worker claimed", aid)) == 1
    assert "lease lost" not in text
    assert sorted(log.read_text().splitlines()) == \
        [f"/f{i}.txt" for i in range(3)]
    assert app.counter("runs") == 1


def test_kill9_worker_is_resumed_from_the_saved_cursor(
        cloud, app_factory, bin_path, tmp_path):
    s, log = logging_cmd_app(
        cloud, app_factory, tmp_path,
        "case \"$DBXHOOK_PATH\" in /slow*) sleep 0.4;; esac\n")
    app, aid, dbx = s["app"], s["aid"], s["dbx"]
    w = Workers(bin_path, tmp_path, app, cloud,
                ["--lease-ms", "1000", "--page-parallel", "1", "--command",
                 str(tmp_path / "cmd.sh"), "--markdown", "off"])
    try:
        first = w.start()
        dbx.files_upload(b"x", "/first.txt")
        app.appctl("mark", "--account", aid)
        wait_for(lambda: settled(app, aid), WAIT_S, "the first run")
        cursor = app.appctl("cursor", "--account", aid).strip()
        assert cursor
        for i in range(6):
            dbx.files_upload(b"x", f"/slow{i}.txt")
        app.appctl("mark", "--account", aid)
        wait_for(lambda: log.read_text().count("/slow") >= 2, WAIT_S,
                 "the second run to be under way")
        w.procs[first].send_signal(signal.SIGKILL)
        w.procs[first].wait(5)
        assert log.read_text().count("/slow") < 6
        second = w.start()
        wait_for(lambda: settled(app, aid), WAIT_S, "the resumed run")
    finally:
        w.stop_all()
    text = w.text(second)
    claims = lines_with(text, "worker claimed", aid)
    assert claims, text
    lists = lines_with(text, "worker list begin", aid)
    assert lists and "continue=1" in lists[0], lists[:1]
    assert not [x for x in lists if "continue=0" in x]
    lines = log.read_text().splitlines()
    assert sorted(lines) == ["/first.txt"] + [f"/slow{i}.txt"
                                              for i in range(6)]


def test_sigterm_between_pages_resumes_from_the_saved_cursor(
        cloud, app_factory, bin_path, tmp_path):
    """With one entry per page (--page-size 1), SIGTERM lets the worker end
    the page in hand, save the cursor after it and release; the next
    worker continues from that cursor, so each entry is handled once."""
    s, log = logging_cmd_app(cloud, app_factory, tmp_path,
                             "sleep 0.3\n")
    app, aid, dbx = s["app"], s["aid"], s["dbx"]
    names = [f"/p{i}.txt" for i in range(6)]
    for name in names:
        dbx.files_upload(b"x", name)
    w = Workers(bin_path, tmp_path, app, cloud,
                ["--page-size", "1", "--page-parallel", "1",
                 "--lease-ms", "120000", "--command",
                 str(tmp_path / "cmd.sh"), "--markdown", "off"])
    try:
        first = w.start()
        app.appctl("mark", "--account", aid)
        wait_for(lambda: log.exists() and len(log.read_text().split()) >= 2,
                 WAIT_S, "two pages handled")
        w.procs[first].send_signal(signal.SIGTERM)
        assert w.procs[first].wait(15) == 0
        done_first = log.read_text().split()
        assert len(done_first) < len(names)
        a = account_of(app.status(), aid)
        assert a["pending"] and not a["leased"] and a["cursor"], a
        second = w.start()
        wait_for(lambda: settled(app, aid), WAIT_S, "the resumed run")
    finally:
        w.stop_all()
    stopped = lines_with(w.text(first), "worker run stopped", aid)
    assert stopped, w.text(first)[-2000:]
    lists = lines_with(w.text(second), "worker list begin", aid)
    assert lists and "continue=1" in lists[0], lists[:1]
    assert sorted(log.read_text().split()) == names


def test_sigterm_frees_the_lease_at_once(cloud, app_factory, bin_path,
                                         tmp_path):
    s, log = logging_cmd_app(
        cloud, app_factory, tmp_path,
        "case \"$DBXHOOK_PATH\" in /slow*) sleep 0.5;; esac\n")
    app, aid, dbx = s["app"], s["aid"], s["dbx"]
    # A lease far longer than the test: only a release can free it.
    w = Workers(bin_path, tmp_path, app, cloud,
                ["--lease-ms", "120000", "--page-parallel", "1",
                 "--command", str(tmp_path / "cmd.sh"), "--markdown", "off"])
    try:
        first = w.start()
        for i in range(4):
            dbx.files_upload(b"x", f"/slow{i}.txt")
        app.appctl("mark", "--account", aid)
        wait_for(lambda: log.exists() and "/slow" in log.read_text(),
                 WAIT_S, "the run to start")
        dbx.files_upload(b"x", "/late.txt")
        app.appctl("mark", "--account", aid)
        w.procs[first].send_signal(signal.SIGTERM)
        assert w.procs[first].wait(15) == 0
        a = account_of(app.status(), aid)
        assert a["pending"] and not a["leased"], a
        stopped_at = time.monotonic()
        w.start()
        wait_for(lambda: log.exists() and "/late.txt" in log.read_text(),
                 WAIT_S, "another worker to take over")
        assert time.monotonic() - stopped_at < 20
        wait_for(lambda: settled(app, aid), WAIT_S, "settled")
    finally:
        w.stop_all()
    lines = log.read_text().splitlines()
    assert sorted(lines) == ["/late.txt"] + [f"/slow{i}.txt"
                                             for i in range(4)]


# ---- file-API failures -----------------------------------------------------

def md_app(cloud, app_factory):
    app_info = cloud.new_app("faults app")
    account, _, token = cloud.new_linked_account(app_info)
    aid = account["account_id"]
    app = app_factory(app_info["app_secret"], cloud=cloud, workers=1)
    app.set_token(aid, token)
    return app, aid, cloud.sdk(token)


def test_network_errors_back_off_and_work_completes(cloud, app_factory):
    app, aid, dbx = md_app(cloud, app_factory)
    dbx.files_upload(b"# one\n", "/one.md")
    cloud.stop()
    app.appctl("mark", "--account", aid)
    wait_for(lambda: app.counter("failures") >= 2, WAIT_S,
             "failures while the cloud is down")
    a = account_of(app.status(), aid)
    assert a["failure"] and a["pending"] and a["cursor"] is False, a
    assert "worker failure account=" + aid in app.process.output()
    cloud.start()
    wait_converted(dbx, "/one.md", b"# one\n")
    wait_for(lambda: settled(app, aid), WAIT_S, "settled")
    a = account_of(app.status(), aid)
    assert a["failure"] is None and a["cursor"] is True


def test_429_retry_after_is_obeyed(cloud, app_factory):
    app, aid, dbx = md_app(cloud, app_factory)
    cloud.admin("faults/set", {"account_id": aid, "fault": "429",
                               "count": 1, "route": "files/list_folder"})
    dbx.files_upload(b"# one\n", "/one.md")
    app.appctl("mark", "--account", aid)
    wait_converted(dbx, "/one.md", b"# one\n")
    out = app.process.output()
    fail = lines_with(out, "worker failure account=" + aid)
    assert len(fail) == 1 and "backoff_ms=1000 " in fail[0], fail
    done = lines_with(out, "worker run done account=" + aid)
    assert done and stamp(done[0]) - stamp(fail[0]) >= 1.0
    assert app.counter("failures") == 1


def test_reset_after_another_failure_is_one_fresh_listing(cloud,
                                                          app_factory):
    """A reset right after an unrelated failure is the first reset, not
    the second: one fresh listing, no failure for it, work carries on."""
    app, aid, dbx = md_app(cloud, app_factory)
    dbx.files_upload(b"# one\n", "/one.md")
    app.appctl("mark", "--account", aid)
    wait_converted(dbx, "/one.md", b"# one\n")
    cloud.admin("faults/set", {"account_id": aid, "fault": "429",
                               "count": 1,
                               "route": "files/list_folder/continue"})
    dbx.files_upload(b"# two\n", "/two.md")
    app.appctl("mark", "--account", aid)
    wait_for(lambda: app.counter("failures") >= 1, WAIT_S, "the 429")
    # The retry comes after Retry-After (1 s): arm the reset before it.
    cloud.admin("faults/set", {"account_id": aid, "fault": "reset",
                               "count": 1,
                               "route": "files/list_folder/continue"})
    wait_converted(dbx, "/two.md", b"# two\n")
    wait_for(lambda: settled(app, aid), WAIT_S, "settled")
    out = app.process.output()
    assert "worker cursor reset account=" + aid in out
    assert app.counter("failures") == 1, out
    # The reset stays noted (so that a second one in a row is caught),
    # but it was not refused as one.
    assert "again" not in (account_of(app.status(), aid)["failure"] or "")
    assert "again" not in out


# ---- handlers --------------------------------------------------------------

def test_failing_command_is_retried_never_skipped(cloud, app_factory,
                                                  tmp_path):
    marker = tmp_path / "failed-once"
    log = tmp_path / "ok.log"
    s = cmd_app(cloud, app_factory, tmp_path,
                "[ \"$DBXHOOK_TAG\" = file ] || exit 0\n"
                f"if [ \"$DBXHOOK_PATH\" = /bad.txt ] && [ ! -e {marker} ]"
                f"; then touch {marker}; exit 3; fi\n"
                f"echo \"$DBXHOOK_PATH\" >> {log}\n")
    app, aid, dbx = s["app"], s["aid"], s["dbx"]
    dbx.files_upload(b"x", "/bad.txt")
    app.appctl("mark", "--account", aid)
    wait_for(marker.exists, WAIT_S, "the failing command")
    wait_for(lambda: account_of(app.status(), aid)["failure"], WAIT_S,
             "the failure in status")
    a = account_of(app.status(), aid)
    assert "/bad.txt" in a["failure"] and a["pending"], a
    assert a["cursor"] is False  # not moved past the failed page
    wait_for(lambda: log.exists() and "/bad.txt" in log.read_text(),
             WAIT_S, "the retry")
    wait_for(lambda: settled(app, aid), WAIT_S, "settled")
    out = app.process.output()
    assert lines_with(out, "worker failure account=" + aid, "/bad.txt")
    a = account_of(app.status(), aid)
    assert a["failure"] is None and a["cursor"] is True and a["last_sync"]
    assert log.read_text().splitlines() == ["/bad.txt"]
    assert app.counter("failures") == 1


def test_page_parallelism_is_bounded(cloud, app_factory, tmp_path):
    spans = tmp_path / "spans"
    spans.mkdir()
    s = cmd_app(cloud, app_factory, tmp_path,
                "[ \"$DBXHOOK_TAG\" = file ] || exit 0\n"
                "s=$(date +%s.%N); sleep 0.3; e=$(date +%s.%N)\n"
                f"echo \"$s $e\" > {spans}/$(basename \"$DBXHOOK_PATH\")\n",
                extra=["--page-parallel", "2", "--command-concurrency", "8"])
    app, aid, dbx = s["app"], s["aid"], s["dbx"]
    for i in range(8):
        dbx.files_upload(b"x", f"/f{i}.txt")
    app.appctl("mark", "--account", aid)
    wait_for(lambda: len(list(spans.iterdir())) == 8, WAIT_S, "8 commands")
    iv = [tuple(map(float, p.read_text().split())) for p in spans.iterdir()]
    events = sorted([(a, 1) for a, _ in iv] + [(b, -1) for _, b in iv])
    cur = peak = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    assert peak == 2, peak


# ---- the app secret --------------------------------------------------------

def test_secret_from_a_file_never_the_command_line(bin_path, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k != "DBXHOOK_APP_SECRET"}
    r = subprocess.run([bin_path, "app", "--data", str(tmp_path / "a"),
                        "--secret", "hunter2-on-argv"], capture_output=True,
                       text=True, env=env, timeout=10)
    assert r.returncode == 2
    assert "never taken from the command line" in r.stderr
    assert "hunter2" not in r.stdout + r.stderr
    r = subprocess.run([bin_path, "app", "--data", str(tmp_path / "a"),
                        "--secret=hunter2-on-argv"], capture_output=True,
                       text=True, env=env, timeout=10)
    assert r.returncode == 2 and "hunter2" not in r.stdout + r.stderr

    secret = "file-secret-7f3a"
    (tmp_path / "secret").write_text(secret + "\n")
    port_file = tmp_path / "port"
    log = tmp_path / "app.log"
    p = subprocess.Popen([bin_path, "app", "--data", str(tmp_path / "a"),
                          "--listen", "127.0.0.1:0", "--workers", "0",
                          "--secret-file", str(tmp_path / "secret"),
                          "--port-file", str(port_file)],
                         stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, env=env)
    try:
        def port():
            assert p.poll() is None, log.read_text()
            t = port_file.read_text().strip() if port_file.exists() else ""
            return int(t) if t else None

        class A:
            pass
        a = A()
        a.port = wait_for(port, WAIT_S, "the app to listen")
        aid = "dbid:AAB_file_secret_000000000000000000"
        assert signed_post(a, secret, [aid]) == 200
        assert signed_post(a, "other-secret", [aid]) == 403
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)
    assert secret not in log.read_text()
