"""The Raspberry Pi scripts in pi/, run here on the host: install.sh refuses a 32-bit OS and plans a
lean install, run.sh labels arguments, files, stdin and a followed file, bench.sh writes its JSON +
markdown report, the systemd unit is valid, and every script is shellcheck-clean.

tests/test_arm64.py runs run.sh and bench.sh again on an emulated arm64 Debian."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest_plugins = ["bundles"]  # the session-scoped tiny bundles

ROOT = Path(__file__).resolve().parent.parent
PI = ROOT / "pi"
SCRIPTS = [PI / "install.sh", PI / "run.sh", PI / "bench.sh", PI / "find-edgeft.sh", ROOT / "tests" / "arm64" / "setup.sh"]


def shims(folder: Path, **outputs: str) -> Path:
    """Commands that print a fixed line (uname="armv7l" → `uname -m` prints armv7l), first on PATH."""
    folder.mkdir()
    for name, text in outputs.items():
        (folder / name).write_text(f"#!/bin/sh\necho {text}\n")
        (folder / name).chmod(0o755)
    return folder


def edgeft_command(tmp_path: Path) -> str:
    """This interpreter's edgeft, as the EDGEFT the scripts take."""
    path = tmp_path / "edgeft"
    path.write_text(f'#!/bin/sh\nexec {sys.executable} -m edgeft "$@"\n')
    path.chmod(0o755)
    return str(path)


def bash(script: Path, *args, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120, **kwargs)


@pytest.mark.parametrize("uname, long_bit, dpkg", [
    ("armv7l", "32", "armhf"),   # Raspberry Pi OS 32-bit on a Pi 3 or older kernel
    ("aarch64", "32", "armhf"),  # Raspberry Pi OS 32-bit on a Pi 4/5: 64-bit kernel, 32-bit userland
    ("armv6l", "32", "armhf"),   # Pi Zero / Pi 1: no 64-bit OS exists
])
def test_install_refuses_a_32_bit_os(tmp_path, uname, long_bit, dpkg):
    path = shims(tmp_path / "bin", uname=uname, getconf=long_bit, dpkg=dpkg)
    venv = tmp_path / "venv"
    done = bash(PI / "install.sh", env={"PATH": f"{path}:{os.environ['PATH']}", "EDGEFT_VENV": str(venv)})
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"this is a 32-bit OS (kernel {uname}, userland {dpkg})" in done.stderr
    assert "onnxruntime has no 32-bit ARM wheels" in done.stderr and "Raspberry Pi OS (64-bit)" in done.stderr
    assert not venv.exists() and done.stdout == ""


def test_install_plans_a_lean_runtime_install_on_64_bit_arm(tmp_path):
    path = shims(tmp_path / "bin", uname="aarch64", getconf="64", dpkg="arm64")
    venv = tmp_path / "venv"
    done = bash(PI / "install.sh", "--dry-run", env={"PATH": f"{path}:{os.environ['PATH']}", "EDGEFT_VENV": str(venv),
                                                      "PYTHON": sys.executable, "EDGEFT_SPEC": "edgeft==0.1.0"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"installing the edgeft runtime (edgeft==0.1.0) into {venv} on aarch64")
    assert f"+ {sys.executable} -m venv {venv}" in lines
    assert f"+ {venv}/bin/python -m pip --disable-pip-version-check install --no-deps edgeft==0.1.0" in lines
    assert any("--only-binary=:all: --no-deps <edgeft's tokenizers requirement>" in line for line in lines)
    assert "torch" not in done.stdout and not venv.exists()


def test_install_rejects_unknown_arguments():
    done = bash(PI / "install.sh", "--yes")
    assert done.returncode == 2 and done.stderr.startswith("usage: bash pi/install.sh [--dry-run]")


def test_run_sh_labels_arguments_files_and_stdin(cls_bundle, tmp_path):
    env = {"EDGEFT": edgeft_command(tmp_path), "THREADS": "1"}
    done = bash(PI / "run.sh", cls_bundle, "a warm , funny film", "dull", env=env)
    assert done.returncode == 0, done.stderr
    labels = [line.split("\t")[0] for line in done.stdout.splitlines()]
    assert len(labels) == 3 and set(labels[:2]) <= {"negative", "positive"} and labels[2].startswith("predicted 2")

    texts = tmp_path / "in.txt"
    texts.write_text("good\nbad\n")
    out = tmp_path / "out.jsonl"
    done = bash(PI / "run.sh", cls_bundle, "--input", texts, "--output", out, env=env)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["line"] for line in out.read_text().splitlines()] == [1, 2]

    done = bash(PI / "run.sh", cls_bundle, "-", env=env, input="good\nbad\nugly\n")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3] and {r["label"] for r in rows} <= {"negative", "positive"}


def test_run_sh_follows_a_file_as_lines_arrive(cls_bundle, tmp_path):
    inbox = tmp_path / "inbox.txt"
    inbox.touch()
    env = {**os.environ, "EDGEFT": edgeft_command(tmp_path), "THREADS": "1"}
    proc = subprocess.Popen(["bash", str(PI / "run.sh"), str(cls_bundle), "--follow", str(inbox)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        # tail starts at the end of the file: keep appending until the first answer comes back
        deadline, first = time.monotonic() + 60, None
        while first is None and time.monotonic() < deadline and proc.poll() is None:
            with open(inbox, "a") as f:
                f.write("a gripping film\n")
            time.sleep(0.5)
            first = _read_line_nowait(proc.stdout)
        assert first is not None, f"no answer within 60 s; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        row = json.loads(first)
        assert row["label"] in ("negative", "positive") and row["line"] >= 1
        assert proc.poll() is None, "--follow keeps running"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # edgeft and its tail
        proc.wait(timeout=30)


def _read_line_nowait(stream) -> str | None:
    import select

    ready, _, _ = select.select([stream], [], [], 0.5)
    return stream.readline() if ready else None


def test_run_sh_without_edgeft_says_what_to_do(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "EDGEFT": ""}
    done = bash(PI / "run.sh", tmp_path, "text", env=env)
    assert done.returncode == 2 and "edgeft not found: run pi/install.sh first" in done.stderr
    assert bash(PI / "run.sh", tmp_path).returncode == 2  # too few arguments: the usage


def test_bench_sh_writes_json_and_markdown(cls_bundle, tmp_path):
    out = tmp_path / "report"
    env = {"EDGEFT": edgeft_command(tmp_path), "THREADS": "1", "RUNS": "3", "WARMUP": "1"}
    done = bash(PI / "bench.sh", cls_bundle, out, env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "bench.json").read_text())
    assert report["settings"]["threads"] == [1] and report["settings"]["batch"] == [1]
    assert report["settings"]["seq_len"] == ["real"] and [r["runs"] for r in report["rows"]] == [3]
    md = (out / "bench.md").read_text()
    assert md.startswith("# edgeft bench\n\n- machine: ") and "| model | threads | batch | seq | p50 ms |" in md
    assert "- throttling before: " in md and "- throttling after: " in md
    assert f"report: {out}/bench.json, {out}/bench.md" in done.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_is_valid(tmp_path):
    unit = tmp_path / "edgeft-classify.service"  # the repository's run.sh in place of /home/pi's copy
    unit.write_text((PI / "edgeft-classify.service").read_text().replace("/home/pi/pi/run.sh", str(PI / "run.sh")))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    assert "ExecStart=/home/pi/pi/run.sh /home/pi/bundle --follow /var/lib/edgeft/inbox.txt" in \
        (PI / "edgeft-classify.service").read_text()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
def test_scripts_are_shellcheck_clean():
    done = subprocess.run(["shellcheck", "-x", *map(str, SCRIPTS)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout
