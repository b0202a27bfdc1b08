"""Tiny bundles for the runtime tests, and the pytest fixtures that build them once per session.

``build_tiny_bundle`` is the one place that turns a tiny random HF model into a bundle (ONNX +
tokenizer.json + edgeft.json), through ``edgeft.compress.export`` itself, so the runtime is tested
on exactly what the compression stage ships.

The runtime test modules load this file as a plugin (``pytest_plugins = ["bundles"]``), so each
session fixture is built once for all of them, and import its helpers directly; torch is needed
to *build* the bundles, never to run them. (PYTEST_DONT_REWRITE: the test modules import this
file before pytest registers it as a plugin; it has no asserts to rewrite.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tiny_models import make_tiny_model

NER_LABELS = ("O", "B-location", "I-location", "B-person", "I-person")
CLS_LABELS = ("negative", "positive")
MAX_LENGTH = 64  # tokens; below the tiny models' 128 positions so truncation is exercised cheaply


def input_names(arch: str) -> list[str]:
    """The ONNX inputs each architecture takes (BERT also uses segment ids)."""
    return ["input_ids", "attention_mask", "token_type_ids"] if arch == "bert" else ["input_ids", "attention_mask"]


def build_tiny_bundle(tmp: str | Path, arch: str = "bert", task: str = "text-classification",
                      labels: tuple[str, ...] | None = None, max_length: int = MAX_LENGTH,
                      init_range: float = 0.02) -> tuple[Path, Path]:
    """Make a tiny HF model under ``tmp/hf`` and its FP32 bundle under ``tmp/bundle`` with edgeft's exporter.

    ``init_range``: weight init std (see ``make_tiny_model``; 0.5 for labels that vary between texts).

    Returns:
        (bundle_dir, hf_dir) — the HF folder is kept for PyTorch reference forwards.
    """
    from edgeft.compress.export import ExportConfig, export

    labels = labels or (NER_LABELS if task == "token-classification" else CLS_LABELS)
    tmp = Path(tmp)
    hf_dir = make_tiny_model(tmp / "hf", arch=arch, task=task, labels=labels, init_range=init_range)
    if "token_type_ids" in input_names(arch):  # BERT takes segment ids: say so in the tokenizer config
        config = json.loads((hf_dir / "tokenizer_config.json").read_text())
        config["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
        (hf_dir / "tokenizer_config.json").write_text(json.dumps(config))
    bundle = tmp / "bundle"
    export(hf_dir, bundle, cfg=ExportConfig(max_length=max_length))  # the real exporter, with its parity check
    return bundle, hf_dir


def torch_logits(hf_dir: Path, task: str, ids: list[list[int]]) -> list:
    """The reference: PyTorch eager on one unpadded sequence at a time → (labels,) or (seq, labels) arrays.

    One torch thread: with several, each tiny call pays ~50 ms of thread hand-off on a busy 2-core box.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    cls = AutoModelForTokenClassification if task == "token-classification" else AutoModelForSequenceClassification
    model = cls.from_pretrained(hf_dir).eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            return [model(input_ids=torch.tensor([seq]), attention_mask=torch.ones(1, len(seq), dtype=torch.long))
                    .logits[0].numpy() for seq in ids]
    finally:
        torch.set_num_threads(threads)


def rewrite_manifest(bundle: Path, **changes) -> None:
    """Edit edgeft.json in place (a helper for tamper tests): set or, with value None, delete keys."""
    path = bundle / "edgeft.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data), encoding="utf-8")


def copy_bundle(src: Path, dst: Path) -> Path:
    """A private copy of a session bundle, for tests that modify it."""
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="session")
def cls_built(tmp_path_factory) -> tuple[Path, Path]:
    """(bundle, hf_dir) of a tiny BERT sentiment classifier."""
    return build_tiny_bundle(tmp_path_factory.mktemp("cls"), "bert", "text-classification")


@pytest.fixture(scope="session")
def ner_built(tmp_path_factory) -> tuple[Path, Path]:
    """(bundle, hf_dir) of a tiny BERT token classifier with location/person BIO tags."""
    return build_tiny_bundle(tmp_path_factory.mktemp("ner"), "bert", "token-classification")


@pytest.fixture(scope="session")
def gpt2_built(tmp_path_factory) -> tuple[Path, Path]:
    """(bundle, hf_dir) of a tiny GPT-2 classifier: pools the last non-pad token."""
    return build_tiny_bundle(tmp_path_factory.mktemp("gpt2"), "gpt2", "text-classification")


@pytest.fixture(scope="session")
def cls_bundle(cls_built) -> Path:
    return cls_built[0]


@pytest.fixture(scope="session")
def ner_bundle(ner_built) -> Path:
    return ner_built[0]
