"""The device runtime: load a bundle, verify it, predict, evaluate, benchmark.

Imports only numpy, onnxruntime, tokenizers and the standard library — never torch or
transformers — so it runs on a Raspberry Pi with ``pip install edgeft``.

    from edgeft.runtime import Predictor
    p = Predictor.load("runs/arm64/bundle")

The public names below are imported from their modules on first use, so ``import edgeft.runtime``
itself loads nothing but this file.
"""

from edgeft.lazy import lazy_exports

_EXPORTS = {
    "Predictor": "predictor", "Prediction": "predictor", "Entity": "predictor", "Entities": "predictor",
    "Answer": "qa", "Bundle": "bundle", "load_bundle": "bundle", "Manifest": "manifest",
    "Generator": "generate", "Generation": "generate",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
