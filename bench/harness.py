"""Shared machinery for the benchmarks: processes, ports, the cloud's admin
API, signing, peak RSS, and the result rows.

Every server is started here on 127.0.0.1 with a port picked at run time,
in a temporary directory, and stopped by the bench that started it (the
Procs registry stops whatever is left when the run ends).  Nothing talks
to any address but loopback.
"""
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
PY = "/usr/bin/python3"
START_TIMEOUT_S = 20
STOP_TIMEOUT_S = 10

# Debian packages the benches need, by the program or file that shows
# they are installed.
PACKAGES = {
    "wrk": "/usr/bin/wrk",
    "nginx-light": "/usr/sbin/nginx",
    "python3-flask": "/usr/lib/python3/dist-packages/flask",
    "python3-redis": "/usr/lib/python3/dist-packages/redis",
    "python3-markdown": "/usr/lib/python3/dist-packages/markdown",
    "redis-server": "/usr/bin/redis-server",
    "libcmark-gfm-dev": "/usr/include/cmark-gfm.h",
    "libcmark-gfm-extensions-dev": "/usr/include/cmark-gfm-core-extensions.h",
}


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def ensure_packages():
    """Installs the missing packages with apt-get (root only)."""
    missing = [p for p, f in PACKAGES.items() if not os.path.exists(f)]
    if not missing:
        return
    if os.getuid() != 0:
        sys.exit("bench: missing Debian packages: " + " ".join(missing)
                 + "\n  install as root: apt-get install "
                 "--no-install-recommends " + " ".join(missing))
    log("installing " + " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q",
                    "--no-install-recommends"] + missing, check=True,
                   env=env, stdout=subprocess.DEVNULL)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout_s, what, interval_s=0.02):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s}s: {what}")
        time.sleep(interval_s)


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def vm_hwm_kib(pid):
    """Peak resident set size of pid (VmHWM), in KiB; 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def percentile(values, p):
    if not values:
        return 0.0
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


def sign(secret, body):
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def notification_body(accounts):
    """The body the cloud sends, in Python's default JSON spacing."""
    return json.dumps({"list_folder": {"accounts": list(accounts)},
                       "delta": {"users": [1001 + i for i in
                                           range(len(accounts))]}}).encode()


def account_id(i):
    """A well-formed 40-character account id, distinct for each i."""
    return "dbid:" + f"BENCH{i:030d}"


class Proc:
    """A child process with its output in workdir/name.log."""

    def __init__(self, procs, args, workdir, name, env=None, cwd=None):
        self.name = name
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log = open(self.log_path, "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(args, stdout=self.log,
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=full_env,
                                     cwd=cwd or workdir)
        self.pid = self.proc.pid
        procs.add(self)

    def alive(self):
        return self.proc.poll() is None

    def check_alive(self):
        if not self.alive():
            raise RuntimeError(f"{self.name} exited with "
                               f"{self.proc.returncode}:\n{self.output()}")
        return True

    def output(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-4000:]

    def hwm_kib(self):
        return vm_hwm_kib(self.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()


class Procs:
    """Every process the run started, so that all are stopped at the end."""

    def __init__(self):
        self.items = []

    def add(self, p):
        self.items.append(p)

    def stop_all(self):
        for p in reversed(self.items):
            p.stop()
        self.items = []


def _read_port(proc, port_file):
    proc.check_alive()
    try:
        with open(port_file) as f:
            text = f.read().strip()
        return int(text) if text else None
    except (FileNotFoundError, ValueError):
        return None


def start_listening(procs, args, workdir, name, env=None):
    """Starts ARGS (a dbxhook server) with `--port-file` in workdir;
    returns (proc, port) once it listens."""
    port_file = os.path.join(workdir, f"{name}.port")
    if os.path.exists(port_file):
        os.unlink(port_file)
    p = Proc(procs, args + ["--port-file", port_file], workdir, name, env)
    port = wait_for(lambda: _read_port(p, port_file), START_TIMEOUT_S,
                    f"{name} to listen")
    return p, port


def start_dbxhook(ctx, args, name, env=None):
    """Starts `dbxhook ARGS --port-file ..`; returns (proc, port)."""
    return start_listening(ctx.procs, [ctx.bin] + args, ctx.tmp, name, env)


class Cloud:
    """A `dbxhook cloud` over HTTPS on a port picked at run time."""

    def __init__(self, ctx, name="cloud", extra=(), port=None):
        self.ctx = ctx
        self.name = name
        self.data = os.path.join(ctx.tmp, name)
        self.extra = list(extra)
        self.listen = port or free_port()
        self.start()

    def start(self):
        self.proc, self.port = start_dbxhook(
            self.ctx, ["cloud", "--data", self.data, "--listen",
                       f"127.0.0.1:{self.listen}"] + self.extra, self.name)
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"https://{self.host}"
        self.ca = os.path.join(self.data, "ca.pem")
        with open(os.path.join(self.data, "admin.token")) as f:
            self.admin_token = f.read().strip()
        self.ssl = ssl.create_default_context(cafile=self.ca)

    def stop(self):
        self.proc.stop()

    def admin(self, name, body=None):
        req = urllib.request.Request(
            self.url + "/admin/" + name,
            data=json.dumps(body or {}).encode(), method="POST",
            headers={"Authorization": "Bearer " + self.admin_token,
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=self.ssl, timeout=30) as r:
            return json.loads(r.read())

    def linked_account(self, app, email):
        acct = self.admin("accounts/create", {"email": email,
                                              "name": "Bench User"})
        token = self.admin("links/create", {
            "app_key": app["app_key"],
            "account_id": acct["account_id"]})["access_token"]
        return acct, token


def sdk_env(cloud):
    """Environment that points the official SDK at cloud."""
    env = {v: cloud.host for v in ("DROPBOX_API_HOST",
                                   "DROPBOX_API_CONTENT_HOST",
                                   "DROPBOX_API_NOTIFY_HOST",
                                   "DROPBOX_WEB_HOST")}
    env["REQUESTS_CA_BUNDLE"] = cloud.ca
    return env


def appctl(ctx, data, *args, stdin=None):
    r = subprocess.run([ctx.bin, "appctl", "--data", data] + list(args),
                       input=stdin, capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"appctl {args}: {r.stderr}")
    return r.stdout


class Results:
    """The table: one row per figure, ours against a reference."""

    def __init__(self):
        self.rows = []

    def add(self, bench, ours, ref, ref_name, unit, higher_is_better=True,
            note=""):
        ratio = (ours / ref) if ref else 0.0
        self.rows.append({"benchmark": bench, "ours": float(ours),
                          "reference": float(ref), "ref_name": ref_name,
                          "ratio": ratio, "unit": unit,
                          "higher_is_better": higher_is_better,
                          "note": note})

    def table(self):
        head = ("benchmark", "ours", "reference", "ref name", "ratio",
                "unit")
        lines = [[r["benchmark"], fmt(r["ours"]), fmt(r["reference"]),
                  r["ref_name"], f"{r['ratio']:.2f}", r["unit"]]
                 for r in self.rows]
        widths = [max(len(h), *(len(x[i]) for x in lines)) if lines
                  else len(h) for i, h in enumerate(head)]
        out = ["  ".join(h.ljust(w) for h, w in zip(head, widths)),
               "  ".join("-" * w for w in widths)]
        for x in lines:
            out.append("  ".join(c.ljust(w) for c, w in zip(x, widths)))
        return "\n".join(out)


def fmt(v):
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


class Context:
    """What every bench gets: the binary, a temp dir, the processes, the
    corpus, the smoke flag, and the results."""

    def __init__(self, bin_path, tmp, corpus, smoke, results):
        self.bin = bin_path
        self.tmp = tmp
        self.corpus = corpus
        self.smoke = smoke
        self.results = results
        self.procs = Procs()
        self.extra = {}   # figures shared between benches (memory)

    def subdir(self, name):
        path = os.path.join(self.tmp, name)
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        return path


def corpus_files(corpus):
    """(name in the root, bytes) for every Markdown file of the corpus:
    the Rust book's chapters and the CommonMark spec renamed to .md."""
    files = []
    book = os.path.join(corpus, "rust-book")
    for name in sorted(os.listdir(book)):
        if name.endswith(".md"):
            with open(os.path.join(book, name), "rb") as f:
                files.append((name, f.read()))
    with open(os.path.join(corpus, "commonmark", "spec.txt"), "rb") as f:
        files.append(("commonmark-spec.md", f.read()))
    return files
