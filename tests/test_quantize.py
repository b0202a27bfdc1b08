"""``edgeft quantize``: every mode runs and records consistent numbers; the search and its verdict;
presets that add artifacts; bad input. Tiny random models score near chance — what is checked is
that the numbers are recorded and agree with each other and with the runtime."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgeft.stage import Splits
from typer.testing import CliRunner

from edgeft.compress.export import export
from edgeft.compress.quantize import SPEED_TIE, Candidate, QuantizeConfig, _fake_quant, choose, quantize
from edgeft.errors import BundleError, ConfigError, DataError, ModelError
from edgeft.runtime.manifest import file_digest

FAST = {"timing_rounds": 1, "timing_calls": 3}  # timing is exercised, not measured, in tests


@pytest.fixture(scope="module")
def fp32(tiny_models, tmp_path_factory):
    """(task) → FP32 bundle of a tiny BERT, exported once."""
    root = tmp_path_factory.mktemp("fp32")
    done = {}

    def get(task: str = "text-classification", arch: str = "bert") -> Path:
        if (arch, task) not in done:
            done[arch, task] = export(tiny_models(arch, task), root / f"{arch}-{task}").bundle
        return done[arch, task]

    return get


def data_for(data_dir: Path, task: str) -> Path:
    return data_dir / ("wnut17_200.jsonl" if task == "token-classification" else "sst2_300.jsonl")


def runtime_predictions(bundle: Path, data: Path, task: str) -> list:
    """Labels (or per-word tags) the device runtime gives for ``data`` at batch 1."""
    from edgeft.data import read_dataset
    from edgeft.runtime.predictor import Predictor

    p = Predictor.load(bundle, threads=1, batch_size=1)
    ds = read_dataset(data, task=task)
    if task == "token-classification":
        return [tags for tags, _ in p.tag_words([ex.tokens for ex in ds.examples])]
    return [x.label for x in p.predict([ex.text for ex in ds.examples])]


def check_consistent(result, bundle: Path, data: Path, task: str, fp32_bundle: Path | None = None) -> None:
    """Manifest, table and runtime tell the same story."""
    from edgeft.compress.evaluate import agreement

    m = json.loads((bundle / "edgeft.json").read_text())
    for name, digest in m["files"].items():
        assert file_digest(bundle / name) == digest
    metrics = m["metrics"]
    assert metrics["drop"] == metrics["fp32"]["value"] - metrics["variant"]["value"]
    assert metrics["variant"] == result.chosen.metrics and metrics["agreement"] == result.chosen.agreement
    assert set(metrics["latency_ms"]) == {"p50", "p90", "p99", "mean", "n"} and metrics["latency_ms"]["p50"] > 0
    assert m["quantization"]["candidate"] == result.chosen.name
    table = json.loads((bundle / "candidates.json").read_text())
    assert table["chosen"] == result.chosen.name and table["verdict"] == result.verdict
    assert [c["name"] for c in table["candidates"]] == [c.name for c in result.candidates]
    # the written model scores, through the runtime, exactly what the search recorded …
    got = runtime_predictions(bundle, data, task)
    assert got == result.chosen.predictions
    # … and its agreement with FP32 is the one recomputed from FP32's own predictions
    if fp32_bundle is not None:
        assert agreement(got, runtime_predictions(fp32_bundle, data, task)) == pytest.approx(metrics["agreement"])


@pytest.mark.parametrize("mode, task", [("dynamic", "text-classification"), ("static", "text-classification"),
                                        ("dynamic", "token-classification"), ("static", "token-classification")])
def test_each_mode_records_consistent_numbers(fp32, data_dir, tmp_path, mode, task):
    data = data_for(data_dir, task)
    r = quantize(fp32(task), tmp_path / "q", Splits(validation=data), QuantizeConfig(target="rpi5", mode=mode, **FAST))
    assert [c.name for c in r.candidates] == [mode] and r.chosen.status == "ok"
    q = r.manifest.quantization
    assert q["mode"] == mode and q["weight_type"] == "int8" and q["per_channel"] is True
    assert q["activation_type"] == ("int8" if mode == "static" else "uint8")  # rpi5: s8s8 static, u8 dynamic
    assert q["calibration_rows"] == (128 if mode == "static" else 0)
    assert r.manifest.target["name"] == "rpi5" and r.manifest.parity["passed"]  # parity carried over from export
    assert r.verdict == "budget met" if r.budget_met else r.verdict.startswith("not met: best is ")
    check_consistent(r, r.bundle, data, task, fp32(task))


def test_auto_search_from_a_model_folder_when_budget_cannot_be_met(tiny_models, data_dir, tmp_path):
    """--max-accuracy-drop -1 cannot be met: the verdict says so and the best bundle is still written."""
    data = data_for(data_dir, "text-classification")
    cfg = QuantizeConfig(target="x86_64-vnni", max_accuracy_drop=-1, **FAST)
    r = quantize(tiny_models("bert", "text-classification"), tmp_path / "q", Splits(validation=data), cfg)
    names = [c.name for c in r.candidates]
    assert names[:11] == ["dyn-pc", "dyn-pt", "dyn-pc-gather", "dyn-pc-basic-gather", "dyn-pt-basic-gather",
                          "static-pc", "fused-pc", "fused-pc-emb", "fused-ln-emb", "legacy-pc", "legacy-pc-gather"]
    assert all(c.status == "ok" for c in r.candidates), [(c.name, c.status) for c in r.candidates]
    assert not r.budget_met and r.verdict.startswith("not met: best is ") and r.verdict.endswith(" pt")
    # the sensitivity pass ran and its candidates keep the most sensitive weights in float
    table = json.loads((r.bundle / "candidates.json").read_text())
    sqnr = [s["sqnr_db"] for s in table["sensitivity"]]
    assert sqnr == sorted(sqnr) and len(sqnr) == 14  # 2 layers × 6 weight MatMuls + pooler + classifier
    skips = [c for c in r.candidates if "-skip" in c.name]
    assert skips and skips[0].recipe["exclude"] == [table["sensitivity"][0]["weight"]]
    # the chosen one is the most accurate (the budget being out of reach), then the fastest
    best = min(c.drop for c in r.candidates)
    assert r.chosen.drop == best
    assert r.chosen.latency_ms["p50"] == min(c.latency_ms["p50"] for c in r.candidates if c.drop == best)
    size = {c.name: c.size_bytes for c in r.candidates}
    assert size["dyn-pc-gather"] < size["dyn-pc"] < r.fp32.size_bytes  # int8 embeddings shrink the file further
    assert size["fused-pc-emb"] < size["fused-pc"]
    check_consistent(r, r.bundle, data, "text-classification")


def test_recipes_do_what_they_say(tiny_models, data_dir, tmp_path):
    """Op sets and graphs of the auto candidates, checked in the written graphs."""
    import onnx

    from edgeft.compress.quantize import RECIPES, Recipe, build, open_source
    from edgeft.targets import get_target

    cfg = QuantizeConfig()
    source = open_source(tiny_models("bert", "text-classification"), tmp_path, cfg, get_target("x86_64-vnni"), [],
                         lambda m: None)
    calib = []

    def ops(recipe: Recipe) -> dict:
        out = build(recipe, get_target("x86_64-vnni"), source, tmp_path / f"{recipe.name}.onnx", calib)
        graph = onnx.load(str(out)).graph
        counts: dict = {}
        for n in graph.node:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
        return counts

    plain = ops(RECIPES["dyn-pc"])
    assert plain["MatMulInteger"] == 14 and plain["MatMul"] == 4  # 4 attention act×act MatMuls stay float
    gather = ops(RECIPES["dyn-pc-gather"])
    assert gather.get("DequantizeLinear", 0) >= 3  # word, position, type embeddings stored as int8
    excluded = ops(Recipe("x", "dynamic", True, exclude=("classifier.weight",)))
    assert excluded["MatMulInteger"] == 13  # the classifier Gemm stayed float
    basic = ops(RECIPES["dyn-pt-basic-gather"])
    assert basic["MatMulInteger"] == 14 and "MatMul" in basic
    legacy = ops(RECIPES["legacy-pc"])  # TorchScript export + basic pre-pass, INC's graph
    assert legacy["MatMulInteger"] == 14 and "DequantizeLinear" not in legacy
    legacy_gather = ops(RECIPES["legacy-pc-gather"])
    assert legacy_gather["MatMulInteger"] == 14 and legacy_gather.get("DequantizeLinear", 0) >= 3
    fused = ops(RECIPES["fused-pc"])  # legacy export → ORT optimizer → QAttention
    assert fused["QAttention"] == 2 and fused.get("EmbedLayerNormalization") == 1 and "Attention" not in fused
    fused_emb = ops(RECIPES["fused-pc-emb"])
    assert fused_emb["QEmbedLayerNormalization"] == 1 and "EmbedLayerNormalization" not in fused_emb
    fused_ln = ops(RECIPES["fused-ln-emb"])  # attention fused, residual Add + LayerNorm left apart
    assert fused_ln["QAttention"] == 2 and fused_ln["LayerNormalization"] == 4 and "SkipLayerNormalization" not in fused_ln


def test_android_preset_ships_an_ort_format_model_and_zip(fp32, data_dir, tmp_path):
    import onnxruntime as ort

    data = data_for(data_dir, "text-classification")
    r = quantize(fp32(), tmp_path / "q", Splits(validation=data), QuantizeConfig(target="android-arm64", mode="dynamic",
                                                         zipped=True, **FAST))
    assert r.bundle == tmp_path / "q.zip"
    names = zipfile.ZipFile(r.bundle).namelist()
    assert sorted(names) == ["candidates.json", "edgeft.json", "model.onnx", "model.ort", "tokenizer.json"]
    m = json.loads(zipfile.ZipFile(r.bundle).read("edgeft.json"))
    assert m["target"]["artifacts"] == {"ort": "model.ort"} and "model.ort" in m["files"]
    folder = tmp_path / "unzipped"
    zipfile.ZipFile(r.bundle).extractall(folder)
    sess = ort.InferenceSession(str(folder / "model.ort"), providers=["CPUExecutionProvider"])
    feeds = {"input_ids": np.array([[2, 10, 11, 3]], dtype=np.int64), "attention_mask": np.ones((1, 4), np.int64)}
    np.testing.assert_allclose(sess.run(None, feeds)[0],
                               ort.InferenceSession(str(folder / "model.onnx")).run(None, feeds)[0], atol=1e-5)


@pytest.mark.parametrize("arch, task, mode", [("gpt2", "token-classification", "static"),
                                              ("distilbert", "text-classification", "auto")])
def test_other_architectures_from_model_folders(tiny_models, data_dir, tmp_path, arch, task, mode):
    data = data_for(data_dir, task)
    r = quantize(tiny_models(arch, task), tmp_path / "q", Splits(validation=data), QuantizeConfig(target="rpi4", mode=mode, **FAST))
    ok = [c for c in r.candidates if c.status == "ok"]
    assert ok and all(c.status == "ok" or c.status.startswith("skipped") for c in r.candidates)
    for c in ok:  # drop and agreement are derived from the FP32 reference on the same rows
        assert c.drop == r.fp32.metrics["value"] - c.metrics["value"] and 0 <= c.agreement <= 1
        assert c.metrics["n"] == r.fp32.metrics["n"] == (200 if task == "token-classification" else 300)
    check_consistent(r, r.bundle, data, task)


def test_choose_prefers_fastest_within_budget():
    def cand(name, drop, p50, size=1, ok=True):
        c = Candidate(name, {}, status="ok" if ok else "failed: x", drop=drop, size_bytes=size,
                      latency_ms={"p50": p50}, meets_budget=drop <= 0.005)
        return c

    a, b, c, d = cand("a", 0.001, 2.0), cand("b", 0.004, 1.0), cand("c", 0.02, 0.5), cand("d", 0.0, 1.01, size=0)
    assert choose([a, b, c]) == (b, True)  # fastest within budget; c is faster but over budget
    assert choose([a, b, c, d]) == (d, True)  # d is within 3 % of b and smaller
    big, small = cand("big", 0.0, 1.0, size=60), cand("small", 0.003, 1.02, size=23)
    assert choose([big, small]) == (small, True)  # a near-tie goes to the smaller file, both within budget
    e = cand("e", 0.01, 3.0)
    assert choose([c, e]) == (e, False)  # none within budget: the most accurate, though slower
    assert choose([cand("f", 0, 1, ok=False)]) == (None, False)


def test_fake_quant_matches_int8_grids():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 8)).astype(np.float32)
    wq = _fake_quant(w, -127, 127, 1, symmetric=True)  # per output channel (axis 1)
    step = np.abs(w).max(axis=0) / 127
    assert np.all(np.abs(w - wq) <= step / 2 + 1e-7)
    assert len(np.unique(np.round(wq[:, 0] / step[0]))) <= 255
    x = rng.normal(size=(5, 16)).astype(np.float32) + 3  # all positive: the range still includes 0
    xq = _fake_quant(x, 0, 255, None, symmetric=False)
    assert np.abs(x - xq).max() <= (x.max() - 0) / 255 / 2 + 1e-6


def already_quantized(fp32_bundle: Path, data: Path, tmp_path: Path) -> Path:
    return quantize(fp32_bundle, tmp_path / "int8", Splits(validation=data), QuantizeConfig(target="rpi5", mode="dynamic",
                                                                  **FAST)).bundle


def broken_checker_bundle(src: Path, tmp_path: Path) -> Path:
    """A bundle whose hashes are right but whose model fails onnx.checker (a node reads a missing tensor)."""
    import onnx

    dst = tmp_path / "broken"
    shutil.copytree(src, dst)
    model = onnx.load(str(dst / "model.onnx"))
    model.graph.node[0].input[0] = "does_not_exist"
    onnx.save(model, str(dst / "model.onnx"))
    m = json.loads((dst / "edgeft.json").read_text())
    m["files"]["model.onnx"] = file_digest(dst / "model.onnx")
    (dst / "edgeft.json").write_text(json.dumps(m))
    return dst


def test_bad_inputs_have_exact_messages(fp32, data_dir, tmp_path):
    sst2 = data_for(data_dir, "text-classification")
    neutral = tmp_path / "neutral.jsonl"
    neutral.write_text('{"text": "fine", "label": "positive"}\n{"text": "meh", "label": "neutral"}\n')
    cls, ner = fp32(), fp32("token-classification")
    int8 = already_quantized(cls, sst2, tmp_path)
    broken = broken_checker_bundle(cls, tmp_path)
    cases = [
        (ner, sst2, DataError,
         f"{sst2} holds text-classification rows but the model does token-classification; pass a JSONL/CoNLL file "
         f"with tokens and tags."),
        (cls, neutral, DataError,
         f"{neutral}:2: label 'neutral' does not occur in the model's labels (known: negative, positive). Fix the "
         f"label or add examples of it to the training data."),
        (int8, sst2, ConfigError,
         f"{int8} is already quantized (dynamic); pass the FP32 bundle from `edgeft export` or the model folder."),
        (broken, sst2, BundleError, None),
        (data_dir, sst2, ModelError,
         f"{data_dir} is neither a model folder (config.json) nor an edgeft bundle (edgeft.json)."),
        (tmp_path / "nope", sst2, ModelError,
         f"{tmp_path / 'nope'}: no such folder or file; pass a fine-tuned model folder or an FP32 bundle."),
    ]
    for source, data, error, message in cases:
        with pytest.raises(error) as e:
            quantize(source, tmp_path / "out", Splits(validation=data), QuantizeConfig(target="rpi5", mode="dynamic", **FAST))
        if message is None:  # onnx's own wording follows the colon; ours frames it
            assert str(e.value).startswith(f"{broken}/model.onnx fails onnx.checker: ")
            assert str(e.value).endswith(". Re-export the model.")
        else:
            assert str(e.value) == message
        assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError) as e:
        QuantizeConfig(mode="fast")
    assert str(e.value) == "--mode must be one of auto | dynamic | static (got 'fast')"
    with pytest.raises(ConfigError) as e:
        QuantizeConfig(max_accuracy_drop=5)
    assert str(e.value) == "--max-accuracy-drop must be in [-1, 1] (got 5)"


def test_cli_quantize(fp32, data_dir, tmp_path):
    from edgeft.cli import app

    data = data_for(data_dir, "text-classification")
    result = CliRunner().invoke(app, ["quantize", str(fp32()), "--target", "x86_64", "--data", str(data),
                                      "--mode", "dynamic", "--out", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["candidate", "mode", "graph"]
    assert lines[1].split()[0] == "fp32" and lines[2].split()[:2] == ["*", "dynamic"]
    assert any(line.startswith("  chosen      dynamic: accuracy ") and "% (FP32 " in line for line in lines)
    assert lines[-1] in ("verdict: budget met (max drop 1.0 pt)",) or lines[-1].startswith("verdict: not met: best is ")
    assert "[1/1] dynamic" in result.stderr and "Traceback" not in result.output
    table = json.loads((tmp_path / "q" / "candidates.json").read_text())
    assert table["target"]["name"] == "x86_64" and table["candidates"][0]["name"] == "dynamic"
    failed = CliRunner().invoke(app, ["quantize", str(fp32()), "--data", str(data), "--mode", "fast", "--out",
                                      str(tmp_path / "q2")])
    assert failed.exit_code == 2 and failed.stderr == "error: --mode must be one of auto | dynamic | static (got 'fast')\n"


def test_auto_search_keeps_the_fastest_within_budget(fp32, data_dir, tmp_path):
    data = data_for(data_dir, "text-classification")
    r = quantize(fp32(), tmp_path / "q", Splits(validation=data), QuantizeConfig(target="x86_64-avx2", max_accuracy_drop=1.0,
                                                         **FAST))
    assert r.budget_met and r.verdict == "budget met" and not any("-skip" in c.name for c in r.candidates)
    ok = [c for c in r.candidates if c.status == "ok"]
    assert r.chosen.latency_ms["p50"] <= SPEED_TIE * min(c.latency_ms["p50"] for c in ok)  # fastest, up to a tie
    skipped = {c.name: c.status for c in r.candidates if c.status != "ok"}
    assert skipped == {name: "skipped: needs the model folder (a bundle has no PyTorch weights to re-export)"
                       for name in ("fused-pc", "fused-pc-emb", "fused-ln-emb", "legacy-pc", "legacy-pc-gather")}
    u8u8 = next(c for c in r.candidates if c.name == "dyn-pc-u8u8")  # AVX2 targets also try u8 weights
    assert u8u8.status == "ok" and u8u8.recipe["weight_type"] == "uint8" and u8u8.recipe["reduce_range"] is False
    assert r.manifest.quantization["reduce_range"] is (r.chosen.name != "dyn-pc-u8u8")


def test_recipe_registry_refuses_bad_wiring():
    from edgeft.compress.quantize import RECIPES, Recipe, register_recipe

    before = dict(RECIPES)
    with pytest.raises(ConfigError) as e:
        register_recipe(Recipe("dyn-pc", "dynamic", True))
    assert str(e.value) == "recipe 'dyn-pc' is already registered; pick another name."
    with pytest.raises(ConfigError) as e:
        Recipe("x", "dynamic", True, ops=("MatMul", "Conv"))
    assert str(e.value) == ("recipe 'x': unknown op types ['Conv']; choose from ('MatMul', 'Gemm', 'Gather', "
                            "'Attention', 'EmbedLayerNormalization').")
    with pytest.raises(ConfigError) as e:
        Recipe("y", "static", True, graph="fused")
    assert str(e.value) == "recipe 'y': the fused graph is quantized dynamically (QAttention)."
    assert RECIPES == before
