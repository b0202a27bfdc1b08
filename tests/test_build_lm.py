"""`edgeft build` for text generation on a tiny random Llama: the variants, the choice within the budget,
the report, a verified bundle that generates, cached stages on a rerun, the dry-run plan, bad input."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from tiny_models import make_tiny_lm, repeat_pairs
from typer.testing import CliRunner

from edgeft.build_lm import LMVariant, choose_lm, judge
from edgeft.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def lm_build(tmp_path_factory):
    """One real `edgeft build --fast` of a tiny Llama on 40 pairs (task detected from the data)."""
    root = tmp_path_factory.mktemp("build_lm")
    model, data = make_tiny_lm(root / "llama"), repeat_pairs(root / "pairs.jsonl")
    args = ["build", "--model", str(model), "--data", str(data), "--out", str(root / "out"), "--fast",
            "--set", "train.lr=0.03", "--set", "train.precision=fp32", "--target", "rpi5"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return root / "out", args, result


def test_build_makes_three_variants_and_keeps_the_fastest_within_budget(lm_build):
    out, _, result = lm_build
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "text-generation" and report["metric"] == "f1"
    assert [v["name"] for v in report["variants"]] == ["fp32", "int8", "int4"]
    fp32 = report["variants"][0]
    assert (fp32["drop_pt"], fp32["agreement"], fp32["within_budget"]) == (0, 1.0, True)
    for v in report["variants"]:
        assert v["perplexity"] > 1 and v["size_mb"] > 0 and 0 <= v["agreement"] <= 1 and 0 <= v["f1"] <= 1
        assert v["bench"]["decode_tokens_per_s"] > 0 and v["bench"]["ttft_ms"] > 0 and v["bench"]["threads"] >= 1
        assert v["within_budget"] == (v["drop_pt"] <= report["budget_pt"]) and v["parity"]["pytorch"]["greedy_identical"] == 4
        manifest = json.loads((Path(v["bundle"]) / "edgeft.json").read_text())
        assert manifest["quantization"].get("weights", "fp32") == v["name"]
    within = [v for v in report["variants"] if v["within_budget"]]
    assert report["chosen"] == max(within, key=lambda v: v["bench"]["decode_tokens_per_s"])["name"]
    assert report["why"].startswith(f"the fastest of {len(within)} variants within 1 pt of FP32's token F1")
    assert report["pytorch_fp32"]["generated"] == 4 and report["recipe"]["target"] == "rpi5"
    md = (out / "report.md").read_text()
    assert "| fp32" in md and "| int4" in md and "Chosen: **" in md and "token F1" in md
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert f"bundle: {out / 'bundle'}" in result.output


def test_the_bundle_is_verified_and_generates_without_torch_state(lm_build):
    from edgeft.runtime.generate import Generator

    out, _, _ = lm_build
    g = Generator.load(out / "bundle")  # verifies every file's hash, model.onnx.data included
    reply = g.generate([{"role": "user", "content": "repeat film"}], max_new_tokens=4)
    assert len(reply.token_ids) >= 1
    from edgeft.recipe import load_recipe

    r = load_recipe(out / "recipe.toml")  # the resolved recipe reruns the build
    assert r.fast and r.train.lr == 0.03 and r.target == "rpi5"
    # what the recipe left at TrainConfig's defaults, the build trains with the measured LoRA settings (LM_TRAIN)
    ran = json.loads(next((out / "stages").glob("train-*/train_config.json")).read_text())
    assert (ran["group_by_length"], ran["batch_size"], ran["lora_dropout"], ran["lr"]) == (True, 8, 0.0, 0.03)


def test_a_rerun_reuses_every_finished_stage_and_a_stricter_budget_rejects_int8_and_int4(lm_build):
    out, args, _ = lm_build
    shutil.rmtree(next((out / "stages").glob("export-lm-int4-*")))  # as if the build died during INT4
    result = runner.invoke(app, [*args, "--max-accuracy-drop", "-0.5"])
    assert result.exit_code == 0, result.output
    assert "[train] cached" in result.output and "[export-lm-fp32] cached" in result.output
    assert "[export-lm-int8] cached" in result.output and "[export-lm-int4] running" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["chosen"] == "fp32" and not any(v["within_budget"] for v in report["variants"][1:])
    assert "over budget: int8 (token F1" in report["why"] and "int4 (token F1" in report["why"]
    assert "(over budget)" in (out / "report.md").read_text()


def test_dry_run_prints_the_generative_plan_and_writes_nothing(lm_build, tmp_path):
    _, args, _ = lm_build
    out = args.index("--out") + 1
    result = runner.invoke(app, [*args[:out], str(tmp_path / "o"), *args[out + 1:], "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "export FP32, INT8 and INT4 decoders" in result.output and "within 1 pt of FP32's token F1" in result.output
    assert "LoRA r=16, 1 epoch, lr 0.03" in result.output and not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra, message", [
    (["--distill", "1"], "--distill 1: distillation makes encoder students; a text-generation build does not distill"),
    (["--trim-vocab", "on"], "--trim-vocab on: vocabulary trimming handles encoders only"),
    (["--target", "android-arm64"], "--target android-arm64: the Android demo runs encoder bundles"),
    (["--zip"], "--zip: a text-generation bundle keeps its weights in model.onnx.data"),
])
def test_encoder_only_settings_are_refused_before_any_training(lm_build, tmp_path, extra, message):
    _, args, _ = lm_build
    out = args.index("--out") + 1
    started = time.perf_counter()
    result = runner.invoke(app, [*args[:out], str(tmp_path / "o"), *args[out + 1:], *extra])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert time.perf_counter() - started < 20 and not (tmp_path / "o").exists()


def variant(name, f1=None, ppl=10.0, speed=10.0, size=100.0):
    return LMVariant(name, Path(name), name, size_mb=size, perplexity=ppl, f1=f1, bench={"decode_tokens_per_s": speed})


@pytest.mark.parametrize("f1s, ppls, budget, chosen, why", [
    # token F1 (prompt/response data): INT4 3 pt below FP32 misses a 1 pt budget, INT8 is the fastest left
    ((0.50, 0.495, 0.47), None, 0.01, "int8", "over budget: int4 (token F1 47.00 is 3.00 pt below FP32's 50.00 (budget 1 pt))"),
    ((0.50, 0.495, 0.47), None, 0.05, "int4", "within 5 pt of FP32's token F1: 3.00x FP32's decode speed at -3.00 pt"),
    # plain text: perplexity growth in %
    (None, (10.0, 10.05, 11.0), 0.01, "int8", "over budget: int4 (perplexity 11.000 is +10.00 % of FP32's 10.000"),
    (None, (10.0, 10.2, 11.0), 0.01, "fp32", "over budget: int8 (perplexity 10.200 is +2.00 %"),
])
def test_the_budget_verdict_and_the_choice(f1s, ppls, budget, chosen, why):
    from edgeft.recipe import Recipe

    vs = [variant(n, f1s[i] if f1s else None, ppls[i] if ppls else 10.0, speed=10.0 * (i + 1))
          for i, n in enumerate(("fp32", "int8", "int4"))]
    for v in vs:
        judge(v, vs[0], budget)
    best, text = choose_lm(vs, Recipe(max_accuracy_drop=budget))
    assert best.name == chosen and why in text


def test_int4_keeps_the_lora_adapter_as_a_4bit_branch(lm_build):
    out, _, _ = lm_build
    report = json.loads((out / "report.json").read_text())
    int4 = next(v for v in report["variants"] if v["name"] == "int4")
    manifest = json.loads((Path(int4["bundle"]) / "edgeft.json").read_text())
    # 2 layers x (packed qkv, o, gate, up, down): every projection LoRA touched
    assert manifest["quantization"]["adapter"] == "int4 branch on 10 projections"


def test_splitting_the_adapter_back_out_leaves_the_fp32_graph_unchanged(lm_build, tmp_path):
    import numpy as np
    import onnx
    from onnx import numpy_helper as nh

    from edgeft.compress.export_lm import _generator
    from edgeft.compress.lora_branch import read_adapter, split_adapter

    out, _, _ = lm_build
    train = next((out / "stages").glob("train-*"))
    fp32 = Path(next(v for v in json.loads((out / "report.json").read_text())["variants"] if v["name"] == "fp32")["bundle"])
    model = onnx.load(str(fp32 / "model.onnx"))
    branches = split_adapter(model, train, read_adapter(train))
    assert len(branches) == 20 and sum(n.op_type == "Add" and n.name.endswith("/AddLora") for n in model.graph.node) == 10
    # the update really left the 4-bit-bound weight: the base differs from the merged one
    name = "model.layers.0.attn.qkv_proj.MatMul.weight"
    base = next(nh.to_array(i) for i in model.graph.initializer if i.name == name)
    merged = next(nh.to_array(i) for i in onnx.load(str(fp32 / "model.onnx")).graph.initializer if i.name == name)
    assert np.abs(base - merged).max() > 1e-4
    onnx.save(model, str(tmp_path / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
    spec = json.loads((fp32 / "edgeft.json").read_text())["generation"]
    before, after = (_generator(p, spec, fp32 / "tokenizer.json") for p in (fp32 / "model.onnx", tmp_path / "model.onnx"))
    ids = before.tokenizer.encode("repeat film repeat plot the movie").ids
    a, b = before.forward(ids, before.empty_cache())[0], after.forward(ids, after.empty_cache())[0]
    # and the split graph computes what the merged one did
    assert np.abs(a - b).max() < 1e-4 * max(1.0, np.abs(a).max())
