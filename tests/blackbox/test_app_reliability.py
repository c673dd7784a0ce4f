"""The app under stress: unknown accounts, status, the command handler's
once-only records, workers killed with kill -9, and file-API faults
produced on demand by the cloud's fault controls."""
import json
import os
import random
import signal
import subprocess
import time
import urllib.request

import pytest

from conftest import md4c_render, wait_converted, wait_for

SECRET = "reliability-secret"
WAIT_S = 60


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def sign(body):
    import hashlib
    import hmac
    return hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def notify(app, accounts):
    body = json.dumps({"list_folder": {"accounts": accounts},
                       "delta": {"users": [1]}}).encode()
    req = urllib.request.Request(app.url, data=body, method="POST", headers={
        "Content-Type": "application/json",
        "X-Dropbox-Signature": sign(body)})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def test_unknown_account_is_logged_and_ignored(app_factory):
    app = app_factory(SECRET, workers=0)
    stranger = "dbid:AAB_stranger_0000000000000000000000"
    assert notify(app, [stranger]) == 200
    status = app.status()
    assert stranger not in {a["account"] for a in status["accounts"]
                            if a["pending"]}
    # Nothing to mark, so no commit to wait for: the count is written
    # within STATE_COUNT_DEFER_MS (10 ms) of the answer.
    wait_for(lambda: app.counter("unknown_accounts") == 1, 5,
             "the unknown account to be counted")
    assert f"unknown account={stranger}" in app.process.output()


def test_repeat_notifications_skip_the_commit_and_survive_kill9(
        app_factory):
    """An account already pending, and not taken by a worker, needs no
    new mark: the 200 comes without a commit (the version stays), and a
    kill -9 right after the answers loses nothing."""
    app = app_factory(SECRET, workers=0)
    account = "dbid:AAB_repeat_000000000000000000000000"
    app.set_token(account, "token-repeat")
    assert notify(app, [account]) == 200
    first = app.pending_version(account)
    assert first is not None
    for _ in range(20):
        assert notify(app, [account]) == 200
    assert app.pending_version(account) == first
    app.process.kill9()
    app.start()
    a = app.account(account)
    assert a is not None and a["pending"]
    # The first notification was counted in its mark's commit; the
    # others' counts are written within 10 ms and may die with the
    # process.
    assert 1 <= app.counter("notifications") <= 21
    # A mark that a worker has taken is bumped again: the process is
    # stopped, the lease written as `dbxhook worker` would on claiming.
    app.stop()
    import sqlite3
    db = sqlite3.connect(os.path.join(app.data, "app.db"))
    with db:
        db.execute("INSERT INTO leases(account, owner, fence, expires_ms)"
                   " VALUES(?, 'test-holder', 1, ?)",
                   (account, int((time.time() + 600) * 1000)))
    db.close()
    app.start()
    assert notify(app, [account]) == 200
    assert app.pending_version(account) > first


def test_status_page_has_no_secrets(app_factory):
    app = app_factory(SECRET, workers=0)
    account = "dbid:AAB_known_00000000000000000000000000"
    app.set_token(account, "very-secret-token refresh-secret")
    assert notify(app, [account]) == 200
    base = f"http://127.0.0.1:{app.port}"
    status, _, body = http_get(base + "/status")
    assert status == 200
    doc = json.loads(body)
    assert doc["pending"] == 1
    assert b"very-secret-token" not in body
    assert b"refresh-secret" not in body
    req = urllib.request.Request(base + "/status", data=b"x", method="POST")
    try:
        urllib.request.urlopen(req, timeout=10)
        assert False, "POST /status must fail"
    except urllib.error.HTTPError as e:
        assert e.code == 405
        assert e.headers["Allow"] == "GET"


class Workers:
    """`dbxhook worker` processes on one data dir, killable one by one."""

    def __init__(self, bin_path, workdir, data, cloud, extra):
        self.args = [bin_path, "worker", "--data", data, "--api-url",
                     cloud.url, "--content-url", cloud.url, "--ca",
                     cloud.ca] + extra
        self.workdir = workdir
        self.procs = []
        self.log = open(os.path.join(workdir, "workers.log"), "ab")

    def start(self):
        p = subprocess.Popen(self.args, stdout=self.log,
                             stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, cwd=self.workdir)
        self.procs.append(p)
        return p

    def alive(self):
        return [p for p in self.procs if p.poll() is None]

    def stop_all(self):
        for p in self.alive():
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.log.close()

    def output(self):
        self.log.flush()
        with open(os.path.join(self.workdir, "workers.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")


def cmd_script(tmp_path):
    """A command that appends 'path rev' for files to a log, atomically."""
    log = tmp_path / "commands.log"
    script = tmp_path / "cmd.sh"
    script.write_text(
        "#!/bin/sh\n"
        "[ \"$DBXHOOK_TAG\" = file ] || exit 0\n"
        f"printf '%s %s\\n' \"$DBXHOOK_PATH_LOWER\" \"$DBXHOOK_REV\" "
        f">> {log}\n")
    script.chmod(0o755)
    return str(script), log


def all_files(dbx):
    out = {}
    r = dbx.files_list_folder("", recursive=True, limit=2000)
    while True:
        for e in r.entries:
            if hasattr(e, "rev"):
                out[e.path_lower] = e
        if not r.has_more:
            return out, r.cursor
        r = dbx.files_list_folder_continue(r.cursor)


def all_delivered(cloud, app_key):
    """True when the cloud holds no change it has not yet delivered to the
    app: no account waiting for a notification, none in flight."""
    d = cloud.admin("deliveries/list", {"app_key": app_key, "limit": 50})
    return d["pending_accounts"] == 0 and \
        all(x["state"] != "pending" for x in d["deliveries"])


def webhook_app(cloud, app_factory, name):
    """An app (no worker threads) with a linked account whose token it
    holds and its webhook verified by the cloud; (app, app_key, aid,
    dbx)."""
    app_info = cloud.new_app(name)
    account, _, token = cloud.new_linked_account(app_info)
    aid = account["account_id"]
    app = app_factory(app_info["app_secret"], cloud=cloud, workers=0)
    app.set_token(aid, token)
    assert cloud.admin("webhooks/set", {"app_key": app_info["app_key"],
                                        "uri": app.url})["state"] \
        == "verified"
    return app, app_info["app_key"], aid, cloud.sdk(token)


def run_crash(cloud, app_factory, bin_path, tmp_path, n_files, seconds,
              n_workers=2):
    """Creates n_files (a quarter Markdown, nested), then kills workers
    with kill -9 every 0.3-1 s for `seconds` while files keep arriving;
    checks the end state."""
    app, app_key, aid, dbx = webhook_app(cloud, app_factory, "crash app")
    script, log = cmd_script(tmp_path)
    sources = {}
    for i in range(n_files):
        folder = f"/d{i % 7}/s{i % 5}"
        if i % 4 == 0:
            path = f"{folder}/doc{i}.md"
            data = f"# Doc {i}\n\n* item {i}\n".encode()
        else:
            path = f"{folder}/f{i}.txt"
            data = f"file {i}\n".encode()
        dbx.files_upload(data, path)
        sources[path] = data
    workers = Workers(bin_path, str(tmp_path), app.data, cloud,
                      ["--threads", "2", "--lease-ms", "1000",
                       "--command", script, "--command-timeout-ms", "5000"])
    for _ in range(n_workers):
        workers.start()
    rng = random.Random(7)
    deadline = time.monotonic() + seconds
    extra = 0
    kills = 0
    try:
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.3, 1.0))
            path = f"/late/n{extra}.md"
            data = f"late {extra}\n".encode()
            dbx.files_upload(data, path)
            sources[path] = data
            extra += 1
            victims = workers.alive()
            if victims:
                rng.choice(victims).send_signal(signal.SIGKILL)
                kills += 1
            while len(workers.alive()) < n_workers:
                workers.start()

        # Every change must have reached the app before "not pending"
        # means anything: the cloud notifies a little after an upload.
        wait_for(lambda: all_delivered(cloud, app_key),
                 WAIT_S, "the last notification", 0.1)

        def settled():
            st = app.status()
            acct = [a for a in st["accounts"] if a["account"] == aid][0]
            return not acct["pending"]
        wait_for(settled, WAIT_S * 3, "the account to settle", 0.3)
    finally:
        workers.stop_all()

    files, _ = all_files(dbx)
    for path, data in sources.items():
        if not path.endswith(".md"):
            continue
        html = path[:-3] + ".html"
        assert html in files, f"{html} missing"
        _, resp = dbx.files_download(html)
        assert resp.content == md4c_render(data), html
    lines = log.read_text().splitlines()
    assert len(lines) == len(set(lines)), "a command ran twice"
    want = {f"{p} {e.rev}" for p, e in files.items()}
    assert set(lines) == want
    cursor = app.appctl("cursor", "--account", aid).strip()
    r = dbx.files_list_folder_continue(cursor)
    assert r.entries == [] and not r.has_more
    return kills


def test_crash_kill9_while_files_arrive(cloud, app_factory, bin_path,
                                        tmp_path):
    kills = run_crash(cloud, app_factory, bin_path, tmp_path,
                      n_files=int(os.environ.get("CRASH_FILES", "2000")),
                      seconds=float(os.environ.get("CRASH_SECONDS", "8")))
    assert kills >= 5


def fault(cloud, aid, kind, count, route=None):
    body = {"account_id": aid, "fault": kind, "count": count}
    if route:
        body["route"] = route
    status, _, data = cloud.post(
        "/admin/faults/set", body,
        {"Authorization": "Bearer " + cloud.admin_token,
         "Content-Type": "application/json"})
    if status != 200:
        pytest.skip(f"cloud has no faults/set yet ({status})")
    return json.loads(data)


@pytest.fixture
def loop(cloud, app_factory):
    app_info = cloud.new_app("fault app")
    account, _, token = cloud.new_linked_account(app_info)
    aid = account["account_id"]
    app = app_factory(app_info["app_secret"], cloud=cloud, workers=1,
                      extra_args=["--app-key", app_info["app_key"]])
    app.set_token(aid, token)
    return {"app": app, "aid": aid, "dbx": cloud.sdk(token), "cloud": cloud}


@pytest.mark.parametrize("kind", ["429", "500", "reset"])
def test_fault_is_survived(loop, kind):
    dbx, app, aid = loop["dbx"], loop["app"], loop["aid"]
    dbx.files_upload(b"# one\n", "/one.md")
    app.appctl("mark", "--account", aid)
    wait_converted(loop["dbx"], "/one.md", b"# one\n", WAIT_S, 0.2)
    fault(loop["cloud"], aid, kind, 1, "files/list_folder/continue")
    dbx.files_upload(b"# two\n", "/two.md")
    app.appctl("mark", "--account", aid)
    wait_converted(loop["dbx"], "/two.md", b"# two\n", WAIT_S, 0.2)
    if kind != "reset":
        assert app.counter("failures") >= 1


@pytest.mark.parametrize("resets", [2, 3])
def test_second_reset_in_a_row_is_a_visible_failure(loop, resets):
    """resets=3: the cloud resets the retry too; after the failure's
    backoff the app lists from scratch once more (not never, not in a
    loop) and catches up."""
    dbx, app, aid = loop["dbx"], loop["app"], loop["aid"]
    dbx.files_upload(b"# one\n", "/one.md")
    app.appctl("mark", "--account", aid)
    wait_converted(loop["dbx"], "/one.md", b"# one\n", WAIT_S, 0.2)
    fault(loop["cloud"], aid, "reset", resets, "files/list_folder/continue")
    # The first reset: one fresh listing, the run carries on.
    dbx.files_upload(b"# two\n", "/two.md")
    app.appctl("mark", "--account", aid)
    wait_converted(loop["dbx"], "/two.md", b"# two\n", WAIT_S, 0.2)
    wait_for(lambda: not [a for a in app.status()["accounts"]
                          if a["account"] == aid and a["pending"]],
             WAIT_S, "the first reset's run to end")
    assert app.counter("failures") == 0
    # The next run's cursor (from that fresh listing) is reset too: a
    # visible failure (status, counter, log), not another listing.
    dbx.files_upload(b"# three\n", "/three.md")
    app.appctl("mark", "--account", aid)

    def failed():
        a = [x for x in app.status()["accounts"] if x["account"] == aid][0]
        return a["failure"] and "reset again" in a["failure"]
    wait_for(failed, WAIT_S, "the reset failure")
    assert app.counter("failures") == 1
    # Once the cloud serves the cursor again, the backoff's retry works.
    wait_converted(loop["dbx"], "/three.md", b"# three\n", WAIT_S, 0.2)
    out = app.process.output()
    assert out.count("worker cursor reset account=" + aid) == resets - 1
    assert len([x for x in out.splitlines()
                if f"worker failure account={aid}" in x
                and "reset again" in x]) == 1


# ---- --md-deleted and moves ------------------------------------------------

def md_loop(cloud, app_factory, mode):
    app_info = cloud.new_app("md app")
    account, _, token = cloud.new_linked_account(app_info)
    aid = account["account_id"]
    app = app_factory(app_info["app_secret"], cloud=cloud, workers=1,
                      extra_args=["--md-deleted", mode] if mode else [])
    app.set_token(aid, token)
    return {"app": app, "aid": aid, "dbx": cloud.sdk(token), "cloud": cloud}


def settle(loop):
    """Marks the account and waits for the run it causes to end."""
    app, aid = loop["app"], loop["aid"]
    runs = app.counter("runs")
    app.appctl("mark", "--account", aid)
    wait_for(lambda: app.counter("runs") > runs and not [
        a for a in app.status()["accounts"]
        if a["account"] == aid and a["pending"]], WAIT_S, "a run")


def exists(dbx, path):
    import dropbox
    try:
        dbx.files_get_metadata(path)
        return True
    except dropbox.exceptions.ApiError:
        return False


@pytest.mark.parametrize("mode", ["keep", "delete", None])
def test_md_deleted_option(cloud, app_factory, mode):
    """None: the option left out keeps the .html, as docs/CLI.md says."""
    loop = md_loop(cloud, app_factory, mode)
    dbx, app = loop["dbx"], loop["app"]
    for name in ("gone", "moved", "stays"):
        dbx.files_upload(f"# {name}\n".encode(), f"/{name}.md")
    settle(loop)
    assert app.counter("conversions") == 3
    dbx.files_delete_v2("/gone.md")
    dbx.files_move_v2("/moved.md", "/elsewhere/moved-now.md")
    settle(loop)
    gone = not exists(dbx, "/gone.html") and not exists(dbx, "/moved.html")
    kept = exists(dbx, "/gone.html") and exists(dbx, "/moved.html")
    assert (gone if mode == "delete" else kept)
    assert app.counter("html_deleted") == (2 if mode == "delete" else 0)
    assert exists(dbx, "/stays.html")
    assert exists(dbx, "/elsewhere/moved-now.html")
    assert app.counter("failures") == 0


@pytest.mark.parametrize("mode", ["keep", "delete"])
def test_moved_folder_uploads_nothing(cloud, app_factory, mode):
    loop = md_loop(cloud, app_factory, mode)
    dbx, app = loop["dbx"], loop["app"]
    n = 6
    for i in range(n):
        dbx.files_upload(f"# doc {i}\n".encode(), f"/src/sub{i % 2}/d{i}.md")
    settle(loop)
    assert app.counter("conversions") == n
    revs = {}
    for i in range(n):
        m = dbx.files_get_metadata(f"/src/sub{i % 2}/d{i}.html")
        revs[f"/dst/sub{i % 2}/d{i}.html"] = m.content_hash
    dbx.files_move_v2("/src", "/dst")
    settle(loop)
    # Nothing converted again; the moved .html are the same files, each
    # with one revision (none uploaded after the move); with delete,
    # nothing moved was deleted either.
    assert app.counter("conversions") == n
    assert app.counter("skipped_identical") == n
    assert app.counter("html_deleted") == 0
    assert app.counter("failures") == 0
    for path, h in revs.items():
        m = dbx.files_get_metadata(path)
        assert m.content_hash == h
        assert len(dbx.files_list_revisions(path).entries) == 1, path
    assert not exists(dbx, "/src")


# ---- the receiver under pressure --------------------------------------------

def post_raw(port, body, headers, timeout=20):
    """POST /webhook; returns (status, headers)."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", "/webhook", body, headers)
        r = c.getresponse()
        r.read()
        return r.status, dict(r.getheaders())
    finally:
        c.close()


def signed(accounts, secret=SECRET):
    import hashlib
    import hmac
    body = json.dumps({"list_folder": {"accounts": accounts}}).encode()
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json",
                  "X-Dropbox-Signature": mac}


class DbLock:
    """Another connection holding app.db's write lock."""

    def __init__(self, app):
        import sqlite3
        self.db = sqlite3.connect(os.path.join(app.data, "app.db"),
                                  timeout=10, isolation_level=None)
        self.db.execute("BEGIN EXCLUSIVE")

    def release(self):
        self.db.execute("ROLLBACK")
        self.db.close()


def test_503_above_the_soft_limit_and_when_the_store_is_locked(app_factory):
    import threading
    app = app_factory(SECRET, workers=0, extra_args=["--max-conns", "2"])
    aid = "dbid:AAB_busy_000000000000000000000000000"
    app.set_token(aid, "tok")
    body, headers = signed([aid])
    lock = DbLock(app)
    results = []

    def one():
        results.append(post_raw(app.port, body, headers))
    first = [threading.Thread(target=one) for _ in range(2)]
    for t in first:
        t.start()
    time.sleep(0.5)     # both are now waiting in the handler for the lock
    for _ in range(3):
        status, hdrs = post_raw(app.port, body, headers)
        assert status == 503 and hdrs.get("Retry-After") == "1"
    lock.release()
    for t in first:
        t.join(15)
    assert sorted(s for s, _ in results) == [200, 200]
    assert app.process.output().count("reason=busy") == 3

    # A store that cannot commit within its busy timeout: 503, not 200,
    # for an account not yet pending; one already pending (and not taken
    # by a worker) needs no commit, so it is still answered 200.
    aid2 = "dbid:AAB_busy_000000000000000000000000002"
    app.set_token(aid2, "tok2")
    body2, headers2 = signed([aid2])
    lock = DbLock(app)
    try:
        status, hdrs = post_raw(app.port, body2, headers2)
        pending_status = post_raw(app.port, body, headers)[0]
    finally:
        lock.release()
    assert status == 503 and hdrs.get("Retry-After") == "1"
    assert "notification not stored" in app.process.output()
    assert pending_status == 200
    assert post_raw(app.port, body2, headers2)[0] == 200
    assert app.status()["pending"] == 2


def raw_request(port, data, timeout=10):
    """Sends data and reads the reply; the server may answer (and close)
    before it has read everything, as it does for 431 and 413."""
    import socket
    reply = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:  # EPIPE, ECONNRESET, ENOTCONN: it answered early
            pass
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except ConnectionResetError:
            pass
    return reply


def test_limits_431_413_405(app_factory):
    app = app_factory(SECRET, workers=0)
    big = b"X-Filler: " + b"a" * 20000 + b"\r\n"
    reply = raw_request(app.port, b"POST /webhook HTTP/1.1\r\nHost: x\r\n"
                        b"Connection: close\r\n"
                        + big + b"Content-Length: 0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 431"), reply[:80]
    body, headers = signed(["dbid:AAB_x"])
    headers["Content-Length"] = str(2 * 1024 * 1024)
    headers["Connection"] = "close"
    reply = raw_request(app.port, b"POST /webhook HTTP/1.1\r\nHost: x\r\n" +
                        b"".join(f"{k}: {v}\r\n".encode()
                                 for k, v in headers.items()) + b"\r\n" +
                        b"{" * (2 * 1024 * 1024))
    assert reply.startswith(b"HTTP/1.1 413"), reply[:80]
    for method in ("PUT", "DELETE", "PATCH"):
        reply = raw_request(app.port, method.encode() +
                            b" /webhook HTTP/1.1\r\nHost: x\r\n"
                            b"Connection: close\r\n"
                            b"Content-Length: 0\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 405"), reply[:80]
        assert b"Allow: GET, POST" in reply
    assert app.status()["pending"] == 0


def test_max_conns_is_checked(bin_path, tmp_path):
    r = subprocess.run([bin_path, "app", "--data", str(tmp_path),
                        "--max-conns", "0"], capture_output=True, text=True,
                       env=dict(os.environ, DBXHOOK_APP_SECRET="s"),
                       timeout=10)
    assert r.returncode == 2 and "--max-conns" in r.stderr


# ---- one account, one listing at a time ----------------------------------

def log_intervals(text, account):
    """[(begin, end)] of the `worker list` debug lines of one process's
    log (one thread per process, so they pair in order)."""
    import datetime
    out, begin = [], None
    for line in text.splitlines():
        if f"account={account}" not in line or " worker list " not in line:
            continue
        t = datetime.datetime.strptime(line.split()[0],
                                       "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
        if " worker list begin " in line:
            assert begin is None, "two list calls in one thread"
            begin = t
        else:
            assert begin is not None
            out.append((begin, t))
            begin = None
    assert begin is None
    return out


def test_notification_during_a_run_never_overlaps(cloud, app_factory,
                                                  bin_path, tmp_path):
    app, _, aid, dbx = webhook_app(cloud, app_factory, "overlap app")
    log = tmp_path / "cmd.log"
    script = tmp_path / "slow.sh"
    script.write_text("#!/bin/sh\n"
                      "case \"$DBXHOOK_PATH\" in */slow*) sleep 0.25;; esac\n"
                      f"echo \"$DBXHOOK_PATH_LOWER\" >> {log}\n")
    script.chmod(0o755)
    for i in range(8):
        dbx.files_upload(f"# slow {i}\n".encode(), f"/slow{i}.md")
    procs, logs = [], []
    env = dict(os.environ, DBXHOOK_LOG="debug")

    def start():
        path = tmp_path / f"w{len(procs)}.log"
        logs.append(path)
        procs.append(subprocess.Popen(
            [bin_path, "worker", "--data", app.data, "--api-url",
             cloud.url, "--content-url", cloud.url, "--ca", cloud.ca,
             "--threads", "1", "--page-parallel", "1",
             "--lease-ms", "1500", "--command", str(script)],
            stdout=open(path, "ab"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env))

    def owner_pid():
        for p, path in zip(procs, logs):
            if "worker claimed" in path.read_text():
                return p
        return None
    try:
        start()
        start()
        app.appctl("mark", "--account", aid)
        # The run is busy with the slow files (~2 s of commands)...
        wait_for(lambda: log.exists() and log.read_text().count("slow")
                 >= 2, WAIT_S, "the run to start")
        # ...its worker is told to stop (it ends its page first) and a
        # fresh one joins, so the account changes hands mid-stream...
        wait_for(owner_pid, WAIT_S, "the lease owner").send_signal(
            signal.SIGTERM)
        start()
        dbx.files_upload(b"# second\n", "/second.md")
        assert log.read_text().count("slow") < 8
        # ...and more notifications pile up meanwhile.
        body, headers = signed([aid], app.secret)
        for _ in range(5):
            assert post_raw(app.port, body, headers)[0] == 200
            time.sleep(0.1)
        wait_for(lambda: "/second.md" in log.read_text(), WAIT_S,
                 "the follow-up run")
        _, r = dbx.files_download("/second.html")
        assert r.content == md4c_render(b"# second\n")
        wait_for(lambda: not app.status()["pending"], WAIT_S, "settled")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(15)
    spans = [log_intervals(p.read_text(), aid) for p in logs]
    assert len([s for s in spans if s]) >= 2, "one worker did everything"
    for i, a in enumerate(spans):
        for b in spans[i + 1:]:
            for x in a:
                for y in b:
                    assert x[1] <= y[0] or y[1] <= x[0], (x, y)
    assert app.counter("runs") >= 2
    lines = log.read_text().splitlines()
    assert len(lines) == len(set(lines)), "a command ran twice"
    want = {f"/slow{i}.md" for i in range(8)} | {"/second.md"}
    assert want <= set(lines)


# ---- the command handler --------------------------------------------------

def cmd_loop(cloud, app_factory, tmp_path, body, extra=()):
    app_info = cloud.new_app("cmd app")
    account, _, token = cloud.new_linked_account(app_info)
    aid = account["account_id"]
    script = tmp_path / "cmd.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    app = app_factory(app_info["app_secret"], cloud=cloud, workers=1,
                      extra_args=["--command", str(script),
                                  "--markdown", "off"] + list(extra))
    app.set_token(aid, token)
    return {"app": app, "aid": aid, "dbx": cloud.sdk(token), "cloud": cloud}


def test_command_env_and_once_per_rev(cloud, app_factory, tmp_path):
    log = tmp_path / "env.log"
    loop = cmd_loop(cloud, app_factory, tmp_path,
                    "echo \"$DBXHOOK_ACCOUNT|$DBXHOOK_PATH|"
                    "$DBXHOOK_PATH_LOWER|$DBXHOOK_TAG|$DBXHOOK_REV\""
                    f" >> {log}\n")
    dbx, app, aid = loop["dbx"], loop["app"], loop["aid"]
    m1 = dbx.files_upload(b"one", "/Dir/A File.txt")
    m2 = dbx.files_upload(b"two", "/b.MD")
    settle(loop)
    lines = set(log.read_text().splitlines())
    assert f"{aid}|/Dir/A File.txt|/dir/a file.txt|file|{m1.rev}" in lines
    assert f"{aid}|/b.MD|/b.md|file|{m2.rev}" in lines
    assert f"{aid}|/Dir|/dir|folder|" in lines
    assert app.counter("commands") == 3
    # A listing from scratch (the cursor reset) sees the files again: the
    # commands for their revisions do not run again.
    fault(cloud, aid, "reset", 1, "files/list_folder/continue")
    dbx.files_upload(b"three", "/c.txt")
    settle(loop)
    again = log.read_text().splitlines()
    files = [x for x in again if "|file|" in x]
    assert len(files) == len(set(files)) == 3
    assert app.counter("skipped_handled") >= 2
    # A new revision of a file does run.
    m3 = dbx.files_upload(b"one v2", "/Dir/A File.txt",
                          mode=__import__("dropbox").files.WriteMode
                          .overwrite)
    settle(loop)
    assert f"{aid}|/Dir/A File.txt|/dir/a file.txt|file|{m3.rev}" in \
        log.read_text().splitlines()


def test_command_timeout_is_a_retried_failure(cloud, app_factory,
                                              tmp_path):
    log = tmp_path / "done.log"
    marker = tmp_path / "hung-once"
    pidfile = tmp_path / "hung.pid"
    loop = cmd_loop(cloud, app_factory, tmp_path,
                    f"if [ \"$DBXHOOK_PATH\" = /hang.txt ] && "
                    f"[ ! -e {marker} ]; then\n"
                    f"  touch {marker}; echo $$ > {pidfile}; exec sleep 30\n"
                    f"fi\necho \"$DBXHOOK_PATH\" >> {log}\n",
                    ["--command-timeout-ms", "500"])
    dbx, app, aid = loop["dbx"], loop["app"], loop["aid"]
    dbx.files_upload(b"x", "/hang.txt")
    app.appctl("mark", "--account", aid)

    def failed():
        a = [x for x in app.status()["accounts"] if x["account"] == aid][0]
        return a["failure"] and "/hang.txt" in a["failure"]
    wait_for(failed, WAIT_S, "the timeout to show in status")
    assert app.counter("failures") >= 1
    wait_for(lambda: log.exists() and "/hang.txt" in log.read_text(),
             WAIT_S, "the retry to succeed")
    pid = int(pidfile.read_text())
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 5,
             "the hung command to be killed")
    wait_for(lambda: not app.status()["pending"], WAIT_S, "settled")
    a = [x for x in app.status()["accounts"] if x["account"] == aid][0]
    assert a["failure"] is None and a["failures_in_row"] == 0
    assert log.read_text().splitlines().count("/hang.txt") == 1


def test_command_concurrency_limit(cloud, app_factory, tmp_path):
    spans = tmp_path / "spans"
    spans.mkdir()
    loop = cmd_loop(cloud, app_factory, tmp_path,
                    "[ \"$DBXHOOK_TAG\" = file ] || exit 0\n"
                    "s=$(date +%s.%N); sleep 0.3; e=$(date +%s.%N)\n"
                    f"echo \"$s $e\" > {spans}/$(basename "
                    "\"$DBXHOOK_PATH\")\n",
                    ["--command-concurrency", "2", "--page-parallel", "8"])
    dbx = loop["dbx"]
    for i in range(10):
        dbx.files_upload(b"x", f"/f{i}.txt")
    settle(loop)
    iv = [tuple(map(float, p.read_text().split()))
          for p in spans.iterdir()]
    assert len(iv) == 10
    events = sorted([(s, 1) for s, _ in iv] + [(e, -1) for _, e in iv],
                    key=lambda x: (x[0], x[1]))
    cur = peak = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    assert peak == 2, peak
