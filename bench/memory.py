"""Memory: peak RSS (VmHWM from /proc/PID/status) of the app and the
cloud, at idle, under load, and for the cloud with 100,000 notifications
waiting for retry.

The app's figures come from the ingest and e2e benches (bench/run runs
them first when memory is asked for); this bench measures the cloud.

100,000 waiting notifications: a cloud is started, an app with a linked
account and a verified webhook is created through the admin API (the
receiver is a small HTTP server in this process that echoes the
challenge and answers every POST with 500), the cloud is stopped, and
100,000 pending, due, correctly signed notifications are inserted into
its notifications table with SQLite.  The cloud is started again on the
same data: it finds them, retries them against the failing receiver
(and disables the webhook by the 35-failure rule, keeping the rest
waiting), and its VmHWM is read after SETTLE seconds.
"""
import http.server
import os
import sqlite3
import threading
import time

import harness as h

MIB = 1024.0


class _FailingHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        challenge = self.path.partition("challenge=")[2].encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(challenge)))
        self.end_headers()
        self.wfile.write(challenge)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def insert_notifications(db_path, app_key, account, uid, secret, count):
    body = h.notification_body([account]).decode()
    body = body.replace("1001", str(uid))
    sig = h.sign(secret, body.encode())
    now = int(time.time() * 1000)
    con = sqlite3.connect(db_path)
    try:
        app_id = con.execute("SELECT id FROM apps WHERE app_key = ?",
                             (app_key,)).fetchone()[0]
        con.executemany(
            "INSERT INTO notifications (app_id, body, signature, state,"
            " attempts, next_attempt_at, created_at)"
            " VALUES (?, ?, ?, 'pending', 0, ?, ?)",
            ((app_id, body, sig, now, now) for _ in range(count)))
        con.commit()
    finally:
        con.close()


def cloud_with_waiting(ctx, count, settle_s):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FailingHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        cloud = h.Cloud(ctx, "mem-cloud")
        app = cloud.admin("apps/create", {"name": "bench memory"})
        acct, _ = cloud.linked_account(app, "mem@example.com")
        hook = cloud.admin("webhooks/set", {
            "app_key": app["app_key"],
            "uri": f"http://127.0.0.1:{srv.server_address[1]}/webhook"})
        if hook.get("state") != "verified":
            raise RuntimeError(f"memory: webhook not verified: {hook}")
        time.sleep(0.5)
        idle = cloud.proc.hwm_kib()
        cloud.stop()
        insert_notifications(os.path.join(cloud.data, "cloud.db"),
                             app["app_key"], acct["account_id"],
                             acct["uid"], app["app_secret"], count)
        cloud.start()
        time.sleep(settle_s)
        waiting = cloud.proc.hwm_kib()
        stats = cloud.admin("stats")
        cloud.stop()
    finally:
        srv.shutdown()
        srv.server_close()
    h.log(f"memory: cloud idle {idle} KiB, with {count} waiting "
          f"{waiting} KiB after {settle_s}s; stats {stats}")
    return idle, waiting


def run(ctx):
    count = 100000
    idle, waiting = cloud_with_waiting(ctx, count, 1 if ctx.smoke else 5)
    x = ctx.extra
    r = ctx.results
    rows = [
        ("memory app idle", "app_idle_kib", "flask_idle_kib",
         "guide Flask receiver idle"),
        ("memory app after ingest", "app_load_kib", "flask_load_kib",
         "guide Flask receiver after ingest"),
        ("memory app after e2e", "app_e2e_kib", "guide_e2e_kib",
         "guide app after e2e"),
        ("memory cloud after e2e", "cloud_e2e_kib", None,
         "same cloud idle"),
    ]
    for name, ours, ref, ref_name in rows:
        if ours not in x or (ref is not None and ref not in x):
            h.log(f"memory: no figure for {name} (run ingest and e2e)")
            continue
        r.add(name, x[ours] / MIB, (x[ref] if ref else idle) / MIB,
              ref_name, "MiB", False)
    if "redis_idle_kib" in x:
        r.add("memory cloud idle", idle / MIB, x["redis_idle_kib"] / MIB,
              "redis-server idle", "MiB", False)
    r.add("memory cloud 100k waiting", waiting / MIB, idle / MIB,
          "same cloud idle", "MiB", False,
          note=f"{count} notifications waiting for retry")
