"""Fixtures for the black-box tests: real dbxhook processes on loopback.

Every server is started on 127.0.0.1 with port 0 (the program picks a free
port and writes it to a port file), in its own temporary data directory,
and is stopped when the test ends.  Nothing here talks to any address but
loopback.

The Dropbox SDK reads its host names from the environment when it is
imported, so `sdk_module` sets DROPBOX_*_HOST for the cloud under test and
(re)imports it; tests get ready clients from `cloud.sdk(token)`.
"""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
import ssl

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
START_TIMEOUT_S = 20
STOP_TIMEOUT_S = 10


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The official SDK reads DROPBOX_*_HOST once, when it is imported, as a
# real app would.  So the session picks one loopback port for every cloud
# that SDK clients talk to (one at a time), and sets the variables before
# anything imports dropbox.
SDK_PORT = _free_port()
SDK_HOST = f"127.0.0.1:{SDK_PORT}"
for _var in ("DROPBOX_API_HOST", "DROPBOX_API_CONTENT_HOST",
             "DROPBOX_API_NOTIFY_HOST", "DROPBOX_WEB_HOST"):
    os.environ[_var] = SDK_HOST


def _binary():
    path = os.environ.get("DBXHOOK_BIN",
                          os.path.join(REPO, "build", "dbxhook"))
    if not os.access(path, os.X_OK):
        pytest.exit(f"dbxhook binary not found at {path}; build first "
                    "or set DBXHOOK_BIN", returncode=2)
    return path


@pytest.fixture(scope="session")
def bin_path():
    return _binary()


def wait_for(predicate, timeout_s, what, interval_s=0.05):
    """Polls predicate until it returns a true value; fails after timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting "
                                 f"for {what}")
        time.sleep(interval_s)


class Process:
    """A dbxhook child process with its log captured to a file."""

    def __init__(self, args, workdir, name, env=None):
        self.name = name
        self.workdir = workdir
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.port_file = os.path.join(workdir, f"{name}.port")
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            args + ["--port-file", self.port_file],
            stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=full_env, cwd=workdir)
        try:
            self.port = wait_for(self._read_port, START_TIMEOUT_S,
                                 f"{name} to listen")
        except BaseException:
            self.stop(signal.SIGKILL)
            raise

    def _read_port(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with "
                                 f"{self.proc.returncode}:\n{self.output()}")
        try:
            with open(self.port_file) as f:
                text = f.read().strip()
            return int(text) if text else None
        except (FileNotFoundError, ValueError):
            return None

    def output(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def kill9(self):
        return self.stop(signal.SIGKILL)


class Cloud:
    """A running `dbxhook cloud` over HTTPS with its own CA."""

    def __init__(self, bin_path, workdir, extra_args=(), port=None):
        """port: SDK_PORT by default (so SDK clients reach it); 0 for any
        free port, for tests that run several clouds at once."""
        self.bin = bin_path
        self.listen_port = SDK_PORT if port is None else port
        self.workdir = workdir
        self.data = os.path.join(workdir, "cloud")
        self.extra_args = list(extra_args)
        self.start()

    def start(self):
        self.process = Process(
            [self.bin, "cloud", "--data", self.data,
             "--listen", f"127.0.0.1:{self.listen_port}"]
            + self.extra_args,
            self.workdir, "cloud")
        try:
            self._connect()
        except BaseException:
            self.process.stop()  # never leave a cloud behind a failure
            raise

    def _connect(self):
        """Reads what clients need once the cloud listens."""
        self.port = self.process.port
        self.host = f"127.0.0.1:{self.port}"
        self.ca = os.path.join(self.data, "ca.pem")
        with open(os.path.join(self.data, "admin.token")) as f:
            self.admin_token = f.read().strip()
        if "--http" in self.extra_args:
            self.url = f"http://{self.host}"
            self.ssl_context = None
            return
        self.url = f"https://{self.host}"
        self.ssl_context = ssl.create_default_context(cafile=self.ca)
        if self.listen_port == SDK_PORT:
            # The SDK hands ca_certs to its connection pool, but passes
            # verify=True on every request, and requests then swaps in
            # the system bundle; REQUESTS_CA_BUNDLE is what it honours.
            os.environ["REQUESTS_CA_BUNDLE"] = self.ca

    def stop(self, sig=signal.SIGTERM):
        return self.process.stop(sig)

    def restart(self):
        self.stop()
        self.start()

    def post(self, path, body, headers=None, timeout=30):
        """Raw POST; returns (status, headers, body bytes)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data,
                                     method="POST", headers=headers or {})
        try:
            with urllib.request.urlopen(req, context=self.ssl_context,
                                        timeout=timeout) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def admin(self, name, body=None):
        status, _, data = self.post(
            "/admin/" + name, body or {},
            {"Authorization": "Bearer " + self.admin_token,
             "Content-Type": "application/json"})
        assert status == 200, f"admin {name}: {status} {data!r}"
        return json.loads(data)

    def new_account(self, email=None, name="Test User"):
        email = email or f"user{time.monotonic_ns()}@example.com"
        return self.admin("accounts/create", {"email": email, "name": name})

    def new_app(self, name="test app"):
        return self.admin("apps/create", {"name": name})

    def link(self, app_key, account_id, scopes=None):
        body = {"app_key": app_key, "account_id": account_id}
        if scopes is not None:
            body["scopes"] = scopes
        return self.admin("links/create", body)["access_token"]

    def new_linked_account(self, app=None, scopes=None):
        """Returns (account dict, app dict, access token)."""
        app = app or self.new_app()
        account = self.new_account()
        token = self.link(app["app_key"], account["account_id"], scopes)
        return account, app, token

    def sdk(self, token):
        dropbox = sdk_module(self)
        return dropbox.Dropbox(token, ca_certs=self.ca)


def sdk_module(cloud):
    """The dropbox package; its hosts point at SDK_HOST (see below)."""
    assert cloud.host == SDK_HOST, "SDK clients need the cloud on SDK_PORT"
    import dropbox
    return dropbox


class AppState:
    """`dbxhook appctl` on one app data directory (a running app's, or a
    store shared by worker processes)."""

    def __init__(self, bin_path, data):
        self.bin = bin_path
        self.data = data

    def appctl(self, *args, stdin=None):
        """Runs `dbxhook appctl` on this data; returns stdout."""
        r = subprocess.run([self.bin, "appctl", "--data", self.data]
                           + list(args), input=stdin, capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, f"appctl {args}: {r.stderr}"
        return r.stdout

    run = appctl

    def status(self):
        return json.loads(self.appctl("status"))

    def pending_version(self, account_id):
        """The version of the account's pending mark in app.db, or None."""
        import sqlite3
        db = sqlite3.connect(os.path.join(self.data, "app.db"))
        try:
            row = db.execute("SELECT version FROM pending WHERE account = ?",
                             (account_id,)).fetchone()
            return row[0] if row else None
        finally:
            db.close()

    def account(self, account_id):
        for a in self.status()["accounts"]:
            if a["account"] == account_id:
                return a
        return None

    def counter(self, name):
        return self.status()["counters"].get(name, 0)

    def mark(self, account_id):
        self.appctl("mark", "--account", account_id)

    def set_token(self, account_id, token):
        self.appctl("token-set", "--account", account_id, stdin=token)


class App(AppState):
    """A running `dbxhook app` (receiver, optionally with workers)."""

    def __init__(self, bin_path, workdir, secret, cloud=None, workers=0,
                 extra_args=(), name="app"):
        self.bin = bin_path
        self.workdir = workdir
        self.secret = secret
        self.data = os.path.join(workdir, name)
        self.name = name
        args = [bin_path, "app", "--data", self.data,
                "--listen", "127.0.0.1:0", "--workers", str(workers)]
        if cloud is not None:
            args += ["--api-url", cloud.url, "--content-url", cloud.url,
                     "--ca", cloud.ca]
        self.args = args + list(extra_args)
        self.start()

    def start(self):
        self.process = Process(self.args, self.workdir, self.name,
                               env={"DBXHOOK_APP_SECRET": self.secret})
        self.port = self.process.port
        self.url = f"http://127.0.0.1:{self.port}/webhook"

    def stop(self, sig=signal.SIGTERM):
        return self.process.stop(sig)



@pytest.fixture
def cloud(bin_path, tmp_path):
    c = Cloud(bin_path, str(tmp_path))
    yield c
    c.stop()


@pytest.fixture
def cloud_factory(bin_path, tmp_path):
    """Starts clouds with extra options: cloud_factory("--batch-ms", "300").
    Only one at a time may use the SDK port; pass port=0 for the others."""
    started = []

    def make(*extra_args, port=None):
        workdir = tmp_path / f"c{len(started)}"
        workdir.mkdir()
        c = Cloud(bin_path, str(workdir), extra_args, port)
        started.append(c)
        return c
    yield make
    for c in started:
        c.stop()


@pytest.fixture
def app_factory(bin_path, tmp_path):
    """Starts apps: app_factory(secret, cloud=None, workers=0, extra_args=())."""
    started = []

    def make(secret, cloud=None, workers=0, extra_args=()):
        a = App(bin_path, str(tmp_path), secret, cloud, workers, extra_args,
                name=f"app{len(started)}")
        started.append(a)
        return a
    yield make
    for a in started:
        a.stop()


@pytest.fixture
def linked(cloud, app_factory):
    """The whole loop: cloud, an app with 2 workers, a linked account with
    its token stored in the app, and a verified webhook.  Returns a dict
    with cloud, app, account, app_info, token and dbx (SDK client)."""
    app_info = cloud.new_app("loop app")
    account, _, token = cloud.new_linked_account(app_info)
    app = app_factory(app_info["app_secret"], cloud=cloud, workers=2)
    app.set_token(account["account_id"], token)
    result = cloud.admin("webhooks/set", {"app_key": app_info["app_key"],
                                          "uri": app.url})
    assert result["state"] == "verified", result
    return {"cloud": cloud, "app": app, "account": account,
            "app_info": app_info, "token": token, "dbx": cloud.sdk(token)}


# md4c's own rendering, called through ctypes: the reference every
# converted .html is compared with.  MD_DIALECT_GITHUB is read from the
# installed md4c.h so the flags cannot drift from the library's.
def _md4c_dialect_github():
    import re
    with open("/usr/include/md4c.h") as f:
        header = re.sub(r"/\*.*?\*/", " ", f.read(), flags=re.S)
    defines = dict(re.findall(r"#define\s+(MD_\w+)\s+([^\n]+)", header))

    def value(name):
        total = 0
        for word in re.findall(r"\w+", defines[name]):
            total |= int(word, 16) if word.startswith("0x") else value(word)
        return total
    return value("MD_DIALECT_GITHUB")


def wait_converted(dbx, path, data, timeout_s=30, interval_s=0.1):
    """Waits until X.html beside path (X.md) holds md4c's rendering of
    data, downloaded with the SDK client dbx."""
    def ok():
        try:
            _, r = dbx.files_download(path[:-3] + ".html")
            return r.content == md4c_render(data)
        except Exception:
            return False
    wait_for(ok, timeout_s, path + " converted", interval_s)


def md4c_render(source: bytes) -> bytes:
    """HTML of source as libmd4c-html renders it with MD_DIALECT_GITHUB."""
    import ctypes
    lib = ctypes.CDLL("libmd4c-html.so.0")
    callback_type = ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_char),
                                     ctypes.c_uint, ctypes.c_void_p)
    out = []

    def collect(text, size, _userdata):
        out.append(ctypes.string_at(text, size))

    cb = callback_type(collect)
    rc = lib.md_html(ctypes.c_char_p(source), ctypes.c_uint(len(source)),
                     cb, None, ctypes.c_uint(_md4c_dialect_github()),
                     ctypes.c_uint(0))
    assert rc == 0, "md_html failed"
    return b"".join(out)
