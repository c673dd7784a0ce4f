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

from conftest import md4c_render, wait_for

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
    assert status["counters"]["unknown_accounts"] == 1
    assert f"unknown account={stranger}" in app.process.output()


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
        f"printf '%s %s\\n' \"$DBXHOOK_PATH_LOWER\" \"$DBXHOOK_REV\" >> {log}\n")
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


def run_crash(cloud, app_factory, bin_path, tmp_path, n_files, seconds,
              n_workers=2):
    """Creates n_files (a quarter Markdown, nested), then kills workers
    with kill -9 every 0.3-1 s for `seconds` while files keep arriving;
    checks the end state."""
    app_info = cloud.new_app("crash app")
    account, _, token = cloud.new_linked_account(app_info)
    aid = account["account_id"]
    dbx = cloud.sdk(token)
    app = app_factory(app_info["app_secret"], cloud=cloud, workers=0)
    app.set_token(aid, token)
    assert cloud.admin("webhooks/set", {"app_key": app_info["app_key"],
                                        "uri": app.url})["state"] \
        == "verified"
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
        wait_for(lambda: all_delivered(cloud, app_info["app_key"]),
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
                      n_files=int(os.environ.get("CRASH_FILES", "400")),
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


def converted(loop, path, data):
    def ok():
        try:
            _, r = loop["dbx"].files_download(path[:-3] + ".html")
            return r.content == md4c_render(data)
        except Exception:
            return False
    wait_for(ok, WAIT_S, path, 0.2)


@pytest.mark.parametrize("kind", ["429", "500", "reset"])
def test_fault_is_survived(loop, kind):
    dbx, app, aid = loop["dbx"], loop["app"], loop["aid"]
    dbx.files_upload(b"# one\n", "/one.md")
    app.appctl("mark", "--account", aid)
    converted(loop, "/one.md", b"# one\n")
    fault(loop["cloud"], aid, kind, 1, "files/list_folder/continue")
    dbx.files_upload(b"# two\n", "/two.md")
    app.appctl("mark", "--account", aid)
    converted(loop, "/two.md", b"# two\n")
    if kind != "reset":
        assert app.counter("failures") >= 1


def test_second_reset_in_a_row_is_a_visible_failure(loop):
    dbx, app, aid = loop["dbx"], loop["app"], loop["aid"]
    dbx.files_upload(b"# one\n", "/one.md")
    app.appctl("mark", "--account", aid)
    converted(loop, "/one.md", b"# one\n")
    fault(loop["cloud"], aid, "reset", 2, "files/list_folder/continue")
    app.appctl("mark", "--account", aid)

    def failed():
        a = [x for x in app.status()["accounts"] if x["account"] == aid][0]
        return a["failure"] and "reset" in a["failure"]
    wait_for(failed, WAIT_S, "the reset failure")
