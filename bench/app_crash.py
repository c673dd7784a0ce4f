#!/usr/bin/python3
"""The app's crash test at full size: 2,000 files (a quarter Markdown),
workers killed with kill -9 every 0.3-1 s for 20 s while files keep
arriving (--long: 20,000 files, 120 s).  Runs the black-box test
tests/blackbox/test_app_reliability.py::test_crash_kill9_while_files_arrive
with bigger numbers.  Usage: bench/app_crash.py [--long]"""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LONG = "--long" in sys.argv[1:]
env = dict(os.environ)
env.setdefault("DBXHOOK_BIN", os.path.join(REPO, "build", "dbxhook"))
env["CRASH_FILES"] = "20000" if LONG else "2000"
env["CRASH_SECONDS"] = "120" if LONG else "20"
sys.exit(subprocess.call(
    ["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider",
     "-o", "timeout=3600",
     "tests/blackbox/test_app_reliability.py::"
     "test_crash_kill9_while_files_arrive"], cwd=REPO, env=env))
