"""`edgeft predict | eval | inspect | bench` through the real CLI (CliRunner): exit codes, the
summary line, the JSON they write, and user errors as one `error:` line with exit code 2."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from bundles import NER_LABELS, torch_logits
from tiny_models import DATA
from typer.testing import CliRunner

from edgeft.cli import app

pytest_plugins = ["bundles"]  # the session-scoped tiny-bundle fixtures, built once for all modules

runner = CliRunner()
SST2 = DATA / "sst2_300.jsonl"


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_user_error(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())  # one space everywhere: long messages may wrap
    assert "error: " in text and message in text.split("error: ", 1)[1], result.output
    assert "Traceback" not in result.output


def test_predict_texts(cls_bundle, tmp_path):
    out = tmp_path / "p.jsonl"
    result = run("predict", cls_bundle, "a warm , funny film", "", "dull", "--output", out)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and lines[0].split("\t")[0] in ("negative", "positive")
    assert lines[-1].startswith("predicted 3 text(s) in ") and f"→ {out}" in lines[-1]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3]
    assert set(rows[0]) == {"line", "label", "score", "scores", "truncated"}


def test_predict_ner_text(ner_bundle):
    result = run("predict", ner_bundle, "Meet José in Zürich 😀 tomorrow")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Meet José in Zürich 😀 tomorrow\n")


def test_predict_streams_jsonl_and_txt(cls_bundle, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"text": t, "id": i}) for i, t in enumerate(["good", "bad", "ok"] * 5)) + "\n\n")
    out = tmp_path / "out.jsonl"
    result = run("predict", cls_bundle, "--input", src, "--output", out, "--chunk", "4")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == list(range(1, 16))  # blank trailing line skipped, order kept across chunks
    assert "predicted 15 text(s)" in result.stderr and result.stdout == ""

    txt = tmp_path / "in.txt"
    txt.write_text("good\n\nbad\n", encoding="utf-8")  # a .txt line is a text, even an empty one
    result = run("predict", cls_bundle, "--input", txt)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["line"] for line in result.stdout.splitlines()] == [1, 2, 3]


def test_predict_reads_stdin_lines(cls_bundle):
    result = runner.invoke(app, ["predict", str(cls_bundle), "--input", "-", "--chunk", "1"],
                           input='good\n{"text": "not parsed"}\n\n')
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3]  # stdin lines are texts, as in a .txt file
    assert "predicted 3 text(s)" in result.stderr and "predicting" not in result.stderr  # no progress bar on a pipe
    assert_user_error(runner.invoke(app, ["predict", str(cls_bundle), "--input", "-"], input=b"caf\xe9\n"),
                      "<stdin>:1: not UTF-8")


@pytest.mark.parametrize("content, message", [
    ('{"text": "fine"}\n{oops\n', "in.jsonl:2: not valid JSON"),
    ('{"text": "fine"}\n{"body": "x"}\n', "in.jsonl:2: expected an object with a string field 'text'"),
    (b'{"text": "caf\xe9"}\n', "in.jsonl:1: not UTF-8"),
])
def test_predict_bad_input_rows(cls_bundle, tmp_path, content, message):
    src = tmp_path / "in.jsonl"
    src.write_bytes(content.encode() if isinstance(content, str) else content)
    assert_user_error(run("predict", cls_bundle, "--input", src), message)


def test_predict_usage_errors(cls_bundle, tmp_path):
    assert_user_error(run("predict", cls_bundle), "give texts as arguments, --question with --context, or one --input file")
    assert_user_error(run("predict", cls_bundle, "--question", "q", "--context", "c"),
                      "--question/--context are for question-answering bundles")
    assert_user_error(run("predict", tmp_path / "missing", "x"), "bundle not found")
    csv = tmp_path / "in.csv"
    csv.write_text("text\nfine\n")
    assert_user_error(run("predict", cls_bundle, "--input", csv), "use a .jsonl file")


def test_predict_refuses_tampered_bundle(cls_bundle, tmp_path):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in cls_bundle.iterdir():
            zf.write(f, f.name)
        zf.writestr("../../escape.txt", "x")
    assert_user_error(run("predict", z, "hello"), f"{z} (zip entry) names the file '../../escape.txt'")


def test_eval_classification_matches_pytorch(cls_built, tmp_path):
    """Golden check: the runtime's accuracy equals PyTorch's on the same 300 sentences."""
    from tokenizers import Tokenizer

    from edgeft.metrics import classification_metrics

    bundle, hf_dir = cls_built
    out = tmp_path / "eval.json"
    result = run("eval", bundle, "--data", SST2, "--json", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert result.stdout.startswith(f"accuracy {metrics['accuracy']:.4f}  macro-F1 ")
    assert "on 300 examples" in result.stdout and f"→ {out}" in result.stdout

    rows = [json.loads(line) for line in SST2.read_text().splitlines()]
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    tok.enable_truncation(max_length=64)
    labels = ["negative", "positive"]
    logits = torch_logits(hf_dir, "text-classification", [tok.encode(r["text"]).ids for r in rows])
    preds = [labels[int(row.argmax())] for row in logits]
    ref = classification_metrics([r["label"] for r in rows], preds, labels)
    assert metrics["accuracy"] == ref["accuracy"] and metrics["confusion_matrix"] == ref["confusion_matrix"]
    assert metrics["n"] == 300 and metrics["task"] == "text-classification"


def test_eval_ner(ner_bundle, tmp_path):
    keep = {t for t in NER_LABELS if t != "O"}
    data = tmp_path / "ner.jsonl"
    with data.open("w") as f:
        for line in (DATA / "wnut17_200.jsonl").read_text().splitlines()[:60]:
            row = json.loads(line)
            f.write(json.dumps({"tokens": row["tokens"], "tags": [t if t in keep else "O" for t in row["tags"]]}) + "\n")
    out = tmp_path / "ner-eval.json"
    result = run("eval", ner_bundle, "--data", data, "--json", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert result.stdout.startswith(f"f1 {metrics['f1']:.4f}  precision ")
    assert metrics["n"] == 60 and 0 <= metrics["accuracy"] <= 1 and set(metrics["per_type"]) <= {"location", "person"}


def test_eval_unknown_label(cls_bundle, tmp_path):
    data = tmp_path / "test.jsonl"
    data.write_text('{"text": "fine", "label": "positive"}\n{"text": "meh", "label": "neutral"}\n')
    assert_user_error(run("eval", cls_bundle, "--data", data),
                      f"{data}:2: label 'neutral' does not occur in the bundle's labels (known: negative, positive)")
    assert_user_error(run("eval", cls_bundle, "--data", tmp_path / "none.jsonl"), "none.jsonl: no such file")


def test_inspect(cls_bundle, tmp_path):
    out = tmp_path / "inspect.json"
    result = run("inspect", cls_bundle, "--json", out)
    assert result.exit_code == 0, result.output
    assert "verified: sha256 and size of 2 files" in result.stdout and "MatMul" in result.stdout
    report = json.loads(out.read_text())
    assert report["model"]["opset"]["ai.onnx"] == report["manifest"]["opset"] == 18  # the exporter's default
    assert report["model"]["ops"]["MatMul"] > 0 and report["model"]["nodes"] == sum(report["model"]["ops"].values())
    assert report["files"]["model.onnx"] == (cls_bundle / "model.onnx").stat().st_size
    assert report["model"]["weights"]["float32"]["tensors"] > 0


def test_inspect_ops_match_onnx_package(cls_bundle):
    onnx = pytest.importorskip("onnx")
    from collections import Counter

    from edgeft.runtime.inspect import describe_onnx

    proto = onnx.load(str(cls_bundle / "model.onnx"))
    got = describe_onnx((cls_bundle / "model.onnx").read_bytes())
    assert got["ops"] == dict(Counter(n.op_type for n in proto.graph.node))
    assert got["ir_version"] == proto.ir_version
    dtype_of = {1: "float32", 7: "int64", 9: "bool"}
    assert {dtype_of[t.data_type] for t in proto.graph.initializer} == set(got["weights"])
    float_bytes = sum(np.prod(t.dims, dtype=np.int64) * 4 for t in proto.graph.initializer if t.data_type == 1)
    assert got["weights"]["float32"]["bytes"] == float_bytes


def test_inspect_tampered(cls_bundle, tmp_path):
    b = tmp_path / "b"
    b.mkdir()
    for f in cls_bundle.iterdir():
        (b / f.name).write_bytes(f.read_bytes())
    (b / "tokenizer.json").write_text("{}")
    assert_user_error(run("inspect", b), f"{b}: tokenizer.json is 2 bytes but the manifest says")


def test_bench_json_schema_and_compare(cls_built, tmp_path):
    bundle, hf_dir = cls_built
    out = tmp_path / "bench.json"
    result = run("bench", bundle, "--pytorch", hf_dir, "--threads", "1", "--batch", "1,2", "--seq-len", "real,8,100",
                 "--runs", "3", "--warmup", "1", "--json", out)
    assert result.exit_code == 0, result.output
    assert "benchmarked 2 model(s) × 4 configuration(s)" in result.stdout
    assert "note: skipped seq_len 100 > max_length 64" in result.stdout
    report = json.loads(out.read_text())
    assert set(report) == {"machine", "versions", "settings", "models", "rows", "skipped"}
    assert {"cpu", "isa", "logical_cores", "physical_cores", "arch", "os", "python"} <= set(report["machine"])
    assert isinstance(report["machine"]["isa"], list) and report["machine"]["logical_cores"] >= 1
    assert {"onnxruntime", "numpy", "tokenizers", "torch", "transformers"} <= set(report["versions"])
    assert [m["kind"] for m in report["models"]] == ["bundle", "pytorch"]
    for m in report["models"]:
        cold = m["cold"]["1"]
        assert m["size_bytes"] > 0 and cold["peak_rss_mb"] > 10
        assert 0 < cold["load_ms"] < cold["first_prediction_ms"]
    assert len(report["rows"]) == 2 * 2 * 2  # models × batch sizes × seq lens (100 skipped)
    for row in report["rows"]:
        assert row["runs"] == 3 and row["seq_len"] in ("real", 8)
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] and row["throughput"] > 0

    result = run("bench", "--compare", out, out)
    assert result.exit_code == 0, result.output
    assert "b/a" in result.stdout and "1.00" in result.stdout


def test_bench_errors(cls_bundle, tmp_path):
    assert_user_error(run("bench", cls_bundle, "--seq-len", "real,abc"), "--seq-len: 'abc' is not valid")
    assert_user_error(run("bench", cls_bundle, "--threads", "0"), "--threads: '0' is not valid")
    assert_user_error(run("bench"), "give at least one bundle")
    assert_user_error(run("bench", "--compare", cls_bundle / "edgeft.json"), "--compare needs exactly two")
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    assert_user_error(run("bench", "--compare", bad, bad), "not a bench report")
    assert_user_error(run("bench", cls_bundle, "--pytorch", tmp_path), "not a Hugging Face model folder")


@pytest.mark.parametrize("command, phrase", [("predict", "--input"), ("eval", "--data"), ("inspect", "--json"),
                                             ("bench", "--pytorch")])
def test_help(command, phrase):
    result = run(command, "--help")
    assert result.exit_code == 0 and phrase in result.stdout
