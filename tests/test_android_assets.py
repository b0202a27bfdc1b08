"""The Android demo's assets: a verified bundle whose text model gives the runtime's probabilities."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from bundles import MAX_LENGTH
from tiny_models import DATA

pytest.importorskip("onnxruntime_extensions", reason="onnxruntime-extensions is not installed (pip install "
                    "'edgeft[train]')")
from edgeft.cli import app  # noqa: E402
from edgeft.compress.android_assets import app_text, softmax, text_session, write_android_assets  # noqa: E402
from edgeft.errors import ConfigError  # noqa: E402
from edgeft.runtime.predictor import Predictor  # noqa: E402

pytest_plugins = ["bundles"]
runner = CliRunner()
SENTENCES = [json.loads(line)["text"] for line in (DATA / "tokenizer_sentences.jsonl").read_text("utf-8").splitlines()]
# test_android_tokenizer.APP_MISMATCHES for the tiny vocabulary, plus typed special tokens: the tiny
# model's saved tokenizer registers [CLS] … [MASK] as special tokens, as MiniLM's does.
ID_MISMATCHES = ["Straße, Fußgänger, Größe: German ß and umlauts.", "Ⅻ roman numeral Ⅻ, ½ cup, x² + y³",
                 "[CLS] literal special tokens [SEP]", "[PAD] [UNK] [MASK]"]


@pytest.fixture(scope="module")
def assets(cls_bundle, tmp_path_factory):
    return write_android_assets(cls_bundle, tmp_path_factory.mktemp("android") / "bundle")


def test_assets_are_a_verified_bundle_with_a_string_in_model(assets, cls_bundle):
    assert sorted(p.name for p in assets.iterdir()) == ["edgeft.json", "labels.txt", "model.onnx", "model.ort",
                                                       "text_model.onnx", "tokenizer.json"]
    p = Predictor.load(assets)  # the runtime verifies every listed file, the new ones included
    m = p.manifest
    assert sorted(m.files) == ["labels.txt", "model.onnx", "model.ort", "text_model.onnx", "tokenizer.json"]
    assert (assets / "labels.txt").read_text() == "negative\npositive\n" and m.labels == ["negative", "positive"]
    android = m.extra["android"]
    assert android["normalization"] == {"clean_text": True, "strip_accents": True, "lowercase": True,
                                        "split_punctuation": True, "clip_chars": MAX_LENGTH * 32}
    assert android["parity"]["ids_equal"] == 1.0 and android["parity"]["max_abs_diff_probs"] < 1e-6
    session = text_session(str(assets / "text_model.onnx"))
    assert [(i.name, i.type, i.shape) for i in session.get_inputs()] == [("text", "tensor(string)", [1])]
    assert [o.name for o in session.get_outputs()] == ["logits", "token_ids"]
    import onnx

    imports = [(o.domain, o.version) for o in onnx.load(str(assets / "text_model.onnx")).opset_import]
    assert sorted(imports) == [("", 18), ("ai.onnx.contrib", 1)]  # each domain imported once
    assert p.predict(["a gripping film"])[0].scores == Predictor.load(cls_bundle).predict(["a gripping film"])[0].scores


def test_string_in_probabilities_equal_the_ids_path(assets):
    """Through the graph (app normalization + in-graph tokenizer + model) vs the runtime (HF tokenizer + model)."""
    predictor = Predictor.load(assets, threads=1, batch_size=1)
    norm = predictor.manifest.extra["android"]["normalization"]
    from edgeft.compress.android_assets import Normalization

    session = text_session(str(assets / "text_model.onnx"))
    worst, differing_ids, cut = 0.0, [], 0
    for text in SENTENCES:
        logits, ids = session.run(None, {"text": np.array([app_text(text, Normalization(**norm))])})
        ref = predictor.predict([text])[0]
        if ids.tolist() != predictor.tokenizer.encode(text).ids:
            differing_ids.append(text)
            continue
        worst = max(worst, float(np.abs(softmax(logits[0].astype(np.float64)) - list(ref.scores.values())).max()))
        cut += ref.truncated
        assert ref.truncated == (len(ids) == MAX_LENGTH), text
    assert differing_ids == ID_MISMATCHES
    assert worst < 1e-5 and cut >= 4


def test_ort_model_gives_the_onnx_models_logits(assets):
    import onnxruntime as ort

    ids = np.array([[2, 40, 41, 3]], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    onnx_logits = ort.InferenceSession(str(assets / "model.onnx")).run(None, feed)[0]
    ort_logits = ort.InferenceSession(str(assets / "model.ort")).run(None, feed)[0]
    np.testing.assert_allclose(ort_logits, onnx_logits, atol=1e-5)


def test_export_android_writes_the_assets(tiny_models, tmp_path):
    out, assets = tmp_path / "fp32", tmp_path / "assets"
    result = runner.invoke(app, ["export", str(tiny_models()), "--out", str(out), "--android", str(assets), "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"android assets {assets}: text_model.onnx (tokenizer in the graph)" in result.output
    assert "equal the runtime's on 100% of 8 check texts" in result.output
    assert Predictor.load(assets).manifest.extra["android"]["text_model"] == "text_model.onnx"


def test_export_android_refuses_a_folder_that_is_not_a_bundle(tiny_models, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    result = runner.invoke(app, ["export", str(tiny_models()), "--out", str(tmp_path / "b"), "--android",
                                 str(tmp_path / "mine"), "--quiet"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"error: --out {tmp_path / 'mine'} exists and is not an edgeft bundle" in result.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_token_classification_bundles_are_refused(ner_bundle, tmp_path):
    with pytest.raises(ConfigError, match="the Android demo classifies whole texts; a token-classification bundle"):
        write_android_assets(ner_bundle, tmp_path / "a")
    assert not (tmp_path / "a").exists()
