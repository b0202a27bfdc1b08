"""Question answering through every stage on a tiny random BERT: `edgeft train` on a SQuAD slice,
export with parity, the runtime's answers equal to the PyTorch path's, quantize, predict, eval,
bench and build. Tiny random models answer badly; what is checked is that every stage runs, that
its numbers are recorded, and that the runtime reproduces what training measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeft.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()
MAX_LENGTH = 64  # tokens per window: several windows per SQuAD paragraph, cheap to run


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def squad(data_dir) -> Path:
    return data_dir / "squad_50.jsonl"


@pytest.fixture(scope="module")
def qa_model(tmp_path_factory) -> Path:
    """A tiny random BERT with a question-answering head (start/end logits per token)."""
    from tiny_models import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("qa") / "hf", "bert", "question-answering",
                           labels=("start", "end"))


@pytest.fixture(scope="module")
def trained(qa_model, squad, tmp_path_factory):
    """`edgeft train --task question-answering` on the 50-question slice (split by paragraph)."""
    out = tmp_path_factory.mktemp("qa-train") / "ft"
    result = run("train", "--task", "question-answering", "--data", squad, "--model", qa_model, "--out", out,
                 "--max-length", MAX_LENGTH, "--epochs", 1, "--batch-size", 16)
    assert result.exit_code == 0, result.output
    return out, result


def test_train_writes_squad_metrics_and_window_settings(trained):
    out, result = trained
    assert "task        question-answering  (64-token windows, stride 21)" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "question-answering" and metrics["metric"] == "f1" and metrics["labels"] == []
    assert metrics["qa"] == {"doc_stride": 21, "max_question_tokens": 10, "max_answer_tokens": 30}
    for split in ("validation", "test"):
        m = metrics[split]
        assert 0 <= m["exact_match"] <= m["f1"] <= 1 and m["n"] > 0
    assert f"test f1: {metrics['test']['f1']:.4f}" in result.output
    saved = [json.loads(line) for line in (out / "data" / "test.jsonl").read_text().splitlines()]
    assert {"question", "context", "answers"} <= set(saved[0]) and len(saved) == metrics["test"]["n"]
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForQuestionAnswering"]
