"""The soak, short: one Predictor shared by 8 threads gives exactly the sequential results, and
`edgeft predict --input` streams its file in chunks. The full soak (8 × 10,000 predictions, a
1,000,000-line file, RSS measured) is benchmarks/soak.py; its figures are in README "Reliability"."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from typer.testing import CliRunner

from edgeft.cli import app

pytest_plugins = ["bundles"]  # the session-scoped tiny-bundle fixtures, built once for all modules

SOAK_PY = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"


def soak():
    spec = importlib.util.spec_from_file_location("soak", SOAK_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eight_threads_share_one_predictor(cls_bundle):
    report = soak().soak_threads(cls_bundle, threads=8, per_thread=200, progress=lambda line: None)
    assert report["errors"] == []
    assert report["predictions"] == 1600 and report["identical"] and report["mismatches"] == 0
    assert report["rss_mb"]["end"] > 0


def test_predict_input_streams_in_chunks(cls_bundle, tmp_path, monkeypatch):
    """20,000 lines: the predictor never holds more than --chunk texts, and every line comes out in order."""
    from edgeft.runtime.predictor import Predictor

    seen = []
    real = Predictor.predict
    monkeypatch.setattr(Predictor, "predict", lambda self, texts: seen.append(len(texts)) or real(self, texts))
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps({"text": f"review number {n}"}) + "\n" for n in range(20_000)))
    result = CliRunner().invoke(app, ["predict", str(cls_bundle), "--input", str(src), "--output", str(out),
                                      "--chunk", "512"])
    assert result.exit_code == 0, result.output
    assert max(seen) == 512 and sum(seen) == 20_000 and len(seen) == 40  # 39 full chunks and the rest
    with open(out) as f:
        assert [json.loads(line)["line"] for line in f] == list(range(1, 20_001))


def test_stream_part_of_the_soak(cls_bundle, tmp_path):
    report = soak().soak_stream(cls_bundle, lines=3000, work=tmp_path, progress=lambda line: None)
    assert report["returncode"] == 0 and report["output_rows"] == 3000 and report["in_order"]
    assert report["rss_mb"]["peak"] > 0
