"""`edgeft build`: the golden end-to-end run, resume after a kill, target change, recipes, dry run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeft.cli import app
from edgeft.errors import ConfigError
from edgeft.recipe import Recipe, load_recipe
from edgeft.train.config import TrainConfig

pytestmark = pytest.mark.slow
runner = CliRunner()


def build_args(model, data, out, *extra):
    return ["build", "--model", str(model), "--data", str(data), "--out", str(out), "--fast", *map(str, extra)]


@pytest.fixture(scope="module")
def golden(tiny_models, data_dir, tmp_path_factory):
    """One real `edgeft build --fast` on the tiny BERT and 300 real SST-2 rows."""
    out = tmp_path_factory.mktemp("build") / "arm64"
    result = runner.invoke(app, build_args(tiny_models(), data_dir / "sst2_300.jsonl", out, "--target", "arm64"))
    assert result.exit_code == 0, result.output
    return out, result


def test_golden_build_writes_a_verified_bundle_and_a_report(golden, data_dir):
    out, result = golden
    from edgeft.runtime.predictor import Predictor

    predictor = Predictor.load(out / "bundle")  # verifies every hash
    assert len(predictor.predict(["a fine film", "awful"])) == 2
    report = json.loads((out / "report.json").read_text())
    int8 = Predictor.load(next(v["bundle"] for v in report["variants"] if v["name"] == "int8"))
    assert int8.manifest.target["name"] == "arm64" and int8.manifest.quantization["mode"] == "dynamic"
    names = [v["name"] for v in report["variants"]]
    assert names[:2] == ["fp32", "int8"]
    chosen = next(v for v in report["variants"] if v["name"] == report["chosen"])
    assert chosen["drop_pt"] <= report["budget_pt"]  # the choice obeys the budget
    for v in report["variants"]:
        assert v["latency"]["p50_ms"] > 0 and v["size_mb"] > 0 and 0 <= v["agreement"] <= 1
        assert v["within_budget"] == (v["drop_pt"] <= report["budget_pt"])
    assert report["variants"][0]["agreement"] == 1.0 and report["variants"][0]["drop_pt"] == 0
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "report.md").read_text()
    assert "| fp32" in md and "Chosen: **" in md
    assert f"bundle: {out / 'bundle'}" in result.output


def test_golden_numbers_of_the_tiny_build(golden):
    """The numbers this build gave when it was reviewed (tiny BERT, seed 42, 30 test rows), with tolerances:
    one test row is 3.3 pt, so the metric may move by one row across library versions, not more."""
    report = json.loads((golden[0] / "report.json").read_text())
    fp32, int8 = report["variants"]
    assert (report["metric"], [v["name"] for v in report["variants"]]) == ("accuracy", ["fp32", "int8"])
    assert fp32["metric"] == pytest.approx(14 / 30, abs=1 / 30 + 1e-9)
    assert report["pytorch_fp32"]["metric"] == pytest.approx(fp32["metric"], abs=1e-9)  # the export is faithful
    assert int8["agreement"] >= 29 / 30 and abs(int8["metric"] - fp32["metric"]) <= 1 / 30 + 1e-9
    assert fp32["size_mb"] == pytest.approx(0.2, abs=0.02) and int8["size_mb"] == pytest.approx(0.16, abs=0.02)
    within = [v for v in report["variants"] if v["within_budget"]]
    assert report["chosen"] == min(within, key=lambda v: v["latency"]["p50_ms"])["name"]  # fastest within 1 pt
    assert report["why"].startswith(f"the fastest of {len(within)} variants within 1 pt of FP32")


def test_recipe_toml_is_written_and_reruns_to_the_same_recipe(golden, tmp_path):
    out, _ = golden
    r = load_recipe(out / "recipe.toml")
    assert r.fast and r.target == "arm64" and str(r.data.train).endswith("sst2_300.jsonl")
    (tmp_path / "again.toml").write_text(r.to_toml())
    assert load_recipe(tmp_path / "again.toml") == r


def test_changing_the_target_reruns_only_what_depends_on_it(golden, tiny_models, data_dir):
    out, _ = golden
    result = runner.invoke(app, build_args(tiny_models(), data_dir / "sst2_300.jsonl", out, "--target", "rpi5"))
    assert result.exit_code == 0, result.output
    assert "[train] cached" in result.output and "[export] cached" in result.output
    assert "[quantize-rpi5] running" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["recipe"]["target"] == "rpi5"


def test_an_interrupted_build_resumes_from_the_last_finished_stage(tiny_models, data_dir, tmp_path, golden):
    out = tmp_path / "b"
    cmd = [sys.executable, "-m", "edgeft", *build_args(tiny_models(), data_dir / "sst2_300.jsonl", out,
                                                        "--target", "arm64")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not list(out.glob("stages/train-*/.done")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9 in the middle of the next stage
    proc.wait()
    assert list((out / "stages").glob("train-*/.done")), "the train stage should have finished before the kill"
    assert not (out / "bundle").exists()
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "[train] cached" in resumed.stderr
    # Same data, seed and settings as the golden run: the same numbers come out.
    report = json.loads((out / "report.json").read_text())
    golden_report = json.loads((golden[0] / "report.json").read_text())
    assert [v["metric"] for v in report["variants"]] == pytest.approx(
        [v["metric"] for v in golden_report["variants"] if v["name"] in ("fp32", "int8")])


def test_distilled_and_trimmed_student_becomes_a_variant(tiny_models, data_dir, tmp_path):
    out = tmp_path / "b"
    args = ["build", "--model", str(tiny_models()), "--data", str(data_dir / "sst2_300.jsonl"), "--out", str(out),
            "--epochs", "1", "--max-train-samples", "200", "--distill", "1", "--trim-vocab", "on"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert [v["name"] for v in report["variants"]] == ["fp32", "int8", "student1-trim-int8"]
    student = next(v for v in report["variants"] if v["name"] == "student1-trim-int8")
    from edgeft.runtime.predictor import Predictor

    p = Predictor.load(student["bundle"])
    assert p.manifest.quantization and len(p.predict(["fine"])) == 1
    # Fewer layers and tokens than FP32. (Against the teacher's INT8 it depends on which candidate each search
    # picks: on this tiny model the student's fused-pc keeps fp32 embeddings that the teacher's -emb quantizes.)
    assert student["size_mb"] < report["variants"][0]["size_mb"]

    # 200 training rows is small data: the student learnt from 4 teacher-labelled variants of each, and the
    # vocabulary was trimmed to that transfer set, so the variants' new words keep their pieces.
    st = report["student"]
    t = st["transfer"]
    distilled = next((out / "stages").glob("distill-*"))
    rows = len((distilled / "data" / "train.jsonl").read_text().splitlines())
    assert st["augment"] == 4 and t["labeled"] == rows and 0 < t["augmented"] <= 4 * rows
    assert t["total"] == t["labeled"] + t["augmented"] and t["unlabeled"] == 0
    assert st["distill_pt"] == round(100 * (report["pytorch_fp32"]["metric"] - st["pytorch_metric"]), 2)
    assert st["trim_and_int8_pt"] == round(100 * (st["pytorch_metric"] - student["metric"]), 2)
    trim = json.loads(next((out / "stages").glob("trim-*/trim_report.json")).read_text())
    assert trim["corpus"].endswith("transfer.jsonl") and trim["corpus_rows"] == t["total"]
    assert trim["vocab"]["after"] < trim["vocab"]["before"]
    # The augmented words' pieces are capped so the student fits 1/8 of the FP32 teacher, and the report
    # says how many tokens it kept and how much of the test split now tokenizes differently.
    from edgeft.build import trim_cap

    teacher = next((out / "stages").glob("train-*"))
    assert trim["max_tokens"] == trim_cap(teacher, distilled)
    assert st["trim"] == {"vocab_before": trim["vocab"]["before"], "vocab_after": trim["vocab"]["after"],
                          "max_tokens": trim["max_tokens"], "test_changed": trim["test"]["changed_inputs"]}
    assert trim["test"]["rows"] == len((teacher / "data" / "test.jsonl").read_text().splitlines())
    md = (out / "report.md").read_text()
    assert f"{t['total']:,} transfer texts" in md and f"{trim['vocab']['after']:,} tokens" in md


def test_android_target_records_the_mobile_usability_check(tiny_models, data_dir, tmp_path):
    out = tmp_path / "android"
    result = runner.invoke(app, build_args(tiny_models(), data_dir / "sst2_300.jsonl", out, "--target", "android-arm64"))
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    check = report["mobile_check"]
    assert check["returncode"] == 0 and check["verdict"], check
    assert "mobile usability check" in (out / "report.md").read_text()
    int8 = next(v for v in report["variants"] if v["name"] == "int8")
    assert (Path(int8["bundle"]) / "model.ort").is_file()  # ORT-format model for ONNX Runtime Mobile
    assets = report["android"]  # the Android demo's assets, beside the bundle (a bundle themselves)
    assert assets["assets"] == str(out / "android") and assets["max_abs_diff_probs"] < 1e-4, assets
    assert (out / "android" / "text_model.onnx").is_file() and "Android demo assets" in (out / "report.md").read_text()


def test_dry_run_validates_and_prints_the_plan_without_writing(tiny_models, data_dir, tmp_path):
    result = runner.invoke(app, build_args(tiny_models(), data_dir / "sst2_300.jsonl", tmp_path / "o", "--dry-run"))
    assert result.exit_code == 0, result.output
    assert "the build would:" in result.output and "quantize to INT8 for arm64" in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, message", [
    (["--target", "pdp11"], "target 'pdp11' is unknown; choose one of: arm64"),
    (["--max-accuracy-drop", "2"], "--max-accuracy-drop must be in [-1, 1] (got 2.0)"),
    (["--distill", "many"], "distill must be auto, off or a number of layers"),
    (["--data", "nope.csv"], "nope.csv: no such file"),
    (["--set", "train.warmup=2"], "--warmup must be in [0, 1) (got 2)"),
    (["--set", "train.epoch=2"], "[train] epoch: unknown (did you mean [train] epochs?)"),
    (["--set", "maxgradnorm"], "write section.key=value"),
])
def test_bad_input_fails_before_any_training(tmp_path, args, message):
    started = time.perf_counter()
    result = runner.invoke(app, ["build", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert time.perf_counter() - started < 20 and not (tmp_path / "o").exists()


def test_invalid_recipe_key_names_the_valid_ones(tmp_path):
    (tmp_path / "r.toml").write_text('target = "rpi4"\nepochz = 3\n')
    with pytest.raises(ConfigError, match=r"epochz: unknown key \(did you mean \[train\] epochs\?\)"):
        load_recipe(tmp_path / "r.toml")
    (tmp_path / "r.toml").write_text('[quantize]\ntarget = "rpi4"\n')
    with pytest.raises(ConfigError, match=r"\[quantize\] target: the build sets it from target; remove it here"):
        load_recipe(tmp_path / "r.toml")


def test_recipe_round_trip_and_precedence(tmp_path):
    r = Recipe(target="rpi4", distill_layers="3", max_accuracy_drop=0.005, model="/m", fast=True,
               train=TrainConfig(max_grad_norm=0.0, warmup=0.1))
    (tmp_path / "r.toml").write_text(r.to_toml("header"))
    assert load_recipe(tmp_path / "r.toml") == r
    assert load_recipe(tmp_path / "r.toml", {"target": "rpi5"}).target == "rpi5"  # CLI > recipe
    assert load_recipe(tmp_path / "r.toml", sets=["train.lr=1e-4"]).train.lr == 1e-4  # --set > recipe
    assert load_recipe(tmp_path / "r.toml", {"train": {"lr": 2e-4}}, sets=["train.lr=1e-4"]).train.lr == 2e-4
    assert load_recipe(None) == Recipe()  # defaults


def test_a_flat_recipe_of_edgeft_0_1_still_loads(tmp_path):
    (tmp_path / "old.toml").write_text('target = "rpi5"\nepochs = 8.0\nlr = 1.5e-4\nquantize_mode = "static"\n'
                                       'data = "d.jsonl"\ndistill = "off"\n')
    r = load_recipe(tmp_path / "old.toml")
    assert (r.target, r.train.epochs, r.train.lr, r.quantize.mode) == ("rpi5", 8.0, 1.5e-4, "static")
    assert (str(r.data.train), r.distill_layers) == ("d.jsonl", "off")


def test_shipped_recipes_load_and_hold_only_what_differs_from_the_defaults(tmp_path):
    """The recipes' header says so; this keeps it true (the bare-build recipe states the defaults)."""
    import tomllib

    from edgeft.cli.build import recipes_dir
    from edgeft.recipe import SECTIONS, is_flat

    result = runner.invoke(app, ["recipes", "list"])
    assert result.exit_code == 0 and "minilm_sst2_arm64" in result.output
    default = Recipe()
    paths = sorted(recipes_dir().glob("*.toml"))
    assert len(paths) == 3
    for path in paths:
        values = tomllib.loads(path.read_text())
        r = load_recipe(path)
        assert not is_flat(values), f"{path.name} is in the flat 0.1 format"
        if path.stem == "minilm_sst2_arm64":  # "what `edgeft build --target arm64` runs with no other flags"
            assert r == default
            continue
        for key, value in values.items():
            if key in SECTIONS:
                for name in value:
                    assert getattr(r, key).__getattribute__(name) != getattr(getattr(default, key), name), (path, name)
            else:
                assert getattr(r, key) != getattr(default, key), (path, key)
    copied = runner.invoke(app, ["recipes", "cp", "minilm_sst2_arm64", str(tmp_path)])
    assert copied.exit_code == 0 and (tmp_path / "minilm_sst2_arm64.toml").is_file()


def test_a_recipes_training_section_reaches_the_training_stage(tiny_models, data_dir, tmp_path):
    (tmp_path / "r.toml").write_text("[train]\nmax_grad_norm = 0\nwarmup = 0.2\npatience = 5\n"
                                     'precision = "fp32"\nmax_train_samples = 120\n')
    out = tmp_path / "b"
    result = runner.invoke(app, build_args(tiny_models(), data_dir / "sst2_300.jsonl", out, "--recipe",
                                           tmp_path / "r.toml", "--target", "x86_64"))
    assert result.exit_code == 0, result.output
    expected = {"max_grad_norm": 0.0, "warmup": 0.2, "patience": 5, "precision": "fp32"}
    (config,) = out.glob("stages/train-*/train_config.json")
    recorded = json.loads(config.read_text())
    assert {k: recorded[k] for k in expected} == expected
    resolved = load_recipe(out / "recipe.toml").train
    assert {k: getattr(resolved, k) for k in expected} == expected
