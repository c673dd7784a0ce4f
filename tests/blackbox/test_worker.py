"""`dbxhook worker` against a real `dbxhook cloud`.

Each test links an account to an app in the cloud, stores its token in
the app's state with `appctl token-set`, writes Markdown with the official
SDK, marks the account pending with `appctl mark` (as a notification
would) and lets `dbxhook worker` convert.  Every .html must equal md4c's
own rendering of its .md (md4c_render, through ctypes).
"""
import os
import signal
import subprocess
import time

import pytest

from conftest import AppState, md4c_render, wait_for

CONVERT_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10

FILES = {
    "/Notes/Intro.md": b"# Intro\n\nHello *world*.\n",
    "/Docs/UPPER.MD": b"## Upper\n\n- [x] done\n- [ ] todo\n",
    "/Docs/Mixed.Md": b"~~old~~ new, see www.example.com\n",
    "/\u00dcber/R\u00e9sum\u00e9.md": "# R\u00e9sum\u00e9 \u2014 \u65e5\u672c\n"
                                        .encode(),
    "/table.md": b"| Name | Qty |\n|:-----|----:|\n| pear | 3 |\n",
    "/plain.txt": b"# not markdown\n",
    "/notes.markdown": b"# not converted either\n",
}

HTML = {
    "/Notes/Intro.md": "/Notes/Intro.html",
    "/Docs/UPPER.MD": "/Docs/UPPER.html",
    "/Docs/Mixed.Md": "/Docs/Mixed.html",
    "/\u00dcber/R\u00e9sum\u00e9.md": "/\u00dcber/R\u00e9sum\u00e9.html",
    "/table.md": "/table.html",
}


class Worker:
    """A running `dbxhook worker` on an app data directory."""

    def __init__(self, bin_path, workdir, data, cloud, threads=1):
        self.log_path = os.path.join(workdir, "worker.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [bin_path, "worker", "--data", data, "--api-url", cloud.url,
             "--content-url", cloud.url, "--ca", cloud.ca,
             "--threads", str(threads)],
            stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=workdir)

    def output(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def setup(bin_path, cloud, tmp_path, monkeypatch):
    """A linked account with its token in a fresh app state, an SDK
    client for it, and a worker factory; workers stop at the end."""
    # requests (2.28) replaces the SDK's ca_certs with its own bundle when
    # it verifies, so the cloud's CA has to reach it through the
    # environment.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cloud.ca)
    account, _, token = cloud.new_linked_account()
    data = str(tmp_path / "appdata")
    state = AppState(bin_path, data)
    state.run("token-set", "--account", account["account_id"], stdin=token)
    workers = []

    def start_worker(threads=1):
        w = Worker(bin_path, str(tmp_path), data, cloud, threads)
        workers.append(w)
        return w
    yield {"account": account["account_id"], "dbx": cloud.sdk(token),
           "state": state, "start_worker": start_worker}
    for w in workers:
        w.stop()


def upload(dbx, path, data):
    import dropbox
    return dbx.files_upload(data, path, mode=dropbox.files.WriteMode.overwrite)


def download(dbx, path):
    meta, resp = dbx.files_download(path)
    return meta, resp.content


def html_if_present(dbx, path):
    import dropbox
    try:
        return download(dbx, path)
    except dropbox.exceptions.ApiError:
        return None


def wait_converted(dbx, md_path, source, what=None):
    """Waits until the .html of md_path equals md4c's rendering of
    source; returns its metadata."""
    want = md4c_render(source)

    def ready():
        got = html_if_present(dbx, HTML.get(md_path) or md_path[:-3]
                              + ".html")
        return got if got is not None and got[1] == want else None
    return wait_for(ready, CONVERT_TIMEOUT_S, what or HTML.get(md_path))[0]


def wait_idle(state, account_id):
    """Waits until the account is neither pending nor leased."""
    def idle():
        a = state.account(account_id)
        return a is not None and not a["pending"] and not a["leased"]
    wait_for(idle, CONVERT_TIMEOUT_S, "the account to be processed")


def all_paths(dbx):
    result = dbx.files_list_folder("", recursive=True)
    entries = list(result.entries)
    while result.has_more:
        result = dbx.files_list_folder_continue(result.cursor)
        entries += result.entries
    return {e.path_display for e in entries}


def test_worker_converts_every_markdown_file(setup):
    dbx, state, account = setup["dbx"], setup["state"], setup["account"]
    for path, data in FILES.items():
        upload(dbx, path, data)
    state.mark(account)
    worker = setup["start_worker"]()

    for md_path in HTML:
        wait_converted(dbx, md_path, FILES[md_path])
    wait_idle(state, account)

    paths = all_paths(dbx)
    # Display case kept, extension replaced, non-ASCII names intact.
    for html_path in HTML.values():
        assert html_path in paths, (html_path, paths)
    assert "/plain.html" not in {p.lower() for p in paths}
    assert "/notes.html" not in {p.lower() for p in paths}
    assert not any(p.endswith(".html.html") for p in paths)

    st = state.status()
    entry = state.account(account)
    assert entry["cursor"] is True
    assert entry["has_token"] is True
    assert st["counters"]["pages"] > 0
    assert st["counters"]["runs"] >= 1
    assert st["counters"]["conversions"] == len(HTML)
    assert worker.stop() == 0, worker.output()


def test_rerun_without_changes_uploads_nothing(setup):
    dbx, state, account = setup["dbx"], setup["state"], setup["account"]
    for path, data in FILES.items():
        upload(dbx, path, data)
    state.mark(account)
    setup["start_worker"]()
    revs = {p: wait_converted(dbx, p, FILES[p]).rev for p in HTML}
    wait_idle(state, account)
    conversions = state.counter("conversions")
    runs = state.counter("runs")

    state.mark(account)
    wait_for(lambda: state.counter("runs") > runs, CONVERT_TIMEOUT_S,
             "a second run")
    wait_idle(state, account)
    for md_path, html_path in HTML.items():
        meta = dbx.files_get_metadata(html_path)
        assert meta.rev == revs[md_path], html_path
    assert state.counter("conversions") == conversions


def test_changed_markdown_updates_its_html(setup):
    dbx, state, account = setup["dbx"], setup["state"], setup["account"]
    upload(dbx, "/Notes/Intro.md", FILES["/Notes/Intro.md"])
    state.mark(account)
    setup["start_worker"]()
    first = wait_converted(dbx, "/Notes/Intro.md", FILES["/Notes/Intro.md"])
    wait_idle(state, account)

    changed = b"# Intro, again\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    upload(dbx, "/Notes/Intro.md", changed)
    state.mark(account)
    second = wait_converted(dbx, "/Notes/Intro.md", changed, "new html")
    assert second.rev != first.rev


def test_same_rendering_skips_the_upload(setup):
    """A .md whose new text renders to the same HTML is not re-uploaded."""
    dbx, state, account = setup["dbx"], setup["state"], setup["account"]
    upload(dbx, "/same.md", b"# Same\n")
    state.mark(account)
    setup["start_worker"]()
    first = wait_converted(dbx, "/same.md", b"# Same\n", "/same.html")
    wait_idle(state, account)
    skipped = state.counter("skipped_identical")

    upload(dbx, "/same.md", b"# Same\n\n\n")
    assert md4c_render(b"# Same\n\n\n") == md4c_render(b"# Same\n")
    state.mark(account)
    wait_for(lambda: state.counter("skipped_identical") > skipped,
             CONVERT_TIMEOUT_S, "skipped_identical to grow")
    assert dbx.files_get_metadata("/same.html").rev == first.rev


def test_unknown_account_is_recorded(bin_path, cloud, tmp_path):
    account = cloud.new_account()["account_id"]
    data = str(tmp_path / "appdata")
    state = AppState(bin_path, data)
    worker = Worker(bin_path, str(tmp_path), data, cloud)
    try:
        wait_for(lambda: os.path.exists(os.path.join(data, "app.db")),
                 CONVERT_TIMEOUT_S, "the worker to create the store")
        state.mark(account)
        def recorded():
            a = state.account(account)
            return a if a and a.get("failure") and not a["pending"] else None
        a = wait_for(recorded, CONVERT_TIMEOUT_S, "the failure")
        assert "unknown account" in a["failure"]
        assert "unknown account" in worker.output()
    finally:
        assert worker.stop() == 0


def test_many_files_two_threads(setup):
    """Thirty files, two worker threads: every .md converted exactly once
    (one account is only ever processed by one thread at a time)."""
    dbx, state, account = setup["dbx"], setup["state"], setup["account"]
    sources = {f"/bulk/f{i:02d}.md": f"# File {i}\n".encode()
               for i in range(30)}
    for path, data in sources.items():
        upload(dbx, path, data)
    state.mark(account)
    setup["start_worker"](threads=2)
    for path, data in sources.items():
        wait_converted(dbx, path, data, path)
    wait_idle(state, account)
    assert state.counter("conversions") == len(sources)


def test_worker_help_and_usage(bin_path):
    r = subprocess.run([bin_path, "worker", "--help"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0
    assert "--threads" in r.stdout
    r = subprocess.run([bin_path, "worker", "--threads", "zero"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2


def test_sigterm_stops_promptly(setup):
    worker = setup["start_worker"](threads=3)
    time.sleep(0.5)
    started = time.monotonic()
    assert worker.stop() == 0
    assert time.monotonic() - started < 5


def test_app_workers_convert_after_a_notification(linked, monkeypatch):
    """The whole loop: an SDK upload makes the cloud notify the app, whose
    workers convert without any appctl mark."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", linked["cloud"].ca)
    dbx = linked["dbx"]
    source = b"# Loop\n\n| x | y |\n|---|---|\n| 1 | 2 |\n"
    upload(dbx, "/Loop/Notified.MD", source)
    want = md4c_render(source)

    def converted():
        got = html_if_present(dbx, "/Loop/Notified.html")
        return got is not None and got[1] == want
    wait_for(converted, CONVERT_TIMEOUT_S, "/Loop/Notified.html")
    assert "/Loop/Notified.html" in all_paths(dbx)


def test_rejected_token_keeps_the_account_pending(bin_path, cloud, tmp_path):
    """A 401 ends the run without losing the work: the failure names the
    error, the account stays pending (held by the backoff lease)."""
    account = cloud.new_account()["account_id"]
    data = str(tmp_path / "appdata")
    state = AppState(bin_path, data)
    state.run("token-set", "--account", account, stdin="not-a-real-token")
    state.mark(account)
    worker = Worker(bin_path, str(tmp_path), data, cloud)
    try:
        def recorded():
            a = state.account(account)
            return a if a and a.get("failure") else None
        a = wait_for(recorded, CONVERT_TIMEOUT_S, "the failure")
        assert "invalid_access_token" in a["failure"]
        assert a["pending"] is True
        assert a["cursor"] is False
        assert state.counter("failures") >= 1
        assert "not-a-real-token" not in worker.output()
    finally:
        assert worker.stop() == 0


def test_appctl_refuses_a_missing_store(bin_path, tmp_path):
    """A mistyped --data must not read as an empty app: only token-set,
    which seeds a store, may create one."""
    missing = str(tmp_path / "no" / "such")
    for args in (["status"], ["mark", "--account", "dbid:AAx"],
                 ["cursor", "--account", "dbid:AAx"]):
        r = subprocess.run([bin_path, "appctl", "--data", missing] + args,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1, args
        assert "no app state in" in r.stderr
    assert not os.path.exists(missing)
    r = subprocess.run([bin_path, "appctl", "--data", missing, "token-set",
                        "--account", "dbid:AAx"], input="tok",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert os.path.exists(os.path.join(missing, "app.db"))
