#!/usr/bin/python3
"""How long the app's first full sync of an account takes, by worker count
and page parallelism.

The cloud is seeded once (N files per account, a quarter Markdown, in
nested folders) through the file API with parallel uploads, then stopped;
every configuration runs against its own copy of that data directory, so
each one starts from the same cloud with no .html yet.  A run: start the
cloud copy and a fresh app (its own empty state), store the tokens, mark
the accounts pending, and time until no account is pending and every
account had a run.  The app's "conversions" counter must equal the number
of Markdown files.

    bench/app_sync_bench.py             the full set (20,000 files; 4 x 5,000)
    bench/app_sync_bench.py --smoke     a few seconds

Everything listens on 127.0.0.1 with ports picked at run time, in a
temporary directory removed at the end.  The last line of output is JSON.
"""
import argparse
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

REPO = h.REPO
SECRET = "bench-sync-secret"
log = h.log
wait_for = h.wait_for


class Cloud:
    """A `dbxhook cloud` on data (a seeded copy), over HTTPS."""

    def __init__(self, binary, workdir, data, procs):
        self.data = data
        self.proc, self.port = h.start_listening(
            procs, [binary, "cloud", "--data", data, "--listen",
                    "127.0.0.1:0"], workdir, "cloud")
        self.host = "127.0.0.1"
        self.url = f"https://127.0.0.1:{self.port}"
        self.ca = os.path.join(data, "ca.pem")
        self.ctx = ssl.create_default_context(cafile=self.ca)
        with open(os.path.join(data, "admin.token")) as f:
            self.admin_token = f.read().strip()

    def conn(self):
        return http.client.HTTPSConnection(self.host, self.port,
                                           context=self.ctx, timeout=60)

    def admin(self, name, body):
        c = self.conn()
        c.request("POST", "/admin/" + name, json.dumps(body).encode(),
                  {"Authorization": "Bearer " + self.admin_token,
                   "Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        if r.status != 200:
            raise RuntimeError(f"admin {name}: {r.status} {data!r}")
        return json.loads(data)


def seed_paths(n):
    """(path, bytes) of file i: a quarter Markdown, 3 levels of folders."""
    for i in range(n):
        folder = f"/a{i % 10}/b{(i // 10) % 10}/c{(i // 100) % 20}"
        if i % 4 == 0:
            yield (f"{folder}/doc{i}.md",
                   f"# Doc {i}\n\nSome *text* for {i}.\n\n- a\n- b\n".encode())
        else:
            yield f"{folder}/f{i}.txt", f"file {i}\n".encode()


def upload_all(cloud, token, files, threads):
    """Uploads files [(path, data)] over `threads` kept-alive connections."""
    lock = threading.Lock()
    it = iter(files)
    errors = []

    def run():
        c = cloud.conn()
        while True:
            with lock:
                item = next(it, None)
            if item is None or errors:
                break
            path, data = item
            arg = json.dumps({"path": path, "mode": "overwrite",
                              "mute": True})
            for _ in range(5):
                try:
                    c.request("POST", "/2/files/upload", data, {
                        "Authorization": "Bearer " + token,
                        "Dropbox-API-Arg": arg,
                        "Content-Type": "application/octet-stream"})
                    r = c.getresponse()
                    body = r.read()
                    if r.status == 200:
                        break
                    if r.status != 429 and r.status < 500:
                        errors.append(f"{path}: {r.status} {body[:200]!r}")
                        break
                except (OSError, http.client.HTTPException):
                    c.close()
                    c = cloud.conn()
                time.sleep(0.2)
            else:
                errors.append(f"{path}: gave up")
        c.close()

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise RuntimeError("upload failed: " + errors[0])


def seed(binary, root, n_accounts, files_per_account, threads):
    """Seeds a cloud data dir; returns (data dir, [(account, token)])."""
    data = os.path.join(root, "seed")
    cloud = Cloud(binary, root, data, h.Procs())
    accounts = []
    try:
        app = cloud.admin("apps/create", {"name": "sync bench"})
        for i in range(n_accounts):
            acct = cloud.admin("accounts/create", {
                "email": f"bench{i}@example.com", "name": f"Bench {i}"})
            tok = cloud.admin("links/create", {
                "app_key": app["app_key"],
                "account_id": acct["account_id"]})["access_token"]
            accounts.append((acct["account_id"], tok))
        t0 = time.monotonic()
        for aid, tok in accounts:
            upload_all(cloud, tok, seed_paths(files_per_account), threads)
        secs = time.monotonic() - t0
        total = n_accounts * files_per_account
        log(f"seeded {total} files in {secs:.1f}s "
            f"({total / secs:.0f}/s, {threads} connections)")
    finally:
        cloud.proc.stop()
    return data, accounts, secs


def cpu_s(pid):
    """User + system CPU seconds of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def app_status(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/status")
    r = c.getresponse()
    doc = json.loads(r.read())
    c.close()
    return doc


def run_config(binary, root, seed_data, accounts, md_total, workers,
               procs_n, page_parallel, timeout_s):
    """One first full sync; returns its row."""
    tag = f"w{workers}p{procs_n}pp{page_parallel}a{len(accounts)}"
    work = tempfile.mkdtemp(prefix=tag + "-", dir=root)
    cdata = os.path.join(work, "cloud")
    shutil.copytree(seed_data, cdata)
    procs = h.Procs()
    cloud = Cloud(binary, work, cdata, procs)
    try:
        adata = os.path.join(work, "app")
        common = ["--api-url", cloud.url, "--content-url", cloud.url,
                  "--ca", cloud.ca, "--page-parallel", str(page_parallel)]
        app, app_port = h.start_listening(
            procs, [binary, "app", "--data", adata, "--listen",
                    "127.0.0.1:0", "--workers", str(0 if procs_n else workers)]
            + common, work, "app", env={"DBXHOOK_APP_SECRET": SECRET})
        for aid, tok in accounts:
            subprocess.run([binary, "appctl", "--data", adata, "token-set",
                            "--account", aid], input=tok, text=True,
                           check=True, timeout=30,
                           stdout=subprocess.DEVNULL)
        workers_started = [
            h.Proc(procs, [binary, "worker", "--data", adata, "--threads",
                           "1"] + common, work, f"w{i}",
                   env={"DBXHOOK_APP_SECRET": SECRET})
            for i in range(procs_n)]
        t0 = time.monotonic()
        for aid, _ in accounts:
            subprocess.run([binary, "appctl", "--data", adata, "mark",
                            "--account", aid], check=True, timeout=30,
                           stdout=subprocess.DEVNULL)

        def done():
            st = app_status(app_port)
            return st["pending"] == 0 and \
                st["counters"].get("runs", 0) >= len(accounts) and st
        st = wait_for(done, timeout_s, tag + " to finish", 0.05)
        secs = time.monotonic() - t0
        app_cpu = sum(cpu_s(p.pid) for p in [app] + workers_started)
        row = {"config": tag, "accounts": len(accounts),
               "workers": workers if not procs_n else procs_n,
               "mode": "processes" if procs_n else "threads",
               "page_parallel": page_parallel, "seconds": round(secs, 2),
               "conversions": st["counters"].get("conversions", 0),
               "pages": st["counters"].get("pages", 0),
               "failures": st["counters"].get("failures", 0),
               "cpu_s_app": round(app_cpu, 1),
               "cpu_s_cloud": round(cpu_s(cloud.proc.pid), 1),
               "cpus": os.cpu_count()}
        row["files_per_s"] = None
        if row["conversions"] != md_total:
            raise RuntimeError(f"{tag}: {row['conversions']} conversions, "
                               f"want {md_total}")
        log(json.dumps(row))
        return row
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def case(binary, root, n_accounts, per_account, configs, threads,
         timeout_s):
    seed_data, accounts, seed_s = seed(binary, root, n_accounts,
                                       per_account, threads)
    md_total = n_accounts * ((per_account + 3) // 4)
    rows = []
    for workers, procs, pp in configs:
        row = run_config(binary, root, seed_data, accounts, md_total,
                         workers, procs, pp, timeout_s)
        row["files_per_s"] = round(n_accounts * per_account /
                                   row["seconds"], 1)
        rows.append(row)
    shutil.rmtree(seed_data, ignore_errors=True)
    return {"accounts": n_accounts, "files_per_account": per_account,
            "markdown": md_total, "seed_seconds": round(seed_s, 1),
            "runs": rows}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true",
                    help="a few seconds: 200 files, 2 x 100")
    ap.add_argument("--files", type=int, default=20000,
                    help="files of the single account (0 to skip)")
    ap.add_argument("--multi", default="4x5000",
                    help="ACCOUNTSxFILES for the multi-account case "
                         "('' to skip)")
    ap.add_argument("--upload-threads", type=int, default=16)
    ap.add_argument("--timeout-s", type=float, default=900)
    ap.add_argument("--bin", default=os.environ.get(
        "DBXHOOK_BIN", os.path.join(REPO, "build", "dbxhook")))
    a = ap.parse_args()
    single = [(1, 0, 1), (1, 0, 4), (1, 0, 16), (2, 0, 4), (4, 0, 4),
              (4, 0, 16)]
    multi = [(1, 0, 4), (2, 0, 4), (4, 0, 4), (0, 2, 4), (0, 4, 4),
             (4, 0, 1)]
    if a.smoke:
        a.files, a.multi = 200, "2x100"
        single = [(1, 0, 1), (2, 0, 4)]
        multi = [(1, 0, 4), (0, 2, 4)]
    root = tempfile.mkdtemp(prefix="dbxhook-syncbench-")
    out = {"bench": "app_sync", "smoke": a.smoke}
    try:
        if a.files > 0:
            out["single"] = case(a.bin, root, 1, a.files, single,
                                 a.upload_threads, a.timeout_s)
        if a.multi:
            n, per = (int(x) for x in a.multi.split("x"))
            out["multi"] = case(a.bin, root, n, per, multi,
                                a.upload_threads, a.timeout_s)
        out["ok"] = True
    except Exception as e:  # the JSON line still says what happened
        out["ok"] = False
        out["error"] = str(e)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
