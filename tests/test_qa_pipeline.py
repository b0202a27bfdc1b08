"""Question answering through every stage on a tiny random BERT: `edgeft train` on a SQuAD slice,
export with parity, the runtime's answers equal to the PyTorch path's, quantize, predict, eval,
bench and build. Tiny random models answer badly; what is checked is that every stage runs, that
its numbers are recorded, and that the runtime reproduces what training measured."""

from __future__ import annotations

import json
from pathlib import Path

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
    from edgeft.stage import Splits

    return export(qa_model, tmp_path_factory.mktemp("qa-fp32") / "bundle", Splits(validation=squad),
                  ExportConfig(max_length=MAX_LENGTH))


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


def test_manifest_without_window_settings_is_refused(exported, tmp_path):
    import shutil

    from bundles import rewrite_manifest

    from edgeft.errors import BundleError
    from edgeft.runtime.predictor import Predictor

    bundle = shutil.copytree(exported.bundle, tmp_path / "b")
    rewrite_manifest(bundle, qa={"doc_stride": 21})
    with pytest.raises(BundleError, match="a question-answering manifest needs qa {doc_stride, max_question_tokens, "
                                          "max_answer_tokens} as integers"):
        Predictor.load(bundle)


def test_cli_predict_one_pair_and_a_pairs_file(exported, squad, tmp_path):
    bundle = exported.bundle
    context = "The Broncos beat the Panthers 24–10 at Levi's Stadium in Santa Clara."
    result = run("predict", bundle, "--question", "Who won?", "--context", context, "--output", tmp_path / "one.jsonl")
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in (tmp_path / "one.jsonl").read_text().splitlines()]
    assert set(row) == {"line", "answer", "score", "start", "end", "truncated"}
    assert context[row["start"]:row["end"]] == row["answer"] and row["answer"]
    assert result.stdout.startswith(f"{row['answer']}\t") and "\tWho won?\n" in result.stdout
    assert "answered 1 question(s) in" in result.stdout

    rows = [json.loads(line) for line in squad.read_text(encoding="utf-8").splitlines()[:5]]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"question": r["question"], "context": r["context"]}) + "\n" for r in rows))
    result = run("predict", bundle, "--input", pairs, "--output", tmp_path / "out.jsonl", "--chunk", 2)
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [o["line"] for o in out] == [1, 2, 3, 4, 5]
    assert all(r["context"][o["start"]:o["end"]] == o["answer"] for r, o in zip(rows, out))


@pytest.mark.parametrize("args, message", [
    (["a text"], "answers questions: give --question and --context, or --input pairs.jsonl"),
    (["--question", "Who?"], "--question and --context go together"),
    (["--question", "Who?", "--context", "x", "a text"], "give texts as arguments, --question with --context, or one "
                                                          "--input file"),
])
def test_cli_predict_qa_usage_errors(exported, args, message):
    result = run("predict", exported.bundle, *args)
    assert result.exit_code == 2 and message in " ".join(result.output.split()) and "Traceback" not in result.output


def test_cli_eval_reports_exact_match_and_f1_as_export_measured(exported, squad, tmp_path):
    result = run("eval", exported.bundle, "--data", squad, "--json", tmp_path / "eval.json", "--batch-size", 8)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "eval.json").read_text())
    fp32 = exported.manifest.metrics["fp32"]  # measured at batch 1 during export: batching must not change answers
    assert metrics["f1"] == pytest.approx(fp32["f1"]) and metrics["exact_match"] == pytest.approx(fp32["exact_match"])
    assert result.stdout.startswith(f"f1 {metrics['f1']:.4f}  exact match {metrics['exact_match']:.4f}  on 50 examples")


def test_cli_quantize_a_qa_bundle(exported, squad, tmp_path):
    out = tmp_path / "int8"
    result = run("quantize", exported.bundle, "--data", squad, "--target", "arm64", "--mode", "dynamic", "--out", out,
                 "--max-accuracy-drop", 1.0)
    assert result.exit_code == 0, result.output
    m = json.loads((out / "edgeft.json").read_text())
    assert m["task"] == "question-answering" and m["qa"] == exported.manifest.qa and m["quantization"]["mode"] == "dynamic"
    assert {"exact_match", "f1"} <= set(m["metrics"]["variant"]) and {"exact_match", "f1"} <= set(m["metrics"]["fp32"])
    assert 0 <= m["metrics"]["agreement"] <= 1  # share of answers equal to FP32's
    from edgeft.runtime.predictor import Predictor

    (answer,) = Predictor.load(out).predict(question="Who won?", context="The Broncos won the game.")
    assert "The Broncos won the game."[answer.start:answer.end] == answer.answer


def test_cli_bench_times_qa_bundles_on_pairs(exported, squad, tmp_path):
    result = run("bench", exported.bundle, "--threads", 1, "--batch", 1, "--seq-len", "real,64", "--runs", 4,
                 "--warmup", 1, "--data", squad, "--json", tmp_path / "bench.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "bench.json").read_text())
    assert [r["seq_len"] for r in report["rows"]] == ["real", 64] and all(r["p50_ms"] > 0 for r in report["rows"])
    assert report["models"][0]["cold"]["1"]["first_prediction_ms"] > 0
    from edgeft.runtime.bench import make_feeds, sample_texts
    from edgeft.runtime.predictor import Predictor

    pairs = sample_texts(squad, qa=True)
    assert pairs[0] == tuple(json.loads(squad.read_text().splitlines()[0])[k] for k in ("question", "context"))
    p = Predictor.load(exported.bundle)
    (feed,) = make_feeds(p.tokenizer, pairs[:1], 1, "real", MAX_LENGTH, p.manifest.inputs, p.manifest.pad_token_id)
    assert feed["input_ids"].shape == (1, MAX_LENGTH)  # question + context, cut to the window
    assert feed["token_type_ids"][0, -2] == 1  # the context segment


def test_qa_prediction_runs_without_torch(exported, tmp_path):
    """The device path (predict with a QA bundle) never imports torch or transformers."""
    import os
    import subprocess
    import sys

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers'):\n"
        "            raise ImportError(f'{name} is blocked')\n"
        "sys.meta_path.insert(0, Block())\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "edgeft", "predict", str(exported.bundle), "--question", "Who won?",
                           "--context", "The Broncos won."], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "answered 1 question(s)" in proc.stdout


def test_distill_a_qa_teacher_with_start_end_kd(trained, squad, tmp_path):
    """A 1-layer student learns the teacher's start/end distributions; it reads the teacher's windows."""
    teacher, _ = trained
    out = tmp_path / "kd"
    result = run("distill", teacher, "--data", squad, "--layers", 1, "--epochs", 1, "--batch-size", 16, "--out", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    teacher_metrics = json.loads((teacher / "metrics.json").read_text())
    assert metrics["task"] == "question-answering" and metrics["max_length"] == MAX_LENGTH
    assert metrics["qa"] == teacher_metrics["qa"]
    c = metrics["comparison"]
    assert c["metric"] == "f1" and c["layers"] == {"teacher": 2, "student": 1} and 0 <= c["agreement"] <= 1
    assert {"exact_match", "f1"} <= set(metrics["teacher_test"]) and {"exact_match", "f1"} <= set(metrics["test"])
    assert metrics["train"]["kd_curve"] and set(metrics["train"]["last_losses"]) == {"ce_loss", "kd_loss"}
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForQuestionAnswering"]
    assert "task        question-answering  (64-token windows)" in result.output


def test_distill_refuses_what_qa_cannot_use(trained, squad, tmp_path):
    teacher, _ = trained
    result = run("distill", teacher, "--data", squad, "--augment", 1, "--out", tmp_path / "kd")
    assert result.exit_code == 2 and "--unlabeled and --augment are not available for question answering" in \
        " ".join(result.output.split())


def test_build_a_qa_bundle_with_em_and_f1_in_the_report(qa_model, squad, tmp_path):
    out = tmp_path / "build"
    result = run("build", "--model", qa_model, "--data", squad, "--out", out, "--fast", "--target", "arm64")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["metric"] == "f1" and [v["name"] for v in report["variants"]] == ["fp32", "int8"]
    for v in report["variants"]:
        assert 0 <= v["exact_match"] <= v["metric"] <= 1 and v["latency"]["p50_ms"] > 0
    assert "| test EM | test f1 |" in (out / "report.md").read_text()
    from edgeft.runtime.predictor import Predictor

    p = Predictor.load(out / "bundle")
    assert p.is_qa and p.manifest.max_length == 64  # --fast: 64-token windows
    (a,) = p.predict(question="Which city?", context="The final was played in Santa Clara, California.")
    assert "The final was played in Santa Clara, California."[a.start:a.end] == a.answer


def test_train_scores_each_split_on_its_own_windows(qa_model, squad, tmp_path):
    """Validation has many long windows, test one short one: each split is decoded from its own
    logits, and the exported bundle's `edgeft eval` gives the test numbers training reported."""
    rows = squad.read_text(encoding="utf-8").splitlines()
    (tmp_path / "train.jsonl").write_text("\n".join(rows[:30]) + "\n")
    (tmp_path / "validation.jsonl").write_text("\n".join(rows[30:45]) + "\n")
    short = {"id": "s1", "title": "t", "question": "Who won?", "context": "The Broncos won.",
             "answers": {"text": ["The Broncos"], "answer_start": [0]}}
    (tmp_path / "test.jsonl").write_text(json.dumps(short) + "\n")
    out = tmp_path / "ft"
    result = run("train", "--data", tmp_path / "train.jsonl", "--validation", tmp_path / "validation.jsonl",
                 "--test", tmp_path / "test.jsonl", "--model", qa_model, "--out", out, "--max-length", MAX_LENGTH,
                 "--epochs", 1)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n"] == 1 and metrics["validation"]["n"] == 15
    assert run("export", out, "--out", tmp_path / "bundle").exit_code == 0
    result = run("eval", tmp_path / "bundle", "--data", tmp_path / "test.jsonl", "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.output
    runtime = json.loads((tmp_path / "e.json").read_text())
    assert (runtime["exact_match"], runtime["f1"]) == pytest.approx((metrics["test"]["exact_match"], metrics["test"]["f1"]))


def test_inspect_shows_the_window_settings(exported):
    result = run("inspect", exported.bundle)
    assert result.exit_code == 0, result.output
    assert "task     question-answering, doc_stride 21, max_answer_tokens 30, max_question_tokens 10" in result.stdout


def test_qa_kd_term_is_the_kl_between_start_and_end_distributions():
    """QA distils two distributions over the positions (start, end) per window: the KD term is their
    mean KL at T, worked out here by hand for one window of three tokens."""
    import math

    import torch

    from edgeft.compress.distill import distillation_loss

    teacher = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]])  # (2, seq): start and end logits of one window
    student = torch.zeros(2, 3)  # no opinion: uniform over the three positions
    parts = distillation_loss(student, teacher, torch.tensor([0, 2]), temperature=2.0, alpha=0.0)
    z = math.e + 2  # softmax(teacher / T) = (e, 1, 1) / (e + 2) for both rows
    kl = math.e / z * math.log(3 * math.e / z) + 2 / z * math.log(3 / z)  # KL(p ‖ uniform) ≈ 0.1233
    assert float(parts["kd"]) == pytest.approx(kl, abs=1e-6) and kl == pytest.approx(0.12328, abs=1e-5)
    assert float(parts["loss"]) == pytest.approx(4 * kl, abs=1e-6)  # (1 − α)·T²·KL with α = 0
