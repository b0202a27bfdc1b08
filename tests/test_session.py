"""edgeft.runtime.session: one place decides how a model is run, so the quantize search measures a
candidate with the very session options its bundle is served with, and the target preset's
threads and graph-optimization level reach the runtime through the manifest."""

from __future__ import annotations

import json

import pytest

from edgeft.stage import Splits

from bundles import copy_bundle, rewrite_manifest
from edgeft.compress import quantize as q
from edgeft.compress.quantize import RECIPES, QuantizeConfig
from edgeft.runtime.predictor import Predictor
from edgeft.runtime.session import SessionSettings, batching_of, options_of, physical_cores, settings_for

pytest_plugins = ["bundles"]
FAST = {"timing_rounds": 1, "timing_calls": 3}


def test_a_candidate_is_timed_with_the_session_its_bundle_is_served_with(tiny_models, data_dir, tmp_path, monkeypatch):
    """android-arm64 (graph optimization "basic") and fused-ln-emb (SkipLayerNormFusion disabled, dynamic INT8):
    every setting that differs from the defaults must reach both sessions."""
    monkeypatch.setattr(q, "plan", lambda cfg, target: [RECIPES["fused-ln-emb"]])
    r = q.quantize(tiny_models("bert", "text-classification"), tmp_path / "q",
                   Splits(validation=data_dir / "sst2_300.jsonl"), QuantizeConfig(target="android-arm64", **FAST))
    served = Predictor.load(r.bundle, threads=1)  # the search times at 1 thread
    assert r.chosen.name == "fused-ln-emb"
    assert r.chosen.settings == served.settings == SessionSettings(
        threads=1, graph_optimization="basic", disabled_optimizers=("SkipLayerNormFusion",), batching="rows")
    assert options_of(r.chosen.session) == options_of(served.session)  # as onnxruntime reports them
    assert options_of(served.session)["graph_optimization_level"] == "GraphOptimizationLevel.ORT_ENABLE_BASIC"
    manifest = json.loads((r.bundle / "edgeft.json").read_text())
    assert manifest["batching"] == "rows" and manifest["target"]["graph_optimization"] == "basic"
    # FP32, the reference of the search, is measured as an FP32 bundle for this target would be
    assert r.fp32.settings == SessionSettings(threads=1, graph_optimization="basic", batching="padded")


def test_the_target_threads_and_graph_level_in_the_manifest_are_the_runtime_defaults(cls_bundle, tmp_path):
    bundle = copy_bundle(cls_bundle, tmp_path / "b")
    rewrite_manifest(bundle, target={"name": "rpi4", "threads": 64, "graph_optimization": "extended"})
    p = Predictor.load(bundle)
    assert p.threads == p.settings.threads == physical_cores()  # 64 capped: more threads than cores only contend
    assert options_of(p.session)["intra_op_num_threads"] == physical_cores()
    assert options_of(p.session)["graph_optimization_level"] == "GraphOptimizationLevel.ORT_ENABLE_EXTENDED"
    assert Predictor.load(bundle, threads=1).settings.threads == 1  # the caller's count wins
    rewrite_manifest(bundle, target={"name": "x86_64", "threads": 0})
    assert Predictor.load(bundle).threads == max(1, min(4, physical_cores()))  # 0: physical cores, at most 4


@pytest.mark.parametrize("quantization, recorded, batching", [
    ({}, "", "padded"),  # FP32 written before the field existed
    ({"mode": "static"}, "", "padded"),  # QDQ: fixed scales
    ({"mode": "dynamic"}, "", "rows"),  # one activation scale over the whole input tensor
    ({"mode": "dynamic"}, "padded", "padded"),  # a recorded field wins
])
def test_batching_is_read_from_the_manifest_or_inferred_from_the_quantization(cls_bundle, quantization, recorded,
                                                                              batching):
    from edgeft.runtime.bundle import load_bundle

    m = load_bundle(cls_bundle).manifest
    m.quantization, m.batching = quantization, recorded
    assert batching_of(m) == batching == settings_for(m).batching


def test_unknown_settings_are_refused_with_the_fix():
    with pytest.raises(Exception, match=r"batching 'by-length' is not one of \('padded', 'rows'\); this edgeft may "
                                        r"be older than the bundle: pip install -U edgeft"):
        SessionSettings(batching="by-length")
    with pytest.raises(Exception, match="--threads must be ≥ 1, not 0"):
        SessionSettings(threads=0)
