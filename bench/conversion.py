"""Conversion: Markdown to HTML throughput on the corpus, through the
app's handler (handler_md_render) against md4c-html called directly (the
overhead we add), and md4c against cmark-gfm with GitHub's extensions
(the choice of library).  The C program is bench/md_bench.c, compiled
here against the build's libdbxcore.a with -O2.
"""
import json
import os
import subprocess

import harness as h

LIBS = ["libmicrohttpd", "libcurl", "jansson", "sqlite3", "libcrypto",
        "md4c", "md4c-html", "libutf8proc"]


def _sanitized(build_dir):
    """True when CMake configured build_dir with DBXHOOK_SANITIZE=ON."""
    try:
        with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
            return any(line.strip() == "DBXHOOK_SANITIZE:BOOL=ON"
                       for line in f)
    except FileNotFoundError:
        return False


def build(ctx):
    build_dir = os.path.dirname(ctx.bin)
    lib = os.path.join(build_dir, "libdbxcore.a")
    if not os.path.exists(lib):
        raise RuntimeError(f"no {lib}: build the project first")
    exe = os.path.join(ctx.tmp, "md_bench")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs"] + LIBS,
                           capture_output=True, text=True,
                           check=True).stdout.split()
    cmd = (["cc", "-std=c17", "-O2", "-Wall", "-Wextra", "-Werror",
            "-D_GNU_SOURCE", "-I", os.path.join(h.REPO, "src"), "-o", exe,
            os.path.join(h.BENCH_DIR, "md_bench.c"), lib,
            "-lcmark-gfm-extensions", "-lcmark-gfm"] + flags
           + ["-lpthread", "-lm"])
    if _sanitized(build_dir):
        # A library built with ASan+UBSan needs their runtimes linked in.
        cmd += ["-fsanitize=address,undefined"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("md_bench build failed:\n" + r.stderr)
    return exe


def run(ctx):
    exe = build(ctx)
    d = ctx.subdir("conversion-corpus")
    paths = []
    for name, data in h.corpus_files(ctx.corpus):
        paths.append(os.path.join(d, name))
        with open(paths[-1], "wb") as f:
            f.write(data)
    seconds = 0.5 if ctx.smoke else 8
    r = subprocess.run([exe, str(seconds)] + paths, capture_output=True,
                       text=True, timeout=seconds * 10 + 60)
    if r.returncode != 0:
        raise RuntimeError(f"md_bench failed: {r.stderr}")
    s = json.loads(r.stdout)
    h.log(f"conversion: {s['files']} files, {s['bytes']} bytes, "
          f"{s['passes']} passes; handler {s['handler_mbps']:.1f} MB/s, "
          f"md4c {s['md4c_mbps']:.1f}, cmark-gfm {s['cmark_mbps']:.1f}")
    if s["handler_html_bytes"] != s["md4c_html_bytes"]:
        raise RuntimeError("handler and md4c produced different HTML sizes")
    ctx.results.add("conversion handler", s["handler_mbps"],
                    s["md4c_mbps"], "md4c-html direct", "MB/s")
    ctx.results.add("conversion md4c vs cmark-gfm", s["md4c_mbps"],
                    s["cmark_mbps"], "cmark-gfm + GFM exts", "MB/s")
