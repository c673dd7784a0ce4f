"""End to end: the whole corpus uploaded through the API until every .html
exists, for the dbxhook app (--workers 2, as in the demo) and for the
guide's Python app (bench/ref/guide_app.py: Flask, the official SDK,
Redis), each against its own fresh dbxhook cloud.

The corpus goes into the account's root folder (the guide's app lists
the root without recursion).  The clock starts before the first upload
and stops when a listing shows an .html for every .md; uploads and
checks are done the same way for both, from this process, with the SDK.
"""
import os
import subprocess
import sys
import time

import harness as h

TIMEOUT_S = 300
POLL_S = 0.1


def start_redis(ctx):
    d = ctx.subdir("redis")
    port = h.free_port()
    p = h.Proc(ctx.procs, ["redis-server", "--bind", "127.0.0.1",
                           "--port", str(port), "--save", "",
                           "--appendonly", "no", "--dir", d], d, "redis")
    h.wait_for(lambda: p.check_alive() and h.port_open(port), 20,
               "redis to listen")
    return p, port


def upload_and_wait(cloud, token, files, timeout_s):
    """Runs bench/e2e_client (the SDK needs its hosts set before import,
    so it runs in a child with the cloud's environment).  Returns the
    seconds from the first upload to the last .html seen."""
    env = dict(os.environ)
    env.update(h.sdk_env(cloud))
    env["BENCH_TOKEN"] = token
    r = subprocess.run([h.PY, os.path.join(h.BENCH_DIR, "e2e_client.py"),
                        str(timeout_s), str(POLL_S)] + files,
                       env=env, capture_output=True, text=True,
                       timeout=timeout_s + 60)
    if r.returncode != 0:
        raise RuntimeError(f"e2e client failed: {r.stdout}{r.stderr}")
    return float(r.stdout.strip().splitlines()[-1])


def corpus_dir(ctx, smoke):
    """The corpus as flat files in one folder (the names uploaded)."""
    d = ctx.subdir("e2e-corpus")
    files = h.corpus_files(ctx.corpus)
    if smoke:
        files = files[:6]
    for name, data in files:
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    return [os.path.join(d, name) for name, _ in files]


def run_ours(ctx, files):
    cloud = h.Cloud(ctx, "e2e-cloud")
    app_info = cloud.admin("apps/create", {"name": "bench dbxhook"})
    acct, token = cloud.linked_account(app_info, "ours@example.com")
    data = os.path.join(ctx.tmp, "e2e-app")
    h.appctl(ctx, data, "token-set", "--account", acct["account_id"],
             stdin=token)
    app, port = h.start_dbxhook(
        ctx, ["app", "--data", data, "--listen", "127.0.0.1:0",
              "--workers", "2", "--api-url", cloud.url, "--content-url",
              cloud.url, "--ca", cloud.ca], "e2e-app",
        env={"DBXHOOK_APP_SECRET": app_info["app_secret"]})
    hook = cloud.admin("webhooks/set", {
        "app_key": app_info["app_key"],
        "uri": f"http://127.0.0.1:{port}/webhook"})
    if hook.get("state") != "verified":
        raise RuntimeError(f"e2e: webhook not verified: {hook}")
    ctx.extra["cloud_idle_kib"] = cloud.proc.hwm_kib()
    secs = upload_and_wait(cloud, token, files, ctx.timeout_s)
    ctx.extra["app_e2e_kib"] = app.hwm_kib()
    ctx.extra["cloud_e2e_kib"] = cloud.proc.hwm_kib()
    app.stop()
    cloud.stop()
    return secs


def run_guide(ctx, files):
    cloud = h.Cloud(ctx, "e2e-ref-cloud")
    app_info = cloud.admin("apps/create", {"name": "bench guide app"})
    acct, token = cloud.linked_account(app_info, "guide@example.com")
    redis, rport = start_redis(ctx)
    ctx.extra["redis_idle_kib"] = redis.hwm_kib()
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(rport),
                    "hset", "tokens", acct["account_id"], token],
                   check=True, capture_output=True, timeout=30)
    port = h.free_port()
    env = h.sdk_env(cloud)
    env.update({"BENCH_APP_SECRET": app_info["app_secret"],
                "BENCH_REDIS_PORT": str(rport)})
    app = h.Proc(ctx.procs, [h.PY, os.path.join(h.BENCH_DIR, "ref",
                                                "guide_app.py"), str(port)],
                 ctx.tmp, "guide-app", env=env)
    h.wait_for(lambda: app.check_alive() and h.port_open(port), 30,
               "guide app to listen")
    hook = cloud.admin("webhooks/set", {
        "app_key": app_info["app_key"],
        "uri": f"http://127.0.0.1:{port}/webhook"})
    if hook.get("state") != "verified":
        raise RuntimeError(f"e2e: guide webhook not verified: {hook}")
    secs = upload_and_wait(cloud, token, files, ctx.timeout_s)
    ctx.extra["guide_e2e_kib"] = app.hwm_kib()
    app.stop()
    redis.stop()
    cloud.stop()
    return secs


def run(ctx):
    ctx.timeout_s = 30 if ctx.smoke else TIMEOUT_S
    files = corpus_dir(ctx, ctx.smoke)
    size = sum(os.path.getsize(f) for f in files)
    h.log(f"e2e: {len(files)} files, {size / 1e6:.2f} MB")
    ours = run_ours(ctx, files)
    h.log(f"e2e dbxhook: {ours:.2f}s")
    ref = run_guide(ctx, files)
    h.log(f"e2e guide app: {ref:.2f}s")
    ctx.results.add("e2e corpus to html", ours, ref,
                    "guide app (Flask+SDK+Redis)", "s", False,
                    note=f"{len(files)} files, {size} bytes")
    ctx.results.add("e2e speed-up", ref / ours, 1.0,
                    "guide app = 1", "x")
