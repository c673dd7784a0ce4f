"""`dbxhook demo`: the newcomer's first command, end to end."""
import os
import re
import subprocess

DEMO_TIMEOUT_S = 90


def run_demo(bin_path, tmp_path, *args, timeout_s=DEMO_TIMEOUT_S + 20):
    """Runs the demo with its temporary directories under tmp_path."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(tmp))
    return subprocess.run([bin_path, "demo", *args], capture_output=True,
                          text=True, timeout=timeout_s, env=env,
                          cwd=str(tmp_path))


def summary(stdout):
    """The summary block's values: {"files uploaded": "4 (3 Markdown)"}."""
    return dict(re.findall(r"^  ([a-zA-Z ]+):\s+(.*)$", stdout, re.M))


def make_folder(root):
    folder = root / "my notes"
    (folder / "Sub" / "Deeper").mkdir(parents=True)
    (folder / "index.md").write_text("# Index\n\n* [ ] one\n* [x] two\n")
    (folder / "Sub" / "Deeper" / "LOUD.MD").write_text(
        "| a | b |\n|---|---|\n| 1 | 2 |\n")
    (folder / "naïve café.md").write_text("Ça *marche* — ünïcödé.\n",
                                          encoding="utf-8")
    (folder / "todo.txt").write_text("not markdown\n")
    return folder


def test_demo_converts_an_imported_folder(bin_path, tmp_path):
    folder = make_folder(tmp_path)
    r = run_demo(bin_path, tmp_path, "--import", str(folder),
                 "--timeout-s", str(DEMO_TIMEOUT_S))
    assert r.returncode == 0, r.stdout + r.stderr

    s = summary(r.stdout)
    assert s["files uploaded"] == "4 (3 Markdown)"
    assert s["HTML files verified"] == "3/3"
    assert int(s["notifications delivered"]) >= 1
    assert int(s["notifications received"]) >= 1
    assert int(s["pages listed"]) >= 1
    assert int(s["conversions"]) >= 3
    assert re.fullmatch(r"\d+\.\d s", s["elapsed"])
    assert "dbxhook demo: every Markdown file converted" in r.stdout
    assert "uploaded 4/4" in r.stdout
    assert "converted 3/3" in r.stdout
    # The temporary data directory is gone after a success.
    assert os.listdir(tmp_path / "tmp") == []


def test_demo_bundled_sample_with_data_dir(bin_path, tmp_path):
    data = tmp_path / "state"
    r = run_demo(bin_path, tmp_path, "--data", str(data),
                 "--timeout-s", str(DEMO_TIMEOUT_S))
    assert r.returncode == 0, r.stdout + r.stderr

    s = summary(r.stdout)
    uploaded = re.fullmatch(r"(\d+) \((\d+) Markdown\)", s["files uploaded"])
    assert uploaded, s
    n_md = int(uploaded.group(2))
    assert n_md >= 30
    assert s["HTML files verified"] == f"{n_md}/{n_md}"
    # --data keeps everything: both servers' state and logs.
    for name in ("cloud", "app", "cloud.log", "app.log"):
        assert (data / name).exists(), name


def test_demo_fails_cleanly_without_a_folder(bin_path, tmp_path):
    r = run_demo(bin_path, tmp_path, "--import", str(tmp_path / "nothing"),
                 timeout_s=30)
    assert r.returncode == 1
    assert "no folder to import" in r.stderr


def test_demo_refuses_a_folder_without_markdown(bin_path, tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "todo.txt").write_text("not markdown\n")
    r = run_demo(bin_path, tmp_path, "--import", str(folder), timeout_s=30)
    assert r.returncode == 1
    assert "no Markdown files" in r.stderr
    assert not list((tmp_path / "tmp").iterdir()), "nothing left behind"


def test_demo_usage(bin_path, tmp_path):
    r = run_demo(bin_path, tmp_path, "--help", timeout_s=10)
    assert r.returncode == 0
    assert "--import DIR" in r.stdout
    r = run_demo(bin_path, tmp_path, "--no-such-option", timeout_s=10)
    assert r.returncode == 2
    r = run_demo(bin_path, tmp_path, "--timeout-s", "0", timeout_s=10)
    assert r.returncode == 2
