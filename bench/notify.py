"""Notify: change committed in the cloud to POST received (p50, p99), and
notifications per second to 1 and to 100 fast receivers.

The measuring is done by bench/notify_bench.py (its own cloud and
receivers; the last line it prints is a JSON object); this module runs it
and turns its figures into rows.  References: the latency against the
cloud's gathering window (--batch-ms, 10 ms by default: the delay the
design adds on purpose), the rate to one receiver against the dbxhook
app's ingest rate measured in the same run (can the notifier feed our
own receiver as fast as it takes notifications?), and the rate to 100
receivers against the rate to one.
"""
import json
import os
import subprocess

import harness as h

BATCH_MS = 10.0


def run(ctx):
    script = os.path.join(h.BENCH_DIR, "notify_bench.py")
    if not os.path.exists(script):
        raise RuntimeError("bench/notify_bench.py is missing")
    args = [h.PY, script, "--bin", ctx.bin]
    if ctx.smoke:
        args.append("--smoke")
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"notify_bench failed: {r.stdout[-2000:]}"
                           f"{r.stderr[-2000:]}")
    f = json.loads(lines[-1])
    for line in lines[:-1]:
        h.log(f"notify: {line}")
    res = ctx.results
    res.add("notify latency p50", f["change_to_post_ms_p50"], BATCH_MS,
            "batch window (configured)", "ms", False,
            note="from the upload's start; includes the upload")
    res.add("notify latency p99", f["change_to_post_ms_p99"], BATCH_MS,
            "batch window (configured)", "ms", False)
    one = f["notifications_per_s_1_receiver"]
    many = f["notifications_per_s_100_receivers"]
    ingest = next((x["ours"] for x in res.rows
                   if x["benchmark"] == "ingest rate"), None)
    if ingest:
        res.add("notify rate 1 receiver", one, ingest,
                "dbxhook app ingest rate", "notif/s")
    else:
        h.log("notify: no ingest figure for the 1-receiver reference")
    res.add("notify rate 100 receivers", many, one, "rate to 1 receiver",
            "notif/s")
