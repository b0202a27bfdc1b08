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
    """A tiny random BERT with a question-answering head (start/end logits per token) whose tokenizer
    gives segment ids, as BERT's real one does: the context is token type 1."""
    from tiny_models import make_tiny_model

    path = make_tiny_model(tmp_path_factory.mktemp("qa") / "hf", "bert", "question-answering",
                           labels=("start", "end"))
    config = json.loads((path / "tokenizer_config.json").read_text())
    config["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return path


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


@pytest.fixture(scope="module")
def exported(qa_model, squad, tmp_path_factory):
    """The tiny QA model's FP32 bundle, exported with its parity check and FP32 EM/F1 on the slice."""
    from edgeft.compress.export import ExportConfig, export

    return export(qa_model, tmp_path_factory.mktemp("qa-fp32") / "bundle",
                  ExportConfig(max_length=MAX_LENGTH, data=str(squad)))


def test_export_checks_parity_of_start_and_end_logits(exported):
    m, parity = exported.manifest, exported.parity
    assert m.task == "question-answering" and m.labels == [] and m.outputs == ["start_logits", "end_logits"]
    assert m.inputs == ["input_ids", "attention_mask", "token_type_ids"]
    assert m.qa == {"doc_stride": 21, "max_question_tokens": 10, "max_answer_tokens": 30}  # defaults for 64 tokens
    assert set(parity.max_abs_diff) == {"start_logits", "end_logits"}
    assert all(d <= 1e-4 for d in parity.max_abs_diff.values()) and parity.passed and parity.tokenizer_match
    assert parity.compared == 2 * sum(b for b, _ in parity.shapes)  # start and end picks of every row
    fp32 = m.metrics["fp32"]
    assert fp32["metric"] == "f1" and 0 <= fp32["exact_match"] <= fp32["f1"] <= 1 and fp32["n"] == 50


def test_runtime_answers_equal_the_pytorch_paths(exported, qa_model, squad):
    """The bundle's answers (ONNX Runtime + numpy decoding) are the training path's: PyTorch logits
    on the same windows, decoded by edgeft.train.qa — text, character span and score."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from edgeft.data import read_dataset
    from edgeft.runtime.predictor import Predictor
    from edgeft.train.qa import answers, encode_qa

    examples = read_dataset(squad).examples[:12]
    features = encode_qa(examples, AutoTokenizer.from_pretrained(qa_model), MAX_LENGTH, exported.manifest.qa)
    assert len(features) > 2 * len(examples)  # long contexts: several windows per question
    model = AutoModelForQuestionAnswering.from_pretrained(qa_model).eval()
    starts, ends = [], []
    with torch.inference_mode():
        for row in features:  # one window at a time, unpadded
            out = model(**{k: torch.tensor([row[k]]) for k in ("input_ids", "attention_mask", "token_type_ids")})
            starts.append(out.start_logits[0].numpy())
            ends.append(out.end_logits[0].numpy())
    want = answers(starts, ends, features)
    got = Predictor.load(exported.bundle, threads=1, batch_size=4).predict([ex.pair for ex in examples])
    assert [(a.answer, a.start, a.end) for a in got] == [(a.answer, a.start, a.end) for a in want]
    assert [a.score for a in got] == pytest.approx([a.score for a in want], rel=1e-4)
    assert all(ex.context[a.start:a.end] == a.answer for ex, a in zip(examples, got))
