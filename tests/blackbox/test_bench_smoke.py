"""The benchmarks' smoke run: `bench/run --smoke` runs every bench for a
second or two, so that none of them can rot, and its JSON must hold
every row with numbers above zero."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# The rows every smoke run must produce (one bench may add more).
EXPECTED = [
    "ingest rate", "ingest rate vs guide", "ingest p50 latency",
    "ingest p99 latency", "notify latency p50", "notify latency p99",
    "notify rate 1 receiver", "notify rate 100 receivers",
    "e2e corpus to html", "conversion handler",
    "conversion md4c vs cmark-gfm", "memory app idle",
    "memory app after ingest", "memory app after e2e",
    "memory cloud idle", "memory cloud 100k waiting",
]


@pytest.mark.timeout(180)
def test_bench_smoke(bin_path, tmp_path):
    out = tmp_path / "results.json"
    r = subprocess.run(["/usr/bin/python3", os.path.join(REPO, "bench",
                                                         "run"),
                        "--smoke", "--bin", bin_path, "--json", str(out)],
                       capture_output=True, text=True, timeout=170)
    sys.stderr.write(r.stderr[-4000:])
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
    doc = json.loads(out.read_text())
    assert doc["failed"] == []
    rows = {row["benchmark"]: row for row in doc["rows"]}
    missing = [name for name in EXPECTED if name not in rows]
    assert not missing, f"rows missing: {missing}"
    for row in doc["rows"]:
        for key in ("ours", "reference", "ratio"):
            assert isinstance(row[key], (int, float)) and row[key] > 0, row
