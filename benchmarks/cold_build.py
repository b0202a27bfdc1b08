"""One cold `edgeft build` in a fresh process, as a user runs it (benchmarks/build.py and build_lm.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


def cold_build(name: str, work: Path, *args: str) -> tuple[dict, float, str]:
    """``edgeft build --out WORK/NAME ARGS`` in a fresh process with no cached stages, as a user runs it:
    (its report.json, wall seconds, the command). The build's progress goes to WORK/NAME.log."""
    out = work / name
    shutil.rmtree(out, ignore_errors=True)  # a cold build: no cached stages
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "edgeft", "build", "--out", str(out), *args]
    print("$", " ".join(cmd[2:]), flush=True)
    started = time.perf_counter()
    with open(work / f"{name}.log", "w") as log:  # the build's progress, for when it fails
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{name}: edgeft build failed (exit {done.returncode}); see {work / (name + '.log')}")
    return json.loads((out / "report.json").read_text()), wall, "edgeft " + " ".join(cmd[3:])
