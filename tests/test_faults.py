"""Faults: a process killed with SIGKILL (no cleanup code runs), a full disk, a read-only output.

What must hold:
- training killed after a checkpoint → ``--resume`` ends with the same metrics as a run that was
  never interrupted (same seed);
- export or quantize killed at any point (in the search, or inside the bundle writer) → nothing half-written ever appears
  under the output name: it is absent, or the previous bundle, byte for byte;
- a full disk → one ``error:`` line naming the bundle and the fix, the previous bundle intact and
  no temp files left behind. (A read-only output is refused before any work: see the
  ``cli-out-read-only-*`` rows of test_bad_inputs.py.)

The kills are real ``kill -9`` of a child process. To land them at a chosen moment, the child
runs the real CLI with one function wrapped so that it signals "here" (a file) and then sleeps;
the wrapper never changes what the wrapped code writes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_models import DATA
from typer.testing import CliRunner

from edgeft.cli import app
from edgeft.runtime.bundle import load_bundle

pytest_plugins = ["bundles"]  # the session-scoped tiny-bundle fixtures, built once for all modules

SST2 = DATA / "sst2_300.jsonl"
runner = CliRunner()

# The child: wrap one step of the bundle writer so that it announces itself, then run the CLI.
CHILD = r"""
import os, sys, time, runpy, shutil, zipfile
import edgeft.compress.bundle_writer as bw
import edgeft.writable as writable

phase, here = os.environ["KILL_PHASE"], os.environ["KILL_SIGNAL"]

def arrived():
    open(here, "w").close()
    time.sleep(600)  # the parent kills us now

if phase == "mid-copy":  # half of model.onnx is on disk in the temp folder
    def copyfile(src, dst):
        data = open(src, "rb").read()
        with open(dst, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
        arrived()
    bw.shutil.copyfile = copyfile
elif phase == "before-rename":  # the temp folder is complete, manifest included
    real_replace_folder = writable.replace_folder
    writable.replace_folder = lambda new, dest: (arrived(), real_replace_folder(new, dest))
elif phase == "old-moved-aside":  # between the two renames that swap an old bundle for the new one
    real_replace = os.replace
    def replace(src, dst):
        real_replace(src, dst)
        if ".old-" in os.fspath(dst):
            arrived()
    os.replace = replace
elif phase == "mid-zip":  # the first member of the temp .zip is written
    real_write = zipfile.ZipFile.write
    def write(self, *args, **kwargs):
        real_write(self, *args, **kwargs)
        arrived()
    zipfile.ZipFile.write = write

sys.argv = ["edgeft", *sys.argv[1:]]
runpy.run_module("edgeft", run_name="__main__")
"""


def run_and_kill(args: list, tmp: Path, phase: str = "", when: str = "", timeout: float = 300) -> str:
    """Start ``edgeft ARGS`` in a child; SIGKILL it when it reaches ``phase`` (the CHILD wrappers)
    or prints ``when`` on stderr. Returns the child's stderr. Fails if the child ends by itself."""
    here = tmp / f"arrived-{phase or 'line'}"
    env = {**os.environ, "KILL_PHASE": phase, "KILL_SIGNAL": str(here)}
    log = tmp / "child.log"
    with open(log, "w") as err:
        child = subprocess.Popen([sys.executable, "-c", CHILD, *map(str, args)], stdout=subprocess.DEVNULL, stderr=err,
                                 env=env)
        deadline = time.monotonic() + timeout
        while not (here.exists() if phase else when in log.read_text(errors="replace")):
            if child.poll() is not None:
                pytest.fail(f"the child ended (exit {child.returncode}) before reaching {phase or when!r}:\n"
                            f"{log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                child.kill()
                pytest.fail(f"the child did not reach {phase or when!r} in {timeout} s")
            time.sleep(0.005)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL
    return log.read_text(errors="replace")


def snapshot(path: Path) -> dict[str, str]:
    """name → sha256 of every file under a bundle folder (or of the .zip itself)."""
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*"))}


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}."))


# ---------------------------------------------------------------------------------------------
# kill -9 while writing bundles
# ---------------------------------------------------------------------------------------------

def quantize_args(source: Path, dest: Path, zipped: bool = False) -> list:
    """A quick `edgeft quantize` of the tiny FP32 bundle (no torch in the child: it starts fast)."""
    return ["quantize", source, "--data", SST2, "--out", dest, "--target", "arm64", "--mode", "dynamic",
            "--max-eval-rows", "40", *(["--zip"] if zipped else [])]


@pytest.mark.slow
@pytest.mark.parametrize("phase, zipped", [("mid-copy", False), ("before-rename", False), ("old-moved-aside", False),
                                           ("mid-zip", True)])
@pytest.mark.parametrize("previous", [False, True], ids=["fresh", "over-old-bundle"])
def test_kill_while_writing_never_leaves_a_half_bundle(cls_bundle, tmp_path, phase, zipped, previous):
    """`edgeft quantize` killed inside the bundle writer: the output name holds nothing or the old bundle."""
    if phase == "old-moved-aside" and not previous:
        pytest.skip("there is no old bundle to move aside")
    dest = tmp_path / ("out.zip" if zipped else "out")
    args = [str(a) for a in quantize_args(cls_bundle, dest, zipped)]
    if previous:
        assert runner.invoke(app, args).exit_code == 0
        before = snapshot(dest)
    run_and_kill(args, tmp_path, phase=phase)
    assert leftovers(dest)  # the kill landed inside the writer: its temp files are there

    if phase == "old-moved-aside":  # killed between the renames: nothing under the name …
        assert not dest.exists()
    elif previous:
        assert snapshot(dest) == before  # the old bundle, byte for byte
    else:
        assert not dest.exists()
    if previous:  # … and the next writer's first step puts the old bundle back
        from edgeft.writable import recover

        recover(dest)
        assert snapshot(dest) == before
        load_bundle(dest)
    result = runner.invoke(app, args)  # the same command again: cleans up, writes, leaves no temp files
    assert result.exit_code == 0, result.output
    load_bundle(dest)
    assert leftovers(dest) == []


@pytest.mark.slow
def test_kill_during_quantize_search_writes_nothing(cls_bundle, tmp_path):
    dest = tmp_path / "int8"
    run_and_kill(quantize_args(cls_bundle, dest), tmp_path, when="[1/1] dynamic")
    assert not dest.exists() and leftovers(dest) == []


@pytest.mark.slow
@pytest.mark.parametrize("phase, when", [("", "checking parity"), ("mid-copy", "")], ids=["parity", "writing"])
def test_kill_during_export_leaves_no_bundle(cls_built, tmp_path, phase, when):
    bundle, hf_dir = cls_built
    dest = tmp_path / "fp32"
    run_and_kill(["export", hf_dir, "--out", dest, "--max-length", "32"], tmp_path, phase=phase, when=when)
    assert not dest.exists()
    assert bool(leftovers(dest)) == (phase == "mid-copy")  # killed in the writer: only its hidden temp folder


# ---------------------------------------------------------------------------------------------
# kill -9 during training, then --resume
# ---------------------------------------------------------------------------------------------

TRAIN = ["--data", SST2, "--max-steps", "120", "--eval-steps", "20", "--batch-size", "8", "--max-length", "32",
         "--precision", "fp32", "--patience", "0", "--seed", "3"]


@pytest.mark.slow
def test_resume_after_kill_reaches_the_same_metrics(tiny_models, tmp_path):
    model = tiny_models()
    reference = tmp_path / "reference"
    done = subprocess.run([sys.executable, "-m", "edgeft", "train", "--model", model, "--out", reference, *TRAIN],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

    out = tmp_path / "killed"
    ckpt = out / "checkpoints" / "checkpoint-40" / "trainer_state.json"  # the 2nd checkpoint, complete
    log = tmp_path / "train.log"
    with open(log, "w") as err:
        child = subprocess.Popen([sys.executable, "-m", "edgeft", "train", "--model", str(model), "--out", str(out),
                                  *map(str, TRAIN)], stdout=subprocess.DEVNULL, stderr=err)
        while not ckpt.exists():
            assert child.poll() is None, log.read_text()[-2000:]
            time.sleep(0.005)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL
    assert not (out / "metrics.json").exists()  # it really was cut short

    resumed = runner.invoke(app, ["train", "--model", str(model), "--out", str(out), *map(str, TRAIN), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    got = json.loads((out / "metrics.json").read_text())
    want = json.loads((reference / "metrics.json").read_text())
    assert got["train"]["steps"] == want["train"]["steps"] == 120
    for split in ("validation", "test"):  # same seed, same data order, restored RNG and optimizer: same numbers
        assert got[split]["accuracy"] == pytest.approx(want[split]["accuracy"], abs=1e-9)
        assert got[split]["macro_f1"] == pytest.approx(want[split]["macro_f1"], abs=1e-9)
    assert got["train"]["loss"] == pytest.approx(want["train"]["loss"], rel=1e-3)


def test_resume_skips_a_checkpoint_cut_short(tmp_path):
    """A kill while the Trainer saves leaves a checkpoint folder without trainer_state.json (written last)."""
    from edgeft.train.outputs import last_checkpoint

    for step, complete in ((20, True), (40, True), (60, False)):
        folder = tmp_path / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"0")
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoints" / "checkpoint-40")
    assert last_checkpoint(tmp_path / "nothing") is None


# ---------------------------------------------------------------------------------------------
# a full disk
# ---------------------------------------------------------------------------------------------

def assert_disk_full_error(result, dest: Path) -> None:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    text = " ".join(result.output.split())
    assert (f"error: {dest}: No space left on device; free space on that disk or choose another --out, then run the "
            "command again") in text, result.output
    assert "Traceback" not in result.output


def test_disk_full_simulated_keeps_the_previous_bundle(cls_bundle, tmp_path, monkeypatch):
    """ENOSPC in the middle of copying model.onnx (half of it written), on any file system."""
    import edgeft.compress.bundle_writer as bw

    dest = tmp_path / "b"
    args = [str(a) for a in quantize_args(cls_bundle, dest)]
    assert runner.invoke(app, args).exit_code == 0
    before = snapshot(dest)

    def full(src, dst):
        data = Path(src).read_bytes()
        Path(dst).write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(bw.shutil, "copyfile", full)
    assert_disk_full_error(runner.invoke(app, args), dest)
    assert snapshot(dest) == before and leftovers(dest) == []
    load_bundle(dest)


@pytest.mark.skipif(sys.platform != "linux", reason="tmpfs is Linux")
def test_disk_full_on_a_small_tmpfs_keeps_the_previous_bundle(cls_bundle, tmp_path):
    """A real full disk: a 1 MiB tmpfs holding a bundle, then filled up; writing it again must fail cleanly."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        dest = disk / "b"
        args = [str(a) for a in quantize_args(cls_bundle, dest)]
        assert runner.invoke(app, args).exit_code == 0
        before = snapshot(dest)
        with open(disk / "filler", "wb", buffering=0) as f:  # fill the disk up to the last page
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError as e:
                assert e.errno == errno.ENOSPC
        assert_disk_full_error(runner.invoke(app, args), dest)
        assert snapshot(dest) == before and leftovers(dest) == []
        load_bundle(dest)
    finally:
        subprocess.run(["umount", str(disk)], check=True)
