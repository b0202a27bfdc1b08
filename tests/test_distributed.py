"""Multi-process training through torchrun (the engine real multi-GPU/multi-node runs use), on 2 CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_torchrun_two_cpu_processes_train_to_completion(tiny_models, data_dir, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         "-m", "edgeft", "train", "--model", str(tiny_models()), "--data", str(data_dir / "sst2_300.jsonl"),
         "--out", str(out), "--epochs", "1", "--max-length", "32", "--batch-size", "16"],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["devices"] == 2
    assert metrics["train"]["steps"] == 8  # 240 examples / (16 per process x 2 processes)
    assert done.stdout.count("test accuracy:") == 1  # one summary, from rank 0
