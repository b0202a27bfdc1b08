"""The embedded default: the real all-MiniLM-L6-v2 from its PyPI package, extracted once, offline."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgeft.train.model_source import embedded_model_dir, resolve_model

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def minilm():
    try:
        return embedded_model_dir()
    except Exception as e:  # the package is a set-up step of the README, not a dependency
        pytest.skip(f"embedded model not installed: {e}")


def test_extracts_atomically_once(minilm, tmp_path, monkeypatch):
    assert (minilm / "model.safetensors").stat().st_size > 80_000_000
    assert embedded_model_dir() == minilm  # cached: the second call does not extract again
    monkeypatch.setenv("EDGEFT_HOME", str(tmp_path))  # a fresh cache: extracted here, nothing left beside it
    fresh = embedded_model_dir()
    assert [p.name for p in (tmp_path / "models").iterdir()] == [minilm.name] == [fresh.name]
    assert sorted(p.name for p in fresh.iterdir()) == sorted(p.name for p in minilm.iterdir())
    monkeypatch.undo()
    path, name = resolve_model(None)
    assert path == str(minilm) and "embedded" in name


def test_real_minilm_forward_pass(minilm):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm)
    model = AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=2, use_safetensors=True).eval()
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (6, 384)
    batch = tok(["a gripping, beautifully shot film", "dull"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    assert out.logits.shape == (2, 2)
    # The pretrained encoder, not random weights: the two sentences embed differently and stably.
    cls = out.hidden_states[-1][:, 0]
    assert torch.isfinite(cls).all() and torch.cosine_similarity(cls[0], cls[1], dim=0) < 0.99
    assert sum(p.numel() for p in model.parameters()) == 22_713_986


def test_finding_the_zip_does_not_import_the_package():
    code = ("import sys; from edgeft.train.model_source import embedded_zip; embedded_zip();"
            "assert 'all_minilm_l6_v2' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
