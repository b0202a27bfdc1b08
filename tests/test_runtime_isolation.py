"""The runtime works where torch, transformers and optimum are not installed, and never even
tries to import them: every runtime CLI command runs in a subprocess whose sitecustomize blocks
(and records) any attempt. Bench workers inherit the block through PYTHONPATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import DATA

pytest_plugins = ["bundles"]  # the session-scoped tiny-bundle fixtures, built once for all modules

BLOCKER = '''
import os, sys

class _BlockTrainingStack:
    """Any import of torch/transformers/optimum fails, and is written to $EDGEFT_BLOCK_LOG."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "optimum"):
            with open(os.environ["EDGEFT_BLOCK_LOG"], "a") as log:
                log.write(name + "\\n")
            raise ImportError(f"{name} is blocked in this test (a device without the train extra)")
        return None

sys.meta_path.insert(0, _BlockTrainingStack())
'''


@pytest.fixture
def blocked(tmp_path):
    """run(*args) → CompletedProcess of `python *args` with the training stack blocked; .log = attempts."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    log = tmp_path / "attempts.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "EDGEFT_BLOCK_LOG": str(log)}

    def run(*args, expect: int = 0) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, *map(str, args)], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=120, check=False)
        assert proc.returncode == expect, proc.stdout + proc.stderr
        return proc

    run.log = log
    return run


def test_blocker_works(blocked):
    proc = blocked("-c", "import torch", expect=1)
    assert "torch is blocked in this test" in proc.stderr and blocked.log.read_text() == "torch\n"


def test_runtime_commands_without_torch(blocked, cls_bundle, ner_bundle, tmp_path):
    proc = blocked("-c", "import sys, edgeft.cli, edgeft.runtime.predictor, edgeft.runtime.bench, "
                         "edgeft.runtime.evaluate, edgeft.runtime.inspect; "
                         "print(sorted(m for m in ('torch', 'transformers', 'optimum') if m in sys.modules))")
    assert proc.stdout.strip() == "[]"
    proc = blocked("-m", "edgeft", "predict", cls_bundle, "a fine film")
    assert "predicted 1 text(s)" in proc.stdout
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "Zürich in May"}\n{"text": ""}\n')
    blocked("-m", "edgeft", "predict", ner_bundle, "--input", src, "--output", tmp_path / "out.jsonl")
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2
    proc = blocked("-m", "edgeft", "eval", cls_bundle, "--data", DATA / "sst2_300.jsonl", "--json", tmp_path / "e.json")
    assert proc.stdout.startswith("accuracy ") and json.loads((tmp_path / "e.json").read_text())["n"] == 300
    proc = blocked("-m", "edgeft", "inspect", cls_bundle)
    assert "MatMul" in proc.stdout
    proc = blocked("-m", "edgeft", "bench", cls_bundle, "--threads", "1", "--batch", "1", "--seq-len", "real",
                   "--runs", "2", "--warmup", "0", "--json", tmp_path / "b.json")
    assert "benchmarked 1 model(s)" in proc.stdout and Path(tmp_path / "b.json").is_file()
    assert not blocked.log.exists(), "something tried to import: " + blocked.log.read_text()


def test_bench_pytorch_without_torch_says_which_extra(blocked, cls_built):
    bundle, hf_dir = cls_built
    proc = blocked("-m", "edgeft", "bench", bundle, "--pytorch", hf_dir, expect=2)
    assert 'error: `edgeft bench --pytorch` needs the \'train\' extra (torch is not installed): pip install "edgeft[train]"' \
        in proc.stderr
    assert "Traceback" not in proc.stderr
