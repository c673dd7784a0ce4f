#!/usr/bin/python3
"""Notifier figures on loopback (issue 4).

  change-to-POST latency: an upload through /2/files/upload, then the
    wait until its notification reaches the receiver (p50, p99; measured
    from the upload request's start, so it includes the upload itself);
  notifications/s to one fast receiver, and to 100 receivers: N stored
    notifications per webhook are made ready while the cloud is down, and
    the clock runs from the moment the webhooks are verified again until
    the last POST has arrived.

Starts its own `dbxhook cloud --http` on a free loopback port with a data
directory under /tmp, and fast receivers (asyncio) in this process; stops
everything at the end.  Bounded in time: --seconds caps each phase.
`--smoke` is a 1-2 s run.  The last line printed is a JSON object with
the figures.
"""
import argparse
import asyncio
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Receivers:
    """Fast webhooks on 127.0.0.1, all served by one asyncio loop in a
    thread: answer 200 to every request, echo verification challenges,
    record each POST's arrival time."""

    def __init__(self, count):
        self.count = count
        self.ports = []
        self.arrivals = []  # (monotonic s, receiver index)
        self.cond = threading.Condition()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,),
                                       daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        self.servers = []
        for i in range(self.count):
            server = self.loop.run_until_complete(asyncio.start_server(
                lambda r, w, i=i: self._serve(i, r, w), "127.0.0.1", 0))
            self.servers.append(server)
            self.ports.append(server.sockets[0].getsockname()[1])
        ready.set()
        self.loop.run_forever()

    async def _serve(self, index, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                if length:
                    await reader.readexactly(length)
                body = b""
                if method == "GET" and "challenge=" in target:
                    body = target.split("challenge=", 1)[1].split(
                        "&")[0].encode()
                elif method == "POST":
                    with self.cond:
                        self.arrivals.append((time.monotonic(), index))
                        self.cond.notify_all()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                             b"\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    def url(self, index):
        return f"http://127.0.0.1:{self.ports[index]}/hook"

    def posts(self):
        with self.cond:
            return len(self.arrivals)

    def wait_posts(self, count, timeout_s):
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while len(self.arrivals) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def stop(self):
        def close():
            for s in self.servers:
                s.close()
            self.loop.stop()
        self.loop.call_soon_threadsafe(close)
        self.thread.join(10)


class Cloud:
    def __init__(self, binary, workdir, extra=()):
        self.binary = binary
        self.workdir = workdir
        self.data = os.path.join(workdir, "cloud")
        self.extra = list(extra)
        self.proc = None

    def start(self):
        port_file = os.path.join(self.workdir, "cloud.port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        self.log = open(os.path.join(self.workdir, "cloud.log"), "ab")
        self.proc = subprocess.Popen(
            [self.binary, "cloud", "--http", "--data", self.data,
             "--listen", "127.0.0.1:0", "--port-file", port_file]
            + self.extra, stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("cloud did not start; see "
                                 f"{self.workdir}/cloud.log")
            time.sleep(0.02)
        with open(port_file) as f:
            self.port = int(f.read().strip())
        with open(os.path.join(self.data, "admin.token")) as f:
            self.token = f.read().strip()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                               timeout=30)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.log.close()

    def post(self, path, body, headers):
        self.conn.request("POST", path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise SystemExit(f"{path}: {resp.status} {data[:200]!r}")
        return json.loads(data) if data else None

    def admin(self, name, body=None):
        return self.post("/admin/" + name, json.dumps(body or {}),
                         {"Authorization": "Bearer " + self.token,
                          "Content-Type": "application/json"})

    def upload(self, token, path):
        return self.post("/2/files/upload", b"x", {
            "Authorization": "Bearer " + token,
            "Dropbox-API-Arg": json.dumps({"path": path,
                                           "mode": "overwrite"}),
            "Content-Type": "application/octet-stream"})


def percentile(values, p):
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def bench_latency(cloud, receivers, seconds, max_samples):
    app = cloud.admin("apps/create", {"name": "latency"})
    account = cloud.admin("accounts/create",
                          {"email": "lat@example.com", "name": "L"})
    token = cloud.admin("links/create", {
        "app_key": app["app_key"],
        "account_id": account["account_id"]})["access_token"]
    cloud.admin("webhooks/set", {"app_key": app["app_key"],
                                 "uri": receivers.url(0)})
    samples = []
    deadline = time.monotonic() + seconds
    while len(samples) < max_samples and time.monotonic() < deadline:
        before = receivers.posts()
        start = time.monotonic()
        cloud.upload(token, f"/lat{len(samples)}.md")
        if not receivers.wait_posts(before + 1, 10):
            break
        with receivers.cond:
            arrived = receivers.arrivals[before][0]
        samples.append((arrived - start) * 1000.0)
    return samples


def prepare_apps(cloud, receivers, count, prefix):
    """count apps, each with one linked account and its own receiver
    (receiver index i % receivers.count); returns the app dicts."""
    apps = []
    for i in range(count):
        app = cloud.admin("apps/create", {"name": f"{prefix}{i}"})
        account = cloud.admin("accounts/create", {
            "email": f"{prefix}{i}@example.com", "name": "T"})
        cloud.admin("links/create", {"app_key": app["app_key"],
                                     "account_id": account["account_id"]})
        app["uri"] = receivers.url(i % receivers.count)
        app["account"] = account
        apps.append(app)
    return apps


def store_notifications(db_path, apps, per_app):
    """Writes per_app ready notifications for each app (cloud stopped)."""
    now = int(time.time() * 1000)
    db = sqlite3.connect(db_path)
    with db:
        for app in apps:
            app_id = db.execute("SELECT id FROM apps WHERE app_key = ?",
                                (app["app_key"],)).fetchone()[0]
            acct = app["account"]
            body = json.dumps({"list_folder": {"accounts":
                                               [acct["account_id"]]},
                               "delta": {"users": [acct["uid"]]}})
            sig = hmac.new(app["app_secret"].encode(), body.encode(),
                           hashlib.sha256).hexdigest()
            db.executemany(
                "INSERT INTO notifications(app_id, body, signature, state,"
                " attempts, next_attempt_at, created_at)"
                " VALUES (?, ?, ?, 'pending', 0, ?, ?)",
                [(app_id, body, sig, now, now)] * per_app)
    db.close()


def bench_throughput(binary, workdir, receivers, napps, per_app, seconds):
    """Notifications/s from the moment the webhooks are verified."""
    cloud = Cloud(binary, workdir)
    cloud.start()
    try:
        apps = prepare_apps(cloud, receivers, napps, f"t{napps}_")
        for app in apps:  # registered (so the tables exist), then off
            cloud.admin("webhooks/set", {"app_key": app["app_key"],
                                         "uri": app["uri"]})
            cloud.admin("webhooks/disable", {"app_key": app["app_key"]})
    finally:
        cloud.stop()
    store_notifications(os.path.join(cloud.data, "cloud.db"), apps,
                        per_app)
    cloud.start()
    try:
        before = receivers.posts()
        total = napps * per_app
        start = time.monotonic()
        for app in apps:
            cloud.admin("webhooks/set", {"app_key": app["app_key"],
                                         "uri": app["uri"]})
        receivers.wait_posts(before + total, seconds)
        with receivers.cond:
            got = receivers.arrivals[before:before + total]
        elapsed = (got[-1][0] - start) if got else seconds
        return len(got), elapsed
    finally:
        cloud.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get(
        "DBXHOOK_BIN", os.path.join(REPO, "build", "dbxhook")))
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="cap on each phase (default 10)")
    ap.add_argument("--samples", type=int, default=500,
                    help="latency samples at most (default 500)")
    ap.add_argument("--notifications", type=int, default=5000,
                    help="notifications per throughput phase (5000)")
    ap.add_argument("--smoke", action="store_true",
                    help="a 1-2 s run with tiny counts")
    args = ap.parse_args()
    if args.smoke:
        args.seconds, args.samples, args.notifications = 2.0, 20, 200
    if not os.access(args.bin, os.X_OK):
        raise SystemExit(f"no dbxhook binary at {args.bin}")

    workdir = tempfile.mkdtemp(prefix="notify_bench.")
    one = Receivers(1)
    many = Receivers(100)
    try:
        lat_dir = os.path.join(workdir, "lat")
        os.mkdir(lat_dir)
        cloud = Cloud(args.bin, lat_dir)
        cloud.start()
        try:
            lat = bench_latency(cloud, one, args.seconds, args.samples)
        finally:
            cloud.stop()
        d1 = os.path.join(workdir, "one")
        os.mkdir(d1)
        n1, t1 = bench_throughput(args.bin, d1, one, 1,
                                  args.notifications, args.seconds)
        d100 = os.path.join(workdir, "many")
        os.mkdir(d100)
        per = max(1, args.notifications // 100)
        n100, t100 = bench_throughput(args.bin, d100, many, 100, per,
                                      args.seconds)
    finally:
        one.stop()
        many.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    figures = {
        "bench": "notify",
        "latency_samples": len(lat),
        "change_to_post_ms_p50": round(statistics.median(lat), 2)
        if lat else None,
        "change_to_post_ms_p99": round(percentile(lat, 99), 2)
        if lat else None,
        "notifications_1_receiver": n1,
        "notifications_per_s_1_receiver": round(n1 / t1, 1) if t1 else None,
        "notifications_100_receivers": n100,
        "notifications_per_s_100_receivers": round(n100 / t100, 1)
        if t100 else None,
    }
    print(f"change-to-POST latency: p50 {figures['change_to_post_ms_p50']}"
          f" ms, p99 {figures['change_to_post_ms_p99']} ms"
          f" ({len(lat)} samples, default --batch-ms 10)")
    print(f"1 receiver: {n1} notifications in {t1:.3f} s")
    print(f"100 receivers: {n100} notifications in {t100:.3f} s")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
