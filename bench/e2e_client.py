"""Uploads Markdown files to an account's root with the official SDK and
waits until every one has its .html (names compared without case, as
Dropbox compares paths); prints the seconds taken.

usage: e2e_client.py TIMEOUT_S POLL_S FILE...   (token in BENCH_TOKEN;
the SDK's hosts and CA in the environment, set by bench/e2e.py)
"""
import os
import sys
import time

from dropbox import Dropbox
from dropbox.files import WriteMode


def listing(dbx):
    names = set()
    result = dbx.files_list_folder(path='')
    while True:
        names.update(e.name.lower() for e in result.entries)
        if not result.has_more:
            return names
        result = dbx.files_list_folder_continue(result.cursor)


def main():
    timeout_s, poll_s = float(sys.argv[1]), float(sys.argv[2])
    files = sys.argv[3:]
    dbx = Dropbox(os.environ["BENCH_TOKEN"])
    want = {os.path.basename(f)[:-3].lower() + ".html" for f in files}
    started = time.monotonic()
    for path in files:
        with open(path, "rb") as f:
            dbx.files_upload(f.read(), "/" + os.path.basename(path),
                             mode=WriteMode("overwrite"))
    deadline = started + timeout_s
    while True:
        missing = want - listing(dbx)
        if not missing:
            break
        if time.monotonic() > deadline:
            sys.exit(f"timed out; {len(missing)} .html missing, e.g. "
                     f"{sorted(missing)[:3]}")
        time.sleep(poll_s)
    print(f"{time.monotonic() - started:.3f}")


if __name__ == "__main__":
    main()
